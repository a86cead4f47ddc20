//! What of the physical side retention may delete: base backups no moment of the PITR
//! window needs, and the WAL only they needed. A pure function, unit-tested; `ops::prune`
//! carries it out (manifests first, WAL last, nothing younger than the grace period).
//!
//! Kept: every base backup finished inside the window; the newest one finished before it
//! (moments at the window's start replay from it); the newest base backup in any case.
//! WAL is kept from the start segment of the oldest kept base backup on; older segments
//! of that timeline and earlier ones go. Timeline history files are always kept (tiny,
//! and recovery reads them). With no base backup at all, nothing is deleted. Every parent
//! of a kept incremental base backup is kept too (a restore assembles the chain); a chain
//! nothing kept needs goes as one. The WAL a parent alone would need is not kept for it
//! (a restore replays from the newest link on).

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::archive::Archived;
use super::base::BaseManifest;
use super::{Segment, WalFile};

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct PitrPlan {
    /// Base backup ids to delete.
    pub base_backups: Vec<String>,
    /// WAL file names to delete.
    pub wal_files: Vec<String>,
    /// The oldest WAL kept, for the report.
    pub oldest_wal_kept: Option<String>,
}

/// Decides. `window`: how far back a point-in-time restore must stay possible.
pub fn plan(bases: &[BaseManifest], archived: &[Archived], window: chrono::Duration, now: DateTime<Utc>) -> PitrPlan {
    let mut sorted: Vec<&BaseManifest> = bases.iter().collect();
    sorted.sort_by_key(|b| (b.finished_at, b.end_lsn));
    let Some(newest) = sorted.last() else { return PitrPlan::default() };
    let cutoff = now - window;
    let mut keep: BTreeSet<&str> = sorted.iter().filter(|b| b.finished_at >= cutoff).map(|b| b.id.as_str()).collect();
    if let Some(before) = sorted.iter().rev().find(|b| b.finished_at < cutoff) {
        keep.insert(before.id.as_str());
    }
    keep.insert(newest.id.as_str());
    let oldest_kept = sorted.iter().find(|b| keep.contains(b.id.as_str())).expect("the newest is kept");
    // The parents the kept incrementals are assembled from.
    let by_id: std::collections::HashMap<&str, &BaseManifest> = sorted.iter().map(|b| (b.id.as_str(), *b)).collect();
    for id in keep.clone() {
        let mut next = by_id.get(id).and_then(|b| b.parent.as_deref());
        while let Some(parent) = next.filter(|p| keep.insert(p)) {
            next = by_id.get(parent).and_then(|b| b.parent.as_deref());
        }
    }
    let size = oldest_kept.wal_segment_size;
    let first_needed = Segment::of(oldest_kept.timeline, oldest_kept.start_lsn, size);
    // The segment a WAL file belongs to: its own name, the segment a backup label
    // (`<segment>.<offset>.backup`) or a streamed partial (`<segment>.partial`) names.
    // History files belong to none and are always kept.
    let segment_of = |name: &str| -> Option<Segment> {
        match WalFile::parse(name) {
            Ok(WalFile::History { .. }) => None,
            Ok(WalFile::Segment { .. } | WalFile::BackupLabel { .. }) => Segment::parse(&name[..24], size).ok(),
            Err(_) => Segment::parse(name.strip_suffix(".partial")?, size).ok(),
        }
    };
    let wal_files = archived
        .iter()
        .filter(|a| {
            segment_of(&a.name).is_some_and(|s| {
                s.timeline < first_needed.timeline
                    || (s.timeline == first_needed.timeline && s.number < first_needed.number)
            })
        })
        .map(|a| a.name.clone())
        .collect();
    PitrPlan {
        base_backups: sorted.iter().filter(|b| !keep.contains(b.id.as_str())).map(|b| b.id.clone()).collect(),
        wal_files,
        oldest_wal_kept: Some(first_needed.name(size)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::manifest::ObjectEntry;
    use crate::wal::Lsn;

    const SEG: u64 = 16 * 1024 * 1024;

    fn day(d: i64) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-01T00:00:00Z").unwrap().to_utc() + chrono::Duration::days(d)
    }

    fn base(id: &str, seg: u64, finished_day: i64) -> BaseManifest {
        BaseManifest {
            format: 1,
            id: id.into(),
            workspace: "shop".into(),
            started_at: day(finished_day),
            finished_at: day(finished_day),
            tidemark_version: "test".into(),
            system_identifier: "1".into(),
            server_version: "15".into(),
            wal_segment_size: SEG,
            timeline: 1,
            start_lsn: Lsn(seg * SEG + 0x28),
            end_lsn: Lsn(seg * SEG + 0x100),
            tar: ObjectEntry {
                name: "base.tar.zst.age".into(),
                plain_size: 0,
                plain_blake3: String::new(),
                stored_size: 0,
                stored_sha256: String::new(),
            },
            parent: None,
        }
    }

    fn wal(names: &[String]) -> Vec<Archived> {
        names
            .iter()
            .map(|n| Archived {
                name: n.clone(),
                sha256: "0".repeat(64),
                stored_size: 1,
                archived_at: day(0),
                reach: None,
            })
            .collect()
    }

    fn seg(tl: u32, n: u64) -> String {
        Segment { timeline: tl, number: n }.name(SEG)
    }

    #[test]
    fn base_backups_outside_the_window_go_with_the_wal_only_they_needed() {
        // Weekly base backups on days 0, 7, 14, 21 at segments 10, 20, 30, 40; a 7-day window on day 24.
        let bases = [base("d0", 10, 0), base("d7", 20, 7), base("d14", 30, 14), base("d21", 40, 21)];
        let mut names: Vec<String> = (5..45).map(|n| seg(1, n)).collect();
        names.push("00000001.history".into());
        names.push(format!("{}.00000028.backup", seg(1, 10)));
        names.push(format!("{}.00000028.backup", seg(1, 30)));
        let plan = plan(&bases, &wal(&names), chrono::Duration::days(7), day(24));
        // d21 is inside; d14 is the newest before the window's start (day 17) and serves
        // days 17-21; d0 and d7 go.
        assert_eq!(plan.base_backups, vec!["d0", "d7"]);
        assert_eq!(plan.oldest_wal_kept.as_deref(), Some(seg(1, 30).as_str()));
        let expected: Vec<String> =
            (5..30).map(|n| seg(1, n)).chain([format!("{}.00000028.backup", seg(1, 10))]).collect();
        let mut got = plan.wal_files.clone();
        got.sort();
        let mut expected = expected;
        expected.sort();
        assert_eq!(got, expected, "WAL from d14's start on is kept, history files always");
    }

    #[test]
    fn the_parents_of_a_kept_incremental_stay_and_an_unneeded_chain_goes_as_one() {
        // Chain a (full, day 1) <- b (day 2) <- c (day 3); chain d (full, day 10) <- e (day 11).
        let mut bases = vec![base("a", 1, 1), base("b", 2, 2), base("c", 3, 3), base("d", 10, 10), base("e", 11, 11)];
        bases[1].parent = Some("a".into());
        bases[2].parent = Some("b".into());
        bases[4].parent = Some("d".into());
        // On day 12 with a 1.5-day window: e (in it) and d (before it) stay; the whole
        // first chain goes.
        let first = plan(&bases, &wal(&[seg(1, 1), seg(1, 10)]), chrono::Duration::hours(36), day(12));
        assert_eq!(first.base_backups, vec!["a", "b", "c"]);
        // A window starting just before day 3 keeps c and, for the window's first moments,
        // b; b's parent a stays with them, but not for its own WAL: WAL from b's start on.
        let window = chrono::Duration::days(9) + chrono::Duration::hours(1);
        let second = plan(&bases, &wal(&[seg(1, 1), seg(1, 2), seg(1, 10)]), window, day(12));
        assert!(second.base_backups.is_empty(), "{:?}", second.base_backups);
        assert_eq!(second.oldest_wal_kept, Some(seg(1, 2)));
        assert_eq!(second.wal_files, vec![seg(1, 1)]);
    }

    #[test]
    fn the_newest_base_backup_and_its_wal_always_stay() {
        let bases = [base("old", 10, 0), base("newest", 20, 1)];
        let names: Vec<String> = (10..25).map(|n| seg(1, n)).collect();
        let plan = plan(&bases, &wal(&names), chrono::Duration::days(7), day(100));
        assert_eq!(plan.base_backups, vec!["old"]);
        assert_eq!(plan.wal_files, (10..20).map(|n| seg(1, n)).collect::<Vec<_>>());
    }

    #[test]
    fn without_base_backups_nothing_goes_and_older_timelines_go_with_their_base() {
        let names: Vec<String> = (1..5).map(|n| seg(1, n)).collect();
        assert_eq!(plan(&[], &wal(&names), chrono::Duration::days(1), day(100)), PitrPlan::default());
        // After a failover to timeline 2, a base backup on timeline 2 makes timeline 1's WAL unneeded.
        let mut on_two = base("tl2", 8, 50);
        on_two.timeline = 2;
        let mut names: Vec<String> = (1..9).map(|n| seg(1, n)).collect();
        names.extend((8..10).map(|n| seg(2, n)));
        names.push("00000002.history".into());
        let plan = plan(&[on_two], &wal(&names), chrono::Duration::days(1), day(100));
        assert_eq!(plan.wal_files, (1..9).map(|n| seg(1, n)).collect::<Vec<_>>());
    }
}
