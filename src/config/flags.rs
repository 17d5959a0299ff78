//! The command-line flags: the last layer, each overriding the file and the environment.

use std::path::PathBuf;

use super::defaults;

/// A flag's help text ending with its default, so the default is written once, in
/// [`defaults`].
fn with_default(help: &str, default: &str) -> String {
    format!("{help} [default: {default}]")
}

/// Command-line flags. Each one overrides the file and the environment. No `Debug`: it may
/// hold a database URL.
#[derive(Default, Clone, clap::Parser)]
#[command(
    name = "pg-queue-scaler",
    version,
    about = "KEDA external scaler for Postgres-backed job queues (DBOS)"
)]
pub struct Flags {
    /// What to do instead of serving.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// YAML configuration file (env: PGQS_CONFIG).
    #[arg(long, value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,
    /// gRPC listen address.
    #[arg(long, value_name = "ADDR", help = with_default(
        "gRPC listen address (env: PGQS_GRPC_LISTEN)",
        defaults::GRPC_LISTEN,
    ))]
    pub grpc_listen: Option<String>,
    /// HTTP listen address for metrics and health.
    #[arg(long, value_name = "ADDR", help = with_default(
        "HTTP listen address for metrics and health (env: PGQS_HTTP_LISTEN)",
        defaults::HTTP_LISTEN,
    ))]
    pub http_listen: Option<String>,
    /// URL of the `default` database (env: PGQS_DATABASE_URL, then DBOS_SYSTEM_DATABASE_URL).
    #[arg(long, value_name = "URL", global = true)]
    pub database_url: Option<String>,
    /// Time between two reads of a database in use.
    #[arg(long, value_name = "DURATION", help = with_default(
        "Time between two reads of a database in use (env: PGQS_REFRESH_INTERVAL)",
        defaults::REFRESH_INTERVAL,
    ))]
    pub refresh_interval: Option<String>,
    /// Oldest reading that may be served.
    #[arg(long, value_name = "DURATION", help = with_default(
        "Oldest reading that may be served (env: PGQS_STALE_AFTER)",
        defaults::STALE_AFTER,
    ))]
    pub stale_after: Option<String>,
    /// Time allowed for draining on SIGTERM/SIGINT.
    #[arg(long, value_name = "DURATION", help = with_default(
        "Time allowed for draining on SIGTERM/SIGINT (env: PGQS_SHUTDOWN_GRACE_PERIOD)",
        defaults::SHUTDOWN_GRACE_PERIOD,
    ))]
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
    /// Validate trigger metadata as KEDA would send it (one KEY=VALUE per flag), print the
    /// result and exit (0 valid, 64 invalid); reads no configuration and binds nothing.
    #[arg(long, value_name = "KEY=VALUE")]
    pub check_trigger: Vec<String>,
    /// Log format, text or json.
    #[arg(long, value_name = "FORMAT", help = with_default(
        "Log format, text or json (env: PGQS_LOG_FORMAT)",
        defaults::LOG_FORMAT,
    ))]
    pub log_format: Option<String>,
}

/// What the binary can do besides serving.
#[derive(Clone, clap::Subcommand)]
pub enum Command {
    /// Print the queues of every configured database, or explain one trigger, as the
    /// Inspection service would; reads once (or again every refresh interval with --watch)
    /// and serves nothing. Exit codes: 0 answered, 64 bad configuration or trigger, 69 a
    /// database could not be read.
    Inspect(crate::inspect::InspectArgs),
}

impl Flags {
    /// The flags that override a setting, by the setting's key in the file layout.
    /// `--database-url` is the `default` database's URL, like `PGQS_DATABASE_URL`.
    pub(super) fn overrides(&self) -> [(&'static str, &Option<String>); 10] {
        [
            ("grpc_listen", &self.grpc_listen),
            ("http_listen", &self.http_listen),
            ("databases.default.url", &self.database_url),
            ("refresh_interval", &self.refresh_interval),
            ("stale_after", &self.stale_after),
            ("shutdown_grace_period", &self.shutdown_grace_period),
            ("tls_cert_file", &self.tls_cert_file),
            ("tls_key_file", &self.tls_key_file),
            ("tls_client_ca_file", &self.tls_client_ca_file),
            ("log_format", &self.log_format),
        ]
    }
}
