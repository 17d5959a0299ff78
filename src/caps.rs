//! Caps on what clients can make the scaler hold: StreamIsActive streams (overall and per
//! connection) and concurrent calls. A request beyond a cap is refused with
//! `ResourceExhausted` naming the setting; what is already held keeps working. (Sources and
//! database connections are capped where they are made, in [`crate::snapshot`].)

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::Error;
use crate::sync::lock;

/// The limits, from the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CapSettings {
    /// Sources (database and schema) read at once.
    pub max_sources: usize,
    /// Connections to all databases together.
    pub max_database_connections: usize,
    /// Open `StreamIsActive` streams.
    pub max_streams: usize,
    /// Open `StreamIsActive` streams on one client connection.
    pub max_streams_per_connection: usize,
    /// Unary calls being answered at once.
    pub max_concurrent_calls: usize,
}

impl Default for CapSettings {
    /// The defaults: 64 sources and 64 connections (well inside Postgres' default 100
    /// slots, whatever a burst of distinct schemas or URLs asks for), 10,000 streams (one
    /// per external-push ScaledObject; KEDA multiplexes all of them over one connection, so
    /// the per-connection cap is as high), 1,024 calls at once.
    fn default() -> Self {
        Self {
            max_sources: 64,
            max_database_connections: 64,
            max_streams: 10_000,
            max_streams_per_connection: 10_000,
            max_concurrent_calls: 1_024,
        }
    }
}

/// How much of each cap is in use, for metrics: `(cap, limit, in use)`.
pub(crate) type CapUse = (&'static str, usize, usize);

/// The stream and call caps of the gRPC service; cheap to clone.
#[derive(Clone)]
pub(crate) struct CallCaps {
    inner: Arc<Inner>,
}

struct Inner {
    settings: CapSettings,
    streams: AtomicUsize,
    streams_by_connection: Mutex<HashMap<Option<SocketAddr>, usize>>,
    calls: Arc<Semaphore>,
}

impl CallCaps {
    /// Caps as `settings` set them.
    pub(crate) fn new(settings: CapSettings) -> Self {
        Self {
            inner: Arc::new(Inner {
                settings,
                streams: AtomicUsize::new(0),
                streams_by_connection: Mutex::new(HashMap::new()),
                calls: Arc::new(Semaphore::new(settings.max_concurrent_calls)),
            }),
        }
    }

    /// A slot for one unary call, held until dropped.
    pub(crate) fn call(&self) -> Result<OwnedSemaphorePermit, Error> {
        self.inner.calls.clone().try_acquire_owned().map_err(|_| {
            Error::Exhausted(format!(
                "this scaler answers at most {} calls at once (max_concurrent_calls); try again \
                 shortly",
                self.inner.settings.max_concurrent_calls
            ))
        })
    }

    /// A slot for one stream from the client connection `peer`, held until dropped.
    pub(crate) fn stream(&self, peer: Option<SocketAddr>) -> Result<StreamSlot, Error> {
        let settings = &self.inner.settings;
        let mut by_connection = lock(&self.inner.streams_by_connection);
        let on_connection = by_connection.get(&peer).copied().unwrap_or(0);
        if on_connection >= settings.max_streams_per_connection {
            return Err(Error::Exhausted(format!(
                "this connection holds {on_connection} streams, the most allowed \
                 (max_streams_per_connection)"
            )));
        }
        let open = self.inner.streams.load(Ordering::SeqCst);
        if open >= settings.max_streams {
            return Err(Error::Exhausted(format!(
                "this scaler holds {open} streams, the most allowed (max_streams)"
            )));
        }
        self.inner.streams.fetch_add(1, Ordering::SeqCst);
        by_connection.insert(peer, on_connection + 1);
        Ok(StreamSlot {
            caps: self.clone(),
            peer,
        })
    }

    /// The use of each cap, for metrics.
    pub(crate) fn usage(&self) -> [CapUse; 3] {
        let settings = &self.inner.settings;
        let busiest = lock(&self.inner.streams_by_connection)
            .values()
            .copied()
            .max()
            .unwrap_or(0);
        [
            (
                "streams",
                settings.max_streams,
                self.inner.streams.load(Ordering::SeqCst),
            ),
            (
                "streams_per_connection",
                settings.max_streams_per_connection,
                busiest,
            ),
            (
                "concurrent_calls",
                settings.max_concurrent_calls,
                settings.max_concurrent_calls - self.inner.calls.available_permits(),
            ),
        ]
    }
}

/// One open stream's hold on the caps; released when dropped.
pub(crate) struct StreamSlot {
    caps: CallCaps,
    peer: Option<SocketAddr>,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let inner = &self.caps.inner;
        let mut by_connection = lock(&inner.streams_by_connection);
        if let Some(count) = by_connection.get_mut(&self.peer) {
            *count -= 1;
            if *count == 0 {
                by_connection.remove(&self.peer);
            }
        }
        inner.streams.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps() -> CallCaps {
        CallCaps::new(CapSettings {
            max_sources: 1,
            max_database_connections: 1,
            max_streams: 3,
            max_streams_per_connection: 2,
            max_concurrent_calls: 1,
        })
    }

    #[test]
    fn streams_are_capped_overall_and_per_connection_and_released() {
        let caps = caps();
        let a = Some(SocketAddr::from(([127, 0, 0, 1], 1)));
        let b = Some(SocketAddr::from(([127, 0, 0, 1], 2)));
        let first = caps.stream(a).unwrap();
        let _second = caps.stream(a).unwrap();
        let error = caps.stream(a).err().unwrap().to_string();
        assert!(error.contains("max_streams_per_connection"), "{error}");
        let _third = caps.stream(b).unwrap();
        let error = caps.stream(b).err().unwrap().to_string();
        assert!(error.contains("(max_streams)"), "{error}");
        assert_eq!(caps.usage()[0], ("streams", 3, 3));
        drop(first);
        assert!(caps.stream(b).is_ok(), "a released slot is free again");
        assert_eq!(caps.usage()[1], ("streams_per_connection", 2, 1));
    }

    #[test]
    fn calls_are_capped_while_held() {
        let caps = caps();
        let call = caps.call().unwrap();
        assert!(
            caps.call()
                .unwrap_err()
                .to_string()
                .contains("max_concurrent_calls")
        );
        assert_eq!(caps.usage()[2], ("concurrent_calls", 1, 1));
        drop(call);
        assert!(caps.call().is_ok());
    }
}
