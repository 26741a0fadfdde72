//! One revision record: what a sync applied, from where, and how it ended.
//! Pure: the model, and its encoding into Secret payloads.
//!
//! ```text
//!   RevisionRecord ──JSON──gzip──► bytes ──split──► [chunk 0, chunk 1, …]   (≤ 700 KiB each)
//!                  ◄──────────────────────────────── join + sha256 check ◄──
//! ```
//!
//! A Secret holds at most 1 MiB, and a record carries the full rendered
//! manifests, so a large application's record is split across several
//! Secrets rather than refused: the first holds chunk 0 and says how many
//! there are and the sha256 of the whole; the others hold the rest. A
//! missing or altered chunk is detected when the record is read.

use std::io::{Read, Write};

use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::render::ObjectId;

/// The largest piece of a record one Secret holds (Secrets hold 1 MiB; the
/// rest is headroom for metadata).
pub const CHUNK_BYTES: usize = 700 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RevisionStatus {
    /// Written before the first apply write; a crash leaves it pending.
    Pending,
    Deployed,
    Failed,
    Superseded,
    RolledBack,
}

impl RevisionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RevisionStatus::Pending => "pending",
            RevisionStatus::Deployed => "deployed",
            RevisionStatus::Failed => "failed",
            RevisionStatus::Superseded => "superseded",
            RevisionStatus::RolledBack => "rolled-back",
        }
    }

    /// Applied and healthy (now, or before it was replaced).
    pub fn succeeded(self) -> bool {
        matches!(
            self,
            RevisionStatus::Deployed | RevisionStatus::Superseded | RevisionStatus::RolledBack
        )
    }

    pub fn parse(text: &str) -> Option<RevisionStatus> {
        [
            RevisionStatus::Pending,
            RevisionStatus::Deployed,
            RevisionStatus::Failed,
            RevisionStatus::Superseded,
            RevisionStatus::RolledBack,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }
}

/// Where the manifests came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "type")]
pub enum RecordSource {
    Git {
        /// Redacted repository URL.
        repo: String,
        reference: String,
        commit: String,
        path: String,
    },
    Directory {
        path: String,
    },
}

impl RecordSource {
    /// The commit, for git sources.
    pub fn commit(&self) -> Option<&str> {
        match self {
            RecordSource::Git { commit, .. } => Some(commit),
            RecordSource::Directory { .. } => None,
        }
    }
}

/// One object of the inventory.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct InventoryEntry {
    pub group: String,
    pub version: String,
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub name: String,
}

impl From<&ObjectId> for InventoryEntry {
    fn from(id: &ObjectId) -> InventoryEntry {
        InventoryEntry {
            group: id.group.clone(),
            version: id.version.clone(),
            kind: id.kind.clone(),
            namespace: id.namespace.clone(),
            name: id.name.clone(),
        }
    }
}

impl From<&InventoryEntry> for ObjectId {
    fn from(entry: &InventoryEntry) -> ObjectId {
        ObjectId {
            group: entry.group.clone(),
            version: entry.version.clone(),
            kind: entry.kind.clone(),
            namespace: entry.namespace.clone(),
            name: entry.name.clone(),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Outcome {
    pub created: usize,
    pub updated: usize,
    pub deleted: usize,
    pub unchanged: usize,
    /// Why it failed, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// How a revision's health check ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RecordedHealth {
    Healthy,
    Failed,
    TimedOut,
    /// `--no-wait`, or `sync.wait: false`.
    #[default]
    NotChecked,
}

impl RecordedHealth {
    pub fn as_str(self) -> &'static str {
        match self {
            RecordedHealth::Healthy => "healthy",
            RecordedHealth::Failed => "failed",
            RecordedHealth::TimedOut => "timed-out",
            RecordedHealth::NotChecked => "not-checked",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthSummary {
    pub state: RecordedHealth,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unhealthy: Vec<String>,
}

#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RevisionRecord {
    pub revision: u64,
    /// `<namespace>.<name>` of the application.
    pub app: String,
    pub status: RevisionStatus,
    pub started_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    /// `sync`, `rollback to 3`, ...
    pub description: String,
    /// Who or what started it: `cli:user@host`, `controller`.
    pub triggered_by: String,
    pub source: RecordSource,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    pub values_digest: String,
    pub manifest_digest: String,
    /// Exactly what was applied (identity labels included).
    pub manifests: Vec<Value>,
    pub inventory: Vec<InventoryEntry>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Outcome>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthSummary>,
    /// Set on a failed revision that an automatic rollback replaced: its
    /// commit and values are not synced again until a new commit arrives or
    /// the user forces it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub quarantined: bool,
}

// The manifests may hold Secrets: Debug shows how many, never what.
impl std::fmt::Debug for RevisionRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RevisionRecord")
            .field("revision", &self.revision)
            .field("app", &self.app)
            .field("status", &self.status)
            .field("description", &self.description)
            .field("source", &self.source)
            .field("manifests", &self.manifests.len())
            .field("inventory", &self.inventory.len())
            .field("outcome", &self.outcome)
            .finish_non_exhaustive()
    }
}

impl RevisionRecord {
    /// Whether it applied and passed its health check (now or before it was
    /// replaced).
    pub fn succeeded(&self) -> bool {
        self.status.succeeded()
    }

    /// The commit it came from, for git sources.
    pub fn commit(&self) -> Option<&str> {
        self.source.commit()
    }

    pub fn inventory_ids(&self) -> Vec<ObjectId> {
        self.inventory.iter().map(ObjectId::from).collect()
    }
}

/// The encoded record: chunks plus the digest of the whole.
#[derive(Clone, PartialEq, Eq)]
pub struct Encoded {
    pub chunks: Vec<Vec<u8>>,
    pub sha256: String,
}

// The chunks are the gzipped record (Secrets included): sizes only.
impl std::fmt::Debug for Encoded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sizes: Vec<usize> = self.chunks.iter().map(Vec::len).collect();
        f.debug_struct("Encoded")
            .field("chunk_bytes", &sizes)
            .field("sha256", &self.sha256)
            .finish()
    }
}

pub fn encode(record: &RevisionRecord) -> Encoded {
    let json = serde_json::to_vec(record).expect("a record serialises");
    let mut gzip = GzEncoder::new(Vec::new(), Compression::default());
    gzip.write_all(&json).expect("writing to memory");
    let bytes = gzip.finish().expect("writing to memory");
    let sha256 = hex(&Sha256::digest(&bytes));
    let chunks = bytes.chunks(CHUNK_BYTES).map(<[u8]>::to_vec).collect();
    Encoded { chunks, sha256 }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the record is damaged: {0}")]
pub struct Damaged(pub String);

pub fn decode(chunks: &[Vec<u8>], sha256: &str) -> Result<RevisionRecord, Damaged> {
    let bytes = chunks.concat();
    let actual = hex(&Sha256::digest(&bytes));
    if actual != sha256 {
        return Err(Damaged(format!(
            "its checksum is {actual}, the record says {sha256} (a part is missing or was altered)"
        )));
    }
    let mut json = Vec::new();
    GzDecoder::new(&bytes[..])
        .read_to_end(&mut json)
        .map_err(|e| Damaged(format!("not gzip: {e}")))?;
    serde_json::from_slice(&json).map_err(|e| Damaged(format!("not a revision record: {e}")))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record(manifests: Vec<Value>) -> RevisionRecord {
        RevisionRecord {
            revision: 3,
            app: "team-a.web".into(),
            status: RevisionStatus::Pending,
            started_at: "2026-11-23T10:00:00Z".into(),
            finished_at: None,
            description: "sync".into(),
            triggered_by: "cli:test".into(),
            source: RecordSource::Directory {
                path: "/srv/app".into(),
            },
            environment: Some("production".into()),
            values_digest: "v".into(),
            manifest_digest: "m".into(),
            manifests,
            inventory: vec![InventoryEntry {
                group: "".into(),
                version: "v1".into(),
                kind: "ConfigMap".into(),
                namespace: Some("team-a".into()),
                name: "c".into(),
            }],
            outcome: None,
            health: None,
            quarantined: false,
        }
    }

    #[test]
    fn a_record_round_trips_through_gzip() {
        let original = record(vec![json!({ "kind": "ConfigMap", "data": { "a": "1" } })]);
        let encoded = encode(&original);
        assert_eq!(encoded.chunks.len(), 1);
        assert_eq!(decode(&encoded.chunks, &encoded.sha256).unwrap(), original);
    }

    #[test]
    fn a_large_record_is_split_and_reassembled() {
        // Incompressible content: 3 MiB of pseudo-random hex in manifests.
        let mut state = 0x9e3779b97f4a7c15u64;
        let noise: String = (0..3 * 1024 * 1024)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                char::from_digit((state % 16) as u32, 16).unwrap()
            })
            .collect();
        let original = record(vec![
            json!({ "kind": "ConfigMap", "data": { "blob": noise } }),
        ]);
        let encoded = encode(&original);
        assert!(encoded.chunks.len() >= 2, "{} chunks", encoded.chunks.len());
        assert!(encoded.chunks.iter().all(|c| c.len() <= CHUNK_BYTES));
        assert_eq!(decode(&encoded.chunks, &encoded.sha256).unwrap(), original);

        let missing = &encoded.chunks[..encoded.chunks.len() - 1];
        let error = decode(missing, &encoded.sha256).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("a part is missing or was altered"),
            "{error}"
        );
    }

    #[test]
    fn debug_never_prints_manifests() {
        let original = record(vec![
            json!({ "kind": "Secret", "data": { "password": "aHVudGVyMg==" } }),
        ]);
        assert!(!format!("{original:?}").contains("aHVudGVyMg=="));
        assert!(!format!("{:?}", encode(&original)).contains("aHVudGVyMg=="));
    }

    #[test]
    fn statuses_have_the_names_history_prints() {
        assert_eq!(RevisionStatus::RolledBack.as_str(), "rolled-back");
        assert_eq!(
            RevisionStatus::parse("superseded"),
            Some(RevisionStatus::Superseded)
        );
        assert_eq!(
            serde_json::to_value(RevisionStatus::RolledBack).unwrap(),
            json!("rolled-back")
        );
    }
}
