//! A small TCP proxy for fault tests: it stands between the scaler and Postgres on
//! 127.0.0.1 and, switched at run time, passes bytes, holds them (a hung database),
//! resets connections, or adds latency.
//!
//! ```ignore
//! let (proxy, url) = Proxy::in_front_of(&database_url).await;
//! // ... start the scaler with `url` ...
//! proxy.set_mode(Mode::Blackhole);
//! ```
//!
//! Every task the proxy spawns ends when the [`Proxy`] is dropped: connection tasks live in
//! a `JoinSet` owned by the accept task, which `Drop` aborts.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

/// What the proxy does with connections and their bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Pass bytes both ways.
    Forward,
    /// Accept and keep connections, but pass nothing either way: reads hang. Bytes are held,
    /// not lost (TCP retransmits across a network partition that heals), so they flow again
    /// when the mode goes back to `Forward` or `Delay`. A connection accepted meanwhile is
    /// connected to the target only then.
    Blackhole,
    /// Close every open connection, and every new one at once, with a TCP RST (`SO_LINGER`
    /// 0, through tokio's `set_zero_linger`), on both sides.
    Reset,
    /// Pass bytes, each chunk this long after the proxy received it: latency added in each
    /// direction, so a round trip takes twice this much longer (throughput is not limited).
    Delay(Duration),
}

#[derive(Debug, Clone, Copy)]
struct State {
    mode: Mode,
    /// Raised to reset the connections open at that moment.
    reset_epoch: u64,
    /// Raised to strand the connections open at that moment.
    strand_epoch: u64,
}

/// A running proxy; dropping it stops it and closes all its connections.
pub struct Proxy {
    addr: SocketAddr,
    target: SocketAddr,
    state: watch::Sender<State>,
    counters: Arc<Counters>,
    accept: JoinHandle<()>,
}

#[derive(Debug, Default)]
struct Counters {
    accepted: AtomicUsize,
    open: AtomicUsize,
}

impl Proxy {
    /// Listens on 127.0.0.1:0 and forwards to `target`, starting in [`Mode::Forward`].
    pub async fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy");
        let addr = listener.local_addr().expect("proxy address");
        let (state, receiver) = watch::channel(State {
            mode: Mode::Forward,
            reset_epoch: 0,
            strand_epoch: 0,
        });
        let counters = Arc::new(Counters::default());
        let accept = tokio::spawn(accept_loop(listener, target, receiver, counters.clone()));
        Proxy {
            addr,
            target,
            state,
            counters,
            accept,
        }
    }

    /// A proxy in front of the server of the Postgres URL `url` (`postgres://…@host:port/…`),
    /// and `url` pointing at the proxy instead.
    pub async fn in_front_of(url: &str) -> (Proxy, String) {
        let (host, port) = host_and_port(url);
        let target = tokio::net::lookup_host((host.as_str(), port))
            .await
            .expect("resolve the database host")
            .next()
            .expect("the database host has an address");
        let proxy = Proxy::start(target).await;
        let proxied = proxy.url_for(url);
        (proxy, proxied)
    }

    /// Where the proxy listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where it forwards to.
    pub fn target(&self) -> SocketAddr {
        self.target
    }

    /// `url` with its host and port replaced by the proxy's.
    pub fn url_for(&self, url: &str) -> String {
        let (start, end) = host_span(url);
        format!("{}{}{}", &url[..start], self.addr, &url[end..])
    }

    /// Switches the mode; takes effect at once for open and new connections.
    /// [`Mode::Reset`] resets every connection open now, and every new one while it lasts.
    pub fn set_mode(&self, mode: Mode) {
        self.state.send_modify(|state| {
            state.mode = mode;
            if mode == Mode::Reset {
                state.reset_epoch += 1;
            }
        });
    }

    /// The current mode.
    pub fn mode(&self) -> Mode {
        self.state.borrow().mode
    }

    /// Resets (RST) the connections open now, whatever the mode; new ones follow the mode.
    pub fn reset_open_connections(&self) {
        self.state.send_modify(|state| state.reset_epoch += 1);
    }

    /// The connections open now go silent for good, as if their network path had died
    /// without a word (a host gone, a NAT or firewall that dropped their state): nothing more
    /// passes either way, the bytes in flight are lost, and the sockets stay open until a
    /// reset or the proxy's drop. New connections follow the mode.
    pub fn strand_open_connections(&self) {
        self.state.send_modify(|state| state.strand_epoch += 1);
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.counters.accepted.load(Ordering::SeqCst)
    }

    /// Connections open now (accepted and not yet closed by the proxy).
    pub fn open(&self) -> usize {
        self.counters.open.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        // Aborting the accept task drops its JoinSet, which aborts every connection task.
        self.accept.abort();
    }
}

/// The byte range of `host:port` in a `scheme://[user[:password]@]host:port/...` URL.
fn host_span(url: &str) -> (usize, usize) {
    let start = url.find("://").expect("a URL with a scheme") + 3;
    let authority_end = url[start..]
        .find(['/', '?'])
        .map_or(url.len(), |end| start + end);
    let host_start = url[start..authority_end]
        .rfind('@')
        .map_or(start, |at| start + at + 1);
    (host_start, authority_end)
}

fn host_and_port(url: &str) -> (String, u16) {
    let (start, end) = host_span(url);
    let authority = &url[start..end];
    let (host, port) = match authority.strip_prefix('[') {
        // [v6-address] or [v6-address]:port
        Some(bracketed) => {
            let (host, rest) = bracketed.split_once(']').expect("a closing bracket");
            (host, rest.strip_prefix(':'))
        }
        None => match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        },
    };
    let port = port.map_or(5432, |port| port.parse().expect("a numeric port"));
    (host.to_owned(), port)
}

async fn accept_loop(
    listener: TcpListener,
    target: SocketAddr,
    state: watch::Receiver<State>,
    counters: Arc<Counters>,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                counters.accepted.fetch_add(1, Ordering::SeqCst);
                counters.open.fetch_add(1, Ordering::SeqCst);
                let counters = counters.clone();
                let state = state.clone();
                connections.spawn(async move {
                    let _open = OpenGuard(counters);
                    serve(stream, target, state).await;
                });
            }
            // Reap finished connections so the set does not grow.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

struct OpenGuard(Arc<Counters>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::SeqCst);
    }
}

/// How a connection's forwarding ended.
enum End {
    /// Both sides closed, or one failed: close the other normally.
    Closed,
    /// Reset requested.
    Reset,
    /// Stranded: keep the sockets, pass nothing.
    Stranded,
    /// The proxy is gone.
    Gone,
}

/// Closes `stream` with an RST instead of a FIN.
fn reset(stream: TcpStream) {
    let _ = stream.set_zero_linger();
    drop(stream);
}

async fn serve(mut client: TcpStream, target: SocketAddr, mut state: watch::Receiver<State>) {
    let opened = *state.borrow_and_update();
    // A connection accepted while blackholed reaches the target only once bytes flow again.
    loop {
        let now = *state.borrow_and_update();
        if now.mode == Mode::Reset || now.reset_epoch != opened.reset_epoch {
            return reset(client);
        }
        if now.strand_epoch != opened.strand_epoch {
            return hold_until_reset(client, None, state, opened).await;
        }
        if now.mode != Mode::Blackhole {
            break;
        }
        if state.changed().await.is_err() {
            return;
        }
    }
    let Ok(mut upstream) = TcpStream::connect(target).await else {
        // Nothing listens there (the server is down): the client sees its connection reset.
        return reset(client);
    };
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let end = {
        let (client_read, client_write) = client.split();
        let (upstream_read, upstream_write) = upstream.split();
        let (to_upstream, to_client) = (state.clone(), state.clone());
        tokio::select! {
            _ = async {
                tokio::try_join!(
                    pump(client_read, upstream_write, to_upstream),
                    pump(upstream_read, client_write, to_client),
                )
            } => End::Closed,
            end = until_ended(&mut state, opened) => end,
        }
    };
    match end {
        End::Closed | End::Gone => {}
        End::Reset => {
            reset(client);
            reset(upstream);
        }
        End::Stranded => hold_until_reset(client, Some(upstream), state, opened).await,
    }
}

/// Waits for a reset or a strand of this connection, or for the proxy to go away.
async fn until_ended(state: &mut watch::Receiver<State>, opened: State) -> End {
    loop {
        {
            let now = *state.borrow_and_update();
            if now.mode == Mode::Reset || now.reset_epoch != opened.reset_epoch {
                return End::Reset;
            }
            if now.strand_epoch != opened.strand_epoch {
                return End::Stranded;
            }
        }
        if state.changed().await.is_err() {
            return End::Gone;
        }
    }
}

/// Keeps a stranded connection open and silent until it is reset or the proxy goes.
async fn hold_until_reset(
    client: TcpStream,
    upstream: Option<TcpStream>,
    mut state: watch::Receiver<State>,
    opened: State,
) {
    loop {
        let now = *state.borrow_and_update();
        if now.mode == Mode::Reset || now.reset_epoch != opened.reset_epoch {
            reset(client);
            if let Some(upstream) = upstream {
                reset(upstream);
            }
            return;
        }
        if state.changed().await.is_err() {
            return;
        }
    }
}

/// Copies `from` to `to` in chunks, each delayed by the mode's latency when it was read and
/// held while the mode is not forwarding. Ends on end of stream (passed on as a FIN) or an
/// error.
async fn pump(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
    state: watch::Receiver<State>,
) -> std::io::Result<()> {
    // Bounded: a blackholed connection stops reading once this many chunks wait.
    let (chunks, mut waiting) = mpsc::channel::<(Instant, Vec<u8>)>(64);
    let read_state = state.clone();
    let reader = async move {
        let mut buffer = vec![0u8; 16 * 1024];
        loop {
            let read = from.read(&mut buffer).await?;
            if read == 0 {
                return Ok::<(), std::io::Error>(());
            }
            let latency = match read_state.borrow().mode {
                Mode::Delay(latency) => latency,
                _ => Duration::ZERO,
            };
            if chunks
                .send((Instant::now() + latency, buffer[..read].to_vec()))
                .await
                .is_err()
            {
                return Ok(());
            }
        }
    };
    let mut write_state = state;
    let writer = async move {
        while let Some((due, chunk)) = waiting.recv().await {
            tokio::time::sleep_until(due).await;
            let forwarding = write_state
                .wait_for(|now| matches!(now.mode, Mode::Forward | Mode::Delay(_)))
                .await
                .is_ok();
            if !forwarding {
                return Ok(());
            }
            to.write_all(&chunk).await?;
        }
        to.shutdown().await
    };
    tokio::try_join!(reader, writer).map(drop)
}
