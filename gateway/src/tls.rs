//! HTTPS on the S3 port: rustls on the `ring` provider, with the certificate re-read when its
//! files change (a certbot renewal), so a renewal never needs a restart.
//!
//! Bodies are sealed by the apps either way; TLS hides what plain HTTP shows anyone on the
//! path: key names, SigV4 headers and presigned URLs.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio_rustls::TlsAcceptor;

/// How often the certificate files are checked for a change.
const RELOAD_CHECK: Duration = Duration::from_secs(5);

/// Where the certificate chain and its private key are, both PEM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: rustls::pki_types::pem::Error,
    },
    #[error("{0} holds no certificate (expected PEM: -----BEGIN CERTIFICATE-----)")]
    NoCertificate(PathBuf),
    #[error("the private key in {path} cannot be used: {source}")]
    Key { path: PathBuf, source: rustls::Error },
    #[error("the private key in {key} does not belong to the certificate in {cert}")]
    Mismatch { cert: PathBuf, key: PathBuf },
    #[error("setting up TLS: {0}")]
    Config(rustls::Error),
}

/// The HTTPS side of the S3 listener: a TLS acceptor whose certificate follows its files.
#[derive(Clone)]
pub struct Tls {
    files: TlsFiles,
    current: Arc<Current>,
    acceptor: TlsAcceptor,
}

impl Tls {
    /// Loads the certificate; an error names the file and what is wrong with it.
    pub fn load(files: TlsFiles) -> Result<Self, TlsError> {
        let key = load_key(&files)?;
        let current = Arc::new(Current {
            key: RwLock::new(Arc::new(key)),
        });
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Config)?
            .with_no_client_auth()
            .with_cert_resolver(current.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self {
            files,
            current,
            acceptor: TlsAcceptor::from(Arc::new(config)),
        })
    }

    pub(crate) fn acceptor(&self) -> &TlsAcceptor {
        &self.acceptor
    }

    /// Re-reads the files whenever they change, until the returned task is aborted. A
    /// change that does not load (a half-written renewal) keeps the old certificate and is
    /// tried again at the next change.
    pub(crate) fn spawn_reloader(&self) -> tokio::task::JoinHandle<()> {
        let tls = self.clone();
        tokio::spawn(async move {
            let mut seen = stamp(&tls.files).await;
            loop {
                tokio::time::sleep(RELOAD_CHECK).await;
                let now = stamp(&tls.files).await;
                if now == seen {
                    continue;
                }
                seen = now;
                let files = tls.files.clone();
                let loaded = tokio::task::spawn_blocking(move || load_key(&files)).await;
                match loaded.expect("loading a certificate panicked") {
                    Ok(key) => {
                        *tls.current.key.write().expect("certificate lock poisoned") = Arc::new(key);
                        tracing::info!("TLS certificate reloaded");
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "TLS certificate changed but does not load; keeping the old one")
                    }
                }
            }
        })
    }
}

/// The certificate handed to every handshake.
#[derive(Debug)]
struct Current {
    key: RwLock<Arc<CertifiedKey>>,
}

impl ResolvesServerCert for Current {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.key.read().expect("certificate lock poisoned").clone())
    }
}

fn load_key(files: &TlsFiles) -> Result<CertifiedKey, TlsError> {
    fn read(path: &Path) -> impl FnOnce(rustls::pki_types::pem::Error) -> TlsError + '_ {
        move |source| TlsError::Read {
            path: path.to_path_buf(),
            source,
        }
    }
    let chain = CertificateDer::pem_file_iter(&files.cert)
        .map_err(read(&files.cert))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(read(&files.cert))?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate(files.cert.clone()));
    }
    let der = PrivateKeyDer::from_pem_file(&files.key).map_err(read(&files.key))?;
    let signing = rustls::crypto::ring::sign::any_supported_type(&der).map_err(|source| TlsError::Key {
        path: files.key.clone(),
        source,
    })?;
    let key = CertifiedKey::new(chain, signing);
    key.keys_match().map_err(|_| TlsError::Mismatch {
        cert: files.cert.clone(),
        key: files.key.clone(),
    })?;
    Ok(key)
}

/// What changes when either file is replaced (certbot swaps symlinks; metadata follows them).
async fn stamp(files: &TlsFiles) -> [Option<(SystemTime, u64)>; 2] {
    let of = |path: PathBuf| async move {
        let meta = tokio::fs::metadata(path).await.ok()?;
        Some((meta.modified().ok()?, meta.len()))
    };
    [of(files.cert.clone()).await, of(files.key.clone()).await]
}
