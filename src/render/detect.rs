//! Which engine renders a tree: the one documented detection rule.
//!
//! ```text
//!   files at the tree's root                       engine
//!   ─────────────────────────────────────────────  ─────────────────────
//!   kustomization.yaml | .yml | Kustomization,     Kustomize
//!     or overlays/<env>/kustomization.*
//!   Chart.yaml with annotation                     windlass chart (handlebars)
//!     windlass.dev/chart: handlebars,
//!     or without apiVersion (Helm requires one)
//!   Chart.yaml apiVersion v2                       Helm
//!   Chart.yaml apiVersion v1 + Go templates        Helm
//!   Chart.yaml apiVersion v1, no Go templates      windlass chart
//!   any *.jsonnet / *.libsonnet                    unsupported (an error)
//!   anything else                                  plain manifests
//! ```
//!
//! A Helm chart whose `Chart.yaml` (or v1 `requirements.yaml`) lists
//! dependencies must have each vendored in `charts/` (a directory with a
//! `Chart.yaml`, or a `.tgz`): windlass never fetches charts.
//!
//! Detection is skipped when the Application names its renderer
//! (`spec.source.renderer: plain | windlass-chart | kustomize | helm`, or
//! `--renderer`); [`check_named`] then checks that the tree fits it, and
//! says what is missing when it does not.
//!
//! [`detect`] is pure (file list and `Chart.yaml` text in);
//! [`detect_tree`] and [`detect_in`] read what it needs through the
//! [`FileTree`]. [`super::render`] calls [`detect_in`] with the files
//! `.windlassignore` keeps.

use serde_json::Value;

use super::Limits;
use super::files::{FileTree, FileTreeError};
use super::tool::ExternalError;
use super::yaml;

/// The `Chart.yaml` annotation that marks a windlass (handlebars) chart.
pub const WINDLASS_CHART_ANNOTATION: &str = "windlass.dev/chart";
/// Its value.
pub const WINDLASS_CHART_HANDLEBARS: &str = "handlebars";

/// The names kustomize accepts for a kustomization file.
pub const KUSTOMIZATION_FILES: [&str; 3] =
    ["kustomization.yaml", "kustomization.yml", "Kustomization"];

/// What renders a tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Engine {
    /// `.yaml`/`.yml`/`.json` manifests, not templated.
    Plain,
    /// A windlass chart: handlebars templates.
    WindlassChart,
    /// `kustomize build`.
    Kustomize,
    /// `helm template`.
    Helm,
}

impl Engine {
    /// The name `spec.source.renderer` and `--renderer` give it.
    pub fn name(&self) -> &'static str {
        match self {
            Engine::Plain => "plain",
            Engine::WindlassChart => "windlass-chart",
            Engine::Kustomize => "kustomize",
            Engine::Helm => "helm",
        }
    }
}

/// What [`detect`] needs to know about `Chart.yaml`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ChartFacts {
    api_version: Option<String>,
    marked_windlass: bool,
    name: String,
    dependencies: Vec<String>,
}

/// Decides the engine from the tree's file list (sorted, `/`-separated,
/// relative to the root) and the text of the files it asks for:
/// `read(path)` is called for `Chart.yaml`, `requirements.yaml` and, for an
/// apiVersion v1 chart, its templates.
pub fn detect<S: AsRef<str>>(
    files: &[S],
    read: &mut dyn FnMut(&str) -> Result<String, ExternalError>,
    limits: &Limits,
) -> Result<Engine, ExternalError> {
    let paths = || files.iter().map(|f| f.as_ref());
    let has = |path: &str| paths().any(|f| f == path);
    if is_kustomize(files) {
        return Ok(Engine::Kustomize);
    }

    if has("Chart.yaml") {
        let chart = chart_facts(&read("Chart.yaml")?, limits)?;
        if chart.marked_windlass || chart.api_version.is_none() {
            return Ok(Engine::WindlassChart);
        }
        let is_helm = match chart.api_version.as_deref() {
            Some("v2") => true,
            Some("v1") => {
                let mut go = false;
                for template in paths().filter(|f| f.starts_with("templates/")) {
                    if has_go_template(&read(template)?) {
                        go = true;
                        break;
                    }
                }
                go
            }
            Some(other) => {
                return Err(ExternalError::ChartMetadata {
                    reason: format!(
                        "apiVersion `{other}` is not a chart API version: use v2 for a Helm \
                         chart, or remove it for a windlass chart"
                    ),
                });
            }
            None => unreachable!("handled above"),
        };
        if !is_helm {
            return Ok(Engine::WindlassChart);
        }
        check_helm_dependencies(chart, files, read, limits)?;
        return Ok(Engine::Helm);
    }

    if let Some(jsonnet) = paths().find(|f| f.ends_with(".jsonnet") || f.ends_with(".libsonnet")) {
        return Err(ExternalError::Unsupported {
            tree: String::new(),
            reason: format!(
                "`{jsonnet}` is Jsonnet, which windlass does not render; render it to YAML \
                 in CI and commit the result, or use plain manifests, Kustomize or Helm"
            ),
        });
    }
    Ok(Engine::Plain)
}

/// A kustomization file at the root, or in `overlays/<env>/`.
fn is_kustomize<S: AsRef<str>>(files: &[S]) -> bool {
    files.iter().map(|f| f.as_ref()).any(|path| {
        KUSTOMIZATION_FILES.contains(&path)
            || path
                .strip_prefix("overlays/")
                .and_then(|rest| rest.split_once('/'))
                .is_some_and(|(_, name)| KUSTOMIZATION_FILES.contains(&name))
    })
}

/// A Helm chart's dependencies (`Chart.yaml`, v1 `requirements.yaml`) must
/// be vendored.
fn check_helm_dependencies<S: AsRef<str>>(
    chart: ChartFacts,
    files: &[S],
    read: &mut dyn FnMut(&str) -> Result<String, ExternalError>,
    limits: &Limits,
) -> Result<(), ExternalError> {
    let mut dependencies = chart.dependencies;
    if files.iter().any(|f| f.as_ref() == "requirements.yaml") {
        dependencies.extend(dependency_names(
            &load_map("requirements.yaml", &read("requirements.yaml")?, limits)?,
            "requirements.yaml",
        )?);
    }
    check_vendored(&chart.name, &dependencies, files.iter().map(|f| f.as_ref()))
}

/// Checks that a tree fits the engine named for it (`spec.source.renderer`,
/// `--renderer`), instead of detecting one: Kustomize needs a kustomization
/// file where [`detect`] looks for one, a chart (windlass or Helm) a
/// `Chart.yaml` (and Helm its dependencies vendored); plain manifests must
/// not include a kustomization or `Chart.yaml`, which are not objects
/// (leave them out with `.windlassignore`). The error says which renderer
/// was named and what is missing.
pub fn check_named<S: AsRef<str>>(
    engine: &Engine,
    files: &[S],
    read: &mut dyn FnMut(&str) -> Result<String, ExternalError>,
    limits: &Limits,
) -> Result<(), ExternalError> {
    let has = |path: &str| files.iter().any(|f| f.as_ref() == path);
    let wrong = |reason: String| ExternalError::WrongRenderer {
        tree: String::new(),
        renderer: engine.name(),
        reason,
    };
    match engine {
        Engine::Kustomize if !is_kustomize(files) => Err(wrong(
            "no kustomization.yaml here, nor in overlays/<environment>/".into(),
        )),
        Engine::WindlassChart | Engine::Helm if !has("Chart.yaml") => {
            Err(wrong("no Chart.yaml here".into()))
        }
        Engine::Helm => {
            let chart = chart_facts(&read("Chart.yaml")?, limits)?;
            check_helm_dependencies(chart, files, read, limits)
        }
        Engine::Plain => {
            let metadata = files.iter().map(|f| f.as_ref()).find(|path| {
                let name = path.rsplit('/').next().unwrap_or(path);
                matches!(
                    name,
                    "kustomization.yaml" | "kustomization.yml" | "Chart.yaml"
                )
            });
            match metadata {
                Some(path) => Err(wrong(format!(
                    "`{path}` is not a Kubernetes object but a {}; name the renderer it \
                     belongs to, or list it in .windlassignore",
                    if path.ends_with("Chart.yaml") {
                        "chart's metadata"
                    } else {
                        "kustomization"
                    }
                ))),
                None => Ok(()),
            }
        }
        Engine::Kustomize | Engine::WindlassChart => Ok(()),
    }
}

/// [`check_named`] on `files` of a tree, reading through it.
pub fn check_named_in<S: AsRef<str>>(
    tree: &dyn FileTree,
    files: &[S],
    engine: &Engine,
    limits: &Limits,
) -> Result<(), ExternalError> {
    let mut read = reader(tree, limits);
    check_named(engine, files, &mut read, limits).map_err(|error| match error {
        ExternalError::WrongRenderer {
            renderer, reason, ..
        } => ExternalError::WrongRenderer {
            tree: tree.describe(),
            renderer,
            reason,
        },
        other => other,
    })
}

/// [`detect`] on a tree, reading through it.
pub fn detect_tree(tree: &dyn FileTree, limits: &Limits) -> Result<Engine, ExternalError> {
    let files = tree.files().map_err(|error| ExternalError::Files {
        tree: tree.describe(),
        error,
    })?;
    detect_in(tree, &files, limits)
}

/// [`detect`] on `files` of a tree (those a render keeps: `.windlassignore`
/// applied), reading through the tree within the per-file limit.
pub fn detect_in<S: AsRef<str>>(
    tree: &dyn FileTree,
    files: &[S],
    limits: &Limits,
) -> Result<Engine, ExternalError> {
    let mut read = reader(tree, limits);
    detect(files, &mut read, limits).map_err(|error| match error {
        ExternalError::Unsupported { reason, .. } => ExternalError::Unsupported {
            tree: tree.describe(),
            reason,
        },
        other => other,
    })
}

/// Reads a file of `tree` as text within the per-file limit.
fn reader<'a>(
    tree: &'a dyn FileTree,
    limits: &'a Limits,
) -> impl FnMut(&str) -> Result<String, ExternalError> + 'a {
    move |path: &str| {
        let files_error = |error| ExternalError::Files {
            tree: tree.describe(),
            error,
        };
        let bytes = tree.read(path).map_err(files_error)?;
        let size = bytes.len() as u64;
        if size > limits.max_file_bytes {
            return Err(files_error(FileTreeError::TooLarge {
                path: path.to_string(),
                size,
                limit: limits.max_file_bytes,
            }));
        }
        // Binary templates cannot hold Go templates; treat them as empty.
        Ok(String::from_utf8(bytes).unwrap_or_default())
    }
}

/// Go template syntax a handlebars template would not have: trim markers,
/// dotted references (`.Values`), `define`/`include`/`template`.
fn has_go_template(text: &str) -> bool {
    text.contains("{{-")
        || text.contains("-}}")
        || text.match_indices("{{").any(|(at, _)| {
            let action = text[at + 2..].trim_start();
            action.starts_with('.')
                || ["define ", "include ", "template ", "range ", "with ", "end"]
                    .iter()
                    .any(|word| action.starts_with(word))
        })
}

fn load_map(
    path: &str,
    text: &str,
    limits: &Limits,
) -> Result<serde_json::Map<String, Value>, ExternalError> {
    match yaml::load_single(text, &limits.yaml()) {
        Ok(Some(Value::Object(map))) => Ok(map),
        Ok(None) => Ok(serde_json::Map::new()),
        Ok(Some(_)) => Err(ExternalError::ChartMetadata {
            reason: format!("`{path}` must be a map"),
        }),
        Err(error) => Err(ExternalError::Yaml {
            origin: format!("`{path}`"),
            error,
        }),
    }
}

fn chart_facts(text: &str, limits: &Limits) -> Result<ChartFacts, ExternalError> {
    let map = load_map("Chart.yaml", text, limits)?;
    let api_version = match map.get("apiVersion") {
        None | Some(Value::Null) => None,
        Some(Value::String(version)) => Some(version.clone()),
        Some(_) => {
            return Err(ExternalError::ChartMetadata {
                reason: "`apiVersion` must be a string (v2)".into(),
            });
        }
    };
    let marked_windlass = map
        .get("annotations")
        .and_then(|a| a.get(WINDLASS_CHART_ANNOTATION))
        .is_some_and(|v| v == WINDLASS_CHART_HANDLEBARS);
    let name = match map.get("name") {
        Some(Value::String(name)) => name.clone(),
        _ => String::new(),
    };
    Ok(ChartFacts {
        api_version,
        marked_windlass,
        name,
        dependencies: dependency_names(&map, "Chart.yaml")?,
    })
}

/// The chart names under `dependencies:`.
fn dependency_names(
    map: &serde_json::Map<String, Value>,
    path: &str,
) -> Result<Vec<String>, ExternalError> {
    let invalid = || ExternalError::ChartMetadata {
        reason: format!("`{path}`: `dependencies` must be a list of maps, each with a `name`"),
    };
    match map.get("dependencies") {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| match item.get("name") {
                Some(Value::String(name)) if !name.is_empty() => Ok(name.clone()),
                _ => Err(invalid()),
            })
            .collect(),
        Some(_) => Err(invalid()),
    }
}

/// Every dependency must be in `charts/`: `charts/<name>/Chart.yaml` or
/// `charts/<name>-<version>.tgz`.
fn check_vendored(
    chart: &str,
    dependencies: &[String],
    files: impl Iterator<Item = impl AsRef<str>> + Clone,
) -> Result<(), ExternalError> {
    let missing: Vec<String> = dependencies
        .iter()
        .filter(|name| {
            let directory = format!("charts/{name}/Chart.yaml");
            let archive = format!("charts/{name}-");
            !files.clone().any(|f| {
                let f = f.as_ref();
                f == directory
                    || (f.starts_with(&archive) && f.ends_with(".tgz") && !f[7..].contains('/'))
            })
        })
        .map(|name| format!("`{name}`"))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(ExternalError::DependenciesNotVendored {
        chart: chart.to_string(),
        verb: if missing.len() == 1 { "is" } else { "are" },
        missing: missing.join(", "),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::MemoryTree;

    fn engine(files: &[(&str, &str)]) -> Result<Engine, ExternalError> {
        let tree = files
            .iter()
            .fold(MemoryTree::new("app"), |tree, (path, text)| {
                tree.with(*path, *text)
            });
        detect_tree(&tree, &Limits::default())
    }

    #[test]
    fn a_kustomization_file_is_kustomize() {
        for name in KUSTOMIZATION_FILES {
            assert_eq!(
                engine(&[
                    (name, "resources: []\n"),
                    ("Chart.yaml", "apiVersion: v2\n")
                ])
                .unwrap(),
                Engine::Kustomize,
                "{name}"
            );
        }
        // Overlays alone (base/ + overlays/<env>/, no root kustomization).
        assert_eq!(
            engine(&[
                ("base/kustomization.yaml", ""),
                ("overlays/prod/kustomization.yaml", "")
            ])
            .unwrap(),
            Engine::Kustomize
        );
        // Deeper or elsewhere: not a kustomization root.
        assert_eq!(
            engine(&[("docs/kustomization.yaml", ""), ("a.yaml", "")]).unwrap(),
            Engine::Plain
        );
    }

    #[test]
    fn chart_yaml_decides_between_helm_and_windlass() {
        let go_template = "metadata:\n  name: {{ include \"x.fullname\" . }}\n";
        let handlebars = "metadata:\n  name: {{release.name}}\n";
        // v2: Helm.
        assert_eq!(
            engine(&[("Chart.yaml", "apiVersion: v2\nname: web\nversion: 1.0.0\n")]).unwrap(),
            Engine::Helm
        );
        // No apiVersion (Helm requires one): windlass.
        assert_eq!(
            engine(&[("Chart.yaml", "name: web\nversion: 1.0.0\n")]).unwrap(),
            Engine::WindlassChart
        );
        // The annotation wins, even on v2.
        let marked = "apiVersion: v2\nname: web\nversion: 1.0.0\nannotations:\n  \
                      windlass.dev/chart: handlebars\n";
        assert_eq!(
            engine(&[("Chart.yaml", marked), ("templates/a.yaml", go_template)]).unwrap(),
            Engine::WindlassChart
        );
        // v1: by the templates' syntax.
        let v1 = "apiVersion: v1\nname: web\nversion: 1.0.0\n";
        assert_eq!(
            engine(&[("Chart.yaml", v1), ("templates/a.yaml", go_template)]).unwrap(),
            Engine::Helm
        );
        assert_eq!(
            engine(&[("Chart.yaml", v1), ("templates/a.yaml", handlebars)]).unwrap(),
            Engine::WindlassChart
        );
        let error = engine(&[("Chart.yaml", "apiVersion: v3\nname: web\n")]).unwrap_err();
        assert!(error.to_string().contains("apiVersion `v3`"), "{error}");
    }

    #[test]
    fn go_template_syntax_is_recognised() {
        assert!(has_go_template("a: {{ .Values.x }}"));
        assert!(has_go_template("a: {{.Release.Name}}"));
        assert!(has_go_template("{{- if .Values.x }}"));
        assert!(has_go_template("{{ define \"x\" }}"));
        assert!(!has_go_template(
            "a: {{values.x}}\n{{#if values.y}}b{{/if}}"
        ));
        assert!(!has_go_template("{{> labels}}"));
    }

    #[test]
    fn helm_dependencies_must_be_vendored() {
        let chart = "apiVersion: v2\nname: web\nversion: 1.0.0\ndependencies:\n  \
                     - name: redis\n    version: 1.2.3\n  - name: common\n    version: 2.0.0\n";
        let error = engine(&[("Chart.yaml", chart)]).unwrap_err();
        let message = error.to_string();
        assert!(
            message.contains("`redis`, `common`")
                && message.contains("run `helm dependency build` and commit charts/"),
            "{message}"
        );
        let error = engine(&[
            ("Chart.yaml", chart),
            ("charts/redis/Chart.yaml", "apiVersion: v2\n"),
        ])
        .unwrap_err();
        assert!(
            error
                .to_string()
                .contains("depends on `common`, which is not"),
            "{error}"
        );
        assert_eq!(
            engine(&[
                ("Chart.yaml", chart),
                ("charts/redis/Chart.yaml", "apiVersion: v2\n"),
                ("charts/common-2.0.0.tgz", ""),
            ])
            .unwrap(),
            Engine::Helm
        );
        // v1: requirements.yaml.
        let v1 = "apiVersion: v1\nname: web\nversion: 1.0.0\n";
        let error = engine(&[
            ("Chart.yaml", v1),
            ("requirements.yaml", "dependencies:\n  - name: db\n"),
            ("templates/a.yaml", "{{ .Values.x }}"),
        ])
        .unwrap_err();
        assert!(error.to_string().contains("`db`"), "{error}");
    }

    #[test]
    fn jsonnet_is_unsupported_with_a_reason() {
        let error = engine(&[("main.jsonnet", "{}"), ("lib/x.libsonnet", "{}")]).unwrap_err();
        let message = error.to_string();
        assert!(
            message.starts_with("app: ") && message.contains("`lib/x.libsonnet` is Jsonnet"),
            "{message}"
        );
    }

    #[test]
    fn anything_else_is_plain() {
        assert_eq!(
            engine(&[("a.yaml", ""), ("b/c.json", "")]).unwrap(),
            Engine::Plain
        );
        assert_eq!(engine(&[]).unwrap(), Engine::Plain);
    }

    fn named(engine: Engine, files: &[(&str, &str)]) -> Result<(), ExternalError> {
        let tree = files
            .iter()
            .fold(MemoryTree::new("overlays/prod"), |tree, (path, text)| {
                tree.with(*path, *text)
            });
        let paths = tree.files().unwrap();
        check_named_in(&tree, &paths, &engine, &Limits::default())
    }

    #[test]
    fn a_named_renderer_must_fit_the_tree() {
        let kustomization = [("kustomization.yaml", "resources: []\n"), ("a.yaml", "")];
        let chart = [("Chart.yaml", "apiVersion: v2\nname: web\nversion: 1.0.0\n")];
        let plain = [("a.yaml", ""), ("b/c.json", "")];

        named(Engine::Kustomize, &kustomization).unwrap();
        named(Engine::Kustomize, &[("overlays/qa/Kustomization", "")]).unwrap();
        let error = named(Engine::Kustomize, &plain).unwrap_err();
        assert_eq!(
            error.to_string(),
            "overlays/prod: renderer kustomize: no kustomization.yaml here, nor in \
             overlays/<environment>/"
        );

        named(Engine::Helm, &chart).unwrap();
        named(Engine::WindlassChart, &chart).unwrap();
        for engine in [Engine::Helm, Engine::WindlassChart] {
            let error = named(engine.clone(), &kustomization).unwrap_err();
            assert_eq!(
                error.to_string(),
                format!(
                    "overlays/prod: renderer {}: no Chart.yaml here",
                    engine.name()
                )
            );
        }
        // Helm's dependencies must still be vendored.
        let unvendored = "apiVersion: v2\nname: web\nversion: 1.0.0\ndependencies:\n  \
                          - name: redis\n";
        assert!(matches!(
            named(Engine::Helm, &[("Chart.yaml", unvendored)]),
            Err(ExternalError::DependenciesNotVendored { .. })
        ));

        // Plain: what detection would have chosen is overridden...
        named(Engine::Plain, &plain).unwrap();
        named(
            Engine::Plain,
            &[("overlays/qa/Kustomization", ""), ("a.yaml", "")],
        )
        .unwrap();
        // ...but a kustomization or Chart.yaml read as a manifest is refused.
        let error = named(Engine::Plain, &kustomization).unwrap_err();
        assert_eq!(
            error.to_string(),
            "overlays/prod: renderer plain: `kustomization.yaml` is not a Kubernetes object but \
             a kustomization; name the renderer it belongs to, or list it in .windlassignore"
        );
        let error = named(Engine::Plain, &[("a.yaml", ""), ("sub/Chart.yaml", "")]).unwrap_err();
        assert!(
            error.to_string().contains(
                "`sub/Chart.yaml` is not a Kubernetes object but a \
                                        chart's metadata"
            ),
            "{error}"
        );
    }
}
