//! From a ref to names: which refs a pattern takes, what a preview is called,
//! and the placeholders its template may use. Pure.
//!
//! ```text
//!   refs/pull/*/head + refs/pull/7/head @ 4f2a9c1…
//!     ──► PreviewRef { number: 7, branch: "pull/7/head", slug: "pr-7", sha, shortSha: "4f2a9c1" }
//!   refs/heads/feature/* + refs/heads/feature/Login_Page
//!     ──► PreviewRef { number: none, branch: "feature/Login_Page", slug: "login-page" }
//!   preview "web" ──► Application and namespace `web-pr-7`, `web-login-page`
//! ```
//!
//! Every name built from a branch is made a DNS-1123 label (lowercase
//! letters, digits and `-`, at most 63 characters; a longer one is cut and
//! ends in a hash of the whole, so two long names stay apart).

use serde_json::Value;
use sha2::{Digest, Sha256};

/// The longest DNS-1123 label: namespaces, label values, our Application names.
pub const MAX_LABEL: usize = 63;

/// A ref pattern with one `*` standing for one path component.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefPattern {
    text: String,
    prefix: String,
    suffix: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "ref pattern `{pattern}`: {reason} (examples: refs/pull/*/head, refs/merge-requests/*/head, \
     refs/heads/feature/*)"
)]
pub struct PatternError {
    pub pattern: String,
    pub reason: String,
}

impl RefPattern {
    pub fn parse(text: &str) -> Result<RefPattern, PatternError> {
        let error = |reason: &str| PatternError {
            pattern: text.to_string(),
            reason: reason.to_string(),
        };
        if !text.starts_with("refs/") {
            return Err(error("it must be a full ref name starting with refs/"));
        }
        let Some((prefix, suffix)) = text.split_once('*') else {
            return Err(error(
                "it needs one `*` for the pull-request number or branch",
            ));
        };
        if suffix.contains('*') {
            return Err(error("it may hold only one `*`"));
        }
        if !prefix.ends_with('/') || !(suffix.is_empty() || suffix.starts_with('/')) {
            return Err(error("the `*` must be a whole path component"));
        }
        Ok(RefPattern {
            text: text.to_string(),
            prefix: prefix.to_string(),
            suffix: suffix.to_string(),
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// What `*` stands for in `ref_name`, if the pattern takes it.
    pub fn capture<'a>(&self, ref_name: &'a str) -> Option<&'a str> {
        let middle = ref_name
            .strip_prefix(&self.prefix)?
            .strip_suffix(&self.suffix)?;
        (!middle.is_empty() && !middle.contains('/')).then_some(middle)
    }
}

/// One ref a Preview takes, and the names it gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreviewRef {
    /// `refs/pull/7/head`.
    pub ref_name: String,
    pub commit: String,
    /// The pull-request number, when `*` stood for digits.
    pub number: Option<u64>,
    /// The branch: its name for `refs/heads/…`, else the ref without `refs/`.
    pub branch: String,
    /// `pr-<number>`, or the branch as a DNS-1123 label: what names end with.
    pub slug: String,
}

impl PreviewRef {
    /// The preview for `ref_name` at `commit`, if `pattern` takes the ref.
    pub fn new(pattern: &RefPattern, ref_name: &str, commit: &str) -> Option<PreviewRef> {
        let captured = pattern.capture(ref_name)?;
        let number = if captured.bytes().all(|b| b.is_ascii_digit()) {
            captured.parse::<u64>().ok()
        } else {
            None
        };
        let branch = ref_name
            .strip_prefix("refs/heads/")
            .or_else(|| ref_name.strip_prefix("refs/"))
            .unwrap_or(ref_name)
            .to_string();
        let slug = match number {
            Some(n) => format!("pr-{n}"),
            None => dns_label(captured, 40),
        };
        Some(PreviewRef {
            ref_name: ref_name.to_string(),
            commit: commit.to_string(),
            number,
            branch,
            slug,
        })
    }

    /// `<preview>-pr-7`: the generated Application's name and the default
    /// namespace.
    pub fn default_name(&self, preview: &str) -> String {
        dns_label(&format!("{preview}-{}", self.slug), MAX_LABEL)
    }

    /// What `{{number}}` etc. stand for.
    pub fn placeholders(&self) -> Placeholders {
        Placeholders {
            number: self
                .number
                .map(|n| n.to_string())
                .unwrap_or_else(|| self.slug.clone()),
            branch: self.branch.clone(),
            sha: self.commit.clone(),
            short_sha: self.commit.chars().take(7).collect(),
            slug: self.slug.clone(),
        }
    }
}

/// `text` as a DNS-1123 label of at most `max` characters: lowercase ASCII
/// letters and digits, other runs of characters become one `-`, no `-` at
/// either end. Cut names end in `-` and six hex digits of the whole's sha256.
/// Never empty.
pub fn dns_label(text: &str, max: usize) -> String {
    let mut label = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            label.push(c.to_ascii_lowercase());
        } else if !label.ends_with('-') {
            label.push('-');
        }
    }
    let label = label.trim_matches('-');
    if label.is_empty() {
        return format!("x{}", &hash(text)[..6]);
    }
    if label.len() <= max {
        return label.to_string();
    }
    let keep = max.saturating_sub(7);
    format!(
        "{}-{}",
        label[..keep].trim_end_matches('-'),
        &hash(text)[..6]
    )
}

fn hash(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The values of a template's placeholders for one preview.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placeholders {
    /// The pull-request number (the slug for branch patterns).
    pub number: String,
    pub branch: String,
    pub sha: String,
    pub short_sha: String,
    pub slug: String,
}

impl Placeholders {
    /// Replaces `{{number}}`, `{{branch}}`, `{{sha}}`, `{{shortSha}}` and
    /// `{{slug}}` (spaces inside the braces allowed). Anything else, other
    /// `{{…}}` included, is left as it is: a chart's values may hold text
    /// meant for later.
    pub fn substitute(&self, text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(start) = rest.find("{{") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let replaced = after.find("}}").and_then(|end| {
                let value = match after[..end].trim() {
                    "number" => &self.number,
                    "branch" => &self.branch,
                    "sha" => &self.sha,
                    "shortSha" => &self.short_sha,
                    "slug" => &self.slug,
                    _ => return None,
                };
                Some((value, end))
            });
            match replaced {
                Some((value, end)) => {
                    out.push_str(value);
                    rest = &after[end + 2..];
                }
                None => {
                    out.push_str("{{");
                    rest = after;
                }
            }
        }
        out.push_str(rest);
        out
    }

    /// [`Placeholders::substitute`] in every string of a values tree (keys
    /// stay as they are).
    pub fn substitute_values(&self, value: &Value) -> Value {
        match value {
            Value::String(text) => Value::String(self.substitute(text)),
            Value::Array(items) => {
                Value::Array(items.iter().map(|v| self.substitute_values(v)).collect())
            }
            Value::Object(map) => Value::Object(
                map.iter()
                    .map(|(k, v)| (k.clone(), self.substitute_values(v)))
                    .collect(),
            ),
            other => other.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "4f2a9c1e4f2a9c1e4f2a9c1e4f2a9c1e4f2a9c1e";

    fn pattern(text: &str) -> RefPattern {
        RefPattern::parse(text).unwrap()
    }

    #[test]
    fn patterns_take_one_path_component() {
        let pulls = pattern("refs/pull/*/head");
        assert_eq!(pulls.capture("refs/pull/7/head"), Some("7"));
        assert_eq!(pulls.capture("refs/pull/7/merge"), None);
        assert_eq!(pulls.capture("refs/pull//head"), None);
        assert_eq!(pulls.capture("refs/pull/7/8/head"), None);
        let features = pattern("refs/heads/feature/*");
        assert_eq!(features.capture("refs/heads/feature/login"), Some("login"));
        assert_eq!(features.capture("refs/heads/feature/a/b"), None);
        assert_eq!(features.capture("refs/heads/main"), None);
        assert_eq!(
            pattern("refs/merge-requests/*/head").capture("refs/merge-requests/12/head"),
            Some("12")
        );
    }

    #[test]
    fn bad_patterns_say_why() {
        for (text, reason) in [
            ("pull/*/head", "starting with refs/"),
            ("refs/pull/7/head", "one `*`"),
            ("refs/pull/*/*", "only one"),
            ("refs/heads/feature-*", "whole path component"),
        ] {
            let error = RefPattern::parse(text).unwrap_err().to_string();
            assert!(error.contains(reason), "{text}: {error}");
            assert!(error.contains(text), "{error}");
        }
    }

    #[test]
    fn a_pull_request_ref_gives_number_slug_and_names() {
        let r = PreviewRef::new(&pattern("refs/pull/*/head"), "refs/pull/7/head", SHA).unwrap();
        assert_eq!(r.number, Some(7));
        assert_eq!(r.slug, "pr-7");
        assert_eq!(r.branch, "pull/7/head");
        assert_eq!(r.default_name("web"), "web-pr-7");
        let p = r.placeholders();
        assert_eq!((p.number.as_str(), p.short_sha.as_str()), ("7", "4f2a9c1"));
    }

    #[test]
    fn a_branch_ref_gives_a_sanitised_slug() {
        let r = PreviewRef::new(
            &pattern("refs/heads/feature/*"),
            "refs/heads/feature/Login_Page!!",
            SHA,
        )
        .unwrap();
        assert_eq!(r.number, None);
        assert_eq!(r.branch, "feature/Login_Page!!");
        assert_eq!(r.slug, "login-page");
        assert_eq!(r.default_name("Web.App"), "web-app-login-page");
        assert_eq!(r.placeholders().number, "login-page");
    }

    #[test]
    fn labels_are_dns_1123_and_at_most_63_characters() {
        assert_eq!(dns_label("Feature/ABC__def", 63), "feature-abc-def");
        assert_eq!(dns_label("--a--b--", 63), "a-b");
        let long = "x".repeat(100);
        let label = dns_label(&long, 63);
        assert_eq!(label.len(), 63);
        assert!(label.starts_with("xxxx") && label.as_bytes()[56] == b'-');
        // Two long names that share their start stay apart.
        assert_ne!(
            dns_label(&format!("{long}a"), 63),
            dns_label(&format!("{long}b"), 63)
        );
        let empty = dns_label("___", 63);
        assert!(empty.starts_with('x') && empty.len() == 7, "{empty}");
        for text in ["ÄÖÜ-straße", "a.b.c", "UPPER", "-x-", &"ab-".repeat(40)] {
            let label = dns_label(text, MAX_LABEL);
            assert!(label.len() <= MAX_LABEL, "{label}");
            assert!(
                label
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
                "{label}"
            );
            assert!(!label.starts_with('-') && !label.ends_with('-'), "{label}");
        }
    }

    #[test]
    fn placeholders_are_substituted_and_the_rest_left_alone() {
        let r = PreviewRef::new(&pattern("refs/pull/*/head"), "refs/pull/42/head", SHA).unwrap();
        let p = r.placeholders();
        assert_eq!(
            p.substitute("apps/{{ slug }}/{{number}}@{{shortSha}}"),
            "apps/pr-42/42@4f2a9c1"
        );
        assert_eq!(p.substitute("{{sha}}"), SHA);
        assert_eq!(
            p.substitute("{{ .Values.x }} {{number"),
            "{{ .Values.x }} {{number"
        );
        assert_eq!(p.substitute("{{{{number}}}}"), "{{42}}");
        let values = serde_json::json!({
            "host": "{{slug}}.preview.example.com",
            "tags": ["{{branch}}", 3],
            "{{number}}": true,
        });
        assert_eq!(
            p.substitute_values(&values),
            serde_json::json!({
                "host": "pr-42.preview.example.com",
                "tags": ["pull/42/head", 3],
                "{{number}}": true,
            })
        );
    }
}
