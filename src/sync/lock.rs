//! One writer at a time: a per-application lock held as a Lease.
//!
//! ```text
//!   Lease windlass.<app>          coordination.k8s.io/v1, in the application's namespace
//!     labels  app.kubernetes.io/managed-by: windlass, windlass.dev/app
//!     spec    holderIdentity        cli:<user>@<host>:<pid>   (empty: free)
//!             acquireTime           when this holder took it
//!             renewTime             last sign of life ─┐
//!             leaseDurationSeconds  ───────────────────┴─► expired when renewTime + duration < now
//!             leaseTransitions      +1 each time the holder changes
//!
//!   acquire ─► GET ─┬─► absent ───────────────────► create ──────────────────┬─► AppLock
//!                   ├─► free | expired | ours ──► replace (resourceVersion) ─┘
//!                   │      (a 409 on either: someone raced us; GET again)
//!                   └─► held by another ─► poll until --lock-timeout ─► LockError::Held
//!
//!   AppLock ─┬─► every duration/3: renew (409 and another holder: is_lost())
//!            ├─► release(): stop renewing, clear holderIdentity
//!            └─► drop: stop renewing (the Lease expires by itself)
//! ```
//!
//! Every write carries the `resourceVersion` it read (or is a `create`), so
//! two callers racing for the same Lease cannot both win: the loser gets a
//! 409 and reads again. A holder that dies stops renewing; its Lease expires
//! after `leaseDurationSeconds` and the next caller takes it over.
//!
//! Holder identities must be unique per operation: a caller whose identity
//! already holds the Lease is given it again.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, ObjectMeta, PostParams};
use sha2::{Digest, Sha256};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::cluster::{ApiError, explain};
use crate::identity::{AppIdentity, LABEL_APP, LABEL_MANAGED_BY, MANAGED_BY};

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "application {app} is locked by {holder} (last renewed {renewed}); waited {waited_secs}s: \
         try again when that operation has finished, or raise --lock-timeout"
    )]
    Held {
        app: String,
        holder: String,
        renewed: String,
        waited_secs: u64,
    },
    #[error("application {app}: {doing} Lease {lease}")]
    Api {
        app: String,
        doing: String,
        lease: String,
        #[source]
        source: ApiError,
    },
}

/// How long to wait for the lock, and how long a holder's claim lasts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockOptions {
    /// How long `acquire` waits for another holder (`--lock-timeout`).
    pub wait: Duration,
    /// How long a claim lasts without renewal (`leaseDurationSeconds`,
    /// rounded up to whole seconds).
    pub lease_duration: Duration,
    /// How often a waiting caller looks again.
    pub poll: Duration,
}

impl Default for LockOptions {
    fn default() -> LockOptions {
        LockOptions {
            wait: Duration::from_secs(60),
            lease_duration: Duration::from_secs(30),
            poll: Duration::from_millis(500),
        }
    }
}

/// `cli:<user>@<hostname>:<pid>`: who holds the lock, for the message a
/// waiting caller sees.
pub fn default_holder() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "unknown".into());
    let host = ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|path| {
            let host = std::fs::read_to_string(path).ok()?.trim().to_string();
            (!host.is_empty()).then_some(host)
        })
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()))
        .unwrap_or_else(|| "unknown".into());
    format!("cli:{user}@{host}:{}", std::process::id())
}

/// The name of an application's Lease: `windlass.<name>`, or
/// `windlass.<16 hex digits of sha256(name)>` when that would not fit.
pub fn lease_name(app: &AppIdentity) -> String {
    let name = format!("windlass.{}", app.name);
    if name.len() <= 253 {
        return name;
    }
    let digest = Sha256::digest(app.name.as_bytes());
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("windlass.{hex}")
}

/// What a Lease, as read, means to a caller named `me`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseState {
    /// Nobody holds it.
    Free,
    /// `me` holds it already.
    Ours,
    /// Someone else held it but stopped renewing (or never said when it
    /// did): it may be taken over.
    Expired,
    /// Someone else holds it and renewed it recently.
    Held,
}

/// Decides whether a Lease can be taken. `renewed` is its `renewTime`, or
/// `acquireTime` when it has none; the Lease is expired once
/// `renewed + duration < now`.
pub fn lease_state(
    holder: Option<&str>,
    renewed: Option<Timestamp>,
    duration: Duration,
    now: Timestamp,
    me: &str,
) -> LeaseState {
    let holder = match holder {
        None | Some("") => return LeaseState::Free,
        Some(holder) => holder,
    };
    if holder == me {
        return LeaseState::Ours;
    }
    let Some(renewed) = renewed else {
        return LeaseState::Expired;
    };
    let duration = SignedDuration::try_from(duration).unwrap_or(SignedDuration::MAX);
    if now.duration_since(renewed) > duration {
        LeaseState::Expired
    } else {
        LeaseState::Held
    }
}

/// The application's lock, held until [`AppLock::release`] or drop. A
/// background task renews it every third of its duration.
pub struct AppLock {
    api: Api<Lease>,
    app: AppIdentity,
    name: String,
    holder: String,
    lost: Arc<AtomicBool>,
    stop: Option<oneshot::Sender<()>>,
    renewal: Option<JoinHandle<Option<Lease>>>,
}

impl fmt::Debug for AppLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppLock")
            .field("app", &self.app.full())
            .field("lease", &self.name)
            .field("holder", &self.holder)
            .field("lost", &self.is_lost())
            .finish_non_exhaustive()
    }
}

/// Takes the application's lock as `holder`, waiting up to `options.wait`
/// for another holder to release it or to stop renewing it.
pub async fn acquire(
    client: &kube::Client,
    app: &AppIdentity,
    holder: &str,
    options: &LockOptions,
) -> Result<AppLock, LockError> {
    let api: Api<Lease> = Api::namespaced(client.clone(), &app.namespace);
    let name = lease_name(app);
    let started = Instant::now();
    let api_error = |doing: &str, error: kube::Error| LockError::Api {
        app: app.full(),
        doing: doing.to_string(),
        lease: format!("{}/{name}", app.namespace),
        source: error.into(),
    };
    loop {
        let now = Timestamp::now();
        let Some(observed) = api
            .get_opt(&name)
            .await
            .map_err(|e| api_error("reading", e))?
        else {
            let lease = new_lease(app, &name, holder, options, now);
            match api.create(&PostParams::default(), &lease).await {
                Ok(created) => {
                    tracing::debug!(app = %app.full(), lease = %name, holder, "lock taken (new Lease)");
                    return Ok(AppLock::start(api, app, name, holder, created, options));
                }
                // Someone created it between our read and our write.
                Err(kube::Error::Api(status)) if status.code == 409 => continue,
                Err(error) => return Err(api_error("creating", error)),
            }
        };
        let spec = observed.spec.clone().unwrap_or_default();
        let current = spec.holder_identity.clone().unwrap_or_default();
        let renewed = spec
            .renew_time
            .as_ref()
            .or(spec.acquire_time.as_ref())
            .map(|t| t.0);
        let duration = spec
            .lease_duration_seconds
            .and_then(|s| u64::try_from(s).ok())
            .map_or(options.lease_duration, Duration::from_secs);
        match lease_state(Some(&current), renewed, duration, now, holder) {
            LeaseState::Held => {
                let waited = started.elapsed();
                if waited >= options.wait {
                    return Err(LockError::Held {
                        app: app.full(),
                        holder: current,
                        renewed: describe_renewal(renewed, now),
                        waited_secs: waited.as_secs(),
                    });
                }
                tracing::debug!(app = %app.full(), lease = %name, holder = %current, "lock held; waiting");
                tokio::time::sleep(options.poll.min(options.wait - waited)).await;
            }
            state => {
                let lease = claimed(observed, app, holder, options, now);
                match api.replace(&name, &PostParams::default(), &lease).await {
                    Ok(taken) => {
                        tracing::debug!(
                            app = %app.full(),
                            lease = %name,
                            holder,
                            previous = %current,
                            ?state,
                            "lock taken"
                        );
                        return Ok(AppLock::start(api, app, name, holder, taken, options));
                    }
                    // The Lease changed since we read it: read again.
                    Err(kube::Error::Api(status)) if status.code == 409 => continue,
                    Err(error) => return Err(api_error("taking", error)),
                }
            }
        }
    }
}

impl AppLock {
    fn start(
        api: Api<Lease>,
        app: &AppIdentity,
        name: String,
        holder: &str,
        lease: Lease,
        options: &LockOptions,
    ) -> AppLock {
        let lost = Arc::new(AtomicBool::new(false));
        let (stop, stopped) = oneshot::channel();
        let renewal = tokio::spawn(renew(
            Renewal {
                api: api.clone(),
                app: app.full(),
                name: name.clone(),
                holder: holder.to_string(),
                duration: options.lease_duration,
                lost: lost.clone(),
            },
            lease,
            stopped,
        ));
        AppLock {
            api,
            app: app.clone(),
            name,
            holder: holder.to_string(),
            lost,
            stop: Some(stop),
            renewal: Some(renewal),
        }
    }

    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// Whether the lock can no longer be trusted: a renewal found the Lease
    /// taken by someone else (or deleted), or renewals failed for a whole
    /// lease duration, so that it may have expired.
    pub fn is_lost(&self) -> bool {
        self.lost.load(Ordering::SeqCst)
    }

    /// Stops renewing and clears the holder, so that the next caller does
    /// not have to wait for the Lease to expire. A lock already lost is
    /// left to whoever holds it now.
    pub async fn release(mut self) -> Result<(), LockError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let last = match self.renewal.take() {
            Some(renewal) => renewal.await.ok().flatten(),
            None => None,
        };
        if self.is_lost() {
            tracing::debug!(app = %self.app.full(), lease = %self.name, "lock was lost; nothing to release");
            return Ok(());
        }
        let mut lease = match last {
            Some(lease) => lease,
            None => match self.read().await? {
                Some(lease) => lease,
                None => return Ok(()),
            },
        };
        loop {
            let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
            if spec.holder_identity.as_deref() != Some(self.holder.as_str()) {
                return Ok(());
            }
            spec.holder_identity = None;
            match self
                .api
                .replace(&self.name, &PostParams::default(), &lease)
                .await
            {
                Ok(_) => {
                    tracing::debug!(app = %self.app.full(), lease = %self.name, holder = %self.holder, "lock released");
                    return Ok(());
                }
                Err(kube::Error::Api(status)) if status.code == 409 => match self.read().await? {
                    Some(fresh) => lease = fresh,
                    None => return Ok(()),
                },
                Err(kube::Error::Api(status)) if status.code == 404 => return Ok(()),
                Err(error) => return Err(self.api_error("releasing", error)),
            }
        }
    }

    async fn read(&self) -> Result<Option<Lease>, LockError> {
        self.api
            .get_opt(&self.name)
            .await
            .map_err(|e| self.api_error("reading", e))
    }

    fn api_error(&self, doing: &str, error: kube::Error) -> LockError {
        LockError::Api {
            app: self.app.full(),
            doing: doing.to_string(),
            lease: format!("{}/{}", self.app.namespace, self.name),
            source: error.into(),
        }
    }
}

/// Deletes the application's Lease (after an uninstall), unless someone
/// holds it: a holder's Lease is theirs to release.
pub async fn remove(client: &kube::Client, app: &AppIdentity) -> Result<(), LockError> {
    let api: Api<Lease> = Api::namespaced(client.clone(), &app.namespace);
    let name = lease_name(app);
    let api_error = |doing: &str, error: kube::Error| LockError::Api {
        app: app.full(),
        doing: doing.to_string(),
        lease: format!("{}/{name}", app.namespace),
        source: error.into(),
    };
    let Some(lease) = api
        .get_opt(&name)
        .await
        .map_err(|e| api_error("reading", e))?
    else {
        return Ok(());
    };
    let held = lease
        .spec
        .as_ref()
        .and_then(|s| s.holder_identity.as_deref())
        .is_some_and(|h| !h.is_empty());
    if held {
        return Ok(());
    }
    let precondition = kube::api::DeleteParams {
        preconditions: Some(kube::api::Preconditions {
            resource_version: lease.metadata.resource_version.clone(),
            uid: None,
        }),
        ..Default::default()
    };
    match api.delete(&name, &precondition).await {
        Ok(_) => Ok(()),
        // Gone already, or taken meanwhile (the precondition failed).
        Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => Ok(()),
        Err(error) => Err(api_error("deleting", error)),
    }
}

impl Drop for AppLock {
    fn drop(&mut self) {
        // Best effort: without renewals the Lease expires by itself.
        if let Some(renewal) = self.renewal.take() {
            renewal.abort();
        }
    }
}

/// What the renewal task needs besides the Lease it last wrote.
struct Renewal {
    api: Api<Lease>,
    app: String,
    name: String,
    holder: String,
    duration: Duration,
    lost: Arc<AtomicBool>,
}

/// Renews the Lease every third of its duration until told to stop
/// (returning the last Lease written) or until the lock is lost (`None`).
async fn renew(
    renewal: Renewal,
    mut lease: Lease,
    mut stop: oneshot::Receiver<()>,
) -> Option<Lease> {
    let Renewal {
        api,
        app,
        name,
        holder,
        duration,
        lost,
    } = renewal;
    let interval = duration / 3;
    let mut last_renewed = Instant::now();
    let give_up = |reason: &str, current: Option<&str>| {
        lost.store(true, Ordering::SeqCst);
        tracing::warn!(app = %app, lease = %name, holder = %holder, current, reason, "lock lost");
    };
    loop {
        tokio::select! {
            _ = &mut stop => return Some(lease),
            _ = tokio::time::sleep(interval) => {}
        }
        let mut next = lease.clone();
        let spec = next.spec.get_or_insert_with(LeaseSpec::default);
        spec.holder_identity = Some(holder.clone());
        spec.renew_time = Some(MicroTime(Timestamp::now()));
        match api.replace(&name, &PostParams::default(), &next).await {
            Ok(renewed) => {
                lease = renewed;
                last_renewed = Instant::now();
                tracing::debug!(app = %app, lease = %name, holder = %holder, "lock renewed");
                continue;
            }
            Err(kube::Error::Api(status)) if status.code == 404 => {
                give_up("the Lease was deleted", None);
                return None;
            }
            Err(kube::Error::Api(status)) if status.code == 409 => {
                // Someone wrote the Lease: lost, unless it is still ours
                // (a label added by hand, say).
                match api.get_opt(&name).await {
                    Ok(Some(fresh)) => {
                        let current = fresh
                            .spec
                            .as_ref()
                            .and_then(|s| s.holder_identity.clone())
                            .unwrap_or_default();
                        if current != holder {
                            give_up("another holder took the Lease", Some(&current));
                            return None;
                        }
                        lease = fresh;
                    }
                    Ok(None) => {
                        give_up("the Lease was deleted", None);
                        return None;
                    }
                    Err(error) => {
                        tracing::debug!(app = %app, lease = %name, error = %explain(&error), "lock renewal: cannot read the Lease");
                    }
                }
            }
            Err(error) => {
                tracing::debug!(app = %app, lease = %name, error = %explain(&error), "lock renewal failed");
            }
        }
        if last_renewed.elapsed() >= duration {
            give_up("renewals failed for a whole lease duration", None);
            return None;
        }
    }
}

fn labels(app: &AppIdentity) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_MANAGED_BY.to_string(), MANAGED_BY.to_string()),
        (LABEL_APP.to_string(), app.label_value()),
    ])
}

/// `leaseDurationSeconds`: whole seconds, rounded up, at least 1.
fn duration_seconds(duration: Duration) -> i32 {
    let seconds = duration.as_secs() + u64::from(duration.subsec_nanos() > 0);
    i32::try_from(seconds.max(1)).unwrap_or(i32::MAX)
}

fn new_lease(
    app: &AppIdentity,
    name: &str,
    holder: &str,
    options: &LockOptions,
    now: Timestamp,
) -> Lease {
    Lease {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(app.namespace.clone()),
            labels: Some(labels(app)),
            ..Default::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(holder.to_string()),
            acquire_time: Some(MicroTime(now)),
            renew_time: Some(MicroTime(now)),
            lease_duration_seconds: Some(duration_seconds(options.lease_duration)),
            lease_transitions: Some(0),
            ..Default::default()
        }),
    }
}

/// The observed Lease (keeping its `resourceVersion`) rewritten with us as
/// its holder.
fn claimed(
    mut lease: Lease,
    app: &AppIdentity,
    holder: &str,
    options: &LockOptions,
    now: Timestamp,
) -> Lease {
    lease
        .metadata
        .labels
        .get_or_insert_with(BTreeMap::new)
        .extend(labels(app));
    let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
    if spec.holder_identity.as_deref() != Some(holder) {
        spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0).saturating_add(1));
        spec.acquire_time = Some(MicroTime(now));
    }
    spec.holder_identity = Some(holder.to_string());
    spec.renew_time = Some(MicroTime(now));
    spec.lease_duration_seconds = Some(duration_seconds(options.lease_duration));
    lease
}

/// `2026-11-23T10:02:11Z, 4s ago`, or `never`.
fn describe_renewal(renewed: Option<Timestamp>, now: Timestamp) -> String {
    match renewed {
        None => "never".to_string(),
        Some(renewed) => format!(
            "{}, {}s ago",
            renewed.strftime("%Y-%m-%dT%H:%M:%SZ"),
            now.duration_since(renewed).as_secs().max(0)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + second).unwrap()
    }

    const THIRTY: Duration = Duration::from_secs(30);

    #[test]
    fn an_empty_holder_is_free() {
        assert_eq!(
            lease_state(None, Some(at(0)), THIRTY, at(1), "me"),
            LeaseState::Free
        );
        assert_eq!(
            lease_state(Some(""), Some(at(0)), THIRTY, at(1), "me"),
            LeaseState::Free
        );
    }

    #[test]
    fn our_own_lease_is_ours_even_when_expired() {
        assert_eq!(
            lease_state(Some("me"), Some(at(0)), THIRTY, at(1), "me"),
            LeaseState::Ours
        );
        assert_eq!(
            lease_state(Some("me"), Some(at(0)), THIRTY, at(3600), "me"),
            LeaseState::Ours
        );
    }

    #[test]
    fn another_holder_holds_it_until_renewal_plus_duration_has_passed() {
        let state = |now| lease_state(Some("other"), Some(at(0)), THIRTY, now, "me");
        assert_eq!(state(at(1)), LeaseState::Held);
        assert_eq!(state(at(30)), LeaseState::Held, "expiry is strict");
        assert_eq!(state(at(31)), LeaseState::Expired);
        assert_eq!(state(at(3600)), LeaseState::Expired);
    }

    #[test]
    fn a_renewal_from_a_clock_ahead_of_ours_still_holds() {
        assert_eq!(
            lease_state(Some("other"), Some(at(10)), THIRTY, at(0), "me"),
            LeaseState::Held
        );
    }

    #[test]
    fn a_holder_that_never_renewed_can_be_taken_over() {
        assert_eq!(
            lease_state(Some("other"), None, THIRTY, at(0), "me"),
            LeaseState::Expired
        );
    }

    #[test]
    fn lease_names_fit_and_are_stable() {
        let short = AppIdentity::new("team-a", "guestbook");
        assert_eq!(lease_name(&short), "windlass.guestbook");
        let long = AppIdentity::new("team-a", "x".repeat(250));
        let name = lease_name(&long);
        assert_eq!(name.len(), "windlass.".len() + 16, "{name}");
        assert!(name.starts_with("windlass."), "{name}");
        assert_eq!(name, lease_name(&long));
        assert_ne!(
            name,
            lease_name(&AppIdentity::new("team-a", "y".repeat(250)))
        );
        let edge = AppIdentity::new("team-a", "x".repeat(253 - "windlass.".len()));
        assert_eq!(lease_name(&edge), format!("windlass.{}", edge.name));
    }

    #[test]
    fn durations_are_whole_seconds_rounded_up() {
        assert_eq!(duration_seconds(Duration::from_secs(30)), 30);
        assert_eq!(duration_seconds(Duration::from_millis(2500)), 3);
        assert_eq!(duration_seconds(Duration::from_millis(10)), 1);
        assert_eq!(duration_seconds(Duration::ZERO), 1);
    }

    #[test]
    fn taking_over_counts_a_transition_and_keeping_does_not() {
        let app = AppIdentity::new("team-a", "guestbook");
        let options = LockOptions::default();
        let mut lease = new_lease(&app, "windlass.guestbook", "dead", &options, at(0));
        lease.metadata.resource_version = Some("42".into());
        let taken = claimed(lease, &app, "me", &options, at(100));
        let spec = taken.spec.clone().unwrap();
        assert_eq!(spec.holder_identity.as_deref(), Some("me"));
        assert_eq!(spec.lease_transitions, Some(1));
        assert_eq!(spec.acquire_time, Some(MicroTime(at(100))));
        assert_eq!(
            taken.metadata.resource_version.as_deref(),
            Some("42"),
            "optimistic concurrency"
        );
        let kept = claimed(taken, &app, "me", &options, at(110)).spec.unwrap();
        assert_eq!(kept.lease_transitions, Some(1));
        assert_eq!(kept.acquire_time, Some(MicroTime(at(100))));
        assert_eq!(kept.renew_time, Some(MicroTime(at(110))));
    }

    #[test]
    fn the_held_message_names_holder_renewal_wait_and_what_to_do() {
        let error = LockError::Held {
            app: "team-a.guestbook".into(),
            holder: "cli:ana@build-1:4242".into(),
            renewed: describe_renewal(Some(at(0)), at(4)),
            waited_secs: 60,
        };
        let message = error.to_string();
        for part in [
            "team-a.guestbook",
            "cli:ana@build-1:4242",
            "2027-01-15T08:00:00Z, 4s ago",
            "waited 60s",
            "--lock-timeout",
        ] {
            assert!(message.contains(part), "{part:?} missing from: {message}");
        }
    }

    #[test]
    fn the_default_holder_names_user_host_and_process() {
        let holder = default_holder();
        assert!(holder.starts_with("cli:"), "{holder}");
        assert!(holder.contains('@'), "{holder}");
        assert!(
            holder.ends_with(&format!(":{}", std::process::id())),
            "{holder}"
        );
    }
}
