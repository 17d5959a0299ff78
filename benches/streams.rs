//! Memory per open `StreamIsActive` stream, reported in `benches/REPORT.md`: the release
//! binary runs as its own process reading a throwaway DBOS database; one client connection
//! opens streams the way KEDA does (all multiplexed on one HTTP/2 connection, one per
//! external-push ScaledObject), and the scaler's resident memory is read from
//! `/proc/<pid>/status` before and after.
//!
//! `cargo bench --bench streams` opens 10,000 streams; without `--bench` (as `cargo test
//! --all-targets` runs it) 200, as a smoke test. `PGQS_BENCH_BEFORE_BINARY=<another build>`
//! measures that build too, alternately, and prints the ratio of memory per stream.

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

/// What one scaler binary used for `streams` streams.
struct Measurement {
    idle_kib: u64,
    with_streams_kib: u64,
    open_time: Duration,
    start_up: Duration,
}

impl Measurement {
    fn per_stream_bytes(&self, streams: usize) -> f64 {
        (self.with_streams_kib.saturating_sub(self.idle_kib) as f64 * 1024.0) / streams as f64
    }
}

/// Measures the release binary; with `PGQS_BENCH_BEFORE_BINARY` set to another build of the
/// scaler, measures both, alternately, twice each, on the same database.
async fn run(streams: usize) {
    let server = Server::from_env_or_private();
    let url = server.dbos_database(Fixture::Py340).await;
    let rows = Workflows::new(&url, Fixture::Py340).await;
    rows.register_queue("q", Some(2)).await;
    let current = env!("CARGO_BIN_EXE_pg-queue-scaler").to_owned();
    let mut binaries = vec![("this build", current)];
    if let Ok(before) = std::env::var("PGQS_BENCH_BEFORE_BINARY") {
        binaries = vec![("before", before), binaries.remove(0)];
        binaries.extend(binaries.clone());
    }
    println!("## Streams and memory\n");
    println!(
        "| binary | streams | RSS idle | RSS with the streams open | per stream | all open and \
         pushed in | process start to first GetMetricSpec |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    let mut per_stream: Vec<(&str, f64)> = Vec::new();
    for (name, binary) in &binaries {
        let measured = measure(binary, &url, streams).await;
        per_stream.push((name, measured.per_stream_bytes(streams)));
        println!(
            "| {name} | {streams} | {:.1} MiB | {:.1} MiB | {:.0} bytes | {:.2} s | {:.0} ms |",
            measured.idle_kib as f64 / 1024.0,
            measured.with_streams_kib as f64 / 1024.0,
            measured.per_stream_bytes(streams),
            measured.open_time.as_secs_f64(),
            measured.start_up.as_secs_f64() * 1000.0
        );
    }
    let mean = |wanted: &str| {
        let of: Vec<f64> = per_stream
            .iter()
            .filter(|(name, _)| *name == wanted)
            .map(|(_, bytes)| *bytes)
            .collect();
        of.iter().sum::<f64>() / of.len() as f64
    };
    if binaries.len() > 1 {
        println!(
            "\nper-stream memory, this build / before: {:.2}",
            mean("this build") / mean("before")
        );
    }
}

/// Starts `binary` on `url`, opens `streams` streams on one connection and reads its memory.
async fn measure(binary: &str, url: &str, streams: usize) -> Measurement {
    let grpc_port = common::postgres::free_port();
    let started = Instant::now();
    let scaler = Scaler(
        Command::new(binary)
            .env_clear()
            .env("PGQS_DATABASE_URL", url)
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
    Measurement {
        idle_kib: idle,
        with_streams_kib: with_streams,
        open_time,
        start_up,
    }
}
