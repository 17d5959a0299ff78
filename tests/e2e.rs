//! End to end, as a user runs it: a real DBOS Python app registers a queue and enqueues
//! work with DBOSClient; the scaler binary is started with DBOS_SYSTEM_DATABASE_URL; a gRPC
//! client sees the numbers, a push on enqueue, and Unavailable once Postgres is gone.

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::postgres::{Cluster, free_port};
use common::{
    dbos_app, eventually, is_active, metric_value, next_activity, open_stream, scaled_object,
};
use pg_queue_scaler::grpc::proto::external_scaler_client::ExternalScalerClient;
use tokio_stream::StreamExt;
use tonic::Code;

/// The scaler binary: the release build when the test command provides it.
fn scaler_binary() -> PathBuf {
    std::env::var_os("PGQS_E2E_BINARY")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_pg-queue-scaler")))
}

/// Kills the scaler if the test fails before stopping it.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_dbos_app_scales_from_zero_and_an_outage_is_unavailable() {
    let cluster = Cluster::start();
    let url = cluster.url("app_dbos_sys");
    dbos_app(
        &url,
        &[
            "register",
            "--queue",
            "taskQueue",
            "--worker-concurrency",
            "2",
        ],
    );

    let grpc_port = free_port();
    let child = Command::new(scaler_binary())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("DBOS_SYSTEM_DATABASE_URL", &url)
        .env("PGQS_GRPC_LISTEN", format!("127.0.0.1:{grpc_port}"))
        .env("PGQS_HTTP_LISTEN", format!("127.0.0.1:{}", free_port()))
        .env("PGQS_REFRESH_INTERVAL", "250ms")
        .env("PGQS_STALE_AFTER", "2s")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the scaler binary");
    let mut scaler = Running(child);

    let endpoint = format!("http://127.0.0.1:{grpc_port}");
    let mut connected = None;
    for _ in 0..100 {
        if let Ok(client) = ExternalScalerClient::connect(endpoint.clone()).await {
            connected = Some(client);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut client = connected.expect("the scaler accepts connections within 10s");

    // worker_concurrency comes from dbos.queues, written by DBOS.register_queue.
    let trigger = scaled_object("dbos-worker", &[("queue", "taskQueue")]);
    assert_eq!(metric_value(&mut client, &trigger).await.unwrap(), 0);
    let mut stream = open_stream(&mut client, &trigger).await;
    assert!(
        !next_activity(&mut stream).await,
        "an empty queue is inactive"
    );

    dbos_app(&url, &["enqueue", "--queue", "taskQueue", "--count", "5"]);
    assert!(
        next_activity(&mut stream).await,
        "the enqueue is pushed to the stream"
    );
    // The push may come from a read taken while the five rows were still being written.
    eventually(
        "GetMetrics to reach ceil(5 / 2)",
        Duration::from_secs(5),
        || {
            let mut client = client.clone();
            let trigger = trigger.clone();
            async move {
                let value = metric_value(&mut client, &trigger).await.unwrap();
                assert!(value <= 3, "never more than ceil(5 / 2): {value}");
                value == 3
            }
        },
    )
    .await;
    assert!(is_active(&mut client, &trigger).await.unwrap());

    cluster.stop_server();
    eventually(
        "GetMetrics to report the outage",
        Duration::from_secs(15),
        || {
            let mut client = client.clone();
            let trigger = trigger.clone();
            async move {
                match metric_value(&mut client, &trigger).await {
                    Err(status) => {
                        assert_eq!(status.code(), Code::Unavailable, "{status:?}");
                        true
                    }
                    Ok(value) => {
                        assert_eq!(value, 3, "only the last real value may be served, never 0");
                        false
                    }
                }
            }
        },
    )
    .await;
    let status = client.is_active(trigger).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);

    // SIGTERM: the stream ends cleanly and the process exits 0 within its grace period.
    let pid = scaler.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let end = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .unwrap();
    assert!(end.is_none(), "stream ends with OK on shutdown: {end:?}");
    let mut exit = None;
    for _ in 0..100 {
        if let Some(status) = scaler.0.try_wait().unwrap() {
            exit = Some(status);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        exit.expect("the scaler exits within 10s of SIGTERM")
            .success()
    );
}
