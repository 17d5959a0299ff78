//! A throwaway PgBouncer in front of a test server: its own ini and userlist in a temporary
//! directory, listening on 127.0.0.1 on a free port, run as the `postgres` OS user when the
//! tests run as root (PgBouncer refuses root), and killed on drop.
//!
//! Server connections are never reset (`server_reset_query` empty), so whatever a client
//! leaves on a server connection is what the next client gets: nothing hides a leak.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::time::{Duration, Instant};

use tempfile::TempDir;
use tokio_postgres::config::Host;

use super::postgres::{free_port, unprivileged_owner};

/// PgBouncer's `pool_mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolMode {
    /// A server connection per client connection, for the client's whole session.
    Session,
    /// A server connection per transaction.
    Transaction,
    /// A server connection per statement; transactions of several statements are refused.
    Statement,
}

impl PoolMode {
    fn as_str(self) -> &'static str {
        match self {
            PoolMode::Session => "session",
            PoolMode::Transaction => "transaction",
            PoolMode::Statement => "statement",
        }
    }
}

/// A running PgBouncer.
pub struct PgBouncer {
    dir: TempDir,
    port: u16,
    binary: PathBuf,
    owner: Option<(u32, u32)>,
    child: Option<Child>,
}

impl PgBouncer {
    /// Starts PgBouncer in `mode` in front of the server `upstream_url` points at (any
    /// database of it, as the URL's user), with at most `pool_size` server connections per
    /// database and user: clients of the same database and user share them.
    pub fn start(upstream_url: &str, mode: PoolMode, pool_size: u32) -> PgBouncer {
        let upstream = tokio_postgres::Config::from_str(upstream_url).expect("an upstream URL");
        let host = match upstream.get_hosts().first().expect("an upstream host") {
            Host::Tcp(host) => host.clone(),
            Host::Unix(path) => path.display().to_string(),
        };
        let port = upstream.get_ports().first().copied().unwrap_or(5432);
        let user = upstream.get_user().unwrap_or("postgres").to_owned();
        let password = upstream
            .get_password()
            .map(|password| String::from_utf8_lossy(password).into_owned());
        let dir = tempfile::Builder::new()
            .prefix("pgqs-pgbouncer-")
            .tempdir()
            .expect("temp dir");
        let owner = unprivileged_owner();
        let listen_port = free_port();
        let quoted = |value: &str| value.replace('"', "\"\"");
        let userlist = format!(
            "\"{}\" \"{}\"\n",
            quoted(&user),
            quoted(password.as_deref().unwrap_or(""))
        );
        let server_password = password
            .as_deref()
            .map(|password| format!(" password={password}"))
            .unwrap_or_default();
        let ini = format!(
            "[databases]\n\
             * = host={host} port={port} user={user}{server_password}\n\
             \n\
             [pgbouncer]\n\
             listen_addr = 127.0.0.1\n\
             listen_port = {listen_port}\n\
             unix_socket_dir =\n\
             auth_type = trust\n\
             auth_file = {dir}/userlist.txt\n\
             pool_mode = {mode}\n\
             default_pool_size = {pool_size}\n\
             min_pool_size = 0\n\
             reserve_pool_size = 0\n\
             max_client_conn = 200\n\
             server_reset_query =\n\
             server_login_retry = 1\n\
             query_wait_timeout = 20\n\
             ignore_startup_parameters = extra_float_digits\n\
             logfile = {dir}/pgbouncer.log\n",
            dir = dir.path().display(),
            mode = mode.as_str(),
        );
        std::fs::write(dir.path().join("userlist.txt"), userlist).expect("write userlist");
        std::fs::write(dir.path().join("pgbouncer.ini"), ini).expect("write pgbouncer.ini");
        if let Some((uid, gid)) = owner {
            for path in [
                dir.path().to_owned(),
                dir.path().join("userlist.txt"),
                dir.path().join("pgbouncer.ini"),
            ] {
                std::os::unix::fs::chown(&path, Some(uid), Some(gid)).expect("chown");
            }
        }
        let mut bouncer = PgBouncer {
            dir,
            port: listen_port,
            binary: binary(),
            owner,
            child: None,
        };
        bouncer.start_again();
        bouncer
    }

    /// The port PgBouncer listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `database_url` (a URL of the upstream server) with PgBouncer in between: same user,
    /// password and database.
    pub fn url(&self, database_url: &str) -> String {
        let config = tokio_postgres::Config::from_str(database_url).expect("a database URL");
        let user = config.get_user().unwrap_or("postgres");
        let password = config
            .get_password()
            .map(|password| format!(":{}", String::from_utf8_lossy(password)))
            .unwrap_or_default();
        let dbname = config.get_dbname().unwrap_or(user);
        format!(
            "postgres://{user}{password}@127.0.0.1:{}/{dbname}?sslmode=disable",
            self.port
        )
    }

    /// Kills PgBouncer at once (SIGKILL): every client and server connection drops.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts PgBouncer (again) on the same port and waits (at most 10s) until it accepts
    /// connections.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "PgBouncer is running already");
        let mut command = Command::new(&self.binary);
        command
            .arg(self.dir.path().join("pgbouncer.ini"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some((uid, gid)) = self.owner {
            use std::os::unix::process::CommandExt;
            command.uid(uid).gid(gid);
        }
        let mut child = command
            .spawn()
            .unwrap_or_else(|error| panic!("cannot run {}: {error}", self.binary.display()));
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("PgBouncer exited ({status}):\n{}", self.log());
            }
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                break;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("PgBouncer did not listen within 10s:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.child = Some(child);
    }

    /// What PgBouncer logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pgbouncer.log")).unwrap_or_default()
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Finds `pgbouncer`: `PGBOUNCER`, then `PATH`, then Debian's `/usr/sbin`.
fn binary() -> PathBuf {
    let mut candidates: Vec<PathBuf> = std::env::var_os("PGBOUNCER")
        .map(PathBuf::from)
        .into_iter()
        .collect();
    if let Some(path) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&path).map(|dir| dir.join("pgbouncer")));
    }
    candidates.push(Path::new("/usr/sbin/pgbouncer").to_owned());
    candidates.into_iter().find(|path| path.is_file()).expect(
        "pgbouncer not found: install it with `apt-get install -y pgbouncer` (scripts/test.sh \
             does when run as root), or set PGBOUNCER to the binary",
    )
}
