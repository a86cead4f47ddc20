//! Copying one object from a repository into another (a copy) byte for byte, checked on
//! the way: the stored bytes' SHA-256 and size against a manifest, or the decrypted
//! content against the SHA-256 its key names. Nothing that fails its check becomes
//! visible in the copy; nothing is decrypted that need not be. A copy with its own
//! recipients gets each object re-sealed instead ([`reseal_object`]).

use bytes::{Buf, Bytes};
use futures::StreamExt;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload, WriteMultipart};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use super::download::{Expect, decode, read_verified};
use super::upload::ObjectWriter;
use crate::error::{Error, ErrorKind, Result};
use crate::keys::{Identities, Recipients};
use crate::repo::Repository;
use crate::repo::manifest::ObjectEntry;

/// What a copied object is checked against.
#[derive(Debug, Clone)]
pub enum Check {
    /// What its manifest records (a snapshot object, a base backup's tar): the stored
    /// bytes' SHA-256 and size are checked (no decryption needed).
    Stored(ObjectEntry),
    /// The decrypted content's SHA-256 (and size when known): media and WAL, whose keys
    /// name their content.
    Content { sha256: String, size: Option<u64> },
    /// Nothing about its content is recorded: an empty marker (a pin, a WAL reach).
    Empty,
}

/// Feeds the verifier thread the stored bytes as they pass.
struct ChannelReader {
    rx: mpsc::Receiver<Bytes>,
    current: Bytes,
}

impl std::io::Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(chunk) => self.current = chunk,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current.advance(n);
        Ok(n)
    }
}

/// A verifier of decrypted content running beside the copy.
struct ContentCheck {
    tx: Option<mpsc::Sender<Bytes>>,
    done: tokio::task::JoinHandle<Result<()>>,
}

impl ContentCheck {
    fn start(expect: Expect, identities: Identities, what: String) -> ContentCheck {
        let (tx, rx) = mpsc::channel::<Bytes>(4);
        let (plain_tx, mut plain_rx) = mpsc::channel(4);
        tokio::spawn(async move { while plain_rx.recv().await.is_some() {} });
        let done = tokio::task::spawn_blocking(move || {
            decode(ChannelReader { rx, current: Bytes::new() }, &expect, &identities, &what, &plain_tx)
        });
        ContentCheck { tx: Some(tx), done }
    }

    async fn feed(&mut self, chunk: &Bytes) {
        if let Some(tx) = &self.tx
            && tx.send(chunk.clone()).await.is_err()
        {
            // The verifier stopped (it found something wrong): its result says what.
            self.tx = None;
        }
    }

    async fn result(mut self) -> Result<()> {
        self.tx = None;
        self.done.await.map_err(|e| Error::internal(format!("the copy's verifier failed: {e}")))?
    }
}

/// Where the copied bytes go: kept in memory up to a part, then a multipart upload.
enum Sink {
    Buffered(Vec<u8>),
    Multipart(WriteMultipart),
}

/// Copies `key` from `from` into `to`, checked as `check` says; returns the bytes copied.
/// Content checks need `identities`. A multipart upload that fails its check is aborted.
///
/// Errors: `Integrity` naming the object and the repository it came from when it is
/// missing or fails its check (nothing is then written); `AlreadyExists` when `to` has it
/// already; `Key` for a wrong identity; those of either store.
pub async fn copy_object(
    from: &Repository,
    to: &Repository,
    key: &Path,
    check: &Check,
    identities: Option<&Identities>,
) -> Result<u64> {
    let what = format!("object {key} in {}", from.url());
    let got = from.store().get(key).await.map_err(|e| match e {
        object_store::Error::NotFound { .. } => Error::integrity(format!("{what} is missing")),
        other => Error::from(other).context(format!("reading {what}")),
    })?;
    let mut content = match check {
        Check::Content { sha256, size } => {
            let identities = identities.ok_or_else(|| {
                Error::new(ErrorKind::Key, "checking media and WAL on their way to a copy needs the identity")
            })?;
            let expect = Expect::Content { sha256: sha256.clone(), size: *size };
            Some(ContentCheck::start(expect, identities.clone(), what.clone()))
        }
        _ => None,
    };
    let mut stream = got.into_stream();
    let (mut sha, mut size) = (Sha256::new(), 0u64);
    let mut sink = Sink::Buffered(Vec::new());
    let part_size = to.part_size();
    let failed = async {
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| Error::from(e).context(format!("reading {what}")))?;
            sha.update(&chunk);
            size += chunk.len() as u64;
            if let Some(content) = &mut content {
                content.feed(&chunk).await;
            }
            match &mut sink {
                Sink::Buffered(buf) => {
                    buf.extend_from_slice(&chunk);
                    if buf.len() >= part_size {
                        if to.stored_size(key).await?.is_some() {
                            return Err(already(key));
                        }
                        let upload = to.store().put_multipart(key).await.map_err(|e| upload_error(e, key))?;
                        let mut writer = WriteMultipart::new_with_chunk_size(upload, part_size);
                        writer.write(buf);
                        sink = Sink::Multipart(writer);
                    }
                }
                Sink::Multipart(writer) => writer.write(&chunk),
            }
            if let Sink::Multipart(writer) = &mut sink {
                writer.wait_for_capacity(2).await.map_err(|e| upload_error(e, key))?;
            }
        }
        Ok(())
    }
    .await;
    let checked = match (failed, check) {
        (Err(e), _) => Err(e),
        (Ok(()), Check::Stored(entry)) => {
            let (sha256, want) = (&entry.stored_sha256, entry.stored_size);
            let got = hex::encode(sha.finalize());
            if &got == sha256 && size == want {
                Ok(())
            } else {
                Err(Error::integrity(format!(
                    "{what} does not match its manifest (stored {size} bytes, sha256 {got}; expected {want} bytes, \
                     sha256 {sha256}): it was altered or truncated, and was not copied"
                )))
            }
        }
        (Ok(()), Check::Empty) if size != 0 => {
            Err(Error::integrity(format!("{what} should be an empty marker but holds {size} bytes; not copied")))
        }
        (Ok(()), _) => Ok(()),
    };
    let checked = match (checked, content) {
        (Ok(()), Some(content)) => {
            content.result().await.map_err(|e| e.context("the object was not copied".to_string()))
        }
        (other, _) => other,
    };
    if let Err(e) = checked {
        if let Sink::Multipart(writer) = sink {
            let _ = writer.abort().await;
        }
        return Err(e);
    }
    match sink {
        Sink::Buffered(buf) => {
            to.store()
                .put_opts(key, PutPayload::from(buf), PutOptions::from(PutMode::Create))
                .await
                .map_err(|e| upload_error(e, key))?;
        }
        Sink::Multipart(writer) => writer.finish().await.map_err(|e| upload_error(e, key)).map(drop)?,
    }
    to.make_durable(key)?;
    to.lock_written(key).await?;
    Ok(size)
}

/// What a re-sealed object is in the copy.
#[derive(Debug)]
pub enum Resealed {
    /// A snapshot object or a tar: what the copy's manifest records of it (the same
    /// plaintext, new stored bytes).
    Entry(ObjectEntry),
    /// A content-addressed object (media, WAL): its stored size.
    Unhashed(u64),
}

/// Copies `key` from `from` into `to` decrypted and encrypted again to `recipients` (a copy
/// with keys of its own): the source is read verified as `check` says, with `identities`,
/// and written anew (recompressed, since the stored form is compressed then encrypted).
/// Nothing that fails its check becomes visible in the copy.
///
/// Errors: `Integrity` naming the object and the repository it came from when it is
/// missing or fails its check; `Key` for a wrong identity or recipient; `Internal` for an
/// empty marker (copied as is, with [`copy_object`]); those of either store.
pub async fn reseal_object(
    from: &Repository,
    to: &Repository,
    key: &Path,
    check: &Check,
    identities: &Identities,
    recipients: &Recipients,
) -> Result<Resealed> {
    let (expect, name) = match check {
        Check::Stored(entry) => (Expect::Entry(entry.clone()), entry.name.clone()),
        Check::Content { sha256, size } => (Expect::Content { sha256: sha256.clone(), size: *size }, key.to_string()),
        Check::Empty => return Err(Error::internal(format!("{key} is an empty marker: it is copied, not re-sealed"))),
    };
    let in_source = |e: Error| e.context(format!("in {}: not copied", from.url()));
    let mut plain = read_verified(from, key, expect, identities).await.map_err(in_source)?;
    let mut writer = ObjectWriter::new(to, key.clone(), name, recipients)?;
    if matches!(check, Check::Content { .. }) {
        writer = writer.content_addressed();
    }
    // The last item of the stream is its verdict: nothing is finished before it.
    while let Some(chunk) = plain.recv().await {
        let written = match chunk {
            Ok(bytes) => writer.write(&bytes).await,
            Err(e) => Err(in_source(e)),
        };
        if let Err(e) = written {
            writer.abort().await;
            return Err(e);
        }
    }
    match check {
        Check::Stored(entry) => {
            let written = writer.finish().await?;
            if (written.plain_size, &written.plain_blake3) != (entry.plain_size, &entry.plain_blake3) {
                return Err(Error::internal(format!("{key} was re-sealed with other content than its manifest's")));
            }
            Ok(Resealed::Entry(written))
        }
        _ => Ok(Resealed::Unhashed(writer.finish_unhashed().await?)),
    }
}

fn already(key: &Path) -> Error {
    Error::new(ErrorKind::AlreadyExists, format!("object {key} already exists in the copy; tidemark never overwrites"))
}

fn upload_error(e: object_store::Error, key: &Path) -> Error {
    Error::from(e).context(format!("copying {key}"))
}
