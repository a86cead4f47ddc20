//! Restore a snapshot into a new (or empty) database: pre-data schema, every table loaded
//! in parallel with `COPY FROM`, post-data (indexes, constraints, triggers: so user triggers
//! never fire during the load), sequence values, materialized views. Every object's hash is
//! checked; a missing or altered object stops the restore and names the object.

use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::job::WaitFor;
use super::{Core, jobs_or_default};
use crate::actor::Actor;
use crate::error::{Error, ErrorKind, Result};
use crate::pg::ConnSpec;
use crate::repo::manifest::{Manifest, MediaEntry};
use crate::restore::database::{self, TargetState};
pub use crate::restore::load::RestoreTimings;
use crate::restore::load::{self, SnapshotSource};
use crate::restore::media::MediaTarget;
use chrono::{DateTime, Utc};

use super::pitr::PitrRestoreReport;

mod moment;
mod options;
mod some_tables;
mod stacks;

pub use crate::restore::RestoreTarget;
pub use crate::restore::tables::TablesOutcome;
use crate::restore::tables::{self, TablePick, TablesFrom, TablesInto};
pub(in crate::ops) use moment::copy_of_moment;
use moment::restore_moment;
pub use options::*;
use some_tables::restore_tables;
pub use stacks::*;

/// Where a restore takes its data from.
enum RestoreFrom {
    Snapshot(String),
    Time(DateTime<Utc>),
}

/// Restores a snapshot into `opts.target`.
///
/// Errors: `NotFound` for an unknown snapshot, `Key` without a matching identity,
/// `Integrity` for a missing or altered object (named), `Refused` for a non-empty target,
/// `Database`/`Unavailable` from Postgres. A database the restore created is dropped again
/// when it fails; an existing empty one is left as it is. The core's stop signal (Ctrl-C,
/// SIGTERM) ends it as a failure does (`Interrupted`). A restore into the workspace's own
/// database takes the workspace (`Refused` while another operation holds it).
pub async fn restore(core: &Core, opts: &RestoreOptions, actor: &Actor) -> Result<RestoreReport> {
    let core = &core.on_repository(opts.repository.as_deref()).await?;
    let clock = Instant::now();
    check_request(core, opts, actor).await?;
    let (workspace, from) = source_of(core, opts).await?;
    // Who may: decided here for every front end, by the operation this request is.
    crate::access::check(&actor.grant(), operation_of(opts).permission(), Some(&workspace))?;
    if some_tables_asked(opts) {
        return restore_tables(core, opts, actor, &workspace, &from, clock).await;
    }
    let id = match from {
        RestoreFrom::Snapshot(id) => id,
        RestoreFrom::Time(time) => return restore_moment(core, opts, actor, &workspace, time, clock).await,
    };
    let target = target_of(core, opts, &workspace, actor).await?;
    let own = match core.workspace(&workspace) {
        Ok(ws) => ws.conn().is_ok_and(|spec| spec.same_database(&target)),
        Err(_) => false,
    };
    let _lock = match own {
        true => {
            Some(super::job::take_workspace(core, &workspace, operation_of(opts).lock_label(), actor, opts.wait).await?)
        }
        false => None,
    };
    restore_database(core, opts, &workspace, &id, target, clock).await
}

/// What a restore may be refused for before any work, for every front end (the API asks
/// before it starts the job, and the restore asks again): its limits, its source's
/// spelling, and, when the workspace is known, its target (`guard_target`).
///
/// Errors: `Usage` for limits and spellings, those of `guard_target`.
pub async fn check_request(core: &Core, opts: &RestoreOptions, actor: &Actor) -> Result<()> {
    super::check_jobs(opts.jobs)?;
    super::check_tables(&opts.tables, "tables")?;
    super::check_tables(&opts.rename_to, "new table names")?;
    crate::restore::RestoreSource::from_options(Some(&opts.snapshot), opts.time.as_deref())?;
    if some_tables_asked(opts) {
        some_tables::table_picks(opts)?;
    }
    match (&opts.workspace, opts.target.is_live()) {
        (Some(workspace), false) => target_of(core, opts, workspace, actor).await.map(drop),
        _ => Ok(()),
    }
}

/// Whether the request is for some tables (into a new database, or beside the live ones).
fn some_tables_asked(opts: &RestoreOptions) -> bool {
    !opts.tables.is_empty() || opts.target.is_live() || !opts.rename_to.is_empty()
}

/// The operation a restore request is: tables into the live database, or a restore into a
/// new one.
pub fn operation_of(opts: &RestoreOptions) -> crate::operation::Operation {
    crate::operation::Operation::restore(opts.target.is_live())
}

/// The workspace and the snapshot (or moment) a restore starts from.
///
/// Errors: `Usage` for both a snapshot and a time, or a time that is not one; those of
/// resolving the snapshot.
async fn source_of(core: &Core, opts: &RestoreOptions) -> Result<(String, RestoreFrom)> {
    match crate::restore::RestoreSource::from_options(Some(&opts.snapshot), opts.time.as_deref())? {
        crate::restore::RestoreSource::Time(time) => {
            Ok((core.workspace_or_only(opts.workspace.as_deref())?, RestoreFrom::Time(time)))
        }
        asked => {
            let snapshot = asked.snapshot().unwrap_or("latest");
            let (workspace, id) = super::snapshot::resolve(core, snapshot, opts.workspace.as_deref()).await?;
            Ok((workspace, RestoreFrom::Snapshot(id)))
        }
    }
}

/// The target's database with its credentials, once [`guard_target`] lets `actor`
/// restore into it (`workspace`: the workspace restored, whose server a named target is on).
async fn target_of(core: &Core, opts: &RestoreOptions, workspace: &str, actor: &Actor) -> Result<ConnSpec> {
    let (target, reserved) = opts.target.resolve(|| Ok(core.workspace(workspace)?.conn()?.clone()))?;
    guard_target(core, &target, actor, reserved).await?;
    Ok(target)
}

/// Whether `actor` may restore into `target`, for every front end (the rule is
/// `restore::database::guard_target`; the API asks it before it starts the job too).
///
/// Errors: those of `guard_target`.
pub async fn guard_target(core: &Core, target: &ConnSpec, actor: &Actor, reserved: bool) -> Result<()> {
    database::guard_target(&core.config.config.workspaces, target, &actor.grant(), reserved).await
}

async fn restore_database(
    core: &Core,
    opts: &RestoreOptions,
    workspace: &str,
    id: &str,
    target: ConnSpec,
    clock: Instant,
) -> Result<RestoreReport> {
    let (progress, stop) = (core.progress(), core.stop());
    let manifest = core.repo.read_manifest(workspace, id, &core.identities()?).await?;
    let media = media_plan(core, &manifest, opts)?;
    progress.set_prefix(format!("restore {}", manifest.id));
    progress.set_message("checking objects");
    // What the restore counts as it goes: table data as it enters COPY, media as written.
    let table_bytes: u64 = manifest.tables.iter().flat_map(|t| &t.parts).map(|p| p.plain_size).sum();
    let media_bytes: u64 = media.as_ref().map_or(0, |(_, files)| files.iter().map(|f| f.size).sum());
    progress.set_total_bytes(table_bytes + media_bytes);
    preflight(core, &manifest, media.is_some()).await?;
    let check_ms = clock.elapsed().as_millis() as u64;

    let state = database::prepare_target(&target, &manifest.source).await?;
    let from = SnapshotSource::new(&core.repo, &core.identities()?, &manifest);
    let (bin_dir, jobs) = (core.pg_bin_dir(), jobs_or_default(opts.jobs));
    let work = async {
        database::mark_incomplete(&target, &manifest.id).await?;
        let (mut timings, skipped) =
            load::load_database(&from, &target, bin_dir.as_deref(), jobs, progress, opts.table_loaded.clone()).await?;
        if let Some((media_target, files)) = &media {
            let t = Instant::now();
            load::load_media(&from, media_target, files, jobs, progress).await?;
            timings.media_ms = t.elapsed().as_millis() as u64;
        }
        database::mark_complete(&target).await?;
        Ok::<_, Error>((timings, skipped))
    };
    let result = tokio::select! {
        r = work => r,
        () = stop.cancelled() => Err(Error::new(ErrorKind::Interrupted, "the restore was interrupted")),
    };
    progress.finish();
    match result {
        Ok((mut timings, skipped_privileges)) => {
            timings.check_ms = check_ms;
            timings.total_ms = clock.elapsed().as_millis() as u64;
            Ok(RestoreReport {
                snapshot: manifest.id.clone(),
                workspace: workspace.to_string(),
                target: target.display(),
                created_database: state == TargetState::Created,
                tables: manifest.tables.len(),
                rows: manifest.total_rows(),
                plain_bytes: manifest.plain_bytes(),
                stored_bytes: manifest.stored_bytes(),
                media_files: media.as_ref().map(|(_, files)| files.len()).unwrap_or(0),
                timings,
                table_restore: None,
                time: None,
                point_in_time: None,
                skipped_privileges,
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

/// What a restore job records as its end.
pub fn job_end(r: &RestoreReport) -> crate::catalog::JobEnd {
    let snapshot_id = (!r.snapshot.is_empty()).then(|| r.snapshot.clone());
    crate::catalog::JobEnd { snapshot_id, bytes: Some(r.stored_bytes), ..Default::default() }
}

/// [`restore`] as a recorded job (see [`super::job::recorded`]).
pub async fn restore_recorded(core: &Core, opts: &RestoreOptions, actor: &Actor) -> Result<RestoreReport> {
    check_request(core, opts, actor).await?;
    let (workspace, _) = source_of(core, opts).await?;
    let spec = super::job::JobSpec { workspace, operation: operation_of(opts), kind: None };
    super::job::recorded(core, actor, spec, |core| async move { restore(&core, opts, actor).await }, job_end).await
}

/// Every object the manifest names must exist with the recorded size before anything is
/// written, so a damaged snapshot is refused up front.
async fn preflight(core: &Core, manifest: &Manifest, with_media: bool) -> Result<()> {
    core.repo.verify_present(manifest, with_media).await.map_err(|e| match e.kind() {
        ErrorKind::Integrity => Error::integrity(format!("{}: the snapshot is damaged", e.message())),
        _ => e,
    })
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
            "snapshot {} has {} media files: give a media target (a folder or an s3:// URL) to restore them, \
             or leave the media out to restore only the database",
            manifest.id,
            files.len()
        )));
    };
    Ok(Some((MediaTarget::open(target, &core.config.config.repository)?, files.clone())))
}
