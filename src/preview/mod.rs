//! Pull-request previews: a `Preview` turns every ref of a repository that
//! matches its pattern (`refs/pull/*/head`) into a namespace and a generated
//! Application, and removes both when the ref goes.
//!
//! ```text
//!   Preview ──► reconcile: list refs ──► plan ──► Namespace <preview>-pr-7 (labelled)
//!   (CRD)        (one listing per          │      Application <preview>-pr-7 (owned, pinned to
//!                 repository and interval) │        the commit, restricted to its namespace)
//!                                          └────► deletes: ref gone, ttl; then the namespace
//!   Application controller ──► renders, refuses objects outside the namespace, syncs, prunes
//! ```
//!
//! - [`naming`]: ref patterns, numbers, slugs, DNS-1123 names, placeholders (pure).
//! - [`plan`]: listed refs + existing previews → create, move, delete, wait, expire (pure).
//! - [`generate`]: a Preview and a live preview → the generated Application (pure).
//! - [`provider`]: GitHub, GitLab, Gitea: open pull requests, commit statuses.
//! - [`reconcile`]: the `Controller<Preview>` that does it; [`spawn`] starts it
//!   next to the Application controller.
//!
//! The generated Applications do the syncing: the Preview only decides which
//! exist and at which commit. Their `spec.restrictions` keep a pull request,
//! perhaps from a fork, inside its namespace (see `sync::restrict`).

pub mod generate;
pub mod naming;
pub mod plan;
pub mod provider;
pub mod reconcile;

pub use reconcile::{PreviewLoop, PreviewOptions, run, spawn};
