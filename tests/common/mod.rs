//! Shared helpers for integration tests: Postgres, DBOS rows, and the scaler started
//! in-process on 127.0.0.1:0 with a generated gRPC client.
#![allow(dead_code, unused_imports, unreachable_pub)] // each test binary uses its own subset

pub mod certs;
pub mod fixtures;
pub mod grpcurl;
pub mod pgbouncer;
pub mod postgres;
pub mod process;
pub mod prometheus;
pub mod proxy;
pub mod wait;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use pg_queue_scaler::config::{Flags, Settings};
use pg_queue_scaler::grpc::proto::external_scaler_client::ExternalScalerClient;
use pg_queue_scaler::grpc::proto::{GetMetricsRequest, IsActiveResponse, ScaledObjectRef};
use pg_queue_scaler::{Listeners, RunError, run};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

pub(crate) use fixtures::per_fixture;
pub use postgres::{Fixture, Server};
pub use wait::eventually;

/// The scaler running in this process.
pub struct TestScaler {
    /// The gRPC address.
    pub addr: SocketAddr,
    /// The HTTP address (metrics, health).
    pub http_addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), RunError>>,
}

impl TestScaler {
    /// Starts the scaler with settings from `env` (as `PGQS_*` variables would give them).
    pub async fn start(env: &[(&str, &str)]) -> TestScaler {
        // Shut down quickly unless a test says otherwise; later pairs win.
        let env: HashMap<String, String> = [("PGQS_DRAIN_DELAY", "50ms")]
            .iter()
            .chain(env)
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let settings = Settings::load(&Flags::default(), &env).expect("test settings are valid");
        let grpc = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = grpc.local_addr().expect("local addr");
        let http = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let http_addr = http.local_addr().expect("local addr");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(run(settings, Listeners { grpc, http }, async move {
            let _ = stopped.await;
        }));
        TestScaler {
            addr,
            http_addr,
            stop: Some(stop),
            task,
        }
    }

    /// A generated client connected to the scaler.
    pub async fn client(&self) -> ExternalScalerClient<Channel> {
        ExternalScalerClient::connect(format!("http://{}", self.addr))
            .await
            .expect("connect to the scaler")
    }

    /// A channel to the scaler, for the health and reflection clients.
    pub async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.addr))
            .expect("uri")
            .connect()
            .await
            .expect("connect")
    }

    /// Signals shutdown without waiting.
    pub fn begin_shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Signals shutdown and waits (bounded) for `run` to return.
    pub async fn stop(mut self) -> Result<(), RunError> {
        self.begin_shutdown();
        tokio::time::timeout(Duration::from_secs(15), &mut self.task)
            .await
            .expect("the scaler stops within its grace period")
            .expect("the scaler task does not panic")
    }
}

/// A `ScaledObjectRef` with the given metadata, as KEDA sends it.
pub fn scaled_object(name: &str, metadata: &[(&str, &str)]) -> ScaledObjectRef {
    let mut scaler_metadata: HashMap<String, String> = metadata
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    scaler_metadata.insert("scalerAddress".into(), "pg-queue-scaler.keda:9090".into());
    ScaledObjectRef {
        name: name.into(),
        namespace: "workers".into(),
        scaler_metadata,
    }
}

/// Asks for the trigger's metric the way KEDA does: GetMetricSpec, then GetMetrics by name.
/// For metrics that count (replicas, depth): the value, equal as integer and float.
pub async fn metric_value(
    client: &mut ExternalScalerClient<Channel>,
    reference: &ScaledObjectRef,
) -> Result<i64, tonic::Status> {
    let value = fetch_metric(client, reference).await?;
    assert_eq!(
        value.metric_value as f64, value.metric_value_float,
        "int and float agree"
    );
    Ok(value.metric_value)
}

/// Like [`metric_value`], for `metric: latency`: the float value in seconds (the integer
/// is the same, rounded up).
pub async fn latency_seconds(
    client: &mut ExternalScalerClient<Channel>,
    reference: &ScaledObjectRef,
) -> Result<f64, tonic::Status> {
    let value = fetch_metric(client, reference).await?;
    assert_eq!(
        value.metric_value as f64,
        value.metric_value_float.ceil(),
        "the integer is the float rounded up"
    );
    Ok(value.metric_value_float)
}

async fn fetch_metric(
    client: &mut ExternalScalerClient<Channel>,
    reference: &ScaledObjectRef,
) -> Result<pg_queue_scaler::grpc::proto::MetricValue, tonic::Status> {
    let spec = client
        .get_metric_spec(reference.clone())
        .await?
        .into_inner();
    assert_eq!(spec.metric_specs.len(), 1, "exactly one metric spec");
    let name = spec.metric_specs[0].metric_name.clone();
    let metrics = client
        .get_metrics(GetMetricsRequest {
            scaled_object_ref: Some(reference.clone()),
            metric_name: name.clone(),
        })
        .await?
        .into_inner();
    assert_eq!(metrics.metric_values.len(), 1, "exactly one metric value");
    let value = metrics.metric_values[0].clone();
    assert_eq!(value.metric_name, name, "the value is named as requested");
    Ok(value)
}

/// Writes DBOS workflow rows the way DBOS does.
pub struct Workflows {
    client: tokio_postgres::Client,
    schema: String,
    with_application: bool,
    next: u32,
}

impl Workflows {
    /// Writes into `url`'s `dbos` schema, created from `fixture`.
    pub async fn new(url: &str, fixture: Fixture) -> Workflows {
        Workflows {
            client: postgres::connect(url).await,
            schema: "dbos".into(),
            with_application: fixture.has_application_name(),
            next: 0,
        }
    }

    /// The connection, for statements of a test's own.
    pub fn client(&self) -> &tokio_postgres::Client {
        &self.client
    }

    /// Registers a queue as `DBOS.register_queue` does.
    pub async fn register_queue(&self, queue: &str, worker_concurrency: Option<i32>) {
        self.client
            .execute(
                &format!(
                    "INSERT INTO {}.queues (name, worker_concurrency) VALUES ($1, $2) \
                     ON CONFLICT (name) DO UPDATE \
                     SET worker_concurrency = EXCLUDED.worker_concurrency",
                    self.schema
                ),
                &[&queue, &worker_concurrency],
            )
            .await
            .expect("register queue");
    }

    /// Registers a queue with DBOS's limits, as `DBOS.register_queue` does.
    pub async fn register_limited_queue(&self, queue: &str, limits: QueueLimits) {
        self.client
            .execute(
                &format!(
                    "INSERT INTO {}.queues (name, worker_concurrency, concurrency, \
                     partition_concurrency, partition_worker_concurrency) \
                     VALUES ($1, $2, $3, $4, $5) \
                     ON CONFLICT (name) DO UPDATE \
                     SET worker_concurrency = EXCLUDED.worker_concurrency, \
                     concurrency = EXCLUDED.concurrency, \
                     partition_concurrency = EXCLUDED.partition_concurrency, \
                     partition_worker_concurrency = EXCLUDED.partition_worker_concurrency",
                    self.schema
                ),
                &[
                    &queue,
                    &limits.worker_concurrency,
                    &limits.concurrency,
                    &limits.partition_concurrency,
                    &limits.partition_worker_concurrency,
                ],
            )
            .await
            .expect("register limited queue");
    }

    /// Registers an application version as a DBOS launch does, `age_ms` ago (a larger age
    /// is an older version), owned by `application` where the schema records owners.
    pub async fn register_version(&self, version: &str, age_ms: i64, application: Option<&str>) {
        let (column, value) = if self.with_application {
            (", application_name", ", $3")
        } else {
            ("", "")
        };
        let sql = format!(
            "INSERT INTO {}.application_versions \
             (version_id, version_name, version_timestamp{column}) \
             VALUES ($1, $1, (extract(epoch FROM now()) * 1000)::bigint - $2::bigint{value})",
            self.schema
        );
        let application = application.map(str::to_owned);
        let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = vec![&version, &age_ms];
        if self.with_application {
            params.push(&application);
        }
        self.client
            .execute(&sql, &params)
            .await
            .expect("register version");
    }

    /// Enqueues `count` workflows as DBOSClient does: ENQUEUED, no executor, no start time.
    pub async fn enqueue(&mut self, queue: &str, count: u32, application: Option<&str>) {
        self.add(
            &Work {
                application,
                ..Work::enqueued(queue)
            },
            count,
        )
        .await;
    }

    /// Workflows a worker has dequeued: PENDING with an executor and a start time.
    pub async fn running(&mut self, queue: &str, count: u32, application: Option<&str>) {
        self.add(
            &Work {
                application,
                ..Work::running(queue)
            },
            count,
        )
        .await;
    }

    /// Delayed workflows, due `offset_ms` from now (negative: already due).
    pub async fn delayed(&mut self, queue: &str, count: u32, offset_ms: i64) {
        self.add(&Work::delayed(queue, offset_ms), count).await;
    }

    /// Workflows in any other state (finished, or started without a queue).
    pub async fn other(&mut self, status: &str, queue: Option<&str>, count: u32) {
        let work = Work {
            queue,
            status,
            ..Work::enqueued("")
        };
        self.add(&work, count).await;
    }

    /// Writes `count` workflows shaped like `work`; returns their ids.
    pub async fn add(&mut self, work: &Work<'_>, count: u32) -> Vec<String> {
        let mut ids = Vec::new();
        for _ in 0..count {
            ids.push(self.insert(work).await);
        }
        ids
    }

    async fn insert(&mut self, work: &Work<'_>) -> String {
        self.next += 1;
        let id = format!("wf-{}-{}", std::process::id(), self.next);
        let (application_column, application_value) = if self.with_application {
            (", application_name", ", $8")
        } else {
            ("", "")
        };
        let running = work.status == "PENDING";
        let sql = format!(
            "INSERT INTO {}.workflow_status (workflow_uuid, status, name, queue_name, \
             delay_until_epoch_ms, application_version, queue_partition_key, created_at, \
             executor_id, owner_xid, started_at_epoch_ms, recovery_attempts{application_column}) \
             VALUES ($1, $2, 'work', $3, \
             CASE WHEN $4::bigint IS NULL THEN NULL \
             ELSE (extract(epoch FROM now()) * 1000)::bigint + $4::bigint END, $5, $6, \
             (extract(epoch FROM now()) * 1000)::bigint - $7::bigint, \
             CASE WHEN {running} THEN 'worker-1' END, CASE WHEN {running} THEN 'x' END, \
             CASE WHEN {running} THEN (extract(epoch FROM now()) * 1000)::bigint END, \
             CASE WHEN {running} THEN 1 ELSE 0 END{application_value})",
            self.schema
        );
        let application = work.application.map(str::to_owned);
        let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = vec![
            &id,
            &work.status,
            &work.queue,
            &work.delay_offset_ms,
            &work.version,
            &work.partition,
            &work.age_ms,
        ];
        if self.with_application {
            params.push(&application);
        }
        self.client
            .execute(&sql, &params)
            .await
            .expect("insert workflow");
        id
    }

    /// Marks the workflows `ids` finished, as a worker does when they complete.
    pub async fn finish(&self, ids: &[String]) {
        self.client
            .execute(
                &format!(
                    "UPDATE {}.workflow_status SET status = 'SUCCESS', \
                     completed_at = (extract(epoch FROM now()) * 1000)::bigint \
                     WHERE workflow_uuid = ANY($1)",
                    self.schema
                ),
                &[&ids],
            )
            .await
            .expect("finish workflows");
    }
}

/// DBOS's limits of a queue, as `dbos.queues` stores them.
#[derive(Debug, Clone, Copy, Default)]
pub struct QueueLimits {
    /// Work items one worker runs at once.
    pub worker_concurrency: Option<i32>,
    /// Work items all workers run at once.
    pub concurrency: Option<i32>,
    /// Work items of one partition running at once.
    pub partition_concurrency: Option<i32>,
    /// Work items of one partition one worker runs at once.
    pub partition_worker_concurrency: Option<i32>,
}

/// The shape of workflow rows to write.
#[derive(Debug, Clone, Copy)]
pub struct Work<'a> {
    /// The queue (`None`: started directly).
    pub queue: Option<&'a str>,
    /// `ENQUEUED`, `PENDING` (written as a worker claims it), `DELAYED`, ...
    pub status: &'a str,
    /// The owning application, where the schema records owners.
    pub application: Option<&'a str>,
    /// The application version (`None`: version-less).
    pub version: Option<&'a str>,
    /// The partition key.
    pub partition: Option<&'a str>,
    /// For delayed work: due this far from now (negative: already due).
    pub delay_offset_ms: Option<i64>,
    /// Created this long ago.
    pub age_ms: i64,
}

impl<'a> Work<'a> {
    /// Waiting work, as DBOSClient enqueues it: version-less, unowned, created now.
    pub fn enqueued(queue: &'a str) -> Self {
        Work {
            queue: Some(queue),
            status: "ENQUEUED",
            application: None,
            version: None,
            partition: None,
            delay_offset_ms: None,
            age_ms: 0,
        }
    }

    /// Running work, claimed by a worker.
    pub fn running(queue: &'a str) -> Self {
        Work {
            status: "PENDING",
            ..Work::enqueued(queue)
        }
    }

    /// Delayed work, due `offset_ms` from now.
    pub fn delayed(queue: &'a str, offset_ms: i64) -> Self {
        Work {
            status: "DELAYED",
            delay_offset_ms: Some(offset_ms),
            ..Work::enqueued(queue)
        }
    }
}

/// A plain HTTP/1.1 GET against the scaler's HTTP port: (status, body).
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect http");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .expect("send request");
    let mut response = String::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut response))
        .await
        .expect("http answers within 5s")
        .expect("read response");
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .expect("an HTTP status line");
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// The value of the series `selector` (its name and labels as exposed) in a `/metrics`
/// text; panics if the series is missing.
pub fn metric_sample(text: &str, selector: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(selector))
        .unwrap_or_else(|| panic!("no {selector} in:\n{text}"))
        .trim()
        .parse()
        .unwrap_or_else(|error| panic!("{selector}: not a number: {error}"))
}

/// The repo venv's Python, with the pinned `dbos` and `grpcio-reflection` packages
/// (scripts/setup-python.sh makes it; the test command exports `PGQS_TEST_PYTHON`).
pub fn python() -> std::path::PathBuf {
    let path = std::env::var_os("PGQS_TEST_PYTHON")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python")
        });
    assert!(
        path.is_file(),
        "{} not found: run scripts/setup-python.sh (the README's test command does)",
        path.display()
    );
    path
}

/// Runs the real DBOS app (`tests/e2e/dbos_app.py`) with `args` against `url`, checks it
/// succeeded and returns what it printed (one JSON object).
pub fn dbos_app(url: &str, args: &[&str]) -> String {
    let script = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/dbos_app.py");
    let output = std::process::Command::new(python())
        .arg(script)
        .args(args)
        .env("DBOS_SYSTEM_DATABASE_URL", url)
        .output()
        .expect("run the DBOS app");
    assert!(
        output.status.success(),
        "dbos_app.py {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("the DBOS app prints UTF-8")
}

/// `IsActive` for `reference`, as KEDA polls it.
pub async fn is_active(
    client: &mut ExternalScalerClient<Channel>,
    reference: &ScaledObjectRef,
) -> Result<bool, tonic::Status> {
    Ok(client
        .is_active(reference.clone())
        .await?
        .into_inner()
        .result)
}

/// Opens a `StreamIsActive` stream for `reference`, as KEDA does; panics if it is refused.
pub async fn open_stream(
    client: &mut ExternalScalerClient<Channel>,
    reference: &ScaledObjectRef,
) -> tonic::Streaming<IsActiveResponse> {
    client
        .stream_is_active(reference.clone())
        .await
        .expect("the stream opens")
        .into_inner()
}

/// The next activity pushed on a `StreamIsActive` stream, waiting at most 5s; panics if
/// the stream ends or fails instead.
pub async fn next_activity(stream: &mut tonic::Streaming<IsActiveResponse>) -> bool {
    tokio::time::timeout(Duration::from_secs(5), stream.message())
        .await
        .expect("a push within 5s")
        .expect("the stream does not fail")
        .expect("the stream does not end")
        .result
}
