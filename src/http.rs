//! The plain-HTTP side port: `/metrics` (Prometheus text), `/healthz` (the process runs)
//! and `/readyz` (it accepts new work; 503 from the moment shutdown begins). Served over
//! HTTP/1.1 with a deadline for every request's headers, which also closes keep-alive
//! connections idle for that long.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::sync::watch;

use crate::caps::{CallCaps, CapUse};
use crate::metrics::Metrics;
use crate::snapshot::Snapshots;

/// What the HTTP handlers read.
#[derive(Clone)]
pub(crate) struct HttpState {
    /// Metrics to render.
    pub metrics: Arc<Metrics>,
    /// Sources whose gauges are rendered.
    pub snapshots: Snapshots,
    /// Stream and call caps whose use is rendered.
    pub call_caps: CallCaps,
    /// True while the scaler accepts new work.
    pub ready: watch::Receiver<bool>,
}

/// The HTTP routes.
pub(crate) fn router(state: HttpState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(state)
}

async fn metrics(State(state): State<HttpState>) -> impl IntoResponse {
    let caps: Vec<CapUse> = state
        .snapshots
        .cap_usage()
        .into_iter()
        .chain(state.call_caps.usage())
        .collect();
    let body = state.metrics.render(&state.snapshots.overview(), &caps);
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
}

async fn readyz(State(state): State<HttpState>) -> impl IntoResponse {
    if *state.ready.borrow() {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n")
    }
}

/// Serves `router` on `listener` until `shutdown` completes, then lets open requests finish.
/// A client must send each request's headers within `header_timeout` of connecting (or of
/// its previous response), so slow or silent clients cannot hold connections.
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    header_timeout: std::time::Duration,
    shutdown: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    // Out of file descriptors, say: pause rather than spin.
                    tracing::warn!(%error, "accepting an HTTP connection failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let service = hyper_util::service::TowerToHyperService::new(router.clone());
        let connection = builder.serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "HTTP connection closed");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}
