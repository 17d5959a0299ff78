//! The maths: from per-queue work to one depth, a replica count and activity, within the
//! limits DBOS puts on how much of that work can run at once. Pure functions, no I/O.

pub(crate) use crate::error::WorkerConcurrencyError;
use crate::trigger::Aggregate;

/// A partitioned queue's work as one scope sees it (work without a partition key is not
/// in it: DBOS never dequeues that from a partitioned queue).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PartitionLoad {
    /// Sum over partitions of `min(depth of the partition, partition_concurrency)`.
    pub runnable: u64,
    /// The largest `min(depth of a partition, partition_concurrency)`.
    pub busiest: u64,
}

/// What was read for one queue of a trigger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct QueueLoad {
    /// The queue's name.
    pub queue: String,
    /// Waiting, running and due-delayed work items the trigger's workers may run.
    pub depth: u64,
    /// The part of `depth` the queue's limits let run at once (all of it without limits).
    pub runnable: u64,
    /// Workers the busiest partition needs by itself (0 without partition limits).
    pub partition_workers: u64,
    /// `worker_concurrency` from the database, if it has one.
    pub database_worker_concurrency: Option<u32>,
}

/// DBOS's limits on one queue, as they bear on one trigger's work.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct QueueLimits {
    /// Work items all workers together run at once.
    pub concurrency: Option<u32>,
    /// A partitioned queue's work, already capped per partition.
    pub partitions: Option<PartitionLoad>,
    /// Work items of one partition one worker runs at once.
    pub partition_worker_concurrency: Option<u32>,
}

/// How much of `depth` can run at once under `limits`, and the workers the busiest
/// partition needs: `(runnable, partition_workers)`. On a partitioned queue, work counts
/// per partition up to `partition_concurrency`, and work without a partition key not at
/// all (DBOS dequeues a partitioned queue partition by partition, so no worker ever runs
/// it); the global `concurrency` caps the total.
pub(crate) fn runnable_work(depth: u64, limits: &QueueLimits) -> (u64, u64) {
    let (mut runnable, mut busiest) = match &limits.partitions {
        Some(partitions) => (partitions.runnable.min(depth), partitions.busiest),
        None => (depth, 0),
    };
    if let Some(concurrency) = limits.concurrency {
        runnable = runnable.min(u64::from(concurrency));
        busiest = busiest.min(u64::from(concurrency));
    }
    let partition_workers = match (&limits.partitions, limits.partition_worker_concurrency) {
        (Some(_), Some(per_worker)) => desired_replicas(busiest, per_worker),
        _ => 0,
    };
    (runnable, partition_workers)
}

/// Replicas needed for `depth` items when each replica runs `worker_concurrency` at once:
/// `ceil(depth / worker_concurrency)`, 0 for an empty queue.
pub(crate) fn desired_replicas(depth: u64, worker_concurrency: u32) -> u64 {
    depth.div_ceil(u64::from(worker_concurrency.max(1)))
}

/// `values` combined as the trigger's queues combine: the largest (`max`) or the total
/// (`sum`).
pub(crate) fn aggregate(values: impl Iterator<Item = u64>, aggregate: Aggregate) -> u64 {
    match aggregate {
        Aggregate::Max => values.max().unwrap_or(0),
        Aggregate::Sum => values.fold(0, u64::saturating_add),
    }
}

/// Whether the trigger is active: its depth exceeds the activation threshold.
pub(crate) fn is_active(depth: u64, activation_threshold: u64) -> bool {
    depth > activation_threshold
}

/// Replicas the trigger asks for. With `max`, each queue is sized with its own worker
/// concurrency and the largest count wins (a DBOS worker's per-queue limits are
/// independent). With `sum`, the total is sized with the pool's one concurrency. Either
/// way, never fewer than the busiest partition needs, and only for work that can run.
/// `override_concurrency` (from metadata) beats the database's values.
pub(crate) fn aggregate_replicas(
    loads: &[QueueLoad],
    aggregate_by: Aggregate,
    override_concurrency: Option<u32>,
) -> Result<u64, WorkerConcurrencyError> {
    let concurrency_of = |load: &QueueLoad| {
        override_concurrency
            .or(load.database_worker_concurrency)
            .ok_or_else(|| WorkerConcurrencyError::MissingWorkerConcurrency(load.queue.clone()))
    };
    let partition_workers = loads
        .iter()
        .map(|load| load.partition_workers)
        .max()
        .unwrap_or(0);
    let replicas = match aggregate_by {
        Aggregate::Max => loads.iter().try_fold(0, |most, load| {
            Ok(most.max(desired_replicas(load.runnable, concurrency_of(load)?)))
        })?,
        Aggregate::Sum => {
            let mut shared: Option<u32> = None;
            for load in loads {
                let concurrency = concurrency_of(load)?;
                if shared.is_some_and(|known| known != concurrency) {
                    return Err(WorkerConcurrencyError::DifferingWorkerConcurrency);
                }
                shared = Some(concurrency);
            }
            shared.map_or(0, |concurrency| {
                let runnable = aggregate(loads.iter().map(|load| load.runnable), Aggregate::Sum);
                desired_replicas(runnable, concurrency)
            })
        }
    };
    Ok(replicas.max(partition_workers))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn load(queue: &str, depth: u64, concurrency: Option<u32>) -> QueueLoad {
        QueueLoad {
            queue: queue.into(),
            depth,
            runnable: depth,
            partition_workers: 0,
            database_worker_concurrency: concurrency,
        }
    }

    fn depth_of(loads: &[QueueLoad], by: Aggregate) -> u64 {
        aggregate(loads.iter().map(|load| load.depth), by)
    }

    #[test]
    fn replicas_round_up_and_zero_stays_zero() {
        assert_eq!(desired_replicas(0, 2), 0);
        assert_eq!(desired_replicas(1, 2), 1);
        assert_eq!(desired_replicas(2, 2), 1);
        assert_eq!(desired_replicas(3, 2), 2);
        assert_eq!(desired_replicas(u64::MAX, 1), u64::MAX);
    }

    #[test]
    fn max_sizes_each_queue_with_its_own_concurrency() {
        let loads = [load("a", 10, Some(5)), load("b", 7, Some(2))];
        assert_eq!(depth_of(&loads, Aggregate::Max), 10);
        assert_eq!(aggregate_replicas(&loads, Aggregate::Max, None), Ok(4));
        assert_eq!(aggregate_replicas(&loads, Aggregate::Max, Some(10)), Ok(1));
    }

    #[test]
    fn sum_sizes_the_total_with_one_concurrency() {
        let loads = [load("a", 3, Some(2)), load("b", 2, Some(2))];
        assert_eq!(depth_of(&loads, Aggregate::Sum), 5);
        assert_eq!(aggregate_replicas(&loads, Aggregate::Sum, None), Ok(3));
        let differing = [load("a", 3, Some(2)), load("b", 2, Some(3))];
        assert_eq!(
            aggregate_replicas(&differing, Aggregate::Sum, None),
            Err(WorkerConcurrencyError::DifferingWorkerConcurrency)
        );
        assert_eq!(
            aggregate_replicas(&differing, Aggregate::Sum, Some(5)),
            Ok(1)
        );
    }

    #[test]
    fn unknown_concurrency_is_an_error_not_a_guess() {
        let loads = [load("a", 0, None)];
        assert_eq!(
            aggregate_replicas(&loads, Aggregate::Max, None),
            Err(WorkerConcurrencyError::MissingWorkerConcurrency("a".into()))
        );
        assert!(
            WorkerConcurrencyError::MissingWorkerConcurrency("a".into())
                .to_string()
                .contains("set workerConcurrency")
        );
    }

    #[test]
    fn global_concurrency_caps_runnable_work() {
        let limits = QueueLimits {
            concurrency: Some(10),
            ..QueueLimits::default()
        };
        assert_eq!(runnable_work(25, &limits), (10, 0));
        assert_eq!(runnable_work(4, &limits), (4, 0));
        // concurrency 10, worker_concurrency 2: at most 5 replicas however deep the queue.
        let capped = QueueLoad {
            runnable: runnable_work(1_000, &limits).0,
            ..load("q", 1_000, Some(2))
        };
        assert_eq!(aggregate_replicas(&[capped], Aggregate::Max, None), Ok(5));
    }

    #[test]
    fn partitions_cap_each_partition_and_size_the_busiest() {
        // 12 items: 10 keyed over partitions (runnable 4 after partition_concurrency, the
        // busiest partition at its cap of 2) and 2 without a key, which DBOS never runs.
        let partitions = PartitionLoad {
            runnable: 4,
            busiest: 2,
        };
        let limits = QueueLimits {
            concurrency: None,
            partitions: Some(partitions),
            partition_worker_concurrency: Some(1),
        };
        assert_eq!(runnable_work(12, &limits), (4, 2));
        let with_global = QueueLimits {
            concurrency: Some(1),
            ..limits
        };
        assert_eq!(runnable_work(12, &with_global), (1, 1));
        let without_worker_limit = QueueLimits {
            partition_worker_concurrency: None,
            ..limits
        };
        assert_eq!(runnable_work(12, &without_worker_limit), (4, 0));
        // The busiest partition's need wins over ceil(runnable / worker_concurrency).
        let busy_partition = QueueLoad {
            runnable: 6,
            partition_workers: 3,
            ..load("q", 12, Some(10))
        };
        assert_eq!(
            aggregate_replicas(std::slice::from_ref(&busy_partition), Aggregate::Max, None),
            Ok(3)
        );
        assert_eq!(
            aggregate_replicas(&[busy_partition], Aggregate::Sum, None),
            Ok(3)
        );
    }

    #[test]
    fn activity_is_strictly_above_the_threshold() {
        assert!(!is_active(0, 0));
        assert!(is_active(1, 0));
        assert!(!is_active(5, 5));
        assert!(is_active(6, 5));
    }

    proptest! {
        #[test]
        fn replicas_are_just_enough(depth in 0u64..=u64::MAX / 2, concurrency in 1u32..=u32::MAX) {
            let desired = desired_replicas(depth, concurrency);
            let concurrency = u128::from(concurrency);
            prop_assert!(u128::from(desired) * concurrency >= u128::from(depth));
            if desired > 0 {
                prop_assert!(u128::from(desired - 1) * concurrency < u128::from(depth));
            } else {
                prop_assert_eq!(depth, 0);
            }
        }

        #[test]
        fn max_is_never_below_any_single_queue(
            depths in proptest::collection::vec(0u64..1_000_000, 1..8),
            concurrency in 1u32..100,
        ) {
            let loads: Vec<QueueLoad> = depths.iter().enumerate()
                .map(|(i, d)| load(&i.to_string(), *d, Some(concurrency))).collect();
            let replicas = aggregate_replicas(&loads, Aggregate::Max, None).unwrap();
            for load in &loads {
                prop_assert!(replicas >= desired_replicas(load.depth, concurrency));
            }
            let summed = aggregate_replicas(&loads, Aggregate::Sum, None).unwrap();
            prop_assert!(summed >= replicas);
        }
    }
}
