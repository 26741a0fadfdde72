//! `windlass history`, `windlass rollback` and `windlass uninstall`: the
//! revision records an application's syncs wrote, and going back to one.

use std::io::Write;

use anyhow::bail;
use serde_json::Value;

use super::sync::{report_sync, session};
use super::{ExitStatus, GlobalArgs};
use crate::history::RevisionStore;
use crate::history::record::{RecordSource, RevisionRecord};
use crate::identity::AppIdentity;
use crate::render::object::mask_secret_manifest;
use crate::spec::parse_duration;
use crate::sync::apply::ApplyOptions;
use crate::sync::engine::{self, Operation, SyncOptions, SyncOutcome};
use crate::sync::lock::LockOptions;

#[derive(Debug, clap::Args)]
pub struct HistoryArgs {
    /// The application's name (records live in -n NAMESPACE).
    name: String,
    /// Only this revision.
    #[arg(long, value_name = "N")]
    revision: Option<u64>,
    /// Output: a table, or the full records.
    #[arg(short, long, value_enum, default_value = "table")]
    output: HistoryFormat,
    /// Include the applied manifests (with --revision and no -o: print them
    /// as YAML documents).
    #[arg(long)]
    manifests: bool,
    /// Print Secret values instead of masking them.
    #[arg(long)]
    show_secrets: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum HistoryFormat {
    Table,
    Json,
    Yaml,
}

#[derive(Debug, clap::Args)]
pub struct RollbackArgs {
    /// The application's name.
    name: String,
    /// The revision to return to (default: the previous successful one).
    revision: Option<u64>,
    /// Do not wait for health.
    #[arg(long)]
    no_wait: bool,
    /// How long to wait for health (Go duration).
    #[arg(long, value_name = "DURATION", default_value = "5m")]
    timeout: String,
    /// Also prune Namespaces, CRDs and PersistentVolumeClaims.
    #[arg(long)]
    prune_dangerous: bool,
    #[arg(long, value_name = "N", default_value_t = 10)]
    history_limit: u32,
    /// How long to wait for another writer's lock (Go duration).
    #[arg(long, value_name = "DURATION", default_value = "60s")]
    lock_timeout: String,
}

#[derive(Debug, clap::Args)]
pub struct UninstallArgs {
    /// The application's name.
    name: String,
    /// Keep the revision records.
    #[arg(long)]
    keep_history: bool,
    /// Also delete Namespaces, CRDs and PersistentVolumeClaims.
    #[arg(long)]
    prune_dangerous: bool,
    /// How long to wait for another writer's lock (Go duration).
    #[arg(long, value_name = "DURATION", default_value = "60s")]
    lock_timeout: String,
}

pub async fn history(
    global: &GlobalArgs,
    args: &HistoryArgs,
    out: &mut impl Write,
) -> anyhow::Result<ExitStatus> {
    let session = session(global).await?;
    let app = AppIdentity::new(session.namespace.clone(), args.name.clone());
    let store = RevisionStore::new(&session.client, &app);
    let numbers: Vec<u64> = match args.revision {
        Some(number) => vec![number],
        None => store
            .history()
            .await?
            .headers()
            .iter()
            .map(|h| h.number)
            .collect(),
    };
    if numbers.is_empty() {
        bail!(
            "application {} has no revisions in namespace {} (nothing was synced yet, or it was \
             uninstalled)",
            app.name,
            app.namespace
        );
    }
    let mut records = Vec::with_capacity(numbers.len());
    for number in numbers {
        records.push(store.load(number).await?);
    }
    match args.output {
        HistoryFormat::Table if args.manifests && args.revision.is_some() => {
            for manifest in &records[0].manifests {
                let shown = if args.show_secrets {
                    manifest.clone()
                } else {
                    mask_secret_manifest(manifest)
                };
                write!(out, "---\n{}", crate::render::to_yaml(&shown))?;
            }
        }
        HistoryFormat::Table => print_table(&records, out)?,
        format => {
            let values: Vec<Value> = records
                .iter()
                .map(|r| record_json(r, args.manifests, args.show_secrets))
                .collect();
            let value = if args.revision.is_some() {
                values[0].clone()
            } else {
                Value::Array(values)
            };
            match format {
                HistoryFormat::Json => {
                    serde_json::to_writer_pretty(&mut *out, &value)?;
                    writeln!(out)?;
                }
                _ => write!(out, "{}", crate::render::to_yaml(&value))?,
            }
        }
    }
    Ok(ExitStatus::Success)
}

fn print_table(records: &[RevisionRecord], out: &mut impl Write) -> anyhow::Result<()> {
    writeln!(
        out,
        "{:<10}{:<22}{:<12}{:<9}{:<26}DESCRIPTION",
        "REVISION", "UPDATED", "STATUS", "COMMIT", "SOURCE"
    )?;
    for record in records.iter().rev() {
        let updated = record
            .finished_at
            .as_deref()
            .unwrap_or(&record.started_at)
            .replace('T', " ")
            .trim_end_matches('Z')
            .to_string();
        let (commit, source) = match &record.source {
            RecordSource::Git {
                reference,
                commit,
                path,
                ..
            } => {
                let short = reference
                    .strip_prefix("refs/heads/")
                    .or_else(|| reference.strip_prefix("refs/tags/"))
                    .unwrap_or(reference);
                let path = if path.is_empty() { "/" } else { path };
                (commit.chars().take(7).collect(), format!("{short}@{path}"))
            }
            RecordSource::Directory { path } => ("-".to_string(), format!("dir:{path}")),
        };
        let mut description = record.description.clone();
        if let Some(error) = record.outcome.as_ref().and_then(|o| o.error.as_ref()) {
            description.push_str(&format!(": {error}"));
        }
        if record.quarantined {
            description.push_str(" (rolled back; not retried until a new commit)");
        }
        writeln!(
            out,
            "{:<10}{:<22}{:<12}{:<9}{:<26}{}",
            record.revision,
            updated,
            record.status.as_str(),
            commit,
            source,
            description.replace('\n', " ")
        )?;
    }
    Ok(())
}

fn record_json(record: &RevisionRecord, manifests: bool, show_secrets: bool) -> Value {
    let mut value = serde_json::to_value(record).expect("records serialise");
    if manifests {
        if !show_secrets {
            value["manifests"] =
                Value::Array(record.manifests.iter().map(mask_secret_manifest).collect());
        }
    } else if let Some(map) = value.as_object_mut() {
        map.remove("manifests");
    }
    value
}

pub async fn rollback(
    global: &GlobalArgs,
    args: &RollbackArgs,
    out: &mut impl Write,
) -> anyhow::Result<ExitStatus> {
    let session = session(global).await?;
    let app = AppIdentity::new(session.namespace.clone(), args.name.clone());
    let options = SyncOptions {
        apply: ApplyOptions {
            wait: !args.no_wait,
            timeout: parse_duration(&args.timeout)?,
            ..ApplyOptions::default()
        },
        history_limit: args.history_limit,
        lock: LockOptions {
            wait: parse_duration(&args.lock_timeout)?,
            ..LockOptions::default()
        },
        ..SyncOptions::new(Operation::Sync, engine::cli_trigger())
    };
    let mut options = options;
    options.plan.prune.dangerous = args.prune_dangerous;
    let progress = |line: &str| {
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "{line}");
    };
    let result = engine::rollback(
        &session.client,
        &session.kinds,
        &app,
        args.revision,
        &options,
        &progress,
    )
    .await?;
    let target = result.to;
    match result.outcome {
        SyncOutcome::Unchanged { .. } => {
            writeln!(out, "nothing to do: live already equals revision {target}")?;
            Ok(ExitStatus::Success)
        }
        SyncOutcome::Failed {
            revision, failure, ..
        } => bail!(
            "rollback of {} to revision {target} (recorded as revision {revision}) failed: \
             {failure}",
            app.full(),
        ),
        outcome => report_sync(&app, outcome, out),
    }
}

pub async fn uninstall(
    global: &GlobalArgs,
    args: &UninstallArgs,
    out: &mut impl Write,
) -> anyhow::Result<ExitStatus> {
    let session = session(global).await?;
    let app = AppIdentity::new(session.namespace.clone(), args.name.clone());
    let store = RevisionStore::new(&session.client, &app);
    if store.history().await?.is_empty() {
        bail!(
            "application {} has no revisions in namespace {}: nothing to uninstall",
            app.name,
            app.namespace
        );
    }
    let progress = |line: &str| {
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "{line}");
    };
    let report = engine::uninstall(
        &session.client,
        &session.kinds,
        &app,
        args.prune_dangerous,
        args.keep_history,
        &SyncOptions {
            lock: LockOptions {
                wait: parse_duration(&args.lock_timeout)?,
                ..LockOptions::default()
            },
            ..SyncOptions::new(Operation::Uninstall, engine::cli_trigger())
        },
        &progress,
    )
    .await?;
    writeln!(
        out,
        "uninstalled {}: {} deleted, {} kept, {} revision records deleted",
        app.full(),
        report.deleted.len(),
        report.kept.len(),
        report.records_deleted
    )?;
    Ok(ExitStatus::Success)
}
