//! The Discord Gateway v10 session as a sans-IO state machine: connect, Hello,
//! Identify or Resume, heartbeats and zombie detection, close-code handling,
//! reconnect backoff and the per-connection send limit. It owns the session id,
//! the sequence number and the resume URL; it does not own the socket, the clock
//! or the random numbers, and it does not interpret dispatches beyond READY and
//! RESUMED (that is `discord::dispatch`'s job). Facts and sources are in
//! `shared/reference/discord.md` §1 and §2, cited below as "ref §1 Heartbeating" etc.
//!
//! # Driving it
//!
//! Inputs: [`GatewaySession::start`], [`handle_connected`](GatewaySession::handle_connected),
//! [`handle_text`](GatewaySession::handle_text), [`handle_closed`](GatewaySession::handle_closed),
//! [`handle_connect_failed`](GatewaySession::handle_connect_failed),
//! [`handle_timeout`](GatewaySession::handle_timeout), and the commands
//! [`send_command`](GatewaySession::send_command) and [`shutdown`](GatewaySession::shutdown).
//! After each, drain [`poll_output`](GatewaySession::poll_output) until `None`, then
//! wait for the socket or until [`poll_timeout`](GatewaySession::poll_timeout).
//!
//! What the driver does with each output:
//! - [`SessionOutput::Connect`]: open a WebSocket to `url`, then report
//!   `handle_connected` or `handle_connect_failed`.
//! - [`SessionOutput::Send`]: write one text frame.
//! - [`SessionOutput::Close`]: send a close frame with that code and drop the socket.
//!   The session already counts that connection as gone, so do not report its
//!   closure with `handle_closed`; reports that arrive while no connection is
//!   expected are ignored anyway.
//! - everything else is information for the rest of the process.
//!
//! # Decisions
//!
//! - **Randomness** comes in as `f64` arguments in `[0, 1)`: `handle_text` uses
//!   it for the first-heartbeat jitter (Hello) and the delays after op 7/op 9,
//!   `handle_closed` and `handle_connect_failed` for the backoff jitter.
//!   `handle_timeout` takes none; a reconnect it starts (zombie, no Hello) reuses
//!   the last value given, which is enough to keep processes from reconnecting in
//!   step.
//! - **Proof of life** (ref §1 Heartbeating): like twilight, *any* frame received
//!   since the last heartbeat counts, not only op 11. A connection whose ACK sits
//!   behind a burst of dispatches is alive; closing it would cost a resume and a
//!   replay for nothing.
//! - **Our close codes** (ref §1 Resume): 4000 whenever the session should stay
//!   resumable (zombie, op 7, op 9 `true`, no Hello), because 1000/1001
//!   invalidate it. 1000 only when the session is dead anyway (op 9 `false`) or
//!   on [`shutdown`](GatewaySession::shutdown).
//! - **op 9 `false`** (ref §1 Resume): current docs give no wait, the old rule
//!   was 1–5 s. We wait 1–5 s (jittered, and at least the backoff delay), which
//!   also keeps well clear of `max_concurrency` identifies per 5 s.
//! - **Identify spacing** (ref §1 Identify): at most one Identify per 5 s from
//!   this session, across connections. A Hello that comes sooner waits.
//! - **Backoff**: every reconnect goes through [`crate::backoff`] (1 s doubling
//!   to 30 s, jittered), reset by READY and RESUMED only, so a server that
//!   accepts and then drops us still gets backed off. Recoverable failures never
//!   end the session; only the fatal close codes do.
//! - **Send limit** (ref §1 Send limit): 120 frames per 60 s per connection,
//!   kept as a sliding-window log (twilight's ratelimiter.rs). Heartbeats may use
//!   the whole window; commands leave room for the heartbeats one window needs.

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::backoff::{Backoff, BackoffConfig};

/// Gateway intents (ref §2): bit flags choosing the events Discord sends.
pub mod intents {
    /// GUILD_CREATE/UPDATE/DELETE, channels, threads, roles.
    pub const GUILDS: u64 = 1 << 0;
    /// Privileged: GUILD_MEMBER_ADD/UPDATE/REMOVE (`DISCORD_MEMBERS_INTENT`).
    /// Must be enabled in the Developer Portal, or Identify fails with close 4014.
    pub const GUILD_MEMBERS: u64 = 1 << 1;
    /// VOICE_STATE_UPDATE, VOICE_CHANNEL_EFFECT_SEND.
    pub const GUILD_VOICE_STATES: u64 = 1 << 7;
    /// MESSAGE_CREATE/UPDATE/DELETE/DELETE_BULK in guilds.
    pub const GUILD_MESSAGES: u64 = 1 << 9;
    /// MESSAGE_REACTION_ADD/REMOVE/REMOVE_ALL/REMOVE_EMOJI.
    pub const GUILD_MESSAGE_REACTIONS: u64 = 1 << 10;
    /// TYPING_START in guilds.
    pub const GUILD_MESSAGE_TYPING: u64 = 1 << 11;
    /// Privileged: fills message `content`. Must be enabled in the Developer
    /// Portal, or Identify fails with close 4014.
    pub const MESSAGE_CONTENT: u64 = 1 << 15;
    /// relay's set: 36481.
    pub const DEFAULT: u64 = GUILDS
        | GUILD_VOICE_STATES
        | GUILD_MESSAGES
        | GUILD_MESSAGE_REACTIONS
        | GUILD_MESSAGE_TYPING
        | MESSAGE_CONTENT;
}

/// The gateway URL used when `GET /gateway/bot` was not asked.
pub const DEFAULT_GATEWAY_URL: &str = "wss://gateway.discord.gg";
/// The query every gateway connection carries (ref §1 Connecting).
pub const GATEWAY_QUERY: &str = "v=10&encoding=json";
/// Frames a client may send per [`SEND_WINDOW`] on one connection (ref §1 Send limit).
pub const SEND_LIMIT: usize = 120;
/// The window of [`SEND_LIMIT`].
pub const SEND_WINDOW: Duration = Duration::from_secs(60);
/// Largest frame the gateway accepts from a client; larger ones get close 4002.
pub const MAX_SEND_BYTES: usize = 4096;
/// Minimum time between two Identify frames of this session (ref §1 Identify).
pub const IDENTIFY_SPACING: Duration = Duration::from_secs(5);
/// How long an open connection may go without Hello before we give up on it.
/// Discord sends Hello at once; this only catches a stuck connection.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(30);
/// Close code we send when the session must stay resumable (twilight's `CloseFrame::RESUME`).
pub const RESUME_CLOSE_CODE: u16 = 4000;
/// Close code we send when the session is over; Discord invalidates it.
pub const NORMAL_CLOSE_CODE: u16 = 1000;

/// Commands waiting for room in the send window; more are refused.
const COMMAND_QUEUE_MAX: usize = 64;
/// Hello's interval is clamped into this range so a hostile or broken value can
/// neither spin the timer nor stop heartbeats for good.
const HEARTBEAT_MIN: Duration = Duration::from_secs(1);
const HEARTBEAT_MAX: Duration = Duration::from_secs(3600);
/// Heartbeat room kept before a Hello tells the real interval (41.25 s today → 3).
const DEFAULT_HEARTBEAT_RESERVE: usize = 3;
/// op 9 `false`: wait `MIN + SPREAD × random` before identifying again.
const INVALID_SESSION_WAIT_MIN: Duration = Duration::from_secs(1);
const INVALID_SESSION_WAIT_SPREAD: Duration = Duration::from_secs(4);
/// Longest parser message kept in [`PayloadError::InvalidJson`].
const MAX_DETAIL_CHARS: usize = 120;

const OP_DISPATCH: u64 = 0;
const OP_HEARTBEAT: u64 = 1;
const OP_IDENTIFY: u8 = 2;
const OP_RESUME: u8 = 6;
const OP_RECONNECT: u64 = 7;
const OP_INVALID_SESSION: u64 = 9;
const OP_HELLO: u64 = 10;
const OP_HEARTBEAT_ACK: u64 = 11;

/// A bot token. `Debug` prints `BotToken(<redacted>)`, and there is no `Display`,
/// so the token cannot end up in a log by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct BotToken(String);

impl BotToken {
    /// Wraps a token. Surrounding whitespace and a leading `Bot ` (the REST
    /// header's prefix, which Identify does not use) are removed.
    pub fn new(token: impl Into<String>) -> Self {
        let token = token.into();
        let trimmed = token.trim();
        let bare = trimmed.strip_prefix("Bot ").unwrap_or(trimmed).trim();
        Self(bare.to_owned())
    }

    /// The token itself, for the few places that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for BotToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BotToken(<redacted>)")
    }
}

/// Identify's `properties` (ref §1 Identify).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionProperties {
    /// `os`.
    pub os: String,
    /// `browser`: Discord shows it as the client library.
    pub browser: String,
    /// `device`.
    pub device: String,
}

impl Default for ConnectionProperties {
    /// `relay` for all three.
    fn default() -> Self {
        Self {
            os: "relay".into(),
            browser: "relay".into(),
            device: "relay".into(),
        }
    }
}

/// What a session needs to know before it connects.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// The bot token; only ever sent inside Identify and Resume.
    pub token: BotToken,
    /// Gateway intents; [`intents::DEFAULT`] for relay.
    pub intents: u64,
    /// Base gateway URL for new sessions: `url` from `GET /gateway/bot`, or an
    /// override. Any query is dropped and `?v=10&encoding=json` added.
    pub gateway_url: String,
    /// Identify's `properties`.
    pub properties: ConnectionProperties,
    /// Reconnect schedule; the default is 1 s doubling to 30 s, ±20 %.
    pub backoff: BackoffConfig,
}

impl SessionConfig {
    /// A config with relay's intents, properties and backoff.
    pub fn new(token: BotToken, gateway_url: impl Into<String>) -> Self {
        Self {
            token,
            intents: intents::DEFAULT,
            gateway_url: gateway_url.into(),
            properties: ConnectionProperties::default(),
            backoff: BackoffConfig::default(),
        }
    }
}

/// The URL to open for a gateway base URL: the base without query or fragment,
/// a `/` path if it has none, then `?v=10&encoding=json` (ref §1 Connecting; the
/// resume URL comes without a query and needs it too).
pub fn connect_url(base: &str) -> String {
    let base = base.trim();
    let base = base.split(['?', '#']).next().unwrap_or_default();
    let after_scheme = base.split_once("://").map_or(base, |(_, rest)| rest);
    let slash = if after_scheme.contains('/') { "" } else { "/" };
    format!("{base}{slash}?{GATEWAY_QUERY}")
}

/// What a gateway close means for the session (ref §1 Close codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseAction {
    /// Reconnect and resume the same session.
    Resume,
    /// Reconnect and identify: the session is gone.
    Reidentify,
    /// Stop for good; retrying cannot help and identify loops can get the token reset.
    Fatal(&'static str),
}

/// Classifies a close from the gateway; `None` is a drop without a close frame.
/// Fatal: 4004, 4010–4014. New session: 4003, 4007, 4009. Everything else,
/// including codes Discord does not document, resumes: when in doubt keep trying,
/// and if the session is really gone Discord answers the Resume with op 9.
pub fn classify_close(code: Option<u16>) -> CloseAction {
    match code {
        Some(4003 | 4007 | 4009) => CloseAction::Reidentify,
        Some(4004) => CloseAction::Fatal(
            "4004 authentication failed: Discord rejected the bot token; \
             check the configured token (it may have been reset)",
        ),
        Some(4010) => {
            CloseAction::Fatal("4010 invalid shard: the shard sent in Identify is invalid")
        }
        Some(4011) => CloseAction::Fatal(
            "4011 sharding required: the bot is in too many guilds for one connection",
        ),
        Some(4012) => {
            CloseAction::Fatal("4012 invalid API version: the gateway URL must ask for v=10")
        }
        Some(4013) => CloseAction::Fatal(
            "4013 invalid intents: the configured intents contain bits Discord does not know",
        ),
        Some(4014) => CloseAction::Fatal(
            "4014 disallowed intents: enable MESSAGE CONTENT (and any other privileged intent \
             configured) in the Developer Portal under Bot → Privileged Gateway Intents",
        ),
        _ => CloseAction::Resume,
    }
}

/// Where the session is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionState {
    /// Not started, or shut down.
    Disconnected,
    /// `Connect` emitted; waiting for the socket to open.
    Connecting,
    /// Socket open; waiting for Hello.
    WaitingHello,
    /// Identify sent or about to be; waiting for READY.
    Identifying,
    /// Resume sent or about to be; waiting for RESUMED.
    Resuming,
    /// READY or RESUMED received; dispatches flow.
    Active,
    /// Waiting out a backoff delay before the next `Connect`.
    BackingOff,
    /// Stopped on a fatal close code; nothing more will happen.
    Fatal,
}

impl SessionState {
    /// A socket is open.
    fn is_open(self) -> bool {
        matches!(
            self,
            Self::WaitingHello | Self::Identifying | Self::Resuming | Self::Active
        )
    }
}

/// A text frame to write. `Debug` hides Identify and Resume, which carry the token.
#[derive(Clone, PartialEq, Eq)]
pub struct OutgoingFrame {
    op: u8,
    text: String,
}

impl OutgoingFrame {
    /// The gateway opcode.
    pub fn op(&self) -> u8 {
        self.op
    }

    /// The JSON text to send.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The JSON text to send, owned.
    pub fn into_string(self) -> String {
        self.text
    }

    fn carries_token(&self) -> bool {
        self.op == OP_IDENTIFY || self.op == OP_RESUME
    }
}

impl fmt::Debug for OutgoingFrame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text: &str = if self.carries_token() {
            "<redacted: carries the token>"
        } else {
            &self.text
        };
        f.debug_struct("OutgoingFrame")
            .field("op", &self.op)
            .field("text", &text)
            .finish()
    }
}

/// Why a received payload was skipped. The session keeps going after each.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PayloadError {
    /// Not JSON.
    InvalidJson {
        /// Parser message (bounded).
        detail: String,
    },
    /// JSON, but not an object.
    NotAnObject,
    /// A field this payload needs is absent or null (`op`, `t`, `d.session_id` …).
    MissingField {
        /// Dotted path of the field.
        field: &'static str,
    },
    /// A field has the wrong JSON type.
    WrongType {
        /// Dotted path of the field.
        field: &'static str,
    },
    /// An opcode a client never receives, or one newer than this code.
    UnknownOpcode {
        /// The opcode received.
        op: u64,
    },
}

impl fmt::Display for PayloadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidJson { detail } => write!(f, "gateway payload is not JSON: {detail}"),
            Self::NotAnObject => f.write_str("gateway payload is not a JSON object"),
            Self::MissingField { field } => write!(f, "gateway payload lacks `{field}`"),
            Self::WrongType { field } => {
                write!(f, "gateway payload field `{field}` has the wrong type")
            }
            Self::UnknownOpcode { op } => write!(f, "unexpected gateway opcode {op}"),
        }
    }
}

impl std::error::Error for PayloadError {}

/// Why [`GatewaySession::send_command`] refused a command.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CommandError {
    /// The session is not [`SessionState::Active`].
    NotReady,
    /// The session sends this opcode itself (heartbeat, identify, resume), or
    /// clients never send it.
    ReservedOpcode {
        /// The opcode given.
        op: u8,
    },
    /// The encoded frame exceeds [`MAX_SEND_BYTES`].
    TooLarge {
        /// Encoded size.
        len: usize,
    },
    /// Too many commands already wait for room in the send window.
    QueueFull,
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotReady => f.write_str("the gateway session is not ready"),
            Self::ReservedOpcode { op } => write!(f, "opcode {op} cannot be sent as a command"),
            Self::TooLarge { len } => {
                write!(f, "command of {len} bytes exceeds {MAX_SEND_BYTES} bytes")
            }
            Self::QueueFull => f.write_str("too many gateway commands are waiting"),
        }
    }
}

impl std::error::Error for CommandError {}

/// What the driver should do or know.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum SessionOutput {
    /// Open a WebSocket to `url` (query included).
    Connect {
        /// `wss://…/?v=10&encoding=json`.
        url: String,
    },
    /// Write this text frame.
    Send(OutgoingFrame),
    /// Close the socket with this code and drop it.
    Close {
        /// 4000 to keep the session resumable, 1000 when it is over.
        code: u16,
    },
    /// An op 0 event, READY and RESUMED included, for the translation layer.
    Dispatch {
        /// `t`, e.g. `MESSAGE_CREATE`.
        event: String,
        /// `s`.
        seq: u64,
        /// `d`.
        data: Value,
    },
    /// A new session started (emitted just before READY's `Dispatch`).
    Ready {
        /// The gateway session id.
        session_id: String,
        /// The bot's own user id, to ignore its own messages.
        user_id: String,
    },
    /// The session resumed; state built from earlier dispatches is still valid.
    Resumed,
    /// Discord acknowledged our last heartbeat.
    HeartbeatAck {
        /// Time from that heartbeat to its ACK.
        latency: Duration,
    },
    /// The connection is gone; the next `Connect` comes after `delay`.
    Reconnecting {
        /// Wait before connecting.
        delay: Duration,
        /// Whether the next connection resumes (else it identifies).
        resume: bool,
    },
    /// The session is gone and the next one starts from scratch: drop every
    /// cache built from its dispatches (the voice cache). Not emitted on resume.
    SessionInvalidated,
    /// Queued commands were dropped because their connection ended; re-send
    /// after the next `Ready`/`Resumed` if still wanted.
    CommandsDropped {
        /// How many.
        count: usize,
    },
    /// A received payload was skipped.
    Malformed(PayloadError),
    /// Stopped for good; `reason` names the cause and the fix.
    Fatal {
        /// The close code.
        code: u16,
        /// One clear sentence for the operator.
        reason: &'static str,
    },
}

/// Which login to send after Hello.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Auth {
    Identify,
    Resume,
}

/// The session's timers, indexing [`Timers`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Timer {
    /// End of a backoff delay: connect.
    Reconnect,
    /// Hello is overdue.
    Hello,
    /// The next heartbeat is due (and the zombie check with it).
    Heartbeat,
    /// Room in the send window, or Identify spacing, frees a waiting frame.
    Flush,
}

const TIMER_COUNT: usize = 4;

#[derive(Debug, Default)]
struct Timers([Option<Instant>; TIMER_COUNT]);

impl Timers {
    fn set(&mut self, timer: Timer, at: Instant) {
        self.0[timer as usize] = Some(at);
    }

    fn clear(&mut self, timer: Timer) {
        self.0[timer as usize] = None;
    }

    /// Clears and reports the timer if it is due at `now`.
    fn take_expired(&mut self, timer: Timer, now: Instant) -> bool {
        match self.0[timer as usize] {
            Some(at) if at <= now => {
                self.0[timer as usize] = None;
                true
            }
            _ => false,
        }
    }

    fn next(&self) -> Option<Instant> {
        self.0.iter().flatten().min().copied()
    }
}

/// One received payload, `{op, d, s, t}`.
struct Frame {
    op: u64,
    d: Value,
    s: Option<u64>,
    t: Option<String>,
}

impl Frame {
    /// `s` and `t` are only read for op 0: elsewhere they are null by the docs,
    /// and a stray value there should not cost us a heartbeat or a Hello.
    fn parse(text: &str) -> Result<Self, PayloadError> {
        let value: Value = serde_json::from_str(text).map_err(|e| PayloadError::InvalidJson {
            detail: bounded(&e.to_string()),
        })?;
        let Value::Object(mut map) = value else {
            return Err(PayloadError::NotAnObject);
        };
        let op = match map.get("op") {
            None | Some(Value::Null) => return Err(PayloadError::MissingField { field: "op" }),
            Some(op) => op.as_u64().ok_or(PayloadError::WrongType { field: "op" })?,
        };
        let (mut s, mut t) = (None, None);
        if op == OP_DISPATCH {
            s = match map.get("s") {
                None | Some(Value::Null) => None,
                Some(s) => Some(s.as_u64().ok_or(PayloadError::WrongType { field: "s" })?),
            };
            t = match map.remove("t") {
                None | Some(Value::Null) => None,
                Some(Value::String(t)) => Some(t),
                Some(_) => return Err(PayloadError::WrongType { field: "t" }),
            };
        }
        let d = map.remove("d").unwrap_or(Value::Null);
        Ok(Self { op, d, s, t })
    }
}

/// The Discord Gateway v10 session. See the module docs for the driver contract.
#[derive(Debug)]
pub struct GatewaySession {
    config: SessionConfig,
    state: SessionState,
    /// READY's `session_id`; `Some` means the next connection resumes.
    session_id: Option<String>,
    /// READY's `resume_gateway_url`, without query.
    resume_url: Option<String>,
    /// Last non-null `s` of an op 0 (ref §1 Sequence numbers).
    seq: Option<u64>,
    /// READY's `user.id`.
    user_id: Option<String>,
    backoff: Backoff,
    /// The random value of the latest input, for reconnects started by timers.
    last_random: f64,
    timers: Timers,
    out: VecDeque<SessionOutput>,
    /// From this connection's Hello.
    heartbeat_interval: Option<Duration>,
    /// Sends per window that commands leave to heartbeats.
    heartbeat_reserve: usize,
    /// A heartbeat is owed (due, or asked for by op 1) but the window is full.
    heartbeat_pending: bool,
    /// A heartbeat went out and nothing at all has arrived since: the zombie check.
    beat_unanswered: bool,
    /// When the heartbeat awaiting its ACK was sent, for the latency.
    beat_sent_at: Option<Instant>,
    /// Identify or Resume owed on this connection.
    auth_pending: Option<Auth>,
    /// Last Identify sent, on any connection (ref §1 Identify: 5 s spacing).
    last_identify: Option<Instant>,
    /// Send times on this connection within the last [`SEND_WINDOW`], oldest first.
    sent: VecDeque<Instant>,
    /// Commands waiting for room in the window.
    commands: VecDeque<OutgoingFrame>,
}

impl GatewaySession {
    /// A session that has not started.
    pub fn new(config: SessionConfig) -> Self {
        let backoff = Backoff::new(config.backoff);
        Self {
            config,
            state: SessionState::Disconnected,
            session_id: None,
            resume_url: None,
            seq: None,
            user_id: None,
            backoff,
            last_random: 0.5,
            timers: Timers::default(),
            out: VecDeque::new(),
            heartbeat_interval: None,
            heartbeat_reserve: DEFAULT_HEARTBEAT_RESERVE,
            heartbeat_pending: false,
            beat_unanswered: false,
            beat_sent_at: None,
            auth_pending: None,
            last_identify: None,
            sent: VecDeque::new(),
            commands: VecDeque::new(),
        }
    }

    /// Takes over a session another process (or an earlier run of this one)
    /// left resumable (CONTRACT.md §10): the first connection goes to
    /// `resume_url` (the gateway URL when `None`) and sends Resume with
    /// `seq`, so Discord replays every dispatch after it. Only before
    /// [`start`](Self::start); if Discord refuses (op 9 `false`), the session
    /// identifies anew as usual.
    pub fn restore(&mut self, session_id: String, resume_url: Option<String>, seq: Option<u64>) {
        if self.state != SessionState::Disconnected {
            return;
        }
        self.session_id = Some(session_id);
        self.resume_url = resume_url;
        self.seq = seq;
    }

    /// Starts connecting (emits `Connect`). Does nothing unless
    /// [`SessionState::Disconnected`]: a fatal session stays stopped.
    pub fn start(&mut self, _now: Instant) {
        if self.state == SessionState::Disconnected {
            self.connect();
        }
    }

    /// The socket from the last `Connect` is open.
    pub fn handle_connected(&mut self, now: Instant) {
        if self.state != SessionState::Connecting {
            return;
        }
        self.state = SessionState::WaitingHello;
        self.sent.clear();
        self.timers.set(Timer::Hello, later(now, HELLO_TIMEOUT));
    }

    /// A text frame arrived. Never panics; a bad payload becomes
    /// [`SessionOutput::Malformed`] and the session carries on. `random` in
    /// `[0, 1)` jitters the first heartbeat (Hello) and reconnect delays (op 7, op 9).
    pub fn handle_text(&mut self, now: Instant, text: &str, random: f64) {
        self.last_random = random;
        if self.state == SessionState::Connecting {
            // The driver skipped `handle_connected`; the frame proves the socket is open.
            self.handle_connected(now);
        }
        if !self.state.is_open() {
            return;
        }
        self.beat_unanswered = false;
        let frame = match Frame::parse(text) {
            Ok(frame) => frame,
            Err(e) => {
                self.out.push_back(SessionOutput::Malformed(e));
                return;
            }
        };
        match frame.op {
            OP_DISPATCH => self.on_dispatch(now, frame),
            // ref §1 Opcodes: a server heartbeat request is answered at once.
            OP_HEARTBEAT => {
                self.heartbeat_pending = true;
                self.flush(now);
            }
            // ref §1 Resume: op 7 may come even before Hello; resume either way.
            OP_RECONNECT => {
                self.reconnect(now, true, Some(RESUME_CLOSE_CODE), random, Duration::ZERO);
            }
            OP_INVALID_SESSION => {
                if frame.d.as_bool() == Some(true) {
                    self.reconnect(now, true, Some(RESUME_CLOSE_CODE), random, Duration::ZERO);
                } else {
                    let wait = INVALID_SESSION_WAIT_MIN
                        + INVALID_SESSION_WAIT_SPREAD.mul_f64(unit(random));
                    self.reconnect(now, false, Some(NORMAL_CLOSE_CODE), random, wait);
                }
            }
            OP_HELLO => self.on_hello(now, &frame.d, random),
            OP_HEARTBEAT_ACK => {
                if let Some(sent) = self.beat_sent_at.take() {
                    let latency = now.saturating_duration_since(sent);
                    self.out.push_back(SessionOutput::HeartbeatAck { latency });
                }
            }
            op => self
                .out
                .push_back(SessionOutput::Malformed(PayloadError::UnknownOpcode { op })),
        }
    }

    /// The connection closed: `code` from the close frame, `None` for a drop
    /// without one. `random` in `[0, 1)` jitters the backoff.
    pub fn handle_closed(&mut self, now: Instant, code: Option<u16>, random: f64) {
        self.last_random = random;
        if self.state != SessionState::Connecting && !self.state.is_open() {
            return;
        }
        match classify_close(code) {
            CloseAction::Resume => self.reconnect(now, true, None, random, Duration::ZERO),
            CloseAction::Reidentify => self.reconnect(now, false, None, random, Duration::ZERO),
            CloseAction::Fatal(reason) => self.fatal(code.unwrap_or_default(), reason),
        }
    }

    /// The last `Connect` failed (DNS, TCP, TLS, HTTP upgrade). `random` in
    /// `[0, 1)` jitters the backoff.
    pub fn handle_connect_failed(&mut self, now: Instant, random: f64) {
        self.last_random = random;
        if self.state == SessionState::Connecting {
            self.reconnect(now, true, None, random, Duration::ZERO);
        }
    }

    /// Time has reached `now`. Extra calls are harmless.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.timers.take_expired(Timer::Reconnect, now) && self.state == SessionState::BackingOff
        {
            self.connect();
        }
        if self.timers.take_expired(Timer::Hello, now) && self.state == SessionState::WaitingHello {
            let random = self.last_random;
            self.reconnect(now, true, Some(RESUME_CLOSE_CODE), random, Duration::ZERO);
        }
        if self.timers.take_expired(Timer::Heartbeat, now) && self.state.is_open() {
            if self.beat_unanswered {
                // ref §1 Heartbeating: a zombie connection. Close with a
                // non-1000 code so the session survives, and resume.
                let random = self.last_random;
                self.reconnect(now, true, Some(RESUME_CLOSE_CODE), random, Duration::ZERO);
            } else {
                self.heartbeat_pending = true;
                self.flush(now);
            }
        }
        if self.timers.take_expired(Timer::Flush, now) {
            self.flush(now);
        }
    }

    /// Queues a client command (presence update, voice state update, …) as
    /// `{"op": op, "d": data}`. It goes out as soon as the send window has room
    /// beyond the heartbeats' reserve; queued commands are dropped, with
    /// [`SessionOutput::CommandsDropped`], if the connection ends first.
    pub fn send_command(&mut self, now: Instant, op: u8, data: Value) -> Result<(), CommandError> {
        // The session owns 1, 2 and 6; the rest listed are receive-only.
        if matches!(op, 0 | 1 | 2 | 6 | 7 | 9 | 10 | 11) {
            return Err(CommandError::ReservedOpcode { op });
        }
        if self.state != SessionState::Active {
            return Err(CommandError::NotReady);
        }
        let text = json!({ "op": op, "d": data }).to_string();
        if text.len() > MAX_SEND_BYTES {
            return Err(CommandError::TooLarge { len: text.len() });
        }
        if self.commands.len() >= COMMAND_QUEUE_MAX {
            return Err(CommandError::QueueFull);
        }
        self.commands.push_back(OutgoingFrame { op, text });
        self.flush(now);
        Ok(())
    }

    /// Ends the session on purpose: closes with 1000, which invalidates it on
    /// Discord's side, and stops. [`start`](Self::start) begins a new one.
    pub fn shutdown(&mut self, _now: Instant) {
        if self.state == SessionState::Fatal || self.state == SessionState::Disconnected {
            return;
        }
        if self.state == SessionState::Connecting || self.state.is_open() {
            self.out.push_back(SessionOutput::Close {
                code: NORMAL_CLOSE_CODE,
            });
        }
        self.end_connection();
        self.timers = Timers::default();
        self.forget_session();
        self.state = SessionState::Disconnected;
    }

    /// The next thing to do, if any. Drain after every input.
    #[must_use]
    pub fn poll_output(&mut self) -> Option<SessionOutput> {
        self.out.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) should run next; `None`
    /// when only outside input can move the session.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    /// Where the session is.
    pub fn state(&self) -> SessionState {
        self.state
    }

    /// The gateway session id, while one is resumable.
    pub fn session_id(&self) -> Option<&str> {
        self.session_id.as_deref()
    }

    /// The last sequence number received in this session.
    pub fn sequence(&self) -> Option<u64> {
        self.seq
    }

    /// The bot's own user id, from the last READY.
    pub fn user_id(&self) -> Option<&str> {
        self.user_id.as_deref()
    }

    /// Where the next resume connects, from the last READY.
    pub fn resume_gateway_url(&self) -> Option<&str> {
        self.resume_url.as_deref()
    }

    /// The heartbeat interval of the current connection, once Hello arrived.
    pub fn heartbeat_interval(&self) -> Option<Duration> {
        self.heartbeat_interval
    }

    fn connect(&mut self) {
        // ref §1 Resume: resume at `resume_gateway_url`; new sessions use the
        // cached `/gateway/bot` URL.
        let base = match (&self.session_id, &self.resume_url) {
            (Some(_), Some(resume)) => resume,
            _ => &self.config.gateway_url,
        };
        let url = connect_url(base);
        self.out.push_back(SessionOutput::Connect { url });
        self.state = SessionState::Connecting;
    }

    fn on_hello(&mut self, now: Instant, d: &Value, random: f64) {
        let interval = match d.get("heartbeat_interval") {
            None | Some(Value::Null) => Err(PayloadError::MissingField {
                field: "d.heartbeat_interval",
            }),
            Some(v) => interval_ms(v).ok_or(PayloadError::WrongType {
                field: "d.heartbeat_interval",
            }),
        };
        let ms = match interval {
            Ok(ms) => ms,
            Err(e) => {
                // The Hello timer stays armed, so a useless Hello ends in a reconnect.
                self.out.push_back(SessionOutput::Malformed(e));
                return;
            }
        };
        let interval = Duration::from_millis(ms).clamp(HEARTBEAT_MIN, HEARTBEAT_MAX);
        self.heartbeat_interval = Some(interval);
        self.heartbeat_reserve = heartbeat_reserve(interval);
        self.timers.clear(Timer::Hello);
        // ref §1 Heartbeating: the first beat after interval × jitter.
        let first = interval.mul_f64(unit(random));
        self.timers.set(Timer::Heartbeat, later(now, first));
        if self.state == SessionState::WaitingHello {
            // ref §1 Resume: Resume instead of Identify when a session exists.
            if self.session_id.is_some() {
                self.auth_pending = Some(Auth::Resume);
                self.state = SessionState::Resuming;
            } else {
                self.auth_pending = Some(Auth::Identify);
                self.state = SessionState::Identifying;
            }
        }
        self.flush(now);
    }

    fn on_dispatch(&mut self, now: Instant, frame: Frame) {
        let Some(event) = frame.t else {
            self.out
                .push_back(SessionOutput::Malformed(PayloadError::MissingField {
                    field: "t",
                }));
            return;
        };
        let Some(seq) = frame.s else {
            self.out
                .push_back(SessionOutput::Malformed(PayloadError::MissingField {
                    field: "s",
                }));
            return;
        };
        self.seq = Some(seq);
        match event.as_str() {
            "READY" => self.on_ready(now, &frame.d),
            "RESUMED" => self.on_resumed(now),
            _ => {}
        }
        self.out.push_back(SessionOutput::Dispatch {
            event,
            seq,
            data: frame.d,
        });
    }

    /// ref §1 READY: keep `session_id`, `resume_gateway_url` and `user.id`.
    fn on_ready(&mut self, now: Instant, d: &Value) {
        let session_id = d.get("session_id").and_then(Value::as_str);
        let resume_url = d.get("resume_gateway_url").and_then(Value::as_str);
        let user_id = d.get("user").and_then(|u| u.get("id")).and_then(snowflake);
        if self.session_id.is_some() && self.session_id.as_deref() != session_id {
            // READY while a session existed (e.g. in answer to a Resume): the
            // old one is gone, and so is everything built from it.
            self.out.push_back(SessionOutput::SessionInvalidated);
        }
        self.session_id = session_id.map(str::to_owned);
        self.resume_url = resume_url.map(str::to_owned);
        if user_id.is_some() {
            self.user_id.clone_from(&user_id);
        }
        self.state = SessionState::Active;
        self.auth_pending = None;
        self.backoff.reset();
        match (session_id, user_id) {
            (Some(session_id), Some(user_id)) => self.out.push_back(SessionOutput::Ready {
                session_id: session_id.to_owned(),
                user_id,
            }),
            (None, _) => self
                .out
                .push_back(SessionOutput::Malformed(PayloadError::MissingField {
                    field: "d.session_id",
                })),
            (Some(_), None) => {
                self.out
                    .push_back(SessionOutput::Malformed(PayloadError::MissingField {
                        field: "d.user.id",
                    }))
            }
        }
        if resume_url.is_none() {
            // Resumes then go to the gateway URL, which works but disconnects more often.
            self.out
                .push_back(SessionOutput::Malformed(PayloadError::MissingField {
                    field: "d.resume_gateway_url",
                }));
        }
        self.flush(now);
    }

    fn on_resumed(&mut self, now: Instant) {
        self.state = SessionState::Active;
        self.auth_pending = None;
        self.backoff.reset();
        self.out.push_back(SessionOutput::Resumed);
        self.flush(now);
    }

    /// Sends what is owed, in priority order (heartbeat, Identify/Resume,
    /// commands), as far as the send window allows, and arms the flush timer
    /// for whatever must wait.
    fn flush(&mut self, now: Instant) {
        self.timers.clear(Timer::Flush);
        if !self.state.is_open() {
            return;
        }
        while self
            .sent
            .front()
            .is_some_and(|&t| later(t, SEND_WINDOW) <= now)
        {
            self.sent.pop_front();
        }
        if self.heartbeat_pending && self.sent.len() < SEND_LIMIT {
            self.send_heartbeat(now);
        }
        if let Some(auth) = self.auth_pending {
            let spaced = self.auth_ready_at(auth).is_none_or(|at| at <= now);
            if spaced && self.sent.len() < SEND_LIMIT {
                self.auth_pending = None;
                self.send_auth(now, auth);
            }
        }
        let command_limit = self.command_limit();
        if self.state == SessionState::Active {
            while self.sent.len() < command_limit {
                let Some(frame) = self.commands.pop_front() else {
                    break;
                };
                self.send(now, frame);
            }
        }
        let mut wake = None;
        if self.heartbeat_pending || self.auth_pending.is_some() {
            wake = earliest(wake, self.window_free_at(SEND_LIMIT));
        }
        if let Some(auth) = self.auth_pending {
            wake = earliest(wake, self.auth_ready_at(auth).filter(|&at| at > now));
        }
        if self.state == SessionState::Active && !self.commands.is_empty() {
            wake = earliest(wake, self.window_free_at(command_limit));
        }
        if let Some(at) = wake {
            self.timers.set(Timer::Flush, at);
        }
    }

    /// When the window next has fewer than `limit` sends; `None` if it has now.
    fn window_free_at(&self, limit: usize) -> Option<Instant> {
        let over = self.sent.len().checked_sub(limit)?;
        self.sent.get(over).map(|&t| later(t, SEND_WINDOW))
    }

    fn auth_ready_at(&self, auth: Auth) -> Option<Instant> {
        match auth {
            Auth::Identify => self.last_identify.map(|t| later(t, IDENTIFY_SPACING)),
            Auth::Resume => None,
        }
    }

    /// Commands may fill the window up to the heartbeats' reserve.
    fn command_limit(&self) -> usize {
        SEND_LIMIT.saturating_sub(self.heartbeat_reserve).max(1)
    }

    /// ref §1 Heartbeating: `d` is the last non-null `s`, or null.
    fn send_heartbeat(&mut self, now: Instant) {
        let text = json!({ "op": OP_HEARTBEAT, "d": self.seq }).to_string();
        self.send(now, OutgoingFrame { op: 1, text });
        self.heartbeat_pending = false;
        self.beat_unanswered = true;
        self.beat_sent_at = Some(now);
        if let Some(interval) = self.heartbeat_interval {
            // Counting from the beat just sent, so a server-requested beat does
            // not leave the next periodic one due before its ACK can arrive.
            self.timers.set(Timer::Heartbeat, later(now, interval));
        }
    }

    fn send_auth(&mut self, now: Instant, auth: Auth) {
        let token = self.config.token.expose();
        let frame = match (auth, &self.session_id) {
            (Auth::Resume, Some(session_id)) => OutgoingFrame {
                op: OP_RESUME,
                text: json!({
                    "op": OP_RESUME,
                    "d": { "token": token, "session_id": session_id, "seq": self.seq },
                })
                .to_string(),
            },
            _ => {
                let p = &self.config.properties;
                let text = json!({
                    "op": OP_IDENTIFY,
                    "d": {
                        "token": token,
                        "intents": self.config.intents,
                        "properties": { "os": p.os, "browser": p.browser, "device": p.device },
                    },
                })
                .to_string();
                OutgoingFrame {
                    op: OP_IDENTIFY,
                    text,
                }
            }
        };
        if frame.op == OP_IDENTIFY {
            // ref §1 Sequence numbers: a new session forgets the old `s`.
            self.last_identify = Some(now);
            self.forget_session();
        }
        self.send(now, frame);
    }

    /// Every frame leaves through here, so the window log sees every one.
    fn send(&mut self, now: Instant, frame: OutgoingFrame) {
        self.sent.push_back(now);
        self.out.push_back(SessionOutput::Send(frame));
    }

    /// Leaves the current connection (optionally closing it with `close`) and
    /// schedules the next one after the backoff delay, at least `min_wait`.
    fn reconnect(
        &mut self,
        now: Instant,
        want_resume: bool,
        close: Option<u16>,
        random: f64,
        min_wait: Duration,
    ) {
        if let Some(code) = close {
            self.out.push_back(SessionOutput::Close { code });
        }
        self.end_connection();
        let resume = want_resume && self.session_id.is_some();
        if !resume {
            self.forget_session();
        }
        let delay = self.backoff.next_delay(random).max(min_wait);
        self.out
            .push_back(SessionOutput::Reconnecting { delay, resume });
        self.state = SessionState::BackingOff;
        self.timers.set(Timer::Reconnect, later(now, delay));
    }

    fn fatal(&mut self, code: u16, reason: &'static str) {
        self.end_connection();
        self.timers = Timers::default();
        self.state = SessionState::Fatal;
        self.out.push_back(SessionOutput::Fatal { code, reason });
    }

    /// Forgets everything that belonged to the connection, not to the session.
    fn end_connection(&mut self) {
        self.timers.clear(Timer::Hello);
        self.timers.clear(Timer::Heartbeat);
        self.timers.clear(Timer::Flush);
        self.heartbeat_interval = None;
        self.heartbeat_reserve = DEFAULT_HEARTBEAT_RESERVE;
        self.heartbeat_pending = false;
        self.beat_unanswered = false;
        self.beat_sent_at = None;
        self.auth_pending = None;
        self.sent.clear();
        if !self.commands.is_empty() {
            let count = self.commands.len();
            self.commands.clear();
            self.out.push_back(SessionOutput::CommandsDropped { count });
        }
    }

    /// Drops the session (id, resume URL, sequence), telling the caller if
    /// there was anything to drop.
    fn forget_session(&mut self) {
        if self.session_id.is_some() || self.seq.is_some() {
            self.out.push_back(SessionOutput::SessionInvalidated);
        }
        self.session_id = None;
        self.resume_url = None;
        self.seq = None;
    }
}

/// Sends per window that heartbeats need: one per interval, plus one for a
/// server-requested beat.
fn heartbeat_reserve(interval: Duration) -> usize {
    let interval_ms = interval.as_millis().max(1);
    let per_window = SEND_WINDOW.as_millis().div_ceil(interval_ms);
    usize::try_from(per_window)
        .unwrap_or(SEND_LIMIT)
        .saturating_add(1)
        .min(SEND_LIMIT)
}

/// A heartbeat interval in ms: an integer, or a non-negative float (clamped later).
fn interval_ms(v: &Value) -> Option<u64> {
    v.as_u64().or_else(|| {
        v.as_f64()
            .filter(|f| f.is_finite() && *f >= 0.0)
            .map(|f| f.min(HEARTBEAT_MAX.as_millis() as f64) as u64)
    })
}

/// A snowflake as Discord sends it (a string) or as it may come back (a number).
fn snowflake(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
            Some(s.clone())
        }
        Value::Number(n) => n.as_u64().map(|n| n.to_string()),
        _ => None,
    }
}

/// A caller's random value made safe for `Duration::mul_f64`: in `[0, 1]`, NaN → 0.5.
fn unit(random: f64) -> f64 {
    if random.is_nan() {
        0.5
    } else {
        random.clamp(0.0, 1.0)
    }
}

/// `now + d` without the overflow panic (only reachable with absurd configs).
fn later(now: Instant, d: Duration) -> Instant {
    now.checked_add(d).unwrap_or(now)
}

fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn bounded(s: &str) -> String {
    match s.char_indices().nth(MAX_DETAIL_CHARS) {
        Some((cut, _)) => format!("{}…", &s[..cut]),
        None => s.to_owned(),
    }
}

/// Fuzz entry: a session that is active after Hello and READY takes `text` as
/// a gateway payload, then its next timers, and must neither panic nor stop:
/// no payload alone can make a session fatal.
#[cfg(feature = "fuzzing")]
#[allow(clippy::disallowed_methods)] // a fuzz target has no driver clock; this is only an origin
pub fn fuzz_payload(text: &str) {
    let now = Instant::now();
    let config = SessionConfig::new(BotToken::new("fuzz-token"), DEFAULT_GATEWAY_URL);
    let mut session = GatewaySession::new(config);
    session.start(now);
    session.handle_connected(now);
    session.handle_text(now, r#"{"op":10,"d":{"heartbeat_interval":41250}}"#, 0.5);
    session.handle_text(
        now,
        r#"{"op":0,"s":1,"t":"READY","d":{"session_id":"s","resume_gateway_url":"wss://r","user":{"id":"1"}}}"#,
        0.5,
    );
    session.handle_text(now, text, 0.5);
    let mut t = now;
    for _ in 0..3 {
        while session.poll_output().is_some() {}
        let Some(next) = session.poll_timeout() else {
            break;
        };
        t = t.max(next);
        session.handle_timeout(t);
    }
    assert_ne!(
        session.state(),
        SessionState::Fatal,
        "a payload made the session fatal"
    );
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const GATEWAY: &str = "wss://gateway.discord.gg";
    const RESUME_URL: &str = "wss://gateway-us-east1-b.discord.gg";
    const INTERVAL_MS: u64 = 41_250;

    #[allow(clippy::disallowed_methods)] // the one clock read: an origin for hand-driven time
    fn t0() -> Instant {
        Instant::now()
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn session() -> GatewaySession {
        GatewaySession::new(SessionConfig::new(BotToken::new("tok.en"), GATEWAY))
    }

    fn drain(s: &mut GatewaySession) -> Vec<SessionOutput> {
        std::iter::from_fn(|| s.poll_output()).collect()
    }

    /// The JSON of every `Send` in `outs`.
    fn sends(outs: &[SessionOutput]) -> Vec<Value> {
        outs.iter()
            .filter_map(|o| match o {
                SessionOutput::Send(f) => Some(serde_json::from_str(f.as_str()).unwrap()),
                _ => None,
            })
            .collect()
    }

    fn connects(outs: &[SessionOutput]) -> Vec<&str> {
        outs.iter()
            .filter_map(|o| match o {
                SessionOutput::Connect { url } => Some(url.as_str()),
                _ => None,
            })
            .collect()
    }

    fn hello(interval_ms: u64) -> String {
        json!({"op": 10, "d": {"heartbeat_interval": interval_ms}, "s": null, "t": null})
            .to_string()
    }

    fn ack() -> String {
        r#"{"op":11,"s":null,"t":null}"#.to_owned()
    }

    fn dispatch(t: &str, s: u64, d: Value) -> String {
        json!({"op": 0, "t": t, "s": s, "d": d}).to_string()
    }

    fn ready(session_id: &str) -> String {
        dispatch(
            "READY",
            1,
            json!({
                "v": 10,
                "user": {"id": "80351110224678912", "username": "relay", "bot": true},
                "guilds": [{"id": "41771983423143937", "unavailable": true}],
                "session_id": session_id,
                "resume_gateway_url": RESUME_URL,
                "application": {"id": "80351110224678912", "flags": 0},
            }),
        )
    }

    /// Start, open, Hello with jitter 0.5, READY as session `abc`; outputs drained.
    fn active(now: Instant) -> GatewaySession {
        let mut s = session();
        s.start(now);
        s.handle_connected(now);
        s.handle_text(now, &hello(INTERVAL_MS), 0.5);
        s.handle_text(now, &ready("abc"), 0.5);
        drain(&mut s);
        assert_eq!(s.state(), SessionState::Active);
        s
    }

    /// Runs every due timer up to `until` in order, returning all outputs.
    fn run_until(s: &mut GatewaySession, until: Instant) -> Vec<SessionOutput> {
        let mut outs = Vec::new();
        while let Some(at) = s.poll_timeout().filter(|&at| at <= until) {
            s.handle_timeout(at);
            outs.extend(drain(s));
        }
        outs
    }

    #[test]
    fn default_intents_are_relays_36481() {
        assert_eq!(intents::DEFAULT, 36481);
        assert_eq!(session().config.intents, 36481);
    }

    #[test]
    fn a_restored_session_resumes_at_its_url_and_sequence() {
        let now = t0();
        let mut s = session();
        s.restore(
            "stored".into(),
            Some("wss://resume.example".into()),
            Some(41),
        );
        s.start(now);
        assert_eq!(
            connects(&drain(&mut s)),
            vec!["wss://resume.example/?v=10&encoding=json"]
        );
        s.handle_connected(now);
        s.handle_text(now, &hello(INTERVAL_MS), 0.5);
        assert_eq!(
            sends(&drain(&mut s)),
            vec![json!({"op": 6, "d": {"token": "tok.en", "session_id": "stored", "seq": 41}})]
        );
        s.handle_text(now, &dispatch("MESSAGE_CREATE", 42, json!({})), 0.5);
        s.handle_text(now, &dispatch("RESUMED", 43, json!({})), 0.5);
        assert!(drain(&mut s).contains(&SessionOutput::Resumed));
        assert_eq!(s.sequence(), Some(43));
        // Restoring after start changes nothing.
        s.restore("other".into(), None, Some(1));
        assert_eq!(s.session_id(), Some("stored"));
    }

    #[test]
    fn a_refused_restore_identifies_anew() {
        let now = t0();
        let mut s = session();
        s.restore("gone".into(), None, Some(7));
        s.start(now);
        assert_eq!(
            connects(&drain(&mut s)),
            vec!["wss://gateway.discord.gg/?v=10&encoding=json"]
        );
        s.handle_connected(now);
        s.handle_text(now, &hello(INTERVAL_MS), 0.5);
        drain(&mut s);
        s.handle_text(now, r#"{"op":9,"d":false,"s":null,"t":null}"#, 0.5);
        let outs = drain(&mut s);
        assert!(
            outs.contains(&SessionOutput::SessionInvalidated),
            "{outs:?}"
        );
        assert_eq!(s.session_id(), None);
    }

    #[test]
    fn hello_then_identify_with_intents_and_properties() {
        let now = t0();
        let mut s = session();
        s.start(now);
        assert_eq!(
            drain(&mut s),
            vec![SessionOutput::Connect {
                url: "wss://gateway.discord.gg/?v=10&encoding=json".into()
            }]
        );
        s.handle_connected(now);
        assert_eq!(s.state(), SessionState::WaitingHello);
        assert!(drain(&mut s).is_empty(), "nothing is sent before Hello");
        s.handle_text(now, &hello(INTERVAL_MS), 0.5);
        let outs = drain(&mut s);
        assert_eq!(
            sends(&outs),
            vec![json!({"op": 2, "d": {
                "token": "tok.en",
                "intents": 36481,
                "properties": {"os": "relay", "browser": "relay", "device": "relay"},
            }})]
        );
        assert_eq!(s.state(), SessionState::Identifying);
    }

    #[test]
    fn ready_stores_session_and_reports_ids() {
        let now = t0();
        let mut s = session();
        s.start(now);
        s.handle_connected(now);
        s.handle_text(now, &hello(INTERVAL_MS), 0.5);
        drain(&mut s);
        s.handle_text(now, &ready("abc"), 0.5);
        let outs = drain(&mut s);
        assert_eq!(
            outs[0],
            SessionOutput::Ready {
                session_id: "abc".into(),
                user_id: "80351110224678912".into()
            }
        );
        assert!(
            matches!(&outs[1], SessionOutput::Dispatch { event, seq: 1, .. } if event == "READY")
        );
        assert_eq!(outs.len(), 2, "{outs:?}");
        assert_eq!(s.session_id(), Some("abc"));
        assert_eq!(s.sequence(), Some(1));
        assert_eq!(s.resume_gateway_url(), Some(RESUME_URL));
        assert_eq!(s.user_id(), Some("80351110224678912"));
    }

    #[test]
    fn first_heartbeat_after_jitter_then_every_interval() {
        let now = t0();
        let mut s = session();
        s.start(now);
        s.handle_connected(now);
        s.handle_text(now, &hello(40_000), 0.25);
        drain(&mut s);
        assert_eq!(s.poll_timeout(), Some(now + secs(10)));
        s.handle_timeout(now + ms(9_999));
        assert!(
            sends(&drain(&mut s)).is_empty(),
            "not before interval × jitter"
        );
        s.handle_timeout(now + secs(10));
        assert_eq!(sends(&drain(&mut s)), vec![json!({"op": 1, "d": null})]);
        s.handle_text(now + secs(10), &ack(), 0.5);
        assert_eq!(s.poll_timeout(), Some(now + secs(50)));
        s.handle_timeout(now + secs(50));
        assert_eq!(sends(&drain(&mut s)), vec![json!({"op": 1, "d": null})]);
    }

    #[test]
    fn heartbeat_carries_last_non_null_seq() {
        let now = t0();
        let mut s = active(now);
        s.handle_text(now, &dispatch("MESSAGE_CREATE", 7, json!({"id": "1"})), 0.5);
        // Non-dispatch frames have `s: null`, which must not erase the sequence.
        s.handle_text(now, r#"{"op":11,"d":null,"s":null,"t":null}"#, 0.5);
        drain(&mut s);
        let outs = run_until(&mut s, now + ms(INTERVAL_MS / 2));
        assert_eq!(sends(&outs), vec![json!({"op": 1, "d": 7})]);
    }

    #[test]
    fn server_requested_heartbeat_goes_out_at_once() {
        let now = t0();
        let mut s = active(now);
        s.handle_text(now + secs(1), r#"{"op":1,"d":null}"#, 0.5);
        let outs = drain(&mut s);
        assert_eq!(sends(&outs), vec![json!({"op": 1, "d": 1})]);
        // The periodic beat now counts from this one.
        assert_eq!(s.poll_timeout(), Some(now + secs(1) + ms(INTERVAL_MS)));
    }

    #[test]
    fn ack_reports_latency() {
        let now = t0();
        let mut s = active(now);
        let beat = now + ms(INTERVAL_MS / 2);
        run_until(&mut s, beat);
        s.handle_text(beat + ms(87), &ack(), 0.5);
        assert_eq!(
            drain(&mut s),
            vec![SessionOutput::HeartbeatAck { latency: ms(87) }]
        );
    }

    #[test]
    fn zombie_closes_non_1000_and_resumes_at_resume_url() {
        let now = t0();
        let mut s = active(now);
        s.handle_text(now, &dispatch("TYPING_START", 3, json!({})), 0.5);
        drain(&mut s);
        let beat = now + ms(INTERVAL_MS / 2);
        assert_eq!(sends(&run_until(&mut s, beat)).len(), 1);
        // Silence until the next beat is due.
        let due = beat + ms(INTERVAL_MS);
        s.handle_timeout(due);
        let outs = drain(&mut s);
        let SessionOutput::Close { code } = outs[0] else {
            panic!("{outs:?}")
        };
        assert!(
            code != 1000 && code != 1001,
            "{code} would invalidate the session"
        );
        assert!(sends(&outs).is_empty(), "no heartbeat on a zombie");
        assert!(matches!(
            outs[1],
            SessionOutput::Reconnecting { resume: true, .. }
        ));
        assert!(!outs.contains(&SessionOutput::SessionInvalidated));
        let outs = run_until(&mut s, due + secs(60));
        assert_eq!(
            connects(&outs),
            vec!["wss://gateway-us-east1-b.discord.gg/?v=10&encoding=json"]
        );
        let later = due + secs(2);
        s.handle_connected(later);
        s.handle_text(later, &hello(INTERVAL_MS), 0.5);
        assert_eq!(
            sends(&drain(&mut s)),
            vec![json!({"op": 6, "d": {"token": "tok.en", "session_id": "abc", "seq": 3}})]
        );
        assert_eq!(s.state(), SessionState::Resuming);
        s.handle_text(later, &dispatch("RESUMED", 4, json!({})), 0.5);
        let outs = drain(&mut s);
        assert_eq!(outs[0], SessionOutput::Resumed);
        assert_eq!(s.state(), SessionState::Active);
        assert_eq!(
            s.sequence(),
            Some(4),
            "the sequence carries on after a resume"
        );
    }

    #[test]
    fn any_frame_is_proof_of_life() {
        let now = t0();
        let mut s = active(now);
        let beat = now + ms(INTERVAL_MS / 2);
        run_until(&mut s, beat);
        s.handle_text(beat + secs(5), &dispatch("TYPING_START", 2, json!({})), 0.5);
        drain(&mut s);
        let outs = run_until(&mut s, beat + ms(INTERVAL_MS));
        assert_eq!(sends(&outs), vec![json!({"op": 1, "d": 2})]);
        assert_eq!(s.state(), SessionState::Active);
    }

    #[test]
    fn op7_reconnect_closes_non_1000_and_resumes() {
        let now = t0();
        let mut s = active(now);
        s.handle_text(now, r#"{"op":7,"d":null,"s":null,"t":null}"#, 0.5);
        let outs = drain(&mut s);
        assert_eq!(outs[0], SessionOutput::Close { code: 4000 });
        assert!(matches!(
            outs[1],
            SessionOutput::Reconnecting { resume: true, .. }
        ));
        let outs = run_until(&mut s, now + secs(60));
        assert_eq!(connects(&outs), vec![&*connect_url(RESUME_URL)]);
    }

    #[test]
    fn op7_before_hello_is_honoured() {
        let now = t0();
        let mut s = session();
        s.start(now);
        s.handle_connected(now);
        drain(&mut s);
        s.handle_text(now, r#"{"op":7}"#, 0.5);
        let outs = drain(&mut s);
        assert_eq!(outs[0], SessionOutput::Close { code: 4000 });
        // No session yet, so the next connection identifies at the gateway URL.
        assert!(matches!(
            outs[1],
            SessionOutput::Reconnecting { resume: false, .. }
        ));
        assert_eq!(
            connects(&run_until(&mut s, now + secs(60))),
            vec![&*connect_url(GATEWAY)]
        );
    }

    #[test]
    fn op9_true_resumes() {
        let now = t0();
        let mut s = active(now);
        s.handle_text(now, r#"{"op":9,"d":true}"#, 0.5);
        let outs = drain(&mut s);
        assert_eq!(outs[0], SessionOutput::Close { code: 4000 });
        assert!(matches!(
            outs[1],
            SessionOutput::Reconnecting { resume: true, .. }
        ));
        assert_eq!(s.session_id(), Some("abc"));
        assert_eq!(s.sequence(), Some(1));
    }

    #[test]
    fn op9_false_clears_session_and_identifies_at_gateway_url() {
        let now = t0();
        let mut s = active(now);
        s.handle_text(now, &dispatch("MESSAGE_CREATE", 9, json!({})), 0.5);
        drain(&mut s);
        s.handle_text(
            now + secs(10),
            r#"{"op":9,"d":false,"s":null,"t":null}"#,
            0.75,
        );
        let outs = drain(&mut s);
        assert!(
            outs.contains(&SessionOutput::SessionInvalidated),
            "{outs:?}"
        );
        let delay = outs
            .iter()
            .find_map(|o| match o {
                SessionOutput::Reconnecting {
                    delay,
                    resume: false,
                } => Some(*delay),
                _ => None,
            })
            .expect("reconnecting to a new session");
        assert!(delay >= secs(1) && delay <= secs(5), "{delay:?}");
        assert_eq!(s.session_id(), None);
        assert_eq!(s.sequence(), None);
        let outs = run_until(&mut s, now + secs(20));
        assert_eq!(connects(&outs), vec![&*connect_url(GATEWAY)]);
        s.handle_connected(now + secs(20));
        s.handle_text(now + secs(20), &hello(INTERVAL_MS), 0.0);
        let sent = sends(&drain(&mut s));
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0]["op"], 2, "identify, not resume");
    }

    #[test]
    fn identify_waits_five_seconds_after_the_last() {
        let now = t0();
        let mut s = session();
        s.start(now);
        s.handle_connected(now);
        s.handle_text(now, &hello(INTERVAL_MS), 0.99);
        assert_eq!(sends(&drain(&mut s))[0]["op"], 2);
        // Invalid session right away; the backoff is ~1 s, the 5 s spacing is longer.
        s.handle_text(now + ms(100), r#"{"op":9,"d":false}"#, 0.0);
        let outs = run_until(&mut s, now + ms(1_500));
        assert_eq!(connects(&outs).len(), 1);
        let t = now + ms(1_500);
        s.handle_connected(t);
        s.handle_text(t, &hello(INTERVAL_MS), 0.99);
        assert!(sends(&drain(&mut s)).is_empty(), "identify must wait");
        assert_eq!(s.state(), SessionState::Identifying);
        assert_eq!(s.poll_timeout(), Some(now + IDENTIFY_SPACING));
        let outs = run_until(&mut s, now + IDENTIFY_SPACING);
        assert_eq!(sends(&outs)[0]["op"], 2);
    }

    #[test]
    fn no_hello_means_reconnect() {
        let now = t0();
        let mut s = session();
        s.start(now);
        s.handle_connected(now);
        drain(&mut s);
        assert_eq!(s.poll_timeout(), Some(now + HELLO_TIMEOUT));
        let outs = run_until(&mut s, now + HELLO_TIMEOUT);
        assert_eq!(outs[0], SessionOutput::Close { code: 4000 });
        assert!(matches!(outs[1], SessionOutput::Reconnecting { .. }));
    }

    #[test]
    fn close_codes_classify_as_documented() {
        let mut codes: Vec<Option<u16>> = (4000..=4014).map(Some).collect();
        codes.extend([None, Some(1000), Some(1001), Some(1006), Some(4999)]);
        for code in codes {
            let expected = match code {
                Some(4003 | 4007 | 4009) => "reidentify",
                Some(4004 | 4010..=4014) => "fatal",
                _ => "resume",
            };
            let got = match classify_close(code) {
                CloseAction::Resume => "resume",
                CloseAction::Reidentify => "reidentify",
                CloseAction::Fatal(reason) => {
                    let code = code.unwrap().to_string();
                    assert!(reason.starts_with(&code), "{reason} names {code}");
                    "fatal"
                }
            };
            assert_eq!(got, expected, "close code {code:?}");

            // And the session acts on it.
            let now = t0();
            let mut s = active(now);
            s.handle_closed(now, code, 0.5);
            let outs = drain(&mut s);
            match expected {
                "resume" => {
                    assert!(
                        matches!(outs[..], [SessionOutput::Reconnecting { resume: true, .. }]),
                        "{code:?}: {outs:?}"
                    );
                    assert_eq!(s.session_id(), Some("abc"));
                }
                "reidentify" => {
                    assert_eq!(outs[0], SessionOutput::SessionInvalidated, "{code:?}");
                    assert!(matches!(
                        outs[1],
                        SessionOutput::Reconnecting { resume: false, .. }
                    ));
                    assert_eq!((s.session_id(), s.sequence()), (None, None));
                }
                _ => {
                    assert!(
                        matches!(outs[..], [SessionOutput::Fatal { code: c, .. }] if Some(c) == code),
                        "{code:?}: {outs:?}"
                    );
                    assert_eq!(s.state(), SessionState::Fatal);
                }
            }
        }
    }

    #[test]
    fn disallowed_intents_say_what_to_enable() {
        let CloseAction::Fatal(reason) = classify_close(Some(4014)) else {
            panic!()
        };
        assert!(reason.contains("MESSAGE CONTENT") && reason.contains("Developer Portal"));
    }

    #[test]
    fn fatal_never_connects_again() {
        let now = t0();
        let mut s = active(now);
        s.handle_closed(now, Some(4004), 0.5);
        drain(&mut s);
        assert_eq!(s.poll_timeout(), None);
        let mut outs = Vec::new();
        for i in 1..50u64 {
            let t = now + secs(i * 60);
            s.start(t);
            s.handle_timeout(t);
            s.handle_connect_failed(t, 0.5);
            s.handle_closed(t, None, 0.5);
            s.handle_connected(t);
            s.handle_text(t, &hello(INTERVAL_MS), 0.5);
            outs.extend(drain(&mut s));
        }
        assert!(outs.is_empty(), "{outs:?}");
        assert_eq!(s.state(), SessionState::Fatal);
    }

    #[test]
    fn backoff_is_capped_at_30s_and_reset_by_ready() {
        let now = t0();
        let mut s = session();
        s.start(now);
        drain(&mut s);
        let mut t = now;
        let mut delays = Vec::new();
        for _ in 0..20 {
            s.handle_connect_failed(t, 0.999);
            for out in drain(&mut s) {
                if let SessionOutput::Reconnecting { delay, .. } = out {
                    delays.push(delay);
                }
            }
            t = s.poll_timeout().unwrap();
            s.handle_timeout(t);
            assert_eq!(connects(&drain(&mut s)).len(), 1, "never gives up");
        }
        assert_eq!(delays.len(), 20);
        assert!(delays.iter().all(|d| *d <= secs(30)), "{delays:?}");
        assert!(delays[19] >= secs(24), "{delays:?}");
        s.handle_connected(t);
        s.handle_text(t, &hello(INTERVAL_MS), 0.5);
        s.handle_text(t, &ready("abc"), 0.5);
        drain(&mut s);
        s.handle_closed(t, None, 0.999);
        let outs = drain(&mut s);
        assert!(
            matches!(outs[..], [SessionOutput::Reconnecting { delay, resume: true }] if delay <= ms(1_200)),
            "{outs:?}"
        );
    }

    #[test]
    fn resumed_resets_backoff_and_keeps_caches() {
        let now = t0();
        let mut s = active(now);
        let mut t = now;
        for _ in 0..6 {
            s.handle_closed(t, None, 0.5);
            t = s.poll_timeout().unwrap();
            s.handle_timeout(t);
        }
        s.handle_connected(t);
        s.handle_text(t, &hello(INTERVAL_MS), 0.5);
        s.handle_text(t, &dispatch("RESUMED", 2, json!({})), 0.5);
        let outs = drain(&mut s);
        assert!(
            !outs.contains(&SessionOutput::SessionInvalidated),
            "{outs:?}"
        );
        s.handle_closed(t, Some(4000), 0.5);
        assert!(matches!(
            drain(&mut s)[..],
            [SessionOutput::Reconnecting { delay, resume: true }] if delay == secs(1)
        ));
    }

    /// Every 60 s window of `times` holds at most `SEND_LIMIT` sends.
    fn window_ok(times: &[Instant]) -> bool {
        times.iter().enumerate().all(|(i, &start)| {
            times[i..]
                .iter()
                .take_while(|&&t| t < start + SEND_WINDOW)
                .count()
                <= SEND_LIMIT
        })
    }

    #[test]
    fn send_limit_holds_under_a_burst_and_heartbeats_come_first() {
        let now = t0();
        let mut s = active(now);
        let mut times = Vec::new();
        let mut commands = 0;
        let mut beats = 0;
        // Within 1 s: a flood of commands, then a flood of heartbeat requests.
        for i in 0..300u64 {
            let t = now + ms(i);
            let _ = s.send_command(
                t,
                3,
                json!({"since": null, "activities": [], "status": "online", "afk": false}),
            );
            for out in drain(&mut s) {
                if let SessionOutput::Send(f) = out {
                    times.push(t);
                    commands += usize::from(f.op() == 3);
                }
            }
        }
        // The Identify from `active` already holds one slot of this window.
        assert_eq!(
            commands,
            SEND_LIMIT - s.heartbeat_reserve - 1,
            "commands leave the heartbeats' reserve"
        );
        let t = now + secs(1);
        s.handle_text(t, r#"{"op":1,"d":null}"#, 0.5);
        for out in drain(&mut s) {
            if let SessionOutput::Send(f) = out {
                times.push(t);
                beats += usize::from(f.op() == 1);
            }
        }
        assert_eq!(beats, 1, "a heartbeat still fits in the reserve");
        for i in 0..200u64 {
            let t = now + secs(1) + ms(i);
            s.handle_text(t, r#"{"op":1,"d":null}"#, 0.5);
            times.extend(sends(&drain(&mut s)).iter().map(|_| t));
        }
        // Run a few minutes of timers: queued commands drain as the window slides.
        let mut t = now + secs(2);
        while let Some(at) = s.poll_timeout().filter(|&at| at < now + secs(300)) {
            t = t.max(at);
            s.handle_timeout(t);
            times.extend(sends(&drain(&mut s)).iter().map(|_| t));
            s.handle_text(t, &ack(), 0.5);
            drain(&mut s);
        }
        assert!(
            times.len() > SEND_LIMIT,
            "the test must actually press the limit"
        );
        assert!(window_ok(&times), "more than {SEND_LIMIT} sends in 60 s");
    }

    #[test]
    fn commands_are_checked() {
        let now = t0();
        let mut s = session();
        assert_eq!(
            s.send_command(now, 3, json!({})),
            Err(CommandError::NotReady)
        );
        let mut s = active(now);
        for op in [0, 1, 2, 6, 7, 9, 10, 11] {
            assert_eq!(
                s.send_command(now, op, json!({})),
                Err(CommandError::ReservedOpcode { op })
            );
        }
        let big = "x".repeat(MAX_SEND_BYTES);
        assert!(matches!(
            s.send_command(now, 3, json!(big)),
            Err(CommandError::TooLarge { .. })
        ));
        assert_eq!(
            s.send_command(
                now,
                4,
                json!({"guild_id": "1", "channel_id": null, "self_mute": false, "self_deaf": false})
            ),
            Ok(())
        );
        assert_eq!(sends(&drain(&mut s))[0]["op"], 4);
    }

    #[test]
    fn queued_commands_are_dropped_with_their_connection() {
        let now = t0();
        let mut s = active(now);
        let mut accepted = 0;
        while s.send_command(now, 3, json!({})).is_ok() {
            accepted += 1;
        }
        assert_eq!(
            s.send_command(now, 3, json!({})),
            Err(CommandError::QueueFull)
        );
        let sent = sends(&drain(&mut s)).len();
        assert_eq!(accepted, sent + COMMAND_QUEUE_MAX);
        s.handle_closed(now, None, 0.5);
        let outs = drain(&mut s);
        assert_eq!(
            outs[0],
            SessionOutput::CommandsDropped {
                count: COMMAND_QUEUE_MAX
            }
        );
    }

    #[test]
    fn malformed_payloads_are_reported_and_skipped() {
        let now = t0();
        let mut s = active(now);
        let cases: [(&str, PayloadError); 8] = [
            (
                "not json",
                PayloadError::InvalidJson {
                    detail: String::new(),
                },
            ),
            ("[1,2]", PayloadError::NotAnObject),
            (r#"{"d":1}"#, PayloadError::MissingField { field: "op" }),
            (r#"{"op":"0"}"#, PayloadError::WrongType { field: "op" }),
            (
                r#"{"op":0,"s":2,"d":{}}"#,
                PayloadError::MissingField { field: "t" },
            ),
            (
                r#"{"op":0,"t":"X","d":{}}"#,
                PayloadError::MissingField { field: "s" },
            ),
            (
                r#"{"op":0,"t":"X","s":-1}"#,
                PayloadError::WrongType { field: "s" },
            ),
            (r#"{"op":42}"#, PayloadError::UnknownOpcode { op: 42 }),
        ];
        for (text, want) in cases {
            s.handle_text(now, text, 0.5);
            let outs = drain(&mut s);
            match (&outs[..], &want) {
                (
                    [SessionOutput::Malformed(PayloadError::InvalidJson { .. })],
                    PayloadError::InvalidJson { .. },
                ) => {}
                ([SessionOutput::Malformed(got)], want) => assert_eq!(got, want, "{text}"),
                _ => panic!("{text}: {outs:?}"),
            }
        }
        assert_eq!(s.sequence(), Some(1), "bad frames leave the sequence alone");
        s.handle_text(now, &dispatch("MESSAGE_CREATE", 2, json!({"id": "5"})), 0.5);
        assert!(matches!(
            &drain(&mut s)[..],
            [SessionOutput::Dispatch { event, seq: 2, data }] if event == "MESSAGE_CREATE" && data["id"] == "5"
        ));
        assert_eq!(s.state(), SessionState::Active);
    }

    #[test]
    fn hello_without_interval_is_malformed_and_times_out() {
        let now = t0();
        let mut s = session();
        s.start(now);
        s.handle_connected(now);
        drain(&mut s);
        s.handle_text(now, r#"{"op":10,"d":{}}"#, 0.5);
        assert!(matches!(
            drain(&mut s)[..],
            [SessionOutput::Malformed(PayloadError::MissingField { .. })]
        ));
        assert_eq!(s.poll_timeout(), Some(now + HELLO_TIMEOUT));
    }

    #[test]
    fn connect_urls_get_the_query() {
        for (base, want) in [
            (
                "wss://gateway.discord.gg",
                "wss://gateway.discord.gg/?v=10&encoding=json",
            ),
            (
                "wss://gateway.discord.gg/",
                "wss://gateway.discord.gg/?v=10&encoding=json",
            ),
            (
                "wss://gateway.discord.gg/?v=9&encoding=etf",
                "wss://gateway.discord.gg/?v=10&encoding=json",
            ),
            (
                " wss://x.test/gw#frag ",
                "wss://x.test/gw?v=10&encoding=json",
            ),
        ] {
            assert_eq!(connect_url(base), want);
        }
    }

    #[test]
    fn the_token_never_prints() {
        let token = BotToken::new("Bot sekrit.token");
        assert_eq!(token.expose(), "sekrit.token");
        let config = SessionConfig::new(token, GATEWAY);
        assert!(!format!("{config:?}").contains("sekrit"));
        let now = t0();
        let mut s = GatewaySession::new(config);
        s.start(now);
        s.handle_connected(now);
        s.handle_text(now, &hello(INTERVAL_MS), 0.5);
        assert!(
            !format!("{s:?}").contains("sekrit"),
            "queued identify is redacted"
        );
        let outs = drain(&mut s);
        assert!(!format!("{outs:?}").contains("sekrit"));
        assert!(sends(&outs)[0]["d"]["token"] == "sekrit.token");
    }

    #[test]
    fn session_is_send() {
        fn assert_send<T: Send>() {}
        assert_send::<GatewaySession>();
    }

    #[cfg(feature = "fuzzing")]
    #[test]
    fn fuzz_entry_holds_on_samples() {
        for sample in [
            "",
            "{}",
            r#"{"op":9,"d":false}"#,
            r#"{"op":0,"t":"READY","s":2,"d":null}"#,
            "\u{0}",
        ] {
            fuzz_payload(sample);
        }
    }

    /// One step of the property test's random driver.
    #[derive(Debug, Clone)]
    enum Step {
        Advance(u64),
        Timeout,
        Start,
        Connected,
        ConnectFailed(f64),
        Closed(Option<u16>, f64),
        Text(String, f64),
        Commands(u8),
        HeartbeatRequests(u8),
        Shutdown,
    }

    fn frame() -> impl Strategy<Value = String> {
        prop_oneof![
            (0u64..100_000).prop_map(hello),
            Just(ack()),
            Just(r#"{"op":1,"d":null}"#.to_owned()),
            Just(r#"{"op":7,"d":null}"#.to_owned()),
            any::<bool>().prop_map(|b| format!(r#"{{"op":9,"d":{b}}}"#)),
            "[a-z]{1,4}".prop_map(|id| ready(&id)),
            (1u64..1000).prop_map(|s| dispatch("RESUMED", s, json!({}))),
            (0u64..1000).prop_map(|s| dispatch("MESSAGE_CREATE", s, json!({"id": "1"}))),
            (0u64..20, any::<Option<u32>>())
                .prop_map(|(op, s)| json!({"op": op, "s": s, "d": null}).to_string()),
            ".{0,40}",
        ]
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            3 => (0u64..70_000).prop_map(Step::Advance),
            3 => Just(Step::Timeout),
            1 => Just(Step::Start),
            2 => Just(Step::Connected),
            1 => (0.0..1.0f64).prop_map(Step::ConnectFailed),
            1 => (prop::option::of(prop_oneof![3990u16..4020, Just(1000u16), Just(1001)]), 0.0..1.0f64)
                .prop_map(|(c, r)| Step::Closed(c, r)),
            6 => (frame(), 0.0..1.0f64).prop_map(|(f, r)| Step::Text(f, r)),
            1 => (1u8..150).prop_map(Step::Commands),
            1 => (1u8..150).prop_map(Step::HeartbeatRequests),
            1 => Just(Step::Shutdown),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn any_inputs_keep_the_invariants(steps in prop::collection::vec(step(), 1..200)) {
            let t0 = t0();
            let mut now = t0;
            let mut s = session();
            // Send times per connection (a new entry on each Connect).
            let mut connections: Vec<Vec<Instant>> = vec![Vec::new()];
            let mut fatal = false;
            for step in steps {
                match step {
                    Step::Advance(n) => now += ms(n),
                    Step::Timeout => {
                        if let Some(at) = s.poll_timeout() {
                            now = now.max(at);
                        }
                        s.handle_timeout(now);
                        // Otherwise the driver would spin on a deadline that never moves.
                        prop_assert!(
                            s.poll_timeout().is_none_or(|at| at > now),
                            "a timer is still due after handle_timeout"
                        );
                    }
                    Step::Start => s.start(now),
                    Step::Connected => s.handle_connected(now),
                    Step::ConnectFailed(r) => s.handle_connect_failed(now, r),
                    Step::Closed(c, r) => s.handle_closed(now, c, r),
                    Step::Text(f, r) => s.handle_text(now, &f, r),
                    Step::Commands(n) => {
                        for _ in 0..n {
                            let _ = s.send_command(now, 3, json!({}));
                        }
                    }
                    Step::HeartbeatRequests(n) => {
                        for _ in 0..n {
                            s.handle_text(now, r#"{"op":1,"d":null}"#, 0.5);
                        }
                    }
                    Step::Shutdown => s.shutdown(now),
                }
                while let Some(out) = s.poll_output() {
                    match out {
                        SessionOutput::Connect { .. } => {
                            prop_assert!(!fatal, "Connect after Fatal");
                            connections.push(Vec::new());
                        }
                        SessionOutput::Send(_) => {
                            prop_assert!(!fatal, "Send after Fatal");
                            connections.last_mut().unwrap().push(now);
                        }
                        SessionOutput::Fatal { .. } => fatal = true,
                        _ => {}
                    }
                }
                prop_assert!(!fatal || s.poll_timeout().is_none(), "a timer armed after Fatal");
            }
            for times in &connections {
                prop_assert!(window_ok(times), "send limit exceeded: {} sends", times.len());
            }
        }
    }
}
