//! `snapshot delete`: one snapshot removed by hand, with prune's guards: never a pinned
//! snapshot, never one object lock still holds, never while another operation holds the
//! workspace; the manifest goes first (the snapshot stops existing before any of its
//! objects go), then its folder. Media it shares with no other snapshot are left to the
//! next prune's garbage collection (after its grace period), as prune leaves them.

use serde::{Deserialize, Serialize};

use super::super::Core;
use super::super::job::WaitFor;
use crate::actor::Actor;
use crate::error::{Error, ErrorKind, Result};
use crate::repo::layout;

/// What `snapshot delete` takes.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SnapshotDeleteOptions {
    /// A snapshot id (not `latest`: a deletion names what it deletes).
    pub id: String,
    pub workspace: Option<String>,
    /// The snapshot's id again.
    pub confirm: String,
    #[serde(default)]
    pub wait: WaitFor,
}

/// What `snapshot delete` did.
#[derive(Debug, Clone, Serialize)]
pub struct SnapshotDeleteReport {
    pub workspace: String,
    pub id: String,
    /// The manifest and the snapshot's own objects.
    pub deleted_objects: u64,
    pub deleted_bytes: u64,
}

/// Deletes one snapshot.
///
/// Errors: `Usage` without the confirmation or for `latest`; `NotFound` for an unknown
/// snapshot; `Refused` for a pinned or locked snapshot, or while another operation holds
/// the workspace; those of the store.
pub async fn delete(core: &Core, opts: &SnapshotDeleteOptions, actor: &Actor) -> Result<SnapshotDeleteReport> {
    let done = delete_snapshot(core, opts, actor).await;
    let target = match &done {
        Ok(r) => format!("{}/{}", r.workspace, r.id),
        Err(_) => format!("{}/{}", opts.workspace.as_deref().unwrap_or("?"), opts.id),
    };
    super::super::audit::record(
        core,
        actor,
        crate::operation::Operation::SnapshotDelete,
        &target,
        &done,
        serde_json::json!({}),
    )
    .await;
    done
}

async fn delete_snapshot(core: &Core, opts: &SnapshotDeleteOptions, actor: &Actor) -> Result<SnapshotDeleteReport> {
    if opts.id == "latest" {
        return Err(Error::usage("name the snapshot to delete by its id (`tidemark snapshot list`), not latest"));
    }
    if opts.confirm != opts.id {
        return Err(Error::usage(format!(
            "this deletes snapshot {0} for good: confirm with its id ({0}) to go ahead",
            opts.id
        )));
    }
    let (ws, id) = super::super::snapshot::resolve(core, &opts.id, opts.workspace.as_deref()).await?;
    let _lock = super::super::job::take_workspace(core, &ws, "snapshot delete", actor, opts.wait).await?;
    if super::pinned(core, &ws).await?.contains(&id) {
        return Err(Error::new(
            ErrorKind::Refused,
            format!("snapshot {id} is pinned: `tidemark snapshot unpin {id}` first if it is really to go"),
        ));
    }
    let manifest = layout::manifest(&ws, &id);
    if core.repo.stored_size(&manifest).await?.is_none() {
        return Err(Error::not_found(format!(
            "workspace {ws} has no snapshot {id} (`tidemark snapshot list --workspace {ws}` lists them)"
        )));
    }
    if let Some(until) = core.repo.locked_until(&manifest).await? {
        return Err(Error::new(
            ErrorKind::Refused,
            format!(
                "snapshot {id} is held by object lock until {}: nobody can delete it before then",
                until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ),
        ));
    }
    let mut report =
        SnapshotDeleteReport { workspace: ws.clone(), id: id.clone(), deleted_objects: 0, deleted_bytes: 0 };
    let mut locked = 0;
    // The manifest first: from here on the snapshot does not exist.
    if !super::delete_unless_locked(core, &manifest, &mut locked).await? {
        return Err(Error::new(ErrorKind::Refused, format!("snapshot {id} is held by object lock")));
    }
    report.deleted_objects += 1;
    if let Ok(catalog) = core.catalog().await
        && let Err(e) = catalog.unindex_snapshots(&ws, std::slice::from_ref(&id)).await
    {
        tracing::warn!(error = %e.report(), "the deleted snapshot stays in the catalog's index until the next listing");
        let _ = catalog.set_snapshot_index_synced(&ws, None).await;
    }
    // Its own folder only (the manifest is gone already, so it is listed no more).
    for object in core.repo.list_all(&layout::snapshot_dir(&ws, &id)).await? {
        if super::delete_unless_locked(core, &object.key, &mut locked).await? {
            report.deleted_objects += 1;
            report.deleted_bytes += object.size;
        }
    }
    tracing::info!(workspace = %ws, id, objects = report.deleted_objects, "snapshot deleted");
    Ok(report)
}
