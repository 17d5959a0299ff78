//! Only the work a Deployment's workers may run, and only as much as DBOS's limits let run:
//! application versions, global and partition concurrency, delayed lookahead and queue
//! latency, on real DBOS schemas with rows written the way DBOS writes them. One test case
//! per schema, so that one failing release does not hide the others.

mod common;

use std::time::Duration;

use common::{
    Fixture, QueueLimits, Server, TestScaler, Work, Workflows, eventually, http_get, is_active,
    latency_seconds, metric_sample, metric_value, next_activity, open_stream, per_fixture,
    scaled_object,
};
use pg_queue_scaler::grpc::proto::ScaledObjectRef;
use tonic::Code;

/// A scaler reading `url` as its default database, refreshing fast.
async fn start(url: &str) -> TestScaler {
    TestScaler::start(&[
        ("PGQS_DATABASE_URL", url),
        ("PGQS_REFRESH_INTERVAL", "200ms"),
    ])
    .await
}

/// A database holding `fixture`'s schema on a server of its own (kept alive by the
/// returned `Server`), with a writer of DBOS rows.
async fn database(fixture: Fixture) -> (Server, String, Workflows) {
    let server = Server::from_env_or_private();
    let url = server.dbos_database(fixture).await;
    let rows = Workflows::new(&url, fixture).await;
    (server, url, rows)
}

/// Waiting work pinned to `version`.
fn pinned<'a>(queue: &'a str, version: &'a str) -> Work<'a> {
    Work {
        version: Some(version),
        ..Work::enqueued(queue)
    }
}

/// A trigger on `queue` with `pairs` added.
fn trigger(queue: &str, pairs: &[(&str, &str)]) -> ScaledObjectRef {
    let mut all = vec![("queue", queue)];
    all.extend_from_slice(pairs);
    scaled_object("worker", &all)
}

per_fixture!(versions_count_what_a_worker_of_that_version_runs: Py340, Ts530, Py2311, Py2290);

/// A worker of version V runs rows of V, plus version-less rows when V is the latest
/// registered version; `latest` follows new registrations; no version counts everything.
async fn versions_count_what_a_worker_of_that_version_runs(fixture: Fixture) {
    let (_server, url, mut rows) = database(fixture).await;
    rows.register_queue("q", Some(1)).await;
    rows.register_version("v1", 60_000, None).await;
    rows.register_version("v2", 1_000, None).await;
    let mut v1_ids = rows.add(&pinned("q", "v1"), 2).await;
    let v1_running = Work {
        status: "PENDING",
        ..pinned("q", "v1")
    };
    v1_ids.extend(rows.add(&v1_running, 1).await);
    rows.add(&pinned("q", "v2"), 3).await;
    rows.enqueue("q", 4, None).await;
    rows.delayed("q", 1, -1_000).await;

    let scaler = start(&url).await;
    let mut client = scaler.client().await;
    let version = |name: &str| trigger("q", &[("applicationVersion", name)]);
    assert_eq!(
        metric_value(&mut client, &trigger("q", &[])).await.unwrap(),
        11
    );
    assert_eq!(metric_value(&mut client, &version("v1")).await.unwrap(), 3);
    assert_eq!(metric_value(&mut client, &version("v2")).await.unwrap(), 8);
    assert_eq!(
        metric_value(&mut client, &version("latest")).await.unwrap(),
        8
    );
    // A version nobody registered and with no work is a new version before its first
    // enqueue: 0, not an error.
    assert_eq!(metric_value(&mut client, &version("v3")).await.unwrap(), 0);
    assert!(!is_active(&mut client, &version("v3")).await.unwrap());

    // v1 drains: its trigger pushes "inactive" once its last workflow has finished.
    let mut v1_stream = open_stream(&mut client, &version("v1")).await;
    assert!(next_activity(&mut v1_stream).await);
    rows.finish(&v1_ids).await;
    assert!(!next_activity(&mut v1_stream).await, "v1 drained");
    assert_eq!(metric_value(&mut client, &version("v1")).await.unwrap(), 0);

    // A newer version takes over the version-less work; `latest` follows it.
    rows.register_version("v3", 0, None).await;
    eventually("latest to move to v3", Duration::from_secs(5), || {
        let mut client = client.clone();
        async move { metric_value(&mut client, &version("latest")).await.unwrap() == 5 }
    })
    .await;
    assert_eq!(metric_value(&mut client, &version("v2")).await.unwrap(), 3);
    assert_eq!(metric_value(&mut client, &version("v3")).await.unwrap(), 5);
    drop(v1_stream);
    scaler.stop().await.unwrap();
}

per_fixture!(the_latest_version_is_decided_per_application: Py340, Ts530, Py2311);

/// With applicationName, "latest" is the newest of the application's own and unclaimed
/// versions: another application's newer deploy does not demote it.
async fn the_latest_version_is_decided_per_application(fixture: Fixture) {
    let (_server, url, mut rows) = database(fixture).await;
    rows.register_version("u-v0", 60_000, None).await;
    rows.register_version("b-v1", 10_000, Some("billing")).await;
    rows.register_version("s-v9", 1_000, Some("search")).await;
    rows.enqueue("q", 4, Some("billing")).await;
    rows.add(
        &Work {
            application: Some("billing"),
            version: Some("b-v1"),
            ..Work::enqueued("q")
        },
        1,
    )
    .await;
    let scaler = start(&url).await;
    let mut client = scaler.client().await;
    let count = |pairs: &[(&str, &str)]| {
        let mut pairs = pairs.to_vec();
        pairs.extend([("metric", "depth"), ("workerConcurrency", "1")]);
        trigger("q", &pairs)
    };
    let billing = [
        ("applicationName", "billing"),
        ("applicationVersion", "b-v1"),
    ];
    assert_eq!(
        metric_value(&mut client, &count(&billing)).await.unwrap(),
        5
    );
    // Without an application, search's newer version is the latest of all.
    let everyone = [("applicationVersion", "b-v1")];
    assert_eq!(
        metric_value(&mut client, &count(&everyone)).await.unwrap(),
        1
    );
    // Search's latest sees no billing work.
    let search = [
        ("applicationName", "search"),
        ("applicationVersion", "latest"),
    ];
    assert_eq!(metric_value(&mut client, &count(&search)).await.unwrap(), 0);
    scaler.stop().await.unwrap();
}

/// With no version registered, every version is the latest: a named version counts its own
/// and the version-less work, and `latest` the version-less work.
#[tokio::test]
async fn with_no_registered_version_every_version_is_the_latest() {
    let (_server, url, mut rows) = database(Fixture::Py340).await;
    rows.register_queue("q", Some(1)).await;
    rows.add(&pinned("q", "v1"), 2).await;
    rows.enqueue("q", 3, None).await;
    let scaler = start(&url).await;
    let mut client = scaler.client().await;
    for (version, expected) in [("v1", 5), ("latest", 3), ("v7", 3)] {
        let reference = trigger("q", &[("applicationVersion", version)]);
        let value = metric_value(&mut client, &reference).await.unwrap();
        assert_eq!(value, expected, "{version}");
    }
    assert_eq!(
        metric_value(&mut client, &trigger("q", &[])).await.unwrap(),
        5
    );
    scaler.stop().await.unwrap();
}

per_fixture!(global_concurrency_caps_the_answer: Py340, Ts530, Py2311, Py2290);

/// Global concurrency 10 and worker concurrency 2: at most 5 replicas and a depth of 10,
/// however deep the queue; `concurrencyLimits: ignore` lifts the cap; activity still
/// follows the whole depth.
async fn global_concurrency_caps_the_answer(fixture: Fixture) {
    let (_server, url, mut rows) = database(fixture).await;
    rows.client()
        .execute(
            "INSERT INTO dbos.queues (name, worker_concurrency, concurrency) VALUES ('q', 2, 10)",
            &[],
        )
        .await
        .unwrap();
    rows.enqueue("q", 27, None).await;
    rows.running("q", 3, None).await;
    let scaler = start(&url).await;
    let mut client = scaler.client().await;
    let depth = [("metric", "depth"), ("workerConcurrency", "2")];
    let ignore = [("concurrencyLimits", "ignore")];
    assert_eq!(
        metric_value(&mut client, &trigger("q", &[])).await.unwrap(),
        5
    );
    assert_eq!(
        metric_value(&mut client, &trigger("q", &depth))
            .await
            .unwrap(),
        10
    );
    assert_eq!(
        metric_value(&mut client, &trigger("q", &ignore))
            .await
            .unwrap(),
        15
    );
    let ignored_depth = [depth.as_slice(), &ignore].concat();
    assert_eq!(
        metric_value(&mut client, &trigger("q", &ignored_depth))
            .await
            .unwrap(),
        30
    );
    let threshold = trigger("q", &[("activationThreshold", "20")]);
    assert!(is_active(&mut client, &threshold).await.unwrap(), "30 > 20");
    scaler.stop().await.unwrap();
}

per_fixture!(partitions_cap_the_answer_per_partition: Py340, Ts530, Py2311);

/// Partitioned queues: each partition counts up to `partition_concurrency`, work without a
/// key (which DBOS never dequeues there) not at all, and the busiest partition's own need
/// (`partition_worker_concurrency`) is a floor; version scopes apply inside partitions.
async fn partitions_cap_the_answer_per_partition(fixture: Fixture) {
    let (_server, url, mut rows) = database(fixture).await;
    let one_per_partition = QueueLimits {
        worker_concurrency: Some(4),
        partition_concurrency: Some(1),
        ..QueueLimits::default()
    };
    rows.register_limited_queue("p", one_per_partition).await;
    for key in 0..10 {
        let key = format!("k{key}");
        rows.add(
            &Work {
                partition: Some(&key),
                ..Work::enqueued("p")
            },
            3,
        )
        .await;
    }
    rows.enqueue("p", 2, None).await; // no partition key
    let busy_partition = QueueLimits {
        worker_concurrency: Some(10),
        partition_concurrency: Some(5),
        partition_worker_concurrency: Some(1),
        ..QueueLimits::default()
    };
    rows.register_limited_queue("pw", busy_partition).await;
    rows.add(
        &Work {
            partition: Some("hot"),
            ..Work::enqueued("pw")
        },
        8,
    )
    .await;
    rows.register_limited_queue("pv", one_per_partition).await;
    rows.register_version("v1", 60_000, None).await;
    rows.register_version("v2", 1_000, None).await;
    let pinned = |version, partition| Work {
        version: Some(version),
        partition: Some(partition),
        ..Work::enqueued("pv")
    };
    rows.add(
        &Work {
            status: "PENDING",
            ..pinned("v1", "a")
        },
        1,
    )
    .await;
    rows.add(
        &Work {
            partition: Some("a"),
            ..Work::enqueued("pv")
        },
        2,
    )
    .await;
    rows.add(&pinned("v2", "b"), 2).await;
    rows.add(
        &Work {
            partition: Some("c"),
            ..Work::delayed("pv", 20_000)
        },
        3,
    )
    .await;

    let scaler = start(&url).await;
    let mut client = scaler.client().await;
    let depth = |queue, pairs: &[(&str, &str)]| {
        let mut pairs = pairs.to_vec();
        pairs.extend([("metric", "depth"), ("workerConcurrency", "1")]);
        trigger(queue, &pairs)
    };
    // 10 partitions of 3 at one each: 10 runnable, ceil(10 / 4) = 3 replicas.
    assert_eq!(
        metric_value(&mut client, &trigger("p", &[])).await.unwrap(),
        3
    );
    assert_eq!(
        metric_value(&mut client, &depth("p", &[])).await.unwrap(),
        10
    );
    let ignore = [("concurrencyLimits", "ignore")];
    assert_eq!(
        metric_value(&mut client, &trigger("p", &ignore))
            .await
            .unwrap(),
        8
    );
    // One partition of 8, 5 at once, one per worker: 5 replicas, not ceil(5 / 10).
    assert_eq!(
        metric_value(&mut client, &trigger("pw", &[]))
            .await
            .unwrap(),
        5
    );
    // v2 (latest): partition a holds 2 version-less (1 runnable), b holds 2 of v2 (1).
    let v2 = [("applicationVersion", "v2")];
    assert_eq!(
        metric_value(&mut client, &depth("pv", &v2)).await.unwrap(),
        2
    );
    let v1 = [("applicationVersion", "v1")];
    assert_eq!(
        metric_value(&mut client, &depth("pv", &v1)).await.unwrap(),
        1
    );
    // Delayed work due within the lookahead counts in its partition too.
    let soon = [("applicationVersion", "v2"), ("delayedLookahead", "60s")];
    assert_eq!(
        metric_value(&mut client, &depth("pv", &soon))
            .await
            .unwrap(),
        3
    );
    scaler.stop().await.unwrap();
}

per_fixture!(delayed_lookahead_counts_work_due_soon: Py340, Ts530, Py2311, Py2290);

/// Delayed work due within `delayedLookahead` counts, so workers are up when it is due.
async fn delayed_lookahead_counts_work_due_soon(fixture: Fixture) {
    let (_server, url, mut rows) = database(fixture).await;
    rows.register_queue("q", Some(1)).await;
    rows.delayed("q", 1, -1_000).await;
    rows.delayed("q", 2, 20_000).await;
    rows.delayed("q", 5, 2 * 3_600_000).await;
    let scaler = start(&url).await;
    let mut client = scaler.client().await;
    for (lookahead, expected) in [
        (None, 1),
        (Some("0s"), 1),
        (Some("60s"), 3),
        (Some("24h"), 8),
    ] {
        let pairs: Vec<_> = lookahead
            .map(|l| ("delayedLookahead", l))
            .into_iter()
            .collect();
        let value = metric_value(&mut client, &trigger("q", &pairs))
            .await
            .unwrap();
        assert_eq!(value, expected, "{lookahead:?}");
    }
    scaler.stop().await.unwrap();
}

per_fixture!(latency_is_the_age_of_the_oldest_runnable_waiting_item: Py340, Py2290);

/// `metric: latency` reports the age of the oldest waiting item the trigger's workers may
/// run (enqueued since created, due delayed since due); it grows with the clock, running
/// work does not count, and it is 0 once nothing waits while IsActive follows the depth.
async fn latency_is_the_age_of_the_oldest_runnable_waiting_item(fixture: Fixture) {
    let (_server, url, mut rows) = database(fixture).await;
    rows.register_queue("q", Some(1)).await;
    rows.register_version("v1", 60_000, None).await;
    rows.register_version("v2", 1_000, None).await;
    let mut waiting = rows
        .add(
            &Work {
                age_ms: 30_000,
                ..Work::enqueued("q")
            },
            2,
        )
        .await;
    waiting.extend(rows.add(&Work::delayed("q", -45_000), 1).await);
    rows.add(
        &Work {
            age_ms: 100_000,
            ..Work::running("q")
        },
        1,
    )
    .await;
    let old_v1 = Work {
        age_ms: 500_000,
        ..pinned("q", "v1")
    };
    rows.add(&old_v1, 1).await;
    let scaler = start(&url).await;
    let mut client = scaler.client().await;
    let latency = trigger(
        "q",
        &[
            ("metric", "latency"),
            ("targetLatency", "20s"),
            ("applicationVersion", "v2"),
        ],
    );
    let spec = client
        .get_metric_spec(latency.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(spec.metric_specs[0].target_size_float, 20.0);
    assert_eq!(spec.metric_specs[0].target_size, 20);
    let first = latency_seconds(&mut client, &latency).await.unwrap();
    assert!(
        (45.0..50.0).contains(&first),
        "the due delayed item waits longest: {first}"
    );
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let later = latency_seconds(&mut client, &latency).await.unwrap();
    assert!(
        later >= first + 1.0,
        "the age grows with the clock: {first} then {later}"
    );
    // Without a version, v1's 500 s old item is the oldest.
    let everyone = trigger("q", &[("metric", "latency"), ("targetLatency", "20s")]);
    let oldest = latency_seconds(&mut client, &everyone).await.unwrap();
    assert!((500.0..510.0).contains(&oldest), "{oldest}");

    rows.finish(&waiting).await;
    eventually("latency to drop to 0", Duration::from_secs(5), || {
        let mut client = client.clone();
        let latency = latency.clone();
        async move { latency_seconds(&mut client, &latency).await.unwrap() == 0.0 }
    })
    .await;
    assert!(
        is_active(&mut client, &latency).await.unwrap(),
        "running work is depth"
    );
    scaler.stop().await.unwrap();
}

/// A key the schema cannot honour is FailedPrecondition naming the key and what the schema
/// lacks; the same schema still answers triggers without it.
#[tokio::test]
async fn keys_the_schema_cannot_honour_are_refused() {
    let (_server, url, mut rows) = database(Fixture::Py340).await;
    rows.register_queue("q", Some(1)).await;
    rows.enqueue("q", 2, None).await;
    rows.client()
        .batch_execute(
            "ALTER TABLE dbos.workflow_status DROP COLUMN application_version; \
             ALTER TABLE dbos.workflow_status DROP COLUMN delay_until_epoch_ms",
        )
        .await
        .unwrap();
    let scaler = start(&url).await;
    let mut client = scaler.client().await;
    assert_eq!(
        metric_value(&mut client, &trigger("q", &[])).await.unwrap(),
        2
    );
    for (key, value, needs) in [
        ("applicationVersion", "v1", "application_version"),
        ("delayedLookahead", "60s", "DBOS migration 16"),
    ] {
        let status = metric_value(&mut client, &trigger("q", &[(key, value)]))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::FailedPrecondition, "{key}");
        assert!(status.message().starts_with(key), "{}", status.message());
        assert!(status.message().contains(needs), "{}", status.message());
    }
    scaler.stop().await.unwrap();
}

/// `requireApplicationVersion` refuses a trigger whose version did not arrive (KEDA drops
/// an empty applicationVersionFromEnv), on every call; the resolved value is accepted.
#[tokio::test]
async fn a_required_version_that_did_not_arrive_is_refused() {
    let (_server, url, mut rows) = database(Fixture::Py340).await;
    rows.register_queue("q", Some(1)).await;
    rows.add(&pinned("q", "v1"), 2).await;
    let scaler = start(&url).await;
    let mut client = scaler.client().await;
    let missing = trigger("q", &[("requireApplicationVersion", "true")]);
    for status in [
        client.get_metric_spec(missing.clone()).await.unwrap_err(),
        client.is_active(missing.clone()).await.unwrap_err(),
        client.stream_is_active(missing.clone()).await.unwrap_err(),
    ] {
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(
            status
                .message()
                .starts_with("no application version arrived"),
            "{}",
            status.message()
        );
    }
    let resolved = trigger(
        "q",
        &[
            ("requireApplicationVersion", "true"),
            ("applicationVersionFromEnv", "v1"),
        ],
    );
    assert_eq!(metric_value(&mut client, &resolved).await.unwrap(), 2);
    let both = trigger(
        "q",
        &[
            ("applicationVersion", "v1"),
            ("applicationVersionFromEnv", "v1"),
        ],
    );
    let status = client.is_active(both).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    scaler.stop().await.unwrap();
}

/// /metrics shows each queue's depth per application version ("" for version-less work)
/// and the age of its oldest waiting item.
#[tokio::test]
async fn metrics_show_depth_per_version_and_the_oldest_wait() {
    let (_server, url, mut rows) = database(Fixture::Py340).await;
    rows.register_queue("q", Some(1)).await;
    let v1_running = Work {
        status: "PENDING",
        ..pinned("q", "v1")
    };
    rows.add(&v1_running, 3).await;
    rows.add(
        &Work {
            age_ms: 60_000,
            ..Work::enqueued("q")
        },
        2,
    )
    .await;
    rows.register_queue("idle", Some(1)).await;
    let scaler = start(&url).await;
    let mut client = scaler.client().await;
    assert_eq!(
        metric_value(&mut client, &trigger("q", &[])).await.unwrap(),
        5
    );
    let (_, text) = http_get(scaler.http_addr, "/metrics").await;
    let sample = |selector: &str| metric_sample(&text, selector);
    let labels = "system=\"dbos\",database=\"default\",schema=\"dbos\"";
    let version = |queue: &str, version: &str| {
        format!(
            "pg_queue_scaler_queue_version_depth{{{labels},queue=\"{queue}\",\
             application_version=\"{version}\"}}"
        )
    };
    assert_eq!(sample(&version("q", "v1")), 3.0);
    assert_eq!(sample(&version("q", "")), 2.0);
    let oldest = |queue: &str| {
        format!("pg_queue_scaler_queue_oldest_waiting_seconds{{{labels},queue=\"{queue}\"}}")
    };
    let age = sample(&oldest("q"));
    assert!((60.0..70.0).contains(&age), "{age}");
    assert_eq!(sample(&oldest("idle")), 0.0);
    scaler.stop().await.unwrap();
}

/// A trigger with a scope the source has not computed yet is answered after one extra read,
/// not after the next tick: here the refresh interval is far longer than the wait allowed
/// for a first read.
#[tokio::test]
async fn a_new_scope_is_read_at_once() {
    let (_server, url, mut rows) = database(Fixture::Py340).await;
    rows.register_queue("q", Some(1)).await;
    rows.add(&pinned("q", "v1"), 2).await;
    rows.enqueue("q", 1, None).await;
    let scaler = TestScaler::start(&[
        ("PGQS_DATABASE_URL", url.as_str()),
        ("PGQS_REFRESH_INTERVAL", "10s"),
        ("PGQS_FIRST_READ_TIMEOUT", "2s"),
    ])
    .await;
    let mut client = scaler.client().await;
    assert_eq!(
        metric_value(&mut client, &trigger("q", &[])).await.unwrap(),
        3
    );
    // Each answer below needs a read the 10 s ticker would not have made within the 2 s a
    // request waits: without the extra read they would be Unavailable.
    let v1 = trigger("q", &[("applicationVersion", "v1")]);
    assert_eq!(metric_value(&mut client, &v1).await.unwrap(), 3);
    let latest = trigger("q", &[("applicationVersion", "latest")]);
    assert_eq!(metric_value(&mut client, &latest).await.unwrap(), 1);
    scaler.stop().await.unwrap();
}
