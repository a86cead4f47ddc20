//! Incremental base backups on their way in and out: taking one (a non-exclusive backup
//! session, the data directory read directly, what changed since the parent put in a tar
//! through the pipeline, the manifest last) and assembling a chain into a data directory
//! (the full one extracted, each incremental applied in order, what the newest lacks
//! removed). The page-level rules and why they are safe: [`super::incremental`].

use std::collections::{BTreeSet, HashMap};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use chrono::Utc;
use serde::{Deserialize, Serialize};

use super::Lsn;
use super::base::{self, BASE_MANIFEST_FORMAT, BaseManifest};
use super::incremental::{BLOCK, FileClass, changed_pages, classify, incremental_head};
use crate::error::{Error, ErrorKind, Result};
use crate::keys::{Identities, Recipients};
use crate::pg::ConnSpec;
use crate::progress::Progress;
use crate::repo::Repository;
use crate::repo::layout;
use crate::repo::pipeline::{ObjectWriter, read_object};

/// The tar entry that lists every file the data directory had (what a restore keeps).
pub const FILE_LIST: &str = "tidemark_incremental.json";
/// The suffix of an incremental file in the tar (see [`super::incremental::incremental_head`]).
pub const SUFFIX: &str = ".tmincr";

#[derive(Debug, Serialize, Deserialize)]
struct FileList {
    parent: String,
    files: Vec<String>,
}

/// The chain that restores `base`, oldest (the full one) first, from `bases`.
///
/// Errors: `Integrity` naming the link that is missing (or whose manifest cannot be read).
pub fn chain_of(base: &BaseManifest, bases: &[BaseManifest]) -> Result<Vec<BaseManifest>> {
    let by_id: HashMap<&str, &BaseManifest> = bases.iter().map(|b| (b.id.as_str(), b)).collect();
    let mut chain = vec![base.clone()];
    while let Some(parent) = chain.last().and_then(|b| b.parent.clone()) {
        let Some(found) = by_id.get(parent.as_str()) else {
            return Err(Error::integrity(format!(
                "base backup {} is incremental and needs base backup {parent}, which is missing or cannot be read: \
                 `tidemark check` names it; a restore needs a whole chain",
                chain.last().map(|b| b.id.as_str()).unwrap_or_default()
            )));
        };
        if chain.len() > bases.len() {
            return Err(Error::integrity(format!("the chain of base backup {} loops", base.id)));
        }
        chain.push((*found).clone());
    }
    chain.reverse();
    Ok(chain)
}

/// Sends a blocking writer's bytes to the async side in chunks.
struct ChannelWriter {
    tx: tokio::sync::mpsc::Sender<Vec<u8>>,
    buf: Vec<u8>,
}

const CHUNK: usize = 1 << 20;

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.flush()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if !self.buf.is_empty() {
            let chunk = std::mem::take(&mut self.buf);
            self.tx.blocking_send(chunk).map_err(|_| std::io::Error::other("the upload stopped"))?;
        }
        Ok(())
    }
}

/// Every file below `dir` (relative, `/`-separated), sorted; links are not followed.
fn files_below(dir: &Path) -> std::io::Result<Vec<String>> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        for entry in std::fs::read_dir(dir.join(&rel))? {
            let entry = entry?;
            let kind = entry.file_type()?;
            let path = rel.join(entry.file_name());
            if kind.is_dir() {
                stack.push(path);
            } else if kind.is_file() {
                out.push(path.to_string_lossy().replace('\\', "/"));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Whether the main fork `rel` belongs to an unlogged relation (it has an init fork).
fn unlogged(pgdata: &Path, rel: &str) -> bool {
    let name = rel.rsplit('/').next().unwrap_or(rel);
    let node = name.split(['.', '_']).next().unwrap_or(name);
    let dir = rel.rsplit_once('/').map_or("", |(d, _)| d);
    pgdata.join(dir).join(format!("{node}_init")).exists()
}

/// Kept pages of one relation file held in memory before they spill to a temporary file.
const KEPT_IN_MEMORY: usize = 64 << 20;

fn append(tar: &mut tar::Builder<ChannelWriter>, path: &str, data: &[u8]) -> std::io::Result<()> {
    append_reader(tar, path, data.len() as u64, data)
}

fn append_reader(tar: &mut tar::Builder<ChannelWriter>, path: &str, size: u64, data: impl Read) -> std::io::Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_size(size);
    header.set_mode(0o600);
    header.set_mtime(Utc::now().timestamp() as u64);
    header.set_entry_type(tar::EntryType::Regular);
    tar.append_data(&mut header, path, data)
}

/// Writes the incremental tar of `pgdata` (pages newer than `since`, other files whole,
/// `global/pg_control` last) and returns the files it had.
fn write_tar(pgdata: &Path, since: Lsn, tar: &mut tar::Builder<ChannelWriter>) -> Result<Vec<String>> {
    fn io(path: &str) -> impl Fn(std::io::Error) -> Error + '_ {
        move |e| Error::from(e).context(format!("reading {path} of the data directory"))
    }
    // A tablespace is a link in pg_tblspc (which the walk below does not follow): its files
    // would be missing, so it is refused, as a full base backup refuses it.
    let tablespaces = std::fs::read_dir(pgdata.join("pg_tblspc")).map(|mut d| d.next().is_some()).unwrap_or(false);
    if tablespaces {
        return Err(Error::new(
            ErrorKind::Refused,
            "the cluster has tablespaces (pg_tblspc is not empty): base backups do not support them",
        ));
    }
    let mut present = Vec::new();
    for rel in files_below(pgdata).map_err(|e| Error::from(e).context(format!("listing {}", pgdata.display())))? {
        let class = classify(&rel, unlogged(pgdata, &rel));
        match class {
            FileClass::Excluded | FileClass::Control => continue,
            FileClass::Whole => {
                // A file removed since it was listed (a dropped relation): not in this backup.
                let file = match std::fs::File::open(pgdata.join(&rel)) {
                    Ok(file) => file,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(io(&rel)(e)),
                };
                // Streamed at the size it had when opened (a free space map grows with its
                // table): cut if it grew, zero-padded if it shrank, as pg_basebackup does;
                // the WAL from the backup's start repairs either.
                let size = file.metadata().map_err(io(&rel))?.len();
                let data = file.take(size).chain(std::io::repeat(0)).take(size);
                append_reader(tar, &rel, size, std::io::BufReader::new(data)).map_err(io(&rel))?;
            }
            FileClass::RelationPages => {
                let file = match std::fs::File::open(pgdata.join(&rel)) {
                    Ok(file) => file,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(io(&rel)(e)),
                };
                // The kept pages wait in memory up to 64 MiB, on disk beyond (a new 1 GiB
                // segment is all kept): the tar needs the entry's size before its bytes.
                let mut kept = tempfile::SpooledTempFile::new(KEPT_IN_MEMORY);
                let changed = changed_pages(std::io::BufReader::new(file), since, &mut kept).map_err(io(&rel))?;
                kept.seek(std::io::SeekFrom::Start(0)).map_err(io(&rel))?;
                let head = incremental_head(&changed);
                let size = (head.len() + changed.numbers.len() * BLOCK) as u64;
                append_reader(tar, &format!("{rel}{SUFFIX}"), size, std::io::Cursor::new(head).chain(kept))
                    .map_err(io(&rel))?;
            }
        }
        present.push(rel);
    }
    let control = std::fs::read(pgdata.join("global/pg_control")).map_err(io("global/pg_control"))?;
    append(tar, "global/pg_control", &control).map_err(io("global/pg_control"))?;
    present.push("global/pg_control".into());
    Ok(present)
}

/// Takes an incremental base backup of the cluster whose data directory is `pgdata` (none:
/// the server's `data_directory`; read directly: run where it is, as its owner or root),
/// holding what changed since `parent` started. One session runs `pg_backup_start` and
/// `pg_backup_stop` (non-exclusive) around the copy; with archiving on, it completes only
/// once the WAL it needs is archived, as `pg_basebackup -X none` does (a backup that
/// completes can be restored). `wal_streamed`: the workspace's WAL is streamed
/// instead (its slot was made by the full base backup).
///
/// Errors: `Refused` when it cannot be right: `full_page_writes` off, another cluster or
/// timeline than the parent's, a block size other than 8 KiB, tablespaces, PostgreSQL
/// before 15, WAL neither archived nor streamed; `Config` when `pgdata` is not the
/// server's data directory; `Database` for the session (`pg_backup_start` needs a
/// superuser or a grant) and `pg_stat_archiver`; those of the store.
/// Nothing is visible unless it completes.
// Longer than ~100 lines: one backup session's sequence (checks, start, the copy streamed to the store, stop, the label, the manifest) with what each failure leaves behind.
pub async fn take(
    repo: &Repository,
    recipients: &Recipients,
    spec: &ConnSpec,
    pgdata: Option<&Path>,
    parent: &BaseManifest,
    wal_streamed: bool,
    progress: &Progress,
) -> Result<BaseManifest> {
    let mut conn = spec.connect().await?;
    type Settings = (String, String, i32, String, String, i32, String, i64, String);
    let (fpw, system_identifier, timeline, data_directory, block_size, version, server_version, segment, archive_mode): Settings =
        sqlx::query_as(
        "SELECT current_setting('full_page_writes'), (SELECT system_identifier::text FROM pg_control_system()), \
         (SELECT timeline_id FROM pg_control_checkpoint()), current_setting('data_directory'), \
         current_setting('block_size'), current_setting('server_version_num')::int, current_setting('server_version'), \
         pg_size_bytes(current_setting('wal_segment_size')), current_setting('archive_mode')",
    )
    .fetch_one(&mut conn)
    .await
    .map_err(|e| {
        Error::from(e)
            .context("reading the server's settings (data_directory needs a superuser or pg_read_all_settings)")
    })?;
    base::wal_kept(&archive_mode, wal_streamed)?;
    let refuse = |why: String| Err(Error::new(ErrorKind::Refused, why));
    if fpw != "on" {
        return refuse(
            "full_page_writes is off: a page torn while it is copied would not be repaired by the WAL; an \
             incremental base backup needs full_page_writes = on (take full ones meanwhile)"
                .into(),
        );
    }
    if version < 150_000 {
        return refuse(format!("PostgreSQL {server_version}: incremental base backups need PostgreSQL 15 or newer"));
    }
    if block_size != "8192" {
        return refuse(format!("the cluster's block size is {block_size}; incremental base backups read 8 KiB pages"));
    }
    if system_identifier != parent.system_identifier {
        return refuse(format!(
            "base backup {} is of another cluster (system identifier {}, this one {system_identifier}): take a full \
             base backup",
            parent.id, parent.system_identifier
        ));
    }
    if timeline as u32 != parent.timeline {
        return refuse(format!(
            "the cluster is on timeline {timeline} and base backup {} on {}: after a promotion, take a full base backup",
            parent.id, parent.timeline
        ));
    }
    let pgdata = pgdata.unwrap_or(Path::new(&data_directory));
    let same = |a: &Path, b: &Path| {
        std::fs::canonicalize(a).ok().zip(std::fs::canonicalize(b).ok()).is_some_and(|(a, b)| a == b)
    };
    if !same(pgdata, Path::new(&data_directory)) {
        return Err(Error::config(format!(
            "{} is not the server's data directory ({data_directory}): an incremental base backup reads the data \
             directory itself, so it runs on the database host",
            pgdata.display()
        )));
    }
    let started_at = Utc::now();
    let id = layout::new_snapshot_id(started_at);
    let start: String = sqlx::query_scalar("SELECT pg_backup_start($1, true)::text")
        .bind(format!("tidemark {id}"))
        .fetch_one(&mut conn)
        .await
        .map_err(|e| {
            Error::from(e).context("starting the backup (pg_backup_start needs a superuser or GRANT EXECUTE)")
        })?;
    let start_lsn: Lsn = start.parse()?;
    // The copy runs on a thread of its own, the tar streamed to the store as it grows; once
    // every file is in, the session ends the backup, and its label (and the file list) end
    // the tar.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(4);
    let (files_tx, files_rx) = tokio::sync::oneshot::channel::<Result<Vec<String>>>();
    let (label_tx, label_rx) = std::sync::mpsc::channel::<Option<String>>();
    let (data, since, parent_id) = (pgdata.to_path_buf(), parent.start_lsn, parent.id.clone());
    let copier = tokio::task::spawn_blocking(move || -> Result<()> {
        let mut tar = tar::Builder::new(ChannelWriter { tx, buf: Vec::new() });
        let files = write_tar(&data, since, &mut tar);
        let present = match files {
            Ok(present) => {
                let _ = files_tx.send(Ok(present.clone()));
                present
            }
            Err(e) => {
                let _ = files_tx.send(Err(Error::new(e.kind(), e.report())));
                return Err(e);
            }
        };
        let Ok(Some(label)) = label_rx.recv() else {
            return Err(Error::new(ErrorKind::Interrupted, "the backup was not ended"));
        };
        let list = serde_json::to_vec(&FileList { parent: parent_id, files: present }).expect("serializes");
        let io = |e: std::io::Error| Error::from(e).context("finishing the incremental tar");
        append(&mut tar, "backup_label", label.as_bytes()).map_err(io)?;
        append(&mut tar, FILE_LIST, &list).map_err(io)?;
        tar.into_inner().and_then(|mut inner| inner.flush()).map_err(io)
    });
    let mut writer =
        ObjectWriter::new(repo, layout::base_tar(&parent.workspace, &id), "base.tar.zst.age".into(), recipients)?;
    let upload = async {
        let mut sent: Result<()> = Ok(());
        while let Some(chunk) = rx.recv().await {
            if sent.is_ok() {
                progress.add_bytes(chunk.len() as u64);
                sent = writer.write(&chunk).await;
            }
        }
        sent
    };
    let control = async {
        let files = files_rx.await.unwrap_or_else(|_| Err(Error::internal("the incremental copy ended early")));
        // The session ends the backup in any case (a failed one too: nothing of it is kept);
        // the wait for the archive is below (the server's own sleeps a second at a time).
        let stopped: std::result::Result<(String, String), sqlx::Error> =
            sqlx::query_as("SELECT lsn::text, labelfile FROM pg_backup_stop(false)").fetch_one(&mut conn).await;
        let stopped = stopped.map_err(|e| Error::from(e).context("ending the backup (pg_backup_stop)"));
        let _ = label_tx.send(match (&files, &stopped) {
            (Ok(_), Ok((_, label))) => Some(label.clone()),
            _ => None,
        });
        files.and(stopped)
    };
    let (uploaded, stopped) = tokio::join!(upload, control);
    let copied = copier.await.map_err(|e| Error::internal(format!("incremental copy task: {e}"))).and_then(|r| r);
    let end = match (uploaded, copied, stopped) {
        (Ok(()), Ok(()), Ok((end, _))) => end.parse::<Lsn>(),
        (Err(e), ..) | (_, Err(e), _) | (.., Err(e)) => Err(e),
    };
    // Complete only once the WAL it needs is archived, as `pg_basebackup -X none` does.
    let archived = match &end {
        Ok(end) if archive_mode != "off" => {
            // The segment that holds the WAL just before the end (a recovery reads to it).
            let before_end = Lsn(end.0.saturating_sub(1));
            let last = super::Segment::of(timeline as u32, before_end, segment as u64).name(segment as u64);
            progress.set_message(format!("waiting until WAL segment {last} is archived"));
            wait_archived(&mut conn, &last).await
        }
        _ => Ok(()),
    };
    ConnSpec::close(conn).await;
    let end = match end.and_then(|end| archived.map(|()| end)) {
        Ok(end) => end,
        Err(e) => {
            writer.abort().await;
            return Err(e.context(format!("taking incremental base backup {id}")));
        }
    };
    let tar = writer.finish().await?;
    let manifest = BaseManifest {
        format: BASE_MANIFEST_FORMAT,
        id: id.clone(),
        workspace: parent.workspace.clone(),
        started_at,
        finished_at: Utc::now(),
        tidemark_version: env!("CARGO_PKG_VERSION").to_string(),
        system_identifier,
        server_version,
        wal_segment_size: segment as u64,
        timeline: timeline as u32,
        start_lsn,
        end_lsn: end,
        tar,
        parent: Some(parent.id.clone()),
    };
    repo.put_sealed(&layout::base_manifest(&parent.workspace, &id), &manifest, recipients)
        .await
        .map_err(|e| e.context(format!("committing base backup {id}")))?;
    Ok(manifest)
}

/// Whether `pg_stat_archiver`'s `last_archived_wal` shows that `segment` is archived: it
/// is the segment, a later one, or a backup history file of the segment or a later one
/// (`<segment>.<offset>.backup`: written after the switch that completes its segment, and
/// after it by name, it is archived after it; the archiver takes the oldest ready file
/// first).
fn archived(last: Option<&str>, segment: &str) -> bool {
    last.and_then(|last| last.get(..24))
        .is_some_and(|prefix| prefix.bytes().all(|b| b.is_ascii_hexdigit()) && prefix >= segment)
}

/// Waits until the server's archiver has archived `segment` (see [`archived`]), looking ten
/// times a second; warns each minute it has not, with the archiver's last failure.
///
/// Errors: `Database` when the server cannot be asked.
async fn wait_archived(conn: &mut sqlx::PgConnection, segment: &str) -> Result<()> {
    let started = std::time::Instant::now();
    let mut warned = started;
    loop {
        // One statement, one transaction: the statistics are read anew each time.
        let (last, failed): (Option<String>, Option<String>) =
            sqlx::query_as("SELECT last_archived_wal, last_failed_wal FROM pg_stat_archiver")
                .fetch_one(&mut *conn)
                .await
                .map_err(|e| Error::from(e).context("reading pg_stat_archiver"))?;
        if archived(last.as_deref(), segment) {
            return Ok(());
        }
        if warned.elapsed() >= std::time::Duration::from_secs(60) {
            warned = std::time::Instant::now();
            tracing::warn!(
                segment,
                last_failed = failed.as_deref().unwrap_or("none"),
                waited_s = started.elapsed().as_secs(),
                "an incremental base backup waits until its WAL is archived: check archive_command"
            );
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Restores a base backup's chain (see [`chain_of`]) into the empty folder `dest`: a full
/// one extracted and checked with `pg_verifybackup` against the manifest pg_basebackup put
/// in it; an incremental one's chain assembled by [`extract_chain`], each link verified as
/// it is read (the full one's `backup_manifest` describes the full one alone).
///
/// Errors: those of [`base::extract`], [`super::recovery::verify_backup`] and [`extract_chain`].
pub async fn extract_verified(
    repo: &Repository,
    identities: &Identities,
    chain: &[BaseManifest],
    dest: &Path,
    progress: &Progress,
    bin_dir: Option<&Path>,
) -> Result<()> {
    match chain {
        [full] => {
            base::extract(repo, identities, full, dest, progress).await?;
            progress.set_message(format!("base backup {}: pg_verifybackup", full.id));
            super::recovery::verify_backup(bin_dir, dest).await
        }
        _ => extract_chain(repo, identities, chain, dest, progress).await,
    }
}

/// Restores the chain (oldest first; see [`chain_of`]) into the empty folder `dest`: the
/// full base backup extracted, then each incremental applied (an incremental file onto the
/// file as the chain left it, other files replaced), then the files the newest did not
/// have removed. Every object is verified as it is read.
///
/// Errors: `Integrity` naming a damaged object or incremental file, `Key` for a wrong
/// identity; the file system's.
pub async fn extract_chain(
    repo: &Repository,
    identities: &Identities,
    chain: &[BaseManifest],
    dest: &Path,
    progress: &Progress,
) -> Result<()> {
    let (full, incrementals) = chain.split_first().ok_or_else(|| Error::internal("an empty chain"))?;
    base::extract(repo, identities, full, dest, progress).await?;
    let mut present = None;
    for link in incrementals {
        progress.set_message(format!("base backup {}: applying", link.id));
        let key = layout::base_tar(&link.workspace, &link.id);
        let mut stream = read_object(repo, &key, &link.tar, identities).await?;
        let (dest, progress, id) = (dest.to_path_buf(), progress.clone(), link.id.clone());
        present = Some(
            tokio::task::spawn_blocking(move || {
                let reader = base::ChunkReader::new(move || {
                    let chunk = stream.blocking_recv()?;
                    if let Ok(bytes) = &chunk {
                        progress.add_bytes(bytes.len() as u64);
                    }
                    Some(chunk.map_err(std::io::Error::other))
                });
                apply_tar(reader, &dest, &id)
            })
            .await
            .map_err(|e| Error::internal(format!("apply task: {e}")))??,
        );
    }
    if let Some(present) = present {
        let dest = dest.to_path_buf();
        tokio::task::spawn_blocking(move || remove_absent(&dest, &present))
            .await
            .map_err(|e| Error::internal(format!("cleanup task: {e}")))??;
    }
    Ok(())
}

/// Applies one incremental tar to `dest`; returns the files its data directory had.
fn apply_tar(reader: impl Read, dest: &Path, id: &str) -> Result<BTreeSet<String>> {
    let object = format!("of base backup {id}");
    let io = |e: std::io::Error| base::stream_error(&e, &object);
    let mut archive = tar::Archive::new(reader);
    let mut present = None;
    for entry in archive.entries().map_err(io)? {
        let mut entry = entry.map_err(io)?;
        let path = entry.path().map_err(io)?.to_string_lossy().replace('\\', "/");
        let safe = Path::new(&path).components().all(|c| matches!(c, std::path::Component::Normal(_)));
        if !safe || !entry.header().entry_type().is_file() {
            return Err(Error::integrity(format!("base backup {id} holds {path}, which tidemark does not restore")));
        }
        if path == FILE_LIST {
            let mut text = Vec::new();
            entry.read_to_end(&mut text).map_err(io)?;
            let list: FileList = serde_json::from_slice(&text)
                .map_err(|e| Error::integrity(format!("the file list of base backup {id} is malformed: {e}")))?;
            present = Some(list.files.into_iter().collect());
            continue;
        }
        let (target, incremental) = match path.strip_suffix(SUFFIX) {
            Some(relation) => (dest.join(relation), true),
            None => (dest.join(&path), false),
        };
        if let Some(dir) = target.parent() {
            std::fs::create_dir_all(dir)?;
        }
        if incremental {
            let mut file =
                std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&target)?;
            super::incremental::apply_incremental(&mut entry, &mut file, &path)?;
        } else {
            let mut file = std::fs::File::create(&target)?;
            std::io::copy(&mut entry, &mut file).map_err(io)?;
        }
    }
    let mut rest = Vec::new();
    archive.into_inner().read_to_end(&mut rest).map_err(io)?;
    present.ok_or_else(|| Error::integrity(format!("base backup {id} has no file list: it is not an incremental one")))
}

/// Removes what a chain restored that the newest link's data directory no longer had (a
/// dropped relation, a removed database's files), and the full backup's `backup_manifest`
/// (it describes the full one alone). What a backup leaves out is left alone.
fn remove_absent(dest: &Path, present: &BTreeSet<String>) -> Result<()> {
    for rel in files_below(dest)? {
        let keep = present.contains(&rel)
            || rel == "backup_label"
            || (rel != "backup_manifest" && classify(&rel, false) == FileClass::Excluded);
        if !keep {
            std::fs::remove_file(dest.join(&rel))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::archived;

    #[test]
    fn a_segment_is_archived_once_it_or_a_later_segment_is_the_last_archived() {
        let segment = "000000010000000000000050";
        assert!(archived(Some(segment), segment));
        assert!(archived(Some("000000010000000000000051"), segment));
        assert!(archived(Some("000000020000000000000050"), segment), "a later timeline");
        assert!(archived(Some("000000010000000000000051.00000028.backup"), segment));
        // The backup's own history file, archived after its last segment.
        assert!(archived(Some("000000010000000000000050.00000028.backup"), segment));
        assert!(!archived(None, segment), "nothing archived yet");
        assert!(!archived(Some("00000001000000000000004F"), segment));
        assert!(!archived(Some("00000001000000000000004F.00000028.backup"), segment));
        assert!(!archived(Some("00000002.history"), segment), "a timeline's history names no segment");
    }
}
