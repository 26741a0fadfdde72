//! Revision history: one record per sync that changed something.
//!
//! ```text
//!   sync ──► RevisionRecord (pending) ──► apply ──► RevisionRecord (deployed | failed)
//!                     │                                      │
//!                     └──────── store: Secrets in the application's namespace ◄──┘
//! ```
//!
//! [`record`] is the model and its encoding (pure); [`policy`] answers every
//! question about the history from the record headers one LIST returns
//! (pure); [`store`] reads and writes the Secrets. This room uses
//! `identity` and `cluster`, never `sync`.

pub mod policy;
pub mod record;
pub mod store;

pub use policy::{History, RevisionHeader};
pub use record::{RevisionRecord, RevisionStatus};
pub use store::{RevisionStore, StoreError};
