//! One source's refresh loop: build the pool, discover the schema, then read once per tick
//! and publish, until the source retires or the scaler shuts down.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::time::MissedTickBehavior;

use super::{Snapshot, Snapshots, Source, SourceKey, SourceState};
use crate::database;
use crate::sync::lock;
use crate::systems::dbos::{self, DbosError, Layout};
use crate::systems::{Reading, ScopeRequest};
use crate::trigger::System;

/// Why a refresh produced no reading. `Display` is what clients and logs get: Postgres' own
/// message and SQLSTATE, or the I/O cause of a connection error, never the URL or the SQL
/// (tokio-postgres puts neither into its errors).
#[derive(Debug, thiserror::Error)]
pub(crate) enum RefreshError {
    /// The pool, and the TLS it needs, could not be set up.
    #[error(transparent)]
    Setup(#[from] database::TlsSetupError),
    /// No connection could be had.
    #[error("{}", describe_pool_error(.0))]
    Connect(#[from] deadpool_postgres::PoolError),
    /// Discovery or the counting statement failed.
    #[error("{}", describe_dbos_error(.0))]
    Read(#[from] DbosError),
    /// The read got no answer within the read timeout.
    #[error("no answer within {}ms", .0.as_millis())]
    TimedOut(Duration),
}

/// The loop body of a source; ends when the source retires or on shutdown.
pub(super) async fn run(
    snapshots: Snapshots,
    key: SourceKey,
    source: Arc<Source>,
    publish: watch::Sender<SourceState>,
) {
    let settings = snapshots.inner.refresh.clone();
    let metrics = snapshots.inner.metrics.clone();
    let limits = snapshots.inner.pool.read_limits();
    let mut shutdown = snapshots.inner.shutdown.clone();
    let mut layout: Option<Layout> = None;
    let mut ticker = tokio::time::interval(settings.interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    tracing::info!(database = %source.label, schema = %key.schema, "started reading queue depth");
    let mut scopes_read: Vec<ScopeRequest> = Vec::new();
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            // A trigger waits for a scope that the last read did not compute: read now.
            () = source.scopes.added() => {
                if !source.scopes.any_missing_from(&scopes_read) {
                    continue;
                }
            }
            () = crate::sync::until_set(&mut shutdown) => break,
        }
        if snapshots.retire_if_idle(&key, &source) {
            tracing::info!(
                database = %source.label,
                schema = %key.schema,
                "stopped reading: no trigger used it lately"
            );
            break;
        }
        let started = Instant::now();
        scopes_read = source.scopes.live(settings.idle_after);
        let read = async {
            let pool = current_pool(&snapshots, &source)?;
            let read = read_once(&pool, &limits, &key, &mut layout, &scopes_read);
            tokio::time::timeout(settings.read_timeout, read)
                .await
                .unwrap_or(Err(RefreshError::TimedOut(settings.read_timeout)))
        };
        let outcome = read.await;
        metrics.record_refresh(&source.metric_labels, started.elapsed(), outcome.is_ok());
        if outcome.is_err() {
            // The schema may have changed under us (a DBOS upgrade); look again next time.
            layout = None;
        }
        publish_outcome(&publish, &source.label, outcome);
    }
    if let Some(pool) = lock(&source.pool).take() {
        pool.close();
    }
    metrics.forget_source(&source.metric_labels);
}

/// The source's pool, built now if it does not exist yet.
fn current_pool(
    snapshots: &Snapshots,
    source: &Source,
) -> Result<deadpool_postgres::Pool, RefreshError> {
    let mut pool = lock(&source.pool);
    if let Some(pool) = pool.as_ref() {
        return Ok(pool.clone());
    }
    let built = database::build_pool(&source.url, &snapshots.inner.pool)?;
    *pool = Some(built.clone());
    Ok(built)
}

fn publish_outcome(
    publish: &watch::Sender<SourceState>,
    label: &str,
    outcome: Result<Reading, RefreshError>,
) {
    publish.send_modify(|state| {
        state.attempts += 1;
        match outcome {
            Ok(reading) => {
                if let Some(failure) = state.failure.take() {
                    tracing::info!(
                        database = %label,
                        previous_error = %failure,
                        "reading queue depth again"
                    );
                }
                state.last_good = Some(Arc::new(Snapshot {
                    reading,
                    read_at: Instant::now(),
                }));
            }
            Err(error) => {
                if state.failure.is_none() {
                    tracing::warn!(database = %label, %error, "cannot read queue depth");
                }
                state.failure = Some(Arc::new(error));
            }
        }
    });
}

/// Discovers the schema if needed, then runs the counting statement.
async fn read_once(
    pool: &deadpool_postgres::Pool,
    limits: &database::ReadLimits,
    key: &SourceKey,
    layout: &mut Option<Layout>,
    scopes: &[ScopeRequest],
) -> Result<Reading, RefreshError> {
    let mut checkout = Checkout(Some(pool.get().await?));
    let client = checkout.0.as_ref().expect("just checked out");
    let reading = match key.system {
        System::Dbos => read_dbos(client, limits, &key.schema, layout, scopes).await,
    };
    checkout.give_back();
    reading
}

async fn read_dbos(
    client: &deadpool_postgres::Object,
    limits: &database::ReadLimits,
    schema: &str,
    layout: &mut Option<Layout>,
    scopes: &[ScopeRequest],
) -> Result<Reading, RefreshError> {
    if layout.is_none() {
        let found = dbos::discover_within(&***client, schema, limits).await?;
        log_discovery(&found);
        *layout = Some(found);
    }
    let layout = layout.as_ref().expect("layout was just discovered");
    Ok(dbos::read_within(&***client, layout, scopes, limits).await?)
}

/// A connection checked out for one read. It goes back to the pool when the read got an
/// answer (a result or an error from Postgres); when the read was abandoned (at
/// `read_timeout`), it is closed instead: its network path may have gone silent, and the
/// pool's recycling, which only asks whether the socket is closed, would hand it to every
/// later read.
struct Checkout(Option<deadpool_postgres::Object>);

impl Checkout {
    fn give_back(&mut self) {
        drop(self.0.take());
    }
}

impl Drop for Checkout {
    fn drop(&mut self) {
        if let Some(abandoned) = self.0.take() {
            drop(deadpool_postgres::Object::take(abandoned));
        }
    }
}

/// Says what the schema records, and how the scaler behaves where it records less, the
/// way DBOS itself does on such a schema.
fn log_discovery(layout: &Layout) {
    tracing::info!(
        schema = %layout.schema,
        migration = ?layout.migration,
        application_name = layout.has_application_name,
        application_version = layout.has_application_version,
        version_table = layout.has_version_table,
        delayed = layout.has_delayed,
        queue_table = layout.has_queue_table,
        global_concurrency = layout.has_global_concurrency,
        partition_limits = layout.has_partition_limits,
        "discovered DBOS system schema"
    );
    if !layout.has_application_name {
        tracing::info!(
            schema = %layout.schema,
            "rows record no owning application: applicationName filters nothing, all work counts"
        );
    }
    if !layout.has_version_table {
        tracing::info!(
            schema = %layout.schema,
            "no application_versions table: no version is registered, so every version is the \
             latest and version-less work counts for each"
        );
    }
    if !layout.has_application_version {
        tracing::info!(
            schema = %layout.schema,
            "rows record no application version: triggers with applicationVersion are refused"
        );
    }
    if !layout.has_partition_limits {
        tracing::info!(
            schema = %layout.schema,
            "queues record no partition limits: only the global concurrency caps the answer"
        );
    }
}

fn describe_dbos_error(error: &DbosError) -> String {
    match error {
        DbosError::NotDbos(_) | DbosError::NotGranted { .. } | DbosError::Unexpected(_) => {
            error.to_string()
        }
        DbosError::Postgres(error) => describe_postgres_error(error),
    }
}

fn describe_pool_error(error: &deadpool_postgres::PoolError) -> String {
    match error {
        deadpool_postgres::PoolError::Backend(error) => describe_postgres_error(error),
        deadpool_postgres::PoolError::Timeout(_) => "timed out connecting".to_owned(),
        other => other.to_string(),
    }
}

/// Postgres' own message and SQLSTATE for server errors; the I/O cause for connection
/// errors. tokio-postgres never puts the password into either.
fn describe_postgres_error(error: &tokio_postgres::Error) -> String {
    if let Some(db) = error.as_db_error() {
        return format!("{} (SQLSTATE {})", db.message(), db.code().code());
    }
    let mut text = error.to_string();
    let mut cause = std::error::Error::source(error);
    while let Some(inner) = cause {
        text = format!("{text}: {inner}");
        cause = inner.source();
    }
    text
}
