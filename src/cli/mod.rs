//! The command-line verbs.
//!
//! ```text
//!   argv ──clap──► Cli { global flags, Command } ──run()──► ExitStatus
//! ```
//!
//! Flags are defined here, in one place; each verb lives in its own file and
//! receives the already-parsed flags. Verbs write their results to stdout and
//! return an [`ExitStatus`]; errors travel up to `main`, which prints the whole
//! cause chain.

mod apps;
mod check;
mod controller;
mod crd;
mod history;
mod previews;
mod render;
mod source;
mod sync;
mod target;

use std::io;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::cluster::ClusterOptions;

/// windlass: GitOps for Kubernetes. Renders manifests from Git, diffs them
/// against the live cluster, applies, prunes and rolls back.
#[derive(Debug, Parser)]
#[command(name = "windlass", version, about, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,

    #[command(subcommand)]
    pub command: Command,
}

/// Flags every verb accepts.
#[derive(Debug, clap::Args)]
pub struct GlobalArgs {
    /// Path to the kubeconfig file (default: $KUBECONFIG, then ~/.kube/config,
    /// then the in-cluster service account).
    #[arg(long, global = true, value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,

    /// The kubeconfig context to use (default: its current context).
    #[arg(long, global = true, value_name = "NAME")]
    pub context: Option<String>,

    /// The namespace to work in (default: the context's namespace, or `default`).
    #[arg(short = 'n', long, global = true, value_name = "NAMESPACE")]
    pub namespace: Option<String>,

    /// More log output on stderr (-v: info, -vv: debug, -vvv: trace).
    /// RUST_LOG overrides it.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Log format on stderr: readable text, or one JSON object per line.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

impl GlobalArgs {
    pub fn cluster_options(&self) -> ClusterOptions {
        ClusterOptions {
            kubeconfig: self.kubeconfig.clone(),
            context: self.context.clone(),
            observer: None,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check that the cluster is reachable and fit for windlass: version,
    /// credentials and server-side apply (dry-run, nothing is written).
    Check(check::Args),
    /// Render a directory of manifests or a chart and print the objects
    /// (no cluster needed).
    Render(render::Args),
    /// Look at a git source: resolve a ref, list refs, print a file.
    Source(source::Args),
    /// Show what sync would change (exit 0: nothing, 1: changes, 2: error).
    Diff(sync::DiffArgs),
    /// Apply the desired state: create, update, prune, wait for health,
    /// record a revision.
    Sync(sync::SyncArgs),
    /// List an application's revisions (like helm history).
    History(history::HistoryArgs),
    /// Re-apply a stored revision exactly (no render, no git) and record it.
    Rollback(history::RollbackArgs),
    /// Delete an application's objects and its history.
    Uninstall(history::UninstallArgs),
    /// Print the CustomResourceDefinitions: Application and Preview (YAML).
    Crd,
    /// Run the reconcile loop over Application resources (in a cluster, or
    /// outside one with a kubeconfig).
    Controller(controller::Args),
    /// List Applications: NAME, READY, REVISION, COMMIT, MESSAGE, AGE.
    Get(apps::GetArgs),
    /// Ask the controller to reconcile an Application now, wait, print the result.
    Reconcile(apps::ReconcileArgs),
    /// Stop syncing an Application (its status and objects stay).
    Suspend(apps::NameArgs),
    /// Resume syncing a suspended Application.
    Resume(apps::NameArgs),
    /// List pull-request previews: PREVIEW, NUMBER, COMMIT, NAMESPACE, READY, URL.
    Previews(previews::PreviewsArgs),
}

/// How a verb ended, as the process exit code says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// Everything worked (and, for `diff`, nothing differs).
    Success = 0,
    /// The verb ran and found something the user must look at (a failed
    /// check, and for `diff`: differences).
    Attention = 1,
}

/// Exit code for errors: the verb could not do its job.
pub const EXIT_ERROR: u8 = 2;

pub async fn run(cli: Cli) -> anyhow::Result<ExitStatus> {
    let mut out = io::stdout().lock();
    match cli.command {
        Command::Check(args) => check::run(&cli.global, &args, &mut out).await,
        Command::Render(args) => render::run(&cli.global, &args, &mut out),
        Command::Source(args) => source::run(&args, &mut out).await,
        Command::Diff(args) => sync::diff(&cli.global, &args, &mut out).await,
        Command::Sync(args) => sync::sync(&cli.global, &args, &mut out).await,
        Command::History(args) => history::history(&cli.global, &args, &mut out).await,
        Command::Rollback(args) => history::rollback(&cli.global, &args, &mut out).await,
        Command::Uninstall(args) => history::uninstall(&cli.global, &args, &mut out).await,
        Command::Crd => crd::run(&mut out),
        Command::Controller(args) => controller::run(&cli.global, &args).await,
        Command::Get(args) => apps::get(&cli.global, &args, &mut out).await,
        Command::Reconcile(args) => apps::reconcile(&cli.global, &args, &mut out).await,
        Command::Suspend(args) => apps::set_suspend(&cli.global, &args, true, &mut out).await,
        Command::Resume(args) => apps::set_suspend(&cli.global, &args, false, &mut out).await,
        Command::Previews(args) => previews::run(&cli.global, &args, &mut out).await,
    }
}
