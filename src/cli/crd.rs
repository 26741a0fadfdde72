//! `windlass crd`: prints windlass's CustomResourceDefinitions (Application,
//! then Preview), generated from the Rust types in `spec.rs`. `deploy/crds/`
//! holds the same text, one file each; tests fail when it is stale.

use std::io::Write;

use crate::spec::{Application, Preview};

use super::ExitStatus;

pub fn run(out: &mut dyn Write) -> anyhow::Result<ExitStatus> {
    out.write_all(Application::crd_yaml().as_bytes())?;
    out.write_all(b"---\n")?;
    out.write_all(Preview::crd_yaml().as_bytes())?;
    Ok(ExitStatus::Success)
}
