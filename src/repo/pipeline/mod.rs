//! Streaming stages between a source and the object store: plaintext BLAKE3 -> zstd -> age
//! -> SHA-256 of the stored bytes -> upload, and back. Each stage reports its hash and byte
//! count when the stream is drained, never in a second pass; memory stays bounded.

mod download;
mod transfer;
mod upload;

pub use download::{Expect, ObjectStream, read_object, read_to_end, read_verified, stream_of, verify_tail};
pub use transfer::{Check, Resealed, copy_object, reseal_object};
pub use upload::{ObjectWriter, finish_aborts};

use std::io::{Read, Write};

use crate::error::{Error, ErrorKind, Result};
use crate::keys::{Identities, Recipients};

/// zstd level for everything tidemark writes: level 1 is fast and still shrinks table data
/// about 7x; higher levels cost more CPU than the network or disk they save here.
pub const ZSTD_LEVEL: i32 = 1;
/// Size of the batches fed to the compressor (COPY arrives a row at a time).
pub const BATCH_SIZE: usize = 1 << 20;

/// Encrypts a small value (a manifest) whole.
pub fn encrypt_small(plain: &[u8], recipients: &Recipients) -> Result<Vec<u8>> {
    let encryptor = age::Encryptor::with_recipients(recipients.iter())
        .map_err(|e| Error::new(ErrorKind::Key, format!("cannot encrypt: {e}")))?;
    let mut out = Vec::with_capacity(plain.len() + 256);
    let mut writer = encryptor.wrap_output(&mut out)?;
    writer.write_all(plain)?;
    writer.finish()?;
    Ok(out)
}

/// Decrypts a small value read whole. `what` names it in errors.
///
/// Errors: `Key` when no identity matches, `Integrity` when the data is corrupt.
pub fn decrypt_small(stored: &[u8], identities: &Identities, what: &str) -> Result<Vec<u8>> {
    let decryptor = age::Decryptor::new_buffered(stored).map_err(|e| decrypt_error(e, what))?;
    let mut reader = decryptor.decrypt(identities.iter()).map_err(|e| decrypt_error(e, what))?;
    let mut out = Vec::new();
    reader.read_to_end(&mut out).map_err(|e| read_error(&e, what))?;
    Ok(out)
}

/// Maps age's header/key errors to tidemark's kinds.
pub(crate) fn decrypt_error(e: age::DecryptError, what: &str) -> Error {
    match e {
        age::DecryptError::NoMatchingKeys => Error::new(
            ErrorKind::Key,
            format!(
                "none of the configured age identities can decrypt {what}: this repository was \
                 encrypted to other keys. Check repository.identity-file (or TIDEMARK_IDENTITY_FILE)"
            ),
        ),
        other => {
            Error::integrity(format!("{what} is corrupt or was tampered with (age: {other}); it cannot be trusted"))
        }
    }
}

/// Maps a failure while reading a decrypted, decompressed stream.
pub(crate) fn read_error(e: &std::io::Error, what: &str) -> Error {
    match e.kind() {
        std::io::ErrorKind::InvalidData | std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::Other => {
            Error::integrity(format!("{what} is corrupt or was tampered with: {e}"))
        }
        _ => Error::new(ErrorKind::Unavailable, format!("reading {what} failed: {e}")),
    }
}
