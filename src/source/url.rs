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
