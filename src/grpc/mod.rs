//! The gRPC surface: KEDA's `ExternalScaler` service and the mapping of errors to status
//! codes. Transport only; the rules live in [`crate::trigger`], `crate::snapshot` and
//! `crate::decide`.

pub(crate) mod hygiene;
pub(crate) mod scaler;
pub(crate) mod status;
pub(crate) mod tls;
mod trigger_cache;

/// Code generated from `proto/externalscaler.proto`: messages, server and client.
#[allow(missing_docs, clippy::all)]
pub mod proto {
    tonic::include_proto!("externalscaler");

    /// The encoded descriptor set of the proto, for gRPC reflection.
    pub(crate) const FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("externalscaler_descriptor");
}
