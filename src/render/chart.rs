//! Charts: `Chart.yaml`, values per environment, handlebars templates.
//!
//! ```text
//!   Chart.yaml ───────────► ChartMetadata (name, version, description) ──► context.chart
//!   values.yaml ──┐
//!   values/<env>.yaml ──┼─ layer ─► context.values
//!   caller, --set ──────┘
//!   templates/_*.tpl ──► partials (`_labels.tpl` → `{{> labels}}`)
//!   templates/*.yaml ──► handlebars (strict, no escaping) ──► YAML text per template
//! ```
//!
//! Partials are the files under `templates/` whose name starts with `_`.
//! Their name is their path under `templates/` without the `_` and without
//! the extension: `templates/_labels.tpl` is `labels`, `templates/web/_env.yaml`
//! is `web/env`. A partial on its own line, `    {{> labels}}`, is indented
//! as a whole: every line it produces gets the four spaces. Every other file
//! under `templates/` renders to zero or more YAML documents, in path order.
//!
//! Partial names must be literal, and partials may not include each other in
//! a cycle: both are checked before anything renders, so a chart cannot
//! recurse without end.

use std::collections::{BTreeMap, BTreeSet};

use handlebars::template::{Parameter, Template, TemplateElement};
use handlebars::{Context, Handlebars, RenderError, RenderErrorReason, TemplateError};
use serde_json::{Map, Value, json};

use super::yaml::{YamlLimits, load_single};
use super::{Error, Errors, RenderInput, Source, helpers, values, yaml_file_error};

/// What `Chart.yaml` says about a chart.
#[derive(Debug, Clone, PartialEq)]
pub struct ChartMetadata {
    /// Lowercase letters, digits and `-`.
    pub name: String,
    /// A SemVer 2 version.
    pub version: String,
    pub description: Option<String>,
    /// All of `Chart.yaml`, as templates see it under `chart`.
    pub fields: Map<String, Value>,
}

impl ChartMetadata {
    pub(crate) fn parse(text: &str, limits: &YamlLimits) -> Result<ChartMetadata, Error> {
        let invalid = |reason: String| Error::ChartMetadata { reason };
        let value =
            load_single(text, limits).map_err(|errors| yaml_file_error("Chart.yaml", errors))?;
        let Some(Value::Object(fields)) = value else {
            return Err(invalid(
                "expected a map with name, version and description".into(),
            ));
        };
        let name = match fields.get("name") {
            Some(Value::String(name)) if is_chart_name(name) => name.clone(),
            Some(Value::String(_)) => {
                return Err(invalid(
                    "`name` must be lowercase letters, digits and `-`, starting and ending with \
                     a letter or digit, at most 63 characters"
                        .into(),
                ));
            }
            _ => return Err(invalid("`name` is missing or not a string".into())),
        };
        let version = match fields.get("version") {
            Some(Value::String(version)) if semver::Version::parse(version).is_ok() => {
                version.clone()
            }
            Some(Value::String(_)) => {
                return Err(invalid(
                    "`version` must be a SemVer version such as 1.0.0".into(),
                ));
            }
            Some(_) => {
                return Err(invalid(
                    "`version` must be a string holding a SemVer version such as 1.0.0 \
                     (quote it)"
                        .into(),
                ));
            }
            None => return Err(invalid("`version` is missing".into())),
        };
        let description = match fields.get("description") {
            Some(Value::String(description)) => Some(description.clone()),
            None | Some(Value::Null) => None,
            Some(_) => return Err(invalid("`description` must be a string".into())),
        };
        Ok(ChartMetadata {
            name,
            version,
            description,
            fields,
        })
    }
}

fn is_chart_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-'
}

fn is_environment_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 253
        && bytes[0].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// The environments a chart offers: `values/<name>.yaml` (or `.yml`).
/// `None` when the chart has no `values/` folder at all.
fn environments(files: &[&String]) -> Result<Option<BTreeMap<String, String>>, Error> {
    let mut found = BTreeMap::new();
    let mut has_folder = false;
    for path in files {
        let Some(rest) = path.strip_prefix("values/") else {
            continue;
        };
        has_folder = true;
        if rest.contains('/') {
            continue;
        }
        let Some(stem) = rest
            .strip_suffix(".yaml")
            .or_else(|| rest.strip_suffix(".yml"))
        else {
            continue;
        };
        if let Some(previous) = found.insert(stem.to_string(), (*path).clone()) {
            return Err(Error::ChartMetadata {
                reason: format!(
                    "environment `{stem}` has two values files, `{previous}` and `{path}`; keep one"
                ),
            });
        }
    }
    Ok(has_folder.then_some(found))
}

/// One output template: its path, and its text or why it has none.
pub(crate) type Output = (String, Result<String, Error>);

/// Reads, layers and renders a chart. Returns each output template's path
/// and text (or error), in path order.
///
/// Errors are collected phase by phase: the values files (both, each with
/// all its YAML errors), then the templates' syntax, then each template's
/// rendering. A phase with errors ends the render there, since the next
/// one would only fail on its account.
pub(crate) fn render(
    input: &RenderInput<'_>,
    files: &[&String],
    source: &mut Source<'_>,
) -> Result<(ChartMetadata, Vec<Output>), Error> {
    let yaml_limits = input.limits.yaml();
    let metadata = ChartMetadata::parse(&source.text("Chart.yaml")?, &yaml_limits)?;
    let chart = metadata.name.clone();
    let mut errors = Errors::default();

    let read_values = |source: &mut Source<'_>, path: &str| -> Result<Map<String, Value>, Error> {
        let text = source.text(path)?;
        let value =
            load_single(&text, &yaml_limits).map_err(|errors| yaml_file_error(path, errors))?;
        match value {
            None => Ok(Map::new()),
            Some(Value::Object(map)) => Ok(map),
            Some(_) => Err(Error::ValuesNotMap {
                path: path.to_string(),
            }),
        }
    };

    let defaults = if files.iter().any(|f| *f == "values.yaml") {
        match read_values(source, "values.yaml") {
            Ok(map) => map,
            Err(error) => {
                errors.read(error)?;
                Map::new()
            }
        }
    } else {
        Map::new()
    };

    let environment_values = match &input.environment {
        None => None,
        Some(environment) => {
            if !is_environment_name(environment) {
                return Err(errors.fatal(Error::BadEnvironmentName {
                    environment: environment.clone(),
                }));
            }
            match environments(files).map_err(|error| errors.fatal(error))? {
                None => None,
                Some(known) => match known.get(environment) {
                    Some(path) => match read_values(source, path) {
                        Ok(map) => Some(map),
                        Err(error) => {
                            errors.read(error)?;
                            None
                        }
                    },
                    None => {
                        return Err(errors.fatal(Error::UnknownEnvironment {
                            chart: chart.clone(),
                            environment: environment.clone(),
                            available: if known.is_empty() {
                                "none (values/ holds no .yaml files)".to_string()
                            } else {
                                known.keys().cloned().collect::<Vec<_>>().join(", ")
                            },
                        }));
                    }
                },
            }
        }
    };

    let mut caller: Vec<Map<String, Value>> = Vec::with_capacity(input.values.len());
    for layer in &input.values {
        match &layer.values {
            Value::Object(map) => caller.push(map.clone()),
            Value::Null => caller.push(Map::new()),
            _ => errors.push(Error::ValuesNotMap {
                path: layer.name.clone(),
            }),
        }
    }
    errors.check()?;
    let values = values::layer(defaults, environment_values, &caller, &input.set)?;

    let context = json!({
        "values": values,
        "environment": input.environment.clone().unwrap_or_default(),
        "release": {
            "name": input.name.clone().unwrap_or_else(|| chart.clone()),
            "namespace": input.namespace,
        },
        "chart": metadata.fields,
        "git": input.git.as_ref().map_or_else(|| json!({}), |git| json!({
            "commit": git.commit,
            "shortCommit": git.short_commit(),
            "ref": git.reference.clone().unwrap_or_default(),
        })),
        "capabilities": input.capabilities.as_ref().map_or_else(|| json!({}), |c| {
            let mut map = Map::new();
            if let Some(version) = &c.kube_version {
                map.insert("kubeVersion".into(), json!(version));
            }
            map.insert("apiVersions".into(), json!(c.api_versions));
            Value::Object(map)
        }),
    });

    let mut registry = Handlebars::new();
    registry.set_strict_mode(true);
    registry.register_escape_fn(handlebars::no_escape);
    helpers::register(&mut registry);

    // Partial name → file path, for messages.
    let mut partials: BTreeMap<String, String> = BTreeMap::new();
    let mut outputs: Vec<String> = Vec::new();
    for path in files {
        let Some(under) = path.strip_prefix("templates/") else {
            continue;
        };
        let (dir, file) = match under.rsplit_once('/') {
            Some((dir, file)) => (format!("{dir}/"), file),
            None => (String::new(), under),
        };
        let text = match source.text(path) {
            Ok(text) => text,
            Err(error) => {
                errors.read(error)?;
                continue;
            }
        };
        if let Some(partial) = file.strip_prefix('_') {
            let stem = partial.split_once('.').map_or(partial, |(stem, _)| stem);
            let name = format!("{dir}{stem}");
            if let Some(first) = partials.get(&name) {
                errors.push(Error::PartialClash {
                    chart: chart.clone(),
                    name,
                    first: first.clone(),
                    second: (*path).clone(),
                });
                continue;
            }
            partials.insert(name.clone(), (*path).clone());
            if let Err(e) = registry.register_partial(&name, text) {
                errors.push(syntax_error(&chart, path, &e));
            }
        } else {
            match registry.register_template_string(path, text) {
                Ok(()) => outputs.push((*path).clone()),
                Err(e) => errors.push(syntax_error(&chart, path, &e)),
            }
        }
    }
    errors.check()?;
    check_partials(&registry, &chart, &partials, &outputs)?;

    let context = Context::from(context);
    let limit = input.limits.max_file_bytes;
    let rendered = outputs
        .into_iter()
        .map(|path| {
            let text = render_template(&registry, &context, &chart, &partials, &path, limit);
            (path, text)
        })
        .collect();
    Ok((metadata, rendered))
}

/// Renders one output template, its output bounded while it is written,
/// not after: a template looping over its values cannot fill memory first.
fn render_template(
    registry: &Handlebars<'_>,
    context: &Context,
    chart: &str,
    partials: &BTreeMap<String, String>,
    path: &str,
    limit: u64,
) -> Result<String, Error> {
    let mut output = BoundedOutput {
        bytes: Vec::new(),
        limit,
        exceeded: false,
    };
    let result = registry.render_with_context_to_write(path, context, &mut output);
    if output.exceeded {
        return Err(Error::RenderedTooLarge {
            chart: chart.to_string(),
            template: path.to_string(),
            limit,
        });
    }
    result.map_err(|error| render_error(chart, partials, &error))?;
    String::from_utf8(output.bytes).map_err(|_| Error::Template {
        chart: chart.to_string(),
        template: format!("`{path}`"),
        at: String::new(),
        message: "the output is not UTF-8 text".to_string(),
    })
}

/// Collects a template's output up to a limit.
struct BoundedOutput {
    bytes: Vec<u8>,
    limit: u64,
    exceeded: bool,
}

impl std::io::Write for BoundedOutput {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        if (self.bytes.len() + bytes.len()) as u64 > self.limit {
            self.exceeded = true;
            return Err(std::io::Error::other("rendered output over the limit"));
        }
        self.bytes.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn syntax_error(chart: &str, path: &str, error: &TemplateError) -> Error {
    let (line, column) = error.pos().unwrap_or((0, 0));
    Error::TemplateSyntax {
        chart: chart.to_string(),
        template: format!("`{path}`"),
        line,
        column,
        message: error.reason().to_string(),
    }
}

fn render_error(chart: &str, partials: &BTreeMap<String, String>, error: &RenderError) -> Error {
    let name = error.template_name.clone().unwrap_or_default();
    let template = match partials.get(&name) {
        Some(path) => format!("`{path}` (partial `{name}`)"),
        None => format!("`{name}`"),
    };
    let at = match (error.line_no, error.column_no) {
        (Some(line), _) => format!(" line {line}"),
        _ => String::new(),
    };
    match error.reason() {
        RenderErrorReason::MissingVariable(path) => Error::MissingValue {
            chart: chart.to_string(),
            template,
            at,
            path: path.clone().unwrap_or_else(|| "(unknown)".to_string()),
        },
        reason => Error::Template {
            chart: chart.to_string(),
            template,
            at,
            message: reason.to_string(),
        },
    }
}

/// Partial names are literal and partials do not include each other in a
/// cycle: checked before rendering, so a chart cannot recurse without end.
fn check_partials(
    registry: &Handlebars<'_>,
    chart: &str,
    partials: &BTreeMap<String, String>,
    outputs: &[String],
) -> Result<(), Error> {
    let mut graph: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for name in partials.keys().chain(outputs.iter()) {
        let mut references = BTreeSet::new();
        if let Some(template) = registry.get_template(name)
            && !partial_references(template, &mut references)
        {
            let template = partials.get(name).unwrap_or(name).clone();
            return Err(Error::DynamicPartial {
                chart: chart.to_string(),
                template,
            });
        }
        graph.insert(name, references);
    }
    // Depth-first search for a cycle among partials.
    fn visit<'g>(
        node: &'g str,
        graph: &'g BTreeMap<&str, BTreeSet<String>>,
        path: &mut Vec<&'g str>,
        done: &mut BTreeSet<&'g str>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| *n == node) {
            let mut cycle: Vec<String> = path[at..].iter().map(|n| n.to_string()).collect();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node);
        if let Some(children) = graph.get(node) {
            for child in children {
                if let Some((key, _)) = graph.get_key_value(child.as_str())
                    && let Some(cycle) = visit(key, graph, path, done)
                {
                    return Some(cycle);
                }
            }
        }
        path.pop();
        done.insert(node);
        None
    }
    let mut done = BTreeSet::new();
    for name in graph.keys() {
        if let Some(cycle) = visit(name, &graph, &mut Vec::new(), &mut done) {
            return Err(Error::PartialCycle {
                chart: chart.to_string(),
                cycle: cycle.join(" → "),
            });
        }
    }
    Ok(())
}

/// Collects the partial names a template includes; `false` when one is
/// not a literal name.
fn partial_references(template: &Template, out: &mut BTreeSet<String>) -> bool {
    for element in &template.elements {
        let ok = match element {
            TemplateElement::PartialExpression(decorator)
            | TemplateElement::PartialBlock(decorator) => {
                let literal = match &decorator.name {
                    Parameter::Name(_) | Parameter::Path(_) => {
                        decorator.name.as_name().map(str::to_string)
                    }
                    Parameter::Literal(Value::String(name)) => Some(name.clone()),
                    _ => None,
                };
                let nested = decorator
                    .template
                    .as_ref()
                    .is_none_or(|t| partial_references(t, out));
                match literal {
                    Some(name) => {
                        if name != "@partial-block" {
                            out.insert(name);
                        }
                        nested
                    }
                    None => false,
                }
            }
            TemplateElement::HelperBlock(helper) => {
                helper
                    .template
                    .as_ref()
                    .is_none_or(|t| partial_references(t, out))
                    && helper
                        .inverse
                        .as_ref()
                        .is_none_or(|t| partial_references(t, out))
            }
            TemplateElement::DecoratorBlock(decorator) => decorator
                .template
                .as_ref()
                .is_none_or(|t| partial_references(t, out)),
            _ => true,
        };
        if !ok {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: YamlLimits = YamlLimits {
        max_documents: 10,
        max_depth: 20,
        max_alias_nodes: 100,
    };

    #[test]
    fn chart_metadata_is_validated() {
        let ok = ChartMetadata::parse(
            "name: web\nversion: 1.2.3-rc.1\ndescription: A web app\nappVersion: \"2.0\"\n",
            &LIMITS,
        )
        .unwrap();
        assert_eq!(
            (
                ok.name.as_str(),
                ok.version.as_str(),
                ok.description.as_deref()
            ),
            ("web", "1.2.3-rc.1", Some("A web app"))
        );
        assert_eq!(ok.fields["appVersion"], "2.0");
        let cases = [
            ("version: 1.0.0\n", "`name` is missing"),
            ("name: Web\nversion: 1.0.0\n", "lowercase"),
            ("name: web-\nversion: 1.0.0\n", "lowercase"),
            ("name: web\n", "`version` is missing"),
            ("name: web\nversion: 1.0\n", "(quote it)"),
            ("name: web\nversion: \"1.0\"\n", "SemVer"),
            (
                "name: web\nversion: 1.0.0\ndescription: [a]\n",
                "`description` must be",
            ),
            ("- a\n", "expected a map"),
            ("", "expected a map"),
        ];
        for (text, expected) in cases {
            let error = ChartMetadata::parse(text, &LIMITS).unwrap_err().to_string();
            assert!(error.contains(expected), "{text:?}: {error}");
            assert!(error.contains("Chart.yaml"), "{error}");
        }
    }

    #[test]
    fn environment_names_cannot_leave_the_values_folder() {
        for bad in ["../secrets", "a/b", ".hidden", "", "-x"] {
            assert!(!is_environment_name(bad), "{bad}");
        }
        for good in ["dev", "staging", "prod-eu.1", "pr_7"] {
            assert!(is_environment_name(good), "{good}");
        }
    }

    #[test]
    fn partial_references_are_found_in_nested_blocks() {
        let template = Template::compile(
            "{{> a}}{{#if x}}{{> b}}{{else}}{{#each y}}{{> c}}{{/each}}{{/if}}{{#> d}}{{> e}}{{/d}}",
        )
        .unwrap();
        let mut found = BTreeSet::new();
        assert!(partial_references(&template, &mut found));
        assert_eq!(
            found.into_iter().collect::<Vec<_>>(),
            ["a", "b", "c", "d", "e"]
        );
        let dynamic = Template::compile("{{> (lookup this \"name\")}}").unwrap();
        assert!(!partial_references(&dynamic, &mut BTreeSet::new()));
    }
}
