//! The page-level core of incremental base backups (issue #36; not yet wired to a command:
//! `basebackup --incremental`, the chain's restore and its retention are still to come).
//!
//! An incremental backup keeps, of each relation file, only the 8 KiB pages whose LSN is
//! newer than its parent's start LSN, with the file's size now; of other files, all of
//! them. Why that is enough, case by case:
//!
//! - A page changed since the parent started carries the LSN of the WAL record that changed
//!   it (every change of a logged relation is WAL-logged), so it is kept. Hint bits are set
//!   without WAL; a restored page without them is only less hinted.
//! - A page torn by a write during the copy was written after the backup's start
//!   checkpoint, which flushed every page dirtied before it: it was changed after the start,
//!   and with `full_page_writes` (required) its first change after the start is a full-page
//!   image in the WAL that recovery replays over whatever the chain holds. A page whose
//!   header cannot be read is kept whole anyway.
//! - Relation extension during the copy: the file is read to its end as it was then; later
//!   pages are in the WAL. The file's size is kept: a truncated file gets its new size, a
//!   longer one is extended. A page of zeros (added by extension and never written, LSN 0)
//!   is kept too: it may stand where, before a truncation the parent does not know of, a
//!   page with old rows stood (and compresses to nothing).
//! - New relations (and `VACUUM FULL`, `TRUNCATE`, a new index: a new file) have no
//!   parent: every page they wrote since is newer than the parent's start. Dropped ones are
//!   gone from the backup's file list, and the restore removes what the list lacks.
//! - Unlogged relations: their main forks are not backed up (recovery resets them from the
//!   init fork, which is); temporary files and what `pg_basebackup` leaves out likewise.
//! - The visibility map is cleared without a WAL record of its own (a heap record clears it
//!   on replay only from the start on), and the free space map is not WAL-logged: both forks
//!   are kept whole (they are small).
//! - `global/pg_control` is copied last.

use std::io::{Read, Seek, SeekFrom, Write};

use super::Lsn;
use crate::error::{Error, Result};

/// Postgres' block size (tidemark refuses clusters built with another).
pub const BLOCK: usize = 8192;

/// What a file of a data directory is to an incremental backup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileClass {
    /// Left out, as `pg_basebackup` leaves it out (WAL, runtime state, temporary files,
    /// a previous backup's label).
    Excluded,
    /// A relation's main fork segment (or an init fork, kept whole): pages newer than the
    /// parent only.
    RelationPages,
    /// Kept whole: anything else, and the visibility map, free space map and init forks.
    Whole,
    /// `global/pg_control`: kept whole, copied last.
    Control,
}

/// Folders whose contents a backup leaves out (kept as empty folders where Postgres needs
/// them), as `pg_basebackup` does.
const EXCLUDED_DIRS: [&str; 9] = [
    "pg_wal",
    "pg_replslot",
    "pg_dynshmem",
    "pg_notify",
    "pg_serial",
    "pg_snapshots",
    "pg_stat_tmp",
    "pg_subtrans",
    "pg_log",
];

/// Files a backup leaves out wherever they are.
const EXCLUDED_FILES: [&str; 8] = [
    "postmaster.pid",
    "postmaster.opts",
    "backup_label",
    "backup_label.old",
    "tablespace_map",
    "backup_manifest",
    "current_logfiles",
    "pg_internal.init",
];

/// What `path` (relative to the data directory, `/`-separated) is to an incremental backup.
/// `unlogged` says whether the relation whose file it is has an init fork (an unlogged
/// relation: its main fork is left out).
pub fn classify(path: &str, unlogged: bool) -> FileClass {
    let parts: Vec<&str> = path.split('/').collect();
    let name = parts.last().copied().unwrap_or_default();
    if parts.first().is_some_and(|top| EXCLUDED_DIRS.contains(top))
        || EXCLUDED_FILES.contains(&name)
        || parts.iter().any(|p| p.starts_with("pgsql_tmp"))
        || (parts.first() == Some(&"pg_tblspc") && parts.len() > 2 && parts[2].starts_with("pgsql_tmp"))
    {
        return FileClass::Excluded;
    }
    if path == "global/pg_control" {
        return FileClass::Control;
    }
    let in_relation_dir = match parts.as_slice() {
        ["base", db, _] => is_oid(db),
        ["global", _] => true,
        ["pg_tblspc", spc, _version, db, _] => is_oid(spc) && is_oid(db),
        _ => false,
    };
    match (in_relation_dir, relation_fork(name)) {
        (true, Some(Fork::Temp)) => FileClass::Excluded,
        (true, Some(Fork::Main)) if unlogged => FileClass::Excluded,
        (true, Some(Fork::Main)) => FileClass::RelationPages,
        _ => FileClass::Whole,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fork {
    Main,
    Other,
    Temp,
}

/// The fork of a relation file name (`16384`, `16384.1`, `16384_vm`, `16384_fsm.2`,
/// `16384_init`), or `None` when it is not one.
fn relation_fork(name: &str) -> Option<Fork> {
    let base = match name.split_once('.') {
        Some((base, segment)) if !segment.is_empty() && segment.bytes().all(|b| b.is_ascii_digit()) => base,
        Some(_) => return None,
        None => name,
    };
    match base.split_once('_') {
        None if is_oid(base) => Some(Fork::Main),
        // A temporary relation (`t<backend>_<node>`): Postgres removes them at start.
        Some((backend, node)) if backend.starts_with('t') && is_oid(&backend[1..]) && is_oid(node) => Some(Fork::Temp),
        Some((node, "fsm" | "vm" | "init")) if is_oid(node) => Some(Fork::Other),
        _ => None,
    }
}

fn is_oid(text: &str) -> bool {
    !text.is_empty() && text.len() <= 10 && text.bytes().all(|b| b.is_ascii_digit())
}

/// The LSN in a page's header (`pd_lsn`: the high and low halves, little-endian on the
/// machines tidemark runs on).
pub fn page_lsn(page: &[u8]) -> Lsn {
    let hi = u32::from_le_bytes(page[0..4].try_into().expect("a page has a header"));
    let lo = u32::from_le_bytes(page[4..8].try_into().expect("a page has a header"));
    Lsn((u64::from(hi) << 32) | u64::from(lo))
}

/// Whether a page's header is not one Postgres wrote (a torn or foreign page): `pd_lower`
/// and `pd_upper` out of order or out of the page. An all-zero page is a new page, not a
/// bad one.
fn header_unreadable(page: &[u8]) -> bool {
    let lower = u16::from_le_bytes([page[12], page[13]]) as usize;
    let upper = u16::from_le_bytes([page[14], page[15]]) as usize;
    let special = u16::from_le_bytes([page[16], page[17]]) as usize;
    let sane = 24 <= lower && lower <= upper && upper <= special && special <= BLOCK;
    !sane && page.iter().any(|b| *b != 0)
}

/// What an incremental backup keeps of one relation file: its size now, and which pages
/// (newer than `since`, all-zero, or with a header that cannot be read); the pages
/// themselves go to a writer as they are read (see [`changed_pages`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangedPages {
    /// The file's size in blocks when it was read.
    pub blocks: u32,
    /// The block numbers of the kept pages, in order.
    pub numbers: Vec<u32>,
}

/// Reads a relation file to its end, writes the pages it keeps to `kept` (newer than
/// `since`, all-zero — see the module's notes — or with a header that cannot be read), and
/// says which they were. Memory stays one page, whatever the file's size. A last, partial
/// page (the file was being extended) is left to the WAL.
///
/// Errors: the file system's and `kept`'s, naming nothing (the caller names the file).
pub fn changed_pages(mut file: impl Read, since: Lsn, kept: &mut impl Write) -> std::io::Result<ChangedPages> {
    let mut numbers = Vec::new();
    let mut page = vec![0u8; BLOCK];
    let mut block: u32 = 0;
    loop {
        let mut filled = 0;
        while filled < BLOCK {
            match file.read(&mut page[filled..])? {
                0 => break,
                n => filled += n,
            }
        }
        if filled < BLOCK {
            return Ok(ChangedPages { blocks: block, numbers });
        }
        if page_lsn(&page) > since || header_unreadable(&page) || page.iter().all(|b| *b == 0) {
            kept.write_all(&page)?;
            numbers.push(block);
        }
        block += 1;
    }
}

/// The magic at the start of an incremental file (`<path>.tmincr` in the backup's tar).
const MAGIC: &[u8; 8] = b"TMINCR1\0";

/// The head of an incremental file: the magic, the file's size in blocks, the number of
/// kept pages and their block numbers. The kept pages follow it, in order.
pub fn incremental_head(changed: &ChangedPages) -> Vec<u8> {
    let mut head = Vec::with_capacity(16 + 4 * changed.numbers.len());
    head.extend_from_slice(MAGIC);
    head.extend_from_slice(&changed.blocks.to_le_bytes());
    head.extend_from_slice(&(changed.numbers.len() as u32).to_le_bytes());
    for block in &changed.numbers {
        head.extend_from_slice(&block.to_le_bytes());
    }
    head
}

/// Applies an incremental file to the file of the older backup it follows (`target`, as
/// the chain so far left it): its size becomes the incremental's (truncated, or extended
/// with zero pages), then each kept page is written at its block. `what` names the file in
/// errors.
///
/// Errors: `Integrity` for an incremental file that is not one or is cut short; the file
/// system's.
pub fn apply_incremental(mut incremental: impl Read, target: &mut std::fs::File, what: &str) -> Result<()> {
    let damaged = |why: &str| Error::integrity(format!("the incremental file of {what} is damaged: {why}"));
    // Cut short, or the object under it failed its check (which names the object).
    let short = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => damaged("it is cut short"),
        _ => super::base::stream_error(&e, what),
    };
    let mut head = [0u8; 16];
    incremental.read_exact(&mut head).map_err(short)?;
    if &head[..8] != MAGIC {
        return Err(damaged("it does not start as one"));
    }
    let blocks = u32::from_le_bytes(head[8..12].try_into().expect("4 bytes"));
    let count = u32::from_le_bytes(head[12..16].try_into().expect("4 bytes")) as usize;
    if count > blocks as usize {
        return Err(damaged(&format!("{count} pages of a file of {blocks} blocks")));
    }
    let mut numbers = vec![0u8; count * 4];
    incremental.read_exact(&mut numbers).map_err(short)?;
    let numbers: Vec<u32> =
        numbers.chunks_exact(4).map(|c| u32::from_le_bytes(c.try_into().expect("4 bytes"))).collect();
    if numbers.iter().any(|b| *b >= blocks) || numbers.windows(2).any(|w| w[0] >= w[1]) {
        return Err(damaged("its block numbers are out of order or past the file's end"));
    }
    target.set_len(u64::from(blocks) * BLOCK as u64)?;
    let mut page = vec![0u8; BLOCK];
    for block in numbers {
        incremental.read_exact(&mut page).map_err(short)?;
        target.seek(SeekFrom::Start(u64::from(block) * BLOCK as u64))?;
        target.write_all(&page)?;
    }
    let mut rest = [0u8; 1];
    if incremental.read(&mut rest).map_err(short)? != 0 {
        return Err(damaged("it has bytes after its last page"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A page with header LSN `lsn` whose bytes after the header are `fill`.
    fn page(lsn: u64, fill: u8) -> Vec<u8> {
        let mut p = vec![fill; BLOCK];
        p[0..4].copy_from_slice(&((lsn >> 32) as u32).to_le_bytes());
        p[4..8].copy_from_slice(&(lsn as u32).to_le_bytes());
        p[12..14].copy_from_slice(&28u16.to_le_bytes()); // pd_lower
        p[14..16].copy_from_slice(&8000u16.to_le_bytes()); // pd_upper
        p[16..18].copy_from_slice(&(BLOCK as u16).to_le_bytes()); // pd_special
        p
    }

    #[test]
    fn files_are_classified_as_pg_basebackup_and_the_forks_need() {
        for (path, unlogged, class) in [
            ("base/5/16384", false, FileClass::RelationPages),
            ("base/5/16384.12", false, FileClass::RelationPages),
            ("base/5/16384", true, FileClass::Excluded),
            ("base/5/16384_init", true, FileClass::Whole),
            ("base/5/16384_vm", false, FileClass::Whole),
            ("base/5/16384_fsm.1", false, FileClass::Whole),
            ("global/1262", false, FileClass::RelationPages),
            ("global/pg_control", false, FileClass::Control),
            ("global/pg_filenode.map", false, FileClass::Whole),
            ("base/5/PG_VERSION", false, FileClass::Whole),
            ("base/5/pg_internal.init", false, FileClass::Excluded),
            ("pg_tblspc/16400/PG_15_202209061/5/16401", false, FileClass::RelationPages),
            ("pg_wal/000000010000000000000003", false, FileClass::Excluded),
            ("pg_stat_tmp/global.stat", false, FileClass::Excluded),
            ("base/pgsql_tmp/pgsql_tmp123.0", false, FileClass::Excluded),
            ("postmaster.pid", false, FileClass::Excluded),
            ("backup_label", false, FileClass::Excluded),
            ("pg_xact/0000", false, FileClass::Whole),
            ("postgresql.auto.conf", false, FileClass::Whole),
            ("base/5/16384.x", false, FileClass::Whole),
            ("base/5/16384_other", false, FileClass::Whole),
            ("base/5/t3_16390", false, FileClass::Excluded),
            ("base/5/t3_16390.1", false, FileClass::Excluded),
        ] {
            assert_eq!(classify(path, unlogged), class, "{path} (unlogged: {unlogged})");
        }
    }

    #[test]
    fn only_pages_newer_than_the_parent_are_kept_with_the_files_size() {
        let since = Lsn(0x1_0000_0500);
        let mut file = Vec::new();
        file.extend(page(0x1_0000_0100, 1)); // older: left to the parent
        file.extend(page(0x1_0000_0600, 2)); // newer
        file.extend(vec![0u8; BLOCK]); // a zero page: kept (it may hide an old page)
        let mut torn = page(0x1_0000_0100, 3);
        torn[14..16].copy_from_slice(&20u16.to_le_bytes()); // pd_upper before pd_lower
        file.extend(&torn);
        file.extend(page(0x2_0000_0000, 4)); // newer in the high half
        file.extend(vec![9u8; 100]); // a page being added as it was read: the WAL's
        let mut kept = Vec::new();
        let changed = changed_pages(&file[..], since, &mut kept).unwrap();
        assert_eq!(changed.blocks, 5);
        assert_eq!(changed.numbers, vec![1, 2, 3, 4]);
        assert_eq!(kept.len(), 4 * BLOCK);
        assert_eq!(kept[..BLOCK], page(0x1_0000_0600, 2));
    }

    /// The incremental file of `file` as a backup writes it: the head, then the kept pages.
    fn encoded(file: &[u8], since: Lsn) -> Vec<u8> {
        let mut kept = Vec::new();
        let changed = changed_pages(file, since, &mut kept).unwrap();
        [incremental_head(&changed), kept].concat()
    }

    #[test]
    fn an_incremental_file_applied_to_its_parents_file_gives_the_file_as_it_was_read() {
        let dir = tempfile::tempdir().unwrap();
        let since = Lsn(500);
        // The parent's file: four pages. Now: page 1 changed, then a truncation to three
        // pages, and the file grown back to six (two zero pages, one written): where the
        // parent's page 3 stood there are zeros now.
        let parent: Vec<u8> = [page(100, 1), page(100, 2), page(100, 3), page(100, 4)].concat();
        let now: Vec<u8> =
            [page(100, 1), page(600, 7), page(100, 3), vec![0; BLOCK], vec![0; BLOCK], page(700, 8)].concat();
        let incremental = encoded(&now, since);
        assert!(incremental.len() < now.len());
        let path = dir.path().join("16384");
        std::fs::write(&path, &parent).unwrap();
        let mut target = std::fs::OpenOptions::new().read(true).write(true).open(&path).unwrap();
        apply_incremental(&incremental[..], &mut target, "base/5/16384").unwrap();
        drop(target);
        assert_eq!(std::fs::read(&path).unwrap(), now);

        // Shorter now: truncated.
        let short: Vec<u8> = [page(100, 1), page(900, 5)].concat();
        let incremental = encoded(&short, since);
        let mut target = std::fs::OpenOptions::new().read(true).write(true).open(&path).unwrap();
        apply_incremental(&incremental[..], &mut target, "base/5/16384").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), short);

        // Damaged: refused, naming the file.
        let mut target = std::fs::OpenOptions::new().read(true).write(true).open(&path).unwrap();
        for bad in [&incremental[..incremental.len() - 1], &incremental[1..], &b"TMINCR1\0\x01\0\0\0\x05\0\0\0"[..]] {
            let e = apply_incremental(bad, &mut target, "base/5/16384").unwrap_err();
            assert_eq!(e.kind(), crate::error::ErrorKind::Integrity);
            assert!(e.message().contains("base/5/16384"), "{}", e.message());
        }
        let mut trailing = incremental.clone();
        trailing.push(0);
        assert!(apply_incremental(&trailing[..], &mut target, "base/5/16384").is_err());
    }
}
