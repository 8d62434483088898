//! The edge side of the link (CONTRACT.md §5, FR-001, FR-004, FR-006) as a state machine.
//!
//! [`LinkSession`] owns everything about the edge's one WebSocket to the gateway
//! except the socket: when to connect and with which headers, backoff between
//! attempts, the bounded command queue and reply correlation, ping/pong RTT and
//! zombie detection, and what each inbound frame means. The driver does the IO.
//!
//! | state | input | next state, outputs |
//! |---|---|---|
//! | `Idle` | `start` | `Connecting`: `Connect` |
//! | `Connecting` | `handle_connected` | `Connected`: `Status{true}`, a `Send` per queued command |
//! | `Connecting` | `handle_connect_failed`, `handle_closed` | `BackingOff`: `Reconnecting` |
//! | `Connecting` | connect timeout | `Closing`: `Disconnect` |
//! | `Connected` | `handle_closed` | `BackingOff`: `Status{false}`, `Reconnecting` |
//! | `Connected` | pong timeout | `Closing`: `Status{false}`, `Disconnect` |
//! | `Closing` | `handle_closed`, `handle_connect_failed` | `BackingOff`: `Reconnecting` |
//! | `BackingOff` | backoff expiry | `Connecting`: `Connect` |
//! | any | `close` | `Stopped` |
//!
//! Inputs that do not fit the state (a late `handle_connected` for an abandoned
//! attempt, a second `handle_closed`) are ignored, so a driver may report what it
//! sees without tracking the session's state.
//!
//! # Driver contract
//!
//! - Outputs are drained with [`LinkSession::poll_output`] after every input, in order.
//! - [`LinkOutput::Disconnect`] (pong or connect timeout) means: drop the socket or
//!   abandon the attempt, then report it with [`LinkSession::handle_closed`] (or
//!   `handle_connect_failed`). The session already counts the link as down
//!   (`Status { connected: false }` is out, in-flight commands are requeued) and sits
//!   in [`LinkState::Closing`] until then, because only that call brings the random
//!   value the backoff jitter needs. Extra `handle_closed` calls are ignored.
//! - The gateway's `ready` frame comes out as [`LinkOutput::Ready`], not `Publish`:
//!   it is not a browser event but the voice snapshot the edge replaces its own with.
//! - Text frames are still read in `Closing`, so a late reply completes its
//!   (already requeued) command instead of having it re-sent.
//! - The backoff resets on every successful upgrade, as FR-001 describes; a gateway
//!   that accepts and at once drops the link is therefore retried every ~1 s.

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

use crate::frame::{
    parse_event, FrameError, GatewayCommand, GatewayEvent, MalformedFrame, Reply, LINK_VERSION,
};
use crate::payload::{EventBody, VoiceSnapshot};
use crate::queue::{CommandQueue, Completion, QueueConfig, QueueFull};

use crate::backoff::Backoff;
pub use crate::backoff::BackoffConfig;

pub use crate::secret::Secret;

/// Link settings.
#[derive(Debug, Clone)]
pub struct LinkConfig {
    /// The gateway's link endpoint (`GATEWAY_WS_URL`).
    pub url: String,
    /// The shared bearer token (`LINK_TOKEN`).
    pub token: Secret,
    /// Command queue bound and reply timeout.
    pub queue: QueueConfig,
    /// Reconnect delays.
    pub backoff: BackoffConfig,
    /// How often to ping while connected.
    pub ping_interval: Duration,
    /// How long a ping may go unanswered before the link counts as dead.
    pub pong_timeout: Duration,
    /// How long a connect attempt may take.
    pub connect_timeout: Duration,
}

impl LinkConfig {
    /// Defaults: queue 1000 / 5 s, backoff 1 s → 30 s ±20 %, ping every 10 s,
    /// pong within 10 s, connect within 10 s.
    pub fn new(url: impl Into<String>, token: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            token: Secret::new(token),
            queue: QueueConfig::default(),
            backoff: BackoffConfig::default(),
            ping_interval: Duration::from_secs(10),
            pong_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
        }
    }
}

/// Where the link is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    /// Not started.
    Idle,
    /// A connect attempt is under way.
    Connecting,
    /// The socket is up; commands are written as they come.
    Connected,
    /// The session asked the driver to drop the socket ([`LinkOutput::Disconnect`])
    /// and waits for `handle_closed`; the link counts as down.
    Closing,
    /// Waiting out the backoff delay before the next attempt.
    BackingOff,
    /// Shut down by [`LinkSession::close`]; every input is ignored.
    Stopped,
}

impl LinkState {
    /// Lower-case name for logs and `/readyz`.
    pub fn as_str(self) -> &'static str {
        match self {
            LinkState::Idle => "idle",
            LinkState::Connecting => "connecting",
            LinkState::Connected => "connected",
            LinkState::Closing => "closing",
            LinkState::BackingOff => "backing_off",
            LinkState::Stopped => "stopped",
        }
    }
}

impl fmt::Display for LinkState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a connect attempt failed, as the driver saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectError {
    /// The gateway answered 401: `LINK_TOKEN` is wrong. Retried like any failure,
    /// since the gateway's token may be rotated to match.
    Unauthorized,
    /// The connection was refused or the host unreachable.
    Refused,
    /// The gateway answered the upgrade with another HTTP status.
    Rejected {
        /// The status received.
        status: u16,
    },
    /// Anything else (DNS, TLS, protocol); the text is for logs and must not hold secrets.
    Other(String),
}

impl ConnectError {
    /// Short stable code for metrics and logs.
    pub fn code(&self) -> &'static str {
        match self {
            ConnectError::Unauthorized => "unauthorized",
            ConnectError::Refused => "refused",
            ConnectError::Rejected { .. } => "rejected",
            ConnectError::Other(_) => "other",
        }
    }
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectError::Unauthorized => f.write_str("gateway refused the link token (401)"),
            ConnectError::Refused => f.write_str("connection refused"),
            ConnectError::Rejected { status } => write!(f, "upgrade rejected with HTTP {status}"),
            ConnectError::Other(detail) => write!(f, "connect failed: {detail}"),
        }
    }
}

impl std::error::Error for ConnectError {}

/// Why the link went down or an attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DownReason {
    /// The connect attempt failed.
    ConnectFailed(ConnectError),
    /// The connect attempt took longer than `connect_timeout`.
    ConnectTimeout,
    /// The socket closed or errored.
    Closed,
    /// A ping went unanswered for `pong_timeout`: a zombie link.
    PongTimeout,
    /// [`LinkSession::close`] was called.
    Shutdown,
}

impl DownReason {
    /// Short stable code for metrics and logs.
    pub fn code(&self) -> &'static str {
        match self {
            DownReason::ConnectFailed(e) => e.code(),
            DownReason::ConnectTimeout => "connect_timeout",
            DownReason::Closed => "closed",
            DownReason::PongTimeout => "pong_timeout",
            DownReason::Shutdown => "shutdown",
        }
    }
}

impl fmt::Display for DownReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DownReason::ConnectFailed(e) => e.fmt(f),
            DownReason::ConnectTimeout => f.write_str("connect attempt timed out"),
            DownReason::Closed => f.write_str("link closed"),
            DownReason::PongTimeout => f.write_str("no pong within the timeout"),
            DownReason::Shutdown => f.write_str("shutting down"),
        }
    }
}

/// What the driver should do or report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkOutput {
    /// Open a WebSocket to `url` with these upgrade headers, then report
    /// `handle_connected` or `handle_connect_failed`.
    Connect {
        /// The link endpoint.
        url: String,
        /// `Authorization: Bearer …` and `X-Gateway-Version: 1.0`.
        headers: Vec<(String, String)>,
    },
    /// Write this text frame (an encoded `GatewayCommand`).
    Send(String),
    /// Send a WebSocket ping with this payload; pass the pong's payload to `handle_pong`.
    Ping(Vec<u8>),
    /// Drop the socket or abandon the attempt, then call `handle_closed`
    /// (not needed after `close`: a stopped session ignores it).
    Disconnect {
        /// Why.
        reason: DownReason,
    },
    /// The gateway's `ready`: replace the voice snapshot (and tell browsers).
    Ready {
        /// The voice snapshot at connection time.
        voice: VoiceSnapshot,
        /// Each forwarded guild's permission model (GUILD_CREATE shape).
        guilds: Vec<serde_json::Value>,
        /// The frame's `traceId`.
        trace_id: String,
    },
    /// An event for browsers (including gateway `error` frames, also when they answer a command).
    Publish(Box<GatewayEvent>),
    /// A frame that could not be read: log it and broadcast a `malformed_frame` error.
    Malformed(MalformedFrame),
    /// A command ended; exactly once per accepted command.
    Completed(Completion),
    /// The link went up or down (never repeated; the first one is `true`).
    Status {
        /// Whether the link is up.
        connected: bool,
    },
    /// A ping's round-trip time.
    Rtt(Duration),
    /// A failure was recorded; the next attempt starts after `delay`.
    Reconnecting {
        /// Failures in a row, 1 for the first.
        attempt: u32,
        /// The backoff delay chosen.
        delay: Duration,
        /// What failed.
        reason: DownReason,
    },
}

/// What became of a submitted command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Submitted {
    /// The link is up: its frame is among the outputs now, after any older command.
    Sending,
    /// The link is down: it waits in the queue (the caller answers 202).
    Queued,
}

/// Why a command was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubmitError {
    /// The queue is full (the caller answers 503 `queue_full`).
    QueueFull(QueueFull),
    /// The session was closed.
    Stopped,
    /// The link is down and the command is one that is not queued (a read,
    /// [`LinkSession::submit_now`]): the caller answers 503.
    LinkDown,
}

impl From<QueueFull> for SubmitError {
    fn from(e: QueueFull) -> Self {
        SubmitError::QueueFull(e)
    }
}

impl fmt::Display for SubmitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SubmitError::QueueFull(e) => e.fmt(f),
            SubmitError::Stopped => f.write_str("the link is shut down"),
            SubmitError::LinkDown => f.write_str("the link to the gateway is down"),
        }
    }
}

impl std::error::Error for SubmitError {}

/// The session's timers, one slot each (quinn's `timer.rs` layout).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Timer {
    /// The connect attempt's deadline.
    Connect,
    /// The outstanding ping's deadline.
    Pong,
    /// When to send the next ping.
    Ping,
    /// When the backoff delay ends.
    Backoff,
}

impl Timer {
    const COUNT: usize = 4;
}

#[derive(Debug, Clone, Default)]
struct TimerTable([Option<Instant>; Timer::COUNT]);

impl TimerTable {
    fn set(&mut self, timer: Timer, at: Option<Instant>) {
        self.0[timer as usize] = at;
    }

    fn stop(&mut self, timer: Timer) {
        self.0[timer as usize] = None;
    }

    fn stop_all(&mut self) {
        self.0 = [None; Timer::COUNT];
    }

    fn expired(&self, timer: Timer, now: Instant) -> bool {
        self.0[timer as usize].is_some_and(|at| at <= now)
    }

    fn next(&self) -> Option<Instant> {
        self.0.iter().flatten().min().copied()
    }
}

/// The edge side of the link. See the module docs for the driver contract.
pub struct LinkSession {
    config: LinkConfig,
    state: LinkState,
    queue: CommandQueue,
    backoff: Backoff,
    timers: TimerTable,
    out: VecDeque<LinkOutput>,
    /// Last `Status` output, so it is only output on change.
    status_up: bool,
    /// Counter of the unanswered ping and when it was sent.
    ping: Option<(u64, Instant)>,
    ping_counter: u64,
    /// Why the driver was told to disconnect, reported when it confirms.
    closing: Option<DownReason>,
    reconnects: u64,
    /// `GATEWAY_WS_URL`'s gateways (CONTRACT.md §10: a comma-separated list).
    urls: Vec<String>,
    /// The one tried now or next.
    current: usize,
    /// Gateways not yet tried in this round (a round ends when every one failed).
    round_left: usize,
    /// A gateway in this round answered 503: it is a standby, alive and about
    /// to take over or pointing at one that is; the next round comes after the
    /// first backoff step rather than a longer one.
    round_saw_standby: bool,
}

/// The gateways of a `GATEWAY_WS_URL` value: comma-separated, blanks trimmed,
/// empty parts skipped; the whole value if it has no usable part.
pub fn split_urls(value: &str) -> Vec<String> {
    let urls: Vec<String> = value
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(str::to_owned)
        .collect();
    if urls.is_empty() {
        vec![value.to_owned()]
    } else {
        urls
    }
}

impl fmt::Debug for LinkSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LinkSession")
            .field("url", &self.config.url)
            .field("state", &self.state)
            .field("queue_len", &self.queue.len())
            .field("reconnects", &self.reconnects)
            .finish_non_exhaustive()
    }
}

impl LinkSession {
    /// A session in [`LinkState::Idle`]; nothing happens until [`start`](Self::start).
    pub fn new(config: LinkConfig) -> Self {
        let urls = split_urls(&config.url);
        Self {
            round_left: urls.len(),
            urls,
            current: 0,
            round_saw_standby: false,
            queue: CommandQueue::new(config.queue.clone()),
            backoff: Backoff::new(config.backoff),
            config,
            state: LinkState::Idle,
            timers: TimerTable::default(),
            out: VecDeque::new(),
            status_up: false,
            ping: None,
            ping_counter: 0,
            closing: None,
            reconnects: 0,
        }
    }

    /// Starts the first connect attempt (outputs `Connect`). Only acts when idle.
    pub fn start(&mut self, now: Instant) {
        if self.state == LinkState::Idle {
            self.connect(now);
        }
    }

    /// The upgrade succeeded: outputs `Status { connected: true }` and every queued
    /// command, oldest first; resets the backoff. Ignored unless connecting.
    pub fn handle_connected(&mut self, now: Instant) {
        if self.state != LinkState::Connecting {
            return;
        }
        self.state = LinkState::Connected;
        self.timers.stop_all();
        self.timers
            .set(Timer::Ping, now.checked_add(self.config.ping_interval));
        self.ping = None;
        self.backoff.reset();
        self.round_left = self.urls.len();
        self.round_saw_standby = false;
        self.set_status(true);
        self.flush(now);
    }

    /// The connect attempt failed: schedules the next one after a backoff delay.
    /// `random` in `[0, 1)` draws the jitter. Ignored unless connecting or closing.
    pub fn handle_connect_failed(&mut self, now: Instant, error: ConnectError, random: f64) {
        match self.state {
            LinkState::Connecting => self.retry(now, DownReason::ConnectFailed(error), random),
            LinkState::Closing => self.finish_closing(now, random),
            _ => {}
        }
    }

    /// The socket closed or errored (or the driver dropped it after `Disconnect`):
    /// requeues in-flight commands and schedules the next attempt. `random` in
    /// `[0, 1)` draws the jitter. Ignored when no socket or attempt is live.
    pub fn handle_closed(&mut self, now: Instant, random: f64) {
        match self.state {
            LinkState::Connected => {
                self.go_down();
                self.retry(now, DownReason::Closed, random);
            }
            LinkState::Connecting => self.retry(now, DownReason::Closed, random),
            LinkState::Closing => self.finish_closing(now, random),
            LinkState::Idle | LinkState::BackingOff | LinkState::Stopped => {}
        }
    }

    /// A text frame from the gateway. Replies complete their command (`Completed`);
    /// `ready` gives `Ready`; other events, and every `error` frame, give `Publish`;
    /// unreadable frames give `Malformed` (and fail the command they name).
    /// Ignored unless connected or closing.
    pub fn handle_text(&mut self, now: Instant, text: &str) {
        if !matches!(self.state, LinkState::Connected | LinkState::Closing) {
            return;
        }
        match parse_event(text.as_bytes()) {
            Ok(event) => self.on_event(now, event),
            Err(malformed) => {
                if let Some(id) = malformed.request_id.as_deref() {
                    let message = format!("the gateway's reply was malformed: {malformed}");
                    if let Some(c) = self.queue.fail(id, "malformed_frame", &message, now) {
                        self.out.push_back(LinkOutput::Completed(c));
                    }
                }
                self.out.push_back(LinkOutput::Malformed(malformed));
            }
        }
    }

    /// A WebSocket pong. The answer to the outstanding ping outputs `Rtt`; a stale
    /// or unsolicited pong is ignored.
    pub fn handle_pong(&mut self, now: Instant, payload: &[u8]) {
        if self.state != LinkState::Connected {
            return;
        }
        let Some((counter, sent_at)) = self.ping else {
            return;
        };
        if payload == counter.to_be_bytes() {
            self.ping = None;
            self.timers.stop(Timer::Pong);
            self.out
                .push_back(LinkOutput::Rtt(now.saturating_duration_since(sent_at)));
        }
    }

    /// Runs every timer due at `now`: connect and pong timeouts (`Disconnect`),
    /// pings, the end of a backoff (`Connect`), command reply timeouts
    /// (`Completed` with `TimedOut`). Spurious calls do nothing.
    pub fn handle_timeout(&mut self, now: Instant) {
        match self.state {
            LinkState::Connecting if self.timers.expired(Timer::Connect, now) => {
                self.begin_closing(DownReason::ConnectTimeout);
            }
            LinkState::Connected if self.timers.expired(Timer::Pong, now) => {
                self.go_down();
                self.begin_closing(DownReason::PongTimeout);
            }
            LinkState::Connected if self.timers.expired(Timer::Ping, now) => {
                // One ping at a time: a newer ping must not hide an older one's missing pong.
                if self.ping.is_none() {
                    self.ping_counter = self.ping_counter.wrapping_add(1);
                    self.ping = Some((self.ping_counter, now));
                    self.timers
                        .set(Timer::Pong, now.checked_add(self.config.pong_timeout));
                    self.out
                        .push_back(LinkOutput::Ping(self.ping_counter.to_be_bytes().to_vec()));
                }
                self.timers
                    .set(Timer::Ping, now.checked_add(self.config.ping_interval));
            }
            LinkState::BackingOff if self.timers.expired(Timer::Backoff, now) => {
                self.connect(now);
            }
            _ => {}
        }
        self.queue.handle_timeout(now);
        // Commands deferred by a rateLimited reply go out once their wait is over.
        if self.state == LinkState::Connected {
            self.flush(now);
        }
        self.drain_completions();
    }

    /// Accepts a command. `waiting`: a caller blocks on its reply if the link is up,
    /// so the command times out after the reply timeout. While the link is down the
    /// caller is answered at once (`Queued`, HTTP 202) and waits for nothing, so the
    /// command is queued without a caller deadline and its reply timeout starts
    /// only when it is written after the reconnect. The `requestId` must be unique.
    pub fn submit(
        &mut self,
        now: Instant,
        command: GatewayCommand,
        waiting: bool,
    ) -> Result<Submitted, SubmitError> {
        if self.state == LinkState::Stopped {
            return Err(SubmitError::Stopped);
        }
        let connected = self.state == LinkState::Connected;
        self.queue.push(now, command, waiting && connected)?;
        if connected {
            self.flush(now);
            Ok(Submitted::Sending)
        } else {
            Ok(Submitted::Queued)
        }
    }

    /// Accepts a command only if it can be written now: a read (`fetchMessages`)
    /// is worth nothing after a reconnect, so it is never queued while the link
    /// is down ([`SubmitError::LinkDown`]). A caller waits for its reply, which
    /// times out after the reply timeout like any waited-for command.
    pub fn submit_now(&mut self, now: Instant, command: GatewayCommand) -> Result<(), SubmitError> {
        match self.state {
            LinkState::Stopped => Err(SubmitError::Stopped),
            LinkState::Connected => {
                self.queue.push(now, command, true)?;
                self.flush(now);
                Ok(())
            }
            _ => Err(SubmitError::LinkDown),
        }
    }

    /// Shuts down: outputs `Disconnect` if a socket or attempt is live,
    /// `Status { connected: false }` if the link was up, and fails every queued
    /// command (`Failed { code: "shutting_down" }`). Then every input is ignored.
    pub fn close(&mut self, now: Instant) {
        if self.state == LinkState::Stopped {
            return;
        }
        if matches!(self.state, LinkState::Connecting | LinkState::Connected) {
            self.out.push_back(LinkOutput::Disconnect {
                reason: DownReason::Shutdown,
            });
        }
        self.set_status(false);
        self.state = LinkState::Stopped;
        self.timers.stop_all();
        self.ping = None;
        self.closing = None;
        self.queue
            .fail_all(now, "shutting_down", "the edge is shutting down");
        self.drain_completions();
    }

    /// The next thing to do, oldest first.
    #[must_use]
    pub fn poll_output(&mut self) -> Option<LinkOutput> {
        self.out.pop_front()
    }

    /// When to call [`handle_timeout`](Self::handle_timeout) next.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        match (self.timers.next(), self.queue.poll_timeout()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Where the link is.
    pub fn state(&self) -> LinkState {
        self.state
    }

    /// Whether the link is up (commands are written immediately).
    pub fn is_connected(&self) -> bool {
        self.state == LinkState::Connected
    }

    /// Commands held, pending and in flight (`relay_command_queue_depth`).
    pub fn queue_len(&self) -> usize {
        self.queue.len()
    }

    /// The command queue, for its finer counts.
    pub fn queue(&self) -> &CommandQueue {
        &self.queue
    }

    /// Failures that scheduled another attempt (`relay_ws_reconnects_total`).
    pub fn reconnects(&self) -> u64 {
        self.reconnects
    }

    /// The gateway the next (or current) connection goes to.
    pub fn current_url(&self) -> &str {
        &self.urls[self.current]
    }

    /// The settings the session runs with.
    pub fn config(&self) -> &LinkConfig {
        &self.config
    }

    fn connect(&mut self, now: Instant) {
        self.state = LinkState::Connecting;
        self.timers.stop_all();
        self.timers
            .set(Timer::Connect, now.checked_add(self.config.connect_timeout));
        self.out.push_back(LinkOutput::Connect {
            url: self.urls[self.current].clone(),
            headers: vec![
                (
                    "Authorization".to_string(),
                    format!("Bearer {}", self.config.token.expose()),
                ),
                ("X-Gateway-Version".to_string(), LINK_VERSION.to_string()),
            ],
        });
    }

    /// Writes every pending command, oldest (requeued) first.
    fn flush(&mut self, now: Instant) {
        while let Some(command) = self.queue.pop_to_send(now) {
            self.out.push_back(LinkOutput::Send(command.to_json()));
        }
    }

    /// Leaves `Connected`: the link is down for callers from here on.
    fn go_down(&mut self) {
        self.queue.requeue_in_flight();
        self.ping = None;
        self.set_status(false);
    }

    fn begin_closing(&mut self, reason: DownReason) {
        self.state = LinkState::Closing;
        self.timers.stop_all();
        self.out.push_back(LinkOutput::Disconnect {
            reason: reason.clone(),
        });
        self.closing = Some(reason);
    }

    fn finish_closing(&mut self, now: Instant, random: f64) {
        let reason = self.closing.take().unwrap_or(DownReason::Closed);
        self.retry(now, reason, random);
    }

    fn retry(&mut self, now: Instant, reason: DownReason, random: f64) {
        // Not trusted to be in range: a NaN would make the delay arithmetic panic.
        let random = if random.is_finite() {
            random.clamp(0.0, 1.0)
        } else {
            0.5
        };
        // ref CONTRACT §1/§10: gateways are tried in turn; the backoff
        // applies once a whole round has failed.
        if matches!(
            reason,
            DownReason::ConnectFailed(ConnectError::Rejected { status: 503 })
        ) {
            self.round_saw_standby = true;
        }
        self.round_left = self.round_left.saturating_sub(1);
        self.current = (self.current + 1) % self.urls.len();
        let delay = if self.round_left > 0 {
            Duration::ZERO
        } else {
            self.round_left = self.urls.len();
            if std::mem::take(&mut self.round_saw_standby) {
                self.backoff.reset();
            }
            self.backoff.next_delay(random)
        };
        self.state = LinkState::BackingOff;
        self.timers.stop_all();
        self.timers.set(Timer::Backoff, now.checked_add(delay));
        self.reconnects = self.reconnects.saturating_add(1);
        self.out.push_back(LinkOutput::Reconnecting {
            attempt: self.backoff.attempts(),
            delay,
            reason,
        });
    }

    fn set_status(&mut self, connected: bool) {
        if self.status_up != connected {
            self.status_up = connected;
            self.out.push_back(LinkOutput::Status { connected });
        }
    }

    fn on_event(&mut self, now: Instant, event: GatewayEvent) {
        // An error that names its command only in `data.requestId` still answers it.
        let reply = event
            .as_reply()
            .map(|(id, reply)| (id.to_string(), reply))
            .or_else(|| match &event.body {
                EventBody::Error(e) => e.request_id.clone().map(|id| {
                    let reply = Reply::Error {
                        code: e.code.clone(),
                        message: e.message.clone(),
                    };
                    (id, reply)
                }),
                _ => None,
            });
        if let Some((id, reply)) = reply {
            // Unknown ids are duplicates or answers to commands already timed out.
            if let Some(c) = self.queue.complete(&id, reply, now) {
                self.out.push_back(LinkOutput::Completed(c));
            }
            // The contract broadcasts gateway errors to browsers for operator awareness.
            if matches!(event.body, EventBody::Error(_)) {
                self.out.push_back(LinkOutput::Publish(Box::new(event)));
            }
            return;
        }
        match event.body {
            EventBody::Ready(ready) => self.out.push_back(LinkOutput::Ready {
                voice: ready.voice,
                guilds: ready.guilds,
                trace_id: event.meta.trace_id,
            }),
            EventBody::Ack(_) | EventBody::RateLimited(_) | EventBody::Messages(_) => {
                // A reply that names no command cannot be delivered anywhere.
                self.out.push_back(LinkOutput::Malformed(MalformedFrame {
                    error: FrameError::MissingField {
                        field: "meta.requestId".into(),
                    },
                    type_name: Some(event.body.type_name().to_string()),
                    trace_id: Some(event.meta.trace_id),
                    request_id: None,
                }));
            }
            _ => self.out.push_back(LinkOutput::Publish(Box::new(event))),
        }
    }

    fn drain_completions(&mut self) {
        while let Some(c) = self.queue.poll_completion() {
            self.out.push_back(LinkOutput::Completed(c));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;
    use crate::frame::parse_command;
    use crate::queue::tests::cmd;
    use crate::queue::Outcome;

    #[allow(clippy::disallowed_methods)] // the one clock read: an origin for hand-driven time
    fn origin() -> Instant {
        Instant::now()
    }

    const S: Duration = Duration::from_secs(1);

    fn session() -> LinkSession {
        LinkSession::new(LinkConfig::new("ws://gw/link", "hunter2"))
    }

    fn drain(s: &mut LinkSession) -> Vec<LinkOutput> {
        std::iter::from_fn(|| s.poll_output()).collect()
    }

    /// The request ids of the `Send` outputs, read back as commands.
    fn sent(outs: &[LinkOutput]) -> Vec<String> {
        outs.iter()
            .filter_map(|o| match o {
                LinkOutput::Send(f) => Some(
                    parse_command(f.as_bytes())
                        .expect("frames sent parse as commands")
                        .request_id()
                        .to_string(),
                ),
                _ => None,
            })
            .collect()
    }

    fn completed(outs: &[LinkOutput]) -> Vec<(String, Outcome)> {
        outs.iter()
            .filter_map(|o| match o {
                LinkOutput::Completed(c) => Some((c.request_id.clone(), c.outcome.clone())),
                _ => None,
            })
            .collect()
    }

    fn reply(kind: &str, id: &str) -> String {
        let data = match kind {
            "error" => r#"{"code":"discord_error","message":"no"}"#,
            "rateLimited" => r#"{"retryAfterMs":1200,"global":false}"#,
            _ => "{}",
        };
        format!(
            r#"{{"version":"1.0","type":"{kind}","data":{data},"meta":{{"traceId":"g","sentAt":"s","requestId":"{id}"}}}}"#
        )
    }

    fn up(s: &mut LinkSession, now: Instant) -> Vec<LinkOutput> {
        s.start(now);
        s.handle_connected(now);
        drain(s)
    }

    #[test]
    fn connect_carries_exact_headers_and_debug_hides_the_token() {
        let mut s = session();
        let t0 = origin();
        s.start(t0);
        assert_eq!(
            drain(&mut s),
            [LinkOutput::Connect {
                url: "ws://gw/link".into(),
                headers: vec![
                    ("Authorization".into(), "Bearer hunter2".into()),
                    ("X-Gateway-Version".into(), "1.0".into()),
                ],
            }]
        );
        assert_eq!(s.state(), LinkState::Connecting);
        assert!(!format!("{:?} {s:?}", s.config()).contains("hunter2"));
    }

    #[test]
    fn queued_before_connect_then_drained_in_order() {
        let mut s = session();
        let t0 = origin();
        for n in 0..3 {
            assert_eq!(s.submit(t0, cmd(n), false), Ok(Submitted::Queued));
        }
        let outs = up(&mut s, t0);
        assert_eq!(outs[1], LinkOutput::Status { connected: true });
        assert_eq!(sent(&outs), ["r0", "r1", "r2"]);
        assert_eq!(s.submit(t0, cmd(3), true), Ok(Submitted::Sending));
        assert_eq!(sent(&drain(&mut s)), ["r3"]);
        assert_eq!(s.queue().in_flight_len(), 4);
    }

    #[test]
    fn a_caller_never_waits_on_a_command_queued_while_down() {
        // The HTTP handler always asks to wait; while the link is down it answers
        // 202 instead, so the queued command must not time out with nobody waiting.
        let mut s = session();
        let t0 = origin();
        s.start(t0);
        s.handle_connect_failed(t0, ConnectError::Refused, 0.5);
        assert_eq!(s.submit(t0, cmd(0), true), Ok(Submitted::Queued));
        // A minute of failed reconnects, far past the 5 s reply timeout.
        let mut now = t0;
        let mut outs = Vec::new();
        while now < t0 + 60 * S {
            now = s.poll_timeout().expect("a reconnect is always scheduled");
            s.handle_timeout(now);
            outs.extend(drain(&mut s));
            if s.state() == LinkState::Connecting {
                s.handle_connect_failed(now, ConnectError::Refused, 0.5);
            }
        }
        assert!(completed(&outs).is_empty(), "{outs:?}");
        s.handle_timeout(now + 31 * S);
        s.handle_connected(now + 31 * S);
        assert_eq!(sent(&drain(&mut s)), ["r0"]);
    }

    #[test]
    fn a_queued_command_refused_for_a_rate_limit_is_sent_again() {
        // Queued during an outage (answered 202): after the reconnect the gateway
        // answers rateLimited; nobody waits for it, so it is retried, not dropped.
        let mut s = session();
        let t0 = origin();
        s.start(t0);
        s.handle_connect_failed(t0, ConnectError::Refused, 0.5);
        assert_eq!(s.submit(t0, cmd(0), true), Ok(Submitted::Queued));
        s.handle_timeout(t0 + S);
        s.handle_connected(t0 + S);
        assert_eq!(sent(&drain(&mut s)), ["r0"]);
        let limited = r#"{"version":"1.0","type":"rateLimited","data":{"retryAfterMs":1500,"global":true},"meta":{"traceId":"g","sentAt":"s","requestId":"r0"}}"#;
        s.handle_text(t0 + S, limited);
        assert!(completed(&drain(&mut s)).is_empty(), "not finished");
        let retry_at = t0 + S + Duration::from_millis(1500);
        assert!(s.poll_timeout().is_some_and(|t| t <= retry_at));
        s.handle_timeout(retry_at);
        assert_eq!(
            sent(&drain(&mut s)),
            ["r0"],
            "written again with the same requestId"
        );
    }

    #[test]
    fn disconnect_mid_flight_resends_first_with_same_ids() {
        let mut s = session();
        let t0 = origin();
        up(&mut s, t0);
        s.submit(t0, cmd(0), false).unwrap();
        s.submit(t0, cmd(1), false).unwrap();
        s.handle_text(t0, &reply("ack", "r0"));
        drain(&mut s);
        s.handle_closed(t0, 0.5);
        assert_eq!(
            drain(&mut s),
            [
                LinkOutput::Status { connected: false },
                LinkOutput::Reconnecting {
                    attempt: 1,
                    delay: S,
                    reason: DownReason::Closed
                }
            ]
        );
        // Link down: queued, and the caller would answer 202.
        assert_eq!(s.submit(t0, cmd(2), false), Ok(Submitted::Queued));
        assert_eq!(s.poll_timeout(), Some(t0 + S));
        s.handle_timeout(t0 + S);
        assert!(matches!(drain(&mut s)[..], [LinkOutput::Connect { .. }]));
        s.handle_connected(t0 + S);
        assert_eq!(sent(&drain(&mut s)), ["r1", "r2"]);
        // A second close does not repeat the status.
        s.handle_closed(t0 + S, 0.5);
        s.handle_closed(t0 + S, 0.5);
        let statuses = drain(&mut s)
            .into_iter()
            .filter(|o| matches!(o, LinkOutput::Status { .. }))
            .count();
        assert_eq!(statuses, 1);
        assert_eq!(s.reconnects(), 2);
    }

    #[test]
    fn duplicate_reply_completes_once() {
        let mut s = session();
        let t0 = origin();
        up(&mut s, t0);
        s.submit(t0, cmd(0), true).unwrap();
        drain(&mut s);
        s.handle_text(t0 + S, &reply("rateLimited", "r0"));
        s.handle_text(t0 + S, &reply("ack", "r0"));
        let outs = drain(&mut s);
        assert_eq!(
            completed(&outs),
            [(
                "r0".to_string(),
                Outcome::Replied(Reply::RateLimited {
                    retry_after_ms: 1200,
                    global: false
                })
            )]
        );
        assert_eq!(outs.len(), 1, "replies are not published: {outs:?}");
        assert_eq!(s.queue_len(), 0);
    }

    #[test]
    fn reply_timeout_fires_exactly_once() {
        let mut s = session();
        let t0 = origin();
        up(&mut s, t0);
        s.submit(t0, cmd(0), true).unwrap();
        drain(&mut s);
        assert_eq!(s.poll_timeout(), Some(t0 + 5 * S), "before the first ping");
        s.handle_timeout(t0 + 4 * S);
        assert!(completed(&drain(&mut s)).is_empty());
        s.handle_timeout(t0 + 5 * S);
        assert_eq!(
            completed(&drain(&mut s)),
            [("r0".into(), Outcome::TimedOut)]
        );
        s.handle_text(t0 + 6 * S, &reply("ack", "r0"));
        s.handle_timeout(t0 + 9 * S);
        assert!(completed(&drain(&mut s)).is_empty());
    }

    #[test]
    fn backoff_doubles_to_the_cap_and_resets_after_success() {
        let mut s = session();
        let mut now = origin();
        s.start(now);
        drain(&mut s);
        let mut delays = Vec::new();
        for _ in 0..7 {
            s.handle_connect_failed(now, ConnectError::Refused, 0.5);
            let outs = drain(&mut s);
            let [LinkOutput::Reconnecting { delay, .. }] = outs[..] else {
                panic!("{outs:?}")
            };
            delays.push(delay.as_secs());
            assert_eq!(s.poll_timeout(), Some(now + delay));
            now += delay;
            s.handle_timeout(now);
            assert!(matches!(drain(&mut s)[..], [LinkOutput::Connect { .. }]));
        }
        assert_eq!(delays, [1, 2, 4, 8, 16, 30, 30]);
        s.handle_connected(now);
        s.handle_closed(now, 0.0);
        let outs = drain(&mut s);
        assert!(outs.contains(&LinkOutput::Reconnecting {
            attempt: 1,
            delay: S.mul_f64(0.8),
            reason: DownReason::Closed
        }));
    }

    /// Fails the current attempt; the delay and the URL the next attempt goes to.
    fn fail_and_next(
        s: &mut LinkSession,
        now: &mut Instant,
        error: ConnectError,
    ) -> (Duration, String) {
        s.handle_connect_failed(*now, error, 0.5);
        let outs = drain(s);
        let [LinkOutput::Reconnecting { delay, .. }] = outs[..] else {
            panic!("{outs:?}")
        };
        *now += delay;
        s.handle_timeout(*now);
        match &drain(s)[..] {
            [LinkOutput::Connect { url, .. }] => (delay, url.clone()),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_url_list_is_tried_in_turn_with_the_backoff_per_round() {
        assert_eq!(
            split_urls(" ws://a/link , ,ws://b/link,"),
            ["ws://a/link", "ws://b/link"]
        );
        assert_eq!(split_urls("ws://a/link"), ["ws://a/link"]);
        let mut s = LinkSession::new(LinkConfig::new("ws://a/link,ws://b/link", "t"));
        let mut now = origin();
        s.start(now);
        assert!(
            matches!(&drain(&mut s)[..], [LinkOutput::Connect { url, .. }] if url == "ws://a/link")
        );
        let mut seen = Vec::new();
        for _ in 0..6 {
            let (delay, url) = fail_and_next(&mut s, &mut now, ConnectError::Refused);
            seen.push((delay.as_secs(), url));
        }
        let want: Vec<(u64, String)> = [
            (0, "ws://b/link"),
            (1, "ws://a/link"),
            (0, "ws://b/link"),
            (2, "ws://a/link"),
            (0, "ws://b/link"),
            (4, "ws://a/link"),
        ]
        .into_iter()
        .map(|(d, u)| (d, u.to_owned()))
        .collect();
        assert_eq!(seen, want);
        // Connected to a; it dies: b next at once, then the round's backoff from 1 s.
        s.handle_connected(now);
        drain(&mut s);
        s.handle_closed(now, 0.5);
        let outs = drain(&mut s);
        assert!(
            outs.iter()
                .any(|o| matches!(o, LinkOutput::Reconnecting { delay, .. } if delay.is_zero())),
            "{outs:?}"
        );
        now += Duration::from_millis(1);
        s.handle_timeout(now);
        assert!(
            matches!(&drain(&mut s)[..], [LinkOutput::Connect { url, .. }] if url == "ws://b/link")
        );
        assert_eq!(s.current_url(), "ws://b/link");
    }

    #[test]
    fn a_standby_503_keeps_the_round_delay_at_the_first_step() {
        let mut s = LinkSession::new(LinkConfig::new("ws://a/link,ws://b/link", "t"));
        let mut now = origin();
        s.start(now);
        drain(&mut s);
        let mut delays = Vec::new();
        for _ in 0..4 {
            let (d1, _) = fail_and_next(&mut s, &mut now, ConnectError::Refused);
            let (d2, _) = fail_and_next(&mut s, &mut now, ConnectError::Rejected { status: 503 });
            delays.push((d1.as_secs_f64(), d2.as_secs_f64()));
        }
        assert_eq!(delays, [(0.0, 1.0), (0.0, 1.0), (0.0, 1.0), (0.0, 1.0)]);
    }

    #[test]
    fn unauthorized_keeps_retrying_and_commands_stay_queued() {
        let mut s = session();
        let mut now = origin();
        s.submit(now, cmd(0), false).unwrap();
        s.submit(now, cmd(1), false).unwrap();
        s.start(now);
        drain(&mut s);
        for attempt in 1..=10 {
            s.handle_connect_failed(now, ConnectError::Unauthorized, 0.9);
            let outs = drain(&mut s);
            assert!(
                matches!(
                    &outs[..],
                    [LinkOutput::Reconnecting { attempt: a, reason: DownReason::ConnectFailed(ConnectError::Unauthorized), .. }] if *a == attempt
                ),
                "{outs:?}"
            );
            now = s.poll_timeout().unwrap();
            s.handle_timeout(now);
            drain(&mut s);
            assert_eq!(s.queue_len(), 2);
        }
        s.handle_connected(now);
        assert_eq!(sent(&drain(&mut s)), ["r0", "r1"]);
    }

    #[test]
    fn pings_measure_rtt_and_a_missing_pong_disconnects() {
        let mut cfg = LinkConfig::new("ws://gw/link", "t");
        cfg.queue.reply_timeout = 60 * S;
        let mut s = LinkSession::new(cfg);
        let t0 = origin();
        up(&mut s, t0);
        assert_eq!(s.poll_timeout(), Some(t0 + 10 * S));
        s.handle_timeout(t0 + 10 * S);
        let [LinkOutput::Ping(p1)] = &drain(&mut s)[..] else {
            panic!()
        };
        s.handle_pong(t0 + 10 * S, b"stale");
        s.handle_pong(t0 + 10 * S + Duration::from_millis(40), p1);
        assert_eq!(drain(&mut s), [LinkOutput::Rtt(Duration::from_millis(40))]);
        s.handle_timeout(t0 + 20 * S);
        let [LinkOutput::Ping(p2)] = &drain(&mut s)[..] else {
            panic!()
        };
        s.handle_pong(t0 + 21 * S, p1);
        assert!(drain(&mut s).is_empty(), "a stale pong proves nothing");
        assert_ne!(p1, p2);
        s.submit(t0 + 21 * S, cmd(1), false).unwrap();
        drain(&mut s);
        s.handle_timeout(t0 + 30 * S);
        assert_eq!(
            drain(&mut s),
            [
                LinkOutput::Status { connected: false },
                LinkOutput::Disconnect {
                    reason: DownReason::PongTimeout
                }
            ]
        );
        assert_eq!(s.state(), LinkState::Closing);
        assert_eq!(s.submit(t0 + 30 * S, cmd(2), false), Ok(Submitted::Queued));
        s.handle_closed(t0 + 30 * S, 0.5);
        assert!(matches!(
            drain(&mut s)[..],
            [LinkOutput::Reconnecting {
                reason: DownReason::PongTimeout,
                ..
            }]
        ));
        s.handle_timeout(t0 + 31 * S);
        s.handle_connected(t0 + 31 * S);
        assert_eq!(sent(&drain(&mut s)), ["r1", "r2"]);
    }

    #[test]
    fn slow_connect_is_abandoned() {
        let mut s = session();
        let t0 = origin();
        s.start(t0);
        drain(&mut s);
        assert_eq!(s.poll_timeout(), Some(t0 + 10 * S));
        s.handle_timeout(t0 + 10 * S);
        assert_eq!(
            drain(&mut s),
            [LinkOutput::Disconnect {
                reason: DownReason::ConnectTimeout
            }]
        );
        // A late success for the abandoned attempt does not count.
        s.handle_connected(t0 + 10 * S);
        assert!(drain(&mut s).is_empty());
        s.handle_connect_failed(t0 + 10 * S, ConnectError::Other("aborted".into()), 0.5);
        assert!(matches!(
            drain(&mut s)[..],
            [LinkOutput::Reconnecting {
                reason: DownReason::ConnectTimeout,
                ..
            }]
        ));
    }

    #[test]
    fn frames_are_routed_by_kind() {
        let mut s = session();
        let t0 = origin();
        up(&mut s, t0);
        for n in 0..3 {
            s.submit(t0, cmd(n), true).unwrap();
        }
        drain(&mut s);
        // An error reply completes its command and is broadcast too.
        s.handle_text(t0, &reply("error", "r0"));
        let outs = drain(&mut s);
        assert_eq!(
            completed(&outs),
            [(
                "r0".into(),
                Outcome::Replied(Reply::Error {
                    code: "discord_error".into(),
                    message: "no".into()
                })
            )]
        );
        assert!(
            matches!(&outs[1], LinkOutput::Publish(e) if e.meta.request_id.as_deref() == Some("r0"))
        );
        // A malformed reply fails its command now rather than at the timeout.
        s.handle_text(
            t0,
            r#"{"version":"1.0","type":"rateLimited","data":{"retryAfterMs":"x"},"meta":{"traceId":"g","sentAt":"s","requestId":"r1"}}"#,
        );
        let outs = drain(&mut s);
        assert!(
            matches!(&completed(&outs)[..], [(id, Outcome::Failed { code, .. })] if id == "r1" && code == "malformed_frame")
        );
        assert!(
            matches!(&outs[1], LinkOutput::Malformed(m) if m.request_id.as_deref() == Some("r1"))
        );
        // An error naming its command only in data still answers it.
        s.handle_text(
            t0,
            r#"{"version":"1.0","type":"error","data":{"code":"c","message":"m","requestId":"r2"},"meta":{"traceId":"g","sentAt":"s"}}"#,
        );
        assert_eq!(completed(&drain(&mut s)).len(), 1);
        // Plain events and broadcast errors are published; ready is the snapshot.
        s.handle_text(
            t0,
            r#"{"version":"1.0","type":"error","data":{"code":"c","message":"m"},"meta":{"traceId":"g","sentAt":"s"}}"#,
        );
        s.handle_text(
            t0,
            r#"{"version":"1.0","type":"ready","data":{"voice":{"channels":{}}},"meta":{"traceId":"g1","sentAt":"s"}}"#,
        );
        s.handle_text(t0, "not json");
        s.handle_text(
            t0,
            r#"{"version":"1.0","type":"ack","data":{},"meta":{"traceId":"g","sentAt":"s"}}"#,
        );
        let outs = drain(&mut s);
        assert!(matches!(&outs[0], LinkOutput::Publish(_)));
        assert_eq!(
            outs[1],
            LinkOutput::Ready {
                voice: VoiceSnapshot::default(),
                guilds: Vec::new(),
                trace_id: "g1".into()
            }
        );
        assert!(matches!(&outs[2], LinkOutput::Malformed(m) if m.error.code() == "invalid_json"));
        assert!(matches!(&outs[3], LinkOutput::Malformed(m) if m.error.code() == "missing_field"));
        assert_eq!(outs.len(), 4);
    }

    #[test]
    fn close_fails_what_is_left_and_stops() {
        let mut s = session();
        let t0 = origin();
        up(&mut s, t0);
        s.submit(t0, cmd(0), true).unwrap();
        s.submit(t0, cmd(1), false).unwrap();
        drain(&mut s);
        s.close(t0);
        let outs = drain(&mut s);
        assert_eq!(
            outs[..2],
            [
                LinkOutput::Disconnect {
                    reason: DownReason::Shutdown
                },
                LinkOutput::Status { connected: false }
            ]
        );
        assert_eq!(completed(&outs).len(), 2);
        assert_eq!(s.submit(t0, cmd(2), true), Err(SubmitError::Stopped));
        s.start(t0);
        s.handle_timeout(t0 + 60 * S);
        assert!(drain(&mut s).is_empty());
        assert_eq!(s.poll_timeout(), None);
    }

    #[test]
    fn reads_go_out_only_while_the_link_is_up() {
        let t0 = origin();
        let mut s = session();
        s.start(t0);
        assert_eq!(s.submit_now(t0, cmd(1)), Err(SubmitError::LinkDown));
        assert_eq!(s.queue_len(), 0, "a read is never queued");
        s.handle_connected(t0);
        let _ = drain(&mut s);
        assert_eq!(s.submit_now(t0, cmd(2)), Ok(()));
        let outs = drain(&mut s);
        assert!(outs.iter().any(|o| matches!(o, LinkOutput::Send(_))));
        // Its `messages` reply completes it; one without a requestId is malformed.
        s.handle_text(t0, r#"{"version":"1.0","type":"messages","data":{"messages":[]},"meta":{"traceId":"t","sentAt":"s","requestId":"r2"}}"#);
        s.handle_text(t0, r#"{"version":"1.0","type":"messages","data":{"messages":[]},"meta":{"traceId":"t","sentAt":"s"}}"#);
        let outs = drain(&mut s);
        assert!(
            matches!(&completed(&outs)[..], [(id, Outcome::Replied(Reply::Messages(m)))] if id == "r2" && m.messages.is_empty())
        );
        assert!(outs.iter().any(|o| matches!(o, LinkOutput::Malformed(_))));
        assert!(!outs.iter().any(|o| matches!(o, LinkOutput::Publish(_))));
    }

    #[test]
    fn full_queue_is_refused() {
        let mut cfg = LinkConfig::new("ws://gw/link", "t");
        cfg.queue.capacity = 1;
        let mut s = LinkSession::new(cfg);
        let t0 = origin();
        s.submit(t0, cmd(0), false).unwrap();
        assert_eq!(
            s.submit(t0, cmd(1), false),
            Err(SubmitError::QueueFull(QueueFull { capacity: 1 }))
        );
    }

    #[derive(Debug, Clone)]
    enum Op {
        Submit(bool),
        ConnectOk,
        ConnectFail(f64),
        Closed(f64),
        Reply(usize),
        ErrorReply(usize),
        Pong,
        Advance(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => any::<bool>().prop_map(Op::Submit),
            2 => Just(Op::ConnectOk),
            1 => (0.0..1.0f64).prop_map(Op::ConnectFail),
            1 => (0.0..1.0f64).prop_map(Op::Closed),
            3 => any::<usize>().prop_map(Op::Reply),
            1 => any::<usize>().prop_map(Op::ErrorReply),
            1 => Just(Op::Pong),
            3 => (0u64..15_000).prop_map(Op::Advance),
        ]
    }

    /// The simulated driver's view of the outputs.
    #[derive(Default)]
    struct Seen {
        up: bool,
        connection_sends: Vec<usize>,
        done: BTreeMap<String, u32>,
        last_ping: Vec<u8>,
        must_close: bool,
    }

    fn absorb(s: &mut LinkSession, seen: &mut Seen) -> Result<(), TestCaseError> {
        while let Some(out) = s.poll_output() {
            match out {
                LinkOutput::Status { connected } => {
                    prop_assert_ne!(connected, seen.up, "Status must alternate");
                    seen.up = connected;
                    seen.connection_sends.clear();
                }
                LinkOutput::Send(frame) => {
                    prop_assert!(seen.up, "sent while down");
                    let cmd = parse_command(frame.as_bytes());
                    prop_assert!(cmd.is_ok());
                    let n: usize = cmd.unwrap().request_id()[1..].parse().unwrap_or(usize::MAX);
                    // FIFO per connection: requeued first, then newer, never out of order.
                    prop_assert!(seen.connection_sends.last().is_none_or(|&last| last < n));
                    seen.connection_sends.push(n);
                }
                LinkOutput::Completed(c) => {
                    *seen.done.entry(c.request_id).or_default() += 1;
                }
                LinkOutput::Ping(p) => seen.last_ping = p,
                LinkOutput::Disconnect { .. } => seen.must_close = true,
                _ => {}
            }
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn every_command_completes_once_in_order(capacity in 1usize..6, ops in proptest::collection::vec(op(), 0..60)) {
            let mut cfg = LinkConfig::new("ws://gw/link", "t");
            cfg.queue.capacity = capacity;
            let mut s = LinkSession::new(cfg);
            let mut now = origin();
            let mut seen = Seen::default();
            let mut accepted: Vec<String> = Vec::new();
            s.start(now);
            for op in ops {
                match op {
                    Op::Submit(waiting) => {
                        let n = accepted.len();
                        match s.submit(now, cmd(n), waiting) {
                            Ok(how) => {
                                prop_assert_eq!(how == Submitted::Sending, s.is_connected());
                                accepted.push(format!("r{n}"));
                            }
                            Err(e) => prop_assert_eq!(e, SubmitError::QueueFull(QueueFull { capacity })),
                        }
                    }
                    Op::ConnectOk => s.handle_connected(now),
                    Op::ConnectFail(r) => s.handle_connect_failed(now, ConnectError::Refused, r),
                    Op::Closed(r) => s.handle_closed(now, r),
                    Op::Reply(i) | Op::ErrorReply(i) if !accepted.is_empty() => {
                        let id = &accepted[i % accepted.len()];
                        let kind = if matches!(op, Op::Reply(_)) { "ack" } else { "error" };
                        s.handle_text(now, &reply(kind, id));
                    }
                    Op::Reply(_) | Op::ErrorReply(_) => {}
                    Op::Pong => s.handle_pong(now, &seen.last_ping.clone()),
                    Op::Advance(ms) => {
                        let target = now + Duration::from_millis(ms);
                        // A driver wakes at each deadline in turn.
                        for _ in 0..100 {
                            match s.poll_timeout() {
                                Some(t) if t <= target => {
                                    now = now.max(t);
                                    s.handle_timeout(now);
                                    absorb(&mut s, &mut seen)?;
                                    if std::mem::take(&mut seen.must_close) {
                                        s.handle_closed(now, 0.5);
                                    }
                                }
                                _ => break,
                            }
                        }
                        now = target;
                        s.handle_timeout(now);
                    }
                }
                absorb(&mut s, &mut seen)?;
                if std::mem::take(&mut seen.must_close) {
                    s.handle_closed(now, 0.5);
                    absorb(&mut s, &mut seen)?;
                }
                prop_assert!(s.queue_len() <= capacity);
                prop_assert!(seen.done.values().all(|&c| c == 1), "completed twice: {:?}", seen.done);
                // Every accepted command has completed or is still held.
                prop_assert_eq!(accepted.len(), seen.done.len() + s.queue_len());
                prop_assert_eq!(seen.up, s.is_connected());
                if s.is_connected() {
                    prop_assert_eq!(s.queue().pending_len(), 0, "connected but not written");
                    // Every held command was written on this connection (in-flight ones re-sent).
                    for (n, id) in accepted.iter().enumerate() {
                        prop_assert!(seen.done.contains_key(id) || seen.connection_sends.contains(&n), "{} not re-sent", id);
                    }
                }
            }
            s.close(now);
            absorb(&mut s, &mut seen)?;
            prop_assert!(!seen.up);
            prop_assert_eq!(seen.done.len(), accepted.len());
            prop_assert!(seen.done.values().all(|&c| c == 1));
        }
    }
}
