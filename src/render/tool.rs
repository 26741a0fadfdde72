//! Running an external renderer (`kustomize`, `helm`) on a file tree: what
//! the Kustomize and Helm engines share.
//!
//! ```text
//!   ToolPaths::resolve ── WINDLASS_*_BIN, else PATH, else $WINDLASS_CACHE/tools
//!   FileTree ──materialise──► Workspace (a private temporary directory)
//!                                  │
//!   run(binary, args) ─ cwd: the workspace, empty environment, time limit,
//!                       stdout limit, stderr kept ─► stdout bytes
//!                                  │
//!   parse_documents ─ windlass's own YAML loader ─► [ToolDocument { source, value }]
//! ```
//!
//! Git snapshots live in memory, so a tool gets the files it may read
//! written to a temporary directory first, which is removed afterwards
//! whatever happens. The tool runs with an empty environment (a private
//! `HOME`, no `PATH`, no plugins, HTTP(S) through an unreachable proxy), so
//! a render reads the snapshot and nothing else: no remote bases, no `git`,
//! no exec plugins.
//!
//! Errors name the tool, the directory it rendered and the tool's own
//! message (stderr, with the temporary directory taken out of paths), and
//! never quote values.

use std::ffi::OsString;
use std::fmt;
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use super::files::{FileTree, FileTreeError};
use super::object::ObjectSource;
use super::yaml::{self, YamlErrors, YamlLimits};
use super::{Limits, RenderInput};

/// Environment variable naming the kustomize binary.
pub const KUSTOMIZE_BIN_ENV: &str = "WINDLASS_KUSTOMIZE_BIN";
/// Environment variable naming the helm binary.
pub const HELM_BIN_ENV: &str = "WINDLASS_HELM_BIN";

/// Default time limit of one tool run.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

/// The most of a tool's stderr kept for an error message.
const MAX_STDERR_BYTES: usize = 16 * 1024;

/// Which external renderer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    Kustomize,
    Helm,
}

impl Tool {
    /// The binary's name, as on PATH.
    pub fn name(self) -> &'static str {
        match self {
            Tool::Kustomize => "kustomize",
            Tool::Helm => "helm",
        }
    }

    fn env_var(self) -> &'static str {
        match self {
            Tool::Kustomize => KUSTOMIZE_BIN_ENV,
            Tool::Helm => HELM_BIN_ENV,
        }
    }

    fn flag(self) -> &'static str {
        match self {
            Tool::Kustomize => "--kustomize-bin",
            Tool::Helm => "--helm-bin",
        }
    }
}

impl fmt::Display for Tool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Where the binaries are. `None`: not found (an error only when an
/// application needs that tool).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ToolPaths {
    pub kustomize: Option<PathBuf>,
    pub helm: Option<PathBuf>,
}

impl ToolPaths {
    /// Finds both tools from this process's environment: the
    /// `WINDLASS_KUSTOMIZE_BIN` / `WINDLASS_HELM_BIN` variables, else `PATH`,
    /// else the windlass cache's tools directory (`$WINDLASS_CACHE/tools`,
    /// default `~/.cache/windlass/tools`, where `deploy/local/tools.sh build`
    /// links them). Flags (`--kustomize-bin`) override the result.
    pub fn resolve() -> ToolPaths {
        ToolPaths::resolve_with(&|name| std::env::var_os(name), &|path| path.is_file())
    }

    /// [`ToolPaths::resolve`] with the environment and the file system
    /// passed in.
    pub fn resolve_with(
        env: &dyn Fn(&str) -> Option<OsString>,
        is_file: &dyn Fn(&Path) -> bool,
    ) -> ToolPaths {
        let cache_tools = env("WINDLASS_CACHE")
            .filter(|dir| !dir.is_empty())
            .map(PathBuf::from)
            .or_else(|| env("HOME").map(|home| PathBuf::from(home).join(".cache/windlass")))
            .map(|cache| cache.join("tools"));
        let find = |tool: Tool| -> Option<PathBuf> {
            if let Some(path) = env(tool.env_var()).filter(|p| !p.is_empty()) {
                // Named explicitly: used as given, so a wrong path is an
                // error at run time rather than a silent fallback.
                return Some(PathBuf::from(path));
            }
            let on_path = env("PATH").and_then(|path| {
                std::env::split_paths(&path)
                    .filter(|dir| !dir.as_os_str().is_empty())
                    .map(|dir| dir.join(tool.name()))
                    .find(|candidate| is_file(candidate))
            });
            on_path.or_else(|| {
                cache_tools
                    .as_ref()
                    .map(|dir| dir.join(tool.name()))
                    .filter(|candidate| is_file(candidate))
            })
        };
        ToolPaths {
            kustomize: find(Tool::Kustomize),
            helm: find(Tool::Helm),
        }
    }

    /// The binary for `tool`, or an error saying how to provide it.
    pub fn get(&self, tool: Tool) -> Result<&Path, ExternalError> {
        let path = match tool {
            Tool::Kustomize => self.kustomize.as_deref(),
            Tool::Helm => self.helm.as_deref(),
        };
        path.ok_or(ExternalError::NotInstalled {
            tool,
            flag: tool.flag(),
            env: tool.env_var(),
        })
    }
}

/// How external renderers run.
#[derive(Debug, Clone)]
pub struct ExternalTools {
    pub paths: ToolPaths,
    /// Wall-clock limit of one tool run.
    pub timeout: Duration,
    /// Limit on a tool's output (stdout). `None`: the render's
    /// [`Limits::max_total_bytes`].
    pub max_output_bytes: Option<u64>,
    /// Let kustomize inflate `helmCharts` (`--enable-helm`), with the helm
    /// binary from `paths`. Off unless the user opts in.
    pub kustomize_helm: bool,
}

impl ExternalTools {
    /// Default limits, kustomize's Helm inflation off.
    pub fn new(paths: ToolPaths) -> ExternalTools {
        ExternalTools {
            paths,
            timeout: DEFAULT_TIMEOUT,
            max_output_bytes: None,
            kustomize_helm: false,
        }
    }

    pub(crate) fn output_limit(&self, limits: &Limits) -> u64 {
        self.max_output_bytes.unwrap_or(limits.max_total_bytes)
    }
}

/// Why an external render produced nothing.
#[derive(Debug, thiserror::Error)]
pub enum ExternalError {
    #[error(
        "{tool} is not installed: put it on PATH, pass {flag} or set {env} (from a windlass \
         checkout, `deploy/local/tools.sh build` builds the pinned version)"
    )]
    NotInstalled {
        tool: Tool,
        flag: &'static str,
        env: &'static str,
    },

    #[error("cannot run {tool} (`{path}`): {reason}")]
    Spawn {
        tool: Tool,
        path: String,
        reason: String,
    },

    #[error("`{command}` failed ({status}):\n{stderr}")]
    Failed {
        /// What ran, e.g. `kustomize build overlays/production`.
        command: String,
        status: String,
        /// The tool's stderr, temporary paths taken out, bounded.
        stderr: String,
    },

    #[error("`{command}` did not finish within the time limit of {seconds} s")]
    TimedOut { command: String, seconds: f64 },

    #[error("`{command}` wrote more than the limit of {limit} bytes of output")]
    OutputTooLarge { command: String, limit: u64 },

    #[error("`{command}` wrote output that is not UTF-8 text")]
    OutputNotUtf8 { command: String },

    #[error("{origin}: {error}")]
    Yaml { origin: String, error: YamlErrors },

    #[error("the render holds more than the limit of {limit} documents")]
    TooManyDocuments { limit: usize },

    #[error("{tree}: {error}")]
    Files { tree: String, error: FileTreeError },

    #[error("cannot prepare a temporary directory for {tool}: {reason}")]
    Workspace { tool: Tool, reason: String },

    #[error(
        "environment name `{environment}` is not valid: use letters, digits, `.`, `_` and `-`, \
         starting with a letter or digit"
    )]
    BadEnvironmentName { environment: String },

    #[error("{tree}: no environment `{environment}` (no {expected}); environments: {available}")]
    UnknownEnvironment {
        tree: String,
        environment: String,
        expected: String,
        available: String,
    },

    #[error(
        "{tree}: no kustomization.yaml in `{dir}`{hint}; a Kustomize application needs one \
         there"
    )]
    NoKustomization {
        tree: String,
        dir: String,
        hint: String,
    },

    #[error("{tree} is a Kustomize application, which takes no {what}; only charts do")]
    NotTemplated { tree: String, what: &'static str },

    #[error("`Chart.yaml`: {reason}")]
    ChartMetadata { reason: String },

    #[error(
        "chart `{chart}` depends on {missing}, which {verb} not vendored in charts/; run \
         `helm dependency build` and commit charts/"
    )]
    DependenciesNotVendored {
        chart: String,
        missing: String,
        verb: &'static str,
    },

    #[error("{tree}: {reason}")]
    Unsupported { tree: String, reason: String },

    /// The renderer named for the tree (`spec.source.renderer`,
    /// `--renderer`) does not fit it.
    #[error("{tree}: renderer {renderer}: {reason}")]
    WrongRenderer {
        tree: String,
        renderer: &'static str,
        reason: String,
    },
}

/// One object a tool rendered, parsed by windlass's YAML loader, in the
/// tool's output order.
#[derive(Debug)]
pub struct ToolDocument {
    /// For Helm the template (`# Source:`); for Kustomize the directory built.
    pub source: ObjectSource,
    pub value: Value,
}

/// Whether `name` can be an environment (and so a path component).
pub(crate) fn check_environment(name: &str) -> Result<(), ExternalError> {
    let mut chars = name.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if valid {
        Ok(())
    } else {
        Err(ExternalError::BadEnvironmentName {
            environment: name.to_string(),
        })
    }
}

// --- the temporary directory ---------------------------------------------

/// A private temporary directory, removed on drop.
pub(crate) struct Workspace {
    root: PathBuf,
}

impl Workspace {
    pub fn new(tool: Tool) -> Result<Workspace, ExternalError> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let root = std::env::temp_dir().join(format!(
            "windlass-{}-{}-{}-{nanos}",
            tool.name(),
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let mut builder = fs::DirBuilder::new();
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder
            .create(&root)
            .map_err(|error| ExternalError::Workspace {
                tool,
                reason: format!("{}: {error}", root.display()),
            })?;
        Ok(Workspace { root })
    }

    pub fn path(&self) -> &Path {
        &self.root
    }

    /// Writes a private file (mode 0600) at `relative`.
    pub fn write(
        &self,
        tool: Tool,
        relative: &str,
        bytes: &[u8],
    ) -> Result<PathBuf, ExternalError> {
        let path = self.root.join(relative);
        let io = |error: std::io::Error| ExternalError::Workspace {
            tool,
            reason: format!("writing `{relative}`: {error}"),
        };
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(io)?;
        }
        let mut options = fs::OpenOptions::new();
        options.write(true).create_new(true);
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        options
            .open(&path)
            .and_then(|mut file| file.write_all(bytes))
            .map_err(io)?;
        Ok(path)
    }

    /// Writes every file of `tree` under `dir` (relative to the workspace),
    /// enforcing the render's per-file and total limits.
    pub fn materialise(
        &self,
        tool: Tool,
        tree: &dyn FileTree,
        dir: &str,
        limits: &Limits,
    ) -> Result<PathBuf, ExternalError> {
        self.materialise_counted(tool, tree, dir, limits, &mut 0)
    }

    /// [`Workspace::materialise`], adding the bytes written to `total`
    /// (which counts against the total limit, with what was written before).
    pub fn materialise_counted(
        &self,
        tool: Tool,
        tree: &dyn FileTree,
        dir: &str,
        limits: &Limits,
        total: &mut u64,
    ) -> Result<PathBuf, ExternalError> {
        let files_error = |error| ExternalError::Files {
            tree: tree.describe(),
            error,
        };
        for path in tree.files().map_err(files_error)? {
            let bytes = tree.read(&path).map_err(files_error)?;
            self.write_checked(tool, &tree.describe(), dir, &path, &bytes, limits, total)?;
        }
        let root = self.root.join(dir);
        fs::create_dir_all(&root).map_err(|error| ExternalError::Workspace {
            tool,
            reason: error.to_string(),
        })?;
        Ok(root)
    }

    /// Writes `files` (path relative to `dir` → content) under `dir`, within
    /// the limits, counting into `total`; `tree` names them in errors.
    pub fn write_files(
        &self,
        tool: Tool,
        tree: &str,
        files: &std::collections::BTreeMap<String, Vec<u8>>,
        dir: &str,
        limits: &Limits,
        total: &mut u64,
    ) -> Result<(), ExternalError> {
        for (path, bytes) in files {
            self.write_checked(tool, tree, dir, path, bytes, limits, total)?;
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn write_checked(
        &self,
        tool: Tool,
        tree: &str,
        dir: &str,
        path: &str,
        bytes: &[u8],
        limits: &Limits,
        total: &mut u64,
    ) -> Result<(), ExternalError> {
        let files_error = |error| ExternalError::Files {
            tree: tree.to_string(),
            error,
        };
        if !is_clean_relative(path) {
            return Err(files_error(FileTreeError::Io {
                path: path.to_string(),
                reason: "not a clean relative path".into(),
            }));
        }
        let size = bytes.len() as u64;
        if size > limits.max_file_bytes {
            return Err(files_error(FileTreeError::TooLarge {
                path: path.to_string(),
                size,
                limit: limits.max_file_bytes,
            }));
        }
        *total += size;
        if *total > limits.max_total_bytes {
            return Err(files_error(FileTreeError::TotalTooLarge {
                path: path.to_string(),
                limit: limits.max_total_bytes,
            }));
        }
        self.write(tool, &format!("{dir}/{path}"), bytes)?;
        Ok(())
    }
}

impl Drop for Workspace {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.root);
    }
}

/// `a/b.yaml`: no leading `/`, no `.`/`..`/empty components.
fn is_clean_relative(path: &str) -> bool {
    !path.is_empty()
        && path
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != "..")
}

// --- running -----------------------------------------------------------------

/// One tool invocation.
pub(crate) struct Invocation<'a> {
    pub tool: Tool,
    pub binary: &'a Path,
    pub args: Vec<OsString>,
    /// What the user sees in messages, e.g. `kustomize build overlays/prod`.
    pub command: String,
    pub workspace: &'a Workspace,
    /// The working directory, relative to the workspace.
    pub cwd: &'a str,
    pub timeout: Duration,
    pub max_output_bytes: u64,
}

/// Runs the tool; its stdout on success.
pub(crate) fn run(invocation: &Invocation<'_>) -> Result<Vec<u8>, ExternalError> {
    let Invocation {
        tool,
        binary,
        command,
        workspace,
        ..
    } = invocation;
    let home = workspace.path().join(".home");
    let tmp = workspace.path().join(".tmp");
    for dir in [&home, &tmp] {
        fs::create_dir_all(dir).map_err(|error| ExternalError::Workspace {
            tool: *tool,
            reason: error.to_string(),
        })?;
    }
    // An empty environment: nothing of windlass's (credentials, kubeconfig)
    // reaches the tool, no PATH (so no `git` for remote bases), a private
    // HOME for Helm's caches, no plugins, and HTTP(S) through a proxy that
    // does not exist, so a render never fetches from the network.
    let unreachable_proxy = "http://127.0.0.1:9";
    let mut child = Command::new(binary)
        .args(&invocation.args)
        .current_dir(workspace.path().join(invocation.cwd))
        .env_clear()
        .env("HOME", &home)
        .env("TMPDIR", &tmp)
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_DATA_HOME", home.join("data"))
        .env("HELM_PLUGINS", home.join("plugins"))
        .env("KUSTOMIZE_PLUGIN_HOME", home.join("plugins"))
        .env("HTTP_PROXY", unreachable_proxy)
        .env("HTTPS_PROXY", unreachable_proxy)
        .env("http_proxy", unreachable_proxy)
        .env("https_proxy", unreachable_proxy)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|error| ExternalError::Spawn {
            tool: *tool,
            path: binary.display().to_string(),
            reason: error.to_string(),
        })?;

    let oversize = Arc::new(AtomicBool::new(false));
    let limit = invocation.max_output_bytes;
    let mut stdout = child.stdout.take().expect("stdout is piped");
    let stdout_oversize = Arc::clone(&oversize);
    // Dropped when the reader ends: the tool closed its output (it exited)
    // or passed the limit.
    let (stdout_done, stdout_ended) = std::sync::mpsc::channel::<()>();
    let stdout_reader = std::thread::spawn(move || {
        let _done = stdout_done;
        let mut out = Vec::new();
        let mut buffer = [0u8; 64 * 1024];
        loop {
            match stdout.read(&mut buffer) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if (out.len() + n) as u64 > limit {
                        stdout_oversize.store(true, Ordering::Relaxed);
                        break;
                    }
                    out.extend_from_slice(&buffer[..n]);
                }
            }
        }
        out
    });
    let mut stderr = child.stderr.take().expect("stderr is piped");
    let stderr_reader = std::thread::spawn(move || {
        let mut kept = Vec::new();
        let mut buffer = [0u8; 8 * 1024];
        // Keep the start, drain the rest so the tool never blocks on it.
        while let Ok(n) = stderr.read(&mut buffer) {
            if n == 0 {
                break;
            }
            let room = MAX_STDERR_BYTES.saturating_sub(kept.len()).min(n);
            kept.extend_from_slice(&buffer[..room]);
        }
        kept
    });

    let deadline = Instant::now() + invocation.timeout;
    // Block until the output ends (or the deadline) rather than polling the
    // process: the exit is seen at once, not up to a polling pause late.
    let _ = stdout_ended.recv_timeout(deadline.saturating_duration_since(Instant::now()));
    let mut pause = Duration::from_millis(1);
    let status = loop {
        let waited = child.try_wait().map_err(|error| ExternalError::Spawn {
            tool: *tool,
            path: binary.display().to_string(),
            reason: error.to_string(),
        })?;
        if let Some(status) = waited {
            break Some(status);
        }
        if oversize.load(Ordering::Relaxed) || Instant::now() >= deadline {
            // Our own child, by its handle.
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    };
    let too_large = || ExternalError::OutputTooLarge {
        command: command.clone(),
        limit,
    };
    let Some(status) = status else {
        // Killed. The readers are not waited for: a process the tool
        // started (kustomize's helm) may still hold the pipes; they end
        // when it does.
        if oversize.load(Ordering::Relaxed) {
            return Err(too_large());
        }
        return Err(ExternalError::TimedOut {
            command: command.clone(),
            seconds: invocation.timeout.as_secs_f64(),
        });
    };
    let output = stdout_reader.join().unwrap_or_default();
    let errors = stderr_reader.join().unwrap_or_default();
    if oversize.load(Ordering::Relaxed) {
        return Err(too_large());
    }
    if !status.success() {
        return Err(ExternalError::Failed {
            command: command.clone(),
            status: status.to_string(),
            stderr: clean_stderr(&errors, workspace.path()),
        });
    }
    Ok(output)
}

/// The tool's stderr for a message: the temporary directory taken out of
/// paths (so they read relative to the tree), trimmed, bounded.
pub(crate) fn clean_stderr(stderr: &[u8], workspace: &Path) -> String {
    let mut text = String::from_utf8_lossy(stderr).into_owned();
    let root = workspace.display().to_string();
    // `<workspace>/tree/a.yaml` → `a.yaml`; private dirs → their name.
    for sub in ["tree", "chart"] {
        text = text.replace(&format!("{root}/{sub}/"), "");
        text = text.replace(&format!("{root}/{sub}"), ".");
    }
    text = text.replace(&root, "<tmp>");
    let mut text = text.trim().to_string();
    if stderr.len() >= MAX_STDERR_BYTES {
        text.push_str("\n(further output cut)");
    }
    if text.is_empty() {
        text = "(no message on stderr)".to_string();
    }
    text
}

// --- output ------------------------------------------------------------------

/// A tool's stdout as text; `command` names it in the error.
pub(crate) fn output_text(output: Vec<u8>, command: &str) -> Result<String, ExternalError> {
    String::from_utf8(output).map_err(|_| ExternalError::OutputNotUtf8 {
        command: command.to_string(),
    })
}

/// The YAML limits for a whole tool output: like one render (it holds
/// what many files would).
pub(crate) fn output_limits(limits: &Limits) -> YamlLimits {
    YamlLimits {
        max_documents: limits.max_documents,
        ..limits.yaml()
    }
}

/// Parses `text` (one source's documents) into objects from `source_path`.
/// `first_document` is the 1-based index the first document gets.
pub(crate) fn parse_documents(
    text: &str,
    source_path: &str,
    template: bool,
    first_document: usize,
    limits: &Limits,
) -> Result<Vec<ToolDocument>, ExternalError> {
    let documents = yaml::load_documents(text, &output_limits(limits)).map_err(|mut error| {
        for one in &mut error.errors {
            one.document += first_document - 1;
        }
        ExternalError::Yaml {
            origin: if template {
                format!("template `{source_path}` output")
            } else {
                format!("`{source_path}` output")
            },
            error,
        }
    })?;
    if documents.len() > limits.max_documents {
        return Err(ExternalError::TooManyDocuments {
            limit: limits.max_documents,
        });
    }
    Ok(documents
        .into_iter()
        .map(|document| ToolDocument {
            source: ObjectSource {
                path: source_path.to_string(),
                template,
                document: first_document - 1 + document.index,
                item: None,
            },
            value: document.value,
        })
        .collect())
}

/// Refuses caller values for a tree that is not templated.
pub(crate) fn refuse_values(input: &RenderInput<'_>) -> Result<(), ExternalError> {
    if !input.values.is_empty() || !input.set.is_empty() {
        return Err(ExternalError::NotTemplated {
            tree: input.tree.describe(),
            what: "values",
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::MemoryTree;

    fn env_of(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<OsString> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| {
            vars.iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| OsString::from(v))
        }
    }

    #[test]
    fn resolve_prefers_the_env_var_then_path_then_the_cache() {
        let existing = [
            "/usr/bin/helm",
            "/cache/tools/kustomize",
            "/cache/tools/helm",
        ];
        let is_file = |p: &Path| existing.iter().any(|e| Path::new(e) == p);
        let env = env_of(&[
            ("WINDLASS_KUSTOMIZE_BIN", "/opt/kustomize"),
            ("PATH", "/nothing:/usr/bin"),
            ("WINDLASS_CACHE", "/cache"),
        ]);
        let paths = ToolPaths::resolve_with(&env, &is_file);
        // Named explicitly: taken as given even though it does not exist.
        assert_eq!(
            paths.kustomize.as_deref(),
            Some(Path::new("/opt/kustomize"))
        );
        assert_eq!(paths.helm.as_deref(), Some(Path::new("/usr/bin/helm")));

        let env = env_of(&[("PATH", "/nothing"), ("HOME", "/home/me")]);
        let is_file = |p: &Path| p == Path::new("/home/me/.cache/windlass/tools/helm");
        let paths = ToolPaths::resolve_with(&env, &is_file);
        assert_eq!(paths.kustomize, None);
        assert_eq!(
            paths.helm.as_deref(),
            Some(Path::new("/home/me/.cache/windlass/tools/helm"))
        );
    }

    #[test]
    fn a_missing_tool_says_how_to_provide_it() {
        let error = ToolPaths::default().get(Tool::Kustomize).unwrap_err();
        let message = error.to_string();
        assert!(
            message.contains("kustomize is not installed")
                && message.contains("--kustomize-bin")
                && message.contains("WINDLASS_KUSTOMIZE_BIN"),
            "{message}"
        );
    }

    #[test]
    fn stderr_reads_relative_to_the_tree() {
        let workspace = Path::new("/tmp/windlass-kustomize-1-2-3");
        let stderr =
            b"Error: accumulating resources: '/tmp/windlass-kustomize-1-2-3/tree/base/x.yaml': \
            missing\n";
        let text = clean_stderr(stderr, workspace);
        assert_eq!(
            text,
            "Error: accumulating resources: 'base/x.yaml': missing"
        );
        assert_eq!(clean_stderr(b"  \n", workspace), "(no message on stderr)");
    }

    #[test]
    fn materialise_writes_the_tree_and_cleans_up() {
        let tree = MemoryTree::new("mem")
            .with("a.yaml", "a: 1\n")
            .with("base/b.yaml", "b: 2\n");
        let workspace = Workspace::new(Tool::Kustomize).unwrap();
        let root = workspace
            .materialise(Tool::Kustomize, &tree, "tree", &Limits::default())
            .unwrap();
        assert_eq!(
            fs::read_to_string(root.join("base/b.yaml")).unwrap(),
            "b: 2\n"
        );
        let kept = workspace.path().to_path_buf();
        drop(workspace);
        assert!(!kept.exists());
    }

    #[test]
    fn materialise_enforces_the_limits() {
        let tree = MemoryTree::new("mem")
            .with("a.yaml", vec![b'a'; 8])
            .with("b.yaml", vec![b'b'; 8]);
        let workspace = Workspace::new(Tool::Helm).unwrap();
        let limits = Limits {
            max_total_bytes: 10,
            ..Limits::default()
        };
        let error = workspace
            .materialise(Tool::Helm, &tree, "chart", &limits)
            .unwrap_err();
        assert!(
            matches!(&error, ExternalError::Files { error: FileTreeError::TotalTooLarge { path, .. }, .. } if path == "b.yaml"),
            "{error}"
        );
    }

    #[test]
    fn environment_names_are_path_components() {
        check_environment("production").unwrap();
        check_environment("eu-1.prod_a").unwrap();
        for bad in ["", "../x", "a/b", ".hidden", "-x"] {
            assert!(check_environment(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn run_reports_failure_timeout_and_oversize() {
        let workspace = Workspace::new(Tool::Kustomize).unwrap();
        let sh = Path::new("/bin/sh");
        let invocation = |script: &str, timeout: Duration, max: u64| Invocation {
            tool: Tool::Kustomize,
            binary: sh,
            args: vec!["-c".into(), script.into()],
            command: "kustomize build .".into(),
            workspace: &workspace,
            cwd: "",
            timeout,
            max_output_bytes: max,
        };
        let out = run(&invocation(
            "printf 'a: 1\\n'; /usr/bin/env",
            Duration::from_secs(30),
            1 << 20,
        ))
        .unwrap();
        let out = String::from_utf8(out).unwrap();
        assert!(out.starts_with("a: 1\n"), "{out}");
        // The environment is empty but for what run sets.
        assert!(!out.contains("\nPATH="), "{out}");

        let error = run(&invocation(
            "echo 'Error: no kustomization' >&2; exit 3",
            Duration::from_secs(30),
            1 << 20,
        ))
        .unwrap_err();
        assert!(
            matches!(&error, ExternalError::Failed { stderr, status, .. }
                if stderr == "Error: no kustomization" && status.contains('3')),
            "{error}"
        );

        let error = run(&invocation(
            "exec /bin/sleep 30",
            Duration::from_millis(200),
            1 << 20,
        ))
        .unwrap_err();
        assert!(matches!(error, ExternalError::TimedOut { .. }), "{error}");

        let error = run(&invocation(
            "while :; do echo aaaaaaaaaaaaaaaaaaaa; done",
            Duration::from_secs(30),
            1000,
        ))
        .unwrap_err();
        assert!(
            matches!(error, ExternalError::OutputTooLarge { limit: 1000, .. }),
            "{error}"
        );
    }
}
