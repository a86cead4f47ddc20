//! Opening the object store behind a repository URL: `file://` (local folder) and `s3://`
//! (AWS or any S3-compatible server), with retries bounded so an unreachable bucket fails
//! in seconds, not minutes.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use object_store::ObjectStore;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::local::LocalFileSystem;
use object_store::prefix::PrefixStore;
use object_store::{BackoffConfig, ClientOptions, RetryConfig};

use crate::config::RepositoryConfig;
use crate::error::{Error, ErrorKind, Result};

/// An opened store and, for `file://`, its root folder (used to fsync what we write); for
/// `s3://`, what listing incomplete multipart uploads needs.
pub struct OpenedStore {
    pub store: Arc<dyn ObjectStore>,
    pub local_root: Option<PathBuf>,
    pub s3: Option<S3Bucket>,
}

/// The S3 bucket behind a repository, for the calls object_store does not make:
/// ListMultipartUploads (signed with object_store's own SigV4 authorizer) and aborting one.
#[derive(Clone, Debug)]
pub struct S3Bucket {
    s3: AmazonS3,
    /// `https://host/bucket` (path style) or `https://bucket.host`: bucket-level requests.
    bucket_url: String,
    region: String,
    /// The repository's prefix inside the bucket (`""` or `prefix/`).
    prefix: String,
    allow_http: bool,
}

/// An upload S3 started and nobody completed or aborted.
#[derive(Debug, Clone)]
pub struct MultipartUpload {
    /// The object's key below the repository's prefix.
    pub key: object_store::path::Path,
    pub upload_id: String,
    pub initiated: chrono::DateTime<chrono::Utc>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListUploads {
    #[serde(default)]
    upload: Vec<ListedUpload>,
    #[serde(default)]
    is_truncated: bool,
    next_key_marker: Option<String>,
    next_upload_id_marker: Option<String>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListedUpload {
    key: String,
    upload_id: String,
    initiated: chrono::DateTime<chrono::Utc>,
}

impl S3Bucket {
    /// The incomplete multipart uploads below `prefix` (a key prefix inside the repository).
    ///
    /// Errors: `Unavailable` when the bucket cannot be asked; `Config` when it refuses.
    pub async fn multipart_uploads(&self, prefix: &str) -> Result<Vec<MultipartUpload>> {
        let full_prefix = format!("{}{prefix}", self.prefix);
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| Error::internal(format!("cannot build an HTTP client: {e}")))?;
        let mut out = Vec::new();
        let mut markers: Option<(String, String)> = None;
        loop {
            let mut url = url::Url::parse(&format!("{}/", self.bucket_url))
                .map_err(|e| Error::config(format!("the S3 bucket URL is malformed: {e}")))?;
            {
                let mut query = url.query_pairs_mut();
                query.append_pair("prefix", &full_prefix);
                if let Some((key, id)) = &markers {
                    query.append_pair("key-marker", key);
                    query.append_pair("upload-id-marker", id);
                }
            }
            // `uploads` is a bare sub-resource word, which SigV4 signs as `uploads=`.
            let url = format!("{}&uploads=", url.as_str());
            if url.starts_with("http://") && !self.allow_http {
                return Err(Error::config("the S3 endpoint is http:// but allow-http is not set"));
            }
            let credential = self.s3.credentials().get_credential().await.map_err(Error::from)?;
            let mut request: object_store::client::HttpRequest = http::Request::builder()
                .method(http::Method::GET)
                .uri(&url)
                .body(object_store::client::HttpRequestBody::from(Vec::new()))
                .map_err(|e| Error::internal(format!("building an S3 request: {e}")))?;
            object_store::aws::AwsAuthorizer::new(&credential, "s3", &self.region)
                .try_authorize(&mut request, None)
                .map_err(Error::from)?;
            let mut send = client.get(&url);
            for (name, value) in request.headers() {
                send = send.header(name.as_str(), value.as_bytes());
            }
            let response = send.send().await.map_err(|e| {
                Error::new(ErrorKind::Unavailable, format!("listing incomplete uploads: {}", e.without_url()))
            })?;
            let status = response.status();
            let body = response.text().await.map_err(|e| {
                Error::new(ErrorKind::Unavailable, format!("listing incomplete uploads: {}", e.without_url()))
            })?;
            if !status.is_success() {
                let kind = if status.is_server_error() { ErrorKind::Unavailable } else { ErrorKind::Config };
                let code = body.split("<Code>").nth(1).and_then(|r| r.split("</Code>").next()).unwrap_or("");
                return Err(Error::new(kind, format!("S3 refused to list incomplete uploads: {status} {code}")));
            }
            let listed: ListUploads = quick_xml::de::from_str(&body)
                .map_err(|e| Error::new(ErrorKind::Unavailable, format!("S3's list of uploads is unreadable: {e}")))?;
            for u in listed.upload {
                let Some(key) = u.key.strip_prefix(&self.prefix) else { continue };
                out.push(MultipartUpload {
                    key: object_store::path::Path::from(key),
                    upload_id: u.upload_id,
                    initiated: u.initiated,
                });
            }
            match (listed.is_truncated, listed.next_key_marker, listed.next_upload_id_marker) {
                (true, Some(key), Some(id)) => markers = Some((key, id)),
                _ => break,
            }
        }
        Ok(out)
    }

    /// Aborts an incomplete multipart upload (gone already is fine).
    pub async fn abort(&self, upload: &MultipartUpload) -> Result<()> {
        use object_store::multipart::MultipartStore;
        let key = object_store::path::Path::from(format!("{}{}", self.prefix, upload.key));
        match self.s3.abort_multipart(&key, &upload.upload_id).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
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
                .map_err(|()| Error::config(format!("repository.url {:?} is not a local path", cfg.url)))?;
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
            Ok(OpenedStore { store: Arc::new(store), local_root: Some(root), s3: None })
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
            let region = cfg
                .region
                .clone()
                .or_else(|| std::env::var("AWS_REGION").ok())
                .or_else(|| std::env::var("AWS_DEFAULT_REGION").ok())
                .unwrap_or_else(|| "us-east-1".into());
            let bucket_url = match (&cfg.endpoint, cfg.path_style.unwrap_or(false)) {
                (Some(endpoint), true) => format!("{}/{bucket}", endpoint.trim_end_matches('/')),
                (Some(endpoint), false) => match url::Url::parse(endpoint) {
                    Ok(e) => format!("{}://{bucket}.{}", e.scheme(), e.host_str().unwrap_or_default()),
                    Err(_) => format!("{}/{bucket}", endpoint.trim_end_matches('/')),
                },
                (None, _) => format!("https://{bucket}.s3.{region}.amazonaws.com"),
            };
            let bucket = S3Bucket {
                s3: s3.clone(),
                bucket_url,
                region,
                prefix: if prefix.is_empty() { String::new() } else { format!("{prefix}/") },
                allow_http: cfg.allow_http.unwrap_or(false),
            };
            let store: Arc<dyn ObjectStore> =
                if prefix.is_empty() { Arc::new(s3) } else { Arc::new(PrefixStore::new(s3, prefix)) };
            Ok(OpenedStore { store, local_root: None, s3: Some(bucket) })
        }
        other => {
            Err(Error::config(format!("repository.url scheme {other}:// is not supported yet; use file:// or s3://")))
        }
    }
}
