//! Passwords in database URLs never reach a log line (at any level) or a message sent to
//! a client, whatever goes wrong.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Fixture, Server, TestScaler, metric_value, open_stream, scaled_object};

const PASSWORD: &str = "pw-Secr3t-c4nary";

/// Collects every log line of this test process.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// In process, with every crate logging at TRACE: a configured URL to a dead port, a
/// connectionFromEnv URL that works, one that is malformed, and one naming a missing
/// database. Neither the logs nor any gRPC error contains the password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passwords_stay_out_of_logs_and_client_errors() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .init();

    let server = Server::from_env_or_private();
    let url = server.dbos_database(Fixture::Py340).await;
    common::Workflows::new(&url, Fixture::Py340)
        .await
        .register_queue("q", None)
        .await;
    let with_password = |url: &str| {
        url.replacen(
            "postgres://postgres@",
            &format!("postgres://postgres:{PASSWORD}@"),
            1,
        )
    };
    let dead = format!(
        "postgres://scaler:{PASSWORD}@127.0.0.1:{}/db",
        common::postgres::free_port()
    );
    let scaler = TestScaler::start(&[("PGQS_DATABASE_URL", dead.as_str())]).await;
    let mut client = scaler.client().await;

    let mut client_messages = Vec::new();
    let default = scaled_object("w", &[("queue", "q"), ("workerConcurrency", "1")]);
    client_messages.push(
        metric_value(&mut client, &default)
            .await
            .unwrap_err()
            .message()
            .to_owned(),
    );

    let working = with_password(&url);
    let from_env = scaled_object(
        "w",
        &[
            ("queue", "q"),
            ("workerConcurrency", "1"),
            ("connectionFromEnv", working.as_str()),
        ],
    );
    assert_eq!(metric_value(&mut client, &from_env).await.unwrap(), 0);
    let mut stream = open_stream(&mut client, &from_env).await;
    assert!(!common::next_activity(&mut stream).await);

    let malformed = format!("postgres://scaler:{PASSWORD}@host:port/db");
    let broken = scaled_object(
        "w",
        &[("queue", "q"), ("connectionFromEnv", malformed.as_str())],
    );
    client_messages.push(
        client
            .is_active(broken)
            .await
            .unwrap_err()
            .message()
            .to_owned(),
    );

    let missing = with_password(&common::postgres::with_dbname(&url, "no_such_database"));
    let absent = scaled_object(
        "w",
        &[
            ("queue", "q"),
            ("workerConcurrency", "1"),
            ("connectionFromEnv", missing.as_str()),
        ],
    );
    let message = metric_value(&mut client, &absent)
        .await
        .unwrap_err()
        .message()
        .to_owned();
    assert!(
        message.contains("no_such_database"),
        "the reason is still useful: {message}"
    );
    client_messages.push(message);

    drop(stream);
    scaler.stop().await.unwrap();

    for message in &client_messages {
        assert!(
            !message.contains(PASSWORD),
            "client saw the password: {message}"
        );
    }
    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("cannot read queue depth"),
        "the failures were logged:\n{logs}"
    );
    assert!(logs.lines().count() > 20, "TRACE logging was on");
    assert!(
        logs.contains("tokio_postgres"),
        "the database driver's own logs were captured too"
    );
    let leaked: Vec<&str> = logs
        .lines()
        .filter(|line| line.contains(PASSWORD))
        .collect();
    assert!(
        leaked.is_empty(),
        "log lines hold the password: {leaked:#?}"
    );
}

/// The binary: a bad configuration exits 64 listing the problem without the URL, and a
/// running scaler at RUST_LOG=trace prints no password either.
#[test]
fn the_binary_never_prints_the_password() {
    let binary = env!("CARGO_BIN_EXE_pg-queue-scaler");
    let bad = Command::new(binary)
        .env_clear()
        .env(
            "PGQS_DATABASE_URL",
            format!("postgres://u:{PASSWORD}@h:notaport/db"),
        )
        .env("PGQS_REFRESH_INTERVAL", "never")
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        stderr.contains("database_url") && stderr.contains("refresh_interval"),
        "{stderr}"
    );
    assert!(!stderr.contains(PASSWORD), "{stderr}");

    let running = Command::new(binary)
        .env_clear()
        .env("RUST_LOG", "trace")
        .env(
            "PGQS_DATABASE_URL",
            format!(
                "postgres://u:{PASSWORD}@127.0.0.1:{}/db",
                common::postgres::free_port()
            ),
        )
        .env("PGQS_GRPC_LISTEN", "127.0.0.1:0")
        .env("PGQS_HTTP_LISTEN", "127.0.0.1:0")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        Command::new("kill")
            .args(["-INT", &running.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    let output = running.wait_with_output().unwrap();
    assert!(output.status.success(), "SIGINT stops the scaler cleanly");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("pg-queue-scaler listening"), "{stderr}");
    assert!(!stderr.contains(PASSWORD), "{stderr}");
}
