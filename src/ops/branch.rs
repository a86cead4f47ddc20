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
use crate::restore::database;

/// What `branch create` takes.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct BranchCreateOptions {
    pub workspace: String,
    /// Lowercase letters, digits, `_` and `-`.
    pub name: String,
    /// A snapshot id or `latest` (default, unless `time`).
    pub from: Option<String>,
    /// A moment instead of a snapshot (`2026-11-22 10:15:00+00`).
    pub time: Option<String>,
    /// Parallel connections loading tables (default: one per core).
    pub jobs: Option<usize>,
    /// How a recovered server runs `tidemark wal fetch` (default: this binary).
    #[serde(skip)]
    pub tidemark_command: Option<String>,
}

/// A branch, as `branch list` shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct BranchInfo {
    /// The branch's own workspace name (`<workspace>--<name>`).
    pub workspace: String,
    pub branch_of: String,
    pub name: String,
    pub database: String,
    /// `snapshot <id>` or `time <moment>`.
    pub source: String,
    pub created_at: Option<DateTime<Utc>>,
    pub age_seconds: Option<i64>,
    /// `pg_database_size`, when the database could be reached.
    pub size_bytes: Option<i64>,
    /// `creating` while its database is restored, `deleting` while it is dropped.
    pub state: BranchState,
    /// An entry in tidemark.toml (made by an earlier version), not a catalog row: tidemark
    /// does not change it; the operator removes it.
    pub in_config: bool,
}

/// What `branch create` did.
#[derive(Debug, Clone, Serialize)]
pub struct BranchCreateReport {
    pub branch: BranchInfo,
    pub restore: RestoreReport,
}

/// What `branch set-live` takes.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct SetLiveOptions {
    pub workspace: String,
    pub name: String,
    /// Must repeat the workspace's name: its live database is replaced.
    pub confirm: String,
    /// Drop the replaced database after the switch (no undo then).
    pub drop_previous: bool,
    pub wait: WaitFor,
}

/// What `branch set-live` did.
#[derive(Debug, Clone, Serialize)]
pub struct SetLiveReport {
    pub workspace: String,
    pub branch: String,
    /// The snapshot of the live database taken first (kind `pre-restore`).
    pub safety_snapshot: String,
    /// The live database's name (now the branch's data).
    pub database: String,
    /// Where the replaced database is (`None` with `drop-previous`); `restore undo` swaps it back.
    pub previous_database: Option<String>,
    pub switch_ms: u64,
}

/// What `branch delete` takes.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct BranchDeleteOptions {
    pub workspace: String,
    pub name: String,
    /// Must repeat the branch's name: its database is dropped.
    pub confirm: String,
}

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
    super::check_jobs(opts.jobs)?;
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
    let (snapshot, source) = match (&opts.from, &opts.time) {
        (Some(_), Some(_)) => return Err(Error::usage("give a snapshot or a time to branch from, not both")),
        (_, Some(time)) => (String::new(), format!("time {}", crate::wal::window::parse_time(time)?.to_rfc3339())),
        (from, None) => {
            let asked = from.clone().unwrap_or_else(|| "latest".into());
            let (_, id) = super::snapshot::resolve(core, &asked, Some(&opts.workspace)).await?;
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
    branch_workspace_fits(&opts.workspace, &ws.config, &row)?;
    let catalog = core.catalog().await?;
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

/// That the branch's connection can be made from the workspace's (before anything is made).
fn branch_workspace_fits(workspace: &str, ws: &WorkspaceConfig, row: &BranchRow) -> Result<()> {
    as_workspace(workspace, ws, row).map(|_| ())
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
        target: target.display(),
        target_conn: Some(target.clone()),
        jobs: opts.jobs,
        no_media: true,
        reserved_target: true,
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

async fn database_size(server: &ConnSpec, db: &str) -> Option<i64> {
    let mut conn = server.connect().await.ok()?;
    let size = sqlx::query_scalar("SELECT pg_database_size($1::text::name)").bind(db).fetch_one(&mut conn).await.ok();
    ConnSpec::close(conn).await;
    size
}

/// The branches of `workspace` (all, when `None`): the catalog's, and those an earlier
/// version wrote into tidemark.toml.
///
/// Errors: `NotFound` for an unknown workspace; `Unavailable` for the catalog.
pub async fn list(core: &Core, workspace: Option<&str>, _actor: &Actor) -> Result<Vec<BranchInfo>> {
    if let Some(w) = workspace {
        core.workspace(w)?;
    }
    let mut out = Vec::new();
    for row in core.catalog().await?.branches(workspace).await? {
        let size = match core.workspace(&row.workspace).and_then(|w| w.conn().cloned()) {
            Ok(server) => database_size(&server, &row.database).await,
            Err(_) => None,
        };
        out.push(info_of(&row, row.state, size));
    }
    for (entry, ws) in &core.config.config.workspaces {
        let Some(of) = &ws.branch_of else { continue };
        if workspace.is_some_and(|w| w != of) {
            continue;
        }
        let spec = ConnSpec::parse(&ws.database_url, ws.password.as_ref()).ok();
        let database = spec.as_ref().and_then(ConnSpec::database).unwrap_or_default();
        let size = match &spec {
            Some(s) => database_size(s, &database).await,
            None => None,
        };
        let created_at = ws
            .branch_created
            .as_deref()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc));
        out.push(BranchInfo {
            workspace: entry.clone(),
            branch_of: of.clone(),
            name: entry.strip_prefix(&format!("{of}--")).unwrap_or(entry).to_string(),
            database,
            source: ws.branch_source.clone().unwrap_or_default(),
            created_at,
            age_seconds: created_at.map(|c| (Utc::now() - c).num_seconds()),
            size_bytes: size,
            state: BranchState::Ready,
            in_config: true,
        });
    }
    Ok(out)
}

/// Takes branch `name` of `workspace` for work that ends it (set-live, delete): its row
/// moves from `ready` to `deleting`, so no second caller takes it; with its connection.
///
/// Errors: `NotFound` for an unknown branch; `Busy` for one being made or ended;
/// `Refused` for one declared in tidemark.toml (the operator's file: tidemark does not
/// change it).
async fn take(core: &Core, workspace: &str, name: &str) -> Result<(BranchRow, ConnSpec)> {
    let entry = entry_name(workspace, name)?;
    if core.config.config.workspaces.get(&entry).is_some_and(|w| w.branch_of.as_deref() == Some(workspace)) {
        return Err(Error::new(
            ErrorKind::Refused,
            format!(
                "branch {name} is declared in the config ([workspaces.{entry}], written by an earlier version); \
                 tidemark does not change that file: drop its database and remove the entry by hand"
            ),
        ));
    }
    let catalog = core.catalog().await?;
    let missing = || Error::not_found(format!("workspace {workspace} has no branch {name} (`branch list` shows them)"));
    let row = catalog.branch(workspace, name).await?.ok_or_else(missing)?;
    if !catalog.move_branch(workspace, name, BranchState::Ready, BranchState::Deleting).await? {
        return Err(Error::new(ErrorKind::Busy, format!("branch {name} is being made or ended by another caller")));
    }
    let ws = core.workspace(workspace)?;
    let spec = ConnSpec::parse(&as_workspace(workspace, &ws.config, &row)?.database_url, ws.config.password.as_ref())?;
    Ok((row, spec))
}

/// Gives a taken branch back (what ended it failed), or forgets it (it ended).
async fn give_back(core: &Core, row: &BranchRow, ended: bool) -> Result<()> {
    let catalog = core.catalog().await?;
    if !ended {
        catalog.move_branch(&row.workspace, &row.name, BranchState::Deleting, BranchState::Ready).await?;
        return Ok(());
    }
    catalog.forget_branch(&row.workspace, &row.name).await?;
    core.forget_branch(&row.workspace, &row.name);
    if let Err(e) = core.repo.delete(&crate::repo::layout::branch(&row.workspace, &row.name)).await {
        tracing::warn!(error = %e.report(), branch = %row.name, "the branch's record stays in the repository");
    }
    Ok(())
}

/// Makes branch `name` the workspace's live database: a pre-restore snapshot of the live
/// one, then the guarded switch (the live database moves aside as
/// `<database>_before_branch_<name>`, which `restore undo` swaps back); the branch is no
/// longer one, since its database is the workspace's now.
///
/// Errors: `Usage` without the confirmation; `NotFound` for an unknown branch; `Usage` for
/// a branch on another server; those of the snapshot and the switch (which puts back what
/// it did; the branch stays).
pub async fn set_live(core: &Core, opts: &SetLiveOptions, actor: &Actor) -> Result<SetLiveReport> {
    super::inplace::confirmed(&opts.workspace, &opts.confirm)?;
    let done = async {
        let (row, branch) = take(core, &opts.workspace, &opts.name).await?;
        let switched = switch_to(core, opts, &branch, actor).await;
        give_back(core, &row, switched.is_ok()).await?;
        switched
    }
    .await;
    let details = serde_json::json!({ "branch": opts.name, "drop_previous": opts.drop_previous });
    super::audit::record(core, actor, Operation::BranchSetLive, &opts.workspace, &done, details).await;
    done
}

async fn switch_to(core: &Core, opts: &SetLiveOptions, branch: &ConnSpec, actor: &Actor) -> Result<SetLiveReport> {
    let workspace = core.workspace(&opts.workspace)?;
    let live = workspace.restorer()?;
    let db = live.database().ok_or_else(|| Error::config("the workspace's URL names no database"))?;
    let incoming = branch.database().unwrap_or_default();
    let aside = super::inplace::beside(&db, super::inplace::BEFORE, &format!("branch_{}", opts.name))?;
    database::check_may_replace(&live, &db, &opts.workspace).await?;
    let note = format!("before making branch {} live", opts.name);
    let safety = super::inplace::safety_snapshot(core, &opts.workspace, &note, (None, opts.wait), actor).await?;
    let _lock =
        super::job::take_workspace(core, &opts.workspace, Operation::BranchSetLive.lock_label(), actor, opts.wait)
            .await?;
    super::switch::recover(core, &opts.workspace, actor).await?;
    let plan = super::switch::Plan {
        workspace: &opts.workspace,
        kind: crate::catalog::switches::SwitchKind::SetLive,
        live: &db,
        incoming: &incoming,
        aside: &aside,
        media: None,
    };
    let switched = super::switch::switch(core, &live, &plan, actor)
        .await
        .map_err(|e| e.context(format!("switching to branch {} (pre-restore snapshot {})", opts.name, safety)))?;
    let previous =
        super::inplace::keep_or_drop(core, &opts.workspace, &live, (aside, switched.aside_oid), opts.drop_previous)
            .await?;
    Ok(SetLiveReport {
        workspace: opts.workspace.clone(),
        branch: opts.name.clone(),
        safety_snapshot: safety,
        database: db,
        previous_database: previous,
        switch_ms: switched.window.as_millis() as u64,
    })
}

/// Drops a branch's database and forgets the branch.
///
/// Errors: `Usage` when `confirm` does not repeat the branch's name; `NotFound` for an
/// unknown branch; `Busy` for one another caller is making or ending; `Database` when the
/// database cannot be dropped (the branch then stays).
pub async fn delete(core: &Core, opts: &BranchDeleteOptions, actor: &Actor) -> Result<BranchInfo> {
    let done = async {
        if opts.confirm != opts.name {
            return Err(Error::usage(format!(
                "this drops the database of branch {}: confirm with the branch's name ({}) to go ahead",
                opts.name, opts.name
            )));
        }
        let (row, branch) = take(core, &opts.workspace, &opts.name).await?;
        // Dropped as the workspace's restore role, where one is set.
        let dropper = match core.workspace(&opts.workspace)?.restorer() {
            Ok(restorer) if restorer.same_server(&branch) => restorer.with_database(&row.database),
            _ => branch.clone(),
        };
        let size = database_size(&branch, &row.database).await;
        let dropped = database::drop_database(&dropper).await;
        give_back(core, &row, dropped.is_ok()).await?;
        dropped.map(|()| info_of(&row, BranchState::Deleting, size))
    }
    .await;
    let details = serde_json::json!({ "branch": opts.name });
    super::audit::record(core, actor, Operation::BranchDelete, &opts.workspace, &done, details).await;
    done
}
