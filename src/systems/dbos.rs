//! DBOS Transact's system schema: discovers which columns this database's DBOS version has,
//! then counts every queue with one statement per refresh.
//!
//! Discovery and reads run each statement as a read-only transaction of its own with its
//! limits set locally and no named prepared statement (`database::read_only_query`), so
//! that they work through a connection pooler in transaction mode and leave the session
//! exactly as they found it.
//!
//! The statement follows DBOS's indexes: the `ENQUEUED`/`PENDING` arm is served by the
//! partial index `idx_workflow_status_in_flight_v2` only when the statuses are SQL literals
//! (a bound status list or an extra status turns it into a scan of every finished workflow),
//! and due `DELAYED` rows are a separate arm on `idx_workflow_status_delayed`.

mod rows;
mod statement;

use std::collections::HashMap;

use tokio_postgres::GenericClient;
use tokio_postgres::types::Type;

use super::{Capabilities, Reading, SchemaFacts, ScopeRequest};
use crate::database::{self, ReadLimits};
use crate::trigger::Scope;

/// Why a DBOS schema cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum DbosError {
    /// The schema has no `workflow_status` table.
    #[error(
        "schema {0:?} has no workflow_status table (is it a DBOS system database, and may this \
         role read it?)"
    )]
    NotDbos(String),
    /// A column the count depends on exists but this role may not read it.
    #[error(
        "this role may not read {schema}.{table}.{column}: GRANT SELECT ({column}) ON \
         {schema}.{table} TO <the scaler's role> (re-run sql/dbos-read-only-role.sql after DBOS \
         upgrades)"
    )]
    NotGranted {
        /// The schema.
        schema: String,
        /// The table.
        table: &'static str,
        /// The column.
        column: &'static str,
    },
    /// Postgres answered something the scaler does not understand.
    #[error("unexpected answer from the database: {0}")]
    Unexpected(&'static str),
    /// Postgres refused or failed a statement.
    #[error(transparent)]
    Postgres(#[from] tokio_postgres::Error),
}

/// What discovery found in a schema, which decides the counting statement built for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// The schema.
    pub schema: String,
    /// `workflow_status.application_name` exists (DBOS migration 100 and later).
    pub has_application_name: bool,
    /// `workflow_status.application_version` exists.
    pub has_application_version: bool,
    /// `workflow_status.delay_until_epoch_ms` exists (DBOS migration 16 and later).
    pub has_delayed: bool,
    /// `workflow_status.queue_partition_key` exists (DBOS migration 2 and later).
    pub has_partition_key: bool,
    /// `queues.worker_concurrency` exists (DBOS-managed queues).
    pub has_queue_table: bool,
    /// `queues.application_name` exists (DBOS migration 101 and later).
    pub has_queue_owner: bool,
    /// `queues.concurrency` exists.
    pub has_global_concurrency: bool,
    /// `queues.partition_concurrency` and `partition_worker_concurrency` exist (DBOS
    /// migration 108 and later).
    pub has_partition_limits: bool,
    /// `application_versions` exists (DBOS migration 13 and later).
    pub has_version_table: bool,
    /// `application_versions.application_name` exists (DBOS migration 103 and later).
    pub has_version_owner: bool,
    /// The schema's DBOS migration level, when recorded.
    pub migration: Option<i64>,
}

impl Layout {
    /// What rows of this layout record, for the trigger keys that depend on it.
    pub(crate) fn capabilities(&self) -> Capabilities {
        Capabilities {
            tracks_applications: self.has_application_name,
            tracks_versions: self.has_application_version,
            tracks_delays: self.has_delayed,
            registration_required: self
                .migration
                .is_some_and(|level| level >= QUEUES_ALWAYS_REGISTERED_FROM),
        }
    }

    /// What discovery found, by the table or column name an operator would look for.
    pub(crate) fn facts(&self) -> SchemaFacts {
        SchemaFacts {
            migration: self.migration,
            features: vec![
                (
                    "workflow_status.application_name",
                    self.has_application_name,
                ),
                (
                    "workflow_status.application_version",
                    self.has_application_version,
                ),
                ("workflow_status.delay_until_epoch_ms", self.has_delayed),
                (
                    "workflow_status.queue_partition_key",
                    self.has_partition_key,
                ),
                ("queues.worker_concurrency", self.has_queue_table),
                ("queues.application_name", self.has_queue_owner),
                ("queues.concurrency", self.has_global_concurrency),
                ("queues.partition_concurrency", self.has_partition_limits),
                ("application_versions", self.has_version_table),
                (
                    "application_versions.application_name",
                    self.has_version_owner,
                ),
            ],
        }
    }
}

/// The DBOS migration level from which every queue is registered in `queues` (DBOS 3.x
/// for Python and 5.x for TypeScript, migration 109 on): an unregistered queue there is a
/// wrong name or a wrong database, not an empty queue.
pub(crate) const QUEUES_ALWAYS_REGISTERED_FROM: i64 = 109;

/// The tables discovery looks at.
const TABLES: [&str; 4] = [
    "workflow_status",
    "queues",
    "application_versions",
    "dbos_migrations",
];

/// The columns the counting statement may read, by table.
const READ_COLUMNS: [(&str, &str); 17] = [
    ("workflow_status", "queue_name"),
    ("workflow_status", "status"),
    ("workflow_status", "created_at"),
    ("workflow_status", "application_name"),
    ("workflow_status", "application_version"),
    ("workflow_status", "delay_until_epoch_ms"),
    ("workflow_status", "queue_partition_key"),
    ("queues", "name"),
    ("queues", "worker_concurrency"),
    ("queues", "application_name"),
    ("queues", "concurrency"),
    ("queues", "partition_concurrency"),
    ("queues", "partition_worker_concurrency"),
    ("application_versions", "version_name"),
    ("application_versions", "version_timestamp"),
    ("application_versions", "application_name"),
    ("dbos_migrations", "version"),
];

/// Looks at the schema's tables and columns and builds the counting statement for them.
///
/// Columns are found in `pg_catalog`, which lists every column whatever the role's rights
/// (`information_schema` hides the ones it may not read), so a column that exists but was
/// not granted is an error naming the grant, not a silent switch to an older schema's
/// behaviour.
///
/// With the default `ReadLimits`; the scaler's refresh uses `discover_within` with the
/// configured ones. `client` must not be in a transaction.
pub async fn discover(client: &impl GenericClient, schema: &str) -> Result<Layout, DbosError> {
    discover_within(client, schema, &ReadLimits::default()).await
}

/// [`discover`] with the limits its read-only transactions set locally.
pub(crate) async fn discover_within(
    client: &impl GenericClient,
    schema: &str,
    limits: &ReadLimits,
) -> Result<Layout, DbosError> {
    let columns = catalog_columns(client, schema, limits).await?;
    let exists = |table: &str, column: &str| columns.contains_key(&column_key(table, column));
    if !["queue_name", "status", "created_at"]
        .iter()
        .all(|column| exists("workflow_status", column))
    {
        return Err(DbosError::NotDbos(schema.to_owned()));
    }
    check_granted(&columns, schema)?;
    let migration = if columns.get(&column_key("dbos_migrations", "version")) == Some(&true) {
        migration_level(client, schema, limits).await?
    } else {
        None
    };
    let has_queue_table = exists("queues", "name") && exists("queues", "worker_concurrency");
    let has_version_table = exists("application_versions", "version_name")
        && exists("application_versions", "version_timestamp");
    Ok(Layout {
        schema: schema.to_owned(),
        has_application_name: exists("workflow_status", "application_name"),
        has_application_version: exists("workflow_status", "application_version"),
        has_delayed: exists("workflow_status", "delay_until_epoch_ms"),
        has_partition_key: exists("workflow_status", "queue_partition_key"),
        has_queue_table,
        has_queue_owner: has_queue_table && exists("queues", "application_name"),
        has_global_concurrency: has_queue_table && exists("queues", "concurrency"),
        has_partition_limits: has_queue_table
            && exists("queues", "partition_concurrency")
            && exists("queues", "partition_worker_concurrency"),
        has_version_table,
        has_version_owner: has_version_table && exists("application_versions", "application_name"),
        migration,
    })
}

/// The columns of the system's tables in `schema`, each with whether the role may read it.
async fn catalog_columns(
    client: &impl GenericClient,
    schema: &str,
    limits: &ReadLimits,
) -> Result<HashMap<(String, String), bool>, DbosError> {
    let tables: Vec<&str> = TABLES.to_vec();
    let rows = database::read_only_query(
        client,
        limits,
        "SELECT c.relname::text, a.attname::text, \
                has_column_privilege(c.oid, a.attnum, 'SELECT') \
         FROM pg_catalog.pg_class c \
         JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
         JOIN pg_catalog.pg_attribute a \
           ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped \
         WHERE n.nspname = $1::text AND c.relkind IN ('r', 'p', 'v') \
           AND c.relname = ANY($2::text[])",
        &[(&schema, Type::TEXT), (&tables, Type::TEXT_ARRAY)],
    )
    .await?;
    Ok(rows
        .iter()
        .map(|row| ((row.get(0), row.get(1)), row.get(2)))
        .collect())
}

fn column_key(table: &str, column: &str) -> (String, String) {
    (table.to_owned(), column.to_owned())
}

/// Refuses a schema whose columns the scaler reads exist but are not granted: reading
/// around them would silently behave like an older DBOS.
fn check_granted(columns: &HashMap<(String, String), bool>, schema: &str) -> Result<(), DbosError> {
    for (table, column) in READ_COLUMNS {
        // The migration level is only logged; everything else changes the numbers.
        if columns.get(&column_key(table, column)) == Some(&false) && table != "dbos_migrations" {
            return Err(DbosError::NotGranted {
                schema: schema.to_owned(),
                table,
                column,
            });
        }
    }
    Ok(())
}

/// The highest DBOS migration applied to `schema`.
async fn migration_level(
    client: &impl GenericClient,
    schema: &str,
    limits: &ReadLimits,
) -> Result<Option<i64>, DbosError> {
    let sql = format!(
        "SELECT max(version)::bigint FROM {}.dbos_migrations",
        quote(schema)
    );
    let rows = database::read_only_query(client, limits, &sql, &[]).await?;
    match rows.as_slice() {
        [row] => Ok(row.try_get(0)?),
        _ => Err(DbosError::Unexpected("not one row from max(version)")),
    }
}

/// Runs the counting statement once for `scopes` and maps its rows, with the default
/// `ReadLimits`; the scaler's refresh uses `read_within` with the configured ones.
pub async fn read(
    client: &deadpool_postgres::Client,
    layout: &Layout,
    scopes: &[ScopeRequest],
) -> Result<Reading, DbosError> {
    let client: &tokio_postgres::Client = client;
    read_within(client, layout, scopes, &ReadLimits::default()).await
}

/// The counting statement for `layout` and `scopes`, with the scopes' four arrays as its
/// parameters (what `read_within` runs).
pub fn counting_statement(layout: &Layout, scopes: &[ScopeRequest]) -> String {
    let partition_scopes: Vec<usize> = scopes
        .iter()
        .enumerate()
        .filter(|(_, request)| request.partitions)
        .map(|(index, _)| index + 1)
        .collect();
    statement::counting(layout, &partition_scopes)
}

/// Runs the counting statement once for `scopes`, as a read-only transaction of its own with
/// `limits` set locally (see [`database::read_only_query`]), and maps its rows. `client` must
/// not be in a transaction.
pub(crate) async fn read_within(
    client: &impl GenericClient,
    layout: &Layout,
    scopes: &[ScopeRequest],
    limits: &ReadLimits,
) -> Result<Reading, DbosError> {
    let plain: Vec<Scope> = scopes.iter().map(|request| request.scope.clone()).collect();
    let parameters = statement::ScopeParameters::of(&plain);
    let sql = counting_statement(layout, scopes);
    let rows = database::read_only_query(client, limits, &sql, &parameters.typed()).await?;
    let mut reading = Reading {
        capabilities: layout.capabilities(),
        schema: layout.facts(),
        scopes: plain
            .iter()
            .map(|scope| (scope.clone(), HashMap::new()))
            .collect(),
        partitioned_scopes: scopes
            .iter()
            .filter(|request| request.partitions && layout.has_partition_limits)
            .map(|request| request.scope.clone())
            .collect(),
        ..Reading::default()
    };
    for row in rows {
        rows::apply(&row, &plain, &mut reading)?;
    }
    Ok(reading)
}

/// Quotes a schema name that [`crate::trigger::is_identifier`] already accepted.
fn quote(identifier: &str) -> String {
    format!("\"{identifier}\"")
}
