//! WAL files in the repository: push (an `archive_command`), fetch (a `restore_command`),
//! and listing. A push returns only once the file is durably stored; the same content
//! pushed again succeeds; a different content under an existing name is refused; a
//! fetch writes a temporary file and renames it, so Postgres never reads half a segment.

use std::path::Path;

use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::timeline::Histories;
use crate::error::{Error, ErrorKind, Result};
use crate::keys::{Identities, Recipients};
use crate::repo::Repository;
use crate::repo::layout;
use crate::repo::pipeline::ObjectWriter;
use crate::repo::pipeline::{Expect, read_verified};

/// What a push did.
#[derive(Debug, Clone, Serialize)]
pub struct Pushed {
    pub name: String,
    pub sha256: String,
    pub bytes: u64,
    /// `false`: the repository already had this exact file (a repeated push).
    pub stored: bool,
    /// For a partial segment: where its WAL reaches (see [`super::records::reach`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reach: Option<super::Lsn>,
}

/// One archived WAL file.
#[derive(Debug, Clone, Serialize)]
pub struct Archived {
    pub name: String,
    pub sha256: String,
    pub stored_size: u64,
    /// When it was archived: an upper bound of the time of everything it holds.
    pub archived_at: chrono::DateTime<chrono::Utc>,
    /// For a streamed partial segment: the end of its last whole record, where recovery
    /// with it reaches (see [`super::records::reach`]); `None` for other files, and for a
    /// partial whose first record is not whole yet.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reach: Option<super::Lsn>,
}

const CHUNK: usize = 1 << 20;

/// The SHA-256 (hex) and size of a file.
pub async fn sha256_of(path: &Path) -> Result<(String, u64)> {
    let mut file = tokio::fs::File::open(path)
        .await
        .map_err(|e| Error::from(e).context(format!("reading the WAL file {}", path.display())))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    Ok((hex::encode(hasher.finalize()), size))
}

/// The objects already stored for a WAL file name.
async fn stored_versions(repo: &Repository, workspace: &str, name: &str) -> Result<Vec<String>> {
    let dir = layout::wal_file_dir(workspace, name)?;
    let listed = repo.list(&dir).await?;
    Ok(listed
        .iter()
        .filter_map(|m| m.key.filename().and_then(|f| f.strip_suffix(".zst.age")).map(str::to_string))
        .collect())
}

/// Archives one WAL file (segment, timeline history or backup label). A promoted standby
/// archives the last segment of the old timeline as `<segment>.partial`: that one is kept
/// like a streamed partial segment, never under the segment's final name (refusing it
/// would stall the new primary's archiver for good).
///
/// Errors: `Usage` for a name that is not a WAL file, `AlreadyExists` when a different
/// file of that name is archived, `Unavailable` for the store, `Internal` when the file
/// changes while it is read.
pub async fn push(repo: &Repository, recipients: &Recipients, workspace: &str, path: &Path) -> Result<Pushed> {
    push_with(repo, recipients, workspace, path, &mut Vec::new()).await
}

/// [`push`], reading a file that fits in memory into `buffer`, which is kept for the next
/// push: a pusher that reads segment after segment (`wal push --async`) reuses a few 16-MiB
/// buffers instead of allocating one per segment, which the allocator keeps around (the
/// pusher's peak RSS was 210-280 MiB with 4 pushes in flight).
pub async fn push_with(
    repo: &Repository,
    recipients: &Recipients,
    workspace: &str,
    path: &Path,
    buffer: &mut Vec<u8>,
) -> Result<Pushed> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| Error::usage(format!("{} is not a WAL file", path.display())))?
        .to_string();
    if let Some(segment) = name.strip_suffix(".partial")
        && matches!(super::WalFile::parse(segment), Ok(super::WalFile::Segment { .. }))
    {
        return push_partial(repo, recipients, workspace, path).await;
    }
    super::WalFile::parse(&name)?;
    store_file(repo, recipients, workspace, path, name, buffer).await
}

/// Ships the segment pg_receivewal is still writing (`<segment>.partial`) as the newest
/// version of its partial object, then deletes the older versions (`stored` is false
/// when this content was shipped already). The file grows while it is read, so it is read once
/// (one segment in memory) and that copy is hashed and stored: a torn last record is
/// harmless, recovery stops at the first invalid record. Recovery uses a partial only
/// when the segment itself is not archived. Where its WAL reaches (the end of its last
/// whole record) is recorded beside it as an empty object `<sha256>.reach-<LSN>`, so a
/// listing tells how far the streamed WAL goes without reading it.
pub async fn push_partial(repo: &Repository, recipients: &Recipients, workspace: &str, path: &Path) -> Result<Pushed> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
    let older = stored_versions(repo, workspace, &name).await?;
    let content = fs_err::tokio::read(path).await?;
    let sha256 = hex::encode(Sha256::digest(&content));
    if older.contains(&sha256) {
        return Ok(Pushed { name, sha256, bytes: content.len() as u64, stored: false, reach: None });
    }
    let key = layout::wal_object(workspace, &name, &sha256)?;
    repo.sign(&key, &sha256).await?;
    let mut writer = ObjectWriter::new(repo, key, format!("wal/{name}"), recipients)?.content_addressed();
    writer.write(&content).await?;
    match writer.finish_unhashed().await {
        Ok(_) => {}
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e.context(format!("shipping {name}"))),
    }
    let segment = name.strip_suffix(".partial").and_then(|s| super::Segment::parse(s, content.len() as u64).ok());
    let reach = segment.and_then(|s| super::records::reach(&content, s.start(content.len() as u64)));
    if let Some(reach) = reach {
        match repo.put_once(&layout::wal_reach(workspace, &name, &sha256, reach.0)?, Vec::new()).await {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e.context(format!("recording where {name} reaches"))),
        }
    }
    delete_partial_versions(repo, workspace, &name, Some(&sha256)).await?;
    Ok(Pushed { name, sha256, bytes: content.len() as u64, stored: true, reach })
}

/// Deletes every shipped version of a partial segment (once the segment is archived).
pub async fn drop_partials(repo: &Repository, workspace: &str, segment: &str) -> Result<()> {
    delete_partial_versions(repo, workspace, &format!("{segment}.partial"), None).await
}

/// Deletes the versions of a partial segment (`name` ends in `.partial`) other than
/// `keep`, and what is recorded about them (where they reach; their signatures go with
/// them in [`Repository::delete`]).
async fn delete_partial_versions(repo: &Repository, workspace: &str, name: &str, keep: Option<&str>) -> Result<()> {
    let dir = layout::wal_file_dir(workspace, name)?;
    for object in repo.list(&dir).await? {
        let Some(file) = object.key.filename() else { continue };
        if layout::is_signature(&object.key) || keep.is_some_and(|k| file.starts_with(k)) {
            continue;
        }
        repo.delete(&object.key).await?;
    }
    Ok(())
}

/// Stores a file under `name`, content-addressed; see [`push`].
async fn store_file(
    repo: &Repository,
    recipients: &Recipients,
    workspace: &str,
    path: &Path,
    name: String,
    buffer: &mut Vec<u8>,
) -> Result<Pushed> {
    // A segment (16 MiB by default) is read once and hashed once; a larger file streams,
    // hashed before and while it is stored.
    let size = fs_err::tokio::metadata(path)
        .await
        .map_err(|e| Error::from(e).context(format!("reading the WAL file {}", path.display())))?
        .len();
    let whole = if size <= IN_MEMORY {
        read_into(path, buffer).await?;
        Some(&buffer[..])
    } else {
        None
    };
    let (sha256, bytes) = match &whole {
        Some(content) => (hex::encode(Sha256::digest(content)), content.len() as u64),
        None => sha256_of(path).await?,
    };
    let existing = stored_versions(repo, workspace, &name).await?;
    if existing.contains(&sha256) {
        return Ok(Pushed { name, sha256, bytes, stored: false, reach: None });
    }
    if let Some(other) = existing.first() {
        return Err(Error::new(
            ErrorKind::AlreadyExists,
            format!(
                "the repository already holds a different WAL file {name} of workspace {workspace} (sha256 {other}, \
                 this one {sha256}); refusing to overwrite it. Are two clusters archiving into one workspace?"
            ),
        ));
    }
    let key = layout::wal_object(workspace, &name, &sha256)?;
    repo.sign(&key, &sha256).await?;
    let mut writer = ObjectWriter::new(repo, key, format!("wal/{name}"), recipients)?.content_addressed();
    if let Some(content) = whole {
        if let Err(e) = writer.write(content).await {
            writer.abort().await;
            return Err(e.context(format!("archiving {name}")));
        }
        return finish_push(writer, name, sha256, bytes).await;
    }
    let mut file = tokio::fs::File::open(path).await?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    let copied: Result<()> = async {
        loop {
            let n = file.read(&mut buf).await?;
            if n == 0 {
                return Ok(());
            }
            hasher.update(&buf[..n]);
            writer.write(&buf[..n]).await?;
        }
    }
    .await;
    if let Err(e) = copied {
        writer.abort().await;
        return Err(e.context(format!("archiving {name}")));
    }
    if hex::encode(hasher.finalize()) != sha256 {
        writer.abort().await;
        return Err(Error::new(
            ErrorKind::Unavailable,
            format!("{name} changed while it was archived; Postgres will retry"),
        ));
    }
    finish_push(writer, name, sha256, bytes).await
}

/// Files up to this size are read into memory once to be archived.
const IN_MEMORY: u64 = 64 << 20;

/// Reads the file at `path` into `buffer` (its old content replaced), off the runtime.
async fn read_into(path: &Path, buffer: &mut Vec<u8>) -> Result<()> {
    use std::io::Read;
    let (path, mut taken) = (path.to_path_buf(), std::mem::take(buffer));
    let (read, back) = tokio::task::spawn_blocking(move || {
        taken.clear();
        let read = std::fs::File::open(&path).and_then(|mut file| file.read_to_end(&mut taken));
        (read, taken)
    })
    .await
    .map_err(|e| Error::internal(format!("a read task failed: {e}")))?;
    *buffer = back;
    read?;
    Ok(())
}

async fn finish_push(writer: ObjectWriter, name: String, sha256: String, bytes: u64) -> Result<Pushed> {
    match writer.finish_unhashed().await {
        Ok(_) => Ok(Pushed { name, sha256, bytes, stored: true, reach: None }),
        // The same content landed at the same moment (a stream and archive_command both).
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {
            Ok(Pushed { name, sha256, bytes, stored: false, reach: None })
        }
        Err(e) => Err(e.context(format!("archiving {name}"))),
    }
}

/// The newest shipped version of a segment's partial object (its SHA-256) and where it
/// reaches when that is recorded, if the name is a segment: one listing.
async fn newest_partial(
    repo: &Repository,
    workspace: &str,
    name: &str,
) -> Result<Option<(String, Option<super::Lsn>)>> {
    if !matches!(super::WalFile::parse(name), Ok(super::WalFile::Segment { .. })) {
        return Ok(None);
    }
    let dir = layout::wal_file_dir(workspace, &format!("{name}.partial"))?;
    let listed = repo.list(&dir).await?;
    // Beside the versions: their signatures and where each reaches.
    let Some((_, sha)) =
        listed.iter().filter_map(|m| Some((m.modified, m.key.filename()?.strip_suffix(".zst.age")?.to_string()))).max()
    else {
        return Ok(None);
    };
    let reach = listed
        .iter()
        .filter_map(|m| layout::parse_wal_reach(m.key.filename()?))
        .find(|(s, _)| *s == sha)
        .map(|(_, lsn)| super::Lsn(lsn));
    Ok(Some((sha, reach)))
}

/// Where a file restored to `dest` is written first (beside it, so the rename is atomic).
fn temporary_beside(dest: &Path) -> std::path::PathBuf {
    dest.with_file_name(format!(
        ".{}.tidemark-{}",
        dest.file_name().and_then(|n| n.to_str()).unwrap_or("wal"),
        std::process::id()
    ))
}

/// Restores one archived WAL file to `dest`: written beside it under a temporary name,
/// verified, synced, then renamed. A segment that is not archived but was streamed while
/// unfinished is served from its newest partial version (the end of the archive).
///
/// Errors: `NotFound` when it is not archived (normal at the end of recovery),
/// `Integrity` for a damaged object, one that holds another segment than its name says (see
/// [`super::SegmentContent`]) or two contents under one name, `Key` for a wrong identity.
pub async fn fetch(
    repo: &Repository,
    identities: &Identities,
    workspace: &str,
    name: &str,
    dest: &Path,
) -> Result<u64> {
    fetch_to(repo, identities, workspace, name, dest, true).await
}

/// Like [`fetch`], and a segment the repository does not hold under its final name is
/// served from `streamed` (what the WAL stream's spool held when `pitr restore` began:
/// segments received and not shipped yet, the unfinished one as `<segment>.partial`) when
/// the copy there reaches at least as far as the newest shipped partial version.
///
/// Errors: those of [`fetch`]; `Integrity` for a file in `streamed` that is not the
/// segment its name says.
pub async fn fetch_with_streamed(
    repo: &Repository,
    identities: &Identities,
    workspace: &str,
    name: &str,
    dest: &Path,
    streamed: &Path,
) -> Result<u64> {
    if matches!(super::WalFile::parse(name), Ok(super::WalFile::Segment { .. }))
        && stored_versions(repo, workspace, name).await?.is_empty()
        && let Some(local) =
            [streamed.join(name), streamed.join(format!("{name}.partial"))].into_iter().find(|p| p.exists())
    {
        match fs_err::tokio::read(&local).await {
            Ok(content) => {
                let size = content.len() as u64;
                let whole = local.extension().is_none_or(|e| e != "partial");
                let reach = super::Segment::parse(name, size).ok().and_then(|s| {
                    if whole { Some(super::Lsn(u64::MAX)) } else { super::records::reach(&content, s.start(size)) }
                });
                let shipped = newest_partial(repo, workspace, name).await?.and_then(|(_, reach)| reach);
                if reach.is_some() && reach >= shipped {
                    let mut checked = super::SegmentContent::for_name(name).expect("a segment name");
                    checked.feed(&content);
                    checked.finish().map_err(|e| e.context(format!("the streamed copy {}", local.display())))?;
                    write_then_rename(&content, dest).await?;
                    tracing::info!(file = name, from = %local.display(), "served from the WAL stream's spool");
                    return Ok(size);
                }
            }
            Err(e) => {
                tracing::warn!(file = name, from = %local.display(), error = %e, "cannot read the streamed copy; using the repository's");
            }
        }
    }
    fetch(repo, identities, workspace, name, dest).await
}

/// Writes `content` beside `dest` under a temporary name, syncs it and renames it.
async fn write_then_rename(content: &[u8], dest: &Path) -> Result<()> {
    let tmp = temporary_beside(dest);
    let written: Result<()> = async {
        let mut file = tokio::fs::File::create(&tmp).await?;
        file.write_all(content).await?;
        file.sync_all().await?;
        Ok(())
    }
    .await;
    match written {
        Ok(()) => Ok(fs_err::tokio::rename(&tmp, dest).await?),
        Err(e) => {
            let _ = fs_err::tokio::remove_file(&tmp).await;
            Err(e)
        }
    }
}

/// Like [`fetch`], but only a file archived under its final name: never a streamed partial
/// segment, which may still grow (what prefetching reads ahead).
pub async fn fetch_archived(
    repo: &Repository,
    identities: &Identities,
    workspace: &str,
    name: &str,
    dest: &Path,
) -> Result<u64> {
    fetch_to(repo, identities, workspace, name, dest, false).await
}

async fn fetch_to(
    repo: &Repository,
    identities: &Identities,
    workspace: &str,
    name: &str,
    dest: &Path,
    partial_fallback: bool,
) -> Result<u64> {
    let versions = stored_versions(repo, workspace, name).await?;
    let partial =
        if versions.is_empty() && partial_fallback { newest_partial(repo, workspace, name).await? } else { None };
    let (object_name, sha256) = match versions.as_slice() {
        [] => match partial {
            Some((sha, _)) => {
                tracing::warn!(file = name, "serving the streamed partial segment: the end of the archived WAL");
                (format!("{name}.partial"), sha)
            }
            None => return Err(Error::not_found(format!("WAL file {name} is not in the repository"))),
        },
        [one] => (name.to_string(), one.clone()),
        many => {
            return Err(Error::integrity(format!(
                "the repository holds {} different WAL files named {name}: {}",
                many.len(),
                many.join(", ")
            )));
        }
    };
    let key = layout::wal_object(workspace, &object_name, &sha256)?;
    repo.verify(&key, &sha256).await?;
    let mut stream = read_verified(repo, &key, Expect::Content { sha256, size: None }, identities).await?;
    let tmp = temporary_beside(dest);
    let mut content = super::SegmentContent::for_name(&object_name);
    let written: Result<u64> = async {
        let mut file = tokio::fs::File::create(&tmp).await?;
        let mut size = 0u64;
        while let Some(chunk) = stream.recv().await {
            let chunk = chunk?;
            size += chunk.len() as u64;
            if let Some(content) = &mut content {
                content.feed(&chunk);
            }
            file.write_all(&chunk).await?;
        }
        match &content {
            // Shipped before its first page was written: nothing of this segment yet.
            Some(c) if object_name != name && c.is_blank() => {
                return Err(Error::not_found(format!(
                    "WAL file {name} is not in the repository (its streamed partial version is still empty)"
                )));
            }
            Some(c) => c.finish().map_err(|e| e.context(format!("object {key}")))?,
            None => {}
        }
        file.sync_all().await?;
        Ok(size)
    }
    .await;
    match written {
        Ok(size) => {
            fs_err::tokio::rename(&tmp, dest).await?;
            Ok(size)
        }
        Err(e) => {
            let _ = fs_err::tokio::remove_file(&tmp).await;
            Err(e.context(format!("restoring WAL file {name} to {}", dest.display())))
        }
    }
}

/// Every archived WAL file of a workspace, sorted by name (so by timeline, then position).
///
/// Errors: `Unavailable` for the store.
pub async fn list(repo: &Repository, workspace: &str) -> Result<Vec<Archived>> {
    let listed = repo.list(&layout::wal_dir(workspace)).await?;
    // workspaces/<ws>/wal/<timeline>/<name>/<sha256>.zst.age, and beside a partial
    // segment's version <sha256>.reach-<LSN as 16 hex digits>.
    let name_and_file = |m: &crate::repo::StoredObject| -> Option<(String, String)> {
        let parts: Vec<String> = m.key.parts().map(|p| p.as_ref().to_string()).collect();
        let [.., name, file] = parts.as_slice() else { return None };
        Some((name.clone(), file.clone()))
    };
    let reaches: std::collections::HashMap<(String, String), super::Lsn> = listed
        .iter()
        .filter_map(|m| {
            let (name, file) = name_and_file(m)?;
            let (sha256, lsn) = layout::parse_wal_reach(&file)?;
            Some(((name, sha256.to_string()), super::Lsn(lsn)))
        })
        .collect();
    let mut out: Vec<Archived> = listed
        .iter()
        .filter_map(|m| {
            let (name, file) = name_and_file(m)?;
            let sha256 = file.strip_suffix(".zst.age")?.to_string();
            let reach = reaches.get(&(name.clone(), sha256.clone())).copied();
            Some(Archived { name, sha256, stored_size: m.size, archived_at: m.modified, reach })
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Reads and parses every archived timeline history file of `archived` (they are small:
/// a line per failover).
///
/// Errors: `Integrity` for a damaged or unreadable history file, or two contents under
/// one name; `Key` for a wrong identity; `Unavailable` for the store.
pub async fn histories(
    repo: &Repository,
    identities: &Identities,
    workspace: &str,
    archived: &[Archived],
) -> Result<Histories> {
    let mut histories = Histories::new();
    for a in archived {
        let Ok(super::WalFile::History { timeline }) = super::WalFile::parse(&a.name) else { continue };
        if histories.contains_key(&timeline) {
            return Err(Error::integrity(format!("the repository holds different WAL files named {}", a.name)));
        }
        let key = layout::wal_object(workspace, &a.name, &a.sha256)?;
        repo.verify(&key, &a.sha256).await?;
        let expect = Expect::Content { sha256: a.sha256.clone(), size: None };
        let mut stream = read_verified(repo, &key, expect, identities).await?;
        let mut text = Vec::new();
        while let Some(chunk) = stream.recv().await {
            text.extend_from_slice(&chunk.map_err(|e| e.context(format!("reading {}", a.name)))?);
        }
        let text = String::from_utf8(text)
            .map_err(|_| Error::integrity(format!("the history file {} is not text", a.name)))?;
        histories.insert(timeline, super::timeline::parse_history(timeline, &text)?);
    }
    Ok(histories)
}
