//! Throwaway Postgres for tests: a shared server from `TEST_DATABASE_URL` (the test script
//! starts one), or a private cluster started from the local server binaries. Each test gets
//! its own database with a real DBOS schema fixture loaded.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use tempfile::TempDir;
use tokio_postgres::NoTls;

/// A DBOS system schema produced by a real DBOS release (see tests/fixtures/dbos/README.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fixture {
    /// Python dbos 3.4.0, migration 125.
    Py340,
    /// Python dbos 2.31.1, migration 108 (after migration 100: has application_name).
    Py2311,
    /// Python dbos 2.29.0, migration 47 (before migration 100: no application_name).
    Py2290,
    /// TypeScript @dbos-inc/dbos-sdk 5.3.0, migration 123.
    Ts530,
}

impl Fixture {
    fn file(self) -> &'static str {
        match self {
            Fixture::Py340 => "py-3.4.0.sql",
            Fixture::Py2311 => "py-2.31.1.sql",
            Fixture::Py2290 => "py-2.29.0.sql",
            Fixture::Ts530 => "ts-5.3.0.sql",
        }
    }

    /// Whether rows of this schema carry `application_name`.
    pub fn has_application_name(self) -> bool {
        self != Fixture::Py2290
    }
}

/// Where test databases are created.
pub enum Server {
    /// An outside server; the URL's role may create databases.
    Shared(String),
    /// A cluster owned by this test.
    Private(Cluster),
}

impl Server {
    /// `TEST_DATABASE_URL` when set, a private cluster otherwise.
    pub fn from_env_or_private() -> Server {
        match std::env::var("TEST_DATABASE_URL") {
            Ok(url) if !url.is_empty() => Server::Shared(url),
            _ => Server::Private(Cluster::start()),
        }
    }

    /// A URL of the server's maintenance database.
    pub fn admin_url(&self) -> String {
        match self {
            Server::Shared(url) => url.clone(),
            Server::Private(cluster) => cluster.url("postgres"),
        }
    }

    /// Creates an empty database and returns its URL.
    pub async fn create_database(&self) -> String {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "pgqs_test_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        );
        let admin = connect(&self.admin_url()).await;
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create test database");
        with_dbname(&self.admin_url(), &name)
    }

    /// Creates a database holding `fixture`'s DBOS schema and returns its URL.
    pub async fn dbos_database(&self, fixture: Fixture) -> String {
        let url = self.create_database().await;
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/dbos")
            .join(fixture.file());
        let sql = std::fs::read_to_string(&path).expect("read DBOS fixture");
        connect(&url)
            .await
            .batch_execute(&sql)
            .await
            .expect("load DBOS fixture");
        url
    }
}

/// Connects without TLS and drives the connection in the background.
pub async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .unwrap_or_else(|error| panic!("cannot connect to the test server: {error}"));
    tokio::spawn(connection);
    client
}

/// `url` with its database name replaced.
pub fn with_dbname(url: &str, dbname: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, format!("?{query}")),
        None => (url, String::new()),
    };
    let authority_end = base
        .find("://")
        .map(|scheme| scheme + 3)
        .and_then(|start| base[start..].find('/').map(|slash| start + slash))
        .unwrap_or(base.len());
    format!("{}/{dbname}{query}", &base[..authority_end])
}

/// A private Postgres cluster in a temporary directory, stopped on drop.
pub struct Cluster {
    dir: TempDir,
    bin: PathBuf,
    port: u16,
    owner: Option<(u32, u32)>,
}

impl Cluster {
    /// Initialises and starts a cluster on 127.0.0.1 with pg_stat_statements loaded.
    pub fn start() -> Cluster {
        Self::start_with(&[])
    }

    /// As [`Cluster::start`], with extra `postgresql.conf` lines.
    pub fn start_with(extra_conf: &[&str]) -> Cluster {
        let bin = server_binaries();
        let dir = tempfile::Builder::new()
            .prefix("pgqs-pg-")
            .tempdir()
            .expect("temp dir");
        let owner = unprivileged_owner();
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).expect("chown cluster dir");
        }
        let cluster = Cluster {
            port: free_port(),
            dir,
            bin,
            owner,
        };
        cluster.run(
            "initdb",
            &[
                "-D",
                &cluster.data_dir(),
                "-U",
                "postgres",
                "-A",
                "trust",
                "--no-sync",
                "-E",
                "UTF8",
            ],
        );
        let mut conf = vec![
            "listen_addresses = '127.0.0.1'".to_owned(),
            format!("port = {}", cluster.port),
            format!(
                "unix_socket_directories = '{}'",
                cluster.dir.path().display()
            ),
            "shared_preload_libraries = 'pg_stat_statements'".to_owned(),
            "fsync = off".to_owned(),
            "max_connections = 200".to_owned(),
        ];
        conf.extend(extra_conf.iter().map(|line| line.to_string()));
        let conf_path = Path::new(&cluster.data_dir()).join("postgresql.conf");
        let mut existing = std::fs::read_to_string(&conf_path).expect("read postgresql.conf");
        existing.push_str(&conf.join("\n"));
        existing.push('\n');
        std::fs::write(&conf_path, existing).expect("write postgresql.conf");
        cluster.start_server();
        cluster
    }

    /// The cluster's directory (for certificates and the like).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A URL for `dbname` as the superuser `postgres`.
    pub fn url(&self, dbname: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{dbname}", self.port)
    }

    /// Gives `path` to the cluster's OS user (for files the server must read).
    pub fn give(&self, path: &Path) {
        if let Some((uid, gid)) = self.owner {
            std::os::unix::fs::chown(path, Some(uid), Some(gid)).expect("chown");
        }
    }

    /// Starts the server (again).
    pub fn start_server(&self) {
        let log = format!("{}/server.log", self.dir.path().display());
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data_dir(),
                "-l",
                &log,
                "-w",
                "-t",
                "60",
                "start",
            ],
        );
    }

    /// Stops the server now, dropping every connection.
    pub fn stop_server(&self) {
        self.run(
            "pg_ctl",
            &["-D", &self.data_dir(), "-m", "immediate", "-w", "stop"],
        );
    }

    fn data_dir(&self) -> String {
        format!("{}/data", self.dir.path().display())
    }

    fn run(&self, program: &str, args: &[&str]) {
        let mut command = Command::new(self.bin.join(program));
        command.args(args).stdin(Stdio::null());
        if let Some((uid, gid)) = self.owner {
            use std::os::unix::process::CommandExt;
            command.uid(uid).gid(gid);
        }
        let output = command
            .output()
            .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
        assert!(
            output.status.success(),
            "{program} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let mut command = Command::new(self.bin.join("pg_ctl"));
        command
            .args(["-D", &self.data_dir(), "-m", "immediate", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some((uid, gid)) = self.owner {
            use std::os::unix::process::CommandExt;
            command.uid(uid).gid(gid);
        }
        let _ = command.status();
    }
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("find a free port")
        .port()
}

/// Finds `initdb`, `pg_ctl` and `postgres`: `PG_BIN`, then Debian's layout, then `PATH`.
fn server_binaries() -> PathBuf {
    let mut candidates: Vec<PathBuf> = std::env::var_os("PG_BIN")
        .map(PathBuf::from)
        .into_iter()
        .collect();
    if let Ok(entries) = std::fs::read_dir("/usr/lib/postgresql") {
        let mut versions: Vec<PathBuf> = entries.flatten().map(|e| e.path().join("bin")).collect();
        versions.sort();
        candidates.extend(versions.into_iter().rev());
    }
    if let Some(path) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&path));
    }
    candidates
        .into_iter()
        .find(|dir| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file())
        .expect(
            "PostgreSQL server binaries (initdb, pg_ctl) not found: install them with \
             `apt-get install -y postgresql`, set PG_BIN to their directory, \
             or set TEST_DATABASE_URL to a server the tests may create databases on",
        )
}

/// initdb (and PgBouncer) refuse to run as root: when root, run them as `postgres` (or
/// `nobody`).
pub fn unprivileged_owner() -> Option<(u32, u32)> {
    let output = Command::new("id").arg("-u").output().ok()?;
    if String::from_utf8_lossy(&output.stdout).trim() != "0" {
        return None;
    }
    let passwd = std::fs::read_to_string("/etc/passwd").expect("read /etc/passwd");
    ["postgres", "nobody"].iter().find_map(|user| {
        passwd.lines().find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            (fields.first() == Some(user)).then(|| {
                (
                    fields[2].parse().expect("uid"),
                    fields[3].parse().expect("gid"),
                )
            })
        })
    })
}
