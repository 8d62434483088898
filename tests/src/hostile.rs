//! Raw HTTP/1.x over `TcpStream` for the hostile-HTTP suite: the test writes
//! every byte, sees every byte of the answer (or that none came), and checks
//! afterwards that the edge still serves ordinary clients.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::harness::Harness;
use crate::test_gateway::message;

/// A command path every check uses.
pub const SEND: &str = "/api/send-message";

/// One response as it came off the wire.
#[derive(Debug, Clone)]
pub struct RawResponse {
    /// `HTTP/1.1`, `HTTP/1.0`.
    pub version: String,
    /// The status code.
    pub status: u16,
    /// The head exactly as sent (status line and header lines, up to the blank line).
    pub head: Vec<u8>,
    /// Headers, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
}

impl RawResponse {
    /// A header by lower-case name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON (`Null` if it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// What came back for a request.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// A complete response.
    Response(RawResponse),
    /// The server closed (or reset) the connection without a response.
    Closed,
    /// Nothing (or no complete response) before the deadline, connection still open.
    Silent,
    /// The connection itself failed (refused: nothing listens any more).
    ConnectFailed(String),
}

impl Outcome {
    /// The status, if a response came.
    pub fn status(&self) -> Option<u16> {
        match self {
            Outcome::Response(r) => Some(r.status),
            _ => None,
        }
    }

    /// The response; panics with `what` otherwise.
    pub fn expect_response(self, what: &str) -> RawResponse {
        match self {
            Outcome::Response(r) => r,
            other => panic!("{what}: expected a response, got {other:?}"),
        }
    }
}

/// A raw client connection with its own read buffer, so several responses on
/// one connection (pipelining) can be read one after another.
pub struct RawConn {
    /// The socket.
    pub stream: TcpStream,
    buf: Vec<u8>,
    eof: bool,
}

impl RawConn {
    /// Connects to `addr`; panics if it cannot.
    pub fn connect(addr: SocketAddr) -> RawConn {
        Self::try_connect(addr).expect("connect to the edge")
    }

    /// Connects to `addr`.
    pub fn try_connect(addr: SocketAddr) -> std::io::Result<RawConn> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        stream.set_nodelay(true)?;
        Ok(RawConn {
            stream,
            buf: Vec::new(),
            eof: false,
        })
    }

    /// Writes all of `bytes`; an error means the server already closed or reset.
    pub fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)?;
        self.stream.flush()
    }

    /// Half-closes the writing side (the server reads EOF).
    pub fn finish_writing(&self) {
        let _ = self.stream.shutdown(Shutdown::Write);
    }

    /// Reads more bytes into the buffer until `deadline`; false on EOF, reset or timeout.
    fn fill(&mut self, deadline: Instant) -> Result<(), Outcome> {
        if self.eof {
            return Err(Outcome::Closed);
        }
        let Some(left) = deadline.checked_duration_since(Instant::now()) else {
            return Err(Outcome::Silent);
        };
        self.stream
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .expect("set read timeout");
        let mut chunk = [0u8; 64 * 1024];
        match self.stream.read(&mut chunk) {
            Ok(0) => {
                self.eof = true;
                Err(Outcome::Closed)
            }
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(())
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                Err(Outcome::Silent)
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => Ok(()),
            Err(_) => {
                self.eof = true;
                Err(Outcome::Closed)
            }
        }
    }

    /// Reads bytes until `n` are buffered.
    fn need(&mut self, n: usize, deadline: Instant) -> Result<(), Outcome> {
        while self.buf.len() < n {
            self.fill(deadline)?;
        }
        Ok(())
    }

    /// Reads up to and including the next CRLF; returns the line without it.
    fn line(&mut self, deadline: Instant) -> Result<Vec<u8>, Outcome> {
        loop {
            if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = self.buf[..i].to_vec();
                self.buf.drain(..i + 2);
                return Ok(line);
            }
            self.fill(deadline)?;
        }
    }

    /// Reads one complete response within `timeout`.
    pub fn read_response(&mut self, timeout: Duration) -> Outcome {
        let deadline = Instant::now() + timeout;
        match self.read_response_until(deadline) {
            Ok(r) => Outcome::Response(r),
            Err(o) => o,
        }
    }

    /// Reads one response head within `timeout`, leaving the body unread (for
    /// streams, which have no end, and for answers to `HEAD`).
    pub fn read_head(&mut self, timeout: Duration) -> Outcome {
        let deadline = Instant::now() + timeout;
        match self.head_until(deadline) {
            Ok(r) => Outcome::Response(r),
            Err(o) => o,
        }
    }

    fn head_until(&mut self, deadline: Instant) -> Result<RawResponse, Outcome> {
        // The whole head first.
        let head_end = loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            self.fill(deadline)?;
        };
        let head: Vec<u8> = self.buf.drain(..head_end).collect();
        let text = String::from_utf8_lossy(&head).into_owned();
        let mut lines = text.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let mut parts = status_line.splitn(3, ' ');
        let version = parts.next().unwrap_or_default().to_owned();
        let status = parts.next().and_then(|s| s.parse().ok()).unwrap_or(0);
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        Ok(RawResponse {
            version,
            status,
            head,
            headers,
            body: Vec::new(),
        })
    }

    fn read_response_until(&mut self, deadline: Instant) -> Result<RawResponse, Outcome> {
        let mut r = self.head_until(deadline)?;
        let status = r.status;
        let find = |name: &str| r.header(name).map(str::to_owned);
        r.body = if (100..200).contains(&status) || status == 204 || status == 304 {
            Vec::new()
        } else if let Some(len) = find("content-length").and_then(|v| v.parse::<usize>().ok()) {
            self.need(len, deadline)?;
            self.buf.drain(..len).collect()
        } else if find("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
            let mut body = Vec::new();
            loop {
                let size_line = self.line(deadline)?;
                let size = usize::from_str_radix(
                    String::from_utf8_lossy(&size_line)
                        .split(';')
                        .next()
                        .unwrap_or("")
                        .trim(),
                    16,
                )
                .unwrap_or(0);
                if size == 0 {
                    // Trailers, then the blank line.
                    while !self.line(deadline)?.is_empty() {}
                    break;
                }
                self.need(size + 2, deadline)?;
                body.extend(self.buf.drain(..size));
                self.buf.drain(..2);
            }
            body
        } else {
            // Delimited by close.
            while self.fill(deadline).is_ok() {}
            if !self.eof {
                return Err(Outcome::Silent);
            }
            std::mem::take(&mut self.buf)
        };
        Ok(r)
    }

    /// Whether the server closes (EOF or reset) within `timeout`; bytes on the
    /// way are discarded.
    pub fn closed_within(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            self.buf.clear();
            match self.fill(deadline) {
                Ok(()) => continue,
                Err(Outcome::Closed) => return true,
                Err(_) => return false,
            }
        }
    }
}

/// Connects, writes `request` (a write error is ignored: the server may close
/// early) and reads one response within `timeout`.
pub fn exchange(addr: SocketAddr, request: &[u8], timeout: Duration) -> Outcome {
    let mut conn = match RawConn::try_connect(addr) {
        Ok(c) => c,
        Err(e) => return Outcome::ConnectFailed(e.to_string()),
    };
    let _ = conn.send(request);
    conn.read_response(timeout)
}

/// A POST of `body` to `path` with a bearer token, as raw bytes.
pub fn post_bytes(addr: SocketAddr, path: &str, token: &str, body: &str) -> Vec<u8> {
    format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// A field of `/proc/self/status` (`Threads`, `VmRSS` in kB…).
pub fn proc_status(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.split(':').next() == Some(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// This process's thread count (the edge runs in-process).
pub fn threads() -> u64 {
    proc_status("Threads")
}

/// This process's resident set, in KiB.
pub fn rss_kib() -> u64 {
    proc_status("VmRSS")
}

static CHECKS: AtomicU64 = AtomicU64::new(1);

/// Starts a harness whose rate limits never get in the way of the checks.
pub fn start() -> Harness {
    Harness::start_with(|s| {
        s.limits.burst = 100_000;
        s.limits.refill = 100_000;
    })
}

/// `/healthz` on a fresh connection answers 200 within `within`.
pub fn assert_healthz(h: &Harness, within: Duration, after: &str) {
    let started = Instant::now();
    let r = exchange(
        h.addr,
        format!("GET /healthz HTTP/1.1\r\nHost: {}\r\n\r\n", h.addr).as_bytes(),
        within,
    );
    assert_eq!(
        r.status(),
        Some(200),
        "after {after}: /healthz gave {r:?} after {:?}",
        started.elapsed()
    );
}

/// After an attack: a normal client still gets `/healthz` 200, a new SSE stream
/// still receives a live event, and a valid command still gets 200.
pub fn assert_still_serving(h: &Harness, after: &str) {
    const T: Duration = Duration::from_secs(5);
    assert_healthz(h, T, after);

    let n = CHECKS.fetch_add(1, Ordering::SeqCst);
    let reader = h.token(&format!("reader-{n}"), &[]);
    let mut s = h.stream(&format!("access_token={reader}"), &[]);
    assert_eq!(
        s.status, 200,
        "after {after}: stream refused: {}",
        s.error_body
    );
    s.wait_for("voice.snapshot", T)
        .unwrap_or_else(|| panic!("after {after}: no voice.snapshot on a new stream"));
    let id = format!("{}", 900_000 + n);
    h.gateway.send_event(message(&id, "7", "still alive"));
    loop {
        let ev = s
            .next_live(T)
            .unwrap_or_else(|| panic!("after {after}: the live event never reached the stream"));
        if ev.data.contains(&format!("\"{id}\"")) {
            break;
        }
    }

    let writer = h.token(&format!("writer-{n}"), &["chat:write"]);
    let r = h.post(
        SEND,
        Some(&writer),
        &format!(r#"{{"channelId":"{n}","content":"still alive"}}"#),
    );
    assert_eq!(r.status, 200, "after {after}: command gave {}", r.body);
}

/// Raises this process's open-files soft limit to its hard limit; the limit now in force.
pub use crate::loadgen::sys::raise_nofile as raise_nofile_limit;
