//! Reading the files of one commit under one path, straight from the object
//! database (no working tree).
//!
//! ```text
//!   (mirror, commit, "apps/guestbook") ──load──► Snapshot { files: path → bytes,
//!                                                           read_outside: [paths] }
//! ```
//!
//! Safety rules, all checked here:
//! - the path must stay inside the repository: no `..` climbing above the
//!   root, no absolute paths;
//! - a symlink is followed only when its target stays inside the repository
//!   (a target outside the app path is allowed and recorded, so change
//!   detection also watches it); chains are bounded;
//! - a file larger than [`Limits::max_file_bytes`], or more than
//!   [`Limits::max_total_bytes`] / [`Limits::max_files`] in all, is an error;
//! - directories the path's kustomizations reference outside it
//!   (`resources: [../../base]`) are loaded too, within the same limits, and
//!   recorded for change detection; what cannot be gathered is kept for the
//!   Kustomize engine to report (no other engine reads kustomizations).
//!
//! Submodules (gitlinks) are skipped: their content is another repository.

use std::collections::BTreeMap;

use git2::{ObjectType, Oid, Repository, Tree};

use crate::render::detect::KUSTOMIZATION_FILES;
use crate::render::kustomize::{OutsideFiles, ReferenceError, gather_outside};

/// Size limits on what a snapshot may read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_file_bytes: usize,
    pub max_total_bytes: usize,
    pub max_files: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_file_bytes: 8 << 20,
            max_total_bytes: 128 << 20,
            max_files: 20_000,
        }
    }
}

/// Why a snapshot could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotError {
    /// The path leaves the repository (`..`, absolute, or a symlink).
    Escapes {
        path: String,
        reason: String,
    },
    NotFound {
        path: String,
    },
    Limit(String),
    /// The object database could not be read: the mirror is damaged.
    Corrupt(String),
}

/// A path inside the repository as components: `""`, `.` and `./` are the
/// root; `..` that climbs above the root and absolute paths are refused.
pub fn normalize(path: &str) -> Result<Vec<String>, SnapshotError> {
    let escapes = |reason: &str| SnapshotError::Escapes {
        path: path.to_string(),
        reason: reason.to_string(),
    };
    if path.starts_with('/') || path.starts_with('\\') {
        return Err(escapes("absolute paths are not allowed"));
    }
    let mut parts: Vec<String> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err(escapes("`..` is not allowed")),
            other => parts.push(other.to_string()),
        }
    }
    Ok(parts)
}

/// Resolves a symlink's target relative to the directory holding the link.
/// `..` may climb within the repository, never above its root.
fn resolve_link(
    link_dir: &[String],
    target: &str,
    link: &str,
) -> Result<Vec<String>, SnapshotError> {
    let escapes = |reason: &str| SnapshotError::Escapes {
        path: link.to_string(),
        reason: reason.to_string(),
    };
    if target.starts_with('/') {
        return Err(escapes(
            "it is a symlink to an absolute path, outside the repository",
        ));
    }
    let mut parts: Vec<String> = link_dir.to_vec();
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err(escapes(
                        "it is a symlink that points outside the repository",
                    ));
                }
            }
            other => parts.push(other.to_string()),
        }
    }
    Ok(parts)
}

/// The files of a snapshot, loaded.
#[derive(Clone, Default)]
pub struct Files {
    /// Path relative to the snapshot root, `/`-separated → content.
    pub files: BTreeMap<String, Vec<u8>>,
    /// Repository paths outside the snapshot root that symlinks led to, and
    /// that kustomizations referenced (present or not).
    pub read_outside: Vec<String>,
    /// What the kustomizations under the path reference outside it.
    pub outside: OutsideFiles,
    /// Why `outside` could not be gathered: reported by the Kustomize
    /// engine only (other engines do not read kustomizations).
    pub outside_error: Option<ReferenceError>,
}

const MAX_LINK_HOPS: usize = 16;

/// Loads every file under `path` at `commit`.
pub fn load(
    repo: &Repository,
    commit: Oid,
    path: &str,
    limits: Limits,
) -> Result<Files, SnapshotError> {
    let root_parts = normalize(path)?;
    let commit = repo.find_commit(commit).map_err(corrupt)?;
    let root = commit.tree().map_err(corrupt)?;
    let mut loader = Loader {
        repo,
        root: &root,
        limits,
        root_parts: root_parts.clone(),
        out: Files::default(),
        total: 0,
        count: 0,
        collected: None,
    };
    match loader.lookup(&root_parts, 0, path)? {
        Entry::Tree(tree) => loader.walk(&tree, &root_parts, "")?,
        Entry::Blob(oid) => {
            let name = root_parts.last().cloned().unwrap_or_default();
            loader.add_file(&name, oid)?;
        }
    }
    loader.load_kustomize_outside()?;
    loader.out.read_outside.sort();
    loader.out.read_outside.dedup();
    Ok(loader.out)
}

/// Reads one file at `commit` (following symlinks inside the repository).
pub fn read_file(
    repo: &Repository,
    commit: Oid,
    path: &str,
    limits: Limits,
) -> Result<Vec<u8>, SnapshotError> {
    let parts = normalize(path)?;
    let commit = repo.find_commit(commit).map_err(corrupt)?;
    let root = commit.tree().map_err(corrupt)?;
    let mut loader = Loader {
        repo,
        root: &root,
        limits,
        root_parts: Vec::new(),
        out: Files::default(),
        total: 0,
        count: 0,
        collected: None,
    };
    match loader.lookup(&parts, 0, path)? {
        Entry::Blob(oid) => {
            loader.add_file(path, oid)?;
            Ok(loader.out.files.into_values().next().unwrap_or_default())
        }
        Entry::Tree(_) => Err(SnapshotError::NotFound {
            path: format!("{path} (a directory, not a file)"),
        }),
    }
}

enum Entry<'r> {
    Tree(Tree<'r>),
    Blob(Oid),
}

struct Loader<'a, 'r> {
    repo: &'r Repository,
    root: &'a Tree<'r>,
    limits: Limits,
    root_parts: Vec<String>,
    out: Files,
    total: usize,
    /// Files read, in the path and outside it.
    count: usize,
    /// `Some` while loading outside the path: where those files go, keyed
    /// repository-relative.
    collected: Option<BTreeMap<String, Vec<u8>>>,
}

impl<'a, 'r> Loader<'a, 'r> {
    /// Finds the entry at `parts`, following symlinks on the way.
    fn lookup(
        &mut self,
        parts: &[String],
        hops: usize,
        shown: &str,
    ) -> Result<Entry<'r>, SnapshotError> {
        if hops > MAX_LINK_HOPS {
            return Err(SnapshotError::Escapes {
                path: shown.to_string(),
                reason: format!("more than {MAX_LINK_HOPS} symlinks in a row"),
            });
        }
        let mut tree: Tree<'r> = self.repo.find_tree(self.root.id()).map_err(corrupt)?;
        for (i, part) in parts.iter().enumerate() {
            let Some((oid, filemode, kind)) = tree
                .get_name(part)
                .map(|entry| (entry.id(), entry.filemode(), entry.kind()))
            else {
                return Err(SnapshotError::NotFound {
                    path: shown.to_string(),
                });
            };
            match kind {
                Some(ObjectType::Tree) => tree = self.repo.find_tree(oid).map_err(corrupt)?,
                Some(ObjectType::Blob) if filemode == 0o120000 => {
                    let target = self.link_target(oid)?;
                    let link_path = parts[..=i].join("/");
                    let mut resolved = resolve_link(&parts[..i], &target, &link_path)?;
                    resolved.extend_from_slice(&parts[i + 1..]);
                    self.note_outside(&resolved);
                    return self.lookup(&resolved, hops + 1, shown);
                }
                Some(ObjectType::Blob) if i + 1 == parts.len() => return Ok(Entry::Blob(oid)),
                _ => {
                    return Err(SnapshotError::NotFound {
                        path: shown.to_string(),
                    });
                }
            }
        }
        Ok(Entry::Tree(tree))
    }

    fn walk(&mut self, tree: &Tree<'r>, at: &[String], prefix: &str) -> Result<(), SnapshotError> {
        for entry in tree.iter() {
            let Ok(name) = entry.name() else { continue };
            let relative = if prefix.is_empty() {
                name.to_string()
            } else {
                format!("{prefix}/{name}")
            };
            let mut here = at.to_vec();
            here.push(name.to_string());
            match entry.kind() {
                Some(ObjectType::Tree) => {
                    let subtree = self.repo.find_tree(entry.id()).map_err(corrupt)?;
                    self.walk(&subtree, &here, &relative)?;
                }
                Some(ObjectType::Blob) if entry.filemode() == 0o120000 => {
                    let target = self.link_target(entry.id())?;
                    let shown = here.join("/");
                    let resolved = resolve_link(at, &target, &shown)?;
                    self.note_outside(&resolved);
                    match self.lookup(&resolved, 1, &shown)? {
                        Entry::Blob(oid) => self.add_file(&relative, oid)?,
                        Entry::Tree(subtree) => {
                            if at.starts_with(&resolved) {
                                return Err(SnapshotError::Escapes {
                                    path: shown,
                                    reason: "it is a symlink to a directory that contains it"
                                        .to_string(),
                                });
                            }
                            self.walk(&subtree, &resolved, &relative)?
                        }
                    }
                }
                Some(ObjectType::Blob) => self.add_file(&relative, entry.id())?,
                _ => {} // submodule: another repository
            }
        }
        Ok(())
    }

    /// Follows the kustomizations under the path out of it (see
    /// [`gather_outside`]), within the same limits. What cannot be gathered
    /// is kept for the Kustomize engine to report; a damaged mirror is an
    /// error now.
    fn load_kustomize_outside(&mut self) -> Result<(), SnapshotError> {
        let app_path = self.root_parts.join("/");
        let kustomizations: Vec<(String, String)> = self
            .out
            .files
            .iter()
            .filter(|(path, _)| {
                KUSTOMIZATION_FILES.contains(&path.rsplit('/').next().unwrap_or(path))
            })
            .map(|(path, bytes)| {
                let path = if app_path.is_empty() {
                    path.clone()
                } else {
                    format!("{app_path}/{path}")
                };
                (path, String::from_utf8_lossy(bytes).into_owned())
            })
            .collect();
        if kustomizations.is_empty() {
            return Ok(());
        }
        let mut corrupt = None;
        let mut referenced = Vec::new();
        let mut load = |path: &str| {
            referenced.push(path.to_string());
            self.load_outside(path).map_err(|error| match error {
                SnapshotError::Corrupt(reason) => {
                    corrupt = Some(reason.clone());
                    reason
                }
                SnapshotError::Escapes { path, reason } => format!("`{path}`: {reason}"),
                SnapshotError::NotFound { path } => format!("`{path}` not found"),
                SnapshotError::Limit(reason) => reason,
            })
        };
        let gathered = gather_outside(&app_path, kustomizations, &mut load);
        if let Some(reason) = corrupt {
            return Err(SnapshotError::Corrupt(reason));
        }
        self.out.read_outside.extend(referenced);
        match gathered {
            Ok(outside) => self.out.outside = outside,
            Err(error) => self.out.outside_error = Some(error),
        }
        Ok(())
    }

    /// The files at repository path `path` (a directory's, or the file),
    /// keyed repository-relative; none when nothing is there.
    fn load_outside(&mut self, path: &str) -> Result<BTreeMap<String, Vec<u8>>, SnapshotError> {
        let parts = normalize(path)?;
        self.collected = Some(BTreeMap::new());
        let loaded = match self.lookup(&parts, 0, path) {
            Ok(Entry::Tree(tree)) => self.walk(&tree, &parts, path),
            Ok(Entry::Blob(oid)) => self.add_file(path, oid),
            Err(SnapshotError::NotFound { .. }) => Ok(()),
            Err(error) => Err(error),
        };
        let collected = self.collected.take().unwrap_or_default();
        loaded.map(|()| collected)
    }

    /// For limit messages: what counts besides the path.
    fn and_references(&self) -> &'static str {
        if self.collected.is_some() {
            " and those its kustomizations reference"
        } else {
            ""
        }
    }

    fn link_target(&self, oid: Oid) -> Result<String, SnapshotError> {
        let blob = self.repo.find_blob(oid).map_err(corrupt)?;
        Ok(String::from_utf8_lossy(blob.content()).into_owned())
    }

    fn note_outside(&mut self, resolved: &[String]) {
        if !resolved.starts_with(&self.root_parts) {
            self.out.read_outside.push(resolved.join("/"));
        }
    }

    fn add_file(&mut self, relative: &str, oid: Oid) -> Result<(), SnapshotError> {
        if self.count >= self.limits.max_files {
            return Err(SnapshotError::Limit(format!(
                "more than {} files under the path{}",
                self.limits.max_files,
                self.and_references()
            )));
        }
        let blob = self.repo.find_blob(oid).map_err(corrupt)?;
        let size = blob.size();
        if size > self.limits.max_file_bytes {
            return Err(SnapshotError::Limit(format!(
                "file `{relative}` is {size} bytes, over the limit of {} bytes",
                self.limits.max_file_bytes
            )));
        }
        self.total += size;
        if self.total > self.limits.max_total_bytes {
            return Err(SnapshotError::Limit(format!(
                "the files under the path{} exceed {} bytes in total",
                self.and_references(),
                self.limits.max_total_bytes
            )));
        }
        self.count += 1;
        let into = match &mut self.collected {
            Some(outside) => outside,
            None => &mut self.out.files,
        };
        into.insert(relative.to_string(), blob.content().to_vec());
        Ok(())
    }
}

fn corrupt(error: git2::Error) -> SnapshotError {
    SnapshotError::Corrupt(error.message().to_string())
}

/// Whether anything under any of `paths` differs between two commits. Equal
/// tree ids mean equal content, so this reads a handful of tree objects, not
/// the files.
pub fn changed(
    repo: &Repository,
    old: Oid,
    new: Oid,
    paths: &[String],
) -> Result<bool, SnapshotError> {
    if old == new {
        return Ok(false);
    }
    let old_tree = repo
        .find_commit(old)
        .and_then(|c| c.tree())
        .map_err(corrupt)?;
    let new_tree = repo
        .find_commit(new)
        .and_then(|c| c.tree())
        .map_err(corrupt)?;
    for path in paths {
        let parts = normalize(path)?;
        if parts.is_empty() {
            if old_tree.id() != new_tree.id() {
                return Ok(true);
            }
            continue;
        }
        let joined = parts.join("/");
        let id = |tree: &Tree<'_>| {
            tree.get_path(std::path::Path::new(&joined))
                .ok()
                .map(|e| e.id())
        };
        if id(&old_tree) != id(&new_tree) {
            return Ok(true);
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn paths_normalise_and_must_not_escape() {
        assert_eq!(normalize("").unwrap(), parts(&[]));
        assert_eq!(normalize("./apps//web/").unwrap(), parts(&["apps", "web"]));
        for bad in ["../etc", "apps/../../x", "/etc/passwd", "apps/.."] {
            assert!(
                matches!(normalize(bad), Err(SnapshotError::Escapes { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn symlink_targets_resolve_inside_the_repository_only() {
        let dir = parts(&["apps", "web"]);
        assert_eq!(
            resolve_link(&dir, "../shared/base.yaml", "apps/web/base.yaml").unwrap(),
            parts(&["apps", "shared", "base.yaml"])
        );
        assert_eq!(
            resolve_link(&dir, "../../common", "apps/web/common").unwrap(),
            parts(&["common"])
        );
        assert!(resolve_link(&dir, "../../../etc/passwd", "x").is_err());
        assert!(resolve_link(&dir, "/etc/passwd", "x").is_err());
    }
}
