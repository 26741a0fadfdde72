//! The `windlass` binary as a user runs it: output, exit codes, and error
//! messages that name the cause without leaking credentials.

mod support;

use std::net::TcpListener;
use std::process::{Command, Output};

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

#[test]
fn every_verb_has_working_help() {
    // clap checks a command's definition when it is first used: this catches
    // clashing argument names in any verb.
    for verb in [
        "check",
        "source",
        "render",
        "diff",
        "sync",
        "history",
        "rollback",
        "uninstall",
    ] {
        let output = windlass_without_cluster()
            .args([verb, "--help"])
            .output()
            .unwrap();
        let (stdout, stderr) = text(&output);
        assert!(output.status.success(), "{verb} --help:\n{stdout}{stderr}");
        assert!(stdout.contains("Usage: windlass"), "{verb}: {stdout}");
    }
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
