//! Flag groups several verbs share, declared once and flattened into each
//! verb that takes them, so a flag means the same thing everywhere:
//!
//! ```text
//!   ClusterArgs   --kubeconfig, --context             verbs that connect to a cluster
//!   ValuesArgs    -f/--values, --set, --set-string,   render, diff, sync
//!                 --env
//!   WaitArgs      --no-wait, --timeout                sync, rollback
//!   LockArgs      --lock-timeout                      sync, rollback, uninstall
//!   RendererArgs  --renderer                          render, diff, sync
//!   RenderToolArgs --kustomize-bin, --helm-bin        render, diff, sync, controller
//! ```
//!
//! `-f` is `--values` in every verb, as in Helm (`helm template|upgrade -f
//! values.yaml`); the Application manifest is `--app-file` (see
//! `target.rs`). Every duration flag takes a Go duration (`90s`, `5m`,
//! `1h30m`) or a bare number of seconds: see [`parse_duration_flag`].

use std::path::PathBuf;
use std::time::Duration;

use crate::cluster::ClusterOptions;
use crate::render::{SetValue, ValuesLayer};

/// `--help` headings of the groups.
pub const CLUSTER: &str = "Cluster";
pub const VALUES: &str = "Values";
pub const APPLICATION: &str = "Application";
pub const GIT: &str = "Git";

/// Which cluster to talk to. Only verbs that connect to a cluster take it.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ClusterArgs {
    /// Path to the kubeconfig file (default: $KUBECONFIG, then ~/.kube/config,
    /// then the in-cluster service account).
    #[arg(help_heading = CLUSTER, long, value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,

    /// The kubeconfig context to use (default: its current context).
    #[arg(help_heading = CLUSTER, long, value_name = "NAME")]
    pub context: Option<String>,
}

impl ClusterArgs {
    /// These flags, each falling back to the same flag in `earlier` (given
    /// before the verb).
    pub fn or(&self, earlier: &ClusterArgs) -> ClusterArgs {
        ClusterArgs {
            kubeconfig: self.kubeconfig.clone().or(earlier.kubeconfig.clone()),
            context: self.context.clone().or(earlier.context.clone()),
        }
    }

    pub fn cluster_options(&self) -> ClusterOptions {
        ClusterOptions {
            kubeconfig: self.kubeconfig.clone(),
            context: self.context.clone(),
            observer: None,
        }
    }
}

/// Values for a chart: layered chart defaults < environment file < values
/// files (in order) < --set < --set-string.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ValuesArgs {
    /// A values file layered above the environment's; repeatable, later
    /// files win. --set and --set-string win over all files.
    #[arg(help_heading = VALUES, short = 'f', long = "values", value_name = "FILE")]
    pub values_files: Vec<PathBuf>,

    /// Set values, typed like YAML (numbers, true/false, null removes the
    /// key), in Helm's syntax: `a.b=1,c=2`, lists `l={x,y}`, items
    /// `ports[0].name=http`; `\,` and `\.` for a comma in a value or a dot
    /// in a key.
    #[arg(help_heading = VALUES, long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,

    /// Set values as strings, whatever they look like; the same syntax as
    /// --set. Applied after --set.
    #[arg(help_heading = VALUES, long = "set-string", value_name = "KEY=VALUE")]
    pub set_string: Vec<String>,

    /// The chart's environment: layers values/ENV.yaml over values.yaml.
    #[arg(help_heading = VALUES, long = "env", value_name = "ENV")]
    pub environment: Option<String>,
}

impl ValuesArgs {
    /// The values files, read (at most `max_file_bytes` each) and parsed.
    pub fn layers(&self, limits: &crate::render::Limits) -> anyhow::Result<Vec<ValuesLayer>> {
        let mut layers = Vec::with_capacity(self.values_files.len());
        for path in &self.values_files {
            let text = read_limited(path, "values file", limits.max_file_bytes)?;
            layers.push(ValuesLayer::from_yaml(
                &path.display().to_string(),
                &text,
                limits,
            )?);
        }
        Ok(layers)
    }

    /// --set, then --set-string, parsed.
    pub fn set_values(&self) -> anyhow::Result<Vec<SetValue>> {
        let mut set = Vec::new();
        for arg in &self.set {
            set.extend(SetValue::parse(arg)?);
        }
        for arg in &self.set_string {
            set.extend(SetValue::parse_string(arg)?);
        }
        Ok(set)
    }
}

/// Waiting for health after applying.
#[derive(Debug, Clone, clap::Args)]
pub struct WaitArgs {
    /// Do not wait for health.
    #[arg(long)]
    pub no_wait: bool,

    /// How long to wait for health: a Go duration (90s, 5m, 1h30m) or
    /// seconds.
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = parse_duration_flag)]
    pub timeout: Duration,
}

/// Waiting for another writer's lock on the application.
#[derive(Debug, Clone, clap::Args)]
pub struct LockArgs {
    /// How long to wait while another sync, rollback or uninstall of this
    /// application holds its lock: a Go duration (90s, 5m) or seconds.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration_flag)]
    pub lock_timeout: Duration,
}

/// A duration flag: a Go duration (`90s`, `5m`, `1h30m`, `500ms`), or a
/// bare number, which means seconds.
pub fn parse_duration_flag(text: &str) -> Result<Duration, String> {
    let trimmed = text.trim();
    if !trimmed.is_empty() && trimmed.chars().all(|c| c.is_ascii_digit()) {
        return trimmed
            .parse()
            .map(Duration::from_secs)
            .map_err(|_| format!("`{text}` is too large a number of seconds"));
    }
    crate::spec::parse_duration(trimmed).map_err(|e| format!("{e}; a bare number means seconds"))
}

/// A file's text, refusing one larger than `limit` bytes; `what` names it in
/// errors ("values file").
pub fn read_limited(path: &std::path::Path, what: &str, limit: u64) -> anyhow::Result<String> {
    use anyhow::Context as _;
    use std::io::Read as _;
    let shown = path.display();
    let file = std::fs::File::open(path).with_context(|| format!("cannot read {what} {shown}"))?;
    let mut text = String::new();
    file.take(limit + 1)
        .read_to_string(&mut text)
        .with_context(|| format!("cannot read {what} {shown}"))?;
    if text.len() as u64 > limit {
        anyhow::bail!("{what} {shown} is larger than the limit of {limit} bytes");
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_duration_flag_is_a_go_duration_or_seconds() {
        assert_eq!(parse_duration_flag("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration_flag("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration_flag("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration_flag("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration_flag("0"), Ok(Duration::ZERO));
        let error = parse_duration_flag("5 minutes").unwrap_err();
        assert!(error.contains("a bare number means seconds"), "{error}");
        assert!(parse_duration_flag("").is_err());
        assert!(parse_duration_flag("-5").is_err());
    }
}

const RENDERERS: &str = "Renderers";

/// Where the external renderers are (default: $WINDLASS_KUSTOMIZE_BIN /
/// $WINDLASS_HELM_BIN, then PATH, then the windlass cache's tools, which
/// `deploy/local/tools.sh build` fills).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct RenderToolArgs {
    /// The kustomize binary for directories with a kustomization.yaml.
    #[arg(help_heading = RENDERERS, long, value_name = "PATH", env = "WINDLASS_KUSTOMIZE_BIN")]
    pub kustomize_bin: Option<PathBuf>,
    /// The helm binary for Helm charts (`helm template`).
    #[arg(help_heading = RENDERERS, long, value_name = "PATH", env = "WINDLASS_HELM_BIN")]
    pub helm_bin: Option<PathBuf>,
}

impl RenderToolArgs {
    /// The tools to render with: these flags over what
    /// [`crate::render::tool::ToolPaths::resolve`] finds.
    pub fn tools(&self) -> crate::render::tool::ExternalTools {
        let mut paths = crate::render::tool::ToolPaths::resolve();
        if let Some(path) = &self.kustomize_bin {
            paths.kustomize = Some(path.clone());
        }
        if let Some(path) = &self.helm_bin {
            paths.helm = Some(path.clone());
        }
        crate::render::tool::ExternalTools::new(paths)
    }
}

/// Which engine renders the path, when detection is not wanted.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct RendererArgs {
    /// The engine for the path instead of detecting it (over the
    /// Application's spec.source.renderer): auto detects; a path that is
    /// not of the kind named is an error.
    #[arg(help_heading = RENDERERS, long, value_enum, value_name = "RENDERER")]
    pub renderer: Option<crate::spec::Renderer>,
}
