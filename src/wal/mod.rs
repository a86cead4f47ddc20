//! The physical side: WAL files in the repository (archive push/fetch), base backups, and
//! the point-in-time window they give. This module owns WAL file names, LSNs and segment
//! arithmetic; the submodules own storage and the tools (pg_basebackup) they drive.

pub mod ahead;
pub mod archive;
pub mod base;
pub mod chain;
pub mod incremental;
pub mod prefetch;
pub mod records;
pub mod recovery;
pub mod retention;
pub mod server_user;
pub mod stream;
pub mod timeline;
pub mod window;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A WAL location, `X/Y` in Postgres' notation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, utoipa::ToSchema)]
#[schema(value_type = String, example = "0/3000028", pattern = "^[0-9A-F]{1,8}/[0-9A-F]{1,8}$")]
pub struct Lsn(pub u64);

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xffff_ffff)
    }
}

impl FromStr for Lsn {
    type Err = Error;

    fn from_str(s: &str) -> Result<Lsn> {
        let bad = || Error::usage(format!("{s:?} is not a WAL location: write it as Postgres does, e.g. 0/5000028"));
        let (hi, lo) = s.trim().split_once('/').ok_or_else(bad)?;
        let hi = u64::from_str_radix(hi, 16).map_err(|_| bad())?;
        let lo = u64::from_str_radix(lo, 16).map_err(|_| bad())?;
        if hi > 0xffff_ffff || lo > 0xffff_ffff {
            return Err(bad());
        }
        Ok(Lsn((hi << 32) | lo))
    }
}

impl Serialize for Lsn {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Lsn {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Lsn, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(|e: Error| serde::de::Error::custom(e.message().to_string()))
    }
}

/// One WAL segment: timeline and segment number (LSN / segment size).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Segment {
    pub timeline: u32,
    pub number: u64,
}

impl Segment {
    /// The segment holding `lsn`.
    pub fn of(timeline: u32, lsn: Lsn, segment_size: u64) -> Segment {
        Segment { timeline, number: lsn.0 / segment_size }
    }

    /// `000000010000000000000003`: timeline, then the number split at 4 GiB of WAL.
    pub fn name(&self, segment_size: u64) -> String {
        let per_id = 0x1_0000_0000 / segment_size;
        format!("{:08X}{:08X}{:08X}", self.timeline, self.number / per_id, self.number % per_id)
    }

    /// Parses a segment file name. Errors: `Usage` for anything else.
    pub fn parse(name: &str, segment_size: u64) -> Result<Segment> {
        match WalFile::parse(name)? {
            WalFile::Segment { timeline, log, seg } => {
                let per_id = 0x1_0000_0000 / segment_size;
                if u64::from(seg) >= per_id {
                    return Err(Error::usage(format!("{name} is not a segment of {segment_size}-byte WAL")));
                }
                Ok(Segment { timeline, number: u64::from(log) * per_id + u64::from(seg) })
            }
            _ => Err(Error::usage(format!("{name} is not a WAL segment file name"))),
        }
    }

    /// The first LSN of the segment.
    pub fn start(&self, segment_size: u64) -> Lsn {
        Lsn(self.number * segment_size)
    }
}

pub use crate::wal_name::WalFile;

/// What a WAL segment's first page says it is: the long page header (`XLogLongPageHeaderData`)
/// Postgres writes at the start of every segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    /// The timeline the page was written on (after a failover, the first pages of the new
    /// timeline's first segment are the old timeline's, copied).
    pub timeline: u32,
    /// The LSN of the page: the segment's first LSN.
    pub page_lsn: Lsn,
    pub segment_size: u64,
}

/// The size of a segment's first page header.
pub const LONG_PAGE_HEADER: usize = 40;

/// `XLP_LONG_HEADER` in `xlp_info`: the page is the first of a segment.
const XLP_LONG_HEADER: u16 = 0x0002;

impl SegmentHeader {
    /// Reads the header from a segment's first bytes (little-endian, as on every platform
    /// tidemark runs on). `None` when the page has no long header (not a segment start, or
    /// a page never written: all zeros).
    pub fn read(head: &[u8]) -> Option<SegmentHeader> {
        let head = head.get(..LONG_PAGE_HEADER)?;
        let u16_at = |at: usize| u16::from_le_bytes([head[at], head[at + 1]]);
        let u32_at = |at: usize| u32::from_le_bytes(head[at..at + 4].try_into().expect("4 bytes"));
        let u64_at = |at: usize| u64::from_le_bytes(head[at..at + 8].try_into().expect("8 bytes"));
        if u16_at(2) & XLP_LONG_HEADER == 0 {
            return None;
        }
        Some(SegmentHeader { timeline: u32_at(4), page_lsn: Lsn(u64_at(8)), segment_size: u64::from(u32_at(32)) })
    }
}

/// Checks, while it streams by, that a WAL file's content is the segment its name says:
/// the first page's address is the segment's start, its timeline is the file's or an
/// older one, and the file is as long as the segment size the header records. Recovery
/// that is handed another segment's content stops there with "unexpected pageaddr" and
/// promotes: everything after is silently lost, so this is checked before Postgres sees it.
#[derive(Debug)]
pub struct SegmentContent {
    name: String,
    segment: (u32, u32, u32),
    head: Vec<u8>,
    size: u64,
}

impl SegmentContent {
    /// For a segment (or a partial segment: `<segment>.partial`); `None` for other WAL
    /// files (history files, backup labels), which have no page header.
    pub fn for_name(name: &str) -> Option<SegmentContent> {
        match WalFile::parse(name.strip_suffix(".partial").unwrap_or(name)) {
            Ok(WalFile::Segment { timeline, log, seg }) => Some(SegmentContent {
                name: name.to_string(),
                segment: (timeline, log, seg),
                head: Vec::with_capacity(LONG_PAGE_HEADER),
                size: 0,
            }),
            _ => None,
        }
    }

    pub fn feed(&mut self, chunk: &[u8]) {
        let wanted = LONG_PAGE_HEADER.saturating_sub(self.head.len()).min(chunk.len());
        self.head.extend_from_slice(&chunk[..wanted]);
        self.size += chunk.len() as u64;
    }

    /// Whether the first page was never written (all zeros): a streamed partial segment
    /// shipped before its first record arrived holds no WAL yet.
    pub fn is_blank(&self) -> bool {
        self.head.iter().all(|b| *b == 0)
    }

    /// Errors: `Integrity` naming what the content is instead.
    pub fn finish(&self) -> Result<()> {
        let (timeline, log, seg) = self.segment;
        let name = &self.name;
        let Some(header) = SegmentHeader::read(&self.head) else {
            return Err(Error::integrity(format!(
                "WAL file {name} does not start with a segment header ({} bytes): it is not a WAL segment",
                self.size
            )));
        };
        let size = header.segment_size;
        if !size.is_power_of_two() || !((1 << 20)..=(1 << 30)).contains(&size) || u64::from(seg) >= (1 << 32) / size {
            return Err(Error::integrity(format!(
                "WAL file {name} records a segment size of {size} bytes, which Postgres never uses"
            )));
        }
        let expected = Lsn((u64::from(log) << 32) + u64::from(seg) * size);
        if header.page_lsn != expected || header.timeline == 0 || header.timeline > timeline {
            let actual = Segment::of(header.timeline, header.page_lsn, size);
            return Err(Error::integrity(format!(
                "WAL file {name} holds the wrong segment: its first page is at {} on timeline {} (the content of \
                 {}), not at {expected} on timeline {timeline}; the object was misplaced or tampered with, and \
                 replaying it would silently end recovery there",
                header.page_lsn,
                header.timeline,
                actual.name(size)
            )));
        }
        if self.size != size {
            return Err(Error::integrity(format!(
                "WAL file {name} has {} bytes, but its header says its segments have {size}: it is truncated or padded",
                self.size
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    const SIXTEEN_MIB: u64 = 16 * 1024 * 1024;

    /// The first page of a 16 MiB segment, as Postgres writes it.
    fn segment_bytes(timeline: u32, page_lsn: u64, segment_size: u32, len: usize) -> Vec<u8> {
        let mut page = vec![0u8; len];
        page[..2].copy_from_slice(&0xD110u16.to_le_bytes());
        page[2..4].copy_from_slice(&(XLP_LONG_HEADER | 0x0004).to_le_bytes());
        page[4..8].copy_from_slice(&timeline.to_le_bytes());
        page[8..16].copy_from_slice(&page_lsn.to_le_bytes());
        page[24..32].copy_from_slice(&7_123_456_789u64.to_le_bytes());
        page[32..36].copy_from_slice(&segment_size.to_le_bytes());
        page[36..40].copy_from_slice(&8192u32.to_le_bytes());
        page
    }

    fn check(name: &str, content: &[u8]) -> Result<()> {
        let mut checked = SegmentContent::for_name(name).unwrap();
        // In odd chunks, as a stream delivers them.
        for chunk in content.chunks(7) {
            checked.feed(chunk);
        }
        checked.finish()
    }

    #[test]
    fn a_segment_is_accepted_only_under_its_own_name() {
        let size = SIXTEEN_MIB as usize;
        let four = segment_bytes(1, 0x0400_0000, SIXTEEN_MIB as u32, size);
        check("000000010000000000000004", &four).unwrap();
        // The next segment's content in segment 4's place: named, integrity.
        let five = segment_bytes(1, 0x0500_0000, SIXTEEN_MIB as u32, size);
        let e = check("000000010000000000000004", &five).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Integrity);
        assert!(e.message().contains("000000010000000000000005"), "{}", e.message());
        // A newer timeline's segment served for an older timeline; an older one for a newer
        // timeline is what a failover's first segment looks like.
        let on_two = segment_bytes(2, 0x0400_0000, SIXTEEN_MIB as u32, size);
        assert_eq!(check("000000010000000000000004", &on_two).unwrap_err().kind(), ErrorKind::Integrity);
        check("000000020000000000000004", &four).unwrap();
        // Truncated, or another segment size.
        let e = check("000000010000000000000004", &four[..size / 2]).unwrap_err();
        assert!(e.message().contains("truncated"), "{}", e.message());
        let big = segment_bytes(1, 0x0400_0000, 64 << 20, size);
        assert!(check("000000010000000000000004", &big).is_err());
        // Past 4 GiB the log id counts: 1/02000000 is segment 000000010000000100000002.
        check("000000010000000100000002", &segment_bytes(1, 0x1_0200_0000, SIXTEEN_MIB as u32, size)).unwrap();
        // Not a segment at all, or an empty page.
        assert!(check("000000010000000000000004", b"hello").is_err());
        let blank = SegmentContent::for_name("000000010000000000000004.partial").map(|mut c| {
            c.feed(&vec![0u8; 8192]);
            c
        });
        assert!(blank.unwrap().is_blank());
        assert!(SegmentContent::for_name("00000002.history").is_none());
    }

    #[test]
    fn lsns_round_trip_and_bad_ones_are_refused() {
        let lsn: Lsn = "16/B374D848".parse().unwrap();
        assert_eq!(lsn.0, 0x16_B374_D848);
        assert_eq!(lsn.to_string(), "16/B374D848");
        assert_eq!("0/5000028".parse::<Lsn>().unwrap().to_string(), "0/5000028");
        assert!("5000028".parse::<Lsn>().is_err());
        assert!("0/5G".parse::<Lsn>().is_err());
        assert!("100000000/0".parse::<Lsn>().is_err());
    }

    #[test]
    fn segment_names_follow_postgres() {
        // 0/5000028 with 16 MiB segments is in segment 5 of log 0.
        let seg = Segment::of(1, "0/5000028".parse().unwrap(), SIXTEEN_MIB);
        assert_eq!(seg.name(SIXTEEN_MIB), "000000010000000000000005");
        // Segment numbers roll over into the log id after 4 GiB (256 segments of 16 MiB).
        let seg = Segment::of(2, "1/FF000000".parse().unwrap(), SIXTEEN_MIB);
        assert_eq!(seg.name(SIXTEEN_MIB), "0000000200000001000000FF");
        let next = Segment { number: seg.number + 1, ..seg };
        assert_eq!(next.name(SIXTEEN_MIB), "000000020000000200000000");
        assert_eq!(Segment::parse("000000020000000200000000", SIXTEEN_MIB).unwrap(), next);
        assert_eq!(next.start(SIXTEEN_MIB).to_string(), "2/0");
        // 1 GiB segments: only 4 per log id.
        assert!(Segment::parse("000000010000000000000004", 1 << 30).is_err());
    }

    #[test]
    fn only_archivable_names_are_accepted() {
        assert_eq!(
            WalFile::parse("00000001000000000000000A").unwrap(),
            WalFile::Segment { timeline: 1, log: 0, seg: 10 }
        );
        assert_eq!(WalFile::parse("00000002.history").unwrap(), WalFile::History { timeline: 2 });
        assert_eq!(
            WalFile::parse("000000010000000000000002.00000028.backup").unwrap(),
            WalFile::BackupLabel { timeline: 1 }
        );
        let partial = WalFile::parse("000000010000000000000003.partial").unwrap_err();
        assert!(partial.message().contains("never archived"), "{}", partial.message());
        for bad in ["00000001000000000000000a", "../00000001000000000000000A", "pg_wal/x", "", "0000000100000000000000"]
        {
            assert!(WalFile::parse(bad).is_err(), "{bad}");
        }
    }
}
