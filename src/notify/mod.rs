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
//! - `webhook`, `slack`, `teams`, `commit_status`: the request each
//!   provider takes (pure).
//! - `delivery`: the [`Notifier`]: dedupe, queue, retries, HTTP.

mod commit_status;
mod delivery;
mod slack;
mod target;
mod teams;
mod templates;
mod webhook;

use serde::Serialize;

pub use crate::spec::{NotificationEvent as EventKind, NotificationProvider as Provider};
pub use commit_status::StatusError;
pub use delivery::{Clock, Notifier, NotifierOptions, Outcome, Queued, SystemClock};
pub use target::{Target, TargetError};
pub use templates::{Family, TemplateError, Templates};

/// Something that happened to an application, as the reconcile saw it.
/// Pure data: no secrets belong here (a repository URL's user-info is
/// stripped before it is shown or sent).
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
