//! Commit statuses on GitHub and GitLab: the commit an event is about gets
//! a status named `windlass/<application>`.
//!
//! ```text
//!   github  POST {api}/repos/{owner}/{repo}/statuses/{sha}
//!           Authorization: Bearer <token>
//!           { "state", "context": "windlass/<app>", "description", "target_url"? }
//!   gitlab  POST {api}/projects/{url-encoded path}/statuses/{sha}
//!              ?state=…&name=windlass/<app>&description=…[&target_url=…]
//!           PRIVATE-TOKEN: <token>
//! ```
//!
//! | event           | github    | gitlab     |
//! |-----------------|-----------|------------|
//! | sync-succeeded  | `success` | `success`  |
//! | sync-failed     | `failure` | `failed`   |
//! | health-degraded | `failure` | `failed`   |
//! | rolled-back     | `error`   | `canceled` |
//!
//! Drift events are not commit statuses (a `Target` refuses them). The
//! repository comes from the event's `repoURL` (`https://host/org/repo.git`,
//! `git@host:org/repo.git`, `ssh://…`), the commit from its `commit`.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::json;

use super::{Event, EventKind, JSON, Provider, Request, Target, truncate};
use crate::source::{RepoUrl, Secret, Transport};

/// GitHub keeps at most 140 characters of a status description.
const GITHUB_DESCRIPTION_LIMIT: usize = 140;
const GITLAB_DESCRIPTION_LIMIT: usize = 255;

/// RFC 3986 unreserved characters stay; everything else is encoded (so a
/// project path's `/` becomes `%2F`, as GitLab wants).
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Why an event cannot become a commit status. Names no secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StatusError {
    #[error("the event has no commit")]
    NoCommit,
    #[error("the event has no repository URL")]
    NoRepository,
    #[error("cannot tell the {provider} repository from `{shown}`: expected host/owner/name")]
    NotARepository { provider: Provider, shown: String },
    #[error("{provider} commit statuses take no {kind} events")]
    NoState { provider: Provider, kind: EventKind },
}

pub(crate) fn github_state(kind: EventKind) -> Option<&'static str> {
    match kind {
        EventKind::SyncSucceeded => Some("success"),
        EventKind::SyncFailed | EventKind::HealthDegraded => Some("failure"),
        EventKind::RolledBack => Some("error"),
        EventKind::DriftDetected | EventKind::DriftCorrected => None,
    }
}

pub(crate) fn gitlab_state(kind: EventKind) -> Option<&'static str> {
    match kind {
        EventKind::SyncSucceeded => Some("success"),
        EventKind::SyncFailed | EventKind::HealthDegraded => Some("failed"),
        EventKind::RolledBack => Some("canceled"),
        EventKind::DriftDetected | EventKind::DriftCorrected => None,
    }
}

/// A description is one line: newlines and runs of spaces become one space.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `windlass/<application name>`.
pub(crate) fn status_name(event: &Event) -> String {
    format!("windlass/{}", event.name)
}

/// The repository's path on its host: `org/repo`, `group/sub/project`.
pub(crate) fn repository_path(repo_url: &str) -> Option<String> {
    let parsed = RepoUrl::parse(repo_url).ok()?;
    if parsed.transport() == Transport::Local {
        return None;
    }
    // `scheme://host[:port]/path`, user-info already out.
    let (_, rest) = parsed.cache_key().split_once("://")?;
    let (_, path) = rest.split_once('/')?;
    let path = path.trim_matches('/');
    let path = path
        .strip_suffix(".git")
        .unwrap_or(path)
        .trim_end_matches('/');
    (path.split('/').filter(|part| !part.is_empty()).count() >= 2).then(|| path.to_string())
}

fn commit_and_path(provider: Provider, event: &Event) -> Result<(&str, String), StatusError> {
    let commit = event.commit.as_deref().ok_or(StatusError::NoCommit)?;
    let url = event.repo_url.as_deref().ok_or(StatusError::NoRepository)?;
    let path = repository_path(url).ok_or_else(|| StatusError::NotARepository {
        provider,
        shown: event.shown_repo_url().unwrap_or_default(),
    })?;
    Ok((commit, path))
}

pub(crate) fn github_request(
    target: &Target,
    event: &Event,
    description: &str,
) -> Result<Request, StatusError> {
    let state = github_state(event.kind).ok_or(StatusError::NoState {
        provider: Provider::Github,
        kind: event.kind,
    })?;
    let (commit, path) = commit_and_path(Provider::Github, event)?;
    let api = target
        .api_url
        .as_ref()
        .expect("github targets have an API URL");
    let mut body = json!({
        "state": state,
        "context": status_name(event),
        "description": truncate(&one_line(description), GITHUB_DESCRIPTION_LIMIT),
    });
    if let Some(link) = &target.address {
        body["target_url"] = json!(link.expose());
    }
    let token = target.token.as_ref().expect("github targets have a token");
    Ok(Request {
        url: Secret::new(format!(
            "{}/repos/{path}/statuses/{}",
            api.expose(),
            utf8_percent_encode(commit, COMPONENT)
        )),
        headers: vec![
            ("content-type", Secret::new(JSON)),
            ("accept", Secret::new("application/vnd.github+json")),
            ("x-github-api-version", Secret::new("2022-11-28")),
            (
                "authorization",
                Secret::new(format!("Bearer {}", token.expose())),
            ),
        ],
        body: serde_json::to_vec(&body).expect("JSON values serialise"),
    })
}

pub(crate) fn gitlab_request(
    target: &Target,
    event: &Event,
    description: &str,
) -> Result<Request, StatusError> {
    let state = gitlab_state(event.kind).ok_or(StatusError::NoState {
        provider: Provider::Gitlab,
        kind: event.kind,
    })?;
    let (commit, path) = commit_and_path(Provider::Gitlab, event)?;
    let api = target
        .api_url
        .as_ref()
        .expect("gitlab targets have an API URL");
    let encode = |text: &str| utf8_percent_encode(text, COMPONENT).to_string();
    let mut query = format!(
        "state={state}&name={}&description={}",
        encode(&status_name(event)),
        encode(&truncate(&one_line(description), GITLAB_DESCRIPTION_LIMIT)),
    );
    if let Some(link) = &target.address {
        query.push_str(&format!("&target_url={}", encode(link.expose())));
    }
    let token = target.token.as_ref().expect("gitlab targets have a token");
    Ok(Request {
        url: Secret::new(format!(
            "{}/projects/{}/statuses/{}?{query}",
            api.expose(),
            encode(&path),
            encode(commit),
        )),
        headers: vec![("private-token", token.clone())],
        body: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_paths_come_from_every_url_spelling() {
        for (url, path) in [
            ("https://github.com/org/repo.git", "org/repo"),
            ("https://user:tok@github.com/Org/Repo/", "Org/Repo"),
            ("git@github.com:org/repo.git", "org/repo"),
            (
                "ssh://git@gitlab.com:2222/group/sub/project.git",
                "group/sub/project",
            ),
            ("http://127.0.0.1:8080/group/project", "group/project"),
        ] {
            assert_eq!(repository_path(url).as_deref(), Some(path), "{url}");
        }
        for url in [
            "/srv/repo",
            "file:///srv/org/repo",
            "https://github.com/repo",
            "",
        ] {
            assert_eq!(repository_path(url), None, "{url}");
        }
    }

    #[test]
    fn every_status_event_has_a_state_and_drift_has_none() {
        for kind in &EventKind::ALL[..4] {
            assert!(github_state(*kind).is_some() && gitlab_state(*kind).is_some());
        }
        for kind in [EventKind::DriftDetected, EventKind::DriftCorrected] {
            assert_eq!((github_state(kind), gitlab_state(kind)), (None, None));
        }
    }
}
