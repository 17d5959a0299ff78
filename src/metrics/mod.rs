//! Prometheus metrics, served on `/metrics` of the HTTP port: RPCs by method and status
//! code, refreshes per database, snapshot ages, and per-queue gauges so that queues can be
//! graphed and alerted on without KEDA. Database labels are configured names (or
//! `connectionFromEnv (host:port/db)`), never URLs.

mod queues;

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Metric, Registry, Unit};

use crate::caps::CapUse;
use crate::systems::Snapshot;
use queues::QueueGauges;

/// Labels of RPC metrics.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RpcLabels {
    method: &'static str,
    code: &'static str,
}

/// One source as the metrics see it.
#[derive(Debug, Clone)]
pub(crate) struct SourceOverview {
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
pub(crate) struct SourceLabels {
    /// Queue system.
    pub system: &'static str,
    /// Database name (never a URL).
    pub database: String,
    /// Schema of the system tables.
    pub schema: String,
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
pub(crate) struct Metrics {
    registry: Registry,
    rpc_requests: Family<RpcLabels, Counter>,
    rpc_duration: Family<RpcLabels, Histogram, fn() -> Histogram>,
    connections_closed: Family<ClosedLabels, Counter>,
    refresh_duration: Family<SourceLabels, Histogram, fn() -> Histogram>,
    refresh_errors: Family<SourceLabels, Counter>,
    snapshot_age: Family<SourceLabels, FloatGauge>,
    queues: QueueGauges,
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

/// A metric's name (after the `pg_queue_scaler_` prefix), help text and unit.
pub(super) struct About {
    pub(super) name: &'static str,
    pub(super) help: &'static str,
    pub(super) unit: Option<Unit>,
}

const GRPC_REQUESTS: About = About {
    name: "grpc_requests",
    help: "gRPC calls by method and status code",
    unit: None,
};
const GRPC_REQUEST_DURATION: About = About {
    name: "grpc_request_duration",
    help: "gRPC call latency by method and status code",
    unit: Some(Unit::Seconds),
};
const GRPC_CONNECTIONS_CLOSED: About = About {
    name: "grpc_connections_closed",
    help: "gRPC connections the scaler closed: no call within handshake_timeout, or idle for \
           idle_timeout",
    unit: None,
};
const REFRESH_DURATION: About = About {
    name: "refresh_duration",
    help: "Time one read of a database takes",
    unit: Some(Unit::Seconds),
};
const REFRESH_ERRORS: About = About {
    name: "refresh_errors",
    help: "Failed reads of a database",
    unit: None,
};
const SNAPSHOT_AGE: About = About {
    name: "snapshot_age",
    help: "Age of the latest successful read of a database",
    unit: Some(Unit::Seconds),
};
const OPEN_STREAMS: About = About {
    name: "open_streams",
    help: "Open StreamIsActive streams",
    unit: None,
};
const SOURCES: About = About {
    name: "sources",
    help: "Databases (and schemas) currently read",
    unit: None,
};
const POOL_CONNECTIONS: About = About {
    name: "pool_connections",
    help: "Connections per database pool by state",
    unit: None,
};
const CAP_LIMIT: About = About {
    name: "cap_limit",
    help: "Configured caps: sources, database_connections, streams, streams_per_connection, \
           concurrent_calls",
    unit: None,
};
const CAP_IN_USE: About = About {
    name: "cap_in_use",
    help: "How much of each cap is in use (streams_per_connection: the busiest connection)",
    unit: None,
};

/// Registers `metric` as `about` says and hands it back.
pub(super) fn registered<M: Metric + Clone>(
    registry: &mut Registry,
    about: &About,
    metric: M,
) -> M {
    match &about.unit {
        Some(unit) => {
            registry.register_with_unit(about.name, about.help, unit.clone(), metric.clone())
        }
        None => registry.register(about.name, about.help, metric.clone()),
    }
    metric
}

/// A status code as the metrics label it: `OK`, else the code's name as tonic spells it
/// (`Unavailable`, `InvalidArgument`, ...). Static, so that counting a call allocates nothing.
fn code_label(code: tonic::Code) -> &'static str {
    use tonic::Code;
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "Cancelled",
        Code::Unknown => "Unknown",
        Code::InvalidArgument => "InvalidArgument",
        Code::DeadlineExceeded => "DeadlineExceeded",
        Code::NotFound => "NotFound",
        Code::AlreadyExists => "AlreadyExists",
        Code::PermissionDenied => "PermissionDenied",
        Code::ResourceExhausted => "ResourceExhausted",
        Code::FailedPrecondition => "FailedPrecondition",
        Code::Aborted => "Aborted",
        Code::OutOfRange => "OutOfRange",
        Code::Unimplemented => "Unimplemented",
        Code::Internal => "Internal",
        Code::Unavailable => "Unavailable",
        Code::DataLoss => "DataLoss",
        Code::Unauthenticated => "Unauthenticated",
    }
}

/// A family of latency histograms.
fn latencies<L>() -> Family<L, Histogram, fn() -> Histogram>
where
    L: Clone + std::hash::Hash + Eq,
{
    Family::new_with_constructor(latency_histogram)
}

impl Metrics {
    /// Registers every metric, in the order `/metrics` lists them.
    pub(crate) fn new() -> Self {
        let mut registry = Registry::with_prefix("pg_queue_scaler");
        let r = &mut registry;
        Self {
            rpc_requests: registered(r, &GRPC_REQUESTS, Family::default()),
            rpc_duration: registered(r, &GRPC_REQUEST_DURATION, latencies()),
            connections_closed: registered(r, &GRPC_CONNECTIONS_CLOSED, Family::default()),
            refresh_duration: registered(r, &REFRESH_DURATION, latencies()),
            refresh_errors: registered(r, &REFRESH_ERRORS, Family::default()),
            snapshot_age: registered(r, &SNAPSHOT_AGE, Family::default()),
            queues: QueueGauges::register(r),
            open_streams: registered(r, &OPEN_STREAMS, Gauge::default()),
            sources: registered(r, &SOURCES, Gauge::default()),
            pool_connections: registered(r, &POOL_CONNECTIONS, Family::default()),
            cap_limit: registered(r, &CAP_LIMIT, Family::default()),
            cap_in_use: registered(r, &CAP_IN_USE, Family::default()),
            scrape: Mutex::new(()),
            registry,
        }
    }

    /// Counts one finished RPC.
    pub(crate) fn record_rpc(&self, method: &'static str, code: tonic::Code, elapsed: Duration) {
        let labels = RpcLabels {
            method,
            code: code_label(code),
        };
        self.rpc_requests.get_or_create(&labels).inc();
        self.rpc_duration
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
    }

    /// Counts one gRPC connection closed for `reason`.
    pub(crate) fn record_connection_closed(&self, reason: &'static str) {
        self.connections_closed
            .get_or_create(&ClosedLabels { reason })
            .inc();
    }

    /// Counts one read of a source.
    pub(crate) fn record_refresh(&self, source: &SourceLabels, elapsed: Duration, succeeded: bool) {
        self.refresh_duration
            .get_or_create(source)
            .observe(elapsed.as_secs_f64());
        if !succeeded {
            self.refresh_errors.get_or_create(source).inc();
        }
    }

    /// Drops the per-source series of a source that is no longer read.
    pub(crate) fn forget_source(&self, source: &SourceLabels) {
        self.refresh_duration.remove(source);
        self.refresh_errors.remove(source);
    }

    /// The text exposition, with gauges rebuilt from `sources` and `caps` first.
    pub(crate) fn render(&self, sources: &[SourceOverview], caps: &[CapUse]) -> String {
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
        self.queues.clear();
        self.snapshot_age.clear();
        self.pool_connections.clear();
        self.sources.set(sources.len() as i64);
        self.open_streams
            .set(sources.iter().map(|s| s.open_streams as i64).sum());
        for source in sources {
            let labels = &source.labels;
            if let Some(pool) = &source.pool {
                self.set_pool_gauges(labels, pool);
            }
            let Some(snapshot) = &source.last_good else {
                continue;
            };
            let since_read = snapshot.read_at.elapsed();
            self.snapshot_age
                .get_or_create(labels)
                .set(since_read.as_secs_f64());
            self.queues.set_all(labels, &snapshot.reading, since_read);
        }
    }

    fn set_pool_gauges(&self, labels: &SourceLabels, pool: &deadpool_postgres::Status) {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_labels_spell_codes_as_before() {
        // The label was `format!("{code:?}")` (and "OK"); dashboards and alerts match it.
        for number in 1..=16 {
            let code = tonic::Code::from(number);
            assert_eq!(code_label(code), format!("{code:?}"));
        }
        assert_eq!(code_label(tonic::Code::Ok), "OK");
    }
}
