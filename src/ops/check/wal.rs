//! The archived WAL's part of a check: continuity, each object's tail or content, locks.

#[allow(clippy::wildcard_imports)]
use super::*;

/// The archived WAL: continuity (the window and its gaps), each object's tail (or, with
/// `read_data`, its whole content and the segment it holds), and its locks.
pub(super) async fn wal(
    tally: &mut Tally<'_>,
    bases: &[base::BaseManifest],
) -> Result<(Vec<archive::Archived>, window::Window)> {
    let (core, workspace) = (tally.core, tally.workspace);
    let archived = archive::list(&core.repo, workspace).await?;
    // A damaged history file is reported; the window is then computed without any.
    let histories = match archive::histories(&core.repo, &tally.identities, workspace, &archived).await {
        Ok(h) => h,
        Err(e) => {
            tally.problems.push(format!("{}; the window below does not follow timeline switches", e.report()));
            Default::default()
        }
    };
    let window = window::compute(bases, &archived, &histories);
    window_problems(&window, &mut tally.problems);
    let (store, identities, read_data) = (&core.repo, &tally.identities, tally.read_data);
    let mut results = futures::stream::iter(archived.iter().cloned())
        .map(|a| async move {
            let key = layout::wal_object(workspace, &a.name, &a.sha256)?;
            match read_data {
                // A WAL object's stored size is recorded nowhere: instead its header and
                // last chunk are read and authenticated (a truncated or tail-damaged object
                // fails).
                false => crate::repo::pipeline::verify_tail(store, &key, a.stored_size, identities).await,
                true => read_segment(store, identities, &key, &a).await,
            }
        })
        .buffer_unordered(4);
    let mut problems = Vec::new();
    let mut read = 0;
    while let Some(result) = results.next().await {
        read += u64::from(read_data);
        if let Err(e) = result {
            problems.push(e.report());
        }
    }
    drop(results);
    tally.problems.extend(problems);
    tally.read += read;
    tally.checked += archived.len() as u64;
    if core.repo.object_lock().is_some() {
        let wanted = pitr_lock_needs(workspace, super::super::hold::pitr_window(core, workspace)?, bases, &archived)?;
        tally.problems.extend(pitr_locks_short(core.repo.clone(), workspace.to_string(), wanted).await?);
    }
    Ok((archived, window))
}

/// What the window says is missing: gaps, timelines no base backup reaches, base backups
/// without the WAL that makes them consistent.
pub(super) fn window_problems(window: &window::Window, problems: &mut Vec<String>) {
    for gap in &window.gaps {
        problems.push(format!(
            "WAL missing on timeline {}: {} to {} ({} segments); the point-in-time window ends before it",
            gap.timeline, gap.first_missing, gap.last_missing, gap.segments
        ));
    }
    for timeline in &window.unfollowed_timelines {
        problems.push(format!(
            "WAL of timeline {timeline} is archived (a promoted standby?), but no base backup's recovery \
             reaches it (a history file is missing, or the base backups are on another branch): moments \
             on it cannot be restored; take a base backup with `tidemark basebackup`"
        ));
    }
    for range in window.base_backups.iter().filter(|r| r.to.is_none()) {
        problems.push(format!("base backup {}: the WAL it needs to become consistent is missing", range.id));
    }
}

/// A WAL object read whole: it decrypts to the content its name promises, and a segment is
/// the segment its name says (a valid object in another segment's place passes the hash).
pub(super) async fn read_segment(
    store: &crate::repo::Repository,
    identities: &crate::keys::Identities,
    key: &Key,
    a: &archive::Archived,
) -> Result<()> {
    let expect = Expect::Content { sha256: a.sha256.clone(), size: None };
    let mut stream = read_verified(store, key, expect, identities).await?;
    let mut content = crate::wal::SegmentContent::for_name(&a.name);
    while let Some(chunk) = stream.recv().await {
        let chunk = chunk.map_err(|e| e.context(key.to_string()))?;
        if let Some(content) = &mut content {
            content.feed(&chunk);
        }
    }
    match content {
        // A streamed partial shipped before its first page was written.
        Some(c) if a.name.ends_with(".partial") && c.is_blank() => Ok(()),
        Some(c) => c.finish().map_err(|e| e.context(key.to_string())),
        None => Ok(()),
    }
}
