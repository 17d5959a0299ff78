//! Trigger metadata (`ScaledObjectRef.scalerMetadata`) turned into a validated [`Trigger`].
//! Pure: no I/O. Unknown keys are ignored because KEDA adds its own (`scalerAddress`, ...).

use std::collections::HashMap;
use std::time::Duration;

use crate::connection_url::ConnectionUrl;
use crate::error::Error;

pub(crate) mod keys;
mod scope;
mod values;

pub use scope::{Scope, VersionFilter};

/// The most bytes (keys and values) of trigger metadata accepted: far more than any real
/// trigger holds (a URL in `connectionFromEnv` is the longest value), far less than what
/// would make parsing or quoting costly.
pub(crate) const MAX_METADATA_BYTES: usize = 16 * 1024;

/// The longest `delayedLookahead` and `targetLatency`.
pub(crate) const MAX_DURATION: Duration = Duration::from_secs(24 * 60 * 60);
/// The shortest `targetLatency`: KEDA's HPA works in milli-units, and a target below a
/// second would scale on noise.
pub(crate) const MIN_TARGET_LATENCY: Duration = Duration::from_secs(1);

/// The name of the database used when a trigger names none.
pub(crate) const DEFAULT_DATABASE: &str = "default";
/// The DBOS system schema used when a trigger names none.
pub(crate) const DEFAULT_SCHEMA: &str = "dbos";

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

impl Aggregate {
    /// The metadata spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Max => "max",
            Self::Sum => "sum",
        }
    }
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
    /// The metadata spelling.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Replicas => "replicas",
            Self::Depth { .. } => "depth",
            Self::Latency { .. } => "latency",
        }
    }

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
    /// Validates trigger metadata. Every error names the key and what it must hold; keys
    /// are checked in a fixed order, so the first problem is always the same one.
    pub fn parse(metadata: &HashMap<String, String>) -> Result<Self, Error> {
        check_size(metadata)?;
        let get = |key: &str| metadata.get(key).map(String::as_str);
        let queues = values::queues(get(keys::QUEUE), get(keys::QUEUES))?;
        let aggregate = values::choice(
            keys::AGGREGATE,
            get(keys::AGGREGATE),
            Aggregate::Max,
            &[Aggregate::Max, Aggregate::Sum].map(|choice| (choice.as_str(), choice)),
            "must be \"max\" or \"sum\"",
        )?;
        let system = values::choice(
            keys::SYSTEM,
            get(keys::SYSTEM),
            System::Dbos,
            &[(System::Dbos.as_str(), System::Dbos)],
            "must be one of: dbos",
        )?;
        let connection = values::connection(get(keys::DATABASE), get(keys::CONNECTION_FROM_ENV))?;
        let schema = values::schema(get(keys::SCHEMA))?;
        let worker_concurrency =
            values::positive(keys::WORKER_CONCURRENCY, get(keys::WORKER_CONCURRENCY))?;
        let metric = values::metric(
            get(keys::METRIC),
            worker_concurrency,
            get(keys::TARGET_LATENCY),
        )?;
        let activation_threshold =
            values::non_negative(keys::ACTIVATION_THRESHOLD, get(keys::ACTIVATION_THRESHOLD))?;
        let apply_limits = values::choice(
            keys::CONCURRENCY_LIMITS,
            get(keys::CONCURRENCY_LIMITS),
            true,
            &[("apply", true), ("ignore", false)],
            "must be \"apply\" or \"ignore\"",
        )?;
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
    pub(crate) fn database_label(&self) -> String {
        match &self.connection {
            ConnectionRef::Named(name) => name.clone(),
            ConnectionRef::FromEnv(url) => format!("connectionFromEnv ({})", url.label()),
        }
    }
}

/// The keys of `metadata` this scaler does not read, sorted: KEDA's own (such as
/// `scalerAddress`) and misspellings, which [`Trigger::parse`] ignores.
pub fn unread_keys(metadata: &HashMap<String, String>) -> Vec<&str> {
    let mut unread: Vec<&str> = metadata
        .keys()
        .map(String::as_str)
        .filter(|key| !keys::ALL.contains(key))
        .collect();
    unread.sort_unstable();
    unread
}

/// Refuses metadata larger than any trigger needs, before any other work.
fn check_size(metadata: &HashMap<String, String>) -> Result<(), Error> {
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
    Ok(())
}

/// Whether `name` can name a database in the scaler's configuration. Lowercase only, because
/// the configuration's environment variables (`PGQS_DATABASES__<NAME>__URL`) are
/// case-insensitive.
pub(crate) fn is_database_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// Whether `name` is a plain Postgres identifier that is safe to put in SQL when quoted.
pub(crate) fn is_identifier(name: &str) -> bool {
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
mod tests;
