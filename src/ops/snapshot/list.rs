//! `snapshot list` and `snapshot show`, and how a snapshot id (or `latest`) given by a
//! person is resolved to a workspace and an id.

#[allow(clippy::wildcard_imports)]
use super::*;

/// A line of `snapshot list`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SnapshotSummary {
    pub id: String,
    pub workspace: String,
    /// `None` when the identity is not available to read the manifest.
    pub kind: Option<SnapshotKind>,
    pub note: Option<String>,
    pub finished_at: Option<chrono::DateTime<chrono::Utc>>,
    pub tables: Option<usize>,
    pub rows: Option<u64>,
    pub stored_bytes: Option<u64>,
    /// Media files in the snapshot, and the bytes it uploaded (new content).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub media_files: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub media_new_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// Set when the manifest is in the repository but cannot be read (damaged): the
    /// snapshot cannot be restored, and retention never deletes it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

impl SnapshotSummary {
    /// A snapshot whose manifest cannot be read (or, without an identity, is not read).
    fn unread(id: String, workspace: &str, problem: Option<String>) -> SnapshotSummary {
        SnapshotSummary {
            id,
            workspace: workspace.to_string(),
            kind: None,
            note: None,
            finished_at: None,
            tables: None,
            rows: None,
            stored_bytes: None,
            media_files: None,
            media_new_bytes: None,
            warnings: Vec::new(),
            problem,
        }
    }

    pub fn of(manifest: &Manifest) -> SnapshotSummary {
        SnapshotSummary {
            id: manifest.id.clone(),
            workspace: manifest.workspace.clone(),
            kind: Some(manifest.kind),
            note: manifest.note.clone(),
            finished_at: Some(manifest.finished_at),
            tables: Some(manifest.tables.len()),
            rows: Some(manifest.total_rows()),
            stored_bytes: Some(manifest.stored_bytes()),
            media_files: manifest.media.as_ref().map(|m| m.files.len()),
            media_new_bytes: manifest.media.as_ref().map(|m| m.new_bytes),
            warnings: manifest.warnings.clone(),
            problem: None,
        }
    }
}

/// The committed snapshots of a workspace, oldest first. Without an identity only ids are
/// known (everything else is encrypted). A snapshot whose manifest cannot be read is
/// listed with its `problem`.
///
/// Errors: `Unavailable` for an unreachable store; `Key` when no manifest can be read
/// with the configured identity.
/// What `snapshot list` takes.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ListOptions {
    pub workspace: String,
}

/// What `snapshot show` takes.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ShowOptions {
    /// A snapshot id, or `latest`.
    pub id: String,
    /// The snapshot's workspace (default: found in the repository; for `latest`, the
    /// only one configured).
    pub workspace: Option<String>,
}

pub async fn list(core: &Core, opts: &ListOptions, _actor: &Actor) -> Result<Vec<SnapshotSummary>> {
    let workspace = opts.workspace.as_str();
    core.known_workspace(workspace).await?;
    if !core.has_identities() {
        let ids = core.repo.list_snapshot_ids(workspace).await?;
        return Ok(ids.into_iter().map(|id| SnapshotSummary::unread(id, workspace, None)).collect());
    }
    let read = core.repo.read_manifests(workspace, &core.identities()?).await?;
    let mut out: Vec<SnapshotSummary> = read.items.iter().map(SnapshotSummary::of).collect();
    out.extend(read.damaged.into_iter().map(|d| SnapshotSummary::unread(d.id, workspace, Some(d.problem))));
    out.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(out)
}

/// Resolves a snapshot as every command names it: an id (its workspace found in the
/// repository when not given), or `latest`: the newest snapshot of the workspace (given,
/// or the only one configured) whose manifest can be read. Returns (workspace, id).
///
/// Errors: `Usage` for a malformed id, `NotFound` when there is no such snapshot.
pub async fn resolve(core: &Core, id: &str, workspace: Option<&str>) -> Result<(String, String)> {
    if id == "latest" {
        let ws = match workspace {
            Some(w) => {
                core.known_workspace(w).await?;
                w.to_string()
            }
            None => core.workspace_or_only(None)?,
        };
        let newest = if core.has_identities() {
            let read = core.repo.read_manifests(&ws, &core.identities()?).await?;
            read.items.into_iter().map(|m| m.id).max()
        } else {
            core.repo.list_snapshot_ids(&ws).await?.into_iter().max()
        };
        let id = newest.ok_or_else(|| {
            Error::not_found(format!(
                "workspace {ws} has no snapshot that can be read; take one with `tidemark snapshot create`"
            ))
        })?;
        return Ok((ws, id));
    }
    layout::validate_snapshot_id(id)?;
    let ws = match workspace {
        Some(w) => w.to_string(),
        None => core.repo.find_snapshot(id).await?,
    };
    Ok((ws, id.to_string()))
}

/// One snapshot's manifest (see [`resolve`] for how it is named).
pub async fn show(core: &Core, opts: &ShowOptions, _actor: &Actor) -> Result<Manifest> {
    manifest(core, &opts.id, opts.workspace.as_deref()).await
}

/// The manifest of a snapshot named by id (or `latest`), for operations that read one.
///
/// Errors: those of [`resolve`] and [`crate::repo::Repository::read_manifest`].
pub async fn manifest(core: &Core, id: &str, workspace: Option<&str>) -> Result<Manifest> {
    let (ws, id) = resolve(core, id, workspace).await?;
    core.repo.read_manifest(&ws, &id, &core.identities()?).await
}
