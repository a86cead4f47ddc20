//! The repository: where backups live. Opening and creating it (the `repository.json`
//! descriptor), reading and committing manifests, listing what exists. The repository is the
//! truth: everything needed to restore is here, readable with only the URL and an identity.

pub mod bucket;
mod error;
pub mod faults;
pub mod layout;
pub mod manifest;
mod object_lock;
mod objects;
mod pins;
pub mod pipeline;
mod signatures;
pub mod store;

use std::path::PathBuf;
use std::sync::Arc;

use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};

use crate::config::RepositoryConfig;
use crate::error::{Error, ErrorKind, Result};
use crate::keys::{Identities, Recipients};
use crate::repo::pipeline::{decrypt_small, encrypt_small};
use manifest::Manifest;
pub use object_lock::ObjectLock;
pub use objects::{StoredObject, when_taken};

/// The name of an object in the repository (a `/`-separated path below its root); built by
/// [`layout`].
pub type Key = Path;

pub const REPOSITORY_FORMAT: &str = "tidemark-repository";
pub const REPOSITORY_VERSION: u32 = 1;
/// Default size of multipart upload parts.
pub const DEFAULT_PART_SIZE: usize = 8 << 20;

/// `repository.json`: plain JSON (readable without a key) describing the repository. It
/// never changes after `init`: snapshots record its [`Descriptor::digest`], and `check`
/// reports an edit (of its id or recipients, say).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Descriptor {
    pub format: String,
    pub version: u32,
    pub id: String,
    pub created: chrono::DateTime<chrono::Utc>,
    /// The public keys the repository was created with (informational: backups use the
    /// recipients in the config, so keys can be rotated).
    pub recipients: Vec<String>,
    pub compression: String,
    pub encryption: String,
}

/// An open repository. Cheap to clone.
#[derive(Clone)]
pub struct Repository {
    store: Arc<dyn ObjectStore>,
    url: String,
    local_root: Option<PathBuf>,
    s3: Option<store::S3Bucket>,
    part_size: usize,
    descriptor: Arc<Descriptor>,
    signing: Arc<crate::signing::Signing>,
    lock: Option<ObjectLock>,
    lock_until: Option<chrono::DateTime<chrono::Utc>>,
}

impl std::fmt::Debug for Repository {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Repository({})", self.url)
    }
}

impl Repository {
    /// Creates a new repository: writes `repository.json` if and only if none exists.
    ///
    /// Errors: `AlreadyExists` when the location already holds a repository; `Unavailable`
    /// when the store cannot be reached.
    pub async fn init(cfg: &RepositoryConfig, recipients: &Recipients) -> Result<Repository> {
        let opened = store::open(cfg, true)?;
        if cfg.object_lock.is_some() {
            object_lock::lock_enabled(opened.s3.as_ref(), &cfg.url).await?;
        }
        let descriptor = Descriptor {
            format: REPOSITORY_FORMAT.into(),
            version: REPOSITORY_VERSION,
            id: format!("{:032x}", rand::random::<u128>()),
            created: chrono::Utc::now(),
            recipients: recipients.to_strings(),
            compression: format!("zstd (level {})", crate::repo::pipeline::ZSTD_LEVEL),
            encryption: "age (X25519 recipients)".into(),
        };
        let body = serde_json::to_vec_pretty(&descriptor).expect("descriptor serializes");
        let put = opened
            .store
            .put_opts(&layout::descriptor(), PutPayload::from(body), PutOptions::from(PutMode::Create))
            .await;
        match put {
            Ok(_) => {}
            Err(object_store::Error::AlreadyExists { .. }) => {
                return Err(Error::new(
                    ErrorKind::AlreadyExists,
                    format!(
                        "{} already holds a tidemark repository; init never overwrites one. Point \
                         repository.url at it to use it, or choose another location",
                        cfg.url
                    ),
                ));
            }
            Err(e) => return Err(Error::from(e).context(format!("creating the repository at {}", cfg.url))),
        }
        let repo = Repository::from_parts(cfg, opened, descriptor);
        repo.make_durable(&layout::descriptor())?;
        repo.lock_written(&layout::descriptor()).await?;
        Ok(repo)
    }

    /// Opens an existing repository.
    ///
    /// Errors: `NotFound` when there is no `repository.json`, `Integrity` when it is not a
    /// tidemark descriptor or has a newer format, `Unavailable` for an unreachable store.
    pub async fn open(cfg: &RepositoryConfig) -> Result<Repository> {
        let opened = store::open(cfg, false)?;
        let got = opened.store.get(&layout::descriptor()).await;
        let bytes = match got {
            Ok(g) => g.bytes().await.map_err(|e| Error::from(e).context(format!("reading {}", cfg.url)))?,
            Err(e) if error::is_missing_bucket(&e) => {
                return Err(Error::from(e).context(format!("opening the repository at {}", cfg.url)));
            }
            Err(object_store::Error::NotFound { .. }) => {
                return Err(Error::not_found(format!(
                    "no tidemark repository at {} (no repository.json). Run `tidemark init --repo {}` \
                     to create one, or check repository.url",
                    cfg.url, cfg.url
                )));
            }
            Err(e) => return Err(Error::from(e).context(format!("opening the repository at {}", cfg.url))),
        };
        let descriptor: Descriptor = serde_json::from_slice(&bytes)
            .map_err(|e| Error::integrity(format!("{}/repository.json is not a tidemark descriptor: {e}", cfg.url)))?;
        if descriptor.format != REPOSITORY_FORMAT {
            return Err(Error::integrity(format!("{} is not a tidemark repository", cfg.url)));
        }
        if descriptor.version > REPOSITORY_VERSION {
            return Err(Error::new(
                ErrorKind::Config,
                format!(
                    "the repository at {} has format version {}, newer than this tidemark understands \
                     ({REPOSITORY_VERSION}); upgrade tidemark",
                    cfg.url, descriptor.version
                ),
            ));
        }
        let repo = Repository::from_parts(cfg, opened, descriptor);
        repo.check_lock_enabled().await?;
        Ok(repo)
    }

    /// Makes the empty location `cfg` names a copy of `primary`: its `repository.json`,
    /// byte for byte (the same id, recipients and options: snapshots' records of it hold in
    /// the copy too). A location that already holds the same repository is left as it is.
    ///
    /// Errors: `Config` when it holds another repository; those of the store.
    pub async fn seed_copy(cfg: &RepositoryConfig, primary: &Repository) -> Result<()> {
        let opened = store::open(cfg, true)?;
        let bytes = primary
            .get(&layout::descriptor())
            .await?
            .ok_or_else(|| Error::integrity(format!("{}/repository.json is gone from the primary", primary.url())))?;
        let put = opened
            .store
            .put_opts(&layout::descriptor(), PutPayload::from(bytes), PutOptions::from(PutMode::Create))
            .await;
        match put {
            Ok(_) | Err(object_store::Error::AlreadyExists { .. }) => {}
            Err(e) => return Err(Error::from(e).context(format!("creating the copy at {}", cfg.url))),
        }
        let copy = Repository::open(cfg).await?;
        copy.make_durable(&layout::descriptor())?;
        copy.same_repository_as(primary)
    }

    /// Whether this is a copy of `primary` (the same repository id).
    ///
    /// Errors: `Config` naming both ids when it is not.
    pub fn same_repository_as(&self, primary: &Repository) -> Result<()> {
        if self.descriptor.id != primary.descriptor.id {
            return Err(Error::config(format!(
                "{} holds another tidemark repository (id {}) than the primary (id {}): a copy is made by \
                 `tidemark copy` from its primary; point the copy at an empty location",
                self.url, self.descriptor.id, primary.descriptor.id
            )));
        }
        Ok(())
    }

    fn from_parts(cfg: &RepositoryConfig, opened: store::OpenedStore, descriptor: Descriptor) -> Repository {
        Repository {
            store: opened.store,
            url: cfg.url.clone(),
            local_root: opened.local_root,
            s3: opened.s3,
            part_size: cfg.part_size_mib.map(|m| m << 20).unwrap_or(DEFAULT_PART_SIZE),
            descriptor: Arc::new(descriptor),
            signing: Arc::default(),
            lock: cfg.object_lock.map(|mode| {
                let margin = chrono::Duration::from_std(cfg.lock_margin.unwrap_or(crate::config::DEFAULT_LOCK_MARGIN))
                    .unwrap_or(chrono::Duration::days(7));
                ObjectLock { mode, hold: chrono::Duration::days(90) + margin, margin }
            }),
            lock_until: None,
        }
    }

    /// The store itself, for the streaming reader and writer.
    pub(in crate::repo) fn store(&self) -> Arc<dyn ObjectStore> {
        self.store.clone()
    }

    /// The folder of a `file://` repository (`None` for object stores).
    pub fn local_root(&self) -> Option<&std::path::Path> {
        self.local_root.as_deref()
    }

    /// Writes and deletes a small object at `key`: can this process write the repository?
    ///
    /// Errors: those of the store (`Config` for a permission problem).
    pub async fn probe_write(&self, key: &Path) -> Result<()> {
        let once = PutOptions::from(PutMode::Create);
        self.store.put_opts(key, PutPayload::from_static(b"tidemark write probe"), once).await?;
        self.delete(key).await
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn descriptor(&self) -> &Descriptor {
        &self.descriptor
    }

    pub fn part_size(&self) -> usize {
        self.part_size
    }

    /// For a local repository, fsyncs the object and its folder so a crash cannot lose what
    /// a manifest is about to name. Object stores are durable once a PUT returns.
    pub fn make_durable(&self, path: &Path) -> Result<()> {
        let Some(root) = &self.local_root else { return Ok(()) };
        let mut file = root.clone();
        for part in path.parts() {
            file.push(part.as_ref());
        }
        std::fs::File::open(&file)?.sync_all()?;
        if let Some(dir) = file.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    }

    /// Whether every object a manifest names is stored with its recorded size (media: with
    /// `with_media`, present, and with their size when the manifest records it): a HEAD
    /// each, 16 at a time. What a restore checks before it writes anything, and a snapshot
    /// before it commits.
    ///
    /// Errors: `Integrity` naming the first missing or wrongly sized object;
    /// `Unavailable` for the store.
    pub async fn verify_present(&self, manifest: &Manifest, with_media: bool) -> Result<()> {
        use futures::StreamExt;
        let (ws, id) = (&manifest.workspace, &manifest.id);
        let mut wanted = Vec::new();
        for entry in manifest.objects() {
            wanted.push((layout::SnapshotObject::key_for_name(ws, id, &entry.name)?, Some(entry.stored_size)));
        }
        if with_media {
            let mut seen = std::collections::HashSet::new();
            for file in manifest.media.iter().flat_map(|m| m.files.iter()) {
                if seen.insert(&file.sha256) {
                    wanted.push((layout::media_object(ws, &file.sha256)?, file.stored_size));
                }
            }
        }
        let mut heads = futures::stream::iter(wanted)
            .map(|(key, size)| async move { self.stored_size(&key).await.map(|stored| (key, size, stored)) })
            .buffer_unordered(16);
        while let Some(head) = heads.next().await {
            let (key, expected, stored) = head?;
            let problem = match (stored, expected) {
                (None, _) => "is missing from the repository".to_string(),
                (Some(stored), Some(expected)) if stored != expected => {
                    format!("has {stored} bytes, the manifest says {expected}")
                }
                _ => continue,
            };
            return Err(Error::integrity(format!("object {key} of snapshot {id} {problem}")));
        }
        Ok(())
    }

    /// Commits a snapshot: the encrypted manifest is written once, never replaced, and only
    /// after every object it names was found stored with its size ([`Self::verify_present`]).
    /// A committed snapshot must restore: an object that went missing while the snapshot was
    /// written (a `prune` with a short grace period on another host, media collected as
    /// garbage) fails the snapshot instead.
    ///
    /// Errors: `Integrity` naming a missing or wrongly sized object; `AlreadyExists` for an
    /// id committed before; `Unavailable` for the store.
    pub async fn commit_manifest(&self, manifest: &Manifest, recipients: &Recipients) -> Result<()> {
        self.verify_present(manifest, true).await.map_err(|e| {
            if e.kind() != ErrorKind::Integrity {
                return e;
            }
            Error::integrity(format!(
                "snapshot {} of workspace {} was not committed: {}. Was it removed while the snapshot was \
                 written (a prune with a short --grace, from another host)? Nothing was committed; take the \
                 snapshot again",
                manifest.id,
                manifest.workspace,
                e.message()
            ))
        })?;
        let plain = serde_json::to_vec_pretty(manifest).expect("manifest serializes");
        let stored = encrypt_small(&plain, recipients)?;
        let path = layout::manifest(&manifest.workspace, &manifest.id);
        self.sign_bytes(&path, &stored).await?;
        self.store
            .put_opts(&path, PutPayload::from(stored), PutOptions::from(PutMode::Create))
            .await
            .map_err(|e| Error::from(e).context(format!("committing the manifest {path}")))?;
        self.make_durable(&path)?;
        self.lock_written(&path).await
    }

    /// Reads and decrypts a snapshot's manifest.
    ///
    /// Errors: `NotFound` when the snapshot does not exist (or was never committed), `Key`
    /// for a wrong identity, `Integrity` for a damaged manifest.
    pub async fn read_manifest(&self, workspace: &str, id: &str, identities: &Identities) -> Result<Manifest> {
        crate::config::validate_workspace_name(workspace)?;
        layout::validate_snapshot_id(id)?;
        let path = layout::manifest(workspace, id);
        let got = match self.store.get(&path).await {
            Ok(g) => g.bytes().await?,
            Err(object_store::Error::NotFound { .. }) => {
                return Err(Error::not_found(format!(
                    "workspace {workspace} has no snapshot {id} in {}. `tidemark snapshot list --workspace \
                     {workspace}` shows the snapshots that exist",
                    self.url
                )));
            }
            Err(e) => return Err(e.into()),
        };
        self.verify_bytes(&path, &got).await?;
        let plain = decrypt_small(&got, identities, &format!("the manifest of snapshot {id}"))?;
        let manifest: Manifest = serde_json::from_slice(&plain)
            .map_err(|e| Error::integrity(format!("the manifest of snapshot {id} is malformed: {e}")))?;
        if manifest.id != id || manifest.workspace != workspace {
            return Err(Error::integrity(format!(
                "the manifest stored as {workspace}/{id} describes {}/{}: it was moved or tampered with",
                manifest.workspace, manifest.id
            )));
        }
        Ok(manifest)
    }

    /// Every committed snapshot's manifest of a workspace, oldest first, and the ones that
    /// cannot be read (see [`sort_out`]): one damaged manifest must not hide the others.
    ///
    /// Errors: `Key` when no manifest can be read with the identity; `Unavailable` for
    /// the store.
    pub async fn read_manifests(&self, workspace: &str, identities: &Identities) -> Result<Readable<Manifest>> {
        use futures::StreamExt;
        let ids = self.list_snapshot_ids(workspace).await?;
        let read: Vec<(String, Result<Manifest>)> = futures::stream::iter(ids)
            .map(|id| async move {
                let manifest = self.read_manifest(workspace, &id, identities).await;
                (id, manifest)
            })
            .buffered(8)
            .collect()
            .await;
        sort_out(read)
    }

    /// Leftovers of uploads that never completed below `prefix` and were last written
    /// before `older_than`: in a local repository, object_store's staging files
    /// (`<object>#<n>`), which no listing shows; in S3, incomplete multipart uploads
    /// (ListMultipartUploads). A process killed mid-upload leaves them.
    ///
    /// Errors: `Unavailable` when the folder or bucket cannot be read.
    pub async fn stale_uploads(
        &self,
        prefix: &Path,
        older_than: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<StaleUpload>> {
        if let Some(bucket) = &self.s3 {
            let listed = bucket.multipart_uploads(&format!("{prefix}/")).await?;
            return Ok(listed
                .into_iter()
                .filter(|u| u.initiated < older_than)
                .map(|u| StaleUpload {
                    what: format!("{} (incomplete multipart upload {})", u.key, u.upload_id),
                    size: None,
                    modified: u.initiated,
                    leftover: Leftover::Multipart(u),
                })
                .collect());
        }
        let Some(root) = &self.local_root else { return Ok(Vec::new()) };
        let mut dir = root.clone();
        for part in prefix.parts() {
            dir.push(part.as_ref());
        }
        let mut out = Vec::new();
        let mut pending = vec![dir];
        while let Some(dir) = pending.pop() {
            let entries = match std::fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e.into()),
            };
            for entry in entries {
                let entry = entry?;
                let meta = entry.metadata()?;
                if meta.is_dir() {
                    pending.push(entry.path());
                    continue;
                }
                let name = entry.file_name().to_string_lossy().into_owned();
                let staging = name.rsplit_once('#').is_some_and(|(object, n)| {
                    !object.is_empty() && !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())
                });
                let modified = meta.modified().map(chrono::DateTime::<chrono::Utc>::from).unwrap_or_default();
                if staging && modified < older_than {
                    out.push(StaleUpload {
                        what: entry.path().display().to_string(),
                        size: Some(meta.len()),
                        modified,
                        leftover: Leftover::File(entry.path()),
                    });
                }
            }
        }
        out.sort_by(|a, b| a.what.cmp(&b.what));
        Ok(out)
    }

    /// Aborts the incomplete multipart uploads of exactly `key` (S3; a local folder has
    /// none a process can lose track of). For a writer dropped while its upload was being
    /// created: the store made it, but its id never came back. Returns how many.
    ///
    /// Errors: `Unavailable` when the bucket cannot be listed or an abort fails.
    pub async fn abort_uploads_of(&self, key: &Path) -> Result<usize> {
        let Some(bucket) = &self.s3 else { return Ok(0) };
        let mut aborted = 0;
        for upload in bucket.multipart_uploads(key.as_ref()).await?.into_iter().filter(|u| u.key == *key) {
            bucket.abort(&upload).await?;
            aborted += 1;
        }
        Ok(aborted)
    }

    /// Removes a leftover found by [`Repository::stale_uploads`] (gone already is fine).
    pub async fn remove_stale_upload(&self, stale: &StaleUpload) -> Result<()> {
        match (&stale.leftover, &self.s3) {
            (Leftover::File(file), _) => match fs_err::remove_file(file) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
                _ => Ok(()),
            },
            (Leftover::Multipart(upload), Some(bucket)) => bucket.abort(upload).await,
            (Leftover::Multipart(_), None) => Ok(()),
        }
    }

    /// The workspaces that have anything in the repository.
    pub async fn list_workspaces(&self) -> Result<Vec<String>> {
        self.folders_in(&layout::workspaces()).await
    }

    /// The names of the folders right below `prefix`, sorted.
    async fn folders_in(&self, prefix: &Path) -> Result<Vec<String>> {
        let listing = self.store.list_with_delimiter(Some(prefix)).await?;
        let mut names: Vec<String> =
            listing.common_prefixes.iter().filter_map(|p| p.filename().map(str::to_string)).collect();
        names.sort();
        Ok(names)
    }

    /// The audit chains the repository holds checkpoints of.
    pub async fn list_audit_chains(&self) -> Result<Vec<String>> {
        self.folders_in(&layout::audit_chains()).await
    }

    /// Ids of the committed snapshots of a workspace (those with a manifest), oldest first.
    pub async fn list_snapshot_ids(&self, workspace: &str) -> Result<Vec<String>> {
        let listing: Vec<_> = self.store.list(Some(&layout::snapshots(workspace))).try_collect().await?;
        let mut ids: Vec<String> = listing
            .iter()
            .filter(|meta| meta.location.filename() == Some("manifest.json.age"))
            .filter_map(|meta| {
                let parts: Vec<_> = meta.location.parts().collect();
                // workspaces/<ws>/snapshots/<id>/manifest.json.age
                (parts.len() == 5).then(|| parts[3].as_ref().to_string())
            })
            .filter(|id| layout::validate_snapshot_id(id).is_ok())
            .collect();
        ids.sort();
        Ok(ids)
    }

    /// Finds which workspace holds snapshot `id`.
    pub async fn find_snapshot(&self, id: &str) -> Result<String> {
        layout::validate_snapshot_id(id)?;
        for ws in self.list_workspaces().await? {
            match self.store.head(&layout::manifest(&ws, id)).await {
                Ok(_) => return Ok(ws),
                Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Err(Error::not_found(format!(
            "no snapshot {id} in {}; `tidemark snapshot list --workspace NAME` shows what exists",
            self.url
        )))
    }
}

impl Descriptor {
    /// SHA-256 of its fields (not of the file's bytes: layout and spacing do not count).
    pub fn digest(&self) -> String {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(serde_json::to_vec(self).expect("descriptor serializes")))
    }
}

/// Records that were read, and those that could not be (named, with the problem).
#[derive(Debug)]
pub struct Readable<T> {
    pub items: Vec<T>,
    pub damaged: Vec<Damaged>,
}

/// A manifest (or other record) that is in the repository but cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Damaged {
    pub id: String,
    pub problem: String,
}

/// Sorts read records into the good and the damaged. A record that fails verification
/// (`Integrity`), or that no identity opens while others open (`Key`: damaged, or written
/// for other keys), is damaged; when *no* record opens with the identity the identity is
/// wrong, and that is the error. Any other error (the store) is returned.
pub fn sort_out<T>(read: Vec<(String, Result<T>)>) -> Result<Readable<T>> {
    let opened = read.iter().any(|(_, r)| r.is_ok());
    let mut out = Readable { items: Vec::new(), damaged: Vec::new() };
    for (id, r) in read {
        match r {
            Ok(item) => out.items.push(item),
            Err(e) if e.kind() == ErrorKind::Integrity || (e.kind() == ErrorKind::Key && opened) => {
                out.damaged.push(Damaged { id, problem: e.report() });
            }
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// An upload that never completed.
#[derive(Debug, Clone)]
pub struct StaleUpload {
    /// What it is, for people: a file path, or an object key and upload id.
    pub what: String,
    /// Bytes it takes (a staging file; unknown for an S3 upload without listing its parts).
    pub size: Option<u64>,
    /// When it was last written (a file) or started (an S3 upload).
    pub modified: chrono::DateTime<chrono::Utc>,
    leftover: Leftover,
}

#[derive(Debug, Clone)]
enum Leftover {
    File(PathBuf),
    Multipart(store::MultipartUpload),
}
