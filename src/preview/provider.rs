//! A Git host's API for pull-request previews (`spec.provider`): which pull
//! requests are open, and commit statuses that say how each preview is.
//!
//! ```text
//!   GitHub  GET  {api}/repos/{o}/{r}/pulls?state=open         POST {api}/repos/{o}/{r}/statuses/{sha}
//!   Gitea   GET  {api}/repos/{o}/{r}/pulls?state=open         POST {api}/repos/{o}/{r}/statuses/{sha}
//!   GitLab  GET  {api}/projects/{path}/merge_requests?state=opened
//!                                                             POST {api}/projects/{path}/statuses/{sha}
//!   pulls ──wanted (open, not draft, all labels)──► number → PullRequest { branch, sha }
//! ```
//!
//! Git hosts keep `refs/pull/*/head` after a pull request closes; with a
//! provider, a closed, merged or draft pull request has no preview. Requests
//! and parsing are apart: everything but [`ApiClient`] is pure. The token
//! never appears in errors, logs or `Debug` output.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use axum::body::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::Value;

use super::naming::PreviewRef;
use crate::source::Secret;
use crate::spec::ScmProvider;

/// The commit status context (GitLab: name) windlass posts.
pub const STATUS_CONTEXT: &str = "windlass/preview";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    #[error("spec.provider: {0}")]
    Invalid(String),
    #[error("{url}: {reason}")]
    Request { url: String, reason: String },
    #[error("{url}: the answer is not a list of pull requests: {reason}")]
    Parse { url: String, reason: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    GitHub,
    GitLab,
    Gitea,
}

/// A configured provider: where its API is and what it filters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provider {
    pub kind: Kind,
    /// Base URL without a trailing `/`.
    pub api: String,
    /// `owner/name` (GitLab: the project path).
    pub repository: String,
    pub labels: Vec<String>,
    pub commit_status: bool,
}

/// One pull request as the host reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullRequest {
    pub number: u64,
    /// The source branch.
    pub branch: String,
    pub sha: String,
    pub open: bool,
    pub draft: bool,
    pub labels: Vec<String>,
}

/// The state a commit status reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CommitState {
    Pending,
    Success,
    Failure,
}

impl Provider {
    pub fn from_spec(spec: &ScmProvider, repo_url: &str) -> Result<Provider, ProviderError> {
        let kind = match spec.kind.as_str() {
            "github" => Kind::GitHub,
            "gitlab" => Kind::GitLab,
            "gitea" => Kind::Gitea,
            other => {
                return Err(ProviderError::Invalid(format!(
                    "unknown type `{other}` (github, gitlab or gitea)"
                )));
            }
        };
        let api = match (&spec.api_url, kind) {
            (Some(url), _) => url.trim_end_matches('/').to_string(),
            (None, Kind::GitHub) => "https://api.github.com".to_string(),
            (None, Kind::GitLab) => "https://gitlab.com/api/v4".to_string(),
            (None, Kind::Gitea) => {
                return Err(ProviderError::Invalid(
                    "gitea needs apiURL (https://gitea.example.com/api/v1)".into(),
                ));
            }
        };
        let repository = match &spec.repository {
            Some(repository) => repository.trim_matches('/').to_string(),
            None => repository_from_url(repo_url).ok_or_else(|| {
                ProviderError::Invalid(format!(
                    "cannot tell owner/name from repoURL {}: set provider.repository",
                    crate::source::RepoUrl::parse(repo_url)
                        .map(|u| u.to_string())
                        .unwrap_or_else(|_| "(invalid)".into())
                ))
            })?,
        };
        Ok(Provider {
            kind,
            api,
            repository,
            labels: spec.labels.clone(),
            commit_status: spec.commit_status.unwrap_or(true),
        })
    }

    /// The URL that lists open pull requests (the first 100).
    pub fn pulls_url(&self) -> String {
        match self.kind {
            Kind::GitHub => format!(
                "{}/repos/{}/pulls?state=open&per_page=100",
                self.api, self.repository
            ),
            Kind::Gitea => format!(
                "{}/repos/{}/pulls?state=open&limit=100",
                self.api, self.repository
            ),
            Kind::GitLab => format!(
                "{}/projects/{}/merge_requests?state=opened&per_page=100",
                self.api,
                self.repository.replace('/', "%2F")
            ),
        }
    }

    /// Reads the pull-request list the host answered.
    pub fn parse_pulls(&self, url: &str, body: &[u8]) -> Result<Vec<PullRequest>, ProviderError> {
        let parse_error = |reason: String| ProviderError::Parse {
            url: url.to_string(),
            reason,
        };
        let value: Value = serde_json::from_slice(body).map_err(|e| parse_error(e.to_string()))?;
        let items = value
            .as_array()
            .ok_or_else(|| parse_error("expected a JSON array".into()))?;
        items
            .iter()
            .map(|item| {
                self.parse_pull(item).ok_or_else(|| {
                    parse_error(format!("an item lacks number, branch or sha: {item}"))
                })
            })
            .collect()
    }

    fn parse_pull(&self, item: &Value) -> Option<PullRequest> {
        let text = |v: &Value| v.as_str().map(str::to_string);
        let labels = item["labels"]
            .as_array()
            .map(|labels| {
                labels
                    .iter()
                    .filter_map(|l| l.as_str().or_else(|| l["name"].as_str()))
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        match self.kind {
            Kind::GitHub | Kind::Gitea => Some(PullRequest {
                number: item["number"].as_u64()?,
                branch: text(&item["head"]["ref"])?,
                sha: text(&item["head"]["sha"])?,
                open: item["state"].as_str() == Some("open"),
                draft: item["draft"].as_bool().unwrap_or(false),
                labels,
            }),
            Kind::GitLab => Some(PullRequest {
                number: item["iid"].as_u64()?,
                branch: text(&item["source_branch"])?,
                sha: text(&item["sha"])?,
                open: item["state"].as_str() == Some("opened"),
                draft: item["draft"].as_bool().unwrap_or(false)
                    || item["work_in_progress"].as_bool().unwrap_or(false),
                labels,
            }),
        }
    }

    /// The pull requests that get previews: open, not drafts, carrying
    /// every label asked for.
    pub fn wanted(&self, pulls: &[PullRequest]) -> BTreeMap<u64, PullRequest> {
        pulls
            .iter()
            .filter(|p| p.open && !p.draft)
            .filter(|p| self.labels.iter().all(|l| p.labels.contains(l)))
            .map(|p| (p.number, p.clone()))
            .collect()
    }

    /// The request that posts a commit status: (URL, JSON body).
    pub fn status_request(
        &self,
        sha: &str,
        state: CommitState,
        target_url: Option<&str>,
        description: &str,
    ) -> (String, Value) {
        let mut body = match self.kind {
            Kind::GitHub | Kind::Gitea => serde_json::json!({
                "state": match state {
                    CommitState::Pending => "pending",
                    CommitState::Success => "success",
                    CommitState::Failure => "failure",
                },
                "context": STATUS_CONTEXT,
                "description": description,
            }),
            Kind::GitLab => serde_json::json!({
                "state": match state {
                    CommitState::Pending => "pending",
                    CommitState::Success => "success",
                    CommitState::Failure => "failed",
                },
                "name": STATUS_CONTEXT,
                "description": description,
            }),
        };
        if let Some(url) = target_url {
            body["target_url"] = Value::String(url.to_string());
        }
        let url = match self.kind {
            Kind::GitHub | Kind::Gitea => {
                format!("{}/repos/{}/statuses/{sha}", self.api, self.repository)
            }
            Kind::GitLab => format!(
                "{}/projects/{}/statuses/{sha}",
                self.api,
                self.repository.replace('/', "%2F")
            ),
        };
        (url, body)
    }

    /// The header that carries the token.
    fn auth_header(&self, token: &Secret) -> (&'static str, String) {
        match self.kind {
            Kind::GitHub => ("authorization", format!("Bearer {}", token.expose())),
            Kind::Gitea => ("authorization", format!("token {}", token.expose())),
            Kind::GitLab => ("private-token", token.expose().to_string()),
        }
    }
}

/// `owner/name` from a repository URL's path: `https://github.com/org/web.git`
/// → `org/web`, `git@github.com:org/web.git` → `org/web`.
pub fn repository_from_url(url: &str) -> Option<String> {
    let without_scheme = url.split_once("://").map(|(_, rest)| rest).unwrap_or(url);
    let path = match without_scheme.split_once('/') {
        Some((host, path)) if !host.contains(':') || url.contains("://") => path,
        _ => without_scheme.split_once(':')?.1,
    };
    let path = path.trim_matches('/').trim_end_matches(".git");
    (path.contains('/') && !path.is_empty()).then(|| path.to_string())
}

/// How many pull requests one listing asks for: a full page may not be all.
pub const PAGE: usize = 100;

/// The refs that keep their previews under a provider: a numbered ref whose
/// pull request is wanted (its `{{branch}}` becomes the pull request's
/// source branch), or a branch ref that is the source of a wanted one.
///
/// When the host's answer was a full page (`pulls.len() >= PAGE`), a pull
/// request missing from it may be open on a later page: its ref keeps a
/// preview it already has (`previewed`), and gets none new.
pub fn only_wanted(
    listed: Vec<PreviewRef>,
    provider: &Provider,
    pulls: &[PullRequest],
    previewed: &BTreeSet<String>,
) -> Vec<PreviewRef> {
    let wanted = provider.wanted(pulls);
    let complete = pulls.len() < PAGE;
    listed
        .into_iter()
        .filter_map(|mut r| match r.number {
            Some(number) => match wanted.get(&number) {
                Some(pull) => {
                    r.branch = pull.branch.clone();
                    Some(r)
                }
                None => {
                    let unseen = !pulls.iter().any(|p| p.number == number);
                    (!complete && unseen && previewed.contains(&r.ref_name)).then_some(r)
                }
            },
            None => wanted.values().any(|p| p.branch == r.branch).then_some(r),
        })
        .collect()
}

/// The commit status a preview's state maps to.
pub fn commit_state(ready: &str) -> CommitState {
    match ready {
        "True" => CommitState::Success,
        "False" => CommitState::Failure,
        _ => CommitState::Pending,
    }
}

/// Plain HTTP(S) requests to a Git host's API (native root certificates).
pub struct ApiClient {
    client: hyper_util::client::legacy::Client<
        hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
        Full<Bytes>,
    >,
    timeout: Duration,
}

impl ApiClient {
    pub fn new(timeout: Duration) -> Result<ApiClient, String> {
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(rustls::crypto::ring::default_provider())
            .map_err(|e| format!("loading the system's root certificates: {e}"))?
            .https_or_http()
            .enable_http1()
            .build();
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build(connector);
        Ok(ApiClient { client, timeout })
    }

    /// The open pull requests.
    pub async fn pulls(
        &self,
        provider: &Provider,
        token: Option<&Secret>,
    ) -> Result<Vec<PullRequest>, ProviderError> {
        let url = provider.pulls_url();
        let body = self
            .send(provider, http::Method::GET, &url, token, None)
            .await?;
        provider.parse_pulls(&url, &body)
    }

    /// Posts a commit status.
    pub async fn post_status(
        &self,
        provider: &Provider,
        token: Option<&Secret>,
        sha: &str,
        state: CommitState,
        target_url: Option<&str>,
        description: &str,
    ) -> Result<(), ProviderError> {
        let (url, body) = provider.status_request(sha, state, target_url, description);
        self.send(provider, http::Method::POST, &url, token, Some(body))
            .await
            .map(|_| ())
    }

    async fn send(
        &self,
        provider: &Provider,
        method: http::Method,
        url: &str,
        token: Option<&Secret>,
        body: Option<Value>,
    ) -> Result<Vec<u8>, ProviderError> {
        let failed = |reason: String| ProviderError::Request {
            url: url.to_string(),
            reason,
        };
        let mut request = http::Request::builder()
            .method(method)
            .uri(url)
            .header("accept", "application/json")
            .header("user-agent", "windlass");
        if let Some(token) = token {
            let (name, value) = provider.auth_header(token);
            request = request.header(name, value);
        }
        let payload = match body {
            Some(body) => {
                request = request.header("content-type", "application/json");
                Bytes::from(body.to_string())
            }
            None => Bytes::new(),
        };
        let request = request
            .body(Full::new(payload))
            .map_err(|e| failed(format!("bad request: {e}")))?;
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| failed(crate::cluster::chain(&e)))?;
            let status = response.status();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| failed(e.to_string()))?
                .to_bytes();
            if !status.is_success() {
                let text = String::from_utf8_lossy(&body);
                let text: String = text.chars().take(200).collect();
                return Err(failed(format!("HTTP {status}: {text}")));
            }
            Ok(body.to_vec())
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| failed(format!("no answer within {}s", self.timeout.as_secs())))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider(kind: &str, labels: &[&str]) -> Provider {
        Provider::from_spec(
            &ScmProvider {
                kind: kind.into(),
                api_url: (kind == "gitea").then(|| "https://gitea.example.com/api/v1/".into()),
                labels: labels.iter().map(|l| l.to_string()).collect(),
                ..ScmProvider::default()
            },
            "https://git.example.com/org/web.git",
        )
        .unwrap()
    }

    #[test]
    fn repositories_come_from_the_url_path() {
        assert_eq!(
            repository_from_url("https://github.com/org/web.git").as_deref(),
            Some("org/web")
        );
        assert_eq!(
            repository_from_url("git@github.com:org/web.git").as_deref(),
            Some("org/web")
        );
        assert_eq!(
            repository_from_url("ssh://git@gitlab.com/group/sub/web").as_deref(),
            Some("group/sub/web")
        );
        assert_eq!(repository_from_url("git://127.0.0.1:9418/deploy.git"), None);
    }

    #[test]
    fn providers_have_defaults_and_say_what_is_missing() {
        assert_eq!(provider("github", &[]).api, "https://api.github.com");
        assert_eq!(
            provider("gitea", &[]).api,
            "https://gitea.example.com/api/v1"
        );
        let error = Provider::from_spec(
            &ScmProvider {
                kind: "gitea".into(),
                ..ScmProvider::default()
            },
            "https://x/o/r.git",
        )
        .unwrap_err();
        assert!(error.to_string().contains("apiURL"), "{error}");
        let error = Provider::from_spec(
            &ScmProvider {
                kind: "github".into(),
                ..ScmProvider::default()
            },
            "git://127.0.0.1/deploy.git",
        )
        .unwrap_err();
        assert!(error.to_string().contains("provider.repository"), "{error}");
    }

    #[test]
    fn github_pulls_are_read_and_filtered() {
        let github = provider("github", &["preview"]);
        assert_eq!(
            github.pulls_url(),
            "https://api.github.com/repos/org/web/pulls?state=open&per_page=100"
        );
        let body = serde_json::json!([
            { "number": 1, "state": "open", "draft": false, "head": { "ref": "feature/a", "sha": "aaa" },
              "labels": [{ "name": "preview" }] },
            { "number": 2, "state": "open", "draft": true, "head": { "ref": "b", "sha": "bbb" },
              "labels": [{ "name": "preview" }] },
            { "number": 3, "state": "open", "head": { "ref": "c", "sha": "ccc" }, "labels": [] },
            { "number": 4, "state": "closed", "head": { "ref": "d", "sha": "ddd" },
              "labels": [{ "name": "preview" }] },
        ]);
        let pulls = github
            .parse_pulls("u", body.to_string().as_bytes())
            .unwrap();
        assert_eq!(pulls.len(), 4);
        let wanted = github.wanted(&pulls);
        assert_eq!(wanted.keys().copied().collect::<Vec<_>>(), [1]);
        assert_eq!(wanted[&1].branch, "feature/a");
        // Without a labels filter, every open non-draft one.
        let all = provider("github", &[]).wanted(&pulls);
        assert_eq!(all.keys().copied().collect::<Vec<_>>(), [1, 3]);
    }

    #[test]
    fn gitlab_merge_requests_are_read() {
        let gitlab = provider("gitlab", &[]);
        assert_eq!(
            gitlab.pulls_url(),
            "https://gitlab.com/api/v4/projects/org%2Fweb/merge_requests?state=opened&per_page=100"
        );
        let body = serde_json::json!([
            { "iid": 12, "state": "opened", "draft": false, "source_branch": "x", "sha": "s1", "labels": ["a"] },
            { "iid": 13, "state": "opened", "work_in_progress": true, "source_branch": "y", "sha": "s2", "labels": [] },
        ]);
        let pulls = gitlab
            .parse_pulls("u", body.to_string().as_bytes())
            .unwrap();
        assert_eq!(pulls[0].labels, ["a"]);
        assert_eq!(
            gitlab.wanted(&pulls).keys().copied().collect::<Vec<_>>(),
            [12]
        );
    }

    #[test]
    fn a_bad_answer_names_the_url() {
        let error = provider("github", &[])
            .parse_pulls("https://api/x", b"{\"message\":\"Not Found\"}")
            .unwrap_err();
        assert!(error.to_string().starts_with("https://api/x: "), "{error}");
    }

    #[test]
    fn commit_statuses_per_host() {
        let (url, body) = provider("github", &[]).status_request(
            "abc",
            CommitState::Success,
            Some("https://pr-7.example.com"),
            "preview web-pr-7 is ready",
        );
        assert_eq!(url, "https://api.github.com/repos/org/web/statuses/abc");
        assert_eq!(body["state"], "success");
        assert_eq!(body["context"], STATUS_CONTEXT);
        assert_eq!(body["target_url"], "https://pr-7.example.com");
        let (url, body) =
            provider("gitlab", &[]).status_request("abc", CommitState::Failure, None, "refused");
        assert_eq!(
            url,
            "https://gitlab.com/api/v4/projects/org%2Fweb/statuses/abc"
        );
        assert_eq!(body["state"], "failed");
        assert!(body.get("target_url").is_none());
        assert_eq!(commit_state("True"), CommitState::Success);
        assert_eq!(commit_state("Unknown"), CommitState::Pending);
    }

    #[test]
    fn only_wanted_pull_requests_keep_their_refs() {
        use crate::preview::naming::RefPattern;
        let pulls = RefPattern::parse("refs/pull/*/head").unwrap();
        let heads = RefPattern::parse("refs/heads/*").unwrap();
        let pull = |n: u64, branch: &str| PullRequest {
            number: n,
            branch: branch.into(),
            sha: "s".into(),
            open: true,
            draft: false,
            labels: Vec::new(),
        };
        let github = provider("github", &[]);
        let open = [pull(1, "feature-a")];
        let listed = || {
            vec![
                PreviewRef::new(&pulls, "refs/pull/1/head", "s").unwrap(),
                PreviewRef::new(&pulls, "refs/pull/2/head", "s").unwrap(),
            ]
        };
        let previewed = BTreeSet::from(["refs/pull/2/head".to_string()]);
        let kept = only_wanted(listed(), &github, &open, &previewed);
        assert_eq!(kept.len(), 1, "#2 is closed: the answer was complete");
        assert_eq!(kept[0].branch, "feature-a");
        let branches = vec![
            PreviewRef::new(&heads, "refs/heads/feature-a", "s").unwrap(),
            PreviewRef::new(&heads, "refs/heads/other", "s").unwrap(),
        ];
        let kept = only_wanted(branches, &github, &open, &BTreeSet::new());
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].ref_name, "refs/heads/feature-a");

        // A full page: #2 may be open on the next one; it keeps its preview.
        let page: Vec<PullRequest> = (100..100 + PAGE as u64).map(|n| pull(n, "x")).collect();
        let page = [open.to_vec(), page].concat();
        let kept = only_wanted(listed(), &github, &page, &previewed);
        assert_eq!(kept.len(), 2);
        let kept = only_wanted(listed(), &github, &page, &BTreeSet::new());
        assert_eq!(kept.len(), 1, "but gets none new");
        // One on the page as a draft goes, full page or not.
        let mut drafts = page.clone();
        drafts.push(PullRequest {
            draft: true,
            ..pull(2, "b")
        });
        assert_eq!(only_wanted(listed(), &github, &drafts, &previewed).len(), 1);
    }

    #[test]
    fn the_token_goes_in_the_hosts_header() {
        let token = Secret::new("t0ken");
        assert_eq!(
            provider("github", &[]).auth_header(&token),
            ("authorization", "Bearer t0ken".to_string())
        );
        assert_eq!(
            provider("gitlab", &[]).auth_header(&token).0,
            "private-token"
        );
    }
}
