//! Object lock's part of a check: what ends its lock before tidemark stops counting on it.

#[allow(clippy::wildcard_imports)]
use super::*;

/// Object lock: the objects of a snapshot whose lock ends before its retention does (the
/// `keep-within` of its kind from when it was taken), so a holder of the bucket's
/// credentials could delete them while tidemark still counts on them.
///
/// Errors: `Unavailable`/`Config` for the store.
pub(super) async fn locks_short(
    core: &Core,
    manifest: &crate::repo::manifest::Manifest,
    problems: &mut Vec<String>,
) -> Result<()> {
    let Some(lock) = core.repo.object_lock() else { return Ok(()) };
    let Some(needed) =
        super::super::hold::snapshot_until(core, &manifest.workspace, manifest.kind, manifest.started_at)?
    else {
        return Ok(());
    };
    // Retention's end, without the margin the lock adds on top.
    let needed = needed - lock.margin;
    let wanted: Vec<(Key, Moment, &'static str)> = core
        .repo
        .list_all(&layout::snapshot_dir(&manifest.workspace, &manifest.id))
        .await?
        .into_iter()
        .map(|o| (o.key, needed, "objects"))
        .collect();
    for (_, short) in short_locks(core.repo.clone(), wanted).await? {
        let (key, until) = &short[0];
        problems.push(format!(
            "snapshot {}: {} of its objects end their lock before its retention does ({}); {key} {}. \
             `tidemark snapshot pin` extends them",
            manifest.id,
            short.len(),
            needed.to_rfc3339(),
            describe_lock(*until)
        ));
    }
    Ok(())
}

/// Object lock: what of the physical side must stay locked, and until when: each base
/// backup's tar for the PITR window from when it was taken, each WAL file for it from when
/// it was archived.
pub(super) fn pitr_lock_needs(
    workspace: &str,
    window: chrono::Duration,
    bases: &[base::BaseManifest],
    archived: &[archive::Archived],
) -> Result<Vec<(Key, chrono::DateTime<chrono::Utc>, &'static str)>> {
    let mut wanted = Vec::new();
    for b in bases {
        wanted.push((layout::base_tar(workspace, &b.id), b.started_at + window, "base backups"));
    }
    for a in archived {
        if !a.name.ends_with(".partial") {
            wanted.push((layout::wal_object(workspace, &a.name, &a.sha256)?, a.archived_at + window, "WAL files"));
        }
    }
    Ok(wanted)
}

/// The problems of [`pitr_lock_needs`]: objects locked for less than they are needed.
///
/// Errors: `Unavailable`/`Config` for the store.
pub(super) async fn pitr_locks_short(
    repo: crate::repo::Repository,
    workspace: String,
    wanted: Vec<(Key, Moment, &'static str)>,
) -> Result<Vec<String>> {
    Ok(short_locks(repo, wanted)
        .await?
        .into_iter()
        .map(|(what, short)| {
            let (key, until) = &short[0];
            format!(
                "{} {what} of workspace {workspace} end their lock before the PITR window lets them go; {key} {}",
                short.len(),
                describe_lock(*until)
            )
        })
        .collect())
}

/// Of `wanted` (an object, until when it must stay, what it is), those locked for less
/// time, by what they are, sorted by key; objects no longer stored are left out.
///
/// Errors: `Unavailable`/`Config` for the store.
pub(super) async fn short_locks(
    repo: crate::repo::Repository,
    wanted: Vec<(Key, Moment, &'static str)>,
) -> Result<std::collections::BTreeMap<&'static str, Vec<(Key, Option<Moment>)>>> {
    // The futures are made before the stream (a closure in the stream's type trips the
    // compiler's check that the whole check future is Send).
    let asked: Vec<_> = wanted
        .into_iter()
        .map(|(key, needed, what)| {
            let repo = repo.clone();
            async move {
                let until = repo.locked_until(&key).await;
                until.map(|until| (key, needed, what, until))
            }
        })
        .collect();
    let mut locks = futures::stream::iter(asked).buffer_unordered(16);
    let mut short: std::collections::BTreeMap<&'static str, Vec<(Key, Option<Moment>)>> = Default::default();
    while let Some(result) = locks.next().await {
        match result {
            Ok((key, needed, what, until)) if until.is_none_or(|u| u < needed) => {
                short.entry(what).or_default().push((key, until));
            }
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    for keys in short.values_mut() {
        keys.sort_by(|a, b| a.0.as_ref().cmp(b.0.as_ref()));
    }
    Ok(short)
}

pub(super) fn describe_lock(until: Option<Moment>) -> String {
    until.map_or("is not locked".to_string(), |u| format!("is locked only until {}", u.to_rfc3339()))
}
