//! Drift: live objects that differ from the revision windlass last applied.
//!
//! ```text
//!   Plan of the last applied desired state ──► Drift { objects: [DriftedObject] }
//!     Create  (the object is gone)              what: missing
//!     Update  (the dry-run differs from live)   what: modified, fields, managers
//! ```
//!
//! A plan only means drift when the desired state is the one already
//! applied (same manifest digest); otherwise its changes are a new revision.
//! The interval reconcile builds a `Drift` from each plan; watch-based drift
//! detection can build the same value from a watch event's object.

use serde_json::Value;

use super::diff::display_name;
use super::plan::{Action, Plan};
use crate::identity::FIELD_MANAGER;
use crate::render::ObjectId;

/// How one object drifted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriftedObject {
    pub id: ObjectId,
    pub missing: bool,
    /// Fields another manager now owns that windlass sets (`.spec.replicas`).
    pub fields: Vec<String>,
    /// The field managers that wrote the object after windlass (`kubectl-edit`).
    pub managers: Vec<String>,
}

impl DriftedObject {
    /// `apps/v1 Deployment team-a/web: .spec.replicas by kubectl-edit`.
    pub fn describe(&self) -> String {
        let name = display_name(&self.id);
        if self.missing {
            return format!("{name}: deleted");
        }
        let mut text = format!("{name}: modified");
        if !self.fields.is_empty() {
            text = format!("{name}: {}", self.fields.join(", "));
        }
        if !self.managers.is_empty() {
            text.push_str(&format!(" by {}", self.managers.join(", ")));
        }
        text
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Drift {
    pub objects: Vec<DriftedObject>,
}

impl Drift {
    /// The drift a plan of the already-applied desired state shows.
    pub fn from_plan(plan: &Plan) -> Drift {
        let objects = plan
            .changes
            .iter()
            .filter_map(|change| match change.action {
                Action::Create => Some(DriftedObject {
                    id: change.id.clone(),
                    missing: true,
                    fields: Vec::new(),
                    managers: Vec::new(),
                }),
                Action::Update => {
                    let mut fields: Vec<String> =
                        change.conflicts.iter().map(|c| c.field.clone()).collect();
                    fields.dedup();
                    let mut managers: Vec<String> =
                        change.conflicts.iter().map(|c| c.manager.clone()).collect();
                    if let Some(live) = &change.live {
                        managers.extend(writers_after_windlass(live));
                    }
                    managers.sort();
                    managers.dedup();
                    Some(DriftedObject {
                        id: change.id.clone(),
                        missing: false,
                        fields,
                        managers,
                    })
                }
                Action::Unchanged | Action::Deferred => None,
            })
            .collect();
        Drift { objects }
    }

    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }

    /// Every field manager that changed a drifted object, sorted.
    pub fn managers(&self) -> Vec<String> {
        let mut managers: Vec<String> = self
            .objects
            .iter()
            .flat_map(|o| o.managers.iter().cloned())
            .collect();
        managers.sort();
        managers.dedup();
        managers
    }

    /// One line for a condition or an Event: the first few objects, then a count.
    pub fn summary(&self, shown: usize) -> String {
        let mut lines: Vec<String> = self
            .objects
            .iter()
            .take(shown)
            .map(DriftedObject::describe)
            .collect();
        if self.objects.len() > shown {
            lines.push(format!("and {} more", self.objects.len() - shown));
        }
        format!(
            "{} object(s) differ from the applied revision: {}",
            self.objects.len(),
            lines.join("; ")
        )
    }
}

/// Managers other than windlass whose writes (not to `status`) are at or
/// after windlass's last apply.
fn writers_after_windlass(live: &Value) -> Vec<String> {
    let entries = live["metadata"]["managedFields"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let ours = entries
        .iter()
        .filter(|e| e["manager"] == FIELD_MANAGER)
        .filter_map(|e| e["time"].as_str())
        .max()
        .unwrap_or("");
    entries
        .iter()
        .filter(|e| {
            e["manager"] != FIELD_MANAGER
                && e["subresource"] != "status"
                && e["time"].as_str().is_none_or(|t| t >= ours)
        })
        .filter_map(|e| e["manager"].as_str().map(str::to_string))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::AppIdentity;
    use crate::sync::plan::{Change, FieldConflict};
    use serde_json::json;

    fn id(name: &str) -> ObjectId {
        ObjectId {
            group: "apps".into(),
            version: "v1".into(),
            kind: "Deployment".into(),
            namespace: Some("team-a".into()),
            name: name.into(),
        }
    }

    fn change(name: &str, action: Action, live: Option<Value>) -> Change {
        Change {
            id: id(name),
            action,
            desired: json!({}),
            digest: String::new(),
            live,
            dry_run: None,
            conflicts: Vec::new(),
            kind: None,

            ignored: Vec::new(),
        }
    }

    fn plan(changes: Vec<Change>) -> Plan {
        Plan {
            app: AppIdentity::new("team-a", "web"),
            changes,
            rejected: Vec::new(),
            prune: Vec::new(),
            prune_live: Default::default(),
            prune_refused: None,
        }
    }

    #[test]
    fn unchanged_objects_are_not_drift() {
        let drift = Drift::from_plan(&plan(vec![change("a", Action::Unchanged, None)]));
        assert!(drift.is_empty());
    }

    #[test]
    fn a_deleted_object_and_a_hand_edit_are_drift_with_fields_and_managers() {
        let live = json!({"metadata": {"managedFields": [
            {"manager": "windlass", "operation": "Apply", "time": "2026-11-23T10:00:00Z"},
            {"manager": "kube-controller-manager", "operation": "Update", "subresource": "status", "time": "2026-11-23T10:05:00Z"},
            {"manager": "old-tool", "operation": "Update", "time": "2026-11-23T09:00:00Z"},
            {"manager": "kubectl-edit", "operation": "Update", "time": "2026-11-23T10:06:00Z"},
        ]}});
        let mut edited = change("web", Action::Update, Some(live));
        edited.conflicts = vec![FieldConflict {
            manager: "kubectl-edit".into(),
            field: ".spec.replicas".into(),
        }];
        let drift = Drift::from_plan(&plan(vec![
            edited,
            change("gone", Action::Create, None),
            change("same", Action::Unchanged, None),
        ]));
        assert_eq!(drift.objects.len(), 2);
        assert_eq!(
            drift.objects[0].describe(),
            "apps/v1 Deployment team-a/web: .spec.replicas by kubectl-edit"
        );
        assert_eq!(
            drift.objects[1].describe(),
            "apps/v1 Deployment team-a/gone: deleted"
        );
        assert_eq!(
            drift.summary(1),
            "2 object(s) differ from the applied revision: apps/v1 Deployment team-a/web: \
             .spec.replicas by kubectl-edit; and 1 more"
        );
    }
}
