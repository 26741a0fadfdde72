//! A notification target: one `spec.notifications` entry with its Secret's
//! values and its templates, checked once when it is built.
//!
//! ```text
//!   Notification { provider, secretRef, events, apiURL, template }
//!   + Secret data { address | token | hmacKey | apiURL }
//!   + ConfigMap data (overrides)            ──Target::new──► Target
//! ```
//!
//! | provider | Secret keys                                   |
//! |----------|-----------------------------------------------|
//! | webhook  | `address`; optional `token` (bearer), `hmacKey` |
//! | slack    | `address` (the incoming webhook URL)          |
//! | teams    | `address` (the workflow webhook URL)          |
//! | github   | `token`; optional `apiURL`, `address` (the status link) |
//! | gitlab   | `token`; optional `apiURL`, `address` (the status link) |

use std::collections::BTreeMap;

use super::templates::{Family, TemplateError, Templates};
use super::{EventKind, Provider};
use crate::source::Secret;
use crate::spec::Notification;

pub const GITHUB_API: &str = "https://api.github.com";
pub const GITLAB_API: &str = "https://gitlab.com/api/v4";

/// Where one application's notifications of some kinds go. Holds secret
/// values: its `Debug` shows `***` for them.
#[derive(Debug, Clone)]
pub struct Target {
    pub(crate) provider: Provider,
    /// The Secret's name, for messages (never its values).
    pub(crate) secret_name: String,
    pub(crate) events: Vec<EventKind>,
    /// The webhook URL (webhook, slack, teams); the status link
    /// (`target_url`) of github and gitlab.
    pub(crate) address: Option<Secret>,
    pub(crate) token: Option<Secret>,
    pub(crate) hmac_key: Option<Secret>,
    /// The API base URL (github, gitlab), without a trailing `/`.
    pub(crate) api_url: Option<Secret>,
    pub(crate) templates: Templates,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("notification `{provider}`: Secret `{secret}` has no key `{key}`; {provider} needs it")]
    MissingKey {
        provider: Provider,
        secret: String,
        key: &'static str,
    },
    #[error("notification `{provider}`: Secret `{secret}` key `{key}` is not UTF-8 text")]
    NotText {
        provider: Provider,
        secret: String,
        key: String,
    },
    #[error(
        "notification `{provider}`: {origin} `{key}` is not an http:// or https:// URL \
         (the value is not shown: it may hold a token)"
    )]
    NotAUrl {
        provider: Provider,
        origin: String,
        key: &'static str,
    },
    #[error(
        "notification `{provider}`: event `{event}` cannot be a commit status (commit statuses \
         describe a deployment of a commit; use sync-succeeded, sync-failed, health-degraded, \
         rolled-back)"
    )]
    UnsupportedEvent {
        provider: Provider,
        event: EventKind,
    },
    #[error("notification `{provider}`: template: {source}")]
    Template {
        provider: Provider,
        #[source]
        source: TemplateError,
    },
}

impl Target {
    /// A target from its spec entry, the data of the Secret `secretRef`
    /// names, and — when `template.configMapRef` is set — the data of that
    /// ConfigMap (`None` when there is none).
    pub fn new(
        notification: &Notification,
        secret_data: &BTreeMap<String, Vec<u8>>,
        template_overrides: Option<&BTreeMap<String, String>>,
    ) -> Result<Target, TargetError> {
        let provider = notification.provider;
        let secret = notification.secret_ref.name.clone();
        let text = |key: &str| -> Result<Option<Secret>, TargetError> {
            secret_data
                .get(key)
                .map(|bytes| {
                    String::from_utf8(bytes.clone())
                        .map(|text| Secret::new(text.trim()))
                        .map_err(|_| TargetError::NotText {
                            provider,
                            secret: secret.clone(),
                            key: key.to_string(),
                        })
                })
                .transpose()
        };
        let required = |key: &'static str| -> Result<Secret, TargetError> {
            text(key)?.ok_or_else(|| TargetError::MissingKey {
                provider,
                secret: secret.clone(),
                key,
            })
        };
        let url = |value: Secret, origin: String, key: &'static str| {
            if is_http_url(value.expose()) {
                Ok(value)
            } else {
                Err(TargetError::NotAUrl {
                    provider,
                    origin,
                    key,
                })
            }
        };
        let in_secret = format!("Secret `{secret}` key");

        let family = Family::of(provider);
        for &event in &notification.events {
            if !family.events().contains(&event) {
                return Err(TargetError::UnsupportedEvent { provider, event });
            }
        }
        let events = if notification.events.is_empty() {
            family.events().to_vec()
        } else {
            notification.events.clone()
        };

        let (address, token, hmac_key, api_url) = match provider {
            Provider::Webhook => (
                Some(url(required("address")?, in_secret, "address")?),
                text("token")?,
                text("hmacKey")?,
                None,
            ),
            Provider::Slack | Provider::Teams => (
                Some(url(required("address")?, in_secret, "address")?),
                None,
                None,
                None,
            ),
            Provider::Github | Provider::Gitlab => {
                let api_url = match (text("apiURL")?, &notification.api_url) {
                    (Some(value), _) => url(value, in_secret.clone(), "apiURL")?,
                    (None, Some(value)) => url(
                        Secret::new(value.trim()),
                        "spec field".to_string(),
                        "apiURL",
                    )?,
                    (None, None) if provider == Provider::Github => Secret::new(GITHUB_API),
                    (None, None) => Secret::new(GITLAB_API),
                };
                let api_url = Secret::new(api_url.expose().trim_end_matches('/'));
                let target_url = match text("address")? {
                    Some(value) => Some(url(value, in_secret, "address")?),
                    None => None,
                };
                (target_url, Some(required("token")?), None, Some(api_url))
            }
        };

        let templates = match (template_overrides, &notification.template) {
            (Some(data), Some(template)) => {
                Templates::with_overrides(&template.config_map_ref.name, data)
                    .map_err(|source| TargetError::Template { provider, source })?
            }
            _ => Templates::built_in(),
        };

        Ok(Target {
            provider,
            secret_name: secret,
            events,
            address,
            token,
            hmac_key,
            api_url,
            templates,
        })
    }

    pub fn provider(&self) -> Provider {
        self.provider
    }

    /// The Secret this target's values came from (its name only).
    pub fn secret_name(&self) -> &str {
        &self.secret_name
    }

    /// Whether this target takes events of `kind`.
    pub fn wants(&self, kind: EventKind) -> bool {
        self.events.contains(&kind)
    }

    /// Every secret value this target holds, to scrub from error texts: a
    /// URL also by its path (a receiver may echo the path it was called on,
    /// and in a Slack or Teams URL the path is the credential).
    pub(crate) fn secret_values(&self) -> Vec<&str> {
        let mut values = Vec::new();
        for secret in [&self.address, &self.token, &self.hmac_key, &self.api_url]
            .into_iter()
            .flatten()
        {
            let value = secret.expose();
            values.push(value);
            if let Some(path) = url_path(value) {
                values.push(path);
                values.push(path.trim_start_matches('/'));
            }
        }
        values.retain(|value| value.len() > 1);
        // Longest first, so a part never breaks up a whole.
        values.sort_by_key(|value| std::cmp::Reverse(value.len()));
        values
    }
}

/// `/services/T0/B0/x?y` of `https://host/services/T0/B0/x?y`.
fn url_path(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    rest.find('/').map(|at| &rest[at..])
}

fn is_http_url(text: &str) -> bool {
    let rest = text
        .strip_prefix("https://")
        .or_else(|| text.strip_prefix("http://"));
    matches!(rest, Some(rest) if !rest.is_empty() && !rest.starts_with('/'))
        && !text.chars().any(char::is_whitespace)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{LocalObjectReference, NotificationTemplate};

    fn notification(provider: Provider) -> Notification {
        Notification {
            provider,
            secret_ref: LocalObjectReference {
                name: "hook".into(),
            },
            events: Vec::new(),
            api_url: None,
            template: None,
        }
    }

    fn data(pairs: &[(&str, &str)]) -> BTreeMap<String, Vec<u8>> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn each_provider_reads_its_secret_keys() {
        let webhook = Target::new(
            &notification(Provider::Webhook),
            &data(&[
                ("address", "https://hooks.example.com/x\n"),
                ("hmacKey", "k"),
            ]),
            None,
        )
        .unwrap();
        assert_eq!(
            webhook.address.as_ref().unwrap().expose(),
            "https://hooks.example.com/x"
        );
        assert_eq!(webhook.hmac_key.as_ref().unwrap().expose(), "k");
        assert!(webhook.token.is_none());
        assert!(webhook.wants(EventKind::DriftDetected));

        let github = Target::new(
            &notification(Provider::Github),
            &data(&[("token", "t")]),
            None,
        )
        .unwrap();
        assert_eq!(github.api_url.as_ref().unwrap().expose(), GITHUB_API);
        assert!(!github.wants(EventKind::DriftDetected));
        assert!(github.wants(EventKind::RolledBack));

        let mut spec = notification(Provider::Gitlab);
        spec.api_url = Some("http://127.0.0.1:8080/api/v4/".into());
        let gitlab = Target::new(&spec, &data(&[("token", "t")]), None).unwrap();
        assert_eq!(
            gitlab.api_url.as_ref().unwrap().expose(),
            "http://127.0.0.1:8080/api/v4"
        );
        let gitlab = Target::new(
            &spec,
            &data(&[
                ("token", "t"),
                ("apiURL", "https://gitlab.example.com/api/v4"),
            ]),
            None,
        )
        .unwrap();
        assert_eq!(
            gitlab.api_url.as_ref().unwrap().expose(),
            "https://gitlab.example.com/api/v4",
            "the Secret's apiURL wins"
        );
    }

    #[test]
    fn bad_secrets_are_errors_that_name_the_key_and_never_the_value() {
        let error = Target::new(&notification(Provider::Slack), &data(&[]), None).unwrap_err();
        assert_eq!(
            error.to_string(),
            "notification `slack`: Secret `hook` has no key `address`; slack needs it"
        );
        let error = Target::new(
            &notification(Provider::Teams),
            &data(&[("address", "hooks.example.com/s3cr3t")]),
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(
            error.contains("Secret `hook` key `address` is not an http"),
            "{error}"
        );
        assert!(!error.contains("s3cr3t"), "{error}");
        let error = Target::new(&notification(Provider::Gitlab), &data(&[]), None).unwrap_err();
        assert!(error.to_string().contains("no key `token`"));
        let not_text = BTreeMap::from([("address".to_string(), vec![0xff, 0xfe])]);
        let error = Target::new(&notification(Provider::Webhook), &not_text, None).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("key `address` is not UTF-8 text")
        );
    }

    #[test]
    fn drift_events_are_refused_for_commit_statuses() {
        let mut spec = notification(Provider::Github);
        spec.events = vec![EventKind::SyncSucceeded, EventKind::DriftDetected];
        let error = Target::new(&spec, &data(&[("token", "t")]), None).unwrap_err();
        assert_eq!(
            error,
            TargetError::UnsupportedEvent {
                provider: Provider::Github,
                event: EventKind::DriftDetected
            }
        );
    }

    #[test]
    fn listed_events_limit_what_a_target_takes() {
        let mut spec = notification(Provider::Slack);
        spec.events = vec![EventKind::SyncFailed];
        let target = Target::new(&spec, &data(&[("address", "https://x.example")]), None).unwrap();
        assert!(target.wants(EventKind::SyncFailed));
        assert!(!target.wants(EventKind::SyncSucceeded));
    }

    #[test]
    fn debug_output_hides_every_secret_value() {
        let target = Target::new(
            &notification(Provider::Webhook),
            &data(&[
                ("address", "https://hooks.example.com/p4th"),
                ("token", "t0ken"),
                ("hmacKey", "hm4c"),
            ]),
            None,
        )
        .unwrap();
        let shown = format!("{target:?}");
        assert_eq!(
            target.secret_values(),
            [
                "https://hooks.example.com/p4th",
                "/p4th",
                "t0ken",
                "p4th",
                "hm4c"
            ]
        );
        for secret in ["p4th", "t0ken", "hm4c", "hooks.example.com"] {
            assert!(!shown.contains(secret), "{shown}");
        }
    }

    #[test]
    fn overrides_come_from_the_configmap_the_spec_names() {
        let mut spec = notification(Provider::Slack);
        spec.template = Some(NotificationTemplate {
            config_map_ref: LocalObjectReference { name: "tpl".into() },
        });
        let overrides = BTreeMap::from([("slack.nope.hbs".to_string(), "x".to_string())]);
        let error = Target::new(
            &spec,
            &data(&[("address", "https://x.example")]),
            Some(&overrides),
        )
        .unwrap_err()
        .to_string();
        assert!(
            error.contains("ConfigMap `tpl`: key `slack.nope.hbs`"),
            "{error}"
        );
    }
}
