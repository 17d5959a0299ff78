//! Queue systems: for each, how to find its tables, the one statement that counts every
//! queue, and how its rows become a [`Reading`]. Knows nothing about gRPC.

pub mod dbos;

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use crate::decide::{PartitionLoad, desired_replicas};
use crate::trigger::Scope;

/// A scope a read computes, and whether it needs the per-partition work of partitioned
/// queues (costly: only for triggers on partitioned queues whose limits apply).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopeRequest {
    /// The scope.
    pub scope: Scope,
    /// Whether partitions are counted for it.
    pub partitions: bool,
}

/// Work items by state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueCounts {
    /// Waiting to be picked up.
    pub enqueued: u64,
    /// Picked up by a worker (running, or orphaned by a dead one).
    pub pending: u64,
    /// Delayed work whose time has come (or comes within a trigger's lookahead) but which
    /// no worker has released yet.
    pub delayed_due: u64,
}

impl QueueCounts {
    /// Work that needs a worker: enqueued + pending + due delayed.
    pub fn depth(&self) -> u64 {
        self.enqueued
            .saturating_add(self.pending)
            .saturating_add(self.delayed_due)
    }

    fn add(&mut self, other: &QueueCounts) {
        self.enqueued = self.enqueued.saturating_add(other.enqueued);
        self.pending = self.pending.saturating_add(other.pending);
        self.delayed_due = self.delayed_due.saturating_add(other.delayed_due);
    }
}

/// A queue's work owned by one application and tagged with one application version.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkGroup {
    /// The owning application (`None`: unclaimed, or the schema records no owners).
    pub application: Option<String>,
    /// The application version (`None`: version-less, or the schema records none).
    pub version: Option<String>,
    /// The work, by state.
    pub counts: QueueCounts,
    /// Age, at read time, of the group's oldest waiting work item (milliseconds).
    pub oldest_waiting_ms: Option<u64>,
}

/// A queue's configuration row, as the system stores it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueConfig {
    /// Work items one worker runs at once.
    pub worker_concurrency: Option<u32>,
    /// Work items all workers together run at once.
    pub concurrency: Option<u32>,
    /// Work items of one partition running at once, over all workers.
    pub partition_concurrency: Option<u32>,
    /// Work items of one partition one worker runs at once.
    pub partition_worker_concurrency: Option<u32>,
}

impl QueueConfig {
    /// Whether partition limits apply to the queue's work.
    pub(crate) fn is_partitioned(&self) -> bool {
        self.partition_concurrency.is_some() || self.partition_worker_concurrency.is_some()
    }
}

/// A queue's configuration and its owner.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegisteredQueue {
    /// The owning application (`None`: unclaimed, or the schema records no owners).
    pub application: Option<String>,
    /// The configuration.
    pub config: QueueConfig,
}

/// One queue's work as one scope (application, version, lookahead) sees it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScopedLoad {
    /// The work, by state; `delayed_due` includes delayed work due within the lookahead.
    pub counts: QueueCounts,
    /// Age, at read time, of the oldest waiting work item (milliseconds).
    pub oldest_waiting_ms: Option<u64>,
    /// Work of a partitioned queue, partition by partition.
    pub partitions: Option<PartitionLoad>,
}

/// What a schema records, as far as trigger keys depend on it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// Rows carry an owning application, so an application filter applies.
    pub tracks_applications: bool,
    /// Rows carry an application version, so a version filter applies.
    pub tracks_versions: bool,
    /// Delayed work has a due time, so a lookahead applies.
    pub tracks_delays: bool,
    /// Every queue of this system version has a configuration row, so a queue without one
    /// (and without work) is a mistake rather than an empty queue.
    pub registration_required: bool,
}

/// What discovery found in a source's schema, as explanations show it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SchemaFacts {
    /// The schema's migration level, when it records one.
    pub migration: Option<i64>,
    /// Each table or column the counting depends on, and whether the schema has it.
    pub features: Vec<(&'static str, bool)>,
}

/// One successful read of a source: its [`Reading`] and when it was taken.
#[derive(Debug)]
pub(crate) struct Snapshot {
    /// What was read.
    pub reading: Reading,
    /// When the read finished.
    pub read_at: Instant,
}

/// One refresh's result for a whole schema.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reading {
    /// Per queue with work, its groups by application and version.
    pub groups: HashMap<String, Vec<WorkGroup>>,
    /// Queues the system has a configuration row for.
    pub queues: HashMap<String, RegisteredQueue>,
    /// Per scope asked for by a trigger, per queue with work in that scope.
    pub scopes: HashMap<Scope, HashMap<String, ScopedLoad>>,
    /// The scopes whose partitions were counted.
    pub partitioned_scopes: HashSet<Scope>,
    /// Per scope, the latest registered version among its application's own and unclaimed
    /// ones, as this read resolved it: `None` when none is registered (every version is then
    /// the latest).
    pub latest_versions: HashMap<Scope, Option<String>>,
    /// What the schema records.
    pub capabilities: Capabilities,
    /// What discovery found, for explanations.
    pub schema: SchemaFacts,
}

impl Reading {
    /// Whether `queue` can be told apart from a misspelt or misplaced one: it has work, or
    /// the system registers every queue and has it.
    pub(crate) fn knows_queue(&self, queue: &str) -> bool {
        !self.capabilities.registration_required
            || self.queues.contains_key(queue)
            || self.groups.contains_key(queue)
    }

    /// The configuration of `queue` that binds `application`'s workers: the queue's row
    /// when it is unclaimed or theirs (any row when no application is named).
    pub fn config(&self, queue: &str, application: Option<&str>) -> Option<QueueConfig> {
        let registered = self.queues.get(queue)?;
        let visible = match (application, &registered.application) {
            (Some(wanted), Some(owner)) => owner == wanted,
            _ => true,
        };
        visible.then_some(registered.config)
    }

    /// `queue`'s work in `scope`; `None` when the scope was not part of this read.
    pub(crate) fn scoped(&self, scope: &Scope, queue: &str) -> Option<ScopedLoad> {
        let loads = self.scopes.get(scope)?;
        Some(loads.get(queue).copied().unwrap_or_default())
    }

    /// Whether this read computed `scope`, with its partitions when `partitions` is asked.
    pub(crate) fn has_scope(&self, scope: &Scope, partitions: bool) -> bool {
        self.scopes.contains_key(scope) && (!partitions || self.partitioned_scopes.contains(scope))
    }

    /// Whether a trigger with `scope` on `queues`, its limits applied, needs partitions
    /// counted: one of its queues is partitioned (as far as this read knows).
    pub(crate) fn needs_partitions(&self, queues: &[String]) -> bool {
        queues.iter().any(|queue| {
            self.queues
                .get(queue)
                .is_some_and(|registered| registered.config.is_partitioned())
        })
    }

    /// Every queue with work or a configuration row, by name.
    pub(crate) fn queue_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self
            .groups
            .keys()
            .chain(
                self.queues
                    .keys()
                    .filter(|name| !self.groups.contains_key(*name)),
            )
            .map(String::as_str)
            .collect();
        names.sort_unstable();
        names
    }

    /// `ceil(depth / worker_concurrency)` for all of `queue`'s work, with the database's
    /// `worker_concurrency`; `None` without one.
    pub(crate) fn desired_replicas(&self, queue: &str) -> Option<u64> {
        let concurrency = self.queues.get(queue)?.config.worker_concurrency?;
        Some(desired_replicas(self.total(queue).depth(), concurrency))
    }

    /// `queue`'s work over every application and version.
    pub fn total(&self, queue: &str) -> QueueCounts {
        let mut total = QueueCounts::default();
        for group in self.groups.get(queue).into_iter().flatten() {
            total.add(&group.counts);
        }
        total
    }

    /// `queue`'s depth per application version (`None`: version-less), over every
    /// application.
    pub(crate) fn depth_by_version(&self, queue: &str) -> HashMap<Option<&str>, u64> {
        let mut depths: HashMap<Option<&str>, u64> = HashMap::new();
        for group in self.groups.get(queue).into_iter().flatten() {
            let depth = depths.entry(group.version.as_deref()).or_default();
            *depth = depth.saturating_add(group.counts.depth());
        }
        depths
    }

    /// Age, at read time, of `queue`'s oldest waiting work item over every application and
    /// version (milliseconds).
    pub(crate) fn oldest_waiting_ms(&self, queue: &str) -> Option<u64> {
        self.groups
            .get(queue)
            .into_iter()
            .flatten()
            .filter_map(|group| group.oldest_waiting_ms)
            .max()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(application: Option<&str>, version: Option<&str>, enqueued: u64) -> WorkGroup {
        WorkGroup {
            application: application.map(str::to_owned),
            version: version.map(str::to_owned),
            counts: QueueCounts {
                enqueued,
                pending: 1,
                delayed_due: 0,
            },
            oldest_waiting_ms: Some(enqueued * 1000),
        }
    }

    #[test]
    fn depth_adds_all_three_states() {
        let counts = QueueCounts {
            enqueued: 3,
            pending: 2,
            delayed_due: 1,
        };
        assert_eq!(counts.depth(), 6);
    }

    #[test]
    fn totals_and_versions_cover_every_group() {
        let mut reading = Reading::default();
        reading.groups.insert(
            "q".into(),
            vec![
                group(Some("billing"), Some("v1"), 2),
                group(Some("search"), Some("v1"), 4),
                group(None, None, 7),
            ],
        );
        assert_eq!(reading.total("q").depth(), 16);
        let by_version = reading.depth_by_version("q");
        assert_eq!(by_version[&Some("v1")], 8);
        assert_eq!(by_version[&None], 8);
        assert_eq!(reading.oldest_waiting_ms("q"), Some(7000));
        assert_eq!(reading.total("other").depth(), 0);
    }

    #[test]
    fn a_queue_row_binds_its_owner_and_unclaimed_rows_bind_everyone() {
        let mut reading = Reading::default();
        let config = QueueConfig {
            worker_concurrency: Some(2),
            ..QueueConfig::default()
        };
        reading.queues.insert(
            "billing-q".into(),
            RegisteredQueue {
                application: Some("billing".into()),
                config,
            },
        );
        reading.queues.insert(
            "shared-q".into(),
            RegisteredQueue {
                application: None,
                config,
            },
        );
        assert_eq!(reading.config("billing-q", Some("billing")), Some(config));
        assert_eq!(reading.config("billing-q", None), Some(config));
        assert_eq!(reading.config("billing-q", Some("search")), None);
        assert_eq!(reading.config("shared-q", Some("search")), Some(config));
        assert_eq!(reading.config("missing", None), None);
    }

    #[test]
    fn a_scope_that_was_read_counts_absent_queues_as_empty() {
        let mut reading = Reading::default();
        let scope = crate::trigger::from_pairs(&[("queue", "q")]).scope;
        assert_eq!(reading.scoped(&scope, "q"), None);
        reading.scopes.insert(scope.clone(), HashMap::new());
        assert_eq!(reading.scoped(&scope, "q"), Some(ScopedLoad::default()));
    }
}
