//! The [`Notifier`]: takes events from the reconcile and delivers them in
//! the background, so a slow or broken receiver never holds a reconcile up.
//!
//! ```text
//!   notify(event, targets)            (returns at once)
//!     │ targets that want event.kind
//!     │ dedupe: the same event within `dedupe_window` (5 min) is sent once
//!     ▼
//!   bounded queue (full: dropped, with a warning) ──► dispatcher
//!                                                       │ at most `concurrency` deliveries at a time
//!                                                       ▼
//!   deliver: render text ─► build request ─► POST ─┬─ 2xx ─────────────► Delivered
//!                                                  ├─ 5xx, 429, network, timeout:
//!                                                  │    wait 1 s, 2 s, 4 s, 8 s, retry (5 attempts)
//!                                                  └─ other status ─────► Failed (no retry)
//! ```
//!
//! Every error text is scrubbed of the target's secret values before it is
//! logged or reported, and never includes the URL.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::CertificateDer;
use tokio::sync::{Semaphore, broadcast, mpsc};

use super::templates::{Family, Templates};
use super::{Event, EventKind, Provider, Request, Target, commit_status, slack, teams, webhook};

/// What time it is, for the dedupe window. Tests inject their own.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Instant;
}

/// The real clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// How the [`Notifier`] queues, retries and deduplicates.
#[derive(Clone)]
pub struct NotifierOptions {
    /// Deliveries waiting to start; beyond it, notifications are dropped.
    pub queue_capacity: usize,
    /// Deliveries in flight at once.
    pub concurrency: usize,
    /// Attempts per delivery, the first included.
    pub max_attempts: u32,
    /// The wait before the second attempt; it doubles each time.
    pub first_backoff: Duration,
    /// The longest wait between attempts (also caps a `Retry-After`).
    pub max_backoff: Duration,
    /// How long one attempt may take, response included.
    pub request_timeout: Duration,
    /// The same event within this window is sent once.
    pub dedupe_window: Duration,
    pub clock: Arc<dyn Clock>,
    /// Certificates trusted for HTTPS besides the machine's roots (a
    /// private CA of a self-hosted GitLab or webhook receiver).
    pub extra_roots: Vec<CertificateDer<'static>>,
}

impl Default for NotifierOptions {
    fn default() -> NotifierOptions {
        NotifierOptions {
            queue_capacity: 256,
            concurrency: 8,
            max_attempts: 5,
            first_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
            request_timeout: Duration::from_secs(10),
            dedupe_window: Duration::from_secs(300),
            clock: Arc::new(SystemClock),
            extra_roots: Vec::new(),
        }
    }
}

impl std::fmt::Debug for NotifierOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NotifierOptions")
            .field("queue_capacity", &self.queue_capacity)
            .field("concurrency", &self.concurrency)
            .field("max_attempts", &self.max_attempts)
            .field("first_backoff", &self.first_backoff)
            .field("max_backoff", &self.max_backoff)
            .field("request_timeout", &self.request_timeout)
            .field("dedupe_window", &self.dedupe_window)
            .field("extra_roots", &self.extra_roots.len())
            .finish_non_exhaustive()
    }
}

/// What `notify` did with an event.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Queued {
    /// Deliveries queued (one per target that wants the event).
    pub queued: usize,
    /// The same event was sent within the dedupe window: nothing queued.
    pub duplicate: bool,
    /// Deliveries dropped because the queue was full.
    pub dropped: usize,
}

/// How one delivery ended. Error texts name no secret and no URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// `namespace/name`.
    pub application: String,
    pub event: EventKind,
    pub provider: Provider,
    /// The name of the target's Secret.
    pub secret: String,
    pub attempts: u32,
    /// `None`: delivered.
    pub error: Option<String>,
}

/// Delivers notifications in the background. Construct one per process
/// (inside a tokio runtime) and share it; it is cheap to call.
pub struct Notifier {
    queue: mpsc::Sender<Delivery>,
    recent: Mutex<Dedupe>,
    clock: Arc<dyn Clock>,
    outcomes: broadcast::Sender<Outcome>,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier").finish_non_exhaustive()
    }
}

#[derive(Debug)]
struct Delivery {
    event: Arc<Event>,
    target: Target,
}

type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

impl Notifier {
    /// A notifier with the default options. Spawns its dispatcher: call it
    /// inside a tokio runtime.
    pub fn new() -> Notifier {
        Notifier::with_options(NotifierOptions::default())
    }

    pub fn with_options(options: NotifierOptions) -> Notifier {
        let (queue, receiver) = mpsc::channel(options.queue_capacity.max(1));
        let (outcomes, _) = broadcast::channel(1024);
        let clock = options.clock.clone();
        let recent = Mutex::new(Dedupe::new(options.dedupe_window));
        let client = http_client(&options.extra_roots);
        tokio::spawn(dispatch(receiver, client, options, outcomes.clone()));
        Notifier {
            queue,
            recent,
            clock,
            outcomes,
        }
    }

    /// Every delivery's outcome from now on (for Events, metrics, tests),
    /// a dropped one included (`attempts` 0).
    pub fn outcomes(&self) -> broadcast::Receiver<Outcome> {
        self.outcomes.subscribe()
    }

    /// Queues `event` for each target that wants its kind, unless the same
    /// event was sent within the dedupe window. Never waits for a delivery
    /// and never fails: what it could not queue it logs and counts.
    pub async fn notify(&self, event: &Event, targets: &[Target]) -> Queued {
        let wanted: Vec<&Target> = targets.iter().filter(|t| t.wants(event.kind)).collect();
        if wanted.is_empty() {
            return Queued::default();
        }
        let now = self.clock.now();
        let first = self
            .recent
            .lock()
            .expect("dedupe lock is never poisoned")
            .first_in_window(event, now);
        if !first {
            tracing::debug!(
                app = %event.application(),
                event = %event.kind,
                "notification already sent within the dedupe window"
            );
            return Queued {
                duplicate: true,
                ..Queued::default()
            };
        }
        let shared = Arc::new(event.clone());
        let mut queued = Queued::default();
        for target in wanted {
            let delivery = Delivery {
                event: shared.clone(),
                target: target.clone(),
            };
            match self.queue.try_send(delivery) {
                Ok(()) => queued.queued += 1,
                Err(_) => {
                    queued.dropped += 1;
                    tracing::warn!(
                        app = %event.application(),
                        event = %event.kind,
                        provider = %target.provider,
                        secret = %target.secret_name,
                        "notification dropped: the delivery queue is full"
                    );
                    let _ = self.outcomes.send(Outcome {
                        application: event.application(),
                        event: event.kind,
                        provider: target.provider,
                        secret: target.secret_name.clone(),
                        attempts: 0,
                        error: Some("dropped: the delivery queue is full".to_string()),
                    });
                }
            }
        }
        if queued.queued == 0 {
            // Nothing went out: a later identical event may try again.
            self.recent
                .lock()
                .expect("dedupe lock is never poisoned")
                .forget(event);
        }
        queued
    }
}

impl Default for Notifier {
    fn default() -> Notifier {
        Notifier::new()
    }
}

/// Which events were sent when: an event equal in every field (application,
/// kind, revision, commit, repository, message, drift) within the window is
/// a duplicate.
struct Dedupe {
    window: Duration,
    sent: HashMap<Event, Instant>,
}

impl Dedupe {
    fn new(window: Duration) -> Dedupe {
        Dedupe {
            window,
            sent: HashMap::new(),
        }
    }

    fn forget(&mut self, event: &Event) {
        self.sent.remove(event);
    }

    /// Whether `event` is new in the window ending at `now`; records it.
    fn first_in_window(&mut self, event: &Event, now: Instant) -> bool {
        let window = self.window;
        self.sent
            .retain(|_, at| now.saturating_duration_since(*at) < window);
        if self.sent.contains_key(event) {
            return false;
        }
        self.sent.insert(event.clone(), now);
        true
    }
}

/// What one attempt got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Attempt {
    /// The receiver answered.
    Status {
        code: u16,
        retry_after: Option<Duration>,
        /// The start of the response body, for the error message.
        body: String,
    },
    /// No answer: connection refused, reset, timed out.
    Unreachable(String),
}

/// What to do after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryDecision {
    Delivered,
    /// Try again (5xx, 429, no answer), after at least this long if the
    /// receiver said so.
    Retry {
        retry_after: Option<Duration>,
    },
    /// Trying again would get the same answer (4xx other than 429, 3xx).
    GiveUp,
}

pub(crate) fn retry_decision(attempt: &Attempt) -> RetryDecision {
    match attempt {
        Attempt::Status { code, .. } if (200..300).contains(code) => RetryDecision::Delivered,
        Attempt::Status {
            code, retry_after, ..
        } if *code == 429 || *code >= 500 => RetryDecision::Retry {
            retry_after: *retry_after,
        },
        Attempt::Status { .. } => RetryDecision::GiveUp,
        Attempt::Unreachable(_) => RetryDecision::Retry { retry_after: None },
    }
}

/// The wait after attempt `attempt` (1-based): `first`, doubled each time,
/// or the receiver's `Retry-After`; never more than `max`.
pub(crate) fn backoff(
    attempt: u32,
    first: Duration,
    max: Duration,
    retry_after: Option<Duration>,
) -> Duration {
    let doubled = first.saturating_mul(1u32 << (attempt.saturating_sub(1)).min(20));
    retry_after.unwrap_or(doubled).max(doubled).min(max)
}

/// Replaces every secret value in `text` with `***`.
pub(crate) fn scrub(text: &str, secrets: &[&str]) -> String {
    let mut text = text.to_string();
    for secret in secrets {
        if !secret.is_empty() {
            text = text.replace(secret, "***");
        }
    }
    text
}

async fn dispatch(
    mut queue: mpsc::Receiver<Delivery>,
    client: HttpClient,
    options: NotifierOptions,
    outcomes: broadcast::Sender<Outcome>,
) {
    let permits = Arc::new(Semaphore::new(options.concurrency.max(1)));
    while let Some(delivery) = queue.recv().await {
        let permit = permits
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        let (client, options, outcomes) = (client.clone(), options.clone(), outcomes.clone());
        tokio::spawn(async move {
            let outcome = deliver(&client, &options, delivery).await;
            drop(permit);
            // Nobody listening is fine.
            let _ = outcomes.send(outcome);
        });
    }
}

async fn deliver(client: &HttpClient, options: &NotifierOptions, delivery: Delivery) -> Outcome {
    let Delivery { event, target } = delivery;
    let secrets = target.secret_values();
    let mut outcome = Outcome {
        application: event.application(),
        event: event.kind,
        provider: target.provider,
        secret: target.secret_name.clone(),
        attempts: 0,
        error: None,
    };
    let request = match build_request(&target, &event) {
        Ok(request) => request,
        Err(error) => {
            let error = scrub(&error, &secrets);
            tracing::warn!(
                app = %outcome.application, event = %event.kind, provider = %target.provider,
                secret = %target.secret_name, %error, "notification not sent"
            );
            outcome.error = Some(error);
            return outcome;
        }
    };
    let max_attempts = options.max_attempts.max(1);
    loop {
        outcome.attempts += 1;
        let attempt = send(client, &request, options.request_timeout).await;
        let decision = retry_decision(&attempt);
        if decision == RetryDecision::Delivered {
            tracing::info!(
                app = %outcome.application, event = %event.kind, provider = %target.provider,
                secret = %target.secret_name, attempts = outcome.attempts, "notification sent"
            );
            return outcome;
        }
        let error = scrub(&describe(&attempt), &secrets);
        match decision {
            RetryDecision::Retry { retry_after } if outcome.attempts < max_attempts => {
                let wait = backoff(
                    outcome.attempts,
                    options.first_backoff,
                    options.max_backoff,
                    retry_after,
                );
                tracing::debug!(
                    app = %outcome.application, event = %event.kind, provider = %target.provider,
                    secret = %target.secret_name, attempt = outcome.attempts, %error,
                    wait_ms = wait.as_millis() as u64, "notification attempt failed; retrying"
                );
                tokio::time::sleep(wait).await;
            }
            _ => {
                tracing::warn!(
                    app = %outcome.application, event = %event.kind, provider = %target.provider,
                    secret = %target.secret_name, attempts = outcome.attempts, %error,
                    "notification not delivered"
                );
                outcome.error = Some(error);
                return outcome;
            }
        }
    }
}

/// The request for `target`, with the message rendered from its templates
/// (a failing override falls back to the built-in template).
fn build_request(target: &Target, event: &Event) -> Result<Request, String> {
    let family = Family::of(target.provider);
    let text = target.templates.render(family, event).or_else(|error| {
        tracing::warn!(
            app = %event.application(), event = %event.kind, provider = %target.provider,
            %error, "notification template failed; using the built-in one"
        );
        Templates::built_in().render(family, event)
    });
    let text = text.map_err(|error| error.to_string())?;
    let status_error =
        |error: commit_status::StatusError| format!("cannot build the commit status: {error}");
    match target.provider {
        Provider::Webhook => Ok(webhook::request(
            target,
            event,
            &text,
            &jiff::Timestamp::now().to_string(),
        )),
        Provider::Slack => Ok(slack::request(target, event, &text)),
        Provider::Teams => Ok(teams::request(target, event, &text)),
        Provider::Github => {
            commit_status::github_request(target, event, &text).map_err(status_error)
        }
        Provider::Gitlab => {
            commit_status::gitlab_request(target, event, &text).map_err(status_error)
        }
    }
}

fn describe(attempt: &Attempt) -> String {
    match attempt {
        Attempt::Status { code, body, .. } if body.is_empty() => format!("HTTP {code}"),
        Attempt::Status { code, body, .. } => format!("HTTP {code}: {body}"),
        Attempt::Unreachable(error) => error.clone(),
    }
}

/// How much of a response body an error message quotes.
const BODY_QUOTE: usize = 300;

async fn send(client: &HttpClient, request: &Request, timeout: Duration) -> Attempt {
    let uri: http::Uri = match request.url.expose().parse() {
        Ok(uri) => uri,
        Err(_) => return Attempt::Unreachable("the address is not a valid URL".to_string()),
    };
    let mut builder = http::Request::post(uri).header(
        "user-agent",
        concat!("windlass/", env!("CARGO_PKG_VERSION")),
    );
    for (name, value) in &request.headers {
        builder = builder.header(*name, value.expose());
    }
    let http_request = match builder.body(Full::new(Bytes::from(request.body.clone()))) {
        Ok(request) => request,
        Err(_) => return Attempt::Unreachable("a header value is not valid".to_string()),
    };
    let exchange = async {
        let response = client
            .request(http_request)
            .await
            .map_err(|error| error_chain(&error))?;
        let code = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let mut body = response.into_body();
        let mut bytes = Vec::new();
        while bytes.len() < BODY_QUOTE * 4 {
            match body.frame().await {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        bytes.extend_from_slice(&data);
                    }
                }
                _ => break,
            }
        }
        let body = String::from_utf8_lossy(&bytes);
        let body = super::truncate(body.trim(), BODY_QUOTE);
        Ok::<_, String>(Attempt::Status {
            code,
            retry_after,
            body,
        })
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(Ok(attempt)) => attempt,
        Ok(Err(error)) => Attempt::Unreachable(error),
        Err(_) => Attempt::Unreachable(format!("no answer within {}s", timeout.as_secs_f32())),
    }
}

/// `error: cause: cause`, as far as the chain goes.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// HTTP and HTTPS, trusting the machine's root certificates (as
/// `SSL_CERT_FILE` / `SSL_CERT_DIR` or the system store give them) and
/// `extra_roots`. Without any, HTTPS deliveries fail with a certificate
/// error; HTTP still works.
fn http_client(extra_roots: &[CertificateDer<'static>]) -> HttpClient {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(native.certs);
    for certificate in extra_roots {
        if let Err(error) = roots.add(certificate.clone()) {
            tracing::warn!(%error, "an extra root certificate for notifications is not usable");
        }
    }
    if roots.is_empty() {
        tracing::warn!("no root certificates found: https notifications will fail");
    }
    let tls = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .build();
    Client::builder(TokioExecutor::new()).build(connector)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: u16) -> Attempt {
        Attempt::Status {
            code,
            retry_after: None,
            body: String::new(),
        }
    }

    #[test]
    fn server_errors_throttling_and_silence_are_retried_other_refusals_are_not() {
        assert_eq!(retry_decision(&status(200)), RetryDecision::Delivered);
        assert_eq!(retry_decision(&status(204)), RetryDecision::Delivered);
        for code in [500, 502, 503, 429] {
            assert_eq!(
                retry_decision(&status(code)),
                RetryDecision::Retry { retry_after: None },
                "{code}"
            );
        }
        for code in [301, 400, 401, 403, 404, 410, 422] {
            assert_eq!(
                retry_decision(&status(code)),
                RetryDecision::GiveUp,
                "{code}"
            );
        }
        assert_eq!(
            retry_decision(&Attempt::Unreachable("connection refused".into())),
            RetryDecision::Retry { retry_after: None }
        );
    }

    #[test]
    fn backoff_doubles_from_the_first_wait_and_respects_retry_after_up_to_the_cap() {
        let (first, max) = (Duration::from_secs(1), Duration::from_secs(60));
        let waits: Vec<u64> = (1..=4)
            .map(|attempt| backoff(attempt, first, max, None).as_secs())
            .collect();
        assert_eq!(waits, [1, 2, 4, 8]);
        assert_eq!(backoff(40, first, max, None), max);
        assert_eq!(
            backoff(1, first, max, Some(Duration::from_secs(30))),
            Duration::from_secs(30)
        );
        assert_eq!(backoff(1, first, max, Some(Duration::from_secs(3600))), max);
        assert_eq!(
            backoff(3, first, max, Some(Duration::ZERO)),
            Duration::from_secs(4)
        );
    }

    #[test]
    fn the_same_event_is_sent_once_per_window() {
        let start = Instant::now();
        let window = Duration::from_secs(300);
        let mut dedupe = Dedupe::new(window);
        let event = Event::new("team-a", "web", EventKind::SyncFailed, "boom");
        assert!(dedupe.first_in_window(&event, start));
        assert!(!dedupe.first_in_window(&event, start + Duration::from_secs(299)));
        let mut other = event.clone();
        other.message = "another cause".into();
        assert!(dedupe.first_in_window(&other, start + Duration::from_secs(10)));
        let mut other_app = event.clone();
        other_app.name = "api".into();
        assert!(dedupe.first_in_window(&other_app, start + Duration::from_secs(10)));
        assert!(dedupe.first_in_window(&event, start + window));
        assert!(!dedupe.first_in_window(&event, start + window + Duration::from_secs(1)));
    }

    #[test]
    fn scrubbing_removes_every_secret_value() {
        assert_eq!(
            scrub("POST https://h/s3cr3t failed: t0k", &["s3cr3t", "t0k", ""]),
            "POST https://h/*** failed: ***"
        );
    }
}
