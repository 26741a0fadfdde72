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
//! `Kinds` also answers render's [`ScopeLookup`], so that rendering against
//! a cluster knows which kinds are cluster-scoped.

use std::sync::RwLock;
use std::time::{Duration, Instant};

use kube::core::GroupVersionKind;
use kube::discovery::{ApiCapabilities, ApiResource, Discovery, Scope};

use crate::cluster::explain;
use crate::render::{ObjectId, ScopeLookup};

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
    state: RwLock<(Discovery, Instant)>,
}

impl Kinds {
    pub async fn discover(client: &kube::Client) -> Result<Kinds, DiscoveryError> {
        let discovery = run(client).await?;
        Ok(Kinds {
            client: client.clone(),
            state: RwLock::new((discovery, Instant::now())),
        })
    }

    /// The kind from the cache, without asking the server.
    pub fn cached(&self, id: &ObjectId) -> Option<Kind> {
        let state = self.state.read().expect("discovery lock");
        lookup(&state.0, id)
    }

    /// The kind, refreshing discovery once when it is unknown.
    pub async fn resolve(&self, id: &ObjectId) -> Result<Option<Kind>, DiscoveryError> {
        if let Some(kind) = self.cached(id) {
            return Ok(Some(kind));
        }
        self.refresh().await?;
        Ok(self.cached(id))
    }

    /// Re-reads discovery (after CRDs were applied), unless that happened
    /// moments ago.
    pub async fn refresh(&self) -> Result<(), DiscoveryError> {
        let recent = self.state.read().expect("discovery lock").1.elapsed() < MIN_REFRESH;
        if recent {
            tokio::time::sleep(MIN_REFRESH).await;
        }
        let discovery = run(&self.client).await?;
        *self.state.write().expect("discovery lock") = (discovery, Instant::now());
        Ok(())
    }
}

impl ScopeLookup for Kinds {
    fn is_namespaced(&self, group: &str, kind: &str) -> Option<bool> {
        let state = self.state.read().expect("discovery lock");
        let api_group = state.0.get(group)?;
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
