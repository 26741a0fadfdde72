//! windlass: a GitOps reconciler for Kubernetes.
//!
//! ```text
//!   source ──► render ──► plan ──► apply / prune ──► health ──► record revision
//! ```
//!
//! The same engine serves the CLI (`windlass render | diff | sync | ...`) and the
//! in-cluster controller. This crate grows one module per concern (see
//! `../shared/DESIGN.md` §6); each module's doc says what flows in and out.
//!
//! - [`cluster`]: how windlass connects to a Kubernetes API server and what it
//!   requires of one.
//! - [`source`]: git repositories → resolved commits and snapshots of files
//!   (mirror cache, auth, refs, change detection).
//! - [`render`]: a directory of manifests or a chart, an environment and
//!   values → an ordered, checked set of objects with digests.
//! - [`identity`]: the labels and annotations that mark an application's
//!   objects (used by `sync` and `history` alike).
//! - [`spec`]: the `Application` CRD types, its condition types and reasons.
//! - [`history`]: revision records (model, pure policy over their headers,
//!   storage as Secrets). Uses `identity` and `cluster`, never `sync`.
//! - [`sync`]: plan, apply, prune, delete, health, the per-application lock,
//!   and the engine that drives one application end to end (reaches
//!   `history` only through its public API).
//! - [`notify`]: notifications (webhook, Slack, Teams, GitHub/GitLab commit
//!   statuses) from the events the reconcile reports; deliveries run in the
//!   background, never holding a reconcile up.
//! - [`preview`]: pull-request previews: a `Preview` generates one
//!   namespace and one restricted Application per matching ref.
//! - [`controller`]: the reconcile loop; its decisions are pure
//!   (`controller::policy`, `controller::status`, `controller::windows`).
//! - [`cli`]: the command-line verbs; the binary in `main.rs` only parses and
//!   dispatches to them.
//!
//! ```text
//!   cli ──► sync::engine ◄── controller
//!              │  ├─► render, source
//!              │  └─► sync::{plan, apply, delete, prune, lock, …} ─► identity, cluster
//!              └────► history ─────────────────────────────────────► identity, cluster
//! ```

#![deny(unsafe_code)]

pub mod cli;
pub mod cluster;
pub mod controller;
pub mod history;
pub mod identity;
pub mod notify;
pub mod preview;
pub mod render;
pub mod source;
pub mod spec;
pub mod sync;
