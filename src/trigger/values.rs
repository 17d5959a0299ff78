//! Parsers for single metadata values. Each error names its key and what the key must hold,
//! and quotes the value received (cut), except for keys that may carry a secret.

use std::time::Duration;

use super::{
    ConnectionRef, DEFAULT_DATABASE, DEFAULT_SCHEMA, MAX_DURATION, MIN_TARGET_LATENCY, MetricKind,
    is_database_name, is_identifier, keys,
};
use crate::connection_url::ConnectionUrl;
use crate::error::Error;
use crate::quote::Quoted;

/// The error for `key` holding `got` where it must hold what `expected` says.
pub(super) fn invalid(key: &'static str, expected: &'static str, got: &str) -> Error {
    Error::InvalidMetadata {
        key,
        expected,
        got: Quoted::new(got),
    }
}

/// One of a few words: `default` when absent, else the value of the matching word.
pub(super) fn choice<T: Copy>(
    key: &'static str,
    value: Option<&str>,
    default: T,
    words: &[(&str, T)],
    expected: &'static str,
) -> Result<T, Error> {
    let Some(value) = value else {
        return Ok(default);
    };
    words
        .iter()
        .find(|(word, _)| *word == value.trim())
        .map(|(_, choice)| *choice)
        .ok_or_else(|| invalid(key, expected, value.trim()))
}

/// A positive whole number, if given.
pub(super) fn positive(key: &'static str, value: Option<&str>) -> Result<Option<u32>, Error> {
    value
        .map(|value| match value.trim().parse::<u32>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(invalid(key, "must be a positive integer", value)),
        })
        .transpose()
}

/// A whole number, 0 when not given.
pub(super) fn non_negative(key: &'static str, value: Option<&str>) -> Result<u64, Error> {
    value.map_or(Ok(0), |value| {
        value
            .trim()
            .parse::<u64>()
            .map_err(|_| invalid(key, "must be a non-negative integer", value))
    })
}

/// The schema of the system tables, a plain identifier.
pub(super) fn schema(value: Option<&str>) -> Result<String, Error> {
    match value {
        None => Ok(DEFAULT_SCHEMA.to_owned()),
        Some(value) if is_identifier(value) => Ok(value.to_owned()),
        Some(other) => Err(invalid(
            keys::SCHEMA,
            "must be a Postgres identifier (letters, digits, _ and $, not starting with a digit, \
             at most 63 bytes)",
            other,
        )),
    }
}

/// What `GetMetrics` reports, and its target.
pub(super) fn metric(
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
                    "targetLatency is required when metric is \"latency\" (it is the HPA target, \
                     a duration like 30s)",
                ));
            };
            match duration(value) {
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
pub(super) fn duration(value: &str) -> Option<Duration> {
    humantime::parse_duration(value.trim()).ok()
}

/// The queue names: `queue` (one name) or `queues` (a comma-separated list), without
/// duplicates.
pub(super) fn queues(queue: Option<&str>, queues: Option<&str>) -> Result<Vec<String>, Error> {
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

/// The database: a configured name, or a URL KEDA resolved from the workload.
pub(super) fn connection(
    database: Option<&str>,
    from_env: Option<&str>,
) -> Result<ConnectionRef, Error> {
    match (database, from_env) {
        (Some(_), Some(_)) => Err(Error::ConflictingMetadata(
            keys::DATABASE,
            keys::CONNECTION_FROM_ENV,
        )),
        (_, Some(url)) => ConnectionUrl::parse(url)
            .map(ConnectionRef::FromEnv)
            .map_err(|_| Error::InvalidSecretMetadata {
                key: keys::CONNECTION_FROM_ENV,
                expected: "must resolve to a Postgres connection URL \
                           (postgres://user:password@host:port/dbname); the value is not shown \
                           because it may hold a password",
            }),
        (Some(name), None) if is_database_name(name.trim()) => {
            Ok(ConnectionRef::Named(name.trim().to_owned()))
        }
        (Some(other), None) => Err(invalid(
            keys::DATABASE,
            "must be a database name from the scaler's configuration (lowercase letters, digits \
             and _)",
            other,
        )),
        (None, None) => Ok(ConnectionRef::Named(DEFAULT_DATABASE.to_owned())),
    }
}
