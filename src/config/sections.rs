//! The domain's settings built from the raw layout: each section parses its own values,
//! notes what is wrong, and checks the rules between its values. A section with a problem
//! yields `None`, so no placeholder value ever stands in for a bad one.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::DBOS_URL_ENV;
use super::layers::{RawSettings, TextList};
use super::values::{Problems, address, boolean, count, defaults, duration};
use crate::access::AccessPolicy;
use crate::caps::CapSettings;
use crate::connection_url::ConnectionUrl;
use crate::database::PoolSettings;
use crate::grpc::hygiene::HygieneSettings;
use crate::grpc::tls::TlsSettings;
use crate::snapshot::RefreshSettings;
use crate::telemetry::LogFormat;
use crate::trigger::{DEFAULT_DATABASE, is_database_name};

/// The longest a connection attempt may take. `tokio-postgres` applies it to each host of a
/// multi-host URL in turn, so with the default `read_timeout` (10s) a second host still gets
/// its try within one read.
const MAX_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Where and how calls are served, and how the process stops.
pub(super) struct Serving {
    pub(super) grpc_listen: SocketAddr,
    pub(super) http_listen: SocketAddr,
    pub(super) shutdown_grace_period: Duration,
    pub(super) drain_delay: Duration,
    pub(super) rpc_timeout: Duration,
    pub(super) hygiene: HygieneSettings,
}

/// `stale_after` and `idle_after` must leave room for two reads.
pub(super) fn refresh(raw: &RawSettings, problems: &mut Problems) -> Option<RefreshSettings> {
    let mut read = |key, value: &Option<String>, default| {
        problems.check(duration(key, value.as_deref(), default))
    };
    let interval = read(
        "refresh_interval",
        &raw.refresh_interval,
        defaults::REFRESH_INTERVAL,
    );
    let stale_after = read("stale_after", &raw.stale_after, defaults::STALE_AFTER);
    let idle_after = read("idle_after", &raw.idle_after, defaults::IDLE_AFTER);
    let first_read_timeout = read(
        "first_read_timeout",
        &raw.first_read_timeout,
        defaults::FIRST_READ_TIMEOUT,
    );
    let read_timeout = read("read_timeout", &raw.read_timeout, defaults::READ_TIMEOUT);
    let settings = RefreshSettings {
        interval: interval?,
        stale_after: stale_after?,
        idle_after: idle_after?,
        first_read_timeout: first_read_timeout?,
        read_timeout: read_timeout?,
    };
    // Durations are at most a day (see `duration`), so doubling cannot overflow.
    for (key, value) in [
        ("stale_after", settings.stale_after),
        ("idle_after", settings.idle_after),
    ] {
        problems.require(value >= settings.interval * 2, || {
            format!(
                "{key} ({}) must be at least twice refresh_interval ({})",
                humantime::format_duration(value),
                humantime::format_duration(settings.interval)
            )
        });
    }
    Some(settings)
}

/// The caps, each a whole number from 1 to a million.
pub(super) fn caps(raw: &RawSettings, problems: &mut Problems) -> Option<CapSettings> {
    let defaults = CapSettings::default();
    let mut read = |key, value: &Option<String>, default| {
        problems.check(count(key, value.as_deref(), default, 1..=1_000_000))
    };
    let max_sources = read("max_sources", &raw.max_sources, defaults.max_sources);
    let max_database_connections = read(
        "max_database_connections",
        &raw.max_database_connections,
        defaults.max_database_connections,
    );
    let max_streams = read("max_streams", &raw.max_streams, defaults.max_streams);
    let max_streams_per_connection = read(
        "max_streams_per_connection",
        &raw.max_streams_per_connection,
        defaults.max_streams_per_connection,
    );
    let max_concurrent_calls = read(
        "max_concurrent_calls",
        &raw.max_concurrent_calls,
        defaults.max_concurrent_calls,
    );
    Some(CapSettings {
        max_sources: max_sources?,
        max_database_connections: max_database_connections?,
        max_streams: max_streams?,
        max_streams_per_connection: max_streams_per_connection?,
        max_concurrent_calls: max_concurrent_calls?,
    })
}

/// Pool and session bounds; the pool may not hold more than the connection cap.
pub(super) fn pool(
    raw: &RawSettings,
    refresh: Option<&RefreshSettings>,
    caps: Option<&CapSettings>,
    problems: &mut Problems,
) -> Option<PoolSettings> {
    let default_size = defaults::POOL_MAX_SIZE.parse().ok()?;
    let max_size = problems.check(count(
        "pool_max_size",
        raw.pool_max_size.as_deref(),
        default_size,
        1..=16,
    ));
    let statement_timeout = problems.check(duration(
        "statement_timeout",
        raw.statement_timeout.as_deref(),
        defaults::STATEMENT_TIMEOUT,
    ));
    let max_size = max_size?;
    let cap = caps?.max_database_connections;
    problems.require(max_size <= cap, || {
        format!("pool_max_size ({max_size}) must not exceed max_database_connections ({cap})")
    });
    Some(PoolSettings {
        max_size,
        statement_timeout: statement_timeout?,
        connect_timeout: refresh?.read_timeout.min(MAX_CONNECT_TIMEOUT),
    })
}

/// Listen addresses, timeouts for calls and connections, and the shutdown drain.
pub(super) fn serving(
    raw: &RawSettings,
    refresh: Option<&RefreshSettings>,
    problems: &mut Problems,
) -> Option<Serving> {
    let grpc_listen = problems.check(address(
        "grpc_listen",
        raw.grpc_listen.as_deref(),
        defaults::GRPC_LISTEN,
    ));
    let http_listen = problems.check(address(
        "http_listen",
        raw.http_listen.as_deref(),
        defaults::HTTP_LISTEN,
    ));
    let mut read = |key, value: &Option<String>, default| {
        problems.check(duration(key, value.as_deref(), default))
    };
    let shutdown_grace_period = read(
        "shutdown_grace_period",
        &raw.shutdown_grace_period,
        defaults::SHUTDOWN_GRACE_PERIOD,
    );
    let drain_delay = read("drain_delay", &raw.drain_delay, defaults::DRAIN_DELAY);
    let rpc_timeout = read("rpc_timeout", &raw.rpc_timeout, defaults::RPC_TIMEOUT);
    let handshake_timeout = read(
        "handshake_timeout",
        &raw.handshake_timeout,
        defaults::HANDSHAKE_TIMEOUT,
    );
    let idle_timeout = read("idle_timeout", &raw.idle_timeout, defaults::IDLE_TIMEOUT);
    let serving = Serving {
        grpc_listen: grpc_listen?,
        http_listen: http_listen?,
        shutdown_grace_period: shutdown_grace_period?,
        drain_delay: drain_delay?,
        rpc_timeout: rpc_timeout?,
        hygiene: HygieneSettings {
            handshake_timeout: handshake_timeout?,
            idle_timeout: idle_timeout?,
        },
    };
    let (drain, grace) = (serving.drain_delay, serving.shutdown_grace_period);
    problems.require(drain < grace, || {
        format!(
            "drain_delay ({}) must be shorter than shutdown_grace_period ({})",
            humantime::format_duration(drain),
            humantime::format_duration(grace)
        )
    });
    let first_read = refresh?.first_read_timeout;
    problems.require(serving.rpc_timeout >= first_read, || {
        format!(
            "rpc_timeout ({}) must not be shorter than first_read_timeout ({})",
            humantime::format_duration(serving.rpc_timeout),
            humantime::format_duration(first_read)
        )
    });
    Some(serving)
}

/// How log lines are written.
pub(super) fn log_format(value: Option<&str>) -> Result<LogFormat, String> {
    match value.map(str::trim).unwrap_or(defaults::LOG_FORMAT) {
        "text" => Ok(LogFormat::Text),
        "json" => Ok(LogFormat::Json),
        other => Err(format!(
            "log_format must be \"text\" or \"json\", got {other:?}"
        )),
    }
}

/// Who may read what: `connectionFromEnv` rules and namespaces per database.
pub(super) fn access_policy(raw: &RawSettings) -> Result<AccessPolicy, String> {
    let connection_from_env_enabled = boolean(
        "connection_from_env_enabled",
        raw.connection_from_env_enabled.as_deref(),
        true,
    )?;
    let connection_from_env_allowed_hosts = raw
        .connection_from_env_allowed_hosts
        .as_ref()
        .map(TextList::items)
        .unwrap_or_default()
        .into_iter()
        .map(|host| host.to_ascii_lowercase())
        .collect();
    let allowed_namespaces = raw
        .databases
        .iter()
        .filter_map(|(name, database)| {
            let namespaces = database.allowed_namespaces.as_ref()?.items();
            Some((name.clone(), namespaces))
        })
        .collect();
    Ok(AccessPolicy {
        connection_from_env_enabled,
        connection_from_env_allowed_hosts,
        allowed_namespaces,
    })
}

/// TLS for the gRPC port: a certificate and its key, and a client CA for mTLS.
pub(super) fn tls(raw: &RawSettings, problems: &mut Problems) -> Option<Option<TlsSettings>> {
    let reload_interval = problems.check(duration(
        "tls_reload_interval",
        raw.tls_reload_interval.as_deref(),
        defaults::TLS_RELOAD_INTERVAL,
    ));
    let path = |value: &Option<String>| {
        value
            .as_deref()
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    let files = match (
        path(&raw.tls_cert_file),
        path(&raw.tls_key_file),
        path(&raw.tls_client_ca_file),
    ) {
        (None, None, None) => return reload_interval.map(|_| None),
        (Some(cert_file), Some(key_file), client_ca_file) => (cert_file, key_file, client_ca_file),
        (None, None, Some(_)) => {
            problems.note(
                "tls_client_ca_file needs tls_cert_file and tls_key_file (mTLS is TLS first)"
                    .into(),
            );
            return None;
        }
        (Some(_), None, _) => {
            problems.note("tls_cert_file needs tls_key_file".into());
            return None;
        }
        (None, Some(_), _) => {
            problems.note("tls_key_file needs tls_cert_file".into());
            return None;
        }
    };
    let (cert_file, key_file, client_ca_file) = files;
    Some(Some(TlsSettings {
        cert_file,
        key_file,
        client_ca_file,
        reload_interval: reload_interval?,
    }))
}

/// The databases by name, the `default` one with its fallbacks.
pub(super) fn databases(
    raw: &RawSettings,
    env: &HashMap<String, String>,
    problems: &mut Problems,
) -> Option<HashMap<String, ConnectionUrl>> {
    let before = problems.len();
    let mut urls: Vec<(String, &str, String)> = Vec::new();
    for (name, database) in &raw.databases {
        problems.require(is_database_name(name), || {
            format!("databases.{name}: names must be lowercase letters, digits and _ (at most 63)")
        });
        match &database.url {
            Some(url) if name == DEFAULT_DATABASE => {
                urls.push((name.clone(), url, "database_url".to_owned()));
            }
            Some(url) => urls.push((name.clone(), url, format!("databases.{name}.url"))),
            None if name == DEFAULT_DATABASE => {}
            None => problems.note(format!(
                "databases.{name}.url is required (or PGQS_DATABASES__{}__URL)",
                name.to_uppercase()
            )),
        }
    }
    // The `default` database: databases.default.url (file, PGQS_DATABASE_URL or
    // --database-url), else the file's database_url, else DBOS_SYSTEM_DATABASE_URL.
    if !urls.iter().any(|(name, _, _)| name == DEFAULT_DATABASE) {
        let fallback = raw
            .database_url
            .as_deref()
            .map(|url| (url, "database_url"))
            .or_else(|| {
                env.get(DBOS_URL_ENV)
                    .map(String::as_str)
                    .filter(|url| !url.is_empty())
                    .map(|url| (url, DBOS_URL_ENV))
            });
        if let Some((url, key)) = fallback {
            urls.push((DEFAULT_DATABASE.to_owned(), url, key.to_owned()));
        }
    }
    let mut parsed = HashMap::new();
    for (name, url, key) in urls {
        match ConnectionUrl::parse(url) {
            Ok(url) => {
                parsed.insert(name, url);
            }
            Err(error) => problems.note(format!("{key} {error}")),
        }
    }
    (problems.len() == before).then_some(parsed)
}
