//! [`run`]: serves gRPC on an already-bound listener until the shutdown future completes,
//! then drains within the grace period.

use std::future::Future;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_stream::wrappers::TcpListenerStream;

use crate::config::Settings;
use crate::grpc::proto::FILE_DESCRIPTOR_SET;
use crate::grpc::proto::external_scaler_server::ExternalScalerServer;
use crate::grpc::scaler::ScalerService;
use crate::snapshot::Snapshots;

/// The sockets the scaler serves on, bound by the caller (port 0 in tests).
#[derive(Debug)]
pub struct Listeners {
    /// KEDA's `ExternalScaler`, health and reflection.
    pub grpc: TcpListener,
}

/// Why the server stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The gRPC transport failed.
    #[error("grpc server: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// Reflection could not be set up from the embedded descriptors.
    #[error("grpc reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
}

/// Serves until `shutdown` completes, then ends every stream cleanly and stops, waiting at
/// most `settings.shutdown_grace_period` for in-flight calls.
pub async fn run(
    settings: Settings,
    listeners: Listeners,
    shutdown: impl Future<Output = ()>,
) -> Result<(), RunError> {
    let (stopping_sender, stopping) = watch::channel(false);
    let snapshots = Snapshots::new(
        settings.refresh.clone(),
        settings.pool.clone(),
        settings.databases.clone(),
        stopping.clone(),
    );
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<ExternalScalerServer<ScalerService>>()
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let scaler = ExternalScalerServer::new(ScalerService::new(snapshots, stopping.clone()));

    let mut server_stopping = stopping.clone();
    let server = tonic::transport::Server::builder()
        .add_service(health_service)
        .add_service(reflection)
        .add_service(scaler)
        .serve_with_incoming_shutdown(TcpListenerStream::new(listeners.grpc), async move {
            let _ = server_stopping.wait_for(|stopping| *stopping).await;
        });
    tokio::pin!(server);

    tokio::select! {
        result = &mut server => return result.map_err(RunError::from),
        () = shutdown => {}
    }
    tracing::info!(grace_period = ?settings.shutdown_grace_period, "shutting down");
    let _ = stopping_sender.send(true);
    match tokio::time::timeout(settings.shutdown_grace_period, server).await {
        Ok(result) => result.map_err(RunError::from),
        Err(_) => {
            tracing::warn!("calls still open after the grace period; stopping anyway");
            Ok(())
        }
    }
}
