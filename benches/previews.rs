//! Previews benchmark: `windlass controller` as its own process, against the
//! local control plane (or WINDLASS_TEST_KUBECONFIG) and a `git daemon` on
//! 127.0.0.1 serving 50 open pull requests.
//!
//! ```text
//!   deploy.git (git daemon)   refs/pull/1/head … refs/pull/50/head, each app/ = 3 ConfigMaps
//!        │
//!        ▼
//!   windlass controller ◄── one Preview (interval 5s, maxPreviews 50, template sync.wait false)
//!        │
//!        ├─ (a) cold: Preview created → 50 generated Applications Ready (150 ConfigMaps live)
//!        │      vs the floor: a bare loop creating the same 50 namespaces and 150 ConfigMaps
//!        │      by server-side apply
//!        ├─ (d) steady state, 4 intervals: git upload-packs (target: one listing per interval)
//!        ├─ (b) 10 pushes to different pull requests → that preview Ready at the new commit
//!        │      (a push waits for the next listing: the interval is printed next to it)
//!        ├─ (b') the same, each push followed by a signed GitHub `pull_request` delivery
//!        │      (`synchronize`) to the controller's /hooks/github: no wait for the interval
//!        └─ (c) 5 refs deleted → the preview's namespace gone
//!               vs the floor: a bare DELETE of a namespace holding 3 ConfigMaps → gone
//! ```
//!
//! Pushes and deletions are spread over the interval (each starts at a
//! different offset), so the figures are not locked to the listing's slot.
//! Only correctness is asserted (objects exist, namespaces go); timings are
//! printed. Run: `cargo bench --bench previews`.

#[path = "../tests/support/mod.rs"]
mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use support::git::{ServedRepo, TempDir, free_port, git};
use windlass::identity::{LABEL_MANAGED_BY, MANAGED_BY};
use windlass::spec::{Application, Preview};

const PULL_REQUESTS: u32 = 50;
const CONFIGMAPS_PER_PREVIEW: usize = 3;
const INTERVAL: Duration = Duration::from_secs(5);
const STEADY_INTERVALS: u32 = 4;
const PUSHES: u32 = 10;
const DELETIONS: u32 = 5;
/// The floor's requests in flight.
const FLOOR_IN_FLIGHT: usize = 16;
/// A guard against hanging, not a target.
const LIMIT: Duration = Duration::from_secs(600);
const FIELD_MANAGER_BENCH: &str = "windlass-bench-previews";
const WEBHOOK_SECRET: &str = "windlass-bench-previews-secret";
const BENCH_PREFIX: &str = "wl-previews-bench-";
const FLOOR_PREFIX: &str = "wl-previews-floor-";

fn main() {
    let files = repository_files("main");
    let files: Vec<(&str, &str)> = files.iter().map(|(p, c)| (*p, c.as_str())).collect();
    let served = ServedRepo::start("bench-previews", &files);
    // Every pull request starts at main's commit.
    let refspecs: Vec<String> = (1..=PULL_REQUESTS)
        .map(|n| format!("HEAD:refs/pull/{n}/head"))
        .collect();
    let mut args = vec!["push", "-q", "origin"];
    args.extend(refspecs.iter().map(String::as_str));
    git(&served.repo.work, &args);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run(&served));
}

fn repository_files(value: &str) -> Vec<(&'static str, String)> {
    ["app/cm-0.yaml", "app/cm-1.yaml", "app/cm-2.yaml"]
        .into_iter()
        .enumerate()
        .map(|(i, path)| (path, support::configmap(&format!("cm-{i}"), value)))
        .collect()
}

async fn run(served: &ServedRepo) {
    let client = support::client().await;
    delete_leftovers(&client).await;
    install_crds(&client).await;
    println!(
        "previews benchmark: {PULL_REQUESTS} pull requests × {CONFIGMAPS_PER_PREVIEW} ConfigMaps, \
         Preview interval {}s; {} CPUs; load average at start: {}",
        INTERVAL.as_secs(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load_average()
    );

    // The floors: namespaces and ConfigMaps from a plain client.
    let floor_prefix = support::create_namespace(&client, "previews-floor").await;
    let started = Instant::now();
    create_floor(&client, &floor_prefix).await;
    let floor = started.elapsed();
    println!(
        "  floor: {PULL_REQUESTS} namespaces + {} ConfigMaps by SSA ({FLOOR_IN_FLIGHT} in flight): {:.2} s",
        PULL_REQUESTS as usize * CONFIGMAPS_PER_PREVIEW,
        floor.as_secs_f64()
    );
    let mut deletion_floor = Vec::new();
    for n in 1..=DELETIONS {
        let started = Instant::now();
        delete_namespace(&client, &floor_namespace(&floor_prefix, n)).await;
        deletion_floor.push(started.elapsed());
    }
    for n in DELETIONS + 1..=PULL_REQUESTS {
        let api: Api<Namespace> = Api::all(client.clone());
        let _ = api
            .delete(
                &floor_namespace(&floor_prefix, n),
                &DeleteParams::background(),
            )
            .await;
    }
    delete_namespace(&client, &floor_prefix).await;
    for n in DELETIONS + 1..=PULL_REQUESTS {
        delete_namespace(&client, &floor_namespace(&floor_prefix, n)).await;
    }

    // The controller and the Preview.
    let namespace = support::create_namespace(&client, "previews-bench").await;
    let scratch = TempDir::new("bench-previews-process");
    let controller = ControllerProcess::start(scratch.path(), &namespace);
    controller.wait_ready();
    let name = namespace.clone();

    // (a) cold: 50 previews from nothing.
    let previews: Api<Preview> = Api::namespaced(client.clone(), &namespace);
    let started = Instant::now();
    previews
        .create(&PostParams::default(), &preview(&name, &served.url))
        .await
        .unwrap();
    wait_all_ready(&client, &namespace, &controller).await;
    let cold = started.elapsed();
    assert_objects_live(&client, &name).await;
    println!(
        "  (a) cold: Preview created → {PULL_REQUESTS} Applications Ready: {:.2} s",
        cold.as_secs_f64()
    );

    // (d) steady state: git requests per interval.
    let before = served.daemon.upload_pack_requests();
    tokio::time::sleep(INTERVAL * STEADY_INTERVALS).await;
    let steady_git = served.daemon.upload_pack_requests() - before;
    println!(
        "  (d) steady state, {STEADY_INTERVALS} intervals: {steady_git} git upload-packs \
         ({:.2} per interval)",
        steady_git as f64 / f64::from(STEADY_INTERVALS)
    );

    // (b) a push to one pull request → its preview Ready at the new commit.
    let mut pushes = Vec::new();
    for i in 0..PUSHES {
        tokio::time::sleep(spread(i)).await;
        let number = i + 1;
        let value = format!("push-{i}");
        let commit = push_pull_request(served, number, &value);
        let started = Instant::now();
        wait_application_at(
            &client,
            &namespace,
            &preview_namespace(&name, number),
            &commit,
        )
        .await;
        pushes.push(started.elapsed());
        let live = configmap_value(&client, &preview_namespace(&name, number), "cm-0").await;
        assert_eq!(
            live.as_deref(),
            Some(value.as_str()),
            "pull request {number}"
        );
    }
    let (push_p50, push_p95) = percentiles(&pushes);
    println!(
        "  (b) push → preview Ready at the new commit ({PUSHES} pushes, interval {}s): \
         p50 {:.2} s, p95 {:.2} s",
        INTERVAL.as_secs(),
        push_p50.as_secs_f64(),
        push_p95.as_secs_f64()
    );

    // (b') the same with a pull-request webhook after each push.
    let mut hooked = Vec::new();
    for i in 0..PUSHES {
        tokio::time::sleep(spread(i)).await;
        let number = PUSHES + i + 1;
        let value = format!("hooked-{i}");
        let commit = push_pull_request(served, number, &value);
        let started = Instant::now();
        let (code, reply) = controller.post_pull_request(&served.url, number);
        assert_eq!(code, 202, "the pull_request delivery: {reply}");
        wait_application_at(
            &client,
            &namespace,
            &preview_namespace(&name, number),
            &commit,
        )
        .await;
        hooked.push(started.elapsed());
        let live = configmap_value(&client, &preview_namespace(&name, number), "cm-0").await;
        assert_eq!(
            live.as_deref(),
            Some(value.as_str()),
            "pull request {number}"
        );
    }
    let (hooked_p50, hooked_p95) = percentiles(&hooked);
    println!(
        "  (b') push + pull_request webhook → preview Ready ({PUSHES} pushes, interval {}s): \
         p50 {:.2} s, p95 {:.2} s",
        INTERVAL.as_secs(),
        hooked_p50.as_secs_f64(),
        hooked_p95.as_secs_f64()
    );

    // (c) a ref deleted → its namespace gone.
    let mut deletions = Vec::new();
    for i in 0..DELETIONS {
        tokio::time::sleep(spread(i)).await;
        let number = PULL_REQUESTS - i;
        git(
            &served.repo.work,
            &["push", "-q", "origin", &format!(":refs/pull/{number}/head")],
        );
        let started = Instant::now();
        delete_namespace_awaited(&client, &preview_namespace(&name, number)).await;
        deletions.push(started.elapsed());
    }
    let (delete_p50, delete_p95) = percentiles(&deletions);
    let (floor_delete_p50, floor_delete_p95) = percentiles(&deletion_floor);
    println!(
        "  (c) ref deleted → namespace gone ({DELETIONS} deletions, interval {}s): \
         p50 {:.2} s, p95 {:.2} s",
        INTERVAL.as_secs(),
        delete_p50.as_secs_f64(),
        delete_p95.as_secs_f64()
    );

    // Teardown: the Preview's finalizer removes the rest.
    let started = Instant::now();
    previews
        .delete(&name, &DeleteParams::default())
        .await
        .unwrap();
    support::eventually("the Preview to be gone", LIMIT, || {
        let previews = previews.clone();
        let name = name.clone();
        async move {
            match previews.get_opt(&name).await {
                Ok(None) => Ok(()),
                Ok(Some(p)) => Err(format!("{:?}", p.metadata.finalizers)),
                Err(e) => Err(e.to_string()),
            }
        }
    })
    .await;
    let teardown = started.elapsed();
    drop(controller);
    delete_namespace(&client, &namespace).await;

    println!();
    println!(
        "| previews ({PULL_REQUESTS} × {CONFIGMAPS_PER_PREVIEW} ConfigMaps, interval {}s) | windlass | floor | ratio |",
        INTERVAL.as_secs()
    );
    println!("|---|---|---|---|");
    println!(
        "| (a) cold: Preview created → all Ready | {:.2} s | {:.2} s (SSA loop) | {:.1}× |",
        cold.as_secs_f64(),
        floor.as_secs_f64(),
        cold.as_secs_f64() / floor.as_secs_f64()
    );
    println!(
        "| (b) push → preview Ready, p50 / p95 | {:.2} / {:.2} s | — (interval {}s) | — |",
        push_p50.as_secs_f64(),
        push_p95.as_secs_f64(),
        INTERVAL.as_secs()
    );
    println!(
        "| (b') push + pull_request webhook → preview Ready, p50 / p95 | {:.2} / {:.2} s | — | — |",
        hooked_p50.as_secs_f64(),
        hooked_p95.as_secs_f64(),
    );
    println!(
        "| (c) ref deleted → namespace gone, p50 / p95 | {:.2} / {:.2} s | {:.2} / {:.2} s (namespace DELETE) | {:.1}× (p50) |",
        delete_p50.as_secs_f64(),
        delete_p95.as_secs_f64(),
        floor_delete_p50.as_secs_f64(),
        floor_delete_p95.as_secs_f64(),
        delete_p50.as_secs_f64() / floor_delete_p50.as_secs_f64()
    );
    println!(
        "| (d) git upload-packs per interval, steady | {:.2} | 1 | — |",
        steady_git as f64 / f64::from(STEADY_INTERVALS)
    );
    println!(
        "| teardown: Preview deleted → gone ({} previews left) | {:.2} s | — | — |",
        PULL_REQUESTS - DELETIONS,
        teardown.as_secs_f64()
    );
    println!("load average at the end: {}", load_average());
}

/// How long to wait before the `i`th push or deletion: offsets spread over
/// the interval.
fn spread(i: u32) -> Duration {
    let interval_ms = INTERVAL.as_millis() as u64;
    Duration::from_millis(interval_ms / 2 + (u64::from(i) * 1_730) % interval_ms)
}

fn preview(name: &str, url: &str) -> Preview {
    serde_json::from_value(json!({
        "apiVersion": "windlass.dev/v1alpha1",
        "kind": "Preview",
        "metadata": { "name": name },
        "spec": {
            "source": { "repoURL": url, "refPattern": "refs/pull/*/head" },
            "interval": format!("{}s", INTERVAL.as_secs()),
            "maxPreviews": PULL_REQUESTS,
            "template": { "path": "app", "sync": { "interval": "10m", "wait": false } },
        },
    }))
    .unwrap()
}

fn preview_namespace(preview: &str, number: u32) -> String {
    format!("{preview}-pr-{number}")
}

fn floor_namespace(prefix: &str, number: u32) -> String {
    format!("{prefix}-pr-{number}")
}

/// Commits a new value of every ConfigMap on branch `pr-<n>` (from main)
/// and pushes it to `refs/pull/<n>/head`; returns the commit.
fn push_pull_request(served: &ServedRepo, number: u32, value: &str) -> String {
    let work = &served.repo.work;
    git(
        work,
        &["checkout", "-q", "-B", &format!("pr-{number}"), "main"],
    );
    let files = repository_files(value);
    let files: Vec<(&str, &str)> = files.iter().map(|(p, c)| (*p, c.as_str())).collect();
    let commit = served
        .repo
        .commit(&files, &format!("pull request {number}: {value}"));
    served.repo.push_ref(&format!("refs/pull/{number}/head"));
    git(work, &["checkout", "-q", "main"]);
    commit
}

/// The floor: the preview namespaces and their ConfigMaps, created by
/// server-side apply, `FLOOR_IN_FLIGHT` at once (namespaces first).
async fn create_floor(client: &Client, prefix: &str) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    stream::iter((1..=PULL_REQUESTS).map(|n| {
        let namespaces = namespaces.clone();
        async move {
            let name = floor_namespace(prefix, n);
            let namespace = json!({
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": { "name": name, "labels": { "windlass.dev/test": "true" } },
            });
            namespaces
                .patch(
                    &name,
                    &PatchParams::apply(FIELD_MANAGER_BENCH).force(),
                    &Patch::Apply(&namespace),
                )
                .await
                .unwrap_or_else(|e| panic!("floor: namespace {name}: {e}"));
        }
    }))
    .buffer_unordered(FLOOR_IN_FLIGHT)
    .collect::<Vec<()>>()
    .await;
    let objects: Vec<(String, usize)> = (1..=PULL_REQUESTS)
        .flat_map(|n| (0..CONFIGMAPS_PER_PREVIEW).map(move |i| (floor_namespace(prefix, n), i)))
        .collect();
    stream::iter(objects.into_iter().map(|(namespace, i)| async move {
        let api: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace);
        let name = format!("cm-{i}");
        let configmap = json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": { "name": name, "namespace": namespace },
            "data": { "value": "main" },
        });
        api.patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER_BENCH).force(),
            &Patch::Apply(&configmap),
        )
        .await
        .unwrap_or_else(|e| panic!("floor: ConfigMap {namespace}/{name}: {e}"));
    }))
    .buffer_unordered(FLOOR_IN_FLIGHT)
    .collect::<Vec<()>>()
    .await;
}

/// Polls every 250 ms until all generated Applications are Ready.
async fn wait_all_ready(client: &Client, namespace: &str, controller: &ControllerProcess) {
    let api: Api<Application> = Api::namespaced(client.clone(), namespace);
    let started = Instant::now();
    let mut last_print = Instant::now();
    loop {
        let list = api.list(&ListParams::default()).await.unwrap();
        let ready = list
            .items
            .iter()
            .filter(|a| a.condition("Ready").is_some_and(|c| c.status == "True"))
            .count();
        if ready == PULL_REQUESTS as usize {
            return;
        }
        if last_print.elapsed() > Duration::from_secs(15) {
            println!(
                "  … {:.0} s: {} Applications, {ready} Ready",
                started.elapsed().as_secs_f64(),
                list.items.len()
            );
            last_print = Instant::now();
        }
        assert!(
            started.elapsed() < LIMIT,
            "only {ready} of {PULL_REQUESTS} previews became Ready within {LIMIT:?}\n\
             --- controller log (last 60 lines) ---\n{}",
            controller.log_tail(60)
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Every preview namespace holds its ConfigMaps, applied by windlass.
async fn assert_objects_live(client: &Client, preview: &str) {
    let params = ListParams::default().labels(&format!("{LABEL_MANAGED_BY}={MANAGED_BY}"));
    for number in 1..=PULL_REQUESTS {
        let namespace = preview_namespace(preview, number);
        let live = Api::<ConfigMap>::namespaced(client.clone(), &namespace)
            .list_metadata(&params)
            .await
            .unwrap()
            .items
            .len();
        assert_eq!(
            live, CONFIGMAPS_PER_PREVIEW,
            "ConfigMaps applied by windlass in {namespace}"
        );
    }
}

/// Polls every 100 ms until the Application is Ready at `commit`.
async fn wait_application_at(client: &Client, namespace: &str, name: &str, commit: &str) {
    let api: Api<Application> = Api::namespaced(client.clone(), namespace);
    let started = Instant::now();
    loop {
        let application = api.get(name).await.unwrap();
        let at_commit = application
            .status
            .as_ref()
            .and_then(|s| s.last_applied_commit.as_deref())
            == Some(commit);
        let ready = application
            .condition("Ready")
            .is_some_and(|c| c.status == "True");
        if at_commit && ready {
            return;
        }
        assert!(
            started.elapsed() < LIMIT,
            "{name} did not become Ready at {commit}: {:?}",
            application.status
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn configmap_value(client: &Client, namespace: &str, name: &str) -> Option<String> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    api.get_opt(name)
        .await
        .ok()
        .flatten()?
        .data?
        .get("value")
        .cloned()
}

/// Deletes `namespace` and polls every 100 ms until it is gone.
async fn delete_namespace(client: &Client, namespace: &str) {
    let api: Api<Namespace> = Api::all(client.clone());
    let _ = api.delete(namespace, &DeleteParams::background()).await;
    delete_namespace_awaited(client, namespace).await;
}

/// Polls every 100 ms until `namespace` is gone.
async fn delete_namespace_awaited(client: &Client, namespace: &str) {
    let api: Api<Namespace> = Api::all(client.clone());
    let started = Instant::now();
    loop {
        match api.get_opt(namespace).await {
            Ok(None) => return,
            Ok(Some(_)) => {}
            Err(e) => panic!("reading namespace {namespace}: {e}"),
        }
        assert!(
            started.elapsed() < LIMIT,
            "namespace {namespace} still there after {LIMIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn install_crds(client: &Client) {
    support::install_crds(client, FIELD_MANAGER_BENCH).await;
}

/// A run that panicked leaves namespaces behind, and Previews and
/// Applications holding finalizers with no controller left to remove them.
/// The preview namespaces start with the Preview's name, which is its
/// namespace's.
async fn delete_leftovers(client: &Client) {
    let api: Api<Namespace> = Api::all(client.clone());
    for namespace in api.list(&ListParams::default()).await.unwrap().items {
        let name = namespace.name_any();
        if !(name.starts_with(BENCH_PREFIX) || name.starts_with(FLOOR_PREFIX)) {
            continue;
        }
        let release = PatchParams::default();
        let patch = Patch::Merge(json!({ "metadata": { "finalizers": null } }));
        let previews: Api<Preview> = Api::namespaced(client.clone(), &name);
        for preview in previews
            .list_metadata(&ListParams::default())
            .await
            .map(|l| l.items)
            .unwrap_or_default()
        {
            let _ = previews.patch(&preview.name_any(), &release, &patch).await;
        }
        let applications: Api<Application> = Api::namespaced(client.clone(), &name);
        for application in applications
            .list_metadata(&ListParams::default())
            .await
            .map(|l| l.items)
            .unwrap_or_default()
        {
            let _ = applications
                .patch(&application.name_any(), &release, &patch)
                .await;
        }
        let _ = api.delete(&name, &DeleteParams::background()).await;
    }
}

/// (p50, p95) of `samples`.
fn percentiles(samples: &[Duration]) -> (Duration, Duration) {
    let mut sorted = samples.to_vec();
    sorted.sort();
    let at =
        |p: f64| sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1];
    (at(0.50), at(0.95))
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// The controller under test, as its own process; killed on drop.
struct ControllerProcess {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl ControllerProcess {
    fn start(scratch: &Path, namespace: &str) -> ControllerProcess {
        let port = free_port();
        let log = scratch.join("controller.log");
        let cache = scratch.join("cache");
        std::fs::create_dir_all(&cache).unwrap();
        let secret = scratch.join("webhook-secret");
        std::fs::write(&secret, WEBHOOK_SECRET).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_windlass"))
            .arg("--kubeconfig")
            .arg(support::kubeconfig())
            .args([
                "controller",
                "--watch-namespace",
                namespace,
                "--http-address",
            ])
            .arg(format!("127.0.0.1:{port}"))
            .arg("--cache-dir")
            .arg(&cache)
            .arg("--webhook-secret-file")
            .arg(&secret)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("starting windlass controller");
        ControllerProcess { child, port, log }
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

    /// POSTs a signed GitHub `pull_request` (`synchronize`) delivery:
    /// (status code, body).
    fn post_pull_request(&self, url: &str, number: u32) -> (u16, String) {
        use hmac::{Hmac, KeyInit, Mac};
        let body = json!({
            "action": "synchronize",
            "number": number,
            "pull_request": { "number": number },
            "repository": { "clone_url": url },
        })
        .to_string();
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(WEBHOOK_SECRET.as_bytes()).unwrap();
        mac.update(body.as_bytes());
        let signature: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        write!(
            stream,
            "POST /hooks/github HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nX-GitHub-Event: pull_request\r\n\
             X-Hub-Signature-256: sha256={signature}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        let code = response
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body = response
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        (code, body)
    }

    fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for ControllerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- controller log ---\n{}", self.log_tail(80));
        }
    }
}

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
