//! `windlass previews`: the pull-request previews of the Previews in a
//! namespace (or all, `-A`), from their status. Reads the API server only;
//! the controller does the work.
//!
//! ```text
//!   PREVIEW   NUMBER   COMMIT    NAMESPACE   READY   URL
//!   web       7        4f2a9c1   web-pr-7    True    https://pr-7.preview.example.com
//!   web       -        -         -           False   git: repository … cannot reach it
//! ```

use std::io::Write;

use kube::ResourceExt;
use kube::api::{Api, ListParams};

use crate::cluster;
use crate::spec::{Preview, preview_condition};

use super::{ExitStatus, GlobalArgs};

#[derive(Debug, clap::Args)]
pub struct PreviewsArgs {
    /// List Previews in every namespace.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
}

pub async fn run(
    global: &GlobalArgs,
    args: &PreviewsArgs,
    out: &mut impl Write,
) -> anyhow::Result<ExitStatus> {
    let connection = cluster::connect(&global.cluster_options()).await?;
    let namespace = global
        .namespace
        .clone()
        .unwrap_or_else(|| connection.default_namespace.clone());
    let api: Api<Preview> = if args.all_namespaces {
        Api::all(connection.client)
    } else {
        Api::namespaced(connection.client, &namespace)
    };
    let list = api.list(&ListParams::default()).await.map_err(|e| {
        anyhow::anyhow!(
            "listing Previews: {} (is the CRD installed? windlass crd | kubectl apply -f -)",
            cluster::explain(&e)
        )
    })?;
    if list.items.is_empty() {
        if args.all_namespaces {
            writeln!(out, "No Previews found.")?;
        } else {
            writeln!(out, "No Previews found in namespace {namespace}.")?;
        }
        return Ok(ExitStatus::Success);
    }
    write_table(out, &rows(&list.items), args.all_namespaces)?;
    Ok(ExitStatus::Success)
}

const HEADER: [&str; 7] = [
    "NAMESPACE",
    "PREVIEW",
    "NUMBER",
    "COMMIT",
    "NAMESPACE",
    "READY",
    "URL",
];

/// One row per preview; a Preview with none, or whose last pass failed,
/// gets a row saying so.
fn rows(previews: &[Preview]) -> Vec<[String; 7]> {
    let mut rows = Vec::new();
    for preview in previews {
        let status = preview.status.clone().unwrap_or_default();
        let ready = status
            .conditions
            .iter()
            .find(|c| c.type_ == preview_condition::READY);
        let head = [preview.namespace().unwrap_or_default(), preview.name_any()];
        for entry in &status.previews {
            let ready = match &entry.message {
                Some(message) => format!("{} ({})", entry.ready, message.replace('\n', " ")),
                None => entry.ready.clone(),
            };
            rows.push([
                head[0].clone(),
                head[1].clone(),
                entry
                    .number
                    .map(|n| n.to_string())
                    .unwrap_or_else(|| entry.reference.clone()),
                entry.commit.chars().take(7).collect(),
                entry.namespace.clone(),
                ready,
                entry.url.clone().unwrap_or_else(|| "-".into()),
            ]);
        }
        let failing = ready.is_some_and(|c| c.status != "True");
        if status.previews.is_empty() || failing {
            let state = match ready {
                Some(c) if c.status != "True" => format!("{} ({})", c.status, c.message),
                Some(_) => "no matching refs".to_string(),
                None => "Unknown (not reconciled yet)".to_string(),
            };
            rows.push([
                head[0].clone(),
                head[1].clone(),
                "-".into(),
                "-".into(),
                "-".into(),
                state.replace('\n', " "),
                "-".into(),
            ]);
        }
    }
    rows
}

fn write_table(out: &mut impl Write, rows: &[[String; 7]], all: bool) -> std::io::Result<()> {
    let skip = usize::from(!all);
    let mut table = vec![HEADER.map(String::from)];
    table.extend(rows.iter().cloned());
    let widths: Vec<usize> = (0..7)
        .map(|c| {
            table
                .iter()
                .map(|r| r[c].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for row in &table {
        let cells: Vec<String> = (skip..7)
            .map(|c| format!("{:<width$}", row[c], width = widths[c]))
            .collect();
        writeln!(out, "{}", cells.join("   ").trim_end())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_preview_is_a_row_and_a_failing_preview_says_why() {
        let previews: Vec<Preview> = serde_json::from_value(serde_json::json!([
            {
                "apiVersion": "windlass.dev/v1alpha1", "kind": "Preview",
                "metadata": { "name": "web", "namespace": "team-a" },
                "spec": { "source": { "repoURL": "https://x/y.git", "refPattern": "refs/pull/*/head" } },
                "status": {
                    "count": 1,
                    "conditions": [{ "type": "Ready", "status": "True", "reason": "Succeeded",
                                     "message": "1 previews", "lastTransitionTime": "2026-01-01T00:00:00Z" }],
                    "previews": [{ "number": 7, "ref": "refs/pull/7/head",
                                   "commit": "4f2a9c1e4f2a9c1e4f2a9c1e4f2a9c1e4f2a9c1e",
                                   "namespace": "web-pr-7", "application": "web-pr-7",
                                   "ready": "True", "url": "https://pr-7.example.com" }]
                }
            },
            {
                "apiVersion": "windlass.dev/v1alpha1", "kind": "Preview",
                "metadata": { "name": "api", "namespace": "team-a" },
                "spec": { "source": { "repoURL": "https://x/z.git", "refPattern": "refs/pull/*/head" } },
                "status": {
                    "conditions": [{ "type": "Ready", "status": "False", "reason": "GitFailed",
                                     "message": "git: cannot reach it", "lastTransitionTime": "2026-01-01T00:00:00Z" }]
                }
            }
        ]))
        .unwrap();
        let mut out = Vec::new();
        write_table(&mut out, &rows(&previews), false).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(lines[0].starts_with("PREVIEW   NUMBER   COMMIT"), "{text}");
        assert!(
            lines[1].split_whitespace().eq([
                "web",
                "7",
                "4f2a9c1",
                "web-pr-7",
                "True",
                "https://pr-7.example.com"
            ]),
            "{text}"
        );
        assert!(lines[2].contains("False (git: cannot reach it)"), "{text}");
    }
}
