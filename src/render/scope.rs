//! Which kinds are namespaced, and what that means for a rendered object.
//!
//! ```text
//!   (group, kind) ──► 1. CRDs in this same render (spec.scope)
//!                     2. the caller's ScopeLookup (with a cluster: discovery)
//!                     3. the built-in table of core cluster-scoped kinds
//!                     4. otherwise: namespaced
//! ```
//!
//! The built-in table is generated from k8s-openapi's resource types, and a
//! compile-time check proves each listed kind is cluster-scoped there. A kind
//! nobody knows (a custom resource whose CRD is neither in the render nor
//! passed in) is taken as namespaced, as most custom resources are; with a
//! cluster, discovery answers instead.
//!
//! Then: a namespaced object without `metadata.namespace` gets the
//! destination namespace; a cluster-scoped object with one is an error.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::Resource;
use serde_json::Value;

/// Answers "is this kind namespaced?" for kinds the caller knows, for
/// example from API discovery.
pub trait ScopeLookup: Send + Sync {
    /// `Some(true)`: namespaced, `Some(false)`: cluster-scoped, `None`: unknown.
    fn is_namespaced(&self, group: &str, kind: &str) -> Option<bool>;
}

/// A fixed table: `(group, kind) → namespaced`.
impl ScopeLookup for BTreeMap<(String, String), bool> {
    fn is_namespaced(&self, group: &str, kind: &str) -> Option<bool> {
        self.get(&(group.to_string(), kind.to_string())).copied()
    }
}

impl ScopeLookup for HashMap<(String, String), bool> {
    fn is_namespaced(&self, group: &str, kind: &str) -> Option<bool> {
        self.get(&(group.to_string(), kind.to_string())).copied()
    }
}

/// Compile-time scope of a k8s-openapi resource type.
trait IsNamespaced {
    const NAMESPACED: bool;
}

impl IsNamespaced for k8s_openapi::ClusterResourceScope {
    const NAMESPACED: bool = false;
}

impl IsNamespaced for k8s_openapi::NamespaceResourceScope {
    const NAMESPACED: bool = true;
}

macro_rules! cluster_scoped {
    ($($ty:ty),* $(,)?) => {{
        $( const _: () = assert!(!<<$ty as Resource>::Scope as IsNamespaced>::NAMESPACED); )*
        &[ $( (<$ty as Resource>::GROUP, <$ty as Resource>::KIND) ),* ]
    }};
}

/// Core cluster-scoped kinds as `(group, kind)`, from k8s-openapi (API 1.37).
pub const BUILTIN_CLUSTER_SCOPED: &[(&str, &str)] = {
    use k8s_openapi::api::{
        admissionregistration::v1 as admission, apiserverinternal::v1alpha1 as apiserverinternal,
        authentication::v1 as authentication, authorization::v1 as authorization,
        certificates::v1 as certificates, core::v1 as core, flowcontrol::v1 as flowcontrol,
        networking::v1 as networking, node::v1 as node, rbac::v1 as rbac, resource::v1 as resource,
        resource::v1alpha3 as resource_alpha, scheduling::v1 as scheduling, storage::v1 as storage,
        storagemigration::v1 as storagemigration,
    };
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1 as apiextensions;
    use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1 as apiregistration;
    cluster_scoped![
        core::Namespace,
        core::Node,
        core::PersistentVolume,
        core::ComponentStatus,
        rbac::ClusterRole,
        rbac::ClusterRoleBinding,
        apiextensions::CustomResourceDefinition,
        apiregistration::APIService,
        scheduling::PriorityClass,
        admission::ValidatingWebhookConfiguration,
        admission::MutatingWebhookConfiguration,
        admission::ValidatingAdmissionPolicy,
        admission::ValidatingAdmissionPolicyBinding,
        admission::MutatingAdmissionPolicy,
        admission::MutatingAdmissionPolicyBinding,
        networking::IngressClass,
        networking::IPAddress,
        networking::ServiceCIDR,
        node::RuntimeClass,
        storage::CSIDriver,
        storage::CSINode,
        storage::StorageClass,
        storage::VolumeAttachment,
        storage::VolumeAttributesClass,
        certificates::CertificateSigningRequest,
        certificates::ClusterTrustBundle,
        flowcontrol::FlowSchema,
        flowcontrol::PriorityLevelConfiguration,
        resource::DeviceClass,
        resource::DeviceTaintRule,
        resource::ResourceSlice,
        resource_alpha::ResourcePoolStatusRequest,
        storagemigration::StorageVersionMigration,
        apiserverinternal::StorageVersion,
        authentication::TokenReview,
        authentication::SelfSubjectReview,
        authorization::SubjectAccessReview,
        authorization::SelfSubjectAccessReview,
        authorization::SelfSubjectRulesReview,
    ]
};

/// Decides scopes for one render.
pub(crate) struct Scopes<'a> {
    /// `(group, kind) → namespaced` from CRDs in the render.
    from_render: HashMap<(String, String), bool>,
    caller: Option<&'a dyn ScopeLookup>,
}

impl<'a> Scopes<'a> {
    /// Learns the scopes the render's own CRDs declare.
    pub fn new<'v>(
        objects: impl IntoIterator<Item = &'v Value>,
        caller: Option<&'a dyn ScopeLookup>,
    ) -> Scopes<'a> {
        let mut from_render = HashMap::new();
        for object in objects {
            let is_crd = object["kind"] == "CustomResourceDefinition"
                && object["apiVersion"]
                    .as_str()
                    .is_some_and(|v| v.starts_with("apiextensions.k8s.io/"));
            if !is_crd {
                continue;
            }
            let spec = &object["spec"];
            if let (Some(group), Some(kind), Some(scope)) = (
                spec["group"].as_str(),
                spec["names"]["kind"].as_str(),
                spec["scope"].as_str(),
            ) {
                from_render.insert((group.to_string(), kind.to_string()), scope != "Cluster");
            }
        }
        Scopes {
            from_render,
            caller,
        }
    }

    pub fn is_namespaced(&self, group: &str, kind: &str) -> bool {
        if !self.from_render.is_empty()
            && let Some(namespaced) = self.from_render.get(&(group.to_string(), kind.to_string()))
        {
            return *namespaced;
        }
        if let Some(namespaced) = self.caller.and_then(|c| c.is_namespaced(group, kind)) {
            return namespaced;
        }
        // Kind first: it tells the entries apart sooner than the group.
        !BUILTIN_CLUSTER_SCOPED
            .iter()
            .any(|&(g, k)| k == kind && g == group)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn builtin_table_knows_core_cluster_kinds_and_not_namespaced_ones() {
        let scopes = Scopes::new([], None);
        for (group, kind) in [
            ("", "Namespace"),
            ("", "PersistentVolume"),
            ("rbac.authorization.k8s.io", "ClusterRole"),
            ("apiextensions.k8s.io", "CustomResourceDefinition"),
            ("storage.k8s.io", "StorageClass"),
            (
                "admissionregistration.k8s.io",
                "ValidatingAdmissionPolicyBinding",
            ),
            ("networking.k8s.io", "IngressClass"),
            ("apiregistration.k8s.io", "APIService"),
        ] {
            assert!(!scopes.is_namespaced(group, kind), "{group}/{kind}");
        }
        for (group, kind) in [
            ("", "ConfigMap"),
            ("", "Secret"),
            ("apps", "Deployment"),
            ("rbac.authorization.k8s.io", "Role"),
            ("networking.k8s.io", "Ingress"),
            ("example.com", "Widget"),
            // Same kind name, other group: not the core one.
            ("example.com", "Namespace"),
        ] {
            assert!(scopes.is_namespaced(group, kind), "{group}/{kind}");
        }
    }

    #[test]
    fn crds_in_the_render_and_the_caller_decide_first() {
        let crds = [
            json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
                   "spec": {"group": "example.com", "names": {"kind": "Cluster"}, "scope": "Cluster"}}),
            json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
                   "spec": {"group": "example.com", "names": {"kind": "Widget"}, "scope": "Namespaced"}}),
        ];
        let caller: BTreeMap<(String, String), bool> = [
            (("example.com".to_string(), "Widget".to_string()), false),
            (("other.io".to_string(), "Thing".to_string()), false),
            (("".to_string(), "Namespace".to_string()), true),
        ]
        .into_iter()
        .collect();
        let scopes = Scopes::new(crds.iter(), Some(&caller));
        assert!(!scopes.is_namespaced("example.com", "Cluster"));
        // The render's CRD wins over the caller's (it will be applied first).
        assert!(scopes.is_namespaced("example.com", "Widget"));
        assert!(!scopes.is_namespaced("other.io", "Thing"));
        // The caller (discovery) wins over the built-in table.
        assert!(scopes.is_namespaced("", "Namespace"));
    }
}
