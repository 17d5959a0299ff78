//! The four RPCs against real DBOS schemas (one per supported DBOS release), with rows
//! written the way DBOS writes them.

mod common;

use std::time::Duration;

use common::{
    Fixture, Server, TestScaler, Workflows, is_active, metric_value, next_activity, open_stream,
    per_fixture, scaled_object,
};
use pg_queue_scaler::grpc::proto::GetMetricsRequest;
use tokio_stream::StreamExt;
use tonic::Code;

/// Settings for a scaler reading `url` as its default database, refreshing fast.
fn env_for(url: &str) -> Vec<(&'static str, String)> {
    vec![
        ("PGQS_DATABASE_URL", url.to_owned()),
        ("PGQS_REFRESH_INTERVAL", "200ms".to_owned()),
    ]
}

async fn start(url: &str, extra: &[(&str, &str)]) -> TestScaler {
    let env = env_for(url);
    let mut pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    pairs.extend_from_slice(extra);
    TestScaler::start(&pairs).await
}

per_fixture!(every_dbos_release_reads_the_same_depth: Py340, Py2311, Py2290, Ts530);

/// On every fixture: depth = ENQUEUED + PENDING + due DELAYED of the queue, nothing else;
/// replicas = ceil(depth / worker_concurrency from dbos.queues); IsActive and the stream
/// agree; the activation threshold applies.
async fn every_dbos_release_reads_the_same_depth(fixture: Fixture) {
    let server = Server::from_env_or_private();
    let url = server.dbos_database(fixture).await;
    let mut rows = Workflows::new(&url, fixture).await;
    rows.register_queue("taskQueue", Some(4)).await;
    rows.register_queue("emptyQueue", Some(2)).await;
    rows.enqueue("taskQueue", 5, None).await;
    rows.running("taskQueue", 3, None).await;
    rows.delayed("taskQueue", 2, -1_000).await; // due
    rows.delayed("taskQueue", 7, 3_600_000).await; // not yet due
    rows.other("SUCCESS", Some("taskQueue"), 11).await;
    rows.other("ERROR", Some("taskQueue"), 2).await;
    rows.other("PENDING", None, 6).await; // started directly, not queue work
    rows.enqueue("otherQueue", 9, None).await;

    let scaler = start(&url, &[]).await;
    let mut client = scaler.client().await;
    let trigger = scaled_object("worker", &[("queue", "taskQueue")]);
    // depth 5 + 3 + 2 = 10, worker_concurrency 4 => 3 replicas
    assert_eq!(
        metric_value(&mut client, &trigger).await.unwrap(),
        3,
        "{fixture:?}"
    );
    assert!(is_active(&mut client, &trigger).await.unwrap());

    let depth = scaled_object(
        "worker",
        &[
            ("queue", "taskQueue"),
            ("metric", "depth"),
            ("workerConcurrency", "3"),
        ],
    );
    let spec = client
        .get_metric_spec(depth.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(spec.metric_specs[0].target_size, 3);
    assert_eq!(spec.metric_specs[0].target_size_float, 3.0);
    assert_eq!(
        metric_value(&mut client, &depth).await.unwrap(),
        10,
        "{fixture:?}"
    );

    let override_concurrency = scaled_object(
        "worker",
        &[("queue", "taskQueue"), ("workerConcurrency", "10")],
    );
    assert_eq!(
        metric_value(&mut client, &override_concurrency)
            .await
            .unwrap(),
        1
    );

    let quiet = scaled_object(
        "worker",
        &[("queue", "taskQueue"), ("activationThreshold", "10")],
    );
    assert!(
        !is_active(&mut client, &quiet).await.unwrap(),
        "10 is not > 10"
    );

    let mut stream = open_stream(&mut client, &trigger).await;
    assert!(
        next_activity(&mut stream).await,
        "the stream opens with the current state"
    );

    let empty = scaled_object(
        "worker",
        &[("queue", "emptyQueue"), ("workerConcurrency", "2")],
    );
    assert_eq!(metric_value(&mut client, &empty).await.unwrap(), 0);
    assert!(!is_active(&mut client, &empty).await.unwrap());
    drop(stream);
    scaler.stop().await.unwrap();
}

/// Several queues combine with `max` (busiest queue decides) or `sum` (one pool).
#[tokio::test]
async fn queues_combine_by_max_or_sum() {
    let server = Server::from_env_or_private();
    let url = server.dbos_database(Fixture::Py340).await;
    let mut rows = Workflows::new(&url, Fixture::Py340).await;
    rows.register_queue("a", Some(2)).await;
    rows.register_queue("b", Some(2)).await;
    rows.register_queue("c", Some(5)).await;
    rows.enqueue("a", 3, None).await;
    rows.enqueue("b", 4, None).await;
    rows.enqueue("c", 6, None).await;
    let scaler = start(&url, &[]).await;
    let mut client = scaler.client().await;

    // max: a needs 2, b needs 2, c needs 2 (6/5) => 2
    let max = scaled_object("w", &[("queues", "a,b,c")]);
    assert_eq!(metric_value(&mut client, &max).await.unwrap(), 2);
    // sum of a and b (same concurrency 2): 7 / 2 => 4
    let sum = scaled_object("w", &[("queues", "a, b"), ("aggregate", "sum")]);
    assert_eq!(metric_value(&mut client, &sum).await.unwrap(), 4);
    // sum over differing concurrencies needs workerConcurrency
    let ambiguous = scaled_object("w", &[("queues", "a,c"), ("aggregate", "sum")]);
    let error = metric_value(&mut client, &ambiguous).await.unwrap_err();
    assert_eq!(error.code(), Code::FailedPrecondition);
    assert!(
        error.message().contains("workerConcurrency"),
        "{}",
        error.message()
    );
    // sum activation uses the summed depth
    let sum_threshold = scaled_object(
        "w",
        &[
            ("queues", "a,b"),
            ("aggregate", "sum"),
            ("activationThreshold", "6"),
        ],
    );
    assert!(is_active(&mut client, &sum_threshold).await.unwrap());
    scaler.stop().await.unwrap();
}

per_fixture!(application_name_filters_where_the_column_exists: Py340, Py2290);

/// With applicationName, only that app's and unclaimed work counts, where the schema
/// records owners; on a schema without owners (before DBOS migration 100) all work counts.
async fn application_name_filters_where_the_column_exists(fixture: Fixture) {
    let server = Server::from_env_or_private();
    let url = server.dbos_database(fixture).await;
    let mut rows = Workflows::new(&url, fixture).await;
    rows.enqueue("q", 2, Some("billing")).await;
    rows.enqueue("q", 5, Some("search")).await;
    rows.enqueue("q", 1, None).await;
    let scaler = start(&url, &[]).await;
    let mut client = scaler.client().await;
    let billing = scaled_object(
        "w",
        &[
            ("queue", "q"),
            ("applicationName", "billing"),
            ("metric", "depth"),
            ("workerConcurrency", "1"),
        ],
    );
    let expected = if fixture.has_application_name() { 3 } else { 8 };
    assert_eq!(
        metric_value(&mut client, &billing).await.unwrap(),
        expected,
        "{fixture:?}"
    );
    scaler.stop().await.unwrap();
}

/// A queue without worker_concurrency in the database needs it in metadata; the error
/// says so instead of guessing.
#[tokio::test]
async fn missing_worker_concurrency_is_explained() {
    let server = Server::from_env_or_private();
    let url = server.dbos_database(Fixture::Py340).await;
    let mut rows = Workflows::new(&url, Fixture::Py340).await;
    rows.register_queue("unlimited", None).await;
    rows.enqueue("unlimited", 3, None).await;
    let scaler = start(&url, &[]).await;
    let mut client = scaler.client().await;
    let error = metric_value(&mut client, &scaled_object("w", &[("queue", "unlimited")]))
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::FailedPrecondition);
    assert!(
        error.message().contains("set workerConcurrency"),
        "{}",
        error.message()
    );
    scaler.stop().await.unwrap();
}

/// Bad metadata is InvalidArgument naming the key; unknown metric names and databases are
/// refused; StreamMetricSpec is Unimplemented (KEDA then keeps calling GetMetricSpec).
#[tokio::test]
async fn bad_requests_get_clear_errors() {
    let server = Server::from_env_or_private();
    let url = server.dbos_database(Fixture::Py340).await;
    let scaler = start(&url, &[]).await;
    let mut client = scaler.client().await;

    let bad = scaled_object("w", &[("queue", "q"), ("workerConcurrency", "0")]);
    for status in [
        client.get_metric_spec(bad.clone()).await.unwrap_err(),
        client.is_active(bad.clone()).await.unwrap_err(),
        client.stream_is_active(bad.clone()).await.unwrap_err(),
    ] {
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(
            status.message(),
            r#"workerConcurrency must be a positive integer, got "0""#
        );
    }
    let no_queue = scaled_object("w", &[]);
    let status = client.is_active(no_queue).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().starts_with("queue is required"));

    let unknown_db = scaled_object("w", &[("queue", "q"), ("database", "orders")]);
    let status = client.get_metric_spec(unknown_db).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().contains("\"orders\""),
        "{}",
        status.message()
    );

    let good = scaled_object("w", &[("queue", "q"), ("workerConcurrency", "1")]);
    let status = client
        .get_metrics(GetMetricsRequest {
            scaled_object_ref: Some(good.clone()),
            metric_name: "dbos-other".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);

    let status = client.stream_metric_spec(good).await.unwrap_err();
    assert_eq!(status.code(), Code::Unimplemented);
    scaler.stop().await.unwrap();
}

/// Metric names are lowercase, DNS-safe, stable for one trigger and distinct per queue.
#[tokio::test]
async fn metric_names_are_distinct_and_dns_safe() {
    let server = Server::from_env_or_private();
    let url = server.dbos_database(Fixture::Py340).await;
    let scaler = start(&url, &[]).await;
    let mut client = scaler.client().await;
    let mut names = Vec::new();
    for queue in ["Orders", "orders", "orders.v2", "orders_v2"] {
        let spec = client
            .get_metric_spec(scaled_object("w", &[("queue", queue)]))
            .await
            .unwrap()
            .into_inner();
        let name = spec.metric_specs[0].metric_name.clone();
        assert!(
            name.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
            "{name}"
        );
        assert_eq!(spec.metric_specs[0].target_size, 1);
        assert_eq!(spec.metric_specs[0].target_size_float, 1.0);
        names.push(name);
    }
    let mut unique = names.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), names.len(), "{names:?}");
    scaler.stop().await.unwrap();
}

/// A stream opened on an empty queue says "inactive", then pushes "active" as soon as work
/// is enqueued, and ends with OK when the scaler shuts down.
#[tokio::test]
async fn stream_pushes_activation_and_ends_cleanly_on_shutdown() {
    let server = Server::from_env_or_private();
    let url = server.dbos_database(Fixture::Py340).await;
    let mut rows = Workflows::new(&url, Fixture::Py340).await;
    rows.register_queue("wake", Some(2)).await;
    let scaler = start(&url, &[]).await;
    let mut client = scaler.client().await;
    let trigger = scaled_object("w", &[("queue", "wake"), ("workerConcurrency", "2")]);
    let mut stream = open_stream(&mut client, &trigger).await;
    assert!(
        !next_activity(&mut stream).await,
        "an empty queue is inactive"
    );

    rows.enqueue("wake", 1, None).await;
    assert!(
        next_activity(&mut stream).await,
        "enqueueing into an empty queue is pushed"
    );

    let stopping = tokio::spawn(scaler.stop());
    let end = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .unwrap();
    assert!(
        end.is_none(),
        "the stream ends with OK, not an error: {end:?}"
    );
    stopping.await.unwrap().unwrap();
}

/// GetMetricSpec never needs the database: it answers while Postgres is unreachable, and
/// GetMetrics/IsActive say Unavailable instead of a made-up 0.
#[tokio::test]
async fn an_unreachable_database_is_unavailable_never_zero() {
    let port = common::postgres::free_port();
    let url = format!("postgres://scaler:hunter2@127.0.0.1:{port}/nothing");
    let scaler = start(&url, &[]).await;
    let mut client = scaler.client().await;
    let trigger = scaled_object("w", &[("queue", "q"), ("workerConcurrency", "2")]);
    let spec = client
        .get_metric_spec(trigger.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(spec.metric_specs.len(), 1);
    for status in [
        metric_value(&mut client, &trigger).await.unwrap_err(),
        client.is_active(trigger.clone()).await.unwrap_err(),
    ] {
        assert_eq!(status.code(), Code::Unavailable);
        assert!(
            status.message().contains("\"default\""),
            "{}",
            status.message()
        );
        assert!(!status.message().contains("hunter2"));
        assert!(!status.message().contains("SELECT"));
    }
    scaler.stop().await.unwrap();
}

/// When reads stop completing (here: a lock blocks them), the last good reading is served
/// only until it is `stale_after` old; after that, Unavailable says it is stale.
#[tokio::test]
async fn a_stale_reading_is_unavailable() {
    let server = Server::from_env_or_private();
    let url = server.dbos_database(Fixture::Py340).await;
    let mut rows = Workflows::new(&url, Fixture::Py340).await;
    rows.enqueue("q", 1, None).await;
    let scaler = start(
        &url,
        &[
            ("PGQS_STALE_AFTER", "2s"),
            ("PGQS_READ_TIMEOUT", "20s"),
            ("PGQS_STATEMENT_TIMEOUT", "20s"),
        ],
    )
    .await;
    let mut client = scaler.client().await;
    let trigger = scaled_object("w", &[("queue", "q"), ("workerConcurrency", "1")]);
    assert_eq!(metric_value(&mut client, &trigger).await.unwrap(), 1);

    let locker = common::postgres::connect(&url).await;
    locker
        .batch_execute("BEGIN; LOCK TABLE dbos.workflow_status IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let status = client.is_active(trigger.clone()).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert!(status.message().contains("stale"), "{}", status.message());
    locker.batch_execute("ROLLBACK").await.unwrap();
    common::eventually("reads to resume", Duration::from_secs(10), || {
        let mut client = client.clone();
        let trigger = trigger.clone();
        async move { client.is_active(trigger).await.is_ok() }
    })
    .await;
    scaler.stop().await.unwrap();
}

/// A URL sent through connectionFromEnv is read like a configured database, and a broken
/// one is refused without echoing it.
#[tokio::test]
async fn connection_from_env_urls_are_served() {
    let server = Server::from_env_or_private();
    let url = server.dbos_database(Fixture::Ts530).await;
    let mut rows = Workflows::new(&url, Fixture::Ts530).await;
    rows.enqueue("q", 3, None).await;
    let scaler = TestScaler::start(&[]).await;
    let mut client = scaler.client().await;
    let trigger = scaled_object(
        "w",
        &[
            ("queue", "q"),
            ("workerConcurrency", "2"),
            ("connectionFromEnv", url.as_str()),
        ],
    );
    assert_eq!(metric_value(&mut client, &trigger).await.unwrap(), 2);
    let broken = scaled_object(
        "w",
        &[
            ("queue", "q"),
            ("connectionFromEnv", "postgres://u:hunter2@h:x/db"),
        ],
    );
    let status = client.is_active(broken).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(!status.message().contains("hunter2"));
    scaler.stop().await.unwrap();
}

per_fixture!(an_unknown_queue_is_an_error_where_dbos_registers_every_queue: Py340, Ts530, Py2311);

/// On DBOS 3 schemas every queue is registered, so a queue with no registration and no work
/// is a misspelt name or the wrong database: FailedPrecondition saying so, never a 0 that
/// would scale the workers away. On DBOS 2 schemas (queues may live only in code) the same
/// queue is simply empty; and a DBOS 3 queue with work counts even before registration.
async fn an_unknown_queue_is_an_error_where_dbos_registers_every_queue(fixture: Fixture) {
    let server = Server::from_env_or_private();
    let url = server.dbos_database(fixture).await;
    let mut rows = Workflows::new(&url, fixture).await;
    rows.enqueue("unregistered-but-busy", 3, None).await;
    let scaler = start(&url, &[]).await;
    let mut client = scaler.client().await;
    let typo = scaled_object("w", &[("queue", "taskQeue"), ("workerConcurrency", "1")]);
    let busy = scaled_object(
        "w",
        &[
            ("queue", "unregistered-but-busy"),
            ("workerConcurrency", "1"),
        ],
    );
    assert_eq!(
        metric_value(&mut client, &busy).await.unwrap(),
        3,
        "{fixture:?}"
    );
    if fixture == Fixture::Py2311 {
        assert_eq!(metric_value(&mut client, &typo).await.unwrap(), 0);
    } else {
        for status in [
            metric_value(&mut client, &typo).await.unwrap_err(),
            client.is_active(typo.clone()).await.unwrap_err(),
        ] {
            assert_eq!(status.code(), Code::FailedPrecondition, "{fixture:?}");
            assert!(
                status.message().contains("\"taskQeue\" is not registered"),
                "{}",
                status.message()
            );
        }
    }
    scaler.stop().await.unwrap();
}
