//! The few Kubernetes requests the sync engine makes about one object,
//! by its [`ObjectId`] and discovered [`Kind`]: an API handle, GET, and the
//! conversion of a dynamic object into JSON.

use kube::api::{Api, DynamicObject};
use serde_json::Value;

use super::diff::display_name;
use super::kinds::Kind;
use crate::cluster::ApiError;
use crate::render::ObjectId;

/// Reading one object failed (not: it does not exist).
#[derive(Debug, thiserror::Error)]
#[error("reading {what}")]
pub struct GetError {
    pub what: String,
    #[source]
    pub source: ApiError,
}

pub fn api_for(client: &kube::Client, id: &ObjectId, kind: &Kind) -> Api<DynamicObject> {
    match (&id.namespace, kind.namespaced) {
        (Some(namespace), true) => Api::namespaced_with(client.clone(), namespace, &kind.resource),
        _ => Api::all_with(client.clone(), &kind.resource),
    }
}

pub fn to_value(object: DynamicObject) -> Value {
    serde_json::to_value(object).expect("a DynamicObject serialises")
}

/// GET one object; `None` when it does not exist.
pub async fn get(
    client: &kube::Client,
    id: &ObjectId,
    kind: &Kind,
) -> Result<Option<Value>, GetError> {
    api_for(client, id, kind)
        .get_opt(&id.name)
        .await
        .map(|o| o.map(to_value))
        .map_err(|e| GetError {
            what: display_name(id),
            source: e.into(),
        })
}
