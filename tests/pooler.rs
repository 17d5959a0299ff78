//! Behind PgBouncer (Debian's `pgbouncer`, started by the tests, never resetting server
//! connections): the scaler shares a pool with an application that writes and looks at its
//! own session. The application never sees anything of the scaler's (its whole `SHOW ALL`
//! stays as it was, and no prepared statement appears on its session), none of its writes is
//! refused, and the scaler answers right, `Unavailable` while PgBouncer is down (never a
//! made-up 0), and right again when it is back.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::pgbouncer::{PgBouncer, PoolMode};
use common::{Fixture, Server, TestScaler, Workflows, eventually, metric_value, scaled_object};
use pg_queue_scaler::grpc::proto::ScaledObjectRef;
use tokio_postgres::SimpleQueryMessage;
use tonic::Code;

const QUEUE: &str = "q";

/// A DBOS database, PgBouncer in front of it, and a direct connection for the test's own
/// rows.
struct Stack {
    url: String,
    bouncer: PgBouncer,
    rows: Workflows,
    // Last: the cluster stops after PgBouncer.
    _server: Server,
}

impl Stack {
    async fn start(mode: PoolMode, pool_size: u32) -> Stack {
        let server = Server::from_env_or_private();
        let url = server.dbos_database(Fixture::Py340).await;
        let rows = Workflows::new(&url, Fixture::Py340).await;
        rows.register_queue(QUEUE, Some(1)).await;
        let bouncer = PgBouncer::start(&server.admin_url(), mode, pool_size);
        Stack {
            url,
            bouncer,
            rows,
            _server: server,
        }
    }

    /// The scaler, reading the database through PgBouncer.
    async fn scaler(&self, env: &[(&str, &str)]) -> TestScaler {
        let url = self.bouncer.url(&self.url);
        let mut settings = vec![
            ("PGQS_DATABASE_URL", url.as_str()),
            ("PGQS_REFRESH_INTERVAL", "100ms"),
        ];
        settings.extend_from_slice(env);
        TestScaler::start(&settings).await
    }

    /// A client of the application's, through PgBouncer. It uses the simple-query protocol
    /// only, which works in every pool mode, and names itself: PgBouncer (1.18) sets each
    /// client's `application_name` on the server connection it links it to, and leaves the
    /// previous client's there for a client that sets none.
    async fn app(&self) -> tokio_postgres::Client {
        let url = format!("{}&application_name=app", self.bouncer.url(&self.url));
        common::postgres::connect(&url).await
    }
}

/// The trigger polled: the queue's depth as replicas, one work item per replica.
fn trigger() -> ScaledObjectRef {
    scaled_object("worker", &[("queue", QUEUE), ("workerConcurrency", "1")])
}

/// What the application sees of its session: every setting, and how many named prepared
/// statements it has.
async fn session_view(app: &tokio_postgres::Client) -> BTreeMap<String, String> {
    let mut view = BTreeMap::new();
    for message in app.simple_query("SHOW ALL").await.expect("SHOW ALL") {
        if let SimpleQueryMessage::Row(row) = message {
            view.insert(
                row.get(0).expect("a name").to_owned(),
                row.get(1).unwrap_or_default().to_owned(),
            );
        }
    }
    let prepared = app
        .simple_query("SELECT count(*) FROM pg_prepared_statements")
        .await
        .expect("count prepared statements");
    let count = prepared
        .iter()
        .find_map(|message| match message {
            SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
            _ => None,
        })
        .expect("a count");
    view.insert("(named prepared statements)".into(), count);
    view
}

/// The settings of `view` that differ from `baseline`, for the assertion message.
fn differences(
    baseline: &BTreeMap<String, String>,
    view: &BTreeMap<String, String>,
) -> Vec<String> {
    let mut names: Vec<&String> = baseline.keys().chain(view.keys()).collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .filter(|name| baseline.get(*name) != view.get(*name))
        .map(|name| format!("{name}: {:?} -> {:?}", baseline.get(name), view.get(name)))
        .collect()
}

/// Enqueues one work item the way the application does, through PgBouncer; the error text
/// when the write is refused.
async fn app_write(app: &tokio_postgres::Client, id: &str) -> Result<(), String> {
    app.batch_execute(&format!(
        "INSERT INTO dbos.workflow_status (workflow_uuid, status, name, queue_name) \
         VALUES ('{id}', 'ENQUEUED', 'work', '{QUEUE}')"
    ))
    .await
    .map_err(|error| {
        error
            .as_db_error()
            .map(|db| db.message().to_owned())
            .unwrap_or_else(|| error.to_string())
    })
}

/// The application writes and looks at its session while the scaler is polled, both
/// through the same PgBouncer pool, for `duration`. Every write succeeds, every view equals
/// `baseline`, every answer is a value (never below the last: work only arrives). Returns
/// how many items the application wrote.
async fn share_the_pool(
    stack: &Stack,
    scaler: &TestScaler,
    baseline: &BTreeMap<String, String>,
    duration: Duration,
) -> u32 {
    let app = stack.app().await;
    let mut client = scaler.client().await;
    let deadline = Instant::now() + duration;
    let application = async {
        let mut written = 0;
        let mut refused = Vec::new();
        while Instant::now() < deadline {
            match app_write(&app, &format!("app-{written}")).await {
                Ok(()) => written += 1,
                Err(error) => refused.push(error),
            }
            let view = session_view(&app).await;
            let changed = differences(baseline, &view);
            assert!(
                changed.is_empty(),
                "the application sees settings it did not make: {changed:?}"
            );
        }
        assert!(refused.is_empty(), "writes were refused: {refused:?}");
        written
    };
    let polling = async {
        let (mut polls, mut last) = (0, 0);
        while Instant::now() < deadline {
            let value = metric_value(&mut client, &trigger())
                .await
                .unwrap_or_else(|status| panic!("poll {polls}: {status:?}"));
            assert!(value >= last, "the depth went back from {last} to {value}");
            last = value;
            polls += 1;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        polls
    };
    let (written, polls) = tokio::join!(application, polling);
    eprintln!("{written} writes and {polls} polls through one pool");
    assert!(written >= 10, "the application kept writing: {written}");
    assert!(polls >= 10, "the scaler kept answering: {polls}");
    written
}

/// Transaction pooling with ONE server connection for the scaler's two connections and the
/// application's: every read of the scaler and every statement of the application take
/// turns on it. The application's writes all succeed and its session never changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transaction_pooling_shares_server_connections_and_leaves_them_as_they_were() {
    let mut stack = Stack::start(PoolMode::Transaction, 1).await;
    stack.rows.enqueue(QUEUE, 3, None).await;
    let baseline = session_view(&stack.app().await).await;
    assert_eq!(baseline["default_transaction_read_only"], "off");
    assert_eq!(baseline["statement_timeout"], "0");

    let scaler = stack.scaler(&[]).await;
    let mut client = scaler.client().await;
    assert_eq!(metric_value(&mut client, &trigger()).await.unwrap(), 3);
    let written = share_the_pool(&stack, &scaler, &baseline, Duration::from_secs(3)).await;
    let expected = 3 + i64::from(written);
    eventually(
        "the scaler to count every write",
        Duration::from_secs(5),
        || {
            let mut client = client.clone();
            async move { metric_value(&mut client, &trigger()).await.ok() == Some(expected) }
        },
    )
    .await;
    scaler.stop().await.unwrap();
    let after = session_view(&stack.app().await).await;
    let changed = differences(&baseline, &after);
    assert!(changed.is_empty(), "{changed:?}");
}

/// The statement timeout is the read's own (`SET LOCAL`): a read blocked behind a lock is
/// cancelled after `statement_timeout` and answered `Unavailable`, while the application,
/// on the same server connection, still runs statements longer than that and still has no
/// timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_statement_timeout_bounds_the_read_and_nothing_else() {
    let mut stack = Stack::start(PoolMode::Transaction, 1).await;
    stack.rows.enqueue(QUEUE, 2, None).await;
    let app = stack.app().await;
    let baseline = session_view(&app).await;
    let scaler = stack.scaler(&[("PGQS_STATEMENT_TIMEOUT", "300ms")]).await;
    let mut client = scaler.client().await;
    assert_eq!(metric_value(&mut client, &trigger()).await.unwrap(), 2);

    let locker = common::postgres::connect(&stack.url).await;
    locker
        .batch_execute("BEGIN; LOCK TABLE dbos.workflow_status IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let reason = loop {
        match metric_value(&mut client, &trigger()).await {
            Err(status) if status.code() == Code::Unavailable => break status.message().to_owned(),
            Err(status) => panic!("only Unavailable while blocked, got {status:?}"),
            Ok(value) => assert_eq!(value, 2, "only the last good value until then"),
        }
        assert!(
            Instant::now() < deadline,
            "the blocked read did not time out"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(reason.contains("statement timeout"), "{reason}");
    // Meanwhile the application's session has no timeout: a 1s statement runs.
    app.batch_execute("SELECT pg_sleep(1)")
        .await
        .expect("the application's statements have no timeout");
    let changed = differences(&baseline, &session_view(&app).await);
    assert!(changed.is_empty(), "{changed:?}");

    locker.batch_execute("COMMIT").await.unwrap();
    eventually("reading again", Duration::from_secs(5), || {
        let mut client = client.clone();
        async move { metric_value(&mut client, &trigger()).await.ok() == Some(2) }
    })
    .await;
    scaler.stop().await.unwrap();
}

/// PgBouncer killed and started again while triggers are polled: the last good value, then
/// `Unavailable` (never 0, never another value), then the new depth once it is back; the
/// application's sessions are as clean afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pgbouncer_restart_is_unavailable_then_recovers() {
    let mut stack = Stack::start(PoolMode::Transaction, 2).await;
    stack.rows.enqueue(QUEUE, 3, None).await;
    let baseline = session_view(&stack.app().await).await;
    let scaler = stack.scaler(&[]).await;
    let mut client = scaler.client().await;
    assert_eq!(metric_value(&mut client, &trigger()).await.unwrap(), 3);

    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let poller = {
        let mut client = client.clone();
        tokio::spawn(async move {
            let mut answers: Vec<Result<i64, Code>> = Vec::new();
            // Bounded: the test stops it within a minute, or it gives up.
            for _ in 0..3000 {
                if *stopped.borrow_and_update() {
                    break;
                }
                let answer = metric_value(&mut client, &trigger())
                    .await
                    .map_err(|status| {
                        assert_eq!(status.code(), Code::Unavailable, "{status:?}");
                        status.code()
                    });
                answers.push(answer);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            answers
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    stack.bouncer.kill();
    // Down for several ticks; work arrives meanwhile.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stack.rows.enqueue(QUEUE, 2, None).await;
    stack.bouncer.start_again();
    let restarted = Instant::now();
    eventually("reading again", Duration::from_secs(10), || {
        let mut client = client.clone();
        async move { metric_value(&mut client, &trigger()).await.ok() == Some(5) }
    })
    .await;
    eprintln!(
        "reading again {:?} after PgBouncer restarted",
        restarted.elapsed()
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.send(true).unwrap();
    let answers = poller.await.expect("the poller does not panic");

    let values: Vec<i64> = answers.iter().filter_map(|a| a.ok()).collect();
    let unavailable = answers.iter().filter(|a| a.is_err()).count();
    eprintln!(
        "{} answers: {} values, {unavailable} Unavailable",
        answers.len(),
        values.len()
    );
    assert!(
        values.iter().all(|value| *value == 3 || *value == 5),
        "only the real depths: {values:?}"
    );
    assert!(
        values.windows(2).all(|pair| pair[0] <= pair[1]),
        "{values:?}"
    );
    assert!(unavailable >= 1, "Unavailable while PgBouncer was down");
    assert_eq!(values.first(), Some(&3));
    assert_eq!(values.last(), Some(&5));
    // The first Unavailable comes after the last 3, the first 5 after the last Unavailable.
    let last_three = answers.iter().rposition(|a| *a == Ok(3)).unwrap();
    let first_five = answers.iter().position(|a| *a == Ok(5)).unwrap();
    assert!(
        answers[last_three + 1..first_five]
            .iter()
            .all(|a| a.is_err()),
        "{answers:?}"
    );

    let app = stack.app().await;
    for round in 0..5 {
        app_write(&app, &format!("after-{round}"))
            .await
            .expect("the application writes after the restart");
        let changed = differences(&baseline, &session_view(&app).await);
        assert!(changed.is_empty(), "{changed:?}");
    }
    scaler.stop().await.unwrap();
}

/// Session pooling: the scaler's server connection, handed to the application once the
/// scaler lets go of it (never reset: `server_reset_query` is empty), is as the application
/// would find a new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_pooling_works_and_hands_connections_on_unchanged() {
    let mut stack = Stack::start(PoolMode::Session, 2).await;
    stack.rows.enqueue(QUEUE, 4, None).await;
    let baseline = session_view(&stack.app().await).await;
    // One connection for the scaler, the other for the application.
    let scaler = stack.scaler(&[("PGQS_POOL_MAX_SIZE", "1")]).await;
    let mut client = scaler.client().await;
    assert_eq!(metric_value(&mut client, &trigger()).await.unwrap(), 4);
    share_the_pool(&stack, &scaler, &baseline, Duration::from_secs(2)).await;
    let app = stack.app().await;
    assert!(differences(&baseline, &session_view(&app).await).is_empty());
    scaler.stop().await.unwrap();
    // The application now holds one server connection; a second client gets the scaler's.
    let next = stack.app().await;
    let changed = differences(&baseline, &session_view(&next).await);
    assert!(changed.is_empty(), "{changed:?}");
    app_write(&next, "after-scaler")
        .await
        .expect("a write on the scaler's old server connection");
}

/// Statement pooling refuses transactions of several statements, and every read is one
/// (its limits are local to it): the scaler answers `Unavailable` with PgBouncer's reason,
/// never a value, and the application sharing the pool is unaffected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statement_pooling_is_unavailable_with_the_reason_and_harms_nobody() {
    let mut stack = Stack::start(PoolMode::Statement, 1).await;
    stack.rows.enqueue(QUEUE, 1, None).await;
    let app = stack.app().await;
    let baseline = session_view(&app).await;
    let scaler = stack.scaler(&[]).await;
    let mut client = scaler.client().await;
    let status = metric_value(&mut client, &trigger())
        .await
        .expect_err("no value through statement pooling");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    eprintln!("through statement pooling: {}", status.message());
    assert!(
        status.message().contains("statement pooling"),
        "{}",
        status.message()
    );
    for round in 0..10 {
        app_write(&app, &format!("app-{round}"))
            .await
            .expect("the application's writes succeed");
        let changed = differences(&baseline, &session_view(&app).await);
        assert!(changed.is_empty(), "{changed:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    scaler.stop().await.unwrap();
}
