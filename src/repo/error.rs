//! How the object store's errors read as tidemark errors: the one place that knows
//! `object_store::Error`.

use crate::error::{Error, ErrorKind, chain_text, has_io_kind, permission_denied};

/// Whether an object store error says the bucket does not exist (S3's `NoSuchBucket`,
/// which object_store reports as a missing object; Azure's `ContainerNotFound`; Google's
/// "bucket does not exist").
pub fn is_missing_bucket(e: &object_store::Error) -> bool {
    let text = chain_text(e);
    text.contains("NoSuchBucket") || text.contains("ContainerNotFound") || text.contains("bucket does not exist")
}

impl From<object_store::Error> for Error {
    fn from(e: object_store::Error) -> Self {
        use object_store::Error as E;
        let text = chain_text(&e);
        if is_missing_bucket(&e) {
            return Error::new(
                ErrorKind::Config,
                "the bucket does not exist (on Azure: the container): create it first (e.g. `aws s3 mb \
                 s3://BUCKET`, `gcloud storage buckets create gs://BUCKET`, `az storage container create`), or check \
                 its name in the repository URL",
            );
        }
        if text.contains("metadata.google.internal") || (text.contains("169.254.169.254") && text.contains("oauth")) {
            return Error::new(
                ErrorKind::Config,
                "no Google Cloud credentials found: set repository.service-account = \"file:/path/key.json\" (a \
                 service account's JSON key) or GOOGLE_APPLICATION_CREDENTIALS; looked at the config, the \
                 environment and the instance metadata service",
            );
        }
        if text.contains("169.254.169.254") && text.contains("msi") {
            return Error::new(
                ErrorKind::Config,
                "no Azure credentials found: set repository.account and repository.access-key (or sas-token) as \
                 env:VARIABLE or file:/path, or AZURE_STORAGE_ACCOUNT_NAME and AZURE_STORAGE_ACCOUNT_KEY; looked at \
                 the config, the environment and the managed identity endpoint",
            );
        }
        if text.contains("169.254.169.254") {
            // object_store fell back to the instance metadata service: no credentials given.
            return Error::new(
                ErrorKind::Config,
                "no S3 credentials found: set repository.access-key-id and repository.secret-access-key in \
                 tidemark.toml (as env:VARIABLE), or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY; looked at the \
                 config, the environment and the instance metadata service",
            );
        }
        if has_io_kind(&e, std::io::ErrorKind::PermissionDenied) {
            return permission_denied();
        }
        match &e {
            E::PermissionDenied { path, .. } | E::Unauthenticated { path, .. } => Error::new(
                ErrorKind::Config,
                format!("the object store refused access to {path}: check the credentials and the bucket policy"),
            ),
            E::NotFound { path, .. } => {
                Error::new(ErrorKind::NotFound, format!("object {path} is not in the repository"))
            }
            E::AlreadyExists { path, .. } => Error::new(
                ErrorKind::AlreadyExists,
                format!("object {path} already exists in the repository; tidemark never overwrites"),
            ),
            E::Precondition { path, .. } => Error::new(
                ErrorKind::AlreadyExists,
                format!("object {path} was written by somebody else at the same time"),
            ),
            E::Generic { store, source } => Error::new(
                ErrorKind::Unavailable,
                format!(
                    "the object store ({store}) failed: {source}. Check the repository URL, \
                     endpoint, credentials and that the bucket exists"
                ),
            ),
            _ => Error::new(ErrorKind::Unavailable, format!("the object store failed: {e}")),
        }
    }
}
