//! A simulated Discord on loopback: the subset of Gateway v10 (WebSocket) and
//! REST v10 (HTTP) that relay uses, with controls for tests and a "demo" mode that
//! plays a lively guild without credentials (`relay demo`).
//!
//! | file | owns |
//! |---|---|
//! | `mod.rs` | [`SimDiscord`], its config and control API, the shared state, ids and clocks |
//! | `gateway.rs` | the WebSocket server: hello, identify, resume, heartbeats, sessions, close codes |
//! | `rest.rs` | the HTTP server under `/api/v10`: routes, auth, rate-limit buckets, recording |
//! | `oauth.rs` | OAuth2 on the same port: the authorize page at `/oauth2/authorize`, `/api/v10/oauth2/token`, `/api/v10/users/@me` |
//! | `guild.rs` | the guild model and the JSON shapes Discord gives it |
//! | `demo.rs` | the background player of demo mode |
//!
//! What it simulates, and where it is simpler than Discord:
//! - The gateway wants `?v=10&encoding=json`: another or missing `v` closes with 4012;
//!   another or missing `encoding`, or any `compress`, closes with 4002 (only plain JSON is spoken).
//! - READY's `resume_gateway_url` is the gateway URL with the path `/resume`, so a test
//!   can see in [`SimDiscord::connection_urls`] that a client resumed there.
//! - Sessions live as long as the simulator (Discord's "a few minutes" is not timed), each
//!   keeps its last [`SimConfig::resume_history`] dispatches; at most 64 detached sessions
//!   are kept. A client close with 1000/1001 ends its session, as on Discord; a close
//!   frame without a code, any other code, or a bare TCP drop keeps it resumable.
//! - Events are filtered by intents as Discord does (MESSAGE_CREATE needs GUILD_MESSAGES …);
//!   without MESSAGE_CONTENT, message `content` is `""` except in the bot's own messages
//!   and messages mentioning it. Privileged intents not in
//!   [`SimConfig::allowed_privileged_intents`] close with 4014.
//! - A message with `enforce_nonce: true` and a `nonce` that its author used in the
//!   last [`NONCE_WINDOW`] is not made again: the first one is returned and nothing
//!   is dispatched, as Discord documents.
//! - Not simulated: the server closing on missed heartbeats, identify concurrency limits
//!   (max_concurrency), transport or payload compression, ETF, sharding, DMs.
//! - The guild ([`ids`]) is the same in every run: "Relay Demo" with `#general`,
//!   `#game-room`, voice "Lobby" and "Raid", the bot and five [`demo_users`]; Linus and
//!   Grace start in "Lobby". Demo mode only adds the background activity.
//! - All threads block on sockets or channels; [`SimDiscord::shutdown`] (or drop) joins them.

mod demo;
mod gateway;
mod guild;
mod oauth;
mod rest;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, Sender};
use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

pub use guild::{demo_users, ids, DemoUser, BOT_NAME, GUILD_NAME};
pub use oauth::{SimOAuthApp, DEMO_CLIENT_ID};
pub use rest::{AuditEntry, RecordedRequest};

/// Discord's epoch (2015-01-01T00:00:00Z) in Unix milliseconds.
pub const DISCORD_EPOCH_MS: u64 = 1_420_070_400_000;

/// One REST rate-limit bucket: `limit` requests per fixed `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Requests allowed per window.
    pub limit: u32,
    /// Window length; it starts at the first request after the previous one ended.
    pub window: Duration,
}

impl RateLimit {
    /// `limit` requests per `window`.
    pub const fn new(limit: u32, window: Duration) -> Self {
        RateLimit { limit, window }
    }
}

/// The per-route buckets (each is per major resource: channel or guild).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimits {
    /// `POST /channels/{c}/messages`, per channel. Default 5 per 5 s.
    pub messages: RateLimit,
    /// `PUT …/reactions/{emoji}/@me`, per channel. Default 1 per 250 ms, as Discord.
    pub reactions: RateLimit,
    /// `POST /channels/{c}/typing`, per channel. Default 5 per 5 s.
    pub typing: RateLimit,
    /// `PATCH /guilds/{g}/members/{u}`, per guild. Default 10 per 10 s.
    pub members: RateLimit,
    /// `GET /gateway/bot` and `GET /gateway`. Default 10 per 5 s.
    pub gateway: RateLimit,
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits {
            messages: RateLimit::new(5, Duration::from_secs(5)),
            reactions: RateLimit::new(1, Duration::from_millis(250)),
            typing: RateLimit::new(5, Duration::from_secs(5)),
            members: RateLimit::new(10, Duration::from_secs(10)),
            gateway: RateLimit::new(10, Duration::from_secs(5)),
        }
    }
}

/// How a [`SimDiscord`] behaves. `SimConfig::default()` is a quiet guild for tests.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// The bot token the simulator accepts (`Authorization: Bot <token>`, Identify `token`).
    pub token: String,
    /// Hello's `heartbeat_interval`. Default 41 250 ms; tests use a few hundred ms.
    pub heartbeat_interval: Duration,
    /// Play a lively guild in the background (chat, typing, reactions, voice moves).
    pub demo: bool,
    /// Seed of every random choice (demo script, session ids).
    pub seed: u64,
    /// Demo mode: the pause between two demo actions is drawn from this range.
    /// Default 1–3 s.
    pub demo_interval: (Duration, Duration),
    /// Dispatches kept per session for resume. Default 1000.
    pub resume_history: usize,
    /// Privileged intents the "Developer Portal" has switched on (others close with
    /// 4014). Default all three: GUILD_MEMBERS, GUILD_PRESENCES, MESSAGE_CONTENT.
    pub allowed_privileged_intents: u64,
    /// Per-route REST buckets.
    pub rate_limits: RateLimits,
    /// Global REST limit, requests per second. Default 50.
    pub global_limit_per_sec: u32,
    /// `retry_after` of 429s made by [`SimDiscord::force_429`]. Default 250 ms.
    pub forced_retry_after: Duration,
    /// The OAuth2 application Sign in with Discord uses.
    pub oauth: SimOAuthApp,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            token: "sim-bot-token".to_owned(),
            heartbeat_interval: Duration::from_millis(41_250),
            demo: false,
            seed: 1,
            demo_interval: (Duration::from_secs(1), Duration::from_secs(3)),
            resume_history: 1000,
            allowed_privileged_intents: intents::PRIVILEGED,
            rate_limits: RateLimits::default(),
            global_limit_per_sec: 50,
            forced_retry_after: Duration::from_millis(250),
            oauth: SimOAuthApp::default(),
        }
    }
}

impl SimConfig {
    /// The configuration `relay demo` uses: demo mode on, with `seed`.
    pub fn demo(seed: u64) -> Self {
        SimConfig {
            demo: true,
            seed,
            ..SimConfig::default()
        }
    }
}

/// Gateway intent bits the simulator knows.
pub mod intents {
    /// GUILDS.
    pub const GUILDS: u64 = 1 << 0;
    /// GUILD_MEMBERS (privileged).
    pub const GUILD_MEMBERS: u64 = 1 << 1;
    /// GUILD_VOICE_STATES.
    pub const GUILD_VOICE_STATES: u64 = 1 << 7;
    /// GUILD_PRESENCES (privileged).
    pub const GUILD_PRESENCES: u64 = 1 << 8;
    /// GUILD_MESSAGES.
    pub const GUILD_MESSAGES: u64 = 1 << 9;
    /// GUILD_MESSAGE_REACTIONS.
    pub const GUILD_MESSAGE_REACTIONS: u64 = 1 << 10;
    /// GUILD_MESSAGE_TYPING.
    pub const GUILD_MESSAGE_TYPING: u64 = 1 << 11;
    /// MESSAGE_CONTENT (privileged).
    pub const MESSAGE_CONTENT: u64 = 1 << 15;
    /// The three privileged intents.
    pub const PRIVILEGED: u64 = GUILD_MEMBERS | GUILD_PRESENCES | MESSAGE_CONTENT;
    /// Every bit Discord defines (0–16, 20, 21, 24, 25); others close with 4013.
    pub const VALID: u64 = ((1 << 17) - 1) | (1 << 20) | (1 << 21) | (1 << 24) | (1 << 25);
    /// What relay asks for: 36481.
    pub const RELAY: u64 = GUILDS
        | GUILD_VOICE_STATES
        | GUILD_MESSAGES
        | GUILD_MESSAGE_REACTIONS
        | GUILD_MESSAGE_TYPING
        | MESSAGE_CONTENT;
}

/// One dispatch as the simulator sent it (full data, before intent filtering).
#[derive(Debug, Clone, PartialEq)]
pub struct SimEvent {
    /// The event name (`t`), e.g. `MESSAGE_CREATE`.
    pub name: String,
    /// The event data (`d`).
    pub data: Value,
}

/// State shared by every simulator thread.
struct Shared {
    config: SimConfig,
    gateway_url: String,
    resume_url: String,
    api_base: String,
    started: Instant,
    state: Mutex<State>,
    rest: Mutex<rest::RestState>,
    oauth: Mutex<oauth::OAuthState>,
    ack_heartbeats: AtomicBool,
    stopping: AtomicBool,
    conn_threads: Mutex<Vec<JoinHandle<()>>>,
}

/// The world behind one lock: guild, gateway sessions and connections, randomness
/// and ids. One lock keeps "change the guild, then dispatch" atomic for identify.
struct State {
    guild: guild::Guild,
    gw: gateway::GatewayState,
    rng: StdRng,
    last_id: u64,
    subscribers: Vec<Sender<SimEvent>>,
    history_cap: usize,
    /// Messages made with `enforce_nonce`, by (author, nonce), with when (unix ms).
    nonces: HashMap<(String, String), (Value, u64)>,
}

/// How long a message `nonce` with `enforce_nonce` is remembered ("the past few
/// minutes" in Discord's docs).
pub const NONCE_WINDOW: Duration = Duration::from_secs(5 * 60);

impl State {
    /// A fresh, time-based snowflake, strictly greater than the previous one.
    fn next_id(&mut self) -> String {
        let id = snowflake_at(unix_ms(), 0).max(self.last_id + 1);
        self.last_id = id;
        id.to_string()
    }

    fn random_hex32(&mut self) -> String {
        format!("{:032x}", self.rng.random::<u128>())
    }

    /// Sends an event to every session (filtered by its intents) and to subscribers.
    fn dispatch(&mut self, name: &str, data: Value) {
        self.gw.dispatch_all(name, &data, self.history_cap);
        let event = SimEvent {
            name: name.to_owned(),
            data,
        };
        self.subscribers.retain(|s| s.send(event.clone()).is_ok());
    }

    /// Posts a message as `author_id`; returns the REST message object, or `None`
    /// for an unknown user or channel.
    fn create_message(
        &mut self,
        author_id: &str,
        channel_id: &str,
        content: &str,
    ) -> Option<Value> {
        let id = self.next_id();
        let author = self.guild.user(author_id)?.clone();
        self.guild.channel(channel_id)?;
        let message =
            self.guild
                .message_json(&id, channel_id, &author, content, &rfc3339(unix_ms()));
        self.guild.remember(guild::StoredMessage {
            id,
            channel_id: channel_id.to_owned(),
            author_id: author_id.to_owned(),
        });
        let d = self.guild.message_create(&message, &author);
        self.dispatch("MESSAGE_CREATE", d);
        Some(message)
    }

    /// Like [`State::create_message`], but a `nonce` the author used within
    /// [`NONCE_WINDOW`] returns the first message and makes none.
    fn create_message_once(
        &mut self,
        author_id: &str,
        channel_id: &str,
        content: &str,
        nonce: &str,
    ) -> Option<Value> {
        let now = unix_ms();
        let window = NONCE_WINDOW.as_millis() as u64;
        self.nonces
            .retain(|_, (_, at)| now.saturating_sub(*at) < window);
        let key = (author_id.to_owned(), nonce.to_owned());
        if let Some((message, _)) = self.nonces.get(&key) {
            return Some(message.clone());
        }
        let mut message = self.create_message(author_id, channel_id, content)?;
        message["nonce"] = Value::String(nonce.to_owned());
        self.nonces.insert(key, (message.clone(), now));
        Some(message)
    }

    /// `user_id` reacts with an already-parsed emoji object (`{id, name}`).
    fn add_reaction(&mut self, user_id: &str, channel_id: &str, message_id: &str, emoji: Value) {
        let Some(user) = self.guild.user(user_id).cloned() else {
            return;
        };
        let mut d = self.guild.guild_member_fields(&user);
        d.insert("user_id".into(), json!(user_id));
        d.insert("channel_id".into(), json!(channel_id));
        d.insert("message_id".into(), json!(message_id));
        d.insert("emoji".into(), emoji);
        d.insert("burst".into(), json!(false));
        d.insert("burst_colors".into(), json!([]));
        d.insert("type".into(), json!(0));
        if let Some(m) = self.guild.message(message_id) {
            d.insert("message_author_id".into(), json!(m.author_id));
        }
        self.dispatch("MESSAGE_REACTION_ADD", Value::Object(d));
    }

    fn typing(&mut self, user_id: &str, channel_id: &str) {
        let Some(user) = self.guild.user(user_id).cloned() else {
            return;
        };
        let mut d = self.guild.guild_member_fields(&user);
        d.insert("user_id".into(), json!(user_id));
        d.insert("channel_id".into(), json!(channel_id));
        d.insert("timestamp".into(), json!(unix_ms() / 1000));
        self.dispatch("TYPING_START", Value::Object(d));
    }

    /// Moves a user into a voice channel or out of voice; dispatches the new state.
    /// Returns whether anything changed.
    fn set_voice(&mut self, user_id: &str, channel_id: Option<&str>) -> bool {
        let session = self.random_hex32();
        match self.guild.set_voice(user_id, channel_id, || session) {
            Some(d) => {
                self.dispatch("VOICE_STATE_UPDATE", d);
                true
            }
            None => false,
        }
    }
}

/// A running simulated Discord. Every method takes `&self` and is thread-safe;
/// dropping it shuts it down like [`SimDiscord::shutdown`].
pub struct SimDiscord {
    shared: Arc<Shared>,
    gateway_addr: SocketAddr,
    rest_server: Option<Arc<tiny_http::Server>>,
    threads: Vec<JoinHandle<()>>,
    demo_stop: Option<Sender<()>>,
}

impl SimDiscord {
    /// Binds the gateway and the REST server on `127.0.0.1:0` and starts serving.
    pub fn start(config: SimConfig) -> io::Result<SimDiscord> {
        let listener = TcpListener::bind(("127.0.0.1", 0))?;
        let gateway_addr = listener.local_addr()?;
        let rest_server = tiny_http::Server::http(("127.0.0.1", 0))
            .map_err(|e| io::Error::other(format!("REST server: {e}")))?;
        let rest_port = rest_server
            .server_addr()
            .to_ip()
            .map(|a| a.port())
            .ok_or_else(|| io::Error::other("REST server has no IP address"))?;
        let rest_server = Arc::new(rest_server);
        let gateway_url = format!("ws://{gateway_addr}");
        let shared = Arc::new(Shared {
            resume_url: format!("{gateway_url}/resume"),
            gateway_url,
            api_base: format!("http://127.0.0.1:{rest_port}/api/v10"),
            started: Instant::now(),
            state: Mutex::new(State {
                guild: guild::Guild::new(),
                gw: gateway::GatewayState::default(),
                rng: StdRng::seed_from_u64(config.seed),
                last_id: 0,
                subscribers: Vec::new(),
                history_cap: config.resume_history.max(1),
                nonces: HashMap::new(),
            }),
            rest: Mutex::new(rest::RestState::default()),
            oauth: Mutex::new(oauth::OAuthState::default()),
            ack_heartbeats: AtomicBool::new(true),
            stopping: AtomicBool::new(false),
            conn_threads: Mutex::new(Vec::new()),
            config,
        });
        let mut threads = Vec::new();
        let sh = shared.clone();
        threads.push(spawn("sim-discord-gw", move || {
            gateway::accept_loop(sh, listener)
        })?);
        let sh = shared.clone();
        let server = rest_server.clone();
        threads.push(spawn("sim-discord-rest", move || rest::serve(sh, server))?);
        let mut demo_stop = None;
        if shared.config.demo {
            let (tx, rx) = crossbeam_channel::bounded::<()>(0);
            let sh = shared.clone();
            threads.push(spawn("sim-discord-demo", move || demo::run(sh, rx))?);
            demo_stop = Some(tx);
        }
        Ok(SimDiscord {
            shared,
            gateway_addr,
            rest_server: Some(rest_server),
            threads,
            demo_stop,
        })
    }

    /// The gateway URL without query, e.g. `ws://127.0.0.1:40123`
    /// (`GET /gateway/bot` gives the same).
    pub fn gateway_url(&self) -> String {
        self.shared.gateway_url.clone()
    }

    /// READY's `resume_gateway_url`: the gateway URL with path `/resume`.
    pub fn resume_gateway_url(&self) -> String {
        self.shared.resume_url.clone()
    }

    /// The REST base, e.g. `http://127.0.0.1:40124/api/v10`.
    pub fn api_base(&self) -> String {
        self.shared.api_base.clone()
    }

    /// The bot token the simulator accepts.
    pub fn bot_token(&self) -> &str {
        &self.shared.config.token
    }

    // ---- OAuth2 ----

    /// The authorize page, e.g. `http://127.0.0.1:40124/oauth2/authorize`
    /// (at the root, as Discord's is not under the API base).
    pub fn authorize_url(&self) -> String {
        let root = self.shared.api_base.trim_end_matches("/api/v10");
        format!("{root}/oauth2/authorize")
    }

    /// The OAuth2 application's client id.
    pub fn oauth_client_id(&self) -> &str {
        &self.shared.config.oauth.client_id
    }

    /// The OAuth2 application's client secret.
    pub fn oauth_client_secret(&self) -> &str {
        &self.shared.config.oauth.client_secret
    }

    /// Registers `uri` as a redirect URI of the application ("Developer Portal → OAuth2").
    pub fn allow_redirect_uri(&self, uri: &str) {
        self.shared.oauth.lock().allow_redirect_uri(uri);
    }

    /// Every OAuth2 access token issued so far, oldest first.
    pub fn issued_access_tokens(&self) -> Vec<String> {
        self.shared.oauth.lock().issued_tokens()
    }

    /// The bot user's id (READY `user.id`, author of messages sent over REST).
    pub fn bot_user_id(&self) -> &'static str {
        ids::BOT_USER
    }

    // ---- gateway controls ----

    /// Dispatches `event_name` with `data` to every live session (each assigns its
    /// own `s`; sessions whose intents exclude the event skip it).
    pub fn dispatch(&self, event_name: &str, data: Value) {
        self.shared.state.lock().dispatch(event_name, data);
    }

    /// Sends op 7 Reconnect on every gateway connection.
    pub fn send_reconnect(&self) {
        self.shared
            .state
            .lock()
            .gw
            .broadcast_op(7, Value::Null, false);
    }

    /// Sends op 9 Invalid Session (`d` = `resumable`) on every identified connection.
    /// When not resumable, every session is forgotten (a later resume gets op 9 `false`).
    pub fn invalidate_session(&self, resumable: bool) {
        let mut st = self.shared.state.lock();
        st.gw.broadcast_op(9, json!(resumable), true);
        if !resumable {
            st.gw.forget_all_sessions();
        }
    }

    /// Closes every gateway connection with `code`. Codes that end a session on
    /// Discord (4003, 4004, 4007, 4009, 4010–4014) also forget the connection's session.
    pub fn close_with(&self, code: u16) {
        self.shared.state.lock().gw.close_all(code);
    }

    /// Drops every gateway TCP connection without a close frame (sessions stay resumable).
    pub fn drop_connections(&self) {
        self.shared.state.lock().gw.drop_all();
    }

    /// Whether heartbeats get an op 11 ACK (default true; false simulates a zombie link).
    pub fn set_ack_heartbeats(&self, ack: bool) {
        self.shared.ack_heartbeats.store(ack, Ordering::SeqCst);
    }

    /// Identify payloads accepted (READY sent).
    pub fn identify_count(&self) -> u64 {
        self.shared.state.lock().gw.identifies
    }

    /// Resumes accepted (replay + RESUMED sent).
    pub fn resume_count(&self) -> u64 {
        self.shared.state.lock().gw.resumes
    }

    /// Op 1 heartbeats received, on all connections.
    pub fn heartbeats_received(&self) -> u64 {
        self.shared.state.lock().gw.heartbeats
    }

    /// The `(session_id, seq)` of the last accepted resume.
    pub fn last_resume(&self) -> Option<(String, u64)> {
        self.shared.state.lock().gw.last_resume.clone()
    }

    /// WebSocket connections accepted so far (handshake done).
    pub fn connections(&self) -> u64 {
        self.shared.state.lock().gw.total_connections
    }

    /// WebSocket connections open now.
    pub fn open_connections(&self) -> usize {
        self.shared.state.lock().gw.conns.len()
    }

    /// The request target (path and query, e.g. `/resume?v=10&encoding=json`) of every
    /// accepted WebSocket connection, oldest first.
    pub fn connection_urls(&self) -> Vec<String> {
        self.shared.state.lock().gw.urls.clone()
    }

    /// Every gateway payload received (parsed JSON; a frame that is not JSON is kept as
    /// a JSON string), oldest first; the last 10 000 are kept.
    pub fn received_ops(&self) -> Vec<Value> {
        self.shared
            .state
            .lock()
            .gw
            .received
            .iter()
            .cloned()
            .collect()
    }

    /// The ids of the sessions the simulator would accept a resume for.
    pub fn session_ids(&self) -> Vec<String> {
        self.shared
            .state
            .lock()
            .gw
            .sessions
            .keys()
            .cloned()
            .collect()
    }

    /// A channel receiving every dispatch from now on (before intent filtering).
    pub fn subscribe(&self) -> Receiver<SimEvent> {
        let (tx, rx) = crossbeam_channel::unbounded();
        self.shared.state.lock().subscribers.push(tx);
        rx
    }

    // ---- guild controls ----

    /// Puts `user_id` into voice channel `channel_id` (join or move) and dispatches
    /// VOICE_STATE_UPDATE. False if the user or channel is unknown, the channel is not
    /// a voice channel, or the user is already there.
    pub fn voice_join(&self, user_id: &str, channel_id: &str) -> bool {
        let mut st = self.shared.state.lock();
        let is_voice = st
            .guild
            .channel(channel_id)
            .is_some_and(|c| c.kind == guild::ChannelKind::Voice);
        is_voice && st.guild.user(user_id).is_some() && st.set_voice(user_id, Some(channel_id))
    }

    /// Takes `user_id` out of voice and dispatches VOICE_STATE_UPDATE with
    /// `channel_id: null`. False if the user was not in voice.
    pub fn voice_leave(&self, user_id: &str) -> bool {
        self.shared.state.lock().set_voice(user_id, None)
    }

    /// The voice channel `user_id` is in now.
    pub fn voice_channel_of(&self, user_id: &str) -> Option<String> {
        let st = self.shared.state.lock();
        st.guild.voice.get(user_id).map(|v| v.channel_id.clone())
    }

    /// Posts a message as a guild member (dispatches MESSAGE_CREATE); returns its id.
    pub fn post_as(&self, user_id: &str, channel_id: &str, content: &str) -> Option<String> {
        let message = self
            .shared
            .state
            .lock()
            .create_message(user_id, channel_id, content)?;
        message["id"].as_str().map(str::to_owned)
    }

    // ---- REST controls ----

    /// Makes the next `next_n` authorized REST requests answer 429 (`global` sets
    /// `X-RateLimit-Global: true`, scope `global` and `"global": true`).
    pub fn force_429(&self, next_n: u32, global: bool) {
        let mut rest = self.shared.rest.lock();
        rest.forced = next_n;
        rest.forced_global = global;
    }

    /// Every REST request received, oldest first (the last 10 000 are kept).
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.rest.lock().requests.iter().cloned().collect()
    }

    /// Every accepted member modification with its `X-Audit-Log-Reason`, oldest first
    /// (the last 10 000 are kept).
    pub fn audit_log(&self) -> Vec<AuditEntry> {
        self.shared.rest.lock().audit.clone()
    }

    /// Stops every thread, closes every socket, and waits for all of them.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if self.shared.stopping.swap(true, Ordering::SeqCst) {
            return;
        }
        // Unblock the accept loop, which then sees `stopping`.
        let _ = TcpStream::connect_timeout(&self.gateway_addr, Duration::from_secs(1));
        self.shared.state.lock().gw.shutdown_all();
        if let Some(server) = &self.rest_server {
            server.unblock();
        }
        self.demo_stop = None;
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        // Joined after the accept loop ended, so no new connection thread can appear.
        let conns = std::mem::take(&mut *self.shared.conn_threads.lock());
        for t in conns {
            let _ = t.join();
        }
        // The last handle: dropping it closes tiny_http's listener.
        self.rest_server = None;
    }
}

impl Drop for SimDiscord {
    fn drop(&mut self) {
        self.stop();
    }
}

impl std::fmt::Debug for SimDiscord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimDiscord")
            .field("gateway_url", &self.shared.gateway_url)
            .field("api_base", &self.shared.api_base)
            .finish_non_exhaustive()
    }
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> io::Result<JoinHandle<()>> {
    std::thread::Builder::new().name(name.to_owned()).spawn(f)
}

/// The snowflake of Unix time `ms` with increment `inc` (worker and process 0).
pub fn snowflake_at(ms: u64, inc: u64) -> u64 {
    (ms.saturating_sub(DISCORD_EPOCH_MS) << 22) | (inc & 0xfff)
}

/// The Unix time in ms a snowflake was made at.
pub fn snowflake_time_ms(id: u64) -> u64 {
    (id >> 22) + DISCORD_EPOCH_MS
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Unix `ms` as Discord writes timestamps: `2021-03-14T15:09:26.535000+00:00`.
pub fn rfc3339(ms: u64) -> String {
    let secs = ms / 1000;
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let sod = secs % 86_400;
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}000+00:00",
        sod / 3600,
        sod / 60 % 60,
        sod % 60,
        ms % 1000
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}
