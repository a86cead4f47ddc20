//! Which copies hold what a command asked for: what it says when the primary is away.

use crate::config::LoadedConfig;
use crate::error::Error;
use crate::ops::Core;
use crate::ops::drill::DrillSource;
use crate::wal::window::Target;

/// What a command asked of the repository: what a copy must hold to serve it.
#[derive(Debug, Clone, Copy)]
pub enum Wanted<'a> {
    /// A snapshot by id (`None` or `latest`: any snapshot of the workspace; no workspace:
    /// the config's only one, or the snapshot's own).
    Snapshot { workspace: Option<&'a str>, snapshot: Option<&'a str> },
    /// A moment of a workspace (none: the config's only one): a base backup and the WAL
    /// from it to the target.
    PointInTime { workspace: Option<&'a str>, target: &'a Target },
}

impl<'a> Wanted<'a> {
    /// What a drill of `workspace` restores.
    pub fn drill(workspace: &'a str, source: &'a DrillSource) -> Wanted<'a> {
        match source {
            DrillSource::Snapshot(snapshot) => {
                Wanted::Snapshot { workspace: Some(workspace), snapshot: snapshot.as_deref() }
            }
            DrillSource::Pitr(target) => Wanted::PointInTime { workspace: Some(workspace), target },
        }
    }

    /// Whether the repository `core` reads holds it (a copy that cannot be asked: no).
    async fn held_by(self, core: &Core) -> bool {
        match self {
            Wanted::Snapshot { workspace, snapshot: Some(id) } if id != "latest" => {
                core.repo.find_snapshot(id).await.is_ok_and(|ws| workspace.is_none_or(|w| w == ws))
            }
            Wanted::Snapshot { workspace, .. } => match core.workspace_or_only(workspace) {
                Ok(ws) => core.repo.list_snapshot_ids(&ws).await.is_ok_and(|ids| !ids.is_empty()),
                Err(_) => false,
            },
            Wanted::PointInTime { workspace, target } => match core.workspace_or_only(workspace) {
                Ok(ws) => crate::ops::pitr::reaches(core, &ws, target).await.unwrap_or(false),
                Err(_) => false,
            },
        }
    }
}

/// The copies that hold what was asked, each opened and asked directly (in the config's
/// order). A copy that cannot be asked is left out.
pub async fn holders(config: &LoadedConfig, wanted: Wanted<'_>) -> Vec<String> {
    let mut out = Vec::new();
    for name in config.config.copies.keys() {
        let Ok(core) = Core::open_at(config.clone(), Some(name)).await else { continue };
        if wanted.held_by(&core).await {
            out.push(name.clone());
        }
    }
    out
}

/// `e`, the error of opening the primary, saying which copies hold what was asked and how
/// to read one (unchanged when none does, or the config has no copies).
pub async fn primary_away(config: &LoadedConfig, wanted: Wanted<'_>, e: Error) -> Error {
    if config.config.copies.is_empty() {
        return e;
    }
    let held = holders(config, wanted).await;
    match held.first() {
        None => e.context("no copy holds it either"),
        Some(first) => {
            e.context(format!("copies that hold it: {} (read one with --repository {first})", held.join(", ")))
        }
    }
}
