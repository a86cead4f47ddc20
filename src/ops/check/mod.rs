//! `check`: is everything a workspace's backups need still in the repository? Every
//! snapshot's objects and media (present, right size; with `--read-data` also decrypted
//! and hashed), every base backup's tar, and WAL continuity (gaps shrink the window); WAL
//! objects' header and last chunk are authenticated (their size is recorded nowhere); with
//! `--read-data` every WAL segment is also checked to hold the segment its name says.

use futures::StreamExt;
use serde::{Deserialize, Serialize};

use super::Core;
use crate::actor::Actor;
use crate::error::{ErrorKind, Result};
use crate::repo::Key;
use crate::repo::layout::{self, SnapshotObject};
use crate::repo::pipeline::{Expect, ObjectStream, read_verified};
use crate::wal::{archive, base, window};

mod records;
mod wal;

use records::{signatures, stale_uploads};
use wal::wal;
mod locks;
use locks::{locks_short, pitr_lock_needs, pitr_locks_short};

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
    /// A copy (`[copies.NAME]`) to check instead of the primary.
    #[serde(default)]
    pub repository: Option<String>,
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

/// What a check found so far, phase by phase.
struct Tally<'a> {
    core: &'a Core,
    workspace: &'a str,
    identities: crate::keys::Identities,
    read_data: bool,
    problems: Vec<String>,
    checked: u64,
    read: u64,
}

impl Tally<'_> {
    /// One object: present with `size` (when known), and with `read_data` read back as
    /// `expect` says. What is wrong is a problem; only the store failing is an error.
    async fn object(&mut self, key: &Key, size: Option<u64>, expect: Expect) -> Result<()> {
        self.checked += 1;
        match self.core.repo.expect_stored(key, size).await {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::Integrity => {
                self.problems.push(e.message().to_string());
                return Ok(());
            }
            Err(e) => return Err(e),
        }
        if self.read_data {
            self.read += 1;
            let stream = read_verified(&self.core.repo, key, expect, &self.identities).await;
            if let Err(e) = drain(stream).await {
                self.problems.push(format!("{key}: {}", e.message()));
            }
        }
        Ok(())
    }
}

async fn drain(stream: Result<ObjectStream>) -> Result<()> {
    let mut stream = stream?;
    while let Some(chunk) = stream.recv().await {
        chunk?;
    }
    Ok(())
}

/// Checks a workspace's backups. Problems are collected, not raised: the report names
/// each one. Errors: `Key` without an identity, `Unavailable` for the store.
pub async fn check(core: &Core, opts: &CheckOptions, _actor: &Actor) -> Result<CheckReport> {
    let core = &core.on_repository(opts.repository.as_deref()).await?;
    let workspace = opts.workspace.as_str();
    core.workspace(workspace)?;
    let identities = core.identities()?.clone();
    let mut tally =
        Tally { core, workspace, identities, read_data: opts.read_data, problems: Vec::new(), checked: 0, read: 0 };
    let ids = core.repo.list_snapshot_ids(workspace).await?;
    snapshots(&mut tally, &ids).await?;
    let bases = base_backups(&mut tally).await?;
    let (archived, window) = wal(&mut tally, &bases).await?;
    let (signed_by, unsigned) = signatures(&mut tally, &ids, &bases, &archived).await?;
    stale_uploads(&mut tally).await?;
    Ok(CheckReport {
        workspace: workspace.to_string(),
        snapshots: ids.len(),
        base_backups: bases.len(),
        wal_files: archived.len(),
        objects_checked: tally.checked,
        objects_read: tally.read,
        window: window.describe(),
        signed_by,
        unsigned,
        problems: tally.problems,
    })
}

/// Every snapshot's manifest, objects and locks, then the media they share (each file once).
async fn snapshots(tally: &mut Tally<'_>, ids: &[String]) -> Result<()> {
    let (core, workspace) = (tally.core, tally.workspace);
    let mut media = std::collections::BTreeMap::new();
    let descriptor = core.repo.descriptor().digest();
    let mut descriptor_edited = None;
    for id in ids {
        let manifest = match core.repo.read_manifest(workspace, id, &tally.identities).await {
            Ok(m) => m,
            Err(e) => {
                tally.problems.push(format!("snapshot {id}: {}", e.report()));
                continue;
            }
        };
        if core.repo.object_lock().is_some() {
            locks_short(core, &manifest, &mut tally.problems).await?;
        }
        if manifest.repository_digest.as_ref().is_some_and(|d| *d != descriptor) {
            descriptor_edited = Some(id.clone());
        }
        for entry in manifest.objects() {
            let key = SnapshotObject::key_for_name(workspace, id, &entry.name)?;
            tally.object(&key, Some(entry.stored_size), Expect::Entry(entry.clone())).await?;
        }
        for file in manifest.media.iter().flat_map(|m| m.files.iter()) {
            let known: &mut (u64, Option<u64>) = media.entry(file.sha256.clone()).or_insert((file.size, None));
            known.1 = known.1.or(file.stored_size);
        }
    }
    if let Some(id) = descriptor_edited {
        tally.problems.push(format!(
            "repository.json was changed after snapshot {id} was taken (its id, recipients or options were \
             edited; it never changes after init): compare it with a copy, and restore it if it was tampered with"
        ));
    }
    for (sha256, (size, stored_size)) in media {
        let key = layout::media_object(workspace, &sha256)?;
        tally.object(&key, stored_size, Expect::Content { sha256, size: Some(size) }).await?;
    }
    Ok(())
}

/// Every base backup's manifest and tar.
async fn base_backups(tally: &mut Tally<'_>) -> Result<Vec<base::BaseManifest>> {
    let read = base::read_all(&tally.core.repo, &tally.identities, tally.workspace).await?;
    for d in &read.damaged {
        tally.problems.push(format!("base backup {}: its manifest cannot be read: {}", d.id, d.problem));
    }
    for b in &read.items {
        let key = layout::base_tar(tally.workspace, &b.id);
        tally.object(&key, Some(b.tar.stored_size), Expect::Entry(b.tar.clone())).await?;
    }
    Ok(read.items)
}

/// A point in time (UTC).
type Moment = chrono::DateTime<chrono::Utc>;
