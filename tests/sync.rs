//! `windlass diff` and `windlass sync` against the real local control plane.

mod support;

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Secret};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;
use support::git::{ServedRepo, TempDir};
use support::{configmap, eventually, with_namespace, write_files};

const LIMIT: Duration = Duration::from_secs(120);

/// Writes `files` into a fresh directory.
fn app_dir(purpose: &str, files: &[(&str, &str)]) -> TempDir {
    let dir = TempDir::new(purpose);
    write_files(dir.path(), files);
    dir
}

fn run(args: &[&str]) -> Output {
    support::windlass().args(args).output().unwrap()
}

fn text(output: &Output) -> String {
    support::output_text(output)
}

/// `windlass sync --dir DIR -n NS --name app ARGS...`, asserting its exit code.
fn sync(dir: &Path, ns: &str, extra: &[&str], code: i32) -> String {
    let mut args = vec![
        "sync",
        "--dir",
        dir.to_str().unwrap(),
        "-n",
        ns,
        "--name",
        "app",
    ];
    args.extend_from_slice(extra);
    let output = run(&args);
    let all = text(&output);
    assert_eq!(output.status.code(), Some(code), "sync {extra:?}:\n{all}");
    all
}

/// `windlass sync --dir DIR -n NS --name app ARGS...` started in the
/// background (to be killed), its output discarded.
fn spawn_sync(dir: &Path, ns: &str, extra: &[&str]) -> std::process::Child {
    support::windlass()
        .args([
            "sync",
            "--dir",
            dir.to_str().unwrap(),
            "-n",
            ns,
            "--name",
            "app",
        ])
        .args(extra)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

fn diff(dir: &Path, ns: &str, extra: &[&str], code: i32) -> String {
    let mut args = vec![
        "diff",
        "--dir",
        dir.to_str().unwrap(),
        "-n",
        ns,
        "--name",
        "app",
    ];
    args.extend_from_slice(extra);
    let output = run(&args);
    let all = text(&output);
    assert_eq!(output.status.code(), Some(code), "diff {extra:?}:\n{all}");
    all
}

async fn resource_version(client: &Client, ns: &str, name: &str) -> String {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    api.get(name)
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap()
}

async fn revisions(client: &Client, ns: &str) -> Vec<(String, String)> {
    let api: Api<Secret> = Api::namespaced(client.clone(), ns);
    let mut list: Vec<(String, String)> = api
        .list(&ListParams::default().labels("windlass.dev/revision"))
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|s| {
            let labels = s.metadata.labels.unwrap();
            (
                labels["windlass.dev/revision"].clone(),
                labels["windlass.dev/status"].clone(),
            )
        })
        .collect();
    list.sort();
    list
}

#[tokio::test]
async fn create_update_and_a_no_op_that_writes_nothing() {
    with_namespace("sync-basic", |client, ns| async move {
        let dir = app_dir(
            "sync-basic",
            &[
                ("a.yaml", &configmap("a", "1")),
                ("b.yaml", &configmap("b", "1")),
            ],
        );
        assert!(
            diff(dir.path(), &ns, &[], 1)
                .contains("2 to create, 0 to update, 0 to delete, 0 unchanged")
        );
        let out = sync(dir.path(), &ns, &[], 0);
        assert!(
            out.contains(
                "revision 1 deployed: 2 created, 0 updated, 0 deleted, 0 unchanged; healthy"
            ),
            "{out}"
        );

        let cm: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
        let a = cm.get("a").await.unwrap();
        let labels = a.metadata.labels.unwrap();
        assert_eq!(labels["app.kubernetes.io/managed-by"], "windlass");
        assert_eq!(labels["windlass.dev/app"], format!("{ns}.app"));
        let managers: Vec<_> = a
            .metadata
            .managed_fields
            .unwrap()
            .into_iter()
            .filter_map(|m| m.manager)
            .collect();
        assert_eq!(managers, ["windlass"]);

        // A no-op: nothing written, not even a record.
        let (rv_a, rv_b) = (
            resource_version(&client, &ns, "a").await,
            resource_version(&client, &ns, "b").await,
        );
        assert!(
            diff(dir.path(), &ns, &[], 0)
                .contains("0 to create, 0 to update, 0 to delete, 2 unchanged")
        );
        let out = sync(dir.path(), &ns, &[], 0);
        assert!(out.contains("no changes"), "{out}");
        assert_eq!(resource_version(&client, &ns, "a").await, rv_a);
        assert_eq!(resource_version(&client, &ns, "b").await, rv_b);
        assert_eq!(
            revisions(&client, &ns).await,
            [("1".into(), "deployed".into())]
        );

        // Change one object: only it is written.
        write_files(dir.path(), &[("a.yaml", &configmap("a", "2"))]);
        let out = diff(dir.path(), &ns, &[], 1);
        assert!(
            out.contains("-  value: \"1\"") && out.contains("+  value: \"2\""),
            "{out}"
        );
        let out = sync(dir.path(), &ns, &[], 0);
        assert!(out.contains("0 created, 1 updated"), "{out}");
        assert_ne!(resource_version(&client, &ns, "a").await, rv_a);
        assert_eq!(resource_version(&client, &ns, "b").await, rv_b);
        assert_eq!(cm.get("a").await.unwrap().data.unwrap()["value"], "2");
        assert_eq!(
            revisions(&client, &ns).await,
            [
                ("1".into(), "superseded".into()),
                ("2".into(), "deployed".into())
            ]
        );
    })
    .await;
}

#[tokio::test]
async fn charts_rendered_against_the_cluster_see_its_capabilities() {
    with_namespace("sync-capabilities", |client, ns| async move {
        let template = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: caps\ndata:\n  \
                        kube: {{quote capabilities.kubeVersion}}\n  \
                        apps: {{quote (has \"apps/v1\" capabilities.apiVersions)}}\n  \
                        pdb: {{quote (has \"policy/v1/PodDisruptionBudget\" capabilities.apiVersions)}}\n  \
                        monitoring: {{quote (has \"monitoring.coreos.com/v1\" capabilities.apiVersions)}}\n";
        let dir = app_dir(
            "sync-capabilities",
            &[
                ("Chart.yaml", "name: caps\nversion: 0.1.0\n"),
                ("templates/cm.yaml", template),
            ],
        );
        sync(dir.path(), &ns, &[], 0);
        let version = client.apiserver_version().await.unwrap();
        let data = Api::<ConfigMap>::namespaced(client.clone(), &ns)
            .get("caps")
            .await
            .unwrap()
            .data
            .unwrap();
        assert_eq!(
            data["kube"],
            format!("{}.{}", version.major, version.minor.trim_end_matches('+'))
        );
        assert_eq!(data["apps"], "true");
        assert_eq!(data["pdb"], "true");
        // No such CRD on the local control plane.
        assert_eq!(data["monitoring"], "false");
    })
    .await;
}

#[tokio::test]
async fn prune_deletes_what_left_and_honours_every_guard() {
    with_namespace("sync-prune", |client, ns| async move {
        let pvc = "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata:\n  name: data\nspec:\n  accessModes: [ReadWriteOnce]\n  resources:\n    requests:\n      storage: 1Gi\n";
        let dir = app_dir("sync-prune", &[
            ("keep.yaml", &configmap("keep", "1")),
            ("gone.yaml", &configmap("gone", "1")),
            ("protected.yaml", &configmap("protected", "1")),
            ("taken.yaml", &configmap("taken", "1")),
            ("pvc.yaml", pvc),
        ]);
        sync(dir.path(), &ns, &["--no-wait"], 0);
        let cm: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
        // Someone protects one object and takes another over.
        cm.patch("protected", &PatchParams::default(), &Patch::Merge(json!({ "metadata": { "annotations": { "windlass.dev/prune": "disabled" } } }))).await.unwrap();
        cm.patch("taken", &PatchParams::default(), &Patch::Merge(json!({ "metadata": { "labels": { "windlass.dev/app": null } } }))).await.unwrap();
        for file in ["gone.yaml", "protected.yaml", "taken.yaml", "pvc.yaml"] {
            std::fs::remove_file(dir.path().join(file)).unwrap();
        }

        // Without --prune nothing is deleted.
        let out = diff(dir.path(), &ns, &[], 1);
        assert!(out.contains("0 to create, 0 to update, 1 to delete, 1 unchanged"), "{out}");
        assert!(out.contains("# not pruned: v1 ConfigMap") && out.contains("windlass.dev/prune: disabled"), "{out}");
        assert!(out.contains("someone else took it over"), "{out}");
        assert!(out.contains("PersistentVolumeClaim is pruned only with --prune-dangerous"), "{out}");
        sync(dir.path(), &ns, &["--no-wait"], 0);
        assert!(cm.get_opt("gone").await.unwrap().is_some(), "kept without --prune");

        let out = sync(dir.path(), &ns, &["--prune", "--no-wait"], 0);
        assert!(out.contains(&format!("deleted v1 ConfigMap {ns}/gone")), "{out}");
        assert!(cm.get_opt("gone").await.unwrap().is_none());
        assert!(cm.get_opt("protected").await.unwrap().is_some());
        assert!(cm.get_opt("taken").await.unwrap().is_some());
        let pvcs: Api<k8s_openapi::api::core::v1::PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);
        assert!(pvcs.get_opt("data").await.unwrap().is_some());

        // Dangerous kinds go only when asked.
        sync(dir.path(), &ns, &["--prune", "--prune-dangerous", "--no-wait"], 0);
        assert!(pvcs.get_opt("data").await.unwrap().is_none_or(|p| p.metadata.deletion_timestamp.is_some()));

        // An empty render never prunes everything by accident: it is an
        // error (naming the path and --allow-empty) before any plan.
        std::fs::remove_file(dir.path().join("keep.yaml")).unwrap();
        let out = sync(dir.path(), &ns, &["--prune", "--no-wait"], 2);
        assert!(
            out.contains("the render produced no objects") && out.contains("--allow-empty"),
            "{out}"
        );
        assert!(cm.get_opt("keep").await.unwrap().is_some());
        sync(dir.path(), &ns, &["--prune", "--allow-empty", "--no-wait"], 0);
        assert!(cm.get_opt("keep").await.unwrap().is_none());
    })
    .await;
}

#[tokio::test]
async fn a_crd_and_its_custom_resource_and_a_namespace_and_its_objects_in_one_set() {
    let client = support::client().await;
    let suffix = format!("{:x}", std::process::id());
    let group = format!("t{suffix}.windlass.dev");
    let app_ns = format!("wl-sync-foundations-{suffix}");
    let crd = format!(
        "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: widgets.{group}\n\
         spec:\n  group: {group}\n  scope: Namespaced\n  names: {{plural: widgets, singular: widget, kind: Widget}}\n\
         \x20 versions:\n  - name: v1\n    served: true\n    storage: true\n    schema:\n      openAPIV3Schema:\n        type: object\n\
         \x20       properties:\n          spec: {{type: object, properties: {{size: {{type: integer}}}}}}\n"
    );
    let widget =
        format!("apiVersion: {group}/v1\nkind: Widget\nmetadata:\n  name: w1\nspec:\n  size: 3\n");
    let namespace = format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {app_ns}\n");
    let dir = app_dir(
        "sync-foundations",
        &[
            ("crd.yaml", &crd),
            ("namespace.yaml", &namespace),
            ("widget.yaml", &widget),
            ("config.yaml", &configmap("settings", "x")),
        ],
    );
    let out = diff(dir.path(), &app_ns, &[], 1);
    assert!(out.contains("4 to create"), "{out}");
    let out = sync(dir.path(), &app_ns, &[], 0);
    assert!(
        out.contains(&format!(
            "established apiextensions.k8s.io/v1 CustomResourceDefinition widgets.{group}"
        )),
        "{out}"
    );
    assert!(out.contains("4 created"), "{out}");
    let resource = kube::discovery::ApiResource::from_gvk_with_plural(
        &kube::core::GroupVersionKind::gvk(&group, "v1", "Widget"),
        "widgets",
    );
    let widgets: Api<kube::api::DynamicObject> =
        Api::namespaced_with(client.clone(), &app_ns, &resource);
    assert_eq!(widgets.get("w1").await.unwrap().data["spec"]["size"], 3);
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &app_ns);
    assert!(cms.get_opt("settings").await.unwrap().is_some());
    // Clean up: the namespace and the CRD (cluster-scoped).
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let _ = namespaces.delete(&app_ns, &DeleteParams::default()).await;
    let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> = Api::all(client);
    let _ = crds
        .delete(&format!("widgets.{group}"), &DeleteParams::default())
        .await;
}

#[tokio::test]
async fn a_rejected_object_means_nothing_is_written() {
    with_namespace("sync-reject", |client, ns| async move {
        let bad = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: broken\nspec:\n  selector:\n    matchLabels: {app: one}\n  template:\n    metadata:\n      labels: {app: two}\n    spec:\n      containers: [{name: c, image: nginx}]\n";
        let dir = app_dir("sync-reject", &[("good.yaml", &configmap("good", "1")), ("bad.yaml", bad)]);
        let out = sync(dir.path(), &ns, &[], 2);
        assert!(out.contains("the server rejected 1 object(s); nothing was written"), "{out}");
        assert!(out.contains(&format!("apps/v1 Deployment {ns}/broken (`bad.yaml` document 1)")), "{out}");
        assert!(out.contains("`selector` does not match template `labels`"), "{out}");
        let cm: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
        assert!(cm.get_opt("good").await.unwrap().is_none(), "nothing written");
        assert!(revisions(&client, &ns).await.is_empty(), "no record");
        // diff reports it as an error too.
        let out = diff(dir.path(), &ns, &[], 2);
        assert!(out.contains("# rejected:"), "{out}");
    })
    .await;
}

#[tokio::test]
async fn conflicts_with_another_field_manager_in_both_modes() {
    with_namespace("sync-conflict", |client, ns| async move {
        let dir = app_dir("sync-conflict", &[("a.yaml", &configmap("a", "git"))]);
        sync(dir.path(), &ns, &[], 0);
        let cm: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
        let edit = json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": "a" }, "data": { "value": "hand" } });
        cm.patch("a", &PatchParams::apply("hand-edit").force(), &Patch::Apply(&edit)).await.unwrap();

        let out = diff(dir.path(), &ns, &[], 1);
        assert!(out.contains("is owned by field manager hand-edit"), "{out}");
        assert!(out.contains("1 with conflicts"), "{out}");

        let out = sync(dir.path(), &ns, &["--no-force-conflicts"], 2);
        assert!(out.contains("would take fields owned by other managers"), "{out}");
        assert!(out.contains("owned by hand-edit"), "{out}");
        assert_eq!(cm.get("a").await.unwrap().data.unwrap()["value"], "hand", "nothing written");

        let out = sync(dir.path(), &ns, &[], 0);
        assert!(out.contains("took .data.value over from field manager hand-edit"), "{out}");
        assert_eq!(cm.get("a").await.unwrap().data.unwrap()["value"], "git");
    })
    .await;
}

#[tokio::test]
async fn secrets_are_masked_in_the_diff() {
    with_namespace("sync-secret", |_client, ns| async move {
        let secret = |password: &str| {
            format!("apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\nstringData:\n  user: admin\n  password: {password}\n")
        };
        let dir = app_dir("sync-secret", &[("secret.yaml", &secret("first-s3cret"))]);
        let out = diff(dir.path(), &ns, &[], 1);
        assert!(!out.contains("first-s3cret") && !out.contains("admin"), "{out}");
        sync(dir.path(), &ns, &[], 0);
        write_files(dir.path(), &[("secret.yaml", &secret("second-s3cret"))]);
        let out = diff(dir.path(), &ns, &[], 1);
        for leaked in ["first-s3cret", "second-s3cret", "YWRtaW4=", "admin"] {
            assert!(!out.contains(leaked), "{leaked} leaked:\n{out}");
        }
        assert!(out.contains("*** (changed)") && out.contains("*** (unchanged)"), "{out}");
        let json = diff(dir.path(), &ns, &["-o", "json"], 1);
        assert!(!json.contains("second-s3cret") && !json.contains("c2Vjb25k"), "{json}");
    })
    .await;
}

#[tokio::test]
async fn sync_from_a_git_repository() {
    with_namespace("sync-git", |client, ns| async move {
        let served = ServedRepo::start(
            "sync-git",
            &[("apps/web/config.yaml", &configmap("web", "v1"))],
        );
        let (repo, url) = (&served.repo, served.url.clone());
        let args = |verb: &'static str| -> Vec<String> {
            [
                verb,
                "--repo",
                &url,
                "--ref",
                "main",
                "--path",
                "apps/web",
                "-n",
                &ns,
                "--no-wait",
            ]
            .iter()
            .map(|s| s.to_string())
            .filter(|s| verb == "sync" || s != "--no-wait")
            .collect()
        };
        let out = support::windlass().args(args("sync")).output().unwrap();
        assert!(out.status.success(), "{}", text(&out));
        let cm: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
        assert_eq!(cm.get("web").await.unwrap().data.unwrap()["value"], "v1");

        repo.commit(&[("apps/web/config.yaml", &configmap("web", "v2"))], "v2");
        let out = support::windlass().args(args("diff")).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        let out = support::windlass().args(args("sync")).output().unwrap();
        assert!(out.status.success(), "{}", text(&out));
        assert_eq!(cm.get("web").await.unwrap().data.unwrap()["value"], "v2");
        // The record names the commit.
        let store = windlass::history::RevisionStore::new(
            &client,
            &windlass::identity::AppIdentity::new(ns.clone(), "web"),
        );
        let record = store.load(2).await.unwrap();
        match record.source {
            windlass::history::record::RecordSource::Git {
                commit,
                reference,
                path,
                ..
            } => {
                assert_eq!(commit, repo.head());
                assert_eq!(reference, "refs/heads/main");
                assert_eq!(path, "apps/web");
            }
            other => panic!("{other:?}"),
        }
    })
    .await;
}

#[tokio::test]
async fn health_waits_for_pods_and_a_timeout_is_a_failure() {
    with_namespace("sync-health", |client, ns| async move {
        let deployment = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 1\n  selector:\n    matchLabels: {app: web}\n  template:\n    metadata:\n      labels: {app: web}\n    spec:\n      containers: [{name: web, image: nginx}]\n";
        let dir = app_dir("sync-health", &[("web.yaml", deployment)]);

        // No node runs the Pod: the health wait times out, and that is a failure.
        let out = sync(dir.path(), &ns, &["--timeout", "3s"], 2);
        assert!(out.contains("health check timed out after 3s"), "{out}");
        assert!(out.contains("deployment/web: 0/1 replicas available"), "{out}");
        assert_eq!(revisions(&client, &ns).await, [("1".into(), "failed".into())]);

        // Play kubelet: mark the Pod running and ready; the controller manager
        // turns that into an available Deployment, and the next sync is healthy.
        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
        let pod = eventually("a pod", LIMIT, || {
            let pods = pods.clone();
            async move {
                pods.list(&ListParams::default().labels("app=web")).await.map_err(|e| e.to_string())?
                    .items.into_iter().next().and_then(|p| p.metadata.name).ok_or("none yet".to_string())
            }
        })
        .await;
        let now = "2026-01-01T00:00:00Z";
        pods.patch_status(&pod, &PatchParams::default(), &Patch::Merge(json!({ "status": {
            "phase": "Running",
            "conditions": [
                { "type": "Ready", "status": "True", "lastTransitionTime": now },
                { "type": "ContainersReady", "status": "True", "lastTransitionTime": now },
                { "type": "PodScheduled", "status": "True", "lastTransitionTime": now }
            ],
            "containerStatuses": [{ "name": "web", "ready": true, "restartCount": 0, "image": "nginx", "imageID": "", "started": true, "state": { "running": { "startedAt": now } } }]
        }}))).await.unwrap();
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
        eventually("the deployment becoming available", LIMIT, || {
            let deployments = deployments.clone();
            async move {
                let d = deployments.get("web").await.map_err(|e| e.to_string())?;
                let available = d.status.and_then(|s| s.available_replicas).unwrap_or(0);
                if available == 1 { Ok(()) } else { Err(format!("{available} available")) }
            }
        })
        .await;
        write_files(dir.path(), &[("note.yaml", &configmap("note", "1"))]);
        let out = sync(dir.path(), &ns, &["--timeout", "60s"], 0);
        assert!(out.contains("healthy: all 2 objects"), "{out}");
        assert!(out.contains("; healthy"), "{out}");
    })
    .await;
}

#[tokio::test]
async fn a_sync_killed_mid_apply_is_never_forgotten() {
    with_namespace("sync-crash", |client, ns| async move {
        let many: Vec<(String, String)> = (0..300)
            .map(|i| {
                (
                    format!("cm-{i:03}.yaml"),
                    configmap(&format!("cm-{i:03}"), "1"),
                )
            })
            .collect();
        let files: Vec<(&str, &str)> = many.iter().map(|(p, c)| (p.as_str(), c.as_str())).collect();
        let dir = app_dir("sync-crash", &files);

        // Start a slow sync (one request at a time) and kill -9 it once its
        // pending record exists and part of the objects are written.
        let mut child = spawn_sync(dir.path(), &ns, &["--concurrency", "1", "--no-wait"]);
        let cm: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
        let written = eventually("a pending record and some objects", LIMIT, || {
            let (cm, client, ns) = (cm.clone(), client.clone(), ns.clone());
            async move {
                let records = revisions(&client, &ns).await;
                let count = cm
                    .list(&ListParams::default().labels("windlass.dev/app"))
                    .await
                    .map_err(|e| e.to_string())?
                    .items
                    .len();
                if records == [("1".to_string(), "pending".to_string())] && count >= 20 {
                    Ok(count)
                } else {
                    Err(format!("{records:?}, {count} objects"))
                }
            }
        })
        .await;
        child.kill().unwrap();
        child.wait().unwrap();
        let count = cm
            .list(&ListParams::default().labels("windlass.dev/app"))
            .await
            .unwrap()
            .items
            .len();
        assert!(
            count < 300,
            "the kill came too late to test anything ({written} then {count} objects)"
        );
        assert_eq!(
            revisions(&client, &ns).await,
            [("1".into(), "pending".into())]
        );

        // The next sync wants only the first 100: it adopts those and prunes
        // the rest of what the killed sync wrote, though no finished record
        // ever listed them.
        for i in 100..300 {
            std::fs::remove_file(dir.path().join(format!("cm-{i:03}.yaml"))).unwrap();
        }
        let out = sync(dir.path(), &ns, &["--prune", "--no-wait"], 0);
        assert!(out.contains("revision 2 deployed"), "{out}");
        let left: Vec<String> = cm
            .list(&ListParams::default().labels("windlass.dev/app"))
            .await
            .unwrap()
            .items
            .into_iter()
            .filter_map(|c| c.metadata.name)
            .collect();
        assert_eq!(left.len(), 100, "{left:?}");
        assert!(left.iter().all(|n| n.as_str() < "cm-100"));
        assert_eq!(
            revisions(&client, &ns).await,
            [
                ("1".into(), "failed".into()),
                ("2".into(), "deployed".into())
            ],
            "the interrupted revision is marked failed"
        );
    })
    .await;
}

#[tokio::test]
async fn diff_exit_codes() {
    with_namespace("sync-exit", |_client, ns| async move {
        let dir = app_dir("sync-exit", &[("a.yaml", &configmap("a", "1"))]);
        diff(dir.path(), &ns, &[], 1);
        sync(dir.path(), &ns, &["--no-wait"], 0);
        diff(dir.path(), &ns, &[], 0);
        write_files(
            dir.path(),
            &[(
                "broken.yaml",
                "apiVersion: v1\nkind: ConfigMap\nmetadata: [not, a, map\n",
            )],
        );
        let out = diff(dir.path(), &ns, &[], 2);
        assert!(out.contains("broken.yaml"), "{out}");
        // A kind the server does not serve, and no CRD in the set defines.
        std::fs::remove_file(dir.path().join("broken.yaml")).unwrap();
        write_files(
            dir.path(),
            &[("gizmo.yaml", "apiVersion: example.com/v1\nkind: Gizmo\nmetadata:\n  name: g\n")],
        );
        let out = diff(dir.path(), &ns, &[], 2);
        assert!(
            out.contains("`gizmo.yaml` document 1: example.com/v1 Gizmo `g`: the server does not know kind Gizmo"),
            "{out}"
        );
        let missing = TempDir::new("sync-exit-missing");
        let out = run(&[
            "diff",
            "--dir",
            missing.path().join("nope").to_str().unwrap(),
            "-n",
            &ns,
        ]);
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        let _ = PostParams::default();
    })
    .await;
}

#[tokio::test]
async fn a_record_larger_than_one_secret_is_split_and_reads_back() {
    with_namespace("sync-large", |client, ns| async move {
        // Four ConfigMaps of ~900 KB incompressible data: ~3.6 MB of
        // manifests, far over the 1 MiB a Secret holds.
        let mut state = 0x2545f4914f6cdd1du64;
        let mut noise = |n: usize| -> String {
            (0..n)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    char::from_digit((state % 36) as u32, 36).unwrap()
                })
                .collect()
        };
        let files: Vec<(String, String)> = (0..4)
            .map(|i| {
                (
                    format!("big-{i}.yaml"),
                    configmap(&format!("big-{i}"), &noise(900_000)),
                )
            })
            .collect();
        let refs: Vec<(&str, &str)> = files
            .iter()
            .map(|(p, c)| (p.as_str(), c.as_str()))
            .collect();
        let dir = app_dir("sync-large", &refs);
        let out = sync(dir.path(), &ns, &["--no-wait"], 0);
        assert!(out.contains("revision 1 deployed: 4 created"), "{out}");

        let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
        let parts = secrets
            .list(&ListParams::default().labels("windlass.dev/revision-part=1"))
            .await
            .unwrap()
            .items;
        assert!(
            parts.len() >= 2,
            "the record spans several Secrets ({} parts)",
            parts.len()
        );
        let store = windlass::history::RevisionStore::new(
            &client,
            &windlass::identity::AppIdentity::new(ns.clone(), "app"),
        );
        let record = store.load(1).await.unwrap();
        assert_eq!(record.manifests.len(), 4);
        assert_eq!(record.status, windlass::history::RevisionStatus::Deployed);

        // A missing part is a clear error, not a wrong record.
        let part = parts[0].metadata.name.clone().unwrap();
        secrets
            .delete(&part, &DeleteParams::default())
            .await
            .unwrap();
        let error = store.load(1).await.unwrap_err().to_string();
        assert!(
            error.contains("revision 1") && error.contains("is missing"),
            "{error}"
        );
    })
    .await;
}

/// A Role with no rules: namespaced, so prune deletes it in its first wave,
/// before any ConfigMap (see src/sync/delete.rs).
fn role(name: &str) -> String {
    format!(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata:\n  name: {name}\nrules: []\n"
    )
}

/// The test's own finalizer: an object carrying it stays Terminating after
/// its deletion until the test takes the finalizer off.
const HOLD: &str = "windlass.test/hold";

/// Roles the test holds with [`HOLD`]; released when dropped too, so that a
/// failing test does not leave its namespace Terminating for ever.
struct HeldRoles {
    api: Api<k8s_openapi::api::rbac::v1::Role>,
    namespace: String,
    names: Vec<String>,
}

impl HeldRoles {
    async fn hold(client: &Client, namespace: &str, names: &[String]) -> HeldRoles {
        let api = Api::namespaced(client.clone(), namespace);
        let held = HeldRoles {
            api,
            namespace: namespace.to_string(),
            names: names.to_vec(),
        };
        held.set_finalizers(json!([HOLD])).await;
        held
    }

    async fn set_finalizers(&self, finalizers: serde_json::Value) {
        for name in &self.names {
            let patch = json!({ "metadata": { "finalizers": finalizers } });
            self.api
                .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .unwrap_or_else(|e| panic!("finalizers of role {name}: {e}"));
        }
    }

    async fn release(mut self) {
        self.set_finalizers(serde_json::Value::Null).await;
        self.names.clear();
    }
}

impl Drop for HeldRoles {
    fn drop(&mut self) {
        for name in &self.names {
            let _ = support::kubectl(&[
                "-n",
                &self.namespace,
                "patch",
                "role",
                name,
                "--type",
                "merge",
                "-p",
                r#"{"metadata":{"finalizers":null}}"#,
            ]);
        }
    }
}

/// Names of the objects of `api` that carry an application label, sorted,
/// each with whether it is being deleted.
async fn labelled<K>(api: &Api<K>) -> Vec<(String, bool)>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let mut names: Vec<(String, bool)> = api
        .list(&ListParams::default().labels("windlass.dev/app"))
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|o| {
            let meta = o.meta();
            (
                meta.name.clone().unwrap_or_default(),
                meta.deletion_timestamp.is_some(),
            )
        })
        .collect();
    names.sort();
    names
}

/// The prune of a killed sync, held, not raced: revision 1 is `configmaps`
/// ConfigMaps (`cm-00` …) and three Roles, synced from a new directory; the
/// Roles get a finalizer of the test's own ([`HOLD`]); revision 2 keeps the
/// first `kept` ConfigMaps only. Its prune deletes the Roles first (they are
/// the first wave) and waits for them; they stay Terminating, and the sync
/// is killed (SIGKILL) then: always inside its first wave, the ConfigMaps of
/// the next wave not yet touched. Checks that, releases the Roles, waits
/// until they are gone, and returns the directory (revision 2's source).
async fn kill_a_sync_mid_prune(
    client: &Client,
    ns: &str,
    configmaps: usize,
    kept: usize,
) -> TempDir {
    use k8s_openapi::api::rbac::v1::Role;
    let names: Vec<String> = (0..configmaps).map(|i| format!("cm-{i:02}")).collect();
    let roles: Vec<String> = (0..3).map(|i| format!("role-{i}")).collect();
    let mut files: Vec<(String, String)> = names
        .iter()
        .map(|name| (format!("{name}.yaml"), configmap(name, "1")))
        .collect();
    files.extend(
        roles
            .iter()
            .map(|name| (format!("{name}.yaml"), role(name))),
    );
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(p, c)| (p.as_str(), c.as_str()))
        .collect();
    let dir = app_dir("sync-crash-prune", &refs);
    sync(dir.path(), ns, &["--no-wait"], 0);
    let held = HeldRoles::hold(client, ns, &roles).await;

    for name in names[kept..].iter().chain(&roles) {
        std::fs::remove_file(dir.path().join(format!("{name}.yaml"))).unwrap();
    }
    let mut child = spawn_sync(dir.path(), ns, &["--prune", "--no-wait"]);
    let role_api: Api<Role> = Api::namespaced(client.clone(), ns);
    let cm: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let held_count = roles.len();
    eventually("the prune waiting for the held Roles", LIMIT, || {
        let (role_api, client, ns) = (role_api.clone(), client.clone(), ns.to_string());
        async move {
            let records = revisions(&client, &ns).await;
            let live = labelled(&role_api).await;
            let deleting = live.iter().filter(|(_, deleting)| *deleting).count();
            if records.last().is_some_and(|r| r.1 == "pending") && deleting == held_count {
                Ok(())
            } else {
                Err(format!("{records:?}, roles {live:?}"))
            }
        }
    })
    .await;
    child.kill().unwrap();
    child.wait().unwrap();

    // Killed mid-prune: revision 2 pending, the Roles Terminating, the
    // ConfigMaps untouched.
    assert_eq!(
        revisions(client, ns).await,
        [
            ("1".into(), "deployed".into()),
            ("2".into(), "pending".into())
        ]
    );
    let terminating: Vec<(String, bool)> = roles.iter().map(|n| (n.clone(), true)).collect();
    assert_eq!(labelled(&role_api).await, terminating);
    let untouched: Vec<(String, bool)> = names.iter().map(|n| (n.clone(), false)).collect();
    assert_eq!(labelled(&cm).await, untouched);

    // The finalizers are released: the Roles go.
    held.release().await;
    eventually("the released Roles gone", LIMIT, || {
        let role_api = role_api.clone();
        async move {
            let live = labelled(&role_api).await;
            if live.is_empty() {
                Ok(())
            } else {
                Err(format!("{live:?}"))
            }
        }
    })
    .await;
    dir
}

/// After the next sync: the history tells the truth. The killed sync's
/// revision 2 failed, interrupted; revision 3 replaced revision 1.
async fn assert_the_killed_revision_is_closed(client: &Client, ns: &str) {
    assert_eq!(
        revisions(client, ns).await,
        [
            ("1".into(), "superseded".into()),
            ("2".into(), "failed".into()),
            ("3".into(), "deployed".into())
        ]
    );
    let table = support::windlass_expect(&["history", "app", "-n", ns], 0);
    let second = table
        .lines()
        .find(|line| line.starts_with("2 "))
        .unwrap_or_else(|| panic!("no revision 2:\n{table}"));
    assert!(
        second.contains("failed") && second.contains("interrupted"),
        "{table}"
    );
}

/// Names of the ConfigMaps `cm-00` … `cm-{n-1}`, none being deleted.
fn live_configmaps(n: usize) -> Vec<(String, bool)> {
    (0..n).map(|i| (format!("cm-{i:02}"), false)).collect()
}

#[tokio::test]
async fn a_sync_killed_mid_prune_is_finished_by_the_next_one() {
    with_namespace("sync-crash-prune", |client, ns| async move {
        // Revision 2 keeps 5 of 20 ConfigMaps; its sync dies in the Roles'
        // wave, before it deleted any ConfigMap.
        let dir = kill_a_sync_mid_prune(&client, &ns, 20, 5).await;

        // The next sync (it waits for the dead process's lease to expire)
        // finishes the prune from the pending record's inventory.
        let out = sync(
            dir.path(),
            &ns,
            &["--prune", "--no-wait", "--lock-timeout", "90s"],
            0,
        );
        assert!(
            out.contains("revision 3 deployed: 0 created, 0 updated, 15 deleted, 5 unchanged"),
            "{out}"
        );
        assert!(
            out.contains(&format!("deleted v1 ConfigMap {ns}/cm-19")),
            "{out}"
        );
        // Nothing revision 3 does not hold survives.
        let cm: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
        assert_eq!(labelled(&cm).await, live_configmaps(5));
        let roles: Api<k8s_openapi::api::rbac::v1::Role> = Api::namespaced(client.clone(), &ns);
        assert!(labelled(&roles).await.is_empty());
        assert_the_killed_revision_is_closed(&client, &ns).await;
    })
    .await;
}

/// The killed sync's deletions were all it had left to do, and they
/// finished without it: the next sync has nothing to change, yet it must
/// close the pending record (it said `no changes` and left revision 2
/// pending for ever, and revision 1 deployed with objects that are gone).
#[tokio::test]
async fn a_sync_killed_when_only_its_deletions_were_left_is_closed_by_the_next_one() {
    with_namespace("sync-crash-closed", |client, ns| async move {
        // Revision 2 drops only the Roles.
        let dir = kill_a_sync_mid_prune(&client, &ns, 5, 5).await;

        let out = sync(
            dir.path(),
            &ns,
            &["--prune", "--no-wait", "--lock-timeout", "90s"],
            0,
        );
        assert!(
            out.contains("revision 3 deployed: 0 created, 0 updated, 0 deleted, 5 unchanged"),
            "{out}"
        );
        assert!(out.contains("left its revision pending"), "{out}");
        let cm: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
        assert_eq!(labelled(&cm).await, live_configmaps(5));
        assert_the_killed_revision_is_closed(&client, &ns).await;

        // Closed: the next sync changes nothing and writes nothing.
        let out = sync(dir.path(), &ns, &["--prune", "--no-wait"], 0);
        assert!(out.contains("no changes"), "{out}");
        assert_eq!(revisions(&client, &ns).await.len(), 3);
    })
    .await;
}
