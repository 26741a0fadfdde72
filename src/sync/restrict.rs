//! An Application's `spec.restrictions`: which rendered objects it may hold.
//!
//! ```text
//!   rendered objects + Restrictions + destination namespace
//!        ──check──► Ok(())  |  Err(Refused { every object outside, and why })
//! ```
//!
//! Pull-request previews render whatever a pull request (perhaps from a
//! fork) puts in the repository, so their generated Applications are
//! confined to their own namespace: a cluster-scoped object (ClusterRole,
//! Namespace, CRD, webhook...) or an object in another namespace would reach
//! beyond it. The check runs after rendering and before planning, so `windlass
//! diff`, `windlass sync` and the controller all refuse before anything is
//! written. Pure: no cluster, no git.

use crate::render::RenderedObject;
use crate::render::object::ObjectId;
use crate::spec::Restrictions;

/// Objects the restrictions refuse; the message names each of them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{} outside the application's restrictions (spec.restrictions: only namespaced objects in \
     namespace {namespace}):\n{}\nremove them from the source, or list their kinds in \
     allowKinds (a Preview's spec.allowKinds)",
    count(.objects.len()), list(.objects)
)]
pub struct Refused {
    /// The destination namespace.
    pub namespace: String,
    pub objects: Vec<RefusedObject>,
}

/// One refused object and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusedObject {
    pub id: ObjectId,
    /// Where it came from (`template \`clusterrole.yaml\` document 1`).
    pub source: String,
    pub why: Why,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Why {
    ClusterScoped,
    OtherNamespace(String),
}

fn count(n: usize) -> String {
    match n {
        1 => "1 object is".to_string(),
        n => format!("{n} objects are"),
    }
}

fn list(objects: &[RefusedObject]) -> String {
    objects
        .iter()
        .map(|o| {
            let why = match &o.why {
                Why::ClusterScoped => "cluster-scoped".to_string(),
                Why::OtherNamespace(namespace) => format!("in namespace {namespace}"),
            };
            format!(
                "  - {} {} ({why}; from {})",
                kind_name(&o.id),
                o.id.name,
                o.source
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `ClusterRole.rbac.authorization.k8s.io`, `ConfigMap`.
fn kind_name(id: &ObjectId) -> String {
    if id.group.is_empty() {
        id.kind.clone()
    } else {
        format!("{}.{}", id.kind, id.group)
    }
}

/// Whether `allowed` (`Kind` or `Kind.group`) names the object's kind.
fn allows(allowed: &str, id: &ObjectId) -> bool {
    match allowed.split_once('.') {
        None => allowed == id.kind,
        Some((kind, group)) => kind == id.kind && group == id.group,
    }
}

/// Every object `restrictions` refuse for destination `namespace`, or
/// `Ok(())`. Rendered objects have their namespace defaulted already: a
/// cluster-scoped object is one without a namespace.
pub fn check(
    objects: &[RenderedObject],
    restrictions: &Restrictions,
    namespace: &str,
) -> Result<(), Refused> {
    if !restrictions.destination_namespace_only {
        return Ok(());
    }
    let refused: Vec<RefusedObject> = objects
        .iter()
        .filter(|o| !restrictions.allow_kinds.iter().any(|k| allows(k, &o.id)))
        .filter_map(|o| {
            let why = match &o.id.namespace {
                None => Why::ClusterScoped,
                Some(other) if other != namespace => Why::OtherNamespace(other.clone()),
                Some(_) => return None,
            };
            Some(RefusedObject {
                id: o.id.clone(),
                source: o.source.to_string(),
                why,
            })
        })
        .collect();
    if refused.is_empty() {
        Ok(())
    } else {
        Err(Refused {
            namespace: namespace.to_string(),
            objects: refused,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::object::ObjectSource;

    fn object(group: &str, kind: &str, namespace: Option<&str>, name: &str) -> RenderedObject {
        RenderedObject {
            id: ObjectId {
                group: group.into(),
                version: "v1".into(),
                kind: kind.into(),
                namespace: namespace.map(str::to_string),
                name: name.into(),
            },
            object: serde_json::json!({}),
            source: ObjectSource {
                path: format!("{}.yaml", kind.to_lowercase()),
                template: false,
                document: 1,
                item: None,
            },
            digest: String::new(),
        }
    }

    fn confined(allow: &[&str]) -> Restrictions {
        Restrictions {
            destination_namespace_only: true,
            allow_kinds: allow.iter().map(|k| k.to_string()).collect(),
        }
    }

    #[test]
    fn namespaced_objects_in_the_destination_pass() {
        let objects = [
            object("", "ConfigMap", Some("web-pr-7"), "settings"),
            object("apps", "Deployment", Some("web-pr-7"), "web"),
            object("rbac.authorization.k8s.io", "Role", Some("web-pr-7"), "r"),
        ];
        assert_eq!(check(&objects, &confined(&[]), "web-pr-7"), Ok(()));
    }

    #[test]
    fn cluster_scoped_and_foreign_objects_are_refused_by_name() {
        let objects = [
            object("", "ConfigMap", Some("web-pr-7"), "settings"),
            object("rbac.authorization.k8s.io", "ClusterRole", None, "reader"),
            object("", "Secret", Some("kube-system"), "stolen"),
            object("", "Namespace", None, "elsewhere"),
        ];
        let refused = check(&objects, &confined(&[]), "web-pr-7").unwrap_err();
        let names: Vec<&str> = refused.objects.iter().map(|o| o.id.name.as_str()).collect();
        assert_eq!(names, ["reader", "stolen", "elsewhere"]);
        assert_eq!(
            refused.objects[1].why,
            Why::OtherNamespace("kube-system".into())
        );
        let message = refused.to_string();
        assert!(message.starts_with("3 objects are outside"), "{message}");
        assert!(
            message.contains(
                "ClusterRole.rbac.authorization.k8s.io reader (cluster-scoped; from \
                 `clusterrole.yaml` document 1)"
            ),
            "{message}"
        );
        assert!(
            message.contains("Secret stolen (in namespace kube-system"),
            "{message}"
        );
        assert!(message.contains("namespace web-pr-7"), "{message}");
    }

    #[test]
    fn allowed_kinds_pass_by_kind_or_kind_and_group() {
        let objects = [
            object("rbac.authorization.k8s.io", "ClusterRole", None, "reader"),
            object("example.com", "ClusterRole", None, "other-group"),
            object("", "Namespace", None, "extra"),
        ];
        let refused = check(
            &objects,
            &confined(&["ClusterRole.rbac.authorization.k8s.io", "Namespace"]),
            "ns",
        )
        .unwrap_err();
        let names: Vec<&str> = refused.objects.iter().map(|o| o.id.name.as_str()).collect();
        assert_eq!(names, ["other-group"]);
        assert!(check(&objects[..1], &confined(&["ClusterRole"]), "ns").is_ok());
    }

    #[test]
    fn without_destination_namespace_only_everything_passes() {
        let objects = [object("", "Namespace", None, "anything")];
        assert_eq!(check(&objects, &Restrictions::default(), "ns"), Ok(()));
    }
}
