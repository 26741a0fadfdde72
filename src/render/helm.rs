//! The Helm engine: `helm template` on the snapshot.
//!
//! ```text
//!   FileTree (the chart) ─► Workspace/chart, values files ─► helm template
//!     <release> ./chart --namespace <ns> --include-crds
//!     [--kube-version, --api-versions from discovery]
//!     -f values/<env>.yaml | values-<env>.yaml   (the environment)
//!     -f <inline values layer>...                (the Application, in order)
//!     --set-json <path>=<json>...                (--set / --set-string, in order)
//!   ─► stdout split at `---`, `# Source:` per document ─► windlass's YAML loader
//!   ─► objects; hooks (helm.sh/hook) skipped and listed
//! ```
//!
//! Values layer as Helm layers them: chart `values.yaml` < environment file
//! < inline values < `--set`. `--set` values arrive parsed (path and typed
//! value), so they are passed as `--set-json`, which keeps both exactly
//! (list indexes included) and follows Helm's rules: `--set list[0].x=1`
//! makes a list of its own that replaces the chart's (unlike a windlass
//! chart, where it changes the item in place). Release name: the given
//! name, else the chart's.
//! `helm template` never prints `NOTES.txt`. Hooks are not run: objects
//! annotated `helm.sh/hook` are left out and returned in
//! [`HelmOutput::skipped_hooks`], for one line of output ([`hooks_message`]).
//! Dependencies must be vendored in `charts/` (see [`super::detect`]); Helm
//! is never asked to fetch anything.

use std::collections::HashMap;
use std::ffi::OsString;

use serde_json::Value;

use super::tool::{
    self, ExternalError, ExternalTools, Invocation, Tool, ToolDocument, Workspace,
    check_environment,
};
use super::values::PathStep;
use super::{RenderInput, SetValue, yaml};

/// The annotation that makes an object a Helm hook.
pub const HOOK_ANNOTATION: &str = "helm.sh/hook";

/// What `helm template` rendered.
#[derive(Debug)]
pub struct HelmOutput {
    /// The objects, hooks left out, in Helm's output order.
    pub documents: Vec<ToolDocument>,
    /// Hooks found and left out.
    pub skipped_hooks: Vec<SkippedHook>,
    /// `name` of `Chart.yaml`.
    pub chart_name: String,
    /// The release name used.
    pub release_name: String,
}

/// A hook object that was not rendered into the result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedHook {
    /// `Kind/name`.
    pub object: String,
    /// The `helm.sh/hook` value, e.g. `pre-install,pre-upgrade`.
    pub hook: String,
    /// The template it came from.
    pub template: String,
}

/// The one line saying which hooks were skipped, or `None` when none were.
pub fn hooks_message(hooks: &[SkippedHook]) -> Option<String> {
    if hooks.is_empty() {
        return None;
    }
    let listed: Vec<String> = hooks
        .iter()
        .map(|h| format!("{} ({})", h.object, h.hook))
        .collect();
    Some(format!(
        "helm hooks are not run by windlass; skipped {} hook object{}: {}",
        hooks.len(),
        if hooks.len() == 1 { "" } else { "s" },
        listed.join(", ")
    ))
}

/// Renders the chart at the root of `input.tree` with `helm template`.
pub fn render_helm(
    input: &RenderInput<'_>,
    tools: &ExternalTools,
) -> Result<HelmOutput, ExternalError> {
    let binary = tools.paths.get(Tool::Helm)?;
    let tree = input.tree;
    let files_error = |error| ExternalError::Files {
        tree: tree.describe(),
        error,
    };
    let files = tree.files().map_err(files_error)?;
    let chart_yaml = tree.read("Chart.yaml").map_err(files_error)?;
    let chart_name = chart_name(&String::from_utf8_lossy(&chart_yaml), &input.limits)?;
    let environment_file = match &input.environment {
        Some(environment) => Some(environment_values_file(
            &tree.describe(),
            &files,
            environment,
        )?),
        None => None,
    };
    let release_name = input.name.clone().unwrap_or_else(|| chart_name.clone());

    let workspace = Workspace::new(Tool::Helm)?;
    workspace.materialise(Tool::Helm, tree, "chart", &input.limits)?;
    let mut args: Vec<OsString> = vec![
        "template".into(),
        release_name.clone().into(),
        "./chart".into(),
        "--namespace".into(),
        input.namespace.clone().into(),
        "--include-crds".into(),
    ];
    if let Some(capabilities) = &input.capabilities {
        if let Some(version) = &capabilities.kube_version {
            args.push("--kube-version".into());
            args.push(version.into());
        }
        for api_version in &capabilities.api_versions {
            args.push("--api-versions".into());
            args.push(api_version.into());
        }
    }
    if let Some(file) = &environment_file {
        args.push("-f".into());
        args.push(format!("chart/{file}").into());
    }
    for (index, layer) in input.values.iter().enumerate() {
        if layer.values.is_null() {
            continue;
        }
        // JSON is YAML; quoted strings keep YAML 1.1 from reinterpreting them.
        let text = serde_json::to_vec(&layer.values).expect("values serialise");
        let name = format!("values-{}.json", index + 1);
        workspace.write(Tool::Helm, &name, &text)?;
        args.push("-f".into());
        args.push(name.into());
    }
    for set in &input.set {
        args.push("--set-json".into());
        args.push(set_json(set).into());
    }
    let command = format!("helm template {release_name} (chart `{chart_name}`)");
    let output = tool::run(&Invocation {
        tool: Tool::Helm,
        binary,
        args,
        command: command.clone(),
        workspace: &workspace,
        cwd: "",
        timeout: tools.timeout,
        max_output_bytes: tools.output_limit(&input.limits),
    })?;
    drop(workspace);
    let text = tool::output_text(output, &command)?;
    let (documents, skipped_hooks) = parse_output(&text, &input.limits)?;
    Ok(HelmOutput {
        documents,
        skipped_hooks,
        chart_name,
        release_name,
    })
}

/// `name` of `Chart.yaml`.
fn chart_name(text: &str, limits: &super::Limits) -> Result<String, ExternalError> {
    let value = yaml::load_single(text, &limits.yaml()).map_err(|error| ExternalError::Yaml {
        origin: "`Chart.yaml`".into(),
        error,
    })?;
    match value.as_ref().and_then(|v| v.get("name")) {
        Some(Value::String(name)) if !name.is_empty() => Ok(name.clone()),
        _ => Err(ExternalError::ChartMetadata {
            reason: "`name` is missing or not a string".into(),
        }),
    }
}

/// The environment's values file: `values/<env>.yaml` (or `.yml`), else
/// `values-<env>.yaml` (or `.yml`).
pub fn environment_values_file(
    tree: &str,
    files: &[String],
    environment: &str,
) -> Result<String, ExternalError> {
    check_environment(environment)?;
    let candidates = [
        format!("values/{environment}.yaml"),
        format!("values/{environment}.yml"),
        format!("values-{environment}.yaml"),
        format!("values-{environment}.yml"),
    ];
    if let Some(found) = candidates.iter().find(|c| files.contains(c)) {
        return Ok(found.clone());
    }
    let mut available: Vec<&str> = files
        .iter()
        .filter_map(|f| {
            f.strip_prefix("values/")
                .filter(|rest| !rest.contains('/'))
                .or_else(|| f.strip_prefix("values-"))
        })
        .filter_map(|f| f.strip_suffix(".yaml").or_else(|| f.strip_suffix(".yml")))
        .collect();
    available.sort_unstable();
    available.dedup();
    Err(ExternalError::UnknownEnvironment {
        tree: tree.to_string(),
        environment: environment.to_string(),
        expected: format!("values/{environment}.yaml or values-{environment}.yaml"),
        available: if available.is_empty() {
            "none".to_string()
        } else {
            available.join(", ")
        },
    })
}

/// A `--set` value as Helm's `--set-json` argument: `path=json`, with `.`,
/// `[`, `,`, `=` and `\` in keys escaped.
pub fn set_json(set: &SetValue) -> String {
    let mut path = String::new();
    for step in &set.path {
        match step {
            PathStep::Key(key) => {
                if !path.is_empty() {
                    path.push('.');
                }
                for c in key.chars() {
                    if matches!(c, '.' | '[' | ']' | ',' | '=' | '\\') {
                        path.push('\\');
                    }
                    path.push(c);
                }
            }
            PathStep::Index(index) => path.push_str(&format!("[{index}]")),
        }
    }
    format!("{path}={}", set.value)
}

/// Splits Helm's output into its documents (Helm writes `---` and
/// `# Source: <template>` before each), parses each with windlass's loader
/// and takes the hooks out. A document's number counts that template's
/// documents in Helm's output, which Helm sorts by kind: it is not always
/// the position in the template's own text.
pub(crate) fn parse_output(
    text: &str,
    limits: &super::Limits,
) -> Result<(Vec<ToolDocument>, Vec<SkippedHook>), ExternalError> {
    let mut documents = Vec::new();
    let mut hooks = Vec::new();
    // Template → documents seen from it, for each document's index.
    let mut seen: HashMap<String, usize> = HashMap::new();
    for chunk in split_documents(text) {
        let source = chunk
            .lines()
            .find_map(|line| line.strip_prefix("# Source: "))
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|| "helm template output".to_string());
        let count = seen.entry(source.clone()).or_insert(0);
        let parsed = tool::parse_documents(chunk, &source, true, *count + 1, limits)?;
        *count += parsed.len().max(1);
        for document in parsed {
            match hook_of(&document.value) {
                Some(hook) => hooks.push(SkippedHook {
                    object: format!(
                        "{}/{}",
                        document.value["kind"].as_str().unwrap_or("?"),
                        document.value["metadata"]["name"].as_str().unwrap_or("?")
                    ),
                    hook,
                    template: source.clone(),
                }),
                None => documents.push(document),
            }
        }
        if documents.len() > limits.max_documents {
            return Err(ExternalError::TooManyDocuments {
                limit: limits.max_documents,
            });
        }
    }
    Ok((documents, hooks))
}

/// The `helm.sh/hook` annotation of an object, if it is a hook.
fn hook_of(value: &Value) -> Option<String> {
    match &value["metadata"]["annotations"][HOOK_ANNOTATION] {
        Value::String(hook) => Some(hook.clone()),
        _ => None,
    }
}

/// The text between `---` lines (a YAML document marker at the start of a
/// line always ends a document, even inside a block scalar).
fn split_documents(text: &str) -> Vec<&str> {
    let mut chunks = Vec::new();
    let mut start = 0;
    let mut at = 0;
    for line in text.split_inclusive('\n') {
        let content = line.trim_end_matches(['\n', '\r']);
        if content == "---" || content.starts_with("--- ") {
            if at > start {
                chunks.push(&text[start..at]);
            }
            start = at + line.len();
        }
        at += line.len();
    }
    if at > start {
        chunks.push(&text[start..at]);
    }
    chunks.retain(|chunk| !chunk.trim().is_empty());
    chunks
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::Limits;

    #[test]
    fn output_is_split_by_template_and_hooks_are_left_out() {
        let output = "---\n# Source: web/crds/crd.yaml\napiVersion: v1\nkind: ConfigMap\n\
                      metadata:\n  name: crd\n---\n# Source: web/templates/a.yaml\n\
                      apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a1\n---\n\
                      # Source: web/templates/hook.yaml\napiVersion: batch/v1\nkind: Job\n\
                      metadata:\n  name: migrate\n  annotations:\n    helm.sh/hook: \
                      pre-install,pre-upgrade\n---\n# Source: web/templates/a.yaml\n\
                      apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a2\n";
        let (documents, hooks) = parse_output(output, &Limits::default()).unwrap();
        let seen: Vec<String> = documents
            .iter()
            .map(|d| format!("{} {}", d.source, d.value["metadata"]["name"]))
            .collect();
        assert_eq!(
            seen,
            [
                "template `web/crds/crd.yaml` document 1 \"crd\"",
                "template `web/templates/a.yaml` document 1 \"a1\"",
                "template `web/templates/a.yaml` document 2 \"a2\"",
            ]
        );
        assert_eq!(
            hooks,
            [SkippedHook {
                object: "Job/migrate".into(),
                hook: "pre-install,pre-upgrade".into(),
                template: "web/templates/hook.yaml".into(),
            }]
        );
        assert_eq!(
            hooks_message(&hooks).unwrap(),
            "helm hooks are not run by windlass; skipped 1 hook object: Job/migrate \
             (pre-install,pre-upgrade)"
        );
        assert_eq!(hooks_message(&[]), None);
    }

    #[test]
    fn a_yaml_error_names_the_template_and_its_document() {
        let output = "---\n# Source: web/templates/a.yaml\nkind: A\n---\n\
                      # Source: web/templates/a.yaml\nenabled: yes\n";
        let error = parse_output(output, &Limits::default()).unwrap_err();
        let message = error.to_string();
        assert!(
            message.starts_with("template `web/templates/a.yaml` output: document 2"),
            "{message}"
        );
    }

    #[test]
    fn set_values_become_set_json() {
        let set = SetValue::parse("image.tag=1.2,ports[1].name=web").unwrap();
        let args: Vec<String> = set.iter().map(set_json).collect();
        assert_eq!(args, ["image.tag=1.2", "ports[1].name=\"web\""]);
        let set = SetValue::parse_string("a\\.b=007").unwrap();
        assert_eq!(set_json(&set[0]), "a\\.b=\"007\"");
    }

    #[test]
    fn the_environment_values_file() {
        let files: Vec<String> = ["values.yaml", "values/prod.yaml", "values-staging.yml"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            environment_values_file("c", &files, "prod").unwrap(),
            "values/prod.yaml"
        );
        assert_eq!(
            environment_values_file("c", &files, "staging").unwrap(),
            "values-staging.yml"
        );
        let error = environment_values_file("c", &files, "qa").unwrap_err();
        assert_eq!(
            error.to_string(),
            "c: no environment `qa` (no values/qa.yaml or values-qa.yaml); environments: prod, \
             staging"
        );
    }
}
