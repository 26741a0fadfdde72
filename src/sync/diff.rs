//! Comparing live and desired objects, and showing the difference.
//!
//! ```text
//!   live (GET) ─────────┐                        ┌─► equal? → Unchanged
//!                        ├─ normalize ─► compare ─┤
//!   desired (dry-run) ──┘                        └─► unified diff (Secrets masked)
//! ```
//!
//! Normalisation drops what the server owns and what changes on every write:
//! `metadata.managedFields`, `resourceVersion`, `uid`, `generation`,
//! `creationTimestamp`, `selfLink`, `status`, and server-set annotations
//! (`deployment.kubernetes.io/revision`, client-side apply's
//! `kubectl.kubernetes.io/last-applied-configuration`).
//!
//! Secret `data` and `stringData` values never appear: each is replaced by a
//! marker that says whether it is unchanged, changed, added or removed. The
//! masking happens before any text is produced, so no code path can print
//! a value.

use std::fmt::Write as _;

use serde_json::Value;

use crate::render::ObjectId;

const SERVER_SET_ANNOTATIONS: &[&str] = &[
    "deployment.kubernetes.io/revision",
    "kubectl.kubernetes.io/last-applied-configuration",
];

/// A copy of `object` without the fields the server owns.
pub fn normalize(object: &Value) -> Value {
    let mut object = object.clone();
    if let Some(map) = object.as_object_mut() {
        map.remove("status");
        if let Some(metadata) = map.get_mut("metadata").and_then(Value::as_object_mut) {
            for field in [
                "managedFields",
                "resourceVersion",
                "uid",
                "generation",
                "creationTimestamp",
                "selfLink",
            ] {
                metadata.remove(field);
            }
            if let Some(annotations) = metadata
                .get_mut("annotations")
                .and_then(Value::as_object_mut)
            {
                for annotation in SERVER_SET_ANNOTATIONS {
                    annotations.remove(*annotation);
                }
                if annotations.is_empty() {
                    metadata.remove("annotations");
                }
            }
        }
    }
    object
}

/// Whether a Secret (core group).
pub fn is_secret(id: &ObjectId) -> bool {
    id.group.is_empty() && id.kind == "Secret"
}

/// Masks the Secret values of a (live, desired) pair together, so that each
/// marker can say what happened to its value.
pub fn mask_secret_pair(
    live: Option<&Value>,
    desired: Option<&Value>,
) -> (Option<Value>, Option<Value>) {
    let mut live = live.cloned();
    let mut desired = desired.cloned();
    for field in ["data", "stringData"] {
        let before = live
            .as_ref()
            .and_then(|v| v.get(field))
            .and_then(Value::as_object)
            .cloned();
        let after = desired
            .as_ref()
            .and_then(|v| v.get(field))
            .and_then(Value::as_object)
            .cloned();
        if let Some(object) = live.as_mut().and_then(|v| v.get_mut(field)) {
            *object = mask_map(before.as_ref(), after.as_ref(), Side::Live);
        }
        if let Some(object) = desired.as_mut().and_then(|v| v.get_mut(field)) {
            *object = mask_map(after.as_ref(), before.as_ref(), Side::Desired);
        }
    }
    (live, desired)
}

#[derive(Clone, Copy, PartialEq)]
enum Side {
    Live,
    Desired,
}

fn mask_map(
    this: Option<&serde_json::Map<String, Value>>,
    other: Option<&serde_json::Map<String, Value>>,
    side: Side,
) -> Value {
    let Some(this) = this else {
        return Value::String("*** (masked)".into());
    };
    let masked = this
        .iter()
        .map(|(key, value)| {
            let marker = match (other.and_then(|o| o.get(key)), side) {
                (Some(theirs), _) if theirs == value => "*** (unchanged)",
                (Some(_), Side::Live) => "*** (before)",
                (Some(_), Side::Desired) => "*** (changed)",
                (None, Side::Live) => "*** (removed)",
                (None, Side::Desired) => "*** (added)",
            };
            (key.clone(), Value::String(marker.into()))
        })
        .collect();
    Value::Object(masked)
}

/// A unified diff between the normalised live object and the normalised
/// desired one, like `kubectl diff`. `None` on one side means the object is
/// created (no live) or deleted (no desired). Secrets are masked.
pub fn unified_diff(
    id: &ObjectId,
    live: Option<&Value>,
    desired: Option<&Value>,
    color: bool,
) -> String {
    let live = live.map(normalize);
    let desired = desired.map(normalize);
    let (live, desired) = if is_secret(id) {
        mask_secret_pair(live.as_ref(), desired.as_ref())
    } else {
        (live, desired)
    };
    let text = |v: &Option<Value>| v.as_ref().map(crate::render::to_yaml).unwrap_or_default();
    let (before, after) = (text(&live), text(&desired));
    let name = display_name(id);
    let diff = similar::TextDiff::from_lines(&before, &after);
    let mut out = String::new();
    let _ = writeln!(out, "{}", paint(&format!("--- live/{name}"), "1", color));
    let _ = writeln!(out, "{}", paint(&format!("+++ desired/{name}"), "1", color));
    for hunk in diff.unified_diff().context_radius(3).iter_hunks() {
        let _ = writeln!(out, "{}", paint(&hunk.header().to_string(), "36", color));
        for change in hunk.iter_changes() {
            let (sign, code) = match change.tag() {
                similar::ChangeTag::Delete => ("-", "31"),
                similar::ChangeTag::Insert => ("+", "32"),
                similar::ChangeTag::Equal => (" ", ""),
            };
            let line = format!("{sign}{}", change.value().trim_end_matches('\n'));
            let _ = writeln!(
                out,
                "{}",
                if code.is_empty() {
                    line
                } else {
                    paint(&line, code, color)
                }
            );
        }
    }
    out
}

/// `apps/v1 Deployment team-a/web`, or without namespace for cluster-scoped.
pub fn display_name(id: &ObjectId) -> String {
    let api_version = if id.group.is_empty() {
        id.version.clone()
    } else {
        format!("{}/{}", id.group, id.version)
    };
    match &id.namespace {
        Some(ns) => format!("{api_version} {} {ns}/{}", id.kind, id.name),
        None => format!("{api_version} {} {}", id.kind, id.name),
    }
}

fn paint(text: &str, code: &str, color: bool) -> String {
    if color {
        format!("\u{1b}[{code}m{text}\u{1b}[0m")
    } else {
        text.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn secret_id() -> ObjectId {
        ObjectId {
            group: String::new(),
            version: "v1".into(),
            kind: "Secret".into(),
            namespace: Some("team-a".into()),
            name: "db".into(),
        }
    }

    #[test]
    fn normalisation_drops_server_owned_fields() {
        let live = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {
                "name": "web", "uid": "u", "resourceVersion": "7", "generation": 2,
                "creationTimestamp": "2026-01-01T00:00:00Z", "managedFields": [{}],
                "annotations": { "deployment.kubernetes.io/revision": "3" },
                "labels": { "app": "web" }
            },
            "spec": { "replicas": 2 },
            "status": { "replicas": 2 }
        });
        assert_eq!(
            normalize(&live),
            json!({
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": { "name": "web", "labels": { "app": "web" } },
                "spec": { "replicas": 2 }
            })
        );
    }

    #[test]
    fn secret_values_are_masked_with_what_happened_to_them() {
        let live = json!({ "kind": "Secret", "metadata": { "name": "db" },
            "data": { "user": "YWRtaW4=", "password": "b2xk", "gone": "eA==" } });
        let desired = json!({ "kind": "Secret", "metadata": { "name": "db" },
            "data": { "user": "YWRtaW4=", "password": "bmV3", "token": "dA==" } });
        let diff = unified_diff(&secret_id(), Some(&live), Some(&desired), false);
        for secret in ["YWRtaW4=", "b2xk", "bmV3", "eA==", "dA=="] {
            assert!(!diff.contains(secret), "{diff}");
        }
        assert!(
            diff.contains("-  password: '*** (before)'")
                || diff.contains("-  password: \"*** (before)\""),
            "{diff}"
        );
        assert!(diff.contains("*** (changed)"), "{diff}");
        assert!(diff.contains("*** (added)"), "{diff}");
        assert!(diff.contains("*** (removed)"), "{diff}");
        assert!(
            diff.contains("user: '*** (unchanged)'") || diff.contains("user: \"*** (unchanged)\""),
            "{diff}"
        );
    }

    #[test]
    fn a_created_object_diffs_from_nothing() {
        let id = ObjectId {
            group: String::new(),
            version: "v1".into(),
            kind: "ConfigMap".into(),
            namespace: Some("team-a".into()),
            name: "c".into(),
        };
        let desired = json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": "c" }, "data": { "a": "1" } });
        let diff = unified_diff(&id, None, Some(&desired), false);
        assert!(
            diff.starts_with("--- live/v1 ConfigMap team-a/c\n+++ desired/v1 ConfigMap team-a/c\n"),
            "{diff}"
        );
        assert!(diff.contains("+kind: ConfigMap"), "{diff}");
        assert!(
            !diff
                .lines()
                .any(|l| l.starts_with('-') && !l.starts_with("---")),
            "{diff}"
        );
    }

    #[test]
    fn colour_only_when_asked() {
        let id = secret_id();
        let a = json!({ "kind": "Secret", "metadata": { "name": "db" } });
        assert!(!unified_diff(&id, Some(&a), None, false).contains('\u{1b}'));
        assert!(unified_diff(&id, Some(&a), None, true).contains('\u{1b}'));
    }
}
