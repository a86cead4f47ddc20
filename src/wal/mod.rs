//! The physical side: WAL files in the repository (archive push/fetch), base backups, and
//! the point-in-time window they give. This module owns WAL file names, LSNs and segment
//! arithmetic; the submodules own storage and the tools (pg_basebackup) they drive.

pub mod archive;
pub mod base;
pub mod prefetch;
pub mod retention;
pub mod stream;
pub mod timeline;
pub mod window;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A WAL location, `X/Y` in Postgres' notation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
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

/// The kinds of file an archive_command is handed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WalFile {
    /// `TTTTTTTTLLLLLLLLSSSSSSSS`
    Segment { timeline: u32, log: u32, seg: u32 },
    /// `TTTTTTTT.history`: how a timeline branched off.
    History { timeline: u32 },
    /// `TTTTTTTTLLLLLLLLSSSSSSSS.OOOOOOOO.backup`: a base backup's label.
    BackupLabel { timeline: u32 },
}

fn hex8(s: &str) -> Option<u32> {
    (s.len() == 8 && s.bytes().all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b)))
        .then(|| u32::from_str_radix(s, 16).ok())
        .flatten()
}

impl WalFile {
    /// Parses a WAL file name; anything else (a `.partial` file, a path, a typo) is refused.
    ///
    /// Errors: `Usage` naming the file.
    pub fn parse(name: &str) -> Result<WalFile> {
        let segment = |s: &str| -> Option<(u32, u32, u32)> {
            (s.len() == 24).then_some(())?;
            Some((hex8(&s[..8])?, hex8(&s[8..16])?, hex8(&s[16..])?))
        };
        if let Some((timeline, log, seg)) = segment(name) {
            return Ok(WalFile::Segment { timeline, log, seg });
        }
        if let Some(t) = name.strip_suffix(".history").and_then(hex8) {
            return Ok(WalFile::History { timeline: t });
        }
        if let Some(rest) = name.strip_suffix(".backup")
            && let Some((seg, offset)) = rest.split_once('.')
            && let (Some((timeline, _, _)), Some(_)) = (segment(seg), hex8(offset))
        {
            return Ok(WalFile::BackupLabel { timeline });
        }
        let hint =
            if name.ends_with(".partial") { ": a partial segment is never archived under a final name" } else { "" };
        Err(Error::usage(format!("{name:?} is not a WAL file name tidemark archives{hint}")))
    }

    pub fn timeline(&self) -> u32 {
        match self {
            WalFile::Segment { timeline, .. } | WalFile::History { timeline } | WalFile::BackupLabel { timeline } => {
                *timeline
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIXTEEN_MIB: u64 = 16 * 1024 * 1024;

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
