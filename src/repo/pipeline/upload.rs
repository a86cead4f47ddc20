//! Writing one object: bytes in, compressed and encrypted bytes out to the object store,
//! small objects in one PUT, large ones as a multipart upload with bounded parts in flight.

use std::io::Write;
use std::sync::{Arc, Mutex};

use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutPayload, WriteMultipart};
use sha2::{Digest, Sha256};

use super::{BATCH_SIZE, ZSTD_LEVEL};
use crate::error::{Error, ErrorKind, Result};
use crate::keys::Recipients;
use crate::repo::Repository;
use crate::repo::manifest::ObjectEntry;

/// Parts of one multipart upload in flight at once (each `part_size` bytes).
const PARTS_IN_FLIGHT: usize = 2;

/// The end of the encoder chain: counts and hashes what will be stored and hands it over.
struct Stored {
    pending: Vec<u8>,
    /// `None`: not hashed (see [`ObjectWriter::content_addressed`]).
    sha256: Option<Sha256>,
    size: u64,
}

impl Default for Stored {
    fn default() -> Stored {
        Stored { pending: Vec::new(), sha256: Some(Sha256::new()), size: 0 }
    }
}

#[derive(Clone, Default)]
struct StoredSink(Arc<Mutex<Stored>>);

impl Write for StoredSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut s = self.0.lock().expect("sink lock");
        if let Some(sha256) = &mut s.sha256 {
            sha256.update(buf);
        }
        s.size += buf.len() as u64;
        s.pending.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

type Encoder = zstd::stream::write::Encoder<'static, age::stream::StreamWriter<StoredSink>>;

enum Upload {
    /// Not yet a part's worth: kept in memory, sent with one PUT if the object ends here.
    Buffered(Vec<u8>),
    Multipart(WriteMultipart),
}

/// Streams one object into the repository. Call [`ObjectWriter::finish`] to commit it and
/// get its [`ObjectEntry`]; dropping it without finishing leaves no object under its name
/// (a multipart upload that never completes is invisible).
pub struct ObjectWriter {
    store: Arc<dyn ObjectStore>,
    path: Path,
    name: String,
    part_size: usize,
    encoder: Option<Encoder>,
    sink: StoredSink,
    /// `None`: not hashed (see [`ObjectWriter::content_addressed`]).
    plain: Option<blake3::Hasher>,
    plain_size: u64,
    batch: Vec<u8>,
    upload: Upload,
    repo: Repository,
    /// Held while a multipart upload is open: [`finish_aborts`] waits for it.
    in_flight: Option<tokio_util::task::task_tracker::TaskTrackerToken>,
}

impl ObjectWriter {
    /// Starts an object at `path`, recorded in the manifest as `name`.
    pub fn new(repo: &Repository, path: Path, name: String, recipients: &Recipients) -> Result<ObjectWriter> {
        let sink = StoredSink::default();
        let encryptor = age::Encryptor::with_recipients(recipients.iter())
            .map_err(|e| Error::new(ErrorKind::Key, format!("cannot encrypt: {e}")))?;
        let age_writer = encryptor.wrap_output(sink.clone())?;
        let encoder = zstd::stream::write::Encoder::new(age_writer, ZSTD_LEVEL)?;
        Ok(ObjectWriter {
            store: repo.store(),
            path,
            name,
            part_size: repo.part_size(),
            encoder: Some(encoder),
            sink,
            plain: Some(blake3::Hasher::new()),
            plain_size: 0,
            batch: Vec::with_capacity(BATCH_SIZE),
            upload: Upload::Buffered(Vec::new()),
            repo: repo.clone(),
            in_flight: None,
        })
    }

    /// For an object whose key names its content's SHA-256, checked against it when read
    /// (a WAL file `<sha256>.zst.age`, a media file; see `Expect::Content`): neither the
    /// plaintext's BLAKE3 nor the stored bytes' SHA-256 is computed (nobody reads them;
    /// 8% of a WAL push's CPU), so [`ObjectWriter::finish`] is refused; use
    /// [`ObjectWriter::finish_unhashed`].
    pub fn content_addressed(mut self) -> ObjectWriter {
        self.plain = None;
        self.sink.0.lock().expect("sink lock").sha256 = None;
        self
    }

    /// Plaintext bytes written so far.
    pub fn plain_size(&self) -> u64 {
        self.plain_size + self.batch.len() as u64
    }

    /// Appends plaintext. Returns once the data is compressed, encrypted and either buffered
    /// or handed to the uploader with room to spare (this is the back-pressure point).
    pub async fn write(&mut self, data: &[u8]) -> Result<()> {
        if self.batch.is_empty() && data.len() >= BATCH_SIZE {
            // Large enough on its own: compressed from where it is, not copied first.
            if let Some(plain) = &mut self.plain {
                plain.update(data);
            }
            self.plain_size += data.len() as u64;
            self.encoder.as_mut().expect("writer not finished").write_all(data)?;
            return self.ship().await;
        }
        self.batch.extend_from_slice(data);
        if self.batch.len() >= BATCH_SIZE {
            self.flush_batch().await?;
        }
        Ok(())
    }

    async fn flush_batch(&mut self) -> Result<()> {
        if !self.batch.is_empty() {
            if let Some(plain) = &mut self.plain {
                plain.update(&self.batch);
            }
            self.plain_size += self.batch.len() as u64;
            self.encoder.as_mut().expect("writer not finished").write_all(&self.batch)?;
            self.batch.clear();
        }
        self.ship().await
    }

    /// Moves what the encoder produced towards the store.
    async fn ship(&mut self) -> Result<()> {
        let out = std::mem::take(&mut self.sink.0.lock().expect("sink lock").pending);
        if out.is_empty() {
            return Ok(());
        }
        let start_multipart = match &mut self.upload {
            Upload::Buffered(buf) => {
                // The first output is taken over, not copied (a small object is all of it).
                if buf.is_empty() {
                    *buf = out;
                } else {
                    buf.extend_from_slice(&out);
                }
                buf.len() >= self.part_size
            }
            Upload::Multipart(writer) => {
                writer.write(&out);
                false
            }
        };
        if start_multipart {
            // A multipart upload cannot be made conditional: a HEAD first keeps "never
            // replace" for large objects too (their keys are unique to one snapshot, base
            // backup or content, so two writers of one key do not race in practice).
            if self.repo.stored_size(&self.path).await?.is_some() {
                return Err(Error::new(
                    crate::error::ErrorKind::AlreadyExists,
                    format!("object {} already exists in the repository; tidemark never overwrites", self.path),
                ));
            }
            self.in_flight = Some(ABORTS.token());
            let upload = self.store.put_multipart(&self.path).await.map_err(|e| self.store_error(e))?;
            let mut writer = WriteMultipart::new_with_chunk_size(upload, self.part_size);
            if let Upload::Buffered(buf) = &self.upload {
                writer.write(buf);
            }
            self.upload = Upload::Multipart(writer);
        }
        if let Upload::Multipart(writer) = &mut self.upload {
            let result = writer.wait_for_capacity(PARTS_IN_FLIGHT).await;
            result.map_err(|e| self.store_error(e))?;
        }
        Ok(())
    }

    /// Completes the object and makes it durable; returns what a manifest records of it.
    ///
    /// Errors: `Unavailable` when the store fails; the object then does not exist.
    /// `Internal` for a [`ObjectWriter::content_addressed`] writer (it has no hashes).
    pub async fn finish(mut self) -> Result<ObjectEntry> {
        if self.plain.is_none() {
            return Err(Error::internal(format!("{} was written without hashes: nothing to record", self.path)));
        }
        // The hashes after the last bytes: the encoders' ends are written in `complete`.
        let stored_size = self.complete().await?;
        let plain = self.plain.take().expect("a hashed writer");
        let stored = self.sink.0.lock().expect("sink lock").sha256.take().expect("a hashed writer");
        Ok(ObjectEntry {
            name: self.name.clone(),
            plain_size: self.plain_size,
            plain_blake3: plain.finalize().to_hex().to_string(),
            stored_size,
            stored_sha256: hex::encode(stored.finalize()),
        })
    }

    /// Completes an object written [`ObjectWriter::content_addressed`] and makes it
    /// durable; returns its stored size.
    ///
    /// Errors: `Unavailable` when the store fails; the object then does not exist.
    pub async fn finish_unhashed(mut self) -> Result<u64> {
        self.complete().await
    }

    /// Completes the object and makes it durable; returns its stored size.
    async fn complete(&mut self) -> Result<u64> {
        self.flush_batch().await?;
        let encoder = self.encoder.take().expect("writer not finished");
        encoder.finish()?.finish()?;
        self.ship().await?;
        let upload = std::mem::replace(&mut self.upload, Upload::Buffered(Vec::new()));
        match upload {
            Upload::Buffered(buf) => {
                let opts = object_store::PutOptions::from(PutMode::Create);
                self.store.put_opts(&self.path, PutPayload::from(buf), opts).await.map_err(|e| self.store_error(e))?;
            }
            Upload::Multipart(writer) => {
                writer.finish().await.map_err(|e| self.store_error(e))?;
            }
        }
        // Complete: nothing of it is left to abort when the writer is dropped.
        self.in_flight = None;
        self.repo.make_durable(&self.path)?;
        self.repo.lock_written(&self.path).await?;
        Ok(self.sink.0.lock().expect("sink lock").size)
    }

    /// Gives up on the object: a started multipart upload is aborted.
    pub async fn abort(mut self) {
        if let Upload::Multipart(writer) = std::mem::replace(&mut self.upload, Upload::Buffered(Vec::new())) {
            let _ = writer.abort().await;
            self.in_flight = None;
        }
    }
}

/// Aborts of multipart uploads whose writer was dropped unfinished (an interrupted or
/// failed snapshot, a job stopped by the daemon). [`finish_aborts`] waits for them.
static ABORTS: std::sync::LazyLock<tokio_util::task::TaskTracker> =
    std::sync::LazyLock::new(tokio_util::task::TaskTracker::new);

impl Drop for ObjectWriter {
    /// A started multipart upload that is neither finished nor aborted would stay in the
    /// store (a `<object>#N` staging file, an incomplete S3 upload): it is aborted in the
    /// background.
    fn drop(&mut self) {
        let upload = std::mem::replace(&mut self.upload, Upload::Buffered(Vec::new()));
        let (path, in_flight) = (self.path.clone(), self.in_flight.take());
        let unfinished = match upload {
            Upload::Multipart(writer) => Unfinished::Started(writer),
            // Dropped while the upload was being created (or its completion failed): the
            // store may hold an upload whose id never came back. Found by its key.
            Upload::Buffered(_) if in_flight.is_some() => Unfinished::Unknown(self.repo.clone()),
            Upload::Buffered(_) => return,
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(object = %path, "an unfinished upload was left; prune collects it");
            return;
        };
        runtime.spawn(async move {
            let aborted = match unfinished {
                Unfinished::Started(writer) => writer.abort().await.map_err(Error::from),
                Unfinished::Unknown(repo) => {
                    // Once now, and once more for a creation the store answers late.
                    let first = repo.abort_uploads_of(&path).await;
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    first.and(repo.abort_uploads_of(&path).await).map(|_| ())
                }
            };
            if let Err(e) = aborted {
                tracing::warn!(object = %path, error = %e.report(), "could not abort an unfinished upload; prune collects it");
            }
            drop(in_flight);
        });
    }
}

/// What a dropped writer leaves: an upload it knows, or one it may not.
enum Unfinished {
    Started(WriteMultipart),
    Unknown(Repository),
}

/// Waits (up to `limit`) until no multipart upload is open any more (the tasks of an
/// interrupted command are being dropped, their uploads aborted): called before the
/// process exits, so an interrupted command leaves no upload behind.
pub async fn finish_aborts(limit: std::time::Duration) {
    ABORTS.close();
    if tokio::time::timeout(limit, ABORTS.wait()).await.is_err() {
        tracing::warn!("unfinished uploads are still being aborted; prune collects what is left");
    }
}

impl ObjectWriter {
    fn store_error(&self, e: object_store::Error) -> Error {
        Error::from(e).context(format!("uploading {}", self.path))
    }
}
