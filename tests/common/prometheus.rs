//! A throwaway Prometheus for tests, and the outside tools the monitoring tests run (helm,
//! promtool). Prometheus gets its own configuration and TSDB in a temporary directory, listens
//! on 127.0.0.1 on a free port, and is killed on drop. Debian's `prometheus` package provides
//! `prometheus` and `promtool` (scripts/test.sh installs it when missing); helm comes from
//! scripts/install-helm.sh (scripts/test.sh exports its path as `PGQS_HELM`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::postgres::free_port;

/// A running Prometheus.
pub struct Prometheus {
    dir: TempDir,
    port: u16,
    child: Option<Child>,
}

impl Prometheus {
    /// Starts Prometheus with `config` (a whole `prometheus.yml`; relative paths in it, such
    /// as `rule_files`, are relative to [`Prometheus::dir`], where `files` are written first)
    /// and waits (at most 20s) until it is ready.
    pub fn start(config: &str, files: &[(&str, &str)]) -> Prometheus {
        let dir = tempfile::Builder::new()
            .prefix("pgqs-prometheus-")
            .tempdir()
            .expect("temp dir");
        for (name, contents) in files {
            std::fs::write(dir.path().join(name), contents).expect("write a Prometheus file");
        }
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config).expect("write prometheus.yml");
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).expect("log file");
        let mut child = Command::new(tool("PROMETHEUS", "prometheus"))
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("start prometheus");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("Prometheus exited ({status}):\n{}", read_log(dir.path()));
            }
            if ready(port) {
                break;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("Prometheus not ready within 20s:\n{}", read_log(dir.path()));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Prometheus {
            dir,
            port,
            child: Some(child),
        }
    }

    /// Its base URL, `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Its temporary directory (configuration, rule files, TSDB, log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// What Prometheus logged so far.
    pub fn log(&self) -> String {
        read_log(self.dir.path())
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Whether `/-/ready` answers 200 (a blocking probe with short timeouts).
fn ready(port: u16) -> bool {
    use std::io::{Read, Write};
    let address = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let Ok(mut stream) = std::net::TcpStream::connect_timeout(&address, Duration::from_secs(1))
    else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let request = "GET /-/ready HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    let mut response = String::new();
    stream.write_all(request.as_bytes()).is_ok()
        && stream.read_to_string(&mut response).is_ok()
        && response.starts_with("HTTP/1.1 200")
}

fn read_log(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("prometheus.log")).unwrap_or_default()
}

/// Runs `promtool` with `args` in `dir`.
pub fn promtool(dir: &Path, args: &[&str]) -> Output {
    Command::new(tool("PROMTOOL", "promtool"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run promtool")
}

/// Renders the repository's chart with `helm template` as release `pg-queue-scaler` in
/// namespace `namespace`, showing only `template`, with `set` values (`key=value` each).
pub fn helm_template(namespace: &str, template: &str, set: &[&str]) -> String {
    let chart = Path::new(env!("CARGO_MANIFEST_DIR")).join("charts/pg-queue-scaler");
    let mut command = Command::new(helm());
    command
        .args(["template", "pg-queue-scaler"])
        .arg(&chart)
        .args(["--namespace", namespace, "--show-only", template]);
    for value in set {
        command.args(["--set", value]);
    }
    let output = command.output().expect("run helm");
    assert!(
        output.status.success(),
        "helm template failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("helm prints UTF-8")
}

/// `helm`: `PGQS_HELM`, then the repository's `.tools/bin/helm`, then `PATH`.
fn helm() -> PathBuf {
    let local = Path::new(env!("CARGO_MANIFEST_DIR")).join(".tools/bin/helm");
    let candidates = std::env::var_os("PGQS_HELM")
        .map(PathBuf::from)
        .into_iter()
        .chain([local])
        .chain(on_path("helm"));
    candidates.into_iter().find(|path| path.is_file()).expect(
        "helm not found: run scripts/install-helm.sh (scripts/test.sh does and exports \
         PGQS_HELM), or set PGQS_HELM to a helm binary",
    )
}

/// A Prometheus binary: the variable `env` when set, else `name` on `PATH` or in `/usr/bin`.
fn tool(env: &str, name: &str) -> PathBuf {
    let candidates = std::env::var_os(env)
        .map(PathBuf::from)
        .into_iter()
        .chain(on_path(name))
        .chain([Path::new("/usr/bin").join(name)]);
    candidates.into_iter().find(|path| path.is_file()).unwrap_or_else(|| {
        panic!(
            "{name} not found: install it with `apt-get install -y prometheus` (scripts/test.sh \
             does when run as root), or set {env} to the binary"
        )
    })
}

fn on_path(name: &str) -> Vec<PathBuf> {
    std::env::var_os("PATH")
        .map(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join(name))
                .collect()
        })
        .unwrap_or_default()
}
