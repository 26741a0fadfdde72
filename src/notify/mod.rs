//! Notifications: telling people (chat, webhooks, commit statuses) what
//! happened to an application.
//!
//! ```text
//!   spec.notifications[i] + its Secret's data + ConfigMap overrides
//!        │ Target::new (pure: checks keys, parses templates)
//!        ▼
//!   Target ─┐
//!   Event ──┼─► Notifier::notify ── dedupe (5 min) ──► bounded queue ──► delivery tasks
//!           │       returns at once                                      │ render text (templates/)
//!           │                                                            │ build request (one file per
//!           │                                                            │   provider, pure)
//!           │                                                            │ POST, retry 5xx/429/network
//!           │                                                            ▼   with backoff
//!           │                                                     Outcome (broadcast)
//! ```
//!
//! Uses `spec`, `source` (`Secret`, `RepoUrl`), `sync::drift` (to turn a
//! `Drift` into drifted fields) and `cluster` (error chains); nothing uses
//! it but the controller.
//!
//! What flows in: an [`Event`] (pure data the reconcile builds) and the
//! [`Target`]s of the application. What flows out: HTTP requests, and an
//! [`Outcome`] per delivery on [`Notifier::outcomes`]. A notification never
//! blocks or fails a reconcile: a full queue drops the notification (with a
//! warning), a failed delivery is logged and reported as an outcome.
//!
//! Secret values (webhook URLs, tokens, HMAC keys) live in
//! [`crate::source::Secret`]: they print `***`, and every error text that
//! reaches a log or an outcome is scrubbed of them.
//!
//! - `templates`: the built-in message templates (`templates/` at the
//!   repository root, compiled in) and ConfigMap overrides.
//! - `target`: a `spec.notifications` entry and its Secret → [`Target`].
//! - `load`: [`load_targets`] reads the Secrets and ConfigMaps an
//!   Application's entries name (the module's only API server I/O).
//! - `webhook`, `slack`, `teams`, `commit_status`: the request each
//!   provider takes (pure).
//! - `delivery`: the [`Notifier`]: dedupe, queue, retries, HTTP.

mod commit_status;
mod delivery;
mod load;
mod slack;
mod target;
mod teams;
mod templates;
mod webhook;

use serde::Serialize;

use crate::spec::Application;
use crate::sync::diff::display_name;
use crate::sync::drift::Drift;

pub use crate::spec::{NotificationEvent as EventKind, NotificationProvider as Provider};
pub use commit_status::StatusError;
pub use delivery::{Clock, Notifier, NotifierOptions, Outcome, Queued, SystemClock};
pub use load::{LoadError, load_targets};
pub use target::{Target, TargetError};
pub use templates::{Family, TemplateError, Templates};

/// Something that happened to an application, as the reconcile saw it.
/// Pure data: no secrets belong here (a repository URL's user-info is
/// stripped before it is shown or sent).
///
/// | kind            | `revision`                  | `commit` (gets the commit status) |
/// |-----------------|-----------------------------|-----------------------------------|
/// | sync-succeeded  | the revision just recorded  | its commit                        |
/// | sync-failed     | the failed one, if recorded | the commit that failed            |
/// | health-degraded | the unhealthy revision      | its commit                        |
/// | rolled-back     | the revision now live again | the commit that was rolled back   |
/// | drift-*         | the applied revision        | its commit                        |
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    pub namespace: String,
    pub name: String,
    pub kind: EventKind,
    /// The revision number (`windlass history`) the event is about.
    pub revision: Option<i64>,
    /// The commit the event is about (required for commit statuses).
    pub commit: Option<String>,
    /// The repository the commit is in (`spec.source.repoURL`; required
    /// for commit statuses).
    #[serde(rename = "repoURL")]
    pub repo_url: Option<String>,
    /// What happened, in a sentence: a failure's cause, a health summary.
    pub message: String,
    /// For drift events: which fields of which objects changed, by whom.
    pub drift: Vec<DriftedField>,
}

/// One drifted field.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct DriftedField {
    /// `Deployment team-a/web`.
    pub object: String,
    /// `spec.replicas`.
    pub field: String,
    /// The field manager that changed it (`kubectl-edit`), when known.
    pub manager: Option<String>,
}

impl DriftedField {
    /// One entry per drifted field of each object in `drift` (the field's
    /// manager being the object's managers, as `Drift` keeps them); a
    /// deleted object is the field `(deleted)`, a modified one without
    /// known fields `(modified)`.
    pub fn from_drift(drift: &Drift) -> Vec<DriftedField> {
        let mut fields = Vec::new();
        for object in &drift.objects {
            let name = display_name(&object.id);
            let manager = (!object.managers.is_empty()).then(|| object.managers.join(", "));
            if object.missing {
                fields.push(DriftedField {
                    object: name,
                    field: "(deleted)".to_string(),
                    manager: None,
                });
                continue;
            }
            if object.fields.is_empty() {
                fields.push(DriftedField {
                    object: name.clone(),
                    field: "(modified)".to_string(),
                    manager: manager.clone(),
                });
            }
            for field in &object.fields {
                fields.push(DriftedField {
                    object: name.clone(),
                    field: field.clone(),
                    manager: manager.clone(),
                });
            }
        }
        fields
    }
}

impl Event {
    /// An event with no revision, commit, repository or drift.
    pub fn new(
        namespace: impl Into<String>,
        name: impl Into<String>,
        kind: EventKind,
        message: impl Into<String>,
    ) -> Event {
        Event {
            namespace: namespace.into(),
            name: name.into(),
            kind,
            revision: None,
            commit: None,
            repo_url: None,
            message: message.into(),
            drift: Vec::new(),
        }
    }

    /// An event about `application`: its namespace, name and repository
    /// (`spec.source.repoURL`); set `revision`, `commit` and `drift` after.
    pub fn about(application: &Application, kind: EventKind, message: impl Into<String>) -> Event {
        let mut event = Event::new(
            application
                .metadata
                .namespace
                .as_deref()
                .unwrap_or("default"),
            application.metadata.name.as_deref().unwrap_or_default(),
            kind,
            message,
        );
        event.repo_url = Some(application.spec.source.repo_url.clone());
        event
    }

    /// `namespace/name`.
    pub fn application(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// The repository URL without user-info, for showing and sending.
    pub fn shown_repo_url(&self) -> Option<String> {
        let url = self.repo_url.as_deref()?;
        Some(match crate::source::RepoUrl::parse(url) {
            Ok(parsed) => parsed.to_string(),
            Err(_) => "(invalid repository URL)".to_string(),
        })
    }
}

/// One HTTP POST to a provider, as the pure builders make it. The URL and
/// every header value may hold a secret: `Debug` shows neither.
pub(crate) struct Request {
    pub url: crate::source::Secret,
    pub headers: Vec<(&'static str, crate::source::Secret)>,
    pub body: Vec<u8>,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.headers.iter().map(|(name, _)| *name).collect();
        f.debug_struct("Request")
            .field("url", &self.url)
            .field("headers", &names)
            .field("body_bytes", &self.body.len())
            .finish()
    }
}

/// `text` cut to at most `limit` characters, ending in `…` when cut.
pub(crate) fn truncate(text: &str, limit: usize) -> String {
    if text.chars().count() <= limit {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(limit.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

const JSON: &str = "application/json";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::ObjectId;
    use crate::sync::drift::DriftedObject;

    fn id(kind: &str, name: &str) -> ObjectId {
        ObjectId {
            group: if kind == "Deployment" { "apps" } else { "" }.into(),
            version: "v1".into(),
            kind: kind.into(),
            namespace: Some("team-a".into()),
            name: name.into(),
        }
    }

    #[test]
    fn a_drift_becomes_one_entry_per_field() {
        let drift = Drift {
            objects: vec![
                DriftedObject {
                    id: id("Deployment", "web"),
                    missing: false,
                    fields: vec![
                        ".spec.replicas".into(),
                        ".spec.template.spec.containers[name=web].image".into(),
                    ],
                    managers: vec!["kubectl-edit".into()],
                },
                DriftedObject {
                    id: id("ConfigMap", "settings"),
                    missing: true,
                    fields: Vec::new(),
                    managers: Vec::new(),
                },
            ],
        };
        let fields = DriftedField::from_drift(&drift);
        assert_eq!(
            fields,
            [
                DriftedField {
                    object: "apps/v1 Deployment team-a/web".into(),
                    field: ".spec.replicas".into(),
                    manager: Some("kubectl-edit".into()),
                },
                DriftedField {
                    object: "apps/v1 Deployment team-a/web".into(),
                    field: ".spec.template.spec.containers[name=web].image".into(),
                    manager: Some("kubectl-edit".into()),
                },
                DriftedField {
                    object: "v1 ConfigMap team-a/settings".into(),
                    field: "(deleted)".into(),
                    manager: None,
                },
            ]
        );
    }

    #[test]
    fn an_event_about_an_application_carries_its_identity_and_repository() {
        let app: Application = serde_json::from_value(serde_json::json!({
            "apiVersion": "windlass.dev/v1alpha1",
            "kind": "Application",
            "metadata": { "name": "guestbook", "namespace": "team-a" },
            "spec": { "source": { "repoURL": "https://bot:t0ken@github.com/org/deploy.git" } }
        }))
        .unwrap();
        let event = Event::about(&app, EventKind::SyncSucceeded, "ok");
        assert_eq!(event.application(), "team-a/guestbook");
        assert_eq!(
            event.shown_repo_url().as_deref(),
            Some("https://***@github.com/org/deploy.git")
        );
    }
}
