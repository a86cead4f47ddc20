//! `workspace add` / `workspace list`: the workspaces tidemark backs up, kept in tidemark.toml;
//! and a workspace's status, from the catalog alone (cheap enough to ask often).

use serde::{Deserialize, Serialize};

use chrono::{DateTime, Utc};

use super::Core;
use crate::actor::Actor;
use crate::catalog::JobStatus;
use crate::catalog::status::StatusRows;
use crate::config::{LoadedConfig, Secret, WorkspaceConfig, validate_workspace_name};
use crate::error::{Error, ErrorKind, Result};
pub use crate::monitor::status::{LastDrill, LastJob, WorkspaceStatus};

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct WorkspaceAddOptions {
    pub name: String,
    pub database_url: String,
    /// `env:VAR` or `file:/path` (a literal password belongs in neither a flag nor a config).
    pub password: Option<String>,
    /// The media store URL (`file:///srv/media`, `s3://bucket/prefix`).
    pub media: Option<String>,
}

/// Adds a workspace to the config file, keeping every other key, the file's comments and
/// its layout (under the config's lock: `config::edit_workspaces`).
///
/// Errors: `Usage` for a bad name or a password given as is (not `env:`/`file:`),
/// `AlreadyExists` for a taken one, `Config` for a bad URL.
pub fn add(config: &LoadedConfig, opts: &WorkspaceAddOptions) -> Result<()> {
    validate_workspace_name(&opts.name)?;
    let password = opts.password.as_deref().map(|p| Secret::reference("the password", p)).transpose()?;
    if config.config.workspaces.contains_key(&opts.name) {
        return Err(Error::new(
            ErrorKind::AlreadyExists,
            format!("workspace {} is already in {}", opts.name, config.path.display()),
        ));
    }
    let ws = WorkspaceConfig { password, media: opts.media.clone(), ..WorkspaceConfig::at(opts.database_url.clone()) };
    crate::config::add_workspace(&config.path, &opts.name, &ws)
}

/// What `workspace remove` takes.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorkspaceRemoveOptions {
    pub name: String,
    /// The workspace's name again.
    pub confirm: String,
}

/// Removes a workspace from the config file (its entry only: comments and the rest stay,
/// the file keeps its mode and owners). Its backups stay in the repository, and nothing
/// prunes them until it is added again; its database is not touched.
///
/// Errors: `Usage` without the confirmation, for a branch (`branch delete` removes those)
/// or for a workspace with branches (named); `NotFound` for an unknown name.
pub async fn remove(config: &LoadedConfig, opts: &WorkspaceRemoveOptions) -> Result<()> {
    let ws = config.workspace(&opts.name)?;
    if opts.confirm != opts.name {
        return Err(Error::usage(format!(
            "this stops backing up workspace {0} (its backups stay in the repository): confirm with its name \
             (--confirm {0}) to go ahead",
            opts.name
        )));
    }
    if let Some(of) = &ws.branch_of {
        return Err(Error::usage(format!(
            "{} is a branch of {of}: `tidemark branch delete` removes it with its database",
            opts.name
        )));
    }
    let mut branches: Vec<String> = config
        .config
        .workspaces
        .iter()
        .filter(|(_, w)| w.branch_of.as_deref() == Some(opts.name.as_str()))
        .map(|(name, _)| name.clone())
        .collect();
    // The catalog's branches (a catalog not made yet holds none, and is not made for it).
    if config.catalog_may_exist() {
        let catalog = crate::catalog::Catalog::open_at(&config.catalog_location()).await?;
        let rows = catalog.branches(Some(&opts.name)).await?;
        branches.extend(rows.into_iter().map(|b| format!("{}--{}", b.workspace, b.name)));
    }
    if !branches.is_empty() {
        return Err(Error::usage(format!(
            "workspace {} has branches ({}): delete them first (`tidemark branch delete`)",
            opts.name,
            branches.join(", ")
        )));
    }
    crate::config::remove_workspace(&config.path, &opts.name)
}

/// What `workspace status` takes.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct StatusOptions {
    pub workspace: String,
}

/// The status of one configured workspace.
///
/// Errors: `NotFound` for a workspace not in the config, `Unavailable` for the catalog.
pub async fn status(core: &Core, opts: &StatusOptions, _actor: &Actor) -> Result<WorkspaceStatus> {
    core.config.workspace(&opts.workspace)?;
    let mut rows = core.catalog().await?.status_rows(Some(&opts.workspace)).await?;
    status_of(core, &opts.workspace, &rows.remove(&opts.workspace).unwrap_or_default(), Utc::now())
}

/// A workspace's status at `now` from its rows in the catalog (read for every workspace
/// at once by [`crate::catalog::Catalog::status_rows`]).
///
/// Errors: `NotFound` for a workspace not in the config; `Integrity` for a drill report
/// the catalog holds that is not one.
pub fn status_of(core: &Core, ws: &str, rows: &StatusRows, now: DateTime<Utc>) -> Result<WorkspaceStatus> {
    let config = core.config.workspace(ws)?;
    let mut failing = Vec::new();
    let mut lasts = Vec::new();
    // The first two are the newest good snapshot and base backup.
    use crate::operation::Operation as O;
    let pick = |op: O, status: JobStatus| {
        rows.newest_jobs.iter().find(|j| j.operation == op.job_name() && j.status() == status).cloned()
    };
    for op in [O::Snapshot, O::BaseBackup, O::Drill, O::Restore, O::Prune, O::Check] {
        let (good, bad) = (pick(op, JobStatus::Succeeded), pick(op, JobStatus::Failed));
        let newer_failure = bad.filter(|b| good.as_ref().is_none_or(|g| b.started_at > g.started_at));
        failing.extend(newer_failure.map(|j| LastJob::of(&j, now)));
        lasts.push(good.map(|j| LastJob::of(&j, now)));
    }
    let last = |record: &Option<crate::catalog::DrillRecord>| -> Result<Option<LastDrill>> {
        let drill = record.clone().map(super::drill::DrillEntry::of).transpose()?;
        Ok(drill.map(|d| LastDrill {
            id: d.id,
            source: d.report.source.clone(),
            passed: d.report.passed,
            finished_at: d.report.finished_at,
            age_seconds: (now - d.report.finished_at).num_seconds(),
            rto_seconds: d.report.timings.restore_ms as f64 / 1000.0,
        }))
    };
    let (last_drill, last_passing_drill) = (last(&rows.newest_drill)?, last(&rows.newest_passing_drill)?);
    Ok(WorkspaceStatus {
        workspace: ws.to_string(),
        at: now,
        wal_stream: config.wal_stream.is_on(),
        media: config.media.is_some(),
        last_snapshot: lasts[0].take(),
        last_base_backup: lasts[1].take(),
        last_drill,
        last_passing_drill,
        failing,
        running: rows.running.clone(),
    })
}
