//! The Discord session driver: one thread drives the protocol's
//! [`GatewaySession`] over a real WebSocket for the life of the process, and
//! turns dispatches into link events with the [`Translator`].
//!
//! The loop is str0m's: drain the session's outputs, sleep in the socket's poller
//! until it is readable or the session's next deadline, feed in what was read or
//! the timeout, repeat. Outputs that are socket work (`Connect`, `Send`, `Close`)
//! happen here; dispatches go through the translator to an [`EventSink`]; the rest
//! is logged and reported to a [`DiscordObserver`].
//!
//! # The translator, the ready snapshot and ordering
//!
//! The translator (which owns the voice cache) is shared behind a mutex with the
//! link server's `ready` callback. A dispatch is translated inside
//! [`EventSink::publish`], which the link server runs under its fan-out lock, the
//! same lock a new edge takes its snapshot under: so an edge's snapshot and the
//! events after it never miss or double a voice change. Lock order is
//! fan-out → translator, everywhere.
//!
//! # Ending
//!
//! A fatal close code (4004 bad token, 4010–4014) stops the thread and is
//! reported once through [`DiscordGateway::fatal`]: the process shows that one
//! line and exits non-zero. [`DiscordGateway::shutdown`] closes with 1000 (the
//! session is over) and joins the thread.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle, Thread};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use log::{debug, error, info, warn};
use parking_lot::{Condvar, Mutex};
use relay_protocol::backoff::BackoffConfig;
use relay_protocol::discord::dispatch::{Skipped, Translated, Translator};
use relay_protocol::discord::rest::{API_BASE, USER_AGENT};
use relay_protocol::discord::session::{
    intents, BotToken, GatewaySession, SessionConfig, SessionOutput, DEFAULT_GATEWAY_URL,
};
use relay_protocol::frame::{GatewayEvent, TraceMeta};
use relay_protocol::payload::{EventBody, VoiceSnapshot};

use crate::clock;
use crate::discord_rest::http_agent;
use crate::link_server::Broadcaster;
use crate::session_store::{LocalSessionStore, SessionStore};
use crate::ws_io::{self, Incoming, Waker, WsConn};

/// Largest gateway message accepted. A GUILD_CREATE of a big guild (channels,
/// roles, emoji, voice members) can pass the link's 1 MiB; Discord itself has no
/// documented maximum, so this only stops a runaway peer.
pub const MAX_DISCORD_MESSAGE_BYTES: usize = 16 * 1024 * 1024;
/// The close code of [`DiscordGateway::hand_over`]: any code but 1000/1001
/// keeps the session resumable on Discord's side.
pub const HAND_OVER_CLOSE_CODE: u16 = 4000;
/// Default time to open a gateway connection (TCP + TLS + upgrade).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The translator shared by the driver and the link server's `ready` callback.
pub type SharedTranslator = Arc<Mutex<Translator>>;

/// A new translator for `guild_filter` (`DISCORD_GUILD_ID`), ready to share.
pub fn shared_translator(guild_filter: Option<String>) -> SharedTranslator {
    let mut translator = Translator::new(guild_filter);
    // Window revisions start at the process's start time in µs, above any a
    // gateway before it (this one restarted, or a standby's predecessor) gave
    // out, so a page read from it never seems to count a later event.
    translator
        .history_mut()
        .raise_rev(clock::unix_ms().saturating_mul(1000));
    Arc::new(Mutex::new(translator))
}

/// Where translated events go (the link server's fan-out).
pub trait EventSink: Send + Sync + 'static {
    /// Runs `translate` and publishes the events it returns, in order. If new
    /// subscribers take a snapshot of translator state, `translate` must run under
    /// the same lock, so a subscriber sees each change either in its snapshot or
    /// as an event, never both or neither.
    fn publish(&self, translate: &mut dyn FnMut() -> Vec<GatewayEvent>);
}

/// The link server's fan-out: events are translated under its lock, the lock each
/// new edge takes its `ready` snapshot under.
impl EventSink for Broadcaster {
    fn publish(&self, translate: &mut dyn FnMut() -> Vec<GatewayEvent>) {
        self.broadcast_all_with(translate);
    }
}

/// An [`EventSink`] from a closure called once per event (tests, logging).
pub struct FnSink<F>(pub F);

impl<F: Fn(GatewayEvent) + Send + Sync + 'static> EventSink for FnSink<F> {
    fn publish(&self, translate: &mut dyn FnMut() -> Vec<GatewayEvent>) {
        for event in translate() {
            (self.0)(event);
        }
    }
}

/// Hears what the session does, for metrics. Every method has a no-op default.
pub trait DiscordObserver: Send + Sync + 'static {
    /// A dispatch arrived (`t`, e.g. `MESSAGE_CREATE`).
    fn on_dispatch(&self, _event: &str) {}
    /// A dispatch relay handles was dropped unread: a field missing or of the
    /// wrong type. Already logged; this is for counting.
    fn on_dispatch_skipped(&self, _skipped: &Skipped) {}
    /// A heartbeat was acknowledged after `latency`.
    fn on_heartbeat_ack(&self, _latency: Duration) {}
    /// The session is up (READY or RESUMED: `true`) or down (`false`). Called
    /// under the status lock, so whoever sees the new [`DiscordStatus`] (or
    /// returns from [`DiscordGateway::wait_connected`]) sees what the observer
    /// made of it; keep it quick and do not call back into the driver.
    fn on_connected(&self, _up: bool) {}
    /// A reconnect was scheduled.
    fn on_reconnect(&self, _resume: bool) {}
}

/// An observer that hears nothing.
pub struct NoObserver;
impl DiscordObserver for NoObserver {}

/// Why the gateway stopped for good.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FatalError {
    /// Discord closed the session with a code that retrying cannot fix.
    Closed {
        /// The close code (4004, 4010–4014).
        code: u16,
        /// What it means and what to do.
        reason: &'static str,
    },
    /// `GET /gateway/bot` answered 401: the token is wrong.
    Unauthorized,
}

impl fmt::Display for FatalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FatalError::Closed { code: 4004, .. } | FatalError::Unauthorized => f.write_str(
                "Discord rejected the bot token (4004); check DISCORD_BOT_TOKEN (it may have been reset)",
            ),
            FatalError::Closed { reason, .. } => write!(f, "Discord closed the gateway: {reason}"),
        }
    }
}

impl std::error::Error for FatalError {}

/// What the Discord driver needs.
#[derive(Clone)]
pub struct DiscordConfig {
    /// `DISCORD_BOT_TOKEN`.
    pub token: BotToken,
    /// `DISCORD_API_BASE`, for `GET /gateway/bot`.
    pub api_base: String,
    /// `DISCORD_GATEWAY_URL`; `None` asks `GET /gateway/bot`.
    pub gateway_url: Option<String>,
    /// Gateway intents ([`intents::DEFAULT`]).
    pub intents: u64,
    /// Reconnect schedule (tests shorten it).
    pub backoff: BackoffConfig,
    /// Time to open one connection.
    pub connect_timeout: Duration,
    /// Where the resumable session is kept ([`LocalSessionStore`]: in this
    /// driver only). A stored session is resumed at start.
    pub store: Arc<dyn SessionStore>,
}

impl DiscordConfig {
    /// Real Discord with relay's defaults.
    pub fn new(token: BotToken) -> Self {
        DiscordConfig {
            token,
            api_base: API_BASE.to_owned(),
            gateway_url: None,
            intents: intents::DEFAULT,
            backoff: BackoffConfig::default(),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            store: Arc::new(LocalSessionStore),
        }
    }
}

impl fmt::Debug for DiscordConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DiscordConfig")
            .field("token", &self.token)
            .field("api_base", &self.api_base)
            .field("gateway_url", &self.gateway_url)
            .field("intents", &self.intents)
            .field("backoff", &self.backoff)
            .field("connect_timeout", &self.connect_timeout)
            .finish_non_exhaustive()
    }
}

/// Asks Discord where to connect (`GET /gateway/bot`, reference/discord.md §1).
/// A 401 is fatal; any other failure falls back to Discord's well-known URL with a
/// warning, since the session retries connecting anyway.
pub fn fetch_gateway_url(
    api_base: &str,
    token: &BotToken,
    timeout: Duration,
) -> Result<String, FatalError> {
    let url = format!("{}/gateway/bot", api_base.trim_end_matches('/'));
    let agent = http_agent(timeout);
    let answer = agent
        .get(&url)
        .header("Authorization", &format!("Bot {}", token.expose()))
        .header("User-Agent", USER_AGENT)
        .call();
    let mut response = match answer {
        Ok(r) => r,
        Err(e) => {
            warn!("discord: GET /gateway/bot failed ({e}); using {DEFAULT_GATEWAY_URL}");
            return Ok(DEFAULT_GATEWAY_URL.to_owned());
        }
    };
    match response.status().as_u16() {
        200 => {}
        401 => return Err(FatalError::Unauthorized),
        s => {
            warn!("discord: GET /gateway/bot answered HTTP {s}; using {DEFAULT_GATEWAY_URL}");
            return Ok(DEFAULT_GATEWAY_URL.to_owned());
        }
    }
    let body = response
        .body_mut()
        .with_config()
        .limit(64 * 1024)
        .read_to_vec()
        .unwrap_or_default();
    let parsed: Option<serde_json::Value> = serde_json::from_slice(&body).ok();
    let gateway = parsed.as_ref().and_then(|v| v.get("url")?.as_str());
    match gateway {
        Some(u) if u.starts_with("wss://") || u.starts_with("ws://") => {
            if let Some(limit) = parsed.as_ref().and_then(|v| v.get("session_start_limit")) {
                info!(
                    "discord: gateway {u}; identifies left today: {}",
                    limit.get("remaining").unwrap_or(&serde_json::Value::Null)
                );
            }
            Ok(u.to_owned())
        }
        _ => {
            warn!("discord: GET /gateway/bot gave no usable url; using {DEFAULT_GATEWAY_URL}");
            Ok(DEFAULT_GATEWAY_URL.to_owned())
        }
    }
}

/// The session's state as the rest of the process sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DiscordStatus {
    /// READY or RESUMED received on the current connection.
    pub connected: bool,
    /// The gateway session id, while one exists.
    pub session_id: Option<String>,
    /// The last sequence number received.
    pub sequence: Option<u64>,
    /// The bot's user id, from READY.
    pub user_id: Option<String>,
}

struct Shared {
    stop: AtomicBool,
    /// With `stop`: leave the session resumable for another process.
    hand_over: AtomicBool,
    waker: Mutex<Option<Waker>>,
    thread: Mutex<Option<Thread>>,
    status: Mutex<DiscordStatus>,
    /// Notified whenever `status.connected` changes or the session ends.
    status_changed: Condvar,
    fatal: Mutex<Option<FatalError>>,
}

impl Shared {
    fn wake(&self) {
        if let Some(w) = self.waker.lock().as_ref() {
            w.wake();
        }
        if let Some(t) = self.thread.lock().as_ref() {
            t.unpark();
        }
    }
}

/// The running Discord driver.
pub struct DiscordGateway {
    shared: Arc<Shared>,
    translator: SharedTranslator,
    fatal_rx: Receiver<FatalError>,
    thread: Option<JoinHandle<()>>,
}

impl DiscordGateway {
    /// Resolves the gateway URL (`GET /gateway/bot` unless overridden) and starts
    /// the driver thread. Dispatches are translated by `translator` (share it with
    /// the link server's `ready`) and published to `sink`.
    pub fn start(
        config: DiscordConfig,
        translator: SharedTranslator,
        sink: Arc<dyn EventSink>,
        observer: Arc<dyn DiscordObserver>,
    ) -> Result<DiscordGateway, FatalError> {
        let gateway_url = match &config.gateway_url {
            Some(u) => u.clone(),
            None => fetch_gateway_url(&config.api_base, &config.token, config.connect_timeout)?,
        };
        let mut session_config = SessionConfig::new(config.token.clone(), gateway_url.clone());
        session_config.intents = config.intents;
        session_config.backoff = config.backoff;
        let mut session = GatewaySession::new(session_config);
        if let Some(stored) = config.store.load() {
            info!(
                "discord: resuming stored session {} at sequence {}",
                stored.session_id,
                stored.seq.unwrap_or(0)
            );
            session.restore(stored.session_id, stored.resume_url, stored.seq);
        }
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            hand_over: AtomicBool::new(false),
            waker: Mutex::new(None),
            thread: Mutex::new(None),
            status: Mutex::new(DiscordStatus::default()),
            status_changed: Condvar::new(),
            fatal: Mutex::new(None),
        });
        let (fatal_tx, fatal_rx) = crossbeam_channel::bounded(1);
        let driver = Driver {
            session,
            store: config.store.clone(),
            conn: None,
            connect_timeout: config.connect_timeout,
            shared: shared.clone(),
            translator: translator.clone(),
            sink,
            observer,
            fatal_tx,
        };
        info!(
            "discord: connecting to {gateway_url} (intents {})",
            config.intents
        );
        let thread = thread::Builder::new()
            .name("relay-discord".into())
            .spawn(move || driver.run())
            .map_err(|_| FatalError::Closed {
                code: 0,
                reason: "the Discord driver thread could not be started",
            })?;
        *shared.thread.lock() = Some(thread.thread().clone());
        Ok(DiscordGateway {
            shared,
            translator,
            fatal_rx,
            thread: Some(thread),
        })
    }

    /// Who is in which voice channel now (for a `ready` frame).
    pub fn voice_snapshot(&self) -> VoiceSnapshot {
        self.translator.lock().voice_snapshot()
    }

    /// The shared translator.
    pub fn translator(&self) -> &SharedTranslator {
        &self.translator
    }

    /// The session's state now.
    pub fn status(&self) -> DiscordStatus {
        self.shared.status.lock().clone()
    }

    /// Waits until the session is up (READY or RESUMED); false on timeout or if
    /// the session stopped for good.
    pub fn wait_connected(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut status = self.shared.status.lock();
        while !status.connected {
            if self.shared.fatal.lock().is_some()
                || self
                    .shared
                    .status_changed
                    .wait_until(&mut status, deadline)
                    .timed_out()
            {
                return status.connected;
            }
        }
        true
    }

    /// Receives the [`FatalError`] once, when the session stops for good.
    pub fn fatal(&self) -> &Receiver<FatalError> {
        &self.fatal_rx
    }

    /// The fatal error, if the session stopped for good.
    pub fn fatal_error(&self) -> Option<FatalError> {
        self.shared.fatal.lock().clone()
    }

    /// Closes the session with 1000 and waits for the thread.
    pub fn shutdown(mut self) {
        self.stop();
    }

    /// Stops talking to Discord at once but leaves the session resumable
    /// (closes with 4000, which Discord does not take as the session's end),
    /// so another gateway can RESUME it (CONTRACT.md §10). Waits for the thread.
    pub fn hand_over(mut self) {
        self.shared.hand_over.store(true, Ordering::SeqCst);
        self.stop();
    }

    fn stop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.wake();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for DiscordGateway {
    fn drop(&mut self) {
        self.stop();
    }
}

struct Driver {
    session: GatewaySession,
    store: Arc<dyn SessionStore>,
    conn: Option<WsConn>,
    connect_timeout: Duration,
    shared: Arc<Shared>,
    translator: SharedTranslator,
    sink: Arc<dyn EventSink>,
    observer: Arc<dyn DiscordObserver>,
    fatal_tx: Sender<FatalError>,
}

/// What the loop should do after draining.
#[derive(PartialEq, Eq)]
enum Flow {
    Continue,
    Stop,
}

impl Driver {
    fn run(mut self) {
        self.session.start(Instant::now());
        loop {
            if self.shared.stop.load(Ordering::SeqCst) {
                if self.shared.hand_over.load(Ordering::SeqCst) {
                    if let Some(mut conn) = self.conn.take() {
                        conn.close(HAND_OVER_CLOSE_CODE, "relay handing over");
                    }
                    self.set_connected(false);
                    info!("discord: session left resumable for the next gateway");
                    return;
                }
                self.session.shutdown(Instant::now());
                let _ = self.drain();
                if let Some(mut conn) = self.conn.take() {
                    conn.close(1000, "relay shutting down");
                }
                info!("discord: session closed");
                return;
            }
            self.session.handle_timeout(Instant::now());
            if self.drain() == Flow::Stop {
                return;
            }
            // Read before sleeping: frames that arrived with the upgrade answer
            // (Hello, often) sit in tungstenite's buffer, where no readiness
            // event will ever announce them.
            if self.conn.is_some() && self.read_all() == Flow::Stop {
                return;
            }
            let timeout = self
                .session
                .poll_timeout()
                .map(|t| t.saturating_duration_since(Instant::now()));
            match self.conn.as_mut() {
                Some(conn) => {
                    if let Err(e) = conn.wait(timeout) {
                        warn!("discord: socket poll failed: {e}");
                        self.lost(None);
                    }
                }
                None => thread::park_timeout(timeout.unwrap_or(Duration::from_secs(1))),
            }
        }
    }

    fn read_all(&mut self) -> Flow {
        loop {
            let Some(conn) = self.conn.as_mut() else {
                return Flow::Continue;
            };
            match conn.read() {
                Ok(None) => return Flow::Continue,
                Ok(Some(Incoming::Text(text))) => {
                    self.session
                        .handle_text(Instant::now(), &text, rand::random::<f64>());
                    if self.drain() == Flow::Stop {
                        return Flow::Stop;
                    }
                }
                Ok(Some(Incoming::Pong(_))) => {}
                Ok(Some(Incoming::Closed(code))) => {
                    match code {
                        Some(c) => info!("discord: gateway closed the connection with {c}"),
                        None => info!("discord: gateway dropped the connection"),
                    }
                    self.lost(code);
                    return self.drain();
                }
                Err(e) => {
                    warn!("discord: read failed: {e}");
                    self.lost(None);
                    return self.drain();
                }
            }
        }
    }

    /// The connection is gone without our asking.
    fn lost(&mut self, code: Option<u16>) {
        self.conn = None;
        *self.shared.waker.lock() = None;
        self.set_connected(false);
        self.session
            .handle_closed(Instant::now(), code, rand::random::<f64>());
    }

    fn drain(&mut self) -> Flow {
        while let Some(output) = self.session.poll_output() {
            match output {
                SessionOutput::Connect { url } => self.connect(&url),
                SessionOutput::Send(frame) => {
                    let op = frame.op();
                    if let Some(conn) = self.conn.as_mut() {
                        if let Err(e) = conn.send_text(frame.into_string()) {
                            warn!("discord: sending op {op} failed: {e}");
                            self.lost(None);
                        }
                    }
                }
                SessionOutput::Close { code } => {
                    // The session already counts this connection as gone.
                    if let Some(mut conn) = self.conn.take() {
                        conn.close(code, "");
                    }
                    *self.shared.waker.lock() = None;
                    self.set_connected(false);
                }
                SessionOutput::Dispatch { event, seq, data } => {
                    self.observer.on_dispatch(&event);
                    self.shared.status.lock().sequence = Some(seq);
                    self.publish(&event, &data);
                    // After publishing: a crash in between makes Discord replay
                    // this one to the next gateway rather than lose it.
                    self.store.on_sequence(seq);
                }
                SessionOutput::Ready {
                    session_id,
                    user_id,
                } => {
                    info!(
                        "discord: READY, session {session_id}, bot user {user_id}, heartbeat every {} ms",
                        self.session.heartbeat_interval().map_or(0, |d| d.as_millis())
                    );
                    self.store.on_ready(
                        &session_id,
                        self.session.resume_gateway_url(),
                        self.session.sequence().unwrap_or(0),
                    );
                    {
                        let mut status = self.shared.status.lock();
                        status.session_id = Some(session_id);
                        status.user_id = Some(user_id);
                    }
                    self.set_connected(true);
                }
                SessionOutput::Resumed => {
                    info!(
                        "discord: RESUMED session {} at sequence {}",
                        self.session.session_id().unwrap_or("?"),
                        self.session.sequence().unwrap_or(0)
                    );
                    self.set_connected(true);
                }
                SessionOutput::HeartbeatAck { latency } => {
                    debug!("discord: heartbeat ACK after {} ms", latency.as_millis());
                    self.observer.on_heartbeat_ack(latency);
                }
                SessionOutput::Reconnecting { delay, resume } => {
                    self.set_connected(false);
                    info!(
                        "discord: reconnecting in {} ms to {} session",
                        delay.as_millis(),
                        if resume { "resume the" } else { "start a new" }
                    );
                    self.observer.on_reconnect(resume);
                }
                SessionOutput::SessionInvalidated => {
                    self.store.on_invalidated();
                    if !self.shared.stop.load(Ordering::SeqCst) {
                        info!("discord: session invalidated; the next one identifies anew");
                    }
                    let mut status = self.shared.status.lock();
                    status.session_id = None;
                    status.sequence = None;
                }
                SessionOutput::CommandsDropped { count } => {
                    debug!("discord: {count} gateway commands dropped with their connection");
                }
                SessionOutput::Malformed(e) => warn!("discord: payload skipped: {e}"),
                SessionOutput::Fatal { code, reason } => {
                    let fatal = FatalError::Closed { code, reason };
                    error!("discord: {fatal}");
                    self.conn = None;
                    *self.shared.waker.lock() = None;
                    self.set_connected(false);
                    {
                        // Under the status lock, so a waiter cannot miss it.
                        let _status = self.shared.status.lock();
                        *self.shared.fatal.lock() = Some(fatal.clone());
                        self.shared.status_changed.notify_all();
                    }
                    let _ = self.fatal_tx.try_send(fatal);
                    return Flow::Stop;
                }
                other => debug!("discord: {other:?}"),
            }
        }
        if let Some(conn) = self.conn.as_mut() {
            if let Err(e) = conn.flush() {
                warn!("discord: flush failed: {e}");
                self.lost(None);
                return self.drain();
            }
        }
        Flow::Continue
    }

    fn publish(&self, event: &str, data: &serde_json::Value) {
        let translator = &self.translator;
        self.sink.publish(&mut || {
            let (translated, rev) = {
                let mut t = translator.lock();
                let translated = t.handle_dispatch(event, data);
                if let Some(skipped) = t.take_guild_error() {
                    warn!("discord: permission model of {skipped}; its voice states were read");
                }
                (translated, t.history().rev())
            };
            match translated {
                Translated::Events(bodies) => bodies
                    .into_iter()
                    .map(|body| {
                        let is_message_event = body.is_message_event();
                        let mut ev = wrap(body);
                        // Every event of one dispatch gets the revision after
                        // all of them: no history answer is read in between.
                        if is_message_event {
                            ev.meta.extra.get_mut().rev = Some(rev);
                        }
                        ev
                    })
                    .collect(),
                Translated::Skipped(skipped) => {
                    warn!("discord: {skipped}");
                    self.observer.on_dispatch_skipped(&skipped);
                    Vec::new()
                }
                Translated::Filtered | Translated::Unhandled => Vec::new(),
            }
        });
    }

    fn set_connected(&self, up: bool) {
        let mut status = self.shared.status.lock();
        if status.connected != up {
            status.connected = up;
            // Under the lock: a readiness probe fed by the observer must never
            // lag the status a waiter was woken by.
            self.observer.on_connected(up);
            drop(status);
            self.shared.status_changed.notify_all();
        }
    }

    fn connect(&mut self, url: &str) {
        let config = ws_io::ws_config()
            .max_message_size(Some(MAX_DISCORD_MESSAGE_BYTES))
            .max_frame_size(Some(MAX_DISCORD_MESSAGE_BYTES));
        match ws_io::connect_with_config(url, &[], self.connect_timeout, config) {
            Ok(conn) => {
                debug!("discord: connected to {url}");
                *self.shared.waker.lock() = Some(conn.waker());
                self.conn = Some(conn);
                self.session.handle_connected(Instant::now());
            }
            Err(e) => {
                warn!("discord: connecting to {url} failed: {e}");
                self.session
                    .handle_connect_failed(Instant::now(), rand::random::<f64>());
            }
        }
    }
}

/// A translated event as a link frame: fresh trace id, sent now.
pub fn wrap(body: EventBody) -> GatewayEvent {
    GatewayEvent {
        body,
        meta: TraceMeta {
            trace_id: clock::new_trace_id(),
            sent_at: clock::now_rfc3339(),
            request_id: None,
            actor: None,
            access: None,
            extra: Default::default(),
        },
    }
}
