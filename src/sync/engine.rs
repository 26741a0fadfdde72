//! One application, end to end: source → render → plan → record → apply →
//! record. The CLI (`windlass diff | sync`) and the controller both drive
//! this.
//!
//! ```text
//!   Target ──load_desired──► Desired { rendered, source record, values digest }
//!                                  │
//!   previous inventory (store) ──► plan ──gate──► no changes? → done, nothing written
//!                                  │
//!                                  ├─► record revision N: pending (before the first write)
//!                                  ├─► apply (phases, prune, health)
//!                                  └─► record revision N: deployed | failed
//!                                      (the previous deployed one: superseded)
//! ```

use std::path::PathBuf;
use std::sync::Arc;

use futures::StreamExt;
use serde_json::Value;

use super::apply::{self, ApplyError, ApplyOptions, ApplyReport};
use super::health::HealthState;
use super::ignore::Ignored;
use super::kinds::Kinds;
use super::lock::{self, LockError, LockOptions};
use super::plan::{self, Plan, PlanError, PlanOptions};
use super::prune::{KeepReason, PruneDecision};
use crate::cluster::ApiError;
use crate::history::policy::{DesiredState, NoRollbackTarget, replaced_status};
use crate::history::record::{
    HealthSummary, InventoryEntry, Outcome, RecordSource, RecordedHealth, RevisionRecord,
};
use crate::history::store::header_of;
use crate::history::{History, RevisionStatus, RevisionStore, StoreError};
use crate::identity::AppIdentity;
use crate::render::{
    self, Capabilities, GitInfo, LocalDirectory, ObjectId, RenderInput, Rendered, SetValue,
    ValuesLayer,
};
use crate::source::{self, Credentials, Repo, SourceCache};
use crate::spec::{Application, IgnoreDifference};

/// Where an application's manifests come from for one run.
#[derive(Debug, Clone)]
pub enum SourceSpec {
    /// A local directory (the CLI's `--dir`).
    Directory(PathBuf),
    Git {
        repo: Box<Repo>,
        reference: String,
        path: String,
    },
}

/// Everything that decides what an application's desired state is.
#[derive(Debug, Clone)]
pub struct Target {
    pub app: AppIdentity,
    /// Destination namespace for namespaced objects without one.
    pub namespace: String,
    pub source: SourceSpec,
    pub environment: Option<String>,
    /// Inline values (the Application's `values`), then `-f` files.
    pub values: Vec<ValuesLayer>,
    /// `--set` / `--set-string`, last.
    pub set: Vec<SetValue>,
    /// `release.name` for charts; default: the application's name.
    pub release_name: Option<String>,
    /// `spec.ignoreDifferences`.
    pub ignore: Vec<IgnoreDifference>,
    /// kustomize and helm (`None`: found the default way, see
    /// [`render::tool::ToolPaths::resolve`]).
    pub tools: Option<Arc<render::tool::ExternalTools>>,
    /// A render with no objects is what is meant (`--allow-empty`,
    /// `spec.sync.allowEmpty`); it may prune everything.
    pub allow_empty: bool,
    /// The Application's `spec.restrictions`, checked after each render.
    pub restrictions: Option<crate::spec::Restrictions>,
    /// The engine named for the path (`spec.source.renderer`,
    /// `--renderer`); `None`: detected.
    pub engine: Option<render::Engine>,
}

impl Target {
    /// The target an Application describes. `credentials` come from its
    /// `spec.source.secretRef` (see [`crate::source::auth::read_credentials_secret`]);
    /// `origin` names where the spec was read, for values errors.
    pub fn from_application(
        application: &Application,
        credentials: Credentials,
        origin: &str,
    ) -> Result<Target, source::Error> {
        let namespace = application
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".to_string());
        let name = application.metadata.name.clone().unwrap_or_default();
        let spec = &application.spec;
        let values = spec
            .values
            .iter()
            .map(|inline| ValuesLayer {
                name: format!("{origin}: spec.values"),
                values: Value::Object(inline.clone()),
            })
            .collect();
        Ok(Target {
            app: AppIdentity::new(namespace, name.clone()),
            namespace: application.destination_namespace(),
            source: SourceSpec::Git {
                repo: Box::new(Repo::new(&spec.source.repo_url, credentials)?),
                reference: spec
                    .source
                    .reference
                    .clone()
                    .unwrap_or_else(|| "HEAD".into()),
                path: spec.source.path.clone().unwrap_or_default(),
            },
            environment: spec.environment.clone(),
            values,
            set: Vec::new(),
            release_name: Some(name),
            ignore: spec.ignore_differences.clone(),
            tools: None,
            allow_empty: spec.sync.allow_empty,
            restrictions: application.effective_restrictions(),
            engine: spec.source.renderer.engine(),
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Source(#[from] source::Error),
    #[error("rendering {what}: {error}")]
    Render {
        what: String,
        error: Box<render::Error>,
    },
    #[error("rendering {what} failed unexpectedly (a bug in windlass; please report it): {panic}")]
    RenderPanicked { what: String, panic: String },
    #[error("{0}")]
    Directory(String),
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    Apply(#[from] ApplyError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Discovery(#[from] super::kinds::DiscoveryError),
    #[error(transparent)]
    Restricted(#[from] super::restrict::Refused),
    #[error(transparent)]
    EmptyRender(#[from] super::prune::EmptyRenderRefused),
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error(
        "namespace {0} does not exist, and it holds the application's revision records: create \
         it first (kubectl create namespace {0}), or add a Namespace object to the application"
    )]
    NoRecordNamespace(String),
    #[error("creating namespace {namespace}")]
    CreateNamespace {
        namespace: String,
        #[source]
        source: ApiError,
    },
    #[error(
        "{what} failed at revision {revision} and was rolled back automatically; windlass will \
         not apply it again: push a new commit, change the values, or pass --force"
    )]
    Quarantined { what: String, revision: u64 },
    #[error("application {app}: no revision to roll back to")]
    NoRollbackTarget {
        app: String,
        #[source]
        why: NoRollbackTarget,
    },
    #[error("uninstall failed:\n{}", apply::list_failures(.0))]
    Uninstall(Vec<(ObjectId, String)>),
    #[error("application {app}: revision {revision}: {reason}")]
    BadRecord {
        app: String,
        revision: u64,
        reason: String,
    },
}

/// The rendered desired state and where it came from.
pub struct Desired {
    pub rendered: Rendered,
    pub source: RecordSource,
    pub values_digest: String,
    /// `spec.ignoreDifferences`: also applied in plan (`managers`).
    pub ignore: Vec<IgnoreDifference>,
    /// What the rules' `jsonPointers` left out of the rendered objects.
    pub ignored: Vec<Ignored>,
}

impl Desired {
    fn new(mut rendered: Rendered, source: RecordSource, target: &Target) -> Desired {
        let ignored = super::ignore::strip(&target.ignore, &mut rendered.objects);
        if !ignored.is_empty() {
            rendered.manifest_digest = render::object::manifest_digest(&rendered.objects);
        }
        Desired {
            rendered,
            source,
            values_digest: values_digest(target),
            ignore: target.ignore.clone(),
            ignored,
        }
    }
}

/// Resolves the source (git) or reads the directory, and renders.
pub async fn load_desired(
    target: &Target,
    cache: &SourceCache,
    kinds: Option<Arc<Kinds>>,
) -> Result<Desired, EngineError> {
    match &target.source {
        SourceSpec::Directory(path) => {
            let tree =
                LocalDirectory::new(path).map_err(|e| EngineError::Directory(e.to_string()))?;
            let rendered = render_tree(target, tree, None, kinds).await?;
            let source = RecordSource::Directory {
                path: std::path::absolute(path)
                    .unwrap_or(path.clone())
                    .display()
                    .to_string(),
            };
            Ok(Desired::new(rendered, source, target))
        }
        SourceSpec::Git {
            repo, reference, ..
        } => {
            let resolved = cache.resolve(repo, reference).await?;
            let (desired, _) = load_desired_at(target, cache, &resolved, kinds).await?;
            Ok(desired)
        }
    }
}

/// Renders a git target at a commit already resolved; also returns the
/// repository paths the render read (for [`SourceCache::changed`]).
pub async fn load_desired_at(
    target: &Target,
    cache: &SourceCache,
    resolved: &source::Resolved,
    kinds: Option<Arc<Kinds>>,
) -> Result<(Desired, Vec<String>), EngineError> {
    let SourceSpec::Git { repo, path, .. } = &target.source else {
        return Err(EngineError::Directory(
            "load_desired_at needs a git source".into(),
        ));
    };
    let snapshot = cache.snapshot(repo, resolved, path).await?;
    let watched = snapshot.watched_paths();
    let git = GitInfo {
        commit: resolved.commit.to_string(),
        reference: Some(resolved.ref_name.clone()),
    };
    let path = snapshot.path.clone();
    let rendered = render_tree(target, snapshot, Some(git), kinds).await?;
    let source = RecordSource::Git {
        repo: repo.url.to_string(),
        reference: resolved.ref_name.clone(),
        commit: resolved.commit.to_string(),
        path,
    };
    let desired = Desired::new(rendered, source, target);
    Ok((desired, watched))
}

async fn render_tree<T: render::FileTree + 'static>(
    target: &Target,
    tree: T,
    git: Option<GitInfo>,
    kinds: Option<Arc<Kinds>>,
) -> Result<Rendered, EngineError> {
    let (restrictions, namespace) = (target.restrictions.clone(), target.namespace.clone());
    let target = target.clone();
    let what = tree.describe();
    // Rendering is CPU work: keep it off the async workers. A panic in it
    // fails this render alone, never the controller.
    let rendered = tokio::task::spawn_blocking(move || {
        let mut input = RenderInput::new(&tree, target.namespace.clone());
        input.name = Some(
            target
                .release_name
                .clone()
                .unwrap_or_else(|| target.app.name.clone()),
        );
        input.environment = target.environment.clone();
        input.values = target.values.clone();
        input.set = target.set.clone();
        input.allow_empty = target.allow_empty;
        input.engine = target.engine.clone();
        input.tools = target.tools.as_deref();
        input.git = git;
        input.scopes = kinds.as_deref().map(|k| k as &dyn render::ScopeLookup);
        input.capabilities = kinds
            .as_deref()
            .map(|k| Capabilities::clone(&k.capabilities()));
        render::render(&input).map_err(|error| EngineError::Render {
            what: tree.describe(),
            error: Box::new(error),
        })
    })
    .await;
    let rendered = match rendered {
        Ok(result) => result?,
        Err(join) => {
            let payload = join.into_panic();
            let panic = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "no message".to_string());
            return Err(EngineError::RenderPanicked { what, panic });
        }
    };
    if let Some(restrictions) = &restrictions {
        super::restrict::check(&rendered.objects, restrictions, &namespace)?;
    }
    Ok(rendered)
}

/// A digest of everything besides the source that shapes the render, so
/// that "same commit, same values" can be recognised without rendering.
pub fn values_digest(target: &Target) -> String {
    let layers: Vec<&Value> = target.values.iter().map(|l| &l.values).collect();
    let sets: Vec<(String, &Value)> = target.set.iter().map(|s| (s.key(), &s.value)).collect();
    let mut shape = serde_json::json!({
        "environment": target.environment,
        "values": layers,
        "set": sets,
        "namespace": target.namespace,
        "release": target.release_name,
    });
    // Only when named, so that the digests of detected renders stay as
    // they were.
    if let Some(engine) = &target.engine {
        shape["renderer"] = Value::from(engine.name());
    }
    render::object::digest(&shape)
}

/// What a sync is, for its record and for what a replaced revision becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Sync,
    /// Re-applying the applied revision over drift.
    SelfHeal,
    /// Re-applying stored revision `to`.
    Rollback {
        to: u64,
    },
    Uninstall,
}

impl std::fmt::Display for Operation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Operation::Sync => f.write_str("sync"),
            Operation::SelfHeal => f.write_str("self-heal"),
            Operation::Rollback { to } => write!(f, "rollback to {to}"),
            Operation::Uninstall => f.write_str("uninstall"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct SyncOptions {
    pub plan: PlanOptions,
    pub apply: ApplyOptions,
    pub operation: Operation,
    pub triggered_by: String,
    /// Records to keep (default 10); the live and the last successful
    /// revision are always kept.
    pub history_limit: u32,
    /// Sync even a commit and values that failed and were rolled back.
    pub force: bool,
    /// When health fails, roll back to the last successful revision.
    pub rollback_on_failure: bool,
    /// How long to wait for another writer's lock, and the lease's terms.
    pub lock: LockOptions,
    /// Who holds the lock while this runs (unique per operation).
    pub holder: String,
}

impl SyncOptions {
    pub fn new(operation: Operation, triggered_by: impl Into<String>) -> SyncOptions {
        SyncOptions {
            plan: PlanOptions::default(),
            apply: ApplyOptions::default(),
            operation,
            triggered_by: triggered_by.into(),
            history_limit: 10,
            force: false,
            rollback_on_failure: false,
            lock: LockOptions::default(),
            holder: lock::default_holder(),
        }
    }

    /// How the controller syncs an Application: its prune, wait, health
    /// timeout, history limit and rollback settings.
    pub fn for_application(
        application: &Application,
        operation: Operation,
        triggered_by: &str,
    ) -> SyncOptions {
        let mut options = SyncOptions::new(operation, triggered_by);
        options.apply = ApplyOptions {
            prune: application.spec.sync.prune,
            wait: application.spec.sync.wait.unwrap_or(true),
            timeout: application
                .health_timeout()
                .unwrap_or(std::time::Duration::from_secs(300)),
            ..ApplyOptions::default()
        };
        options.history_limit = application.history_limit();
        options.rollback_on_failure = application.spec.rollback.on_health_failure;
        options.holder = format!(
            "{triggered_by}:{}/{}",
            application
                .metadata
                .namespace
                .as_deref()
                .unwrap_or_default(),
            application.metadata.name.as_deref().unwrap_or_default()
        );
        options
    }
}

/// Why a recorded revision failed.
#[derive(Debug)]
pub enum SyncFailure {
    /// Applied, but these objects did not become healthy.
    Unhealthy(Vec<String>),
    /// Applying (or pruning) failed part-way.
    Apply(ApplyError),
}

impl std::fmt::Display for SyncFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SyncFailure::Unhealthy(unhealthy) => {
                write!(f, "health check failed: {}", unhealthy.join("; "))
            }
            SyncFailure::Apply(error) => write!(f, "{error}"),
        }
    }
}

/// The revision that is live after an automatic rollback.
#[derive(Debug, Clone)]
pub struct Restored {
    /// The revision recorded for the rollback (or `to`, when live already
    /// equalled it and nothing was written).
    pub revision: u64,
    pub commit: Option<String>,
    pub manifest_digest: String,
    pub object_count: usize,
}

/// How a sync ended.
pub enum SyncOutcome {
    /// Nothing differs: nothing was written.
    Unchanged { plan: Plan },
    /// Revision `revision` is applied (and healthy, when health was waited for).
    Deployed {
        plan: Plan,
        revision: u64,
        report: ApplyReport,
    },
    /// Revision `revision` was recorded as failed; nothing was rolled back.
    Failed {
        plan: Plan,
        revision: u64,
        report: Option<ApplyReport>,
        failure: SyncFailure,
    },
    /// Revision `revision` failed its health check and is quarantined; an
    /// automatic rollback re-applied revision `to`.
    RolledBack {
        plan: Plan,
        revision: u64,
        report: ApplyReport,
        failure: SyncFailure,
        to: u64,
        restored: Restored,
    },
}

impl SyncOutcome {
    pub fn plan(&self) -> &Plan {
        match self {
            SyncOutcome::Unchanged { plan }
            | SyncOutcome::Deployed { plan, .. }
            | SyncOutcome::Failed { plan, .. }
            | SyncOutcome::RolledBack { plan, .. } => plan,
        }
    }

    /// The revision this sync recorded, if it wrote one.
    pub fn revision(&self) -> Option<u64> {
        match self {
            SyncOutcome::Unchanged { .. } => None,
            SyncOutcome::Deployed { revision, .. }
            | SyncOutcome::Failed { revision, .. }
            | SyncOutcome::RolledBack { revision, .. } => Some(*revision),
        }
    }

    pub fn report(&self) -> Option<&ApplyReport> {
        match self {
            SyncOutcome::Unchanged { .. } => None,
            SyncOutcome::Deployed { report, .. } | SyncOutcome::RolledBack { report, .. } => {
                Some(report)
            }
            SyncOutcome::Failed { report, .. } => report.as_ref(),
        }
    }
}

/// A plan, and the history it was made against: everything a sync decides
/// before its first write. Made by [`plan`] (one LIST of records), handed to
/// [`sync_planned`] so the sync neither lists nor dry-runs again.
pub struct Planned {
    pub plan: Plan,
    pub history: History,
    /// The inventory prune compares with (see [`RevisionStore::previous_inventory`]).
    pub previous: Vec<ObjectId>,
}

/// The history (one LIST), the previous inventory and a plan of `desired`
/// against the cluster. Writes nothing.
pub async fn plan(
    client: &kube::Client,
    kinds: &Kinds,
    app: &AppIdentity,
    desired: &Desired,
    options: PlanOptions,
) -> Result<Planned, EngineError> {
    let history = RevisionStore::new(client, app).history().await?;
    plan_against(client, kinds, app, desired, history, options).await
}

/// [`plan`] against a history already read.
async fn plan_against(
    client: &kube::Client,
    kinds: &Kinds,
    app: &AppIdentity,
    desired: &Desired,
    history: History,
    options: PlanOptions,
) -> Result<Planned, EngineError> {
    let store = RevisionStore::new(client, app);
    let (previous, _) = store.previous_inventory(&history).await?;
    let plan = plan::plan(
        client,
        kinds,
        app,
        &desired.rendered.objects,
        &previous,
        &desired.ignore,
        options,
    )
    .await?;
    Ok(Planned {
        plan,
        history,
        previous,
    })
}

/// Runs `operation` holding the application's Lease: one writer at a time.
/// A busy lock is reported, then waited for up to `options.lock.wait`.
async fn with_lock<T>(
    client: &kube::Client,
    app: &AppIdentity,
    options: &SyncOptions,
    progress: &(dyn Fn(&str) + Sync),
    operation: impl std::future::Future<Output = Result<T, EngineError>>,
) -> Result<T, EngineError> {
    let at_once = LockOptions {
        wait: std::time::Duration::ZERO,
        ..options.lock.clone()
    };
    let lock = match lock::acquire(client, app, &options.holder, &at_once).await {
        Ok(lock) => lock,
        Err(LockError::Held { holder, .. }) => {
            progress(&format!(
                "waiting up to {}s for {holder} to finish with {}",
                options.lock.wait.as_secs(),
                app.full()
            ));
            lock::acquire(client, app, &options.holder, &options.lock).await?
        }
        Err(error) => return Err(error.into()),
    };
    let result = operation.await;
    if lock.is_lost() {
        progress(&format!(
            "warning: the lock on {} was lost during the operation (another writer may have run)",
            app.full()
        ));
    }
    lock.release().await?;
    result
}

/// A desired state that an automatic rollback replaced and that a sync
/// without `--force` does not apply again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldBack {
    /// `commit abc1234`, or `this desired state` when it had no commit.
    pub what: String,
    /// The failed revision.
    pub revision: u64,
}

/// Whether `desired` is held back by an automatic rollback.
pub fn held_back(planned: &Planned, desired: &Desired) -> Option<HeldBack> {
    let state = DesiredState {
        commit: desired.source.commit(),
        values_digest: &desired.values_digest,
        manifest_digest: &desired.rendered.manifest_digest,
    };
    let quarantine = planned.history.quarantined(state)?;
    let what = match &quarantine.commit {
        Some(commit) => format!("commit {}", &commit[..commit.len().min(7)]),
        None => "this desired state".to_string(),
    };
    Some(HeldBack {
        what,
        revision: quarantine.revision,
    })
}

/// What must hold before anything is written: not quarantined, every object
/// passed its dry-run, no prune of everything on an empty render.
fn check_before_writing(
    planned: &Planned,
    desired: &Desired,
    options: &SyncOptions,
) -> Result<(), EngineError> {
    if !options.force
        && let Some(held_back) = held_back(planned, desired)
    {
        return Err(EngineError::Quarantined {
            what: held_back.what,
            revision: held_back.revision,
        });
    }
    apply::gate(&planned.plan, &options.apply)?;
    if options.apply.prune
        && let Some(refused) = &planned.plan.prune_refused
    {
        return Err(refused.clone().into());
    }
    Ok(())
}

/// Plans and, when something changes, records and applies. A sync that
/// changes nothing writes nothing at all, not even the lock, unless a
/// pending record is there to close (see [`sync_planned`]).
pub async fn sync(
    client: &kube::Client,
    kinds: &Kinds,
    app: &AppIdentity,
    desired: &Desired,
    options: &SyncOptions,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<SyncOutcome, EngineError> {
    sync_planned(client, kinds, app, desired, None, options, progress).await
}

/// [`sync`] with a plan the caller made moments ago by [`plan`] of the same
/// desired state: neither the records nor the objects are read again. One
/// that changes something holds the application's lock; if another writer
/// recorded a revision meanwhile, creating this sync's record fails
/// (its number is taken), and the sync plans again once, under the lock.
pub async fn sync_planned(
    client: &kube::Client,
    kinds: &Kinds,
    app: &AppIdentity,
    desired: &Desired,
    planned: Option<Planned>,
    options: &SyncOptions,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<SyncOutcome, EngineError> {
    let planned = match planned {
        Some(planned) => planned,
        None => plan(client, kinds, app, desired, options.plan).await?,
    };
    check_before_writing(&planned, desired, options)?;
    // A pending record with nothing left to change: its sync may have died
    // after its last write (killed while its deletions were finishing on
    // their own). Under the lock (a sync still running holds it) it is
    // closed by recording this revision; else it would stay pending, and
    // the last finished record would claim objects that are gone.
    let closes_pending = !planned.plan.has_changes() && planned.history.has_pending();
    if !planned.plan.has_changes() && !closes_pending {
        return Ok(SyncOutcome::Unchanged { plan: planned.plan });
    }
    // The lock and the records live in the application's namespace: when
    // the set itself creates it, that comes first (an idempotent apply).
    ensure_record_namespace(client, app, &planned.plan, progress).await?;
    let operation = async {
        let planned = match closes_pending {
            // Planned before the lock: the pending record's sync may have
            // finished (or changed something) while this one waited.
            true => {
                let planned = plan(client, kinds, app, desired, options.plan).await?;
                check_before_writing(&planned, desired, options)?;
                if !planned.plan.has_changes() && planned.history.has_pending() {
                    progress(
                        "a sync that stopped before it finished left its revision pending: \
                         recording this one to close it",
                    );
                }
                planned
            }
            false => planned,
        };
        match execute(client, kinds, app, desired, planned, options, progress).await {
            Err(EngineError::Store(StoreError::Taken { .. })) => {
                progress("another writer recorded a revision meanwhile: planning again");
                let planned = plan(client, kinds, app, desired, options.plan).await?;
                check_before_writing(&planned, desired, options)?;
                execute(client, kinds, app, desired, planned, options, progress).await
            }
            other => other,
        }
    };
    with_lock(client, app, options, progress, operation).await
}

/// Records and applies a checked plan (nothing, if it changes nothing).
/// Keeps `planned.history` current as it writes, so that no decision after
/// the first LIST needs another.
async fn execute(
    client: &kube::Client,
    kinds: &Kinds,
    app: &AppIdentity,
    desired: &Desired,
    planned: Planned,
    options: &SyncOptions,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<SyncOutcome, EngineError> {
    let Planned {
        plan,
        mut history,
        previous,
    } = planned;
    // A pending record is closed by a new one even when nothing changes
    // (the caller holds the lock: its sync is not running).
    if !plan.has_changes() && !history.has_pending() {
        return Ok(SyncOutcome::Unchanged { plan });
    }
    let store = RevisionStore::new(client, app);

    // The pending record names everything this sync may touch before it
    // touches anything: the new objects and the previous inventory.
    let number = history.next_number();
    let mut pending_inventory: Vec<ObjectId> = plan.changes.iter().map(|c| c.id.clone()).collect();
    for id in &previous {
        if !pending_inventory
            .iter()
            .any(|known| known.key() == id.key())
        {
            pending_inventory.push(id.clone());
        }
    }
    let mut record = RevisionRecord {
        revision: number,
        app: app.full(),
        status: RevisionStatus::Pending,
        started_at: now(),
        finished_at: None,
        description: options.operation.to_string(),
        triggered_by: options.triggered_by.clone(),
        source: desired.source.clone(),
        environment: desired.rendered.environment.clone(),
        values_digest: desired.values_digest.clone(),
        manifest_digest: desired.rendered.manifest_digest.clone(),
        manifests: plan.changes.iter().map(|c| c.desired.clone()).collect(),
        inventory: pending_inventory.iter().map(InventoryEntry::from).collect(),
        outcome: None,
        health: None,
        quarantined: false,
    };
    store.create(&record).await?;
    history.record(header_of(&record));
    progress(&format!("revision {number}: applying ({})", plan.summary()));

    let result = apply::apply(client, kinds, &plan, &options.apply, progress).await;
    record.finished_at = Some(now());
    let (report, failure) = match result {
        Ok(report) => {
            let health = report.health.as_ref();
            record.health = Some(HealthSummary {
                state: match health {
                    None => RecordedHealth::NotChecked,
                    Some(h) if h.state == HealthState::Healthy => RecordedHealth::Healthy,
                    Some(h) if h.timed_out => RecordedHealth::TimedOut,
                    Some(_) => RecordedHealth::Failed,
                },
                unhealthy: health.map(|h| h.unhealthy.clone()).unwrap_or_default(),
            });
            let failure = health
                .filter(|h| h.state == HealthState::Failed)
                .map(|h| SyncFailure::Unhealthy(h.unhealthy.clone()));
            record.outcome = Some(Outcome {
                created: report.created.len(),
                updated: report.updated.len(),
                deleted: report.deleted.len(),
                unchanged: report.unchanged,
                error: failure.as_ref().map(ToString::to_string),
            });
            record.inventory = final_inventory(&plan, &report);
            (Some(report), failure)
        }
        Err(error) => {
            record.outcome = Some(Outcome {
                error: Some(error.to_string()),
                ..Outcome::default()
            });
            (None, Some(SyncFailure::Apply(error)))
        }
    };
    record.status = if failure.is_some() {
        RevisionStatus::Failed
    } else {
        RevisionStatus::Deployed
    };
    store.update(&record).await?;
    history.record(header_of(&record));
    settle_history(&store, &mut history, &record, options).await?;

    let Some(failure) = failure else {
        let report = report.expect("a sync without failure has a report");
        return Ok(SyncOutcome::Deployed {
            plan,
            revision: number,
            report,
        });
    };
    let health_failed = matches!(failure, SyncFailure::Unhealthy(_));
    let (true, true, Some(report)) = (options.rollback_on_failure, health_failed, report.clone())
    else {
        return Ok(SyncOutcome::Failed {
            plan,
            revision: number,
            report,
            failure,
        });
    };
    progress(&format!(
        "revision {number} failed its health check: rolling back"
    ));
    record.quarantined = true;
    store.update(&record).await?;
    history.record(header_of(&record));
    let rollback_options = SyncOptions {
        rollback_on_failure: false,
        ..options.clone()
    };
    let rollback = Box::pin(rollback_locked(
        client,
        kinds,
        app,
        None,
        history,
        &rollback_options,
        progress,
    ))
    .await;
    match rollback {
        Ok(rollback) => Ok(SyncOutcome::RolledBack {
            plan,
            revision: number,
            report,
            failure,
            to: rollback.to,
            restored: rollback.restored(),
        }),
        Err(error) => {
            progress(&format!("automatic rollback failed: {error}"));
            Ok(SyncOutcome::Failed {
                plan,
                revision: number,
                report: Some(report),
                failure,
            })
        }
    }
}

/// After a finished record: older deployed revisions become superseded (or
/// rolled-back), interrupted ones failed, and the oldest beyond the limit
/// are deleted. Decided by `history::policy`, from the headers in memory.
async fn settle_history(
    store: &RevisionStore,
    history: &mut History,
    record: &RevisionRecord,
    options: &SyncOptions,
) -> Result<(), StoreError> {
    let current = record.revision;
    if record.status == RevisionStatus::Deployed {
        let by_rollback = matches!(options.operation, Operation::Rollback { .. });
        for number in history.replaced_by(current) {
            let mut old = store.load(number).await?;
            old.status = replaced_status(by_rollback);
            store.update(&old).await?;
            history.record(header_of(&old));
        }
    }
    for number in history.interrupted_before(current) {
        let mut old = store.load(number).await?;
        old.status = RevisionStatus::Failed;
        old.outcome = Some(Outcome {
            error: Some(format!(
                "interrupted: the sync stopped before it finished; revision {current} took \
                 over its objects"
            )),
            ..old.outcome.unwrap_or_default()
        });
        store.update(&old).await?;
        history.record(header_of(&old));
    }
    for number in history.beyond_limit(options.history_limit) {
        store.delete(number).await?;
        history.forget(number);
    }
    Ok(())
}

/// What a rollback did: the revision it returned to, and how its sync ended.
pub struct Rollback {
    pub to: u64,
    /// The manifests re-applied, as recorded in revision `to`.
    pub desired: Desired,
    pub outcome: SyncOutcome,
}

impl Rollback {
    /// The revision live after the rollback.
    pub fn restored(&self) -> Restored {
        Restored {
            revision: self.outcome.revision().unwrap_or(self.to),
            commit: self.desired.source.commit().map(str::to_string),
            manifest_digest: self.desired.rendered.manifest_digest.clone(),
            object_count: self.desired.rendered.objects.len(),
        }
    }
}

/// Rolls back to revision `target` (default: the previous successful one):
/// re-applies exactly its stored manifests (no render, no git), prunes what
/// it did not contain, waits for health and records a new revision
/// `rollback to N`; the replaced revision becomes `rolled-back`. Holds the
/// application's lock.
pub async fn rollback(
    client: &kube::Client,
    kinds: &Kinds,
    app: &AppIdentity,
    target: Option<u64>,
    options: &SyncOptions,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<Rollback, EngineError> {
    let operation = async {
        let history = RevisionStore::new(client, app).history().await?;
        rollback_locked(client, kinds, app, target, history, options, progress).await
    };
    with_lock(client, app, options, progress, operation).await
}

async fn rollback_locked(
    client: &kube::Client,
    kinds: &Kinds,
    app: &AppIdentity,
    target: Option<u64>,
    history: History,
    options: &SyncOptions,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<Rollback, EngineError> {
    let store = RevisionStore::new(client, app);
    let to = match target {
        Some(number) => number,
        None => history
            .previous_successful()
            .map_err(|why| EngineError::NoRollbackTarget {
                app: app.full(),
                why,
            })?,
    };
    let record = store.load(to).await?;
    let desired = desired_from_record(&record, app)?;
    let mut options = SyncOptions {
        operation: Operation::Rollback { to },
        force: true,
        ..options.clone()
    };
    options.apply.prune = true;
    progress(&format!("rolling back {} to revision {to}", app.full()));
    // Under the lock, the history in memory is current: no second LIST.
    let planned = plan_against(client, kinds, app, &desired, history, options.plan).await?;
    check_before_writing(&planned, &desired, &options)?;
    let outcome = Box::pin(execute(
        client, kinds, app, &desired, planned, &options, progress,
    ))
    .await?;
    Ok(Rollback {
        to,
        desired,
        outcome,
    })
}

/// A stored revision as a desired state: its manifests, exactly.
pub fn desired_from_record(
    record: &RevisionRecord,
    app: &AppIdentity,
) -> Result<Desired, EngineError> {
    let bad = |reason: String| EngineError::BadRecord {
        app: app.full(),
        revision: record.revision,
        reason,
    };
    let mut objects = Vec::with_capacity(record.manifests.len());
    for (index, manifest) in record.manifests.iter().enumerate() {
        let api_version = manifest["apiVersion"]
            .as_str()
            .ok_or_else(|| bad(format!("manifest {} has no apiVersion", index + 1)))?;
        let (group, version) = match api_version.split_once('/') {
            Some((group, version)) => (group.to_string(), version.to_string()),
            None => (String::new(), api_version.to_string()),
        };
        let metadata = &manifest["metadata"];
        let id = ObjectId {
            group,
            version,
            kind: manifest["kind"]
                .as_str()
                .ok_or_else(|| bad(format!("manifest {} has no kind", index + 1)))?
                .to_string(),
            namespace: metadata["namespace"].as_str().map(str::to_string),
            name: metadata["name"]
                .as_str()
                .ok_or_else(|| bad(format!("manifest {} has no name", index + 1)))?
                .to_string(),
        };
        let digest = metadata["annotations"][crate::identity::ANNOTATION_DIGEST]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| render::object::digest(manifest));
        objects.push(render::RenderedObject {
            id,
            object: manifest.clone(),
            source: render::ObjectSource {
                path: format!("revision {}", record.revision),
                template: false,
                document: index + 1,
                item: None,
            },
            digest,
        });
    }
    Ok(Desired {
        rendered: Rendered {
            objects,
            manifest_digest: record.manifest_digest.clone(),
            chart: None,
            release_name: None,
            namespace: app.namespace.clone(),
            environment: record.environment.clone(),
            skipped_hooks: Vec::new(),
        },
        source: record.source.clone(),
        values_digest: record.values_digest.clone(),
        // Exactly what was applied: the rules were applied then.
        ignore: Vec::new(),
        ignored: Vec::new(),
    })
}

/// Records live in the application's namespace. When it does not exist yet
/// and the application itself defines it, it is applied first (carrying the
/// application's labels, so the sync adopts it like any other object);
/// otherwise the user must create it.
async fn ensure_record_namespace(
    client: &kube::Client,
    app: &AppIdentity,
    plan: &Plan,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<(), EngineError> {
    use k8s_openapi::api::core::v1::Namespace;
    let namespaces: kube::Api<Namespace> = kube::Api::all(client.clone());
    let failed = |error: kube::Error| EngineError::CreateNamespace {
        namespace: app.namespace.clone(),
        source: error.into(),
    };
    if namespaces
        .get_opt(&app.namespace)
        .await
        .map_err(failed)?
        .is_some()
    {
        return Ok(());
    }
    let Some(change) = plan
        .changes
        .iter()
        .find(|c| c.id.group.is_empty() && c.id.kind == "Namespace" && c.id.name == app.namespace)
    else {
        return Err(EngineError::NoRecordNamespace(app.namespace.clone()));
    };
    let params = kube::api::PatchParams::apply(crate::identity::FIELD_MANAGER).force();
    namespaces
        .patch(
            &app.namespace,
            &params,
            &kube::api::Patch::Apply(&change.desired),
        )
        .await
        .map_err(failed)?;
    progress(&format!(
        "created namespace {} first: it holds the application's revision records",
        app.namespace
    ));
    Ok(())
}

/// After a finished sync: the desired objects, plus the objects prune left
/// in place that still belong to the application (protected, dangerous
/// kinds, prune off), so a later prune still sees them.
fn final_inventory(plan: &Plan, report: &ApplyReport) -> Vec<InventoryEntry> {
    let mut ids: Vec<ObjectId> = plan.changes.iter().map(|c| c.id.clone()).collect();
    for decision in &plan.prune {
        let id = match decision {
            PruneDecision::Delete(id) if !report.deleted.contains(id) => id,
            PruneDecision::Keep { id, reason } if reason.still_ours() => id,
            _ => continue,
        };
        if !ids.iter().any(|known| known.key() == id.key()) {
            ids.push(id.clone());
        }
    }
    ids.iter().map(InventoryEntry::from).collect()
}

/// Now, as RFC 3339 in UTC to the second.
pub fn now() -> String {
    let now = k8s_openapi::jiff::Timestamp::now();
    now.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// `cli:<user>@<host>`, for records.
pub fn cli_trigger() -> String {
    let user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown".into());
    format!("cli:{user}@{host}")
}

/// What an uninstall did.
#[derive(Debug, Default)]
pub struct UninstallReport {
    pub deleted: Vec<ObjectId>,
    pub kept: Vec<(ObjectId, KeepReason)>,
    pub records_deleted: usize,
}

/// Deletes every object of the application's inventory, with prune's guards
/// (label still ours, `windlass.dev/prune: disabled`, dangerous kinds only
/// when asked), in dependency order (see [`super::delete`]), then its
/// revision records unless `keep_history`, and its lock Lease.
pub async fn uninstall(
    client: &kube::Client,
    kinds: &Kinds,
    app: &AppIdentity,
    dangerous: bool,
    keep_history: bool,
    options: &SyncOptions,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<UninstallReport, EngineError> {
    let operation = uninstall_locked(
        client,
        kinds,
        app,
        dangerous,
        keep_history,
        options,
        progress,
    );
    let report = with_lock(client, app, options, progress, operation).await?;
    lock::remove(client, app).await?;
    Ok(report)
}

async fn uninstall_locked(
    client: &kube::Client,
    kinds: &Kinds,
    app: &AppIdentity,
    dangerous: bool,
    keep_history: bool,
    options: &SyncOptions,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<UninstallReport, EngineError> {
    let store = RevisionStore::new(client, app);
    let history = store.history().await?;
    let (inventory, _) = store.previous_inventory(&history).await?;
    let mut resolved = Vec::new();
    for id in &inventory {
        if let Some(kind) = kinds.resolve(id).await? {
            resolved.push((id, kind));
        }
    }
    // One GET per object, several at a time.
    let reads: Vec<_> = resolved
        .iter()
        .map(|(id, kind)| async move { (*id, super::api::get(client, id, kind).await) })
        .collect();
    let reads: Vec<_> = futures::stream::iter(reads)
        .buffer_unordered(16)
        .collect()
        .await;
    let mut live = std::collections::HashMap::new();
    for (id, read) in reads {
        if let Some(object) = read.map_err(PlanError::from)? {
            live.insert(id.clone(), object);
        }
    }
    let candidates: Vec<&ObjectId> = inventory.iter().collect();
    let prune_options = super::prune::PruneOptions {
        allow_empty: true,
        dangerous,
    };
    let decisions = super::prune::decide(app, &candidates, 0, |id| live.get(id), prune_options)
        .unwrap_or_default(); // allow_empty: never refused
    let mut report = UninstallReport::default();
    let mut deletions: Vec<ObjectId> = Vec::new();
    for decision in decisions {
        match decision {
            PruneDecision::Delete(id) => deletions.push(id),
            PruneDecision::Keep { id, reason } => {
                progress(&format!(
                    "kept {}: {reason}",
                    super::diff::display_name(&id)
                ));
                report.kept.push((id, reason));
            }
        }
    }
    let deleted = super::delete::delete_all(
        client,
        kinds,
        deletions,
        options.apply.timeout,
        "uninstall",
        progress,
    )
    .await?;
    report.deleted = deleted.deleted;
    if !deleted.failures.is_empty() {
        return Err(EngineError::Uninstall(deleted.failures));
    }
    if !keep_history {
        report.records_deleted = store.delete_all(&history).await?;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(renderer: Option<&str>) -> Target {
        let mut application = serde_json::json!({
            "apiVersion": "windlass.dev/v1alpha1",
            "kind": "Application",
            "metadata": { "name": "web", "namespace": "team-a" },
            "spec": { "source": { "repoURL": "https://git.example.com/d.git", "path": "overlays/prod" } },
        });
        if let Some(renderer) = renderer {
            application["spec"]["source"]["renderer"] = renderer.into();
        }
        let application: Application = serde_json::from_value(application).unwrap();
        Target::from_application(&application, Credentials::None, "app.yaml").unwrap()
    }

    #[test]
    fn the_named_renderer_reaches_the_render_and_its_digest() {
        let (auto, kustomize, plain) = (
            target(None),
            target(Some("kustomize")),
            target(Some("plain")),
        );
        assert_eq!(auto.engine, None);
        assert_eq!(kustomize.engine, Some(render::Engine::Kustomize));
        // Another renderer is another render of the same commit...
        assert_ne!(values_digest(&auto), values_digest(&kustomize));
        assert_ne!(values_digest(&kustomize), values_digest(&plain));
        // ...and `auto` keeps the digest a target without the field had.
        assert_eq!(values_digest(&auto), values_digest(&target(Some("auto"))));
    }
}
