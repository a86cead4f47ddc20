//! A workspace's database as it was at a moment, for the operations that copy from it
//! (an in-place restore, a table or a branch from a point in time): recovered from a base
//! backup and WAL into a throwaway cluster, in a drill-style scratch folder that is removed
//! at the end (and by the next drill, if tidemark dies before).

use super::{DEFAULT_PREFETCH, PitrRestoreOptions, PitrRestoreReport, restore};
use crate::actor::Actor;
use crate::drill::throwaway::ScratchDir;
use crate::error::{Error, Result};
use crate::ops::Core;
use crate::pg::ConnSpec;
use crate::wal::window::Target;

/// A recovered copy of a workspace's server, running; [`PastDatabase::remove`] stops and
/// deletes it.
pub struct PastDatabase {
    scratch: ScratchDir,
    /// The workspace's database in the copy (the workspace's role and password: the copy
    /// is the same cluster, at that moment).
    pub spec: ConnSpec,
    pub report: PitrRestoreReport,
}

/// Recovers `workspace` to `target` in a throwaway cluster and starts it.
///
/// Errors: those of `pitr restore` (a target outside the window is `Refused` before
/// anything is written); the scratch folder is removed again on failure.
pub async fn recover(
    core: &Core,
    workspace: &str,
    target: &Target,
    tidemark_command: Option<String>,
    actor: &Actor,
) -> Result<PastDatabase> {
    let scratch = ScratchDir::create(&core.scratch_root(), &format!("{workspace}-pitr"))?;
    let opts = PitrRestoreOptions {
        workspace: workspace.to_string(),
        pgdata: scratch.path().join("pgdata"),
        target: target.clone(),
        start: true,
        port: None,
        tidemark_command,
        prefetch: DEFAULT_PREFETCH,
        repository_only: false,
        repository: core.copy_name().map(str::to_string),
    };
    let recovered = async {
        let report = restore(core, &opts, actor).await?;
        let port = report.port.ok_or_else(|| Error::internal("the recovered server reported no port"))?;
        let spec = core.workspace(workspace)?.conn()?.with_host_port("127.0.0.1", port)?;
        Ok::<_, Error>((report, spec))
    }
    .await;
    match recovered {
        Ok((report, spec)) => Ok(PastDatabase { scratch, spec, report }),
        Err(e) => {
            let bin_dir = core.pg_bin_dir();
            let _ = tokio::task::spawn_blocking(move || scratch.remove(bin_dir.as_deref())).await;
            Err(e)
        }
    }
}

impl PastDatabase {
    /// Stops the recovered server and deletes its folder.
    ///
    /// Errors: `Internal` naming the folder when it cannot be deleted.
    pub async fn remove(self, core: &Core) -> Result<()> {
        let bin_dir = core.pg_bin_dir();
        let scratch = self.scratch;
        tokio::task::spawn_blocking(move || scratch.remove(bin_dir.as_deref()))
            .await
            .map_err(|e| Error::internal(format!("cleanup task: {e}")))?
    }
}
