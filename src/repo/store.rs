//! Opening the object store behind a repository URL: `file://` (local folder), `s3://`
//! (AWS or any S3-compatible server), `gs://` (Google Cloud Storage) and `az://` (Azure
//! Blob Storage), with retries bounded so an unreachable bucket fails in seconds, not
//! minutes.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use object_store::ObjectStore;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::{BackoffConfig, ClientOptions, RetryConfig};

use crate::config::{LockMode, RepositoryConfig};
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
    /// One connection pool for the calls made here (a lock after every write).
    client: reqwest::Client,
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
        use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
        let full_prefix = format!("{}{prefix}", self.prefix);
        let mut out = Vec::new();
        let mut markers: Option<(String, String)> = None;
        loop {
            let mut sub = format!("prefix={}", utf8_percent_encode(&full_prefix, NON_ALPHANUMERIC));
            if let Some((key, id)) = &markers {
                sub.push_str(&format!(
                    "&key-marker={}&upload-id-marker={}",
                    utf8_percent_encode(key, NON_ALPHANUMERIC),
                    utf8_percent_encode(id, NON_ALPHANUMERIC)
                ));
            }
            // `uploads` is a bare sub-resource word, which SigV4 signs as `uploads=`.
            sub.push_str("&uploads=");
            let (status, _, body) = self.send(http::Method::GET, None, &sub, &[], Vec::new()).await?;
            if !status.is_success() {
                return Err(refused(status, &body, "listing incomplete uploads"));
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

    /// A request object_store does not make, signed with its SigV4 authorizer (every
    /// header given here is signed): the status, headers and body of the answer. `key` is
    /// below the repository's prefix; `sub` is the sub-resource (`retention`, `object-lock`)
    /// and more query text.
    async fn send(
        &self,
        method: http::Method,
        key: Option<&Path>,
        sub: &str,
        headers: &[(&str, String)],
        body: Vec<u8>,
    ) -> Result<(http::StatusCode, http::HeaderMap, String)> {
        use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
        const KEY: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~').remove(b'/');
        let url = match key {
            Some(key) => {
                format!("{}/{}?{sub}", self.bucket_url, utf8_percent_encode(&format!("{}{key}", self.prefix), KEY))
            }
            None => format!("{}/?{sub}", self.bucket_url),
        };
        if url.starts_with("http://") && !self.allow_http {
            return Err(Error::config("the S3 endpoint is http:// but allow-http is not set"));
        }
        let credential = self.s3.credentials().get_credential().await.map_err(Error::from)?;
        let mut builder = http::Request::builder().method(method.clone()).uri(&url);
        for (name, value) in headers {
            builder = builder.header(*name, value);
        }
        let mut request: object_store::client::HttpRequest = builder
            .body(object_store::client::HttpRequestBody::from(body.clone()))
            .map_err(|e| Error::internal(format!("building an S3 request: {e}")))?;
        object_store::aws::AwsAuthorizer::new(&credential, "s3", &self.region)
            .try_authorize(&mut request, None)
            .map_err(Error::from)?;
        let mut send = self.client.request(method, &url).body(body);
        for (name, value) in request.headers() {
            send = send.header(name.as_str(), value.as_bytes());
        }
        let unavailable =
            |e: reqwest::Error| Error::new(ErrorKind::Unavailable, format!("S3 {sub}: {}", e.without_url()));
        let response = send.send().await.map_err(unavailable)?;
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.map_err(unavailable)?;
        Ok((http::StatusCode::from_u16(status.as_u16()).unwrap_or(http::StatusCode::BAD_GATEWAY), headers, text))
    }

    /// Whether the bucket has object lock enabled (GetObjectLockConfiguration).
    ///
    /// Errors: `Unavailable` when the bucket cannot be asked; `Config` when it refuses.
    pub async fn object_lock_enabled(&self) -> Result<bool> {
        let (status, _, body) = self.send(http::Method::GET, None, "object-lock", &[], Vec::new()).await?;
        match status {
            s if s.is_success() => Ok(body.contains("<ObjectLockEnabled>Enabled</ObjectLockEnabled>")),
            http::StatusCode::NOT_FOUND => Ok(false),
            s => Err(refused(s, &body, "reading the bucket's object lock configuration")),
        }
    }

    /// An object's retention, from HeadObject's `x-amz-object-lock-*` headers (what S3
    /// returns with s3:GetObjectRetention; moto has no GetObjectRetention call): its mode
    /// and retain-until date, `None` when it has none. `version`: of that version.
    ///
    /// Errors: `NotFound` when the object is not there; `Unavailable`/`Config` otherwise.
    pub async fn retention(&self, key: &Path) -> Result<Option<(LockMode, chrono::DateTime<chrono::Utc>)>> {
        self.retention_of(key, None).await
    }

    async fn retention_of(
        &self,
        key: &Path,
        version: Option<&str>,
    ) -> Result<Option<(LockMode, chrono::DateTime<chrono::Utc>)>> {
        use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
        let sub =
            version.map(|v| format!("versionId={}", utf8_percent_encode(v, NON_ALPHANUMERIC))).unwrap_or_default();
        let (status, headers, body) = self.send(http::Method::HEAD, Some(key), &sub, &[], Vec::new()).await?;
        if status == http::StatusCode::NOT_FOUND {
            return Err(Error::not_found(format!("object {key} is not in the repository")));
        }
        if !status.is_success() {
            return Err(refused(status, &body, &format!("reading the retention of {key}")));
        }
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
        let (Some(mode), Some(until)) =
            (header("x-amz-object-lock-mode"), header("x-amz-object-lock-retain-until-date"))
        else {
            return Ok(None);
        };
        let until = chrono::DateTime::parse_from_rfc3339(&until)
            .map_err(|e| {
                Error::new(ErrorKind::Unavailable, format!("S3's retain-until date of {key} is unreadable: {e}"))
            })?
            .with_timezone(&chrono::Utc);
        let mode = if mode.eq_ignore_ascii_case("COMPLIANCE") { LockMode::Compliance } else { LockMode::Governance };
        Ok(Some((mode, until)))
    }

    /// Sets an object's retention (PutObjectRetention). S3 lets a date move later, never
    /// earlier (in compliance mode; in governance mode not without a bypass tidemark never asks for).
    ///
    /// Errors: `Config` when S3 refuses (no permission, or a shorter date); `Unavailable`.
    pub async fn set_retention(&self, key: &Path, mode: LockMode, until: chrono::DateTime<chrono::Utc>) -> Result<()> {
        use base64::Engine;
        use md5::Digest;
        let body = format!(
            "<Retention xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Mode>{}</Mode><RetainUntilDate>{}</RetainUntilDate></Retention>",
            mode.as_s3(),
            until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        )
        .into_bytes();
        let md5 = base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(&body));
        let headers = [("content-md5", md5), ("content-type", "application/xml".to_string())];
        let (status, _, text) = self.send(http::Method::PUT, Some(key), "retention", &headers, body).await?;
        if status.is_success() {
            return Ok(());
        }
        Err(refused(status, &text, &format!("locking {key} until {}", until.to_rfc3339())))
    }

    /// The stored versions of exactly `key` (ListObjectVersions), newest first, each with
    /// its lock: after an overwrite or a plain delete by someone else, the locked version
    /// is still there to be made current again (docs/guide/09-security.md, "Object lock").
    ///
    /// Errors: `Unavailable`/`Config` for the bucket.
    pub async fn versions(&self, key: &Path) -> Result<Vec<ObjectVersion>> {
        use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
        let full = format!("{}{key}", self.prefix);
        let sub = format!("prefix={}&versions", utf8_percent_encode(&full, NON_ALPHANUMERIC));
        let (status, _, body) = self.send(http::Method::GET, None, &sub, &[], Vec::new()).await?;
        if !status.is_success() {
            return Err(refused(status, &body, &format!("listing the versions of {key}")));
        }
        let listed: ListVersions = quick_xml::de::from_str(&body)
            .map_err(|e| Error::new(ErrorKind::Unavailable, format!("S3's list of versions is unreadable: {e}")))?;
        let mut out = Vec::new();
        for v in listed.version.into_iter().filter(|v| v.key == full) {
            let until = self.retention_of(key, Some(&v.version_id)).await?.map(|(_, until)| until);
            out.push(ObjectVersion {
                version: v.version_id,
                latest: v.is_latest,
                modified: v.last_modified,
                locked: until.is_some_and(|u| u > chrono::Utc::now()),
                retain_until: until,
            });
        }
        out.sort_by_key(|v| std::cmp::Reverse(v.modified));
        Ok(out)
    }

    /// Deletes one version of an object (DeleteObject with versionId); S3 refuses a
    /// locked version.
    ///
    /// Errors: `Refused` for a locked version; `Config`/`Unavailable` otherwise.
    pub async fn delete_version(&self, key: &Path, version: &str) -> Result<()> {
        use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
        let sub = format!("versionId={}", utf8_percent_encode(version, NON_ALPHANUMERIC));
        let (status, _, body) = self.send(http::Method::DELETE, Some(key), &sub, &[], Vec::new()).await?;
        match status {
            s if s.is_success() || s == http::StatusCode::NOT_FOUND => Ok(()),
            http::StatusCode::FORBIDDEN if s3_code(&body) == "AccessDenied" => {
                Err(Error::new(ErrorKind::Refused, format!("S3 refused to delete {key}: it is locked (object lock)")))
            }
            s => Err(refused(s, &body, &format!("deleting {key}"))),
        }
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

/// One stored version of an object (see [`S3Bucket::versions`]).
#[derive(Debug, Clone)]
pub struct ObjectVersion {
    pub version: String,
    pub latest: bool,
    pub modified: chrono::DateTime<chrono::Utc>,
    pub retain_until: Option<chrono::DateTime<chrono::Utc>>,
    /// Its lock has not ended yet.
    pub locked: bool,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListVersions {
    #[serde(default)]
    version: Vec<ListedVersion>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListedVersion {
    key: String,
    version_id: String,
    is_latest: bool,
    last_modified: chrono::DateTime<chrono::Utc>,
}

/// The `<Code>` of an S3 error body.
fn s3_code(body: &str) -> &str {
    body.split("<Code>").nth(1).and_then(|r| r.split("</Code>").next()).unwrap_or("")
}

/// An S3 refusal as an error: server errors are `Unavailable` (retry), the rest `Config`.
fn refused(status: http::StatusCode, body: &str, doing: &str) -> Error {
    let kind = if status.is_server_error() { ErrorKind::Unavailable } else { ErrorKind::Config };
    Error::new(kind, format!("S3 refused {doing}: {status} {}", s3_code(body)))
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
                fs_err::create_dir_all(&root)
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
            let bucket = bucket_of(&url, cfg)?;
            let mut builder = AmazonS3Builder::from_env()
                .with_bucket_name(bucket)
                .with_retry(retries())
                .with_client_options(client_options(cfg));
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
                client: reqwest::Client::builder()
                    .timeout(Duration::from_secs(30))
                    .build()
                    .map_err(|e| Error::internal(format!("cannot build an HTTP client: {e}")))?,
            };
            let store: Arc<dyn ObjectStore> =
                if prefix.is_empty() { Arc::new(s3) } else { Arc::new(PrefixStore::new(s3, prefix)) };
            Ok(OpenedStore { store, local_root: None, s3: Some(bucket) })
        }
        "gs" | "gcs" => {
            let bucket = bucket_of(&url, cfg)?;
            let mut builder = GoogleCloudStorageBuilder::from_env()
                .with_bucket_name(bucket)
                .with_retry(retries())
                .with_client_options(client_options(cfg));
            if let Some(key) = &cfg.service_account {
                builder = builder.with_service_account_key(key.resolve()?);
            }
            if let Some(endpoint) = &cfg.endpoint {
                builder = builder.with_base_url(endpoint);
            }
            let gcs = builder.build().map_err(|e| {
                Error::new(
                    ErrorKind::Config,
                    format!(
                        "cannot set up Google Cloud Storage for {}: {}. Give repository.service-account as \
                         file:/path/key.json (a service account's JSON key), or set GOOGLE_APPLICATION_CREDENTIALS",
                        cfg.url,
                        crate::error::chain_text(&e)
                    ),
                )
            })?;
            Ok(prefixed(gcs, &url))
        }
        "az" | "azure" => {
            let container = bucket_of(&url, cfg)?;
            let mut builder = MicrosoftAzureBuilder::from_env()
                .with_container_name(container)
                .with_retry(retries())
                .with_client_options(client_options(cfg));
            if let Some(account) = &cfg.account {
                builder = builder.with_account(account);
            }
            if let Some(key) = &cfg.access_key {
                builder = builder.with_access_key(key.resolve()?);
            }
            if let Some(sas) = &cfg.sas_token {
                let sas = sas.resolve()?;
                let pairs: Vec<(String, String)> = url::form_urlencoded::parse(sas.trim_start_matches('?').as_bytes())
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect();
                builder = builder.with_sas_authorization(pairs);
            }
            if let Some(endpoint) = &cfg.endpoint {
                builder = builder.with_endpoint(endpoint.clone());
            }
            let azure = builder.build().map_err(|e| {
                Error::new(
                    ErrorKind::Config,
                    format!(
                        "cannot set up Azure Blob Storage for {}: {}. Give repository.account and \
                         repository.access-key (or sas-token) as env:VARIABLE or file:/path",
                        cfg.url,
                        crate::error::chain_text(&e)
                    ),
                )
            })?;
            Ok(prefixed(azure, &url))
        }
        other => Err(Error::config(format!(
            "repository.url scheme {other}:// is not supported; use file://, s3://, gs:// or az://"
        ))),
    }
}

/// The bucket (or container) a cloud URL names.
fn bucket_of<'u>(url: &'u url::Url, cfg: &RepositoryConfig) -> Result<&'u str> {
    url.host_str()
        .filter(|b| !b.is_empty())
        .ok_or_else(|| Error::config(format!("repository.url {:?} names no bucket or container", cfg.url)))
}

/// Retries bounded so an unreachable store fails in about a minute at most.
fn retries() -> RetryConfig {
    RetryConfig { backoff: BackoffConfig::default(), max_retries: 4, retry_timeout: Duration::from_secs(60) }
}

fn client_options(cfg: &RepositoryConfig) -> ClientOptions {
    ClientOptions::new().with_connect_timeout(Duration::from_secs(10)).with_allow_http(cfg.allow_http.unwrap_or(false))
}

/// A cloud store below the URL's path (the repository's prefix inside the bucket).
fn prefixed(store: impl ObjectStore, url: &url::Url) -> OpenedStore {
    let prefix = url.path().trim_matches('/');
    let store: Arc<dyn ObjectStore> =
        if prefix.is_empty() { Arc::new(store) } else { Arc::new(PrefixStore::new(store, prefix)) };
    OpenedStore { store, local_root: None, s3: None }
}
