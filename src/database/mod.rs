//! Connections to the databases the scaler reads: a small deadpool-postgres pool per
//! database, with TLS from the URL's `sslmode` and sessions that are read-only, time-limited
//! and named `pg-queue-scaler` in `pg_stat_activity`.

mod tls;
mod url;

use std::time::Duration;

use deadpool_postgres::{Hook, HookError, Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};

pub use tls::TlsSetupError;
pub use url::{ConnectionUrl, TlsMode, UrlError};

/// The `application_name` every session of the scaler carries.
pub const APPLICATION_NAME: &str = "pg-queue-scaler";

/// How pools and sessions are sized and bounded.
#[derive(Debug, Clone)]
pub struct PoolSettings {
    /// Connections per database at most.
    pub max_size: usize,
    /// Server-side limit for each statement (`statement_timeout`).
    pub statement_timeout: Duration,
    /// Limit for opening a connection, and for waiting for a free one.
    pub connect_timeout: Duration,
}

/// Builds the pool for one database. Opens no connection yet.
pub fn build_pool(url: &ConnectionUrl, settings: &PoolSettings) -> Result<Pool, TlsSetupError> {
    let mut config = url.config().clone();
    config.application_name(APPLICATION_NAME);
    config.ssl_mode(match url.tls_mode() {
        TlsMode::Disable => tokio_postgres::config::SslMode::Disable,
        TlsMode::Prefer => tokio_postgres::config::SslMode::Prefer,
        TlsMode::Require | TlsMode::VerifyCa | TlsMode::VerifyFull => {
            tokio_postgres::config::SslMode::Require
        }
    });
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(settings.connect_timeout);
    }
    let connector = tls::connector(url.tls_mode(), url.root_cert())?;
    let manager = Manager::from_config(
        config,
        connector,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    // Settings go through SQL once per connection, not startup options, which PgBouncer
    // rejects. Behind PgBouncer this needs session pooling: in transaction pooling neither
    // these settings nor the cached prepared statement would stay with the connection.
    let session_setup = format!(
        "SET default_transaction_read_only = on; SET statement_timeout = {}; \
         SET idle_in_transaction_session_timeout = 60000",
        settings.statement_timeout.as_millis()
    );
    let pool = Pool::builder(manager)
        .max_size(settings.max_size)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(settings.connect_timeout))
        .create_timeout(Some(settings.connect_timeout))
        .recycle_timeout(Some(settings.connect_timeout))
        .post_create(Hook::async_fn(move |client, _| {
            let session_setup = session_setup.clone();
            Box::pin(async move {
                client
                    .batch_execute(&session_setup)
                    .await
                    .map_err(HookError::Backend)
            })
        }))
        .build()
        .expect("a pool with a runtime and a valid size always builds");
    Ok(pool)
}
