//! Git sources: (repository URL, ref, path, credentials) → an immutable
//! snapshot of the files at the resolved commit.
//!
//! ```text
//!                  ┌──────────── SourceCache (one per process) ────────────┐
//!   Repo + "main" ─┤ resolve: ls-remote ─► tip in mirror? ─no─► fetch ref  ├─► Resolved { commit, ref }
//!                  │           (one round trip)        └yes─► no pack      │
//!   Resolved+path ─┤ snapshot: read blobs from the mirror's object database├─► Snapshot (files)
//!   old, new, path ┤ changed: compare tree ids under the path              ├─► bool
//!   Repo + glob ───┤ list_refs: ls-remote, filtered                        ├─► [RemoteRef]
//!                  └───────────────────────────────────────────────────────┘
//!                     mirrors/<hash>-<name>/  one bare mirror per URL, shared
//! ```
//!
//! - **Cost grows with change.** A poll is one ref advertisement; a fetch
//!   happens only when the wanted tip is not in the mirror, and then only the
//!   wanted ref, shallow on network transports. A commit id already in the
//!   mirror needs no network at all.
//! - **One fetch in flight.** Concurrent resolves of the same repository and
//!   ref share one operation (single flight); operations on one mirror are
//!   serialised in-process (async mutex) and across processes (file lock).
//! - **Blocking work off the runtime.** git2 blocks and its `Repository` is
//!   not `Sync`: every git2 call runs in `spawn_blocking`, bounded by a
//!   deadline (libgit2 socket timeouts, progress-callback cancellation, and
//!   an async timeout around the whole operation).
//! - **Damage heals.** A half-written or unreadable mirror is re-created and
//!   the operation retried once.
//! - **Secrets stay secret.** Credentials live in [`auth::Secret`]; URLs are
//!   shown with their user-info redacted; libgit2 never sees a password in a
//!   URL.

pub mod auth;
mod mirror;
pub mod refs;
mod snapshot;
pub mod url;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use git2::Oid;
use globset::GlobBuilder;
use tokio::sync::OnceCell;

pub use auth::{Credentials, HostKeys, Secret};
pub use mirror::FetchStats;
pub use refs::{RefRequest, RemoteRef};
pub use snapshot::Limits;
pub use url::{RepoUrl, Transport};

use mirror::{Failure, Mirror};
use snapshot::SnapshotError;

/// Everything that can go wrong with a git source. Each message names the
/// repository (redacted) and, where there is one, the ref.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    InvalidUrl(String),
    #[error("repository {repo}: cannot reach it (ref `{reference}`): {reason}")]
    Unreachable {
        repo: String,
        reference: String,
        reason: String,
    },
    #[error(
        "repository {repo}: authentication failed (ref `{reference}`): {reason}; check the credentials"
    )]
    Authentication {
        repo: String,
        reference: String,
        reason: String,
    },
    #[error("repository {repo}: SSH host key check failed (ref `{reference}`): {reason}")]
    HostKey {
        repo: String,
        reference: String,
        reason: String,
    },
    #[error("repository {repo}: {reason} (ref `{reference}`)")]
    UnknownRef {
        repo: String,
        reference: String,
        reason: String,
    },
    #[error("repository {repo}: no tag matches `{reference}`: {reason}")]
    NoMatchingTag {
        repo: String,
        reference: String,
        reason: String,
    },
    #[error("repository {repo}: invalid ref `{reference}`: {reason}")]
    InvalidRef {
        repo: String,
        reference: String,
        reason: String,
    },
    #[error("repository {repo}: path `{path}` not found at ref `{reference}`")]
    PathNotFound {
        repo: String,
        reference: String,
        path: String,
    },
    #[error("repository {repo}: path `{path}` leaves the repository (ref `{reference}`): {reason}")]
    PathEscapes {
        repo: String,
        reference: String,
        path: String,
        reason: String,
    },
    #[error("repository {repo}: limit exceeded at ref `{reference}`: {reason}")]
    LimitExceeded {
        repo: String,
        reference: String,
        reason: String,
    },
    #[error(
        "repository {repo}: timed out after {seconds}s (ref `{reference}`); is the server responding?"
    )]
    Timeout {
        repo: String,
        reference: String,
        seconds: u64,
    },
    #[error("repository {repo}: {reason} (ref `{reference}`)")]
    Git {
        repo: String,
        reference: String,
        reason: String,
    },
}

/// A repository and how to authenticate to it.
#[derive(Debug, Clone)]
pub struct Repo {
    pub url: RepoUrl,
    pub credentials: Credentials,
}

impl Repo {
    /// Parses `url`. Credentials embedded in an HTTP(S) URL are used when no
    /// others are given.
    pub fn new(url: &str, credentials: Credentials) -> Result<Repo, Error> {
        let url = RepoUrl::parse(url).map_err(|e| Error::InvalidUrl(e.to_string()))?;
        let credentials = match (credentials, url.embedded_credentials()) {
            (Credentials::None, Some((username, password))) => Credentials::Basic {
                username: username.to_string(),
                password: password.clone(),
            },
            (credentials, _) => credentials,
        };
        Ok(Repo { url, credentials })
    }
}

/// A resolved ref.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The full ref it came from (`refs/heads/main`), or the commit id.
    pub ref_name: String,
    pub commit: Oid,
    /// What this resolve fetched; `None` when the mirror already had the
    /// commit (no pack was transferred).
    pub fetched: Option<FetchStats>,
}

/// The files under one path at one commit, read from the mirror. Immutable.
#[derive(Clone)]
pub struct Snapshot {
    pub repo: String,
    pub commit: Oid,
    pub ref_name: String,
    pub path: String,
    files: std::collections::BTreeMap<String, Vec<u8>>,
    /// Repository paths outside `path` that symlinks led to, or that its
    /// kustomizations reference (`resources: [../../base]`); change
    /// detection must watch them too.
    pub read_outside: Vec<String>,
    /// The files those kustomization references hold, for the Kustomize
    /// engine (or why they could not be read, which only it reports).
    outside:
        Result<crate::render::kustomize::OutsideFiles, crate::render::kustomize::ReferenceError>,
}

impl std::fmt::Debug for Snapshot {
    // File contents (which may hold Secret manifests) are left out.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot")
            .field("repo", &self.repo)
            .field("commit", &self.commit)
            .field("ref_name", &self.ref_name)
            .field("path", &self.path)
            .field("files", &self.files.len())
            .field("read_outside", &self.read_outside)
            .finish_non_exhaustive()
    }
}

impl Snapshot {
    /// File paths relative to the snapshot's path, sorted.
    pub fn file_paths(&self) -> impl Iterator<Item = &str> {
        self.files.keys().map(String::as_str)
    }

    pub fn file(&self, path: &str) -> Option<&[u8]> {
        self.files.get(path).map(Vec::as_slice)
    }

    /// The paths change detection must compare: the snapshot's own and any
    /// its symlinks led to.
    pub fn watched_paths(&self) -> Vec<String> {
        let mut paths = vec![self.path.clone()];
        paths.extend(self.read_outside.iter().cloned());
        paths
    }
}

/// A snapshot is what render reads, exactly like a local directory.
impl crate::render::FileTree for Snapshot {
    fn describe(&self) -> String {
        let commit = self.commit.to_string();
        let path = if self.path.is_empty() {
            "/"
        } else {
            &self.path
        };
        format!("{}@{}:{path}", self.repo, &commit[..commit.len().min(7)])
    }

    fn files(&self) -> Result<Vec<String>, crate::render::FileTreeError> {
        Ok(self.files.keys().cloned().collect())
    }

    fn read(&self, path: &str) -> Result<Vec<u8>, crate::render::FileTreeError> {
        self.files
            .get(path)
            .cloned()
            .ok_or_else(|| crate::render::FileTreeError::NotFound {
                path: path.to_string(),
            })
    }

    fn kustomize_outside(
        &self,
    ) -> Result<crate::render::kustomize::OutsideFiles, crate::render::FileTreeError> {
        Ok(self.outside.clone()?)
    }
}

/// Where mirrors live and how far operations may go.
#[derive(Debug, Clone)]
pub struct SourceOptions {
    pub cache_dir: PathBuf,
    pub limits: Limits,
    /// The longest one network operation may take.
    pub timeout: Duration,
}

impl SourceOptions {
    pub fn new(cache_dir: impl Into<PathBuf>) -> SourceOptions {
        SourceOptions {
            cache_dir: cache_dir.into(),
            limits: Limits::default(),
            timeout: Duration::from_secs(120),
        }
    }

    /// `$WINDLASS_GIT_CACHE`, else `$XDG_CACHE_HOME/windlass/git`, else
    /// `~/.cache/windlass/git`.
    pub fn default_cache_dir() -> PathBuf {
        if let Some(dir) = std::env::var_os("WINDLASS_GIT_CACHE") {
            return PathBuf::from(dir);
        }
        let base = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
            .unwrap_or_else(std::env::temp_dir);
        base.join("windlass").join("git")
    }
}

type Flight = Arc<OnceCell<Result<Resolved, Error>>>;

/// The shared mirror cache. Cheap to share behind an `Arc`.
pub struct SourceCache {
    options: SourceOptions,
    /// Resolves in flight, by (repository, ref): joiners share the result.
    flights: Mutex<HashMap<(String, String), Flight>>,
    /// One operation at a time per mirror, in this process.
    mirror_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// The newest ref listing (`ls-remote`) per repository and credentials:
    /// Applications on one repository share it (see [`SourceCache::resolve_within`]).
    listings: Mutex<HashMap<String, Arc<Listing>>>,
    /// Ref listings made (network requests), for metrics and benchmarks.
    listings_made: std::sync::atomic::AtomicU64,
}

/// What a remote advertised, and when it was asked.
#[derive(Debug)]
pub struct Listing {
    pub at: Instant,
    pub refs: Vec<RemoteRef>,
    pub default_branch: Option<String>,
}

impl SourceCache {
    pub fn new(options: SourceOptions) -> SourceCache {
        SourceCache {
            options,
            flights: Mutex::new(HashMap::new()),
            mirror_locks: Mutex::new(HashMap::new()),
            listings: Mutex::new(HashMap::new()),
            listings_made: std::sync::atomic::AtomicU64::new(0),
        }
    }

    pub fn options(&self) -> &SourceOptions {
        &self.options
    }

    /// Resolves `reference` to a commit and makes sure the mirror holds it,
    /// asking the remote for its refs now. Concurrent calls for the same
    /// repository and ref share one operation.
    pub async fn resolve(&self, repo: &Repo, reference: &str) -> Result<Resolved, Error> {
        self.resolve_within(repo, reference, Duration::ZERO).await
    }

    /// [`SourceCache::resolve`], answered from a ref listing of the same
    /// repository (and credentials) no older than `max_age` when there is
    /// one: every Application polling one repository at interval `max_age`
    /// then shares one `ls-remote` per interval, and one fetch per new
    /// commit. A webhook asks with `max_age` zero.
    #[tracing::instrument(skip_all, fields(repo = %repo.url, reference))]
    pub async fn resolve_within(
        &self,
        repo: &Repo,
        reference: &str,
        max_age: Duration,
    ) -> Result<Resolved, Error> {
        let key = (
            format!("{}#{}", repo.url.cache_key(), max_age.as_millis()),
            reference.to_string(),
        );
        let flight: Flight = {
            let mut flights = self.flights.lock().expect("flights lock");
            flights.entry(key.clone()).or_default().clone()
        };
        let result = flight
            .get_or_init(|| self.resolve_uncoalesced(repo, reference, max_age))
            .await
            .clone();
        let mut flights = self.flights.lock().expect("flights lock");
        if flights.get(&key).is_some_and(|f| Arc::ptr_eq(f, &flight)) {
            flights.remove(&key);
        }
        result
    }

    async fn resolve_uncoalesced(
        &self,
        repo: &Repo,
        reference: &str,
        max_age: Duration,
    ) -> Result<Resolved, Error> {
        let request = RefRequest::parse(reference).map_err(|e| Error::InvalidRef {
            repo: repo.url.to_string(),
            reference: reference.to_string(),
            reason: e.to_string(),
        })?;
        let context = Context::new(repo, reference);
        let listing_key = format!(
            "{}#{}",
            repo.url.cache_key(),
            repo.credentials.fingerprint()
        );
        let shared = self
            .listings
            .lock()
            .expect("listings lock")
            .get(&listing_key)
            .filter(|listing| listing.at.elapsed() <= max_age)
            .cloned();
        let reference = reference.to_string();
        let (resolved, listed) = self
            .with_mirror(repo, &context, move |mirror, repo, deadline| {
                resolve_in_mirror(mirror, repo, &request, &reference, shared.clone(), deadline)
            })
            .await?;
        if let Some(listing) = listed {
            self.listings_made
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.listings
                .lock()
                .expect("listings lock")
                .insert(listing_key, Arc::new(listing));
        }
        Ok(resolved)
    }

    /// How many ref listings (`ls-remote` requests) this cache has made.
    pub fn listings_made(&self) -> u64 {
        self.listings_made
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Reads the files under `path` at a resolved commit.
    pub async fn snapshot(
        &self,
        repo: &Repo,
        resolved: &Resolved,
        path: &str,
    ) -> Result<Snapshot, Error> {
        let context = Context::new(repo, &resolved.ref_name);
        let (commit, path_owned, limits) = (resolved.commit, path.to_string(), self.options.limits);
        let files = self
            .with_mirror(repo, &context, move |mirror, _, _| {
                snapshot::load(&mirror.repo, commit, &path_owned, limits).map_err(from_snapshot)
            })
            .await?;
        Ok(Snapshot {
            repo: repo.url.to_string(),
            commit: resolved.commit,
            ref_name: resolved.ref_name.clone(),
            path: snapshot::normalize(path)
                .map(|p| p.join("/"))
                .unwrap_or_default(),
            files: files.files,
            read_outside: files.read_outside,
            outside: match files.outside_error {
                Some(error) => Err(error),
                None => Ok(files.outside),
            },
        })
    }

    /// Reads one file at a resolved commit.
    pub async fn read_file(
        &self,
        repo: &Repo,
        resolved: &Resolved,
        path: &str,
    ) -> Result<Vec<u8>, Error> {
        let context = Context::new(repo, &resolved.ref_name);
        let (commit, path, limits) = (resolved.commit, path.to_string(), self.options.limits);
        self.with_mirror(repo, &context, move |mirror, _, _| {
            snapshot::read_file(&mirror.repo, commit, &path, limits).map_err(from_snapshot)
        })
        .await
    }

    /// Whether anything under `paths` differs between two commits already in
    /// the mirror (see [`Snapshot::watched_paths`]).
    pub async fn changed(
        &self,
        repo: &Repo,
        old: Oid,
        new: Oid,
        paths: &[String],
    ) -> Result<bool, Error> {
        let context = Context::new(repo, &new.to_string());
        let paths = paths.to_vec();
        self.with_mirror(repo, &context, move |mirror, _, _| {
            snapshot::changed(&mirror.repo, old, new, &paths).map_err(from_snapshot)
        })
        .await
    }

    /// The remote's refs whose names match `glob` (`*` stays within one path
    /// component: `refs/pull/*/head`), sorted by name.
    pub async fn list_refs(&self, repo: &Repo, glob: &str) -> Result<Vec<RemoteRef>, Error> {
        let context = Context::new(repo, glob);
        let matcher = GlobBuilder::new(glob)
            .literal_separator(true)
            .build()
            .map_err(|e| Error::InvalidRef {
                repo: repo.url.to_string(),
                reference: glob.to_string(),
                reason: format!("invalid glob: {e}"),
            })?
            .compile_matcher();
        let mut refs = self
            .with_mirror(repo, &context, |mirror, repo, deadline| {
                let (refs, _) = mirror.list_remote(&repo.url, &repo.credentials, deadline)?;
                Ok(refs)
            })
            .await?;
        refs.retain(|r| matcher.is_match(&r.name));
        refs.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(refs)
    }

    /// Whether the mirror of `repo` holds `commit` (no network).
    pub async fn has_commit(&self, repo: &Repo, commit: Oid) -> Result<bool, Error> {
        let context = Context::new(repo, &commit.to_string());
        self.with_mirror(repo, &context, move |mirror, _, _| {
            mirror.has_commit(commit)
        })
        .await
    }

    /// The number of objects in the mirror of `repo`: proof of what fetches
    /// transferred, for tests and diagnostics.
    pub async fn mirror_object_count(&self, repo: &Repo) -> Result<usize, Error> {
        let context = Context::new(repo, "");
        self.with_mirror(repo, &context, |mirror, _, _| mirror.object_count())
            .await
    }

    /// The directory of `repo`'s mirror.
    pub fn mirror_path(&self, repo: &Repo) -> PathBuf {
        mirror::mirror_path(&self.options.cache_dir, &repo.url)
    }

    /// Runs `operation` on the mirror of `repo` on the blocking pool, with
    /// the mirror locked, under the deadline; re-creates a damaged mirror and
    /// retries once.
    async fn with_mirror<T, F>(
        &self,
        repo: &Repo,
        context: &Context,
        operation: F,
    ) -> Result<T, Error>
    where
        T: Send + 'static,
        F: Fn(&Mirror, &Repo, Instant) -> Result<T, Failure> + Send + 'static,
    {
        let lock = {
            let mut locks = self.mirror_locks.lock().expect("mirror locks");
            locks
                .entry(repo.url.cache_key().to_string())
                .or_default()
                .clone()
        };
        let _guard = lock.lock().await;
        let timeout = self.options.timeout;
        let deadline = Instant::now() + timeout;
        let cache_dir = self.options.cache_dir.clone();
        let repo_owned = repo.clone();
        let task = tokio::task::spawn_blocking(move || {
            let mirror = Mirror::open(&cache_dir, &repo_owned.url)?;
            match operation(&mirror, &repo_owned, deadline) {
                Err(Failure::Corrupt(reason)) => {
                    tracing::warn!(repo = %repo_owned.url, %reason, "mirror damaged; re-creating it");
                    let mirror = mirror.recreate(&repo_owned.url)?;
                    operation(&mirror, &repo_owned, deadline)
                }
                other => other,
            }
        });
        // A grace period past the deadline lets the blocking side report its
        // own, more precise error first.
        match tokio::time::timeout(timeout + Duration::from_secs(5), task).await {
            Ok(Ok(result)) => result.map_err(|failure| context.error(failure, timeout)),
            Ok(Err(join_error)) => Err(context.error(
                Failure::Other(format!("the git operation panicked: {join_error}")),
                timeout,
            )),
            Err(_) => Err(context.error(Failure::Timeout, timeout)),
        }
    }
}

/// The blocking body of `resolve`.
/// Resolves in the mirror; also returns the listing it made, if it asked
/// the remote (`shared`: a recent listing to use instead).
fn resolve_in_mirror(
    mirror: &Mirror,
    repo: &Repo,
    request: &RefRequest,
    reference: &str,
    shared: Option<Arc<Listing>>,
    deadline: Instant,
) -> Result<(Resolved, Option<Listing>), Failure> {
    // An immutable commit id that is already here needs no network.
    if let RefRequest::Commit(id) = request
        && let Ok(commit) = Oid::from_str(id)
        && mirror.has_commit(commit)?
    {
        let resolved = Resolved {
            ref_name: id.clone(),
            commit,
            fetched: None,
        };
        return Ok((resolved, None));
    }
    let mut listed = None;
    let (advertised, default_branch) = match (request, shared) {
        (RefRequest::Commit(_), _) => (Vec::new(), None),
        (_, Some(listing)) => (listing.refs.clone(), listing.default_branch.clone()),
        (_, None) => {
            let at = Instant::now();
            let (refs, default_branch) =
                mirror.list_remote(&repo.url, &repo.credentials, deadline)?;
            listed = Some(Listing {
                at,
                refs: refs.clone(),
                default_branch: default_branch.clone(),
            });
            (refs, default_branch)
        }
    };
    let resolved = resolve_listed(
        mirror,
        repo,
        request,
        reference,
        &advertised,
        default_branch.as_deref(),
        deadline,
    )?;
    Ok((resolved, listed))
}

/// Resolves against what the remote advertised, fetching when the mirror
/// lacks the commit.
fn resolve_listed(
    mirror: &Mirror,
    repo: &Repo,
    request: &RefRequest,
    reference: &str,
    advertised: &[RemoteRef],
    default_branch: Option<&str>,
    deadline: Instant,
) -> Result<Resolved, Failure> {
    let resolution = refs::resolve(request, advertised, default_branch).map_err(|e| match e {
        refs::RefError::NoMatchingTag { .. } => Failure::NoMatchingTag(e.to_string()),
        other => Failure::UnknownRef(other.to_string()),
    })?;
    if mirror.has_commit(resolution.commit)? {
        return Ok(Resolved {
            ref_name: resolution.ref_name,
            commit: resolution.commit,
            fetched: None,
        });
    }
    let shallow = repo.url.transport().supports_shallow();
    let stats = match request {
        RefRequest::Commit(id) => {
            // Fetch what might contain it: all branches and tags, whole
            // histories, then the commit itself (servers that allow it).
            let all = [
                "+refs/heads/*:refs/heads/*".to_string(),
                "+refs/tags/*:refs/tags/*".to_string(),
            ];
            let mut stats = mirror.fetch(&repo.url, &repo.credentials, &all, false, deadline)?;
            if !mirror.has_commit(resolution.commit)? {
                let direct = [format!("+{id}:refs/windlass/commits/{id}")];
                if let Ok(more) =
                    mirror.fetch(&repo.url, &repo.credentials, &direct, false, deadline)
                {
                    stats.objects += more.objects;
                    stats.bytes += more.bytes;
                }
            }
            if !mirror.has_commit(resolution.commit)? {
                return Err(Failure::UnknownRef(format!(
                    "commit {id} is not in any branch or tag of the repository"
                )));
            }
            stats
        }
        _ => {
            let refspec = [format!("+{0}:{0}", resolution.ref_name)];
            let stats = mirror.fetch(&repo.url, &repo.credentials, &refspec, shallow, deadline)?;
            if !mirror.has_commit(resolution.commit)? {
                return Err(Failure::Corrupt(format!(
                    "fetched {} but commit {} is not in the mirror",
                    resolution.ref_name, resolution.commit
                )));
            }
            stats
        }
    };
    tracing::info!(repo = %repo.url, reference, commit = %resolution.commit, objects = stats.objects, "fetched");
    Ok(Resolved {
        ref_name: resolution.ref_name,
        commit: resolution.commit,
        fetched: Some(stats),
    })
}

fn from_snapshot(error: SnapshotError) -> Failure {
    match error {
        SnapshotError::Corrupt(reason) => Failure::Corrupt(reason),
        SnapshotError::NotFound { path } => Failure::PathNotFound(path),
        SnapshotError::Escapes { path, reason } => Failure::PathEscapes { path, reason },
        SnapshotError::Limit(reason) => Failure::Limit(reason),
    }
}

/// What an error message needs to name.
struct Context {
    repo: String,
    reference: String,
}

impl Context {
    fn new(repo: &Repo, reference: &str) -> Context {
        Context {
            repo: repo.url.to_string(),
            reference: reference.to_string(),
        }
    }

    fn error(&self, failure: Failure, timeout: Duration) -> Error {
        let (repo, reference) = (self.repo.clone(), self.reference.clone());
        match failure {
            Failure::Unreachable(reason) => Error::Unreachable {
                repo,
                reference,
                reason,
            },
            Failure::Authentication(reason) => Error::Authentication {
                repo,
                reference,
                reason,
            },
            Failure::HostKey(reason) => Error::HostKey {
                repo,
                reference,
                reason,
            },
            Failure::Timeout => Error::Timeout {
                repo,
                reference,
                seconds: timeout.as_secs(),
            },
            Failure::NoRepository(reason) => Error::Unreachable {
                repo,
                reference,
                reason: format!("no repository there: {reason}"),
            },
            Failure::UnknownRef(reason) => Error::UnknownRef {
                repo,
                reference,
                reason,
            },
            Failure::NoMatchingTag(reason) => Error::NoMatchingTag {
                repo,
                reference,
                reason,
            },
            Failure::PathNotFound(path) => Error::PathNotFound {
                repo,
                reference,
                path,
            },
            Failure::PathEscapes { path, reason } => Error::PathEscapes {
                repo,
                reference,
                path,
                reason,
            },
            Failure::Limit(reason) => Error::LimitExceeded {
                repo,
                reference,
                reason,
            },
            Failure::Other(reason) => Error::Git {
                repo,
                reference,
                reason,
            },
            Failure::Corrupt(reason) => Error::Git {
                repo,
                reference,
                reason: format!("the mirror is damaged and could not be repaired: {reason}"),
            },
        }
    }
}
