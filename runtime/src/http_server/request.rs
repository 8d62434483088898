//! A parsed request: its head (checked against the limits), its body read on
//! demand with a limit, and the ways to answer it.

use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc::SyncSender;
use std::time::Instant;

use serde_json::json;

use super::body::{BodyDecoder, Decoded};
use super::conn::{After, Conn, Fill};
use super::{HttpConfig, Response};

/// A request method.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Method {
    /// `GET`
    Get,
    /// `HEAD`
    Head,
    /// `POST`
    Post,
    /// `PUT`
    Put,
    /// `DELETE`
    Delete,
    /// `OPTIONS`
    Options,
    /// `PATCH`
    Patch,
    /// Any other token.
    Other(String),
}

impl Method {
    fn from_token(token: &str) -> Method {
        match token {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "DELETE" => Method::Delete,
            "OPTIONS" => Method::Options,
            "PATCH" => Method::Patch,
            other => Method::Other(other.to_owned()),
        }
    }

    /// The method as sent.
    pub fn as_str(&self) -> &str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
            Method::Options => "OPTIONS",
            Method::Patch => "PATCH",
            Method::Other(other) => other,
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a body could not be read. After any of them the connection closes once
/// the request is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyError {
    /// More than the limit (declared by `Content-Length`, or seen while
    /// decoding chunks).
    TooLarge,
    /// A malformed chunked body.
    Invalid,
    /// The body did not arrive within the configured body timeout.
    TimedOut,
    /// The connection ended or failed mid-body.
    Io,
}

impl fmt::Display for BodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BodyError::TooLarge => "body too large",
            BodyError::Invalid => "malformed chunked body",
            BodyError::TimedOut => "body timed out",
            BodyError::Io => "connection failed mid-body",
        })
    }
}

impl std::error::Error for BodyError {}

/// How the request's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    Empty,
    Length(u64),
    Chunked,
}

/// A request head, parsed and checked.
#[derive(Debug)]
pub(crate) struct Head {
    method: Method,
    target: String,
    minor: u8,
    headers: Vec<(String, Vec<u8>)>,
    framing: Framing,
    expect_continue: bool,
    keep_alive: bool,
}

fn error(status: u16, code: &str, message: &str) -> Response {
    Response::json(
        status,
        &json!({"error": {"code": code, "message": message}}),
    )
}

fn bad_request(message: &str) -> Response {
    error(400, "invalid_request", message)
}

fn uri_too_long() -> Response {
    error(414, "uri_too_long", "the request target is too long")
}

fn headers_too_large(message: &str) -> Response {
    error(431, "headers_too_large", message)
}

impl Head {
    /// Parses `buf` as a request head. `Ok(None)`: not complete yet; `Err`: the
    /// answer to send before closing.
    pub(crate) fn parse(
        buf: &[u8],
        config: &HttpConfig,
    ) -> Result<Option<(Head, usize)>, Response> {
        let mut headers = vec![httparse::EMPTY_HEADER; config.max_headers];
        let mut req = httparse::Request::new(&mut headers);
        let len = match req.parse(buf) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) => {
                if req.path.is_some_and(|p| p.len() > config.max_url_bytes) {
                    return Err(uri_too_long());
                }
                return Ok(None);
            }
            Err(httparse::Error::TooManyHeaders) => {
                return Err(headers_too_large("too many headers"))
            }
            Err(e) => return Err(bad_request(&format!("malformed request: {e}"))),
        };
        if len > config.max_head_bytes {
            return Err(headers_too_large("the request head is too large"));
        }
        let (Some(method), Some(target), Some(minor)) = (req.method, req.path, req.version) else {
            return Err(bad_request("malformed request"));
        };
        if target.len() > config.max_url_bytes {
            return Err(uri_too_long());
        }
        if has_control_chars(target) {
            return Err(bad_request("control characters in the request target"));
        }
        let headers: Vec<(String, Vec<u8>)> = req
            .headers
            .iter()
            .map(|h| (h.name.to_owned(), h.value.to_vec()))
            .collect();
        let mut head = Head {
            method: Method::from_token(method),
            target: target.to_owned(),
            minor,
            headers,
            framing: Framing::Empty,
            expect_continue: false,
            keep_alive: false,
        };
        head.framing = head.read_framing()?;
        head.expect_continue = match head.header("Expect") {
            None => false,
            Some(e) if e.trim().eq_ignore_ascii_case("100-continue") => minor == 1,
            Some(_) => {
                return Err(error(
                    417,
                    "expectation_failed",
                    "only Expect: 100-continue is supported",
                ))
            }
        };
        let close = head.has_token("Connection", "close");
        head.keep_alive = !close && (minor == 1 || head.has_token("Connection", "keep-alive"));
        Ok(Some((head, len)))
    }

    /// How the body after this head is delimited.
    #[cfg(feature = "fuzzing")]
    pub(crate) fn framing(&self) -> Framing {
        self.framing
    }

    /// The request target, as sent.
    #[cfg(feature = "fuzzing")]
    pub(crate) fn target(&self) -> &str {
        &self.target
    }

    /// `1` for HTTP/1.1, `0` for HTTP/1.0.
    #[cfg(feature = "fuzzing")]
    pub(crate) fn minor(&self) -> u8 {
        self.minor
    }

    /// The answer to a head that outgrew `max_head_bytes` before completing:
    /// `414` if the request line alone is that long, else `431`.
    pub(crate) fn too_large(buf: &[u8], config: &HttpConfig) -> Response {
        let line = buf.iter().position(|&b| b == b'\n').unwrap_or(buf.len());
        if line > config.max_url_bytes {
            uri_too_long()
        } else {
            headers_too_large("the request head is too large")
        }
    }

    fn read_framing(&self) -> Result<Framing, Response> {
        let mut length: Option<u64> = None;
        for value in self.values("Content-Length") {
            let digits = std::str::from_utf8(value).unwrap_or("").trim();
            let parsed = (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
                .then(|| digits.parse::<u64>().ok())
                .flatten();
            match (parsed, length) {
                (None, _) => return Err(bad_request("invalid Content-Length")),
                (Some(n), Some(m)) if n != m => {
                    return Err(bad_request("conflicting Content-Length headers"))
                }
                (Some(n), _) => length = Some(n),
            }
        }
        let mut transfer_encoding = false;
        let mut codings: Vec<Vec<u8>> = Vec::new();
        for value in self.values("Transfer-Encoding") {
            transfer_encoding = true;
            codings.extend(
                value
                    .split(|&b| b == b',')
                    .map(|t| t.trim_ascii().to_ascii_lowercase())
                    .filter(|t| !t.is_empty()),
            );
        }
        if !transfer_encoding {
            return Ok(match length {
                None | Some(0) => Framing::Empty,
                Some(n) => Framing::Length(n),
            });
        }
        // Both, or a transfer coding in HTTP/1.0: the framing is ambiguous, and
        // reading it either way invites request smuggling.
        if length.is_some() {
            return Err(bad_request("both Content-Length and Transfer-Encoding"));
        }
        if self.minor == 0 {
            return Err(bad_request("Transfer-Encoding in HTTP/1.0"));
        }
        if codings != [b"chunked"] {
            return Err(error(
                501,
                "not_implemented",
                "only Transfer-Encoding: chunked is supported",
            ));
        }
        Ok(Framing::Chunked)
    }

    fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.headers
            .iter()
            .filter(move |(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }

    /// Whether any `name` header lists `token` (comma-separated, any case).
    fn has_token(&self, name: &str, token: &str) -> bool {
        self.values(name).any(|v| {
            v.split(|&b| b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
        })
    }
}

/// Raw control characters (httparse already refuses them), an encoded NUL
/// anywhere, or encoded control characters in the path.
fn has_control_chars(target: &str) -> bool {
    if target.bytes().any(|b| b < 0x20 || b == 0x7f) {
        return true;
    }
    let path_end = target.find('?').unwrap_or(target.len());
    let bytes = target.as_bytes();
    bytes.windows(3).enumerate().any(|(i, w)| {
        if w[0] != b'%' {
            return false;
        }
        let hex = |b: u8| (b as char).to_digit(16);
        match (hex(w[1]), hex(w[2])) {
            (Some(hi), Some(lo)) => {
                let decoded = hi * 16 + lo;
                decoded == 0 || (i < path_end && (decoded < 0x20 || decoded == 0x7f))
            }
            _ => false,
        }
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyState {
    Unread,
    Read,
    Broken,
}

/// A request, with its connection until it is answered.
pub struct Request {
    head: Head,
    peer: SocketAddr,
    body: BodyState,
    sent_continue: bool,
    conn: Option<Conn>,
    done: SyncSender<After>,
}

impl fmt::Debug for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Request")
            .field("method", &self.head.method)
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

impl Request {
    pub(crate) fn new(head: Head, conn: Conn, peer: SocketAddr, done: SyncSender<After>) -> Self {
        let body = if head.framing == Framing::Empty {
            BodyState::Read
        } else {
            BodyState::Unread
        };
        Request {
            head,
            peer,
            body,
            sent_continue: false,
            conn: Some(conn),
            done,
        }
    }

    /// The method.
    pub fn method(&self) -> &Method {
        &self.head.method
    }

    /// The request target as sent: path and query for the usual origin form.
    pub fn url(&self) -> &str {
        &self.head.target
    }

    /// `1` for HTTP/1.1, `0` for HTTP/1.0.
    pub fn http_minor_version(&self) -> u8 {
        self.head.minor
    }

    /// The first value of header `name` (case-insensitive), if it is UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.header(name)
    }

    /// Every header, in order, with its raw value.
    pub fn headers(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.head
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_slice()))
    }

    /// The client's address.
    pub fn remote_addr(&self) -> SocketAddr {
        self.peer
    }

    /// The body's declared length (`Some(0)` without a body); `None` when chunked.
    pub fn body_length(&self) -> Option<usize> {
        match self.head.framing {
            Framing::Empty => Some(0),
            Framing::Length(n) => Some(usize::try_from(n).unwrap_or(usize::MAX)),
            Framing::Chunked => None,
        }
    }

    /// Reads the whole body, at most `limit` bytes. A declared `Content-Length`
    /// above the limit is refused before anything is read (and before
    /// `100 Continue` is sent). A second call returns an empty body.
    pub fn read_body(&mut self, limit: usize) -> Result<Vec<u8>, BodyError> {
        match self.body {
            BodyState::Read => return Ok(Vec::new()),
            BodyState::Broken => return Err(BodyError::Invalid),
            BodyState::Unread => {}
        }
        let decoder = BodyDecoder::new(self.head.framing, limit)?;
        let conn = self.conn.as_mut().ok_or(BodyError::Io)?;
        let deadline = Instant::now() + conn.shared.config.body_timeout;
        if self.head.expect_continue && !self.sent_continue {
            self.sent_continue = true;
            conn.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                .map_err(|_| BodyError::Io)?;
        }
        let read = read_with(conn, decoder, deadline);
        self.body = if read.is_ok() {
            BodyState::Read
        } else {
            BodyState::Broken
        };
        read
    }

    /// Sends `response`. The connection stays open for the next request unless
    /// the client or the response asked to close, the body was not read to the
    /// end, or the server is shutting down.
    pub fn respond(mut self, response: Response) -> io::Result<()> {
        self.answer(&response)
    }

    fn answer(&mut self, response: &Response) -> io::Result<()> {
        let Some(conn) = self.conn.take() else {
            return Err(io::Error::other("the request was already answered"));
        };
        let body_read = self.body == BodyState::Read;
        let close =
            !self.head.keep_alive || !body_read || response.wants_close() || conn.stopping();
        let with_body = self.head.method != Method::Head;
        let written = conn.write_all(&response.to_bytes(close, with_body));
        let after = if written.is_err() {
            After::Close {
                conn,
                linger: false,
            }
        } else if close {
            let linger = !body_read || !conn.buf.is_empty();
            After::Close { conn, linger }
        } else {
            After::KeepAlive(conn)
        };
        let _ = self.done.send(after);
        written
    }

    /// Answers with `head` (status and headers, `Connection: close`, no
    /// `Content-Length`, then its body if it has one) and hands over the socket:
    /// the caller writes the rest of the response for as long as it likes, and
    /// the connection ends when it drops the socket. The socket keeps the write
    /// timeout and has no read timeout.
    pub fn into_stream(mut self, head: Response) -> io::Result<TcpStream> {
        let conn = self.take_conn()?;
        let written = conn.write_all(&head.to_stream_bytes());
        let _ = self.done.send(After::HandedOff);
        written?;
        conn.into_tcp()
    }

    /// Like [`Request::into_stream`], but writes nothing: hands over the socket
    /// together with the bytes of `head` (status, headers, `Connection: close`,
    /// its body if it has one), for a writer that sends them itself, e.g. on a
    /// non-blocking socket ([`crate::sse_pool`]). The socket keeps the write
    /// timeout and has no read timeout.
    pub fn into_stream_unsent(mut self, head: Response) -> io::Result<(TcpStream, Vec<u8>)> {
        let conn = self.take_conn()?;
        let _ = self.done.send(After::HandedOff);
        Ok((conn.into_tcp()?, head.to_stream_bytes()))
    }

    /// Why this request is not a WebSocket upgrade this server accepts (GET,
    /// HTTP/1.1, `Upgrade: websocket`, `Connection: Upgrade`,
    /// `Sec-WebSocket-Version: 13`, a 16-byte base64 `Sec-WebSocket-Key`), or
    /// `None` if it is one.
    pub fn websocket_upgrade_error(&self) -> Option<&'static str> {
        if self.head.method != Method::Get {
            return Some("a WebSocket upgrade is a GET");
        }
        if self.head.minor != 1 {
            return Some("a WebSocket upgrade needs HTTP/1.1");
        }
        if !self.head.has_token("Upgrade", "websocket") {
            return Some("expected Upgrade: websocket");
        }
        if !self.head.has_token("Connection", "upgrade") {
            return Some("expected Connection: Upgrade");
        }
        if self.header("Sec-WebSocket-Version").map(str::trim) != Some("13") {
            return Some("expected Sec-WebSocket-Version: 13");
        }
        let key = self.header("Sec-WebSocket-Key").map(str::trim);
        if !key.is_some_and(is_websocket_key) {
            return Some("expected a Sec-WebSocket-Key of 16 bytes in base64");
        }
        None
    }

    /// Completes a WebSocket handshake (`101` with `Sec-WebSocket-Accept`) and
    /// hands over the socket, for `tungstenite::WebSocket::from_raw_socket`.
    /// A request that is not a valid upgrade is answered `400` (see
    /// [`Request::websocket_upgrade_error`]) and yields an `InvalidInput` error.
    pub fn upgrade_websocket(mut self) -> io::Result<TcpStream> {
        if let Some(problem) = self.websocket_upgrade_error() {
            let reply =
                error(400, "invalid_request", problem).header("Sec-WebSocket-Version", "13");
            let _ = self.answer(&reply);
            return Err(io::Error::new(io::ErrorKind::InvalidInput, problem));
        }
        let key = self.header("Sec-WebSocket-Key").unwrap_or_default().trim();
        let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
        let conn = self.take_conn()?;
        let written = conn.write_all(
            format!(
                "HTTP/1.1 101 Switching Protocols\r\n\
                 Upgrade: websocket\r\n\
                 Connection: Upgrade\r\n\
                 Sec-WebSocket-Accept: {accept}\r\n\r\n"
            )
            .as_bytes(),
        );
        let _ = self.done.send(After::HandedOff);
        written?;
        conn.into_tcp()
    }

    fn take_conn(&mut self) -> io::Result<Conn> {
        self.conn
            .take()
            .ok_or_else(|| io::Error::other("the request was already answered"))
    }
}

impl Drop for Request {
    fn drop(&mut self) {
        if self.conn.is_some() {
            let _ = self.answer(&error(500, "internal", "the request was not answered"));
        }
    }
}

fn is_websocket_key(key: &str) -> bool {
    let b = key.as_bytes();
    b.len() == 24
        && b.ends_with(b"==")
        && b[..22]
            .iter()
            .all(|&c| c.is_ascii_alphanumeric() || c == b'+' || c == b'/')
}

fn fill_error(fill: Fill) -> BodyError {
    match fill {
        Fill::TimedOut => BodyError::TimedOut,
        Fill::Eof | Fill::Failed => BodyError::Io,
    }
}

/// Feeds `decoder` from the connection until the body ends. Bytes read past
/// it (a pipelined next request) stay in the connection's buffer.
fn read_with(
    conn: &mut Conn,
    mut decoder: BodyDecoder,
    deadline: Instant,
) -> Result<Vec<u8>, BodyError> {
    loop {
        match decoder.feed(&conn.buf)? {
            Decoded::Done { body, used } => {
                conn.buf.drain(..used);
                return Ok(body);
            }
            Decoded::NeedMore => {
                conn.buf.clear();
                conn.fill(deadline).map_err(fill_error)?;
            }
        }
    }
}
