//! Which snapshots to keep: a pure function of the snapshots (time, kind, pinned), the
//! retention of each kind and the current time. Every decision carries its reasons.
//!
//! Rules, in order: a pinned snapshot is kept; the newest snapshot of the workspace is
//! kept; a snapshot whose kind has no retention policy is kept (nothing is deleted that no
//! policy speaks about); otherwise it is kept if any of its kind's rules keeps it —
//! `keep-within` (taken less than that long ago), `keep-last` (among the N newest of its
//! kind), `keep-daily`/`keep-weekly`/`keep-monthly` (the newest snapshot of each of the N
//! most recent days/ISO weeks/months that have one, in the policy's time zone: restic's
//! grandfather-father-son scheme) — and deleted if none does.

use chrono::{DateTime, Datelike, Utc};
use serde::Serialize;

use crate::repo::manifest::SnapshotKind;

/// Maps a local time to its calendar bucket (a day, an ISO week, a month).
type CalendarBucket = fn(DateTime<chrono_tz::Tz>) -> (i32, u32);

/// How long one kind of snapshot is kept. All unset: keep everything of that kind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Retention {
    pub keep_within: Option<chrono::Duration>,
    pub keep_last: Option<u32>,
    pub keep_daily: Option<u32>,
    pub keep_weekly: Option<u32>,
    pub keep_monthly: Option<u32>,
}

impl Retention {
    fn is_empty(&self) -> bool {
        *self == Retention::default()
    }
}

/// A snapshot as retention sees it.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub id: String,
    pub kind: SnapshotKind,
    pub taken_at: DateTime<Utc>,
    pub pinned: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    pub id: String,
    pub keep: bool,
    /// Why it is kept, or why nothing keeps it.
    pub reasons: Vec<String>,
}

/// Decides, for every candidate, keep or delete. `policy` gives each kind's retention and
/// time zone (for the calendar rules); `None` means no policy covers that kind.
pub fn select(
    candidates: &[Candidate],
    policy: impl Fn(SnapshotKind) -> Option<(Retention, chrono_tz::Tz)>,
    now: DateTime<Utc>,
) -> Vec<Decision> {
    let newest = candidates.iter().max_by_key(|c| (c.taken_at, c.id.clone())).map(|c| c.id.clone());
    let mut decisions: Vec<Decision> = Vec::with_capacity(candidates.len());
    for c in candidates {
        let mut reasons = Vec::new();
        if c.pinned {
            reasons.push("pinned".to_string());
        }
        if newest.as_deref() == Some(c.id.as_str()) {
            reasons.push("newest snapshot of the workspace".to_string());
        }
        match policy(c.kind) {
            None => reasons.push(format!("no retention policy for {} snapshots", c.kind)),
            Some((r, _)) if r.is_empty() => reasons.push(format!("the {} policy keeps everything", c.kind)),
            Some((r, tz)) => {
                if let Some(within) = r.keep_within
                    && now.signed_duration_since(c.taken_at) < within
                {
                    let left = within - now.signed_duration_since(c.taken_at);
                    reasons.push(format!(
                        "within the {} policy's keep-within of {}: {} left",
                        c.kind,
                        human(within),
                        human(left)
                    ));
                }
                let mut same_kind: Vec<&Candidate> = candidates.iter().filter(|o| o.kind == c.kind).collect();
                same_kind.sort_by(|a, b| (b.taken_at, &b.id).cmp(&(a.taken_at, &a.id)));
                if let Some(n) = r.keep_last
                    && same_kind.iter().take(n as usize).any(|o| o.id == c.id)
                {
                    reasons.push(format!("among the last {n}"));
                }
                let calendar: [(Option<u32>, &str, CalendarBucket); 3] = [
                    (r.keep_daily, "daily", |t| (t.year(), t.ordinal())),
                    (r.keep_weekly, "weekly", |t| (t.iso_week().year(), t.iso_week().week())),
                    (r.keep_monthly, "monthly", |t| (t.year(), t.month())),
                ];
                for (count, name, bucket) in calendar {
                    let Some(n) = count else { continue };
                    // Newest first: the first snapshot seen in a bucket is the one it keeps.
                    let mut buckets = Vec::new();
                    for o in &same_kind {
                        let b = bucket(o.taken_at.with_timezone(&tz));
                        if buckets.last() != Some(&b) {
                            if buckets.len() == n as usize {
                                break;
                            }
                            buckets.push(b);
                            if o.id == c.id {
                                reasons.push(format!("keep-{name} {n}"));
                            }
                        }
                    }
                }
            }
        }
        let keep = !reasons.is_empty();
        if !keep {
            reasons.push(format!("no {} retention rule keeps it", c.kind));
        }
        decisions.push(Decision { id: c.id.clone(), keep, reasons });
    }
    decisions
}

/// A retention span as a person says it: whole days (hours, minutes below a day).
fn human(d: chrono::Duration) -> String {
    let plural = |n: i64, unit: &str| format!("{n} {unit}{}", if n == 1 { "" } else { "s" });
    match (d.num_days(), d.num_hours(), d.num_minutes()) {
        (days, _, _) if days >= 1 => plural(days, "day"),
        (_, hours, _) if hours >= 1 => plural(hours, "hour"),
        (_, _, minutes) => plural(minutes.max(0), "minute"),
    }
}

/// Drill reports kept whatever their age: the newest of a workspace.
pub const DRILL_REPORTS_ALWAYS_KEPT: usize = 10;

/// How long drill reports are kept when no policy has a `keep-within`.
pub const DRILL_REPORTS_DEFAULT_DAYS: i64 = 90;

/// The drill reports retention deletes: written before `as_of - horizon`, except the
/// newest [`DRILL_REPORTS_ALWAYS_KEPT`].
pub fn drill_reports_to_delete<K: Clone + Ord>(
    reports: &[(K, DateTime<Utc>)],
    horizon: chrono::Duration,
    as_of: DateTime<Utc>,
) -> Vec<K> {
    let mut newest_first: Vec<&(K, DateTime<Utc>)> = reports.iter().collect();
    newest_first.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| b.0.cmp(&a.0)));
    newest_first
        .into_iter()
        .skip(DRILL_REPORTS_ALWAYS_KEPT)
        .filter(|(_, written)| *written < as_of - horizon)
        .map(|(path, _)| path.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    fn snap(id: &str, kind: SnapshotKind, t: &str) -> Candidate {
        Candidate { id: id.into(), kind, taken_at: at(t), pinned: false }
    }

    /// The shipped defaults: automatic kept 3 days, manual 90 days, pre-restore uncovered.
    fn defaults(kind: SnapshotKind) -> Option<(Retention, chrono_tz::Tz)> {
        let days = match kind {
            SnapshotKind::Automatic => 3,
            SnapshotKind::Manual => 90,
            SnapshotKind::PreRestore => return None,
        };
        Some((Retention { keep_within: Some(Duration::days(days)), ..Default::default() }, chrono_tz::UTC))
    }

    fn kept(decisions: &[Decision]) -> Vec<&str> {
        decisions.iter().filter(|d| d.keep).map(|d| d.id.as_str()).collect()
    }

    /// Issue 12.8: reasons a person reads ("62 days left", not "2months 29days 2h 52m").
    #[test]
    fn keep_within_says_the_policy_and_the_time_left() {
        let old = snap("a", SnapshotKind::Manual, "2026-01-01T10:00:00Z");
        let newer = snap("b", SnapshotKind::Manual, "2026-01-02T10:00:00Z");
        let decisions = select(&[old, newer], defaults, at("2026-01-28T12:00:00Z"));
        assert_eq!(decisions[0].reasons, ["within the manual policy's keep-within of 90 days: 62 days left"]);
        assert_eq!(human(chrono::Duration::hours(1)), "1 hour");
        assert_eq!(human(chrono::Duration::minutes(90)), "1 hour");
        assert_eq!(human(chrono::Duration::seconds(30)), "0 minutes");
    }

    #[test]
    fn automatic_three_days_manual_ninety() {
        let now = at("2026-11-23T12:00:00Z");
        let snaps = vec![
            snap("a1", SnapshotKind::Automatic, "2026-11-19T02:00:00Z"),
            snap("a2", SnapshotKind::Automatic, "2026-11-20T02:00:00Z"),
            snap("a3", SnapshotKind::Automatic, "2026-11-21T02:00:00Z"),
            snap("a4", SnapshotKind::Automatic, "2026-11-23T02:00:00Z"),
            snap("m1", SnapshotKind::Manual, "2026-08-01T00:00:00Z"),
            snap("m2", SnapshotKind::Manual, "2026-09-01T00:00:00Z"),
        ];
        let d = select(&snaps, defaults, now);
        assert_eq!(kept(&d), vec!["a3", "a4", "m2"]);
        let a1 = d.iter().find(|d| d.id == "a1").unwrap();
        assert_eq!(a1.reasons, vec!["no automatic retention rule keeps it"]);
        assert!(d.iter().find(|d| d.id == "a4").unwrap().reasons.contains(&"newest snapshot of the workspace".into()));
    }

    #[test]
    fn pins_and_the_newest_survive_everything() {
        let now = at("2030-01-01T00:00:00Z");
        let mut old = snap("old", SnapshotKind::Manual, "2026-01-01T00:00:00Z");
        old.pinned = true;
        let snaps = vec![
            old,
            snap("auto", SnapshotKind::Automatic, "2026-02-01T00:00:00Z"),
            snap("x", SnapshotKind::Manual, "2025-01-01T00:00:00Z"),
        ];
        let d = select(&snaps, defaults, now);
        assert_eq!(kept(&d), vec!["old", "auto"]);
        assert_eq!(d[0].reasons, vec!["pinned"]);
    }

    #[test]
    fn kinds_without_policy_are_never_deleted() {
        let snaps = vec![
            snap("p", SnapshotKind::PreRestore, "2020-01-01T00:00:00Z"),
            snap("n", SnapshotKind::Automatic, "2026-11-23T00:00:00Z"),
        ];
        let d = select(&snaps, defaults, at("2026-11-23T12:00:00Z"));
        assert_eq!(kept(&d), vec!["p", "n"]);
        assert!(d[0].reasons[0].contains("no retention policy"));
    }

    #[test]
    fn keep_last() {
        let r = Retention { keep_last: Some(2), ..Default::default() };
        let snaps: Vec<Candidate> =
            (1..=5).map(|i| snap(&format!("s{i}"), SnapshotKind::Manual, &format!("2026-01-0{i}T00:00:00Z"))).collect();
        let d = select(&snaps, |_| Some((r.clone(), chrono_tz::UTC)), at("2027-01-01T00:00:00Z"));
        assert_eq!(kept(&d), vec!["s4", "s5"]);
    }

    #[test]
    fn grandfather_father_son() {
        // Two snapshots a day for 70 days, the newest on 2026-03-11.
        let mut snaps = Vec::new();
        let start = at("2026-01-01T06:00:00Z");
        for day in 0..70 {
            for (i, hour) in [0, 12].iter().enumerate() {
                let t = start + Duration::days(day) + Duration::hours(*hour);
                snaps.push(Candidate {
                    id: format!("{day:02}-{i}"),
                    kind: SnapshotKind::Automatic,
                    taken_at: t,
                    pinned: false,
                });
            }
        }
        let r = Retention { keep_daily: Some(7), keep_weekly: Some(4), keep_monthly: Some(3), ..Default::default() };
        let d = select(&snaps, |_| Some((r.clone(), chrono_tz::UTC)), at("2026-06-01T00:00:00Z"));
        let kept = kept(&d);
        // Daily: the later snapshot of each of the last 7 days.
        for day in 63..70 {
            assert!(kept.contains(&format!("{day:02}-1").as_str()), "day {day}");
            assert!(!kept.contains(&format!("{day:02}-0").as_str()), "only the newest of a day");
        }
        // Monthly: newest of March (the overall newest), February (day 58 = Feb 28) and January (day 30).
        assert!(kept.contains(&"58-1") && kept.contains(&"30-1"));
        // Weekly: 4 ISO weeks, newest of each; Sunday 2026-03-08 is day 66 (already daily).
        assert!(kept.contains(&"59-1"), "Sunday 2026-03-01 ends ISO week 9");
        assert!(kept.contains(&"52-1"), "Sunday 2026-02-22 ends ISO week 8");
        assert_eq!(kept.len(), 7 + 2 + 2, "{kept:?}");
    }

    #[test]
    fn calendar_buckets_follow_the_policy_time_zone() {
        // 23:30 UTC on Jan 1 is already Jan 2 in Berlin: two snapshots, one Berlin day.
        let snaps = vec![
            snap("a", SnapshotKind::Manual, "2026-01-01T23:30:00Z"),
            snap("b", SnapshotKind::Manual, "2026-01-02T10:00:00Z"),
            snap("c", SnapshotKind::Manual, "2026-01-01T10:00:00Z"),
        ];
        let r = Retention { keep_daily: Some(2), ..Default::default() };
        let utc = select(&snaps, |_| Some((r.clone(), chrono_tz::UTC)), at("2026-02-01T00:00:00Z"));
        assert_eq!(kept(&utc), vec!["a", "b"]);
        let berlin = select(&snaps, |_| Some((r.clone(), chrono_tz::Europe::Berlin)), at("2026-02-01T00:00:00Z"));
        assert_eq!(kept(&berlin), vec!["b", "c"]);
    }

    #[test]
    fn drill_reports_older_than_the_horizon_go_but_the_newest_ten_stay() {
        let day0 = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z").unwrap().to_utc();
        let day = |d: i64| day0 + chrono::Duration::days(d);
        let reports: Vec<(String, DateTime<Utc>)> = (0..13).map(|d| (format!("r{d:02}.json.age"), day(d))).collect();
        let names = |mut names: Vec<String>| -> Vec<String> {
            names.sort();
            names
        };
        let ninety = chrono::Duration::days(90);
        // On day 100, everything before day 10 is past the horizon; days 3..12 are the newest ten.
        assert_eq!(
            names(drill_reports_to_delete(&reports, ninety, day(100))),
            ["r00.json.age", "r01.json.age", "r02.json.age"]
        );
        // On day 91, only day 0 is past it.
        assert_eq!(names(drill_reports_to_delete(&reports, ninety, day(91))), ["r00.json.age"]);
        assert!(drill_reports_to_delete(&reports, ninety, day(50)).is_empty());
        // However old, ten reports are never too many.
        assert!(drill_reports_to_delete(&reports[..10], ninety, day(1000)).is_empty());
    }
}
