//! Snapshots: take one (schema + every table, consistent at one instant, streamed through
//! the pipeline), list them, show one. The manifest is committed last; a snapshot without
//! a manifest does not exist.

use std::time::Instant;

use serde::{Deserialize, Serialize};

mod list;

pub use list::{
    INDEX_FRESH, INDEX_RECHECK, ListOptions, Retained, ShowOptions, SnapshotSummary, compare_indexes, list, manifest,
    page, resolve, show, sync_index,
};

use super::job::WaitFor;
use super::{Core, jobs_or_default};
use crate::actor::Actor;
use crate::error::{Error, Result};
use crate::repo::layout;
use crate::repo::manifest::{Manifest, SnapshotKind, TableEntry, Timings};
use crate::source::digest::{self, RowDigest};
use crate::source::postgres::{self, Section, SnapshotSession};
use crate::source::{copy, media_backup};

/// Tables larger than this (heap bytes) are split into parts copied in parallel.
pub const DEFAULT_SPLIT_TABLE_MIB: u64 = 256;

/// What `snapshot create` takes, from the CLI, the API or a schedule; the API's request
/// body (`POST .../snapshots`) as it is: a request sets only a note and `no_media` (the
/// rest is the path's, the host's or a schedule's).
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct SnapshotOptions {
    /// The workspace (the API's path names it).
    #[serde(skip)]
    pub workspace: String,
    /// Why it was taken ("before migration 42").
    pub note: Option<String>,
    /// Manual (a person's or a request's) or automatic (a schedule's).
    #[serde(skip)]
    pub kind: SnapshotKind,
    /// Parallel connections copying tables (default: one per core).
    #[serde(skip)]
    pub jobs: Option<usize>,
    /// Split tables larger than this many MiB into parts (0: never split).
    #[serde(skip)]
    pub split_table_mib: u64,
    /// Leave the media store out of this snapshot.
    pub no_media: bool,
    /// When another operation holds the workspace: refuse (default) or wait.
    #[serde(skip)]
    pub wait: WaitFor,
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
            wait: WaitFor::NO,
        }
    }
}

/// Takes a snapshot of a workspace's database.
///
/// Errors: `NotFound` for an unknown workspace, `Unavailable` when the database or the
/// store cannot be reached, `Refused` while another operation holds the workspace (see
/// [`super::job::take_workspace`]), `Integrity` when an object it wrote is gone before it commits, `Database` when Postgres or pg_dump refuses. On any error no
/// manifest is written, so no snapshot appears; objects already uploaded are garbage.
pub async fn create(core: &Core, opts: &SnapshotOptions, actor: &Actor) -> Result<Manifest> {
    // Stopped (Ctrl-C, SIGTERM, a stopping daemon): dropped before its manifest, so nothing
    // of it is visible.
    core.until_stopped(take(core, opts, actor)).await
}

// Longer than ~100 lines: a snapshot's steps in their order (exported snapshot, schema, tables in parallel, media, commit); each is an engine call, and splitting them would hide the order.
async fn take(core: &Core, opts: &SnapshotOptions, actor: &Actor) -> Result<Manifest> {
    super::check_jobs(opts.jobs)?;
    // Under object lock, everything it writes is held for its kind's retention.
    let until = super::hold::snapshot_until(core, &opts.workspace, opts.kind, chrono::Utc::now())?;
    let core = &super::hold::locking(core, until);
    let ws = core.workspace(&opts.workspace)?;
    // Never beside another operation on this workspace (a prune would collect this
    // snapshot's objects, which no manifest commits yet).
    let _lock = super::job::take_workspace(
        core,
        &opts.workspace,
        crate::operation::Operation::Snapshot.lock_label(),
        actor,
        opts.wait,
    )
    .await?;
    let spec = ws.conn()?.clone();
    let progress = core.progress();
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

    let dest = copy::Destination {
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
            let pre = copy::dump_schema(&dest, &spec, bin_dir.as_deref(), &snapshot_name, Section::PreData);
            let post = copy::dump_schema(&dest, &spec, bin_dir.as_deref(), &snapshot_name, Section::PostData);
            let (pre, post) = futures::try_join!(pre, post)?;
            Ok::<_, Error>((pre, post, t.elapsed().as_millis() as u64))
        }))
    };

    let data_clock = Instant::now();
    let jobs = jobs_or_default(opts.jobs);
    let parts = copy::copy_tables(&dest, &session, &spec, opts.split_table_mib << 20, jobs, progress).await;
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

    let media = match (&ws.config.media, opts.no_media) {
        (Some(url), false) => {
            let repository = &core.config.config.repository;
            Some(media_backup::backup_media(&dest, url, repository, core.cache_dir.as_deref(), jobs, progress).await?)
        }
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
    let (taken_as, database_owner) = (session.taken_as.clone(), session.database_owner.clone());
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
        taken_as: Some(taken_as),
        database_owner: Some(database_owner),
        warnings,
        repository_digest: Some(core.repo.descriptor().digest()),
    };
    if let Some(until) = until {
        // Media it shares with older snapshots, and repository.json, are needed as long.
        super::hold::extend_snapshot(core, Some(&manifest), &opts.workspace, &id, until).await?;
    }
    // A process paused past its lease must not commit what another may be taking now.
    crate::catalog::lock::fence(&opts.workspace, &format!("committing snapshot {id}")).await?;
    core.repo.commit_manifest(&manifest, &recipients).await?;
    list::index_committed(core, &manifest).await;
    progress.finish();
    tracing::info!(workspace = %opts.workspace, id = %id, bytes = manifest.stored_bytes(), "snapshot committed");
    Ok(manifest)
}

/// What a snapshot job records as its end.
pub fn job_end(m: &Manifest) -> crate::catalog::JobEnd {
    crate::catalog::JobEnd { snapshot_id: Some(m.id.clone()), bytes: Some(m.stored_bytes()), ..Default::default() }
}

/// [`create`], recorded in the catalog's job history (see [`super::job::recorded`]):
/// stopped by the core's stop signal (Ctrl-C, SIGTERM) with nothing committed and the job
/// recorded as aborted, "interrupted".
pub async fn create_recorded(core: &Core, opts: &SnapshotOptions, actor: &Actor) -> Result<Manifest> {
    let spec = super::job::JobSpec {
        workspace: opts.workspace.clone(),
        operation: crate::operation::Operation::Snapshot,
        kind: Some(opts.kind.to_string()),
    };
    super::job::recorded(core, actor, spec, |core| async move { create(&core, opts, actor).await }, job_end).await
}
