//! Explanations built from hand-made reads: the numbers, the words and the outcome.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use super::*;
use crate::snapshot::RefreshError;
use crate::systems::{QueueConfig, ScopedLoad};
use crate::trigger::from_pairs;

/// A read of queue `q` for `trigger`'s scope: 5 waiting and 1 running, under `config`.
fn read_for(trigger: &Trigger, config: QueueConfig) -> Arc<Snapshot> {
    let mut reading = Reading::default();
    let counts = QueueCounts {
        enqueued: 5,
        pending: 1,
        delayed_due: 0,
    };
    let load = ScopedLoad {
        counts,
        oldest_waiting_ms: Some(1_500),
        partitions: None,
    };
    reading.scopes.insert(
        trigger.scope.clone(),
        HashMap::from([("q".to_owned(), load)]),
    );
    reading.queues.insert(
        "q".into(),
        RegisteredQueue {
            application: None,
            config,
        },
    );
    for (version, enqueued) in [(Some("v2"), 3), (None, 2), (Some("v1"), 1)] {
        reading
            .groups
            .entry("q".into())
            .or_default()
            .push(WorkGroup {
                application: None,
                version: version.map(str::to_owned),
                counts: QueueCounts {
                    enqueued,
                    ..QueueCounts::default()
                },
                oldest_waiting_ms: None,
            });
    }
    Arc::new(Snapshot {
        reading,
        read_at: Instant::now(),
    })
}

fn served(snapshot: Arc<Snapshot>) -> Observed {
    Observed {
        state: SourceState {
            last_good: Some(snapshot.clone()),
            failure: None,
            attempts: 1,
        },
        verdict: Ok(snapshot),
    }
}

#[test]
fn limits_and_worker_concurrency_are_shown_where_they_change_the_answer() {
    let trigger = from_pairs(&[("queue", "q")]);
    let config = QueueConfig {
        worker_concurrency: Some(2),
        concurrency: Some(3),
        ..QueueConfig::default()
    };
    let explanation = explain(&trigger, "dbos-q-1", served(read_for(&trigger, config)));
    let answers = explanation.answers.clone().unwrap();
    // 6 items, 3 may run at once, 2 per replica: 2 replicas.
    assert_eq!(answers.metric_value, Some(2.0));
    assert_eq!(answers.active, Some(true));
    assert_eq!(outcome(&explanation), Outcome::Answered);
    let step = &explanation.queues[0];
    assert_eq!((step.runnable, step.replicas), (3, Some(2)));
    assert_eq!(step.worker_concurrency_from, "database");
    assert!(
        explanation.steps.iter().any(|line| line
            == "queue \"q\": 5 enqueued + 1 pending + 0 due delayed = depth 6; DBOS's \
                limits (concurrency 3) let 3 run at once; worker_concurrency 2 (from the \
                database) makes 2 replicas"),
        "{:#?}",
        explanation.steps
    );
    assert!(
        explanation
            .steps
            .last()
            .unwrap()
            .starts_with("GetMetrics answers 2 ")
    );
}

#[test]
fn without_a_worker_concurrency_only_get_metrics_is_refused() {
    let trigger = from_pairs(&[("queue", "q")]);
    let explanation = explain(
        &trigger,
        "dbos-q-1",
        served(read_for(&trigger, QueueConfig::default())),
    );
    let answers = explanation.answers.clone().unwrap();
    assert_eq!(answers.active, Some(true));
    assert_eq!(answers.metric_value, None);
    assert_eq!(answers.metric_error.unwrap().code, "FailedPrecondition");
    assert_eq!(outcome(&explanation), Outcome::Refused);
}

#[test]
fn a_failed_read_is_explained_with_the_status_keda_gets() {
    let trigger = from_pairs(&[("queue", "q"), ("workerConcurrency", "1")]);
    let failure = Arc::new(RefreshError::TimedOut(Duration::from_secs(10)));
    let observed = Observed {
        state: SourceState {
            last_good: None,
            failure: Some(failure),
            attempts: 3,
        },
        verdict: Err(Error::Unavailable(
            "database \"default\" could not be read".into(),
        )),
    };
    let explanation = explain(&trigger, "dbos-q-1", observed);
    assert_eq!(outcome(&explanation), Outcome::Unavailable);
    let snapshot = explanation.snapshot.unwrap();
    assert!(!snapshot.read);
    assert_eq!(snapshot.last_error, "no answer within 10000ms");
    let refusal = explanation.answers.unwrap().active_error.unwrap();
    assert_eq!(refusal.code, "Unavailable");
    assert!(explanation.queues.is_empty() && explanation.totals.is_none());
}

#[test]
fn queues_are_listed_whole_with_groups_in_order() {
    let trigger = from_pairs(&[("queue", "q")]);
    let config = QueueConfig {
        worker_concurrency: Some(4),
        ..QueueConfig::default()
    };
    let snapshot = read_for(&trigger, config);
    let listed = queues(&snapshot.reading, Duration::ZERO, "");
    assert_eq!(listed.len(), 1);
    let versions: Vec<&str> = listed[0]
        .groups
        .iter()
        .map(|g| g.version.as_str())
        .collect();
    assert_eq!(versions, ["", "v1", "v2"]);
    // All versions' work (6 waiting) at 4 per replica.
    assert_eq!(listed[0].desired_replicas, Some(2));
    assert!(queues(&snapshot.reading, Duration::ZERO, "other").is_empty());
}

#[test]
fn a_latency_trigger_is_answered_in_seconds_of_waiting() {
    let trigger = from_pairs(&[
        ("queue", "q"),
        ("metric", "latency"),
        ("targetLatency", "30s"),
    ]);
    let config = QueueConfig {
        worker_concurrency: Some(2),
        ..QueueConfig::default()
    };
    let explanation = explain(&trigger, "dbos-q-1", served(read_for(&trigger, config)));
    let answers = explanation.answers.clone().unwrap();
    // The oldest item had waited 1.5 s at read time, and a little longer now.
    let seconds = answers.metric_value.unwrap();
    assert!((1.5..2.5).contains(&seconds), "{seconds}");
    assert_eq!(answers.target, 30.0);
    assert!(
        explanation
            .steps
            .last()
            .unwrap()
            .ends_with("the HPA's target is 30s)"),
        "{:#?}",
        explanation.steps
    );
}

#[test]
fn a_version_trigger_is_told_which_version_is_the_latest() {
    let config = QueueConfig {
        worker_concurrency: Some(1),
        ..QueueConfig::default()
    };
    // (trigger's version, the latest the read resolved, the words, the field)
    let cases = [
        (
            "v1",
            Some("v2"),
            "version \"v1\", plus version-less work while \"v1\" is the latest (it is not: \
             the latest is \"v2\")",
            Some("v2"),
        ),
        (
            "v2",
            Some("v2"),
            "version \"v2\", plus version-less work while \"v2\" is the latest (it is)",
            Some("v2"),
        ),
        (
            "v1",
            None,
            "while \"v1\" is the latest (no version is registered, so it is)",
            None,
        ),
        (
            "latest",
            Some("v3"),
            "of the latest version (now \"v3\"), plus version-less work",
            Some("v3"),
        ),
    ];
    for (version, latest, words, field) in cases {
        let trigger = from_pairs(&[("queue", "q"), ("applicationVersion", version)]);
        let mut snapshot = read_for(&trigger, config);
        Arc::get_mut(&mut snapshot)
            .unwrap()
            .reading
            .latest_versions
            .insert(trigger.scope.clone(), latest.map(str::to_owned));
        let explanation = explain(&trigger, "dbos-q-1", served(snapshot));
        assert!(
            explanation.steps[1].contains(words),
            "{version}, {latest:?}: {}",
            explanation.steps[1]
        );
        assert_eq!(explanation.latest_version.as_deref(), field);
    }
    // A trigger on every version is not about the latest one.
    let trigger = from_pairs(&[("queue", "q")]);
    let mut snapshot = read_for(&trigger, config);
    Arc::get_mut(&mut snapshot)
        .unwrap()
        .reading
        .latest_versions
        .insert(trigger.scope.clone(), Some("v2".to_owned()));
    let explanation = explain(&trigger, "dbos-q-1", served(snapshot));
    assert_eq!(explanation.latest_version, None);
    assert!(explanation.steps[1].contains("of every version"));
}
