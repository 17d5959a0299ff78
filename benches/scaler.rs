//! Benchmarks, reported in `benches/REPORT.md`:
//!
//! 1. The refresh statement, timed through `pg_queue_scaler::systems::dbos::read` on a
//!    pooled connection (the scaler's own parameter building and row mapping), on a DBOS
//!    table with many finished workflows, in-flight work over two application versions and
//!    a partitioned queue with many partitions; for one default scope and for four scopes
//!    (versions, `latest` with a lookahead, an application). Against it: the usual
//!    alternative count (a bound status list that includes `DELAYED`), to show why the
//!    statuses are SQL literals, and optionally a previous build's statement on the same
//!    data (`PGQS_BENCH_BEFORE_STATEMENT`, below). The scans of each plan, from
//!    `EXPLAIN (ANALYZE, BUFFERS)`, show which of DBOS's indexes serve it.
//! 2. `GetMetrics` served from snapshots to 200 triggers at once over loopback: latency,
//!    throughput, and how many statements Postgres ran meanwhile.
//!
//! `cargo bench --bench scaler` runs the full sizes and prints a Markdown report. Without
//! `--bench` (as `cargo test --all-targets` runs it) it runs small sizes as a smoke test.
//!
//! `PGQS_BENCH_BEFORE_STATEMENT=<file>`: a parameterless statement (the refresh statement of
//! the build before application versions, written out by that build's benchmark) timed in the
//! same rounds, on the same data and session as the current one.
//!
//! `PGQS_BENCH_WRITE_STATEMENTS=<dir>` writes this build's statements for (a) and (b) to
//! `<dir>/default.sql` and `<dir>/four-scopes.sql`; `PGQS_BENCH_EARLIER_STATEMENTS=<dir>` reads
//! an earlier build's (they take the same four parameters) and times them in the same rounds
//! against this build's, both run bare on the same session, and prints the ratios.

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::{Fixture, Server, TestScaler, metric_value, scaled_object};
use pg_queue_scaler::connection_url::ConnectionUrl;
use pg_queue_scaler::database::{PoolSettings, build_pool};
use pg_queue_scaler::grpc::proto::GetMetricsRequest;
use pg_queue_scaler::systems::Reading;
use pg_queue_scaler::systems::ScopeRequest;
use pg_queue_scaler::systems::dbos::{counting_statement, read};
use pg_queue_scaler::trigger::{Scope, Trigger, VersionFilter};
use tokio_postgres::types::{ToSql, Type};

struct Sizes {
    finished: i64,
    enqueued: i64,
    queues: i64,
    partitions: i64,
    partitioned: i64,
    repetitions: usize,
    load: Duration,
}

const FULL: Sizes = Sizes {
    finished: 2_000_000,
    enqueued: 20_000,
    queues: 200,
    partitions: 10_000,
    partitioned: 20_000,
    repetitions: 50,
    load: Duration::from_secs(5),
};
const SMOKE: Sizes = Sizes {
    finished: 20_000,
    enqueued: 2_000,
    queues: 200,
    partitions: 100,
    partitioned: 200,
    repetitions: 3,
    load: Duration::from_millis(500),
};

/// Rounds run before the timed ones: caches are warm, and the prepared statements compared
/// with the scaler's are past Postgres's first five custom plans.
const WARM_UP: usize = 6;

/// The partitioned queue.
const PARTITIONED: &str = "partitioned";

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

/// The trigger keys of the four scopes: default; a pinned version; the latest version with a
/// lookahead; an application and a version.
const FOUR_SCOPES: [&[(&str, &str)]; 4] = [
    &[],
    &[("applicationVersion", "v1")],
    &[
        ("applicationVersion", "latest"),
        ("delayedLookahead", "60s"),
    ],
    &[("applicationName", "app"), ("applicationVersion", "v2")],
];

/// The scope of a trigger with `keys`, as the scaler parses it.
fn scope(keys: &[(&str, &str)]) -> Scope {
    let metadata: HashMap<String, String> = [("queue", "queue-0")]
        .iter()
        .chain(keys)
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect();
    Trigger::parse(&metadata).expect("a valid trigger").scope
}

async fn run(sizes: Sizes) {
    let server = Server::from_env_or_private();
    let url = server.dbos_database(Fixture::Py340).await;
    let db = common::postgres::connect(&url).await;
    let started = Instant::now();
    fill(&db, &sizes).await;
    println!("## Setup\n");
    println!(
        "DBOS 3.4.0 schema, versions `v1` (a day old) and `v2` (an hour old, the latest) \
         registered for application `app`; {finished} finished workflows; {enqueued} ENQUEUED \
         over {queues} queues, 200 PENDING, 100 DELAYED (half due, a quarter due in 50s, a \
         quarter in 1h); \
         queue `{PARTITIONED}` (`partition_concurrency` 1, `worker_concurrency` 10) with \
         {partitioned} ENQUEUED over {partitions} partition keys, {pending} PENDING (one in \
         each of the first {pending} partitions), 100 keyed DELAYED (as above). In-flight \
         rows: half version-less, a quarter `v1`, a quarter `v2`; PENDING rows carry the \
         claimant's `v1` or `v2`. Filled and analysed in {seconds:.1}s.\n",
        finished = sizes.finished,
        enqueued = sizes.enqueued,
        queues = sizes.queues,
        partitioned = sizes.partitioned,
        partitions = sizes.partitions,
        pending = sizes.partitions / 10,
        seconds = started.elapsed().as_secs_f64()
    );

    let layout = pg_queue_scaler::systems::dbos::discover(&db, "dbos")
        .await
        .expect("discover");
    let before = std::env::var_os("PGQS_BENCH_BEFORE_STATEMENT").map(|path| {
        std::fs::read_to_string(&path)
            .unwrap_or_else(|error| panic!("read {}: {error}", path.to_string_lossy()))
    });
    let pool = build_pool(
        &ConnectionUrl::parse(&url).expect("a valid URL"),
        &PoolSettings {
            max_size: 1,
            statement_timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(10),
        },
    )
    .expect("pool");
    let client = pool.get().await.expect("a pooled connection");
    let cases = [
        // A regular queue: its partitions are not counted.
        Case::new(
            "(a) default scope only",
            "default.sql",
            vec![scope(&[])],
            false,
        ),
        // The worst case: every scope's triggers on the partitioned queue too.
        Case::new(
            "(b) four scopes, partitions counted for each",
            "four-scopes.sql",
            FOUR_SCOPES.map(scope).to_vec(),
            true,
        ),
        // One Deployment on the partitioned queue, no versions.
        Case::new(
            "(c) default scope, partitions counted",
            "default-partitioned.sql",
            vec![scope(&[])],
            true,
        ),
    ];
    let statements: Vec<String> = cases
        .iter()
        .map(|case| counting_statement(&layout, &case.requests))
        .collect();
    if let Some(dir) = std::env::var_os("PGQS_BENCH_WRITE_STATEMENTS") {
        for (case, sql) in cases.iter().zip(&statements) {
            let path = std::path::Path::new(&dir).join(case.file);
            std::fs::write(&path, sql)
                .unwrap_or_else(|error| panic!("write {}: {error}", path.display()));
        }
    }
    // An earlier build's statements, each timed bare right after this build's, so that
    // neither carries the other's overhead (the transaction `read()` wraps around it).
    let earlier: Vec<(String, String)> = match std::env::var_os("PGQS_BENCH_EARLIER_STATEMENTS") {
        Some(dir) => cases
            .iter()
            .zip(&statements)
            .map(|(case, sql)| {
                let path = std::path::Path::new(&dir).join(case.file);
                let earlier = std::fs::read_to_string(&path)
                    .unwrap_or_else(|error| panic!("read {}: {error}", path.display()));
                (sql.clone(), earlier)
            })
            .collect(),
        None => Vec::new(),
    };
    let bound_sql = "SELECT queue_name, count(*) FROM dbos.workflow_status \
         WHERE status = ANY($1) AND queue_name IS NOT NULL GROUP BY queue_name";
    let statuses = vec!["ENQUEUED", "PENDING", "DELAYED"];
    db.batch_execute("SET plan_cache_mode = force_generic_plan")
        .await
        .unwrap();
    let bound = db.prepare(bound_sql).await.unwrap();
    let before_statement = match &before {
        Some(sql) => Some(client.prepare_cached(sql).await.expect("prepare before")),
        None => None,
    };
    // One round runs each statement once, so that a disturbance on the shared machine
    // hits every statement alike rather than one of them.
    let mut read_runs = vec![Vec::new(); cases.len()];
    let mut bound_runs = Vec::new();
    let mut before_runs = Vec::new();
    let mut lower_bound_runs = Vec::new();
    let mut earlier_runs = vec![(Vec::new(), Vec::new()); earlier.len()];
    let mut reading = Reading::default();
    for round in 0..WARM_UP + sizes.repetitions {
        let past_warm_up = round >= WARM_UP;
        for (index, case) in cases.iter().enumerate() {
            let started = Instant::now();
            let read_now = read(&client, &layout, &case.requests)
                .await
                .unwrap_or_else(|error| panic!("read, {}: {error}", case.label));
            record(past_warm_up, &mut read_runs[index], started);
            if round == 0 && index == 1 {
                reading = read_now;
            }
        }
        let started = Instant::now();
        db.query(&bound, &[&statuses]).await.unwrap();
        record(past_warm_up, &mut bound_runs, started);
        if let Some(statement) = &before_statement {
            let started = Instant::now();
            client.query(statement, &[]).await.expect("before");
            record(past_warm_up, &mut before_runs, started);
        }
        let started = Instant::now();
        client
            .query_typed(LOWER_BOUND, &[])
            .await
            .expect("lower bound");
        record(past_warm_up, &mut lower_bound_runs, started);
        for ((case, (now, earlier)), (now_runs, earlier_runs)) in
            cases.iter().zip(&earlier).zip(&mut earlier_runs)
        {
            let typed = case.arrays.typed();
            for (sql, runs) in [(now, now_runs), (earlier, earlier_runs)] {
                let started = Instant::now();
                client
                    .query_typed(sql, &typed)
                    .await
                    .unwrap_or_else(|error| panic!("bare, {}: {error}", case.label));
                record(past_warm_up, runs, started);
            }
        }
    }
    db.batch_execute("RESET plan_cache_mode").await.unwrap();
    let read_times: Vec<_> = read_runs.into_iter().map(timed).collect();
    let bound_time = timed(bound_runs);
    let before_time = quantiles(before_runs);
    let lower_bound_time = timed(lower_bound_runs);

    println!(
        "## 1. The refresh statement ({} rounds, each statement once per round, after \
         {WARM_UP} warm-up rounds)\n",
        sizes.repetitions
    );
    println!("| statement | median | p90 |\n| --- | --- | --- |");
    for (case, (median, p90)) in cases.iter().zip(&read_times) {
        println!(
            "| scaler's, {}: `read()` | {} | {} |",
            case.label,
            ms(*median),
            ms(*p90)
        );
    }
    if let Some((median, p90)) = before_time {
        println!(
            "| previous build's statement (`PGQS_BENCH_BEFORE_STATEMENT`), same data and \
             session | {} | {} |",
            ms(median),
            ms(p90)
        );
    }
    println!(
        "| lower bound: in-flight work per queue, status and application (index only), and \
         per partition (index only), nothing else | {} | {} |",
        ms(lower_bound_time.0),
        ms(lower_bound_time.1)
    );
    println!(
        "| bound list `status = ANY($1)` incl. DELAYED, generic plan | {} | {} |\n",
        ms(bound_time.0),
        ms(bound_time.1)
    );
    if let Some((before_median, _)) = before_time {
        let ratios: Vec<String> = cases
            .iter()
            .zip(&read_times)
            .map(|(case, (median, _))| {
                format!("{} {:.2}x", case.label, ratio(*median, before_median))
            })
            .collect();
        println!(
            "Median ratio to the previous statement: {}; lower bound {:.2}x.\n",
            ratios.join(", "),
            ratio(lower_bound_time.0, before_median)
        );
    }
    if !earlier_runs.is_empty() {
        println!(
            "This build's statements against the earlier build's \
             (`PGQS_BENCH_EARLIER_STATEMENTS`), both run bare in the same rounds:\n"
        );
        println!(
            "| statement | this build: median (p90) | earlier build: median (p90) | ratio of \
             medians |\n| --- | --- | --- | --- |"
        );
        for (case, (now, earlier)) in cases.iter().zip(earlier_runs) {
            let (now, earlier) = (timed(now), timed(earlier));
            println!(
                "| {} | {} ({}) | {} ({}) | {:.2}x |",
                case.label,
                ms(now.0),
                ms(now.1),
                ms(earlier.0),
                ms(earlier.1),
                ratio(now.0, earlier.0)
            );
        }
        println!();
    }

    println!("What the four scopes see (first round):\n");
    println!(
        "| scope | depth over the {} queues | `{PARTITIONED}`: depth | runnable (sum of \
         per-partition caps) | busiest partition |\n| --- | --- | --- | --- | --- |",
        sizes.queues
    );
    for scope in &cases[1].scopes {
        let loads = &reading.scopes[scope];
        let regular: u64 = loads
            .iter()
            .filter(|(queue, _)| queue.as_str() != PARTITIONED)
            .map(|(_, load)| load.counts.depth())
            .sum();
        let partitioned = loads.get(PARTITIONED).copied().unwrap_or_default();
        let partitions = partitioned.partitions.unwrap_or_default();
        println!(
            "| {} | {regular} | {} | {} | {} |",
            describe(scope),
            partitioned.counts.depth(),
            partitions.runnable,
            partitions.busiest
        );
    }

    let mut plans = Vec::new();
    for (case, sql) in cases.iter().zip(&statements) {
        let plan = explain(&db, sql, &case.arrays.as_params()).await;
        println!(
            "\nScans in the scaler's plan, {} (`EXPLAIN (ANALYZE, BUFFERS)`):\n",
            case.label
        );
        print_scans(&plan);
        plans.push(plan);
    }
    if let Some(sql) = &before {
        let plan = explain(&db, sql, &[]).await;
        println!("\nScans in the previous build's plan, same data:\n");
        print_scans(&plan);
    }
    println!(
        "\n<details><summary>The whole plan, {}</summary>\n\n```\n{}\n```\n</details>",
        cases[1].label,
        plans[1].join("\n")
    );
    drop(client);

    db.batch_execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        .await
        .unwrap();
    let scaler = TestScaler::start(&[("PGQS_DATABASE_URL", url.as_str())]).await;
    let grpc = scaler.client().await;
    // Every tenth trigger watches the partitioned queue; the triggers' scopes cycle through
    // the four of section 1.
    let triggers: Vec<_> = (0..200_usize)
        .map(|i| {
            let queue = if i % 10 == 9 {
                PARTITIONED.to_owned()
            } else {
                format!("queue-{}", i as i64 % sizes.queues)
            };
            let mut metadata = vec![("queue", queue.as_str()), ("workerConcurrency", "10")];
            metadata.extend_from_slice(FOUR_SCOPES[i % 4]);
            scaled_object(&format!("so-{i}"), &metadata)
        })
        .collect();
    let mut warm = grpc.clone();
    for trigger in &triggers[..4] {
        metric_value(&mut warm, trigger).await.expect("warm up");
    }
    db.batch_execute("SELECT pg_stat_statements_reset()")
        .await
        .unwrap();
    let load_started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for trigger in triggers {
        let mut grpc = grpc.clone();
        let load = sizes.load;
        tasks.spawn(async move {
            let spec = grpc
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
                grpc.get_metrics(request).await.expect("GetMetrics");
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
        "\n## 2. GetMetrics from snapshots, 200 concurrent triggers (four scopes, two queue \
         kinds), {:.1}s\n",
        elapsed.as_secs_f64()
    );
    println!(
        "| calls | calls/s | p50 | p99 | max | statements run by Postgres |\n\
         | --- | --- | --- | --- | --- | --- |"
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
    db.batch_execute(&format!(
        "INSERT INTO dbos.application_versions (version_id, version_name, version_timestamp, \
         application_name) VALUES \
         ('v1', 'v1', (extract(epoch FROM now()) * 1000)::bigint - 86400000, 'app'), \
         ('v2', 'v2', (extract(epoch FROM now()) * 1000)::bigint - 3600000, 'app'); \
         INSERT INTO dbos.queues (name, worker_concurrency, application_name) \
         SELECT 'queue-' || i, 10, 'app' FROM generate_series(0, {last}) AS i; \
         INSERT INTO dbos.queues (name, worker_concurrency, partition_concurrency, \
         partition_queue, application_name) VALUES ('{PARTITIONED}', 10, 1, true, 'app')",
        last = sizes.queues - 1
    ))
    .await
    .unwrap();
    let now = "(extract(epoch FROM now()) * 1000)::bigint";
    let regular = format!("'queue-' || (i % {})", sizes.queues);
    let partitioned = format!("'{PARTITIONED}'");
    let key = format!("'p-' || (i % {})", sizes.partitions);
    // DBOSClient enqueues version-less work; a worker enqueues with its own version.
    let waiting_version = "CASE i % 4 WHEN 2 THEN 'v1' WHEN 3 THEN 'v2' END";
    // A worker claims work with its own version.
    let claimed_version = "CASE WHEN i % 2 = 0 THEN 'v1' ELSE 'v2' END";
    let waiting_application = "CASE WHEN i % 10 = 0 THEN NULL ELSE 'app' END";
    // Half due a second ago, a quarter due in 50s (inside a 60s lookahead), a quarter in an
    // hour.
    let due = format!("{now} + CASE i % 4 WHEN 2 THEN 50000 WHEN 3 THEN 3600000 ELSE -1000 END");
    let delayed_version = "CASE WHEN i % 2 = 0 THEN NULL ELSE 'v2' END";
    let history_queue = format!("CASE WHEN i % 10 = 0 THEN {partitioned} ELSE {regular} END");
    let history_key = format!("CASE WHEN i % 10 = 0 THEN {key} END");
    let created_now = format!("{now} - i");
    let created_before = format!("{now} - 60000 - i");
    let finished = Rows {
        label: "done",
        status: "SUCCESS",
        count: sizes.finished,
        queue: &history_queue,
        partition: &history_key,
        version: claimed_version,
        application: "'app'",
        created: "1700000000000 + i",
        completed: "1700000000000 + i",
        due: "NULL",
    };
    let groups = [
        finished,
        Rows {
            label: "waiting",
            status: "ENQUEUED",
            count: sizes.enqueued,
            queue: &regular,
            partition: "NULL",
            version: waiting_version,
            application: waiting_application,
            created: &created_now,
            completed: "NULL",
            due: "NULL",
        },
        Rows {
            label: "running",
            status: "PENDING",
            count: 200,
            queue: &regular,
            partition: "NULL",
            version: claimed_version,
            application: "'app'",
            created: &created_before,
            completed: "NULL",
            due: "NULL",
        },
        Rows {
            label: "p-waiting",
            status: "ENQUEUED",
            count: sizes.partitioned,
            queue: &partitioned,
            partition: &key,
            version: waiting_version,
            application: waiting_application,
            created: &created_now,
            completed: "NULL",
            due: "NULL",
        },
        Rows {
            label: "p-running",
            status: "PENDING",
            count: sizes.partitions / 10,
            queue: &partitioned,
            partition: &key,
            version: claimed_version,
            application: "'app'",
            created: &created_before,
            completed: "NULL",
            due: "NULL",
        },
        // Delayed rows last, so that those due "soon" are still in the future when timing starts.
        Rows {
            label: "later",
            status: "DELAYED",
            count: 100,
            queue: &regular,
            partition: "NULL",
            version: delayed_version,
            application: "'app'",
            created: &created_before,
            completed: "NULL",
            due: &due,
        },
        Rows {
            label: "p-later",
            status: "DELAYED",
            count: 100,
            queue: &partitioned,
            partition: &key,
            version: delayed_version,
            application: "'app'",
            created: &created_before,
            completed: "NULL",
            due: &due,
        },
    ];
    for rows in groups {
        db.batch_execute(&rows.insert()).await.unwrap();
    }
    // One statement per call: several in one string run as one transaction, which VACUUM
    // refuses.
    for analyse in [
        "VACUUM ANALYZE dbos.workflow_status",
        "ANALYZE dbos.queues",
        "ANALYZE dbos.application_versions",
    ] {
        db.batch_execute(analyse).await.unwrap();
    }
}

/// `count` workflow rows; every other field is an SQL expression of `i` (1 to `count`).
struct Rows<'a> {
    label: &'a str,
    status: &'a str,
    count: i64,
    queue: &'a str,
    partition: &'a str,
    version: &'a str,
    application: &'a str,
    created: &'a str,
    completed: &'a str,
    due: &'a str,
}

impl Rows<'_> {
    fn insert(&self) -> String {
        format!(
            "INSERT INTO dbos.workflow_status (workflow_uuid, status, name, queue_name, \
             queue_partition_key, application_version, application_name, created_at, \
             updated_at, completed_at, delay_until_epoch_ms) \
             SELECT '{label}-' || i, '{status}', 'work', {queue}, {partition}, {version}, \
             {application}, {created}, {created}, {completed}, {due} \
             FROM generate_series(1, {count}) AS i",
            label = self.label,
            status = self.status,
            queue = self.queue,
            partition = self.partition,
            version = self.version,
            application = self.application,
            created = self.created,
            completed = self.completed,
            due = self.due,
            count = self.count,
        )
    }
}

/// The statement's four array parameters for `scopes`, for `EXPLAIN` only (the timed runs go
/// through `read`, which builds them itself). Mirrors the crate's private
/// `ScopeParameters::of` in `src/systems/dbos/statement.rs`.
struct ScopeArrays {
    applications: Vec<Option<String>>,
    versions: Vec<Option<String>>,
    latest: Vec<bool>,
    lookahead_ms: Vec<i64>,
}

impl ScopeArrays {
    fn of(scopes: &[Scope]) -> Self {
        ScopeArrays {
            applications: scopes.iter().map(|s| s.application.clone()).collect(),
            versions: scopes
                .iter()
                .map(|s| match &s.version {
                    VersionFilter::Named(name) => Some(name.clone()),
                    VersionFilter::All | VersionFilter::Latest => None,
                })
                .collect(),
            latest: scopes
                .iter()
                .map(|s| s.version == VersionFilter::Latest)
                .collect(),
            lookahead_ms: scopes
                .iter()
                .map(|s| i64::try_from(s.lookahead.as_millis()).unwrap_or(i64::MAX))
                .collect(),
        }
    }

    /// The arrays with their types, as the scaler binds them (`query_typed`).
    fn typed(&self) -> [(&(dyn ToSql + Sync), Type); 4] {
        [
            (&self.applications, Type::TEXT_ARRAY),
            (&self.versions, Type::TEXT_ARRAY),
            (&self.latest, Type::BOOL_ARRAY),
            (&self.lookahead_ms, Type::INT8_ARRAY),
        ]
    }

    fn as_params(&self) -> [&(dyn ToSql + Sync); 4] {
        [
            &self.applications,
            &self.versions,
            &self.latest,
            &self.lookahead_ms,
        ]
    }
}

/// The lines of `EXPLAIN (ANALYZE, BUFFERS)` for `sql`.
async fn explain(
    db: &tokio_postgres::Client,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Vec<String> {
    db.query(&format!("EXPLAIN (ANALYZE, BUFFERS) {sql}"), params)
        .await
        .unwrap()
        .iter()
        .map(|row| row.get::<_, String>(0))
        .collect()
}

/// Prints the plan's scans of tables and indexes (without cost estimates, with their
/// buffers) and its execution time.
fn print_scans(plan: &[String]) {
    let indent = |line: &str| line.len() - line.trim_start().len();
    for (index, line) in plan.iter().enumerate() {
        let scan = line.trim().trim_start_matches("->").trim();
        if !scan.contains(" Scan ") && !scan.starts_with("Seq Scan") {
            continue;
        }
        if ["CTE Scan", "Subquery Scan", "Function Scan"]
            .iter()
            .any(|kind| scan.starts_with(kind))
        {
            continue;
        }
        let actual = scan
            .find("(actual")
            .or_else(|| scan.find("(never executed)"));
        let scan = match (scan.find("(cost="), actual) {
            (Some(cost), Some(actual)) => format!("{}{}", &scan[..cost], &scan[actual..]),
            _ => scan.to_owned(),
        };
        // The node's own detail lines, up to its first child or next sibling.
        let buffers = plan[index + 1..]
            .iter()
            .take_while(|next| indent(next) > indent(line) && !next.trim_start().starts_with("->"))
            .map(|next| next.trim())
            .find(|next| next.starts_with("Buffers:"))
            .map(|next| format!(" — {next}"))
            .unwrap_or_default();
        println!("- `{scan}`{buffers}");
    }
    if let Some(total) = plan.iter().find(|line| line.starts_with("Execution Time")) {
        println!("- {total}");
    }
}

fn describe(scope: &Scope) -> String {
    let mut parts = Vec::new();
    if let Some(application) = &scope.application {
        parts.push(format!("`applicationName: {application}`"));
    }
    match &scope.version {
        VersionFilter::All => {}
        VersionFilter::Latest => parts.push("`applicationVersion: latest`".to_owned()),
        VersionFilter::Named(name) => parts.push(format!("`applicationVersion: {name}`")),
    }
    if !scope.lookahead.is_zero() {
        parts.push(format!(
            "`delayedLookahead: {}s`",
            scope.lookahead.as_secs()
        ));
    }
    if parts.is_empty() {
        "default (all versions, no lookahead)".to_owned()
    } else {
        parts.join(" + ")
    }
}

/// Median and 90th percentile; `None` for a statement that was not run.
fn quantiles(mut runs: Vec<Duration>) -> Option<(Duration, Duration)> {
    if runs.is_empty() {
        return None;
    }
    runs.sort();
    Some((runs[runs.len() / 2], runs[(runs.len() * 9) / 10]))
}

fn ratio(after: Duration, before: Duration) -> f64 {
    after.as_secs_f64() / before.as_secs_f64()
}

fn ms(duration: Duration) -> String {
    format!("{:.2} ms", duration.as_secs_f64() * 1000.0)
}

/// One refresh statement the benchmark times: the scopes it is read for.
struct Case {
    label: &'static str,
    /// Its file under `PGQS_BENCH_WRITE_STATEMENTS` and `PGQS_BENCH_EARLIER_STATEMENTS`.
    file: &'static str,
    scopes: Vec<Scope>,
    requests: Vec<ScopeRequest>,
    arrays: ScopeArrays,
}

impl Case {
    fn new(label: &'static str, file: &'static str, scopes: Vec<Scope>, partitions: bool) -> Self {
        Case {
            label,
            file,
            requests: requests(&scopes, partitions),
            arrays: ScopeArrays::of(&scopes),
            scopes,
        }
    }
}

/// What no refresh statement on this data can beat: the previous statement's index-only
/// count, and a count per partition (also index only), with no versions, scopes, delays or
/// caps. Timed to show what this machine does in the time budget.
const LOWER_BOUND: &str = "SELECT queue_name, status, application_name, count(*), \
     min(created_at) FROM dbos.workflow_status \
     WHERE status IN ('ENQUEUED', 'PENDING') AND queue_name IS NOT NULL GROUP BY 1, 2, 3 \
     UNION ALL SELECT queue_name, NULL, NULL, sum(least(items, 1)), max(items) \
     FROM (SELECT queue_name, queue_partition_key, count(*) AS items \
     FROM dbos.workflow_status WHERE status IN ('ENQUEUED', 'PENDING') \
     AND queue_partition_key IS NOT NULL GROUP BY 1, 2) AS partitions GROUP BY 1";

/// Adds the time since `started` to `runs` once the warm-up rounds are over.
fn record(past_warm_up: bool, runs: &mut Vec<Duration>, started: Instant) {
    if past_warm_up {
        runs.push(started.elapsed());
    }
}

/// [`quantiles`] of a statement every round ran.
fn timed(runs: Vec<Duration>) -> (Duration, Duration) {
    quantiles(runs).expect("timed every round")
}

/// `scopes` as a read asks for them, with or without their partitions counted.
fn requests(scopes: &[Scope], partitions: bool) -> Vec<ScopeRequest> {
    scopes
        .iter()
        .map(|scope| ScopeRequest {
            scope: scope.clone(),
            partitions,
        })
        .collect()
}
