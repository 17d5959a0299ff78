//! Trigger metadata (`ScaledObjectRef.scalerMetadata`) turned into a validated [`Trigger`].
//! Pure: no I/O. Unknown keys are ignored because KEDA adds its own (`scalerAddress`, ...).

use std::collections::HashMap;
use std::time::Duration;

use crate::connection_url::ConnectionUrl;
use crate::error::Error;
use crate::quote::Quoted;

mod scope;

pub use scope::{Scope, VersionFilter};

/// The metadata keys this scaler reads, as KEDA sends them.
pub mod keys {
    /// One queue name.
    pub const QUEUE: &str = "queue";
    /// Comma-separated queue names.
    pub const QUEUES: &str = "queues";
    /// How several queues combine: `max` or `sum`.
    pub const AGGREGATE: &str = "aggregate";
    /// Which queue system's tables to read.
    pub const SYSTEM: &str = "system";
    /// A database from the scaler's configuration.
    pub const DATABASE: &str = "database";
    /// A Postgres URL resolved by KEDA from the workload's environment.
    pub const CONNECTION_FROM_ENV: &str = "connectionFromEnv";
    /// Schema of the system tables.
    pub const SCHEMA: &str = "schema";
    /// Work items one replica runs at once.
    pub const WORKER_CONCURRENCY: &str = "workerConcurrency";
    /// `replicas` or `depth`.
    pub const METRIC: &str = "metric";
    /// Depth above which the trigger is active.
    pub const ACTIVATION_THRESHOLD: &str = "activationThreshold";
    /// DBOS application whose (and unclaimed) work counts.
    pub const APPLICATION_NAME: &str = "applicationName";
    /// DBOS application version (or `latest`) whose work counts.
    pub const APPLICATION_VERSION: &str = "applicationVersion";
    /// The application version, resolved by KEDA from the workload's environment.
    pub const APPLICATION_VERSION_FROM_ENV: &str = "applicationVersionFromEnv";
    /// `true`: a trigger without an application version is an error.
    pub const REQUIRE_APPLICATION_VERSION: &str = "requireApplicationVersion";
    /// `apply` or `ignore` DBOS's concurrency limits.
    pub const CONCURRENCY_LIMITS: &str = "concurrencyLimits";
    /// Delayed work due within this window counts.
    pub const DELAYED_LOOKAHEAD: &str = "delayedLookahead";
    /// The target age of the oldest waiting work item, with `metric: latency`.
    pub const TARGET_LATENCY: &str = "targetLatency";
}

/// The most bytes (keys and values) of trigger metadata accepted: far more than any real
/// trigger holds (a URL in `connectionFromEnv` is the longest value), far less than what
/// would make parsing or quoting costly.
pub const MAX_METADATA_BYTES: usize = 16 * 1024;

/// The longest `delayedLookahead` and `targetLatency`.
pub const MAX_DURATION: Duration = Duration::from_secs(24 * 60 * 60);
/// The shortest `targetLatency`: KEDA's HPA works in milli-units, and a target below a
/// second would scale on noise.
pub const MIN_TARGET_LATENCY: Duration = Duration::from_secs(1);

/// The name of the database used when a trigger names none.
pub const DEFAULT_DATABASE: &str = "default";
/// The DBOS system schema used when a trigger names none.
pub const DEFAULT_SCHEMA: &str = "dbos";

/// Which queue system's tables a trigger reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum System {
    /// DBOS Transact's system database.
    Dbos,
}

impl System {
    /// The metadata spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Dbos => "dbos",
        }
    }
}

/// How the depths of several queues combine into one number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Aggregate {
    /// The busiest queue decides.
    Max,
    /// The queues share one worker pool.
    Sum,
}

/// What `GetMetrics` reports, and the target it is compared with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MetricKind {
    /// Desired replicas, with an HPA target of 1.
    Replicas,
    /// Raw depth, with the worker concurrency as HPA target.
    Depth {
        /// The HPA target: `workerConcurrency` from the metadata.
        target: u32,
    },
    /// Age of the oldest waiting work item, with `targetLatency` as HPA target.
    Latency {
        /// The HPA target.
        target: Duration,
    },
}

impl MetricKind {
    /// The HPA target: 1 replica, `workerConcurrency` items, or `targetLatency` seconds.
    pub fn target(&self) -> f64 {
        match self {
            Self::Replicas => 1.0,
            Self::Depth { target } => f64::from(*target),
            Self::Latency { target } => target.as_secs_f64(),
        }
    }
}

/// Where a trigger's queue tables live.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ConnectionRef {
    /// A database defined in the scaler's configuration, by name.
    Named(String),
    /// A URL KEDA resolved from the workload's environment (`connectionFromEnv`).
    FromEnv(ConnectionUrl),
}

/// A validated trigger: everything needed to find and judge its queues.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trigger {
    /// The queues, in the order given, without duplicates; never empty.
    pub queues: Vec<String>,
    /// How several queues combine.
    pub aggregate: Aggregate,
    /// Which system's tables to read.
    pub system: System,
    /// Which database.
    pub connection: ConnectionRef,
    /// The schema of the system tables (a validated identifier).
    pub schema: String,
    /// Work items per replica from metadata, overriding the database's value.
    pub worker_concurrency: Option<u32>,
    /// What `GetMetrics` reports, and the target it is compared with.
    pub metric: MetricKind,
    /// The trigger is active when the depth exceeds this.
    pub activation_threshold: u64,
    /// Which rows of the queues count.
    pub scope: Scope,
    /// Whether the queues' DBOS concurrency limits cap the answer.
    pub apply_limits: bool,
}

impl Trigger {
    /// Validates trigger metadata. Every error names the key and what it must hold.
    pub fn parse(metadata: &HashMap<String, String>) -> Result<Self, Error> {
        let bytes = metadata
            .iter()
            .map(|(key, value)| key.len() + value.len())
            .fold(0, usize::saturating_add);
        if bytes > MAX_METADATA_BYTES {
            return Err(Error::MetadataTooLarge {
                bytes,
                limit: MAX_METADATA_BYTES,
            });
        }
        let get = |key: &str| metadata.get(key).map(String::as_str);
        let queues = parse_queues(get(keys::QUEUE), get(keys::QUEUES))?;
        let aggregate = match get(keys::AGGREGATE).map(str::trim) {
            None | Some("max") => Aggregate::Max,
            Some("sum") => Aggregate::Sum,
            Some(other) => {
                return Err(invalid(
                    keys::AGGREGATE,
                    "must be \"max\" or \"sum\"",
                    other,
                ));
            }
        };
        let system = match get(keys::SYSTEM).map(str::trim) {
            None | Some("dbos") => System::Dbos,
            Some(other) => return Err(invalid(keys::SYSTEM, "must be one of: dbos", other)),
        };
        let connection = parse_connection(get(keys::DATABASE), get(keys::CONNECTION_FROM_ENV))?;
        let schema = match get(keys::SCHEMA) {
            None => DEFAULT_SCHEMA.to_owned(),
            Some(value) if is_identifier(value) => value.to_owned(),
            Some(other) => {
                return Err(invalid(
                    keys::SCHEMA,
                    "must be a Postgres identifier (letters, digits, _ and $, not starting with a digit, at most 63 bytes)",
                    other,
                ));
            }
        };
        let worker_concurrency = get(keys::WORKER_CONCURRENCY)
            .map(|value| match value.trim().parse::<u32>() {
                Ok(n) if n > 0 => Ok(n),
                _ => Err(invalid(
                    keys::WORKER_CONCURRENCY,
                    "must be a positive integer",
                    value,
                )),
            })
            .transpose()?;
        let metric = parse_metric(
            get(keys::METRIC),
            worker_concurrency,
            get(keys::TARGET_LATENCY),
        )?;
        let activation_threshold = get(keys::ACTIVATION_THRESHOLD)
            .map(|value| {
                value.trim().parse::<u64>().map_err(|_| {
                    invalid(
                        keys::ACTIVATION_THRESHOLD,
                        "must be a non-negative integer",
                        value,
                    )
                })
            })
            .transpose()?
            .unwrap_or(0);
        let apply_limits = match get(keys::CONCURRENCY_LIMITS).map(str::trim) {
            None | Some("apply") => true,
            Some("ignore") => false,
            Some(other) => {
                return Err(invalid(
                    keys::CONCURRENCY_LIMITS,
                    "must be \"apply\" or \"ignore\"",
                    other,
                ));
            }
        };
        Ok(Self {
            queues,
            aggregate,
            system,
            connection,
            schema,
            worker_concurrency,
            metric,
            activation_threshold,
            scope: scope::parse(&get)?,
            apply_limits,
        })
    }

    /// The name the trigger's database goes by in messages: its configured name, or
    /// `connectionFromEnv (host:port/db)`.
    pub fn database_label(&self) -> String {
        match &self.connection {
            ConnectionRef::Named(name) => name.clone(),
            ConnectionRef::FromEnv(url) => format!("connectionFromEnv ({})", url.label()),
        }
    }
}

fn invalid(key: &'static str, expected: &'static str, got: &str) -> Error {
    Error::InvalidMetadata {
        key,
        expected,
        got: Quoted::new(got),
    }
}

fn parse_metric(
    metric: Option<&str>,
    worker_concurrency: Option<u32>,
    target_latency: Option<&str>,
) -> Result<MetricKind, Error> {
    match (metric.map(str::trim), worker_concurrency) {
        (None | Some("replicas"), _) => Ok(MetricKind::Replicas),
        (Some("depth"), Some(target)) => Ok(MetricKind::Depth { target }),
        (Some("depth"), None) => Err(Error::MissingMetadata(
            "workerConcurrency is required when metric is \"depth\" (it is the HPA target)",
        )),
        (Some("latency"), _) => {
            let Some(value) = target_latency else {
                return Err(Error::MissingMetadata(
                    "targetLatency is required when metric is \"latency\" (it is the HPA target, a duration like 30s)",
                ));
            };
            match parse_duration(value) {
                None => Err(invalid(
                    keys::TARGET_LATENCY,
                    "must be a duration like 30s",
                    value,
                )),
                Some(target) if !(MIN_TARGET_LATENCY..=MAX_DURATION).contains(&target) => Err(
                    invalid(keys::TARGET_LATENCY, "must be from 1s to 24h", value),
                ),
                Some(target) => Ok(MetricKind::Latency { target }),
            }
        }
        (Some(other), _) => Err(invalid(
            keys::METRIC,
            "must be \"replicas\", \"depth\" or \"latency\"",
            other,
        )),
    }
}

/// A duration like `90s`, `5m` or `0s`; `None` when it is not one.
fn parse_duration(value: &str) -> Option<Duration> {
    humantime::parse_duration(value.trim()).ok()
}

fn parse_queues(queue: Option<&str>, queues: Option<&str>) -> Result<Vec<String>, Error> {
    // `queue` is one name as given (trimmed); `queues` is a comma-separated list.
    let (key, raw, given, expected): (_, _, Vec<&str>, _) = match (queue, queues) {
        (Some(_), Some(_)) => return Err(Error::ConflictingMetadata(keys::QUEUE, keys::QUEUES)),
        (None, None) => {
            return Err(Error::MissingMetadata(
                "queue is required (or queues, a comma-separated list)",
            ));
        }
        (Some(one), None) => (
            keys::QUEUE,
            one,
            vec![one],
            "must be a non-empty queue name",
        ),
        (None, Some(many)) => (
            keys::QUEUES,
            many,
            many.split(',').collect(),
            "must be a comma-separated list of non-empty queue names",
        ),
    };
    let mut names: Vec<String> = Vec::new();
    for name in given.into_iter().map(str::trim) {
        if name.is_empty() {
            return Err(invalid(key, expected, raw));
        }
        if !names.iter().any(|known| known == name) {
            names.push(name.to_owned());
        }
    }
    Ok(names)
}

fn parse_connection(
    database: Option<&str>,
    from_env: Option<&str>,
) -> Result<ConnectionRef, Error> {
    match (database, from_env) {
        (Some(_), Some(_)) => Err(Error::ConflictingMetadata(keys::DATABASE, keys::CONNECTION_FROM_ENV)),
        (_, Some(url)) => ConnectionUrl::parse(url).map(ConnectionRef::FromEnv).map_err(|_| {
            Error::InvalidSecretMetadata {
                key: keys::CONNECTION_FROM_ENV,
                expected: "must resolve to a Postgres connection URL (postgres://user:password@host:port/dbname); the value is not shown because it may hold a password",
            }
        }),
        (Some(name), None) if is_database_name(name.trim()) => Ok(ConnectionRef::Named(name.trim().to_owned())),
        (Some(other), None) => Err(invalid(
            keys::DATABASE,
            "must be a database name from the scaler's configuration (lowercase letters, digits and _)",
            other,
        )),
        (None, None) => Ok(ConnectionRef::Named(DEFAULT_DATABASE.to_owned())),
    }
}

/// Whether `name` can name a database in the scaler's configuration. Lowercase only, because
/// the configuration's environment variables (`PGQS_DATABASES__<NAME>__URL`) are
/// case-insensitive.
pub fn is_database_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// Whether `name` is a plain Postgres identifier that is safe to put in SQL when quoted.
pub fn is_identifier(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && name.len() <= 63
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'$')
}

/// Test helper: a trigger from metadata pairs, for the unit tests of modules using triggers.
#[cfg(test)]
pub(crate) fn from_pairs(pairs: &[(&str, &str)]) -> Trigger {
    Trigger::parse(&tests::metadata(pairs)).expect("valid test metadata")
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn metadata(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    pub(super) fn error_of(pairs: &[(&str, &str)]) -> String {
        Trigger::parse(&metadata(pairs)).unwrap_err().to_string()
    }

    #[test]
    fn defaults_apply_to_a_minimal_trigger() {
        let trigger = Trigger::parse(&metadata(&[
            ("queue", "taskQueue"),
            ("scalerAddress", "pg-queue-scaler:9090"),
        ]))
        .unwrap();
        assert_eq!(trigger.queues, vec!["taskQueue"]);
        assert_eq!(trigger.aggregate, Aggregate::Max);
        assert_eq!(trigger.system, System::Dbos);
        assert_eq!(trigger.connection, ConnectionRef::Named("default".into()));
        assert_eq!(trigger.schema, "dbos");
        assert_eq!(trigger.worker_concurrency, None);
        assert_eq!(trigger.metric, MetricKind::Replicas);
        assert_eq!(trigger.activation_threshold, 0);
        assert_eq!(trigger.scope.application, None);
        assert_eq!(trigger.scope.version, VersionFilter::All);
        assert_eq!(trigger.scope.lookahead, Duration::ZERO);
        assert!(trigger.apply_limits);
    }

    #[test]
    fn every_key_is_read() {
        let trigger = Trigger::parse(&metadata(&[
            ("queues", "a, b,a"),
            ("aggregate", "sum"),
            ("system", "dbos"),
            ("database", "orders"),
            ("schema", "jobs_v2"),
            ("workerConcurrency", "4"),
            ("metric", "depth"),
            ("activationThreshold", "3"),
            ("applicationName", "billing"),
            ("applicationVersion", "v2"),
            ("requireApplicationVersion", "true"),
            ("concurrencyLimits", "ignore"),
            ("delayedLookahead", "90s"),
        ]))
        .unwrap();
        assert_eq!(trigger.queues, vec!["a", "b"]);
        assert_eq!(trigger.aggregate, Aggregate::Sum);
        assert_eq!(trigger.connection, ConnectionRef::Named("orders".into()));
        assert_eq!(trigger.schema, "jobs_v2");
        assert_eq!(trigger.worker_concurrency, Some(4));
        assert_eq!(trigger.metric, MetricKind::Depth { target: 4 });
        assert_eq!(trigger.activation_threshold, 3);
        assert_eq!(trigger.scope.application.as_deref(), Some("billing"));
        assert_eq!(trigger.scope.version, VersionFilter::Named("v2".into()));
        assert_eq!(trigger.scope.lookahead, Duration::from_secs(90));
        assert!(!trigger.apply_limits);
    }

    #[test]
    fn a_single_queue_is_one_name_even_with_a_trailing_newline() {
        let trigger = Trigger::parse(&metadata(&[("queue", "jobs\n")])).unwrap();
        assert_eq!(trigger.queues, vec!["jobs"]);
        let trigger = Trigger::parse(&metadata(&[("queue", "a,b")])).unwrap();
        assert_eq!(
            trigger.queues,
            vec!["a,b"],
            "commas only separate in `queues`"
        );
    }

    #[test]
    fn queue_names_are_case_sensitive() {
        let trigger = Trigger::parse(&metadata(&[("queue", "TaskQueue")])).unwrap();
        assert_eq!(trigger.queues, vec!["TaskQueue"]);
    }

    #[test]
    fn malformed_values_name_the_key_and_the_expectation() {
        assert_eq!(
            error_of(&[("queue", "q"), ("workerConcurrency", "0")]),
            r#"workerConcurrency must be a positive integer, got "0""#
        );
        assert_eq!(
            error_of(&[("queue", "q"), ("workerConcurrency", "two")]),
            r#"workerConcurrency must be a positive integer, got "two""#
        );
        assert_eq!(
            error_of(&[("queue", "q"), ("aggregate", "avg")]),
            r#"aggregate must be "max" or "sum", got "avg""#
        );
        assert_eq!(
            error_of(&[("queue", "q"), ("system", "oban")]),
            r#"system must be one of: dbos, got "oban""#
        );
        assert_eq!(
            error_of(&[("queue", "q"), ("metric", "lag")]),
            r#"metric must be "replicas", "depth" or "latency", got "lag""#
        );
        assert_eq!(
            error_of(&[("queue", "q"), ("activationThreshold", "-1")]),
            r#"activationThreshold must be a non-negative integer, got "-1""#
        );
        assert!(
            error_of(&[("queue", "q"), ("schema", "dbos; drop table x")])
                .starts_with("schema must be")
        );
        assert!(
            error_of(&[("queue", "q"), ("database", "Orders")]).starts_with("database must be")
        );
        assert!(error_of(&[("queues", "a,,b")]).starts_with("queues must be"));
        assert!(error_of(&[("queue", " ")]).starts_with("queue must be"));
    }

    #[test]
    fn latency_targets_and_limits_are_checked() {
        assert!(
            error_of(&[("queue", "q"), ("metric", "latency")])
                .starts_with("targetLatency is required")
        );
        assert_eq!(
            error_of(&[
                ("queue", "q"),
                ("metric", "latency"),
                ("targetLatency", "500ms")
            ]),
            r#"targetLatency must be from 1s to 24h, got "500ms""#
        );
        assert_eq!(
            error_of(&[
                ("queue", "q"),
                ("metric", "latency"),
                ("targetLatency", "fast")
            ]),
            r#"targetLatency must be a duration like 30s, got "fast""#
        );
        let latency = Trigger::parse(&metadata(&[
            ("queue", "q"),
            ("metric", "latency"),
            ("targetLatency", "1m30s"),
        ]));
        assert_eq!(
            latency.unwrap().metric,
            MetricKind::Latency {
                target: Duration::from_secs(90)
            }
        );
        assert_eq!(
            error_of(&[("queue", "q"), ("concurrencyLimits", "off")]),
            r#"concurrencyLimits must be "apply" or "ignore", got "off""#
        );
    }

    #[test]
    fn missing_and_conflicting_keys_are_explained() {
        assert!(error_of(&[]).starts_with("queue is required"));
        assert_eq!(
            error_of(&[("queue", "a"), ("queues", "b")]),
            "set either queue or queues, not both"
        );
        assert_eq!(
            error_of(&[
                ("queue", "a"),
                ("database", "x"),
                ("connectionFromEnv", "postgres://h/db")
            ]),
            "set either database or connectionFromEnv, not both"
        );
        assert!(
            error_of(&[("queue", "a"), ("metric", "depth")])
                .starts_with("workerConcurrency is required")
        );
    }

    #[test]
    fn a_bad_connection_url_is_refused_without_echoing_it() {
        let message = error_of(&[
            ("queue", "a"),
            ("connectionFromEnv", "postgres://u:hunter2@h:port/db"),
        ]);
        assert!(
            message.starts_with("connectionFromEnv must resolve"),
            "{message}"
        );
        assert!(!message.contains("hunter2"));
    }

    #[test]
    fn a_connection_url_becomes_the_database() {
        let trigger = Trigger::parse(&metadata(&[
            ("queue", "a"),
            (
                "connectionFromEnv",
                "postgres://u:pw@db.internal:5432/app_sys",
            ),
        ]))
        .unwrap();
        assert!(matches!(trigger.connection, ConnectionRef::FromEnv(_)));
        assert_eq!(
            trigger.database_label(),
            "connectionFromEnv (db.internal:5432/app_sys)"
        );
    }

    #[test]
    fn identifiers_are_checked() {
        assert!(is_identifier("dbos"));
        assert!(is_identifier("_x$1"));
        assert!(!is_identifier("1abc"));
        assert!(!is_identifier("a-b"));
        assert!(!is_identifier("\"dbos\""));
        assert!(!is_identifier(&"a".repeat(64)));
    }
}
