//! Prometheus metrics, served on `/metrics` of the HTTP port: RPCs by method and status
//! code, refreshes per database, snapshot ages, and per-queue gauges so that queues can be
//! graphed and alerted on without KEDA. Database labels are configured names (or
//! `connectionFromEnv (host:port/db)`), never URLs.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use crate::caps::CapUse;
use crate::decide::desired_replicas;
use crate::systems::{Reading, Snapshot};

/// Labels of RPC metrics.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RpcLabels {
    method: &'static str,
    code: String,
}

/// One source as the metrics see it.
#[derive(Debug, Clone)]
pub struct SourceOverview {
    /// Its metric labels.
    pub labels: SourceLabels,
    /// Its latest successful read.
    pub last_good: Option<Arc<Snapshot>>,
    /// Its pool's size and idle connections.
    pub pool: Option<deadpool_postgres::Status>,
    /// Streams holding it.
    pub open_streams: usize,
}

/// Labels of per-source metrics.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabels {
    /// Queue system.
    pub system: &'static str,
    /// Database name (never a URL).
    pub database: String,
    /// Schema of the system tables.
    pub schema: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueueLabels {
    system: &'static str,
    database: String,
    schema: String,
    queue: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabels {
    system: &'static str,
    database: String,
    schema: String,
    queue: String,
    /// Empty for version-less work.
    application_version: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClosedLabels {
    reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CapLabels {
    cap: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolLabels {
    database: String,
    schema: String,
    state: &'static str,
}

type FloatGauge = Gauge<f64, AtomicU64>;

fn latency_histogram() -> Histogram {
    // 0.5 ms to about 8 s.
    Histogram::new(exponential_buckets(0.0005, 2.0, 15))
}

/// Every metric the scaler exports.
pub struct Metrics {
    registry: Registry,
    rpc_requests: Family<RpcLabels, Counter>,
    rpc_duration: Family<RpcLabels, Histogram, fn() -> Histogram>,
    connections_closed: Family<ClosedLabels, Counter>,
    refresh_duration: Family<SourceLabels, Histogram, fn() -> Histogram>,
    refresh_errors: Family<SourceLabels, Counter>,
    snapshot_age: Family<SourceLabels, FloatGauge>,
    queue_enqueued: Family<QueueLabels, Gauge>,
    queue_pending: Family<QueueLabels, Gauge>,
    queue_delayed_due: Family<QueueLabels, Gauge>,
    queue_depth: Family<QueueLabels, Gauge>,
    queue_desired_replicas: Family<QueueLabels, Gauge>,
    queue_version_depth: Family<VersionLabels, Gauge>,
    queue_oldest_waiting: Family<QueueLabels, FloatGauge>,
    open_streams: Gauge,
    sources: Gauge,
    pool_connections: Family<PoolLabels, Gauge>,
    cap_limit: Family<CapLabels, Gauge>,
    cap_in_use: Family<CapLabels, Gauge>,
    /// Scrapes rebuild the gauges from snapshots; one at a time keeps them consistent.
    scrape: Mutex<()>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("pg_queue_scaler");
        let metrics = Self {
            rpc_requests: Family::default(),
            rpc_duration: Family::new_with_constructor(latency_histogram),
            connections_closed: Family::default(),
            refresh_duration: Family::new_with_constructor(latency_histogram),
            refresh_errors: Family::default(),
            snapshot_age: Family::default(),
            queue_enqueued: Family::default(),
            queue_pending: Family::default(),
            queue_delayed_due: Family::default(),
            queue_depth: Family::default(),
            queue_desired_replicas: Family::default(),
            queue_version_depth: Family::default(),
            queue_oldest_waiting: Family::default(),
            open_streams: Gauge::default(),
            sources: Gauge::default(),
            pool_connections: Family::default(),
            cap_limit: Family::default(),
            cap_in_use: Family::default(),
            scrape: Mutex::new(()),
            registry: Registry::default(),
        };
        registry.register(
            "grpc_requests",
            "gRPC calls by method and status code",
            metrics.rpc_requests.clone(),
        );
        registry.register_with_unit(
            "grpc_request_duration",
            "gRPC call latency by method and status code",
            Unit::Seconds,
            metrics.rpc_duration.clone(),
        );
        registry.register(
            "grpc_connections_closed",
            "gRPC connections the scaler closed: no call within handshake_timeout, or idle for idle_timeout",
            metrics.connections_closed.clone(),
        );
        registry.register_with_unit(
            "refresh_duration",
            "Time one read of a database takes",
            Unit::Seconds,
            metrics.refresh_duration.clone(),
        );
        registry.register(
            "refresh_errors",
            "Failed reads of a database",
            metrics.refresh_errors.clone(),
        );
        registry.register_with_unit(
            "snapshot_age",
            "Age of the latest successful read of a database",
            Unit::Seconds,
            metrics.snapshot_age.clone(),
        );
        for (name, help, family) in [
            (
                "queue_enqueued",
                "Work items waiting in a queue",
                &metrics.queue_enqueued,
            ),
            (
                "queue_pending",
                "Work items a worker has picked up",
                &metrics.queue_pending,
            ),
            (
                "queue_delayed_due",
                "Delayed work items whose time has come",
                &metrics.queue_delayed_due,
            ),
            (
                "queue_depth",
                "Enqueued + pending + due delayed work items",
                &metrics.queue_depth,
            ),
            (
                "queue_desired_replicas",
                "ceil(depth / worker_concurrency) with the database's worker_concurrency",
                &metrics.queue_desired_replicas,
            ),
        ] {
            registry.register(name, help, family.clone());
        }
        registry.register(
            "queue_version_depth",
            "Enqueued + pending + due delayed work items per application version (\"\" for version-less work), all applications",
            metrics.queue_version_depth.clone(),
        );
        registry.register_with_unit(
            "queue_oldest_waiting",
            "Age of the oldest waiting work item (enqueued since created, due delayed since due), 0 when none waits",
            Unit::Seconds,
            metrics.queue_oldest_waiting.clone(),
        );
        registry.register(
            "open_streams",
            "Open StreamIsActive streams",
            metrics.open_streams.clone(),
        );
        registry.register(
            "sources",
            "Databases (and schemas) currently read",
            metrics.sources.clone(),
        );
        registry.register(
            "pool_connections",
            "Connections per database pool by state",
            metrics.pool_connections.clone(),
        );
        registry.register(
            "cap_limit",
            "Configured caps: sources, database_connections, streams, streams_per_connection, concurrent_calls",
            metrics.cap_limit.clone(),
        );
        registry.register(
            "cap_in_use",
            "How much of each cap is in use (streams_per_connection: the busiest connection)",
            metrics.cap_in_use.clone(),
        );
        Self {
            registry,
            ..metrics
        }
    }

    /// Counts one finished RPC.
    pub fn record_rpc(&self, method: &'static str, code: tonic::Code, elapsed: Duration) {
        let code = match code {
            tonic::Code::Ok => "OK".to_owned(),
            other => format!("{other:?}"),
        };
        let labels = RpcLabels { method, code };
        self.rpc_requests.get_or_create(&labels).inc();
        self.rpc_duration
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
    }

    /// Counts one gRPC connection closed for `reason`.
    pub fn record_connection_closed(&self, reason: &'static str) {
        self.connections_closed
            .get_or_create(&ClosedLabels { reason })
            .inc();
    }

    /// Counts one read of a source.
    pub fn record_refresh(&self, source: &SourceLabels, elapsed: Duration, succeeded: bool) {
        self.refresh_duration
            .get_or_create(source)
            .observe(elapsed.as_secs_f64());
        if !succeeded {
            self.refresh_errors.get_or_create(source).inc();
        }
    }

    /// Drops the per-source series of a source that is no longer read.
    pub fn forget_source(&self, source: &SourceLabels) {
        self.refresh_duration.remove(source);
        self.refresh_errors.remove(source);
    }

    /// The text exposition, with gauges rebuilt from `sources` and `caps` first.
    pub fn render(&self, sources: &[SourceOverview], caps: &[CapUse]) -> String {
        let _one_scrape_at_a_time = crate::sync::lock(&self.scrape);
        self.rebuild_gauges(sources);
        for (cap, limit, in_use) in caps {
            let labels = CapLabels { cap };
            let gauge = |value: usize| i64::try_from(value).unwrap_or(i64::MAX);
            self.cap_limit.get_or_create(&labels).set(gauge(*limit));
            self.cap_in_use.get_or_create(&labels).set(gauge(*in_use));
        }
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        text
    }

    fn rebuild_gauges(&self, sources: &[SourceOverview]) {
        for family in [
            &self.queue_enqueued,
            &self.queue_pending,
            &self.queue_delayed_due,
            &self.queue_depth,
            &self.queue_desired_replicas,
        ] {
            family.clear();
        }
        self.queue_version_depth.clear();
        self.queue_oldest_waiting.clear();
        self.snapshot_age.clear();
        self.pool_connections.clear();
        self.sources.set(sources.len() as i64);
        self.open_streams
            .set(sources.iter().map(|s| s.open_streams as i64).sum());
        for source in sources {
            let labels = &source.labels;
            if let Some(pool) = &source.pool {
                let idle = pool.available as i64;
                let in_use = pool.size as i64 - idle;
                for (state, value) in [("in_use", in_use), ("idle", idle)] {
                    self.pool_connections
                        .get_or_create(&PoolLabels {
                            database: labels.database.clone(),
                            schema: labels.schema.clone(),
                            state,
                        })
                        .set(value);
                }
            }
            let Some(snapshot) = &source.last_good else {
                continue;
            };
            self.snapshot_age
                .get_or_create(labels)
                .set(snapshot.read_at.elapsed().as_secs_f64());
            let since_read = snapshot.read_at.elapsed();
            let reading = &snapshot.reading;
            let queues: HashSet<&String> =
                reading.groups.keys().chain(reading.queues.keys()).collect();
            for queue in queues {
                self.set_queue_gauges(labels, queue, reading, since_read);
            }
        }
    }

    fn set_queue_gauges(
        &self,
        source: &SourceLabels,
        queue: &str,
        reading: &Reading,
        since_read: Duration,
    ) {
        let counts = reading.total(queue);
        let queue_labels = QueueLabels {
            system: source.system,
            database: source.database.clone(),
            schema: source.schema.clone(),
            queue: queue.to_owned(),
        };
        let gauge = |value: u64| i64::try_from(value).unwrap_or(i64::MAX);
        self.queue_enqueued
            .get_or_create(&queue_labels)
            .set(gauge(counts.enqueued));
        self.queue_pending
            .get_or_create(&queue_labels)
            .set(gauge(counts.pending));
        self.queue_delayed_due
            .get_or_create(&queue_labels)
            .set(gauge(counts.delayed_due));
        self.queue_depth
            .get_or_create(&queue_labels)
            .set(gauge(counts.depth()));
        let concurrency = reading
            .queues
            .get(queue)
            .and_then(|registered| registered.config.worker_concurrency);
        if let Some(concurrency) = concurrency {
            self.queue_desired_replicas
                .get_or_create(&queue_labels)
                .set(gauge(desired_replicas(counts.depth(), concurrency)));
        }
        let oldest = reading.oldest_waiting_ms(queue).map_or(0.0, |ms| {
            (Duration::from_millis(ms) + since_read).as_secs_f64()
        });
        self.queue_oldest_waiting
            .get_or_create(&queue_labels)
            .set(oldest);
        for (version, depth) in reading.depth_by_version(queue) {
            self.queue_version_depth
                .get_or_create(&VersionLabels {
                    system: source.system,
                    database: source.database.clone(),
                    schema: source.schema.clone(),
                    queue: queue.to_owned(),
                    application_version: version.unwrap_or_default().to_owned(),
                })
                .set(gauge(depth));
        }
    }
}
