//! Waking Applications when a push moved their source: the controller's
//! [`PushSink`] for the webhook receivers.
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
use super::webhook::{Push, PushSink};
use crate::source::RefRequest;
use crate::source::url::repository_identity;
use crate::spec::{Application, SOURCE_CHANGED_ANNOTATION};
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
        let api: Api<Application> = Api::namespaced(self.client.clone(), &namespace);
        let marker = push.after.clone().unwrap_or_else(|| "deleted".to_string());
        let value = format!("{marker}@{}", crate::sync::engine::now());
        let patch = serde_json::json!({
            "metadata": { "annotations": { SOURCE_CHANGED_ANNOTATION: value } }
        });
        match api
            .patch(
                &application.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
        {
            Ok(_) => true,
            Err(error) => {
                warn!(app = %format!("{namespace}/{}", application.name_any()), error = %crate::cluster::explain(&error), "could not wake the Application");
                false
            }
        }
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
