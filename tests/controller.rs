//! `windlass controller` against the real local control plane and loopback
//! git servers. Each test runs its own controller process, watching only the
//! test's namespace (`--watch-namespace`), so tests run in parallel.

mod support;

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Event, Secret};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use support::git::{HttpGit, ServedRepo, Sshd, TempDir, TestRepo, free_port};
use support::{configmap, eventually, windlass, windlass_expect, with_namespace};
use windlass::spec::Application;

const LIMIT: Duration = Duration::from_secs(90);

const NEVER_AVAILABLE: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: stuck\nspec:\n  replicas: 1\n  selector:\n    matchLabels: {app: stuck}\n  template:\n    metadata:\n      labels: {app: stuck}\n    spec:\n      containers: [{name: c, image: nginx}]\n";

/// A `windlass controller` process for one namespace; killed on drop.
struct RunningController {
    child: Child,
    port: u16,
    log: PathBuf,
    _dir: TempDir,
}

impl RunningController {
    fn start(namespace: &str, extra: &[&str]) -> RunningController {
        let dir = TempDir::new("controller");
        let port = free_port();
        let log = dir.path().join("controller.log");
        let child = windlass()
            .args([
                "controller",
                "--watch-namespace",
                namespace,
                "--http-address",
            ])
            .arg(format!("127.0.0.1:{port}"))
            .arg("--cache-dir")
            .arg(dir.path().join("git"))
            .args(extra)
            .env("RUST_LOG", "windlass=debug,info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("starting windlass controller");
        RunningController {
            child,
            port,
            log,
            _dir: dir,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// GET `path` on the controller's HTTP port: (status line, body).
    fn http_get(&self, path: &str) -> Option<(String, String)> {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).ok()?;
        let (head, body) = response.split_once("\r\n\r\n")?;
        Some((head.lines().next()?.to_string(), body.to_string()))
    }

    fn metrics(&self) -> String {
        self.http_get("/metrics")
            .map(|(_, body)| body)
            .unwrap_or_default()
    }

    /// Write requests (not dry-runs) the controller sent, from /metrics.
    fn writes(&self) -> u64 {
        self.metrics()
            .lines()
            .filter(|l| l.starts_with("windlass_api_requests_total{"))
            .filter(|l| {
                let write = ["\"POST\"", "\"PUT\"", "\"DELETE\"", "\"PATCH\""]
                    .iter()
                    .any(|m| l.contains(m));
                write && l.contains("dry_run=\"false\"")
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    }

    fn signal(&self, signal: &str) {
        let status = std::process::Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for RunningController {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- controller log ---\n{}", self.log());
        }
    }
}

async fn install_crd(client: &Client) {
    support::install_crds(client, "windlass-tests").await;
}

fn application(name: &str, url: &str, path: &str, sync: serde_json::Value) -> Application {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "windlass.dev/v1alpha1",
        "kind": "Application",
        "metadata": { "name": name },
        "spec": {
            "source": { "repoURL": url, "ref": "main", "path": path },
            "sync": sync,
        }
    }))
    .unwrap()
}

async fn create(client: &Client, ns: &str, app: &Application) {
    let api: Api<Application> = Api::namespaced(client.clone(), ns);
    api.create(&PostParams::default(), app)
        .await
        .unwrap_or_else(|e| panic!("creating Application {}: {e}", app.name_any()));
}

/// Removes the finalizer from every Application in `ns`, so that deleting
/// the test namespace does not wait for a controller that has stopped.
async fn release(client: &Client, ns: &str) {
    let api: Api<Application> = Api::namespaced(client.clone(), ns);
    let patch = serde_json::json!({ "metadata": { "finalizers": null } });
    for app in api.list(&ListParams::default()).await.unwrap().items {
        let _ = api
            .patch(
                &app.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await;
    }
}

fn ready(app: &Application) -> Option<(String, String, String)> {
    app.condition("Ready")
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

/// Waits until the Application satisfies `check`; returns it.
async fn wait_for(
    client: &Client,
    ns: &str,
    name: &str,
    what: &str,
    check: impl Fn(&Application) -> bool,
) -> Application {
    let api: Api<Application> = Api::namespaced(client.clone(), ns);
    let check = &check;
    eventually(what, LIMIT, || {
        let api = api.clone();
        async move {
            let app = api.get(name).await.map_err(|e| e.to_string())?;
            if check(&app) {
                Ok(app)
            } else {
                Err(format!(
                    "Ready: {:?}; status: {:?}",
                    ready(&app),
                    app.status
                ))
            }
        }
    })
    .await
}

fn is_ready(app: &Application) -> bool {
    ready(app).is_some_and(|(status, _, _)| status == "True")
}

fn applied_commit(app: &Application) -> Option<String> {
    app.status.as_ref()?.last_applied_commit.clone()
}

async fn value_of(client: &Client, ns: &str, name: &str) -> Option<String> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    api.get_opt(name)
        .await
        .unwrap()
        .and_then(|cm| cm.data?.get("value").cloned())
}

async fn events(client: &Client, ns: &str, name: &str) -> Vec<(String, String)> {
    let api: Api<Event> = Api::namespaced(client.clone(), ns);
    api.list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.involved_object.name.as_deref() == Some(name))
        .map(|e| (e.reason.unwrap_or_default(), e.message.unwrap_or_default()))
        .collect()
}

async fn wait_for_event(client: &Client, ns: &str, name: &str, reason: &str) -> String {
    eventually(&format!("Event {reason}"), LIMIT, || async move {
        let all = events(client, ns, name).await;
        all.iter()
            .find(|(r, _)| r == reason)
            .map(|(_, message)| message.clone())
            .ok_or_else(|| format!("{all:?}"))
    })
    .await
}

#[tokio::test]
async fn an_application_syncs_and_a_pushed_commit_is_applied_on_the_next_interval() {
    with_namespace("ctl-sync", |client, ns| async move {
        install_crd(&client).await;
        let served = ServedRepo::start("ctl-sync", &[("app/a.yaml", &configmap("a", "v1"))]);
        let controller = RunningController::start(&ns, &[]);
        let spec = serde_json::json!({ "automated": true, "prune": true, "interval": "2s" });
        create(&client, &ns, &application("web", &served.url, "app", spec)).await;

        let first = served.repo.head();
        let app = wait_for(&client, &ns, "web", "the first sync", |a| {
            is_ready(a) && applied_commit(a).as_deref() == Some(first.as_str())
        })
        .await;
        assert_eq!(value_of(&client, &ns, "a").await.as_deref(), Some("v1"));
        let status = app.status.clone().unwrap();
        assert_eq!(status.last_applied_revision, Some(1));
        assert_eq!(status.object_count, Some(1));
        assert_eq!(status.deletion_policy.as_deref(), Some("Prune"));
        assert!(status.manifest_digest.is_some());
        assert!(
            wait_for_event(&client, &ns, "web", "SyncSucceeded")
                .await
                .contains("revision 1")
        );

        // A new commit: changed value, a new object, one object removed.
        let second = served.repo.commit(
            &[
                ("app/a.yaml", &configmap("a", "v2")),
                ("app/b.yaml", &configmap("b", "new")),
            ],
            "second",
        );
        let app = wait_for(&client, &ns, "web", "the pushed commit", |a| {
            applied_commit(a).as_deref() == Some(second.as_str()) && is_ready(a)
        })
        .await;
        assert_eq!(app.status.unwrap().last_applied_revision, Some(2));
        assert_eq!(value_of(&client, &ns, "a").await.as_deref(), Some("v2"));
        assert_eq!(value_of(&client, &ns, "b").await.as_deref(), Some("new"));

        std::fs::remove_file(served.repo.work.join("app/b.yaml")).unwrap();
        let third = served.repo.commit(&[], "remove b");
        wait_for(&client, &ns, "web", "the commit that removes b", |a| {
            applied_commit(a).as_deref() == Some(third.as_str())
        })
        .await;
        assert_eq!(value_of(&client, &ns, "b").await, None, "pruned");
        assert!(
            wait_for_event(&client, &ns, "web", "Pruned")
                .await
                .contains("ConfigMap")
        );

        // `windlass get` shows it.
        let table = windlass_expect(&["get", "-n", &ns], 0);
        let short = &third[..7];
        assert!(table.starts_with("NAME"), "{table}");
        assert!(
            table
                .lines()
                .any(|l| l.starts_with("web") && l.contains("True") && l.contains(short)),
            "{table}"
        );
        release(&client, &ns).await;
        drop(controller);
    })
    .await;
}

#[tokio::test]
async fn a_crd_installed_later_reaches_the_templates_capabilities() {
    with_namespace("ctl-caps", |client, ns| async move {
        install_crd(&client).await;
        // A group of this test's own, so that parallel runs do not meet.
        let group = format!("{ns}.windlass.test");
        let template = format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: caps\ndata:\n  \
             value: {{{{quote (has \"{group}/v1/Widget\" capabilities.apiVersions)}}}}\n"
        );
        let served = ServedRepo::start(
            "ctl-caps",
            &[
                ("chart/Chart.yaml", "name: caps\nversion: 0.1.0\n"),
                ("chart/templates/cm.yaml", &template),
            ],
        );
        let controller = RunningController::start(&ns, &["--discovery-refresh", "1"]);
        let spec = serde_json::json!({ "automated": true, "interval": "1s" });
        create(&client, &ns, &application("web", &served.url, "chart", spec)).await;
        wait_for(&client, &ns, "web", "the first sync", is_ready).await;
        assert_eq!(value_of(&client, &ns, "caps").await.as_deref(), Some("false"));

        // Someone else installs the CRD; no commit, no spec change.
        let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
            Api::all(client.clone());
        let crd = serde_json::json!({
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": { "name": format!("widgets.{group}") },
            "spec": {
                "group": group,
                "scope": "Namespaced",
                "names": { "plural": "widgets", "singular": "widget", "kind": "Widget" },
                "versions": [{
                    "name": "v1", "served": true, "storage": true,
                    "schema": { "openAPIV3Schema": { "type": "object" } }
                }]
            }
        });
        crds.patch(
            &format!("widgets.{group}"),
            &PatchParams::apply("windlass-tests").force(),
            &Patch::Apply(&crd),
        )
        .await
        .expect("installing the Widget CRD");
        eventually("the template to see the Widget kind", LIMIT, || {
            let client = client.clone();
            let ns = ns.clone();
            async move {
                match value_of(&client, &ns, "caps").await.as_deref() {
                    Some("true") => Ok(()),
                    other => Err(format!("caps value: {other:?}")),
                }
            }
        })
        .await;
        let _ = crds
            .delete(&format!("widgets.{group}"), &DeleteParams::default())
            .await;
        release(&client, &ns).await;
        drop(controller);
    })
    .await;
}

#[tokio::test]
async fn nothing_is_written_in_steady_state() {
    with_namespace("ctl-steady", |client, ns| async move {
        install_crd(&client).await;
        let served = ServedRepo::start(
            "ctl-steady",
            &[("app/a.yaml", &configmap("a", "v1")), ("app/b.yaml", &configmap("b", "v1"))],
        );
        let controller = RunningController::start(&ns, &[]);
        let spec = serde_json::json!({ "automated": true, "prune": true, "selfHeal": true, "interval": "1s" });
        create(&client, &ns, &application("web", &served.url, "app", spec)).await;
        let app = wait_for(&client, &ns, "web", "the first sync", is_ready).await;
        // Let the reconcile that follows the status write pass.
        tokio::time::sleep(Duration::from_secs(3)).await;

        let api: Api<Application> = Api::namespaced(client.clone(), &ns);
        let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
        let before_app = api.get("web").await.unwrap().resource_version();
        let before_cm = configmaps.get("a").await.unwrap().resource_version();
        let before_writes = controller.writes();
        let reconciles_before = reconcile_count(&controller.metrics());

        // Six intervals.
        tokio::time::sleep(Duration::from_secs(6)).await;

        let reconciles_after = reconcile_count(&controller.metrics());
        assert!(
            reconciles_after >= reconciles_before + 3,
            "the controller must keep reconciling on its interval: {reconciles_before} → {reconciles_after}"
        );
        assert_eq!(api.get("web").await.unwrap().resource_version(), before_app, "Application written");
        assert_eq!(configmaps.get("a").await.unwrap().resource_version(), before_cm, "object written");
        assert_eq!(controller.writes(), before_writes, "write requests in steady state");
        let records: Api<Secret> = Api::namespaced(client.clone(), &ns);
        let revisions = records
            .list(&ListParams::default().labels("windlass.dev/revision"))
            .await
            .unwrap();
        assert_eq!(revisions.items.len(), 1, "one revision record");
        assert_eq!(app.status.unwrap().last_applied_revision, Some(1));

        // A commit that touches nothing under the application's path: no
        // render, and still nothing written.
        let unrelated = served.repo.commit(&[("other/x.yaml", &configmap("x", "y"))], "other app");
        eventually("the unrelated commit seen", LIMIT, || async {
            let log = controller.log();
            if log.contains("reusing the render") && log.contains(&unrelated) {
                Ok(())
            } else {
                Err("not yet".to_string())
            }
        })
        .await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(api.get("web").await.unwrap().resource_version(), before_app, "Application written");
        assert_eq!(controller.writes(), before_writes, "write requests after an unrelated commit");
        release(&client, &ns).await;
    })
    .await;
}

fn reconcile_count(metrics: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("windlass_reconcile_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[tokio::test]
async fn bad_commits_keep_the_last_good_revision_live_and_a_good_commit_recovers() {
    with_namespace("ctl-bad", |client, ns| async move {
        install_crd(&client).await;
        let served = ServedRepo::start("ctl-bad", &[("app/a.yaml", &configmap("a", "good"))]);
        let _controller = RunningController::start(&ns, &[]);
        let spec = serde_json::json!({ "automated": true, "prune": true, "interval": "1s" });
        create(&client, &ns, &application("web", &served.url, "app", spec)).await;
        wait_for(&client, &ns, "web", "the first sync", is_ready).await;

        // An object the server rejects: nothing is applied, Ready=False with
        // the server's message, the good value stays.
        let rejected = served.repo.commit(
            &[
                ("app/a.yaml", &configmap("a", "never")),
                (
                    "app/bad.yaml",
                    "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: bad\ndata:\n  key: {nested: map}\n",
                ),
            ],
            "rejected",
        );
        let app = wait_for(&client, &ns, "web", "Ready=False for the rejected object", |a| {
            ready(a).is_some_and(|(s, _, _)| s == "False")
                && a.status.as_ref().unwrap().last_attempted_commit.as_deref() == Some(rejected.as_str())
        })
        .await;
        let (_, reason, message) = ready(&app).unwrap();
        assert_eq!(reason, "SyncFailed", "{message}");
        assert!(message.contains("ConfigMap") && message.contains("bad"), "{message}");
        assert!(message.contains("nothing was written"), "{message}");
        assert_eq!(value_of(&client, &ns, "a").await.as_deref(), Some("good"));
        assert_eq!(app.status.as_ref().unwrap().last_applied_revision, Some(1));
        assert!(wait_for_event(&client, &ns, "web", "SyncFailed").await.contains("bad"));

        // Malformed YAML: the render error names file and line.
        let malformed = served.repo.commit(
            &[("app/bad.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: bad\ndata: [unclosed\n")],
            "malformed",
        );
        let app = wait_for(&client, &ns, "web", "Ready=False for malformed YAML", |a| {
            a.status.as_ref().unwrap().last_attempted_commit.as_deref() == Some(malformed.as_str())
                && ready(a).is_some_and(|(_, r, _)| r == "RenderFailed")
        })
        .await;
        let (_, _, message) = ready(&app).unwrap();
        assert!(message.starts_with("render failed:"), "{message}");
        assert!(message.contains("bad.yaml") && message.contains("line"), "{message}");
        assert_eq!(value_of(&client, &ns, "a").await.as_deref(), Some("good"));

        // A good commit recovers.
        std::fs::remove_file(served.repo.work.join("app/bad.yaml")).unwrap();
        let good = served.repo.commit(&[("app/a.yaml", &configmap("a", "better"))], "good");
        wait_for(&client, &ns, "web", "recovery", |a| {
            is_ready(a) && applied_commit(a).as_deref() == Some(good.as_str())
        })
        .await;
        assert_eq!(value_of(&client, &ns, "a").await.as_deref(), Some("better"));
        release(&client, &ns).await;
    })
    .await;
}

#[tokio::test]
async fn a_failed_health_check_rolls_back_and_the_commit_is_held_back() {
    with_namespace("ctl-rollback", |client, ns| async move {
        install_crd(&client).await;
        let served = ServedRepo::start("ctl-rollback", &[("app/a.yaml", &configmap("a", "good"))]);
        let _controller = RunningController::start(&ns, &[]);
        let mut app = application(
            "web",
            &served.url,
            "app",
            serde_json::json!({ "automated": true, "prune": true, "interval": "1s" }),
        );
        app.spec.rollback.on_health_failure = true;
        app.spec.rollback.health_timeout = Some("3s".into());
        create(&client, &ns, &app).await;
        let good = served.repo.head();
        wait_for(&client, &ns, "web", "the first sync", is_ready).await;

        let bad = served.repo.commit(
            &[
                ("app/a.yaml", &configmap("a", "bad")),
                ("app/stuck.yaml", NEVER_AVAILABLE),
            ],
            "never healthy",
        );
        let app = wait_for(&client, &ns, "web", "the automatic rollback", |a| {
            a.status.as_ref().unwrap().held_back_commit.as_deref() == Some(bad.as_str())
        })
        .await;
        let (status, reason, message) = ready(&app).unwrap();
        assert_eq!(
            (status.as_str(), reason.as_str()),
            ("False", "HeldBack"),
            "{message}"
        );
        assert!(app.condition("Stalled").is_some_and(|c| c.status == "True"));
        assert_eq!(applied_commit(&app).as_deref(), Some(good.as_str()));
        assert_eq!(value_of(&client, &ns, "a").await.as_deref(), Some("good"));
        assert!(
            wait_for_event(&client, &ns, "web", "HealthCheckFailed")
                .await
                .contains("stuck")
        );
        assert!(
            wait_for_event(&client, &ns, "web", "RolledBack")
                .await
                .contains("revision 1")
        );

        // Several intervals later the failed commit is still not re-applied,
        // nor even tried: the status is not written again.
        let revision = app.status.as_ref().unwrap().last_applied_revision;
        tokio::time::sleep(Duration::from_secs(5)).await;
        let api: Api<Application> = Api::namespaced(client.clone(), &ns);
        let later = api.get("web").await.unwrap();
        assert_eq!(
            later.status.as_ref().unwrap().last_applied_revision,
            revision
        );
        assert_eq!(
            later.metadata.resource_version, app.metadata.resource_version,
            "a held-back commit is not tried again each interval: {:?}",
            later.status
        );
        assert_eq!(value_of(&client, &ns, "a").await.as_deref(), Some("good"));

        // A new commit is tried.
        std::fs::remove_file(served.repo.work.join("app/stuck.yaml")).unwrap();
        let fixed = served
            .repo
            .commit(&[("app/a.yaml", &configmap("a", "fixed"))], "fixed");
        let app = wait_for(&client, &ns, "web", "the fixed commit", |a| {
            is_ready(a) && applied_commit(a).as_deref() == Some(fixed.as_str())
        })
        .await;
        assert_eq!(app.status.unwrap().held_back_commit, None);
        assert_eq!(value_of(&client, &ns, "a").await.as_deref(), Some("fixed"));
        release(&client, &ns).await;
    })
    .await;
}

#[tokio::test]
async fn a_push_to_the_base_alone_re_syncs_an_overlay_application_and_others_do_not() {
    with_namespace("ctl-overlay", |client, ns| async move {
        install_crd(&client).await;
        let served = ServedRepo::start(
            "ctl-overlay",
            &[
                ("base/kustomization.yaml", "resources:\n- settings.yaml\n"),
                ("base/settings.yaml", &configmap("settings", "base-1")),
                (
                    "overlays/prod/kustomization.yaml",
                    "resources:\n- ../../base\nnamePrefix: prod-\n",
                ),
                ("docs/README.md", "nothing to deploy\n"),
            ],
        );
        let (kustomize, _) = support::tool_binaries();
        let controller =
            RunningController::start(&ns, &["--kustomize-bin", kustomize.to_str().unwrap()]);
        let app = application(
            "web",
            &served.url,
            "overlays/prod",
            serde_json::json!({ "automated": true, "prune": true, "interval": "1s" }),
        );
        create(&client, &ns, &app).await;
        wait_for(&client, &ns, "web", "the first sync", is_ready).await;
        assert_eq!(
            value_of(&client, &ns, "prod-settings").await.as_deref(),
            Some("base-1")
        );

        // A push outside the overlay and its base: the render is reused.
        let docs = served
            .repo
            .commit(&[("docs/README.md", "still nothing\n")], "docs");
        let reused = format!("commit={docs}");
        eventually(
            "the docs-only push to reuse the render",
            Duration::from_secs(60),
            || {
                let log = controller.log();
                let reused = reused.clone();
                async move {
                    match log
                        .lines()
                        .any(|l| l.contains("reusing the render") && l.contains(&reused))
                    {
                        true => Ok(()),
                        false => Err(log.lines().rev().take(5).collect::<Vec<_>>().join("\n")),
                    }
                }
            },
        )
        .await;

        // A push to the base alone: the overlay's Application syncs it.
        let base = served.repo.commit(
            &[("base/settings.yaml", &configmap("settings", "base-2"))],
            "base",
        );
        wait_for(&client, &ns, "web", "the base-only push", |a| {
            is_ready(a) && applied_commit(a).as_deref() == Some(base.as_str())
        })
        .await;
        assert_eq!(
            value_of(&client, &ns, "prod-settings").await.as_deref(),
            Some("base-2")
        );
        release(&client, &ns).await;
    })
    .await;
}

#[tokio::test]
async fn drift_is_reported_with_self_heal_off_and_corrected_with_it_on() {
    with_namespace("ctl-drift", |client, ns| async move {
        install_crd(&client).await;
        let served = ServedRepo::start("ctl-drift", &[("app/a.yaml", &configmap("a", "git"))]);
        let _controller = RunningController::start(&ns, &[]);
        let spec = serde_json::json!({ "automated": true, "prune": true, "interval": "1s" });
        create(&client, &ns, &application("web", &served.url, "app", spec)).await;
        wait_for(&client, &ns, "web", "the first sync", is_ready).await;

        // A hand edit by another field manager, as `kubectl edit` does it.
        let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
        let edit = serde_json::json!({ "data": { "value": "by hand" } });
        configmaps
            .patch(
                "a",
                &PatchParams {
                    field_manager: Some("kubectl-edit".into()),
                    ..Default::default()
                },
                &Patch::Merge(&edit),
            )
            .await
            .unwrap();
        let app = wait_for(&client, &ns, "web", "Drifted", |a| {
            a.condition("Drifted").is_some_and(|c| c.status == "True")
        })
        .await;
        let message = app.condition("Drifted").unwrap().message.clone();
        assert!(
            message.contains("ConfigMap") && message.contains("/a"),
            "{message}"
        );
        assert!(message.contains("kubectl-edit"), "{message}");
        assert!(is_ready(&app), "drift alone does not make it unready");
        assert!(
            wait_for_event(&client, &ns, "web", "DriftDetected")
                .await
                .contains("kubectl-edit")
        );
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(
            value_of(&client, &ns, "a").await.as_deref(),
            Some("by hand"),
            "selfHeal is off: nothing changes"
        );

        // selfHeal on: corrected.
        let api: Api<Application> = Api::namespaced(client.clone(), &ns);
        let heal = serde_json::json!({ "spec": { "sync": { "selfHeal": true } } });
        api.patch("web", &PatchParams::default(), &Patch::Merge(&heal))
            .await
            .unwrap();
        let app = wait_for(&client, &ns, "web", "the drift corrected", |a| {
            a.condition("Drifted").is_none() && is_ready(a)
        })
        .await;
        assert_eq!(value_of(&client, &ns, "a").await.as_deref(), Some("git"));
        assert_eq!(app.status.unwrap().last_applied_revision, Some(2));
        assert!(
            wait_for_event(&client, &ns, "web", "DriftCorrected")
                .await
                .contains("kubectl-edit")
        );
        release(&client, &ns).await;
    })
    .await;
}

#[tokio::test]
async fn suspend_stops_syncing_and_resume_and_reconcile_start_it_again() {
    with_namespace("ctl-suspend", |client, ns| async move {
        install_crd(&client).await;
        let served = ServedRepo::start("ctl-suspend", &[("app/a.yaml", &configmap("a", "v1"))]);
        let _controller = RunningController::start(&ns, &[]);
        // Manual sync: `windlass reconcile` applies.
        let spec = serde_json::json!({ "automated": false, "interval": "1s" });
        create(&client, &ns, &application("web", &served.url, "app", spec)).await;
        let app = wait_for(&client, &ns, "web", "OutOfSync", |a| {
            ready(a).is_some_and(|(_, r, _)| r == "OutOfSync")
        })
        .await;
        assert!(ready(&app).unwrap().2.contains("windlass reconcile web"));
        assert_eq!(value_of(&client, &ns, "a").await, None, "automated is off");
        let out = windlass_expect(&["reconcile", "web", "-n", &ns, "--timeout", "60"], 0);
        assert!(out.contains("Ready=True"), "{out}");
        assert_eq!(value_of(&client, &ns, "a").await.as_deref(), Some("v1"));

        // Automated, then suspended: a new commit is not applied, status kept.
        let api: Api<Application> = Api::namespaced(client.clone(), &ns);
        let automated = serde_json::json!({ "spec": { "sync": { "automated": true } } });
        api.patch("web", &PatchParams::default(), &Patch::Merge(&automated))
            .await
            .unwrap();
        windlass_expect(&["suspend", "web", "-n", &ns], 0);
        let suspended = api.get("web").await.unwrap();
        assert!(suspended.spec.suspend);
        // Let the controller see the suspension before the commit lands.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let status_before = api.get("web").await.unwrap().status;
        served
            .repo
            .commit(&[("app/a.yaml", &configmap("a", "v2"))], "v2");
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(
            value_of(&client, &ns, "a").await.as_deref(),
            Some("v1"),
            "suspended"
        );
        assert_eq!(
            api.get("web").await.unwrap().status,
            status_before,
            "status kept"
        );
        let table = windlass_expect(&["get", "-n", &ns], 0);
        assert!(table.contains("suspended"), "{table}");
        let refused = windlass()
            .args(["reconcile", "web", "-n", &ns])
            .output()
            .unwrap();
        assert_eq!(refused.status.code(), Some(2));

        windlass_expect(&["resume", "web", "-n", &ns], 0);
        let v2 = served.repo.head();
        wait_for(&client, &ns, "web", "the resumed sync", |a| {
            applied_commit(a).as_deref() == Some(v2.as_str())
        })
        .await;
        assert_eq!(value_of(&client, &ns, "a").await.as_deref(), Some("v2"));
        release(&client, &ns).await;
    })
    .await;
}

#[tokio::test]
async fn depends_on_waits_until_the_dependency_is_ready() {
    with_namespace("ctl-deps", |client, ns| async move {
        install_crd(&client).await;
        let served = ServedRepo::start(
            "ctl-deps",
            &[
                ("db/a.yaml", &configmap("db", "up")),
                ("web/a.yaml", &configmap("web", "up")),
            ],
        );
        let _controller = RunningController::start(&ns, &[]);
        let spec = serde_json::json!({ "automated": true, "interval": "1s" });
        let mut web = application("web", &served.url, "web", spec.clone());
        web.spec.depends_on = vec![windlass::spec::Dependency { name: "db".into() }];
        create(&client, &ns, &web).await;
        let app = wait_for(&client, &ns, "web", "DependencyNotReady", |a| {
            ready(a).is_some_and(|(_, r, _)| r == "DependencyNotReady")
        })
        .await;
        assert!(ready(&app).unwrap().2.contains("db"), "{:?}", ready(&app));
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(
            value_of(&client, &ns, "web").await,
            None,
            "web waits for db"
        );

        create(&client, &ns, &application("db", &served.url, "db", spec)).await;
        let web = wait_for(&client, &ns, "web", "web after db", is_ready).await;
        let api: Api<Application> = Api::namespaced(client.clone(), &ns);
        let db = api.get("db").await.unwrap();
        assert!(is_ready(&db));
        let time = |a: &Application| a.status.as_ref().unwrap().last_sync_time.clone().unwrap();
        assert!(
            time(&db) <= time(&web),
            "db synced first: {} vs {}",
            time(&db),
            time(&web)
        );
        assert_eq!(value_of(&client, &ns, "web").await.as_deref(), Some("up"));
        release(&client, &ns).await;
    })
    .await;
}

#[tokio::test]
async fn deleting_an_application_prunes_or_orphans_its_objects() {
    with_namespace("ctl-delete", |client, ns| async move {
        install_crd(&client).await;
        let served = ServedRepo::start(
            "ctl-delete",
            &[
                ("pruned/a.yaml", &configmap("pruned", "x")),
                ("kept/a.yaml", &configmap("kept", "x")),
            ],
        );
        let _controller = RunningController::start(&ns, &[]);
        create(
            &client,
            &ns,
            &application(
                "pruned",
                &served.url,
                "pruned",
                serde_json::json!({ "automated": true, "prune": true, "interval": "1s" }),
            ),
        )
        .await;
        create(
            &client,
            &ns,
            &application(
                "kept",
                &served.url,
                "kept",
                serde_json::json!({ "automated": true, "prune": false, "interval": "1s" }),
            ),
        )
        .await;
        let pruned = wait_for(&client, &ns, "pruned", "pruned ready", is_ready).await;
        let kept = wait_for(&client, &ns, "kept", "kept ready", is_ready).await;
        assert_eq!(
            pruned.status.as_ref().unwrap().deletion_policy.as_deref(),
            Some("Prune")
        );
        assert_eq!(
            kept.status.unwrap().deletion_policy.as_deref(),
            Some("Orphan")
        );
        assert!(
            pruned
                .finalizers()
                .iter()
                .any(|f| f == "windlass.dev/cleanup")
        );

        let api: Api<Application> = Api::namespaced(client.clone(), &ns);
        for name in ["pruned", "kept"] {
            api.delete(name, &DeleteParams::default()).await.unwrap();
        }
        eventually("both Applications to be gone", LIMIT, || {
            let api = api.clone();
            async move {
                let left = api
                    .list(&ListParams::default())
                    .await
                    .map_err(|e| e.to_string())?;
                if left.items.is_empty() {
                    Ok(())
                } else {
                    Err(format!("{} left", left.items.len()))
                }
            }
        })
        .await;
        assert_eq!(
            value_of(&client, &ns, "pruned").await,
            None,
            "prune: deleted"
        );
        assert_eq!(
            value_of(&client, &ns, "kept").await.as_deref(),
            Some("x"),
            "orphaned"
        );
        let records: Api<Secret> = Api::namespaced(client.clone(), &ns);
        let left = records
            .list(&ListParams::default().labels("windlass.dev/revision"))
            .await
            .unwrap();
        assert!(left.items.is_empty(), "records go with the Application");
        release(&client, &ns).await;
    })
    .await;
}

#[tokio::test]
async fn credentials_come_from_a_secret_for_https_and_ssh() {
    with_namespace("ctl-creds", |client, ns| async move {
        install_crd(&client).await;
        let dir = TempDir::new("ctl-creds");
        let repo = TestRepo::create(
            dir.path(),
            "deploy",
            &[("app/a.yaml", &configmap("a", "over-git"))],
        );
        let http = HttpGit::start(dir.path(), "deploy", "s3cret-pass");
        let sshd = Sshd::start(dir.path());
        let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
        let secret = |name: &str, data: serde_json::Value| -> Secret {
            serde_json::from_value(serde_json::json!({
                "metadata": { "name": name }, "stringData": data
            }))
            .unwrap()
        };
        for s in [
            secret(
                "https-creds",
                serde_json::json!({ "username": "deploy", "password": "s3cret-pass" }),
            ),
            secret(
                "wrong-creds",
                serde_json::json!({ "username": "deploy", "password": "wrong-pass" }),
            ),
            secret(
                "ssh-creds",
                serde_json::json!({ "identity": sshd.client_key, "known_hosts": sshd.known_hosts }),
            ),
        ] {
            secrets.create(&PostParams::default(), &s).await.unwrap();
        }
        let _controller = RunningController::start(&ns, &[]);
        let with_secret = |name: &str, url: &str, secret: &str| {
            let mut app = application(
                name,
                url,
                "app",
                serde_json::json!({ "automated": true, "interval": "1s" }),
            );
            app.spec.source.secret_ref = Some(windlass::spec::LocalObjectReference {
                name: secret.into(),
            });
            app.spec.destination.namespace = Some(ns.clone());
            app
        };
        create(
            &client,
            &ns,
            &with_secret("https", &http.url(&repo), "https-creds"),
        )
        .await;
        create(
            &client,
            &ns,
            &with_secret("ssh", &sshd.url(&repo), "ssh-creds"),
        )
        .await;
        create(
            &client,
            &ns,
            &with_secret("wrong", &http.url(&repo), "wrong-creds"),
        )
        .await;
        let head = repo.head();
        for name in ["https", "ssh"] {
            wait_for(&client, &ns, name, &format!("{name} synced"), |a| {
                is_ready(a) && applied_commit(a).as_deref() == Some(head.as_str())
            })
            .await;
        }
        let wrong = wait_for(&client, &ns, "wrong", "the authentication failure", |a| {
            ready(a).is_some_and(|(s, _, _)| s == "False")
        })
        .await;
        let (_, reason, message) = ready(&wrong).unwrap();
        assert_eq!(reason, "GitFailed", "{message}");
        assert!(message.starts_with("git: "), "{message}");
        assert!(message.contains("authentication failed"), "{message}");
        assert!(
            !message.contains("wrong-pass"),
            "no secret in status: {message}"
        );
        release(&client, &ns).await;
    })
    .await;
}

#[tokio::test]
async fn two_controllers_elect_one_leader_and_the_standby_takes_over() {
    with_namespace("ctl-leader", |client, ns| async move {
        install_crd(&client).await;
        let served = ServedRepo::start("ctl-leader", &[("app/a.yaml", &configmap("a", "v1"))]);
        let flags = [
            "--leader-elect",
            "--leader-election-namespace",
            ns.as_str(),
            "--lease-duration",
            "4",
        ];
        let first = RunningController::start(&ns, &flags);
        let second = RunningController::start(&ns, &flags);
        let spec = serde_json::json!({ "automated": true, "interval": "1s" });
        create(&client, &ns, &application("web", &served.url, "app", spec)).await;
        wait_for(&client, &ns, "web", "the first sync", is_ready).await;

        let leases: Api<Lease> = Api::namespaced(client.clone(), &ns);
        let holder = || async {
            leases
                .get("windlass-controller")
                .await
                .ok()
                .and_then(|l| l.spec?.holder_identity)
                .unwrap_or_default()
        };
        let leader_pid = holder()
            .await
            .rsplit(':')
            .next()
            .unwrap_or_default()
            .to_string();
        let (leader, standby) = if leader_pid == first.child.id().to_string() {
            (first, second)
        } else {
            assert_eq!(
                leader_pid,
                second.child.id().to_string(),
                "the holder is one of the two"
            );
            (second, first)
        };
        // The status is written before the reconcile is counted.
        eventually("the leader's reconcile counted", LIMIT, || async {
            let count = reconcile_count(&leader.metrics());
            if count > 0 {
                Ok(())
            } else {
                Err(count.to_string())
            }
        })
        .await;
        assert_eq!(
            reconcile_count(&standby.metrics()),
            0,
            "the standby does not reconcile"
        );
        assert_eq!(
            standby.http_get("/readyz").unwrap().0.split(' ').nth(1),
            Some("200")
        );

        // Kill the leader without a goodbye: the standby takes over once the
        // Lease expires, and applies the next commit.
        leader.signal("-KILL");
        let next = served
            .repo
            .commit(&[("app/a.yaml", &configmap("a", "v2"))], "v2");
        wait_for(
            &client,
            &ns,
            "web",
            "the standby applying the next commit",
            |a| applied_commit(a).as_deref() == Some(next.as_str()),
        )
        .await;
        assert!(
            holder()
                .await
                .ends_with(&format!(":{}", standby.child.id()))
        );
        eventually("the new leader's reconcile counted", LIMIT, || async {
            let count = reconcile_count(&standby.metrics());
            if count > 0 {
                Ok(())
            } else {
                Err(count.to_string())
            }
        })
        .await;

        // A graceful shutdown releases the Lease at once.
        standby.signal("-TERM");
        eventually("the Lease released", Duration::from_secs(10), || async {
            let h = holder().await;
            if h.is_empty() { Ok(()) } else { Err(h) }
        })
        .await;
        drop(leader);
        drop(standby);
        release(&client, &ns).await;
    })
    .await;
}

#[tokio::test]
async fn metrics_health_and_readiness_are_served() {
    with_namespace("ctl-metrics", |client, ns| async move {
        install_crd(&client).await;
        let served = ServedRepo::start("ctl-metrics", &[("app/a.yaml", &configmap("a", "v1"))]);
        let controller = RunningController::start(&ns, &[]);
        let spec = serde_json::json!({ "automated": true, "interval": "1s" });
        create(&client, &ns, &application("web", &served.url, "app", spec)).await;
        wait_for(&client, &ns, "web", "the first sync", is_ready).await;
        let (status, body) = controller.http_get("/healthz").unwrap();
        assert!(status.contains("200"), "{status} {body}");
        let (status, _) = controller.http_get("/readyz").unwrap();
        assert!(status.contains("200"), "{status}");
        let metrics = eventually("the ready gauge", LIMIT, || async {
            let text = controller.metrics();
            if text.contains(&format!("windlass_application_ready{{namespace=\"{ns}\",name=\"web\"}} 1")) {
                Ok(text)
            } else {
                Err(text)
            }
        })
        .await;
        for expected in [
            format!("windlass_reconcile_total{{namespace=\"{ns}\",name=\"web\",result=\"success\"}}"),
            "windlass_reconcile_duration_seconds_count".to_string(),
            format!("windlass_application_drifted_objects{{namespace=\"{ns}\",name=\"web\"}} 0"),
            "windlass_git_fetch_duration_seconds_count".to_string(),
            format!("windlass_apply_requests_total{{namespace=\"{ns}\",name=\"web\",operation=\"apply\"}} 1"),
            "windlass_api_requests_total{method=\"PATCH\",dry_run=\"true\"}".to_string(),
        ] {
            assert!(metrics.contains(&expected), "{expected} missing:\n{metrics}");
        }
        // Log lines carry the application and the commit.
        let log = controller.log();
        let short = &served.repo.head()[..7];
        assert!(
            log.lines().any(|l| l.contains(&format!("app={ns}/web")) && l.contains(short)),
            "{log}"
        );
        release(&client, &ns).await;
    })
    .await;
}

#[tokio::test]
async fn json_logs_carry_the_application_and_commit() {
    with_namespace("ctl-json", |client, ns| async move {
        install_crd(&client).await;
        let served = ServedRepo::start("ctl-json", &[("app/a.yaml", &configmap("a", "v1"))]);
        let controller = RunningController::start(&ns, &["--log-format", "json"]);
        let spec = serde_json::json!({ "automated": true, "interval": "1s" });
        create(&client, &ns, &application("web", &served.url, "app", spec)).await;
        wait_for(&client, &ns, "web", "the first sync", is_ready).await;
        let log = controller.log();
        let short = served.repo.head()[..7].to_string();
        let lines: Vec<serde_json::Value> = log
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .collect();
        assert!(
            lines
                .iter()
                .any(|l| l["span"]["app"] == format!("{ns}/web") && l["span"]["commit"] == short),
            "{log}"
        );
        release(&client, &ns).await;
    })
    .await;
}

#[tokio::test]
async fn the_crd_rejects_invalid_specs_with_the_servers_message() {
    let client = support::client().await;
    install_crd(&client).await;
    let ns = support::create_namespace(&client, "ctl-crd").await;
    let api: Api<Application> = Api::namespaced(client.clone(), &ns);
    let mut app = application(
        "bad",
        "git://127.0.0.1:1/x.git",
        "app",
        serde_json::json!({ "interval": "5 minutes" }),
    );
    let error = api
        .create(&PostParams::default(), &app)
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("spec.sync.interval"), "{error}");
    app.spec.sync.interval = Some("5m".into());
    app.spec.source.reference = Some(String::new());
    let error = api
        .create(&PostParams::default(), &app)
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("spec.source.ref"), "{error}");
    app.spec.source.reference = Some("main".into());
    api.create(&PostParams::default(), &app)
        .await
        .expect("a valid spec is accepted");
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client);
    let _ = namespaces.delete(&ns, &DeleteParams::default()).await;
}

#[test]
fn the_checked_in_crd_is_current() {
    let generated = windlass::spec::Application::crd_yaml();
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/crds/applications.windlass.dev.yaml"
    );
    let checked_in = std::fs::read_to_string(path).unwrap();
    assert!(
        checked_in == generated,
        "{path} is stale: regenerate it from `cargo run -- crd` (the first document; the second \
         is deploy/crds/previews.windlass.dev.yaml)"
    );
}

/// POSTs a webhook delivery to the controller: (status code, body).
fn post_hook(port: u16, provider: &str, headers: &[(&str, String)], body: &str) -> (u16, String) {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut request = format!(
        "POST /hooks/{provider} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let code = response
        .split(' ')
        .nth(1)
        .unwrap_or("0")
        .parse()
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (code, body)
}

fn hmac_hex(secret: &str, body: &str) -> String {
    use hmac::{Hmac, KeyInit, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body.as_bytes());
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A push delivery as `provider` sends it, signed its own way.
fn delivery(
    provider: &str,
    secret: &str,
    url: &str,
    before: &str,
    after: &str,
) -> (Vec<(&'static str, String)>, String) {
    let reference = "refs/heads/main";
    let body = match provider {
        "gitlab" => serde_json::json!({ "object_kind": "push", "ref": reference, "before": before, "after": after, "project": { "git_http_url": url } }),
        "bitbucket-server" => serde_json::json!({
            "eventKey": "repo:refs_changed",
            "repository": { "links": { "clone": [ { "href": url, "name": "http" } ] } },
            "changes": [ { "ref": { "id": reference }, "fromHash": before, "toHash": after, "type": "UPDATE" } ]
        }),
        "generic" => serde_json::json!({ "repository": url, "ref": reference, "before": before, "after": after }),
        _ => serde_json::json!({ "ref": reference, "before": before, "after": after, "repository": { "clone_url": url } }),
    }
    .to_string();
    let signature = hmac_hex(secret, &body);
    let headers = match provider {
        "github" => vec![
            ("X-GitHub-Event", "push".to_string()),
            ("X-Hub-Signature-256", format!("sha256={signature}")),
        ],
        "gitea" => vec![
            ("X-Gitea-Event", "push".to_string()),
            ("X-Gitea-Signature", signature),
        ],
        "gitlab" => vec![
            ("X-Gitlab-Event", "Push Hook".to_string()),
            ("X-Gitlab-Token", secret.to_string()),
        ],
        "bitbucket-server" => vec![
            ("X-Event-Key", "repo:refs_changed".to_string()),
            ("X-Hub-Signature", format!("sha256={signature}")),
        ],
        _ => vec![("X-Signature", format!("sha256={signature}"))],
    };
    (headers, body)
}

#[tokio::test]
async fn a_signed_push_makes_the_change_live_at_once_for_every_provider() {
    with_namespace("ctl-hooks", |client, ns| async move {
        install_crd(&client).await;
        let served = ServedRepo::start(
            "ctl-hooks",
            &[
                ("app/a.yaml", &configmap("a", "v0")),
                ("other/x.yaml", &configmap("x", "0")),
            ],
        );
        let secrets = TempDir::new("ctl-hooks-secret");
        let secret = "s3cret-webhook-value";
        let secret_file = secrets.path().join("webhook-secret");
        std::fs::write(&secret_file, format!("{secret}\n")).unwrap();
        let controller = RunningController::start(
            &ns,
            &["--webhook-secret-file", secret_file.to_str().unwrap()],
        );
        // An hour-long interval: only a webhook can make a change live soon.
        let spec = serde_json::json!({ "automated": true, "prune": true, "interval": "1h" });
        create(&client, &ns, &application("web", &served.url, "app", spec)).await;
        let first = served.repo.head();
        wait_for(&client, &ns, "web", "the first sync", |a| {
            is_ready(a) && applied_commit(a).as_deref() == Some(first.as_str())
        })
        .await;

        let mut before = first;
        for (n, provider) in ["github", "gitlab", "gitea", "bitbucket-server", "generic"]
            .iter()
            .enumerate()
        {
            let value = format!("v{}", n + 1);
            let after = served
                .repo
                .commit(&[("app/a.yaml", &configmap("a", &value))], provider);
            let (headers, body) = delivery(provider, secret, &served.url, &before, &after);
            let (code, answer) = post_hook(controller.port, provider, &headers, &body);
            assert_eq!(code, 202, "{provider}: {answer}");
            assert!(answer.contains("\"accepted\":1"), "{provider}: {answer}");
            wait_for(
                &client,
                &ns,
                "web",
                &format!("the change pushed through {provider}"),
                |a| applied_commit(a).as_deref() == Some(after.as_str()),
            )
            .await;
            assert_eq!(
                value_of(&client, &ns, "a").await.as_deref(),
                Some(value.as_str())
            );
            before = after;
        }

        // No signature, or a wrong one: 401, nothing triggered.
        let after = served
            .repo
            .commit(&[("app/a.yaml", &configmap("a", "unsigned"))], "unsigned");
        let (_, body) = delivery("github", secret, &served.url, &before, &after);
        let (code, _) = post_hook(
            controller.port,
            "github",
            &[("X-GitHub-Event", "push".to_string())],
            &body,
        );
        assert_eq!(code, 401);
        let (code, _) = post_hook(
            controller.port,
            "github",
            &[
                ("X-GitHub-Event", "push".to_string()),
                (
                    "X-Hub-Signature-256",
                    format!("sha256={}", hmac_hex("wrong", &body)),
                ),
            ],
            &body,
        );
        assert_eq!(code, 401);

        // Make the app current again, then push a commit that touches
        // another path only: accepted, nothing triggered, no new revision.
        let (headers, body) = delivery("github", secret, &served.url, &before, &after);
        assert_eq!(post_hook(controller.port, "github", &headers, &body).0, 202);
        let app = wait_for(&client, &ns, "web", "the change made current", |a| {
            applied_commit(a).as_deref() == Some(after.as_str())
        })
        .await;
        let revision = app.status.unwrap().last_applied_revision;
        let unrelated = served
            .repo
            .commit(&[("other/x.yaml", &configmap("x", "1"))], "elsewhere");
        let (headers, body) = delivery("github", secret, &served.url, &after, &unrelated);
        let (code, answer) = post_hook(controller.port, "github", &headers, &body);
        assert_eq!(code, 202, "{answer}");
        assert!(answer.contains("\"accepted\":0"), "{answer}");
        tokio::time::sleep(Duration::from_secs(3)).await;
        let api: Api<Application> = Api::namespaced(client.clone(), &ns);
        let app = api.get("web").await.unwrap();
        assert_eq!(
            app.status.unwrap().last_applied_revision,
            revision,
            "no new revision"
        );
        let metrics = controller.metrics();
        assert!(
            metrics.contains("windlass_webhook_received_total"),
            "{metrics}"
        );
        assert!(
            !controller.log().contains(secret),
            "the secret never reaches the log"
        );
        release(&client, &ns).await;
        drop(controller);
    })
    .await;
}

/// A deny window active now, as (schedule, next opening): it started in the
/// minute before this one (yearly, in UTC) and lasts two hours.
fn deny_window_active_now() -> (String, String) {
    use k8s_openapi::jiff::{SignedDuration, Timestamp, tz::TimeZone};
    let start = (Timestamp::now() - SignedDuration::from_mins(1)).to_zoned(TimeZone::UTC);
    let schedule = format!(
        "{} {} {} {} *",
        start.minute(),
        start.hour(),
        start.day(),
        start.month()
    );
    let opening = start
        .with()
        .second(0)
        .subsec_nanosecond(0)
        .build()
        .unwrap()
        .checked_add(SignedDuration::from_hours(2))
        .unwrap();
    (
        schedule,
        opening.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string(),
    )
}

/// How many times an Event with `reason` was published (its series count).
async fn times_published(client: &Client, ns: &str, name: &str, reason: &str) -> Vec<i32> {
    let api: Api<Event> = Api::namespaced(client.clone(), ns);
    api.list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.involved_object.name.as_deref() == Some(name))
        .filter(|e| e.reason.as_deref() == Some(reason))
        .map(|e| {
            e.series
                .and_then(|s| s.count)
                .or(e.count)
                .unwrap_or(1)
                .max(1)
        })
        .collect()
}

#[tokio::test]
async fn a_closed_sync_window_holds_back_syncs_until_reconcile_ignores_it() {
    with_namespace("ctl-window", |client, ns| async move {
        install_crd(&client).await;
        let served = ServedRepo::start("ctl-window", &[("app/a.yaml", &configmap("a", "v1"))]);
        let controller = RunningController::start(&ns, &[]);
        let (schedule, next_opening) = deny_window_active_now();
        let spec = serde_json::json!({
            "automated": true, "prune": true, "selfHeal": true, "interval": "1s",
            "windows": [{ "kind": "deny", "schedule": schedule, "duration": "2h" }],
        });
        create(&client, &ns, &application("web", &served.url, "app", spec)).await;

        // Automated, but the window is closed: nothing is applied.
        let app = wait_for(&client, &ns, "web", "SyncWindowClosed", |a| {
            ready(a).is_some_and(|(s, r, _)| s == "False" && r == "SyncWindowClosed")
        })
        .await;
        let (_, _, message) = ready(&app).unwrap();
        assert!(
            message.contains(&format!("next opening {next_opening}")),
            "{message}"
        );
        assert!(message.contains("--ignore-windows web"), "{message}");
        assert!(app.condition("Stalled").is_none(), "it opens by itself");
        assert_eq!(app.status.as_ref().unwrap().last_applied_revision, None);
        assert_eq!(value_of(&client, &ns, "a").await, None, "nothing applied");
        let records: Api<Secret> = Api::namespaced(client.clone(), &ns);
        let revisions = records
            .list(&ListParams::default().labels("windlass.dev/revision"))
            .await
            .unwrap();
        assert!(revisions.items.is_empty(), "no revision recorded");
        let note = wait_for_event(&client, &ns, "web", "SyncWindowClosed").await;
        assert!(note.contains(&next_opening), "{note}");
        // Later reconciles with the same message send no new Event.
        let reconciles = reconcile_count(&controller.metrics());
        eventually("three more reconciles", LIMIT, || async {
            let now = reconcile_count(&controller.metrics());
            if now >= reconciles + 3 {
                Ok(())
            } else {
                Err(format!("{reconciles} → {now}"))
            }
        })
        .await;
        assert_eq!(
            times_published(&client, &ns, "web", "SyncWindowClosed").await,
            vec![1],
            "one Event per change of the message"
        );

        // `windlass get` shows the window.
        let table = windlass_expect(&["get", "-n", &ns], 0);
        assert!(table.lines().next().unwrap().contains("WINDOW"), "{table}");
        assert!(
            table.lines().any(
                |l| l.starts_with("web") && l.contains(&format!("closed until {next_opening}"))
            ),
            "{table}"
        );

        // `windlass reconcile` respects the window ...
        let out = windlass_expect(&["reconcile", "web", "-n", &ns, "--timeout", "60"], 1);
        assert!(
            out.contains("Ready=False") && out.contains("next opening"),
            "{out}"
        );
        assert_eq!(
            value_of(&client, &ns, "a").await,
            None,
            "still nothing applied"
        );

        // ... unless told to ignore it.
        let out = windlass_expect(
            &[
                "reconcile",
                "--ignore-windows",
                "web",
                "-n",
                &ns,
                "--timeout",
                "60",
            ],
            0,
        );
        assert!(out.contains("Ready=True"), "{out}");
        assert_eq!(value_of(&client, &ns, "a").await.as_deref(), Some("v1"));
        let api: Api<Application> = Api::namespaced(client.clone(), &ns);
        assert_eq!(
            api.get("web")
                .await
                .unwrap()
                .status
                .unwrap()
                .last_applied_revision,
            Some(1)
        );

        // Nothing to apply: Ready, though the window is still closed.
        let reconciles = reconcile_count(&controller.metrics());
        eventually("two more reconciles", LIMIT, || async {
            let now = reconcile_count(&controller.metrics());
            if now >= reconciles + 2 {
                Ok(())
            } else {
                Err(format!("{reconciles} → {now}"))
            }
        })
        .await;
        let app = api.get("web").await.unwrap();
        assert!(is_ready(&app), "{:?}", ready(&app));

        // Drift with selfHeal under the closed window: reported, not healed.
        let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
        let edit = serde_json::json!({ "data": { "value": "by hand" } });
        configmaps
            .patch(
                "a",
                &PatchParams {
                    field_manager: Some("kubectl-edit".into()),
                    ..Default::default()
                },
                &Patch::Merge(&edit),
            )
            .await
            .unwrap();
        let app = wait_for(
            &client,
            &ns,
            "web",
            "drift reported under the window",
            |a| {
                a.condition("Drifted").is_some_and(|c| c.status == "True")
                    && ready(a).is_some_and(|(_, r, _)| r == "SyncWindowClosed")
            },
        )
        .await;
        let (_, _, message) = ready(&app).unwrap();
        assert!(
            message.starts_with("drift is not corrected: sync window closed"),
            "{message}"
        );
        assert!(
            app.condition("Drifted")
                .unwrap()
                .message
                .contains("kubectl-edit"),
            "{:?}",
            app.condition("Drifted")
        );
        assert_eq!(
            value_of(&client, &ns, "a").await.as_deref(),
            Some("by hand")
        );

        // The override was for one request: a new commit waits again.
        let second = served
            .repo
            .commit(&[("app/a.yaml", &configmap("a", "v2"))], "v2");
        let app = wait_for(&client, &ns, "web", "the new commit held back", |a| {
            a.status.as_ref().unwrap().last_attempted_commit.as_deref() == Some(second.as_str())
                && ready(a).is_some_and(|(_, r, _)| r == "SyncWindowClosed")
        })
        .await;
        let (_, _, message) = ready(&app).unwrap();
        assert!(
            message.starts_with(&format!("commit {} is not applied", &second[..7])),
            "{message}"
        );
        assert_eq!(
            value_of(&client, &ns, "a").await.as_deref(),
            Some("by hand")
        );
        assert_eq!(app.status.unwrap().last_applied_revision, Some(1));

        // A window that cannot be read is an error naming it.
        let spec = serde_json::json!({
            "automated": true, "interval": "1s",
            "windows": [{ "kind": "deny", "schedule": "0 18 * * 5", "duration": "62h",
                          "timeZone": "Mars/Olympus" }],
        });
        create(&client, &ns, &application("bad", &served.url, "app", spec)).await;
        let app = wait_for(&client, &ns, "bad", "InvalidSpec", |a| {
            ready(a).is_some_and(|(_, r, _)| r == "InvalidSpec")
        })
        .await;
        let (_, _, message) = ready(&app).unwrap();
        assert!(
            message.starts_with(
                "spec.sync.windows[0].timeZone `Mars/Olympus`: not a known IANA time zone"
            ),
            "{message}"
        );
        assert_eq!(
            app.condition("Stalled").map(|c| c.status.as_str()),
            Some("True")
        );
        let table = windlass_expect(&["get", "-n", &ns], 0);
        assert!(
            table
                .lines()
                .any(|l| l.starts_with("bad") && l.contains("invalid")),
            "{table}"
        );
        release(&client, &ns).await;
        drop(controller);
    })
    .await;
}

/// With an hour-long interval, only the watches can see a hand edit soon.
#[tokio::test]
async fn a_scaled_deployment_is_drifted_at_once_with_an_hour_long_interval() {
    with_namespace("ctl-watch", |client, ns| async move {
        install_crd(&client).await;
        let deployment = NEVER_AVAILABLE.replace("replicas: 1", "replicas: 2");
        let served = ServedRepo::start(
            "ctl-watch",
            &[("app/deploy.yaml", &deployment), ("app/a.yaml", &configmap("a", "git"))],
        );
        let _controller = RunningController::start(&ns, &[]);
        let spec = serde_json::json!({ "automated": true, "prune": true, "interval": "1h", "wait": false });
        create(&client, &ns, &application("web", &served.url, "app", spec)).await;
        wait_for(&client, &ns, "web", "the first sync", is_ready).await;

        let scale = |replicas: &str| {
            let output = support::kubectl(&["-n", &ns, "scale", "deployment/stuck", &format!("--replicas={replicas}")]);
            assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        };
        scale("5");
        let app = wait_for(&client, &ns, "web", "Drifted after kubectl scale", |a| {
            a.condition("Drifted").is_some_and(|c| c.status == "True")
        })
        .await;
        let message = app.condition("Drifted").unwrap().message.clone();
        assert!(message.contains("Deployment") && message.contains(".spec.replicas"), "{message}");
        assert!(message.contains("kubectl"), "{message}");
        assert!(
            wait_for_event(&client, &ns, "web", "DriftDetected").await.contains(".spec.replicas")
        );

        // Reverted by hand: the condition clears.
        scale("2");
        wait_for(&client, &ns, "web", "Drifted cleared after the revert", |a| {
            a.condition("Drifted").is_none()
        })
        .await;

        // Deleted by hand: drift, naming the object.
        let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
        configmaps.delete("a", &DeleteParams::default()).await.unwrap();
        let app = wait_for(&client, &ns, "web", "Drifted after a deletion", |a| {
            a.condition("Drifted").is_some_and(|c| c.status == "True")
        })
        .await;
        let message = app.condition("Drifted").unwrap().message.clone();
        assert!(message.contains("ConfigMap") && message.contains("deleted"), "{message}");
        release(&client, &ns).await;
    })
    .await;
}

/// An HPA owns `replicas`: with a rule naming its field manager, its writes
/// are neither drift nor taken back, even with selfHeal on; `windlass diff`
/// shows the field as ignored.
#[tokio::test]
async fn fields_an_ignore_rule_names_cause_no_drift_and_no_fight() {
    use k8s_openapi::api::apps::v1::Deployment;
    with_namespace("ctl-ignore", |client, ns| async move {
        install_crd(&client).await;
        let deployment = NEVER_AVAILABLE.replace("replicas: 1", "replicas: 2");
        let served = ServedRepo::start("ctl-ignore", &[("app/deploy.yaml", &deployment)]);
        let controller = RunningController::start(&ns, &[]);
        let mut app = application(
            "web",
            &served.url,
            "app",
            serde_json::json!({ "automated": true, "prune": true, "selfHeal": true, "interval": "1h", "wait": false }),
        );
        app.spec.ignore_differences = vec![serde_json::from_value(serde_json::json!({
            "group": "apps", "kind": "Deployment", "managers": ["horizontal-pod-autoscaler"]
        }))
        .unwrap()];
        create(&client, &ns, &app).await;
        wait_for(&client, &ns, "web", "the first sync", is_ready).await;

        // The autoscaler scales through the scale subresource, as an HPA does.
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
        let scale = |replicas: i32| {
            let deployments = deployments.clone();
            async move {
                let patch = serde_json::json!({ "spec": { "replicas": replicas } });
                let params = PatchParams {
                    field_manager: Some("horizontal-pod-autoscaler".into()),
                    ..Default::default()
                };
                deployments
                    .patch_scale("stuck", &params, &Patch::Merge(&patch))
                    .await
                    .unwrap();
            }
        };
        let reconciles = reconcile_count(&controller.metrics());
        scale(7).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        scale(6).await;
        tokio::time::sleep(Duration::from_secs(4)).await;
        assert!(
            reconcile_count(&controller.metrics()) > reconciles,
            "the watch woke the Application, and it found nothing to do"
        );
        let live = deployments.get("stuck").await.unwrap();
        assert_eq!(live.spec.replicas, Some(6), "windlass did not take replicas back");
        let api: Api<Application> = Api::namespaced(client.clone(), &ns);
        let app = api.get("web").await.unwrap();
        assert!(app.condition("Drifted").is_none(), "{:?}", app.status);
        assert_eq!(app.status.clone().unwrap().last_applied_revision, Some(1), "no self-heal revision");
        assert!(
            !events(&client, &ns, "web").await.iter().any(|(reason, _)| reason == "DriftCorrected" || reason == "DriftDetected"),
            "no drift Events"
        );

        // `windlass diff` of the same Application shows the field as ignored.
        let dir = TempDir::new("ctl-ignore-app");
        let mut file_app = app_for_file(&app);
        file_app.metadata.namespace = Some(ns.clone());
        let path = dir.path().join("app.yaml");
        std::fs::write(&path, serde_json::to_string(&file_app).unwrap()).unwrap();
        let out = windlass_expect(&["diff", "--file", path.to_str().unwrap(), "-n", &ns], 0);
        assert!(out.contains("/spec/replicas ignored"), "{out}");
        release(&client, &ns).await;
    })
    .await;
}

/// An Application as a user would write it in a file: spec only.
fn app_for_file(app: &Application) -> Application {
    let mut file = Application::new(&app.name_any(), app.spec.clone());
    file.metadata.namespace = app.metadata.namespace.clone();
    file
}

/// A loopback HTTP receiver: every request's head and body, answered 200.
fn start_receiver() -> (u16, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let store = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            stream.set_read_timeout(Some(Duration::from_secs(5))).ok();
            let mut data = Vec::new();
            let mut buffer = [0u8; 8192];
            loop {
                match stream.read(&mut buffer) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => data.extend_from_slice(&buffer[..n]),
                }
                let text = String::from_utf8_lossy(&data);
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let length = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                        })
                        .unwrap_or(0);
                    if body.len() >= length {
                        break;
                    }
                }
            }
            store
                .lock()
                .unwrap()
                .push(String::from_utf8_lossy(&data).to_string());
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
    });
    (port, seen)
}

/// Drift reaches a generic webhook within seconds: the Application, the
/// object, the field, the manager and the revision, and no secret.
#[tokio::test]
async fn drift_is_notified_to_a_webhook_without_secrets() {
    with_namespace("ctl-notify", |client, ns| async move {
        install_crd(&client).await;
        let deployment = NEVER_AVAILABLE.replace("replicas: 1", "replicas: 2");
        let served = ServedRepo::start("ctl-notify", &[("app/deploy.yaml", &deployment)]);
        let (port, received) = start_receiver();
        let hmac_key = "hmac-key-never-shown";
        let address_path = "/hooks/private-path-token";
        let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
        let secret: Secret = serde_json::from_value(serde_json::json!({
            "metadata": { "name": "hook" },
            "stringData": { "address": format!("http://127.0.0.1:{port}{address_path}"), "hmacKey": hmac_key }
        }))
        .unwrap();
        secrets.create(&PostParams::default(), &secret).await.unwrap();
        let controller = RunningController::start(&ns, &[]);
        let mut app = application(
            "web",
            &served.url,
            "app",
            serde_json::json!({ "automated": true, "prune": true, "interval": "1h", "wait": false }),
        );
        app.spec.notifications = vec![serde_json::from_value(serde_json::json!({
            "provider": "webhook", "secretRef": { "name": "hook" }, "events": ["drift-detected"]
        }))
        .unwrap()];
        create(&client, &ns, &app).await;
        wait_for(&client, &ns, "web", "the first sync", is_ready).await;

        let output = support::kubectl(&["-n", &ns, "scale", "deployment/stuck", "--replicas=5"]);
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        let body = eventually("the drift notification", LIMIT, || {
            let received = received.clone();
            async move {
                let all = received.lock().unwrap().clone();
                all.into_iter()
                    .find(|r| r.contains("drift-detected"))
                    .ok_or_else(|| "nothing received yet".to_string())
            }
        })
        .await;
        let json: serde_json::Value = serde_json::from_str(body.split_once("\r\n\r\n").unwrap().1).unwrap();
        assert_eq!(json["application"]["name"], "web", "{json}");
        assert_eq!(json["event"], "drift-detected");
        assert_eq!(json["revision"], 1);
        let drift = json["drift"].to_string();
        assert!(drift.contains("stuck") && drift.contains(".spec.replicas") && drift.contains("kubectl"), "{json}");
        assert!(body.to_ascii_lowercase().contains("x-signature: sha256="), "{body}");
        assert!(!body.contains(hmac_key), "the HMAC key is never sent");
        let log = controller.log();
        assert!(!log.contains(hmac_key) && !log.contains(address_path), "no secret in the log");
        release(&client, &ns).await;
    })
    .await;
}

/// selfHeal backs off, and stops (Stalled, naming the manager) when the
/// same other manager reverts it again and again.
#[tokio::test]
async fn self_heal_stops_fighting_a_manager_that_keeps_reverting_it() {
    with_namespace("ctl-fight", |client, ns| async move {
        install_crd(&client).await;
        let served = ServedRepo::start("ctl-fight", &[("app/a.yaml", &configmap("a", "git"))]);
        let _controller = RunningController::start(&ns, &[]);
        let spec = serde_json::json!({ "automated": true, "prune": true, "selfHeal": true, "interval": "1h" });
        create(&client, &ns, &application("web", &served.url, "app", spec)).await;
        wait_for(&client, &ns, "web", "the first sync", is_ready).await;

        let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
        let edit = |round: usize| {
            let configmaps = configmaps.clone();
            async move {
                let patch = serde_json::json!({ "data": { "value": format!("rogue {round}") } });
                let params = PatchParams { field_manager: Some("rogue-operator".into()), ..Default::default() };
                configmaps.patch("a", &params, &Patch::Merge(&patch)).await.unwrap();
            }
        };
        // Each edit is healed (after a growing backoff) until windlass sees
        // the same manager revert it again and again, and stops.
        let api: Api<Application> = Api::namespaced(client.clone(), &ns);
        let mut healed = 0;
        let mut stopped = None;
        for round in 1..=8 {
            edit(round).await;
            let outcome = eventually(&format!("self-heal or stop after edit {round}"), LIMIT, || {
                let client = client.clone();
                let ns = ns.clone();
                let api = api.clone();
                async move {
                    let app = api.get("web").await.map_err(|e| e.to_string())?;
                    if ready(&app).is_some_and(|(_, reason, _)| reason == "SelfHealStopped") {
                        return Ok(Some(app));
                    }
                    match value_of(&client, &ns, "a").await.as_deref() {
                        Some("git") => Ok(None),
                        other => Err(format!("{other:?}")),
                    }
                }
            })
            .await;
            match outcome {
                Some(app) => {
                    stopped = Some((round, app));
                    break;
                }
                None => healed += 1,
            }
        }
        let (round, app) = stopped.expect("selfHeal stopped fighting within 8 edits");
        assert!(healed >= 3, "it healed at least three times first ({healed}, stopped at edit {round})");
        let (_, _, message) = ready(&app).unwrap();
        assert!(message.contains("rogue-operator"), "{message}");
        assert!(app.condition("Stalled").is_some_and(|c| c.status == "True"));
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(
            value_of(&client, &ns, "a").await,
            Some(format!("rogue {round}")),
            "no more fighting"
        );
        release(&client, &ns).await;
    })
    .await;
}
