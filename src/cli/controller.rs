//! `windlass controller`: the in-cluster loop (see `crate::controller`). It
//! runs in a cluster with the service account, or anywhere with a kubeconfig.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::cluster::{self, RequestObserver};
use crate::controller::{self, ControllerOptions, metrics::Metrics};
use crate::source::SourceOptions;

use super::args::parse_duration_flag;
use super::{ExitStatus, GlobalArgs};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Applications reconciled at once.
    #[arg(long, value_name = "N", default_value_t = 4)]
    pub concurrency: u16,
    /// Reconcile only while holding the Lease `windlass-controller` (run
    /// several replicas; one reconciles, the others stand by).
    #[arg(long)]
    pub leader_elect: bool,
    /// Namespace of the leader Lease (default: $POD_NAMESPACE, else windlass-system).
    #[arg(long, value_name = "NAMESPACE")]
    pub leader_election_namespace: Option<String>,
    /// How long a leader's Lease lasts without renewal (a Go duration, or
    /// seconds): a standby takes over within this time after the leader dies.
    #[arg(long, value_name = "DURATION", default_value = "15s", value_parser = parse_duration_flag)]
    pub lease_duration: Duration,
    /// Address for /metrics, /healthz and /readyz.
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:8080")]
    pub http_address: SocketAddr,
    /// Only reconcile Applications in this namespace (default: all).
    #[arg(long, value_name = "NAMESPACE")]
    pub watch_namespace: Option<String>,
    /// Git mirror cache directory (must be writable).
    #[arg(long, value_name = "DIR", env = "WINDLASS_GIT_CACHE")]
    pub cache_dir: Option<std::path::PathBuf>,
    /// Longest a git network operation may take (a Go duration, or seconds).
    #[arg(long, value_name = "DURATION", default_value = "120s", value_parser = parse_duration_flag)]
    pub git_timeout: Duration,
    /// Re-read API discovery before a render when it is older than this (a
    /// Go duration, or seconds), so templates' `capabilities` see CRDs
    /// installed since.
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = parse_duration_flag)]
    pub discovery_refresh: Duration,

    /// Serve webhook receivers at POST /hooks/<provider> (github, gitlab,
    /// gitea, bitbucket-server, generic) on --http-address, verifying each
    /// delivery with the shared secret in this file.
    #[arg(long, value_name = "PATH", env = "WINDLASS_WEBHOOK_SECRET_FILE")]
    pub webhook_secret_file: Option<std::path::PathBuf>,

    /// The largest webhook body accepted (bytes); larger ones get 413.
    #[arg(long, value_name = "BYTES", default_value_t = 1024 * 1024)]
    pub webhook_body_limit: usize,

    #[command(flatten)]
    pub renderers: super::args::RenderToolArgs,
}

pub async fn run(global: &GlobalArgs, args: &Args) -> anyhow::Result<ExitStatus> {
    let metrics = Arc::new(Metrics::default());
    let observed = metrics.clone();
    let mut cluster_options = global.cluster_options();
    cluster_options.observer = Some(RequestObserver(Arc::new(move |method, dry_run| {
        observed.count_request(method.as_str(), dry_run)
    })));
    let connection = cluster::connect(&cluster_options).await?;
    let mut source = SourceOptions::new(
        args.cache_dir
            .clone()
            .unwrap_or_else(SourceOptions::default_cache_dir),
    );
    source.timeout = args.git_timeout;
    let options = ControllerOptions {
        concurrency: args.concurrency,
        leader_elect: args.leader_elect,
        leader_namespace: args
            .leader_election_namespace
            .clone()
            .or_else(|| {
                std::env::var("POD_NAMESPACE")
                    .ok()
                    .filter(|n| !n.is_empty())
            })
            .unwrap_or_else(|| "windlass-system".into()),
        lease_duration: args.lease_duration,
        http_address: args.http_address,
        watch_namespace: args.watch_namespace.clone(),
        source,
        identity: identity(),
        discovery_refresh: args.discovery_refresh,
        webhook_secret_file: args.webhook_secret_file.clone(),
        webhook_body_limit: args.webhook_body_limit,
        tools: std::sync::Arc::new(args.renderers.tools()),
    };
    controller::run(connection.client, metrics, options).await?;
    Ok(ExitStatus::Success)
}

/// `controller:<pod>`, or `controller:<host>:<pid>` outside a cluster.
fn identity() -> String {
    if let Ok(pod) = std::env::var("POD_NAME")
        && !pod.is_empty()
    {
        return format!("controller:{pod}");
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown".into());
    format!("controller:{host}:{}", std::process::id())
}
