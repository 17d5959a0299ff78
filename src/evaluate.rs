//! A trigger judged against a snapshot: per-queue loads, the trigger's depth, its activity
//! and its replica count. Pure glue between [`crate::snapshot`] and [`crate::decide`].

use crate::decide::{self, QueueLoad};
use crate::error::Error;
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
    pub replicas: Result<u64, decide::DecideError>,
}

impl Evaluation {
    /// The value `GetMetrics` reports for the trigger's metric kind.
    pub fn metric_value(&self, metric: MetricKind) -> Result<u64, Error> {
        match metric {
            MetricKind::Replicas => self.replicas.clone().map_err(Error::from),
            MetricKind::Depth { .. } => Ok(self.depth),
        }
    }
}

/// Judges `trigger` against `snapshot`. A queue the snapshot cannot vouch for (no work, and
/// missing from a system that registers every queue) is an error, not an empty queue: it
/// is a misspelt name or the wrong database, and a 0 would scale its workers away.
pub fn evaluate(trigger: &Trigger, snapshot: &Snapshot) -> Result<Evaluation, Error> {
    let reading = &snapshot.reading;
    if let Some(unknown) = trigger
        .queues
        .iter()
        .find(|queue| !reading.knows_queue(queue))
    {
        return Err(Error::UnknownQueue {
            queue: unknown.clone(),
            schema: trigger.schema.clone(),
            database: trigger.database_label(),
        });
    }
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
    Ok(Evaluation {
        active: decide::is_active(depth, trigger.activation_threshold),
        replicas: decide::aggregate_replicas(&loads, trigger.aggregate, trigger.worker_concurrency),
        depth,
        loads,
    })
}
