//! The monitoring the chart ships, against a real Prometheus: every Grafana dashboard panel
//! query and every alert of the chart's PrometheusRule, evaluated over metrics Prometheus
//! scraped from the real scaler reading a real DBOS database; and the alerts' promtool unit
//! tests (tests/prometheus/alerts-test.yaml) on the rules exactly as helm renders them.
//!
//! The rules are rendered by the real helm at test time (no committed copy to drift), so
//! scripts/test.sh installs helm (scripts/install-helm.sh, path in `PGQS_HELM`) and Debian's
//! `prometheus` package (`prometheus`, `promtool`) before `cargo test`. JSON and YAML are read
//! by tests/prometheus/queries.py in the test venv (PyYAML), since this crate has no parser
//! for them; everything it evaluates runs through Prometheus's HTTP API.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::prometheus::{Prometheus, helm_template, promtool};
use common::proxy::{Mode, Proxy};
use common::{
    Fixture, Server, TestScaler, Work, Workflows, is_active, metric_value, open_stream,
    scaled_object,
};

/// The release namespace the rules are rendered for, and the scrape target's `namespace`.
const NAMESPACE: &str = "keda";
/// The release name; the chart's fullname, so the job label the ServiceMonitor gives the
/// scrape and the rules select on (`job="<fullname>"`).
const JOB: &str = "pg-queue-scaler";

fn repo_file(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// Whether a finished command succeeded, and what it printed (stdout, then stderr).
fn outcome(output: std::process::Output) -> (bool, String) {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

/// Runs tests/prometheus/queries.py with `args`.
fn queries(args: &[&str]) -> (bool, String) {
    outcome(
        std::process::Command::new(common::python())
            .arg(repo_file("tests/prometheus/queries.py"))
            .args(args)
            .output()
            .expect("run queries.py"),
    )
}

/// Renders the chart's PrometheusRule (prometheusRule.enabled=true, plus `set`) and writes
/// its groups to `dir/rules.yaml`, the rule file format of Prometheus and promtool.
fn render_rules(dir: &Path, set: &[&str]) -> PathBuf {
    let mut values = vec!["prometheusRule.enabled=true"];
    values.extend_from_slice(set);
    let render = helm_template(NAMESPACE, "templates/prometheusrule.yaml", &values);
    let render_path = dir.join("prometheusrule.yaml");
    std::fs::write(&render_path, render).expect("write the render");
    let rules = dir.join("rules.yaml");
    let (ok, text) = queries(&[
        "rules",
        render_path.to_str().unwrap(),
        rules.to_str().unwrap(),
    ]);
    assert!(ok, "extracting the rules failed: {text}");
    rules
}

/// The rendered alerts are valid (`promtool check rules`) and pass their unit tests
/// (`promtool test rules`): PgQueueScalerSnapshotStale fires once a database's snapshot has
/// been older than staleAfter for 2m and PgQueueScalerRefreshErrors after 10m of failing
/// reads, each for that database only, silent at the threshold, for old errors, for another
/// release's job, and after recovery. Each edit below breaks the alerts in a way an operator
/// would notice, and must make the unit tests fail, so they cannot pass vacuously.
#[test]
fn alert_rules_pass_promtool_check_and_unit_tests() {
    let dir = tempfile::tempdir().expect("temp dir");
    let rules = render_rules(dir.path(), &[]);
    std::fs::copy(
        repo_file("tests/prometheus/alerts-test.yaml"),
        dir.path().join("alerts-test.yaml"),
    )
    .expect("copy the unit tests next to the rules");
    let run = |args: &[&str]| outcome(promtool(dir.path(), args));
    let (ok, text) = run(&["check", "rules", "rules.yaml"]);
    assert!(ok, "promtool check rules: {text}");
    assert!(text.contains("SUCCESS: 2 rules found"), "{text}");
    let (ok, text) = run(&["test", "rules", "alerts-test.yaml"]);
    assert!(ok, "promtool test rules: {text}");

    let original = std::fs::read_to_string(&rules).expect("read rules.yaml");
    for (from, to) in [
        ("> 30", "> 300"),                     // threshold not staleAfter
        ("for: 2m", "for: 5m"),                // fires too late
        ("> 0", "> 1"),                        // never fires
        ("for: 10m", "for: 1m"),               // fires at the first error
        (r#"job="pg-queue-scaler", "#, ""),    // another release's scrape alerts too
        ("by (namespace, pod, database)", ""), // databases merged
    ] {
        assert!(original.contains(from), "{from:?} not in:\n{original}");
        std::fs::write(&rules, original.replacen(from, to, 1)).expect("write rules.yaml");
        let (ok, text) = run(&["test", "rules", "alerts-test.yaml"]);
        assert!(
            !ok,
            "the unit tests still pass with {from:?} -> {to:?}:\n{text}"
        );
    }
}

/// Prometheus scrapes the in-process scaler, labelled as the chart's ServiceMonitor would
/// (`job="pg-queue-scaler"`, `namespace="keda"`, a `pod`). The scaler reads a real DBOS
/// database twice: as `default`, and as `orders` through a proxy that is cut (connections
/// reset) after the first good read, so that `orders` has refresh errors and a snapshot that
/// turns stale; a stream is open and KEDA-like calls keep coming, some failing.
///
/// Then, through Prometheus's HTTP API: every dashboard variable query returns the values
/// the test set up; every panel query, variables substituted, returns series carrying the
/// labels it groups by and shows; every alert expression, as rendered (staleAfter=4s, the
/// scaler's own setting, so the stale threshold is 4s), comparison included, returns series
/// for `orders` and nothing else; and Prometheus, which loaded the same rules, holds both
/// alerts active for `orders` only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_queries_and_alerts_return_series_from_a_real_prometheus() {
    const STALE_AFTER: &str = "4s";
    let server = Server::from_env_or_private();
    let url = server.dbos_database(Fixture::Py340).await;
    let mut rows = Workflows::new(&url, Fixture::Py340).await;
    rows.register_queue("mailer", Some(2)).await;
    rows.enqueue("mailer", 5, None).await;
    let old_version = Work {
        version: Some("v1"),
        age_ms: 90_000,
        ..Work::enqueued("mailer")
    };
    rows.add(&old_version, 3).await;
    rows.running("mailer", 2, None).await;
    rows.delayed("mailer", 1, -1_000).await;
    let (proxy, orders_url) = Proxy::in_front_of(&url).await;
    let scaler = TestScaler::start(&[
        ("PGQS_DATABASE_URL", url.as_str()),
        ("PGQS_DATABASES__ORDERS__URL", orders_url.as_str()),
        ("PGQS_STALE_AFTER", STALE_AFTER),
    ])
    .await;
    let mut client = scaler.client().await;
    let mailer = scaled_object("mailer-worker", &[("queue", "mailer")]);
    let orders = scaled_object(
        "orders-worker",
        &[("queue", "mailer"), ("database", "orders")],
    );
    // 5 + 3 enqueued, 2 pending, 1 delayed and due: 11 items, 2 per worker.
    assert_eq!(metric_value(&mut client, &mailer).await.unwrap(), 6);
    assert_eq!(metric_value(&mut client, &orders).await.unwrap(), 6);
    let _stream = open_stream(&mut client, &mailer).await;
    proxy.set_mode(Mode::Reset);
    // KEDA's polling, for the gRPC panels: OK for `default`, Unavailable for `orders` once
    // stale, InvalidArgument for a bad trigger.
    let poller = {
        let mut client = client.clone();
        let bad = scaled_object("bad", &[("queue", "mailer"), ("workerConcurrency", "0")]);
        tokio::spawn(async move {
            loop {
                for trigger in [&mailer, &orders, &bad] {
                    let _ = is_active(&mut client, trigger).await;
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        })
    };

    let rules_dir = tempfile::tempdir().expect("temp dir");
    let rules = render_rules(rules_dir.path(), &[&format!("staleAfter={STALE_AFTER}")]);
    let rules_text = std::fs::read_to_string(&rules).expect("read rules.yaml");
    assert!(
        rules_text.contains(") > 4\n"),
        "threshold from staleAfter:\n{rules_text}"
    );
    let config = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
         rule_files: [rules.yaml]\n\
         scrape_configs:\n  - job_name: {JOB}\n    static_configs:\n      \
         - targets: ['{addr}']\n        labels: {{namespace: {NAMESPACE}, pod: {JOB}-0}}\n",
        addr = scaler.http_addr,
    );
    let prometheus = Prometheus::start(&config, &[("rules.yaml", &rules_text)]);

    let dashboard = repo_file("charts/pg-queue-scaler/dashboards/pg-queue-scaler.json");
    let args: Vec<String> = [
        "evaluate",
        "--prometheus",
        &prometheus.url(),
        "--dashboard",
        dashboard.to_str().unwrap(),
        "--rules",
        prometheus.dir().join("rules.yaml").to_str().unwrap(),
        "--var",
        &format!("namespace={NAMESPACE}"),
        "--var",
        &format!("job={JOB}"),
        "--var",
        "database=default",
        "--var",
        "database=orders",
        "--var",
        "queue=mailer",
        "--rate-interval",
        "15s",
        "--alerting",
        "database=orders",
    ]
    .iter()
    .map(|arg| arg.to_string())
    .collect();
    // Until the stale snapshot, the rates and the alerts have had time to show (each attempt's
    // report is printed, so a timeout shows what was still missing).
    common::eventually(
        "every dashboard query and alert to return series",
        Duration::from_secs(90),
        || {
            let args = args.clone();
            async move {
                let (ok, text) = tokio::task::spawn_blocking(move || {
                    let args: Vec<&str> = args.iter().map(String::as_str).collect();
                    queries(&args)
                })
                .await
                .expect("queries.py runs");
                println!("--- queries.py evaluate ---\n{text}");
                if !ok {
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
                ok
            }
        },
    )
    .await;

    // The same evaluation must fail for a misspelt metric, a misspelt label and an alert
    // scoped to a job that does not exist, naming each.
    let original = std::fs::read_to_string(&dashboard).expect("read the dashboard");
    let mut broken = original.clone();
    for (from, to) in [
        (
            "pg_queue_scaler_queue_pending{",
            "pg_queue_scaler_queue_pendng{",
        ),
        (
            "max by (database, schema) (pg_queue_scaler_snapshot_age_seconds",
            "max by (database, schema_name) (pg_queue_scaler_snapshot_age_seconds",
        ),
    ] {
        assert_eq!(
            original.matches(from).count(),
            1,
            "{from:?} once in the dashboard"
        );
        broken = broken.replace(from, to);
    }
    let broken_dashboard = rules_dir.path().join("broken-dashboard.json");
    std::fs::write(&broken_dashboard, broken).expect("write the broken dashboard");
    let broken_rules = rules_dir.path().join("broken-rules.yaml");
    std::fs::write(
        &broken_rules,
        rules_text.replacen(r#"job="pg-queue-scaler""#, r#"job="pg-queue-scalr""#, 1),
    )
    .expect("write the broken rules");
    let mut broken_args = args.clone();
    broken_args[4] = broken_dashboard.to_str().unwrap().to_owned();
    broken_args[6] = broken_rules.to_str().unwrap().to_owned();
    let (ok, text) = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = broken_args.iter().map(String::as_str).collect();
        queries(&args)
    })
    .await
    .expect("queries.py runs");
    assert!(!ok, "a broken dashboard and rules pass:\n{text}");
    for expected in [
        "FAIL panel 'Depth by state per queue' B: no series",
        "FAIL panel 'Snapshot age per source' A: no series has the labels",
        "FAIL alert PgQueueScalerSnapshotStale: no series",
    ] {
        assert!(text.contains(expected), "{expected:?} not in:\n{text}");
    }

    poller.abort();
    drop(prometheus);
    scaler.stop().await.unwrap();
}
