//! `windlass diff` and `windlass sync`.
//!
//! `diff` prints what `sync` would change, like `kubectl diff`, and exits
//! 0 when nothing would, 1 when something would, 2 on error. `sync` applies
//! it, records a revision, and prints progress as it goes.

use std::io::{IsTerminal, Write};
use std::sync::Arc;

use anyhow::bail;
use serde_json::json;

use super::args::{LockArgs, WaitArgs};
use super::target::TargetArgs;
use super::{ExitStatus, GlobalArgs};
use crate::cluster;
use crate::history::RevisionStore;
use crate::identity::AppIdentity;
use crate::sync::apply::{ApplyOptions, gate};
use crate::sync::diff::{display_name, unified_diff};
use crate::sync::engine::{self, Operation, SyncOptions, SyncOutcome};
use crate::sync::health::HealthState;
use crate::sync::kinds::Kinds;
use crate::sync::lock::{LockOptions, default_holder};
use crate::sync::plan::{Action, Plan, PlanOptions};
use crate::sync::prune::{PruneDecision, PruneOptions};

#[derive(Debug, Clone, clap::Args)]
pub struct PruneArgs {
    /// Allow pruning when the render produced no objects at all.
    #[arg(long)]
    pub allow_empty: bool,
    /// Also prune Namespaces, CustomResourceDefinitions and
    /// PersistentVolumeClaims (they take other objects or data with them).
    #[arg(long)]
    pub prune_dangerous: bool,
    /// How many requests run at once.
    #[arg(long, value_name = "N", default_value_t = 16)]
    pub concurrency: usize,
}

impl PruneArgs {
    fn plan_options(&self) -> PlanOptions {
        PlanOptions {
            prune: PruneOptions {
                allow_empty: self.allow_empty,
                dangerous: self.prune_dangerous,
            },
            concurrency: self.concurrency,
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct DiffArgs {
    /// With --revision: the application whose stored revision to compare.
    #[arg(value_name = "NAME", requires = "revision")]
    app: Option<String>,
    /// Compare a stored revision (exactly what it applied) with live.
    #[arg(long, value_name = "N", requires = "app")]
    revision: Option<u64>,
    #[command(flatten)]
    target: TargetArgs,
    #[command(flatten)]
    prune: PruneArgs,
    /// Output: a unified diff per object, or the plan as JSON.
    #[arg(short, long, value_enum, default_value = "diff")]
    output: DiffFormat,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum DiffFormat {
    Diff,
    Json,
}

#[derive(Debug, clap::Args)]
pub struct SyncArgs {
    #[command(flatten)]
    target: TargetArgs,
    #[command(flatten)]
    prune_args: PruneArgs,
    /// Delete the objects the previous revision had and this one lacks.
    #[arg(long)]
    prune: bool,
    /// Fail on fields owned by other field managers instead of taking them
    /// over (by default Git wins).
    #[arg(long)]
    no_force_conflicts: bool,
    #[command(flatten)]
    wait: WaitArgs,
    /// When health fails or times out, roll back to the last successful
    /// revision (and refuse this commit until a new one arrives).
    #[arg(long)]
    rollback_on_failure: bool,
    /// Apply even a commit that failed and was rolled back automatically.
    #[arg(long)]
    force: bool,
    /// Revision records to keep (the live and the last successful one are
    /// always kept).
    #[arg(long, value_name = "N", default_value_t = 10)]
    history_limit: u32,
    #[command(flatten)]
    lock: LockArgs,
}

pub(super) struct Session {
    pub client: kube::Client,
    pub kinds: Arc<Kinds>,
    pub namespace: String,
}

/// The target the flags name, and its desired state (resolved and rendered).
async fn load(
    session: &Session,
    args: &TargetArgs,
) -> anyhow::Result<(engine::Target, engine::Desired)> {
    let target = args.target(&session.client, &session.namespace).await?;
    let cache = args.credentials.cache(args.git_timeout);
    let desired = engine::load_desired(&target, &cache, Some(session.kinds.clone())).await?;
    Ok((target, desired))
}

pub(super) async fn session(global: &GlobalArgs) -> anyhow::Result<Session> {
    let connection = cluster::connect(&global.cluster_options()).await?;
    let kinds = Kinds::discover(&connection.client).await?;
    let namespace = global
        .namespace
        .clone()
        .unwrap_or_else(|| connection.default_namespace.clone());
    Ok(Session {
        client: connection.client,
        kinds: Arc::new(kinds),
        namespace,
    })
}

pub async fn diff(
    global: &GlobalArgs,
    args: &DiffArgs,
    out: &mut impl Write,
) -> anyhow::Result<ExitStatus> {
    let session = session(global).await?;
    let (app, desired) = match (&args.app, args.revision) {
        (Some(name), Some(number)) => {
            let app = AppIdentity::new(session.namespace.clone(), name.clone());
            let record = RevisionStore::new(&session.client, &app)
                .load(number)
                .await?;
            let desired = engine::desired_from_record(&record, &app)?;
            (app, desired)
        }
        _ => {
            let (target, desired) = load(&session, &args.target).await?;
            (target.app, desired)
        }
    };
    let plan = engine::plan(
        &session.client,
        &session.kinds,
        &app,
        &desired,
        args.prune.plan_options(),
    )
    .await?
    .plan;
    match args.output {
        DiffFormat::Diff => print_plan(&plan, out, std::io::stdout().is_terminal())?,
        DiffFormat::Json => {
            serde_json::to_writer_pretty(&mut *out, &plan_json(&plan))?;
            writeln!(out)?;
        }
    }
    if !plan.rejected.is_empty() {
        gate(&plan, &ApplyOptions::default())?;
    }
    Ok(if plan.has_changes() {
        ExitStatus::Attention
    } else {
        ExitStatus::Success
    })
}

pub async fn sync(
    global: &GlobalArgs,
    args: &SyncArgs,
    out: &mut impl Write,
) -> anyhow::Result<ExitStatus> {
    let session = session(global).await?;
    let (target, desired) = load(&session, &args.target).await?;
    let options = SyncOptions {
        plan: args.prune_args.plan_options(),
        apply: ApplyOptions {
            force_conflicts: !args.no_force_conflicts,
            prune: args.prune,
            wait: !args.wait.no_wait,
            timeout: args.wait.timeout,
            concurrency: args.prune_args.concurrency,
        },
        operation: Operation::Sync,
        triggered_by: engine::cli_trigger(),
        history_limit: args.history_limit,
        force: args.force,
        rollback_on_failure: args.rollback_on_failure,
        lock: LockOptions {
            wait: args.lock.lock_timeout,
            ..LockOptions::default()
        },
        holder: default_holder(),
    };
    // Progress goes to stdout as it happens.
    let progress = |line: &str| {
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "{line}");
    };
    let result = engine::sync(
        &session.client,
        &session.kinds,
        &target.app,
        &desired,
        &options,
        &progress,
    )
    .await?;
    report_sync(&target.app, result, out)
}

/// Prints how a sync or rollback ended; a failure is an error (exit 2).
pub(super) fn report_sync(
    app: &AppIdentity,
    outcome: SyncOutcome,
    out: &mut impl Write,
) -> anyhow::Result<ExitStatus> {
    let (revision, report) = match outcome {
        SyncOutcome::Unchanged { plan } => {
            writeln!(out, "no changes: {} ({})", app.full(), plan.summary())?;
            return Ok(ExitStatus::Success);
        }
        SyncOutcome::Failed {
            revision, failure, ..
        } => bail!("revision {revision} of {} failed: {failure}", app.full()),
        SyncOutcome::RolledBack {
            revision,
            failure,
            to,
            ..
        } => bail!(
            "revision {revision} of {} failed: {failure}; rolled back to revision {to}",
            app.full()
        ),
        SyncOutcome::Deployed {
            revision, report, ..
        } => (revision, report),
    };
    let health = match report.health.as_ref().map(|h| h.state) {
        Some(HealthState::Healthy) => "healthy",
        None => "health not checked",
        _ => "unhealthy",
    };
    writeln!(
        out,
        "revision {revision} deployed: {} created, {} updated, {} deleted, {} unchanged; {health}",
        report.created.len(),
        report.updated.len(),
        report.deleted.len(),
        report.unchanged
    )?;
    Ok(ExitStatus::Success)
}

fn print_plan(plan: &Plan, out: &mut impl Write, color: bool) -> anyhow::Result<()> {
    for change in &plan.changes {
        match change.action {
            Action::Unchanged => continue,
            Action::Deferred => {
                out.write_all(
                    unified_diff(&change.id, None, Some(&change.desired), color).as_bytes(),
                )?;
            }
            Action::Create | Action::Update => {
                let after = change.dry_run.as_ref().unwrap_or(&change.desired);
                out.write_all(
                    unified_diff(&change.id, change.live.as_ref(), Some(after), color).as_bytes(),
                )?;
            }
        }
        for conflict in &change.conflicts {
            writeln!(
                out,
                "! {}: {} is owned by field manager {} (sync takes it over; --no-force-conflicts refuses)",
                display_name(&change.id),
                conflict.field,
                conflict.manager
            )?;
        }
    }
    for decision in &plan.prune {
        match decision {
            PruneDecision::Delete(id) => {
                out.write_all(unified_diff(id, plan.prune_live.get(id), None, color).as_bytes())?;
            }
            PruneDecision::Keep { id, reason } => {
                writeln!(out, "# not pruned: {}: {reason}", display_name(id))?;
            }
        }
    }
    if let Some(refused) = &plan.prune_refused {
        writeln!(out, "# {refused}")?;
    }
    for rejection in &plan.rejected {
        writeln!(
            out,
            "# rejected: {} ({}): {}",
            display_name(&rejection.id),
            rejection.origin,
            rejection.message
        )?;
    }
    writeln!(out, "{}", plan.summary())?;
    Ok(())
}

fn plan_json(plan: &Plan) -> serde_json::Value {
    let id_json = |id: &crate::render::ObjectId| json!({ "apiVersion": id.api_version(), "kind": id.kind, "namespace": id.namespace, "name": id.name });
    let changes: Vec<_> = plan
        .changes
        .iter()
        .map(|c| {
            let after = c.dry_run.as_ref().unwrap_or(&c.desired);
            json!({
                "object": id_json(&c.id),
                "action": c.action,
                "conflicts": c.conflicts,
                "diff": (c.action != Action::Unchanged).then(|| unified_diff(&c.id, c.live.as_ref(), Some(after), false)),
            })
        })
        .collect();
    let prune: Vec<_> = plan
        .prune
        .iter()
        .map(|d| match d {
            PruneDecision::Delete(id) => json!({ "object": id_json(id), "action": "delete" }),
            PruneDecision::Keep { id, reason } => {
                json!({ "object": id_json(id), "action": "keep", "reason": reason })
            }
        })
        .collect();
    let rejected: Vec<_> = plan
        .rejected
        .iter()
        .map(|r| json!({ "object": id_json(&r.id), "origin": r.origin, "message": r.message }))
        .collect();
    json!({
        "app": plan.app.full(),
        "summary": {
            "create": plan.count(Action::Create) + plan.count(Action::Deferred),
            "update": plan.count(Action::Update),
            "delete": plan.deletions().count(),
            "unchanged": plan.count(Action::Unchanged),
            "conflicts": plan.conflicts(),
        },
        "changes": changes,
        "prune": prune,
        "pruneRefused": plan.prune_refused.as_ref().map(|r| r.to_string()),
        "rejected": rejected,
    })
}
