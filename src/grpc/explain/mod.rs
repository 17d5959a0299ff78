//! The scaler explaining itself: a trigger's answers with every input and step behind them,
//! and the queues of a source, as `pgqueuescaler.v1` messages. Built from the same
//! evaluation the KEDA calls use, so an explanation cannot disagree with KEDA's answer.
//! Pure: no I/O. Served by [`super::inspection`] and printed by `pg-queue-scaler inspect`.

use std::time::Duration;

use tonic::Status;

use super::pgqueuescaler::v1;

#[cfg(test)]
mod tests;
mod words;

use crate::decide::desired_replicas;
use crate::error::Error;
use crate::evaluate::{Evaluation, evaluate};
use crate::snapshot::{Observed, SourceState, SourceView};
use crate::systems::{QueueCounts, Reading, RegisteredQueue, Snapshot, WorkGroup};
use crate::trigger::{Trigger, VersionFilter};
use words::{
    activity_words, metric_words, queue_words, read_step, refusal_words, scope_step, totals_words,
};

/// Everything behind `trigger`'s answers, as `observed` (its source's state and the verdict
/// a request gets) allows; `metric_name` is the name `GetMetricSpec` gives it.
pub(crate) fn explain(trigger: &Trigger, metric_name: &str, observed: Observed) -> v1::Explanation {
    let last_good = observed.state.last_good.as_deref();
    let source = source(
        trigger.database_label(),
        trigger.system.as_str(),
        &trigger.schema,
        last_good,
    );
    let mut explanation = v1::Explanation {
        snapshot: Some(snapshot(&observed.state)),
        trigger: Some(trigger_summary(trigger)),
        answers: Some(v1::Answers {
            metric_name: metric_name.to_owned(),
            target: trigger.metric.target(),
            ..v1::Answers::default()
        }),
        ..v1::Explanation::default()
    };
    let latest =
        last_good.and_then(|snapshot| snapshot.reading.latest_versions.get(&trigger.scope));
    if trigger.scope.version != VersionFilter::All {
        explanation.latest_version = latest.cloned().flatten();
    }
    let mut steps = vec![
        read_step(&source, &observed.state),
        scope_step(trigger, latest),
    ];
    explanation.source = Some(source);
    let evaluated = observed.verdict.and_then(|snapshot| {
        let evaluation = evaluate(trigger, &snapshot)?;
        Ok((snapshot, evaluation))
    });
    match evaluated {
        Ok((snapshot, evaluation)) => {
            add_evaluation(
                trigger,
                &snapshot,
                &evaluation,
                &mut explanation,
                &mut steps,
            );
        }
        Err(error) => {
            let refusal = refusal(error);
            steps.push(format!(
                "IsActive and GetMetrics fail: {}",
                refusal_words(&refusal)
            ));
            let answers = explanation.answers.get_or_insert_default();
            answers.active_error = Some(refusal.clone());
            answers.metric_error = Some(refusal);
        }
    }
    explanation.steps = steps;
    explanation
}

/// The queues, totals and answers of `trigger` evaluated against `snapshot`, with their
/// steps.
fn add_evaluation(
    trigger: &Trigger,
    snapshot: &Snapshot,
    evaluation: &Evaluation,
    explanation: &mut v1::Explanation,
    steps: &mut Vec<String>,
) {
    let since_read = snapshot.read_at.elapsed();
    for load in &evaluation.loads {
        let step = queue_step(trigger, &snapshot.reading, load, since_read);
        steps.push(queue_words(&step));
        explanation.queues.push(step);
    }
    explanation.totals = Some(totals(evaluation));
    steps.push(totals_words(trigger, evaluation));
    steps.push(activity_words(trigger, evaluation));
    let answers = explanation.answers.get_or_insert_default();
    answers.active = Some(evaluation.active);
    match evaluation.metric_value(trigger.metric) {
        Ok(value) => {
            answers.metric_value = Some(value);
            steps.push(metric_words(trigger, value));
        }
        Err(error) => {
            let refusal = refusal(error);
            steps.push(format!("GetMetrics fails: {}", refusal_words(&refusal)));
            answers.metric_error = Some(refusal);
        }
    }
}

/// What KEDA gets for an explained trigger, in short.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Both IsActive and GetMetrics answer.
    Answered,
    /// The database could not be read (or not yet): a retry may help.
    Unavailable,
    /// The trigger cannot be answered from what was read: its metadata must change.
    Refused,
}

/// The outcome `explanation` describes.
pub(crate) fn outcome(explanation: &v1::Explanation) -> Outcome {
    let unavailable = code_name(tonic::Code::Unavailable);
    let refusals: Vec<&v1::Refusal> = explanation
        .answers
        .iter()
        .flat_map(|answers| [&answers.active_error, &answers.metric_error])
        .flatten()
        .collect();
    if refusals.iter().any(|refusal| refusal.code == unavailable) {
        Outcome::Unavailable
    } else if refusals.is_empty() {
        Outcome::Answered
    } else {
        Outcome::Refused
    }
}

/// A status code's name as explanations give it, e.g. `Unavailable`.
fn code_name(code: tonic::Code) -> String {
    format!("{code:?}")
}

/// A source in use and its queues (or only the queue `only`, when not empty).
pub(crate) fn source_queues(view: &SourceView, only: &str) -> v1::SourceQueues {
    let last_good = view.state.last_good.as_deref();
    v1::SourceQueues {
        source: Some(source(
            view.label.clone(),
            view.key.system.as_str(),
            &view.key.schema,
            last_good,
        )),
        snapshot: Some(snapshot(&view.state)),
        queues: last_good
            .map(|snapshot| queues(&snapshot.reading, snapshot.read_at.elapsed(), only))
            .unwrap_or_default(),
    }
}

/// A source and what discovery found in it (nothing before its first good read).
fn source(
    database: String,
    system: &str,
    schema: &str,
    last_good: Option<&Snapshot>,
) -> v1::Source {
    let mut source = v1::Source {
        database,
        schema: schema.to_owned(),
        system: system.to_owned(),
        ..v1::Source::default()
    };
    if let Some(snapshot) = last_good {
        let facts = &snapshot.reading.schema;
        source.migration = facts.migration;
        for (name, present) in &facts.features {
            let list = if *present {
                &mut source.records
            } else {
                &mut source.lacks
            };
            list.push((*name).to_owned());
        }
    }
    source
}

/// The state of a source's latest read.
fn snapshot(state: &SourceState) -> v1::Snapshot {
    v1::Snapshot {
        read: state.last_good.is_some(),
        age_seconds: state
            .last_good
            .as_ref()
            .map_or(0.0, |snapshot| snapshot.read_at.elapsed().as_secs_f64()),
        attempts: state.attempts,
        last_error: state
            .failure
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
    }
}

/// Every queue `reading` knows (or only `only`), with all of its work.
fn queues(reading: &Reading, since_read: Duration, only: &str) -> Vec<v1::Queue> {
    reading
        .queue_names()
        .into_iter()
        .filter(|name| only.is_empty() || *name == only)
        .map(|name| v1::Queue {
            name: name.to_owned(),
            config: reading.queues.get(name).map(config),
            counts: Some(counts(&reading.total(name))),
            groups: groups(reading, name, since_read),
            oldest_waiting_seconds: age(reading.oldest_waiting_ms(name), since_read),
            desired_replicas: reading.desired_replicas(name),
        })
        .collect()
}

/// `queue`'s groups by application, then version (unclaimed and version-less first).
fn groups(reading: &Reading, queue: &str, since_read: Duration) -> Vec<v1::WorkGroup> {
    let mut groups: Vec<v1::WorkGroup> = reading
        .groups
        .get(queue)
        .into_iter()
        .flatten()
        .map(|group| work_group(group, since_read))
        .collect();
    groups.sort_by(|a, b| (&a.application, &a.version).cmp(&(&b.application, &b.version)));
    groups
}

fn trigger_summary(trigger: &Trigger) -> v1::Trigger {
    v1::Trigger {
        queues: trigger.queues.clone(),
        aggregate: trigger.aggregate.as_str().to_owned(),
        metric: trigger.metric.as_str().to_owned(),
        activation_threshold: trigger.activation_threshold,
        application: trigger.scope.application.clone().unwrap_or_default(),
        application_version: match &trigger.scope.version {
            VersionFilter::All => String::new(),
            VersionFilter::Latest => "latest".to_owned(),
            VersionFilter::Named(name) => name.clone(),
        },
        delayed_lookahead_seconds: trigger.scope.lookahead.as_secs_f64(),
        concurrency_limits: trigger.apply_limits,
        worker_concurrency: trigger.worker_concurrency,
    }
}

fn queue_step(
    trigger: &Trigger,
    reading: &Reading,
    load: &crate::decide::QueueLoad,
    since_read: Duration,
) -> v1::QueueStep {
    let scoped = reading
        .scoped(&trigger.scope, &load.queue)
        .unwrap_or_default();
    let binding = reading
        .config(&load.queue, trigger.scope.application.as_deref())
        .and_then(|_| reading.queues.get(&load.queue));
    let (worker_concurrency, from) =
        match (trigger.worker_concurrency, load.database_worker_concurrency) {
            (Some(value), _) => (Some(value), "metadata"),
            (None, Some(value)) => (Some(value), "database"),
            (None, None) => (None, ""),
        };
    v1::QueueStep {
        name: load.queue.clone(),
        counts: Some(counts(&scoped.counts)),
        config: binding.map(config),
        limits_applied: trigger.apply_limits && binding.is_some(),
        runnable: load.runnable,
        partition_workers: load.partition_workers,
        worker_concurrency,
        worker_concurrency_from: from.to_owned(),
        replicas: worker_concurrency.map(|concurrency| {
            desired_replicas(load.runnable, concurrency).max(load.partition_workers)
        }),
        oldest_waiting_seconds: age(scoped.oldest_waiting_ms, since_read),
        all_work: groups(reading, &load.queue, since_read),
    }
}

fn totals(evaluation: &Evaluation) -> v1::Totals {
    v1::Totals {
        depth: evaluation.depth,
        runnable: evaluation.runnable,
        replicas: evaluation.replicas.as_ref().ok().copied(),
        oldest_waiting_seconds: evaluation.oldest_waiting.as_secs_f64(),
    }
}

fn config(registered: &RegisteredQueue) -> v1::QueueConfig {
    let config = &registered.config;
    v1::QueueConfig {
        application: registered.application.clone().unwrap_or_default(),
        worker_concurrency: config.worker_concurrency,
        concurrency: config.concurrency,
        partition_concurrency: config.partition_concurrency,
        partition_worker_concurrency: config.partition_worker_concurrency,
    }
}

fn counts(counts: &QueueCounts) -> v1::Counts {
    v1::Counts {
        enqueued: counts.enqueued,
        pending: counts.pending,
        delayed_due: counts.delayed_due,
        depth: counts.depth(),
    }
}

fn work_group(group: &WorkGroup, since_read: Duration) -> v1::WorkGroup {
    v1::WorkGroup {
        application: group.application.clone().unwrap_or_default(),
        version: group.version.clone().unwrap_or_default(),
        counts: Some(counts(&group.counts)),
        oldest_waiting_seconds: age(group.oldest_waiting_ms, since_read),
    }
}

/// An age read `since_read` ago, as it is now (0 when nothing waits).
fn age(at_read_ms: Option<u64>, since_read: Duration) -> f64 {
    at_read_ms.map_or(0.0, |ms| {
        (Duration::from_millis(ms) + since_read).as_secs_f64()
    })
}

/// The status KEDA gets for `error`, exactly as the KEDA calls send it.
fn refusal(error: Error) -> v1::Refusal {
    let status = Status::from(error);
    v1::Refusal {
        code: code_name(status.code()),
        message: status.message().to_owned(),
    }
}
