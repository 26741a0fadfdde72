//! Waking Applications when a push moved their source, and Previews when a
//! pull request was opened, moved or closed: the controller's [`PushSink`]
//! for the webhook receivers.
//!
//! ```text
//!   Push { repository URLs, ref, before, after }
//!     ├─ concerns(app, push)?    same repository (normalised URL) and a ref the app follows (pure)
//!     ├─ changed under its paths? from the local mirror: the commit its last render read vs the
//!     │                          ref's commit now (never the payload's file lists)
//!     └─ yes ─► annotate windlass.dev/source-changed=<after> ─► watch event ─► reconcile now,
//!                                                                 resolving fresh
//! ```
//!
//! A pull request wakes every Preview of its repository the same way
//! (`windlass.dev/source-changed=pr-<number>-<action>@<time>` on the
//! Preview): its next pass lists the refs afresh instead of waiting for the
//! interval.
//!
//! The wake is an annotation, not an in-process call, so any replica can
//! receive a webhook: a standby (which has no render memory) wakes every
//! Application the push concerns, and the leader reconciles them. Pushes in
//! quick succession coalesce: the controller queues at most one reconcile
//! per Application, and the reconcile reads the newest commit.

use std::sync::Arc;

use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use tokio::sync::OnceCell;
use tracing::{debug, warn};

use super::reconcile::{self, Context};
use super::webhook::{PullRequest, Push, PushSink};
use crate::source::RefRequest;
use crate::source::url::repository_identity;
use crate::spec::{Application, Preview, SOURCE_CHANGED_ANNOTATION};
use crate::sync::engine::SourceSpec;

/// Whether `push` may move `application`'s source: the same repository
/// (whatever the URL's spelling) and a ref the application follows.
pub fn concerns(application: &Application, push: &Push) -> bool {
    let Some(wanted) = repository_identity(&application.spec.source.repo_url) else {
        return false;
    };
    let same_repository = push
        .repository_urls
        .iter()
        .filter_map(|url| repository_identity(url))
        .any(|identity| identity == wanted);
    let reference = application
        .spec
        .source
        .reference
        .as_deref()
        .unwrap_or("HEAD");
    same_repository && RefRequest::parse(reference).is_ok_and(|r| r.may_move_with(&push.reference))
}

/// Whether `pull_request` is on the repository `preview` lists (whatever
/// the URL's spelling).
pub fn concerns_preview(preview: &Preview, pull_request: &PullRequest) -> bool {
    let Some(wanted) = repository_identity(&preview.spec.source.repo_url) else {
        return false;
    };
    pull_request
        .repository_urls
        .iter()
        .filter_map(|url| repository_identity(url))
        .any(|identity| identity == wanted)
}

/// Sets the wake annotation to `value` on a resource; false (and a
/// warning) when the API server refuses.
async fn annotate<K>(client: &kube::Client, namespace: &str, name: &str, value: &str) -> bool
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    let patch = serde_json::json!({
        "metadata": { "annotations": { SOURCE_CHANGED_ANNOTATION: value } }
    });
    match api
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => true,
        Err(error) => {
            warn!(target = %format!("{} {namespace}/{name}", K::kind(&())), error = %crate::cluster::explain(&error), "could not wake it");
            false
        }
    }
}

/// Wakes the Applications a push changed.
pub struct Wakeups {
    client: kube::Client,
    /// Only Applications in this namespace (the controller's `--watch-namespace`).
    namespace: Option<String>,
    /// The reconcile's context, once this replica reconciles (the leader).
    context: Arc<OnceCell<Arc<Context>>>,
}

impl Wakeups {
    pub fn new(
        client: kube::Client,
        namespace: Option<String>,
        context: Arc<OnceCell<Arc<Context>>>,
    ) -> Wakeups {
        Wakeups {
            client,
            namespace,
            context,
        }
    }

    /// Whether anything under the application's paths changed between its
    /// last render and the ref's commit now. When that cannot be known (no
    /// render yet, a standby replica, a new ref, an error), it did.
    async fn changed(&self, application: &Application, push: &Push) -> bool {
        if push.before.is_none() || push.after.is_none() {
            return true;
        }
        let Some(context) = self.context.get() else {
            return true;
        };
        let Some(last) = context.last_render(application) else {
            return true;
        };
        let Ok(target) = reconcile::target(application, context).await else {
            return true;
        };
        let SourceSpec::Git {
            repo, reference, ..
        } = &target.source
        else {
            return true;
        };
        let resolved = match context.cache.resolve(repo, reference).await {
            Ok(resolved) => resolved,
            Err(_) => return true,
        };
        if resolved.commit == last.commit {
            return false;
        }
        context
            .cache
            .changed(repo, last.commit, resolved.commit, &last.watched_paths)
            .await
            .unwrap_or(true)
    }

    async fn wake(&self, application: &Application, push: &Push) -> bool {
        let namespace = application.namespace().unwrap_or_default();
        let marker = push.after.clone().unwrap_or_else(|| "deleted".to_string());
        let value = format!("{marker}@{}", crate::sync::engine::now());
        annotate::<Application>(&self.client, &namespace, &application.name_any(), &value).await
    }
}

impl PushSink for Wakeups {
    async fn push(&self, push: Push) -> usize {
        let api: Api<Application> = match &self.namespace {
            Some(namespace) => Api::namespaced(self.client.clone(), namespace),
            None => Api::all(self.client.clone()),
        };
        let applications = match api.list(&ListParams::default()).await {
            Ok(list) => list.items,
            Err(error) => {
                warn!(error = %crate::cluster::explain(&error), "listing Applications for a push");
                return 0;
            }
        };
        let mut woken = 0;
        for application in applications.iter().filter(|a| concerns(a, &push)) {
            if application.meta().deletion_timestamp.is_some() || application.spec.suspend {
                continue;
            }
            if !self.changed(application, &push).await {
                debug!(app = %application.name_any(), reference = %push.reference, "the push changed nothing under the application's paths");
                continue;
            }
            if self.wake(application, &push).await {
                woken += 1;
            }
        }
        woken
    }

    async fn pull_request(&self, pull_request: PullRequest) -> usize {
        let api: Api<Preview> = match &self.namespace {
            Some(namespace) => Api::namespaced(self.client.clone(), namespace),
            None => Api::all(self.client.clone()),
        };
        let previews = match api.list(&ListParams::default()).await {
            Ok(list) => list.items,
            Err(error) => {
                warn!(error = %crate::cluster::explain(&error), "listing Previews for a pull request");
                return 0;
            }
        };
        // One value for the whole delivery: Previews of one repository
        // woken by it share one fresh listing.
        let value = format!(
            "pr-{}-{}@{}",
            pull_request.number,
            pull_request.action,
            crate::sync::engine::now()
        );
        let mut woken = 0;
        for preview in previews
            .iter()
            .filter(|p| concerns_preview(p, &pull_request))
        {
            if preview.meta().deletion_timestamp.is_some() {
                continue;
            }
            let namespace = preview.namespace().unwrap_or_default();
            if annotate::<Preview>(&self.client, &namespace, &preview.name_any(), &value).await {
                woken += 1;
            }
        }
        woken
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::webhook::Provider;

    fn application(url: &str, reference: Option<&str>) -> Application {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "windlass.dev/v1alpha1", "kind": "Application",
            "metadata": {"name": "web", "namespace": "a"},
            "spec": {"source": {"repoURL": url, "ref": reference}}
        }))
        .unwrap()
    }

    fn push(urls: &[&str], reference: &str) -> Push {
        Push {
            provider: Provider::GitHub,
            repository_urls: urls.iter().map(|u| u.to_string()).collect(),
            reference: reference.to_string(),
            before: Some("a".repeat(40)),
            after: Some("b".repeat(40)),
        }
    }

    #[test]
    fn a_push_concerns_the_same_repository_in_any_spelling_on_a_followed_ref() {
        let app = application("https://git.example.com/Org/Deploy.git", Some("main"));
        let ssh = push(&["git@git.example.com:org/deploy.git"], "refs/heads/main");
        assert!(concerns(&app, &ssh));
        let other_branch = push(&["https://git.example.com/org/deploy"], "refs/heads/dev");
        assert!(!concerns(&app, &other_branch));
        let other_repo = push(
            &["https://git.example.com/org/other.git"],
            "refs/heads/main",
        );
        assert!(!concerns(&app, &other_repo));
    }

    #[test]
    fn a_pull_request_concerns_the_previews_of_its_repository_in_any_spelling() {
        let preview: Preview = serde_json::from_value(serde_json::json!({
            "apiVersion": "windlass.dev/v1alpha1", "kind": "Preview",
            "metadata": {"name": "web", "namespace": "a"},
            "spec": {"source": {"repoURL": "https://git.example.com/Org/Deploy.git",
                                "refPattern": "refs/pull/*/head"}}
        }))
        .unwrap();
        let pull_request = |urls: &[&str]| PullRequest {
            provider: Provider::GitHub,
            repository_urls: urls.iter().map(|u| u.to_string()).collect(),
            number: 7,
            action: "opened".into(),
        };
        assert!(concerns_preview(
            &preview,
            &pull_request(&["git@git.example.com:org/deploy.git"])
        ));
        assert!(!concerns_preview(
            &preview,
            &pull_request(&["https://git.example.com/org/other.git"])
        ));
    }

    #[test]
    fn semver_ranges_follow_tags_and_pinned_commits_never_move() {
        let ranged = application("https://h/o/r", Some(">=1.0.0, <2.0.0"));
        assert!(concerns(
            &ranged,
            &push(&["https://h/o/r"], "refs/tags/v1.4.0")
        ));
        assert!(!concerns(
            &ranged,
            &push(&["https://h/o/r"], "refs/tags/v2.0.0")
        ));
        let pinned = application("https://h/o/r", Some(&"c".repeat(40)));
        assert!(!concerns(
            &pinned,
            &push(&["https://h/o/r"], "refs/heads/main")
        ));
        let head = application("https://h/o/r", None);
        assert!(concerns(
            &head,
            &push(&["https://h/o/r"], "refs/heads/main")
        ));
    }
}
