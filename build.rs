//! Compiles the protos in `proto/` with protox (pure Rust, so no system `protoc`) and writes
//! the encoded descriptor set next to the generated code for gRPC reflection.
//!
//! `externalscaler.proto` is KEDA's contract; `inspection.proto` is the scaler's own
//! inspection service, whose messages also serialize to JSON for `pg-queue-scaler inspect`.

use prost::Message;
use std::path::PathBuf;

const PROTOS: [&str; 2] = ["proto/externalscaler.proto", "proto/inspection.proto"];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    let descriptors = protox::compile(PROTOS, ["proto"])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("pg_queue_scaler_descriptor.bin"),
        descriptors.encode_to_vec(),
    )?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // Small per-call buffers: see src/grpc/codec.rs.
        .codec_path("crate::grpc::codec::SmallBufferCodec")
        .type_attribute(
            ".pgqueuescaler.v1",
            "#[derive(serde::Serialize)] #[serde(rename_all = \"camelCase\")]",
        )
        .compile_fds(descriptors)?;
    Ok(())
}
