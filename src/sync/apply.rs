//! Apply a plan: write, prune, wait for health.
//!
//! ```text
//!   Plan (gate passed) ─► phase 1 Foundations ─► CRDs Established? refresh discovery,
//!                                                 dry-run the objects that waited for them
//!                       ─► phase 2 ClusterRbac ─► phase 3 Workloads ─► phase 4 Webhooks
//!                       ─► prune (background propagation, wait until gone; see `delete`)
//!                       ─► health wait (poll, progress lines, timeout = failure)
//! ```
//!
//! Within a phase writes run concurrently up to a bound; a phase with a
//! failed write stops the sync before the next phase. Unchanged objects are
//! never written.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt};
use kube::api::{Patch, PatchParams};
use serde_json::Value;

use super::api::{api_for, get, to_value};
use super::diff::display_name;
use super::health::{self, Health, HealthState};
use super::kinds::{Kind, Kinds};
use super::order::{Phase, by_phase, is_crd};
use super::plan::{Action, Change, Plan, Rejection, dry_run};
use super::prune::{KeepReason, PruneDecision};
use crate::cluster::explain;
use crate::identity::FIELD_MANAGER;
use crate::render::ObjectId;

#[derive(Debug, Clone, Copy)]
pub struct ApplyOptions {
    /// Take over fields other managers own (Git wins). Off: conflicts are errors.
    pub force_conflicts: bool,
    pub prune: bool,
    pub wait: bool,
    /// How long health may take before it counts as failed.
    pub timeout: Duration,
    pub concurrency: usize,
}

impl Default for ApplyOptions {
    fn default() -> ApplyOptions {
        ApplyOptions {
            force_conflicts: true,
            prune: false,
            wait: true,
            timeout: Duration::from_secs(300),
            concurrency: 16,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("the server rejected {} object(s); nothing was written:\n{}", .0.len(), list_rejections(.0))]
    Rejected(Vec<Rejection>),
    #[error(
        "{} object(s) would take fields owned by other managers, and --no-force-conflicts is set; \
         nothing was written:\n{}", .0.len(), list_rejections(.0)
    )]
    Conflicts(Vec<Rejection>),
    #[error("applying failed for {} object(s):\n{}", .failures.len(), list_failures(.failures))]
    Write {
        failures: Vec<(ObjectId, String)>,
        /// Objects that were written before the failure.
        written: Vec<ObjectId>,
    },
    #[error("{0}")]
    Crd(String),
    #[error("pruning failed:\n{}", list_failures(.0))]
    Prune(Vec<(ObjectId, String)>),
    #[error("{0}")]
    Discovery(#[from] super::kinds::DiscoveryError),
}

fn list_rejections(rejections: &[Rejection]) -> String {
    rejections
        .iter()
        .map(|r| format!("  {} ({}): {}", display_name(&r.id), r.origin, r.message))
        .collect::<Vec<_>>()
        .join("\n")
}

pub(crate) fn list_failures(failures: &[(ObjectId, String)]) -> String {
    failures
        .iter()
        .map(|(id, why)| format!("  {}: {why}", display_name(id)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// What an apply did.
#[derive(Debug, Clone, Default)]
pub struct ApplyReport {
    pub created: Vec<ObjectId>,
    pub updated: Vec<ObjectId>,
    pub unchanged: usize,
    pub deleted: Vec<ObjectId>,
    /// Objects prune left alone, and why.
    pub kept: Vec<(ObjectId, KeepReason)>,
    /// Field conflicts taken over: (object, manager, field).
    pub taken_over: Vec<(ObjectId, String, String)>,
    pub health: Option<HealthReport>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthReport {
    pub state: HealthState,
    /// One line per object that is not healthy.
    pub unhealthy: Vec<String>,
    pub timed_out: bool,
}

/// Checks the gate: nothing may be written if the server rejected any
/// object, or (without force) if any object conflicts.
pub fn gate(plan: &Plan, options: &ApplyOptions) -> Result<(), ApplyError> {
    if !plan.rejected.is_empty() {
        return Err(ApplyError::Rejected(plan.rejected.clone()));
    }
    if !options.force_conflicts {
        let conflicts: Vec<Rejection> = plan
            .changes
            .iter()
            .filter(|c| !c.conflicts.is_empty())
            .map(|c| Rejection {
                id: c.id.clone(),
                origin: String::new(),
                message: c
                    .conflicts
                    .iter()
                    .map(|f| format!("{} is owned by {}", f.field, f.manager))
                    .collect::<Vec<_>>()
                    .join(", "),
            })
            .collect();
        if !conflicts.is_empty() {
            return Err(ApplyError::Conflicts(conflicts));
        }
    }
    Ok(())
}

/// Applies `plan`. The caller has written the pending record and checked
/// [`gate`]. `progress` receives one line per event.
pub async fn apply(
    client: &kube::Client,
    kinds: &Kinds,
    plan: &Plan,
    options: &ApplyOptions,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<ApplyReport, ApplyError> {
    gate(plan, options)?;
    let mut report = ApplyReport {
        unchanged: plan.count(Action::Unchanged),
        ..ApplyReport::default()
    };
    let writes: Vec<Change> = plan
        .changes
        .iter()
        .filter(|c| c.writes())
        .cloned()
        .collect();
    let mut waiting_for_crds: Vec<Change> = Vec::new();
    for (phase, changes) in by_phase(writes, |c| &c.id) {
        let (ready, waiting): (Vec<Change>, Vec<Change>) = changes
            .into_iter()
            .partition(|c| c.action != Action::Deferred);
        waiting_for_crds.extend(waiting);
        let mut batch = ready;
        if phase > Phase::Foundations && !waiting_for_crds.is_empty() {
            // Their CRDs were applied in phase 1: validate all of them now,
            // before any of them is written.
            let resolved =
                resolve_after_crds(client, kinds, std::mem::take(&mut waiting_for_crds)).await?;
            for change in resolved {
                if Phase::of(&change.id) == phase {
                    batch.push(change);
                } else {
                    waiting_for_crds.push(change);
                }
            }
        }
        write_phase(client, &batch, options, progress, &mut report).await?;
        if phase == Phase::Foundations {
            let crds: Vec<&Change> = batch.iter().filter(|c| is_crd(&c.id)).collect();
            if !crds.is_empty() {
                wait_for_crds(client, &crds, progress).await?;
                kinds.refresh().await?;
            }
        }
    }
    if !waiting_for_crds.is_empty() {
        let resolved = resolve_after_crds(client, kinds, waiting_for_crds).await?;
        write_phase(client, &resolved, options, progress, &mut report).await?;
    }

    if options.prune {
        prune(client, kinds, plan, options, progress, &mut report).await?;
    } else {
        for id in plan.deletions() {
            report.kept.push((id.clone(), KeepReason::PruneOff));
        }
    }
    if options.wait {
        report.health = Some(wait_for_health(client, kinds, plan, options, progress).await);
    }
    Ok(report)
}

async fn write_phase(
    client: &kube::Client,
    changes: &[Change],
    options: &ApplyOptions,
    progress: &(dyn Fn(&str) + Sync),
    report: &mut ApplyReport,
) -> Result<(), ApplyError> {
    if changes.is_empty() {
        return Ok(());
    }
    let results: Vec<(Change, Result<(), String>)> =
        stream::iter(changes.iter().cloned().map(|change| async move {
            let result = write(client, &change, options.force_conflicts).await;
            (change, result)
        }))
        .buffer_unordered(options.concurrency.max(1))
        .collect()
        .await;
    let mut failures = Vec::new();
    for (change, result) in results {
        match result {
            Ok(()) => {
                let verb = if change.live.is_some() {
                    "updated"
                } else {
                    "created"
                };
                progress(&format!("{verb} {}", display_name(&change.id)));
                for conflict in &change.conflicts {
                    progress(&format!(
                        "  took {} over from field manager {}",
                        conflict.field, conflict.manager
                    ));
                    report.taken_over.push((
                        change.id.clone(),
                        conflict.manager.clone(),
                        conflict.field.clone(),
                    ));
                }
                if change.live.is_some() {
                    report.updated.push(change.id);
                } else {
                    report.created.push(change.id);
                }
            }
            Err(why) => failures.push((change.id, why)),
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        let mut written = report.created.clone();
        written.extend(report.updated.iter().cloned());
        Err(ApplyError::Write { failures, written })
    }
}

async fn write(client: &kube::Client, change: &Change, force: bool) -> Result<(), String> {
    let kind = change.kind.as_ref().ok_or("the kind is unknown")?;
    let api = api_for(client, &change.id, kind);
    let mut params = PatchParams::apply(FIELD_MANAGER);
    if force {
        params = params.force();
    }
    api.patch(&change.id.name, &params, &Patch::Apply(&change.desired))
        .await
        .map(|_| ())
        .map_err(|e| explain(&e))
}

/// Resolves the kinds of deferred objects (their CRD or Namespace now
/// exists) and dry-runs them all; any rejection stops the sync before one of
/// them is written.
async fn resolve_after_crds(
    client: &kube::Client,
    kinds: &Kinds,
    changes: Vec<Change>,
) -> Result<Vec<Change>, ApplyError> {
    let mut resolved = Vec::new();
    let mut rejected = Vec::new();
    for mut change in changes {
        let known = match change.kind.clone() {
            Some(kind) => Some(kind),
            None => kinds.resolve(&change.id).await?,
        };
        let Some(kind) = known else {
            rejected.push(Rejection {
                id: change.id.clone(),
                origin: String::new(),
                message: "its CustomResourceDefinition was applied but the server still does not serve this kind".into(),
            });
            continue;
        };
        match dry_run(client, &change.id, &kind, &change.desired).await {
            Ok(outcome) => {
                change.kind = Some(kind.clone());
                change.live = get(client, &change.id, &kind).await.ok().flatten();
                change.action = if change.live.is_some() {
                    Action::Update
                } else {
                    Action::Create
                };
                change.dry_run = Some(outcome.object);
                change.conflicts = outcome.conflicts;
                resolved.push(change);
            }
            Err(error) => rejected.push(Rejection {
                id: change.id.clone(),
                origin: String::new(),
                message: error.message,
            }),
        }
    }
    if rejected.is_empty() {
        Ok(resolved)
    } else {
        Err(ApplyError::Rejected(rejected))
    }
}

async fn wait_for_crds(
    client: &kube::Client,
    crds: &[&Change],
    progress: &(dyn Fn(&str) + Sync),
) -> Result<(), ApplyError> {
    let deadline = Instant::now() + Duration::from_secs(60);
    for change in crds {
        let kind = change.kind.as_ref().expect("CRDs have a known kind");
        loop {
            let live = get(client, &change.id, kind)
                .await
                .map_err(|e| ApplyError::Crd(e.to_string()))?;
            let verdict = live.as_ref().map(|l| health::evaluate(&change.id, l));
            match verdict {
                Some(Health {
                    state: HealthState::Healthy,
                    ..
                }) => break,
                Some(Health {
                    state: HealthState::Failed,
                    reason,
                }) => return Err(ApplyError::Crd(reason)),
                _ if Instant::now() > deadline => {
                    return Err(ApplyError::Crd(format!(
                        "{} was not Established within 60s",
                        display_name(&change.id)
                    )));
                }
                _ => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
        progress(&format!("established {}", display_name(&change.id)));
    }
    Ok(())
}

async fn prune(
    client: &kube::Client,
    kinds: &Kinds,
    plan: &Plan,
    options: &ApplyOptions,
    progress: &(dyn Fn(&str) + Sync),
    report: &mut ApplyReport,
) -> Result<(), ApplyError> {
    if let Some(refused) = &plan.prune_refused {
        progress(&format!("prune skipped: {refused}"));
        return Ok(());
    }
    let mut deletions: Vec<ObjectId> = Vec::new();
    for decision in &plan.prune {
        match decision {
            PruneDecision::Delete(id) => deletions.push(id.clone()),
            PruneDecision::Keep { id, reason } => {
                progress(&format!("kept {}: {reason}", display_name(id)));
                report.kept.push((id.clone(), reason.clone()));
            }
        }
    }
    let deleted = super::delete::delete_all(
        client,
        kinds,
        deletions,
        options.timeout,
        "pruning",
        progress,
    )
    .await?;
    report.deleted.extend(deleted.deleted);
    if deleted.failures.is_empty() {
        Ok(())
    } else {
        Err(ApplyError::Prune(deleted.failures))
    }
}

/// Polls every desired object until all are healthy, one fails, or the
/// timeout passes (which counts as failure).
pub async fn wait_for_health(
    client: &kube::Client,
    kinds: &Kinds,
    plan: &Plan,
    options: &ApplyOptions,
    progress: &(dyn Fn(&str) + Sync),
) -> HealthReport {
    let deadline = Instant::now() + options.timeout;
    let mut last_line = String::new();
    let targets: Vec<(ObjectId, Option<Kind>)> = plan
        .changes
        .iter()
        .map(|c| (c.id.clone(), c.kind.clone()))
        .collect();
    loop {
        // Futures first, then the stream: keeps the future provably Send.
        let checks: Vec<_> = targets
            .iter()
            .map(|(id, kind)| async move {
                let kind = match kind {
                    Some(kind) => Some(kind.clone()),
                    None => kinds.resolve(id).await.ok().flatten(),
                };
                let live = match &kind {
                    Some(kind) => get(client, id, kind).await.ok().flatten(),
                    None => None,
                };
                match live {
                    Some(live) => health::evaluate(id, &live),
                    None => Health {
                        state: HealthState::Progressing,
                        reason: format!("{}/{}: not found", id.kind.to_lowercase(), id.name),
                    },
                }
            })
            .collect();
        let verdicts: Vec<Health> = stream::iter(checks)
            .buffered(options.concurrency.max(1))
            .collect()
            .await;
        let failed: Vec<String> = verdicts
            .iter()
            .filter(|h| h.state == HealthState::Failed)
            .map(|h| h.reason.clone())
            .collect();
        let waiting: Vec<String> = verdicts
            .iter()
            .filter(|h| h.state == HealthState::Progressing)
            .map(|h| h.reason.clone())
            .collect();
        if !failed.is_empty() {
            for reason in &failed {
                progress(&format!("unhealthy: {reason}"));
            }
            return HealthReport {
                state: HealthState::Failed,
                unhealthy: failed,
                timed_out: false,
            };
        }
        if waiting.is_empty() {
            progress(&format!("healthy: all {} objects", verdicts.len()));
            return HealthReport {
                state: HealthState::Healthy,
                unhealthy: Vec::new(),
                timed_out: false,
            };
        }
        if Instant::now() > deadline {
            progress(&format!(
                "health check timed out after {}s",
                options.timeout.as_secs()
            ));
            for reason in &waiting {
                progress(&format!("  {reason}"));
            }
            return HealthReport {
                state: HealthState::Failed,
                unhealthy: waiting,
                timed_out: true,
            };
        }
        let line = format!(
            "waiting for {} of {} objects: {}",
            waiting.len(),
            verdicts.len(),
            waiting[0]
        );
        if line != last_line {
            progress(&line);
            last_line = line;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// The live objects of a plan's changes after apply, for records and tests.
pub async fn live_objects(client: &kube::Client, plan: &Plan) -> HashMap<ObjectId, Value> {
    let mut out = HashMap::new();
    for change in &plan.changes {
        if let Some(kind) = &change.kind
            && let Ok(object) = api_for(client, &change.id, kind).get(&change.id.name).await
        {
            out.insert(change.id.clone(), to_value(object));
        }
    }
    out
}
