//! `catalog rebuild` and `jobs`: the catalog's history, and recreating it from the
//! repository (the truth) when it is lost: one succeeded job per snapshot, each
//! schedule's last run from its newest snapshot of the policy's kind, and the drill
//! reports the repository keeps.

use serde::{Deserialize, Serialize};

use super::Core;
use super::prune::policies_for;
use crate::actor::Actor;
use crate::catalog::{Catalog, Job, JobEnd, NewJob, Trigger};
use crate::error::Result;

#[derive(Debug, Clone, Serialize)]
pub struct RebuildReport {
    pub catalog: String,
    pub workspaces: usize,
    pub snapshots: usize,
    /// Snapshots the catalog did not know, now recorded.
    pub jobs_added: usize,
    pub schedules_set: usize,
    /// Drill reports the catalog did not know, now recorded.
    pub drills_added: usize,
    /// Snapshots whose manifest cannot be read (`<workspace>/<id>`): not recorded.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub damaged: Vec<crate::repo::Damaged>,
    /// Where a damaged catalog was moved (`--replace`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub moved_aside: Option<String>,
}

/// Opens the catalog named by the config (creating it if missing), anew: `rebuild`
/// repairs it, so it must see the file as it is now, not a pool opened earlier.
pub async fn open(core: &Core) -> Result<Catalog> {
    Catalog::open_at(&core.config.catalog_location()).await
}

/// The job history, newest first. A job still `running` whose process is gone from this
/// host (killed with SIGKILL) is first recorded as aborted.
/// What `jobs` takes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobsOptions {
    /// One workspace's jobs (default: all).
    pub workspace: Option<String>,
    /// The newest this many.
    pub limit: u32,
}

/// What `catalog rebuild` takes.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RebuildOptions {
    /// Move a damaged catalog aside and build a new one.
    pub replace_damaged: bool,
}

pub async fn jobs(core: &Core, opts: &JobsOptions, _actor: &Actor) -> Result<Vec<Job>> {
    let (workspace, limit) = (opts.workspace.as_deref(), opts.limit);
    if let Some(ws) = workspace {
        core.config.workspace(ws)?;
    }
    let catalog = open(core).await?;
    catalog.abort_jobs_of_dead_processes(chrono::Utc::now()).await?;
    catalog.jobs(workspace, limit).await
}

/// Recreates what the repository knows. Existing rows are kept; nothing is duplicated,
/// and no schedule is moved backwards.
///
/// With `replace_damaged`, a damaged catalog is moved aside first and a new one built.
///
/// Errors: `Key` without an identity (manifests are encrypted), `Unavailable` for the
/// store or the catalog, `Integrity` for a damaged catalog (without `replace_damaged`).
pub async fn rebuild(core: &Core, opts: &RebuildOptions, _actor: &Actor) -> Result<RebuildReport> {
    let replace_damaged = opts.replace_damaged;
    let (catalog, moved_aside) = match open(core).await {
        Ok(c) => (c, None),
        // A damaged catalog: moved aside (kept for inspection) and built anew.
        Err(e) if replace_damaged && e.kind() == crate::error::ErrorKind::Integrity => {
            let aside = Catalog::move_aside(&core.config.catalog_path())?;
            tracing::warn!(moved_to = %aside.display(), error = %e.report(), "the catalog was damaged; moved aside");
            (open(core).await?, Some(aside.display().to_string()))
        }
        Err(e) => return Err(e),
    };
    let identities = core.identities()?;
    let mut workspaces = core.repo.list_workspaces().await?;
    workspaces.extend(core.config.config.workspaces.keys().cloned());
    workspaces.sort();
    workspaces.dedup();
    let mut report = RebuildReport {
        catalog: catalog.path().display().to_string(),
        workspaces: workspaces.len(),
        snapshots: 0,
        jobs_added: 0,
        schedules_set: 0,
        drills_added: 0,
        damaged: Vec::new(),
        moved_aside,
    };
    for workspace in &workspaces {
        let read = core.repo.read_manifests(workspace, &identities).await?;
        let manifests = read.items;
        report.damaged.extend(
            read.damaged.into_iter().map(|d| crate::repo::Damaged { id: format!("{workspace}/{}", d.id), ..d }),
        );
        report.snapshots += manifests.len();
        for m in &manifests {
            let job = NewJob {
                workspace: workspace.clone(),
                operation: "snapshot".into(),
                kind: Some(m.kind.to_string()),
                trigger: Trigger::Rebuilt,
                policy: None,
                scheduled_for: None,
                started_at: m.started_at,
                actor: None,
            };
            let end = JobEnd {
                finished_at: Some(m.finished_at),
                snapshot_id: Some(m.id.clone()),
                bytes: Some(m.stored_bytes()),
                ..Default::default()
            };
            if catalog.insert_rebuilt_job(&job, &end).await? {
                report.jobs_added += 1;
            }
        }
        for stored in super::drill::stored_reports(core, workspace).await? {
            if catalog.insert_rebuilt_drill(&stored.report.row(), stored.trigger).await? {
                report.drills_added += 1;
            }
        }
        if !core.config.config.workspaces.contains_key(workspace) {
            continue; // no policies for a workspace the config no longer has
        }
        for policy in policies_for(core, workspace)?.into_iter().filter(|p| p.cron.is_some()) {
            if let Some(newest) = manifests.iter().filter(|m| Some(m.kind) == policy.kind).map(|m| m.started_at).max() {
                catalog.set_last_slot(workspace, &policy.name, newest, "rebuilt", None).await?;
                report.schedules_set += 1;
            }
        }
    }
    Ok(report)
}

/// What `catalog migrate` takes.
#[derive(Debug, Clone, Default)]
pub struct MigrateOptions {
    /// The PostgreSQL catalog to copy into (`postgres://user@host/db`, no password in it).
    pub to: String,
    /// Its password: `env:VARIABLE` or `file:/path`.
    pub password: Option<String>,
}

/// What `catalog migrate` did.
#[derive(Debug, Clone, Serialize)]
pub struct MigrateReport {
    /// The SQLite catalog copied (left as it was).
    pub from: String,
    /// The PostgreSQL catalog, without a password.
    pub to: String,
    /// Rows copied, by table.
    pub tables: Vec<(String, u64)>,
    /// Audit records in the copy, verified as one chain.
    pub audit_records: usize,
}

/// Copies the config's SQLite catalog into an empty PostgreSQL one and verifies the copied
/// audit chain. The operator then names the new catalog in tidemark.toml (this never
/// writes the config); the SQLite file is left as it was.
///
/// Errors: `Usage` when the config's catalog is not a SQLite file, or for a password given
/// as is; `Refused` when the target holds rows; `Integrity` when the copy's audit chain does
/// not verify; `Unavailable` for either catalog.
pub async fn migrate(core: &Core, opts: &MigrateOptions, _actor: &Actor) -> Result<MigrateReport> {
    let crate::config::CatalogLocation::File(path) = core.config.catalog_location() else {
        return Err(crate::error::Error::usage(
            "the config's catalog is PostgreSQL already: `catalog migrate` copies a SQLite catalog into one",
        ));
    };
    // A password on the command line would be in the process list and the shell's history.
    crate::config::check_catalog_url(&opts.to).map_err(|e| {
        crate::error::Error::usage(format!(
            "{}: give the password as a secret reference (env:VARIABLE or file:/path)",
            e.message()
        ))
    })?;
    let password = match &opts.password {
        Some(text) => Some(crate::secret::Secret::reference("the catalog's password", text)?),
        None => None,
    };
    let source = Catalog::open(&path).await?;
    let target = Catalog::open_postgres(&opts.to, password.as_ref(), &core.config.catalog_path()).await?;
    let tables = source.copy_into(&target).await?;
    let records = target.audit_records(None).await?;
    let audit_records = crate::catalog::audit::verify(&records, source.audit_head().await?.as_ref())
        .map_err(|e| e.context("the copied audit trail"))?;
    Ok(MigrateReport { from: source.name().to_string(), to: target.name().to_string(), tables, audit_records })
}
