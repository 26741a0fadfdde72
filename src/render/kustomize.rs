//! The Kustomize engine: `kustomize build` on the snapshot.
//!
//! ```text
//!   FileTree ─► kustomization_dir (environment → overlays/<env>) ─► Workspace/tree
//!     ─► kustomize build --load-restrictor LoadRestrictionsRootOnly <dir>
//!     ─► stdout ─► windlass's YAML loader ─► [ToolDocument]
//! ```
//!
//! - The whole tree is written to a temporary directory and kustomize runs
//!   inside it, so `resources: [../../base]` works when the tree holds the
//!   base (a tree rooted above the application; see [`render_kustomize_in`]).
//! - An application whose path is an overlay (`overlays/prod`, with
//!   `resources: [../../base]`) reads the base from outside its path, as
//!   in Argo CD and Flux: [`references`] says what each kustomization names
//!   (`resources`, `bases`, `components`, `generators`, `transformers`;
//!   remote URLs left to kustomize), [`gather_outside`] follows them out of
//!   the path, transitively, and the tree hands the files over
//!   ([`FileTree::kustomize_outside`](super::FileTree::kustomize_outside):
//!   the git snapshot within its limits, a local directory within its
//!   checkout). The application is written at its repository path and
//!   those files at theirs, so `../../base` resolves as in the checkout.
//!   An entry climbing above the repository's root is an error naming the
//!   kustomization file and the entry.
//! - `LoadRestrictionsRootOnly`: a kustomization reads files only under its
//!   own directory (other kustomizations are referenced as directories).
//! - No exec or container plugins (none of `--enable-alpha-plugins`,
//!   `--enable-exec`); Helm chart inflation (`--enable-helm`) only when
//!   [`ExternalTools::kustomize_helm`] is set, with windlass's helm binary.
//! - Environment `prod` selects `overlays/prod`; naming an environment that
//!   has no overlay is an error listing those there are (a typo must not
//!   deploy the base). Kustomize takes no values or `--set`.

use std::collections::BTreeMap;
use std::ffi::OsString;

use super::RenderInput;
use super::detect::KUSTOMIZATION_FILES;
use super::tool::{
    self, ExternalError, ExternalTools, Invocation, Tool, ToolDocument, Workspace,
    check_environment,
};

/// Renders the kustomization at the root of `input.tree` (or the overlay
/// the environment selects).
pub fn render_kustomize(
    input: &RenderInput<'_>,
    tools: &ExternalTools,
) -> Result<Vec<ToolDocument>, ExternalError> {
    render_kustomize_in(input, tools, "")
}

/// Renders the kustomization in `app_dir` (a `/`-separated directory of the
/// tree, `""` for its root): for trees rooted above the application, so that
/// `../base` is inside the tree.
pub fn render_kustomize_in(
    input: &RenderInput<'_>,
    tools: &ExternalTools,
    app_dir: &str,
) -> Result<Vec<ToolDocument>, ExternalError> {
    tool::refuse_values(input)?;
    let binary = tools.paths.get(Tool::Kustomize)?;
    let tree = input.tree;
    let files = tree.files().map_err(|error| ExternalError::Files {
        tree: tree.describe(),
        error,
    })?;
    let dir = kustomization_dir(
        &tree.describe(),
        &files,
        app_dir,
        input.environment.as_deref(),
    )?;

    let outside = tree
        .kustomize_outside()
        .map_err(|error| ExternalError::Files {
            tree: tree.describe(),
            error,
        })?;

    // The application at its path in the repository, what it references
    // outside at theirs: `../../base` resolves as in the checkout.
    let workspace = Workspace::new(Tool::Kustomize)?;
    let cwd = if outside.app_path.is_empty() {
        "tree".to_string()
    } else {
        format!("tree/{}", outside.app_path)
    };
    let mut written = 0;
    workspace.materialise_counted(Tool::Kustomize, tree, &cwd, &input.limits, &mut written)?;
    workspace.write_files(
        Tool::Kustomize,
        &tree.describe(),
        &outside.files,
        "tree",
        &input.limits,
        &mut written,
    )?;
    let mut args: Vec<OsString> = vec![
        "build".into(),
        "--load-restrictor".into(),
        "LoadRestrictionsRootOnly".into(),
    ];
    if tools.kustomize_helm {
        let helm = tools.paths.get(Tool::Helm)?;
        args.push("--enable-helm".into());
        args.push("--helm-command".into());
        args.push(helm.into());
        if let Some(capabilities) = &input.capabilities {
            if let Some(version) = &capabilities.kube_version {
                args.push("--helm-kube-version".into());
                args.push(version.into());
            }
            for api_version in &capabilities.api_versions {
                args.push("--helm-api-versions".into());
                args.push(api_version.into());
            }
        }
    }
    args.push(dir.clone().into());
    let command = format!("kustomize build {dir}");
    let output = tool::run(&Invocation {
        tool: Tool::Kustomize,
        binary,
        args,
        command: command.clone(),
        workspace: &workspace,
        cwd: &cwd,
        timeout: tools.timeout,
        max_output_bytes: tools.output_limit(&input.limits),
    })?;
    drop(workspace);
    let text = tool::output_text(output, &command)?;
    tool::parse_documents(&text, &command, false, 1, &input.limits)
}

/// The directory to build, relative to the tree's root (`.` for the root):
/// `overlays/<environment>` under `app_dir` when an environment is given,
/// else `app_dir` itself. It must hold a kustomization file.
pub fn kustomization_dir(
    tree: &str,
    files: &[String],
    app_dir: &str,
    environment: Option<&str>,
) -> Result<String, ExternalError> {
    let app_dir = app_dir.trim_matches('/');
    let prefix = if app_dir.is_empty() {
        String::new()
    } else {
        format!("{app_dir}/")
    };
    let has_kustomization = |dir: &str| {
        KUSTOMIZATION_FILES
            .iter()
            .any(|name| files.iter().any(|f| *f == format!("{dir}{name}")))
    };
    let overlays_prefix = format!("{prefix}overlays/");
    let overlays: Vec<&str> = {
        let mut names: Vec<&str> = files
            .iter()
            .filter_map(|f| f.strip_prefix(&overlays_prefix))
            .filter_map(|rest| rest.split_once('/'))
            .filter(|(_, name)| KUSTOMIZATION_FILES.contains(name))
            .map(|(overlay, _)| overlay)
            .collect();
        names.dedup();
        names
    };
    let listed = || {
        if overlays.is_empty() {
            "none".to_string()
        } else {
            overlays.join(", ")
        }
    };
    match environment {
        Some(environment) => {
            check_environment(environment)?;
            let dir = format!("{overlays_prefix}{environment}");
            if has_kustomization(&format!("{dir}/")) {
                Ok(dir)
            } else {
                Err(ExternalError::UnknownEnvironment {
                    tree: tree.to_string(),
                    environment: environment.to_string(),
                    expected: format!("{dir}/kustomization.yaml"),
                    available: listed(),
                })
            }
        }
        None if has_kustomization(&prefix) => Ok(if app_dir.is_empty() {
            ".".to_string()
        } else {
            app_dir.to_string()
        }),
        None => Err(ExternalError::NoKustomization {
            tree: tree.to_string(),
            dir: if app_dir.is_empty() { "." } else { app_dir }.to_string(),
            hint: if overlays.is_empty() {
                String::new()
            } else {
                format!(" (choose an environment: {})", listed())
            },
        }),
    }
}

/// Whether `tree` is a Kustomize application at `app_dir`, for callers that
/// already listed the files.
pub fn is_kustomization_root(files: &[String], app_dir: &str) -> bool {
    kustomization_dir("", files, app_dir, None).is_ok()
}

// --- references outside the application ---------------------------------

/// The fields of a kustomization whose entries may name other directories.
const REFERENCE_FIELDS: [&str; 5] = [
    "resources",
    "bases",
    "components",
    "generators",
    "transformers",
];

/// One path a kustomization file names through [`REFERENCE_FIELDS`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// The kustomization file, repository-relative.
    pub file: String,
    /// `resources`, `components`...
    pub field: &'static str,
    /// The entry as written.
    pub entry: String,
    /// What it names, repository-relative and normalised (`""`: the root).
    pub path: String,
}

/// Why the directories a kustomization references could not be gathered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    #[error(
        "`{file}`: {field} entry `{entry}` points outside the repository (outside a git \
         checkout: outside the directory rendered); windlass reads only the repository"
    )]
    Escapes {
        file: String,
        field: &'static str,
        entry: String,
    },

    #[error("`{file}`: {field} entry `{entry}`: {reason}")]
    Unreadable {
        file: String,
        field: &'static str,
        entry: String,
        reason: String,
    },
}

/// Whether a kustomization entry names something remote (kustomize fetches
/// those; windlass's kustomize cannot, and reports it).
fn is_remote(entry: &str) -> bool {
    entry.contains("://")
        || entry.starts_with("git@")
        || entry.starts_with("git::")
        || entry.contains("?ref=")
        || entry.contains("?version=")
        || ["github.com/", "gitlab.com/", "bitbucket.org/"]
            .iter()
            .any(|host| entry.starts_with(host))
}

/// The paths the kustomization `file` (repository-relative) names through
/// `resources`, `bases`, `components`, `generators` and `transformers`,
/// normalised against its directory. Remote entries and inline generator
/// configurations are left out; so is everything of a file that does not
/// parse (kustomize reports that itself). An entry that climbs above the
/// repository's root, or is absolute, is an error naming the file and the
/// entry.
pub fn references(file: &str, text: &str) -> Result<Vec<Reference>, ReferenceError> {
    let Ok(Some(serde_json::Value::Object(map))) =
        serde_saphyr::from_str::<Option<serde_json::Value>>(text)
    else {
        return Ok(Vec::new());
    };
    let dir: Vec<&str> = match file.rsplit_once('/') {
        Some((dir, _)) => dir.split('/').collect(),
        None => Vec::new(),
    };
    let mut found = Vec::new();
    for field in REFERENCE_FIELDS {
        let Some(serde_json::Value::Array(entries)) = map.get(field) else {
            continue;
        };
        for entry in entries.iter().filter_map(serde_json::Value::as_str) {
            let entry = entry.trim();
            if entry.is_empty() || entry.contains('\n') || is_remote(entry) {
                continue;
            }
            let escapes = || ReferenceError::Escapes {
                file: file.to_string(),
                field,
                entry: entry.to_string(),
            };
            if entry.starts_with('/') {
                return Err(escapes());
            }
            let mut parts = dir.clone();
            for part in entry.split('/') {
                match part {
                    "" | "." => {}
                    ".." => {
                        parts.pop().ok_or_else(escapes)?;
                    }
                    other => parts.push(other),
                }
            }
            found.push(Reference {
                file: file.to_string(),
                field,
                entry: entry.to_string(),
                path: parts.join("/"),
            });
        }
    }
    Ok(found)
}

/// Files of a repository that a Kustomize application reads from outside
/// its own path (`resources: [../../base]`), keyed repository-relative.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutsideFiles {
    /// The application's path in the repository (`""`: its root, or not
    /// known: then `files` is empty).
    pub app_path: String,
    /// Repository path → content, none of them under `app_path`.
    pub files: RepositoryFiles,
}

/// Files of a repository: path → content.
pub type RepositoryFiles = BTreeMap<String, Vec<u8>>;

/// Whether repository path `path` is `dir` or below it.
fn is_under(path: &str, dir: &str) -> bool {
    dir.is_empty()
        || path == dir
        || path
            .strip_prefix(dir)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// Gathers what the kustomizations of an application reference outside its
/// path, transitively: `kustomizations` are the application's kustomization
/// files (repository path, text); `load(path)` reads the files under a
/// repository directory (or the file itself), keyed repository-relative,
/// empty when nothing is there, within the caller's limits. Each path is
/// loaded once, so reference loops end.
pub fn gather_outside(
    app_path: &str,
    kustomizations: Vec<(String, String)>,
    load: &mut dyn FnMut(&str) -> Result<RepositoryFiles, String>,
) -> Result<OutsideFiles, ReferenceError> {
    let app_path = app_path.trim_matches('/');
    let mut outside = OutsideFiles {
        app_path: app_path.to_string(),
        files: BTreeMap::new(),
    };
    let mut loaded: Vec<String> = Vec::new();
    let mut queue = kustomizations;
    while let Some((file, text)) = queue.pop() {
        for reference in references(&file, &text)? {
            let path = &reference.path;
            // Under the application (all of the repository when it is at
            // the root), or under a directory already loaded: there.
            if is_under(path, app_path) || loaded.iter().any(|dir| is_under(path, dir)) {
                continue;
            }
            let files = load(path).map_err(|reason| ReferenceError::Unreadable {
                file: reference.file.clone(),
                field: reference.field,
                entry: reference.entry.clone(),
                reason,
            })?;
            loaded.push(path.clone());
            for (name, bytes) in files {
                if is_under(&name, app_path) || outside.files.contains_key(&name) {
                    continue;
                }
                let base = name.rsplit('/').next().unwrap_or(&name);
                if KUSTOMIZATION_FILES.contains(&base) {
                    queue.push((name.clone(), String::from_utf8_lossy(&bytes).into_owned()));
                }
                outside.files.insert(name, bytes);
            }
        }
    }
    Ok(outside)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(paths: &[&str]) -> Vec<String> {
        let mut files: Vec<String> = paths.iter().map(|p| p.to_string()).collect();
        files.sort();
        files
    }

    #[test]
    fn the_environment_selects_its_overlay() {
        let tree = files(&[
            "base/kustomization.yaml",
            "overlays/prod/kustomization.yaml",
            "overlays/staging/Kustomization",
            "overlays/staging/patch.yaml",
        ]);
        assert_eq!(
            kustomization_dir("t", &tree, "", Some("prod")).unwrap(),
            "overlays/prod"
        );
        assert_eq!(
            kustomization_dir("t", &tree, "", Some("staging")).unwrap(),
            "overlays/staging"
        );
        let error = kustomization_dir("t", &tree, "", Some("qa")).unwrap_err();
        assert_eq!(
            error.to_string(),
            "t: no environment `qa` (no overlays/qa/kustomization.yaml); environments: prod, \
             staging"
        );
        let error = kustomization_dir("t", &tree, "", None).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("no kustomization.yaml in `.` (choose an environment: prod, staging)"),
            "{error}"
        );
        assert!(matches!(
            kustomization_dir("t", &tree, "", Some("../base")),
            Err(ExternalError::BadEnvironmentName { .. })
        ));
    }

    #[test]
    fn without_an_environment_the_root_is_built() {
        let tree = files(&["kustomization.yml", "deployment.yaml"]);
        assert_eq!(kustomization_dir("t", &tree, "", None).unwrap(), ".");
        let error = kustomization_dir("t", &tree, "", Some("prod")).unwrap_err();
        assert!(error.to_string().contains("environments: none"), "{error}");
    }

    #[test]
    fn an_application_below_the_tree_root() {
        let tree = files(&[
            "apps/web/base/kustomization.yaml",
            "apps/web/overlays/prod/kustomization.yaml",
            "apps/web/kustomization.yaml",
        ]);
        assert_eq!(
            kustomization_dir("t", &tree, "apps/web", Some("prod")).unwrap(),
            "apps/web/overlays/prod"
        );
        assert_eq!(
            kustomization_dir("t", &tree, "apps/web/", None).unwrap(),
            "apps/web"
        );
        assert!(is_kustomization_root(&tree, "apps/web/base"));
        assert!(!is_kustomization_root(&tree, "apps"));
    }

    fn paths(references: &[Reference]) -> Vec<(&str, &str)> {
        references
            .iter()
            .map(|r| (r.field, r.path.as_str()))
            .collect()
    }

    #[test]
    fn references_are_normalised_against_the_kustomization() {
        let text = "resources:\n  - deployment.yaml\n  - ../../base\n  - ./../x/../shared/\n  \
                    - https://github.com/org/repo/base?ref=v1\n  - github.com/org/repo//base\n  \
                    - git@github.com:org/repo.git\nbases: [../../legacy]\ncomponents:\n  \
                    - ../../components/x\ngenerators:\n  - gen.yaml\n  - |\n    kind: X\n    \
                    metadata: {name: y}\ntransformers: [../../transformers]\n\
                    patches:\n  - path: ../../not-a-reference.yaml\n";
        let found = references("overlays/prod/kustomization.yaml", text).unwrap();
        assert_eq!(
            paths(&found),
            [
                ("resources", "overlays/prod/deployment.yaml"),
                ("resources", "base"),
                ("resources", "overlays/shared"),
                ("bases", "legacy"),
                ("components", "components/x"),
                ("generators", "overlays/prod/gen.yaml"),
                ("transformers", "transformers"),
            ]
        );
        assert_eq!(found[1].entry, "../../base");
        assert_eq!(found[1].file, "overlays/prod/kustomization.yaml");
        // At the repository's root.
        let found = references("kustomization.yaml", "resources: [base, ./a.yaml]\n").unwrap();
        assert_eq!(
            paths(&found),
            [("resources", "base"), ("resources", "a.yaml")]
        );
        // What kustomize itself will complain about is left to it.
        assert_eq!(references("k.yaml", "resources: [\n").unwrap(), []);
        assert_eq!(references("k.yaml", "- a\n").unwrap(), []);
        assert_eq!(references("k.yaml", "").unwrap(), []);
    }

    #[test]
    fn a_reference_leaving_the_repository_is_refused_by_name() {
        let error = references(
            "apps/web/kustomization.yaml",
            "resources:\n  - ../../../elsewhere\n",
        )
        .unwrap_err();
        assert_eq!(
            error,
            ReferenceError::Escapes {
                file: "apps/web/kustomization.yaml".into(),
                field: "resources",
                entry: "../../../elsewhere".into(),
            }
        );
        assert!(
            error.to_string().starts_with(
                "`apps/web/kustomization.yaml`: resources entry `../../../elsewhere` points \
                 outside the repository"
            ),
            "{error}"
        );
        let error = references("kustomization.yaml", "components: [/etc/x]\n").unwrap_err();
        assert!(
            error.to_string().contains("components entry `/etc/x`"),
            "{error}"
        );
    }

    /// A repository in memory, for [`gather_outside`]: `load` answers from it
    /// and records what it was asked.
    fn gather(
        repo: &[(&str, &str)],
        app_path: &str,
    ) -> (Result<OutsideFiles, ReferenceError>, Vec<String>) {
        let files: BTreeMap<String, Vec<u8>> = repo
            .iter()
            .map(|(p, t)| (p.to_string(), t.as_bytes().to_vec()))
            .collect();
        let prefix = format!("{app_path}/");
        let kustomizations = files
            .iter()
            .filter(|(p, _)| p.starts_with(&prefix))
            .filter(|(p, _)| KUSTOMIZATION_FILES.contains(&p.rsplit('/').next().unwrap()))
            .map(|(p, t)| (p.clone(), String::from_utf8(t.clone()).unwrap()))
            .collect();
        let mut asked = Vec::new();
        let mut load = |path: &str| {
            asked.push(path.to_string());
            if path == "unreadable" {
                return Err("more than 3 files".to_string());
            }
            Ok(files
                .iter()
                .filter(|(p, _)| is_under(p, path))
                .map(|(p, t)| (p.clone(), t.clone()))
                .collect())
        };
        let result = gather_outside(app_path, kustomizations, &mut load);
        asked.sort();
        (result, asked)
    }

    #[test]
    fn gathering_follows_references_transitively_once() {
        let repo = [
            (
                "base/kustomization.yaml",
                "resources: [cm.yaml, ../shared]\n",
            ),
            ("base/cm.yaml", "cm"),
            ("base/deep/patch.yaml", "p"),
            ("shared/kustomization.yaml", "resources: [../base]\n"), // a loop
            ("shared/s.yaml", "s"),
            ("components/x/kustomization.yaml", "kind: Component\n"),
            ("unrelated/u.yaml", "u"),
            (
                "overlays/prod/kustomization.yaml",
                "resources: [../../base, ../../missing]\ncomponents: [../../components/x]\n",
            ),
            (
                "overlays/staging/kustomization.yaml",
                "resources: [../../base]\n",
            ),
        ];
        let (outside, asked) = gather(&repo, "overlays");
        let outside = outside.unwrap();
        assert_eq!(outside.app_path, "overlays");
        assert_eq!(
            outside.files.keys().collect::<Vec<_>>(),
            [
                "base/cm.yaml",
                "base/deep/patch.yaml",
                "base/kustomization.yaml",
                "components/x/kustomization.yaml",
                "shared/kustomization.yaml",
                "shared/s.yaml",
            ]
        );
        // Each directory once; a missing one is asked for (and watched).
        assert_eq!(asked, ["base", "components/x", "missing", "shared"]);
    }

    #[test]
    fn gathering_keeps_the_application_out_and_names_failures() {
        // A reference to a directory holding the application: its own
        // files stay the application's.
        let repo = [
            ("apps/kustomization.yaml", "resources: [web/cm.yaml]\n"),
            ("apps/web/cm.yaml", "cm"),
            (
                "apps/web/overlays/prod/kustomization.yaml",
                "resources: [../../..]\n",
            ),
        ];
        let (outside, _) = gather(&repo, "apps/web");
        assert_eq!(
            outside.unwrap().files.keys().collect::<Vec<_>>(),
            ["apps/kustomization.yaml"]
        );
        // At the repository's root everything is inside: nothing is loaded.
        let (outside, asked) = gather(&[("kustomization.yaml", "resources: [base]\n")], "");
        assert_eq!(outside.unwrap(), OutsideFiles::default());
        assert!(asked.is_empty());

        let repo = [("app/kustomization.yaml", "resources: [../unreadable]\n")];
        let error = gather(&repo, "app").0.unwrap_err();
        assert_eq!(
            error.to_string(),
            "`app/kustomization.yaml`: resources entry `../unreadable`: more than 3 files"
        );
        let repo = [("app/kustomization.yaml", "resources: [../../x]\n")];
        assert!(matches!(
            gather(&repo, "app").0.unwrap_err(),
            ReferenceError::Escapes { .. }
        ));
    }
}
