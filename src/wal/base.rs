//! Base backups: `pg_basebackup -Ft -D - -X none` streamed through the pipeline into
//! `base/<id>/base.tar.zst.age`, its WAL range read from the `backup_manifest` inside the
//! tar as it passes (no second pass), the manifest committed last; and the way back: the
//! tar extracted into an empty data directory, refusing entries that could escape it.

use std::io::Read;
use std::path::{Component, Path};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt;

use super::Lsn;
use crate::error::{Error, ErrorKind, Result};
use crate::keys::{Identities, Recipients};
use crate::pg::ConnSpec;
use crate::progress::Progress;
use crate::repo::Repository;
use crate::repo::layout;
use crate::repo::manifest::ObjectEntry;
use crate::repo::pipeline::ObjectWriter;
use crate::repo::pipeline::read_object;

pub const BASE_MANIFEST_FORMAT: u32 = 1;

/// What makes a base backup exist; written after its tar is durable.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BaseManifest {
    pub format: u32,
    pub id: String,
    pub workspace: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub tidemark_version: String,
    pub system_identifier: String,
    pub server_version: String,
    pub wal_segment_size: u64,
    pub timeline: u32,
    /// Replay starts here...
    pub start_lsn: Lsn,
    /// ...and the copy is consistent from here on: the earliest moment it can restore to.
    pub end_lsn: Lsn,
    pub tar: ObjectEntry,
    /// An incremental base backup's parent (a full one or another incremental): its tar
    /// holds only what changed since the parent started (see `wal::incremental`), and a
    /// restore assembles the chain. `None`: a full base backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
}

/// Feeds chunks from a channel to a blocking reader (the tar parser).
pub(super) struct ChunkReader<F> {
    next: F,
    current: Bytes,
}

impl<F> ChunkReader<F> {
    pub(super) fn new(next: F) -> ChunkReader<F> {
        ChunkReader { next, current: Bytes::new() }
    }
}

/// An error reading a base backup's tar: the stream's own (hash, authentication, key) when
/// tar passes it on, tar's verdict on the content otherwise. Both name `object`.
pub(super) fn stream_error(e: &std::io::Error, object: &str) -> Error {
    let mut source: Option<&(dyn std::error::Error + 'static)> = e.get_ref().map(|inner| inner as _);
    while let Some(current) = source {
        if let Some(inner) = current.downcast_ref::<Error>() {
            return Error::new(inner.kind(), inner.report());
        }
        source = current.source();
    }
    Error::integrity(format!("the base backup object {object} is damaged: {e}"))
}

impl<F: FnMut() -> Option<std::io::Result<Bytes>>> Read for ChunkReader<F> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match (self.next)() {
                Some(chunk) => self.current = chunk?,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

/// Finds the `backup_manifest` entry of pg_basebackup's tar as the stream goes by: each
/// 512-byte header is read with the tar crate, every entry's content is skipped in place
/// (no copy, no second reader) except that one's, which is kept.
#[derive(Debug, Default)]
struct ManifestFinder {
    /// A header that spans two chunks, so far.
    header: Vec<u8>,
    /// Bytes of the current entry (content and padding) still to pass over.
    skip: u64,
    /// The manifest being collected, and how much of its content is still to come.
    capture: Option<(Vec<u8>, u64)>,
    found: Option<Vec<u8>>,
    /// The end-of-archive block was seen.
    ended: bool,
}

impl ManifestFinder {
    /// Takes the next bytes of the tar.
    ///
    /// Errors: `InvalidData` for a header whose size cannot be read.
    fn feed(&mut self, mut data: &[u8]) -> std::io::Result<()> {
        const BLOCK: usize = 512;
        while !data.is_empty() && !self.ended {
            if self.skip > 0 {
                let n = data.len().min(usize::try_from(self.skip).unwrap_or(usize::MAX));
                if let Some((text, left)) = &mut self.capture {
                    let take = n.min(usize::try_from(*left).unwrap_or(usize::MAX));
                    text.extend_from_slice(&data[..take]);
                    *left -= take as u64;
                    if *left == 0 {
                        self.found = self.capture.take().map(|(text, _)| text);
                    }
                }
                self.skip -= n as u64;
                data = &data[n..];
                continue;
            }
            let n = (BLOCK - self.header.len()).min(data.len());
            self.header.extend_from_slice(&data[..n]);
            data = &data[n..];
            if self.header.len() < BLOCK {
                break;
            }
            let block: [u8; BLOCK] = std::mem::take(&mut self.header).try_into().expect("a whole block");
            if block.iter().all(|b| *b == 0) {
                self.ended = true;
                break;
            }
            let header = tar::Header::from_byte_slice(&block);
            let size = header.entry_size()?;
            self.skip = size.div_ceil(BLOCK as u64) * BLOCK as u64;
            if header.entry_type().is_file() && header.path_bytes().as_ref() == b"backup_manifest" {
                let capacity = usize::try_from(size).unwrap_or(0).min(64 << 20);
                self.capture = Some((Vec::with_capacity(capacity), size));
                if size == 0 {
                    self.found = self.capture.take().map(|(text, _)| text);
                }
            }
        }
        Ok(())
    }
}

/// `WAL-Ranges` of a `backup_manifest`: the timeline and the range replay must cover.
fn wal_range(manifest: &[u8]) -> Result<(u32, Lsn, Lsn)> {
    #[derive(Deserialize)]
    struct Manifest {
        #[serde(rename = "WAL-Ranges")]
        wal_ranges: Vec<Range>,
    }
    #[derive(Deserialize)]
    struct Range {
        #[serde(rename = "Timeline")]
        timeline: u32,
        #[serde(rename = "Start-LSN")]
        start: Lsn,
        #[serde(rename = "End-LSN")]
        end: Lsn,
    }
    let parsed: Manifest = serde_json::from_slice(manifest)
        .map_err(|e| Error::internal(format!("pg_basebackup's backup_manifest is not what tidemark expects: {e}")))?;
    match parsed.wal_ranges.as_slice() {
        [one] => Ok((one.timeline, one.start, one.end)),
        _ => Err(Error::new(
            ErrorKind::Refused,
            "the base backup spans a timeline switch (it was taken while the server was promoted); take another",
        )),
    }
}

/// How much of pg_basebackup's tar is read ahead of the pipeline (chunks of up to
/// [`TAR_CHUNK`]).
const TAR_CHUNKS_AHEAD: usize = 4;
const TAR_CHUNK: usize = 1 << 20;

/// The thread reading the tar; what the manifest finder found once it ended.
type TarReader = tokio::task::JoinHandle<std::io::Result<ManifestFinder>>;

/// Reads pg_basebackup's tar on a thread of its own, in chunks of up to 1 MiB handed over
/// a bounded channel, picking out the backup_manifest as it passes; returns the chunks
/// and, once the tar ended, what the finder found. The pipe is widened to 1 MiB. Read
/// inside the task that compresses, pg_basebackup stopped at every full 64-KiB pipe while
/// a batch was compressed, and the server with it: both cores idled a third of the time.
/// When the receiver goes away (the backup failed or was stopped), the reader stops and
/// closes the pipe.
///
/// Errors: the pipe cannot be taken over from the runtime.
fn read_tar(stdout: tokio::process::ChildStdout) -> Result<(tokio::sync::mpsc::Receiver<Vec<u8>>, TarReader)> {
    use nix::fcntl::{FcntlArg, OFlag, fcntl};
    let fd = stdout.into_owned_fd()?;
    let flags = OFlag::from_bits_truncate(fcntl(&fd, FcntlArg::F_GETFL).map_err(std::io::Error::from)?);
    fcntl(&fd, FcntlArg::F_SETFL(flags - OFlag::O_NONBLOCK)).map_err(std::io::Error::from)?;
    // A smaller pipe (an unprivileged user over its pipe quota) only costs speed.
    let _ = fcntl(&fd, FcntlArg::F_SETPIPE_SZ(TAR_CHUNK as i32));
    let mut pipe = std::fs::File::from(fd);
    let (tx, rx) = tokio::sync::mpsc::channel::<Vec<u8>>(TAR_CHUNKS_AHEAD);
    let reader = tokio::task::spawn_blocking(move || {
        let mut finder = ManifestFinder::default();
        loop {
            // A whole chunk unless the tar ends first.
            let mut chunk = Vec::with_capacity(TAR_CHUNK);
            (&mut pipe).take(TAR_CHUNK as u64).read_to_end(&mut chunk)?;
            if chunk.is_empty() {
                return Ok(finder);
            }
            finder.feed(&chunk)?;
            if tx.blocking_send(chunk).is_err() {
                return Ok(finder);
            }
        }
    });
    Ok((rx, reader))
}

/// Facts about the server a base backup records.
struct ServerFacts {
    system_identifier: String,
    server_version: String,
    wal_segment_size: u64,
}

async fn server_facts(spec: &ConnSpec, wal_streamed: bool) -> Result<ServerFacts> {
    let mut conn = spec.connect().await?;
    let (system_identifier, server_version, wal_segment_size, archive_mode): (String, String, i64, String) =
        sqlx::query_as(
            "SELECT (SELECT system_identifier::text FROM pg_control_system()), current_setting('server_version'), \
             pg_size_bytes(current_setting('wal_segment_size')), current_setting('archive_mode')",
        )
        .fetch_one(&mut conn)
        .await?;
    wal_kept(&archive_mode, wal_streamed)?;
    Ok(ServerFacts { system_identifier, server_version, wal_segment_size: wal_segment_size as u64 })
}

/// Refuses a base backup whose WAL nothing keeps: `archive_mode` off on the source and no
/// WAL stream for the workspace.
///
/// Errors: `Refused`, saying how to keep it.
pub(super) fn wal_kept(archive_mode: &str, wal_streamed: bool) -> Result<()> {
    if archive_mode == "off" && !wal_streamed {
        return Err(Error::new(
            ErrorKind::Refused,
            "archive_mode is off on the source and the workspace has no WAL stream: a base backup without its WAL \
             cannot be restored. Set archive_mode = on and archive_command = 'tidemark wal push %p', or \
             wal-stream = true for the workspace and run `tidemark serve` (see docs/guide/05-point-in-time.md), then retry",
        ));
    }
    Ok(())
}

/// Takes a base backup of the workspace's cluster. `stream_slot`: the workspace's WAL is
/// streamed (`wal stream`) through this replication slot, so archive_mode may be off; the
/// slot is created first (reserving WAL) if missing, so a stream that starts later still
/// receives the WAL from the backup's start.
///
/// Errors: `Refused` when WAL is neither archived nor streamed, `Database` when pg_basebackup fails (no
/// REPLICATION privilege, no pg_hba entry: its message says which), `Unavailable` for the
/// server or the store. Nothing is visible unless it completes.
pub async fn take(
    repo: &Repository,
    recipients: &Recipients,
    spec: &ConnSpec,
    bin_dir: Option<&Path>,
    workspace: &str,
    stream_slot: Option<&str>,
    progress: &Progress,
) -> Result<BaseManifest> {
    let facts = server_facts(spec, stream_slot.is_some()).await?;
    if let Some(slot) = stream_slot {
        super::stream::ensure_slot(spec, slot).await?;
    }
    let started_at = Utc::now();
    let id = layout::new_snapshot_id(started_at);
    let tool = crate::pg::tool(bin_dir, "pg_basebackup");
    let mut cmd = tokio::process::Command::new(&tool);
    cmd.args(["-D", "-", "-F", "tar", "-X", "none", "--checkpoint=fast", "--no-password"])
        .arg(format!("--label=tidemark {id}"))
        .env("LC_ALL", "C")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    spec.apply_to_command(&mut cmd);
    let mut child = cmd.spawn().map_err(|e| crate::pg::tool_spawn_error(&tool, &e))?;
    let stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let errors = tokio::spawn(async move {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text).await;
        text
    });

    // The tar goes to the repository, and the backup_manifest (the last entry, for the WAL
    // range) is picked out of it on the way, by a reader of its own (see [`read_tar`]).
    let (chunks, reader) = read_tar(stdout)?;
    let mut writer = ObjectWriter::new(repo, layout::base_tar(workspace, &id), "base.tar.zst.age".into(), recipients)?;
    let copied: Result<()> = async {
        let mut chunks = chunks;
        while let Some(chunk) = chunks.recv().await {
            writer.write(&chunk).await?;
            progress.add_bytes(chunk.len() as u64);
        }
        Ok(())
    }
    .await;
    if copied.is_err() {
        // Nothing takes its output any more.
        let _ = child.start_kill();
    }
    // The channel also ends when the reader fails: what it says decides.
    let read = reader.await.unwrap_or_else(|e| Err(std::io::Error::other(format!("the reader failed: {e}"))));
    let status = child.wait().await?;
    let stderr = errors.await.unwrap_or_default();
    let finder =
        match copied.and_then(|()| read.map_err(|e| Error::internal(format!("reading pg_basebackup's tar: {e}")))) {
            Ok(finder) => finder,
            Err(e) => {
                writer.abort().await;
                return Err(e.context(format!("taking base backup {id} of workspace {workspace}")));
            }
        };
    if !status.success() {
        writer.abort().await;
        let tail: Vec<&str> = stderr.lines().rev().take(12).collect::<Vec<_>>().into_iter().rev().collect();
        let hint = if stderr.contains("replication")
            && (stderr.contains("permission") || stderr.contains("must be") || stderr.contains("pg_hba.conf"))
        {
            "\nA base backup needs a role with REPLICATION (ALTER ROLE <role> REPLICATION;) and a pg_hba.conf \
             line for the `replication` database (host replication <role> <address>/32 scram-sha-256); see \
             docs/guide/10-operating.md, Privileges"
        } else {
            ""
        };
        return Err(Error::new(
            ErrorKind::Database,
            format!("pg_basebackup failed ({status}): {}{hint}", tail.join("\n")),
        ));
    }
    let backup_manifest = finder.found.ok_or_else(|| {
        Error::new(ErrorKind::Refused, "pg_basebackup's tar has no backup_manifest (PostgreSQL 13 or newer is needed)")
    })?;
    let (timeline, start_lsn, end_lsn) = wal_range(&backup_manifest)?;
    let tar = writer.finish().await?;
    let manifest = BaseManifest {
        format: BASE_MANIFEST_FORMAT,
        id: id.clone(),
        workspace: workspace.to_string(),
        started_at,
        finished_at: Utc::now(),
        tidemark_version: env!("CARGO_PKG_VERSION").to_string(),
        system_identifier: facts.system_identifier,
        server_version: facts.server_version,
        wal_segment_size: facts.wal_segment_size,
        timeline,
        start_lsn,
        end_lsn,
        tar,
        parent: None,
    };
    let path = layout::base_manifest(workspace, &id);
    repo.put_sealed(&path, &manifest, recipients)
        .await
        .map_err(|e| e.context(format!("committing base backup {id}")))?;
    Ok(manifest)
}

/// Every committed base backup of a workspace whose manifest can be read, oldest first
/// (damaged ones are left out: [`read_all`] names them).
///
/// Errors: `Key` when no manifest opens with the identity, `Unavailable` for the store.
pub async fn list(repo: &Repository, identities: &Identities, workspace: &str) -> Result<Vec<BaseManifest>> {
    Ok(read_all(repo, identities, workspace).await?.items)
}

/// Every committed base backup's manifest, sorted by end LSN, and those that cannot be
/// read (damaged; see [`crate::repo::sort_out`]): one damaged manifest must not block a
/// restore from another base backup.
///
/// Errors: `Key` when no manifest opens with the identity, `Unavailable` for the store.
pub async fn read_all(
    repo: &Repository,
    identities: &Identities,
    workspace: &str,
) -> Result<crate::repo::Readable<BaseManifest>> {
    let listed = repo.list(&layout::base_backups(workspace)).await?;
    let mut read = Vec::new();
    for object in listed.iter().filter(|m| m.key.filename() == Some("manifest.json.age")) {
        let id = object.key.parts().nth(3).map(|p| p.as_ref().to_string()).unwrap_or_default();
        let manifest = async {
            let what = format!("the base backup manifest {}", object.key);
            let manifest: BaseManifest = repo
                .read_sealed(&object.key, identities, &what)
                .await?
                .ok_or_else(|| Error::not_found(format!("{what} was deleted while it was read")))?;
            if layout::base_manifest(workspace, &manifest.id) != object.key {
                return Err(Error::integrity(format!("{} describes another base backup: it was moved", object.key)));
            }
            Ok(manifest)
        }
        .await;
        read.push((id, manifest));
    }
    let mut out = crate::repo::sort_out(read)?;
    out.items.sort_by_key(|m| m.end_lsn);
    Ok(out)
}

/// Extracts a base backup into `dest` (an existing, empty folder), verifying the object.
/// Only plain files and folders are written; an entry that is absolute, climbs out with
/// `..`, or is a link (tablespaces are not supported) is refused.
///
/// Errors: `Integrity` for a damaged object or a refused entry, `Key` for a wrong identity.
pub async fn extract(
    repo: &Repository,
    identities: &Identities,
    manifest: &BaseManifest,
    dest: &Path,
    progress: &Progress,
) -> Result<()> {
    let key = layout::base_tar(&manifest.workspace, &manifest.id);
    let mut stream = read_object(repo, &key, &manifest.tar, identities).await?;
    let (dest, progress, object) = (dest.to_path_buf(), progress.clone(), key.to_string());
    tokio::task::spawn_blocking(move || {
        let reader = ChunkReader {
            next: || {
                let chunk = stream.blocking_recv()?;
                if let Ok(bytes) = &chunk {
                    progress.add_bytes(bytes.len() as u64);
                }
                Some(chunk.map_err(std::io::Error::other))
            },
            current: Bytes::new(),
        };
        let mut archive = tar::Archive::new(reader);
        archive.set_preserve_permissions(true);
        let io = |e: std::io::Error| stream_error(&e, &object);
        for entry in archive.entries().map_err(io)? {
            let mut entry = entry.map_err(io)?;
            let path = entry.path().map_err(io)?.into_owned();
            let safe = path.components().all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
            let kind = entry.header().entry_type();
            if !safe || !(kind.is_file() || kind.is_dir()) {
                return Err(Error::integrity(format!(
                    "the base backup holds {} ({kind:?}), which tidemark does not restore (links and tablespaces \
                     are not supported; nothing outside the data directory is written)",
                    path.display()
                )));
            }
            entry.unpack_in(&dest).map_err(io)?;
        }
        // Drain: the stream's last item carries the verdict on the whole object.
        let mut rest = Vec::new();
        archive.into_inner().read_to_end(&mut rest).map_err(io)?;
        Ok(())
    })
    .await
    .map_err(|e| Error::internal(format!("extract task: {e}")))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wal_range_comes_from_the_backup_manifest() {
        let text = br#"{"PostgreSQL-Backup-Manifest-Version": 1, "Files": [],
            "WAL-Ranges": [{ "Timeline": 1, "Start-LSN": "0/2000028", "End-LSN": "0/2000100" }]}"#;
        let (timeline, start, end) = wal_range(text).unwrap();
        assert_eq!((timeline, start.to_string(), end.to_string()), (1, "0/2000028".into(), "0/2000100".into()));
        let two = br#"{"WAL-Ranges": [{ "Timeline": 1, "Start-LSN": "0/1", "End-LSN": "0/2" },
            { "Timeline": 2, "Start-LSN": "0/2", "End-LSN": "0/3" }]}"#;
        assert_eq!(wal_range(two).unwrap_err().kind(), ErrorKind::Refused);
    }

    #[test]
    fn the_manifest_is_picked_out_of_the_tar_whatever_the_chunks() {
        let long = format!("base/{}/16384", "x".repeat(120));
        let big: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
        let manifest = br#"{"WAL-Ranges": []}"#.to_vec();
        let mut builder = tar::Builder::new(Vec::new());
        let entries: [(&str, &[u8]); 6] = [
            ("backup_label", b"START WAL LOCATION"),
            ("empty", b""),
            (&long, &big),
            ("global/backup_manifest", b"a decoy in a folder"),
            ("backup_manifest.old", b"another decoy"),
            ("backup_manifest", &manifest),
        ];
        for (name, body) in entries {
            let mut header = tar::Header::new_gnu();
            header.set_size(body.len() as u64);
            header.set_mode(0o600);
            builder.append_data(&mut header, name, body).unwrap();
        }
        let bytes = builder.into_inner().unwrap();
        for size in [1, 7, 100, 511, 512, 513, 4096, bytes.len()] {
            let mut finder = ManifestFinder::default();
            for chunk in bytes.chunks(size) {
                finder.feed(chunk).unwrap();
            }
            assert!(finder.ended, "the end of the archive, in chunks of {size}");
            assert_eq!(finder.found.as_deref(), Some(&manifest[..]), "in chunks of {size}");
        }
        // A tar without one: nothing found.
        let mut finder = ManifestFinder::default();
        finder.feed(&bytes[..1024]).unwrap();
        assert_eq!(finder.found, None);
    }

    fn piped(script: &str) -> tokio::process::Child {
        tokio::process::Command::new("sh")
            .args(["-c", script])
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap()
    }

    #[tokio::test]
    async fn the_tar_reader_hands_over_every_byte_in_bounded_chunks_and_finds_the_manifest() {
        let dir = tempfile::tempdir().unwrap();
        let manifest = br#"{"WAL-Ranges": []}"#.to_vec();
        // More than the pipe and several chunks; not a multiple of either.
        let big: Vec<u8> = (0..3_500_017u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        let mut builder = tar::Builder::new(Vec::new());
        for (name, body) in [("base/1/1259", &big[..]), ("backup_manifest", &manifest[..])] {
            let mut header = tar::Header::new_gnu();
            header.set_size(body.len() as u64);
            header.set_mode(0o600);
            builder.append_data(&mut header, name, body).unwrap();
        }
        let bytes = builder.into_inner().unwrap();
        let file = dir.path().join("base.tar");
        fs_err::write(&file, &bytes).unwrap();
        let mut child = piped(&format!("cat {}", file.display()));
        let (mut chunks, reader) = read_tar(child.stdout.take().unwrap()).unwrap();
        let mut got = Vec::new();
        while let Some(chunk) = chunks.recv().await {
            assert!(!chunk.is_empty() && chunk.len() <= TAR_CHUNK, "a chunk of {} bytes", chunk.len());
            got.extend_from_slice(&chunk);
        }
        let finder = reader.await.unwrap().unwrap();
        assert!(got == bytes, "{} bytes handed over of {}", got.len(), bytes.len());
        assert_eq!(finder.found.as_deref(), Some(&manifest[..]));
        assert!(child.wait().await.unwrap().success());
    }

    #[tokio::test]
    async fn the_tar_reader_stops_and_closes_the_pipe_when_nobody_takes_its_chunks() {
        // A writer that never ends on its own: only a closed pipe stops it.
        let mut child = piped("cat /dev/zero");
        let (mut chunks, reader) = read_tar(child.stdout.take().unwrap()).unwrap();
        assert!(chunks.recv().await.is_some());
        drop(chunks);
        let finder = tokio::time::timeout(std::time::Duration::from_secs(10), reader).await.expect("the reader stops");
        assert!(finder.is_ok(), "a receiver that went away is not the reader's failure");
        let status =
            tokio::time::timeout(std::time::Duration::from_secs(10), child.wait()).await.expect("the writer ends");
        assert!(!status.unwrap().success(), "the writer ended by the closed pipe");
    }
}
