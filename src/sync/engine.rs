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
use crate::history::record::{
    HealthSummary, InventoryEntry, Outcome, RecordSource, RevisionRecord,
};
use crate::history::{RevisionStatus, RevisionStore, StoreError};
use crate::render::{
    self, GitInfo, LocalDirectory, ObjectId, RenderInput, Rendered, SetValue, ValuesLayer,
};
use crate::source::{self, Repo, SourceCache};

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
    #[error(
        "namespace {0} does not exist, and it holds the application's revision records: create \
         it first (kubectl create namespace {0}), or add a Namespace object to the application"
    )]
    NoRecordNamespace(String),
    #[error("creating namespace {namespace}: {reason}")]
    CreateNamespace { namespace: String, reason: String },
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
            repo,
            reference,
            path,
        } => {
            let resolved = cache.resolve(repo, reference).await?;
            let snapshot = cache.snapshot(repo, &resolved, path).await?;
            let git = GitInfo {
                commit: resolved.commit.to_string(),
                reference: Some(resolved.ref_name.clone()),
            };
            let path = snapshot.path.clone();
            let rendered = render_tree(target, snapshot, Some(git), kinds).await?;
            Ok(Desired {
                rendered,
                source: RecordSource::Git {
                    repo: repo.url.to_string(),
                    reference: resolved.ref_name,
                    commit: resolved.commit.to_string(),
                    path,
                },
                values_digest,
            })
        }
    }
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
    let sets: Vec<(String, &Value)> = target
        .set
        .iter()
        .map(|s| (s.path.join("."), &s.value))
        .collect();
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

/// Plans and, when something changes, records and applies.
pub async fn sync(
    client: &kube::Client,
    kinds: &Kinds,
    app: &AppIdentity,
    desired: &Desired,
    options: &SyncOptions,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<SyncResult, EngineError> {
    let store = RevisionStore::new(client, app);
    let (previous, _) = store.previous_inventory().await?;
    let plan = plan::plan(
        client,
        kinds,
        app,
        &desired.rendered.objects,
        &previous,
        options.plan,
    )
    .await?;
    apply::gate(&plan, &options.apply)?;
    if options.apply.prune
        && let Some(refused) = &plan.prune_refused
    {
        return Err(refused.clone().into());
    }
    if !plan.has_changes() {
        return Ok(SyncResult {
            plan,
            revision: None,
            status: None,
            report: None,
            error: None,
        });
    }

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
        supersede_older(&store, number).await?;
    }
    close_interrupted(&store, number).await?;
    Ok(SyncResult {
        plan,
        revision: Some(number),
        status: Some(status),
        report,
        error,
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

/// Marks every older deployed revision superseded.
async fn supersede_older(store: &RevisionStore, current: u64) -> Result<(), StoreError> {
    for header in store.list().await? {
        if header.number < current && header.status == Some(RevisionStatus::Deployed) {
            let mut old = store.load(header.number).await?;
            old.status = RevisionStatus::Superseded;
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
