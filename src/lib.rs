//! pg-queue-scaler: a KEDA external scaler that reads the depth of Postgres-backed job
//! queues (DBOS first) straight from the database and tells KEDA how many workers each
//! queue needs, `ceil(depth / worker_concurrency)`, so worker Deployments can scale to zero.
//!
//! # Layout
//!
//! - [`config`]: settings from defaults, file, environment and flags.
//! - [`trigger`]: trigger metadata into a validated [`trigger::Trigger`]; [`metric_name`]
//!   names its metric.
//! - [`systems`]: per queue system, schema discovery and the counting statement.
//! - [`database`]: pools, TLS, read-only sessions; [`database::ConnectionUrl`] keeps URLs secret.
//! - [`snapshot`]: one refresh loop per database in use; requests read its latest snapshot.
//! - [`decide`] and [`evaluate`]: the maths, pure.
//! - [`grpc`]: the `ExternalScaler` service and the error-to-status mapping.
//! - [`server`]: [`run`], which wires everything to bound listeners and a shutdown signal.
//! - [`telemetry`]: logging.

pub mod config;
pub mod database;
pub mod decide;
pub mod error;
pub mod evaluate;
pub mod grpc;
pub mod metric_name;
mod server;
pub mod snapshot;
pub mod systems;
pub mod telemetry;
pub mod trigger;

pub use error::Error;
pub use server::{Listeners, RunError, run};
