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
//! [`order`] (phases), [`diff`] (normalisation and masked diffs), [`health`]
//! (per-kind verdicts), [`prune`] (guards, and why an object is kept),
//! [`delete`] (the waves deletion goes in), [`drift`] (what differs from the
//! applied revision, and who changed it). The edges: [`api`] (one object's
//! requests), [`lock`] (one writer per application, a Lease), [`kinds`]
//! (discovery), [`plan`], [`apply`], and [`engine`], which records revisions
//! through `history`'s public API (one LIST of records per sync).

pub mod api;
pub mod apply;
pub mod delete;
pub mod diff;
pub mod drift;
pub mod engine;
pub mod health;
pub mod ignore;
pub mod kinds;
pub mod lock;
pub mod order;
pub mod plan;
pub mod prune;
pub mod restrict;
