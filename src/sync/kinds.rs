//! What kinds the API server serves: a cache of aggregated discovery.
//!
//! ```text
//!   ObjectId { group, version, kind } ──resolve──► Kind { ApiResource, namespaced }
//!                                         │ unknown? refresh discovery once, ask again
//! ```
//!
//! One aggregated discovery request (`/api` and `/apis` with the aggregated
//! media type) fills the cache. A kind that is missing triggers a refresh,
//! because it may have just been created by a CRD; the refresh is rate-limited
//! so that a set full of unknown kinds does not hammer the server.
//!
//! When a kind is not served in the asked version, [`Kinds::versions_serving`]
//! names the versions it is served in, for the error.
//!
//! `Kinds` also answers render's [`ScopeLookup`], so that rendering against
//! a cluster knows which kinds are cluster-scoped, and gives templates their
//! `capabilities`: the server's version (read once, with the first
//! discovery) and every group/version and group/version/Kind it serves.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use kube::core::GroupVersionKind;
use kube::discovery::{ApiCapabilities, ApiResource, Discovery, Scope};

use crate::cluster::{ServerVersion, explain};
use crate::render::{Capabilities, ObjectId, ScopeLookup};

/// The shortest time between two discovery refreshes.
const MIN_REFRESH: Duration = Duration::from_millis(500);

#[derive(Debug, Clone)]
pub struct Kind {
    pub resource: ApiResource,
    pub namespaced: bool,
}

#[derive(Debug, thiserror::Error)]
#[error("API discovery failed: {0}")]
pub struct DiscoveryError(pub String);

pub struct Kinds {
    client: kube::Client,
    state: RwLock<State>,
    /// `major.minor`, e.g. `1.36`; `None` when `/version` did not say.
    kube_version: Option<String>,
    /// Held while [`Kinds::refresh_if_older`] refreshes.
    refreshing: tokio::sync::Mutex<()>,
}

/// One discovery and what follows from it.
struct State {
    discovery: Discovery,
    at: Instant,
    /// Built once per discovery: every reconcile asks for it.
    capabilities: Arc<Capabilities>,
}

impl State {
    fn new(discovery: Discovery, kube_version: Option<String>) -> State {
        let capabilities = Arc::new(Capabilities {
            kube_version,
            api_versions: api_versions(&discovery),
        });
        State {
            discovery,
            at: Instant::now(),
            capabilities,
        }
    }
}

impl Kinds {
    pub async fn discover(client: &kube::Client) -> Result<Kinds, DiscoveryError> {
        let (discovery, version) = tokio::join!(run(client), client.apiserver_version());
        // Discovery failing is the error worth reporting; a server that
        // serves discovery but no usable `/version` just leaves it unknown.
        let discovery = discovery?;
        let kube_version = version
            .ok()
            .and_then(|info| ServerVersion::parse(&info.major, &info.minor))
            .map(|version| version.to_string());
        Ok(Kinds {
            client: client.clone(),
            state: RwLock::new(State::new(discovery, kube_version.clone())),
            kube_version,
            refreshing: tokio::sync::Mutex::new(()),
        })
    }

    /// What templates see as `capabilities`, from the cached discovery.
    pub fn capabilities(&self) -> Arc<Capabilities> {
        self.state
            .read()
            .expect("discovery lock")
            .capabilities
            .clone()
    }

    /// The kind from the cache, without asking the server.
    pub fn cached(&self, id: &ObjectId) -> Option<Kind> {
        let state = self.state.read().expect("discovery lock");
        lookup(&state.discovery, id)
    }

    /// Every `group/version` the server serves a kind called `kind` in
    /// (any group), sorted: for an error that says where a kind moved
    /// (`PodDisruptionBudget` in `policy/v1beta1` → `policy/v1`).
    pub fn versions_serving(&self, kind: &str) -> Vec<String> {
        let state = self.state.read().expect("discovery lock");
        versions_serving(&state.discovery, kind)
    }

    /// The kind, refreshing discovery once when it is unknown.
    pub async fn resolve(&self, id: &ObjectId) -> Result<Option<Kind>, DiscoveryError> {
        if let Some(kind) = self.cached(id) {
            return Ok(Some(kind));
        }
        self.refresh().await?;
        Ok(self.cached(id))
    }

    /// Re-reads discovery when it is older than `max_age`, so that a
    /// long-running process sees kinds that others installed since.
    pub async fn refresh_if_older(&self, max_age: Duration) -> Result<(), DiscoveryError> {
        let age = || self.state.read().expect("discovery lock").at.elapsed();
        if age() <= max_age {
            return Ok(());
        }
        // Reconciles running at once refresh once: the others wait, then
        // find it fresh.
        let _refreshing = self.refreshing.lock().await;
        if age() <= max_age {
            return Ok(());
        }
        self.refresh().await
    }

    /// Re-reads discovery (after CRDs were applied), unless that happened
    /// moments ago.
    pub async fn refresh(&self) -> Result<(), DiscoveryError> {
        let recent = self.state.read().expect("discovery lock").at.elapsed() < MIN_REFRESH;
        if recent {
            tokio::time::sleep(MIN_REFRESH).await;
        }
        let discovery = run(&self.client).await?;
        *self.state.write().expect("discovery lock") =
            State::new(discovery, self.kube_version.clone());
        Ok(())
    }
}

impl ScopeLookup for Kinds {
    fn is_namespaced(&self, group: &str, kind: &str) -> Option<bool> {
        let state = self.state.read().expect("discovery lock");
        let api_group = state.discovery.get(group)?;
        api_group
            .recommended_resources()
            .into_iter()
            .chain(api_group.resources_by_stability())
            .find(|(resource, _)| resource.kind == kind)
            .map(|(_, capabilities)| capabilities.scope == Scope::Namespaced)
    }
}

async fn run(client: &kube::Client) -> Result<Discovery, DiscoveryError> {
    Discovery::new(client.clone())
        .run_aggregated()
        .await
        .map_err(|e| DiscoveryError(explain(&e)))
}

/// Every `group/version` (`v1` for the core group) and `group/version/Kind`
/// the server serves, sorted: the entries Helm's
/// `.Capabilities.APIVersions` holds, so `has "monitoring.coreos.com/v1"`
/// and `has "policy/v1/PodDisruptionBudget"` both work.
fn api_versions(discovery: &Discovery) -> Vec<String> {
    let mut entries = Vec::new();
    for group in discovery.groups() {
        for version in group.versions() {
            let group_version = group_version(group.name(), version);
            for (resource, _) in group.versioned_resources(version) {
                entries.push(format!("{group_version}/{}", resource.kind));
            }
            entries.push(group_version);
        }
    }
    entries.sort();
    entries.dedup();
    entries
}

fn versions_serving(discovery: &Discovery, kind: &str) -> Vec<String> {
    let mut versions = Vec::new();
    for group in discovery.groups() {
        for version in group.versions() {
            if group
                .versioned_resources(version)
                .iter()
                .any(|(resource, _)| resource.kind == kind)
            {
                versions.push(group_version(group.name(), version));
            }
        }
    }
    versions.sort();
    versions.dedup();
    versions
}

/// `group/version`, or just `version` for the core group.
fn group_version(group: &str, version: &str) -> String {
    if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    }
}

fn lookup(discovery: &Discovery, id: &ObjectId) -> Option<Kind> {
    let gvk = GroupVersionKind::gvk(&id.group, &id.version, &id.kind);
    discovery
        .resolve_gvk(&gvk)
        .map(
            |(resource, capabilities): (ApiResource, ApiCapabilities)| Kind {
                resource,
                namespaced: capabilities.scope == Scope::Namespaced,
            },
        )
}
