//! The files render reads, and nothing else.
//!
//! ```text
//!   LocalDirectory (a path on disk) ─┐
//!   MemoryTree (tests, benchmarks) ──┼─► dyn FileTree ──files()/read()──► render
//!   git snapshot (source module) ────┘
//! ```
//!
//! Rendering only ever reads through [`FileTree`], so a local directory and a
//! git snapshot render the same way. Paths are `/`-separated and relative to
//! the tree's root; `files()` returns them sorted bytewise, which is the order
//! plain manifests are read in.
//!
//! [`LocalDirectory`] rules:
//! - `.git` directories are not listed;
//! - symlinks are followed when their target stays inside the boundary,
//!   exactly as in a git snapshot: the target's content appears at the
//!   link's path (a linked directory's files under the link). The boundary
//!   is the enclosing git work tree (the nearest ancestor with `.git`), so a
//!   checkout renders with `--dir` as it does from the repository; outside a
//!   checkout it is the directory itself. A target outside the boundary, a
//!   dangling link or a loop is an error naming the link;
//! - a file larger than the per-file limit, or reads adding up to more than
//!   the total limit, are errors naming the file and the limit;
//! - for the Kustomize engine, what the directory's kustomizations reference
//!   outside it (`resources: [../../base]`) is read too, within the same
//!   boundary and limits ([`FileTree::kustomize_outside`]).

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::kustomize::{OutsideFiles, ReferenceError, gather_outside};

/// Default per-file limit of [`LocalDirectory`]: 4 MiB.
pub const DEFAULT_MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;
/// Default limit on all bytes one [`LocalDirectory`] hands out: 64 MiB.
pub const DEFAULT_MAX_TOTAL_BYTES: u64 = 64 * 1024 * 1024;

/// The files render reads: a local directory now, a git snapshot later
/// (the git `source` module will implement this trait for its snapshots).
pub trait FileTree: Send + Sync {
    /// A description for messages, e.g. the directory path or `repo@commit:path`.
    fn describe(&self) -> String;
    /// Every regular file under the root, as `/`-separated paths relative to the
    /// root, sorted bytewise, no leading `./`.
    fn files(&self) -> Result<Vec<String>, FileTreeError>;
    /// The bytes of one file (path as returned by `files`).
    fn read(&self, path: &str) -> Result<Vec<u8>, FileTreeError>;
    /// What the tree's kustomizations reference outside it in its
    /// repository (`resources: [../../base]`), with the tree's own path
    /// there; only the Kustomize engine asks. Default: nothing (a tree that
    /// stands alone).
    fn kustomize_outside(&self) -> Result<OutsideFiles, FileTreeError> {
        Ok(OutsideFiles::default())
    }
}

/// Why a file tree could not be listed or read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileTreeError {
    #[error("`{path}` does not exist")]
    NotFound { path: String },

    #[error("cannot read `{path}`: {reason}")]
    Io { path: String, reason: String },

    #[error("`{path}` is {size} bytes, more than the limit of {limit} bytes per file")]
    TooLarge { path: String, size: u64, limit: u64 },

    #[error(
        "reading `{path}` would bring the files read to more than the limit of {limit} bytes \
         in total"
    )]
    TotalTooLarge { path: String, limit: u64 },

    #[error(
        "symlink `{path}` points outside the repository (outside a git checkout: outside the \
         directory), into a loop, or nowhere; windlass does not follow it"
    )]
    SymlinkOutside { path: String },

    #[error(transparent)]
    Reference(#[from] ReferenceError),

    #[error("{0}")]
    Other(String),
}

/// A directory on the local disk.
///
/// The total limit counts every read through one `LocalDirectory`, so open
/// one per render. (Each render also enforces [`super::Limits`] itself,
/// whatever the tree.)
#[derive(Debug)]
pub struct LocalDirectory {
    root: PathBuf,
    /// `root`, canonicalised.
    canonical_root: PathBuf,
    /// Symlink targets must stay inside it: the enclosing git work tree, or
    /// `canonical_root` outside a checkout.
    boundary: PathBuf,
    max_file_bytes: u64,
    max_total_bytes: u64,
    bytes_read: AtomicU64,
}

impl LocalDirectory {
    /// Opens `root` with the default limits.
    pub fn new(root: impl Into<PathBuf>) -> Result<LocalDirectory, FileTreeError> {
        LocalDirectory::with_limits(root, DEFAULT_MAX_FILE_BYTES, DEFAULT_MAX_TOTAL_BYTES)
    }

    /// Opens `root`; no single file may exceed `max_file_bytes` and all reads
    /// together may not exceed `max_total_bytes`.
    pub fn with_limits(
        root: impl Into<PathBuf>,
        max_file_bytes: u64,
        max_total_bytes: u64,
    ) -> Result<LocalDirectory, FileTreeError> {
        let root = root.into();
        let shown = root.display().to_string();
        let canonical_root = fs::canonicalize(&root).map_err(|error| match error.kind() {
            std::io::ErrorKind::NotFound => FileTreeError::NotFound {
                path: shown.clone(),
            },
            _ => FileTreeError::Io {
                path: shown.clone(),
                reason: error.to_string(),
            },
        })?;
        if !canonical_root.is_dir() {
            return Err(FileTreeError::Io {
                path: shown,
                reason: "not a directory".to_string(),
            });
        }
        let boundary = canonical_root
            .ancestors()
            .find(|dir| dir.join(".git").exists())
            .unwrap_or(&canonical_root)
            .to_path_buf();
        Ok(LocalDirectory {
            root,
            canonical_root,
            boundary,
            max_file_bytes,
            max_total_bytes,
            bytes_read: AtomicU64::new(0),
        })
    }

    /// The directory as it was given.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Lists `dir` (canonical) under `prefix`. `visiting` holds the
    /// directories on the current path, to catch symlink loops.
    fn walk(
        &self,
        dir: &Path,
        prefix: &str,
        out: &mut Vec<String>,
        visiting: &mut Vec<PathBuf>,
    ) -> Result<(), FileTreeError> {
        let io = |path: &str, error: std::io::Error| FileTreeError::Io {
            path: if path.is_empty() {
                self.describe()
            } else {
                path.to_string()
            },
            reason: error.to_string(),
        };
        let entries = fs::read_dir(dir).map_err(|e| io(prefix, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| io(prefix, e))?;
            let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                return Err(FileTreeError::Io {
                    path: format!("{prefix}{}", entry.file_name().to_string_lossy()),
                    reason: "the file name is not UTF-8".to_string(),
                });
            };
            let relative = format!("{prefix}{name}");
            let file_type = entry.file_type().map_err(|e| io(&relative, e))?;
            if file_type.is_symlink() {
                let target = fs::canonicalize(entry.path())
                    .ok()
                    .filter(|t| t.starts_with(&self.boundary) && !visiting.contains(t))
                    .ok_or_else(|| FileTreeError::SymlinkOutside {
                        path: relative.clone(),
                    })?;
                if target.is_dir() {
                    visiting.push(target.clone());
                    self.walk(&target, &format!("{relative}/"), out, visiting)?;
                    visiting.pop();
                } else if target.is_file() {
                    out.push(relative);
                }
            } else if file_type.is_dir() {
                if name == ".git" {
                    continue;
                }
                let path = entry.path();
                visiting.push(path.clone());
                self.walk(&path, &format!("{relative}/"), out, visiting)?;
                visiting.pop();
            } else if file_type.is_file() {
                out.push(relative);
            }
        }
        Ok(())
    }
}

impl FileTree for LocalDirectory {
    fn describe(&self) -> String {
        self.root.display().to_string()
    }

    fn files(&self) -> Result<Vec<String>, FileTreeError> {
        let mut files = Vec::new();
        let mut visiting = vec![self.canonical_root.clone()];
        self.walk(&self.canonical_root, "", &mut files, &mut visiting)?;
        files.sort();
        Ok(files)
    }

    fn read(&self, path: &str) -> Result<Vec<u8>, FileTreeError> {
        self.read_under(&self.canonical_root, path)
    }

    /// The kustomizations of the directory, followed out of it within the
    /// boundary (the enclosing git checkout), which stands for the
    /// repository.
    fn kustomize_outside(&self) -> Result<OutsideFiles, FileTreeError> {
        let app_path = self
            .canonical_root
            .strip_prefix(&self.boundary)
            .ok()
            .and_then(Path::to_str)
            .unwrap_or_default()
            .to_string();
        let in_repo = |path: &str| {
            if app_path.is_empty() {
                path.to_string()
            } else {
                format!("{app_path}/{path}")
            }
        };
        let mut kustomizations = Vec::new();
        for path in self.files()? {
            let name = path.rsplit('/').next().unwrap_or(&path);
            if super::detect::KUSTOMIZATION_FILES.contains(&name) {
                let text = String::from_utf8_lossy(&self.read(&path)?).into_owned();
                kustomizations.push((in_repo(&path), text));
            }
        }
        let mut load = |path: &str| self.load_in_boundary(path).map_err(|e| e.to_string());
        Ok(gather_outside(&app_path, kustomizations, &mut load)?)
    }
}

impl LocalDirectory {
    /// The files at `path` (relative to the boundary): a directory's,
    /// recursively, or the file itself, keyed relative to the boundary;
    /// none when nothing is there.
    fn load_in_boundary(&self, path: &str) -> Result<BTreeMap<String, Vec<u8>>, FileTreeError> {
        let mut files = BTreeMap::new();
        let full = self.boundary.join(path);
        let Ok(canonical) = fs::canonicalize(&full) else {
            return Ok(files);
        };
        if !canonical.starts_with(&self.boundary) {
            return Err(FileTreeError::SymlinkOutside {
                path: path.to_string(),
            });
        }
        if canonical.is_file() {
            files.insert(path.to_string(), self.read_under(&self.boundary, path)?);
        } else if canonical.is_dir() {
            let mut listed = Vec::new();
            let mut visiting = vec![canonical.clone()];
            let prefix = if path.is_empty() {
                String::new()
            } else {
                format!("{path}/")
            };
            self.walk(&canonical, &prefix, &mut listed, &mut visiting)?;
            for file in listed {
                let bytes = self.read_under(&self.boundary, &file)?;
                files.insert(file, bytes);
            }
        }
        Ok(files)
    }

    /// Reads `path` relative to `base` (the root or the boundary), never
    /// out of the boundary, within the limits.
    fn read_under(&self, base: &Path, path: &str) -> Result<Vec<u8>, FileTreeError> {
        if !is_clean_relative(path) {
            return Err(FileTreeError::NotFound {
                path: path.to_string(),
            });
        }
        let full = base.join(path);
        let io = |error: std::io::Error| match error.kind() {
            std::io::ErrorKind::NotFound => FileTreeError::NotFound {
                path: path.to_string(),
            },
            _ => FileTreeError::Io {
                path: path.to_string(),
                reason: error.to_string(),
            },
        };
        // Follow symlinks, as `files` does, but never out of the boundary.
        let full = fs::canonicalize(&full).map_err(io)?;
        if !full.starts_with(&self.boundary) {
            return Err(FileTreeError::SymlinkOutside {
                path: path.to_string(),
            });
        }
        let metadata = fs::metadata(&full).map_err(io)?;
        if !metadata.is_file() {
            return Err(FileTreeError::Io {
                path: path.to_string(),
                reason: "not a regular file".to_string(),
            });
        }
        if metadata.len() > self.max_file_bytes {
            return Err(FileTreeError::TooLarge {
                path: path.to_string(),
                size: metadata.len(),
                limit: self.max_file_bytes,
            });
        }
        // Read at most one byte past the limit: the file may grow after the
        // metadata was taken.
        let mut bytes = Vec::with_capacity(metadata.len() as usize);
        fs::File::open(&full)
            .map_err(io)?
            .take(self.max_file_bytes + 1)
            .read_to_end(&mut bytes)
            .map_err(io)?;
        let size = bytes.len() as u64;
        if size > self.max_file_bytes {
            return Err(FileTreeError::TooLarge {
                path: path.to_string(),
                size,
                limit: self.max_file_bytes,
            });
        }
        let before = self.bytes_read.fetch_add(size, Ordering::Relaxed);
        if before + size > self.max_total_bytes {
            return Err(FileTreeError::TotalTooLarge {
                path: path.to_string(),
                limit: self.max_total_bytes,
            });
        }
        Ok(bytes)
    }
}

/// `a/b.yaml`: no leading `/`, no `.`/`..`/empty components.
fn is_clean_relative(path: &str) -> bool {
    !path.is_empty()
        && path
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != "..")
}

/// Files held in memory: for tests, benchmarks and callers that build a
/// tree themselves.
#[derive(Clone, Default)]
pub struct MemoryTree {
    name: String,
    files: BTreeMap<String, Vec<u8>>,
}

impl MemoryTree {
    /// An empty tree called `name` in messages.
    pub fn new(name: impl Into<String>) -> MemoryTree {
        MemoryTree {
            name: name.into(),
            files: BTreeMap::new(),
        }
    }

    /// Adds (or replaces) a file.
    pub fn insert(&mut self, path: impl Into<String>, content: impl Into<Vec<u8>>) {
        self.files.insert(path.into(), content.into());
    }

    /// Builder form of [`MemoryTree::insert`].
    pub fn with(mut self, path: impl Into<String>, content: impl Into<Vec<u8>>) -> MemoryTree {
        self.insert(path, content);
        self
    }
}

impl std::fmt::Debug for MemoryTree {
    // File contents may hold secrets: show the paths only.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryTree")
            .field("name", &self.name)
            .field("files", &self.files.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl FileTree for MemoryTree {
    fn describe(&self) -> String {
        self.name.clone()
    }

    fn files(&self) -> Result<Vec<String>, FileTreeError> {
        // BTreeMap<String, _> iterates in bytewise order.
        Ok(self.files.keys().cloned().collect())
    }

    fn read(&self, path: &str) -> Result<Vec<u8>, FileTreeError> {
        self.files
            .get(path)
            .cloned()
            .ok_or_else(|| FileTreeError::NotFound {
                path: path.to_string(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "windlass-files-{name}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn lists_files_sorted_relative_without_git() {
        let dir = scratch("list");
        fs::create_dir_all(dir.join("b/c")).unwrap();
        fs::create_dir_all(dir.join(".git/objects")).unwrap();
        fs::write(dir.join("b/c/z.yaml"), "x").unwrap();
        fs::write(dir.join("a.yaml"), "x").unwrap();
        fs::write(dir.join("B.yaml"), "x").unwrap();
        fs::write(dir.join(".git/config"), "x").unwrap();
        let tree = LocalDirectory::new(&dir).unwrap();
        assert_eq!(tree.files().unwrap(), ["B.yaml", "a.yaml", "b/c/z.yaml"]);
        assert_eq!(tree.read("b/c/z.yaml").unwrap(), b"x");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn symlinks_inside_the_boundary_are_followed_like_in_git() {
        let dir = scratch("links");
        let outside = scratch("links-outside");
        fs::create_dir_all(dir.join("shared")).unwrap();
        fs::write(dir.join("real.yaml"), "x").unwrap();
        fs::write(dir.join("shared/base.yaml"), "b").unwrap();
        fs::write(outside.join("secret"), "s").unwrap();
        std::os::unix::fs::symlink(dir.join("real.yaml"), dir.join("alias.yaml")).unwrap();
        std::os::unix::fs::symlink("shared", dir.join("linked")).unwrap();
        let tree = LocalDirectory::new(&dir).unwrap();
        assert_eq!(
            tree.files().unwrap(),
            [
                "alias.yaml",
                "linked/base.yaml",
                "real.yaml",
                "shared/base.yaml"
            ]
        );
        assert_eq!(tree.read("alias.yaml").unwrap(), b"x");
        assert_eq!(tree.read("linked/base.yaml").unwrap(), b"b");

        // A loop is refused rather than followed forever.
        std::os::unix::fs::symlink("..", dir.join("shared/up")).unwrap();
        // Which of `shared/up` and `linked/up` is met first depends on the
        // directory's order; either way it is the loop that is named.
        assert!(matches!(
            tree.files().unwrap_err(),
            FileTreeError::SymlinkOutside { path } if path.ends_with("/up")
        ));
        fs::remove_file(dir.join("shared/up")).unwrap();

        std::os::unix::fs::symlink(outside.join("secret"), dir.join("escape.yaml")).unwrap();
        let error = tree.files().unwrap_err();
        assert_eq!(
            error,
            FileTreeError::SymlinkOutside {
                path: "escape.yaml".into()
            }
        );
        assert!(error.to_string().contains("points outside"), "{error}");
        assert!(tree.read("escape.yaml").is_err());
        fs::remove_dir_all(&dir).unwrap();
        fs::remove_dir_all(&outside).unwrap();
    }

    #[test]
    fn inside_a_git_checkout_the_boundary_is_the_repository() {
        let repo = scratch("links-repo");
        fs::create_dir_all(repo.join(".git")).unwrap();
        fs::create_dir_all(repo.join("apps/web")).unwrap();
        fs::create_dir_all(repo.join("base")).unwrap();
        fs::write(repo.join("base/labels.yaml"), "l").unwrap();
        std::os::unix::fs::symlink("../../base", repo.join("apps/web/base")).unwrap();
        let tree = LocalDirectory::new(repo.join("apps/web")).unwrap();
        assert_eq!(tree.files().unwrap(), ["base/labels.yaml"]);
        assert_eq!(tree.read("base/labels.yaml").unwrap(), b"l");
        fs::remove_dir_all(&repo).unwrap();
    }

    #[test]
    fn kustomizations_reach_outside_the_directory_within_the_checkout() {
        let repo = scratch("kustomize-outside");
        let outside = scratch("kustomize-outside-elsewhere");
        fs::create_dir_all(repo.join(".git")).unwrap();
        fs::create_dir_all(repo.join("overlays/prod")).unwrap();
        fs::create_dir_all(repo.join("base/patches")).unwrap();
        fs::write(
            repo.join("overlays/prod/kustomization.yaml"),
            "resources: [../../base, ../../missing]\n",
        )
        .unwrap();
        fs::write(
            repo.join("base/kustomization.yaml"),
            "resources: [cm.yaml]\n",
        )
        .unwrap();
        fs::write(repo.join("base/cm.yaml"), "cm").unwrap();
        fs::write(repo.join("base/patches/p.yaml"), "p").unwrap();
        fs::write(repo.join("unrelated.yaml"), "u").unwrap();
        let tree = LocalDirectory::new(repo.join("overlays/prod")).unwrap();
        let found = tree.kustomize_outside().unwrap();
        assert_eq!(found.app_path, "overlays/prod");
        assert_eq!(
            found.files.keys().collect::<Vec<_>>(),
            [
                "base/cm.yaml",
                "base/kustomization.yaml",
                "base/patches/p.yaml"
            ]
        );
        assert_eq!(found.files["base/cm.yaml"], b"cm");
        // The tree itself is still only the overlay.
        assert_eq!(tree.files().unwrap(), ["kustomization.yaml"]);

        // A symlink in the base that leaves the checkout is refused, named.
        fs::write(outside.join("secret"), "s").unwrap();
        std::os::unix::fs::symlink(outside.join("secret"), repo.join("base/leak.yaml")).unwrap();
        let error = tree.kustomize_outside().unwrap_err();
        assert_eq!(
            error.to_string(),
            "`overlays/prod/kustomization.yaml`: resources entry `../../base`: symlink \
             `base/leak.yaml` points outside the repository (outside a git checkout: outside \
             the directory), into a loop, or nowhere; windlass does not follow it"
        );
        fs::remove_file(repo.join("base/leak.yaml")).unwrap();

        // A reference to the whole repository: all of it but the directory.
        fs::write(
            repo.join("overlays/prod/kustomization.yaml"),
            "resources: [../..]\n",
        )
        .unwrap();
        let found = tree.kustomize_outside().unwrap();
        assert_eq!(
            found.files.keys().collect::<Vec<_>>(),
            [
                "base/cm.yaml",
                "base/kustomization.yaml",
                "base/patches/p.yaml",
                "unrelated.yaml"
            ]
        );
        fs::remove_dir_all(&repo).unwrap();
        fs::remove_dir_all(&outside).unwrap();
    }

    #[test]
    fn enforces_per_file_and_total_limits() {
        let dir = scratch("limits");
        fs::write(dir.join("big.yaml"), vec![b'a'; 11]).unwrap();
        fs::write(dir.join("one.yaml"), vec![b'a'; 6]).unwrap();
        fs::write(dir.join("two.yaml"), vec![b'a'; 6]).unwrap();
        let tree = LocalDirectory::with_limits(&dir, 10, 11).unwrap();
        let error = tree.read("big.yaml").unwrap_err();
        assert_eq!(
            error,
            FileTreeError::TooLarge {
                path: "big.yaml".into(),
                size: 11,
                limit: 10
            }
        );
        assert!(error.to_string().contains("limit of 10 bytes"), "{error}");
        tree.read("one.yaml").unwrap();
        let error = tree.read("two.yaml").unwrap_err();
        assert!(
            matches!(error, FileTreeError::TotalTooLarge { limit: 11, .. }),
            "{error}"
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn refuses_paths_that_leave_the_root() {
        let dir = scratch("escape");
        let tree = LocalDirectory::new(&dir).unwrap();
        for path in ["../x", "/etc/passwd", "a/../../x", "", "./a"] {
            assert!(
                matches!(tree.read(path), Err(FileTreeError::NotFound { .. })),
                "{path}"
            );
        }
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_missing_directory_is_named() {
        let error = LocalDirectory::new("/nonexistent/windlass/dir").unwrap_err();
        assert!(
            error.to_string().contains("/nonexistent/windlass/dir"),
            "{error}"
        );
    }

    #[test]
    fn memory_tree_debug_hides_contents() {
        let tree = MemoryTree::new("mem").with("s.yaml", "password: hunter2");
        let debug = format!("{tree:?}");
        assert!(
            debug.contains("s.yaml") && !debug.contains("hunter2"),
            "{debug}"
        );
    }
}
