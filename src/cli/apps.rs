//! Verbs on Applications the controller runs: `windlass get`, `reconcile`,
//! `suspend` and `resume`. They talk to the API server only; the controller
//! does the work.

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use kube::ResourceExt;
use kube::api::{Api, ListParams, Patch, PatchParams};

use crate::cluster;
use crate::controller::windows::{NextOpening, WindowState, Windows};
use crate::spec::condition::READY;
use crate::spec::{Application, IGNORE_WINDOWS_ANNOTATION, REQUESTED_AT_ANNOTATION};

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
    /// How long to wait for the controller's result (a Go duration, or seconds).
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = super::args::parse_duration_flag)]
    pub timeout: Duration,
    /// Sync even while a sync window (`spec.sync.windows`) is closed; for
    /// this request only.
    #[arg(long)]
    pub ignore_windows: bool,
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
            "WINDOW",
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
            window_column(app, now),
            message.replace('\n', " "),
            age,
        ]);
    }
    let columns = rows[0].len();
    let skip = usize::from(!args.all_namespaces);
    let widths: Vec<usize> = (0..columns)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    for row in &rows {
        let cells: Vec<String> = (skip..columns)
            .map(|c| {
                if c == columns - 1 {
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

/// The WINDOW column: whether the sync windows let the controller sync
/// now, read from the spec with the controller's own rules.
fn window_column(app: &Application, now: k8s_openapi::jiff::Timestamp) -> String {
    let windows = match Windows::parse(&app.spec.sync.windows) {
        Ok(windows) => windows,
        Err(_) => return "invalid".to_string(),
    };
    match windows.state_at(now) {
        WindowState::Open => "open".to_string(),
        WindowState::Closed(closed) => match &closed.next_opening {
            NextOpening::At(_) => format!("closed until {}", closed.next_opening.time()),
            NextOpening::NotFoundBefore(_) => {
                format!("closed, no opening before {}", closed.next_opening.time())
            }
        },
    }
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
    // The override names the request it belongs to; without it, any older
    // one goes (null removes it).
    let ignore_windows = args.ignore_windows.then(|| requested.clone());
    let patch = serde_json::json!({
        "metadata": { "annotations": {
            REQUESTED_AT_ANNOTATION: requested,
            IGNORE_WINDOWS_ANNOTATION: ignore_windows,
        } }
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

    let deadline = Instant::now() + args.timeout;
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
                args.timeout.as_secs()
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

    #[test]
    fn the_window_column_says_open_closed_until_or_invalid() {
        let app = |windows: serde_json::Value| -> crate::spec::Application {
            serde_json::from_value(serde_json::json!({
                "apiVersion": "windlass.dev/v1alpha1", "kind": "Application",
                "metadata": {"name": "web", "namespace": "a"},
                "spec": {"source": {"repoURL": "file:///r"}, "sync": {"windows": windows}}
            }))
            .unwrap()
        };
        let saturday = "2026-12-05T12:00:00Z".parse().unwrap();
        let weekend = serde_json::json!([{"kind": "deny", "schedule": "0 18 * * 5",
            "duration": "62h", "timeZone": "Europe/Berlin"}]);
        assert_eq!(
            super::window_column(&app(weekend), saturday),
            "closed until 2026-12-07T08:00:00+01:00"
        );
        let monday = "2026-12-07T12:00:00Z".parse().unwrap();
        let weekend = serde_json::json!([{"kind": "deny", "schedule": "0 18 * * 5",
            "duration": "62h", "timeZone": "Europe/Berlin"}]);
        assert_eq!(super::window_column(&app(weekend), monday), "open");
        assert_eq!(
            super::window_column(&app(serde_json::json!([])), monday),
            "open"
        );
        let never_ends = serde_json::json!([{"kind": "deny", "schedule": "* * * * *",
            "duration": "1m"}]);
        assert!(
            super::window_column(&app(never_ends), monday)
                .starts_with("closed, no opening before 2026-12-"),
        );
        let bad = serde_json::json!([{"kind": "deny", "schedule": "0 18 * * 5",
            "duration": "62h", "timeZone": "Mars/Olympus"}]);
        assert_eq!(super::window_column(&app(bad), monday), "invalid");
    }
}
