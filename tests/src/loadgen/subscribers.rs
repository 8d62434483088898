//! Thousands of SSE subscribers on a few threads: each thread polls its
//! non-blocking sockets with `polling` (level-triggered) and runs one
//! [`SseParser`] per subscriber. A thread per subscriber would put the load
//! generator's own scheduling on the edge's two cores.
//!
//! The same client serves relay's `/api/stream` (ready at its `voice.snapshot`)
//! and any other SSE hub such as nginx + nchan (ready at the `200` response
//! head): see [`StreamRequest`]. It takes probes from events named
//! `messageCreate` or the default `message`, and ignores comments (`: hi`) and
//! whatever the `id:` field holds (nchan's `<time>:<seq>`).
//!
//! Probe events are `messageCreate`s whose content is
//! `lg <phase> <seq> <sent_ns>[ g<echo_ns>]` (times since [`super::now_ns`]'s
//! origin, the same clock as the sender's). A subscriber stamps the time once per
//! socket read, after the parser has taken the bytes, so a latency runs from the
//! send to the parse of the complete event. It also records every seq it got, to
//! count missed, duplicated and reordered events.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use polling::{Event, Events, PollMode, Poller};
use relay_protocol::sse::{SseItem, SseParser};

use super::hist::Hist;
use super::now_ns;

/// Latencies of one phase (phase 0 is the warm-up).
#[derive(Clone, Debug, Default)]
pub struct PhaseStats {
    /// Sender's send → subscriber's parse.
    pub lat: Hist,
    /// Gateway echo → subscriber's parse (echoed commands only).
    pub lat_echo: Hist,
}

#[derive(Default)]
struct SubStats {
    seen: Vec<u64>,
    distinct: u64,
    dups: u64,
    reorders: u64,
    max_seq: Option<u64>,
}

impl SubStats {
    fn saw(&mut self, seq: u64) {
        let (w, b) = ((seq / 64) as usize, seq % 64);
        if self.seen.len() <= w {
            self.seen.resize(w + 1, 0);
        }
        if self.seen[w] & (1 << b) != 0 {
            self.dups += 1;
            return;
        }
        self.seen[w] |= 1 << b;
        self.distinct += 1;
        match self.max_seq {
            Some(m) if seq < m => self.reorders += 1,
            _ => self.max_seq = Some(seq),
        }
    }
}

#[derive(Default)]
struct ThreadStats {
    phases: Vec<PhaseStats>,
    subs: Vec<SubStats>,
}

struct Shared {
    stop: AtomicBool,
    ready: AtomicUsize,
    failed: AtomicUsize,
    closed: AtomicUsize,
    received: AtomicU64,
    first_error: Mutex<Option<String>>,
    /// Request sent → ready (`voice.snapshot` parsed, or the response head), per subscriber.
    connect: Mutex<Hist>,
    /// The `data` of the first probe event received, as the hub wrote it.
    sample: Mutex<Option<String>>,
    /// relay's `access` events (`ACCESS=discord`) received, over subscribers.
    access: AtomicU64,
    /// When each `access` event was parsed (ns since the origin), in order.
    access_at: Mutex<Vec<u64>>,
}

/// When a subscriber counts as subscribed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadyOn {
    /// relay: its `voice.snapshot` event was parsed.
    Snapshot,
    /// Any other hub: its `200` response head was read (nchan registers the
    /// subscriber before it answers).
    Head,
}

/// One subscriber's HTTP request and its readiness rule.
#[derive(Clone, Debug)]
pub struct StreamRequest {
    /// The whole request text (head and the blank line).
    pub text: String,
    /// When it counts as subscribed.
    pub ready: ReadyOn,
}

impl StreamRequest {
    /// relay's `GET /api/stream` with a session token.
    pub fn relay(addr: SocketAddr, token: &str) -> StreamRequest {
        StreamRequest {
            text: format!(
                "GET /api/stream HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\
                 Authorization: Bearer {token}\r\n\r\n"
            ),
            ready: ReadyOn::Snapshot,
        }
    }

    /// A plain EventSource request for `path` (no credentials), ready at the head.
    pub fn plain(addr: SocketAddr, path: &str) -> StreamRequest {
        StreamRequest {
            text: format!(
                "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\
                 Cache-Control: no-cache\r\n\r\n"
            ),
            ready: ReadyOn::Head,
        }
    }
}

/// How subscribers connect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Connect {
    /// One after the other, each waiting for its `voice.snapshot` before the
    /// next connects (browsers arriving over time).
    Sequential,
    /// All at once, as fast as the sockets open (browsers reconnecting together
    /// after an edge restart).
    Burst,
}

/// What the pool saw, merged over its threads.
#[derive(Debug, Default)]
pub struct PoolReport {
    /// Per phase.
    pub phases: Vec<PhaseStats>,
    /// Distinct probe seqs received, summed over subscribers.
    pub distinct: u64,
    /// Probe events received twice.
    pub dups: u64,
    /// Probe events received after a later one.
    pub reorders: u64,
    /// Subscribers whose stream ended.
    pub closed: usize,
}

impl PoolReport {
    /// The stats of `phase` (empty if none arrived).
    pub fn phase(&self, phase: usize) -> PhaseStats {
        self.phases.get(phase).cloned().unwrap_or_default()
    }
}

/// A set of SSE subscribers spread over a few polling threads.
pub struct Pool {
    shared: Arc<Shared>,
    stats: Vec<Arc<Mutex<ThreadStats>>>,
    threads: Vec<JoinHandle<()>>,
    n: usize,
}

impl Pool {
    /// Opens one relay `/api/stream` per token, spread over `threads` threads.
    pub fn start(addr: SocketAddr, tokens: Vec<String>, threads: usize, mode: Connect) -> Pool {
        let requests = tokens
            .iter()
            .map(|t| StreamRequest::relay(addr, t))
            .collect();
        Pool::start_requests(addr, requests, threads, mode)
    }

    /// Opens one stream per request, spread over `threads` threads.
    pub fn start_requests(
        addr: SocketAddr,
        tokens: Vec<StreamRequest>,
        threads: usize,
        mode: Connect,
    ) -> Pool {
        let n = tokens.len();
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            ready: AtomicUsize::new(0),
            failed: AtomicUsize::new(0),
            closed: AtomicUsize::new(0),
            received: AtomicU64::new(0),
            first_error: Mutex::new(None),
            connect: Mutex::new(Hist::new()),
            sample: Mutex::new(None),
            access: AtomicU64::new(0),
            access_at: Mutex::new(Vec::new()),
        });
        let threads = threads.max(1).min(n.max(1));
        let mut groups: Vec<Vec<StreamRequest>> = vec![Vec::new(); threads];
        for (i, t) in tokens.into_iter().enumerate() {
            groups[i % threads].push(t);
        }
        let stats: Vec<Arc<Mutex<ThreadStats>>> = groups
            .iter()
            .map(|g| {
                let mut st = ThreadStats::default();
                st.subs.resize_with(g.len(), SubStats::default);
                Arc::new(Mutex::new(st))
            })
            .collect();
        let mut connected: Vec<Option<Vec<Sub>>> = (0..threads).map(|_| None).collect();
        if mode == Connect::Sequential {
            let mut done: Vec<Vec<Sub>> = (0..threads).map(|_| Vec::new()).collect();
            let mut buf = vec![0u8; 64 * 1024];
            'all: for key in 0..groups[0].len() {
                for (g, group) in groups.iter().enumerate() {
                    let Some(token) = group.get(key) else {
                        continue;
                    };
                    match connect_and_wait(
                        addr,
                        token,
                        key,
                        &shared,
                        &mut stats[g].lock(),
                        &mut buf,
                    ) {
                        Ok(sub) => done[g].push(sub),
                        Err(e) => {
                            fail(&shared, format!("connect: {e}"));
                            break 'all;
                        }
                    }
                }
            }
            connected = done.into_iter().map(Some).collect();
        }
        let mut handles = Vec::new();
        for (i, (group, subs)) in groups.into_iter().zip(connected).enumerate() {
            let st = stats[i].clone();
            let shared = shared.clone();
            handles.push(
                thread::Builder::new()
                    .name(format!("loadgen-sse-{i}"))
                    .spawn(move || run(addr, group, subs, shared, st))
                    .expect("spawn subscriber thread"),
            );
        }
        Pool {
            shared,
            stats,
            threads: handles,
            n,
        }
    }

    /// Request sent → ready, over the subscribers ready so far.
    pub fn connect_times(&self) -> Hist {
        self.shared.connect.lock().clone()
    }

    /// Subscribers that are ready.
    pub fn ready(&self) -> usize {
        self.shared.ready.load(Ordering::SeqCst)
    }

    /// Subscribers in the pool.
    pub fn len(&self) -> usize {
        self.n
    }

    /// Whether the pool is empty.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Waits until every subscriber is ready.
    pub fn wait_ready(&self, timeout: Duration) -> Result<Duration, String> {
        let start = Instant::now();
        loop {
            let ready = self.shared.ready.load(Ordering::SeqCst);
            let failed = self.shared.failed.load(Ordering::SeqCst);
            if ready == self.n {
                return Ok(start.elapsed());
            }
            if failed > 0 || start.elapsed() > timeout {
                return Err(format!(
                    "{ready}/{} subscribers ready, {failed} failed after {:?}: {}",
                    self.n,
                    start.elapsed(),
                    self.shared
                        .first_error
                        .lock()
                        .clone()
                        .unwrap_or_else(|| "timeout".into())
                ));
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// The `data` of the first probe event received, as the hub wrote it.
    pub fn sample_data(&self) -> Option<String> {
        self.shared.sample.lock().clone()
    }

    /// Probe events received so far, over all subscribers.
    pub fn received(&self) -> u64 {
        self.shared.received.load(Ordering::SeqCst)
    }

    /// Waits until `target` probe events were received; false on timeout.
    pub fn wait_received(&self, target: u64, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while self.received() < target {
            if Instant::now() > deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(5));
        }
        true
    }

    /// relay `access` events received so far, over all subscribers.
    pub fn access_events(&self) -> u64 {
        self.shared.access.load(Ordering::SeqCst)
    }

    /// When the `access` events from the `from`-th on were parsed (ns since
    /// [`super::now_ns`]'s origin).
    pub fn access_times(&self, from: usize) -> Vec<u64> {
        let at = self.shared.access_at.lock();
        at.get(from..).map(<[u64]>::to_vec).unwrap_or_default()
    }

    /// Waits until `target` `access` events were received; false on timeout.
    pub fn wait_access(&self, target: u64, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while self.access_events() < target {
            if Instant::now() > deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(1));
        }
        true
    }

    /// Subscribers whose stream ended (dropped as too slow, or failed).
    pub fn closed(&self) -> usize {
        self.shared.closed.load(Ordering::SeqCst)
    }

    /// Merges every thread's stats.
    pub fn report(&self) -> PoolReport {
        let mut r = PoolReport {
            closed: self.closed(),
            ..PoolReport::default()
        };
        for st in &self.stats {
            let st = st.lock();
            if r.phases.len() < st.phases.len() {
                r.phases.resize_with(st.phases.len(), PhaseStats::default);
            }
            for (a, b) in r.phases.iter_mut().zip(&st.phases) {
                a.lat.merge(&b.lat);
                a.lat_echo.merge(&b.lat_echo);
            }
            for s in &st.subs {
                r.distinct += s.distinct;
                r.dups += s.dups;
                r.reorders += s.reorders;
            }
        }
        r
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

struct Sub {
    stream: TcpStream,
    /// When its request was sent (ns since the origin).
    started_ns: u64,
    ready: bool,
    /// The response head while it is still being read.
    head: Option<Vec<u8>>,
    /// When it counts as ready.
    ready_on: ReadyOn,
    parser: SseParser,
    open: bool,
}

fn connect(addr: SocketAddr, req: &StreamRequest) -> io::Result<Sub> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10))?;
    stream.set_nodelay(true)?;
    let started_ns = now_ns();
    stream.write_all(req.text.as_bytes())?;
    Ok(Sub {
        stream,
        started_ns,
        ready: false,
        head: Some(Vec::new()),
        ready_on: req.ready,
        parser: SseParser::new(),
        open: true,
    })
}

/// Connects and reads (blocking) until the subscriber is ready.
fn connect_and_wait(
    addr: SocketAddr,
    token: &StreamRequest,
    key: usize,
    shared: &Shared,
    st: &mut ThreadStats,
    buf: &mut [u8],
) -> io::Result<Sub> {
    let mut sub = connect(addr, token)?;
    sub.stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    while !sub.ready {
        let n = sub.stream.read(buf)?;
        if n == 0 {
            return Err(io::Error::other("stream closed before it was ready"));
        }
        feed(&mut sub, &buf[..n], key, shared, st);
        if !sub.open {
            return Err(io::Error::other("stream refused"));
        }
    }
    sub.stream.set_read_timeout(None)?;
    sub.stream.set_nonblocking(true)?;
    Ok(sub)
}

fn fail(shared: &Shared, msg: String) {
    shared.failed.fetch_add(1, Ordering::SeqCst);
    shared.first_error.lock().get_or_insert(msg);
}

fn run(
    addr: SocketAddr,
    tokens: Vec<StreamRequest>,
    connected: Option<Vec<Sub>>,
    shared: Arc<Shared>,
    stats: Arc<Mutex<ThreadStats>>,
) {
    let poller = Poller::new().expect("poller");
    let subs: Vec<Sub> = match connected {
        Some(subs) => subs,
        None => {
            let mut subs = Vec::with_capacity(tokens.len());
            for token in &tokens {
                match connect(addr, token).and_then(|sub| {
                    sub.stream.set_nonblocking(true)?;
                    Ok(sub)
                }) {
                    Ok(sub) => subs.push(sub),
                    Err(e) => {
                        fail(&shared, format!("connect: {e}"));
                        return;
                    }
                }
            }
            subs
        }
    };
    let mut subs = subs;
    for (key, sub) in subs.iter().enumerate() {
        // SAFETY: every stream lives in `subs` until after the poller is done with
        // it: closed streams are deleted, open ones at the end of this function.
        if let Err(e) =
            unsafe { poller.add_with_mode(&sub.stream, Event::readable(key), PollMode::Level) }
        {
            fail(&shared, format!("poller add: {e}"));
        }
    }
    let mut events = Events::with_capacity(NonZeroUsize::new(1024).expect("non-zero"));
    let mut buf = vec![0u8; 64 * 1024];
    while !shared.stop.load(Ordering::Relaxed) {
        events.clear();
        if poller
            .wait(&mut events, Some(Duration::from_millis(100)))
            .is_err()
        {
            continue;
        }
        if events.is_empty() {
            continue;
        }
        let mut st = stats.lock();
        for ev in events.iter() {
            let key = ev.key;
            let sub = &mut subs[key];
            if !sub.open {
                continue;
            }
            loop {
                match sub.stream.read(&mut buf) {
                    Ok(0) => {
                        close(&poller, sub, &shared);
                        break;
                    }
                    Ok(n) => {
                        let more = n == buf.len();
                        feed(sub, &buf[..n], key, &shared, &mut st);
                        if !sub.open {
                            let _ = poller.delete(&sub.stream);
                            break;
                        }
                        if !more {
                            break;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => {
                        close(&poller, sub, &shared);
                        break;
                    }
                }
            }
        }
    }
    for sub in &subs {
        if sub.open {
            let _ = poller.delete(&sub.stream);
        }
    }
}

fn close(poller: &Poller, sub: &mut Sub, shared: &Shared) {
    sub.open = false;
    let _ = poller.delete(&sub.stream);
    shared.closed.fetch_add(1, Ordering::SeqCst);
}

fn feed(sub: &mut Sub, mut bytes: &[u8], key: usize, shared: &Shared, st: &mut ThreadStats) {
    if let Some(head) = sub.head.as_mut() {
        head.extend_from_slice(bytes);
        let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") else {
            if head.len() > 16 * 1024 {
                fail(shared, "response head too long".into());
                sub.open = false;
            }
            return;
        };
        let status = std::str::from_utf8(&head[..end])
            .ok()
            .and_then(|h| h.split_whitespace().nth(1))
            .and_then(|s| s.parse::<u16>().ok())
            .unwrap_or(0);
        if status != 200 {
            fail(
                shared,
                format!(
                    "stream request answered {status}: {}",
                    String::from_utf8_lossy(&head[end + 4..])
                ),
            );
            sub.open = false;
            return;
        }
        let chunked = String::from_utf8_lossy(&head[..end])
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked");
        if chunked {
            fail(
                shared,
                "chunked event streams are not supported by this client".into(),
            );
            sub.open = false;
            return;
        }
        let rest = head.split_off(end + 4);
        sub.head = None;
        if sub.ready_on == ReadyOn::Head {
            mark_ready(sub, shared, now_ns());
        }
        sub.parser.feed(&rest);
        bytes = &[];
    }
    if !bytes.is_empty() {
        sub.parser.feed(bytes);
    }
    let now = now_ns();
    while let Some(item) = sub.parser.poll_item() {
        let SseItem::Event(ev) = item else { continue };
        match ev.event.as_str() {
            // relay names its events; a hub that does not gives the default type.
            "messageCreate" | "message" => {
                let Some(p) = parse_probe(&ev.data) else {
                    continue;
                };
                if shared.received.fetch_add(1, Ordering::Relaxed) == 0 {
                    shared.sample.lock().get_or_insert_with(|| ev.data.clone());
                }
                if st.phases.len() <= p.phase {
                    st.phases.resize_with(p.phase + 1, PhaseStats::default);
                }
                let ph = &mut st.phases[p.phase];
                ph.lat.record(now.saturating_sub(p.sent_ns));
                if let Some(e) = p.echo_ns {
                    ph.lat_echo.record(now.saturating_sub(e));
                }
                st.subs[key].saw(p.seq);
            }
            "voice.snapshot" if !sub.ready && sub.ready_on == ReadyOn::Snapshot => {
                mark_ready(sub, shared, now);
            }
            "access" => {
                // Pushed before the count, so a waiter on the count sees the time.
                shared.access_at.lock().push(now);
                shared.access.fetch_add(1, Ordering::SeqCst);
            }
            _ => {}
        }
    }
}

fn mark_ready(sub: &mut Sub, shared: &Shared, now: u64) {
    sub.ready = true;
    shared.ready.fetch_add(1, Ordering::SeqCst);
    shared
        .connect
        .lock()
        .record(now.saturating_sub(sub.started_ns));
}

/// The numbers a probe event carries.
#[derive(Debug, PartialEq, Eq)]
pub struct Probe {
    /// Phase (0 = warm-up).
    pub phase: usize,
    /// Sequence number.
    pub seq: u64,
    /// When it was sent, ns since the origin.
    pub sent_ns: u64,
    /// When the gateway echoed it, for echoed commands.
    pub echo_ns: Option<u64>,
}

/// The probe content for these numbers.
pub fn probe_content(phase: usize, seq: u64, sent_ns: u64) -> String {
    format!("lg {phase} {seq} {sent_ns}")
}

/// Finds the probe in an `SseEvent` JSON (without a full JSON parse: this runs
/// for every delivery, on the same two cores as the edge).
pub fn parse_probe(data: &str) -> Option<Probe> {
    const KEY: &str = "\"content\":\"lg ";
    let start = data.find(KEY)? + KEY.len();
    let rest = &data[start..];
    let text = &rest[..rest.find('"')?];
    let mut it = text.split(' ');
    let phase = it.next()?.parse().ok()?;
    let seq = it.next()?.parse().ok()?;
    let sent_ns = it.next()?.parse().ok()?;
    let echo_ns = it.next().and_then(|g| g.strip_prefix('g')?.parse().ok());
    Some(Probe {
        phase,
        seq,
        sent_ns,
        echo_ns,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_parse() {
        let d = r#"{"version":"1.0","event":"messageCreate","data":{"id":"1","content":"lg 2 17 12345 g12399","x":1}}"#;
        assert_eq!(
            parse_probe(d),
            Some(Probe {
                phase: 2,
                seq: 17,
                sent_ns: 12345,
                echo_ns: Some(12399)
            })
        );
        let d = format!(r#"{{"data":{{"content":"{}"}}}}"#, probe_content(0, 3, 9));
        assert_eq!(parse_probe(&d).map(|p| p.seq), Some(3));
        assert_eq!(parse_probe(r#"{"content":"hello"}"#), None);
    }

    #[test]
    fn nchan_framing_is_understood() {
        // nchan's EventSource stream: a `: hi` comment first, `<time>:<seq>` ids,
        // and events named by `nchan_eventsource_event` or not named at all.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = thread::spawn(move || {
            let (mut s, _) = listener.accept().expect("accept");
            let mut req = [0u8; 1024];
            let _ = s.read(&mut req).expect("request");
            s.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\n\
                  Connection: keep-alive\r\n\r\n: hi\n\n",
            )
            .expect("head");
            thread::sleep(Duration::from_millis(50));
            s.write_all(
                b"event: messageCreate\nid: 1795649504:0\ndata: {\"content\":\"lg 1 0 5\"}\n\n\
                  id: 1795649504:1\ndata: {\"content\":\"lg 1 1 6\"}\n\n",
            )
            .expect("events");
            thread::sleep(Duration::from_millis(500));
        });
        let pool = Pool::start_requests(
            addr,
            vec![StreamRequest::plain(addr, "/sub")],
            1,
            Connect::Sequential,
        );
        pool.wait_ready(Duration::from_secs(5))
            .expect("ready at the head");
        assert!(pool.wait_received(2, Duration::from_secs(5)));
        let rep = pool.report();
        assert_eq!((rep.distinct, rep.dups, rep.reorders), (2, 0, 0));
        assert_eq!(rep.phase(1).lat.count(), 2);
        assert_eq!(
            pool.sample_data().as_deref(),
            Some(r#"{"content":"lg 1 0 5"}"#)
        );
        drop(pool);
        server.join().expect("server");
    }

    #[test]
    fn seqs_are_checked() {
        let mut s = SubStats::default();
        for q in [0, 1, 3, 2, 2, 200] {
            s.saw(q);
        }
        assert_eq!((s.distinct, s.dups, s.reorders), (5, 1, 1));
    }
}
