//! What a reconcile does, and what it tells: pure functions of what the
//! reconcile found. The reconcile (`reconcile.rs`) gathers the facts
//! (dependencies, git, render, plan) and carries out the decision; every
//! rule lives here, unit-tested case by case.
//!
//! ```text
//!   Failure (any step) ──────────────► failed() ──────────┐
//!   Facts (plan found) ─► decide() ─┬─ InSync ─► in_sync()  ├─► Verdict { observation, events,
//!   (+ sync window at now)          ├─ ReportDrift / OutOfSync (verdicts)    reason, requeue }
//!                                   ├─ WindowClosed ─► window_closed()
//!                                   └─ Sync(operation) ─► engine ─► after_sync()
//! ```
//!
//! Sync windows (`spec.sync.windows`, evaluated by `windows.rs` at the time
//! of the reconcile) hold back every sync the controller would run, automated
//! or asked for by `windlass reconcile`, self-heal included; only a request
//! made with `--ignore-windows` passes. They never make an Application that
//! has nothing to apply unready.

use jiff::Timestamp;
use kube::runtime::events::{Event, EventType};

use super::status::{Applied, Observation, State};
use super::windows::Closed;
use crate::spec::{NotificationEvent, Reason};
use crate::sync::drift::Drift;
use crate::sync::engine::{EngineError, HeldBack, Operation, SyncOutcome};

/// Objects named in a condition or Event message; the rest are counted.
pub const OBJECTS_SHOWN: usize = 10;

/// When to reconcile again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requeue {
    /// After the interval (plus jitter).
    Interval,
    /// After an error: the backoff.
    Backoff,
    /// Soon: waiting for something that polling notices (a dependency).
    Soon,
    /// At this instant (a sync window opens), or after the interval if
    /// that comes first.
    Until(Timestamp),
    /// After this long (a self-heal's backoff), or the interval if sooner.
    After(std::time::Duration),
}

/// What one reconcile decided: the status, the Events, when to come back.
pub struct Verdict {
    pub observation: Observation,
    pub events: Vec<Announcement>,
    /// What the reconcile counts as in metrics.
    pub reason: Reason,
    pub requeue: Requeue,
    /// The drift the Events speak of, for notifications.
    pub drift: Option<Drift>,
}

impl Verdict {
    pub fn failed(&self) -> bool {
        self.requeue == Requeue::Backoff
    }
}

/// Why a reconcile stopped before it could apply: every early exit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub reason: Reason,
    pub message: String,
    /// The commit it was working on, once known.
    pub commit: Option<String>,
}

impl Failure {
    pub fn new(reason: Reason, message: impl Into<String>) -> Failure {
        Failure {
            reason,
            message: message.into(),
            commit: None,
        }
    }

    pub fn at(mut self, commit: &str) -> Failure {
        self.commit = Some(commit.to_string());
        self
    }
}

/// Ready=False with the failure's reason, a `SyncFailed` Event, backoff.
/// An invalid spec is also Stalled: only the user can help.
pub fn failed(failure: Failure) -> Verdict {
    let stalled = failure.reason == Reason::InvalidSpec;
    Verdict {
        observation: Observation {
            state: Some(not_ready(failure.reason, failure.message.clone(), stalled)),
            attempted_commit: failure.commit,
            ..Observation::default()
        },
        events: vec![warning(Notice::SyncFailed, "Sync", failure.message)],
        reason: failure.reason,
        requeue: Requeue::Backoff,
        drift: None,
    }
}

/// A dependency is not Ready: wait, without an Event.
pub fn waiting_for_dependency(message: String) -> Verdict {
    Verdict {
        observation: Observation {
            state: Some(not_ready(Reason::DependencyNotReady, message, false)),
            ..Observation::default()
        },
        events: Vec::new(),
        reason: Reason::DependencyNotReady,
        requeue: Requeue::Soon,
        drift: None,
    }
}

/// The sync windows forbid syncs now: why, and until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClosedWindow {
    /// ``sync window closed by deny window `0 18 * * 5` (62h, Europe/Berlin);
    /// next opening 2026-12-07T08:00:00+01:00``
    pub message: String,
    /// When syncs may run again, if an opening was found.
    pub next_opening: Option<Timestamp>,
}

impl From<&Closed> for ClosedWindow {
    fn from(closed: &Closed) -> ClosedWindow {
        ClosedWindow {
            message: closed.to_string(),
            next_opening: closed.next_opening.at(),
        }
    }
}

/// What the reconcile found once it had a plan.
#[derive(Debug)]
pub struct Facts<'a> {
    pub name: &'a str,
    /// The commit whose content was rendered.
    pub commit: &'a str,
    /// `windlass reconcile` asked for this reconcile.
    pub asked: bool,
    /// ... with `--ignore-windows` (only meaningful when `asked`).
    pub ignore_windows: bool,
    /// The sync windows at the time of the reconcile; `None`: open.
    pub window: Option<ClosedWindow>,
    /// The Ready condition's message now, if it says a window is closed.
    pub window_reported: Option<&'a str>,
    pub automated: bool,
    pub self_heal: bool,
    pub has_changes: bool,
    /// `N to create, …`
    pub plan_summary: String,
    /// The desired state is the revision the status says is applied.
    pub same_as_applied: bool,
    /// What differs from the applied revision (empty unless `same_as_applied`).
    pub drift: &'a Drift,
    /// The Drifted condition's message now, if drifted.
    pub drift_reported: Option<&'a str>,
    /// The applied revision and commit the status names.
    pub applied: (Option<u64>, Option<&'a str>),
    /// Self-heals in a row so far.
    pub heals: HealStreak,
    /// Of the desired state.
    pub manifest_digest: &'a str,
    pub object_count: usize,
    /// The desired state failed its health check and was rolled back: it is
    /// not applied again until it changes.
    pub held_back: Option<HeldBack>,
    /// The status already says this commit is held back (the rollback's
    /// own message, which names the failure, stays).
    pub held_back_reported: bool,
    /// A revision record is pending: a sync is running (the CLI's), or one
    /// stopped before it finished (a killed controller) and left it so.
    pub pending_record: bool,
}

/// What to do with a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Nothing to write: the applied revision is live.
    InSync,
    /// Live objects differ from the applied revision, and selfHeal is off.
    ReportDrift,
    /// A new commit is not applied, and automated sync is off.
    OutOfSync,
    /// A sync (or self-heal) is due, and a sync window forbids it now.
    WindowClosed(ClosedWindow),
    /// A self-heal is due, but the last one was moments ago: wait this long.
    HealLater(std::time::Duration),
    /// Another field manager reverted every recent self-heal: stop.
    Fighting {
        manager: String,
    },
    /// A sync is due, but an automatic rollback replaced this desired state.
    HeldBack(HeldBack),
    Sync(Operation),
}

/// The first self-heal waits for nothing; each one after it in a row waits
/// twice as long as the one before (2 s, 4 s, 8 s …), at most 5 minutes.
pub const HEAL_FIRST_DELAY: std::time::Duration = std::time::Duration::from_secs(2);
pub const HEAL_MAX_DELAY: std::time::Duration = std::time::Duration::from_secs(300);
/// Self-heals in a row that the same other manager reverted before windlass
/// stops fighting it.
pub const HEAL_FIGHT_LIMIT: usize = 3;

/// Self-heals in a row (the drift never cleared between them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HealStreak {
    /// The field managers whose changes each heal reverted, oldest first.
    pub reverted: Vec<std::collections::BTreeSet<String>>,
    /// How long ago the last heal was.
    pub since_last: Option<std::time::Duration>,
}

impl HealStreak {
    /// How long the next heal must still wait.
    pub fn wait(&self) -> std::time::Duration {
        let Some(since) = self.since_last else {
            return std::time::Duration::ZERO;
        };
        let exponent = self.reverted.len().saturating_sub(1).min(16) as u32;
        let delay = HEAL_FIRST_DELAY
            .saturating_mul(1 << exponent)
            .min(HEAL_MAX_DELAY);
        delay.saturating_sub(since)
    }

    /// A manager that reverted each of the last [`HEAL_FIGHT_LIMIT`] heals
    /// and has changed the objects again now.
    pub fn fighting(&self, now: &[String]) -> Option<String> {
        if self.reverted.len() < HEAL_FIGHT_LIMIT {
            return None;
        }
        let recent = &self.reverted[self.reverted.len() - HEAL_FIGHT_LIMIT..];
        now.iter()
            .find(|manager| recent.iter().all(|heal| heal.contains(*manager)))
            .cloned()
    }
}

pub fn decide(facts: &Facts<'_>) -> Decision {
    if !facts.has_changes {
        // Nothing to change, but a pending record: its sync may have died
        // after its last write (its deletions finished on their own). A
        // sync closes it under the lock (or finds it finished meanwhile);
        // else history would show it pending for ever. Nothing changes in
        // the cluster, so a closed sync window only postpones it, and the
        // Application stays Ready.
        let window_open = facts.window.is_none() || (facts.asked && facts.ignore_windows);
        if facts.pending_record && (facts.asked || facts.automated) && window_open {
            return Decision::Sync(Operation::Sync);
        }
        return Decision::InSync;
    }
    let drift_only = facts.same_as_applied;
    if facts.asked || (facts.automated && (!drift_only || facts.self_heal)) {
        let overridden = facts.asked && facts.ignore_windows;
        if let Some(window) = &facts.window
            && !overridden
        {
            return Decision::WindowClosed(window.clone());
        }
        if !drift_only {
            return match &facts.held_back {
                Some(held_back) => Decision::HeldBack(held_back.clone()),
                None => Decision::Sync(Operation::Sync),
            };
        }
        if !facts.asked {
            let managers = facts.drift.managers();
            if let Some(manager) = facts.heals.fighting(&managers) {
                return Decision::Fighting { manager };
            }
            let wait = facts.heals.wait();
            if !wait.is_zero() {
                return Decision::HealLater(wait);
            }
        }
        return Decision::Sync(Operation::SelfHeal);
    }
    if drift_only {
        Decision::ReportDrift
    } else {
        Decision::OutOfSync
    }
}

/// In sync. `live` is the deployed revision read from the records when the
/// status did not name it yet (applied by the CLI, or before this status).
pub fn in_sync(facts: &Facts<'_>, live: Option<Applied>) -> Verdict {
    let (revision, commit) = match &live {
        Some(applied) => (Some(applied.revision), applied.commit.clone()),
        None => (facts.applied.0, facts.applied.1.map(str::to_string)),
    };
    let observation = Observation {
        attempted_commit: Some(facts.commit.to_string()),
        applied: live,
        held_back_commit: Some(None),
        drift: Some(None),
        state: Some(State::Ready {
            reason: Reason::Succeeded,
            message: applied_message(revision, commit.as_deref()),
        }),
        ..Observation::default()
    };
    done(observation, Vec::new(), Reason::Succeeded)
}

/// Drift with selfHeal off: Drifted, and one Event per change of the drift.
pub fn drift_reported(facts: &Facts<'_>) -> Verdict {
    let summary = facts.drift.summary(OBJECTS_SHOWN);
    let mut events = Vec::new();
    if facts.drift_reported != Some(summary.as_str()) {
        events.push(warning(
            Notice::DriftDetected,
            "DetectDrift",
            summary.clone(),
        ));
    }
    let observation = Observation {
        attempted_commit: Some(facts.commit.to_string()),
        drift: Some(Some(summary)),
        ..Observation::default()
    };
    let mut verdict = done(observation, events, Reason::Succeeded);
    verdict.drift = Some(facts.drift.clone());
    verdict
}

/// A self-heal waits out its backoff: drift reported, back then.
pub fn heal_later(facts: &Facts<'_>, wait: std::time::Duration) -> Verdict {
    let mut verdict = drift_reported(facts);
    verdict.requeue = Requeue::After(wait);
    verdict
}

/// Another manager keeps reverting windlass: report it and stop healing
/// (Stalled), until the drift clears, the spec changes or someone runs
/// `windlass reconcile`.
pub fn fighting(facts: &Facts<'_>, manager: &str) -> Verdict {
    let mut verdict = drift_reported(facts);
    let message = format!(
        "selfHeal stopped: field manager {manager} reverted the last {HEAL_FIGHT_LIMIT} \
         self-heals ({}); leave the fields to it (spec.ignoreDifferences) or stop it, then run \
         `windlass reconcile {}`",
        facts.drift.summary(OBJECTS_SHOWN),
        facts.name
    );
    verdict.observation.state = Some(not_ready(Reason::SelfHealStopped, message, true));
    verdict.reason = Reason::SelfHealStopped;
    verdict
}

/// A new commit waits for `windlass reconcile`.
pub fn out_of_sync(facts: &Facts<'_>) -> Verdict {
    let message = format!(
        "commit {} is not applied ({}); automated sync is off: run `windlass reconcile {}`",
        short(facts.commit),
        facts.plan_summary,
        facts.name
    );
    let observation = Observation {
        attempted_commit: Some(facts.commit.to_string()),
        state: Some(not_ready(Reason::OutOfSync, message, false)),
        ..Observation::default()
    };
    done(observation, Vec::new(), Reason::OutOfSync)
}

/// A sync is due and a window forbids it: Ready=False with the window's
/// message (not Stalled: it opens by itself), one `SyncWindowClosed` Event
/// per change of that message, and back when the window opens. Drift that
/// selfHeal would correct is reported (as with selfHeal off), not healed.
pub fn window_closed(facts: &Facts<'_>, window: &ClosedWindow) -> Verdict {
    let drift_only = facts.same_as_applied;
    let message = if drift_only {
        format!(
            "drift is not corrected: {}; `windlass reconcile --ignore-windows {}` corrects it now",
            window.message, facts.name
        )
    } else {
        format!(
            "commit {} is not applied ({}): {}; `windlass reconcile --ignore-windows {}` \
             applies it now",
            short(facts.commit),
            facts.plan_summary,
            window.message,
            facts.name
        )
    };
    let (mut observation, mut events) = if drift_only {
        let reported = drift_reported(facts);
        (reported.observation, reported.events)
    } else {
        let observation = Observation {
            attempted_commit: Some(facts.commit.to_string()),
            ..Observation::default()
        };
        (observation, Vec::new())
    };
    if facts.window_reported != Some(message.as_str()) {
        events.push(normal(Notice::SyncWindowClosed, "Sync", message.clone()));
    }
    observation.state = Some(not_ready(Reason::SyncWindowClosed, message, false));
    Verdict {
        observation,
        events,
        reason: Reason::SyncWindowClosed,
        requeue: window
            .next_opening
            .map_or(Requeue::Interval, Requeue::Until),
        drift: drift_only.then(|| facts.drift.clone()),
    }
}

/// The status written while a sync runs.
pub fn progressing(facts: &Facts<'_>) -> Observation {
    Observation {
        state: Some(State::Progressing {
            message: format!(
                "applying commit {}: {}",
                short(facts.commit),
                facts.plan_summary
            ),
        }),
        attempted_commit: Some(facts.commit.to_string()),
        ..Observation::default()
    }
}

/// The desired state is the one an automatic rollback replaced: it stays
/// held back, Stalled, until a new commit (or new values) arrives.
pub fn held_back(facts: &Facts<'_>, held_back: &HeldBack) -> Verdict {
    let HeldBack { what, revision } = held_back;
    let state = (!facts.held_back_reported).then(|| {
        not_ready(
            Reason::HeldBack,
            format!(
                "{what} failed its health check at revision {revision} and was rolled back; it \
                 is not applied again until a new commit arrives"
            ),
            true,
        )
    });
    let observation = Observation {
        attempted_commit: Some(facts.commit.to_string()),
        held_back_commit: Some(Some(facts.commit.to_string())),
        state,
        ..Observation::default()
    };
    done(observation, Vec::new(), Reason::HeldBack)
}

/// The engine refused to sync, or failed before recording anything.
pub fn sync_refused(facts: &Facts<'_>, error: &EngineError) -> Verdict {
    match error {
        EngineError::Quarantined { what, revision } => held_back(
            facts,
            &HeldBack {
                what: what.clone(),
                revision: *revision,
            },
        ),
        other => {
            // A busy lock (someone runs `windlass sync` by hand) is retried.
            let reason = match other {
                EngineError::Lock(_) => Reason::Locked,
                _ => Reason::SyncFailed,
            };
            let message = format!("sync failed: {}", crate::cluster::chain(other));
            failed(Failure::new(reason, message).at(facts.commit))
        }
    }
}

/// How a sync that ran ended: status and Events. `now` is the sync time.
pub fn after_sync(facts: &Facts<'_>, outcome: &SyncOutcome, now: &str) -> Verdict {
    let commit = facts.commit;
    let mut events = pruned_event(outcome);
    let mut observation = Observation {
        attempted_commit: Some(commit.to_string()),
        ..Observation::default()
    };
    match outcome {
        SyncOutcome::Unchanged { .. } => {
            // Another writer made it current meanwhile.
            in_sync(facts, None)
        }
        SyncOutcome::Deployed { revision, .. } => {
            let revision = *revision;
            observation.applied = Some(Applied {
                revision,
                commit: Some(commit.to_string()),
                manifest_digest: facts.manifest_digest.to_string(),
                object_count: facts.object_count,
                sync_time: now.to_string(),
            });
            observation.drift = Some(None);
            observation.held_back_commit = Some(None);
            observation.state = Some(State::Ready {
                reason: Reason::Succeeded,
                message: applied_message(Some(revision), Some(commit)),
            });
            let (reason, action, note) = if facts.same_as_applied && !facts.drift.is_empty() {
                (
                    Notice::DriftCorrected,
                    "SelfHeal",
                    format!(
                        "re-applied revision {revision}: {}",
                        facts.drift.summary(OBJECTS_SHOWN)
                    ),
                )
            } else {
                (
                    Notice::SyncSucceeded,
                    "Sync",
                    format!(
                        "revision {revision}: commit {}: {}",
                        short(commit),
                        facts.plan_summary
                    ),
                )
            };
            events.push(normal(reason, action, note));
            let mut verdict = done(observation, events, Reason::Succeeded);
            verdict.drift = (reason == Notice::DriftCorrected).then(|| facts.drift.clone());
            verdict
        }
        SyncOutcome::RolledBack {
            revision,
            failure,
            to,
            restored,
            ..
        } => {
            events.push(warning(
                Notice::HealthCheckFailed,
                "Sync",
                format!("revision {revision} (commit {}): {failure}", short(commit)),
            ));
            events.push(warning(
                Notice::RolledBack,
                "Rollback",
                format!(
                    "rolled back to revision {to}; commit {} is held back until a new commit \
                     arrives",
                    short(commit)
                ),
            ));
            observation.applied = Some(Applied {
                revision: restored.revision,
                commit: restored.commit.clone(),
                manifest_digest: restored.manifest_digest.clone(),
                object_count: restored.object_count,
                sync_time: now.to_string(),
            });
            observation.held_back_commit = Some(Some(commit.to_string()));
            observation.drift = Some(None);
            observation.state = Some(not_ready(
                Reason::HeldBack,
                format!(
                    "commit {} failed at revision {revision} ({failure}) and was rolled back to \
                     revision {to}; push a new commit",
                    short(commit)
                ),
                true,
            ));
            Verdict {
                observation,
                events,
                reason: Reason::HeldBack,
                requeue: Requeue::Interval,
                drift: None,
            }
        }
        SyncOutcome::Failed {
            revision, failure, ..
        } => {
            let reason = match failure {
                crate::sync::engine::SyncFailure::Unhealthy(_) => Reason::HealthCheckFailed,
                crate::sync::engine::SyncFailure::Apply(_) => Reason::SyncFailed,
            };
            let message = format!("revision {revision} (commit {}): {failure}", short(commit));
            let mut verdict = failed(Failure::new(reason, message.clone()).at(commit));
            let notice = match reason {
                Reason::HealthCheckFailed => Notice::HealthCheckFailed,
                _ => Notice::SyncFailed,
            };
            events.push(warning(notice, "Sync", message));
            verdict.events = events;
            verdict
        }
    }
}

/// `Pruned`, when the sync deleted objects.
fn pruned_event(outcome: &SyncOutcome) -> Vec<Announcement> {
    let Some(report) = outcome.report() else {
        return Vec::new();
    };
    if report.deleted.is_empty() {
        return Vec::new();
    }
    let names: Vec<String> = report
        .deleted
        .iter()
        .take(OBJECTS_SHOWN)
        .map(crate::sync::diff::display_name)
        .collect();
    vec![normal(
        Notice::Pruned,
        "Prune",
        format!(
            "deleted {} object(s): {}",
            report.deleted.len(),
            names.join(", ")
        ),
    )]
}

fn done(observation: Observation, events: Vec<Announcement>, reason: Reason) -> Verdict {
    Verdict {
        observation,
        events,
        reason,
        requeue: Requeue::Interval,
        drift: None,
    }
}

fn not_ready(reason: Reason, message: String, stalled: bool) -> State {
    State::NotReady {
        reason,
        message,
        stalled,
    }
}

pub fn applied_message(revision: Option<u64>, commit: Option<&str>) -> String {
    match (revision, commit) {
        (Some(revision), Some(commit)) => {
            format!("revision {revision} is applied: commit {}", short(commit))
        }
        (Some(revision), None) => format!("revision {revision} is applied"),
        _ => "the cluster matches the source".to_string(),
    }
}

/// Why an Event is sent: its `reason`, and the notification it becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    SyncSucceeded,
    SyncFailed,
    HealthCheckFailed,
    RolledBack,
    Pruned,
    DriftDetected,
    DriftCorrected,
    SyncWindowClosed,
}

impl Notice {
    pub fn as_str(self) -> &'static str {
        match self {
            Notice::SyncSucceeded => "SyncSucceeded",
            Notice::SyncFailed => "SyncFailed",
            Notice::HealthCheckFailed => "HealthCheckFailed",
            Notice::RolledBack => "RolledBack",
            Notice::Pruned => "Pruned",
            Notice::DriftDetected => "DriftDetected",
            Notice::DriftCorrected => "DriftCorrected",
            Notice::SyncWindowClosed => "SyncWindowClosed",
        }
    }

    /// The `spec.notifications` event it is, if any.
    pub fn notification(self) -> Option<NotificationEvent> {
        match self {
            Notice::SyncSucceeded => Some(NotificationEvent::SyncSucceeded),
            Notice::SyncFailed => Some(NotificationEvent::SyncFailed),
            Notice::HealthCheckFailed => Some(NotificationEvent::HealthDegraded),
            Notice::RolledBack => Some(NotificationEvent::RolledBack),
            Notice::DriftDetected => Some(NotificationEvent::DriftDetected),
            Notice::DriftCorrected => Some(NotificationEvent::DriftCorrected),
            Notice::Pruned | Notice::SyncWindowClosed => None,
        }
    }
}

/// A Kubernetes Event to publish, and why.
pub struct Announcement {
    pub notice: Notice,
    pub event: Event,
}

pub fn normal(notice: Notice, action: &str, note: String) -> Announcement {
    announce(EventType::Normal, notice, action, note)
}

pub fn warning(notice: Notice, action: &str, note: String) -> Announcement {
    announce(EventType::Warning, notice, action, note)
}

fn announce(type_: EventType, notice: Notice, action: &str, note: String) -> Announcement {
    Announcement {
        notice,
        event: Event {
            type_,
            reason: notice.as_str().to_string(),
            note: Some(cut(note)),
            action: action.to_string(),
            secondary: None,
        },
    }
}

/// Event notes are limited to 1 kB.
fn cut(mut text: String) -> String {
    if text.len() > 1000 {
        let mut end = 997;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

pub fn short(commit: &str) -> &str {
    &commit[..commit.len().min(7)]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::drift::Drift;

    fn facts(drift: &Drift) -> Facts<'_> {
        Facts {
            name: "web",
            commit: "0123456789abcdef",
            asked: false,
            ignore_windows: false,
            window: None,
            window_reported: None,
            automated: true,
            self_heal: false,
            has_changes: true,
            plan_summary: "1 to create".into(),
            same_as_applied: false,
            drift,
            drift_reported: None,
            applied: (Some(3), Some("fedcba9876543210")),
            heals: HealStreak::default(),
            manifest_digest: "m",
            object_count: 2,
            held_back: None,
            held_back_reported: false,
            pending_record: false,
        }
    }

    /// A weekend deny window in Berlin, evaluated on Saturday.
    fn closed_window() -> ClosedWindow {
        let spec = crate::spec::SyncWindow {
            kind: "deny".into(),
            schedule: "0 18 * * 5".into(),
            duration: "62h".into(),
            time_zone: Some("Europe/Berlin".into()),
        };
        let saturday: Timestamp = "2026-12-05T12:00:00Z".parse().unwrap();
        match super::super::windows::Windows::parse(&[spec])
            .unwrap()
            .state_at(saturday)
        {
            super::super::windows::WindowState::Closed(closed) => ClosedWindow::from(&closed),
            open => panic!("{open:?}"),
        }
    }

    fn message(verdict: &Verdict) -> &str {
        match &verdict.observation.state {
            Some(State::Ready { message, .. }) | Some(State::NotReady { message, .. }) => message,
            other => panic!("{other:?}"),
        }
    }

    fn empty_plan() -> crate::sync::plan::Plan {
        crate::sync::plan::Plan {
            app: crate::identity::AppIdentity::new("a", "web"),
            changes: Vec::new(),
            rejected: Vec::new(),
            prune: Vec::new(),
            prune_live: Default::default(),
            prune_refused: None,
        }
    }

    fn ready_reason(verdict: &Verdict) -> Option<Reason> {
        match &verdict.observation.state {
            Some(State::Ready { reason, .. }) | Some(State::NotReady { reason, .. }) => {
                Some(*reason)
            }
            _ => None,
        }
    }

    #[test]
    fn no_changes_is_in_sync_whatever_the_settings() {
        let drift = Drift::default();
        let mut f = facts(&drift);
        f.has_changes = false;
        f.automated = false;
        assert_eq!(decide(&f), Decision::InSync);
        let verdict = in_sync(&f, None);
        assert_eq!(ready_reason(&verdict), Some(Reason::Succeeded));
        assert!(verdict.events.is_empty());
        match verdict.observation.state {
            Some(State::Ready { message, .. }) => {
                assert_eq!(message, "revision 3 is applied: commit fedcba9")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_pending_record_with_nothing_to_change_is_closed_by_a_sync() {
        let drift = Drift::default();
        let mut f = facts(&drift);
        f.has_changes = false;
        f.same_as_applied = true;
        f.pending_record = true;
        assert_eq!(decide(&f), Decision::Sync(Operation::Sync));
        f.window = Some(closed_window());
        assert_eq!(decide(&f), Decision::InSync, "postponed, still Ready");
        f.window = None;
        f.automated = false;
        assert_eq!(
            decide(&f),
            Decision::InSync,
            "manual: the next sync closes it"
        );
        f.asked = true;
        assert_eq!(decide(&f), Decision::Sync(Operation::Sync));
        f.pending_record = false;
        assert_eq!(decide(&f), Decision::InSync);
    }

    #[test]
    fn a_new_commit_syncs_when_automated_and_waits_otherwise() {
        let drift = Drift::default();
        let mut f = facts(&drift);
        assert_eq!(decide(&f), Decision::Sync(Operation::Sync));
        f.automated = false;
        assert_eq!(decide(&f), Decision::OutOfSync);
        let verdict = out_of_sync(&f);
        assert_eq!(ready_reason(&verdict), Some(Reason::OutOfSync));
        f.asked = true;
        assert_eq!(
            decide(&f),
            Decision::Sync(Operation::Sync),
            "windlass reconcile"
        );
    }

    #[test]
    fn drift_is_healed_only_with_self_heal_or_when_asked() {
        let drift = Drift::default();
        let mut f = facts(&drift);
        f.same_as_applied = true;
        assert_eq!(decide(&f), Decision::ReportDrift);
        f.self_heal = true;
        assert_eq!(decide(&f), Decision::Sync(Operation::SelfHeal));
        f.self_heal = false;
        f.asked = true;
        assert_eq!(decide(&f), Decision::Sync(Operation::SelfHeal));
    }

    #[test]
    fn drift_sends_one_event_per_change_of_the_drift() {
        let drift = Drift::default();
        let mut f = facts(&drift);
        f.same_as_applied = true;
        let summary = drift.summary(OBJECTS_SHOWN);
        assert_eq!(drift_reported(&f).events.len(), 1);
        f.drift_reported = Some(&summary);
        let verdict = drift_reported(&f);
        assert!(verdict.events.is_empty());
        assert_eq!(verdict.observation.drift, Some(Some(summary.clone())));
    }

    #[test]
    fn a_failure_is_not_ready_with_its_reason_and_backs_off() {
        let verdict = failed(Failure::new(Reason::GitFailed, "git: unreachable").at("abc"));
        assert_eq!(ready_reason(&verdict), Some(Reason::GitFailed));
        assert!(verdict.failed());
        assert_eq!(verdict.observation.attempted_commit.as_deref(), Some("abc"));
        assert_eq!(verdict.events[0].event.reason, "SyncFailed");
        assert_eq!(verdict.reason.metric_result(), "failure");
    }

    #[test]
    fn a_quarantined_commit_is_held_back_and_stalled_without_backoff() {
        let drift = Drift::default();
        let f = facts(&drift);
        let error = EngineError::Quarantined {
            what: "commit 0123456".into(),
            revision: 4,
        };
        let verdict = sync_refused(&f, &error);
        assert_eq!(ready_reason(&verdict), Some(Reason::HeldBack));
        assert!(!verdict.failed());
        assert!(matches!(
            verdict.observation.state,
            Some(State::NotReady { stalled: true, .. })
        ));
        assert_eq!(
            verdict.observation.held_back_commit,
            Some(Some(f.commit.to_string()))
        );
    }

    #[test]
    fn a_held_back_commit_is_not_synced_again_but_drift_on_the_restored_revision_heals() {
        let drift = Drift::default();
        let mut f = facts(&drift);
        let held = HeldBack {
            what: "commit 0123456".into(),
            revision: 4,
        };
        f.held_back = Some(held.clone());
        // No "applying" status in between: the verdict is the same as the
        // engine's refusal, so a status already saying so is not rewritten.
        assert_eq!(decide(&f), Decision::HeldBack(held.clone()));
        let verdict = held_back(&f, &held);
        let refused = sync_refused(
            &f,
            &EngineError::Quarantined {
                what: held.what.clone(),
                revision: held.revision,
            },
        );
        assert_eq!(verdict.observation, refused.observation);
        assert_eq!(ready_reason(&verdict), Some(Reason::HeldBack));
        // Once the status says so (with the rollback's message), it stays.
        f.held_back_reported = true;
        assert_eq!(held_back(&f, &held).observation.state, None);
        f.self_heal = true;
        f.same_as_applied = true;
        assert_eq!(decide(&f), Decision::Sync(Operation::SelfHeal));
    }

    #[test]
    fn a_busy_lock_is_retried_with_its_own_reason() {
        let drift = Drift::default();
        let f = facts(&drift);
        let error = EngineError::Lock(crate::sync::lock::LockError::Held {
            app: "a.web".into(),
            holder: "cli:me@host".into(),
            renewed: "now".into(),
            waited_secs: 0,
        });
        let verdict = sync_refused(&f, &error);
        assert_eq!(ready_reason(&verdict), Some(Reason::Locked));
        assert!(verdict.failed());
    }

    #[test]
    fn an_unchanged_outcome_is_in_sync_and_a_deployed_one_names_the_revision() {
        let drift = Drift::default();
        let f = facts(&drift);
        let plan = empty_plan();
        let verdict = after_sync(&f, &SyncOutcome::Unchanged { plan }, "t");
        assert_eq!(ready_reason(&verdict), Some(Reason::Succeeded));
        let deployed = SyncOutcome::Deployed {
            plan: empty_plan(),
            revision: 5,
            report: crate::sync::apply::ApplyReport::default(),
        };
        let verdict = after_sync(&f, &deployed, "t");
        let applied = verdict.observation.applied.clone().unwrap();
        assert_eq!(applied.revision, 5);
        assert_eq!(applied.object_count, 2);
        assert_eq!(verdict.events[0].event.reason, "SyncSucceeded");
    }

    #[test]
    fn an_unhealthy_revision_fails_with_health_check_failed_and_a_rolled_back_one_is_held() {
        let drift = Drift::default();
        let f = facts(&drift);
        let failed_outcome = SyncOutcome::Failed {
            plan: empty_plan(),
            revision: 6,
            report: None,
            failure: crate::sync::engine::SyncFailure::Unhealthy(vec!["deployment/web".into()]),
        };
        let verdict = after_sync(&f, &failed_outcome, "t");
        assert_eq!(ready_reason(&verdict), Some(Reason::HealthCheckFailed));
        assert!(verdict.failed());
        let rolled_back = SyncOutcome::RolledBack {
            plan: empty_plan(),
            revision: 6,
            report: crate::sync::apply::ApplyReport::default(),
            failure: crate::sync::engine::SyncFailure::Unhealthy(vec!["deployment/web".into()]),
            to: 5,
            restored: crate::sync::engine::Restored {
                revision: 7,
                commit: Some("fedcba9876543210".into()),
                manifest_digest: "old".into(),
                object_count: 1,
            },
        };
        let verdict = after_sync(&f, &rolled_back, "t");
        assert_eq!(ready_reason(&verdict), Some(Reason::HeldBack));
        assert!(!verdict.failed());
        assert_eq!(verdict.observation.applied.unwrap().revision, 7);
        let reasons: Vec<&str> = verdict
            .events
            .iter()
            .map(|e| e.event.reason.as_str())
            .collect();
        assert_eq!(reasons, vec!["HealthCheckFailed", "RolledBack"]);
    }

    #[test]
    fn a_closed_window_holds_back_an_automated_sync_until_it_opens() {
        let drift = Drift::default();
        let mut f = facts(&drift);
        f.window = Some(closed_window());
        let Decision::WindowClosed(window) = decide(&f) else {
            panic!("{:?}", decide(&f));
        };
        let verdict = window_closed(&f, &window);
        assert_eq!(ready_reason(&verdict), Some(Reason::SyncWindowClosed));
        assert_eq!(
            message(&verdict),
            "commit 0123456 is not applied (1 to create): sync window closed by deny window \
             `0 18 * * 5` (62h, Europe/Berlin); next opening 2026-12-07T08:00:00+01:00; \
             `windlass reconcile --ignore-windows web` applies it now"
        );
        assert!(matches!(
            verdict.observation.state,
            Some(State::NotReady { stalled: false, .. })
        ));
        assert!(!verdict.failed(), "no backoff");
        assert_eq!(
            verdict.requeue,
            Requeue::Until("2026-12-07T07:00:00Z".parse().unwrap())
        );
        assert_eq!(verdict.reason.metric_result(), "skipped");
        assert_eq!(verdict.observation.applied, None, "nothing applied");
        assert_eq!(
            verdict.observation.attempted_commit.as_deref(),
            Some(f.commit)
        );
    }

    #[test]
    fn a_closed_window_sends_one_event_per_change_of_its_message() {
        let drift = Drift::default();
        let mut f = facts(&drift);
        f.window = Some(closed_window());
        let window = closed_window();
        let first = window_closed(&f, &window);
        assert_eq!(first.events.len(), 1);
        assert_eq!(first.events[0].event.reason, "SyncWindowClosed");
        assert_eq!(first.events[0].event.note.as_deref(), Some(message(&first)));
        let shown = message(&first).to_string();
        f.window_reported = Some(&shown);
        assert!(window_closed(&f, &window).events.is_empty(), "same message");
        f.commit = "abcdef0123456789";
        assert_eq!(window_closed(&f, &window).events.len(), 1, "a new commit");
    }

    #[test]
    fn a_window_without_an_opening_requeues_after_the_interval() {
        let drift = Drift::default();
        let f = facts(&drift);
        let window = ClosedWindow {
            message: "sync window closed by deny window `* * * * *` (1m, UTC); \
                      no opening found before 2026-12-05T04:40:00+00:00"
                .into(),
            next_opening: None,
        };
        assert_eq!(window_closed(&f, &window).requeue, Requeue::Interval);
    }

    #[test]
    fn a_closed_window_reports_drift_but_does_not_heal_it() {
        let drift = Drift::default();
        let mut f = facts(&drift);
        f.same_as_applied = true;
        f.self_heal = true;
        f.window = Some(closed_window());
        let Decision::WindowClosed(window) = decide(&f) else {
            panic!("{:?}", decide(&f));
        };
        let verdict = window_closed(&f, &window);
        assert_eq!(ready_reason(&verdict), Some(Reason::SyncWindowClosed));
        assert!(
            message(&verdict).starts_with("drift is not corrected: sync window closed"),
            "{}",
            message(&verdict)
        );
        assert!(message(&verdict).contains("next opening 2026-12-07T08:00:00+01:00"));
        assert_eq!(
            verdict.observation.drift,
            Some(Some(drift.summary(OBJECTS_SHOWN)))
        );
        let reasons: Vec<&str> = verdict
            .events
            .iter()
            .map(|e| e.event.reason.as_str())
            .collect();
        assert_eq!(reasons, vec!["DriftDetected", "SyncWindowClosed"]);
        // selfHeal off: the window changes nothing, drift is only reported.
        f.self_heal = false;
        assert_eq!(decide(&f), Decision::ReportDrift);
    }

    #[test]
    fn windlass_reconcile_respects_a_closed_window_unless_told_to_ignore_it() {
        let drift = Drift::default();
        let mut f = facts(&drift);
        f.automated = false;
        f.window = Some(closed_window());
        assert_eq!(decide(&f), Decision::OutOfSync, "not asked, not automated");
        f.asked = true;
        assert_eq!(decide(&f), Decision::WindowClosed(closed_window()));
        f.ignore_windows = true;
        assert_eq!(decide(&f), Decision::Sync(Operation::Sync));
        f.same_as_applied = true;
        assert_eq!(decide(&f), Decision::Sync(Operation::SelfHeal));
        // The override belongs to a request: without one it means nothing.
        f.asked = false;
        f.automated = true;
        f.self_heal = true;
        assert_eq!(decide(&f), Decision::WindowClosed(closed_window()));
    }

    #[test]
    fn nothing_to_apply_stays_ready_whatever_the_window() {
        let drift = Drift::default();
        let mut f = facts(&drift);
        f.has_changes = false;
        f.window = Some(closed_window());
        assert_eq!(decide(&f), Decision::InSync);
        f.asked = true;
        assert_eq!(decide(&f), Decision::InSync);
        let verdict = in_sync(&f, None);
        assert!(matches!(
            verdict.observation.state,
            Some(State::Ready { .. })
        ));
        assert_eq!(verdict.requeue, Requeue::Interval);
    }

    #[test]
    fn an_invalid_spec_is_a_stalled_failure() {
        let verdict = failed(Failure::new(
            Reason::InvalidSpec,
            "spec.sync.windows[0].timeZone `Mars/Olympus`: not a known IANA time zone",
        ));
        assert_eq!(ready_reason(&verdict), Some(Reason::InvalidSpec));
        assert!(matches!(
            verdict.observation.state,
            Some(State::NotReady { stalled: true, .. })
        ));
        let other = failed(Failure::new(Reason::GitFailed, "git: unreachable"));
        assert!(matches!(
            other.observation.state,
            Some(State::NotReady { stalled: false, .. })
        ));
    }

    fn streak(heals: &[&[&str]], since_last: u64) -> HealStreak {
        HealStreak {
            reverted: heals
                .iter()
                .map(|h| h.iter().map(|m| m.to_string()).collect())
                .collect(),
            since_last: Some(std::time::Duration::from_secs(since_last)),
        }
    }

    #[test]
    fn self_heals_in_a_row_back_off_from_two_seconds_to_five_minutes() {
        use std::time::Duration;
        assert_eq!(HealStreak::default().wait(), Duration::ZERO);
        assert_eq!(streak(&[&["kubectl"]], 0).wait(), Duration::from_secs(2));
        assert_eq!(streak(&[&["a"], &["a"]], 1).wait(), Duration::from_secs(3));
        assert_eq!(
            streak(&[&["a"], &["b"], &["c"]], 0).wait(),
            Duration::from_secs(8)
        );
        let long = vec![&["a"][..]; 20];
        assert_eq!(streak(&long, 0).wait(), Duration::from_secs(300));
        assert_eq!(streak(&long, 301).wait(), Duration::ZERO);
    }

    #[test]
    fn the_same_manager_reverting_every_recent_heal_is_a_fight() {
        let three = streak(&[&["hpa", "kubectl"], &["hpa"], &["hpa"]], 60);
        assert_eq!(three.fighting(&["hpa".into()]), Some("hpa".into()));
        assert_eq!(three.fighting(&["kubectl".into()]), None, "not every time");
        assert_eq!(
            streak(&[&["hpa"], &["hpa"]], 60).fighting(&["hpa".into()]),
            None
        );
    }

    #[test]
    fn self_heal_waits_out_its_backoff_and_stops_a_fight_unless_asked() {
        let drift = Drift {
            objects: vec![crate::sync::drift::DriftedObject {
                id: crate::render::ObjectId {
                    group: "apps".into(),
                    version: "v1".into(),
                    kind: "Deployment".into(),
                    namespace: Some("a".into()),
                    name: "web".into(),
                },
                missing: false,
                fields: vec![".spec.replicas".into()],
                managers: vec!["hpa".into()],
            }],
        };
        let mut f = facts(&drift);
        f.same_as_applied = true;
        f.self_heal = true;
        f.heals = streak(&[&["hpa"]], 0);
        assert!(matches!(decide(&f), Decision::HealLater(_)));
        assert_eq!(
            heal_later(&f, std::time::Duration::from_secs(2)).requeue,
            Requeue::After(std::time::Duration::from_secs(2))
        );
        f.heals = streak(&[&["hpa"], &["hpa"], &["hpa"]], 600);
        assert_eq!(
            decide(&f),
            Decision::Fighting {
                manager: "hpa".into()
            }
        );
        let verdict = fighting(&f, "hpa");
        assert_eq!(ready_reason(&verdict), Some(Reason::SelfHealStopped));
        assert!(
            matches!(&verdict.observation.state, Some(State::NotReady { stalled: true, message, .. }) if message.contains("hpa"))
        );
        f.asked = true;
        assert_eq!(
            decide(&f),
            Decision::Sync(Operation::SelfHeal),
            "windlass reconcile heals anyway"
        );
    }
}
