//! `windlass source resolve | ls | cat`: look at a git source the way the
//! sync engine will see it.
//!
//! Output is line-oriented like `git ls-remote` (`<commit>\t<ref>`), so it
//! composes with shell tools. Credentials come from files and environment
//! variables, never from the command line itself (which other users can see
//! in the process list).

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};

use super::ExitStatus;
use crate::source::{Credentials, HostKeys, Repo, Secret, SourceCache, SourceOptions};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Verb,
}

#[derive(Debug, clap::Subcommand)]
enum Verb {
    /// Resolve a ref to a commit (fetching it into the mirror cache) and
    /// print `<commit>\t<ref>`.
    Resolve {
        #[command(flatten)]
        repo: RepoArgs,
        /// Branch, tag, commit, full ref (refs/pull/42/head) or semver range
        /// over tags (">=1.2.0 <2.0.0", "~1.4", "^2"). Default: the remote's HEAD.
        #[arg(long = "ref", value_name = "REF", default_value = "HEAD")]
        reference: String,
    },
    /// List the remote's refs matching a glob, as `<commit>\t<ref>`.
    Ls {
        #[command(flatten)]
        repo: RepoArgs,
        /// Which refs; `*` stays within one path component
        /// (refs/pull/*/head, refs/heads/preview/*).
        #[arg(long, value_name = "PATTERN", default_value = "**")]
        glob: String,
    },
    /// Print one file at a ref.
    Cat {
        #[command(flatten)]
        repo: RepoArgs,
        #[arg(long = "ref", value_name = "REF", default_value = "HEAD")]
        reference: String,
        /// The file's path inside the repository.
        path: String,
    },
}

#[derive(Debug, clap::Args)]
struct RepoArgs {
    /// Repository: a local path, file://, git://, http(s):// or ssh:// URL,
    /// or scp-like user@host:path.
    repo: String,
    /// User name for HTTP(S) basic authentication.
    #[arg(long, value_name = "USER", requires = "password_env")]
    username: Option<String>,
    /// Name of the environment variable that holds the HTTP(S) password or token.
    #[arg(long, value_name = "VAR", requires = "username")]
    password_env: Option<String>,
    /// SSH private key file.
    #[arg(long, value_name = "FILE", conflicts_with = "username")]
    ssh_key: Option<PathBuf>,
    /// Name of the environment variable that holds the SSH key's passphrase.
    #[arg(long, value_name = "VAR", requires = "ssh_key")]
    ssh_key_passphrase_env: Option<String>,
    /// known_hosts file with the server's SSH host key (OpenSSH format).
    #[arg(long, value_name = "FILE", requires = "ssh_key")]
    known_hosts: Option<PathBuf>,
    /// Accept any SSH host key. Allows a man in the middle; for testing only.
    #[arg(long, requires = "ssh_key", conflicts_with = "known_hosts")]
    insecure_ignore_host_key: bool,
    /// Mirror cache directory (default: $WINDLASS_GIT_CACHE, else
    /// ~/.cache/windlass/git).
    #[arg(long, value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    /// Longest a network operation may take, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 120)]
    timeout: u64,
}

impl RepoArgs {
    fn credentials(&self) -> anyhow::Result<Credentials> {
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

    fn open(&self) -> anyhow::Result<(Repo, SourceCache)> {
        let repo = Repo::new(&self.repo, self.credentials()?)?;
        let mut options = SourceOptions::new(
            self.cache_dir
                .clone()
                .unwrap_or_else(SourceOptions::default_cache_dir),
        );
        options.timeout = Duration::from_secs(self.timeout);
        Ok((repo, SourceCache::new(options)))
    }
}

fn from_env(var: &str) -> anyhow::Result<String> {
    std::env::var(var).with_context(|| format!("environment variable {var} is not set"))
}

pub async fn run(args: &Args, out: &mut impl Write) -> anyhow::Result<ExitStatus> {
    match &args.command {
        Verb::Resolve { repo, reference } => {
            let (repo, cache) = repo.open()?;
            let resolved = cache.resolve(&repo, reference).await?;
            writeln!(out, "{}\t{}", resolved.commit, resolved.ref_name)?;
        }
        Verb::Ls { repo, glob } => {
            let (repo, cache) = repo.open()?;
            for r in cache.list_refs(&repo, glob).await? {
                writeln!(out, "{}\t{}", r.commit, r.name)?;
            }
        }
        Verb::Cat {
            repo,
            reference,
            path,
        } => {
            let (repo, cache) = repo.open()?;
            let resolved = cache.resolve(&repo, reference).await?;
            out.write_all(&cache.read_file(&repo, &resolved, path).await?)?;
        }
    }
    out.flush()?;
    Ok(ExitStatus::Success)
}
