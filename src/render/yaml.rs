//! YAML in and out: text ⇄ `serde_json::Value`.
//!
//! ```text
//!   text ──granit parser events──► Loader ──► [Document { index, line, value }]
//!                                    │ YAML 1.2 core schema, YAML 1.1 traps refused,
//!                                    │ depth / alias / document limits, positions
//!   Value ──Sorted──serde-saphyr──► text (keys sorted, ambiguous strings quoted)
//! ```
//!
//! windlass reads YAML with the event parser that serde-saphyr is built on
//! (re-exported as `serde_saphyr::granit_parser`) and builds the JSON values
//! itself. One pass gives everything rendering needs and serde's data model
//! hides: the style of every scalar (to see unquoted `yes`), the position of
//! every node (for errors), and control over alias expansion and depth.
//!
//! ## YAML 1.1 versus 1.2
//!
//! windlass reads YAML 1.2 (core schema). kubectl and the API server read
//! YAML 1.1 (go-yaml v2 through sigs.k8s.io/yaml), where a few unquoted plain
//! scalars mean something else. Passing them through would make windlass's
//! digest, diff and output disagree with what the cluster stores, so windlass
//! **refuses** them, in keys and in values, naming the line and column and
//! asking for quotes:
//!
//! | plain scalar | YAML 1.1 (Kubernetes) | YAML 1.2 | windlass |
//! | --- | --- | --- | --- |
//! | `yes` `no` `on` `off` `y` `n`, any letter case | boolean | string | error: quote it or write `true`/`false` |
//! | `0755`, `012`, `-017` (leading zero) | octal number | decimal number | error: `0o755` or `493` for a number field, `755` if decimal was meant, quotes only for a string field |
//! | `1_000`, `0b1010`, `0X1F`, `+0x1F` | number | string | error: quote it, or write the plain number |
//!
//! Quoted scalars, block scalars (`|`, `>`) and explicitly tagged scalars
//! (`!!str yes`) are never refused. `0`, `0.5`, `0o17`, `0x1F`, `true` and
//! `True` mean the same in both and pass.
//!
//! Other rules: mapping keys must be scalars and unique (a duplicate is
//! named); `<<` merge keys are expanded; anchors and aliases work, with the
//! total number of nodes aliases may copy per file limited (a "billion
//! laughs" document fails fast); `.inf`/`.nan` are refused (JSON cannot hold
//! them); tags other than the core schema's, `!!binary`, `!!timestamp` and
//! `!` are refused. Errors give the document, line and column and never
//! quote document content (keys are named: they are names, not values).
//!
//! ## `!!binary`
//!
//! kubectl reads `key: !!binary aGVsbG8=` as the decoded bytes, `hello`,
//! and sends them as a JSON string (go-yaml v2 decodes the base64; it is
//! not encoded again). windlass does the same, so that a ConfigMap's
//! `data` holds `hello`. In a Secret's `data`, which the API server reads
//! as base64, that means the server refuses `hello`, for kubectl and
//! windlass alike: there, write the base64 text without the tag (or the
//! text under `stringData`). Invalid base64 is refused, as kubectl does;
//! so are bytes that are not UTF-8, which kubectl would mangle.
//!
//! ## Many errors
//!
//! A refused scalar, key or tag, a bad merge or a duplicate key is recorded
//! and reading goes on, so one run reports every such error of a file (up
//! to [`MAX_ERRORS`]); a syntax error or a limit ends the file.

use std::borrow::Cow;
use std::collections::HashMap;

use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use serde_json::map::Entry;
use serde_json::{Map, Number, Value};
use serde_saphyr::granit_parser::{
    ErrorKind, Event, Marker, Options as ParserOptions, Parser, ScalarStyle, ScanError, Tag,
};

use super::MAX_ERRORS;
use super::object::Sorted;

/// The limits the loader enforces (a view of [`super::Limits`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct YamlLimits {
    pub max_documents: usize,
    pub max_depth: usize,
    pub max_alias_nodes: usize,
}

/// One non-empty document of a YAML stream.
#[derive(Debug)]
pub(crate) struct Document {
    /// 1-based, counting empty documents too, as a reader counts `---`.
    pub index: usize,
    pub value: Value,
}

/// Where in a YAML stream something went wrong, and what.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("document {document}, line {line} column {column}: {kind}")]
pub struct YamlError {
    /// 1-based document index.
    pub document: usize,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    pub kind: YamlErrorKind,
}

/// Whether a refused scalar is a mapping key or a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScalarRole {
    Key,
    Value,
}

impl std::fmt::Display for ScalarRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ScalarRole::Key => "key",
            ScalarRole::Value => "value",
        })
    }
}

/// A plain scalar that YAML 1.1 (Kubernetes) and YAML 1.2 (windlass) read
/// differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Yaml11Trap {
    /// `yes`, `no`, `on`, `off`, `y`, `n` in any letter case.
    Boolean,
    /// `0755`: octal in YAML 1.1.
    LeadingZero,
    /// `1_000`, `0b101`, `0X1F`, `+0x1F`: numbers in YAML 1.1, strings in 1.2.
    NumberSyntax,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum YamlErrorKind {
    /// The parser's own message (never quotes content).
    #[error("{0}")]
    Syntax(String),

    #[error(
        "unquoted {role} that Kubernetes (YAML 1.1) reads as a boolean but windlass (YAML 1.2) \
         as a string (yes/no/on/off/y/n in any letter case); quote it (\"yes\") if you mean \
         the string, or write true/false"
    )]
    Yaml11Boolean { role: ScalarRole },

    /// The hint works on an example, not on the scalar itself: the
    /// scalar could be a Secret's value (a PIN such as `0123`).
    #[error(
        "unquoted {role} with a leading zero, which Kubernetes (YAML 1.1) reads as an octal \
         number and windlass (YAML 1.2) as a decimal one; for a number field (file modes such \
         as defaultMode are octal) write the octal with `0o` (0755 → 0o755) or its decimal \
         value (0755 → 493), or drop the zero if you meant decimal (0755 → 755); quote it \
         (\"0755\") only if the field is a string"
    )]
    Yaml11LeadingZero { role: ScalarRole },

    #[error(
        "unquoted {role} that Kubernetes (YAML 1.1) reads as a number but windlass (YAML 1.2) \
         as a string (underscores, 0b, 0X or a signed 0x/0o prefix); quote it if you mean the \
         string, or write a plain decimal, 0x or 0o number"
    )]
    Yaml11Number { role: ScalarRole },

    #[error("nesting deeper than the limit of {limit} levels")]
    TooDeep { limit: usize },

    #[error("aliases expand to more than the limit of {limit} nodes in this file (an alias bomb?)")]
    AliasExpansion { limit: usize },

    #[error("more than the limit of {limit} documents in one file")]
    TooManyDocuments { limit: usize },

    /// The key is named (shortened, control characters escaped): keys are
    /// names, not values.
    #[error("duplicate mapping key `{key}`")]
    DuplicateKey { key: String },

    #[error("mapping keys must be scalars (a mapping or list cannot be a key)")]
    ComplexKey,

    #[error("a `<<` merge key needs a mapping or a list of mappings")]
    BadMerge,

    #[error("infinity and NaN cannot be represented in JSON; quote the value")]
    NonFinite,

    #[error("the value does not match its tag `{tag}`")]
    TagMismatch { tag: String },

    #[error("unsupported tag `{tag}`; windlass reads plain YAML (core schema tags only)")]
    UnsupportedTag { tag: String },

    #[error(
        "a `!!binary` value that is not valid base64 (standard alphabet, `=` padding; only \
         line breaks may come between the characters)"
    )]
    BinaryNotBase64,

    #[error(
        "a `!!binary` value whose bytes are not UTF-8 text: kubectl would send each invalid \
         byte as U+FFFD, changing the data; in a Secret's `data`, write the base64 text \
         without `!!binary`"
    )]
    BinaryNotText,
}

/// Every error found in one YAML stream, in the order found: up to
/// [`MAX_ERRORS`], with `more` counting the rest. Never empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YamlErrors {
    pub errors: Vec<YamlError>,
    pub more: usize,
}

impl YamlErrors {
    /// The first error found.
    pub fn first(&self) -> &YamlError {
        &self.errors[0]
    }
}

impl std::fmt::Display for YamlErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        super::write_list(f, &self.errors, self.more)
    }
}

impl std::error::Error for YamlErrors {}

/// Parses every document of `text`. Empty, comment-only and `null`
/// documents are skipped (their index still counts).
///
/// A refused scalar, key, tag, merge or a duplicate key is recorded and
/// reading goes on, so that one run reports them all; a syntax error, a
/// limit or an unknown alias ends the file (what follows cannot be read
/// reliably).
pub(crate) fn load_documents(text: &str, limits: &YamlLimits) -> Result<Vec<Document>, YamlErrors> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut options = ParserOptions::default();
    // Our own depth limit gives the better message; keep the parser's
    // above it (and still bounded).
    let nesting = limits.max_depth.saturating_add(1).min(10_000);
    options.block_nesting_limit = nesting;
    options.flow_nesting_limit = nesting;
    options.emit_comments = false;
    let mut parser = Parser::new_from_str_with_options(text, options);
    let mut loader = Loader {
        limits: *limits,
        stack: Vec::new(),
        spare_entries: Vec::new(),
        anchors: HashMap::new(),
        alias_nodes: 0,
        document: 0,
        root: None,
        documents: Vec::new(),
        errors: Vec::new(),
        more: 0,
    };
    while let Some(next) = parser.next_event() {
        let fatal = match next {
            Ok((event, span)) => loader.event(event, span.start).err(),
            Err(error) => Some(loader.scan_error(&error)),
        };
        if let Some(error) = fatal {
            loader.record(error);
            break;
        }
    }
    if loader.errors.is_empty() {
        Ok(loader.documents)
    } else {
        Err(YamlErrors {
            errors: loader.errors,
            more: loader.more,
        })
    }
}

/// Parses a file that must hold exactly one document (values files,
/// `Chart.yaml`). An empty file gives `None`.
pub(crate) fn load_single(text: &str, limits: &YamlLimits) -> Result<Option<Value>, YamlErrors> {
    let mut documents = load_documents(text, limits)?;
    if documents.len() > 1 {
        let second = &documents[1];
        return Err(YamlErrors {
            errors: vec![YamlError {
                document: second.index,
                line: 1,
                column: 1,
                kind: YamlErrorKind::Syntax("expected a single document, found several".into()),
            }],
            more: 0,
        });
    }
    Ok(documents.pop().map(|d| d.value))
}

/// YAML text for a value: keys sorted, strings quoted wherever any YAML
/// reader (1.1 or 1.2) could take them for something else. Ends with a
/// newline.
pub fn to_yaml(value: &Value) -> String {
    match serde_saphyr::to_string(&Sorted(value)) {
        Ok(text) => text,
        // A JSON value always serialises; keep the signature infallible.
        Err(error) => format!("# cannot serialise: {error}\n"),
    }
}

struct Anchored {
    value: Value,
    nodes: usize,
    depth: usize,
}

enum PendingKey {
    Key(String, Marker),
    Merge(Marker),
    /// A mapping or list in key position (refused): when it ends, its
    /// value follows, to be dropped.
    Complex,
    /// The value of a refused key: dropped.
    Discard,
}

enum Frame {
    Sequence {
        items: Vec<Value>,
        anchor: usize,
    },
    /// A mapping's entries are collected first and the map is built at
    /// its end with the exact capacity: growing a map one key at a time
    /// reallocated its entry list and rehashed its table once or twice per
    /// mapping (8 % of the render time in a profile).
    Mapping {
        entries: Vec<(String, Marker, Value)>,
        key: Option<PendingKey>,
        anchor: usize,
        merges: Vec<Value>,
    },
}

struct Loader {
    limits: YamlLimits,
    stack: Vec<Frame>,
    /// Emptied entry lists of finished mappings, reused by the next ones.
    spare_entries: Vec<Vec<(String, Marker, Value)>>,
    anchors: HashMap<usize, Anchored>,
    alias_nodes: usize,
    document: usize,
    root: Option<Value>,
    documents: Vec<Document>,
    /// Errors found so far, up to [`MAX_ERRORS`]; `more` counts the rest.
    errors: Vec<YamlError>,
    more: usize,
}

impl Loader {
    fn record(&mut self, error: YamlError) {
        if self.errors.len() < MAX_ERRORS {
            self.errors.push(error);
        } else {
            self.more += 1;
        }
    }

    /// Records an error that leaves the rest of the stream readable.
    fn refuse(&mut self, at: Marker, kind: YamlErrorKind) {
        let error = self.error(at, kind);
        self.record(error);
    }

    fn error(&self, at: Marker, kind: YamlErrorKind) -> YamlError {
        YamlError {
            document: self.document.max(1),
            line: at.line(),
            column: at.col() + 1,
            kind,
        }
    }

    fn scan_error(&self, error: &ScanError) -> YamlError {
        let kind = match error.kind() {
            ErrorKind::RecursionLimitExceeded => YamlErrorKind::TooDeep {
                limit: self.limits.max_depth,
            },
            // Its message quotes the character; say it without.
            ErrorKind::UnexpectedCharacter { .. } => {
                YamlErrorKind::Syntax("unexpected character".into())
            }
            ErrorKind::Custom(_) | ErrorKind::InputDecoding { .. } => {
                YamlErrorKind::Syntax("invalid YAML".into())
            }
            other => YamlErrorKind::Syntax(other.to_string()),
        };
        self.error(*error.marker(), kind)
    }

    fn in_key_position(&self) -> bool {
        matches!(self.stack.last(), Some(Frame::Mapping { key: None, .. }))
    }

    fn event(&mut self, event: Event<'_>, at: Marker) -> Result<(), YamlError> {
        match event {
            Event::DocumentStart(..) => {
                self.document += 1;
                if self.document > self.limits.max_documents {
                    return Err(self.error(
                        at,
                        YamlErrorKind::TooManyDocuments {
                            limit: self.limits.max_documents,
                        },
                    ));
                }
                self.anchors.clear();
                self.root = None;
            }
            Event::DocumentEnd => {
                if let Some(value) = self.root.take()
                    && !value.is_null()
                {
                    self.documents.push(Document {
                        index: self.document,
                        value,
                    });
                }
            }
            Event::Scalar(text, style, anchor, tag) => {
                if self.in_key_position() {
                    let key = match scalar_key(text, style, tag.as_deref()) {
                        Ok(key) => key,
                        Err(kind) => {
                            self.refuse(at, kind);
                            Key::Refused
                        }
                    };
                    if anchor != 0 {
                        let value = match &key {
                            Key::Merge => Value::String("<<".into()),
                            Key::Text(s) => Value::String(s.clone()),
                            Key::Refused => Value::Null,
                        };
                        self.anchors.insert(
                            anchor,
                            Anchored {
                                value,
                                nodes: 1,
                                depth: 0,
                            },
                        );
                    }
                    self.set_key(key, at);
                } else {
                    let value = match scalar_value(text, style, tag.as_deref()) {
                        Ok(value) => value,
                        Err(kind) => {
                            self.refuse(at, kind);
                            Value::Null
                        }
                    };
                    if anchor != 0 {
                        self.anchors.insert(
                            anchor,
                            Anchored {
                                value: value.clone(),
                                nodes: 1,
                                depth: 0,
                            },
                        );
                    }
                    self.complete(value);
                }
            }
            Event::Alias(id) => {
                // The parser refuses unknown anchors, so the id is known.
                let Some(anchored) = self.anchors.get(&id) else {
                    return Err(self.error(
                        at,
                        YamlErrorKind::Syntax("alias to an unknown anchor".into()),
                    ));
                };
                let (nodes, depth) = (anchored.nodes, anchored.depth);
                if self.alias_nodes.saturating_add(nodes) > self.limits.max_alias_nodes {
                    return Err(self.error(
                        at,
                        YamlErrorKind::AliasExpansion {
                            limit: self.limits.max_alias_nodes,
                        },
                    ));
                }
                if self.stack.len() + depth > self.limits.max_depth {
                    return Err(self.error(
                        at,
                        YamlErrorKind::TooDeep {
                            limit: self.limits.max_depth,
                        },
                    ));
                }
                self.alias_nodes += nodes;
                let value = anchored.value.clone();
                if self.in_key_position() {
                    let key = match value {
                        Value::String(s) => Key::Text(s),
                        Value::Number(n) => Key::Text(n.to_string()),
                        Value::Bool(b) => Key::Text(b.to_string()),
                        Value::Null => Key::Text("null".into()),
                        _ => {
                            self.refuse(at, YamlErrorKind::ComplexKey);
                            Key::Refused
                        }
                    };
                    self.set_key(key, at);
                } else {
                    self.complete(value);
                }
            }
            Event::SequenceStart(_, anchor, tag) => {
                self.open(at, tag.as_deref(), "seq")?;
                self.stack.push(Frame::Sequence {
                    items: Vec::new(),
                    anchor,
                });
            }
            Event::MappingStart(_, anchor, tag) => {
                self.open(at, tag.as_deref(), "map")?;
                self.stack.push(Frame::Mapping {
                    entries: self.spare_entries.pop().unwrap_or_default(),
                    key: None,
                    anchor,
                    merges: Vec::new(),
                });
            }
            Event::SequenceEnd => {
                if let Some(Frame::Sequence { items, anchor }) = self.stack.pop() {
                    let value = Value::Array(items);
                    self.anchor(anchor, &value);
                    self.complete(value);
                }
            }
            Event::MappingEnd => {
                if let Some(Frame::Mapping {
                    mut entries,
                    anchor,
                    merges,
                    ..
                }) = self.stack.pop()
                {
                    let mut map = Map::with_capacity(entries.len());
                    for (key, at, value) in entries.drain(..) {
                        match map.entry(key) {
                            Entry::Vacant(slot) => {
                                slot.insert(value);
                            }
                            Entry::Occupied(first) => {
                                let key = shown_key(first.key());
                                self.refuse(at, YamlErrorKind::DuplicateKey { key });
                            }
                        }
                    }
                    self.spare_entries.push(entries);
                    // Explicit keys win over merged ones; earlier merge
                    // sources win over later ones.
                    for source in merges {
                        if let Value::Object(entries) = source {
                            for (key, value) in entries {
                                map.entry(key).or_insert(value);
                            }
                        }
                    }
                    let value = Value::Object(map);
                    self.anchor(anchor, &value);
                    self.complete(value);
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Checks a collection about to open: not a key, tag fits (both
    /// recorded), depth (fatal).
    fn open(&mut self, at: Marker, tag: Option<&Tag>, expected: &str) -> Result<(), YamlError> {
        if self.in_key_position() {
            self.refuse(at, YamlErrorKind::ComplexKey);
            if let Some(Frame::Mapping { key, .. }) = self.stack.last_mut() {
                *key = Some(PendingKey::Complex);
            }
        }
        if let Some(tag) = tag
            && !tag.is_yaml_core_schema_tag(expected)
        {
            let kind = if tag.is_yaml_core_schema() {
                YamlErrorKind::TagMismatch {
                    tag: tag.original(),
                }
            } else {
                YamlErrorKind::UnsupportedTag {
                    tag: tag.original(),
                }
            };
            self.refuse(at, kind);
        }
        if self.stack.len() >= self.limits.max_depth {
            return Err(self.error(
                at,
                YamlErrorKind::TooDeep {
                    limit: self.limits.max_depth,
                },
            ));
        }
        Ok(())
    }

    fn anchor(&mut self, anchor: usize, value: &Value) {
        if anchor != 0 {
            let (nodes, depth) = measure(value);
            self.anchors.insert(
                anchor,
                Anchored {
                    value: value.clone(),
                    nodes,
                    depth,
                },
            );
        }
    }

    fn set_key(&mut self, key: Key, at: Marker) {
        if let Some(Frame::Mapping { key: slot, .. }) = self.stack.last_mut() {
            *slot = Some(match key {
                Key::Merge => PendingKey::Merge(at),
                Key::Text(text) => PendingKey::Key(text, at),
                Key::Refused => PendingKey::Discard,
            });
        }
    }

    /// A node is complete: attach it to its parent (or make it the root).
    fn complete(&mut self, value: Value) {
        let mut bad_merge = None;
        match self.stack.last_mut() {
            None => self.root = Some(value),
            Some(Frame::Sequence { items, .. }) => items.push(value),
            Some(Frame::Mapping {
                entries,
                key,
                merges,
                ..
            }) => match key.take() {
                Some(PendingKey::Key(name, at)) => entries.push((name, at, value)),
                Some(PendingKey::Merge(at)) => match value {
                    Value::Object(_) => merges.push(value),
                    Value::Array(items) if items.iter().all(Value::is_object) => {
                        merges.extend(items)
                    }
                    _ => bad_merge = Some(at),
                },
                Some(PendingKey::Complex) => *key = Some(PendingKey::Discard),
                Some(PendingKey::Discard) => {}
                // Scalars and aliases in key position never get here.
                None => {}
            },
        }
        if let Some(at) = bad_merge {
            self.refuse(at, YamlErrorKind::BadMerge);
        }
    }
}

/// Node count and nesting depth (0 for a scalar) of a value.
fn measure(value: &Value) -> (usize, usize) {
    match value {
        Value::Array(items) => items.iter().fold((1, 1), |(nodes, depth), item| {
            let (n, d) = measure(item);
            (nodes + n, depth.max(d + 1))
        }),
        Value::Object(map) => map
            .values()
            .fold((1 + map.len(), 1), |(nodes, depth), item| {
                let (n, d) = measure(item);
                (nodes + n, depth.max(d + 1))
            }),
        _ => (1, 0),
    }
}

enum Key {
    Text(String),
    Merge,
    /// A key that was refused (the error is recorded): its value is dropped.
    Refused,
}

/// A key for a message: at most 60 characters, control characters escaped.
fn shown_key(key: &str) -> String {
    let mut shown: String = key.chars().take(60).flat_map(char::escape_debug).collect();
    if key.chars().nth(60).is_some() {
        shown.push('…');
    }
    shown
}

/// Which core-schema or extra tag a scalar carries.
enum ScalarTag {
    None,
    Core(String),
    /// `!`, `!!timestamp`: read as a string.
    Str,
    /// `!!binary`: base64, read as its decoded bytes (see [`binary`]).
    Binary,
    Unsupported(String),
}

fn scalar_tag(tag: Option<&Tag>) -> ScalarTag {
    let Some(tag) = tag else {
        return ScalarTag::None;
    };
    if let Some(core) = tag.core_suffix() {
        return ScalarTag::Core(core.to_string());
    }
    // The non-specific tag `!`: "this is a string".
    if tag.parts() == ("", "!") {
        return ScalarTag::Str;
    }
    match tag.suffix_in_namespace("tag:yaml.org,2002:").as_deref() {
        Some("binary") => ScalarTag::Binary,
        Some("timestamp") => ScalarTag::Str,
        _ => ScalarTag::Unsupported(tag.original()),
    }
}

fn scalar_key(
    text: Cow<'_, str>,
    style: ScalarStyle,
    tag: Option<&Tag>,
) -> Result<Key, YamlErrorKind> {
    if style == ScalarStyle::Plain && tag.is_none() && text == "<<" {
        return Ok(Key::Merge);
    }
    let value = resolve(text, style, tag, ScalarRole::Key)?;
    Ok(Key::Text(match value {
        Value::String(s) => s,
        Value::Null => "null".to_string(),
        other => other.to_string(),
    }))
}

fn scalar_value(
    text: Cow<'_, str>,
    style: ScalarStyle,
    tag: Option<&Tag>,
) -> Result<Value, YamlErrorKind> {
    resolve(text, style, tag, ScalarRole::Value)
}

fn resolve(
    text: Cow<'_, str>,
    style: ScalarStyle,
    tag: Option<&Tag>,
    role: ScalarRole,
) -> Result<Value, YamlErrorKind> {
    match scalar_tag(tag) {
        ScalarTag::Str => Ok(Value::String(text.into_owned())),
        ScalarTag::Binary => binary(&text),
        ScalarTag::Unsupported(tag) => Err(YamlErrorKind::UnsupportedTag { tag }),
        ScalarTag::Core(core) => {
            let mismatch = || YamlErrorKind::TagMismatch {
                tag: format!("!!{core}"),
            };
            match core.as_str() {
                "str" => Ok(Value::String(text.into_owned())),
                "null" => match plain_core(&text) {
                    Plain::Null => Ok(Value::Null),
                    _ => Err(mismatch()),
                },
                "bool" => match plain_core(&text) {
                    Plain::Bool(b) => Ok(Value::Bool(b)),
                    _ => Err(mismatch()),
                },
                "int" => match plain_core(&text) {
                    Plain::Number(n) if !n.is_f64() => Ok(Value::Number(n)),
                    _ => Err(mismatch()),
                },
                "float" => match plain_core(&text) {
                    Plain::Number(n) => Ok(Value::Number(
                        n.as_f64().and_then(Number::from_f64).unwrap_or(n),
                    )),
                    Plain::NonFinite => Err(YamlErrorKind::NonFinite),
                    _ => Err(mismatch()),
                },
                // `!!map` / `!!seq` on a scalar.
                _ => Err(mismatch()),
            }
        }
        ScalarTag::None if style != ScalarStyle::Plain => Ok(Value::String(text.into_owned())),
        ScalarTag::None => {
            if let Some(trap) = yaml11_trap(&text) {
                return Err(match trap {
                    Yaml11Trap::Boolean => YamlErrorKind::Yaml11Boolean { role },
                    Yaml11Trap::LeadingZero => YamlErrorKind::Yaml11LeadingZero { role },
                    Yaml11Trap::NumberSyntax => YamlErrorKind::Yaml11Number { role },
                });
            }
            match plain_core(&text) {
                Plain::Null => Ok(Value::Null),
                Plain::Bool(b) => Ok(Value::Bool(b)),
                Plain::Number(n) => Ok(Value::Number(n)),
                Plain::NonFinite => Err(YamlErrorKind::NonFinite),
                Plain::String => Ok(Value::String(text.into_owned())),
            }
        }
    }
}

/// Go's `base64.StdEncoding`, which go-yaml v2 decodes `!!binary` with:
/// padding required, non-zero trailing bits accepted.
const GO_STD_BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(DecodePaddingMode::RequireCanonical),
);

/// A `!!binary` scalar as kubectl reads it (sigs.k8s.io/yaml on go-yaml
/// v2): line breaks dropped, base64-decoded, and the bytes taken as a
/// string, so that JSON carries the decoded text, not the base64 text.
/// Bytes that are not UTF-8 are refused: Go's JSON encoder would replace
/// each invalid byte with U+FFFD.
fn binary(text: &str) -> Result<Value, YamlErrorKind> {
    let compact = if text.contains(['\r', '\n']) {
        Cow::Owned(text.replace(['\r', '\n'], ""))
    } else {
        Cow::Borrowed(text)
    };
    let bytes = GO_STD_BASE64
        .decode(compact.as_bytes())
        .map_err(|_| YamlErrorKind::BinaryNotBase64)?;
    String::from_utf8(bytes)
        .map(Value::String)
        .map_err(|_| YamlErrorKind::BinaryNotText)
}

/// What a plain scalar means in the YAML 1.2 core schema.
#[derive(Debug, PartialEq)]
enum Plain {
    Null,
    Bool(bool),
    Number(Number),
    NonFinite,
    String,
}

fn plain_core(s: &str) -> Plain {
    match s {
        "" | "~" | "null" | "Null" | "NULL" => return Plain::Null,
        "true" | "True" | "TRUE" => return Plain::Bool(true),
        "false" | "False" | "FALSE" => return Plain::Bool(false),
        _ => {}
    }
    let first = s.as_bytes()[0];
    if !(first.is_ascii_digit() || matches!(first, b'-' | b'+' | b'.')) {
        return Plain::String;
    }
    let unsigned = s.strip_prefix(['-', '+']).unwrap_or(s);
    if matches!(unsigned, ".inf" | ".Inf" | ".INF") || matches!(s, ".nan" | ".NaN" | ".NAN") {
        return Plain::NonFinite;
    }
    if let Some(hex) = s.strip_prefix("0x") {
        return radix(hex, 16);
    }
    if let Some(octal) = s.strip_prefix("0o") {
        return radix(octal, 8);
    }
    if !unsigned.is_empty() && unsigned.bytes().all(|b| b.is_ascii_digit()) {
        if let Ok(i) = s.parse::<i64>() {
            return Plain::Number(i.into());
        }
        if let Ok(u) = s.parse::<u64>() {
            return Plain::Number(u.into());
        }
        return float(s);
    }
    if is_core_float(unsigned) {
        return float(s);
    }
    Plain::String
}

fn radix(digits: &str, radix: u32) -> Plain {
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return Plain::String;
    }
    match u64::from_str_radix(digits, radix) {
        Ok(u) => Plain::Number(u.into()),
        Err(_) => Plain::String,
    }
}

fn float(s: &str) -> Plain {
    match s.parse::<f64>() {
        Ok(f) if f.is_finite() => Number::from_f64(f).map_or(Plain::NonFinite, Plain::Number),
        Ok(_) => Plain::NonFinite,
        Err(_) => Plain::String,
    }
}

/// `(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?` (sign already removed).
fn is_core_float(s: &str) -> bool {
    let (mantissa, exponent) = match s.find(['e', 'E']) {
        Some(at) => (&s[..at], Some(&s[at + 1..])),
        None => (s, None),
    };
    let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    let mantissa_ok = match mantissa.split_once('.') {
        Some(("", fraction)) => digits(fraction),
        Some((whole, fraction)) => digits(whole) && (fraction.is_empty() || digits(fraction)),
        None => digits(mantissa),
    };
    let exponent_ok = exponent.is_none_or(|e| digits(e.strip_prefix(['-', '+']).unwrap_or(e)));
    mantissa_ok && exponent_ok
}

/// Whether YAML 1.1 (go-yaml v2, as Kubernetes reads it) gives this plain
/// scalar a different meaning than YAML 1.2 does.
pub(crate) fn yaml11_trap(s: &str) -> Option<Yaml11Trap> {
    if s.len() <= 3
        && ["y", "yes", "n", "no", "on", "off"]
            .iter()
            .any(|word| s.eq_ignore_ascii_case(word))
    {
        return Some(Yaml11Trap::Boolean);
    }
    let first = *s.as_bytes().first()?;
    if !(first.is_ascii_digit() || matches!(first, b'-' | b'+' | b'.' | b'_')) {
        return None;
    }
    let unsigned = s.strip_prefix(['-', '+']).unwrap_or(s);
    let bytes = unsigned.as_bytes();
    if bytes.len() > 1
        && bytes[0] == b'0'
        && bytes[1..].iter().all(|b| b.is_ascii_digit() || *b == b'_')
        && bytes[1..].iter().any(u8::is_ascii_digit)
    {
        return Some(Yaml11Trap::LeadingZero);
    }
    // go-yaml v2 drops every `_`, then tries Go's ParseInt(s, 0, 64) (which
    // takes signs and 0x/0X/0o/0O/0b/0B prefixes) and its float pattern.
    let go_yaml = if s.contains('_') {
        Cow::Owned(s.replace('_', ""))
    } else {
        Cow::Borrowed(s)
    };
    if go_number(&go_yaml) && matches!(plain_core(s), Plain::String) {
        return Some(Yaml11Trap::NumberSyntax);
    }
    None
}

/// Go's `strconv.ParseInt(s, 0, 64)` syntax or go-yaml v2's float pattern.
fn go_number(s: &str) -> bool {
    let unsigned = s.strip_prefix(['-', '+']).unwrap_or(s);
    let prefixed = |prefixes: [&str; 2], radix: u32| {
        prefixes.iter().any(|p| {
            unsigned.strip_prefix(p).is_some_and(|digits| {
                !digits.is_empty() && digits.chars().all(|c| c.is_digit(radix))
            })
        })
    };
    prefixed(["0x", "0X"], 16)
        || prefixed(["0o", "0O"], 8)
        || prefixed(["0b", "0B"], 2)
        || (!unsigned.is_empty() && unsigned.bytes().all(|b| b.is_ascii_digit()))
        || is_core_float(unsigned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const LIMITS: YamlLimits = YamlLimits {
        max_documents: 100,
        max_depth: 20,
        max_alias_nodes: 1000,
    };

    fn one(text: &str) -> Value {
        let mut docs = load_documents(text, &LIMITS).unwrap();
        assert_eq!(docs.len(), 1, "{text}");
        docs.remove(0).value
    }

    /// The first error of `text`.
    fn error(text: &str) -> YamlError {
        errors(text).errors.remove(0)
    }

    fn errors(text: &str) -> YamlErrors {
        load_documents(text, &LIMITS).unwrap_err()
    }

    /// Line, column and kind of each error.
    fn found(text: &str) -> Vec<(usize, usize, YamlErrorKind)> {
        errors(text)
            .errors
            .into_iter()
            .map(|e| (e.line, e.column, e.kind))
            .collect()
    }

    #[test]
    fn reads_core_schema_scalars() {
        let value = one(concat!(
            "a: ~\nb: null\nc: true\nd: False\ne: 12\nf: -3\ng: 0x1F\nh: 0o17\ni: 1.5\n",
            "j: .5\nk: 1e3\nl: text\nm: '0755'\n\"n\": \"yes\"\no: 0\np: 2001-12-14\nq: 1.2.3\n",
            "r: 18446744073709551615\ns: +7\nt: ''\nu:\nv: !!str 12\nw: !!float 1\n",
        ));
        assert_eq!(
            value,
            json!({
                "a": null, "b": null, "c": true, "d": false, "e": 12, "f": -3, "g": 31,
                "h": 15, "i": 1.5, "j": 0.5, "k": 1000.0, "l": "text", "m": "0755",
                "n": "yes", "o": 0, "p": "2001-12-14", "q": "1.2.3",
                "r": 18446744073709551615u64, "s": 7, "t": "", "u": null, "v": "12", "w": 1.0,
            })
        );
    }

    #[test]
    fn splits_documents_and_skips_empty_ones() {
        let text = "a: 1\n---\n# only a comment\n---\n---\nb: 2\n...\n---\n~\n";
        let docs = load_documents(text, &LIMITS).unwrap();
        let seen: Vec<_> = docs.iter().map(|d| (d.index, d.value.clone())).collect();
        assert_eq!(seen, [(1, json!({"a": 1})), (4, json!({"b": 2}))]);
        assert!(load_documents("", &LIMITS).unwrap().is_empty());
        assert!(load_documents("# nothing\n", &LIMITS).unwrap().is_empty());
    }

    #[test]
    fn refuses_every_yaml11_boolean_spelling_in_values_and_keys() {
        for word in [
            "y", "Y", "yes", "Yes", "YES", "yEs", "n", "N", "no", "No", "NO", "on", "On", "ON",
            "off", "Off", "OFF",
        ] {
            let e = error(&format!("a:\n  b: {word}\n"));
            assert_eq!(
                (e.line, e.column, &e.kind),
                (
                    2,
                    6,
                    &YamlErrorKind::Yaml11Boolean {
                        role: ScalarRole::Value
                    }
                ),
                "{word}"
            );
            assert!(e.to_string().contains("quote it (\"yes\")"), "{e}");
            let e = error(&format!("x: 1\n{word}: 1\n"));
            assert_eq!(
                (e.line, e.column, &e.kind),
                (
                    2,
                    1,
                    &YamlErrorKind::Yaml11Boolean {
                        role: ScalarRole::Key
                    }
                ),
                "{word}"
            );
            // In a flow list too.
            let e = error(&format!("list: [a, {word}]\n"));
            assert_eq!((e.line, e.column), (1, 11), "{word}");
        }
    }

    #[test]
    fn refuses_leading_zero_numbers_but_not_zero_or_fractions() {
        for number in ["0755", "012", "00", "-017", "+0644", "0_7"] {
            let e = error(&format!("mode: {number}\n"));
            assert!(
                matches!(
                    e.kind,
                    YamlErrorKind::Yaml11LeadingZero { .. } | YamlErrorKind::Yaml11Number { .. }
                ),
                "{number}: {e}"
            );
            assert_eq!((e.line, e.column), (1, 7));
            let e = error(&format!("{number}: x\n"));
            assert!(e.to_string().contains("unquoted key"), "{e}");
        }
        assert!(matches!(
            error("mode: 0755\n").kind,
            YamlErrorKind::Yaml11LeadingZero {
                role: ScalarRole::Value
            }
        ));
        assert_eq!(
            one("a: 0\nb: 0.5\nc: -0\nd: 00.5\ne: 10\n"),
            json!({"a": 0, "b": 0.5, "c": 0, "d": 0.5, "e": 10})
        );
    }

    #[test]
    fn refuses_yaml11_only_number_syntax() {
        for number in [
            "1_000", "0b1010", "-0b1", "0X1F", "+0x1F", "-0o17", "0O17", "1_0.5",
        ] {
            let e = error(&format!("v: {number}\n"));
            assert!(
                matches!(e.kind, YamlErrorKind::Yaml11Number { .. }),
                "{number}: {e}"
            );
        }
        // Not numbers in either version: strings.
        assert_eq!(
            one("a: _\nb: 1_a\nc: 0xZZ\nd: 1-2\n"),
            json!({"a": "_", "b": "1_a", "c": "0xZZ", "d": "1-2"})
        );
    }

    #[test]
    fn quoted_block_and_tagged_scalars_pass() {
        let value = one(concat!(
            "a: \"yes\"\nb: 'on'\nc: |\n  yes\nd: >\n  off\ne: !!str no\nf: \"0755\"\n",
            "g: ! y\n\"n\": 1\n'off': 2\n",
        ));
        assert_eq!(
            value,
            json!({"a": "yes", "b": "on", "c": "yes\n", "d": "off\n", "e": "no", "f": "0755",
                   "g": "y", "n": 1, "off": 2})
        );
        // `True` agrees in both versions.
        assert_eq!(one("a: True\n"), json!({"a": true}));
    }

    #[test]
    fn errors_name_document_line_and_column_without_content() {
        let e = error("a: 1\n---\nkind: Secret\nstringData:\n  password: [hunter2\n");
        assert_eq!(e.document, 2);
        assert!(e.line >= 4, "{e}");
        assert!(!e.to_string().contains("hunter2"), "{e}");
        let e = error("a: 1\n  b: 2\n");
        assert_eq!((e.document, e.line), (1, 2), "{e}");
        assert!(matches!(e.kind, YamlErrorKind::Syntax(_)));
        let e = error("key: \"unterminated\n");
        assert!(matches!(e.kind, YamlErrorKind::Syntax(_)), "{e}");
        let e = error("a: 1\n\tb: 2\n");
        assert!(!e.to_string().contains('\t'), "{e}");
    }

    #[test]
    fn duplicate_and_complex_keys_are_refused() {
        let e = error("a: 1\nb:\n  c: 1\n  c: 2\n");
        assert_eq!(
            (e.line, e.column, &e.kind),
            (4, 3, &YamlErrorKind::DuplicateKey { key: "c".into() })
        );
        assert_eq!(
            e.to_string(),
            "document 1, line 4 column 3: duplicate mapping key `c`"
        );
        let e = error("? [a, b]\n: 1\n");
        assert_eq!(e.kind, YamlErrorKind::ComplexKey);
        let e = error("{a: 1}: 2\n");
        assert_eq!(e.kind, YamlErrorKind::ComplexKey);
    }

    #[test]
    fn non_string_keys_become_strings() {
        assert_eq!(
            one("1: a\ntrue: b\n~: c\n0x10: d\n1.5: e\n"),
            json!({"1": "a", "true": "b", "null": "c", "16": "d", "1.5": "e"})
        );
    }

    #[test]
    fn anchors_aliases_and_merge_keys() {
        let value = one(concat!(
            "base: &base {a: 1, b: 2}\n",
            "list: &l [p, q]\n",
            "copy: *l\n",
            "merged:\n  <<: *base\n  b: 3\n",
            "many:\n  <<: [*base, {c: 4, a: 9}]\n",
        ));
        assert_eq!(
            value,
            json!({
                "base": {"a": 1, "b": 2}, "list": ["p", "q"], "copy": ["p", "q"],
                "merged": {"a": 1, "b": 3}, "many": {"a": 1, "b": 2, "c": 4},
            })
        );
        assert_eq!(error("a:\n  <<: 1\n").kind, YamlErrorKind::BadMerge);
    }

    #[test]
    fn billion_laughs_fails_fast() {
        let mut text = String::from("a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
        for level in 1..12 {
            let previous = format!("*a{}", level - 1);
            let refs = [previous.as_str(); 9].join(", ");
            text.push_str(&format!("a{level}: &a{level} [{refs}]\n"));
        }
        let started = std::time::Instant::now();
        let e = error(&text);
        assert_eq!(e.kind, YamlErrorKind::AliasExpansion { limit: 1000 });
        assert!(e.to_string().contains("limit of 1000 nodes"), "{e}");
        // Not a timing assertion on speed, a sanity bound: it must not
        // expand 9^11 nodes first.
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
    }

    #[test]
    fn nesting_depth_is_limited_in_block_flow_and_aliases() {
        let deep_flow = format!("a: {}{}\n", "[".repeat(25), "]".repeat(25));
        let e = error(&deep_flow);
        assert_eq!(e.kind, YamlErrorKind::TooDeep { limit: 20 });
        let mut deep_block = String::new();
        for level in 0..25 {
            deep_block.push_str(&format!("{}k{level}:\n", "  ".repeat(level)));
        }
        deep_block.push_str(&format!("{}leaf: 1\n", "  ".repeat(25)));
        let e = error(&deep_block);
        assert_eq!(e.kind, YamlErrorKind::TooDeep { limit: 20 });
        assert!(e.to_string().contains("limit of 20 levels"), "{e}");
        // 15 levels anchored, then aliased 10 levels down: 25 > 20.
        let anchored = format!("a: &x {}{}\n", "[".repeat(15), "]".repeat(15));
        let mut aliased = String::from("b:\n");
        for level in 1..10 {
            aliased.push_str(&format!("{}c{level}:\n", "  ".repeat(level)));
        }
        aliased.push_str(&format!("{}d: *x\n", "  ".repeat(10)));
        let e = error(&format!("{anchored}{aliased}"));
        assert_eq!(e.kind, YamlErrorKind::TooDeep { limit: 20 });
        // Exactly at the limit is fine.
        one(&format!("a: {}{}\n", "[".repeat(19), "]".repeat(19)));
    }

    #[test]
    fn document_count_is_limited() {
        let text = "a: 1\n---\n".repeat(101);
        let e = error(&text);
        assert_eq!(e.kind, YamlErrorKind::TooManyDocuments { limit: 100 });
        assert_eq!(e.document, 101);
        assert_eq!(
            load_documents(&"a: 1\n---\n".repeat(99), &LIMITS)
                .unwrap()
                .len(),
            99
        );
    }

    #[test]
    fn infinity_and_unknown_tags_are_refused() {
        assert_eq!(error("a: .inf\n").kind, YamlErrorKind::NonFinite);
        assert_eq!(error("a: -.Inf\n").kind, YamlErrorKind::NonFinite);
        assert_eq!(error("a: .nan\n").kind, YamlErrorKind::NonFinite);
        assert!(matches!(
            error("a: !Ref x\n").kind,
            YamlErrorKind::UnsupportedTag { .. }
        ));
        assert!(matches!(
            error("a: !!int x\n").kind,
            YamlErrorKind::TagMismatch { .. }
        ));
        assert_eq!(
            one("a: !!timestamp 2001-12-14\n"),
            json!({"a": "2001-12-14"})
        );
    }

    #[test]
    fn duplicate_keys_are_named_even_when_long_or_odd() {
        assert_eq!(
            found("a: 1\na: 2\n"),
            [(2, 1, YamlErrorKind::DuplicateKey { key: "a".into() })]
        );
        // Keys that read the same are the same key: `1` and `"1"`.
        assert_eq!(
            found("\"1\": a\n1: b\n"),
            [(2, 1, YamlErrorKind::DuplicateKey { key: "1".into() })]
        );
        let long = "k".repeat(70);
        let e = error(&format!("{long}: 1\n{long}: 2\n"));
        assert_eq!(
            e.kind,
            YamlErrorKind::DuplicateKey {
                key: format!("{}…", "k".repeat(60))
            }
        );
        let e = error("\"a\\nb\": 1\n\"a\\nb\": 2\n");
        assert_eq!(
            e.to_string(),
            r"document 1, line 2 column 1: duplicate mapping key `a\nb`"
        );
        // Every duplicate of a mapping, each once.
        assert_eq!(
            found("a: 1\nb: 2\na: 3\nb: 4\na: 5\n"),
            [
                (3, 1, YamlErrorKind::DuplicateKey { key: "a".into() }),
                (4, 1, YamlErrorKind::DuplicateKey { key: "b".into() }),
                (5, 1, YamlErrorKind::DuplicateKey { key: "a".into() }),
            ]
        );
    }

    #[test]
    fn every_recoverable_error_of_a_file_is_reported_in_order() {
        let text = concat!(
            "a: yes\n",             // 1: YAML 1.1 boolean value
            "0755: x\n",            // 2: YAML 1.1 leading zero key
            "c:\n  d: 1\n  d: 2\n", // 3-5: duplicate key
            "? [x]\n: ignored\n",   // 6-7: complex key (its value dropped)
            "e: !Ref x\n",          // 8: unknown tag
            "f:\n  <<: 1\n",        // 9-10: bad merge
            "g: !!binary abc\n",    // 11: not base64
            "---\nh: .inf\n",       // 13: second document
            "i: [unclosed\n",       // syntax error: ends the file
            "j: no\n",              // never read
        );
        let kinds: Vec<_> = found(text)
            .into_iter()
            .map(|(line, column, kind)| (line, column, std::mem::discriminant(&kind)))
            .collect();
        let d = std::mem::discriminant;
        let role = ScalarRole::Value;
        let syntax = YamlErrorKind::Syntax(String::new());
        assert_eq!(
            kinds[..9],
            [
                (1, 4, d(&YamlErrorKind::Yaml11Boolean { role })),
                (2, 1, d(&YamlErrorKind::Yaml11LeadingZero { role })),
                (5, 3, d(&YamlErrorKind::DuplicateKey { key: String::new() })),
                (6, 3, d(&YamlErrorKind::ComplexKey)),
                // A tagged scalar's position is its text's, after the tag.
                (
                    8,
                    9,
                    d(&YamlErrorKind::UnsupportedTag { tag: String::new() })
                ),
                (10, 3, d(&YamlErrorKind::BadMerge)),
                (11, 13, d(&YamlErrorKind::BinaryNotBase64)),
                (13, 4, d(&YamlErrorKind::NonFinite)),
                (kinds[8].0, kinds[8].1, d(&syntax)),
            ]
        );
        assert_eq!(kinds.len(), 9, "{kinds:?}");
        let all = errors(text);
        assert_eq!(all.errors[7].document, 2);
        let shown = all.to_string();
        assert!(
            shown.starts_with("9 errors:\n- document 1, line 1 column 4: "),
            "{shown}"
        );
        assert_eq!(shown.lines().count(), 10, "{shown}");
    }

    #[test]
    fn a_complex_key_from_an_alias_drops_its_value_too() {
        assert_eq!(
            found("base: &b [1]\n*b : x\nnext: yes\n"),
            [
                (2, 1, YamlErrorKind::ComplexKey),
                (
                    3,
                    7,
                    YamlErrorKind::Yaml11Boolean {
                        role: ScalarRole::Value
                    }
                ),
            ]
        );
    }

    #[test]
    fn errors_per_file_are_limited_with_a_count() {
        let text: String = (0..(MAX_ERRORS + 7))
            .map(|i| format!("k{i}: on\n"))
            .collect();
        let all = errors(&text);
        assert_eq!((all.errors.len(), all.more), (MAX_ERRORS, 7));
        let shown = all.to_string();
        assert!(
            shown.starts_with(&format!("{} errors:\n", MAX_ERRORS + 7)),
            "{shown}"
        );
        assert!(shown.ends_with("\n- … and 7 more errors"), "{shown}");
    }

    #[test]
    fn binary_values_are_decoded_as_kubectl_decodes_them() {
        // As sigs.k8s.io/yaml (go-yaml v2) gives them to kubectl: the
        // decoded bytes, as text, not the base64 text.
        assert_eq!(
            one(concat!(
                "a: !!binary aGVsbG8=\n",
                "b: !!binary |\n  aGVs\n  bG8=\n",
                "c: !!binary \"aGVs\\r\\nbG8=\"\n",
                "d: !!binary aGVsbG9=\n", // non-zero trailing bits: Go accepts
                "e: !!binary ''\n",
                "f: !!binary 4pyTIMOgIGxhIG1vZGU=\n",
                "!!binary a2V5: g\n",
                "h: !<tag:yaml.org,2002:binary> aGk=\n",
            )),
            json!({"a": "hello", "b": "hello", "c": "hello", "d": "hello", "e": "",
                   "f": "✓ à la mode", "key": "g", "h": "hi"})
        );
        // What Go's decoder refuses: no padding, spaces, folded lines.
        for bad in ["aGVsbG8", "\"aGVs bG8=\"", ">\n  aGVs\n  bG8=", "aGVsbG8=="] {
            let e = error(&format!("a: !!binary {bad}\n"));
            assert_eq!(e.kind, YamlErrorKind::BinaryNotBase64, "{bad}");
        }
        // Bytes that are not UTF-8 (0xff): kubectl would send U+FFFD.
        let e = error("a: !!binary /w==\n");
        assert_eq!(e.kind, YamlErrorKind::BinaryNotText);
        assert!(e.to_string().contains("U+FFFD"), "{e}");
    }

    #[test]
    fn the_leading_zero_hint_gives_the_octal_and_decimal_spellings() {
        let e = error("defaultMode: 0755\n");
        let message = e.to_string();
        for advice in [
            "0755 → 0o755",
            "0755 → 493",
            "0755 → 755",
            "quote it (\"0755\") only if the field is a string",
        ] {
            assert!(message.contains(advice), "{advice}: {message}");
        }
        // Each spelling it offers reads as the number it says.
        assert_eq!(
            one("a: 0o755\nb: 493\nc: 755\n"),
            json!({"a": 493, "b": 493, "c": 755})
        );
        // The hint uses an example, never the scalar (a PIN in a Secret).
        let message = error("pin: 0123\n").to_string();
        assert!(
            !message.contains("0123") && !message.contains("83"),
            "{message}"
        );
    }

    #[test]
    fn single_document_files() {
        assert_eq!(load_single("", &LIMITS).unwrap(), None);
        assert_eq!(
            load_single("a: 1\n", &LIMITS).unwrap(),
            Some(json!({"a": 1}))
        );
        assert!(load_single("a: 1\n---\nb: 2\n", &LIMITS).is_err());
    }

    #[test]
    fn written_yaml_reads_back_identically_without_traps() {
        let tricky = [
            "yes",
            "No",
            "ON",
            "y",
            "N",
            "0755",
            "012",
            "1_000",
            "0b101",
            "0X1F",
            "+0x1F",
            "0o17",
            "true",
            "null",
            "~",
            "",
            "1.5",
            "-",
            "a: b",
            "#x",
            ".inf",
            "<<",
            "2001-12-14",
            "line1\nline2\n",
            " lead",
            "trail ",
            "tab\there",
            "é",
            "@at",
            "`tick",
            "*star",
            "&amp",
            "!bang",
            "%pct",
            "{x}",
            "[y]",
            "'q'",
            "\"dq\"",
        ];
        let value = Value::Object(
            tricky
                .iter()
                .enumerate()
                .map(|(i, s)| (format!("k{i}"), Value::String((*s).to_string())))
                .chain(tricky.iter().map(|s| ((*s).to_string(), json!(1))))
                .collect(),
        );
        let text = to_yaml(&value);
        assert_eq!(one(&text), value, "{text}");
    }

    #[test]
    fn trap_detection_table() {
        for s in ["yes", "Off", "0755", "1_000", "0b1", "0X1", "+0x1", "-0o1"] {
            assert!(yaml11_trap(s).is_some(), "{s}");
        }
        for s in [
            "0",
            "-0",
            "0.5",
            "10",
            "0x1F",
            "0o17",
            "1e3",
            "true",
            "hello",
            "yesterday",
            "o",
            "",
            "0x",
            "1.2.3",
        ] {
            assert_eq!(yaml11_trap(s), None, "{s}");
        }
    }
}
