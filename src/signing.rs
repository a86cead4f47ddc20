//! Ed25519 signatures over what tidemark writes, so a holder of the bucket's credentials
//! and the age recipients (public keys) cannot write a backup tidemark would restore.
//!
//! Every record that says what a backup is (snapshot and base-backup manifests, restore
//! points, drill reports, audit checkpoints) and every WAL file gets a signature object
//! beside it, `<object key>.sig`: JSON naming the object's key, a SHA-256, the signer's
//! public key and the Ed25519 signature over the [`statement`] of the two. The key in the
//! statement binds a signature to its place: a manifest copied to another workspace or
//! replayed under another id, or a WAL file moved to another name, no longer verifies.
//!
//! Keys: the signing key is a PKCS#8 PEM file (`openssl pkey` reads it), separate from the
//! age identity; a host that only backs up needs it, a host that only restores needs the
//! public keys (`trusted-signers`, pinned in the config) and the age identity. Public keys
//! are written as the base64 of their DER `SubjectPublicKeyInfo`, the body of the PEM
//! public key file, so `base64 -d | openssl pkey -pubin -inform DER` makes the PEM.

use std::io::Write;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind, Result};

/// The first line of every signed statement, and the signature files' `format`.
pub const SIGNATURE_FORMAT: &str = "tidemark-signature-1";
/// Suffix of the signature object beside a signed object.
pub const SIGNATURE_SUFFIX: &str = ".sig";

/// The bytes signed for an object: three lines, each ending in `\n`: the format, the
/// object's key in the repository, and the SHA-256 (lowercase hex) the object is known by
/// (of its stored bytes; for a WAL file, of the decrypted file, which is also its name).
pub fn statement(key: &str, sha256: &str) -> Vec<u8> {
    format!("{SIGNATURE_FORMAT}\n{key}\n{sha256}\n").into_bytes()
}

/// A public key that signs: its text form is the base64 of the DER SubjectPublicKeyInfo.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SignerKey(VerifyingKey);

impl SignerKey {
    /// Parses the text form. Errors: `Key`, quoting the (public) text.
    pub fn parse(text: &str) -> Result<SignerKey> {
        let bad = |why: &str| {
            Error::new(
                ErrorKind::Key,
                format!(
                    "{text:?} is not a tidemark signer public key ({why}); `tidemark signing-key show` prints the \
                     public key of a signing key"
                ),
            )
        };
        let der = BASE64.decode(text.trim()).map_err(|_| bad("not base64"))?;
        VerifyingKey::from_public_key_der(&der).map(SignerKey).map_err(|_| bad("not an Ed25519 public key"))
    }

    /// The PEM public key file (`-----BEGIN PUBLIC KEY-----`), for openssl.
    pub fn to_pem(self) -> String {
        let body = self.to_string();
        let lines: Vec<&str> =
            body.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).expect("base64 is ASCII")).collect();
        format!("-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n", lines.join("\n"))
    }
}

impl std::fmt::Display for SignerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let der = self.0.to_public_key_der().expect("an Ed25519 key encodes");
        f.write_str(&BASE64.encode(der.as_bytes()))
    }
}

impl std::fmt::Debug for SignerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SignerKey({self})")
    }
}

/// The secret signing key. Never printed; its file is mode 0600.
#[derive(Clone)]
pub struct SigningSecret(SigningKey);

impl std::fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningSecret(public {})", self.public())
    }
}

impl SigningSecret {
    pub fn generate() -> SigningSecret {
        SigningSecret(SigningKey::from_bytes(&rand::random::<[u8; 32]>()))
    }

    pub fn public(&self) -> SignerKey {
        SignerKey(self.0.verifying_key())
    }

    /// Reads a key file (PKCS#8 PEM). Errors: `Key`, naming the file, never its content.
    pub fn load(path: &Path) -> Result<SigningSecret> {
        let text = fs_err::read_to_string(path).map_err(|e| {
            Error::new(ErrorKind::Key, format!("cannot read the signing key file {}: {e}", path.display()))
        })?;
        SigningKey::from_pkcs8_pem(text.trim()).map(SigningSecret).map_err(|_| {
            Error::new(
                ErrorKind::Key,
                format!(
                    "{} is not a tidemark signing key (an Ed25519 PKCS#8 PEM file, as `tidemark signing-key new` \
                     writes)",
                    path.display()
                ),
            )
        })
    }

    /// Writes the key to a new file with mode 0600, refusing to replace an existing one.
    pub fn write_new_file(&self, path: &Path) -> Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        let pem = self.0.to_pkcs8_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF).expect("a key encodes");
        let mut file =
            std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).map_err(|e| {
                if e.kind() == std::io::ErrorKind::AlreadyExists {
                    Error::new(
                        ErrorKind::AlreadyExists,
                        format!("{} already exists; tidemark never overwrites a signing key", path.display()),
                    )
                } else {
                    Error::new(ErrorKind::Config, format!("cannot create {}: {e}", path.display()))
                }
            })?;
        file.write_all(pem.as_bytes())?;
        file.sync_all()?;
        Ok(())
    }

    /// The signature file for an object.
    pub fn sign(&self, key: &str, sha256: &str) -> SignatureFile {
        let signature = self.0.sign(&statement(key, sha256));
        SignatureFile {
            format: SIGNATURE_FORMAT.into(),
            key: key.into(),
            sha256: sha256.into(),
            signer: self.public().to_string(),
            signature: BASE64.encode(signature.to_bytes()),
        }
    }
}

/// The content of a `.sig` object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignatureFile {
    pub format: String,
    pub key: String,
    pub sha256: String,
    /// The signer's public key (its text form).
    pub signer: String,
    /// Base64 of the 64-byte Ed25519 signature over [`statement`]`(key, sha256)`.
    pub signature: String,
}

/// Who may have written what tidemark reads: the pinned public keys, and whether unsigned
/// records are accepted (repositories written before tidemark signed).
#[derive(Debug, Clone, Default)]
pub struct Trust {
    pub signers: Vec<SignerKey>,
    pub allow_unsigned: bool,
}

/// A repository's signing setup: the key that signs what this host writes (none on a
/// host that only restores) and what it trusts when it reads.
#[derive(Debug, Clone, Default)]
pub struct Signing {
    pub secret: Option<SigningSecret>,
    pub trust: Trust,
}

impl Signing {
    /// From the config: the signing key file (already made absolute), the pinned public
    /// keys, and `--allow-unsigned`. The signing key's own public key is trusted.
    ///
    /// Errors: `Key` for an unreadable key file or a malformed public key.
    pub fn from_config(key_file: Option<&Path>, trusted: &[String], allow_unsigned: bool) -> Result<Signing> {
        let secret = key_file.map(SigningSecret::load).transpose()?;
        let mut signers = trusted.iter().map(|t| SignerKey::parse(t)).collect::<Result<Vec<_>>>()?;
        if let Some(own) = secret.as_ref().map(SigningSecret::public)
            && !signers.contains(&own)
        {
            signers.push(own);
        }
        Ok(Signing { secret, trust: Trust { signers, allow_unsigned } })
    }
}

/// What a verification found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signed {
    By(SignerKey),
    /// No signature, accepted because unsigned records are allowed.
    Unsigned,
}

impl Trust {
    /// Checks the signature file `sig` (`None`: there is none) of the object at `key` whose
    /// SHA-256 is `sha256`.
    ///
    /// Errors: `Integrity` naming the object: unsigned (unless allowed), a signature of
    /// another object or content, an unknown signer, a signature that does not verify.
    pub fn verify(&self, key: &str, sha256: &str, sig: Option<&[u8]>) -> Result<Signed> {
        let refuse = |why: String| Error::integrity(format!("object {key} {why}"));
        let Some(sig) = sig else {
            if self.allow_unsigned {
                return Ok(Signed::Unsigned);
            }
            return Err(refuse(
                "is not signed, so anyone holding the bucket's credentials and the age recipients could have \
                 written it. If the repository was written before tidemark signed its backups, pass \
                 --allow-unsigned"
                    .into(),
            ));
        };
        let file: SignatureFile =
            serde_json::from_slice(sig).map_err(|_| refuse("has a signature object that is not readable".into()))?;
        if file.format != SIGNATURE_FORMAT {
            return Err(refuse(format!("has a signature of unknown format {:?}", file.format)));
        }
        if file.key != key {
            return Err(refuse(format!(
                "carries the signature of another object ({}): it was moved or replayed",
                file.key
            )));
        }
        if file.sha256 != sha256 {
            return Err(refuse("does not have the content its signature names: it was replaced".into()));
        }
        let signer = SignerKey::parse(&file.signer).map_err(|_| refuse("names a malformed signer".into()))?;
        if !self.signers.contains(&signer) {
            return Err(refuse(format!(
                "is signed by {signer}, which is not among repository.trusted-signers in the config"
            )));
        }
        let bytes = BASE64.decode(&file.signature).map_err(|_| refuse("has a malformed signature".into()))?;
        let signature =
            ed25519_dalek::Signature::from_slice(&bytes).map_err(|_| refuse("has a malformed signature".into()))?;
        signer
            .0
            .verify_strict(&statement(key, sha256), &signature)
            .map_err(|_| refuse(format!("has a signature that does not verify with {signer}: it was forged")))?;
        Ok(Signed::By(signer))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trust(keys: &[&SigningSecret]) -> Trust {
        Trust { signers: keys.iter().map(|k| k.public()).collect(), allow_unsigned: false }
    }

    #[test]
    fn a_signature_verifies_only_for_its_key_content_and_a_trusted_signer() {
        let (a, b) = (SigningSecret::generate(), SigningSecret::generate());
        let sig = serde_json::to_vec(&a.sign("w/s/1/manifest.json.age", "aa")).unwrap();
        assert_eq!(
            trust(&[&b, &a]).verify("w/s/1/manifest.json.age", "aa", Some(&sig)).unwrap(),
            Signed::By(a.public())
        );
        for (key, sha, trusted) in [
            ("w/s/2/manifest.json.age", "aa", vec![&a]),
            ("w/s/1/manifest.json.age", "bb", vec![&a]),
            ("w/s/1/manifest.json.age", "aa", vec![&b]),
        ] {
            let err = trust(&trusted).verify(key, sha, Some(&sig)).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Integrity, "{key} {sha}");
            assert!(err.message().contains(key));
        }
        // A signature file edited to claim the other content or signer does not verify.
        let mut forged = a.sign("k", "aa");
        forged.sha256 = "bb".into();
        let forged = serde_json::to_vec(&forged).unwrap();
        assert!(trust(&[&a]).verify("k", "bb", Some(&forged)).unwrap_err().message().contains("forged"));
        let mut claimed = b.sign("k", "aa");
        claimed.signer = a.public().to_string();
        let claimed = serde_json::to_vec(&claimed).unwrap();
        assert!(trust(&[&a]).verify("k", "aa", Some(&claimed)).is_err());
    }

    #[test]
    fn unsigned_is_refused_unless_allowed() {
        let err = Trust::default().verify("k", "aa", None).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Integrity);
        assert!(err.message().contains("--allow-unsigned"));
        let lenient = Trust { signers: vec![], allow_unsigned: true };
        assert_eq!(lenient.verify("k", "aa", None).unwrap(), Signed::Unsigned);
        // Allowing unsigned records does not let a bad signature through.
        let sig = serde_json::to_vec(&SigningSecret::generate().sign("k", "aa")).unwrap();
        assert!(lenient.verify("k", "aa", Some(&sig)).is_err());
    }

    #[test]
    fn keys_round_trip_through_their_files_and_text() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tidemark-signing.key");
        let key = SigningSecret::generate();
        key.write_new_file(&path).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(fs_err::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(SigningSecret::load(&path).unwrap().public(), key.public());
        assert_eq!(key.write_new_file(&path).unwrap_err().kind(), ErrorKind::AlreadyExists);
        assert_eq!(SignerKey::parse(&key.public().to_string()).unwrap(), key.public());
        assert!(key.public().to_pem().starts_with("-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA"));
        fs_err::write(dir.path().join("bad"), "-----BEGIN PRIVATE KEY-----\nsecretsecret\n").unwrap();
        let err = SigningSecret::load(&dir.path().join("bad")).unwrap_err();
        assert!(!err.message().contains("secretsecret"));
        assert_eq!(SignerKey::parse("nope").unwrap_err().kind(), ErrorKind::Key);
    }
}
