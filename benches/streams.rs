//! Memory per open `StreamIsActive` stream, reported in `benches/REPORT.md`: the release
//! binary runs as its own process reading a throwaway DBOS database; one client connection
//! opens streams the way KEDA does (all multiplexed on one HTTP/2 connection, one per
//! external-push ScaledObject), and the scaler's resident memory is read from
//! `/proc/<pid>/status` before and after.
//!
//! `cargo bench --bench streams` opens 10,000 streams; without `--bench` (as `cargo test
//! --all-targets` runs it) 200, as a smoke test.

#[path = "../tests/common/mod.rs"]
mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Fixture, Server, Workflows, scaled_object};
use pg_queue_scaler::grpc::proto::external_scaler_client::ExternalScalerClient;

fn main() {
    let full = std::env::args().any(|arg| arg == "--bench");
    let streams = if full { 10_000 } else { 200 };
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(run(streams));
}

/// The scaler process; killed when dropped.
struct Scaler(Child);

impl Drop for Scaler {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Resident memory of process `pid`, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/<pid>/status")
}

async fn run(streams: usize) {
    let server = Server::from_env_or_private();
    let url = server.dbos_database(Fixture::Py340).await;
    let rows = Workflows::new(&url, Fixture::Py340).await;
    rows.register_queue("q", Some(2)).await;
    let grpc_port = common::postgres::free_port();
    let started = Instant::now();
    let scaler = Scaler(
        Command::new(env!("CARGO_BIN_EXE_pg-queue-scaler"))
            .env_clear()
            .env("PGQS_DATABASE_URL", &url)
            .env("PGQS_GRPC_LISTEN", format!("127.0.0.1:{grpc_port}"))
            .env(
                "PGQS_HTTP_LISTEN",
                format!("127.0.0.1:{}", common::postgres::free_port()),
            )
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the scaler binary"),
    );
    let endpoint = format!("http://127.0.0.1:{grpc_port}");
    let mut client = None;
    for _ in 0..100 {
        if let Ok(connected) = ExternalScalerClient::connect(endpoint.clone()).await {
            client = Some(connected);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let client = client.expect("the scaler accepts connections within 5s");
    let trigger = scaled_object("so", &[("queue", "q")]);
    let first_spec = client.clone().get_metric_spec(trigger.clone()).await;
    let start_up = started.elapsed();
    first_spec.expect("GetMetricSpec");
    client
        .clone()
        .is_active(trigger.clone())
        .await
        .expect("IsActive");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pid = scaler.0.id();
    let idle = rss_kib(pid);

    let opened = Instant::now();
    let mut open = Vec::with_capacity(streams);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..streams {
        let mut client = client.clone();
        let reference = scaled_object(&format!("so-{i}"), &[("queue", "q")]);
        tasks.spawn(async move {
            let mut stream = client
                .stream_is_active(reference)
                .await
                .expect("StreamIsActive")
                .into_inner();
            let first = stream.message().await.expect("a push").expect("open");
            assert!(!first.result, "the queue is empty");
            stream
        });
    }
    while let Some(stream) = tasks.join_next().await {
        open.push(stream.expect("stream task"));
    }
    let open_time = opened.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let with_streams = rss_kib(pid);
    drop(open);
    let per_stream = (with_streams.saturating_sub(idle) as f64 * 1024.0) / streams as f64;
    println!("## Streams and memory\n");
    println!(
        "| streams | RSS idle | RSS with the streams open | per stream | all open and pushed in \
         | process start to first GetMetricSpec |"
    );
    println!("| --- | --- | --- | --- | --- | --- |");
    println!(
        "| {streams} | {:.1} MiB | {:.1} MiB | {:.0} bytes | {:.2} s | {:.0} ms |",
        idle as f64 / 1024.0,
        with_streams as f64 / 1024.0,
        per_stream,
        open_time.as_secs_f64(),
        start_up.as_secs_f64() * 1000.0
    );
}
