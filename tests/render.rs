//! `windlass render` through the real binary: the examples against expected
//! output kept in `tests/render/`, and error cases. No cluster needed.
//!
//! After an intended change of output, regenerate the expected files with
//! `WINDLASS_BLESS=1 cargo test --test render` and review the diff.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn windlass(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_windlass"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("RUST_LOG")
        .output()
        .expect("run windlass")
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).expect("stdout is UTF-8")
}

fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).expect("stderr is UTF-8")
}

/// Runs a render that must succeed and compares stdout with `tests/render/<expected>`.
fn assert_renders(args: &[&str], expected: &str) {
    let output = windlass(args);
    assert!(
        output.status.success(),
        "windlass {args:?} failed: {}",
        stderr(&output)
    );
    let actual = stdout(&output);
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/render")
        .join(expected);
    if std::env::var_os("WINDLASS_BLESS").is_some() {
        fs::write(&path, &actual).expect("write expected output");
    }
    let wanted = fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (WINDLASS_BLESS=1 writes it)", path.display()));
    assert!(
        actual == wanted,
        "windlass {args:?} differs from {}:\n--- expected\n{wanted}\n--- actual\n{actual}",
        path.display()
    );
    // Same inputs, same bytes.
    assert_eq!(stdout(&windlass(args)), actual, "second run differs");
    assert!(
        stderr(&output).contains("manifest digest sha256:"),
        "{}",
        stderr(&output)
    );
}

/// Runs a render that must fail with exit code 2; returns stderr.
fn assert_fails(args: &[&str]) -> String {
    let output = windlass(args);
    assert_eq!(
        output.status.code(),
        Some(2),
        "windlass {args:?}: stdout {} stderr {}",
        stdout(&output),
        stderr(&output)
    );
    assert!(
        output.stdout.is_empty(),
        "no partial output: {}",
        stdout(&output)
    );
    let message = stderr(&output);
    assert!(message.starts_with("error: cannot render "), "{message}");
    message
}

/// A throwaway directory, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir =
            std::env::temp_dir().join(format!("windlass-render-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("create scratch dir");
        Scratch(dir)
    }

    fn file(&self, path: &str, content: &str) -> &Scratch {
        let full = self.0.join(path);
        fs::create_dir_all(full.parent().expect("parent")).expect("create dirs");
        fs::write(full, content).expect("write file");
        self
    }

    fn path(&self) -> &str {
        self.0.to_str().expect("UTF-8 temp path")
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

#[test]
fn guestbook_plain_manifests() {
    assert_renders(
        &["render", "examples/guestbook", "-n", "guestbook"],
        "guestbook.yaml",
    );
}

#[test]
fn podinfo_chart_dev() {
    assert_renders(
        &["render", "examples/podinfo-chart", "--env", "dev"],
        "podinfo-dev.yaml",
    );
}

#[test]
fn podinfo_chart_staging() {
    assert_renders(
        &[
            "render",
            "examples/podinfo-chart",
            "--env",
            "staging",
            "-n",
            "podinfo",
        ],
        "podinfo-staging.yaml",
    );
}

#[test]
fn podinfo_chart_production() {
    assert_renders(
        &["render", "examples/podinfo-chart", "--env", "production"],
        "podinfo-production.yaml",
    );
}

#[test]
fn podinfo_chart_production_as_a_json_list() {
    assert_renders(
        &[
            "render",
            "examples/podinfo-chart",
            "--env",
            "production",
            "-o",
            "json",
        ],
        "podinfo-production.json",
    );
    let output = windlass(&[
        "render",
        "examples/podinfo-chart",
        "--env",
        "production",
        "-o",
        "json",
    ]);
    let list: serde_json::Value = serde_json::from_slice(&output.stdout).expect("valid JSON");
    assert_eq!(list["kind"], "List");
    assert_eq!(list["items"].as_array().map(Vec::len), Some(5));
}

#[test]
fn secrets_are_masked_unless_asked() {
    let masked = stdout(&windlass(&[
        "render",
        "examples/podinfo-chart",
        "--env",
        "dev",
    ]));
    assert!(masked.contains("token: \"********\""), "{masked}");
    // b64enc of the default token `change-me`.
    assert!(!masked.contains("Y2hhbmdlLW1l"), "{masked}");
    let shown = stdout(&windlass(&[
        "render",
        "examples/podinfo-chart",
        "--env",
        "dev",
        "--show-secrets",
    ]));
    assert!(shown.contains("token: Y2hhbmdlLW1l"), "{shown}");
}

#[test]
fn values_files_and_set_layer_in_order() {
    let scratch = Scratch::new("layers");
    scratch
        .file("one.yaml", "replicaCount: 7\nimage:\n  tag: \"9.9.9\"\n")
        .file("two.yaml", "replicaCount: 8\n");
    let one = format!("{}/one.yaml", scratch.path());
    let two = format!("{}/two.yaml", scratch.path());
    let output = windlass(&[
        "render",
        "examples/podinfo-chart",
        "--env",
        "production",
        "-f",
        &one,
        "-f",
        &two,
        "--set",
        "ui.message=set on the command line",
        "--set-string",
        "logLevel=1",
        "--name",
        "shop",
        "-o",
        "json",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let list: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    let items = list["items"].as_array().expect("items");
    let deployment = items
        .iter()
        .find(|i| i["kind"] == "Deployment")
        .expect("a Deployment");
    assert_eq!(deployment["metadata"]["name"], "shop");
    assert_eq!(deployment["spec"]["replicas"], 8);
    assert_eq!(
        deployment["spec"]["template"]["spec"]["containers"][0]["image"],
        "ghcr.io/stefanprodan/podinfo:9.9.9"
    );
    let config = items
        .iter()
        .find(|i| i["kind"] == "ConfigMap")
        .expect("a ConfigMap");
    assert_eq!(
        config["data"]["PODINFO_UI_MESSAGE"],
        "set on the command line"
    );
    assert_eq!(config["data"]["PODINFO_LEVEL"], "1");
}

#[test]
fn set_takes_helms_syntax_commas_lists_and_indexes() {
    let scratch = Scratch::new("set-syntax");
    scratch
        .file("Chart.yaml", "name: web\nversion: 0.1.0\n")
        .file("values.yaml", "ports: [80, 443]\nhosts: [old.example]\n")
        .file(
            "templates/cm.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{values.name}}\ndata:\n  \
             tier: {{quote values.tier}}\n  hosts: {{quote (join \",\" values.hosts)}}\n  \
             ports: {{quote (toJson values.ports)}}\n  flags: {{quote values.flags}}\n",
        );
    let output = windlass(&[
        "render",
        scratch.path(),
        "--set",
        "name=web,tier=frontend",
        "--set",
        "hosts={a.example,b.example}",
        "--set",
        "ports[1]=8443",
        "--set",
        r"flags=search\,checkout",
        "-o",
        "json",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let list: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    let data = &list["items"][0]["data"];
    assert_eq!(list["items"][0]["metadata"]["name"], "web");
    assert_eq!(data["tier"], "frontend");
    assert_eq!(data["hosts"], "a.example,b.example");
    assert_eq!(data["ports"], "[80,8443]");
    assert_eq!(data["flags"], "search,checkout");

    // An unescaped comma inside a value is an error that shows no part of
    // the value.
    let message = assert_fails(&[
        "render",
        scratch.path(),
        "--set",
        "name=web,tier=hunter2,sesame",
    ]);
    assert!(
        message.contains("`--set tier=...`: the text after a comma has no `=`"),
        "{message}"
    );
    assert!(
        !message.contains("hunter2") && !message.contains("sesame"),
        "{message}"
    );
}

#[test]
fn unknown_environment_lists_the_environments() {
    let message = assert_fails(&["render", "examples/podinfo-chart", "--env", "qa"]);
    assert!(
        message.contains(
            "chart `podinfo` has no environment `qa` (no values/qa.yaml); environments: dev, \
             production, staging"
        ),
        "{message}"
    );
}

#[test]
fn missing_value_names_template_line_and_path() {
    let message = assert_fails(&[
        "render",
        "examples/podinfo-chart",
        "--env",
        "dev",
        "--set",
        "ui=null",
    ]);
    assert!(
        message.contains(
            "chart `podinfo`: template `templates/configmap.yaml` line 8: missing value \
             `values.ui.message`"
        ),
        "{message}"
    );
}

#[test]
fn required_values_fail_with_the_charts_message() {
    // values.yaml leaves image.tag to the environments.
    let message = assert_fails(&["render", "examples/podinfo-chart"]);
    assert!(
        message.contains(
            "chart `podinfo`: template `templates/_labels.tpl` (partial `labels`) line 3: \
             required value missing: image.tag is not set: pick an environment with --env"
        ),
        "{message}"
    );
}

#[test]
fn malformed_yaml_names_file_line_and_column() {
    let scratch = Scratch::new("malformed");
    scratch.file(
        "app.yaml",
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\nstringData:\n  password: [hunter2\n",
    );
    let message = assert_fails(&["render", scratch.path()]);
    assert!(
        message.contains("`app.yaml`: document 1, line "),
        "{message}"
    );
    assert!(message.contains(" column "), "{message}");
    assert!(!message.contains("hunter2"), "{message}");
    // The cause is said once, not repeated by the error chain.
    assert_eq!(message.matches("line ").count(), 1, "{message}");
}

#[test]
fn yaml11_booleans_are_refused_with_advice() {
    let scratch = Scratch::new("yaml11");
    scratch.file(
        "cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\ndata:\n  enabled: on\n",
    );
    let message = assert_fails(&["render", scratch.path()]);
    assert!(
        message.contains("`cm.yaml`: document 1, line 6 column 12: unquoted value")
            && message.contains("quote it (\"yes\")"),
        "{message}"
    );
}

#[test]
fn not_a_kubernetes_object_names_the_document() {
    let scratch = Scratch::new("notobject");
    scratch.file(
        "settings.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n---\nlog: debug\n",
    );
    let message = assert_fails(&["render", scratch.path()]);
    assert!(
        message.contains("`settings.yaml` document 2: not a Kubernetes object"),
        "{message}"
    );
}

#[test]
fn template_errors_name_the_template_and_line() {
    let scratch = Scratch::new("template");
    scratch
        .file("Chart.yaml", "name: broken\nversion: 0.1.0\n")
        .file(
            "templates/cm.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{values.name}}\n",
        );
    let message = assert_fails(&["render", scratch.path()]);
    assert!(
        message.contains(
            "chart `broken`: template `templates/cm.yaml` line 4: missing value `values.name`"
        ),
        "{message}"
    );
    let output = windlass(&["render", scratch.path(), "--set", "name=fixed"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stdout(&output).contains("name: fixed"));
}

#[test]
fn a_missing_directory_is_an_error() {
    let message = assert_fails(&["render", "examples/does-not-exist"]);
    assert!(message.contains("examples/does-not-exist"), "{message}");
}

#[test]
fn every_files_errors_come_in_one_run() {
    let scratch = Scratch::new("many");
    let config_map =
        |name: &str| format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n");
    scratch
        .file(
            "a-secret.yaml",
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\nstringData:\n  password: [hunter2\n",
        )
        .file(
            "b-volume.yaml",
            &format!("{}data:\n  enabled: yes\n  mode: 0755\n", config_map("b")),
        )
        .file(
            "c-keys.yaml",
            &format!("{}data:\n  k: \"1\"\n  k: \"2\"\n", config_map("c")),
        )
        .file("d-settings.yaml", "log: debug\n")
        .file("e-same.yaml", &config_map("same"))
        .file("f-same.yaml", &config_map("same"));
    let message = assert_fails(&["render", scratch.path()]);
    let lines: Vec<&str> = message.lines().collect();
    assert!(lines[0].ends_with(": 6 errors:"), "{message}");
    let expected = [
        "- `a-secret.yaml`: document 1, line ",
        "- `b-volume.yaml`: document 1, line 6 column 12: unquoted value",
        "- `b-volume.yaml`: document 1, line 7 column 9: unquoted value with a leading zero",
        "- `c-keys.yaml`: document 1, line 7 column 3: duplicate mapping key `k`",
        "- `d-settings.yaml` document 1: not a Kubernetes object",
        "- ConfigMap same -n default is defined twice: in `e-same.yaml` document 1 and in \
         `f-same.yaml` document 1",
    ];
    assert_eq!(lines.len(), 1 + expected.len(), "{message}");
    for (line, start) in lines[1..].iter().zip(expected) {
        assert!(line.starts_with(start), "{start}\n{message}");
    }
    assert!(lines[1].contains(" column "), "{message}");
    assert!(!message.contains("hunter2"), "{message}");
}

#[test]
fn binary_values_are_sent_as_kubectl_sends_them() {
    // kubectl reads `!!binary` through sigs.k8s.io/yaml (go-yaml v2): the
    // base64 is decoded and the bytes are sent as the JSON string, once.
    let scratch = Scratch::new("binary");
    scratch.file(
        "app.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\ndata:\n  \
         greeting: !!binary aGVsbG8=\n  wrapped: !!binary |\n    aGVs\n    bG8=\n\
         ---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: s\ndata:\n  \
         token: !!binary Y2hhbmdlLW1l\n",
    );
    let output = windlass(&["render", scratch.path(), "-o", "json", "--show-secrets"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let list: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON output");
    assert_eq!(
        list["items"][0]["data"],
        serde_json::json!({"greeting": "hello", "wrapped": "hello"})
    );
    // What kubectl sends for the Secret too: the decoded text (which the
    // API server, reading `data` as base64, refuses for kubectl alike).
    assert_eq!(
        list["items"][1]["data"],
        serde_json::json!({"token": "change-me"})
    );

    scratch.file(
        "app.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\ndata:\n  a: !!binary aGVsbG8\n",
    );
    let message = assert_fails(&["render", scratch.path()]);
    assert!(
        message.contains(
            "`app.yaml`: document 1, line 6 column 15: a `!!binary` value that is not valid base64"
        ),
        "{message}"
    );
}

#[test]
fn the_leading_zero_hint_gives_octal_and_decimal_spellings() {
    let scratch = Scratch::new("leading-zero");
    scratch.file(
        "pod.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n  volumes:\n    - name: v\n      \
         configMap:\n        name: c\n        defaultMode: 0755\n",
    );
    let message = assert_fails(&["render", scratch.path()]);
    assert!(
        message.contains(
            "`pod.yaml`: document 1, line 10 column 22: unquoted value with a leading zero"
        ),
        "{message}"
    );
    for advice in [
        "0755 → 0o755",
        "0755 → 493",
        "only if the field is a string",
    ] {
        assert!(message.contains(advice), "{advice}: {message}");
    }
    // Following the advice renders the number Kubernetes would have read.
    for spelling in ["0o755", "493"] {
        scratch.file(
            "pod.yaml",
            &format!(
                "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n  volumes:\n    - name: \
                 v\n      configMap:\n        name: c\n        defaultMode: {spelling}\n"
            ),
        );
        let output = windlass(&["render", scratch.path()]);
        assert!(output.status.success(), "{}", stderr(&output));
        assert!(
            stdout(&output).contains("defaultMode: 493"),
            "{}",
            stdout(&output)
        );
    }
}

#[test]
fn duplicate_keys_are_named_in_manifests_and_values_files() {
    let scratch = Scratch::new("duplicate-keys");
    scratch
        .file("Chart.yaml", "name: dup\nversion: 0.1.0\n")
        .file("values.yaml", "replicas: 1\nreplicas: 2\n")
        .file(
            "templates/cm.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n",
        );
    let message = assert_fails(&["render", scratch.path()]);
    assert!(
        message.contains(
            "`values.yaml`: document 1, line 2 column 1: duplicate mapping key `replicas`"
        ),
        "{message}"
    );
    let extra = Scratch::new("duplicate-keys-extra");
    extra.file("extra.yaml", "image:\n  tag: a\n  tag: b\n");
    let values = format!("{}/extra.yaml", extra.path());
    let message = assert_fails(&["render", scratch.path(), "-f", &values]);
    assert!(
        message.contains("line 3 column 3: duplicate mapping key `tag`"),
        "{message}"
    );
}
