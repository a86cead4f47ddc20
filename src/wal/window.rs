//! The point-in-time window: from the base backups and the archived WAL, which moments can
//! be restored, which base backup serves a target, and where WAL is missing. A pure
//! function of the repository listing, so its rules are unit-tested.
//!
//! A base backup restores to any moment from its end (when the copy becomes consistent)
//! up to the end of the unbroken run of WAL segments that starts at its start segment. A
//! missing segment ends the run: the window shrinks there, and the gap is reported by
//! name. Moments are LSNs; their times are the base backup's end and the archive time of
//! the last segment of the run (an upper bound of what it holds), or the ship time of a
//! streamed partial version of the next segment. After a failover the run continues on
//! the new timeline from its switch point ([`super::timeline::path`]), as recovery does;
//! WAL of a timeline no base backup's recovery reaches is named, not used.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::archive::Archived;
use super::base::BaseManifest;
use super::timeline::{self, Histories};
use super::{Lsn, Segment, WalFile};
use crate::error::{Error, ErrorKind, Result};

/// A restorable moment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Moment {
    pub lsn: Lsn,
    pub time: DateTime<Utc>,
    pub timeline: u32,
}

/// What one base backup can restore to.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct BaseRange {
    pub id: String,
    pub from: Moment,
    /// `None`: WAL it needs to become consistent is missing; it cannot restore at all.
    pub to: Option<Moment>,
    /// The timelines its recovery replays, oldest first (more than one after a failover).
    pub timelines: Vec<u32>,
}

/// Missing WAL segments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Gap {
    pub timeline: u32,
    pub first_missing: String,
    pub last_missing: String,
    pub segments: u64,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Window {
    pub earliest: Option<Moment>,
    pub latest: Option<Moment>,
    pub base_backups: Vec<BaseRange>,
    pub gaps: Vec<Gap>,
    pub wal_files: usize,
    /// Timelines with WAL archived that no base backup's recovery reaches (their history
    /// file is missing, or every base backup was taken on a branch they did not come
    /// from): moments on them cannot be restored until a base backup is taken on one.
    pub unfollowed_timelines: Vec<u32>,
}

impl Window {
    /// `from .. to` in words, for messages.
    pub fn describe(&self) -> String {
        match (&self.earliest, &self.latest) {
            (Some(a), Some(b)) => format!("{} ({}) to {} ({})", a.time.to_rfc3339(), a.lsn, b.time.to_rfc3339(), b.lsn),
            _ => "empty: no base backup with the WAL it needs".to_string(),
        }
    }
}

/// Where a point-in-time restore should stop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Time(DateTime<Utc>),
    Lsn(Lsn),
    /// A restore point; its LSN when tidemark recorded it.
    Name(String, Option<Lsn>),
    Latest,
}

/// A moment as people write it: `2026-11-22 10:15:00+00` or `2026-11-22T10:15:00Z`
/// (a zone is required: a moment without one is ambiguous).
///
/// Errors: `Usage` saying how to write one.
pub fn parse_time(text: &str) -> crate::error::Result<DateTime<Utc>> {
    let trimmed = text.trim();
    let parsed = DateTime::parse_from_rfc3339(trimmed)
        .or_else(|_| DateTime::parse_from_str(trimmed, "%Y-%m-%d %H:%M:%S%.f%#z"))
        .map_err(|_| {
            crate::error::Error::usage(format!(
                "{text:?} is not a moment: write '2026-11-22 10:15:00+00' or 2026-11-22T10:15:00Z"
            ))
        })?;
    Ok(parsed.to_utc())
}

impl Target {
    /// The target the flags `--time`, `--lsn`, `--name` say (at most one; none: latest).
    ///
    /// Errors: `Usage` for a malformed time or LSN, or more than one given.
    pub fn from_flags(time: Option<&str>, lsn: Option<&str>, name: Option<&str>) -> crate::error::Result<Target> {
        match (time, lsn, name) {
            (None, None, None) => Ok(Target::Latest),
            (Some(t), None, None) => Ok(Target::Time(parse_time(t)?)),
            (None, Some(l), None) => Ok(Target::Lsn(l.parse()?)),
            (None, None, Some(n)) => Ok(Target::Name(n.to_string(), None)),
            _ => Err(crate::error::Error::usage("give at most one of a time, an LSN and a restore point's name")),
        }
    }

    /// `time 2026-11-22T10:15:00+00:00`, `lsn 0/5000028`, `restore point NAME`, `latest`.
    pub fn describe(&self) -> String {
        match self {
            Target::Time(t) => format!("time {}", t.to_rfc3339()),
            Target::Lsn(l) => format!("lsn {l}"),
            Target::Name(n, _) => format!("restore point {n}"),
            Target::Latest => "latest".into(),
        }
    }
}

/// `latest`, `time:2026-11-22T10:15:00Z`, `lsn:0/5000028`, `name:before_migration`: how a
/// target is written in JSON (the API's options).
impl std::str::FromStr for Target {
    type Err = crate::error::Error;

    fn from_str(text: &str) -> crate::error::Result<Target> {
        match text.split_once(':') {
            _ if text == "latest" => Ok(Target::Latest),
            Some(("time", t)) => Ok(Target::Time(parse_time(t)?)),
            Some(("lsn", l)) => Ok(Target::Lsn(l.parse()?)),
            Some(("name", n)) if !n.is_empty() => Ok(Target::Name(n.to_string(), None)),
            _ => Err(crate::error::Error::usage(format!(
                "{text:?} is not a restore target: write latest, time:2026-11-22T10:15:00Z, lsn:0/5000028 or name:NAME"
            ))),
        }
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Time(t) => write!(f, "time:{}", t.to_rfc3339()),
            Target::Lsn(l) => write!(f, "lsn:{l}"),
            Target::Name(n, _) => write!(f, "name:{n}"),
            Target::Latest => f.write_str("latest"),
        }
    }
}

impl Serialize for Target {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Target {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Target, D::Error> {
        String::deserialize(d)?.parse().map_err(|e: crate::error::Error| serde::de::Error::custom(e.message()))
    }
}

/// Computes the window. `histories`: the archived timeline history files, which say where
/// each base backup's WAL continues after a failover.
pub fn compute(bases: &[BaseManifest], archived: &[Archived], histories: &Histories) -> Window {
    // Per timeline and segment size: segment number -> archive time; and the streamed
    // versions of unfinished segments: (timeline, size, number) -> ship time.
    let sizes: BTreeSet<u64> = bases.iter().map(|b| b.wal_segment_size).collect();
    let mut segments: BTreeMap<(u32, u64), BTreeMap<u64, DateTime<Utc>>> = BTreeMap::new();
    // (timeline, size, number) -> (ship time, where it reaches).
    type Partials = BTreeMap<(u32, u64, u64), (DateTime<Utc>, Option<Lsn>)>;
    let mut partials: Partials = BTreeMap::new();
    for &size in &sizes {
        for a in archived {
            if let Ok(seg) = Segment::parse(&a.name, size) {
                segments.entry((seg.timeline, size)).or_default().insert(seg.number, a.archived_at);
            } else if let Some(stem) = a.name.strip_suffix(".partial")
                && let Ok(seg) = Segment::parse(stem, size)
            {
                partials.insert((seg.timeline, size, seg.number), (a.archived_at, a.reach));
            }
        }
    }
    let none = BTreeMap::new();
    let mut ranges = Vec::new();
    let mut gaps = BTreeSet::new();
    let mut followed = BTreeSet::new();
    for base in bases {
        let size = base.wal_segment_size;
        let legs = timeline::path(histories, base.timeline, base.start_lsn, base.end_lsn);
        followed.extend(legs.iter().map(|leg| leg.timeline));
        let on = |tl: u32| segments.get(&(tl, size)).unwrap_or(&none);
        let serve = |number: u64| timeline::serving(&legs, number, size);
        let archived_at = |number: u64| on(serve(number)).get(&number).copied();
        let start = Segment::of(base.timeline, base.start_lsn, size).number;
        let needed = Segment::of(base.timeline, base.end_lsn, size).number;
        let mut last = None;
        let mut n = start;
        while archived_at(n).is_some() {
            last = Some(n);
            n += 1;
        }
        let from = Moment { lsn: base.end_lsn, time: base.finished_at, timeline: base.timeline };
        // A streamed partial of the next segment extends the window to where its WAL
        // reaches (recorded when it was shipped; a partial whose first record is not
        // whole yet adds only its ship time).
        let to = last.filter(|l| *l >= needed).map(|l| {
            let partial = partials.get(&(serve(l + 1), size, l + 1)).copied();
            let end = Segment { timeline: serve(l), number: l + 1 }.start(size);
            Moment {
                lsn: partial.and_then(|(_, reach)| reach).map_or(end, |reach| reach.max(end)),
                time: [archived_at(l), partial.map(|(at, _)| at)]
                    .into_iter()
                    .flatten()
                    .fold(base.finished_at, DateTime::max),
                timeline: serve(l),
            }
        });
        // The first missing run after the base backup's start, if WAL exists beyond it
        // along the path.
        let missing_from = last.map_or(start, |l| l + 1);
        let next = legs
            .iter()
            .filter_map(|leg| {
                on(leg.timeline).range(missing_from..).map(|(n, _)| *n).find(|n| serve(*n) == leg.timeline)
            })
            .min();
        if let Some(next) = next {
            let name = |number| Segment { timeline: serve(number), number }.name(size);
            gaps.insert((serve(missing_from), missing_from, next - 1, name(missing_from), name(next - 1)));
        }
        ranges.push(BaseRange {
            id: base.id.clone(),
            from,
            to,
            timelines: legs.iter().map(|leg| leg.timeline).collect(),
        });
    }
    let newest_followed = followed.last().copied();
    let unfollowed: BTreeSet<u32> = archived
        .iter()
        .filter_map(|a| WalFile::parse(a.name.strip_suffix(".partial").unwrap_or(&a.name)).ok())
        .map(|f| f.timeline())
        .filter(|t| newest_followed.is_some_and(|newest| *t > newest))
        .collect();
    let usable = || ranges.iter().filter(|r| r.to.is_some());
    let earliest = usable().map(|r| r.from.clone()).min_by_key(|m| m.lsn);
    let latest = usable().filter_map(|r| r.to.clone()).max_by_key(|m| m.lsn);
    Window {
        earliest,
        latest,
        base_backups: ranges,
        gaps: gaps
            .into_iter()
            .map(|(timeline, a, b, first, last)| Gap {
                timeline,
                first_missing: first,
                last_missing: last,
                segments: b - a + 1,
            })
            .collect(),
        wal_files: archived.len(),
        unfollowed_timelines: unfollowed.into_iter().collect(),
    }
}

/// The base backup a target is restored from: the newest one whose range holds it (the
/// least WAL to replay); for a restore point tidemark did not record, the oldest usable
/// one (the most WAL, so the point is found wherever it is).
///
/// Errors: `Refused` for a target outside the window, with the window in the message.
pub fn choose<'a>(window: &Window, bases: &'a [BaseManifest], target: &Target) -> Result<&'a BaseManifest> {
    let holds = |r: &BaseRange| -> bool {
        let Some(to) = &r.to else { return false };
        match target {
            Target::Time(t) => r.from.time <= *t && *t <= to.time,
            Target::Lsn(l) | Target::Name(_, Some(l)) => r.from.lsn <= *l && *l <= to.lsn,
            Target::Name(_, None) => true,
            // The base backups whose recovery reaches the window's end (not one on a branch
            // an old primary kept writing after a failover).
            Target::Latest => window.latest.as_ref().is_some_and(|l| (to.lsn, to.timeline) == (l.lsn, l.timeline)),
        }
    };
    let mut candidates = window.base_backups.iter().filter(|r| holds(r));
    let chosen = match target {
        Target::Name(_, None) => candidates.next(),
        _ => candidates.next_back(),
    };
    let outside = || {
        let what = match target {
            Target::Time(t) => format!("time {}", t.to_rfc3339()),
            Target::Lsn(l) => format!("LSN {l}"),
            Target::Name(n, _) => format!("restore point {n:?}"),
            Target::Latest => "the latest moment".to_string(),
        };
        let gaps = if window.gaps.is_empty() {
            String::new()
        } else {
            let list: Vec<String> = window
                .gaps
                .iter()
                .map(|g| format!("{}..{} ({} segments)", g.first_missing, g.last_missing, g.segments))
                .collect();
            format!("; missing WAL: {}", list.join(", "))
        };
        Error::new(
            ErrorKind::Refused,
            format!("{what} is outside the point-in-time window: {}{gaps}", window.describe()),
        )
    };
    let range = chosen.ok_or_else(outside)?;
    Ok(bases.iter().find(|b| b.id == range.id).expect("ranges come from these bases"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::manifest::ObjectEntry;

    const SEG: u64 = 16 * 1024 * 1024;

    fn t(minute: i64) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-20T10:00:00Z").unwrap().to_utc() + chrono::Duration::minutes(minute)
    }

    fn base(id: &str, start_seg: u64, end_seg: u64, finished: i64) -> BaseManifest {
        BaseManifest {
            format: 1,
            id: id.into(),
            workspace: "shop".into(),
            started_at: t(finished - 1),
            finished_at: t(finished),
            tidemark_version: "test".into(),
            system_identifier: "1".into(),
            server_version: "15".into(),
            wal_segment_size: SEG,
            timeline: 1,
            start_lsn: Lsn(start_seg * SEG + 0x28),
            end_lsn: Lsn(end_seg * SEG + 0x100),
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

    /// Segments `numbers` of timeline 1, segment n archived at minute n.
    fn wal(numbers: &[u64]) -> Vec<Archived> {
        numbers
            .iter()
            .map(|n| Archived {
                name: Segment { timeline: 1, number: *n }.name(SEG),
                sha256: "0".repeat(64),
                stored_size: 1,
                archived_at: t(*n as i64),
                reach: None,
            })
            .collect()
    }

    #[test]
    fn an_unbroken_chain_restores_from_the_end_of_the_base_to_the_last_segment() {
        let bases = [base("a", 2, 2, 2)];
        let w = compute(&bases, &wal(&[1, 2, 3, 4, 5]), &Histories::new());
        assert_eq!(w.earliest.as_ref().unwrap().lsn, bases[0].end_lsn);
        assert_eq!(w.latest.as_ref().unwrap().lsn, Lsn(6 * SEG));
        assert_eq!(w.latest.as_ref().unwrap().time, t(5));
        assert!(w.gaps.is_empty());
        assert_eq!(choose(&w, &bases, &Target::Time(t(4))).unwrap().id, "a");
        assert_eq!(choose(&w, &bases, &Target::Lsn(Lsn(5 * SEG + 1))).unwrap().id, "a");
        let late = choose(&w, &bases, &Target::Time(t(9))).unwrap_err();
        assert_eq!(late.kind(), ErrorKind::Refused);
        assert!(late.message().contains("outside the point-in-time window"), "{}", late.message());
        // Before the base backup became consistent: refused too.
        assert!(choose(&w, &bases, &Target::Lsn(Lsn(2 * SEG))).is_err());
    }

    #[test]
    fn a_missing_segment_shrinks_the_window_and_is_named() {
        let bases = [base("a", 2, 2, 2)];
        let w = compute(&bases, &wal(&[2, 3, 5, 6]), &Histories::new());
        assert_eq!(w.latest.as_ref().unwrap().lsn, Lsn(4 * SEG), "the window ends where WAL is missing");
        assert_eq!(
            w.gaps,
            vec![Gap {
                timeline: 1,
                first_missing: "000000010000000000000004".into(),
                last_missing: "000000010000000000000004".into(),
                segments: 1,
            }]
        );
        let past = choose(&w, &bases, &Target::Time(t(6))).unwrap_err();
        assert!(past.message().contains("000000010000000000000004"), "{}", past.message());
    }

    #[test]
    fn a_streamed_partial_of_the_next_segment_extends_the_window_in_time() {
        let bases = [base("a", 2, 2, 2)];
        let mut archived = wal(&[2, 3]);
        let partial = Archived {
            name: format!("{}.partial", Segment { timeline: 1, number: 4 }.name(SEG)),
            sha256: "0".repeat(64),
            stored_size: 1,
            archived_at: t(9),
            reach: None,
        };
        archived.push(partial.clone());
        let w = compute(&bases, &archived, &Histories::new());
        let latest = w.latest.as_ref().unwrap();
        assert_eq!((latest.lsn, latest.time), (Lsn(4 * SEG), t(9)), "its first record is not whole yet");
        assert!(w.gaps.is_empty(), "a partial is not a gap");
        assert_eq!(choose(&w, &bases, &Target::Time(t(8))).unwrap().id, "a");
        // Where its WAL reaches is the window's end, and a target up to it is served.
        *archived.last_mut().unwrap() = Archived { reach: Some(Lsn(4 * SEG + 0x81E50)), ..partial };
        let w = compute(&bases, &archived, &Histories::new());
        assert_eq!(w.latest.as_ref().unwrap().lsn, Lsn(4 * SEG + 0x81E50));
        assert_eq!(choose(&w, &bases, &Target::Lsn(Lsn(4 * SEG + 0x80000))).unwrap().id, "a");
        assert!(choose(&w, &bases, &Target::Lsn(Lsn(4 * SEG + 0x90000))).is_err());
    }

    fn archived_at(name: String, minute: i64) -> Archived {
        Archived { name, sha256: "0".repeat(64), stored_size: 1, archived_at: t(minute), reach: None }
    }

    /// A failover in segment 4: timeline 1's WAL up to segment 3 and its segment 4 as
    /// `.partial`, timeline 2's history file and segments 4 and 5.
    fn failover() -> (Vec<Archived>, Histories) {
        let mut archived = wal(&[2, 3]);
        archived.push(archived_at(format!("{}.partial", Segment { timeline: 1, number: 4 }.name(SEG)), 9));
        archived.push(archived_at("00000002.history".into(), 9));
        archived.push(archived_at(Segment { timeline: 2, number: 4 }.name(SEG), 10));
        archived.push(archived_at(Segment { timeline: 2, number: 5 }.name(SEG), 11));
        let switch = timeline::Switch { parent: 1, switch: Lsn(4 * SEG + 0x5000) };
        (archived, Histories::from([(2, vec![switch])]))
    }

    #[test]
    fn the_window_follows_a_failover_to_the_new_timeline() {
        let (archived, histories) = failover();
        let bases = [base("a", 2, 2, 2)];
        let w = compute(&bases, &archived, &histories);
        let latest = w.latest.clone().unwrap();
        assert_eq!((latest.lsn, latest.time, latest.timeline), (Lsn(6 * SEG), t(11), 2));
        assert_eq!(w.base_backups[0].timelines, vec![1, 2]);
        assert!(w.unfollowed_timelines.is_empty() && w.gaps.is_empty(), "{w:?}");
        assert_eq!(choose(&w, &bases, &Target::Time(t(10))).unwrap().id, "a");
        assert_eq!(choose(&w, &bases, &Target::Latest).unwrap().id, "a");

        // A segment missing on the new timeline is a gap named on it.
        let mut holed: Vec<Archived> =
            archived.iter().filter(|a| !a.name.starts_with("000000020000000000000005")).cloned().collect();
        holed.push(archived_at(Segment { timeline: 2, number: 6 }.name(SEG), 12));
        let w = compute(&bases, &holed, &histories);
        assert_eq!(w.latest.unwrap().lsn, Lsn(5 * SEG));
        assert_eq!(w.gaps.len(), 1);
        assert_eq!((w.gaps[0].timeline, w.gaps[0].first_missing.as_str()), (2, "000000020000000000000005"));
    }

    #[test]
    fn without_its_history_file_a_new_timeline_is_named_and_not_followed() {
        let (archived, histories) = failover();
        let bases = [base("a", 2, 2, 2)];
        let w = compute(&bases, &archived, &Histories::new());
        assert_eq!(w.unfollowed_timelines, vec![2]);
        assert_eq!(w.latest.as_ref().unwrap().timeline, 1, "the window stays on the base backup's timeline");
        assert!(w.gaps.is_empty());
        let mut on_two = base("b", 5, 5, 8);
        on_two.timeline = 2;
        let both = [bases[0].clone(), on_two];
        assert!(compute(&both, &archived, &Histories::new()).unfollowed_timelines.is_empty());
        assert!(
            compute(&[], &archived, &histories).unfollowed_timelines.is_empty(),
            "no base backup: nothing to follow"
        );
    }

    #[test]
    fn a_base_backup_of_an_old_primary_after_the_failover_stays_on_its_branch() {
        let (mut archived, histories) = failover();
        // The old primary kept writing timeline 1 (segments 4 to 8) and a base backup was taken there.
        archived.extend((4..9).map(|n| archived_at(Segment { timeline: 1, number: n }.name(SEG), n as i64)));
        let bases = [base("a", 2, 2, 2), base("old-primary", 6, 6, 6)];
        let w = compute(&bases, &archived, &histories);
        assert_eq!(w.base_backups[1].timelines, vec![1]);
        assert_eq!(w.base_backups[1].to.as_ref().unwrap().lsn, Lsn(9 * SEG));
        assert_eq!(w.base_backups[0].to.as_ref().unwrap().timeline, 2, "the older one follows the failover");
        assert!(w.gaps.is_empty(), "timeline 1's segments 4 and 5 are not read along the path: {:?}", w.gaps);
        // `latest` is the farthest moment: here the old primary's branch, restored from its base backup.
        assert_eq!(choose(&w, &bases, &Target::Latest).unwrap().id, "old-primary");
    }

    #[test]
    fn a_base_without_the_wal_for_consistency_cannot_restore() {
        let bases = [base("a", 2, 3, 3)];
        let w = compute(&bases, &wal(&[2, 4]), &Histories::new());
        assert!(w.base_backups[0].to.is_none());
        assert!(w.earliest.is_none() && w.latest.is_none());
        assert!(choose(&w, &bases, &Target::Latest).is_err());
    }

    #[test]
    fn the_newest_base_holding_the_target_is_chosen() {
        let bases = [base("a", 2, 2, 2), base("b", 6, 6, 6)];
        let w = compute(&bases, &wal(&[2, 3, 4, 5, 6, 7, 8]), &Histories::new());
        assert_eq!(choose(&w, &bases, &Target::Time(t(4))).unwrap().id, "a");
        assert_eq!(choose(&w, &bases, &Target::Time(t(7))).unwrap().id, "b");
        assert_eq!(choose(&w, &bases, &Target::Latest).unwrap().id, "b");
        // An unrecorded restore point: the oldest base, so replay passes every point.
        assert_eq!(choose(&w, &bases, &Target::Name("x".into(), None)).unwrap().id, "a");
        assert_eq!(w.earliest.unwrap().time, t(2));
    }

    #[test]
    fn moments_are_read_as_postgres_prints_them_and_as_rfc3339() {
        let expected = DateTime::parse_from_rfc3339("2026-11-22T10:15:00Z").unwrap().to_utc();
        assert_eq!(parse_time("2026-11-22 10:15:00+00").unwrap(), expected);
        assert_eq!(parse_time("2026-11-22 12:15:00.000+02:00").unwrap(), expected);
        assert_eq!(parse_time("2026-11-22T10:15:00Z").unwrap(), expected);
        assert_eq!(parse_time("yesterday").unwrap_err().kind(), crate::error::ErrorKind::Usage);
        assert!(parse_time("2026-11-22 10:15:00").is_err(), "a moment without a zone is ambiguous");
    }

    #[test]
    fn targets_read_back_as_they_are_written_and_bad_ones_are_refused() {
        for text in ["latest", "time:2026-11-22T10:15:00+00:00", "lsn:0/5000028", "name:before_migration"] {
            let target: Target = text.parse().unwrap();
            assert_eq!(target.to_string(), text);
            let json = serde_json::to_string(&target).unwrap();
            assert_eq!(serde_json::from_str::<Target>(&json).unwrap(), target);
        }
        for bad in ["", "time:yesterday", "lsn:x", "name:", "tomorrow"] {
            assert!(bad.parse::<Target>().is_err(), "{bad:?} was accepted");
        }
        assert_eq!(Target::from_flags(None, None, None).unwrap(), Target::Latest);
        assert!(Target::from_flags(Some("2026-11-22T10:15:00Z"), Some("0/1"), None).is_err());
    }
}
