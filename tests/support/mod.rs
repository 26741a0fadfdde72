//! Test support: a real Kubernetes API server and throwaway namespaces.
//!
//! The cluster is the local control plane from `deploy/local/` (brought up on
//! demand, or reused when it is already up: `control-plane.sh up` is idempotent
//! and serialises concurrent callers with a lock, so every test binary shares
//! one), or any cluster named by `WINDLASS_TEST_KUBECONFIG`.
//!
//! Each test works in its own namespace through [`with_namespace`], which
//! deletes the namespace afterwards, also when the test fails.

#![allow(dead_code)] // each test binary uses a different part of this module

pub mod git;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{DeleteParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};

/// The kubeconfig of the cluster under test.
pub fn kubeconfig() -> &'static Path {
    static KUBECONFIG: OnceLock<PathBuf> = OnceLock::new();
    KUBECONFIG.get_or_init(|| {
        if let Some(path) = std::env::var_os("WINDLASS_TEST_KUBECONFIG") {
            return PathBuf::from(path);
        }
        local_control_plane_up()
    })
}

fn local_control_plane_up() -> PathBuf {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/local/control-plane.sh");
    let output = Command::new("bash")
        .arg(&script)
        .arg("up")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let kubeconfig = stdout
        .lines()
        .last()
        .and_then(|line| line.strip_prefix("KUBECONFIG="));
    match (output.status.success(), kubeconfig) {
        (true, Some(path)) => PathBuf::from(path),
        _ => panic!(
            "the local control plane did not come up ({}).\n\
             Integration tests need a Kubernetes API server: run the README's test command \
             (deploy/local/test.sh), which installs the prerequisites and builds the control \
             plane, or point WINDLASS_TEST_KUBECONFIG at another cluster.\n\
             --- control-plane.sh up: stdout ---\n{stdout}\n--- stderr ---\n{stderr}",
            output.status
        ),
    }
}

/// A fresh client for the cluster under test. Clients are not shared between
/// tests: each `#[tokio::test]` has its own runtime.
pub async fn client() -> Client {
    let path = kubeconfig();
    let kubeconfig = Kubeconfig::read_from(path)
        .unwrap_or_else(|e| panic!("cannot read kubeconfig {}: {e}", path.display()));
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap_or_else(|e| panic!("kubeconfig {} is not usable: {e}", path.display()));
    Client::try_from(config).expect("building a kube client")
}

/// Runs `body` with a client and a new namespace named `wl-<purpose>-<suffix>`,
/// then deletes the namespace, whether the body passed or panicked.
pub async fn with_namespace<F, Fut>(purpose: &str, body: F)
where
    F: FnOnce(Client, String) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let client = client().await;
    let namespace = create_namespace(&client, purpose).await;
    let outcome = tokio::spawn(body(client.clone(), namespace.clone())).await;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    // Deletion finishes in the background; tests do not wait for it.
    let _ = namespaces
        .delete(&namespace, &DeleteParams::default())
        .await;
    release_windlass_finalizers(&client, &namespace).await;
    if let Err(error) = outcome {
        std::panic::resume_unwind(error.into_panic());
    }
}

/// Removes the finalizers of the Applications and Previews left in a
/// namespace being deleted: the controller a test started is gone with the
/// test, and would otherwise hold the namespace Terminating for ever.
async fn release_windlass_finalizers(client: &Client, namespace: &str) {
    use kube::api::{DynamicObject, ListParams, Patch, PatchParams};
    use kube::core::{ApiResource, GroupVersionKind};
    let patch = serde_json::json!({ "metadata": { "finalizers": null } });
    for kind in ["Application", "Preview"] {
        let resource =
            ApiResource::from_gvk(&GroupVersionKind::gvk("windlass.dev", "v1alpha1", kind));
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &resource);
        // No such CRD (a test that installs none): nothing to release.
        let Ok(list) = api.list(&ListParams::default()).await else {
            continue;
        };
        for object in list.items {
            let Some(name) = object.metadata.name else {
                continue;
            };
            let _ = api
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await;
        }
    }
}

/// Creates a namespace with a server-generated unique name.
pub async fn create_namespace(client: &Client, purpose: &str) -> String {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let namespace: Namespace = serde_json::from_value(serde_json::json!({
        "metadata": {
            "generateName": format!("wl-{purpose}-"),
            "labels": { "windlass.dev/test": "true" },
        }
    }))
    .expect("namespace literal");
    let created = namespaces
        .create(&PostParams::default(), &namespace)
        .await
        .unwrap_or_else(|e| panic!("creating a test namespace: {e}"));
    created.metadata.name.expect("server-generated name")
}

/// Polls `check` every 250 ms until it returns `Some`, or panics after
/// `limit` with `what` and the last state `check` described. A guard against
/// hanging, not a timing assertion: limits are generous.
pub async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let started = Instant::now();
    loop {
        match check().await {
            Ok(value) => return value,
            Err(state) if started.elapsed() > limit => {
                panic!("{what} did not happen within {limit:?}; last state: {state}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}

/// The `windlass` binary under test, pointed at the cluster under test.
pub fn windlass() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_windlass"));
    command.arg("--kubeconfig").arg(kubeconfig());
    command
}

/// Writes `files` (relative path, content) under `root`.
pub fn write_files(root: &Path, files: &[(&str, &str)]) {
    for (path, content) in files {
        let full = root.join(path);
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(full, content).unwrap();
    }
}

/// A ConfigMap manifest with one key.
pub fn configmap(name: &str, value: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  value: \"{value}\"\n"
    )
}

/// stdout and stderr of a finished command, together.
pub fn output_text(output: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Runs the windlass binary against the cluster under test and asserts its
/// exit code; returns its output.
pub fn windlass_expect(args: &[&str], code: i32) -> String {
    let output = windlass().args(args).output().unwrap();
    let text = output_text(&output);
    assert_eq!(
        output.status.code(),
        Some(code),
        "windlass {args:?}:\n{text}"
    );
    text
}

/// Runs the kubectl that `deploy/local/control-plane.sh` builds against the
/// cluster under test.
pub fn kubectl(args: &[&str]) -> std::process::Output {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/local/control-plane.sh");
    Command::new("bash")
        .arg(&script)
        .arg("kubectl")
        // Given twice (the script passes the local admin kubeconfig), the
        // last --kubeconfig wins: the cluster under test.
        .arg("--kubeconfig")
        .arg(kubeconfig())
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()))
}

/// Installs windlass's CRDs (Application and Preview) by server-side apply as
/// `field_manager`, and waits until both are served.
pub async fn install_crds(client: &Client, field_manager: &str) {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    use kube::CustomResourceExt;
    use kube::api::{ListParams, Patch, PatchParams};
    use windlass::spec::{Application, Preview};
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in [Application::crd(), Preview::crd()] {
        let name = crd.metadata.name.clone().unwrap_or_default();
        api.patch(
            &name,
            &PatchParams::apply(field_manager).force(),
            &Patch::Apply(&crd),
        )
        .await
        .unwrap_or_else(|e| panic!("installing the CRD {name}: {e}"));
    }
    eventually(
        "windlass's CRDs to be served",
        Duration::from_secs(90),
        || {
            let client = client.clone();
            async move {
                let applications: Api<Application> = Api::all(client.clone());
                let previews: Api<Preview> = Api::all(client);
                let one = ListParams::default().limit(1);
                applications.list(&one).await.map_err(|e| e.to_string())?;
                previews.list(&one).await.map_err(|e| e.to_string())?;
                Ok(())
            }
        },
    )
    .await;
}

/// The environment variables through which windlass finds kustomize and helm.
pub const KUSTOMIZE_BIN_ENV: &str = "WINDLASS_KUSTOMIZE_BIN";
pub const HELM_BIN_ENV: &str = "WINDLASS_HELM_BIN";

/// The kustomize and helm binaries: from those variables, else built by
/// `deploy/local/tools.sh build` (idempotent; it prints their paths).
pub fn tool_binaries() -> &'static (PathBuf, PathBuf) {
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
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/local/tools.sh");
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
