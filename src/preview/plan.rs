//! What one pass of a Preview does: listed refs + the generated Applications
//! that exist → which previews to keep (create or move), which to delete,
//! which wait, which expired. Pure: no cluster, no git.
//!
//! ```text
//!   listed refs (matching)  ─┐                     ┌─► live: create | move to a new commit | unchanged
//!   existing previews        ├──► plan(now, ttl, ──┼─► delete: ref gone | expired (ttl)
//!   expired (status)        ─┘        max)         ├─► waiting: over maxPreviews
//!                                                  └─► expired: stays down until its ref moves
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;

use super::naming::PreviewRef;
use crate::spec::ExpiredPreview;

/// A generated Application that exists, as its labels and annotations say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExistingPreview {
    /// The Application's name.
    pub application: String,
    pub ref_name: String,
    pub commit: String,
    /// When its head last moved; `None` when unreadable (taken as now).
    pub head_since: Option<Timestamp>,
}

/// A preview that stays or comes up in this pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LivePreview {
    pub preview: PreviewRef,
    /// When its head last moved: kept while the commit is the same, `now`
    /// for a new preview or a moved head.
    pub head_since: Timestamp,
}

/// Why a preview is torn down.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Teardown {
    RefGone { ref_name: String },
    Expired { ref_name: String, idle: Duration },
}

impl std::fmt::Display for Teardown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Teardown::RefGone { ref_name } => write!(f, "{ref_name} is gone"),
            Teardown::Expired { ref_name, idle } => {
                write!(f, "{ref_name} has not moved for {}s (ttl)", idle.as_secs())
            }
        }
    }
}

/// The outcome of one pass.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PreviewPlan {
    /// Previews that should exist, in ref order.
    pub live: Vec<LivePreview>,
    /// Generated Applications to delete: (name, why).
    pub delete: Vec<(String, Teardown)>,
    /// Matching refs left out by `maxPreviews`.
    pub waiting: Vec<String>,
    /// Matching refs whose names collide with an earlier ref's: (ref, other).
    pub collisions: Vec<(String, String)>,
    /// The expired list to keep in status.
    pub expired: Vec<ExpiredPreview>,
}

/// Facts for one pass.
pub struct Facts<'a> {
    /// Refs the pattern takes, with their commits.
    pub listed: &'a [PreviewRef],
    pub existing: &'a [ExistingPreview],
    pub expired: &'a [ExpiredPreview],
    pub now: Timestamp,
    pub ttl: Option<Duration>,
    pub max_previews: usize,
    /// The generated Application's name for a ref.
    pub name: &'a dyn Fn(&PreviewRef) -> String,
}

/// Decides one pass. Existing previews keep their places under
/// `maxPreviews`; new ones are admitted by number (then ref name).
pub fn plan(facts: &Facts<'_>) -> PreviewPlan {
    let mut result = PreviewPlan::default();
    let mut listed: Vec<&PreviewRef> = facts.listed.iter().collect();
    listed.sort_by(|a, b| {
        (a.number.is_none(), a.number, &a.ref_name).cmp(&(
            b.number.is_none(),
            b.number,
            &b.ref_name,
        ))
    });
    let existing: BTreeMap<&str, &ExistingPreview> = facts
        .existing
        .iter()
        .map(|e| (e.ref_name.as_str(), e))
        .collect();

    // Names: the first ref (in order) to claim a name has it.
    let mut claimed: BTreeMap<String, &str> = BTreeMap::new();
    let mut candidates: Vec<&PreviewRef> = Vec::new();
    for preview in listed {
        let name = (facts.name)(preview);
        match claimed.get(&name) {
            Some(other) => result
                .collisions
                .push((preview.ref_name.clone(), other.to_string())),
            None => {
                claimed.insert(name, &preview.ref_name);
                candidates.push(preview);
            }
        }
    }

    let mut keep: Vec<LivePreview> = Vec::new();
    let mut new: Vec<LivePreview> = Vec::new();
    for preview in candidates {
        let expired_at = facts
            .expired
            .iter()
            .find(|e| e.reference == preview.ref_name);
        match (existing.get(preview.ref_name.as_str()), expired_at) {
            (Some(current), _) if current.commit == preview.commit => {
                let since = current.head_since.unwrap_or(facts.now);
                let idle = facts.now.duration_since(since).unsigned_abs();
                match facts.ttl {
                    Some(ttl) if idle >= ttl => {
                        result.delete.push((
                            current.application.clone(),
                            Teardown::Expired {
                                ref_name: preview.ref_name.clone(),
                                idle,
                            },
                        ));
                        result.expired.push(ExpiredPreview {
                            reference: preview.ref_name.clone(),
                            commit: preview.commit.clone(),
                        });
                    }
                    _ => keep.push(LivePreview {
                        preview: preview.clone(),
                        head_since: since,
                    }),
                }
            }
            (Some(_), _) => keep.push(LivePreview {
                preview: preview.clone(),
                head_since: facts.now,
            }),
            (None, Some(expired)) if expired.commit == preview.commit => {
                result.expired.push(expired.clone());
            }
            (None, _) => new.push(LivePreview {
                preview: preview.clone(),
                head_since: facts.now,
            }),
        }
    }
    let room = facts.max_previews.saturating_sub(keep.len());
    for (i, preview) in new.into_iter().enumerate() {
        if i < room {
            keep.push(preview);
        } else {
            result.waiting.push(preview.preview.ref_name);
        }
    }
    keep.sort_by(|a, b| a.preview.ref_name.cmp(&b.preview.ref_name));
    result.live = keep;

    let live_refs: BTreeSet<&str> = facts.listed.iter().map(|r| r.ref_name.as_str()).collect();
    for current in facts.existing {
        if !live_refs.contains(current.ref_name.as_str()) {
            result.delete.push((
                current.application.clone(),
                Teardown::RefGone {
                    ref_name: current.ref_name.clone(),
                },
            ));
        }
    }
    result
}

/// The preview namespaces to delete: labelled ours, and neither wanted by a
/// live preview nor still the destination of an Application that exists
/// (one being deleted is still pruning into it).
pub fn namespaces_to_delete(
    labelled: &[String],
    wanted: &BTreeSet<String>,
    in_use: &BTreeSet<String>,
) -> Vec<String> {
    labelled
        .iter()
        .filter(|n| !wanted.contains(*n) && !in_use.contains(*n))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::preview::naming::RefPattern;

    fn pr(number: u64, commit: &str) -> PreviewRef {
        PreviewRef::new(
            &RefPattern::parse("refs/pull/*/head").unwrap(),
            &format!("refs/pull/{number}/head"),
            commit,
        )
        .unwrap()
    }

    fn existing(number: u64, commit: &str, since: Timestamp) -> ExistingPreview {
        ExistingPreview {
            application: format!("web-pr-{number}"),
            ref_name: format!("refs/pull/{number}/head"),
            commit: commit.into(),
            head_since: Some(since),
        }
    }

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + seconds).unwrap()
    }

    fn name(r: &PreviewRef) -> String {
        r.default_name("web")
    }

    fn run(
        listed: &[PreviewRef],
        current: &[ExistingPreview],
        expired: &[ExpiredPreview],
        now: Timestamp,
        ttl: Option<Duration>,
        max: usize,
    ) -> PreviewPlan {
        plan(&Facts {
            listed,
            existing: current,
            expired,
            now,
            ttl,
            max_previews: max,
            name: &name,
        })
    }

    fn live(plan: &PreviewPlan) -> Vec<(String, String, Timestamp)> {
        plan.live
            .iter()
            .map(|l| {
                (
                    l.preview.ref_name.clone(),
                    l.preview.commit.clone(),
                    l.head_since,
                )
            })
            .collect()
    }

    #[test]
    fn a_new_ref_comes_up_and_a_moved_one_restarts_its_clock() {
        let result = run(
            &[pr(7, "a"), pr(8, "b2")],
            &[existing(8, "b1", at(0))],
            &[],
            at(100),
            None,
            10,
        );
        assert_eq!(
            live(&result),
            [
                ("refs/pull/7/head".into(), "a".into(), at(100)),
                ("refs/pull/8/head".into(), "b2".into(), at(100)),
            ]
        );
        assert!(result.delete.is_empty());
    }

    #[test]
    fn an_unmoved_ref_keeps_its_clock() {
        let result = run(
            &[pr(7, "a")],
            &[existing(7, "a", at(5))],
            &[],
            at(100),
            None,
            10,
        );
        assert_eq!(
            live(&result),
            [("refs/pull/7/head".into(), "a".into(), at(5))]
        );
    }

    #[test]
    fn a_gone_ref_is_deleted() {
        let result = run(
            &[pr(7, "a")],
            &[existing(9, "c", at(0))],
            &[],
            at(100),
            None,
            10,
        );
        assert_eq!(
            result.delete,
            [(
                "web-pr-9".to_string(),
                Teardown::RefGone {
                    ref_name: "refs/pull/9/head".into()
                }
            )]
        );
        assert_eq!(result.delete[0].1.to_string(), "refs/pull/9/head is gone");
    }

    #[test]
    fn an_idle_preview_expires_and_stays_down_until_its_ref_moves() {
        let ttl = Some(Duration::from_secs(3600));
        let result = run(
            &[pr(7, "a")],
            &[existing(7, "a", at(0))],
            &[],
            at(3600),
            ttl,
            10,
        );
        assert!(result.live.is_empty());
        assert!(matches!(result.delete[0].1, Teardown::Expired { .. }));
        assert_eq!(result.expired[0].commit, "a");

        // Next pass: the Application is gone, the ref has not moved.
        let again = run(&[pr(7, "a")], &[], &result.expired, at(3700), ttl, 10);
        assert!(again.live.is_empty() && again.delete.is_empty());
        assert_eq!(again.expired, result.expired);

        // A new commit brings it back; the expired entry is dropped.
        let moved = run(&[pr(7, "b")], &[], &result.expired, at(3800), ttl, 10);
        assert_eq!(
            live(&moved),
            [("refs/pull/7/head".into(), "b".into(), at(3800))]
        );
        assert!(moved.expired.is_empty());

        // A closed (deleted) ref forgets its expiry.
        let closed = run(&[], &[], &result.expired, at(3800), ttl, 10);
        assert!(closed.expired.is_empty());
    }

    #[test]
    fn still_young_previews_do_not_expire() {
        let ttl = Some(Duration::from_secs(3600));
        let result = run(
            &[pr(7, "a")],
            &[existing(7, "a", at(0))],
            &[],
            at(3599),
            ttl,
            10,
        );
        assert_eq!(result.live.len(), 1);
        assert!(result.delete.is_empty());
    }

    #[test]
    fn max_previews_keeps_existing_ones_and_admits_new_ones_by_number() {
        let result = run(
            &[pr(12, "x"), pr(3, "y"), pr(9, "z"), pr(10, "w")],
            &[existing(12, "x", at(0))],
            &[],
            at(10),
            None,
            3,
        );
        let refs: Vec<&str> = result
            .live
            .iter()
            .map(|l| l.preview.ref_name.as_str())
            .collect();
        assert_eq!(
            refs,
            ["refs/pull/12/head", "refs/pull/3/head", "refs/pull/9/head"]
        );
        assert_eq!(result.waiting, ["refs/pull/10/head"]);
    }

    #[test]
    fn refs_whose_names_collide_are_reported_not_created() {
        let pattern = RefPattern::parse("refs/heads/feature/*").unwrap();
        let a = PreviewRef::new(&pattern, "refs/heads/feature/Login", "a").unwrap();
        let b = PreviewRef::new(&pattern, "refs/heads/feature/login", "b").unwrap();
        let result = run(&[b, a], &[], &[], at(0), None, 10);
        assert_eq!(result.live.len(), 1);
        assert_eq!(
            result.collisions,
            [(
                "refs/heads/feature/login".to_string(),
                "refs/heads/feature/Login".to_string()
            )]
        );
    }

    #[test]
    fn namespaces_go_only_when_nothing_uses_them() {
        let labelled = ["web-pr-7", "web-pr-8", "web-pr-9"].map(String::from);
        let wanted = BTreeSet::from(["web-pr-7".to_string()]);
        let in_use = BTreeSet::from(["web-pr-8".to_string()]);
        assert_eq!(
            namespaces_to_delete(&labelled, &wanted, &in_use),
            ["web-pr-9"]
        );
    }
}
