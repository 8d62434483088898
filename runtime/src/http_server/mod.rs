//! A small HTTP/1.1 server for the edge: one accept thread, one thread per
//! connection, requests parsed by `httparse`, every limit and timeout explicit.
//!
//! It replaces `tiny_http`, whose defects blocked the contract: its accept loop
//! ended for good on the first accept error; its thread pool queued new
//! connections behind threads parked in keep-alive reads of long-lived streams
//! (50 simultaneous SSE requests: 10 served, 40 waited 10 s); and it hid the
//! `TcpStream`, so there were no per-connection timeouts (a slowloris client held
//! a thread forever) and an upgraded WebSocket could not get a read timeout.
//!
//! # Threads
//!
//! - the acceptor sleeps in `epoll` on the listener. An accept error (out of
//!   descriptors, an aborted handshake…) is logged and retried after a short
//!   back-off; it never ends the loop. Past [`HttpConfig::max_connections`] a
//!   new connection gets a `503` and is closed.
//! - each connection has its own thread (a 512 KiB stack, a quarter of the
//!   default) that reads requests in a loop (keep-alive, pipelining) and calls
//!   the handler for each, on that thread. A handler may block (a command waiting for the gateway's reply)
//!   without holding up any other connection. A long-lived response
//!   ([`Request::into_stream`], [`Request::upgrade_websocket`]) takes the socket
//!   and keeps the thread for as long as it runs, unless the handler passes the
//!   socket on ([`Request::into_stream_unsent`]: the edge's SSE writer pool)
//!   and returns, which ends the thread.
//!
//! # Limits and answers
//!
//! | what | default | answer |
//! |---|---|---|
//! | request head not complete within `head_timeout` of its first byte | 10 s | `408`, close |
//! | a new connection sends nothing within `head_timeout` | 10 s | close silently |
//! | no new request within `idle_timeout` on a kept-alive connection | 30 s | close silently |
//! | head larger than `max_head_bytes` / more than `max_headers` headers | 16 KiB / 100 | `431`, close |
//! | request target longer than `max_url_bytes` | 8 KiB | `414`, close |
//! | unparsable head, control characters (raw or `%00`–`%1F`) in the path, bad `Content-Length`, both `Content-Length` and `Transfer-Encoding` | | `400`, close |
//! | a transfer coding other than `chunked` | | `501`, close |
//! | `Expect` other than `100-continue` | | `417`, close |
//! | body over the handler's limit | handler's | handler answers (the edge: `413`); close |
//! | malformed chunked body | | handler answers (the edge: `400`); close |
//! | body not complete within `body_timeout` of the handler asking | 30 s | handler answers (the edge: `408`); close |
//!
//! Request targets are passed on as sent: absolute-form targets and `..` or
//! `%2e%2e` segments are not normalised, so routes, which match exactly, do not
//! match them. `Expect: 100-continue` is answered when the handler reads the
//! body, so a request refused on its headers (401, 413 by `Content-Length`) never
//! has its body sent. Any request whose body was not read to the end closes its
//! connection after the response; the close lingers to drain what the client
//! still sends, so it reads the response instead of a reset.
//!
//! # Shutdown
//!
//! [`HttpServer::shutdown`] stops the acceptor (the port is free when it
//! returns), closes connections that are waiting for a request, and lets
//! requests in flight finish with `Connection: close`. Streams and WebSockets
//! already handed to their handlers end when their sockets close.

mod body;
mod conn;
#[cfg(feature = "fuzzing")]
mod fuzz;
mod request;
mod response;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::io::{self, ErrorKind, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use log::{debug, warn};
use parking_lot::Mutex;
use polling::{Event, Events, Poller};

#[cfg(feature = "fuzzing")]
pub use fuzz::fuzz_http_request;
pub use request::{BodyError, Method, Request};
pub use response::{status_reason, InvalidHeader, Response};

/// What a server does with each request. It runs on the request's connection
/// thread and must answer it (`respond`, `into_stream`, `upgrade_websocket`);
/// a request dropped unanswered gets a `500`.
pub type Handler = Arc<dyn Fn(Request) + Send + Sync>;

/// Limits and timeouts of an [`HttpServer`].
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// A request head must be complete within this of its first byte (`408`).
    pub head_timeout: Duration,
    /// A kept-alive connection with no new request for this long is closed.
    pub idle_timeout: Duration,
    /// A body must be complete within this of the handler asking for it.
    pub body_timeout: Duration,
    /// A write that makes no progress for this long fails (each partial write
    /// restarts the clock), so a client that stops reading cannot hold a
    /// thread for long. Long-lived streams keep it.
    pub write_timeout: Duration,
    /// Largest request head, request line and headers (`431`).
    pub max_head_bytes: usize,
    /// Most headers in a request (`431`).
    pub max_headers: usize,
    /// Longest request target (`414`).
    pub max_url_bytes: usize,
    /// Open connections (streams included) past which new ones get a `503`.
    pub max_connections: usize,
    /// Listen backlog.
    pub backlog: i32,
    /// Stack of each connection thread (address space; only the pages touched
    /// are memory). Handlers run on it: parsing JSON nested to serde_json's
    /// depth limit of 128 needs about 240 KiB in a debug build, so the default
    /// of 512 KiB leaves a margin of two.
    pub thread_stack: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            head_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            body_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(5),
            max_head_bytes: 16 * 1024,
            max_headers: 100,
            max_url_bytes: 8 * 1024,
            max_connections: 20_000,
            backlog: 1024,
            thread_stack: 512 * 1024,
        }
    }
}

/// Accept errors that only concern the connection being accepted; anything else
/// (out of descriptors, buffers or memory) gets a back-off before the next try.
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(10);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_millis(100);

/// What the acceptor does after `accept()` failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AcceptAction {
    /// Nothing is pending: wait for the listener to become readable.
    Wait,
    /// One connection failed before it was accepted: accept the next at once.
    Retry,
    /// The process is short of something (descriptors, memory): sleep, then retry.
    BackOff,
}

/// Classifies an `accept()` error. None of them ends the accept loop.
pub(crate) fn accept_action(e: &io::Error) -> AcceptAction {
    match e.kind() {
        ErrorKind::WouldBlock => AcceptAction::Wait,
        ErrorKind::Interrupted | ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset => {
            AcceptAction::Retry
        }
        _ => match e.raw_os_error() {
            // Linux reports errors of the new connection through accept(2) too;
            // its man page says to treat them like EAGAIN.
            #[cfg(target_os = "linux")]
            Some(
                libc::EPROTO
                | libc::ENOPROTOOPT
                | libc::EHOSTDOWN
                | libc::ENONET
                | libc::EHOSTUNREACH
                | libc::EOPNOTSUPP
                | libc::ENETUNREACH
                | libc::ETIMEDOUT,
            ) => AcceptAction::Retry,
            _ => AcceptAction::BackOff,
        },
    }
}

/// A connection's socket, shared between its thread and the server's table of
/// open connections (so shutdown can close the idle ones).
pub(crate) struct Socket {
    pub(crate) tcp: TcpStream,
    /// Waiting for a request: safe to close on shutdown.
    pub(crate) idle: AtomicBool,
}

pub(crate) struct Shared {
    pub(crate) config: HttpConfig,
    pub(crate) handler: Handler,
    pub(crate) stopping: AtomicBool,
    /// Connection threads alive (streams included).
    pub(crate) open: AtomicUsize,
    next_id: AtomicU64,
    /// Connections still owned by the server (not handed to a stream handler).
    pub(crate) sockets: Mutex<HashMap<u64, Arc<Socket>>>,
}

/// A running HTTP server.
pub struct HttpServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    poller: Arc<Poller>,
    acceptor: Option<JoinHandle<()>>,
}

/// A listening socket with the options the server wants (`SO_REUSEADDR`, the
/// backlog). Bind it first when the handler needs the bound address.
pub fn listen(addr: SocketAddr, backlog: i32) -> io::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(backlog)?;
    Ok(socket.into())
}

impl HttpServer {
    /// Binds `addr` and starts serving with `handler`.
    pub fn bind(addr: SocketAddr, config: HttpConfig, handler: Handler) -> io::Result<HttpServer> {
        let listener = listen(addr, config.backlog)?;
        Self::from_listener(listener, config, handler)
    }

    /// Serves on a listener bound by the caller (see [`listen`]).
    pub fn from_listener(
        listener: TcpListener,
        config: HttpConfig,
        handler: Handler,
    ) -> io::Result<HttpServer> {
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let poller = Arc::new(Poller::new()?);
        // SAFETY: the listener moves into the acceptor thread, which deletes it
        // from the poller before dropping it.
        unsafe { poller.add(&listener, Event::readable(0))? };
        let shared = Arc::new(Shared {
            config,
            handler,
            stopping: AtomicBool::new(false),
            open: AtomicUsize::new(0),
            next_id: AtomicU64::new(0),
            sockets: Mutex::new(HashMap::new()),
        });
        let acceptor = {
            let shared = shared.clone();
            let poller = poller.clone();
            thread::Builder::new()
                .name("relay-http-accept".into())
                .spawn(move || run_acceptor(&shared, listener, &poller))?
        };
        Ok(HttpServer {
            addr,
            shared,
            poller,
            acceptor: Some(acceptor),
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connection threads alive, streams included.
    pub fn open_connections(&self) -> usize {
        self.shared.open.load(Ordering::Acquire)
    }

    /// Stops accepting (the port is free when this returns), closes idle
    /// connections; requests in flight finish with `Connection: close`.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if self.shared.stopping.swap(true, Ordering::SeqCst) {
            return;
        }
        let _ = self.poller.notify();
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        // A connection marks itself idle, then checks `stopping`; this sets
        // `stopping`, then looks at `idle`: one of the two sees the other.
        for socket in self.shared.sockets.lock().values() {
            if socket.idle.load(Ordering::SeqCst) {
                let _ = socket.tcp.shutdown(Shutdown::Both);
            }
        }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn run_acceptor(shared: &Arc<Shared>, listener: TcpListener, poller: &Poller) {
    let mut events = Events::new();
    let mut backoff = ACCEPT_BACKOFF_MIN;
    while !shared.stopping.load(Ordering::Acquire) {
        events.clear();
        let waited = poller
            .modify(&listener, Event::readable(0))
            .and_then(|()| poller.wait(&mut events, None));
        if let Err(e) = waited {
            if e.kind() != ErrorKind::Interrupted {
                warn!("http: acceptor poll failed: {e}");
                thread::sleep(ACCEPT_BACKOFF_MAX);
            }
        }
        loop {
            if shared.stopping.load(Ordering::Acquire) {
                break;
            }
            match listener.accept() {
                Ok((tcp, peer)) => {
                    backoff = ACCEPT_BACKOFF_MIN;
                    admit(shared, tcp, peer);
                }
                Err(e) => match accept_action(&e) {
                    AcceptAction::Wait => break,
                    AcceptAction::Retry => {
                        debug!("http: accept: {e}");
                        continue;
                    }
                    AcceptAction::BackOff => {
                        warn!("http: accept failed: {e}; retrying in {backoff:?}");
                        thread::sleep(backoff);
                        backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                        break;
                    }
                },
            }
        }
    }
    let _ = poller.delete(&listener);
}

/// Removes a connection from the table and the count when its thread ends.
struct Registered {
    shared: Arc<Shared>,
    id: u64,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.shared.sockets.lock().remove(&self.id);
        self.shared.open.fetch_sub(1, Ordering::AcqRel);
    }
}

fn admit(shared: &Arc<Shared>, tcp: TcpStream, peer: SocketAddr) {
    let config = &shared.config;
    if shared.open.load(Ordering::Acquire) >= config.max_connections {
        warn!(
            "http: refusing {peer}: {} connections open",
            config.max_connections
        );
        refuse(tcp);
        return;
    }
    // Accepted sockets do not inherit O_NONBLOCK on Linux, but do elsewhere.
    let setup = tcp
        .set_nonblocking(false)
        .and_then(|()| tcp.set_nodelay(true))
        .and_then(|()| tcp.set_write_timeout(Some(config.write_timeout)));
    if let Err(e) = setup {
        debug!("http: cannot set up {peer}: {e}");
        return;
    }
    let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
    let socket = Arc::new(Socket {
        tcp,
        idle: AtomicBool::new(true),
    });
    shared.sockets.lock().insert(id, socket.clone());
    shared.open.fetch_add(1, Ordering::AcqRel);
    let registered = Registered {
        shared: shared.clone(),
        id,
    };
    let conn_shared = shared.clone();
    let spawned = thread::Builder::new()
        .name("relay-http".into())
        .stack_size(config.thread_stack)
        .spawn(move || {
            let _registered = registered;
            conn::serve(conn_shared, id, socket, peer);
        });
    if let Err(e) = spawned {
        // The closure, and with it the socket and the registration, is dropped.
        warn!("http: cannot start a thread for {peer}: {e}");
        thread::sleep(ACCEPT_BACKOFF_MIN);
    }
}

/// `503` to a connection over the limit, without ever blocking the acceptor.
fn refuse(tcp: TcpStream) {
    let reply = Response::json(
        503,
        &serde_json::json!({"error": {"code": "overloaded", "message": "too many connections"}}),
    )
    .to_bytes(true, true);
    let _ = tcp.set_nonblocking(true);
    let _ = (&tcp).write(&reply);
    let _ = tcp.shutdown(Shutdown::Write);
}

/// Whether the peer of a stream handed over by [`Request::into_stream`] has
/// closed its end (or reset it), without blocking and without consuming
/// anything it sent. An SSE writer calls this while idle, so a browser that went
/// away is noticed before the next heartbeat.
pub fn peer_closed(stream: &TcpStream) -> bool {
    let mut byte = [std::mem::MaybeUninit::<u8>::uninit(); 1];
    #[cfg(unix)]
    let peeked = socket2::SockRef::from(stream)
        .recv_with_flags(&mut byte, libc::MSG_PEEK | libc::MSG_DONTWAIT);
    #[cfg(not(unix))]
    let peeked = {
        let _ = stream.set_nonblocking(true);
        let r = socket2::SockRef::from(stream).peek(&mut byte);
        let _ = stream.set_nonblocking(false);
        r
    };
    match peeked {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted),
    }
}
