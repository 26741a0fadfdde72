//! The per-application lock (`history::lease`) against the real local
//! control plane: waiting, release, takeover of a dead holder's Lease,
//! renewal, and mutual exclusion under a race.

mod support;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use support::with_namespace;
use windlass::identity::AppIdentity;
use windlass::sync::lock::{self, AppLock, LockError, LockOptions};

/// A guard against hanging, not a timing assertion.
const LIMIT: Duration = Duration::from_secs(90);
const LEASE: &str = "windlass.app";

fn options(lease_secs: u64, wait: Duration) -> LockOptions {
    LockOptions {
        wait,
        lease_duration: Duration::from_secs(lease_secs),
        poll: Duration::from_millis(100),
    }
}

async fn bounded<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(LIMIT, future)
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish within {LIMIT:?}"))
}

async fn acquire(
    client: &Client,
    app: &AppIdentity,
    holder: &str,
    options: &LockOptions,
) -> Result<AppLock, LockError> {
    bounded(
        &format!("acquire by {holder}"),
        lock::acquire(client, app, holder, options),
    )
    .await
}

async fn read_spec(client: &Client, namespace: &str) -> LeaseSpec {
    let leases: Api<Lease> = Api::namespaced(client.clone(), namespace);
    leases
        .get(LEASE)
        .await
        .unwrap_or_else(|e| panic!("reading Lease {LEASE}: {e}"))
        .spec
        .expect("a Lease has a spec")
}

/// Asserts that `result` is `LockError::Held` by `holder` and returns its message.
fn held_by(result: Result<AppLock, LockError>, holder: &str) -> String {
    match result {
        Err(error @ LockError::Held { .. }) => {
            let message = error.to_string();
            let LockError::Held { holder: named, .. } = &error else {
                unreachable!()
            };
            assert_eq!(named, holder, "{message}");
            assert!(message.contains(holder), "{message}");
            message
        }
        Err(other) => panic!("expected the lock to be held by {holder}, got: {other}"),
        Ok(lock) => panic!(
            "expected the lock to be held by {holder}, but {} acquired it",
            lock.holder()
        ),
    }
}

#[tokio::test]
async fn a_second_holder_waits_and_then_fails_naming_the_first() {
    with_namespace("lease-held", |client, ns| async move {
        let app = AppIdentity::new(&ns, "app");
        let first = acquire(&client, &app, "holder-a", &options(3, Duration::ZERO))
            .await
            .expect("the first caller takes a free lock");
        assert_eq!(first.holder(), "holder-a");

        let second = acquire(
            &client,
            &app,
            "holder-b",
            &options(3, Duration::from_secs(2)),
        )
        .await;
        let message = held_by(second, "holder-a");
        assert!(message.contains(&app.full()), "{message}");
        assert!(message.contains("last renewed"), "{message}");
        assert!(message.contains("--lock-timeout"), "{message}");
        assert!(
            message.contains("waited 2s"),
            "the caller waited its whole --lock-timeout: {message}"
        );

        let spec = read_spec(&client, &ns).await;
        assert_eq!(spec.holder_identity.as_deref(), Some("holder-a"));
        assert!(!first.is_lost());
        first.release().await.expect("release");
    })
    .await;
}

#[tokio::test]
async fn after_release_the_next_holder_acquires_at_once() {
    with_namespace("lease-release", |client, ns| async move {
        let app = AppIdentity::new(&ns, "app");
        // A long lease: only the release can free it within this test.
        let first = acquire(&client, &app, "holder-a", &options(600, Duration::ZERO))
            .await
            .expect("the first caller takes a free lock");
        held_by(
            acquire(&client, &app, "holder-b", &options(600, Duration::ZERO)).await,
            "holder-a",
        );

        first.release().await.expect("release");
        let spec = read_spec(&client, &ns).await;
        assert_eq!(
            spec.holder_identity.unwrap_or_default(),
            "",
            "release clears the holder"
        );

        // No waiting allowed: the lock must be free right away.
        let second = acquire(&client, &app, "holder-b", &options(600, Duration::ZERO))
            .await
            .expect("the lock is free after release");
        let spec = read_spec(&client, &ns).await;
        assert_eq!(spec.holder_identity.as_deref(), Some("holder-b"));
        assert_eq!(spec.lease_transitions, Some(1));
        second.release().await.expect("release");
    })
    .await;
}

#[tokio::test]
async fn a_dead_holders_lease_is_taken_over() {
    with_namespace("lease-dead", |client, ns| async move {
        let app = AppIdentity::new(&ns, "app");
        let leases: Api<Lease> = Api::namespaced(client.clone(), &ns);
        let now = Timestamp::now();
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(LEASE.into()),
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some("dead-process".into()),
                acquire_time: Some(MicroTime(now)),
                renew_time: Some(MicroTime(now)),
                lease_duration_seconds: Some(600),
                lease_transitions: Some(4),
                ..Default::default()
            }),
        };
        leases
            .create(&PostParams::default(), &lease)
            .await
            .expect("creating the dead holder's Lease");

        // While its renewal is recent, the holder counts as alive.
        held_by(
            acquire(&client, &app, "alive", &options(3, Duration::ZERO)).await,
            "dead-process",
        );

        // The holder died an hour ago: its last renewal is long past.
        let mut lease = leases.get(LEASE).await.expect("reading the Lease");
        let spec = lease.spec.as_mut().expect("spec");
        let old = now.checked_sub(SignedDuration::from_hours(1)).unwrap();
        spec.renew_time = Some(MicroTime(old));
        spec.acquire_time = Some(MicroTime(old));
        spec.lease_duration_seconds = Some(2);
        leases
            .replace(LEASE, &PostParams::default(), &lease)
            .await
            .expect("ageing the Lease");

        let lock = acquire(&client, &app, "alive", &options(3, Duration::ZERO))
            .await
            .expect("an expired lease is taken over without waiting");
        let spec = read_spec(&client, &ns).await;
        assert_eq!(spec.holder_identity.as_deref(), Some("alive"));
        assert_eq!(spec.lease_transitions, Some(5));
        let renewed = spec.renew_time.expect("renewTime").0;
        assert!(renewed > old, "renewTime {renewed} not after {old}");
        lock.release().await.expect("release");
    })
    .await;
}

#[tokio::test]
async fn renewal_keeps_the_lock_past_its_lease_duration() {
    with_namespace("lease-renew", |client, ns| async move {
        let app = AppIdentity::new(&ns, "app");
        let duration = 3;
        let holder = acquire(
            &client,
            &app,
            "holder-a",
            &options(duration, Duration::ZERO),
        )
        .await
        .expect("the first caller takes a free lock");
        let acquired = read_spec(&client, &ns).await;

        // Without renewals the Lease would expire after 3 s; compete for 9 s.
        let started = Instant::now();
        let mut attempts = 0;
        while started.elapsed() < Duration::from_secs(3 * duration) {
            held_by(
                acquire(
                    &client,
                    &app,
                    "holder-b",
                    &options(duration, Duration::from_secs(1)),
                )
                .await,
                "holder-a",
            );
            attempts += 1;
        }
        assert!(attempts >= 3, "only {attempts} attempts");
        assert!(!holder.is_lost(), "renewals kept the lock");

        let renewed = read_spec(&client, &ns).await;
        assert_eq!(renewed.holder_identity.as_deref(), Some("holder-a"));
        assert_eq!(
            renewed.acquire_time, acquired.acquire_time,
            "renewal is not a new acquisition"
        );
        assert!(
            renewed.renew_time.as_ref().unwrap().0 > acquired.renew_time.as_ref().unwrap().0,
            "renewTime moved forward"
        );
        assert_eq!(renewed.lease_transitions, acquired.lease_transitions);
        holder.release().await.expect("release");
    })
    .await;
}

#[tokio::test]
async fn racing_callers_hold_the_lock_one_at_a_time() {
    with_namespace("lease-race", |client, ns| async move {
        let app = AppIdentity::new(&ns, "app");
        let start = Arc::new(tokio::sync::Barrier::new(2));
        let holding = Arc::new(AtomicUsize::new(0));
        let most_at_once = Arc::new(AtomicUsize::new(0));
        let racers: Vec<_> = ["racer-1", "racer-2"]
            .into_iter()
            .map(|name| {
                let (client, app) = (client.clone(), app.clone());
                let (start, holding, most_at_once) =
                    (start.clone(), holding.clone(), most_at_once.clone());
                tokio::spawn(async move {
                    start.wait().await;
                    let lock =
                        lock::acquire(&client, &app, name, &options(3, Duration::from_secs(30)))
                            .await
                            .unwrap_or_else(|e| panic!("{name}: {e}"));
                    let now = holding.fetch_add(1, Ordering::SeqCst) + 1;
                    most_at_once.fetch_max(now, Ordering::SeqCst);
                    // Long enough for the other racer to try, and wait.
                    tokio::time::sleep(Duration::from_millis(1500)).await;
                    assert!(!lock.is_lost(), "{name} lost the lock while holding it");
                    holding.fetch_sub(1, Ordering::SeqCst);
                    lock.release()
                        .await
                        .unwrap_or_else(|e| panic!("{name}: {e}"));
                })
            })
            .collect();
        for racer in racers {
            bounded("a racer", racer)
                .await
                .expect("each racer acquires in turn");
        }
        assert_eq!(
            most_at_once.load(Ordering::SeqCst),
            1,
            "two callers held the lock at once"
        );
        let spec = read_spec(&client, &ns).await;
        assert_eq!(spec.holder_identity.unwrap_or_default(), "");
        assert_eq!(
            spec.lease_transitions,
            Some(1),
            "created by one racer, then handed to the other"
        );
    })
    .await;
}
