//! The order objects are applied in, as phases. Objects within one phase
//! are applied concurrently; a phase starts when the previous one is done.
//!
//! ```text
//!   1 Foundations   Namespace, CustomResourceDefinition  (then: wait for CRDs
//!                                                        Established, refresh discovery)
//!   2 ClusterRbac   ClusterRole, ClusterRoleBinding
//!   3 Workloads     everything else
//!   4 Webhooks      Validating/MutatingWebhookConfiguration,
//!                   ValidatingAdmissionPolicy(Binding)
//! ```
//!
//! Webhooks go last so that a webhook whose service is part of the same
//! application cannot block the application's own objects.
//!
//! Prune runs in the reverse order, after everything has applied.

use crate::render::ObjectId;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Phase {
    Foundations,
    ClusterRbac,
    Workloads,
    Webhooks,
}

impl Phase {
    pub const ALL: [Phase; 4] = [
        Phase::Foundations,
        Phase::ClusterRbac,
        Phase::Workloads,
        Phase::Webhooks,
    ];

    pub fn of(id: &ObjectId) -> Phase {
        match (id.group.as_str(), id.kind.as_str()) {
            ("", "Namespace") | ("apiextensions.k8s.io", "CustomResourceDefinition") => {
                Phase::Foundations
            }
            ("rbac.authorization.k8s.io", "ClusterRole" | "ClusterRoleBinding") => {
                Phase::ClusterRbac
            }
            (
                "admissionregistration.k8s.io",
                "ValidatingWebhookConfiguration"
                | "MutatingWebhookConfiguration"
                | "ValidatingAdmissionPolicy"
                | "ValidatingAdmissionPolicyBinding"
                | "MutatingAdmissionPolicy"
                | "MutatingAdmissionPolicyBinding",
            ) => Phase::Webhooks,
            _ => Phase::Workloads,
        }
    }
}

/// Whether `id` is a CustomResourceDefinition (applying one changes what
/// discovery knows).
pub fn is_crd(id: &ObjectId) -> bool {
    id.group == "apiextensions.k8s.io" && id.kind == "CustomResourceDefinition"
}

/// Groups items into phases, keeping their order within a phase.
pub fn by_phase<T>(items: Vec<T>, id: impl Fn(&T) -> &ObjectId) -> Vec<(Phase, Vec<T>)> {
    let mut phases: Vec<(Phase, Vec<T>)> = Phase::ALL.iter().map(|p| (*p, Vec::new())).collect();
    for item in items {
        let phase = Phase::of(id(&item));
        phases[phase as usize].1.push(item);
    }
    phases.retain(|(_, items)| !items.is_empty());
    phases
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(group: &str, kind: &str) -> ObjectId {
        ObjectId {
            group: group.into(),
            version: "v1".into(),
            kind: kind.into(),
            namespace: None,
            name: kind.to_lowercase(),
        }
    }

    #[test]
    fn phases_follow_the_documented_order() {
        let objects = vec![
            id(
                "admissionregistration.k8s.io",
                "ValidatingWebhookConfiguration",
            ),
            id("apps", "Deployment"),
            id("rbac.authorization.k8s.io", "ClusterRole"),
            id("", "ConfigMap"),
            id("apiextensions.k8s.io", "CustomResourceDefinition"),
            id("", "Namespace"),
            id("rbac.authorization.k8s.io", "Role"),
        ];
        let phases = by_phase(objects, |o| o);
        let kinds: Vec<(Phase, Vec<&str>)> = phases
            .iter()
            .map(|(p, items)| (*p, items.iter().map(|o| o.kind.as_str()).collect()))
            .collect();
        assert_eq!(
            kinds,
            vec![
                (
                    Phase::Foundations,
                    vec!["CustomResourceDefinition", "Namespace"]
                ),
                (Phase::ClusterRbac, vec!["ClusterRole"]),
                (Phase::Workloads, vec!["Deployment", "ConfigMap", "Role"]),
                (Phase::Webhooks, vec!["ValidatingWebhookConfiguration"]),
            ]
        );
    }

    #[test]
    fn a_kind_in_another_group_is_not_special() {
        assert_eq!(Phase::of(&id("example.com", "Namespace")), Phase::Workloads);
        assert!(!is_crd(&id("example.com", "CustomResourceDefinition")));
    }
}
