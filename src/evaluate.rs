//! A trigger judged against a snapshot: per-queue loads, the trigger's depth, its activity,
//! its replica count and its oldest waiting work. Pure glue between [`crate::snapshot`] and
//! [`crate::decide`].

use std::time::Duration;

use crate::decide::{self, QueueLimits, QueueLoad};
use crate::error::Error;
use crate::quote::Quoted;
use crate::systems::{Reading, ScopedLoad, Snapshot};
use crate::trigger::{MetricKind, Trigger, VersionFilter, keys};

/// What a trigger's queues amount to in one snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Evaluation {
    /// Per queue, as read.
    pub loads: Vec<QueueLoad>,
    /// The trigger's depth (`max` or `sum` of the queues'): all the work its workers may
    /// run, whether or not limits let it run now.
    pub depth: u64,
    /// The part of the depth DBOS's limits let run at once (`max` or `sum`).
    pub runnable: u64,
    /// Age of the oldest waiting work item over the trigger's queues (zero when none waits).
    pub oldest_waiting: Duration,
    /// Whether the depth exceeds the activation threshold.
    pub active: bool,
    /// The replicas asked for, or why they cannot be computed.
    pub replicas: Result<u64, decide::WorkerConcurrencyError>,
}

impl Evaluation {
    /// The value `GetMetrics` reports for the trigger's metric kind.
    pub(crate) fn metric_value(&self, metric: MetricKind) -> Result<f64, Error> {
        match metric {
            MetricKind::Replicas => self.replicas.clone().map(|n| n as f64).map_err(Error::from),
            MetricKind::Depth { .. } => Ok(self.runnable as f64),
            // Milliseconds are what KEDA keeps of a float metric.
            MetricKind::Latency { .. } => Ok(self.oldest_waiting.as_millis() as f64 / 1000.0),
        }
    }
}

/// Judges `trigger` against `snapshot`. A queue the snapshot cannot vouch for (no work, and
/// missing from a system that registers every queue) is an error, not an empty queue: it
/// is a misspelt name or the wrong database, and a 0 would scale its workers away.
pub(crate) fn evaluate(trigger: &Trigger, snapshot: &Snapshot) -> Result<Evaluation, Error> {
    let reading = &snapshot.reading;
    check_supported(trigger, reading)?;
    if let Some(unknown) = trigger
        .queues
        .iter()
        .find(|queue| !reading.knows_queue(queue))
    {
        return Err(Error::UnknownQueue {
            queue: Quoted::new(unknown),
            schema: trigger.schema.clone(),
            database: trigger.database_label(),
        });
    }
    let since_read = snapshot.read_at.elapsed();
    let mut oldest_waiting = Duration::ZERO;
    let mut loads = Vec::with_capacity(trigger.queues.len());
    for queue in &trigger.queues {
        let scoped = reading
            .scoped(&trigger.scope, queue)
            .ok_or_else(|| not_read_yet(trigger))?;
        if let Some(age) = scoped.oldest_waiting_ms {
            oldest_waiting = oldest_waiting.max(Duration::from_millis(age) + since_read);
        }
        loads.push(queue_load(trigger, reading, queue, &scoped)?);
    }
    let depth = decide::aggregate(loads.iter().map(|load| load.depth), trigger.aggregate);
    Ok(Evaluation {
        active: decide::is_active(depth, trigger.activation_threshold),
        replicas: decide::aggregate_replicas(&loads, trigger.aggregate, trigger.worker_concurrency),
        runnable: decide::aggregate(loads.iter().map(|load| load.runnable), trigger.aggregate),
        depth,
        oldest_waiting,
        loads,
    })
}

fn queue_load(
    trigger: &Trigger,
    reading: &Reading,
    queue: &str,
    scoped: &ScopedLoad,
) -> Result<QueueLoad, Error> {
    let config = reading.config(queue, trigger.scope.application.as_deref());
    let depth = scoped.counts.depth();
    let limits = match config {
        Some(config) if trigger.apply_limits => {
            let partitions = if config.is_partitioned() {
                if !reading.partitioned_scopes.contains(&trigger.scope) {
                    return Err(not_read_yet(trigger));
                }
                // No partition row: nothing keyed in scope, so nothing runnable.
                Some(scoped.partitions.unwrap_or_default())
            } else {
                None
            };
            QueueLimits {
                concurrency: config.concurrency,
                partitions,
                partition_worker_concurrency: config.partition_worker_concurrency,
            }
        }
        _ => QueueLimits::default(),
    };
    let (runnable, partition_workers) = decide::runnable_work(depth, &limits);
    Ok(QueueLoad {
        queue: queue.to_owned(),
        depth,
        runnable,
        partition_workers,
        database_worker_concurrency: config.and_then(|config| config.worker_concurrency),
    })
}

/// Refuses trigger keys the schema cannot honour, rather than counting without them.
fn check_supported(trigger: &Trigger, reading: &Reading) -> Result<(), Error> {
    let capabilities = reading.capabilities;
    let unsupported = |key, needs| Error::Unsupported {
        key,
        needs,
        schema: trigger.schema.clone(),
        database: trigger.database_label(),
    };
    if trigger.scope.version != VersionFilter::All && !capabilities.tracks_versions {
        return Err(unsupported(
            keys::APPLICATION_VERSION,
            "a DBOS schema that records application versions (workflow_status.application_version)",
        ));
    }
    if !trigger.scope.lookahead.is_zero() && !capabilities.tracks_delays {
        return Err(unsupported(
            keys::DELAYED_LOOKAHEAD,
            "DBOS migration 16 or later (Python dbos 2.16), which records when delayed work is due",
        ));
    }
    Ok(())
}

fn not_read_yet(trigger: &Trigger) -> Error {
    Error::Unavailable(format!(
        "the work of this trigger's application, version and lookahead in database {:?} has \
         not been read yet; try again shortly",
        trigger.database_label()
    ))
}
