//! The external renderers against the real kustomize and helm binaries, at
//! the pinned versions `deploy/local/tools.sh build` builds (cached; the
//! first run builds them, which needs Go).
//!
//! Each render is compared with the binary's own output, run directly on
//! the fixture and parsed by an independent YAML reader (serde-saphyr), as
//! JSON values: windlass must hand on exactly what the tool rendered. The
//! last tests go through `render::render`: detection picks the engine, and
//! the tool's output meets the checks plain manifests meet.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};
use windlass::render::detect::{Engine, detect_tree};
use windlass::render::helm::{SkippedHook, hooks_message, render_helm};
use windlass::render::kustomize::{render_kustomize, render_kustomize_in};
use windlass::render::tool::{ExternalError, ExternalTools, ToolDocument, ToolPaths};
use windlass::render::{
    Capabilities, Error, FileTree, Limits, LocalDirectory, MemoryTree, RenderInput, Rendered,
    SetValue, ValuesLayer, digest, manifest_digest, render,
};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn fixture(path: &str) -> PathBuf {
    repo().join("tests/fixtures").join(path)
}

/// The pinned binaries (see `support::tool_binaries`).
fn tool_paths() -> ToolPaths {
    let (kustomize, helm) = support::tool_binaries();
    ToolPaths {
        kustomize: Some(kustomize.clone()),
        helm: Some(helm.clone()),
    }
}

fn tools() -> ExternalTools {
    ExternalTools::new(tool_paths())
}

/// Runs a binary directly; its stdout parsed as YAML documents.
fn direct(binary: &Path, args: &[&str]) -> (String, Vec<Value>) {
    let output = Command::new(binary).args(args).output().unwrap();
    assert!(
        output.status.success(),
        "{} {args:?}: {}",
        binary.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).unwrap();
    let documents: Vec<Value> = serde_saphyr::from_multiple(&text).unwrap();
    let documents = documents.into_iter().filter(|d| !d.is_null()).collect();
    (text, documents)
}

fn values(documents: &[ToolDocument]) -> Vec<Value> {
    documents.iter().map(|d| d.value.clone()).collect()
}

/// The object of `kind` whose name starts with `name`.
fn find<'a>(documents: &'a [Value], kind: &str, name: &str) -> &'a Value {
    documents
        .iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"].as_str().unwrap().starts_with(name))
        .unwrap_or_else(|| panic!("no {kind} {name}* in {documents:#?}"))
}

fn is_hook(document: &Value) -> bool {
    document["metadata"]["annotations"]["helm.sh/hook"].is_string()
}

// --- Kustomize ---------------------------------------------------------------

#[test]
fn kustomize_overlays_render_as_kustomize_builds_them() {
    let kustomize = tool_paths().kustomize.clone().unwrap();
    let tree = LocalDirectory::new(fixture("kustomize")).unwrap();
    for environment in ["production", "staging"] {
        let mut input = RenderInput::new(&tree, "default");
        input.environment = Some(environment.to_string());
        let documents = render_kustomize(&input, &tools()).unwrap();
        let overlay = fixture(&format!("kustomize/overlays/{environment}"));
        let (_, expected) = direct(
            &kustomize,
            &[
                "build",
                "--load-restrictor",
                "LoadRestrictionsRootOnly",
                overlay.to_str().unwrap(),
            ],
        );
        assert_eq!(values(&documents), expected, "{environment}");
        assert_eq!(
            documents[0].source.to_string(),
            format!("`kustomize build overlays/{environment}` document 1")
        );
    }

    // What the fixture exercises, so the comparison is not of two empty sets.
    let mut input = RenderInput::new(&tree, "default");
    input.environment = Some("production".into());
    let objects = values(&render_kustomize(&input, &tools()).unwrap());
    let deployment = find(&objects, "Deployment", "prod-web");
    let config = find(&objects, "ConfigMap", "prod-web-config-");
    let secret = find(&objects, "Secret", "prod-web-credentials-");
    let service = find(&objects, "Service", "prod-web");
    // Generators: hash suffixes, and the references rewritten to them.
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(
        pod["containers"][0]["envFrom"][0]["configMapRef"]["name"],
        config["metadata"]["name"]
    );
    assert_eq!(
        pod["volumes"][0]["secret"]["secretName"],
        secret["metadata"]["name"]
    );
    assert_eq!(config["data"]["LOG_LEVEL"], "warn", "behavior: merge");
    assert_eq!(config["data"]["FEATURE_X"], "on");
    // namespace, images, strategic merge and JSON 6902 patches, labels.
    assert_eq!(deployment["metadata"]["namespace"], "production");
    assert_eq!(pod["containers"][0]["image"], "ghcr.io/example/web:1.4.2");
    assert_eq!(deployment["spec"]["replicas"], 3);
    assert_eq!(service["spec"]["ports"][0]["port"], 443);
    assert_eq!(
        deployment["spec"]["selector"]["matchLabels"],
        json!({"app.kubernetes.io/name": "web", "component": "web", "environment": "production"})
    );
    // The component: a resource and a patch.
    find(&objects, "ConfigMap", "prod-metrics");
    assert_eq!(
        deployment["spec"]["template"]["metadata"]["annotations"]["prometheus.io/scrape"],
        "true"
    );
}

#[test]
fn kustomize_builds_a_directory_below_the_tree_root() {
    let kustomize = tool_paths().kustomize.clone().unwrap();
    let tree = LocalDirectory::new(fixture("kustomize")).unwrap();
    let input = RenderInput::new(&tree, "default");
    let documents = render_kustomize_in(&input, &tools(), "base").unwrap();
    let (_, expected) = direct(
        &kustomize,
        &["build", fixture("kustomize/base").to_str().unwrap()],
    );
    assert_eq!(values(&documents), expected);
    assert_eq!(documents.len(), 4);

    // The fixture root has only overlays: an environment must be chosen.
    let error = render_kustomize(&input, &tools()).unwrap_err();
    assert!(
        error
            .to_string()
            .contains("(choose an environment: production, staging)"),
        "{error}"
    );
    let mut input = RenderInput::new(&tree, "default");
    input.environment = Some("qa".into());
    let error = render_kustomize(&input, &tools()).unwrap_err();
    assert!(
        error
            .to_string()
            .contains("environments: production, staging"),
        "{error}"
    );
}

fn configmap(name: &str) -> String {
    format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n")
}

#[test]
fn kustomize_errors_show_its_stderr_with_tree_paths() {
    let tree = MemoryTree::new("repo@abc:apps/web")
        .with("kustomization.yaml", "resources:\n  - missing.yaml\n");
    let error = render_kustomize(&RenderInput::new(&tree, "default"), &tools()).unwrap_err();
    let message = error.to_string();
    let ExternalError::Failed {
        command, stderr, ..
    } = &error
    else {
        panic!("{error:?}")
    };
    assert_eq!(command, "kustomize build .");
    assert!(stderr.contains("'missing.yaml'"), "{message}");
    assert!(!message.contains("windlass-kustomize"), "{message}");
}

#[test]
fn kustomize_reads_only_below_the_kustomization() {
    // LoadRestrictionsRootOnly: a file of another directory is refused
    // (other kustomizations, as directories, are fine: see the overlays).
    let tree = MemoryTree::new("repo")
        .with("base/cm.yaml", configmap("a"))
        .with(
            "app/kustomization.yaml",
            "resources:\n  - ../base/cm.yaml\n",
        );
    let error =
        render_kustomize_in(&RenderInput::new(&tree, "default"), &tools(), "app").unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains("`kustomize build app` failed")
            && message.contains("security; file 'base/cm.yaml' is not in or below 'app'"),
        "{message}"
    );
}

#[test]
fn kustomize_runs_no_exec_plugins_and_fetches_nothing() {
    let generator = "apiVersion: example.com/v1\nkind: Generator\nmetadata:\n  name: gen\n  \
                     annotations:\n    config.kubernetes.io/function: |\n      exec:\n        \
                     path: ./gen.sh\n";
    let tree = MemoryTree::new("repo")
        .with("kustomization.yaml", "generators:\n  - gen.yaml\n")
        .with("gen.yaml", generator)
        .with("gen.sh", "#!/bin/sh\necho 'kind: ConfigMap'\n");
    let error = render_kustomize(&RenderInput::new(&tree, "default"), &tools()).unwrap_err();
    assert!(
        error.to_string().contains("external plugins disabled"),
        "{error}"
    );

    let tree = MemoryTree::new("repo").with(
        "kustomization.yaml",
        "resources:\n  - https://raw.githubusercontent.com/example/x/main/cm.yaml\n",
    );
    let error = render_kustomize(&RenderInput::new(&tree, "default"), &tools()).unwrap_err();
    assert!(
        matches!(&error, ExternalError::Failed { stderr, .. }
            if stderr.contains("127.0.0.1:9") && stderr.contains("no 'git' program")),
        "{error}"
    );
}

#[test]
fn kustomize_takes_no_values_and_bounds_its_output() {
    let tree = MemoryTree::new("repo")
        .with("kustomization.yaml", "resources:\n  - cm.yaml\n")
        .with("cm.yaml", configmap("a"));
    let mut input = RenderInput::new(&tree, "default");
    input.values.push(ValuesLayer {
        name: "inline".into(),
        values: json!({"a": 1}),
    });
    let error = render_kustomize(&input, &tools()).unwrap_err();
    assert!(
        error
            .to_string()
            .contains("Kustomize application, which takes no values"),
        "{error}"
    );

    let input = RenderInput::new(&tree, "default");
    let documents = render_kustomize(&input, &tools()).unwrap();
    assert_eq!(
        values(&documents),
        [serde_saphyr::from_str::<Value>(&configmap("a")).unwrap()]
    );
    let mut no_time = tools();
    no_time.timeout = std::time::Duration::ZERO;
    let error = render_kustomize(&input, &no_time).unwrap_err();
    assert_eq!(
        error.to_string(),
        "`kustomize build .` did not finish within the time limit of 0 s"
    );
    let mut small = tools();
    small.max_output_bytes = Some(20);
    let error = render_kustomize(&input, &small).unwrap_err();
    assert!(
        matches!(error, ExternalError::OutputTooLarge { limit: 20, .. }),
        "{error}"
    );
}

#[test]
fn kustomize_inflates_helm_charts_only_on_opt_in() {
    // The helm fixture as a chart of a kustomization (charts/web).
    let chart = LocalDirectory::new(fixture("helm/web")).unwrap();
    let mut tree = MemoryTree::new("repo").with(
        "kustomization.yaml",
        "helmCharts:\n  - name: web\n    releaseName: shop\n    namespace: shop\n    \
         valuesInline:\n      replicaCount: 4\nhelmGlobals:\n  chartHome: charts\n",
    );
    for path in chart.files().unwrap() {
        tree.insert(format!("charts/web/{path}"), chart.read(&path).unwrap());
    }
    let input = RenderInput::new(&tree, "default");
    let error = render_kustomize(&input, &tools()).unwrap_err();
    assert!(
        error.to_string().contains("must specify --enable-helm"),
        "{error}"
    );

    let mut opted_in = tools();
    opted_in.kustomize_helm = true;
    let objects = values(&render_kustomize(&input, &opted_in).unwrap());
    assert_eq!(
        find(&objects, "Deployment", "shop-web")["spec"]["replicas"],
        4
    );

    // Without a helm binary, the opt-in says what is missing.
    opted_in.paths.helm = None;
    let error = render_kustomize(&input, &opted_in).unwrap_err();
    assert!(
        error.to_string().contains("helm is not installed"),
        "{error}"
    );
}

// --- Helm ----------------------------------------------------------------------

/// `helm template` run directly on the fixture chart.
fn helm_direct(extra: &[&str]) -> (String, Vec<Value>) {
    let helm = tool_paths().helm.clone().unwrap();
    let chart = fixture("helm/web");
    let mut args = vec![
        "template",
        "shop",
        chart.to_str().unwrap(),
        "--namespace",
        "shop",
        "--include-crds",
    ];
    args.extend_from_slice(extra);
    let (text, documents) = direct(&helm, &args);
    (
        text,
        documents.into_iter().filter(|d| !is_hook(d)).collect(),
    )
}

fn web_input(tree: &LocalDirectory) -> RenderInput<'_> {
    let mut input = RenderInput::new(tree, "shop");
    input.name = Some("shop".into());
    input
}

#[test]
fn helm_chart_renders_as_helm_template_does() {
    let tree = LocalDirectory::new(fixture("helm/web")).unwrap();
    let mut input = web_input(&tree);
    input.environment = Some("production".into());
    let output = render_helm(&input, &tools()).unwrap();
    let values_file = fixture("helm/web/values/production.yaml");
    let (text, expected) = helm_direct(&["-f", values_file.to_str().unwrap()]);
    let objects = values(&output.documents);
    assert_eq!(objects, expected);
    assert_eq!(output.release_name, "shop");
    assert_eq!(output.chart_name, "web");

    // NOTES.txt is never output.
    assert!(!text.contains("NOTES-MARKER"), "{text}");
    // Hooks (a pre-install Job, a test Pod) are left out and listed.
    let mut hooks = output.skipped_hooks.clone();
    hooks.sort_by(|a, b| a.object.cmp(&b.object));
    assert_eq!(
        hooks,
        [
            SkippedHook {
                object: "Job/shop-web-migrate".into(),
                hook: "pre-install,pre-upgrade".into(),
                template: "web/templates/migrate-job.yaml".into(),
            },
            SkippedHook {
                object: "Pod/shop-web-test".into(),
                hook: "test".into(),
                template: "web/templates/tests/test-connection.yaml".into(),
            },
        ]
    );
    assert!(
        hooks_message(&output.skipped_hooks)
            .unwrap()
            .starts_with("helm hooks are not run by windlass; skipped 2 hook objects: "),
    );

    // What the fixture exercises: crds/, the vendored subchart with the
    // parent's values, helpers through include/nindent/toYaml, the
    // environment's values.
    find(&objects, "CustomResourceDefinition", "widgets.example.com");
    assert_eq!(
        find(&objects, "ConfigMap", "shop-cache")["data"]["size"],
        "1024"
    );
    let deployment = find(&objects, "Deployment", "shop-web");
    assert_eq!(deployment["spec"]["replicas"], 3);
    assert_eq!(
        deployment["metadata"]["labels"]["helm.sh/chart"],
        "web-0.3.0"
    );
    let pod = &deployment["spec"]["template"];
    assert_eq!(
        pod["metadata"]["annotations"],
        json!({"example.com/team": "web"})
    );
    assert_eq!(
        pod["spec"]["containers"][0]["resources"],
        json!({"limits": {"cpu": "1", "memory": "512Mi"}})
    );
    assert_eq!(
        pod["spec"]["containers"][0]["image"],
        "ghcr.io/example/web:1.4.2"
    );
    let source = output
        .documents
        .iter()
        .find(|d| d.value["kind"] == "Deployment")
        .unwrap()
        .source
        .to_string();
    assert_eq!(
        source,
        "template `web/templates/deployment.yaml` document 1"
    );
    // ServiceMonitor only when the cluster has the API (next test).
    assert!(!objects.iter().any(|o| o["kind"] == "ServiceMonitor"));
}

#[test]
fn helm_sees_the_clusters_capabilities() {
    let tree = LocalDirectory::new(fixture("helm/web")).unwrap();
    let mut input = web_input(&tree);
    input.capabilities = Some(Capabilities {
        kube_version: Some("1.30.1".into()),
        api_versions: vec![
            "monitoring.coreos.com/v1".into(),
            "monitoring.coreos.com/v1/ServiceMonitor".into(),
        ],
    });
    let objects = values(&render_helm(&input, &tools()).unwrap().documents);
    let (_, expected) = helm_direct(&[
        "--kube-version",
        "1.30.1",
        "--api-versions",
        "monitoring.coreos.com/v1",
        "--api-versions",
        "monitoring.coreos.com/v1/ServiceMonitor",
    ]);
    assert_eq!(objects, expected);
    find(&objects, "ServiceMonitor", "shop-web");
    assert_eq!(
        find(&objects, "ConfigMap", "shop-web-info")["data"]["kubeVersion"],
        "v1.30.1"
    );
}

#[test]
fn helm_values_layer_environment_inline_then_set() {
    let tree = LocalDirectory::new(fixture("helm/web")).unwrap();
    let mut input = web_input(&tree);
    input.environment = Some("staging".into());
    input.values.push(ValuesLayer {
        name: "inline".into(),
        values: json!({"replicaCount": 5, "image": {"tag": "2.0.0"}, "service": {"port": 8080}}),
    });
    input.set = SetValue::parse("replicaCount=7,extraEnv[0].value=debug").unwrap();
    input
        .set
        .extend(SetValue::parse_string("image.tag=007").unwrap());
    let objects = values(&render_helm(&input, &tools()).unwrap().documents);

    let workdir =
        std::env::temp_dir().join(format!("windlass-render-tools-{}", std::process::id()));
    std::fs::create_dir_all(&workdir).unwrap();
    let inline = workdir.join("inline.yaml");
    std::fs::write(
        &inline,
        "replicaCount: 5\nimage:\n  tag: \"2.0.0\"\nservice:\n  port: 8080\n",
    )
    .unwrap();
    let staging = fixture("helm/web/values-staging.yaml");
    let (_, expected) = helm_direct(&[
        "-f",
        staging.to_str().unwrap(),
        "-f",
        inline.to_str().unwrap(),
        "--set",
        "replicaCount=7,extraEnv[0].value=debug",
        "--set-string",
        "image.tag=007",
    ]);
    std::fs::remove_dir_all(&workdir).unwrap();
    assert_eq!(objects, expected);
    let deployment = find(&objects, "Deployment", "shop-web");
    assert_eq!(deployment["spec"]["replicas"], 7);
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["image"], "ghcr.io/example/web:007");
    // Helm's own rule: `--set` builds a list of its own, which replaces the
    // chart's (a windlass chart's `--set` changes the item in place).
    assert_eq!(container["env"], json!([{"value": "debug"}]));
    assert_eq!(
        find(&objects, "Service", "shop-web")["spec"]["ports"][0]["port"],
        8080
    );
}

#[test]
fn helm_release_name_defaults_to_the_chart_and_environments_must_exist() {
    let tree = LocalDirectory::new(fixture("helm/web")).unwrap();
    let input = RenderInput::new(&tree, "shop");
    let output = render_helm(&input, &tools()).unwrap();
    assert_eq!(output.release_name, "web");
    find(&values(&output.documents), "Deployment", "web-web");

    let mut input = RenderInput::new(&tree, "shop");
    input.environment = Some("qa".into());
    let error = render_helm(&input, &tools()).unwrap_err();
    assert!(
        error
            .to_string()
            .ends_with("no environment `qa` (no values/qa.yaml or values-qa.yaml); environments: production, staging"),
        "{error}"
    );
}

#[test]
fn helm_errors_show_its_stderr() {
    let tree = MemoryTree::new("repo@abc:charts/api")
        .with("Chart.yaml", "apiVersion: v2\nname: api\nversion: 1.0.0\n")
        .with(
            "templates/cm.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ required \"tag is \
             required\" .Values.tag }}\n",
        );
    let error = render_helm(&RenderInput::new(&tree, "default"), &tools()).unwrap_err();
    let message = error.to_string();
    assert!(
        message.starts_with("`helm template api (chart `api`)` failed (exit status: 1):")
            && message.contains("templates/cm.yaml")
            && message.contains("tag is required"),
        "{message}"
    );
    assert!(!message.contains("windlass-helm"), "{message}");
}

#[test]
fn helm_output_goes_through_windlass_yaml_rules() {
    // An unquoted `yes` means true to Kubernetes and "yes" to YAML 1.2:
    // refused, naming the template, as in a windlass chart.
    let tree = MemoryTree::new("chart")
        .with("Chart.yaml", "apiVersion: v2\nname: api\nversion: 1.0.0\n")
        .with(
            "templates/cm.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\ndata:\n  enabled: yes\n",
        );
    let error = render_helm(&RenderInput::new(&tree, "default"), &tools()).unwrap_err();
    let message = error.to_string();
    assert!(
        message.starts_with("template `api/templates/cm.yaml` output: document 1, line")
            && message.contains("boolean"),
        "{message}"
    );
}

// --- both ------------------------------------------------------------------------

#[test]
fn a_missing_binary_says_how_to_get_it() {
    let none = ExternalTools::new(ToolPaths::default());
    let kustomize_tree = LocalDirectory::new(fixture("kustomize")).unwrap();
    let mut input = RenderInput::new(&kustomize_tree, "default");
    input.environment = Some("production".into());
    let error = render_kustomize(&input, &none).unwrap_err();
    assert!(
        error.to_string().starts_with(
            "kustomize is not installed: put it on PATH, pass \
                                       --kustomize-bin or set WINDLASS_KUSTOMIZE_BIN"
        ),
        "{error}"
    );
    let helm_tree = LocalDirectory::new(fixture("helm/web")).unwrap();
    let error = render_helm(&RenderInput::new(&helm_tree, "default"), &none).unwrap_err();
    assert!(error.to_string().contains("WINDLASS_HELM_BIN"), "{error}");

    // A path that is not there: named, not a fallback.
    let wrong = ExternalTools::new(ToolPaths {
        kustomize: None,
        helm: Some("/nonexistent/helm".into()),
    });
    let error = render_helm(&RenderInput::new(&helm_tree, "default"), &wrong).unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("cannot run helm (`/nonexistent/helm`)"),
        "{error}"
    );
}

#[test]
fn detection_on_the_fixtures_and_examples() {
    let limits = Limits::default();
    let engine = |path: PathBuf| detect_tree(&LocalDirectory::new(path).unwrap(), &limits);
    assert_eq!(engine(fixture("kustomize")).unwrap(), Engine::Kustomize);
    assert_eq!(
        engine(fixture("kustomize/base")).unwrap(),
        Engine::Kustomize
    );
    assert_eq!(engine(fixture("helm/web")).unwrap(), Engine::Helm);
    assert_eq!(
        engine(repo().join("examples/podinfo-chart")).unwrap(),
        Engine::WindlassChart
    );
    assert_eq!(
        engine(repo().join("examples/guestbook")).unwrap(),
        Engine::Plain
    );

    let jsonnet = MemoryTree::new("repo@abc:apps/lib").with("main.jsonnet", "{}");
    let error = detect_tree(&jsonnet, &limits).unwrap_err();
    assert!(
        error.to_string().starts_with(
            "repo@abc:apps/lib: `main.jsonnet` is Jsonnet, which windlass does not render"
        ),
        "{error}"
    );

    let unvendored = MemoryTree::new("chart").with(
        "Chart.yaml",
        "apiVersion: v2\nname: web\nversion: 1.0.0\ndependencies:\n  - name: redis\n    \
         version: 20.0.0\n    repository: https://charts.example.com\n",
    );
    let error = detect_tree(&unvendored, &limits).unwrap_err();
    assert_eq!(
        error.to_string(),
        "chart `web` depends on `redis`, which is not vendored in charts/; run `helm \
         dependency build` and commit charts/"
    );
}

// --- through render::render: detection, then the checks every engine meets --------

fn render_with(tree: &dyn FileTree, namespace: &str) -> Result<Rendered, Error> {
    let tools = tools();
    let mut input = RenderInput::new(tree, namespace);
    input.tools = Some(&tools);
    render(&input)
}

#[test]
fn render_runs_kustomize_and_checks_its_output_like_plain_manifests() {
    let kustomize = tool_paths().kustomize.clone().unwrap();
    let base = fixture("kustomize/base");
    let tree = LocalDirectory::new(&base).unwrap();
    let rendered = render_with(&tree, "shop").unwrap();
    // kustomize sets no namespace here: windlass fills in the destination,
    // and digests each object as it is then.
    let mut expected = direct(&kustomize, &["build", base.to_str().unwrap()]).1;
    for object in &mut expected {
        object["metadata"]["namespace"] = json!("shop");
    }
    let objects: Vec<Value> = rendered.objects.iter().map(|o| o.object.clone()).collect();
    assert_eq!(objects, expected);
    for object in &rendered.objects {
        assert_eq!(object.digest, digest(&object.object), "{}", object.id);
    }
    assert_eq!(rendered.manifest_digest, manifest_digest(&rendered.objects));
    assert_eq!(
        rendered.objects[0].source.to_string(),
        "`kustomize build .` document 1"
    );
    assert!(rendered.chart.is_none() && rendered.skipped_hooks.is_empty());

    // Scope checks: a namespace on a cluster-scoped kind is refused.
    let tree = MemoryTree::new("repo")
        .with("kustomization.yaml", "resources: [role.yaml, cm.yaml]\n")
        .with(
            "role.yaml",
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  \
             name: reader\n  namespace: team-a\nrules: []\n",
        )
        .with("cm.yaml", configmap("a"));
    let error = render_with(&tree, "shop").unwrap_err();
    assert!(
        matches!(error, Error::NamespaceOnClusterScoped { .. })
            && error.to_string().starts_with(
                "`kustomize build .` document 1: ClusterRole is cluster-scoped but has \
                 metadata.namespace `team-a`"
            ),
        "{error}"
    );

    // Nothing to deploy: an error unless allowed.
    let tree = MemoryTree::new("repo").with("kustomization.yaml", "resources: []\n");
    let error = render_with(&tree, "shop").unwrap_err();
    assert!(
        matches!(error, Error::Empty { .. })
            && error
                .to_string()
                .contains("(Kustomize: `kustomize build` output no objects)"),
        "{error}"
    );
    let tools = tools();
    let mut input = RenderInput::new(&tree, "shop");
    input.tools = Some(&tools);
    input.allow_empty = true;
    assert!(render(&input).unwrap().objects.is_empty());
}

#[test]
fn render_runs_helm_and_checks_its_output_like_plain_manifests() {
    let tree = LocalDirectory::new(fixture("helm/web")).unwrap();
    let tools = tools();
    let mut input = web_input(&tree);
    input.tools = Some(&tools);
    let rendered = render(&input).unwrap();
    let (_, mut expected) = helm_direct(&[]);
    for object in &mut expected {
        if object["kind"] != "CustomResourceDefinition" {
            object["metadata"]["namespace"] = json!("shop");
        }
    }
    let objects: Vec<Value> = rendered.objects.iter().map(|o| o.object.clone()).collect();
    assert_eq!(objects, expected);
    assert_eq!(rendered.release_name.as_deref(), Some("shop"));
    assert!(
        rendered.chart.is_none(),
        "a Helm chart is not a windlass chart"
    );
    let hooks: Vec<&str> = rendered
        .skipped_hooks
        .iter()
        .map(|h| h.object.as_str())
        .collect();
    assert_eq!(hooks.len(), 2, "{hooks:?}");
    assert!(hooks.contains(&"Job/shop-web-migrate"), "{hooks:?}");

    // Duplicates across templates, named by both; a List is expanded.
    let chart = MemoryTree::new("chart")
        .with("Chart.yaml", "apiVersion: v2\nname: api\nversion: 1.0.0\n")
        .with("templates/a.yaml", configmap("{{ .Release.Name }}"))
        .with(
            "templates/b.yaml",
            format!(
                "apiVersion: v1\nkind: List\nitems:\n  - {}",
                serde_json::to_string(
                    &serde_saphyr::from_str::<Value>(&configmap("other")).unwrap()
                )
                .unwrap()
            ),
        )
        .with("templates/c.yaml", configmap("api"));
    let error = render_with(&chart, "shop").unwrap_err();
    assert_eq!(
        error.to_string(),
        "ConfigMap api -n shop is defined twice: in template `api/templates/a.yaml` document 1 \
         and in template `api/templates/c.yaml` document 1"
    );
    let chart = chart.with("templates/c.yaml", "");
    let rendered = render_with(&chart, "shop").unwrap();
    let sources: Vec<String> = rendered
        .objects
        .iter()
        .map(|o| format!("{} from {}", o.id, o.source))
        .collect();
    assert_eq!(
        sources,
        [
            "ConfigMap api -n shop from template `api/templates/a.yaml` document 1",
            "ConfigMap other -n shop from template `api/templates/b.yaml` document 1 item 1",
        ]
    );

    // Only hooks: nothing to deploy, and the message says why.
    let hooks_only = MemoryTree::new("chart")
        .with("Chart.yaml", "apiVersion: v2\nname: api\nversion: 1.0.0\n")
        .with(
            "templates/job.yaml",
            "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: migrate\n  annotations:\n    \
             helm.sh/hook: pre-install\nspec: {}\n",
        );
    let error = render_with(&hooks_only, "shop").unwrap_err();
    assert!(
        error
            .to_string()
            .contains("`helm template` output only hooks, which windlass does not run"),
        "{error}"
    );
}

// --- overlays that reference directories outside the application's path ------

/// `kustomize build` run directly on a directory of the fixture.
fn built(relative: &str) -> Vec<Value> {
    let kustomize = tool_paths().kustomize.clone().unwrap();
    let dir = fixture(relative);
    direct(
        &kustomize,
        &[
            "build",
            "--load-restrictor",
            "LoadRestrictionsRootOnly",
            dir.to_str().unwrap(),
        ],
    )
    .1
}

fn objects(rendered: &Rendered) -> Vec<Value> {
    rendered.objects.iter().map(|o| o.object.clone()).collect()
}

#[test]
fn an_overlay_path_in_a_checkout_renders_with_the_base_outside_it() {
    // overlays/<env> reference ../../base (and ../../components/monitoring),
    // outside the path rendered; the checkout (this repository) is the
    // boundary, as in Argo CD and Flux.
    for environment in ["production", "staging"] {
        let path = format!("kustomize/overlays/{environment}");
        let tree = LocalDirectory::new(fixture(&path)).unwrap();
        let rendered = render_with(&tree, "default").unwrap();
        let expected = built(&path);
        assert!(expected.len() >= 4, "{expected:#?}");
        // The overlays set the namespace: windlass hands on exactly what
        // kustomize built.
        assert_eq!(objects(&rendered), expected, "{environment}");
        assert_eq!(
            rendered.objects[0].source.to_string(),
            "`kustomize build .` document 1"
        );
    }
}

#[test]
fn an_overlay_outside_a_checkout_cannot_reach_above_its_directory() {
    let dir = support::git::TempDir::new("overlay-alone");
    support::write_files(
        dir.path(),
        &[
            ("base/kustomization.yaml", "resources: [cm.yaml]\n"),
            ("base/cm.yaml", &configmap("a")),
            (
                "overlays/prod/kustomization.yaml",
                "resources:\n  - ../../base\n",
            ),
        ],
    );
    // Outside a checkout the directory rendered is the whole repository.
    let tree = LocalDirectory::new(dir.path().join("overlays/prod")).unwrap();
    let error = render_with(&tree, "default").unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains(
            "`kustomization.yaml`: resources entry `../../base` points outside the repository"
        ),
        "{message}"
    );
    // From the directory holding both, it is the overlay of an environment.
    let tree = LocalDirectory::new(dir.path()).unwrap();
    let mut input = RenderInput::new(&tree, "default");
    let tools = tools();
    input.tools = Some(&tools);
    input.environment = Some("prod".into());
    assert_eq!(render(&input).unwrap().objects.len(), 1);
}

/// The files of the Kustomize fixture, for a repository.
fn kustomize_fixture_files() -> Vec<(String, String)> {
    fn walk(dir: &Path, prefix: &str, out: &mut Vec<(String, String)>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let name = format!("{prefix}{}", entry.file_name().to_str().unwrap());
            if entry.file_type().unwrap().is_dir() {
                walk(&entry.path(), &format!("{name}/"), out);
            } else {
                out.push((name, std::fs::read_to_string(entry.path()).unwrap()));
            }
        }
    }
    let mut files = Vec::new();
    walk(&fixture("kustomize"), "", &mut files);
    files.sort();
    files
}

#[tokio::test]
async fn an_overlay_path_in_a_git_repository_renders_and_watches_its_base() {
    use windlass::source::{Credentials, Repo, SourceCache, SourceOptions};

    let files = kustomize_fixture_files();
    let files: Vec<(&str, &str)> = files
        .iter()
        .map(|(p, t)| (p.as_str(), t.as_str()))
        .collect();
    let served = support::git::ServedRepo::start("kustomize-outside", &files);
    let cache = SourceCache::new(SourceOptions::new(served.root.path().join("cache")));
    let repo = Repo::new(&served.url, Credentials::None).unwrap();
    let first = cache.resolve(&repo, "main").await.unwrap();
    for environment in ["production", "staging"] {
        let path = format!("overlays/{environment}");
        let snapshot = cache.snapshot(&repo, &first, &path).await.unwrap();
        // Only the overlay's own files are the application's...
        assert!(
            snapshot.file_paths().all(|p| !p.contains("base")),
            "{:?}",
            snapshot.file_paths().collect::<Vec<_>>()
        );
        let rendered = tokio::task::spawn_blocking(move || render_with(&snapshot, "default"))
            .await
            .unwrap()
            .unwrap();
        // ...yet the build is the checkout's, byte for byte as JSON.
        assert_eq!(
            objects(&rendered),
            built(&format!("kustomize/{path}")),
            "{environment}"
        );
    }

    // A push that changes only the base (or the component) wakes the
    // overlay's application; one elsewhere does not.
    let snapshot = cache
        .snapshot(&repo, &first, "overlays/production")
        .await
        .unwrap();
    let watched = snapshot.watched_paths();
    assert_eq!(
        watched,
        ["overlays/production", "base", "components/monitoring"]
    );
    served.repo.commit(
        &[("overlays/staging/kustomization.yaml", "resources: []\n")],
        "staging only",
    );
    let staging_only = cache.resolve(&repo, "main").await.unwrap();
    assert!(
        !cache
            .changed(&repo, first.commit, staging_only.commit, &watched)
            .await
            .unwrap()
    );
    served
        .repo
        .commit(&[("base/settings.properties", "retries=5\n")], "base only");
    let base_only = cache.resolve(&repo, "main").await.unwrap();
    assert!(
        cache
            .changed(&repo, staging_only.commit, base_only.commit, &watched)
            .await
            .unwrap(),
        "the base the overlay builds on changed"
    );
}

#[tokio::test]
async fn a_git_overlay_whose_reference_leaves_the_repository_names_it() {
    use windlass::source::{Credentials, Repo, SourceCache, SourceOptions};

    let served = support::git::ServedRepo::start(
        "kustomize-escape",
        &[
            (
                "apps/web/kustomization.yaml",
                "resources:\n  - ../../../x\n",
            ),
            ("apps/plain/cm.yaml", &configmap("a")),
            (
                "apps/plain/docs/Kustomization",
                "resources: [../../../../x]\n",
            ),
        ],
    );
    let cache = SourceCache::new(SourceOptions::new(served.root.path().join("cache")));
    let repo = Repo::new(&served.url, Credentials::None).unwrap();
    let resolved = cache.resolve(&repo, "main").await.unwrap();
    let snapshot = cache.snapshot(&repo, &resolved, "apps/web").await.unwrap();
    let error = tokio::task::spawn_blocking(move || render_with(&snapshot, "default"))
        .await
        .unwrap()
        .unwrap_err();
    assert!(
        error.to_string().contains(
            "`apps/web/kustomization.yaml`: resources entry `../../../x` points outside the \
             repository"
        ),
        "{error}"
    );
    // The same limits as the path's: past them, the reference is named.
    let mut options = SourceOptions::new(served.root.path().join("cache-small"));
    options.limits.max_files = 2;
    let small = SourceCache::new(options);
    served.repo.commit(
        &[
            ("apps/small/kustomization.yaml", "resources: [../../base]\n"),
            ("base/a.yaml", "a"),
            ("base/b.yaml", "b"),
        ],
        "a base of two files",
    );
    let resolved_small = small.resolve(&repo, "main").await.unwrap();
    let snapshot = small
        .snapshot(&repo, &resolved_small, "apps/small")
        .await
        .unwrap();
    let error = tokio::task::spawn_blocking(move || render_with(&snapshot, "default"))
        .await
        .unwrap()
        .unwrap_err();
    assert!(
        error.to_string().contains(
            "`apps/small/kustomization.yaml`: resources entry `../../base`: more than 2 files \
             under the path and those its kustomizations reference"
        ),
        "{error}"
    );

    // Only the Kustomize engine reports it: plain manifests beside a stray
    // kustomization deeper down render.
    let snapshot = cache
        .snapshot(&repo, &resolved, "apps/plain")
        .await
        .unwrap();
    let rendered = tokio::task::spawn_blocking(move || render_with(&snapshot, "default"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rendered.objects.len(), 1);
}
