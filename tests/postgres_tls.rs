//! The scaler's Postgres connections over TLS, against a private cluster serving a
//! certificate from a test CA: each `sslmode` encrypts, verifies or refuses as libpq's does.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::certs::{self, TestCa};
use common::postgres::{Cluster, connect};
use common::{Fixture, Server, TestScaler, Workflows, eventually, metric_value, scaled_object};
use tokio_postgres::NoTls;
use tonic::{Code, Status};

/// Sent in every URL; trust authentication ignores it, so it may only ever leak.
const PASSWORD: &str = "tls-secret-9b1e";

/// A private cluster serving TLS with a certificate (for localhost and 127.0.0.1) signed
/// by `ca_file`'s CA; `other_ca_file` is a CA that signed nothing the server has.
struct TlsPostgres {
    server: Server,
    ca_file: PathBuf,
    other_ca_file: PathBuf,
}

impl TlsPostgres {
    /// Starts a cluster, then turns TLS on with ALTER SYSTEM and a reload.
    async fn start() -> TlsPostgres {
        let cluster = Cluster::start();
        let ca = TestCa::new("pgqs test CA");
        let leaf = ca.server("pgqs test server");
        let cert = certs::write(cluster.dir(), "server.crt", &leaf.cert_pem);
        let key = certs::write(cluster.dir(), "server.key", &leaf.key_pem);
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        cluster.give(&cert);
        cluster.give(&key);
        let ca_file = certs::write(cluster.dir(), "root.crt", &ca.cert_pem);
        let other_ca_file = certs::write(
            cluster.dir(),
            "other-root.crt",
            &TestCa::new("pgqs unrelated CA").cert_pem,
        );

        let admin = connect(&cluster.url("postgres")).await;
        for sql in [
            format!("ALTER SYSTEM SET ssl_cert_file = '{}'", cert.display()),
            format!("ALTER SYSTEM SET ssl_key_file = '{}'", key.display()),
            "ALTER SYSTEM SET ssl = on".to_owned(),
            "SELECT pg_reload_conf()".to_owned(),
        ] {
            admin.batch_execute(&sql).await.unwrap();
        }
        let url = cluster.url("postgres");
        eventually("the server to serve TLS", Duration::from_secs(10), || {
            let url = url.clone();
            async move {
                // Each probe is a new session: SHOW reports what new backends got.
                let client = connect(&url).await;
                let ssl: String = client.query_one("SHOW ssl", &[]).await.unwrap().get(0);
                ssl == "on"
            }
        })
        .await;
        TlsPostgres {
            server: Server::Private(cluster),
            ca_file,
            other_ca_file,
        }
    }

    fn cluster(&self) -> &Cluster {
        match &self.server {
            Server::Private(cluster) => cluster,
            Server::Shared(_) => unreachable!("TLS tests always start their own cluster"),
        }
    }

    /// A new DBOS database with `depth` workflows enqueued on queue `q`; returns its name.
    async fn database(&self, depth: u32) -> String {
        let url = self.server.dbos_database(Fixture::Py340).await;
        let mut rows = Workflows::new(&url, Fixture::Py340).await;
        rows.enqueue("q", depth, None).await;
        url.rsplit('/').next().unwrap().to_owned()
    }

    /// A URL for `dbname` on `host` (user postgres, with the password) and `query`.
    fn url(&self, host: &str, dbname: &str, query: &str) -> String {
        format!(
            "postgres://postgres:{PASSWORD}@{host}:{}/{dbname}?{query}",
            self.cluster().port()
        )
    }

    /// A superuser session over the cluster's Unix socket, which pg_hba changes here
    /// leave alone.
    async fn socket_admin(&self, dbname: &str) -> tokio_postgres::Client {
        let cluster = self.cluster();
        connect(&format!(
            "host={} port={} user=postgres dbname={dbname}",
            cluster.dir().display(),
            cluster.port()
        ))
        .await
    }
}

/// `sslrootcert=<path>`, percent-encoding anything but unreserved characters and `/`.
fn root_cert(path: &Path) -> String {
    let encoded: String = path
        .to_str()
        .expect("a UTF-8 temp path")
        .bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => {
                (byte as char).to_string()
            }
            _ => format!("%{byte:02X}"),
        })
        .collect();
    format!("sslrootcert={encoded}")
}

/// The trigger every test asks about: the depth of queue `q`.
fn depth_trigger() -> pg_queue_scaler::grpc::proto::ScaledObjectRef {
    scaled_object(
        "w",
        &[
            ("queue", "q"),
            ("metric", "depth"),
            ("workerConcurrency", "1"),
        ],
    )
}

/// Starts a scaler whose default database is `url`.
async fn scaler_for(url: &str) -> TestScaler {
    TestScaler::start(&[
        ("PGQS_DATABASE_URL", url),
        ("PGQS_REFRESH_INTERVAL", "200ms"),
    ])
    .await
}

/// GetMetrics (after GetMetricSpec) through a scaler reading `url`.
async fn depth_through_scaler(url: &str) -> Result<i64, Status> {
    let scaler = scaler_for(url).await;
    let mut client = scaler.client().await;
    let depth = metric_value(&mut client, &depth_trigger()).await;
    scaler.stop().await.unwrap();
    depth
}

/// GetMetrics and IsActive through a scaler reading `url`; both must fail Unavailable,
/// without the password; returns their messages.
async fn unavailable_through_scaler(url: &str) -> Vec<String> {
    let scaler = scaler_for(url).await;
    let mut client = scaler.client().await;
    let trigger = depth_trigger();
    let statuses = [
        metric_value(&mut client, &trigger)
            .await
            .expect_err("GetMetrics must fail"),
        client
            .is_active(trigger.clone())
            .await
            .expect_err("IsActive must fail"),
    ];
    scaler.stop().await.unwrap();
    statuses
        .into_iter()
        .map(|status| {
            assert_eq!(status.code(), Code::Unavailable, "{status:?}");
            assert!(!status.message().contains(PASSWORD), "{}", status.message());
            status.message().to_owned()
        })
        .collect()
}

/// Asserts that every message reports a certificate problem.
fn assert_certificate_errors(messages: &[String], context: &str) {
    for message in messages {
        assert!(
            message.to_lowercase().contains("certificate"),
            "{context}: {message}"
        );
    }
}

/// For each of the scaler's sessions on `dbname`: whether pg_stat_ssl says it uses TLS.
async fn scaler_sessions(admin: &tokio_postgres::Client, dbname: &str) -> Vec<bool> {
    admin
        .query(
            "SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a ON a.pid = s.pid \
             WHERE a.application_name = 'pg-queue-scaler' AND a.datname = $1",
            &[&dbname],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect()
}

/// With `sslmode=require` the scaler reads the depth and every one of its sessions is
/// encrypted (pg_stat_ssl); with no sslmode (libpq's `prefer`) it encrypts too when the
/// server offers TLS; with `sslmode=disable` on the same server, its sessions are plain,
/// which shows the pg_stat_ssl check tells the two apart.
#[tokio::test]
async fn require_and_prefer_encrypt_the_scalers_sessions() {
    let postgres = TlsPostgres::start().await;
    let admin = connect(&postgres.cluster().url("postgres")).await;
    for (query, depth, encrypted) in [
        ("sslmode=require", 4, true),
        ("connect_timeout=10", 5, true),
        ("sslmode=disable", 6, false),
    ] {
        let dbname = postgres.database(depth).await;
        let scaler = scaler_for(&postgres.url("127.0.0.1", &dbname, query)).await;
        let mut client = scaler.client().await;
        assert_eq!(
            metric_value(&mut client, &depth_trigger()).await.unwrap(),
            i64::from(depth),
            "{query}"
        );
        let sessions = scaler_sessions(&admin, &dbname).await;
        assert!(!sessions.is_empty(), "{query}: the scaler holds a session");
        assert!(
            sessions.iter().all(|ssl| *ssl == encrypted),
            "{query}: ssl {sessions:?}, expected {encrypted}"
        );
        scaler.stop().await.unwrap();
    }
}

/// `sslmode=verify-full` with the server's CA as `sslrootcert` works by host name
/// (`localhost`) and by IP address (`127.0.0.1`, an IP SAN); so does `sslmode=require`
/// with a root certificate, which libpq treats as verify-ca. A host name the certificate
/// does not cover (reached through `hostaddr`) is refused with a certificate error.
#[tokio::test]
async fn verify_full_accepts_the_servers_names_and_refuses_others() {
    let postgres = TlsPostgres::start().await;
    let dbname = postgres.database(3).await;
    let root = root_cert(&postgres.ca_file);
    for (host, mode) in [
        ("localhost", "verify-full"),
        ("127.0.0.1", "verify-full"),
        ("127.0.0.1", "require"),
    ] {
        let url = postgres.url(host, &dbname, &format!("sslmode={mode}&{root}"));
        assert_eq!(
            depth_through_scaler(&url).await.unwrap(),
            3,
            "{mode} via {host}"
        );
    }

    let elsewhere = postgres.url(
        "db.pgqs.invalid",
        &dbname,
        &format!("sslmode=verify-full&{root}&hostaddr=127.0.0.1"),
    );
    let messages = unavailable_through_scaler(&elsewhere).await;
    assert_certificate_errors(&messages, "verify-full, name not in the certificate");
}

/// `sslmode=verify-full` (and `verify-ca`, and `require` with a root certificate) with
/// a root certificate from a different CA: GetMetrics and IsActive are Unavailable, say
/// that the certificate is the problem, and do not echo the URL's password.
#[tokio::test]
async fn a_certificate_from_another_ca_is_refused() {
    let postgres = TlsPostgres::start().await;
    let dbname = postgres.database(3).await;
    let wrong_root = root_cert(&postgres.other_ca_file);
    for (host, mode) in [
        ("localhost", "verify-full"),
        ("127.0.0.1", "verify-full"),
        ("127.0.0.1", "verify-ca"),
        ("127.0.0.1", "require"),
    ] {
        let url = postgres.url(host, &dbname, &format!("sslmode={mode}&{wrong_root}"));
        let messages = unavailable_through_scaler(&url).await;
        assert_certificate_errors(&messages, &format!("{mode} via {host}"));
    }
}

/// `sslmode=verify-ca` checks the chain but not the name: with the right CA it works at
/// 127.0.0.1 and even under a host name the certificate does not carry (where
/// verify-full refuses, see above); with another CA's root it is refused.
#[tokio::test]
async fn verify_ca_checks_the_chain_but_not_the_name() {
    let postgres = TlsPostgres::start().await;
    let dbname = postgres.database(2).await;
    let root = root_cert(&postgres.ca_file);
    for (host, extra) in [
        ("127.0.0.1", ""),
        ("db.pgqs.invalid", "&hostaddr=127.0.0.1"),
    ] {
        let url = postgres.url(host, &dbname, &format!("sslmode=verify-ca&{root}{extra}"));
        assert_eq!(depth_through_scaler(&url).await.unwrap(), 2, "via {host}");
    }
    let url = postgres.url(
        "127.0.0.1",
        &dbname,
        &format!("sslmode=verify-ca&{}", root_cert(&postgres.other_ca_file)),
    );
    let messages = unavailable_through_scaler(&url).await;
    assert_certificate_errors(&messages, "verify-ca, another CA");
}

/// When pg_hba.conf accepts only TLS on TCP (`hostssl` trust, `hostnossl` reject), a
/// scaler with `sslmode=disable` is Unavailable with the server's refusal, while
/// `sslmode=require` and the default (`prefer`) read the depth.
#[tokio::test]
async fn a_server_that_requires_tls_refuses_sslmode_disable() {
    let postgres = TlsPostgres::start().await;
    let dbname = postgres.database(7).await;
    let hba = postgres.cluster().dir().join("data/pg_hba.conf");
    assert!(hba.is_file(), "{}", hba.display());
    std::fs::write(
        &hba,
        "local all all trust\n\
         hostssl all all 127.0.0.1/32 trust\n\
         hostnossl all all 127.0.0.1/32 reject\n",
    )
    .unwrap();
    postgres
        .socket_admin("postgres")
        .await
        .batch_execute("SELECT pg_reload_conf()")
        .await
        .unwrap();
    let plain = postgres.url("127.0.0.1", &dbname, "sslmode=disable");
    eventually(
        "pg_hba.conf to refuse plain TCP",
        Duration::from_secs(10),
        || {
            let plain = plain.clone();
            async move { tokio_postgres::connect(&plain, NoTls).await.is_err() }
        },
    )
    .await;

    let messages = unavailable_through_scaler(&plain).await;
    for message in &messages {
        assert!(
            message.contains("pg_hba.conf rejects connection") && message.contains("28000"),
            "{message}"
        );
    }
    for query in ["sslmode=require", "connect_timeout=10"] {
        let url = postgres.url("127.0.0.1", &dbname, query);
        assert_eq!(depth_through_scaler(&url).await.unwrap(), 7, "{query}");
    }
}
