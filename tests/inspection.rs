//! The scaler explaining itself: the `pgqueuescaler.v1.Inspection` service through the real
//! grpcurl (the README's "Why this many replicas?" commands) and the generated client, its
//! agreement with KEDA's answers, its access rules, and `pg-queue-scaler inspect`.

mod common;

use std::process::Command;
use std::time::Duration;

use common::grpcurl::grpcurl;
use common::process::output_within;
use common::{
    Fixture, Server, TestScaler, Work, Workflows, is_active, metric_value, per_fixture,
    scaled_object,
};
use pg_queue_scaler::grpc::pgqueuescaler::v1::inspection_client::InspectionClient;
use pg_queue_scaler::grpc::pgqueuescaler::v1::{Explanation, ListQueuesRequest};
use pg_queue_scaler::grpc::proto::ScaledObjectRef;
use serde_json::Value;
use tonic::Code;
use tonic::transport::Channel;

/// The example of the README: queue `orders`, two workers' worth of concurrency per pod and
/// at most 6 running at once; version v2 is the newest; 9 items wait for v2 and 2 of v1's
/// are running.
/// Returns the server (kept alive by the caller), the URL and the writer of rows.
async fn orders_database(fixture: Fixture) -> (Server, String, Workflows) {
    let server = Server::from_env_or_private();
    let url = server.dbos_database(fixture).await;
    let mut rows = Workflows::new(&url, fixture).await;
    rows.register_queue("orders", Some(2)).await;
    // Every supported schema has the global limit (not all have the partition ones).
    rows.client()
        .execute(
            "UPDATE dbos.queues SET concurrency = 6 WHERE name = 'orders'",
            &[],
        )
        .await
        .expect("set the global concurrency");
    rows.register_version("v1", 60_000, None).await;
    rows.register_version("v2", 1_000, None).await;
    let waiting = Work {
        version: Some("v2"),
        ..Work::enqueued("orders")
    };
    rows.add(&waiting, 9).await;
    let running = Work {
        version: Some("v1"),
        ..Work::running("orders")
    };
    rows.add(&running, 2).await;
    (server, url, rows)
}

async fn start(url: &str) -> TestScaler {
    TestScaler::start(&[
        ("PGQS_DATABASE_URL", url),
        ("PGQS_REFRESH_INTERVAL", "200ms"),
    ])
    .await
}

async fn inspection(scaler: &TestScaler) -> InspectionClient<Channel> {
    InspectionClient::new(scaler.channel().await)
}

async fn explain(scaler: &TestScaler, reference: &ScaledObjectRef) -> Explanation {
    inspection(scaler)
        .await
        .explain(reference.clone())
        .await
        .expect("Explain answers")
        .into_inner()
}

/// The README's session, run with the real grpcurl: list, describe, Explain, ListQueues,
/// the four KEDA calls and the health check, each answering what the README shows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcurl_runs_the_readme_session() {
    let (_server, url, _rows) = orders_database(Fixture::Py340).await;
    let scaler = start(&url).await;
    let addr = scaler.addr.to_string();
    let addr = addr.as_str();
    let call = |method: &'static str, data: String| async move {
        grpcurl(&["-plaintext", "-d", &data, addr, method]).await
    };

    let services = grpcurl(&["-plaintext", addr, "list"]).await.ok();
    for service in [
        "externalscaler.ExternalScaler",
        "grpc.health.v1.Health",
        "pgqueuescaler.v1.Inspection",
    ] {
        assert!(services.lines().any(|line| line == service), "{services}");
    }
    let described = grpcurl(&[
        "-plaintext",
        addr,
        "describe",
        "pgqueuescaler.v1.Inspection",
    ])
    .await
    .ok();
    for method in [
        "rpc Explain ( .externalscaler.ScaledObjectRef ) returns ( .pgqueuescaler.v1.Explanation );",
        "rpc ListQueues ( .pgqueuescaler.v1.ListQueuesRequest ) returns \
         ( .pgqueuescaler.v1.ListQueuesResponse );",
    ] {
        assert!(described.contains(method), "{described}");
    }

    let reference = r#"{"name": "orders-worker", "namespace": "shop",
        "scalerMetadata": {"queue": "orders", "applicationVersion": "v2"}}"#;
    let explanation = call("pgqueuescaler.v1.Inspection/Explain", reference.into())
        .await
        .json();
    // grpcurl prints 64-bit integers as strings, as the protobuf JSON mapping says, and
    // leaves zeros out.
    let answers = &explanation["answers"];
    assert_eq!(answers["active"], Value::Bool(true), "{explanation:#}");
    assert_eq!(answers["metricValue"], 3.0, "{explanation:#}");
    assert_eq!(answers["target"], 1.0);
    let queue = &explanation["queues"][0];
    assert_eq!(queue["counts"]["enqueued"], "9", "{explanation:#}");
    assert_eq!(
        queue["counts"]["pending"],
        Value::Null,
        "v1's work is not v2's"
    );
    assert_eq!(queue["runnable"], "6", "concurrency 6 caps 9 waiting");
    assert_eq!(queue["workerConcurrency"], 2);
    assert_eq!(queue["workerConcurrencyFrom"], "database");
    assert_eq!(queue["replicas"], "3");
    let versions: Vec<&Value> = queue["allWork"]
        .as_array()
        .expect("all of the queue's work")
        .iter()
        .map(|group| &group["version"])
        .collect();
    assert_eq!(versions, ["v1", "v2"], "both versions' work is shown");
    let steps: Vec<&str> = explanation["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        steps.contains(
            &"queue \"orders\": 9 enqueued + 0 pending + 0 due delayed = depth 9; DBOS's limits \
              (concurrency 6) let 6 run at once; worker_concurrency 2 (from the database) \
              makes 3 replicas"
        ),
        "{steps:#?}"
    );
    // v2 was registered last, so version-less work would count for this trigger.
    assert_eq!(explanation["latestVersion"], "v2", "{explanation:#}");
    assert!(
        steps.contains(
            &"counting every application's work of version \"v2\", plus version-less work \
              while \"v2\" is the latest (it is); DBOS's concurrency limits apply"
        ),
        "{steps:#?}"
    );

    let listed = call("pgqueuescaler.v1.Inspection/ListQueues", "{}".into())
        .await
        .json();
    let orders = &listed["sources"][0]["queues"][0];
    assert_eq!(orders["name"], "orders", "{listed:#}");
    assert_eq!(orders["counts"]["depth"], "11", "every version's work");
    assert_eq!(orders["desiredReplicas"], "6");
    let migration = listed["sources"][0]["source"]["migration"].as_str();
    assert!(
        migration.and_then(|level| level.parse::<i64>().ok()) >= Some(109),
        "{listed:#}"
    );

    let active = call("externalscaler.ExternalScaler/IsActive", reference.into())
        .await
        .json();
    assert_eq!(active, serde_json::json!({"result": true}));
    let spec = call(
        "externalscaler.ExternalScaler/GetMetricSpec",
        reference.into(),
    )
    .await
    .json();
    let metric_name = &spec["metricSpecs"][0]["metricName"];
    assert_eq!(*metric_name, answers["metricName"], "{spec:#}");
    assert_eq!(spec["metricSpecs"][0]["targetSizeFloat"], 1.0);
    let request = format!(r#"{{"scaledObjectRef": {reference}, "metricName": {metric_name}}}"#);
    let metrics = call("externalscaler.ExternalScaler/GetMetrics", request)
        .await
        .json();
    assert_eq!(
        metrics["metricValues"][0]["metricValue"], "3",
        "{metrics:#}"
    );
    // The stream stays open; grpcurl prints the first push and is cut off by -max-time.
    let stream = grpcurl(&[
        "-plaintext",
        "-max-time",
        "2",
        "-d",
        reference,
        addr,
        "externalscaler.ExternalScaler/StreamIsActive",
    ])
    .await;
    assert!(stream.stdout.contains(r#""result": true"#), "{stream:?}");
    let health = call(
        "grpc.health.v1.Health/Check",
        r#"{"service": "readiness"}"#.into(),
    )
    .await
    .json();
    assert_eq!(health, serde_json::json!({"status": "SERVING"}));
    scaler.stop().await.expect("clean stop");
}

per_fixture!(explanations_agree_with_what_keda_gets: Py340, Ts530, Py2311, Py2290);

/// On every supported schema, Explain's answers are KEDA's answers, for triggers that
/// filter by version, ignore the limits, or name a queue nobody registered.
async fn explanations_agree_with_what_keda_gets(fixture: Fixture) {
    let (_server, url, _rows) = orders_database(fixture).await;
    let scaler = start(&url).await;
    let mut keda = scaler.client().await;
    let triggers = [
        vec![("queue", "orders")],
        vec![("queue", "orders"), ("applicationVersion", "v2")],
        vec![("queue", "orders"), ("applicationVersion", "v1")],
        vec![("queue", "orders"), ("concurrencyLimits", "ignore")],
        vec![
            ("queue", "orders"),
            ("metric", "depth"),
            ("workerConcurrency", "4"),
        ],
    ];
    for pairs in &triggers {
        let reference = scaled_object("worker", pairs);
        let explanation = explain(&scaler, &reference).await;
        let answers = explanation.answers.clone().expect("answers");
        assert_eq!(
            answers.metric_value,
            Some(metric_value(&mut keda, &reference).await.unwrap() as f64),
            "{pairs:?}: {:#?}",
            explanation.steps
        );
        assert_eq!(
            answers.active,
            Some(is_active(&mut keda, &reference).await.unwrap())
        );
        // v2 was registered last on every schema: the latest, whatever the trigger's version.
        let on_a_version = pairs.iter().any(|(key, _)| *key == "applicationVersion");
        assert_eq!(
            explanation.latest_version.as_deref(),
            on_a_version.then_some("v2"),
            "{pairs:?}"
        );
        let totals = explanation.totals.expect("totals");
        assert_eq!(
            explanation.queues[0].counts.expect("counts").depth,
            totals.depth
        );
        let source = explanation.source.expect("source");
        assert!(
            source
                .records
                .iter()
                .any(|feature| feature == "workflow_status.application_version"),
            "{source:?}"
        );
        assert_eq!(
            source
                .lacks
                .contains(&"workflow_status.application_name".to_owned()),
            !fixture.has_application_name()
        );
    }
    // Schemas from before every queue was registered count an unknown queue as empty;
    // later ones refuse it. Either way, Explain says what KEDA gets.
    let unknown = scaled_object("worker", &[("queue", "no-such-queue")]);
    let answers = explain(&scaler, &unknown).await.answers.expect("answers");
    match is_active(&mut keda, &unknown).await {
        Ok(active) => assert_eq!(answers.active, Some(active)),
        Err(status) => {
            let refusal = answers.active_error.expect("IsActive is refused");
            assert_eq!(refusal.message, status.message());
            assert_eq!(refusal.code, format!("{:?}", status.code()));
        }
    }
    scaler.stop().await.expect("clean stop");
}

/// Explain is refused as KEDA's calls are: bad metadata and a namespace the database is
/// closed to get the same status. ListQueues leaves out databases closed to the asking
/// namespace, and databases only a trigger's own URL names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspection_keeps_the_access_rules() {
    let (_server, url, _rows) = orders_database(Fixture::Py340).await;
    let config = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        config.path(),
        "databases:\n  orders:\n    allowed_namespaces: [shop]\n",
    )
    .unwrap();
    let scaler = TestScaler::start(&[
        ("PGQS_CONFIG", config.path().to_str().unwrap()),
        ("PGQS_DATABASES__ORDERS__URL", url.as_str()),
        ("PGQS_CONNECTION_FROM_ENV_ENABLED", "true"),
        ("PGQS_REFRESH_INTERVAL", "200ms"),
    ])
    .await;
    let mut client = inspection(&scaler).await;
    let mut orders = scaled_object("w", &[("queue", "orders"), ("database", "orders")]);
    orders.namespace = "elsewhere".into();
    let denied = client.explain(orders.clone()).await.unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    assert_eq!(
        denied.message(),
        r#"database "orders" may not be used from namespace "elsewhere""#
    );
    let bad = scaled_object("w", &[("queue", "orders"), ("aggregate", "avg")]);
    let invalid = client.explain(bad).await.unwrap_err();
    assert_eq!(invalid.code(), Code::InvalidArgument);
    assert!(
        invalid.message().starts_with("aggregate must be"),
        "{invalid:?}"
    );

    orders.namespace = "shop".into();
    let explained = client.explain(orders).await.unwrap().into_inner();
    assert_eq!(explained.answers.unwrap().metric_value, Some(3.0));
    // A second source, read through a trigger's own URL.
    let own_url = scaled_object("w", &[("queue", "orders"), ("connectionFromEnv", &url)]);
    let explained = client.explain(own_url).await.unwrap().into_inner();
    assert!(!explained.source.unwrap().database.contains("postgres://"));

    let list = |namespace: &str| ListQueuesRequest {
        namespace: namespace.into(),
        ..ListQueuesRequest::default()
    };
    let listed = client.list_queues(list("shop")).await.unwrap().into_inner();
    let databases: Vec<String> = listed
        .sources
        .iter()
        .map(|source| source.source.clone().unwrap().database)
        .collect();
    assert_eq!(databases, ["orders"], "{listed:#?}");
    assert_eq!(listed.sources[0].queues[0].name, "orders");
    let hidden = client
        .list_queues(list("elsewhere"))
        .await
        .unwrap()
        .into_inner();
    assert!(hidden.sources.is_empty(), "{hidden:#?}");
    let filtered = ListQueuesRequest {
        queue: "other".into(),
        ..list("shop")
    };
    let none = client.list_queues(filtered).await.unwrap().into_inner();
    assert!(none.sources[0].queues.is_empty());
    scaler.stop().await.expect("clean stop");
}

/// `pg-queue-scaler inspect` as a script would run it: the table, the JSON, one trigger's
/// explanation, and the exit codes 0, 64 and 69.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_inspect_command_prints_and_exits_as_documented() {
    let (_server, url, _rows) = orders_database(Fixture::Py340).await;
    let inspect = |args: &[&str], env: &[(&str, &str)]| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_pg-queue-scaler"));
        command.arg("inspect").args(args).env_clear();
        for (key, value) in env {
            command.env(key, value);
        }
        command
    };
    let with_url = [("PGQS_DATABASE_URL", url.as_str())];

    let table = finished(inspect(&[], &with_url)).await;
    assert_eq!(table.0, Some(0), "{table:?}");
    let orders_row = table
        .1
        .lines()
        .find(|line| line.starts_with("orders "))
        .unwrap_or_else(|| panic!("no orders row: {}", table.1));
    let cells: Vec<&str> = orders_row.split_whitespace().collect();
    // QUEUE ENQUEUED PENDING DELAYED DEPTH OLDEST WORKER_CONC REPLICAS
    assert_eq!(cells[1..5], ["9", "2", "0", "11"], "{orders_row}");
    assert_eq!(cells[6..8], ["2", "6"], "{orders_row}");

    let json = finished(inspect(&["--output", "json"], &with_url)).await;
    assert_eq!(json.0, Some(0), "{json:?}");
    let listed: Value = serde_json::from_str(&json.1).expect("JSON");
    assert_eq!(listed["sources"][0]["queues"][0]["counts"]["depth"], 11);

    let explained = finished(inspect(
        &[
            "--database-url-from-env",
            "APP_DATABASE",
            "--output",
            "json",
            "--trigger",
            "queue=orders",
            "--trigger",
            "applicationVersion=v2",
        ],
        &[("APP_DATABASE", url.as_str())],
    ))
    .await;
    assert_eq!(explained.0, Some(0), "{explained:?}");
    let explanation: Value = serde_json::from_str(&explained.1).expect("JSON");
    assert_eq!(explanation["answers"]["metricValue"], 3.0);

    let bad_trigger = finished(inspect(
        &["--trigger", "queue=orders", "--trigger", "metric=lag"],
        &with_url,
    ))
    .await;
    assert_eq!(bad_trigger.0, Some(64), "{bad_trigger:?}");
    assert!(bad_trigger.2.contains("metric must be"), "{bad_trigger:?}");
    let unknown_queue = finished(inspect(&["--trigger", "queue=nope"], &with_url)).await;
    assert_eq!(unknown_queue.0, Some(64), "{unknown_queue:?}");
    let missing_variable = finished(inspect(&["--database-url-from-env", "NOT_SET"], &[])).await;
    assert_eq!(missing_variable.0, Some(64), "{missing_variable:?}");
    let closed = closed_port_url().await;
    let unreachable = finished(inspect(&[], &[("PGQS_DATABASE_URL", closed.as_str())])).await;
    assert_eq!(unreachable.0, Some(69), "{unreachable:?}");
    assert!(!unreachable.1.contains("postgres://"), "{unreachable:?}");
}

/// Runs `command` (bounded), returning its exit code, stdout and stderr.
async fn finished(command: Command) -> (Option<i32>, String, String) {
    let output = output_within(command, Duration::from_secs(60), "pg-queue-scaler inspect").await;
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A database URL whose port nobody listens on.
async fn closed_port_url() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    format!("postgres://scaler:secret@127.0.0.1:{port}/app")
}

/// `inspect --watch --output json` prints one document per refresh, each read afresh, and
/// exits 0 on Ctrl-C.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspect_watch_follows_new_work_until_interrupted() {
    use std::io::{BufRead, BufReader};

    let (_server, url, mut rows) = orders_database(Fixture::Py340).await;
    let mut child = Command::new(env!("CARGO_BIN_EXE_pg-queue-scaler"))
        .args(["inspect", "--watch", "--output", "json"])
        .env_clear()
        .env("PGQS_DATABASE_URL", &url)
        .env("PGQS_REFRESH_INTERVAL", "200ms")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start inspect --watch");
    let pid = child.id().to_string();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let depth_of = |line: std::io::Result<String>| -> u64 {
        let document: Value = serde_json::from_str(&line.expect("a line")).expect("JSON");
        document["sources"][0]["queues"][0]["counts"]["depth"]
            .as_u64()
            .expect("a depth")
    };
    let first = tokio::task::spawn_blocking(move || {
        let first = depth_of(lines.next().expect("a first document"));
        (first, lines)
    });
    let (first, mut lines) = tokio::time::timeout(Duration::from_secs(30), first)
        .await
        .expect("a first document within 30s")
        .unwrap();
    assert_eq!(first, 11);
    rows.enqueue("orders", 1, None).await;
    // Bounded: about 5 reads a second, at most 150 documents.
    let seen = tokio::task::spawn_blocking(move || {
        lines
            .by_ref()
            .take(150)
            .map(depth_of)
            .find(|depth| *depth == 12)
    });
    let seen = tokio::time::timeout(Duration::from_secs(60), seen)
        .await
        .expect("documents keep coming")
        .unwrap();
    assert_eq!(seen, Some(12), "a later read shows the new work");
    let interrupted = Command::new("kill").args(["-INT", &pid]).status().unwrap();
    assert!(interrupted.success());
    let status = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::task::spawn_blocking(move || child.wait()),
    )
    .await
    .expect("inspect exits after Ctrl-C")
    .unwrap()
    .unwrap();
    assert_eq!(status.code(), Some(0));
}
