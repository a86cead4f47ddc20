//! Signature objects beside signed objects (see [`crate::signing`]): written before the
//! object they sign, so a committed record is never unsigned; read and checked before a
//! signed object is trusted.

use sha2::{Digest, Sha256};

use super::{Key, Repository, layout};
use crate::error::{Error, ErrorKind, Result};
use crate::signing::{Signed, Signing};

impl Repository {
    /// This repository, signing and verifying with `signing`.
    pub fn with_signing(mut self, signing: Signing) -> Repository {
        self.signing = std::sync::Arc::new(signing);
        self
    }

    pub fn signing(&self) -> &Signing {
        &self.signing
    }

    /// Writes the signature of the object about to be written at `key` with content
    /// `sha256` (see [`crate::signing::statement`]). Without a signing key this is refused,
    /// unless unsigned writes are allowed (`--allow-unsigned`): a backup readers would
    /// refuse is worse than no backup taken.
    ///
    /// Errors: `Config` without a signing key; `AlreadyExists` when the key already has a
    /// signature of other content; those of the store.
    pub async fn sign(&self, key: &Key, sha256: &str) -> Result<()> {
        let Some(secret) = &self.signing.secret else {
            if self.signing.trust.allow_unsigned {
                return Ok(());
            }
            return Err(Error::config(format!(
                "cannot write {key}: repository.signing-key is not set, and tidemark signs every manifest and WAL \
                 file it writes. Create a key with `tidemark signing-key new --out tidemark-signing.key`, set \
                 repository.signing-key to it and add its public key to repository.trusted-signers (or pass \
                 --allow-unsigned to write unsigned backups that restores must also allow)"
            )));
        };
        let file = secret.sign(key.as_ref(), sha256);
        let sig_key = layout::signature(key);
        let body = serde_json::to_vec_pretty(&file).expect("a signature serializes");
        match self.put_once(&sig_key, body.clone()).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                // A retry of a write that got as far as its signature: a valid signature of
                // the same content by a trusted key is fine.
                let existing = self.get(&sig_key).await?.unwrap_or_default();
                if self.signing.trust.verify(key.as_ref(), sha256, Some(&existing)).is_ok() {
                    return Ok(());
                }
                if self.stored_size(key).await?.is_some() {
                    return Err(Error::new(ErrorKind::AlreadyExists, format!("{key} already exists")));
                }
                // A signature without its object (a write that stopped between the two, or
                // one planted ahead of it): it vouches for nothing, so it is replaced.
                tracing::warn!(object = %key, "replacing a signature whose object was never written");
                self.delete(&sig_key).await?;
                self.put_once(&sig_key, body).await
            }
            Err(e) => Err(e),
        }
    }

    /// [`Self::sign`] for content at hand: signs the SHA-256 of `bytes`.
    pub async fn sign_bytes(&self, key: &Key, bytes: &[u8]) -> Result<()> {
        self.sign(key, &hex::encode(Sha256::digest(bytes))).await
    }

    /// Checks the signature of the object at `key` with content `sha256` against the
    /// trusted signers.
    ///
    /// Errors: `Integrity` naming the object (unsigned, forged, moved, unknown signer);
    /// those of the store.
    pub async fn verify(&self, key: &Key, sha256: &str) -> Result<Signed> {
        let sig = self.get(&layout::signature(key)).await?;
        self.signing.trust.verify(key.as_ref(), sha256, sig.as_deref())
    }

    /// Who signed the object at `key`: with `sha256` as given (a WAL file's, from its
    /// name), else of its stored bytes (read here; records are small).
    ///
    /// Errors: those of [`Self::verify`]; `Integrity` when the object is gone.
    pub async fn signed_by(&self, key: &Key, sha256: Option<&str>) -> Result<Signed> {
        match sha256 {
            Some(sha) => self.verify(key, sha).await,
            None => match self.get(key).await? {
                Some(bytes) => self.verify_bytes(key, &bytes).await,
                None => Err(Error::integrity(format!("object {key} is missing from the repository"))),
            },
        }
    }

    /// [`Self::verify`] for content at hand.
    pub async fn verify_bytes(&self, key: &Key, bytes: &[u8]) -> Result<Signed> {
        self.verify(key, &hex::encode(Sha256::digest(bytes))).await
    }

    /// Copies the signature of the object at `key` (content `sha256`) from `from`, after
    /// checking it against *this* repository's trusted signers (a copy may trust fewer):
    /// written before the object, as [`Self::sign`] does. Unsigned objects pass only where
    /// unsigned ones are allowed, and then nothing is written.
    ///
    /// Errors: `Integrity` naming the object and the repository it came from when its
    /// signature is missing, forged or by a signer this repository does not trust; those
    /// of the stores.
    pub async fn copy_signature_from(&self, from: &Repository, key: &Key, sha256: &str) -> Result<()> {
        let sig_key = layout::signature(key);
        let sig = from.get(&sig_key).await?;
        self.signing
            .trust
            .verify(key.as_ref(), sha256, sig.as_deref())
            .map_err(|e| e.context(format!("in {}: not copied", from.url())))?;
        let Some(sig) = sig else { return Ok(()) };
        match self.put_once(&sig_key, sig).await {
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                // A copy that stopped after the signature: the one there must hold as well.
                self.verify(key, sha256).await.map(drop)
            }
            other => other,
        }
    }
}
