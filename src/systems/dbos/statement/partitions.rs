//! The partition arm of the refresh statement: per scope, the work of partitioned queues
//! with each partition capped at `partition_concurrency`, and the busiest partition.

use super::{Columns, Layout, matches, quote, scope_field};

/// The partition arm for the scopes at `positions`: one pass over the keyed work that counts,
/// per partition, each scope's items side by side (one column per scope, so the rows are
/// grouped once whatever the number of scopes), then caps each partition of a partitioned
/// queue at `partition_concurrency` and sums.
///
/// Three choices keep this pass cheap (see `benches/REPORT.md`):
/// - a scope's fields are read once per statement rather than carried on every row (wide rows
///   made the grouping spill): the passed ones as array elements, which a custom plan turns
///   into constants and folds (a scope on every version and application counts every row
///   without testing it), "latest" as an uncorrelated scalar subquery;
/// - the keyed rows are all those DBOS's partition index holds, not only those of partitioned
///   queues: a filter on a CTE's names hides the row count from the planner, which then sorted
///   the rows instead of hashing them. DBOS only keys work on partitioned queues, and the
///   rollup's join on `partitioned` drops anything else.
pub(super) fn partitions(
    layout: &Layout,
    columns: &Columns,
    positions: &[usize],
) -> (Vec<String>, String) {
    let schema = quote(&layout.schema);
    let Columns {
        application,
        version,
        ..
    } = columns;
    let per_scope = |template: &dyn Fn(usize) -> String| {
        positions
            .iter()
            .map(|&i| template(i))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let counts = per_scope(&|i| {
        let scope = matches("k", |field| scope_field(i, field));
        format!("count(*) FILTER (WHERE {scope}) AS d{i}")
    });
    // `least` ignores a NULL cap; capping the largest partition is the largest capped one.
    // The cap is the same on every row of a queue: `min` reads it without grouping by it,
    // which would sort the partitions once more.
    let sums = per_scope(&|i| {
        format!(
            "sum(least(d.d{i}, p.per_partition)) AS r{i}, \
             least(max(d.d{i}), min(p.per_partition)) AS b{i}"
        )
    });
    let values = per_scope(&|i| format!("({i}::bigint, q.r{i}::bigint, q.b{i}::bigint)"));
    let ctes = vec![
        format!(
            "partitioned AS (SELECT name, partition_concurrency AS per_partition \
             FROM {schema}.queues \
             WHERE partition_concurrency IS NOT NULL \
             OR partition_worker_concurrency IS NOT NULL)"
        ),
        format!(
            "keyed AS (SELECT queue_name, queue_partition_key AS partition_key, \
             {application} AS app, \
             {version} AS ver, NULL::bigint AS due FROM {schema}.workflow_status \
             WHERE status IN ('ENQUEUED', 'PENDING') AND queue_partition_key IS NOT NULL \
             UNION ALL SELECT queue_name, partition_key, app, ver, due FROM delayed \
             WHERE partition_key IS NOT NULL)"
        ),
        format!(
            "per_partition AS (SELECT k.queue_name, k.partition_key, {counts} \
             FROM keyed k GROUP BY 1, 2)"
        ),
    ];
    let arm = format!(
        "SELECT 'partition', v.id, q.queue_name, NULL, NULL, NULL, NULL, NULL, NULL, \
         v.runnable, v.busiest, NULL, NULL, NULL, NULL \
         FROM (SELECT d.queue_name, {sums} FROM per_partition d \
               JOIN partitioned p ON p.name = d.queue_name GROUP BY d.queue_name) AS q \
         CROSS JOIN LATERAL (VALUES {values}) AS v(id, runnable, busiest)"
    );
    (ctes, arm)
}
