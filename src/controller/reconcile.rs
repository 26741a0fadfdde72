//! One reconcile of one Application, as the controller runs it.
//!
//! ```text
//!   Application ─► finalizer ─┬─ deleted ─► cleanup: uninstall (sync.prune) or orphan
//!                             └─ live ────► suspended? ─► keep everything, wait for a change
//!                                          not due yet and nothing new? ─► requeue (no work)
//!                                          sync windows unreadable ─► InvalidSpec (Stalled)
//!                                          dependsOn not Ready ─► DependencyNotReady, retry soon
//!                                          resolve commit (git, credentials from secretRef)
//!                                          render (skipped when nothing under the path changed)
//!                                          plan ─► no changes ─► status (patched only if it differs)
//!                                               ├► drift, selfHeal off ─► Drifted, DriftDetected
//!                                               ├► not automated ─► OutOfSync (until `windlass reconcile`)
//!                                               ├► sync window closed ─► SyncWindowClosed, back when it opens
//!                                               │  (unless `windlass reconcile --ignore-windows`)
//!                                               └► sync (engine): record, apply, prune, health,
//!                                                  automatic rollback ─► status, events
//!   requeue: interval (+ up to 10% jitter); after an error: 5s, 10s, 20s ... capped at interval;
//!            window closed: when it opens, if sooner than the interval
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
use kube::runtime::events::{Event, Recorder};
use kube::runtime::finalizer::{self, finalizer};
use kube::{Resource, ResourceExt};
use tracing::{Span, debug, info, instrument, warn};

use super::Error;
use super::metrics::{AppLabels, Metrics, ResultLabels, WriteLabels};
use super::policy::{self, ClosedWindow, Decision, Facts, Failure, Requeue, Verdict};
use super::status::{self, Applied, Observation, State};
use super::windows::{WindowState, Windows};
use crate::cluster::chain;
use crate::history::{History, RevisionStore};
use crate::identity::FIELD_MANAGER;
use crate::render::Capabilities;
use crate::source::{Credentials, SourceCache};
use crate::spec::{
    Application, ApplicationStatus, FINALIZER, IGNORE_WINDOWS_ANNOTATION, REQUESTED_AT_ANNOTATION,
    Reason, SOURCE_CHANGED_ANNOTATION,
};
use crate::sync::drift::Drift;
use crate::sync::engine::{
    self, Desired, EngineError, Operation, SourceSpec, SyncOptions, SyncOutcome, Target,
};
use crate::sync::kinds::Kinds;
use crate::sync::plan::PlanOptions;
use git2::Oid;

/// How long an Application waits before checking its dependencies again.
const DEPENDENCY_RETRY: Duration = Duration::from_secs(5);
/// The first retry after an error; it doubles up to the interval.
const FIRST_BACKOFF: Duration = Duration::from_secs(5);
/// The shortest wait for a sync window to open.
const WINDOW_RETRY_MIN: Duration = Duration::from_secs(1);

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
    /// Watches on the kinds Applications manage (drift in seconds).
    pub watches: Arc<super::watches::Watches>,
    /// Applications a watch event woke, not reconciled since.
    pub drift_events: super::watches::DriftEvents,
    /// kustomize and helm, as the controller's flags name them.
    pub tools: std::sync::OnceLock<Arc<crate::render::tool::ExternalTools>>,
    /// Delivers `spec.notifications`.
    pub notifier: Arc<crate::notify::Notifier>,
}

impl Context {
    pub fn new(
        client: kube::Client,
        kinds: Arc<Kinds>,
        cache: SourceCache,
        metrics: Arc<Metrics>,
        identity: String,
        discovery_refresh: Duration,
        watches: Arc<super::watches::Watches>,
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
            drift_events: watches.events(),
            watches,
            tools: std::sync::OnceLock::new(),
            notifier: Arc::new(crate::notify::Notifier::new()),
        }
    }

    /// The self-heals in a row so far (see [`policy::HealStreak`]).
    fn heal_streak(&self, application: &Application) -> policy::HealStreak {
        self.remember(&key(application), |memory| policy::HealStreak {
            reverted: memory.heals.clone(),
            since_last: memory.last_heal.map(|at| at.elapsed()),
        })
    }

    /// Counts a self-heal about to run. The streak ends with a new commit,
    /// or when no drift came back for [`policy::HEAL_MAX_DELAY`] (the heal's
    /// own write is seen in sync at once: that alone does not end it).
    fn note_heal(&self, application: &Application, decision: &Decision, drift: &Drift) {
        self.remember(&key(application), |memory| match decision {
            Decision::Sync(Operation::SelfHeal) => {
                memory.heals.push(drift.managers().into_iter().collect());
                memory.last_heal = Some(Instant::now());
            }
            Decision::Sync(_) => {
                memory.heals.clear();
                memory.last_heal = None;
            }
            Decision::InSync
                if memory
                    .last_heal
                    .is_none_or(|at| at.elapsed() > policy::HEAL_MAX_DELAY) =>
            {
                memory.heals.clear();
                memory.last_heal = None;
            }
            _ => {}
        });
    }

    /// What the last render of `application` read: its commit and paths.
    pub(super) fn last_render(&self, application: &Application) -> Option<LastRender> {
        let rendered = self.remember(&key(application), |memory| memory.rendered.clone())?;
        Some(LastRender {
            commit: rendered.commit,
            watched_paths: rendered.watched_paths.clone(),
        })
    }

    fn remember<T>(&self, key: &str, change: impl FnOnce(&mut Memory) -> T) -> T {
        let mut memory = self.memory.lock().expect("memory lock");
        change(memory.entry(key.to_string()).or_default())
    }
}

/// What the controller keeps between two reconciles of one Application.
#[derive(Default)]
struct Memory {
    /// What the last full reconcile saw of the Application's metadata.
    seen: Option<Seen>,
    /// When the next full reconcile is due.
    next_due: Option<Instant>,
    /// Errors in a row (for the backoff).
    failures: u32,
    /// The last render, reused while nothing under the path changes.
    rendered: Option<Arc<RenderedSource>>,
    /// Self-heals in a row: the managers each one reverted.
    heals: Vec<std::collections::BTreeSet<String>>,
    /// When the last self-heal ran.
    last_heal: Option<Instant>,
}

/// The commit an Application's last render came from, and the repository
/// paths it read.
pub(super) struct LastRender {
    pub commit: Oid,
    pub watched_paths: Vec<String>,
}

/// The metadata that asks for a reconcile before the interval is up.
#[derive(Clone, PartialEq, Eq)]
struct Seen {
    generation: Option<i64>,
    /// `windlass.dev/requested-at` (`windlass reconcile`).
    requested: Option<String>,
    /// `windlass.dev/source-changed` (a webhook push).
    pushed: Option<String>,
}

pub(super) struct RenderedSource {
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
    // `--ignore-windows` holds for the request it came with, not for later ones.
    let ignore_windows =
        asked && application.annotations().get(IGNORE_WINDOWS_ANNOTATION) == requested.as_ref();
    // A webhook said the source moved (see `wake`): resolve now, fresh.
    let pushed = application
        .annotations()
        .get(SOURCE_CHANGED_ANNOTATION)
        .cloned();
    let seen = Some(Seen {
        generation,
        requested: requested.clone(),
        pushed: pushed.clone(),
    });
    let now = Instant::now();
    let woken = pushed.is_some()
        && context.remember(&key, |memory| {
            memory.seen.as_ref().map(|s| &s.pushed) != Some(&pushed)
        });
    // A managed object changed by hand (see `watches`): look now.
    let drift_event = context
        .drift_events
        .lock()
        .expect("drift events lock")
        .remove(&key);
    let not_due = context.remember(&key, |memory| {
        (memory.seen == seen && !asked && !drift_event)
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
    let decision: futures::future::BoxFuture<'_, Verdict> = Box::pin(decide(
        &application,
        &context,
        Request {
            asked,
            ignore_windows,
            fresh: asked || woken,
        },
    ));
    let mut verdict = decision.await;
    verdict.observation.generation = generation;
    verdict.observation.deletion_policy = Some(deletion_policy(&application).to_string());
    if asked {
        verdict.observation.handled_request = requested;
    }
    if verdict.failed() {
        // The same failure again: the status says it already; no new Event.
        let repeated = application.condition(status::READY).is_some_and(|c| {
            matches!(&verdict.observation.state,
                Some(State::NotReady { reason, message, .. })
                    if reason.as_str() == c.reason && *message == c.message)
        });
        if repeated {
            verdict.events.clear();
        }
    }
    write_status(&application, &context, &verdict.observation).await?;
    for announcement in &verdict.events {
        publish(&application, &context, &announcement.event).await;
    }
    notify(&application, &context, &verdict).await;

    let metrics = &context.metrics;
    let labels = labels(&application);
    metrics
        .reconciles
        .get_or_create(&ResultLabels {
            namespace: labels.namespace.clone(),
            name: labels.name.clone(),
            result: verdict.reason.metric_result().to_string(),
        })
        .inc();
    metrics
        .reconcile_duration
        .observe(started.elapsed().as_secs_f64());
    let ready = application_ready(application.status.as_ref(), &verdict.observation);
    metrics.ready.get_or_create(&labels).set(i64::from(ready));

    let failures = context.remember(&key, |memory| {
        memory.failures = if verdict.failed() {
            memory.failures + 1
        } else {
            0
        };
        memory.failures
    });
    let requeue = match verdict.requeue {
        Requeue::Backoff => backoff(failures, interval),
        Requeue::Interval => jitter(interval),
        Requeue::Soon => DEPENDENCY_RETRY.min(interval),
        Requeue::Until(at) => until(at, jiff::Timestamp::now(), interval),
        Requeue::After(wait) => wait.max(Duration::from_millis(200)).min(jitter(interval)),
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

/// What `windlass reconcile` asked for, if it asked.
#[derive(Debug, Clone, Copy)]
struct Request {
    /// A `requested-at` not handled yet.
    asked: bool,
    /// ... made with `--ignore-windows`.
    ignore_windows: bool,
    /// Ask the remote for its refs now, not from a shared listing (a
    /// webhook push, or `windlass reconcile`).
    fresh: bool,
}

/// Everything between "the reconcile is due" and "write the status": every
/// early exit is a [`Failure`], every rule is in [`policy`].
async fn decide(application: &Application, context: &Context, request: Request) -> Verdict {
    match gather_and_act(application, context, request).await {
        Ok(verdict) => verdict,
        Err(failure) => policy::failed(failure),
    }
}

async fn gather_and_act(
    application: &Application,
    context: &Context,
    request: Request,
) -> Result<Verdict, Failure> {
    let windows = Windows::parse(&application.spec.sync.windows)
        .map_err(|e| Failure::new(Reason::InvalidSpec, e.to_string()))?;
    if let Some(waiting) = unready_dependency(application, context).await {
        return Ok(policy::waiting_for_dependency(waiting));
    }
    let target = target(application, context).await?;
    let max_age = match request.fresh {
        true => Duration::ZERO,
        false => application.interval().unwrap_or(Duration::from_secs(60)),
    };
    let resolved = resolve(&target, context, max_age).await?;
    let rendered = desired(application, context, &target, &resolved)
        .await
        .map_err(|error| render_failure(&error).at(&resolved.commit.to_string()))?;
    let desired = &rendered.desired;
    // The commit whose content this is: a newer commit that changed nothing
    // under the path reuses the render, and the status keeps naming the
    // commit rendered (so an unrelated commit writes nothing).
    let commit = rendered.commit.to_string();
    Span::current().record("commit", policy::short(&commit));
    let planned = engine::plan(
        &context.client,
        &context.kinds,
        &target.app,
        desired,
        PlanOptions::default(),
    )
    .await
    .map_err(|e| {
        Failure::new(Reason::PlanFailed, format!("plan failed: {}", chain(&e))).at(&commit)
    })?;
    let kinds = planned.plan.changes.iter().filter_map(|c| c.kind.clone());
    context.watches.ensure(kinds);
    let old = application.status.clone().unwrap_or_default();
    let (same_as_applied, drift) = drift(application, context, desired, &planned.plan);
    let drift_reported = application
        .condition(status::DRIFTED)
        .map(|c| c.message.as_str());
    let name = application.name_any();
    let facts = Facts {
        name: &name,
        commit: &commit,
        asked: request.asked,
        ignore_windows: request.ignore_windows,
        // Evaluated once the plan is known, as close as possible to the sync.
        window: match windows.state_at(jiff::Timestamp::now()) {
            WindowState::Open => None,
            WindowState::Closed(closed) => Some(ClosedWindow::from(&closed)),
        },
        window_reported: ready_message_if(application, Reason::SyncWindowClosed),
        automated: application.spec.sync.automated,
        self_heal: application.spec.sync.self_heal,
        has_changes: planned.plan.has_changes(),
        plan_summary: planned.plan.summary(),
        same_as_applied,
        drift: &drift,
        drift_reported,
        applied: (
            old.last_applied_revision.map(|r| r as u64),
            old.last_applied_commit.as_deref(),
        ),
        heals: context.heal_streak(application),
        manifest_digest: &desired.rendered.manifest_digest,
        object_count: desired.rendered.objects.len(),
        held_back: engine::held_back(&planned, desired),
        held_back_reported: old.held_back_commit.as_deref() == Some(commit.as_str())
            && ready_message_if(application, Reason::HeldBack).is_some(),
        pending_record: planned.history.has_pending(),
    };
    let decision = policy::decide(&facts);
    context.note_heal(application, &decision, &drift);
    let sync = Sync {
        application,
        context,
        target: &target,
        desired,
    };
    Ok(sync.act(decision, &facts, planned).await)
}

/// The Ready condition's message, when its reason is `reason`.
fn ready_message_if(application: &Application, reason: Reason) -> Option<&str> {
    application
        .condition(status::READY)
        .filter(|c| c.reason == reason.as_str())
        .map(|c| c.message.as_str())
}

/// What the policy's decisions act on; a sync goes through the engine.
struct Sync<'a> {
    application: &'a Application,
    context: &'a Context,
    target: &'a Target,
    desired: &'a Desired,
}

impl Sync<'_> {
    /// Carries out the policy's decision: its verdict.
    async fn act(self, decision: Decision, facts: &Facts<'_>, planned: engine::Planned) -> Verdict {
        match decision {
            Decision::InSync => {
                // Applied by someone else (the CLI) or before this status existed.
                let live = match facts.same_as_applied {
                    true => None,
                    false => {
                        live_revision(&self.context.client, &self.target.app, &planned.history)
                            .await
                    }
                };
                policy::in_sync(facts, live)
            }
            Decision::ReportDrift => policy::drift_reported(facts),
            Decision::OutOfSync => policy::out_of_sync(facts),
            Decision::WindowClosed(window) => policy::window_closed(facts, &window),
            Decision::HealLater(wait) => policy::heal_later(facts, wait),
            Decision::Fighting { manager } => policy::fighting(facts, &manager),
            Decision::HeldBack(held_back) => policy::held_back(facts, &held_back),
            Decision::Sync(operation) => self.run(operation, facts, planned).await,
        }
    }

    async fn run(
        self,
        operation: Operation,
        facts: &Facts<'_>,
        planned: engine::Planned,
    ) -> Verdict {
        let (application, context) = (self.application, self.context);
        if let Err(error) = write_status(application, context, &policy::progressing(facts)).await {
            warn!(error = %error, "could not mark the Application as reconciling");
        }
        let options = SyncOptions::for_application(application, operation, &context.identity);
        let progress = |line: &str| info!("{line}");
        // The plan made by the reconcile is fresh: the engine does not
        // dry-run it again, nor list the records again.
        let result = engine::sync_planned(
            &context.client,
            &context.kinds,
            &self.target.app,
            self.desired,
            Some(planned),
            &options,
            &progress,
        )
        .await;
        match result {
            Ok(outcome) => {
                count_writes(application, context, &outcome);
                if let Some(number) = outcome.revision() {
                    Span::current().record("revision", number);
                }
                policy::after_sync(facts, &outcome, &engine::now())
            }
            Err(error) => policy::sync_refused(facts, &error),
        }
    }
}

/// Whether `desired` is the revision the status says is applied, and if so,
/// what differs from it live (also a metric).
fn drift(
    application: &Application,
    context: &Context,
    desired: &Desired,
    plan: &crate::sync::plan::Plan,
) -> (bool, Drift) {
    let old = application.status.as_ref();
    let same_as_applied = old.is_some_and(|s| {
        s.last_applied_revision.is_some()
            && s.manifest_digest.as_deref() == Some(desired.rendered.manifest_digest.as_str())
    });
    let drift = match same_as_applied {
        true => Drift::from_plan(plan),
        false => Drift::default(),
    };
    context
        .metrics
        .drifted_objects
        .get_or_create(&labels(application))
        .set(drift.objects.len() as i64);
    (same_as_applied, drift)
}

/// The target, with git credentials from `spec.source.secretRef`.
pub(super) async fn target(
    application: &Application,
    context: &Context,
) -> Result<Target, Failure> {
    let namespace = application.namespace().unwrap_or_default();
    let credentials = match &application.spec.source.secret_ref {
        Some(secret) => {
            crate::source::auth::read_credentials_secret(&context.client, &namespace, &secret.name)
                .await
                .map_err(|e| Failure::new(Reason::CredentialsFailed, chain(&e)))?
        }
        None => Credentials::None,
    };
    let mut target = Target::from_application(
        application,
        credentials,
        &format!("Application {}", key(application)),
    )
    .map_err(|e| Failure::new(Reason::SourceFailed, format!("git: {}", chain(&e))))?;
    target.tools = context.tools.get().cloned();
    Ok(target)
}

/// Resolves the Application's ref (one fetch when it moved), from a ref
/// listing of its repository no older than `max_age`: Applications that
/// share a repository share one `ls-remote` per interval.
async fn resolve(
    target: &Target,
    context: &Context,
    max_age: Duration,
) -> Result<crate::source::Resolved, Failure> {
    let SourceSpec::Git {
        repo, reference, ..
    } = &target.source
    else {
        unreachable!("an Application's source is a git repository");
    };
    let started = Instant::now();
    let resolved = context
        .cache
        .resolve_within(repo, reference, max_age)
        .await
        .map_err(|e| Failure::new(Reason::GitFailed, format!("git: {}", chain(&e))))?;
    context
        .metrics
        .git_fetch_duration
        .observe(started.elapsed().as_secs_f64());
    Span::current().record("commit", policy::short(&resolved.commit.to_string()));
    Ok(resolved)
}

fn render_failure(error: &EngineError) -> Failure {
    match error {
        EngineError::Render { what, error } => Failure::new(
            Reason::RenderFailed,
            format!("render failed: {error} (in {what})"),
        ),
        EngineError::Source(error) => {
            Failure::new(Reason::GitFailed, format!("git: {}", chain(error)))
        }
        EngineError::Restricted(refused) => {
            Failure::new(Reason::Restricted, format!("refused: {refused}"))
        }
        other => Failure::new(
            Reason::RenderFailed,
            format!("render failed: {}", chain(other)),
        ),
    }
}

/// Counts the sync's writes in `windlass_apply_requests_total`.
fn count_writes(application: &Application, context: &Context, outcome: &SyncOutcome) {
    let Some(report) = outcome.report() else {
        return;
    };
    let labels = labels(application);
    let count = |operation: &str, n: usize| {
        context
            .metrics
            .apply_requests
            .get_or_create(&WriteLabels {
                namespace: labels.namespace.clone(),
                name: labels.name.clone(),
                operation: operation.to_string(),
            })
            .inc_by(n as u64);
    };
    count("apply", report.created.len() + report.updated.len());
    count("delete", report.deleted.len());
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
    if let Some(line) = crate::render::helm::hooks_message(&desired.rendered.skipped_hooks) {
        info!("{line}");
    }
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

/// The deployed revision in the records, as status shows it.
async fn live_revision(
    client: &kube::Client,
    app: &crate::identity::AppIdentity,
    history: &History,
) -> Option<Applied> {
    let record = RevisionStore::new(client, app)
        .load(history.live()?)
        .await
        .ok()?;
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
    .map_err(|e| Error::Status(e.into()))?;
    Ok(())
}

/// Sends the verdict's Events to `spec.notifications`, if it has any. Never
/// fails or blocks the reconcile: deliveries run on their own.
async fn notify(application: &Application, context: &Context, verdict: &Verdict) {
    if application.spec.notifications.is_empty() || verdict.events.is_empty() {
        return;
    }
    let (targets, errors) = crate::notify::load_targets(&context.client, application).await;
    for error in &errors {
        warn!(%error, "notifications");
    }
    let revision = verdict
        .observation
        .applied
        .as_ref()
        .map(|a| a.revision as i64)
        .or_else(|| application.status.as_ref()?.last_applied_revision);
    for announcement in &verdict.events {
        let Some(kind) = announcement.notice.notification() else {
            continue;
        };
        let mut message = crate::notify::Event::about(
            application,
            kind,
            announcement.event.note.clone().unwrap_or_default(),
        );
        message.revision = revision;
        message.commit = verdict.observation.attempted_commit.clone();
        if let Some(drift) = &verdict.drift {
            message.drift = crate::notify::DriftedField::from_drift(drift);
        }
        context.notifier.notify(&message, &targets).await;
    }
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
    let app = crate::identity::AppIdentity::new(
        application.namespace().unwrap_or_default(),
        application.name_any(),
    );
    let options =
        SyncOptions::for_application(&application, Operation::Uninstall, &context.identity);
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
        .map_err(Error::Cleanup)?;
        info!(
            deleted = report.deleted.len(),
            kept = report.kept.len(),
            "uninstalled: the Application was deleted and sync.prune is on"
        );
    } else {
        let store = RevisionStore::new(&context.client, &app);
        let history = store
            .history()
            .await
            .map_err(|e| Error::Cleanup(e.into()))?;
        store
            .delete_all(&history)
            .await
            .map_err(|e| Error::Cleanup(e.into()))?;
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

/// Until a sync window opens at `at`: never less than a second (a timer
/// that fires early finds the window still closed and asks again), never
/// more than the interval.
fn until(at: jiff::Timestamp, now: jiff::Timestamp, interval: Duration) -> Duration {
    let wait = Duration::try_from(at.duration_since(now)).unwrap_or(Duration::ZERO);
    wait.max(WINDOW_RETRY_MIN).min(jitter(interval))
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
    fn a_closed_window_is_waited_for_until_it_opens_or_the_interval() {
        let now: jiff::Timestamp = "2026-12-05T12:00:00Z".parse().unwrap();
        let hour = Duration::from_secs(3600);
        let opens = |text: &str| text.parse::<jiff::Timestamp>().unwrap();
        assert_eq!(
            until(opens("2026-12-05T12:00:30Z"), now, hour),
            Duration::from_secs(30)
        );
        let long = until(opens("2026-12-07T07:00:00Z"), now, hour);
        assert!(long >= hour && long < Duration::from_secs(3960), "{long:?}");
        assert_eq!(
            until(opens("2026-12-05T11:00:00Z"), now, hour),
            WINDOW_RETRY_MIN
        );
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
