//! Sync benchmark against the local control plane (or WINDLASS_TEST_KUBECONFIG).
//!
//! 1,000 objects (500 ConfigMaps, 500 Deployments with 0 replicas):
//! - cold sync (plan, validation gate, record, apply; no health wait) vs the
//!   floor: a bare loop of the same server-side apply PATCHes at the same
//!   concurrency;
//! - no-op re-sync vs the floor of 1,000 server-side apply dry-runs;
//! - plan of 1,000 unchanged objects vs the same floor;
//! - rollback of 100 objects (all changed since the target revision) vs the
//!   apply floor: a bare loop of the same 100 SSA PATCHes.
//!
//! Every request windlass sends is counted by a layer on its kube client, so
//! the report shows requests per object by verb. Medians of 3 rounds, each in
//! fresh namespaces. Run: `cargo bench --bench sync`.

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt};
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams};
use kube::client::ClientBuilder;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::discovery::ApiResource;
use serde_json::Value;
use windlass::history::record::RecordSource;
use windlass::identity::{AppIdentity, FIELD_MANAGER, stamp};
use windlass::render::{self, MemoryTree, RenderInput};
use windlass::sync::apply::ApplyOptions;
use windlass::sync::engine::{self, Desired, SyncOptions};
use windlass::sync::kinds::Kinds;
use windlass::sync::plan::PlanOptions;

const OBJECTS: usize = 1_000;
const CONCURRENCY: usize = 16;
const ROUNDS: usize = 3;

type Counts = Arc<Mutex<BTreeMap<String, usize>>>;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run());
}

async fn run() {
    let counts: Counts = Arc::default();
    let client = counting_client(counts.clone()).await;
    let kinds = Kinds::discover(&client).await.unwrap();
    delete_leftover_namespaces(&client).await;
    println!(
        "sync benchmark: {OBJECTS} objects (ConfigMaps and Deployments), concurrency {CONCURRENCY}, {ROUNDS} rounds"
    );

    let (mut cold, mut cold_floor, mut noop, mut plan_t, mut dry_floor) =
        (vec![], vec![], vec![], vec![], vec![]);
    let mut requests: Vec<(&str, BTreeMap<String, usize>)> = Vec::new();
    let mut namespaces = Vec::new();
    for round in 0..ROUNDS {
        let ns = support::create_namespace(&client, "bench-sync").await;
        let floor_ns = support::create_namespace(&client, "bench-floor").await;
        namespaces.extend([ns.clone(), floor_ns.clone()]);
        let app = AppIdentity::new(ns.clone(), "bench");
        let desired = desired_state(&ns);

        // Floor: the same SSA PATCHes, nothing else.
        let floor_objects = stamped(
            &desired_state(&floor_ns),
            &AppIdentity::new(floor_ns.clone(), "bench"),
        );
        let t = Instant::now();
        patch_all(&client, &floor_objects, false).await;
        cold_floor.push(t.elapsed());
        settle(&client, &floor_ns).await;

        counts.lock().unwrap().clear();
        let t = Instant::now();
        let result = engine::sync(&client, &kinds, &app, &desired, &options(), &|_| {})
            .await
            .unwrap();
        cold.push(t.elapsed());
        assert_eq!(result.revision(), Some(1));
        if round == 0 {
            requests.push(("cold sync", counts.lock().unwrap().clone()));
        }
        settle(&client, &ns).await;

        counts.lock().unwrap().clear();
        let t = Instant::now();
        let result = engine::sync(&client, &kinds, &app, &desired, &options(), &|_| {})
            .await
            .unwrap();
        noop.push(t.elapsed());
        assert_eq!(result.revision(), None, "a no-op sync records nothing");
        let writes: usize = counts
            .lock()
            .unwrap()
            .iter()
            .filter(|(k, _)| is_write(k))
            .map(|(_, n)| n)
            .sum();
        assert_eq!(
            writes,
            0,
            "a no-op sync writes nothing: {:?}",
            counts.lock().unwrap()
        );
        if round == 0 {
            requests.push(("no-op re-sync", counts.lock().unwrap().clone()));
        }

        counts.lock().unwrap().clear();
        let t = Instant::now();
        let plan = engine::plan(
            &client,
            &kinds,
            &app,
            &desired,
            PlanOptions {
                concurrency: CONCURRENCY,
                ..PlanOptions::default()
            },
        )
        .await
        .unwrap();
        plan_t.push(t.elapsed());
        assert!(!plan.plan.has_changes());
        if round == 0 {
            requests.push(("plan, 1,000 unchanged", counts.lock().unwrap().clone()));
        }

        // Floor for the no-op: 1,000 dry-runs of the unchanged objects.
        let objects = stamped(&desired, &app);
        let t = Instant::now();
        patch_all(&client, &objects, true).await;
        dry_floor.push(t.elapsed());
    }

    let (mut rollback_t, mut rollback_floor) = (vec![], vec![]);
    for _ in 0..ROUNDS {
        let ns = support::create_namespace(&client, "bench-rollback").await;
        namespaces.push(ns.clone());
        let app = AppIdentity::new(ns.clone(), "bench");
        let v1 = configmaps(&ns, 100, "one");
        let v2 = configmaps(&ns, 100, "two");
        engine::sync(&client, &kinds, &app, &v1, &options(), &|_| {})
            .await
            .unwrap();
        engine::sync(&client, &kinds, &app, &v2, &options(), &|_| {})
            .await
            .unwrap();
        let t = Instant::now();
        let result = engine::rollback(&client, &kinds, &app, Some(1), &options(), &|_| {})
            .await
            .unwrap();
        rollback_t.push(t.elapsed());
        assert_eq!(result.outcome.revision(), Some(3));
        // Floor: the same 100 PATCHes back to revision 1's content.
        let t = Instant::now();
        patch_all(&client, &stamped(&v1, &app), false).await;
        rollback_floor.push(t.elapsed());
    }

    println!();
    println!(
        "{:<28} {:>11} {:>11} {:>7}   target",
        "operation (median)", "windlass", "floor", "ratio"
    );
    report(
        "cold sync",
        &mut cold,
        &mut cold_floor,
        "SSA apply loop",
        "<= 1.3",
    );
    report(
        "no-op re-sync",
        &mut noop,
        &mut dry_floor.clone(),
        "dry-run loop",
        "<= 1.0, 0 writes",
    );
    report(
        "plan of unchanged objects",
        &mut plan_t,
        &mut dry_floor,
        "dry-run loop",
        "",
    );
    report(
        "rollback of 100 objects",
        &mut rollback_t,
        &mut rollback_floor,
        "SSA apply loop of 100",
        "",
    );
    println!();
    println!("API requests per object (first round, counted on windlass's client):");
    for (what, counts) in requests {
        let total: usize = counts.values().sum();
        let detail: Vec<String> = counts
            .iter()
            .map(|(verb, n)| format!("{verb} {:.3}", *n as f64 / OBJECTS as f64))
            .collect();
        println!(
            "  {what:<24} {:.3} in all: {}",
            total as f64 / OBJECTS as f64,
            detail.join(", ")
        );
    }

    let namespaces_api: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    for ns in namespaces {
        let _ = namespaces_api
            .delete(&ns, &DeleteParams::background())
            .await;
    }
}

/// Waits (untimed) until the controller manager has made a ReplicaSet for
/// every Deployment in `namespace`, so that its work does not compete with
/// the next measurement.
async fn settle(client: &kube::Client, namespace: &str) {
    let api: Api<k8s_openapi::api::apps::v1::ReplicaSet> =
        Api::namespaced(client.clone(), namespace);
    let deadline = Instant::now() + Duration::from_secs(300);
    while api.list(&Default::default()).await.unwrap().items.len() < OBJECTS / 2 {
        assert!(
            Instant::now() < deadline,
            "the controller manager did not settle"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// A run that panicked leaves its namespaces behind; remove them so that the
/// controller manager does not churn through thousands of old objects.
async fn delete_leftover_namespaces(client: &kube::Client) {
    let api: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    for namespace in api.list(&Default::default()).await.unwrap().items {
        let name = namespace.metadata.name.unwrap_or_default();
        if name.starts_with("wl-bench-") {
            let _ = api.delete(&name, &DeleteParams::background()).await;
        }
    }
}

fn options() -> SyncOptions {
    let mut options = SyncOptions::new(engine::Operation::Sync, "bench");
    options.plan = PlanOptions {
        concurrency: CONCURRENCY,
        ..PlanOptions::default()
    };
    options.apply = ApplyOptions {
        wait: false,
        concurrency: CONCURRENCY,
        ..ApplyOptions::default()
    };
    options
}

fn report(
    name: &str,
    ours: &mut [Duration],
    floor: &mut [Duration],
    floor_name: &str,
    target: &str,
) {
    ours.sort();
    floor.sort();
    let (a, b) = (ours[ours.len() / 2], floor[floor.len() / 2]);
    println!(
        "{name:<28} {:>8.0} ms {:>8.0} ms {:>7.2}   {target} ({floor_name})",
        a.as_secs_f64() * 1e3,
        b.as_secs_f64() * 1e3,
        a.as_secs_f64() / b.as_secs_f64()
    );
}

fn is_write(key: &str) -> bool {
    key.starts_with("POST") || key.starts_with("PUT") || key.starts_with("DELETE") || key == "PATCH"
}

/// A client whose every request is counted as `VERB` (`PATCH dry-run` for
/// dry-runs).
async fn counting_client(counts: Counts) -> kube::Client {
    let kubeconfig = Kubeconfig::read_from(support::kubeconfig()).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap();
    let layer =
        tower::util::MapRequestLayer::new(move |request: http::Request<kube::client::Body>| {
            let dry = request.uri().query().is_some_and(|q| q.contains("dryRun"));
            let key = format!("{}{}", request.method(), if dry { " dry-run" } else { "" });
            *counts.lock().unwrap().entry(key).or_default() += 1;
            request
        });
    ClientBuilder::try_from(config)
        .unwrap()
        .with_layer(&layer)
        .build()
}

fn desired_state(namespace: &str) -> Desired {
    let mut tree = MemoryTree::new("bench");
    for i in 0..OBJECTS / 2 {
        tree.insert(
            format!("config-{i:04}.yaml"),
            format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: config-{i:04}\ndata:\n  index: \"{i}\"\n  text: some configuration value {i}\n").into_bytes(),
        );
        tree.insert(
            format!("deploy-{i:04}.yaml"),
            format!(
                "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web-{i:04}\nspec:\n  replicas: 0\n  selector:\n    matchLabels: {{app: web-{i:04}}}\n  template:\n    metadata:\n      labels: {{app: web-{i:04}}}\n    spec:\n      containers: [{{name: web, image: \"nginx:1.27\"}}]\n"
            )
            .into_bytes(),
        );
    }
    let rendered = render::render(&RenderInput::new(&tree, namespace)).unwrap();
    Desired {
        rendered,
        source: RecordSource::Directory {
            path: "bench".into(),
        },
        values_digest: String::new(),
        ignore: Vec::new(),
        ignored: Vec::new(),
    }
}

/// `count` ConfigMaps whose data says `value`.
fn configmaps(namespace: &str, count: usize, value: &str) -> Desired {
    let mut tree = MemoryTree::new("bench");
    for i in 0..count {
        tree.insert(
            format!("c-{i:03}.yaml"),
            format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c-{i:03}\ndata:\n  value: {value}\n").into_bytes(),
        );
    }
    Desired {
        rendered: render::render(&RenderInput::new(&tree, namespace)).unwrap(),
        source: RecordSource::Directory {
            path: "bench".into(),
        },
        values_digest: String::new(),
        ignore: Vec::new(),
        ignored: Vec::new(),
    }
}

fn stamped(desired: &Desired, app: &AppIdentity) -> Vec<(windlass::render::ObjectId, Value)> {
    desired
        .rendered
        .objects
        .iter()
        .map(|o| {
            let mut value = o.object.clone();
            stamp(&mut value, app, &o.digest);
            (o.id.clone(), value)
        })
        .collect()
}

/// The floor: a bare loop of server-side apply PATCHes at the same concurrency.
async fn patch_all(
    client: &kube::Client,
    objects: &[(windlass::render::ObjectId, Value)],
    dry_run: bool,
) {
    let results: Vec<()> = stream::iter(objects.iter().map(|(id, object)| async move {
        let resource = if id.kind == "ConfigMap" {
            ApiResource::erase::<k8s_openapi::api::core::v1::ConfigMap>(&())
        } else {
            ApiResource::erase::<k8s_openapi::api::apps::v1::Deployment>(&())
        };
        let api: Api<DynamicObject> =
            Api::namespaced_with(client.clone(), id.namespace.as_deref().unwrap(), &resource);
        let mut params = PatchParams::apply(FIELD_MANAGER).force();
        if dry_run {
            params = params.dry_run();
        }
        api.patch(&id.name, &params, &Patch::Apply(object))
            .await
            .unwrap();
    }))
    .buffer_unordered(CONCURRENCY)
    .collect()
    .await;
    assert_eq!(results.len(), objects.len());
}
