//! `restore --in-place` and `restore undo`: put a workspace's database back as a snapshot
//! had it, with a way back. First a pre-restore snapshot of the live database, then a
//! restore into a new database beside it, the drill's content checks on that copy, and only
//! then the switch (`super::switch`): the live database is moved aside as
//! `<name>_before_<id>` and the restored one takes its name in one transaction; the media,
//! restored beside the live ones, follow (`super::media_swap`: renames of a folder, copies
//! between prefixes of an object store). The switch is recorded first, so a crash at any
//! point is finished or undone by the next switch or `serve`. Anything that fails before
//! the switch leaves the live database and media untouched; `undo` swaps back exactly the
//! database the switch moved aside (recorded with its oid).

use serde::{Deserialize, Serialize};

use super::Core;
use super::job::WaitFor;
use super::restore::{RestoreOptions, RestoreReport};
use super::snapshot::SnapshotOptions;
use crate::actor::Actor;
use crate::catalog::switches::SwitchKind;
use crate::error::{Error, ErrorKind, Result};
use crate::operation::Operation;
use crate::repo::manifest::SnapshotKind;
use crate::restore::database;
use crate::restore::media_swap::MediaSwap;
pub use crate::restore::media_swap::MediaSwapped;

/// What `restore --in-place` takes.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct InPlaceOptions {
    /// A snapshot id, or `latest`.
    pub snapshot: String,
    pub workspace: String,
    /// Must repeat the workspace's name: this replaces its live database.
    pub confirm: String,
    /// Parallel connections loading tables (default: one per core).
    pub jobs: Option<usize>,
    /// Drop the replaced database after the switch (no undo then).
    pub drop_previous: bool,
    #[serde(default)]
    pub wait: WaitFor,
    /// A moment instead of a snapshot (`2026-11-22 10:15:00+00`): the workspace is
    /// recovered to it in a throwaway cluster and its database copied from there. Media
    /// are not in WAL: they stay as they are.
    #[serde(default)]
    pub time: Option<String>,
    /// How the recovered server runs `tidemark wal fetch` (default: this binary).
    #[serde(skip)]
    pub tidemark_command: Option<String>,
    /// A bundle from `export` instead of a snapshot (`import --replace`).
    #[serde(default)]
    pub bundle: Option<std::path::PathBuf>,
}

/// What an in-place restore did.
#[derive(Debug, Clone, Serialize)]
pub struct InPlaceReport {
    pub workspace: String,
    /// The snapshot restored (`None` when restored to a moment).
    pub snapshot: Option<String>,
    /// The moment restored to (`None` when restored from a snapshot).
    pub time: Option<chrono::DateTime<chrono::Utc>>,
    /// The snapshot of the live database taken first (kind `pre-restore`).
    pub safety_snapshot: String,
    /// The live database's name (now the restored one).
    pub database: String,
    /// Where the replaced database is (`None` with `--drop-previous`).
    pub previous_database: Option<String>,
    /// The media, when they were swapped too: the live folder (or prefix), and where the
    /// media it held went (`None` with `--drop-previous`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub media: Option<MediaSwapped>,
    /// Tables compared with the snapshot (or the recovered database) on the restored copy
    /// before the switch (sequences too).
    pub verified_tables: usize,
    /// How long the live database was unavailable.
    pub switch_ms: u64,
    /// The restore from the snapshot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restore: Option<RestoreReport>,
    /// The recovery to the moment (in a throwaway cluster, removed since).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub point_in_time: Option<super::pitr::PitrRestoreReport>,
    /// The import of the bundle.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub import: Option<super::import::ImportReport>,
}

/// Where an in-place restore takes the workspace back to.
enum Source {
    Snapshot(String),
    Time(chrono::DateTime<chrono::Utc>),
    Bundle(std::path::PathBuf),
}

/// What `restore undo` takes.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct UndoOptions {
    pub workspace: String,
    /// Must repeat the workspace's name.
    pub confirm: String,
    #[serde(default)]
    pub wait: WaitFor,
}

/// What an undo did.
#[derive(Debug, Clone, Serialize)]
pub struct UndoReport {
    pub workspace: String,
    pub database: String,
    /// The database that is live again (its name before the undo).
    pub restored_from: String,
    /// Where the database the undo replaced went.
    pub replaced_moved_to: String,
    pub switch_ms: u64,
}

pub(super) use database::{BEFORE, RESTORING, UNDONE};

/// The names beside `live` for snapshot `id`: Postgres names are at most 63 bytes.
pub(super) fn beside(live: &str, tag: &str, id: &str) -> Result<String> {
    let name = format!("{live}{tag}{}", id.to_ascii_lowercase().replace('-', "_"));
    if name.len() > database::MAX_NAME_BYTES {
        return Err(Error::usage(format!(
            "database {live:?} has too long a name for an in-place restore: {name:?} would be longer than \
             Postgres's 63 bytes; restore into a new database with --target instead"
        )));
    }
    Ok(name)
}

/// A snapshot of the live database (kind `pre-restore`, kept like a manual one, no media)
/// before it is replaced. Returns its id.
///
/// Errors: those of the snapshot, saying that nothing was changed.
pub(super) async fn safety_snapshot(
    core: &Core,
    workspace: &str,
    note: &str,
    (jobs, wait): (Option<usize>, WaitFor),
    actor: &Actor,
) -> Result<String> {
    let safety = SnapshotOptions {
        workspace: workspace.to_string(),
        kind: SnapshotKind::PreRestore,
        note: Some(note.to_string()),
        jobs,
        no_media: true,
        wait,
        ..Default::default()
    };
    let taken = super::snapshot::create(core, &safety, actor).await.map_err(|e| {
        e.context(format!("taking the pre-restore snapshot of workspace {workspace}; nothing was changed"))
    })?;
    Ok(taken.id)
}

/// After a switch: drops the database moved aside (`drop_previous`), or records it for
/// prune and returns its name (what `restore undo` swaps back).
///
/// Errors: `Database` when it cannot be dropped.
pub(super) async fn keep_or_drop(
    core: &Core,
    workspace: &str,
    live: &crate::pg::ConnSpec,
    (aside, oid): (String, u32),
    drop_previous: bool,
) -> Result<Option<String>> {
    if drop_previous {
        database::drop_database(&live.with_database(&aside)).await?;
        return Ok(None);
    }
    super::switch::note_replaced(core, workspace, Some((&aside, oid)), None).await;
    Ok(Some(aside))
}

/// That `confirm` repeats the workspace's name (what every front end asks before the live
/// database is replaced).
///
/// Errors: `Usage` when it does not.
pub fn confirmed(workspace: &str, confirm: &str) -> Result<()> {
    if confirm != workspace {
        return Err(Error::usage(format!(
            "this replaces the live database of workspace {workspace}: confirm with the workspace's name \
             ({workspace}) to go ahead"
        )));
    }
    Ok(())
}

/// Restores a snapshot over a workspace's live database; see the module docs.
///
/// Errors: `Usage` without the confirmation, for media at an object store's root (no
/// prefix beside it) or a too long name; `AlreadyExists` when a database or folder
/// of an earlier in-place restore of the same snapshot is in the way; those of the
/// pre-restore snapshot and the restore (the live database is then untouched); `Integrity` when the restored copy does not match the snapshot
/// (dropped again, live untouched); `Database`/`Unavailable` from the switch (which puts
/// back what it did).
pub async fn restore_in_place(core: &Core, opts: &InPlaceOptions, actor: &Actor) -> Result<InPlaceReport> {
    confirmed(&opts.workspace, &opts.confirm)?;
    super::check_jobs(opts.jobs)?;
    let done = run(core, opts, actor).await;
    let details = serde_json::json!({
        "snapshot": opts.snapshot, "time": opts.time, "bundle": opts.bundle, "drop_previous": opts.drop_previous,
    });
    super::audit::record(core, actor, Operation::RestoreInPlace, &opts.workspace, &done, details).await;
    done
}

async fn run(core: &Core, opts: &InPlaceOptions, actor: &Actor) -> Result<InPlaceReport> {
    let (workspace, source) = match (&opts.time, opts.snapshot.as_str()) {
        _ if opts.bundle.is_some() && (opts.time.is_some() || !opts.snapshot.is_empty()) => {
            return Err(Error::usage("a bundle replaces the database by itself: no snapshot or --time with it"));
        }
        (None, "") if opts.bundle.is_some() => {
            core.workspace(&opts.workspace)?;
            (opts.workspace.clone(), Source::Bundle(opts.bundle.clone().expect("checked")))
        }
        (Some(time), "") => (opts.workspace.clone(), Source::Time(crate::wal::window::parse_time(time)?)),
        (Some(_), _) => return Err(Error::usage("give a snapshot or --time, not both")),
        (None, snapshot) => {
            let (workspace, id) = super::snapshot::resolve(core, snapshot, Some(&opts.workspace)).await?;
            (workspace, Source::Snapshot(id))
        }
    };
    // Names beside the live database carry the snapshot id or the moment.
    let (id, what) = match &source {
        Source::Snapshot(id) => (id.clone(), format!("snapshot {id}")),
        Source::Time(t) => (t.format("%Y%m%dT%H%M%SZ").to_string(), format!("the moment {}", t.to_rfc3339())),
        Source::Bundle(path) => {
            (chrono::Utc::now().format("import_%Y%m%dT%H%M%SZ").to_string(), format!("bundle {}", path.display()))
        }
    };
    let live = core.workspace(&workspace)?.restorer()?;
    let db = live.database().ok_or_else(|| Error::config(format!("workspace {workspace}'s URL names no database")))?;
    // Before anything is taken: may the role make, rename and drop databases here?
    let live_db = database::check_may_replace(&live, &db, &workspace).await?;
    let (incoming, aside) = (beside(&db, RESTORING, &id)?, beside(&db, BEFORE, &id)?);
    let manifest = match &source {
        Source::Snapshot(id) => Some(core.repo.read_manifest(&workspace, id, &core.identities()?).await?),
        Source::Time(_) | Source::Bundle(_) => None,
    };
    let has_media = manifest.as_ref().and_then(|m| m.media.as_ref()).is_some_and(|m| !m.files.is_empty());
    let media = if has_media { media_beside(core, &workspace, &id)? } else { None };
    if let Some(m) = &media {
        m.ensure_clear().await?;
    }
    if !database::databases_named(&live, &aside).await?.is_empty() {
        return Err(Error::new(
            ErrorKind::AlreadyExists,
            format!("database {aside:?} exists (an earlier in-place restore of {what}); drop or rename it first"),
        ));
    }
    // 1. A snapshot of the live database as it is now.
    let safety =
        safety_snapshot(core, &workspace, &format!("before restoring {what} in place"), (opts.jobs, opts.wait), actor)
            .await?;
    let _lock =
        super::job::take_workspace(core, &workspace, Operation::RestoreInPlace.lock_label(), actor, opts.wait).await?;
    super::switch::recover(core, &workspace, actor).await?;
    let untouched = format!("the live database {db:?} was not touched (pre-restore snapshot {safety})");
    // 2. The copy, in a new database beside the live one (its owner and locale), 3. its checks.
    let target = live.with_database(&incoming);
    let created =
        database::create_beside(&live, &incoming, &live_db).await.map_err(|e| e.context(untouched.clone()))?;
    let beside_live = match (&source, &manifest) {
        (Source::Snapshot(_), Some(manifest)) => from_snapshot(core, opts, actor, manifest, &target, media.as_ref())
            .await
            .map(|(v, r)| (v, Some(r), None, None)),
        (Source::Time(t), _) => {
            from_time(core, opts, actor, &workspace, *t, &target).await.map(|(v, r)| (v, None, Some(r), None))
        }
        (Source::Bundle(path), _) => {
            let import = super::import::ImportOptions {
                file: path.clone(),
                target: target.display(),
                target_conn: Some(target.clone()),
                jobs: opts.jobs,
                ..Default::default()
            };
            // The import checks every row against the bundle's digests before it succeeds.
            super::import::import(core, &import, actor).await.map(|r| (r.tables, None, None, Some(r)))
        }
        (Source::Snapshot(_), None) => unreachable!("a snapshot's manifest is read above"),
    };
    // A stop asked for meanwhile (Ctrl-C, SIGTERM, a cancelled job) ends it here, the last
    // point before the live database changes.
    let beside_live = match beside_live {
        Ok(_) if core.stop().is_cancelled() => {
            let _ = database::drop_database(&target).await;
            Err(Error::new(
                ErrorKind::Interrupted,
                "the in-place restore was stopped before the switch; its copy was dropped",
            ))
        }
        other => other,
    };
    let (verified_tables, restored, point_in_time, import) = match beside_live {
        Ok(done) => done,
        Err(e) => {
            if let Some(m) = &media {
                m.discard_incoming().await;
            }
            if created {
                let _ = database::drop_database(&target).await;
            }
            return Err(e.context(untouched.clone()));
        }
    };
    // 4. The switch: the database (one transaction), then the media (two renames of a
    // folder, copies in an object store), recorded so that a crash finishes or undoes it.
    let plan = super::switch::Plan {
        workspace: &workspace,
        kind: SwitchKind::InPlace,
        live: &db,
        incoming: &incoming,
        aside: &aside,
        media: media.as_ref().map(|m| (m, id.clone())),
    };
    let switched = match super::switch::switch(core, &live, &plan, actor).await {
        Ok(switched) => switched,
        Err(e) if core.catalog().await?.switch_intent(&workspace).await?.is_some() => {
            // Switched, and neither finished nor put back: the recorded switch is finished by
            // the next switch of the workspace (or `serve`), from what is there now.
            return Err(e);
        }
        Err(e) => {
            // Nothing was switched: the copy and the incoming media go, so that the next try
            // finds nothing in its way.
            if let Some(m) = &media {
                m.discard_incoming().await;
            }
            let dropped = match database::drop_database(&target).await {
                Ok(()) => format!("the restored copy {incoming:?} was dropped"),
                Err(d) => format!("the restored copy {incoming:?} could not be dropped ({}): drop it", d.message()),
            };
            return Err(e.context(format!(
                "switching to the restored copy (pre-restore snapshot {safety}); the live database {db:?} is as it \
                 was, {dropped}"
            )));
        }
    };
    let window = switched.window;
    let previous = keep_or_drop(core, &workspace, &live, (aside, switched.aside_oid), opts.drop_previous).await?;
    if opts.drop_previous
        && let Some(m) = &media
    {
        m.drop_aside().await?;
    }
    tracing::info!(workspace, restored = %what, switch_ms = window.as_millis() as u64, "restored in place");
    Ok(InPlaceReport {
        workspace,
        snapshot: match &source {
            Source::Snapshot(id) => Some(id.clone()),
            Source::Time(_) | Source::Bundle(_) => None,
        },
        time: match source {
            Source::Time(t) => Some(t),
            Source::Snapshot(_) | Source::Bundle(_) => None,
        },
        safety_snapshot: safety,
        database: db,
        previous_database: previous,
        media: media.as_ref().map(|m| m.swapped_report(opts.drop_previous)),
        verified_tables,
        switch_ms: window.as_millis() as u64,
        restore: restored,
        point_in_time,
        import,
    })
}

/// The snapshot restored into `target` (media into the incoming folder), then the drill's
/// content checks. Returns the tables and sequences checked. A copy that fails or differs
/// is dropped again.
async fn from_snapshot(
    core: &Core,
    opts: &InPlaceOptions,
    actor: &Actor,
    manifest: &crate::repo::manifest::Manifest,
    target: &crate::pg::ConnSpec,
    media: Option<&MediaSwap>,
) -> Result<(usize, RestoreReport)> {
    let restore_opts = RestoreOptions {
        snapshot: manifest.id.clone(),
        workspace: Some(manifest.workspace.clone()),
        target: target.display(),
        jobs: opts.jobs,
        no_media: media.is_none(),
        media_target: media.map(MediaSwap::incoming_target),
        target_conn: Some(target.clone()),
        reserved_target: true,
        ..Default::default()
    };
    let restored = super::restore::restore(core, &restore_opts, actor).await?;
    let verified = crate::drill::verify::verify_database(target, manifest).await;
    match verified {
        Ok(v) if v.ok => Ok((v.tables.len(), restored)),
        outcome => {
            let _ = database::drop_database(target).await;
            let why = match outcome {
                Ok(v) => {
                    let bad: Vec<String> =
                        v.tables.iter().filter(|t| !t.ok).map(|t| format!("{}.{}", t.schema, t.name)).collect();
                    format!("the restored copy differs from the snapshot in {}", bad.join(", "))
                }
                Err(e) => format!("the restored copy could not be checked: {}", e.message()),
            };
            Err(Error::integrity(format!("{why}; it was dropped")))
        }
    }
}

/// The workspace recovered to `time`, its database copied into `target` and checked (see
/// [`super::restore::copy_of_moment`]).
async fn from_time(
    core: &Core,
    opts: &InPlaceOptions,
    actor: &Actor,
    workspace: &str,
    time: chrono::DateTime<chrono::Utc>,
    target: &crate::pg::ConnSpec,
) -> Result<(usize, super::pitr::PitrRestoreReport)> {
    let copied = super::restore::copy_of_moment(core, workspace, time, opts.tidemark_command.clone(), target, actor);
    copied.await.map(|c| (c.compared, c.recovery))
}

/// What an in-place restore job records as its end.
pub fn job_end(r: &InPlaceReport) -> crate::catalog::JobEnd {
    let bytes = match (&r.restore, &r.point_in_time) {
        (Some(restore), _) => restore.stored_bytes,
        (None, Some(pitr)) => pitr.stored_bytes,
        (None, None) => r.import.as_ref().map_or(0, |i| fs_err::metadata(&i.file).map_or(0, |m| m.len())),
    };
    crate::catalog::JobEnd { snapshot_id: r.snapshot.clone(), bytes: Some(bytes), ..Default::default() }
}

/// [`restore_in_place`] as a recorded job, whichever front end asks (see
/// [`super::job::recorded`]).
pub async fn restore_in_place_recorded(core: &Core, opts: &InPlaceOptions, actor: &Actor) -> Result<InPlaceReport> {
    let spec =
        super::job::JobSpec { workspace: opts.workspace.clone(), operation: Operation::RestoreInPlace, kind: None };
    let work = |core: Core| async move { restore_in_place(&core, opts, actor).await };
    super::job::recorded(core, actor, spec, work, job_end).await
}

/// [`undo`] as a recorded job.
pub async fn undo_recorded(core: &Core, opts: &UndoOptions, actor: &Actor) -> Result<UndoReport> {
    let spec = super::job::JobSpec { workspace: opts.workspace.clone(), operation: Operation::RestoreUndo, kind: None };
    let work = |core: Core| async move { undo(&core, opts, actor).await };
    super::job::recorded(core, actor, spec, work, |_| crate::catalog::JobEnd::default()).await
}

/// Swaps back the newest in-place restore of a workspace: the database it moved aside
/// becomes live again, and the restored one is moved aside as `<name>_undone_<id>`.
///
/// Errors: `Usage` without the confirmation; `NotFound` when no replaced database is left
/// (none was restored in place, or it was dropped); those of the switch.
pub async fn undo(core: &Core, opts: &UndoOptions, actor: &Actor) -> Result<UndoReport> {
    confirmed(&opts.workspace, &opts.confirm)?;
    let done = async {
        let live = core.workspace(&opts.workspace)?.restorer()?;
        let db = live.database().ok_or_else(|| Error::config("the workspace's URL names no database"))?;
        database::check_may_replace(&live, &db, &opts.workspace).await?;
        let _lock =
            super::job::take_workspace(core, &opts.workspace, Operation::RestoreUndo.lock_label(), actor, opts.wait)
                .await?;
        super::switch::recover(core, &opts.workspace, actor).await?;
        let prefix = format!("{db}{BEFORE}");
        // Exactly the database the newest switch moved aside, as the catalog recorded it
        // (name and oid): never a database that only has a name like it.
        let nothing = || {
            Error::not_found(format!(
                "no database of workspace {} is recorded as moved aside: nothing was restored in place (or made \
                 live from a branch), or the replaced database was dropped",
                opts.workspace
            ))
        };
        let (newest, recorded_oid) =
            core.catalog().await?.newest_replaced(&opts.workspace, &prefix).await?.ok_or_else(nothing)?;
        let found_oid = database::database_oid(&live, &newest).await?;
        match (found_oid, recorded_oid) {
            (None, _) => return Err(nothing().context(format!("database {newest:?} is gone"))),
            (Some(found), Some(recorded)) if found != recorded => {
                return Err(Error::new(
                    ErrorKind::Refused,
                    format!(
                        "database {newest:?} is not the one the in-place restore moved aside (oid {found}, recorded \
                         {recorded}): it was dropped and made again; nothing was switched"
                    ),
                ));
            }
            (Some(_), None) => {
                return Err(Error::new(
                    ErrorKind::Refused,
                    format!(
                        "database {newest:?} was moved aside by an older version, which did not record which \
                         database it was: swap it back by hand (ALTER DATABASE ... RENAME) after checking it"
                    ),
                ));
            }
            (Some(_), Some(_)) => {}
        }
        let id = newest.strip_prefix(&prefix).unwrap_or_default().to_string();
        let undone = format!("{db}{UNDONE}{id}");
        // The media go back with it, when the in-place restore swapped them.
        let mut media = media_beside(core, &opts.workspace, &id).ok().flatten();
        if let Some(m) = &media
            && !m.swapped().await.map_err(|e| e.context("finding the media the in-place restore moved aside"))?
        {
            media = None;
        }
        let plan = super::switch::Plan {
            workspace: &opts.workspace,
            kind: SwitchKind::Undo,
            live: &db,
            incoming: &newest,
            aside: &undone,
            media: media.as_ref().map(|m| (m, id.clone())),
        };
        let switched = super::switch::switch(core, &live, &plan, actor).await?;
        super::switch::note_replaced(core, &opts.workspace, Some((&undone, switched.aside_oid)), Some(&newest)).await;
        Ok(UndoReport {
            workspace: opts.workspace.clone(),
            database: db,
            restored_from: newest,
            replaced_moved_to: undone,
            switch_ms: switched.window.as_millis() as u64,
        })
    }
    .await;
    super::audit::record(core, actor, Operation::RestoreUndo, &opts.workspace, &done, serde_json::json!({})).await;
    done
}

/// The places beside the workspace's media store for an in-place restore tagged `id`
/// (`None` without a media store).
///
/// Errors: those of [`MediaSwap::beside`].
fn media_beside(core: &Core, workspace: &str, id: &str) -> Result<Option<MediaSwap>> {
    let ws = core.workspace(workspace)?;
    MediaSwap::beside(ws.config.media.as_deref(), &core.config.config.repository, id)
}
