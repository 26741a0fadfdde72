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
//! - `LoadRestrictionsRootOnly`: a kustomization reads files only under its
//!   own directory (other kustomizations are referenced as directories).
//! - No exec or container plugins (none of `--enable-alpha-plugins`,
//!   `--enable-exec`); Helm chart inflation (`--enable-helm`) only when
//!   [`ExternalTools::kustomize_helm`] is set, with windlass's helm binary.
//! - Environment `prod` selects `overlays/prod`; naming an environment that
//!   has no overlay is an error listing those there are (a typo must not
//!   deploy the base). Kustomize takes no values or `--set`.

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

    let workspace = Workspace::new(Tool::Kustomize)?;
    workspace.materialise(Tool::Kustomize, tree, "tree", &input.limits)?;
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
        cwd: "tree",
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
}
