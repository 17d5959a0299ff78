//! Hostile and mistaken input: what is echoed is bounded, oversized metadata is refused
//! before any work, every status fits in 8 KiB, streams end with the status `IsActive`
//! gives when a trigger can never be answered, and random metadata maps on all four calls
//! get only the expected status codes.
//!
//! The property test runs `PGQS_FUZZ_CASES` cases (256 by default, which CI affords);
//! `PGQS_FUZZ_CASES=1000000 cargo test --release --test hostile_input random_metadata`
//! runs a million.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{
    Fixture, Server, TestScaler, Workflows, metric_value, next_activity, open_stream, scaled_object,
};
use pg_queue_scaler::grpc::proto::external_scaler_client::ExternalScalerClient;
use pg_queue_scaler::grpc::proto::{GetMetricsRequest, ScaledObjectRef};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use tonic::transport::Channel;
use tonic::{Code, Status};

/// The most a status message may take: every status fits in 8 KiB with its code and framing.
const MAX_MESSAGE: usize = 4096;

/// A DBOS 3 database with one registered queue and some work, and a scaler reading it.
async fn start() -> (Server, String, TestScaler) {
    let server = Server::from_env_or_private();
    let url = server.dbos_database(Fixture::Py340).await;
    let mut rows = Workflows::new(&url, Fixture::Py340).await;
    rows.register_queue("q", Some(2)).await;
    rows.enqueue("q", 3, None).await;
    let scaler = TestScaler::start(&[
        ("PGQS_DATABASE_URL", url.as_str()),
        ("PGQS_REFRESH_INTERVAL", "200ms"),
        ("PGQS_CONNECTION_FROM_ENV_ENABLED", "false"),
    ])
    .await;
    (server, url, scaler)
}

/// The status of each of the four calls for `reference` (OK as `Code::Ok`), asking
/// GetMetrics for `metric_name`.
async fn all_calls(
    client: &mut ExternalScalerClient<Channel>,
    reference: &ScaledObjectRef,
    metric_name: &str,
) -> Vec<Status> {
    calls_waiting(client, reference, metric_name, Duration::from_millis(300)).await
}

/// [`all_calls`], waiting `stream_wait` for the stream's first message.
async fn calls_waiting(
    client: &mut ExternalScalerClient<Channel>,
    reference: &ScaledObjectRef,
    metric_name: &str,
    stream_wait: Duration,
) -> Vec<Status> {
    let ok = || Status::new(Code::Ok, "");
    let mut statuses = vec![
        client
            .get_metric_spec(reference.clone())
            .await
            .map_or_else(|status| status, |_| ok()),
        client
            .is_active(reference.clone())
            .await
            .map_or_else(|status| status, |_| ok()),
        client
            .get_metrics(GetMetricsRequest {
                scaled_object_ref: Some(reference.clone()),
                metric_name: metric_name.to_owned(),
            })
            .await
            .map_or_else(|status| status, |_| ok()),
    ];
    let stream = match client.stream_is_active(reference.clone()).await {
        Err(status) => status,
        Ok(response) => {
            // The first message (or end) of the stream; a stream that stays silent (the
            // database not read for this trigger yet) counts as open.
            let mut stream = response.into_inner();
            match tokio::time::timeout(stream_wait, stream.message()).await {
                Ok(Err(status)) => status,
                _ => ok(),
            }
        }
    };
    statuses.push(stream);
    statuses
}

/// A value of 10 000 characters is quoted cut and marked; metadata over 16 KiB is refused
/// as a whole, before it is parsed; every status stays far below 8 KiB.
#[tokio::test]
async fn echoed_values_and_oversized_metadata_are_bounded() {
    let (_server, _url, scaler) = start().await;
    let mut client = scaler.client().await;
    let long = scaled_object(
        "w",
        &[("queue", "q"), ("workerConcurrency", &"x".repeat(10_000))],
    );
    for status in all_calls(&mut client, &long, "dbos-q").await {
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(
            status
                .message()
                .starts_with("workerConcurrency must be a positive integer, got \"xxx"),
            "{}",
            status.message()
        );
        assert!(status.message().contains("(cut: 9800 more bytes)"));
        assert!(status.message().len() < 512, "{}", status.message().len());
    }
    let huge = scaled_object("w", &[("queues", &"é".repeat(32_768))]);
    for status in all_calls(&mut client, &huge, "dbos-q").await {
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(
            status.message(),
            "the trigger metadata holds 65580 bytes; at most 16384 are accepted"
        );
    }
    // Values that are not metadata are bounded too: a requested metric name and a
    // namespace.
    let good = scaled_object("w", &[("queue", "q")]);
    let status = client
        .get_metrics(GetMetricsRequest {
            scaled_object_ref: Some(good.clone()),
            metric_name: "m".repeat(1_000_000),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    assert!(status.message().len() < 512, "{}", status.message().len());
    let unknown_queue = scaled_object("w", &[("queue", &"ü".repeat(5_000))]);
    let status = client.is_active(unknown_queue).await.unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert!(status.message().len() < 1024, "{}", status.message().len());
    assert_eq!(metric_value(&mut client, &good).await.unwrap(), 2);
    scaler.stop().await.unwrap();
}

/// A trigger that can never be answered ends its stream with the status IsActive gives;
/// a database that cannot be read keeps the stream open and silent.
#[tokio::test]
async fn streams_end_with_permanent_errors_and_wait_through_outages() {
    let (_server, _url, scaler) = start().await;
    let mut client = scaler.client().await;
    let typo = scaled_object("w", &[("queue", "taskQeue"), ("workerConcurrency", "1")]);
    let polled = client.is_active(typo.clone()).await.unwrap_err();
    assert_eq!(polled.code(), Code::FailedPrecondition);
    let mut stream = open_stream(&mut client, &typo).await;
    let ended = tokio::time::timeout(Duration::from_secs(5), stream.message())
        .await
        .expect("the stream ends within 5s")
        .unwrap_err();
    assert_eq!(ended.code(), polled.code());
    assert_eq!(ended.message(), polled.message());
    scaler.stop().await.unwrap();

    let port = common::postgres::free_port();
    let unreachable = format!("postgres://scaler:pw@127.0.0.1:{port}/nothing");
    let scaler = TestScaler::start(&[("PGQS_DATABASE_URL", unreachable.as_str())]).await;
    let mut client = scaler.client().await;
    let trigger = scaled_object("w", &[("queue", "q"), ("workerConcurrency", "1")]);
    let mut stream = open_stream(&mut client, &trigger).await;
    let silent = tokio::time::timeout(Duration::from_millis(1_500), stream.message()).await;
    assert!(silent.is_err(), "open and silent: {silent:?}");
    scaler.stop().await.unwrap();
}

/// A stream on an answerable trigger still opens with its state, as before.
#[tokio::test]
async fn a_healthy_stream_still_pushes() {
    let (_server, _url, scaler) = start().await;
    let mut client = scaler.client().await;
    let trigger = scaled_object("w", &[("queue", "q")]);
    let mut stream = open_stream(&mut client, &trigger).await;
    assert!(next_activity(&mut stream).await);
    scaler.stop().await.unwrap();
}

/// Metadata values: mostly plausible ones (so that valid triggers occur), and any text.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("q".to_owned()),
        Just("2".to_owned()),
        Just("0".to_owned()),
        Just("-1".to_owned()),
        Just("max".to_owned()),
        Just("sum".to_owned()),
        Just("dbos".to_owned()),
        Just("default".to_owned()),
        Just("depth".to_owned()),
        Just("latency".to_owned()),
        Just("latest".to_owned()),
        Just("true".to_owned()),
        Just("90s".to_owned()),
        Just("ignore".to_owned()),
        Just("postgres://u:p@h/db".to_owned()),
        ".{0,40}",
        "[a-z_]{1,8}",
        ".{0,3000}",
    ]
}

/// Keys: every key the scaler reads, and others.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "queue",
            "queues",
            "aggregate",
            "system",
            "database",
            "connectionFromEnv",
            "schema",
            "workerConcurrency",
            "metric",
            "activationThreshold",
            "applicationName",
            "applicationVersion",
            "applicationVersionFromEnv",
            "requireApplicationVersion",
            "concurrencyLimits",
            "delayedLookahead",
            "targetLatency",
        ])
        .prop_map(str::to_owned),
        ".{0,20}",
    ]
}

/// Random metadata maps on all four calls: only the codes a trigger can earn, every message
/// bounded, and the DBOS tables untouched.
#[test]
fn random_metadata_gets_only_expected_codes() {
    let cases = std::env::var("PGQS_FUZZ_CASES")
        .ok()
        .and_then(|cases| cases.parse().ok())
        .unwrap_or(256);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (_server, url, scaler) = runtime.block_on(start());
    let client = runtime.block_on(scaler.client());
    let rows_before = runtime.block_on(count_rows(&url));
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let maps = prop::collection::hash_map(key(), value(), 0..8);
    runner
        .run(&(maps, prop::bool::ANY), |(metadata, right_name)| {
            let mut client = client.clone();
            let reference = ScaledObjectRef {
                name: "fuzz".into(),
                namespace: "workers".into(),
                scaler_metadata: metadata,
            };
            let statuses = runtime.block_on(async {
                // Half the time GetMetrics asks for the name GetMetricSpec gives.
                let name = match client.get_metric_spec(reference.clone()).await {
                    Ok(spec) if right_name => spec.into_inner().metric_specs[0].metric_name.clone(),
                    _ => "dbos-q-00000000".to_owned(),
                };
                // A short wait for the stream: most triggers push at once, and a silent
                // stream counts as open.
                calls_waiting(&mut client, &reference, &name, Duration::from_millis(20)).await
            });
            for status in statuses {
                check(&status, &reference.scaler_metadata)?;
            }
            Ok(())
        })
        .unwrap();
    assert_eq!(runtime.block_on(count_rows(&url)), rows_before);
    runtime.block_on(scaler.stop()).unwrap();
}

fn check(status: &Status, metadata: &HashMap<String, String>) -> Result<(), TestCaseError> {
    let expected = [
        Code::Ok,
        Code::InvalidArgument,
        Code::NotFound,
        Code::FailedPrecondition,
        Code::PermissionDenied,
        // Random schemas are new sources: past max_sources or max_database_connections.
        Code::ResourceExhausted,
        Code::Unavailable,
    ];
    prop_assert!(
        expected.contains(&status.code()),
        "{:?}: {} for {metadata:?}",
        status.code(),
        status.message()
    );
    prop_assert!(status.message().len() <= MAX_MESSAGE);
    Ok(())
}

async fn count_rows(url: &str) -> (i64, i64) {
    let client = common::postgres::connect(url).await;
    let row = client
        .query_one(
            "SELECT (SELECT count(*) FROM dbos.workflow_status), \
             (SELECT count(*) FROM dbos.queues)",
            &[],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

/// Caps: a new source beyond `max_sources`, or beyond the connections
/// `max_database_connections` leaves, is ResourceExhausted naming the setting, and the
/// sources in use keep working; /metrics shows each cap's use.
#[tokio::test]
async fn sources_and_connections_are_capped() {
    let server = Server::from_env_or_private();
    let url = server.dbos_database(Fixture::Py340).await;
    let mut rows = Workflows::new(&url, Fixture::Py340).await;
    rows.register_queue("q", Some(1)).await;
    rows.enqueue("q", 2, None).await;
    let first = scaled_object("w", &[("queue", "q")]);
    let other_schema = scaled_object("w", &[("queue", "q"), ("schema", "other")]);
    for (cap, setting) in [
        (("PGQS_MAX_SOURCES", "1"), "max_sources"),
        (
            ("PGQS_MAX_DATABASE_CONNECTIONS", "3"),
            "max_database_connections",
        ),
    ] {
        let scaler = TestScaler::start(&[("PGQS_DATABASE_URL", url.as_str()), cap]).await;
        let mut client = scaler.client().await;
        assert_eq!(metric_value(&mut client, &first).await.unwrap(), 2);
        let status = client.is_active(other_schema.clone()).await.unwrap_err();
        assert_eq!(status.code(), Code::ResourceExhausted, "{setting}");
        assert!(status.message().contains(setting), "{}", status.message());
        assert_eq!(metric_value(&mut client, &first).await.unwrap(), 2);
        let (_, text) = common::http_get(scaler.http_addr, "/metrics").await;
        assert!(
            text.contains("pg_queue_scaler_cap_in_use{cap=\"sources\"} 1"),
            "{text}"
        );
        assert!(text.contains("pg_queue_scaler_cap_in_use{cap=\"database_connections\"} 2"));
        scaler.stop().await.unwrap();
    }
}

/// Streams are capped overall and per connection; a released stream frees its slot.
#[tokio::test]
async fn streams_are_capped_overall_and_per_connection() {
    let (_server, url, scaler) = start().await;
    scaler.stop().await.unwrap();
    let trigger = scaled_object("w", &[("queue", "q")]);
    let scaler = TestScaler::start(&[
        ("PGQS_DATABASE_URL", url.as_str()),
        ("PGQS_MAX_STREAMS", "2"),
        ("PGQS_MAX_STREAMS_PER_CONNECTION", "1"),
    ])
    .await;
    let mut one = scaler.client().await;
    let mut two = scaler.client().await;
    let mut first = open_stream(&mut one, &trigger).await;
    assert!(next_activity(&mut first).await);
    let status = one.stream_is_active(trigger.clone()).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert!(status.message().contains("max_streams_per_connection"));
    let mut second = open_stream(&mut two, &trigger).await;
    assert!(next_activity(&mut second).await);
    let mut three = scaler.client().await;
    let status = three.stream_is_active(trigger.clone()).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert!(status.message().contains("(max_streams)"));
    drop(first);
    common::eventually(
        "the released slot to be free",
        Duration::from_secs(5),
        || {
            let mut three = three.clone();
            let trigger = trigger.clone();
            async move { three.stream_is_active(trigger).await.is_ok() }
        },
    )
    .await;
    drop(second);
    scaler.stop().await.unwrap();
}

/// Calls beyond `max_concurrent_calls` are ResourceExhausted while the slots are held
/// (here by a call waiting for the first read of a database that accepts connections and
/// never answers).
#[tokio::test]
async fn concurrent_calls_are_capped() {
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = silent.local_addr().unwrap().port();
    let holding = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
        }
    });
    let unreachable = format!("postgres://scaler:pw@127.0.0.1:{port}/nothing");
    let scaler = TestScaler::start(&[
        ("PGQS_DATABASE_URL", unreachable.as_str()),
        ("PGQS_MAX_CONCURRENT_CALLS", "1"),
        ("PGQS_FIRST_READ_TIMEOUT", "3s"),
    ])
    .await;
    let client = scaler.client().await;
    let trigger = scaled_object("w", &[("queue", "q"), ("workerConcurrency", "1")]);
    let waiting = {
        let mut client = client.clone();
        let trigger = trigger.clone();
        tokio::spawn(async move { client.is_active(trigger).await })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let status = client.clone().is_active(trigger.clone()).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert!(status.message().contains("max_concurrent_calls"));
    let first = waiting.await.unwrap().unwrap_err();
    assert_eq!(first.code(), Code::Unavailable);
    scaler.stop().await.unwrap();
    holding.abort();
}
