//! Webhook receivers: `POST /hooks/<provider>` turns a Git host's push
//! notification into [`Push`]es, and its pull-request notification into a
//! [`PullRequest`], which leave through a [`PushSink`].
//!
//! ```text
//!   POST /hooks/github | gitlab | gitea | bitbucket-server | generic
//!     │ unknown provider ─────────────────────────────────► 404
//!     │ body larger than the limit (1 MiB) ───────────────► 413
//!     ▼
//!   verify (HMAC-SHA256 of the body, or GitLab's token) ──► 401
//!     ▼
//!   event ── ping / not a push ───────────────────────────► 200 {"accepted":0,"ignored":"ping"}
//!     ▼ push
//!   parse payload ─── malformed ──────────────────────────► 400 {"error":"payload has no `ref`"}
//!     ▼ one Push per changed ref
//!   PushSink::push(Push) → Applications triggered ────────► 202 {"accepted":N}
//!
//!   event ── pull request (GitHub, Gitea: `pull_request`; GitLab: `Merge Request Hook`)
//!     ▼ parse: repository URLs, number, action
//!   opened / synchronize(d) / reopened / closed (GitLab: open, update, reopen, close,
//!   merge) ─► PushSink::pull_request → Previews woken ──► 202 {"accepted":N}
//!   any other action (labeled, edited, …) ───────────────► 200 {"accepted":0,"ignored":"…"}
//! ```
//!
//! | provider           | authenticity                                          | event header                          |
//! |--------------------|-------------------------------------------------------|---------------------------------------|
//! | `github`           | `X-Hub-Signature-256: sha256=<hex HMAC>`              | `X-GitHub-Event: push`                |
//! | `gitea` (Forgejo)  | `X-Gitea-Signature` / `X-Forgejo-Signature: <hex HMAC>` | `X-Gitea-Event` / `X-Forgejo-Event: push` |
//! | `gitlab`           | `X-Gitlab-Token: <the secret>`                        | `X-Gitlab-Event: Push Hook`, `Tag Push Hook` |
//! | `bitbucket-server` | `X-Hub-Signature: sha256=<hex HMAC>`                  | `X-Event-Key: repo:refs_changed`      |
//! | `generic`          | `X-Signature: sha256=<hex HMAC>`                      | `X-Event` (optional; absent = `push`) |
//!
//! The HMAC is HMAC-SHA256 of the raw body keyed with the shared secret;
//! every comparison runs in constant time. Every delivery is verified, pings
//! too, before anything in it is read. The generic payload is
//! `{"repository": "<url>", "ref": "refs/heads/main", "before": "<sha>", "after": "<sha>"}`
//! (`before` optional; `after` all zeros for a deleted ref).
//!
//! What the pushes mean — which Applications they wake — is the sink's
//! decision, not this room's: here a delivery is only authenticated and
//! read. Logs name the provider, event, repository and ref; bodies and the
//! secret never reach logs or responses.

use std::fmt;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use tracing::{info, warn};

use super::metrics::{Metrics, ProviderLabels, RejectLabels};
use crate::source::Secret;
use crate::source::url::repository_identity;

/// The largest body a receiver reads unless told otherwise.
pub const DEFAULT_BODY_LIMIT: usize = 1024 * 1024;

/// A Git host whose webhooks windlass understands; its name is the last
/// segment of the receiver's path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Provider {
    GitHub,
    GitLab,
    /// Gitea and Forgejo.
    Gitea,
    /// Bitbucket Server / Data Center (not Bitbucket Cloud).
    BitbucketServer,
    /// Any sender that signs windlass' own small payload.
    Generic,
}

impl Provider {
    pub const ALL: [Provider; 5] = [
        Provider::GitHub,
        Provider::GitLab,
        Provider::Gitea,
        Provider::BitbucketServer,
        Provider::Generic,
    ];

    /// The path segment: `/hooks/<name>`.
    pub fn name(self) -> &'static str {
        match self {
            Provider::GitHub => "github",
            Provider::GitLab => "gitlab",
            Provider::Gitea => "gitea",
            Provider::BitbucketServer => "bitbucket-server",
            Provider::Generic => "generic",
        }
    }

    pub fn from_name(name: &str) -> Option<Provider> {
        Provider::ALL.into_iter().find(|p| p.name() == name)
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One ref that moved in one repository, as a webhook reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Push {
    pub provider: Provider,
    /// Every URL the payload names for the repository (clone, SSH, web),
    /// in the payload's order, without duplicates. Match them through
    /// [`repository_identity`].
    pub repository_urls: Vec<String>,
    /// The full ref: `refs/heads/main`, `refs/tags/v1.2.0`.
    pub reference: String,
    /// The commit the ref was at; `None` for a new ref.
    pub before: Option<String>,
    /// The commit the ref is at now; `None` when the ref was deleted.
    pub after: Option<String>,
}

/// A pull request (GitLab: merge request) that was opened, moved, reopened
/// or closed, as a webhook reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullRequest {
    pub provider: Provider,
    /// Every URL the payload names for the (base) repository, as in [`Push`].
    pub repository_urls: Vec<String>,
    /// The pull request's number (GitLab: the merge request's `iid`).
    pub number: u64,
    /// The provider's action: `opened`, `synchronize`, `update`, `closed`, …
    pub action: String,
}

/// Actions that open, move, reopen or close a pull request (GitHub, Gitea,
/// GitLab spellings): the ones that may add, move or remove a preview.
const PREVIEW_ACTIONS: [&str; 10] = [
    "opened",
    "synchronize",
    "synchronized",
    "reopened",
    "closed",
    "open",
    "update",
    "reopen",
    "close",
    "merge",
];

impl PullRequest {
    /// Whether the action may add, move or remove a preview (not a label,
    /// title, review or assignee change).
    pub fn moves_previews(&self) -> bool {
        PREVIEW_ACTIONS.contains(&self.action.as_str())
    }
}

/// Where accepted pushes go. The controller implements it: it wakes the
/// Applications the push may concern and says how many.
pub trait PushSink: Send + Sync + 'static {
    /// Handles one push; returns the number of Applications it triggered.
    fn push(&self, push: Push) -> impl Future<Output = usize> + Send;

    /// Handles one pull-request event; returns the number of Previews it
    /// woke. By default nothing listens.
    fn pull_request(&self, pull_request: PullRequest) -> impl Future<Output = usize> + Send {
        let _ = pull_request;
        async { 0 }
    }
}

/// The webhook secret could not be had.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("cannot read the webhook secret file {path}: {reason}")]
    Unreadable { path: String, reason: String },
    #[error(
        "the webhook secret file {path} is empty: put in it the secret the Git host signs \
         webhooks with"
    )]
    EmptyFile { path: String },
    #[error("the webhook secret is empty")]
    Empty,
}

/// Reads the shared secret from `path` (`--webhook-secret-file`), without a
/// trailing newline.
pub fn read_secret_file(path: &Path) -> Result<Secret, SecretError> {
    let shown = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| SecretError::Unreadable {
        path: shown.clone(),
        reason: e.to_string(),
    })?;
    let text = String::from_utf8(bytes).map_err(|_| SecretError::Unreadable {
        path: shown.clone(),
        reason: "it is not UTF-8 text".to_string(),
    })?;
    let secret = text.strip_suffix('\n').unwrap_or(&text);
    let secret = secret.strip_suffix('\r').unwrap_or(secret);
    if secret.is_empty() {
        return Err(SecretError::EmptyFile { path: shown });
    }
    Ok(Secret::new(secret))
}

/// What the HTTP handler needs: the secret, where pushes go, metrics.
pub struct Receiver<S> {
    secret: Secret,
    sink: S,
    metrics: Arc<Metrics>,
    body_limit: usize,
}

impl<S: PushSink> Receiver<S> {
    pub fn new(secret: Secret, sink: S, metrics: Arc<Metrics>) -> Result<Receiver<S>, SecretError> {
        if secret.expose().is_empty() {
            return Err(SecretError::Empty);
        }
        Ok(Receiver {
            secret,
            sink,
            metrics,
            body_limit: DEFAULT_BODY_LIMIT,
        })
    }

    /// A receiver whose secret comes from `path` (see [`read_secret_file`]).
    pub fn from_secret_file(
        path: &Path,
        sink: S,
        metrics: Arc<Metrics>,
    ) -> Result<Receiver<S>, SecretError> {
        Receiver::new(read_secret_file(path)?, sink, metrics)
    }

    /// Bodies above `bytes` are refused with 413 (default [`DEFAULT_BODY_LIMIT`]).
    pub fn with_body_limit(mut self, bytes: usize) -> Receiver<S> {
        self.body_limit = bytes;
        self
    }
}

impl<S> fmt::Debug for Receiver<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Receiver")
            .field("secret", &self.secret)
            .field("body_limit", &self.body_limit)
            .finish_non_exhaustive()
    }
}

/// `POST /hooks/{provider}`, to merge into the controller's HTTP router.
pub fn router<S: PushSink>(receiver: Arc<Receiver<S>>) -> Router {
    let limit = receiver.body_limit;
    Router::new()
        .route("/hooks/{provider}", post(receive::<S>))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(receiver)
}

async fn receive<S: PushSink>(
    State(receiver): State<Arc<Receiver<S>>>,
    axum::extract::Path(name): axum::extract::Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let Some(provider) = Provider::from_name(&name) else {
        let known: Vec<&str> = Provider::ALL.iter().map(|p| p.name()).collect();
        return reply(
            StatusCode::NOT_FOUND,
            json!({ "error": format!("unknown webhook provider `{name}`; known: {}", known.join(", ")) }),
        );
    };
    let metrics = &receiver.metrics;
    let labels = ProviderLabels {
        provider: provider.name().to_string(),
    };
    metrics.webhook_received.get_or_create(&labels).inc();
    let reject = |status: StatusCode, reason: &str, message: String| {
        warn!(%provider, reason, error = %message, "webhook delivery rejected");
        metrics
            .webhook_rejected
            .get_or_create(&RejectLabels {
                provider: provider.name().to_string(),
                reason: reason.to_string(),
            })
            .inc();
        reply(status, json!({ "error": message }))
    };

    let body = match body {
        Ok(body) => body,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return reject(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too-large",
                format!("the body is larger than {} bytes", receiver.body_limit),
            );
        }
        Err(rejection) => {
            return reject(
                StatusCode::BAD_REQUEST,
                "payload",
                format!("reading the body: {rejection}"),
            );
        }
    };
    if let Err(error) = verify(provider, &receiver.secret, &headers, &body) {
        return reject(StatusCode::UNAUTHORIZED, "signature", error.to_string());
    }
    match event(provider, &headers) {
        Err(error) => return reject(StatusCode::BAD_REQUEST, "payload", error.to_string()),
        Ok(Event::Other(event)) => {
            info!(%provider, %event, "webhook event ignored: not a push");
            return reply(StatusCode::OK, json!({ "accepted": 0, "ignored": event }));
        }
        Ok(Event::PullRequest) => {
            let pull_request = match parse_pull_request(provider, &body) {
                Ok(pull_request) => pull_request,
                Err(error) => return reject(StatusCode::BAD_REQUEST, "payload", error.to_string()),
            };
            let repository = pull_request
                .repository_urls
                .iter()
                .find_map(|url| repository_identity(url))
                .unwrap_or_default();
            let (number, action) = (pull_request.number, pull_request.action.clone());
            if !pull_request.moves_previews() {
                info!(%provider, event = "pull_request", %repository, number, %action, "webhook pull request ignored: the action moves no preview");
                return reply(StatusCode::OK, json!({ "accepted": 0, "ignored": action }));
            }
            let woken = receiver.sink.pull_request(pull_request).await;
            info!(%provider, event = "pull_request", %repository, number, %action, woken, "webhook pull request");
            metrics
                .webhook_triggered
                .get_or_create(&labels)
                .inc_by(woken as u64);
            return reply(StatusCode::ACCEPTED, json!({ "accepted": woken }));
        }
        Ok(Event::Push) => {}
    }
    let pushes = match parse_pushes(provider, &body) {
        Ok(pushes) => pushes,
        Err(error) => return reject(StatusCode::BAD_REQUEST, "payload", error.to_string()),
    };
    let mut accepted = 0;
    for push in pushes {
        let repository = push
            .repository_urls
            .iter()
            .find_map(|url| repository_identity(url))
            .unwrap_or_default();
        let reference = push.reference.clone();
        let triggered = receiver.sink.push(push).await;
        info!(%provider, event = "push", %repository, %reference, triggered, "webhook push");
        accepted += triggered;
    }
    metrics
        .webhook_triggered
        .get_or_create(&labels)
        .inc_by(accepted as u64);
    reply(StatusCode::ACCEPTED, json!({ "accepted": accepted }))
}

fn reply(status: StatusCode, body: Value) -> Response {
    (status, Json(body)).into_response()
}

/// Why a delivery is not authentic. Messages name headers, never values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("missing header {header}: configure the webhook's secret")]
    Missing { header: &'static str },
    #[error("header {header} must start with `{prefix}`")]
    WrongPrefix {
        header: &'static str,
        prefix: &'static str,
    },
    #[error("header {header} is not a hex HMAC-SHA256")]
    Malformed { header: &'static str },
    #[error("header {header} does not match the webhook secret")]
    Mismatch { header: &'static str },
}

/// Whether the delivery comes from someone who knows the secret, by the
/// provider's own scheme.
pub fn verify(
    provider: Provider,
    secret: &Secret,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), SignatureError> {
    match provider {
        Provider::GitHub => verify_hmac(secret, headers, &["X-Hub-Signature-256"], "sha256=", body),
        Provider::Gitea => verify_hmac(
            secret,
            headers,
            &["X-Gitea-Signature", "X-Forgejo-Signature"],
            "",
            body,
        ),
        Provider::BitbucketServer => {
            verify_hmac(secret, headers, &["X-Hub-Signature"], "sha256=", body)
        }
        Provider::Generic => verify_hmac(secret, headers, &["X-Signature"], "sha256=", body),
        Provider::GitLab => {
            let header = "X-Gitlab-Token";
            let token = headers
                .get(header)
                .ok_or(SignatureError::Missing { header })?;
            if same_secret(secret, token.as_bytes()) {
                Ok(())
            } else {
                Err(SignatureError::Mismatch { header })
            }
        }
    }
}

/// Checks the first of `names` present: `<prefix><hex HMAC-SHA256 of body>`.
fn verify_hmac(
    secret: &Secret,
    headers: &HeaderMap,
    names: &[&'static str],
    prefix: &'static str,
    body: &[u8],
) -> Result<(), SignatureError> {
    let Some((header, value)) = names
        .iter()
        .find_map(|name| headers.get(*name).map(|value| (*name, value)))
    else {
        return Err(SignatureError::Missing { header: names[0] });
    };
    let value = value
        .to_str()
        .map_err(|_| SignatureError::Malformed { header })?;
    let hex = value
        .trim()
        .strip_prefix(prefix)
        .ok_or(SignatureError::WrongPrefix { header, prefix })?;
    let signature = decode_hex(hex).ok_or(SignatureError::Malformed { header })?;
    let mut mac = hmac(secret.expose().as_bytes());
    mac.update(body);
    // `verify_slice` compares in constant time.
    mac.verify_slice(&signature)
        .map_err(|_| SignatureError::Mismatch { header })
}

/// Whether `presented` is the secret, in constant time and without telling
/// its length: compares the two values' HMACs under one fixed key.
fn same_secret(secret: &Secret, presented: &[u8]) -> bool {
    const KEY: &[u8] = b"windlass webhook token comparison";
    let mut expected = hmac(KEY);
    expected.update(secret.expose().as_bytes());
    let expected = expected.finalize().into_bytes();
    let mut actual = hmac(KEY);
    actual.update(presented);
    actual.verify_slice(&expected).is_ok()
}

fn hmac(key: &[u8]) -> Hmac<Sha256> {
    Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts keys of any length")
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if text.is_empty() || !text.len().is_multiple_of(2) {
        return None;
    }
    let digit = |b: u8| (b as char).to_digit(16);
    text.as_bytes()
        .chunks(2)
        .map(|pair| Some((digit(pair[0])? * 16 + digit(pair[1])?) as u8))
        .collect()
}

/// What kind of event a delivery is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Push,
    /// GitHub and Gitea `pull_request`, GitLab `Merge Request Hook`.
    PullRequest,
    /// A ping or any other event: acknowledged, triggers nothing.
    Other(String),
}

/// A payload (or an event header) that cannot be read. Messages name the
/// missing or wrong part, never its content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PayloadError(String);

/// The event a delivery announces, from the provider's event header.
pub fn event(provider: Provider, headers: &HeaderMap) -> Result<Event, PayloadError> {
    let (names, pushes, pull_requests): (&[&str], &[&str], &[&str]) = match provider {
        Provider::GitHub => (&["X-GitHub-Event"], &["push"], &["pull_request"]),
        Provider::Gitea => (
            &["X-Gitea-Event", "X-Forgejo-Event"],
            &["push"],
            &["pull_request"],
        ),
        Provider::GitLab => (
            &["X-Gitlab-Event"],
            &["Push Hook", "Tag Push Hook"],
            &["Merge Request Hook"],
        ),
        Provider::BitbucketServer => (&["X-Event-Key"], &["repo:refs_changed"], &[]),
        Provider::Generic => (&["X-Event"], &["push"], &[]),
    };
    let value = names.iter().find_map(|name| headers.get(*name));
    let event = match value {
        None if provider == Provider::Generic => return Ok(Event::Push),
        None => return Err(PayloadError(format!("missing header {}", names[0]))),
        Some(value) => value
            .to_str()
            .map_err(|_| PayloadError(format!("header {} is not text", names[0])))?
            .trim(),
    };
    Ok(if pushes.contains(&event) {
        Event::Push
    } else if pull_requests.contains(&event) {
        Event::PullRequest
    } else {
        Event::Other(event.to_string())
    })
}

/// The pushes a push event's payload reports: one for GitHub, Gitea,
/// GitLab and generic, one per change for Bitbucket Server.
pub fn parse_pushes(provider: Provider, body: &[u8]) -> Result<Vec<Push>, PayloadError> {
    let json = json_object(body)?;
    let push = |reference: &str,
                before: Option<&str>,
                after: &str,
                urls: Vec<String>|
     -> Result<Push, PayloadError> {
        Ok(Push {
            provider,
            repository_urls: urls,
            reference: full_ref(reference)?,
            before: commit(before),
            after: commit(Some(after)),
        })
    };
    // One push per payload, its repository URLs at `url_paths`.
    let single = |url_paths: &[&str]| -> Result<Vec<Push>, PayloadError> {
        let reference = required(&json, "ref")?;
        let before = optional(&json, "before")?;
        let after = required(&json, "after")?;
        Ok(vec![push(
            reference,
            before,
            after,
            urls(&json, url_paths)?,
        )?])
    };
    match provider {
        Provider::GitHub | Provider::Gitea => single(&[
            "repository.clone_url",
            "repository.ssh_url",
            "repository.html_url",
            "repository.git_url",
        ]),
        Provider::GitLab => single(&[
            "project.git_http_url",
            "project.git_ssh_url",
            "project.web_url",
            "repository.git_http_url",
            "repository.git_ssh_url",
            "repository.homepage",
        ]),
        Provider::Generic => single(&["repository"]),
        Provider::BitbucketServer => {
            let clone = match at(&json, "repository.links.clone") {
                Some(Value::Array(links)) => links,
                Some(_) => {
                    return Err(PayloadError(
                        "payload `repository.links.clone` is not a list".to_string(),
                    ));
                }
                None => {
                    return Err(PayloadError(
                        "payload has no `repository.links.clone`".to_string(),
                    ));
                }
            };
            let mut hrefs = Vec::new();
            for (i, link) in clone.iter().enumerate() {
                if let Some(href) = optional(link, "href")
                    .map_err(|e| PayloadError(format!("{e} in `repository.links.clone[{i}]`")))?
                {
                    add_url(&mut hrefs, href);
                }
            }
            if hrefs.is_empty() {
                return Err(PayloadError(
                    "payload names no repository URL (`repository.links.clone[].href`)".to_string(),
                ));
            }
            let changes = match json.get("changes") {
                Some(Value::Array(changes)) => changes,
                Some(_) => return Err(PayloadError("payload `changes` is not a list".to_string())),
                None => return Err(PayloadError("payload has no `changes`".to_string())),
            };
            changes
                .iter()
                .enumerate()
                .map(|(i, change)| {
                    let within = |e: PayloadError| PayloadError(format!("{e} in `changes[{i}]`"));
                    let reference = match optional(change, "ref.id").map_err(within)? {
                        Some(reference) => reference,
                        None => optional(change, "refId").map_err(within)?.ok_or_else(|| {
                            within(PayloadError("payload has no `ref.id`".into()))
                        })?,
                    };
                    push(
                        reference,
                        optional(change, "fromHash").map_err(within)?,
                        required(change, "toHash").map_err(within)?,
                        hrefs.clone(),
                    )
                    .map_err(within)
                })
                .collect()
        }
    }
}

/// The pull request a pull-request event's payload reports.
pub fn parse_pull_request(provider: Provider, body: &[u8]) -> Result<PullRequest, PayloadError> {
    let json = json_object(body)?;
    let (number_path, action_path, url_paths): (&str, &str, &[&str]) = match provider {
        Provider::GitHub | Provider::Gitea => (
            "number",
            "action",
            &[
                "repository.clone_url",
                "repository.ssh_url",
                "repository.html_url",
                "repository.git_url",
            ],
        ),
        Provider::GitLab => (
            "object_attributes.iid",
            "object_attributes.action",
            &[
                "project.git_http_url",
                "project.git_ssh_url",
                "project.web_url",
                "repository.homepage",
            ],
        ),
        Provider::BitbucketServer | Provider::Generic => {
            return Err(PayloadError(format!(
                "{provider} sends no pull-request events windlass reads"
            )));
        }
    };
    let number = match at(&json, number_path) {
        Some(Value::Number(n)) => n.as_u64(),
        Some(_) => None,
        None => return Err(PayloadError(format!("payload has no `{number_path}`"))),
    }
    .ok_or_else(|| PayloadError(format!("payload `{number_path}` is not a positive number")))?;
    Ok(PullRequest {
        provider,
        repository_urls: urls(&json, url_paths)?,
        number,
        action: required(&json, action_path)?.to_string(),
    })
}

/// The body as a JSON object. Parsing into a `Value` first: its errors say
/// where the syntax broke, and never quote the body.
fn json_object(body: &[u8]) -> Result<Value, PayloadError> {
    if body.starts_with(b"payload=") {
        return Err(PayloadError(
            "payload is form-encoded: set the webhook's content type to application/json"
                .to_string(),
        ));
    }
    let json: Value = serde_json::from_slice(body)
        .map_err(|e| PayloadError(format!("payload is not JSON: {e}")))?;
    if !json.is_object() {
        return Err(PayloadError("payload is not a JSON object".to_string()));
    }
    Ok(json)
}

/// The value at a dotted path (`repository.clone_url`).
fn at<'a>(json: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.')
        .try_fold(json, |value, key| value.get(key))
        .filter(|value| !value.is_null())
}

fn optional<'a>(json: &'a Value, path: &str) -> Result<Option<&'a str>, PayloadError> {
    match at(json, path) {
        None => Ok(None),
        Some(Value::String(text)) => Ok(Some(text)),
        Some(_) => Err(PayloadError(format!("payload `{path}` is not a string"))),
    }
}

fn required<'a>(json: &'a Value, path: &str) -> Result<&'a str, PayloadError> {
    optional(json, path)?.ok_or_else(|| PayloadError(format!("payload has no `{path}`")))
}

/// The URLs at `paths`, in order, without empty or repeated ones; at least one.
fn urls(json: &Value, paths: &[&str]) -> Result<Vec<String>, PayloadError> {
    let mut found = Vec::new();
    for path in paths {
        if let Some(url) = optional(json, path)? {
            add_url(&mut found, url);
        }
    }
    if found.is_empty() {
        let looked_at: Vec<String> = paths.iter().map(|p| format!("`{p}`")).collect();
        return Err(PayloadError(format!(
            "payload names no repository URL ({})",
            looked_at.join(", ")
        )));
    }
    Ok(found)
}

fn add_url(urls: &mut Vec<String>, url: &str) {
    let url = url.trim();
    if !url.is_empty() && !urls.iter().any(|u| u == url) {
        urls.push(url.to_string());
    }
}

fn full_ref(reference: &str) -> Result<String, PayloadError> {
    match reference.strip_prefix("refs/") {
        Some(rest) if !rest.is_empty() => Ok(reference.to_string()),
        _ => Err(PayloadError(
            "payload `ref` is not a full ref like refs/heads/main or refs/tags/v1.0.0".to_string(),
        )),
    }
}

/// A commit id, or `None` for the all-zeros id (or nothing) that stands for
/// "no commit": a created ref's `before`, a deleted ref's `after`.
fn commit(id: Option<&str>) -> Option<String> {
    let id = id?.trim();
    if id.bytes().all(|b| b == b'0') {
        return None;
    }
    Some(id.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::sync::Mutex;

    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    use super::*;

    /// The secret of GitHub's documented test vector.
    const SECRET: &str = "It's a Secret to Everybody";
    const ZEROS: &str = "0000000000000000000000000000000000000000";

    fn hex_hmac(secret: &str, body: &[u8]) -> String {
        let mut mac = hmac(secret.as_bytes());
        mac.update(body);
        mac.finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(
                axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        map
    }

    fn secret() -> Secret {
        Secret::new(SECRET)
    }

    // ---- sample payloads, trimmed from the providers' documented examples ----

    const GITHUB_PUSH: &str = r#"{
      "ref": "refs/heads/main",
      "before": "6113728f27ae82c7b1a177c8d03f9e96e0adf246",
      "after": "0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c",
      "created": false,
      "deleted": false,
      "forced": false,
      "compare": "https://github.com/Codertocat/Hello-World/compare/6113728f27ae...0d1a26e67d8f",
      "commits": [],
      "repository": {
        "id": 186853002,
        "name": "Hello-World",
        "full_name": "Codertocat/Hello-World",
        "private": false,
        "html_url": "https://github.com/Codertocat/Hello-World",
        "url": "https://github.com/Codertocat/Hello-World",
        "git_url": "git://github.com/Codertocat/Hello-World.git",
        "ssh_url": "git@github.com:Codertocat/Hello-World.git",
        "clone_url": "https://github.com/Codertocat/Hello-World.git",
        "default_branch": "main"
      },
      "pusher": { "name": "Codertocat", "email": "21031067+Codertocat@users.noreply.github.com" },
      "sender": { "login": "Codertocat", "id": 21031067 }
    }"#;

    const GITHUB_PING: &str = r#"{
      "zen": "Responsive is better than fast.",
      "hook_id": 109948940,
      "hook": { "type": "Repository", "events": ["push"], "active": true }
    }"#;

    const GITEA_PUSH: &str = r#"{
      "ref": "refs/tags/v1.2.0",
      "before": "0000000000000000000000000000000000000000",
      "after": "BFFEB74224043BA2FEB48D137756C8A9331C449A",
      "compare_url": "http://localhost:3000/gitea/webhooks/compare/28e1879d029c...bffeb7422404",
      "commits": [],
      "repository": {
        "id": 140,
        "owner": { "id": 1, "login": "gitea" },
        "name": "webhooks",
        "full_name": "gitea/webhooks",
        "private": false,
        "html_url": "http://localhost:3000/gitea/webhooks",
        "ssh_url": "ssh://gitea@localhost:2222/gitea/webhooks.git",
        "clone_url": "http://localhost:3000/gitea/webhooks.git",
        "default_branch": "main"
      },
      "pusher": { "id": 1, "login": "gitea" },
      "sender": { "id": 1, "login": "gitea" }
    }"#;

    const GITLAB_PUSH: &str = r#"{
      "object_kind": "push",
      "event_name": "push",
      "before": "95790bf891e76fee5e1747ab589903a6a1f80f22",
      "after": "da1560886d4f094c3e6c9ef40349f7d38b5d27d7",
      "ref": "refs/heads/master",
      "ref_protected": true,
      "checkout_sha": "da1560886d4f094c3e6c9ef40349f7d38b5d27d7",
      "user_name": "John Smith",
      "project_id": 15,
      "project": {
        "id": 15,
        "name": "Diaspora",
        "web_url": "http://example.com/mike/diaspora",
        "git_ssh_url": "git@example.com:mike/diaspora.git",
        "git_http_url": "http://example.com/mike/diaspora.git",
        "namespace": "Mike",
        "path_with_namespace": "mike/diaspora",
        "default_branch": "master"
      },
      "repository": {
        "name": "Diaspora",
        "url": "git@example.com:mike/diaspora.git",
        "homepage": "http://example.com/mike/diaspora",
        "git_http_url": "http://example.com/mike/diaspora.git",
        "git_ssh_url": "git@example.com:mike/diaspora.git"
      },
      "commits": [],
      "total_commits_count": 4
    }"#;

    const GITLAB_TAG_DELETED: &str = r#"{
      "object_kind": "tag_push",
      "before": "82b3d5ae55f7080f1e6022629cdb57bfae7cccc7",
      "after": "0000000000000000000000000000000000000000",
      "ref": "refs/tags/v1.0.0",
      "project": {
        "web_url": "http://example.com/jsmith/example",
        "git_ssh_url": "git@example.com:jsmith/example.git",
        "git_http_url": "http://example.com/jsmith/example.git"
      },
      "total_commits_count": 0
    }"#;

    const BITBUCKET_REFS_CHANGED: &str = r#"{
      "eventKey": "repo:refs_changed",
      "date": "2017-09-19T09:58:11+1000",
      "actor": { "name": "admin", "emailAddress": "admin@example.com", "id": 1, "slug": "admin" },
      "repository": {
        "slug": "repository",
        "id": 84,
        "name": "repository",
        "scmId": "git",
        "project": { "key": "PROJ", "id": 84, "name": "project" },
        "links": {
          "clone": [
            { "href": "ssh://git@bitbucket.example.com:7999/proj/repository.git", "name": "ssh" },
            { "href": "https://admin@bitbucket.example.com/scm/proj/repository.git", "name": "http" }
          ],
          "self": [ { "href": "https://bitbucket.example.com/projects/PROJ/repos/repository/browse" } ]
        }
      },
      "changes": [
        {
          "ref": { "id": "refs/heads/master", "displayId": "master", "type": "BRANCH" },
          "refId": "refs/heads/master",
          "fromHash": "ecddabb624f6f5ba43816f5926e580a5f680a932",
          "toHash": "178864a7d521b6f5e720b386b2c2b0ef8563e0dc",
          "type": "UPDATE"
        },
        {
          "ref": { "id": "refs/tags/v2.0.0", "displayId": "v2.0.0", "type": "TAG" },
          "refId": "refs/tags/v2.0.0",
          "fromHash": "0000000000000000000000000000000000000000",
          "toHash": "178864a7d521b6f5e720b386b2c2b0ef8563e0dc",
          "type": "ADD"
        },
        {
          "ref": { "id": "refs/heads/old", "displayId": "old", "type": "BRANCH" },
          "refId": "refs/heads/old",
          "fromHash": "ecddabb624f6f5ba43816f5926e580a5f680a932",
          "toHash": "0000000000000000000000000000000000000000",
          "type": "DELETE"
        }
      ]
    }"#;

    const BITBUCKET_PING: &str = r#"{ "test": true }"#;

    const GENERIC_PUSH: &str = r#"{
      "repository": "https://git.example.com/org/deploy.git",
      "ref": "refs/heads/main",
      "before": "6113728f27ae82c7b1a177c8d03f9e96e0adf246",
      "after": "0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c",
      "pipeline": 4711
    }"#;

    // ---- signatures ----

    #[test]
    fn the_hmac_matches_githubs_documented_test_vector() {
        assert_eq!(
            hex_hmac(SECRET, b"Hello, World!"),
            "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        );
        let signed = headers(&[(
            "X-Hub-Signature-256",
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
        )]);
        assert_eq!(
            verify(Provider::GitHub, &secret(), &signed, b"Hello, World!"),
            Ok(())
        );
    }

    #[test]
    fn hmac_signatures_are_checked_per_provider() {
        let body = GITHUB_PUSH.as_bytes();
        let good = hex_hmac(SECRET, body);
        let bad = hex_hmac("another secret", body);
        for (provider, header, prefix) in [
            (Provider::GitHub, "X-Hub-Signature-256", "sha256="),
            (Provider::Gitea, "X-Gitea-Signature", ""),
            (Provider::Gitea, "X-Forgejo-Signature", ""),
            (Provider::BitbucketServer, "X-Hub-Signature", "sha256="),
            (Provider::Generic, "X-Signature", "sha256="),
        ] {
            let check = |value: &str, body: &[u8]| {
                verify(provider, &secret(), &headers(&[(header, value)]), body)
            };
            let case = format!("{provider} {header}");
            assert_eq!(check(&format!("{prefix}{good}"), body), Ok(()), "{case}");
            assert_eq!(
                check(&format!("{prefix}{}", good.to_uppercase()), body),
                Ok(()),
                "{case}: hex in capitals"
            );
            assert_eq!(
                check(&format!("{prefix}{bad}"), body),
                Err(SignatureError::Mismatch { header }),
                "{case}: another secret"
            );
            assert_eq!(
                check(&format!("{prefix}{good}"), b"{\"ref\":\"refs/heads/evil\"}"),
                Err(SignatureError::Mismatch { header }),
                "{case}: another body"
            );
            assert_eq!(
                check(&format!("{prefix}{}", &good[..62]), body),
                Err(SignatureError::Mismatch { header }),
                "{case}: truncated"
            );
            assert_eq!(
                check(&format!("{prefix}not-hex"), body),
                Err(SignatureError::Malformed { header }),
                "{case}"
            );
            if prefix.is_empty() {
                // The bare-hex schemes do not take GitHub's prefix.
                assert_eq!(
                    check(&format!("sha256={good}"), body),
                    Err(SignatureError::Malformed { header }),
                    "{case}"
                );
            } else {
                assert_eq!(
                    check(&format!("sha1={good}"), body),
                    Err(SignatureError::WrongPrefix { header, prefix }),
                    "{case}: wrong prefix"
                );
                assert_eq!(
                    check(&good, body),
                    Err(SignatureError::WrongPrefix { header, prefix }),
                    "{case}: no prefix"
                );
            }
            let missing = verify(provider, &secret(), &HeaderMap::new(), body).unwrap_err();
            assert!(
                matches!(missing, SignatureError::Missing { .. }),
                "{case}: {missing}"
            );
        }
    }

    #[test]
    fn a_signature_in_another_providers_header_is_missing() {
        let body = b"{}";
        let value = format!("sha256={}", hex_hmac(SECRET, body));
        let github_header = headers(&[("X-Hub-Signature-256", &value)]);
        assert_eq!(
            verify(Provider::BitbucketServer, &secret(), &github_header, body),
            Err(SignatureError::Missing {
                header: "X-Hub-Signature"
            })
        );
        assert_eq!(
            verify(Provider::Generic, &secret(), &github_header, body),
            Err(SignatureError::Missing {
                header: "X-Signature"
            })
        );
    }

    #[test]
    fn gitlab_tokens_are_compared_whole() {
        let check = |token: Option<&str>| {
            let map = match token {
                Some(token) => headers(&[("X-Gitlab-Token", token)]),
                None => HeaderMap::new(),
            };
            verify(Provider::GitLab, &secret(), &map, b"{}")
        };
        let header = "X-Gitlab-Token";
        assert_eq!(check(Some(SECRET)), Ok(()));
        assert_eq!(
            check(Some("It's a Secret")),
            Err(SignatureError::Mismatch { header })
        );
        assert_eq!(
            check(Some(&format!("{SECRET}!"))),
            Err(SignatureError::Mismatch { header })
        );
        assert_eq!(check(Some("")), Err(SignatureError::Mismatch { header }));
        assert_eq!(check(None), Err(SignatureError::Missing { header }));
        assert!(same_secret(&secret(), SECRET.as_bytes()));
        assert!(!same_secret(&secret(), b"it's a secret to everybody"));
    }

    #[test]
    fn signature_errors_name_the_header_and_never_a_value() {
        let good = hex_hmac(SECRET, b"{}");
        let messages = [
            verify(Provider::GitHub, &secret(), &HeaderMap::new(), b"{}"),
            verify(
                Provider::GitHub,
                &secret(),
                &headers(&[("X-Hub-Signature-256", &format!("sha1={good}"))]),
                b"{}",
            ),
            verify(
                Provider::GitLab,
                &secret(),
                &headers(&[("X-Gitlab-Token", "guess")]),
                b"{}",
            ),
        ]
        .map(|result| result.unwrap_err().to_string());
        assert_eq!(
            messages[0],
            "missing header X-Hub-Signature-256: configure the webhook's secret"
        );
        assert_eq!(
            messages[1],
            "header X-Hub-Signature-256 must start with `sha256=`"
        );
        assert_eq!(
            messages[2],
            "header X-Gitlab-Token does not match the webhook secret"
        );
        for message in messages {
            assert!(!message.contains(&good) && !message.contains("guess"));
            assert!(!message.contains(SECRET));
        }
    }

    // ---- events ----

    #[test]
    fn events_are_read_from_each_providers_header() {
        let event_of = |provider, pairs: &[(&str, &str)]| event(provider, &headers(pairs));
        let other = |name: &str| Ok(Event::Other(name.to_string()));
        assert_eq!(
            event_of(Provider::GitHub, &[("X-GitHub-Event", "push")]),
            Ok(Event::Push)
        );
        assert_eq!(
            event_of(Provider::GitHub, &[("X-GitHub-Event", "ping")]),
            other("ping")
        );
        assert_eq!(
            event_of(Provider::GitHub, &[]),
            Err(PayloadError("missing header X-GitHub-Event".into()))
        );
        assert_eq!(
            event_of(Provider::Gitea, &[("X-Gitea-Event", "push")]),
            Ok(Event::Push)
        );
        assert_eq!(
            event_of(Provider::Gitea, &[("X-Forgejo-Event", "push")]),
            Ok(Event::Push)
        );
        assert_eq!(
            event_of(Provider::Gitea, &[("X-Forgejo-Event", "issues")]),
            other("issues")
        );
        assert_eq!(
            event_of(Provider::GitLab, &[("X-Gitlab-Event", "Push Hook")]),
            Ok(Event::Push)
        );
        assert_eq!(
            event_of(Provider::GitLab, &[("X-Gitlab-Event", "Tag Push Hook")]),
            Ok(Event::Push)
        );
        assert_eq!(
            event_of(
                Provider::GitLab,
                &[("X-Gitlab-Event", "Merge Request Hook")]
            ),
            Ok(Event::PullRequest)
        );
        assert_eq!(
            event_of(
                Provider::BitbucketServer,
                &[("X-Event-Key", "repo:refs_changed")]
            ),
            Ok(Event::Push)
        );
        assert_eq!(
            event_of(
                Provider::BitbucketServer,
                &[("X-Event-Key", "diagnostics:ping")]
            ),
            other("diagnostics:ping")
        );
        assert_eq!(event_of(Provider::Generic, &[]), Ok(Event::Push));
        assert_eq!(
            event_of(Provider::Generic, &[("X-Event", "push")]),
            Ok(Event::Push)
        );
        assert_eq!(
            event_of(Provider::Generic, &[("X-Event", "ping")]),
            other("ping")
        );
    }

    #[test]
    fn pull_request_events_are_read_from_each_providers_header() {
        let event_of = |provider, pairs: &[(&str, &str)]| event(provider, &headers(pairs));
        for (provider, name, value) in [
            (Provider::GitHub, "X-GitHub-Event", "pull_request"),
            (Provider::Gitea, "X-Gitea-Event", "pull_request"),
            (Provider::Gitea, "X-Forgejo-Event", "pull_request"),
            (Provider::GitLab, "X-Gitlab-Event", "Merge Request Hook"),
        ] {
            assert_eq!(
                event_of(provider, &[(name, value)]),
                Ok(Event::PullRequest),
                "{provider}"
            );
        }
        assert_eq!(
            event_of(Provider::Generic, &[("X-Event", "pull_request")]),
            Ok(Event::Other("pull_request".into()))
        );
    }

    // ---- payloads ----

    const GITHUB_PULL_REQUEST: &str = r#"{
      "action": "synchronize",
      "number": 2,
      "pull_request": { "number": 2, "state": "open", "head": { "ref": "changes", "sha": "ec26c3e57ca3a959ca5aad62de7213c562f8c821" } },
      "repository": {
        "full_name": "Codertocat/Hello-World",
        "html_url": "https://github.com/Codertocat/Hello-World",
        "git_url": "git://github.com/Codertocat/Hello-World.git",
        "ssh_url": "git@github.com:Codertocat/Hello-World.git",
        "clone_url": "https://github.com/Codertocat/Hello-World.git"
      }
    }"#;

    const GITEA_PULL_REQUEST: &str = r#"{
      "action": "opened",
      "number": 12,
      "pull_request": { "id": 30, "number": 12, "state": "open" },
      "repository": {
        "full_name": "gitea/webhooks",
        "html_url": "http://localhost:3000/gitea/webhooks",
        "ssh_url": "ssh://gitea@localhost:2222/gitea/webhooks.git",
        "clone_url": "http://localhost:3000/gitea/webhooks.git"
      }
    }"#;

    const GITLAB_MERGE_REQUEST: &str = r#"{
      "object_kind": "merge_request",
      "event_type": "merge_request",
      "project": {
        "id": 1,
        "web_url": "http://example.com/gitlabhq/gitlab-test",
        "git_ssh_url": "git@example.com:gitlabhq/gitlab-test.git",
        "git_http_url": "http://example.com/gitlabhq/gitlab-test.git"
      },
      "object_attributes": { "id": 99, "iid": 1, "state": "opened", "action": "open" },
      "repository": { "name": "Gitlab Test", "homepage": "http://example.com/gitlabhq/gitlab-test" }
    }"#;

    #[test]
    fn pull_request_payloads_are_read() {
        let github = parse_pull_request(Provider::GitHub, GITHUB_PULL_REQUEST.as_bytes()).unwrap();
        assert_eq!(
            github,
            PullRequest {
                provider: Provider::GitHub,
                repository_urls: vec![
                    "https://github.com/Codertocat/Hello-World.git".into(),
                    "git@github.com:Codertocat/Hello-World.git".into(),
                    "https://github.com/Codertocat/Hello-World".into(),
                    "git://github.com/Codertocat/Hello-World.git".into(),
                ],
                number: 2,
                action: "synchronize".into(),
            }
        );
        assert!(github.moves_previews());
        let gitea = parse_pull_request(Provider::Gitea, GITEA_PULL_REQUEST.as_bytes()).unwrap();
        assert_eq!((gitea.number, gitea.action.as_str()), (12, "opened"));
        assert_eq!(
            gitea.repository_urls[0],
            "http://localhost:3000/gitea/webhooks.git"
        );
        let gitlab = parse_pull_request(Provider::GitLab, GITLAB_MERGE_REQUEST.as_bytes()).unwrap();
        assert_eq!(
            gitlab,
            PullRequest {
                provider: Provider::GitLab,
                repository_urls: vec![
                    "http://example.com/gitlabhq/gitlab-test.git".into(),
                    "git@example.com:gitlabhq/gitlab-test.git".into(),
                    "http://example.com/gitlabhq/gitlab-test".into(),
                ],
                number: 1,
                action: "open".into(),
            }
        );
        assert!(gitlab.moves_previews());
        let labeled = PullRequest {
            action: "labeled".into(),
            ..github
        };
        assert!(!labeled.moves_previews());
    }

    #[test]
    fn malformed_pull_request_payloads_name_what_is_wrong() {
        let error = |provider, body: &str| {
            parse_pull_request(provider, body.as_bytes())
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            error(
                Provider::GitHub,
                r#"{"action": "opened", "repository": {"clone_url": "https://h/o/r"}}"#
            ),
            "payload has no `number`"
        );
        assert_eq!(
            error(
                Provider::GitHub,
                r#"{"action": "opened", "number": "7", "repository": {"clone_url": "https://h/o/r"}}"#
            ),
            "payload `number` is not a positive number"
        );
        assert_eq!(
            error(
                Provider::GitHub,
                r#"{"number": 7, "repository": {"clone_url": "https://h/o/r"}}"#
            ),
            "payload has no `action`"
        );
        assert!(
            error(
                Provider::GitLab,
                r#"{"object_attributes": {"iid": 1, "action": "open"}}"#
            )
            .starts_with("payload names no repository URL"),
        );
        assert_eq!(
            error(Provider::Generic, "{}"),
            "generic sends no pull-request events windlass reads"
        );
    }

    fn parse(provider: Provider, body: &str) -> Result<Vec<Push>, PayloadError> {
        parse_pushes(provider, body.as_bytes())
    }

    #[test]
    fn github_push_payloads_are_read() {
        let pushes = parse(Provider::GitHub, GITHUB_PUSH).unwrap();
        assert_eq!(
            pushes,
            vec![Push {
                provider: Provider::GitHub,
                repository_urls: vec![
                    "https://github.com/Codertocat/Hello-World.git".into(),
                    "git@github.com:Codertocat/Hello-World.git".into(),
                    "https://github.com/Codertocat/Hello-World".into(),
                    "git://github.com/Codertocat/Hello-World.git".into(),
                ],
                reference: "refs/heads/main".into(),
                before: Some("6113728f27ae82c7b1a177c8d03f9e96e0adf246".into()),
                after: Some("0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c".into()),
            }]
        );
        let identities: std::collections::BTreeSet<_> = pushes[0]
            .repository_urls
            .iter()
            .map(|url| repository_identity(url))
            .collect();
        assert_eq!(
            identities.into_iter().collect::<Vec<_>>(),
            vec![Some("github.com/codertocat/hello-world".to_string())]
        );
    }

    #[test]
    fn gitea_push_payloads_are_read_and_zeros_mean_a_new_ref() {
        let pushes = parse(Provider::Gitea, GITEA_PUSH).unwrap();
        assert_eq!(
            pushes,
            vec![Push {
                provider: Provider::Gitea,
                repository_urls: vec![
                    "http://localhost:3000/gitea/webhooks.git".into(),
                    "ssh://gitea@localhost:2222/gitea/webhooks.git".into(),
                    "http://localhost:3000/gitea/webhooks".into(),
                ],
                reference: "refs/tags/v1.2.0".into(),
                before: None,
                after: Some("bffeb74224043ba2feb48d137756c8a9331c449a".into()),
            }]
        );
    }

    #[test]
    fn gitlab_push_payloads_are_read_and_zeros_mean_a_deleted_ref() {
        let pushes = parse(Provider::GitLab, GITLAB_PUSH).unwrap();
        assert_eq!(
            pushes,
            vec![Push {
                provider: Provider::GitLab,
                repository_urls: vec![
                    "http://example.com/mike/diaspora.git".into(),
                    "git@example.com:mike/diaspora.git".into(),
                    "http://example.com/mike/diaspora".into(),
                ],
                reference: "refs/heads/master".into(),
                before: Some("95790bf891e76fee5e1747ab589903a6a1f80f22".into()),
                after: Some("da1560886d4f094c3e6c9ef40349f7d38b5d27d7".into()),
            }]
        );
        let deleted = parse(Provider::GitLab, GITLAB_TAG_DELETED).unwrap();
        assert_eq!(deleted[0].reference, "refs/tags/v1.0.0");
        assert_eq!(
            deleted[0].before.as_deref(),
            Some("82b3d5ae55f7080f1e6022629cdb57bfae7cccc7")
        );
        assert_eq!(deleted[0].after, None);
    }

    #[test]
    fn bitbucket_server_payloads_give_one_push_per_change() {
        let pushes = parse(Provider::BitbucketServer, BITBUCKET_REFS_CHANGED).unwrap();
        let urls = vec![
            "ssh://git@bitbucket.example.com:7999/proj/repository.git".to_string(),
            "https://admin@bitbucket.example.com/scm/proj/repository.git".to_string(),
        ];
        let summary: Vec<_> = pushes
            .iter()
            .map(|p| (p.reference.as_str(), p.before.is_some(), p.after.is_some()))
            .collect();
        assert_eq!(
            summary,
            vec![
                ("refs/heads/master", true, true),
                ("refs/tags/v2.0.0", false, true),
                ("refs/heads/old", true, false),
            ]
        );
        assert!(pushes.iter().all(|p| p.repository_urls == urls));
        assert!(
            pushes
                .iter()
                .all(|p| p.provider == Provider::BitbucketServer)
        );
        assert_eq!(
            pushes[0].after.as_deref(),
            Some("178864a7d521b6f5e720b386b2c2b0ef8563e0dc")
        );
    }

    #[test]
    fn generic_payloads_are_read() {
        let pushes = parse(Provider::Generic, GENERIC_PUSH).unwrap();
        assert_eq!(
            pushes,
            vec![Push {
                provider: Provider::Generic,
                repository_urls: vec!["https://git.example.com/org/deploy.git".into()],
                reference: "refs/heads/main".into(),
                before: Some("6113728f27ae82c7b1a177c8d03f9e96e0adf246".into()),
                after: Some("0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c".into()),
            }]
        );
        let minimal = parse(
            Provider::Generic,
            &format!(
                r#"{{"repository": "/srv/git/deploy", "ref": "refs/tags/v1", "after": "{ZEROS}"}}"#
            ),
        )
        .unwrap();
        assert_eq!(minimal[0].before, None);
        assert_eq!(minimal[0].after, None);
    }

    #[test]
    fn malformed_payloads_name_what_is_wrong() {
        let error = |provider, body: &str| parse(provider, body).unwrap_err().to_string();
        let without = |key: &str| {
            let mut json: Value = serde_json::from_str(GITHUB_PUSH).unwrap();
            json.as_object_mut().unwrap().remove(key);
            json.to_string()
        };
        assert_eq!(
            error(Provider::GitHub, &without("ref")),
            "payload has no `ref`"
        );
        assert_eq!(
            error(Provider::Gitea, &without("after")),
            "payload has no `after`"
        );
        assert_eq!(
            error(Provider::GitHub, &without("repository")),
            "payload names no repository URL (`repository.clone_url`, `repository.ssh_url`, \
             `repository.html_url`, `repository.git_url`)"
        );
        assert_eq!(
            error(
                Provider::GitHub,
                &GITHUB_PUSH.replace("\"refs/heads/main\"", "42")
            ),
            "payload `ref` is not a string"
        );
        assert_eq!(
            error(
                Provider::Generic,
                &GENERIC_PUSH.replace("refs/heads/main", "main")
            ),
            "payload `ref` is not a full ref like refs/heads/main or refs/tags/v1.0.0"
        );
        assert_eq!(
            error(
                Provider::GitLab,
                r#"{"ref": "refs/heads/main", "after": "abc"}"#
            ),
            "payload names no repository URL (`project.git_http_url`, `project.git_ssh_url`, \
             `project.web_url`, `repository.git_http_url`, `repository.git_ssh_url`, \
             `repository.homepage`)"
        );
        assert_eq!(
            error(
                Provider::Generic,
                r#"{"ref": "refs/heads/main", "after": "abc"}"#
            ),
            "payload names no repository URL (`repository`)"
        );
        assert_eq!(
            error(Provider::GitHub, "[1, 2]"),
            "payload is not a JSON object"
        );
        let not_json = error(Provider::GitHub, "{\"ref\": hunter2}");
        assert!(not_json.starts_with("payload is not JSON: "), "{not_json}");
        assert!(!not_json.contains("hunter2"), "{not_json}");
        assert_eq!(
            error(
                Provider::GitHub,
                "payload=%7B%22ref%22%3A%22refs%2Fheads%2Fmain%22%7D"
            ),
            "payload is form-encoded: set the webhook's content type to application/json"
        );
        let bitbucket = |from: &str, to: &str| {
            error(
                Provider::BitbucketServer,
                &BITBUCKET_REFS_CHANGED.replace(from, to),
            )
        };
        assert_eq!(
            bitbucket("\"changes\"", "\"changed\""),
            "payload has no `changes`"
        );
        assert_eq!(
            bitbucket("\"clone\"", "\"klone\""),
            "payload has no `repository.links.clone`"
        );
        assert_eq!(
            bitbucket("\"toHash\": \"0000", "\"tooHash\": \"0000"),
            "payload has no `toHash` in `changes[2]`"
        );
        let no_ref = BITBUCKET_REFS_CHANGED
            .replace("\"id\": \"refs/tags/v2.0.0\"", "\"name\": \"v2\"")
            .replace("\"refId\": \"refs/tags/v2.0.0\",", "");
        assert_eq!(
            error(Provider::BitbucketServer, &no_ref),
            "payload has no `ref.id` in `changes[1]`"
        );
    }

    #[test]
    fn a_bitbucket_change_without_ref_id_falls_back_to_ref_id_field() {
        let body = BITBUCKET_REFS_CHANGED.replace(
            r#""ref": { "id": "refs/tags/v2.0.0", "displayId": "v2.0.0", "type": "TAG" },"#,
            "",
        );
        let pushes = parse(Provider::BitbucketServer, &body).unwrap();
        assert_eq!(pushes[1].reference, "refs/tags/v2.0.0");
    }

    // ---- secret file ----

    fn temp_file(name: &str, content: &[u8]) -> std::path::PathBuf {
        let path =
            std::env::temp_dir().join(format!("windlass-webhook-{name}-{}", std::process::id()));
        std::fs::write(&path, content).unwrap();
        path
    }

    #[test]
    fn the_secret_file_is_read_without_its_trailing_newline() {
        let path = temp_file("secret", b"s3cret value\n");
        assert_eq!(read_secret_file(&path).unwrap().expose(), "s3cret value");
        std::fs::write(&path, b"s3cret\r\n").unwrap();
        assert_eq!(read_secret_file(&path).unwrap().expose(), "s3cret");
        std::fs::write(&path, b"\n").unwrap();
        let error = read_secret_file(&path).unwrap_err().to_string();
        assert!(error.contains(&path.display().to_string()), "{error}");
        assert!(error.contains("is empty"), "{error}");
        std::fs::remove_file(&path).unwrap();
        let error = read_secret_file(&path).unwrap_err().to_string();
        assert!(
            error.starts_with(&format!(
                "cannot read the webhook secret file {}: ",
                path.display()
            )),
            "{error}"
        );
    }

    #[test]
    fn a_receiver_never_shows_its_secret() {
        let path = temp_file("debug", b"hunter2\n");
        let receiver =
            Receiver::from_secret_file(&path, RecordingSink::default(), Arc::default()).unwrap();
        std::fs::remove_file(&path).unwrap();
        let shown = format!("{receiver:?}");
        assert!(shown.contains("secret: ***"), "{shown}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(matches!(
            Receiver::new(Secret::new(""), RecordingSink::default(), Arc::default()),
            Err(SecretError::Empty)
        ));
    }

    // ---- HTTP ----

    /// Records pushes and says each triggered `per_push` Applications.
    #[derive(Clone)]
    struct RecordingSink {
        pushes: Arc<Mutex<Vec<Push>>>,
        pull_requests: Arc<Mutex<Vec<PullRequest>>>,
        per_push: usize,
    }

    impl Default for RecordingSink {
        fn default() -> RecordingSink {
            RecordingSink {
                pushes: Arc::default(),
                pull_requests: Arc::default(),
                per_push: 2,
            }
        }
    }

    impl PushSink for RecordingSink {
        async fn push(&self, push: Push) -> usize {
            self.pushes.lock().unwrap().push(push);
            self.per_push
        }

        async fn pull_request(&self, pull_request: PullRequest) -> usize {
            self.pull_requests.lock().unwrap().push(pull_request);
            1
        }
    }

    struct Fixture {
        router: Router,
        pushes: Arc<Mutex<Vec<Push>>>,
        pull_requests: Arc<Mutex<Vec<PullRequest>>>,
        metrics: Arc<Metrics>,
    }

    impl Fixture {
        fn new(body_limit: Option<usize>) -> Fixture {
            let sink = RecordingSink::default();
            let pushes = sink.pushes.clone();
            let pull_requests = sink.pull_requests.clone();
            let metrics = Arc::new(Metrics::default());
            let mut receiver = Receiver::new(secret(), sink, metrics.clone()).unwrap();
            if let Some(limit) = body_limit {
                receiver = receiver.with_body_limit(limit);
            }
            Fixture {
                router: router(Arc::new(receiver)),
                pushes,
                pull_requests,
                metrics,
            }
        }

        async fn post(
            &self,
            path: &str,
            headers: &[(&str, String)],
            body: &[u8],
        ) -> (StatusCode, Value) {
            let mut request = Request::post(path).header("content-type", "application/json");
            for (name, value) in headers {
                request = request.header(*name, value);
            }
            let response = self
                .router
                .clone()
                .oneshot(request.body(Body::from(body.to_vec())).unwrap())
                .await
                .unwrap();
            let status = response.status();
            let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .unwrap();
            let json = serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
            (status, json)
        }

        fn pushes(&self) -> Vec<Push> {
            self.pushes.lock().unwrap().clone()
        }
    }

    /// How each provider delivers: a push, a non-push event, and its signature.
    struct Sender {
        provider: Provider,
        push_event: Option<(&'static str, &'static str)>,
        other_event: (&'static str, &'static str),
        push_body: &'static str,
        other_body: &'static str,
        pushes_in_sample: usize,
    }

    const SENDERS: [Sender; 5] = [
        Sender {
            provider: Provider::GitHub,
            push_event: Some(("X-GitHub-Event", "push")),
            other_event: ("X-GitHub-Event", "ping"),
            push_body: GITHUB_PUSH,
            other_body: GITHUB_PING,
            pushes_in_sample: 1,
        },
        Sender {
            provider: Provider::Gitea,
            push_event: Some(("X-Forgejo-Event", "push")),
            other_event: ("X-Gitea-Event", "issues"),
            push_body: GITEA_PUSH,
            other_body: r#"{"action": "opened"}"#,
            pushes_in_sample: 1,
        },
        Sender {
            provider: Provider::GitLab,
            push_event: Some(("X-Gitlab-Event", "Push Hook")),
            other_event: ("X-Gitlab-Event", "Note Hook"),
            push_body: GITLAB_PUSH,
            other_body: r#"{"object_kind": "note"}"#,
            pushes_in_sample: 1,
        },
        Sender {
            provider: Provider::BitbucketServer,
            push_event: Some(("X-Event-Key", "repo:refs_changed")),
            other_event: ("X-Event-Key", "diagnostics:ping"),
            push_body: BITBUCKET_REFS_CHANGED,
            other_body: BITBUCKET_PING,
            pushes_in_sample: 3,
        },
        Sender {
            provider: Provider::Generic,
            push_event: None,
            other_event: ("X-Event", "ping"),
            push_body: GENERIC_PUSH,
            other_body: "{}",
            pushes_in_sample: 1,
        },
    ];

    impl Sender {
        fn path(&self) -> String {
            format!("/hooks/{}", self.provider)
        }

        /// The authenticity header as the provider sends it, made with `secret`.
        fn signature(&self, secret: &str, body: &[u8]) -> (&'static str, String) {
            let hex = hex_hmac(secret, body);
            match self.provider {
                Provider::GitHub => ("X-Hub-Signature-256", format!("sha256={hex}")),
                Provider::Gitea => ("X-Forgejo-Signature", hex),
                Provider::GitLab => ("X-Gitlab-Token", secret.to_string()),
                Provider::BitbucketServer => ("X-Hub-Signature", format!("sha256={hex}")),
                Provider::Generic => ("X-Signature", format!("sha256={hex}")),
            }
        }

        fn push_headers(&self, secret: &str, body: &[u8]) -> Vec<(&'static str, String)> {
            let mut headers = vec![self.signature(secret, body)];
            if let Some((name, value)) = self.push_event {
                headers.push((name, value.to_string()));
            }
            headers
        }
    }

    #[tokio::test]
    async fn a_signed_push_is_accepted_and_reaches_the_sink() {
        for sender in &SENDERS {
            let fixture = Fixture::new(None);
            let body = sender.push_body.as_bytes();
            let (status, reply) = fixture
                .post(&sender.path(), &sender.push_headers(SECRET, body), body)
                .await;
            let case = sender.provider;
            assert_eq!(status, StatusCode::ACCEPTED, "{case}: {reply}");
            let expected = parse_pushes(sender.provider, body).unwrap();
            assert_eq!(expected.len(), sender.pushes_in_sample, "{case}");
            assert_eq!(fixture.pushes(), expected, "{case}");
            let accepted = 2 * sender.pushes_in_sample;
            assert_eq!(reply, json!({ "accepted": accepted }), "{case}");
            let metrics = fixture.metrics.encode();
            for line in [
                format!("windlass_webhook_received_total{{provider=\"{case}\"}} 1"),
                format!("windlass_webhook_triggered_total{{provider=\"{case}\"}} {accepted}"),
            ] {
                assert!(metrics.contains(&line), "{line} missing from\n{metrics}");
            }
            assert!(
                !metrics.contains("windlass_webhook_rejected_total{"),
                "{case}"
            );
        }
    }

    #[tokio::test]
    async fn a_signed_pull_request_event_reaches_the_sink_unless_its_action_moves_no_preview() {
        let cases = [
            (
                Provider::GitHub,
                "X-GitHub-Event",
                "pull_request",
                GITHUB_PULL_REQUEST,
            ),
            (
                Provider::Gitea,
                "X-Gitea-Event",
                "pull_request",
                GITEA_PULL_REQUEST,
            ),
            (
                Provider::GitLab,
                "X-Gitlab-Event",
                "Merge Request Hook",
                GITLAB_MERGE_REQUEST,
            ),
        ];
        for (provider, name, value, body) in cases {
            let sender = SENDERS.iter().find(|s| s.provider == provider).unwrap();
            let fixture = Fixture::new(None);
            let headers = [
                sender.signature(SECRET, body.as_bytes()),
                (name, value.to_string()),
            ];
            let (status, reply) = fixture
                .post(&sender.path(), &headers, body.as_bytes())
                .await;
            assert_eq!(status, StatusCode::ACCEPTED, "{provider}: {reply}");
            assert_eq!(reply, json!({ "accepted": 1 }), "{provider}");
            let received = fixture.pull_requests.lock().unwrap().clone();
            assert_eq!(
                received,
                vec![parse_pull_request(provider, body.as_bytes()).unwrap()],
                "{provider}"
            );
            assert!(fixture.pushes().is_empty(), "{provider}");

            // Unsigned: refused before anything is read.
            let (status, _) = fixture
                .post(
                    &sender.path(),
                    &[(name, value.to_string())],
                    body.as_bytes(),
                )
                .await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{provider}");
            assert_eq!(fixture.pull_requests.lock().unwrap().len(), 1, "{provider}");
        }

        let fixture = Fixture::new(None);
        let labeled = GITHUB_PULL_REQUEST.replace("synchronize", "labeled");
        let sender = &SENDERS[0];
        let headers = [
            sender.signature(SECRET, labeled.as_bytes()),
            ("X-GitHub-Event", "pull_request".to_string()),
        ];
        let (status, reply) = fixture
            .post(&sender.path(), &headers, labeled.as_bytes())
            .await;
        assert_eq!(status, StatusCode::OK, "{reply}");
        assert_eq!(reply, json!({ "accepted": 0, "ignored": "labeled" }));
        assert!(fixture.pull_requests.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_ping_or_another_event_is_acknowledged_and_triggers_nothing() {
        for sender in &SENDERS {
            let fixture = Fixture::new(None);
            let body = sender.other_body.as_bytes();
            let (name, value) = sender.other_event;
            let headers = [sender.signature(SECRET, body), (name, value.to_string())];
            let (status, reply) = fixture.post(&sender.path(), &headers, body).await;
            let case = sender.provider;
            assert_eq!(status, StatusCode::OK, "{case}: {reply}");
            assert_eq!(reply, json!({ "accepted": 0, "ignored": value }), "{case}");
            assert!(fixture.pushes().is_empty(), "{case}");
        }
    }

    #[tokio::test]
    async fn a_bad_or_missing_signature_is_401_and_triggers_nothing() {
        for sender in &SENDERS {
            let fixture = Fixture::new(None);
            let body = sender.push_body.as_bytes();
            let case = sender.provider;
            let forged = sender.push_headers("not the secret", body);
            let (status, reply) = fixture.post(&sender.path(), &forged, body).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{case}: {reply}");
            let error = reply["error"].as_str().unwrap();
            assert!(
                error.contains("does not match the webhook secret"),
                "{case}: {error}"
            );
            // A ping needs a signature too.
            let (name, value) = sender.other_event;
            let unsigned = [(name, value.to_string())];
            let (status, reply) = fixture
                .post(&sender.path(), &unsigned, sender.other_body.as_bytes())
                .await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{case}: {reply}");
            let error = reply["error"].as_str().unwrap();
            assert!(error.starts_with("missing header X-"), "{case}: {error}");
            assert!(fixture.pushes().is_empty(), "{case}");
            let metrics = fixture.metrics.encode();
            let line = format!(
                "windlass_webhook_rejected_total{{provider=\"{case}\",reason=\"signature\"}} 2"
            );
            assert!(metrics.contains(&line), "{line} missing from\n{metrics}");
        }
    }

    #[tokio::test]
    async fn a_malformed_payload_is_400_naming_what_is_missing() {
        for sender in &SENDERS {
            let fixture = Fixture::new(None);
            let case = sender.provider;
            let mut json: Value = serde_json::from_str(sender.push_body).unwrap();
            let (missing, expected) = if sender.provider == Provider::BitbucketServer {
                ("changes", "payload has no `changes`")
            } else {
                ("ref", "payload has no `ref`")
            };
            json.as_object_mut().unwrap().remove(missing);
            let body = json.to_string().into_bytes();
            let (status, reply) = fixture
                .post(&sender.path(), &sender.push_headers(SECRET, &body), &body)
                .await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{case}: {reply}");
            assert_eq!(reply, json!({ "error": expected }), "{case}");
            let body = b"{\"ref\": ".to_vec();
            let (status, reply) = fixture
                .post(&sender.path(), &sender.push_headers(SECRET, &body), &body)
                .await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{case}: {reply}");
            let error = reply["error"].as_str().unwrap();
            assert!(error.starts_with("payload is not JSON"), "{case}: {error}");
            assert!(fixture.pushes().is_empty(), "{case}");
            let metrics = fixture.metrics.encode();
            let line = format!(
                "windlass_webhook_rejected_total{{provider=\"{case}\",reason=\"payload\"}} 2"
            );
            assert!(metrics.contains(&line), "{line} missing from\n{metrics}");
        }
    }

    #[tokio::test]
    async fn a_missing_event_header_is_400() {
        let fixture = Fixture::new(None);
        let body = GITHUB_PUSH.as_bytes();
        let sender = &SENDERS[0];
        let (status, reply) = fixture
            .post("/hooks/github", &[sender.signature(SECRET, body)], body)
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(reply, json!({ "error": "missing header X-GitHub-Event" }));
    }

    #[tokio::test]
    async fn a_body_above_the_limit_is_413() {
        for sender in &SENDERS {
            let fixture = Fixture::new(None);
            let case = sender.provider;
            // Valid JSON just above 1 MiB, correctly signed: only its size is wrong.
            let padding = "x".repeat(DEFAULT_BODY_LIMIT);
            let body = sender
                .push_body
                .replacen('{', &format!("{{\"padding\": \"{padding}\","), 1)
                .into_bytes();
            assert!(body.len() > DEFAULT_BODY_LIMIT);
            let (status, reply) = fixture
                .post(&sender.path(), &sender.push_headers(SECRET, &body), &body)
                .await;
            assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{case}: {reply}");
            assert_eq!(
                reply,
                json!({ "error": "the body is larger than 1048576 bytes" }),
                "{case}"
            );
            assert!(fixture.pushes().is_empty(), "{case}");
            let metrics = fixture.metrics.encode();
            let line = format!(
                "windlass_webhook_rejected_total{{provider=\"{case}\",reason=\"too-large\"}} 1"
            );
            assert!(metrics.contains(&line), "{line} missing from\n{metrics}");
        }
    }

    #[tokio::test]
    async fn the_body_limit_is_configurable() {
        let fixture = Fixture::new(Some(GITHUB_PUSH.len()));
        let sender = &SENDERS[0];
        let body = GITHUB_PUSH.as_bytes();
        let (status, _) = fixture
            .post("/hooks/github", &sender.push_headers(SECRET, body), body)
            .await;
        assert_eq!(status, StatusCode::ACCEPTED);
        let body = format!("{GITHUB_PUSH} ").into_bytes();
        let (status, reply) = fixture
            .post("/hooks/github", &sender.push_headers(SECRET, &body), &body)
            .await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{reply}");
        assert_eq!(fixture.pushes().len(), 1);
    }

    #[tokio::test]
    async fn an_unknown_provider_is_404_naming_the_known_ones() {
        let fixture = Fixture::new(None);
        let body = GITHUB_PUSH.as_bytes();
        let headers = SENDERS[0].push_headers(SECRET, body);
        let (status, reply) = fixture.post("/hooks/bitbucket", &headers, body).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(
            reply,
            json!({ "error": "unknown webhook provider `bitbucket`; known: github, gitlab, gitea, \
                              bitbucket-server, generic" })
        );
        assert!(fixture.pushes().is_empty());
        assert!(
            !fixture
                .metrics
                .encode()
                .contains("windlass_webhook_received_total{")
        );
        // Each known provider has a route (whatever else is wrong with the delivery).
        for provider in Provider::ALL {
            let (status, _) = fixture
                .post(&format!("/hooks/{provider}"), &[], b"{}")
                .await;
            assert_ne!(status, StatusCode::NOT_FOUND, "{provider}");
        }
    }

    /// The real server path: axum::serve on a TCP port, a raw HTTP/1.1 client.
    #[tokio::test]
    async fn the_router_serves_over_real_http() {
        let fixture = Fixture::new(None);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let server = tokio::spawn(axum::serve(listener, fixture.router.clone()).into_future());

        let sender = &SENDERS[3]; // Bitbucket Server: several pushes in one delivery
        let body = sender.push_body.as_bytes().to_vec();
        let headers = sender.push_headers(SECRET, &body);
        let forged = sender.push_headers("wrong", &body);
        let exchange = move |headers: Vec<(&'static str, String)>, body: Vec<u8>| {
            let mut stream = std::net::TcpStream::connect(address).unwrap();
            let mut request = format!(
                "POST /hooks/bitbucket-server HTTP/1.1\r\nHost: {address}\r\n\
                 Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
                body.len()
            );
            for (name, value) in headers {
                request.push_str(&format!("{name}: {value}\r\n"));
            }
            request.push_str("\r\n");
            stream.write_all(request.as_bytes()).unwrap();
            stream.write_all(&body).unwrap();
            let mut response = String::new();
            stream.read_to_string(&mut response).unwrap();
            response
        };
        let accepted = {
            let body = body.clone();
            tokio::task::spawn_blocking(move || exchange(headers, body))
                .await
                .unwrap()
        };
        let refused = tokio::task::spawn_blocking(move || exchange(forged, body))
            .await
            .unwrap();
        server.abort();

        assert!(
            accepted.starts_with("HTTP/1.1 202 Accepted\r\n"),
            "{accepted}"
        );
        assert!(
            accepted.contains("content-type: application/json"),
            "{accepted}"
        );
        assert!(accepted.ends_with("\r\n\r\n{\"accepted\":6}"), "{accepted}");
        assert!(
            refused.starts_with("HTTP/1.1 401 Unauthorized\r\n"),
            "{refused}"
        );
        let references: Vec<String> = fixture.pushes().into_iter().map(|p| p.reference).collect();
        assert_eq!(
            references,
            ["refs/heads/master", "refs/tags/v2.0.0", "refs/heads/old"]
        );
    }

    /// A `tracing` writer into a shared buffer.
    #[derive(Clone, Default)]
    struct CapturedLogs(Arc<Mutex<Vec<u8>>>);

    impl Write for CapturedLogs {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for CapturedLogs {
        type Writer = CapturedLogs;

        fn make_writer(&'a self) -> CapturedLogs {
            self.clone()
        }
    }

    #[tokio::test]
    async fn logs_name_the_push_but_never_the_secret_or_the_body() {
        let logs = CapturedLogs::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(logs.clone())
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);

        let fixture = Fixture::new(None);
        let marker = "body-only-marker-5f1c";
        let body = GITHUB_PUSH.replace("Responsive", marker).replace(
            "\"forced\": false",
            &format!("\"forced\": false, \"note\": \"{marker}\""),
        );
        let body = body.as_bytes();
        let github = &SENDERS[0];
        let signature = github.signature(SECRET, body).1;
        let (status, _) = fixture
            .post("/hooks/github", &github.push_headers(SECRET, body), body)
            .await;
        assert_eq!(status, StatusCode::ACCEPTED);
        // Rejected deliveries: a forged signature, a wrong GitLab token, a malformed payload.
        let (status, _) = fixture
            .post(
                "/hooks/github",
                &github.push_headers("forged-secret-9d2e", body),
                body,
            )
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let gitlab = &SENDERS[2];
        let (status, _) = fixture
            .post(
                "/hooks/gitlab",
                &gitlab.push_headers("guessed-token-77aa", body),
                body,
            )
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let malformed = format!("{{\"note\": \"{marker}\", \"after\": \"{ZEROS}\"}}");
        let (status, _) = fixture
            .post(
                "/hooks/generic",
                &SENDERS[4].push_headers(SECRET, malformed.as_bytes()),
                malformed.as_bytes(),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);

        let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
        for expected in [
            "webhook push",
            "provider=github",
            "repository=github.com/codertocat/hello-world",
            "reference=refs/heads/main",
            "reason=\"signature\"",
            "reason=\"payload\"",
            "payload has no `ref`",
        ] {
            assert!(
                text.contains(expected),
                "{expected} missing from logs:\n{text}"
            );
        }
        for secret in [
            SECRET,
            marker,
            "forged-secret-9d2e",
            "guessed-token-77aa",
            &signature,
        ] {
            assert!(!text.contains(secret), "{secret} leaked into logs:\n{text}");
        }
    }
}
