//! Faults between the scaler and Postgres: a hung database, reset connections, a Postgres
//! restart, added latency, and a connection whose path died silently. The scaler reads
//! Postgres through a small TCP proxy (`common::proxy`) that the test switches at run time;
//! the test writes its DBOS rows straight to Postgres, so the database moves on while the
//! scaler cannot see it.
//!
//! What must hold throughout: only a value the database really had is served, and only while
//! it is fresh (never a 0 or another made-up number); otherwise `Unavailable`;
//! `GetMetricSpec` answers whatever the database does; and once the database can be read
//! again, the current value is back within two refresh ticks.
//!
//! Time bounds come from the settings below, plus [`SLACK`] for scheduling on a busy machine.

mod common;

use std::time::{Duration, Instant};

use common::postgres::Cluster;
use common::proxy::{Mode, Proxy};
use common::{
    Fixture, Server, TestScaler, Workflows, eventually, is_active, next_activity, open_stream,
    scaled_object,
};
use pg_queue_scaler::grpc::proto::external_scaler_client::ExternalScalerClient;
use pg_queue_scaler::grpc::proto::{GetMetricsRequest, ScaledObjectRef};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::transport::Channel;
use tonic::{Code, Status};

/// `refresh_interval` of every scaler here.
const REFRESH: Duration = Duration::from_millis(200);
/// What a bound derived from the settings may be late by: a tick's scheduling, a new
/// connection (a Postgres backend to start) and a read, and a gRPC round trip, on a 2-core
/// machine running other tests. Unloaded, recoveries take 50-450ms of their 400ms + SLACK.
const SLACK: Duration = Duration::from_millis(800);
/// Time between two looks at a trigger.
const POLL: Duration = Duration::from_millis(25);
/// Any single RPC answers within this, whatever the database does.
const RPC_BOUND: Duration = Duration::from_secs(5);

type Client = ExternalScalerClient<Channel>;

/// A scaler reading `url` (the proxy) as its default database, refreshing every
/// [`REFRESH`], with the given `stale_after` and `read_timeout`.
async fn scaler(url: &str, stale_after: Duration, read_timeout: Duration) -> TestScaler {
    let millis = |duration: Duration| format!("{}ms", duration.as_millis());
    TestScaler::start(&[
        ("PGQS_DATABASE_URL", url),
        ("PGQS_REFRESH_INTERVAL", &millis(REFRESH)),
        ("PGQS_STALE_AFTER", &millis(stale_after)),
        ("PGQS_READ_TIMEOUT", &millis(read_timeout)),
    ])
    .await
}

/// A queue `q` with `depth` waiting items in a fresh DBOS 3 database; returns its URL and a
/// writer connected straight to Postgres.
async fn queue_with(server: &Server, depth: u32) -> (String, Workflows) {
    let url = server.dbos_database(Fixture::Py340).await;
    let mut rows = Workflows::new(&url, Fixture::Py340).await;
    rows.register_queue("q", Some(1)).await;
    if depth > 0 {
        rows.enqueue("q", depth, None).await;
    }
    (url, rows)
}

/// The trigger on queue `q`: desired replicas = depth (one item per worker).
fn trigger() -> ScaledObjectRef {
    scaled_object("worker", &[("queue", "q"), ("workerConcurrency", "1")])
}

async fn bounded<T>(call: impl Future<Output = T>) -> T {
    tokio::time::timeout(RPC_BOUND, call)
        .await
        .expect("every call answers within 5s, whatever the database does")
}

/// One look at the trigger as KEDA takes it: `GetMetricSpec`, which must answer whatever
/// the database does, then `GetMetrics` by that name.
async fn look(client: &mut Client, trigger: &ScaledObjectRef) -> Result<i64, Status> {
    let asked = Instant::now();
    let spec = bounded(client.get_metric_spec(trigger.clone()))
        .await
        .expect("GetMetricSpec answers without the database")
        .into_inner();
    assert!(
        asked.elapsed() < Duration::from_secs(1),
        "GetMetricSpec answers at once, not after {:?}",
        asked.elapsed()
    );
    assert_eq!(spec.metric_specs.len(), 1);
    assert_eq!(spec.metric_specs[0].target_size, 1);
    let name = spec.metric_specs[0].metric_name.clone();
    let values = bounded(client.get_metrics(GetMetricsRequest {
        scaled_object_ref: Some(trigger.clone()),
        metric_name: name,
    }))
    .await?
    .into_inner();
    assert_eq!(values.metric_values.len(), 1);
    Ok(values.metric_values[0].metric_value)
}

/// Looks at the trigger every [`POLL`] until `done` accepts an answer, and returns how long
/// after `from` that answer came; panics if none is accepted within `within` of `from`.
/// `done` also makes the assertions every answer on the way must pass.
async fn poll_until(
    client: &mut Client,
    trigger: &ScaledObjectRef,
    from: Instant,
    within: Duration,
    what: &str,
    mut done: impl FnMut(Duration, &Result<i64, Status>) -> bool,
) -> Duration {
    loop {
        let answer = look(client, trigger).await;
        let at = from.elapsed();
        if done(at, &answer) {
            return at;
        }
        assert!(
            at < within,
            "{what}: not within {within:?} (last answer at {at:?}: {answer:?})"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// Asserts an `Unavailable` whose message contains `needle`.
fn assert_unavailable(status: &Status, needle: &str, at: Duration) {
    assert_eq!(status.code(), Code::Unavailable, "at {at:?}: {status:?}");
    assert!(
        status.message().contains(needle),
        "at {at:?}: expected {needle:?} in {:?}",
        status.message()
    );
}

/// Looks at the trigger until the first `Unavailable`, whose message must contain
/// `needle` and which must come within `within` of `from`; before it, only `last_good`
/// may be served. Returns how long after `from` it came.
async fn last_good_until_unavailable(
    client: &mut Client,
    trigger: &ScaledObjectRef,
    from: Instant,
    within: Duration,
    what: &str,
    last_good: i64,
    needle: &str,
) -> Duration {
    poll_until(
        client,
        trigger,
        from,
        within,
        what,
        |at, answer| match answer {
            Ok(value) => {
                assert_eq!(*value, last_good, "at {at:?}: only the last good value");
                false
            }
            Err(status) => {
                assert_unavailable(status, needle, at);
                true
            }
        },
    )
    .await
}

/// Looks at the trigger until `until` after `from` (bounded at 10s), asserting that every
/// answer is an `Unavailable` whose message contains `needle`.
async fn unavailable_until(
    client: &mut Client,
    trigger: &ScaledObjectRef,
    from: Instant,
    until: Duration,
    what: &str,
    needle: &str,
) {
    poll_until(
        client,
        trigger,
        from,
        Duration::from_secs(10),
        what,
        |at, answer| {
            let status = answer.as_ref().expect_err("no value during the outage");
            assert_unavailable(status, needle, at);
            at >= until
        },
    )
    .await;
}

/// Waits for the answer `expected`, and asserts it came within two refresh ticks of `from`
/// (plus [`SLACK`], plus `extra` for a fault's tail, e.g. delayed bytes still in flight).
/// Before it, only `Unavailable` or a value in `earlier` (the last reading, still fresh)
/// may come.
async fn assert_recovers(
    client: &mut Client,
    trigger: &ScaledObjectRef,
    from: Instant,
    expected: i64,
    earlier: &[i64],
    extra: Duration,
) -> Duration {
    let bound = 2 * REFRESH + extra + SLACK;
    let took = poll_until(
        client,
        trigger,
        from,
        bound,
        "the current value once the database can be read",
        |at, answer| match answer {
            Ok(value) => {
                assert!(
                    *value == expected || earlier.contains(value),
                    "at {at:?}: {value} is neither {expected} nor an earlier value {earlier:?}"
                );
                *value == expected
            }
            Err(status) => {
                assert_unavailable(status, "", at);
                false
            }
        },
    )
    .await;
    eprintln!("{expected} served {took:?} after the change (bound {bound:?})");
    took
}

/// The proxy itself, against an echo server: it forwards, holds bytes while blackholed and
/// delivers them after, adds latency, resets open and new connections, and closes
/// everything when dropped.
#[tokio::test]
async fn the_proxy_forwards_holds_delays_and_resets() {
    let echo = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let echo_addr = echo.local_addr().unwrap();
    let echo_task = tokio::spawn(async move {
        loop {
            let (mut stream, _) = echo.accept().await.unwrap();
            tokio::spawn(async move {
                let (mut read, mut write) = stream.split();
                let _ = tokio::io::copy(&mut read, &mut write).await;
            });
        }
    });
    let proxy = Proxy::start(echo_addr).await;
    assert_eq!(
        proxy.url_for("postgres://u:p@db.example:5432/x?sslmode=disable"),
        format!("postgres://u:p@{}/x?sslmode=disable", proxy.addr())
    );
    let mut buffer = [0u8; 5];

    let mut stream = tokio::net::TcpStream::connect(proxy.addr()).await.unwrap();
    stream.write_all(b"hello").await.unwrap();
    bounded(stream.read_exact(&mut buffer)).await.unwrap();
    assert_eq!(&buffer, b"hello");

    proxy.set_mode(Mode::Blackhole);
    stream.write_all(b"held!").await.unwrap();
    let hung = tokio::time::timeout(Duration::from_millis(300), stream.read_exact(&mut buffer));
    assert!(hung.await.is_err(), "nothing passes while blackholed");
    // A connection opened meanwhile is accepted and hangs too.
    let mut late = tokio::net::TcpStream::connect(proxy.addr()).await.unwrap();
    late.write_all(b"later").await.unwrap();
    proxy.set_mode(Mode::Forward);
    bounded(stream.read_exact(&mut buffer)).await.unwrap();
    assert_eq!(&buffer, b"held!", "held bytes flow again, none lost");
    bounded(late.read_exact(&mut buffer)).await.unwrap();
    assert_eq!(&buffer, b"later");

    proxy.set_mode(Mode::Delay(Duration::from_millis(150)));
    let sent = Instant::now();
    stream.write_all(b"slow!").await.unwrap();
    bounded(stream.read_exact(&mut buffer)).await.unwrap();
    assert!(
        sent.elapsed() >= Duration::from_millis(300),
        "150ms each way: {:?}",
        sent.elapsed()
    );

    proxy.set_mode(Mode::Reset);
    let error = bounded(stream.read(&mut buffer)).await.unwrap_err();
    assert_eq!(error.kind(), std::io::ErrorKind::ConnectionReset);
    let error = bounded(late.read(&mut buffer)).await.unwrap_err();
    assert_eq!(error.kind(), std::io::ErrorKind::ConnectionReset);
    let mut refused = tokio::net::TcpStream::connect(proxy.addr()).await.unwrap();
    let error = bounded(refused.read(&mut buffer)).await.unwrap_err();
    assert_eq!(error.kind(), std::io::ErrorKind::ConnectionReset);

    proxy.set_mode(Mode::Forward);
    let mut stream = tokio::net::TcpStream::connect(proxy.addr()).await.unwrap();
    stream.write_all(b"again").await.unwrap();
    bounded(stream.read_exact(&mut buffer)).await.unwrap();
    assert_eq!(&buffer, b"again");
    proxy.reset_open_connections();
    let error = bounded(stream.read(&mut buffer)).await.unwrap_err();
    assert_eq!(error.kind(), std::io::ErrorKind::ConnectionReset);

    let mut stranded = tokio::net::TcpStream::connect(proxy.addr()).await.unwrap();
    stranded.write_all(b"lost?").await.unwrap();
    bounded(stranded.read_exact(&mut buffer)).await.unwrap();
    proxy.strand_open_connections();
    stranded.write_all(b"lost!").await.unwrap();
    let hung = tokio::time::timeout(Duration::from_millis(300), stranded.read(&mut buffer));
    assert!(hung.await.is_err(), "a stranded connection stays silent");
    let mut fresh = tokio::net::TcpStream::connect(proxy.addr()).await.unwrap();
    fresh.write_all(b"fresh").await.unwrap();
    bounded(fresh.read_exact(&mut buffer)).await.unwrap();
    assert_eq!(&buffer, b"fresh", "new connections still pass");
    assert_eq!(proxy.accepted(), 6);
    eventually("the proxy to count its open connections", RPC_BOUND, || {
        let open = proxy.open();
        async move { open == 2 }
    })
    .await;

    // Dropped: its tasks end, its listener and its connections close.
    let addr = proxy.addr();
    drop(proxy);
    // (The stranded one held unread bytes, so its close is an RST.)
    for mut stream in [fresh, stranded] {
        let end = bounded(stream.read(&mut buffer)).await;
        assert!(!matches!(end, Ok(1..)), "the connection ends: {end:?}");
    }
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    echo_task.abort();
}

/// A hung database (packets go nowhere, nothing errors): the last good value is served
/// until it is `stale_after` old, then `Unavailable` says it is stale; when the hung read
/// is abandoned at `read_timeout`, that it could not be read. `GetMetricSpec` answers
/// throughout. When packets flow again, the current value is back within two ticks.
#[tokio::test]
async fn a_hung_database_serves_the_last_value_until_stale_then_unavailable() {
    const STALE_AFTER: Duration = Duration::from_secs(2);
    const READ_TIMEOUT: Duration = Duration::from_secs(4);
    let server = Server::from_env_or_private();
    let (url, mut rows) = queue_with(&server, 5).await;
    let (proxy, proxied) = Proxy::in_front_of(&url).await;
    let scaler = scaler(&proxied, STALE_AFTER, READ_TIMEOUT).await;
    let mut client = scaler.client().await;
    let trigger = trigger();
    assert_eq!(look(&mut client, &trigger).await.unwrap(), 5);

    let hung = Instant::now();
    proxy.set_mode(Mode::Blackhole);
    rows.enqueue("q", 4, None).await; // the database moves on; the scaler cannot see it

    // The last reading completed at most a tick (and a read) before the hang, so it turns
    // stale between STALE_AFTER - 2 ticks and STALE_AFTER after it.
    let stale_at = last_good_until_unavailable(
        &mut client,
        &trigger,
        hung,
        STALE_AFTER + SLACK,
        "the last good value to turn stale",
        5,
        "stale",
    )
    .await;
    assert!(
        stale_at >= STALE_AFTER - 2 * REFRESH,
        "the last good value is served until it is stale_after old, not only {stale_at:?}"
    );

    // The read hanging since the blackhole began is abandoned at READ_TIMEOUT.
    let abandoned_at = poll_until(
        &mut client,
        &trigger,
        hung,
        READ_TIMEOUT + REFRESH + SLACK,
        "the hung read to be abandoned",
        |at, answer| {
            let status = answer.as_ref().expect_err("no value once stale");
            assert_unavailable(status, "", at);
            if status.message().contains("could not be read") {
                return true;
            }
            assert_unavailable(status, "stale", at);
            false
        },
    )
    .await;
    assert!(
        abandoned_at >= READ_TIMEOUT - 2 * REFRESH,
        "a read is given read_timeout, not only {abandoned_at:?}"
    );
    eprintln!("hung: stale after {stale_at:?}, read abandoned after {abandoned_at:?}");

    let resumed = Instant::now();
    proxy.set_mode(Mode::Forward);
    assert_recovers(&mut client, &trigger, resumed, 9, &[], Duration::ZERO).await;
    assert!(bounded(is_active(&mut client, &trigger)).await.unwrap());
    scaler.stop().await.unwrap();
}

/// With `read_timeout` shorter than `stale_after`, a hung read is abandoned before the
/// reading turns stale: `Unavailable` says the database could not be read, after about
/// `read_timeout` (the last good value until then). Recovery is within two ticks.
#[tokio::test]
async fn a_hung_read_is_abandoned_after_read_timeout() {
    const STALE_AFTER: Duration = Duration::from_secs(3);
    const READ_TIMEOUT: Duration = Duration::from_secs(1);
    let server = Server::from_env_or_private();
    let (url, mut rows) = queue_with(&server, 2).await;
    let (proxy, proxied) = Proxy::in_front_of(&url).await;
    let scaler = scaler(&proxied, STALE_AFTER, READ_TIMEOUT).await;
    let mut client = scaler.client().await;
    let trigger = trigger();
    assert_eq!(look(&mut client, &trigger).await.unwrap(), 2);

    let hung = Instant::now();
    proxy.set_mode(Mode::Blackhole);
    rows.enqueue("q", 1, None).await;
    let unavailable_at = last_good_until_unavailable(
        &mut client,
        &trigger,
        hung,
        READ_TIMEOUT + REFRESH + SLACK,
        "the hung read to be abandoned",
        2,
        "could not be read",
    )
    .await;
    assert!(
        unavailable_at >= READ_TIMEOUT - 2 * REFRESH,
        "a read is given read_timeout, not only {unavailable_at:?}"
    );
    // It stays so while the database hangs (each new read hangs and is abandoned too).
    unavailable_until(
        &mut client,
        &trigger,
        hung,
        STALE_AFTER + READ_TIMEOUT,
        "the outage to go on",
        "",
    )
    .await;

    let resumed = Instant::now();
    proxy.set_mode(Mode::Forward);
    assert_recovers(&mut client, &trigger, resumed, 3, &[], Duration::ZERO).await;
    scaler.stop().await.unwrap();
}

/// Connections reset, one of them in the middle of a read, and new ones reset while the
/// fault lasts: `Unavailable` at once (not after a timeout, and never a number the
/// database did not have); a single burst of resets while forwarding costs at most a tick;
/// recovery within two ticks after forwarding resumes.
#[tokio::test]
async fn reset_connections_are_unavailable_and_recover_within_two_ticks() {
    let server = Server::from_env_or_private();
    let (url, mut rows) = queue_with(&server, 5).await;
    let (proxy, proxied) = Proxy::in_front_of(&url).await;
    // A long read_timeout and stale_after: an Unavailable soon after the reset comes from it.
    let scaler = scaler(&proxied, Duration::from_secs(5), Duration::from_secs(10)).await;
    let mut client = scaler.client().await;
    let trigger = trigger();
    assert_eq!(look(&mut client, &trigger).await.unwrap(), 5);

    // Catch a read in the middle: hold its bytes for a tick and a half, then reset.
    proxy.set_mode(Mode::Blackhole);
    tokio::time::sleep(REFRESH * 3 / 2).await;
    let reset = Instant::now();
    proxy.set_mode(Mode::Reset);
    let unavailable_at = last_good_until_unavailable(
        &mut client,
        &trigger,
        reset,
        REFRESH + SLACK,
        "the reset to be reported",
        5,
        "could not be read",
    )
    .await;
    eprintln!("reset reported after {unavailable_at:?}");

    // While every connection is reset: Unavailable, whatever the database holds.
    rows.enqueue("q", 4, None).await;
    unavailable_until(
        &mut client,
        &trigger,
        reset,
        Duration::from_millis(1500),
        "the outage to go on",
        "could not be read",
    )
    .await;
    assert!(
        proxy.accepted() > 2,
        "the scaler kept trying new connections"
    );

    let resumed = Instant::now();
    proxy.set_mode(Mode::Forward);
    assert_recovers(&mut client, &trigger, resumed, 9, &[], Duration::ZERO).await;

    // One burst of resets while forwarding (a pooler or server dropping its connections):
    // at worst one failed read, then the value again, and never another number.
    let burst = Instant::now();
    proxy.reset_open_connections();
    poll_until(
        &mut client,
        &trigger,
        burst,
        Duration::from_secs(10),
        "a second of looks after the burst",
        |at, answer| {
            match answer {
                Ok(value) => assert_eq!(*value, 9, "at {at:?}"),
                Err(status) => {
                    assert!(
                        at <= 2 * REFRESH + SLACK,
                        "at {at:?}: still failing: {status:?}"
                    );
                    assert_unavailable(status, "could not be read", at);
                }
            }
            at >= Duration::from_secs(1)
        },
    )
    .await;
    scaler.stop().await.unwrap();
}

/// Postgres stops (immediate shutdown: every connection dropped) and starts again:
/// `Unavailable` while it is down, the right value within two ticks of it accepting
/// connections again, and later changes followed as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_restart_is_unavailable_then_read_again() {
    const STALE_AFTER: Duration = Duration::from_secs(2);
    let server = Server::Private(Cluster::start());
    let Server::Private(cluster) = &server else {
        unreachable!()
    };
    let (url, mut rows) = queue_with(&server, 0).await;
    let ids = rows.add(&common::Work::enqueued("q"), 3).await;
    drop(rows); // its connection does not survive the restart
    let scaler = scaler(&url, STALE_AFTER, Duration::from_secs(2)).await;
    let mut client = scaler.client().await;
    let trigger = trigger();
    assert_eq!(look(&mut client, &trigger).await.unwrap(), 3);

    tokio::task::block_in_place(|| cluster.stop_server());
    let stopped = Instant::now();
    let unavailable_at = last_good_until_unavailable(
        &mut client,
        &trigger,
        stopped,
        REFRESH + SLACK,
        "the stop to be reported",
        3,
        "could not be read",
    )
    .await;
    eprintln!("stop reported after {unavailable_at:?}");
    unavailable_until(
        &mut client,
        &trigger,
        stopped,
        STALE_AFTER + REFRESH,
        "the outage to go on past stale_after",
        "",
    )
    .await;

    tokio::task::block_in_place(|| cluster.start_server());
    let started = Instant::now();
    assert_recovers(&mut client, &trigger, started, 3, &[], Duration::ZERO).await;

    // A worker finishes one item: followed as before.
    Workflows::new(&url, Fixture::Py340)
        .await
        .finish(&ids[..1])
        .await;
    let finished = Instant::now();
    assert_recovers(&mut client, &trigger, finished, 2, &[3], Duration::ZERO).await;
    scaler.stop().await.unwrap();
}

/// Added latency: below `read_timeout` the right value keeps coming (and follows the
/// database); above it, `Unavailable` rather than a wrong value, until the latency drops.
#[tokio::test]
async fn latency_below_read_timeout_is_served_and_above_it_unavailable() {
    const STALE_AFTER: Duration = Duration::from_secs(2);
    const READ_TIMEOUT: Duration = Duration::from_secs(1);
    const SLOW: Duration = Duration::from_millis(100);
    const TOO_SLOW: Duration = Duration::from_millis(1500);
    let server = Server::from_env_or_private();
    let (url, mut rows) = queue_with(&server, 2).await;
    let (proxy, proxied) = Proxy::in_front_of(&url).await;
    let scaler = scaler(&proxied, STALE_AFTER, READ_TIMEOUT).await;
    let mut client = scaler.client().await;
    let trigger = trigger();
    assert_eq!(look(&mut client, &trigger).await.unwrap(), 2);

    // 100ms each way: a read's round trip takes 200ms more, well within read_timeout.
    proxy.set_mode(Mode::Delay(SLOW));
    rows.enqueue("q", 1, None).await;
    let enqueued = Instant::now();
    assert_recovers(&mut client, &trigger, enqueued, 3, &[2], 2 * SLOW).await;
    poll_until(
        &mut client,
        &trigger,
        enqueued,
        Duration::from_secs(10),
        "the slow database to stay readable past stale_after",
        |at, answer| {
            assert_eq!(answer.as_ref().ok(), Some(&3), "at {at:?}: {answer:?}");
            at >= STALE_AFTER + REFRESH
        },
    )
    .await;

    // 1.5s each way: no read can finish within read_timeout.
    let slowed = Instant::now();
    proxy.set_mode(Mode::Delay(TOO_SLOW));
    rows.enqueue("q", 2, None).await;
    let unavailable_at = last_good_until_unavailable(
        &mut client,
        &trigger,
        slowed,
        READ_TIMEOUT + 2 * SLOW + REFRESH + SLACK,
        "reads slower than read_timeout to be reported",
        3,
        "could not be read",
    )
    .await;
    eprintln!("latency above read_timeout reported after {unavailable_at:?}");
    unavailable_until(
        &mut client,
        &trigger,
        slowed,
        STALE_AFTER + READ_TIMEOUT,
        "the outage to go on past stale_after",
        "",
    )
    .await;

    // Bytes already delayed are still on their way: allow for that tail.
    let resumed = Instant::now();
    proxy.set_mode(Mode::Forward);
    assert_recovers(&mut client, &trigger, resumed, 5, &[], TOO_SLOW).await;
    scaler.stop().await.unwrap();
}

/// A `StreamIsActive` stream stays open and silent while the database cannot be read, and
/// pushes again once it can: work enqueued during the outage wakes the workload.
#[tokio::test]
async fn a_stream_stays_open_and_silent_during_an_outage_then_pushes() {
    const STALE_AFTER: Duration = Duration::from_secs(2);
    let server = Server::from_env_or_private();
    let (url, mut rows) = queue_with(&server, 0).await;
    let (proxy, proxied) = Proxy::in_front_of(&url).await;
    let scaler = scaler(&proxied, STALE_AFTER, Duration::from_secs(2)).await;
    let mut client = scaler.client().await;
    let trigger = trigger();
    let mut stream = bounded(open_stream(&mut client, &trigger)).await;
    assert!(!next_activity(&mut stream).await, "an empty queue");

    let down = Instant::now();
    proxy.set_mode(Mode::Reset);
    rows.enqueue("q", 3, None).await;
    eventually("IsActive to report the outage", REFRESH + SLACK, || {
        let mut client = client.clone();
        let trigger = trigger.clone();
        async move {
            match bounded(is_active(&mut client, &trigger)).await {
                Ok(active) => {
                    assert!(!active, "only the last good activity");
                    false
                }
                Err(status) => {
                    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
                    true
                }
            }
        }
    })
    .await;
    // Silent and open past stale_after: no push, no error, no end.
    let silent = tokio::time::timeout(STALE_AFTER + REFRESH, stream.message()).await;
    assert!(
        silent.is_err(),
        "the stream stays silent during the outage: {silent:?}"
    );
    eprintln!("stream silent for {:?} of outage", down.elapsed());

    let resumed = Instant::now();
    proxy.set_mode(Mode::Forward);
    assert!(
        next_activity(&mut stream).await,
        "the work enqueued during the outage is pushed"
    );
    let took = resumed.elapsed();
    eprintln!("stream pushed {took:?} after the outage");
    assert!(
        took <= 2 * REFRESH + SLACK,
        "pushed within two ticks: {took:?}"
    );
    drop(stream);
    scaler.stop().await.unwrap();
}

/// The path of the scaler's open connection dies without a word (a NAT or firewall drops
/// its state, the server's host vanishes): nothing arrives on it any more, nothing errors,
/// while new connections get through. The read on it is abandoned at `read_timeout` and
/// reported; the scaler must then read on a new connection, not wait on the dead one again
/// (with the connection back in the pool, fast recycling, which only checks that the socket
/// is not closed, would hand it to every later read until the kernel gives it up: about 15
/// minutes with Linux's default `tcp_retries2`).
#[tokio::test]
async fn a_connection_that_went_silent_is_replaced() {
    const READ_TIMEOUT: Duration = Duration::from_secs(1);
    let server = Server::from_env_or_private();
    let (url, mut rows) = queue_with(&server, 2).await;
    let (proxy, proxied) = Proxy::in_front_of(&url).await;
    let scaler = scaler(&proxied, Duration::from_secs(2), READ_TIMEOUT).await;
    let mut client = scaler.client().await;
    let trigger = trigger();
    assert_eq!(look(&mut client, &trigger).await.unwrap(), 2);
    let connections = proxy.accepted();

    let silenced = Instant::now();
    proxy.strand_open_connections();
    rows.enqueue("q", 1, None).await;
    let bound = READ_TIMEOUT + 2 * REFRESH + SLACK;
    let mut last = None;
    let took = poll_until(
        &mut client,
        &trigger,
        silenced,
        Duration::from_secs(60),
        "a look",
        |at, answer| {
            match answer {
                Ok(value) => assert!(
                    *value == 2 || *value == 3,
                    "at {at:?}: only 2 or 3, got {value}"
                ),
                Err(status) => assert_unavailable(status, "could not be read", at),
            }
            last = Some(answer.clone());
            matches!(answer, Ok(3)) || at >= 3 * bound
        },
    )
    .await;
    let opened = proxy.accepted() - connections;
    eprintln!("silent connection: {took:?}, {opened} new connections, last answer {last:?}");
    assert!(
        matches!(last, Some(Ok(3))) && took <= bound,
        "the value is back within read_timeout and two ticks ({bound:?}); after {took:?} the \
         scaler had opened {opened} new connections and answered {last:?}"
    );
    scaler.stop().await.unwrap();
}
