//! The gateway side of the link (CONTRACT.md §5): a WebSocket server at `/link`
//! that authenticates edges, greets each with `ready`, fans every event out to all
//! of them, and runs their commands at most once per `requestId`.
//!
//! # Threads
//!
//! - one acceptor, sleeping in `epoll` on the listener;
//! - one thread per connection, which does the upgrade (bounded by a handshake
//!   deadline, so a slowloris client cannot hold it) and then drives its
//!   [`WsConn`]: it writes whatever is queued for the edge (broadcasts, replies) the
//!   moment a [`Waker`] fires, reads commands, and answers pings;
//! - a small pool of command workers. A command never runs on the connection
//!   thread, so a slow REST call does not stop that edge's reads or writes.
//!   Commands are sharded over the workers by channel (guild for voice), so two
//!   messages to one channel are posted in the order they arrived; history
//!   reads (`fetchMessages`) keep no order and are spread by `requestId`.
//!
//! # Fan-out and the ready snapshot
//!
//! An event is encoded once into an `Arc<str>` and queued to every edge's bounded
//! queue under the fan-out lock. A new edge takes its `ready` snapshot and joins
//! the fan-out under that same lock, so between its snapshot and its live events it
//! neither misses nor doubles one. An edge whose queue or socket buffer is full is
//! hopelessly behind: it is closed with 1013 and reconnects.
//!
//! Lock order: the `ready` callback runs under the fan-out lock, so never call
//! [`LinkServer::broadcast`] while holding a lock that `ready` takes. To change the
//! state `ready` reads and broadcast the change as one step, use
//! [`Broadcaster::broadcast_with`].
//!
//! # Upgrade answers
//!
//! | request | answer |
//! |---|---|
//! | a path other than `/link` | 404 |
//! | `/link` without `Authorization: Bearer <LINK_TOKEN>` or with a wrong one | 401 (logged without the token) |
//! | `X-Gateway-Version` present with a major other than 1 | 400: frames of another major cannot be read |
//! | `/link` without the WebSocket upgrade headers | 426 |
//! | right token | 101, then `ready` |
//! | a plain `GET` (no upgrade headers) of a path the [`PlainHandler`] answers | its answer, then close (the gateway's `/metrics`, `/healthz`, `/readyz`) |
//!
//! Plain HTTP answers, the hook included, live in `link_server/plain.rs`; they
//! pass the same deadline and head limit as an upgrade.
//!
//! # Commands
//!
//! Every command frame gets exactly one reply frame (`ack`, `rateLimited` or
//! `error`, with the command's `requestId` and `traceId`): a frame that cannot be
//! read gets `error` `malformed_frame`; a command whose `requestId` ran before gets
//! the first reply again ([`ReplyCache`]); when its worker's queue is full it gets
//! `error` `gateway_busy` and is not remembered, so a re-send runs it. A running
//! command is never timed out here: the executor must return (the REST client has
//! its own timeouts), since forgetting it could run it twice.
//!
//! # Limits
//!
//! At most `max_connections` sockets are served at once, each upgrade has one
//! deadline for the whole request (trickled bytes do not extend it) and a 16 KiB
//! head, frames are at most 1 MiB (a larger one closes that edge with 1009), and
//! an edge holds at most `edge_queue` frames and `edge_write_buffer` bytes unsent.
//!
//! # Observing
//!
//! A [`LinkObserver`] hears the edge count, de-duplicated commands and token
//! refusals as they happen (for metrics); [`LinkServer::stats`] has them all too.

use std::cell::Cell;
use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use log::{debug, info, warn};
use parking_lot::{Condvar, Mutex};
use polling::{Event, Events, Poller};
use relay_protocol::dedupe::{self, Begin, ReplyCache};
use relay_protocol::frame::{parse_command, GatewayCommand, GatewayEvent, Reply, TraceMeta};
use relay_protocol::ids;
use relay_protocol::payload::{
    Ack, CommandBody, ErrorData, EventBody, RateLimited, Ready, VoiceSnapshot,
};
use relay_protocol::secret::Secret;
use tungstenite::error::ProtocolError;
use tungstenite::handshake::server::{Request, Response};
use tungstenite::protocol::Role;
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Error as WsError, HandshakeError, WebSocket};

use crate::ws_io::{self, Incoming, Waker, WsConn};

mod plain;
pub mod test_peer;

use plain::{Answer, Refusal};
pub use plain::{PlainHandler, PlainResponse};

/// The only path the link is served on.
pub const LINK_PATH: &str = "/link";
/// Frames queued per edge by default before it counts as hopelessly behind.
pub const DEFAULT_EDGE_QUEUE: usize = 65_536;
/// Bytes a socket may hold unsent by default before its edge counts as hopelessly behind.
pub const DEFAULT_EDGE_WRITE_BUFFER: usize = 16 * 1024 * 1024;
/// Default time an upgrade request has to arrive and be answered.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Default command workers.
pub const DEFAULT_WORKERS: usize = 8;
/// Default commands waiting per worker.
pub const DEFAULT_WORKER_QUEUE: usize = 1024;
/// Default connections served at once (edges are few; the rest is noise or attack).
pub const DEFAULT_MAX_CONNECTIONS: usize = 256;

/// Longest request head read before the upgrade is refused.
const MAX_REQUEST_HEAD_BYTES: usize = 16 * 1024;
/// Head bytes kept to answer non-upgrade requests (only the request line is used).
const HEAD_KEPT_BYTES: usize = 1024;
/// How often an idle connection or the acceptor re-checks for shutdown, should a
/// wake-up be lost.
const IDLE_WAIT: Duration = Duration::from_secs(1);
/// Frames read per turn before the connection writes again, so a flood of
/// commands cannot starve broadcasts.
const READ_BUDGET: usize = 64;

/// Close codes the gateway sends.
const CLOSE_GOING_AWAY: u16 = 1001;
const CLOSE_PROTOCOL: u16 = 1002;
const CLOSE_TOO_BIG: u16 = 1009;
const CLOSE_TRY_AGAIN: u16 = 1013;

/// Runs the commands edges send; the gateway's Discord REST client implements it.
pub trait CommandExecutor: Send + Sync + 'static {
    /// Runs one command (at most once per requestId) and returns its reply.
    fn execute(&self, command: &GatewayCommand) -> Reply;
}

/// The voice snapshot sent in each edge's `ready` frame. Runs under the fan-out lock.
pub type ReadyFn = Arc<dyn Fn() -> VoiceSnapshot + Send + Sync>;

/// Hears what the link server does, for metrics. Every method has a no-op
/// default; each must be quick and must not call back into the server.
pub trait LinkObserver: Send + Sync + 'static {
    /// The edges in the fan-out are now `edges`. Called under the fan-out lock
    /// on every change, so the calls arrive in order and a count read after
    /// [`LinkServer::wait_for_edges`] returns is already this one.
    fn on_edges(&self, _edges: usize) {}
    /// A command was answered as a re-send of an earlier `requestId` (from the
    /// reply cache, or by the reply of the run still going).
    fn on_deduplicated(&self) {}
    /// An upgrade was refused for a missing or wrong token.
    fn on_auth_failure(&self) {}
}

/// An observer that hears nothing.
pub struct NoLinkObserver;
impl LinkObserver for NoLinkObserver {}

/// How the link server runs.
#[derive(Clone)]
pub struct LinkServerConfig {
    /// Listen address (`GATEWAY_BIND`).
    pub bind: SocketAddr,
    /// The bearer token edges must present (`LINK_TOKEN`); compared in constant time.
    pub token: String,
    /// Finished replies kept for re-sends: (capacity, ttl).
    pub reply_cache: (usize, Duration),
    /// Command workers.
    pub workers: usize,
    /// Commands waiting per worker before more for it are answered `gateway_busy`.
    pub worker_queue: usize,
    /// Frames queued per edge before it is closed as hopelessly behind.
    pub edge_queue: usize,
    /// Unsent bytes per edge socket before it is closed as hopelessly behind
    /// (at least 256 KiB).
    pub edge_write_buffer: usize,
    /// Time an upgrade has to complete.
    pub handshake_timeout: Duration,
    /// Connections (upgrading or upgraded) served at once; more are closed at once,
    /// so a flood of sockets cannot spawn unbounded threads.
    pub max_connections: usize,
    /// Hears the edge count, de-duplications and token refusals.
    pub observer: Arc<dyn LinkObserver>,
    /// Answers plain `GET`s on the link port (none: every such request is 404).
    pub plain: Option<PlainHandler>,
    /// Gives the guild models for each new edge's `ready` (`ACCESS=discord`
    /// edges need them); called under the same lock as `ready`.
    pub ready_guilds: Option<ReadyGuildsFn>,
    /// With Redis (CONTRACT.md §10): `false` while this gateway stands by, and
    /// upgrades with the right token are then answered 503. `None`: always active.
    pub active: Option<Arc<AtomicBool>>,
    /// With `REDIS_URL`: gives each broadcast event its shared id (`meta.eventId`)
    /// and keeps the encoded frame (docs/redis.md). None: edges number events.
    pub event_ids: Option<Arc<dyn EventStamper>>,
}

/// Assigns the ids every edge gives events (CONTRACT.md §10). Called under the
/// fan-out lock, in broadcast order, for each event edges publish (not for
/// link-only frames): keep both calls to bookkeeping, no IO.
pub trait EventStamper: Send + Sync {
    /// The id of the next event.
    fn next_id(&self) -> relay_protocol::replay::EventId;
    /// The event as it was sent, with that id in `meta.eventId`.
    fn sent(&self, id: relay_protocol::replay::EventId, frame: &Arc<str>);
}

/// Gives each forwarded guild's permission model for a `ready` frame.
pub type ReadyGuildsFn = Arc<dyn Fn() -> Vec<serde_json::Value> + Send + Sync>;

impl LinkServerConfig {
    /// The defaults for `bind` and `token`.
    pub fn new(bind: SocketAddr, token: impl Into<String>) -> Self {
        LinkServerConfig {
            bind,
            token: token.into(),
            reply_cache: (dedupe::DEFAULT_CAPACITY, dedupe::DEFAULT_TTL),
            workers: DEFAULT_WORKERS,
            worker_queue: DEFAULT_WORKER_QUEUE,
            edge_queue: DEFAULT_EDGE_QUEUE,
            edge_write_buffer: DEFAULT_EDGE_WRITE_BUFFER,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            observer: Arc::new(NoLinkObserver),
            plain: None,
            ready_guilds: None,
            active: None,
            event_ids: None,
        }
    }
}

impl std::fmt::Debug for LinkServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkServerConfig")
            .field("bind", &self.bind)
            .field("token", &"<redacted>")
            .field("reply_cache", &self.reply_cache)
            .field("workers", &self.workers)
            .field("worker_queue", &self.worker_queue)
            .field("edge_queue", &self.edge_queue)
            .field("edge_write_buffer", &self.edge_write_buffer)
            .field("handshake_timeout", &self.handshake_timeout)
            .field("max_connections", &self.max_connections)
            .field("plain", &self.plain.as_ref().map(|_| "<handler>"))
            .finish_non_exhaustive()
    }
}

/// A snapshot of the server's counters (for metrics and tests).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Edges connected now.
    pub edges: usize,
    /// Edges accepted since start.
    pub edges_accepted: u64,
    /// Well-formed command frames received.
    pub commands_received: u64,
    /// Commands the executor ran.
    pub commands_executed: u64,
    /// Commands answered from the reply cache or by waiting for the running one.
    pub deduplicated: u64,
    /// Upgrades refused with 401.
    pub auth_failures: u64,
    /// Upgrades refused otherwise (404, 400, 426), abandoned (timeout, junk), or
    /// connections closed at once because `max_connections` were open.
    pub rejected_upgrades: u64,
    /// Frames that could not be read as commands (answered `malformed_frame`).
    pub malformed: u64,
    /// Edges closed because they fell hopelessly behind.
    pub dropped_slow: u64,
    /// Commands answered `gateway_busy` because their worker's queue was full.
    pub busy: u64,
    /// Events broadcast.
    pub broadcasts: u64,
    /// Plain `GET`s the [`PlainHandler`] answered (not counted as refused upgrades).
    pub plain_answered: u64,
    /// Threads this server runs now (acceptor, workers, connections).
    pub threads: usize,
}

#[derive(Default)]
struct Counters {
    edges_accepted: AtomicU64,
    commands: AtomicU64,
    executed: AtomicU64,
    deduplicated: AtomicU64,
    auth_failures: AtomicU64,
    rejected_upgrades: AtomicU64,
    malformed: AtomicU64,
    dropped_slow: AtomicU64,
    busy: AtomicU64,
    broadcasts: AtomicU64,
    plain_answered: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Where one edge's frames go: its queue and the waker of its thread.
struct EdgeOut {
    peer: SocketAddr,
    tx: Sender<Arc<str>>,
    waker: Waker,
    /// 0 while open; otherwise the close code its thread must send and go.
    close: AtomicU16,
}

impl EdgeOut {
    /// Asks the edge's thread to close with `code`; true if this was the first ask.
    fn request_close(&self, code: u16) -> bool {
        let first = self
            .close
            .compare_exchange(0, code, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        self.waker.wake();
        first
    }

    /// Queues a frame; false if the queue is full (the edge is then closed).
    fn push(&self, frame: Arc<str>) -> Result<(), TrySendError<Arc<str>>> {
        let result = self.tx.try_send(frame);
        self.waker.wake();
        result
    }
}

/// Whom to answer when a command finishes.
struct Waiter {
    edge: Arc<EdgeOut>,
    trace_id: String,
}

struct Fanout {
    edges: HashMap<u64, Arc<EdgeOut>>,
    /// Set by shutdown: nobody joins any more.
    closed: bool,
    /// While open: every event broadcast, for edges that join later in the
    /// window (see [`Broadcaster::open_backlog`]).
    backlog: Option<Backlog>,
}

/// Events of a new leadership term, kept for the edges still finding their
/// way to this gateway.
struct Backlog {
    until: Instant,
    max: usize,
    frames: VecDeque<Arc<str>>,
}

struct Shared {
    token: Secret,
    edge_queue: usize,
    ws_config: tungstenite::protocol::WebSocketConfig,
    handshake_timeout: Duration,
    max_connections: usize,
    /// Connection threads alive now.
    connections: Arc<AtomicUsize>,
    executor: Arc<dyn CommandExecutor>,
    ready: ReadyFn,
    ready_guilds: Option<ReadyGuildsFn>,
    active: Option<Arc<AtomicBool>>,
    event_ids: Option<Arc<dyn EventStamper>>,
    observer: Arc<dyn LinkObserver>,
    plain: Option<PlainHandler>,
    fanout: Mutex<Fanout>,
    fanout_changed: Condvar,
    cache: Mutex<ReplyCache<Waiter>>,
    /// One queue per worker; taken (closed) at shutdown.
    jobs: Mutex<Option<Vec<Sender<GatewayCommand>>>>,
    counters: Counters,
    threads: Arc<AtomicUsize>,
    next_edge: AtomicU64,
    stopping: AtomicBool,
    /// Connection threads, pruned by the acceptor, joined at shutdown.
    conn_threads: Mutex<Vec<JoinHandle<()>>>,
    /// Sockets still in their upgrade, so shutdown can cut them short.
    handshaking: Mutex<HashMap<u64, TcpStream>>,
}

/// The gateway's link server. Dropping it shuts it down.
pub struct LinkServer {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
    acceptor_poller: Arc<Poller>,
    acceptor: Option<JoinHandle<()>>,
    workers: Vec<JoinHandle<()>>,
    threads: Arc<AtomicUsize>,
}

/// A cheap handle that broadcasts to the edges of a running [`LinkServer`]; it does
/// not keep the server alive (hand it to the Discord driver or a test executor).
#[derive(Clone)]
pub struct Broadcaster(Weak<Shared>);

impl Broadcaster {
    /// Encodes `event` once and queues it to every connected edge. Returns the
    /// number of edges it was queued to (0 once the server is gone).
    pub fn broadcast(&self, event: &GatewayEvent) -> usize {
        match self.0.upgrade() {
            Some(shared) => {
                let mut fanout = shared.fanout.lock();
                let frame = shared.encode(event);
                shared.fan_out(&mut fanout, frame)
            }
            None => 0,
        }
    }

    /// Runs `update` under the fan-out lock and broadcasts the event it returns, so
    /// a state change (the voice cache `ready` reads) and its event are one step for
    /// edges connecting at the same time. Returns the edges it was queued to.
    pub fn broadcast_with(&self, update: impl FnOnce() -> Option<GatewayEvent>) -> usize {
        let Some(shared) = self.0.upgrade() else {
            return 0;
        };
        let mut fanout = shared.fanout.lock();
        match update() {
            Some(event) => {
                let frame = shared.encode(&event);
                shared.fan_out(&mut fanout, frame)
            }
            None => 0,
        }
    }

    /// [`Broadcaster::broadcast_with`] for an update that yields several events (a
    /// voice move is a leave and a join): all of them are queued, in order, before
    /// any edge can take a snapshot. `update` runs even when the server is gone, so
    /// the state it changes never skips a step. Returns the frames queued.
    pub fn broadcast_all_with(&self, update: impl FnOnce() -> Vec<GatewayEvent>) -> usize {
        let Some(shared) = self.0.upgrade() else {
            update();
            return 0;
        };
        let mut fanout = shared.fanout.lock();
        update()
            .iter()
            .map(|event| {
                let frame = shared.encode(event);
                shared.fan_out(&mut fanout, frame)
            })
            .sum()
    }

    /// Closes every edge's link (they reconnect), as [`LinkServer::kick_all`]:
    /// a gateway stepping down to standby sends nothing more to anyone.
    pub fn close_all(&self) {
        if let Some(shared) = self.0.upgrade() {
            let mut fanout = shared.fanout.lock();
            for edge in fanout.edges.values() {
                edge.request_close(CLOSE_GOING_AWAY);
            }
            fanout.edges.clear();
            shared.edges_changed(&fanout);
        }
    }

    /// Keeps every event broadcast from now for `window` (at most `max`) and
    /// sends them, after `ready`, to each edge that joins within the window.
    /// A gateway that takes over (CONTRACT.md §10) opens one before it
    /// RESUMEs: Discord replays what it missed at once, while the edges are
    /// still moving over from the gateway that died; this way those replayed
    /// events reach them too. An edge that rejoins within the window gets
    /// them again (its `requestId`-free events carry Discord's ids).
    pub fn open_backlog(&self, window: Duration, max: usize) {
        if let Some(shared) = self.0.upgrade() {
            shared.fanout.lock().backlog = Some(Backlog {
                until: Instant::now() + window,
                max,
                frames: VecDeque::new(),
            });
        }
    }

    /// Whether the server still runs (or any of its threads is still alive).
    pub fn is_alive(&self) -> bool {
        self.0.strong_count() > 0
    }
}

impl LinkServer {
    /// Binds `cfg.bind` and starts serving. `executor` runs commands; `ready`
    /// gives the voice snapshot for each new edge's `ready` frame.
    pub fn start(
        cfg: LinkServerConfig,
        executor: Arc<dyn CommandExecutor>,
        ready: ReadyFn,
    ) -> io::Result<LinkServer> {
        let listener = TcpListener::bind(cfg.bind)?;
        listener.set_nonblocking(true)?;
        let local_addr = listener.local_addr()?;
        let acceptor_poller = Arc::new(Poller::new()?);
        // SAFETY: the listener moves into the acceptor thread, which deletes it from
        // the poller before dropping it.
        unsafe { acceptor_poller.add(&listener, Event::readable(0))? };

        let threads = Arc::new(AtomicUsize::new(0));
        let workers = cfg.workers.max(1);
        let mut job_txs = Vec::with_capacity(workers);
        let mut job_rxs = Vec::with_capacity(workers);
        for _ in 0..workers {
            let (tx, rx) = crossbeam_channel::bounded(cfg.worker_queue.max(1));
            job_txs.push(tx);
            job_rxs.push(rx);
        }
        // Must exceed tungstenite's 128 KiB write buffer (its config asserts it).
        let write_buffer = cfg.edge_write_buffer.max(256 * 1024);
        let shared = Arc::new(Shared {
            token: Secret::new(cfg.token),
            edge_queue: cfg.edge_queue.max(1),
            ws_config: ws_io::ws_config().max_write_buffer_size(write_buffer),
            handshake_timeout: cfg.handshake_timeout,
            max_connections: cfg.max_connections.max(1),
            connections: Arc::new(AtomicUsize::new(0)),
            executor,
            ready,
            ready_guilds: cfg.ready_guilds,
            active: cfg.active,
            event_ids: cfg.event_ids,
            observer: cfg.observer,
            plain: cfg.plain,
            fanout: Mutex::new(Fanout {
                edges: HashMap::new(),
                closed: false,
                backlog: None,
            }),
            fanout_changed: Condvar::new(),
            cache: Mutex::new(ReplyCache::new(cfg.reply_cache.0, cfg.reply_cache.1)),
            jobs: Mutex::new(Some(job_txs)),
            counters: Counters::default(),
            threads: threads.clone(),
            next_edge: AtomicU64::new(1),
            stopping: AtomicBool::new(false),
            conn_threads: Mutex::new(Vec::new()),
            handshaking: Mutex::new(HashMap::new()),
        });

        let mut server = LinkServer {
            shared: shared.clone(),
            local_addr,
            acceptor_poller: acceptor_poller.clone(),
            acceptor: None,
            workers: Vec::with_capacity(workers),
            threads,
        };
        for (i, rx) in job_rxs.into_iter().enumerate() {
            let shared = shared.clone();
            // On error `server` drops here and stops what already started.
            server.workers.push(spawn_counted(
                &server.threads,
                format!("link-worker-{i}"),
                move || run_worker(&shared, &rx),
            )?);
        }
        let acceptor_shared = shared.clone();
        server.acceptor = Some(spawn_counted(
            &server.threads,
            "link-acceptor".into(),
            move || run_acceptor(&acceptor_shared, listener, &acceptor_poller),
        )?);
        info!("link: serving edges on ws://{local_addr}{LINK_PATH}");
        Ok(server)
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// A handle that broadcasts without keeping the server alive.
    pub fn broadcaster(&self) -> Broadcaster {
        Broadcaster(Arc::downgrade(&self.shared))
    }

    /// Encodes `event` once and queues it to every connected edge; returns the
    /// number of edges it was queued to.
    pub fn broadcast(&self, event: &GatewayEvent) -> usize {
        let frame: Arc<str> = event.to_json().into();
        self.shared.fan_out(&mut self.shared.fanout.lock(), frame)
    }

    /// Edges connected now (past `ready`).
    pub fn edges(&self) -> usize {
        self.shared.fanout.lock().edges.len()
    }

    /// Waits until exactly `n` edges are connected; false on timeout.
    pub fn wait_for_edges(&self, n: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut fanout = self.shared.fanout.lock();
        while fanout.edges.len() != n {
            if self
                .shared
                .fanout_changed
                .wait_until(&mut fanout, deadline)
                .timed_out()
            {
                return fanout.edges.len() == n;
            }
        }
        true
    }

    /// The counters now.
    pub fn stats(&self) -> LinkStats {
        let c = &self.shared.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        LinkStats {
            edges: self.edges(),
            edges_accepted: get(&c.edges_accepted),
            commands_received: get(&c.commands),
            commands_executed: get(&c.executed),
            deduplicated: get(&c.deduplicated),
            auth_failures: get(&c.auth_failures),
            rejected_upgrades: get(&c.rejected_upgrades),
            malformed: get(&c.malformed),
            dropped_slow: get(&c.dropped_slow),
            busy: get(&c.busy),
            broadcasts: get(&c.broadcasts),
            plain_answered: get(&c.plain_answered),
            threads: self.threads.load(Ordering::Acquire),
        }
    }

    /// Closes every edge connection with 1001 (they reconnect); tests use it to
    /// drop the link.
    pub fn kick_all(&self) {
        let mut fanout = self.shared.fanout.lock();
        for edge in fanout.edges.values() {
            edge.request_close(CLOSE_GOING_AWAY);
        }
        fanout.edges.clear();
        self.shared.edges_changed(&fanout);
    }

    /// Stops accepting, closes every edge, lets running commands finish, and joins
    /// every thread. The port is free when this returns.
    pub fn shutdown(mut self) {
        self.stop();
    }

    /// Idempotent; also cleans up after a `start` that failed half-way.
    fn stop(&mut self) {
        let shared = &self.shared;
        if shared.stopping.swap(true, Ordering::AcqRel) {
            return;
        }
        let _ = self.acceptor_poller.notify();
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        {
            let mut fanout = shared.fanout.lock();
            fanout.closed = true;
            for edge in fanout.edges.values() {
                edge.request_close(CLOSE_GOING_AWAY);
            }
            fanout.edges.clear();
            shared.edges_changed(&fanout);
        }
        for (_, tcp) in shared.handshaking.lock().drain() {
            let _ = tcp.shutdown(Shutdown::Both);
        }
        let conns = std::mem::take(&mut *shared.conn_threads.lock());
        for handle in conns {
            let _ = handle.join();
        }
        // Closing the queues ends each worker once it has run what it holds.
        drop(shared.jobs.lock().take());
        for handle in self.workers.drain(..) {
            let _ = handle.join();
        }
        info!("link: server on {} stopped", self.local_addr);
    }
}

impl Drop for LinkServer {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Shared {
    /// Encodes a broadcast event once; with shared ids, stamps it first. Runs
    /// under the fan-out lock, so ids follow the order edges receive events.
    fn encode(&self, event: &GatewayEvent) -> Arc<str> {
        let Some(stamper) = self
            .event_ids
            .as_ref()
            .filter(|_| !event.body.is_link_only())
        else {
            return event.to_json().into();
        };
        let id = stamper.next_id();
        let mut stamped = event.clone();
        stamped.meta.extra.get_mut().event_id = Some(id);
        let frame: Arc<str> = stamped.to_json().into();
        stamper.sent(id, &frame);
        frame
    }

    /// Queues `frame` to every edge; closes edges whose queue is full.
    fn fan_out(&self, fanout: &mut Fanout, frame: Arc<str>) -> usize {
        bump(&self.counters.broadcasts);
        if let Some(backlog) = &mut fanout.backlog {
            if Instant::now() >= backlog.until {
                fanout.backlog = None;
            } else if backlog.frames.len() < backlog.max {
                backlog.frames.push_back(frame.clone());
            }
        }
        let mut gone = Vec::new();
        let mut sent = 0;
        for (id, edge) in &fanout.edges {
            match edge.push(frame.clone()) {
                Ok(()) => sent += 1,
                Err(TrySendError::Full(_)) => {
                    self.lagging(edge);
                    gone.push(*id);
                }
                Err(TrySendError::Disconnected(_)) => gone.push(*id),
            }
        }
        if !gone.is_empty() {
            for id in gone {
                fanout.edges.remove(&id);
            }
            self.edges_changed(fanout);
        }
        sent
    }

    /// After every change of the fan-out's members, under its lock: wakes
    /// [`LinkServer::wait_for_edges`] and tells the observer.
    fn edges_changed(&self, fanout: &Fanout) {
        self.fanout_changed.notify_all();
        self.observer.on_edges(fanout.edges.len());
    }

    fn lagging(&self, edge: &EdgeOut) {
        if edge.request_close(CLOSE_TRY_AGAIN) {
            bump(&self.counters.dropped_slow);
            warn!(
                "link: edge {} fell hopelessly behind; closing it so it reconnects",
                edge.peer
            );
        }
    }

    /// Answers one waiter through its edge's queue.
    fn deliver(&self, waiter: &Waiter, request_id: &str, reply: &Reply) {
        let frame: Arc<str> = reply_event(request_id, &waiter.trace_id, reply)
            .to_json()
            .into();
        if let Err(TrySendError::Full(_)) = waiter.edge.push(frame) {
            // Its re-send after the reconnect is answered from the cache.
            self.lagging(&waiter.edge);
        }
    }

    /// Hands a command to its worker; answers `gateway_busy` if that is impossible.
    fn submit(&self, command: GatewayCommand) {
        let request_id = command.request_id().to_owned();
        let refused = {
            let jobs = self.jobs.lock();
            match jobs.as_ref() {
                Some(queues) => {
                    // A read has no order to keep: spread reads of one busy
                    // channel over every worker instead of queueing them
                    // behind one (and behind that channel's posts).
                    let key = match &command.body {
                        CommandBody::FetchMessages(_) => command.request_id(),
                        body => body.limit_key(),
                    };
                    let shard = shard_of(key, queues.len());
                    queues[shard].try_send(command).is_err()
                }
                None => true,
            }
        };
        if refused {
            bump(&self.counters.busy);
            warn!("link: command {request_id} refused: its command worker is saturated");
            let busy = Reply::Error {
                code: "gateway_busy".into(),
                message: "the gateway is busy; retry shortly".into(),
            };
            // Not cached: a re-send must get a real run.
            let waiters = self.cache.lock().abandon(&request_id);
            for waiter in &waiters {
                self.deliver(waiter, &request_id, &busy);
            }
        }
    }
}

fn shard_of(key: &str, shards: usize) -> usize {
    let mut h = DefaultHasher::new();
    key.hash(&mut h);
    (h.finish() % shards.max(1) as u64) as usize
}

/// Spawns a thread whose life is counted in `threads`.
fn spawn_counted(
    threads: &Arc<AtomicUsize>,
    name: String,
    body: impl FnOnce() + Send + 'static,
) -> io::Result<JoinHandle<()>> {
    let alive = Counted::new(threads);
    thread::Builder::new().name(name).spawn(move || {
        let _alive = alive;
        body();
    })
    // On a spawn error the closure, and with it `alive`, is dropped: the count is undone.
}

/// One unit of a live count, given back when dropped.
struct Counted(Arc<AtomicUsize>);

impl Counted {
    fn new(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::AcqRel);
        Counted(count.clone())
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

fn run_worker(shared: &Shared, jobs: &Receiver<GatewayCommand>) {
    for command in jobs {
        let request_id = command.request_id().to_owned();
        let started = Instant::now();
        let reply = catch_unwind(AssertUnwindSafe(|| shared.executor.execute(&command)))
            .unwrap_or_else(|_| {
                warn!(
                    "link: executor panicked on {} (requestId={request_id}, traceId={})",
                    command.body.type_name(),
                    command.meta.trace_id
                );
                Reply::Error {
                    code: "internal_error".into(),
                    message: "the gateway failed to run the command".into(),
                }
            });
        bump(&shared.counters.executed);
        debug!(
            "link: ran {} requestId={request_id} traceId={} latencyMs={}",
            command.body.type_name(),
            command.meta.trace_id,
            started.elapsed().as_millis()
        );
        // The entry completes even if the sender's connection died, so its re-send
        // after a reconnect is answered from the cache.
        // A rateLimited reply means the command did not run: it is not kept, so
        // the edge's retry with the same requestId runs it rather than getting the
        // same refusal back forever.
        // Reads (`messages`) are not kept either: running one again is
        // harmless, and keeping 10,000 of them could hold gigabytes.
        let waiters = if matches!(reply, Reply::RateLimited { .. } | Reply::Messages(_)) {
            shared.cache.lock().abandon(&request_id)
        } else {
            shared
                .cache
                .lock()
                .finish(&request_id, reply.clone(), Instant::now())
        };
        for waiter in &waiters {
            shared.deliver(waiter, &request_id, &reply);
        }
    }
}

fn run_acceptor(shared: &Arc<Shared>, listener: TcpListener, poller: &Poller) {
    let mut events = Events::new();
    while !shared.stopping.load(Ordering::Acquire) {
        events.clear();
        let waited = poller
            .modify(&listener, Event::readable(0))
            .and_then(|()| poller.wait(&mut events, Some(IDLE_WAIT)));
        if let Err(e) = waited {
            if e.kind() != ErrorKind::Interrupted {
                warn!("link: acceptor poll failed: {e}");
                thread::sleep(Duration::from_millis(50));
            }
        }
        if shared.stopping.load(Ordering::Acquire) {
            break;
        }
        loop {
            match listener.accept() {
                Ok((tcp, peer)) => spawn_connection(shared, tcp, peer),
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    // Out of descriptors and the like: back off instead of spinning
                    // on a listener that stays readable.
                    warn!("link: accept failed: {e}");
                    thread::sleep(Duration::from_millis(50));
                    break;
                }
            }
        }
        shared.conn_threads.lock().retain(|h| !h.is_finished());
    }
    let _ = poller.delete(&listener);
}

fn spawn_connection(shared: &Arc<Shared>, tcp: TcpStream, peer: SocketAddr) {
    if shared.connections.load(Ordering::Acquire) >= shared.max_connections {
        bump(&shared.counters.rejected_upgrades);
        warn!(
            "link: refusing {peer}: {} connections already open",
            shared.max_connections
        );
        return;
    }
    let id = shared.next_edge.fetch_add(1, Ordering::Relaxed);
    match tcp.try_clone() {
        Ok(clone) => {
            shared.handshaking.lock().insert(id, clone);
        }
        Err(e) => {
            warn!("link: cannot serve {peer}: {e}");
            return;
        }
    }
    let conn_shared = shared.clone();
    let open = Counted::new(&shared.connections);
    let spawned = spawn_counted(&shared.threads, format!("link-edge-{id}"), move || {
        let _open = open;
        serve_connection(&conn_shared, id, tcp, peer)
    });
    match spawned {
        Ok(handle) => shared.conn_threads.lock().push(handle),
        Err(e) => {
            warn!("link: cannot start a thread for {peer}: {e}");
            shared.handshaking.lock().remove(&id);
        }
    }
}

fn serve_connection(shared: &Arc<Shared>, id: u64, tcp: TcpStream, peer: SocketAddr) {
    let conn = upgrade(shared, tcp, peer);
    shared.handshaking.lock().remove(&id);
    let Some(mut conn) = conn else { return };
    bump(&shared.counters.edges_accepted);

    let (tx, rx) = crossbeam_channel::bounded(shared.edge_queue);
    let edge = Arc::new(EdgeOut {
        peer,
        tx,
        waker: conn.waker(),
        close: AtomicU16::new(0),
    });
    {
        let mut fanout = shared.fanout.lock();
        if fanout.closed || shared.stopping.load(Ordering::Acquire) {
            conn.close(CLOSE_GOING_AWAY, "gateway shutting down");
            return;
        }
        // Stepped down between the upgrade and here: a standby serves no edge.
        if shared
            .active
            .as_ref()
            .is_some_and(|a| !a.load(Ordering::SeqCst))
        {
            conn.close(CLOSE_GOING_AWAY, "standby gateway");
            return;
        }
        // Snapshot and registration under the broadcast lock: every event is either
        // in this snapshot or queued after it, never both, never neither.
        let guilds = shared
            .ready_guilds
            .as_ref()
            .map(|g| g())
            .unwrap_or_default();
        let ready = ready_event((shared.ready)(), guilds);
        let _ = edge.tx.try_send(ready.to_json().into());
        if let Some(backlog) = &fanout.backlog {
            if Instant::now() < backlog.until {
                for frame in &backlog.frames {
                    let _ = edge.tx.try_send(frame.clone());
                }
            }
        }
        fanout.edges.insert(id, edge.clone());
        shared.edges_changed(&fanout);
    }
    info!("link: edge {peer} connected");
    let why = drive(shared, &edge, &rx, &mut conn);
    {
        let mut fanout = shared.fanout.lock();
        if fanout.edges.remove(&id).is_some() {
            shared.edges_changed(&fanout);
        }
    }
    info!("link: edge {peer} disconnected ({why})");
}

/// Runs one edge connection until it ends; returns why, for the log.
fn drive(
    shared: &Shared,
    edge: &Arc<EdgeOut>,
    rx: &Receiver<Arc<str>>,
    conn: &mut WsConn,
) -> String {
    loop {
        let code = edge.close.load(Ordering::Acquire);
        if code != 0 {
            let reason = match code {
                CLOSE_TRY_AGAIN => "too far behind",
                _ => "gateway closing the link",
            };
            conn.close(code, reason);
            return format!("closed by the gateway with {code}");
        }

        while let Ok(frame) = rx.try_recv() {
            match conn.send_text(String::from(&*frame)) {
                Ok(()) => {}
                Err(WsError::WriteBufferFull(_)) => {
                    shared.lagging(edge);
                    break;
                }
                Err(e) => return format!("write failed: {e}"),
            }
        }
        if edge.close.load(Ordering::Acquire) != 0 {
            continue;
        }

        let mut budget = READ_BUDGET;
        let more_to_read = loop {
            if budget == 0 {
                break true;
            }
            match conn.read() {
                Ok(Some(Incoming::Text(text))) => {
                    budget -= 1;
                    if let Err(e) = on_frame(shared, edge, conn, &text) {
                        return format!("write failed: {e}");
                    }
                }
                Ok(Some(Incoming::Pong(_))) => {}
                Ok(Some(Incoming::Closed(code))) => {
                    // Sends tungstenite's queued close reply.
                    let _ = conn.flush();
                    return match code {
                        Some(code) => format!("edge closed with {code}"),
                        None => "edge went away".into(),
                    };
                }
                Ok(None) => break false,
                Err(WsError::Capacity(e)) => {
                    warn!("link: edge {} sent a frame over the limit: {e}", edge.peer);
                    conn.close(CLOSE_TOO_BIG, "frame too large");
                    return format!("frame too large: {e}");
                }
                Err(WsError::Protocol(e)) => {
                    conn.close(CLOSE_PROTOCOL, "protocol error");
                    return format!("protocol error: {e}");
                }
                Err(e) => return format!("read failed: {e}"),
            }
        };
        // Pongs tungstenite queued while reading go out now, so the edge's RTT
        // measurement sees this hop and not the next broadcast.
        if let Err(e) = conn.flush() {
            return format!("write failed: {e}");
        }
        if more_to_read || !rx.is_empty() {
            continue;
        }
        if let Err(e) = conn.wait(Some(IDLE_WAIT)) {
            return format!("poll failed: {e}");
        }
    }
}

/// Handles one text frame from an edge; errors are socket write failures.
fn on_frame(
    shared: &Shared,
    edge: &Arc<EdgeOut>,
    conn: &mut WsConn,
    text: &str,
) -> Result<(), WsError> {
    let command = match parse_command(text.as_bytes()) {
        Ok(command) => command,
        Err(bad) => {
            bump(&shared.counters.malformed);
            let trace_id = bad.trace_id.clone().unwrap_or_else(fresh_trace_id);
            warn!(
                "link: malformed frame from edge {}: {} (traceId={trace_id}, requestId={})",
                edge.peer,
                bad.error.code(),
                bad.request_id.as_deref().unwrap_or("-")
            );
            let frame = malformed_event(&bad.to_string(), bad.request_id, trace_id);
            return conn.send_text(frame.to_json());
        }
    };
    bump(&shared.counters.commands);
    let request_id = command.request_id().to_owned();
    let trace_id = command.meta.trace_id.clone();
    debug!(
        "link: command {} requestId={request_id} traceId={trace_id} from {}",
        command.body.type_name(),
        edge.peer
    );
    let waiter = Waiter {
        edge: edge.clone(),
        trace_id: trace_id.clone(),
    };
    let begin = shared
        .cache
        .lock()
        .begin(&request_id, waiter, Instant::now());
    match begin {
        Begin::Run => shared.submit(command),
        Begin::InProgress => {
            bump(&shared.counters.deduplicated);
            shared.observer.on_deduplicated();
            debug!("link: {request_id} is running; its reply will answer this re-send too");
        }
        Begin::Done(reply) => {
            bump(&shared.counters.deduplicated);
            shared.observer.on_deduplicated();
            debug!("link: {request_id} ran before; repeating its first reply");
            conn.send_text(reply_event(&request_id, &trace_id, &reply).to_json())?;
        }
        Begin::Invalid => {
            bump(&shared.counters.malformed);
            let message = format!(
                "meta.requestId must be 1 to {} bytes",
                dedupe::MAX_REQUEST_ID_BYTES
            );
            // An over-long id is not echoed back.
            conn.send_text(malformed_event(&message, None, trace_id).to_json())?;
        }
    }
    Ok(())
}

/// The upgrade, bounded by the handshake deadline; `None` if it was refused.
fn upgrade(shared: &Shared, tcp: TcpStream, peer: SocketAddr) -> Option<WsConn> {
    let _ = tcp.set_nodelay(true);
    // Accepted sockets are blocking on Linux, but do not rely on inheritance rules.
    if tcp.set_nonblocking(false).is_err() {
        return None;
    }
    let writer = tcp.try_clone().ok()?;
    let mut head = Vec::new();
    let deadline = Instant::now() + shared.handshake_timeout;
    let stream = HandshakeStream {
        tcp,
        head: &mut head,
        read_total: 0,
        deadline,
    };
    let refusal = Cell::new(None);
    // tungstenite's callback type fixes the large error (an HTTP response).
    #[allow(clippy::result_large_err)]
    let callback = |request: &Request, response: Response| {
        let verdict = check_upgrade(&shared.token, request).and_then(|()| match &shared.active {
            Some(active) if !active.load(Ordering::SeqCst) => Err(Refusal::Standby),
            _ => Ok(()),
        });
        match verdict {
            Ok(()) => Ok(response),
            Err(refused) => {
                // Counted before tungstenite writes the answer, so a client that
                // has its 401 finds it in the counters and metrics.
                if refused == Refusal::Unauthorized {
                    bump(&shared.counters.auth_failures);
                    shared.observer.on_auth_failure();
                } else {
                    bump(&shared.counters.rejected_upgrades);
                }
                refusal.set(Some(refused));
                Err(refused.response())
            }
        }
    };
    match tungstenite::accept_hdr_with_config(stream, callback, Some(shared.ws_config)) {
        Ok(ws) => {
            let tcp = ws.into_inner().tcp;
            // The handshake read nothing past the request (tungstenite refuses a
            // tail), so re-wrapping the raw socket loses no bytes.
            if tcp.set_read_timeout(None).is_err() || tcp.set_write_timeout(None).is_err() {
                return None;
            }
            let ws = WebSocket::from_raw_socket(
                MaybeTlsStream::Plain(tcp),
                Role::Server,
                Some(shared.ws_config),
            );
            match WsConn::new(ws) {
                Ok(conn) => Some(conn),
                Err(e) => {
                    warn!("link: cannot poll the connection of {peer}: {e}");
                    None
                }
            }
        }
        Err(HandshakeError::Failure(WsError::Http(_))) => {
            // Counted by the callback, which made the refusal.
            match refusal.get() {
                Some(Refusal::Unauthorized) => {
                    warn!("link: refused an upgrade from {peer}: missing or wrong bearer token");
                }
                Some(other) => {
                    debug!("link: refused an upgrade from {peer}: {}", other.reason());
                }
                None => debug!("link: refused an upgrade from {peer}"),
            }
            None
        }
        Err(HandshakeError::Failure(
            e @ (WsError::Io(_)
            | WsError::AttackAttempt
            | WsError::Protocol(ProtocolError::HandshakeIncomplete)),
        )) => {
            // Timed out, trickled, cut off or reset: nobody worth answering.
            bump(&shared.counters.rejected_upgrades);
            debug!("link: upgrade from {peer} abandoned: {e}");
            None
        }
        Err(HandshakeError::Failure(e)) => {
            // Not a WebSocket upgrade (or junk): answer like a web server would.
            let answer = plain::answer(shared.plain.as_ref(), &head, &e);
            match &answer {
                Answer::Served(path, response) => {
                    bump(&shared.counters.plain_answered);
                    debug!("link: {peer} GET {path}: {}", response.status);
                }
                Answer::Refused(refused) => {
                    bump(&shared.counters.rejected_upgrades);
                    debug!(
                        "link: {peer} sent no valid upgrade ({e}); answering {}",
                        refused.status()
                    );
                }
            }
            plain::write_answer(writer, &answer, deadline);
            None
        }
        Err(HandshakeError::Interrupted(_)) => {
            bump(&shared.counters.rejected_upgrades);
            debug!("link: upgrade from {peer} timed out");
            None
        }
    }
}

/// Path, then token, then version: an unauthenticated peer learns nothing but 401.
fn check_upgrade(token: &Secret, request: &Request) -> Result<(), Refusal> {
    if request.uri().path() != LINK_PATH {
        return Err(Refusal::NotFound);
    }
    let presented = request
        .headers()
        .get("authorization")
        .map(|v| bearer_token(v.as_bytes()))
        .unwrap_or_default();
    // Always compare, even when nothing was presented, so the timing is the same.
    if !token.eq_bytes(presented) || presented.is_empty() {
        return Err(Refusal::Unauthorized);
    }
    if let Some(version) = request.headers().get("x-gateway-version") {
        let major = version.as_bytes().split(|b| *b == b'.').next();
        if major != Some(b"1") {
            return Err(Refusal::UnsupportedVersion);
        }
    }
    Ok(())
}

/// The credentials of an `Authorization: Bearer <token>` value (scheme case-insensitive).
fn bearer_token(value: &[u8]) -> &[u8] {
    const SCHEME: &[u8] = b"bearer ";
    if value.len() >= SCHEME.len() && value[..SCHEME.len()].eq_ignore_ascii_case(SCHEME) {
        value[SCHEME.len()..].trim_ascii()
    } else {
        &[]
    }
}

/// The socket during the upgrade: enforces one deadline for the whole handshake
/// (not per read, so trickled bytes cannot extend it), caps the request head, and
/// keeps its first bytes to answer a request that is not an upgrade.
struct HandshakeStream<'a> {
    tcp: TcpStream,
    head: &'a mut Vec<u8>,
    read_total: usize,
    deadline: Instant,
}

impl HandshakeStream<'_> {
    fn time_left(&self) -> io::Result<Duration> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            Err(io::Error::new(ErrorKind::TimedOut, "upgrade took too long"))
        } else {
            Ok(left)
        }
    }
}

fn timed_out(e: io::Error) -> io::Error {
    // A socket timeout surfaces as WouldBlock, which tungstenite would take for a
    // non-blocking socket and return as "interrupted"; make it final.
    if e.kind() == ErrorKind::WouldBlock {
        io::Error::new(ErrorKind::TimedOut, "upgrade took too long")
    } else {
        e
    }
}

impl Read for HandshakeStream<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.time_left()?;
        let room = MAX_REQUEST_HEAD_BYTES.saturating_sub(self.read_total);
        if room == 0 {
            return Err(io::Error::new(
                ErrorKind::InvalidData,
                "request head too large",
            ));
        }
        self.tcp.set_read_timeout(Some(left))?;
        let cap = buf.len().min(room);
        let n = self.tcp.read(&mut buf[..cap]).map_err(timed_out)?;
        let keep = n.min(HEAD_KEPT_BYTES.saturating_sub(self.head.len()));
        self.head.extend_from_slice(&buf[..keep]);
        self.read_total += n;
        Ok(n)
    }
}

impl Write for HandshakeStream<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let left = self.time_left()?;
        self.tcp.set_write_timeout(Some(left))?;
        self.tcp.write(buf).map_err(timed_out)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.tcp.flush()
    }
}

fn now_rfc3339() -> String {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    ids::rfc3339_millis(ms)
}

fn fresh_trace_id() -> String {
    ids::trace_id(rand::random::<u128>())
}

fn ready_event(voice: VoiceSnapshot, guilds: Vec<serde_json::Value>) -> GatewayEvent {
    GatewayEvent {
        body: EventBody::Ready(Ready { voice, guilds }),
        meta: TraceMeta {
            trace_id: fresh_trace_id(),
            sent_at: now_rfc3339(),
            request_id: None,
            actor: None,
            access: None,
            extra: Default::default(),
        },
    }
}

/// The reply frame for one asker of a command.
fn reply_event(request_id: &str, trace_id: &str, reply: &Reply) -> GatewayEvent {
    let body = match reply {
        Reply::Ack => EventBody::Ack(Ack {}),
        Reply::RateLimited {
            retry_after_ms,
            global,
        } => EventBody::RateLimited(RateLimited {
            retry_after_ms: *retry_after_ms,
            global: *global,
        }),
        Reply::Error { code, message } => EventBody::Error(ErrorData {
            code: code.clone(),
            message: message.clone(),
            request_id: Some(request_id.to_owned()),
        }),
        Reply::Messages(messages) => EventBody::Messages(messages.clone()),
    };
    GatewayEvent {
        body,
        meta: TraceMeta {
            trace_id: trace_id.to_owned(),
            sent_at: now_rfc3339(),
            request_id: Some(request_id.to_owned()),
            actor: None,
            access: None,
            extra: Default::default(),
        },
    }
}

fn malformed_event(message: &str, request_id: Option<String>, trace_id: String) -> GatewayEvent {
    GatewayEvent {
        body: EventBody::Error(ErrorData {
            code: "malformed_frame".into(),
            message: message.to_owned(),
            request_id: request_id.clone(),
        }),
        meta: TraceMeta {
            trace_id,
            sent_at: now_rfc3339(),
            request_id,
            actor: None,
            access: None,
            extra: Default::default(),
        },
    }
}

#[cfg(test)]
mod tests {
    use std::net::TcpStream;

    use relay_protocol::frame::parse_event;
    use relay_protocol::payload::{
        Author, CommandBody, MessageCreate, SendMessage, Timestamp, TriggerTyping, TypingStart,
        VoiceJoined, VoiceMember,
    };
    use tungstenite::client::IntoClientRequest;
    use tungstenite::protocol::frame::coding::CloseCode;
    use tungstenite::Message;

    use super::test_peer::{Script, ScriptedExecutor};
    use super::*;

    const TOKEN: &str = "s3cret-link-token";
    /// Longest any single wait in these tests may take before it counts as a failure.
    const WAIT: Duration = Duration::from_secs(2);

    type Client = WebSocket<TcpStream>;

    fn member(user: u32) -> VoiceMember {
        VoiceMember {
            guild_id: "100".into(),
            user_id: user.to_string(),
            username: format!("user{user}"),
            avatar: None,
        }
    }

    fn start(edit: impl FnOnce(&mut LinkServerConfig)) -> (LinkServer, Arc<ScriptedExecutor>) {
        start_with_ready(
            edit,
            Arc::new(|| {
                let mut voice = VoiceSnapshot::default();
                voice.channels.insert("200".into(), vec![member(7)]);
                voice
            }),
        )
    }

    fn start_with_ready(
        edit: impl FnOnce(&mut LinkServerConfig),
        ready: ReadyFn,
    ) -> (LinkServer, Arc<ScriptedExecutor>) {
        let mut cfg = LinkServerConfig::new("127.0.0.1:0".parse().unwrap(), TOKEN);
        cfg.workers = 2;
        edit(&mut cfg);
        let executor = ScriptedExecutor::new();
        let server = LinkServer::start(cfg, executor.clone(), ready).expect("server starts");
        (server, executor)
    }

    fn dial(
        addr: SocketAddr,
        path: &str,
        token: Option<&str>,
        version: Option<&str>,
    ) -> Result<Client, WsError> {
        let mut request = format!("ws://{addr}{path}").into_client_request().unwrap();
        let headers = request.headers_mut();
        if let Some(token) = token {
            headers.insert("Authorization", format!("Bearer {token}").parse().unwrap());
        }
        if let Some(version) = version {
            headers.insert("X-Gateway-Version", version.parse().unwrap());
        }
        let tcp = TcpStream::connect(addr).unwrap();
        tcp.set_read_timeout(Some(WAIT)).unwrap();
        match tungstenite::client(request, tcp) {
            Ok((ws, _)) => Ok(ws),
            Err(HandshakeError::Failure(e)) => Err(e),
            Err(HandshakeError::Interrupted(_)) => panic!("client handshake timed out"),
        }
    }

    fn status_of(result: Result<Client, WsError>) -> u16 {
        match result {
            Err(WsError::Http(response)) => response.status().as_u16(),
            Err(other) => panic!("expected an HTTP answer, got {other}"),
            Ok(_) => panic!("expected a refusal, got an upgrade"),
        }
    }

    fn next_event(ws: &mut Client) -> GatewayEvent {
        loop {
            match ws.read().expect("a frame before the timeout") {
                Message::Text(text) => return parse_event(text.as_bytes()).expect("valid frame"),
                Message::Close(frame) => panic!("link closed: {frame:?}"),
                _ => continue,
            }
        }
    }

    /// An edge past `ready`.
    fn edge(addr: SocketAddr) -> (Client, GatewayEvent) {
        let mut ws = dial(addr, LINK_PATH, Some(TOKEN), Some("1.0")).expect("upgrade");
        let ready = next_event(&mut ws);
        assert_eq!(ready.body.type_name(), "ready");
        (ws, ready)
    }

    /// Reads until the link ends; returns the close code if a close frame came.
    fn read_until_closed(ws: &mut Client) -> Option<u16> {
        loop {
            match ws.read() {
                Ok(Message::Close(frame)) => return frame.map(|f| u16::from(f.code)),
                Ok(_) => continue,
                Err(WsError::Io(e)) if e.kind() == ErrorKind::WouldBlock => {
                    panic!("the link was not closed within {WAIT:?}")
                }
                Err(_) => return None,
            }
        }
    }

    fn command(request_id: &str, trace_id: &str, body: CommandBody) -> String {
        GatewayCommand {
            body,
            meta: TraceMeta {
                trace_id: trace_id.into(),
                sent_at: now_rfc3339(),
                request_id: Some(request_id.into()),
                actor: Some("42".into()),
                access: None,
                extra: Default::default(),
            },
        }
        .to_json()
    }

    fn typing(channel: &str) -> CommandBody {
        CommandBody::TypingStart(TriggerTyping {
            channel_id: channel.into(),
        })
    }

    fn send_message(channel: &str, content: &str) -> CommandBody {
        CommandBody::SendMessage(SendMessage {
            channel_id: channel.into(),
            content: content.into(),
        })
    }

    fn send(ws: &mut Client, text: String) {
        ws.send(Message::text(text)).expect("send");
    }

    /// The reply a frame carries: (requestId, traceId, outcome).
    fn reply_of(ev: &GatewayEvent) -> (String, String, Reply) {
        let (request_id, reply) = ev
            .as_reply()
            .unwrap_or_else(|| panic!("not a reply: {ev:?}"));
        (request_id.to_owned(), ev.meta.trace_id.clone(), reply)
    }

    fn typing_event(user: u32) -> GatewayEvent {
        GatewayEvent {
            body: EventBody::TypingStart(TypingStart {
                channel_id: "300".into(),
                user_id: user.to_string(),
                timestamp: Timestamp::Unix(1_700_000_000),
                guild_id: None,
            }),
            meta: TraceMeta {
                trace_id: fresh_trace_id(),
                sent_at: now_rfc3339(),
                request_id: None,
                actor: None,
                access: None,
                extra: Default::default(),
            },
        }
    }

    fn raw_http(addr: SocketAddr, request: &str) -> String {
        let mut tcp = TcpStream::connect(addr).unwrap();
        tcp.set_read_timeout(Some(WAIT)).unwrap();
        tcp.write_all(request.as_bytes()).unwrap();
        let mut answer = String::new();
        let _ = tcp.read_to_string(&mut answer);
        answer
    }

    #[test]
    fn the_upgrade_needs_the_token_the_path_and_a_1x_version() {
        let (server, _) = start(|_| {});
        let addr = server.local_addr();
        assert_eq!(status_of(dial(addr, LINK_PATH, None, Some("1.0"))), 401);
        assert_eq!(status_of(dial(addr, LINK_PATH, Some("wrong"), None)), 401);
        // A prefix of the token is as wrong as any other token.
        let prefix = &TOKEN[..TOKEN.len() - 1];
        assert_eq!(status_of(dial(addr, LINK_PATH, Some(prefix), None)), 401);
        let longer = format!("{TOKEN}x");
        assert_eq!(status_of(dial(addr, LINK_PATH, Some(&longer), None)), 401);
        assert_eq!(status_of(dial(addr, "/other", Some(TOKEN), None)), 404);
        assert_eq!(
            status_of(dial(addr, LINK_PATH, Some(TOKEN), Some("2.0"))),
            400
        );
        // Requests that are not upgrades get plain HTTP answers.
        let healthz = raw_http(addr, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(healthz.starts_with("HTTP/1.1 404"), "{healthz}");
        let plain = raw_http(addr, "GET /link HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(plain.starts_with("HTTP/1.1 426"), "{plain}");

        let stats = server.stats();
        assert_eq!(stats.auth_failures, 4);
        assert_eq!(stats.edges, 0);
        assert_eq!(stats.edges_accepted, 0);
        // Minor versions are additive: 1.3 is served.
        let (_ws, _) = {
            let mut ws = dial(addr, LINK_PATH, Some(TOKEN), Some("1.3")).expect("upgrade");
            let ready = next_event(&mut ws);
            (ws, ready)
        };
        assert!(server.wait_for_edges(1, WAIT));
    }

    #[test]
    fn ready_comes_first_with_the_snapshot() {
        let (server, _) = start(|_| {});
        let (_ws, ready) = edge(server.local_addr());
        let EventBody::Ready(Ready { voice, .. }) = &ready.body else {
            panic!("{ready:?}")
        };
        assert_eq!(voice.channels.get("200"), Some(&vec![member(7)]));
        assert_eq!(ready.meta.trace_id.len(), 32);
        assert!(ready.meta.trace_id.bytes().all(|b| b.is_ascii_hexdigit()));
        // RFC 3339 with milliseconds, UTC.
        let sent_at = ready.meta.sent_at.as_bytes();
        assert_eq!(sent_at.len(), 24, "{}", ready.meta.sent_at);
        assert_eq!((sent_at[10], sent_at[19], sent_at[23]), (b'T', b'.', b'Z'));
        assert!(server.wait_for_edges(1, WAIT));
    }

    #[test]
    fn every_edge_gets_every_broadcast_in_order() {
        let (server, _) = start(|_| {});
        let (mut a, _) = edge(server.local_addr());
        let (mut b, _) = edge(server.local_addr());
        assert!(server.wait_for_edges(2, WAIT));
        for user in 0..200 {
            assert_eq!(server.broadcast(&typing_event(user)), 2);
        }
        for ws in [&mut a, &mut b] {
            for user in 0..200 {
                let ev = next_event(ws);
                let EventBody::TypingStart(t) = &ev.body else {
                    panic!("{ev:?}")
                };
                assert_eq!(t.user_id, user.to_string());
            }
        }
        assert_eq!(server.stats().broadcasts, 200);
    }

    /// Edges connect while state changes are broadcast with `broadcast_with`: each
    /// edge's snapshot followed by its live events is exactly the whole sequence,
    /// with no event missing or doubled at the seam.
    #[test]
    fn an_edge_neither_misses_nor_doubles_an_event_between_snapshot_and_live() {
        let state = Arc::new(Mutex::new(VoiceSnapshot::default()));
        let ready_state = state.clone();
        let (server, _) = start_with_ready(|_| {}, Arc::new(move || ready_state.lock().clone()));
        let broadcaster = server.broadcaster();
        let stop = Arc::new(AtomicBool::new(false));
        let (started_tx, started_rx) = crossbeam_channel::bounded(1);
        let producer = {
            let stop = stop.clone();
            thread::spawn(move || {
                let mut user = 0u32;
                // Keep broadcasting until every edge is in, so each connects mid-stream.
                while !stop.load(Ordering::Acquire) {
                    broadcaster.broadcast_with(|| {
                        let joined = VoiceJoined {
                            guild_id: "100".into(),
                            channel_id: "300".into(),
                            user_id: user.to_string(),
                            username: String::new(),
                            avatar: None,
                        };
                        state.lock().apply_joined(&joined);
                        Some(GatewayEvent {
                            body: EventBody::VoiceJoined(joined),
                            meta: TraceMeta {
                                trace_id: fresh_trace_id(),
                                sent_at: now_rfc3339(),
                                request_id: None,
                                actor: None,
                                access: None,
                                extra: Default::default(),
                            },
                        })
                    });
                    if user == 10 {
                        let _ = started_tx.send(());
                    }
                    user += 1;
                    if user % 64 == 0 {
                        thread::yield_now();
                    }
                }
                user
            })
        };
        started_rx.recv_timeout(WAIT).expect("the producer runs");
        let edges: Vec<_> = (0..8).map(|_| edge(server.local_addr())).collect();
        stop.store(true, Ordering::Release);
        let total = producer.join().unwrap();
        for (mut ws, ready) in edges {
            let EventBody::Ready(Ready { voice, .. }) = ready.body else {
                panic!()
            };
            let seen: Vec<u32> = voice
                .channels
                .get("300")
                .map(|m| m.iter().map(|m| m.user_id.parse().unwrap()).collect())
                .unwrap_or_default();
            assert_eq!(seen, (0..seen.len() as u32).collect::<Vec<_>>());
            assert!(seen.len() as u32 > 10, "connected mid-stream");
            for expected in seen.len() as u32..total {
                let ev = next_event(&mut ws);
                let EventBody::VoiceJoined(j) = &ev.body else {
                    panic!("{ev:?}")
                };
                assert_eq!(j.user_id, expected.to_string(), "gap or double at the seam");
            }
        }
    }

    #[test]
    fn a_request_id_runs_once_even_across_a_reconnect() {
        let (server, executor) = start(|_| {});
        let (mut a, _) = edge(server.local_addr());
        send(&mut a, command("r1", "t1", send_message("300", "hi")));
        assert_eq!(
            reply_of(&next_event(&mut a)),
            ("r1".into(), "t1".into(), Reply::Ack)
        );
        send(&mut a, command("r1", "t1b", send_message("300", "hi")));
        assert_eq!(
            reply_of(&next_event(&mut a)),
            ("r1".into(), "t1b".into(), Reply::Ack)
        );
        // Exactly one reply each: the next frame answers the next command.
        send(&mut a, command("r2", "t2", typing("300")));
        assert_eq!(
            reply_of(&next_event(&mut a)),
            ("r2".into(), "t2".into(), Reply::Ack)
        );
        a.close(None).unwrap();
        let _ = read_until_closed(&mut a);
        assert!(server.wait_for_edges(0, WAIT));

        let (mut b, _) = edge(server.local_addr());
        send(&mut b, command("r1", "t1", send_message("300", "hi")));
        assert_eq!(
            reply_of(&next_event(&mut b)),
            ("r1".into(), "t1".into(), Reply::Ack)
        );
        assert_eq!(executor.calls(), 2, "r1 and r2 each ran once");
        let stats = server.stats();
        assert_eq!((stats.commands_received, stats.deduplicated), (4, 2));
        assert_eq!(stats.commands_executed, 2);
    }

    #[test]
    fn a_rate_limited_command_is_not_cached_so_its_retry_runs() {
        // rateLimited means "did not run": the edge retries a queued command with
        // the same requestId, and the retry must reach Discord.
        let (server, executor) = start(|_| {});
        executor.script("sendMessage", Script::rate_limited(1500, false));
        let limited = Reply::RateLimited {
            retry_after_ms: 1500,
            global: false,
        };
        let (mut a, _) = edge(server.local_addr());
        for trace in ["t1", "t1b"] {
            send(&mut a, command("r1", trace, send_message("300", "hi")));
            assert_eq!(
                reply_of(&next_event(&mut a)),
                ("r1".into(), trace.into(), limited.clone())
            );
        }
        assert_eq!(executor.calls(), 2, "each attempt ran");
        executor.script("sendMessage", Script::ack());
        send(&mut a, command("r1", "t1c", send_message("300", "hi")));
        assert_eq!(
            reply_of(&next_event(&mut a)),
            ("r1".into(), "t1c".into(), Reply::Ack)
        );
        // Once it ran, the first real reply is what a re-send gets.
        send(&mut a, command("r1", "t1d", send_message("300", "hi")));
        assert_eq!(
            reply_of(&next_event(&mut a)),
            ("r1".into(), "t1d".into(), Reply::Ack)
        );
        assert_eq!(executor.calls(), 3);
        drop(server);
    }

    #[test]
    fn an_in_progress_duplicate_gets_the_first_reply_even_if_the_sender_left() {
        let (server, executor) = start(|_| {});
        let slow = Script::error("discord_error", "boom").after(Duration::from_millis(200));
        executor.script("typingStart", slow.clone());
        let signals = executor.signals();
        let addr = server.local_addr();
        let (mut a, _) = edge(addr);
        let (mut b, _) = edge(addr);

        // Same id twice on one connection and once on another while it runs.
        send(&mut a, command("r3", "ta", typing("300")));
        signals.recv_timeout(WAIT).expect("r3 started");
        send(&mut a, command("r3", "ta2", typing("300")));
        send(&mut b, command("r3", "tb", typing("300")));
        let first = |trace: &str| ("r3".to_string(), trace.to_string(), slow.reply.clone());
        assert_eq!(reply_of(&next_event(&mut a)), first("ta"));
        assert_eq!(reply_of(&next_event(&mut a)), first("ta2"));
        assert_eq!(reply_of(&next_event(&mut b)), first("tb"));

        // The sender leaves while its command runs: the duplicate still gets the reply.
        let (mut c, _) = edge(addr);
        send(&mut c, command("r4", "tc", typing("300")));
        signals.recv_timeout(WAIT).expect("r4 started");
        drop(c);
        send(&mut b, command("r4", "tb4", typing("300")));
        assert_eq!(
            reply_of(&next_event(&mut b)),
            ("r4".into(), "tb4".into(), slow.reply.clone())
        );
        assert_eq!(executor.calls(), 2);
        assert!(signals.is_empty(), "nothing ran twice");
    }

    #[test]
    fn reads_of_one_channel_run_side_by_side() {
        let (server, executor) = start(|cfg| cfg.workers = 8);
        let slow = Duration::from_millis(1500);
        executor.script("fetchMessages", Script::ack().after(slow));
        let signals = executor.signals();
        let (mut a, _) = edge(server.local_addr());
        let read = || {
            CommandBody::FetchMessages(relay_protocol::payload::FetchMessages {
                channel_id: "300".into(),
                limit: 50,
                before: None,
                after: None,
                around: None,
            })
        };
        for i in 0..8 {
            send(&mut a, command(&format!("read-{i}"), "t", read()));
        }
        // Sharded by channel, the second read would start only when the first ended.
        let started = Instant::now();
        for _ in 0..2 {
            signals.recv_timeout(slow).expect("a read started");
        }
        assert!(
            started.elapsed() < slow,
            "two reads of one channel ran at once"
        );
    }

    #[test]
    fn a_malformed_frame_gets_an_error_and_the_link_stays_up() {
        let (server, executor) = start(|_| {});
        let (mut ws, _) = edge(server.local_addr());
        send(&mut ws, "{nope".into());
        let ev = next_event(&mut ws);
        let EventBody::Error(e) = &ev.body else {
            panic!("{ev:?}")
        };
        assert_eq!(
            (e.code.as_str(), e.request_id.as_deref()),
            ("malformed_frame", None)
        );
        assert_eq!(ev.meta.request_id, None);

        send(
            &mut ws,
            r#"{"version":"1.0","type":"sendMessage","data":{"channelId":5},"meta":{"traceId":"t9","sentAt":"s","requestId":"r9","actor":"a"}}"#.into(),
        );
        let ev = next_event(&mut ws);
        let (request_id, trace_id, reply) = reply_of(&ev);
        assert_eq!((request_id.as_str(), trace_id.as_str()), ("r9", "t9"));
        assert!(matches!(reply, Reply::Error { code, .. } if code == "malformed_frame"));

        let huge_id = "r".repeat(dedupe::MAX_REQUEST_ID_BYTES + 1);
        send(&mut ws, command(&huge_id, "th", typing("300")));
        let ev = next_event(&mut ws);
        assert!(matches!(&ev.body, EventBody::Error(e) if e.code == "malformed_frame"));
        assert_eq!(ev.meta.trace_id, "th");

        send(&mut ws, command("r10", "t10", typing("300")));
        assert_eq!(
            reply_of(&next_event(&mut ws)),
            ("r10".into(), "t10".into(), Reply::Ack)
        );
        assert_eq!(server.stats().malformed, 3);
        assert_eq!(executor.calls(), 1);
    }

    #[test]
    fn an_oversized_frame_closes_only_that_edge() {
        let (server, _) = start(|_| {});
        let (mut a, _) = edge(server.local_addr());
        let (mut b, _) = edge(server.local_addr());
        assert!(server.wait_for_edges(2, WAIT));
        // The server may reset the socket before the whole frame is written.
        let _ = a.send(Message::text("x".repeat(ws_io::MAX_MESSAGE_BYTES + 1)));
        let code = read_until_closed(&mut a);
        assert!(code.is_none() || code == Some(CLOSE_TOO_BIG), "{code:?}");
        assert!(server.wait_for_edges(1, WAIT));
        assert_eq!(server.broadcast(&typing_event(1)), 1);
        assert!(matches!(next_event(&mut b).body, EventBody::TypingStart(_)));
    }

    #[test]
    fn pings_are_answered() {
        let (server, _) = start(|_| {});
        let (mut ws, _) = edge(server.local_addr());
        ws.send(Message::Ping(b"rtt-1".to_vec().into())).unwrap();
        match ws.read().expect("pong before the timeout") {
            Message::Pong(payload) => assert_eq!(&payload[..], b"rtt-1"),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn kick_all_closes_every_edge_and_they_reconnect() {
        let (server, _) = start(|_| {});
        let (mut a, _) = edge(server.local_addr());
        let (mut b, _) = edge(server.local_addr());
        assert!(server.wait_for_edges(2, WAIT));
        server.kick_all();
        assert_eq!(server.edges(), 0);
        assert_eq!(read_until_closed(&mut a), Some(u16::from(CloseCode::Away)));
        assert_eq!(read_until_closed(&mut b), Some(u16::from(CloseCode::Away)));
        let (_c, _) = edge(server.local_addr());
        assert!(server.wait_for_edges(1, WAIT));
    }

    #[test]
    fn a_lagging_edge_is_closed_and_the_others_keep_up() {
        const EVENTS: u32 = 4000;
        const WINDOW: u32 = 32;
        let (server, _) = start(|cfg| cfg.edge_write_buffer = 256 * 1024);
        let (_stuck, _) = edge(server.local_addr()); // never reads
        let (mut reader, _) = edge(server.local_addr());
        assert!(server.wait_for_edges(2, WAIT));
        let (seen_tx, seen_rx) = crossbeam_channel::unbounded();
        let reading = thread::spawn(move || {
            for user in 0..EVENTS {
                let ev = next_event(&mut reader);
                let EventBody::MessageCreate(m) = &ev.body else {
                    panic!("{ev:?}")
                };
                assert_eq!(m.id, user.to_string());
                seen_tx.send(user).unwrap();
            }
            reader
        });
        let content = "y".repeat(3000);
        for id in 0..EVENTS {
            // Stay at most WINDOW events ahead of the reading edge, so only the
            // stuck one can fall behind.
            if id >= WINDOW {
                seen_rx
                    .recv_timeout(WAIT)
                    .expect("the reading edge keeps up");
            }
            server.broadcast(&GatewayEvent {
                body: EventBody::MessageCreate(MessageCreate {
                    id: id.to_string(),
                    channel_id: "300".into(),
                    guild_id: None,
                    author: Author {
                        id: "1".into(),
                        username: "u".into(),
                        avatar: None,
                        bot: false,
                    },
                    content: content.clone(),
                    timestamp: Timestamp::Unix(0),
                    via: None,
                }),
                meta: TraceMeta {
                    trace_id: fresh_trace_id(),
                    sent_at: now_rfc3339(),
                    request_id: None,
                    actor: None,
                    access: None,
                    extra: Default::default(),
                },
            });
        }
        let _reader = reading.join().unwrap();
        assert!(server.wait_for_edges(1, WAIT), "the stuck edge was closed");
        assert_eq!(server.stats().dropped_slow, 1);
    }

    #[test]
    fn sendmessage_echo_carries_the_command_trace_to_every_edge() {
        let (server, executor) = start(|_| {});
        executor.echo_messages(server.broadcaster());
        let (mut a, _) = edge(server.local_addr());
        let (mut b, _) = edge(server.local_addr());
        assert!(server.wait_for_edges(2, WAIT));
        send(
            &mut a,
            command("r5", "trace-5", send_message("300", "hello")),
        );
        let mut a_frames = [next_event(&mut a), next_event(&mut a)];
        // The echo is broadcast before the ack is queued.
        a_frames.sort_by_key(|ev| ev.as_reply().is_some());
        for ev in [&a_frames[0], &next_event(&mut b)] {
            let EventBody::MessageCreate(m) = &ev.body else {
                panic!("{ev:?}")
            };
            assert_eq!(
                (m.content.as_str(), ev.meta.trace_id.as_str()),
                ("hello", "trace-5")
            );
        }
        assert_eq!(
            reply_of(&a_frames[1]),
            ("r5".into(), "trace-5".into(), Reply::Ack)
        );
    }

    #[test]
    fn shutdown_releases_the_port_and_joins_every_thread() {
        let (server, _) = start(|_| {});
        let addr = server.local_addr();
        let (mut ws, _) = edge(addr);
        // A client stuck in its upgrade must not hold shutdown for the handshake timeout.
        let _silent = TcpStream::connect(addr).unwrap();
        assert!(server.wait_for_edges(1, WAIT));
        let threads = server.threads.clone();
        let broadcaster = server.broadcaster();
        assert!(server.stats().threads >= 4, "acceptor, 2 workers, the edge");
        let started = Instant::now();
        server.shutdown();
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(threads.load(Ordering::Acquire), 0);
        assert!(
            !broadcaster.is_alive(),
            "no thread holds the server any more"
        );
        assert_eq!(read_until_closed(&mut ws), Some(CLOSE_GOING_AWAY));
        TcpListener::bind(addr).expect("the port is free again");
    }

    #[test]
    fn a_trickling_upgrade_is_cut_at_the_handshake_deadline() {
        let (server, _) = start(|cfg| cfg.handshake_timeout = Duration::from_millis(200));
        let mut tcp = TcpStream::connect(server.local_addr()).unwrap();
        tcp.set_read_timeout(Some(WAIT)).unwrap();
        let mut writer = tcp.try_clone().unwrap();
        let started = Instant::now();
        // A slowloris client: one header byte every 20 ms, each well within any
        // per-read timeout, forever.
        let trickle = thread::spawn(move || {
            let _ = writer.write_all(b"GET /link HTTP/1.1\r\nX-Slow: ");
            while started.elapsed() < WAIT {
                if writer.write_all(b"a").is_err() {
                    break;
                }
                thread::sleep(Duration::from_millis(20));
            }
        });
        let mut buf = [0u8; 64];
        let n = tcp.read(&mut buf).unwrap_or(0);
        assert_eq!(n, 0, "closed without an answer");
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
        trickle.join().unwrap();
        assert_eq!(server.stats().rejected_upgrades, 1);
    }

    #[test]
    fn connections_beyond_the_limit_are_closed_at_once() {
        let (server, _) = start(|cfg| cfg.max_connections = 1);
        let (_a, _) = edge(server.local_addr());
        assert!(dial(server.local_addr(), LINK_PATH, Some(TOKEN), None).is_err());
        assert_eq!(server.stats().rejected_upgrades, 1);
        assert_eq!(server.edges(), 1);
    }

    #[test]
    fn plain_gets_go_to_the_handler_and_everything_else_keeps_its_answer() {
        let handler: PlainHandler = Arc::new(|path| {
            (path == "/healthz").then(|| PlainResponse {
                status: 200,
                content_type: "application/json",
                body: r#"{"status":"ok"}"#.into(),
            })
        });
        let (server, _) = start(|cfg| cfg.plain = Some(handler));
        let addr = server.local_addr();
        let ok = raw_http(addr, "GET /healthz?probe HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(ok.contains("content-length: 15\r\n"), "{ok}");
        assert!(ok.ends_with("\r\n\r\n{\"status\":\"ok\"}"), "{ok}");
        let other = raw_http(addr, "GET /other HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(other.starts_with("HTTP/1.1 404"), "{other}");
        let post = raw_http(addr, "POST /healthz HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
        assert!(post.starts_with("HTTP/1.1 404"), "{post}");
        let link = raw_http(addr, "GET /link HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(link.starts_with("HTTP/1.1 426"), "{link}");
        // An upgrade to the handler's path is still an upgrade to a wrong path.
        assert_eq!(status_of(dial(addr, "/healthz", Some(TOKEN), None)), 404);
        assert_eq!(status_of(dial(addr, LINK_PATH, None, None)), 401);
        // A head over the limit is not read to its end, so not answered.
        let huge = format!(
            "GET /healthz HTTP/1.1\r\nX-Big: {}\r\n\r\n",
            "a".repeat(MAX_REQUEST_HEAD_BYTES)
        );
        let mut tcp = TcpStream::connect(addr).unwrap();
        tcp.set_read_timeout(Some(WAIT)).unwrap();
        // The server may reset the socket before the whole head is written.
        let _ = tcp.write_all(huge.as_bytes());
        let mut answer = Vec::new();
        let _ = tcp.read_to_end(&mut answer);
        assert!(answer.is_empty(), "{}", String::from_utf8_lossy(&answer));
        let stats = server.stats();
        assert_eq!(stats.plain_answered, 1);
        assert_eq!(stats.auth_failures, 1);
        assert_eq!(stats.rejected_upgrades, 5);
    }

    #[derive(Default)]
    struct Recorder {
        edges: Mutex<Vec<usize>>,
        deduplicated: AtomicU64,
        auth_failures: AtomicU64,
    }

    impl LinkObserver for Recorder {
        fn on_edges(&self, edges: usize) {
            self.edges.lock().push(edges);
        }
        fn on_deduplicated(&self) {
            bump(&self.deduplicated);
        }
        fn on_auth_failure(&self) {
            bump(&self.auth_failures);
        }
    }

    #[test]
    fn the_observer_hears_edges_re_sends_and_refused_tokens() {
        let recorder = Arc::new(Recorder::default());
        let observer = recorder.clone();
        let (server, _) = start(move |cfg| cfg.observer = observer);
        let addr = server.local_addr();
        assert_eq!(status_of(dial(addr, LINK_PATH, Some("wrong"), None)), 401);
        assert_eq!(recorder.auth_failures.load(Ordering::Relaxed), 1);

        let (mut a, _) = edge(addr);
        let (_b, _) = edge(addr);
        assert!(server.wait_for_edges(2, WAIT));
        assert_eq!(*recorder.edges.lock(), [1, 2]);
        for trace in ["t1", "t1b"] {
            send(&mut a, command("r1", trace, typing("300")));
            assert_eq!(reply_of(&next_event(&mut a)).2, Reply::Ack);
        }
        assert_eq!(recorder.deduplicated.load(Ordering::Relaxed), 1);

        a.close(None).unwrap();
        let _ = read_until_closed(&mut a);
        assert!(server.wait_for_edges(1, WAIT));
        assert_eq!(*recorder.edges.lock(), [1, 2, 1]);
        server.kick_all();
        assert_eq!(*recorder.edges.lock(), [1, 2, 1, 0]);
    }

    #[test]
    fn bearer_tokens_are_read() {
        assert_eq!(bearer_token(b"bearer abc "), b"abc");
        assert_eq!(bearer_token(b"Basic abc"), b"");
    }
}
