//! Tests of the whole render pipeline on in-memory trees.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::*;

fn render_tree(tree: &MemoryTree) -> Result<Rendered, Error> {
    render(&RenderInput::new(tree, "apps"))
}

fn rendered(tree: &MemoryTree) -> Rendered {
    render_tree(tree).unwrap_or_else(|e| panic!("{e}"))
}

fn failure(tree: &MemoryTree) -> String {
    match render_tree(tree) {
        Ok(r) => panic!("expected an error, rendered {} objects", r.objects.len()),
        Err(e) => e.to_string(),
    }
}

fn names(rendered: &Rendered) -> Vec<String> {
    rendered.objects.iter().map(|o| o.id.to_string()).collect()
}

fn config_map(name: &str) -> String {
    format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n")
}

// ---- plain manifests -------------------------------------------------------

#[test]
fn plain_manifests_in_path_then_document_order() {
    let tree = MemoryTree::new("plain")
        .with(
            "b.yaml",
            format!("{}---\n{}", config_map("b1"), config_map("b2")),
        )
        .with("a/z.yml", config_map("az"))
        .with(
            "a.json",
            r#"{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "aj"}}"#,
        )
        .with("README.md", "# not a manifest")
        .with(".github/workflows/ci.yaml", "on: push\n");
    let result = rendered(&tree);
    assert_eq!(
        names(&result),
        [
            "ConfigMap aj -n apps",
            "ConfigMap az -n apps",
            "ConfigMap b1 -n apps",
            "ConfigMap b2 -n apps"
        ]
    );
    let sources: Vec<_> = result
        .objects
        .iter()
        .map(|o| (o.source.path.as_str(), o.source.document))
        .collect();
    assert_eq!(
        sources,
        [("a.json", 1), ("a/z.yml", 1), ("b.yaml", 1), ("b.yaml", 2)]
    );
    assert!(result.chart.is_none());
}

#[test]
fn empty_and_comment_only_documents_are_skipped() {
    let tree = MemoryTree::new("plain")
        .with(
            "a.yaml",
            format!(
                "---\n# nothing here\n---\n\n---\n{}---\n",
                config_map("one")
            ),
        )
        .with("empty.yaml", "")
        .with("comments.yaml", "# just a comment\n");
    let result = rendered(&tree);
    assert_eq!(names(&result), ["ConfigMap one -n apps"]);
    assert_eq!(result.objects[0].source.document, 3);
}

#[test]
fn plain_manifests_are_never_templated() {
    let policy = "apiVersion: kyverno.io/v1\nkind: ClusterPolicy\nmetadata:\n  name: p\nspec:\n  \
                  message: \"{{ request.object.metadata.name }} needs {{values.x}}\"\n  \
                  raw: '{{#if x}}y{{/if}}'\n";
    let tree = MemoryTree::new("plain").with("policy.yaml", policy);
    let result = rendered(&tree);
    let object = &result.objects[0].object;
    assert_eq!(
        object["spec"]["message"],
        "{{ request.object.metadata.name }} needs {{values.x}}"
    );
    assert_eq!(object["spec"]["raw"], "{{#if x}}y{{/if}}");
}

#[test]
fn windlassignore_excludes_files_from_reading() {
    let tree = MemoryTree::new("plain")
        .with(
            ".windlassignore",
            "# drafts\ndrafts/\n*.local.yaml\n!keep.local.yaml\n",
        )
        .with("drafts/broken.yaml", "this: [is not: valid\n")
        .with("x.local.yaml", "todo: not an object\n")
        .with("keep.local.yaml", config_map("kept"))
        .with("app.yaml", config_map("app"));
    assert_eq!(
        names(&rendered(&tree)),
        ["ConfigMap app -n apps", "ConfigMap kept -n apps"]
    );
    // Without the ignore file both are errors.
    let tree = MemoryTree::new("plain").with("x.local.yaml", "todo: not an object\n");
    assert!(failure(&tree).contains("`x.local.yaml` document 1"));
}

#[test]
fn v1_lists_are_expanded() {
    let list = format!(
        "apiVersion: v1\nkind: List\nitems:\n- {}\n- {}\n",
        r#"{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}}"#,
        r#"{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "b"}}"#
    );
    let result = rendered(&MemoryTree::new("plain").with("list.yaml", list));
    assert_eq!(
        names(&result),
        ["ConfigMap a -n apps", "ConfigMap b -n apps"]
    );
    assert_eq!(result.objects[1].source.item, Some(2));
    assert_eq!(
        result.objects[1].source.to_string(),
        "`list.yaml` document 1 item 2"
    );
}

#[test]
fn files_that_are_not_objects_name_file_and_document() {
    let cases = [
        (
            "kind: ConfigMap\nmetadata:\n  name: x\n",
            "`bad.yaml` document 2: not a Kubernetes object: `apiVersion` is missing",
        ),
        (
            "apiVersion: v1\nmetadata:\n  name: x\n",
            "`bad.yaml` document 2: not a Kubernetes object: `kind` is missing",
        ),
        (
            "apiVersion: v1\nkind: ConfigMap\n",
            "`bad.yaml` document 2: not a Kubernetes object: `metadata.name` is missing",
        ),
        (
            "- a\n- b\n",
            "`bad.yaml` document 2: not a Kubernetes object: expected a map with apiVersion, \
             kind and metadata, found a list",
        ),
        ("just text\n", "found a string"),
        (
            "apiVersion: a/b/c\nkind: X\nmetadata:\n  name: x\n",
            "`apiVersion` must be",
        ),
    ];
    for (second, expected) in cases {
        let tree = MemoryTree::new("plain")
            .with("bad.yaml", format!("{}---\n{second}", config_map("fine")));
        let message = failure(&tree);
        assert!(message.contains(expected), "{second:?}: {message}");
    }
}

#[test]
fn generate_name_is_refused() {
    let tree = MemoryTree::new("plain").with(
        "job.yaml",
        "apiVersion: batch/v1\nkind: Job\nmetadata:\n  generateName: migrate-\n",
    );
    let message = failure(&tree);
    assert!(
        message.contains("`job.yaml` document 1: metadata.generateName is not supported")
            && message.contains("stable name"),
        "{message}"
    );
}

#[test]
fn duplicates_name_both_sources() {
    let tree = MemoryTree::new("plain")
        .with("a.yaml", config_map("same"))
        .with(
            "b.yaml",
            format!("{}---\n{}", config_map("other"), config_map("same")),
        );
    assert_eq!(
        failure(&tree),
        "ConfigMap same -n apps is defined twice: in `a.yaml` document 1 and in `b.yaml` \
         document 2"
    );
    // The same name is fine in another namespace, kind or group.
    let tree = MemoryTree::new("plain")
        .with("a.yaml", config_map("same"))
        .with(
            "b.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: same\n  namespace: other\n",
        )
        .with(
            "c.yaml",
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: same\n",
        );
    assert_eq!(rendered(&tree).objects.len(), 3);
    // A defaulted namespace counts: `apps` is the destination.
    let tree = MemoryTree::new("plain")
        .with("a.yaml", config_map("same"))
        .with(
            "b.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: same\n  namespace: apps\n",
        );
    assert!(failure(&tree).contains("defined twice"));
}

#[test]
fn namespaces_are_defaulted_only_for_namespaced_kinds() {
    let tree = MemoryTree::new("plain")
        .with("cm.yaml", config_map("c"))
        .with(
            "explicit.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: e\n  namespace: elsewhere\n",
        )
        .with(
            "ns.yaml",
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: apps\n",
        )
        .with(
            "role.yaml",
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: r\n",
        );
    let result = rendered(&tree);
    let by_name: BTreeMap<_, _> = result
        .objects
        .iter()
        .map(|o| (o.id.name.clone(), o))
        .collect();
    assert_eq!(by_name["c"].id.namespace.as_deref(), Some("apps"));
    assert_eq!(by_name["c"].object["metadata"]["namespace"], "apps");
    assert_eq!(by_name["e"].id.namespace.as_deref(), Some("elsewhere"));
    assert_eq!(by_name["apps"].id.namespace, None);
    assert!(
        by_name["apps"].object["metadata"]
            .get("namespace")
            .is_none()
    );
    assert_eq!(by_name["r"].id.namespace, None);

    let tree = MemoryTree::new("plain").with(
        "ns.yaml",
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: x\n  namespace: apps\n",
    );
    assert_eq!(
        failure(&tree),
        "`ns.yaml` document 1: Namespace is cluster-scoped but has metadata.namespace `apps`; \
         remove the namespace"
    );
}

#[test]
fn crds_in_the_render_and_caller_lookup_decide_scope() {
    let crd = "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  \
               name: clusters.example.com\nspec:\n  group: example.com\n  scope: Cluster\n  \
               names:\n    kind: Cluster\n    plural: clusters\n";
    let custom = "apiVersion: example.com/v1\nkind: Cluster\nmetadata:\n  name: main\n";
    // The custom resource sorts before its CRD: scope is decided after all
    // documents are read.
    let tree = MemoryTree::new("plain")
        .with("a-custom.yaml", custom)
        .with("b-crd.yaml", crd);
    let result = rendered(&tree);
    assert_eq!(
        names(&result),
        [
            "Cluster.example.com main",
            "CustomResourceDefinition.apiextensions.k8s.io clusters.example.com"
        ]
    );

    let tree = MemoryTree::new("plain").with(
        "widget.yaml",
        "apiVersion: other.io/v1\nkind: Widget\nmetadata:\n  name: w\n",
    );
    assert_eq!(names(&rendered(&tree)), ["Widget.other.io w -n apps"]);
    let discovery: BTreeMap<(String, String), bool> =
        [(("other.io".to_string(), "Widget".to_string()), false)]
            .into_iter()
            .collect();
    let mut input = RenderInput::new(&tree, "apps");
    input.scopes = Some(&discovery);
    assert_eq!(names(&render(&input).unwrap()), ["Widget.other.io w"]);
}

#[test]
fn malformed_yaml_names_file_document_line_and_column() {
    let tree = MemoryTree::new("plain").with(
        "secret.yaml",
        format!(
            "{}---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: s\nstringData:\n  \
             password: \"hunter2\n",
            config_map("c")
        ),
    );
    let message = failure(&tree);
    assert!(
        message.starts_with("`secret.yaml`: document 2, line "),
        "{message}"
    );
    assert!(message.contains(" column "), "{message}");
    assert!(!message.contains("hunter2"), "{message}");

    let tree = MemoryTree::new("plain").with("bad.yaml", "a: 1\n b: 2\n");
    let message = failure(&tree);
    assert!(
        message.starts_with("`bad.yaml`: document 1, line 2 column "),
        "{message}"
    );
}

#[test]
fn yaml11_traps_are_refused_in_plain_manifests() {
    let tree = MemoryTree::new("plain").with(
        "cm.yaml",
        format!("{}data:\n  enabled: yes\n", config_map("c")),
    );
    let message = failure(&tree);
    assert!(
        message.starts_with("`cm.yaml`: document 1, line 6 column 12: unquoted value"),
        "{message}"
    );
}

#[test]
fn never_a_partial_result() {
    // The first file is fine, the last one is not: nothing comes back.
    let tree = MemoryTree::new("plain")
        .with("a.yaml", config_map("a"))
        .with("z.yaml", "apiVersion: v1\nkind: ConfigMap\n");
    assert!(render_tree(&tree).is_err());
}

#[test]
fn values_and_environments_need_a_chart() {
    let tree = MemoryTree::new("plain").with("a.yaml", config_map("a"));
    let mut input = RenderInput::new(&tree, "apps");
    input.environment = Some("dev".into());
    let message = render(&input).unwrap_err().to_string();
    assert_eq!(
        message,
        "plain has no Chart.yaml and no kustomization.yaml, so it holds plain manifests, which \
         are not templated and take no environment"
    );
    let mut input = RenderInput::new(&tree, "apps");
    input.set.extend(SetValue::parse("a=1").unwrap());
    assert!(
        render(&input)
            .unwrap_err()
            .to_string()
            .ends_with("take no values")
    );
}

// ---- every error in one run ------------------------------------------------

#[test]
fn every_files_errors_come_back_in_one_run() {
    let tree = MemoryTree::new("plain")
        .with("a-malformed.yaml", "a: 1\n b: 2\n")
        .with(
            "b-traps.yaml",
            format!("{}data:\n  enabled: yes\n  mode: 0755\n", config_map("b")),
        )
        .with(
            "c-keys.yaml",
            format!("{}data:\n  k: \"1\"\n  k: \"2\"\n", config_map("c")),
        )
        .with("d-not-object.yaml", "log: debug\n")
        .with("e-same.yaml", config_map("same"))
        .with("f-fine.yaml", config_map("fine"))
        .with(
            "g-same.yaml",
            format!("{}---\n{}", config_map("other"), config_map("same")),
        )
        .with("h-bytes.yaml", b"a: \xff\n".to_vec());
    let error = render_tree(&tree).unwrap_err();
    let Error::Many { errors, more } = &error else {
        panic!("expected several errors: {error}");
    };
    assert_eq!((errors.len(), *more), (7, 0), "{error}");
    let message = error.to_string();
    let lines: Vec<&str> = message.lines().collect();
    // Files in path order; identities are compared once all are read.
    let expected_starts = [
        "7 errors:",
        "- `a-malformed.yaml`: document 1, line 2 column ",
        "- `b-traps.yaml`: document 1, line 6 column 12: unquoted value that Kubernetes (YAML \
         1.1) reads as a boolean",
        "- `b-traps.yaml`: document 1, line 7 column 9: unquoted value with a leading zero",
        "- `c-keys.yaml`: document 1, line 7 column 3: duplicate mapping key `k`",
        "- `d-not-object.yaml` document 1: not a Kubernetes object: `apiVersion` is missing",
        "- `h-bytes.yaml` is not UTF-8 text",
        "- ConfigMap same -n apps is defined twice: in `e-same.yaml` document 1 and in \
         `g-same.yaml` document 2",
    ];
    assert_eq!(lines.len(), expected_starts.len(), "{message}");
    for (line, start) in lines.iter().zip(expected_starts) {
        assert!(line.starts_with(start), "{start}\n{message}");
    }
}

#[test]
fn one_error_comes_back_as_itself() {
    let tree = MemoryTree::new("plain")
        .with("a.yaml", config_map("a"))
        .with("b.yaml", "a: 1\na: 2\n");
    let error = render_tree(&tree).unwrap_err();
    assert!(matches!(error, Error::Yaml { .. }), "{error:?}");
    assert_eq!(
        error.to_string(),
        "`b.yaml`: document 1, line 2 column 1: duplicate mapping key `a`"
    );
}

#[test]
fn errors_are_limited_with_a_count_of_the_rest() {
    let mut tree = MemoryTree::new("plain");
    for i in 0..(MAX_ERRORS + 5) {
        tree.insert(format!("f{i:02}.yaml"), "enabled: on\n");
    }
    let message = failure(&tree);
    let lines: Vec<&str> = message.lines().collect();
    assert_eq!(lines.len(), 1 + MAX_ERRORS + 1, "{message}");
    assert_eq!(lines[0], format!("{} errors:", MAX_ERRORS + 5));
    assert!(lines[1].starts_with("- `f00.yaml`: "), "{message}");
    assert!(lines[MAX_ERRORS].starts_with("- `f19.yaml`: "), "{message}");
    assert_eq!(lines[MAX_ERRORS + 1], "- … and 5 more errors");
    // The count covers errors past the limit inside one file, too.
    let many: String = (0..(MAX_ERRORS + 3))
        .map(|i| format!("k{i}: off\n"))
        .collect();
    let tree = MemoryTree::new("plain")
        .with("a.yaml", "x: y\n")
        .with("b.yaml", many);
    let message = failure(&tree);
    assert!(
        message.starts_with(&format!("{} errors:", MAX_ERRORS + 4)),
        "{message}"
    );
    assert!(message.ends_with("\n- … and 4 more errors"), "{message}");
}

#[test]
fn the_total_size_limit_ends_the_render_with_what_was_found() {
    let tree = MemoryTree::new("plain")
        .with("a.yaml", "x: yes\n")
        .with("b.yaml", config_map("b"))
        .with("c.yaml", "y: no\n");
    let mut input = RenderInput::new(&tree, "apps");
    input.limits.max_total_bytes = 20;
    let message = render(&input).unwrap_err().to_string();
    let lines: Vec<&str> = message.lines().collect();
    assert_eq!(lines.len(), 3, "{message}");
    assert!(lines[1].starts_with("- `a.yaml`: "), "{message}");
    assert!(lines[2].contains("limit of 20 bytes in total"), "{message}");
}

#[test]
fn binary_values_render_as_kubectl_sends_them() {
    // kubectl (sigs.k8s.io/yaml, go-yaml v2) sends the decoded bytes.
    let tree = MemoryTree::new("plain").with(
        "cm.yaml",
        format!("{}data:\n  greeting: !!binary aGVsbG8=\n", config_map("c")),
    );
    let plain = MemoryTree::new("plain").with(
        "cm.yaml",
        format!("{}data:\n  greeting: hello\n", config_map("c")),
    );
    let binary = rendered(&tree);
    assert_eq!(
        binary.objects[0].object["data"],
        json!({"greeting": "hello"})
    );
    assert_eq!(binary.manifest_digest, rendered(&plain).manifest_digest);
}

// ---- limits ----------------------------------------------------------------

#[test]
fn each_limit_is_its_own_error() {
    let tree = MemoryTree::new("plain")
        .with("a.yaml", config_map("a"))
        .with(
            "b.yaml",
            format!("{}---\n{}", config_map("b"), config_map("c")),
        );
    let with = |change: &dyn Fn(&mut Limits)| {
        let mut input = RenderInput::new(&tree, "apps");
        change(&mut input.limits);
        render(&input).map(|_| ()).map_err(|e| e.to_string())
    };
    // Each file over the limit is named, in one run.
    assert_eq!(
        with(&|l| l.max_file_bytes = 50).unwrap_err(),
        "2 errors:\n\
         - plain: `a.yaml` is 51 bytes, more than the limit of 50 bytes per file\n\
         - plain: `b.yaml` is 106 bytes, more than the limit of 50 bytes per file"
    );
    assert_eq!(
        with(&|l| l.max_file_bytes = 51).unwrap_err(),
        "plain: `b.yaml` is 106 bytes, more than the limit of 51 bytes per file"
    );
    assert!(
        with(&|l| l.max_total_bytes = 100)
            .unwrap_err()
            .contains("more than the limit of 100 bytes in total")
    );
    assert_eq!(
        with(&|l| l.max_documents = 2).unwrap_err(),
        "the render holds more than the limit of 2 documents"
    );
    let message = with(&|l| l.max_documents_per_file = 1).unwrap_err();
    assert!(
        message
            .contains("`b.yaml`: document 2, line 5 column 1: more than the limit of 1 documents"),
        "{message}"
    );
    assert!(
        with(&|l| l.max_depth = 1)
            .unwrap_err()
            .contains("nesting deeper than the limit of 1 levels")
    );
    with(&|_| {}).unwrap();

    let bomb = MemoryTree::new("plain").with(
        "bomb.yaml",
        "a: &a [x, x, x, x]\nb: &b [*a, *a, *a, *a]\nc: &c [*b, *b, *b, *b]\nd: [*c, *c, *c]\n",
    );
    let mut input = RenderInput::new(&bomb, "apps");
    input.limits.max_alias_nodes = 50;
    let message = render(&input).unwrap_err().to_string();
    assert!(
        message.contains("aliases expand to more than the limit of 50 nodes"),
        "{message}"
    );
}

// ---- charts ----------------------------------------------------------------

fn chart() -> MemoryTree {
    MemoryTree::new("charts/web")
        .with(
            "Chart.yaml",
            "name: web\nversion: 1.0.0\ndescription: A web app\n",
        )
        .with(
            "values.yaml",
            "replicas: 1\nimage:\n  repository: nginx\n  tag: \"1.0\"\nports: [80, 443]\n\
             extra: {keep: me}\n",
        )
        .with("values/dev.yaml", "image:\n  tag: dev\nports: [8080]\n")
        .with("values/prod.yaml", "replicas: 3\nextra: null\n")
        .with(
            "templates/_labels.tpl",
            "app: {{release.name}}\nenv: {{quote environment}}\n",
        )
        .with(
            "templates/deployment.yaml",
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {{release.name}}\n  \
             labels:\n    {{> labels}}\nspec:\n  replicas: {{values.replicas}}\n  template:\n    \
             spec:\n      containers:\n        - name: web\n          image: \
             \"{{values.image.repository}}:{{values.image.tag}}\"\n          ports: \
             {{toJson values.ports}}\n",
        )
        .with(
            "templates/config.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{release.name}}-config\n\
             data:\n  chart: \"{{chart.name}}-{{chart.version}}\"\n  namespace: \
             {{release.namespace}}\n  extra: {{#if values.extra}}{{quote (toJson values.extra)}}\
             {{else}}none{{/if}}\n",
        )
}

fn render_chart(
    tree: &MemoryTree,
    change: impl FnOnce(&mut RenderInput<'_>),
) -> Result<Rendered, Error> {
    let mut input = RenderInput::new(tree, "shop");
    change(&mut input);
    render(&input)
}

fn find<'r>(rendered: &'r Rendered, kind: &str) -> &'r Value {
    &rendered
        .objects
        .iter()
        .find(|o| o.id.kind == kind)
        .unwrap_or_else(|| panic!("no {kind}"))
        .object
}

#[test]
fn chart_renders_with_layered_values_and_context() {
    let tree = chart();
    let result = render_chart(&tree, |i| i.environment = Some("dev".into())).unwrap();
    assert_eq!(result.chart.as_ref().unwrap().name, "web");
    assert_eq!(result.release_name.as_deref(), Some("web"));
    // Path order: config before deployment; the partial renders nothing.
    assert_eq!(
        names(&result),
        [
            "ConfigMap web-config -n shop",
            "Deployment.apps web -n shop"
        ]
    );
    let deployment = find(&result, "Deployment");
    assert_eq!(
        deployment["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx:dev"
    );
    assert_eq!(
        deployment["spec"]["template"]["spec"]["containers"][0]["ports"],
        json!([8080])
    );
    assert_eq!(
        deployment["metadata"]["labels"],
        json!({"app": "web", "env": "dev"})
    );
    let config = find(&result, "ConfigMap");
    assert_eq!(config["data"]["chart"], "web-1.0.0");
    assert_eq!(config["data"]["namespace"], "shop");
    assert_eq!(config["data"]["extra"], r#"{"keep":"me"}"#);
    assert!(result.objects.iter().all(|o| o.source.template));
}

#[test]
fn chart_layers_environment_caller_values_and_set() {
    let tree = chart();
    let result = render_chart(&tree, |i| {
        i.environment = Some("prod".into());
        i.name = Some("shop-web".into());
        i.values.push(ValuesLayer {
            name: "inline".into(),
            values: json!({"replicas": 5, "image": {"tag": "2.0"}}),
        });
        i.values.push(ValuesLayer {
            name: "second".into(),
            values: json!({"replicas": 6}),
        });
        i.set.extend(SetValue::parse("image.tag=2.1").unwrap());
        i.set
            .extend(SetValue::parse_string("image.repository=1234").unwrap());
    })
    .unwrap();
    let deployment = find(&result, "Deployment");
    assert_eq!(deployment["metadata"]["name"], "shop-web");
    assert_eq!(deployment["spec"]["replicas"], 6);
    assert_eq!(
        deployment["spec"]["template"]["spec"]["containers"][0]["image"],
        "1234:2.1"
    );
    // `extra: null` in prod removed the key.
    assert_eq!(find(&result, "ConfigMap")["data"]["extra"], "none");
}

#[test]
fn unknown_environment_lists_the_known_ones() {
    let message = render_chart(&chart(), |i| i.environment = Some("qa".into()))
        .unwrap_err()
        .to_string();
    assert_eq!(
        message,
        "chart `web` has no environment `qa` (no values/qa.yaml); environments: dev, prod"
    );
    let message = render_chart(&chart(), |i| i.environment = Some("../values".into()))
        .unwrap_err()
        .to_string();
    assert!(message.contains("is not valid"), "{message}");
}

#[test]
fn without_a_values_folder_any_environment_is_accepted() {
    let mut tree = MemoryTree::new("c")
        .with("Chart.yaml", "name: c\nversion: 0.1.0\n")
        .with(
            "templates/cm.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-{{environment}}\n",
        );
    let result = render_chart(&tree, |i| i.environment = Some("anything".into())).unwrap();
    assert_eq!(names(&result), ["ConfigMap cm-anything -n shop"]);
    tree.insert("values/README.md", "environments go here");
    let message = render_chart(&tree, |i| i.environment = Some("anything".into()))
        .unwrap_err()
        .to_string();
    assert!(
        message.ends_with("environments: none (values/ holds no .yaml files)"),
        "{message}"
    );
}

#[test]
fn each_over_a_values_map_goes_in_key_order() {
    // The defaults write `zeta` before `alpha`, and the environment adds
    // `mid` last: the template still sees the keys sorted.
    let tree = MemoryTree::new("c")
        .with("Chart.yaml", "name: c\nversion: 0.1.0\n")
        .with("values.yaml", "ports:\n  zeta: 3\n  alpha: 1\n")
        .with("values/dev.yaml", "ports:\n  mid: 2\n")
        .with(
            "templates/cm.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm\ndata:\n  \
             order: \"{{#each values.ports}}{{@key}}={{this}} {{/each}}\"\n",
        );
    let result = render_chart(&tree, |i| i.environment = Some("dev".into())).unwrap();
    assert_eq!(
        result.objects[0].object["data"]["order"],
        "alpha=1 mid=2 zeta=3 "
    );
}

#[test]
fn values_files_must_be_maps() {
    let mut tree = chart();
    tree.insert("values/dev.yaml", "- a\n- b\n");
    let message = render_chart(&tree, |i| i.environment = Some("dev".into()))
        .unwrap_err()
        .to_string();
    assert_eq!(
        message,
        "values `values/dev.yaml` are not a map of `key: value` pairs"
    );
    let message = render_chart(&chart(), |i| {
        i.values.push(ValuesLayer {
            name: "inline values".into(),
            values: json!([1]),
        })
    })
    .unwrap_err()
    .to_string();
    assert_eq!(
        message,
        "values `inline values` are not a map of `key: value` pairs"
    );
    let error =
        ValuesLayer::from_yaml("extra.yaml", "just a string\n", &Limits::default()).unwrap_err();
    assert_eq!(
        error.to_string(),
        "values `extra.yaml` are not a map of `key: value` pairs"
    );
}

#[test]
fn values_files_report_every_error_and_name_duplicate_keys() {
    let mut tree = chart();
    tree.insert(
        "values.yaml",
        "replicas: 1\nimage:\n  tag: a\n  tag: b\nreplicas: 2\n",
    );
    tree.insert("values/dev.yaml", "debug: on\n");
    let message = render_chart(&tree, |i| i.environment = Some("dev".into()))
        .unwrap_err()
        .to_string();
    assert_eq!(
        message,
        "3 errors:\n\
         - `values.yaml`: document 1, line 4 column 3: duplicate mapping key `tag`\n\
         - `values.yaml`: document 1, line 5 column 1: duplicate mapping key `replicas`\n\
         - `values/dev.yaml`: document 1, line 1 column 8: unquoted value that Kubernetes \
         (YAML 1.1) reads as a boolean but windlass (YAML 1.2) as a string (yes/no/on/off/y/n \
         in any letter case); quote it (\"yes\") if you mean the string, or write true/false"
    );
    let error =
        ValuesLayer::from_yaml("extra.yaml", "a: 1\na: 2\n", &Limits::default()).unwrap_err();
    assert_eq!(
        error.to_string(),
        "`extra.yaml`: document 1, line 2 column 1: duplicate mapping key `a`"
    );
}

#[test]
fn every_templates_errors_come_back_in_one_run() {
    let mut tree = chart();
    tree.insert(
        "templates/a.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{values.first}}\n",
    );
    tree.insert(
        "templates/b.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: b\ndata:\n  on: x\n",
    );
    tree.insert(
        "templates/c.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{values.second}}\n",
    );
    let message = render_chart(&tree, |_| {}).unwrap_err().to_string();
    let lines: Vec<&str> = message.lines().collect();
    assert_eq!(lines.len(), 4, "{message}");
    assert_eq!(lines[0], "3 errors:");
    assert_eq!(
        lines[1],
        "- chart `web`: template `templates/a.yaml` line 4: missing value `values.first`"
    );
    assert!(
        lines[2].starts_with(
            "- chart `web`: template `templates/b.yaml`, rendered output document 1, line 6 \
             column 3: unquoted key"
        ),
        "{message}"
    );
    assert_eq!(
        lines[3],
        "- chart `web`: template `templates/c.yaml` line 4: missing value `values.second`"
    );

    // Syntax errors: every template's, before anything renders.
    let mut tree = chart();
    tree.insert("templates/a.yaml", "a: {{#if x}}\n");
    tree.insert("templates/_part.tpl", "{{/if}}\n");
    let message = render_chart(&tree, |_| {}).unwrap_err().to_string();
    let lines: Vec<&str> = message.lines().collect();
    assert_eq!(lines.len(), 3, "{message}");
    assert!(
        lines[1].starts_with("- chart `web`: template `templates/_part.tpl` line "),
        "{message}"
    );
    assert!(
        lines[2].starts_with("- chart `web`: template `templates/a.yaml` line "),
        "{message}"
    );
}

#[test]
fn a_missing_value_names_chart_template_line_and_path() {
    let mut tree = chart();
    tree.insert(
        "templates/config.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\ndata:\n  a: {{values.image.digest}}\n",
    );
    let message = render_chart(&tree, |_| {}).unwrap_err().to_string();
    assert_eq!(
        message,
        "chart `web`: template `templates/config.yaml` line 6: missing value `values.image.digest`"
    );
    // Inside a partial: the partial's file and line.
    let mut tree = chart();
    tree.insert("templates/_labels.tpl", "app: x\nteam: {{values.team}}\n");
    let message = render_chart(&tree, |_| {}).unwrap_err().to_string();
    assert_eq!(
        message,
        "chart `web`: template `templates/_labels.tpl` (partial `labels`) line 2: missing value \
         `values.team`"
    );
}

#[test]
fn if_on_missing_context_fields_is_not_an_error() {
    let tree = MemoryTree::new("c")
        .with("Chart.yaml", "name: c\nversion: 0.1.0\n")
        .with(
            "templates/cm.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm\n  annotations:\n\
             {{#if git.commit}}\n    commit: {{quote git.shortCommit}}\n    ref: {{git.ref}}\n{{/if}}\
             {{#if capabilities.kubeVersion}}\n    kube: \"{{capabilities.kubeVersion}}\"\n{{/if}}\
             {{#if values.missing}}\n    missing: here\n{{/if}}\n    fixed: x\n",
        );
    let result = render_chart(&tree, |_| {}).unwrap();
    assert_eq!(
        result.objects[0].object["metadata"]["annotations"],
        json!({"fixed": "x"})
    );
    let result = render_chart(&tree, |i| {
        i.git = Some(GitInfo {
            commit: "0123456789abcdef0123456789abcdef01234567".into(),
            reference: Some("refs/heads/main".into()),
        });
        i.capabilities = Some(Capabilities {
            kube_version: Some("1.36".into()),
            api_versions: vec!["apps/v1".into()],
        });
    })
    .unwrap();
    assert_eq!(
        result.objects[0].object["metadata"]["annotations"],
        json!({"commit": "0123456", "ref": "refs/heads/main", "kube": "1.36", "fixed": "x"})
    );
}

#[test]
fn template_syntax_errors_give_line_and_column() {
    let mut tree = chart();
    tree.insert("templates/config.yaml", "a: 1\nb: {{#if values.x}}\n");
    let message = render_chart(&tree, |_| {}).unwrap_err().to_string();
    assert!(
        message.starts_with("chart `web`: template `templates/config.yaml` line 3 column 1: "),
        "{message}"
    );
}

#[test]
fn rendered_yaml_errors_name_the_template() {
    let mut tree = chart();
    tree.insert(
        "templates/config.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\ndata:\n  flag: {{values.flag}}\n",
    );
    let message = render_chart(&tree, |i| {
        i.set.extend(SetValue::parse("flag=yes").unwrap())
    })
    .unwrap_err()
    .to_string();
    assert!(
        message.starts_with(
            "chart `web`: template `templates/config.yaml`, rendered output document 1, line 6 \
             column 9: unquoted value"
        ),
        "{message}"
    );
}

#[test]
fn partials_indent_as_a_whole() {
    let tree = MemoryTree::new("c")
        .with("Chart.yaml", "name: c\nversion: 0.1.0\n")
        .with("templates/_labels.yaml", "x: {{values.x}}\nw:\n  z: 3\n")
        .with(
            "templates/cm.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm\n  labels:\n    {{> labels}}\n\
             data:\n  nested:\n    deeper:\n      {{> labels}}\n",
        )
        .with("values.yaml", "x: \"1\"\n");
    let result = render_chart(&tree, |_| {}).unwrap();
    let object = &result.objects[0].object;
    assert_eq!(object["metadata"]["labels"], json!({"x": 1, "w": {"z": 3}}));
    assert_eq!(
        object["data"]["nested"]["deeper"],
        json!({"x": 1, "w": {"z": 3}})
    );
}

#[test]
fn partials_in_subfolders_drop_only_the_underscore_and_extension() {
    let tree = MemoryTree::new("c")
        .with("Chart.yaml", "name: c\nversion: 0.1.0\n")
        .with("templates/web/_labels.tpl", "tier: web\n")
        .with(
            "templates/web/cm.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm\n  labels:\n    {{> web/labels}}\n",
        );
    let result = render_chart(&tree, |_| {}).unwrap();
    assert_eq!(
        result.objects[0].object["metadata"]["labels"],
        json!({"tier": "web"})
    );
}

#[test]
fn templates_including_each_other_are_refused_too() {
    let tree = MemoryTree::new("c")
        .with("Chart.yaml", "name: c\nversion: 0.1.0\n")
        .with("templates/a.yaml", "{{> templates/b.yaml}}")
        .with("templates/b.yaml", "{{> templates/a.yaml}}");
    let message = render_chart(&tree, |_| {}).unwrap_err().to_string();
    assert!(message.contains("in a cycle"), "{message}");
}

#[test]
fn partial_cycles_and_dynamic_names_are_refused_before_rendering() {
    let tree = MemoryTree::new("c")
        .with("Chart.yaml", "name: c\nversion: 0.1.0\n")
        .with("templates/_a.tpl", "{{> b}}")
        .with("templates/_b.tpl", "{{#if x}}{{> a}}{{/if}}")
        .with("templates/cm.yaml", "{{> a}}");
    assert_eq!(
        render_chart(&tree, |_| {}).unwrap_err().to_string(),
        "chart `c`: partials include each other in a cycle: a → b → a"
    );
    let tree = MemoryTree::new("c")
        .with("Chart.yaml", "name: c\nversion: 0.1.0\n")
        .with("templates/_a.tpl", "x")
        .with("templates/cm.yaml", "{{> (lookup values \"p\")}}");
    assert!(
        render_chart(&tree, |_| {})
            .unwrap_err()
            .to_string()
            .contains("names a partial with an expression")
    );
    let tree = MemoryTree::new("c")
        .with("Chart.yaml", "name: c\nversion: 0.1.0\n")
        .with("templates/_a.tpl", "x")
        .with("templates/_a.yaml", "y");
    assert_eq!(
        render_chart(&tree, |_| {}).unwrap_err().to_string(),
        "chart `c`: partial `a` is defined twice, by `templates/_a.tpl` and `templates/_a.yaml`"
    );
}

#[test]
fn templates_may_render_several_or_no_documents() {
    let tree = MemoryTree::new("c")
        .with("Chart.yaml", "name: c\nversion: 0.1.0\n")
        .with("values.yaml", "names: [a, b, c]\nenabled: false\n")
        .with(
            "templates/many.yaml",
            "{{#each values.names}}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: \
             cm-{{this}}\n{{/each}}\n",
        )
        .with(
            "templates/none.yaml",
            "{{#if values.enabled}}\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: \
             never\n{{/if}}\n",
        );
    let result = render_chart(&tree, |_| {}).unwrap();
    assert_eq!(
        names(&result),
        [
            "ConfigMap cm-a -n shop",
            "ConfigMap cm-b -n shop",
            "ConfigMap cm-c -n shop"
        ]
    );
}

#[test]
fn rendered_output_is_limited_per_template() {
    let tree = MemoryTree::new("c")
        .with("Chart.yaml", "name: c\nversion: 0.1.0\n")
        .with("values.yaml", "items: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]\n")
        .with(
            "templates/big.yaml",
            "{{#each values.items}}{{#each ../values.items}}0123456789{{/each}}{{/each}}",
        );
    let message = render_chart(&tree, |i| i.limits.max_file_bytes = 500)
        .unwrap_err()
        .to_string();
    assert_eq!(
        message,
        "chart `c`: template `templates/big.yaml` renders more than the limit of 500 bytes"
    );
}

// ---- determinism and digests -------------------------------------------------

#[test]
fn rendering_is_deterministic_to_the_byte() {
    let tree = chart();
    let render_once = || {
        let result = render_chart(&tree, |i| i.environment = Some("dev".into())).unwrap();
        let text: String = result.objects.iter().map(|o| to_yaml(&o.object)).collect();
        let digests: Vec<String> = result.objects.iter().map(|o| o.digest.clone()).collect();
        (text, digests, result.manifest_digest)
    };
    let first = render_once();
    for _ in 0..5 {
        assert_eq!(render_once(), first);
    }
    // A different environment changes the manifest digest.
    let prod = render_chart(&tree, |i| i.environment = Some("prod".into())).unwrap();
    assert_ne!(prod.manifest_digest, first.2);
}

#[test]
fn digests_cover_the_defaulted_object() {
    let tree = MemoryTree::new("plain").with("a.yaml", config_map("a"));
    let in_apps = render(&RenderInput::new(&tree, "apps")).unwrap();
    let in_other = render(&RenderInput::new(&tree, "other")).unwrap();
    assert_eq!(
        in_apps.objects[0].digest,
        digest(&json!({"apiVersion": "v1", "kind": "ConfigMap",
                       "metadata": {"name": "a", "namespace": "apps"}}))
    );
    assert_ne!(in_apps.objects[0].digest, in_other.objects[0].digest);
    assert_ne!(in_apps.manifest_digest, in_other.manifest_digest);
}

#[test]
fn debug_of_a_render_shows_no_secret_values() {
    let tree = MemoryTree::new("plain").with(
        "s.yaml",
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\nstringData:\n  password: hunter2\n",
    );
    let result = rendered(&tree);
    let debug = format!("{result:?}");
    assert!(!debug.contains("hunter2"), "{debug}");
    let mut input = RenderInput::new(&tree, "apps");
    input
        .set
        .extend(SetValue::parse("password=hunter2").unwrap());
    input.values.push(ValuesLayer {
        name: "inline".into(),
        values: json!({"password": "hunter2"}),
    });
    let debug = format!("{input:?}");
    assert!(!debug.contains("hunter2"), "{debug}");
}

// ---- engines: detection, empty renders -------------------------------------

/// Tools that are nowhere: the engine a tree goes to shows in the error.
fn no_tools() -> ExternalTools {
    ExternalTools::new(ToolPaths::default())
}

#[test]
fn an_empty_render_is_an_error_unless_allowed() {
    let tree = MemoryTree::new("repo@abc:apps/web")
        .with("README.md", "# nothing to deploy\n")
        .with("empty.yaml", "# just a comment\n---\n");
    let message = failure(&tree);
    assert_eq!(
        message,
        "the render produced no objects: check the path `repo@abc:apps/web` (plain manifests: \
         no .yaml, .yml or .json file in it holds an object); pass --allow-empty if nothing is \
         meant to be deployed"
    );
    let mut input = RenderInput::new(&tree, "apps");
    input.allow_empty = true;
    let result = render(&input).unwrap();
    assert!(result.objects.is_empty());
    assert_eq!(result.manifest_digest, manifest_digest(&[]));

    // A chart whose templates render nothing.
    let chart = MemoryTree::new("chart")
        .with("Chart.yaml", "name: c\nversion: 0.1.0\n")
        .with("templates/off.yaml", "{{#if values.on}}x: 1{{/if}}\n");
    assert!(
        failure(&chart).contains("(a windlass chart: its templates rendered nothing)"),
        "{}",
        failure(&chart)
    );
}

#[test]
fn kustomize_and_helm_trees_go_to_their_tools() {
    let tools = no_tools();
    let kustomization = MemoryTree::new("k")
        .with("kustomization.yaml", "resources: [cm.yaml]\n")
        .with("cm.yaml", config_map("a"));
    let helm = MemoryTree::new("h")
        .with("Chart.yaml", "apiVersion: v2\nname: web\nversion: 1.0.0\n")
        .with("templates/cm.yaml", config_map("{{ .Release.Name }}"));
    for (tree, tool) in [(&kustomization, "kustomize"), (&helm, "helm")] {
        let mut input = RenderInput::new(tree, "apps");
        input.tools = Some(&tools);
        let error = render(&input).unwrap_err();
        assert!(
            matches!(&error, Error::External(ExternalError::NotInstalled { .. }))
                && error
                    .to_string()
                    .starts_with(&format!("{tool} is not installed")),
            "{error}"
        );
    }
}

#[test]
fn unsupported_formats_are_named() {
    let tree = MemoryTree::new("repo@abc:apps/lib")
        .with("main.jsonnet", "{}")
        .with("cm.yaml", config_map("a"));
    assert_eq!(
        failure(&tree),
        "repo@abc:apps/lib: `main.jsonnet` is Jsonnet, which windlass does not render; render \
         it to YAML in CI and commit the result, or use plain manifests, Kustomize or Helm"
    );
    // Ignored, it is not there.
    let tree = tree.with(".windlassignore", "*.jsonnet\n");
    assert_eq!(names(&rendered(&tree)), ["ConfigMap a -n apps"]);
}

// ---- a named renderer ----------------------------------------------------------

fn render_as(tree: &MemoryTree, engine: Engine) -> Result<Rendered, Error> {
    let mut input = RenderInput::new(tree, "apps");
    input.engine = Some(engine);
    render(&input)
}

#[test]
fn a_named_renderer_replaces_detection() {
    // Detection sees an overlay and picks Kustomize; named plain, the
    // manifests render as they are (`Kustomization` is not a manifest).
    let tree = MemoryTree::new("repo")
        .with("overlays/qa/Kustomization", "resources: [../../cm.yaml]\n")
        .with("cm.yaml", config_map("a"));
    assert_eq!(
        detect::detect_tree(&tree, &Limits::default()).unwrap(),
        Engine::Kustomize
    );
    let result = render_as(&tree, Engine::Plain).unwrap();
    assert_eq!(names(&result), ["ConfigMap a -n apps"]);

    // A v2 Chart.yaml is Helm to detection; named windlass-chart, its
    // handlebars templates render.
    let chart = MemoryTree::new("chart")
        .with("Chart.yaml", "apiVersion: v2\nname: web\nversion: 1.0.0\n")
        .with("templates/cm.yaml", config_map("{{release.name}}-cm"));
    let result = render_as(&chart, Engine::WindlassChart).unwrap();
    assert_eq!(names(&result), ["ConfigMap web-cm -n apps"]);
}

#[test]
fn a_named_renderer_that_does_not_fit_says_so() {
    // Plain over a kustomization: refused, not read as an object.
    let tree = MemoryTree::new("overlays/prod")
        .with("kustomization.yaml", "resources: [cm.yaml]\n")
        .with("cm.yaml", config_map("a"));
    let error = render_as(&tree, Engine::Plain).unwrap_err().to_string();
    assert!(
        error.starts_with(
            "overlays/prod: renderer plain: `kustomization.yaml` is not a Kubernetes object"
        ),
        "{error}"
    );
    // ...unless it is left out.
    let ignored = tree.clone().with(".windlassignore", "kustomization.yaml\n");
    assert_eq!(
        names(&render_as(&ignored, Engine::Plain).unwrap()),
        ["ConfigMap a -n apps"]
    );

    let plain = MemoryTree::new("overlays/prod").with("cm.yaml", config_map("a"));
    let error = render_as(&plain, Engine::Kustomize)
        .unwrap_err()
        .to_string();
    assert_eq!(
        error,
        "overlays/prod: renderer kustomize: no kustomization.yaml here, nor in \
         overlays/<environment>/"
    );
    let error = render_as(&plain, Engine::Helm).unwrap_err().to_string();
    assert_eq!(error, "overlays/prod: renderer helm: no Chart.yaml here");
}
