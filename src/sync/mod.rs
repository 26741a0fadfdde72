//! The sync engine: make the cluster equal to the rendered desired state.
//!
//! ```text
//!   Rendered ──► plan ──────────────► Plan { create | update | unchanged | conflict | delete }
//!                 (discovery, GET live,        │
//!                  SSA dry-run, compare)       ▼
//!                                      apply: validation gate (every write dry-run first),
//!                                             phases (order), SSA as `windlass`,
//!                                             prune (guards), health wait
//! ```
//!
//! Pure decisions live in their own files and are unit-tested there:
//! [`identity`] (labels), [`order`] (phases), [`diff`] (normalisation and
//! masked diffs), [`health`] (per-kind verdicts), [`prune`] (guards),
//! [`drift`] (what differs from the applied revision, and who changed it).

pub mod api;
pub mod apply;
pub mod delete;
pub mod diff;
pub mod drift;
pub mod engine;
pub mod health;
pub mod kinds;
pub mod lock;
pub mod order;
pub mod plan;
pub mod prune;
