//! The plain-HTTP side port: `/metrics` (Prometheus text), `/healthz` (the process runs)
//! and `/readyz` (it accepts new work; 503 from the moment shutdown begins).

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
pub struct HttpState {
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
pub fn router(state: HttpState) -> Router {
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
