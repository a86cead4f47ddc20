//! `init`: create a repository (its `repository.json`), an age identity when none is given,
//! and the `tidemark.toml` that points at both. Never overwrites any of the three.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::{Config, RepositoryConfig};
use crate::error::{Error, ErrorKind, Result};
use crate::keys::{GeneratedIdentity, Recipients};
use crate::repo::Repository;

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct InitOptions {
    /// `file:///path` or `s3://bucket/prefix`.
    pub repo: String,
    /// The config file to write.
    pub config_path: PathBuf,
    /// An existing age identity file to use instead of generating one.
    pub identity: Option<PathBuf>,
    /// More recipients (a break-glass key); with no identity, a backup-only setup.
    pub recipients: Vec<String>,
    /// Where a generated identity goes (default: `tidemark-identity.txt` beside the config).
    pub identity_out: Option<PathBuf>,
    /// An existing signing key to use instead of generating `tidemark-signing.key` beside
    /// the config.
    pub signing_key: Option<PathBuf>,
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub path_style: Option<bool>,
    pub allow_http: Option<bool>,
}

#[derive(Debug, Clone, Serialize)]
pub struct InitReport {
    pub repository: String,
    pub config_file: PathBuf,
    pub recipients: Vec<String>,
    pub identity_file: Option<PathBuf>,
    /// True when tidemark generated the identity: it must be kept safe, or nothing restores.
    pub generated_identity: bool,
    /// The Ed25519 key that signs everything written (generated unless one was given).
    pub signing_key: PathBuf,
    pub generated_signing_key: bool,
    /// Its public key, pinned as `trusted-signers` (and to pin on restore-only hosts).
    pub signer: String,
}

/// Creates the repository, identity and config.
///
/// Errors: `AlreadyExists` for an existing config file, identity file or repository;
/// `Key` for malformed keys; `Unavailable` for an unreachable store. Nothing is left
/// behind when it fails.
pub async fn init(opts: &InitOptions) -> Result<InitReport> {
    if opts.config_path.exists() {
        return Err(Error::new(
            ErrorKind::AlreadyExists,
            format!(
                "{} already exists; init never overwrites a config. Use --config to write another file",
                opts.config_path.display()
            ),
        ));
    }
    let config_dir =
        absolute(opts.config_path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")))?;
    let mut recipients = opts.recipients.clone();
    let mut generated = None;
    let identity_file = match &opts.identity {
        Some(path) => {
            let text = fs_err::read_to_string(path).map_err(|e| {
                Error::new(ErrorKind::Key, format!("cannot read the identity file {}: {e}", path.display()))
            })?;
            crate::keys::Identities::parse(&text, &path.display().to_string())?;
            recipients.extend(public_keys_of(&text));
            Some(absolute(path)?)
        }
        None if opts.recipients.is_empty() => {
            let identity = GeneratedIdentity::generate();
            let path = match &opts.identity_out {
                Some(p) => absolute(p)?,
                None => config_dir.join("tidemark-identity.txt"),
            };
            identity.write_new_file(&path)?;
            recipients.insert(0, identity.recipient.clone());
            generated = Some(path.clone());
            Some(path)
        }
        None => None,
    };
    let parsed = Recipients::parse(&recipients)?;
    let (signing_key, generated_signing) = match &opts.signing_key {
        Some(path) => (absolute(path)?, false),
        None => (config_dir.join("tidemark-signing.key"), true),
    };
    let signer = match signer_for(&signing_key, generated_signing) {
        Ok(signer) => signer,
        Err(e) => {
            // Nothing is left behind: not the identity generated above either.
            if let Some(path) = &generated {
                let _ = fs_err::remove_file(path);
            }
            return Err(e);
        }
    };
    let config = Config::new(
        RepositoryConfig {
            url: normalize_repo_url(&opts.repo)?,
            recipients: parsed.to_strings(),
            identity_file: identity_file.clone(),
            endpoint: opts.endpoint.clone(),
            region: opts.region.clone(),
            path_style: opts.path_style,
            allow_http: opts.allow_http,
            signing_key: Some(signing_key.clone()),
            trusted_signers: vec![signer.to_string()],
            ..Default::default()
        },
        Default::default(),
    );
    let created = async {
        Repository::init(&config.repository, &parsed).await?;
        write_new_file(&opts.config_path, &config.render_initial())
    }
    .await;
    if let Err(e) = created {
        if let Some(path) = &generated {
            let _ = fs_err::remove_file(path);
        }
        if generated_signing {
            let _ = fs_err::remove_file(&signing_key);
        }
        return Err(e);
    }
    Ok(InitReport {
        repository: config.repository.url.clone(),
        config_file: opts.config_path.clone(),
        recipients: parsed.to_strings(),
        identity_file,
        generated_identity: generated.is_some(),
        signing_key,
        generated_signing_key: generated_signing,
        signer: signer.to_string(),
    })
}

/// The public key of the signing key at `path`: generated there (a new file, never over
/// an existing one) or read from it.
fn signer_for(path: &Path, generate: bool) -> Result<crate::signing::SignerKey> {
    if !generate {
        return Ok(crate::signing::SigningSecret::load(path)?.public());
    }
    if path.exists() {
        return Err(Error::new(
            ErrorKind::AlreadyExists,
            format!(
                "{} already exists; init never overwrites a signing key. Pass it with --signing-key to use it",
                path.display()
            ),
        ));
    }
    let key = crate::signing::SigningSecret::generate();
    key.write_new_file(path)?;
    Ok(key.public())
}

/// A plain path is taken as a local repository.
fn normalize_repo_url(repo: &str) -> Result<String> {
    if repo.contains("://") {
        return Ok(repo.to_string());
    }
    let path = absolute(Path::new(repo))?;
    url::Url::from_directory_path(&path)
        .map(|u| u.to_string().trim_end_matches('/').to_string())
        .map_err(|()| Error::usage(format!("{repo:?} is neither a URL nor a usable path")))
}

fn absolute(p: &Path) -> Result<PathBuf> {
    std::path::absolute(p).map_err(|e| Error::usage(format!("bad path {}: {e}", p.display())))
}

/// The recipients of the X25519 identities in an identity file.
fn public_keys_of(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| l.starts_with("AGE-SECRET-KEY-"))
        .filter_map(|l| l.parse::<age::x25519::Identity>().ok())
        .map(|i| i.to_public().to_string())
        .collect()
}

/// Writes a file that must not exist yet.
pub fn write_new_file(path: &Path, text: &str) -> Result<()> {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            Error::new(ErrorKind::AlreadyExists, format!("{} already exists", path.display()))
        } else {
            Error::new(ErrorKind::Config, format!("cannot write {}: {e}", path.display()))
        }
    })?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    Ok(())
}
