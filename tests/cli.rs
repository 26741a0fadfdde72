//! The `windlass` binary as a user runs it: output, exit codes, and error
//! messages that name the cause without leaking credentials.

mod support;

use std::future::Future;
use std::net::TcpListener;
use std::process::{Command, Output};

use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::Api;
use kube::api::DeleteParams;

use support::git::TempDir;
use support::{with_namespace, write_files};

fn windlass_without_cluster() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_windlass"));
    command.env_remove("KUBECONFIG");
    command
}

fn text(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn version_and_help_name_the_tool_and_its_verbs() {
    let output = windlass_without_cluster()
        .arg("--version")
        .output()
        .unwrap();
    let (stdout, _) = text(&output);
    assert!(output.status.success());
    assert_eq!(
        stdout.trim(),
        format!("windlass {}", env!("CARGO_PKG_VERSION"))
    );

    let output = windlass_without_cluster().arg("--help").output().unwrap();
    let (stdout, _) = text(&output);
    assert!(output.status.success());
    assert!(stdout.contains("check"), "{stdout}");
    assert!(stdout.contains("--kubeconfig"), "{stdout}");
    assert!(stdout.contains("--namespace"), "{stdout}");
}

fn help(args: &[&str]) -> String {
    let output = windlass_without_cluster()
        .args(args)
        .arg("--help")
        .output()
        .unwrap();
    let (stdout, stderr) = text(&output);
    assert!(
        output.status.success(),
        "{args:?} --help:\n{stdout}{stderr}"
    );
    assert!(stdout.contains("Usage: windlass"), "{args:?}: {stdout}");
    stdout
}

/// Verbs that connect to a cluster, and so take --kubeconfig and --context.
const CONNECTED_VERBS: [&str; 11] = [
    "check",
    "diff",
    "sync",
    "history",
    "rollback",
    "uninstall",
    "controller",
    "get",
    "reconcile",
    "suspend",
    "resume",
];

#[test]
fn every_verb_has_working_help() {
    // clap checks a command's definition when it is first used: this catches
    // clashing argument names in any verb.
    for verb in CONNECTED_VERBS {
        help(&[verb]);
    }
    for verb in ["render", "crd", "source"] {
        help(&[verb]);
    }
}

#[test]
fn only_verbs_that_connect_to_a_cluster_offer_kubeconfig_and_context() {
    for verb in CONNECTED_VERBS {
        let stdout = help(&[verb]);
        assert!(
            stdout.contains("--kubeconfig <PATH>") && stdout.contains("--context <NAME>"),
            "{verb}: {stdout}"
        );
    }
    for verb in [
        &["render"][..],
        &["crd"],
        &["source"],
        &["source", "resolve"],
        &["source", "ls"],
        &["source", "cat"],
    ] {
        let stdout = help(verb);
        assert!(
            !stdout.contains("--kubeconfig") && !stdout.contains("--context"),
            "{verb:?}: {stdout}"
        );
        // The global flags stay.
        assert!(stdout.contains("--namespace"), "{verb:?}: {stdout}");
    }
    // Before the verb, as with kubectl, they are accepted for every verb.
    let dir = TempDir::new("cli-kubeconfig-before-verb");
    write_files(dir.path(), &[("cm.yaml", &support::configmap("a", "1"))]);
    let output = windlass_without_cluster()
        .args(["--kubeconfig", "/nonexistent", "render"])
        .arg(dir.path())
        .output()
        .unwrap();
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");
}

#[test]
fn dash_f_is_values_in_every_verb_that_takes_values() {
    for verb in ["render", "diff", "sync"] {
        let stdout = help(&[verb]);
        assert!(stdout.contains("-f, --values <FILE>"), "{verb}: {stdout}");
    }
    // The Application manifest has its own long flag; its old name still parses.
    for verb in ["diff", "sync"] {
        assert!(help(&[verb]).contains("--app-file <APP.yaml>"), "{verb}");
        help(&[verb, "--file", "app.yaml"]);
    }
}

#[test]
fn every_duration_flag_takes_go_durations_and_seconds() {
    // clap parses the values given before --help and refuses a bad one.
    for args in [
        &[
            "sync",
            "--timeout",
            "90",
            "--lock-timeout",
            "1m30s",
            "--git-timeout",
            "2m",
        ][..],
        &[
            "sync",
            "--timeout",
            "1h30m",
            "--lock-timeout",
            "45",
            "--git-timeout",
            "30",
        ],
        &["diff", "--git-timeout", "2m"],
        &["rollback", "--timeout", "90", "--lock-timeout", "2m"],
        &["uninstall", "--lock-timeout", "90"],
        &["source", "resolve", "--timeout", "2m"],
        &["source", "ls", "--timeout", "30"],
        &[
            "controller",
            "--lease-duration",
            "15",
            "--discovery-refresh",
            "5m",
        ],
        &[
            "controller",
            "--git-timeout",
            "2m",
            "--lease-duration",
            "20s",
        ],
    ] {
        help(args);
    }
    let output = windlass_without_cluster()
        .args(["sync", "--timeout", "5minutes"])
        .output()
        .unwrap();
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("invalid value '5minutes' for '--timeout <DURATION>'")
            && stderr.contains("unknown unit `minutes`")
            && stderr.contains("a bare number means seconds"),
        "{stderr}"
    );
}

#[test]
fn render_takes_a_single_manifest_file() {
    let dir = TempDir::new("cli-render-file");
    write_files(
        dir.path(),
        &[
            ("web.yaml", &support::configmap("web", "1")),
            ("other.yaml", &support::configmap("other", "2")),
            ("notes.md", "not a manifest\n"),
        ],
    );
    let output = windlass_without_cluster()
        .args(["render", "-n", "team-a"])
        .arg(dir.path().join("web.yaml"))
        .output()
        .unwrap();
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("# Source: web.yaml"), "{stdout}");
    assert!(stdout.contains("name: web\n"), "{stdout}");
    assert!(stdout.contains("namespace: team-a"), "{stdout}");
    assert!(!stdout.contains("other"), "only the file given: {stdout}");
    assert!(stderr.contains("rendered 1 object,"), "{stderr}");

    let output = windlass_without_cluster()
        .arg("render")
        .arg(dir.path().join("notes.md"))
        .output()
        .unwrap();
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(2), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("notes.md: a single file must be a plain manifest"),
        "{stderr}"
    );
}

#[test]
fn renderer_names_the_engine_instead_of_detection() {
    for verb in ["render", "diff", "sync"] {
        let stdout = help(&[verb]);
        assert!(stdout.contains("--renderer <RENDERER>"), "{verb}: {stdout}");
        for value in ["auto", "plain", "windlass-chart", "kustomize", "helm"] {
            assert!(stdout.contains(&format!("- {value}:")), "{verb}: {stdout}");
        }
    }

    // A v2 Chart.yaml is Helm to detection; these templates are handlebars.
    let dir = TempDir::new("cli-renderer");
    write_files(
        dir.path(),
        &[
            (
                "chart/Chart.yaml",
                "apiVersion: v2\nname: web\nversion: 1.0.0\n",
            ),
            (
                "chart/templates/cm.yaml",
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{release.name}}-config\n",
            ),
            ("overlay/kustomization.yaml", "resources: [cm.yaml]\n"),
            ("overlay/cm.yaml", &support::configmap("web", "1")),
        ],
    );
    let render = |path: &str, renderer: &str| {
        let output = windlass_without_cluster()
            .arg("render")
            .arg(dir.path().join(path))
            .args(["--renderer", renderer])
            .output()
            .unwrap();
        let (stdout, stderr) = text(&output);
        (output.status.code(), stdout, stderr)
    };
    let (code, stdout, stderr) = render("chart", "windlass-chart");
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("name: web-config\n"), "{stdout}");

    let (code, _, stderr) = render("overlay", "plain");
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains(
            "renderer plain: `kustomization.yaml` is not a Kubernetes object but a kustomization"
        ),
        "{stderr}"
    );
    let (code, _, stderr) = render("overlay", "helm");
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("overlay: renderer helm: no Chart.yaml here"),
        "{stderr}"
    );
    let (code, _, stderr) = render("overlay", "jsonnet");
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("invalid value 'jsonnet' for '--renderer"),
        "{stderr}"
    );
}

#[test]
fn render_builds_an_overlay_path_whose_base_is_outside_it() {
    // In this checkout, tests/fixtures/kustomize/overlays/staging has
    // `resources: [../../base]`.
    let overlay = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/kustomize/overlays/staging"
    );
    let tools = Command::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/local/tools.sh"
    ))
    .arg("build")
    .output()
    .unwrap();
    assert!(tools.status.success(), "{:?}", text(&tools));
    let tools = String::from_utf8(tools.stdout).unwrap();
    let kustomize = tools
        .lines()
        .find(|line| line.ends_with("/kustomize"))
        .unwrap();
    let output = windlass_without_cluster()
        .args(["render", overlay, "--kustomize-bin", kustomize])
        .output()
        .unwrap();
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("name: staging-web\n") && stdout.contains("namespace: staging\n"),
        "{stdout}"
    );
    assert!(stderr.contains("rendered 4 objects,"), "{stderr}");
}

#[tokio::test]
async fn check_passes_against_the_cluster_and_reports_its_version() {
    let client = support::client().await;
    let version = client.apiserver_version().await.unwrap().git_version;

    let output = support::windlass()
        .args(["check", "-n", "default"])
        .output()
        .unwrap();
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(
        stdout.contains(&format!("Kubernetes {version}")),
        "{stdout}"
    );
    assert!(
        stdout.contains("server-side apply dry-run accepted"),
        "{stdout}"
    );
    assert!(stdout.ends_with("all checks passed\n"), "{stdout}");
}

#[test]
fn check_fails_a_missing_namespace_with_the_servers_message() {
    let output = support::windlass()
        .args(["check", "-n", "windlass-no-such-namespace"])
        .output()
        .unwrap();
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stdout.contains(
            "[fail] apply      server-side apply dry-run in namespace windlass-no-such-namespace \
             was refused: namespaces \"windlass-no-such-namespace\" not found (NotFound, 404)"
        ),
        "{stdout}"
    );
}

#[test]
fn a_missing_kubeconfig_is_an_error_naming_the_file() {
    let output = windlass_without_cluster()
        .args(["check", "--kubeconfig", "/nonexistent/windlass.kubeconfig"])
        .output()
        .unwrap();
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.starts_with("error: cannot read kubeconfig `/nonexistent/windlass.kubeconfig`"),
        "{stderr}"
    );
}

#[test]
fn an_unreachable_server_is_an_error_naming_it_without_leaking_the_token() {
    // A port that was free a moment ago: nothing listens there.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = std::env::temp_dir().join(format!("windlass-cli-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let kubeconfig = dir.join("unreachable.kubeconfig");
    let token = "s3cr3t-token-must-not-leak";
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\n\
             clusters: [{{name: c, cluster: {{server: 'https://127.0.0.1:{port}'}}}}]\n\
             users: [{{name: u, user: {{token: {token}}}}}]\n\
             contexts: [{{name: x, context: {{cluster: c, user: u}}}}]\n\
             current-context: x\n"
        ),
    )
    .unwrap();

    let output = windlass_without_cluster()
        .arg("check")
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args(["-vv"])
        .output()
        .unwrap();
    let (stdout, stderr) = text(&output);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(output.status.code(), Some(2), "{stdout}\n{stderr}");
    assert!(
        stderr.contains(&format!(
            "error: the API server at https://127.0.0.1:{port}/ did not answer"
        )),
        "{stderr}"
    );
    assert!(stderr.contains("Connection refused"), "{stderr}");
    assert!(!stdout.contains(token) && !stderr.contains(token));
}

#[tokio::test]
async fn an_api_version_the_server_does_not_serve_names_the_ones_it_does() {
    with_namespace("cli-kinds", |_client, ns| async move {
        let dir = TempDir::new("cli-kinds");
        write_files(
            dir.path(),
            &[(
                "pdb.yaml",
                "apiVersion: policy/v1beta1\nkind: PodDisruptionBudget\nmetadata:\n  name: web\n\
                 spec:\n  minAvailable: 1\n  selector:\n    matchLabels: {app: web}\n",
            )],
        );
        let output = support::windlass()
            .args(["diff", "--dir", dir.path().to_str().unwrap(), "-n", &ns])
            .output()
            .unwrap();
        let (stdout, stderr) = text(&output);
        assert_eq!(output.status.code(), Some(2), "{stdout}\n{stderr}");
        assert!(
            stderr.contains(
                "`pdb.yaml` document 1: policy/v1beta1 PodDisruptionBudget `web`: the server does not serve \
                 PodDisruptionBudget in policy/v1beta1; the server serves PodDisruptionBudget as \
                 policy/v1"
            ),
            "{stderr}"
        );
    })
    .await;
}

/// A chart whose one ConfigMap shows `values.greeting`.
fn greeting_chart(dir: &std::path::Path) {
    write_files(
        dir,
        &[
            ("Chart.yaml", "name: greeter\nversion: 0.1.0\n"),
            ("values.yaml", "greeting: hello\n"),
            (
                "templates/cm.yaml",
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: greeting\n\
                 data:\n  greeting: {{quote values.greeting}}\n",
            ),
        ],
    );
}

#[tokio::test]
async fn diff_and_sync_take_values_files_with_dash_f_and_durations_in_seconds() {
    with_namespace("cli-values", |_client, ns| async move {
        let dir = TempDir::new("cli-values");
        greeting_chart(&dir.path().join("chart"));
        let values = dir.path().join("values.yaml");
        std::fs::write(&values, "greeting: from-a-values-file\n").unwrap();
        let chart = dir.path().join("chart");
        let target = [
            "--dir",
            chart.to_str().unwrap(),
            "-n",
            &ns,
            "-f",
            values.to_str().unwrap(),
        ];

        let output = support::windlass()
            .arg("diff")
            .args(target)
            .output()
            .unwrap();
        let (stdout, stderr) = text(&output);
        assert_eq!(output.status.code(), Some(1), "{stdout}\n{stderr}");
        assert!(stdout.contains("from-a-values-file"), "{stdout}");

        let output = support::windlass()
            .arg("sync")
            .args(target)
            .args([
                "--timeout",
                "90",
                "--lock-timeout",
                "30",
                "--git-timeout",
                "2m",
            ])
            .output()
            .unwrap();
        let (stdout, stderr) = text(&output);
        assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");
        assert!(stdout.contains("revision 1 deployed"), "{stdout}");
    })
    .await;
}

#[tokio::test]
async fn an_application_manifest_given_to_dash_f_is_an_error_that_says_so() {
    with_namespace("cli-app-file", |_client, ns| async move {
        let dir = TempDir::new("cli-app-file");
        let app = dir.path().join("app.yaml");
        std::fs::write(
            &app,
            "apiVersion: windlass.dev/v1alpha1\nkind: Application\nmetadata:\n  name: web\n\
             spec:\n  source:\n    repoURL: /nowhere\n",
        )
        .unwrap();
        let output = support::windlass()
            .args(["diff", "-n", &ns, "-f", app.to_str().unwrap()])
            .output()
            .unwrap();
        let (stdout, stderr) = text(&output);
        assert_eq!(output.status.code(), Some(2), "{stdout}\n{stderr}");
        assert!(
            stderr.contains("is an Application manifest: pass it with --app-file; -f is --values"),
            "{stderr}"
        );
    })
    .await;
}

/// Runs `body` with a client and the name of a namespace that does not
/// exist; deletes it afterwards if the body created it, whether the body
/// passed or panicked.
async fn with_missing_namespace<F, Fut>(purpose: &str, body: F)
where
    F: FnOnce(kube::Client, String) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let client = support::client().await;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let namespace = format!("wl-{purpose}-{}-{nanos}", std::process::id());
    let outcome = tokio::spawn(body(client.clone(), namespace.clone())).await;
    let namespaces: Api<Namespace> = Api::all(client);
    let _ = namespaces
        .delete(&namespace, &DeleteParams::default())
        .await;
    if let Err(error) = outcome {
        std::panic::resume_unwind(error.into_panic());
    }
}

fn windlass_in(args: &[&str], dir: &std::path::Path, ns: &str) -> (Option<i32>, String, String) {
    let output = support::windlass()
        .args(args)
        .arg("--dir")
        .arg(dir)
        .args(["-n", ns, "--name", "app"])
        .output()
        .unwrap();
    let (stdout, stderr) = text(&output);
    (output.status.code(), stdout, stderr)
}

#[tokio::test]
async fn diff_and_sync_agree_that_a_missing_records_namespace_is_an_error() {
    with_missing_namespace("cli-no-ns", |client, ns| async move {
        let dir = TempDir::new("cli-no-ns");
        write_files(dir.path(), &[("cm.yaml", &support::configmap("a", "1"))]);
        let expected = format!(
            "error: namespace {ns} does not exist, and it holds the application's revision \
             records: create it first (kubectl create namespace {ns}, or pass --create-namespace)"
        );
        for verb in ["diff", "sync"] {
            let (code, stdout, stderr) = windlass_in(&[verb], dir.path(), &ns);
            assert_eq!(code, Some(2), "{verb}:\n{stdout}\n{stderr}");
            assert!(stderr.starts_with(&expected), "{verb}: {stderr}");
        }
        let namespaces: Api<Namespace> = Api::all(client);
        assert!(namespaces.get_opt(&ns).await.unwrap().is_none());
    })
    .await;
}

#[tokio::test]
async fn create_namespace_shows_then_creates_the_missing_namespace() {
    with_missing_namespace("cli-create-ns", |client, ns| async move {
        let dir = TempDir::new("cli-create-ns");
        write_files(dir.path(), &[("cm.yaml", &support::configmap("a", "1"))]);

        let (code, stdout, stderr) = windlass_in(&["diff", "--create-namespace"], dir.path(), &ns);
        assert_eq!(code, Some(1), "{stdout}\n{stderr}");
        assert!(stdout.contains("+kind: Namespace"), "{stdout}");
        assert!(stdout.contains(&format!("+  name: {ns}")), "{stdout}");
        assert!(stdout.contains("+kind: ConfigMap"), "{stdout}");
        assert!(stdout.contains("2 to create, 0 to update"), "{stdout}");
        let namespaces: Api<Namespace> = Api::all(client.clone());
        assert!(
            namespaces.get_opt(&ns).await.unwrap().is_none(),
            "diff wrote"
        );

        let (code, stdout, stderr) = windlass_in(
            &["sync", "--create-namespace", "--no-wait"],
            dir.path(),
            &ns,
        );
        assert_eq!(code, Some(0), "{stdout}\n{stderr}");
        assert!(
            stdout.contains(&format!("created namespace {ns} (--create-namespace)")),
            "{stdout}"
        );
        let namespace = namespaces.get(&ns).await.unwrap();
        let labels = namespace.metadata.labels.unwrap_or_default();
        assert_eq!(
            labels
                .get("app.kubernetes.io/managed-by")
                .map(String::as_str),
            Some("windlass"),
            "{labels:?}"
        );
        let configmaps: Api<ConfigMap> = Api::namespaced(client, &ns);
        assert!(configmaps.get_opt("a").await.unwrap().is_some());

        let (code, stdout, stderr) = windlass_in(&["diff"], dir.path(), &ns);
        assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    })
    .await;
}

#[tokio::test]
async fn diff_lists_what_the_server_would_reject_without_claiming_nothing_was_written() {
    with_namespace("cli-reject", |_client, ns| async move {
        let dir = TempDir::new("cli-reject");
        write_files(
            dir.path(),
            &[(
                "bad.yaml",
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: bad\ndata:\n  \"bad key!\": x\n",
            )],
        );
        let (code, stdout, stderr) = windlass_in(&["diff"], dir.path(), &ns);
        assert_eq!(code, Some(2), "{stdout}\n{stderr}");
        assert!(
            stderr.starts_with(&format!(
                "error: the server would reject 1 object(s):\n  v1 ConfigMap {ns}/bad (`bad.yaml` \
                 document 1): "
            )),
            "{stderr}"
        );
        assert!(stderr.contains("bad key!"), "{stderr}");
        assert!(!stderr.contains("nothing was written"), "{stderr}");
    })
    .await;
}
