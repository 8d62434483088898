//! A bounded soak test with faults: a simulated Discord, the real gateway and
//! the real edge in this process, under steady load in both directions, while
//! the gateway is killed and restarted and SSE clients are dropped, resumed and
//! stalled.
//!
//! With `SOAK_REDIS=1` the gateway and the edge share a real `redis-server`
//! (shared ids, replay log and buckets, docs/redis.md) and one more fault is
//! drawn: Redis killed and restarted 0.5–2 s later; every check stays the same.
//!
//! How long: `SOAK_SECS` seconds of load (default 60, what CI runs); e.g.
//! `SOAK_SECS=600 cargo test -p relay-tests --test soak-faults -- --nocapture`
//! for a long run. Every random choice comes from one seeded RNG; the seed is
//! printed, and `SOAK_SEED=<n>` replays a run's fault schedule (thread timing
//! still varies).
//!
//! While it runs:
//! - events: Discord posts `ev-<n>` messages (~1 KiB each) at ~50/s;
//! - commands: four clients POST `/api/send-message` with content `cmd-<n>` at
//!   ~20/s in all, recording each status and `requestId`;
//! - faults every 2–5 s: the gateway is shut down and started again on the same
//!   link address 0.5–2 s later, or one of three "droppable" SSE clients hangs
//!   up and resumes with `Last-Event-ID`; two "stable" SSE clients never hang
//!   up; one "slow" client (raw socket, 64 KiB receive buffer) stops reading for
//!   2–12 s at a time, may be dropped by the edge for it (CONTRACT.md §4), and
//!   then resumes with `Last-Event-ID`. Linux lets the edge's socket buffer grow
//!   to `tcp_wmem` max (4 MiB by default), so at this rate a stall is only
//!   noticed after ~80 s of backlog: in 60 s the slow client is never dropped;
//!   runs of 300 s or more add a 60–90 s stall every fifth stall to cover that.
//!
//! "Posted while up": before shutting the gateway down, the fault thread marks
//! the chain down and waits until the last event posted while it was up has
//! reached a stable client; after a restart it marks the chain up once the
//! gateway's Discord session and the edge's link are both back. Events posted
//! in between may be lost (no Discord session or no edge to forward them to)
//! and are only required to reach the stable clients identically.
//!
//! What it checks at the end, after the load stops, the gateway is back and the
//! command queue has drained:
//! 1. no command ran twice (see `RE-SENDS ACROSS A GATEWAY RESTART` below);
//! 2. every HTTP call got a final status promptly, every 200 ran, every 202 ran
//!    (exactly once), no rejected call (429/503) ran;
//! 3. the stable clients got every event the edge published, in order, without
//!    duplicates — in particular every `ev-<n>` posted while the whole chain was
//!    up — and every client's ids are contiguous across its resumes, unless it
//!    was sent a `stream.reset` (counted; none are expected with a 4096 ring);
//! 4. threads and RSS return near their baseline once everything is closed;
//! 5. the stalled client does not slow the stable ones: their delivery p99
//!    (of events posted while the chain was up)
//!    stays under 250 ms whether or not it is stalled.
//!
//! RE-SENDS ACROSS A GATEWAY RESTART. The edge re-sends an unanswered command
//! after a reconnect with the same `requestId`, and the gateway runs a
//! `requestId` once — but its reply cache lives in the gateway process's
//! memory. When the gateway is shut down after it has run a command but before
//! the reply reached the edge, the edge re-sends the command to the *new*
//! gateway process, whose cache is empty, and it POSTs the message again. The
//! POST carries the requestId as its `nonce` with `enforce_nonce`, so Discord
//! (the simulator does as Discord documents) returns the first message instead
//! of making a second one. The test therefore fails on any command that made
//! two messages, and reports how many commands were POSTed more than once.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use relay::edge::Edge;
use relay::gateway::{Gateway, Settings as GatewaySettings};
use relay::metrics::Metrics;
use relay::secret::Secret;
use relay_protocol::bucket::LimitConfig;
use relay_protocol::sse::{SseItem, SseParser};
use relay_runtime::sim_discord::{ids, RateLimit, RateLimits, SimConfig, SimDiscord};
use relay_tests::discord::fast_backoff;
use relay_tests::harness::{self, agent};
use relay_tests::redis_server::RedisServer;
use serde_json::Value;

const EVENTS_PER_SEC: u64 = 50;
/// About 1 KiB per message, so a stalled reader's socket buffers fill in
/// seconds and the edge's send timeout can drop it within one stall.
const EVENT_PADDING: &str = concat!(
    "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor ",
    "incididunt ut labore et dolore magna aliqua. Ut enim ad minim veniam, quis nostrud ",
    "exercitation ullamco laboris nisi ut aliquip ex ea commodo consequat. Duis aute irure ",
    "dolor in reprehenderit in voluptate velit esse cillum dolore eu fugiat nulla pariatur. ",
    "Excepteur sint occaecat cupidatat non proident, sunt in culpa qui officia deserunt ",
    "mollit anim id est laborum. Sed ut perspiciatis unde omnis iste natus error sit ",
    "voluptatem accusantium doloremque laudantium, totam rem aperiam, eaque ipsa quae ab ",
    "illo inventore veritatis et quasi architecto beatae vitae dicta sunt explicabo. Nemo ",
    "enim ipsam voluptatem quia voluptas sit aspernatur aut odit aut fugit, sed quia ",
    "consequuntur magni dolores eos qui ratione voluptatem sequi nesciunt. Neque porro ",
    "quisquam est, qui dolorem ipsum quia dolor sit amet, consectetur, adipisci velit, sed ",
    "quia non numquam eius modi tempora incidunt ut labore et dolore magnam aliquam quaerat."
);
const COMMAND_CLIENTS: usize = 4;
const COMMANDS_PER_SEC_PER_CLIENT: u64 = 5;
const DROPPABLE_CLIENTS: usize = 3;
const REPLY_TIMEOUT: Duration = Duration::from_secs(2);
/// A command call may take the reply timeout plus the edge's 500 ms margin;
/// anything much longer is a hang.
const CALL_LIMIT: Duration = Duration::from_secs(5);
const LATENCY_P99_LIMIT: Duration = Duration::from_millis(250);
const THREAD_SLACK: i64 = 2;
const RSS_SLACK_KB: i64 = 96 * 1024;

// ---------------------------------------------------------------------------
// Shared state of the run
// ---------------------------------------------------------------------------

/// One `ev-<n>` message Discord posted.
#[derive(Clone, Copy)]
struct Posted {
    at: Instant,
    /// The whole chain (gateway, its Discord session, the edge's link) was up
    /// from before the post until the event reached a stable client.
    up: bool,
}

/// One command call.
struct Call {
    id: u64,
    started: Instant,
    took: Duration,
    /// HTTP status, or the transport error.
    result: Result<u16, String>,
    request_id: Option<String>,
}

/// A gateway outage: shut down at `down`, up again (Discord session and edge
/// link) at `up`.
#[derive(Clone, Copy, Debug)]
struct Outage {
    down: Instant,
    restarted: Option<Instant>,
    up: Option<Instant>,
}

struct Run {
    t0: Instant,
    soak_secs: u64,
    edge_addr: SocketAddr,
    sim: Arc<SimDiscord>,
    /// The gateway slot; `None` while it is down.
    gateway: Mutex<Option<Gateway>>,
    gateway_settings: GatewaySettings,
    /// Whether the chain is up; posters hold it for reading across a post, the
    /// fault thread takes it for writing to declare the chain going down.
    up: RwLock<bool>,
    /// The highest `ev-<n>` posted while up.
    last_up_seq: AtomicI64,
    posted: Mutex<Vec<Posted>>,
    next_event: AtomicU64,
    next_command: AtomicU64,
    calls: Mutex<Vec<Call>>,
    outages: Mutex<Vec<Outage>>,
    faults: Mutex<Vec<String>>,
    /// Problems seen while running (a check failing at the end explains itself).
    anomalies: Mutex<Vec<String>>,
    stop_load: AtomicBool,
    stop_subscribers: AtomicBool,
    slow_stalled: AtomicBool,
    /// The highest `ev-<n>` each stable client has seen.
    stable_progress: Vec<Arc<AtomicI64>>,
    peak_rss_kb: AtomicI64,
    /// SOAK_REDIS=1: the shared redis-server (killed and restarted as a fault).
    redis: Option<Mutex<RedisServer>>,
}

impl Run {
    fn elapsed(&self, at: Instant) -> f64 {
        at.saturating_duration_since(self.t0).as_secs_f64()
    }

    fn anomaly(&self, what: String) {
        eprintln!(
            "soak: ANOMALY at {:.3}s: {what}",
            self.elapsed(Instant::now())
        );
        self.anomalies.lock().push(what);
    }

    fn fault(&self, what: String) {
        eprintln!(
            "soak: fault at {:.3}s: {what}",
            self.elapsed(Instant::now())
        );
        self.faults.lock().push(what);
    }

    /// Posts `ev-<n>` as a guild member; returns `n`.
    fn post_event(&self) -> u64 {
        let up = self.up.read();
        let n = self.next_event.fetch_add(1, Ordering::SeqCst);
        self.posted.lock().push(Posted {
            at: Instant::now(),
            up: *up,
        });
        let author = [ids::GRACE, ids::ADA, ids::KEN][(n % 3) as usize];
        if self
            .sim
            .post_as(author, ids::GENERAL, &format!("ev-{n} {EVENT_PADDING}"))
            .is_none()
        {
            self.anomaly(format!("the simulator refused to post ev-{n}"));
        }
        if *up {
            self.last_up_seq.store(n as i64, Ordering::SeqCst);
        }
        n
    }
}

/// What relay logged about each command, by `requestId` (edge completions,
/// gateway refusals), so a failing check can say what happened to a command.
#[derive(Default)]
struct CommandLog(Mutex<HashMap<String, Vec<String>>>);

impl log::Log for CommandLog {
    fn enabled(&self, m: &log::Metadata) -> bool {
        m.level() <= log::Level::Info
    }
    fn log(&self, record: &log::Record) {
        let Some(rid) = record.key_values().get(log::kv::Key::from("requestId")) else {
            return;
        };
        let rid = rid.to_string();
        if rid.is_empty() {
            return;
        }
        let result = record
            .key_values()
            .get(log::kv::Key::from("result"))
            .map(|v| format!(" result={v}"))
            .unwrap_or_default();
        let line = format!("{} {}{result}", record.level(), record.args());
        self.0.lock().entry(rid).or_default().push(line);
    }
    fn flush(&self) {}
}

static COMMAND_LOG: std::sync::OnceLock<&'static CommandLog> = std::sync::OnceLock::new();

fn command_log(request_id: &Option<String>) -> String {
    let Some(rid) = request_id else {
        return "no requestId".into();
    };
    let lines = COMMAND_LOG
        .get()
        .and_then(|l| l.0.lock().get(rid).cloned())
        .unwrap_or_default();
    if lines.is_empty() {
        "relay logged nothing about it".into()
    } else {
        format!("relay logged: {}", lines.join(" | "))
    }
}

fn named<T: Send + 'static>(name: &str, f: impl FnOnce() -> T + Send + 'static) -> JoinHandle<T> {
    thread::Builder::new()
        .name(name.to_owned())
        .spawn(f)
        .expect("spawn a test thread")
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

/// Sleeps `d` in small steps; false if `flag` was set meanwhile.
fn sleep_unless(flag: &AtomicBool, d: Duration) -> bool {
    let end = Instant::now() + d;
    while Instant::now() < end {
        if flag.load(Ordering::SeqCst) {
            return false;
        }
        thread::sleep((end - Instant::now()).min(Duration::from_millis(20)));
    }
    !flag.load(Ordering::SeqCst)
}

fn threads_now() -> i64 {
    relay_tests::hostile::threads() as i64
}

fn rss_kb() -> i64 {
    relay_tests::hostile::rss_kib() as i64
}

/// Names of this process's threads, counted ("relay-sse ×3").
fn thread_names() -> String {
    let mut names: BTreeMap<String, usize> = BTreeMap::new();
    if let Ok(dir) = std::fs::read_dir("/proc/self/task") {
        for task in dir.flatten() {
            let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
            *names.entry(comm.trim().to_owned()).or_default() += 1;
        }
    }
    names
        .iter()
        .map(|(n, c)| format!("{n} ×{c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Hands freed heap back to the OS, so RSS shows what is still allocated rather
/// than what glibc keeps cached in its arenas.
fn trim_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        extern "C" {
            fn malloc_trim(pad: usize) -> i32;
        }
        // SAFETY: glibc's malloc_trim only releases free memory; any pad is valid.
        unsafe {
            malloc_trim(0);
        }
    }
}

// ---------------------------------------------------------------------------
// A raw SSE reader that tells a timeout from the end of the stream
// ---------------------------------------------------------------------------

enum Read1 {
    Item(SseItem),
    Timeout,
    Closed(String),
}

struct RawSse {
    stream: TcpStream,
    parser: SseParser,
}

impl RawSse {
    /// Opens `/api/stream`, optionally resuming after `last_id`, optionally with
    /// a small receive buffer (set before connecting so the window is small).
    fn connect(
        addr: SocketAddr,
        token: &str,
        last_id: Option<&str>,
        recv_buffer: Option<usize>,
    ) -> io::Result<RawSse> {
        use socket2::{Domain, Socket, Type};
        let socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
        if let Some(size) = recv_buffer {
            socket.set_recv_buffer_size(size)?;
        }
        socket.connect_timeout(&addr.into(), Duration::from_secs(5))?;
        let mut stream: TcpStream = socket.into();
        stream.set_nodelay(true)?;
        let mut req = format!(
            "GET /api/stream HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\
             Authorization: Bearer {token}\r\n"
        );
        if let Some(id) = last_id {
            req.push_str(&format!("Last-Event-ID: {id}\r\n"));
        }
        req.push_str("\r\n");
        stream.write_all(req.as_bytes())?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        // Read the response head byte by byte-ish; whatever follows it is body.
        let mut head = Vec::new();
        let mut buf = [0u8; 4096];
        let body_start;
        loop {
            let n = stream.read(&mut buf)?;
            if n == 0 {
                return Err(io::Error::new(
                    ErrorKind::UnexpectedEof,
                    "stream closed in the head",
                ));
            }
            head.extend_from_slice(&buf[..n]);
            if let Some(p) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                body_start = p + 4;
                break;
            }
            if head.len() > 64 * 1024 {
                return Err(io::Error::other("response head too long"));
            }
        }
        let status_line = String::from_utf8_lossy(&head[..head.len().min(64)]).into_owned();
        if !status_line.starts_with("HTTP/1.1 200") {
            return Err(io::Error::other(format!(
                "stream refused: {}",
                status_line.lines().next().unwrap_or("")
            )));
        }
        let mut parser = SseParser::new();
        parser.feed(&head[body_start..]);
        Ok(RawSse { stream, parser })
    }

    fn next(&mut self, timeout: Duration) -> Read1 {
        if let Some(item) = self.parser.poll_item() {
            return Read1::Item(item);
        }
        let _ = self
            .stream
            .set_read_timeout(Some(timeout.max(Duration::from_millis(1))));
        let mut buf = [0u8; 16 * 1024];
        match self.stream.read(&mut buf) {
            Ok(0) => Read1::Closed("end of stream".into()),
            Ok(n) => {
                self.parser.feed(&buf[..n]);
                match self.parser.poll_item() {
                    Some(item) => Read1::Item(item),
                    None => Read1::Timeout,
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                Read1::Timeout
            }
            Err(e) => Read1::Closed(e.to_string()),
        }
    }
}

// ---------------------------------------------------------------------------
// Subscribers
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Role {
    Stable,
    Droppable,
    Slow,
}

/// One sequenced event as a client saw it.
struct Seen {
    epoch: u64,
    seq: u64,
    id: String,
    /// `ev-<n>` → `Some(n)`.
    ev: Option<u64>,
    at: Instant,
    /// The slow client was stalled when this arrived.
    slow_stalled: bool,
}

enum Rec {
    /// A (re)connection, with the id it resumed after.
    Connected {
        last_id: Option<String>,
    },
    Reset(String),
    Event(Seen),
}

struct SubLog {
    name: String,
    role: Role,
    recs: Vec<Rec>,
    /// The client hung up on purpose (a fault).
    dropped_by_us: u32,
    /// The edge ended the stream (for the slow client: expected after a stall).
    closed_by_edge: u32,
    stalls: u32,
    stalled_for: Duration,
    errors: Vec<String>,
}

struct SubHandle {
    name: String,
    drop_now: Arc<AtomicBool>,
    max_ev: Arc<AtomicI64>,
    thread: JoinHandle<SubLog>,
}

fn parse_id(id: &str) -> Option<(u64, u64)> {
    let (epoch, seq) = id.split_once('-')?;
    Some((epoch.parse().ok()?, seq.parse().ok()?))
}

fn event_content(data: &str) -> Option<String> {
    let v: Value = serde_json::from_str(data).ok()?;
    v["data"]["content"].as_str().map(str::to_owned)
}

fn spawn_subscriber(
    run: &Arc<Run>,
    name: String,
    role: Role,
    token: String,
    seed: u64,
    max_ev: Arc<AtomicI64>,
) -> SubHandle {
    let drop_now = Arc::new(AtomicBool::new(false));
    let (run2, drop2, max2, name2) = (run.clone(), drop_now.clone(), max_ev.clone(), name.clone());
    let thread = thread::Builder::new()
        .name(format!("soak-{name}"))
        .spawn(move || subscriber(&run2, name2, role, &token, seed, &drop2, &max2))
        .expect("spawn subscriber");
    SubHandle {
        name,
        drop_now,
        max_ev,
        thread,
    }
}

fn subscriber(
    run: &Run,
    name: String,
    role: Role,
    token: &str,
    seed: u64,
    drop_now: &AtomicBool,
    max_ev: &AtomicI64,
) -> SubLog {
    let mut log = SubLog {
        name,
        role,
        recs: Vec::new(),
        dropped_by_us: 0,
        closed_by_edge: 0,
        stalls: 0,
        stalled_for: Duration::ZERO,
        errors: Vec::new(),
    };
    let mut rng = StdRng::seed_from_u64(seed);
    let mut last_id: Option<String> = None;
    // Small next to the edge's multi-megabyte send buffer. Not smaller: with a
    // few KiB, loopback TCP drops segments and backs off so hard that the client
    // reads slower (~40 KB/s) than the events arrive even when it is reading.
    let recv_buffer = (role == Role::Slow).then_some(64 * 1024);
    // The slow client reads for a while, then stalls.
    let mut next_stall = Instant::now() + Duration::from_millis(rng.random_range(2000..6000));
    'connect: while !run.stop_subscribers.load(Ordering::SeqCst) {
        let mut sse = match RawSse::connect(run.edge_addr, token, last_id.as_deref(), recv_buffer) {
            Ok(s) => s,
            Err(e) => {
                let hint = if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) {
                    " — the edge accepted the connection but sent no response head in 5 s \
                     (tiny_http 0.12's TaskPool can leave a new connection queued behind \
                     long-lived SSE connections when several arrive at once)"
                } else {
                    ""
                };
                log.errors.push(format!(
                    "connect at {:.3}s (resuming after {last_id:?}) failed: {e}{hint}",
                    run.elapsed(Instant::now())
                ));
                thread::sleep(Duration::from_millis(200));
                continue;
            }
        };
        log.recs.push(Rec::Connected {
            last_id: last_id.clone(),
        });
        loop {
            if run.stop_subscribers.load(Ordering::SeqCst) {
                break 'connect;
            }
            if role == Role::Droppable && drop_now.swap(false, Ordering::SeqCst) {
                drop(sse);
                log.dropped_by_us += 1;
                thread::sleep(Duration::from_millis(rng.random_range(0..300)));
                continue 'connect;
            }
            if role == Role::Slow
                && Instant::now() >= next_stall
                && !run.stop_load.load(Ordering::SeqCst)
            {
                let long = run.soak_secs >= 300 && log.stalls % 5 == 4;
                let stall = if long {
                    // Long runs: long enough to fill the edge's socket buffers
                    // (Linux autotunes them to megabytes) so the edge drops it.
                    Duration::from_secs(rng.random_range(60..90))
                } else {
                    Duration::from_millis(rng.random_range(2000..12000))
                };
                run.slow_stalled.store(true, Ordering::SeqCst);
                let started = Instant::now();
                // Ends early once the load stops, so the final check can finish.
                sleep_unless(&run.stop_load, stall);
                run.slow_stalled.store(false, Ordering::SeqCst);
                log.stalls += 1;
                log.stalled_for += started.elapsed();
                next_stall = Instant::now() + Duration::from_millis(rng.random_range(2000..6000));
            }
            match sse.next(Duration::from_millis(100)) {
                Read1::Timeout => {}
                Read1::Closed(why) => {
                    log.closed_by_edge += 1;
                    if role != Role::Slow {
                        log.errors.push(format!(
                            "the edge ended the stream at {:.3}s ({why}); last id {last_id:?}",
                            run.elapsed(Instant::now())
                        ));
                    }
                    continue 'connect;
                }
                Read1::Item(SseItem::Event(ev)) => {
                    let at = Instant::now();
                    match ev.event.as_str() {
                        "stream.reset" => log.recs.push(Rec::Reset(ev.data.clone())),
                        // State items carry no id of their own (the parser repeats the last one).
                        "gateway.status" | "voice.snapshot" => {}
                        _ => {
                            let Some((epoch, seq)) = parse_id(&ev.id) else {
                                log.errors
                                    .push(format!("{} event with id {:?}", ev.event, ev.id));
                                continue;
                            };
                            let content = event_content(&ev.data);
                            let evn = content
                                .as_deref()
                                .and_then(|c| c.strip_prefix("ev-"))
                                .and_then(|c| c.split(' ').next())
                                .and_then(|n| n.parse::<u64>().ok());
                            if let Some(n) = evn {
                                max_ev.fetch_max(n as i64, Ordering::SeqCst);
                            }
                            last_id = Some(ev.id.clone());
                            log.recs.push(Rec::Event(Seen {
                                epoch,
                                seq,
                                id: ev.id,
                                ev: evn,
                                at,
                                slow_stalled: run.slow_stalled.load(Ordering::SeqCst),
                            }));
                        }
                    }
                }
                Read1::Item(SseItem::Error(e)) => log.errors.push(format!("parser: {e:?}")),
                Read1::Item(_) => {}
            }
        }
    }
    log
}

// ---------------------------------------------------------------------------
// Load and faults
// ---------------------------------------------------------------------------

fn poster(run: Arc<Run>) {
    let period = Duration::from_micros(1_000_000 / EVENTS_PER_SEC);
    let mut next = Instant::now();
    while !run.stop_load.load(Ordering::SeqCst) {
        run.post_event();
        next += period;
        let now = Instant::now();
        if next > now {
            thread::sleep(next - now);
        } else if now - next > Duration::from_secs(1) {
            next = now;
        }
    }
}

fn command_client(run: Arc<Run>, token: String, client: usize) {
    let agent = agent();
    let url = format!("http://{}/api/send-message", run.edge_addr);
    let period = Duration::from_micros(1_000_000 / COMMANDS_PER_SEC_PER_CLIENT);
    // Spread the clients over the period.
    let mut next = Instant::now() + period * client as u32 / COMMAND_CLIENTS as u32;
    while !run.stop_load.load(Ordering::SeqCst) {
        let now = Instant::now();
        if next > now {
            thread::sleep(next - now);
        }
        next += period;
        if Instant::now() > next + Duration::from_secs(1) {
            next = Instant::now();
        }
        let id = run.next_command.fetch_add(1, Ordering::SeqCst);
        let channel = if id % 2 == 0 {
            ids::GENERAL
        } else {
            ids::GAME_ROOM
        };
        let body = format!(r#"{{"channelId":"{channel}","content":"cmd-{id}"}}"#);
        let started = Instant::now();
        let sent = agent
            .post(&url)
            .header("Content-Type", "application/json")
            .header("Authorization", &format!("Bearer {token}"))
            .send(&body);
        let took = started.elapsed();
        let (result, request_id) = match sent {
            Ok(resp) => {
                let resp = harness::Response::from(resp);
                let rid = resp.json()["requestId"].as_str().map(str::to_owned);
                (Ok(resp.status), rid)
            }
            Err(e) => (Err(e.to_string()), None),
        };
        run.calls.lock().push(Call {
            id,
            started,
            took,
            result,
            request_id,
        });
    }
}

/// Declares the chain down, waits until the last event posted while up has
/// reached a stable client (so "posted while up" means "must be delivered"),
/// then shuts the gateway down.
fn kill_gateway(run: &Run) {
    *run.up.write() = false;
    let last_up = run.last_up_seq.load(Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(5);
    while run.stable_progress[0].load(Ordering::SeqCst) < last_up {
        if Instant::now() > deadline {
            run.anomaly(format!(
                "ev-{last_up}, posted while the chain was up, had not reached stable-0 5 s later (it saw up to ev-{})",
                run.stable_progress[0].load(Ordering::SeqCst)
            ));
            break;
        }
        thread::sleep(Duration::from_millis(2));
    }
    let down = Instant::now();
    run.outages.lock().push(Outage {
        down,
        restarted: None,
        up: None,
    });
    if let Some(g) = run.gateway.lock().take() {
        g.shutdown();
    }
}

/// Starts the gateway on the same link address and waits until its Discord
/// session and the edge's link are up; then declares the chain up.
fn restore_gateway(run: &Run) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let gateway = loop {
        match Gateway::start(run.gateway_settings.clone(), Arc::new(Metrics::new())) {
            Ok(g) => break g,
            Err(e) if Instant::now() < deadline => {
                eprintln!("soak: gateway restart failed ({e}); retrying");
                thread::sleep(Duration::from_millis(100));
            }
            Err(e) => panic!(
                "the gateway cannot restart on {}: {e}",
                run.gateway_settings.bind
            ),
        }
    };
    let restarted = Instant::now();
    let discord_up = gateway.wait_discord_connected(Duration::from_secs(15));
    let edge_back = gateway.wait_for_edges(1, Duration::from_secs(15));
    *run.gateway.lock() = Some(gateway);
    if !discord_up || !edge_back {
        run.anomaly(format!(
            "after a restart: Discord session up {discord_up}, edge linked {edge_back} (15 s each)"
        ));
    }
    let up = Instant::now();
    if let Some(o) = run.outages.lock().last_mut() {
        o.restarted = Some(restarted);
        o.up = Some(up);
    }
    *run.up.write() = true;
}

fn fault_loop(run: Arc<Run>, seed: u64, droppable: Vec<Arc<AtomicBool>>) {
    let mut rng = StdRng::seed_from_u64(seed);
    loop {
        let wait = Duration::from_millis(rng.random_range(2000..5000));
        if !sleep_unless(&run.stop_load, wait) {
            return;
        }
        if let Some(redis) = run.redis.as_ref().filter(|_| rng.random_bool(0.3)) {
            let down_for = Duration::from_millis(rng.random_range(500..2000));
            run.fault(format!(
                "redis killed, restarted after {} ms",
                down_for.as_millis()
            ));
            redis.lock().kill();
            thread::sleep(down_for);
            redis.lock().restart();
        } else if rng.random_bool(0.5) {
            let down_for = Duration::from_millis(rng.random_range(500..2000));
            run.fault(format!(
                "gateway shutdown, restart after {} ms",
                down_for.as_millis()
            ));
            kill_gateway(&run);
            thread::sleep(down_for);
            restore_gateway(&run);
            eprintln!("soak: gateway back at {:.3}s", run.elapsed(Instant::now()));
        } else {
            let i = rng.random_range(0..droppable.len());
            run.fault(format!("drop SSE client droppable-{i}"));
            droppable[i].store(true, Ordering::SeqCst);
        }
    }
}

// ---------------------------------------------------------------------------
// Checks
// ---------------------------------------------------------------------------

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn fmt_ms(d: Duration) -> String {
    format!("{:.1}ms", d.as_secs_f64() * 1000.0)
}

/// Contiguity of one client's ids across its reconnects: every sequenced event
/// follows the previous one by exactly one, unless a `stream.reset` came between.
fn check_contiguous(log: &SubLog, failures: &mut Vec<String>) -> (usize, usize) {
    let mut prev: Option<(u64, u64, String)> = None;
    let mut reset_since = false;
    let mut events = 0;
    let mut resets = 0;
    let mut reported = 0;
    let mut last_ev: Option<u64> = None;
    for rec in &log.recs {
        match rec {
            Rec::Connected { last_id } => {
                if last_id.as_deref() != prev.as_ref().map(|p| p.2.as_str()) {
                    failures.push(format!(
                        "{}: resumed after {last_id:?} but its last event was {:?}",
                        log.name,
                        prev.as_ref().map(|p| &p.2)
                    ));
                }
            }
            Rec::Reset(data) => {
                resets += 1;
                reset_since = true;
                eprintln!("soak: {} got stream.reset: {data}", log.name);
            }
            Rec::Event(s) => {
                events += 1;
                if let Some((pe, ps, pid)) = &prev {
                    if !reset_since && (s.epoch != *pe || s.seq != ps + 1) && reported < 5 {
                        reported += 1;
                        failures.push(format!(
                            "{}: id {} follows {pid} (expected {pe}-{}): events were lost or repeated",
                            log.name,
                            s.id,
                            ps + 1
                        ));
                    }
                }
                if let Some(n) = s.ev {
                    if last_ev.is_some_and(|l| n <= l) && reported < 5 {
                        reported += 1;
                        failures.push(format!(
                            "{}: ev-{n} arrived after ev-{} (out of order or twice)",
                            log.name,
                            last_ev.unwrap_or(0)
                        ));
                    }
                    last_ev = Some(n);
                }
                prev = Some((s.epoch, s.seq, s.id.clone()));
                reset_since = false;
            }
        }
    }
    (events, resets)
}

#[test]
fn soak_with_faults() {
    let soak_secs = env_u64("SOAK_SECS").unwrap_or(60);
    let seed = env_u64("SOAK_SEED").unwrap_or_else(rand::random);
    eprintln!("soak: SOAK_SECS={soak_secs} SOAK_SEED={seed}");
    let capture: &'static CommandLog = Box::leak(Box::default());
    if log::set_logger(capture).is_ok() {
        log::set_max_level(log::LevelFilter::Info);
        let _ = COMMAND_LOG.set(capture);
    }
    trim_heap();
    let threads_before = threads_now();
    let names_before = thread_names();
    let rss_before = rss_kb();

    // ---- setup ----
    let fast = RateLimit::new(100_000, Duration::from_secs(1));
    let sim = Arc::new(
        SimDiscord::start(SimConfig {
            heartbeat_interval: Duration::from_millis(1000),
            rate_limits: RateLimits {
                messages: fast,
                reactions: fast,
                typing: fast,
                members: fast,
                member_reads: fast,
                gateway: fast,
                message_reads: fast,
                webhooks: fast,
                channel_reads: fast,
            },
            global_limit_per_sec: 100_000,
            ..SimConfig::default()
        })
        .expect("the simulated Discord starts"),
    );
    let link_token = Secret::new("soak-link-token");
    let mut gateway_settings = GatewaySettings::for_discord_at(
        "127.0.0.1:0".parse().unwrap(),
        link_token.clone(),
        Secret::new(sim.bot_token()),
        sim.api_base(),
        sim.gateway_url(),
    );
    gateway_settings.backoff = fast_backoff();
    // SOAK_REDIS=1: the gateway and the edge share a real redis-server (ids,
    // replay log, buckets), and Redis itself is killed and restarted as a fault.
    let redis = (env_u64("SOAK_REDIS") == Some(1)).then(RedisServer::start);
    if let Some(r) = &redis {
        eprintln!("soak: with Redis at {}", r.url());
        gateway_settings.redis = Some(relay::gateway::RedisSettings {
            url: Secret::new(r.url()),
            lease: Duration::from_secs(10),
            timeout: relay::gateway::REDIS_TIMEOUT,
        });
    }
    let gateway =
        Gateway::start(gateway_settings.clone(), Arc::new(Metrics::new())).expect("gateway starts");
    assert!(
        gateway.wait_discord_connected(Duration::from_secs(10)),
        "the gateway's Discord session comes up"
    );
    // Restarts bind the same port the edge is linked to.
    gateway_settings.bind = gateway.link_addr();
    let mut edge_settings = harness::settings(&gateway.link_url());
    edge_settings.link_token = link_token;
    edge_settings.redis_url = redis.as_ref().map(|r| Secret::new(r.url()));
    edge_settings.limits = LimitConfig {
        burst: 10_000,
        refill: 10_000,
        window: Duration::from_secs(1),
    };
    edge_settings.reply_timeout = REPLY_TIMEOUT;
    // Short, so a closed client's stream thread notices at its next heartbeat.
    edge_settings.heartbeat = Duration::from_secs(2);
    let edge_metrics = Arc::new(Metrics::new());
    let edge = Edge::start(edge_settings, edge_metrics.clone()).expect("edge starts");
    let edge_addr = edge.local_addr();
    assert!(
        gateway.wait_for_edges(1, Duration::from_secs(10)),
        "the edge links to the gateway"
    );
    let token = |sub: &str, roles: &[&str]| {
        let roles: Vec<String> = roles.iter().map(|r| r.to_string()).collect();
        edge.issue_token(sub, None, &roles, Duration::from_secs(4 * 3600))
    };

    let stable_progress: Vec<Arc<AtomicI64>> =
        (0..2).map(|_| Arc::new(AtomicI64::new(-1))).collect();
    let run = Arc::new(Run {
        t0: Instant::now(),
        soak_secs,
        edge_addr,
        sim: sim.clone(),
        gateway: Mutex::new(Some(gateway)),
        gateway_settings,
        up: RwLock::new(true),
        last_up_seq: AtomicI64::new(-1),
        posted: Mutex::new(Vec::new()),
        next_event: AtomicU64::new(0),
        next_command: AtomicU64::new(0),
        calls: Mutex::new(Vec::new()),
        outages: Mutex::new(Vec::new()),
        faults: Mutex::new(Vec::new()),
        anomalies: Mutex::new(Vec::new()),
        stop_load: AtomicBool::new(false),
        stop_subscribers: AtomicBool::new(false),
        slow_stalled: AtomicBool::new(false),
        stable_progress: stable_progress.clone(),
        peak_rss_kb: AtomicI64::new(0),
        redis: redis.map(Mutex::new),
    });

    // Every command Discord carried out, with when: MESSAGE_CREATE by the bot.
    let sim_events = sim.subscribe();
    let executions: Arc<Mutex<HashMap<u64, Vec<Instant>>>> = Arc::default();
    let collector = {
        let executions = executions.clone();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let handle = named("soak-collector", move || loop {
            match sim_events.recv_timeout(Duration::from_millis(100)) {
                Ok(ev) => {
                    if ev.name == "MESSAGE_CREATE" && ev.data["author"]["id"] == ids::BOT_USER {
                        if let Some(n) = ev.data["content"]
                            .as_str()
                            .and_then(|c| c.strip_prefix("cmd-"))
                            .and_then(|n| n.parse::<u64>().ok())
                        {
                            executions.lock().entry(n).or_default().push(Instant::now());
                        }
                    }
                }
                Err(_) if stop2.load(Ordering::SeqCst) => return,
                Err(_) => {}
            }
        });
        (stop, handle)
    };

    // ---- subscribers ----
    let viewer = token("soak-viewer", &[]);
    let mut subs = Vec::new();
    for (i, progress) in stable_progress.iter().enumerate() {
        subs.push(spawn_subscriber(
            &run,
            format!("stable-{i}"),
            Role::Stable,
            viewer.clone(),
            seed ^ (100 + i as u64),
            progress.clone(),
        ));
    }
    for i in 0..DROPPABLE_CLIENTS {
        subs.push(spawn_subscriber(
            &run,
            format!("droppable-{i}"),
            Role::Droppable,
            viewer.clone(),
            seed ^ (200 + i as u64),
            Arc::new(AtomicI64::new(-1)),
        ));
    }
    subs.push(spawn_subscriber(
        &run,
        "slow".into(),
        Role::Slow,
        viewer.clone(),
        seed ^ 300,
        Arc::new(AtomicI64::new(-1)),
    ));
    // Everyone is subscribed before the first event.
    let deadline = Instant::now() + Duration::from_secs(10);
    while edge_metrics.sse_clients() < subs.len() as i64 {
        assert!(
            Instant::now() < deadline,
            "only {} of {} SSE clients connected",
            edge_metrics.sse_clients(),
            subs.len()
        );
        thread::sleep(Duration::from_millis(10));
    }

    // ---- load and faults ----
    let mut load = Vec::new();
    {
        let run = run.clone();
        load.push(named("soak-poster", move || poster(run)));
    }
    for c in 0..COMMAND_CLIENTS {
        let run = run.clone();
        let t = token(&format!("soak-user-{c}"), &["chat:write"]);
        load.push(named(&format!("soak-cmd-{c}"), move || {
            command_client(run, t, c)
        }));
    }
    let fault_thread = {
        let run = run.clone();
        let flags = subs
            .iter()
            .filter(|s| s.name.starts_with("droppable"))
            .map(|s| s.drop_now.clone())
            .collect();
        named("soak-faults", move || fault_loop(run, seed, flags))
    };
    let load_end = Instant::now() + Duration::from_secs(soak_secs);
    let mut printed = 0;
    while Instant::now() < load_end {
        run.peak_rss_kb.fetch_max(rss_kb(), Ordering::SeqCst);
        thread::sleep(Duration::from_millis(500));
        let s = run.elapsed(Instant::now()) as u64;
        if s / 10 > printed {
            printed = s / 10;
            eprintln!(
                "soak: {s}s: events {} commands {} threads {} rss {} kB",
                run.next_event.load(Ordering::SeqCst),
                run.next_command.load(Ordering::SeqCst),
                threads_now(),
                rss_kb()
            );
        }
    }

    // ---- wind down: stop the load, restore the gateway, drain ----
    run.stop_load.store(true, Ordering::SeqCst);
    for t in load {
        t.join().expect("load thread");
    }
    fault_thread.join().expect("fault thread");
    if run.gateway.lock().is_none() {
        restore_gateway(&run);
    }
    let mut failures: Vec<String> = Vec::new();
    let drain_deadline = Instant::now() + Duration::from_secs(20);
    let http = agent();
    let ready_url = format!("http://{edge_addr}/readyz");
    let mut last_ready = Value::Null;
    loop {
        if let Ok(mut resp) = http.get(&ready_url).call() {
            let status = resp.status().as_u16();
            last_ready =
                serde_json::from_str(&resp.body_mut().read_to_string().unwrap_or_default())
                    .unwrap_or(Value::Null);
            if status == 200 && last_ready["queueDepth"] == 0 {
                break;
            }
        }
        if Instant::now() > drain_deadline {
            failures.push(format!(
                "the command queue did not drain within 20 s: /readyz says {last_ready}"
            ));
            break;
        }
        thread::sleep(Duration::from_millis(50));
    }
    // A tail of events with the chain up, so every client has something to catch up to.
    let mut final_ev = 0;
    for _ in 0..20 {
        final_ev = run.post_event();
        thread::sleep(Duration::from_millis(10));
    }
    let catch_up = Instant::now() + Duration::from_secs(20);
    while subs
        .iter()
        .any(|s| s.max_ev.load(Ordering::SeqCst) < final_ev as i64)
    {
        if Instant::now() > catch_up {
            for s in &subs {
                let seen = s.max_ev.load(Ordering::SeqCst);
                if seen < final_ev as i64 {
                    failures.push(format!(
                        "{} never caught up: saw up to ev-{seen}, the last event is ev-{final_ev}",
                        s.name
                    ));
                }
            }
            break;
        }
        thread::sleep(Duration::from_millis(20));
    }
    // Its keep-alive connection would hold one of the edge's HTTP threads.
    drop(http);
    // Executions happen before their acks, and the queue is empty: all are in.
    thread::sleep(Duration::from_millis(300));
    collector.0.store(true, Ordering::SeqCst);
    collector.1.join().expect("collector");
    run.stop_subscribers.store(true, Ordering::SeqCst);
    let logs: Vec<SubLog> = subs
        .into_iter()
        .map(|s| s.thread.join().expect("subscriber thread"))
        .collect();

    // ---- 1 + 2: commands ----
    let calls = std::mem::take(&mut *run.calls.lock());
    let executions = std::mem::take(&mut *executions.lock());
    let outages = run.outages.lock().clone();
    let requests = sim.requests();
    let mut rest_posts: HashMap<u64, usize> = HashMap::new();
    for r in &requests {
        if r.method == "POST"
            && r.path.starts_with("/api/v10/channels/")
            && r.path.ends_with("/messages")
        {
            if let Some(n) = r
                .json()
                .and_then(|v| v["content"].as_str().map(str::to_owned))
                .and_then(|c| c.strip_prefix("cmd-").and_then(|n| n.parse::<u64>().ok()))
            {
                *rest_posts.entry(n).or_default() += 1;
            }
        }
    }
    let rest_log_complete = requests.len() < 10_000;
    let mut by_status: BTreeMap<String, usize> = BTreeMap::new();
    let mut duplicates = Vec::new();
    // Commands POSTed more than once (re-sent to a restarted gateway); Discord's
    // nonce check keeps them to one message.
    let mut reposted = 0;
    let mut slowest = Duration::ZERO;
    let mut e504_executed = 0;
    let mut e502_executed = 0;
    let mut call_ids = HashSet::new();
    let mut request_ids = HashSet::new();
    for call in &calls {
        call_ids.insert(call.id);
        slowest = slowest.max(call.took);
        let key = match &call.result {
            Ok(s) => s.to_string(),
            Err(_) => "transport error".to_string(),
        };
        *by_status.entry(key).or_default() += 1;
        let runs = executions.get(&call.id).map_or(&[][..], |v| v.as_slice());
        let at = run.elapsed(call.started);
        if let Some(rid) = &call.request_id {
            if !request_ids.insert(rid.clone()) {
                failures.push(format!("requestId {rid} was handed out twice"));
            }
        }
        if call.took > CALL_LIMIT {
            failures.push(format!(
                "cmd-{} (sent at {at:.3}s) took {:?}: longer than {CALL_LIMIT:?}",
                call.id, call.took
            ));
        }
        match &call.result {
            Err(e) => failures.push(format!("cmd-{} at {at:.3}s: no HTTP answer: {e}", call.id)),
            Ok(200) if runs.is_empty() => {
                failures.push(format!(
                "cmd-{} at {at:.3}s was answered 200 (requestId {:?}) but Discord never got it; {}",
                call.id, call.request_id, command_log(&call.request_id)
            ))
            }
            Ok(202) if runs.is_empty() => failures.push(format!(
                "cmd-{} at {at:.3}s was queued (202, requestId {:?}) but never ran; {}",
                call.id,
                call.request_id,
                command_log(&call.request_id)
            )),
            Ok(429 | 503) if !runs.is_empty() => failures.push(format!(
                "cmd-{} at {at:.3}s was refused ({:?}) yet ran {} time(s)",
                call.id,
                call.result,
                runs.len()
            )),
            Ok(200 | 202 | 429 | 502 | 503 | 504) => {}
            Ok(other) => failures.push(format!(
                "cmd-{} at {at:.3}s got HTTP {other}, not a command status",
                call.id
            )),
        }
        if call.result == Ok(504) && !runs.is_empty() {
            e504_executed += 1;
        }
        if call.result == Ok(502) && !runs.is_empty() {
            e502_executed += 1;
        }
        if runs.len() > 1 {
            let (first, last) = (runs[0], runs[runs.len() - 1]);
            let straddled: Vec<&Outage> = outages
                .iter()
                .filter(|o| o.down <= last && o.up.is_none_or(|u| u >= first))
                .collect();
            duplicates.push(format!(
                "cmd-{} (HTTP {:?}, requestId {:?}, sent at {at:.3}s) ran {} times at [{}]; gateway outages around it: [{}]; {}",
                call.id,
                call.result,
                call.request_id,
                runs.len(),
                runs.iter()
                    .map(|r| format!("{:.3}s", run.elapsed(*r)))
                    .collect::<Vec<_>>()
                    .join(", "),
                straddled
                    .iter()
                    .map(|o| format!(
                        "down {:.3}s restarted {} up {}",
                        run.elapsed(o.down),
                        o.restarted.map_or("-".into(), |t| format!("{:.3}s", run.elapsed(t))),
                        o.up.map_or("-".into(), |t| format!("{:.3}s", run.elapsed(t)))
                    ))
                    .collect::<Vec<_>>()
                    .join("; "),
                command_log(&call.request_id)
            ));
        }
        if rest_log_complete {
            let posts = rest_posts.get(&call.id).copied().unwrap_or(0);
            if posts < runs.len() {
                failures.push(format!(
                    "cmd-{}: {posts} REST POSTs recorded but {} messages created",
                    call.id,
                    runs.len()
                ));
            }
            if posts > 1 {
                reposted += 1;
            }
        }
    }
    for n in executions.keys() {
        if !call_ids.contains(n) {
            failures.push(format!("cmd-{n} ran but no client sent it"));
        }
    }
    for d in &duplicates {
        failures.push(format!("duplicate: {d}"));
    }

    // ---- 3: events ----
    let posted = run.posted.lock().clone();
    let posted_up = posted.iter().filter(|p| p.up).count();
    let mut resets_total = 0;
    let mut slow_resets = 0;
    let mut stable_sets: Vec<Vec<u64>> = Vec::new();
    let mut lat_stalled = Vec::new();
    let mut lat_free = Vec::new();
    for log in &logs {
        for e in &log.errors {
            failures.push(format!("{}: {e}", log.name));
        }
        let (_, resets) = check_contiguous(log, &mut failures);
        if log.role == Role::Slow && soak_secs >= 300 {
            // Its 60-90 s stalls may legitimately outlast the replay ring.
            slow_resets += resets;
        } else {
            resets_total += resets;
        }
        if log.role == Role::Stable {
            let connects = log
                .recs
                .iter()
                .filter(|r| matches!(r, Rec::Connected { .. }))
                .count();
            if connects != 1 {
                failures.push(format!("{} connected {connects} times", log.name));
            }
            let mut seen = Vec::new();
            for r in &log.recs {
                if let Rec::Event(s) = r {
                    if let Some(n) = s.ev {
                        seen.push(n);
                        // Events posted while the chain was down arrive late by
                        // design (with Redis the edge fills them in from the
                        // shared log after relinking; without, they are lost):
                        // only those posted while up measure delivery.
                        if let Some(p) = posted.get(n as usize).filter(|p| p.up) {
                            let lat = s.at.saturating_duration_since(p.at);
                            if s.slow_stalled {
                                lat_stalled.push(lat);
                            } else {
                                lat_free.push(lat);
                            }
                        }
                    }
                }
            }
            let got: HashSet<u64> = seen.iter().copied().collect();
            let missing: Vec<u64> = posted
                .iter()
                .enumerate()
                .filter(|(n, p)| p.up && !got.contains(&(*n as u64)))
                .map(|(n, _)| n as u64)
                .collect();
            if !missing.is_empty() {
                failures.push(format!(
                    "{} missed {} events posted while everything was up, e.g. ev-{:?}",
                    log.name,
                    missing.len(),
                    &missing[..missing.len().min(10)]
                ));
            }
            stable_sets.push(seen);
        }
    }
    if stable_sets.len() == 2 && stable_sets[0] != stable_sets[1] {
        failures.push(format!(
            "the stable clients saw different events: {} vs {}",
            stable_sets[0].len(),
            stable_sets[1].len()
        ));
    }
    let delivered_stable = stable_sets.first().map_or(0, Vec::len);
    if resets_total > 0 {
        failures.push(format!(
            "{resets_total} stream.reset(s) with a 4096-event ring: a resume fell off the ring"
        ));
    }

    // ---- 5: latency ----
    lat_stalled.sort();
    lat_free.sort();
    let p99_stalled = percentile(&lat_stalled, 0.99);
    let p99_free = percentile(&lat_free, 0.99);
    if p99_free > LATENCY_P99_LIMIT {
        failures.push(format!(
            "stable delivery p99 {} while the slow client reads (limit {})",
            fmt_ms(p99_free),
            fmt_ms(LATENCY_P99_LIMIT)
        ));
    }
    if p99_stalled > LATENCY_P99_LIMIT {
        failures.push(format!(
            "stable delivery p99 {} while the slow client is stalled (limit {})",
            fmt_ms(p99_stalled),
            fmt_ms(LATENCY_P99_LIMIT)
        ));
    }
    if lat_stalled.is_empty() {
        failures.push("the slow client never stalled while events flowed".into());
    }

    let metrics_text = edge_metrics.encode();
    let slow_closes = logs
        .iter()
        .filter(|l| l.role == Role::Slow)
        .map(|l| l.closed_by_edge)
        .sum::<u32>();
    let dropped_slow_count: u64 = metrics_text
        .lines()
        .find_map(|l| l.strip_prefix("relay_sse_dropped_slow_total "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64);
    if dropped_slow_count > u64::from(slow_closes) {
        failures.push(format!(
            "relay_sse_dropped_slow_total is {dropped_slow_count}, but the only slow client was ended \
             by the edge {slow_closes} time(s): hang-ups are being counted as slow drops"
        ));
    }
    let command_metrics: Vec<String> = metrics_text
        .lines()
        .filter(|l| {
            l.starts_with("relay_commands_total") || l.starts_with("relay_rate_limited_total")
        })
        .map(str::to_owned)
        .collect();
    let dropped_slow = metrics_text
        .lines()
        .find(|l| l.starts_with("relay_sse_dropped_slow_total"))
        .unwrap_or("relay_sse_dropped_slow_total ?")
        .to_owned();

    // ---- 4: teardown, threads and RSS ----
    let sub_lines: Vec<String> = logs
        .iter()
        .map(|l| {
            let connects = l.recs.iter().filter(|r| matches!(r, Rec::Connected { .. })).count();
            let events = l.recs.iter().filter(|r| matches!(r, Rec::Event(_))).count();
            format!(
                "{}: {events} events, {connects} connections, hung up {} times, ended by the edge {} times, stalled {} times for {:.1}s",
                l.name, l.dropped_by_us, l.closed_by_edge, l.stalls, l.stalled_for.as_secs_f64()
            )
        })
        .collect();
    drop(logs);
    // The test's own bookkeeping is not what the RSS check is about.
    let (posted_total, calls_total, ran_total) = (posted.len(), calls.len(), executions.len());
    drop((posted, calls, executions, requests, rest_posts, stable_sets));
    if let Some(l) = COMMAND_LOG.get() {
        l.0.lock().clear();
    }
    edge.shutdown();
    if let Some(g) = run.gateway.lock().take() {
        g.shutdown();
    }
    let faults = run.faults.lock().clone();
    let peak_rss = run.peak_rss_kb.load(Ordering::SeqCst);
    let anomalies = run.anomalies.lock().clone();
    drop(run);
    match Arc::try_unwrap(sim) {
        Ok(sim) => sim.shutdown(),
        Err(_) => failures.push("something still holds the simulator".into()),
    }
    let settle = Instant::now() + Duration::from_secs(15);
    let (mut threads_after, mut rss_after);
    loop {
        trim_heap();
        threads_after = threads_now();
        rss_after = rss_kb();
        if threads_after <= threads_before + THREAD_SLACK || Instant::now() > settle {
            break;
        }
        thread::sleep(Duration::from_millis(100));
    }
    let names_after = thread_names();
    if threads_after > threads_before + THREAD_SLACK {
        failures.push(format!(
            "threads did not return to baseline: {threads_before} before ({names_before}), \
             {threads_after} 15 s after closing ({names_after})"
        ));
    }
    if rss_after > rss_before + RSS_SLACK_KB {
        failures.push(format!(
            "RSS did not return near baseline: {rss_before} kB before, {rss_after} kB after (slack {RSS_SLACK_KB} kB)"
        ));
    }

    // ---- summary ----
    let gateway_faults = faults.iter().filter(|f| f.starts_with("gateway")).count();
    let redis_faults = faults.iter().filter(|f| f.starts_with("redis")).count();
    let drop_faults = faults.len() - gateway_faults - redis_faults;
    eprintln!("================ soak summary (seed {seed}, {soak_secs} s) ================");
    eprintln!(
        "events: posted {posted_total} ({posted_up} while everything was up, {} while the gateway was down or relinking); delivered to each stable client {delivered_stable}",
        posted_total - posted_up
    );
    eprintln!(
        "commands: {calls_total} calls, by status {by_status:?}; slowest call {}",
        fmt_ms(slowest)
    );
    eprintln!(
        "commands: ran {ran_total} distinct, 504 that ran anyway {e504_executed}, 502 that ran {e502_executed}; REST log {}",
        if rest_log_complete { "complete, cross-checked" } else { "truncated at 10 000, cross-check skipped" }
    );
    eprintln!("edge metrics: {}", command_metrics.join("; "));
    eprintln!(
        "duplicates: {}; commands POSTed twice across a gateway restart (one message each, by nonce): {}",
        duplicates.len(),
        if rest_log_complete {
            reposted.to_string()
        } else {
            "not counted (REST log truncated)".to_owned()
        }
    );
    eprintln!(
        "faults: {} in all: {gateway_faults} gateway restarts, {redis_faults} Redis restarts, {drop_faults} client drops",
        faults.len()
    );
    eprintln!("resets: {resets_total} (slow client in a long run: {slow_resets}); {dropped_slow}");
    eprintln!(
        "stable latency: slow client reading: n={} p50={} p99={} max={}; slow client stalled: n={} p50={} p99={} max={}",
        lat_free.len(),
        fmt_ms(percentile(&lat_free, 0.5)),
        fmt_ms(p99_free),
        fmt_ms(lat_free.last().copied().unwrap_or_default()),
        lat_stalled.len(),
        fmt_ms(percentile(&lat_stalled, 0.5)),
        fmt_ms(p99_stalled),
        fmt_ms(lat_stalled.last().copied().unwrap_or_default()),
    );
    eprintln!("threads before: {names_before}; after: {names_after}");
    eprintln!(
        "threads: {threads_before} before, {threads_after} after; RSS: {rss_before} kB before, peak {} kB, {rss_after} kB after",
        peak_rss
    );
    for l in &sub_lines {
        eprintln!("subscriber {l}");
    }
    eprintln!("anomalies while running: {}", anomalies.len());
    for a in &anomalies {
        failures.push(format!("while running: {a}"));
    }
    assert!(
        failures.is_empty(),
        "{} problem(s) (seed {seed}):\n  {}",
        failures.len(),
        failures.join("\n  ")
    );
}
