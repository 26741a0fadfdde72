//! Plain manifests: which files are read, and `.windlassignore`.
//!
//! ```text
//!   tree.files() ──.windlassignore──► kept ──.yaml/.yml/.json, not hidden──► manifest files
//! ```
//!
//! A plain directory is every `.yaml`, `.yml` and `.json` file in it, at any
//! depth, read in bytewise path order and then document order. Files and
//! folders whose name starts with `.` (`.github/`, `.vscode/`) are not
//! manifests. Plain files are never templated: a literal `{{ ... }}` passes
//! through untouched.
//!
//! `.windlassignore` at the root of the tree uses gitignore syntax (`#`
//! comments, `!` negation, `dir/` for folders, `**`), matched against paths
//! relative to the root. It applies to charts too: an ignored file is never
//! read.

use ignore::gitignore::{Gitignore, GitignoreBuilder};

use super::Error;

/// The ignore file's name.
pub const IGNORE_FILE: &str = ".windlassignore";

/// Compiled `.windlassignore` rules.
pub(crate) struct IgnoreRules(Option<Gitignore>);

impl IgnoreRules {
    /// No rules: nothing is ignored.
    pub fn none() -> IgnoreRules {
        IgnoreRules(None)
    }

    pub fn parse(text: &str) -> Result<IgnoreRules, Error> {
        let mut builder = GitignoreBuilder::new(".");
        for (number, line) in text.lines().enumerate() {
            builder
                .add_line(None, line)
                .map_err(|error| Error::Ignore {
                    line: number + 1,
                    reason: error.to_string(),
                })?;
        }
        let rules = builder.build().map_err(|error| Error::Ignore {
            line: 0,
            reason: error.to_string(),
        })?;
        Ok(IgnoreRules(Some(rules)))
    }

    /// Whether `path` (relative, `/`-separated) or a folder above it is
    /// ignored.
    pub fn is_ignored(&self, path: &str) -> bool {
        match &self.0 {
            None => false,
            Some(rules) => rules.matched_path_or_any_parents(path, false).is_ignore(),
        }
    }
}

/// Whether a (kept) file is a plain manifest.
pub(crate) fn is_manifest(path: &str) -> bool {
    let hidden = path.split('/').any(|part| part.starts_with('.'));
    !hidden && (path.ends_with(".yaml") || path.ends_with(".yml") || path.ends_with(".json"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gitignore_syntax_against_relative_paths() {
        let rules = IgnoreRules::parse(
            "# comment\n*.tmp.yaml\nscratch/\n/top-only.yaml\ndocs/**/*.yaml\n!keep.tmp.yaml\n",
        )
        .unwrap();
        for ignored in [
            "a.tmp.yaml",
            "deep/b.tmp.yaml",
            "scratch/x.yaml",
            "deep/scratch/y.yaml",
            "top-only.yaml",
            "docs/a/b/c.yaml",
        ] {
            assert!(rules.is_ignored(ignored), "{ignored}");
        }
        for kept in [
            "keep.tmp.yaml",
            "deployment.yaml",
            "deep/top-only.yaml",
            "docs.yaml",
            "scratchpad.yaml",
        ] {
            assert!(!rules.is_ignored(kept), "{kept}");
        }
        assert!(!IgnoreRules::none().is_ignored("anything.yaml"));
    }

    #[test]
    fn manifests_are_yaml_and_json_outside_hidden_folders() {
        for yes in ["a.yaml", "b/c.yml", "d.json", "x/y/z.yaml"] {
            assert!(is_manifest(yes), "{yes}");
        }
        for no in [
            "README.md",
            ".github/workflows/ci.yaml",
            "a/.hidden.yaml",
            "Chart.lock",
            "yaml",
        ] {
            assert!(!is_manifest(no), "{no}");
        }
    }
}
