//! What prune drops beside the repository: databases switches moved aside, exports.

#[allow(clippy::wildcard_imports)]
use super::*;

/// Drops the databases switches moved aside longer ago than the workspace's keep-replaced
/// (on the workspace's server; one that is gone already is only forgotten).
pub(super) async fn prune_replaced(core: &Core, opts: &PruneOptions, now: DateTime<Utc>) -> Result<Vec<String>> {
    let ws = core.workspace(&opts.workspace)?;
    let keep = ws.config.keep_replaced.unwrap_or(KEEP_REPLACED_DEFAULT);
    let keep = chrono::Duration::from_std(keep).unwrap_or(chrono::Duration::MAX);
    let catalog = core.catalog().await?;
    let mut dropped = Vec::new();
    let live = ws.conn()?.database().unwrap_or_default();
    for (database, replaced_at) in catalog.replaced(&opts.workspace).await? {
        // Never the live one, whatever the catalog says.
        if database == live || now.signed_duration_since(replaced_at) < keep {
            continue;
        }
        if !opts.dry_run {
            let server = ws.conn()?;
            crate::restore::database::drop_database(&server.with_database(&database)).await?;
            catalog.forget_replaced(&opts.workspace, &database).await?;
            tracing::info!(workspace = %opts.workspace, database, "dropped a replaced database (keep-replaced)");
        }
        dropped.push(database);
    }
    Ok(dropped)
}

/// Removes the workspace's exports made over the API whose file is older than
/// `[api] keep-exports` (a link to one then answers 404); returns their ids.
///
/// Errors: `Internal` for a folder that cannot be read or a file that cannot be removed.
pub(super) fn prune_exports(core: &Core, opts: &PruneOptions, now: DateTime<Utc>) -> Result<Vec<String>> {
    let keep = core.config.config.api.keep_exports.unwrap_or(KEEP_EXPORTS_DEFAULT);
    let keep = chrono::Duration::from_std(keep).unwrap_or(chrono::Duration::MAX);
    let dir = super::super::link::exports_dir(core, &opts.workspace)?;
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::from(e).context(format!("reading {}", dir.display()))),
    };
    let mut removed = Vec::new();
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        // Finished exports and the partial files of ones that were stopped.
        let Some(id) = name.strip_suffix(".tidemark").or_else(|| name.strip_suffix(".tidemark.partial")) else {
            continue;
        };
        let modified: DateTime<Utc> = entry.metadata()?.modified()?.into();
        if now.signed_duration_since(modified) < keep {
            continue;
        }
        if !opts.dry_run {
            fs_err::remove_file(entry.path())?;
            tracing::info!(workspace = %opts.workspace, export = id, "removed an export (keep-exports)");
        }
        removed.push(id.to_string());
    }
    removed.sort();
    Ok(removed)
}
