//! Kustomize and Helm applications end to end, through the `windlass`
//! binary, the real kustomize and helm binaries (the pinned versions
//! `deploy/local/tools.sh build` builds) and the real local control plane:
//! `windlass render` hands on exactly what the tool rendered, then `diff`
//! shows the changes, `sync` applies them, and `diff` is clean.
//!
//! The binaries come from `WINDLASS_KUSTOMIZE_BIN` / `WINDLASS_HELM_BIN`
//! when they are set, else from `tools.sh build` (idempotent, cached; the
//! first run builds them, which needs Go), and are passed to windlass
//! through the same variables.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;
use kube::api::DeleteParams;
use serde_json::Value;
use support::git::TempDir;
use support::with_namespace;
use windlass::render::canonical_json;

const KUSTOMIZE_BIN_ENV: &str = "WINDLASS_KUSTOMIZE_BIN";
const HELM_BIN_ENV: &str = "WINDLASS_HELM_BIN";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The kustomize and helm binaries: from the environment, else built.
fn tools() -> &'static (PathBuf, PathBuf) {
    static TOOLS: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    TOOLS.get_or_init(|| {
        let given = |var: &str| {
            std::env::var_os(var)
                .map(PathBuf::from)
                .filter(|path| path.is_file())
        };
        if let (Some(kustomize), Some(helm)) = (given(KUSTOMIZE_BIN_ENV), given(HELM_BIN_ENV)) {
            return (kustomize, helm);
        }
        let script = repo().join("deploy/local/tools.sh");
        let output = Command::new(&script)
            .arg("build")
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "deploy/local/tools.sh build failed (it needs Go 1.26; deploy/local/prerequisites.sh \
             installs it), or set {KUSTOMIZE_BIN_ENV} and {HELM_BIN_ENV}:\n{stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let built = |name: &str| {
            stdout
                .lines()
                .find(|line| line.ends_with(&format!("/{name}")))
                .map(PathBuf::from)
                .unwrap_or_else(|| panic!("tools.sh build printed no {name}:\n{stdout}"))
        };
        (built("kustomize"), built("helm"))
    })
}

/// `windlass ARGS...` against the cluster under test, with the tools; asserts
/// the exit code and returns stdout and stderr.
fn windlass(args: &[&str], code: i32) -> (String, String) {
    let (kustomize, helm) = tools();
    let output = support::windlass()
        .env(KUSTOMIZE_BIN_ENV, kustomize)
        .env(HELM_BIN_ENV, helm)
        .args(args)
        .output()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(code),
        "windlass {args:?}:\n{}",
        support::output_text(&output)
    );
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A tool run directly; its stdout parsed as YAML by an independent reader.
fn direct(binary: &Path, args: &[&str]) -> Vec<Value> {
    let output: Output = Command::new(binary).args(args).output().unwrap();
    assert!(
        output.status.success(),
        "{} {args:?}: {}",
        binary.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).unwrap();
    let documents: Vec<Value> = serde_saphyr::from_multiple(&text).unwrap();
    documents.into_iter().filter(|d| !d.is_null()).collect()
}

/// `windlass render -o json` objects.
fn rendered(args: &[&str]) -> Vec<Value> {
    let mut all = vec!["render", "-o", "json", "--show-secrets"];
    all.extend_from_slice(args);
    let (stdout, _) = windlass(&all, 0);
    let list: Value = serde_json::from_str(&stdout).unwrap();
    list["items"].as_array().unwrap().clone()
}

/// Objects as a comparable set: windlass's own labels and annotations taken
/// out, each object as canonical JSON (keys sorted), sorted.
fn object_set(objects: &[Value]) -> Vec<String> {
    let mut set: Vec<String> = objects
        .iter()
        .map(|object| {
            let mut object = object.clone();
            for field in ["labels", "annotations"] {
                let Some(Value::Object(map)) = object["metadata"].get_mut(field) else {
                    continue;
                };
                map.retain(|key, value| {
                    let ours = key.starts_with("windlass.dev/")
                        || (key == "app.kubernetes.io/managed-by" && value == "windlass");
                    !ours
                });
                if map.is_empty() {
                    object["metadata"].as_object_mut().unwrap().remove(field);
                }
            }
            canonical_json(&object)
        })
        .collect();
    set.sort();
    set
}

/// Copies the directory `from` to `to`.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// Replaces `from` by `to` in the file at `path`, which must hold it.
fn edit(path: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.contains(from), "{} lacks {from:?}", path.display());
    std::fs::write(path, text.replace(from, to)).unwrap();
}

/// diff (changes), sync, diff (clean) of `--dir DIR -n NS --name app EXTRA`.
fn diff_sync_diff(dir: &Path, ns: &str, extra: &[&str], objects: usize) {
    let mut args = vec!["--dir", dir.to_str().unwrap(), "-n", ns, "--name", "app"];
    args.extend_from_slice(extra);
    let with = |verb: &'static str, more: &[&'static str]| {
        let mut all = vec![verb];
        all.extend_from_slice(&args);
        all.extend_from_slice(more);
        all
    };
    let (out, err) = windlass(&with("diff", &[]), 1);
    assert!(
        out.contains(&format!(
            "{objects} to create, 0 to update, 0 to delete, 0 unchanged"
        )),
        "{out}{err}"
    );
    let (out, err) = windlass(&with("sync", &["--no-wait"]), 0);
    assert!(
        format!("{out}{err}").contains(&format!("{objects} created, 0 updated, 0 deleted")),
        "{out}{err}"
    );
    let (out, err) = windlass(&with("diff", &[]), 0);
    assert!(
        out.contains(&format!(
            "0 to create, 0 to update, 0 to delete, {objects} unchanged"
        )),
        "{out}{err}"
    );
}

#[tokio::test]
async fn a_kustomize_overlay_renders_diffs_and_syncs() {
    with_namespace("sync-kustomize", |client, ns| async move {
        // The fixture, its production overlay aimed at the test namespace.
        let dir = TempDir::new("sync-kustomize");
        copy_tree(&repo().join("tests/fixtures/kustomize"), dir.path());
        edit(
            &dir.path().join("overlays/production/kustomization.yaml"),
            "namespace: production",
            &format!("namespace: {ns}"),
        );

        let objects = rendered(&[
            dir.path().to_str().unwrap(),
            "-n",
            &ns,
            "--env",
            "production",
        ]);
        let overlay = dir.path().join("overlays/production");
        let expected = direct(
            &tools().0,
            &[
                "build",
                "--load-restrictor",
                "LoadRestrictionsRootOnly",
                overlay.to_str().unwrap(),
            ],
        );
        assert_eq!(object_set(&objects), object_set(&expected));
        // Deployment, Service, two ConfigMaps (one from the component), Secret.
        assert_eq!(objects.len(), 5, "{objects:#?}");

        diff_sync_diff(dir.path(), &ns, &["--env", "production"], 5);

        // Live: what kustomize built, under windlass's identity.
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
        let deployment = deployments.get("prod-web").await.unwrap();
        assert_eq!(deployment.spec.replicas, Some(3));
        let labels = deployment.metadata.labels.unwrap();
        assert_eq!(labels["windlass.dev/app"], format!("{ns}.app"));
        assert_eq!(labels["environment"], "production");
        let services: Api<Service> = Api::namespaced(client.clone(), &ns);
        let service = services.get("prod-web").await.unwrap();
        assert_eq!(service.spec.unwrap().ports.unwrap()[0].port, 443);
    })
    .await;
}

#[tokio::test]
async fn a_helm_chart_renders_diffs_and_syncs_without_its_hooks() {
    with_namespace("sync-helm", |client, ns| async move {
        // The fixture chart, its CRD in a group of this run's own (CRDs are
        // cluster-wide; the cluster is shared).
        let group = format!("t{:x}.example.com", std::process::id());
        let dir = TempDir::new("sync-helm");
        copy_tree(&repo().join("tests/fixtures/helm/web"), dir.path());
        let crd_file = dir.path().join("crds/widgets.yaml");
        edit(
            &crd_file,
            "name: widgets.example.com",
            &format!("name: widgets.{group}"),
        );
        edit(&crd_file, "group: example.com", &format!("group: {group}"));
        let crd_name = format!("widgets.{group}");

        let objects = rendered(&[
            dir.path().to_str().unwrap(),
            "-n",
            &ns,
            "--env",
            "production",
            "--name",
            "app",
        ]);
        let values = dir.path().join("values/production.yaml");
        let mut expected: Vec<Value> = direct(
            &tools().1,
            &[
                "template",
                "app",
                dir.path().to_str().unwrap(),
                "--namespace",
                &ns,
                "--include-crds",
                "-f",
                values.to_str().unwrap(),
            ],
        )
        .into_iter()
        .filter(|o| !o["metadata"]["annotations"]["helm.sh/hook"].is_string())
        .collect();
        // helm template leaves namespaces out; windlass fills in the
        // destination for every namespaced kind (all here but the CRD).
        for object in &mut expected {
            if object["kind"] != "CustomResourceDefinition"
                && object["metadata"]["namespace"].is_null()
            {
                object["metadata"]["namespace"] = Value::String(ns.clone());
            }
        }
        assert_eq!(object_set(&objects), object_set(&expected));
        // CRD, Deployment, Service, two ConfigMaps (one from the subchart);
        // the Job and the test Pod are hooks.
        assert_eq!(objects.len(), 5, "{objects:#?}");
        assert!(
            !objects
                .iter()
                .any(|o| o["kind"] == "Job" || o["kind"] == "Pod"),
            "{objects:#?}"
        );

        diff_sync_diff(dir.path(), &ns, &["--env", "production"], 5);

        let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
        let deployment = deployments.get("app-web").await.unwrap();
        assert_eq!(deployment.spec.replicas, Some(3));
        let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
        let cache = configmaps.get("app-cache").await.unwrap();
        assert_eq!(cache.data.unwrap()["size"], "1024");
        let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
        let crd = crds.get(&crd_name).await.unwrap();
        assert_eq!(
            crd.metadata.labels.unwrap()["windlass.dev/app"],
            format!("{ns}.app")
        );
        // Hooks are not run: no Job was created.
        let jobs: Api<k8s_openapi::api::batch::v1::Job> = Api::namespaced(client.clone(), &ns);
        assert!(jobs.get_opt("app-web-migrate").await.unwrap().is_none());

        crds.delete(&crd_name, &DeleteParams::default())
            .await
            .unwrap();
    })
    .await;
}
