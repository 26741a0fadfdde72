//! `windlass render`: print the objects a directory or chart renders to.
//!
//! ```text
//!   PATH, --env, -f, --set, --set-string, -n ──► render::render ──► YAML (---) or a JSON List on stdout
//!                                                                   one summary line on stderr
//! ```
//!
//! No cluster is contacted: namespaced objects without a namespace get `-n`
//! (default `default`), and cluster-scoped kinds come from the built-in
//! table plus the CRDs in the render. Secret values are masked unless
//! `--show-secrets` is given; the output stays valid YAML/JSON either way.

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde_json::{Value, json};

use super::{ExitStatus, GlobalArgs};
use crate::render::{
    self, LocalDirectory, RenderInput, Rendered, SetValue, Sorted, ValuesLayer, mask_secret_values,
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
    /// A directory of plain manifests, or a chart (a directory with Chart.yaml).
    #[arg(value_name = "PATH")]
    pub path: PathBuf,

    /// The chart's environment: layers values/ENV.yaml over values.yaml.
    #[arg(long, value_name = "ENV")]
    pub env: Option<String>,

    /// Set values, typed like YAML (numbers, true/false, null removes the
    /// key), in Helm's syntax: `a.b=1,c=2`, lists `l={x,y}`, items
    /// `ports[0].name=http`; `\,` and `\.` for a comma in a value or a dot
    /// in a key.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,

    /// Set values as strings, whatever they look like; the same syntax as
    /// --set. Applied after --set.
    #[arg(long = "set-string", value_name = "KEY=VALUE")]
    pub set_string: Vec<String>,

    /// A values file layered above the environment's; repeatable, later
    /// files win. --set and --set-string win over all files.
    #[arg(short = 'f', long = "values", value_name = "FILE")]
    pub values: Vec<PathBuf>,

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
}

pub fn run(global: &GlobalArgs, args: &Args, out: &mut impl Write) -> anyhow::Result<ExitStatus> {
    let rendered = render_args(global, args)
        .with_context(|| format!("cannot render {}", args.path.display()))?;
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
    let tree = LocalDirectory::new(&args.path)?;
    let mut input = RenderInput::new(
        &tree,
        global.namespace.clone().unwrap_or_else(|| "default".into()),
    );
    input.environment = args.env.clone();
    input.name = args.name.clone().or_else(|| default_name(&args.path));
    for path in &args.values {
        let text = read_values_file(path, input.limits.max_file_bytes)?;
        input.values.push(ValuesLayer::from_yaml(
            &path.display().to_string(),
            &text,
            &input.limits,
        )?);
    }
    for arg in &args.set {
        input.set.extend(SetValue::parse(arg)?);
    }
    for arg in &args.set_string {
        input.set.extend(SetValue::parse_string(arg)?);
    }
    Ok(render::render(&input)?)
}

/// For plain manifests, the directory's name; for a chart, `None` (the
/// chart's own name).
fn default_name(path: &Path) -> Option<String> {
    if path.join("Chart.yaml").is_file() {
        return None;
    }
    fs::canonicalize(path)
        .ok()?
        .file_name()?
        .to_str()
        .map(str::to_string)
}

fn read_values_file(path: &Path, limit: u64) -> anyhow::Result<String> {
    let shown = path.display();
    let file = fs::File::open(path).with_context(|| format!("cannot read values file {shown}"))?;
    let mut text = String::new();
    file.take(limit + 1)
        .read_to_string(&mut text)
        .with_context(|| format!("cannot read values file {shown}"))?;
    if text.len() as u64 > limit {
        bail!("values file {shown} is larger than the limit of {limit} bytes");
    }
    Ok(text)
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
            serde_json::to_writer_pretty(&mut *out, &Sorted(&list))?;
            writeln!(out)?;
        }
    }
    Ok(())
}
