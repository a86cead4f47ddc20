//! Who signed what, and uploads never finished.

#[allow(clippy::wildcard_imports)]
use super::*;

/// Who signed each record and WAL file (manifests that did not verify are reported by
/// [`snapshots`] and [`base_backups`], as unreadable): by signer, and how many are unsigned.
pub(super) async fn signatures(
    tally: &mut Tally<'_>,
    ids: &[String],
    bases: &[base::BaseManifest],
    archived: &[archive::Archived],
) -> Result<(std::collections::BTreeMap<String, u64>, u64)> {
    let (core, workspace) = (tally.core, tally.workspace);
    let mut signed: Vec<(Key, Option<String>, bool)> = Vec::new();
    for id in ids {
        signed.push((layout::manifest(workspace, id), None, false));
    }
    for b in bases {
        signed.push((layout::base_manifest(workspace, &b.id), None, false));
    }
    for folder in [layout::restore_points(workspace), layout::drill_reports(workspace)] {
        for o in core.repo.list(&folder).await? {
            signed.push((o.key, None, true));
        }
    }
    for a in archived {
        signed.push((layout::wal_object(workspace, &a.name, &a.sha256)?, Some(a.sha256.clone()), true));
    }
    let mut verified = futures::stream::iter(signed)
        .map(|(key, sha256, report)| async move {
            let result = core.repo.signed_by(&key, sha256.as_deref()).await;
            (report, result)
        })
        .buffer_unordered(8);
    let (mut signed_by, mut unsigned) = (std::collections::BTreeMap::new(), 0u64);
    while let Some((report, result)) = verified.next().await {
        match result {
            Ok(crate::signing::Signed::By(signer)) => *signed_by.entry(signer.to_string()).or_insert(0) += 1,
            Ok(crate::signing::Signed::Unsigned) => unsigned += 1,
            Err(e) if e.kind() == ErrorKind::Integrity => {
                if report {
                    tally.problems.push(e.message().to_string());
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok((signed_by, unsigned))
}

/// Uploads a killed process never finished, older than prune's default grace period
/// (younger ones may still be under way).
pub(super) async fn stale_uploads(tally: &mut Tally<'_>) -> Result<()> {
    let grace = chrono::Duration::from_std(super::super::prune::DEFAULT_GRACE).unwrap_or_default();
    let since = chrono::Utc::now() - grace;
    for stale in tally.core.repo.stale_uploads(&layout::workspace(tally.workspace), since).await? {
        let size = stale.size.map(|s| format!("{s} bytes, ")).unwrap_or_default();
        tally.problems.push(format!(
            "{}: an upload that never completed ({size}since {}); `tidemark prune` removes it",
            stale.what,
            stale.modified.to_rfc3339()
        ));
    }
    Ok(())
}
