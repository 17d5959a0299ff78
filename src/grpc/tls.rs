//! TLS for the gRPC port: certificate and key (and, for mTLS, the client CA) are read from
//! files and read again whenever their contents change, so rotated certificates (for
//! example by cert-manager) apply without a restart. ALPN offers `h2` only, which KEDA's
//! gRPC client (grpc-go ≥ 1.67) requires.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{
    DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig, SignatureScheme,
};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;

use crate::grpc::hygiene::no_delay;
use crate::sync::{self, until_set};

/// How long a client may take to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Pause after a failed `accept` before trying again.
const ACCEPT_RETRY_DELAY: Duration = Duration::from_millis(100);

/// Certificate files for the gRPC port; reloaded when their contents change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TlsSettings {
    /// PEM certificate chain.
    pub cert_file: PathBuf,
    /// PEM private key.
    pub key_file: PathBuf,
    /// PEM CA bundle; when set, clients must present a certificate it signed (mTLS).
    pub client_ca_file: Option<PathBuf>,
    /// How often the files are checked for changes.
    pub reload_interval: Duration,
}

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: io::Error,
    },
    /// A file holds no usable PEM content of the expected kind.
    #[error("{path}: {reason}")]
    Content {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// rustls refused the certificate, key or configuration.
    #[error("tls: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The file contents a configuration was built from; a change means reload.
#[derive(Clone, PartialEq, Eq)]
struct Files {
    cert: Vec<u8>,
    key: Vec<u8>,
    client_ca: Option<Vec<u8>>,
}

impl Files {
    fn read(settings: &TlsSettings) -> Result<Self, TlsError> {
        Ok(Self {
            cert: read(&settings.cert_file)?,
            key: read(&settings.key_file)?,
            client_ca: settings.client_ca_file.as_deref().map(read).transpose()?,
        })
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.display().to_string(),
        source,
    })
}

/// A TLS configuration whose certificate and client CA can be swapped while serving.
pub(crate) struct ReloadingTls {
    acceptor: TlsAcceptor,
    certificate: Arc<CurrentCertificate>,
    client_ca: Option<Arc<CurrentClientVerifier>>,
    settings: TlsSettings,
    provider: Arc<CryptoProvider>,
    /// The contents in use, so that a change right after start is not missed.
    loaded: Files,
}

impl ReloadingTls {
    /// Reads the files once; fails if they are unusable.
    pub(crate) fn load(settings: &TlsSettings) -> Result<Self, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let files = Files::read(settings)?;
        let certificate = Arc::new(CurrentCertificate(RwLock::new(certified_key(
            &files, settings, &provider,
        )?)));
        let client_ca = match &files.client_ca {
            Some(pem) => Some(Arc::new(CurrentClientVerifier(RwLock::new(
                client_verifier(pem, settings, &provider)?,
            )))),
            None => None,
        };
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?;
        let builder = match &client_ca {
            Some(verifier) => builder.with_client_cert_verifier(verifier.clone()),
            None => builder.with_no_client_auth(),
        };
        let mut config = builder.with_cert_resolver(certificate.clone());
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Self {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            certificate,
            client_ca,
            settings: settings.clone(),
            provider,
            loaded: files,
        })
    }

    /// Accepts TCP connections on `listener`, completes handshakes in the background and
    /// yields the TLS streams, until `stopping` turns true. Also watches the files.
    pub(crate) fn incoming(
        self,
        listener: TcpListener,
        mut stopping: watch::Receiver<bool>,
    ) -> ReceiverStream<io::Result<TlsStream<TcpStream>>> {
        let (sender, receiver) = mpsc::channel(64);
        let acceptor = self.acceptor.clone();
        tokio::spawn(self.watch_files(stopping.clone()));
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    accepted = listener.accept() => accepted,
                    () = until_set(&mut stopping) => break,
                };
                let (tcp, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // Out of file descriptors, say: pause rather than spin.
                        tracing::warn!(%error, "accepting a connection failed");
                        tokio::time::sleep(ACCEPT_RETRY_DELAY).await;
                        continue;
                    }
                };
                no_delay(&tcp);
                let acceptor = acceptor.clone();
                let sender = sender.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => {
                            let _ = sender.send(Ok(stream)).await;
                        }
                        Ok(Err(error)) => tracing::debug!(%peer, %error, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        ReceiverStream::new(receiver)
    }

    /// Re-reads the files every `reload_interval` and swaps in what changed. A broken
    /// update is logged and the previous, working configuration stays.
    async fn watch_files(self, mut stopping: watch::Receiver<bool>) {
        let mut last = self.loaded.clone();
        let mut ticker = tokio::time::interval(self.settings.reload_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                () = until_set(&mut stopping) => return,
            }
            let files = match Files::read(&self.settings) {
                Ok(files) => files,
                Err(error) => {
                    tracing::warn!(%error, "cannot read TLS files; keeping the current ones");
                    continue;
                }
            };
            if last == files {
                continue;
            }
            match self.apply(&files) {
                Ok(()) => {
                    tracing::info!("reloaded TLS certificate files");
                    last = files;
                }
                Err(error) => {
                    tracing::warn!(%error, "new TLS files are unusable; keeping the current ones")
                }
            }
        }
    }

    fn apply(&self, files: &Files) -> Result<(), TlsError> {
        let key = certified_key(files, &self.settings, &self.provider)?;
        let verifier = match (&self.client_ca, &files.client_ca) {
            (Some(_), Some(pem)) => Some(client_verifier(pem, &self.settings, &self.provider)?),
            _ => None,
        };
        *sync::write(&self.certificate.0) = key;
        if let (Some(current), Some(verifier)) = (&self.client_ca, verifier) {
            *sync::write(&current.0) = verifier;
        }
        Ok(())
    }
}

fn certified_key(
    files: &Files,
    settings: &TlsSettings,
    provider: &CryptoProvider,
) -> Result<Arc<CertifiedKey>, TlsError> {
    let cert_path = settings.cert_file.display().to_string();
    let key_path = settings.key_file.display().to_string();
    let chain = CertificateDer::pem_slice_iter(&files.cert)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| TlsError::Content {
            path: cert_path.clone(),
            reason: error.to_string(),
        })?;
    if chain.is_empty() {
        return Err(TlsError::Content {
            path: cert_path,
            reason: "no certificate in the file".into(),
        });
    }
    let key = PrivateKeyDer::from_pem_slice(&files.key).map_err(|error| TlsError::Content {
        path: key_path,
        reason: error.to_string(),
    })?;
    Ok(Arc::new(CertifiedKey::from_der(chain, key, provider)?))
}

fn client_verifier(
    pem: &[u8],
    settings: &TlsSettings,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
    let path = settings
        .client_ca_file
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let certificates = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| TlsError::Content {
            path: path.clone(),
            reason: error.to_string(),
        })?;
    let mut roots = RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(certificates);
    if added == 0 {
        return Err(TlsError::Content {
            path,
            reason: "no usable CA certificate in the file".into(),
        });
    }
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|error| TlsError::Rustls(rustls::Error::General(error.to_string())))
}

/// The server certificate in use; swapped on reload.
#[derive(Debug)]
struct CurrentCertificate(RwLock<Arc<CertifiedKey>>);

impl ResolvesServerCert for CurrentCertificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(sync::read(&self.0).clone())
    }
}

/// The client-certificate check in use; swapped on reload.
#[derive(Debug)]
struct CurrentClientVerifier(RwLock<Arc<dyn ClientCertVerifier>>);

impl CurrentClientVerifier {
    fn current(&self) -> Arc<dyn ClientCertVerifier> {
        sync::read(&self.0).clone()
    }
}

impl ClientCertVerifier for CurrentClientVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // Hints are optional; the current CA list cannot be lent out from behind the lock.
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.current()
            .verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.current().verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.current().verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.current().supported_verify_schemes()
    }
}
