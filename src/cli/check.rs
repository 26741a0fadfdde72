//! `windlass check`: is this cluster reachable and fit for windlass?
//!
//! Like `flux check --pre`: each check prints one line; the verb exits 0 when
//! all pass and 1 when one fails. It writes nothing to the cluster (the apply
//! check is a server-side dry-run).

use std::io::Write;

use anyhow::bail;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::api::{Patch, PatchParams};

use super::{ExitStatus, GlobalArgs};
use crate::cluster::{self, MINIMUM_KUBERNETES};

/// The field manager windlass applies with.
const FIELD_MANAGER: &str = "windlass";

#[derive(Debug, clap::Args)]
pub struct Args {}

pub async fn run(
    global: &GlobalArgs,
    _args: &Args,
    out: &mut impl Write,
) -> anyhow::Result<ExitStatus> {
    let connection = cluster::connect(&global.cluster_options()).await?;
    let context = connection
        .context
        .as_deref()
        .map(|c| format!(" (context {c})"))
        .unwrap_or_default();
    writeln!(out, "[ok]   config     {}{context}", connection.source)?;

    let info = connection.server_version().await?;
    writeln!(
        out,
        "[ok]   api server {} answers: Kubernetes {}",
        connection.server, info.git_version
    )?;

    let mut failed = 0;
    match info.version {
        Some(version) if version.is_supported() => writeln!(
            out,
            "[ok]   version    {version} is at least the minimum {MINIMUM_KUBERNETES}"
        )?,
        Some(version) => {
            failed += 1;
            writeln!(
                out,
                "[fail] version    {version} is older than the minimum {MINIMUM_KUBERNETES}; \
                 upgrade the cluster"
            )?
        }
        None => {
            failed += 1;
            writeln!(
                out,
                "[fail] version    cannot read the server's version `{}`",
                info.git_version
            )?
        }
    }

    let namespace = global
        .namespace
        .clone()
        .unwrap_or_else(|| connection.default_namespace.clone());
    match server_side_apply_dry_run(&connection.client, &namespace).await {
        Ok(()) => writeln!(
            out,
            "[ok]   apply      server-side apply dry-run accepted in namespace {namespace} \
             (field manager {FIELD_MANAGER})"
        )?,
        Err(error) => {
            failed += 1;
            writeln!(out, "[fail] apply      {error:#}")?
        }
    }

    if failed == 0 {
        writeln!(out, "all checks passed")?;
        Ok(ExitStatus::Success)
    } else {
        writeln!(out, "{failed} check(s) failed")?;
        Ok(ExitStatus::Attention)
    }
}

/// Server-side applies a small ConfigMap with dry-run: proves that the
/// credentials may write in the namespace and that the server speaks
/// server-side apply, without writing anything.
async fn server_side_apply_dry_run(client: &kube::Client, namespace: &str) -> anyhow::Result<()> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let probe = serde_json::json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": { "name": "windlass-check" },
        "data": { "purpose": "windlass check (dry-run, never stored)" },
    });
    let params = PatchParams::apply(FIELD_MANAGER).dry_run();
    match api
        .patch("windlass-check", &params, &Patch::Apply(&probe))
        .await
    {
        Ok(_) => Ok(()),
        Err(error) => bail!(
            "server-side apply dry-run in namespace {namespace} was refused: {}",
            cluster::explain(&error)
        ),
    }
}
