//! Notifications end to end: a real HTTP receiver on 127.0.0.1 takes what
//! the `Notifier` sends for each provider, and answers as the test wants
//! (2xx, 4xx, 5xx, or not at all). Secrets and ConfigMaps are read from the
//! real API server (tests/support). That no secret reaches a log is tested
//! in tests/notify_logs.rs, alone in its process.

mod support;

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::Value;
use sha2::Sha256;
use tokio::sync::broadcast;

use windlass::notify::{
    Clock, DriftedField, Event, EventKind, Notifier, NotifierOptions, Outcome, Provider, Target,
    load_targets,
};
use windlass::spec::{LocalObjectReference, Notification};

const COMMIT: &str = "9fceb02d0ae598e95dc970b74767f19372d61af8";

/// One request as the receiver saw it.
#[derive(Debug, Clone)]
struct Received {
    method: Method,
    path: String,
    query: Option<String>,
    headers: HeaderMap,
    body: Bytes,
}

impl Received {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("the body is JSON")
    }

    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .unwrap_or_else(|| panic!("no header {name}: {:?}", self.headers))
            .to_str()
            .unwrap()
    }
}

/// How the receiver answers.
#[derive(Clone)]
enum Answer {
    /// These statuses in turn, then 200.
    Statuses(Arc<Mutex<VecDeque<u16>>>),
    /// Never: the request hangs.
    Hang,
}

#[derive(Clone)]
struct ReceiverState {
    received: Arc<Mutex<Vec<Received>>>,
    answer: Answer,
}

struct Receiver {
    address: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    async fn start(answer: Answer) -> Receiver {
        let received = Arc::new(Mutex::new(Vec::new()));
        let state = ReceiverState {
            received: received.clone(),
            answer,
        };
        let app = Router::new().fallback(record).with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Receiver { address, received }
    }

    async fn answering(statuses: &[u16]) -> Receiver {
        Receiver::start(Answer::Statuses(Arc::new(Mutex::new(
            statuses.iter().copied().collect(),
        ))))
        .await
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    fn only(&self) -> Received {
        let received = self.received();
        assert_eq!(received.len(), 1, "{received:#?}");
        received[0].clone()
    }
}

async fn record(
    State(state): State<ReceiverState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    state.received.lock().unwrap().push(Received {
        method,
        path: uri.path().to_string(),
        query: uri.query().map(str::to_string),
        headers,
        body,
    });
    match state.answer {
        Answer::Statuses(statuses) => {
            let code = statuses.lock().unwrap().pop_front().unwrap_or(200);
            (StatusCode::from_u16(code).unwrap(), String::new())
        }
        Answer::Hang => std::future::pending().await,
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
    event.commit = Some(COMMIT.to_string());
    event.repo_url = Some("https://github.com/org/deploy.git".to_string());
    event
}

/// Quick retries, so a test with retries does not wait seconds.
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

async fn deliver_one(target: Target, event: &Event) -> Outcome {
    let notifier = Notifier::with_options(options());
    let mut outcomes = notifier.outcomes();
    let queued = notifier.notify(event, &[target]).await;
    assert_eq!(queued.queued, 1, "{queued:?}");
    next(&mut outcomes).await
}

#[tokio::test]
async fn slack_gets_text_and_blocks_at_its_webhook_url() {
    let receiver = Receiver::answering(&[]).await;
    let slack = target(
        Provider::Slack,
        &[("address", &receiver.url("/services/T000/B000/XXXX"))],
    );
    let outcome = deliver_one(
        slack,
        &event(
            EventKind::SyncFailed,
            "apply failed: Deployment web rejected",
        ),
    )
    .await;
    assert_eq!(outcome.error, None);

    let request = receiver.only();
    assert_eq!(request.method, Method::POST);
    assert_eq!(request.path, "/services/T000/B000/XXXX");
    assert_eq!(request.header("content-type"), "application/json");
    let body = request.json();
    let text = body["text"].as_str().unwrap();
    assert!(text.contains("*team-a/guestbook* sync failed"), "{text}");
    assert!(
        text.contains("apply failed: Deployment web rejected"),
        "{text}"
    );
    let blocks = body["blocks"].as_array().unwrap();
    assert_eq!(blocks[0]["type"], "section");
    assert_eq!(blocks[0]["text"]["type"], "mrkdwn");
    assert_eq!(blocks[0]["text"]["text"], text);
    assert_eq!(blocks[1]["type"], "context");
    let context = blocks[1]["elements"][0]["text"].as_str().unwrap();
    assert!(
        context.contains("revision 7") && context.contains("9fceb02"),
        "{context}"
    );
}

#[tokio::test]
async fn teams_gets_a_message_with_an_adaptive_card() {
    let receiver = Receiver::answering(&[202]).await;
    let teams = target(
        Provider::Teams,
        &[(
            "address",
            &receiver.url("/workflows/abc/triggers/manual/paths/invoke"),
        )],
    );
    let mut drift = event(EventKind::DriftDetected, "1 object drifted");
    drift.drift = vec![DriftedField {
        object: "Deployment team-a/web".into(),
        field: "spec.replicas".into(),
        manager: Some("kubectl-edit".into()),
    }];
    let outcome = deliver_one(teams, &drift).await;
    assert_eq!(outcome.error, None, "202 Accepted is delivered");

    let body = receiver.only().json();
    assert_eq!(body["type"], "message");
    let attachments = body["attachments"].as_array().unwrap();
    assert_eq!(attachments.len(), 1);
    assert_eq!(
        attachments[0]["contentType"],
        "application/vnd.microsoft.card.adaptive"
    );
    let card = &attachments[0]["content"];
    assert_eq!(card["type"], "AdaptiveCard");
    assert_eq!(card["version"], "1.4");
    let card_body = card["body"].as_array().unwrap();
    assert_eq!(card_body[0]["type"], "TextBlock");
    assert_eq!(card_body[0]["text"], "team-a/guestbook: drift detected");
    assert_eq!(card_body[1]["type"], "TextBlock");
    let text = card_body[1]["text"].as_str().unwrap();
    assert!(
        text.contains("`Deployment team-a/web` `spec.replicas` changed by `kubectl-edit`"),
        "{text}"
    );
    assert_eq!(card_body[2]["type"], "FactSet");
    let facts = card_body[2]["facts"].as_array().unwrap();
    assert!(facts.contains(&serde_json::json!({ "title": "Revision", "value": "7" })));
}

#[tokio::test]
async fn github_gets_a_commit_status_with_a_bearer_token() {
    let receiver = Receiver::answering(&[201]).await;
    let github = target(
        Provider::Github,
        &[
            ("token", "ghp_notify_test_token"),
            ("apiURL", &receiver.url("/api/v3/")),
            ("address", "https://windlass.example.com/apps/guestbook"),
        ],
    );
    let outcome = deliver_one(
        github,
        &event(EventKind::HealthDegraded, "Deployment web: 0/3 ready"),
    )
    .await;
    assert_eq!(outcome.error, None);

    let request = receiver.only();
    assert_eq!(request.method, Method::POST);
    assert_eq!(
        request.path,
        format!("/api/v3/repos/org/deploy/statuses/{COMMIT}")
    );
    assert_eq!(
        request.header("authorization"),
        "Bearer ghp_notify_test_token"
    );
    assert_eq!(request.header("accept"), "application/vnd.github+json");
    assert!(request.header("user-agent").starts_with("windlass/"));
    let body = request.json();
    assert_eq!(body["state"], "failure");
    assert_eq!(body["context"], "windlass/guestbook");
    assert_eq!(
        body["description"],
        "team-a/guestbook is unhealthy: Deployment web: 0/3 ready"
    );
    assert_eq!(
        body["target_url"],
        "https://windlass.example.com/apps/guestbook"
    );
}

#[tokio::test]
async fn gitlab_gets_a_commit_status_in_the_query_with_a_private_token() {
    let receiver = Receiver::answering(&[201]).await;
    let gitlab = target(
        Provider::Gitlab,
        &[
            ("token", "glpat-notify-test-token"),
            ("apiURL", &receiver.url("/api/v4")),
        ],
    );
    let mut succeeded = event(EventKind::SyncSucceeded, "3 objects applied");
    succeeded.repo_url = Some("git@gitlab.example.com:group/sub/deploy.git".into());
    let outcome = deliver_one(gitlab, &succeeded).await;
    assert_eq!(outcome.error, None);

    let request = receiver.only();
    assert_eq!(request.method, Method::POST);
    assert_eq!(
        request.path,
        format!("/api/v4/projects/group%2Fsub%2Fdeploy/statuses/{COMMIT}")
    );
    assert_eq!(request.header("private-token"), "glpat-notify-test-token");
    assert!(request.headers.get("authorization").is_none());
    let query: BTreeMap<String, String> = url_decode_pairs(request.query.as_deref().unwrap());
    assert_eq!(query["state"], "success");
    assert_eq!(query["name"], "windlass/guestbook");
    assert_eq!(
        query["description"],
        "Deployed to team-a/guestbook as revision 7"
    );
}

/// `a=b%2Fc&d=e` → {a: "b/c", d: "e"}.
fn url_decode_pairs(query: &str) -> BTreeMap<String, String> {
    query
        .split('&')
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap();
            let value = percent_encoding::percent_decode_str(&value.replace('+', " "))
                .decode_utf8()
                .unwrap()
                .to_string();
            (key.to_string(), value)
        })
        .collect()
}

#[tokio::test]
async fn the_webhook_gets_json_with_the_drift_and_a_correct_signature() {
    let receiver = Receiver::answering(&[]).await;
    let hook = target(
        Provider::Webhook,
        &[
            ("address", &receiver.url("/hooks/windlass")),
            ("token", "webhook-bearer"),
            ("hmacKey", "signing-key"),
        ],
    );
    let mut drift = event(EventKind::DriftDetected, "2 fields drifted");
    drift.repo_url = Some("https://deploy-bot:repo-password@github.com/org/deploy.git".into());
    drift.drift = vec![
        DriftedField {
            object: "Deployment team-a/web".into(),
            field: "spec.replicas".into(),
            manager: Some("kubectl-edit".into()),
        },
        DriftedField {
            object: "ConfigMap team-a/settings".into(),
            field: "data.mode".into(),
            manager: None,
        },
    ];
    let outcome = deliver_one(hook, &drift).await;
    assert_eq!(outcome.error, None);

    let request = receiver.only();
    assert_eq!(request.path, "/hooks/windlass");
    assert_eq!(request.header("authorization"), "Bearer webhook-bearer");
    let mut mac = Hmac::<Sha256>::new_from_slice(b"signing-key").unwrap();
    mac.update(&request.body);
    let expected: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(request.header("x-signature"), format!("sha256={expected}"));

    let body = request.json();
    assert_eq!(body["application"]["namespace"], "team-a");
    assert_eq!(body["application"]["name"], "guestbook");
    assert_eq!(body["event"], "drift-detected");
    assert_eq!(body["revision"], 7);
    assert_eq!(body["commit"], COMMIT);
    assert_eq!(body["message"], "2 fields drifted");
    assert_eq!(body["drift"][0]["object"], "Deployment team-a/web");
    assert_eq!(body["drift"][0]["field"], "spec.replicas");
    assert_eq!(body["drift"][0]["manager"], "kubectl-edit");
    assert_eq!(body["drift"][1]["manager"], Value::Null);
    let text = body["text"].as_str().unwrap();
    assert!(
        text.contains("ConfigMap team-a/settings data.mode"),
        "{text}"
    );
    let repo = body["repoURL"].as_str().unwrap();
    assert!(!repo.contains("repo-password"), "{repo}");
    assert!(repo.ends_with("github.com/org/deploy.git"), "{repo}");
    assert!(body["timestamp"].as_str().unwrap().ends_with('Z'));
}

#[tokio::test]
async fn server_errors_are_retried_until_the_delivery_succeeds() {
    let receiver = Receiver::answering(&[500, 503, 429]).await;
    let slack = target(Provider::Slack, &[("address", &receiver.url("/retry"))]);
    let outcome = deliver_one(slack, &event(EventKind::SyncSucceeded, "ok")).await;
    assert_eq!(outcome.error, None);
    assert_eq!(outcome.attempts, 4);
    let received = receiver.received();
    assert_eq!(received.len(), 4);
    assert!(received.iter().all(|r| r.body == received[0].body));
}

#[tokio::test]
async fn a_client_error_is_not_retried() {
    let receiver = Receiver::answering(&[400]).await;
    let slack = target(Provider::Slack, &[("address", &receiver.url("/bad"))]);
    let outcome = deliver_one(slack, &event(EventKind::SyncSucceeded, "ok")).await;
    assert_eq!(outcome.attempts, 1);
    assert_eq!(outcome.error.as_deref(), Some("HTTP 400"));
    assert_eq!(receiver.received().len(), 1);
}

#[tokio::test]
async fn a_delivery_gives_up_after_five_attempts() {
    let receiver = Receiver::answering(&[500, 500, 500, 500, 500, 500]).await;
    let slack = target(Provider::Slack, &[("address", &receiver.url("/down"))]);
    let outcome = deliver_one(slack, &event(EventKind::SyncSucceeded, "ok")).await;
    assert_eq!(outcome.attempts, 5);
    assert_eq!(outcome.error.as_deref(), Some("HTTP 500"));
    assert_eq!(receiver.received().len(), 5);
}

/// A clock the test moves.
struct ManualClock(Mutex<Instant>);

impl ManualClock {
    fn advance(&self, by: Duration) {
        *self.0.lock().unwrap() += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        *self.0.lock().unwrap()
    }
}

#[tokio::test]
async fn the_same_event_is_sent_once_per_five_minutes() {
    let receiver = Receiver::answering(&[]).await;
    let slack = target(Provider::Slack, &[("address", &receiver.url("/dedupe"))]);
    let clock = Arc::new(ManualClock(Mutex::new(Instant::now())));
    let notifier = Notifier::with_options(NotifierOptions {
        clock: clock.clone(),
        ..options()
    });
    let mut outcomes = notifier.outcomes();
    let failed = event(EventKind::SyncFailed, "render failed: values.yaml line 3");
    let targets = [slack];

    assert_eq!(notifier.notify(&failed, &targets).await.queued, 1);
    next(&mut outcomes).await;

    clock.advance(Duration::from_secs(4 * 60 + 59));
    let again = notifier.notify(&failed, &targets).await;
    assert!(again.duplicate && again.queued == 0, "{again:?}");

    // Another message is another notification.
    let other = event(EventKind::SyncFailed, "render failed: values.yaml line 4");
    assert_eq!(notifier.notify(&other, &targets).await.queued, 1);
    next(&mut outcomes).await;

    clock.advance(Duration::from_secs(1));
    assert_eq!(notifier.notify(&failed, &targets).await.queued, 1);
    next(&mut outcomes).await;

    let texts: Vec<String> = receiver
        .received()
        .iter()
        .map(|r| r.json()["text"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(texts.len(), 3, "{texts:#?}");
    assert!(
        texts[0].contains("line 3") && texts[1].contains("line 4") && texts[2].contains("line 3")
    );
}

#[tokio::test]
async fn a_receiver_that_never_answers_does_not_hold_notify_up() {
    let receiver = Receiver::start(Answer::Hang).await;
    let slack = target(Provider::Slack, &[("address", &receiver.url("/hang"))]);
    let notifier = Notifier::with_options(NotifierOptions {
        queue_capacity: 2,
        concurrency: 1,
        request_timeout: Duration::from_secs(3600),
        ..options()
    });
    let mut outcomes = notifier.outcomes();
    let targets = [slack];
    let mut queued = 0;
    let mut dropped = 0;
    // Every call returns although no delivery ever finishes; once the one
    // delivery in flight and the queue are full, the rest are dropped.
    tokio::time::timeout(Duration::from_secs(60), async {
        for i in 0..10 {
            let result = notifier
                .notify(
                    &event(EventKind::SyncFailed, &format!("failure {i}")),
                    &targets,
                )
                .await;
            queued += result.queued;
            dropped += result.dropped;
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("notify returns without waiting for deliveries");
    assert!(queued >= 2, "queued {queued}");
    assert!(dropped >= 1, "dropped {dropped}");
    assert_eq!(queued + dropped, 10);
    let dropped_outcome = next(&mut outcomes).await;
    assert_eq!(
        dropped_outcome.error.as_deref(),
        Some("dropped: the delivery queue is full")
    );
    // The first delivery did reach the receiver (and hangs there).
    tokio::time::timeout(Duration::from_secs(60), async {
        while receiver.received().is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the receiver got the first request");
}

#[tokio::test]
async fn targets_only_take_the_events_they_list() {
    let receiver = Receiver::answering(&[]).await;
    let notification = Notification {
        provider: Provider::Slack,
        secret_ref: LocalObjectReference {
            name: "slack".into(),
        },
        events: vec![EventKind::SyncFailed],
        api_url: None,
        template: None,
    };
    let data = BTreeMap::from([(
        "address".to_string(),
        receiver.url("/only-failures").into_bytes(),
    )]);
    let slack = Target::new(&notification, &data, None).unwrap();
    let notifier = Notifier::with_options(options());
    let queued = notifier
        .notify(&event(EventKind::SyncSucceeded, "ok"), &[slack])
        .await;
    assert_eq!(queued.queued, 0);
    assert!(!queued.duplicate);
}

#[tokio::test]
async fn a_configmap_template_replaces_the_built_in_message() {
    let receiver = Receiver::answering(&[]).await;
    let notification = Notification {
        provider: Provider::Slack,
        secret_ref: LocalObjectReference {
            name: "slack".into(),
        },
        events: Vec::new(),
        api_url: None,
        template: Some(windlass::spec::NotificationTemplate {
            config_map_ref: LocalObjectReference {
                name: "messages".into(),
            },
        }),
    };
    let data = BTreeMap::from([("address".to_string(), receiver.url("/custom").into_bytes())]);
    let overrides = BTreeMap::from([(
        "slack.sync-failed.hbs".to_string(),
        "<!here> {{application.name}} is broken at {{shortCommit}}: {{message}}".to_string(),
    )]);
    let slack = Target::new(&notification, &data, Some(&overrides)).unwrap();
    let outcome = deliver_one(slack, &event(EventKind::SyncFailed, "boom")).await;
    assert_eq!(outcome.error, None);
    assert_eq!(
        receiver.only().json()["text"],
        "<!here> guestbook is broken at 9fceb02: boom"
    );
}

#[tokio::test]
async fn targets_load_from_the_secrets_and_configmaps_the_spec_names() {
    use k8s_openapi::api::core::v1::{ConfigMap, Secret};
    use kube::Api;
    use kube::api::PostParams;

    let receiver = Receiver::answering(&[]).await;
    let address = receiver.url("/services/from-cluster");
    support::with_namespace("notify", move |client, namespace| async move {
        let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace);
        let secret: Secret = serde_json::from_value(serde_json::json!({
            "metadata": { "name": "slack-hook" },
            "stringData": { "address": address },
        }))
        .unwrap();
        secrets.create(&PostParams::default(), &secret).await.unwrap();
        let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace);
        let messages: ConfigMap = serde_json::from_value(serde_json::json!({
            "metadata": { "name": "messages" },
            "data": { "slack.sync-failed.hbs": "from the ConfigMap: {{message}}" },
        }))
        .unwrap();
        config_maps
            .create(&PostParams::default(), &messages)
            .await
            .unwrap();

        let app: windlass::spec::Application = serde_json::from_value(serde_json::json!({
            "apiVersion": "windlass.dev/v1alpha1",
            "kind": "Application",
            "metadata": { "name": "guestbook", "namespace": namespace },
            "spec": {
                "source": { "repoURL": "https://github.com/org/deploy.git" },
                "notifications": [
                    { "provider": "slack", "secretRef": { "name": "slack-hook" },
                      "template": { "configMapRef": { "name": "messages" } } },
                    { "provider": "github", "secretRef": { "name": "no-such-secret" } },
                    { "provider": "teams", "secretRef": { "name": "slack-hook" },
                      "template": { "configMapRef": { "name": "no-such-configmap" } } },
                    { "provider": "gitlab", "secretRef": { "name": "slack-hook" } },
                ]
            }
        }))
        .unwrap();
        let (targets, errors) = load_targets(&client, &app).await;
        let errors: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            errors,
            [
                format!(
                    "spec.notifications[1] (github): Secret `no-such-secret` not found in namespace `{namespace}`"
                ),
                format!(
                    "spec.notifications[2] (teams): ConfigMap `no-such-configmap` not found in namespace `{namespace}`"
                ),
                "spec.notifications[3]: notification `gitlab`: Secret `slack-hook` has no key `token`; gitlab needs it".to_string(),
            ]
        );
        assert_eq!(targets.len(), 1);
        assert_eq!(targets[0].provider(), Provider::Slack);

        let notifier = Notifier::with_options(options());
        let mut outcomes = notifier.outcomes();
        let failed = Event::about(&app, EventKind::SyncFailed, "render failed");
        assert_eq!(notifier.notify(&failed, &targets).await.queued, 1);
        assert_eq!(next(&mut outcomes).await.error, None);
        let request = receiver.only();
        assert_eq!(request.path, "/services/from-cluster");
        assert_eq!(request.json()["text"], "from the ConfigMap: render failed");
    })
    .await;
}

#[tokio::test]
async fn a_commit_status_without_a_commit_is_reported_not_sent() {
    let receiver = Receiver::answering(&[]).await;
    let github = target(
        Provider::Github,
        &[("token", "t"), ("apiURL", &receiver.url("/api"))],
    );
    let mut no_commit = event(EventKind::SyncFailed, "git fetch failed");
    no_commit.commit = None;
    let outcome = deliver_one(github, &no_commit).await;
    assert_eq!(outcome.attempts, 0);
    assert_eq!(
        outcome.error.as_deref(),
        Some("cannot build the commit status: the event has no commit")
    );
    assert!(receiver.received().is_empty());
}

/// A CA and a leaf certificate for 127.0.0.1 signed by it, made by the
/// `openssl` command line: `(ca.pem, leaf.pem, leaf.key)` as PEM.
fn test_certificates() -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let dir = std::env::temp_dir().join(format!("windlass-notify-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("leaf.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
         keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let steps: [Vec<&str>; 3] = [
        [
            &["req", "-x509"][..],
            &ec,
            &[
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "2",
                "-subj",
                "/CN=windlass test CA",
            ],
        ]
        .concat(),
        [
            &["req"][..],
            &ec,
            &[
                "-keyout",
                "leaf.key",
                "-out",
                "leaf.csr",
                "-subj",
                "/CN=127.0.0.1",
            ],
        ]
        .concat(),
        vec![
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "leaf.pem",
            "-days",
            "2",
            "-extfile",
            "leaf.ext",
        ],
    ];
    for args in steps {
        let output = std::process::Command::new("openssl")
            .args(&args)
            .current_dir(&dir)
            .output()
            .expect("the openssl command line runs");
        assert!(
            output.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let read = |name: &str| std::fs::read(dir.join(name)).unwrap();
    let pems = (read("ca.pem"), read("leaf.pem"), read("leaf.key"));
    let _ = std::fs::remove_dir_all(&dir);
    pems
}

/// An HTTPS receiver (hyper over tokio-rustls): answers every request 200
/// and sends each request's method and path to the returned channel.
async fn https_receiver(
    leaf: &[u8],
    key: &[u8],
) -> (SocketAddr, tokio::sync::mpsc::UnboundedReceiver<String>) {
    use hyper_util::rt::TokioIo;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    let certificates: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(leaf)
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(key).unwrap();
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certificates, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (requests, received) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let (acceptor, requests) = (acceptor.clone(), requests.clone());
            tokio::spawn(async move {
                // A client that refuses the certificate ends the handshake.
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper::service::service_fn(
                    move |request: hyper::Request<hyper::body::Incoming>| {
                        let _ = requests.send(format!("{} {}", request.method(), request.uri()));
                        async {
                            Ok::<_, std::convert::Infallible>(hyper::Response::new(
                                http_body_util::Empty::<hyper::body::Bytes>::new(),
                            ))
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    (address, received)
}

#[tokio::test]
async fn https_deliveries_verify_the_receiver_certificate() {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;

    let (ca, leaf, key) = test_certificates();
    let (address, mut heads) = https_receiver(&leaf, &key).await;
    let slack = target(
        Provider::Slack,
        &[("address", &format!("https://{address}/services/T/B/tls"))],
    );
    let event = event(EventKind::SyncSucceeded, "over TLS");

    // Not trusted: the handshake fails, nothing is received.
    let untrusting = Notifier::with_options(NotifierOptions {
        max_attempts: 1,
        ..options()
    });
    let mut outcomes = untrusting.outcomes();
    untrusting
        .notify(&event, std::slice::from_ref(&slack))
        .await;
    let refused = next(&mut outcomes).await;
    let error = refused.error.expect("an untrusted certificate is refused");
    assert!(
        error.contains("invalid peer certificate: UnknownIssuer"),
        "{error}"
    );
    assert!(heads.try_recv().is_err());

    // Trusted through the CA.
    let trusting = Notifier::with_options(NotifierOptions {
        extra_roots: vec![CertificateDer::from_pem_slice(&ca).unwrap()],
        ..options()
    });
    let mut outcomes = trusting.outcomes();
    trusting.notify(&event, &[slack]).await;
    assert_eq!(next(&mut outcomes).await.error, None);
    assert_eq!(heads.recv().await.unwrap(), "POST /services/T/B/tls");
}
