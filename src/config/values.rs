//! Scalar values read from text, each with the error line that names its key, and the
//! collector that gathers those lines so that one bad value does not hide the others.

use std::net::SocketAddr;
use std::time::Duration;

/// The defaults, written once: the parsers fall back to them and the flags' help shows them.
pub(super) mod defaults {
    pub(crate) const GRPC_LISTEN: &str = "0.0.0.0:9090";
    pub(crate) const HTTP_LISTEN: &str = "0.0.0.0:8080";
    pub(crate) const REFRESH_INTERVAL: &str = "1s";
    pub(crate) const STALE_AFTER: &str = "30s";
    pub(crate) const IDLE_AFTER: &str = "5m";
    pub(crate) const FIRST_READ_TIMEOUT: &str = "2s";
    pub(crate) const READ_TIMEOUT: &str = "10s";
    pub(crate) const STATEMENT_TIMEOUT: &str = "5s";
    pub(crate) const SHUTDOWN_GRACE_PERIOD: &str = "8s";
    pub(crate) const DRAIN_DELAY: &str = "1s";
    pub(crate) const RPC_TIMEOUT: &str = "5s";
    pub(crate) const HANDSHAKE_TIMEOUT: &str = "30s";
    pub(crate) const IDLE_TIMEOUT: &str = "5m";
    pub(crate) const TLS_RELOAD_INTERVAL: &str = "10s";
    pub(crate) const POOL_MAX_SIZE: &str = "2";
    pub(crate) const LOG_FORMAT: &str = "text";
}

/// Every problem found so far, one line each.
#[derive(Debug, Default)]
pub(super) struct Problems(Vec<String>);

impl Problems {
    /// The value, or `None` with its problem noted.
    pub(super) fn check<T>(&mut self, result: Result<T, String>) -> Option<T> {
        result.map_err(|problem| self.0.push(problem)).ok()
    }

    /// Notes `problem`.
    pub(super) fn note(&mut self, problem: String) {
        self.0.push(problem);
    }

    /// Notes `problem` unless `holds`.
    pub(super) fn require(&mut self, holds: bool, problem: impl FnOnce() -> String) {
        if !holds {
            self.0.push(problem());
        }
    }

    /// Whether nothing was noted.
    pub(super) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// How many problems were noted.
    pub(super) fn len(&self) -> usize {
        self.0.len()
    }

    /// The lines noted.
    pub(super) fn into_lines(self) -> Vec<String> {
        self.0
    }
}

/// The longest duration any setting takes: keeps timer arithmetic far from overflow and
/// every value within what Postgres accepts for `statement_timeout`.
const MAX_DURATION: Duration = Duration::from_secs(24 * 60 * 60);

/// A positive duration of at most [`MAX_DURATION`], `default` when unset.
pub(super) fn duration(key: &str, value: Option<&str>, default: &str) -> Result<Duration, String> {
    let value = value.unwrap_or(default).trim();
    match humantime::parse_duration(value) {
        Ok(duration) if !duration.is_zero() && duration <= MAX_DURATION => Ok(duration),
        _ => Err(format!(
            "{key} must be a positive duration of at most 24h, such as {default}, got {value:?}"
        )),
    }
}

/// A socket address, `default` when unset.
pub(super) fn address(key: &str, value: Option<&str>, default: &str) -> Result<SocketAddr, String> {
    let value = value.unwrap_or(default).trim();
    value
        .parse()
        .map_err(|_| format!("{key} must be an address like {default}, got {value:?}"))
}

/// A whole number from `range`, `default` when unset.
pub(super) fn count(
    key: &str,
    value: Option<&str>,
    default: usize,
    range: std::ops::RangeInclusive<usize>,
) -> Result<usize, String> {
    let Some(text) = value.map(str::trim) else {
        return Ok(default);
    };
    match text.parse::<usize>() {
        Ok(count) if range.contains(&count) => Ok(count),
        _ => Err(format!(
            "{key} must be an integer from {} to {}, got {text:?}",
            range.start(),
            range.end()
        )),
    }
}

/// `true` or `false`, `default` when unset.
pub(super) fn boolean(key: &str, value: Option<&str>, default: bool) -> Result<bool, String> {
    match value.map(str::trim) {
        None => Ok(default),
        Some("true") => Ok(true),
        Some("false") => Ok(false),
        Some(other) => Err(format!("{key} must be true or false, got {other:?}")),
    }
}
