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
