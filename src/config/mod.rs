//! Settings: defaults, then an optional YAML file (`--config` / `PGQS_CONFIG`), then
//! `PGQS_*` environment variables, then command-line flags. Every problem is collected and
//! reported together; nothing here prints a database URL (`Debug` is redacted).
//!
//! This module only reads layers and assembles them: `flags` are the command line,
//! `layers` the file and environment read into text, `values` the scalar parsers and
//! defaults, `sections` the domain's settings built from them. Each settings type lives
//! with the module it configures.

mod flags;
mod layers;
mod sections;
mod values;

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

pub use flags::{Command, Flags};
use values::{Problems, defaults};

use crate::access::AccessPolicy;
use crate::caps::CapSettings;
use crate::connection_url::ConnectionUrl;
use crate::database::PoolSettings;
use crate::grpc::hygiene::HygieneSettings;
use crate::grpc::tls::TlsSettings;
use crate::snapshot::RefreshSettings;
use crate::telemetry::LogFormat;

/// The variable DBOS applications already use for their system database; the `default`
/// database falls back to it.
pub(crate) const DBOS_URL_ENV: &str = "DBOS_SYSTEM_DATABASE_URL";

/// Validated settings for [`crate::run`].
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where gRPC is served.
    pub grpc_listen: SocketAddr,
    /// Where HTTP (metrics, health) is served.
    pub http_listen: SocketAddr,
    /// Databases by name (`default` included when configured).
    pub(crate) databases: HashMap<String, ConnectionUrl>,
    /// Refresh cadence and freshness bounds.
    pub(crate) refresh: RefreshSettings,
    /// Pool and session bounds.
    pub(crate) pool: PoolSettings,
    /// Longest drain on shutdown.
    pub(crate) shutdown_grace_period: Duration,
    /// How long readiness reports NOT_SERVING before the listeners close, so that load
    /// balancers stop sending calls first. Part of the grace period.
    pub(crate) drain_delay: Duration,
    /// Upper bound for any unary call.
    pub(crate) rpc_timeout: Duration,
    /// Caps on sources, connections, streams and calls.
    pub(crate) caps: CapSettings,
    /// Deadlines for client connections on both ports.
    pub(crate) hygiene: HygieneSettings,
    /// Who may read what.
    pub(crate) access: AccessPolicy,
    /// TLS for the gRPC port, when configured.
    pub(crate) tls: Option<TlsSettings>,
    /// Log format.
    pub log_format: LogFormat,
}

/// Every problem found in the configuration.
#[derive(Debug)]
pub struct ConfigError {
    /// One line per problem.
    pub problems: Vec<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "invalid configuration:")?;
        for problem in &self.problems {
            writeln!(f, "  - {problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

impl Settings {
    /// Loads settings from `flags`, the file they (or `PGQS_CONFIG`) name, and `env` (the
    /// process environment in production, a map in tests).
    pub fn load(flags: &Flags, env: &HashMap<String, String>) -> Result<Self, ConfigError> {
        let raw = layers::layered(flags, env).map_err(|problem| ConfigError {
            problems: vec![problem],
        })?;
        let mut problems = Problems::default();
        let refresh = sections::refresh(&raw, &mut problems);
        let caps = sections::caps(&raw, &mut problems);
        let pool = sections::pool(&raw, refresh.as_ref(), caps.as_ref(), &mut problems);
        let serving = sections::serving(&raw, refresh.as_ref(), &mut problems);
        let log_format = problems.check(sections::log_format(raw.log_format.as_deref()));
        let databases = sections::databases(&raw, env, &mut problems);
        let access = problems.check(sections::access_policy(&raw));
        let tls = sections::tls(&raw, &mut problems);
        let (
            Some(refresh),
            Some(caps),
            Some(pool),
            Some(serving),
            Some(log_format),
            Some(databases),
            Some(access),
            Some(tls),
        ) = (
            refresh, caps, pool, serving, log_format, databases, access, tls,
        )
        else {
            return Err(ConfigError::from(problems));
        };
        if !problems.is_empty() {
            return Err(ConfigError::from(problems));
        }
        Ok(Self {
            grpc_listen: serving.grpc_listen,
            http_listen: serving.http_listen,
            databases,
            refresh,
            pool,
            shutdown_grace_period: serving.shutdown_grace_period,
            drain_delay: serving.drain_delay,
            rpc_timeout: serving.rpc_timeout,
            caps,
            hygiene: serving.hygiene,
            access,
            tls,
            log_format,
        })
    }
}

impl Settings {
    /// The configured databases' names, sorted (never their URLs).
    pub fn database_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.databases.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }

    /// Whether the gRPC port serves TLS, and whether it asks clients for certificates.
    pub fn grpc_tls(&self) -> (bool, bool) {
        let tls = self.tls.as_ref();
        (
            tls.is_some(),
            tls.is_some_and(|tls| tls.client_ca_file.is_some()),
        )
    }
}

impl From<Problems> for ConfigError {
    fn from(problems: Problems) -> Self {
        Self {
            problems: problems.into_lines(),
        }
    }
}

#[cfg(test)]
mod tests;
