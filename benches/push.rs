//! Push-to-live benchmark: a commit pushed, a signed GitHub webhook posted,
//! until the controller reports the commit applied, against the floor of
//! the same change applied by `windlass sync` by hand, in the same run.
//!
//! ```text
//!   deploy.git (git daemon)  app/: 50 ConfigMaps
//!        │
//!   windlass controller (interval 1h: only the webhook can be quick)
//!        ├─ push: commit one changed ConfigMap, POST /hooks/github (signed),
//!        │        poll the Application until lastAppliedCommit = the commit
//!        └─ floor: the same one-object change, `windlass sync --dir` of the
//!                  same 50 objects into another namespace (a whole process)
//!   20 rounds, push and floor interleaved; p50 and p95 of each
//! ```
//!
//! Run: `cargo bench --bench push`.

#[path = "../tests/support/mod.rs"]
mod support;

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hmac::{Hmac, KeyInit, Mac};
use kube::api::{Api, PostParams};
use support::git::{ServedRepo, TempDir, free_port};
use windlass::spec::Application;

const OBJECTS: usize = 50;
const ROUNDS: usize = 20;
const SECRET: &str = "bench-webhook-secret";

fn configmap(name: &str, value: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  value: \"{value}\"\n"
    )
}

fn files(round: usize) -> Vec<(String, String)> {
    (0..OBJECTS)
        .map(|i| {
            let value = if i == 0 {
                round.to_string()
            } else {
                "x".into()
            };
            (
                format!("app/c{i:02}.yaml"),
                configmap(&format!("c{i:02}"), &value),
            )
        })
        .collect()
}

fn main() {
    let initial = files(0);
    let initial: Vec<(&str, &str)> = initial
        .iter()
        .map(|(p, c)| (p.as_str(), c.as_str()))
        .collect();
    let served = ServedRepo::start("bench-push", &initial);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run(&served));
}

async fn run(served: &ServedRepo) {
    let client = support::client().await;
    install_crd(&client).await;
    let namespace = support::create_namespace(&client, "bench-push").await;
    let floor_namespace = support::create_namespace(&client, "bench-push-floor").await;
    let scratch = TempDir::new("bench-push");
    let secret_file = scratch.path().join("secret");
    std::fs::write(&secret_file, SECRET).unwrap();
    let controller = Controller::start(scratch.path(), &namespace, &secret_file);

    let apps: Api<Application> = Api::namespaced(client.clone(), &namespace);
    let app: Application = serde_json::from_value(serde_json::json!({
        "apiVersion": "windlass.dev/v1alpha1", "kind": "Application",
        "metadata": { "name": "web" },
        "spec": {
            "source": { "repoURL": served.url, "ref": "main", "path": "app" },
            "sync": { "automated": true, "prune": true, "interval": "1h", "wait": false }
        }
    }))
    .unwrap();
    apps.create(&PostParams::default(), &app).await.unwrap();
    wait_applied(&apps, &served.repo.head()).await;

    // The floor's directory: the same 50 objects, synced by hand.
    let floor_dir = scratch.path().join("floor");
    write_dir(&floor_dir, 0);
    sync_by_hand(&floor_dir, &floor_namespace);

    let mut pushes = Vec::new();
    let mut floors = Vec::new();
    let mut before = served.repo.head();
    for round in 1..=ROUNDS {
        // Push through the webhook.
        let changed = files(round);
        let after = served
            .repo
            .commit(&[(&changed[0].0, &changed[0].1)], &format!("round {round}"));
        let started = Instant::now();
        let accepted = post_push(controller.port, &served.url, &before, &after);
        assert!(
            accepted.contains("\"accepted\":1"),
            "round {round}: {accepted}"
        );
        wait_applied(&apps, &after).await;
        pushes.push(started.elapsed());
        before = after;

        // The same change by hand.
        write_dir(&floor_dir, round);
        let started = Instant::now();
        sync_by_hand(&floor_dir, &floor_namespace);
        floors.push(started.elapsed());
    }

    let (push50, push95) = percentiles(&mut pushes);
    let (floor50, floor95) = percentiles(&mut floors);
    println!(
        "push → live, {OBJECTS}-object application, {ROUNDS} pushes (one object changed each):"
    );
    println!("  {:<40} {:>9} {:>9}", "", "p50", "p95");
    println!(
        "  {:<40} {:>7.0}ms {:>7.0}ms   target p50 ≤ 1 s",
        "webhook → Applied (controller)",
        ms(push50),
        ms(push95)
    );
    println!(
        "  {:<40} {:>7.0}ms {:>7.0}ms",
        "floor: windlass sync by hand",
        ms(floor50),
        ms(floor95)
    );
    println!(
        "  {:<40} {:>8.2}× {:>8.2}×",
        "webhook ÷ floor",
        ms(push50) / ms(floor50),
        ms(push95) / ms(floor95)
    );
    drop(controller);
    for ns in [&namespace, &floor_namespace] {
        let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
        let _ = namespaces.delete(ns, &Default::default()).await;
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn percentiles(samples: &mut [Duration]) -> (Duration, Duration) {
    samples.sort();
    let at =
        |p: f64| samples[((samples.len() as f64 * p).ceil() as usize).clamp(1, samples.len()) - 1];
    (at(0.50), at(0.95))
}

fn write_dir(dir: &Path, round: usize) {
    for (path, content) in files(round) {
        let path = dir.join(path.trim_start_matches("app/"));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }
}

fn sync_by_hand(dir: &Path, namespace: &str) {
    let output = Command::new(env!("CARGO_BIN_EXE_windlass"))
        .arg("--kubeconfig")
        .arg(support::kubeconfig())
        .args(["sync", "--dir"])
        .arg(dir)
        .args(["-n", namespace, "--name", "web", "--no-wait"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

async fn wait_applied(apps: &Api<Application>, commit: &str) {
    let started = Instant::now();
    loop {
        let app = apps.get("web").await.unwrap();
        let applied = app
            .status
            .as_ref()
            .and_then(|s| s.last_applied_commit.as_deref());
        if applied == Some(commit) {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "commit {commit} not applied: {:?}",
            app.status
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn post_push(port: u16, url: &str, before: &str, after: &str) -> String {
    let body = serde_json::json!({
        "ref": "refs/heads/main", "before": before, "after": after,
        "repository": { "clone_url": url }
    })
    .to_string();
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(body.as_bytes());
    let signature: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        stream,
        "POST /hooks/github HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nX-GitHub-Event: push\r\nX-Hub-Signature-256: sha256={signature}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

struct Controller {
    child: Child,
    port: u16,
}

impl Controller {
    fn start(scratch: &Path, namespace: &str, secret_file: &Path) -> Controller {
        let port = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_windlass"))
            .arg("--kubeconfig")
            .arg(support::kubeconfig())
            .args(["controller", "--http-address"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("--cache-dir")
            .arg(scratch.join("cache"))
            .args(["--watch-namespace", namespace])
            .arg("--webhook-secret-file")
            .arg(secret_file)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(scratch.join("controller.log")).unwrap())
            .spawn()
            .expect("starting windlass controller");
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the controller did not listen"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Controller { child, port }
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn install_crd(client: &kube::Client) {
    support::install_crds(client, "windlass-bench-push").await;
}
