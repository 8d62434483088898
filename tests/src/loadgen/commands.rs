//! Command load: a few worker threads, each with its own keep-alive
//! connection, send commands on an open-loop schedule (the i-th command is due
//! at `start + i / rate`, whoever sends it), and a collector timestamps each
//! command as it comes out of the test gateway's `commands()` channel.
//! A command's HTTP → gateway latency joins the two on `requestId`.
//!
//! The connection is a bare HTTP/1.1 client ([`KeepAlive`]): one write per
//! request, `httparse` on the answer, the `requestId` found without a JSON
//! parse. With `ureq` the senders spent more CPU per call than the edge did,
//! and on a 2-core machine they, not the edge, capped the command rate.

use std::collections::{BTreeMap, HashMap};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use relay_protocol::frame::GatewayCommand;

use super::hist::Hist;
use super::now_ns;

/// One command to send.
pub struct CmdSpec {
    /// `/api/...` path.
    pub path: &'static str,
    /// JSON body.
    pub body: String,
    /// Index of the session token to send it with.
    pub token: usize,
}

/// Builds command `seq`, to be sent at `sent_ns`.
pub type MakeCmd = Arc<dyn Fn(u64, u64) -> CmdSpec + Send + Sync>;

/// What the senders saw.
#[derive(Default)]
pub struct CmdRun {
    /// Commands sent.
    pub sent: u64,
    /// HTTP round trips (send start → response read), all statuses.
    pub rtt: Hist,
    /// How late each send started against its schedule.
    pub late: Hist,
    /// Responses by status.
    pub statuses: BTreeMap<u16, u64>,
    /// Calls that got no HTTP response at all.
    pub transport_errors: u64,
    /// `requestId` and send time of each 2xx command.
    pub accepted: Vec<(String, u64)>,
    /// The first non-2xx answer, for the report.
    pub first_error: Option<String>,
    /// The span from the first send to the last response.
    pub wall: Duration,
}

impl CmdRun {
    /// Non-2xx responses plus transport errors.
    pub fn errors(&self) -> u64 {
        self.transport_errors
            + self
                .statuses
                .iter()
                .filter(|(s, _)| !(200..300).contains(*s))
                .map(|(_, n)| n)
                .sum::<u64>()
    }

    fn merge(&mut self, o: CmdRun) {
        self.sent += o.sent;
        self.rtt.merge(&o.rtt);
        self.late.merge(&o.late);
        for (s, n) in o.statuses {
            *self.statuses.entry(s).or_default() += n;
        }
        self.transport_errors += o.transport_errors;
        self.accepted.extend(o.accepted);
        if self.first_error.is_none() {
            self.first_error = o.first_error;
        }
    }
}

/// Sends commands at `rate`/s for `duration` from `workers` threads.
pub fn run(
    addr: SocketAddr,
    tokens: Arc<Vec<String>>,
    rate: f64,
    duration: Duration,
    workers: usize,
    make: MakeCmd,
) -> CmdRun {
    let next = Arc::new(AtomicU64::new(0));
    let total = (rate * duration.as_secs_f64()).round() as u64;
    let start = Instant::now() + Duration::from_millis(20);
    let handles: Vec<JoinHandle<CmdRun>> = (0..workers)
        .map(|w| {
            let next = next.clone();
            let tokens = tokens.clone();
            let make = make.clone();
            thread::Builder::new()
                .name(format!("loadgen-cmd-{w}"))
                .spawn(move || worker(addr, &tokens, rate, total, start, &next, &*make))
                .expect("spawn command worker")
        })
        .collect();
    let mut out = CmdRun::default();
    for h in handles {
        if let Ok(r) = h.join() {
            out.merge(r);
        }
    }
    out.wall = start.elapsed();
    out
}

fn worker(
    addr: SocketAddr,
    tokens: &[String],
    rate: f64,
    total: u64,
    start: Instant,
    next: &AtomicU64,
    make: &(dyn Fn(u64, u64) -> CmdSpec + Send + Sync),
) -> CmdRun {
    let mut conn = KeepAlive::new(addr);
    let mut out = CmdRun::default();
    loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        if i >= total {
            return out;
        }
        let due = start + Duration::from_secs_f64(i as f64 / rate);
        let now = Instant::now();
        if due > now {
            thread::sleep(due - now);
        }
        out.late
            .record(Instant::now().saturating_duration_since(due).as_nanos() as u64);
        let sent_ns = now_ns();
        let spec = make(i, sent_ns);
        let resp = conn.post(spec.path, &tokens[spec.token], &spec.body);
        out.sent += 1;
        out.rtt.record(now_ns() - sent_ns);
        match resp {
            Ok((status, body)) => {
                *out.statuses.entry(status).or_default() += 1;
                if (200..300).contains(&status) {
                    if let Some(rid) = request_id(body) {
                        out.accepted.push((rid.to_owned(), sent_ns));
                    }
                } else if out.first_error.is_none() {
                    out.first_error = Some(format!("{status} {}", String::from_utf8_lossy(body)));
                }
            }
            Err(e) => {
                out.transport_errors += 1;
                if out.first_error.is_none() {
                    out.first_error = Some(format!("transport: {e}"));
                }
            }
        }
    }
}

/// The `requestId` of a 2xx command answer (`…"requestId":"<id>"…`): the edge
/// writes it as a plain JSON string of a UUID, so no parse is needed.
fn request_id(body: &[u8]) -> Option<&str> {
    const KEY: &[u8] = b"\"requestId\":\"";
    let at = body.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
    let len = body[at..].iter().position(|&b| b == b'"')?;
    std::str::from_utf8(&body[at..at + len]).ok()
}

/// One keep-alive HTTP/1.1 connection to the edge, reconnected on error.
struct KeepAlive {
    addr: SocketAddr,
    stream: Option<TcpStream>,
    request: Vec<u8>,
    buf: Vec<u8>,
}

impl KeepAlive {
    fn new(addr: SocketAddr) -> KeepAlive {
        KeepAlive {
            addr,
            stream: None,
            request: Vec::with_capacity(1024),
            buf: vec![0; 16 * 1024],
        }
    }

    /// POSTs `body` as JSON with a bearer token; the status and the body.
    fn post(&mut self, path: &str, token: &str, body: &str) -> io::Result<(u16, &[u8])> {
        self.request.clear();
        write!(
            self.request,
            "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
             Authorization: Bearer {token}\r\nContent-Length: {}\r\n\r\n{body}",
            self.addr,
            body.len()
        )?;
        let result = self.round_trip();
        if result.is_err() {
            self.stream = None;
        }
        let (status, start, end) = result?;
        Ok((status, &self.buf[start..end]))
    }

    /// Writes the request and reads one answer into `buf`: (status, body range).
    fn round_trip(&mut self) -> io::Result<(u16, usize, usize)> {
        if self.stream.is_none() {
            let s = TcpStream::connect_timeout(&self.addr, Duration::from_secs(5))?;
            s.set_nodelay(true)?;
            s.set_read_timeout(Some(Duration::from_secs(15)))?;
            self.stream = Some(s);
        }
        let stream = self.stream.as_mut().expect("connected above");
        stream.write_all(&self.request)?;
        let mut filled = 0;
        loop {
            if filled == self.buf.len() {
                self.buf.resize(self.buf.len() * 2, 0);
            }
            let n = stream.read(&mut self.buf[filled..])?;
            if n == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed"));
            }
            filled += n;
            let mut headers = [httparse::EMPTY_HEADER; 16];
            let mut resp = httparse::Response::new(&mut headers);
            let head = match resp.parse(&self.buf[..filled]) {
                Ok(httparse::Status::Complete(len)) => len,
                Ok(httparse::Status::Partial) => continue,
                Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
            };
            let status = resp.code.unwrap_or(0);
            let mut length = 0;
            let mut close = false;
            for h in resp.headers.iter() {
                if h.name.eq_ignore_ascii_case("content-length") {
                    length = std::str::from_utf8(h.value)
                        .ok()
                        .and_then(|v| v.trim().parse().ok())
                        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "length"))?;
                } else if h.name.eq_ignore_ascii_case("connection") {
                    close = h.value.eq_ignore_ascii_case(b"close");
                }
            }
            let end = head + length;
            if self.buf.len() < end {
                self.buf.resize(end, 0);
            }
            while filled < end {
                let n = stream.read(&mut self.buf[filled..end])?;
                if n == 0 {
                    return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "short body"));
                }
                filled += n;
            }
            if close {
                self.stream = None;
            }
            return Ok((status, head, end));
        }
    }
}

/// What reached the gateway.
#[derive(Default)]
pub struct GwSeen {
    /// Receive time per `requestId`.
    pub by_request: HashMap<String, u64>,
    /// Commands per type.
    pub by_type: BTreeMap<&'static str, u64>,
}

impl GwSeen {
    /// HTTP send start → gateway receipt for every accepted command; also how
    /// many accepted commands the gateway never saw.
    pub fn latency(&self, run: &CmdRun) -> (Hist, u64) {
        let mut h = Hist::new();
        let mut unmatched = 0;
        for (rid, sent) in &run.accepted {
            match self.by_request.get(rid) {
                Some(&t) => h.record(t.saturating_sub(*sent)),
                None => unmatched += 1,
            }
        }
        (h, unmatched)
    }
}

/// Drains the gateway's command channel on its own thread, stamping arrivals.
pub struct GwCollector {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<GwSeen>,
}

impl GwCollector {
    /// Starts draining `rx`.
    pub fn start(rx: Receiver<GatewayCommand>) -> GwCollector {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = thread::Builder::new()
            .name("loadgen-gw-collector".into())
            .spawn(move || {
                let mut seen = GwSeen::default();
                while !flag.load(Ordering::Relaxed) {
                    let Ok(cmd) = rx.recv_timeout(Duration::from_millis(50)) else {
                        continue;
                    };
                    let t = now_ns();
                    *seen.by_type.entry(cmd.body.type_name()).or_default() += 1;
                    if let Some(rid) = cmd.meta.request_id {
                        seen.by_request.insert(rid, t);
                    }
                }
                for cmd in rx.try_iter() {
                    *seen.by_type.entry(cmd.body.type_name()).or_default() += 1;
                }
                seen
            })
            .expect("spawn collector");
        GwCollector { stop, handle }
    }

    /// Stops and returns what arrived.
    pub fn finish(self) -> GwSeen {
        self.stop.store(true, Ordering::SeqCst);
        self.handle.join().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_id_is_found_without_a_parse() {
        let body = br#"{"ok":true,"requestId":"0b8e-42","traceId":"t"}"#;
        assert_eq!(request_id(body), Some("0b8e-42"));
        assert_eq!(request_id(br#"{"ok":true}"#), None);
        assert_eq!(request_id(br#"{"requestId":"unterminated"#), None);
    }
}
