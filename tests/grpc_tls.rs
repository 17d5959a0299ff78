//! TLS and mTLS on the gRPC port, as KEDA uses them: ALPN `h2`, client certificates from a
//! configured CA, and certificates that rotate on disk without a restart.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::certs::{Leaf, TestCa, write};
use common::{TestScaler, scaled_object};
use pg_queue_scaler::grpc::proto::external_scaler_client::ExternalScalerClient;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

/// A TLS client as KEDA configures one: the CA, optionally a client certificate.
async fn tls_client(
    port: u16,
    ca: &TestCa,
    identity: Option<&Leaf>,
) -> Result<ExternalScalerClient<Channel>, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&ca.cert_pem))
        .domain_name("localhost");
    if let Some(leaf) = identity {
        tls = tls.identity(Identity::from_pem(&leaf.cert_pem, &leaf.key_pem));
    }
    let channel = Channel::from_shared(format!("https://127.0.0.1:{port}"))
        .expect("uri")
        .tls_config(tls)?
        .connect()
        .await?;
    Ok(ExternalScalerClient::new(channel))
}

/// A spec request needs no database: it shows whether the call got through.
async fn call(client: &mut ExternalScalerClient<Channel>) -> Result<(), tonic::Status> {
    client
        .get_metric_spec(scaled_object(
            "w",
            &[
                ("queue", "q"),
                ("connectionFromEnv", "postgres://u@localhost/db"),
            ],
        ))
        .await
        .map(drop)
}

/// A raw TLS handshake offering `alpn`; returns the negotiated protocol and the server's
/// leaf certificate.
async fn handshake(
    port: u16,
    ca: &TestCa,
    identity: Option<&Leaf>,
    alpn: &[&[u8]],
) -> std::io::Result<(Option<Vec<u8>>, CertificateDer<'static>)> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca.cert_pem.as_bytes()).unwrap())
        .unwrap();
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let mut config = match identity {
        Some(leaf) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_slice(leaf.cert_pem.as_bytes()).unwrap()],
                PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let stream = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await?;
    let (_, session) = stream.get_ref();
    let protocol = session.alpn_protocol().map(<[u8]>::to_vec);
    let leaf = session.peer_certificates().expect("server certificate")[0]
        .clone()
        .into_owned();
    Ok((protocol, leaf))
}

fn der(pem: &str) -> CertificateDer<'static> {
    CertificateDer::from_pem_slice(pem.as_bytes()).unwrap()
}

struct TlsFiles {
    dir: tempfile::TempDir,
}

impl TlsFiles {
    fn new(server: &Leaf, client_ca: Option<&TestCa>) -> TlsFiles {
        let dir = tempfile::tempdir().unwrap();
        let files = TlsFiles { dir };
        files.rotate(server);
        if let Some(ca) = client_ca {
            files.rotate_client_ca(ca);
        }
        files
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    fn rotate(&self, server: &Leaf) {
        write(self.dir.path(), "tls.crt", &server.cert_pem);
        write(self.dir.path(), "tls.key", &server.key_pem);
    }

    fn rotate_client_ca(&self, ca: &TestCa) {
        write(self.dir.path(), "ca.crt", &ca.cert_pem);
    }

    fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// With a certificate and key, the port speaks TLS only, negotiates ALPN h2 (KEDA ≥ 2.16
/// refuses servers without it), and serves a client that trusts the CA.
#[tokio::test]
async fn tls_serves_clients_that_trust_the_ca_and_negotiates_h2() {
    let ca = TestCa::new("scaler-ca");
    let files = TlsFiles::new(&ca.server("first"), None);
    let scaler = TestScaler::start(&[
        ("PGQS_TLS_CERT_FILE", &files.path("tls.crt")),
        ("PGQS_TLS_KEY_FILE", &files.path("tls.key")),
    ])
    .await;
    let port = scaler.addr.port();
    let mut client = tls_client(port, &ca, None).await.unwrap();
    call(&mut client).await.unwrap();

    let (protocol, _) = handshake(port, &ca, None, &[b"h2"]).await.unwrap();
    assert_eq!(protocol.as_deref(), Some(&b"h2"[..]));

    let other_ca = TestCa::new("someone-else");
    assert!(
        tls_client(port, &other_ca, None).await.is_err(),
        "an untrusted server is refused"
    );

    let mut plaintext = ExternalScalerClient::connect(format!("http://127.0.0.1:{port}")).await;
    let refused = match plaintext.as_mut() {
        Ok(client) => call(client).await.is_err(),
        Err(_) => true,
    };
    assert!(refused, "plaintext gRPC is not served on a TLS port");
    scaler.stop().await.unwrap();
}

/// With a client CA, only clients presenting a certificate it signed get through.
#[tokio::test]
async fn mtls_requires_a_client_certificate_from_the_ca() {
    let ca = TestCa::new("scaler-ca");
    let client_ca = TestCa::new("keda-clients");
    let files = TlsFiles::new(&ca.server("scaler"), Some(&client_ca));
    let scaler = TestScaler::start(&[
        ("PGQS_TLS_CERT_FILE", &files.path("tls.crt")),
        ("PGQS_TLS_KEY_FILE", &files.path("tls.key")),
        ("PGQS_TLS_CLIENT_CA_FILE", &files.path("ca.crt")),
    ])
    .await;
    let port = scaler.addr.port();
    let keda = client_ca.client("keda-operator");
    let mut client = tls_client(port, &ca, Some(&keda)).await.unwrap();
    call(&mut client).await.unwrap();

    let anonymous = tls_client(port, &ca, None).await;
    assert!(
        anonymous.is_err() || call(&mut anonymous.unwrap()).await.is_err(),
        "no client certificate, no call"
    );
    let stranger = TestCa::new("stranger").client("intruder");
    let impostor = tls_client(port, &ca, Some(&stranger)).await;
    assert!(
        impostor.is_err() || call(&mut impostor.unwrap()).await.is_err(),
        "a certificate from another CA, no call"
    );
    scaler.stop().await.unwrap();
}

/// Rotated files (as cert-manager writes them) apply to new connections without a
/// restart: a new server certificate, and a new client CA.
#[tokio::test]
async fn rotated_certificates_apply_without_a_restart() {
    let ca = TestCa::new("scaler-ca");
    let first = ca.server("first");
    let client_ca = TestCa::new("keda-clients");
    let files = TlsFiles::new(&first, Some(&client_ca));
    let scaler = TestScaler::start(&[
        ("PGQS_TLS_CERT_FILE", &files.path("tls.crt")),
        ("PGQS_TLS_KEY_FILE", &files.path("tls.key")),
        ("PGQS_TLS_CLIENT_CA_FILE", &files.path("ca.crt")),
        ("PGQS_TLS_RELOAD_INTERVAL", "100ms"),
    ])
    .await;
    let port = scaler.addr.port();
    let keda = client_ca.client("keda-operator");
    let (_, served) = handshake(port, &ca, Some(&keda), &[b"h2"]).await.unwrap();
    assert_eq!(served, der(&first.cert_pem));

    // A half-written update is ignored: the working certificate stays.
    write(files.dir(), "tls.key", "not a key");
    tokio::time::sleep(Duration::from_millis(400)).await;
    let (_, served) = handshake(port, &ca, Some(&keda), &[b"h2"]).await.unwrap();
    assert_eq!(served, der(&first.cert_pem));

    let second = ca.server("second");
    files.rotate(&second);
    common::eventually("the new server certificate", Duration::from_secs(5), || {
        let keda = &keda;
        let ca = &ca;
        let expected = der(&second.cert_pem);
        async move {
            let (_, served) = handshake(port, ca, Some(keda), &[b"h2"]).await.unwrap();
            served == expected
        }
    })
    .await;

    let new_client_ca = TestCa::new("keda-clients-2026");
    files.rotate_client_ca(&new_client_ca);
    let renewed = new_client_ca.client("keda-operator");
    common::eventually("the new client CA", Duration::from_secs(5), || {
        let renewed = &renewed;
        let ca = &ca;
        async move {
            match tls_client(port, ca, Some(renewed)).await {
                Ok(mut client) => call(&mut client).await.is_ok(),
                Err(_) => false,
            }
        }
    })
    .await;
    scaler.stop().await.unwrap();
}

/// Unusable TLS files stop the scaler at start with an error naming the file.
#[tokio::test]
async fn unusable_tls_files_fail_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let cert = write(dir.path(), "tls.crt", "garbage");
    let key = write(dir.path(), "tls.key", "garbage");
    let env: std::collections::HashMap<String, String> = [
        ("PGQS_TLS_CERT_FILE", cert.display().to_string()),
        ("PGQS_TLS_KEY_FILE", key.display().to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let settings =
        pg_queue_scaler::config::Settings::load(&pg_queue_scaler::config::Flags::default(), &env)
            .unwrap();
    let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let error = pg_queue_scaler::run(
        settings,
        pg_queue_scaler::Listeners { grpc, http },
        std::future::pending(),
    )
    .await
    .unwrap_err();
    assert!(error.to_string().contains("tls.crt"), "{error}");
}
