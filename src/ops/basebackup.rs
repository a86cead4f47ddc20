//! `basebackup`: a physical copy of a workspace's cluster (pg_basebackup, streamed through
//! the pipeline), the starting point of every point-in-time restore.

use serde::{Deserialize, Serialize};

use super::Core;
use super::job::WaitFor;
use crate::actor::Actor;
use crate::error::Result;
use crate::wal::base::{self, BaseManifest};

/// What `basebackup` takes.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct BaseBackupOptions {
    pub workspace: String,
    /// When another operation holds the workspace: refuse (default) or wait.
    #[serde(default)]
    pub wait: WaitFor,
    /// Only what changed since the newest base backup (see `wal::incremental`): read from
    /// the data directory itself, on the database host.
    #[serde(default)]
    pub incremental: bool,
    /// The data directory an incremental one reads (default: the server's `data_directory`).
    #[serde(default)]
    pub pgdata: Option<std::path::PathBuf>,
    /// Incremental: when the newest base backup's chain already has this many incrementals,
    /// a full one is taken instead (none: no bound).
    #[serde(default)]
    pub max_chain: Option<u32>,
}

impl BaseBackupOptions {
    /// What a base-backup policy's job takes: full or incremental as the policy says,
    /// waiting for the workspace.
    pub fn scheduled(job: &crate::schedule::daemon::ScheduledJob) -> BaseBackupOptions {
        BaseBackupOptions {
            workspace: job.workspace.clone(),
            wait: WaitFor::FOREVER,
            incremental: job.incremental,
            max_chain: job.max_chain,
            pgdata: None,
        }
    }
}

/// Takes a base backup, showing the bytes copied on the core's progress. Errors: those
/// of [`base::take`], `NotFound` for an unknown workspace, `Refused` while another
/// operation holds the workspace.
pub async fn basebackup(core: &Core, opts: &BaseBackupOptions, actor: &Actor) -> Result<BaseManifest> {
    let workspace = opts.workspace.as_str();
    let until = super::hold::pitr_until(core, workspace)?;
    let core = &super::hold::locking(core, until);
    let ws = core.workspace(workspace)?;
    let _lock = super::job::take_workspace(
        core,
        workspace,
        crate::operation::Operation::BaseBackup.lock_label(),
        actor,
        opts.wait,
    )
    .await?;
    let spec = ws.conn()?;
    let slot = ws.config.wal_stream.is_on().then(|| crate::wal::stream::default_slot(workspace));
    let progress = core.progress();
    progress.set_prefix(format!("base backup {workspace}"));
    let bin_dir = core.pg_bin_dir();
    // Stopped, it is dropped before its manifest: nothing of it is visible.
    // Incremental to the newest base backup; a full one when there is none yet, or when
    // its chain is at its bound (as pgBackRest does).
    let parent = match opts.incremental {
        true => newest_base(core, workspace).await?,
        false => None,
    };
    let parent = parent.filter(|(_, links)| opts.max_chain.is_none_or(|max| *links < max as usize));
    if opts.incremental && parent.is_none() {
        tracing::info!(workspace, "no base backup to be incremental to, or its chain is at max-chain: a full one");
    }
    let taken = if let Some((parent, _)) = parent {
        core.until_stopped(crate::wal::chain::take(
            &core.repo,
            core.recipients()?,
            spec,
            opts.pgdata.as_deref(),
            &parent,
            slot.is_some(),
            progress,
        ))
        .await
    } else {
        core.until_stopped(base::take(
            &core.repo,
            core.recipients()?,
            spec,
            bin_dir.as_deref(),
            workspace,
            slot.as_deref(),
            progress,
        ))
        .await
    };
    progress.finish();
    let taken = taken.map_err(|e| e.context(format!("base backup of workspace {workspace}")))?;
    if let Some(until) = until {
        let moved = super::hold::extend_for_base(core, workspace, &taken.id, until).await?;
        tracing::info!(workspace, locks = moved, "object lock: the previous base backup and its WAL extended");
    }
    Ok(taken)
}

/// The parent of an incremental base backup: the workspace's newest one whose chain is
/// whole, and the incrementals in that chain (`None`: it has none).
///
/// Errors: `Key` without the identity; those of the store.
async fn newest_base(core: &super::Core, workspace: &str) -> Result<Option<(BaseManifest, usize)>> {
    let physical = super::pitr::Physical::load(core, &core.identities()?, workspace).await?;
    let newest = physical.bases.iter().max_by_key(|b| b.end_lsn);
    let links = |b: &BaseManifest| crate::wal::chain::chain_of(b, &physical.bases).map_or(0, |c| c.len() - 1);
    Ok(newest.map(|b| (b.clone(), links(b))))
}

/// [`basebackup`] as a recorded job (see [`super::job::recorded`]).
pub async fn basebackup_recorded(core: &Core, opts: &BaseBackupOptions, actor: &Actor) -> Result<BaseManifest> {
    let spec = super::job::JobSpec {
        workspace: opts.workspace.clone(),
        operation: crate::operation::Operation::BaseBackup,
        kind: None,
    };
    super::job::recorded(
        core,
        actor,
        spec,
        |core| async move { basebackup(&core, opts, actor).await },
        |m: &BaseManifest| crate::catalog::JobEnd { bytes: Some(m.tar.stored_size), ..Default::default() },
    )
    .await
}
