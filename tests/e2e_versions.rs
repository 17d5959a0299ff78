//! Versions and limits end to end with the real DBOS 3.4.0 package: the app is launched as
//! v1 and v2, work is enqueued with DBOSClient (version-less and pinned), real DBOS workers
//! run it, and every trigger's number is checked against what DBOS itself would run.

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::postgres::Cluster;
use common::{
    TestScaler, dbos_app, eventually, is_active, latency_seconds, metric_value, next_activity,
    open_stream, python, scaled_object,
};
use pg_queue_scaler::grpc::proto::ScaledObjectRef;

/// A real DBOS worker running in the background; killed if the test ends first.
struct Worker(Child);

impl Worker {
    /// Starts `dbos_app.py work` with `args` against `url`.
    fn start(url: &str, args: &[&str]) -> Worker {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/dbos_app.py");
        let child = Command::new(python())
            .arg(script)
            .arg("work")
            .args(args)
            .env("DBOS_SYSTEM_DATABASE_URL", url)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start a DBOS worker");
        Worker(child)
    }

    /// Waits (bounded by the worker's own deadline) for it to exit successfully and returns
    /// what it printed.
    fn finish(mut self) -> String {
        let child = std::mem::replace(
            &mut self.0,
            Command::new("true").spawn().expect("a placeholder process"),
        );
        let output = child.wait_with_output().expect("wait for the worker");
        assert!(output.status.success(), "the DBOS worker failed");
        String::from_utf8(output.stdout).expect("UTF-8")
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A cluster with the app registered as v1, then as v2 (the latest), and a scaler on it.
async fn setup() -> (Cluster, String, TestScaler) {
    let cluster = Cluster::start();
    let url = cluster.url("app_dbos_sys");
    dbos_app(&url, &["register", "--app-version", "v1"]);
    dbos_app(&url, &["register", "--app-version", "v2"]);
    let scaler = TestScaler::start(&[
        ("PGQS_DATABASE_URL", url.as_str()),
        ("PGQS_REFRESH_INTERVAL", "250ms"),
    ])
    .await;
    (cluster, url, scaler)
}

/// Registers `queue` with the real SDK (launched as v2, the latest), with `limits` flags
/// such as `--worker-concurrency 2`.
fn register_queue(url: &str, queue: &str, limits: &[&str]) {
    let mut args = vec!["register", "--queue", queue, "--app-version", "v2"];
    args.extend_from_slice(limits);
    dbos_app(url, &args);
}

/// Enqueues `count` workflows on `queue` with DBOSClient, with `options` such as
/// `--app-version v1`.
fn enqueue(url: &str, queue: &str, count: u32, options: &[&str]) {
    let count = count.to_string();
    let mut args = vec!["enqueue", "--queue", queue, "--count", &count];
    args.extend_from_slice(options);
    dbos_app(url, &args);
}

/// A trigger counting `queue`'s items (depth, one per replica) with `pairs` added.
fn depth(queue: &str, pairs: &[(&str, &str)]) -> ScaledObjectRef {
    let mut all = vec![
        ("queue", queue),
        ("metric", "depth"),
        ("workerConcurrency", "1"),
    ];
    all.extend_from_slice(pairs);
    scaled_object("worker", &all)
}

fn version(name: &str) -> [(&'static str, &str); 1] {
    [("applicationVersion", name)]
}

/// Each version's trigger counts what a worker of that version dequeues; a v1 worker
/// draining its own work keeps v2's trigger inactive, and v1's goes inactive when done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_version_counts_what_its_workers_run_and_old_versions_drain() {
    let (_cluster, url, scaler) = setup().await;
    register_queue(&url, "tasks", &["--worker-concurrency", "2"]);
    enqueue(&url, "tasks", 3, &[]);
    enqueue(&url, "tasks", 2, &["--app-version", "v1"]);
    enqueue(&url, "tasks", 1, &["--app-version", "v2"]);
    let mut client = scaler.client().await;
    assert_eq!(
        metric_value(&mut client, &depth("tasks", &[]))
            .await
            .unwrap(),
        6
    );
    assert_eq!(
        metric_value(&mut client, &depth("tasks", &version("v1")))
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        metric_value(&mut client, &depth("tasks", &version("v2")))
            .await
            .unwrap(),
        4
    );
    assert_eq!(
        metric_value(&mut client, &depth("tasks", &version("latest")))
            .await
            .unwrap(),
        4
    );
    // worker_concurrency 2 from dbos.queues: v2's workers need ceil(4 / 2).
    let v2_replicas = scaled_object(
        "worker",
        &[("queue", "tasks"), ("applicationVersion", "v2")],
    );
    assert_eq!(metric_value(&mut client, &v2_replicas).await.unwrap(), 2);

    // Only v1 work on this queue: v2's trigger stays inactive while a real v1 worker runs
    // it, and v1's trigger turns inactive once the worker has finished it.
    register_queue(&url, "drain", &["--worker-concurrency", "2"]);
    enqueue(&url, "drain", 4, &["--app-version", "v1"]);
    let v1 = scaled_object(
        "worker",
        &[("queue", "drain"), ("applicationVersion", "v1")],
    );
    let v2 = scaled_object(
        "worker",
        &[("queue", "drain"), ("applicationVersion", "v2")],
    );
    // The enqueue lands between two reads (every 250ms): wait for the read that shows it,
    // so that each stream's first push is about the same rows.
    eventually(
        "a read that shows v1's work",
        Duration::from_secs(10),
        || {
            let (mut client, v1) = (client.clone(), v1.clone());
            async move { is_active(&mut client, &v1).await.unwrap_or(false) }
        },
    )
    .await;
    let mut v1_stream = open_stream(&mut client, &v1).await;
    let mut v2_stream = open_stream(&mut client, &v2).await;
    assert!(next_activity(&mut v1_stream).await, "v1 has work");
    assert!(
        !next_activity(&mut v2_stream).await,
        "v2 may run none of it"
    );
    let worker = Worker::start(
        &url,
        &[
            "--queue",
            "drain",
            "--app-version",
            "v1",
            "--until-empty",
            "--work-seconds",
            "1",
            "--seconds",
            "60",
        ],
    );
    let database = common::postgres::connect(&url).await;
    eventually(
        "the v1 worker to run v1 work",
        Duration::from_secs(20),
        || {
            let database = &database;
            async move {
                let running: i64 = database
                    .query_one(
                        "SELECT count(*) FROM dbos.workflow_status \
                     WHERE queue_name = 'drain' AND status = 'PENDING'",
                        &[],
                    )
                    .await
                    .unwrap()
                    .get(0);
                running > 0
            }
        },
    )
    .await;
    // While v1's work runs: v1's workers are still needed, v2's are not.
    assert!(is_active(&mut client, &v1).await.unwrap());
    assert_eq!(metric_value(&mut client, &v1).await.unwrap(), 2);
    assert!(
        !is_active(&mut client, &v2).await.unwrap(),
        "v1's running work is not v2's"
    );
    assert_eq!(metric_value(&mut client, &v2).await.unwrap(), 0);
    // Four workflows of a second, two at a time, after the worker's start-up.
    let drained = tokio::time::timeout(Duration::from_secs(30), v1_stream.message())
        .await
        .expect("v1's trigger turns inactive within 30s")
        .expect("the stream does not fail")
        .expect("the stream does not end");
    assert!(
        !drained.result,
        "v1's trigger goes inactive when its last workflow finishes"
    );
    let report = tokio::task::spawn_blocking(move || worker.finish())
        .await
        .unwrap();
    assert!(report.contains("\"completed\": 4"), "{report}");
    assert_eq!(metric_value(&mut client, &v1).await.unwrap(), 0);
    assert!(!is_active(&mut client, &v2).await.unwrap());
    drop((v1_stream, v2_stream));
    scaler.stop().await.unwrap();
}

/// DBOS's global and partition concurrency cap the number, as registered by the real SDK
/// and with work enqueued over many partition keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_limits_cap_the_number() {
    let (_cluster, url, scaler) = setup().await;
    register_queue(
        &url,
        "limited",
        &["--worker-concurrency", "2", "--concurrency", "4"],
    );
    enqueue(&url, "limited", 12, &[]);
    register_queue(
        &url,
        "parts",
        &["--worker-concurrency", "5", "--partition-concurrency", "1"],
    );
    enqueue(&url, "parts", 40, &["--partition-keys", "20"]);
    let mut client = scaler.client().await;
    let replicas = |queue: &str| scaled_object("worker", &[("queue", queue)]);
    // 12 waiting, 4 at once, 2 per worker: 2 replicas, and a depth of 4.
    assert_eq!(
        metric_value(&mut client, &replicas("limited"))
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        metric_value(&mut client, &depth("limited", &[]))
            .await
            .unwrap(),
        4
    );
    // 40 items over 20 partitions, one at a time each: 20 runnable, ceil(20 / 5) replicas.
    assert_eq!(
        metric_value(&mut client, &depth("parts", &[]))
            .await
            .unwrap(),
        20
    );
    assert_eq!(
        metric_value(&mut client, &replicas("parts")).await.unwrap(),
        4
    );
    let ignored = scaled_object(
        "worker",
        &[("queue", "parts"), ("concurrencyLimits", "ignore")],
    );
    assert_eq!(metric_value(&mut client, &ignored).await.unwrap(), 8);
    scaler.stop().await.unwrap();
}

/// Delayed work due within `delayedLookahead` counts; the latency of the oldest waiting
/// item grows with the clock and drops to 0 once a real worker has emptied the queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookahead_and_latency_follow_real_work() {
    let (_cluster, url, scaler) = setup().await;
    register_queue(&url, "later", &["--worker-concurrency", "1"]);
    enqueue(&url, "later", 2, &["--delay-seconds", "20"]);
    register_queue(&url, "slow", &["--worker-concurrency", "1"]);
    enqueue(&url, "slow", 2, &[]);
    let mut client = scaler.client().await;
    let soon = depth("later", &[("delayedLookahead", "60s")]);
    assert_eq!(metric_value(&mut client, &soon).await.unwrap(), 2);
    let now = depth("later", &[("delayedLookahead", "0s")]);
    assert_eq!(metric_value(&mut client, &now).await.unwrap(), 0);
    assert!(!is_active(&mut client, &now).await.unwrap());

    let latency = scaled_object(
        "worker",
        &[
            ("queue", "slow"),
            ("metric", "latency"),
            ("targetLatency", "30s"),
        ],
    );
    let first = latency_seconds(&mut client, &latency).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let later = latency_seconds(&mut client, &latency).await.unwrap();
    assert!(
        later >= first + 1.0,
        "the age grows with the clock: {first} then {later}"
    );
    let worker = Worker::start(
        &url,
        &[
            "--queue",
            "slow",
            "--app-version",
            "v2",
            "--until-empty",
            "--work-seconds",
            "0.2",
            "--seconds",
            "60",
        ],
    );
    let report = tokio::task::spawn_blocking(move || worker.finish())
        .await
        .unwrap();
    assert!(report.contains("\"completed\": 2"), "{report}");
    eventually("latency to drop to 0", Duration::from_secs(5), || {
        let mut client = client.clone();
        let latency = latency.clone();
        async move { latency_seconds(&mut client, &latency).await.unwrap() == 0.0 }
    })
    .await;
    scaler.stop().await.unwrap();
}
