//! Microsoft Teams workflow webhooks ("Post to a channel when a webhook
//! request is received"): a message with one Adaptive Card attachment.
//!
//! ```text
//!   POST <address>
//!   { "type": "message",
//!     "attachments": [ { "contentType": "application/vnd.microsoft.card.adaptive",
//!                        "content": { "type": "AdaptiveCard", "version": "1.4",
//!                                     "body": [ TextBlock title, TextBlock message, FactSet ] } } ] }
//! ```

use serde_json::{Value, json};

use super::templates::short_commit;
use super::{Event, EventKind, JSON, Request, Target};
use crate::source::Secret;

pub(crate) fn request(target: &Target, event: &Event, text: &str) -> Request {
    let mut facts = vec![
        fact("Application", &event.application()),
        fact("Event", event.kind.as_str()),
    ];
    if let Some(revision) = event.revision {
        facts.push(fact("Revision", &revision.to_string()));
    }
    if let Some(commit) = &event.commit {
        facts.push(fact("Commit", &short_commit(commit)));
    }
    let body = json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": {
                "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "type": "AdaptiveCard",
                "version": "1.4",
                "body": [
                    {
                        "type": "TextBlock",
                        "text": title(event),
                        "weight": "Bolder",
                        "size": "Medium",
                        "color": color(event.kind),
                        "wrap": true,
                    },
                    { "type": "TextBlock", "text": text, "wrap": true },
                    { "type": "FactSet", "facts": facts },
                ],
            },
        }],
    });
    Request {
        url: target
            .address
            .clone()
            .expect("teams targets have an address"),
        headers: vec![("content-type", Secret::new(JSON))],
        body: serde_json::to_vec(&body).expect("JSON values serialise"),
    }
}

fn fact(title: &str, value: &str) -> Value {
    json!({ "title": title, "value": value })
}

fn title(event: &Event) -> String {
    let what = match event.kind {
        EventKind::SyncSucceeded => "sync succeeded",
        EventKind::SyncFailed => "sync failed",
        EventKind::HealthDegraded => "health degraded",
        EventKind::RolledBack => "rolled back",
        EventKind::DriftDetected => "drift detected",
        EventKind::DriftCorrected => "drift corrected",
    };
    format!("{}: {what}", event.application())
}

/// Adaptive Card text colours: `Good`, `Warning`, `Attention`.
fn color(kind: EventKind) -> &'static str {
    match kind {
        EventKind::SyncSucceeded | EventKind::DriftCorrected => "Good",
        EventKind::DriftDetected | EventKind::HealthDegraded => "Warning",
        EventKind::SyncFailed | EventKind::RolledBack => "Attention",
    }
}
