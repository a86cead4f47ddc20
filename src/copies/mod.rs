//! Copies (3-2-1): what the primary repository holds of a workspace and a copy lacks goes
//! over, each object checked on the way (`repo::pipeline::copy_object`) and in the order
//! that keeps the copy whole at every moment: a WAL file after its signature, a base
//! backup's manifest after its tar, a snapshot's manifest after its media and objects, a
//! record after its signature. What is already in the copy is not sent again, so a copy
//! that was stopped resumes where it was; a damaged source object is named, and what needs
//! it (its snapshot or base backup) is not committed in the copy.
//!
//! A copy with recipients of its own gets every object decrypted and encrypted again to
//! them (`repo::pipeline::reseal_object`), and manifests and records written anew, with
//! what the copy stores recorded and signed by the signing key: a stolen primary identity
//! does not open it, and its own identity reads it alone.

use std::collections::{HashMap, HashSet};

use futures::StreamExt;
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use crate::error::{Error, ErrorKind, Result};
use crate::keys::{Identities, Recipients};
use crate::progress::Progress;
use crate::repo::layout::{self, SnapshotObject};
use crate::repo::manifest::{Manifest, ObjectEntry};
use crate::repo::pipeline::{Check, Resealed, copy_object, reseal_object};
use crate::repo::{Key, Repository};
use crate::wal::{archive, base};

/// Objects copied at once.
const PARALLEL: usize = 4;

/// What one copy of a workspace did.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct CopyTally {
    /// Snapshots, base backups and WAL files the copy received now.
    pub snapshots: u64,
    pub base_backups: u64,
    pub wal_files: u64,
    /// Restore points and pins.
    pub records: u64,
    /// Objects written, and their bytes (stored, encrypted).
    pub objects: u64,
    pub bytes: u64,
    /// What the copy already had and was not sent again: objects, and snapshots, base
    /// backups and WAL files (each counted once, however many objects it has).
    pub already_there: u64,
    /// What could not be copied, one line each (a damaged source object is named).
    pub problems: Vec<String>,
}

/// What became of one record.
enum Sent {
    Now,
    There,
    /// It could not be copied: why.
    Not(String),
}

/// One copy run of a workspace: the repositories, what the copy has, and the tally.
struct Run<'a> {
    from: &'a Repository,
    to: &'a Repository,
    identities: &'a Identities,
    workspace: &'a str,
    progress: &'a Progress,
    stop: &'a CancellationToken,
    reseal: Option<&'a Recipients>,
    have: HashSet<String>,
    /// Re-sealing: what the copy's manifests record of the objects it received, and the
    /// stored sizes of media it received.
    entries: HashMap<String, ObjectEntry>,
    sizes: HashMap<String, u64>,
    tally: CopyTally,
}

/// A manifest a copy commits once what it names is there.
enum Commit {
    Snapshot(Box<Manifest>),
    Base(Box<base::BaseManifest>),
}

/// A copy of one workspace: where from, where to, the identity that reads the source's
/// manifests, the copy's own recipients if it has them, and where it reports and hears it
/// should stop.
pub struct Transfer<'a> {
    pub from: &'a Repository,
    pub to: &'a Repository,
    pub identities: &'a Identities,
    pub workspace: &'a str,
    /// `Some`: the copy's own recipients, to which every object is re-sealed; `None`: the
    /// copy holds the source's objects byte for byte.
    pub reseal: Option<&'a Recipients>,
    pub progress: &'a Progress,
    pub stop: &'a CancellationToken,
}

impl<'a> Transfer<'a> {
    /// Copies what `from` holds of the workspace and `to` lacks. Problems with single
    /// objects are collected in the tally; only a store failing (or the stop signal) is an
    /// error.
    ///
    /// Errors: `Unavailable` for either store; `Interrupted` when stopped; `Key` when the
    /// identity cannot read the source's manifests.
    pub async fn everything(self) -> Result<CopyTally> {
        let mut run = self.start(layout::workspace(self.workspace)).await?;
        self.progress.set_message("WAL");
        run.wal().await?;
        self.progress.set_message("base backups");
        run.base_backups().await?;
        self.progress.set_message("snapshots");
        run.snapshots().await?;
        self.progress.set_message("restore points and pins");
        run.records().await?;
        Ok(run.tally)
    }

    /// Only the archived WAL (and history files, and streamed partials) `to` lacks: what
    /// keeps a copy's point-in-time window close to the primary's between copies.
    ///
    /// Errors: those of [`Self::everything`].
    pub async fn wal(self) -> Result<CopyTally> {
        let mut run = self.start(layout::wal_dir(self.workspace)).await?;
        run.wal().await?;
        Ok(run.tally)
    }

    /// A run knowing what the copy holds below `prefix`.
    async fn start(&self, prefix: Key) -> Result<Run<'a>> {
        let have = self.to.list(&prefix).await?.into_iter().map(|o| o.key.to_string()).collect();
        let Transfer { from, to, identities, workspace, reseal, progress, stop } = *self;
        let (entries, sizes, tally) = (HashMap::new(), HashMap::new(), CopyTally::default());
        Ok(Run { from, to, identities, workspace, progress, stop, reseal, have, entries, sizes, tally })
    }
}

impl Run<'_> {
    fn stopped(&self) -> Result<()> {
        if self.stop.is_cancelled() {
            return Err(Error::new(ErrorKind::Interrupted, "the copy was stopped; run it again to resume"));
        }
        Ok(())
    }

    /// Copies objects (at most [`PARALLEL`] at once) that the copy lacks. Returns the
    /// problems (damaged or missing source objects); counts what went over.
    async fn objects(&mut self, wanted: Vec<(Key, Check)>) -> Result<Vec<String>> {
        self.stopped()?;
        let (from, to, identities, reseal) = (self.from, self.to, self.identities, self.reseal);
        let asked = wanted.len();
        let (there, missing): (Vec<_>, Vec<_>) = wanted.into_iter().partition(|(k, _)| self.have.contains(k.as_ref()));
        self.tally.already_there += (asked - missing.len()) as u64;
        let mut results = futures::stream::iter(missing)
            .map(|(key, check)| async move {
                let result = match (reseal, &check) {
                    (Some(recipients), Check::Stored(_) | Check::Content { .. }) => {
                        reseal_object(from, to, &key, &check, identities, recipients).await
                    }
                    _ => copy_object(from, to, &key, &check, Some(identities)).await.map(Resealed::Unhashed),
                };
                (key, check, result)
            })
            .buffer_unordered(PARALLEL);
        let mut problems = Vec::new();
        let mut arrived_before = there;
        while let Some((key, check, result)) = results.next().await {
            match result {
                Ok(done) => {
                    let bytes = match done {
                        Resealed::Entry(entry) => {
                            let bytes = entry.stored_size;
                            self.entries.insert(key.to_string(), entry);
                            bytes
                        }
                        Resealed::Unhashed(bytes) => {
                            self.sizes.insert(key.to_string(), bytes);
                            bytes
                        }
                    };
                    self.tally.objects += 1;
                    self.tally.bytes += bytes;
                    self.progress.add_bytes(bytes);
                    self.have.insert(key.to_string());
                }
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                    self.have.insert(key.to_string());
                    arrived_before.push((key, check));
                }
                Err(e) if e.kind() == ErrorKind::Integrity => problems.push(e.report()),
                Err(e) => return Err(e),
            }
            if self.stop.is_cancelled() {
                break;
            }
        }
        drop(results);
        self.stopped()?;
        self.entries_of(arrived_before).await?;
        Ok(problems)
    }

    /// Re-sealing: what the copy's manifest records of objects a run that stopped re-sealed
    /// already (read off the copy: their stored bytes are the copy's own; their plaintext
    /// is still checked against the source manifest's BLAKE3 when restored or `check
    /// --read-data`).
    async fn entries_of(&mut self, arrived: Vec<(Key, Check)>) -> Result<()> {
        if self.reseal.is_none() {
            return Ok(());
        }
        for (key, check) in arrived {
            let Check::Stored(entry) = check else { continue };
            if self.entries.contains_key(key.as_ref()) {
                continue;
            }
            let Some((stored_sha256, stored_size)) = self.to.stored_digest(&key).await? else {
                return Err(Error::integrity(format!("{key} vanished from {} while it was copied", self.to.url())));
            };
            self.entries.insert(key.to_string(), ObjectEntry { stored_sha256, stored_size, ..entry });
        }
        Ok(())
    }

    /// A signed record (a manifest, a restore point): its signature, checked against the
    /// copy's trusted signers, then the record.
    async fn record(&mut self, key: &Key) -> Result<Sent> {
        if self.have.contains(key.as_ref()) {
            self.tally.already_there += 1;
            return Ok(Sent::There);
        }
        if let Some(recipients) = self.reseal {
            if let Some(problem) = self.vouched(key).await? {
                return Ok(Sent::Not(problem));
            }
            let read = self.from.read_sealed::<serde_json::Value>(key, self.identities, &format!("record {key}")).await;
            let value = match read {
                Ok(Some(value)) => value,
                Ok(None) => {
                    return Ok(Sent::Not(format!("{key} vanished from {} while it was copied", self.from.url())));
                }
                Err(e) if e.kind() == ErrorKind::Integrity => return Ok(Sent::Not(e.report())),
                Err(e) => return Err(e),
            };
            return self.sent(key, self.to.put_sealed(key, &value, recipients).await, 0);
        }
        let Some(bytes) = self.from.get(key).await? else {
            return Ok(Sent::Not(format!("{key} vanished from {} while it was copied", self.from.url())));
        };
        let sha256 = hex::encode(Sha256::digest(&bytes));
        match self.to.copy_signature_from(self.from, key, &sha256).await {
            Err(e) if e.kind() == ErrorKind::Integrity => return Ok(Sent::Not(e.report())),
            other => other?,
        }
        let size = bytes.len() as u64;
        let put = self.to.put_once(key, bytes).await;
        self.sent(key, put, size)
    }

    /// What became of a record written to the copy (`size` bytes, when known).
    fn sent(&mut self, key: &Key, put: Result<()>, size: u64) -> Result<Sent> {
        match put {
            Ok(()) => {
                self.tally.objects += 1;
                self.tally.bytes += size;
            }
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        self.have.insert(key.to_string());
        Ok(Sent::Now)
    }

    /// Re-sealing: the manifest as the copy holds it (what it stores of each object, read
    /// from what this run and earlier ones wrote), sealed to the copy's recipients and
    /// signed.
    async fn commit_resealed(&mut self, key: &Key, commit: Commit, recipients: &Recipients) -> Result<Sent> {
        let own = |entries: &HashMap<String, ObjectEntry>, object: &Key| {
            entries.get(object.as_ref()).cloned().ok_or_else(|| {
                Error::internal(format!("{object} was re-sealed into the copy, but what it became was not kept"))
            })
        };
        let put = match commit {
            Commit::Snapshot(mut m) => {
                let (workspace, id) = (m.workspace.clone(), m.id.clone());
                for entry in m.objects_mut() {
                    *entry = own(&self.entries, &SnapshotObject::key_for_name(&workspace, &id, &entry.name)?)?;
                }
                for file in m.media.iter_mut().flat_map(|media| media.files.iter_mut()) {
                    if file.stored_size.is_some() {
                        let key = layout::media_object(&workspace, &file.sha256)?;
                        file.stored_size = match self.sizes.get(key.as_ref()) {
                            Some(size) => Some(*size),
                            None => self.to.stored_size(&key).await?,
                        };
                    }
                }
                self.to.commit_manifest(&m, recipients).await
            }
            Commit::Base(mut b) => {
                b.tar = own(&self.entries, &layout::base_tar(&b.workspace, &b.id))?;
                self.to.put_sealed(key, &b, recipients).await
            }
        };
        self.sent(key, put, 0)
    }

    /// Whether the copy's trusted signers vouch for the record at `key` as the source holds
    /// it (checked before what the record commits is sent, so a record the copy would refuse
    /// leaves nothing behind): the problem when they do not.
    async fn vouched(&self, key: &Key) -> Result<Option<String>> {
        let Some(bytes) = self.from.get(key).await? else {
            return Ok(Some(format!("{key} vanished from {} while it was copied", self.from.url())));
        };
        let sig = self.from.get(&layout::signature(key)).await?;
        let sha256 = hex::encode(Sha256::digest(&bytes));
        match self.to.signing().trust.verify(key.as_ref(), &sha256, sig.as_deref()) {
            Ok(_) => Ok(None),
            Err(e) if e.kind() == ErrorKind::Integrity => {
                Ok(Some(e.context(format!("in {}: not copied", self.from.url())).report()))
            }
            Err(e) => Err(e),
        }
    }

    /// Every archived WAL file (and history file, and streamed partial) the copy lacks:
    /// its signature (over the content its key names), the file, checked by decrypting it,
    /// and a partial's reach marker.
    async fn wal(&mut self) -> Result<()> {
        let archived = archive::list(self.from, self.workspace).await?;
        let mut files = Vec::new();
        let mut reaches = Vec::new();
        for a in &archived {
            let key = layout::wal_object(self.workspace, &a.name, &a.sha256)?;
            if self.have.contains(key.as_ref()) {
                self.tally.already_there += 1;
                continue;
            }
            match self.to.copy_signature_from(self.from, &key, &a.sha256).await {
                Err(e) if e.kind() == ErrorKind::Integrity => {
                    self.tally.problems.push(e.report());
                    continue;
                }
                other => other?,
            }
            files.push((key, Check::Content { sha256: a.sha256.clone(), size: None }));
            if let Some(lsn) = a.reach {
                reaches.push((layout::wal_reach(self.workspace, &a.name, &a.sha256, lsn.0)?, Check::Empty));
            }
        }
        let before = self.tally.objects;
        let problems = self.objects(files).await?;
        self.tally.wal_files += self.tally.objects - before;
        self.tally.problems.extend(problems);
        let problems = self.objects(reaches).await?;
        self.tally.problems.extend(problems);
        Ok(())
    }

    /// Every base backup the copy lacks: its tar (checked against the manifest), then the
    /// manifest. A damaged manifest or tar is named and that base backup left out.
    async fn base_backups(&mut self) -> Result<()> {
        let read = base::read_all(self.from, self.identities, self.workspace).await?;
        for d in read.damaged {
            self.tally.problems.push(format!("base backup {}: its manifest cannot be read: {}", d.id, d.problem));
        }
        for b in read.items {
            let manifest = layout::base_manifest(self.workspace, &b.id);
            if self.have.contains(manifest.as_ref()) {
                self.tally.already_there += 1;
                continue;
            }
            let tar = layout::base_tar(self.workspace, &b.id);
            let (what, check) = (format!("base backup {}", b.id), Check::Stored(b.tar.clone()));
            if self.committed(&what, &manifest, vec![(tar, check)], Commit::Base(Box::new(b))).await? {
                self.tally.base_backups += 1;
            }
        }
        Ok(())
    }

    /// What one manifest commits (`wanted`), then the manifest: nothing when the copy's
    /// signers would refuse the manifest, and no manifest when an object failed its check
    /// (each problem named after `what`). Whether the manifest went over now.
    async fn committed(
        &mut self,
        what: &str,
        manifest: &Key,
        wanted: Vec<(Key, Check)>,
        commit: Commit,
    ) -> Result<bool> {
        if let Some(problem) = self.vouched(manifest).await? {
            self.tally.problems.push(format!("{what}: {problem}"));
            return Ok(false);
        }
        let problems = self.objects(wanted).await?;
        if !problems.is_empty() {
            self.tally.problems.push(format!("{what} was not copied: {}", problems.join("; ")));
            return Ok(false);
        }
        let sent = match self.reseal {
            Some(recipients) if !self.have.contains(manifest.as_ref()) => {
                self.commit_resealed(manifest, commit, recipients).await?
            }
            _ => self.record(manifest).await?,
        };
        match sent {
            Sent::Not(problem) => self.tally.problems.push(format!("{what}: {problem}")),
            Sent::Now => return Ok(true),
            Sent::There => {}
        }
        Ok(false)
    }

    /// Every snapshot the copy lacks: its media, its objects (each checked against the
    /// manifest), then the manifest.
    async fn snapshots(&mut self) -> Result<()> {
        let read = self.from.read_manifests(self.workspace, self.identities).await?;
        for d in read.damaged {
            self.tally.problems.push(format!("snapshot {}: its manifest cannot be read: {}", d.id, d.problem));
        }
        for m in read.items {
            let manifest = layout::manifest(self.workspace, &m.id);
            if self.have.contains(manifest.as_ref()) {
                self.tally.already_there += 1;
                continue;
            }
            let mut wanted = Vec::new();
            for file in m.media.iter().flat_map(|media| media.files.iter()) {
                let key = layout::media_object(self.workspace, &file.sha256)?;
                wanted.push((key, Check::Content { sha256: file.sha256.clone(), size: Some(file.size) }));
            }
            for entry in m.objects() {
                let key = SnapshotObject::key_for_name(self.workspace, &m.id, &entry.name)?;
                wanted.push((key, Check::Stored(entry.clone())));
            }
            let mut seen = HashSet::new();
            wanted.retain(|(k, _)| seen.insert(k.to_string()));
            let what = format!("snapshot {}", m.id);
            if self.committed(&what, &manifest, wanted, Commit::Snapshot(Box::new(m))).await? {
                self.tally.snapshots += 1;
            }
        }
        Ok(())
    }

    /// Restore points (signed records) and pins (empty markers).
    async fn records(&mut self) -> Result<()> {
        for object in self.from.list(&layout::restore_points(self.workspace)).await? {
            if layout::is_signature(&object.key) {
                continue;
            }
            match self.record(&object.key).await? {
                Sent::Not(problem) => self.tally.problems.push(problem),
                Sent::Now => self.tally.records += 1,
                Sent::There => {}
            }
        }
        let pins: Vec<_> =
            self.from.list(&layout::pins(self.workspace)).await?.into_iter().map(|o| (o.key, Check::Empty)).collect();
        let before = self.tally.objects;
        let problems = self.objects(pins).await?;
        self.tally.records += self.tally.objects - before;
        self.tally.problems.extend(problems);
        Ok(())
    }
}

/// How far a copy is behind the primary for a workspace: the oldest of the primary's
/// committing objects the copy lacks — snapshot and base backup manifests, WAL files,
/// restore points and pins (what a copy run enumerates; a manifest stands for the objects
/// it commits, so a snapshot still being written, or garbage prune has not collected yet,
/// never counts).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Lag {
    /// The primary's committing objects (manifests, WAL files, restore points, pins) the
    /// copy does not have.
    pub missing_objects: u64,
    /// When the oldest of them was written; `None` when the copy has everything.
    pub oldest_missing: Option<chrono::DateTime<chrono::Utc>>,
}

impl Lag {
    /// Seconds since the oldest missing object was written (0 when none is missing).
    pub fn seconds(&self, now: chrono::DateTime<chrono::Utc>) -> u64 {
        self.oldest_missing.map_or(0, |t| (now - t).num_seconds().max(0) as u64)
    }
}

/// Compares what the two repositories hold of `workspace` (one listing each).
///
/// Errors: `Unavailable` for either store.
pub async fn lag(from: &Repository, to: &Repository, workspace: &str) -> Result<Lag> {
    let prefix = layout::workspace(workspace);
    let have: HashSet<String> = to.list(&prefix).await?.into_iter().map(|o| o.key.to_string()).collect();
    let mut lag = Lag { missing_objects: 0, oldest_missing: None };
    for object in from.list(&prefix).await? {
        let key = object.key.as_ref();
        let committing = key.ends_with("/manifest.json.age")
            || (key.contains("/wal/") && key.ends_with(".zst.age"))
            || (key.contains("/restore-points/") && key.ends_with(".json.age"))
            || key.contains("/pins/");
        if !committing || have.contains(key) {
            continue;
        }
        lag.missing_objects += 1;
        lag.oldest_missing = Some(lag.oldest_missing.map_or(object.modified, |t| t.min(object.modified)));
    }
    Ok(lag)
}
