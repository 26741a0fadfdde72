//! One reconcile of one Application, as the controller runs it.
//!
//! ```text
//!   Application ─► finalizer ─┬─ deleted ─► cleanup: uninstall (sync.prune) or orphan
//!                             └─ live ────► suspended? ─► keep everything, wait for a change
//!                                          not due yet and nothing new? ─► requeue (no work)
//!                                          dependsOn not Ready ─► DependencyNotReady, retry soon
//!                                          resolve commit (git, credentials from secretRef)
//!                                          render (skipped when nothing under the path changed)
//!                                          plan ─► no changes ─► status (patched only if it differs)
//!                                               ├► drift, selfHeal off ─► Drifted, DriftDetected
//!                                               ├► not automated ─► OutOfSync (until `windlass reconcile`)
//!                                               └► sync (engine): record, apply, prune, health,
//!                                                  automatic rollback ─► status, events
//!   requeue: interval (+ up to 10% jitter); after an error: 5s, 10s, 20s ... capped at interval
//! ```
//!
//! A reconcile that finds nothing to do writes nothing: no object, no
//! record, no status, no Event.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::finalizer::{self, finalizer};
use kube::{Resource, ResourceExt};
use tracing::{Span, debug, info, instrument, warn};

use super::Error;
use super::metrics::{AppLabels, Metrics, ResultLabels, WriteLabels};
use super::status::{self, Applied, Observation, State};
use crate::history::{RevisionStatus, RevisionStore};
use crate::render::Capabilities;
use crate::source::{Credentials, SourceCache};
use crate::spec::{Application, ApplicationStatus, FINALIZER, REQUESTED_AT_ANNOTATION};
use crate::sync::apply::ApplyOptions;
use crate::sync::drift::Drift;
use crate::sync::engine::{self, Desired, EngineError, SourceSpec, SyncOptions, Target};
use crate::sync::identity::FIELD_MANAGER;
use crate::sync::kinds::Kinds;
use crate::sync::plan::PlanOptions;
use git2::Oid;

/// How long an Application waits before checking its dependencies again.
const DEPENDENCY_RETRY: Duration = Duration::from_secs(5);
/// The first retry after an error; it doubles up to the interval.
const FIRST_BACKOFF: Duration = Duration::from_secs(5);
/// Objects named in a condition or Event message; the rest are counted.
const OBJECTS_SHOWN: usize = 10;

/// What every reconcile shares.
pub struct Context {
    pub client: kube::Client,
    pub kinds: Arc<Kinds>,
    pub cache: SourceCache,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    /// `controller:<pod or host>`, written as `triggeredBy` in records.
    pub identity: String,
    /// Discovery older than this is read again before a render.
    pub discovery_refresh: Duration,
    /// Per Application (`namespace/name`): what the last reconcile learned.
    memory: Mutex<HashMap<String, Memory>>,
}

impl Context {
    pub fn new(
        client: kube::Client,
        kinds: Arc<Kinds>,
        cache: SourceCache,
        metrics: Arc<Metrics>,
        identity: String,
        discovery_refresh: Duration,
    ) -> Context {
        let recorder = Recorder::new(
            client.clone(),
            kube::runtime::events::Reporter {
                controller: "windlass".into(),
                instance: Some(identity.clone()),
            },
        );
        Context {
            client,
            kinds,
            cache,
            recorder,
            metrics,
            identity,
            discovery_refresh,
            memory: Mutex::default(),
        }
    }

    fn remember<T>(&self, key: &str, change: impl FnOnce(&mut Memory) -> T) -> T {
        let mut memory = self.memory.lock().expect("memory lock");
        change(memory.entry(key.to_string()).or_default())
    }
}

/// What the controller keeps between two reconciles of one Application.
#[derive(Default)]
struct Memory {
    /// The generation and `requested-at` the last full reconcile saw.
    seen: Option<(Option<i64>, Option<String>)>,
    /// When the next full reconcile is due.
    next_due: Option<Instant>,
    /// Errors in a row (for the backoff).
    failures: u32,
    /// The last render, reused while nothing under the path changes.
    rendered: Option<Arc<RenderedSource>>,
}

struct RenderedSource {
    generation: Option<i64>,
    commit: Oid,
    watched_paths: Vec<String>,
    values_digest: String,
    /// What the cluster offered the templates.
    capabilities: Arc<Capabilities>,
    desired: Desired,
}

/// The controller's reconcile function.
pub async fn reconcile(
    application: Arc<Application>,
    context: Arc<Context>,
) -> Result<Action, Error> {
    let namespace = application.namespace().unwrap_or_default();
    let api: Api<Application> = Api::namespaced(context.client.clone(), &namespace);
    finalizer(&api, FINALIZER, application, |event| async {
        match event {
            finalizer::Event::Apply(application) => apply(application, context.clone()).await,
            finalizer::Event::Cleanup(application) => cleanup(application, context.clone()).await,
        }
    })
    .await
    .map_err(|error| Error::Finalizer(Box::new(error)))
}

/// An error the reconcile could not even report in status: retry with backoff.
pub fn error_policy(application: Arc<Application>, error: &Error, context: Arc<Context>) -> Action {
    let key = key(&application);
    warn!(app = %key, error = %error, "reconcile failed");
    let interval = application.interval().unwrap_or(Duration::from_secs(60));
    let failures = context.remember(&key, |memory| {
        memory.failures += 1;
        memory.seen = None;
        memory.failures
    });
    Action::requeue(backoff(failures, interval))
}

fn key(application: &Application) -> String {
    format!(
        "{}/{}",
        application.namespace().unwrap_or_default(),
        application.name_any()
    )
}

fn labels(application: &Application) -> AppLabels {
    AppLabels {
        namespace: application.namespace().unwrap_or_default(),
        name: application.name_any(),
    }
}

/// What one reconcile decided: the status, the Events, when to come back.
struct Outcome {
    observation: Observation,
    events: Vec<Event>,
    /// The status to write before a long operation (a sync), if any.
    result: &'static str,
    requeue: Duration,
    failed: bool,
}

#[instrument(skip_all, fields(app = %key(&application), revision, commit))]
async fn apply(application: Arc<Application>, context: Arc<Context>) -> Result<Action, Error> {
    let key = key(&application);
    if application.spec.suspend {
        // Suspended: no sync, no status write; resume is a spec change.
        context.remember(&key, |memory| memory.seen = None);
        return Ok(Action::await_change());
    }
    let generation = application.metadata.generation;
    let requested = application
        .annotations()
        .get(REQUESTED_AT_ANNOTATION)
        .cloned();
    let handled = application
        .status
        .as_ref()
        .and_then(|s| s.last_handled_reconcile_at.clone());
    let asked = requested.is_some() && requested != handled;
    let seen = Some((generation, requested.clone()));
    let now = Instant::now();
    let not_due = context.remember(&key, |memory| {
        (memory.seen == seen && !asked)
            .then_some(memory.next_due)
            .flatten()
            .filter(|due| *due > now)
    });
    if let Some(due) = not_due {
        return Ok(Action::requeue(due - now));
    }

    let started = Instant::now();
    let interval = application.interval().unwrap_or(Duration::from_secs(60));
    if let Some(revision) = application
        .status
        .as_ref()
        .and_then(|s| s.last_applied_revision)
    {
        Span::current().record("revision", revision);
    }
    // Boxed as `dyn Future + Send` here, where every lifetime is concrete:
    // rustc cannot prove the engine's futures Send for all lifetimes.
    let decision: futures::future::BoxFuture<'_, Outcome> =
        Box::pin(decide(&application, &context, asked));
    let mut outcome = decision.await;
    outcome.observation.generation = generation;
    outcome.observation.deletion_policy = Some(deletion_policy(&application).to_string());
    if asked {
        outcome.observation.handled_request = requested;
    }
    if outcome.failed {
        // The same failure again: the status says it already; no new Event.
        let repeated = application.condition(status::READY).is_some_and(|c| {
            matches!(&outcome.observation.state,
                Some(State::NotReady { reason, message, .. })
                    if *reason == c.reason && *message == c.message)
        });
        if repeated {
            outcome.events.clear();
        }
    }
    write_status(&application, &context, &outcome.observation).await?;
    for event in &outcome.events {
        publish(&application, &context, event).await;
    }

    let metrics = &context.metrics;
    let labels = labels(&application);
    metrics
        .reconciles
        .get_or_create(&ResultLabels {
            namespace: labels.namespace.clone(),
            name: labels.name.clone(),
            result: outcome.result.to_string(),
        })
        .inc();
    metrics
        .reconcile_duration
        .observe(started.elapsed().as_secs_f64());
    let ready = application_ready(application.status.as_ref(), &outcome.observation);
    metrics.ready.get_or_create(&labels).set(i64::from(ready));

    let failures = context.remember(&key, |memory| {
        memory.failures = if outcome.failed {
            memory.failures + 1
        } else {
            0
        };
        memory.failures
    });
    let requeue = if outcome.failed {
        backoff(failures, interval)
    } else {
        outcome.requeue
    };
    context.remember(&key, |memory| {
        memory.seen = seen;
        memory.next_due = Some(Instant::now() + requeue);
    });
    Ok(Action::requeue(requeue))
}

fn deletion_policy(application: &Application) -> &'static str {
    if application.spec.sync.prune {
        "Prune"
    } else {
        "Orphan"
    }
}

/// Whether the Application is Ready after this observation.
fn application_ready(old: Option<&ApplicationStatus>, observation: &Observation) -> bool {
    match &observation.state {
        Some(State::Ready { .. }) => true,
        Some(_) => false,
        None => old
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == status::READY))
            .is_some_and(|c| c.status == "True"),
    }
}

fn not_ready(reason: &str, message: String, stalled: bool) -> State {
    State::NotReady {
        reason: reason.to_string(),
        message,
        stalled,
    }
}

fn failure(reason: &str, message: String) -> Outcome {
    Outcome {
        observation: Observation {
            state: Some(not_ready(reason, message.clone(), false)),
            ..Observation::default()
        },
        events: vec![warning("SyncFailed", "Sync", message)],
        result: "failure",
        requeue: Duration::ZERO,
        failed: true,
    }
}

fn normal(reason: &str, action: &str, note: String) -> Event {
    Event {
        type_: EventType::Normal,
        reason: reason.to_string(),
        note: Some(cut(note)),
        action: action.to_string(),
        secondary: None,
    }
}

fn warning(reason: &str, action: &str, note: String) -> Event {
    Event {
        type_: EventType::Warning,
        reason: reason.to_string(),
        note: Some(cut(note)),
        action: action.to_string(),
        secondary: None,
    }
}

/// Event notes are limited to 1 kB.
fn cut(mut text: String) -> String {
    if text.len() > 1000 {
        let mut end = 997;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

fn short(commit: &str) -> &str {
    &commit[..commit.len().min(7)]
}

/// Everything between "the reconcile is due" and "write the status".
async fn decide(application: &Application, context: &Context, asked: bool) -> Outcome {
    let key = key(application);
    let interval = application.interval().unwrap_or(Duration::from_secs(60));
    let old = application.status.clone().unwrap_or_default();

    // 1. Dependencies: each Ready at its current revision.
    if let Some(waiting) = unready_dependency(application, context).await {
        return Outcome {
            observation: Observation {
                state: Some(not_ready("DependencyNotReady", waiting, false)),
                ..Observation::default()
            },
            events: Vec::new(),
            result: "skipped",
            requeue: DEPENDENCY_RETRY.min(interval),
            failed: false,
        };
    }

    // 2. The target, with credentials from secretRef.
    let namespace = application.namespace().unwrap_or_default();
    let credentials = match &application.spec.source.secret_ref {
        Some(secret) => {
            match crate::cluster::read_git_credentials(&context.client, &namespace, &secret.name)
                .await
            {
                Ok(credentials) => credentials,
                Err(error) => return failure("CredentialsFailed", error.to_string()),
            }
        }
        None => Credentials::None,
    };
    let target =
        match Target::from_application(application, credentials, &format!("Application {key}")) {
            Ok(target) => target,
            Err(error) => return failure("SourceFailed", format!("git: {error}")),
        };
    let SourceSpec::Git {
        repo, reference, ..
    } = &target.source
    else {
        unreachable!("an Application's source is a git repository");
    };

    // 3. Resolve the ref.
    let fetch_started = Instant::now();
    let resolved = match context.cache.resolve(repo, reference).await {
        Ok(resolved) => resolved,
        Err(error) => return failure("GitFailed", format!("git: {error}")),
    };
    context
        .metrics
        .git_fetch_duration
        .observe(fetch_started.elapsed().as_secs_f64());
    let commit = resolved.commit.to_string();
    Span::current().record("commit", short(&commit));

    // 4. Render, unless nothing under the path changed since the last render.
    let rendered = match desired(application, context, &target, &resolved).await {
        Ok(rendered) => rendered,
        Err(error) => {
            let mut outcome = match &error {
                EngineError::Render { what, error } => failure(
                    "RenderFailed",
                    format!("render failed: {error} (in {what})"),
                ),
                EngineError::Source(error) => failure("GitFailed", format!("git: {error}")),
                other => failure("RenderFailed", format!("render failed: {other}")),
            };
            outcome.observation.attempted_commit = Some(commit);
            return outcome;
        }
    };
    let desired = &rendered.desired;
    // The commit whose content this is: a newer commit that changed nothing
    // under the path reuses the render, and the status keeps naming the
    // commit rendered (so an unrelated commit writes nothing).
    let commit = rendered.commit.to_string();
    Span::current().record("commit", short(&commit));

    // 5. Plan against the cluster.
    let plan_options = plan_options();
    let plan = match engine::plan(
        &context.client,
        &context.kinds,
        &target.app,
        desired,
        plan_options,
    )
    .await
    {
        Ok(plan) => plan,
        Err(error) => {
            let mut outcome = failure("PlanFailed", format!("plan failed: {error}"));
            outcome.observation.attempted_commit = Some(commit);
            return outcome;
        }
    };
    let same_as_applied = old.last_applied_revision.is_some()
        && old.manifest_digest.as_deref() == Some(desired.rendered.manifest_digest.as_str());
    let drift = if same_as_applied {
        Drift::from_plan(&plan)
    } else {
        Drift::default()
    };
    context
        .metrics
        .drifted_objects
        .get_or_create(&labels(application))
        .set(drift.objects.len() as i64);

    let mut observation = Observation {
        attempted_commit: Some(commit.clone()),
        ..Observation::default()
    };
    let done = |observation: Observation, events: Vec<Event>, result: &'static str| Outcome {
        observation,
        events,
        result,
        requeue: jitter(interval),
        failed: false,
    };

    // 6. Nothing to write: the applied revision is live.
    if !plan.has_changes() {
        let applied = if same_as_applied {
            None
        } else {
            // Applied by someone else (the CLI) or before this status existed.
            live_revision(&context.client, &target.app).await
        };
        let (revision, applied_commit) = match &applied {
            Some(applied) => (Some(applied.revision), applied.commit.clone()),
            None => (
                old.last_applied_revision.map(|r| r as u64),
                old.last_applied_commit.clone(),
            ),
        };
        if let Some(revision) = revision {
            Span::current().record("revision", revision);
        }
        observation.applied = applied;
        observation.held_back_commit = Some(None);
        observation.drift = Some(None);
        observation.state = Some(State::Ready {
            reason: "Succeeded".into(),
            message: applied_message(revision, applied_commit.as_deref()),
        });
        return done(observation, Vec::new(), "success");
    }

    // 7. Changes the policy does not allow to apply now.
    let automated = application.spec.sync.automated;
    let self_heal = application.spec.sync.self_heal;
    let may_sync = asked || (automated && (!same_as_applied || self_heal));
    if !may_sync {
        let mut events = Vec::new();
        if same_as_applied {
            let summary = drift.summary(OBJECTS_SHOWN);
            let already = application
                .condition(status::DRIFTED)
                .is_some_and(|c| c.message == summary);
            if !already {
                events.push(warning("DriftDetected", "DetectDrift", summary.clone()));
            }
            observation.drift = Some(Some(summary));
        } else {
            observation.state = Some(not_ready(
                "OutOfSync",
                format!(
                    "commit {} is not applied ({}); automated sync is off: run `windlass reconcile {}`",
                    short(&commit),
                    plan.summary(),
                    application.name_any()
                ),
                false,
            ));
        }
        return done(observation, events, "success");
    }

    // 8. Sync.
    let progressing = Observation {
        state: Some(State::Progressing {
            message: format!("applying commit {}: {}", short(&commit), plan.summary()),
        }),
        attempted_commit: Some(commit.clone()),
        ..Observation::default()
    };
    if let Err(error) = write_status(application, context, &progressing).await {
        warn!(error = %error, "could not mark the Application as reconciling");
    }
    let options = sync_options(application, context, plan_options, same_as_applied);
    let progress = |line: &str| info!("{line}");
    let plan_summary = plan.summary();
    // The plan made above is fresh: the engine does not dry-run it again.
    let result = engine::sync_planned(
        &context.client,
        &context.kinds,
        &target.app,
        desired,
        Some(plan),
        &options,
        &progress,
    )
    .await;
    let result = match result {
        Ok(result) => result,
        Err(EngineError::Quarantined { what, revision }) => {
            observation.held_back_commit = Some(Some(commit.clone()));
            observation.state = Some(not_ready(
                "HeldBack",
                format!(
                    "{what} failed its health check at revision {revision} and was rolled back; \
                     it is not applied again until a new commit arrives"
                ),
                true,
            ));
            return done(observation, Vec::new(), "success");
        }
        Err(error) => {
            // A busy lock (someone runs `windlass sync` by hand) is retried.
            let reason = match &error {
                EngineError::Lock(_) => "Locked",
                _ => "SyncFailed",
            };
            let mut outcome = failure(reason, format!("sync failed: {error}"));
            outcome.observation.attempted_commit = Some(commit);
            return outcome;
        }
    };

    let mut events = Vec::new();
    if let Some(report) = &result.report {
        let writes = &context.metrics.apply_requests;
        let labels = labels(application);
        let count = |operation: &str, n: usize| {
            writes
                .get_or_create(&WriteLabels {
                    namespace: labels.namespace.clone(),
                    name: labels.name.clone(),
                    operation: operation.to_string(),
                })
                .inc_by(n as u64);
        };
        count("apply", report.created.len() + report.updated.len());
        count("delete", report.deleted.len());
        if !report.deleted.is_empty() {
            let names: Vec<String> = report
                .deleted
                .iter()
                .take(OBJECTS_SHOWN)
                .map(crate::sync::diff::display_name)
                .collect();
            events.push(normal(
                "Pruned",
                "Prune",
                format!(
                    "deleted {} object(s): {}",
                    report.deleted.len(),
                    names.join(", ")
                ),
            ));
        }
    }
    let number = result.revision.unwrap_or_default();
    Span::current().record("revision", number);
    match (result.status, result.rolled_back_to) {
        (None, _) => {
            // Another writer made it current meanwhile.
            observation.applied = live_revision(&context.client, &target.app).await;
            observation.drift = Some(None);
            observation.held_back_commit = Some(None);
            let applied = observation.applied.clone();
            observation.state = Some(State::Ready {
                reason: "Succeeded".into(),
                message: applied_message(
                    applied.as_ref().map(|a| a.revision),
                    applied.as_ref().and_then(|a| a.commit.as_deref()),
                ),
            });
            done(observation, events, "success")
        }
        (Some(RevisionStatus::Deployed), _) => {
            observation.applied = Some(Applied {
                revision: number,
                commit: Some(commit.clone()),
                manifest_digest: desired.rendered.manifest_digest.clone(),
                object_count: desired.rendered.objects.len(),
                sync_time: engine::now(),
            });
            observation.drift = Some(None);
            observation.held_back_commit = Some(None);
            observation.state = Some(State::Ready {
                reason: "Succeeded".into(),
                message: applied_message(Some(number), Some(&commit)),
            });
            if same_as_applied && !drift.is_empty() {
                events.push(normal(
                    "DriftCorrected",
                    "SelfHeal",
                    format!(
                        "re-applied revision {number}: {}",
                        drift.summary(OBJECTS_SHOWN)
                    ),
                ));
            } else {
                events.push(normal(
                    "SyncSucceeded",
                    "Sync",
                    format!(
                        "revision {number}: commit {}: {}",
                        short(&commit),
                        plan_summary
                    ),
                ));
            }
            done(observation, events, "success")
        }
        (Some(_), Some(target_revision)) => {
            let cause = result.error.clone().unwrap_or_default();
            events.push(warning(
                "HealthCheckFailed",
                "Sync",
                format!("revision {number} (commit {}): {cause}", short(&commit)),
            ));
            events.push(warning(
                "RolledBack",
                "Rollback",
                format!(
                    "rolled back to revision {target_revision}; commit {} is held back until a new commit arrives",
                    short(&commit)
                ),
            ));
            observation.applied = live_revision(&context.client, &target.app).await;
            observation.held_back_commit = Some(Some(commit.clone()));
            observation.drift = Some(None);
            observation.state = Some(not_ready(
                "HeldBack",
                format!(
                    "commit {} failed at revision {number} ({cause}) and was rolled back to \
                     revision {target_revision}; push a new commit",
                    short(&commit)
                ),
                true,
            ));
            Outcome {
                observation,
                events,
                result: "failure",
                requeue: jitter(interval),
                failed: false,
            }
        }
        (Some(_), None) => {
            let cause = result.error.clone().unwrap_or_default();
            let health_failed = cause.starts_with("health check failed");
            let reason = if health_failed {
                "HealthCheckFailed"
            } else {
                "SyncFailed"
            };
            let mut outcome = failure(
                reason,
                format!("revision {number} (commit {}): {cause}", short(&commit)),
            );
            outcome.events = events;
            outcome.events.push(warning(
                reason,
                "Sync",
                format!("revision {number} (commit {}): {cause}", short(&commit)),
            ));
            outcome.observation.attempted_commit = Some(commit);
            outcome
        }
    }
}

fn applied_message(revision: Option<u64>, commit: Option<&str>) -> String {
    match (revision, commit) {
        (Some(revision), Some(commit)) => {
            format!("revision {revision} is applied: commit {}", short(commit))
        }
        (Some(revision), None) => format!("revision {revision} is applied"),
        _ => "the cluster matches the source".to_string(),
    }
}

/// Prune's guards stay on: no prune on an empty render, no Namespaces,
/// CRDs or PVCs.
fn plan_options() -> PlanOptions {
    PlanOptions::default()
}

fn sync_options(
    application: &Application,
    context: &Context,
    plan: PlanOptions,
    self_heal: bool,
) -> SyncOptions {
    let mut options = SyncOptions::new(
        if self_heal { "self-heal" } else { "sync" },
        context.identity.clone(),
    );
    options.plan = plan;
    options.apply = ApplyOptions {
        prune: application.spec.sync.prune,
        wait: application.spec.sync.wait.unwrap_or(true),
        timeout: application
            .health_timeout()
            .unwrap_or(Duration::from_secs(300)),
        ..ApplyOptions::default()
    };
    options.history_limit = application.history_limit();
    options.rollback_on_failure = application.spec.rollback.on_health_failure;
    options.holder = format!("{}:{}", context.identity, key(application));
    options
}

/// The render for this commit: the remembered one when the spec, the values,
/// the cluster's capabilities and every path the last render read are
/// unchanged; else a new render.
async fn desired(
    application: &Application,
    context: &Context,
    target: &Target,
    resolved: &crate::source::Resolved,
) -> Result<Arc<RenderedSource>, EngineError> {
    let key = key(application);
    let generation = application.metadata.generation;
    let values_digest = engine::values_digest(target);
    if let Err(error) = context
        .kinds
        .refresh_if_older(context.discovery_refresh)
        .await
    {
        // The cached discovery still serves; the next reconcile tries again.
        warn!(%error, "cannot refresh API discovery");
    }
    let capabilities = context.kinds.capabilities();
    let remembered = context.remember(&key, |memory| memory.rendered.clone());
    if let Some(remembered) = remembered
        && remembered.generation == generation
        && remembered.values_digest == values_digest
        && (Arc::ptr_eq(&remembered.capabilities, &capabilities)
            || remembered.capabilities == capabilities)
    {
        let SourceSpec::Git { repo, .. } = &target.source else {
            unreachable!("an Application's source is a git repository");
        };
        let unchanged = remembered.commit == resolved.commit
            || !context
                .cache
                .changed(
                    repo,
                    remembered.commit,
                    resolved.commit,
                    &remembered.watched_paths,
                )
                .await
                .unwrap_or(true);
        if unchanged {
            if remembered.commit != resolved.commit {
                debug!(
                    commit = %resolved.commit,
                    rendered = %remembered.commit,
                    "nothing under the application's paths changed: reusing the render"
                );
            }
            return Ok(remembered);
        }
    }
    let (desired, watched_paths) = engine::load_desired_at(
        target,
        &context.cache,
        resolved,
        Some(context.kinds.clone()),
    )
    .await?;
    let rendered = Arc::new(RenderedSource {
        generation,
        commit: resolved.commit,
        watched_paths,
        values_digest,
        capabilities,
        desired,
    });
    context.remember(&key, |memory| memory.rendered = Some(rendered.clone()));
    Ok(rendered)
}

/// Why the Application must wait for a dependency, if it must.
async fn unready_dependency(application: &Application, context: &Context) -> Option<String> {
    let namespace = application.namespace().unwrap_or_default();
    let api: Api<Application> = Api::namespaced(context.client.clone(), &namespace);
    for dependency in &application.spec.depends_on {
        let other = match api.get_opt(&dependency.name).await {
            Ok(Some(other)) => other,
            Ok(None) => {
                return Some(format!(
                    "waiting for dependency {}: no such Application in namespace {namespace}",
                    dependency.name
                ));
            }
            Err(error) => {
                return Some(format!(
                    "waiting for dependency {}: {}",
                    dependency.name,
                    crate::cluster::explain(&error)
                ));
            }
        };
        if let Err(why) = ready_at_current_revision(&other) {
            return Some(format!("waiting for dependency {}: {why}", dependency.name));
        }
    }
    None
}

/// Ready, for the generation it has now, at the commit it last resolved.
pub fn ready_at_current_revision(application: &Application) -> Result<(), String> {
    let Some(status) = &application.status else {
        return Err("not reconciled yet".into());
    };
    let ready = application.condition(status::READY);
    match ready {
        Some(c) if c.status == "True" => {}
        Some(c) => return Err(format!("not Ready ({}: {})", c.reason, c.message)),
        None => return Err("not reconciled yet".into()),
    }
    if status.observed_generation != application.metadata.generation {
        return Err("its latest spec is not reconciled yet".into());
    }
    if status.last_attempted_commit.is_some()
        && status.last_attempted_commit != status.last_applied_commit
    {
        return Err("its latest commit is not applied yet".into());
    }
    Ok(())
}

/// The newest deployed revision in the store, as status shows it.
async fn live_revision(
    client: &kube::Client,
    app: &crate::sync::identity::AppIdentity,
) -> Option<Applied> {
    let store = RevisionStore::new(client, app);
    let headers = store.list().await.ok()?;
    let header = headers
        .iter()
        .rev()
        .find(|h| h.status == Some(RevisionStatus::Deployed))?;
    let record = store.load(header.number).await.ok()?;
    Some(Applied {
        revision: record.revision,
        commit: record.commit().map(str::to_string),
        manifest_digest: record.manifest_digest.clone(),
        object_count: record.manifests.len(),
        sync_time: record
            .finished_at
            .clone()
            .unwrap_or(record.started_at.clone()),
    })
}

/// Patches the status subresource, only when the new status differs.
async fn write_status(
    application: &Application,
    context: &Context,
    observation: &Observation,
) -> Result<(), Error> {
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let old = application.status.as_ref();
    let new = status::next_status(old, observation, &now);
    if old == Some(&new) {
        return Ok(());
    }
    let api: Api<Application> = Api::namespaced(
        context.client.clone(),
        &application.namespace().unwrap_or_default(),
    );
    let patch = serde_json::json!({
        "apiVersion": "windlass.dev/v1alpha1",
        "kind": "Application",
        "status": new,
    });
    api.patch_status(
        &application.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map_err(|e| Error::Status(crate::cluster::explain(&e)))?;
    Ok(())
}

async fn publish(application: &Application, context: &Context, event: &Event) {
    let reference = application.object_ref(&());
    if let Err(error) = context.recorder.publish(event, &reference).await {
        warn!(error = %crate::cluster::explain(&error), reason = %event.reason, "could not record an Event");
    }
}

/// The Application is being deleted: uninstall its objects when
/// `sync.prune` is on, else leave them (orphan); its records go either way.
#[instrument(skip_all, fields(app = %key(&application)))]
async fn cleanup(application: Arc<Application>, context: Arc<Context>) -> Result<Action, Error> {
    let key = key(&application);
    let app = crate::sync::identity::AppIdentity::new(
        application.namespace().unwrap_or_default(),
        application.name_any(),
    );
    let mut options = SyncOptions::new("uninstall", context.identity.clone());
    options.holder = format!("{}:{key}", context.identity);
    let progress = |line: &str| info!("{line}");
    if application.spec.sync.prune {
        let report = engine::uninstall(
            &context.client,
            &context.kinds,
            &app,
            false,
            false,
            &options,
            &progress,
        )
        .await
        .map_err(|e| Error::Cleanup(e.to_string()))?;
        info!(
            deleted = report.deleted.len(),
            kept = report.kept.len(),
            "uninstalled: the Application was deleted and sync.prune is on"
        );
    } else {
        let store = RevisionStore::new(&context.client, &app);
        let headers = store
            .list()
            .await
            .map_err(|e| Error::Cleanup(e.to_string()))?;
        for header in headers {
            store
                .delete(header.number)
                .await
                .map_err(|e| Error::Cleanup(e.to_string()))?;
        }
        info!("orphaned its objects: the Application was deleted and sync.prune is off");
    }
    context.metrics.forget(&labels(&application));
    context.memory.lock().expect("memory lock").remove(&key);
    Ok(Action::await_change())
}

/// Interval plus up to 10% so that many Applications do not all wake together.
fn jitter(interval: Duration) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    let fraction = (random % 1000) as f64 / 10_000.0;
    interval + interval.mul_f64(fraction)
}

/// 5s, 10s, 20s ... after consecutive errors, never more than the interval.
fn backoff(failures: u32, interval: Duration) -> Duration {
    let exponent = failures.saturating_sub(1).min(16);
    FIRST_BACKOFF
        .saturating_mul(1 << exponent)
        .min(interval.max(FIRST_BACKOFF))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_interval() {
        let interval = Duration::from_secs(60);
        let steps: Vec<u64> = (1..=6).map(|n| backoff(n, interval).as_secs()).collect();
        assert_eq!(steps, vec![5, 10, 20, 40, 60, 60]);
        assert_eq!(backoff(1, Duration::from_secs(2)), Duration::from_secs(5));
    }

    #[test]
    fn jitter_adds_at_most_a_tenth() {
        let interval = Duration::from_secs(100);
        for _ in 0..100 {
            let value = jitter(interval);
            assert!(value >= interval && value < Duration::from_secs(110));
        }
    }

    #[test]
    fn a_dependency_is_ready_only_at_its_current_generation_and_commit() {
        let mut app: Application = serde_json::from_value(serde_json::json!({
            "apiVersion": "windlass.dev/v1alpha1", "kind": "Application",
            "metadata": {"name": "db", "namespace": "a", "generation": 2},
            "spec": {"source": {"repoURL": "file:///r"}},
            "status": {
                "observedGeneration": 2,
                "lastAppliedCommit": "abc", "lastAttemptedCommit": "abc",
                "conditions": [{"type": "Ready", "status": "True", "reason": "Succeeded",
                    "message": "ok", "lastTransitionTime": "2026-11-23T10:00:00Z"}]
            }
        }))
        .unwrap();
        assert_eq!(ready_at_current_revision(&app), Ok(()));
        app.metadata.generation = Some(3);
        assert!(ready_at_current_revision(&app).is_err());
        app.metadata.generation = Some(2);
        app.status.as_mut().unwrap().last_attempted_commit = Some("def".into());
        assert!(
            ready_at_current_revision(&app)
                .unwrap_err()
                .contains("latest commit")
        );
    }
}
