//! Slack incoming webhooks: `text` (the notification fallback) and
//! `blocks` (a mrkdwn section with the message and a context line).
//!
//! ```text
//!   POST <address>   { "text": "...",
//!                      "blocks": [ { "type": "section", "text": { "type": "mrkdwn", "text": "..." } },
//!                                  { "type": "context", "elements": [ { "type": "mrkdwn", "text": "..." } ] } ] }
//! ```

use serde_json::json;

use super::templates::short_commit;
use super::{Event, JSON, Request, Target, truncate};
use crate::source::Secret;

/// Slack refuses a section text longer than 3000 characters.
const SECTION_LIMIT: usize = 3000;

pub(crate) fn request(target: &Target, event: &Event, text: &str) -> Request {
    let body = json!({
        "text": text,
        "blocks": [
            {
                "type": "section",
                "text": { "type": "mrkdwn", "text": truncate(text, SECTION_LIMIT) },
            },
            {
                "type": "context",
                "elements": [ { "type": "mrkdwn", "text": context_line(event) } ],
            },
        ],
    });
    Request {
        url: target
            .address
            .clone()
            .expect("slack targets have an address"),
        headers: vec![("content-type", Secret::new(JSON))],
        body: serde_json::to_vec(&body).expect("JSON values serialise"),
    }
}

/// `windlass · team-a/guestbook · sync-failed · revision 7 · commit 0123456`.
fn context_line(event: &Event) -> String {
    let mut parts = vec![
        "windlass".to_string(),
        event.application(),
        event.kind.as_str().to_string(),
    ];
    if let Some(revision) = event.revision {
        parts.push(format!("revision {revision}"));
    }
    if let Some(commit) = &event.commit {
        parts.push(format!("commit `{}`", short_commit(commit)));
    }
    parts.join(" · ")
}
