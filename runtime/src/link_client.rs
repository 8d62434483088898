//! The edge's link client: one thread drives the protocol's [`LinkSession`] over a
//! real WebSocket, for the whole process.
//!
//! The session lives behind a mutex that the link thread and command submitters
//! share. A submitter locks it only to queue a command, then wakes the link
//! thread, which writes the frame at once even while it was waiting for incoming
//! frames (see `ws_io`). Outputs that are not IO (events, replies, status) go to the
//! [`LinkEvents`] sink outside the lock.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle, Thread};
use std::time::{Duration, Instant};

use log::{info, warn};
use parking_lot::Mutex;
use relay_protocol::frame::GatewayCommand;
use relay_protocol::link_session::{
    ConnectError as LinkConnectError, LinkConfig, LinkOutput, LinkSession, SubmitError, Submitted,
};

use crate::ws_io::{self, ConnectError, Incoming, Waker, WsConn};

/// Receives every output of the link that is not socket IO: `Ready`, `Publish`,
/// `Malformed`, `Completed`, `Status`, `Rtt`, `Reconnecting`.
pub trait LinkEvents: Send + 'static {
    /// Called on the link thread, in order, outside the session lock.
    fn on_output(&mut self, output: LinkOutput);
    /// Called when a connection attempt fails (for logs and metrics).
    fn on_connect_error(&mut self, _error: &ConnectError) {}
}

struct Shared {
    session: Mutex<LinkSession>,
    /// How to interrupt the link thread: its socket's poller while connected.
    waker: Mutex<Option<Waker>>,
    thread: Mutex<Option<Thread>>,
    stop: AtomicBool,
}

impl Shared {
    fn wake(&self) {
        if let Some(w) = self.waker.lock().as_ref() {
            w.wake();
        }
        if let Some(t) = self.thread.lock().as_ref() {
            t.unpark();
        }
    }
}

/// A cheap, cloneable handle for submitting commands and reading link state.
#[derive(Clone)]
pub struct LinkHandle {
    shared: Arc<Shared>,
}

impl LinkHandle {
    /// Queues a command. `waiting` says a caller will wait for the reply (link up);
    /// `Submitted::Queued` means the link is down and the command waits for it.
    pub fn submit(&self, command: GatewayCommand, waiting: bool) -> Result<Submitted, SubmitError> {
        let result = self
            .shared
            .session
            .lock()
            .submit(Instant::now(), command, waiting);
        if result.is_ok() {
            self.shared.wake();
        }
        result
    }

    /// Sends a command only if the link is up now (reads: never queued);
    /// [`SubmitError::LinkDown`] otherwise. The caller waits for the reply.
    pub fn submit_now(&self, command: GatewayCommand) -> Result<(), SubmitError> {
        let result = self
            .shared
            .session
            .lock()
            .submit_now(Instant::now(), command);
        if result.is_ok() {
            self.shared.wake();
        }
        result
    }

    /// Whether the link is up now.
    pub fn is_connected(&self) -> bool {
        self.shared.session.lock().is_connected()
    }

    /// Commands waiting to be sent or answered.
    pub fn queue_len(&self) -> usize {
        self.shared.session.lock().queue_len()
    }

    /// Asks the link thread to close the socket and stop.
    pub fn shutdown(&self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.wake();
    }
}

/// The running link client.
pub struct LinkClient {
    handle: LinkHandle,
    thread: Option<JoinHandle<()>>,
}

impl LinkClient {
    /// Starts the link thread; it connects at once and reconnects forever.
    pub fn spawn(config: LinkConfig, events: impl LinkEvents) -> LinkClient {
        Self::spawn_with(config, |_| events)
    }

    /// Like [`LinkClient::spawn`], for a sink that needs the link's own handle
    /// (to send commands of its own, such as asking the gateway for data).
    pub fn spawn_with<E: LinkEvents>(
        config: LinkConfig,
        make: impl FnOnce(LinkHandle) -> E,
    ) -> LinkClient {
        let connect_timeout = config.connect_timeout;
        let shared = Arc::new(Shared {
            session: Mutex::new(LinkSession::new(config)),
            waker: Mutex::new(None),
            thread: Mutex::new(None),
            stop: AtomicBool::new(false),
        });
        let events = make(LinkHandle {
            shared: shared.clone(),
        });
        let driver = Driver {
            shared: shared.clone(),
            events,
            conn: None,
            connect_timeout,
        };
        let thread = thread::Builder::new()
            .name("relay-link".into())
            .spawn(move || driver.run())
            .expect("spawning the link thread");
        *shared.thread.lock() = Some(thread.thread().clone());
        LinkClient {
            handle: LinkHandle { shared },
            thread: Some(thread),
        }
    }

    /// A handle for submitting commands.
    pub fn handle(&self) -> LinkHandle {
        self.handle.clone()
    }

    /// Stops the link thread and waits for it.
    pub fn shutdown(mut self) {
        self.handle.shutdown();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for LinkClient {
    fn drop(&mut self) {
        self.handle.shutdown();
    }
}

struct Driver<E> {
    shared: Arc<Shared>,
    events: E,
    conn: Option<WsConn>,
    connect_timeout: Duration,
}

impl<E: LinkEvents> Driver<E> {
    fn run(mut self) {
        self.shared.session.lock().start(Instant::now());
        loop {
            if self.shared.stop.load(Ordering::SeqCst) {
                self.shared.session.lock().close(Instant::now());
                self.drain();
                if let Some(mut conn) = self.conn.take() {
                    conn.close(1000, "edge shutting down");
                }
                return;
            }
            self.shared.session.lock().handle_timeout(Instant::now());
            self.drain();
            // Read before sleeping: the handshake (or an earlier read) may have left
            // whole frames in tungstenite's buffer, which epoll cannot see.
            self.read_all();
            // A close seen while reading leaves outputs (status, reconnect) to carry out.
            self.drain();
            let timeout = self
                .shared
                .session
                .lock()
                .poll_timeout()
                .map(|t| t.saturating_duration_since(Instant::now()));
            match self.conn.as_mut() {
                Some(conn) => {
                    if let Err(e) = conn.wait(timeout) {
                        warn!("link poll failed: {e}");
                        self.lost(None);
                    }
                }
                None => thread::park_timeout(timeout.unwrap_or(Duration::from_secs(1))),
            }
        }
    }

    /// Feeds every complete incoming message to the session.
    fn read_all(&mut self) {
        loop {
            let Some(conn) = self.conn.as_mut() else {
                return;
            };
            match conn.read() {
                Ok(None) => return,
                Ok(Some(Incoming::Text(text))) => {
                    self.shared
                        .session
                        .lock()
                        .handle_text(Instant::now(), &text);
                    // Publish as we go so one burst of frames does not wait for the last.
                    self.drain();
                }
                Ok(Some(Incoming::Pong(payload))) => self
                    .shared
                    .session
                    .lock()
                    .handle_pong(Instant::now(), &payload),
                Ok(Some(Incoming::Closed(code))) => {
                    self.lost(code);
                    return;
                }
                Err(e) => {
                    warn!("link read failed: {e}");
                    self.lost(None);
                    return;
                }
            }
        }
    }

    fn lost(&mut self, code: Option<u16>) {
        if let Some(code) = code {
            info!("link closed by the gateway with code {code}");
        }
        self.conn = None;
        *self.shared.waker.lock() = None;
        self.shared
            .session
            .lock()
            .handle_closed(Instant::now(), rand::random::<f64>());
    }

    /// Carries out every pending output: socket work here, the rest to the sink.
    fn drain(&mut self) {
        loop {
            let Some(output) = self.shared.session.lock().poll_output() else {
                break;
            };
            match output {
                LinkOutput::Connect { url, headers } => self.connect(&url, &headers),
                LinkOutput::Send(text) => {
                    let sent = self.conn.as_mut().map(|c| c.send_text(text));
                    if let Some(Err(e)) = sent {
                        warn!("link write failed: {e}");
                        self.lost(None);
                    }
                }
                LinkOutput::Ping(payload) => {
                    if let Some(Err(e)) = self.conn.as_mut().map(|c| c.send_ping(payload)) {
                        warn!("link ping failed: {e}");
                        self.lost(None);
                    }
                }
                LinkOutput::Disconnect { reason } => {
                    // The session already counts the link as down; after a pong or
                    // connect timeout it waits for handle_closed to schedule the retry.
                    let stopping = self.shared.stop.load(Ordering::SeqCst);
                    if let Some(mut conn) = self.conn.take() {
                        conn.close(1001, reason.code());
                    }
                    *self.shared.waker.lock() = None;
                    if !stopping {
                        self.shared
                            .session
                            .lock()
                            .handle_closed(Instant::now(), rand::random::<f64>());
                    }
                }
                other => self.events.on_output(other),
            }
        }
        if let Some(conn) = self.conn.as_mut() {
            if let Err(e) = conn.flush() {
                warn!("link flush failed: {e}");
                self.lost(None);
            }
        }
    }

    fn connect(&mut self, url: &str, headers: &[(String, String)]) {
        match ws_io::connect(url, headers, self.connect_timeout) {
            Ok(conn) => {
                *self.shared.waker.lock() = Some(conn.waker());
                self.conn = Some(conn);
                self.shared.session.lock().handle_connected(Instant::now());
            }
            Err(e) => {
                self.events.on_connect_error(&e);
                let reason = match e {
                    ConnectError::Unauthorized => LinkConnectError::Unauthorized,
                    ConnectError::Status(status) => LinkConnectError::Rejected { status },
                    ConnectError::Io(msg) => LinkConnectError::Other(msg),
                };
                self.shared.session.lock().handle_connect_failed(
                    Instant::now(),
                    reason,
                    rand::random::<f64>(),
                );
            }
        }
    }
}
