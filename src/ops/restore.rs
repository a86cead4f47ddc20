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
pub use crate::restore::tables::TablesOutcome;
use crate::restore::tables::{self, TablePick, TablesFrom, TablesInto};

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
    /// The target server's password when the URL carries none: `env:VARIABLE` or
    /// `file:/path` (a password given as is is refused).
    pub target_password: Option<String>,
    /// The target's password as a configured secret (a drill's scratch server).
    #[serde(skip)]
    pub target_secret: Option<crate::config::Secret>,
    /// The target already resolved, with its credentials; wins over `target` and the
    /// passwords (the API's: a database on the workspace's own server).
    #[serde(skip)]
    pub target_conn: Option<ConnSpec>,
    /// When the target is the workspace's own database and another operation holds the
    /// workspace: refuse (default) or wait.
    pub wait: WaitFor,
    /// Only these tables (`schema.name`), with their indexes, constraints, defaults, owned
    /// sequences and row-level security; foreign keys to other tables are left out.
    pub tables: Vec<String>,
    /// With `tables`: into the workspace's live database, under the names in `as`.
    pub into_live: bool,
    /// With `tables`: the names they get, one per table in the same order (required with
    /// `into-live`: a restore never goes over an existing table).
    #[serde(rename = "as")]
    pub rename_to: Vec<String>,
    /// A moment instead of a snapshot (`2026-11-22 10:15:00+00`): the workspace is
    /// recovered to it in a throwaway cluster and the database (or `tables`) copied from
    /// there.
    pub time: Option<String>,
    /// How the recovered server runs `tidemark wal fetch` (default: this binary).
    #[serde(skip)]
    pub tidemark_command: Option<String>,
    /// The target is a name the calling operation reserved for itself (an in-place
    /// restore's copy beside the live database, a branch): set by those operations only,
    /// never from a request.
    #[serde(skip)]
    pub reserved_target: bool,
    /// Hears of each table of the snapshot (its index in the manifest) once its rows are
    /// committed and its indexes and constraints built, while the restore goes on (a drill
    /// checks them meanwhile; see [`crate::restore::load::TableLoaded`]).
    #[serde(skip)]
    pub table_loaded: Option<crate::restore::load::TableLoaded>,
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
    /// With `tables`: what came back, under which names, what was left out and how much
    /// of the snapshot was read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub table_restore: Option<TablesOutcome>,
    /// The moment restored (`snapshot` is then empty).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time: Option<DateTime<Utc>>,
    /// With `time`: the recovery in the throwaway cluster (removed since).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub point_in_time: Option<PitrRestoreReport>,
    /// Privilege statements of the snapshot (GRANT, REVOKE) that the restoring role may not
    /// give, skipped: everything else was restored. A superuser can run them afterwards.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped_privileges: Vec<String>,
}

/// Where a restore takes its data from.
enum RestoreFrom {
    Snapshot(String),
    Time(DateTime<Utc>),
}

/// What [`copy_of_moment`] did.
pub(super) struct MomentCopy {
    /// Tables and sequences compared with the recovered database.
    pub compared: usize,
    /// Rows copied.
    pub rows: u64,
    pub state: TargetState,
    pub recovery: PitrRestoreReport,
}

/// The workspace recovered to `time` in a throwaway cluster, its database copied into
/// `target` (new or empty), every table (rows, content digest) and sequence of the copy
/// compared with the recovered database, and the throwaway removed. A copy that fails or
/// differs is dropped again (when it was created here).
///
/// Errors: those of `pitr restore` (`Refused` for a moment outside the window, before
/// anything is written); `Refused` for a target that is not empty; `Integrity` when the
/// copy differs; `Database` from pg_dump or psql.
pub(super) async fn copy_of_moment(
    core: &Core,
    workspace: &str,
    time: DateTime<Utc>,
    tidemark_command: Option<String>,
    target: &ConnSpec,
    actor: &Actor,
) -> Result<MomentCopy> {
    let moment = crate::wal::window::Target::Time(time);
    let past = super::pitr::past::recover(core, workspace, &moment, tidemark_command, actor).await?;
    let copied = async {
        let state = database::copy_database(core.pg_bin_dir().as_deref(), &past.spec, target).await?;
        let compared = crate::drill::verify::compare_databases(&past.spec, target).await;
        match compared {
            Ok(c) if c.differences.is_empty() => Ok((c.compared, c.rows, state)),
            other => {
                if state == TargetState::Created {
                    let _ = database::drop_database(target).await;
                }
                Err(match other {
                    Ok(c) => Error::integrity(format!(
                        "the copy differs from the recovered database: {}; it was dropped",
                        c.differences.join("; ")
                    )),
                    Err(e) => e.context("comparing the copy with the recovered database".to_string()),
                })
            }
        }
    }
    .await;
    let recovery = past.report.clone();
    if let Err(e) = past.remove(core).await {
        tracing::warn!(error = %e.report(), "the throwaway cluster of a point-in-time restore could not be removed");
    }
    copied.map(|(compared, rows, state)| MomentCopy { compared, rows, state, recovery })
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
    let clock = Instant::now();
    super::check_jobs(opts.jobs)?;
    super::check_tables(&opts.tables, "tables")?;
    super::check_tables(&opts.rename_to, "new table names")?;
    let (workspace, from) = source_of(core, opts).await?;
    // Who may: decided here for every front end, by the operation this request is.
    crate::access::check(&actor.grant(), operation_of(opts).permission(), Some(&workspace))?;
    if !opts.tables.is_empty() || opts.into_live || !opts.rename_to.is_empty() {
        return restore_tables(core, opts, actor, &workspace, &from, clock).await;
    }
    let id = match from {
        RestoreFrom::Snapshot(id) => id,
        RestoreFrom::Time(time) => return restore_moment(core, opts, actor, &workspace, time, clock).await,
    };
    let target = target_of(core, opts, actor).await?;
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

/// The operation a restore request is: tables into the live database, or a restore into a
/// new one.
pub fn operation_of(opts: &RestoreOptions) -> crate::operation::Operation {
    crate::operation::Operation::restore(opts.into_live)
}

/// The workspace and the snapshot (or moment) a restore starts from.
///
/// Errors: `Usage` for both a snapshot and a time, or a time that is not one; those of
/// resolving the snapshot.
async fn source_of(core: &Core, opts: &RestoreOptions) -> Result<(String, RestoreFrom)> {
    match &opts.time {
        Some(_) if !opts.snapshot.is_empty() => Err(Error::usage("give a snapshot or --time, not both")),
        Some(time) => {
            let time = crate::wal::window::parse_time(time)?;
            Ok((core.workspace_or_only(opts.workspace.as_deref())?, RestoreFrom::Time(time)))
        }
        None => {
            let (workspace, id) = super::snapshot::resolve(core, &opts.snapshot, opts.workspace.as_deref()).await?;
            Ok((workspace, RestoreFrom::Snapshot(id)))
        }
    }
}

/// `restore --time T --target URL`: the workspace's database as it was at `time`.
async fn restore_moment(
    core: &Core,
    opts: &RestoreOptions,
    actor: &Actor,
    workspace: &str,
    time: DateTime<Utc>,
    clock: Instant,
) -> Result<RestoreReport> {
    let target = target_of(core, opts, actor).await?;
    let own = core.workspace(workspace)?.conn().is_ok_and(|spec| spec.same_database(&target));
    let _lock = match own {
        true => {
            Some(super::job::take_workspace(core, workspace, operation_of(opts).lock_label(), actor, opts.wait).await?)
        }
        false => None,
    };
    let copy = copy_of_moment(core, workspace, time, opts.tidemark_command.clone(), &target, actor);
    let copied = tokio::select! {
        r = copy => r,
        () = core.stop().cancelled() => Err(Error::new(ErrorKind::Interrupted, "the restore was interrupted")),
    };
    let copied = copied
        .map_err(|e| e.context(format!("restoring workspace {workspace} as of {time} into {}", target.display())))?;
    Ok(RestoreReport {
        snapshot: String::new(),
        workspace: workspace.to_string(),
        target: target.display(),
        created_database: copied.state == TargetState::Created,
        tables: copied.compared,
        rows: copied.rows,
        plain_bytes: copied.recovery.plain_bytes,
        stored_bytes: copied.recovery.stored_bytes,
        media_files: 0,
        timings: RestoreTimings { total_ms: clock.elapsed().as_millis() as u64, ..Default::default() },
        table_restore: None,
        time: Some(time),
        point_in_time: Some(copied.recovery),
        skipped_privileges: Vec::new(),
    })
}

/// The target as given (resolved already, or a URL with its password reference), once
/// [`guard_target`] lets `actor` restore into it.
async fn target_of(core: &Core, opts: &RestoreOptions, actor: &Actor) -> Result<ConnSpec> {
    let target = match &opts.target_conn {
        Some(resolved) => resolved.clone(),
        None => {
            let password = match &opts.target_password {
                Some(text) => Some(crate::secret::Secret::reference("--target-password", text)?),
                None => opts.target_secret.clone(),
            };
            ConnSpec::parse(&opts.target, password.as_ref())?
        }
    };
    guard_target(core, &target, actor, opts.reserved_target).await?;
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

/// `restore --table`: the picked tables into a new or empty database (`target`), or into
/// the live one under new names (`into-live`, which takes the workspace).
async fn restore_tables(
    core: &Core,
    opts: &RestoreOptions,
    actor: &Actor,
    workspace: &str,
    from: &RestoreFrom,
    clock: Instant,
) -> Result<RestoreReport> {
    if opts.tables.is_empty() {
        return Err(Error::usage("--into-live and --as go with --table NAME (the tables to restore)"));
    }
    let picks = table_picks(&opts.tables, &opts.rename_to, opts.into_live)?;
    let (target, into) = match opts.into_live {
        true if !opts.target.is_empty() || opts.target_conn.is_some() => {
            return Err(Error::usage("--into-live restores into the workspace's database: leave out --target"));
        }
        true => (core.workspace(workspace)?.conn()?.clone(), TablesInto::Existing),
        false => (target_of(core, opts, actor).await?, TablesInto::NewDatabase),
    };
    let _lock = match opts.into_live {
        true => {
            Some(super::job::take_workspace(core, workspace, operation_of(opts).lock_label(), actor, opts.wait).await?)
        }
        false => None,
    };
    let progress = core.progress();
    let bin_dir = core.pg_bin_dir();
    let load = async |from: TablesFrom<'_>| {
        let work = tables::restore_tables(from, &target, &picks, into, bin_dir.as_deref(), progress);
        let outcome = tokio::select! {
            r = work => r,
            () = core.stop().cancelled() => Err(Error::new(ErrorKind::Interrupted, "the restore was interrupted")),
        };
        progress.finish();
        outcome
    };
    let (snapshot, time, outcome, plain_bytes, point_in_time) = match from {
        RestoreFrom::Snapshot(id) => {
            let manifest = core.repo.read_manifest(workspace, id, &core.identities()?).await?;
            progress.set_prefix(format!("restore {} (tables)", manifest.id));
            let source = SnapshotSource::new(&core.repo, &core.identities()?, &manifest);
            let outcome = load(TablesFrom::Snapshot(&source)).await;
            let plain: u64 = manifest
                .tables
                .iter()
                .filter(|t| picks.iter().any(|p| (&p.from.0, &p.from.1) == (&t.schema, &t.name)))
                .flat_map(|t| &t.parts)
                .map(|p| p.plain_size)
                .sum();
            (manifest.id.clone(), None, outcome, plain, None)
        }
        RestoreFrom::Time(time) => {
            let moment = crate::wal::window::Target::Time(*time);
            let past =
                super::pitr::past::recover(core, workspace, &moment, opts.tidemark_command.clone(), actor).await?;
            progress.set_prefix(format!("restore {workspace} as of {time} (tables)"));
            let outcome = load(TablesFrom::Database(&past.spec)).await;
            let recovery = past.report.clone();
            if let Err(e) = past.remove(core).await {
                tracing::warn!(error = %e.report(), "the throwaway cluster of a point-in-time restore could not be removed");
            }
            (String::new(), Some(*time), outcome, recovery.plain_bytes, Some(recovery))
        }
    };
    let what = match time {
        Some(t) => format!("workspace {workspace} as of {t}"),
        None => format!("snapshot {snapshot}"),
    };
    let outcome = outcome.map_err(|e| e.context(format!("restoring tables of {what} into {}", target.display())))?;
    Ok(RestoreReport {
        snapshot,
        workspace: workspace.to_string(),
        target: target.display(),
        created_database: outcome.created_database,
        tables: outcome.tables.len(),
        rows: outcome.tables.iter().map(|t| t.rows).sum(),
        plain_bytes,
        stored_bytes: point_in_time.as_ref().map_or(outcome.bytes_read, |p| p.stored_bytes),
        media_files: 0,
        timings: RestoreTimings { total_ms: clock.elapsed().as_millis() as u64, ..Default::default() },
        table_restore: Some(outcome),
        time,
        point_in_time,
        skipped_privileges: Vec::new(),
    })
}

/// `--table` names paired with their `--as` names.
fn table_picks(tables: &[String], rename_to: &[String], into_live: bool) -> Result<Vec<TablePick>> {
    if into_live && rename_to.len() != tables.len() {
        return Err(Error::usage(
            "--into-live needs a new name for each table (--as schema.name, in the order of --table): \
             a restore never goes over the live table",
        ));
    }
    if !rename_to.is_empty() && rename_to.len() != tables.len() {
        return Err(Error::usage(format!(
            "{} --table and {} --as: give one --as per --table, in the same order, or none",
            tables.len(),
            rename_to.len()
        )));
    }
    tables
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let from = crate::pg::parse_table_name(t)?;
            let to = match rename_to.get(i) {
                Some(n) => crate::pg::parse_table_name(n)?,
                None => from.clone(),
            };
            Ok(TablePick { from, to })
        })
        .collect()
}

/// What a restore job records as its end.
pub fn job_end(r: &RestoreReport) -> crate::catalog::JobEnd {
    let snapshot_id = (!r.snapshot.is_empty()).then(|| r.snapshot.clone());
    crate::catalog::JobEnd { snapshot_id, bytes: Some(r.stored_bytes), ..Default::default() }
}

/// [`restore`] as a recorded job (see [`super::job::recorded`]).
pub async fn restore_recorded(core: &Core, opts: &RestoreOptions, actor: &Actor) -> Result<RestoreReport> {
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
            "snapshot {} has {} media files: pass --media-target DIR (or an s3:// URL) to restore them, \
             or --no-media to restore only the database",
            manifest.id,
            files.len()
        )));
    };
    Ok(Some((MediaTarget::open(target, &core.config.config.repository)?, files.clone())))
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
    actor: &crate::actor::Actor,
) -> Result<Vec<crate::stacks::log::PutOutcome>> {
    let (workspace, snapshot) = super::snapshot::resolve(core, snapshot, workspace).await?;
    let manifest = core.repo.read_manifest(&workspace, &snapshot, &core.identities()?).await?;
    let from = SnapshotSource::new(&core.repo, &core.identities()?, &manifest);
    let no_stacks = |e: Error| match e.kind() {
        ErrorKind::NotFound => Error::not_found(format!("snapshot {} has no function stacks", manifest.id)),
        _ => e,
    };
    let stacks = load::table_rows(&from, "tidemark", "stacks").await.map_err(no_stacks)?;
    let changes = load::table_rows(&from, "tidemark", "stack_changes").await.map_err(no_stacks)?;
    use crate::stacks::snapshot::{Rows, live_documents};
    let live = live_documents(
        Rows { rows: &stacks.rows, columns: &stacks.columns },
        Rows { rows: &changes.rows, columns: &changes.columns },
        &snapshot,
    )?;
    let mut conn = core.workspace(&workspace)?.conn()?.connect().await?;
    crate::stacks::install(&mut conn).await?;
    let message = format!("restore from snapshot {snapshot}");
    let reverted_to = format!("snapshot:{snapshot}");
    let by = crate::stacks::log::ChangedBy { author: &actor.name, actor };
    let mut out = Vec::new();
    for (stack, doc) in &live {
        out.push(crate::stacks::log::put(&mut conn, stack, doc, by, Some(&message), Some(&reverted_to)).await?);
    }
    ConnSpec::close(conn).await;
    let result = Ok(out);
    let details = serde_json::json!({"snapshot": snapshot, "stacks": live.len()});
    super::audit::record(core, actor, crate::operation::Operation::RestoreStacks, &workspace, &result, details).await;
    result
}
