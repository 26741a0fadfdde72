//! Message templates: the built-in ones in `templates/<family>/<event>.hbs`
//! (compiled into the binary) and a ConfigMap's overrides.
//!
//! ```text
//!   templates/slack/drift-detected.hbs ─┐ include_str!
//!   ConfigMap key slack.drift-detected.hbs ─┴─► Handlebars (strict, no escaping)
//!                                                   │ render(family, event)
//!                                                   ▼
//!                                                 message text
//! ```
//!
//! A ConfigMap key cannot hold `/`, so the override of
//! `<family>/<event>.hbs` is the key `<family>.<event>.hbs`. Overrides are
//! checked when they are read: a syntax error or a missing value (rendered
//! against a sample event) is an error naming the ConfigMap, the key and the
//! line, not a silent fallback at delivery time.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use handlebars::{Handlebars, RenderError, RenderErrorReason};
use serde_json::{Value, json};

use super::{DriftedField, Event, EventKind, Provider};

/// Providers that share message templates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// The `text` field of the generic webhook's JSON.
    Webhook,
    /// Slack mrkdwn.
    Slack,
    /// Teams Adaptive Card markdown.
    Teams,
    /// The one-line description of a GitHub or GitLab commit status.
    CommitStatus,
}

impl Family {
    pub const ALL: [Family; 4] = [
        Family::Webhook,
        Family::Slack,
        Family::Teams,
        Family::CommitStatus,
    ];

    pub fn of(provider: Provider) -> Family {
        match provider {
            Provider::Webhook => Family::Webhook,
            Provider::Slack => Family::Slack,
            Provider::Teams => Family::Teams,
            Provider::Github | Provider::Gitlab => Family::CommitStatus,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Family::Webhook => "webhook",
            Family::Slack => "slack",
            Family::Teams => "teams",
            Family::CommitStatus => "commit-status",
        }
    }

    /// The events this family has templates for: commit statuses describe
    /// a deployment of a commit, which drift is not.
    pub fn events(self) -> &'static [EventKind] {
        match self {
            Family::CommitStatus => &EventKind::ALL[..4],
            _ => &EventKind::ALL,
        }
    }
}

macro_rules! built_in {
    ($($family:literal / $event:literal),* $(,)?) => {
        &[$((
            concat!($family, "/", $event, ".hbs"),
            include_str!(concat!("../../templates/", $family, "/", $event, ".hbs")),
        )),*]
    };
}

/// `(name, text)` of every built-in template.
const BUILT_IN: &[(&str, &str)] = built_in![
    "webhook" / "sync-succeeded",
    "webhook" / "sync-failed",
    "webhook" / "health-degraded",
    "webhook" / "rolled-back",
    "webhook" / "drift-detected",
    "webhook" / "drift-corrected",
    "slack" / "sync-succeeded",
    "slack" / "sync-failed",
    "slack" / "health-degraded",
    "slack" / "rolled-back",
    "slack" / "drift-detected",
    "slack" / "drift-corrected",
    "teams" / "sync-succeeded",
    "teams" / "sync-failed",
    "teams" / "health-degraded",
    "teams" / "rolled-back",
    "teams" / "drift-detected",
    "teams" / "drift-corrected",
    "commit-status" / "sync-succeeded",
    "commit-status" / "sync-failed",
    "commit-status" / "health-degraded",
    "commit-status" / "rolled-back",
];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error(
        "ConfigMap `{config_map}`: key `{key}` names no template; keys are \
         `<family>.<event>.hbs`, family one of webhook, slack, teams, commit-status, event one of \
         sync-succeeded, sync-failed, health-degraded, rolled-back, drift-detected, \
         drift-corrected (commit-status has no drift events)"
    )]
    UnknownKey { config_map: String, key: String },
    #[error("{template}: line {line}, column {column}: {message}")]
    Syntax {
        template: String,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{template}{at}: missing value `{path}` (values: {values})")]
    MissingValue {
        template: String,
        at: String,
        path: String,
        values: &'static str,
    },
    #[error("{template}{at}: {message}")]
    Render {
        template: String,
        at: String,
        message: String,
    },
}

/// What a template sees.
const VALUES: &str = "application.namespace, application.name, event, revision, commit, \
                      shortCommit, repoURL, message, drift (each: object, field, manager)";

/// A set of message templates: the built-in ones, some maybe replaced.
#[derive(Clone)]
pub struct Templates {
    registry: Arc<Handlebars<'static>>,
    /// Template name → where it came from, for messages.
    origins: Arc<BTreeMap<String, String>>,
}

impl std::fmt::Debug for Templates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Templates")
            .field("origins", &self.origins)
            .finish()
    }
}

fn registry() -> Handlebars<'static> {
    let mut registry = Handlebars::new();
    registry.set_strict_mode(true);
    registry.register_escape_fn(handlebars::no_escape);
    registry
}

impl Templates {
    /// The templates shipped in `templates/`.
    pub fn built_in() -> Templates {
        static BUILT: OnceLock<Templates> = OnceLock::new();
        BUILT
            .get_or_init(|| {
                let mut registry = registry();
                let mut origins = BTreeMap::new();
                for (name, text) in BUILT_IN {
                    registry
                        .register_template_string(name, *text)
                        .unwrap_or_else(|e| panic!("built-in template {name}: {e}"));
                    origins.insert(name.to_string(), format!("built-in template `{name}`"));
                }
                Templates {
                    registry: Arc::new(registry),
                    origins: Arc::new(origins),
                }
            })
            .clone()
    }

    /// The built-in templates with those in a ConfigMap's data replacing
    /// them (key `<family>.<event>.hbs`). Each override is parsed and
    /// rendered against a sample event, so a typo is an error now.
    pub fn with_overrides(
        config_map: &str,
        data: &BTreeMap<String, String>,
    ) -> Result<Templates, TemplateError> {
        let mut registry = registry();
        let mut origins = BTreeMap::new();
        for (name, text) in BUILT_IN {
            registry
                .register_template_string(name, *text)
                .expect("built-in templates parse");
            origins.insert(name.to_string(), format!("built-in template `{name}`"));
        }
        for (key, text) in data {
            let name = override_name(key).ok_or_else(|| TemplateError::UnknownKey {
                config_map: config_map.to_string(),
                key: key.clone(),
            })?;
            let origin = format!("ConfigMap `{config_map}` key `{key}`");
            registry
                .register_template_string(&name, text)
                .map_err(|e| {
                    let (line, column) = e.pos().unwrap_or((0, 0));
                    TemplateError::Syntax {
                        template: origin.clone(),
                        line,
                        column,
                        message: e.reason().to_string(),
                    }
                })?;
            origins.insert(name, origin);
        }
        let templates = Templates {
            registry: Arc::new(registry),
            origins: Arc::new(origins),
        };
        for key in data.keys() {
            let name = override_name(key).expect("checked above");
            let (family, kind) = parse_name(&name).expect("checked above");
            templates.render(family, &sample_event(kind))?;
        }
        Ok(templates)
    }

    /// The message for `event` in `family`'s words.
    pub fn render(&self, family: Family, event: &Event) -> Result<String, TemplateError> {
        let name = format!("{}/{}.hbs", family.as_str(), event.kind.as_str());
        let origin = self
            .origins
            .get(&name)
            .cloned()
            .unwrap_or_else(|| format!("template `{name}`"));
        let mut context = context(event);
        if family == Family::Slack {
            escape_for_slack(&mut context);
        }
        self.registry
            .render(&name, &context)
            .map(|text| text.trim().to_string())
            .map_err(|e| render_error(origin, &e))
    }
}

/// `slack.drift-detected.hbs` → `slack/drift-detected.hbs`, if it names a
/// template.
fn override_name(key: &str) -> Option<String> {
    let stem = key.strip_suffix(".hbs")?;
    let (family, event) = stem.split_once('.')?;
    let name = format!("{family}/{event}.hbs");
    parse_name(&name).map(|_| name)
}

fn parse_name(name: &str) -> Option<(Family, EventKind)> {
    let (family, event) = name.strip_suffix(".hbs")?.split_once('/')?;
    let family = Family::ALL.into_iter().find(|f| f.as_str() == family)?;
    let kind = family
        .events()
        .iter()
        .copied()
        .find(|k| k.as_str() == event)?;
    Some((family, kind))
}

fn render_error(template: String, error: &RenderError) -> TemplateError {
    let at = match error.line_no {
        Some(line) => format!(" line {line}"),
        None => String::new(),
    };
    match error.reason() {
        RenderErrorReason::MissingVariable(Some(path)) => TemplateError::MissingValue {
            template,
            at,
            path: path.clone(),
            values: VALUES,
        },
        reason => TemplateError::Render {
            template,
            at,
            message: reason.to_string(),
        },
    }
}

/// What a template sees: every key is present (absent facts are `null`),
/// so strict mode only catches real typos.
pub(crate) fn context(event: &Event) -> Value {
    json!({
        "application": { "namespace": event.namespace, "name": event.name },
        "event": event.kind.as_str(),
        "revision": event.revision,
        "commit": event.commit,
        "shortCommit": event.commit.as_deref().map(short_commit),
        "repoURL": event.shown_repo_url(),
        "message": event.message,
        "drift": event.drift,
    })
}

/// Slack reads `<…>` as links and mentions and `&` as an entity: in the
/// values (not in the template's own text, where `<!here>` is meant) those
/// three become `&lt;`, `&gt;` and `&amp;`, as Slack asks.
fn escape_for_slack(value: &mut Value) {
    match value {
        Value::String(text) => {
            *text = text
                .replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;");
        }
        Value::Array(items) => items.iter_mut().for_each(escape_for_slack),
        Value::Object(map) => map.values_mut().for_each(escape_for_slack),
        _ => {}
    }
}

/// The first 7 characters of a commit id, as git shows it.
pub(crate) fn short_commit(commit: &str) -> String {
    commit.chars().take(7).collect()
}

fn sample_event(kind: EventKind) -> Event {
    Event {
        namespace: "team-a".into(),
        name: "guestbook".into(),
        kind,
        revision: Some(7),
        commit: Some("0123456789abcdef0123456789abcdef01234567".into()),
        repo_url: Some("https://git.example.com/org/deploy.git".into()),
        message: "sample".into(),
        drift: vec![DriftedField {
            object: "Deployment team-a/web".into(),
            field: "spec.replicas".into(),
            manager: Some("kubectl-edit".into()),
        }],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drift_event() -> Event {
        let mut event = sample_event(EventKind::DriftDetected);
        event.drift.push(DriftedField {
            object: "ConfigMap team-a/settings".into(),
            field: "data.mode".into(),
            manager: None,
        });
        event
    }

    #[test]
    fn every_built_in_template_renders_every_event_of_its_family() {
        let templates = Templates::built_in();
        for family in Family::ALL {
            for &kind in family.events() {
                let mut event = sample_event(kind);
                let full = templates.render(family, &event).unwrap();
                assert!(
                    full.contains("team-a/guestbook"),
                    "{family:?} {kind}: {full}"
                );
                // Absent facts are null, not errors.
                event.revision = None;
                event.commit = None;
                event.repo_url = None;
                event.drift.clear();
                templates.render(family, &event).unwrap();
            }
        }
        assert_eq!(BUILT_IN.len(), 22);
    }

    #[test]
    fn a_drift_message_names_each_object_field_and_manager() {
        let text = Templates::built_in()
            .render(Family::Slack, &drift_event())
            .unwrap();
        assert_eq!(
            text,
            ":mag: *team-a/guestbook*: live objects differ from revision 7:
\
             • `Deployment team-a/web` `spec.replicas` changed by `kubectl-edit`
\
             • `ConfigMap team-a/settings` `data.mode`
\
             sample"
        );
        assert!(text.contains("Deployment team-a/web"), "{text}");
        assert!(text.contains("spec.replicas"), "{text}");
        assert!(text.contains("kubectl-edit"), "{text}");
        assert!(text.contains("ConfigMap team-a/settings"), "{text}");
        assert!(text.contains("data.mode"), "{text}");
        // One line per field, no blank lines from the block tags.
        assert!(!text.contains("\n\n\n"), "{text:?}");
    }

    #[test]
    fn messages_are_not_html_escaped() {
        let mut event = sample_event(EventKind::SyncFailed);
        event.message = "apply <Deployment> \"web\" & more".into();
        let text = Templates::built_in().render(Family::Teams, &event).unwrap();
        assert!(text.contains("apply <Deployment> \"web\" & more"), "{text}");
    }

    #[test]
    fn slack_values_are_escaped_as_slack_asks_and_the_template_text_is_not() {
        let data = BTreeMap::from([(
            "slack.sync-failed.hbs".to_string(),
            "<!here> {{message}}".to_string(),
        )]);
        let templates = Templates::with_overrides("tpl", &data).unwrap();
        let mut event = sample_event(EventKind::SyncFailed);
        event.message = "image <none> & tag".into();
        assert_eq!(
            templates.render(Family::Slack, &event).unwrap(),
            "<!here> image &lt;none&gt; &amp; tag"
        );
        assert!(
            templates
                .render(Family::Webhook, &event)
                .unwrap()
                .contains("image <none> & tag")
        );
    }

    #[test]
    fn an_override_replaces_one_template_and_leaves_the_rest() {
        let data = BTreeMap::from([(
            "slack.sync-failed.hbs".to_string(),
            "{{application.name}} broke: {{message}}".to_string(),
        )]);
        let templates = Templates::with_overrides("my-templates", &data).unwrap();
        let mut event = sample_event(EventKind::SyncFailed);
        event.message = "boom".into();
        assert_eq!(
            templates.render(Family::Slack, &event).unwrap(),
            "guestbook broke: boom"
        );
        assert_eq!(
            templates.render(Family::Teams, &event).unwrap(),
            Templates::built_in().render(Family::Teams, &event).unwrap()
        );
    }

    #[test]
    fn a_bad_override_is_an_error_naming_configmap_key_and_line() {
        let unknown = BTreeMap::from([("slack/sync-failed.hbs".to_string(), "x".to_string())]);
        let error = Templates::with_overrides("tpl", &unknown)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("ConfigMap `tpl`: key `slack/sync-failed.hbs`"),
            "{error}"
        );

        let drift_status = BTreeMap::from([(
            "commit-status.drift-detected.hbs".to_string(),
            "x".to_string(),
        )]);
        assert!(matches!(
            Templates::with_overrides("tpl", &drift_status),
            Err(TemplateError::UnknownKey { .. })
        ));

        let syntax = BTreeMap::from([(
            "teams.rolled-back.hbs".to_string(),
            "ok\n{{#if revision}}unclosed".to_string(),
        )]);
        let error = Templates::with_overrides("tpl", &syntax)
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("ConfigMap `tpl` key `teams.rolled-back.hbs`: line"),
            "{error}"
        );

        let missing = BTreeMap::from([(
            "webhook.sync-succeeded.hbs".to_string(),
            "ok\n{{application.nmae}}".to_string(),
        )]);
        let error = Templates::with_overrides("tpl", &missing)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("ConfigMap `tpl` key `webhook.sync-succeeded.hbs` line 2: missing value `application.nmae`"),
            "{error}"
        );
    }
}
