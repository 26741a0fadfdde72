//! Repository URLs: which transport, what to hand libgit2, and how to show
//! them without credentials.
//!
//! ```text
//!   "https://user:tok@host/org/repo.git" ──parse──► RepoUrl { transport: Https,
//!                                                    fetch_url: "https://host/org/repo.git",
//!                                                    embedded: Some(user, tok) }
//!   Display / Debug ──► "https://***@host/org/repo.git"
//! ```
//!
//! Credentials embedded in an HTTP(S) URL are taken out of it: libgit2 only
//! ever sees the clean URL (so no error message of its own can carry them)
//! and the credentials travel separately, like those from flags or Secrets.

use std::fmt;
use std::path::{Path, PathBuf};

use super::auth::Secret;

/// How a repository is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// A path on this machine, or `file://`.
    Local,
    /// `git://`, the unauthenticated git daemon protocol.
    Git,
    Http,
    Https,
    /// `ssh://` or scp-like `user@host:path`.
    Ssh,
}

impl Transport {
    /// Whether fetches can be shallow. libgit2's local transport cannot.
    pub fn supports_shallow(self) -> bool {
        !matches!(self, Transport::Local)
    }
}

/// A repository URL, parsed once.
#[derive(Clone, PartialEq, Eq)]
pub struct RepoUrl {
    transport: Transport,
    /// What libgit2 fetches from: no password, ever.
    fetch_url: String,
    /// How the URL is shown: user-info replaced by `***` for HTTP(S).
    display: String,
    /// The key the mirror cache uses: the same repository reached through
    /// different credentials shares one mirror.
    cache_key: String,
    /// `user:password@` taken from an HTTP(S) URL.
    embedded: Option<(String, Secret)>,
    /// The SSH user from the URL (`git` in `git@host:org/repo`).
    ssh_user: Option<String>,
}

#[derive(Debug, thiserror::Error)]
#[error("invalid repository URL `{shown}`: {reason}")]
pub struct InvalidUrl {
    pub shown: String,
    pub reason: String,
}

impl RepoUrl {
    pub fn parse(input: &str) -> Result<RepoUrl, InvalidUrl> {
        let input = input.trim();
        let invalid = |reason: &str| InvalidUrl {
            shown: redact_loosely(input),
            reason: reason.to_string(),
        };
        if input.is_empty() {
            return Err(invalid("it is empty"));
        }
        if let Some((scheme, rest)) = input.split_once("://") {
            let transport = match scheme.to_ascii_lowercase().as_str() {
                "file" => Transport::Local,
                "git" => Transport::Git,
                "http" => Transport::Http,
                "https" => Transport::Https,
                "ssh" | "git+ssh" | "ssh+git" => Transport::Ssh,
                other => return Err(invalid(&format!("unsupported scheme `{other}`"))),
            };
            if transport == Transport::Local {
                return Ok(RepoUrl::local(rest, input));
            }
            let (authority, path) = match rest.find('/') {
                Some(i) => (&rest[..i], &rest[i..]),
                None => (rest, ""),
            };
            let (userinfo, host) = match authority.rfind('@') {
                Some(i) => (Some(&authority[..i]), &authority[i + 1..]),
                None => (None, authority),
            };
            if host.is_empty() {
                return Err(invalid("it has no host"));
            }
            if path.trim_matches('/').is_empty() {
                return Err(invalid("it has no repository path"));
            }
            let scheme = match transport {
                Transport::Git => "git",
                Transport::Http => "http",
                Transport::Https => "https",
                _ => "ssh",
            };
            let clean = format!("{scheme}://{host}{path}");
            let mut url = RepoUrl {
                transport,
                fetch_url: clean.clone(),
                display: clean.clone(),
                cache_key: clean,
                embedded: None,
                ssh_user: None,
            };
            match (transport, userinfo) {
                (_, None) => {}
                (Transport::Ssh, Some(info)) => {
                    // SSH URLs carry a user name, not a password.
                    let user = info.split(':').next().unwrap_or_default().to_string();
                    url.fetch_url = format!("ssh://{user}@{host}{path}");
                    url.display = url.fetch_url.clone();
                    url.ssh_user = Some(user);
                }
                (Transport::Git, Some(_)) => {
                    return Err(invalid("git:// URLs cannot carry credentials"));
                }
                (_, Some(info)) => {
                    let (user, password) = info.split_once(':').unwrap_or((info, ""));
                    url.display = format!("{scheme}://***@{host}{path}");
                    url.embedded =
                        Some((percent_decode(user), Secret::new(percent_decode(password))));
                }
            }
            return Ok(url);
        }
        // scp-like `user@host:path`, as long as the part before `:` has no
        // slash (otherwise it is a local path with a colon in it).
        if let Some((before, path)) = input.split_once(':')
            && !before.contains('/')
            && !before.is_empty()
            && !Path::new(input).exists()
        {
            let (user, host) = match before.rsplit_once('@') {
                Some((user, host)) => (Some(user.to_string()), host),
                None => (None, before),
            };
            if path.is_empty() {
                return Err(invalid("it has no repository path"));
            }
            let shown = match &user {
                Some(user) => format!("{user}@{host}:{path}"),
                None => format!("{host}:{path}"),
            };
            return Ok(RepoUrl {
                transport: Transport::Ssh,
                fetch_url: shown.clone(),
                display: shown,
                cache_key: format!("ssh://{host}/{}", path.trim_start_matches('/')),
                embedded: None,
                ssh_user: user,
            });
        }
        Ok(RepoUrl::local(input, input))
    }

    fn local(path: &str, original: &str) -> RepoUrl {
        let path = PathBuf::from(path);
        let absolute = std::path::absolute(&path).unwrap_or(path);
        let shown = absolute.display().to_string();
        RepoUrl {
            transport: Transport::Local,
            fetch_url: shown.clone(),
            display: if original.starts_with("file://") {
                format!("file://{shown}")
            } else {
                shown.clone()
            },
            cache_key: format!("file://{shown}"),
            embedded: None,
            ssh_user: None,
        }
    }

    pub fn transport(&self) -> Transport {
        self.transport
    }

    /// The URL libgit2 connects to. Contains no password.
    pub fn fetch_url(&self) -> &str {
        &self.fetch_url
    }

    pub fn cache_key(&self) -> &str {
        &self.cache_key
    }

    pub fn ssh_user(&self) -> Option<&str> {
        self.ssh_user.as_deref()
    }

    /// `user:password` that came inside the URL.
    pub fn embedded_credentials(&self) -> Option<(&str, &Secret)> {
        self.embedded.as_ref().map(|(u, p)| (u.as_str(), p))
    }

    /// `host` or `[host]:port` as OpenSSH writes it in known_hosts, for SSH URLs.
    pub fn known_hosts_name(&self) -> Option<String> {
        if self.transport != Transport::Ssh {
            return None;
        }
        let rest = self
            .fetch_url
            .strip_prefix("ssh://")
            .map(|r| r.split('/').next().unwrap_or(r))
            .unwrap_or_else(|| self.fetch_url.split(':').next().unwrap_or_default());
        let host_port = rest.rsplit('@').next().unwrap_or(rest);
        Some(match host_port.rsplit_once(':') {
            Some((host, port)) if port != "22" && !host.ends_with(']') => {
                format!("[{host}]:{port}")
            }
            Some((host, _)) => host.to_string(),
            None => host_port.to_string(),
        })
    }
}

impl fmt::Display for RepoUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.display)
    }
}

impl fmt::Debug for RepoUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RepoUrl({})", self.display)
    }
}

/// For messages about input that did not even parse: hide anything between
/// `://` and `@`.
fn redact_loosely(input: &str) -> String {
    match (input.find("://"), input.rfind('@')) {
        (Some(start), Some(at)) if at > start => {
            format!("{}***{}", &input[..start + 3], &input[at..])
        }
        _ => input.to_string(),
    }
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(high), Some(low)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push((high * 16 + low) as u8);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_credentials_are_taken_out_and_redacted() {
        let url = RepoUrl::parse("https://deploy:t%40ken@git.example.com/org/repo.git").unwrap();
        assert_eq!(url.transport(), Transport::Https);
        assert_eq!(url.fetch_url(), "https://git.example.com/org/repo.git");
        assert_eq!(url.to_string(), "https://***@git.example.com/org/repo.git");
        assert_eq!(
            format!("{url:?}"),
            "RepoUrl(https://***@git.example.com/org/repo.git)"
        );
        let (user, password) = url.embedded_credentials().unwrap();
        assert_eq!(user, "deploy");
        assert_eq!(password.expose(), "t@ken");
        assert_eq!(url.cache_key(), "https://git.example.com/org/repo.git");
    }

    #[test]
    fn transports_are_recognised() {
        let t = |s: &str| RepoUrl::parse(s).unwrap().transport();
        assert_eq!(t("git://127.0.0.1:9418/repo.git"), Transport::Git);
        assert_eq!(t("http://127.0.0.1/repo.git"), Transport::Http);
        assert_eq!(t("ssh://git@127.0.0.1:2222/srv/repo.git"), Transport::Ssh);
        assert_eq!(t("git@github.com:org/repo.git"), Transport::Ssh);
        assert_eq!(t("file:///srv/repo.git"), Transport::Local);
        assert_eq!(t("/srv/repo.git"), Transport::Local);
        assert_eq!(t("./relative/repo"), Transport::Local);
    }

    #[test]
    fn ssh_urls_keep_the_user_and_name_the_known_host() {
        let url = RepoUrl::parse("ssh://git@127.0.0.1:2222/srv/repo.git").unwrap();
        assert_eq!(url.ssh_user(), Some("git"));
        assert_eq!(url.known_hosts_name().as_deref(), Some("[127.0.0.1]:2222"));
        let url = RepoUrl::parse("git@github.com:org/repo.git").unwrap();
        assert_eq!(url.known_hosts_name().as_deref(), Some("github.com"));
        let url = RepoUrl::parse("ssh://example.com:22/repo").unwrap();
        assert_eq!(url.known_hosts_name().as_deref(), Some("example.com"));
    }

    #[test]
    fn same_repository_shares_a_cache_key_whatever_the_credentials() {
        let a = RepoUrl::parse("https://a:b@host/repo.git").unwrap();
        let b = RepoUrl::parse("https://host/repo.git").unwrap();
        assert_eq!(a.cache_key(), b.cache_key());
    }

    #[test]
    fn invalid_urls_are_errors_that_never_show_the_password() {
        let error = RepoUrl::parse("ftp://user:hunter2@host/repo").unwrap_err();
        assert!(!error.to_string().contains("hunter2"), "{error}");
        assert!(
            error.to_string().contains("unsupported scheme `ftp`"),
            "{error}"
        );
        let error = RepoUrl::parse("https://user:hunter2@host/").unwrap_err();
        assert!(!error.to_string().contains("hunter2"), "{error}");
        assert!(RepoUrl::parse("git://user@host/repo").is_err());
        assert!(RepoUrl::parse("").is_err());
    }
}

/// The repository a URL names, whatever the transport and credentials: the
/// key that matches a webhook's repository URLs to Applications' `repoURL`s.
///
/// ```text
///   https://GitHub.com/Org/Repo.git      ┐
///   http://github.com/org/repo           │
///   ssh://git@github.com:22/org/repo.git ├──► "github.com/org/repo"
///   git@github.com:org/repo.git          │
///   https://user:token@github.com/org/repo/
///   git://github.com/org/repo            ┘
///   https://git.example.com:8443/org/repo ──► "git.example.com:8443/org/repo"
///   file:///srv/repo, /srv/repo/         ──► "/srv/repo"
/// ```
///
/// Remote URLs lose their scheme, user-info, the scheme's default port
/// (ssh 22, http 80, https 443, git 9418; any other port stays, since it may
/// be another server), trailing `/` and `.git`; host and path are lowercased.
/// The path is lowercased because GitHub, GitLab, Gitea and Bitbucket treat
/// owner and repository names case-insensitively and payloads do not always
/// spell them as the Application does; on a case-sensitive server two
/// repositories differing only in case share an identity, which costs an
/// extra (cheap) reconcile, never a missed one. Local paths and `file://`
/// URLs become their absolute path, unchanged in case. `None` when the text
/// is not a repository URL at all.
pub fn repository_identity(url: &str) -> Option<String> {
    let parsed = RepoUrl::parse(url).ok()?;
    if parsed.transport == Transport::Local {
        let path = parsed.fetch_url.trim_end_matches('/');
        return Some(if path.is_empty() { "/" } else { path }.to_string());
    }
    // The cache key is `scheme://host[:port]/path` for every remote
    // transport, with user-info already taken out.
    let (scheme, rest) = parsed.cache_key.split_once("://")?;
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let default_port = match scheme {
        "ssh" => "22",
        "http" => "80",
        "https" => "443",
        _ => "9418",
    };
    let authority = authority.to_ascii_lowercase();
    // `[::1]` has colons but no port: its last part, `1]`, is no port number.
    let authority = match authority.rsplit_once(':') {
        Some((host, port)) if port == default_port => host.to_string(),
        _ => authority,
    };
    let mut path = path.trim_matches('/').to_lowercase();
    if let Some(stripped) = path.strip_suffix(".git") {
        path = stripped.trim_end_matches('/').to_string();
    }
    if path.is_empty() {
        return None;
    }
    Some(format!("{authority}/{path}"))
}

#[cfg(test)]
mod identity_tests {
    use super::repository_identity;

    #[test]
    fn every_spelling_of_one_repository_is_one_identity() {
        for url in [
            "https://GitHub.com/Org/Repo.git",
            "http://github.com/org/repo",
            "https://github.com:443/org/repo",
            "http://github.com:80/org/repo.git",
            "ssh://git@github.com:22/org/repo.git",
            "ssh://git@github.com/org/repo",
            "git+ssh://git@github.com/org/repo.git",
            "git@github.com:org/repo.git",
            "git@github.com:/org/repo.git",
            "github.com:org/repo",
            "https://user:token@github.com/org/repo/",
            "https://user@github.com/org/repo.git/",
            "git://github.com/org/repo",
            "git://github.com:9418/org/repo.git",
            "  https://github.com/org/repo  ",
        ] {
            assert_eq!(
                repository_identity(url).as_deref(),
                Some("github.com/org/repo"),
                "{url}"
            );
        }
    }

    #[test]
    fn a_non_default_port_is_another_server() {
        assert_eq!(
            repository_identity("https://git.example.com:8443/org/repo.git").as_deref(),
            Some("git.example.com:8443/org/repo")
        );
        assert_eq!(
            repository_identity("ssh://git@Bitbucket.example.com:7999/prj/repo.git").as_deref(),
            Some("bitbucket.example.com:7999/prj/repo")
        );
        // The default port of another scheme is not this scheme's default.
        assert_eq!(
            repository_identity("http://127.0.0.1:443/repo.git").as_deref(),
            Some("127.0.0.1:443/repo")
        );
        assert_ne!(
            repository_identity("https://git.example.com:8443/org/repo"),
            repository_identity("https://git.example.com/org/repo")
        );
    }

    #[test]
    fn ipv6_hosts_keep_their_brackets() {
        assert_eq!(
            repository_identity("http://[::1]:8080/org/repo.git").as_deref(),
            Some("[::1]:8080/org/repo")
        );
        assert_eq!(
            repository_identity("https://[::1]/org/repo").as_deref(),
            Some("[::1]/org/repo")
        );
        assert_eq!(
            repository_identity("https://[::1]:443/org/repo").as_deref(),
            Some("[::1]/org/repo")
        );
    }

    #[test]
    fn nested_groups_and_different_repositories_stay_apart() {
        assert_eq!(
            repository_identity("https://gitlab.example.com/group/sub/repo.git").as_deref(),
            Some("gitlab.example.com/group/sub/repo")
        );
        assert_ne!(
            repository_identity("https://github.com/org/repo"),
            repository_identity("https://github.com/org/repo2")
        );
        assert_ne!(
            repository_identity("https://github.com/org/repo"),
            repository_identity("https://gitlab.com/org/repo")
        );
    }

    #[test]
    fn local_paths_are_their_absolute_path() {
        assert_eq!(
            repository_identity("file:///srv/git/Repo.git/").as_deref(),
            Some("/srv/git/Repo.git")
        );
        assert_eq!(
            repository_identity("/srv/git/Repo.git").as_deref(),
            Some("/srv/git/Repo.git")
        );
        let relative = repository_identity("./some/repo").unwrap();
        let expected = std::env::current_dir().unwrap().join("some/repo");
        assert_eq!(
            std::path::Path::new(&relative),
            std::path::absolute(expected).unwrap()
        );
    }

    #[test]
    fn what_is_not_a_repository_url_has_no_identity() {
        assert_eq!(repository_identity(""), None);
        assert_eq!(repository_identity("ftp://host/repo"), None);
        assert_eq!(repository_identity("https://host/"), None);
        assert_eq!(repository_identity("https://host/.git"), None);
    }
}
