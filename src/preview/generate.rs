//! A Preview's template and one live preview → the generated Application,
//! and back: a generated Application → what it says about its preview.
//! Pure.
//!
//! ```text
//!   Preview web (team-a) + refs/pull/7/head @ 4f2a…
//!     ──► Application team-a/web-pr-7
//!           labels       windlass.dev/preview: web, windlass.dev/preview-number: "7"
//!           annotations  windlass.dev/preview-ref: refs/pull/7/head,
//!                        windlass.dev/preview-head-since: 2026-…Z
//!           owner        Preview web (controller)
//!           spec         source { repoURL, secretRef, ref: 4f2a… (pinned), path }, values…,
//!                        destination web-pr-7, sync { automated, prune },
//!                        restrictions { destinationNamespaceOnly, allowKinds }
//! ```
//!
//! The ref is pinned to the listed commit: the Application controller then
//! finds it in the mirror without asking the server, and a moved ref is a
//! spec change, reconciled at once.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::jiff::Timestamp;
use kube::{Resource, ResourceExt};

use super::naming::{MAX_LABEL, PreviewRef, dns_label};
use super::plan::{ExistingPreview, LivePreview};
use crate::spec::{
    Application, ApplicationSpec, Destination, Preview, Restrictions, Source, SyncPolicy,
};

pub use crate::spec::PREVIEW_LABEL;
/// On preview Namespaces: the Preview's namespace (Previews in two
/// namespaces may share a name).
pub const PREVIEW_NAMESPACE_LABEL: &str = "windlass.dev/preview-namespace";
/// On generated Applications and preview Namespaces: the pull-request
/// number, or the slug for branch patterns.
pub const NUMBER_LABEL: &str = "windlass.dev/preview-number";
/// On generated Applications: the ref they follow.
pub const REF_ANNOTATION: &str = "windlass.dev/preview-ref";
/// On generated Applications: when the ref's head last moved (RFC 3339).
pub const HEAD_SINCE_ANNOTATION: &str = "windlass.dev/preview-head-since";

/// On preview Namespaces: the Pod Security level the API server enforces.
pub const POD_SECURITY_LABEL: &str = "pod-security.kubernetes.io/enforce";

/// The labels that say a namespace is this Preview's (its selector).
pub fn ownership_labels(preview: &Preview) -> BTreeMap<String, String> {
    BTreeMap::from([
        (PREVIEW_LABEL.to_string(), label_value(&preview.name_any())),
        (
            PREVIEW_NAMESPACE_LABEL.to_string(),
            preview.namespace().unwrap_or_default(),
        ),
    ])
}

/// Every label of a preview's namespace: ownership, number, Pod Security.
pub fn namespace_labels(preview: &Preview, r: &PreviewRef) -> BTreeMap<String, String> {
    let mut labels = ownership_labels(preview);
    labels.insert(NUMBER_LABEL.to_string(), number_label(r));
    labels.insert(
        POD_SECURITY_LABEL.to_string(),
        preview.pod_security().to_string(),
    );
    labels
}

fn number_label(r: &PreviewRef) -> String {
    r.number
        .map(|n| n.to_string())
        .unwrap_or_else(|| r.slug.clone())
}

/// A name as a label value: itself when short enough (a Kubernetes name is
/// a valid label value up to 63 characters), else a cut DNS-1123 label.
pub fn label_value(name: &str) -> String {
    if name.len() <= MAX_LABEL {
        name.to_string()
    } else {
        dns_label(name, MAX_LABEL)
    }
}

/// The preview's namespace: the template's `destination.namespace` with
/// placeholders, else `<preview>-pr-<number>`; always a DNS-1123 label.
pub fn destination_namespace(preview: &Preview, r: &PreviewRef) -> String {
    let name = preview.name_any();
    match &preview.spec.template.destination.namespace {
        Some(template) => dns_label(&r.placeholders().substitute(template), MAX_LABEL),
        None => r.default_name(&name),
    }
}

/// The generated Application's name.
pub fn application_name(preview: &Preview, r: &PreviewRef) -> String {
    r.default_name(&preview.name_any())
}

/// `spec.url` with placeholders, if set.
pub fn preview_url(preview: &Preview, r: &PreviewRef) -> Option<String> {
    preview
        .spec
        .url
        .as_deref()
        .map(|url| r.placeholders().substitute(url))
}

fn timestamp(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// The generated Application for one live preview.
pub fn generated_application(preview: &Preview, live: &LivePreview) -> Application {
    let r = &live.preview;
    let placeholders = r.placeholders();
    let template = &preview.spec.template;
    let labels = BTreeMap::from([
        (PREVIEW_LABEL.to_string(), label_value(&preview.name_any())),
        (NUMBER_LABEL.to_string(), number_label(r)),
    ]);
    let annotations = BTreeMap::from([
        (REF_ANNOTATION.to_string(), r.ref_name.clone()),
        (
            HEAD_SINCE_ANNOTATION.to_string(),
            timestamp(live.head_since),
        ),
    ]);
    let owner = OwnerReference {
        api_version: Preview::api_version(&()).to_string(),
        kind: Preview::kind(&()).to_string(),
        name: preview.name_any(),
        uid: preview.uid().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    };
    let spec = ApplicationSpec {
        source: Source {
            repo_url: preview.spec.source.repo_url.clone(),
            reference: Some(r.commit.clone()),
            path: template.path.as_deref().map(|p| placeholders.substitute(p)),
            secret_ref: preview.spec.source.secret_ref.clone(),
            renderer: template.renderer,
        },
        environment: template
            .environment
            .as_deref()
            .map(|e| placeholders.substitute(e)),
        values: template.values.as_ref().map(|values| {
            match placeholders.substitute_values(&serde_json::Value::Object(values.clone())) {
                serde_json::Value::Object(map) => map,
                _ => unreachable!("an object stays an object"),
            }
        }),
        destination: Destination {
            namespace: Some(destination_namespace(preview, r)),
        },
        restrictions: Some(Restrictions {
            destination_namespace_only: true,
            allow_kinds: preview.spec.allow_kinds.clone(),
        }),
        sync: SyncPolicy {
            automated: true,
            prune: true,
            windows: Vec::new(),
            ..template.sync.clone()
        },
        rollback: template.rollback.clone(),
        history_limit: template.history_limit,
        depends_on: Vec::new(),
        suspend: false,
        ignore_differences: Vec::new(),
        notifications: Vec::new(),
    };
    Application {
        metadata: ObjectMeta {
            name: Some(application_name(preview, r)),
            namespace: preview.namespace(),
            labels: Some(labels),
            annotations: Some(annotations),
            owner_references: Some(vec![owner]),
            ..ObjectMeta::default()
        },
        spec,
        status: None,
    }
}

/// Whether `application` was generated by `preview`: its controller owner
/// is the Preview (by uid), not just a label anyone could set.
pub fn owned_by(application: &Application, preview: &Preview) -> bool {
    let Some(uid) = preview.uid() else {
        return false;
    };
    application
        .owner_references()
        .iter()
        .any(|o| o.controller == Some(true) && o.kind == "Preview" && o.uid == uid)
}

/// What a generated Application says about its preview.
pub fn existing_preview(application: &Application) -> Option<ExistingPreview> {
    let annotations = application.annotations();
    Some(ExistingPreview {
        application: application.name_any(),
        ref_name: annotations.get(REF_ANNOTATION)?.clone(),
        commit: application.spec.source.reference.clone()?,
        head_since: annotations
            .get(HEAD_SINCE_ANNOTATION)
            .and_then(|t| t.parse::<Timestamp>().ok()),
    })
}

/// Whether the live generated Application differs from the desired one in
/// anything the Preview decides (spec, our labels and annotations, owner).
pub fn differs(live: &Application, desired: &Application) -> bool {
    let ours = |have: &BTreeMap<String, String>, want: &BTreeMap<String, String>| {
        want.iter().all(|(k, v)| have.get(k) == Some(v))
    };
    live.spec != desired.spec
        || !ours(live.labels(), desired.labels())
        || !ours(live.annotations(), desired.annotations())
        || live.owner_references() != desired.owner_references()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::preview::naming::RefPattern;

    const SHA: &str = "4f2a9c1e4f2a9c1e4f2a9c1e4f2a9c1e4f2a9c1e";

    fn preview(spec: serde_json::Value) -> Preview {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "windlass.dev/v1alpha1",
            "kind": "Preview",
            "metadata": { "name": "web", "namespace": "team-a", "uid": "u-1" },
            "spec": spec,
        }))
        .unwrap()
    }

    fn live(number: u64) -> LivePreview {
        LivePreview {
            preview: PreviewRef::new(
                &RefPattern::parse("refs/pull/*/head").unwrap(),
                &format!("refs/pull/{number}/head"),
                SHA,
            )
            .unwrap(),
            head_since: Timestamp::from_second(1_800_000_000).unwrap(),
        }
    }

    #[test]
    fn the_generated_application_is_pinned_restricted_and_owned() {
        let preview = preview(serde_json::json!({
            "source": { "repoURL": "https://git.example.com/web.git", "refPattern": "refs/pull/*/head",
                        "secretRef": { "name": "git" } },
            "template": {
                "path": "deploy/{{slug}}",
                "environment": "preview",
                "renderer": "kustomize",
                "values": { "host": "{{slug}}.example.com", "image": { "tag": "{{shortSha}}" } },
                "sync": { "selfHeal": true, "interval": "30s", "automated": false },
            },
            "allowKinds": ["Ingress"],
            "url": "https://{{slug}}.example.com",
        }));
        let app = generated_application(&preview, &live(7));
        assert_eq!(app.name_any(), "web-pr-7");
        assert_eq!(app.namespace().as_deref(), Some("team-a"));
        assert_eq!(app.spec.source.reference.as_deref(), Some(SHA));
        assert_eq!(app.spec.source.path.as_deref(), Some("deploy/pr-7"));
        assert_eq!(app.spec.source.secret_ref.as_ref().unwrap().name, "git");
        assert_eq!(app.spec.source.renderer, crate::spec::Renderer::Kustomize);
        let values = serde_json::Value::Object(app.spec.values.clone().unwrap());
        assert_eq!(values["host"], "pr-7.example.com");
        assert_eq!(values["image"]["tag"], "4f2a9c1");
        assert_eq!(app.destination_namespace(), "web-pr-7");
        assert!(app.spec.sync.automated && app.spec.sync.prune && app.spec.sync.self_heal);
        assert_eq!(app.spec.sync.interval.as_deref(), Some("30s"));
        assert_eq!(
            app.spec.restrictions,
            Some(Restrictions {
                destination_namespace_only: true,
                allow_kinds: vec!["Ingress".into()],
            })
        );
        assert_eq!(app.labels()[PREVIEW_LABEL], "web");
        assert_eq!(app.labels()[NUMBER_LABEL], "7");
        assert_eq!(app.annotations()[REF_ANNOTATION], "refs/pull/7/head");
        assert_eq!(
            app.annotations()[HEAD_SINCE_ANNOTATION],
            "2027-01-15T08:00:00Z"
        );
        assert!(owned_by(&app, &preview));
        assert_eq!(
            preview_url(&preview, &live(7).preview).as_deref(),
            Some("https://pr-7.example.com")
        );

        let back = existing_preview(&app).unwrap();
        assert_eq!(back.ref_name, "refs/pull/7/head");
        assert_eq!(back.commit, SHA);
        assert_eq!(back.head_since, Some(live(7).head_since));
        assert!(!differs(&app, &app));
        let moved = generated_application(&preview, &live(8));
        assert!(differs(&app, &moved));
    }

    #[test]
    fn preview_namespaces_are_labelled_ours_and_baseline_by_default() {
        let mut preview = preview(serde_json::json!({
            "source": { "repoURL": "https://x/y.git", "refPattern": "refs/pull/*/head" },
        }));
        let labels = namespace_labels(&preview, &live(7).preview);
        assert_eq!(labels[PREVIEW_LABEL], "web");
        assert_eq!(labels[PREVIEW_NAMESPACE_LABEL], "team-a");
        assert_eq!(labels[NUMBER_LABEL], "7");
        assert_eq!(labels[POD_SECURITY_LABEL], "baseline");
        preview.spec.pod_security = Some("restricted".into());
        let labels = namespace_labels(&preview, &live(7).preview);
        assert_eq!(labels[POD_SECURITY_LABEL], "restricted");
        assert!(
            ownership_labels(&preview)
                .iter()
                .all(|(k, v)| labels[k] == *v)
        );
    }

    #[test]
    fn a_templated_namespace_is_sanitised() {
        let preview = preview(serde_json::json!({
            "source": { "repoURL": "https://x/y.git", "refPattern": "refs/pull/*/head" },
            "template": { "destination": { "namespace": "Preview_{{number}}_{{branch}}" } },
        }));
        assert_eq!(
            destination_namespace(&preview, &live(7).preview),
            "preview-7-pull-7-head"
        );
    }

    #[test]
    fn an_application_with_another_owner_is_not_ours() {
        let preview = preview(serde_json::json!({
            "source": { "repoURL": "https://x/y.git", "refPattern": "refs/pull/*/head" },
        }));
        let mut app = generated_application(&preview, &live(7));
        app.metadata.owner_references.as_mut().unwrap()[0].uid = "someone-else".into();
        assert!(!owned_by(&app, &preview));
    }
}
