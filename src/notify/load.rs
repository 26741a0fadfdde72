//! Reading what `spec.notifications` names from the cluster: each entry's
//! Secret and, with `template.configMapRef`, its ConfigMap, in the
//! Application's namespace.
//!
//! ```text
//!   Application ──► for each spec.notifications[i]:
//!                     GET Secret secretRef.name ─┐
//!                     GET ConfigMap (optional) ──┴─► Target::new ──► Target | LoadError
//! ```
//!
//! Two GETs at most per entry: call it when there is something to send, not
//! on every reconcile.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, Secret as KubeSecret};
use kube::{Api, Client};

use super::{Provider, Target, TargetError};
use crate::spec::Application;

/// Why one `spec.notifications` entry cannot be used. Names Secrets and
/// ConfigMaps, never their values.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(
        "spec.notifications[{index}] ({provider}): Secret `{name}` not found in namespace `{namespace}`"
    )]
    SecretNotFound {
        index: usize,
        provider: Provider,
        name: String,
        namespace: String,
    },
    #[error(
        "spec.notifications[{index}] ({provider}): ConfigMap `{name}` not found in namespace `{namespace}`"
    )]
    ConfigMapNotFound {
        index: usize,
        provider: Provider,
        name: String,
        namespace: String,
    },
    #[error("spec.notifications[{index}] ({provider}): cannot read {kind} `{name}`: {reason}")]
    Unreadable {
        index: usize,
        provider: Provider,
        kind: &'static str,
        name: String,
        reason: String,
    },
    #[error("spec.notifications[{index}]: {source}")]
    Invalid {
        index: usize,
        #[source]
        source: TargetError,
    },
}

/// The targets of `application`, and an error for each entry that cannot
/// be used (the others still work).
pub async fn load_targets(
    client: &Client,
    application: &Application,
) -> (Vec<Target>, Vec<LoadError>) {
    let namespace = application
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".to_string());
    let secrets: Api<KubeSecret> = Api::namespaced(client.clone(), &namespace);
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace);
    let mut targets = Vec::new();
    let mut errors = Vec::new();
    for (index, notification) in application.spec.notifications.iter().enumerate() {
        let provider = notification.provider;
        let name = notification.secret_ref.name.clone();
        let secret = match secrets.get_opt(&name).await {
            Ok(Some(secret)) => secret,
            Ok(None) => {
                errors.push(LoadError::SecretNotFound {
                    index,
                    provider,
                    name,
                    namespace: namespace.clone(),
                });
                continue;
            }
            Err(error) => {
                errors.push(LoadError::Unreadable {
                    index,
                    provider,
                    kind: "Secret",
                    name,
                    reason: crate::cluster::chain(&error),
                });
                continue;
            }
        };
        let data: BTreeMap<String, Vec<u8>> = secret
            .data
            .unwrap_or_default()
            .into_iter()
            .map(|(key, value)| (key, value.0))
            .collect();
        let overrides = match &notification.template {
            None => None,
            Some(template) => {
                let name = template.config_map_ref.name.clone();
                match config_maps.get_opt(&name).await {
                    Ok(Some(config_map)) => Some(config_map.data.unwrap_or_default()),
                    Ok(None) => {
                        errors.push(LoadError::ConfigMapNotFound {
                            index,
                            provider,
                            name,
                            namespace: namespace.clone(),
                        });
                        continue;
                    }
                    Err(error) => {
                        errors.push(LoadError::Unreadable {
                            index,
                            provider,
                            kind: "ConfigMap",
                            name,
                            reason: crate::cluster::chain(&error),
                        });
                        continue;
                    }
                }
            }
        };
        match Target::new(notification, &data, overrides.as_ref()) {
            Ok(target) => targets.push(target),
            Err(source) => errors.push(LoadError::Invalid { index, source }),
        }
    }
    (targets, errors)
}
