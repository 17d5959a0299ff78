//! Connection hygiene on both ports: silent, half-open and slow connections are closed by
//! their deadlines, idle gRPC connections are closed, and KEDA's long-lived stream outlives
//! every timeout and still gets its push.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{
    Fixture, Server, TestScaler, Workflows, http_get, next_activity, open_stream, scaled_object,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Short deadlines so that the tests do not wait long.
const FAST: [(&str, &str); 2] = [
    ("PGQS_HANDSHAKE_TIMEOUT", "1s"),
    ("PGQS_IDLE_TIMEOUT", "2s"),
];

/// Connects to `addr`, sends `bytes`, and waits (at most 10 s) for the server to close the
/// connection; returns how long that took.
async fn closed_after(addr: SocketAddr, bytes: &[u8]) -> Duration {
    let started = tokio::time::Instant::now();
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(bytes).await.expect("send");
    let mut sink = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut sink))
        .await
        .expect("the server closes the connection within 10s")
        .ok();
    started.elapsed()
}

/// On the gRPC port, a silent connection and a half-sent HTTP/2 preface are closed after
/// `handshake_timeout`; on the HTTP port, a silent connection and half-sent headers too.
#[tokio::test]
async fn silent_and_half_open_connections_are_closed() {
    let port = common::postgres::free_port();
    let unused = format!("postgres://u:p@127.0.0.1:{port}/none");
    let mut env = vec![("PGQS_DATABASE_URL", unused.as_str())];
    env.extend(FAST);
    let scaler = TestScaler::start(&env).await;
    for (addr, bytes) in [
        (scaler.addr, &b""[..]),
        (scaler.addr, b"PRI * HTTP/2.0\r\n"),
        (scaler.http_addr, b""),
        (scaler.http_addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n"),
    ] {
        let took = closed_after(addr, bytes).await;
        assert!(
            took >= Duration::from_millis(900),
            "not before the deadline: {took:?}"
        );
    }
    let (_, text) = http_get(scaler.http_addr, "/metrics").await;
    assert!(
        text.contains(
            "pg_queue_scaler_grpc_connections_closed_total{reason=\"handshake_timeout\"} 2"
        ),
        "{text}"
    );
    scaler.stop().await.unwrap();
}

/// A gRPC connection that made a call and then holds no stream is closed after
/// `idle_timeout`; a connection with an open stream is not, and the stream still gets its
/// push after idling past every timeout.
#[tokio::test]
async fn idle_connections_close_and_streams_outlive_every_timeout() {
    let server = Server::from_env_or_private();
    let url = server.dbos_database(Fixture::Py340).await;
    let mut rows = Workflows::new(&url, Fixture::Py340).await;
    rows.register_queue("wake", Some(1)).await;
    let mut env = vec![
        ("PGQS_DATABASE_URL", url.as_str()),
        ("PGQS_REFRESH_INTERVAL", "200ms"),
    ];
    env.extend(FAST);
    let scaler = TestScaler::start(&env).await;
    let trigger = scaled_object("w", &[("queue", "wake")]);

    let mut caller = scaler.client().await;
    assert!(
        !caller
            .is_active(trigger.clone())
            .await
            .unwrap()
            .into_inner()
            .result
    );
    let mut streamer = scaler.client().await;
    let mut stream = open_stream(&mut streamer, &trigger).await;
    assert!(
        !next_activity(&mut stream).await,
        "an empty queue is inactive"
    );

    tokio::time::sleep(Duration::from_secs(4)).await;
    let (_, text) = http_get(scaler.http_addr, "/metrics").await;
    assert!(
        text.contains("pg_queue_scaler_grpc_connections_closed_total{reason=\"idle_timeout\"} 1"),
        "only the caller's connection idled out:\n{text}"
    );
    rows.enqueue("wake", 1, None).await;
    assert!(
        next_activity(&mut stream).await,
        "a stream idle past every timeout still gets its push"
    );
    // The caller's client reconnects by itself.
    assert!(caller.is_active(trigger).await.unwrap().into_inner().result);
    scaler.stop().await.unwrap();
}
