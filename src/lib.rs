//! pg-queue-scaler: a KEDA external scaler that reads the depth of Postgres-backed job
//! queues (DBOS first) straight from the database and tells KEDA how many workers each
//! queue needs, `ceil(depth / worker_concurrency)`, so worker Deployments can scale to zero.
//!
//! # Layout
//!
//! - [`config`] loads settings from defaults, file, environment and flags.
//! - [`trigger`] turns trigger metadata into a validated [`trigger::Trigger`], and
//!   [`metric_name`] names its metric.
//! - [`systems`] holds, per queue system, schema discovery and the counting statement.
//! - [`database`] builds pools and TLS, and runs each read as a read-only transaction that
//!   leaves the session as it was; [`database::ConnectionUrl`] keeps URLs secret.
//! - [`snapshot`] runs one refresh loop per database in use; requests read its latest
//!   snapshot.
//! - [`decide`] and [`evaluate`] hold the maths, pure.
//! - [`access`] decides who may read which database; [`caps`] bounds streams and calls.
//! - [`grpc`] serves the `ExternalScaler` service (plain or TLS with reloading
//!   certificates) and maps errors to status codes.
//! - [`http`] serves `/metrics`, `/healthz` and `/readyz`; [`metrics`] defines the metrics.
//! - `server` provides [`run`], which wires everything to bound listeners and a shutdown
//!   signal.
//! - [`telemetry`] sets up logging; [`quote`] bounds the request values that errors and
//!   logs quote.

mod access;
mod caps;
pub mod config;
pub mod connection_url;
pub mod database;
mod decide;
mod error;
mod evaluate;
pub mod grpc;
mod http;
mod metric_name;
mod metrics;
mod quote;
mod server;
mod snapshot;
mod sync;
pub mod systems;
pub mod telemetry;
pub mod trigger;

pub use error::Error;
pub use server::{LIVENESS, Listeners, READINESS, RunError, run};
