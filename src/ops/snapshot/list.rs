//! `snapshot list` and `snapshot show`, and how a snapshot id (or `latest`) given by a
//! person is resolved to a workspace and an id.
//!
//! Longer than ~300 lines: listing, showing and resolving snapshots share the index-or-repository reads and their paging.

#[allow(clippy::wildcard_imports)]
use super::*;

use std::collections::BTreeSet;

use chrono::Utc;

/// A line of `snapshot list`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
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
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// Set when the manifest is in the repository but cannot be read (damaged): the
    /// snapshot cannot be restored, and retention never deletes it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
    /// Whether it is pinned (retention keeps it). This and the next two are said by a
    /// listing that asks the repository and retention (`list_annotated` of the prune operation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pinned: Option<bool>,
    /// What retention decides of it now, as `prune` would (object lock, which may keep it
    /// longer, is `prune`'s to add).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<Retained>,
    /// Its manifest's signature: `verified` (read through the signature check against
    /// `repository.trusted-signers`), `not-required` (`--allow-unsigned`); none when the
    /// manifest cannot be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}

/// Retention's decision about a snapshot, and why.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Retained {
    pub keep: bool,
    pub reasons: Vec<String>,
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
            pinned: None,
            retention: None,
            signature: None,
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
            pinned: None,
            retention: None,
            signature: None,
        }
    }
}

/// What `snapshot list` takes.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ListOptions {
    pub workspace: String,
    /// Newest first, at most this many (a page); unset: all, oldest first.
    pub limit: Option<u32>,
    /// Only snapshots older than this id (the next page after its last).
    pub before: Option<String>,
    /// Read every manifest from the repository (and refresh the catalog's index with what
    /// was read) instead of trusting the index: a manifest damaged since it was indexed
    /// shows. The command line lists this way; the API lists from the index.
    pub from_repository: bool,
    /// A copy (`[copies.NAME]`) to list instead of the primary (read from the copy).
    pub repository: Option<String>,
}

/// How long the catalog's index of a workspace's snapshots is trusted before a listing
/// compares it with the repository again (what this host takes or deletes is in it at once).
pub const INDEX_FRESH: std::time::Duration = std::time::Duration::from_secs(60);

/// What `snapshot show` takes.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ShowOptions {
    /// A snapshot id, or `latest`.
    pub id: String,
    /// The snapshot's workspace (default: found in the repository; for `latest`, the
    /// only one configured).
    pub workspace: Option<String>,
}

/// The committed snapshots of a workspace: all, oldest first, or a page, newest first
/// (see [`ListOptions`]); from the catalog's index unless `from_repository` (or there is no
/// catalog). Without an identity only ids are known (everything else is encrypted). A
/// snapshot whose manifest cannot be read is listed with its `problem`.
///
/// Errors: `Usage` for a malformed `before`; `Unavailable` for an unreachable store or
/// catalog; `Key` when no manifest can be read with the configured identity.
pub async fn list(core: &Core, opts: &ListOptions, _actor: &Actor) -> Result<Vec<SnapshotSummary>> {
    let core = &core.on_repository(opts.repository.as_deref()).await?;
    let workspace = opts.workspace.as_str();
    core.known_workspace(workspace).await?;
    if let Some(before) = &opts.before {
        layout::validate_snapshot_id(before)?;
    }
    if !core.has_identities() {
        let ids = core.repo.list_snapshot_ids(workspace).await?;
        let all = ids.into_iter().map(|id| SnapshotSummary::unread(id, workspace, None)).collect();
        return Ok(page(all, opts));
    }
    // From the catalog's index; from the repository when asked or when there is no catalog
    // (and from a copy itself: the index is the primary's).
    let catalog = match core.catalog().await {
        Ok(_) if core.copy_name().is_some() => None,
        Ok(catalog) => Some(catalog),
        Err(e) => {
            tracing::debug!(error = %e.report(), "no catalog: snapshots are listed from the repository");
            None
        }
    };
    let Some(catalog) = catalog.filter(|_| !opts.from_repository) else {
        let started = Utc::now();
        // What the index held before the repository was read: a snapshot committed while
        // it is read is never taken for one that is gone.
        let known = match catalog {
            Some(catalog) => catalog.indexed_snapshot_ids(workspace).await.unwrap_or_default(),
            None => Vec::new(),
        };
        let read = core.repo.read_manifests(workspace, &core.identities()?).await?;
        let mut all: Vec<SnapshotSummary> = read.items.iter().map(SnapshotSummary::of).collect();
        all.extend(read.damaged.into_iter().map(|d| SnapshotSummary::unread(d.id, workspace, Some(d.problem))));
        all.sort_by(|a, b| a.id.cmp(&b.id));
        if let Some(catalog) = catalog
            && let Err(e) = reindex(catalog, workspace, known, &all, started).await
        {
            tracing::warn!(error = %e.report(), "the catalog's snapshot index was not refreshed");
        }
        return Ok(page(all, opts));
    };
    // Never compared: now, before answering. Older than a minute: compared in the
    // background by one listing (this answer comes from the index as it is).
    match catalog.snapshot_index_synced(workspace).await? {
        None => {
            let _claim = core.claim_index_sync(workspace);
            if catalog.snapshot_index_synced(workspace).await?.is_none() {
                sync_index(core, catalog, workspace).await?;
            }
        }
        Some(at) if (Utc::now() - at).to_std().map_or(true, |age| age > INDEX_FRESH) => {
            if let Some(claim) = core.claim_index_sync(workspace) {
                let (core, workspace) = (core.clone(), workspace.to_string());
                tokio::spawn(async move {
                    let _claim = claim;
                    let synced = match core.catalog().await {
                        Ok(catalog) => sync_index(&core, catalog, &workspace).await,
                        Err(e) => Err(e),
                    };
                    if let Err(e) = synced {
                        tracing::warn!(workspace = %workspace, error = %e.report(), "the snapshot index was not compared with the repository");
                    }
                });
            }
        }
        Some(_) => {}
    }
    let rows = catalog.snapshot_summaries(workspace, opts.before.as_deref(), opts.limit.unwrap_or(u32::MAX)).await?;
    let mut out = rows
        .iter()
        .map(|row| {
            serde_json::from_str(row).map_err(|e| Error::integrity(format!("the catalog's snapshot index: {e}")))
        })
        .collect::<Result<Vec<SnapshotSummary>>>()?;
    if opts.limit.is_none() {
        out.reverse();
    }
    Ok(out)
}

/// Makes the catalog's index of `workspace` what was just read from the repository.
async fn reindex(
    catalog: &crate::catalog::Catalog,
    workspace: &str,
    known: Vec<String>,
    all: &[SnapshotSummary],
    read_at: chrono::DateTime<Utc>,
) -> Result<()> {
    let present: BTreeSet<&str> = all.iter().map(|s| s.id.as_str()).collect();
    let gone: Vec<String> = known.into_iter().filter(|id| !present.contains(id.as_str())).collect();
    catalog.unindex_snapshots(workspace, &gone).await?;
    for summary in all {
        let row = serde_json::to_string(summary).expect("a summary serializes");
        catalog.index_snapshot(workspace, &summary.id, &row).await?;
    }
    catalog.set_snapshot_index_synced(workspace, Some(read_at)).await
}

/// The page `opts` asks for of `all` (oldest first): newest first, before `opts.before`, at
/// most `opts.limit`; all of them, oldest first, without a limit.
pub fn page(mut all: Vec<SnapshotSummary>, opts: &ListOptions) -> Vec<SnapshotSummary> {
    let Some(limit) = opts.limit else { return all };
    all.retain(|s| opts.before.as_ref().is_none_or(|b| s.id < *b));
    all.reverse();
    all.truncate(limit as usize);
    all
}

/// Compares the catalog's index of `workspace` with the repository: snapshots gone are
/// removed, new ones (and ones whose manifest could not be read before) are read and added.
///
/// Errors: `Unavailable` for the store or the catalog; `Key` when no new manifest can be
/// read with the configured identity.
pub async fn sync_index(core: &Core, catalog: &crate::catalog::Catalog, workspace: &str) -> Result<()> {
    use futures::StreamExt;
    let started = Utc::now();
    // The index first, then the repository: a snapshot committed in between is read
    // again, never taken for one that is gone.
    let indexed = catalog.indexed_snapshots(workspace).await?;
    let known: BTreeSet<String> = indexed.iter().map(|(id, _)| id.clone()).collect();
    let whole: BTreeSet<String> = indexed
        .into_iter()
        .filter(|(_, row)| serde_json::from_str::<SnapshotSummary>(row).is_ok_and(|s| s.problem.is_none()))
        .map(|(id, _)| id)
        .collect();
    let in_repo: BTreeSet<String> = core.repo.list_snapshot_ids(workspace).await?.into_iter().collect();
    let gone: Vec<String> = known.difference(&in_repo).cloned().collect();
    catalog.unindex_snapshots(workspace, &gone).await?;
    let identities = core.identities()?;
    let fresh: Vec<String> = in_repo.difference(&whole).cloned().collect();
    let read: Vec<(String, Result<Manifest>)> = futures::stream::iter(fresh)
        .map(|id| {
            let identities = &identities;
            async move {
                let manifest = core.repo.read_manifest(workspace, &id, identities).await;
                (id, manifest)
            }
        })
        .buffered(8)
        .collect()
        .await;
    let read = crate::repo::sort_out(read)?;
    let summaries = read
        .items
        .iter()
        .map(SnapshotSummary::of)
        .chain(read.damaged.into_iter().map(|d| SnapshotSummary::unread(d.id, workspace, Some(d.problem))));
    for summary in summaries {
        let row = serde_json::to_string(&summary).expect("a summary serializes");
        catalog.index_snapshot(workspace, &summary.id, &row).await?;
    }
    catalog.set_snapshot_index_synced(workspace, Some(started)).await
}

/// How long `status` and the freshness watch trust a workspace's snapshot index before it
/// is compared with the repository again. What any member of the fleet commits or deletes
/// is in the index at once; the comparison finds what changed behind the catalog's back
/// (a manifest damaged or deleted by hand), at the cost of listing the repository.
pub const INDEX_RECHECK: std::time::Duration = std::time::Duration::from_secs(3600);

/// Compares the snapshot indexes of `synced` (workspace, when its index was last compared)
/// with the repository: those never compared now, 4 at once, returning each one's result;
/// those compared longer than [`INDEX_RECHECK`] ago in the background. Without an identity
/// (manifests cannot be read), none.
pub async fn compare_indexes(
    core: &Core,
    catalog: &crate::catalog::Catalog,
    synced: &[(String, Option<chrono::DateTime<Utc>>)],
) -> Vec<(String, Result<()>)> {
    if !core.has_identities() {
        return Vec::new();
    }
    let now = Utc::now();
    let old = |at: &chrono::DateTime<Utc>| (now - *at).to_std().is_ok_and(|age| age > INDEX_RECHECK);
    let recheck: Vec<(String, _)> = synced
        .iter()
        .filter(|(_, at)| at.as_ref().is_some_and(old))
        .filter_map(|(ws, _)| core.claim_index_sync(ws).map(|claim| (ws.clone(), claim)))
        .collect();
    if !recheck.is_empty() {
        let core = core.clone();
        tokio::spawn(async move {
            let Ok(catalog) = core.catalog().await else { return };
            for chunk in recheck.chunks(4) {
                let runs = chunk.iter().map(|(workspace, _claim)| compare_one(&core, catalog, workspace));
                for (workspace, result) in futures::future::join_all(runs).await {
                    if let Err(e) = result {
                        tracing::warn!(workspace = %workspace, error = %e.report(),
                            "the snapshot index was not compared with the repository");
                    }
                }
            }
        });
    }
    let never: Vec<&String> = synced.iter().filter(|(_, at)| at.is_none()).map(|(ws, _)| ws).collect();
    let mut compared = Vec::new();
    for chunk in never.chunks(4) {
        let runs = chunk.iter().map(|workspace| {
            let claim = core.claim_index_sync(workspace);
            async move {
                let _claim = claim;
                compare_one(core, catalog, workspace).await
            }
        });
        compared.extend(futures::future::join_all(runs).await);
    }
    compared
}

/// [`sync_index`] of one workspace, named.
async fn compare_one(core: &Core, catalog: &crate::catalog::Catalog, workspace: &str) -> (String, Result<()>) {
    (workspace.to_string(), sync_index(core, catalog, workspace).await)
}

/// Adds a snapshot this host just committed to the catalog's index (when there is a catalog).
pub async fn index_committed(core: &Core, manifest: &Manifest) {
    if let Ok(catalog) = core.catalog().await {
        let row = serde_json::to_string(&SnapshotSummary::of(manifest)).expect("a summary serializes");
        if let Err(e) = catalog.index_snapshot(&manifest.workspace, &manifest.id, &row).await {
            tracing::warn!(error = %e.report(), "the snapshot is committed but not in the catalog's index yet");
        }
    }
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
