//! `branch create|list|set-live|delete`: a copy of a workspace's database, from a snapshot
//! or a moment, next to the live one on the same server, registered in tidemark.toml as a
//! workspace of its own (`<workspace>--<name>`, `branch-of = "<workspace>"`, no schedules,
//! so nothing backs it up or drills it unless you say so). `set-live` makes the branch the
//! workspace's database with the in-place restore's guarded switch (a pre-restore snapshot
//! first, `restore undo` swaps back); `delete` drops it. Function stacks live in the
//! database, so they come along; `stacks diff --to-workspace <workspace>--<name>` compares.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::Core;
use super::job::WaitFor;
use super::restore::{RestoreOptions, RestoreReport};
use crate::actor::Actor;
use crate::config::{Config, LoadedConfig, WorkspaceConfig, render_workspace, validate_workspace_name};
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

/// The config as it is on disk now (branches are added and removed while a core runs).
fn current_config(core: &Core) -> Result<LoadedConfig> {
    LoadedConfig::load(Some(&core.config.path))
}

/// Restores a snapshot (or a moment) of `workspace` into a new database beside it and
/// registers it as a branch.
///
/// Errors: `Usage` for a bad name or both a snapshot and a time; `AlreadyExists` for a
/// branch or database of that name; those of the restore (the new database is then dropped
/// again, and nothing is registered).
pub async fn create(core: &Core, opts: &BranchCreateOptions, actor: &Actor) -> Result<BranchCreateReport> {
    let done = create_branch(core, opts, actor).await;
    let details = serde_json::json!({ "branch": opts.name, "from": opts.from, "time": opts.time });
    super::audit::record(core, actor, Operation::BranchCreate.audit_action(), &opts.workspace, &done, details).await;
    done
}

async fn create_branch(core: &Core, opts: &BranchCreateOptions, actor: &Actor) -> Result<BranchCreateReport> {
    super::check_jobs(opts.jobs)?;
    let config = current_config(core)?;
    let ws = config.workspace(&opts.workspace)?.clone();
    if ws.branch_of.is_some() {
        return Err(Error::usage(format!("{} is a branch itself: branch its workspace instead", opts.workspace)));
    }
    let entry = entry_name(&opts.workspace, &opts.name)?;
    if config.config.workspaces.contains_key(&entry) {
        return Err(Error::new(
            ErrorKind::AlreadyExists,
            format!("branch {} of {} exists (workspace {entry})", opts.name, opts.workspace),
        ));
    }
    let live = core.workspace(&opts.workspace)?.restorer()?;
    let live_db = live
        .database()
        .ok_or_else(|| Error::config(format!("workspace {}'s URL names no database", opts.workspace)))?;
    let db = database_name(&live_db, &opts.name)?;
    let live_database = database::check_may_replace(&live, &live_db, &opts.workspace).await?;
    if database::databases_named(&live, &db).await?.contains(&db) {
        return Err(Error::new(
            ErrorKind::AlreadyExists,
            format!("database {db:?} exists on the workspace's server; drop it or choose another name"),
        ));
    }
    let mut url = url::Url::parse(&ws.database_url)
        .map_err(|e| Error::config(format!("workspace {}'s database-url: {e}", opts.workspace)))?;
    url.path_segments_mut().map_err(|()| Error::config("the database-url cannot name a database"))?.clear().push(&db);
    // The database is the path's alone: a `dbname` parameter would name the live one.
    crate::pg::drop_query_parameters(&mut url, |k| k == "dbname");
    let now = Utc::now();
    let (snapshot, source) = match (&opts.from, &opts.time) {
        (Some(_), Some(_)) => return Err(Error::usage("give a snapshot (--from) or --time, not both")),
        (_, Some(time)) => (String::new(), format!("time {}", crate::wal::window::parse_time(time)?.to_rfc3339())),
        (from, None) => {
            let asked = from.clone().unwrap_or_else(|| "latest".into());
            let (_, id) = super::snapshot::resolve(core, &asked, Some(&opts.workspace)).await?;
            (id.clone(), format!("snapshot {id}"))
        }
    };
    let branch = WorkspaceConfig {
        password: ws.password.clone(),
        schedules: Some(Vec::new()),
        branch_of: Some(opts.workspace.clone()),
        branch_source: Some(source.clone()),
        branch_created: Some(now.to_rfc3339()),
        ..WorkspaceConfig::at(url.to_string())
    };
    // The entry must fit the file before anything is restored.
    let text = render_workspace(&entry, &branch);
    let current = fs_err::read_to_string(&config.path)?;
    Config::parse(&format!("{current}{text}"))?;

    let target = live.with_database(&db);
    let created = database::create_beside(&live, &db, &live_database).await?;
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
    let restored = match super::restore::restore(core, &restore_opts, actor).await {
        Ok(restored) => restored,
        Err(e) => {
            if created {
                let _ = database::drop_database(&target).await;
            }
            return Err(e);
        }
    };
    let registered = (|| {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new().append(true).open(&config.path)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()
    })();
    if let Err(e) = registered {
        let _ = database::drop_database(&target).await;
        return Err(Error::from(e).context(format!(
            "registering branch {entry} in {}; its database was dropped again",
            config.path.display()
        )));
    }
    let info = BranchInfo {
        workspace: entry,
        branch_of: opts.workspace.clone(),
        name: opts.name.clone(),
        database: db,
        source,
        created_at: Some(now),
        age_seconds: Some(0),
        size_bytes: database_size(&live, &target.database().unwrap_or_default()).await,
    };
    Ok(BranchCreateReport { branch: info, restore: restored })
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

/// The branches of `workspace` (all, when `None`), from the config file as it is now.
///
/// Errors: `Config` for the file; `NotFound` for an unknown workspace.
pub async fn list(core: &Core, workspace: Option<&str>, _actor: &Actor) -> Result<Vec<BranchInfo>> {
    let config = current_config(core)?;
    if let Some(w) = workspace {
        config.workspace(w)?;
    }
    let now = Utc::now();
    let mut out = Vec::new();
    for (entry, ws) in &config.config.workspaces {
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
            age_seconds: created_at.map(|c| (now - c).num_seconds()),
            size_bytes: size,
        });
    }
    Ok(out)
}

/// The branch `name` of `workspace` in the config as it is now, with its connection.
fn find(core: &Core, workspace: &str, name: &str) -> Result<(LoadedConfig, String, ConnSpec)> {
    let config = current_config(core)?;
    let entry = entry_name(workspace, name)?;
    let ws = config.config.workspaces.get(&entry).filter(|w| w.branch_of.as_deref() == Some(workspace)).ok_or_else(
        || Error::not_found(format!("workspace {workspace} has no branch {name} (`tidemark branch list` shows them)")),
    )?;
    let spec = ConnSpec::parse(&ws.database_url, ws.password.as_ref())?;
    Ok((config, entry, spec))
}

/// Makes branch `name` the workspace's live database: a pre-restore snapshot of the live
/// one, then the guarded switch (the live database moves aside as
/// `<database>_before_branch_<name>`, which `restore undo` swaps back); the branch's entry
/// is removed from the config, since its database is the workspace's now.
///
/// Errors: `Usage` without the confirmation; `NotFound` for an unknown branch; `Usage` for
/// a branch on another server; those of the snapshot and the switch (which puts back what
/// it did).
pub async fn set_live(core: &Core, opts: &SetLiveOptions, actor: &Actor) -> Result<SetLiveReport> {
    super::inplace::confirmed(&opts.workspace, &opts.confirm)?;
    let done = async {
        let (config, entry, branch) = find(core, &opts.workspace, &opts.name)?;
        let workspace = core.workspace(&opts.workspace)?;
        let live = workspace.restorer()?;
        let db = live.database().ok_or_else(|| Error::config("the workspace's URL names no database"))?;
        let incoming = branch.database().unwrap_or_default();
        if !workspace.conn()?.with_database(&incoming).same_database(&branch) {
            return Err(Error::usage(format!(
                "branch {} is not on the workspace's server as its role; switch by hand",
                opts.name
            )));
        }
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
        crate::config::remove_workspace(&config.path, &entry).map_err(|e| {
            e.context(format!("branch {} is live; remove its entry {entry} from the config by hand", opts.name))
        })?;
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
    .await;
    let details = serde_json::json!({ "branch": opts.name, "drop_previous": opts.drop_previous });
    super::audit::record(core, actor, Operation::BranchSetLive.audit_action(), &opts.workspace, &done, details).await;
    done
}

/// Drops a branch's database and removes its entry from the config.
///
/// Errors: `Usage` when `confirm` does not repeat the branch's name; `NotFound` for an
/// unknown branch; `Database` when the database cannot be dropped (the entry then stays).
pub async fn delete(core: &Core, opts: &BranchDeleteOptions, actor: &Actor) -> Result<BranchInfo> {
    let done = async {
        if opts.confirm != opts.name {
            return Err(Error::usage(format!(
                "this drops the database of branch {}: confirm with the branch's name ({}) to go ahead",
                opts.name, opts.name
            )));
        }
        let info = list(core, Some(&opts.workspace), actor)
            .await?
            .into_iter()
            .find(|b| b.name == opts.name)
            .ok_or_else(|| Error::not_found(format!("workspace {} has no branch {}", opts.workspace, opts.name)))?;
        let (config, entry, branch) = find(core, &opts.workspace, &opts.name)?;
        // Dropped as the workspace's restore role, where one is set.
        let dropper = match core.workspace(&opts.workspace)?.restorer() {
            Ok(restorer) if restorer.same_server(&branch) => {
                restorer.with_database(&branch.database().unwrap_or_default())
            }
            _ => branch,
        };
        database::drop_database(&dropper).await?;
        crate::config::remove_workspace(&config.path, &entry)?;
        Ok(info)
    }
    .await;
    super::audit::record(
        core,
        actor,
        "branch.delete",
        &opts.workspace,
        &done,
        serde_json::json!({ "branch": opts.name }),
    )
    .await;
    done
}
