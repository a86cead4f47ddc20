//! Loading a snapshot: its database into an empty target (schema, tables in parallel with
//! `COPY FROM`, post-data, sequences, materialized views) and its media into a folder or
//! prefix; and reading a small table's rows (the function stacks). Every byte comes from a
//! verified object stream.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures::StreamExt;
use serde::Serialize;
use tokio::task::JoinSet;

use super::database;
use super::media::MediaTarget;
use crate::error::{Error, ErrorKind, Result};
use crate::keys::Identities;
use crate::pg::ConnSpec;
use crate::progress::Progress;
use crate::repo::Repository;
use crate::repo::layout::SnapshotObject;
use crate::repo::manifest::{Manifest, MediaEntry, ObjectEntry};
use crate::repo::pipeline::{Expect, ObjectStream, read_object, read_to_end, read_verified};

/// A snapshot to read from: where its objects are, the keys that open them, its manifest.
#[derive(Clone)]
pub struct SnapshotSource {
    pub repo: Repository,
    pub identities: Identities,
    pub manifest: Arc<Manifest>,
}

impl SnapshotSource {
    pub fn new(repo: &Repository, identities: &Identities, manifest: &Manifest) -> SnapshotSource {
        SnapshotSource { repo: repo.clone(), identities: identities.clone(), manifest: Arc::new(manifest.clone()) }
    }

    /// One of the snapshot's objects, streamed and verified.
    ///
    /// Errors: `Integrity` when it is missing (at once) or does not verify (at its end).
    pub async fn open(&self, entry: &ObjectEntry) -> Result<ObjectStream> {
        let path = SnapshotObject::key_for_name(&self.manifest.workspace, &self.manifest.id, &entry.name)?;
        read_object(&self.repo, &path, entry, &self.identities).await
    }
}

/// The rows of a table as `COPY` text fields (`None`: NULL), and its columns.
pub struct TableRows {
    pub rows: Vec<Vec<Option<String>>>,
    pub columns: Vec<String>,
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

/// Loads a snapshot's database into `target` (an empty database): the schema's pre-data,
/// every table (`jobs` connections, largest parts first), post-data in parallel, then
/// sequence values and materialized views. Returns the phases' times.
///
/// Errors: `Integrity`/`Key` for an object that does not verify (named), `Database` from
/// Postgres.
pub async fn load_database(
    from: &SnapshotSource,
    target: &ConnSpec,
    bin_dir: Option<&Path>,
    jobs: usize,
    progress: &Progress,
) -> Result<RestoreTimings> {
    let manifest = &from.manifest;
    let mut timings = RestoreTimings::default();

    let t = Instant::now();
    progress.set_message("schema (pre-data)");
    let pre = from.open(&manifest.schema_pre).await?;
    database::apply_sql(bin_dir, target, pre, "the schema (pre-data)").await?;
    timings.pre_data_ms = t.elapsed().as_millis() as u64;

    let t = Instant::now();
    load_tables(from, target, jobs, progress).await?;
    timings.data_ms = t.elapsed().as_millis() as u64;

    let t = Instant::now();
    progress.set_message("indexes, constraints, triggers (post-data)");
    let post = read_to_end(from.open(&manifest.schema_post).await?)
        .await
        .map_err(|e| e.context("reading the schema (post-data)".to_string()))?;
    database::apply_post_data(bin_dir, target, post, jobs).await?;
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

async fn load_tables(from: &SnapshotSource, target: &ConnSpec, jobs: usize, progress: &Progress) -> Result<()> {
    let manifest = &from.manifest;
    let mut items: Vec<(usize, ObjectEntry)> =
        manifest.tables.iter().enumerate().flat_map(|(i, t)| t.parts.iter().map(move |p| (i, p.clone()))).collect();
    items.sort_by_key(|(_, p)| std::cmp::Reverse(p.stored_size));
    let total = items.len();
    if total == 0 {
        return Ok(());
    }
    let queue = Arc::new(Mutex::new(VecDeque::from(items)));
    let done = Arc::new(Mutex::new(0usize));
    progress.set_tables(0, total as u64);
    let mut set = JoinSet::new();
    for _ in 0..jobs.max(1).min(total) {
        let (queue, done, from) = (queue.clone(), done.clone(), from.clone());
        let (target, progress) = (target.clone(), progress.clone());
        set.spawn(async move {
            let mut conn = target.connect().await?;
            sqlx::raw_sql("SET synchronous_commit = off").execute(&mut conn).await?;
            loop {
                let next = queue.lock().expect("queue lock").pop_front();
                let Some((table_index, entry)) = next else { break };
                let table = &from.manifest.tables[table_index];
                let statement = database::copy_in_statement(&table.schema, &table.name, &table.columns);
                let stream = from.open(&entry).await?;
                database::copy_in(&mut conn, &statement, stream).await.map_err(|e| {
                    e.context(format!("loading table {}.{} ({})", table.schema, table.name, entry.name))
                })?;
                progress.add_bytes(entry.plain_size);
                let mut n = done.lock().expect("done lock");
                *n += 1;
                progress.set_tables(*n as u64, total as u64);
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

/// Restores media files into `target`, `jobs` at a time, each verified against its hash.
///
/// Errors: `Integrity` for a file that does not verify or a path that would escape the
/// target; those of the store.
pub async fn load_media(
    from: &SnapshotSource,
    target: &MediaTarget,
    files: &[MediaEntry],
    jobs: usize,
    progress: &Progress,
) -> Result<()> {
    progress.set_message(format!("media: {} files", files.len()));
    futures::stream::iter(files.to_vec())
        .map(|entry| {
            let from = from.clone();
            async move {
                let key = crate::repo::layout::media_object(&from.manifest.workspace, &entry.sha256)?;
                let expect = Expect::Content { sha256: entry.sha256.clone(), size: Some(entry.size) };
                let stream = read_verified(&from.repo, &key, expect, &from.identities).await?;
                super::media::write(target, &entry, stream)
                    .await
                    .map_err(|e| e.context(format!("restoring media file {}", entry.path)))?;
                progress.add_bytes(entry.size);
                Ok::<_, Error>(())
            }
        })
        .buffer_unordered(jobs.max(1))
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect()
}

/// The rows (COPY text fields) and columns of table `schema.name` in a snapshot (a small
/// table: it is read into memory).
///
/// Errors: `NotFound` when the snapshot has no such table; `Integrity` for damaged data.
pub async fn table_rows(from: &SnapshotSource, schema: &str, name: &str) -> Result<TableRows> {
    let manifest = &from.manifest;
    let table = manifest
        .tables
        .iter()
        .find(|t| t.schema == schema && t.name == name)
        .ok_or_else(|| Error::not_found(format!("snapshot {} has no table {schema}.{name}", manifest.id)))?;
    let mut text = Vec::new();
    for part in &table.parts {
        text.extend(read_to_end(from.open(part).await?).await?);
    }
    let text = String::from_utf8(text).map_err(|_| Error::integrity(format!("{schema}.{name} data is not UTF-8")))?;
    let rows = text.lines().map(super::copytext::fields).collect();
    Ok(TableRows { rows, columns: table.columns.clone() })
}
