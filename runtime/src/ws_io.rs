//! A WebSocket connection one thread drives without blocking anyone else.
//!
//! A thread blocked in `read()` cannot write, so a command waiting to be sent
//! would sit until the next frame arrived (DESIGN.md "Threads"). Here the socket is
//! non-blocking and the owning thread sleeps in `epoll` (via `polling`) until the
//! socket is readable, writable again after a short write, a deadline passes, or
//! another thread calls [`Waker::wake`] because it queued something to send.

use std::io::{self, ErrorKind};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use polling::{Event, Events, Poller};
use tungstenite::client::IntoClientRequest;
use tungstenite::handshake::client::Response;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Error as WsError, Message, WebSocket};

/// Largest link frame accepted (CONTRACT.md §5: 1 MiB).
pub const MAX_MESSAGE_BYTES: usize = 1024 * 1024;

/// The one key this poller registers: the socket.
const SOCKET_KEY: usize = 7;

/// Wakes the thread driving a [`WsConn`] from any other thread.
#[derive(Clone)]
pub struct Waker(Arc<Poller>);

impl Waker {
    /// Interrupts the current or next [`WsConn::wait`].
    pub fn wake(&self) {
        // A failed notify only means the poller is gone with its connection.
        let _ = self.0.notify();
    }
}

/// Why connecting failed, classified for logs and backoff.
#[derive(Debug)]
pub enum ConnectError {
    /// The peer answered the upgrade with 401.
    Unauthorized,
    /// The peer answered with another HTTP status.
    Status(u16),
    /// TCP, TLS or protocol failure.
    Io(String),
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectError::Unauthorized => f.write_str("rejected with 401 (check LINK_TOKEN)"),
            ConnectError::Status(s) => write!(f, "upgrade answered with HTTP {s}"),
            ConnectError::Io(e) => f.write_str(e),
        }
    }
}

/// The socket configuration for link and Discord connections.
pub fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE_BYTES))
        .max_frame_size(Some(MAX_MESSAGE_BYTES))
}

/// Opens a client connection (`ws://` or `wss://`) with a connect timeout and extra
/// upgrade headers, then hands it over non-blocking.
pub fn connect(
    url: &str,
    headers: &[(String, String)],
    timeout: Duration,
) -> Result<WsConn, ConnectError> {
    connect_with_config(url, headers, timeout, ws_config())
}

/// [`connect`] with another socket configuration: Discord's gateway messages are
/// not bound by the link's 1 MiB.
pub fn connect_with_config(
    url: &str,
    headers: &[(String, String)],
    timeout: Duration,
    config: WebSocketConfig,
) -> Result<WsConn, ConnectError> {
    let mut request = url
        .into_client_request()
        .map_err(|e| ConnectError::Io(format!("bad URL: {e}")))?;
    for (name, value) in headers {
        let name = tungstenite::http::HeaderName::from_bytes(name.as_bytes())
            .map_err(|e| ConnectError::Io(e.to_string()))?;
        let value = tungstenite::http::HeaderValue::from_str(value)
            .map_err(|_| ConnectError::Io("header value is not valid".into()))?;
        request.headers_mut().insert(name, value);
    }
    let uri = request.uri();
    let host = uri
        .host()
        .unwrap_or_default()
        .trim_matches(['[', ']'])
        .to_string();
    let port = uri
        .port_u16()
        .unwrap_or(if uri.scheme_str() == Some("wss") {
            443
        } else {
            80
        });
    let addr: SocketAddr = (host.as_str(), port)
        .to_socket_addrs()
        .map_err(|e| ConnectError::Io(format!("resolve {host}: {e}")))?
        .next()
        .ok_or_else(|| ConnectError::Io(format!("resolve {host}: no address")))?;
    let stream = TcpStream::connect_timeout(&addr, timeout)
        .map_err(|e| ConnectError::Io(format!("connect {addr}: {e}")))?;
    let _ = stream.set_nodelay(true);
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .map_err(|e| ConnectError::Io(e.to_string()))?;
    let (ws, _resp): (_, Response) =
        tungstenite::client_tls_with_config(request, stream, Some(config), None).map_err(|e| {
            match e {
                tungstenite::HandshakeError::Failure(WsError::Http(resp)) => {
                    match resp.status().as_u16() {
                        401 => ConnectError::Unauthorized,
                        s => ConnectError::Status(s),
                    }
                }
                other => ConnectError::Io(other.to_string()),
            }
        })?;
    WsConn::new(ws).map_err(|e| ConnectError::Io(e.to_string()))
}

/// What a read produced.
pub enum Incoming {
    /// A text frame.
    Text(String),
    /// A pong with its payload.
    Pong(Vec<u8>),
    /// The peer closed (with its code, if it sent one).
    Closed(Option<u16>),
}

/// A non-blocking WebSocket plus the poller its thread sleeps in.
pub struct WsConn {
    ws: WebSocket<MaybeTlsStream<TcpStream>>,
    poller: Arc<Poller>,
    events: Events,
    /// A write could not finish: wake up when the socket is writable again.
    blocked_write: bool,
}

impl WsConn {
    /// Takes over an upgraded connection and makes it non-blocking.
    pub fn new(ws: WebSocket<MaybeTlsStream<TcpStream>>) -> io::Result<Self> {
        let tcp = tcp_of(ws.get_ref());
        tcp.set_nonblocking(true)?;
        let poller = Arc::new(Poller::new()?);
        // SAFETY: the socket is owned by `ws`, which lives as long as this WsConn,
        // and Drop deletes it from the poller before the socket is closed.
        unsafe { poller.add(tcp, Event::readable(SOCKET_KEY))? };
        Ok(WsConn {
            ws,
            poller,
            events: Events::new(),
            blocked_write: false,
        })
    }

    /// Wraps a server-side accepted socket after its handshake.
    pub fn from_server(ws: WebSocket<TcpStream>) -> io::Result<Self> {
        let config = *ws.get_config();
        let stream = ws.into_inner();
        let ws = WebSocket::from_raw_socket(
            MaybeTlsStream::Plain(stream),
            tungstenite::protocol::Role::Server,
            Some(config),
        );
        Self::new(ws)
    }

    /// A handle other threads use to interrupt [`WsConn::wait`].
    pub fn waker(&self) -> Waker {
        Waker(self.poller.clone())
    }

    /// Sleeps until the socket is ready, a waker fires, or `timeout` passes.
    ///
    /// Call [`WsConn::read`] until it returns `None` before waiting: frames that
    /// arrived with the handshake, or together with an earlier frame, sit in
    /// tungstenite's buffer where epoll cannot see them.
    pub fn wait(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        let tcp = tcp_of(self.ws.get_ref());
        // Oneshot interest: re-arm every time (readable always, writable if blocked).
        let interest = if self.blocked_write {
            Event::all(SOCKET_KEY)
        } else {
            Event::readable(SOCKET_KEY)
        };
        self.poller.modify(tcp, interest)?;
        self.events.clear();
        match self.poller.wait(&mut self.events, timeout) {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == ErrorKind::Interrupted => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Reads one message if one is complete; `Ok(None)` when the socket has no more.
    pub fn read(&mut self) -> Result<Option<Incoming>, WsError> {
        loop {
            match self.ws.read() {
                Ok(Message::Text(t)) => return Ok(Some(Incoming::Text(t.as_str().to_owned()))),
                Ok(Message::Binary(b)) => {
                    // The link is text-only; pass binary UTF-8 through as text so the
                    // frame parser reports it rather than the socket layer.
                    return Ok(Some(Incoming::Text(
                        String::from_utf8_lossy(&b).into_owned(),
                    )));
                }
                Ok(Message::Pong(p)) => return Ok(Some(Incoming::Pong(p.to_vec()))),
                Ok(Message::Ping(_)) | Ok(Message::Frame(_)) => continue,
                Ok(Message::Close(frame)) => {
                    return Ok(Some(Incoming::Closed(frame.map(|f| u16::from(f.code)))))
                }
                Err(WsError::Io(e)) if e.kind() == ErrorKind::WouldBlock => return Ok(None),
                Err(WsError::ConnectionClosed) | Err(WsError::AlreadyClosed) => {
                    return Ok(Some(Incoming::Closed(None)))
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Queues a text frame and writes as much as the socket takes now.
    pub fn send_text(&mut self, text: String) -> Result<(), WsError> {
        self.send(Message::text(text))
    }

    /// Queues a ping.
    pub fn send_ping(&mut self, payload: Vec<u8>) -> Result<(), WsError> {
        self.send(Message::Ping(payload.into()))
    }

    fn send(&mut self, msg: Message) -> Result<(), WsError> {
        match self.ws.write(msg) {
            Ok(()) => self.flush(),
            Err(WsError::Io(e)) if e.kind() == ErrorKind::WouldBlock => {
                self.blocked_write = true;
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Pushes buffered bytes to the socket; remembers to wait for writability
    /// when the socket is full.
    pub fn flush(&mut self) -> Result<(), WsError> {
        match self.ws.flush() {
            Ok(()) => {
                self.blocked_write = false;
                Ok(())
            }
            Err(WsError::Io(e)) if e.kind() == ErrorKind::WouldBlock => {
                self.blocked_write = true;
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Starts a close handshake with `code` (best effort).
    pub fn close(&mut self, code: u16, reason: &str) {
        let _ = self.ws.close(Some(CloseFrame {
            code: CloseCode::from(code),
            reason: reason.to_owned().into(),
        }));
        let _ = self.ws.flush();
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        tcp_of(self.ws.get_ref()).peer_addr().ok()
    }
}

impl Drop for WsConn {
    fn drop(&mut self) {
        let _ = self.poller.delete(tcp_of(self.ws.get_ref()));
    }
}

fn tcp_of(stream: &MaybeTlsStream<TcpStream>) -> &TcpStream {
    match stream {
        MaybeTlsStream::Plain(s) => s,
        MaybeTlsStream::Rustls(s) => s.get_ref(),
        // MaybeTlsStream is non-exhaustive; relay enables only plain and rustls.
        _ => unreachable!("relay builds tungstenite with rustls only"),
    }
}
