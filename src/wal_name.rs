//! WAL file names: the kinds of file an archive_command is handed. The repository lays
//! WAL objects out by them, and `wal` ships and fetches them.

use crate::error::{Error, Result};

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
            (s.len() == 24 && s.is_ascii()).then_some(())?;
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
