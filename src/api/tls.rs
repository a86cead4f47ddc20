//! TLS for the API (rustls): the certificate chain and key come from `[api] tls-cert` and
//! `tls-key` (PEM), are checked to belong together when loaded, and are loaded again on
//! SIGHUP without dropping a connection. A reload that fails keeps the certificate in use
//! and says why in the log: a renewed certificate that is broken never takes the API down.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::error::{Error, Result};

/// The certificate the API presents, replaceable while it serves.
#[derive(Debug)]
pub struct Certificate {
    cert: PathBuf,
    key: PathBuf,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<CertifiedKey>>,
}

impl Certificate {
    /// Loads `cert` (the chain, leaf first) and `key` (PKCS#8, PKCS#1 or SEC1).
    ///
    /// Errors: `Config` naming the file that cannot be read or parsed, or saying that the
    /// key does not belong to the certificate.
    pub fn load(cert: &Path, key: &Path) -> Result<Certificate> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let current = RwLock::new(Arc::new(read(cert, key, &provider)?));
        Ok(Certificate { cert: cert.to_path_buf(), key: key.to_path_buf(), provider, current })
    }

    /// Reads the files again; the new certificate serves the next handshake. On an error
    /// the one in use stays.
    ///
    /// Errors: as [`Certificate::load`].
    pub fn reload(&self) -> Result<()> {
        let fresh = Arc::new(read(&self.cert, &self.key, &self.provider)?);
        *self.current.write().expect("certificate lock") = fresh;
        Ok(())
    }

    /// The server side of a TLS connection with this certificate (TLS 1.2 and 1.3, HTTP/1.1).
    ///
    /// Errors: `Internal` when rustls refuses its own defaults.
    pub fn acceptor(self: &Arc<Self>) -> Result<tokio_rustls::TlsAcceptor> {
        let mut config = rustls::ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::internal(format!("TLS settings: {e}")))?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
    }
}

impl ResolvesServerCert for Certificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().expect("certificate lock").clone())
    }
}

fn read(cert: &Path, key: &Path, provider: &CryptoProvider) -> Result<CertifiedKey> {
    let unreadable = |path: &Path, what: &str, e: &dyn std::fmt::Display| {
        Error::config(format!("api: {what} {} cannot be used: {e}", path.display()))
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(Iterator::collect)
        .map_err(|e| unreadable(cert, "tls-cert", &e))?;
    if chain.is_empty() {
        return Err(unreadable(cert, "tls-cert", &"no PEM certificate in it"));
    }
    // The key's error never quotes the file's content.
    let secret = PrivateKeyDer::from_pem_file(key).map_err(|e| {
        let why = match e {
            rustls::pki_types::pem::Error::Io(io) => io.to_string(),
            rustls::pki_types::pem::Error::NoItemsFound => "no PEM private key in it".into(),
            _ => "not a valid PEM private key".into(),
        };
        unreadable(key, "tls-key", &why)
    })?;
    let certified = CertifiedKey::from_der(chain, secret, provider).map_err(|e| {
        Error::config(format!("api: tls-key {} does not belong to tls-cert {}: {e}", key.display(), cert.display()))
    })?;
    Ok(certified)
}
