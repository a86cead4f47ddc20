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
//!
//! Longer than ~300 lines: the in-place restore's run, and the steps branch set-live and undo take from it.

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
use crate::restore::RestoreSource;
use crate::restore::database;
use crate::restore::media_swap::MediaSwap;
pub use crate::restore::media_swap::MediaSwapped;

pub(super) use database::{BEFORE, RESTORING, UNDONE};

mod incoming;
mod options;
mod undo;

use incoming::{from_snapshot, from_time};
pub use options::*;
use undo::media_beside;
pub use undo::undo;

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

/// What an in-place restore may be refused for before any work, for every front end (the
/// API asks before it starts the job, and the restore asks again): the confirmation, the
/// limits, the source's spelling.
///
/// Errors: `Usage`.
pub fn check_request(opts: &InPlaceOptions) -> Result<()> {
    confirmed(&opts.workspace, &opts.confirm)?;
    super::check_jobs(opts.jobs)?;
    match opts.bundle {
        Some(_) => Ok(()),
        None => RestoreSource::from_options(Some(&opts.snapshot), opts.time.as_deref()).map(drop),
    }
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
    check_request(opts)?;
    let done = run(core, opts, actor).await;
    let details = serde_json::json!({
        "snapshot": opts.snapshot, "time": opts.time, "bundle": opts.bundle, "drop_previous": opts.drop_previous,
    });
    super::audit::record(core, actor, Operation::RestoreInPlace, &opts.workspace, &done, details).await;
    done
}

// Longer than ~100 lines: the in-place restore's guarded sequence (safety snapshot, incoming copy, its checks, the switch, media) reads in order: each step's failure undoes the ones before it.
async fn run(core: &Core, opts: &InPlaceOptions, actor: &Actor) -> Result<InPlaceReport> {
    let (workspace, source) = match &opts.bundle {
        Some(_) if opts.time.is_some() || !opts.snapshot.is_empty() => {
            return Err(Error::usage("a bundle replaces the database by itself: no snapshot or time with it"));
        }
        Some(bundle) => {
            core.workspace(&opts.workspace)?;
            (opts.workspace.clone(), Source::Bundle(bundle.clone()))
        }
        None => match RestoreSource::from_options(Some(&opts.snapshot), opts.time.as_deref())? {
            RestoreSource::Time(time) => (opts.workspace.clone(), Source::Time(time)),
            asked => {
                let snapshot = asked.snapshot().unwrap_or("latest");
                let (workspace, id) = super::snapshot::resolve(core, snapshot, Some(&opts.workspace)).await?;
                (workspace, Source::Snapshot(id))
            }
        },
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
    let _lock = super::switch::take_for_switch(core, &workspace, Operation::RestoreInPlace, actor, opts.wait).await?;
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
                target: crate::restore::RestoreTarget::Resolved { conn: target.clone(), reserved: true },
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
    check_request(opts)?;
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
