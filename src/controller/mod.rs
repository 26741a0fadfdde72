//! The in-cluster loop: `windlass controller` keeps every `Application`'s
//! objects equal to its Git source, with the engine the CLI uses.
//!
//! ```text
//!   leader Lease ──(held)──► Controller<Application> ──► reconcile (bounded concurrency)
//!   windlass-controller         watch + requeue timers        │ source → render → plan → sync
//!                                                             ▼
//!   HTTP :8080  /metrics  /healthz  /readyz          status · Events · metrics · records
//! ```
//!
//! Every replica serves HTTP; only the Lease holder reconciles. A replica
//! that loses the Lease exits (its Deployment restarts it as a standby), so
//! two writers never overlap; a graceful shutdown (SIGTERM, Ctrl-C) lets
//! running reconciles finish, then releases the Lease so a standby takes
//! over at once.

pub mod metrics;
pub mod policy;
pub mod reconcile;
pub mod status;
pub mod wake;
pub mod watches;
pub mod webhook;
pub mod windows;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::StreamExt;
use kube::api::Api;
use kube::runtime::controller::{self, Controller};
use kube::runtime::watcher;
use tracing::{error, info, warn};

use crate::source::{SourceCache, SourceOptions};
use crate::spec::Application;
use crate::sync::kinds::Kinds;
use metrics::Metrics;
use reconcile::Context;

/// The name of the leader-election Lease.
pub const LEADER_LEASE: &str = "windlass-controller";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Finalizer(Box<kube::runtime::finalizer::Error<Error>>),
    #[error("writing status")]
    Status(#[source] crate::cluster::ApiError),
    #[error("deleting the application's objects and records")]
    Cleanup(#[source] crate::sync::engine::EngineError),
    #[error(transparent)]
    Discovery(crate::sync::kinds::DiscoveryError),
    #[error("webhooks")]
    Webhook(#[source] webhook::SecretError),
    #[error("leader election: {0}")]
    Leader(String),
    #[error("the leader Lease was lost: stopping, so that two controllers never write at once")]
    LeadershipLost,
    #[error("serving HTTP on {address}: {reason}")]
    Http { address: SocketAddr, reason: String },
    #[error(
        "the Application CRD is not installed (listing applications.windlass.dev: {0}); install \
         it: windlass crd | kubectl apply -f -"
    )]
    NoCrd(String),
}

/// How the controller runs.
#[derive(Debug, Clone)]
pub struct ControllerOptions {
    /// Applications reconciled at once.
    pub concurrency: u16,
    /// Reconcile only while holding the leader Lease.
    pub leader_elect: bool,
    pub leader_namespace: String,
    pub lease_duration: Duration,
    /// `/metrics`, `/healthz`, `/readyz`.
    pub http_address: SocketAddr,
    /// Only Applications in this namespace (default: all).
    pub watch_namespace: Option<String>,
    pub source: SourceOptions,
    /// This replica's name (pod name, or host and pid).
    pub identity: String,
    /// Discovery older than this is read again before a render, so that the
    /// `capabilities` templates see include CRDs installed since.
    pub discovery_refresh: Duration,
    /// Serve the webhook receivers, verifying with the secret in this file.
    pub webhook_secret_file: Option<std::path::PathBuf>,
    /// The largest webhook body accepted.
    pub webhook_body_limit: usize,
    /// kustomize and helm.
    pub tools: Arc<crate::render::tool::ExternalTools>,
}

/// Runs until a shutdown signal (or, with leader election, until the Lease
/// is lost: then it returns an error and the process should exit).
pub async fn run(
    client: kube::Client,
    metrics: Arc<Metrics>,
    options: ControllerOptions,
) -> Result<(), Error> {
    let ready = Arc::new(AtomicBool::new(false));
    let listener = tokio::net::TcpListener::bind(options.http_address)
        .await
        .map_err(|e| Error::Http {
            address: options.http_address,
            reason: e.to_string(),
        })?;
    let address = listener.local_addr().unwrap_or(options.http_address);
    // The reconcile's context, once this replica leads; webhooks use it to
    // tell which pushes changed an Application's paths.
    let shared_context: Arc<tokio::sync::OnceCell<Arc<Context>>> = Arc::default();
    let hooks = match &options.webhook_secret_file {
        Some(path) => {
            let sink = wake::Wakeups::new(
                client.clone(),
                options.watch_namespace.clone(),
                shared_context.clone(),
            );
            let receiver = webhook::Receiver::from_secret_file(path, sink, metrics.clone())
                .map_err(Error::Webhook)?
                .with_body_limit(options.webhook_body_limit);
            info!(%address, "serving webhooks at POST /hooks/<provider>");
            Some(webhook::router(Arc::new(receiver)))
        }
        None => None,
    };
    info!(%address, "serving /metrics, /healthz and /readyz");
    tokio::spawn(serve_http(listener, metrics.clone(), ready.clone(), hooks));

    let applications: Api<Application> = match &options.watch_namespace {
        Some(namespace) => Api::namespaced(client.clone(), namespace),
        None => Api::all(client.clone()),
    };
    applications
        .list(&kube::api::ListParams::default().limit(1))
        .await
        .map_err(|e| Error::NoCrd(crate::cluster::explain(&e)))?;

    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);

    let leadership = if options.leader_elect {
        let manager = kube_lease_manager::LeaseManagerBuilder::new(client.clone(), LEADER_LEASE)
            .with_namespace(&options.leader_namespace)
            .with_identity(&options.identity)
            .with_duration(options.lease_duration.as_secs().max(2))
            .with_grace((options.lease_duration.as_secs() / 3).max(1))
            .build()
            .await
            .map_err(|e| Error::Leader(e.to_string()))?;
        let (mut leader, task) = manager.watch().await;
        // A standby is ready: it serves and waits.
        ready.store(true, Ordering::Relaxed);
        info!(identity = %options.identity, lease = %format!("{}/{LEADER_LEASE}", options.leader_namespace), "waiting to become the leader");
        loop {
            if *leader.borrow_and_update() {
                break;
            }
            tokio::select! {
                changed = leader.changed() => {
                    if changed.is_err() {
                        return Err(Error::Leader("the lease manager stopped".into()));
                    }
                }
                () = &mut shutdown => {
                    drop(leader);
                    let _ = task.await;
                    return Ok(());
                }
            }
        }
        info!(identity = %options.identity, "became the leader: reconciling");
        Some((leader, task))
    } else {
        None
    };

    let kinds = Kinds::discover(&client).await.map_err(Error::Discovery)?;
    let (wake, woken) = futures::channel::mpsc::unbounded();
    let watches = Arc::new(watches::Watches::new(
        client.clone(),
        options.watch_namespace.clone(),
        wake,
    ));
    let context = Arc::new(Context::new(
        client.clone(),
        Arc::new(kinds),
        SourceCache::new(options.source.clone()),
        metrics,
        options.identity.clone(),
        options.discovery_refresh,
        watches,
    ));
    let _ = context.tools.set(options.tools.clone());
    let _ = shared_context.set(context.clone());
    ready.store(true, Ordering::Relaxed);
    // Pull-request previews (generated Applications, reconciled here); stops when dropped.
    let _previews = crate::preview::spawn(client.clone(), preview_options(&options));

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let controller = Controller::new(applications, watcher::Config::default().any_semantic())
        .with_config(controller::Config::default().concurrency(options.concurrency.max(1)))
        .reconcile_on(woken)
        .graceful_shutdown_on(async move {
            let _ = stop_rx.await;
        })
        .run(reconcile::reconcile, reconcile::error_policy, context)
        .for_each(|result| async move {
            if let Err(error) = result {
                match error {
                    controller::Error::ReconcilerFailed(..) => {} // logged by error_policy
                    other => warn!(error = %other, "controller"),
                }
            }
        });
    tokio::pin!(controller);

    match leadership {
        None => {
            tokio::select! {
                () = &mut shutdown => {}
                () = &mut controller => {}
            }
            let _ = stop_tx.send(());
            controller.await;
            Ok(())
        }
        Some((mut leader, task)) => {
            let lost = async {
                loop {
                    if leader.changed().await.is_err() || !*leader.borrow_and_update() {
                        return;
                    }
                }
            };
            let outcome = tokio::select! {
                () = &mut shutdown => Ok(()),
                () = lost => Err(Error::LeadershipLost),
                () = &mut controller => Ok(()),
            };
            if outcome.is_ok() {
                info!("shutting down: letting running reconciles finish");
                let _ = stop_tx.send(());
                controller.await;
            } else {
                error!("the leader Lease was lost");
            }
            // Dropping the receiver makes the lease manager release the Lease.
            drop(leader);
            match task.await {
                Ok(Ok(_)) => info!("released the leader Lease"),
                Ok(Err(e)) => warn!(error = %e, "releasing the leader Lease"),
                Err(e) => warn!(error = %e, "the lease manager task failed"),
            }
            outcome
        }
    }
}

fn preview_options(options: &ControllerOptions) -> crate::preview::PreviewOptions {
    crate::preview::PreviewOptions {
        source: options.source.clone(),
        watch_namespace: options.watch_namespace.clone(),
        concurrency: options.concurrency,
    }
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .expect("installing a SIGTERM handler");
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
    info!("shutdown signal received");
}

async fn serve_http(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
    hooks: Option<axum::Router>,
) {
    use axum::http::StatusCode;
    use axum::routing::get;
    let app = axum::Router::new()
        .route(
            "/metrics",
            get(move || {
                let metrics = metrics.clone();
                async move {
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "text/plain; version=0.0.4; charset=utf-8",
                        )],
                        metrics.encode(),
                    )
                }
            }),
        )
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(move || {
                let ready = ready.load(Ordering::Relaxed);
                async move {
                    if ready {
                        (StatusCode::OK, "ready\n")
                    } else {
                        (StatusCode::SERVICE_UNAVAILABLE, "starting\n")
                    }
                }
            }),
        );
    let app = match hooks {
        Some(hooks) => app.merge(hooks),
        None => app,
    };
    if let Err(error) = axum::serve(listener, app).await {
        error!(error = %error, "the HTTP server stopped");
    }
}
