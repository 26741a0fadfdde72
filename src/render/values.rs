//! Chart values: layering and `--set`.
//!
//! ```text
//!   values.yaml ─► values/<env>.yaml ─► caller values (in order) ─► --set, --set-string
//!   (lowest)                                                         (highest)
//!                      └──────── merge ────────┘
//!                      maps merge deeply, lists replace, null removes a key
//! ```
//!
//! `--set key.path=value` takes one assignment per flag; a `.` inside a key is
//! written `\.` (`--set annotations.example\.com/team=web`). The value is
//! typed like a plain YAML 1.2 scalar (`1` a number, `true` a boolean, `null`
//! removes the key), except spellings YAML 1.1 reads differently (`yes`,
//! `0755`), which stay strings. `--set-string` always sets a string.

use std::fmt;

use serde_json::{Map, Value};

use super::yaml::yaml11_trap;

/// One `--set` or `--set-string` assignment.
#[derive(Clone, PartialEq)]
pub struct SetValue {
    /// Key path, `.`-separated on the command line.
    pub path: Vec<String>,
    pub value: Value,
}

// Values may be secrets: show the path only.
impl fmt::Debug for SetValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SetValue")
            .field("path", &self.path.join("."))
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SetError {
    #[error("`--set {arg}`: expected KEY=VALUE, e.g. --set image.tag=1.2.3")]
    Syntax { arg: String },

    #[error("`--set {arg}`: the key path has an empty part")]
    EmptyKey { arg: String },

    #[error(
        "`--set {key}`: `{parent}` is already set to a value that is not a map, so it cannot \
         hold `{child}`"
    )]
    NotAMap {
        key: String,
        parent: String,
        child: String,
    },
}

impl SetValue {
    /// `key.path=value`, value typed.
    pub fn parse(arg: &str) -> Result<SetValue, SetError> {
        let (path, raw) = split_assignment(arg)?;
        Ok(SetValue {
            path,
            value: typed(raw),
        })
    }

    /// `key.path=value`, value always a string.
    pub fn parse_string(arg: &str) -> Result<SetValue, SetError> {
        let (path, raw) = split_assignment(arg)?;
        Ok(SetValue {
            path,
            value: Value::String(raw.to_string()),
        })
    }
}

/// Splits at the first `=`; the key is split at unescaped `.`s.
fn split_assignment(arg: &str) -> Result<(Vec<String>, &str), SetError> {
    let Some((key, raw)) = arg.split_once('=') else {
        return Err(SetError::Syntax { arg: key_only(arg) });
    };
    let mut path = Vec::new();
    let mut part = String::new();
    let mut chars = key.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(escaped) => part.push(escaped),
                None => part.push('\\'),
            },
            '.' => path.push(std::mem::take(&mut part)),
            other => part.push(other),
        }
    }
    path.push(part);
    if path.iter().any(String::is_empty) {
        return Err(SetError::EmptyKey {
            arg: format!("{key}=..."),
        });
    }
    Ok((path, raw))
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

/// Applies one `--set`.
pub fn apply_set(values: &mut Map<String, Value>, set: &SetValue) -> Result<(), SetError> {
    let (last, parents) = set
        .path
        .split_last()
        .expect("parse() never yields an empty path");
    let mut current = values;
    for (depth, part) in parents.iter().enumerate() {
        let slot = current
            .entry(part.clone())
            .or_insert_with(|| Value::Object(Map::new()));
        current = match slot {
            Value::Object(map) => map,
            _ => {
                return Err(SetError::NotAMap {
                    key: set.path.join("."),
                    parent: set.path[..=depth].join("."),
                    child: set.path[depth + 1..].join("."),
                });
            }
        };
    }
    match &set.value {
        Value::Null => {
            current.remove(last);
        }
        Value::Object(map) => {
            let mut fresh = Map::new();
            merge(&mut fresh, map.clone());
            current.insert(last.clone(), Value::Object(fresh));
        }
        other => {
            current.insert(last.clone(), other.clone());
        }
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
        let set = [SetValue::parse("d=5").unwrap()];
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
        let set = [
            SetValue::parse("beta.z=1").unwrap(),
            SetValue::parse("beta.a=1").unwrap(),
        ];
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
            ("a=e", json!("e")),
            ("a=-", json!("-")),
        ];
        for (arg, expected) in cases {
            assert_eq!(SetValue::parse(arg).unwrap().value, expected, "{arg}");
        }
        assert_eq!(SetValue::parse_string("a=1").unwrap().value, json!("1"));
        assert_eq!(
            SetValue::parse_string("a=true").unwrap().value,
            json!("true")
        );
    }

    #[test]
    fn set_paths_split_on_unescaped_dots() {
        let set = SetValue::parse(r"metadata.annotations.example\.com/team=web").unwrap();
        assert_eq!(set.path, ["metadata", "annotations", "example.com/team"]);
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
        apply_set(&mut values, &SetValue::parse("image.pull=null").unwrap()).unwrap();
        assert_eq!(
            Value::Object(values.clone()),
            json!({"image": {"tag": "1"}, "name": "x"})
        );
        let error = apply_set(&mut values, &SetValue::parse("name.first=a").unwrap()).unwrap_err();
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
        let debug = format!("{:?}", SetValue::parse("password=hunter2").unwrap());
        assert!(!debug.contains("hunter2"), "{debug}");
    }
}
