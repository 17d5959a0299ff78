//! The gRPC surface: KEDA's `ExternalScaler` service, the scaler's own `Inspection`
//! service, and the mapping of errors to status codes. Transport and presentation only; the
//! rules live in [`crate::trigger`], `crate::snapshot` and `crate::decide`.

pub(crate) mod codec;
pub(crate) mod explain;
pub(crate) mod hygiene;
pub(crate) mod inspection;
pub(crate) mod scaler;
pub(crate) mod status;
pub(crate) mod tls;
mod trigger_cache;

/// Code generated from `proto/externalscaler.proto`: messages, server and client.
#[allow(missing_docs, clippy::all)]
pub mod proto {
    tonic::include_proto!("externalscaler");

    /// The encoded descriptor set of both protos, for gRPC reflection.
    pub(crate) const FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("pg_queue_scaler_descriptor");
}

// The inspection messages name KEDA's as `super::super::externalscaler::…`.
use self::proto as externalscaler;

/// Code generated from `proto/inspection.proto`, nested as its package is named.
pub mod pgqueuescaler {
    /// The `pgqueuescaler.v1` package: the `Inspection` service and its messages, which also
    /// serialize to JSON (camelCase field names, as grpcurl prints them).
    #[allow(missing_docs, clippy::all)]
    pub mod v1 {
        tonic::include_proto!("pgqueuescaler.v1");
    }
}
