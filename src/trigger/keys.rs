//! The metadata keys this scaler reads, as KEDA sends them.

/// One queue name.
pub(crate) const QUEUE: &str = "queue";
/// Comma-separated queue names.
pub(crate) const QUEUES: &str = "queues";
/// How several queues combine: `max` or `sum`.
pub(crate) const AGGREGATE: &str = "aggregate";
/// Which queue system's tables to read.
pub(crate) const SYSTEM: &str = "system";
/// A database from the scaler's configuration.
pub(crate) const DATABASE: &str = "database";
/// A Postgres URL resolved by KEDA from the workload's environment.
pub(crate) const CONNECTION_FROM_ENV: &str = "connectionFromEnv";
/// Schema of the system tables.
pub(crate) const SCHEMA: &str = "schema";
/// Work items one replica runs at once.
pub(crate) const WORKER_CONCURRENCY: &str = "workerConcurrency";
/// `replicas` or `depth`.
pub(crate) const METRIC: &str = "metric";
/// Depth above which the trigger is active.
pub(crate) const ACTIVATION_THRESHOLD: &str = "activationThreshold";
/// DBOS application whose (and unclaimed) work counts.
pub(crate) const APPLICATION_NAME: &str = "applicationName";
/// DBOS application version (or `latest`) whose work counts.
pub(crate) const APPLICATION_VERSION: &str = "applicationVersion";
/// The application version, resolved by KEDA from the workload's environment.
pub(crate) const APPLICATION_VERSION_FROM_ENV: &str = "applicationVersionFromEnv";
/// `true`: a trigger without an application version is an error.
pub(crate) const REQUIRE_APPLICATION_VERSION: &str = "requireApplicationVersion";
/// `apply` or `ignore` DBOS's concurrency limits.
pub(crate) const CONCURRENCY_LIMITS: &str = "concurrencyLimits";
/// Delayed work due within this window counts.
pub(crate) const DELAYED_LOOKAHEAD: &str = "delayedLookahead";
/// The target age of the oldest waiting work item, with `metric: latency`.
pub(crate) const TARGET_LATENCY: &str = "targetLatency";

/// Every key above: what a trigger may set for this scaler. Other keys are KEDA's own (such
/// as `scalerAddress`) or mistakes, and are ignored.
pub(crate) const ALL: [&str; 17] = [
    QUEUE,
    QUEUES,
    AGGREGATE,
    SYSTEM,
    DATABASE,
    CONNECTION_FROM_ENV,
    SCHEMA,
    WORKER_CONCURRENCY,
    METRIC,
    ACTIVATION_THRESHOLD,
    APPLICATION_NAME,
    APPLICATION_VERSION,
    APPLICATION_VERSION_FROM_ENV,
    REQUIRE_APPLICATION_VERSION,
    CONCURRENCY_LIMITS,
    DELAYED_LOOKAHEAD,
    TARGET_LATENCY,
];
