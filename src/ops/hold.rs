//! How long object lock holds what an operation writes: a snapshot's objects for the
//! `keep-within` of the policy that keeps its kind, WAL and base backups for the PITR
//! window, anything else for the longest `keep-within` of any policy; each plus
//! `repository.lock-margin`. The repository applies the locks (see `repo::object_lock`).

use chrono::{DateTime, Duration, Utc};

use super::Core;
use crate::config::LoadedConfig;
use crate::error::Result;
use crate::repo::ObjectLock;
use crate::repo::manifest::{Manifest, SnapshotKind};
use crate::schedule::policy::{Policy, policies_for};

/// Used when no policy says how long anything is kept: the built-in manual retention.
const FALLBACK: i64 = 90;

fn keep_within(policies: &[Policy], kind: Option<SnapshotKind>) -> Option<Duration> {
    let of = |k: SnapshotKind| policies.iter().find(|p| p.kind == Some(k)).and_then(|p| p.retention.keep_within);
    match kind {
        // Kept like a manual snapshot unless a policy says otherwise.
        Some(SnapshotKind::PreRestore) => of(SnapshotKind::PreRestore).or_else(|| of(SnapshotKind::Manual)),
        Some(k) => of(k),
        None => policies.iter().filter_map(|p| p.retention.keep_within).max(),
    }
}

/// The repository-wide hold: the longest `keep-within` (or PITR window) of any workspace.
pub fn default_hold(config: &LoadedConfig, margin: Duration) -> Duration {
    let mut longest = None::<Duration>;
    for (name, ws) in &config.config.workspaces {
        let policies = policies_for(config, name).unwrap_or_default();
        let window = ws.pitr_window.and_then(|w| Duration::from_std(w).ok());
        longest = longest.max(keep_within(&policies, None)).max(window);
    }
    longest.unwrap_or(Duration::days(FALLBACK)) + margin
}

/// How long a snapshot of `kind` taken at `taken` must stay: its retention, plus the margin
/// (`None` without object lock).
pub fn snapshot_until(
    core: &Core,
    workspace: &str,
    kind: SnapshotKind,
    taken: DateTime<Utc>,
) -> Result<Option<DateTime<Utc>>> {
    let Some(lock) = core.repo.object_lock() else { return Ok(None) };
    let policies = policies_for(&core.config, workspace)?;
    let within = keep_within(&policies, Some(kind)).unwrap_or(Duration::days(FALLBACK));
    Ok(Some(taken + within + lock.margin))
}

/// How long WAL and base backups written now must stay: the PITR window (default: the
/// longest keep-within of the workspace's policies), plus the margin.
pub fn pitr_until(core: &Core, workspace: &str) -> Result<Option<DateTime<Utc>>> {
    let Some(lock) = core.repo.object_lock() else { return Ok(None) };
    Ok(Some(Utc::now() + pitr_window(core, workspace)? + lock.margin))
}

/// The PITR window of a workspace: `pitr-window`, else its longest `keep-within`.
pub fn pitr_window(core: &Core, workspace: &str) -> Result<Duration> {
    let ws = core.config.workspace(workspace)?;
    Ok(match ws.pitr_window.and_then(|w| Duration::from_std(w).ok()) {
        Some(w) => w,
        None => keep_within(&policies_for(&core.config, workspace)?, None).unwrap_or(Duration::days(FALLBACK)),
    })
}

/// `core` with its writes locked until `until` (unchanged for `None`).
pub fn locking(core: &Core, until: Option<DateTime<Utc>>) -> Core {
    match until {
        Some(t) => core.with_repo(core.repo.locking_until(t)),
        None => core.clone(),
    }
}

/// Extends the locks of everything a snapshot consists of to `until`: its folder (objects,
/// manifest, signature) and its media. Returns how many locks moved.
///
/// Errors: those of [`crate::repo::Repository::extend_lock`].
pub async fn extend_snapshot(
    core: &Core,
    manifest: Option<&Manifest>,
    workspace: &str,
    id: &str,
    until: DateTime<Utc>,
) -> Result<u64> {
    if core.repo.object_lock().is_none() {
        return Ok(0);
    }
    let mut keys: Vec<crate::repo::Key> = core
        .repo
        .list_all(&crate::repo::layout::snapshot_dir(workspace, id))
        .await?
        .into_iter()
        .map(|o| o.key)
        .collect();
    let mut media = std::collections::BTreeSet::new();
    for file in manifest.iter().flat_map(|m| m.media.iter().flat_map(|x| x.files.iter())) {
        if media.insert(file.sha256.clone()) {
            keys.push(crate::repo::layout::media_object(workspace, &file.sha256)?);
        }
    }
    keys.push(crate::repo::layout::descriptor());
    extend_all(core, keys, until).await
}

/// After base backup `new_id`: the moments between the previous base backup and this one
/// are restored from the previous base backup and the WAL archived since it began, and
/// they stay in the PITR window until `until`; their locks are extended to it. Returns how
/// many moved.
///
/// Errors: those of [`crate::repo::Repository::extend_lock`] and of listing.
pub async fn extend_for_base(core: &Core, workspace: &str, new_id: &str, until: DateTime<Utc>) -> Result<u64> {
    use crate::repo::layout;
    if core.repo.object_lock().is_none() {
        return Ok(0);
    }
    let objects = core.repo.list_all(&layout::base_backups(workspace)).await?;
    let previous = objects
        .iter()
        .filter_map(|o| o.key.parts().nth(3).map(|p| p.as_ref().to_string()))
        .filter(|id| id.as_str() < new_id)
        .max();
    let Some(previous) = previous else { return Ok(0) };
    // Ids begin with their UTC start second (see `layout::new_snapshot_id`).
    let Some(began) = previous
        .get(..16)
        .and_then(|t| chrono::NaiveDateTime::parse_from_str(t, "%Y%m%dT%H%M%SZ").ok())
        .map(|t| t.and_utc() - Duration::minutes(1))
    else {
        return Ok(0);
    };
    let mut keys: Vec<crate::repo::Key> = objects
        .into_iter()
        .filter(|o| o.key.parts().nth(3).is_some_and(|p| p.as_ref() == previous))
        .map(|o| o.key)
        .collect();
    for a in crate::wal::archive::list(&core.repo, workspace).await? {
        if a.archived_at >= began && !a.name.ends_with(".partial") {
            let key = layout::wal_object(workspace, &a.name, &a.sha256)?;
            keys.push(layout::signature(&key));
            keys.push(key);
        }
    }
    extend_all(core, keys, until).await
}

/// Extends the locks of `keys` to `until`, 16 at a time; a key that is not stored (the
/// signature of a WAL file written before tidemark signed) is skipped. Returns how many moved.
///
/// Errors: those of [`crate::repo::Repository::extend_lock`].
async fn extend_all(core: &Core, keys: Vec<crate::repo::Key>, until: DateTime<Utc>) -> Result<u64> {
    use futures::StreamExt;
    let mut moved = 0;
    let mut extended = futures::stream::iter(keys)
        .map(|key| async move {
            match core.repo.extend_lock(&key, until).await {
                Err(e) if e.kind() == crate::error::ErrorKind::NotFound => Ok(false),
                other => other,
            }
        })
        .buffer_unordered(16);
    while let Some(result) = extended.next().await {
        moved += u64::from(result?);
    }
    Ok(moved)
}

/// The object-lock settings a config asks for, with the repository-wide hold.
pub fn settings(config: &LoadedConfig) -> Option<ObjectLock> {
    settings_of(config, &config.config.repository)
}

/// [`settings`] of one repository table (`[repository]` or a copy's).
pub fn settings_of(config: &LoadedConfig, repository: &crate::config::RepositoryConfig) -> Option<ObjectLock> {
    let mode = repository.object_lock?;
    let margin = Duration::from_std(repository.lock_margin.unwrap_or(crate::config::DEFAULT_LOCK_MARGIN))
        .unwrap_or(Duration::days(7));
    Some(ObjectLock { mode, hold: default_hold(config, margin), margin })
}
