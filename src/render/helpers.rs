//! The handlebars helpers charts may use. All are pure: no time, no
//! randomness, no environment, no I/O.
//!
//! ```text
//!   {{nindent 4 (toYaml values.resources)}}      {{quote values.host}}
//!   {{default "nginx" values.image.repository}}   {{required "set image.tag" values.image.tag}}
//! ```
//!
//! | helper | arguments | result |
//! | --- | --- | --- |
//! | `toYaml` | value | YAML, keys sorted, no trailing newline |
//! | `toJson` | value | compact JSON, keys sorted |
//! | `indent` | n, text | every line prefixed with n spaces |
//! | `nindent` | n, text | a newline, then `indent` |
//! | `b64enc` / `b64dec` | text | standard base64 encoding / decoding |
//! | `sha256` | text | hex sha256 |
//! | `quote` | value | a double-quoted string (JSON escapes, valid YAML) |
//! | `default` | fallback, value | value, or fallback when value is missing, null or "" |
//! | `required` | message, value | value, or an error with the message when missing, null or "" |
//! | `lower` / `upper` / `trim` | text | |
//! | `trunc` | n, text | first n characters (last -n when n < 0) |
//! | `replace` | old, new, text | every `old` replaced by `new` |
//! | `join` | separator, list | items joined |
//! | `has` | item, list | whether the list holds the item (`{{#if (has "policy/v1" capabilities.apiVersions)}}`) |
//! | `eq` `ne` `and` `or` `not` | | handlebars' built-ins: booleans |
//!
//! Arguments follow Helm's order (the value last), so Helm users read them
//! the same way. Unlike Helm, `default` keeps `false` and `0`: only a
//! missing, null or empty-string value takes the fallback. In strict mode
//! every helper except `default` and `required` refuses a missing argument
//! with the missing path.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use handlebars::{
    Context, Handlebars, Helper, HelperDef, RenderContext, RenderError, RenderErrorReason,
    ScopedJson,
};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::object::{canonical_json, hex};
use super::yaml::to_yaml;

/// Registers every windlass helper on `registry`.
pub(crate) fn register(registry: &mut Handlebars<'_>) {
    let helpers: [(&'static str, usize, Arguments, Function); 17] = [
        ("toYaml", 1, Arguments::Present, to_yaml_helper),
        ("toJson", 1, Arguments::Present, |a| {
            Ok(Value::String(canonical_json(a[0])))
        }),
        ("indent", 2, Arguments::Present, |a| {
            Ok(Value::String(indent(count(a[0])?, &text(a[1])?)))
        }),
        ("nindent", 2, Arguments::Present, |a| {
            Ok(Value::String(format!(
                "\n{}",
                indent(count(a[0])?, &text(a[1])?)
            )))
        }),
        ("b64enc", 1, Arguments::Present, |a| {
            Ok(Value::String(STANDARD.encode(text(a[0])?)))
        }),
        ("b64dec", 1, Arguments::Present, |a| {
            let bytes = STANDARD
                .decode(text(a[0])?.trim())
                .map_err(|_| "the argument is not valid base64".to_string())?;
            String::from_utf8(bytes)
                .map(Value::String)
                .map_err(|_| "the decoded bytes are not UTF-8 text".to_string())
        }),
        ("sha256", 1, Arguments::Present, |a| {
            Ok(Value::String(hex(&Sha256::digest(text(a[0])?.as_bytes()))))
        }),
        ("quote", 1, Arguments::Present, |a| {
            Ok(Value::String(
                serde_json::to_string(&text(a[0])?).unwrap_or_default(),
            ))
        }),
        ("default", 2, Arguments::MayBeMissing, |a| {
            Ok(if is_empty(a[1]) {
                a[0].clone()
            } else {
                a[1].clone()
            })
        }),
        ("required", 2, Arguments::MayBeMissing, |a| {
            if is_empty(a[1]) {
                Err(format!("required value missing: {}", text(a[0])?))
            } else {
                Ok(a[1].clone())
            }
        }),
        ("lower", 1, Arguments::Present, |a| {
            Ok(Value::String(text(a[0])?.to_lowercase()))
        }),
        ("upper", 1, Arguments::Present, |a| {
            Ok(Value::String(text(a[0])?.to_uppercase()))
        }),
        ("trim", 1, Arguments::Present, |a| {
            Ok(Value::String(text(a[0])?.trim().to_string()))
        }),
        ("trunc", 2, Arguments::Present, |a| {
            Ok(Value::String(trunc(integer(a[0])?, &text(a[1])?)))
        }),
        ("replace", 3, Arguments::Present, |a| {
            Ok(Value::String(
                text(a[2])?.replace(&text(a[0])?, &text(a[1])?),
            ))
        }),
        ("join", 2, Arguments::Present, |a| {
            let separator = text(a[0])?;
            let Value::Array(items) = a[1] else {
                return Err("the second argument must be a list".to_string());
            };
            let parts = items.iter().map(text).collect::<Result<Vec<_>, _>>()?;
            Ok(Value::String(parts.join(&separator)))
        }),
        ("has", 2, Arguments::Present, |a| {
            let Value::Array(items) = a[1] else {
                return Err("the second argument must be a list".to_string());
            };
            Ok(Value::Bool(items.contains(a[0])))
        }),
    ];
    for (name, arity, arguments, function) in helpers {
        registry.register_helper(
            name,
            Box::new(Pure {
                name,
                arity,
                arguments,
                function,
            }),
        );
    }
}

type Function = fn(&[&Value]) -> Result<Value, String>;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Arguments {
    /// Strict mode: a missing argument is an error naming its path.
    Present,
    /// `default` and `required` exist to handle missing values.
    MayBeMissing,
}

/// A helper that is a pure function of its arguments.
struct Pure {
    name: &'static str,
    arity: usize,
    arguments: Arguments,
    function: Function,
}

static NULL: Value = Value::Null;

impl HelperDef for Pure {
    fn call_inner<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        registry: &'reg Handlebars<'reg>,
        _: &'rc Context,
        _: &mut RenderContext<'reg, 'rc>,
    ) -> Result<ScopedJson<'rc>, RenderError> {
        if h.params().len() != self.arity {
            return Err(RenderErrorReason::Other(format!(
                "`{}` takes {} argument{}, got {}",
                self.name,
                self.arity,
                if self.arity == 1 { "" } else { "s" },
                h.params().len()
            ))
            .into());
        }
        let mut arguments = Vec::with_capacity(self.arity);
        for param in h.params() {
            if param.is_value_missing() {
                if self.arguments == Arguments::Present && registry.strict_mode() {
                    return Err(RenderError::strict_error(param.relative_path()));
                }
                arguments.push(&NULL);
            } else {
                arguments.push(param.value());
            }
        }
        match (self.function)(&arguments) {
            Ok(value) => Ok(ScopedJson::Derived(value)),
            // `required` speaks for the chart author; the others say who failed.
            Err(message) if self.name == "required" => {
                Err(RenderErrorReason::Other(message).into())
            }
            Err(message) => {
                Err(RenderErrorReason::Other(format!("`{}`: {message}", self.name)).into())
            }
        }
    }
}

fn to_yaml_helper(arguments: &[&Value]) -> Result<Value, String> {
    let text = to_yaml(arguments[0]);
    Ok(Value::String(
        text.strip_suffix('\n').unwrap_or(&text).to_string(),
    ))
}

/// A scalar as text; maps and lists need toYaml/toJson first.
fn text(value: &Value) -> Result<String, String> {
    match value {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        Value::Null => Ok(String::new()),
        Value::Array(_) => Err("expects text but got a list; use toYaml or toJson".to_string()),
        Value::Object(_) => Err("expects text but got a map; use toYaml or toJson".to_string()),
    }
}

fn integer(value: &Value) -> Result<i64, String> {
    match value {
        Value::Number(n) => n
            .as_i64()
            .ok_or_else(|| "the count must be a whole number".to_string()),
        Value::String(s) => s
            .parse()
            .map_err(|_| "the count must be a whole number".to_string()),
        _ => Err("the count must be a whole number".to_string()),
    }
}

fn count(value: &Value) -> Result<usize, String> {
    usize::try_from(integer(value)?).map_err(|_| "the count must not be negative".to_string())
}

fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        _ => false,
    }
}

/// Helm's `indent`: every line, the first included, gets `n` spaces.
fn indent(n: usize, text: &str) -> String {
    let pad = " ".repeat(n);
    format!("{pad}{}", text.replace('\n', &format!("\n{pad}")))
}

fn trunc(n: i64, text: &str) -> String {
    let length = text.chars().count();
    let n_abs = usize::try_from(n.unsigned_abs()).unwrap_or(usize::MAX);
    if n >= 0 {
        text.chars().take(n_abs).collect()
    } else {
        text.chars().skip(length.saturating_sub(n_abs)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn registry() -> Handlebars<'static> {
        let mut registry = Handlebars::new();
        registry.set_strict_mode(true);
        registry.register_escape_fn(handlebars::no_escape);
        register(&mut registry);
        registry
    }

    fn render(template: &str, data: Value) -> String {
        registry()
            .render_template(template, &data)
            .unwrap_or_else(|e| panic!("{template}: {e}"))
    }

    fn render_error(template: &str, data: Value) -> String {
        let error = registry().render_template(template, &data).unwrap_err();
        format!("{} {:?}", error.reason(), error.line_no)
    }

    #[test]
    fn to_yaml_sorts_keys_and_quotes_ambiguous_strings() {
        let data = json!({"r": {"limits": {"memory": "64Mi", "cpu": "1"}, "flag": "yes"}});
        assert_eq!(
            render("{{toYaml r}}", data.clone()),
            "flag: \"yes\"\nlimits:\n  cpu: \"1\"\n  memory: 64Mi"
        );
        assert_eq!(
            render("spec:\n  resources:{{nindent 4 (toYaml r.limits)}}\n", data),
            "spec:\n  resources:\n    cpu: \"1\"\n    memory: 64Mi\n"
        );
    }

    #[test]
    fn to_json_is_compact_and_sorted() {
        assert_eq!(
            render("{{toJson v}}", json!({"v": {"b": [1, "x"], "a": null}})),
            r#"{"a":null,"b":[1,"x"]}"#
        );
    }

    #[test]
    fn indent_and_nindent_pad_every_line() {
        assert_eq!(render("{{indent 2 t}}", json!({"t": "a\nb"})), "  a\n  b");
        assert_eq!(
            render("x:{{nindent 2 t}}", json!({"t": "a\nb"})),
            "x:\n  a\n  b"
        );
        assert!(render_error("{{indent -1 t}}", json!({"t": "a"})).contains("negative"));
    }

    #[test]
    fn base64_round_trip_and_errors() {
        assert_eq!(
            render("{{b64enc t}}", json!({"t": "hunter2"})),
            "aHVudGVyMg=="
        );
        assert_eq!(
            render("{{b64dec t}}", json!({"t": "aHVudGVyMg=="})),
            "hunter2"
        );
        assert!(render_error("{{b64dec t}}", json!({"t": "%%%"})).contains("not valid base64"));
        assert!(render_error("{{b64dec t}}", json!({"t": "/w=="})).contains("not UTF-8"));
    }

    #[test]
    fn sha256_is_hex_of_the_text() {
        assert_eq!(
            render("{{sha256 t}}", json!({"t": "abc"})),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn quote_makes_a_yaml_safe_string() {
        assert_eq!(render("{{quote t}}", json!({"t": "yes"})), "\"yes\"");
        assert_eq!(render("{{quote t}}", json!({"t": "a\"b\n"})), r#""a\"b\n""#);
        assert_eq!(render("{{quote n}}", json!({"n": 8080})), "\"8080\"");
        assert!(render_error("{{quote m}}", json!({"m": {}})).contains("got a map"));
    }

    #[test]
    fn default_takes_the_fallback_only_for_missing_null_or_empty() {
        let data = json!({"v": {"set": "x", "empty": "", "null": null, "no": false, "zero": 0}});
        assert_eq!(render("{{default \"d\" v.set}}", data.clone()), "x");
        assert_eq!(render("{{default \"d\" v.empty}}", data.clone()), "d");
        assert_eq!(render("{{default \"d\" v.null}}", data.clone()), "d");
        assert_eq!(render("{{default \"d\" v.missing}}", data.clone()), "d");
        assert_eq!(render("{{default \"d\" v.no}}", data.clone()), "false");
        assert_eq!(render("{{default 3 v.zero}}", data), "0");
    }

    #[test]
    fn required_fails_with_the_message() {
        let data = json!({"v": {"tag": "1.0", "empty": ""}});
        assert_eq!(
            render("{{required \"set tag\" v.tag}}", data.clone()),
            "1.0"
        );
        let error = render_error("x\n{{required \"set image.tag\" v.nope}}", data.clone());
        assert!(
            error.contains("required value missing: set image.tag"),
            "{error}"
        );
        assert!(error.contains("Some(2)"), "{error}");
        assert!(render_error("{{required \"m\" v.empty}}", data).contains("required"));
    }

    #[test]
    fn string_helpers() {
        let data = json!({"t": "  Hello World  ", "l": ["a", 1, true]});
        assert_eq!(render("{{lower t}}", data.clone()), "  hello world  ");
        assert_eq!(render("{{upper t}}", data.clone()), "  HELLO WORLD  ");
        assert_eq!(render("{{trim t}}", data.clone()), "Hello World");
        assert_eq!(render("{{trunc 4 (trim t)}}", data.clone()), "Hell");
        assert_eq!(render("{{trunc -5 (trim t)}}", data.clone()), "World");
        assert_eq!(render("{{trunc 99 \"ab\"}}", data.clone()), "ab");
        assert_eq!(
            render("{{replace \"o\" \"0\" t}}", data.clone()),
            "  Hell0 W0rld  "
        );
        assert_eq!(render("{{join \",\" l}}", data.clone()), "a,1,true");
        assert!(render_error("{{join \",\" t}}", data).contains("must be a list"));
    }

    #[test]
    fn has_tells_whether_a_list_holds_an_item() {
        let data = json!({"l": ["policy/v1", "apps/v1/Deployment", 3], "t": "x"});
        assert_eq!(
            render(
                "{{has \"policy/v1\" l}} {{has \"apps/v1/Deployment\" l}} {{has 3 l}}",
                data.clone()
            ),
            "true true true"
        );
        // Items compare as values: the number 3 is not the string "3".
        assert_eq!(
            render("{{has \"policy\" l}} {{has \"3\" l}}", data.clone()),
            "false false"
        );
        assert_eq!(
            render(
                "{{#if (has \"policy/v1\" l)}}pdb{{else}}none{{/if}}",
                data.clone()
            ),
            "pdb"
        );
        assert!(render_error("{{has \"x\" t}}", data).contains("must be a list"));
    }

    #[test]
    fn comparison_built_ins() {
        let data = json!({"a": 1, "b": 2, "s": "x", "t": true, "f": false});
        assert_eq!(
            render("{{eq a 1}} {{eq s \"x\"}} {{eq a b}}", data.clone()),
            "true true false"
        );
        assert_eq!(render("{{ne a b}} {{ne a 1}}", data.clone()), "true false");
        assert_eq!(
            render("{{and t t}} {{and t f}}", data.clone()),
            "true false"
        );
        assert_eq!(render("{{or f t}} {{or f f}}", data.clone()), "true false");
        assert_eq!(render("{{not f}} {{not t}}", data.clone()), "true false");
        assert_eq!(
            render("{{#if (eq s \"x\")}}yes{{else}}no{{/if}}", data),
            "yes"
        );
    }

    #[test]
    fn strict_mode_names_the_missing_path_in_helper_arguments() {
        let error = registry()
            .render_template("a\nb: {{upper values.image.tag}}", &json!({"values": {}}))
            .unwrap_err();
        assert!(
            matches!(error.reason(), RenderErrorReason::MissingVariable(Some(p)) if p == "values.image.tag"),
            "{error}"
        );
        assert_eq!(error.line_no, Some(2));
    }

    #[test]
    fn wrong_argument_counts_are_explained() {
        assert!(render_error("{{indent 2}}", json!({})).contains("takes 2 arguments, got 1"));
    }

    #[test]
    fn helpers_are_deterministic() {
        let data = json!({"v": {"z": 1, "a": [3, 2], "m": {"y": "yes", "b": "0755"}}});
        let template = "{{toYaml v}}|{{toJson v}}|{{sha256 (toJson v)}}|{{b64enc (toYaml v)}}";
        let first = render(template, data.clone());
        for _ in 0..5 {
            assert_eq!(render(template, data.clone()), first);
        }
    }
}
