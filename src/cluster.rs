//! Connecting to a Kubernetes API server.
//!
//! ```text
//!   --kubeconfig PATH ─┐
//!   $KUBECONFIG ───────┼─► ClusterOptions ──connect()──► Connection { client, source, server }
//!   ~/.kube/config ────┤
//!   in-cluster env ────┘
//! ```
//!
//! In: where the user says the cluster is (flags, environment). Out: a
//! [`kube::Client`] plus a description of where its configuration came from, so
//! that messages can say which cluster windlass talked to. The pure part,
//! [`ServerVersion`], decides whether a server is recent enough.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use kube::config::{KubeConfigOptions, Kubeconfig, KubeconfigError};
use kube::{Client, Config};

/// The oldest Kubernetes minor release windlass supports: aggregated discovery
/// and server-side apply are both GA there.
pub const MINIMUM_KUBERNETES: ServerVersion = ServerVersion {
    major: 1,
    minor: 30,
};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read kubeconfig `{path}`: {reason}", path = .path.display())]
    ReadKubeconfig { path: PathBuf, reason: String },

    #[error("kubeconfig from {source_name} is not usable: {reason}")]
    InvalidKubeconfig { source_name: String, reason: String },

    #[error(
        "no cluster configured: pass --kubeconfig, set KUBECONFIG or create ~/.kube/config \
         (for the local control plane: deploy/local/control-plane.sh up)"
    )]
    NoConfiguration,

    #[error("cannot build a client for {server}: {reason}")]
    Client { server: String, reason: String },

    #[error("the API server at {server} did not answer: {reason}")]
    Unreachable { server: String, reason: String },
}

/// Where to find the cluster, as the user gave it.
#[derive(Debug, Clone, Default)]
pub struct ClusterOptions {
    /// An explicit kubeconfig file; otherwise `$KUBECONFIG`, `~/.kube/config`,
    /// then the in-cluster service account.
    pub kubeconfig: Option<PathBuf>,
    /// A context in the kubeconfig other than its current one.
    pub context: Option<String>,
    /// Told about every request the client sends (for metrics).
    pub observer: Option<RequestObserver>,
}

/// Called with each request's HTTP method and whether it is a dry-run.
pub type ObserveRequest = dyn Fn(&http::Method, bool) + Send + Sync;

#[derive(Clone)]
pub struct RequestObserver(pub Arc<ObserveRequest>);

impl fmt::Debug for RequestObserver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RequestObserver")
    }
}

/// Where a connection's configuration came from, for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigSource {
    File(PathBuf),
    Environment,
    DefaultFile,
    InCluster,
}

impl fmt::Display for ConfigSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigSource::File(path) => write!(f, "{}", path.display()),
            ConfigSource::Environment => write!(f, "$KUBECONFIG"),
            ConfigSource::DefaultFile => write!(f, "~/.kube/config"),
            ConfigSource::InCluster => write!(f, "in-cluster service account"),
        }
    }
}

/// A client plus what it is connected to.
#[derive(Clone)]
pub struct Connection {
    pub client: Client,
    pub source: ConfigSource,
    /// The API server URL (no credentials: kubeconfig server URLs carry none).
    pub server: String,
    /// The kubeconfig context in use, if any.
    pub context: Option<String>,
    /// The namespace the kubeconfig context names, or `default`.
    pub default_namespace: String,
}

impl fmt::Debug for Connection {
    // Deliberately leaves out the client and its configuration, which hold
    // credentials.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("source", &self.source)
            .field("server", &self.server)
            .field("context", &self.context)
            .finish_non_exhaustive()
    }
}

/// Builds a client from the options. Does not talk to the server yet.
pub async fn connect(options: &ClusterOptions) -> Result<Connection, Error> {
    let kube_options = KubeConfigOptions {
        context: options.context.clone(),
        ..KubeConfigOptions::default()
    };
    let (config, source, context) = if let Some(path) = &options.kubeconfig {
        let kubeconfig = read_kubeconfig(path)?;
        let context = selected_context(&kubeconfig, &kube_options);
        let source = ConfigSource::File(path.clone());
        let config = Config::from_custom_kubeconfig(kubeconfig, &kube_options)
            .await
            .map_err(|source_error| invalid(&source, source_error))?;
        (config, source, context)
    } else if std::env::var_os("KUBECONFIG").is_some_and(|v| !v.is_empty())
        || default_kubeconfig_path().is_some_and(|p| p.exists())
    {
        let source = if std::env::var_os("KUBECONFIG").is_some_and(|v| !v.is_empty()) {
            ConfigSource::Environment
        } else {
            ConfigSource::DefaultFile
        };
        let kubeconfig = Kubeconfig::read().map_err(|e| invalid(&source, e))?;
        let context = selected_context(&kubeconfig, &kube_options);
        let config = Config::from_custom_kubeconfig(kubeconfig, &kube_options)
            .await
            .map_err(|e| invalid(&source, e))?;
        (config, source, context)
    } else {
        let config = Config::incluster().map_err(|_| Error::NoConfiguration)?;
        (config, ConfigSource::InCluster, None)
    };
    let server = config.cluster_url.to_string();
    let default_namespace = config.default_namespace.clone();
    let failed = |error: kube::Error| Error::Client {
        server: server.clone(),
        reason: explain(&error),
    };
    let client = match &options.observer {
        None => Client::try_from(config).map_err(failed)?,
        Some(RequestObserver(observe)) => {
            let observe = observe.clone();
            let layer = tower::util::MapRequestLayer::new(
                move |request: http::Request<kube::client::Body>| {
                    let dry_run = request.uri().query().is_some_and(|q| q.contains("dryRun"));
                    observe(request.method(), dry_run);
                    request
                },
            );
            kube::client::ClientBuilder::try_from(config)
                .map_err(failed)?
                .with_layer(&layer)
                .build()
        }
    };
    Ok(Connection {
        client,
        source,
        server,
        context,
        default_namespace,
    })
}

impl Connection {
    /// Asks the server for its version: the cheapest call that proves the
    /// server answers and accepts our credentials.
    pub async fn server_version(&self) -> Result<ServerVersionInfo, Error> {
        let info = self
            .client
            .apiserver_version()
            .await
            .map_err(|error| Error::Unreachable {
                server: self.server.clone(),
                reason: explain(&error),
            })?;
        Ok(ServerVersionInfo {
            version: ServerVersion::parse(&info.major, &info.minor),
            git_version: info.git_version,
        })
    }
}

fn read_kubeconfig(path: &Path) -> Result<Kubeconfig, Error> {
    Kubeconfig::read_from(path).map_err(|error| Error::ReadKubeconfig {
        path: path.to_path_buf(),
        reason: cause_chain(&error),
    })
}

fn invalid(source: &ConfigSource, error: KubeconfigError) -> Error {
    Error::InvalidKubeconfig {
        source_name: source.to_string(),
        reason: cause_chain(&error),
    }
}

/// A kube error in words a user can act on. For a request the API server
/// refused, that is the server's own message with its reason and HTTP code
/// (`namespaces "x" not found (NotFound, 404)`), never a `Debug` dump of the
/// response; for anything else, the cause chain.
pub fn explain(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) if !status.message.is_empty() => {
            if status.reason.is_empty() {
                format!("{} (HTTP {})", status.message, status.code)
            } else {
                format!("{} ({}, {})", status.message, status.reason, status.code)
            }
        }
        other => cause_chain(other),
    }
}

/// A request the API server refused, or that could not reach it. Shown as
/// [`explain`] shows it (the server's message, reason and code); the kube
/// error itself stays available for decisions on it ([`ApiError::code`]).
#[derive(Debug)]
pub struct ApiError(pub Box<kube::Error>);

impl ApiError {
    /// The HTTP status code the server answered with, if it answered.
    pub fn code(&self) -> Option<u16> {
        match self.0.as_ref() {
            kube::Error::Api(status) => Some(status.code),
            _ => None,
        }
    }
}

impl From<kube::Error> for ApiError {
    fn from(error: kube::Error) -> ApiError {
        ApiError(Box::new(error))
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&explain(&self.0))
    }
}

/// `explain` already includes the kube error's own causes.
impl std::error::Error for ApiError {}

/// An error and its sources joined with `: ` (see [`cause_chain`]), for
/// messages that leave the process as one line: status conditions, Events,
/// progress lines.
pub fn chain(error: &dyn std::error::Error) -> String {
    cause_chain(error)
}

/// An error and its sources joined with `: `, leaving out a cause whose text
/// the previous message already contains (many libraries repeat their
/// source in their own message).
fn cause_chain(error: &dyn std::error::Error) -> String {
    let mut parts: Vec<String> = vec![error.to_string()];
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !parts.last().is_some_and(|last| last.contains(&text)) {
            parts.push(text);
        }
        source = cause.source();
    }
    parts.join(": ")
}

fn selected_context(kubeconfig: &Kubeconfig, options: &KubeConfigOptions) -> Option<String> {
    options
        .context
        .clone()
        .or_else(|| kubeconfig.current_context.clone())
}

fn default_kubeconfig_path() -> Option<PathBuf> {
    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".kube").join("config"))
}

/// What `/version` said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerVersionInfo {
    /// `None` when the server reports a version windlass cannot read.
    pub version: Option<ServerVersion>,
    /// The full version string, such as `v1.36.3`.
    pub git_version: String,
}

/// A Kubernetes major.minor release.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ServerVersion {
    pub major: u32,
    pub minor: u32,
}

impl ServerVersion {
    /// Reads `/version`'s `major` and `minor` fields. Managed clusters report
    /// minors like `36+`; the suffix is ignored.
    pub fn parse(major: &str, minor: &str) -> Option<ServerVersion> {
        let digits = |s: &str| -> Option<u32> {
            let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
            s[..end].parse().ok()
        };
        Some(ServerVersion {
            major: digits(major)?,
            minor: digits(minor)?,
        })
    }

    pub fn is_supported(self) -> bool {
        self >= MINIMUM_KUBERNETES
    }
}

impl fmt::Display for ServerVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_and_suffixed_minor_versions() {
        assert_eq!(
            ServerVersion::parse("1", "36"),
            Some(ServerVersion {
                major: 1,
                minor: 36
            })
        );
        assert_eq!(
            ServerVersion::parse("1", "29+"),
            Some(ServerVersion {
                major: 1,
                minor: 29
            })
        );
        assert_eq!(ServerVersion::parse("", "36"), None);
        assert_eq!(ServerVersion::parse("1", "x"), None);
    }

    #[test]
    fn minimum_version_is_inclusive() {
        let at = |minor| ServerVersion { major: 1, minor };
        assert!(at(30).is_supported());
        assert!(at(36).is_supported());
        assert!(!at(29).is_supported());
        assert!(ServerVersion { major: 2, minor: 0 }.is_supported());
    }

    #[test]
    fn explains_a_refused_request_with_the_servers_message() {
        let status =
            kube::core::Status::failure("namespaces \"x\" not found", "NotFound").with_code(404);
        let message = explain(&kube::Error::Api(Box::new(status)));
        assert_eq!(message, "namespaces \"x\" not found (NotFound, 404)");
    }

    #[test]
    fn cause_chain_skips_repeated_causes() {
        #[derive(Debug, thiserror::Error)]
        #[error("reading config: {0}")]
        struct Outer(#[source] std::io::Error);
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        assert_eq!(cause_chain(&Outer(io)), "reading config: no such file");
    }

    #[test]
    fn unreadable_kubeconfig_names_the_file() {
        let error = read_kubeconfig(Path::new("/nonexistent/windlass/kubeconfig")).unwrap_err();
        let message = error.to_string();
        assert!(
            message.contains("/nonexistent/windlass/kubeconfig"),
            "{message}"
        );
    }
}
