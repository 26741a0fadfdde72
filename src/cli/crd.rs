//! `windlass crd`: prints the Application CustomResourceDefinition, generated
//! from the Rust types in `spec.rs`. `deploy/crds/` holds the same text; a
//! test fails when it is stale.

use std::io::Write;

use crate::spec::Application;

use super::ExitStatus;

pub fn run(out: &mut dyn Write) -> anyhow::Result<ExitStatus> {
    out.write_all(Application::crd_yaml().as_bytes())?;
    Ok(ExitStatus::Success)
}
