//! The install manifests in `deploy/` (not `deploy/local/`, the development
//! control plane) against the real API server:
//!
//! ```text
//!   deploy/kustomization.yaml ──lists──► crds/…, namespace.yaml, rbac.yaml, …
//!   deploy/least-privilege/kustomization.yaml ──lists──► ../crds, team-a.yaml, …
//!        │                                   └─patches─► deployment-patch.yaml
//!        ▼
//!   every listed file exists, every YAML file is listed;
//!   every object file: kubectl apply --server-side --dry-run=server -f FILE;
//!   every kustomization: kubectl apply -k DIR --server-side --dry-run=server;
//!   the least-privilege variant grants no wildcard and watches one namespace.
//! ```
//!
//! Dry-run of a namespaced object needs its namespace, so the test really
//! creates `windlass-system` and `team-a` and really applies the Application
//! CRD (idempotent; like the control plane, they stay). Nothing else is
//! written. kubectl is the one `deploy/local/control-plane.sh` builds, with
//! the kubeconfig of the cluster under test.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Once;

use serde_json::{Value, json};

const FIELD_MANAGER: &str = "windlass-test-deploy";
const DRY_RUN_SUFFIX: &str = " serverside-applied (server dry run)";
/// The args deploy/deployment.yaml gives `windlass`.
const CONTROLLER_ARGS: [&str; 4] = ["controller", "--leader-elect", "--log-format", "json"];

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy")
}

/// `path` relative to the repository, for messages.
fn shown(path: &Path) -> String {
    path.strip_prefix(env!("CARGO_MANIFEST_DIR"))
        .unwrap_or(path)
        .display()
        .to_string()
}

fn kubectl(args: &[&str]) -> Output {
    support::kubectl(args)
}

/// Runs kubectl, asserts it succeeded, returns (stdout, stderr).
fn kubectl_ok(args: &[&str]) -> (String, String) {
    let output = kubectl(args);
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        output.status.success(),
        "kubectl {} failed ({}):\n{stdout}{stderr}",
        args.join(" "),
        output.status
    );
    (stdout, stderr)
}

/// The namespaces and the CRD the dry-runs need, made real once per run.
fn prepare_cluster() {
    static PREPARED: Once = Once::new();
    PREPARED.call_once(|| {
        let apply = ["apply", "--server-side", "--force-conflicts"];
        let manager = ["--field-manager", FIELD_MANAGER];
        kubectl_ok(&[&apply[..], &manager, &["-f", "deploy/namespace.yaml"]].concat());
        let output = kubectl(&["create", "namespace", "team-a"]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success() || stderr.contains("AlreadyExists"),
            "kubectl create namespace team-a: {stderr}"
        );
        let crd = "deploy/crds/applications.windlass.dev.yaml";
        kubectl_ok(&[&apply[..], &manager, &["-f", crd]].concat());
        kubectl_ok(&[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "customresourcedefinition/applications.windlass.dev",
        ]);
    });
}

/// The objects of a YAML file (empty documents skipped).
fn objects_in(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", shown(path)));
    let objects: Vec<Value> = serde_saphyr::from_multiple(&text)
        .unwrap_or_else(|e| panic!("{} is not valid YAML: {e}", shown(path)));
    for object in &objects {
        assert!(
            object["apiVersion"].is_string()
                && object["kind"].is_string()
                && object["metadata"]["name"].is_string(),
            "{}: every document must be an object with apiVersion, kind and metadata.name: {object}",
            shown(path)
        );
    }
    objects
}

/// How kubectl names an object in its output: `deployment.apps/web`.
fn kubectl_name(object: &Value) -> String {
    let api_version = object["apiVersion"].as_str().unwrap();
    let kind = object["kind"].as_str().unwrap().to_lowercase();
    let name = object["metadata"]["name"].as_str().unwrap();
    match api_version.split_once('/') {
        Some((group, _)) => format!("{kind}.{group}/{name}"),
        None => format!("{kind}/{name}"),
    }
}

/// A kustomization.yaml, as far as it names files.
struct Kustomization {
    dir: PathBuf,
    /// Files and directories under `resources`, resolved.
    resources: Vec<PathBuf>,
    /// Files under `patches[].path`, resolved.
    patches: Vec<PathBuf>,
}

impl Kustomization {
    fn read(dir: &Path) -> Kustomization {
        let path = dir.join("kustomization.yaml");
        let [document]: [Value; 1] = serde_saphyr::from_multiple::<Value>(
            &std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", shown(&path))),
        )
        .unwrap_or_else(|e| panic!("{} is not valid YAML: {e}", shown(&path)))
        .try_into()
        .unwrap_or_else(|_| panic!("{} must hold one document", shown(&path)));
        let known = ["apiVersion", "kind", "resources", "patches"];
        for key in document.as_object().expect("a mapping").keys() {
            assert!(
                known.contains(&key.as_str()),
                "{}: this test does not know which files `{key}` names; teach it",
                shown(&path)
            );
        }
        let resolve = |entry: &Value| {
            let entry = entry.as_str().expect("a path");
            let resolved = dir.join(entry);
            assert!(
                resolved.exists(),
                "{} lists `{entry}`, which does not exist",
                shown(&path)
            );
            resolved.canonicalize().unwrap()
        };
        let list = |key: &str| document[key].as_array().cloned().unwrap_or_default();
        let resources = list("resources").iter().map(resolve).collect();
        let patches = list("patches")
            .iter()
            .map(|patch| {
                assert!(
                    patch.get("patch").is_none(),
                    "{}: inline patches are not checked; use a file",
                    shown(&path)
                );
                resolve(&patch["path"])
            })
            .collect();
        Kustomization {
            dir: dir.to_path_buf(),
            resources,
            patches,
        }
    }

    /// Every object file this kustomization installs, through directories
    /// it lists too.
    fn object_files(&self) -> Vec<PathBuf> {
        let mut files = Vec::new();
        for resource in &self.resources {
            if resource.is_dir() {
                files.extend(Kustomization::read(resource).object_files());
            } else {
                files.push(resource.clone());
            }
        }
        files
    }
}

fn is_yaml(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml")
    )
}

/// Every directory under deploy/ except deploy/local/, deploy/ first.
fn deploy_dirs() -> Vec<PathBuf> {
    let mut dirs = vec![deploy_dir()];
    let mut next = 0;
    while next < dirs.len() {
        let mut children: Vec<PathBuf> = std::fs::read_dir(&dirs[next])
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.is_dir() && *path != deploy_dir().join("local"))
            .collect();
        children.sort();
        dirs.extend(children);
        next += 1;
    }
    dirs
}

fn yaml_files_in(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_file() && is_yaml(path))
        .collect();
    files.sort();
    files
}

fn kustomizations() -> Vec<Kustomization> {
    deploy_dirs()
        .iter()
        .filter(|dir| dir.join("kustomization.yaml").is_file())
        .map(|dir| Kustomization::read(dir))
        .collect()
}

/// Every YAML object file under deploy/: all YAML files but kustomizations
/// and patches.
fn object_files() -> Vec<PathBuf> {
    let patches: BTreeSet<PathBuf> = kustomizations()
        .into_iter()
        .flat_map(|k| k.patches)
        .collect();
    deploy_dirs()
        .iter()
        .flat_map(|dir| yaml_files_in(dir))
        .filter(|file| file.file_name().unwrap() != "kustomization.yaml")
        .filter(|file| !patches.contains(&file.canonicalize().unwrap()))
        .collect()
}

#[test]
fn every_kustomization_lists_existing_files_and_every_yaml_file_is_listed() {
    let kustomizations = kustomizations();
    let dirs: Vec<String> = kustomizations.iter().map(|k| shown(&k.dir)).collect();
    for expected in ["deploy", "deploy/least-privilege"] {
        assert!(dirs.iter().any(|d| d == expected), "{expected}: {dirs:?}");
    }
    // Existence is checked as each kustomization is read.
    let mut listed = BTreeSet::new();
    for kustomization in &kustomizations {
        for resource in &kustomization.resources {
            if resource.is_dir() {
                assert!(
                    resource.join("kustomization.yaml").is_file(),
                    "{} lists the directory {}, which has no kustomization.yaml",
                    shown(&kustomization.dir),
                    shown(resource)
                );
            }
        }
        listed.extend(kustomization.resources.iter().cloned());
        listed.extend(kustomization.patches.iter().cloned());
        // Every YAML file next to a kustomization.yaml is one of its
        // resources or patches: a file it forgets is never installed.
        for file in yaml_files_in(&kustomization.dir) {
            if file.file_name().unwrap() == "kustomization.yaml" {
                continue;
            }
            let file = file.canonicalize().unwrap();
            assert!(
                kustomization.resources.contains(&file) || kustomization.patches.contains(&file),
                "{} is not listed in {}/kustomization.yaml",
                shown(&file),
                shown(&kustomization.dir)
            );
        }
    }
    // And none anywhere under deploy/ is left out of every kustomization.
    for dir in deploy_dirs() {
        for file in yaml_files_in(&dir) {
            if file.file_name().unwrap() != "kustomization.yaml" {
                assert!(
                    listed.contains(&file.canonicalize().unwrap()),
                    "no kustomization lists {}",
                    shown(&file)
                );
            }
        }
    }
}

#[test]
fn every_object_file_passes_server_side_dry_run() {
    prepare_cluster();
    let files = object_files();
    assert!(files.len() >= 10, "too few object files found: {files:?}");
    for file in files {
        let objects = objects_in(&file);
        assert!(!objects.is_empty(), "{} holds no object", shown(&file));
        let path = file.to_str().unwrap();
        let (stdout, stderr) = kubectl_ok(&[
            "apply",
            "--server-side",
            "--dry-run=server",
            "--force-conflicts",
            "--field-manager",
            FIELD_MANAGER,
            "-f",
            path,
        ]);
        let expected: BTreeSet<String> = objects
            .iter()
            .map(|o| format!("{}{DRY_RUN_SUFFIX}", kubectl_name(o)))
            .collect();
        let reported: BTreeSet<String> = stdout.lines().map(str::to_owned).collect();
        assert_eq!(reported, expected, "{}:\n{stdout}{stderr}", shown(&file));
        // No warning: Pod Security (windlass-system enforces and warns
        // "restricted"), deprecated APIs, unknown fields. The CRD is
        // generated by `windlass crd` and checked elsewhere.
        if !path.ends_with("applications.windlass.dev.yaml") {
            assert!(!stderr.contains("Warning"), "{}: {stderr}", shown(&file));
        }
    }
}

/// `kubectl apply -k DIR` as a server-side dry-run; asserts that it reports
/// exactly the objects of the files the kustomization installs.
fn dry_run_kustomization(dir: &str) {
    let path = deploy_dir().join(dir);
    let (stdout, stderr) = kubectl_ok(&[
        "apply",
        "-k",
        path.to_str().unwrap(),
        "--server-side",
        "--dry-run=server",
        "--force-conflicts",
        "--field-manager",
        FIELD_MANAGER,
    ]);
    let expected: BTreeSet<String> = Kustomization::read(&path)
        .object_files()
        .iter()
        .flat_map(|file| objects_in(file))
        .map(|o| format!("{}{DRY_RUN_SUFFIX}", kubectl_name(&o)))
        .collect();
    let reported: BTreeSet<String> = stdout.lines().map(str::to_owned).collect();
    assert_eq!(
        reported, expected,
        "kubectl apply -k {dir}:\n{stdout}{stderr}"
    );
    assert!(!stderr.contains("PodSecurity"), "{dir}: {stderr}");
}

#[test]
fn the_default_install_passes_server_side_dry_run() {
    prepare_cluster();
    dry_run_kustomization(".");
}

#[test]
fn the_least_privilege_install_passes_server_side_dry_run() {
    prepare_cluster();
    dry_run_kustomization("least-privilege");
}

/// The objects `kubectl kustomize DIR` builds, by "Kind/name" or
/// "Kind/namespace/name".
fn built(dir: &str) -> BTreeMap<String, Value> {
    let path = deploy_dir().join(dir);
    let (stdout, _) = kubectl_ok(&["kustomize", path.to_str().unwrap()]);
    let objects: Vec<Value> = serde_saphyr::from_multiple(&stdout).unwrap();
    let mut built = BTreeMap::new();
    for object in objects {
        let kind = object["kind"].as_str().unwrap();
        let name = object["metadata"]["name"].as_str().unwrap();
        let key = match object["metadata"]["namespace"].as_str() {
            Some(namespace) => format!("{kind}/{namespace}/{name}"),
            None => format!("{kind}/{name}"),
        };
        assert!(built.insert(key.clone(), object).is_none(), "{key} twice");
    }
    built
}

const DEPLOYMENT: &str = "Deployment/windlass-system/windlass-controller";

fn container_args(deployment: &Value) -> Vec<&str> {
    deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .expect("args")
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect()
}

fn rules(objects: &BTreeMap<String, Value>) -> Vec<(&String, &Value)> {
    objects
        .iter()
        .filter(|(key, _)| key.starts_with("Role/") || key.starts_with("ClusterRole/"))
        .flat_map(|(key, role)| {
            role["rules"]
                .as_array()
                .unwrap()
                .iter()
                .map(move |r| (key, r))
        })
        .collect()
}

#[test]
fn the_default_install_grants_all_verbs_on_all_resources() {
    let objects = built(".");
    let wildcard = json!({ "apiGroups": ["*"], "resources": ["*"], "verbs": ["*"] });
    let role = &objects["ClusterRole/windlass-controller"];
    assert!(
        role["rules"].as_array().unwrap().contains(&wildcard),
        "{role}"
    );
    let deployment = &objects[DEPLOYMENT];
    assert_eq!(container_args(deployment), CONTROLLER_ARGS);
    let image = deployment["spec"]["template"]["spec"]["containers"][0]["image"].clone();
    assert_eq!(
        image,
        json!(format!(
            "ghcr.io/windlass-dev/windlass:{}",
            env!("CARGO_PKG_VERSION")
        )),
        "the Deployment runs the image of this version"
    );
}

#[test]
fn the_least_privilege_install_has_no_wildcard_and_watches_one_namespace() {
    let objects = built("least-privilege");
    let rules = rules(&objects);
    assert!(rules.len() >= 8, "{rules:?}");
    for (role, rule) in &rules {
        for field in ["apiGroups", "resources", "verbs", "nonResourceURLs"] {
            let values = rule[field].as_array().cloned().unwrap_or_default();
            assert!(!values.contains(&json!("*")), "{role}: {rule}");
        }
        // Cluster-wide, windlass only reads.
        if role.starts_with("ClusterRole/") {
            for verb in rule["verbs"].as_array().unwrap() {
                assert!(
                    ["get", "list", "watch"].contains(&verb.as_str().unwrap()),
                    "{role}: {rule}"
                );
            }
        }
    }
    assert!(
        !objects.contains_key("ClusterRole/windlass-controller"),
        "{:?}",
        objects.keys()
    );
    for (key, binding) in &objects {
        if key.starts_with("RoleBinding/") || key.starts_with("ClusterRoleBinding/") {
            assert_eq!(
                binding["subjects"],
                json!([{ "kind": "ServiceAccount", "name": "windlass", "namespace": "windlass-system" }]),
                "{key}"
            );
        }
    }
    let deployment = &objects[DEPLOYMENT];
    let mut args = CONTROLLER_ARGS.to_vec();
    args.push("--watch-namespace=team-a");
    assert_eq!(container_args(deployment), args);
}

#[test]
fn the_controller_accepts_the_deployments_arguments() {
    // The least-privilege Deployment has every flag the default one has.
    let objects = built("least-privilege");
    let mut args = container_args(&objects[DEPLOYMENT]);
    // clap checks every argument before it acts on --help: an unknown flag
    // or a bad value exits 2 instead of printing the help.
    args.push("--help");
    let output = Command::new(env!("CARGO_BIN_EXE_windlass"))
        .args(&args)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "windlass {}:\n{}",
        args.join(" "),
        support::output_text(&output)
    );
    // The cache directory comes from the environment.
    let env = &objects[DEPLOYMENT]["spec"]["template"]["spec"]["containers"][0]["env"];
    let cache = json!({ "name": "WINDLASS_GIT_CACHE", "value": "/var/cache/windlass/git" });
    assert!(env.as_array().unwrap().contains(&cache), "{env}");
    let help = String::from_utf8_lossy(&output.stdout);
    assert!(help.contains("[env: WINDLASS_GIT_CACHE="), "{help}");
}

#[test]
fn least_privilege_copies_are_identical_to_the_default_install() {
    let here = deploy_dir();
    for file in ["namespace.yaml", "deployment.yaml", "service.yaml"] {
        let original = std::fs::read(here.join(file)).unwrap();
        let copy = std::fs::read(here.join("least-privilege").join(file)).unwrap();
        assert!(
            original == copy,
            "deploy/least-privilege/{file} differs from deploy/{file}: copy it again"
        );
    }
    let service_account = |path: &Path| {
        objects_in(path)
            .into_iter()
            .find(|o| o["kind"] == "ServiceAccount")
            .unwrap_or_else(|| panic!("no ServiceAccount in {}", shown(path)))
    };
    assert_eq!(
        service_account(&here.join("least-privilege/serviceaccount.yaml")),
        service_account(&here.join("rbac.yaml"))
    );
}
