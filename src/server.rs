//! [`run`]: serves gRPC and HTTP on already-bound listeners until the shutdown future
//! completes, then drains: readiness turns NOT_SERVING, streams end with OK, and the
//! listeners close, all within the grace period.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::service::interceptor::InterceptedService;
use tonic_health::ServingStatus;

use crate::caps::CallCaps;
use crate::config::Settings;
use crate::grpc::hygiene::{Guarded, mark_call};
use crate::grpc::proto::FILE_DESCRIPTOR_SET;
use crate::grpc::proto::external_scaler_server::ExternalScalerServer;
use crate::grpc::scaler::ScalerService;
use crate::grpc::tls::{ReloadingTls, TlsError};
use crate::http::{self, HttpState};
use crate::metrics::Metrics;
use crate::snapshot::Snapshots;

/// gRPC health service name that turns NOT_SERVING only if the process is broken.
pub const LIVENESS: &str = "liveness";
/// gRPC health service name that turns NOT_SERVING as soon as shutdown begins.
pub const READINESS: &str = "readiness";

/// How often an idle HTTP/2 connection is pinged.
const HTTP2_KEEPALIVE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(30);
/// How long a ping may go unanswered before the connection is closed.
const HTTP2_KEEPALIVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The HTTP/2 connection window: room for 10,000 streams opening at once (see where it is
/// set). Only memory the peer actually fills is used.
const CONNECTION_WINDOW: u32 = 8 * 1024 * 1024;

/// The sockets the scaler serves on, bound by the caller (port 0 in tests).
#[derive(Debug)]
pub struct Listeners {
    /// KEDA's `ExternalScaler`, health and reflection.
    pub grpc: TcpListener,
    /// Metrics and HTTP health.
    pub http: TcpListener,
}

/// Why the server stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The gRPC transport failed.
    #[error("grpc server: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// The HTTP server failed.
    #[error("http server: {0}")]
    Http(#[from] std::io::Error),
    /// Reflection could not be set up from the embedded descriptors.
    #[error("grpc reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// The TLS files are unusable.
    #[error("grpc tls: {0}")]
    Tls(#[from] TlsError),
}

type Serving = Pin<Box<dyn Future<Output = Result<(), tonic::transport::Error>> + Send>>;

/// Serves until `shutdown` completes, then drains within `settings.shutdown_grace_period`.
pub async fn run(
    settings: Settings,
    listeners: Listeners,
    shutdown: impl Future<Output = ()>,
) -> Result<(), RunError> {
    let tls = settings.tls.as_ref().map(ReloadingTls::load).transpose()?;
    let (stopping_sender, stopping) = watch::channel(false);
    let (ready_sender, ready) = watch::channel(true);
    let metrics = Arc::new(Metrics::new());
    let snapshots = Snapshots::new(
        settings.refresh.clone(),
        settings.pool.clone(),
        settings.caps,
        settings.databases.clone(),
        stopping.clone(),
        metrics.clone(),
    );

    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<ExternalScalerServer<ScalerService>>()
        .await;
    for name in ["", LIVENESS, READINESS] {
        health
            .set_service_status(name, ServingStatus::Serving)
            .await;
    }
    // v1 for current clients (grpcurl), v1alpha for the many that still speak only it.
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection().build_v1()?;
    let reflection_v1alpha = reflection().build_v1alpha()?;
    let call_caps = CallCaps::new(settings.caps);
    let scaler = ExternalScalerServer::with_interceptor(
        ScalerService::new(
            snapshots.clone(),
            settings.access.clone(),
            call_caps.clone(),
            metrics.clone(),
            stopping.clone(),
        ),
        mark_call,
    );
    let router = tonic::transport::Server::builder()
        .timeout(settings.rpc_timeout)
        // KEDA keeps one connection with long-lived streams open; pings find a peer that
        // vanished without closing it, so its streams do not keep databases polled.
        .http2_keepalive_interval(Some(HTTP2_KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(HTTP2_KEEPALIVE_TIMEOUT))
        // KEDA multiplexes every ScaledObject's stream over one connection and opens them
        // all at once when it starts. Each opening carries one small DATA frame, which h2
        // counts against a flood budget of half the connection window until the call reads
        // it; with the default 64 KiB window a burst of a few hundred streams is taken for a
        // flood and the whole connection is closed (GOAWAY ENHANCE_YOUR_CALM).
        .initial_connection_window_size(Some(CONNECTION_WINDOW))
        .add_service(InterceptedService::new(health_service, mark_call))
        .add_service(InterceptedService::new(reflection_v1, mark_call))
        .add_service(InterceptedService::new(reflection_v1alpha, mark_call))
        .add_service(scaler);
    let mut grpc_stopping = stopping.clone();
    let grpc_stopped = async move { crate::sync::until_set(&mut grpc_stopping).await };
    let hygiene = settings.hygiene;
    let connection_metrics = metrics.clone();
    let grpc: Serving = match tls {
        Some(tls) => {
            let incoming = tls
                .incoming(listeners.grpc, stopping.clone())
                .map(move |accepted| {
                    accepted.map(|stream| {
                        let peer = stream.get_ref().0.peer_addr().ok();
                        Guarded::new(stream, peer, hygiene, connection_metrics.clone())
                    })
                });
            Box::pin(router.serve_with_incoming_shutdown(incoming, grpc_stopped))
        }
        None => {
            let incoming = TcpListenerStream::new(listeners.grpc).map(move |accepted| {
                accepted.map(|stream| {
                    let peer = stream.peer_addr().ok();
                    Guarded::new(stream, peer, hygiene, connection_metrics.clone())
                })
            });
            Box::pin(router.serve_with_incoming_shutdown(incoming, grpc_stopped))
        }
    };
    let http_state = HttpState {
        metrics,
        snapshots,
        call_caps,
        ready,
    };
    let mut http_stopping = stopping.clone();
    let http_stopped = async move { crate::sync::until_set(&mut http_stopping).await };
    let http = http::serve(
        listeners.http,
        http::router(http_state),
        settings.hygiene.handshake_timeout,
        http_stopped,
    );
    let servers = async {
        tokio::try_join!(async { grpc.await.map_err(RunError::from) }, async {
            http.await.map_err(RunError::from)
        })
    };
    tokio::pin!(servers);

    tokio::select! {
        result = &mut servers => return result.map(drop),
        () = shutdown => {}
    }
    tracing::info!(grace_period = ?settings.shutdown_grace_period, "shutting down");
    let stop_accepting = async {
        // Readiness first, so that load balancers stop sending calls before the
        // listeners close.
        let _ = ready_sender.send(false);
        for name in ["", READINESS] {
            health
                .set_service_status(name, ServingStatus::NotServing)
                .await;
        }
        health
            .set_not_serving::<ExternalScalerServer<ScalerService>>()
            .await;
        tokio::time::sleep(settings.drain_delay).await;
        let _ = stopping_sender.send(true);
    };
    // The servers keep accepting and answering while readiness is down.
    let drain = async { tokio::join!(stop_accepting, &mut servers).1 };
    match tokio::time::timeout(settings.shutdown_grace_period, drain).await {
        Ok(result) => result.map(drop),
        Err(_) => {
            tracing::warn!("calls still open after the grace period; stopping anyway");
            Ok(())
        }
    }
}
