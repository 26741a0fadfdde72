//! Rendered objects: identity, origin, digest.
//!
//! ```text
//!   serde_json::Value ──check──► ObjectId { group, version, kind, namespace, name }
//!          │
//!          └──canonical JSON (keys sorted, no whitespace)──sha256──► digest
//!
//!   [RenderedObject] ──sorted "group kind namespace name digest" lines──sha256──► manifest digest
//! ```
//!
//! Canonical JSON is written here, keys sorted bytewise at every level, so a
//! digest never depends on how `serde_json::Map` happens to order its keys
//! (another dependency may turn on `preserve_order`). Output (YAML, JSON) goes
//! through [`Sorted`] for the same reason.
//!
//! Secrets: `Debug` of a [`RenderedObject`] shows identity and digest only,
//! and [`mask_secret_values`] replaces a Secret's `data`/`stringData` values
//! for printing.

use std::fmt;
use std::io::Write;

use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// What a Secret's values are replaced with in output.
pub const MASK: &str = "********";

/// Who an object is: what the API server keys it by, plus its version.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct ObjectId {
    /// API group; empty for the core group (`v1`).
    pub group: String,
    pub version: String,
    pub kind: String,
    /// `None` for cluster-scoped objects.
    pub namespace: Option<String>,
    pub name: String,
}

impl ObjectId {
    /// `apiVersion` as written: `v1` or `apps/v1`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// What must be unique in a render: group, kind, namespace, name (the
    /// version is not part of an object's identity).
    pub fn key(&self) -> (&str, &str, Option<&str>, &str) {
        (
            &self.group,
            &self.kind,
            self.namespace.as_deref(),
            &self.name,
        )
    }
}

impl fmt::Display for ObjectId {
    /// `Deployment.apps web -n shop`, `Namespace shop`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.group.is_empty() {
            write!(f, "{} {}", self.kind, self.name)?;
        } else {
            write!(f, "{}.{} {}", self.kind, self.group, self.name)?;
        }
        if let Some(namespace) = &self.namespace {
            write!(f, " -n {namespace}")?;
        }
        Ok(())
    }
}

/// Where an object came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectSource {
    /// Path in the tree: a manifest file or a chart template.
    pub path: String,
    /// Whether `path` is a template (its document is rendered output).
    pub template: bool,
    /// 1-based document index in the file (or in the template's output).
    pub document: usize,
    /// 1-based index in a `List` document's `items`.
    pub item: Option<usize>,
}

impl fmt::Display for ObjectSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.template {
            write!(f, "template `{}` document {}", self.path, self.document)?;
        } else {
            write!(f, "`{}` document {}", self.path, self.document)?;
        }
        if let Some(item) = self.item {
            write!(f, " item {item}")?;
        }
        Ok(())
    }
}

/// One object of a render, ready to apply.
#[derive(Clone)]
pub struct RenderedObject {
    pub id: ObjectId,
    /// The whole object, namespace defaulted.
    pub object: Value,
    pub source: ObjectSource,
    /// sha256 (hex) of the object's canonical JSON.
    pub digest: String,
}

impl RenderedObject {
    /// Whether this is a core `v1` Secret.
    pub fn is_secret(&self) -> bool {
        self.id.group.is_empty() && self.id.kind == "Secret"
    }
}

impl fmt::Debug for RenderedObject {
    // The object may be a Secret: identity, origin and digest only.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RenderedObject")
            .field("id", &self.id)
            .field("source", &self.source)
            .field("digest", &self.digest)
            .finish_non_exhaustive()
    }
}

/// A copy of a Secret with every value of `data` and `stringData` replaced
/// by [`MASK`] (keys stay visible). Other objects are returned unchanged.
pub fn mask_secret_values(object: &RenderedObject) -> Value {
    mask_secret_manifest(&object.object)
}

/// [`mask_secret_values`] for any manifest (a stored revision's, a live
/// object): the one place Secret values are masked for output.
pub fn mask_secret_manifest(manifest: &Value) -> Value {
    let mut value = manifest.clone();
    // Any kind named Secret: masking one too many is safe, one too few is not.
    let is_secret = manifest["kind"] == "Secret";
    if is_secret && let Value::Object(map) = &mut value {
        for field in ["data", "stringData"] {
            match map.get_mut(field) {
                Some(Value::Object(entries)) => {
                    for entry in entries.values_mut() {
                        *entry = Value::String(MASK.to_string());
                    }
                }
                Some(Value::Null) | None => {}
                Some(other) => *other = Value::String(MASK.to_string()),
            }
        }
    }
    value
}

/// sha256 hex of the canonical JSON of `value`, hashed as it is written
/// (the text itself is never held in memory).
pub fn digest(value: &Value) -> String {
    let mut hasher = HashWriter(Sha256::new());
    // Writing into a hasher cannot fail.
    let _ = write_canonical(value, &mut hasher);
    hex(&hasher.0.finalize())
}

/// Feeds whatever is written to it into a sha256.
struct HashWriter(Sha256);

impl Write for HashWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.update(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The manifest digest: sha256 over one line per object,
/// `group kind namespace name digest` (tab-separated), sorted.
pub fn manifest_digest(objects: &[RenderedObject]) -> String {
    let mut lines: Vec<String> = objects
        .iter()
        .map(|o| {
            let namespace = o.id.namespace.as_deref().unwrap_or("");
            let fields = [&*o.id.group, &o.id.kind, namespace, &o.id.name, &o.digest];
            fields.join("\t") + "\n"
        })
        .collect();
    lines.sort();
    let mut hasher = Sha256::new();
    for line in &lines {
        hasher.update(line.as_bytes());
    }
    hex(&hasher.finalize())
}

/// Canonical JSON text: keys sorted bytewise, no whitespace.
pub fn canonical_json(value: &Value) -> String {
    let mut out = Vec::new();
    let _ = write_canonical(value, &mut out);
    String::from_utf8(out).unwrap_or_default()
}

fn write_canonical(value: &Value, out: &mut impl Write) -> std::io::Result<()> {
    match value {
        Value::Object(map) => {
            out.write_all(b"{")?;
            if keys_sorted(map) {
                write_entries(map.iter(), out)?;
            } else {
                write_entries(sorted_entries(map).into_iter(), out)?;
            }
            out.write_all(b"}")
        }
        Value::Array(items) => {
            out.write_all(b"[")?;
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.write_all(b",")?;
                }
                write_canonical(item, out)?;
            }
            out.write_all(b"]")
        }
        scalar => serde_json::to_writer(&mut *out, scalar).map_err(std::io::Error::from),
    }
}

/// `"key":value` pairs, comma-separated, in the order given.
fn write_entries<'a>(
    entries: impl Iterator<Item = (&'a String, &'a Value)>,
    out: &mut impl Write,
) -> std::io::Result<()> {
    for (i, (key, item)) in entries.enumerate() {
        if i > 0 {
            out.write_all(b",")?;
        }
        serde_json::to_writer(&mut *out, key)?;
        out.write_all(b":")?;
        write_canonical(item, out)?;
    }
    Ok(())
}

/// Whether a map already keeps its keys in bytewise order, as serde_json's
/// default map does.
fn keys_sorted(map: &serde_json::Map<String, Value>) -> bool {
    map.keys().is_sorted_by(|a, b| a.as_bytes() <= b.as_bytes())
}

/// A map's entries in bytewise key order.
fn sorted_entries(map: &serde_json::Map<String, Value>) -> Vec<(&String, &Value)> {
    let mut entries: Vec<(&String, &Value)> = map.iter().collect();
    if !keys_sorted(map) {
        entries.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    }
    entries
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(DIGITS[(byte >> 4) as usize] as char);
        out.push(DIGITS[(byte & 0xf) as usize] as char);
    }
    out
}

/// Serialises a JSON value with every map's keys in sorted order, whatever
/// order `serde_json::Map` keeps.
pub struct Sorted<'a>(pub &'a Value);

impl Serialize for Sorted<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Value::Object(map) => {
                let entries = sorted_entries(map);
                let mut out = serializer.serialize_map(Some(entries.len()))?;
                for (key, value) in entries {
                    out.serialize_entry(key, &Sorted(value))?;
                }
                out.end()
            }
            Value::Array(items) => {
                let mut out = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    out.serialize_element(&Sorted(item))?;
                }
                out.end()
            }
            scalar => scalar.serialize(serializer),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(value: Value) -> RenderedObject {
        let kind = value["kind"].as_str().unwrap_or_default().to_string();
        RenderedObject {
            id: ObjectId {
                group: String::new(),
                version: "v1".into(),
                kind,
                namespace: Some("default".into()),
                name: value["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .into(),
            },
            digest: digest(&value),
            object: value,
            source: ObjectSource {
                path: "x.yaml".into(),
                template: false,
                document: 1,
                item: None,
            },
        }
    }

    #[test]
    fn canonical_json_sorts_keys_at_every_level_without_whitespace() {
        let value = json!({"b": {"z": 1, "a": [ {"y": true, "x": null} ]}, "a": "é\"\n", "B": 1.5});
        assert_eq!(
            canonical_json(&value),
            r#"{"B":1.5,"a":"é\"\n","b":{"a":[{"x":null,"y":true}],"z":1}}"#
        );
    }

    #[test]
    fn digest_of_a_known_object() {
        let value = json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "demo", "namespace": "default"},
            "data": {"greeting": "hello"},
        });
        let text = canonical_json(&value);
        assert_eq!(
            text,
            r#"{"apiVersion":"v1","data":{"greeting":"hello"},"kind":"ConfigMap","metadata":{"name":"demo","namespace":"default"}}"#
        );
        // `printf '%s' "$text" | sha256sum`
        assert_eq!(
            digest(&value),
            "5b8875a042c0e900a1e5cfe0474eec84c34b1e8b96fed7fa0160350b232645f3"
        );
        assert_eq!(digest(&value).len(), 64);
    }

    #[test]
    fn digest_ignores_key_order_but_not_values() {
        let a: Value = serde_json::from_str(r#"{"a":1,"b":{"c":2,"d":3}}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{"b":{"d":3,"c":2},"a":1}"#).unwrap();
        let c: Value = serde_json::from_str(r#"{"b":{"d":3,"c":2},"a":2}"#).unwrap();
        assert_eq!(digest(&a), digest(&b));
        assert_ne!(digest(&a), digest(&c));
    }

    #[test]
    fn manifest_digest_is_order_independent_and_content_sensitive() {
        let one = object(json!({"kind": "ConfigMap", "metadata": {"name": "a"}}));
        let two = object(json!({"kind": "ConfigMap", "metadata": {"name": "b"}}));
        let changed = object(json!({"kind": "ConfigMap", "metadata": {"name": "b"}, "data": {}}));
        let forward = manifest_digest(&[one.clone(), two.clone()]);
        assert_eq!(forward, manifest_digest(&[two, one.clone()]));
        assert_ne!(forward, manifest_digest(&[one.clone(), changed]));
        assert_ne!(forward, manifest_digest(&[one]));
    }

    #[test]
    fn debug_never_shows_secret_values() {
        let secret = object(json!({
            "kind": "Secret", "metadata": {"name": "s"},
            "data": {"password": "aHVudGVyMg=="}, "stringData": {"token": "hunter2"},
        }));
        let debug = format!("{secret:?}");
        assert!(
            !debug.contains("hunter2") && !debug.contains("aHVudGVyMg"),
            "{debug}"
        );
        assert!(debug.contains(&secret.digest), "{debug}");
    }

    #[test]
    fn masks_secret_values_but_keeps_keys() {
        let secret = object(json!({
            "kind": "Secret", "metadata": {"name": "s"},
            "data": {"password": "aHVudGVyMg=="}, "stringData": {"token": "hunter2"},
        }));
        let masked = mask_secret_values(&secret);
        assert_eq!(masked["data"], json!({"password": MASK}));
        assert_eq!(masked["stringData"], json!({"token": MASK}));
        assert_eq!(masked["metadata"], json!({"name": "s"}));
        let config =
            object(json!({"kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"k": "v"}}));
        assert_eq!(mask_secret_values(&config), config.object);
    }

    #[test]
    fn sorted_serialisation_orders_keys() {
        let value = json!({"b": 1, "a": {"d": 2, "c": 3}});
        assert_eq!(
            serde_json::to_string(&Sorted(&value)).unwrap(),
            r#"{"a":{"c":3,"d":2},"b":1}"#
        );
    }

    #[test]
    fn object_ids_read_well() {
        let id = ObjectId {
            group: "apps".into(),
            version: "v1".into(),
            kind: "Deployment".into(),
            namespace: Some("shop".into()),
            name: "web".into(),
        };
        assert_eq!(id.to_string(), "Deployment.apps web -n shop");
        assert_eq!(id.api_version(), "apps/v1");
    }
}
