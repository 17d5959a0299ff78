//! Trigger metadata: defaults, every key, and every way a value can be wrong.

use super::*;

pub(super) fn metadata(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

pub(super) fn error_of(pairs: &[(&str, &str)]) -> String {
    Trigger::parse(&metadata(pairs)).unwrap_err().to_string()
}

#[test]
fn defaults_apply_to_a_minimal_trigger() {
    let trigger = Trigger::parse(&metadata(&[
        ("queue", "taskQueue"),
        ("scalerAddress", "pg-queue-scaler:9090"),
    ]))
    .unwrap();
    assert_eq!(trigger.queues, vec!["taskQueue"]);
    assert_eq!(trigger.aggregate, Aggregate::Max);
    assert_eq!(trigger.system, System::Dbos);
    assert_eq!(trigger.connection, ConnectionRef::Named("default".into()));
    assert_eq!(trigger.schema, "dbos");
    assert_eq!(trigger.worker_concurrency, None);
    assert_eq!(trigger.metric, MetricKind::Replicas);
    assert_eq!(trigger.activation_threshold, 0);
    assert_eq!(trigger.scope.application, None);
    assert_eq!(trigger.scope.version, VersionFilter::All);
    assert_eq!(trigger.scope.lookahead, Duration::ZERO);
    assert!(trigger.apply_limits);
}

#[test]
fn every_key_is_read() {
    let trigger = Trigger::parse(&metadata(&[
        ("queues", "a, b,a"),
        ("aggregate", "sum"),
        ("system", "dbos"),
        ("database", "orders"),
        ("schema", "jobs_v2"),
        ("workerConcurrency", "4"),
        ("metric", "depth"),
        ("activationThreshold", "3"),
        ("applicationName", "billing"),
        ("applicationVersion", "v2"),
        ("requireApplicationVersion", "true"),
        ("concurrencyLimits", "ignore"),
        ("delayedLookahead", "90s"),
    ]))
    .unwrap();
    assert_eq!(trigger.queues, vec!["a", "b"]);
    assert_eq!(trigger.aggregate, Aggregate::Sum);
    assert_eq!(trigger.connection, ConnectionRef::Named("orders".into()));
    assert_eq!(trigger.schema, "jobs_v2");
    assert_eq!(trigger.worker_concurrency, Some(4));
    assert_eq!(trigger.metric, MetricKind::Depth { target: 4 });
    assert_eq!(trigger.activation_threshold, 3);
    assert_eq!(trigger.scope.application.as_deref(), Some("billing"));
    assert_eq!(trigger.scope.version, VersionFilter::Named("v2".into()));
    assert_eq!(trigger.scope.lookahead, Duration::from_secs(90));
    assert!(!trigger.apply_limits);
}

#[test]
fn a_single_queue_is_one_name_even_with_a_trailing_newline() {
    let trigger = Trigger::parse(&metadata(&[("queue", "jobs\n")])).unwrap();
    assert_eq!(trigger.queues, vec!["jobs"]);
    let trigger = Trigger::parse(&metadata(&[("queue", "a,b")])).unwrap();
    assert_eq!(
        trigger.queues,
        vec!["a,b"],
        "commas only separate in `queues`"
    );
}

#[test]
fn queue_names_are_case_sensitive() {
    let trigger = Trigger::parse(&metadata(&[("queue", "TaskQueue")])).unwrap();
    assert_eq!(trigger.queues, vec!["TaskQueue"]);
}

#[test]
fn malformed_values_name_the_key_and_the_expectation() {
    assert_eq!(
        error_of(&[("queue", "q"), ("workerConcurrency", "0")]),
        r#"workerConcurrency must be a positive integer, got "0""#
    );
    assert_eq!(
        error_of(&[("queue", "q"), ("workerConcurrency", "two")]),
        r#"workerConcurrency must be a positive integer, got "two""#
    );
    assert_eq!(
        error_of(&[("queue", "q"), ("aggregate", "avg")]),
        r#"aggregate must be "max" or "sum", got "avg""#
    );
    assert_eq!(
        error_of(&[("queue", "q"), ("system", "oban")]),
        r#"system must be one of: dbos, got "oban""#
    );
    assert_eq!(
        error_of(&[("queue", "q"), ("metric", "lag")]),
        r#"metric must be "replicas", "depth" or "latency", got "lag""#
    );
    assert_eq!(
        error_of(&[("queue", "q"), ("activationThreshold", "-1")]),
        r#"activationThreshold must be a non-negative integer, got "-1""#
    );
    assert!(
        error_of(&[("queue", "q"), ("schema", "dbos; drop table x")]).starts_with("schema must be")
    );
    assert!(error_of(&[("queue", "q"), ("database", "Orders")]).starts_with("database must be"));
    assert!(error_of(&[("queues", "a,,b")]).starts_with("queues must be"));
    assert!(error_of(&[("queue", " ")]).starts_with("queue must be"));
}

#[test]
fn latency_targets_and_limits_are_checked() {
    assert!(
        error_of(&[("queue", "q"), ("metric", "latency")]).starts_with("targetLatency is required")
    );
    assert_eq!(
        error_of(&[
            ("queue", "q"),
            ("metric", "latency"),
            ("targetLatency", "500ms")
        ]),
        r#"targetLatency must be from 1s to 24h, got "500ms""#
    );
    assert_eq!(
        error_of(&[
            ("queue", "q"),
            ("metric", "latency"),
            ("targetLatency", "fast")
        ]),
        r#"targetLatency must be a duration like 30s, got "fast""#
    );
    let latency = Trigger::parse(&metadata(&[
        ("queue", "q"),
        ("metric", "latency"),
        ("targetLatency", "1m30s"),
    ]));
    assert_eq!(
        latency.unwrap().metric,
        MetricKind::Latency {
            target: Duration::from_secs(90)
        }
    );
    assert_eq!(
        error_of(&[("queue", "q"), ("concurrencyLimits", "off")]),
        r#"concurrencyLimits must be "apply" or "ignore", got "off""#
    );
}

#[test]
fn missing_and_conflicting_keys_are_explained() {
    assert!(error_of(&[]).starts_with("queue is required"));
    assert_eq!(
        error_of(&[("queue", "a"), ("queues", "b")]),
        "set either queue or queues, not both"
    );
    assert_eq!(
        error_of(&[
            ("queue", "a"),
            ("database", "x"),
            ("connectionFromEnv", "postgres://h/db")
        ]),
        "set either database or connectionFromEnv, not both"
    );
    assert!(
        error_of(&[("queue", "a"), ("metric", "depth")])
            .starts_with("workerConcurrency is required")
    );
}

#[test]
fn a_bad_connection_url_is_refused_without_echoing_it() {
    let message = error_of(&[
        ("queue", "a"),
        ("connectionFromEnv", "postgres://u:hunter2@h:port/db"),
    ]);
    assert!(
        message.starts_with("connectionFromEnv must resolve"),
        "{message}"
    );
    assert!(!message.contains("hunter2"));
}

#[test]
fn a_connection_url_becomes_the_database() {
    let trigger = Trigger::parse(&metadata(&[
        ("queue", "a"),
        (
            "connectionFromEnv",
            "postgres://u:pw@db.internal:5432/app_sys",
        ),
    ]))
    .unwrap();
    assert!(matches!(trigger.connection, ConnectionRef::FromEnv(_)));
    assert_eq!(
        trigger.database_label(),
        "connectionFromEnv (db.internal:5432/app_sys)"
    );
}

#[test]
fn identifiers_are_checked() {
    assert!(is_identifier("dbos"));
    assert!(is_identifier("_x$1"));
    assert!(!is_identifier("1abc"));
    assert!(!is_identifier("a-b"));
    assert!(!is_identifier("\"dbos\""));
    assert!(!is_identifier(&"a".repeat(64)));
}

#[test]
fn keys_the_scaler_does_not_read_are_listed_for_the_manifest_check() {
    let pairs = metadata(&[
        ("queue", "q"),
        ("scalerAddress", "pg-queue-scaler:9090"),
        ("queueName", "typo"),
        ("delayedLookahead", "90s"),
    ]);
    assert_eq!(unread_keys(&pairs), vec!["queueName", "scalerAddress"]);
}
