//! Rendering: a directory of manifests, a chart or a kustomization, an
//! environment and values in; an ordered, checked set of Kubernetes objects
//! with digests out.
//!
//! ```text
//!   RenderInput { tree: &dyn FileTree, environment, values, --set, namespace, git, scopes,
//!                 limits, tools, allow_empty }
//!        │ detect: one rule (see [`detect`]), unless an engine is named
//!        │ (`spec.source.renderer`, `--renderer`: checked to fit the tree)
//!        ├─ plain manifests: every .yaml/.yml/.json, path order ────────────┐
//!        ├─ windlass chart: values layered, handlebars templates ───────────┤
//!        ├─ Kustomize: `kustomize build` (overlays/<environment>) ──────────┤
//!        ├─ Helm: `helm template` (values/<environment>.yaml), no hooks ────┤
//!        └─ Jsonnet: an error naming it                                      ▼
//!                                     YAML documents (YAML 1.2, traps refused, limits)
//!                                                                            │
//!     apiVersion/kind/metadata.name checked, `List`s expanded, scope decided, │
//!     namespace defaulted, duplicates refused, sha256 of canonical JSON;      │
//!     no objects at all: an error unless `allow_empty`                        ▼
//!                   Rendered { objects: [RenderedObject], manifest_digest, skipped_hooks }
//! ```
//!
//! - Files are only ever read through [`FileTree`]: a local directory now, a
//!   git snapshot from the `source` module later.
//! - Never a partial result: any error means no objects at all.
//! - Every error in one run: a file that cannot be read or parsed does not
//!   hide the errors of the files after it, nor the objects' own (not an
//!   object, defined twice). One error comes back as itself, several as
//!   [`Error::Many`], up to [`MAX_ERRORS`]. What makes the rest unreadable
//!   ends the render at once with what was found so far: the total size
//!   or document limit, an unreadable tree or `.windlassignore`, a broken
//!   `Chart.yaml`, values files or templates that do not compile (the
//!   templates would fail on their account).
//! - Deterministic: the same inputs give the same objects, digests and
//!   output bytes. No time, no randomness, no hash-map order.
//! - Errors name the file or template, the document, the line and column,
//!   and never quote document content (a Secret's value could be there).
//! - Kustomize and Helm run as external binaries ([`tool`]); their output
//!   is parsed by windlass's own YAML loader, so it meets exactly the rules
//!   plain manifests meet. A tool that fails ends the render with its own
//!   message ([`Error::External`]).
//!
//! Where each rule lives: [`files`] (what is read), [`manifests`] (which
//! files are manifests, `.windlassignore`), [`chart`] (charts, templates,
//! partials), [`values`] (layering, `--set`), [`helpers`] (template
//! helpers), [`yaml`] (parsing and the YAML 1.1 traps), [`scope`]
//! (cluster-scoped kinds, namespace defaulting), [`object`] (identity,
//! digests, masking), [`detect`] (which engine), [`kustomize`] and
//! [`helm`] (the external engines) and [`tool`] (finding and running
//! them).

pub mod chart;
pub mod files;
pub mod helpers;
pub mod manifests;
pub mod object;
pub mod scope;
pub mod values;
pub mod yaml;
// External renderers: detection, Kustomize, Helm, running tools.
pub mod detect;
pub mod helm;
pub mod kustomize;
pub mod tool;

use std::borrow::Cow;
use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fmt;

use serde_json::Value;

pub use chart::ChartMetadata;
pub use files::{FileTree, FileTreeError, LocalDirectory, MemoryTree};
pub use object::{
    MASK, ObjectId, ObjectSource, RenderedObject, Sorted, canonical_json, digest, manifest_digest,
    mask_secret_values,
};
pub use scope::{BUILTIN_CLUSTER_SCOPED, ScopeLookup};
pub use values::{PathStep, SetError, SetValue};
pub use yaml::{ScalarRole, YamlError, YamlErrorKind, YamlErrors, to_yaml};

pub use detect::Engine;
pub use helm::SkippedHook;
pub use tool::{ExternalError, ExternalTools, ToolPaths};

use manifests::{IGNORE_FILE, IgnoreRules};
use scope::Scopes;
use tool::ToolDocument;
use yaml::YamlLimits;

/// The most errors one render reports; past it, a count of the rest.
pub const MAX_ERRORS: usize = 20;

/// Bounds on what one render may read and build. Each is its own error,
/// with the limit in the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes per file read, and per template's rendered output. 4 MiB.
    pub max_file_bytes: u64,
    /// Bytes of all files one render reads. 64 MiB.
    pub max_total_bytes: u64,
    /// Documents in one file or one template's output. 10,000.
    pub max_documents_per_file: usize,
    /// Non-empty documents in one render. 50,000.
    pub max_documents: usize,
    /// Nesting depth of maps and lists. 100.
    pub max_depth: usize,
    /// Nodes aliases may copy in one file (alias bombs). 100,000.
    pub max_alias_nodes: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_file_bytes: files::DEFAULT_MAX_FILE_BYTES,
            max_total_bytes: files::DEFAULT_MAX_TOTAL_BYTES,
            max_documents_per_file: 10_000,
            max_documents: 50_000,
            max_depth: 100,
            max_alias_nodes: 100_000,
        }
    }
}

impl Limits {
    pub(crate) fn yaml(&self) -> YamlLimits {
        YamlLimits {
            max_documents: self.max_documents_per_file,
            max_depth: self.max_depth,
            max_alias_nodes: self.max_alias_nodes,
        }
    }
}

/// Where a snapshot came from, for the `git` template context. The source
/// module fills it; a plain directory has none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitInfo {
    /// Full commit id.
    pub commit: String,
    /// The ref that was resolved, e.g. `refs/heads/main`.
    pub reference: Option<String>,
}

impl GitInfo {
    /// The first 7 characters of the commit, as `git log --oneline` shows it.
    pub fn short_commit(&self) -> String {
        self.commit.chars().take(7).collect()
    }
}

/// What the cluster offers, for the `capabilities` template context. Known
/// only when rendering against a cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// E.g. `1.36`.
    pub kube_version: Option<String>,
    /// E.g. `apps/v1`, `networking.k8s.io/v1`.
    pub api_versions: Vec<String>,
}

/// One layer of caller values (an Application's inline values, a `-f`
/// file), with a name for messages.
#[derive(Clone)]
pub struct ValuesLayer {
    pub name: String,
    /// A map (or null for none).
    pub values: Value,
}

// Values may hold secrets: the name only.
impl fmt::Debug for ValuesLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ValuesLayer")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl ValuesLayer {
    /// Reads a values file the way chart values files are read (same YAML
    /// rules and limits). It must hold one map (or nothing).
    pub fn from_yaml(name: &str, text: &str, limits: &Limits) -> Result<ValuesLayer, Error> {
        let value = yaml::load_single(text, &limits.yaml())
            .map_err(|errors| yaml_file_error(name, errors))?;
        match value {
            None => Ok(ValuesLayer {
                name: name.to_string(),
                values: Value::Null,
            }),
            Some(values @ Value::Object(_)) => Ok(ValuesLayer {
                name: name.to_string(),
                values,
            }),
            Some(_) => Err(Error::ValuesNotMap {
                path: name.to_string(),
            }),
        }
    }
}

/// Everything a render needs.
pub struct RenderInput<'a> {
    pub tree: &'a dyn FileTree,
    /// The release name templates see as `release.name`. `None`: the
    /// chart's name (plain manifests are not templated and ignore it).
    pub name: Option<String>,
    /// The destination namespace: namespaced objects without one get it.
    pub namespace: String,
    /// Selects `values/<environment>.yaml` of a chart.
    pub environment: Option<String>,
    /// Caller values, layered in order above the environment file.
    pub values: Vec<ValuesLayer>,
    /// `--set` / `--set-string`, applied in order, last.
    pub set: Vec<SetValue>,
    pub git: Option<GitInfo>,
    pub capabilities: Option<Capabilities>,
    /// Which kinds are namespaced, when the caller knows (discovery).
    pub scopes: Option<&'a dyn ScopeLookup>,
    pub limits: Limits,
    /// kustomize and helm, for trees detected as Kustomize or Helm. `None`:
    /// found in this process's environment ([`ToolPaths::resolve`]) with
    /// default limits, when a tree needs one.
    pub tools: Option<&'a ExternalTools>,
    /// Whether a render with no objects is a result. `false`: it is an
    /// error ([`Error::Empty`]): far more often a wrong path than an intent.
    pub allow_empty: bool,
    /// The engine named for the tree (`spec.source.renderer`,
    /// `--renderer`); `None`: detected ([`detect`]).
    pub engine: Option<Engine>,
}

impl<'a> RenderInput<'a> {
    /// A render of `tree` into `namespace` with no values and default limits.
    pub fn new(tree: &'a dyn FileTree, namespace: impl Into<String>) -> RenderInput<'a> {
        RenderInput {
            tree,
            name: None,
            namespace: namespace.into(),
            environment: None,
            values: Vec::new(),
            set: Vec::new(),
            git: None,
            capabilities: None,
            scopes: None,
            limits: Limits::default(),
            tools: None,
            allow_empty: false,
            engine: None,
        }
    }
}

impl fmt::Debug for RenderInput<'_> {
    // Values and `--set` may hold secrets: their names only.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RenderInput")
            .field("tree", &self.tree.describe())
            .field("name", &self.name)
            .field("namespace", &self.namespace)
            .field("environment", &self.environment)
            .field("values", &self.values)
            .field("set", &self.set)
            .field("git", &self.git)
            .field("limits", &self.limits)
            .field("tools", &self.tools)
            .field("allow_empty", &self.allow_empty)
            .field("engine", &self.engine)
            .finish_non_exhaustive()
    }
}

/// The result of a render.
#[derive(Debug)]
pub struct Rendered {
    /// In source order: path order, then document order.
    pub objects: Vec<RenderedObject>,
    /// sha256 over the sorted identities and digests of all objects.
    pub manifest_digest: String,
    /// `Some` when the tree is a windlass chart.
    pub chart: Option<ChartMetadata>,
    /// The release name (for a chart, windlass's or Helm's: the given name
    /// or the chart's).
    pub release_name: Option<String>,
    pub namespace: String,
    pub environment: Option<String>,
    /// Helm hooks left out, for one line of output ([`helm::hooks_message`]).
    pub skipped_hooks: Vec<SkippedHook>,
}

/// Why a render produced nothing.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{tree}: {error}")]
    Files { tree: String, error: FileTreeError },

    #[error("`{path}` is not UTF-8 text")]
    NotUtf8 { path: String },

    #[error("`{path}`: {error}")]
    Yaml { path: String, error: YamlError },

    #[error("chart `{chart}`: template `{template}`, rendered output {error}")]
    RenderedYaml {
        chart: String,
        template: String,
        error: YamlError,
    },

    #[error("the render holds more than the limit of {limit} documents")]
    TooManyDocuments { limit: usize },

    #[error("chart `{chart}`: template `{template}` renders more than the limit of {limit} bytes")]
    RenderedTooLarge {
        chart: String,
        template: String,
        limit: u64,
    },

    #[error(
        "{origin}: not a Kubernetes object: expected a map with apiVersion, kind and metadata, \
         found {found}"
    )]
    NotAnObject {
        origin: ObjectSource,
        found: &'static str,
    },

    #[error("{origin}: not a Kubernetes object: `{field}` is missing or not a string")]
    MissingField {
        origin: ObjectSource,
        field: &'static str,
    },

    #[error("{origin}: `apiVersion` must be `VERSION` or `GROUP/VERSION`")]
    BadApiVersion { origin: ObjectSource },

    #[error(
        "{origin}: metadata.generateName is not supported: GitOps needs a stable name to find \
         the object again; set metadata.name instead"
    )]
    GenerateName { origin: ObjectSource },

    #[error("{id} is defined twice: in {first} and in {second}")]
    Duplicate {
        id: String,
        first: Box<ObjectSource>,
        second: Box<ObjectSource>,
    },

    #[error(
        "{origin}: {kind} is cluster-scoped but has metadata.namespace `{namespace}`; remove \
         the namespace"
    )]
    NamespaceOnClusterScoped {
        origin: ObjectSource,
        kind: String,
        namespace: String,
    },

    #[error("`Chart.yaml`: {reason}")]
    ChartMetadata { reason: String },

    #[error("values `{path}` are not a map of `key: value` pairs")]
    ValuesNotMap { path: String },

    #[error(
        "chart `{chart}` has no environment `{environment}` (no values/{environment}.yaml); \
         environments: {available}"
    )]
    UnknownEnvironment {
        chart: String,
        environment: String,
        available: String,
    },

    #[error(
        "environment name `{environment}` is not valid: use letters, digits, `.`, `_` and `-`, \
         starting with a letter or digit"
    )]
    BadEnvironmentName { environment: String },

    #[error("chart `{chart}`: template {template} line {line} column {column}: {message}")]
    TemplateSyntax {
        chart: String,
        template: String,
        line: usize,
        column: usize,
        message: String,
    },

    #[error("chart `{chart}`: template {template}{at}: missing value `{path}`")]
    MissingValue {
        chart: String,
        template: String,
        at: String,
        path: String,
    },

    #[error("chart `{chart}`: template {template}{at}: {message}")]
    Template {
        chart: String,
        template: String,
        at: String,
        message: String,
    },

    #[error("chart `{chart}`: partials include each other in a cycle: {cycle}")]
    PartialCycle { chart: String, cycle: String },

    #[error(
        "chart `{chart}`: template `{template}` names a partial with an expression; only \
         literal partial names are supported"
    )]
    DynamicPartial { chart: String, template: String },

    #[error("chart `{chart}`: partial `{name}` is defined twice, by `{first}` and `{second}`")]
    PartialClash {
        chart: String,
        name: String,
        first: String,
        second: String,
    },

    #[error(
        "{tree} has no Chart.yaml and no kustomization.yaml, so it holds plain manifests, which \
         are not templated and take no {what}"
    )]
    NotAChart { tree: String, what: &'static str },

    #[error("`.windlassignore` line {line}: {reason}")]
    Ignore { line: usize, reason: String },

    #[error(transparent)]
    Set(#[from] SetError),

    /// Kustomize or Helm: the tool's own failure, or the tree not fit for it.
    #[error(transparent)]
    External(#[from] ExternalError),

    #[error(
        "the render produced no objects: check the path `{tree}` ({why}); pass --allow-empty \
         if nothing is meant to be deployed"
    )]
    Empty { tree: String, why: &'static str },

    /// Several of the above, in the order found (path order, then
    /// document order; duplicate identities last), never nested. `more`
    /// counts those past [`MAX_ERRORS`].
    #[error("{}", ErrorList(errors, *more))]
    Many { errors: Vec<Error>, more: usize },
}

/// Every YAML error of a file read whole (values, `Chart.yaml`), as one
/// error.
pub(crate) fn yaml_file_error(path: &str, errors: YamlErrors) -> Error {
    let mut found = Errors::default();
    found.yaml(errors, |error| Error::Yaml {
        path: path.to_string(),
        error,
    });
    found.into_error()
}

/// Displays errors as one (a single one) or as a counted list, one per line.
struct ErrorList<'a, E>(&'a [E], usize);

impl<E: fmt::Display> fmt::Display for ErrorList<'_, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_list(f, self.0, self.1)
    }
}

pub(crate) fn write_list<E: fmt::Display>(
    f: &mut fmt::Formatter<'_>,
    errors: &[E],
    more: usize,
) -> fmt::Result {
    if let ([only], 0) = (errors, more) {
        return write!(f, "{only}");
    }
    write!(f, "{} errors:", errors.len() + more)?;
    for error in errors {
        write!(f, "\n- {error}")?;
    }
    match more {
        0 => Ok(()),
        1 => write!(f, "\n- … and 1 more error"),
        _ => write!(f, "\n- … and {more} more errors"),
    }
}

/// The errors of one render, in the order found, up to [`MAX_ERRORS`].
/// Empty, and without an allocation, while nothing is wrong.
#[derive(Debug, Default)]
pub(crate) struct Errors {
    list: Vec<Error>,
    more: usize,
}

impl Errors {
    pub fn push(&mut self, error: Error) {
        match error {
            Error::Many { errors, more } => {
                for error in errors {
                    self.push(error);
                }
                self.more += more;
            }
            error if self.list.len() < MAX_ERRORS => self.list.push(error),
            _ => self.more += 1,
        }
    }

    /// Every error of one YAML stream, each wrapped with where it is.
    pub fn yaml(&mut self, errors: YamlErrors, wrap: impl Fn(YamlError) -> Error) {
        for error in errors.errors {
            self.push(wrap(error));
        }
        self.more += errors.more;
    }

    /// A file that could not be read. The total size limit ends the
    /// render (every later file would break it too): `Err` with all.
    pub fn read(&mut self, error: Error) -> Result<(), Error> {
        let total = matches!(
            &error,
            Error::Files {
                error: FileTreeError::TotalTooLarge { .. },
                ..
            }
        );
        self.push(error);
        if total {
            return Err(self.take());
        }
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// `Ok` when nothing was found; otherwise all of it.
    pub fn check(&mut self) -> Result<(), Error> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(self.take())
        }
    }

    /// Ends the render with `error`, after those found before it.
    pub fn fatal(&mut self, error: Error) -> Error {
        self.push(error);
        self.take()
    }

    /// What was found, as one error. Call only when not empty.
    pub fn into_error(mut self) -> Error {
        self.take()
    }

    fn take(&mut self) -> Error {
        let more = std::mem::take(&mut self.more);
        let mut list = std::mem::take(&mut self.list);
        if list.len() == 1 && more == 0 {
            list.remove(0)
        } else {
            Error::Many { errors: list, more }
        }
    }
}

/// Reads files through the tree, enforcing the limits, as text.
pub(crate) struct Source<'a> {
    tree: &'a dyn FileTree,
    limits: Limits,
    total: u64,
}

impl Source<'_> {
    pub fn text(&mut self, path: &str) -> Result<String, Error> {
        let files = |error| Error::Files {
            tree: self.tree.describe(),
            error,
        };
        let bytes = self.tree.read(path).map_err(files)?;
        let size = bytes.len() as u64;
        if size > self.limits.max_file_bytes {
            return Err(files(FileTreeError::TooLarge {
                path: path.to_string(),
                size,
                limit: self.limits.max_file_bytes,
            }));
        }
        self.total += size;
        if self.total > self.limits.max_total_bytes {
            return Err(files(FileTreeError::TotalTooLarge {
                path: path.to_string(),
                limit: self.limits.max_total_bytes,
            }));
        }
        String::from_utf8(bytes).map_err(|_| Error::NotUtf8 {
            path: path.to_string(),
        })
    }
}

/// Renders a tree with the engine [`detect`] picks: plain manifests, a
/// windlass chart, `kustomize build` or `helm template`. Every engine's
/// objects go through the same checks (identity, namespace defaulting,
/// scopes, duplicates) and digests.
pub fn render(input: &RenderInput<'_>) -> Result<Rendered, Error> {
    let tree = input.tree;
    let mut source = Source {
        tree,
        limits: input.limits,
        total: 0,
    };
    let all = tree.files().map_err(|error| Error::Files {
        tree: tree.describe(),
        error,
    })?;
    let rules = if all.iter().any(|f| f == IGNORE_FILE) {
        IgnoreRules::parse(&source.text(IGNORE_FILE)?)?
    } else {
        IgnoreRules::none()
    };
    let kept: Vec<&String> = all
        .iter()
        .filter(|path| path.as_str() != IGNORE_FILE && !rules.is_ignored(path))
        .collect();
    let engine = match &input.engine {
        Some(named) => {
            detect::check_named_in(tree, &kept, named, &input.limits)?;
            named.clone()
        }
        None => detect::detect_in(tree, &kept, &input.limits)?,
    };

    let mut documents = Documents {
        limits: input.limits,
        namespace: &input.namespace,
        count: 0,
        found: Vec::new(),
        errors: Errors::default(),
    };
    let mut skipped_hooks = Vec::new();
    let (chart, release_name) = match engine {
        Engine::Kustomize => {
            let tools = external_tools(input);
            for document in kustomize::render_kustomize(input, &tools)? {
                documents.document(document)?;
            }
            (None, input.name.clone())
        }
        Engine::Helm => {
            let tools = external_tools(input);
            let output = helm::render_helm(input, &tools)?;
            for document in output.documents {
                documents.document(document)?;
            }
            skipped_hooks = output.skipped_hooks;
            (None, Some(output.release_name))
        }
        Engine::WindlassChart => {
            let (metadata, outputs) = chart::render(input, &kept, &mut source)?;
            for (path, output) in outputs {
                match output {
                    Ok(text) => documents.add(&path, &text, Some(&metadata.name))?,
                    Err(error) => documents.errors.push(error),
                }
            }
            let name = input.name.clone().unwrap_or_else(|| metadata.name.clone());
            (Some(metadata), Some(name))
        }
        Engine::Plain => {
            let what = if input.environment.is_some() {
                Some("environment")
            } else if !input.values.is_empty() || !input.set.is_empty() {
                Some("values")
            } else {
                None
            };
            if let Some(what) = what {
                return Err(Error::NotAChart {
                    tree: tree.describe(),
                    what,
                });
            }
            for path in kept.iter().filter(|p| manifests::is_manifest(p)) {
                match source.text(path) {
                    Ok(text) => documents.add(path, &text, None)?,
                    Err(error) => documents.errors.read(error)?,
                }
            }
            (None, input.name.clone())
        }
    };

    let objects = finish(documents, input.scopes)?;
    if objects.is_empty() && !input.allow_empty {
        return Err(Error::Empty {
            tree: tree.describe(),
            why: empty_reason(&engine, !skipped_hooks.is_empty()),
        });
    }
    let manifest_digest = manifest_digest(&objects);
    Ok(Rendered {
        objects,
        manifest_digest,
        chart,
        release_name,
        namespace: input.namespace.clone(),
        environment: input.environment.clone(),
        skipped_hooks,
    })
}

/// The tools to run: the caller's, else those this process's environment
/// names ([`ToolPaths::resolve`]), with default limits.
fn external_tools<'a>(input: &RenderInput<'a>) -> Cow<'a, ExternalTools> {
    match input.tools {
        Some(tools) => Cow::Borrowed(tools),
        None => Cow::Owned(ExternalTools::new(ToolPaths::resolve())),
    }
}

/// Where an empty render's objects were looked for, for [`Error::Empty`].
fn empty_reason(engine: &Engine, hooks_skipped: bool) -> &'static str {
    match engine {
        Engine::Plain => "plain manifests: no .yaml, .yml or .json file in it holds an object",
        Engine::WindlassChart => "a windlass chart: its templates rendered nothing",
        Engine::Kustomize => "Kustomize: `kustomize build` output no objects",
        Engine::Helm if hooks_skipped => {
            "a Helm chart: `helm template` output only hooks, which windlass does not run"
        }
        Engine::Helm => "a Helm chart: `helm template` output no objects",
    }
}

/// Objects read so far. Each is checked and digested as soon as its file is
/// parsed, while its values are still in the CPU's caches: walking every
/// object once more at the end costs more than the digests themselves.
struct Documents<'a> {
    limits: Limits,
    /// The destination namespace.
    namespace: &'a str,
    count: usize,
    found: Vec<Found>,
    /// Everything wrong so far; a file with an error adds no objects.
    errors: Errors,
}

/// An object as read: identified, and digested as if namespaced (scopes are
/// known only once every file is read, since CRDs in the render decide).
struct Found {
    origin: ObjectSource,
    value: Value,
    id: ObjectId,
    digest: String,
    /// `Some` when the destination namespace was filled in, holding what
    /// `metadata.namespace` was before (nothing, null or ""), so that
    /// [`finish`] can put it back if the kind is cluster-scoped.
    defaulted: Option<Option<Value>>,
}

impl Documents<'_> {
    /// Reads one file's objects, or records its YAML errors. `Err` (with
    /// every error so far) only when the render cannot go on.
    fn add(&mut self, path: &str, text: &str, chart: Option<&str>) -> Result<(), Error> {
        let parsed = match yaml::load_documents(text, &self.limits.yaml()) {
            Ok(parsed) => parsed,
            Err(errors) => {
                self.errors.yaml(errors, |error| match chart {
                    Some(chart) => Error::RenderedYaml {
                        chart: chart.to_string(),
                        template: path.to_string(),
                        error,
                    },
                    None => Error::Yaml {
                        path: path.to_string(),
                        error,
                    },
                });
                return Ok(());
            }
        };
        self.count += parsed.len();
        if self.count > self.limits.max_documents {
            return Err(self.errors.fatal(Error::TooManyDocuments {
                limit: self.limits.max_documents,
            }));
        }
        for document in parsed {
            let origin = ObjectSource {
                path: path.to_string(),
                template: chart.is_some(),
                document: document.index,
                item: None,
            };
            self.value(origin, document.value);
        }
        Ok(())
    }

    /// One document an external tool rendered (already parsed). `Err`
    /// (with every error so far) past the document limit.
    fn document(&mut self, document: ToolDocument) -> Result<(), Error> {
        self.count += 1;
        if self.count > self.limits.max_documents {
            return Err(self.errors.fatal(Error::TooManyDocuments {
                limit: self.limits.max_documents,
            }));
        }
        self.value(document.source, document.value);
        Ok(())
    }

    /// One document's objects: itself, or the items of a `v1 List` (as
    /// `kubectl get -o yaml` writes).
    fn value(&mut self, origin: ObjectSource, value: Value) {
        let is_list =
            value["kind"] == "List" && value["apiVersion"] == "v1" && value["items"].is_array();
        if !is_list {
            self.object(origin, value);
            return;
        }
        let Value::Object(mut list) = value else {
            unreachable!("checked above")
        };
        let Some(Value::Array(items)) = list.remove("items") else {
            unreachable!("checked above")
        };
        for (index, item) in items.into_iter().enumerate() {
            let origin = ObjectSource {
                item: Some(index + 1),
                ..origin.clone()
            };
            self.object(origin, item);
        }
    }

    /// Identifies one object, fills in the destination namespace if it has
    /// none, and digests it.
    fn object(&mut self, origin: ObjectSource, mut value: Value) {
        let mut id = match identify(&origin, &value) {
            Ok(id) => id,
            Err(error) => {
                self.errors.push(error);
                return;
            }
        };
        let mut defaulted = None;
        if id.namespace.is_none()
            && let Some(Value::Object(metadata)) = value.get_mut("metadata")
        {
            let namespace = Value::String(self.namespace.to_string());
            defaulted = Some(metadata.insert("namespace".to_string(), namespace));
            id.namespace = Some(self.namespace.to_string());
        }
        let digest = object::digest(&value);
        self.found.push(Found {
            origin,
            value,
            id,
            digest,
            defaulted,
        });
    }
}

/// Decides scopes (taking the destination namespace back out of
/// cluster-scoped objects), refuses duplicates; returns every error found
/// in the render, if any.
fn finish(
    documents: Documents<'_>,
    caller: Option<&dyn ScopeLookup>,
) -> Result<Vec<RenderedObject>, Error> {
    let Documents {
        found, mut errors, ..
    } = documents;
    let crds = found
        .iter()
        .filter(|f| f.id.kind == "CustomResourceDefinition")
        .map(|f| &f.value);
    let scopes = Scopes::new(crds, caller);
    let namespaced: Vec<bool> = found
        .iter()
        .map(|f| scopes.is_namespaced(&f.id.group, &f.id.kind))
        .collect();

    // Errors first, in source order: a namespace on a cluster-scoped kind,
    // or an identity (with its final namespace) seen before.
    // Identity → index in `found`; only looked up, never iterated.
    let mut seen: HashMap<(&str, &str, Option<&str>, &str), usize> =
        HashMap::with_capacity(found.len());
    for (index, (f, &namespaced)) in found.iter().zip(&namespaced).enumerate() {
        let namespace = if namespaced {
            f.id.namespace.as_deref()
        } else if let (None, Some(namespace)) = (&f.defaulted, &f.id.namespace) {
            // The object's own namespace, on a cluster-scoped kind.
            errors.push(Error::NamespaceOnClusterScoped {
                origin: f.origin.clone(),
                kind: f.id.kind.clone(),
                namespace: namespace.clone(),
            });
            continue;
        } else {
            None
        };
        let key = (
            f.id.group.as_str(),
            f.id.kind.as_str(),
            namespace,
            f.id.name.as_str(),
        );
        match seen.entry(key) {
            Entry::Vacant(slot) => {
                slot.insert(index);
            }
            // Each later copy is named against the first.
            Entry::Occupied(first) => {
                let id = ObjectId {
                    namespace: namespace.map(str::to_string),
                    ..f.id.clone()
                };
                errors.push(Error::Duplicate {
                    id: id.to_string(),
                    first: Box::new(found[*first.get()].origin.clone()),
                    second: Box::new(f.origin.clone()),
                });
            }
        }
    }
    errors.check()?;

    let mut objects = Vec::with_capacity(found.len());
    for (
        Found {
            origin,
            mut value,
            mut id,
            mut digest,
            defaulted,
        },
        namespaced,
    ) in found.into_iter().zip(namespaced)
    {
        // Cluster-scoped after all: take the destination namespace back out.
        if !namespaced && let Some(before) = defaulted {
            if let Some(Value::Object(metadata)) = value.get_mut("metadata") {
                match before {
                    Some(before) => metadata.insert("namespace".to_string(), before),
                    None => metadata.remove("namespace"),
                };
            }
            id.namespace = None;
            digest = object::digest(&value);
        }
        // The digest is of `value` as it is now: filled in or taken back.
        objects.push(RenderedObject {
            id,
            object: value,
            source: origin,
            digest,
        });
    }
    Ok(objects)
}

/// Reads an object's identity, refusing what is not a Kubernetes object.
fn identify(origin: &ObjectSource, value: &Value) -> Result<ObjectId, Error> {
    let Value::Object(map) = value else {
        return Err(Error::NotAnObject {
            origin: origin.clone(),
            found: match value {
                Value::Array(_) => "a list",
                Value::String(_) => "a string",
                Value::Number(_) => "a number",
                Value::Bool(_) => "a boolean",
                _ => "nothing",
            },
        });
    };
    let text = |value: Option<&Value>, field: &'static str| match value {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        _ => Err(Error::MissingField {
            origin: origin.clone(),
            field,
        }),
    };
    let api_version = text(map.get("apiVersion"), "apiVersion")?;
    let kind = text(map.get("kind"), "kind")?;
    let metadata = match map.get("metadata") {
        Some(Value::Object(metadata)) => metadata,
        _ => {
            return Err(Error::MissingField {
                origin: origin.clone(),
                field: "metadata.name",
            });
        }
    };
    if metadata.contains_key("generateName") {
        return Err(Error::GenerateName {
            origin: origin.clone(),
        });
    }
    let name = text(metadata.get("name"), "metadata.name")?;
    let namespace = match metadata.get("namespace") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.is_empty() => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => {
            return Err(Error::MissingField {
                origin: origin.clone(),
                field: "metadata.namespace",
            });
        }
    };
    let (group, version) = match api_version.split_once('/') {
        None => (String::new(), api_version.clone()),
        Some((group, version))
            if !group.is_empty() && !version.is_empty() && !version.contains('/') =>
        {
            (group.to_string(), version.to_string())
        }
        Some(_) => {
            return Err(Error::BadApiVersion {
                origin: origin.clone(),
            });
        }
    };
    Ok(ObjectId {
        group,
        version,
        kind,
        namespace,
        name,
    })
}

#[cfg(test)]
mod tests;
