//! One connection's thread: read a request head within its deadlines, hand the
//! request to the handler, take the connection back for the next request.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::debug;
use serde_json::json;

use super::request::{Head, Request};
use super::{Response, Shared, Socket};

/// Bytes read from the socket at a time.
const READ_CHUNK: usize = 8 * 1024;
/// A closing connection drains what the client still sends for at most this
/// long and this much, so the client reads our answer instead of a reset.
const LINGER_TIME: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 1024 * 1024;

/// A connection between requests: the socket and whatever was read past the
/// last request (a pipelined next request).
pub(crate) struct Conn {
    pub(crate) shared: Arc<Shared>,
    id: u64,
    socket: Arc<Socket>,
    pub(crate) buf: Vec<u8>,
}

/// Why a read for more bytes ended without any.
pub(crate) enum Fill {
    /// The peer closed its end.
    Eof,
    /// The deadline passed.
    TimedOut,
    /// The socket failed.
    Failed,
}

impl Conn {
    /// Reads whatever arrives next (up to [`READ_CHUNK`]) into the buffer.
    pub(crate) fn fill(&mut self, deadline: Instant) -> Result<usize, Fill> {
        let mut chunk = [0u8; READ_CHUNK];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Fill::TimedOut);
            }
            if self.socket.tcp.set_read_timeout(Some(left)).is_err() {
                return Err(Fill::Failed);
            }
            match (&self.socket.tcp).read(&mut chunk) {
                Ok(0) => return Err(Fill::Eof),
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    return Ok(n);
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return Err(Fill::TimedOut)
                }
                Err(_) => return Err(Fill::Failed),
            }
        }
    }

    pub(crate) fn write_all(&self, bytes: &[u8]) -> io::Result<()> {
        (&self.socket.tcp).write_all(bytes)
    }

    pub(crate) fn stopping(&self) -> bool {
        self.shared.stopping.load(Ordering::SeqCst)
    }

    /// Gives the socket to a long-lived handler: the server forgets it.
    pub(crate) fn into_tcp(self) -> io::Result<TcpStream> {
        self.shared.sockets.lock().remove(&self.id);
        let tcp = match Arc::try_unwrap(self.socket) {
            Ok(socket) => socket.tcp,
            // Only the table shares the socket, and it no longer does.
            Err(shared) => shared.tcp.try_clone()?,
        };
        tcp.set_read_timeout(None)?;
        Ok(tcp)
    }

    /// Closes after a response while the client may still be sending: stop
    /// writing, drain for a moment, then close.
    fn linger(mut self) {
        let _ = self.socket.tcp.shutdown(Shutdown::Write);
        let deadline = Instant::now() + LINGER_TIME;
        let mut drained = 0;
        while drained < LINGER_BYTES {
            self.buf.clear();
            match self.fill(deadline) {
                Ok(n) => drained += n,
                Err(_) => break,
            }
        }
    }
}

/// What the connection thread does once a request has been answered.
pub(crate) enum After {
    /// Read the next request.
    KeepAlive(Conn),
    /// Close; `linger` when the client may still be sending.
    Close { conn: Conn, linger: bool },
    /// A stream or WebSocket handler owns the socket now.
    HandedOff,
}

/// The connection thread.
pub(crate) fn serve(shared: Arc<Shared>, id: u64, socket: Arc<Socket>, peer: SocketAddr) {
    let handler = shared.handler.clone();
    let mut conn = Conn {
        shared,
        id,
        socket,
        buf: Vec::new(),
    };
    let mut first_request = true;
    loop {
        let head = match read_head(&mut conn, first_request) {
            Ok(Some(head)) => {
                first_request = false;
                head
            }
            Ok(None) => return,
            Err(reply) => {
                debug!("http: {peer}: {}", reply.status());
                if conn.write_all(&reply.to_bytes(true, true)).is_ok() {
                    conn.linger();
                }
                return;
            }
        };
        let (done, answered) = mpsc::sync_channel(1);
        handler(Request::new(head, conn, peer, done));
        // The handler answered (or dropped the request, which answers 500), on
        // this thread or another one.
        conn = match answered.recv() {
            Ok(After::KeepAlive(conn)) => conn,
            Ok(After::Close { conn, linger }) => {
                if linger {
                    conn.linger();
                }
                return;
            }
            Ok(After::HandedOff) | Err(_) => return,
        };
    }
}

/// Reads the next request head. `Ok(None)`: the connection ended or idled out
/// between requests (close silently); `Err`: the answer to send before closing.
/// `first`: a new connection must start its first request within `head_timeout`
/// (a connection that never speaks is a slowloris too); later requests on a
/// kept-alive connection may wait `idle_timeout`.
fn read_head(conn: &mut Conn, first: bool) -> Result<Option<Head>, Response> {
    let config = conn.shared.config.clone();
    conn.socket.idle.store(true, Ordering::SeqCst);
    if conn.stopping() {
        return Ok(None);
    }
    let waiting_since = Instant::now();
    let mut first_byte = (!conn.buf.is_empty()).then_some(waiting_since);
    // Only parse again once a new line has arrived: a client sending one byte
    // at a time must not make us re-parse the whole head for each.
    let mut scanned = 0;
    let head = loop {
        if conn.buf[scanned..].contains(&b'\n') {
            scanned = conn.buf.len();
            if let Some((head, len)) = Head::parse(&conn.buf, &config)? {
                conn.buf.drain(..len);
                break head;
            }
        }
        if conn.buf.len() > config.max_head_bytes {
            return Err(Head::too_large(&conn.buf, &config));
        }
        let deadline = match first_byte {
            Some(t) => t + config.head_timeout,
            None if first => waiting_since + config.head_timeout,
            None => waiting_since + config.idle_timeout,
        };
        match conn.fill(deadline) {
            Ok(_) => {
                first_byte.get_or_insert_with(Instant::now);
            }
            Err(Fill::TimedOut) if first_byte.is_some() => {
                return Err(Response::json(
                    408,
                    &json!({"error": {"code": "request_timeout", "message": "the request head took too long"}}),
                ))
            }
            Err(_) => return Ok(None),
        }
    };
    conn.socket.idle.store(false, Ordering::SeqCst);
    Ok(Some(head))
}
