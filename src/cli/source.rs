//! `windlass source resolve | ls | cat`: look at a git source the way the
//! sync engine will see it.
//!
//! Output is line-oriented like `git ls-remote` (`<commit>\t<ref>`), so it
//! composes with shell tools. Credentials come from files and environment
//! variables, never from the command line itself (which other users can see
//! in the process list).

use std::io::Write;
use std::time::Duration;

use super::ExitStatus;
use super::args::parse_duration_flag;
use super::target::CredentialArgs;
use crate::source::{Repo, SourceCache};

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
    #[command(flatten)]
    credentials: CredentialArgs,
    /// Longest a network operation may take: a Go duration (90s, 2m) or
    /// seconds.
    #[arg(long, value_name = "DURATION", default_value = "120s", value_parser = parse_duration_flag)]
    timeout: Duration,
}

impl RepoArgs {
    fn open(&self) -> anyhow::Result<(Repo, SourceCache)> {
        let repo = Repo::new(&self.repo, self.credentials.credentials()?)?;
        Ok((repo, self.credentials.cache(self.timeout)))
    }
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
