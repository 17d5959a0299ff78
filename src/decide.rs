//! The maths: from per-queue depths to one depth, a replica count and activity.
//! Pure functions, no I/O.

use crate::trigger::Aggregate;

/// What was read for one queue of a trigger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueLoad {
    /// The queue's name.
    pub queue: String,
    /// Waiting, running and due-delayed work items.
    pub depth: u64,
    /// `worker_concurrency` from the database, if it has one.
    pub database_worker_concurrency: Option<u32>,
}

/// Why no replica count can be given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecideError {
    /// A queue's worker concurrency is unknown.
    #[error(
        "queue {0:?} has no worker_concurrency in the database: set workerConcurrency in the trigger metadata"
    )]
    MissingWorkerConcurrency(String),
    /// `aggregate: sum` needs one concurrency for the shared pool, and the queues disagree.
    #[error(
        "aggregate \"sum\" needs one worker concurrency for the shared pool, but the queues have different worker_concurrency values in the database: set workerConcurrency in the trigger metadata"
    )]
    DifferingWorkerConcurrency,
}

/// Replicas needed for `depth` items when each replica runs `worker_concurrency` at once:
/// `ceil(depth / worker_concurrency)`, 0 for an empty queue.
pub fn desired_replicas(depth: u64, worker_concurrency: u32) -> u64 {
    depth.div_ceil(u64::from(worker_concurrency.max(1)))
}

/// The trigger's depth: the busiest queue's (`max`) or all of them together (`sum`).
pub fn aggregate_depth(loads: &[QueueLoad], aggregate: Aggregate) -> u64 {
    let depths = loads.iter().map(|load| load.depth);
    match aggregate {
        Aggregate::Max => depths.max().unwrap_or(0),
        Aggregate::Sum => depths.fold(0, u64::saturating_add),
    }
}

/// Whether the trigger is active: its depth exceeds the activation threshold.
pub fn is_active(depth: u64, activation_threshold: u64) -> bool {
    depth > activation_threshold
}

/// Replicas the trigger asks for. With `max`, each queue is sized with its own worker
/// concurrency and the largest count wins (a DBOS worker's per-queue limits are
/// independent). With `sum`, the total is sized with the pool's one concurrency.
/// `override_concurrency` (from metadata) beats the database's values.
pub fn aggregate_replicas(
    loads: &[QueueLoad],
    aggregate: Aggregate,
    override_concurrency: Option<u32>,
) -> Result<u64, DecideError> {
    let concurrency_of = |load: &QueueLoad| {
        override_concurrency
            .or(load.database_worker_concurrency)
            .ok_or_else(|| DecideError::MissingWorkerConcurrency(load.queue.clone()))
    };
    match aggregate {
        Aggregate::Max => loads.iter().try_fold(0, |most, load| {
            Ok(most.max(desired_replicas(load.depth, concurrency_of(load)?)))
        }),
        Aggregate::Sum => {
            let mut shared: Option<u32> = None;
            for load in loads {
                let concurrency = concurrency_of(load)?;
                if shared.is_some_and(|known| known != concurrency) {
                    return Err(DecideError::DifferingWorkerConcurrency);
                }
                shared = Some(concurrency);
            }
            Ok(shared.map_or(0, |concurrency| {
                desired_replicas(aggregate_depth(loads, Aggregate::Sum), concurrency)
            }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn load(queue: &str, depth: u64, concurrency: Option<u32>) -> QueueLoad {
        QueueLoad {
            queue: queue.into(),
            depth,
            database_worker_concurrency: concurrency,
        }
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
        assert_eq!(aggregate_depth(&loads, Aggregate::Max), 10);
        assert_eq!(aggregate_replicas(&loads, Aggregate::Max, None), Ok(4));
        assert_eq!(aggregate_replicas(&loads, Aggregate::Max, Some(10)), Ok(1));
    }

    #[test]
    fn sum_sizes_the_total_with_one_concurrency() {
        let loads = [load("a", 3, Some(2)), load("b", 2, Some(2))];
        assert_eq!(aggregate_depth(&loads, Aggregate::Sum), 5);
        assert_eq!(aggregate_replicas(&loads, Aggregate::Sum, None), Ok(3));
        let differing = [load("a", 3, Some(2)), load("b", 2, Some(3))];
        assert_eq!(
            aggregate_replicas(&differing, Aggregate::Sum, None),
            Err(DecideError::DifferingWorkerConcurrency)
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
            Err(DecideError::MissingWorkerConcurrency("a".into()))
        );
        assert!(
            DecideError::MissingWorkerConcurrency("a".into())
                .to_string()
                .contains("set workerConcurrency")
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
