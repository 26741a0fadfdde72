//! The mirror cache on disk and the blocking git2 work on it.
//!
//! ```text
//!   <cache>/mirrors/<sha256(url)[..16]>-<name>/      a bare repository per URL
//!                                   windlass-mirror   marker: written once the mirror is
//!                                                     complete; absent = half-written
//!   <cache>/mirrors/<...>.lock                        cross-process lock (File::lock)
//! ```
//!
//! Everything here blocks and uses `git2::Repository`, which is not `Sync`:
//! callers run it on the blocking thread pool, one operation per mirror at a
//! time. Failures are classified into [`Failure`] so that the caller can name
//! the cause precisely; corruption is its own kind, which the caller heals by
//! re-creating the mirror.

use std::cell::RefCell;
use std::fs;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Once;
use std::time::{Duration, Instant};

use git2::{AutotagOption, Direction, FetchOptions, Oid, Repository};
use sha2::{Digest, Sha256};

use super::auth::{self, Attempt, Credentials};
use super::refs::RemoteRef;
use super::url::{RepoUrl, Transport};

const MARKER: &str = "windlass-mirror";

/// libgit2's socket timeouts, for every transport that uses its sockets
/// (git://, HTTP(S), and SSH's connect). A whole operation is also bounded by
/// its deadline (see [`auth::callbacks`]) and by the async caller.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
pub const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// Sets libgit2's global socket timeouts, once per process, before the first
/// libgit2 operation (every operation goes through [`Mirror::open`], which
/// calls this first).
#[allow(unsafe_code)]
pub fn configure_libgit2() {
    static CONFIGURE: Once = Once::new();
    CONFIGURE.call_once(|| {
        let connect = CONNECT_TIMEOUT.as_millis() as i32;
        let io = IO_TIMEOUT.as_millis() as i32;
        // SAFETY: these setters write plain libgit2 globals and are unsafe
        // only because a concurrent libgit2 operation could read them
        // mid-write. `call_once` runs this before any windlass libgit2 call
        // returns from `Mirror::open`, and every windlass libgit2 call goes
        // through `Mirror::open` first, so no operation runs concurrently.
        unsafe {
            let _ = git2::opts::set_server_connect_timeout_in_milliseconds(connect);
            let _ = git2::opts::set_server_timeout_in_milliseconds(io);
        }
    });
}

/// Why a network or repository operation failed, before the caller adds the
/// repository and ref to the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    Unreachable(String),
    Authentication(String),
    HostKey(String),
    Timeout,
    /// The mirror on disk is damaged; re-create it.
    Corrupt(String),
    /// No repository at the URL.
    NoRepository(String),
    UnknownRef(String),
    NoMatchingTag(String),
    PathNotFound(String),
    PathEscapes {
        path: String,
        reason: String,
    },
    Limit(String),
    Other(String),
}

/// Statistics of one fetch: proof of what was transferred.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FetchStats {
    pub objects: usize,
    pub bytes: usize,
}

/// An open mirror, with the cross-process lock held.
pub struct Mirror {
    pub repo: Repository,
    pub path: PathBuf,
    _lock: fs::File,
}

/// Where the mirror of `url` lives.
pub fn mirror_path(cache_dir: &Path, url: &RepoUrl) -> PathBuf {
    let digest = Sha256::digest(url.cache_key().as_bytes());
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    let name: String = url
        .cache_key()
        .trim_end_matches('/')
        .rsplit(['/', ':'])
        .next()
        .unwrap_or("repo")
        .trim_end_matches(".git")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(40)
        .collect();
    cache_dir.join("mirrors").join(format!("{hex}-{name}"))
}

impl Mirror {
    /// Opens the mirror of `url`, creating it when absent and re-creating it
    /// when it is half-written or unreadable. Takes the cross-process lock.
    pub fn open(cache_dir: &Path, url: &RepoUrl) -> Result<Mirror, Failure> {
        configure_libgit2();
        let path = mirror_path(cache_dir, url);
        let parent = path.parent().expect("mirror path has a parent");
        fs::create_dir_all(parent).map_err(|e| local(parent, e))?;
        let lock_path = path.with_extension("lock");
        let lock = fs::File::create(&lock_path).map_err(|e| local(&lock_path, e))?;
        lock.lock().map_err(|e| local(&lock_path, e))?;

        let complete = path.join(MARKER).is_file();
        let opened = if complete {
            Repository::open_bare(&path).ok()
        } else {
            None
        };
        let repo = match opened {
            Some(repo) => repo,
            None => {
                if path.exists() {
                    tracing::warn!(mirror = %path.display(), "mirror is incomplete or unreadable; re-creating it");
                }
                create(&path, url)?
            }
        };
        Ok(Mirror {
            repo,
            path,
            _lock: lock,
        })
    }

    /// Throws the mirror away and starts a fresh one (healing corruption).
    pub fn recreate(self, url: &RepoUrl) -> Result<Mirror, Failure> {
        let Mirror { repo, path, _lock } = self;
        drop(repo);
        tracing::warn!(mirror = %path.display(), "mirror is damaged; re-creating it");
        let repo = create(&path, url)?;
        Ok(Mirror { repo, path, _lock })
    }

    /// The remote's refs (annotated tags peeled) and its default branch.
    pub fn list_remote(
        &self,
        url: &RepoUrl,
        credentials: &Credentials,
        deadline: Instant,
    ) -> Result<(Vec<RemoteRef>, Option<String>), Failure> {
        if url.transport() == Transport::Local && !Path::new(url.fetch_url()).exists() {
            return Err(Failure::NoRepository("no such directory".to_string()));
        }
        let attempt = Rc::new(RefCell::new(Attempt::default()));
        let mut remote = self
            .repo
            .remote_anonymous(url.fetch_url())
            .map_err(|e| Failure::Other(e.message().to_string()))?;
        let callbacks = auth::callbacks(
            credentials,
            url.known_hosts_name(),
            url.ssh_user(),
            deadline,
            attempt.clone(),
        );
        let connection = remote
            .connect_auth(Direction::Fetch, Some(callbacks), None)
            .map_err(|e| classify(&e, &attempt.borrow(), deadline))?;
        let heads = connection
            .list()
            .map_err(|e| classify(&e, &attempt.borrow(), deadline))?;
        let mut refs: Vec<RemoteRef> = Vec::new();
        let mut peeled: Vec<(String, Oid)> = Vec::new();
        for head in heads {
            match head.name().strip_suffix("^{}") {
                Some(tag) => peeled.push((tag.to_string(), head.oid())),
                None => refs.push(RemoteRef {
                    name: head.name().to_string(),
                    commit: head.oid(),
                }),
            }
        }
        for (tag, commit) in peeled {
            if let Some(r) = refs.iter_mut().find(|r| r.name == tag) {
                r.commit = commit;
            }
        }
        let default_branch = connection
            .default_branch()
            .ok()
            .and_then(|b| b.as_str().ok().map(str::to_string))
            .filter(|b| !b.is_empty());
        Ok((refs, default_branch))
    }

    /// Fetches `refspecs`. `depth` 1 makes it shallow (network transports);
    /// `None` fetches whole histories (and deepens a shallow mirror).
    pub fn fetch(
        &self,
        url: &RepoUrl,
        credentials: &Credentials,
        refspecs: &[String],
        shallow: bool,
        deadline: Instant,
    ) -> Result<FetchStats, Failure> {
        let attempt = Rc::new(RefCell::new(Attempt::default()));
        let mut remote = self
            .repo
            .remote_anonymous(url.fetch_url())
            .map_err(|e| Failure::Other(e.message().to_string()))?;
        let mut options = FetchOptions::new();
        options.remote_callbacks(auth::callbacks(
            credentials,
            url.known_hosts_name(),
            url.ssh_user(),
            deadline,
            attempt.clone(),
        ));
        options.download_tags(AutotagOption::None);
        if shallow {
            options.depth(1);
        } else if self.repo.is_shallow() {
            options.depth(i32::MAX); // GIT_FETCH_DEPTH_UNSHALLOW
        }
        remote
            .fetch(refspecs, Some(&mut options), None)
            .map_err(|e| classify(&e, &attempt.borrow(), deadline))?;
        let stats = remote.stats();
        Ok(FetchStats {
            objects: stats.received_objects(),
            bytes: stats.received_bytes(),
        })
    }

    /// Whether `commit` and its root tree are in the mirror and readable.
    /// A commit that is listed but unreadable means a damaged mirror.
    pub fn has_commit(&self, commit: Oid) -> Result<bool, Failure> {
        let odb = self.repo.odb().map_err(corrupt)?;
        if !odb.exists(commit) {
            return Ok(false);
        }
        let commit = self.repo.find_commit(commit).map_err(corrupt)?;
        commit.tree().map_err(corrupt)?;
        Ok(true)
    }

    /// Counts the objects in the mirror (loose and packed): proof of what a
    /// fetch added, for tests and diagnostics.
    pub fn object_count(&self) -> Result<usize, Failure> {
        let odb = self.repo.odb().map_err(corrupt)?;
        let mut count = 0;
        odb.foreach(|_| {
            count += 1;
            true
        })
        .map_err(corrupt)?;
        Ok(count)
    }
}

fn create(path: &Path, url: &RepoUrl) -> Result<Repository, Failure> {
    if path.exists() {
        fs::remove_dir_all(path).map_err(|e| local(path, e))?;
    }
    let repo = Repository::init_bare(path).map_err(|e| Failure::Other(e.message().to_string()))?;
    fs::write(path.join(MARKER), format!("{}\n", url.cache_key())).map_err(|e| local(path, e))?;
    Ok(repo)
}

fn local(path: &Path, error: std::io::Error) -> Failure {
    Failure::Other(format!("mirror cache {}: {error}", path.display()))
}

fn corrupt(error: git2::Error) -> Failure {
    Failure::Corrupt(error.message().to_string())
}

/// Turns a libgit2 error into a [`Failure`], using what the callbacks saw.
fn classify(error: &git2::Error, attempt: &Attempt, deadline: Instant) -> Failure {
    use git2::{ErrorClass, ErrorCode};
    let message = error.message().to_string();
    if let Some(problem) = &attempt.host_key_problem {
        return Failure::HostKey(problem.clone());
    }
    if attempt.deadline_passed || (Instant::now() > deadline && error.code() == ErrorCode::User) {
        return Failure::Timeout;
    }
    if let Some(wanted) = &attempt.missing_credentials {
        return Failure::Authentication(format!("the server asks for {wanted}"));
    }
    let lower = message.to_ascii_lowercase();
    if error.code() == ErrorCode::Auth
        || attempt.credential_requests >= 2
        || lower.contains("authentication")
        || lower.contains("401")
        || lower.contains("403")
    {
        return Failure::Authentication(message);
    }
    if lower.contains("timed out") || lower.contains("timeout") {
        return Failure::Timeout;
    }
    match error.class() {
        ErrorClass::Net | ErrorClass::Os | ErrorClass::Ssh | ErrorClass::Http => {
            if lower.contains("404")
                || lower.contains("not found")
                || lower.contains("does not appear to be a git repository")
            {
                Failure::NoRepository(message)
            } else {
                Failure::Unreachable(message)
            }
        }
        ErrorClass::Repository if error.code() == ErrorCode::NotFound => {
            Failure::NoRepository(message)
        }
        ErrorClass::Odb | ErrorClass::Zlib | ErrorClass::Indexer | ErrorClass::Object => {
            Failure::Corrupt(message)
        }
        _ if lower.contains("failed to connect") || lower.contains("could not resolve") => {
            Failure::Unreachable(message)
        }
        _ => Failure::Other(message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirror_paths_are_stable_and_readable() {
        let url = RepoUrl::parse("https://user:pw@git.example.com/org/deploy.git").unwrap();
        let path = mirror_path(Path::new("/cache"), &url);
        let name = path.file_name().unwrap().to_str().unwrap();
        assert!(name.ends_with("-deploy"), "{name}");
        assert!(!path.to_string_lossy().contains("pw"));
        let same = RepoUrl::parse("https://git.example.com/org/deploy.git").unwrap();
        assert_eq!(path, mirror_path(Path::new("/cache"), &same));
        let other = RepoUrl::parse("https://git.example.com/other/deploy.git").unwrap();
        assert_ne!(path, mirror_path(Path::new("/cache"), &other));
    }
}
