//! `wal push` and `wal fetch`: the `archive_command` and `restore_command` of a workspace's
//! cluster. The workspace may be omitted when the config has exactly one.

use std::path::Path;

use super::Core;
use crate::error::{Error, Result};
use crate::wal::archive::{self, Pushed};

/// The workspace named, or the only one configured.
///
/// Errors: `Usage` when none is named and the config has several (or none).
pub fn workspace_or_only(core: &Core, workspace: Option<&str>) -> Result<String> {
    if let Some(ws) = workspace {
        core.config.workspace(ws)?;
        return Ok(ws.to_string());
    }
    let names: Vec<&String> = core.config.config.workspaces.keys().collect();
    match names.as_slice() {
        [only] => Ok((*only).clone()),
        _ => Err(Error::usage(format!(
            "say which workspace with --workspace (the config has {})",
            if names.is_empty() {
                "none".to_string()
            } else {
                names.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
            }
        ))),
    }
}

/// Archives one WAL file; succeeds only once it is durable in the repository.
pub async fn push(core: &Core, workspace: Option<&str>, path: &Path) -> Result<Pushed> {
    let workspace = workspace_or_only(core, workspace)?;
    archive::push(&core.repo, core.recipients()?, &workspace, path).await
}

/// Restores one archived WAL file to `dest`.
pub async fn fetch(core: &Core, workspace: Option<&str>, name: &str, dest: &Path) -> Result<u64> {
    let workspace = workspace_or_only(core, workspace)?;
    archive::fetch(&core.repo, &core.identities()?, &workspace, name, dest).await
}
