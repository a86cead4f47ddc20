//! `branch create|list|set-live|delete`: a copy of a workspace's database, from a snapshot
//! or a moment, next to the live one on the same server. A branch is a row in the catalog
//! (claimed before its database is made, so of two creates of one name one wins; moved to
//! `deleting` before its database is dropped, so of two deletes one drops) and a record in
//! the repository; the process never writes tidemark.toml. It answers to the workspace
//! name `<workspace>--<name>` where one workspace is asked for (stacks), with no schedules:
//! nothing backs it up or drills it. `set-live` makes the branch the workspace's database
//! with the in-place restore's guarded switch (a pre-restore snapshot first, `restore undo`
//! swaps back); `delete` drops it. Branches that earlier versions wrote into tidemark.toml
//! (`branch-of = ...`) are listed and usable; the operator removes their entries.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::Core;
use super::job::WaitFor;
use super::restore::{RestoreOptions, RestoreReport};
use crate::actor::Actor;
use crate::catalog::branches::{BranchRow, BranchState};
use crate::config::{WorkspaceConfig, validate_workspace_name};
use crate::error::{Error, ErrorKind, Result};
use crate::operation::Operation;
use crate::pg::ConnSpec;
use crate::restore::{RestoreSource, database};

mod end;
mod options;

pub use end::{delete, set_live};
pub use options::*;
mod list;
use list::database_size;
pub use list::list;

/// The config entry name of branch `name` of `workspace`.
fn entry_name(workspace: &str, name: &str) -> Result<String> {
    let ok =
        !name.is_empty() && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if !ok {
        return Err(Error::usage(format!(
            "branch name {name:?} is not allowed: use lowercase letters, digits, '_' or '-'"
        )));
    }
    let entry = format!("{workspace}--{name}");
    validate_workspace_name(&entry)
        .map_err(|_| Error::usage(format!("{entry:?} (the branch's workspace name) is longer than 48 characters")))?;
    Ok(entry)
}

/// That `name` can name a branch of `workspace` (what front ends check before they start
/// a job).
///
/// Errors: `Usage` saying why not.
pub fn check_name(workspace: &str, name: &str) -> Result<()> {
    entry_name(workspace, name).map(|_| ())
}

/// The branch's database: `<database>_branch_<name>`, at most 63 bytes.
fn database_name(live: &str, name: &str) -> Result<String> {
    let db = format!("{live}{}{}", database::BRANCH, name.replace('-', "_"));
    if db.len() > database::MAX_NAME_BYTES {
        return Err(Error::usage(format!(
            "the branch database {db:?} would be longer than Postgres's 63 bytes: choose a shorter name"
        )));
    }
    Ok(db)
}

/// The branch's connection URL: the workspace's, naming the branch's database (the path's
/// alone: a `dbname` parameter would name the live one).
fn branch_url(workspace: &str, ws: &WorkspaceConfig, db: &str) -> Result<String> {
    let mut url = url::Url::parse(&ws.database_url)
        .map_err(|e| Error::config(format!("workspace {workspace}'s database-url: {e}")))?;
    url.path_segments_mut().map_err(|()| Error::config("the database-url cannot name a database"))?.clear().push(db);
    crate::pg::drop_query_parameters(&mut url, |k| k == "dbname");
    Ok(url.to_string())
}

/// Branch `name` of `workspace` as a workspace of its own: the workspace's connection on
/// the branch's database, no schedules.
pub(crate) fn as_workspace(workspace: &str, ws: &WorkspaceConfig, row: &BranchRow) -> Result<WorkspaceConfig> {
    Ok(WorkspaceConfig {
        password: ws.password.clone(),
        restore_database_url: ws.restore_database_url.clone(),
        restore_password: ws.restore_password.clone(),
        schedules: Some(Vec::new()),
        branch_of: Some(workspace.to_string()),
        branch_source: Some(row.source.clone()),
        branch_created: Some(row.created_at.to_rfc3339()),
        ..WorkspaceConfig::at(branch_url(workspace, ws, &row.database)?)
    })
}

/// Restores a snapshot (or a moment) of `workspace` into a new database beside it and
/// records it as a branch.
///
/// Errors: `Usage` for a bad name or both a snapshot and a time; `AlreadyExists` for a
/// branch or database of that name; those of the restore (the new database is then dropped
/// again, and the name is free again).
pub async fn create(core: &Core, opts: &BranchCreateOptions, actor: &Actor) -> Result<BranchCreateReport> {
    let done = create_branch(core, opts, actor).await;
    let details = serde_json::json!({ "branch": opts.name, "from": opts.from, "time": opts.time });
    super::audit::record(core, actor, Operation::BranchCreate, &opts.workspace, &done, details).await;
    done
}

async fn create_branch(core: &Core, opts: &BranchCreateOptions, actor: &Actor) -> Result<BranchCreateReport> {
    opts.check()?;
    let ws = core.workspace(&opts.workspace)?;
    if ws.config.branch_of.is_some() {
        return Err(Error::usage(format!("{} is a branch itself: branch its workspace instead", opts.workspace)));
    }
    let entry = entry_name(&opts.workspace, &opts.name)?;
    if core.config.config.workspaces.contains_key(&entry) {
        return Err(Error::new(
            ErrorKind::AlreadyExists,
            format!("{entry} is a workspace in the config: choose another branch name"),
        ));
    }
    let live = ws.restorer()?;
    let live_db = live
        .database()
        .ok_or_else(|| Error::config(format!("workspace {}'s URL names no database", opts.workspace)))?;
    let db = database_name(&live_db, &opts.name)?;
    let live_database = database::check_may_replace(&live, &live_db, &opts.workspace).await?;
    let (snapshot, source) = match RestoreSource::from_options(opts.from.as_deref(), opts.time.as_deref())? {
        RestoreSource::Time(time) => (String::new(), format!("time {}", time.to_rfc3339())),
        asked => {
            let snapshot = asked.snapshot().unwrap_or("latest");
            let (_, id) = super::snapshot::resolve(core, snapshot, Some(&opts.workspace)).await?;
            (id.clone(), format!("snapshot {id}"))
        }
    };
    let row = BranchRow {
        workspace: opts.workspace.clone(),
        name: opts.name.clone(),
        database: db.clone(),
        source: source.clone(),
        state: BranchState::Creating,
        created_at: Utc::now(),
        actor: Some(actor.to_string()),
    };
    // The branch's connection must be one the workspace's can make, before anything is made.
    as_workspace(&opts.workspace, &ws.config, &row)?;
    // The branch's own lock first: whoever holds it is the only one working on the name,
    // so a row left unfinished while it is free was left by a process that died.
    let _lock = lock(core, &opts.workspace, &opts.name, Operation::BranchCreate, actor).await?;
    let catalog = core.catalog().await?;
    match catalog.branch(&opts.workspace, &opts.name).await? {
        Some(left) if left.state == BranchState::Creating => clear_unfinished(core, &left).await?,
        Some(left) if left.state == BranchState::Deleting => {
            return Err(Error::new(
                ErrorKind::Refused,
                format!(
                    "a delete or set-live of branch {} stopped part-way: finish it with `branch delete` first",
                    opts.name
                ),
            ));
        }
        _ => {}
    }
    // The name is this call's from here on: a second create of it is refused, not raced.
    catalog.claim_branch(&row).await?;
    let made = restore_branch(core, opts, actor, (&live, &live_database, &db), snapshot).await;
    let restored = match made {
        Ok(restored) => restored,
        Err(e) => {
            let _ = catalog.forget_branch(&opts.workspace, &opts.name).await;
            return Err(e);
        }
    };
    catalog.move_branch(&opts.workspace, &opts.name, BranchState::Creating, BranchState::Ready).await?;
    write_record(core, &row).await;
    let _ = core.know_branch(&row);
    let info = info_of(&row, BranchState::Ready, database_size(&live, &db).await);
    Ok(BranchCreateReport { branch: info, restore: restored })
}

/// The branch's own lock (a file lock like the workspace's, named `<workspace>--<name>`),
/// held while its database is made, dropped or switched; one whose holder died is free.
///
/// Errors: `Busy` naming the holder.
pub(super) async fn lock(
    core: &Core,
    workspace: &str,
    name: &str,
    operation: Operation,
    actor: &Actor,
) -> Result<crate::catalog::lock::WorkspaceLock> {
    let entry = entry_name(workspace, name)?;
    super::job::take_workspace(core, &entry, operation.lock_label(), actor, super::job::WaitFor::NO).await
}

/// A branch a process that died left `creating` (the caller holds the branch's lock, so
/// nobody works on it): the database it was making dropped, the row forgotten.
pub(super) async fn clear_unfinished(core: &Core, row: &BranchRow) -> Result<()> {
    tracing::warn!(branch = %row.name, workspace = %row.workspace, "a branch left half made is cleared away");
    let live = core.workspace(&row.workspace)?.restorer()?;
    database::drop_database(&live.with_database(&row.database)).await?;
    core.catalog().await?.forget_branch(&row.workspace, &row.name).await
}

/// The branch's database: made beside the live one, restored; dropped again on failure.
async fn restore_branch(
    core: &Core,
    opts: &BranchCreateOptions,
    actor: &Actor,
    (live, live_database, db): (&ConnSpec, &database::LiveDatabase, &str),
    snapshot: String,
) -> Result<RestoreReport> {
    if database::databases_named(live, db).await?.contains(&db.to_string()) {
        return Err(Error::new(
            ErrorKind::AlreadyExists,
            format!("database {db:?} exists on the workspace's server; drop it or choose another name"),
        ));
    }
    let target = live.with_database(db);
    let created = database::create_beside(live, db, live_database).await?;
    let restore_opts = RestoreOptions {
        snapshot,
        workspace: Some(opts.workspace.clone()),
        time: opts.time.clone(),
        tidemark_command: opts.tidemark_command.clone(),
        target: super::restore::RestoreTarget::Resolved { conn: target.clone(), reserved: true },
        jobs: opts.jobs,
        no_media: true,
        ..Default::default()
    };
    let restored = super::restore::restore(core, &restore_opts, actor).await;
    if restored.is_err() && created {
        let _ = database::drop_database(&target).await;
    }
    restored
}

/// The branch's record in the repository (sealed, as restore points are): what a catalog
/// rebuilt from the repository finds. A record that cannot be written is logged; the
/// catalog's row is the branch.
async fn write_record(core: &Core, row: &BranchRow) {
    let key = crate::repo::layout::branch(&row.workspace, &row.name);
    let written = match core.recipients() {
        Ok(recipients) => {
            let _ = core.repo.delete(&key).await;
            core.repo.put_sealed(&key, row, recipients).await
        }
        Err(e) => Err(e),
    };
    if let Err(e) = written {
        tracing::warn!(error = %e.report(), branch = %row.name, "the branch's record was not written to the repository");
    }
}

fn info_of(row: &BranchRow, state: BranchState, size_bytes: Option<i64>) -> BranchInfo {
    BranchInfo {
        workspace: format!("{}--{}", row.workspace, row.name),
        branch_of: row.workspace.clone(),
        name: row.name.clone(),
        database: row.database.clone(),
        source: row.source.clone(),
        created_at: Some(row.created_at),
        age_seconds: Some((Utc::now() - row.created_at).num_seconds()),
        size_bytes,
        state,
        in_config: false,
    }
}

/// What a branch's creation records as its job's end.
pub fn create_job_end(r: &BranchCreateReport) -> crate::catalog::JobEnd {
    crate::catalog::JobEnd {
        snapshot_id: Some(r.restore.snapshot.clone()).filter(|s| !s.is_empty()),
        bytes: Some(r.restore.stored_bytes),
        ..Default::default()
    }
}

/// [`create`] as a recorded job, whichever front end asks.
pub async fn create_recorded(core: &Core, opts: &BranchCreateOptions, actor: &Actor) -> Result<BranchCreateReport> {
    opts.check()?;
    let spec =
        super::job::JobSpec { workspace: opts.workspace.clone(), operation: Operation::BranchCreate, kind: None };
    let work = |core: Core| async move { create(&core, opts, actor).await };
    super::job::recorded(core, actor, spec, work, create_job_end).await
}

/// [`set_live`] as a recorded job.
pub async fn set_live_recorded(core: &Core, opts: &SetLiveOptions, actor: &Actor) -> Result<SetLiveReport> {
    let spec =
        super::job::JobSpec { workspace: opts.workspace.clone(), operation: Operation::BranchSetLive, kind: None };
    let work = |core: Core| async move { set_live(&core, opts, actor).await };
    super::job::recorded(core, actor, spec, work, |_| crate::catalog::JobEnd::default()).await
}
