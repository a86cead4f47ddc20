//! Object-store folders that are not the repository: a workspace's media kept in S3
//! (`s3://bucket/prefix`), read by snapshots and written by restores. They use the
//! repository's S3 settings (endpoint, region, credentials).

use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::{ObjectStore, ObjectStoreExt, WriteMultipart};

use super::Key;
use crate::config::RepositoryConfig;
use crate::error::{Error, Result};

/// An object-store folder opened from a URL.
#[derive(Clone)]
pub struct Bucket {
    store: Arc<dyn ObjectStore>,
}

/// One object of a [`Bucket`].
#[derive(Debug, Clone)]
pub struct BucketObject {
    /// The store's own key (it percent-encodes some characters).
    pub key: Key,
    /// The object's name as people and file systems know it, `/`-separated.
    pub path: String,
    pub size: u64,
    pub modified: DateTime<Utc>,
}

impl Bucket {
    /// Opens `url` with the repository's S3 settings.
    ///
    /// Errors: `Config` for a URL that cannot be opened.
    pub fn open(url: &str, repository: &RepositoryConfig) -> Result<Bucket> {
        let cfg = RepositoryConfig { url: url.to_string(), ..repository.clone() };
        Ok(Bucket { store: super::store::open(&cfg, false)?.store })
    }

    /// Every object, in the store's order.
    ///
    /// Errors: `Unavailable` for the store.
    pub async fn list(&self) -> Result<Vec<BucketObject>> {
        let metas: Vec<_> = self.store.list(None).try_collect().await?;
        Ok(metas
            .into_iter()
            .map(|m| BucketObject {
                path: decoded(&m.location),
                key: m.location,
                size: m.size,
                modified: m.last_modified,
            })
            .collect())
    }

    /// An object's bytes, streamed; `None` when it is gone.
    ///
    /// Errors: `Unavailable` for the store.
    pub async fn read(&self, key: &Key) -> Result<Option<BoxStream<'static, Result<Bytes>>>> {
        match self.store.get(key).await {
            Ok(got) => Ok(Some(got.into_stream().map(|chunk| chunk.map_err(Error::from)).boxed())),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Starts writing the object named `path` (a multipart upload: nothing is visible
    /// until [`BucketUpload::finish`]).
    ///
    /// Errors: `Unavailable` for the store.
    pub async fn upload(&self, path: &str) -> Result<BucketUpload> {
        let key = Key::from(path);
        Ok(BucketUpload { upload: WriteMultipart::new(self.store.put_multipart(&key).await?) })
    }
}

/// A whole bucket, for moving a media store's objects between prefixes side by side
/// (`media`, `media.before-...`): an object store has no rename, so a move is server-side
/// copies, then deletes. A copy is one request per object (S3 copies up to 5 GB at once).
#[derive(Clone)]
pub struct BucketRoot {
    store: Arc<dyn ObjectStore>,
}

/// What [`BucketRoot::mirror`] did.
#[derive(Debug, Clone, Copy, Default)]
pub struct Mirrored {
    pub copied: usize,
    pub deleted: usize,
}

/// Objects copied or deleted at once.
const IN_FLIGHT: usize = 8;

impl BucketRoot {
    /// The bucket of `url` (`s3://bucket/prefix`), and the prefix (without slashes, empty
    /// at the bucket's root).
    ///
    /// Errors: `Config` for a URL that cannot be opened.
    pub fn open(url: &str, repository: &RepositoryConfig) -> Result<(BucketRoot, String)> {
        let mut parsed =
            url::Url::parse(url).map_err(|e| Error::config(format!("media store {url:?} is not a URL: {e}")))?;
        let prefix = parsed.path().trim_matches('/').to_string();
        parsed.set_path("");
        let cfg = RepositoryConfig { url: parsed.to_string(), ..repository.clone() };
        Ok((BucketRoot { store: super::store::open(&cfg, false)?.store }, prefix))
    }

    /// How many objects are under `prefix`.
    ///
    /// Errors: `Unavailable` for the store.
    pub async fn count(&self, prefix: &str) -> Result<usize> {
        Ok(self.store.list(Some(&Key::from(prefix))).try_collect::<Vec<_>>().await?.len())
    }

    /// Makes the objects under `to` exactly those under `from`: every object of `from` is
    /// copied (server-side, overwriting), then every object of `to` that `from` does not have
    /// is deleted. `from` is left as it was.
    ///
    /// Errors: `Unavailable` for the store (`to` may then hold some of each).
    pub async fn mirror(&self, from: &str, to: &str) -> Result<Mirrored> {
        let (from, to) = (Key::from(from), Key::from(to));
        let objects: Vec<_> = self.store.list(Some(&from)).try_collect().await?;
        let mut wanted = std::collections::HashSet::new();
        let mut copies = Vec::with_capacity(objects.len());
        for object in objects {
            let Some(rest) = object.location.prefix_match(&from) else { continue };
            let dest: Key = to.parts().chain(rest).collect();
            wanted.insert(dest.clone());
            copies.push((object.location, dest));
        }
        let copied = copies.len();
        futures::stream::iter(copies)
            .map(|(src, dest)| async move { self.store.copy(&src, &dest).await })
            .buffer_unordered(IN_FLIGHT)
            .try_collect::<Vec<_>>()
            .await?;
        let extra: Vec<Key> = self
            .store
            .list(Some(&to))
            .map_ok(|m| m.location)
            .try_filter(|k| futures::future::ready(!wanted.contains(k)))
            .try_collect()
            .await?;
        let deleted = extra.len();
        futures::stream::iter(extra)
            .map(|k| async move { self.store.delete(&k).await })
            .buffer_unordered(IN_FLIGHT)
            .try_collect::<Vec<_>>()
            .await?;
        Ok(Mirrored { copied, deleted })
    }

    /// Deletes every object under `prefix`; returns how many.
    ///
    /// Errors: `Unavailable` for the store.
    pub async fn remove_all(&self, prefix: &str) -> Result<usize> {
        let keys: Vec<Key> = self.store.list(Some(&Key::from(prefix))).map_ok(|m| m.location).try_collect().await?;
        let removed = keys.len();
        futures::stream::iter(keys)
            .map(|k| async move { self.store.delete(&k).await })
            .buffer_unordered(IN_FLIGHT)
            .try_collect::<Vec<_>>()
            .await?;
        Ok(removed)
    }

    /// Whether the object `key` exists.
    ///
    /// Errors: `Unavailable` for the store.
    pub async fn has(&self, key: &str) -> Result<bool> {
        match self.store.head(&Key::from(key)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Writes a small object (a marker).
    ///
    /// Errors: `Unavailable` for the store.
    pub async fn put(&self, key: &str, bytes: &'static [u8]) -> Result<()> {
        self.store.put(&Key::from(key), Bytes::from_static(bytes).into()).await?;
        Ok(())
    }

    /// Deletes the object `key` (gone already is fine).
    ///
    /// Errors: `Unavailable` for the store.
    pub async fn delete(&self, key: &str) -> Result<()> {
        match self.store.delete(&Key::from(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

/// An object being written to a [`Bucket`].
pub struct BucketUpload {
    upload: WriteMultipart,
}

impl BucketUpload {
    /// Appends bytes, waiting while too many parts are in flight.
    ///
    /// Errors: `Unavailable` for the store.
    pub async fn write(&mut self, chunk: &[u8]) -> Result<()> {
        self.upload.write(chunk);
        Ok(self.upload.wait_for_capacity(2).await?)
    }

    /// Completes the object.
    ///
    /// Errors: `Unavailable` for the store.
    pub async fn finish(self) -> Result<()> {
        self.upload.finish().await?;
        Ok(())
    }

    /// Gives the upload up: nothing becomes visible.
    pub async fn abort(self) {
        let _ = self.upload.abort().await;
    }
}

/// A key's parts percent-decoded: the name people gave the object.
fn decoded(location: &Key) -> String {
    location
        .parts()
        .map(|p| percent_encoding::percent_decode_str(p.as_ref()).decode_utf8_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/")
}
