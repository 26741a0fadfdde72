//! Deleting objects, for prune and uninstall alike: in waves that respect
//! what holds what, every deletion of a wave issued at once, and the wave
//! waited for together.
//!
//! ```text
//!   ids ──waves()──► 0 admission webhooks and policies (they can block the rest)
//!                    1 namespaced objects (workloads, services, custom resources …)
//!                    2 what those mount or run as: ConfigMaps, Secrets, PVCs, ServiceAccounts
//!                    3 cluster-scoped objects (PersistentVolumes after their claims …)
//!                    4 CustomResourceDefinitions (after their custom resources)
//!                    5 Namespaces
//!   each wave: DELETE (background) all ─► poll all until gone ─► next wave
//!              progress every few seconds: what is still there, and its finalizers
//! ```
//!
//! The order matters: a PersistentVolume keeps its `pv-protection`
//! finalizer while a claim is bound to it, so deleting it before the claim
//! waits for a claim that is never deleted.
//!
//! Deletions propagate in the background, as `kubectl delete` does: an object
//! is gone as soon as its own finalizers allow, and the garbage collector
//! removes what it owned (a Deployment's ReplicaSets and Pods) afterwards.
//! Waiting for that in the foreground made a teardown of 2,000 objects wait
//! on the garbage collector's queue for minutes; what must go first (Pods
//! before the claims they mount) is still respected, because a claim is held
//! by its `pvc-protection` finalizer until no Pod uses it.

use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt};
use kube::api::DeleteParams;
use serde_json::Value;

use super::api::{api_for, to_value};
use super::diff::display_name;
use super::kinds::{Kind, Kinds};
use crate::render::ObjectId;

/// How often a wave that is still waiting says so.
const PROGRESS_EVERY: Duration = Duration::from_secs(3);
/// Deletions (and polls) in flight at once.
const CONCURRENCY: usize = 16;

/// Which wave an object is deleted in (lower first).
pub fn wave(id: &ObjectId) -> u8 {
    let group = id.group.as_str();
    let kind = id.kind.as_str();
    let admission = group == "admissionregistration.k8s.io";
    let mounted = group.is_empty()
        && matches!(
            kind,
            "ConfigMap" | "Secret" | "PersistentVolumeClaim" | "ServiceAccount"
        );
    if admission {
        0
    } else if group.is_empty() && kind == "Namespace" {
        5
    } else if group == "apiextensions.k8s.io" && kind == "CustomResourceDefinition" {
        4
    } else if id.namespace.is_none() {
        3
    } else if mounted {
        2
    } else {
        1
    }
}

/// `ids` grouped into waves, lowest first; the order within a wave is kept.
pub fn waves(ids: Vec<ObjectId>) -> Vec<Vec<ObjectId>> {
    let mut waves: Vec<Vec<ObjectId>> = vec![Vec::new(); 6];
    for id in ids {
        waves[wave(&id) as usize].push(id);
    }
    waves.retain(|w| !w.is_empty());
    waves
}

/// What a deletion did.
#[derive(Debug, Default)]
pub struct Deleted {
    pub deleted: Vec<ObjectId>,
    /// Objects that could not be deleted, or were still there at the deadline.
    pub failures: Vec<(ObjectId, String)>,
}

/// Deletes `ids` wave by wave and waits until each is gone, at most
/// `timeout` in all. `activity` names the operation in progress lines
/// ("pruning", "uninstall"). A failure in one wave stops the later waves:
/// what they hold may still be needed.
pub async fn delete_all(
    client: &kube::Client,
    kinds: &Kinds,
    ids: Vec<ObjectId>,
    timeout: Duration,
    activity: &str,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<Deleted, super::kinds::DiscoveryError> {
    let deadline = Instant::now() + timeout;
    let mut outcome = Deleted::default();
    for wave in waves(ids) {
        let mut targets = Vec::new();
        for id in wave {
            if let Some(kind) = kinds.resolve(&id).await? {
                targets.push((id, kind));
            }
        }
        delete_wave(
            client,
            targets,
            deadline,
            timeout,
            activity,
            progress,
            &mut outcome,
        )
        .await;
        if !outcome.failures.is_empty() {
            break;
        }
    }
    Ok(outcome)
}

async fn delete_wave(
    client: &kube::Client,
    targets: Vec<(ObjectId, Kind)>,
    deadline: Instant,
    timeout: Duration,
    activity: &str,
    progress: &(dyn Fn(&str) + Sync),
    outcome: &mut Deleted,
) {
    // Issue every deletion of the wave.
    let requests: Vec<_> = targets
        .into_iter()
        .map(|(id, kind)| async move {
            let api = api_for(client, &id, &kind);
            let result = match api.delete(&id.name, &DeleteParams::background()).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(status)) if status.code == 404 => Ok(false),
                Err(error) => Err(crate::cluster::explain(&error)),
            };
            (id, kind, result)
        })
        .collect();
    let issued: Vec<_> = stream::iter(requests)
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    let mut waiting: Vec<(ObjectId, Kind)> = Vec::new();
    for (id, kind, result) in issued {
        match result {
            Ok(true) => waiting.push((id, kind)),
            Ok(false) => {
                progress(&format!("deleted {} (already gone)", display_name(&id)));
                outcome.deleted.push(id);
            }
            Err(why) => outcome.failures.push((id, why)),
        }
    }

    // Wait for the whole wave together.
    let mut last_report = Instant::now();
    while !waiting.is_empty() {
        let polls: Vec<_> = waiting
            .drain(..)
            .map(|(id, kind)| async move {
                let live = api_for(client, &id, &kind).get_opt(&id.name).await;
                (id, kind, live)
            })
            .collect();
        let polled: Vec<_> = stream::iter(polls)
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        let mut still_there = Vec::new();
        for (id, kind, live) in polled {
            match live {
                Ok(None) => {
                    progress(&format!("deleted {}", display_name(&id)));
                    outcome.deleted.push(id);
                }
                Ok(Some(object)) => still_there.push((id, kind, to_value(object))),
                Err(error) => outcome.failures.push((id, crate::cluster::explain(&error))),
            }
        }
        if still_there.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            for (id, _, object) in still_there {
                let why = format!(
                    "still there after {}s{}",
                    timeout.as_secs(),
                    finalizers_note(&object)
                );
                outcome.failures.push((id, why));
            }
            break;
        }
        if last_report.elapsed() >= PROGRESS_EVERY {
            last_report = Instant::now();
            let names: Vec<String> = still_there
                .iter()
                .take(5)
                .map(|(id, _, object)| format!("{}{}", display_name(id), finalizers_note(object)))
                .collect();
            let more = still_there.len().saturating_sub(names.len());
            progress(&format!(
                "{activity}: waiting for {} object(s) to be deleted: {}{}",
                still_there.len(),
                names.join(", "),
                if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                }
            ));
        }
        waiting = still_there
            .into_iter()
            .map(|(id, kind, _)| (id, kind))
            .collect();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// ` (finalizers: a, b)` when the object has any: what it waits for.
fn finalizers_note(object: &Value) -> String {
    let finalizers: Vec<&str> = object["metadata"]["finalizers"]
        .as_array()
        .map(|list| list.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if finalizers.is_empty() {
        String::new()
    } else {
        format!(" (finalizers: {})", finalizers.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(group: &str, kind: &str, namespace: Option<&str>, name: &str) -> ObjectId {
        ObjectId {
            group: group.into(),
            version: "v1".into(),
            kind: kind.into(),
            namespace: namespace.map(str::to_string),
            name: name.into(),
        }
    }

    #[test]
    fn claims_go_before_volumes_and_workloads_before_what_they_mount() {
        let pv = id("", "PersistentVolume", None, "data");
        let pvc = id("", "PersistentVolumeClaim", Some("a"), "data");
        let deployment = id("apps", "Deployment", Some("a"), "web");
        let config = id("", "ConfigMap", Some("a"), "web");
        let namespace = id("", "Namespace", None, "a");
        let waves = waves(vec![
            namespace.clone(),
            pv.clone(),
            pvc.clone(),
            config.clone(),
            deployment.clone(),
        ]);
        assert_eq!(
            waves,
            vec![
                vec![deployment],
                vec![pvc, config],
                vec![pv],
                vec![namespace]
            ]
        );
    }

    #[test]
    fn custom_resources_go_before_their_definitions_and_webhooks_first() {
        let crd = id(
            "apiextensions.k8s.io",
            "CustomResourceDefinition",
            None,
            "widgets.example.com",
        );
        let widget = id("example.com", "Widget", Some("a"), "w");
        let cluster_widget = id("example.com", "ClusterWidget", None, "cw");
        let webhook = id(
            "admissionregistration.k8s.io",
            "ValidatingWebhookConfiguration",
            None,
            "check",
        );
        assert!(wave(&webhook) < wave(&widget));
        assert!(wave(&widget) < wave(&crd));
        assert!(wave(&cluster_widget) < wave(&crd));
        assert!(wave(&crd) < wave(&id("", "Namespace", None, "a")));
    }

    #[test]
    fn namespaced_objects_go_before_cluster_scoped_ones() {
        let role = id("rbac.authorization.k8s.io", "Role", Some("a"), "r");
        let cluster_role = id("rbac.authorization.k8s.io", "ClusterRole", None, "r");
        assert!(wave(&role) < wave(&cluster_role));
        assert_eq!(waves(Vec::new()), Vec::<Vec<ObjectId>>::new());
    }

    #[test]
    fn a_finalizer_is_named_in_the_waiting_line() {
        let object =
            serde_json::json!({"metadata": {"finalizers": ["kubernetes.io/pv-protection"]}});
        assert_eq!(
            finalizers_note(&object),
            " (finalizers: kubernetes.io/pv-protection)"
        );
        assert_eq!(finalizers_note(&serde_json::json!({"metadata": {}})), "");
    }
}
