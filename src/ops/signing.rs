//! `signing-key new` and `signing-key show`: the Ed25519 key that signs what tidemark
//! writes, and the public key restore-only hosts pin as `trusted-signers`.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::config::LoadedConfig;
use crate::error::{Error, Result};
use crate::signing::{SignerKey, SigningSecret};

/// A signing key's public half, in the two forms people paste.
#[derive(Debug, Clone, Serialize)]
pub struct SignerReport {
    pub key_file: Option<PathBuf>,
    /// The text `trusted-signers` takes (base64 of the DER public key).
    pub public_key: String,
    /// The same as a PEM public key file, for `openssl pkeyutl -verify`.
    pub pem: String,
}

fn report(key_file: Option<PathBuf>, public: SignerKey) -> SignerReport {
    SignerReport { key_file, public_key: public.to_string(), pem: public.to_pem() }
}

/// Generates a signing key into a new file (mode 0600).
///
/// Errors: `AlreadyExists` for an existing file; `Config` when it cannot be written.
pub fn new_key(path: &Path) -> Result<SignerReport> {
    let key = SigningSecret::generate();
    key.write_new_file(path)?;
    Ok(report(Some(path.to_path_buf()), key.public()))
}

/// The public key of `path`, else of the config's `repository.signing-key`.
///
/// Errors: `Usage` when neither names a key; `Key` for an unreadable key file.
pub fn show(path: Option<&Path>, config: Option<&LoadedConfig>) -> Result<SignerReport> {
    let file = match (path, config) {
        (Some(p), _) => p.to_path_buf(),
        (None, Some(c)) => match &c.config.repository.signing_key {
            Some(p) => c.resolve_path(p),
            None => return Err(Error::usage("the config sets no repository.signing-key; name a key file")),
        },
        (None, None) => {
            return Err(Error::usage("name a signing key file, or a config that sets repository.signing-key"));
        }
    };
    let key = SigningSecret::load(&file)?;
    Ok(report(Some(file), key.public()))
}
