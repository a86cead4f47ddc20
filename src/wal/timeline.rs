//! Timelines: what a history file says, and the timelines a restore goes through. After a
//! failover the promoted standby writes on a new timeline that branched off the old one
//! at a switch point; recovery from a base backup taken before it replays the old
//! timeline up to the switch point and the new one after it. tidemark decides that path
//! the way Postgres does for `recovery_target_timeline = 'latest'` (the newest timeline
//! is the last of an unbroken run of history files after the base backup's), names it in
//! the recovery settings, and computes the window along it. Pure functions, unit-tested.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{Lsn, Segment};
use crate::error::{Error, Result};

/// One line of a history file: timeline `parent` was left at `switch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Switch {
    pub parent: u32,
    pub switch: Lsn,
}

/// The archived history files: timeline -> its ancestry, oldest first.
pub type Histories = BTreeMap<u32, Vec<Switch>>;

/// Parses a history file (`parentTLI <tab> switchpoint <tab> reason` per line; blank lines
/// and `#` comments skipped, as Postgres does).
///
/// Errors: `Integrity` naming the line.
pub fn parse_history(timeline: u32, text: &str) -> Result<Vec<Switch>> {
    let mut switches: Vec<Switch> = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = |why: &str| {
            Error::integrity(format!("the history file of timeline {timeline}, line {}: {why}: {line:?}", number + 1))
        };
        let mut fields = line.split_whitespace();
        let parent = fields.next().and_then(|f| f.parse::<u32>().ok()).ok_or_else(|| bad("no timeline number"))?;
        let switch: Lsn =
            fields.next().ok_or_else(|| bad("no switch point"))?.parse().map_err(|_| bad("a bad switch point"))?;
        let ordered = switches.last().is_none_or(|last| last.parent < parent && last.switch <= switch);
        if !ordered || parent >= timeline {
            return Err(bad("timelines out of order"));
        }
        switches.push(Switch { parent, switch });
    }
    Ok(switches)
}

/// One leg of a restore's path: WAL of `timeline` from `begin` on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Leg {
    pub timeline: u32,
    pub begin: Lsn,
}

/// The timelines recovery replays from a base backup on `timeline` that became consistent
/// at `consistent`, oldest first; the last one is the recovery target timeline. Like
/// Postgres, the newest timeline is found by probing history files after the base
/// backup's own; when the base backup's timeline is not an ancestor of it, or was left
/// before the copy became consistent (the backup was taken on a branch that was
/// abandoned), recovery stays on the base backup's own timeline.
pub fn path(histories: &Histories, timeline: u32, start: Lsn, consistent: Lsn) -> Vec<Leg> {
    let mut path = vec![Leg { timeline, begin: start }];
    let mut newest = timeline;
    while histories.contains_key(&(newest + 1)) {
        newest += 1;
    }
    let ancestry = histories.get(&newest).map(Vec::as_slice).unwrap_or_default();
    let Some(from) = ancestry.iter().position(|s| s.parent == timeline && s.switch >= consistent) else {
        return path;
    };
    for (k, switch) in ancestry.iter().enumerate().skip(from) {
        let next = ancestry.get(k + 1).map_or(newest, |s| s.parent);
        path.push(Leg { timeline: next, begin: switch.switch });
    }
    path
}

/// The timeline segment `number` is read from along `path`: the newest one that has begun
/// by then (the segment holding a switch point is read from the new timeline, which
/// carries the old one's WAL up to the switch).
pub fn serving(path: &[Leg], number: u64, segment_size: u64) -> u32 {
    path.iter()
        .rev()
        .find(|leg| Segment::of(leg.timeline, leg.begin, segment_size).number <= number)
        .unwrap_or(&path[0])
        .timeline
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEG: u64 = 16 * 1024 * 1024;

    fn switch(parent: u32, seg: u64) -> Switch {
        Switch { parent, switch: Lsn(seg * SEG + 0x60) }
    }

    #[test]
    fn history_files_parse_as_postgres_writes_them() {
        let text =
            "1\t0/3000158\tno recovery target specified\n\n# a comment\n2\t0/5A000028\tbefore 2026-11-20 10:00:00+00\n";
        assert_eq!(
            parse_history(3, text).unwrap(),
            vec![Switch { parent: 1, switch: Lsn(0x3000158) }, Switch { parent: 2, switch: Lsn(0x5A000028) }]
        );
        for bad in ["x\t0/1\tr", "1\tnowhere\tr", "2\t0/1\tr\n1\t0/2\tr", "3\t0/1\tr", "1"] {
            let e = parse_history(3, bad).unwrap_err();
            assert_eq!(e.kind(), crate::error::ErrorKind::Integrity, "{bad:?}");
            assert!(e.message().contains("timeline 3, line"), "{}", e.message());
        }
    }

    #[test]
    fn the_path_follows_every_switch_to_the_newest_timeline() {
        let mut histories = Histories::new();
        histories.insert(2, vec![switch(1, 5)]);
        histories.insert(3, vec![switch(1, 5), switch(2, 9)]);
        let start = Lsn(2 * SEG + 0x28);
        let legs = path(&histories, 1, start, Lsn(2 * SEG + 0x100));
        assert_eq!(
            legs,
            vec![
                Leg { timeline: 1, begin: start },
                Leg { timeline: 2, begin: switch(1, 5).switch },
                Leg { timeline: 3, begin: switch(2, 9).switch },
            ]
        );
        let serve = |n| serving(&legs, n, SEG);
        assert_eq!([serve(2), serve(4), serve(5), serve(8), serve(9), serve(40)], [1, 1, 2, 2, 3, 3]);
        // A base backup on timeline 2 starts there.
        let on_two = path(&histories, 2, Lsn(6 * SEG), Lsn(6 * SEG + 0x100));
        assert_eq!(on_two.iter().map(|l| l.timeline).collect::<Vec<_>>(), vec![2, 3]);
    }

    #[test]
    fn an_abandoned_branch_or_a_broken_run_of_history_files_stays_put() {
        let mut histories = Histories::new();
        histories.insert(2, vec![switch(1, 5)]);
        // Taken on timeline 1 after timeline 2 branched off (the old primary kept going).
        let late = path(&histories, 1, Lsn(7 * SEG), Lsn(7 * SEG + 0x100));
        assert_eq!(late, vec![Leg { timeline: 1, begin: Lsn(7 * SEG) }]);
        // Timeline 4 is not reached without the history file of timeline 3.
        let mut gap = Histories::new();
        gap.insert(4, vec![switch(1, 5), switch(3, 8)]);
        assert_eq!(path(&gap, 1, Lsn(2 * SEG), Lsn(2 * SEG)).len(), 1);
        // Without history files: the base backup's own timeline.
        assert_eq!(path(&Histories::new(), 1, Lsn(2 * SEG), Lsn(2 * SEG)).len(), 1);
    }
}
