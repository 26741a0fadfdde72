//! Kustomize and Helm applications end to end, through the `windlass`
//! binary, the real kustomize and helm binaries (the pinned versions
//! `deploy/local/tools.sh build` builds) and the real local control plane:
//! `windlass render` hands on exactly what the tool rendered, then `diff`
//! shows the changes, `sync` applies them, and `diff` is clean; then a
//! changed source is synced with prune (a renamed generated ConfigMap, a
//! disabled subchart), `history` lists both revisions, and `rollback`
//! restores revision 1 so exactly that its source diffs clean.
//!
//! The binaries come from `WINDLASS_KUSTOMIZE_BIN` / `WINDLASS_HELM_BIN`
//! when they are set, else from `tools.sh build` (idempotent, cached; the
//! first run builds them, which needs Go), and are passed to windlass
//! through the same variables.

mod support;

use std::path::Path;
use std::process::{Command, Output};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;
use kube::api::DeleteParams;
use serde_json::Value;
use support::git::TempDir;
use support::with_namespace;
use windlass::render::canonical_json;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `windlass ARGS...` against the cluster under test, with the tools; asserts
/// the exit code and returns stdout and stderr.
fn windlass(args: &[&str], code: i32) -> (String, String) {
    let (kustomize, helm) = support::tool_binaries();
    let output = support::windlass()
        .env(support::KUSTOMIZE_BIN_ENV, kustomize)
        .env(support::HELM_BIN_ENV, helm)
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
            &support::tool_binaries().0,
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
            &support::tool_binaries().1,
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

/// `windlass ARGS... --dir DIR -n NS --name app EXTRA...`.
/// Revision 2 of a changed source: `diff` shows `plan` (exit 1), `sync
/// --prune` deploys it as `deployed` and deletes the ConfigMaps `deleted`,
/// and a second `diff` finds all `objects` unchanged.
fn sync_with_prune(
    dir: &Path,
    ns: &str,
    env: &[&str],
    plan: &str,
    deployed: &str,
    deleted: &[&str],
    objects: usize,
) {
    let out = on_source("diff", dir, ns, env, 1);
    assert!(out.contains(plan), "{out}");
    let mut args = env.to_vec();
    args.extend(["--prune", "--no-wait"]);
    let out = on_source("sync", dir, ns, &args, 0);
    assert!(
        out.contains(&format!("revision 2 deployed: {deployed}")),
        "{out}"
    );
    for name in deleted {
        assert!(
            out.contains(&format!("deleted v1 ConfigMap {ns}/{name}")),
            "{out}"
        );
    }
    assert_clean_diff(dir, ns, env, objects);
}

/// `diff` finds all `objects` unchanged (exit 0).
fn assert_clean_diff(dir: &Path, ns: &str, env: &[&str], objects: usize) {
    let out = on_source("diff", dir, ns, env, 0);
    assert!(
        out.contains(&format!(
            "0 to create, 0 to update, 0 to delete, {objects} unchanged"
        )),
        "{out}"
    );
}

/// After `rollback app 1` of revision 2: the history tells it.
fn assert_rolled_back_to_1(ns: &str) {
    let rows = history_rows(ns);
    assert_eq!(
        statuses(&rows),
        [(1, "superseded"), (2, "rolled-back"), (3, "deployed")]
    );
    assert_eq!(rows[2].2, "rollback to 1", "{rows:?}");
}

fn on_source(verb: &str, dir: &Path, ns: &str, extra: &[&str], code: i32) -> String {
    let mut args = vec![
        verb,
        "--dir",
        dir.to_str().unwrap(),
        "-n",
        ns,
        "--name",
        "app",
    ];
    args.extend_from_slice(extra);
    let (out, err) = windlass(&args, code);
    format!("{out}{err}")
}

/// (revision, status, description) rows of `windlass history app -n NS`,
/// oldest first.
fn history_rows(ns: &str) -> Vec<(u64, String, String)> {
    let (table, _) = windlass(&["history", "app", "-n", ns], 0);
    let mut lines = table.lines();
    let header = lines.next().unwrap_or_default();
    assert!(header.starts_with("REVISION"), "{table}");
    // Columns are padded by characters (a long SOURCE holds a `…`).
    let description_at = header.find("DESCRIPTION").expect(&table);
    let mut rows: Vec<(u64, String, String)> = lines
        .map(|line| {
            // REVISION, UPDATED (date and time), STATUS, ...
            let fields: Vec<&str> = line.split_whitespace().collect();
            let description: String = line.chars().skip(description_at).collect();
            (
                fields[0].parse().expect(line),
                fields[3].to_string(),
                description.trim().to_string(),
            )
        })
        .collect();
    rows.sort();
    rows
}

/// The (revision, status) pairs of `rows`.
fn statuses(rows: &[(u64, String, String)]) -> Vec<(u64, &str)> {
    rows.iter()
        .map(|(number, status, _)| (*number, status.as_str()))
        .collect()
}

/// The name of the one `kind` object of `objects` whose name starts with
/// `prefix` (a generated, hash-suffixed name).
fn generated_name(objects: &[Value], kind: &str, prefix: &str) -> String {
    let names: Vec<&str> = objects
        .iter()
        .filter(|o| o["kind"] == kind)
        .filter_map(|o| o["metadata"]["name"].as_str())
        .filter(|name| name.starts_with(prefix))
        .collect();
    assert_eq!(names.len(), 1, "{kind} {prefix}*: {names:?}");
    names[0].to_string()
}

#[tokio::test]
async fn a_kustomize_overlay_prunes_a_renamed_generated_config_map_and_rolls_back() {
    with_namespace("sync-kustomize-history", |client, ns| async move {
        let dir = TempDir::new("sync-kustomize-history");
        copy_tree(&repo().join("tests/fixtures/kustomize"), dir.path());
        let overlay = dir.path().join("overlays/production/kustomization.yaml");
        edit(
            &overlay,
            "namespace: production",
            &format!("namespace: {ns}"),
        );
        let first_source = std::fs::read_to_string(&overlay).unwrap();
        let env = ["--env", "production"];
        let render = || {
            rendered(&[
                dir.path().to_str().unwrap(),
                "-n",
                &ns,
                "--env",
                "production",
            ])
        };

        // Revision 1: the overlay as it is.
        let first = render();
        let old_config = generated_name(&first, "ConfigMap", "prod-web-config-");
        diff_sync_diff(dir.path(), &ns, &env, 5);

        // Revision 2: a generator literal changes (a new hash suffix, and the
        // Deployment's reference rewritten to it); the component is dropped
        // (its ConfigMap disappears, its Deployment patch with it).
        edit(&overlay, "LOG_LEVEL=warn", "LOG_LEVEL=debug");
        edit(
            &overlay,
            "components:\n  - ../../components/monitoring\n",
            "",
        );
        let second = render();
        let new_config = generated_name(&second, "ConfigMap", "prod-web-config-");
        assert_ne!(old_config, new_config, "a new literal, a new hash suffix");
        assert_eq!(second.len(), 4, "{second:#?}");
        sync_with_prune(
            dir.path(),
            &ns,
            &env,
            "1 to create, 1 to update, 2 to delete, 2 unchanged",
            "1 created, 1 updated, 2 deleted, 2 unchanged",
            &[old_config.as_str(), "prod-metrics"],
            4,
        );

        let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
        // What the Deployment's containers take their environment from, and
        // its Pod template's annotations.
        let deployment_view = || {
            let deployments = deployments.clone();
            async move {
                let deployment = deployments.get("prod-web").await.unwrap();
                let template = deployment.spec.template;
                let container = template.spec.unwrap().containers.remove(0);
                let config = container.env_from.unwrap()[0]
                    .config_map_ref
                    .clone()
                    .unwrap()
                    .name;
                let annotations = template
                    .metadata
                    .and_then(|m| m.annotations)
                    .unwrap_or_default();
                (config, annotations)
            }
        };
        assert!(
            configmaps.get_opt(&old_config).await.unwrap().is_none(),
            "the old generated ConfigMap is pruned"
        );
        assert!(
            configmaps.get_opt("prod-metrics").await.unwrap().is_none(),
            "the component's ConfigMap is pruned"
        );
        let config = configmaps.get(&new_config).await.unwrap();
        assert_eq!(config.data.unwrap()["LOG_LEVEL"], "debug");
        let (reference, annotations) = deployment_view().await;
        assert_eq!(
            reference, new_config,
            "the Deployment points at the new ConfigMap"
        );
        assert!(
            !annotations.contains_key("prometheus.io/scrape"),
            "{annotations:?}"
        );

        assert_eq!(
            statuses(&history_rows(&ns)),
            [(1, "superseded"), (2, "deployed")]
        );

        // Rollback to revision 1: its objects, exactly, and what revision 2
        // added is pruned; recorded as revision 3.
        let (out, err) = windlass(&["rollback", "app", "1", "-n", &ns, "--no-wait"], 0);
        let out = format!("{out}{err}");
        assert!(out.contains("rolling back"), "{out}");
        assert!(
            out.contains(&format!("deleted v1 ConfigMap {ns}/{new_config}")),
            "{out}"
        );
        assert!(out.contains("revision 3 deployed"), "{out}");
        assert!(
            configmaps.get_opt(&new_config).await.unwrap().is_none(),
            "revision 2's ConfigMap is pruned"
        );
        let config = configmaps.get(&old_config).await.unwrap();
        assert_eq!(config.data.unwrap()["LOG_LEVEL"], "warn");
        assert!(configmaps.get_opt("prod-metrics").await.unwrap().is_some());
        let (reference, annotations) = deployment_view().await;
        assert_eq!(
            reference, old_config,
            "the Deployment points at the old ConfigMap again"
        );
        assert_eq!(annotations["prometheus.io/scrape"], "true");
        assert_rolled_back_to_1(&ns);

        // Revision 1's source again: nothing to do.
        std::fs::write(&overlay, first_source).unwrap();
        assert_eq!(object_set(&render()), object_set(&first));
        assert_clean_diff(dir.path(), &ns, &env, 5);
    })
    .await;
}

#[tokio::test]
async fn a_helm_chart_prunes_a_disabled_subchart_and_rolls_back() {
    with_namespace("sync-helm-history", |client, ns| async move {
        // The CRD in a group of this test's own: CRDs are cluster-wide.
        let group = format!("{ns}.example.com");
        let dir = TempDir::new("sync-helm-history");
        copy_tree(&repo().join("tests/fixtures/helm/web"), dir.path());
        let crd_file = dir.path().join("crds/widgets.yaml");
        edit(
            &crd_file,
            "name: widgets.example.com",
            &format!("name: widgets.{group}"),
        );
        edit(&crd_file, "group: example.com", &format!("group: {group}"));
        let crd_name = format!("widgets.{group}");
        // The subchart can be switched off by a value, as charts do.
        edit(
            &dir.path().join("Chart.yaml"),
            "  - name: cache\n    version: 0.1.0\n",
            "  - name: cache\n    version: 0.1.0\n    condition: cache.enabled\n",
        );
        let values = dir.path().join("values/production.yaml");
        let first_values = std::fs::read_to_string(&values).unwrap();
        let env = ["--env", "production"];
        let render = || {
            rendered(&[
                dir.path().to_str().unwrap(),
                "-n",
                &ns,
                "--env",
                "production",
                "--name",
                "app",
            ])
        };

        // Revision 1: CRD, Deployment, Service, two ConfigMaps.
        let first = render();
        assert_eq!(first.len(), 5, "{first:#?}");
        diff_sync_diff(dir.path(), &ns, &env, 5);

        // Revision 2: the subchart disabled (its ConfigMap disappears), the
        // Deployment scaled.
        edit(&values, "replicaCount: 3", "replicaCount: 5");
        edit(
            &values,
            "cache:\n  size: 1024",
            "cache:\n  enabled: false\n  size: 1024",
        );
        let second = render();
        assert_eq!(second.len(), 4, "{second:#?}");
        assert!(
            !second.iter().any(|o| o["metadata"]["name"] == "app-cache"),
            "{second:#?}"
        );
        sync_with_prune(
            dir.path(),
            &ns,
            &env,
            "0 to create, 1 to update, 1 to delete, 3 unchanged",
            "0 created, 1 updated, 1 deleted, 3 unchanged",
            &["app-cache"],
            4,
        );

        let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
        let replicas = || {
            let deployments = deployments.clone();
            async move { deployments.get("app-web").await.unwrap().spec.replicas }
        };
        assert!(
            configmaps.get_opt("app-cache").await.unwrap().is_none(),
            "the subchart's ConfigMap is pruned"
        );
        assert_eq!(replicas().await, Some(5));
        assert!(configmaps.get_opt("app-web-info").await.unwrap().is_some());
        let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
        assert!(crds.get_opt(&crd_name).await.unwrap().is_some());

        assert_eq!(
            statuses(&history_rows(&ns)),
            [(1, "superseded"), (2, "deployed")]
        );

        // Rollback to revision 1, recorded as revision 3.
        let (out, err) = windlass(&["rollback", "app", "1", "-n", &ns, "--no-wait"], 0);
        let out = format!("{out}{err}");
        assert!(out.contains("rolling back"), "{out}");
        assert!(
            out.contains("revision 3 deployed: 1 created, 1 updated, 0 deleted, 3 unchanged"),
            "{out}"
        );
        let cache = configmaps.get("app-cache").await.unwrap();
        assert_eq!(cache.data.unwrap()["size"], "1024");
        assert_eq!(replicas().await, Some(3));
        assert_rolled_back_to_1(&ns);

        // Revision 1's source again: nothing to do.
        std::fs::write(&values, first_values).unwrap();
        assert_eq!(object_set(&render()), object_set(&first));
        assert_clean_diff(dir.path(), &ns, &env, 5);

        crds.delete(&crd_name, &DeleteParams::default())
            .await
            .unwrap();
    })
    .await;
}
