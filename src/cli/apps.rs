//! Verbs on Applications the controller runs: `windlass get`, `reconcile`,
//! `suspend` and `resume`. They talk to the API server only; the controller
//! does the work.

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use kube::ResourceExt;
use kube::api::{Api, ListParams, Patch, PatchParams};

use crate::cluster;
use crate::spec::condition::READY;
use crate::spec::{Application, REQUESTED_AT_ANNOTATION};

use super::{ExitStatus, GlobalArgs};

#[derive(Debug, clap::Args)]
pub struct GetArgs {
    /// List Applications in every namespace.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
}

#[derive(Debug, clap::Args)]
pub struct ReconcileArgs {
    /// The Application.
    pub name: String,
    /// How long to wait for the controller's result, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    pub timeout: u64,
}

#[derive(Debug, clap::Args)]
pub struct NameArgs {
    /// The Application.
    pub name: String,
}

async fn api(global: &GlobalArgs, all: bool) -> anyhow::Result<(Api<Application>, String)> {
    let connection = cluster::connect(&global.cluster_options()).await?;
    let namespace = global
        .namespace
        .clone()
        .unwrap_or_else(|| connection.default_namespace.clone());
    let api = if all {
        Api::all(connection.client)
    } else {
        Api::namespaced(connection.client, &namespace)
    };
    Ok((api, namespace))
}

fn short(commit: &str) -> &str {
    &commit[..commit.len().min(7)]
}

pub async fn get(
    global: &GlobalArgs,
    args: &GetArgs,
    out: &mut impl Write,
) -> anyhow::Result<ExitStatus> {
    let (api, namespace) = api(global, args.all_namespaces).await?;
    let list = api.list(&ListParams::default()).await.map_err(|e| {
        anyhow::anyhow!(
            "listing Applications: {} (is the CRD installed? windlass crd | kubectl apply -f -)",
            cluster::explain(&e)
        )
    })?;
    if list.items.is_empty() {
        if args.all_namespaces {
            writeln!(out, "No Applications found.")?;
        } else {
            writeln!(out, "No Applications found in namespace {namespace}.")?;
        }
        return Ok(ExitStatus::Success);
    }
    let now = k8s_openapi::jiff::Timestamp::now();
    let mut rows = vec![
        [
            "NAMESPACE",
            "NAME",
            "READY",
            "REVISION",
            "COMMIT",
            "MESSAGE",
            "AGE",
        ]
        .map(String::from),
    ];
    for app in &list.items {
        let status = app.status.clone().unwrap_or_default();
        let ready = app.condition(READY);
        let mut message = ready.map(|c| c.message.clone()).unwrap_or_default();
        if app.spec.suspend {
            message = format!("suspended; {message}");
        }
        let age = app
            .metadata
            .creation_timestamp
            .as_ref()
            .map(|t| human_age(now.duration_since(t.0).as_secs()))
            .unwrap_or_default();
        rows.push([
            app.namespace().unwrap_or_default(),
            app.name_any(),
            ready.map(|c| c.status.clone()).unwrap_or("Unknown".into()),
            status
                .last_applied_revision
                .map(|r| r.to_string())
                .unwrap_or("-".into()),
            status
                .last_applied_commit
                .as_deref()
                .map(short)
                .unwrap_or("-")
                .to_string(),
            message.replace('\n', " "),
            age,
        ]);
    }
    let skip = usize::from(!args.all_namespaces);
    let widths: Vec<usize> = (0..7)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    for row in &rows {
        let cells: Vec<String> = (skip..7)
            .map(|c| {
                if c == 6 {
                    row[c].clone()
                } else {
                    format!("{:<width$}", row[c], width = widths[c])
                }
            })
            .collect();
        writeln!(out, "{}", cells.join("   ").trim_end())?;
    }
    Ok(ExitStatus::Success)
}

/// `45s`, `3m`, `5h`, `2d`, like kubectl.
fn human_age(seconds: i64) -> String {
    match seconds {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

pub async fn reconcile(
    global: &GlobalArgs,
    args: &ReconcileArgs,
    out: &mut impl Write,
) -> anyhow::Result<ExitStatus> {
    let (api, namespace) = api(global, false).await?;
    let app = api.get(&args.name).await.map_err(|e| {
        anyhow::anyhow!(
            "Application {namespace}/{}: {}",
            args.name,
            cluster::explain(&e)
        )
    })?;
    if app.spec.suspend {
        bail!(
            "Application {namespace}/{} is suspended: run `windlass resume {}` first",
            args.name,
            args.name
        );
    }
    let requested = k8s_openapi::jiff::Timestamp::now().to_string();
    let patch = serde_json::json!({
        "metadata": { "annotations": { REQUESTED_AT_ANNOTATION: requested } }
    });
    api.patch(&args.name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(|e| anyhow::anyhow!("requesting a reconcile: {}", cluster::explain(&e)))?;
    writeln!(
        out,
        "asked the controller to reconcile {namespace}/{} now",
        args.name
    )?;
    out.flush()?;

    let deadline = Instant::now() + Duration::from_secs(args.timeout);
    loop {
        let app = api
            .get(&args.name)
            .await
            .with_context(|| format!("reading Application {namespace}/{}", args.name))?;
        let handled = app
            .status
            .as_ref()
            .and_then(|s| s.last_handled_reconcile_at.as_deref());
        if handled == Some(requested.as_str()) {
            let status = app.status.clone().unwrap_or_default();
            let ready = app.condition(READY);
            let (state, message) = ready
                .map(|c| (c.status.as_str(), c.message.as_str()))
                .unwrap_or(("Unknown", ""));
            writeln!(out, "Ready={state}: {message}")?;
            if let (Some(revision), Some(commit)) =
                (status.last_applied_revision, &status.last_applied_commit)
            {
                writeln!(out, "revision {revision}, commit {}", short(commit))?;
            }
            return Ok(if state == "True" {
                ExitStatus::Success
            } else {
                ExitStatus::Attention
            });
        }
        if Instant::now() >= deadline {
            bail!(
                "the controller did not handle the request within {}s: is `windlass controller` running?",
                args.timeout
            );
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

pub async fn set_suspend(
    global: &GlobalArgs,
    args: &NameArgs,
    suspend: bool,
    out: &mut impl Write,
) -> anyhow::Result<ExitStatus> {
    let (api, namespace) = api(global, false).await?;
    let patch = serde_json::json!({ "spec": { "suspend": suspend } });
    api.patch(&args.name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "Application {namespace}/{}: {}",
                args.name,
                cluster::explain(&e)
            )
        })?;
    let verb = if suspend { "suspended" } else { "resumed" };
    writeln!(out, "Application {namespace}/{} {verb}", args.name)?;
    Ok(ExitStatus::Success)
}

#[cfg(test)]
mod tests {
    #[test]
    fn ages_read_like_kubectl() {
        assert_eq!(super::human_age(45), "45s");
        assert_eq!(super::human_age(600), "10m");
        assert_eq!(super::human_age(3 * 3600), "3h");
        assert_eq!(super::human_age(5 * 86_400), "5d");
    }
}
