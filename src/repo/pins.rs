//! Pins: an empty marker object per pinned snapshot (`workspaces/<ws>/pins/<id>`), which
//! retention never deletes. Pinning writes the marker once; unpinning deletes it.

use std::collections::HashSet;

use super::{Repository, layout};
use crate::error::{Error, ErrorKind, Result};

impl Repository {
    /// Pinned snapshot ids of a workspace.
    ///
    /// Errors: `Unavailable` for the store.
    pub async fn pinned(&self, workspace: &str) -> Result<HashSet<String>> {
        let listed = self.list(&layout::pins(workspace)).await?;
        Ok(listed.iter().filter_map(|o| o.key.filename().map(str::to_string)).collect())
    }

    /// Pins or unpins a committed snapshot. Pinning a pinned snapshot leaves its marker
    /// alone (write-once, like every object); unpinning an unpinned one does nothing.
    ///
    /// Errors: `NotFound` for a snapshot without a manifest; `Unavailable` for the store.
    pub async fn set_pin(&self, workspace: &str, id: &str, pin: bool) -> Result<()> {
        layout::validate_snapshot_id(id)?;
        if self.stored_size(&layout::manifest(workspace, id)).await?.is_none() {
            return Err(Error::not_found(format!("workspace {workspace} has no snapshot {id}")));
        }
        let marker = layout::pin(workspace, id);
        if !pin {
            return self.delete(&marker).await;
        }
        match self.put_once(&marker, Vec::new()).await {
            Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(()),
            other => other,
        }
    }
}
