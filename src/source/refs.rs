//! Which commit a ref request means, given the refs a remote advertises.
//!
//! ```text
//!   "main" | "v1.2.0" | "4f2a…(40 hex)" | ">=1.2.0 <2.0.0" | "refs/pull/42/head"
//!        ──RefRequest::parse──► RefRequest
//!   RefRequest + [RemoteRef] ──resolve──► Resolution { ref_name, commit }
//! ```
//!
//! Pure: no git, no network. Rules:
//! - a full commit id (40 hex, or 64 for SHA-256 repositories) is itself;
//! - a name starting with `refs/` is that exact ref;
//! - `HEAD` is the remote's default branch;
//! - a text with range syntax (`<`, `>`, `=`, `~`, `^`, `*`, `x`, `||`, ` - `)
//!   is a semver range over tags: the highest matching tag wins, a leading
//!   `v` is optional on tags and in the range, and pre-releases are only
//!   candidates when the range itself mentions one (as Flux does);
//! - anything else is a branch or a tag; a name that is both is ambiguous.

use std::fmt;

use git2::Oid;
use semver::{Comparator, Op, Version};

/// What the user asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefRequest {
    Head,
    Commit(String),
    FullRef(String),
    /// A branch or tag name.
    Name(String),
    Semver(SemverRange),
}

/// A ref as the remote advertises it, with annotated tags peeled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteRef {
    pub name: String,
    /// The commit the ref ends at (for annotated tags: the tagged commit).
    pub commit: Oid,
}

/// The answer: a commit and the ref it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolution {
    /// The full ref name (`refs/heads/main`), or the commit id when the
    /// request was a commit.
    pub ref_name: String,
    pub commit: Oid,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RefError {
    #[error("unknown ref{}", hint.as_ref().map(|h| format!(" (did you mean `{h}`?)")).unwrap_or_default())]
    Unknown { hint: Option<String> },
    #[error("`{name}` is both a branch and a tag; write refs/heads/{name} or refs/tags/{name}")]
    Ambiguous { name: String },
    #[error("no tag matches the range ({tags} version tags{})", newest.as_ref().map(|n| format!(", newest {n}")).unwrap_or_default())]
    NoMatchingTag { tags: usize, newest: Option<String> },
    #[error("the remote advertises no default branch (HEAD)")]
    NoHead,
    #[error("invalid semver range: {0}")]
    InvalidRange(String),
}

impl RefRequest {
    pub fn parse(text: &str) -> Result<RefRequest, RefError> {
        let text = text.trim();
        if text.is_empty() || text == "HEAD" {
            return Ok(RefRequest::Head);
        }
        if (text.len() == 40 || text.len() == 64) && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(RefRequest::Commit(text.to_ascii_lowercase()));
        }
        if text.starts_with("refs/") {
            return Ok(RefRequest::FullRef(text.to_string()));
        }
        if looks_like_range(text) {
            return SemverRange::parse(text).map(RefRequest::Semver);
        }
        Ok(RefRequest::Name(text.to_string()))
    }

    /// The refs a fetch needs, as patterns for the listing.
    pub fn describe(&self) -> String {
        match self {
            RefRequest::Head => "HEAD".to_string(),
            RefRequest::Commit(c) => c.clone(),
            RefRequest::FullRef(r) | RefRequest::Name(r) => r.clone(),
            RefRequest::Semver(range) => range.to_string(),
        }
    }
}

fn looks_like_range(text: &str) -> bool {
    text.contains(['<', '>', '=', '~', '^', '*', '|'])
        || text.contains(" - ")
        || text
            .split(['.', ' ', ','])
            .any(|part| part.eq_ignore_ascii_case("x"))
}

/// Resolves `request` against the advertised refs. `default_branch` is the
/// remote's HEAD target when it advertises one. A commit request resolves to
/// itself: whether the commit exists is for the fetch to find out.
pub fn resolve(
    request: &RefRequest,
    refs: &[RemoteRef],
    default_branch: Option<&str>,
) -> Result<Resolution, RefError> {
    let find = |name: &str| refs.iter().find(|r| r.name == name);
    match request {
        RefRequest::Commit(id) => {
            let commit = Oid::from_str(id).map_err(|_| RefError::Unknown { hint: None })?;
            Ok(Resolution {
                ref_name: id.clone(),
                commit,
            })
        }
        RefRequest::Head => {
            if let Some(branch) = default_branch
                && let Some(r) = find(branch)
            {
                return Ok(found(r));
            }
            find("HEAD").map(found).ok_or(RefError::NoHead)
        }
        RefRequest::FullRef(name) => find(name)
            .map(found)
            .ok_or(RefError::Unknown { hint: None }),
        RefRequest::Name(name) => {
            let branch = find(&format!("refs/heads/{name}"));
            let tag = find(&format!("refs/tags/{name}"));
            match (branch, tag) {
                (Some(_), Some(_)) => Err(RefError::Ambiguous { name: name.clone() }),
                (Some(r), None) | (None, Some(r)) => Ok(found(r)),
                (None, None) => Err(RefError::Unknown {
                    hint: suggest(name, refs),
                }),
            }
        }
        RefRequest::Semver(range) => {
            let versions: Vec<(Version, &RemoteRef)> = refs
                .iter()
                .filter_map(|r| {
                    let tag = r.name.strip_prefix("refs/tags/")?;
                    Some((parse_tag_version(tag)?, r))
                })
                .collect();
            let best = versions
                .iter()
                .filter(|(version, _)| range.matches(version))
                .max_by(|(a, ra), (b, rb)| a.cmp(b).then_with(|| rb.name.cmp(&ra.name)));
            match best {
                Some((_, r)) => Ok(found(r)),
                None => {
                    // The hint names the newest release; a pre-release only
                    // when there is nothing else.
                    let newest = versions
                        .iter()
                        .max_by(|(a, _), (b, _)| (a.pre.is_empty(), a).cmp(&(b.pre.is_empty(), b)))
                        .map(|(_, r)| r.name.trim_start_matches("refs/tags/").to_string());
                    Err(RefError::NoMatchingTag {
                        tags: versions.len(),
                        newest,
                    })
                }
            }
        }
    }
}

fn found(r: &RemoteRef) -> Resolution {
    Resolution {
        ref_name: r.name.clone(),
        commit: r.commit,
    }
}

/// `v1.2.3` when `1.2.3` was asked for, and the other way round.
fn suggest(name: &str, refs: &[RemoteRef]) -> Option<String> {
    let alternative = match name.strip_prefix('v') {
        Some(rest) => rest.to_string(),
        None => format!("v{name}"),
    };
    ["refs/heads/", "refs/tags/"]
        .iter()
        .map(|prefix| format!("{prefix}{alternative}"))
        .find(|candidate| refs.iter().any(|r| &r.name == candidate))
        .map(|_| alternative)
}

/// A tag as a version: `v1.2.3`, `1.2.3-rc.1`, and the short forms `v1.2`
/// and `v1` (read as `.0`). Other tags are not versions.
pub fn parse_tag_version(tag: &str) -> Option<Version> {
    let text = tag.strip_prefix(['v', 'V']).unwrap_or(tag);
    if let Ok(version) = Version::parse(text) {
        return Some(version);
    }
    let (core, rest) = match text.find(['-', '+']) {
        Some(i) => (&text[..i], &text[i..]),
        None => (text, ""),
    };
    let parts: Vec<&str> = core.split('.').collect();
    if parts.is_empty()
        || parts.len() > 2
        || parts
            .iter()
            .any(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return None;
    }
    let padded = match parts.len() {
        1 => format!("{}.0.0{rest}", parts[0]),
        _ => format!("{}.{}.0{rest}", parts[0], parts[1]),
    };
    Version::parse(&padded).ok()
}

/// A semver range: alternatives separated by `||`, each a set of
/// comparators that must all hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SemverRange {
    text: String,
    alternatives: Vec<Vec<Comparator>>,
    include_prereleases: bool,
}

impl fmt::Display for SemverRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl SemverRange {
    /// Accepts npm/Masterminds syntax (`>=1.2.0 <2.0.0`, `1.2 - 1.4`,
    /// `^1 || ^2`, `1.x`) as well as Cargo's comma-separated form.
    pub fn parse(text: &str) -> Result<SemverRange, RefError> {
        let invalid = |why: String| RefError::InvalidRange(format!("`{text}`: {why}"));
        let mut alternatives = Vec::new();
        for alternative in text.split("||") {
            let tokens = tokens(alternative);
            if tokens.is_empty() {
                return Err(invalid("an alternative is empty".to_string()));
            }
            let mut comparators = Vec::new();
            let mut i = 0;
            while i < tokens.len() {
                // Hyphen range: `A - B` means `>=A, <=B`.
                if i + 2 < tokens.len() && tokens.get(i + 1).map(String::as_str) == Some("-") {
                    for (op, version) in [(">=", &tokens[i]), ("<=", &tokens[i + 2])] {
                        comparators.push(comparator(&format!("{op}{version}")).map_err(&invalid)?);
                    }
                    i += 3;
                    continue;
                }
                comparators.push(comparator(&tokens[i]).map_err(&invalid)?);
                i += 1;
            }
            alternatives.push(comparators);
        }
        let include_prereleases = alternatives.iter().flatten().any(|c| !c.pre.is_empty());
        Ok(SemverRange {
            text: text.trim().to_string(),
            alternatives,
            include_prereleases,
        })
    }

    pub fn matches(&self, version: &Version) -> bool {
        if !version.pre.is_empty() && !self.include_prereleases {
            return false;
        }
        self.alternatives
            .iter()
            .any(|all| all.iter().all(|c| comparator_matches(c, version)))
    }
}

/// Splits on whitespace and commas, gluing a lone operator to the version
/// after it (`>= 1.2` is `>=1.2`).
fn tokens(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut pending_op: Option<String> = None;
    for word in text.split([' ', '\t', ',']).filter(|w| !w.is_empty()) {
        if word.chars().all(|c| "<>=~^".contains(c)) {
            pending_op = Some(word.to_string());
            continue;
        }
        match pending_op.take() {
            Some(op) => out.push(format!("{op}{word}")),
            None => out.push(word.to_string()),
        }
    }
    out
}

fn comparator(token: &str) -> Result<Comparator, String> {
    let op_end = token
        .find(|c: char| !"<>=~^".contains(c))
        .unwrap_or(token.len());
    let (op, version) = token.split_at(op_end);
    let version = version.strip_prefix(['v', 'V']).unwrap_or(version);
    if op.is_empty() && matches!(version, "*" | "x" | "X") {
        // Any version; Comparator has no form for a bare wildcard.
        return Comparator::parse(">=0.0.0").map_err(|e| e.to_string());
    }
    Comparator::parse(&format!("{op}{version}")).map_err(|e| format!("`{token}`: {e}"))
}

/// Cargo's comparator semantics, without its pre-release restriction
/// (which [`SemverRange::matches`] replaces with its own rule).
fn comparator_matches(c: &Comparator, v: &Version) -> bool {
    match c.op {
        Op::Exact | Op::Wildcard => matches_exact(c, v),
        Op::Greater => matches_greater(c, v),
        Op::GreaterEq => matches_exact(c, v) || matches_greater(c, v),
        Op::Less => matches_less(c, v),
        Op::LessEq => matches_exact(c, v) || matches_less(c, v),
        Op::Tilde => matches_tilde(c, v),
        Op::Caret => matches_caret(c, v),
        _ => false,
    }
}

fn matches_exact(c: &Comparator, v: &Version) -> bool {
    v.major == c.major
        && c.minor.is_none_or(|minor| v.minor == minor)
        && c.patch
            .is_none_or(|patch| v.patch == patch && v.pre == c.pre)
}

fn matches_greater(c: &Comparator, v: &Version) -> bool {
    if v.major != c.major {
        return v.major > c.major;
    }
    let Some(minor) = c.minor else { return false };
    if v.minor != minor {
        return v.minor > minor;
    }
    let Some(patch) = c.patch else { return false };
    if v.patch != patch {
        return v.patch > patch;
    }
    v.pre > c.pre
}

fn matches_less(c: &Comparator, v: &Version) -> bool {
    if v.major != c.major {
        return v.major < c.major;
    }
    let Some(minor) = c.minor else { return false };
    if v.minor != minor {
        return v.minor < minor;
    }
    let Some(patch) = c.patch else { return false };
    if v.patch != patch {
        return v.patch < patch;
    }
    v.pre < c.pre
}

fn matches_tilde(c: &Comparator, v: &Version) -> bool {
    if v.major != c.major || c.minor.is_some_and(|minor| v.minor != minor) {
        return false;
    }
    match c.patch {
        Some(patch) if v.patch != patch => v.patch > patch,
        _ => v.pre >= c.pre,
    }
}

fn matches_caret(c: &Comparator, v: &Version) -> bool {
    if v.major != c.major {
        return false;
    }
    let Some(minor) = c.minor else { return true };
    let Some(patch) = c.patch else {
        return if c.major > 0 {
            v.minor >= minor
        } else {
            v.minor == minor
        };
    };
    if c.major > 0 {
        if v.minor != minor {
            return v.minor > minor;
        }
        if v.patch != patch {
            return v.patch > patch;
        }
    } else if minor > 0 {
        if v.minor != minor {
            return false;
        }
        if v.patch != patch {
            return v.patch > patch;
        }
    } else if v.minor != minor || v.patch != patch {
        return false;
    }
    v.pre >= c.pre
}

#[cfg(test)]
mod tests {
    use super::*;

    fn oid(n: u8) -> Oid {
        Oid::from_bytes(&[n; 20]).unwrap()
    }

    fn refs(names: &[(&str, u8)]) -> Vec<RemoteRef> {
        names
            .iter()
            .map(|(name, n)| RemoteRef {
                name: name.to_string(),
                commit: oid(*n),
            })
            .collect()
    }

    fn pick(range: &str, tags: &[&str]) -> Result<String, RefError> {
        let advertised: Vec<RemoteRef> = tags
            .iter()
            .enumerate()
            .map(|(i, t)| RemoteRef {
                name: format!("refs/tags/{t}"),
                commit: oid(i as u8 + 1),
            })
            .collect();
        let request = RefRequest::parse(range)?;
        assert!(
            matches!(request, RefRequest::Semver(_)),
            "{range} is a range"
        );
        resolve(&request, &advertised, None).map(|r| r.ref_name.replace("refs/tags/", ""))
    }

    #[test]
    fn requests_are_classified() {
        assert_eq!(
            RefRequest::parse("main").unwrap(),
            RefRequest::Name("main".into())
        );
        assert_eq!(
            RefRequest::parse("v1.2.0").unwrap(),
            RefRequest::Name("v1.2.0".into())
        );
        assert_eq!(RefRequest::parse("").unwrap(), RefRequest::Head);
        assert_eq!(
            RefRequest::parse("refs/pull/42/head").unwrap(),
            RefRequest::FullRef("refs/pull/42/head".into())
        );
        let sha = "4f2a9c1e4f2a9c1e4f2a9c1e4f2a9c1e4f2a9c1e";
        assert_eq!(
            RefRequest::parse(sha).unwrap(),
            RefRequest::Commit(sha.into())
        );
        for range in [
            ">=1.2.0 <2.0.0",
            "~1.4",
            "^2",
            "1.x",
            "*",
            "1.2 - 1.4",
            "^1 || ^2",
        ] {
            assert!(
                matches!(RefRequest::parse(range).unwrap(), RefRequest::Semver(_)),
                "{range}"
            );
        }
        assert!(matches!(
            RefRequest::parse(">=banana"),
            Err(RefError::InvalidRange(_))
        ));
    }

    #[test]
    fn branches_tags_and_full_refs_resolve() {
        let advertised = refs(&[
            ("HEAD", 1),
            ("refs/heads/main", 1),
            ("refs/heads/feature", 2),
            ("refs/tags/v1.0.0", 3),
            ("refs/pull/42/head", 4),
        ]);
        let r = |text: &str| {
            resolve(
                &RefRequest::parse(text).unwrap(),
                &advertised,
                Some("refs/heads/main"),
            )
        };
        assert_eq!(r("main").unwrap().ref_name, "refs/heads/main");
        assert_eq!(r("feature").unwrap().commit, oid(2));
        assert_eq!(r("v1.0.0").unwrap().ref_name, "refs/tags/v1.0.0");
        assert_eq!(r("refs/pull/42/head").unwrap().commit, oid(4));
        assert_eq!(r("HEAD").unwrap().ref_name, "refs/heads/main");
        assert_eq!(r("nope"), Err(RefError::Unknown { hint: None }));
        assert_eq!(
            r("1.0.0"),
            Err(RefError::Unknown {
                hint: Some("v1.0.0".into())
            })
        );
        assert_eq!(r("refs/pull/7/head"), Err(RefError::Unknown { hint: None }));
    }

    #[test]
    fn a_name_that_is_branch_and_tag_is_ambiguous() {
        let advertised = refs(&[("refs/heads/release", 1), ("refs/tags/release", 2)]);
        let error = resolve(&RefRequest::Name("release".into()), &advertised, None).unwrap_err();
        assert_eq!(
            error,
            RefError::Ambiguous {
                name: "release".into()
            }
        );
    }

    #[test]
    fn semver_ranges_pick_the_highest_match() {
        let tags = [
            "v1.2.0",
            "v1.4.2",
            "v1.4.10",
            "1.9.0",
            "v2.0.0",
            "v2.1.0-rc.1",
            "latest",
        ];
        assert_eq!(pick(">=1.2.0 <2.0.0", &tags).unwrap(), "1.9.0");
        assert_eq!(pick(">=1.2.0, <2.0.0", &tags).unwrap(), "1.9.0");
        assert_eq!(pick("~1.4", &tags).unwrap(), "v1.4.10");
        assert_eq!(pick("^2", &tags).unwrap(), "v2.0.0");
        assert_eq!(pick("^v1.2", &tags).unwrap(), "1.9.0");
        assert_eq!(pick("1.x", &tags).unwrap(), "1.9.0");
        assert_eq!(pick("1.2 - 1.4.5", &tags).unwrap(), "v1.4.2");
        assert_eq!(pick("~1.2 || ~1.4", &tags).unwrap(), "v1.4.10");
        assert_eq!(pick(">= 2.0.0", &tags).unwrap(), "v2.0.0");
        assert_eq!(pick("*", &tags).unwrap(), "v2.0.0");
    }

    #[test]
    fn prereleases_only_when_the_range_asks_for_them() {
        let tags = ["v2.0.0", "v2.1.0-rc.1", "v2.1.0-rc.2"];
        assert_eq!(pick(">=2.0.0", &tags).unwrap(), "v2.0.0");
        assert_eq!(pick(">=2.0.0-0", &tags).unwrap(), "v2.1.0-rc.2");
        assert_eq!(pick("~2.1.0-rc.1", &tags).unwrap(), "v2.1.0-rc.2");
    }

    #[test]
    fn no_matching_tag_says_what_there_is() {
        let error = pick(">=3.0.0", &["v1.0.0", "v2.5.0", "v2.6.0-rc.1", "docs"]).unwrap_err();
        assert_eq!(
            error,
            RefError::NoMatchingTag {
                tags: 3,
                newest: Some("v2.5.0".into())
            }
        );
        assert!(error.to_string().contains("newest v2.5.0"));
    }

    #[test]
    fn tag_versions_accept_short_forms() {
        assert_eq!(parse_tag_version("v1.2"), Some(Version::new(1, 2, 0)));
        assert_eq!(parse_tag_version("V3"), Some(Version::new(3, 0, 0)));
        assert_eq!(
            parse_tag_version("v1.2-rc.1").map(|v| v.to_string()),
            Some("1.2.0-rc.1".into())
        );
        assert_eq!(parse_tag_version("release-7"), None);
        assert_eq!(parse_tag_version("v1..2"), None);
    }
}

impl RefRequest {
    /// Whether a push to `pushed_ref` (a full ref, `refs/heads/main`,
    /// `refs/tags/v1.2.0`) may change what this request resolves to, so an
    /// Application asking for it should be reconciled now:
    ///
    /// ```text
    ///   main               refs/heads/main, refs/tags/main (a bare name may be either)
    ///   v1.2.0             refs/tags/v1.2.0, refs/heads/v1.2.0
    ///   refs/pull/7/head   itself only
    ///   >=1.2.0 <2.0.0     any refs/tags/<version> in the range (a new, moved or deleted tag)
    ///   HEAD               any refs/heads/* — payloads do not say which branch is the
    ///                      default, so a push to any branch may move HEAD
    ///   4f2a…(a commit)    nothing: a pinned commit never moves
    /// ```
    ///
    /// It may say yes too often (HEAD), never too rarely: a needless
    /// reconcile finds nothing changed and costs one ls-remote.
    pub fn may_move_with(&self, pushed_ref: &str) -> bool {
        match self {
            RefRequest::Commit(_) => false,
            RefRequest::Head => pushed_ref.starts_with("refs/heads/"),
            RefRequest::FullRef(name) => name == pushed_ref,
            RefRequest::Name(name) => {
                pushed_ref.strip_prefix("refs/heads/") == Some(name.as_str())
                    || pushed_ref.strip_prefix("refs/tags/") == Some(name.as_str())
            }
            RefRequest::Semver(range) => pushed_ref
                .strip_prefix("refs/tags/")
                .and_then(parse_tag_version)
                .is_some_and(|version| range.matches(&version)),
        }
    }
}

#[cfg(test)]
mod push_tests {
    use super::RefRequest;

    fn moves(request: &str, pushed_ref: &str) -> bool {
        RefRequest::parse(request)
            .unwrap()
            .may_move_with(pushed_ref)
    }

    #[test]
    fn a_branch_moves_with_its_own_ref_only() {
        assert!(moves("main", "refs/heads/main"));
        assert!(!moves("main", "refs/heads/main-2"));
        assert!(!moves("main", "refs/heads/feature/main"));
        assert!(!moves("main", "refs/pull/1/head"));
        assert!(!moves("main", "main"));
    }

    #[test]
    fn a_tag_moves_with_its_own_ref() {
        assert!(moves("v1", "refs/tags/v1"));
        assert!(!moves("v1", "refs/tags/v1.0.0"));
        assert!(!moves("v1.2.0", "refs/tags/1.2.0"));
    }

    #[test]
    fn a_bare_name_may_be_a_branch_or_a_tag() {
        assert!(moves("release", "refs/heads/release"));
        assert!(moves("release", "refs/tags/release"));
        assert!(!moves("release", "refs/notes/release"));
    }

    #[test]
    fn a_full_ref_moves_with_itself() {
        assert!(moves("refs/pull/42/head", "refs/pull/42/head"));
        assert!(!moves("refs/pull/42/head", "refs/pull/43/head"));
        assert!(moves("refs/heads/main", "refs/heads/main"));
        assert!(!moves("refs/heads/main", "refs/tags/main"));
    }

    #[test]
    fn a_semver_range_moves_with_tags_it_accepts() {
        assert!(moves(">=1.2.0 <2.0.0", "refs/tags/v1.4.0"));
        assert!(moves(">=1.2.0 <2.0.0", "refs/tags/1.2.0"));
        assert!(moves("~1.4", "refs/tags/v1.4"));
        assert!(!moves(">=1.2.0 <2.0.0", "refs/tags/v2.0.0"));
        assert!(!moves(">=1.2.0 <2.0.0", "refs/tags/v1.1.9"));
        // A pre-release only when the range asks for pre-releases.
        assert!(!moves(">=1.2.0 <2.0.0", "refs/tags/v1.5.0-rc.1"));
        assert!(moves(">=1.5.0-0", "refs/tags/v1.5.0-rc.1"));
        // Not a version, or not a tag.
        assert!(!moves("*", "refs/tags/latest"));
        assert!(!moves("*", "refs/heads/v1.4.0"));
    }

    #[test]
    fn head_moves_with_any_branch() {
        assert!(moves("HEAD", "refs/heads/main"));
        assert!(moves("", "refs/heads/trunk"));
        assert!(!moves("HEAD", "refs/tags/v1.0.0"));
        assert!(!moves("HEAD", "refs/pull/1/head"));
    }

    #[test]
    fn a_commit_never_moves() {
        let sha = "4f2a9c1e4f2a9c1e4f2a9c1e4f2a9c1e4f2a9c1e";
        assert!(!moves(sha, "refs/heads/main"));
        assert!(!moves(sha, sha));
    }
}
