//! Controller benchmark: `windlass controller` as its own process, against
//! the local control plane (or WINDLASS_TEST_KUBECONFIG) and a `git daemon`
//! on 127.0.0.1.
//!
//! ```text
//!   deploy.git (git daemon)   apps/app-000 … apps/app-199, 10 objects each: 6 ConfigMaps,
//!        │                    2 headless Services, 1 ServiceAccount, 1 Role (2,000 in all)
//!        ▼
//!   windlass controller ◄── 200 Applications in one fresh namespace (WINDLASS_BENCH_APPS)
//!   (process: /proc/PID)      (automated, prune, interval 30s, wait false)
//!        │
//!        ├─ cold start: first create → all 200 Ready=True
//!        │    vs the floor: a bare loop of the same 2,000 server-side apply PATCHes
//!        ├─ steady state, 5 intervals (150 s): API writes (from /metrics, target 0),
//!        │    CPU seconds (/proc/PID/stat), peak RSS (VmHWM, target < 100 MiB),
//!        │    git upload-packs (one ref listing per interval is shared by all 200)
//!        └─ teardown: delete the 200 Applications → every Application and object gone
//!             vs the floor: a bare loop of the same 2,000 DELETEs (Flux: 19 s here)
//! ```
//!
//! The Services are headless: the local control plane's Service CIDR is a
//! /24, too small for 400 ClusterIPs. Nothing here needs a node: `wait:
//! false`, and every object is healthy without Pods.
//!
//! The controller's concurrency is 8 (`WINDLASS_BENCH_CONCURRENCY=4,8` runs
//! one full round per value). The floor runs at 16 in flight (what one sync
//! uses) and at concurrency × 10 (the most the controller can have in
//! flight); the faster one is the floor. Load average is printed next to the
//! figures: the machine is shared. Run: `cargo bench --bench controller`.
//!
//! `WINDLASS_BENCH_WRAP="heaptrack -o /tmp/controller"` starts the controller
//! under that command (a profiler); the RSS figures are then the wrapper's.

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::Role;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::core::GroupVersionKind;
use kube::discovery::ApiResource;
use serde_json::{Value, json};
use support::git::{ServedRepo, TempDir, free_port};
use windlass::identity::{AppIdentity, FIELD_MANAGER, LABEL_MANAGED_BY, MANAGED_BY, stamp};
use windlass::render::{self, MemoryTree, ObjectId, RenderInput};
use windlass::spec::Application;

/// Applications in the benchmark (`WINDLASS_BENCH_APPS`, default 200).
fn apps() -> usize {
    static COUNT: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *COUNT.get_or_init(|| {
        std::env::var("WINDLASS_BENCH_APPS")
            .ok()
            .map(|n| n.parse().expect("WINDLASS_BENCH_APPS: a number"))
            .unwrap_or(200)
    })
}
const OBJECTS_PER_APP: usize = 10;
const INTERVAL: Duration = Duration::from_secs(30);
const STEADY_INTERVALS: u32 = 5;
/// The floor's concurrency when it is not the controller's: one sync's.
const SYNC_CONCURRENCY: usize = 16;
/// Applications are created this many at once.
const CREATE_CONCURRENCY: usize = 16;
/// A guard against hanging, not a target.
const COLD_LIMIT: Duration = Duration::from_secs(900);
const FIELD_MANAGER_BENCH: &str = "windlass-bench-controller";

/// Flux v2.9's published figure: 1,000 Kustomizations reconciled in 4 min
/// 13 s, 223 MiB, on a 16-core runner.
const FLUX_APPS: f64 = 1_000.0;
const FLUX_SECONDS: f64 = 253.0;
const FLUX_MIB: f64 = 223.0;
const FLUX_CORES: f64 = 16.0;

fn main() {
    let concurrencies: Vec<u16> = std::env::var("WINDLASS_BENCH_CONCURRENCY")
        .unwrap_or_else(|_| "8".into())
        .split(',')
        .map(|c| {
            c.trim()
                .parse()
                .expect("WINDLASS_BENCH_CONCURRENCY: numbers, e.g. 4,8")
        })
        .collect();
    let files = repository_files();
    let files: Vec<(&str, &str)> = files
        .iter()
        .map(|(p, c)| (p.as_str(), c.as_str()))
        .collect();
    let repo = ServedRepo::start("bench-controller", &files);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run(&repo, &concurrencies));
}

/// What one round measured.
struct Round {
    concurrency: u16,
    cold: Duration,
    creates: Duration,
    floor: Duration,
    floor_concurrency: usize,
    other_floor: (usize, Duration),
    cold_cpu: f64,
    cold_peak_kib: u64,
    cold_load: String,
    cold_reconcile: Timing,
    cold_git: Timing,
    cold_requests: BTreeMap<String, u64>,
    window: Duration,
    steady_writes: u64,
    steady_requests: BTreeMap<String, u64>,
    steady_reconciles: BTreeMap<String, u64>,
    steady_git_requests: usize,
    steady_cpu: f64,
    steady_peak_kib: u64,
    steady_rss_kib: u64,
    steady_load: String,
    steady_reconcile: Timing,
    steady_git: Timing,
    teardown: Duration,
    teardown_floor: Duration,
    drift: Vec<Duration>,
    drift_peak_kib: u64,
}

async fn run(repo: &ServedRepo, concurrencies: &[u16]) {
    let app_count = apps();
    let client = support::client().await;
    delete_leftover_namespaces(&client).await;
    install_crd(&client).await;
    println!(
        "controller benchmark: {app_count} Applications × {OBJECTS_PER_APP} objects, interval {}s, \
         steady state {STEADY_INTERVALS} intervals; {} CPUs; load average at start: {}",
        INTERVAL.as_secs(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load_average()
    );
    let mut rounds = Vec::new();
    for &concurrency in concurrencies {
        rounds.push(round(&client, repo, concurrency).await);
    }
    report(&rounds);
}

async fn round(client: &kube::Client, repo: &ServedRepo, concurrency: u16) -> Round {
    let app_count = apps();
    println!();
    println!("--concurrency {concurrency}");

    // The floor: the same 2,000 SSA PATCHes from a plain client, nothing else.
    let most_in_flight = usize::from(concurrency) * OBJECTS_PER_APP;
    let mut floors = Vec::new();
    let mut floor_namespaces = Vec::new();
    for in_flight in [SYNC_CONCURRENCY, most_in_flight] {
        let namespace = support::create_namespace(client, "controller-floor").await;
        floor_namespaces.push(namespace.clone());
        let objects = desired_objects(&namespace);
        let started = Instant::now();
        apply_all(client, &objects, in_flight).await;
        let took = started.elapsed();
        println!(
            "  floor: {} SSA PATCHes at {in_flight} in flight: {:.2} s",
            objects.len(),
            took.as_secs_f64()
        );
        floors.push((in_flight, took));
    }
    // The teardown's floor: the same 2,000 objects deleted by a bare loop.
    let started = Instant::now();
    delete_all(
        client,
        &desired_objects(&floor_namespaces[0]),
        SYNC_CONCURRENCY,
    )
    .await;
    let teardown_floor = started.elapsed();
    println!(
        "  teardown floor: {} DELETEs at {SYNC_CONCURRENCY} in flight: {:.2} s",
        apps() * OBJECTS_PER_APP,
        teardown_floor.as_secs_f64()
    );
    // The floor's objects go before the controller starts, so that the
    // namespace controller's deletions do not compete with it.
    for namespace in &floor_namespaces {
        delete_namespace(client, namespace, Duration::from_secs(600)).await;
    }
    floors.sort_by_key(|(_, took)| *took);
    let (floor_concurrency, floor) = floors[0];
    let other_floor = floors[1];

    let namespace = support::create_namespace(client, "controller-bench").await;
    let scratch = TempDir::new("bench-controller-process");
    let controller = ControllerProcess::start(scratch.path(), &namespace, concurrency);
    let teardown = Teardown {
        namespace: namespace.clone(),
        controller: Some(controller),
    };
    let controller = teardown.controller.as_ref().unwrap();
    controller.wait_ready();
    let pid = controller.pid();

    let cold_before = controller.scrape();
    let cpu_before = cpu_seconds(pid);
    let started = Instant::now();
    create_applications(client, &namespace, &repo.url).await;
    let creates = started.elapsed();
    wait_all_ready(client, &namespace, controller).await;
    let cold = started.elapsed();
    let cold_cpu = cpu_seconds(pid) - cpu_before;
    let cold_peak_kib = status_kib(pid, "VmHWM");
    let cold_load = load_average();
    let cold_after = controller.scrape();
    let cold_reconcile = cold_after.mean_since(&cold_before, RECONCILE_HISTOGRAM);
    let cold_git = cold_after.mean_since(&cold_before, GIT_HISTOGRAM);
    let cold_requests = cold_after.requests_since(&cold_before);
    println!(
        "  cold start: {app_count} created in {:.2} s, all Ready after {:.2} s; controller CPU {cold_cpu:.1} s, \
         peak RSS {:.1} MiB; load average {cold_load}",
        creates.as_secs_f64(),
        cold.as_secs_f64(),
        mib(cold_peak_kib)
    );
    assert_objects_applied(client, &namespace).await;

    // Steady state: nothing changes for 5 intervals.
    reset_peak_rss(pid);
    let before = controller.scrape();
    let cpu_before = cpu_seconds(pid);
    let git_before = repo.daemon.upload_pack_requests();
    let window_started = Instant::now();
    tokio::time::sleep(INTERVAL * STEADY_INTERVALS).await;
    let window = window_started.elapsed();
    let after = controller.scrape();
    let steady_cpu = cpu_seconds(pid) - cpu_before;
    let steady_peak_kib = status_kib(pid, "VmHWM");
    let steady_rss_kib = status_kib(pid, "VmRSS");
    let steady_git_requests = repo.daemon.upload_pack_requests() - git_before;
    let steady_load = load_average();
    let ready = count_ready(client, &namespace).await.0;
    assert_eq!(
        ready,
        apps(),
        "every Application stays Ready in steady state"
    );
    let steady_requests = after.requests_since(&before);
    let steady_writes = steady_requests
        .iter()
        .filter(|(key, _)| is_write(key))
        .map(|(_, n)| n)
        .sum();
    let steady_reconciles = after.reconciles_since(&before);
    let steady_reconcile = after.mean_since(&before, RECONCILE_HISTOGRAM);
    let steady_git = after.mean_since(&before, GIT_HISTOGRAM);
    println!(
        "  steady state ({:.0} s): {steady_writes} writes, requests {steady_requests:?}, \
         reconciles {steady_reconciles:?}, {steady_git_requests} git upload-packs; CPU {steady_cpu:.1} s, \
         peak RSS {:.1} MiB; load average {steady_load}",
        window.as_secs_f64(),
        mib(steady_peak_kib)
    );

    // Drift: a hand edit of one object, until its Application is Drifted.
    let drift = measure_drift(client, &namespace).await;
    let drift_peak_kib = status_kib(pid, "VmHWM");
    let (p50, p95) = percentiles(&drift);
    println!(
        "  drift: {} hand edits, edit → Drifted p50 {:.0} ms, p95 {:.0} ms (interval {} s)",
        drift.len(),
        p50.as_secs_f64() * 1e3,
        p95.as_secs_f64() * 1e3,
        INTERVAL.as_secs()
    );

    // Teardown: every Application deleted at once; the controller prunes.
    let started = Instant::now();
    let applications: Api<Application> = Api::namespaced(client.clone(), &namespace);
    applications
        .delete_collection(&DeleteParams::background(), &ListParams::default())
        .await
        .expect("deleting the Applications");
    wait_all_gone(client, &namespace).await;
    let teardown_took = started.elapsed();
    println!(
        "  teardown: {app_count} Applications and {} objects gone after {:.2} s; load average {}",
        apps() * OBJECTS_PER_APP,
        teardown_took.as_secs_f64(),
        load_average()
    );
    drop(teardown);

    Round {
        concurrency,
        cold,
        creates,
        floor,
        floor_concurrency,
        other_floor,
        cold_cpu,
        cold_peak_kib,
        cold_load,
        cold_reconcile,
        cold_git,
        cold_requests,
        window,
        steady_writes,
        steady_requests,
        steady_reconciles,
        steady_git_requests,
        steady_cpu,
        steady_peak_kib,
        steady_rss_kib,
        steady_load,
        steady_reconcile,
        steady_git,
        teardown: teardown_took,
        teardown_floor,
        drift,
        drift_peak_kib,
    }
}

/// Edits one ConfigMap of 20 Applications by hand, one at a time, and
/// measures each edit until the Application says Drifted.
async fn measure_drift(client: &kube::Client, namespace: &str) -> Vec<Duration> {
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let applications: Api<Application> = Api::namespaced(client.clone(), namespace);
    let mut latencies = Vec::new();
    for edit in 0..20 {
        let app = (edit * 37 + 11) % apps();
        let name = app_name(app);
        let patch = json!({ "data": { "text": format!("edited by hand {edit}") } });
        let params = PatchParams {
            field_manager: Some("kubectl-edit".into()),
            ..Default::default()
        };
        let started = Instant::now();
        configmaps
            .patch(&format!("{name}-config-0"), &params, &Patch::Merge(&patch))
            .await
            .expect("a hand edit");
        loop {
            let drifted = applications
                .get(&name)
                .await
                .ok()
                .and_then(|a| a.status)
                .is_some_and(|s| {
                    s.conditions
                        .iter()
                        .any(|c| c.type_ == "Drifted" && c.status == "True")
                });
            if drifted {
                break;
            }
            assert!(
                started.elapsed() < COLD_LIMIT,
                "{name} never became Drifted"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        latencies.push(started.elapsed());
    }
    latencies
}

/// (p50, p95) of `samples`.
fn percentiles(samples: &[Duration]) -> (Duration, Duration) {
    let mut sorted = samples.to_vec();
    sorted.sort();
    let at =
        |p: f64| sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1];
    (at(0.50), at(0.95))
}

fn report(rounds: &[Round]) {
    let app_count = apps();
    println!();
    for round in rounds {
        let cold = round.cold.as_secs_f64();
        let floor = round.floor.as_secs_f64();
        let steady_reconciles: u64 = round.steady_reconciles.values().sum();
        println!(
            "windlass controller --concurrency {}, {app_count} Applications, {} objects",
            round.concurrency,
            apps() * OBJECTS_PER_APP
        );
        println!("  {:<44} {:>14}   target / note", "measure", "windlass");
        let row = |what: &str, value: String, note: String| {
            println!("  {what:<44} {value:>14}   {note}");
        };
        row(
            "cold start: first create to all Ready",
            format!("{cold:.1} s"),
            format!(
                "{:.2}× the floor; creates took {:.1} s",
                cold / floor,
                round.creates.as_secs_f64()
            ),
        );
        row(
            &format!("  floor: bare SSA of the {} objects", apps() * 10),
            format!("{floor:.1} s"),
            format!(
                "at {} in flight ({:.1} s at {})",
                round.floor_concurrency,
                round.other_floor.1.as_secs_f64(),
                round.other_floor.0
            ),
        );
        row(
            "  per Application",
            format!("{:.3} s", cold / apps() as f64),
            format!(
                "Flux v2.9: {:.3} s on {FLUX_CORES} cores",
                FLUX_SECONDS / FLUX_APPS
            ),
        );
        row(
            "  controller CPU",
            format!("{:.1} s", round.cold_cpu),
            format!(
                "{:.3} CPU s per Application",
                round.cold_cpu / apps() as f64
            ),
        );
        row(
            "  peak RSS",
            format!("{:.1} MiB", mib(round.cold_peak_kib)),
            format!("< 100 MiB (Flux v2.9: {FLUX_MIB} MiB for {FLUX_APPS})"),
        );
        row(
            "  mean reconcile",
            timing(round.cold_reconcile),
            format!("git resolve {}", timing(round.cold_git)),
        );
        row(
            "  API requests per Application",
            per_app(&round.cold_requests),
            breakdown(&round.cold_requests),
        );
        row(
            "  load average after",
            round.cold_load.clone(),
            String::new(),
        );
        row(
            &format!(
                "steady state, {} s ({STEADY_INTERVALS} × {} s)",
                round.window.as_secs_f64().round(),
                INTERVAL.as_secs()
            ),
            String::new(),
            format!(
                "{steady_reconciles} reconciles, {} git upload-packs",
                round.steady_git_requests
            ),
        );
        row("  API writes", round.steady_writes.to_string(), "0".into());
        row(
            "  API requests (all)",
            round.steady_requests.values().sum::<u64>().to_string(),
            breakdown(&round.steady_requests),
        );
        row(
            "  controller CPU",
            format!("{:.1} s", round.steady_cpu),
            format!(
                "{:.1}% of one core; {:.1} ms per reconcile",
                100.0 * round.steady_cpu / round.window.as_secs_f64(),
                1e3 * round.steady_cpu / steady_reconciles.max(1) as f64
            ),
        );
        row(
            "  peak RSS",
            format!("{:.1} MiB", mib(round.steady_peak_kib)),
            format!("< 100 MiB; {:.1} MiB at the end", mib(round.steady_rss_kib)),
        );
        row(
            "  mean reconcile",
            timing(round.steady_reconcile),
            format!("git resolve {}", timing(round.steady_git)),
        );
        row(
            "  load average after",
            round.steady_load.clone(),
            String::new(),
        );
        let (p50, p95) = percentiles(&round.drift);
        row(
            "drift: hand edit → Drifted, p50 / p95",
            format!(
                "{:.0} / {:.0} ms",
                p50.as_secs_f64() * 1e3,
                p95.as_secs_f64() * 1e3
            ),
            format!(
                "p50 ≤ 1 s; {} edits, interval {} s; peak RSS with the watches {:.1} MiB",
                round.drift.len(),
                INTERVAL.as_secs(),
                mib(round.drift_peak_kib)
            ),
        );
        row(
            "teardown: delete all, until every object is gone",
            format!("{:.1} s", round.teardown.as_secs_f64()),
            format!(
                "{:.2}× the floor ({:.1} s bare DELETEs); Flux: 19 s on this machine",
                round.teardown.as_secs_f64() / round.teardown_floor.as_secs_f64(),
                round.teardown_floor.as_secs_f64()
            ),
        );
        println!();
    }
}

/// The same objects deleted by a plain client, `in_flight` at a time.
async fn delete_all(client: &kube::Client, objects: &[(ObjectId, Value)], in_flight: usize) {
    stream::iter(objects.iter().map(|(id, _)| async move {
        let resource =
            ApiResource::from_gvk(&GroupVersionKind::gvk(&id.group, &id.version, &id.kind));
        let api: Api<DynamicObject> =
            Api::namespaced_with(client.clone(), id.namespace.as_deref().unwrap(), &resource);
        api.delete(&id.name, &DeleteParams::default())
            .await
            .unwrap_or_else(|e| panic!("floor: deleting {}/{}: {e}", id.kind, id.name));
    }))
    .buffer_unordered(in_flight)
    .collect::<Vec<()>>()
    .await;
}

/// Waits until no Application and no object of theirs is left.
async fn wait_all_gone(client: &kube::Client, namespace: &str) {
    let applications: Api<Application> = Api::namespaced(client.clone(), namespace);
    let selector = ListParams::default().labels(&format!("{LABEL_MANAGED_BY}={MANAGED_BY}"));
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let services: Api<Service> = Api::namespaced(client.clone(), namespace);
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
    let roles: Api<Role> = Api::namespaced(client.clone(), namespace);
    let started = Instant::now();
    loop {
        let left = applications
            .list_metadata(&ListParams::default())
            .await
            .map(|l| l.items.len())
            .unwrap_or(1)
            + configmaps
                .list_metadata(&selector)
                .await
                .map(|l| l.items.len())
                .unwrap_or(1)
            + services
                .list_metadata(&selector)
                .await
                .map(|l| l.items.len())
                .unwrap_or(1)
            + accounts
                .list_metadata(&selector)
                .await
                .map(|l| l.items.len())
                .unwrap_or(1)
            + roles
                .list_metadata(&selector)
                .await
                .map(|l| l.items.len())
                .unwrap_or(1);
        if left == 0 {
            return;
        }
        assert!(
            started.elapsed() < COLD_LIMIT,
            "teardown: {left} left after {COLD_LIMIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Requests per Application, in all.
fn per_app(requests: &BTreeMap<String, u64>) -> String {
    format!(
        "{:.1}",
        requests.values().sum::<u64>() as f64 / apps() as f64
    )
}

/// `GET 5640, PATCH 200`.
fn breakdown(requests: &BTreeMap<String, u64>) -> String {
    let parts: Vec<String> = requests.iter().map(|(k, n)| format!("{k} {n}")).collect();
    parts.join(", ")
}

/// `12 ms ×935`: a mean and how many observations.
fn timing(timing: Timing) -> String {
    format!(
        "{:.0} ms ×{}",
        timing.mean.as_secs_f64() * 1e3,
        timing.count
    )
}

/// `apps/app-NNN/<object>.yaml` for every Application.
fn repository_files() -> Vec<(String, String)> {
    let mut files = Vec::new();
    for app in 0..apps() {
        for (file, manifest) in app_manifests(app) {
            files.push((format!("{}/{file}", app_path(app)), manifest));
        }
    }
    files
}

fn app_name(app: usize) -> String {
    format!("app-{app:03}")
}

fn app_path(app: usize) -> String {
    format!("apps/{}", app_name(app))
}

/// One Application's 10 objects: 6 ConfigMaps, 2 headless Services, a
/// ServiceAccount and a Role.
fn app_manifests(app: usize) -> Vec<(String, String)> {
    let name = app_name(app);
    let mut files = Vec::new();
    for i in 0..6 {
        files.push((
            format!("config-{i}.yaml"),
            format!(
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}-config-{i}\ndata:\n  \
                 app: {name}\n  index: \"{i}\"\n  text: some configuration value {i} of {name}\n"
            ),
        ));
    }
    for i in 0..2 {
        files.push((
            format!("service-{i}.yaml"),
            format!(
                "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}-svc-{i}\nspec:\n  \
                 clusterIP: None\n  ports:\n  - {{name: http, port: {}, targetPort: 8080}}\n",
                80 + i
            ),
        ));
    }
    files.push((
        "serviceaccount.yaml".into(),
        format!("apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: {name}\n"),
    ));
    files.push((
        "role.yaml".into(),
        format!(
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata:\n  name: {name}-reader\n\
             rules:\n- apiGroups: [\"\"]\n  resources: [configmaps]\n  verbs: [get, list, watch]\n"
        ),
    ));
    files
}

/// The 2,000 objects as the controller applies them in `namespace`: rendered
/// and stamped with each Application's identity.
fn desired_objects(namespace: &str) -> Vec<(ObjectId, Value)> {
    let mut objects = Vec::new();
    for app in 0..apps() {
        let mut tree = MemoryTree::new(app_path(app));
        for (file, manifest) in app_manifests(app) {
            tree.insert(file, manifest.into_bytes());
        }
        let rendered = render::render(&RenderInput::new(&tree, namespace)).unwrap();
        let identity = AppIdentity::new(namespace, app_name(app));
        for object in rendered.objects {
            let mut value = object.object.clone();
            stamp(&mut value, &identity, &object.digest);
            objects.push((object.id, value));
        }
    }
    assert_eq!(objects.len(), apps() * OBJECTS_PER_APP);
    objects
}

/// A bare loop of server-side apply PATCHes, `in_flight` at once.
async fn apply_all(client: &kube::Client, objects: &[(ObjectId, Value)], in_flight: usize) {
    stream::iter(objects.iter().map(|(id, object)| async move {
        let resource =
            ApiResource::from_gvk(&GroupVersionKind::gvk(&id.group, &id.version, &id.kind));
        let api: Api<DynamicObject> =
            Api::namespaced_with(client.clone(), id.namespace.as_deref().unwrap(), &resource);
        api.patch(
            &id.name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(object),
        )
        .await
        .unwrap_or_else(|e| panic!("floor: applying {}/{}: {e}", id.kind, id.name));
    }))
    .buffer_unordered(in_flight)
    .collect::<Vec<()>>()
    .await;
}

/// windlass's CRDs, server-side applied (idempotent), and served.
async fn install_crd(client: &kube::Client) {
    support::install_crds(client, FIELD_MANAGER_BENCH).await;
}

/// Creates the 200 Applications, `CREATE_CONCURRENCY` at once.
async fn create_applications(client: &kube::Client, namespace: &str, url: &str) {
    let api: Api<Application> = Api::namespaced(client.clone(), namespace);
    stream::iter((0..apps()).map(|app| {
        let api = api.clone();
        async move {
            let application: Application = serde_json::from_value(json!({
                "apiVersion": "windlass.dev/v1alpha1",
                "kind": "Application",
                "metadata": { "name": app_name(app), "namespace": namespace },
                "spec": {
                    "source": { "repoURL": url, "ref": "main", "path": app_path(app) },
                    "sync": {
                        "automated": true,
                        "prune": true,
                        "interval": format!("{}s", INTERVAL.as_secs()),
                        "wait": false,
                    },
                },
            }))
            .unwrap();
            api.create(&PostParams::default(), &application)
                .await
                .unwrap_or_else(|e| panic!("creating Application {}: {e}", app_name(app)));
        }
    }))
    .buffer_unordered(CREATE_CONCURRENCY)
    .collect::<Vec<()>>()
    .await;
}

/// (Applications Ready=True, the others' Ready reasons and messages).
async fn count_ready(client: &kube::Client, namespace: &str) -> (usize, BTreeMap<String, usize>) {
    let api: Api<Application> = Api::namespaced(client.clone(), namespace);
    let list = api.list(&ListParams::default()).await.unwrap();
    let mut ready = 0;
    let mut others = BTreeMap::new();
    for application in &list.items {
        match application.condition("Ready") {
            Some(c) if c.status == "True" => ready += 1,
            Some(c) => {
                *others
                    .entry(format!("{}: {}", c.reason, c.message))
                    .or_default() += 1
            }
            None => *others.entry("no Ready condition yet".into()).or_default() += 1,
        }
    }
    (ready, others)
}

/// Polls every 250 ms until all Applications are Ready; after
/// `COLD_LIMIT`, panics with what the others say and the controller's log.
async fn wait_all_ready(client: &kube::Client, namespace: &str, controller: &ControllerProcess) {
    let app_count = apps();
    let started = Instant::now();
    let mut last_print = Instant::now();
    loop {
        let (ready, others) = count_ready(client, namespace).await;
        if ready == apps() {
            return;
        }
        if last_print.elapsed() > Duration::from_secs(15) {
            println!(
                "  … {:.0} s: {ready}/{app_count} Ready",
                started.elapsed().as_secs_f64()
            );
            last_print = Instant::now();
        }
        if started.elapsed() > COLD_LIMIT {
            panic!(
                "only {ready} of {app_count} Applications became Ready within {COLD_LIMIT:?}; the \
                 others say: {others:#?}\n--- controller log (last 60 lines) ---\n{}",
                controller.log_tail(60)
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Every Application's objects are live and stamped by windlass.
async fn assert_objects_applied(client: &kube::Client, namespace: &str) {
    let params = ListParams::default().labels(&format!("{LABEL_MANAGED_BY}={MANAGED_BY}"));
    let configmaps = Api::<ConfigMap>::namespaced(client.clone(), namespace)
        .list_metadata(&params)
        .await
        .unwrap()
        .items
        .len();
    let services = Api::<Service>::namespaced(client.clone(), namespace)
        .list_metadata(&params)
        .await
        .unwrap()
        .items
        .len();
    let accounts = Api::<ServiceAccount>::namespaced(client.clone(), namespace)
        .list_metadata(&params)
        .await
        .unwrap()
        .items
        .len();
    let roles = Api::<Role>::namespaced(client.clone(), namespace)
        .list_metadata(&params)
        .await
        .unwrap()
        .items
        .len();
    assert_eq!(
        (configmaps, services, accounts, roles),
        (6 * apps(), 2 * apps(), apps(), apps()),
        "live (ConfigMaps, Services, ServiceAccounts, Roles) applied by windlass"
    );
}

/// Deletes `namespace` and waits until it is gone.
async fn delete_namespace(client: &kube::Client, namespace: &str, limit: Duration) {
    let api: Api<Namespace> = Api::all(client.clone());
    let _ = api.delete(namespace, &DeleteParams::background()).await;
    support::eventually(&format!("namespace {namespace} is deleted"), limit, || {
        let api = api.clone();
        async move {
            match api.get_opt(namespace).await {
                Ok(None) => Ok(()),
                Ok(Some(_)) => Err("still there".to_string()),
                Err(e) => Err(e.to_string()),
            }
        }
    })
    .await;
}

/// The mean of a duration histogram over a window, and how many.
#[derive(Clone, Copy)]
struct Timing {
    mean: Duration,
    count: u64,
}

const RECONCILE_HISTOGRAM: &str = "windlass_reconcile_duration_seconds";
const GIT_HISTOGRAM: &str = "windlass_git_fetch_duration_seconds";

/// A round that panicked leaves its namespaces behind; its Applications may
/// hold finalizers with no controller left to remove them.
async fn delete_leftover_namespaces(client: &kube::Client) {
    let api: Api<Namespace> = Api::all(client.clone());
    for namespace in api.list(&ListParams::default()).await.unwrap().items {
        let name = namespace.metadata.name.unwrap_or_default();
        if name.starts_with("wl-controller-bench-") || name.starts_with("wl-controller-floor-") {
            release_applications(client, &name).await;
            let _ = api.delete(&name, &DeleteParams::background()).await;
        }
    }
}

/// Removes the finalizer from every Application in `namespace`.
async fn release_applications(client: &kube::Client, namespace: &str) {
    let api: Api<Application> = Api::namespaced(client.clone(), namespace);
    let Ok(list) = api.list_metadata(&ListParams::default()).await else {
        return;
    };
    for application in list.items {
        let name = application.metadata.name.unwrap_or_default();
        let _ = api
            .patch(
                &name,
                &PatchParams::default(),
                &Patch::Merge(json!({ "metadata": { "finalizers": null } })),
            )
            .await;
    }
}

/// The controller under test, as its own process.
struct ControllerProcess {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl ControllerProcess {
    fn start(scratch: &Path, namespace: &str, concurrency: u16) -> ControllerProcess {
        let port = free_port();
        let log = scratch.join("controller.log");
        let cache = scratch.join("cache");
        std::fs::create_dir_all(&cache).unwrap();
        let wrap: Vec<String> = std::env::var("WINDLASS_BENCH_WRAP")
            .map(|w| w.split(' ').map(String::from).collect())
            .unwrap_or_default();
        let mut command = match wrap.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(env!("CARGO_BIN_EXE_windlass"));
                c
            }
            None => Command::new(env!("CARGO_BIN_EXE_windlass")),
        };
        let child = command
            .arg("--kubeconfig")
            .arg(support::kubeconfig())
            .args(["controller", "--http-address"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("--cache-dir")
            .arg(&cache)
            .args(["--concurrency", &concurrency.to_string()])
            .args(["--watch-namespace", namespace])
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::create(scratch.join("controller.stderr")).unwrap())
            .spawn()
            .expect("starting windlass controller");
        ControllerProcess { child, port, log }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits until /readyz answers 200 (the controller is watching).
    fn wait_ready(&self) {
        let started = Instant::now();
        loop {
            if http_get(self.port, "/readyz").is_some_and(|r| r.starts_with("HTTP/1.1 200")) {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "windlass controller did not become ready:\n{}",
                self.log_tail(40)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn scrape(&self) -> Scrape {
        let text = http_get(self.port, "/metrics").expect("scraping /metrics");
        Scrape::parse(&text)
    }

    fn log_tail(&self, lines: usize) -> String {
        let mut text = std::fs::read_to_string(&self.log).unwrap_or_default();
        text.push_str(
            &std::fs::read_to_string(self.log.with_file_name("controller.stderr"))
                .unwrap_or_default(),
        );
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// SIGTERM (running reconciles finish), then SIGKILL after 30 s.
    fn stop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(30) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ControllerProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Removes a round's Applications (the controller, still running, prunes
/// their objects and releases their finalizers), stops the controller,
/// deletes the namespace; also when the round panicked.
struct Teardown {
    namespace: String,
    controller: Option<ControllerProcess>,
}

impl Drop for Teardown {
    fn drop(&mut self) {
        let namespace = self.namespace.clone();
        let mut controller = self.controller.take();
        // Drop may run inside the benchmark's runtime: use a thread of its own.
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let client = support::client().await;
                let api: Api<Application> = Api::namespaced(client.clone(), &namespace);
                let _ = api
                    .delete_collection(&DeleteParams::background(), &ListParams::default())
                    .await;
                let started = Instant::now();
                while started.elapsed() < Duration::from_secs(180) {
                    match api.list_metadata(&ListParams::default()).await {
                        Ok(list) if list.items.is_empty() => break,
                        _ => tokio::time::sleep(Duration::from_millis(500)).await,
                    }
                }
                if let Some(controller) = controller.as_mut() {
                    controller.stop();
                }
                release_applications(&client, &namespace).await;
                let namespaces: Api<Namespace> = Api::all(client);
                let _ = namespaces
                    .delete(&namespace, &DeleteParams::background())
                    .await;
            });
        });
        let _ = cleanup.join();
    }
}

/// The counters of one /metrics scrape.
struct Scrape {
    /// `METHOD` or `METHOD dry-run` → requests.
    requests: BTreeMap<String, u64>,
    /// result → reconciles, over all Applications.
    reconciles: BTreeMap<String, u64>,
    /// histogram name → (sum of seconds, count).
    histograms: BTreeMap<String, (f64, u64)>,
}

impl Scrape {
    fn parse(text: &str) -> Scrape {
        let mut scrape = Scrape {
            requests: BTreeMap::new(),
            reconciles: BTreeMap::new(),
            histograms: BTreeMap::new(),
        };
        for line in text.lines() {
            let Some((series, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let Ok(value) = value.parse::<f64>() else {
                continue;
            };
            if series.starts_with("windlass_api_requests_total{") {
                let method = label(series, "method").unwrap_or("?");
                let dry = label(series, "dry_run") == Some("true");
                let key = format!("{method}{}", if dry { " dry-run" } else { "" });
                *scrape.requests.entry(key).or_default() += value as u64;
            } else if series.starts_with("windlass_reconcile_total{") {
                let result = label(series, "result").unwrap_or("?").to_string();
                *scrape.reconciles.entry(result).or_default() += value as u64;
            } else if let Some(name) = series.strip_suffix("_sum") {
                scrape.histograms.entry(name.to_string()).or_default().0 += value;
            } else if let Some(name) = series.strip_suffix("_count") {
                scrape.histograms.entry(name.to_string()).or_default().1 += value as u64;
            }
        }
        scrape
    }

    fn requests_since(&self, before: &Scrape) -> BTreeMap<String, u64> {
        difference(&self.requests, &before.requests)
    }

    fn reconciles_since(&self, before: &Scrape) -> BTreeMap<String, u64> {
        difference(&self.reconciles, &before.reconciles)
    }

    /// The mean of a histogram's observations since `before`, and their
    /// number.
    fn mean_since(&self, before: &Scrape, histogram: &str) -> Timing {
        let (sum, count) = self.histograms.get(histogram).copied().unwrap_or_default();
        let (sum_before, count_before) = before
            .histograms
            .get(histogram)
            .copied()
            .unwrap_or_default();
        let count = count - count_before;
        Timing {
            mean: Duration::from_secs_f64((sum - sum_before) / count.max(1) as f64),
            count,
        }
    }
}

fn difference(
    after: &BTreeMap<String, u64>,
    before: &BTreeMap<String, u64>,
) -> BTreeMap<String, u64> {
    after
        .iter()
        .map(|(k, n)| (k.clone(), n - before.get(k).copied().unwrap_or(0)))
        .filter(|(_, n)| *n > 0)
        .collect()
}

/// The value of `name="value"` in a series' labels.
fn label<'a>(series: &'a str, name: &str) -> Option<&'a str> {
    let start = series.find(&format!("{name}=\""))? + name.len() + 2;
    let end = series[start..].find('"')? + start;
    Some(&series[start..end])
}

/// A write is any request that is not a read or a dry-run.
fn is_write(key: &str) -> bool {
    matches!(key, "POST" | "PUT" | "PATCH" | "DELETE")
}

/// A plain HTTP/1.1 GET on 127.0.0.1; the whole response, or `None` when
/// nothing answers.
fn http_get(port: u16, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    Some(response)
}

/// User plus system CPU seconds of a process.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which may hold spaces): state is the
    // 3rd field, utime the 14th, stime the 15th.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    ticks as f64 / clock_ticks()
}

fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// A `Vm*` line of /proc/PID/status, in KiB.
fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// Resets VmHWM to the current RSS, so that the next peak is the window's.
fn reset_peak_rss(pid: u32) {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5")
        .unwrap_or_else(|e| panic!("resetting the peak RSS of {pid}: {e}"));
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// The 1, 5 and 15 minute load averages.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}
