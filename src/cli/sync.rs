//! `windlass diff` and `windlass sync`.
//!
//! `diff` prints what `sync` would change, like `kubectl diff`, and exits
//! 0 when nothing would, 1 when something would, 2 on error. `sync` applies
//! it, records a revision, and prints progress as it goes.
//!
//! Both check the namespaces first, the same way ([`namespaces_to_create`]):
//! the application's namespace holds its revision records, so when it does
//! not exist and the set does not define it, both fail, unless
//! `--create-namespace` is given (as in Helm): then `sync` creates it (and a
//! missing destination namespace) before the engine runs, labelled
//! `app.kubernetes.io/managed-by: windlass` but not part of the
//! application, and `diff` shows it as one more object to create.

use std::collections::BTreeSet;
use std::io::{IsTerminal, Write};
use std::sync::Arc;

use anyhow::bail;
use k8s_openapi::api::core::v1::Namespace;
use serde_json::json;

use super::args::{LockArgs, WaitArgs};
use super::target::TargetArgs;
use super::{ExitStatus, GlobalArgs};
use crate::cluster;
use crate::history::RevisionStore;
use crate::identity::{AppIdentity, FIELD_MANAGER, LABEL_MANAGED_BY, MANAGED_BY, stamp};
use crate::render::{ObjectId, RenderedObject};
use crate::sync::apply::ApplyOptions;
use crate::sync::diff::{display_name, unified_diff};
use crate::sync::engine::{self, Operation, SyncOptions, SyncOutcome};
use crate::sync::health::HealthState;
use crate::sync::kinds::Kinds;
use crate::sync::lock::{LockOptions, default_holder};
use crate::sync::plan::{Action, Change, Plan, PlanOptions, Rejection};
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
    /// Show the application's namespace (and the destination namespace) as
    /// created when it does not exist, as `sync --create-namespace` would.
    #[arg(long)]
    create_namespace: bool,
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
    /// Create the application's namespace (it holds the revision records)
    /// and the destination namespace when they do not exist, as Helm does.
    #[arg(long)]
    create_namespace: bool,
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
    allow_empty: bool,
) -> anyhow::Result<(engine::Target, engine::Desired)> {
    let mut target = args.target(&session.client, &session.namespace).await?;
    target.allow_empty |= allow_empty;
    let cache = args.credentials.cache(args.git_timeout);
    let desired = engine::load_desired(&target, &cache, Some(session.kinds.clone())).await?;
    if let Some(line) = crate::render::helm::hooks_message(&desired.rendered.skipped_hooks) {
        eprintln!("{line}");
    }
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
    let (app, desired, created) = match (&args.app, args.revision) {
        (Some(name), Some(number)) => {
            let app = AppIdentity::new(session.namespace.clone(), name.clone());
            let record = RevisionStore::new(&session.client, &app)
                .load(number)
                .await?;
            let desired = engine::desired_from_record(&record, &app)?;
            (app, desired, Vec::new())
        }
        _ => {
            let (target, desired) = load(&session, &args.target, args.prune.allow_empty).await?;
            let created =
                check_namespaces(&session.client, &target, &desired, args.create_namespace).await?;
            (target.app, desired, created)
        }
    };
    let mut plan = engine::plan(
        &session.client,
        &session.kinds,
        &app,
        &desired,
        args.prune.plan_options(),
    )
    .await?
    .plan;
    if !created.is_empty() {
        show_created_namespaces(&mut plan, &desired.rendered.objects, &created);
    }
    match args.output {
        DiffFormat::Diff => {
            print_plan(&plan, out, std::io::stdout().is_terminal())?;
            print_ignored(&desired, &plan, out)?;
        }
        DiffFormat::Json => {
            // Written as text: a closed pipe is then an io::Error, not an error.
            writeln!(out, "{}", serde_json::to_string_pretty(&plan_json(&plan))?)?;
        }
    }
    if !plan.rejected.is_empty() {
        bail!(
            "the server would reject {} object(s):\n{}",
            plan.rejected.len(),
            list_rejections(&plan.rejected)
        );
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
    let (target, desired) = load(&session, &args.target, args.prune_args.allow_empty).await?;
    let missing =
        check_namespaces(&session.client, &target, &desired, args.create_namespace).await?;
    for namespace in &missing {
        create_namespace(&session.client, namespace).await?;
        writeln!(out, "created namespace {namespace} (--create-namespace)")?;
    }
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

/// Why diff or sync cannot go on with the namespaces as they are.
#[derive(Debug, thiserror::Error)]
enum NamespaceError {
    #[error(
        "namespace {0} does not exist, and it holds the application's revision records: create \
         it first (kubectl create namespace {0}, or pass --create-namespace), or add a Namespace \
         object to the application"
    )]
    NoRecordNamespace(String),
    #[error("cannot read namespace {namespace}: {reason}")]
    Read { namespace: String, reason: String },
    #[error("cannot create namespace {namespace}: {reason}")]
    Create { namespace: String, reason: String },
}

/// A namespace a sync needs, and what the cluster and the set say about it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct NeededNamespace {
    name: String,
    /// It holds the application's revision records.
    records: bool,
    exists: bool,
    /// A Namespace object of the set creates it (the engine does, first).
    in_set: bool,
}

/// The namespaces to create before the engine runs, in order; or the error
/// when the records' namespace is missing and may not be created.
fn namespaces_to_create(
    needed: &[NeededNamespace],
    create_namespace: bool,
) -> Result<Vec<String>, NamespaceError> {
    let missing = needed.iter().filter(|n| !n.exists && !n.in_set);
    let mut create = Vec::new();
    for namespace in missing {
        if create_namespace {
            create.push(namespace.name.clone());
        } else if namespace.records {
            return Err(NamespaceError::NoRecordNamespace(namespace.name.clone()));
        }
    }
    Ok(create)
}

/// Reads whether the application's and the destination namespace exist,
/// and decides which to create ([`namespaces_to_create`]).
async fn check_namespaces(
    client: &kube::Client,
    target: &engine::Target,
    desired: &engine::Desired,
    create_namespace: bool,
) -> Result<Vec<String>, NamespaceError> {
    let in_set: BTreeSet<&str> = desired
        .rendered
        .objects
        .iter()
        .filter(|o| o.id.group.is_empty() && o.id.kind == "Namespace")
        .map(|o| o.id.name.as_str())
        .collect();
    let api: kube::Api<Namespace> = kube::Api::all(client.clone());
    let mut needed: Vec<NeededNamespace> = Vec::new();
    for (name, records) in [(&target.app.namespace, true), (&target.namespace, false)] {
        if name.is_empty() || needed.iter().any(|n| &n.name == name) {
            continue;
        }
        let exists = api
            .get_opt(name)
            .await
            .map_err(|e| NamespaceError::Read {
                namespace: name.clone(),
                reason: cluster::explain(&e),
            })?
            .is_some();
        needed.push(NeededNamespace {
            name: name.clone(),
            records,
            exists,
            in_set: in_set.contains(name.as_str()),
        });
    }
    namespaces_to_create(&needed, create_namespace)
}

/// The Namespace `--create-namespace` creates: windlass's, but no
/// application's (it carries no application identity, so no prune takes it).
fn namespace_manifest(name: &str) -> serde_json::Value {
    json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": { "name": name, "labels": { LABEL_MANAGED_BY: MANAGED_BY } },
    })
}

async fn create_namespace(client: &kube::Client, name: &str) -> Result<(), NamespaceError> {
    let api: kube::Api<Namespace> = kube::Api::all(client.clone());
    let params = kube::api::PatchParams::apply(FIELD_MANAGER);
    api.patch(
        name,
        &params,
        &kube::api::Patch::Apply(&namespace_manifest(name)),
    )
    .await
    .map_err(|e| NamespaceError::Create {
        namespace: name.to_string(),
        reason: cluster::explain(&e),
    })?;
    Ok(())
}

/// `diff --create-namespace`: the namespaces sync would create come first
/// in the plan, and objects the server could not dry-run only because their
/// namespace does not exist yet are shown as created (apply validates them
/// once the namespace exists, as for a Namespace of the set).
fn show_created_namespaces(plan: &mut Plan, desired: &[RenderedObject], created: &[String]) {
    let mut changes: Vec<Change> = created
        .iter()
        .map(|name| deferred(namespace_id(name), namespace_manifest(name), String::new()))
        .collect();
    let (waiting, rejected): (Vec<Rejection>, Vec<Rejection>) = std::mem::take(&mut plan.rejected)
        .into_iter()
        .partition(|r| waits_for_namespace(r, created));
    plan.rejected = rejected;
    for rejection in waiting {
        if let Some(object) = desired.iter().find(|o| o.id == rejection.id) {
            let mut stamped = object.object.clone();
            stamp(&mut stamped, &plan.app, &object.digest);
            changes.push(deferred(object.id.clone(), stamped, object.digest.clone()));
        }
    }
    changes.append(&mut plan.changes);
    plan.changes = changes;
}

fn namespace_id(name: &str) -> ObjectId {
    ObjectId {
        group: String::new(),
        version: "v1".into(),
        kind: "Namespace".into(),
        namespace: None,
        name: name.to_string(),
    }
}

/// A change planned without a dry-run (its namespace does not exist yet).
fn deferred(id: ObjectId, desired: serde_json::Value, digest: String) -> Change {
    Change {
        id,
        action: Action::Deferred,
        desired,
        digest,
        live: None,
        dry_run: None,
        conflicts: Vec::new(),
        kind: None,
        ignored: Vec::new(),
    }
}

/// Whether the server refused `rejection` only because its namespace, one
/// of `created`, does not exist (yet).
fn waits_for_namespace(rejection: &Rejection, created: &[String]) -> bool {
    rejection.id.namespace.as_ref().is_some_and(|namespace| {
        created.contains(namespace)
            && rejection
                .message
                .contains(&format!("namespaces \"{namespace}\" not found"))
    })
}

fn list_rejections(rejections: &[Rejection]) -> String {
    rejections
        .iter()
        .map(|r| format!("  {} ({}): {}", display_name(&r.id), r.origin, r.message))
        .collect::<Vec<_>>()
        .join("\n")
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

/// The fields `ignoreDifferences` leaves out: neither diffed nor applied.
fn print_ignored(
    desired: &engine::Desired,
    plan: &Plan,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let by_pointer = desired.ignored.iter().map(|i| (&i.id, &i.pointer));
    let by_manager = plan
        .changes
        .iter()
        .flat_map(|c| c.ignored.iter().map(move |p| (&c.id, p)));
    for (id, pointer) in by_pointer.chain(by_manager) {
        writeln!(
            out,
            "~ {}: {pointer} ignored (spec.ignoreDifferences)",
            display_name(id)
        )?;
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn needed(name: &str, records: bool, exists: bool, in_set: bool) -> NeededNamespace {
        NeededNamespace {
            name: name.into(),
            records,
            exists,
            in_set,
        }
    }

    #[test]
    fn a_missing_records_namespace_is_an_error_unless_it_may_be_created() {
        let missing = [needed("team-a", true, false, false)];
        let error = namespaces_to_create(&missing, false).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("namespace team-a does not exist, and it holds the application's"),
            "{error}"
        );
        assert!(error.to_string().contains("--create-namespace"), "{error}");
        assert_eq!(
            namespaces_to_create(&missing, true).unwrap(),
            vec!["team-a".to_string()]
        );
    }

    #[test]
    fn namespaces_that_exist_or_come_with_the_set_are_not_created() {
        let namespaces = [
            needed("records", true, true, false),
            needed("destination", false, false, true),
        ];
        assert!(namespaces_to_create(&namespaces, false).unwrap().is_empty());
        assert!(namespaces_to_create(&namespaces, true).unwrap().is_empty());
        // A missing destination alone is the server's to reject, unless created.
        let destination = [
            needed("records", true, true, false),
            needed("web", false, false, false),
        ];
        assert!(
            namespaces_to_create(&destination, false)
                .unwrap()
                .is_empty()
        );
        assert_eq!(namespaces_to_create(&destination, true).unwrap(), ["web"]);
    }

    #[test]
    fn only_a_refusal_for_the_missing_namespace_waits_for_it() {
        let id = |namespace: &str| ObjectId {
            group: String::new(),
            version: "v1".into(),
            kind: "ConfigMap".into(),
            namespace: Some(namespace.into()),
            name: "a".into(),
        };
        let rejection = |namespace: &str, message: &str| Rejection {
            id: id(namespace),
            origin: "a.yaml".into(),
            message: message.into(),
        };
        let created = ["new".to_string()];
        let not_found = "namespaces \"new\" not found (NotFound, 404)";
        assert!(waits_for_namespace(&rejection("new", not_found), &created));
        assert!(!waits_for_namespace(
            &rejection("new", "ConfigMap.data: invalid value"),
            &created
        ));
        assert!(!waits_for_namespace(&rejection("old", not_found), &created));
    }
}
