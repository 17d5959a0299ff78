//! Rows of the refresh statement (see [`super::statement`]) folded into a [`Reading`].

use tokio_postgres::Row;

use super::DbosError;
use crate::decide::PartitionLoad;
use crate::systems::{QueueConfig, QueueCounts, Reading, RegisteredQueue, ScopedLoad, WorkGroup};
use crate::trigger::Scope;

/// Adds one row to `reading`; `scopes` are the scopes the statement was run for, in order.
pub(super) fn apply(row: &Row, scopes: &[Scope], reading: &mut Reading) -> Result<(), DbosError> {
    let kind: &str = row.try_get("kind")?;
    if kind == "latest" {
        let latest = row.try_get("application_version")?;
        let scope = scope_of(row, scopes)?;
        reading.latest_versions.insert(scope.clone(), latest);
        return Ok(());
    }
    let queue: String = row.try_get("queue_name")?;
    match kind {
        "group" => {
            let group = WorkGroup {
                application: row.try_get("application_name")?,
                version: row.try_get("application_version")?,
                counts: counts(row)?,
                oldest_waiting_ms: age(row)?,
            };
            reading.groups.entry(queue).or_default().push(group);
        }
        "scope" => {
            let load = scoped(row, scopes, reading)?.entry(queue).or_default();
            load.counts = counts(row)?;
            load.oldest_waiting_ms = age(row)?;
        }
        "partition" => {
            let partitions = PartitionLoad {
                runnable: count(row, "runnable")?,
                busiest: count(row, "busiest")?,
            };
            scoped(row, scopes, reading)?
                .entry(queue)
                .or_default()
                .partitions = Some(partitions);
        }
        "config" => {
            let config = QueueConfig {
                worker_concurrency: limit(row, "worker_concurrency")?,
                concurrency: limit(row, "concurrency")?,
                partition_concurrency: limit(row, "partition_concurrency")?,
                partition_worker_concurrency: limit(row, "partition_worker_concurrency")?,
            };
            let application = row.try_get("application_name")?;
            reading.queues.insert(
                queue,
                RegisteredQueue {
                    application,
                    config,
                },
            );
        }
        _ => return Err(DbosError::Unexpected("a row of an unknown kind")),
    }
    Ok(())
}

/// The per-queue loads of the row's scope.
fn scoped<'a>(
    row: &Row,
    scopes: &[Scope],
    reading: &'a mut Reading,
) -> Result<&'a mut std::collections::HashMap<String, ScopedLoad>, DbosError> {
    reading
        .scopes
        .get_mut(scope_of(row, scopes)?)
        .ok_or(DbosError::Unexpected("a scope that was not asked for"))
}

/// The scope the row is for, by its 1-based position in `scopes`.
fn scope_of<'a>(row: &Row, scopes: &'a [Scope]) -> Result<&'a Scope, DbosError> {
    let id: i64 = row.try_get("scope_id")?;
    usize::try_from(id)
        .ok()
        .and_then(|id| id.checked_sub(1))
        .and_then(|index| scopes.get(index))
        .ok_or(DbosError::Unexpected("a scope that was not asked for"))
}

fn counts(row: &Row) -> Result<QueueCounts, DbosError> {
    Ok(QueueCounts {
        enqueued: count(row, "enqueued")?,
        pending: count(row, "pending")?,
        delayed_due: count(row, "delayed")?,
    })
}

fn count(row: &Row, column: &str) -> Result<u64, DbosError> {
    u64::try_from(row.try_get::<_, i64>(column)?)
        .map_err(|_| DbosError::Unexpected("a negative count"))
}

/// The oldest waiting age; a negative one (a row stamped by a client whose clock runs ahead
/// of the database's) is 0.
fn age(row: &Row) -> Result<Option<u64>, DbosError> {
    let age: Option<i64> = row.try_get("oldest_waiting_ms")?;
    Ok(age.map(|ms| u64::try_from(ms).unwrap_or(0)))
}

/// A limit column: DBOS writes positive numbers or NULL; anything else sets no limit.
fn limit(row: &Row, column: &str) -> Result<Option<u32>, DbosError> {
    let value: Option<i32> = row.try_get(column)?;
    Ok(value
        .and_then(|value| u32::try_from(value).ok())
        .filter(|value| *value > 0))
}
