//! Benchmarks, reported in `benches/REPORT.md`:
//!
//! 1. The counting statement on a DBOS table with many finished workflows, against the
//!    usual alternative (a bound status list that includes `DELAYED`), to show why the
//!    statuses are SQL literals.
//! 2. `GetMetrics` served from snapshots to 200 triggers at once over loopback: latency,
//!    throughput, and how many statements Postgres ran meanwhile.
//!
//! `cargo bench --bench scaler` runs the full sizes and prints a Markdown report. Without
//! `--bench` (as `cargo test --all-targets` runs it) it runs small sizes as a smoke test.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::{Fixture, Server, TestScaler, metric_value, scaled_object};
use pg_queue_scaler::grpc::proto::GetMetricsRequest;

struct Sizes {
    finished: i64,
    enqueued: i64,
    queues: i64,
    repetitions: usize,
    load: Duration,
}

const FULL: Sizes = Sizes {
    finished: 2_000_000,
    enqueued: 20_000,
    queues: 200,
    repetitions: 30,
    load: Duration::from_secs(5),
};
const SMOKE: Sizes = Sizes {
    finished: 20_000,
    enqueued: 2_000,
    queues: 200,
    repetitions: 3,
    load: Duration::from_millis(500),
};

fn main() {
    let full = std::env::args().any(|arg| arg == "--bench");
    let sizes = if full { FULL } else { SMOKE };
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(run(sizes));
}

async fn run(sizes: Sizes) {
    let server = Server::from_env_or_private();
    let url = server.dbos_database(Fixture::Py340).await;
    let db = common::postgres::connect(&url).await;
    let started = Instant::now();
    fill(&db, &sizes).await;
    println!("## Setup\n");
    println!(
        "DBOS 3.4.0 schema; {} finished workflows, {} ENQUEUED over {} queues, 200 PENDING, \
         100 DELAYED (half due); filled and analysed in {:.1}s.\n",
        sizes.finished,
        sizes.enqueued,
        sizes.queues,
        started.elapsed().as_secs_f64()
    );

    let layout = pg_queue_scaler::systems::dbos::discover(&db, "dbos")
        .await
        .expect("discover");
    let literal = time_statement(&db, &layout.statement, &[], sizes.repetitions).await;
    db.batch_execute("SET plan_cache_mode = force_generic_plan")
        .await
        .unwrap();
    let statuses = vec!["ENQUEUED", "PENDING", "DELAYED"];
    let bound = time_statement(
        &db,
        "SELECT queue_name, count(*) FROM dbos.workflow_status \
         WHERE status = ANY($1) AND queue_name IS NOT NULL GROUP BY queue_name",
        &[&statuses],
        sizes.repetitions,
    )
    .await;
    db.batch_execute("RESET plan_cache_mode").await.unwrap();
    let plan = db
        .query(&format!("EXPLAIN {}", layout.statement), &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get::<_, String>(0))
        .filter(|line| line.contains("Scan"))
        .map(|line| line.trim().trim_start_matches("->").trim().to_owned())
        .collect::<Vec<_>>();
    println!(
        "## 1. The counting statement ({} runs each)\n",
        sizes.repetitions
    );
    println!("| statement | median | p90 |\n| --- | --- | --- |");
    println!(
        "| scaler's (literal statuses, UNION ALL of arms) | {} | {} |",
        ms(literal.0),
        ms(literal.1)
    );
    println!(
        "| bound list `status = ANY($1)` incl. DELAYED, generic plan | {} | {} |\n",
        ms(bound.0),
        ms(bound.1)
    );
    println!("Scans in the scaler's plan:\n");
    for line in plan {
        println!("- `{line}`");
    }

    db.batch_execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        .await
        .unwrap();
    let scaler = TestScaler::start(&[("PGQS_DATABASE_URL", url.as_str())]).await;
    let client = scaler.client().await;
    let triggers: Vec<_> = (0..200)
        .map(|i| {
            let queue = format!("queue-{}", i % sizes.queues);
            scaled_object(
                &format!("so-{i}"),
                &[("queue", queue.as_str()), ("workerConcurrency", "10")],
            )
        })
        .collect();
    let mut warm = client.clone();
    metric_value(&mut warm, &triggers[0])
        .await
        .expect("warm up");
    db.batch_execute("SELECT pg_stat_statements_reset()")
        .await
        .unwrap();
    let load_started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for trigger in triggers {
        let mut client = client.clone();
        let load = sizes.load;
        tasks.spawn(async move {
            let spec = client
                .get_metric_spec(trigger.clone())
                .await
                .unwrap()
                .into_inner();
            let metric_name = spec.metric_specs[0].metric_name.clone();
            let mut latencies = Vec::new();
            while load_started.elapsed() < load {
                let request = GetMetricsRequest {
                    scaled_object_ref: Some(trigger.clone()),
                    metric_name: metric_name.clone(),
                };
                let sent = Instant::now();
                client.get_metrics(request).await.expect("GetMetrics");
                latencies.push(sent.elapsed());
            }
            latencies
        });
    }
    let mut latencies = Vec::new();
    while let Some(done) = tasks.join_next().await {
        latencies.extend(done.expect("load task"));
    }
    let elapsed = load_started.elapsed();
    let statements: i64 = db
        .query_one(
            "SELECT coalesce(sum(calls), 0)::bigint FROM pg_stat_statements \
             WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) \
             AND query LIKE '%UNION ALL%'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    scaler.stop().await.unwrap();
    latencies.sort();
    let quantile = |q: f64| latencies[((latencies.len() as f64 - 1.0) * q) as usize];
    println!(
        "\n## 2. GetMetrics from snapshots, 200 concurrent triggers, {:.1}s\n",
        elapsed.as_secs_f64()
    );
    println!(
        "| calls | calls/s | p50 | p99 | max | statements run by Postgres |\n| --- | --- | --- | --- | --- | --- |"
    );
    println!(
        "| {} | {:.0} | {} | {} | {} | {} |",
        latencies.len(),
        latencies.len() as f64 / elapsed.as_secs_f64(),
        ms(quantile(0.5)),
        ms(quantile(0.99)),
        ms(*latencies.last().unwrap()),
        statements
    );
}

/// Fills the schema with finished history and in-flight work, the way DBOS leaves it.
async fn fill(db: &tokio_postgres::Client, sizes: &Sizes) {
    let insert = |status: &str, count: i64, extra: &str| {
        format!(
            "INSERT INTO dbos.workflow_status (workflow_uuid, status, name, queue_name, \
             application_name, created_at, updated_at, completed_at, delay_until_epoch_ms) \
             SELECT '{status}-' || i, '{status}', 'work', 'queue-' || (i % {queues}), 'app', \
             1700000000000 + i, 1700000000000 + i, {extra} \
             FROM generate_series(1, {count}) AS i",
            queues = sizes.queues
        )
    };
    db.batch_execute(&insert(
        "SUCCESS",
        sizes.finished,
        "1700000000000 + i, NULL",
    ))
    .await
    .unwrap();
    db.batch_execute(&insert("ENQUEUED", sizes.enqueued, "NULL, NULL"))
        .await
        .unwrap();
    db.batch_execute(&insert("PENDING", 200, "NULL, NULL"))
        .await
        .unwrap();
    db.batch_execute(&insert(
        "DELAYED",
        100,
        "NULL, (extract(epoch FROM now()) * 1000)::bigint + CASE WHEN i % 2 = 0 THEN -1000 ELSE 3600000 END",
    ))
    .await
    .unwrap();
    db.batch_execute("VACUUM ANALYZE dbos.workflow_status")
        .await
        .unwrap();
}

/// Median and 90th percentile of `repetitions` runs (after one warm-up run).
async fn time_statement(
    db: &tokio_postgres::Client,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    repetitions: usize,
) -> (Duration, Duration) {
    let statement = db.prepare(sql).await.unwrap();
    let mut runs = Vec::with_capacity(repetitions);
    for attempt in 0..=repetitions {
        let started = Instant::now();
        db.query(&statement, params).await.unwrap();
        if attempt > 0 {
            runs.push(started.elapsed());
        }
    }
    runs.sort();
    (runs[runs.len() / 2], runs[(runs.len() * 9) / 10])
}

fn ms(duration: Duration) -> String {
    format!("{:.2} ms", duration.as_secs_f64() * 1000.0)
}
