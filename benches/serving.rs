//! Serving speed, reported in `benches/REPORT.md`: the release binary with its shipped
//! defaults (metrics, per-call accounting and the default log level all on) against a bare
//! tonic server on the same `externalscaler.proto` that answers constants (the baseline,
//! below), driven by `h2load` with the same load, alternately, in one run.
//!
//! `cargo bench --bench serving` runs three rounds of 200,000 calls per method and server
//! (4 connections × 64 concurrent streams), then the latency of each at half the baseline's
//! rate, and checks through the scaler's own request counter that every call was answered
//! `OK` (h2load only sees HTTP 200; gRPC puts its status in trailers). It installs `h2load`
//! (Debian `nghttp2-client`) when missing and it runs as root. Without `--bench` (as
//! `cargo test --all-targets` runs it) both servers answer a few calls from a gRPC client
//! instead, as a smoke test that needs no `h2load`.
//!
//! `PGQS_BENCH_PERF=<file>`: the first `GetMetrics` run against the scaler is recorded with
//! `perf record --call-graph dwarf` into that file (build with `--profile profiling` for symbols).

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{Fixture, Server, Workflows, http_get, metric_sample, scaled_object};
use pg_queue_scaler::grpc::proto::external_scaler_client::ExternalScalerClient;
use pg_queue_scaler::grpc::proto::external_scaler_server::{ExternalScaler, ExternalScalerServer};
use pg_queue_scaler::grpc::proto::{
    GetMetricSpecResponse, GetMetricsRequest, GetMetricsResponse, IsActiveResponse, MetricSpec,
    MetricValue, ScaledObjectRef,
};
use prost::Message;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

/// Calls per h2load run, connections, and concurrent streams per connection.
const CALLS: u64 = 200_000;
const CONNECTIONS: u64 = 4;
const STREAMS: u64 = 64;
const ROUNDS: usize = 3;
/// Connections for the paced runs at half rate, one call in flight on each.
const PACED_CONNECTIONS: u64 = 64;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|arg| arg == "--baseline-server") {
        let address = args.get(at + 1).expect("--baseline-server ADDR");
        serve_baseline(address.parse().expect("a socket address"));
        return;
    }
    let full = args.iter().any(|arg| arg == "--bench");
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(run(full));
}

/// The baseline: answers every call with constants, on tonic's defaults and the runtime's
/// defaults (as the scaler's binary uses them).
struct Baseline;

#[tonic::async_trait]
impl ExternalScaler for Baseline {
    async fn is_active(
        &self,
        _: Request<ScaledObjectRef>,
    ) -> Result<Response<IsActiveResponse>, Status> {
        Ok(Response::new(IsActiveResponse { result: true }))
    }

    type StreamIsActiveStream = ReceiverStream<Result<IsActiveResponse, Status>>;

    async fn stream_is_active(
        &self,
        _: Request<ScaledObjectRef>,
    ) -> Result<Response<Self::StreamIsActiveStream>, Status> {
        Err(Status::unimplemented("the baseline does not stream"))
    }

    type StreamMetricSpecStream = ReceiverStream<Result<GetMetricSpecResponse, Status>>;

    async fn stream_metric_spec(
        &self,
        _: Request<ScaledObjectRef>,
    ) -> Result<Response<Self::StreamMetricSpecStream>, Status> {
        Err(Status::unimplemented("the baseline does not stream"))
    }

    async fn get_metric_spec(
        &self,
        _: Request<ScaledObjectRef>,
    ) -> Result<Response<GetMetricSpecResponse>, Status> {
        Ok(Response::new(GetMetricSpecResponse {
            metric_specs: vec![MetricSpec {
                metric_name: "baseline".into(),
                target_size: 1,
                target_size_float: 1.0,
            }],
        }))
    }

    async fn get_metrics(
        &self,
        _: Request<GetMetricsRequest>,
    ) -> Result<Response<GetMetricsResponse>, Status> {
        Ok(Response::new(GetMetricsResponse {
            metric_values: vec![MetricValue {
                metric_name: "baseline".into(),
                metric_value: 4,
                metric_value_float: 4.0,
            }],
        }))
    }
}

fn serve_baseline(address: std::net::SocketAddr) {
    tokio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(
            tonic::transport::Server::builder()
                .add_service(ExternalScalerServer::new(Baseline))
                .serve(address),
        )
        .expect("the baseline serves");
}

/// A server process; killed when dropped.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One of the two servers under load.
struct Target {
    name: &'static str,
    grpc: u16,
    /// The scaler's HTTP port, for its request counter (the baseline has none).
    http: Option<u16>,
    process: Process,
}

async fn run(full: bool) {
    let server = Server::from_env_or_private();
    let url = server.dbos_database(Fixture::Py340).await;
    let mut rows = Workflows::new(&url, Fixture::Py340).await;
    rows.register_queue("q", Some(2)).await;
    rows.enqueue("q", 7, None).await;
    let scaler = start_scaler(&url);
    let baseline = start_baseline();
    let trigger = scaled_object("so", &[("queue", "q")]);
    let metric_name = wait_for_spec(scaler.grpc, &trigger).await;
    wait_for_spec(baseline.grpc, &trigger).await;
    let get_metrics = GetMetricsRequest {
        scaled_object_ref: Some(trigger.clone()),
        metric_name,
    };
    if !full {
        smoke(&scaler, &baseline, &trigger, &get_metrics).await;
        return;
    }
    let work = tempfile::tempdir().expect("a scratch directory");
    let bodies = [
        (
            "GetMetrics",
            grpc_body(work.path(), "get-metrics", &get_metrics),
        ),
        ("IsActive", grpc_body(work.path(), "is-active", &trigger)),
    ];
    ensure_h2load();
    println!("## Serving: the scaler against a bare tonic server\n");
    println!(
        "{CALLS} calls per run, {CONNECTIONS} connections × {STREAMS} concurrent streams, \
         {ROUNDS} rounds alternating the two servers; the scaler reads a DBOS 3.4.0 database \
         (one queue, 7 items) with its default configuration.\n"
    );
    for (method, body) in &bodies {
        let saturation = compare(method, body, [&scaler, &baseline], work.path()).await;
        half_rate_latency(method, body, [&scaler, &baseline], saturation, work.path()).await;
    }
    memory(&scaler);
}

/// The release binary of this package, with its defaults.
fn start_scaler(url: &str) -> Target {
    let grpc = common::postgres::free_port();
    let http = common::postgres::free_port();
    let log = std::fs::File::create(std::env::temp_dir().join("pgqs-serving-scaler.log"))
        .expect("a log file");
    let child = Command::new(env!("CARGO_BIN_EXE_pg-queue-scaler"))
        .env_clear()
        .env("PGQS_DATABASE_URL", url)
        .env("PGQS_GRPC_LISTEN", format!("127.0.0.1:{grpc}"))
        .env("PGQS_HTTP_LISTEN", format!("127.0.0.1:{http}"))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start the scaler binary");
    Target {
        name: "scaler",
        grpc,
        http: Some(http),
        process: Process(child),
    }
}

/// This executable again, serving the baseline.
fn start_baseline() -> Target {
    let grpc = common::postgres::free_port();
    let child = Command::new(std::env::current_exe().expect("this executable"))
        .args(["--baseline-server", &format!("127.0.0.1:{grpc}")])
        .stdout(Stdio::null())
        .spawn()
        .expect("start the baseline");
    Target {
        name: "baseline",
        grpc,
        http: None,
        process: Process(child),
    }
}

/// Waits until `port` answers `GetMetricSpec` for `trigger`; returns the metric name.
async fn wait_for_spec(port: u16, trigger: &ScaledObjectRef) -> String {
    for _ in 0..200 {
        if let Ok(mut client) =
            ExternalScalerClient::connect(format!("http://127.0.0.1:{port}")).await
        {
            let spec = client
                .get_metric_spec(trigger.clone())
                .await
                .expect("GetMetricSpec");
            return spec.into_inner().metric_specs[0].metric_name.clone();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("nothing answers on port {port} within 10s");
}

/// Without h2load: each server answers both calls, and the scaler with the queue's numbers.
async fn smoke(
    scaler: &Target,
    baseline: &Target,
    trigger: &ScaledObjectRef,
    get_metrics: &GetMetricsRequest,
) {
    for target in [scaler, baseline] {
        let endpoint = format!("http://127.0.0.1:{}", target.grpc);
        let mut client = ExternalScalerClient::connect(endpoint)
            .await
            .expect("connect");
        for _ in 0..20 {
            let active = client.is_active(trigger.clone()).await.expect("IsActive");
            assert!(
                active.into_inner().result,
                "{}: the queue has work",
                target.name
            );
            let metrics = client
                .get_metrics(get_metrics.clone())
                .await
                .expect("GetMetrics");
            let value = metrics.into_inner().metric_values[0].metric_value;
            assert_eq!(value, 4, "{}: ceil(7 / 2) replicas", target.name);
        }
    }
    println!("serving smoke test: both servers answered IsActive and GetMetrics");
}

/// A request body as gRPC frames it: uncompressed flag, big-endian length, message.
fn grpc_body(dir: &Path, name: &str, message: &impl Message) -> PathBuf {
    let encoded = message.encode_to_vec();
    let mut body = vec![0u8];
    body.extend_from_slice(&u32::try_from(encoded.len()).expect("small").to_be_bytes());
    body.extend_from_slice(&encoded);
    let path = dir.join(format!("{name}.bin"));
    std::fs::write(&path, body).expect("write the body");
    path
}

/// Installs h2load (Debian's `nghttp2-client`) when it is missing, as the test script does
/// for Postgres.
fn ensure_h2load() {
    if Command::new("h2load").arg("--version").output().is_ok() {
        return;
    }
    eprintln!("installing h2load (apt-get install nghttp2-client)");
    let installed = Command::new("apt-get")
        .args(["install", "-y", "-qq", "nghttp2-client"])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .is_ok_and(|status| status.success());
    assert!(
        installed,
        "h2load is missing: apt-get install -y nghttp2-client"
    );
}

/// What one h2load run measured.
struct Run {
    calls_per_second: f64,
    /// Microseconds: p50, p90, p99.
    percentiles: [f64; 3],
}

/// Runs h2load against `target` and checks every call got HTTP 200 and, on the scaler, gRPC
/// `OK` by its own counter.
async fn load(target: &Target, method: &str, body: &Path, extra: &[String], dir: &Path) -> Run {
    let before = ok_calls(target, method).await;
    let perf = record_once(target, method);
    let log = dir.join(format!("{}-{method}.log", target.name));
    let url = format!(
        "http://127.0.0.1:{}/externalscaler.ExternalScaler/{method}",
        target.grpc
    );
    let output = Command::new("h2load")
        .args(["-H", "content-type: application/grpc", "-H", "te: trailers"])
        .arg("-d")
        .arg(body)
        .arg(format!("--log-file={}", log.display()))
        .args(extra)
        .arg(&url)
        .output()
        .expect("run h2load");
    if let Some(perf) = perf {
        stop_recording(perf);
    }
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "h2load failed: {text}");
    let calls = count(&text, "requests: ", " total");
    let ok = count(&text, "status codes: ", " 2xx");
    assert_eq!(
        ok, calls,
        "{}: every call gets HTTP 200: {text}",
        target.name
    );
    if let Some(before) = before {
        let after = ok_calls(target, method)
            .await
            .expect("the scaler's counter");
        assert_eq!(
            after - before,
            calls as f64,
            "the scaler answered every call OK"
        );
    }
    let per_second = text
        .lines()
        .find_map(|line| line.strip_prefix("finished in "))
        .and_then(|rest| rest.split(", ").nth(1))
        .and_then(|rate| rate.trim_end_matches(" req/s").parse().ok())
        .expect("h2load's req/s");
    Run {
        calls_per_second: per_second,
        percentiles: percentiles(&log),
    }
}

/// With `PGQS_BENCH_PERF`, starts `perf record` on the scaler for its first `GetMetrics`
/// run (once per process).
fn record_once(target: &Target, method: &str) -> Option<Child> {
    static RECORDED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    let path = std::env::var_os("PGQS_BENCH_PERF")?;
    if target.http.is_none() || method != "GetMetrics" || RECORDED.swap(true, Ordering::SeqCst) {
        return None;
    }
    let perf = Command::new("perf")
        .args(["record", "-F", "499", "--call-graph", "dwarf,16384", "-o"])
        .arg(path)
        .args(["-p", &target.process.0.id().to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start perf record");
    // perf attaches in a few milliseconds; the load lasts seconds.
    std::thread::sleep(Duration::from_millis(300));
    Some(perf)
}

/// Stops `perf record` the way Ctrl-C does, so that it writes its file.
fn stop_recording(mut perf: Child) {
    let pid = perf.id().to_string();
    let _ = Command::new("kill").args(["-INT", &pid]).status();
    let _ = perf.wait();
}

/// The number h2load prints between `prefix` and `suffix`.
fn count(text: &str, prefix: &str, suffix: &str) -> u64 {
    text.lines()
        .find_map(|line| line.strip_prefix(prefix))
        .and_then(|rest| rest.split(suffix).next())
        .and_then(|number| number.trim().parse().ok())
        .unwrap_or_else(|| panic!("{prefix}…{suffix} in h2load's output: {text}"))
}

/// p50, p90 and p99 of the per-request durations h2load logged (third column, µs).
fn percentiles(log: &Path) -> [f64; 3] {
    let text = std::fs::read_to_string(log).expect("h2load's log");
    let mut durations: Vec<f64> = text
        .lines()
        .filter_map(|line| line.split('\t').nth(2)?.parse().ok())
        .collect();
    durations.sort_by(f64::total_cmp);
    let at = |q: f64| durations[((durations.len() - 1) as f64 * q).round() as usize];
    [at(0.5), at(0.9), at(0.99)]
}

/// The scaler's count of `method` calls answered OK (None for the baseline).
async fn ok_calls(target: &Target, method: &str) -> Option<f64> {
    let port = target.http?;
    let (status, text) = http_get(([127, 0, 0, 1], port).into(), "/metrics").await;
    assert_eq!(status, 200);
    let selector =
        format!("pg_queue_scaler_grpc_requests_total{{method=\"{method}\",code=\"OK\"}}");
    Some(if text.contains(&selector) {
        metric_sample(&text, &selector)
    } else {
        0.0
    })
}

/// Saturation throughput of both servers, alternating, `ROUNDS` times; prints the table and
/// returns the baseline's median calls/s.
async fn compare(method: &str, body: &Path, targets: [&Target; 2], dir: &Path) -> f64 {
    let extra = [
        format!("-n{CALLS}"),
        format!("-c{CONNECTIONS}"),
        format!("-m{STREAMS}"),
    ];
    let mut runs: [Vec<Run>; 2] = [Vec::new(), Vec::new()];
    for _ in 0..ROUNDS {
        for (index, target) in targets.iter().enumerate() {
            runs[index].push(load(target, method, body, &extra, dir).await);
        }
    }
    println!("### {method} at saturation\n");
    println!("| server | calls/s, each round | median | p50 | p90 | p99 (median round) |");
    println!("| --- | --- | --- | --- | --- | --- |");
    let mut medians = [0.0; 2];
    for (index, target) in targets.iter().enumerate() {
        let mut rates: Vec<f64> = runs[index].iter().map(|run| run.calls_per_second).collect();
        let rounds = rates
            .iter()
            .map(|r| format!("{r:.0}"))
            .collect::<Vec<_>>()
            .join(", ");
        rates.sort_by(f64::total_cmp);
        medians[index] = rates[rates.len() / 2];
        let middle = runs[index]
            .iter()
            .find(|run| run.calls_per_second == medians[index])
            .expect("the median run");
        let [p50, p90, p99] = middle.percentiles.map(|us| us / 1000.0);
        println!(
            "| {} | {rounds} | {:.0} | {p50:.2} ms | {p90:.2} ms | {p99:.2} ms |",
            target.name, medians[index]
        );
    }
    println!(
        "\nRatio scaler / baseline (medians): **{:.2}**\n",
        medians[0] / medians[1]
    );
    medians[1]
}

/// Latency of both servers at half the baseline's saturation rate, for ten seconds each:
/// `PACED_CONNECTIONS` connections, each sending one call at a time at its share of the rate.
async fn half_rate_latency(
    method: &str,
    body: &Path,
    targets: [&Target; 2],
    baseline_rate: f64,
    dir: &Path,
) {
    let rate = (baseline_rate / 2.0).round() as u64;
    // One call at a time per connection, paced: the latency of a call, not of a queue of
    // calls waiting in the client.
    let per_connection = (rate / PACED_CONNECTIONS).max(1);
    let extra = [
        format!("-n{}", per_connection * PACED_CONNECTIONS * 10),
        format!("-c{PACED_CONNECTIONS}"),
        "-m1".to_owned(),
        format!("--rps={per_connection}"),
    ];
    println!(
        "### {method} at half the baseline's rate ({rate} calls/s, {PACED_CONNECTIONS} \
         connections, one call in flight on each)\n"
    );
    println!("| server | calls/s | p50 | p90 | p99 |");
    println!("| --- | --- | --- | --- | --- |");
    for target in targets {
        let run = load(target, method, body, &extra, dir).await;
        let [p50, p90, p99] = run.percentiles.map(|us| us / 1000.0);
        println!(
            "| {} | {:.0} | {p50:.2} ms | {p90:.2} ms | {p99:.2} ms |",
            target.name, run.calls_per_second
        );
    }
    println!();
}

/// The scaler's resident memory after the load.
fn memory(scaler: &Target) {
    let pid = scaler.process.0.id();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let rss = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .map(str::trim)
        .unwrap_or("?");
    println!("Scaler RSS after the load: {rss}\n");
}
