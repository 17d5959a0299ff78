//! The per-queue gauges, rebuilt on every scrape from the latest reading of each source.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

use super::{About, FloatGauge, SourceLabels, registered};
use crate::systems::Reading;

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

const QUEUE_ENQUEUED: About = About {
    name: "queue_enqueued",
    help: "Work items waiting in a queue",
    unit: None,
};
const QUEUE_PENDING: About = About {
    name: "queue_pending",
    help: "Work items a worker has picked up",
    unit: None,
};
const QUEUE_DELAYED_DUE: About = About {
    name: "queue_delayed_due",
    help: "Delayed work items whose time has come",
    unit: None,
};
const QUEUE_DEPTH: About = About {
    name: "queue_depth",
    help: "Enqueued + pending + due delayed work items",
    unit: None,
};
const QUEUE_DESIRED_REPLICAS: About = About {
    name: "queue_desired_replicas",
    help: "ceil(depth / worker_concurrency) with the database's worker_concurrency",
    unit: None,
};
const QUEUE_VERSION_DEPTH: About = About {
    name: "queue_version_depth",
    help: "Enqueued + pending + due delayed work items per application version (\"\" for \
           version-less work), all applications",
    unit: None,
};
const QUEUE_OLDEST_WAITING: About = About {
    name: "queue_oldest_waiting",
    help: "Age of the oldest waiting work item (enqueued since created, due delayed since \
           due), 0 when none waits",
    unit: Some(Unit::Seconds),
};

/// The gauges of every queue of every source read.
pub(super) struct QueueGauges {
    enqueued: Family<QueueLabels, Gauge>,
    pending: Family<QueueLabels, Gauge>,
    delayed_due: Family<QueueLabels, Gauge>,
    depth: Family<QueueLabels, Gauge>,
    desired_replicas: Family<QueueLabels, Gauge>,
    version_depth: Family<VersionLabels, Gauge>,
    oldest_waiting: Family<QueueLabels, FloatGauge>,
}

impl QueueGauges {
    /// Registers the gauges in `registry`.
    pub(super) fn register(r: &mut Registry) -> Self {
        Self {
            enqueued: registered(r, &QUEUE_ENQUEUED, Family::default()),
            pending: registered(r, &QUEUE_PENDING, Family::default()),
            delayed_due: registered(r, &QUEUE_DELAYED_DUE, Family::default()),
            depth: registered(r, &QUEUE_DEPTH, Family::default()),
            desired_replicas: registered(r, &QUEUE_DESIRED_REPLICAS, Family::default()),
            version_depth: registered(r, &QUEUE_VERSION_DEPTH, Family::default()),
            oldest_waiting: registered(r, &QUEUE_OLDEST_WAITING, Family::default()),
        }
    }

    /// Drops every series, before a rebuild.
    pub(super) fn clear(&self) {
        for family in [
            &self.enqueued,
            &self.pending,
            &self.delayed_due,
            &self.depth,
            &self.desired_replicas,
        ] {
            family.clear();
        }
        self.version_depth.clear();
        self.oldest_waiting.clear();
    }

    /// Sets the gauges of every queue `reading` knows, read `since_read` ago.
    pub(super) fn set_all(&self, source: &SourceLabels, reading: &Reading, since_read: Duration) {
        for queue in reading.queue_names() {
            self.set(source, queue, reading, since_read);
        }
    }

    fn set(&self, source: &SourceLabels, queue: &str, reading: &Reading, since_read: Duration) {
        let counts = reading.total(queue);
        let labels = QueueLabels {
            system: source.system,
            database: source.database.clone(),
            schema: source.schema.clone(),
            queue: queue.to_owned(),
        };
        let gauge = |value: u64| i64::try_from(value).unwrap_or(i64::MAX);
        self.enqueued
            .get_or_create(&labels)
            .set(gauge(counts.enqueued));
        self.pending
            .get_or_create(&labels)
            .set(gauge(counts.pending));
        self.delayed_due
            .get_or_create(&labels)
            .set(gauge(counts.delayed_due));
        self.depth.get_or_create(&labels).set(gauge(counts.depth()));
        if let Some(replicas) = reading.desired_replicas(queue) {
            self.desired_replicas
                .get_or_create(&labels)
                .set(gauge(replicas));
        }
        let oldest = reading.oldest_waiting_ms(queue).map_or(0.0, |ms| {
            (Duration::from_millis(ms) + since_read).as_secs_f64()
        });
        self.oldest_waiting.get_or_create(&labels).set(oldest);
        for (version, depth) in reading.depth_by_version(queue) {
            self.version_depth
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
