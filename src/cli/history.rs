//! `windlass history`, `windlass rollback` and `windlass uninstall`: the
//! revision records an application's syncs wrote, and going back to one.

use std::io::Write;

use anyhow::bail;
use serde_json::Value;

use super::args::{LockArgs, WaitArgs};
use super::sync::{report_sync, session};
use super::{ExitStatus, GlobalArgs};
use crate::history::RevisionStore;
use crate::history::record::{RecordSource, RevisionRecord};
use crate::identity::AppIdentity;
use crate::render::object::mask_secret_manifest;
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
    #[command(flatten)]
    wait: WaitArgs,
    /// Also prune Namespaces, CRDs and PersistentVolumeClaims.
    #[arg(long)]
    prune_dangerous: bool,
    /// Revision records to keep (the live and the last successful one are
    /// always kept).
    #[arg(long, value_name = "N", default_value_t = 10)]
    history_limit: u32,
    #[command(flatten)]
    lock: LockArgs,
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
    #[command(flatten)]
    lock: LockArgs,
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
                    // Written as text: a closed pipe is then an io::Error, not an error.
                    writeln!(out, "{}", serde_json::to_string_pretty(&value)?)?;
                }
                _ => write!(out, "{}", crate::render::to_yaml(&value))?,
            }
        }
    }
    Ok(ExitStatus::Success)
}

fn print_table(records: &[RevisionRecord], out: &mut impl Write) -> anyhow::Result<()> {
    out.write_all(history_table(records).as_bytes())?;
    Ok(())
}

/// The widest SOURCE column: a longer source loses its middle to `…`, so
/// the reference's start and the path's end stay readable.
const MAX_SOURCE_WIDTH: usize = 48;

/// The `windlass history` table, newest revision last, like `helm history`.
/// Columns grow with their content, so no cell runs into the next.
fn history_table(records: &[RevisionRecord]) -> String {
    let mut rows = vec![
        [
            "REVISION",
            "UPDATED",
            "STATUS",
            "COMMIT",
            "SOURCE",
            "DESCRIPTION",
        ]
        .map(String::from),
    ];
    for record in records.iter().rev() {
        rows.push(history_row(record));
    }
    format_columns(&rows, [10, 22, 12, 9, 26, 0])
}

fn history_row(record: &RevisionRecord) -> [String; 6] {
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
    [
        record.revision.to_string(),
        updated,
        record.status.as_str().to_string(),
        commit,
        shorten_middle(&source, MAX_SOURCE_WIDTH),
        description.replace('\n', " "),
    ]
}

/// `text` if it has at most `max` characters, else its start and end
/// joined by `…`, `max` characters in all.
fn shorten_middle(text: &str, max: usize) -> String {
    let chars: Vec<char> = text.chars().collect();
    if chars.len() <= max {
        return text.to_string();
    }
    let kept = max - 1;
    let head = kept / 2;
    let tail = kept - head;
    let mut shortened: String = chars[..head].iter().collect();
    shortened.push('…');
    shortened.extend(&chars[chars.len() - tail..]);
    shortened
}

/// Left-aligned columns: each at least as wide as its `minimum` and wider
/// than its widest cell, so one space at least separates neighbours; the
/// last column is not padded.
fn format_columns<const N: usize>(rows: &[[String; N]], minimum: [usize; N]) -> String {
    let mut widths = minimum;
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count() + 1);
        }
    }
    let mut text = String::new();
    for row in rows {
        for (column, cell) in row.iter().enumerate() {
            text.push_str(cell);
            if column + 1 < N {
                let padding = widths[column] - cell.chars().count();
                text.extend(std::iter::repeat_n(' ', padding));
            }
        }
        text.push('\n');
    }
    text
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
            wait: !args.wait.no_wait,
            timeout: args.wait.timeout,
            ..ApplyOptions::default()
        },
        history_limit: args.history_limit,
        lock: LockOptions {
            wait: args.lock.lock_timeout,
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
                wait: args.lock.lock_timeout,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn record(revision: u64, source: Value, description: &str) -> RevisionRecord {
        serde_json::from_value(serde_json::json!({
            "revision": revision,
            "app": "team-a.web",
            "status": "deployed",
            "startedAt": "2026-12-03T07:00:00Z",
            "description": description,
            "triggeredBy": "cli:test",
            "source": source,
            "valuesDigest": "0",
            "manifestDigest": "0",
            "manifests": [],
            "inventory": [],
        }))
        .expect("a valid record")
    }

    /// The character offset where DESCRIPTION's cell starts on each line.
    fn description_columns(table: &str, descriptions: &[&str]) -> Vec<usize> {
        table
            .lines()
            .zip(descriptions)
            .map(|(line, description)| {
                let byte = line.rfind(description).expect("the description is shown");
                line[..byte].chars().count()
            })
            .collect()
    }

    #[test]
    fn a_long_source_does_not_run_into_the_description() {
        let long_ref = "refs/heads/feature/a-very-long-branch-name-that-goes-on-and-on";
        let records = vec![
            record(
                1,
                serde_json::json!({ "type": "directory", "path": "/tmp/x" }),
                "sync",
            ),
            record(
                2,
                serde_json::json!({
                    "type": "git",
                    "repo": "https://git.example.com/deploy.git",
                    "reference": long_ref,
                    "commit": "0123456789abcdef0123456789abcdef01234567",
                    "path": "apps/web/overlays/production",
                }),
                "upgrade",
            ),
        ];
        let table = history_table(&records);
        let columns = description_columns(&table, &["DESCRIPTION", "upgrade", "sync"]);
        assert!(
            columns.iter().all(|c| *c == columns[0]),
            "DESCRIPTION is not one column:\n{table}"
        );
        for line in table.lines() {
            let before: String = line.chars().take(columns[0]).collect();
            assert!(before.ends_with(' '), "cells run together:\n{table}");
        }
        // The source lost its middle, not its ends; the commit is whole.
        let git_line = table.lines().nth(1).unwrap();
        assert!(git_line.contains(" 0123456 "), "{table}");
        assert!(git_line.contains("feature/a-very-long"), "{table}");
        assert!(git_line.contains('…'), "{table}");
        assert!(git_line.contains("overlays/production "), "{table}");
    }

    #[test]
    fn short_sources_keep_the_familiar_layout() {
        let records = vec![record(
            1,
            serde_json::json!({ "type": "directory", "path": "/tmp/x" }),
            "sync",
        )];
        assert_eq!(
            history_table(&records),
            "REVISION  UPDATED               STATUS      COMMIT   SOURCE                    DESCRIPTION\n\
             1         2026-12-03 07:00:00   deployed    -        dir:/tmp/x                sync\n"
        );
    }

    #[test]
    fn shorten_middle_keeps_both_ends_and_the_width() {
        assert_eq!(shorten_middle("main@apps/web", 48), "main@apps/web");
        let shortened = shorten_middle("abcdefghij", 5);
        assert_eq!(shortened, "ab…ij");
        assert_eq!(shortened.chars().count(), 5);
    }
}
