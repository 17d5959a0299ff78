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
use tonic::transport::server::Router;
use tonic_health::ServingStatus;
use tonic_health::pb::health_server::{Health, HealthServer};
use tonic_health::server::HealthReporter;

use crate::caps::CallCaps;
use crate::config::Settings;
use crate::grpc::hygiene::{Guarded, mark_call, no_delay};
use crate::grpc::inspection::InspectionService;
use crate::grpc::pgqueuescaler::v1::inspection_server::InspectionServer;
use crate::grpc::proto::FILE_DESCRIPTOR_SET;
use crate::grpc::proto::external_scaler_server::ExternalScalerServer;
use crate::grpc::scaler::ScalerService;
use crate::grpc::tls::{ReloadingTls, TlsError};
use crate::http::{self, HttpState};
use crate::metrics::Metrics;
use crate::snapshot::Snapshots;

/// gRPC health service name that turns NOT_SERVING only if the process is broken.
pub(crate) const LIVENESS: &str = "liveness";
/// gRPC health service name that turns NOT_SERVING as soon as shutdown begins.
pub(crate) const READINESS: &str = "readiness";

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

/// The parts of the running scaler that shutdown acts on.
struct Running {
    health: HealthReporter,
    /// Turns readiness off on `/readyz`.
    ready: watch::Sender<bool>,
    /// Tells the servers, streams and refresh loops to stop.
    stopping: watch::Sender<bool>,
}

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
    let (health, health_service) = serving_health().await;
    let call_caps = CallCaps::new(settings.caps);
    let scaler = ScalerService::new(
        snapshots.clone(),
        settings.access.clone(),
        call_caps.clone(),
        metrics.clone(),
        stopping.clone(),
    );
    let router = grpc_router(&settings, scaler, health_service)?;
    let grpc = serve_grpc(router, listeners.grpc, tls, &settings, &metrics, &stopping);
    let http_state = HttpState {
        metrics,
        snapshots,
        call_caps,
        ready,
    };
    let http = http::serve(
        listeners.http,
        http::router(http_state),
        settings.hygiene.handshake_timeout,
        stopped(&stopping),
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
    let running = Running {
        health,
        ready: ready_sender,
        stopping: stopping_sender,
    };
    drain(running, &settings, servers).await
}

/// The health service, every name serving.
async fn serving_health() -> (HealthReporter, HealthServer<impl Health>) {
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<ExternalScalerServer<ScalerService>>()
        .await;
    for name in ["", LIVENESS, READINESS] {
        health
            .set_service_status(name, ServingStatus::Serving)
            .await;
    }
    (health, health_service)
}

/// KEDA's service, inspection, health and reflection behind one HTTP/2 server, each call marked for
/// the connection's idle timer.
fn grpc_router(
    settings: &Settings,
    scaler: ScalerService,
    health_service: HealthServer<impl Health>,
) -> Result<Router, RunError> {
    // v1 for current clients (grpcurl), v1alpha for the many that still speak only it.
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection().build_v1()?;
    let reflection_v1alpha = reflection().build_v1alpha()?;
    Ok(tonic::transport::Server::builder()
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
        .add_service(InspectionServer::with_interceptor(
            InspectionService::new(scaler.clone()),
            mark_call,
        ))
        .add_service(ExternalScalerServer::with_interceptor(scaler, mark_call)))
}

/// Serves `router` on `listener`, plain or TLS, every connection guarded by the hygiene
/// deadlines, until `stopping` turns true.
fn serve_grpc(
    router: Router,
    listener: TcpListener,
    tls: Option<ReloadingTls>,
    settings: &Settings,
    metrics: &Arc<Metrics>,
    stopping: &watch::Receiver<bool>,
) -> Serving {
    let hygiene = settings.hygiene;
    let metrics = metrics.clone();
    match tls {
        Some(tls) => {
            let incoming = tls
                .incoming(listener, stopping.clone())
                .map(move |accepted| {
                    accepted.map(|stream| {
                        let peer = stream.get_ref().0.peer_addr().ok();
                        Guarded::new(stream, peer, hygiene, metrics.clone())
                    })
                });
            Box::pin(router.serve_with_incoming_shutdown(incoming, stopped(stopping)))
        }
        None => {
            let incoming = TcpListenerStream::new(listener).map(move |accepted| {
                accepted.map(|stream| {
                    no_delay(&stream);
                    let peer = stream.peer_addr().ok();
                    Guarded::new(stream, peer, hygiene, metrics.clone())
                })
            });
            Box::pin(router.serve_with_incoming_shutdown(incoming, stopped(stopping)))
        }
    }
}

/// Completes when `stopping` turns true.
fn stopped(stopping: &watch::Receiver<bool>) -> impl Future<Output = ()> + use<> {
    let mut stopping = stopping.clone();
    async move { crate::sync::until_set(&mut stopping).await }
}

/// Readiness down first, so that load balancers stop sending calls; after the drain delay
/// the listeners close and streams end; all within the grace period. The servers keep
/// accepting and answering while readiness is down.
async fn drain(
    running: Running,
    settings: &Settings,
    servers: Pin<&mut impl Future<Output = Result<((), ()), RunError>>>,
) -> Result<(), RunError> {
    tracing::info!(grace_period = ?settings.shutdown_grace_period, "shutting down");
    let stop_accepting = async {
        let _ = running.ready.send(false);
        for name in ["", READINESS] {
            running
                .health
                .set_service_status(name, ServingStatus::NotServing)
                .await;
        }
        running
            .health
            .set_not_serving::<ExternalScalerServer<ScalerService>>()
            .await;
        tokio::time::sleep(settings.drain_delay).await;
        let _ = running.stopping.send(true);
    };
    let drain = async { tokio::join!(stop_accepting, servers).1 };
    match tokio::time::timeout(settings.shutdown_grace_period, drain).await {
        Ok(result) => result.map(drop),
        Err(_) => {
            tracing::warn!("calls still open after the grace period; stopping anyway");
            Ok(())
        }
    }
}
