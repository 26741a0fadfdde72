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

use serde_json::Value;

use super::apply::{self, ApplyError, ApplyOptions, ApplyReport};
use super::health::HealthState;
use super::identity::AppIdentity;
use super::kinds::Kinds;
use super::plan::{self, Plan, PlanError, PlanOptions};
use super::prune::PruneDecision;
use crate::history::lease::{self, LockError, LockOptions};
use crate::history::record::{
    HealthSummary, InventoryEntry, Outcome, RecordSource, RevisionRecord,
};
use crate::history::{RevisionStatus, RevisionStore, StoreError};
use crate::render::{
    self, Capabilities, GitInfo, LocalDirectory, ObjectId, RenderInput, Rendered, SetValue,
    ValuesLayer,
};
use crate::source::{self, Credentials, Repo, SourceCache};
use crate::spec::Application;

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
}

impl Target {
    /// The target an Application describes. `credentials` come from its
    /// `spec.source.secretRef` (see [`crate::cluster::read_git_credentials`]);
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
    EmptyRender(#[from] super::prune::EmptyRenderRefused),
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error(
        "namespace {0} does not exist, and it holds the application's revision records: create \
         it first (kubectl create namespace {0}), or add a Namespace object to the application"
    )]
    NoRecordNamespace(String),
    #[error("creating namespace {namespace}: {reason}")]
    CreateNamespace { namespace: String, reason: String },
    #[error(
        "{what} failed at revision {revision} and was rolled back automatically; windlass will \
         not apply it again: push a new commit, change the values, or pass --force"
    )]
    Quarantined { what: String, revision: u64 },
    #[error("application {app}: no revision to roll back to{why}")]
    NoRollbackTarget { app: String, why: String },
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
}

/// Resolves the source (git) or reads the directory, and renders.
pub async fn load_desired(
    target: &Target,
    cache: &SourceCache,
    kinds: Option<Arc<Kinds>>,
) -> Result<Desired, EngineError> {
    let values_digest = values_digest(target);
    match &target.source {
        SourceSpec::Directory(path) => {
            let tree =
                LocalDirectory::new(path).map_err(|e| EngineError::Directory(e.to_string()))?;
            let rendered = render_tree(target, tree, None, kinds).await?;
            Ok(Desired {
                rendered,
                source: RecordSource::Directory {
                    path: std::path::absolute(path)
                        .unwrap_or(path.clone())
                        .display()
                        .to_string(),
                },
                values_digest,
            })
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
    let desired = Desired {
        rendered,
        source: RecordSource::Git {
            repo: repo.url.to_string(),
            reference: resolved.ref_name.clone(),
            commit: resolved.commit.to_string(),
            path,
        },
        values_digest: values_digest(target),
    };
    Ok((desired, watched))
}

async fn render_tree<T: render::FileTree + 'static>(
    target: &Target,
    tree: T,
    git: Option<GitInfo>,
    kinds: Option<Arc<Kinds>>,
) -> Result<Rendered, EngineError> {
    let target = target.clone();
    // Rendering is CPU work: keep it off the async workers.
    tokio::task::spawn_blocking(move || {
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
    .await
    .expect("rendering does not panic")
}

/// A digest of everything besides the source that shapes the render, so
/// that "same commit, same values" can be recognised without rendering.
pub fn values_digest(target: &Target) -> String {
    let layers: Vec<&Value> = target.values.iter().map(|l| &l.values).collect();
    let sets: Vec<(String, &Value)> = target.set.iter().map(|s| (s.key(), &s.value)).collect();
    render::object::digest(&serde_json::json!({
        "environment": target.environment,
        "values": layers,
        "set": sets,
        "namespace": target.namespace,
        "release": target.release_name,
    }))
}

#[derive(Debug, Clone)]
pub struct SyncOptions {
    pub plan: PlanOptions,
    pub apply: ApplyOptions,
    /// `sync`, `rollback to 3`, ...
    pub description: String,
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
    pub fn new(description: impl Into<String>, triggered_by: impl Into<String>) -> SyncOptions {
        SyncOptions {
            plan: PlanOptions::default(),
            apply: ApplyOptions::default(),
            description: description.into(),
            triggered_by: triggered_by.into(),
            history_limit: 10,
            force: false,
            rollback_on_failure: false,
            lock: LockOptions::default(),
            holder: lease::default_holder(),
        }
    }
}

/// What a sync did.
pub struct SyncResult {
    pub plan: Plan,
    /// The revision recorded; `None` when nothing changed (nothing written).
    pub revision: Option<u64>,
    pub status: Option<RevisionStatus>,
    pub report: Option<ApplyReport>,
    /// Why the sync failed, when it did (the record says the same).
    pub error: Option<String>,
    /// For a rollback, or a sync that rolled back automatically: the
    /// revision whose manifests were re-applied.
    pub rolled_back_to: Option<u64>,
}

/// The previous inventory and a plan of `desired` against the cluster.
pub async fn plan(
    client: &kube::Client,
    kinds: &Kinds,
    app: &AppIdentity,
    desired: &Desired,
    options: PlanOptions,
) -> Result<Plan, EngineError> {
    let store = RevisionStore::new(client, app);
    let (previous, _) = store.previous_inventory().await?;
    Ok(plan::plan(
        client,
        kinds,
        app,
        &desired.rendered.objects,
        &previous,
        options,
    )
    .await?)
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
    let lock = match lease::acquire(client, app, &options.holder, &at_once).await {
        Ok(lock) => lock,
        Err(LockError::Held { holder, .. }) => {
            progress(&format!(
                "waiting up to {}s for {holder} to finish with {}",
                options.lock.wait.as_secs(),
                app.full()
            ));
            lease::acquire(client, app, &options.holder, &options.lock).await?
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

/// Everything a sync decides before writing: quarantine, previous
/// inventory, plan, validation gate, empty-render guard. Writes nothing.
struct Prepared {
    plan: Plan,
    previous: Vec<ObjectId>,
    /// The newest revision number when planned (to notice other writers).
    latest: Option<u64>,
}

async fn prepare(
    client: &kube::Client,
    kinds: &Kinds,
    app: &AppIdentity,
    desired: &Desired,
    options: &SyncOptions,
    planned: Option<Plan>,
) -> Result<Prepared, EngineError> {
    let store = RevisionStore::new(client, app);
    let latest = store.list().await?.last().map(|h| h.number);
    if !options.force {
        refuse_quarantined(&store, desired).await?;
    }
    let (previous, _) = store.previous_inventory().await?;
    let plan = match planned {
        Some(plan) => plan,
        None => {
            plan::plan(
                client,
                kinds,
                app,
                &desired.rendered.objects,
                &previous,
                options.plan,
            )
            .await?
        }
    };
    apply::gate(&plan, &options.apply)?;
    if options.apply.prune
        && let Some(refused) = &plan.prune_refused
    {
        return Err(refused.clone().into());
    }
    Ok(Prepared {
        plan,
        previous,
        latest,
    })
}

/// Plans and, when something changes, records and applies. A sync that
/// changes nothing writes nothing at all, not even the lock; one that
/// changes something holds the application's lock, and plans again if
/// another writer recorded a revision while it waited.
pub async fn sync(
    client: &kube::Client,
    kinds: &Kinds,
    app: &AppIdentity,
    desired: &Desired,
    options: &SyncOptions,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<SyncResult, EngineError> {
    sync_planned(client, kinds, app, desired, None, options, progress).await
}

/// [`sync`] with a plan the caller made moments ago (by [`plan`], of the
/// same desired state): it is not made again, unless another writer
/// recorded a revision meanwhile. Saves one dry-run per changed object.
pub async fn sync_planned(
    client: &kube::Client,
    kinds: &Kinds,
    app: &AppIdentity,
    desired: &Desired,
    planned: Option<Plan>,
    options: &SyncOptions,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<SyncResult, EngineError> {
    let prepared = prepare(client, kinds, app, desired, options, planned).await?;
    if !prepared.plan.has_changes() {
        return Ok(unchanged(prepared.plan));
    }
    // The lock and the records live in the application's namespace: when
    // the set itself creates it, that comes first (an idempotent apply).
    ensure_record_namespace(client, app, &prepared.plan, progress).await?;
    let operation = async {
        let latest = RevisionStore::new(client, app)
            .list()
            .await?
            .last()
            .map(|h| h.number);
        let prepared = if latest == prepared.latest {
            prepared
        } else {
            progress("another writer recorded a revision meanwhile: planning again");
            prepare(client, kinds, app, desired, options, None).await?
        };
        execute(client, kinds, app, desired, prepared, options, progress).await
    };
    with_lock(client, app, options, progress, operation).await
}

fn unchanged(plan: Plan) -> SyncResult {
    SyncResult {
        plan,
        revision: None,
        status: None,
        report: None,
        error: None,
        rolled_back_to: None,
    }
}

/// A whole sync for a caller that already holds the lock.
async fn sync_locked(
    client: &kube::Client,
    kinds: &Kinds,
    app: &AppIdentity,
    desired: &Desired,
    options: &SyncOptions,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<SyncResult, EngineError> {
    let prepared = prepare(client, kinds, app, desired, options, None).await?;
    execute(client, kinds, app, desired, prepared, options, progress).await
}

/// Records and applies a prepared plan (nothing, if it changes nothing).
async fn execute(
    client: &kube::Client,
    kinds: &Kinds,
    app: &AppIdentity,
    desired: &Desired,
    prepared: Prepared,
    options: &SyncOptions,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<SyncResult, EngineError> {
    let Prepared { plan, previous, .. } = prepared;
    if !plan.has_changes() {
        return Ok(unchanged(plan));
    }
    let store = RevisionStore::new(client, app);

    ensure_record_namespace(client, app, &plan, progress).await?;

    // The pending record names everything this sync may touch before it
    // touches anything: the new objects and the previous inventory.
    let number = store.next_number().await?;
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
        description: options.description.clone(),
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
    progress(&format!("revision {number}: applying ({})", plan.summary()));

    let result = apply::apply(client, kinds, &plan, &options.apply, progress).await;
    record.finished_at = Some(now());
    let (status, report, error) = match result {
        Ok(report) => {
            let health = report.health.clone();
            let failed = health
                .as_ref()
                .is_some_and(|h| h.state == HealthState::Failed);
            record.health = Some(match &health {
                Some(h) => HealthSummary {
                    state: match (h.state, h.timed_out) {
                        (HealthState::Healthy, _) => "healthy",
                        (_, true) => "timed-out",
                        _ => "failed",
                    }
                    .into(),
                    unhealthy: h.unhealthy.clone(),
                },
                None => HealthSummary {
                    state: "not-checked".into(),
                    unhealthy: Vec::new(),
                },
            });
            let error = failed.then(|| {
                format!(
                    "health check failed: {}",
                    health.map(|h| h.unhealthy.join("; ")).unwrap_or_default()
                )
            });
            record.outcome = Some(Outcome {
                created: report.created.len(),
                updated: report.updated.len(),
                deleted: report.deleted.len(),
                unchanged: report.unchanged,
                error: error.clone(),
            });
            record.inventory = final_inventory(&plan, &report);
            let status = if failed {
                RevisionStatus::Failed
            } else {
                RevisionStatus::Deployed
            };
            (status, Some(report), error)
        }
        Err(error) => {
            let message = error.to_string();
            record.outcome = Some(Outcome {
                error: Some(message.clone()),
                ..Outcome::default()
            });
            (RevisionStatus::Failed, None, Some(message))
        }
    };
    record.status = status;
    store.update(&record).await?;
    if status == RevisionStatus::Deployed {
        let replaced = if options.description.starts_with("rollback") {
            RevisionStatus::RolledBack
        } else {
            RevisionStatus::Superseded
        };
        replace_older(&store, number, replaced).await?;
    }
    close_interrupted(&store, number).await?;
    enforce_history_limit(&store, options.history_limit).await?;

    let health_failed = report
        .as_ref()
        .and_then(|r| r.health.as_ref())
        .is_some_and(|h| h.state == HealthState::Failed);
    let mut rolled_back_to = None;
    if options.rollback_on_failure && health_failed {
        progress(&format!(
            "revision {number} failed its health check: rolling back"
        ));
        record.quarantined = true;
        store.update(&record).await?;
        let rollback_options = SyncOptions {
            rollback_on_failure: false,
            ..options.clone()
        };
        match Box::pin(rollback_locked(
            client,
            kinds,
            app,
            None,
            &rollback_options,
            progress,
        ))
        .await
        {
            Ok(result) => rolled_back_to = result.rolled_back_to,
            Err(error) => progress(&format!("automatic rollback failed: {error}")),
        }
    }
    Ok(SyncResult {
        plan,
        revision: Some(number),
        status: Some(status),
        report,
        error,
        rolled_back_to,
    })
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
) -> Result<SyncResult, EngineError> {
    with_lock(
        client,
        app,
        options,
        progress,
        rollback_locked(client, kinds, app, target, options, progress),
    )
    .await
}

async fn rollback_locked(
    client: &kube::Client,
    kinds: &Kinds,
    app: &AppIdentity,
    target: Option<u64>,
    options: &SyncOptions,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<SyncResult, EngineError> {
    let store = RevisionStore::new(client, app);
    let number = match target {
        Some(number) => number,
        None => previous_successful(&store, app).await?,
    };
    let record = store.load(number).await?;
    let desired = desired_from_record(&record, app)?;
    let mut options = SyncOptions {
        description: format!("rollback to {number}"),
        force: true,
        ..options.clone()
    };
    options.apply.prune = true;
    progress(&format!("rolling back {} to revision {number}", app.full()));
    let mut result = Box::pin(sync_locked(
        client, kinds, app, &desired, &options, progress,
    ))
    .await?;
    result.rolled_back_to = Some(number);
    Ok(result)
}

/// The newest successful revision older than the current one.
async fn previous_successful(store: &RevisionStore, app: &AppIdentity) -> Result<u64, EngineError> {
    let headers = store.list().await?;
    let Some(current) = headers.last() else {
        return Err(EngineError::NoRollbackTarget {
            app: app.full(),
            why: ": it has no history".into(),
        });
    };
    let successful = |h: &&crate::history::store::RevisionHeader| {
        matches!(
            h.status,
            Some(
                RevisionStatus::Deployed | RevisionStatus::Superseded | RevisionStatus::RolledBack
            )
        )
    };
    // The current revision is what is live; roll back to one before it.
    headers
        .iter()
        .rev()
        .filter(|h| h.number < current.number)
        .find(successful)
        .map(|h| h.number)
        .ok_or_else(|| EngineError::NoRollbackTarget {
            app: app.full(),
            why: ": no successful revision before the current one".into(),
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
        let digest = metadata["annotations"][super::identity::ANNOTATION_DIGEST]
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
        },
        source: record.source.clone(),
        values_digest: record.values_digest.clone(),
    })
}

/// Refuses a desired state that failed and was rolled back automatically.
async fn refuse_quarantined(store: &RevisionStore, desired: &Desired) -> Result<(), EngineError> {
    let headers = store.list().await?;
    for header in headers.iter().rev() {
        if header.status != Some(RevisionStatus::Failed) {
            continue;
        }
        let record = store.load(header.number).await?;
        if !record.quarantined {
            continue;
        }
        let same_source = match (&record.source, &desired.source) {
            (RecordSource::Git { commit: a, .. }, RecordSource::Git { commit: b, .. }) => a == b,
            _ => record.manifest_digest == desired.rendered.manifest_digest,
        };
        if same_source && record.values_digest == desired.values_digest {
            let what = match record.commit() {
                Some(commit) => format!("commit {}", &commit[..commit.len().min(7)]),
                None => "this desired state".to_string(),
            };
            return Err(EngineError::Quarantined {
                what,
                revision: record.revision,
            });
        }
        // An older quarantine does not block a different source.
        return Ok(());
    }
    Ok(())
}

/// Deletes the oldest records beyond `limit`, never the current revision,
/// the last successful one, or a pending one.
async fn enforce_history_limit(store: &RevisionStore, limit: u32) -> Result<(), StoreError> {
    let headers = store.list().await?;
    let limit = limit.max(1) as usize;
    if headers.len() <= limit {
        return Ok(());
    }
    let current = headers.last().map(|h| h.number);
    let last_successful = headers
        .iter()
        .rev()
        .find(|h| {
            matches!(
                h.status,
                Some(
                    RevisionStatus::Deployed
                        | RevisionStatus::Superseded
                        | RevisionStatus::RolledBack
                )
            )
        })
        .map(|h| h.number);
    let mut excess = headers.len() - limit;
    for header in &headers {
        if excess == 0 {
            break;
        }
        let protected = Some(header.number) == current
            || Some(header.number) == last_successful
            || header.status == Some(RevisionStatus::Pending);
        if !protected {
            store.delete(header.number).await?;
            excess -= 1;
        }
    }
    Ok(())
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
        reason: crate::cluster::explain(&error),
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
    let params = kube::api::PatchParams::apply(super::identity::FIELD_MANAGER).force();
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
            PruneDecision::Keep { id, reason } if !reason.contains("took it over") => id,
            _ => continue,
        };
        if !ids.iter().any(|known| known.key() == id.key()) {
            ids.push(id.clone());
        }
    }
    ids.iter().map(InventoryEntry::from).collect()
}

/// Marks every older deployed revision `replaced` (superseded, or
/// rolled-back when a rollback replaced it).
async fn replace_older(
    store: &RevisionStore,
    current: u64,
    replaced: RevisionStatus,
) -> Result<(), StoreError> {
    for header in store.list().await? {
        if header.number < current && header.status == Some(RevisionStatus::Deployed) {
            let mut old = store.load(header.number).await?;
            old.status = replaced;
            store.update(&old).await?;
        }
    }
    Ok(())
}

/// Marks older records still `pending` failed: their sync stopped before it
/// finished (a crash or a kill); this one included their inventory.
async fn close_interrupted(store: &RevisionStore, current: u64) -> Result<(), StoreError> {
    for header in store.list().await? {
        if header.number < current && header.status == Some(RevisionStatus::Pending) {
            let mut old = store.load(header.number).await?;
            old.status = RevisionStatus::Failed;
            old.outcome = Some(Outcome {
                error: Some(format!(
                    "interrupted: the sync stopped before it finished; revision {current} took \
                     over its objects"
                )),
                ..old.outcome.unwrap_or_default()
            });
            store.update(&old).await?;
        }
    }
    Ok(())
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
    pub kept: Vec<(ObjectId, String)>,
    pub records_deleted: usize,
}

/// Deletes every object of the application's inventory, with prune's guards
/// (label still ours, `windlass.dev/prune: disabled`, dangerous kinds only
/// when asked), then its revision records unless `keep_history`.
pub async fn uninstall(
    client: &kube::Client,
    kinds: &Kinds,
    app: &AppIdentity,
    dangerous: bool,
    keep_history: bool,
    options: &SyncOptions,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<UninstallReport, EngineError> {
    let operation = uninstall_locked(client, kinds, app, dangerous, keep_history, progress);
    with_lock(client, app, options, progress, operation).await
}

async fn uninstall_locked(
    client: &kube::Client,
    kinds: &Kinds,
    app: &AppIdentity,
    dangerous: bool,
    keep_history: bool,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<UninstallReport, EngineError> {
    let store = RevisionStore::new(client, app);
    let (inventory, _) = store.previous_inventory().await?;
    let mut live = std::collections::HashMap::new();
    for id in &inventory {
        if let Some(kind) = kinds.resolve(id).await?
            && let Some(object) = plan::get(client, id, &kind).await?
        {
            live.insert(id.clone(), object);
        }
    }
    let candidates: Vec<&ObjectId> = inventory.iter().collect();
    let options = super::prune::PruneOptions {
        allow_empty: true,
        dangerous,
    };
    let decisions = super::prune::decide(app, &candidates, 0, |id| live.get(id), options)
        .expect("allow_empty never refuses");
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
    deletions.sort_by_key(|id| std::cmp::Reverse(super::order::Phase::of(id)));
    let mut failures = Vec::new();
    for id in deletions {
        let Some(kind) = kinds.resolve(&id).await? else {
            continue;
        };
        match apply::delete_and_wait(client, &id, &kind, std::time::Duration::from_secs(300)).await
        {
            Ok(()) => {
                progress(&format!("deleted {}", super::diff::display_name(&id)));
                report.deleted.push(id);
            }
            Err(why) => failures.push((id, why)),
        }
    }
    if !failures.is_empty() {
        return Err(ApplyError::Prune(failures).into());
    }
    if !keep_history {
        for header in store.list().await? {
            store.delete(header.number).await?;
            report.records_deleted += 1;
        }
    }
    Ok(report)
}
