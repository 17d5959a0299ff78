//! N ScaledObjects on one database cost it one statement per refresh tick, not N: counted
//! on the server with pg_stat_statements.

mod common;

use std::time::{Duration, Instant};

use common::{Fixture, Server, TestScaler, Workflows, metric_value, scaled_object};

const TRIGGERS: usize = 200;

/// 200 triggers (distinct ScaledObjects and queues) polled concurrently for several ticks
/// run the counting statement at most once per tick.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_triggers_share_one_statement_per_tick() {
    let server = Server::from_env_or_private();
    let url = server.dbos_database(Fixture::Py340).await;
    let mut rows = Workflows::new(&url, Fixture::Py340).await;
    for queue in 0..TRIGGERS {
        rows.register_queue(&format!("queue-{queue}"), Some(2))
            .await;
        rows.enqueue(&format!("queue-{queue}"), (queue % 5) as u32, None)
            .await;
    }
    rows.client()
        .batch_execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        .await
        .unwrap();

    let interval = Duration::from_millis(500);
    let scaler = TestScaler::start(&[
        ("PGQS_DATABASE_URL", url.as_str()),
        ("PGQS_REFRESH_INTERVAL", "500ms"),
    ])
    .await;
    let triggers: Vec<_> = (0..TRIGGERS)
        .map(|i| {
            let queue = format!("queue-{i}");
            scaled_object(
                &format!("so-{i}"),
                &[("queue", queue.as_str()), ("workerConcurrency", "2")],
            )
        })
        .collect();
    // Warm up (first read, discovery), then count from a clean slate.
    let mut client = scaler.client().await;
    assert_eq!(metric_value(&mut client, &triggers[4]).await.unwrap(), 2);
    rows.client()
        .batch_execute("SELECT pg_stat_statements_reset()")
        .await
        .unwrap();

    let started = Instant::now();
    let mut rounds = 0;
    while started.elapsed() < Duration::from_secs(3) {
        let mut calls = tokio::task::JoinSet::new();
        for (i, trigger) in triggers.iter().enumerate() {
            let mut client = client.clone();
            let trigger = trigger.clone();
            calls.spawn(async move {
                let value = metric_value(&mut client, &trigger).await.unwrap();
                assert_eq!(value, ((i % 5) as i64 + 1) / 2, "queue-{i}");
                client.is_active(trigger).await.unwrap();
            });
        }
        while let Some(call) = calls.join_next().await {
            call.expect("every call succeeds");
        }
        rounds += 1;
    }
    let elapsed = started.elapsed();
    let statements: i64 = rows
        .client()
        .query_one(
            "SELECT coalesce(sum(calls), 0)::bigint FROM pg_stat_statements \
             WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) \
             AND query LIKE '%UNION ALL%' AND query LIKE '%workflow_status%'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let ticks = (elapsed.as_secs_f64() / interval.as_secs_f64()).ceil() as i64 + 1;
    eprintln!(
        "{rounds} rounds of {TRIGGERS} triggers in {elapsed:?}: {statements} statements, \
         at most {ticks} ticks"
    );
    assert!(rounds >= 1);
    assert!(statements >= 1, "the database was read while in use");
    assert!(
        statements <= ticks,
        "{statements} statements for {ticks} ticks"
    );
    scaler.stop().await.unwrap();
}

/// Sessions are named `pg-queue-scaler`; a database nobody asks about stops being read and
/// its pool is closed (here a connectionFromEnv URL, pooled per distinct URL).
#[tokio::test]
async fn idle_sources_stop_reading_and_close_their_connections() {
    let server = Server::from_env_or_private();
    let url = server.dbos_database(Fixture::Py340).await;
    let rows = Workflows::new(&url, Fixture::Py340).await;
    rows.register_queue("q", None).await;
    let scaler = TestScaler::start(&[
        ("PGQS_REFRESH_INTERVAL", "200ms"),
        ("PGQS_IDLE_AFTER", "1s"),
    ])
    .await;
    let mut client = scaler.client().await;
    let trigger = scaled_object(
        "w",
        &[
            ("queue", "q"),
            ("workerConcurrency", "1"),
            ("connectionFromEnv", url.as_str()),
        ],
    );
    assert_eq!(metric_value(&mut client, &trigger).await.unwrap(), 0);
    let sessions = || async {
        rows.client()
            .query_one(
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE application_name = 'pg-queue-scaler' AND datname = current_database()",
                &[],
            )
            .await
            .unwrap()
            .get::<_, i64>(0)
    };
    let open = sessions().await;
    assert!(
        (1..=2).contains(&open),
        "a small pool is open while in use: {open}"
    );
    common::eventually(
        "the idle pool to close",
        Duration::from_secs(10),
        || async { sessions().await == 0 },
    )
    .await;
    // Asking again starts reading again.
    assert_eq!(metric_value(&mut client, &trigger).await.unwrap(), 0);
    assert!(sessions().await >= 1);
    scaler.stop().await.unwrap();
}
