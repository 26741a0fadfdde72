//! Revision records stored as Secrets in the application's namespace.
//!
//! ```text
//!   Secret windlass.<app>.v<N>          type windlass.dev/revision.v1
//!     labels       windlass.dev/app, windlass.dev/revision: N, windlass.dev/status
//!     annotations  windlass.dev/chunks: K, windlass.dev/record-sha256
//!     data.record  chunk 0 (gzip JSON)
//!   Secret windlass.<app>.v<N>.<k>      chunk k (only for records over 700 KiB)
//!     labels       windlass.dev/app, windlass.dev/revision-part: N
//! ```
//!
//! Numbers are 1, 2, 3… per application, never reused: the next is one
//! more than the highest that exists. A record is created with `create` (not
//! apply), so two writers cannot both take the same number.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use sha2::{Digest, Sha256};

use super::policy::{History, RevisionHeader};
use super::record::{self, RevisionRecord, RevisionStatus};
use crate::cluster::ApiError;
use crate::identity::{AppIdentity, LABEL_APP, LABEL_MANAGED_BY, MANAGED_BY};
use crate::render::ObjectId;

pub const SECRET_TYPE: &str = "windlass.dev/revision.v1";
const LABEL_REVISION: &str = "windlass.dev/revision";
const LABEL_PART: &str = "windlass.dev/revision-part";
const LABEL_STATUS: &str = "windlass.dev/status";
const ANNOTATION_CHUNKS: &str = "windlass.dev/chunks";
const ANNOTATION_SHA256: &str = "windlass.dev/record-sha256";
// What `history::policy` needs of a record, readable from one LIST.
const ANNOTATION_QUARANTINED: &str = "windlass.dev/quarantined";
const ANNOTATION_COMMIT: &str = "windlass.dev/commit";
const ANNOTATION_VALUES_DIGEST: &str = "windlass.dev/values-digest";
const ANNOTATION_MANIFEST_DIGEST: &str = "windlass.dev/manifest-digest";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("application {app}: revision {number} does not exist")]
    NotFound { app: String, number: u64 },
    #[error("application {app}: revision {number}: {reason}")]
    Damaged {
        app: String,
        number: u64,
        reason: String,
    },
    #[error(
        "application {app}: revision {number} already exists: another sync of this application \
         is running, or just ran; try again"
    )]
    Taken { app: String, number: u64 },
    #[error("application {app}: revision records in namespace {namespace}")]
    Api {
        app: String,
        namespace: String,
        #[source]
        source: ApiError,
    },
}

pub struct RevisionStore {
    api: Api<Secret>,
    app: AppIdentity,
}

impl RevisionStore {
    /// Records live in the application's own namespace.
    pub fn new(client: &kube::Client, app: &AppIdentity) -> RevisionStore {
        RevisionStore {
            api: Api::namespaced(client.clone(), &app.namespace),
            app: app.clone(),
        }
    }

    fn api_error(&self, error: kube::Error) -> StoreError {
        StoreError::Api {
            app: self.app.full(),
            namespace: self.app.namespace.clone(),
            source: error.into(),
        }
    }

    /// The name of revision `number`'s Secret.
    pub fn secret_name(&self, number: u64) -> String {
        let name = format!("windlass.{}.v{number}", self.app.name);
        if name.len() + 4 <= 253 {
            return name;
        }
        let digest = Sha256::digest(self.app.name.as_bytes());
        let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        format!("windlass.{hex}.v{number}")
    }

    /// Every revision's header, oldest first: one LIST of metadata (labels
    /// and annotations; no payloads transferred).
    pub async fn history(&self) -> Result<History, StoreError> {
        let selector = format!("{LABEL_APP}={},{LABEL_REVISION}", self.app.label_value());
        let list = self
            .api
            .list_metadata(&ListParams::default().labels(&selector))
            .await
            .map_err(|e| self.api_error(e))?;
        let headers = list
            .items
            .into_iter()
            .filter_map(|secret| {
                let labels = secret.metadata.labels.unwrap_or_default();
                let annotations = secret.metadata.annotations.unwrap_or_default();
                let annotation = |key: &str| annotations.get(key).cloned();
                Some(RevisionHeader {
                    number: labels.get(LABEL_REVISION)?.parse().ok()?,
                    status: labels
                        .get(LABEL_STATUS)
                        .and_then(|s| RevisionStatus::parse(s)),
                    quarantined: annotation(ANNOTATION_QUARANTINED).as_deref() == Some("true"),
                    commit: annotation(ANNOTATION_COMMIT),
                    values_digest: annotation(ANNOTATION_VALUES_DIGEST),
                    manifest_digest: annotation(ANNOTATION_MANIFEST_DIGEST),
                })
            })
            .collect();
        Ok(History::new(headers))
    }

    /// Reads and checks one record.
    pub async fn load(&self, number: u64) -> Result<RevisionRecord, StoreError> {
        let name = self.secret_name(number);
        let main = self
            .api
            .get_opt(&name)
            .await
            .map_err(|e| self.api_error(e))?
            .ok_or_else(|| StoreError::NotFound {
                app: self.app.full(),
                number,
            })?;
        let damaged = |reason: String| StoreError::Damaged {
            app: self.app.full(),
            number,
            reason,
        };
        let annotations = main.metadata.annotations.clone().unwrap_or_default();
        let chunks: usize = annotations
            .get(ANNOTATION_CHUNKS)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| {
                damaged(format!(
                    "Secret {name} has no {ANNOTATION_CHUNKS} annotation"
                ))
            })?;
        let sha256 = annotations.get(ANNOTATION_SHA256).cloned().ok_or_else(|| {
            damaged(format!(
                "Secret {name} has no {ANNOTATION_SHA256} annotation"
            ))
        })?;
        let mut parts =
            vec![payload(&main).ok_or_else(|| damaged(format!("Secret {name} has no record")))?];
        for k in 1..chunks {
            let part_name = format!("{name}.{k}");
            let part = self
                .api
                .get_opt(&part_name)
                .await
                .map_err(|e| self.api_error(e))?
                .ok_or_else(|| damaged(format!("part {k} (Secret {part_name}) is missing")))?;
            parts.push(
                payload(&part)
                    .ok_or_else(|| damaged(format!("Secret {part_name} has no record")))?,
            );
        }
        record::decode(&parts, &sha256).map_err(|e| damaged(e.to_string()))
    }

    /// Creates a new record; fails if its number is taken.
    pub async fn create(&self, record: &RevisionRecord) -> Result<(), StoreError> {
        let encoded = record::encode(record);
        // Parts first, so that a listed record always has its parts.
        for (k, chunk) in encoded.chunks.iter().enumerate().skip(1) {
            let part = self.secret(
                record,
                &format!("{}.{k}", self.secret_name(record.revision)),
                chunk,
                None,
            );
            self.api
                .create(&PostParams::default(), &part)
                .await
                .map_err(|e| self.create_error(e, record.revision))?;
        }
        let main = self.secret(
            record,
            &self.secret_name(record.revision),
            &encoded.chunks[0],
            Some((encoded.chunks.len(), &encoded.sha256)),
        );
        self.api
            .create(&PostParams::default(), &main)
            .await
            .map_err(|e| self.create_error(e, record.revision))?;
        Ok(())
    }

    fn create_error(&self, error: kube::Error, number: u64) -> StoreError {
        match &error {
            kube::Error::Api(status) if status.code == 409 => StoreError::Taken {
                app: self.app.full(),
                number,
            },
            _ => self.api_error(error),
        }
    }

    /// Replaces a record's payload and status (parts are rewritten too).
    pub async fn update(&self, record: &RevisionRecord) -> Result<(), StoreError> {
        let encoded = record::encode(record);
        let name = self.secret_name(record.revision);
        let old_chunks: usize = self
            .api
            .get_opt(&name)
            .await
            .map_err(|e| self.api_error(e))?
            .and_then(|s| s.metadata.annotations?.get(ANNOTATION_CHUNKS)?.parse().ok())
            .unwrap_or(1);
        for (k, chunk) in encoded.chunks.iter().enumerate().skip(1) {
            let part = self.secret(record, &format!("{name}.{k}"), chunk, None);
            self.replace(&part).await?;
        }
        let main = self.secret(
            record,
            &name,
            &encoded.chunks[0],
            Some((encoded.chunks.len(), &encoded.sha256)),
        );
        self.replace(&main).await?;
        for k in encoded.chunks.len()..old_chunks {
            let _ = self
                .api
                .delete(&format!("{name}.{k}"), &DeleteParams::default())
                .await;
        }
        Ok(())
    }

    /// Writes a Secret whole (server-side apply, so no read-modify-write race
    /// on our own fields).
    async fn replace(&self, secret: &Secret) -> Result<(), StoreError> {
        let name = secret.metadata.name.clone().unwrap_or_default();
        let params = kube::api::PatchParams::apply(crate::identity::FIELD_MANAGER).force();
        self.api
            .patch(&name, &params, &kube::api::Patch::Apply(secret))
            .await
            .map(|_| ())
            .map_err(|e| self.api_error(e))
    }

    /// Deletes a record and its parts.
    pub async fn delete(&self, number: u64) -> Result<(), StoreError> {
        let selector = format!(
            "{LABEL_APP}={},{LABEL_PART}={number}",
            self.app.label_value()
        );
        let parts = self
            .api
            .list_metadata(&ListParams::default().labels(&selector))
            .await
            .map_err(|e| self.api_error(e))?;
        for part in parts.items {
            if let Some(name) = part.metadata.name {
                let _ = self.api.delete(&name, &DeleteParams::default()).await;
            }
        }
        match self
            .api
            .delete(&self.secret_name(number), &DeleteParams::default())
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
            Err(error) => Err(self.api_error(error)),
        }
    }

    /// The inventory a new sync must treat as "previous": the union of the
    /// inventories of [`History::inventory_sources`] (the newest finished
    /// record plus every newer pending one), and that finished record. A
    /// sync that crashed after writing its pending record and part of its
    /// objects is thereby never forgotten: its objects are adopted or pruned
    /// by the next sync, and so are those of the last finished revision.
    pub async fn previous_inventory(
        &self,
        history: &History,
    ) -> Result<(Vec<ObjectId>, Option<RevisionRecord>), StoreError> {
        let mut inventory: Vec<ObjectId> = Vec::new();
        let mut last_finished = None;
        for number in history.inventory_sources() {
            let record = self.load(number).await?;
            for id in record.inventory_ids() {
                if !inventory.iter().any(|known| known.key() == id.key()) {
                    inventory.push(id);
                }
            }
            if record.status != RevisionStatus::Pending {
                last_finished = Some(record);
            }
        }
        Ok((inventory, last_finished))
    }

    /// Deletes every record of the application.
    pub async fn delete_all(&self, history: &History) -> Result<usize, StoreError> {
        for header in history.headers() {
            self.delete(header.number).await?;
        }
        Ok(history.headers().len())
    }

    fn secret(
        &self,
        record: &RevisionRecord,
        name: &str,
        chunk: &[u8],
        main: Option<(usize, &str)>,
    ) -> Secret {
        let mut labels = BTreeMap::from([
            (LABEL_MANAGED_BY.to_string(), MANAGED_BY.to_string()),
            (LABEL_APP.to_string(), self.app.label_value()),
        ]);
        let mut annotations = BTreeMap::new();
        match main {
            Some((chunks, sha256)) => {
                labels.insert(LABEL_REVISION.into(), record.revision.to_string());
                labels.insert(LABEL_STATUS.into(), record.status.as_str().into());
                annotations.insert(ANNOTATION_CHUNKS.into(), chunks.to_string());
                annotations.insert(ANNOTATION_SHA256.into(), sha256.to_string());
                annotations.extend(header_annotations(record));
            }
            None => {
                labels.insert(LABEL_PART.into(), record.revision.to_string());
            }
        }
        Secret {
            metadata: kube::api::ObjectMeta {
                name: Some(name.to_string()),
                namespace: Some(self.app.namespace.clone()),
                labels: Some(labels),
                annotations: Some(annotations),
                ..Default::default()
            },
            type_: Some(SECRET_TYPE.to_string()),
            data: Some(BTreeMap::from([(
                "record".to_string(),
                ByteString(chunk.to_vec()),
            )])),
            ..Default::default()
        }
    }
}

/// The annotations [`RevisionStore::history`] reads back into a header.
fn header_annotations(record: &RevisionRecord) -> Vec<(String, String)> {
    let mut annotations = vec![
        (
            ANNOTATION_VALUES_DIGEST.to_string(),
            record.values_digest.clone(),
        ),
        (
            ANNOTATION_MANIFEST_DIGEST.to_string(),
            record.manifest_digest.clone(),
        ),
    ];
    if let Some(commit) = record.commit() {
        annotations.push((ANNOTATION_COMMIT.to_string(), commit.to_string()));
    }
    if record.quarantined {
        annotations.push((ANNOTATION_QUARANTINED.to_string(), "true".to_string()));
    }
    annotations
}

/// The header a freshly written record has, as [`RevisionStore::history`]
/// would read it.
pub fn header_of(record: &RevisionRecord) -> RevisionHeader {
    RevisionHeader {
        number: record.revision,
        status: Some(record.status),
        quarantined: record.quarantined,
        commit: record.commit().map(str::to_string),
        values_digest: Some(record.values_digest.clone()),
        manifest_digest: Some(record.manifest_digest.clone()),
    }
}

fn payload(secret: &Secret) -> Option<Vec<u8>> {
    secret.data.as_ref()?.get("record").map(|b| b.0.clone())
}
