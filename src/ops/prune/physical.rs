//! The physical side of retention: base backups and WAL outside the point-in-time window,
//! and leftovers of base backups that never committed.

#[allow(clippy::wildcard_imports)]
use super::*;

/// The physical side: base backups no moment of the PITR window needs (manifest first),
/// the WAL only they needed, and leftovers of base backups that never committed; WAL and
/// leftovers younger than the grace period stay.
pub(super) async fn prune_pitr(
    core: &Core,
    opts: &PruneOptions,
    policies: &[Policy],
    identities: &crate::keys::Identities,
    as_of: chrono::DateTime<chrono::Utc>,
    grace: chrono::Duration,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<PitrPruneReport> {
    use crate::wal::{archive, base};
    let ws = core.config.workspace(&opts.workspace)?;
    let copy_window = core.copy_name().map(|c| core.config.config.repository_named(Some(c))).transpose()?;
    let window = match copy_window.and_then(|c| c.pitr_window).or(ws.pitr_window) {
        Some(w) => chrono::Duration::from_std(w).unwrap_or(chrono::Duration::MAX),
        None => policies.iter().filter_map(|p| p.retention.keep_within).max().unwrap_or(chrono::Duration::days(3)),
    };
    let read = base::read_all(&core.repo, identities, &opts.workspace).await?;
    let bases = read.items;
    let archived = archive::list(&core.repo, &opts.workspace).await?;
    let mut plan = crate::wal::retention::plan(&bases, &archived, window, as_of);
    if !read.damaged.is_empty() {
        // What WAL a base backup that cannot be read needs is unknown: none is deleted.
        plan.wal_files.clear();
    }
    let mut report = PitrPruneReport {
        damaged: read.damaged.clone(),
        window: humantime::format_duration(window.to_std().unwrap_or_default()).to_string(),
        oldest_wal_kept: plan.oldest_wal_kept.clone(),
        ..Default::default()
    };
    for id in &plan.base_backups {
        if !opts.dry_run {
            let mut locked = 0;
            if !super::delete_unless_locked(core, &layout::base_manifest(&opts.workspace, id), &mut locked).await? {
                continue;
            }
            super::delete_unless_locked(core, &layout::base_tar(&opts.workspace, id), &mut locked).await?;
        }
        report.base_backups_deleted.push(id.clone());
    }
    let doomed: HashSet<&str> = plan.wal_files.iter().map(String::as_str).collect();
    for file in archived.iter().filter(|a| doomed.contains(a.name.as_str())) {
        if now.signed_duration_since(file.archived_at) < grace {
            report.wal_files_in_grace += 1;
            continue;
        }
        let key = layout::wal_object(&opts.workspace, &file.name, &file.sha256)?;
        let mut locked = 0;
        if !opts.dry_run && !super::delete_unless_locked(core, &key, &mut locked).await? {
            continue;
        }
        if let (false, Some(reach)) = (opts.dry_run, file.reach) {
            let marker = layout::wal_reach(&opts.workspace, &file.name, &file.sha256, reach.0)?;
            super::delete_unless_locked(core, &marker, &mut locked).await?;
        }
        report.wal_files_deleted += 1;
    }
    // A base backup that never committed (crashed) leaves a tar without a manifest.
    let committed: HashSet<&str> =
        bases.iter().map(|b| b.id.as_str()).chain(read.damaged.iter().map(|d| d.id.as_str())).collect();
    for object in core.repo.list(&layout::base_backups(&opts.workspace)).await? {
        let id = object.key.parts().nth(3).map(|p| p.as_ref().to_string()).unwrap_or_default();
        if committed.contains(id.as_str()) || now.signed_duration_since(object.modified) < grace {
            continue;
        }
        if !opts.dry_run {
            super::delete_unless_locked(core, &object.key, &mut 0).await?;
        }
    }
    Ok(report)
}
