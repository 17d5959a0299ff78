//! DBOS Transact's system schema: discovers which columns this database's DBOS version has,
//! then counts every queue with one statement per refresh.
//!
//! The statement follows DBOS's indexes: the `ENQUEUED`/`PENDING` arm is served by the
//! partial index `idx_workflow_status_in_flight_v2` only when the statuses are SQL literals
//! (a bound status list or an extra status turns it into a scan of every finished workflow),
//! and due `DELAYED` rows are a separate arm on `idx_workflow_status_delayed`.

use std::collections::HashMap;

use tokio_postgres::GenericClient;

use super::{QueueCounts, Reading};

/// Why a DBOS schema cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum DbosError {
    /// The schema has no `workflow_status` table.
    #[error(
        "schema {0:?} has no workflow_status table (is it a DBOS system database, and may this role read it?)"
    )]
    NotDbos(String),
    /// A column the count depends on exists but this role may not read it.
    #[error(
        "this role may not read {schema}.{table}.{column}: GRANT SELECT ({column}) ON {schema}.{table} TO <the scaler's role> (re-run sql/dbos-read-only-role.sql after DBOS upgrades)"
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

/// What discovery found in a schema, and the counting statement built for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// The schema.
    pub schema: String,
    /// `workflow_status.application_name` exists (DBOS migration 100 and later).
    pub has_application_name: bool,
    /// `workflow_status.delay_until_epoch_ms` exists (DBOS migration 16 and later).
    pub has_delayed: bool,
    /// `queues.worker_concurrency` exists (DBOS-managed queues).
    pub has_queue_table: bool,
    /// The schema's DBOS migration level, when recorded.
    pub migration: Option<i64>,
    /// The statement run on every refresh.
    pub statement: String,
}

/// The DBOS migration level from which every queue is registered in `queues` (DBOS 3.x
/// for Python and 5.x for TypeScript, migration 109 on): an unregistered queue there is a
/// wrong name or a wrong database, not an empty queue.
pub const QUEUES_ALWAYS_REGISTERED_FROM: i64 = 109;

/// The columns the counting statement may read, by table.
const READ_COLUMNS: [(&str, &str); 7] = [
    ("workflow_status", "queue_name"),
    ("workflow_status", "status"),
    ("workflow_status", "application_name"),
    ("workflow_status", "delay_until_epoch_ms"),
    ("queues", "name"),
    ("queues", "worker_concurrency"),
    ("dbos_migrations", "version"),
];

/// Looks at the schema's tables and columns and builds the counting statement for them.
///
/// Columns are found in `pg_catalog`, which lists every column whatever the role's rights
/// (`information_schema` hides the ones it may not read), so a column that exists but was
/// not granted is an error naming the grant, not a silent switch to an older schema's
/// behaviour.
pub async fn discover(client: &impl GenericClient, schema: &str) -> Result<Layout, DbosError> {
    let rows = client
        .query(
            "SELECT c.relname::text, a.attname::text, \
                    has_column_privilege(c.oid, a.attnum, 'SELECT') \
             FROM pg_catalog.pg_class c \
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped \
             WHERE n.nspname = $1 AND c.relkind IN ('r', 'p', 'v') \
               AND c.relname IN ('workflow_status', 'queues', 'dbos_migrations')",
            &[&schema],
        )
        .await?;
    let columns: HashMap<(String, String), bool> = rows
        .iter()
        .map(|row| ((row.get(0), row.get(1)), row.get(2)))
        .collect();
    let exists =
        |table: &str, column: &str| columns.contains_key(&(table.to_owned(), column.to_owned()));
    if !exists("workflow_status", "queue_name") || !exists("workflow_status", "status") {
        return Err(DbosError::NotDbos(schema.to_owned()));
    }
    for (table, column) in READ_COLUMNS {
        let readable = columns.get(&(table.to_owned(), column.to_owned()));
        // The migration level is only logged; everything else changes the numbers.
        if readable == Some(&false) && table != "dbos_migrations" {
            return Err(DbosError::NotGranted {
                schema: schema.to_owned(),
                table,
                column,
            });
        }
    }
    let readable = |table: &str, column: &str| {
        columns.get(&(table.to_owned(), column.to_owned())) == Some(&true)
    };
    let migration = if readable("dbos_migrations", "version") {
        let sql = format!(
            "SELECT max(version)::bigint FROM {}.dbos_migrations",
            quote(schema)
        );
        client.query_one(&sql, &[]).await?.get(0)
    } else {
        None
    };
    let mut layout = Layout {
        schema: schema.to_owned(),
        has_application_name: exists("workflow_status", "application_name"),
        has_delayed: exists("workflow_status", "delay_until_epoch_ms"),
        has_queue_table: exists("queues", "name") && exists("queues", "worker_concurrency"),
        migration,
        statement: String::new(),
    };
    layout.statement = counting_statement(&layout);
    Ok(layout)
}

/// Runs the layout's statement once and maps its rows.
pub async fn read(
    client: &deadpool_postgres::Client,
    layout: &Layout,
) -> Result<Reading, DbosError> {
    let statement = client.prepare_cached(&layout.statement).await?;
    let rows = client.query(&statement, &[]).await?;
    let mut reading = Reading {
        tracks_applications: layout.has_application_name,
        registration_required: layout
            .migration
            .is_some_and(|level| level >= QUEUES_ALWAYS_REGISTERED_FROM),
        ..Reading::default()
    };
    for row in rows {
        let kind: &str = row.try_get("kind")?;
        let queue: String = row.try_get("queue_name")?;
        if kind == "config" {
            let concurrency: Option<i32> = row.try_get("worker_concurrency")?;
            if let Some(concurrency) = concurrency
                .and_then(|c| u32::try_from(c).ok())
                .filter(|c| *c > 0)
            {
                reading
                    .worker_concurrency
                    .insert(queue.clone(), concurrency);
            }
            reading.registered_queues.insert(queue);
            continue;
        }
        let count = |column: &str| -> Result<u64, DbosError> {
            u64::try_from(row.try_get::<_, i64>(column)?)
                .map_err(|_| DbosError::Unexpected("a negative count"))
        };
        let counts = QueueCounts {
            enqueued: count("enqueued")?,
            pending: count("pending")?,
            delayed_due: count("delayed_due")?,
        };
        reading
            .counts
            .entry(queue)
            .or_default()
            .push((row.try_get("application_name")?, counts));
    }
    Ok(reading)
}

/// The statement for a layout: a `UNION ALL` of the in-flight arm, the due-delayed arm and
/// the queue configuration, all distinguished by `kind`.
fn counting_statement(layout: &Layout) -> String {
    let table = format!("{}.workflow_status", quote(&layout.schema));
    let application = if layout.has_application_name {
        "application_name"
    } else {
        "NULL::text"
    };
    let mut arms = vec![format!(
        "SELECT 'depth'::text AS kind, queue_name, {application} AS application_name, \
         count(*) FILTER (WHERE status = 'ENQUEUED') AS enqueued, \
         count(*) FILTER (WHERE status = 'PENDING') AS pending, \
         0::bigint AS delayed_due, NULL::integer AS worker_concurrency \
         FROM {table} WHERE status IN ('ENQUEUED', 'PENDING') AND queue_name IS NOT NULL \
         GROUP BY queue_name, 3"
    )];
    if layout.has_delayed {
        arms.push(format!(
            "SELECT 'depth'::text, queue_name, {application}, 0::bigint, 0::bigint, count(*), NULL::integer \
             FROM {table} WHERE status = 'DELAYED' \
             AND delay_until_epoch_ms <= (extract(epoch FROM now()) * 1000)::bigint \
             AND queue_name IS NOT NULL GROUP BY queue_name, 3"
        ));
    }
    if layout.has_queue_table {
        arms.push(format!(
            "SELECT 'config'::text, name, NULL::text, 0::bigint, 0::bigint, 0::bigint, worker_concurrency \
             FROM {}.queues",
            quote(&layout.schema)
        ));
    }
    arms.join(" UNION ALL ")
}

/// Quotes a schema name that [`crate::trigger::is_identifier`] already accepted.
fn quote(identifier: &str) -> String {
    format!("\"{identifier}\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(application: bool, delayed: bool, queues: bool) -> Layout {
        let mut layout = Layout {
            schema: "dbos".into(),
            has_application_name: application,
            has_delayed: delayed,
            has_queue_table: queues,
            migration: None,
            statement: String::new(),
        };
        layout.statement = counting_statement(&layout);
        layout
    }

    #[test]
    fn statuses_are_literals_and_delayed_has_its_own_arm() {
        let sql = layout(true, true, true).statement;
        assert!(sql.contains("status IN ('ENQUEUED', 'PENDING')"));
        assert!(sql.contains("status = 'DELAYED'"));
        assert!(!sql.contains('$'), "no bind parameters: {sql}");
        assert!(!sql.contains("'ENQUEUED', 'PENDING', 'DELAYED'"));
    }

    #[test]
    fn older_schemas_get_a_statement_without_missing_columns() {
        let sql = layout(false, false, false).statement;
        assert!(!sql.contains("application_name AS"));
        assert!(!sql.contains("delay_until_epoch_ms"));
        assert!(!sql.contains("queues"));
        assert!(sql.contains("NULL::text AS application_name"));
    }
}
