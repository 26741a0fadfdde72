//! Credentials and host keys.
//!
//! ```text
//!   flags / Secret ──► Credentials ──callbacks()──► git2::RemoteCallbacks
//!                                                     │ credentials: once, then give up
//!                                                     │ certificate_check: known_hosts
//!                                                     ▼
//!                                                   Attempt (what the callbacks saw,
//!                                                   for a precise error afterwards)
//! ```
//!
//! Secrets live in [`Secret`], whose `Debug` and `Display` print `***`.
//! SSH host keys are verified against known_hosts entries; an unknown host
//! or a different key is an error unless the caller explicitly chose
//! [`HostKeys::InsecureAcceptAny`].

use std::cell::RefCell;
use std::fmt;
use std::rc::Rc;
use std::time::Instant;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use sha2::{Digest, Sha256};

/// A secret value. Never printed: `Debug` and `Display` show `***`.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The value itself, for handing to libgit2. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// How windlass authenticates to a repository.
#[derive(Debug, Clone, Default)]
pub enum Credentials {
    /// Public repositories, local paths, `git://`.
    #[default]
    None,
    /// HTTP(S) basic authentication: a user and a password or token.
    Basic { username: String, password: Secret },
    /// SSH with a private key held in memory (as it comes from a Kubernetes
    /// Secret), optionally protected by a passphrase.
    SshKey {
        private_key: Secret,
        passphrase: Option<Secret>,
        host_keys: HostKeys,
    },
}

impl Credentials {
    /// Tells credentials apart without revealing them (a sha256 prefix of
    /// their material), for keys of shared caches.
    pub fn fingerprint(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut hasher = Sha256::new();
        match self {
            Credentials::None => hasher.update(b"none"),
            Credentials::Basic { username, password } => {
                hasher.update(b"basic\0");
                hasher.update(username.as_bytes());
                hasher.update(b"\0");
                hasher.update(password.expose().as_bytes());
            }
            Credentials::SshKey {
                private_key,
                passphrase,
                ..
            } => {
                hasher.update(b"ssh\0");
                hasher.update(private_key.expose().as_bytes());
                hasher.update(b"\0");
                hasher.update(passphrase.as_ref().map_or("", |p| p.expose()).as_bytes());
            }
        }
        hasher.finalize()[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

/// Which SSH host keys windlass trusts.
#[derive(Debug, Clone)]
pub enum HostKeys {
    /// known_hosts content (OpenSSH format). Required unless the caller opts
    /// out explicitly.
    Known(String),
    /// Accept any host key. Only on explicit request (a flag named
    /// `--insecure-...`): it allows a man in the middle.
    InsecureAcceptAny,
}

/// Credentials from a Kubernetes Secret's data, as `spec.source.secretRef`
/// names it: `username` and `password` for HTTP(S), or `identity` (an SSH
/// private key), `known_hosts` and optionally `passphrase` for SSH.
pub fn credentials_from_secret_data(
    secret: &str,
    data: &std::collections::BTreeMap<String, Vec<u8>>,
) -> Result<Credentials, String> {
    let text = |key: &str| -> Result<Option<String>, String> {
        data.get(key)
            .map(|bytes| {
                String::from_utf8(bytes.clone())
                    .map_err(|_| format!("Secret {secret}: key `{key}` is not UTF-8 text"))
            })
            .transpose()
    };
    if let Some(identity) = text("identity")? {
        let known_hosts = text("known_hosts")?.ok_or_else(|| {
            format!(
                "Secret {secret}: has `identity` but no `known_hosts`; add the server's host key"
            )
        })?;
        return Ok(Credentials::SshKey {
            private_key: Secret::new(identity),
            passphrase: text("passphrase")?.map(Secret::new),
            host_keys: HostKeys::Known(known_hosts),
        });
    }
    match (text("username")?, text("password")?) {
        (Some(username), Some(password)) => Ok(Credentials::Basic {
            username,
            password: Secret::new(password),
        }),
        _ => Err(format!(
            "Secret {secret}: needs `username` and `password`, or `identity` and `known_hosts`"
        )),
    }
}

/// What happened inside the callbacks of one network operation.
#[derive(Debug, Default)]
pub struct Attempt {
    pub credential_requests: u32,
    /// Set when the server asked for credentials of a kind we do not have.
    pub missing_credentials: Option<String>,
    pub host_key_problem: Option<String>,
    pub deadline_passed: bool,
}

pub type SharedAttempt = Rc<RefCell<Attempt>>;

/// Builds the callbacks for one operation on `url`.
pub fn callbacks<'a>(
    credentials: &'a Credentials,
    known_hosts_name: Option<String>,
    ssh_user: Option<&'a str>,
    deadline: Instant,
    attempt: SharedAttempt,
) -> git2::RemoteCallbacks<'a> {
    let mut callbacks = git2::RemoteCallbacks::new();

    let seen = attempt.clone();
    callbacks.credentials(move |_url, username_from_url, allowed| {
        let mut seen = seen.borrow_mut();
        seen.credential_requests += 1;
        // libgit2 asks again after a rejection; asking twice means the
        // server refused what we gave. Stop instead of looping.
        if seen.credential_requests > 2 {
            return Err(git2::Error::from_str("authentication failed"));
        }
        let user = username_from_url.or(ssh_user).unwrap_or("git");
        match credentials {
            Credentials::Basic { username, password }
                if allowed.contains(git2::CredentialType::USER_PASS_PLAINTEXT) =>
            {
                git2::Cred::userpass_plaintext(username, password.expose())
            }
            Credentials::SshKey { .. } if allowed.contains(git2::CredentialType::USERNAME) => {
                git2::Cred::username(user)
            }
            Credentials::SshKey {
                private_key,
                passphrase,
                ..
            } if allowed.contains(git2::CredentialType::SSH_MEMORY)
                || allowed.contains(git2::CredentialType::SSH_KEY) =>
            {
                git2::Cred::ssh_key_from_memory(
                    user,
                    None,
                    private_key.expose(),
                    passphrase.as_ref().map(Secret::expose),
                )
            }
            _ => {
                seen.missing_credentials = Some(describe_allowed(allowed));
                Err(git2::Error::from_str("no suitable credentials"))
            }
        }
    });

    let seen = attempt.clone();
    callbacks.certificate_check(move |cert, _host| {
        let Some(hostkey) = cert.as_hostkey() else {
            // TLS: libgit2 has verified the chain against the system roots.
            return Ok(git2::CertificateCheckStatus::CertificatePassthrough);
        };
        let verdict = match credentials {
            Credentials::SshKey {
                host_keys: HostKeys::InsecureAcceptAny,
                ..
            } => Ok(()),
            Credentials::SshKey {
                host_keys: HostKeys::Known(known),
                ..
            } => match (hostkey.hostkey(), &known_hosts_name) {
                (Some(key), Some(name)) => verify_host_key(known, name, key),
                _ => Err("the server presented no usable host key".to_string()),
            },
            _ => Err("SSH needs a private key and known_hosts entries".to_string()),
        };
        match verdict {
            Ok(()) => Ok(git2::CertificateCheckStatus::CertificateOk),
            Err(problem) => {
                seen.borrow_mut().host_key_problem = Some(problem);
                Err(git2::Error::from_str("host key verification failed"))
            }
        }
    });

    // Progress callbacks fire throughout a transfer: returning false cancels
    // it once the operation's deadline has passed.
    let seen = attempt.clone();
    callbacks.transfer_progress(move |_| {
        if Instant::now() > deadline {
            seen.borrow_mut().deadline_passed = true;
            return false;
        }
        true
    });
    let seen = attempt;
    callbacks.sideband_progress(move |_| {
        if Instant::now() > deadline {
            seen.borrow_mut().deadline_passed = true;
            return false;
        }
        true
    });
    callbacks
}

fn describe_allowed(allowed: git2::CredentialType) -> String {
    if allowed.contains(git2::CredentialType::USER_PASS_PLAINTEXT) {
        "a user name and password (--username and --password-env)".to_string()
    } else if allowed.intersects(
        git2::CredentialType::SSH_KEY
            | git2::CredentialType::SSH_MEMORY
            | git2::CredentialType::USERNAME,
    ) {
        "an SSH key (--ssh-key and --known-hosts)".to_string()
    } else {
        format!("credentials of kind {allowed:?}")
    }
}

/// Checks `key` (the raw key blob the server presented) against the
/// known_hosts entries for `host` (`host` or `[host]:port`).
pub fn verify_host_key(known_hosts: &str, host: &str, key: &[u8]) -> Result<(), String> {
    let mut known_for_host = 0;
    for entry in known_hosts.lines().filter_map(KnownHost::parse) {
        if !entry.matches_host(host) {
            continue;
        }
        if entry.revoked {
            if entry.key == key {
                return Err(format!(
                    "the host key of {host} is marked @revoked in known_hosts"
                ));
            }
            continue;
        }
        known_for_host += 1;
        if entry.key == key {
            return Ok(());
        }
    }
    if known_for_host == 0 {
        Err(format!(
            "{host} is not in known_hosts (server key {}); add its key, e.g. from \
             `ssh-keyscan -p PORT HOST` (hashed -H entries are not supported)",
            fingerprint(key)
        ))
    } else {
        Err(format!(
            "the host key of {host} does not match known_hosts (server key {}): \
             the key changed or someone is intercepting the connection",
            fingerprint(key)
        ))
    }
}

/// `SHA256:...` as `ssh-keygen -l` prints it.
pub fn fingerprint(key: &[u8]) -> String {
    format!("SHA256:{}", STANDARD_NO_PAD.encode(Sha256::digest(key)))
}

struct KnownHost {
    patterns: Vec<String>,
    key: Vec<u8>,
    revoked: bool,
}

impl KnownHost {
    fn parse(line: &str) -> Option<KnownHost> {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            return None;
        }
        let mut fields = line.split_whitespace();
        let mut first = fields.next()?;
        let mut revoked = false;
        if first.starts_with('@') {
            match first {
                "@revoked" => revoked = true,
                _ => return None, // @cert-authority: certificates are not supported
            }
            first = fields.next()?;
        }
        let _key_type = fields.next()?;
        let key = STANDARD.decode(fields.next()?).ok()?;
        Some(KnownHost {
            patterns: first.split(',').map(str::to_string).collect(),
            key,
            revoked,
        })
    }

    /// OpenSSH semantics: any positive pattern matches and no negated one does.
    fn matches_host(&self, host: &str) -> bool {
        let mut matched = false;
        for pattern in &self.patterns {
            if let Some(negated) = pattern.strip_prefix('!') {
                if wildcard_match(&negated.to_ascii_lowercase(), &host.to_ascii_lowercase()) {
                    return false;
                }
            } else if wildcard_match(&pattern.to_ascii_lowercase(), &host.to_ascii_lowercase()) {
                matched = true;
            }
        }
        matched
    }
}

/// `*` and `?` wildcards, as in known_hosts patterns.
fn wildcard_match(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_A: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl";
    const KEY_B: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIBp8Hn3rT2cz1aS8P2NWKtF6F5Vn8k8bq0Gx9Q8bW3v1";

    fn blob(key: &str) -> Vec<u8> {
        STANDARD.decode(key).unwrap()
    }

    #[test]
    fn secrets_never_print() {
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret:?} {secret}"), "*** ***");
        let credentials = Credentials::Basic {
            username: "deploy".into(),
            password: secret,
        };
        assert!(!format!("{credentials:?}").contains("hunter2"));
    }

    #[test]
    fn known_host_key_is_accepted() {
        let known = format!("# comment\n[127.0.0.1]:2222 ssh-ed25519 {KEY_A}\n");
        assert_eq!(
            verify_host_key(&known, "[127.0.0.1]:2222", &blob(KEY_A)),
            Ok(())
        );
    }

    #[test]
    fn a_different_key_is_a_mismatch_naming_the_fingerprint() {
        let known = format!("[127.0.0.1]:2222 ssh-ed25519 {KEY_A}\n");
        let error = verify_host_key(&known, "[127.0.0.1]:2222", &blob(KEY_B)).unwrap_err();
        assert!(error.contains("does not match known_hosts"), "{error}");
        assert!(error.contains(&fingerprint(&blob(KEY_B))), "{error}");
    }

    #[test]
    fn an_unknown_host_is_refused() {
        let known = format!("github.com ssh-ed25519 {KEY_A}\n");
        let error = verify_host_key(&known, "[127.0.0.1]:2222", &blob(KEY_A)).unwrap_err();
        assert!(error.contains("is not in known_hosts"), "{error}");
        // Port matters: the same host on another port is another entry.
        let known = format!("127.0.0.1 ssh-ed25519 {KEY_A}\n");
        assert!(verify_host_key(&known, "[127.0.0.1]:2222", &blob(KEY_A)).is_err());
    }

    #[test]
    fn patterns_wildcards_negation_and_revocation() {
        let known = format!("*.example.com,!evil.example.com ssh-ed25519 {KEY_A}\n");
        assert!(verify_host_key(&known, "git.example.com", &blob(KEY_A)).is_ok());
        assert!(verify_host_key(&known, "evil.example.com", &blob(KEY_A)).is_err());
        let known = format!(
            "@revoked git.example.com ssh-ed25519 {KEY_A}\ngit.example.com ssh-ed25519 {KEY_A}\n"
        );
        let error = verify_host_key(&known, "git.example.com", &blob(KEY_A)).unwrap_err();
        assert!(error.contains("@revoked"), "{error}");
    }

    #[test]
    fn fingerprints_look_like_ssh_keygen() {
        assert!(fingerprint(&blob(KEY_A)).starts_with("SHA256:"));
        assert!(!fingerprint(&blob(KEY_A)).ends_with('='));
    }
}

/// Git credentials from a Secret (an Application's `spec.source.secretRef`):
/// `username`/`password`, or `identity` (SSH private key) and `known_hosts`.
/// Errors name the Secret, never its data.
pub async fn read_credentials_secret(
    client: &kube::Client,
    namespace: &str,
    name: &str,
) -> Result<Credentials, CredentialsError> {
    use k8s_openapi::api::core::v1::Secret;
    let api: kube::Api<Secret> = kube::Api::namespaced(client.clone(), namespace);
    let secret = api.get(name).await.map_err(|e| CredentialsError::Read {
        secret: format!("{namespace}/{name}"),
        source: e.into(),
    })?;
    let data = secret
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .collect();
    credentials_from_secret_data(&format!("{namespace}/{name}"), &data)
        .map_err(CredentialsError::Unusable)
}

/// The git credentials Secret could not be read or used. Never shows its data.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("reading git credentials Secret {secret}")]
    Read {
        secret: String,
        #[source]
        source: crate::cluster::ApiError,
    },
    #[error("{0}")]
    Unusable(String),
}
