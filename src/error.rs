//! The domain's error type: why a trigger's numbers cannot be given. Every message here may
//! be shown to a KEDA user, so none carries a connection URL, a password or SQL text. The
//! transport maps it to status codes in one place (`grpc::status`), above this module.

use std::time::Duration;

use crate::quote::Quoted;

/// Everything a request for a trigger's numbers can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A trigger metadata key holds a value that cannot be used.
    #[error("{key} {expected}, got {got}")]
    InvalidMetadata {
        /// The metadata key, as KEDA sends it (camelCase).
        key: &'static str,
        /// What the key must hold, phrased to follow the key name.
        expected: &'static str,
        /// The value received, quoted and cut (never a secret: secret keys use
        /// [`Error::InvalidSecretMetadata`]).
        got: Quoted,
    },
    /// The metadata as a whole is larger than any trigger needs; refused before any work.
    #[error("the trigger metadata holds {bytes} bytes; at most {limit} are accepted")]
    MetadataTooLarge {
        /// Bytes of keys and values received.
        bytes: usize,
        /// The limit.
        limit: usize,
    },
    /// A metadata key that carries a secret holds something unusable; the value is not echoed.
    #[error("{key} {expected}")]
    InvalidSecretMetadata {
        /// The metadata key.
        key: &'static str,
        /// What was expected, without the value.
        expected: &'static str,
    },
    /// A required metadata key is absent.
    #[error("{0}")]
    MissingMetadata(&'static str),
    /// Two metadata keys that exclude each other were both given.
    #[error("set either {0} or {1}, not both")]
    ConflictingMetadata(&'static str, &'static str),
    /// The trigger names a database the scaler's configuration does not define.
    #[error("database {0:?} is not defined in the scaler's configuration")]
    UnknownDatabase(String),
    /// `GetMetrics` asked for a metric this trigger does not serve.
    #[error("metric {requested} is not served by this trigger (its metric is {expected:?})")]
    UnknownMetric {
        /// The name KEDA asked for, quoted and cut.
        requested: Quoted,
        /// The name `GetMetricSpec` returns for this trigger.
        expected: String,
    },
    /// The replica count needs a worker concurrency that neither metadata nor the database
    /// settles.
    #[error(transparent)]
    WorkerConcurrency(#[from] WorkerConcurrencyError),
    /// A queue that the database cannot vouch for: no work, and no registration in a
    /// system that registers every queue.
    #[error(
        "queue {queue} is not registered in schema {schema:?} of database {database:?} and has \
         no work: check the queue name and the database (a connectionFromEnv variable that is \
         empty in the workload is dropped by KEDA, and the trigger then reads database \
         \"default\")"
    )]
    UnknownQueue {
        /// The queue name from the trigger, quoted and cut.
        queue: Quoted,
        /// The schema read.
        schema: String,
        /// The database's label.
        database: String,
    },
    /// A trigger key that the schema cannot honour (its DBOS version lacks what the key
    /// needs).
    #[error(
        "{key} cannot be honoured on schema {schema:?} of database {database:?}: it needs {needs}"
    )]
    Unsupported {
        /// The metadata key.
        key: &'static str,
        /// What the schema would need.
        needs: &'static str,
        /// The schema read.
        schema: String,
        /// The database's label.
        database: String,
    },
    /// A cap of the scaler's is reached; what already holds it keeps working.
    #[error("{0}")]
    Exhausted(String),
    /// The access policy refuses this request.
    #[error("{0}")]
    PermissionDenied(String),
    /// Fresh numbers cannot be had: the database could not be read, the last read is too old,
    /// or the first read has not finished in time.
    #[error("{0}")]
    Unavailable(String),
}

/// Why no replica count can be given: a worker concurrency that neither the trigger nor the
/// database settles.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WorkerConcurrencyError {
    /// A queue's worker concurrency is unknown.
    #[error(
        "queue {0:?} has no worker_concurrency in the database: set workerConcurrency in the \
         trigger metadata"
    )]
    MissingWorkerConcurrency(String),
    /// `aggregate: sum` needs one concurrency for the shared pool, and the queues disagree.
    #[error(
        "aggregate \"sum\" needs one worker concurrency for the shared pool, but the queues \
         have different worker_concurrency values in the database: set workerConcurrency in \
         the trigger metadata"
    )]
    DifferingWorkerConcurrency,
}

impl Error {
    /// The error for a database whose last successful read is older than allowed.
    pub(crate) fn stale(database: &str, age: Duration, bound: Duration) -> Self {
        Self::Unavailable(format!(
            "queue depth of database {database:?} is stale: last successful read {}s ago \
             (limit {}s)",
            age.as_secs(),
            bound.as_secs()
        ))
    }

    /// A short, stable label for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::InvalidMetadata { .. }
            | Self::InvalidSecretMetadata { .. }
            | Self::MissingMetadata(_)
            | Self::ConflictingMetadata(..)
            | Self::MetadataTooLarge { .. } => "invalid_metadata",
            Self::UnknownDatabase(_) => "unknown_database",
            Self::UnknownMetric { .. } => "unknown_metric",
            Self::WorkerConcurrency(_) => "missing_worker_concurrency",
            Self::UnknownQueue { .. } => "unknown_queue",
            Self::Unsupported { .. } => "unsupported",
            Self::Exhausted(_) => "exhausted",
            Self::PermissionDenied(_) => "permission_denied",
            Self::Unavailable(_) => "unavailable",
        }
    }
}
