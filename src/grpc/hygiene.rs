//! Connection hygiene on the gRPC port: a new connection must send its first call (HTTP/2
//! preface included) within `handshake_timeout`, and a connection with no open stream and no
//! call for `idle_timeout` is closed. KEDA's long-lived connection, with its streams, is never
//! idle; dead peers are found by HTTP/2 keepalive pings (set where the server is built).
//!
//! Each accepted connection is wrapped in [`Guarded`], whose reads fail once a deadline
//! passes (tonic and hyper then close the connection). Calls mark their connection's
//! [`Activity`] through [`mark_call`], an interceptor; streams hold it with
//! [`Activity::hold`] for as long as they are open.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};
use tonic::transport::server::Connected;

use crate::metrics::Metrics;
use crate::sync::lock;

/// Turns off Nagle's algorithm on an accepted connection, as tonic does for the listeners it
/// accepts on itself (it cannot for ours): a small response would otherwise wait for the
/// client's delayed ACK, about 40 ms on Linux.
pub(crate) fn no_delay(stream: &TcpStream) {
    if let Err(error) = stream.set_nodelay(true) {
        tracing::debug!(%error, "cannot set TCP_NODELAY");
    }
}

/// The deadlines a connection must meet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HygieneSettings {
    /// From accept to the first call.
    pub handshake_timeout: Duration,
    /// Without an open stream or a call, a connection stays open this long.
    pub idle_timeout: Duration,
}

/// Why a connection was closed: no call within `handshake_timeout`.
pub(crate) const HANDSHAKE: &str = "handshake_timeout";
/// Why a connection was closed: no stream and no call for `idle_timeout`.
pub(crate) const IDLE: &str = "idle_timeout";

/// What one connection is doing, shared by its reader and its calls.
#[derive(Debug)]
pub(crate) struct Activity {
    accepted: Instant,
    called: AtomicBool,
    last_call: Mutex<Instant>,
    streams: AtomicUsize,
}

impl Activity {
    fn new() -> Arc<Self> {
        let now = Instant::now();
        Arc::new(Self {
            accepted: now,
            called: AtomicBool::new(false),
            last_call: Mutex::new(now),
            streams: AtomicUsize::new(0),
        })
    }

    /// Records a call on the connection.
    fn call(&self) {
        self.called.store(true, Ordering::SeqCst);
        *lock(&self.last_call) = Instant::now();
    }

    /// Keeps the connection open while the returned guard lives (an open stream).
    pub(crate) fn hold(self: &Arc<Self>) -> StreamHold {
        self.call();
        self.streams.fetch_add(1, Ordering::SeqCst);
        StreamHold(self.clone())
    }

    /// When the connection must be closed unless something happens before, or why it must
    /// be closed now; `None` while a stream holds it.
    fn deadline(&self, settings: &HygieneSettings) -> Result<Option<Instant>, &'static str> {
        let (deadline, reason) = if !self.called.load(Ordering::SeqCst) {
            (self.accepted + settings.handshake_timeout, HANDSHAKE)
        } else if self.streams.load(Ordering::SeqCst) == 0 {
            (*lock(&self.last_call) + settings.idle_timeout, IDLE)
        } else {
            return Ok(None);
        };
        if Instant::now() >= deadline {
            Err(reason)
        } else {
            Ok(Some(deadline))
        }
    }
}

/// An open stream's hold on its connection.
pub(crate) struct StreamHold(Arc<Activity>);

impl Drop for StreamHold {
    fn drop(&mut self) {
        self.0.call();
        self.0.streams.fetch_sub(1, Ordering::SeqCst);
    }
}

/// What a call learns about its connection (in the request's extensions).
#[derive(Debug, Clone)]
pub(crate) struct ConnectionInfo {
    /// The peer, when the transport knows it.
    pub remote_addr: Option<SocketAddr>,
    /// The connection's activity.
    pub activity: Arc<Activity>,
}

/// The interceptor every service of the gRPC port runs: marks the call's connection active.
#[allow(clippy::result_large_err)] // tonic's interceptor signature
pub(crate) fn mark_call(request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
    if let Some(info) = request.extensions().get::<ConnectionInfo>() {
        info.activity.call();
    }
    Ok(request)
}

/// An accepted connection whose reads fail once it misses a deadline.
pub(crate) struct Guarded<T> {
    io: T,
    remote_addr: Option<SocketAddr>,
    activity: Arc<Activity>,
    settings: HygieneSettings,
    timer: Pin<Box<Sleep>>,
    metrics: Arc<Metrics>,
}

impl<T> Guarded<T> {
    /// Wraps a connection accepted now from `remote_addr`; closures are counted in `metrics`.
    pub(crate) fn new(
        io: T,
        remote_addr: Option<SocketAddr>,
        settings: HygieneSettings,
        metrics: Arc<Metrics>,
    ) -> Self {
        let activity = Activity::new();
        Self {
            io,
            remote_addr,
            metrics,
            timer: Box::pin(tokio::time::sleep_until(
                activity.accepted + settings.handshake_timeout,
            )),
            activity,
            settings,
        }
    }
}

impl<T> Connected for Guarded<T> {
    type ConnectInfo = ConnectionInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        ConnectionInfo {
            remote_addr: self.remote_addr,
            activity: self.activity.clone(),
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Guarded<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Poll::Ready(result) = Pin::new(&mut this.io).poll_read(cx, buf) {
            return Poll::Ready(result);
        }
        // Nothing to read: the connection waits for its peer. Wake up at its deadline.
        loop {
            match this.activity.deadline(&this.settings) {
                Err(reason) => {
                    tracing::debug!(peer = ?this.remote_addr, reason, "closing a gRPC connection");
                    this.metrics.record_connection_closed(reason);
                    return Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, reason)));
                }
                // Held by a stream: look again when a stream could have ended.
                Ok(None) => {
                    let later = Instant::now() + this.settings.idle_timeout;
                    this.timer.as_mut().reset(later);
                }
                Ok(Some(deadline)) => this.timer.as_mut().reset(deadline),
            }
            if this.timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Guarded<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn accepted_connections_send_without_waiting_for_acks() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let _client = TcpStream::connect(address).await.unwrap();
        let (accepted, _) = listener.accept().await.unwrap();
        assert!(!accepted.nodelay().unwrap(), "Linux accepts with Nagle on");
        no_delay(&accepted);
        assert!(accepted.nodelay().unwrap());
    }

    const SETTINGS: HygieneSettings = HygieneSettings {
        handshake_timeout: Duration::from_secs(2),
        idle_timeout: Duration::from_secs(10),
    };

    #[tokio::test(start_paused = true)]
    async fn a_connection_must_call_in_time_and_may_then_idle_a_while() {
        let activity = Activity::new();
        assert!(activity.deadline(&SETTINGS).is_ok());
        tokio::time::advance(Duration::from_secs(3)).await;
        assert_eq!(activity.deadline(&SETTINGS), Err(HANDSHAKE));
        activity.call();
        assert!(activity.deadline(&SETTINGS).unwrap().is_some());
        tokio::time::advance(Duration::from_secs(11)).await;
        assert_eq!(activity.deadline(&SETTINGS), Err(IDLE));
    }

    #[tokio::test(start_paused = true)]
    async fn an_open_stream_keeps_its_connection() {
        let activity = Activity::new();
        let hold = activity.hold();
        tokio::time::advance(Duration::from_secs(3_600)).await;
        assert_eq!(activity.deadline(&SETTINGS), Ok(None));
        drop(hold);
        assert!(
            activity.deadline(&SETTINGS).unwrap().is_some(),
            "idle from now on"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_connection_fails_its_read_at_the_deadline() {
        let (client, server) = tokio::io::duplex(64);
        let metrics = Arc::new(Metrics::new());
        let mut guarded = Guarded::new(server, None, SETTINGS, metrics.clone());
        let mut buf = [0u8; 8];
        let read = tokio::io::AsyncReadExt::read(&mut guarded, &mut buf);
        let error = tokio::time::timeout(Duration::from_secs(5), read)
            .await
            .expect("the read fails by the deadline")
            .unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        let text = metrics.render(&[], &[]);
        assert!(
            text.contains(
                "pg_queue_scaler_grpc_connections_closed_total{reason=\"handshake_timeout\"} 1"
            ),
            "{text}"
        );
        drop(client);
    }
}
