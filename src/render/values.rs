//! Chart values: layering and `--set`.
//!
//! ```text
//!   values.yaml ─► values/<env>.yaml ─► caller values (in order) ─► --set, --set-string
//!   (lowest)                                                         (highest)
//!                      └──────── merge ────────┘
//!                      maps merge deeply, lists replace, null removes a key
//! ```
//!
//! `--set` reads Helm's syntax, so that what works with `helm --set` works
//! here:
//!
//! | argument | values |
//! | --- | --- |
//! | `image.tag=1.2.3` | `image: {tag: 1.2.3}` |
//! | `a=1,b=2` | two assignments; `\,` is a comma inside a value |
//! | `hosts={a.example,b.example}` | a list (`{}` is an empty one) |
//! | `ports[0].name=http` | an item of a list, which grows with nulls as needed |
//! | `annotations.example\.com/team=web` | `\.` is a dot inside a key; `\` escapes any character |
//!
//! A value is typed like a plain YAML 1.2 scalar (`1` a number, `true` a
//! boolean, `null` removes the key), except spellings YAML 1.1 reads
//! differently (`yes`, `0755`), which stay strings. `--set-string` keeps
//! every value a string. Unlike Helm, `--set` applies to the layered values,
//! so `ports[1].name=x` changes the second port of the chart's list instead
//! of replacing the list with `[null, {name: x}]`.

use std::fmt;

use serde_json::{Map, Value};

use super::yaml::yaml11_trap;

/// The largest list index `--set` accepts (as Helm's): a typo must not
/// allocate a list of millions of nulls.
const MAX_INDEX: usize = 65_535;

/// One `--set` or `--set-string` assignment.
#[derive(Clone, PartialEq)]
pub struct SetValue {
    /// Key path: `a.b[0].c` is `[Key(a), Key(b), Index(0), Key(c)]`. Never
    /// empty, and it starts with a key.
    pub path: Vec<PathStep>,
    /// A scalar, or a list of scalars.
    pub value: Value,
}

/// One step of a `--set` key path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathStep {
    Key(String),
    Index(usize),
}

// Values may be secrets: show the path only.
impl fmt::Debug for SetValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SetValue")
            .field("path", &path_text(&self.path))
            .finish_non_exhaustive()
    }
}

/// A key path as it is written on the command line: `a.b[0].c`.
fn path_text(path: &[PathStep]) -> String {
    let mut text = String::new();
    for step in path {
        match step {
            PathStep::Key(key) => {
                if !text.is_empty() {
                    text.push('.');
                }
                text.push_str(&key.replace('.', "\\."));
            }
            PathStep::Index(index) => text.push_str(&format!("[{index}]")),
        }
    }
    text
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SetError {
    #[error("`--set {arg}`: expected KEY=VALUE, e.g. --set image.tag=1.2.3")]
    Syntax { arg: String },

    #[error(
        "`--set {key}=...`: the text after a comma has no `=`; commas separate assignments \
         (a=1,b=2), so write `\\,` for a comma inside a value"
    )]
    NoValueAfterComma { key: String },

    #[error("`--set {key}=...`: the key path has an empty part")]
    EmptyKey { key: String },

    #[error(
        "`--set {key}=...`: a list index is a number from 0 to {MAX_INDEX} in brackets, \
         e.g. ports[0].name=http"
    )]
    BadIndex { key: String },

    #[error("`--set {key}=...`: the list `{{...}}` has no closing `}}`")]
    UnclosedList { key: String },

    #[error(
        "`--set {key}=...`: text follows the list's closing `}}`; write `\\}}` for a brace \
         inside a value"
    )]
    TextAfterList { key: String },

    #[error(
        "`--set {key}`: `{parent}` is already set to a value that is not a map, so it cannot \
         hold `{child}`"
    )]
    NotAMap {
        key: String,
        parent: String,
        child: String,
    },

    #[error(
        "`--set {key}`: `{parent}` is already set to a value that is not a list, so it has \
         no item [{index}]"
    )]
    NotAList {
        key: String,
        parent: String,
        index: usize,
    },
}

impl SetValue {
    /// One `--set` argument: comma-separated `key.path=value` assignments,
    /// values typed.
    pub fn parse(arg: &str) -> Result<Vec<SetValue>, SetError> {
        parse_assignments(arg, typed)
    }

    /// One `--set-string` argument: the same syntax, every value a string.
    pub fn parse_string(arg: &str) -> Result<Vec<SetValue>, SetError> {
        parse_assignments(arg, |raw| Value::String(raw.to_string()))
    }

    /// The key path as it is written: `a.b[0].c`, `\.` for a dot in a key.
    pub fn key(&self) -> String {
        path_text(&self.path)
    }
}

/// A character of an argument, and whether a backslash escaped it.
#[derive(Clone, Copy)]
struct Char {
    c: char,
    escaped: bool,
}

impl Char {
    fn is(self, c: char) -> bool {
        self.c == c && !self.escaped
    }
}

/// Reads up to the first unescaped `stop` character, which is consumed and
/// returned (`None`: the end of the argument).
fn read_until(rest: &mut impl Iterator<Item = Char>, stops: &[char]) -> (Vec<Char>, Option<char>) {
    let mut read = Vec::new();
    for ch in rest {
        if !ch.escaped && stops.contains(&ch.c) {
            return (read, Some(ch.c));
        }
        read.push(ch);
    }
    (read, None)
}

fn text(chars: &[Char]) -> String {
    chars.iter().map(|ch| ch.c).collect()
}

/// `key=value` assignments separated by commas; `make` turns each raw value
/// (or list item) into a value.
fn parse_assignments(arg: &str, make: fn(&str) -> Value) -> Result<Vec<SetValue>, SetError> {
    let mut chars = Vec::with_capacity(arg.len());
    let mut source = arg.chars();
    while let Some(c) = source.next() {
        chars.push(match c {
            '\\' => Char {
                c: source.next().unwrap_or('\\'),
                escaped: true,
            },
            c => Char { c, escaped: false },
        });
    }
    let mut rest = chars.into_iter().peekable();
    let mut assignments: Vec<SetValue> = Vec::new();
    loop {
        let (key, stop) = read_until(&mut rest, &['=', ',']);
        if stop != Some('=') {
            // After a comma, this is likely the rest of a value that holds
            // a comma: never echo it.
            return Err(match assignments.last() {
                None => SetError::Syntax { arg: key_only(arg) },
                Some(previous) => SetError::NoValueAfterComma {
                    key: path_text(&previous.path),
                },
            });
        }
        let path = key_path(&key)?;
        let (value, more) = if rest.peek().is_some_and(|ch| ch.is('{')) {
            rest.next();
            let mut items = Vec::new();
            loop {
                let (item, stop) = read_until(&mut rest, &[',', '}']);
                match stop {
                    Some(',') => items.push(make(&text(&item))),
                    Some(_) => {
                        // `{}` is an empty list; `{a,}` ends with "".
                        if !item.is_empty() || !items.is_empty() {
                            items.push(make(&text(&item)));
                        }
                        break;
                    }
                    None => {
                        return Err(SetError::UnclosedList {
                            key: path_text(&path),
                        });
                    }
                }
            }
            let more = match rest.next() {
                None => false,
                Some(ch) if ch.is(',') => true,
                Some(_) => {
                    return Err(SetError::TextAfterList {
                        key: path_text(&path),
                    });
                }
            };
            (Value::Array(items), more)
        } else {
            let (raw, stop) = read_until(&mut rest, &[',']);
            (make(&text(&raw)), stop.is_some())
        };
        assignments.push(SetValue { path, value });
        if !more {
            return Ok(assignments);
        }
    }
}

/// `a.b[0].c` into steps; `\.` and `\[` are part of a key.
fn key_path(key: &[Char]) -> Result<Vec<PathStep>, SetError> {
    let empty = || SetError::EmptyKey { key: text(key) };
    let bad_index = || SetError::BadIndex { key: text(key) };
    let mut path = Vec::new();
    let mut part = String::new();
    let mut chars = key.iter().copied().peekable();
    // Whether the last step was an index: then a `.`, a `[` or the end
    // may follow without a key part in between.
    let mut after_index = false;
    while let Some(ch) = chars.next() {
        if ch.is('.') {
            if part.is_empty() && !after_index {
                return Err(empty());
            }
            if !part.is_empty() {
                path.push(PathStep::Key(std::mem::take(&mut part)));
            }
            after_index = false;
            if chars.peek().is_none_or(|next| next.is('.') || next.is('[')) {
                return Err(empty());
            }
        } else if ch.is('[') {
            if !part.is_empty() {
                path.push(PathStep::Key(std::mem::take(&mut part)));
            } else if path.is_empty() {
                return Err(empty());
            }
            let mut digits = String::new();
            let mut closed = false;
            for ch in chars.by_ref() {
                if ch.is(']') {
                    closed = true;
                    break;
                }
                digits.push(ch.c);
            }
            let index = match digits.parse::<usize>() {
                Ok(index)
                    if closed
                        && index <= MAX_INDEX
                        && digits.bytes().all(|b| b.is_ascii_digit()) =>
                {
                    index
                }
                _ => return Err(bad_index()),
            };
            path.push(PathStep::Index(index));
            after_index = true;
            if chars
                .peek()
                .is_some_and(|next| !next.is('.') && !next.is('['))
            {
                return Err(bad_index());
            }
        } else {
            part.push(ch.c);
        }
    }
    if !part.is_empty() {
        path.push(PathStep::Key(part));
    } else if !after_index {
        return Err(empty());
    }
    Ok(path)
}

/// The part of a bad argument that is safe to echo (no value).
fn key_only(arg: &str) -> String {
    arg.chars().take(60).collect()
}

/// A `--set` value's type, as a plain YAML 1.2 scalar would have it.
fn typed(raw: &str) -> Value {
    if yaml11_trap(raw).is_some() {
        return Value::String(raw.to_string());
    }
    match raw {
        "" => return Value::String(String::new()),
        "null" | "~" => return Value::Null,
        "true" => return Value::Bool(true),
        "false" => return Value::Bool(false),
        _ => {}
    }
    if let Ok(i) = raw.parse::<i64>() {
        return Value::Number(i.into());
    }
    let looks_numeric = raw
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'-' | b'+' | b'.' | b'e' | b'E'));
    if looks_numeric
        && raw.bytes().any(|b| b.is_ascii_digit())
        && let Ok(f) = raw.parse::<f64>()
        && let Some(n) = serde_json::Number::from_f64(f)
    {
        return Value::Number(n);
    }
    Value::String(raw.to_string())
}

/// Merges `overlay` into `base`: maps merge deeply, anything else
/// replaces, and a `null` removes the key.
pub fn merge(base: &mut Map<String, Value>, overlay: Map<String, Value>) {
    for (key, value) in overlay {
        match value {
            Value::Null => {
                base.remove(&key);
            }
            Value::Object(inner) => match base.get_mut(&key) {
                Some(Value::Object(existing)) => merge(existing, inner),
                _ => {
                    let mut fresh = Map::new();
                    merge(&mut fresh, inner);
                    base.insert(key, Value::Object(fresh));
                }
            },
            other => {
                base.insert(key, other);
            }
        }
    }
}

/// Applies one `--set`: maps and lists on the way are created as needed,
/// a list grows with nulls up to the index, and `null` removes a key (in a
/// list it sets the item to null).
pub fn apply_set(values: &mut Map<String, Value>, set: &SetValue) -> Result<(), SetError> {
    let mut root = Value::Object(std::mem::take(values));
    let result = set_in(&mut root, set);
    let Value::Object(map) = root else {
        unreachable!("set_in never replaces the root map")
    };
    *values = map;
    result
}

fn set_in(root: &mut Value, set: &SetValue) -> Result<(), SetError> {
    let mut current = root;
    for (depth, step) in set.path.iter().enumerate() {
        let last = depth + 1 == set.path.len();
        let slot = match (step, current) {
            (PathStep::Key(key), Value::Object(map)) => {
                if last {
                    match &set.value {
                        Value::Null => {
                            map.remove(key);
                        }
                        value => {
                            map.insert(key.clone(), value.clone());
                        }
                    }
                    return Ok(());
                }
                map.entry(key.clone()).or_insert(Value::Null)
            }
            (PathStep::Index(index), Value::Array(items)) => {
                if items.len() <= *index {
                    items.resize(index + 1, Value::Null);
                }
                if last {
                    items[*index] = set.value.clone();
                    return Ok(());
                }
                &mut items[*index]
            }
            (PathStep::Key(_), _) => {
                return Err(SetError::NotAMap {
                    key: path_text(&set.path),
                    parent: path_text(&set.path[..depth]),
                    child: path_text(&set.path[depth..]),
                });
            }
            (PathStep::Index(index), _) => {
                return Err(SetError::NotAList {
                    key: path_text(&set.path),
                    parent: path_text(&set.path[..depth]),
                    index: *index,
                });
            }
        };
        // A missing (or null) container on the way is created.
        if slot.is_null() {
            *slot = match set.path[depth + 1] {
                PathStep::Key(_) => Value::Object(Map::new()),
                PathStep::Index(_) => Value::Array(Vec::new()),
            };
        }
        current = slot;
    }
    Ok(())
}

/// All layers, lowest precedence first.
pub fn layer(
    defaults: Map<String, Value>,
    environment: Option<Map<String, Value>>,
    caller: &[Map<String, Value>],
    set: &[SetValue],
) -> Result<Map<String, Value>, SetError> {
    let mut values = Map::new();
    merge(&mut values, defaults);
    if let Some(environment) = environment {
        merge(&mut values, environment);
    }
    for layer in caller {
        merge(&mut values, layer.clone());
    }
    for assignment in set {
        apply_set(&mut values, assignment)?;
    }
    sort_keys(&mut values);
    Ok(values)
}

/// Sorts every map, however deep, by key. Maps keep insertion order, so
/// without this `{{#each}}` over a map would follow the order the layers
/// happened to write keys in; sorted, it is the same order Helm's `range`
/// gives, whatever the layering.
fn sort_keys(map: &mut Map<String, Value>) {
    map.sort_keys();
    for value in map.values_mut() {
        sort_value_keys(value);
    }
}

fn sort_value_keys(value: &mut Value) {
    match value {
        Value::Object(map) => sort_keys(map),
        Value::Array(items) => items.iter_mut().for_each(sort_value_keys),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => panic!("not a map"),
        }
    }

    /// An argument that holds exactly one assignment.
    fn one(arg: &str) -> SetValue {
        let mut all = SetValue::parse(arg).unwrap();
        assert_eq!(all.len(), 1, "{arg}");
        all.remove(0)
    }

    /// The values after applying `args` (each a `--set` argument) to `base`.
    fn set_all(base: Value, args: &[&str]) -> Result<Value, SetError> {
        let mut values = map(base);
        for arg in args {
            for set in SetValue::parse(arg)? {
                apply_set(&mut values, &set)?;
            }
        }
        Ok(Value::Object(values))
    }

    fn key(name: &str) -> PathStep {
        PathStep::Key(name.to_string())
    }

    #[test]
    fn maps_merge_deeply_lists_replace_null_removes() {
        let defaults = map(json!({
            "image": {"repository": "ghcr.io/x", "tag": "1.0"},
            "ports": [80, 443],
            "debug": {"enabled": false},
            "keep": "me",
            "unset": null,
        }));
        let environment = map(json!({
            "image": {"tag": "2.0"},
            "ports": [8080],
            "debug": null,
            "extra": {"a": 1, "gone": null},
        }));
        let values = layer(defaults, Some(environment), &[], &[]).unwrap();
        assert_eq!(
            Value::Object(values),
            json!({
                "image": {"repository": "ghcr.io/x", "tag": "2.0"},
                "ports": [8080],
                "keep": "me",
                "extra": {"a": 1},
            })
        );
    }

    #[test]
    fn precedence_is_defaults_environment_caller_then_set() {
        let defaults = map(json!({"a": 1, "b": 1, "c": 1, "d": 1}));
        let environment = map(json!({"b": 2, "c": 2, "d": 2}));
        let caller = [map(json!({"c": 3, "d": 3})), map(json!({"d": 4}))];
        let set = [one("d=5")];
        let values = layer(defaults.clone(), Some(environment.clone()), &caller, &[]).unwrap();
        assert_eq!(
            Value::Object(values),
            json!({"a": 1, "b": 2, "c": 3, "d": 4})
        );
        let values = layer(defaults, Some(environment), &caller, &set).unwrap();
        assert_eq!(values["d"], json!(5));
    }

    #[test]
    fn layered_maps_iterate_in_key_order_whatever_the_layers_wrote() {
        let defaults = map(json!({"zeta": {"b": 1, "a": 1}, "alpha": 1}));
        let environment = map(json!({"mid": [{"y": 1, "x": 1}], "zeta": {"c": 2}}));
        let set = SetValue::parse("beta.z=1,beta.a=1").unwrap();
        let values = layer(defaults, Some(environment), &[], &set).unwrap();
        let keys = |m: &Map<String, Value>| m.keys().cloned().collect::<Vec<_>>();
        assert_eq!(keys(&values), ["alpha", "beta", "mid", "zeta"]);
        assert_eq!(keys(values["zeta"].as_object().unwrap()), ["a", "b", "c"]);
        assert_eq!(keys(values["beta"].as_object().unwrap()), ["a", "z"]);
        assert_eq!(keys(values["mid"][0].as_object().unwrap()), ["x", "y"]);
    }

    #[test]
    fn set_values_are_typed_like_yaml_plain_scalars() {
        let cases = [
            ("a=1", json!(1)),
            ("a=-7", json!(-7)),
            ("a=1.5", json!(1.5)),
            ("a=true", json!(true)),
            ("a=false", json!(false)),
            ("a=null", Value::Null),
            ("a=hello", json!("hello")),
            ("a=", json!("")),
            ("a=yes", json!("yes")),
            ("a=0755", json!("0755")),
            ("a=1.2.3", json!("1.2.3")),
            ("a=x=y", json!("x=y")),
            (r"a=x\,y", json!("x,y")),
            (r"a=C:\\dir", json!(r"C:\dir")),
            ("a=e", json!("e")),
            ("a=-", json!("-")),
        ];
        for (arg, expected) in cases {
            assert_eq!(one(arg).value, expected, "{arg}");
        }
        let string = |arg| SetValue::parse_string(arg).unwrap().remove(0).value;
        assert_eq!(string("a=1"), json!("1"));
        assert_eq!(string("a=true"), json!("true"));
        assert_eq!(string("a={1,true}"), json!(["1", "true"]));
    }

    #[test]
    fn set_paths_split_on_unescaped_dots() {
        let set = one(r"metadata.annotations.example\.com/team=web");
        assert_eq!(
            set.path,
            [key("metadata"), key("annotations"), key("example.com/team")]
        );
        assert_eq!(set.key(), r"metadata.annotations.example\.com/team");
        let mut values = Map::new();
        apply_set(&mut values, &set).unwrap();
        assert_eq!(
            Value::Object(values),
            json!({"metadata": {"annotations": {"example.com/team": "web"}}})
        );
    }

    #[test]
    fn set_null_removes_and_set_into_a_scalar_is_an_error() {
        let mut values = map(json!({"image": {"tag": "1", "pull": "Always"}, "name": "x"}));
        apply_set(&mut values, &one("image.pull=null")).unwrap();
        assert_eq!(
            Value::Object(values.clone()),
            json!({"image": {"tag": "1"}, "name": "x"})
        );
        let error = apply_set(&mut values, &one("name.first=a")).unwrap_err();
        assert_eq!(
            error.to_string(),
            "`--set name.first`: `name` is already set to a value that is not a map, so it \
             cannot hold `first`"
        );
    }

    #[test]
    fn bad_assignments_are_explained_without_echoing_values() {
        assert!(matches!(
            SetValue::parse("novalue"),
            Err(SetError::Syntax { .. })
        ));
        let error = SetValue::parse("a..b=secret").unwrap_err();
        assert!(matches!(error, SetError::EmptyKey { .. }));
        assert!(!error.to_string().contains("secret"), "{error}");
        let debug = format!("{:?}", one("password=hunter2"));
        assert!(!debug.contains("hunter2"), "{debug}");
        // A comma inside a value splits it: the error names the key before
        // and never shows the value's pieces.
        let error = SetValue::parse("password=hunter2,tail").unwrap_err();
        assert_eq!(
            error,
            SetError::NoValueAfterComma {
                key: "password".into()
            }
        );
        let message = error.to_string();
        assert!(
            !message.contains("hunter2") && !message.contains("tail"),
            "{message}"
        );
        assert!(message.contains(r"\,"), "{message}");
    }

    #[test]
    fn commas_separate_assignments_as_in_helm() {
        let all = SetValue::parse("a=1,b.c=two,d=").unwrap();
        let pairs: Vec<(String, Value)> = all.iter().map(|s| (s.key(), s.value.clone())).collect();
        assert_eq!(
            pairs,
            [
                ("a".to_string(), json!(1)),
                ("b.c".to_string(), json!("two")),
                ("d".to_string(), json!("")),
            ]
        );
    }

    #[test]
    fn braces_make_lists_of_typed_items() {
        let cases = [
            (
                "hosts={a.example,b.example}",
                json!(["a.example", "b.example"]),
            ),
            ("ports={80,443}", json!([80, 443])),
            ("empty={}", json!([])),
            ("trailing={a,}", json!(["a", ""])),
            (r"escaped={a\,b,c\}}", json!(["a,b", "c}"])),
            (r"literal=\{a}", json!("{a}")),
        ];
        for (arg, expected) in cases {
            assert_eq!(one(arg).value, expected, "{arg}");
        }
        // A list, then another assignment.
        let all = SetValue::parse("l={x,y},n=1").unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].value, json!(["x", "y"]));
        assert_eq!(all[1].value, json!(1));
        // Lists replace what the layers had.
        assert_eq!(
            set_all(json!({"l": [1, 2, 3]}), &["l={9}"]).unwrap(),
            json!({"l": [9]})
        );
    }

    #[test]
    fn indexes_reach_into_lists_and_grow_them() {
        let one_index = one("ports[1].name=http");
        assert_eq!(
            one_index.path,
            [key("ports"), PathStep::Index(1), key("name")]
        );
        assert_eq!(one_index.key(), "ports[1].name");
        // Into the layered list: the other items stay.
        assert_eq!(
            set_all(
                json!({"ports": [{"port": 80}, {"port": 443}]}),
                &["ports[1].name=https"]
            )
            .unwrap(),
            json!({"ports": [{"port": 80}, {"port": 443, "name": "https"}]})
        );
        // Missing lists and maps are created; gaps are null.
        assert_eq!(
            set_all(json!({}), &["a[2]=x", "a[0].b=y", "m.n[0][1]=z"]).unwrap(),
            json!({"a": [{"b": "y"}, null, "x"], "m": {"n": [[null, "z"]]}})
        );
        // null in a list sets the item to null (a list keeps its length).
        assert_eq!(
            set_all(json!({"a": [1, 2]}), &["a[0]=null"]).unwrap(),
            json!({"a": [null, 2]})
        );
    }

    #[test]
    fn wrong_containers_and_bad_indexes_are_explained() {
        let error = set_all(json!({"ports": "80"}), &["ports[0]=1"]).unwrap_err();
        assert_eq!(
            error.to_string(),
            "`--set ports[0]`: `ports` is already set to a value that is not a list, so it has \
             no item [0]"
        );
        let error = set_all(json!({"ports": [1]}), &["ports.name=x"]).unwrap_err();
        assert!(matches!(error, SetError::NotAMap { .. }), "{error}");
        let error = set_all(json!({"ports": [1]}), &["ports[0].name=x"]).unwrap_err();
        assert_eq!(
            error.to_string(),
            "`--set ports[0].name`: `ports[0]` is already set to a value that is not a map, so \
             it cannot hold `name`"
        );
        for arg in [
            "a[x]=1",
            "a[-1]=1",
            "a[]=1",
            "a[65536]=1",
            "a[0=1",
            "a[0]b=1",
        ] {
            let error = SetValue::parse(arg).unwrap_err();
            assert!(matches!(error, SetError::BadIndex { .. }), "{arg}: {error}");
        }
        for arg in ["[0]=1", ".a=1", "a.=1", "a..b=1", "=1", "a.[0]=1"] {
            let error = SetValue::parse(arg).unwrap_err();
            assert!(matches!(error, SetError::EmptyKey { .. }), "{arg}: {error}");
        }
        assert!(matches!(
            SetValue::parse("l={a,b").unwrap_err(),
            SetError::UnclosedList { .. }
        ));
        assert!(matches!(
            SetValue::parse("l={a}b").unwrap_err(),
            SetError::TextAfterList { .. }
        ));
    }
}
