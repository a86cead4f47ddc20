//! Opening the object store behind a repository URL: `file://` (local folder) and `s3://`
//! (AWS or any S3-compatible server), with retries bounded so an unreachable bucket fails
//! in seconds, not minutes.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use object_store::ObjectStore;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::prefix::PrefixStore;
use object_store::{BackoffConfig, ClientOptions, RetryConfig};

use crate::config::RepositoryConfig;
use crate::error::{Error, ErrorKind, Result};

/// An opened store and, for `file://`, its root folder (used to fsync what we write).
pub struct OpenedStore {
    pub store: Arc<dyn ObjectStore>,
    pub local_root: Option<PathBuf>,
}

/// Opens the store for `cfg.url`. With `create`, a missing local folder is created.
///
/// Errors: `Config` for an unsupported or malformed URL or S3 settings, `NotFound` for a
/// missing local folder.
pub fn open(cfg: &RepositoryConfig, create: bool) -> Result<OpenedStore> {
    let url = url::Url::parse(&cfg.url)
        .map_err(|e| Error::config(format!("repository.url {:?} is not a URL: {e}", cfg.url)))?;
    match url.scheme() {
        "file" => {
            let root = url
                .to_file_path()
                .map_err(|_| Error::config(format!("repository.url {:?} is not a local path", cfg.url)))?;
            if create {
                std::fs::create_dir_all(&root)
                    .map_err(|e| Error::config(format!("cannot create {}: {e}", root.display())))?;
            } else if !root.is_dir() {
                return Err(Error::not_found(format!(
                    "the repository folder {} does not exist. Check repository.url, or run \
                     `tidemark init --repo {}`",
                    root.display(),
                    cfg.url
                )));
            }
            let store = LocalFileSystem::new_with_prefix(&root)
                .map_err(|e| Error::config(format!("cannot open {}: {e}", root.display())))?
                .with_automatic_cleanup(true);
            Ok(OpenedStore { store: Arc::new(store), local_root: Some(root) })
        }
        "s3" => {
            let bucket = url
                .host_str()
                .filter(|b| !b.is_empty())
                .ok_or_else(|| Error::config(format!("repository.url {:?} names no bucket", cfg.url)))?;
            let mut builder = AmazonS3Builder::from_env()
                .with_bucket_name(bucket)
                .with_retry(RetryConfig {
                    backoff: BackoffConfig::default(),
                    max_retries: 4,
                    retry_timeout: Duration::from_secs(60),
                })
                .with_client_options(
                    ClientOptions::new()
                        .with_connect_timeout(Duration::from_secs(10))
                        .with_allow_http(cfg.allow_http.unwrap_or(false)),
                );
            if let Some(endpoint) = &cfg.endpoint {
                builder = builder.with_endpoint(endpoint);
            }
            if let Some(region) = &cfg.region {
                builder = builder.with_region(region);
            } else if std::env::var_os("AWS_REGION").is_none() && std::env::var_os("AWS_DEFAULT_REGION").is_none() {
                builder = builder.with_region("us-east-1");
            }
            if let Some(path_style) = cfg.path_style {
                builder = builder.with_virtual_hosted_style_request(!path_style);
            }
            if let Some(key) = &cfg.access_key_id {
                builder = builder.with_access_key_id(key.resolve()?);
            }
            if let Some(secret) = &cfg.secret_access_key {
                builder = builder.with_secret_access_key(secret.resolve()?);
            }
            // The builder's own error text names settings, never credential values.
            let s3 = builder
                .build()
                .map_err(|e| Error::new(ErrorKind::Config, format!("cannot set up S3 for {}: {e}", cfg.url)))?;
            let prefix = url.path().trim_matches('/');
            let store: Arc<dyn ObjectStore> =
                if prefix.is_empty() { Arc::new(s3) } else { Arc::new(PrefixStore::new(s3, prefix)) };
            Ok(OpenedStore { store, local_root: None })
        }
        other => {
            Err(Error::config(format!("repository.url scheme {other}:// is not supported yet; use file:// or s3://")))
        }
    }
}
