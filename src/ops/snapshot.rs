//! Snapshots: take one (schema + every table, consistent at one instant, streamed through
//! the pipeline), list them, show one. The manifest is committed last; a snapshot without
//! a manifest does not exist.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt;
use tokio::task::JoinSet;

use super::{Core, jobs_or_default};
use crate::catalog::lock::{LockMode, WorkspaceLock};
use crate::error::{Error, Result};
use crate::keys::Recipients;
use crate::pg::ConnSpec;
use crate::progress::Progress;
use crate::repo::Repository;
use crate::repo::layout::{self, SnapshotObject};
use crate::repo::manifest::{Manifest, MediaEntry, MediaSummary, ObjectEntry, SnapshotKind, TableEntry, Timings};
use crate::repo::pipeline::ObjectWriter;
use crate::source::digest::{self, RowDigest};
use crate::source::media;
use crate::source::postgres::{self, BlockRange, Section, SnapshotSession};

/// Tables larger than this (heap bytes) are split into parts copied in parallel.
pub const DEFAULT_SPLIT_TABLE_MIB: u64 = 256;

/// What `snapshot create` takes, from the CLI, the API or a schedule.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct SnapshotOptions {
    pub workspace: String,
    pub note: Option<String>,
    pub kind: SnapshotKind,
    /// Parallel connections copying tables (default: one per core).
    pub jobs: Option<usize>,
    /// Split tables larger than this many MiB into parts (0: never split).
    pub split_table_mib: u64,
    /// Leave the media store out of this snapshot.
    pub no_media: bool,
}

impl Default for SnapshotOptions {
    fn default() -> Self {
        SnapshotOptions {
            workspace: String::new(),
            note: None,
            kind: SnapshotKind::Manual,
            jobs: None,
            split_table_mib: DEFAULT_SPLIT_TABLE_MIB,
            no_media: false,
        }
    }
}

/// One unit of data work: a table or a block range of it.
struct WorkItem {
    table: usize,
    part: Option<u32>,
    range: Option<BlockRange>,
    estimate: i64,
}

struct PartResult {
    table: usize,
    part: Option<u32>,
    entry: ObjectEntry,
    digest: RowDigest,
}

/// How long a snapshot waits for a prune of its workspace (in another process) to finish.
pub const SNAPSHOT_WAITS_FOR_PRUNE: std::time::Duration = std::time::Duration::from_secs(600);

/// Takes a snapshot of a workspace's database.
///
/// Errors: `NotFound` for an unknown workspace, `Unavailable` when the database or the
/// store cannot be reached (or a prune of the workspace holds it longer than
/// [`SNAPSHOT_WAITS_FOR_PRUNE`]), `Integrity` when an object it wrote is gone before it commits, `Database` when Postgres or pg_dump refuses. On any error no
/// manifest is written, so no snapshot appears; objects already uploaded are garbage.
pub async fn create(core: &Core, opts: &SnapshotOptions, progress: &Progress) -> Result<Manifest> {
    let ws = core.config.workspace(&opts.workspace)?;
    // Never beside a prune of this workspace: it would collect this snapshot's objects.
    let _lock = WorkspaceLock::acquire(
        &core.config.catalog_path(),
        &opts.workspace,
        LockMode::Shared,
        SNAPSHOT_WAITS_FOR_PRUNE,
        "a prune",
    )
    .await?;
    let spec = ConnSpec::parse(&ws.database_url, ws.password.as_ref())?;
    let recipients = core.recipients()?.clone();
    let bin_dir = core.pg_bin_dir();
    let started_at = chrono::Utc::now();
    let clock = Instant::now();
    let id = layout::new_snapshot_id(started_at);
    progress.set_prefix(format!("snapshot {}", opts.workspace));
    progress.set_message("reading the catalog");

    let pg_dump_version = postgres::pg_dump_version(bin_dir.as_deref()).await?;
    let session = SnapshotSession::begin(&spec, pg_dump_version)
        .await
        .map_err(|e| e.context(format!("starting a snapshot of workspace {}", opts.workspace)))?;
    tracing::info!(workspace = %opts.workspace, id = %id, tables = session.tables.len(), "snapshot started");

    let dest = Destination {
        repo: core.repo.clone(),
        recipients: recipients.clone(),
        workspace: opts.workspace.clone(),
        id: id.clone(),
    };
    let schema = {
        let (dest, spec, bin_dir) = (dest.clone(), spec.clone(), bin_dir.clone());
        let snapshot_name = session.snapshot_name.clone();
        // Aborted when dropped (an interrupted snapshot), so its uploads are aborted too.
        tokio_util::task::AbortOnDropHandle::new(tokio::spawn(async move {
            let t = Instant::now();
            let pre = dump_schema(&dest, &spec, bin_dir.as_deref(), &snapshot_name, Section::PreData);
            let post = dump_schema(&dest, &spec, bin_dir.as_deref(), &snapshot_name, Section::PostData);
            let (pre, post) = futures::try_join!(pre, post)?;
            Ok::<_, Error>((pre, post, t.elapsed().as_millis() as u64))
        }))
    };

    let data_clock = Instant::now();
    let parts = copy_tables(&dest, &session, &spec, opts, progress).await;
    if parts.is_err() {
        schema.abort(); // its pg_dump children are killed on drop
    }
    let data_ms = data_clock.elapsed().as_millis() as u64;
    let schema = match schema.await {
        Ok(r) => r,
        Err(join) => Err(Error::internal(format!("schema dump task failed: {join}"))),
    };
    let (parts, (schema_pre, schema_post, schema_ms)) = match (parts, schema) {
        (Ok(p), Ok(s)) => (p, s),
        (Err(e), _) | (_, Err(e)) => {
            return Err(e.context(format!("taking snapshot {id} of workspace {}", opts.workspace)));
        }
    };

    let mut tables: Vec<TableEntry> = session
        .tables
        .iter()
        .map(|t| TableEntry {
            schema: t.schema.clone(),
            name: t.name.clone(),
            columns: t.columns.clone(),
            rows: 0,
            content_digest: String::new(),
            parts: Vec::new(),
        })
        .collect();
    let mut digests: Vec<RowDigest> = vec![RowDigest::new(); tables.len()];
    let mut parts = parts;
    parts.sort_by_key(|p| (p.table, p.part));
    for p in parts {
        digests[p.table].combine(&p.digest);
        tables[p.table].parts.push(p.entry);
    }
    for (t, d) in tables.iter_mut().zip(&digests) {
        t.rows = d.rows();
        t.content_digest = d.hex();
    }

    let media = match (&ws.media, opts.no_media) {
        (Some(url), false) => Some(backup_media(core, &dest, url, jobs_or_default(opts.jobs), progress).await?),
        _ => None,
    };
    let info = session.info.clone();
    let sequences = session.sequences.clone();
    let materialized_views = session.materialized_views.clone();
    let mut warnings = session.warnings.clone();
    if let Some(skipped) = media.as_ref().map(|m| &m.skipped).filter(|s| !s.is_empty()) {
        let named: Vec<String> = skipped.iter().take(5).map(|s| format!("{} ({})", s.path, s.reason)).collect();
        let more = if skipped.len() > 5 { format!(" and {} more", skipped.len() - 5) } else { String::new() };
        warnings.push(format!(
            "{} media files were skipped and are not in this snapshot: {}{more}; `tidemark snapshot show` lists them",
            skipped.len(),
            named.join(", ")
        ));
    }
    let stacks = session.stacks.clone();
    let schema_fingerprint = session.schema_fingerprint.clone();
    let roles = session.roles.clone();
    for w in &warnings {
        tracing::warn!(workspace = %opts.workspace, "{w}");
    }
    session.finish().await?;

    let manifest = Manifest {
        format: crate::repo::manifest::MANIFEST_FORMAT,
        id: id.clone(),
        workspace: opts.workspace.clone(),
        kind: opts.kind,
        note: opts.note.clone(),
        started_at,
        finished_at: chrono::Utc::now(),
        tidemark_version: env!("CARGO_PKG_VERSION").to_string(),
        source: info,
        timings: Timings { schema_ms, data_ms, total_ms: clock.elapsed().as_millis() as u64 },
        schema_pre,
        schema_post,
        tables,
        sequences,
        materialized_views,
        content_digest_algorithm: digest::ALGORITHM.to_string(),
        stacks,
        media,
        schema_fingerprint,
        roles,
        warnings,
        repository_digest: Some(core.repo.descriptor().digest()),
    };
    core.repo.commit_manifest(&manifest, &recipients).await?;
    progress.finish();
    tracing::info!(workspace = %opts.workspace, id = %id, bytes = manifest.stored_bytes(), "snapshot committed");
    Ok(manifest)
}

/// Where a snapshot's objects go.
#[derive(Clone)]
struct Destination {
    repo: Repository,
    recipients: Recipients,
    workspace: String,
    id: String,
}

impl Destination {
    fn writer(&self, object: &SnapshotObject) -> Result<ObjectWriter> {
        ObjectWriter::new(&self.repo, object.key(&self.workspace, &self.id), object.name(), &self.recipients)
    }
}

async fn dump_schema(
    dest: &Destination,
    spec: &ConnSpec,
    bin_dir: Option<&std::path::Path>,
    snapshot_name: &str,
    section: Section,
) -> Result<ObjectEntry> {
    let object = match section {
        Section::PreData => SnapshotObject::SchemaPre,
        Section::PostData => SnapshotObject::SchemaPost,
    };
    let mut child = postgres::spawn_schema_dump(bin_dir, spec, snapshot_name, section)?;
    let mut stdout = child.stdout.take().expect("piped stdout");
    let mut writer = dest.writer(&object)?;
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = stdout.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        writer.write(&buf[..n]).await?;
    }
    postgres::wait_tool(child, &format!("pg_dump {section:?}")).await?;
    writer.finish().await
}

async fn copy_tables(
    dest: &Destination,
    session: &SnapshotSession,
    spec: &ConnSpec,
    opts: &SnapshotOptions,
    progress: &Progress,
) -> Result<Vec<PartResult>> {
    let mut items = Vec::new();
    for (i, t) in session.tables.iter().enumerate() {
        let ranges = session.block_ranges(t, opts.split_table_mib << 20);
        let split = ranges.len() > 1;
        let share = t.bytes / ranges.len() as i64;
        for (p, range) in ranges.into_iter().enumerate() {
            items.push(WorkItem { table: i, part: split.then_some(p as u32), range, estimate: share });
        }
    }
    // Largest first, so the long poles start early and the tail is short.
    items.sort_by_key(|w| std::cmp::Reverse(w.estimate));
    let total_items = items.len();
    let queue = Arc::new(Mutex::new(VecDeque::from(items)));
    let done = Arc::new(Mutex::new(0usize));
    let tables = Arc::new(session.tables.clone());
    let jobs = jobs_or_default(opts.jobs).min(total_items.max(1));
    progress.set_message(format!("tables 0/{total_items}"));

    let mut set = JoinSet::new();
    for _ in 0..jobs {
        let (queue, done, tables) = (queue.clone(), done.clone(), tables.clone());
        let (dest, spec, progress) = (dest.clone(), spec.clone(), progress.clone());
        let snapshot_name = session.snapshot_name.clone();
        set.spawn(async move {
            let mut conn = postgres::import_snapshot(&spec, &snapshot_name).await?;
            let mut results = Vec::new();
            loop {
                let item = queue.lock().expect("queue lock").pop_front();
                let Some(item) = item else { break };
                let table = &tables[item.table];
                let object = SnapshotObject::TablePart {
                    schema: table.schema.clone(),
                    table: table.name.clone(),
                    part: item.part,
                };
                let statement = postgres::copy_out_statement(&table.schema, &table.name, &table.columns, item.range);
                let mut writer = dest.writer(&object)?;
                let mut digest = RowDigest::new();
                let copied: Result<()> = async {
                    let mut rows = postgres::copy_out(&mut conn, &statement).await?;
                    // COPY yields a row at a time: report progress per MiB, not per row.
                    let mut unreported = 0u64;
                    while let Some(chunk) = rows.next().await {
                        let chunk = chunk?;
                        digest.update(&chunk);
                        unreported += chunk.len() as u64;
                        if unreported >= 1 << 20 {
                            progress.add_bytes(std::mem::take(&mut unreported));
                        }
                        writer.write(&chunk).await?;
                    }
                    progress.add_bytes(unreported);
                    Ok(())
                }
                .await;
                if let Err(e) = copied {
                    writer.abort().await;
                    return Err(e.context(format!("copying table {}.{}", table.schema, table.name)));
                }
                digest.finish();
                let entry = writer.finish().await?;
                results.push(PartResult { table: item.table, part: item.part, entry, digest });
                let mut n = done.lock().expect("done lock");
                *n += 1;
                progress.set_message(format!("tables {n}/{total_items}"));
            }
            sqlx::raw_sql("COMMIT").execute(&mut conn).await?;
            ConnSpec::close(conn).await;
            Ok::<_, Error>(results)
        });
    }
    let mut all = Vec::new();
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok(Ok(results)) => all.extend(results),
            Ok(Err(e)) => {
                set.abort_all();
                return Err(e);
            }
            Err(join) => {
                set.abort_all();
                return Err(Error::internal(format!("a copy task failed: {join}")));
            }
        }
    }
    Ok(all)
}

/// A line of `snapshot list`.
#[derive(Debug, Clone, Serialize)]
pub struct SnapshotSummary {
    pub id: String,
    pub workspace: String,
    /// `None` when the identity is not available to read the manifest.
    pub kind: Option<SnapshotKind>,
    pub note: Option<String>,
    pub finished_at: Option<chrono::DateTime<chrono::Utc>>,
    pub tables: Option<usize>,
    pub rows: Option<u64>,
    pub stored_bytes: Option<u64>,
    /// Media files in the snapshot, and the bytes it uploaded (new content).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub media_files: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub media_new_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// Set when the manifest is in the repository but cannot be read (damaged): the
    /// snapshot cannot be restored, and retention never deletes it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

impl SnapshotSummary {
    /// A snapshot whose manifest cannot be read (or, without an identity, is not read).
    fn unread(id: String, workspace: &str, problem: Option<String>) -> SnapshotSummary {
        SnapshotSummary {
            id,
            workspace: workspace.to_string(),
            kind: None,
            note: None,
            finished_at: None,
            tables: None,
            rows: None,
            stored_bytes: None,
            media_files: None,
            media_new_bytes: None,
            warnings: Vec::new(),
            problem,
        }
    }

    pub fn of(manifest: &Manifest) -> SnapshotSummary {
        SnapshotSummary {
            id: manifest.id.clone(),
            workspace: manifest.workspace.clone(),
            kind: Some(manifest.kind),
            note: manifest.note.clone(),
            finished_at: Some(manifest.finished_at),
            tables: Some(manifest.tables.len()),
            rows: Some(manifest.total_rows()),
            stored_bytes: Some(manifest.stored_bytes()),
            media_files: manifest.media.as_ref().map(|m| m.files.len()),
            media_new_bytes: manifest.media.as_ref().map(|m| m.new_bytes),
            warnings: manifest.warnings.clone(),
            problem: None,
        }
    }
}

/// The committed snapshots of a workspace, oldest first. Without an identity only ids are
/// known (everything else is encrypted). A snapshot whose manifest cannot be read is
/// listed with its `problem`.
///
/// Errors: `Unavailable` for an unreachable store; `Key` when no manifest can be read
/// with the configured identity.
pub async fn list(core: &Core, workspace: &str) -> Result<Vec<SnapshotSummary>> {
    core.known_workspace(workspace).await?;
    if !core.has_identities() {
        let ids = core.repo.list_snapshot_ids(workspace).await?;
        return Ok(ids.into_iter().map(|id| SnapshotSummary::unread(id, workspace, None)).collect());
    }
    let read = core.repo.read_manifests(workspace, &core.identities()?).await?;
    let mut out: Vec<SnapshotSummary> = read.items.iter().map(SnapshotSummary::of).collect();
    out.extend(read.damaged.into_iter().map(|d| SnapshotSummary::unread(d.id, workspace, Some(d.problem))));
    out.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(out)
}

/// Resolves a snapshot as every command names it: an id (its workspace found in the
/// repository when not given), or `latest`: the newest snapshot of the workspace (given,
/// or the only one configured) whose manifest can be read. Returns (workspace, id).
///
/// Errors: `Usage` for a malformed id, `NotFound` when there is no such snapshot.
pub async fn resolve(core: &Core, id: &str, workspace: Option<&str>) -> Result<(String, String)> {
    if id == "latest" {
        let ws = match workspace {
            Some(w) => {
                core.known_workspace(w).await?;
                w.to_string()
            }
            None => core.workspace_or_only(None)?,
        };
        let newest = if core.has_identities() {
            let read = core.repo.read_manifests(&ws, &core.identities()?).await?;
            read.items.into_iter().map(|m| m.id).max()
        } else {
            core.repo.list_snapshot_ids(&ws).await?.into_iter().max()
        };
        let id = newest.ok_or_else(|| {
            Error::not_found(format!(
                "workspace {ws} has no snapshot that can be read; take one with `tidemark snapshot create`"
            ))
        })?;
        return Ok((ws, id));
    }
    layout::validate_snapshot_id(id)?;
    let ws = match workspace {
        Some(w) => w.to_string(),
        None => core.repo.find_snapshot(id).await?,
    };
    Ok((ws, id.to_string()))
}

/// One snapshot's manifest (see [`resolve`] for how it is named).
pub async fn show(core: &Core, id: &str, workspace: Option<&str>) -> Result<Manifest> {
    let (ws, id) = resolve(core, id, workspace).await?;
    core.repo.read_manifest(&ws, &id, &core.identities()?).await
}

/// Backs up the media store incrementally: hash what changed (the cache spares the rest),
/// upload each content not yet in the repository once, list every file in the manifest.
/// A problem with one file (a symlink, unreadable, gone or changed during the run) skips
/// that file and names it in `skipped`: the database part of a snapshot is never lost to
/// a media file. A problem with the store itself fails the snapshot.
async fn backup_media(
    core: &Core,
    dest: &Destination,
    url: &str,
    jobs: usize,
    progress: &Progress,
) -> Result<MediaSummary> {
    let source = media::open(url, &core.config.config.repository)?;
    let listing = source.list().await.map_err(|e| e.context(format!("listing the media store {url}")))?;
    let mut skipped = listing.skipped;
    let files = listing.files;
    progress.set_message(format!("media: {} files", files.len()));
    let mut cache = media::HashCache::load(core.cache_dir.as_deref(), &core.repo.descriptor().id, &dest.workspace);
    let hashed: Vec<Result<(media::Listed, String), media::Skipped>> = futures::stream::iter(files.iter().cloned())
        .map(|file| {
            let (source, cached) = (source.clone(), cache.get(&file).map(str::to_string));
            async move {
                let sha = match cached {
                    Some(sha) => sha,
                    None => match source.hash(&file).await {
                        Ok((sha, _)) => sha,
                        Err(media::MediaError::File(reason)) => {
                            return Ok(Err(media::Skipped { path: file.path, reason }));
                        }
                        Err(media::MediaError::Store(e)) => {
                            return Err(e.context(format!("reading media file {}", file.path)));
                        }
                    },
                };
                Ok::<_, Error>(Ok((file, sha)))
            }
        })
        .buffered(jobs)
        .try_collect()
        .await?;
    let mut kept = Vec::with_capacity(hashed.len());
    for h in hashed {
        match h {
            Ok((file, sha)) => {
                cache.put(&file, &sha);
                kept.push((file, sha));
            }
            Err(skip) => skipped.push(skip),
        }
    }
    // Each distinct content once, and only if the repository does not have it yet.
    let mut seen = std::collections::HashSet::new();
    let unique: Vec<(media::Listed, String)> =
        kept.iter().filter(|(_, sha)| seen.insert(sha.clone())).cloned().collect();
    // Owned values in each task: borrowed ones make this future not `Send` for the daemon
    // (rustc's higher-ranked lifetime limitation with async closures in streams).
    let uploads: Vec<Uploaded> = futures::stream::iter(unique)
        .map(|(file, sha)| {
            let (source, dest, progress) = (source.clone(), dest.clone(), progress.clone());
            async move {
                let key = layout::media_object(&dest.workspace, &sha)?;
                if let Some(stored) = dest.repo.stored_size(&key).await? {
                    return Ok(Uploaded::Present(sha, Some(stored)));
                }
                upload_media(&dest, &source, &file, &sha, key, &progress).await
            }
        })
        .buffer_unordered(jobs)
        .try_collect()
        .await?;
    let mut new = Vec::new();
    let mut lost = std::collections::HashSet::new();
    let mut stored_sizes = std::collections::HashMap::new();
    for u in uploads {
        match u {
            Uploaded::New(sha, plain, stored) => {
                new.push(plain);
                stored_sizes.insert(sha, stored);
            }
            Uploaded::Present(sha, stored) => {
                stored_sizes.extend(stored.map(|s| (sha, s)));
            }
            Uploaded::Skipped(sha, reason) => {
                lost.insert(sha.clone());
                // Every file with that content goes: none of them is in the repository.
                for (file, _) in kept.iter().filter(|(_, s)| *s == sha) {
                    skipped.push(media::Skipped { path: file.path.clone(), reason: reason.clone() });
                }
            }
        }
    }
    kept.retain(|(_, sha)| !lost.contains(sha));
    cache.save(&files);
    skipped.sort_by(|a, b| a.path.cmp(&b.path));
    for s in &skipped {
        tracing::warn!(workspace = %dest.workspace, file = %s.path, "media file skipped: it {}", s.reason);
    }
    Ok(MediaSummary {
        source: url.to_string(),
        bytes: kept.iter().map(|(f, _)| f.size).sum(),
        new_files: new.len() as u64,
        new_bytes: new.iter().sum(),
        files: kept
            .into_iter()
            .map(|(f, sha256)| MediaEntry {
                path: f.path,
                size: f.size,
                modified: f.modified,
                stored_size: stored_sizes.get(&sha256).copied(),
                sha256,
                mode: f.mode,
            })
            .collect(),
        skipped,
    })
}

/// What became of one media content.
enum Uploaded {
    /// Stored now (its content hash, plain and stored bytes).
    New(String, u64, u64),
    /// The repository had it (with its stored size, when known).
    Present(String, Option<u64>),
    /// The file could not be read (its content hash, why): it is skipped.
    Skipped(String, String),
}

/// Streams one media file into the repository under its content hash, checking that the
/// bytes still hash to it (a file changed since it was hashed is skipped, not a lie).
async fn upload_media(
    dest: &Destination,
    source: &media::MediaSource,
    file: &media::Listed,
    sha: &str,
    key: crate::repo::Key,
    progress: &Progress,
) -> Result<Uploaded> {
    use sha2::Digest;
    let mut writer = ObjectWriter::new(&dest.repo, key, format!("media/{sha}"), &dest.recipients)?;
    let mut hasher = sha2::Sha256::new();
    let copied: Result<(), media::MediaError> = async {
        let mut stream = source.read(file).await?;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| source.classify(e))?;
            hasher.update(&chunk);
            progress.add_bytes(chunk.len() as u64);
            writer.write(&chunk).await.map_err(media::MediaError::Store)?;
        }
        Ok(())
    }
    .await;
    match copied {
        Ok(()) => {}
        Err(media::MediaError::File(reason)) => {
            writer.abort().await;
            return Ok(Uploaded::Skipped(sha.to_string(), reason));
        }
        Err(media::MediaError::Store(e)) => {
            writer.abort().await;
            return Err(e.context(format!("uploading media file {}", file.path)));
        }
    }
    if hex::encode(hasher.finalize()) != sha {
        writer.abort().await;
        return Ok(Uploaded::Skipped(sha.to_string(), "changed while it was backed up".into()));
    }
    match writer.finish().await {
        Ok(entry) => Ok(Uploaded::New(sha.to_string(), entry.plain_size, entry.stored_size)),
        // Another snapshot stored the same content at the same moment: it is there.
        Err(e) if e.kind() == crate::error::ErrorKind::AlreadyExists => Ok(Uploaded::Present(sha.to_string(), None)),
        Err(e) => Err(e),
    }
}

/// [`create`], recorded in the catalog's job history as an operator's job. The catalog is
/// optional here: when it cannot be opened the snapshot is taken anyway, with a warning,
/// because a command that needs only the repository must not depend on the catalog.
///
/// Stopped when `stop` is cancelled (Ctrl-C, SIGTERM): nothing is committed, and the job
/// is recorded as aborted, "interrupted" (not as a process that vanished).
pub async fn create_recorded(
    core: &Core,
    opts: &SnapshotOptions,
    progress: &Progress,
    stop: &tokio_util::sync::CancellationToken,
) -> Result<Manifest> {
    use crate::catalog::{JobEnd, JobStatus, NewJob, Trigger};
    let catalog = match super::catalog::open(core).await {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::warn!(error = %e.report(), "the catalog is not available; this job is not recorded");
            None
        }
    };
    let new = NewJob {
        workspace: opts.workspace.clone(),
        operation: "snapshot".into(),
        kind: Some(opts.kind.to_string()),
        trigger: Trigger::Cli,
        policy: None,
        scheduled_for: None,
        started_at: chrono::Utc::now(),
    };
    let id = match &catalog {
        Some(c) => c.start_job(&new).await.inspect_err(|e| tracing::warn!(error = %e.report(), "not recorded")).ok(),
        None => None,
    };
    let result = tokio::select! {
        r = create(core, opts, progress) => r,
        _ = stop.cancelled() => Err(Error::new(
            crate::error::ErrorKind::Interrupted,
            "interrupted (Ctrl-C or SIGTERM): nothing was committed",
        )),
    };
    if let (Some(catalog), Some(id)) = (&catalog, id) {
        let (status, end) = match &result {
            Ok(m) => (
                JobStatus::Succeeded,
                JobEnd { snapshot_id: Some(m.id.clone()), bytes: Some(m.stored_bytes()), ..Default::default() },
            ),
            Err(e) if e.kind() == crate::error::ErrorKind::Interrupted => {
                (JobStatus::Aborted, JobEnd { error: Some(e.report()), ..Default::default() })
            }
            Err(e) => (JobStatus::Failed, JobEnd { error: Some(e.report()), ..Default::default() }),
        };
        if let Err(e) = catalog.finish_job(id, status, &end).await {
            tracing::warn!(error = %e.report(), "cannot record the end of the job in the catalog");
        }
    }
    result
}
