//! What the revision history decides, as pure functions over the record
//! headers that one LIST returns ([`History`]). No request is made here: the
//! engine lists once per sync, asks these questions, and keeps the headers
//! current as it writes ([`History::record`], [`History::forget`]).
//!
//! ```text
//!   LIST (labels + annotations, no payloads) ──► History { headers, oldest first }
//!        ├─ next_number            1 + the highest number
//!        ├─ quarantined(desired)   the newest quarantined failure, if it is this desired state
//!        ├─ inventory_sources      the newest finished record + every newer pending one
//!        ├─ previous_successful    what `rollback` returns to by default
//!        ├─ live                   the deployed revision (status shows it)
//!        ├─ replaced_by(n)         deployed records that revision n replaces
//!        ├─ interrupted_before(n)  pending records whose sync died
//!        └─ beyond_limit(limit)    the oldest records to delete (never current,
//!                                  last successful or pending)
//! ```

use super::record::RevisionStatus;

/// What a record's Secret says in its labels and annotations, without its
/// payload.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RevisionHeader {
    pub number: u64,
    pub status: Option<RevisionStatus>,
    /// Failed, and replaced by an automatic rollback: not synced again.
    pub quarantined: bool,
    /// The commit it came from (git sources).
    pub commit: Option<String>,
    pub values_digest: Option<String>,
    pub manifest_digest: Option<String>,
}

impl RevisionHeader {
    pub fn succeeded(&self) -> bool {
        self.status.is_some_and(RevisionStatus::succeeded)
    }
}

/// What a sync wants to apply, as far as quarantine is concerned.
#[derive(Debug, Clone, Copy)]
pub struct DesiredState<'a> {
    /// The commit, for git sources.
    pub commit: Option<&'a str>,
    pub values_digest: &'a str,
    pub manifest_digest: &'a str,
}

/// A failed revision that an automatic rollback replaced, which a sync of
/// the same desired state must not apply again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quarantine {
    pub revision: u64,
    pub commit: Option<String>,
}

/// An application's record headers, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct History {
    headers: Vec<RevisionHeader>,
}

impl History {
    pub fn new(mut headers: Vec<RevisionHeader>) -> History {
        headers.sort_by_key(|h| h.number);
        History { headers }
    }

    pub fn headers(&self) -> &[RevisionHeader] {
        &self.headers
    }

    pub fn is_empty(&self) -> bool {
        self.headers.is_empty()
    }

    /// The newest revision number, if any.
    pub fn latest(&self) -> Option<u64> {
        self.headers.last().map(|h| h.number)
    }

    /// Numbers are never reused: one more than the highest that exists.
    pub fn next_number(&self) -> u64 {
        self.latest().map_or(1, |n| n + 1)
    }

    /// Adds or replaces a header after the engine wrote its record.
    pub fn record(&mut self, header: RevisionHeader) {
        match self.headers.iter_mut().find(|h| h.number == header.number) {
            Some(known) => *known = header,
            None => {
                self.headers.push(header);
                self.headers.sort_by_key(|h| h.number);
            }
        }
    }

    /// Drops a header after the engine deleted its record.
    pub fn forget(&mut self, number: u64) {
        self.headers.retain(|h| h.number != number);
    }

    /// The newest quarantined failure decides: it blocks exactly the desired
    /// state it failed with (same commit, or same manifests for a directory;
    /// same values). An older quarantine never blocks a newer source.
    pub fn quarantined(&self, desired: DesiredState<'_>) -> Option<Quarantine> {
        let newest = self
            .headers
            .iter()
            .rev()
            .find(|h| h.quarantined && h.status == Some(RevisionStatus::Failed))?;
        let same_source = match (&newest.commit, desired.commit) {
            (Some(failed), Some(wanted)) => failed == wanted,
            _ => newest.manifest_digest.as_deref() == Some(desired.manifest_digest),
        };
        let same_values = newest.values_digest.as_deref() == Some(desired.values_digest);
        (same_source && same_values).then(|| Quarantine {
            revision: newest.number,
            commit: newest.commit.clone(),
        })
    }

    /// The records whose inventories a new sync treats as "previous", newest
    /// first: the newest finished one plus every newer pending one. A sync
    /// that died after its pending record is thereby never forgotten.
    pub fn inventory_sources(&self) -> Vec<u64> {
        let mut numbers = Vec::new();
        for header in self.headers.iter().rev() {
            numbers.push(header.number);
            if header.status != Some(RevisionStatus::Pending) {
                break;
            }
        }
        numbers
    }

    /// The newest successful revision older than the current (newest) one:
    /// where `rollback` goes by default.
    pub fn previous_successful(&self) -> Result<u64, NoRollbackTarget> {
        let current = self.latest().ok_or(NoRollbackTarget::NoHistory)?;
        self.headers
            .iter()
            .rev()
            .filter(|h| h.number < current)
            .find(|h| h.succeeded())
            .map(|h| h.number)
            .ok_or(NoRollbackTarget::NoSuccessfulRevision)
    }

    /// The deployed revision: what is live.
    pub fn live(&self) -> Option<u64> {
        self.headers
            .iter()
            .rev()
            .find(|h| h.status == Some(RevisionStatus::Deployed))
            .map(|h| h.number)
    }

    /// Deployed records older than `current`, which its deployment replaces.
    pub fn replaced_by(&self, current: u64) -> Vec<u64> {
        self.numbers_before(current, RevisionStatus::Deployed)
    }

    /// Whether a record is pending: a sync is running now, or stopped
    /// before it finished (killed, lost its node) and left it so.
    pub fn has_pending(&self) -> bool {
        self.headers
            .iter()
            .any(|h| h.status == Some(RevisionStatus::Pending))
    }

    /// Pending records older than `current`: their sync stopped before it
    /// finished, and `current` took over their objects.
    pub fn interrupted_before(&self, current: u64) -> Vec<u64> {
        self.numbers_before(current, RevisionStatus::Pending)
    }

    fn numbers_before(&self, current: u64, status: RevisionStatus) -> Vec<u64> {
        self.headers
            .iter()
            .filter(|h| h.number < current && h.status == Some(status))
            .map(|h| h.number)
            .collect()
    }

    /// The oldest records beyond `limit` (at least 1), never the current
    /// revision, the last successful one, or a pending one.
    pub fn beyond_limit(&self, limit: u32) -> Vec<u64> {
        let limit = limit.max(1) as usize;
        let Some(mut excess) = self.headers.len().checked_sub(limit) else {
            return Vec::new();
        };
        let current = self.latest();
        let last_successful = self
            .headers
            .iter()
            .rev()
            .find(|h| h.succeeded())
            .map(|h| h.number);
        let mut doomed = Vec::new();
        for header in &self.headers {
            if excess == 0 {
                break;
            }
            let protected = Some(header.number) == current
                || Some(header.number) == last_successful
                || header.status == Some(RevisionStatus::Pending);
            if !protected {
                doomed.push(header.number);
                excess -= 1;
            }
        }
        doomed
    }
}

/// Why there is no revision to roll back to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NoRollbackTarget {
    #[error("it has no history")]
    NoHistory,
    #[error("no successful revision before the current one")]
    NoSuccessfulRevision,
}

/// What a replaced deployed revision becomes: `rolled-back` when a rollback
/// replaced it, `superseded` otherwise.
pub fn replaced_status(by_rollback: bool) -> RevisionStatus {
    if by_rollback {
        RevisionStatus::RolledBack
    } else {
        RevisionStatus::Superseded
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use RevisionStatus::*;

    fn header(number: u64, status: RevisionStatus) -> RevisionHeader {
        RevisionHeader {
            number,
            status: Some(status),
            commit: Some(format!("c{number}")),
            values_digest: Some("v".into()),
            manifest_digest: Some(format!("m{number}")),
            ..RevisionHeader::default()
        }
    }

    fn history(statuses: &[RevisionStatus]) -> History {
        History::new(
            statuses
                .iter()
                .enumerate()
                .map(|(i, s)| header(i as u64 + 1, *s))
                .collect(),
        )
    }

    fn desired<'a>(commit: &'a str, values: &'a str) -> DesiredState<'a> {
        DesiredState {
            commit: Some(commit),
            values_digest: values,
            manifest_digest: "other",
        }
    }

    #[test]
    fn numbers_continue_after_the_highest_and_start_at_one() {
        assert_eq!(History::default().next_number(), 1);
        let mut h = history(&[Superseded, Deployed]);
        h.forget(1);
        assert_eq!(h.next_number(), 3);
    }

    #[test]
    fn a_quarantined_failure_blocks_only_its_own_commit_and_values() {
        let mut failed = header(3, Failed);
        failed.quarantined = true;
        let mut h = history(&[Superseded, RolledBack]);
        h.record(failed);
        h.record(header(4, Deployed));
        let blocked = h.quarantined(desired("c3", "v")).unwrap();
        assert_eq!(blocked.revision, 3);
        assert_eq!(blocked.commit.as_deref(), Some("c3"));
        assert_eq!(h.quarantined(desired("c5", "v")), None);
        assert_eq!(h.quarantined(desired("c3", "other values")), None);
    }

    #[test]
    fn only_the_newest_quarantine_counts() {
        let mut old = header(2, Failed);
        old.quarantined = true;
        let mut new = header(4, Failed);
        new.quarantined = true;
        let h = History::new(vec![header(1, Superseded), old, header(3, RolledBack), new]);
        assert_eq!(h.quarantined(desired("c2", "v")), None);
        assert!(h.quarantined(desired("c4", "v")).is_some());
    }

    #[test]
    fn a_failure_without_quarantine_blocks_nothing() {
        let h = history(&[Deployed, Failed]);
        assert_eq!(h.quarantined(desired("c2", "v")), None);
    }

    #[test]
    fn directory_sources_are_compared_by_manifest_digest() {
        let mut failed = header(1, Failed);
        failed.quarantined = true;
        failed.commit = None;
        let h = History::new(vec![failed]);
        let same = DesiredState {
            commit: None,
            values_digest: "v",
            manifest_digest: "m1",
        };
        assert!(h.quarantined(same).is_some());
        let changed = DesiredState {
            manifest_digest: "m2",
            ..same
        };
        assert_eq!(h.quarantined(changed), None);
    }

    #[test]
    fn the_previous_inventory_is_the_newest_finished_record_and_newer_pending_ones() {
        assert_eq!(
            history(&[Superseded, Deployed, Pending, Pending]).inventory_sources(),
            vec![4, 3, 2]
        );
        assert_eq!(history(&[Deployed]).inventory_sources(), vec![1]);
        assert_eq!(
            history(&[Pending]).inventory_sources(),
            vec![1],
            "all pending: every record"
        );
        assert!(History::default().inventory_sources().is_empty());
    }

    #[test]
    fn rollback_goes_to_the_newest_success_before_the_current_revision() {
        assert_eq!(
            history(&[Superseded, Failed, Deployed]).previous_successful(),
            Ok(1)
        );
        assert_eq!(
            history(&[RolledBack, Superseded, Failed]).previous_successful(),
            Ok(2)
        );
        assert_eq!(
            history(&[Failed, Deployed]).previous_successful(),
            Err(NoRollbackTarget::NoSuccessfulRevision)
        );
        assert_eq!(
            History::default().previous_successful(),
            Err(NoRollbackTarget::NoHistory)
        );
    }

    #[test]
    fn live_is_the_newest_deployed_revision() {
        assert_eq!(history(&[Superseded, Deployed, Failed]).live(), Some(2));
        assert_eq!(history(&[Failed]).live(), None);
    }

    #[test]
    fn a_pending_record_anywhere_is_pending() {
        assert!(history(&[Deployed, Pending]).has_pending());
        assert!(history(&[Pending, Failed]).has_pending());
        assert!(!history(&[Superseded, Failed, Deployed]).has_pending());
        assert!(!History::default().has_pending());
    }

    #[test]
    fn a_deployment_replaces_older_deployed_and_closes_older_pending_records() {
        let h = history(&[Deployed, Pending, Deployed, Pending]);
        assert_eq!(h.replaced_by(4), vec![1, 3]);
        assert_eq!(h.interrupted_before(4), vec![2]);
        assert_eq!(replaced_status(true), RolledBack);
        assert_eq!(replaced_status(false), Superseded);
    }

    #[test]
    fn the_limit_keeps_current_last_successful_and_pending_records() {
        let h = history(&[Superseded, Superseded, Failed, Failed]);
        assert_eq!(h.beyond_limit(10), Vec::<u64>::new());
        // Keep 1: 4 is current, 2 the last successful; 1 and 3 go.
        assert_eq!(h.beyond_limit(1), vec![1, 3]);
        let h = history(&[Pending, Superseded, Deployed]);
        assert_eq!(h.beyond_limit(1), vec![2], "the pending record stays");
        let h = history(&[Superseded, Superseded, Superseded, Deployed]);
        assert_eq!(h.beyond_limit(2), vec![1, 2]);
        assert_eq!(h.beyond_limit(0), vec![1, 2, 3], "a limit below 1 is 1");
    }

    #[test]
    fn recording_a_header_replaces_the_same_number() {
        let mut h = history(&[Deployed]);
        h.record(header(2, Pending));
        h.record(header(2, Deployed));
        assert_eq!(h.headers().len(), 2);
        assert_eq!(h.live(), Some(2));
    }
}
