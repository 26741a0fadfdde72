//! Which application a verb works on, in one of three ways:
//!
//! ```text
//!   --app-file app.yaml              an Application manifest (the controller's CRD)
//!   --repo R --ref F --path P ...    flags, read through the git source module
//!   --dir PATH                       a plain local directory (CI on a pull request)
//! ```
//!
//! plus the values group (`-f/--values`, `--set`, ...; see `args.rs`). Also
//! the credential flags that `windlass source` shares.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};

use super::args::{APPLICATION, GIT, ValuesArgs, parse_duration_flag};
use crate::identity::AppIdentity;
use crate::source::{Credentials, HostKeys, Repo, Secret, SourceCache, SourceOptions};
use crate::spec::Application;
use crate::sync::engine::{SourceSpec, Target};

/// Git credentials, from files and environment variables only.
#[derive(Debug, Clone, clap::Args)]
pub struct CredentialArgs {
    /// User name for HTTP(S) basic authentication.
    #[arg(help_heading = GIT, long, value_name = "USER", requires = "password_env")]
    pub username: Option<String>,
    /// Name of the environment variable that holds the HTTP(S) password or token.
    #[arg(help_heading = GIT, long, value_name = "VAR", requires = "username")]
    pub password_env: Option<String>,
    /// SSH private key file.
    #[arg(help_heading = GIT, long, value_name = "FILE", conflicts_with = "username")]
    pub ssh_key: Option<PathBuf>,
    /// Name of the environment variable that holds the SSH key's passphrase.
    #[arg(help_heading = GIT, long, value_name = "VAR", requires = "ssh_key")]
    pub ssh_key_passphrase_env: Option<String>,
    /// known_hosts file with the server's SSH host key (OpenSSH format).
    #[arg(help_heading = GIT, long, value_name = "FILE", requires = "ssh_key")]
    pub known_hosts: Option<PathBuf>,
    /// Accept any SSH host key. Allows a man in the middle; for testing only.
    #[arg(help_heading = GIT, long, requires = "ssh_key", conflicts_with = "known_hosts")]
    pub insecure_ignore_host_key: bool,
    /// Mirror cache directory (default: $WINDLASS_GIT_CACHE, else
    /// ~/.cache/windlass/git).
    #[arg(help_heading = GIT, long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
}

impl CredentialArgs {
    /// Whether any credential flag was given.
    pub fn given(&self) -> bool {
        self.username.is_some() || self.ssh_key.is_some()
    }

    pub fn credentials(&self) -> anyhow::Result<Credentials> {
        if let (Some(username), Some(var)) = (&self.username, &self.password_env) {
            return Ok(Credentials::Basic {
                username: username.clone(),
                password: Secret::new(from_env(var)?),
            });
        }
        let Some(key_file) = &self.ssh_key else {
            return Ok(Credentials::None);
        };
        let private_key = std::fs::read_to_string(key_file)
            .with_context(|| format!("cannot read SSH key {}", key_file.display()))?;
        let host_keys = match (&self.known_hosts, self.insecure_ignore_host_key) {
            (Some(file), _) => HostKeys::Known(
                std::fs::read_to_string(file)
                    .with_context(|| format!("cannot read known_hosts {}", file.display()))?,
            ),
            (None, true) => HostKeys::InsecureAcceptAny,
            (None, false) => bail!(
                "--ssh-key needs --known-hosts FILE with the server's host key \
                 (or --insecure-ignore-host-key, which allows a man in the middle)"
            ),
        };
        Ok(Credentials::SshKey {
            private_key: Secret::new(private_key),
            passphrase: self
                .ssh_key_passphrase_env
                .as_deref()
                .map(from_env)
                .transpose()?
                .map(Secret::new),
            host_keys,
        })
    }

    pub fn cache(&self, timeout: Duration) -> SourceCache {
        let mut options = SourceOptions::new(
            self.cache_dir
                .clone()
                .unwrap_or_else(SourceOptions::default_cache_dir),
        );
        options.timeout = timeout;
        SourceCache::new(options)
    }
}

pub fn from_env(var: &str) -> anyhow::Result<String> {
    std::env::var(var).with_context(|| format!("environment variable {var} is not set"))
}

/// The application: from a manifest, a repository or a directory, with
/// its values.
#[derive(Debug, Clone, clap::Args)]
pub struct TargetArgs {
    /// An Application manifest (YAML). `--file` is the old name; `-f` is
    /// --values, as in Helm.
    #[arg(help_heading = APPLICATION, long = "app-file", alias = "file", value_name = "APP.yaml", conflicts_with_all = ["repo", "dir"])]
    pub app_file: Option<PathBuf>,
    /// Git repository (URL or local path).
    #[arg(help_heading = APPLICATION, long, value_name = "REPO", conflicts_with = "dir")]
    pub repo: Option<String>,
    /// Branch, tag, commit, full ref or semver range (with --repo).
    #[arg(help_heading = APPLICATION, long = "ref", value_name = "REF", requires = "repo")]
    pub reference: Option<String>,
    /// Directory inside the repository (with --repo).
    #[arg(help_heading = APPLICATION, long, value_name = "PATH", requires = "repo")]
    pub path: Option<String>,
    /// A plain local directory instead of a repository.
    #[arg(help_heading = APPLICATION, long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Application name (default: the directory's or repository path's last part).
    #[arg(help_heading = APPLICATION, long, value_name = "NAME")]
    pub name: Option<String>,
    #[command(flatten)]
    pub values: ValuesArgs,
    #[command(flatten)]
    pub credentials: CredentialArgs,
    #[command(flatten)]
    pub renderers: super::args::RenderToolArgs,
    #[command(flatten)]
    pub renderer: super::args::RendererArgs,
    /// Longest a git network operation may take: a Go duration (90s, 2m)
    /// or seconds.
    #[arg(help_heading = GIT, long, value_name = "DURATION", default_value = "120s", value_parser = parse_duration_flag)]
    pub git_timeout: Duration,
}

impl TargetArgs {
    /// Builds the target. `namespace` is `-n`, else the kubeconfig's.
    pub async fn target(&self, client: &kube::Client, namespace: &str) -> anyhow::Result<Target> {
        let mut values = Vec::new();
        let mut ignore = Vec::new();
        let mut allow_empty = false;
        let mut restrictions = None;
        let mut engine = None;
        let (app, destination, source, mut environment) = if let Some(file) = &self.app_file {
            let application = read_application(file)?;
            let mut application = application;
            if application.metadata.namespace.is_none() {
                application.metadata.namespace = Some(namespace.to_string());
            }
            if application.metadata.name.is_none() {
                bail!("{}: metadata.name is missing", file.display());
            }
            let app_namespace = application.metadata.namespace.clone().unwrap_or_default();
            let credentials = if self.credentials.given() {
                self.credentials.credentials()?
            } else if let Some(secret) = &application.spec.source.secret_ref {
                crate::source::auth::read_credentials_secret(client, &app_namespace, &secret.name)
                    .await?
            } else {
                Credentials::None
            };
            let target =
                Target::from_application(&application, credentials, &file.display().to_string())?;
            values = target.values;
            ignore = target.ignore;
            allow_empty = target.allow_empty;
            restrictions = target.restrictions;
            engine = target.engine;
            (
                target.app,
                target.namespace,
                target.source,
                target.environment,
            )
        } else if let Some(repo) = &self.repo {
            let path = self.path.clone().unwrap_or_default();
            let name = self.name.clone().unwrap_or_else(|| {
                last_part(&path).unwrap_or_else(|| last_part(repo).unwrap_or_else(|| "app".into()))
            });
            let source = SourceSpec::Git {
                repo: Box::new(Repo::new(repo, self.credentials.credentials()?)?),
                reference: self.reference.clone().unwrap_or_else(|| "HEAD".into()),
                path,
            };
            (
                AppIdentity::new(namespace, name),
                namespace.to_string(),
                source,
                None,
            )
        } else if let Some(dir) = &self.dir {
            let absolute = std::path::absolute(dir).unwrap_or(dir.clone());
            let name = self
                .name
                .clone()
                .or_else(|| last_part(&absolute.display().to_string()))
                .unwrap_or_else(|| "app".into());
            (
                AppIdentity::new(namespace, name),
                namespace.to_string(),
                SourceSpec::Directory(dir.clone()),
                None,
            )
        } else {
            bail!("{}", self.which_application_hint());
        };
        if self.values.environment.is_some() {
            environment = self.values.environment.clone();
        }
        if let Some(renderer) = self.renderer.renderer {
            engine = renderer.engine();
        }
        values.extend(self.values.layers(&Default::default())?);
        let set = self.values.set_values()?;
        Ok(Target {
            release_name: Some(app.name.clone()),
            app,
            namespace: destination,
            source,
            environment,
            values,
            set,
            ignore,
            tools: Some(std::sync::Arc::new(self.renderers.tools())),
            allow_empty,
            restrictions,
            engine,
        })
    }
}

impl TargetArgs {
    /// What to say when no application was named. Someone who passed the
    /// Application manifest with `-f` (its meaning before `-f` became
    /// --values) is told so.
    fn which_application_hint(&self) -> String {
        let usage = "say which application: --app-file app.yaml, --repo REPO [--ref REF --path \
                     PATH], or --dir DIR";
        let manifest = self.values.values_files.iter().find(|file| {
            std::fs::read_to_string(file).is_ok_and(|text| {
                text.lines()
                    .any(|line| line.trim_end() == "kind: Application")
            })
        });
        match manifest {
            Some(file) => format!(
                "{usage} ({} is an Application manifest: pass it with --app-file; -f is \
                 --values, as in Helm)",
                file.display()
            ),
            None => usage.to_string(),
        }
    }
}

fn last_part(text: &str) -> Option<String> {
    text.trim_end_matches('/')
        .rsplit(['/', ':'])
        .next()
        .map(|s| s.trim_end_matches(".git").to_string())
        .filter(|s| !s.is_empty() && s != ".")
}

fn read_application(file: &std::path::Path) -> anyhow::Result<Application> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read Application manifest {}", file.display()))?;
    let value = crate::render::yaml::load_single(&text, &crate::render::Limits::default().yaml())
        .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?
        .with_context(|| format!("{} is empty", file.display()))?;
    let application: Application = serde_json::from_value(value).with_context(|| {
        format!(
            "{}: not a valid windlass.dev/v1alpha1 Application",
            file.display()
        )
    })?;
    Ok(application)
}
