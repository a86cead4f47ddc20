//! Reading one object back: download -> SHA-256 of the stored bytes -> age -> zstd ->
//! BLAKE3 of the plaintext, streamed in bounded memory. The hashes are checked when the
//! stream ends: the last item is an error if anything does not match, so a consumer that
//! forwards items and stops at the first error never commits unverified data.

use std::io::{BufReader, Read};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio_util::io::{StreamReader, SyncIoBridge};

use super::{decrypt_error, read_error};
use crate::error::{Error, Result};
use crate::keys::Identities;
use crate::repo::Repository;
use crate::repo::manifest::ObjectEntry;

/// Chunks of plaintext, then `Ok(None)`... as an async receiver.
pub type ObjectStream = mpsc::Receiver<Result<Bytes>>;

const CHUNK: usize = 1 << 20;
/// Chunks buffered between the decoder thread and the consumer.
const CHANNEL_DEPTH: usize = 4;

struct HashingReader<R> {
    inner: R,
    state: Arc<Mutex<(Sha256, u64)>>,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        let mut s = self.state.lock().expect("hash lock");
        s.0.update(&buf[..n]);
        s.1 += n as u64;
        Ok(n)
    }
}

/// What a download is checked against when it ends.
#[derive(Debug, Clone)]
pub enum Expect {
    /// A snapshot object: stored size and SHA-256, plaintext size and BLAKE3, from its manifest.
    Entry(ObjectEntry),
    /// A content-addressed object (media, WAL): the SHA-256 of the plaintext, and its
    /// size when known.
    Content { sha256: String, size: Option<u64> },
}

/// Opens `path` (described by `entry`) and streams its verified plaintext.
///
/// Errors (at once): `Integrity` when the object is missing. Errors (as the stream's last
/// item): `Key` for a wrong identity, `Integrity` for a hash, size or authentication failure.
pub async fn read_object(
    repo: &Repository,
    path: &Path,
    entry: &ObjectEntry,
    identities: &Identities,
) -> Result<ObjectStream> {
    read_verified(repo, path, Expect::Entry(entry.clone()), identities).await
}

/// Like [`read_object`], for any [`Expect`].
pub async fn read_verified(
    repo: &Repository,
    path: &Path,
    expect: Expect,
    identities: &Identities,
) -> Result<ObjectStream> {
    let store = repo.store();
    let what = format!("object {path}");
    let got = store.get(path).await.map_err(|e| match e {
        object_store::Error::NotFound { .. } => {
            Error::integrity(format!("{what} is missing from the repository; the snapshot is damaged"))
        }
        other => Error::from(other).context(format!("downloading {path}")),
    })?;
    let stream = got.into_stream().map_err(std::io::Error::other);
    let bridge = SyncIoBridge::new(StreamReader::new(stream));
    let (tx, rx) = mpsc::channel(CHANNEL_DEPTH);
    let identities = identities.clone();
    tokio::task::spawn_blocking(move || {
        let result = decode(bridge, &expect, &identities, &what, &tx);
        if let Err(e) = result {
            let _ = tx.blocking_send(Err(e));
        }
    });
    Ok(rx)
}

pub(super) fn decode(
    source: impl Read,
    expect: &Expect,
    identities: &Identities,
    what: &str,
    tx: &mpsc::Sender<Result<Bytes>>,
) -> Result<()> {
    let state = Arc::new(Mutex::new((Sha256::new(), 0u64)));
    let hashing = BufReader::with_capacity(CHUNK, HashingReader { inner: source, state: state.clone() });
    let decryptor = age::Decryptor::new_buffered(hashing).map_err(|e| decrypt_error(e, what))?;
    let plain = decryptor.decrypt(identities.iter()).map_err(|e| decrypt_error(e, what))?;
    let mut decoder = zstd::stream::read::Decoder::new(plain).map_err(|e| read_error(&e, what))?;
    let mut blake = blake3::Hasher::new();
    let mut plain_sha = Sha256::new();
    let mut plain_size = 0u64;
    loop {
        let mut buf = vec![0u8; CHUNK];
        let mut filled = 0;
        while filled < CHUNK {
            let n = decoder.read(&mut buf[filled..]).map_err(|e| read_error(&e, what))?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        if filled == 0 {
            break;
        }
        buf.truncate(filled);
        match expect {
            Expect::Entry(_) => {
                blake.update(&buf);
            }
            Expect::Content { .. } => plain_sha.update(&buf),
        }
        plain_size += filled as u64;
        if tx.blocking_send(Ok(Bytes::from(buf))).is_err() {
            return Ok(()); // the consumer gave up; nothing to report to anyone
        }
    }
    // Drain anything the decoders left unread so the stored hash covers every byte.
    let mut rest = decoder.finish();
    let mut sink = Vec::new();
    let _ = rest.read_to_end(&mut sink);
    let (sha, stored_size) = {
        let s = state.lock().expect("hash lock");
        (hex::encode(s.0.clone().finalize()), s.1)
    };
    match expect {
        Expect::Entry(entry) => {
            if stored_size != entry.stored_size || sha != entry.stored_sha256 {
                return Err(Error::integrity(format!(
                    "{what} does not match the manifest (stored {stored_size} bytes, sha256 {sha}; expected \
                     {} bytes, sha256 {}): it was altered or truncated",
                    entry.stored_size, entry.stored_sha256
                )));
            }
            let plain_hex = blake.finalize().to_hex().to_string();
            if plain_size != entry.plain_size || plain_hex != entry.plain_blake3 {
                return Err(Error::integrity(format!(
                    "{what} decrypted to different data than was backed up (blake3 {plain_hex}, expected {})",
                    entry.plain_blake3
                )));
            }
        }
        Expect::Content { sha256, size } => {
            let plain_hex = hex::encode(plain_sha.finalize());
            if size.is_some_and(|size| size != plain_size) || &plain_hex != sha256 {
                return Err(Error::integrity(format!(
                    "{what} decrypted to content with sha256 {plain_hex} ({plain_size} bytes), not the \
                     {sha256}{} it is stored under",
                    size.map(|s| format!(" ({s} bytes)")).unwrap_or_default()
                )));
            }
        }
    }
    Ok(())
}

/// Collects a (small) object's verified plaintext.
pub async fn read_to_end(mut stream: ObjectStream) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    while let Some(chunk) = stream.recv().await {
        out.extend_from_slice(&chunk?);
    }
    Ok(out)
}

/// A stream that yields `bytes` once (for feeding already-verified data to a consumer).
pub fn stream_of(bytes: Vec<u8>) -> ObjectStream {
    let (tx, rx) = mpsc::channel(1);
    let _ = tx.try_send(Ok(Bytes::from(bytes)));
    rx
}

/// Checks that an encrypted object ends where its age stream says it ends, reading only its
/// header and its last chunk (a few range reads, not the whole object): a truncated,
/// extended or tail-damaged object fails age's authentication of the final chunk. What
/// plain `check` does for objects whose stored size is recorded nowhere (WAL).
///
/// Errors: `Integrity` naming the object; `Key` for a wrong identity; `Unavailable` for
/// the store.
pub async fn verify_tail(repo: &Repository, path: &Path, size: u64, identities: &Identities) -> Result<()> {
    use std::io::{Seek, SeekFrom};
    let what = format!("object {path}");
    let reader = RangeReader {
        runtime: tokio::runtime::Handle::current(),
        store: repo.store(),
        path: path.clone(),
        size,
        pos: 0,
        window: Bytes::new(),
        window_start: 0,
    };
    let identities = identities.clone();
    tokio::task::spawn_blocking(move || {
        let decryptor = age::Decryptor::new(reader).map_err(|e| decrypt_error(e, &what))?;
        let mut plain = decryptor.decrypt(identities.iter()).map_err(|e| decrypt_error(e, &what))?;
        plain.seek(SeekFrom::End(0)).map_err(|e| match e.get_ref().and_then(|i| i.downcast_ref::<Error>()) {
            Some(inner) => Error::new(inner.kind(), inner.report()),
            None => Error::integrity(format!("{what} is truncated or damaged at its end: {e}")),
        })?;
        Ok(())
    })
    .await
    .map_err(|e| Error::internal(format!("tail check task: {e}")))?
}

/// `Read + Seek` over an object with range requests (blocking: used on a blocking thread).
struct RangeReader {
    runtime: tokio::runtime::Handle,
    store: Arc<dyn ObjectStore>,
    path: Path,
    size: u64,
    pos: u64,
    window: Bytes,
    window_start: u64,
}

/// The least a range request fetches (age reads its header in small pieces).
const RANGE_WINDOW: u64 = 80 * 1024;

impl Read for RangeReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.pos >= self.size || buf.is_empty() {
            return Ok(0);
        }
        let in_window = self.pos >= self.window_start && self.pos < self.window_start + self.window.len() as u64;
        if !in_window {
            let end = (self.pos + RANGE_WINDOW.max(buf.len() as u64)).min(self.size);
            let (store, path, range) = (self.store.clone(), self.path.clone(), self.pos..end);
            let bytes = self
                .runtime
                .block_on(async move { store.get_range(&path, range).await })
                .map_err(|e| std::io::Error::other(Error::from(e)))?;
            self.window = bytes;
            self.window_start = self.pos;
        }
        let offset = (self.pos - self.window_start) as usize;
        let n = buf.len().min(self.window.len() - offset);
        buf[..n].copy_from_slice(&self.window[offset..offset + n]);
        self.pos += n as u64;
        Ok(n)
    }
}

impl std::io::Seek for RangeReader {
    fn seek(&mut self, pos: std::io::SeekFrom) -> std::io::Result<u64> {
        let target = match pos {
            std::io::SeekFrom::Start(p) => Some(p),
            std::io::SeekFrom::End(d) => self.size.checked_add_signed(d),
            std::io::SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = target.ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "seek before 0"))?;
        Ok(self.pos)
    }
}
