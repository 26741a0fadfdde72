//! Which objects prune deletes, and why it leaves others alone. Pure: the
//! previous inventory, the desired set and what is live come in; decisions
//! go out. Deletion itself happens in `apply`.
//!
//! ```text
//!   previous inventory ─┐
//!   desired ids ────────┼─ decide ─► [Delete(id) | Keep(id, reason)]  or  Refused(empty render)
//!   live objects ───────┘
//! ```
//!
//! Guards, in order:
//! 1. an empty desired set never prunes everything, unless allowed
//!    (`--allow-empty`): an empty render is far more often a mistake (wrong
//!    path, failed template) than an intent;
//! 2. an object already gone is skipped;
//! 3. an object that no longer carries this application's identity was taken
//!    over by someone else and is left alone;
//! 4. `windlass.dev/prune: disabled` protects an object;
//! 5. Namespaces, CRDs and PersistentVolumeClaims hold other objects or data
//!    and are pruned only with `--prune-dangerous`.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::identity::{ANNOTATION_PRUNE, AppIdentity};
use crate::render::ObjectId;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PruneOptions {
    pub allow_empty: bool,
    pub dangerous: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PruneDecision {
    Delete(ObjectId),
    Keep { id: ObjectId, reason: KeepReason },
}

/// Why prune leaves an object of the previous inventory in place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeepReason {
    /// It no longer carries this application's label: it is someone else's
    /// now, and leaves the inventory.
    TakenOver,
    /// `windlass.dev/prune: disabled`.
    Protected,
    /// A Namespace, CRD or PVC, without `--prune-dangerous`.
    Dangerous { kind: String },
    /// Prune is off for this sync.
    PruneOff,
}

impl KeepReason {
    /// Whether the object still belongs to the application (and stays in
    /// its inventory, so that a later prune still sees it).
    pub fn still_ours(&self) -> bool {
        !matches!(self, KeepReason::TakenOver)
    }
}

impl serde::Serialize for KeepReason {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl std::fmt::Display for KeepReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeepReason::TakenOver => {
                f.write_str("no longer carries this application's label: someone else took it over")
            }
            KeepReason::Protected => f.write_str("protected by windlass.dev/prune: disabled"),
            KeepReason::Dangerous { kind } => {
                write!(f, "a {kind} is pruned only with --prune-dangerous")
            }
            KeepReason::PruneOff => f.write_str("prune is off (--prune)"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "refusing to prune: the render produced no objects, which would delete all {count} objects \
     of the previous revision; check the path and templates, or pass --allow-empty if that is \
     what you want"
)]
pub struct EmptyRenderRefused {
    pub count: usize,
}

/// Whether deleting this kind deletes other objects or data with it.
pub fn is_dangerous(id: &ObjectId) -> bool {
    matches!(
        (id.group.as_str(), id.kind.as_str()),
        ("", "Namespace" | "PersistentVolumeClaim")
            | ("apiextensions.k8s.io", "CustomResourceDefinition")
    )
}

/// The objects of `previous` that are not `desired`, in `previous` order.
/// Objects are compared without their API version: a manifest that moves
/// from `v1beta1` to `v1` still describes the same object, which must not
/// be pruned.
pub fn candidates<'a>(previous: &'a [ObjectId], desired: &[ObjectId]) -> Vec<&'a ObjectId> {
    let wanted: BTreeSet<_> = desired.iter().map(ObjectId::key).collect();
    previous
        .iter()
        .filter(|id| !wanted.contains(&id.key()))
        .collect()
}

/// Decides for each candidate. `live(id)` is the live object, `None` if gone.
pub fn decide<'a>(
    app: &AppIdentity,
    candidates: &[&'a ObjectId],
    desired_count: usize,
    live: impl Fn(&ObjectId) -> Option<&'a Value>,
    options: PruneOptions,
) -> Result<Vec<PruneDecision>, EmptyRenderRefused> {
    if desired_count == 0 && !candidates.is_empty() && !options.allow_empty {
        return Err(EmptyRenderRefused {
            count: candidates.len(),
        });
    }
    Ok(candidates
        .iter()
        .filter_map(|id| {
            let id = (*id).clone();
            let object = live(&id)?; // already gone: nothing to do
            let keep = |reason: KeepReason| {
                Some(PruneDecision::Keep {
                    id: id.clone(),
                    reason,
                })
            };
            if !app.owns(object) {
                return keep(KeepReason::TakenOver);
            }
            if object["metadata"]["annotations"][ANNOTATION_PRUNE] == "disabled" {
                return keep(KeepReason::Protected);
            }
            if is_dangerous(&id) && !options.dangerous {
                return keep(KeepReason::Dangerous {
                    kind: id.kind.clone(),
                });
            }
            Some(PruneDecision::Delete(id))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::stamp;
    use serde_json::json;

    fn id(kind: &str, name: &str) -> ObjectId {
        ObjectId {
            group: String::new(),
            version: "v1".into(),
            kind: kind.into(),
            namespace: (kind != "Namespace").then(|| "ns".to_string()),
            name: name.into(),
        }
    }

    fn owned(app: &AppIdentity) -> Value {
        let mut object = json!({ "metadata": {} });
        stamp(&mut object, app, "d");
        object
    }

    #[test]
    fn deletes_only_what_left_the_desired_set() {
        let previous = vec![id("ConfigMap", "a"), id("ConfigMap", "b")];
        let found = candidates(&previous, &[id("ConfigMap", "a")]);
        assert_eq!(found, vec![&id("ConfigMap", "b")]);
    }

    #[test]
    fn a_new_api_version_of_the_same_object_is_not_pruned() {
        let mut old = id("ConfigMap", "a");
        old.version = "v1beta1".into();
        assert!(candidates(&[old], &[id("ConfigMap", "a")]).is_empty());
    }

    #[test]
    fn every_guard_keeps_its_object_with_a_reason() {
        let app = AppIdentity::new("team-a", "web");
        let mine = owned(&app);
        let theirs = owned(&AppIdentity::new("team-b", "web"));
        let mut protected = owned(&app);
        protected["metadata"]["annotations"][ANNOTATION_PRUNE] = "disabled".into();
        let (gone, taken, prot, ns, pvc, plain) = (
            id("ConfigMap", "gone"),
            id("ConfigMap", "taken"),
            id("ConfigMap", "protected"),
            id("Namespace", "data"),
            id("PersistentVolumeClaim", "db"),
            id("ConfigMap", "plain"),
        );
        let all = [&gone, &taken, &prot, &ns, &pvc, &plain];
        let live = |i: &ObjectId| -> Option<&Value> {
            match i.name.as_str() {
                "gone" => None,
                "taken" => Some(&theirs),
                "protected" => Some(&protected),
                _ => Some(&mine),
            }
        };
        let decisions = decide(&app, &all, 3, live, PruneOptions::default()).unwrap();
        let kept: Vec<(&str, String)> = decisions
            .iter()
            .filter_map(|d| match d {
                PruneDecision::Keep { id, reason } => Some((id.name.as_str(), reason.to_string())),
                _ => None,
            })
            .collect();
        assert_eq!(kept.len(), 4, "{decisions:?}");
        let reasons: Vec<&KeepReason> = decisions
            .iter()
            .filter_map(|d| match d {
                PruneDecision::Keep { reason, .. } => Some(reason),
                _ => None,
            })
            .collect();
        assert_eq!(reasons[0], &KeepReason::TakenOver);
        assert!(!reasons[0].still_ours() && reasons[1].still_ours());
        assert!(kept[0].1.contains("someone else took it over"));
        assert!(kept[1].1.contains("windlass.dev/prune: disabled"));
        assert!(
            kept[2]
                .1
                .contains("Namespace is pruned only with --prune-dangerous")
        );
        assert!(kept[3].1.contains("PersistentVolumeClaim"));
        assert!(decisions.contains(&PruneDecision::Delete(plain.clone())));

        let dangerous = PruneOptions {
            dangerous: true,
            ..Default::default()
        };
        let decisions = decide(&app, &all, 3, live, dangerous).unwrap();
        assert!(decisions.contains(&PruneDecision::Delete(ns.clone())));
        assert!(decisions.contains(&PruneDecision::Delete(pvc.clone())));
    }

    #[test]
    fn an_empty_render_never_prunes_everything_unless_allowed() {
        let app = AppIdentity::new("team-a", "web");
        let mine = owned(&app);
        let a = id("ConfigMap", "a");
        let error = decide(&app, &[&a], 0, |_| Some(&mine), PruneOptions::default()).unwrap_err();
        assert_eq!(error.count, 1);
        assert!(error.to_string().contains("--allow-empty"));
        let allowed = PruneOptions {
            allow_empty: true,
            ..Default::default()
        };
        assert_eq!(
            decide(&app, &[&a], 0, |_| Some(&mine), allowed).unwrap(),
            vec![PruneDecision::Delete(a.clone())]
        );
    }
}
