//! The latest reading of every database in use, shared by all requests.
//!
//! KEDA sends many small calls for the same few numbers, so requests never query Postgres.
//! Each source (a database and schema) has one refresh loop that runs one statement per tick
//! and publishes the result on a watch channel. A source is polled while a trigger used it
//! within `idle_after` or a stream on it is open, and not at all otherwise: its loop retires,
//! and its pool closes with it.

mod refresh;
mod scopes;
mod source_watch;
mod state;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

use crate::caps::{CapSettings, CapUse};
use crate::connection_url::ConnectionUrl;
use crate::database::PoolSettings;
use crate::error::Error;
use crate::metrics::{Metrics, SourceLabels, SourceOverview};
use crate::sync::lock;
pub(crate) use crate::systems::Snapshot;
use crate::trigger::{ConnectionRef, System, Trigger};

pub(crate) use refresh::RefreshError;
use scopes::ScopeRegistry;
pub(crate) use source_watch::SourceWatch;
pub(crate) use state::{SourceKey, SourceState};
use state::{judge, wants_partitions};

/// How often sources are read and how old a reading may get.
#[derive(Debug, Clone)]
pub(crate) struct RefreshSettings {
    /// Time between two reads of a source in use.
    pub interval: Duration,
    /// A reading older than this is not served.
    pub stale_after: Duration,
    /// A source nobody asked about for this long stops being read.
    pub idle_after: Duration,
    /// How long the first request for a new source waits for its first read.
    pub first_read_timeout: Duration,
    /// Upper bound for one read, connection included.
    pub read_timeout: Duration,
}

/// A source's state next to the verdict a request for one trigger gets from it.
#[derive(Debug)]
pub(crate) struct Observed {
    /// What the refresh loop last published.
    pub state: SourceState,
    /// The snapshot a request is served, or why it is refused.
    pub verdict: Result<Arc<Snapshot>, Error>,
}

/// A source in use, as [`Snapshots::in_use`] lists it.
#[derive(Debug)]
pub(crate) struct SourceView {
    /// Which database and schema.
    pub key: SourceKey,
    /// The database's label (its configured name, or a URL's host and database).
    pub label: String,
    /// What its refresh loop last published.
    pub state: SourceState,
}

/// The registry of sources; cheap to clone.
#[derive(Clone)]
pub(crate) struct Snapshots {
    inner: Arc<Inner>,
}

struct Inner {
    refresh: RefreshSettings,
    pool: PoolSettings,
    caps: CapSettings,
    /// One permit per database connection a pool may open, over all pools.
    connections: Arc<Semaphore>,
    databases: HashMap<String, ConnectionUrl>,
    sources: Mutex<HashMap<SourceKey, Arc<Source>>>,
    shutdown: watch::Receiver<bool>,
    metrics: Arc<Metrics>,
}

struct Source {
    label: String,
    metric_labels: SourceLabels,
    url: ConnectionUrl,
    /// Built by the refresh loop, and built again on the next tick if that failed (a
    /// certificate file not mounted yet, say).
    pool: Mutex<Option<deadpool_postgres::Pool>>,
    state: watch::Receiver<SourceState>,
    last_used: Mutex<Instant>,
    open_streams: AtomicUsize,
    /// What the source's triggers ask the refresh statement to compute.
    scopes: ScopeRegistry,
    /// The connections its pool may open, reserved under `max_database_connections` until
    /// the source is gone.
    _connections: OwnedSemaphorePermit,
}

impl Snapshots {
    /// A registry for the named `databases`; loops stop when `shutdown` turns true.
    pub(crate) fn new(
        refresh: RefreshSettings,
        pool: PoolSettings,
        caps: CapSettings,
        databases: HashMap<String, ConnectionUrl>,
        shutdown: watch::Receiver<bool>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                refresh,
                pool,
                caps,
                connections: Arc::new(Semaphore::new(caps.max_database_connections)),
                databases,
                sources: Mutex::new(HashMap::new()),
                shutdown,
                metrics,
            }),
        }
    }

    /// The fresh snapshot for `trigger`'s source, waiting briefly for the first read of a
    /// source that was not in use. Errors rather than inventing a number.
    pub(crate) async fn latest(&self, trigger: &Trigger) -> Result<Arc<Snapshot>, Error> {
        let (source, state) = self.settled(trigger).await?;
        judge(&state, &source.label, self.inner.refresh.stale_after)
    }

    /// What [`Snapshots::latest`] sees, kept whole for an explanation: the source's state
    /// (its failure and its last good read, even a stale one) next to the verdict a request
    /// gets from it.
    pub(crate) async fn observe(&self, trigger: &Trigger) -> Result<Observed, Error> {
        let (source, state) = self.settled(trigger).await?;
        Ok(Observed {
            verdict: judge(&state, &source.label, self.inner.refresh.stale_after),
            state,
        })
    }

    /// The state of `trigger`'s source once it settles the trigger, or at the first-read
    /// deadline. A trigger whose scope the source did not compute yet waits for the read
    /// that does.
    async fn settled(&self, trigger: &Trigger) -> Result<(Arc<Source>, SourceState), Error> {
        let source = self.source(trigger)?;
        let mut state = source.state.clone();
        let deadline = tokio::time::Instant::now() + self.inner.refresh.first_read_timeout;
        // An error from wait_for means the loop has gone; what it last published still
        // counts.
        source.touch(trigger, false);
        let _ = tokio::time::timeout_at(
            deadline,
            state.wait_for(|state| state.read_scope_of(trigger)),
        )
        .await;
        // The read may show that the trigger's queue is partitioned: the trigger then asks
        // for its partitions and waits for the read that counts them.
        if !state.borrow().answers(trigger) {
            source.touch(trigger, false);
            let _ =
                tokio::time::timeout_at(deadline, state.wait_for(|state| state.answers(trigger)))
                    .await;
        }
        let current = state.borrow().clone();
        Ok((source, current))
    }

    /// Reads the configured database `name`'s `schema` (keeping it read, like a trigger's
    /// call) and returns its state once a read was attempted, or at the first-read deadline.
    /// Only the whole queues are counted: no trigger scope is asked for.
    pub(crate) async fn read_named(&self, name: &str, schema: &str) -> Result<SourceView, Error> {
        let key = SourceKey {
            connection: ConnectionRef::Named(name.to_owned()),
            system: System::Dbos,
            schema: schema.to_owned(),
        };
        let source = self.held(key.clone(), || name.to_owned(), false)?;
        let mut state = source.state.clone();
        let deadline = tokio::time::Instant::now() + self.inner.refresh.first_read_timeout;
        let _ = tokio::time::timeout_at(deadline, state.wait_for(|state| state.attempts > 0)).await;
        let state = state.borrow().clone();
        Ok(SourceView {
            key,
            label: source.label.clone(),
            state,
        })
    }

    /// Every source being read and its state now, without marking any as used.
    pub(crate) fn in_use(&self) -> Vec<SourceView> {
        self.inner
            .sources()
            .iter()
            .map(|(key, source)| SourceView {
                key: key.clone(),
                label: source.label.clone(),
                state: source.state.borrow().clone(),
            })
            .collect()
    }

    /// Keeps `trigger`'s source polled and yields its updates until dropped.
    pub(crate) fn watch(&self, trigger: &Trigger) -> Result<SourceWatch, Error> {
        let source = self.source_held(trigger, true)?;
        source.touch(trigger, true);
        Ok(SourceWatch {
            state: source.state.clone(),
            stale_after: self.inner.refresh.stale_after,
            scope: trigger.scope.clone(),
            source,
        })
    }

    /// Checks, without I/O, that `trigger`'s database is one the scaler can read.
    pub(crate) fn check_database(&self, trigger: &Trigger) -> Result<(), Error> {
        self.resolve(&trigger.connection).map(drop)
    }

    fn resolve(&self, connection: &ConnectionRef) -> Result<ConnectionUrl, Error> {
        match connection {
            ConnectionRef::Named(name) => self
                .inner
                .databases
                .get(name)
                .cloned()
                .ok_or_else(|| Error::UnknownDatabase(name.clone())),
            ConnectionRef::FromEnv(url) => Ok(url.clone()),
        }
    }

    /// What every source in use holds right now, for metrics.
    pub(crate) fn overview(&self) -> Vec<SourceOverview> {
        self.inner
            .sources()
            .values()
            .map(|source| SourceOverview {
                labels: source.metric_labels.clone(),
                last_good: source.state.borrow().last_good.clone(),
                pool: lock(&source.pool)
                    .as_ref()
                    .map(deadpool_postgres::Pool::status),
                open_streams: source.open_streams.load(Ordering::SeqCst),
            })
            .collect()
    }

    fn source(&self, trigger: &Trigger) -> Result<Arc<Source>, Error> {
        self.source_held(trigger, false)
    }

    /// Finds or starts `trigger`'s source and marks it used; with `stream`, also counts a
    /// stream holding it. Both happen under the registry lock, which the loop's retirement
    /// check takes too. A source whose loop has ended (it can only have panicked: loops
    /// that retire remove themselves first) is replaced.
    fn source_held(&self, trigger: &Trigger, stream: bool) -> Result<Arc<Source>, Error> {
        self.held(SourceKey::of(trigger), || trigger.database_label(), stream)
    }

    /// [`Snapshots::source_held`] by key; `label` names a source that must be started.
    fn held(
        &self,
        key: SourceKey,
        label: impl FnOnce() -> String,
        stream: bool,
    ) -> Result<Arc<Source>, Error> {
        let mut sources = self.inner.sources();
        if let Some(source) = sources.get(&key) {
            if source.state.has_changed().is_ok() {
                *lock(&source.last_used) = Instant::now();
                if stream {
                    source.open_streams.fetch_add(1, Ordering::SeqCst);
                }
                return Ok(source.clone());
            }
            tracing::warn!(
                database = %source.label,
                "the refresh loop had ended; starting a new one"
            );
        }
        let url = self.resolve(&key.connection)?;
        let connections = self.reserve_source(sources.len())?;
        let (sender, receiver) = watch::channel(SourceState::default());
        let label = label();
        let source = Arc::new(Source {
            metric_labels: SourceLabels {
                system: key.system.as_str(),
                database: label.clone(),
                schema: key.schema.clone(),
            },
            url,
            pool: Mutex::new(None),
            label,
            state: receiver,
            last_used: Mutex::new(Instant::now()),
            open_streams: AtomicUsize::new(usize::from(stream)),
            scopes: ScopeRegistry::default(),
            _connections: connections,
        });
        sources.insert(key.clone(), source.clone());
        tokio::spawn(refresh::run(self.clone(), key, source.clone(), sender));
        Ok(source)
    }

    /// Room for one more source, when `in_use` are read: under `max_sources`, and the
    /// connections of its pool under `max_database_connections`. A refusal leaves the
    /// sources in use untouched.
    fn reserve_source(&self, in_use: usize) -> Result<OwnedSemaphorePermit, Error> {
        let caps = &self.inner.caps;
        if in_use >= caps.max_sources {
            return Err(Error::Exhausted(format!(
                "this scaler reads at most {} databases and schemas at once (max_sources); \
                 triggers on those in use keep working",
                caps.max_sources
            )));
        }
        // The pool size is at most 16 and checked against the cap at start-up.
        let pool_size = u32::try_from(self.inner.pool.max_size).unwrap_or(u32::MAX);
        self.inner
            .connections
            .clone()
            .try_acquire_many_owned(pool_size)
            .map_err(|_| {
                Error::Exhausted(format!(
                    "this scaler holds at most {} database connections \
                     (max_database_connections), and the databases and schemas in use have \
                     reserved them; triggers on those keep working",
                    caps.max_database_connections
                ))
            })
    }

    /// The use of the source and connection caps, for metrics.
    pub(crate) fn cap_usage(&self) -> [CapUse; 2] {
        let caps = &self.inner.caps;
        [
            ("sources", caps.max_sources, self.inner.sources().len()),
            (
                "database_connections",
                caps.max_database_connections,
                caps.max_database_connections - self.inner.connections.available_permits(),
            ),
        ]
    }

    /// Removes `source` when nobody used it lately and no stream holds it; returns whether
    /// it was removed. Done under the registry lock, which requests also take to mark a
    /// source used, so a source cannot retire under a request that just found it.
    fn retire_if_idle(&self, key: &SourceKey, source: &Arc<Source>) -> bool {
        let mut sources = self.inner.sources();
        let idle = source.open_streams.load(Ordering::SeqCst) == 0
            && lock(&source.last_used).elapsed() > self.inner.refresh.idle_after;
        if idle
            && sources
                .get(key)
                .is_some_and(|known| Arc::ptr_eq(known, source))
        {
            sources.remove(key);
        }
        idle
    }
}

impl Source {
    /// Registers `trigger`'s scope as used (by a stream, with `stream`), asking for its
    /// partitions when the latest read shows it needs them.
    fn touch(&self, trigger: &Trigger, stream: bool) {
        let state = self.state.borrow();
        let partitions = wants_partitions(trigger, state.last_good.as_deref());
        drop(state);
        self.scopes.touch(&trigger.scope, stream, partitions);
    }
}

impl Inner {
    fn sources(&self) -> MutexGuard<'_, HashMap<SourceKey, Arc<Source>>> {
        lock(&self.sources)
    }
}
