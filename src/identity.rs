//! How an applied object says which application it belongs to.
//!
//! ```text
//!   metadata.labels:
//!     app.kubernetes.io/managed-by: windlass
//!     windlass.dev/app: <namespace>.<name>          (or h-<hash>, see below)
//!   metadata.annotations:
//!     windlass.dev/app: <namespace>.<name>          (always the readable identity)
//!     windlass.dev/digest: <sha256 of the desired object>
//! ```
//!
//! Label values are limited to 63 characters. `<namespace>.<name>` is used
//! as is when it fits; otherwise the label holds `h-` and the first 40 hex
//! digits of its sha256, and the annotation always holds the full identity,
//! which prune checks as well (so a hash collision cannot delete another
//! application's object).
//!
//! The digest annotation lets a sync skip the dry-run of an object whose
//! live copy was applied from exactly this desired state and has not been
//! touched by anyone else since (see `plan`).

use sha2::{Digest, Sha256};

pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY: &str = "windlass";
pub const LABEL_APP: &str = "windlass.dev/app";
pub const ANNOTATION_APP: &str = "windlass.dev/app";
pub const ANNOTATION_DIGEST: &str = "windlass.dev/digest";
/// `windlass.dev/prune: disabled` protects an object from prune.
pub const ANNOTATION_PRUNE: &str = "windlass.dev/prune";
/// The field manager windlass applies with.
pub const FIELD_MANAGER: &str = "windlass";

/// An application's identity: `<namespace>.<name>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AppIdentity {
    pub namespace: String,
    pub name: String,
}

impl AppIdentity {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> AppIdentity {
        AppIdentity {
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    /// `<namespace>.<name>`.
    pub fn full(&self) -> String {
        format!("{}.{}", self.namespace, self.name)
    }

    /// The value of the `windlass.dev/app` label (at most 63 characters).
    pub fn label_value(&self) -> String {
        let full = self.full();
        if full.len() <= 63 {
            return full;
        }
        let digest = Sha256::digest(full.as_bytes());
        let hex: String = digest[..20].iter().map(|b| format!("{b:02x}")).collect();
        format!("h-{hex}")
    }

    /// The label selector that finds this application's objects.
    pub fn selector(&self) -> String {
        format!("{LABEL_APP}={}", self.label_value())
    }

    /// Whether a live object's labels and annotations say it belongs to
    /// this application.
    pub fn owns(&self, object: &serde_json::Value) -> bool {
        let metadata = &object["metadata"];
        metadata["labels"][LABEL_APP].as_str() == Some(self.label_value().as_str())
            && metadata["annotations"][ANNOTATION_APP]
                .as_str()
                .is_none_or(|full| full == self.full())
    }
}

/// Adds the identity labels and annotations, and the digest, to a desired
/// object (in place).
pub fn stamp(object: &mut serde_json::Value, app: &AppIdentity, digest: &str) {
    let metadata = object
        .as_object_mut()
        .expect("objects are maps")
        .entry("metadata")
        .or_insert_with(|| serde_json::json!({}));
    let metadata = metadata.as_object_mut().expect("metadata is a map");
    let labels = metadata
        .entry("labels")
        .or_insert_with(|| serde_json::json!({}));
    labels[LABEL_MANAGED_BY] = MANAGED_BY.into();
    labels[LABEL_APP] = app.label_value().into();
    let annotations = metadata
        .entry("annotations")
        .or_insert_with(|| serde_json::json!({}));
    annotations[ANNOTATION_APP] = app.full().into();
    annotations[ANNOTATION_DIGEST] = digest.into();
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn short_identities_are_readable_labels() {
        let app = AppIdentity::new("team-a", "guestbook");
        assert_eq!(app.label_value(), "team-a.guestbook");
        assert_eq!(app.selector(), "windlass.dev/app=team-a.guestbook");
    }

    #[test]
    fn long_identities_are_hashed_to_fit_a_label() {
        let app = AppIdentity::new("a-rather-long-namespace-name", "x".repeat(60));
        let label = app.label_value();
        assert!(label.len() <= 63 && label.starts_with("h-"), "{label}");
        assert_eq!(label, app.label_value(), "stable");
    }

    #[test]
    fn stamping_adds_labels_annotations_and_digest_and_keeps_the_rest() {
        let app = AppIdentity::new("team-a", "guestbook");
        let mut object = json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": { "name": "c", "labels": { "tier": "web" } }
        });
        stamp(&mut object, &app, "abc");
        assert_eq!(object["metadata"]["labels"]["tier"], "web");
        assert_eq!(object["metadata"]["labels"][LABEL_MANAGED_BY], "windlass");
        assert_eq!(object["metadata"]["labels"][LABEL_APP], "team-a.guestbook");
        assert_eq!(object["metadata"]["annotations"][ANNOTATION_DIGEST], "abc");
        assert!(app.owns(&object));
        assert!(!AppIdentity::new("team-b", "guestbook").owns(&object));
    }

    #[test]
    fn a_label_collision_is_caught_by_the_annotation() {
        let app = AppIdentity::new("team-a", "guestbook");
        let object = json!({ "metadata": {
            "labels": { LABEL_APP: "team-a.guestbook" },
            "annotations": { ANNOTATION_APP: "team-z.other" },
        }});
        assert!(!app.owns(&object));
    }
}
