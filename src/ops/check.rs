//! `check`: is everything a workspace's backups need still in the repository? Every
//! snapshot's objects and media (present, right size; with `--read-data` also decrypted
//! and hashed), every base backup's tar, and WAL continuity (gaps shrink the window); WAL
//! objects' header and last chunk are authenticated (their size is recorded nowhere); with
//! `--read-data` every WAL segment is also checked to hold the segment its name says.

use futures::StreamExt;
use serde::{Deserialize, Serialize};

use super::Core;
use crate::actor::Actor;
use crate::error::{Error, ErrorKind, Result};
use crate::repo::Key;
use crate::repo::layout::{self, SnapshotObject};
use crate::repo::pipeline::{Expect, ObjectStream, read_verified};
use crate::wal::{archive, base, window};

#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    pub workspace: String,
    pub snapshots: usize,
    pub base_backups: usize,
    pub wal_files: usize,
    pub objects_checked: u64,
    /// Objects whose content was read back and verified (`--read-data`).
    pub objects_read: u64,
    pub window: String,
    /// Signed records and WAL files by the public key that signed them (key rotation:
    /// which are still signed with an old key).
    pub signed_by: std::collections::BTreeMap<String, u64>,
    /// Records and WAL files accepted without a signature (`--allow-unsigned`).
    pub unsigned: u64,
    /// Everything wrong, one line each; empty when all is well.
    pub problems: Vec<String>,
}

/// What `check` takes.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CheckOptions {
    pub workspace: String,
    /// Also download, decrypt and hash every object.
    pub read_data: bool,
}

/// What a check job records as its end: problems found make it a failed job.
pub fn job_end(r: &CheckReport) -> crate::catalog::JobEnd {
    crate::catalog::JobEnd {
        error: (!r.problems.is_empty()).then(|| format!("{} problems: {}", r.problems.len(), r.problems.join("; "))),
        ..Default::default()
    }
}

/// [`check`] as a recorded job: problems found make it a failed job.
pub async fn check_recorded(core: &Core, opts: &CheckOptions, actor: &Actor) -> Result<CheckReport> {
    let spec = super::job::JobSpec {
        workspace: opts.workspace.clone(),
        operation: crate::operation::Operation::Check,
        kind: None,
    };
    super::job::recorded(core, actor, spec, |core| async move { check(&core, opts, actor).await }, job_end).await
}

/// Checks a workspace's backups. Problems are collected, not raised: the report names
/// each one. Errors: `Key` without an identity, `Unavailable` for the store.
pub async fn check(core: &Core, opts: &CheckOptions, _actor: &Actor) -> Result<CheckReport> {
    let (workspace, read_data) = (opts.workspace.as_str(), opts.read_data);
    core.workspace(workspace)?;
    let identities = core.identities()?;
    let store = &core.repo;
    let mut problems = Vec::new();
    let mut objects_checked = 0u64;
    let mut objects_read = 0u64;

    let present = async |key: &Key, size: Option<u64>, problems: &mut Vec<String>| -> Result<bool> {
        match core.repo.expect_stored(key, size).await {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == ErrorKind::Integrity => {
                problems.push(e.message().to_string());
                Ok(false)
            }
            Err(e) => Err(e),
        }
    };
    let drain = async |stream: Result<ObjectStream>| -> std::result::Result<(), Error> {
        let mut stream = stream?;
        while let Some(chunk) = stream.recv().await {
            chunk?;
        }
        Ok(())
    };

    let ids = core.repo.list_snapshot_ids(workspace).await?;
    let mut media = std::collections::BTreeMap::new();
    let descriptor = core.repo.descriptor().digest();
    let mut descriptor_edited = None;
    for id in &ids {
        let manifest = match core.repo.read_manifest(workspace, id, &identities).await {
            Ok(m) => m,
            Err(e) => {
                problems.push(format!("snapshot {id}: {}", e.report()));
                continue;
            }
        };
        if core.repo.object_lock().is_some() {
            locks_short(core, &manifest, &mut problems).await?;
        }
        if manifest.repository_digest.as_ref().is_some_and(|d| *d != descriptor) {
            descriptor_edited = Some(id.clone());
        }
        for entry in manifest.objects() {
            let key = SnapshotObject::key_for_name(workspace, id, &entry.name)?;
            objects_checked += 1;
            if present(&key, Some(entry.stored_size), &mut problems).await? && read_data {
                objects_read += 1;
                let stream = read_verified(store, &key, Expect::Entry(entry.clone()), &identities).await;
                if let Err(e) = drain(stream).await {
                    problems.push(format!("{key}: {}", e.message()));
                }
            }
        }
        for file in manifest.media.iter().flat_map(|m| m.files.iter()) {
            let known: &mut (u64, Option<u64>) = media.entry(file.sha256.clone()).or_insert((file.size, None));
            known.1 = known.1.or(file.stored_size);
        }
    }
    if let Some(id) = descriptor_edited {
        problems.push(format!(
            "repository.json was changed after snapshot {id} was taken (its id, recipients or options were \
             edited; it never changes after init): compare it with a copy, and restore it if it was tampered with"
        ));
    }
    for (sha256, (size, stored_size)) in &media {
        let key = layout::media_object(workspace, sha256)?;
        objects_checked += 1;
        if present(&key, *stored_size, &mut problems).await? && read_data {
            objects_read += 1;
            let expect = Expect::Content { sha256: sha256.clone(), size: Some(*size) };
            if let Err(e) = drain(read_verified(store, &key, expect, &identities).await).await {
                problems.push(format!("{key}: {}", e.message()));
            }
        }
    }

    let read = base::read_all(&core.repo, &identities, workspace).await?;
    for d in &read.damaged {
        problems.push(format!("base backup {}: its manifest cannot be read: {}", d.id, d.problem));
    }
    let bases = read.items;
    for b in &bases {
        objects_checked += 1;
        let key = layout::base_tar(workspace, &b.id);
        if present(&key, Some(b.tar.stored_size), &mut problems).await? && read_data {
            objects_read += 1;
            let stream = read_verified(store, &key, Expect::Entry(b.tar.clone()), &identities).await;
            if let Err(e) = drain(stream).await {
                problems.push(format!("{key}: {}", e.message()));
            }
        }
    }
    let archived = archive::list(&core.repo, workspace).await?;
    // A damaged history file is reported; the window is then computed without any.
    let histories = archive::histories(&core.repo, &identities, workspace, &archived).await.unwrap_or_else(|e| {
        problems.push(format!("{}; the window below does not follow timeline switches", e.report()));
        Default::default()
    });
    let window = window::compute(&bases, &archived, &histories);
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
    if !read_data {
        // A WAL object's stored size is recorded nowhere: instead its header and last chunk
        // are read and authenticated (a truncated or tail-damaged object fails).
        let mut tails = futures::stream::iter(archived.iter().cloned())
            .map(|a| {
                let (store, identities) = (store.clone(), identities.clone());
                async move {
                    let key = layout::wal_object(workspace, &a.name, &a.sha256)?;
                    crate::repo::pipeline::verify_tail(&store, &key, a.stored_size, &identities).await
                }
            })
            .buffer_unordered(4);
        while let Some(result) = tails.next().await {
            if let Err(e) = result {
                problems.push(e.report());
            }
        }
    }
    if read_data {
        // WAL contents: each object decrypts to the content its name promises.
        let mut reads = futures::stream::iter(archived.iter().cloned())
            .map(|a| {
                let (store, identities) = (store.clone(), identities.clone());
                async move {
                    let key = layout::wal_object(workspace, &a.name, &a.sha256)?;
                    let expect = Expect::Content { sha256: a.sha256.clone(), size: None };
                    let mut stream = read_verified(&store, &key, expect, &identities).await?;
                    // A segment must also be the segment its name says (a valid object
                    // in another segment's place passes the hash).
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
                        None => Ok::<_, Error>(()),
                    }
                }
            })
            .buffer_unordered(4);
        while let Some(result) = reads.next().await {
            objects_read += 1;
            if let Err(e) = result {
                problems.push(e.report());
            }
        }
    }
    objects_checked += archived.len() as u64;
    if core.repo.object_lock().is_some() {
        let wanted = pitr_lock_needs(workspace, super::hold::pitr_window(core, workspace)?, &bases, &archived)?;
        problems.extend(pitr_locks_short(core.repo.clone(), workspace.to_string(), wanted).await?);
    }
    // Signatures: who signed each record and WAL file (manifests that did not verify are
    // reported above, as unreadable).
    let mut signed_by = std::collections::BTreeMap::new();
    let mut unsigned = 0u64;
    let mut signed: Vec<(Key, Option<String>, bool)> = Vec::new();
    for id in &ids {
        signed.push((layout::manifest(workspace, id), None, false));
    }
    for b in &bases {
        signed.push((layout::base_manifest(workspace, &b.id), None, false));
    }
    for folder in [layout::restore_points(workspace), layout::drill_reports(workspace)] {
        for o in core.repo.list(&folder).await? {
            signed.push((o.key, None, true));
        }
    }
    for a in &archived {
        signed.push((layout::wal_object(workspace, &a.name, &a.sha256)?, Some(a.sha256.clone()), true));
    }
    let mut verified = futures::stream::iter(signed)
        .map(|(key, sha256, report)| async move {
            let result = core.repo.signed_by(&key, sha256.as_deref()).await;
            (report, result)
        })
        .buffer_unordered(8);
    while let Some((report, result)) = verified.next().await {
        match result {
            Ok(crate::signing::Signed::By(signer)) => *signed_by.entry(signer.to_string()).or_insert(0) += 1,
            Ok(crate::signing::Signed::Unsigned) => unsigned += 1,
            Err(e) if e.kind() == ErrorKind::Integrity => {
                if report {
                    problems.push(e.message().to_string());
                }
            }
            Err(e) => return Err(e),
        }
    }
    // Uploads a killed process never finished, older than prune's default grace period
    // (younger ones may still be under way).
    let grace = chrono::Duration::from_std(super::prune::DEFAULT_GRACE).unwrap_or_default();
    for stale in core.repo.stale_uploads(&layout::workspace(workspace), chrono::Utc::now() - grace).await? {
        let size = stale.size.map(|s| format!("{s} bytes, ")).unwrap_or_default();
        problems.push(format!(
            "{}: an upload that never completed ({size}since {}); `tidemark prune` removes it",
            stale.what,
            stale.modified.to_rfc3339()
        ));
    }
    Ok(CheckReport {
        workspace: workspace.to_string(),
        snapshots: ids.len(),
        base_backups: bases.len(),
        wal_files: archived.len(),
        objects_checked,
        objects_read,
        window: window.describe(),
        signed_by,
        unsigned,
        problems,
    })
}

/// Object lock: the objects of a snapshot whose lock ends before its retention does (the
/// `keep-within` of its kind from when it was taken), so a holder of the bucket's
/// credentials could delete them while tidemark still counts on them.
///
/// Errors: `Unavailable`/`Config` for the store.
async fn locks_short(
    core: &Core,
    manifest: &crate::repo::manifest::Manifest,
    problems: &mut Vec<String>,
) -> Result<()> {
    let Some(lock) = core.repo.object_lock() else { return Ok(()) };
    let Some(needed) = super::hold::snapshot_until(core, &manifest.workspace, manifest.kind, manifest.started_at)?
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

/// A point in time (UTC).
type Moment = chrono::DateTime<chrono::Utc>;

/// Object lock: what of the physical side must stay locked, and until when: each base
/// backup's tar for the PITR window from when it was taken, each WAL file for it from when
/// it was archived.
fn pitr_lock_needs(
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
async fn pitr_locks_short(
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
async fn short_locks(
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

fn describe_lock(until: Option<Moment>) -> String {
    until.map_or("is not locked".to_string(), |u| format!("is locked only until {}", u.to_rfc3339()))
}
