//! The typed storage calls every other module uses: write-once puts of an object or a
//! sealed (zstd + age) record, reads that say "missing" as `None`, listings by prefix,
//! deletes that treat "already gone" as done. Nothing outside `repo/` talks to the store.

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::pipeline::{decrypt_small, encrypt_small};
use super::{Key, Repository};
use crate::error::{Error, ErrorKind, Result};
use crate::keys::{Identities, Recipients};

/// One object as a listing shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredObject {
    pub key: Key,
    pub size: u64,
    pub modified: DateTime<Utc>,
}

impl Repository {
    /// Writes an object that must not exist yet, and makes it durable. Every write of
    /// tidemark goes through here or through an [`super::pipeline::ObjectWriter`]; neither
    /// replaces an object (which is what lets a bucket with object lock just work).
    ///
    /// Errors: `AlreadyExists` when the key is taken (the object is left as it was);
    /// `Unavailable`/`Config` for the store.
    pub async fn put_once(&self, key: &Key, bytes: impl Into<Bytes>) -> Result<()> {
        self.store
            .put_opts(key, PutPayload::from(bytes.into()), PutOptions::from(PutMode::Create))
            .await
            .map_err(Error::from)?;
        self.make_durable(key)?;
        self.lock_written(key).await
    }

    /// Serializes `value` as JSON, seals it (zstd + age to `recipients`), signs it and writes
    /// it once ([`Self::put_once`], the signature first: see [`Self::sign`]).
    ///
    /// Errors: those of [`Self::put_once`] and [`Self::sign`]; `Key` when encryption fails.
    pub async fn put_sealed<T: Serialize>(&self, key: &Key, value: &T, recipients: &Recipients) -> Result<()> {
        let plain = serde_json::to_vec_pretty(value).expect("records serialize");
        let stored = encrypt_small(&plain, recipients)?;
        self.sign_bytes(key, &stored).await?;
        self.put_once(key, stored).await
    }

    /// The SHA-256 and size of an object's stored bytes (read through), or `None` when it is
    /// not stored.
    ///
    /// Errors: `Unavailable` for the store (also for a read cut short).
    pub async fn stored_digest(&self, key: &Key) -> Result<Option<(String, u64)>> {
        use futures::StreamExt;
        use sha2::{Digest, Sha256};
        let got = match self.store.get(key).await {
            Ok(got) => got,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let (mut sha, mut size) = (Sha256::new(), 0u64);
        let mut stream = got.into_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| Error::from(e).context(format!("reading {key}")))?;
            sha.update(&chunk);
            size += chunk.len() as u64;
        }
        Ok(Some((hex::encode(sha.finalize()), size)))
    }

    /// An object's bytes, or `None` when it is not stored.
    ///
    /// Errors: `Unavailable` for the store (also for a read cut short).
    pub async fn get(&self, key: &Key) -> Result<Option<Bytes>> {
        match self.store.get(key).await {
            Ok(got) => Ok(Some(got.bytes().await.map_err(|e| Error::from(e).context(format!("reading {key}")))?)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Reads a record written by [`Self::put_sealed`], checks its signature, unseals and
    /// parses it; `None` when it is not stored. `what` names it in errors ("restore point x").
    ///
    /// Errors: `Key` for a wrong identity, `Integrity` for a damaged, malformed, unsigned
    /// or forged record, `Unavailable` for the store.
    pub async fn read_sealed<T: DeserializeOwned>(
        &self,
        key: &Key,
        identities: &Identities,
        what: &str,
    ) -> Result<Option<T>> {
        let Some(stored) = self.get(key).await? else { return Ok(None) };
        self.verify_bytes(key, &stored).await?;
        let plain = decrypt_small(&stored, identities, what)?;
        serde_json::from_slice(&plain).map(Some).map_err(|e| Error::integrity(format!("{what} is malformed: {e}")))
    }

    /// Every object below `prefix` (a folder: `a/b` lists `a/b/...`, not `a/bc`; the empty
    /// key lists the whole repository), in the store's order. Signature objects (`*.sig`)
    /// are not listed: they belong to the object they sign.
    ///
    /// Errors: `Unavailable` for the store.
    pub async fn list(&self, prefix: &Key) -> Result<Vec<StoredObject>> {
        let mut listed = self.list_all(prefix).await?;
        listed.retain(|o| !super::layout::is_signature(&o.key));
        Ok(listed)
    }

    /// Like [`Self::list`], signature objects included (garbage collection).
    pub async fn list_all(&self, prefix: &Key) -> Result<Vec<StoredObject>> {
        let prefix = Some(prefix).filter(|p| p.parts().next().is_some());
        let listed: Vec<_> = self.store.list(prefix).try_collect().await?;
        Ok(listed
            .into_iter()
            .map(|m| StoredObject { key: m.location, size: m.size, modified: m.last_modified })
            .collect())
    }

    /// Deletes an object, and its signature when it is of a signed kind; one already gone
    /// counts as deleted.
    ///
    /// Errors: `Unavailable`/`Config` for the store.
    pub async fn delete(&self, key: &Key) -> Result<()> {
        self.delete_one(key).await?;
        if super::layout::is_signed_kind(key) {
            self.delete_one(&super::layout::signature(key)).await?;
        }
        Ok(())
    }

    /// Deletes one object. Under object lock (a versioned bucket) a locked object is
    /// refused (`Refused`, naming the date), and an unlocked one is deleted by its version,
    /// so no delete marker hides a version that stays behind.
    async fn delete_one(&self, key: &Key) -> Result<()> {
        if let (Some(_), Some(bucket)) = (&self.lock, &self.s3) {
            self.refuse_if_locked(key).await?;
            let version = match self.store.head(key).await {
                Ok(meta) => meta.version,
                Err(object_store::Error::NotFound { .. }) => return Ok(()),
                Err(e) => return Err(e.into()),
            };
            if let Some(version) = version {
                return bucket.delete_version(key, &version).await;
            }
        }
        match self.store.delete(key).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Whether an object is stored, and with what size (`None`: it is not).
    ///
    /// Errors: `Unavailable` for the store.
    pub async fn stored_size(&self, key: &Key) -> Result<Option<u64>> {
        match self.store.head(key).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// That an object is stored with `size` bytes (any size with `None`).
    ///
    /// Errors: `Integrity` saying which: missing, or another size; `Unavailable` for the
    /// store.
    pub async fn expect_stored(&self, key: &Key, size: Option<u64>) -> Result<()> {
        match (self.stored_size(key).await?, size) {
            (None, _) => Err(Error::integrity(format!("object {key} is missing from the repository"))),
            (Some(stored), Some(expected)) if stored != expected => {
                Err(Error::integrity(format!("object {key} has {stored} bytes, {expected} expected")))
            }
            _ => Ok(()),
        }
    }
}

/// `AlreadyExists` errors reworded for what was being written.
pub fn when_taken(e: Error, message: impl FnOnce() -> String) -> Error {
    if e.kind() == ErrorKind::AlreadyExists { Error::new(ErrorKind::AlreadyExists, message()) } else { e }
}
