//! An SSE client over a raw `TcpStream`, so tests control every request header
//! (`Last-Event-ID`, cookies) and see every byte, comments included.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use relay_protocol::sse::{SseEvent, SseItem, SseParser};

/// One open stream.
pub struct SseClient {
    reader: BufReader<TcpStream>,
    parser: SseParser,
    /// The response status.
    pub status: u16,
    /// The response headers (lower-cased names).
    pub headers: Vec<(String, String)>,
    /// The body when the status is not 200 (read to the end).
    pub error_body: String,
}

impl SseClient {
    /// Opens `GET path` with extra headers.
    pub fn connect(
        addr: SocketAddr,
        path: &str,
        headers: &[(&str, &str)],
    ) -> std::io::Result<Self> {
        let mut stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        let mut req =
            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n");
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        stream.write_all(req.as_bytes())?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let status = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let mut headers = Vec::new();
        loop {
            line.clear();
            reader.read_line(&mut line)?;
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
            }
        }
        let mut error_body = String::new();
        if status != 200 {
            let len = headers
                .iter()
                .find(|(k, _)| k == "content-length")
                .and_then(|(_, v)| v.parse::<usize>().ok())
                .unwrap_or(0);
            let mut buf = vec![0; len];
            reader.read_exact(&mut buf)?;
            error_body = String::from_utf8_lossy(&buf).into_owned();
        }
        Ok(SseClient {
            reader,
            parser: SseParser::new(),
            status,
            headers,
            error_body,
        })
    }

    /// A response header by lower-case name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The next parsed item (event, comment, retry) within `timeout`.
    pub fn next_item(&mut self, timeout: Duration) -> Option<SseItem> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(item) = self.parser.poll_item() {
                return Some(item);
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            self.reader
                .get_ref()
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .ok()?;
            let buf = match self.reader.fill_buf() {
                Ok([]) => return None,
                Ok(buf) => buf.to_vec(),
                Err(_) => return None,
            };
            self.reader.consume(buf.len());
            self.parser.feed(&buf);
        }
    }

    /// The next event (skipping comments and retry lines) within `timeout`.
    pub fn next_event(&mut self, timeout: Duration) -> Option<SseEvent> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            if let SseItem::Event(ev) = self.next_item(left)? {
                return Some(ev);
            }
        }
    }

    /// The next sequenced event (one with an id), skipping state items such as a
    /// `voice.snapshot` or `gateway.status` the link may push at any time.
    pub fn next_live(&mut self, timeout: Duration) -> Option<SseEvent> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            let ev = self.next_event(left)?;
            if !ev.id.is_empty() || ev.event == "stream.reset" {
                return Some(ev);
            }
        }
    }

    /// Events until one of type `event` arrives; returns it.
    pub fn wait_for(&mut self, event: &str, timeout: Duration) -> Option<SseEvent> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            let ev = self.next_event(left)?;
            if ev.event == event {
                return Some(ev);
            }
        }
    }

    /// Whether the server closed the stream within `timeout`.
    pub fn closed_within(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                return false;
            };
            let _ = self
                .reader
                .get_ref()
                .set_read_timeout(Some(left.max(Duration::from_millis(1))));
            match self.reader.fill_buf() {
                Ok([]) => return true,
                Ok(buf) => {
                    let n = buf.len();
                    self.reader.consume(n);
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return false
                }
                Err(_) => return true,
            }
        }
    }
}
