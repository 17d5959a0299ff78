//! The explanation in words: one line per step, as `steps` carries it and
//! `pg-queue-scaler inspect` prints it.

use super::v1;
use crate::evaluate::Evaluation;
use crate::snapshot::SourceState;
use crate::trigger::{MetricKind, Trigger, VersionFilter};

/// A refused call: `Code: message`.
pub(super) fn refusal_words(refusal: &v1::Refusal) -> String {
    format!("{}: {}", refusal.code, refusal.message)
}

/// Which source was read, at which migration, how long ago, and whether the latest read
/// failed.
pub(super) fn read_step(source: &v1::Source, state: &SourceState) -> String {
    let migration = source
        .migration
        .map(|level| format!(" at migration {level}"))
        .unwrap_or_default();
    let read = match &state.last_good {
        Some(snapshot) => format!(
            "last read {:.1}s ago",
            snapshot.read_at.elapsed().as_secs_f64()
        ),
        None => "not read yet".to_owned(),
    };
    let failure = state
        .failure
        .as_ref()
        .map(|failure| format!("; the latest read failed: {failure}"))
        .unwrap_or_default();
    format!(
        "source: database {:?}, schema {:?} ({}{migration}), {read}{failure}",
        source.database, source.schema, source.system
    )
}

/// Which rows count: application, version, lookahead, and whether limits apply. `latest` is
/// the scope's latest version as the snapshot resolved it (the outer `None`: not read yet;
/// the inner: no version registered).
pub(super) fn scope_step(trigger: &Trigger, latest: Option<&Option<String>>) -> String {
    let scope = &trigger.scope;
    let application = match &scope.application {
        Some(name) => format!("application {name:?}'s work and unclaimed work"),
        None => "every application's work".to_owned(),
    };
    let version = match &scope.version {
        VersionFilter::All => "of every version".to_owned(),
        VersionFilter::Latest => {
            let now = match latest {
                Some(Some(latest)) => format!("now {latest:?}"),
                Some(None) => "none is registered, so every version counts".to_owned(),
                None => "as the database says on the next read".to_owned(),
            };
            format!("of the latest version ({now}), plus version-less work")
        }
        VersionFilter::Named(name) => {
            let now = match latest {
                Some(Some(latest)) if latest == name => " (it is)".to_owned(),
                Some(Some(latest)) => format!(" (it is not: the latest is {latest:?})"),
                Some(None) => " (no version is registered, so it is)".to_owned(),
                None => String::new(),
            };
            format!("of version {name:?}, plus version-less work while {name:?} is the latest{now}")
        }
    };
    let lookahead = if scope.lookahead.is_zero() {
        String::new()
    } else {
        format!(
            "; delayed work due within {}s counts",
            scope.lookahead.as_secs_f64()
        )
    };
    let limits = if trigger.apply_limits {
        "DBOS's concurrency limits apply"
    } else {
        "DBOS's concurrency limits are ignored (concurrencyLimits: ignore)"
    };
    format!("counting {application} {version}{lookahead}; {limits}")
}

/// One queue: its counts, what its limits let run, and the replicas it asks for.
pub(super) fn queue_words(step: &v1::QueueStep) -> String {
    let counts = step.counts.unwrap_or_default();
    let mut words = format!(
        "queue {:?}: {} enqueued + {} pending + {} due delayed = depth {}",
        step.name, counts.enqueued, counts.pending, counts.delayed_due, counts.depth
    );
    if step.limits_applied && step.runnable < counts.depth {
        words.push_str(&format!(
            "; DBOS's limits ({}) let {} run at once",
            limits_words(step.config.as_ref()),
            step.runnable
        ));
    }
    if step.partition_workers > 0 {
        words.push_str(&format!(
            "; its busiest partition needs {} workers",
            step.partition_workers
        ));
    }
    match (step.worker_concurrency, step.replicas) {
        (Some(concurrency), Some(replicas)) => words.push_str(&format!(
            "; worker_concurrency {concurrency} (from the {}) makes {replicas} replicas",
            step.worker_concurrency_from
        )),
        _ => words.push_str("; no worker_concurrency in the metadata or the database"),
    }
    words
}

/// The limits a configuration row sets, e.g. `concurrency 6, partition_concurrency 2`.
fn limits_words(config: Option<&v1::QueueConfig>) -> String {
    let Some(config) = config else {
        return String::new();
    };
    [
        ("concurrency", config.concurrency),
        ("partition_concurrency", config.partition_concurrency),
        (
            "partition_worker_concurrency",
            config.partition_worker_concurrency,
        ),
    ]
    .iter()
    .filter_map(|(name, limit)| limit.map(|limit| format!("{name} {limit}")))
    .collect::<Vec<_>>()
    .join(", ")
}

/// The queues combined.
pub(super) fn totals_words(trigger: &Trigger, evaluation: &Evaluation) -> String {
    let replicas = match &evaluation.replicas {
        Ok(replicas) => format!("replicas {replicas}"),
        Err(error) => format!("replicas unknown ({error})"),
    };
    format!(
        "{} over {} queue(s): depth {}, runnable {}, {replicas}, oldest waiting {:.1}s",
        trigger.aggregate.as_str(),
        evaluation.loads.len(),
        evaluation.depth,
        evaluation.runnable,
        evaluation.oldest_waiting.as_secs_f64()
    )
}

/// Why `IsActive` answers what it answers.
pub(super) fn activity_words(trigger: &Trigger, evaluation: &Evaluation) -> String {
    if evaluation.active {
        format!(
            "IsActive answers true: depth {} is over activationThreshold {}",
            evaluation.depth, trigger.activation_threshold
        )
    } else {
        format!(
            "IsActive answers false: depth {} is not over activationThreshold {}",
            evaluation.depth, trigger.activation_threshold
        )
    }
}

/// What `GetMetrics` answers, and what the HPA compares it with.
pub(super) fn metric_words(trigger: &Trigger, value: f64) -> String {
    let target = trigger.metric.target();
    match trigger.metric {
        MetricKind::Latency { .. } => format!(
            "GetMetrics answers {value} (latency metric: seconds the oldest runnable item has \
             waited; the HPA's target is {target}s)"
        ),
        _ => format!(
            "GetMetrics answers {value} ({} metric; the HPA's target is {target} per replica)",
            trigger.metric.as_str()
        ),
    }
}
