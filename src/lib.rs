//! pg-queue-scaler: a KEDA external scaler that reads the depth of Postgres-backed job
//! queues (DBOS first) straight from the database and tells KEDA how many workers each
//! queue needs, `ceil(depth / worker_concurrency)`, so worker Deployments can scale to zero.
//!
//! # Layout
//!
//! The data path reads KEDA → `grpc` → `trigger` → `snapshot` ← refresh ← Postgres, and
//! modules only depend on modules in the same or a lower layer:
//!
//! 1. **Pure core**, no I/O: [`trigger`] turns metadata into a validated
//!    [`trigger::Trigger`]; `metric_name` names its metric; `decide` holds the maths;
//!    `access` decides who may read which database; `caps` bounds sources, streams and
//!    calls; `error` is the domain's error; [`connection_url`] keeps URLs secret; `quote`
//!    bounds the request values that errors and logs quote.
//! 2. **Readers**: [`database`] builds pools and TLS and runs each read as a read-only
//!    transaction that leaves the session as it was; [`systems`] holds, per queue system,
//!    schema discovery and the counting statement; `snapshot` runs one refresh loop per
//!    database in use and keeps its latest reading; `evaluate` judges a trigger against a
//!    reading; `metrics` defines the Prometheus metrics.
//! 3. **Servers**: [`grpc`] serves the `ExternalScaler` service and the scaler's own
//!    `Inspection` service (which explains every answer from the same evaluation), plain or
//!    TLS with reloading certificates, and maps errors to status codes in one place; `http`
//!    serves `/metrics`, `/healthz` and `/readyz`.
//! 4. **Assembly**: [`config`] reads the settings layers and builds each module's settings;
//!    [`telemetry`] sets up logging; `server` provides [`run`], which wires everything to
//!    bound listeners and a shutdown signal; [`inspect`] is `pg-queue-scaler inspect`, the
//!    inspection from a terminal.
//!
//! The library exposes what the binary, the tests and the benchmarks use, nothing more.

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
pub mod inspect;
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
pub use server::{Listeners, RunError, run};
