//! `spec.ignoreDifferences`: fields windlass leaves to someone else (an
//! HPA's `/spec/replicas`, a mesh's injected sidecars). Pure.
//!
//! ```text
//!   rules ─┬─ jsonPointers ─► strip(desired): the fields leave the desired objects
//!          │                  before plan and apply, so windlass neither sets nor owns
//!          │                  them, never reports them as drift, never takes them back
//!          └─ managers ─────► manager_paths(live): fields those managers own in the live
//!                             object leave the desired object the same way (in plan)
//! ```
//!
//! An object a rule changed gets the digest of what is applied, so the
//! cheap "unchanged" check stays exact.

use serde_json::Value;

use crate::render::{ObjectId, RenderedObject};
use crate::spec::IgnoreDifference;

/// A field left out of an object, for `windlass diff`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ignored {
    pub id: ObjectId,
    pub pointer: String,
}

/// Whether `rule` applies to `id`.
pub fn matches(rule: &IgnoreDifference, id: &ObjectId) -> bool {
    rule.group.as_deref().unwrap_or("") == id.group
        && rule.kind == id.kind
        && rule.name.as_ref().is_none_or(|n| *n == id.name)
        && rule
            .namespace
            .as_ref()
            .is_none_or(|ns| Some(ns) == id.namespace.as_ref())
}

/// Removes every rule's JSON pointers from the objects they match;
/// recomputes the digests of the objects changed. Returns what was removed
/// (pointers that name nothing in an object are not listed).
pub fn strip(rules: &[IgnoreDifference], objects: &mut [RenderedObject]) -> Vec<Ignored> {
    let mut ignored = Vec::new();
    for object in objects.iter_mut() {
        let mut changed = false;
        for rule in rules.iter().filter(|r| matches(r, &object.id)) {
            for pointer in &rule.json_pointers {
                if remove_pointer(&mut object.object, pointer) {
                    changed = true;
                    ignored.push(Ignored {
                        id: object.id.clone(),
                        pointer: pointer.clone(),
                    });
                }
            }
        }
        if changed {
            object.digest = crate::render::object::digest(&object.object);
        }
    }
    ignored
}

/// Removes the value at an RFC 6901 pointer; whether there was one.
pub fn remove_pointer(value: &mut Value, pointer: &str) -> bool {
    let Some((parent, last)) = pointer.rsplit_once('/') else {
        return false;
    };
    let last = unescape(last);
    let parent = if parent.is_empty() {
        Some(value)
    } else {
        value.pointer_mut(parent)
    };
    match parent {
        Some(Value::Object(map)) => map.remove(&last).is_some(),
        Some(Value::Array(items)) => match last.parse::<usize>() {
            Ok(index) if index < items.len() => {
                items.remove(index);
                true
            }
            _ => false,
        },
        _ => false,
    }
}

fn unescape(token: &str) -> String {
    token.replace("~1", "/").replace("~0", "~")
}

/// The JSON pointers of the fields `managers` own in a live object, from its
/// `managedFields` (`fieldsV1`). Fields inside list items (`k:`, `v:`, `i:`
/// keys) are not ignored: leaving out a whole list would drop windlass's own
/// items from it (name such fields with `jsonPointers` instead).
pub fn manager_paths(live: &Value, managers: &[String]) -> Vec<String> {
    let mut paths = Vec::new();
    let entries = live["metadata"]["managedFields"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    for entry in entries {
        let manager = entry["manager"].as_str().unwrap_or_default();
        if !managers.iter().any(|m| m == manager) || entry["subresource"] == "status" {
            continue;
        }
        collect(&entry["fieldsV1"], String::new(), &mut paths);
    }
    paths.sort();
    paths.dedup();
    paths
}

fn collect(fields: &Value, prefix: String, out: &mut Vec<String>) {
    let Some(map) = fields.as_object() else {
        return;
    };
    if map.keys().any(|k| !k.starts_with("f:") && k != ".") {
        return; // list items: see above
    }
    let children: Vec<_> = map.iter().filter(|(k, _)| k.starts_with("f:")).collect();
    if children.is_empty() {
        if !prefix.is_empty() {
            out.push(prefix); // a leaf
        }
        return;
    }
    for (key, child) in children {
        let name = &key[2..];
        let token = name.replace('~', "~0").replace('/', "~1");
        collect(child, format!("{prefix}/{token}"), out);
    }
}

/// [`strip`] for one object by pointers known at plan time (from
/// [`manager_paths`]); returns the pointers removed.
pub fn strip_pointers(object: &mut Value, pointers: &[String]) -> Vec<String> {
    pointers
        .iter()
        .filter(|p| remove_pointer(object, p))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rule(kind: &str, pointers: &[&str]) -> IgnoreDifference {
        IgnoreDifference {
            group: Some("apps".into()),
            kind: kind.into(),
            json_pointers: pointers.iter().map(|p| p.to_string()).collect(),
            ..IgnoreDifference::default()
        }
    }

    fn deployment(name: &str) -> RenderedObject {
        let object = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": "a", "annotations": {"x/y": "1"}},
            "spec": {"replicas": 3, "template": {"spec": {"containers": [{"name": "c"}, {"name": "sidecar"}]}}}
        });
        RenderedObject {
            id: ObjectId {
                group: "apps".into(),
                version: "v1".into(),
                kind: "Deployment".into(),
                namespace: Some("a".into()),
                name: name.into(),
            },
            digest: crate::render::object::digest(&object),
            object,
            source: crate::render::ObjectSource {
                path: "d.yaml".into(),
                template: false,
                document: 1,
                item: None,
            },
        }
    }

    #[test]
    fn pointers_leave_the_matching_objects_and_change_their_digest() {
        let mut objects = vec![deployment("web"), deployment("db")];
        let before = objects[0].digest.clone();
        let mut only_web = rule("Deployment", &["/spec/replicas", "/spec/nothing"]);
        only_web.name = Some("web".into());
        let ignored = strip(&[only_web], &mut objects);
        assert_eq!(
            ignored,
            vec![Ignored {
                id: objects[0].id.clone(),
                pointer: "/spec/replicas".into()
            }]
        );
        assert!(objects[0].object["spec"].get("replicas").is_none());
        assert_ne!(objects[0].digest, before);
        assert_eq!(objects[1].object["spec"]["replicas"], 3, "db is not named");
    }

    #[test]
    fn pointers_escape_slashes_and_index_lists() {
        let mut object = deployment("web").object;
        assert!(remove_pointer(&mut object, "/metadata/annotations/x~1y"));
        assert!(remove_pointer(
            &mut object,
            "/spec/template/spec/containers/1"
        ));
        assert_eq!(
            object["spec"]["template"]["spec"]["containers"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
        assert!(!remove_pointer(
            &mut object,
            "/spec/template/spec/containers/5"
        ));
        assert!(!remove_pointer(&mut object, "no-slash"));
    }

    #[test]
    fn a_rule_matches_group_kind_and_optionally_name_and_namespace() {
        let id = deployment("web").id;
        assert!(matches(&rule("Deployment", &[]), &id));
        assert!(!matches(&rule("StatefulSet", &[]), &id));
        let mut other_namespace = rule("Deployment", &[]);
        other_namespace.namespace = Some("b".into());
        assert!(!matches(&other_namespace, &id));
        let mut core = rule("Deployment", &[]);
        core.group = None;
        assert!(!matches(&core, &id), "no group means the core group");
    }

    #[test]
    fn fields_a_manager_owns_become_pointers() {
        let live = json!({"metadata": {"managedFields": [
            {"manager": "windlass", "operation": "Apply", "fieldsV1": {"f:spec": {"f:template": {}}}},
            {"manager": "horizontal-pod-autoscaler", "operation": "Update", "subresource": "scale",
             "fieldsV1": {"f:spec": {"f:replicas": {}}}},
            {"manager": "istio", "operation": "Update",
             "fieldsV1": {"f:spec": {"f:template": {"f:spec": {"f:containers": {"k:{\"name\":\"istio-proxy\"}": {".": {}}}}}}}}
        ]}});
        assert_eq!(
            manager_paths(&live, &["horizontal-pod-autoscaler".into()]),
            vec!["/spec/replicas"]
        );
        assert!(
            manager_paths(&live, &["istio".into()]).is_empty(),
            "list items are not ignored whole"
        );
        assert!(manager_paths(&live, &["nobody".into()]).is_empty());
    }
}
