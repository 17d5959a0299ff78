//! What an operator relies on: health (gRPC and HTTP), readiness during shutdown, bounded
//! shutdown and calls, Prometheus metrics, and access rules.

mod common;

use std::time::{Duration, Instant};

use common::{
    Fixture, Server, TestScaler, Workflows, http_get, metric_sample, metric_value, scaled_object,
};
use tokio_stream::StreamExt;
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

async fn health(
    client: &mut HealthClient<tonic::transport::Channel>,
    service: &str,
) -> Result<ServingStatus, tonic::Status> {
    let response = client
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await?
        .into_inner();
    Ok(ServingStatus::try_from(response.status).expect("a known status"))
}

/// Liveness and readiness are SERVING while running. When shutdown begins, readiness (gRPC
/// and HTTP) turns NOT_SERVING while the listeners still answer, liveness stays SERVING,
/// and then the server stops.
#[tokio::test]
async fn readiness_drops_before_the_listeners_close() {
    let mut scaler = TestScaler::start(&[("PGQS_DRAIN_DELAY", "1500ms")]).await;
    let mut client = HealthClient::new(scaler.channel().await);
    for service in ["", "liveness", "readiness", "externalscaler.ExternalScaler"] {
        assert_eq!(
            health(&mut client, service).await.unwrap(),
            ServingStatus::Serving,
            "{service:?}"
        );
    }
    assert_eq!(http_get(scaler.http_addr, "/healthz").await.0, 200);
    assert_eq!(http_get(scaler.http_addr, "/readyz").await.0, 200);
    assert_eq!(
        client
            .check(HealthCheckRequest {
                service: "nonexistent".into()
            })
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );

    scaler.begin_shutdown();
    common::eventually(
        "readiness to turn NOT_SERVING",
        Duration::from_secs(1),
        || {
            let mut client = client.clone();
            async move {
                let readiness = health(&mut client, "readiness").await.ok();
                readiness == Some(ServingStatus::NotServing)
            }
        },
    )
    .await;
    // Still answering during the drain delay: liveness is fine, HTTP readiness says 503.
    assert_eq!(
        health(&mut client, "liveness").await.unwrap(),
        ServingStatus::Serving
    );
    assert_eq!(http_get(scaler.http_addr, "/readyz").await.0, 503);
    assert_eq!(http_get(scaler.http_addr, "/healthz").await.0, 200);
    scaler.stop().await.unwrap();
}

/// A call that never ends on its own (a health Watch stream) cannot hold shutdown past the
/// configured grace period.
#[tokio::test]
async fn shutdown_is_bounded_by_the_grace_period() {
    let mut scaler = TestScaler::start(&[("PGQS_SHUTDOWN_GRACE_PERIOD", "2s")]).await;
    let mut client = HealthClient::new(scaler.channel().await);
    let mut watch = client
        .watch(HealthCheckRequest {
            service: "liveness".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(watch.next().await.is_some());
    let started = Instant::now();
    scaler.begin_shutdown();
    scaler.stop().await.unwrap();
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(1500),
        "the open call was given its grace: {took:?}"
    );
    assert!(
        took < Duration::from_secs(4),
        "shutdown took {took:?} with a 2s grace period"
    );
}

/// A database that accepts connections but never answers cannot hold a call: KEDA gets
/// Unavailable within the first-read bound (its HPA path allows 3s for all calls together).
#[tokio::test]
async fn calls_are_bounded_when_the_database_hangs() {
    let blackhole = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = blackhole.local_addr().unwrap().port();
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = blackhole.accept().await {
            open.push(socket); // never answer
        }
    });
    let url = format!("postgres://u:pw@127.0.0.1:{port}/db");
    let scaler = TestScaler::start(&[("PGQS_DATABASE_URL", url.as_str())]).await;
    let mut client = scaler.client().await;
    let trigger = scaled_object("w", &[("queue", "q"), ("workerConcurrency", "1")]);
    let started = Instant::now();
    let status = client.is_active(trigger).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert!(
        started.elapsed() < Duration::from_millis(2900),
        "{:?}",
        started.elapsed()
    );
    scaler.stop().await.unwrap();
    held.abort();
}

/// /metrics exposes RPCs by method and code, refreshes and snapshot age per database, and
/// per-queue gauges that match the rows; database labels are names, never URLs.
#[tokio::test]
async fn metrics_describe_rpcs_refreshes_and_queues() {
    let server = Server::from_env_or_private();
    let url = server.dbos_database(Fixture::Py340).await;
    let mut rows = Workflows::new(&url, Fixture::Py340).await;
    rows.register_queue("mailer", Some(2)).await;
    rows.enqueue("mailer", 5, None).await;
    rows.running("mailer", 2, None).await;
    rows.delayed("mailer", 1, -1_000).await;
    let url_with_password = url.replacen("postgres://postgres@", "postgres://postgres:hunter2@", 1);
    let scaler = TestScaler::start(&[("PGQS_DATABASE_URL", url_with_password.as_str())]).await;
    let mut client = scaler.client().await;
    let trigger = scaled_object("w", &[("queue", "mailer")]);
    assert_eq!(metric_value(&mut client, &trigger).await.unwrap(), 4);
    let _ = client
        .is_active(scaled_object(
            "w",
            &[("queue", "q"), ("workerConcurrency", "0")],
        ))
        .await;
    let _stream = client.stream_is_active(trigger).await.unwrap();

    let (status, text) = http_get(scaler.http_addr, "/metrics").await;
    assert_eq!(status, 200);
    // The labels of queue `mailer`'s series (a macro, for `concat!`).
    macro_rules! mailer_labels {
        () => {
            r#"{system="dbos",database="default",schema="dbos",queue="mailer"}"#
        };
    }
    for expected in [
        r#"pg_queue_scaler_grpc_requests_total{method="GetMetrics",code="OK"} 1"#,
        r#"pg_queue_scaler_grpc_requests_total{method="IsActive",code="InvalidArgument"} 1"#,
        concat!(
            "pg_queue_scaler_grpc_request_duration_seconds_bucket",
            r#"{le="+Inf",method="GetMetricSpec",code="OK"} 1"#,
        ),
        concat!("pg_queue_scaler_queue_enqueued", mailer_labels!(), " 5"),
        concat!("pg_queue_scaler_queue_pending", mailer_labels!(), " 2"),
        concat!("pg_queue_scaler_queue_delayed_due", mailer_labels!(), " 1"),
        concat!("pg_queue_scaler_queue_depth", mailer_labels!(), " 8"),
        concat!(
            "pg_queue_scaler_queue_desired_replicas",
            mailer_labels!(),
            " 4"
        ),
        "pg_queue_scaler_open_streams 1",
        "pg_queue_scaler_sources 1",
        r#"pg_queue_scaler_snapshot_age_seconds{system="dbos",database="default",schema="dbos"}"#,
        concat!(
            "pg_queue_scaler_refresh_duration_seconds_count",
            r#"{system="dbos",database="default",schema="dbos"}"#,
        ),
        r#"pg_queue_scaler_pool_connections{database="default",schema="dbos",state="in_use"}"#,
    ] {
        assert!(text.contains(expected), "missing {expected} in:\n{text}");
    }
    assert!(
        !text.contains("hunter2") && !text.contains("127.0.0.1"),
        "no URL in metrics"
    );
    scaler.stop().await.unwrap();
}

/// Failed reads are counted per database.
#[tokio::test]
async fn refresh_errors_are_counted() {
    let port = common::postgres::free_port();
    let url = format!("postgres://u:hunter2@127.0.0.1:{port}/db");
    let scaler = TestScaler::start(&[
        ("PGQS_DATABASE_URL", url.as_str()),
        ("PGQS_REFRESH_INTERVAL", "100ms"),
    ])
    .await;
    let mut client = scaler.client().await;
    let trigger = scaled_object("w", &[("queue", "q"), ("workerConcurrency", "1")]);
    assert_eq!(
        client.is_active(trigger).await.unwrap_err().code(),
        Code::Unavailable
    );
    let (_, text) = http_get(scaler.http_addr, "/metrics").await;
    let count = metric_sample(
        &text,
        concat!(
            "pg_queue_scaler_refresh_errors_total",
            r#"{system="dbos",database="default",schema="dbos"}"#,
        ),
    );
    assert!(count >= 1.0, "{count} refresh errors");
    assert!(!text.contains("hunter2"));
    scaler.stop().await.unwrap();
}

/// Operators can turn connectionFromEnv off or limit its hosts, and limit a named database
/// to namespaces; refusals are PermissionDenied with a reason, in every RPC.
#[tokio::test]
async fn access_rules_are_enforced() {
    let server = Server::from_env_or_private();
    let url = server.dbos_database(Fixture::Py340).await;
    Workflows::new(&url, Fixture::Py340)
        .await
        .register_queue("q", None)
        .await;
    let config = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        config.path(),
        "connection_from_env_allowed_hosts: [db.internal]\n\
         databases:\n  orders:\n    allowed_namespaces: [shop]\n",
    )
    .unwrap();
    let scaler = TestScaler::start(&[
        ("PGQS_CONFIG", config.path().to_str().unwrap()),
        ("PGQS_DATABASES__ORDERS__URL", url.as_str()),
    ])
    .await;
    let mut client = scaler.client().await;

    let mut orders = scaled_object(
        "w",
        &[
            ("queue", "q"),
            ("database", "orders"),
            ("workerConcurrency", "1"),
        ],
    );
    orders.namespace = "shop".into();
    assert_eq!(metric_value(&mut client, &orders).await.unwrap(), 0);
    orders.namespace = "elsewhere".into();
    for status in [
        client.get_metric_spec(orders.clone()).await.unwrap_err(),
        client.is_active(orders.clone()).await.unwrap_err(),
        client.stream_is_active(orders.clone()).await.unwrap_err(),
    ] {
        assert_eq!(status.code(), Code::PermissionDenied);
        assert_eq!(
            status.message(),
            r#"database "orders" may not be used from namespace "elsewhere""#
        );
    }

    let from_env = scaled_object("w", &[("queue", "q"), ("connectionFromEnv", url.as_str())]);
    let status = client.is_active(from_env).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert!(
        status.message().contains("127.0.0.1:"),
        "{}",
        status.message()
    );
    scaler.stop().await.unwrap();

    let scaler = TestScaler::start(&[("PGQS_CONNECTION_FROM_ENV_ENABLED", "false")]).await;
    let mut client = scaler.client().await;
    let from_env = scaled_object("w", &[("queue", "q"), ("connectionFromEnv", url.as_str())]);
    let status = client.get_metric_spec(from_env).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert!(
        status.message().contains("disabled"),
        "{}",
        status.message()
    );
    scaler.stop().await.unwrap();
}
