//! Settings: defaults, then an optional YAML file (`--config` / `PGQS_CONFIG`), then
//! `PGQS_*` environment variables, then command-line flags. Every problem is collected and
//! reported together; nothing here prints a database URL (`Debug` is redacted).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::access::AccessPolicy;
use crate::caps::CapSettings;
use crate::connection_url::ConnectionUrl;
use crate::database::PoolSettings;
use crate::grpc::hygiene::HygieneSettings;
use crate::grpc::tls::TlsSettings;
use crate::snapshot::RefreshSettings;
use crate::telemetry::LogFormat;
use crate::trigger::{DEFAULT_DATABASE, is_database_name};

/// Prefix of the scaler's environment variables.
const ENV_PREFIX: &str = "PGQS";
/// The variable DBOS applications already use for their system database; the `default`
/// database falls back to it.
pub const DBOS_URL_ENV: &str = "DBOS_SYSTEM_DATABASE_URL";

/// Command-line flags. Each one overrides the file and the environment. No `Debug`: it may
/// hold a database URL.
#[derive(Default, Clone, clap::Parser)]
#[command(
    name = "pg-queue-scaler",
    version,
    about = "KEDA external scaler for Postgres-backed job queues (DBOS)"
)]
pub struct Flags {
    /// YAML configuration file (env: PGQS_CONFIG).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// gRPC listen address (env: PGQS_GRPC_LISTEN) [default: 0.0.0.0:9090].
    #[arg(long, value_name = "ADDR")]
    pub grpc_listen: Option<String>,
    /// HTTP listen address for metrics and health (env: PGQS_HTTP_LISTEN) [default: 0.0.0.0:8080].
    #[arg(long, value_name = "ADDR")]
    pub http_listen: Option<String>,
    /// URL of the `default` database (env: PGQS_DATABASE_URL, then DBOS_SYSTEM_DATABASE_URL).
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,
    /// Time between two reads of a database in use (env: PGQS_REFRESH_INTERVAL) [default: 1s].
    #[arg(long, value_name = "DURATION")]
    pub refresh_interval: Option<String>,
    /// Oldest reading that may be served (env: PGQS_STALE_AFTER) [default: 30s].
    #[arg(long, value_name = "DURATION")]
    pub stale_after: Option<String>,
    /// Time allowed for draining on SIGTERM/SIGINT (env: PGQS_SHUTDOWN_GRACE_PERIOD) [default: 8s].
    #[arg(long, value_name = "DURATION")]
    pub shutdown_grace_period: Option<String>,
    /// PEM certificate for gRPC TLS (env: PGQS_TLS_CERT_FILE); needs --tls-key-file.
    #[arg(long, value_name = "FILE")]
    pub tls_cert_file: Option<String>,
    /// PEM private key for gRPC TLS (env: PGQS_TLS_KEY_FILE).
    #[arg(long, value_name = "FILE")]
    pub tls_key_file: Option<String>,
    /// PEM CA that client certificates must chain to: turns on mTLS (env: PGQS_TLS_CLIENT_CA_FILE).
    #[arg(long, value_name = "FILE")]
    pub tls_client_ca_file: Option<String>,
    /// Validate the configuration, print the result and exit (0 valid, 64 invalid); binds nothing.
    #[arg(long)]
    pub check_config: bool,
    /// Log format, text or json (env: PGQS_LOG_FORMAT) [default: text].
    #[arg(long, value_name = "FORMAT")]
    pub log_format: Option<String>,
}

/// Validated settings for [`crate::run`].
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where gRPC is served.
    pub grpc_listen: SocketAddr,
    /// Where HTTP (metrics, health) is served.
    pub http_listen: SocketAddr,
    /// Databases by name (`default` included when configured).
    pub databases: HashMap<String, ConnectionUrl>,
    /// Refresh cadence and freshness bounds.
    pub refresh: RefreshSettings,
    /// Pool and session bounds.
    pub pool: PoolSettings,
    /// Longest drain on shutdown.
    pub shutdown_grace_period: Duration,
    /// How long readiness reports NOT_SERVING before the listeners close, so that load
    /// balancers stop sending calls first. Part of the grace period.
    pub drain_delay: Duration,
    /// Upper bound for any unary call.
    pub rpc_timeout: Duration,
    /// Caps on sources, connections, streams and calls.
    pub caps: CapSettings,
    /// Deadlines for client connections on both ports.
    pub hygiene: HygieneSettings,
    /// Who may read what.
    pub access: AccessPolicy,
    /// TLS for the gRPC port, when configured.
    pub tls: Option<TlsSettings>,
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

/// The file and environment layout; every scalar is read as text and parsed by
/// [`Settings::load`], so that one bad value does not hide the others.
// No `Debug`: it holds database URLs as text.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSettings {
    /// `PGQS_CONFIG` lands here too; it was already used to find the file.
    #[serde(rename = "config", default)]
    _config_file: Option<serde::de::IgnoredAny>,
    grpc_listen: Option<String>,
    http_listen: Option<String>,
    database_url: Option<String>,
    #[serde(default)]
    databases: BTreeMap<String, RawDatabase>,
    refresh_interval: Option<String>,
    stale_after: Option<String>,
    idle_after: Option<String>,
    first_read_timeout: Option<String>,
    read_timeout: Option<String>,
    statement_timeout: Option<String>,
    pool_max_size: Option<String>,
    shutdown_grace_period: Option<String>,
    drain_delay: Option<String>,
    rpc_timeout: Option<String>,
    max_sources: Option<String>,
    max_database_connections: Option<String>,
    max_streams: Option<String>,
    max_streams_per_connection: Option<String>,
    max_concurrent_calls: Option<String>,
    handshake_timeout: Option<String>,
    idle_timeout: Option<String>,
    log_format: Option<String>,
    connection_from_env_enabled: Option<String>,
    connection_from_env_allowed_hosts: Option<TextList>,
    tls_cert_file: Option<String>,
    tls_key_file: Option<String>,
    tls_client_ca_file: Option<String>,
    tls_reload_interval: Option<String>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDatabase {
    url: Option<String>,
    allowed_namespaces: Option<TextList>,
}

/// A list, written as a YAML list in the file or comma-separated in an environment variable.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum TextList {
    List(Vec<String>),
    Text(String),
}

impl TextList {
    fn items(&self) -> Vec<String> {
        let items: Vec<&str> = match self {
            TextList::List(items) => items.iter().map(String::as_str).collect(),
            TextList::Text(text) => text.split(',').collect(),
        };
        items
            .into_iter()
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .map(str::to_owned)
            .collect()
    }
}

impl fmt::Debug for RawDatabase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawDatabase")
            .field("url", &self.url.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl Settings {
    /// Loads settings from `flags`, the file they (or `PGQS_CONFIG`) name, and `env` (the
    /// process environment in production, a map in tests).
    pub fn load(flags: &Flags, env: &HashMap<String, String>) -> Result<Self, ConfigError> {
        let raw = layered(flags, env).map_err(|problem| ConfigError {
            problems: vec![problem],
        })?;
        let mut problems = Vec::new();
        // A value that fails to parse leaves a placeholder behind and a line in `problems`;
        // the placeholders are never used, because any problem ends the load.
        let mut take =
            |result: Result<Duration, String>| note(result, &mut problems, Duration::ZERO);
        let interval = take(duration(
            "refresh_interval",
            raw.refresh_interval.as_deref(),
            "1s",
        ));
        let stale_after = take(duration("stale_after", raw.stale_after.as_deref(), "30s"));
        let idle_after = take(duration("idle_after", raw.idle_after.as_deref(), "5m"));
        let first_read_timeout = take(duration(
            "first_read_timeout",
            raw.first_read_timeout.as_deref(),
            "2s",
        ));
        let read_timeout = take(duration("read_timeout", raw.read_timeout.as_deref(), "10s"));
        let statement_timeout = take(duration(
            "statement_timeout",
            raw.statement_timeout.as_deref(),
            "5s",
        ));
        let shutdown_grace_period = take(duration(
            "shutdown_grace_period",
            raw.shutdown_grace_period.as_deref(),
            "8s",
        ));
        let drain_delay = take(duration("drain_delay", raw.drain_delay.as_deref(), "1s"));
        let rpc_timeout = take(duration("rpc_timeout", raw.rpc_timeout.as_deref(), "5s"));
        let handshake_timeout = take(duration(
            "handshake_timeout",
            raw.handshake_timeout.as_deref(),
            "30s",
        ));
        let idle_timeout = take(duration("idle_timeout", raw.idle_timeout.as_deref(), "5m"));
        let tls_reload_interval = take(duration(
            "tls_reload_interval",
            raw.tls_reload_interval.as_deref(),
            "10s",
        ));
        let unspecified = SocketAddr::from(([0, 0, 0, 0], 0));
        let grpc_listen = note(
            address("grpc_listen", raw.grpc_listen.as_deref(), "0.0.0.0:9090"),
            &mut problems,
            unspecified,
        );
        let http_listen = note(
            address("http_listen", raw.http_listen.as_deref(), "0.0.0.0:8080"),
            &mut problems,
            unspecified,
        );
        let max_size = note(pool_size(raw.pool_max_size.as_deref()), &mut problems, 0);
        let caps = note(cap_settings(&raw), &mut problems, CapSettings::default());
        if max_size > caps.max_database_connections {
            problems.push(format!(
                "pool_max_size ({max_size}) must not exceed max_database_connections ({})",
                caps.max_database_connections
            ));
        }
        let log_format = note(
            log_format(raw.log_format.as_deref()),
            &mut problems,
            LogFormat::Text,
        );
        let databases = note(databases(&raw, env), &mut problems, HashMap::new());
        let access = note(access_policy(&raw), &mut problems, AccessPolicy::default());
        let tls = note(tls(&raw, tls_reload_interval), &mut problems, None);
        if !shutdown_grace_period.is_zero() && drain_delay >= shutdown_grace_period {
            problems.push(format!(
                "drain_delay ({}) must be shorter than shutdown_grace_period ({})",
                humantime::format_duration(drain_delay),
                humantime::format_duration(shutdown_grace_period)
            ));
        }
        if !rpc_timeout.is_zero() && rpc_timeout < first_read_timeout {
            problems.push(format!(
                "rpc_timeout ({}) must not be shorter than first_read_timeout ({})",
                humantime::format_duration(rpc_timeout),
                humantime::format_duration(first_read_timeout)
            ));
        }
        // Durations are at most a day (see `duration`), so doubling cannot overflow.
        if !interval.is_zero() && !stale_after.is_zero() && stale_after < interval * 2 {
            problems.push(format!(
                "stale_after ({}) must be at least twice refresh_interval ({})",
                humantime::format_duration(stale_after),
                humantime::format_duration(interval)
            ));
        }
        if !interval.is_zero() && !idle_after.is_zero() && idle_after < interval * 2 {
            problems.push(format!(
                "idle_after ({}) must be at least twice refresh_interval ({})",
                humantime::format_duration(idle_after),
                humantime::format_duration(interval)
            ));
        }
        if !problems.is_empty() {
            return Err(ConfigError { problems });
        }
        Ok(Self {
            grpc_listen,
            http_listen,
            databases,
            refresh: RefreshSettings {
                interval,
                stale_after,
                idle_after,
                first_read_timeout,
                read_timeout,
            },
            pool: PoolSettings {
                max_size,
                statement_timeout,
                connect_timeout: read_timeout.min(Duration::from_secs(5)),
            },
            shutdown_grace_period,
            drain_delay,
            rpc_timeout,
            caps,
            hygiene: HygieneSettings {
                handshake_timeout,
                idle_timeout,
            },
            access,
            tls,
            log_format,
        })
    }
}

/// Applies the layers in order: file, environment, flags.
fn layered(flags: &Flags, env: &HashMap<String, String>) -> Result<RawSettings, String> {
    let file = flags.config.clone().or_else(|| {
        env.get("PGQS_CONFIG")
            .filter(|path| !path.is_empty())
            .map(PathBuf::from)
    });
    let mut builder = config::Config::builder();
    if let Some(path) = &file {
        builder = builder.add_source(
            config::File::from(path.as_path())
                .format(config::FileFormat::Yaml)
                .required(true),
        );
    }
    builder = builder.add_source(
        config::Environment::with_prefix(ENV_PREFIX)
            .prefix_separator("_")
            .separator("__")
            .ignore_empty(true)
            .source(Some(environment_layer(env)?)),
    );
    // --database-url is the `default` database's URL, like PGQS_DATABASE_URL.
    let overrides = [
        ("grpc_listen", &flags.grpc_listen),
        ("http_listen", &flags.http_listen),
        ("databases.default.url", &flags.database_url),
        ("refresh_interval", &flags.refresh_interval),
        ("stale_after", &flags.stale_after),
        ("shutdown_grace_period", &flags.shutdown_grace_period),
        ("tls_cert_file", &flags.tls_cert_file),
        ("tls_key_file", &flags.tls_key_file),
        ("tls_client_ca_file", &flags.tls_client_ca_file),
        ("log_format", &flags.log_format),
    ];
    for (key, value) in overrides {
        builder = builder
            .set_override_option(key, value.clone())
            .map_err(|error| describe(&error))?;
    }
    let layered = builder.build().map_err(|error| match &file {
        Some(path) => format!(
            "cannot read configuration file {}: {}",
            path.display(),
            describe(&error)
        ),
        None => describe(&error),
    })?;
    layered.try_deserialize().map_err(|error| describe(&error))
}

/// The environment as the config crate should see it: `PGQS_DATABASE_URL` is the `default`
/// database's URL, so it becomes `PGQS_DATABASES__DEFAULT__URL` and layers like any other
/// database URL.
fn environment_layer(env: &HashMap<String, String>) -> Result<HashMap<String, String>, String> {
    const SHORT: &str = "PGQS_DATABASE_URL";
    const LONG: &str = "PGQS_DATABASES__DEFAULT__URL";
    let mut layer = env.clone();
    if let Some(url) = layer.remove(SHORT).filter(|url| !url.is_empty()) {
        if layer.get(LONG).is_some_and(|other| !other.is_empty()) {
            return Err(format!("set {SHORT} or {LONG}, not both"));
        }
        layer.insert(LONG.to_owned(), url);
    }
    Ok(layer)
}

/// A config-crate error as text that cannot carry a secret: type errors name the key and
/// what it expects, not the value found (which may be a database URL).
fn describe(error: &config::ConfigError) -> String {
    match error {
        config::ConfigError::Type { key, expected, .. } => format!(
            "{} must be {expected}",
            key.as_deref().unwrap_or("a setting")
        ),
        other => {
            let text = other.to_string();
            if !text.contains("://") {
                return text;
            }
            // serde's messages quote the value; keep only the key they name.
            let key = text
                .split_once("for key `")
                .and_then(|(_, rest)| rest.split_once('`'))
                .map_or("a setting", |(key, _)| key);
            format!("{key} has a value of the wrong shape (not shown: it may hold a secret)")
        }
    }
}

fn access_policy(raw: &RawSettings) -> Result<AccessPolicy, String> {
    let connection_from_env_enabled =
        match raw.connection_from_env_enabled.as_deref().map(str::trim) {
            None | Some("true") => true,
            Some("false") => false,
            Some(other) => {
                return Err(format!(
                    "connection_from_env_enabled must be true or false, got {other:?}"
                ));
            }
        };
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

fn tls(raw: &RawSettings, reload_interval: Duration) -> Result<Option<TlsSettings>, String> {
    let path = |value: &Option<String>| {
        value
            .as_deref()
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    match (
        path(&raw.tls_cert_file),
        path(&raw.tls_key_file),
        path(&raw.tls_client_ca_file),
    ) {
        (None, None, None) => Ok(None),
        (Some(cert_file), Some(key_file), client_ca_file) => Ok(Some(TlsSettings {
            cert_file,
            key_file,
            client_ca_file,
            reload_interval,
        })),
        (None, None, Some(_)) => Err(
            "tls_client_ca_file needs tls_cert_file and tls_key_file (mTLS is TLS first)".into(),
        ),
        (Some(_), None, _) => Err("tls_cert_file needs tls_key_file".into()),
        (None, Some(_), _) => Err("tls_key_file needs tls_cert_file".into()),
    }
}

fn note<T>(result: Result<T, String>, problems: &mut Vec<String>, placeholder: T) -> T {
    result.unwrap_or_else(|problem| {
        problems.push(problem);
        placeholder
    })
}

fn log_format(value: Option<&str>) -> Result<LogFormat, String> {
    match value.map(str::trim) {
        None | Some("text") => Ok(LogFormat::Text),
        Some("json") => Ok(LogFormat::Json),
        Some(other) => Err(format!(
            "log_format must be \"text\" or \"json\", got {other:?}"
        )),
    }
}

fn address(key: &str, value: Option<&str>, default: &str) -> Result<SocketAddr, String> {
    let value = value.unwrap_or(default).trim();
    value
        .parse()
        .map_err(|_| format!("{key} must be an address like {default}, got {value:?}"))
}

/// The longest duration any setting takes: keeps timer arithmetic far from overflow and
/// every value within what Postgres accepts for `statement_timeout`.
const MAX_DURATION: Duration = Duration::from_secs(24 * 60 * 60);

fn duration(key: &str, value: Option<&str>, default: &str) -> Result<Duration, String> {
    let value = value.unwrap_or(default).trim();
    match humantime::parse_duration(value) {
        Ok(duration) if !duration.is_zero() && duration <= MAX_DURATION => Ok(duration),
        _ => Err(format!(
            "{key} must be a positive duration of at most 24h, such as {default}, got {value:?}"
        )),
    }
}

/// The caps, each a whole number from 1 to a million.
fn cap_settings(raw: &RawSettings) -> Result<CapSettings, String> {
    let count = |key: &str, value: &Option<String>, default: usize| {
        let text = value.as_deref().map(str::trim);
        match text.map(str::parse::<usize>) {
            None => Ok(default),
            Some(Ok(count @ 1..=1_000_000)) => Ok(count),
            Some(_) => Err(format!(
                "{key} must be an integer from 1 to 1000000, got {:?}",
                text.unwrap_or_default()
            )),
        }
    };
    let defaults = CapSettings::default();
    let mut problems = Vec::new();
    let mut take = |result: Result<usize, String>| note(result, &mut problems, 0);
    let caps = CapSettings {
        max_sources: take(count("max_sources", &raw.max_sources, defaults.max_sources)),
        max_database_connections: take(count(
            "max_database_connections",
            &raw.max_database_connections,
            defaults.max_database_connections,
        )),
        max_streams: take(count("max_streams", &raw.max_streams, defaults.max_streams)),
        max_streams_per_connection: take(count(
            "max_streams_per_connection",
            &raw.max_streams_per_connection,
            defaults.max_streams_per_connection,
        )),
        max_concurrent_calls: take(count(
            "max_concurrent_calls",
            &raw.max_concurrent_calls,
            defaults.max_concurrent_calls,
        )),
    };
    if problems.is_empty() {
        Ok(caps)
    } else {
        Err(problems.join("; "))
    }
}

fn pool_size(value: Option<&str>) -> Result<usize, String> {
    let value = value.unwrap_or("2").trim();
    match value.parse::<usize>() {
        Ok(size @ 1..=16) => Ok(size),
        _ => Err(format!(
            "pool_max_size must be an integer from 1 to 16, got {value:?}"
        )),
    }
}

fn databases(
    raw: &RawSettings,
    env: &HashMap<String, String>,
) -> Result<HashMap<String, ConnectionUrl>, String> {
    let mut problems = Vec::new();
    let mut urls: Vec<(String, &str, String)> = Vec::new();
    for (name, database) in &raw.databases {
        if !is_database_name(name) {
            problems.push(format!(
                "databases.{name}: names must be lowercase letters, digits and _ (at most 63)"
            ));
        }
        match &database.url {
            Some(url) if name == DEFAULT_DATABASE => {
                urls.push((name.clone(), url, "database_url".to_owned()));
            }
            Some(url) => urls.push((name.clone(), url, format!("databases.{name}.url"))),
            None if name == DEFAULT_DATABASE => {}
            None => problems.push(format!(
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
            Err(error) => problems.push(format!("{key} {error}")),
        }
    }
    if problems.is_empty() {
        Ok(parsed)
    } else {
        Err(problems.join("\n  - "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_load_and_validate() {
        let settings = Settings::load(&Flags::default(), &HashMap::new()).unwrap();
        assert_eq!(settings.grpc_listen, "0.0.0.0:9090".parse().unwrap());
        assert_eq!(settings.http_listen, "0.0.0.0:8080".parse().unwrap());
        assert_eq!(settings.refresh.interval, Duration::from_secs(1));
        assert_eq!(settings.refresh.stale_after, Duration::from_secs(30));
        assert_eq!(settings.refresh.first_read_timeout, Duration::from_secs(2));
        assert_eq!(settings.pool.max_size, 2);
        assert_eq!(settings.log_format, LogFormat::Text);
        assert!(settings.databases.is_empty());
    }

    #[test]
    fn the_default_database_falls_back_to_the_dbos_variable() {
        let settings = Settings::load(
            &Flags::default(),
            &env(&[(DBOS_URL_ENV, "postgres://u:pw@dbos-host/app_sys")]),
        )
        .unwrap();
        assert_eq!(
            settings.databases["default"].label(),
            "dbos-host:5432/app_sys"
        );
        let settings = Settings::load(
            &Flags::default(),
            &env(&[
                (DBOS_URL_ENV, "postgres://u:pw@dbos-host/app_sys"),
                ("PGQS_DATABASE_URL", "postgres://u:pw@pgqs-host/x"),
            ]),
        )
        .unwrap();
        assert_eq!(settings.databases["default"].label(), "pgqs-host:5432/x");
    }

    #[test]
    fn flags_beat_environment_which_beats_the_file() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        writeln!(
            file,
            "grpc_listen: 127.0.0.1:1000\nhttp_listen: 127.0.0.1:2000\nrefresh_interval: 3s\n\
             databases:\n  orders:\n    url: postgres://u:pw@orders-host/orders"
        )
        .unwrap();
        let flags = Flags {
            config: Some(file.path().to_path_buf()),
            grpc_listen: Some("127.0.0.1:3000".into()),
            ..Flags::default()
        };
        let settings = Settings::load(
            &flags,
            &env(&[
                ("PGQS_GRPC_LISTEN", "127.0.0.1:4000"),
                ("PGQS_HTTP_LISTEN", "127.0.0.1:5000"),
                (
                    "PGQS_DATABASES__BILLING__URL",
                    "postgres://u:pw@billing-host/b",
                ),
            ]),
        )
        .unwrap();
        assert_eq!(settings.grpc_listen.port(), 3000);
        assert_eq!(settings.http_listen.port(), 5000);
        assert_eq!(settings.refresh.interval, Duration::from_secs(3));
        assert_eq!(
            settings.databases["orders"].label(),
            "orders-host:5432/orders"
        );
        assert_eq!(settings.databases["billing"].label(), "billing-host:5432/b");
    }

    #[test]
    fn every_problem_is_listed_at_once_and_no_url_is_shown() {
        let error = Settings::load(
            &Flags::default(),
            &env(&[
                ("PGQS_GRPC_LISTEN", "nowhere"),
                ("PGQS_REFRESH_INTERVAL", "soon"),
                ("PGQS_POOL_MAX_SIZE", "0"),
                ("PGQS_LOG_FORMAT", "xml"),
                ("PGQS_DATABASE_URL", "postgres://u:hunter2@h:port/db"),
            ]),
        )
        .unwrap_err();
        let text = error.to_string();
        assert_eq!(error.problems.len(), 5, "{text}");
        for key in [
            "grpc_listen",
            "refresh_interval",
            "pool_max_size",
            "log_format",
            "database_url",
        ] {
            assert!(text.contains(key), "{key} missing from {text}");
        }
        assert!(!text.contains("hunter2"));
    }

    #[test]
    fn access_rules_and_tls_files_are_read() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        writeln!(
            file,
            "connection_from_env_allowed_hosts: [DB.internal, other]\n\
             databases:\n  orders:\n    allowed_namespaces: [team-a]"
        )
        .unwrap();
        let flags = Flags {
            config: Some(file.path().to_path_buf()),
            ..Flags::default()
        };
        let settings = Settings::load(
            &flags,
            &env(&[
                ("PGQS_DATABASES__ORDERS__URL", "postgres://u:pw@h/orders"),
                ("PGQS_CONNECTION_FROM_ENV_ENABLED", "false"),
                ("PGQS_TLS_CERT_FILE", "/tls/tls.crt"),
                ("PGQS_TLS_KEY_FILE", "/tls/tls.key"),
                ("PGQS_TLS_CLIENT_CA_FILE", "/tls/ca.crt"),
            ]),
        )
        .unwrap();
        assert!(!settings.access.connection_from_env_enabled);
        assert_eq!(
            settings.access.connection_from_env_allowed_hosts,
            ["db.internal", "other"]
        );
        assert_eq!(settings.access.allowed_namespaces["orders"], ["team-a"]);
        let tls = settings.tls.unwrap();
        assert_eq!(tls.client_ca_file, Some(PathBuf::from("/tls/ca.crt")));

        let settings = Settings::load(
            &Flags::default(),
            &env(&[("PGQS_CONNECTION_FROM_ENV_ALLOWED_HOSTS", "a, b")]),
        )
        .unwrap();
        assert!(settings.access.connection_from_env_enabled);
        assert_eq!(
            settings.access.connection_from_env_allowed_hosts,
            ["a", "b"]
        );
        assert!(settings.tls.is_none());
    }

    #[test]
    fn half_a_tls_configuration_is_refused() {
        let error = Settings::load(
            &Flags::default(),
            &env(&[("PGQS_TLS_CLIENT_CA_FILE", "/ca")]),
        )
        .unwrap_err();
        assert!(
            error.to_string().contains("tls_client_ca_file needs"),
            "{error}"
        );
        let error =
            Settings::load(&Flags::default(), &env(&[("PGQS_TLS_CERT_FILE", "/c")])).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("tls_cert_file needs tls_key_file"),
            "{error}"
        );
    }

    #[test]
    fn the_default_database_layers_like_the_others() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        writeln!(
            file,
            "database_url: postgres://u:pw@file-host/a\n\
             databases:\n  default:\n    allowed_namespaces: [team-a]"
        )
        .unwrap();
        let flags = Flags {
            config: Some(file.path().to_path_buf()),
            ..Flags::default()
        };
        let from_file = Settings::load(
            &flags,
            &env(&[(DBOS_URL_ENV, "postgres://u:pw@dbos-host/b")]),
        )
        .unwrap();
        assert_eq!(from_file.databases["default"].label(), "file-host:5432/a");
        assert_eq!(from_file.access.allowed_namespaces["default"], ["team-a"]);

        let from_env = Settings::load(
            &flags,
            &env(&[("PGQS_DATABASES__DEFAULT__URL", "postgres://u:pw@env-host/c")]),
        )
        .unwrap();
        assert_eq!(
            from_env.databases["default"].label(),
            "env-host:5432/c",
            "env beats the file"
        );

        let namespaces_only = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(
            namespaces_only.path(),
            "databases:\n  default:\n    allowed_namespaces: [x]\n",
        )
        .unwrap();
        let flags = Flags {
            config: Some(namespaces_only.path().to_path_buf()),
            ..Flags::default()
        };
        let fallback = Settings::load(
            &flags,
            &env(&[(DBOS_URL_ENV, "postgres://u:pw@dbos-host/b")]),
        )
        .unwrap();
        assert_eq!(fallback.databases["default"].label(), "dbos-host:5432/b");

        let flags = Flags {
            database_url: Some("postgres://u:pw@flag-host/d".into()),
            ..Flags::default()
        };
        let from_flag = Settings::load(
            &flags,
            &env(&[("PGQS_DATABASE_URL", "postgres://u:pw@env-host/c")]),
        )
        .unwrap();
        assert_eq!(
            from_flag.databases["default"].label(),
            "flag-host:5432/d",
            "flags beat env"
        );

        let both = Settings::load(
            &Flags::default(),
            &env(&[
                ("PGQS_DATABASE_URL", "postgres://a/b"),
                ("PGQS_DATABASES__DEFAULT__URL", "postgres://c/d"),
            ]),
        )
        .unwrap_err();
        assert!(both.to_string().contains("not both"), "{both}");
    }

    #[test]
    fn a_misplaced_url_is_refused_without_showing_it() {
        let error = Settings::load(
            &Flags::default(),
            &env(&[("PGQS_DATABASES__ORDERS", "postgres://u:hunter2@h/db")]),
        )
        .unwrap_err();
        let text = error.to_string();
        assert!(text.contains("databases.orders"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
    }

    #[test]
    fn absurd_durations_are_refused_not_overflowed() {
        let error = Settings::load(
            &Flags::default(),
            &env(&[
                ("PGQS_REFRESH_INTERVAL", "18446744073709551615s"),
                ("PGQS_STATEMENT_TIMEOUT", "30days"),
                ("PGQS_IDLE_AFTER", "1s"),
                ("PGQS_STALE_AFTER", "3s"),
            ]),
        )
        .unwrap_err();
        let text = error.to_string();
        assert!(
            text.contains("refresh_interval must be a positive duration of at most 24h"),
            "{text}"
        );
        assert!(text.contains("statement_timeout"), "{text}");
        let error =
            Settings::load(&Flags::default(), &env(&[("PGQS_IDLE_AFTER", "1s")])).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("idle_after (1s) must be at least twice"),
            "{error}"
        );
    }

    #[test]
    fn unknown_settings_are_refused() {
        let error = Settings::load(&Flags::default(), &env(&[("PGQS_REFRESH_INTERVALL", "1s")]))
            .unwrap_err();
        assert!(error.to_string().contains("refresh_intervall"), "{error}");
    }

    #[test]
    fn a_missing_config_file_is_an_error() {
        let flags = Flags {
            config: Some("/nonexistent/pgqs.yaml".into()),
            ..Flags::default()
        };
        let error = Settings::load(&flags, &HashMap::new()).unwrap_err();
        assert!(
            error.to_string().contains("/nonexistent/pgqs.yaml"),
            "{error}"
        );
    }

    #[test]
    fn debug_output_hides_database_passwords() {
        let settings = Settings::load(
            &Flags::default(),
            &env(&[("PGQS_DATABASE_URL", "postgres://u:hunter2@h/db")]),
        )
        .unwrap();
        assert!(!format!("{settings:?}").contains("hunter2"));
    }
}
