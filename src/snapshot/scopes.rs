//! The scopes (application, version, lookahead) a source's triggers ask for. The refresh
//! statement computes each one, so only scopes in use are kept: a scope nobody asked about
//! for `idle_after`, and that no stream holds, is dropped from the next read. A new scope
//! wakes the refresh loop, so its first request waits for one read, not for a tick.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::sync::lock;
use crate::systems::ScopeRequest;
use crate::trigger::Scope;

/// The scopes in use on one source.
#[derive(Debug, Default)]
pub(super) struct ScopeRegistry {
    uses: Mutex<HashMap<Scope, ScopeUse>>,
    added: Notify,
}

#[derive(Debug)]
struct ScopeUse {
    last_used: Instant,
    streams: usize,
    /// A trigger with this scope watches a partitioned queue whose limits apply.
    partitions: bool,
}

impl ScopeRegistry {
    /// Marks `scope` used now (adding it); with `stream`, also counts a stream holding it;
    /// with `partitions`, its partitions are counted from now on. Wakes the refresh loop
    /// when the next read must compute more than the last.
    pub(super) fn touch(&self, scope: &Scope, stream: bool, partitions: bool) {
        let mut uses = lock(&self.uses);
        let now = Instant::now();
        let streams = usize::from(stream);
        match uses.get_mut(scope) {
            Some(known) => {
                known.last_used = now;
                known.streams += streams;
                if partitions && !known.partitions {
                    known.partitions = true;
                    self.added.notify_one();
                }
            }
            None => {
                uses.insert(
                    scope.clone(),
                    ScopeUse {
                        last_used: now,
                        streams,
                        partitions,
                    },
                );
                self.added.notify_one();
            }
        }
    }

    /// Completes when a scope was added since the last call (at once if one was).
    pub(super) async fn added(&self) {
        self.added.notified().await;
    }

    /// A stream holding `scope` has ended; the scope counts as used until now.
    pub(super) fn release(&self, scope: &Scope) {
        if let Some(known) = lock(&self.uses).get_mut(scope) {
            known.last_used = Instant::now();
            known.streams = known.streams.saturating_sub(1);
        }
    }

    /// Whether some scope in use is not among `read`, or wants partitions `read` did not
    /// count.
    pub(super) fn any_missing_from(&self, read: &[ScopeRequest]) -> bool {
        lock(&self.uses).iter().any(|(scope, known)| {
            !read
                .iter()
                .any(|request| request.scope == *scope && (request.partitions || !known.partitions))
        })
    }

    /// The scopes to read now, after dropping those idle for longer than `idle_after`.
    pub(super) fn live(&self, idle_after: Duration) -> Vec<ScopeRequest> {
        let mut uses = lock(&self.uses);
        uses.retain(|_, known| known.streams > 0 || known.last_used.elapsed() <= idle_after);
        uses.iter()
            .map(|(scope, known)| ScopeRequest {
                scope: scope.clone(),
                partitions: known.partitions,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(version: &str) -> Scope {
        crate::trigger::from_pairs(&[("queue", "q"), ("applicationVersion", version)]).scope
    }

    #[tokio::test]
    async fn a_new_scope_wakes_the_reader_and_a_known_one_does_not() {
        let registry = ScopeRegistry::default();
        let request = |version, partitions| ScopeRequest {
            scope: scope(version),
            partitions,
        };
        registry.touch(&scope("v1"), false, false);
        tokio::time::timeout(Duration::from_secs(1), registry.added())
            .await
            .expect("a new scope is announced");
        registry.touch(&scope("v1"), false, false);
        let again = tokio::time::timeout(Duration::from_millis(50), registry.added()).await;
        assert!(again.is_err(), "a known scope is not announced again");
        assert!(!registry.any_missing_from(&[request("v1", false)]));
        assert!(registry.any_missing_from(&[request("v2", false)]));
        registry.touch(&scope("v1"), false, true);
        tokio::time::timeout(Duration::from_secs(1), registry.added())
            .await
            .expect("a scope that now wants partitions is announced");
        assert!(registry.any_missing_from(&[request("v1", false)]));
        assert!(!registry.any_missing_from(&[request("v1", true)]));
    }

    #[test]
    fn idle_scopes_are_dropped_unless_a_stream_holds_them() {
        let registry = ScopeRegistry::default();
        registry.touch(&scope("v1"), false, false);
        registry.touch(&scope("v2"), true, false);
        registry.touch(&scope("v1"), false, false);
        let mut live: Vec<Scope> = registry
            .live(Duration::from_secs(60))
            .into_iter()
            .map(|request| request.scope)
            .collect();
        live.sort_by_key(|scope| format!("{:?}", scope.version));
        assert_eq!(live, vec![scope("v1"), scope("v2")]);
        let held: Vec<Scope> = registry
            .live(Duration::ZERO)
            .into_iter()
            .map(|request| request.scope)
            .collect();
        assert_eq!(held, vec![scope("v2")]);
        registry.release(&scope("v2"));
        std::thread::sleep(Duration::from_millis(5));
        assert!(registry.live(Duration::ZERO).is_empty());
    }
}
