//! Restore a snapshot into a new (or empty) database: pre-data schema, every table loaded
//! in parallel with `COPY FROM`, post-data (indexes, constraints, triggers: so user triggers
//! never fire during the load), sequence values, materialized views. Every object's hash is
//! checked; a missing or altered object stops the restore and names the object.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::{Core, jobs_or_default};
use crate::error::{Error, ErrorKind, Result};
use crate::pg::ConnSpec;
use crate::progress::Progress;
use crate::repo::layout::SnapshotObject;
use crate::repo::manifest::{Manifest, MediaEntry, ObjectEntry};
use crate::repo::pipeline::{Expect, read_object, read_verified};
use crate::restore::database::{self, TargetState};
use crate::restore::media::{self, MediaTarget};

/// What `restore` takes.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct RestoreOptions {
    pub snapshot: String,
    /// The snapshot's workspace; found by searching the repository when omitted.
    pub workspace: Option<String>,
    /// `postgres://.../new_db`: created if missing, refused if not empty.
    pub target: String,
    /// Parallel connections loading tables (default: one per core).
    pub jobs: Option<usize>,
    /// Where the snapshot's media files go: a folder, `file://` or `s3://` URL.
    pub media_target: Option<String>,
    /// Restore the database only, even if the snapshot has media.
    pub no_media: bool,
    /// The target server's password when the URL carries none (drills on a scratch server).
    #[serde(skip)]
    pub target_password: Option<crate::config::Secret>,
}

/// What a restore did, with its phases timed.
#[derive(Debug, Clone, Serialize)]
pub struct RestoreReport {
    pub snapshot: String,
    pub workspace: String,
    /// The target URL, without any password.
    pub target: String,
    pub created_database: bool,
    pub tables: usize,
    pub rows: u64,
    pub plain_bytes: u64,
    pub stored_bytes: u64,
    /// Media files restored (0 with `--no-media` or when the snapshot has none).
    pub media_files: usize,
    pub timings: RestoreTimings,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct RestoreTimings {
    pub check_ms: u64,
    pub pre_data_ms: u64,
    pub data_ms: u64,
    pub post_data_ms: u64,
    pub finish_ms: u64,
    pub media_ms: u64,
    pub total_ms: u64,
}

/// Restores a snapshot into `opts.target`.
///
/// Errors: `NotFound` for an unknown snapshot, `Key` without a matching identity,
/// `Integrity` for a missing or altered object (named), `Refused` for a non-empty target,
/// `Database`/`Unavailable` from Postgres. A database the restore created is dropped again
/// when it fails; an existing empty one is left as it is.
pub async fn restore(core: &Core, opts: &RestoreOptions, progress: &Progress) -> Result<RestoreReport> {
    restore_or_stop(core, opts, progress, &CancellationToken::new()).await
}

/// [`restore`], stopped when `stop` is cancelled (Ctrl-C, SIGTERM): the work is dropped
/// and, as after a failure, a database the restore created is dropped again.
///
/// Errors: those of [`restore`]; `Interrupted` when stopped.
pub async fn restore_or_stop(
    core: &Core,
    opts: &RestoreOptions,
    progress: &Progress,
    stop: &CancellationToken,
) -> Result<RestoreReport> {
    let clock = Instant::now();
    let (workspace, id) = super::snapshot::resolve(core, &opts.snapshot, opts.workspace.as_deref()).await?;
    let manifest = core.repo.read_manifest(&workspace, &id, &core.identities()?).await?;
    let target = ConnSpec::parse(&opts.target, opts.target_password.as_ref())?;
    let media = media_plan(core, &manifest, opts)?;
    progress.set_prefix(format!("restore {}", manifest.id));
    progress.set_message("checking objects");
    preflight(core, &manifest, media.is_some()).await?;
    let check_ms = clock.elapsed().as_millis() as u64;

    let state = database::prepare_target(&target, &manifest.source).await?;
    let work = async {
        database::mark_incomplete(&target, &manifest.id).await?;
        let mut timings = fill(core, &manifest, &target, opts, progress).await?;
        if let Some((media_target, files)) = &media {
            let t = Instant::now();
            restore_media(core, &manifest, media_target, files, jobs_or_default(opts.jobs), progress).await?;
            timings.media_ms = t.elapsed().as_millis() as u64;
        }
        database::mark_complete(&target).await?;
        Ok::<_, Error>(timings)
    };
    let result = tokio::select! {
        r = work => r,
        _ = stop.cancelled() => Err(Error::new(ErrorKind::Interrupted, "the restore was interrupted")),
    };
    progress.finish();
    match result {
        Ok(mut timings) => {
            timings.check_ms = check_ms;
            timings.total_ms = clock.elapsed().as_millis() as u64;
            Ok(RestoreReport {
                snapshot: manifest.id.clone(),
                workspace,
                target: target.display(),
                created_database: state == TargetState::Created,
                tables: manifest.tables.len(),
                rows: manifest.total_rows(),
                plain_bytes: manifest.plain_bytes(),
                stored_bytes: manifest.stored_bytes(),
                media_files: media.as_ref().map(|(_, files)| files.len()).unwrap_or(0),
                timings,
            })
        }
        Err(e) => {
            let e = e.context(format!("restoring snapshot {} into {}", manifest.id, target.display()));
            if state == TargetState::Created {
                match database::drop_database(&target).await {
                    Ok(()) => Err(e.context("(the partly restored database was dropped again)".to_string())),
                    Err(drop_err) => Err(e.context(format!(
                        "(the partly restored database could not be dropped: {}; drop it by hand)",
                        drop_err.message()
                    ))),
                }
            } else {
                Err(e)
            }
        }
    }
}

/// Every object the manifest names must exist with the recorded size before anything is
/// written, so a damaged snapshot is refused up front.
async fn preflight(core: &Core, manifest: &Manifest, with_media: bool) -> Result<()> {
    core.repo.verify_present(manifest, with_media).await.map_err(|e| match e.kind() {
        ErrorKind::Integrity => Error::integrity(format!("{}: the snapshot is damaged", e.message())),
        _ => e,
    })
}

async fn open(core: &Core, manifest: &Manifest, entry: &ObjectEntry) -> Result<crate::repo::pipeline::ObjectStream> {
    let path = SnapshotObject::key_for_name(&manifest.workspace, &manifest.id, &entry.name)?;
    read_object(&core.repo, &path, entry, &core.identities()?).await
}

async fn fill(
    core: &Core,
    manifest: &Manifest,
    target: &ConnSpec,
    opts: &RestoreOptions,
    progress: &Progress,
) -> Result<RestoreTimings> {
    let bin_dir = core.pg_bin_dir();
    let mut timings = RestoreTimings::default();

    let t = Instant::now();
    progress.set_message("schema (pre-data)");
    let pre = open(core, manifest, &manifest.schema_pre).await?;
    database::apply_sql(bin_dir.as_deref(), target, pre, "the schema (pre-data)").await?;
    timings.pre_data_ms = t.elapsed().as_millis() as u64;

    let t = Instant::now();
    load_tables(core, manifest, target, opts, progress).await?;
    timings.data_ms = t.elapsed().as_millis() as u64;

    let t = Instant::now();
    progress.set_message("indexes, constraints, triggers (post-data)");
    let post = crate::repo::pipeline::read_to_end(open(core, manifest, &manifest.schema_post).await?)
        .await
        .map_err(|e| e.context("reading the schema (post-data)".to_string()))?;
    database::apply_post_data(bin_dir.as_deref(), target, post, jobs_or_default(opts.jobs)).await?;
    timings.post_data_ms = t.elapsed().as_millis() as u64;

    let t = Instant::now();
    progress.set_message("sequences and materialized views");
    let mut conn = target.connect().await?;
    database::set_sequences(&mut conn, &manifest.sequences).await?;
    database::refresh_materialized_views(&mut conn, &manifest.materialized_views).await?;
    ConnSpec::close(conn).await;
    timings.finish_ms = t.elapsed().as_millis() as u64;
    Ok(timings)
}

async fn load_tables(
    core: &Core,
    manifest: &Manifest,
    target: &ConnSpec,
    opts: &RestoreOptions,
    progress: &Progress,
) -> Result<()> {
    let mut items: Vec<(usize, ObjectEntry)> =
        manifest.tables.iter().enumerate().flat_map(|(i, t)| t.parts.iter().map(move |p| (i, p.clone()))).collect();
    items.sort_by_key(|(_, p)| std::cmp::Reverse(p.stored_size));
    let total = items.len();
    if total == 0 {
        return Ok(());
    }
    let queue = Arc::new(Mutex::new(VecDeque::from(items)));
    let done = Arc::new(Mutex::new(0usize));
    let manifest = Arc::new(manifest.clone());
    progress.set_message(format!("tables 0/{total}"));
    let mut set = JoinSet::new();
    for _ in 0..jobs_or_default(opts.jobs).min(total) {
        let (queue, done, manifest) = (queue.clone(), done.clone(), manifest.clone());
        let (core, target, progress) = (core.clone(), target.clone(), progress.clone());
        set.spawn(async move {
            let mut conn = target.connect().await?;
            sqlx::raw_sql("SET synchronous_commit = off").execute(&mut conn).await?;
            loop {
                let next = queue.lock().expect("queue lock").pop_front();
                let Some((table_index, entry)) = next else { break };
                let table = &manifest.tables[table_index];
                let statement = database::copy_in_statement(&table.schema, &table.name, &table.columns);
                let stream = open(&core, &manifest, &entry).await?;
                database::copy_in(&mut conn, &statement, stream).await.map_err(|e| {
                    e.context(format!("loading table {}.{} ({})", table.schema, table.name, entry.name))
                })?;
                progress.add_bytes(entry.plain_size);
                let mut n = done.lock().expect("done lock");
                *n += 1;
                progress.set_message(format!("tables {n}/{total}"));
            }
            ConnSpec::close(conn).await;
            Ok::<_, Error>(())
        });
    }
    while let Some(joined) = set.join_next().await {
        let outcome =
            joined.unwrap_or_else(|e| Err(Error::new(ErrorKind::Internal, format!("a load task failed: {e}"))));
        if let Err(e) = outcome {
            set.abort_all();
            return Err(e);
        }
    }
    Ok(())
}

/// Decides what happens to the snapshot's media, before anything is written: every path
/// is checked, and a snapshot with media needs `--media-target` or `--no-media`.
fn media_plan(
    core: &Core,
    manifest: &Manifest,
    opts: &RestoreOptions,
) -> Result<Option<(MediaTarget, Vec<MediaEntry>)>> {
    let files = match &manifest.media {
        Some(m) if !m.files.is_empty() && !opts.no_media => &m.files,
        _ => return Ok(None),
    };
    for f in files {
        crate::source::media::validate_path(&f.path)?;
        crate::repo::layout::media_object(&manifest.workspace, &f.sha256)?;
    }
    let Some(target) = &opts.media_target else {
        return Err(Error::usage(format!(
            "snapshot {} has {} media files: pass --media-target DIR (or an s3:// URL) to restore them, \
             or --no-media to restore only the database",
            manifest.id,
            files.len()
        )));
    };
    Ok(Some((MediaTarget::open(target, &core.config.config.repository)?, files.clone())))
}

async fn restore_media(
    core: &Core,
    manifest: &Manifest,
    target: &MediaTarget,
    files: &[MediaEntry],
    jobs: usize,
    progress: &Progress,
) -> Result<()> {
    progress.set_message(format!("media: {} files", files.len()));
    let identities = core.identities()?;
    let store = core.repo.clone();
    futures::stream::iter(files.to_vec())
        .map(|entry| {
            let (store, identities) = (store.clone(), identities.clone());
            async move {
                let key = crate::repo::layout::media_object(&manifest.workspace, &entry.sha256)?;
                let expect = Expect::Content { sha256: entry.sha256.clone(), size: Some(entry.size) };
                let stream = read_verified(&store, &key, expect, &identities).await?;
                media::write(target, &entry, stream)
                    .await
                    .map_err(|e| e.context(format!("restoring media file {}", entry.path)))?;
                progress.add_bytes(entry.size);
                Ok::<_, Error>(())
            }
        })
        .buffer_unordered(jobs)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect()
}

/// `restore --stacks-only`: makes every function stack live again as it was at the
/// snapshot, in the live workspace database, as new changes (history kept: each change
/// says which snapshot it came from). Stacks created after the snapshot are left alone.
///
/// Errors: `NotFound` when the snapshot has no function stacks; `Integrity` for damaged
/// objects; `Usage` when the workspace is not configured.
pub async fn restore_stacks(
    core: &Core,
    snapshot: &str,
    workspace: Option<&str>,
    author: &str,
) -> Result<Vec<crate::stacks::log::PutOutcome>> {
    let (workspace, snapshot) = super::snapshot::resolve(core, snapshot, workspace).await?;
    let manifest = core.repo.read_manifest(&workspace, &snapshot, &core.identities()?).await?;
    let (stack_rows, stack_cols) = tidemark_table_rows(core, &manifest, "stacks").await?;
    let (change_rows, change_cols) = tidemark_table_rows(core, &manifest, "stack_changes").await?;
    let position = |cols: &[String], name: &str| {
        cols.iter()
            .position(|c| c == name)
            .ok_or_else(|| Error::integrity(format!("the snapshot's stack tables have no column {name}")))
    };
    let (stack_id_col, kind_col, name_col) =
        (position(&stack_cols, "id")?, position(&stack_cols, "kind")?, position(&stack_cols, "name")?);
    let (change_id_col, of_col, content_col) =
        (position(&change_cols, "id")?, position(&change_cols, "stack_id")?, position(&change_cols, "content")?);
    let number = |v: &Option<String>| v.as_deref().and_then(|s| s.parse::<i64>().ok());
    // The live change of each stack at the snapshot: its newest change.
    let mut live: std::collections::BTreeMap<i64, (i64, String)> = Default::default();
    for row in &change_rows {
        let (Some(id), Some(stack), Some(content)) =
            (number(&row[change_id_col]), number(&row[of_col]), row[content_col].clone())
        else {
            return Err(Error::integrity("a stack change in the snapshot is malformed"));
        };
        if live.get(&stack).is_none_or(|(newest, _)| id > *newest) {
            live.insert(stack, (id, content));
        }
    }
    let mut conn = {
        let ws = core.config.workspace(&workspace)?;
        ConnSpec::parse(&ws.database_url, ws.password.as_ref())?.connect().await?
    };
    crate::stacks::install(&mut conn).await?;
    let message = format!("restore from snapshot {snapshot}");
    let mut out = Vec::new();
    for row in &stack_rows {
        let (Some(id), Some(kind), Some(name)) = (number(&row[stack_id_col]), &row[kind_col], &row[name_col]) else {
            return Err(Error::integrity("a stack in the snapshot is malformed"));
        };
        let Some((_, content)) = live.get(&id) else { continue };
        let stack = crate::stacks::StackRef::parse(&format!("{kind}/{name}"))?;
        let doc = crate::stacks::Document::parse(content, &format!("{stack} in snapshot {snapshot}"))?;
        let reverted_to = format!("snapshot:{snapshot}");
        out.push(crate::stacks::log::put(&mut conn, &stack, &doc, author, Some(&message), Some(&reverted_to)).await?);
    }
    ConnSpec::close(conn).await;
    Ok(out)
}

/// The rows (COPY text fields) and columns of table `tidemark.<name>` in a snapshot.
async fn tidemark_table_rows(
    core: &Core,
    manifest: &Manifest,
    name: &str,
) -> Result<(Vec<Vec<Option<String>>>, Vec<String>)> {
    let table = manifest.tables.iter().find(|t| t.schema == "tidemark" && t.name == name).ok_or_else(|| {
        Error::not_found(format!("snapshot {} has no function stacks (no tidemark.{name} table)", manifest.id))
    })?;
    let mut text = Vec::new();
    for part in &table.parts {
        text.extend(crate::repo::pipeline::read_to_end(open(core, manifest, part).await?).await?);
    }
    let text = String::from_utf8(text).map_err(|_| Error::integrity(format!("tidemark.{name} data is not UTF-8")))?;
    let rows = text.lines().map(crate::restore::copytext::fields).collect();
    Ok((rows, table.columns.clone()))
}
