//! The one statement a DBOS source runs per refresh, built for the columns its schema has.
//!
//! It returns five kinds of rows, told apart by `kind`:
//! - `group`: per queue, owning application and application version, the work by state
//!   (for metrics, and to tell a known queue from a misspelt one);
//! - `scope`: per trigger scope (application, version, lookahead) and queue, the work its
//!   workers may run: DBOS's own dequeue rule, with "latest" resolved in the same snapshot;
//! - `partition`: per scope and partitioned queue, the work summed over partitions with
//!   each partition capped at `partition_concurrency`, and the busiest partition, computed
//!   in the database so that partitions are never fetched;
//! - `config`: the queues' configuration rows;
//! - `latest`: per scope, the latest version it resolved (none when no version is
//!   registered), for explanations.
//!
//! Statuses are SQL literals so that DBOS's partial indexes serve every arm (a bound status
//! list or an extra status turns a scan of the in-flight rows into a scan of every finished
//! workflow). Scopes arrive as four parallel array parameters of given types; the statement
//! text depends only on the schema. It runs as the unnamed statement (no named prepared
//! statement stays on the session), so Postgres plans it with the scopes of each read.

use tokio_postgres::types::{ToSql, Type};

mod partitions;

use super::{Layout, quote};
use crate::trigger::{Scope, VersionFilter};
use partitions::partitions;

/// The scopes of one read as the statement's parameters `$1` to `$4`.
pub(super) struct ScopeParameters {
    applications: Vec<Option<String>>,
    versions: Vec<Option<String>>,
    latest: Vec<bool>,
    lookahead_ms: Vec<i64>,
}

impl ScopeParameters {
    /// The parameters for `scopes`; the statement numbers them from 1 in this order.
    pub(super) fn of(scopes: &[Scope]) -> Self {
        let mut parameters = Self {
            applications: Vec::with_capacity(scopes.len()),
            versions: Vec::with_capacity(scopes.len()),
            latest: Vec::with_capacity(scopes.len()),
            lookahead_ms: Vec::with_capacity(scopes.len()),
        };
        for scope in scopes {
            parameters.applications.push(scope.application.clone());
            let (version, latest) = match &scope.version {
                VersionFilter::All => (None, false),
                VersionFilter::Latest => (None, true),
                VersionFilter::Named(name) => (Some(name.clone()), false),
            };
            parameters.versions.push(version);
            parameters.latest.push(latest);
            // At most 24h (checked when the trigger is parsed), so it fits.
            let lookahead = i64::try_from(scope.lookahead.as_millis()).unwrap_or(i64::MAX);
            parameters.lookahead_ms.push(lookahead);
        }
        parameters
    }

    /// The values to bind, in order, with their types (`$1::text[]`, `$2::text[]`,
    /// `$3::bool[]`, `$4::int8[]`).
    pub(super) fn typed(&self) -> [(&(dyn ToSql + Sync), Type); 4] {
        [
            (&self.applications, Type::TEXT_ARRAY),
            (&self.versions, Type::TEXT_ARRAY),
            (&self.latest, Type::BOOL_ARRAY),
            (&self.lookahead_ms, Type::INT8_ARRAY),
        ]
    }
}

/// The refresh statement for `layout`. Columns the schema lacks become typed NULLs (and
/// tables it lacks, empty relations), so every arm keeps one shape. Partitions are counted
/// only for the scopes in `partition_scopes` (their 1-based positions in the parameters):
/// those of triggers on partitioned queues whose limits apply; without any, the statement
/// does not look at partitions at all.
pub(super) fn counting(layout: &Layout, partition_scopes: &[usize]) -> String {
    let columns = Columns::of(layout);
    let mut ctes = work_ctes(layout, &columns);
    let mut arms = vec![group_arm(), scope_arm(), latest_arm()];
    if layout.has_partition_limits && !partition_scopes.is_empty() {
        let (partition_ctes, partition_arm) = partitions(layout, &columns, partition_scopes);
        ctes.extend(partition_ctes);
        arms.push(partition_arm);
    }
    if layout.has_queue_table {
        arms.push(config_arm(layout));
    }
    format!("WITH {} {}", ctes.join(", "), arms.join(" UNION ALL "))
}

/// `column` when the schema has it, else a NULL of its type.
fn column(present: bool, name: &'static str, null: &'static str) -> &'static str {
    if present { name } else { null }
}

/// The optional columns of `workflow_status`, as the schema has them.
pub(super) struct Columns {
    pub(super) application: &'static str,
    pub(super) version: &'static str,
    pub(super) partition_key: &'static str,
}

impl Columns {
    fn of(layout: &Layout) -> Self {
        Self {
            application: column(
                layout.has_application_name,
                "application_name",
                "NULL::text",
            ),
            version: column(
                layout.has_application_version,
                "application_version",
                "NULL::text",
            ),
            partition_key: column(
                layout.has_partition_key,
                "queue_partition_key",
                "NULL::text",
            ),
        }
    }
}

/// The scopes with "latest" resolved, the clock, and the work in flight and delayed.
fn work_ctes(layout: &Layout, columns: &Columns) -> Vec<String> {
    let schema = quote(&layout.schema);
    let Columns {
        application,
        version,
        ..
    } = columns;
    let latest = latest_version(layout);
    vec![
        format!(
            "scope AS (SELECT * FROM unnest({}) \
             WITH ORDINALITY AS s({}, id))",
            PARAMETERS.map(|(_, parameter)| parameter).join(", "),
            PARAMETERS.map(|(field, _)| field).join(", "),
        ),
        format!(
            "resolved AS (SELECT id, app, lookahead_ms, {} AS every_version, \
             {} AS version, latest \
             FROM (SELECT s.*, {latest} AS latest FROM scope s) AS with_latest)",
            resolved("every_version", &|field| field.to_owned()),
            resolved("version", &|field| field.to_owned()),
        ),
        "clock AS (SELECT (extract(epoch FROM now()) * 1000)::bigint AS now_ms)".to_owned(),
        // Grouped by status rather than counted with a `FILTER` per status: one more hash
        // key costs less per row than three filtered aggregates, and `work` turns the few
        // groups back into columns.
        format!(
            "in_flight AS (SELECT queue_name, {application} AS app, {version} AS ver, status, \
             count(*) AS items, min(created_at) AS oldest \
             FROM {schema}.workflow_status \
             WHERE status IN ('ENQUEUED', 'PENDING') AND queue_name IS NOT NULL \
             GROUP BY 1, 2, 3, 4)"
        ),
        format!("delayed AS ({})", delayed(layout, columns)),
        // Delayed rows are kept one by one: each scope has its own lookahead window. Only
        // rows already due are waiting.
        "work AS (SELECT queue_name, app, ver, \
         CASE WHEN status = 'ENQUEUED' THEN items ELSE 0 END AS enqueued, \
         CASE WHEN status = 'PENDING' THEN items ELSE 0 END AS pending, 0::bigint AS delayed, \
         CASE WHEN status = 'ENQUEUED' THEN oldest END AS waiting_since, NULL::bigint AS due \
         FROM in_flight \
         UNION ALL SELECT queue_name, app, ver, 0, 0, 1, \
         CASE WHEN due <= (SELECT now_ms FROM clock) THEN due END, due FROM delayed)"
            .to_owned(),
    ]
}

/// Delayed work due within the longest lookahead in use (none before DBOS had delays).
fn delayed(layout: &Layout, columns: &Columns) -> String {
    if !layout.has_delayed {
        return "SELECT NULL::text AS queue_name, NULL::text AS app, NULL::text AS ver, \
                NULL::text AS partition_key, NULL::bigint AS due WHERE false"
            .to_owned();
    }
    let Columns {
        application,
        version,
        partition_key,
    } = columns;
    format!(
        "SELECT queue_name, {application} AS app, {version} AS ver, \
         {partition_key} AS partition_key, delay_until_epoch_ms AS due \
         FROM {}.workflow_status WHERE status = 'DELAYED' AND queue_name IS NOT NULL \
         AND delay_until_epoch_ms <= (SELECT now_ms FROM clock) \
         + (SELECT coalesce(max(lookahead_ms), 0) FROM scope)",
        quote(&layout.schema)
    )
}

/// Per queue, application and version: the work by state (due delayed work only). It
/// names the columns of every arm.
fn group_arm() -> String {
    format!(
        "SELECT 'group'::text AS kind, NULL::bigint AS scope_id, queue_name, \
         app AS application_name, ver AS application_version, \
         sum(enqueued)::bigint AS enqueued, sum(pending)::bigint AS pending, \
         sum(delayed)::bigint AS delayed, {OLDEST} AS oldest_waiting_ms, \
         NULL::bigint AS runnable, NULL::bigint AS busiest, \
         NULL::integer AS worker_concurrency, NULL::integer AS concurrency, \
         NULL::integer AS partition_concurrency, NULL::integer AS partition_worker_concurrency \
         FROM work WHERE due IS NULL OR due <= (SELECT now_ms FROM clock) \
         GROUP BY queue_name, app, ver"
    )
}

/// Per scope and queue: the work its workers may run.
fn scope_arm() -> String {
    format!(
        "SELECT 'scope', r.id, w.queue_name, NULL, NULL, sum(w.enqueued)::bigint, \
         sum(w.pending)::bigint, sum(w.delayed)::bigint, {oldest}, NULL, NULL, \
         NULL, NULL, NULL, NULL \
         FROM resolved r JOIN work w ON {scope} GROUP BY r.id, w.queue_name",
        oldest = OLDEST.replace("waiting_since", "w.waiting_since"),
        scope = in_scope("w")
    )
}

/// Per scope, the latest version as this read resolved it.
fn latest_arm() -> String {
    "SELECT 'latest', id, NULL, NULL, latest, NULL, NULL, NULL, NULL, NULL, NULL, \
     NULL, NULL, NULL, NULL FROM resolved"
        .to_owned()
}

/// The queues' configuration rows, with the limits the schema records.
fn config_arm(layout: &Layout) -> String {
    let owner = column(layout.has_queue_owner, "application_name", "NULL::text");
    let concurrency = column(
        layout.has_global_concurrency,
        "concurrency",
        "NULL::integer",
    );
    let (per_partition, per_partition_worker) = if layout.has_partition_limits {
        ("partition_concurrency", "partition_worker_concurrency")
    } else {
        ("NULL::integer", "NULL::integer")
    };
    format!(
        "SELECT 'config', NULL, name, {owner}, NULL, NULL, NULL, NULL, NULL, NULL, NULL, \
         worker_concurrency, {concurrency}, {per_partition}, {per_partition_worker} \
         FROM {}.queues",
        quote(&layout.schema)
    )
}

/// Age in milliseconds, at read time, of the oldest `waiting_since`.
const OLDEST: &str = "((SELECT now_ms FROM clock) - min(waiting_since))::bigint";

/// The newest registered version visible to scope `s`: its application's own and unclaimed
/// versions (every application's when it names none), as DBOS decides "latest".
fn latest_version(layout: &Layout) -> String {
    if !layout.has_version_table {
        return "NULL::text".to_owned();
    }
    let owner = if layout.has_version_owner {
        "WHERE s.app IS NULL OR v.application_name = s.app OR v.application_name IS NULL "
    } else {
        ""
    };
    format!(
        "(SELECT v.version_name FROM {}.application_versions v {owner}\
         ORDER BY v.version_timestamp DESC LIMIT 1)",
        quote(&layout.schema)
    )
}

/// Whether the row aliased `row` is work a worker of scope `r` may run: its application's
/// or unclaimed; of its version, or version-less when that version is the latest (or none is
/// registered); due within its lookahead.
fn in_scope(row: &str) -> String {
    matches(row, |field| format!("r.{field}"))
}

/// The statement's parameters: each scope field's array, in the order `ScopeParameters` binds
/// them.
const PARAMETERS: [(&str, &str); 4] = [
    ("app", "$1::text[]"),
    ("version", "$2::text[]"),
    ("latest_wanted", "$3::bool[]"),
    ("lookahead_ms", "$4::int8[]"),
];

/// A field of a resolved scope (as `resolved` has it) from the scope's inputs, given by
/// `input`: the four fields as passed, and `latest`, the application's latest version.
fn resolved(field: &str, input: &dyn Fn(&str) -> String) -> String {
    match field {
        "every_version" => format!(
            "({} IS NULL AND NOT {})",
            input("version"),
            input("latest_wanted")
        ),
        "version" => format!(
            "(CASE WHEN {} THEN {} ELSE {} END)",
            input("latest_wanted"),
            input("latest"),
            input("version")
        ),
        _ => input(field),
    }
}

/// A field of the scope at 1-based `position`, written so that a custom plan folds it: the
/// passed fields as elements of the bound arrays (constants when Postgres plans with the
/// parameters' values, so a condition on an absent application or version disappears from
/// the plan), `latest` from `resolved`.
pub(super) fn scope_field(position: usize, field: &str) -> String {
    resolved(
        field,
        &|input| match PARAMETERS.iter().find(|(name, _)| *name == input) {
            Some((_, parameter)) => format!("({parameter})[{position}]"),
            None => format!("(SELECT {input} FROM resolved WHERE id = {position})"),
        },
    )
}

/// [`in_scope`] for a scope's fields given by `field` (a column of `resolved` joined as `r`,
/// or [`scope_field`]).
pub(super) fn matches(row: &str, field: impl Fn(&str) -> String) -> String {
    let (app, every_version, version, latest, lookahead) = (
        field("app"),
        field("every_version"),
        field("version"),
        field("latest"),
        field("lookahead_ms"),
    );
    format!(
        "({app} IS NULL OR {row}.app IS NULL OR {row}.app = {app}) \
         AND ({every_version} OR {row}.ver = {version} \
              OR ({row}.ver IS NULL AND ({latest} IS NULL OR {latest} = {version}))) \
         AND ({row}.due IS NULL OR {row}.due <= (SELECT now_ms FROM clock) + {lookahead})"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(current: bool) -> Layout {
        Layout {
            schema: "dbos".into(),
            has_application_name: current,
            has_application_version: current,
            has_delayed: current,
            has_partition_key: current,
            has_queue_table: current,
            has_queue_owner: current,
            has_global_concurrency: current,
            has_partition_limits: current,
            has_version_table: current,
            has_version_owner: current,
            migration: None,
        }
    }

    #[test]
    fn statuses_are_literals_and_delayed_has_its_own_arm() {
        let sql = counting(&layout(true), &[1, 2]);
        assert!(sql.contains("status IN ('ENQUEUED', 'PENDING')"));
        assert!(sql.contains("status = 'DELAYED'"));
        assert!(!sql.contains("'ENQUEUED', 'PENDING', 'DELAYED'"));
        // The only parameters are the four scope arrays.
        for index in 1..=4 {
            assert!(sql.contains(&format!("${index}::")), "${index} in {sql}");
        }
        assert!(!sql.contains("$5"));
        assert!(sql.contains("AS d1") && sql.contains("AS d2"), "{sql}");
        // Each scope's fields are read once per statement, not carried on every keyed row.
        assert!(
            sql.contains("($1::text[])[2]")
                && sql.contains("(SELECT latest FROM resolved WHERE id = 2)")
                && !sql.contains("array_agg"),
            "{sql}"
        );
        let without = counting(&layout(true), &[]);
        assert!(
            !without.contains("'partition'") && !without.contains("per_partition"),
            "no partition arm without a scope that needs it: {without}"
        );
    }

    #[test]
    fn older_schemas_get_a_statement_without_missing_columns() {
        let sql = counting(&layout(false), &[1]);
        for column in [
            "application_name AS app",
            "application_version AS ver",
            "delay_until_epoch_ms",
            "queue_partition_key",
            "partition_concurrency AS",
            "application_versions",
            ".queues",
        ] {
            assert!(!sql.contains(column), "{column} in {sql}");
        }
    }

    #[test]
    fn scopes_become_parallel_arrays() {
        let scopes = [
            crate::trigger::from_pairs(&[("queue", "q")]).scope,
            crate::trigger::from_pairs(&[
                ("queue", "q"),
                ("applicationName", "billing"),
                ("applicationVersion", "latest"),
                ("delayedLookahead", "90s"),
            ])
            .scope,
            crate::trigger::from_pairs(&[("queue", "q"), ("applicationVersion", "v2")]).scope,
        ];
        let parameters = ScopeParameters::of(&scopes);
        assert_eq!(
            parameters.applications,
            vec![None, Some("billing".to_owned()), None]
        );
        assert_eq!(parameters.versions, vec![None, None, Some("v2".to_owned())]);
        assert_eq!(parameters.latest, vec![false, true, false]);
        assert_eq!(parameters.lookahead_ms, vec![0, 90_000, 0]);
    }
}
