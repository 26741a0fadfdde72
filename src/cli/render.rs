//! `windlass render`: print the objects a directory, a chart or one
//! manifest file renders to.
//!
//! ```text
//!   PATH, --env, -f, --set, --set-string, -n ──► render::render ──► YAML (---) or a JSON List on stdout
//!                                                                   one summary line on stderr
//! ```
//!
//! A PATH that is a file renders as a directory holding just that file: it
//! must be a plain manifest (`.yaml`, `.yml`, `.json`).
//!
//! No cluster is contacted: namespaced objects without a namespace get `-n`
//! (default `default`), and cluster-scoped kinds come from the built-in
//! table plus the CRDs in the render. Secret values are masked unless
//! `--show-secrets` is given; the output stays valid YAML/JSON either way.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde_json::{Value, json};

use super::args::{ValuesArgs, read_limited};
use super::{ExitStatus, GlobalArgs};
use crate::render::{
    self, FileTree, LocalDirectory, MemoryTree, RenderInput, Rendered, Sorted, mask_secret_values,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// YAML documents separated by `---`.
    Yaml,
    /// One JSON `v1` `List`.
    Json,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A directory of plain manifests, a chart (a directory with
    /// Chart.yaml), or one manifest file.
    #[arg(value_name = "PATH")]
    pub path: PathBuf,

    #[command(flatten)]
    pub values: ValuesArgs,

    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = Format::Yaml)]
    pub output: Format,

    /// The release name templates see as `release.name` (default: the
    /// chart's name; for plain manifests, the directory's name).
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,

    /// Print the values of Secrets instead of masking them.
    #[arg(long)]
    pub show_secrets: bool,

    /// Accept a render with no objects (an error otherwise: a wrong path or
    /// a chart whose templates all rendered empty is far likelier).
    #[arg(long)]
    pub allow_empty: bool,

    #[command(flatten)]
    pub renderers: super::args::RenderToolArgs,

    #[command(flatten)]
    pub renderer: super::args::RendererArgs,
}

pub fn run(global: &GlobalArgs, args: &Args, out: &mut impl Write) -> anyhow::Result<ExitStatus> {
    let rendered = render_args(global, args)
        .with_context(|| format!("cannot render {}", args.path.display()))?;
    if let Some(line) = render::helm::hooks_message(&rendered.skipped_hooks) {
        eprintln!("{line}");
    }
    write_objects(&rendered, args.output, args.show_secrets, out)?;
    out.flush()?;
    eprintln!(
        "rendered {} object{}, manifest digest sha256:{}",
        rendered.objects.len(),
        if rendered.objects.len() == 1 { "" } else { "s" },
        rendered.manifest_digest
    );
    Ok(ExitStatus::Success)
}

fn render_args(global: &GlobalArgs, args: &Args) -> anyhow::Result<Rendered> {
    let limits = render::Limits::default();
    let tree: Box<dyn FileTree> = if args.path.is_file() {
        Box::new(single_file_tree(&args.path, limits.max_file_bytes)?)
    } else {
        Box::new(LocalDirectory::new(&args.path)?)
    };
    let mut input = RenderInput::new(
        tree.as_ref(),
        global.namespace.clone().unwrap_or_else(|| "default".into()),
    );
    input.limits = limits;
    input.environment = args.values.environment.clone();
    input.name = args.name.clone().or_else(|| default_name(&args.path));
    input.values = args.values.layers(&input.limits)?;
    input.set = args.values.set_values()?;
    input.allow_empty = args.allow_empty;
    input.engine = args.renderer.renderer.and_then(|r| r.engine());
    let tools = args.renderers.tools();
    input.tools = Some(&tools);
    Ok(render::render(&input)?)
}

/// A tree holding just `path`, under its own name: a plain manifest file
/// renders as a directory with that one file would.
fn single_file_tree(path: &Path, limit: u64) -> anyhow::Result<MemoryTree> {
    let name = path
        .file_name()
        .and_then(|name| name.to_str())
        .with_context(|| format!("{}: the file name is not UTF-8", path.display()))?;
    if !is_plain_manifest_name(name) {
        bail!(
            "{}: a single file must be a plain manifest (.yaml, .yml or .json, not hidden, not \
             Chart.yaml or kustomization.yaml); for a chart or a Kustomize overlay, give its \
             directory",
            path.display()
        );
    }
    let text = read_limited(path, "manifest", limit)?;
    Ok(MemoryTree::new(path.display().to_string()).with(name, text))
}

/// Whether a file, given alone, is rendered as a plain manifest.
fn is_plain_manifest_name(name: &str) -> bool {
    let manifest = [".yaml", ".yml", ".json"]
        .iter()
        .any(|extension| name.ends_with(extension));
    let directory_marker = matches!(
        name,
        "Chart.yaml" | "kustomization.yaml" | "kustomization.yml" | "Kustomization"
    );
    manifest && !name.starts_with('.') && !directory_marker
}

/// For plain manifests, the directory's name (a single file's stem); for a
/// chart, `None` (the chart's own name).
fn default_name(path: &Path) -> Option<String> {
    if path.join("Chart.yaml").is_file() {
        return None;
    }
    let canonical = fs::canonicalize(path).ok()?;
    let name = if canonical.is_file() {
        canonical.file_stem()?
    } else {
        canonical.file_name()?
    };
    name.to_str().map(str::to_string)
}

fn write_objects(
    rendered: &Rendered,
    format: Format,
    show_secrets: bool,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let shown = |object: &render::RenderedObject| {
        if show_secrets {
            object.object.clone()
        } else {
            mask_secret_values(object)
        }
    };
    match format {
        Format::Yaml => {
            for object in &rendered.objects {
                writeln!(out, "---")?;
                writeln!(out, "# Source: {}", object.source.path)?;
                out.write_all(render::to_yaml(&shown(object)).as_bytes())?;
            }
        }
        Format::Json => {
            let items: Vec<Value> = rendered.objects.iter().map(shown).collect();
            let list = json!({"apiVersion": "v1", "kind": "List", "items": items});
            // Written as text: a closed pipe is then an io::Error, not an error.
            writeln!(out, "{}", serde_json::to_string_pretty(&Sorted(&list))?)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_single_file_must_be_a_plain_manifest() {
        assert!(is_plain_manifest_name("web.yaml"));
        assert!(is_plain_manifest_name("web.yml"));
        assert!(is_plain_manifest_name("web.json"));
        assert!(!is_plain_manifest_name("README.md"));
        assert!(!is_plain_manifest_name(".hidden.yaml"));
        assert!(!is_plain_manifest_name("Chart.yaml"));
        assert!(!is_plain_manifest_name("kustomization.yaml"));
    }
}
