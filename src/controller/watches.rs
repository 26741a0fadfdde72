//! Drift in seconds: one metadata-only watch per kind that Applications
//! manage, selected by windlass's label. An event on a managed object that
//! another field manager wrote after windlass's last apply, or its deletion,
//! wakes the object's Application at once; the reconcile then plans (no
//! re-render while nothing changed; a dry-run only for the objects that
//! changed) and reports the drift, naming each field and manager.
//!
//! ```text
//!   kinds in plans ──ensure()──► one task per (group, version, kind):
//!      metadata_watcher(label app.kubernetes.io/managed-by=windlass)
//!        Apply(meta): written by another manager since windlass applied it?  (pure: `touched`)
//!                     and not already reported for that write? ──► wake
//!        Delete(meta) ──────────────────────────────────────────────────► wake
//!   wake: annotation windlass.dev/app → ObjectRef<Application> ──► reconcile now
//! ```
//!
//! Only metadata travels. Each watch remembers the owner of each object it
//! saw and the last reported write of each drifted one, nothing more, so
//! memory stays small. A (re)started watch lists the objects first: a
//! drifted one among them wakes its Application as an event would (an edit
//! made just before the watch started, or while it re-listed, is not lost
//! until the interval), and an object seen before that the listing lacks
//! was deleted meanwhile, which wakes its Application too.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use futures::channel::mpsc::UnboundedSender;
use kube::api::{Api, DynamicObject};
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher::{self, Event};
use serde_json::Value;
use tracing::{debug, warn};

use crate::identity::{ANNOTATION_APP, ANNOTATION_DIGEST, LABEL_MANAGED_BY, MANAGED_BY};
use crate::spec::Application;
use crate::sync::kinds::Kind;
use crate::sync::plan::untouched_since_applied;

/// Applications woken by a watch event, by `namespace/name`; the reconcile
/// takes its key out when it runs (so the "not due yet" shortcut does not
/// skip it).
pub type DriftEvents = Arc<Mutex<HashSet<String>>>;

/// The watches, shared by every reconcile.
pub struct Watches {
    client: kube::Client,
    namespace: Option<String>,
    wake: UnboundedSender<ObjectRef<Application>>,
    events: DriftEvents,
    /// The kinds watched, by `group/version/kind`.
    watched: Mutex<HashSet<String>>,
}

impl Watches {
    pub fn new(
        client: kube::Client,
        namespace: Option<String>,
        wake: UnboundedSender<ObjectRef<Application>>,
    ) -> Watches {
        Watches {
            client,
            namespace,
            wake,
            events: DriftEvents::default(),
            watched: Mutex::default(),
        }
    }

    /// The Applications woken by watch events, shared with the reconcile.
    pub fn events(&self) -> DriftEvents {
        self.events.clone()
    }

    /// Starts a watch for each kind not watched yet.
    pub fn ensure(&self, kinds: impl IntoIterator<Item = Kind>) {
        for kind in kinds {
            let resource = &kind.resource;
            let key = format!("{}/{}/{}", resource.group, resource.version, resource.kind);
            if !self
                .watched
                .lock()
                .expect("watched lock")
                .insert(key.clone())
            {
                continue;
            }
            let api: Api<PartialObjectMeta<DynamicObject>> =
                match (&self.namespace, kind.namespaced) {
                    (Some(namespace), true) => {
                        Api::namespaced_with(self.client.clone(), namespace, resource)
                    }
                    _ => Api::all_with(self.client.clone(), resource),
                };
            debug!(kind = %key, "watching managed objects");
            tokio::spawn(watch_kind(
                api,
                key,
                self.namespace.clone(),
                self.wake.clone(),
                self.events.clone(),
            ));
        }
    }

    /// How many kinds are watched.
    pub fn count(&self) -> usize {
        self.watched.lock().expect("watched lock").len()
    }
}

async fn watch_kind(
    api: Api<PartialObjectMeta<DynamicObject>>,
    kind: String,
    namespace: Option<String>,
    wake: UnboundedSender<ObjectRef<Application>>,
    events: DriftEvents,
) {
    let config = watcher::Config::default().labels(&format!("{LABEL_MANAGED_BY}={MANAGED_BY}"));
    let mut stream = watcher::watcher(api, config).boxed();
    let mut seen = KindState::default();
    let wake_app = |application: ObjectRef<Application>, object: Option<&str>, deleted: bool| {
        let key = format!(
            "{}/{}",
            application.namespace.as_deref().unwrap_or_default(),
            application.name
        );
        debug!(app = %key, %kind, ?object, deleted, "a managed object changed");
        events.lock().expect("drift events lock").insert(key);
        let _ = wake.unbounded_send(application);
    };
    while let Some(event) = stream.next().await {
        let (object, deleted) = match event {
            Ok(Event::Apply(object) | Event::InitApply(object)) => (object, false),
            Ok(Event::Delete(object)) => (object, true),
            Ok(Event::Init) => {
                seen.listing_started();
                continue;
            }
            Ok(Event::InitDone) => {
                for (application, object) in seen.listing_done() {
                    wake_app(application, Some(&object), true);
                }
                continue;
            }
            Err(error) => {
                warn!(%kind, %error, "watching managed objects (retrying)");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                continue;
            }
        };
        let Some(application) = owner(&object, namespace.as_deref()) else {
            continue;
        };
        let uid = object.metadata.uid.clone().unwrap_or_default();
        let name = object.metadata.name.clone().unwrap_or_default();
        let wake_it = match deleted {
            true => {
                seen.deleted(&uid);
                true
            }
            false => seen.changed(uid, (application.clone(), name.clone()), touched(&object)),
        };
        if wake_it {
            wake_app(application, Some(&name), deleted);
        }
    }
}

/// The owner of a watched object and its name.
type Owned = (ObjectRef<Application>, String);

/// What one kind's watch remembers between events (pure; see `watch_kind`).
#[derive(Default)]
struct KindState {
    /// The last reported write of each drifted object, by uid.
    reported: HashMap<String, String>,
    /// The owner and name of every object seen, by uid.
    owners: HashMap<String, Owned>,
    /// The uids of a listing in progress.
    listing: Option<HashSet<String>>,
}

impl KindState {
    /// An object listed or changed, with the other managers' writes since
    /// windlass's last apply (`touched`): whether to wake its Application.
    /// A new write wakes it once; a reverted (or re-applied) object wakes it
    /// to clear the drift.
    fn changed(&mut self, uid: String, owned: Owned, write: Option<String>) -> bool {
        if let Some(listing) = &mut self.listing {
            listing.insert(uid.clone());
        }
        self.owners.insert(uid.clone(), owned);
        match write {
            None => self.reported.remove(&uid).is_some(),
            Some(write) => self.reported.insert(uid, write.clone()).as_ref() != Some(&write),
        }
    }

    fn deleted(&mut self, uid: &str) -> Option<Owned> {
        self.reported.remove(uid);
        self.owners.remove(uid)
    }

    /// The watch (re)lists the objects.
    fn listing_started(&mut self) {
        self.listing = Some(HashSet::new());
    }

    /// The listing is complete: the objects seen before that it lacks were
    /// deleted while no watch ran.
    fn listing_done(&mut self) -> Vec<Owned> {
        let Some(listed) = self.listing.take() else {
            return Vec::new();
        };
        let gone: Vec<String> = self
            .owners
            .keys()
            .filter(|uid| !listed.contains(*uid))
            .cloned()
            .collect();
        gone.iter().filter_map(|uid| self.deleted(uid)).collect()
    }
}

/// The Application an object belongs to, from its `windlass.dev/app`
/// annotation (`<namespace>.<name>`; namespaces hold no dots).
fn owner(
    object: &PartialObjectMeta<DynamicObject>,
    watched_namespace: Option<&str>,
) -> Option<ObjectRef<Application>> {
    let identity = object.metadata.annotations.as_ref()?.get(ANNOTATION_APP)?;
    let (namespace, name) = identity.split_once('.')?;
    if watched_namespace.is_some_and(|w| w != namespace) {
        return None;
    }
    Some(ObjectRef::new(name).within(namespace))
}

/// When another field manager wrote the object after windlass's last apply:
/// a description of those writes (manager and time), which changes with
/// each new write. `None` while windlass's apply is the newest write.
pub fn touched(object: &PartialObjectMeta<DynamicObject>) -> Option<String> {
    let metadata = serde_json::to_value(&object.metadata).ok()?;
    let value = serde_json::json!({ "metadata": metadata });
    let digest = value["metadata"]["annotations"][ANNOTATION_DIGEST]
        .as_str()
        .unwrap_or_default()
        .to_string();
    if untouched_since_applied(&value, &digest) {
        return None;
    }
    let writes: Vec<String> = value["metadata"]["managedFields"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[])
        .iter()
        .filter(|e| e["manager"] != crate::identity::FIELD_MANAGER && e["subresource"] != "status")
        .map(|e| {
            format!(
                "{}@{}",
                e["manager"].as_str().unwrap_or_default(),
                e["time"].as_str().unwrap_or_default()
            )
        })
        .collect();
    Some(format!("{}#{}", writes.join(","), generation(&value)))
}

fn generation(value: &Value) -> i64 {
    value["metadata"]["generation"].as_i64().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(managed: Value) -> PartialObjectMeta<DynamicObject> {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
            "metadata": {
                "name": "web", "namespace": "team-a", "uid": "u1", "generation": 2,
                "annotations": { "windlass.dev/app": "team-a.web", "windlass.dev/digest": "d" },
                "managedFields": managed,
            }
        }))
        .unwrap()
    }

    fn entry(manager: &str, time: &str, subresource: Option<&str>) -> Value {
        let mut e = serde_json::json!({ "manager": manager, "operation": "Apply", "time": time, "apiVersion": "v1", "fieldsType": "FieldsV1", "fieldsV1": {} });
        if let Some(s) = subresource {
            e["subresource"] = s.into();
            e["operation"] = "Update".into();
        }
        e
    }

    #[test]
    fn windlass_as_the_newest_writer_is_not_drift() {
        let ours = object(serde_json::json!([entry(
            "windlass",
            "2026-12-03T10:00:00Z",
            None
        )]));
        assert_eq!(touched(&ours), None);
        let status = object(serde_json::json!([
            entry("windlass", "2026-12-03T10:00:00Z", None),
            entry(
                "kube-controller-manager",
                "2026-12-03T10:00:05Z",
                Some("status")
            ),
        ]));
        assert_eq!(
            touched(&status),
            None,
            "status writes by controllers are not drift"
        );
    }

    #[test]
    fn a_later_write_by_another_manager_is_drift_and_each_new_write_differs() {
        let scaled = object(serde_json::json!([
            entry("windlass", "2026-12-03T10:00:00Z", None),
            entry("kubectl", "2026-12-03T10:01:00Z", Some("scale")),
        ]));
        let first = touched(&scaled).expect("drift");
        assert!(first.contains("kubectl"), "{first}");
        let again = object(serde_json::json!([
            entry("windlass", "2026-12-03T10:00:00Z", None),
            entry("kubectl", "2026-12-03T10:02:00Z", Some("scale")),
        ]));
        assert_ne!(touched(&again), Some(first));
    }

    fn owned(app: &str, name: &str) -> Owned {
        (ObjectRef::new(app).within("team-a"), name.to_string())
    }

    #[test]
    fn a_listing_wakes_for_drift_once_and_for_objects_deleted_meanwhile() {
        let mut seen = KindState::default();
        // The first listing: a drifted object wakes its Application once.
        seen.listing_started();
        assert!(seen.changed("u1".into(), owned("web", "a"), Some("kubectl@1".into())));
        assert!(!seen.changed("u2".into(), owned("web", "b"), None));
        assert!(seen.listing_done().is_empty(), "nothing was known before");
        // The same write seen again (a later event) does not wake it.
        assert!(!seen.changed("u1".into(), owned("web", "a"), Some("kubectl@1".into())));
        // A re-listing: `b` was deleted meanwhile, `a` was reverted.
        seen.listing_started();
        assert!(
            seen.changed("u1".into(), owned("web", "a"), None),
            "reverted"
        );
        let gone = seen.listing_done();
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].1, "b");
        // Deleted objects are forgotten: the next listing wakes nothing.
        seen.listing_started();
        assert!(!seen.changed("u1".into(), owned("web", "a"), None));
        assert!(seen.listing_done().is_empty());
        assert_eq!(seen.deleted("u1").map(|o| o.1), Some("a".to_string()));
    }

    #[test]
    fn the_owner_comes_from_the_identity_annotation() {
        let o = object(serde_json::json!([]));
        let owner = owner(&o, None).unwrap();
        assert_eq!(owner.name, "web");
        assert_eq!(owner.namespace.as_deref(), Some("team-a"));
        assert!(super::owner(&o, Some("other")).is_none());
    }
}
