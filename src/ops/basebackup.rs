//! `basebackup`: a physical copy of a workspace's cluster (pg_basebackup, streamed through
//! the pipeline), the starting point of every point-in-time restore.

use super::Core;
use crate::error::Result;
use crate::pg::ConnSpec;
use crate::progress::Progress;
use crate::wal::base::{self, BaseManifest};

/// Takes a base backup, showing the bytes copied on `progress`. Errors: those of
/// [`base::take`], and `NotFound` for an unknown workspace.
pub async fn basebackup(core: &Core, workspace: &str, progress: &Progress) -> Result<BaseManifest> {
    let ws = core.config.workspace(workspace)?;
    let spec = ConnSpec::parse(&ws.database_url, ws.password.as_ref())?;
    let slot = ws.wal_stream.then(|| crate::wal::stream::default_slot(workspace));
    progress.set_prefix(format!("base backup {workspace}"));
    let bin_dir = core.pg_bin_dir();
    let taken =
        base::take(&core.repo, core.recipients()?, &spec, bin_dir.as_deref(), workspace, slot.as_deref(), progress)
            .await;
    progress.finish();
    taken.map_err(|e| e.context(format!("base backup of workspace {workspace}")))
}
