//! Connections to the databases the scaler reads: a small deadpool-postgres pool per
//! database, with TLS from the URL's `sslmode` and sessions named `pg-queue-scaler` in
//! `pg_stat_activity`.
//!
//! Sessions carry no state of the scaler's own: every read is one read-only transaction
//! that sets its limits locally (`read_only_query`) and runs an unnamed statement, so that
//! a connection pooler in transaction mode (PgBouncer) may hand the server connection to any
//! other client afterwards, exactly as it was.

mod tls;

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{GenericClient, Row};

use crate::connection_url::{ConnectionUrl, TlsMode};
pub use tls::TlsSetupError;

/// The `application_name` every session of the scaler carries.
pub(crate) const APPLICATION_NAME: &str = "pg-queue-scaler";

/// How pools and sessions are sized and bounded.
#[derive(Debug, Clone)]
pub struct PoolSettings {
    /// Connections per database at most.
    pub max_size: usize,
    /// Server-side limit for each statement (`statement_timeout`, set locally in each read's
    /// transaction: see `ReadLimits`).
    pub statement_timeout: Duration,
    /// Limit for opening a connection, and for waiting for a free one.
    pub connect_timeout: Duration,
}

impl PoolSettings {
    /// The limits each read's transaction sets for itself.
    pub(crate) fn read_limits(&self) -> ReadLimits {
        ReadLimits {
            statement_timeout: self.statement_timeout,
            ..ReadLimits::default()
        }
    }
}

/// What each read's transaction sets for itself with `SET LOCAL`, so that no setting
/// outlives the transaction: nothing stays on the session, or on a pooler's server
/// connection that other clients use next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ReadLimits {
    /// `statement_timeout` of the read's statements.
    pub statement_timeout: Duration,
    /// `idle_in_transaction_session_timeout`: the server ends the session if the
    /// transaction waits this long for the scaler (a stalled client never holds a
    /// snapshot, or a pooler's server connection, for longer).
    pub idle_in_transaction_timeout: Duration,
}

impl Default for ReadLimits {
    /// The configuration's default `statement_timeout` (5s), and 60s idle in transaction.
    fn default() -> Self {
        Self {
            statement_timeout: Duration::from_secs(5),
            idle_in_transaction_timeout: Duration::from_secs(60),
        }
    }
}

impl ReadLimits {
    /// The statements that open a read: a read-only transaction and its local limits.
    fn begin(&self) -> String {
        // At least 1ms: 0 would mean no limit at all.
        format!(
            "BEGIN READ ONLY; SET LOCAL statement_timeout = {}; \
             SET LOCAL idle_in_transaction_session_timeout = {}",
            self.statement_timeout.as_millis().max(1),
            self.idle_in_transaction_timeout.as_millis().max(1)
        )
    }
}

/// Runs `sql` as a read-only transaction of its own, with `limits` set locally, and returns
/// its rows. Nothing of it outlives the transaction: the statement is the unnamed one
/// (parameter types given, no named prepared statement), and settings are `SET LOCAL`.
///
/// The three requests (`BEGIN READ ONLY; SET LOCAL ...`, the statement, `COMMIT`) are sent
/// together, one round trip: if the statement fails, the `COMMIT` ends the aborted
/// transaction as a rollback, and if the caller stops waiting (a timeout), the requests
/// already went out, so the session still ends the transaction. `client` must not be in a
/// transaction already.
pub(crate) async fn read_only_query<C: GenericClient>(
    client: &C,
    limits: &ReadLimits,
    sql: &str,
    params: &[(&(dyn ToSql + Sync), Type)],
) -> Result<Vec<Row>, tokio_postgres::Error> {
    let begin = limits.begin();
    // `biased`: polled once each, in this order, the first time; each request is queued on
    // the connection when its future is first polled, so they go out in this order.
    let (begun, rows, ended) = tokio::join!(
        biased;
        client.batch_execute(&begin),
        client.query_typed(sql, params),
        client.batch_execute("COMMIT"),
    );
    begun?;
    let rows = rows?;
    ended?;
    Ok(rows)
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
    // No session setup (no `SET`, no prepared statement): behind a pooler in transaction
    // mode it would stay on a server connection that other clients get next. Each read sets
    // what it needs locally instead (`read_only_query`). Recycling sends nothing either.
    let pool = Pool::builder(manager)
        .max_size(settings.max_size)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(settings.connect_timeout))
        .create_timeout(Some(settings.connect_timeout))
        .recycle_timeout(Some(settings.connect_timeout))
        .build()
        .expect("a pool with a runtime and a valid size always builds");
    Ok(pool)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_opens_a_read_only_transaction_with_local_limits() {
        let settings = PoolSettings {
            max_size: 2,
            statement_timeout: Duration::from_millis(2500),
            connect_timeout: Duration::from_secs(5),
        };
        assert_eq!(
            settings.read_limits().begin(),
            "BEGIN READ ONLY; SET LOCAL statement_timeout = 2500; \
             SET LOCAL idle_in_transaction_session_timeout = 60000"
        );
        // Below a millisecond is still a limit, never 0 (none).
        let tiny = ReadLimits {
            statement_timeout: Duration::from_micros(10),
            ..ReadLimits::default()
        };
        assert!(tiny.begin().contains("statement_timeout = 1;"));
    }
}
