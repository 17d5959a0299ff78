//! Queue systems: for each, how to find its tables, the one statement that counts every
//! queue, and how its rows become a [`Reading`]. Knows nothing about gRPC.

pub mod dbos;

use std::collections::{HashMap, HashSet};

/// Work items of one queue (for one application), by state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueCounts {
    /// Waiting to be picked up.
    pub enqueued: u64,
    /// Picked up by a worker (running, or orphaned by a dead one).
    pub pending: u64,
    /// Delayed work whose time has come but which no worker has released yet.
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

/// One refresh's result for a whole schema: counts for every queue with work in it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reading {
    /// Per queue, counts per owning application (`None` = unclaimed, or the schema has no
    /// application column).
    pub counts: HashMap<String, Vec<(Option<String>, QueueCounts)>>,
    /// `worker_concurrency` per queue, where the system stores it.
    pub worker_concurrency: HashMap<String, u32>,
    /// Whether rows carry an owning application, so that an application filter applies.
    pub tracks_applications: bool,
    /// Queues the system has a configuration row for.
    pub registered_queues: HashSet<String>,
    /// Whether every queue of this system version has a configuration row, so that a queue
    /// without one (and without work) is a mistake rather than an empty queue.
    pub registration_required: bool,
}

impl Reading {
    /// Whether `queue` can be told apart from a misspelt or misplaced one: it has work, or
    /// the system registers every queue and has it.
    pub fn knows_queue(&self, queue: &str) -> bool {
        !self.registration_required
            || self.registered_queues.contains(queue)
            || self.counts.contains_key(queue)
    }

    /// The counts of `queue` visible to `application`: its own and unclaimed work when the
    /// schema tracks applications, everything otherwise. A queue with no rows counts 0: it
    /// was read and is empty.
    pub fn counts(&self, queue: &str, application: Option<&str>) -> QueueCounts {
        let mut total = QueueCounts::default();
        for (owner, counts) in self.counts.get(queue).into_iter().flatten() {
            let visible = match (application, self.tracks_applications) {
                (Some(wanted), true) => owner.as_deref().is_none_or(|owner| owner == wanted),
                _ => true,
            };
            if visible {
                total.add(counts);
            }
        }
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(enqueued: u64, pending: u64, delayed_due: u64) -> QueueCounts {
        QueueCounts {
            enqueued,
            pending,
            delayed_due,
        }
    }

    #[test]
    fn depth_adds_all_three_states() {
        assert_eq!(counts(3, 2, 1).depth(), 6);
    }

    #[test]
    fn application_filter_keeps_own_and_unclaimed_work() {
        let mut reading = Reading {
            tracks_applications: true,
            ..Reading::default()
        };
        reading.counts.insert(
            "q".into(),
            vec![
                (Some("billing".into()), counts(1, 0, 0)),
                (Some("search".into()), counts(10, 0, 0)),
                (None, counts(0, 2, 1)),
            ],
        );
        assert_eq!(reading.counts("q", Some("billing")).depth(), 4);
        assert_eq!(reading.counts("q", None).depth(), 14);
        assert_eq!(reading.counts("other", Some("billing")).depth(), 0);
        reading.tracks_applications = false;
        assert_eq!(reading.counts("q", Some("billing")).depth(), 14);
    }
}
