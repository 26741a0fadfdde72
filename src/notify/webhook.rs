//! The generic webhook: a JSON POST any receiver can read, signed when the
//! Secret has an `hmacKey`.
//!
//! ```text
//!   POST <address>
//!   Content-Type: application/json
//!   Authorization: Bearer <token>            (when the Secret has `token`)
//!   X-Signature: sha256=<hex HMAC-SHA256 of the body under hmacKey>
//!
//!   { "application": { "namespace", "name" }, "event", "revision", "commit",
//!     "repoURL", "message", "text", "drift": [ { "object", "field", "manager" } ],
//!     "timestamp" }
//! ```
//!
//! `message` is the event's own message; `text` is the rendered template
//! (`templates/webhook/<event>.hbs`).

use hmac::{Hmac, KeyInit, Mac};
use serde_json::json;
use sha2::Sha256;

use super::{Event, JSON, Request, Target};
use crate::source::Secret;

pub(crate) fn request(target: &Target, event: &Event, text: &str, timestamp: &str) -> Request {
    let body = json!({
        "application": { "namespace": event.namespace, "name": event.name },
        "event": event.kind.as_str(),
        "revision": event.revision,
        "commit": event.commit,
        "repoURL": event.shown_repo_url(),
        "message": event.message,
        "text": text,
        "drift": event.drift,
        "timestamp": timestamp,
    });
    let body = serde_json::to_vec(&body).expect("JSON values serialise");
    let mut headers = vec![("content-type", Secret::new(JSON))];
    if let Some(token) = &target.token {
        headers.push((
            "authorization",
            Secret::new(format!("Bearer {}", token.expose())),
        ));
    }
    if let Some(key) = &target.hmac_key {
        headers.push((
            "x-signature",
            Secret::new(format!("sha256={}", hmac_hex(key, &body))),
        ));
    }
    Request {
        url: target
            .address
            .clone()
            .expect("webhook targets have an address"),
        headers,
        body,
    }
}

/// Lowercase hex of HMAC-SHA256(key, body).
pub(crate) fn hmac_hex(key: &Secret, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(key.expose().as_bytes()).expect("HMAC takes any key");
    mac.update(body);
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_the_rfc_4231_test_vector() {
        // RFC 4231 test case 2.
        let key = Secret::new("Jefe");
        assert_eq!(
            hmac_hex(&key, b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
