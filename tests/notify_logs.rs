//! No secret reaches a log, an outcome or a `Debug` output, even when
//! deliveries fail. Alone in its test binary: `tracing`'s per-callsite
//! interest cache races when other tests register the same callsites while
//! a capturing subscriber is installed, which made the capture miss lines;
//! here the capturing subscriber is the process's global one.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use tokio::sync::broadcast;

use windlass::notify::{Event, EventKind, Notifier, NotifierOptions, Outcome, Provider, Target};
use windlass::spec::{LocalObjectReference, Notification};

/// A receiver on 127.0.0.1 that answers every request 500 with `body`.
async fn failing_receiver(body: &'static str) -> Receiver {
    let app =
        Router::new().fallback(move || async move { (StatusCode::INTERNAL_SERVER_ERROR, body) });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Receiver { address }
}

struct Receiver {
    address: SocketAddr,
}

impl Receiver {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }
}

fn target(provider: Provider, secret: &[(&str, &str)]) -> Target {
    let notification = Notification {
        provider,
        secret_ref: LocalObjectReference {
            name: format!("{provider}-secret"),
        },
        events: Vec::new(),
        api_url: None,
        template: None,
    };
    let data: BTreeMap<String, Vec<u8>> = secret
        .iter()
        .map(|(key, value)| (key.to_string(), value.as_bytes().to_vec()))
        .collect();
    Target::new(&notification, &data, None).unwrap()
}

fn event(kind: EventKind, message: &str) -> Event {
    let mut event = Event::new("team-a", "guestbook", kind, message);
    event.revision = Some(7);
    event.commit = Some("9fceb02d0ae598e95dc970b74767f19372d61af8".to_string());
    event.repo_url = Some("https://github.com/org/deploy.git".to_string());
    event
}

fn options() -> NotifierOptions {
    NotifierOptions {
        first_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(50),
        ..NotifierOptions::default()
    }
}

/// The next outcome; a hang guard, not a timing assertion.
async fn next(outcomes: &mut broadcast::Receiver<Outcome>) -> Outcome {
    tokio::time::timeout(Duration::from_secs(60), outcomes.recv())
        .await
        .expect("a delivery ended")
        .unwrap()
}

/// A `tracing` writer into a shared buffer.
#[derive(Clone, Default)]
struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogBuffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl LogBuffer {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

#[tokio::test]
async fn secrets_never_reach_logs_or_outcomes_even_when_deliveries_fail() {
    let logs = LogBuffer::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::set_global_default(subscriber).unwrap();

    // A receiver that fails and echoes a secret back in its error body.
    let failing =
        failing_receiver("invalid token webhook-token-s3cr3t for hooks/T0/B0/path-s3cr3t").await;
    let hook_address = failing.url("/hooks/T0/B0/path-s3cr3t");
    let hook = target(
        Provider::Webhook,
        &[
            ("address", &hook_address),
            ("token", "webhook-token-s3cr3t"),
            ("hmacKey", "hmac-key-s3cr3t"),
        ],
    );
    // A port nobody listens on: connection refused.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let closed_address = format!(
        "http://{}/services/T1/B1/slack-s3cr3t",
        closed.local_addr().unwrap()
    );
    drop(closed);
    let slack = target(Provider::Slack, &[("address", &closed_address)]);
    let github_api = failing_receiver("Bad credentials: ghp-s3cr3t").await;
    let github = target(
        Provider::Github,
        &[
            ("token", "ghp-s3cr3t"),
            ("apiURL", &github_api.url("/gh-s3cr3t")),
        ],
    );

    let notifier = Notifier::with_options(NotifierOptions {
        max_attempts: 2,
        ..options()
    });
    let mut outcomes = notifier.outcomes();
    let targets = [hook.clone(), slack.clone(), github.clone()];
    let queued = notifier
        .notify(&event(EventKind::SyncFailed, "boom"), &targets)
        .await;
    assert_eq!(queued.queued, 3);
    let mut errors = Vec::new();
    for _ in 0..3 {
        let outcome = next(&mut outcomes).await;
        errors.push(outcome.error.clone().expect("every delivery fails"));
        errors.push(format!("{outcome:?}"));
    }
    for target in &targets {
        errors.push(format!("{target:?}"));
    }

    let logs = logs.text();
    assert!(logs.contains("notification not delivered"), "{logs}");
    assert!(logs.contains("HTTP 500: invalid token *** for"), "{logs}");
    for secret in [
        "s3cr3t",
        hook_address.as_str(),
        closed_address.as_str(),
        "webhook-token",
        "hmac-key",
    ] {
        assert!(!logs.contains(secret), "`{secret}` in the logs:\n{logs}");
        for error in &errors {
            assert!(!error.contains(secret), "`{secret}` in {error}");
        }
    }
}
