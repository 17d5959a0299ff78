//! The file and environment layers, read by the `config` crate into one raw layout of text
//! values, with the flags applied on top. Nothing is interpreted here beyond the layout.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;

use super::Flags;

/// Prefix of the scaler's environment variables.
const ENV_PREFIX: &str = "PGQS";

/// The file and environment layout; every scalar is read as text and parsed by
/// [`super::Settings::load`], so that one bad value does not hide the others.
// No `Debug`: it holds database URLs as text.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSettings {
    /// `PGQS_CONFIG` lands here too; it was already used to find the file.
    #[serde(rename = "config", default)]
    _config_file: Option<serde::de::IgnoredAny>,
    pub(super) grpc_listen: Option<String>,
    pub(super) http_listen: Option<String>,
    pub(super) database_url: Option<String>,
    #[serde(default)]
    pub(super) databases: BTreeMap<String, RawDatabase>,
    pub(super) refresh_interval: Option<String>,
    pub(super) stale_after: Option<String>,
    pub(super) idle_after: Option<String>,
    pub(super) first_read_timeout: Option<String>,
    pub(super) read_timeout: Option<String>,
    pub(super) statement_timeout: Option<String>,
    pub(super) pool_max_size: Option<String>,
    pub(super) shutdown_grace_period: Option<String>,
    pub(super) drain_delay: Option<String>,
    pub(super) rpc_timeout: Option<String>,
    pub(super) max_sources: Option<String>,
    pub(super) max_database_connections: Option<String>,
    pub(super) max_streams: Option<String>,
    pub(super) max_streams_per_connection: Option<String>,
    pub(super) max_concurrent_calls: Option<String>,
    pub(super) handshake_timeout: Option<String>,
    pub(super) idle_timeout: Option<String>,
    pub(super) log_format: Option<String>,
    pub(super) connection_from_env_enabled: Option<String>,
    pub(super) connection_from_env_allowed_hosts: Option<TextList>,
    pub(super) tls_cert_file: Option<String>,
    pub(super) tls_key_file: Option<String>,
    pub(super) tls_client_ca_file: Option<String>,
    pub(super) tls_reload_interval: Option<String>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDatabase {
    pub(super) url: Option<String>,
    pub(super) allowed_namespaces: Option<TextList>,
}

/// A list, written as a YAML list in the file or comma-separated in an environment variable.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(super) enum TextList {
    List(Vec<String>),
    Text(String),
}

impl TextList {
    pub(super) fn items(&self) -> Vec<String> {
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

/// Applies the layers in order: file, environment, flags.
pub(super) fn layered(flags: &Flags, env: &HashMap<String, String>) -> Result<RawSettings, String> {
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
    for (key, value) in flags.overrides() {
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
