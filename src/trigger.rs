//! Trigger metadata (`ScaledObjectRef.scalerMetadata`) turned into a validated [`Trigger`].
//! Pure: no I/O. Unknown keys are ignored because KEDA adds its own (`scalerAddress`, ...).

use std::collections::HashMap;

use crate::database::ConnectionUrl;
use crate::error::Error;

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
}

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
    /// Only this application's (and unclaimed) work counts.
    pub application_name: Option<String>,
}

impl Trigger {
    /// Validates trigger metadata. Every error names the key and what it must hold.
    pub fn parse(metadata: &HashMap<String, String>) -> Result<Self, Error> {
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
        let metric = match (get(keys::METRIC).map(str::trim), worker_concurrency) {
            (None | Some("replicas"), _) => MetricKind::Replicas,
            (Some("depth"), Some(target)) => MetricKind::Depth { target },
            (Some("depth"), None) => {
                return Err(Error::MissingMetadata(
                    "workerConcurrency is required when metric is \"depth\" (it is the HPA target)",
                ));
            }
            (Some(other), _) => {
                return Err(invalid(
                    keys::METRIC,
                    "must be \"replicas\" or \"depth\"",
                    other,
                ));
            }
        };
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
        let application_name = match get(keys::APPLICATION_NAME) {
            None => None,
            Some(value) if !value.trim().is_empty() => Some(value.trim().to_owned()),
            Some(other) => return Err(invalid(keys::APPLICATION_NAME, "must not be empty", other)),
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
            application_name,
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
        got: got.to_owned(),
    }
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

    fn error_of(pairs: &[(&str, &str)]) -> String {
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
        assert_eq!(trigger.application_name, None);
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
        ]))
        .unwrap();
        assert_eq!(trigger.queues, vec!["a", "b"]);
        assert_eq!(trigger.aggregate, Aggregate::Sum);
        assert_eq!(trigger.connection, ConnectionRef::Named("orders".into()));
        assert_eq!(trigger.schema, "jobs_v2");
        assert_eq!(trigger.worker_concurrency, Some(4));
        assert_eq!(trigger.metric, MetricKind::Depth { target: 4 });
        assert_eq!(trigger.activation_threshold, 3);
        assert_eq!(trigger.application_name.as_deref(), Some("billing"));
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
            error_of(&[("queue", "q"), ("metric", "latency")]),
            r#"metric must be "replicas" or "depth", got "latency""#
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
