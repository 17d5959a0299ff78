//! A trigger judged against a snapshot: per-queue loads, the trigger's depth, its activity
//! and its replica count. Pure glue between [`crate::snapshot`] and [`crate::decide`].

use crate::decide::{self, DecideError, QueueLoad};
use crate::snapshot::Snapshot;
use crate::trigger::{MetricKind, Trigger};

/// What a trigger's queues amount to in one snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evaluation {
    /// Per queue, as read.
    pub loads: Vec<QueueLoad>,
    /// The trigger's depth (`max` or `sum` of the queues').
    pub depth: u64,
    /// Whether the depth exceeds the activation threshold.
    pub active: bool,
    /// The replicas asked for, or why they cannot be computed.
    pub replicas: Result<u64, DecideError>,
}

impl Evaluation {
    /// The value `GetMetrics` reports for the trigger's metric kind.
    pub fn metric_value(&self, metric: MetricKind) -> Result<u64, DecideError> {
        match metric {
            MetricKind::Replicas => self.replicas.clone(),
            MetricKind::Depth => Ok(self.depth),
        }
    }
}

/// Judges `trigger` against `snapshot`.
pub fn evaluate(trigger: &Trigger, snapshot: &Snapshot) -> Evaluation {
    let reading = &snapshot.reading;
    let loads: Vec<QueueLoad> = trigger
        .queues
        .iter()
        .map(|queue| QueueLoad {
            queue: queue.clone(),
            depth: reading
                .counts(queue, trigger.application_name.as_deref())
                .depth(),
            database_worker_concurrency: reading.worker_concurrency.get(queue).copied(),
        })
        .collect();
    let depth = decide::aggregate_depth(&loads, trigger.aggregate);
    Evaluation {
        active: decide::is_active(depth, trigger.activation_threshold),
        replicas: decide::aggregate_replicas(&loads, trigger.aggregate, trigger.worker_concurrency),
        depth,
        loads,
    }
}
