//! S3 object lock: every object tidemark writes gets a retain-until date right after it is
//! written (PutObjectRetention: object_store cannot send the lock headers with its PUT, so
//! these calls are signed requests of our own, see `store::S3Bucket`), locks are extended
//! when something newer needs an object longer, and a delete never hides a locked object.

use chrono::{DateTime, Duration, Utc};

use super::{Key, Repository};
use crate::config::LockMode;
use crate::error::{Error, ErrorKind, Result};

/// A repository's object-lock settings.
#[derive(Debug, Clone, Copy)]
pub struct ObjectLock {
    pub mode: LockMode,
    /// How long what is written now is held when nothing more specific is known: the
    /// longest `keep-within` of any policy, plus the margin.
    pub hold: Duration,
    pub margin: Duration,
}

impl Repository {
    /// Object lock, when the config asks for it.
    pub fn object_lock(&self) -> Option<&ObjectLock> {
        self.lock.as_ref()
    }

    /// This repository with object lock set up (`hold`: see [`ObjectLock::hold`]).
    pub fn with_object_lock(mut self, lock: Option<ObjectLock>) -> Repository {
        self.lock = lock;
        self
    }

    /// This repository, locking what it writes until `until` instead of for the default
    /// hold (a snapshot's objects: its retention; WAL: the PITR window).
    pub fn locking_until(&self, until: DateTime<Utc>) -> Repository {
        Repository { lock_until: Some(until), ..self.clone() }
    }

    /// When what is written now is locked until (`None` without object lock).
    pub fn lock_target(&self) -> Option<DateTime<Utc>> {
        let lock = self.lock.as_ref()?;
        Some(self.lock_until.unwrap_or_else(|| Utc::now() + lock.hold))
    }

    /// Checks that the bucket has object lock enabled when the config asks for it.
    ///
    /// Errors: `Config` when it does not (or the repository is not S3), saying what to do.
    pub(super) async fn check_lock_enabled(&self) -> Result<()> {
        match self.lock {
            Some(_) => lock_enabled(self.s3.as_ref(), &self.url).await,
            None => Ok(()),
        }
    }

    /// Locks an object just written until [`Self::lock_target`].
    ///
    /// Errors: `Config` when S3 refuses; `Unavailable`.
    pub(crate) async fn lock_written(&self, key: &Key) -> Result<()> {
        let (Some(lock), Some(bucket), Some(until)) = (&self.lock, &self.s3, self.lock_target()) else {
            return Ok(());
        };
        // A pin is a marker that must be removable (unpin); what it keeps is locked itself.
        // A streamed partial segment is replaced every second and deleted once its segment
        // is archived (which is locked): locking each version would keep thousands a day.
        if key.parts().nth(2).is_some_and(|p| p.as_ref() == "pins") || key.as_ref().contains(".partial/") {
            return Ok(());
        }
        bucket.set_retention(key, lock.mode, until).await
    }

    /// Moves an object's lock to `until` if it ends earlier (something newer needs the
    /// object longer: a snapshot sharing media, a pin). Returns whether it moved.
    ///
    /// Errors: `NotFound` for a missing object; `Config` when S3 refuses; `Unavailable`.
    pub async fn extend_lock(&self, key: &Key, until: DateTime<Utc>) -> Result<bool> {
        let (Some(lock), Some(bucket)) = (&self.lock, &self.s3) else { return Ok(false) };
        match bucket.retention(key).await? {
            Some((_, current)) if current >= until => Ok(false),
            _ => bucket.set_retention(key, lock.mode, until).await.map(|()| true),
        }
    }

    /// Until when an object is locked (`None`: not locked, or no object lock).
    ///
    /// Errors: `NotFound` for a missing object; `Unavailable`/`Config` for the store.
    pub async fn locked_until(&self, key: &Key) -> Result<Option<DateTime<Utc>>> {
        let (Some(_), Some(bucket)) = (&self.lock, &self.s3) else { return Ok(None) };
        Ok(bucket.retention(key).await?.map(|(_, until)| until).filter(|until| *until > Utc::now()))
    }

    /// Refuses to delete a locked object: in a versioned bucket a plain delete would only
    /// hide it behind a delete marker.
    pub(super) async fn refuse_if_locked(&self, key: &Key) -> Result<()> {
        match self.locked_until(key).await {
            Ok(Some(until)) => Err(Error::new(
                ErrorKind::Refused,
                format!("object {key} is locked until {}; it is kept", until.to_rfc3339()),
            )),
            Ok(None) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// That the bucket behind `url` has object lock enabled (`init` asks before it writes).
///
/// Errors: `Config` when it does not, or the repository is not S3, saying what to do.
pub(super) async fn lock_enabled(bucket: Option<&super::store::S3Bucket>, url: &str) -> Result<()> {
    let Some(bucket) = bucket else {
        return Err(Error::config("repository.object-lock needs an s3:// repository"));
    };
    if !bucket.object_lock_enabled().await? {
        return Err(Error::config(format!(
            "repository.object-lock is set, but the bucket of {url} does not have object lock enabled. S3 turns it \
             on only when a bucket is created (`aws s3api create-bucket --bucket NAME \
             --object-lock-enabled-for-bucket`); create such a bucket, or remove object-lock from the config"
        )));
    }
    Ok(())
}
