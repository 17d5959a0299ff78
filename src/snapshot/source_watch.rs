//! A stream's hold on a source: it keeps the source polled while the stream is open and
//! yields each publication.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::state::{SourceState, judge};
use super::{Snapshot, Source};
use crate::error::Error;
use crate::sync::lock;
use crate::trigger::{Scope, Trigger};

/// A stream's hold on a source: keeps it polled and yields its updates.
pub(crate) struct SourceWatch {
    pub(super) state: watch::Receiver<SourceState>,
    pub(super) stale_after: Duration,
    pub(super) scope: Scope,
    pub(super) source: Arc<Source>,
}

impl SourceWatch {
    /// The current snapshot if it is fresh; see [`Snapshots::latest`]. Asks the source for
    /// what `trigger` needs that it does not count yet (its partitions, once a read shows
    /// them needed); the read that counts them is the next update.
    pub(crate) fn current(&self, trigger: &Trigger) -> Result<Arc<Snapshot>, Error> {
        self.source.touch(trigger, false);
        judge(&self.state.borrow(), &self.source.label, self.stale_after)
    }

    /// Waits for the next publication; `false` once the source's loop has ended.
    pub(crate) async fn changed(&mut self) -> bool {
        self.state.changed().await.is_ok()
    }
}

impl Drop for SourceWatch {
    fn drop(&mut self) {
        // Used now, then released: the other order would let the loop retire the source
        // in between as if it had been idle all along.
        *lock(&self.source.last_used) = Instant::now();
        self.source.scopes.release(&self.scope);
        self.source.open_streams.fetch_sub(1, Ordering::SeqCst);
    }
}
