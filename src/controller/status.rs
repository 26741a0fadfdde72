//! The Application's status, decided from what a reconcile found. Pure: no
//! I/O, so every rule is unit-tested here.
//!
//! ```text
//!   old status ─┐
//!   Observation ┴─► next_status ─► new status ──(differs?)──► patch /status
//!                                                (equal: nothing is written)
//! ```
//!
//! Conditions follow kstatus: `Ready` is always present (True, False, or
//! Unknown while a sync runs); `Reconciling` and `Stalled` are present only
//! while true; `Drifted` is present only while live objects differ from the
//! applied revision. A condition's `lastTransitionTime` moves only when its
//! status does.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

pub use crate::spec::condition::{DRIFTED, READY, RECONCILING, STALLED};
use crate::spec::{ApplicationStatus, Reason};

/// Where the application stands after a reconcile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// The applied revision is live and healthy (Ready=True).
    Ready { reason: Reason, message: String },
    /// A sync is under way (Ready=Unknown, Reconciling=True).
    Progressing { message: String },
    /// Something is wrong (Ready=False). `stalled`: retrying will not help
    /// until the user acts (Stalled=True).
    NotReady {
        reason: Reason,
        message: String,
        stalled: bool,
    },
}

/// A revision that is live in the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub revision: u64,
    pub commit: Option<String>,
    pub manifest_digest: String,
    pub object_count: usize,
    /// When windlass wrote it (RFC 3339).
    pub sync_time: String,
}

/// What one reconcile found. `None` fields keep what the status said.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observation {
    pub generation: Option<i64>,
    pub state: Option<State>,
    pub applied: Option<Applied>,
    pub attempted_commit: Option<String>,
    /// `Some(None)` clears it.
    pub held_back_commit: Option<Option<String>>,
    /// `Some(None)`: no drift; `Some(Some(message))`: drift; `None`: not checked.
    pub drift: Option<Option<String>>,
    pub handled_request: Option<String>,
    pub deletion_policy: Option<String>,
}

/// The status after `observation`, carrying over what it does not say.
pub fn next_status(
    old: Option<&ApplicationStatus>,
    observation: &Observation,
    now: &Time,
) -> ApplicationStatus {
    let mut status = old.cloned().unwrap_or_default();
    if observation.generation.is_some() {
        status.observed_generation = observation.generation;
    }
    if let Some(applied) = &observation.applied {
        status.last_applied_revision = i64::try_from(applied.revision).ok();
        status.last_applied_commit = applied.commit.clone();
        status.manifest_digest = Some(applied.manifest_digest.clone());
        status.object_count = i64::try_from(applied.object_count).ok();
        status.last_sync_time = Some(applied.sync_time.clone());
    }
    if observation.attempted_commit.is_some() {
        status.last_attempted_commit = observation.attempted_commit.clone();
    }
    if let Some(held_back) = &observation.held_back_commit {
        status.held_back_commit = held_back.clone();
    }
    if observation.handled_request.is_some() {
        status.last_handled_reconcile_at = observation.handled_request.clone();
    }
    if observation.deletion_policy.is_some() {
        status.deletion_policy = observation.deletion_policy.clone();
    }
    let generation = status.observed_generation;
    let mut conditions = status.conditions.clone();
    if let Some(state) = &observation.state {
        let (ready, reconciling, stalled) = match state {
            State::Ready { reason, message } => {
                (("True", reason.as_str(), message.as_str()), None, None)
            }
            State::Progressing { message } => (
                ("Unknown", Reason::Progressing.as_str(), message.as_str()),
                Some(("True", Reason::Progressing.as_str(), message.as_str())),
                None,
            ),
            State::NotReady {
                reason,
                message,
                stalled,
            } => (
                ("False", reason.as_str(), message.as_str()),
                None,
                stalled.then_some(("True", reason.as_str(), message.as_str())),
            ),
        };
        set(&mut conditions, READY, Some(ready), generation, now);
        set(&mut conditions, RECONCILING, reconciling, generation, now);
        set(&mut conditions, STALLED, stalled, generation, now);
    }
    if let Some(drift) = &observation.drift {
        let drifted = drift
            .as_deref()
            .map(|message| ("True", "DriftDetected", message));
        set(&mut conditions, DRIFTED, drifted, generation, now);
    }
    status.conditions = conditions;
    status
}

/// Sets (or, with `None`, removes) one condition; its transition time
/// moves only when its status changes.
fn set(
    conditions: &mut Vec<Condition>,
    kind: &str,
    value: Option<(&str, &str, &str)>,
    generation: Option<i64>,
    now: &Time,
) {
    let position = conditions.iter().position(|c| c.type_ == kind);
    let Some((status, reason, message)) = value else {
        if let Some(position) = position {
            conditions.remove(position);
        }
        return;
    };
    let last_transition_time = match position {
        Some(p) if conditions[p].status == status => conditions[p].last_transition_time.clone(),
        _ => now.clone(),
    };
    let condition = Condition {
        type_: kind.to_string(),
        status: status.to_string(),
        reason: reason.to_string(),
        message: truncate(message, 2048),
        observed_generation: generation,
        last_transition_time,
    };
    match position {
        Some(p) => conditions[p] = condition,
        None => conditions.push(condition),
    }
}

/// Condition messages stay short (the API allows 32 KiB; people read them
/// in `kubectl get`).
fn truncate(text: &str, limit: usize) -> String {
    if text.len() <= limit {
        return text.to_string();
    }
    let mut end = limit;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    fn time(seconds: i64) -> Time {
        Time(Timestamp::from_second(seconds).unwrap())
    }

    fn ready(message: &str) -> Observation {
        Observation {
            generation: Some(1),
            state: Some(State::Ready {
                reason: Reason::Succeeded,
                message: message.into(),
            }),
            ..Observation::default()
        }
    }

    fn condition<'a>(status: &'a ApplicationStatus, kind: &str) -> Option<&'a Condition> {
        status.conditions.iter().find(|c| c.type_ == kind)
    }

    #[test]
    fn the_same_observation_twice_gives_an_equal_status() {
        let first = next_status(None, &ready("revision 1 is live"), &time(100));
        let second = next_status(Some(&first), &ready("revision 1 is live"), &time(200));
        assert_eq!(first, second, "nothing changed, so nothing must be written");
    }

    #[test]
    fn transition_time_moves_only_when_the_status_changes() {
        let first = next_status(None, &ready("a"), &time(100));
        let same_status = next_status(Some(&first), &ready("b"), &time(200));
        assert_eq!(
            condition(&same_status, READY).unwrap().last_transition_time,
            time(100)
        );
        let failed = Observation {
            state: Some(State::NotReady {
                reason: Reason::RenderFailed,
                message: "render failed".into(),
                stalled: false,
            }),
            ..Observation::default()
        };
        let after = next_status(Some(&same_status), &failed, &time(300));
        let ready = condition(&after, READY).unwrap();
        assert_eq!(ready.status, "False");
        assert_eq!(ready.reason, "RenderFailed");
        assert_eq!(ready.last_transition_time, time(300));
        assert!(condition(&after, STALLED).is_none());
    }

    #[test]
    fn progressing_sets_reconciling_and_ready_unknown_and_then_clears() {
        let progressing = Observation {
            state: Some(State::Progressing {
                message: "applying".into(),
            }),
            ..Observation::default()
        };
        let during = next_status(None, &progressing, &time(1));
        assert_eq!(condition(&during, READY).unwrap().status, "Unknown");
        assert_eq!(condition(&during, RECONCILING).unwrap().status, "True");
        let after = next_status(Some(&during), &ready("done"), &time(2));
        assert!(condition(&after, RECONCILING).is_none());
        assert_eq!(condition(&after, READY).unwrap().status, "True");
    }

    #[test]
    fn stalled_and_drifted_appear_and_go() {
        let held = Observation {
            state: Some(State::NotReady {
                reason: Reason::HeldBack,
                message: "commit abc failed".into(),
                stalled: true,
            }),
            held_back_commit: Some(Some("abc".into())),
            drift: Some(Some("1 object(s) differ".into())),
            ..Observation::default()
        };
        let status = next_status(None, &held, &time(1));
        assert_eq!(condition(&status, STALLED).unwrap().reason, "HeldBack");
        assert_eq!(condition(&status, DRIFTED).unwrap().status, "True");
        assert_eq!(status.held_back_commit.as_deref(), Some("abc"));
        let clear = Observation {
            held_back_commit: Some(None),
            drift: Some(None),
            ..ready("ok")
        };
        let status = next_status(Some(&status), &clear, &time(2));
        assert!(condition(&status, STALLED).is_none());
        assert!(condition(&status, DRIFTED).is_none());
        assert_eq!(status.held_back_commit, None);
    }

    #[test]
    fn applied_revisions_fill_the_numbers_and_unsaid_fields_are_kept() {
        let applied = Observation {
            applied: Some(Applied {
                revision: 3,
                commit: Some("0123abc".into()),
                manifest_digest: "sha256:aa".into(),
                object_count: 4,
                sync_time: "2026-11-23T10:00:00Z".into(),
            }),
            attempted_commit: Some("0123abc".into()),
            ..ready("revision 3 is live")
        };
        let status = next_status(None, &applied, &time(1));
        assert_eq!(status.last_applied_revision, Some(3));
        assert_eq!(status.object_count, Some(4));
        let later = next_status(
            Some(&status),
            &Observation {
                attempted_commit: Some("9999999".into()),
                ..ready("x")
            },
            &time(2),
        );
        assert_eq!(later.last_applied_commit.as_deref(), Some("0123abc"));
        assert_eq!(later.last_attempted_commit.as_deref(), Some("9999999"));
    }

    #[test]
    fn long_messages_are_cut_on_a_character_boundary() {
        let text = "é".repeat(2000);
        let cut = truncate(&text, 2047);
        assert!(cut.ends_with('…'));
        assert!(cut.len() <= 2050);
    }
}
