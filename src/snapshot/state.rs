//! What a source's refresh loop publishes, and how a request judges it: served only when
//! the latest read succeeded and is recent enough.

use std::sync::Arc;
use std::time::Duration;

use super::RefreshError;
use crate::error::Error;
use crate::systems::Snapshot;
use crate::trigger::{ConnectionRef, System, Trigger};

/// What a source's refresh loop last published.
#[derive(Debug, Clone, Default)]
pub(crate) struct SourceState {
    /// The latest successful read.
    pub last_good: Option<Arc<Snapshot>>,
    /// Why the latest attempt failed, if it did.
    pub failure: Option<Arc<RefreshError>>,
    /// Reads attempted so far.
    pub attempts: u64,
}

/// Identifies a source: one refresh loop and one pool.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct SourceKey {
    /// The database.
    pub connection: ConnectionRef,
    /// The queue system.
    pub system: System,
    /// The schema.
    pub schema: String,
}

impl SourceKey {
    /// The source a trigger reads.
    pub(crate) fn of(trigger: &Trigger) -> Self {
        Self {
            connection: trigger.connection.clone(),
            system: trigger.system,
            schema: trigger.schema.clone(),
        }
    }
}

impl SourceState {
    /// Whether this state settles a request for `trigger`: a read was attempted, and it
    /// failed (the failure is the answer) or computed the trigger's scope, with partitions
    /// if the trigger needs them.
    pub(super) fn answers(&self, trigger: &Trigger) -> bool {
        self.attempts > 0
            && (self.failure.is_some()
                || self.last_good.as_ref().is_none_or(|snapshot| {
                    snapshot
                        .reading
                        .has_scope(&trigger.scope, wants_partitions(trigger, Some(snapshot)))
                }))
    }

    /// Whether a read was attempted since `trigger`'s scope was asked for: it failed, or it
    /// computed the scope (perhaps without the partitions it turns out to need).
    pub(super) fn read_scope_of(&self, trigger: &Trigger) -> bool {
        self.attempts > 0
            && (self.failure.is_some()
                || self
                    .last_good
                    .as_ref()
                    .is_none_or(|snapshot| snapshot.reading.has_scope(&trigger.scope, false)))
    }
}

/// Whether `trigger` needs its scope's partitions counted: its limits apply and, as far as
/// `snapshot` knows, one of its queues is partitioned. (Before the first read nothing is
/// known; the request then asks again once it is.)
pub(super) fn wants_partitions(trigger: &Trigger, snapshot: Option<&Snapshot>) -> bool {
    trigger.apply_limits
        && snapshot.is_some_and(|snapshot| snapshot.reading.needs_partitions(&trigger.queues))
}

/// Serves a state only when its latest read succeeded and is recent enough.
pub(super) fn judge(
    state: &SourceState,
    label: &str,
    stale_after: Duration,
) -> Result<Arc<Snapshot>, Error> {
    if let Some(failure) = &state.failure {
        return Err(Error::Unavailable(format!(
            "database {label:?} could not be read: {failure}"
        )));
    }
    let Some(snapshot) = &state.last_good else {
        return Err(Error::Unavailable(format!(
            "database {label:?} has not been read yet; try again shortly"
        )));
    };
    let age = snapshot.read_at.elapsed();
    if age > stale_after {
        return Err(Error::stale(label, age, stale_after));
    }
    Ok(snapshot.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::systems::Reading;
    use std::time::Instant;

    fn snapshot(age: Duration) -> Arc<Snapshot> {
        Arc::new(Snapshot {
            reading: Reading::default(),
            read_at: Instant::now() - age,
        })
    }

    #[test]
    fn a_fresh_successful_read_is_served() {
        let state = SourceState {
            last_good: Some(snapshot(Duration::ZERO)),
            failure: None,
            attempts: 1,
        };
        assert!(judge(&state, "default", Duration::from_secs(30)).is_ok());
    }

    #[test]
    fn a_failed_latest_read_is_unavailable_even_with_an_older_good_one() {
        let state = SourceState {
            last_good: Some(snapshot(Duration::ZERO)),
            failure: Some(Arc::new(RefreshError::TimedOut(Duration::from_secs(10)))),
            attempts: 2,
        };
        let error = judge(&state, "default", Duration::from_secs(30)).unwrap_err();
        assert!(matches!(error, Error::Unavailable(_)));
        assert!(
            error.to_string().contains("no answer within 10000ms"),
            "{error}"
        );
    }

    #[test]
    fn a_stale_read_is_unavailable() {
        let state = SourceState {
            last_good: Some(snapshot(Duration::from_secs(31))),
            failure: None,
            attempts: 9,
        };
        let error = judge(&state, "default", Duration::from_secs(30)).unwrap_err();
        assert!(error.to_string().contains("stale"), "{error}");
    }

    #[test]
    fn nothing_read_yet_is_unavailable() {
        let error = judge(&SourceState::default(), "default", Duration::from_secs(30)).unwrap_err();
        assert!(matches!(error, Error::Unavailable(_)));
    }
}
