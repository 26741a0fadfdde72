//! Plan: what applying the desired state would change, asked of the server
//! itself (server-side apply dry-run), without writing anything.
//!
//! ```text
//!   desired objects (stamped) ─┐
//!   LIST live by app label ────┼─► per object:
//!   previous inventory ────────┘     digest equal and nobody else touched it → Unchanged (no request)
//!                                    else SSA dry-run (no force) ─409─► conflicts; dry-run with force
//!                                         compare normalised dry-run with live → Create | Update | Unchanged
//!                                    rejected by the server → Rejection (the validation gate)
//!                                  previous inventory − desired → prune decisions
//! ```
//!
//! Requests per object: none for an unchanged object (one LIST per kind and
//! namespace covers them all); one dry-run for a new or changed one (two on
//! a conflict); one GET more only to adopt an existing object windlass did
//! not label. Objects whose kind a CRD in the same set defines, or whose
//! namespace a Namespace in the same set creates, cannot be dry-run before
//! those exist: they are planned as `Deferred` and validated by apply right
//! after phase 1 created them, before any of them is written.

use std::collections::{BTreeMap, HashMap};

use futures::stream::{self, StreamExt};
use kube::api::{DynamicObject, ListParams, Patch, PatchParams};
use serde_json::Value;

use super::api::{api_for, get, to_value};
use super::diff::normalize;
use super::kinds::{Kind, Kinds};
use super::prune::{self, EmptyRenderRefused, PruneDecision, PruneOptions};
use crate::cluster::{ApiError, explain};
use crate::identity::{ANNOTATION_DIGEST, AppIdentity, FIELD_MANAGER, stamp};
use crate::render::{ObjectId, RenderedObject};
use crate::spec::IgnoreDifference;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Action {
    Create,
    Update,
    Unchanged,
    /// Its Namespace or its kind's CRD comes from the same set and does not
    /// exist yet: validated right after phase 1 creates it, before any
    /// deferred object is written.
    Deferred,
}

/// Another field manager owns a field windlass sets.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FieldConflict {
    pub manager: String,
    pub field: String,
}

#[derive(Clone)]
pub struct Change {
    pub id: ObjectId,
    pub action: Action,
    /// What windlass applies: the rendered object plus identity and digest.
    pub desired: Value,
    pub digest: String,
    pub live: Option<Value>,
    /// The server's dry-run answer: the object as it would be after apply.
    pub dry_run: Option<Value>,
    pub conflicts: Vec<FieldConflict>,
    pub kind: Option<Kind>,
    /// Fields left out because `ignoreDifferences` names their managers.
    pub ignored: Vec<String>,
}

// Objects may be Secrets: Debug shows identities and decisions only.
impl std::fmt::Debug for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Change")
            .field("id", &self.id)
            .field("action", &self.action)
            .field("digest", &self.digest)
            .field("conflicts", &self.conflicts)
            .finish_non_exhaustive()
    }
}

impl Change {
    /// Whether applying it writes anything.
    pub fn writes(&self) -> bool {
        !matches!(self.action, Action::Unchanged)
    }
}

/// An object the server refused (validation gate).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub id: ObjectId,
    /// Where it came from (file or template, document).
    pub origin: String,
    pub message: String,
}

#[derive(Clone)]
pub struct Plan {
    pub app: AppIdentity,
    pub changes: Vec<Change>,
    pub rejected: Vec<Rejection>,
    pub prune: Vec<PruneDecision>,
    /// Live copies of the objects prune would delete, for the diff.
    pub prune_live: HashMap<ObjectId, Value>,
    pub prune_refused: Option<EmptyRenderRefused>,
}

// Live copies of objects to prune may be Secrets: identities only.
impl std::fmt::Debug for Plan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plan")
            .field("app", &self.app)
            .field("changes", &self.changes)
            .field("rejected", &self.rejected)
            .field("prune", &self.prune)
            .field("prune_refused", &self.prune_refused)
            .finish_non_exhaustive()
    }
}

impl Plan {
    pub fn count(&self, action: Action) -> usize {
        self.changes.iter().filter(|c| c.action == action).count()
    }

    pub fn deletions(&self) -> impl Iterator<Item = &ObjectId> {
        self.prune.iter().filter_map(|d| match d {
            PruneDecision::Delete(id) => Some(id),
            PruneDecision::Keep { .. } => None,
        })
    }

    pub fn conflicts(&self) -> usize {
        self.changes
            .iter()
            .filter(|c| !c.conflicts.is_empty())
            .count()
    }

    /// Whether a sync would write anything.
    pub fn has_changes(&self) -> bool {
        self.changes.iter().any(Change::writes) || self.deletions().next().is_some()
    }

    /// `N to create, M to update, K to delete, U unchanged`.
    pub fn summary(&self) -> String {
        let create = self.count(Action::Create) + self.count(Action::Deferred);
        let mut text = format!(
            "{create} to create, {} to update, {} to delete, {} unchanged",
            self.count(Action::Update),
            self.deletions().count(),
            self.count(Action::Unchanged)
        );
        let conflicts = self.conflicts();
        if conflicts > 0 {
            text.push_str(&format!(", {conflicts} with conflicts"));
        }
        text
    }
}

#[derive(Debug, Clone, Copy)]
pub struct PlanOptions {
    pub prune: PruneOptions,
    /// How many requests run at once.
    pub concurrency: usize,
}

impl Default for PlanOptions {
    fn default() -> PlanOptions {
        PlanOptions {
            prune: PruneOptions::default(),
            concurrency: 16,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("{0}")]
    Discovery(#[from] super::kinds::DiscoveryError),
    #[error(
        "{origin}: {api_version} {kind} `{name}`: {}",
        unknown_kind_reason(.api_version, .kind, .served)
    )]
    UnknownKind {
        origin: String,
        api_version: String,
        kind: String,
        name: String,
        /// The `group/version`s the server serves this kind in (none: it
        /// does not know the kind at all).
        served: Vec<String>,
    },
    #[error("listing {what}")]
    List {
        what: String,
        #[source]
        source: ApiError,
    },
    #[error(transparent)]
    Get(#[from] super::api::GetError),
}

/// Why an object's kind cannot be planned: where the server serves the
/// kind instead, or that nothing serves it.
fn unknown_kind_reason(api_version: &str, kind: &str, served: &[String]) -> String {
    if served.is_empty() {
        format!(
            "the server does not know kind {kind} in {api_version}, and no \
             CustomResourceDefinition in this set defines it; install the CRD first, or check \
             apiVersion and kind"
        )
    } else {
        format!(
            "the server does not serve {kind} in {api_version}; the server serves {kind} as {}: \
             change the apiVersion",
            served.join(", ")
        )
    }
}

/// Plans the desired objects against the cluster.
pub async fn plan(
    client: &kube::Client,
    kinds: &Kinds,
    app: &AppIdentity,
    desired: &[RenderedObject],
    previous_inventory: &[ObjectId],
    ignore: &[IgnoreDifference],
    options: PlanOptions,
) -> Result<Plan, PlanError> {
    let crd_kinds = kinds_defined_by_crds(desired);
    let namespaces_in_set: std::collections::HashSet<String> = desired
        .iter()
        .filter(|o| o.id.group.is_empty() && o.id.kind == "Namespace")
        .map(|o| o.id.name.clone())
        .collect();
    let mut entries = Vec::with_capacity(desired.len());
    for object in desired {
        let kind = kinds.resolve(&object.id).await?;
        if kind.is_none()
            && !crd_kinds.contains_key(&(object.id.group.clone(), object.id.kind.clone()))
        {
            return Err(PlanError::UnknownKind {
                origin: object.source.to_string(),
                api_version: object.id.api_version(),
                kind: object.id.kind.clone(),
                name: object.id.name.clone(),
                served: kinds.versions_serving(&object.id.kind),
            });
        }
        let mut stamped = object.object.clone();
        stamp(&mut stamped, app, &object.digest);
        entries.push((object, stamped, kind));
    }

    let live = list_live(
        client,
        app,
        entries
            .iter()
            .filter_map(|(o, _, k)| k.clone().map(|k| (o.id.clone(), k))),
        options.concurrency,
    )
    .await?;

    // The futures are built first, then run: a stream over a closure that
    // borrows would not be provably Send (the controller spawns this).
    let plans: Vec<_> = entries
        .into_iter()
        .map(|(object, mut stamped, kind)| {
            let live = live.get(&object.id).cloned();
            let ignored = ignore_managed(ignore, &object.id, live.as_ref(), &mut stamped);
            let namespaces_in_set = &namespaces_in_set;
            async move {
                let mut change =
                    plan_one(client, object, stamped, kind, live, namespaces_in_set).await?;
                change.ignored = ignored;
                Ok(change)
            }
        })
        .collect();
    let results: Vec<Result<Change, Rejection>> = stream::iter(plans)
        .buffered(options.concurrency.max(1))
        .collect()
        .await;

    let mut changes = Vec::new();
    let mut rejected = Vec::new();
    for result in results {
        match result {
            Ok(change) => changes.push(change),
            Err(rejection) => rejected.push(rejection),
        }
    }

    let desired_ids: Vec<ObjectId> = desired.iter().map(|o| o.id.clone()).collect();
    let candidates = prune::candidates(previous_inventory, &desired_ids);
    let mut prune_live = HashMap::new();
    for id in &candidates {
        let Some(kind) = kinds.resolve(id).await? else {
            continue; // the kind itself is gone (its CRD was deleted): nothing to prune
        };
        if let Some(object) = get(client, id, &kind).await? {
            prune_live.insert((*id).clone(), object);
        }
    }
    let (prune, prune_refused) = match prune::decide(
        app,
        &candidates,
        desired.len(),
        |id| prune_live.get(id),
        options.prune,
    ) {
        Ok(decisions) => (decisions, None),
        Err(refused) => (Vec::new(), Some(refused)),
    };
    Ok(Plan {
        app: app.clone(),
        changes,
        rejected,
        prune,
        prune_live,
        prune_refused,
    })
}

/// Leaves out of `desired` the fields that managers named by an
/// `ignoreDifferences` rule own in the live object; returns their pointers.
fn ignore_managed(
    rules: &[IgnoreDifference],
    id: &ObjectId,
    live: Option<&Value>,
    desired: &mut Value,
) -> Vec<String> {
    let Some(live) = live else {
        return Vec::new();
    };
    let managers: Vec<String> = rules
        .iter()
        .filter(|r| !r.managers.is_empty() && super::ignore::matches(r, id))
        .flat_map(|r| r.managers.iter().cloned())
        .collect();
    if managers.is_empty() {
        return Vec::new();
    }
    let pointers = super::ignore::manager_paths(live, &managers);
    super::ignore::strip_pointers(desired, &pointers)
}

async fn plan_one(
    client: &kube::Client,
    object: &RenderedObject,
    desired: Value,
    kind: Option<Kind>,
    live: Option<Value>,
    namespaces_in_set: &std::collections::HashSet<String>,
) -> Result<Change, Rejection> {
    let mut change = Change {
        id: object.id.clone(),
        action: Action::Deferred,
        desired,
        digest: object.digest.clone(),
        live,
        dry_run: None,
        conflicts: Vec::new(),
        kind: kind.clone(),
        ignored: Vec::new(),
    };
    let Some(kind) = kind else {
        return Ok(change);
    };
    if let Some(live) = &change.live
        && untouched_since_applied(live, &object.digest)
    {
        change.action = Action::Unchanged;
        return Ok(change);
    }
    let outcome = match dry_run(client, &object.id, &kind, &change.desired).await {
        Ok(outcome) => outcome,
        Err(error) => {
            if error
                .missing_namespace
                .as_ref()
                .is_some_and(|ns| namespaces_in_set.contains(ns))
            {
                return Ok(change); // Deferred: its Namespace comes in phase 1
            }
            return Err(Rejection {
                id: object.id.clone(),
                origin: object.source.to_string(),
                message: error.message,
            });
        }
    };
    change.conflicts = outcome.conflicts;
    let after = outcome.object;
    // An existing object windlass did not label: fetch it to diff against.
    if change.live.is_none()
        && after["metadata"]["resourceVersion"]
            .as_str()
            .is_some_and(|v| !v.is_empty())
    {
        change.live = get(client, &object.id, &kind)
            .await
            .map_err(|e| Rejection {
                id: object.id.clone(),
                origin: object.source.to_string(),
                message: e.to_string(),
            })?;
    }
    change.action = match &change.live {
        None => Action::Create,
        Some(live) if normalize(live) == normalize(&after) => Action::Unchanged,
        Some(_) => Action::Update,
    };
    change.dry_run = Some(after);
    Ok(change)
}

/// Whether the live object was applied from exactly this desired state and
/// no other manager has written it since: then a dry-run cannot show a
/// difference, and none is sent. Writes to the `status` subresource (by
/// controllers) do not count; any other manager's entry at or after
/// windlass's does, including through other subresources (`kubectl scale`
/// writes `scale`).
pub fn untouched_since_applied(live: &Value, digest: &str) -> bool {
    if live["metadata"]["annotations"][ANNOTATION_DIGEST].as_str() != Some(digest) {
        return false;
    }
    let entries = live["metadata"]["managedFields"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let Some(ours) = entries
        .iter()
        .filter(|e| {
            e["manager"] == FIELD_MANAGER
                && e["operation"] == "Apply"
                && e.get("subresource").is_none_or(Value::is_null)
        })
        .filter_map(|e| e["time"].as_str())
        .max()
    else {
        return false;
    };
    !entries.iter().any(|e| {
        e["manager"] != FIELD_MANAGER
            && e["subresource"] != "status"
            // No time (the scale subresource writes none): assume it is newer.
            && e["time"].as_str().is_none_or(|t| t >= ours)
    })
}

pub struct DryRun {
    pub object: Value,
    pub conflicts: Vec<FieldConflict>,
}

/// A refused dry-run: the server's words, and whether the reason is a
/// namespace that does not exist (yet).
#[derive(Debug)]
pub struct DryRunError {
    pub message: String,
    pub missing_namespace: Option<String>,
}

impl From<kube::Error> for DryRunError {
    fn from(error: kube::Error) -> DryRunError {
        let missing_namespace = match &error {
            kube::Error::Api(status) if status.code == 404 => status
                .details
                .as_ref()
                .filter(|d| d.kind == "namespaces")
                .map(|d| d.name.clone()),
            _ => None,
        };
        DryRunError {
            message: explain(&error),
            missing_namespace,
        }
    }
}

/// Server-side apply dry-run; a conflict is answered by a second dry-run
/// with force, so the plan shows both the conflict and the result.
pub async fn dry_run(
    client: &kube::Client,
    id: &ObjectId,
    kind: &Kind,
    desired: &Value,
) -> Result<DryRun, DryRunError> {
    let api = api_for(client, id, kind);
    let params = PatchParams::apply(FIELD_MANAGER).dry_run();
    match api.patch(&id.name, &params, &Patch::Apply(desired)).await {
        Ok(object) => Ok(DryRun {
            object: to_value(object),
            conflicts: Vec::new(),
        }),
        Err(kube::Error::Api(status)) if status.code == 409 => {
            let conflicts = parse_conflicts(&status);
            let object = api
                .patch(&id.name, &params.force(), &Patch::Apply(desired))
                .await?;
            Ok(DryRun {
                object: to_value(object),
                conflicts,
            })
        }
        Err(error) => Err(error.into()),
    }
}

/// The managers and fields in a 409 apply conflict. The server lists each
/// as a cause: `conflict with "kubectl-edit" using apps/v1` on `.spec.replicas`.
pub fn parse_conflicts(status: &kube::core::Status) -> Vec<FieldConflict> {
    let causes = status
        .details
        .as_ref()
        .map(|d| d.causes.as_slice())
        .unwrap_or(&[]);
    let mut conflicts: Vec<FieldConflict> = causes
        .iter()
        .map(|cause| FieldConflict {
            manager: cause
                .message
                .split('"')
                .nth(1)
                .unwrap_or("unknown manager")
                .to_string(),
            field: cause.field.clone(),
        })
        .collect();
    if conflicts.is_empty() {
        conflicts.push(FieldConflict {
            manager: status
                .message
                .split('"')
                .nth(1)
                .unwrap_or("unknown manager")
                .to_string(),
            field: String::new(),
        });
    }
    conflicts
}

/// The application's live objects of the given kinds, by one LIST per kind
/// and namespace with the application's label selector.
async fn list_live(
    client: &kube::Client,
    app: &AppIdentity,
    wanted: impl Iterator<Item = (ObjectId, Kind)>,
    concurrency: usize,
) -> Result<HashMap<ObjectId, Value>, PlanError> {
    // One LIST per (group, version, plural, namespace).
    type ListKey = (String, String, String, Option<String>);
    let mut groups: BTreeMap<ListKey, (Kind, Vec<ObjectId>)> = BTreeMap::new();
    for (id, kind) in wanted {
        let namespace = if kind.namespaced {
            id.namespace.clone()
        } else {
            None
        };
        let key = (
            kind.resource.group.clone(),
            kind.resource.version.clone(),
            kind.resource.plural.clone(),
            namespace,
        );
        groups
            .entry(key)
            .or_insert_with(|| (kind, Vec::new()))
            .1
            .push(id);
    }
    let selector = app.selector();
    let lists: Vec<Result<Vec<(ObjectId, Value)>, PlanError>> =
        stream::iter(groups.into_values().map(|(kind, ids)| {
            let selector = selector.clone();
            async move {
                let api = api_for(client, &ids[0], &kind);
                let list = api
                    .list(&ListParams::default().labels(&selector))
                    .await
                    .map_err(|e| PlanError::List {
                        what: format!(
                            "{} in {}",
                            kind.resource.plural,
                            ids[0].namespace.as_deref().unwrap_or("the cluster")
                        ),
                        source: e.into(),
                    })?;
                let by_name: HashMap<String, DynamicObject> = list
                    .items
                    .into_iter()
                    .filter_map(|o| o.metadata.name.clone().map(|n| (n, o)))
                    .collect();
                // List items carry no apiVersion/kind; the diff needs them.
                let with_type = |object: DynamicObject| {
                    let mut value = to_value(object);
                    value["apiVersion"] = kind.resource.api_version.clone().into();
                    value["kind"] = kind.resource.kind.clone().into();
                    value
                };
                Ok(ids
                    .into_iter()
                    .filter_map(|id| by_name.get(&id.name).cloned().map(|o| (id, with_type(o))))
                    .collect())
            }
        }))
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    let mut live = HashMap::new();
    for list in lists {
        live.extend(list?);
    }
    Ok(live)
}

/// `(group, kind)` → namespaced, for every CRD in the desired set.
pub fn kinds_defined_by_crds(desired: &[RenderedObject]) -> HashMap<(String, String), bool> {
    desired
        .iter()
        .filter(|o| super::order::is_crd(&o.id))
        .filter_map(|o| {
            let spec = &o.object["spec"];
            Some((
                (
                    spec["group"].as_str()?.to_string(),
                    spec["names"]["kind"].as_str()?.to_string(),
                ),
                spec["scope"] != "Cluster",
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn live(digest: &str, managed: Value) -> Value {
        json!({ "metadata": { "annotations": { ANNOTATION_DIGEST: digest }, "managedFields": managed } })
    }

    #[test]
    fn an_unknown_kind_names_the_versions_the_server_serves_it_in() {
        let moved = unknown_kind_reason(
            "policy/v1beta1",
            "PodDisruptionBudget",
            &["policy/v1".to_string()],
        );
        assert!(
            moved.contains("the server serves PodDisruptionBudget as policy/v1"),
            "{moved}"
        );
        let unknown = unknown_kind_reason("example.com/v1", "Widget", &[]);
        assert!(unknown.contains("install the CRD first"), "{unknown}");
    }

    #[test]
    fn an_object_untouched_since_windlass_applied_it_needs_no_dry_run() {
        let fields = json!([
            { "manager": "windlass", "operation": "Apply", "time": "2026-11-23T10:00:00Z" },
            { "manager": "kube-controller-manager", "operation": "Update", "subresource": "status", "time": "2026-11-23T10:05:00Z" },
            { "manager": "kubectl-create", "operation": "Update", "time": "2026-11-23T09:00:00Z" },
        ]);
        assert!(untouched_since_applied(&live("abc", fields.clone()), "abc"));
        assert!(!untouched_since_applied(
            &live("abc", fields),
            "other-digest"
        ));
    }

    #[test]
    fn a_scale_through_the_scale_subresource_forces_a_dry_run() {
        let fields = json!([
            { "manager": "windlass", "operation": "Apply", "time": "2026-11-23T10:00:00Z" },
            { "manager": "kubectl", "operation": "Update", "subresource": "scale" },
        ]);
        assert!(!untouched_since_applied(&live("abc", fields), "abc"));
    }

    #[test]
    fn a_hand_edit_after_the_apply_forces_a_dry_run() {
        let fields = json!([
            { "manager": "windlass", "operation": "Apply", "time": "2026-11-23T10:00:00Z" },
            { "manager": "kubectl-edit", "operation": "Update", "time": "2026-11-23T10:00:00Z" },
        ]);
        assert!(!untouched_since_applied(&live("abc", fields), "abc"));
        assert!(
            !untouched_since_applied(&live("abc", json!([])), "abc"),
            "never applied by windlass"
        );
    }

    #[test]
    fn debug_of_a_change_never_prints_object_contents() {
        let secret = json!({ "kind": "Secret", "data": { "password": "aHVudGVyMg==" } });
        let change = Change {
            id: ObjectId {
                group: String::new(),
                version: "v1".into(),
                kind: "Secret".into(),
                namespace: Some("ns".into()),
                name: "db".into(),
            },
            action: Action::Update,
            desired: secret.clone(),
            digest: "d".into(),
            live: Some(secret.clone()),
            dry_run: Some(secret),
            conflicts: Vec::new(),
            kind: None,

            ignored: Vec::new(),
        };
        assert!(!format!("{change:?}").contains("aHVudGVyMg=="));
    }

    #[test]
    fn conflicts_name_the_other_manager_and_field() {
        let status: kube::core::Status = serde_json::from_value(json!({
            "status": "Failure", "code": 409, "reason": "Conflict",
            "message": "Apply failed with 1 conflict: conflict with \"hand-edit\" using apps/v1: .spec.replicas",
            "details": { "causes": [ { "reason": "FieldManagerConflict", "message": "conflict with \"hand-edit\" using apps/v1", "field": ".spec.replicas" } ] }
        }))
        .unwrap();
        assert_eq!(
            parse_conflicts(&status),
            vec![FieldConflict {
                manager: "hand-edit".into(),
                field: ".spec.replicas".into()
            }]
        );
    }
}
