//! age keys: parsing recipients (public, enough to back up), loading identities (secret,
//! needed to restore) and generating a new identity file with safe permissions.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use age::secrecy::ExposeSecret;

use std::fmt;
use std::path::PathBuf;

use crate::error::{Error, ErrorKind, Result};
use crate::secret::Secret;

/// The public keys every object is encrypted to.
#[derive(Clone)]
pub struct Recipients(Arc<Vec<age::x25519::Recipient>>);

impl Recipients {
    /// Parses `age1...` recipients. Errors: `Key` for an empty list or a malformed key.
    pub fn parse(keys: &[String]) -> Result<Recipients> {
        if keys.is_empty() {
            return Err(Error::new(
                ErrorKind::Key,
                "no age recipients configured: set repository.recipients in tidemark.toml",
            ));
        }
        let parsed = keys.iter().map(|k| parse_recipient(k)).collect::<Result<Vec<_>>>()?;
        Ok(Recipients(Arc::new(parsed)))
    }

    pub fn iter(&self) -> impl Iterator<Item = &dyn age::Recipient> {
        self.0.iter().map(|r| r as &dyn age::Recipient)
    }

    pub fn to_strings(&self) -> Vec<String> {
        self.0.iter().map(std::string::ToString::to_string).collect()
    }
}

/// Parses one X25519 recipient. Errors: `Key`, quoting the (public) key.
pub fn parse_recipient(key: &str) -> Result<age::x25519::Recipient> {
    key.trim()
        .parse::<age::x25519::Recipient>()
        .map_err(|e| Error::new(ErrorKind::Key, format!("{key:?} is not an age X25519 recipient (age1...): {e}")))
}

/// The secret keys that can decrypt the repository.
#[derive(Clone)]
pub struct Identities(Arc<Vec<Box<dyn age::Identity + Send + Sync>>>);

impl Identities {
    /// Loads identities from a file or inline text. Errors: `Key` when missing or malformed;
    /// the message names the file, never its content.
    pub fn load(source: &IdentitySource) -> Result<Identities> {
        let (text, origin) = match source {
            IdentitySource::File(path) => {
                let text = fs_err::read_to_string(path).map_err(|e| {
                    Error::new(ErrorKind::Key, format!("cannot read the age identity file {}: {e}", path.display()))
                })?;
                (text, path.display().to_string())
            }
            IdentitySource::Inline(secret) => (secret.resolve()?, IDENTITY_ENV.to_string()),
        };
        Self::parse(&text, &origin)
    }

    /// Parses identity file text (`AGE-SECRET-KEY-1...` lines, `#` comments).
    pub fn parse(text: &str, origin: &str) -> Result<Identities> {
        let file = age::IdentityFile::from_buffer(text.as_bytes())
            .map_err(|_| Error::new(ErrorKind::Key, format!("{origin} is not an age identity file")))?;
        let ids = file
            .into_identities()
            .map_err(|_| Error::new(ErrorKind::Key, format!("{origin} holds an unsupported age identity")))?;
        if ids.is_empty() {
            return Err(Error::new(ErrorKind::Key, format!("{origin} holds no age identity")));
        }
        Ok(Identities(Arc::new(ids)))
    }

    pub fn iter(&self) -> impl Iterator<Item = &dyn age::Identity> {
        self.0.iter().map(|i| i.as_ref() as &dyn age::Identity)
    }
}

/// A freshly generated identity.
pub struct GeneratedIdentity {
    pub recipient: String,
    identity: age::x25519::Identity,
}

impl GeneratedIdentity {
    pub fn generate() -> Self {
        let identity = age::x25519::Identity::generate();
        GeneratedIdentity { recipient: identity.to_public().to_string(), identity }
    }

    /// The identity file text, in the format `age-keygen` writes.
    pub fn file_text(&self) -> String {
        format!(
            "# created: {}\n# public key: {}\n{}\n",
            chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            self.recipient,
            self.identity.to_string().expose_secret()
        )
    }

    /// Writes the identity to a new file with mode 0600, refusing to replace an existing one.
    pub fn write_new_file(&self, path: &Path) -> Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        let mut file =
            std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).map_err(|e| {
                if e.kind() == std::io::ErrorKind::AlreadyExists {
                    Error::new(
                        ErrorKind::AlreadyExists,
                        format!(
                            "{} already exists; tidemark never overwrites an identity. Pass it with \
                             --identity to use it, or choose another path",
                            path.display()
                        ),
                    )
                } else {
                    Error::from(e).context(format!("creating {}", path.display()))
                }
            })?;
        file.write_all(self.file_text().as_bytes())?;
        file.sync_all()?;
        Ok(())
    }

    pub fn identities(&self) -> Identities {
        Identities(Arc::new(vec![Box::new(self.identity.clone())]))
    }
}

/// Path of an age identity file; overrides `repository.identity-file`.
pub const IDENTITY_FILE_ENV: &str = "TIDEMARK_IDENTITY_FILE";
/// The age identity itself (the `AGE-SECRET-KEY-1...` text); overrides both files.
pub const IDENTITY_ENV: &str = "TIDEMARK_IDENTITY";

/// Where an age identity is read from.
#[derive(Clone)]
pub enum IdentitySource {
    File(PathBuf),
    Inline(Secret),
}

impl fmt::Debug for IdentitySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdentitySource::File(p) => write!(f, "File({})", p.display()),
            IdentitySource::Inline(_) => f.write_str("Inline(<redacted>)"),
        }
    }
}

/// The identity named by the environment alone, for commands that run without a config.
pub fn identity_source_from_env() -> Option<IdentitySource> {
    if let Ok(text) = std::env::var(IDENTITY_ENV)
        && !text.trim().is_empty()
    {
        return Some(IdentitySource::Inline(Secret::literal(text)));
    }
    match std::env::var_os(IDENTITY_FILE_ENV) {
        Some(p) if !p.is_empty() => Some(IdentitySource::File(PathBuf::from(p))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_identity_round_trips_through_its_file_text() {
        let g = GeneratedIdentity::generate();
        let ids = Identities::parse(&g.file_text(), "test").unwrap();
        assert_eq!(ids.iter().count(), 1);
        assert!(Recipients::parse(std::slice::from_ref(&g.recipient)).is_ok());
    }

    #[test]
    fn malformed_keys_are_key_errors() {
        assert_eq!(parse_recipient("age1nope").unwrap_err().kind(), ErrorKind::Key);
        let err = Identities::parse("AGE-SECRET-KEY-1GARBAGE\n", "id.txt").err().unwrap();
        assert_eq!(err.kind(), ErrorKind::Key);
        assert!(!err.message().contains("GARBAGE"));
        assert!(Recipients::parse(&[]).is_err());
    }
}
