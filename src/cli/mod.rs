//! The command-line verbs.
//!
//! ```text
//!   argv ──clap──► Cli { global flags, Command } ──run()──► ExitStatus
//! ```
//!
//! Flags are defined here and in `args.rs` (the groups several verbs share,
//! declared once); each verb lives in its own file and receives the
//! already-parsed flags. Verbs write their results to stdout and return an
//! [`ExitStatus`]; errors travel up to `main`, which prints the whole cause
//! chain.
//!
//! `-n`, `-v` and `--log-format` are global. `--kubeconfig` and `--context`
//! belong to the verbs that connect to a cluster ([`Connected`]); given
//! before the verb (`windlass --kubeconfig K diff ...`, as with kubectl) they
//! count too, and the verb's own win.

mod apps;
mod args;
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

use clap::{Parser, Subcommand};

pub use args::ClusterArgs;

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

/// Flags given before the verb; `-n`, `-v` and `--log-format` also after it.
#[derive(Debug, clap::Args)]
pub struct GlobalArgs {
    /// The cluster, for verbs that connect to one (they also take
    /// --kubeconfig and --context after the verb).
    #[command(flatten)]
    pub cluster: ClusterArgs,

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
        self.cluster.cluster_options()
    }

    /// These flags with the verb's cluster flags, which win over the ones
    /// given before the verb.
    fn connected(&self, verb: &ClusterArgs) -> GlobalArgs {
        GlobalArgs {
            cluster: verb.or(&self.cluster),
            namespace: self.namespace.clone(),
            verbose: self.verbose,
            log_format: self.log_format,
        }
    }
}

/// A verb that connects to a cluster: its own flags and the cluster group.
#[derive(Debug, clap::Args)]
pub struct Connected<T: clap::Args> {
    #[command(flatten)]
    pub verb: T,
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check that the cluster is reachable and fit for windlass: version,
    /// credentials and server-side apply (dry-run, nothing is written).
    Check(Connected<check::Args>),
    /// Render a directory of manifests, a chart or one manifest file and
    /// print the objects (no cluster needed).
    Render(render::Args),
    /// Look at a git source: resolve a ref, list refs, print a file.
    Source(source::Args),
    /// Show what sync would change (exit 0: nothing, 1: changes, 2: error).
    Diff(Connected<sync::DiffArgs>),
    /// Apply the desired state: create, update, prune, wait for health,
    /// record a revision.
    Sync(Connected<sync::SyncArgs>),
    /// List an application's revisions (like helm history).
    History(Connected<history::HistoryArgs>),
    /// Re-apply a stored revision exactly (no render, no git) and record it.
    Rollback(Connected<history::RollbackArgs>),
    /// Delete an application's objects and its history.
    Uninstall(Connected<history::UninstallArgs>),
    /// Print the CustomResourceDefinitions: Application and Preview (YAML).
    Crd,
    /// Run the reconcile loop over Application resources (in a cluster, or
    /// outside one with a kubeconfig).
    Controller(Connected<controller::Args>),
    /// List Applications: NAME, READY, REVISION, COMMIT, MESSAGE, AGE.
    Get(Connected<apps::GetArgs>),
    /// Ask the controller to reconcile an Application now, wait, print the result.
    Reconcile(Connected<apps::ReconcileArgs>),
    /// Stop syncing an Application (its status and objects stay).
    Suspend(Connected<apps::NameArgs>),
    /// Resume syncing a suspended Application.
    Resume(Connected<apps::NameArgs>),
    /// List pull-request previews: PREVIEW, NUMBER, COMMIT, NAMESPACE, READY, URL.
    Previews(Connected<previews::PreviewsArgs>),
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
    let global = &cli.global;
    match &cli.command {
        Command::Check(c) => check::run(&global.connected(&c.cluster), &c.verb, &mut out).await,
        Command::Render(args) => render::run(global, args, &mut out),
        Command::Source(args) => source::run(args, &mut out).await,
        Command::Diff(c) => sync::diff(&global.connected(&c.cluster), &c.verb, &mut out).await,
        Command::Sync(c) => sync::sync(&global.connected(&c.cluster), &c.verb, &mut out).await,
        Command::History(c) => {
            history::history(&global.connected(&c.cluster), &c.verb, &mut out).await
        }
        Command::Rollback(c) => {
            history::rollback(&global.connected(&c.cluster), &c.verb, &mut out).await
        }
        Command::Uninstall(c) => {
            history::uninstall(&global.connected(&c.cluster), &c.verb, &mut out).await
        }
        Command::Crd => crd::run(&mut out),
        Command::Controller(c) => controller::run(&global.connected(&c.cluster), &c.verb).await,
        Command::Get(c) => apps::get(&global.connected(&c.cluster), &c.verb, &mut out).await,
        Command::Reconcile(c) => {
            apps::reconcile(&global.connected(&c.cluster), &c.verb, &mut out).await
        }
        Command::Suspend(c) => {
            apps::set_suspend(&global.connected(&c.cluster), &c.verb, true, &mut out).await
        }
        Command::Resume(c) => {
            apps::set_suspend(&global.connected(&c.cluster), &c.verb, false, &mut out).await
        }
        Command::Previews(c) => {
            previews::run(&global.connected(&c.cluster), &c.verb, &mut out).await
        }
    }
}
