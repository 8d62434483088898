//! A simulated Discord on loopback: the subset of Gateway v10 (WebSocket) and
//! REST v10 (HTTP) that relay uses, with controls for tests and a "demo" mode that
//! plays a lively guild without credentials (`relay demo`).
//!
//! | file | owns |
//! |---|---|
//! | `mod.rs` | [`SimDiscord`], its config and control API, the shared state, ids and clocks |
//! | `gateway.rs` | the WebSocket server: hello, identify, resume, heartbeats, sessions, close codes, intent filtering |
//! | `rest.rs` | the HTTP server under `/api/v10`: routes, auth, rate-limit buckets, the bot's permission checks, recording |
//! | `rest/webhooks.rs` | webhooks: create, list, execute (and its MESSAGE_CREATE), the message log Get Channel Messages reads |
//! | `oauth.rs` | OAuth2 on the same port: the authorize page at `/oauth2/authorize`, `/api/v10/oauth2/token`, `/api/v10/users/@me` |
//! | `guild.rs` | the guild model (roles, members, channels, overwrites, threads, voice), its changes with the dispatches they make, the JSON shapes Discord gives it, and the simulator's own permission helper |
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
//! - Events are filtered by intents as Discord does (MESSAGE_CREATE needs GUILD_MESSAGES,
//!   roles, channels and threads GUILDS, GUILD_MEMBER_* GUILD_MEMBERS except updates of
//!   the bot's own member …); without MESSAGE_CONTENT, message `content` is `""` except
//!   in the bot's own messages and messages mentioning it. Privileged intents not in
//!   [`SimConfig::allowed_privileged_intents`] close with 4014.
//! - GUILD_CREATE carries `roles`, `channels` (with `permission_overwrites`, `parent_id`),
//!   `threads`, `owner_id` and `members`; without GUILD_PRESENCES `members` holds only
//!   the bot and the members in voice (`gateway-events.mdx`, "Guild Create"); with it,
//!   all (the guild is far below `large_threshold`). `presences` is always empty.
//! - A message with `enforce_nonce: true` and a `nonce` that its author used in the
//!   last [`NONCE_WINDOW`] is not made again: the first one is returned and nothing
//!   is dispatched, as Discord documents.
//! - REST checks the bot's own permissions the way Discord's pseudocode computes them
//!   (owner/ADMINISTRATOR, `@everyone` + roles, overwrites `@everyone` → roles →
//!   member, a thread uses its parent's, no VIEW_CHANNEL means nothing, timeouts keep
//!   only VIEW_CHANNEL and READ_MESSAGE_HISTORY): channel routes answer `403 50001`
//!   without VIEW_CHANNEL and `403 50013` without SEND_MESSAGES (in threads
//!   SEND_MESSAGES_IN_THREADS) or READ_MESSAGE_HISTORY + ADD_REACTIONS; Modify Guild
//!   Member checks MOVE_MEMBERS / MUTE_MEMBERS / DEAFEN_MEMBERS in the member's voice
//!   channel, VIEW_CHANNEL + CONNECT + MOVE_MEMBERS in a move's target, and
//!   MANAGE_NICKNAMES, MANAGE_ROLES, MODERATE_MEMBERS for `nick`, `roles`,
//!   `communication_disabled_until` (never on the owner or an administrator).
//!   Simpler than Discord: no role hierarchy (a bot may grant any role), ADD_REACTIONS
//!   is always needed (no reactions are kept), implicit denials other than
//!   VIEW_CHANNEL are not applied, and channels the bot cannot see are neither hidden
//!   nor obfuscated (Discord starts obfuscating them for bots in October 2026):
//!   every session gets every channel and every CHANNEL_* event.
//! - Deleting a role sends only GUILD_ROLE_DELETE: members and overwrites lose it
//!   without events of their own. Deleting a text channel sends THREAD_DELETE for each
//!   of its threads first; deleting a voice channel disconnects its members; deleting
//!   a category sends CHANNEL_UPDATE (`parent_id: null`) for each of its channels.
//!   A timeout that runs out sends nothing (the past timestamp stays, as on Discord).
//! - Not simulated: the server closing on missed heartbeats, identify concurrency limits
//!   (max_concurrency), transport or payload compression, ETF, sharding, DMs,
//!   presences, Request Guild Members, List Guild Members, thread members.
//! - The guild ([`ids`]) is the same in every run: "Relay Demo", owned by Hedy
//!   ([`ids::OWNER`], Admin, not a demo user), with categories "Text Channels"
//!   (`#general` with the thread "release-planning", `#game-room`, `#announcements`,
//!   `#moderators`) and "Voice Channels" ("Lobby", "Raid"), the bot (role "Relay") and
//!   five [`demo_users`], all with the Member role: Grace is a Moderator, Ken is timed
//!   out (for an hour from start; in demo mode on the demo's cycle), Margaret may read
//!   but not write `#moderators`. Linus and Grace start in "Lobby". Demo mode adds the
//!   background activity and the role/timeout schedule (see `demo.rs`).
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

pub use guild::{demo_users, ids, perms, DemoUser, Overwrite, BOT_NAME, GUILD_NAME};
pub use oauth::{SimOAuthApp, DEMO_CLIENT_ID};
use rest::parse_emoji_text;
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
    /// `GET /guilds/{g}/members/{u}`, per guild. Default 10 per 1 s (Discord does
    /// not document it; read the headers).
    pub member_reads: RateLimit,
    /// `GET /gateway/bot` and `GET /gateway`. Default 10 per 5 s.
    pub gateway: RateLimit,
    /// `GET /channels/{c}/messages`, per channel. Default 5 per 5 s (Discord
    /// does not document it; read the headers).
    pub message_reads: RateLimit,
    /// `POST /webhooks/{id}/{token}`, per webhook. Default 5 per 2 s.
    pub webhooks: RateLimit,
    /// `GET`/`POST /channels/{c}/webhooks`, per channel. Default 10 per 1 s.
    pub channel_reads: RateLimit,
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits {
            messages: RateLimit::new(5, Duration::from_secs(5)),
            reactions: RateLimit::new(1, Duration::from_millis(250)),
            typing: RateLimit::new(5, Duration::from_secs(5)),
            members: RateLimit::new(10, Duration::from_secs(10)),
            member_reads: RateLimit::new(10, Duration::from_secs(1)),
            gateway: RateLimit::new(10, Duration::from_secs(5)),
            message_reads: RateLimit::new(5, Duration::from_secs(5)),
            webhooks: RateLimit::new(5, Duration::from_secs(2)),
            channel_reads: RateLimit::new(10, Duration::from_secs(1)),
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
    /// Demo mode: every this long Ada gains or loses the Moderator role, and Ken's
    /// timeout runs for 1.5 of these and is renewed every second one. Default 45 s.
    pub demo_role_period: Duration,
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
            demo_role_period: Duration::from_secs(45),
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
    /// Webhooks, and the message log `GET /channels/{id}/messages` reads.
    webhooks: rest::webhooks::WebhookState,
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
        if !self.guild.is_postable(channel_id) {
            return None;
        }
        let message =
            self.guild
                .message_json(&id, channel_id, &author, content, &rfc3339(unix_ms()));
        self.guild.remember(guild::StoredMessage {
            id,
            channel_id: channel_id.to_owned(),
            author_id: author_id.to_owned(),
            json: message.clone(),
            reactions: Vec::new(),
        });
        self.webhooks.log(&message);
        let d = self.guild.message_create(&message, &author);
        self.dispatch("MESSAGE_CREATE", d);
        Some(message)
    }

    /// Remembers a message from the past without dispatching it (ids stay
    /// time-ordered: a seed only ever goes before the messages made since).
    fn seed_message(
        &mut self,
        author_id: &str,
        channel_id: &str,
        content: &str,
        ago_ms: u64,
    ) -> Option<String> {
        let author = self.guild.user(author_id)?.clone();
        if !self.guild.is_postable(channel_id) {
            return None;
        }
        let at = unix_ms().saturating_sub(ago_ms);
        let id = snowflake_at(at, self.rng.random::<u64>() & 0xfff).to_string();
        let message = self
            .guild
            .message_json(&id, channel_id, &author, content, &rfc3339(at));
        self.guild.remember(guild::StoredMessage {
            id: id.clone(),
            channel_id: channel_id.to_owned(),
            author_id: author_id.to_owned(),
            json: message,
            reactions: Vec::new(),
        });
        Some(id)
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
    /// A reaction the user already has changes nothing and sends nothing
    /// (Discord's PUT is idempotent).
    fn add_reaction(&mut self, user_id: &str, channel_id: &str, message_id: &str, emoji: Value) {
        let Some(user) = self.guild.user(user_id).cloned() else {
            return;
        };
        if let Some(m) = self.guild.message_mut(message_id) {
            let key = emoji_key(&emoji);
            match m.reactions.iter_mut().find(|(e, _)| emoji_key(e) == key) {
                Some((_, users)) if users.iter().any(|u| u == user_id) => return,
                Some((_, users)) => users.push(user_id.to_owned()),
                None => m.reactions.push((emoji.clone(), vec![user_id.to_owned()])),
            }
        }
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

    /// `user_id` takes back a reaction; MESSAGE_REACTION_REMOVE in Discord's
    /// shape (`user_id`, `channel_id`, `message_id`, `guild_id`, `emoji`,
    /// `burst`, `type`). False (and nothing sent) if the user had not reacted
    /// so, or the message is not remembered.
    fn remove_reaction(
        &mut self,
        user_id: &str,
        channel_id: &str,
        message_id: &str,
        emoji: &Value,
    ) -> bool {
        let key = emoji_key(emoji);
        let Some(m) = self.guild.message_mut(message_id) else {
            return false;
        };
        if m.channel_id != channel_id {
            return false;
        }
        let Some(i) = m.reactions.iter().position(|(e, _)| emoji_key(e) == key) else {
            return false;
        };
        let before = m.reactions[i].1.len();
        m.reactions[i].1.retain(|u| u != user_id);
        if m.reactions[i].1.len() == before {
            return false;
        }
        let stored_emoji = m.reactions[i].0.clone();
        if m.reactions[i].1.is_empty() {
            m.reactions.remove(i);
        }
        self.dispatch(
            "MESSAGE_REACTION_REMOVE",
            json!({
                "user_id": user_id,
                "channel_id": channel_id,
                "message_id": message_id,
                "guild_id": ids::GUILD,
                "emoji": stored_emoji,
                "burst": false,
                "type": 0,
            }),
        );
        true
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

    /// Sends a change's dispatches; whether there was a change.
    fn apply(&mut self, change: Option<guild::Dispatches>) -> bool {
        let Some(events) = change else {
            return false;
        };
        for (name, d) in events {
            self.dispatch(name, d);
        }
        true
    }
}

/// Demo mode: a little history from before relay started, so the page opens
/// with messages (read through the history API, not dispatched).
fn seed_demo_history(st: &mut State) {
    const MIN: u64 = 60_000;
    let lines: [(&str, &str, &str, u64); 10] = [
        (
            ids::LINUS,
            ids::GENERAL,
            "morning all! coffee first, then the release notes",
            95,
        ),
        (
            ids::ADA,
            ids::GENERAL,
            "notes are half done, I'll finish them after lunch",
            90,
        ),
        (
            ids::GRACE,
            ids::GENERAL,
            "reminder: retro at 4, bring one thing that went well",
            62,
        ),
        (
            ids::MARGARET,
            ids::GENERAL,
            "the build is green again 🎉",
            40,
        ),
        (ids::KEN, ids::GENERAL, "sorry about the noise earlier", 35),
        (ids::ADA, ids::GENERAL, "anyone up for a quick review?", 12),
        (ids::LINUS, ids::GAME_ROOM, "raid tonight at 9?", 80),
        (ids::GRACE, ids::GAME_ROOM, "count me in", 78),
        (
            ids::OWNER,
            ids::ANNOUNCEMENTS,
            "Welcome to Relay Demo! Be kind, have fun.",
            600,
        ),
        (
            ids::GRACE,
            ids::MODERATORS,
            "mods: Ken's timeout runs on the demo's schedule",
            50,
        ),
    ];
    for (user, channel, content, minutes_ago) in lines {
        let _ = st.seed_message(user, channel, content, minutes_ago * MIN);
    }
    // A seeded message sorts before everything made since (ids are time-based).
    let mut all: Vec<guild::StoredMessage> = st.guild.messages.drain(..).collect();
    all.sort_by_key(|m| m.id.parse::<u64>().unwrap_or(0));
    st.guild.messages.extend(all);
}

/// Custom emoji are the same by id, unicode ones by name.
fn emoji_key(emoji: &Value) -> String {
    match (emoji.get("id").and_then(Value::as_str), emoji.get("name")) {
        (Some(id), _) => format!("id:{id}"),
        (None, name) => format!("name:{}", name.and_then(Value::as_str).unwrap_or_default()),
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
        // Ken is timed out from the start: for an hour in a quiet guild, and for the
        // first part of the demo's timeout cycle in demo mode.
        let ken_timeout = if config.demo {
            demo::timeout_length(&config)
        } else {
            Duration::from_secs(3600)
        };
        let shared = Arc::new(Shared {
            resume_url: format!("{gateway_url}/resume"),
            gateway_url,
            api_base: format!("http://127.0.0.1:{rest_port}/api/v10"),
            started: Instant::now(),
            state: Mutex::new(State {
                guild: guild::Guild::new(unix_ms() + ken_timeout.as_millis() as u64),
                gw: gateway::GatewayState::default(),
                rng: StdRng::seed_from_u64(config.seed),
                last_id: 0,
                subscribers: Vec::new(),
                history_cap: config.resume_history.max(1),
                nonces: HashMap::new(),
                webhooks: Default::default(),
            }),
            rest: Mutex::new(rest::RestState::default()),
            oauth: Mutex::new(oauth::OAuthState::default()),
            ack_heartbeats: AtomicBool::new(true),
            stopping: AtomicBool::new(false),
            conn_threads: Mutex::new(Vec::new()),
            config,
        });
        if shared.config.demo {
            seed_demo_history(&mut shared.state.lock());
        }
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

    /// `user_id` reacts to a message with `emoji` (a unicode emoji or
    /// `name:id`); MESSAGE_REACTION_ADD. False for an unknown user or an
    /// emoji that does not parse.
    pub fn react_as(&self, user_id: &str, channel_id: &str, message_id: &str, emoji: &str) -> bool {
        let Some(emoji) = parse_emoji_text(emoji) else {
            return false;
        };
        let mut st = self.shared.state.lock();
        if st.guild.user(user_id).is_none() {
            return false;
        }
        st.add_reaction(user_id, channel_id, message_id, emoji);
        true
    }

    /// `user_id` takes back a reaction ("Delete User Reaction" / "Delete Own
    /// Reaction"); MESSAGE_REACTION_REMOVE. False if there was none.
    pub fn unreact_as(
        &self,
        user_id: &str,
        channel_id: &str,
        message_id: &str,
        emoji: &str,
    ) -> bool {
        let Some(emoji) = parse_emoji_text(emoji) else {
            return false;
        };
        self.shared
            .state
            .lock()
            .remove_reaction(user_id, channel_id, message_id, &emoji)
    }

    /// Edits a message's content (MESSAGE_UPDATE with `content` and
    /// `edited_timestamp`, as Discord sends it). False if not remembered.
    pub fn edit_message(&self, channel_id: &str, message_id: &str, content: &str) -> bool {
        let mut st = self.shared.state.lock();
        let edited_at = rfc3339(unix_ms());
        let Some(m) = st.guild.message_mut(message_id) else {
            return false;
        };
        if m.channel_id != channel_id {
            return false;
        }
        m.json["content"] = json!(content);
        m.json["edited_timestamp"] = json!(edited_at);
        let mut d = m.json.clone();
        d["guild_id"] = json!(ids::GUILD);
        st.dispatch("MESSAGE_UPDATE", d);
        true
    }

    /// Deletes messages: MESSAGE_DELETE for one id, MESSAGE_DELETE_BULK for
    /// several. False if none was remembered.
    pub fn delete_messages(&self, channel_id: &str, message_ids: &[&str]) -> bool {
        let mut st = self.shared.state.lock();
        let gone: Vec<&str> = message_ids
            .iter()
            .copied()
            .filter(|id| st.guild.forget(channel_id, id))
            .collect();
        match gone.as_slice() {
            [] => return false,
            [one] => st.dispatch(
                "MESSAGE_DELETE",
                json!({"id": one, "channel_id": channel_id, "guild_id": ids::GUILD}),
            ),
            many => st.dispatch(
                "MESSAGE_DELETE_BULK",
                json!({"ids": many, "channel_id": channel_id, "guild_id": ids::GUILD}),
            ),
        }
        true
    }

    /// Remembers a message as posted `ago_ms` before now without
    /// dispatching anything: history that existed before relay started.
    /// Returns its id.
    pub fn seed_message(
        &self,
        user_id: &str,
        channel_id: &str,
        content: &str,
        ago_ms: u64,
    ) -> Option<String> {
        self.shared
            .state
            .lock()
            .seed_message(user_id, channel_id, content, ago_ms)
    }

    /// The ids of every message the simulator holds in `channel_id` (seeds
    /// included, deleted ones not), oldest first: what Get Channel Messages
    /// pages through.
    pub fn message_ids_in(&self, channel_id: &str) -> Vec<String> {
        let st = self.shared.state.lock();
        let mut ids: Vec<u64> = st
            .guild
            .messages
            .iter()
            .filter(|m| m.channel_id == channel_id)
            .filter_map(|m| m.id.parse().ok())
            .collect();
        ids.sort_unstable();
        ids.into_iter().map(|id| id.to_string()).collect()
    }

    /// The webhooks of `channel_id`, as `GET /channels/{id}/webhooks` lists them.
    pub fn webhooks_in(&self, channel_id: &str) -> Vec<Value> {
        let st = self.shared.state.lock();
        let bot = st
            .guild
            .user(ids::BOT_USER)
            .map(|u| st.guild.user_json(u))
            .unwrap_or(Value::Null);
        st.webhooks
            .hooks
            .iter()
            .filter(|h| h.channel_id == channel_id)
            .map(|h| st.webhooks.json(h, &bot))
            .collect()
    }

    /// Every message in `channel_id` made since the simulator started (REST
    /// shape, webhook posts included), newest first.
    pub fn messages_in(&self, channel_id: &str) -> Vec<Value> {
        self.shared.state.lock().webhooks.in_channel(channel_id)
    }

    // ---- roles, members, channels ----
    //
    // Each change dispatches what Discord sends for it (before intent filtering:
    // GUILD_MEMBER_* reach only sessions with GUILD_MEMBERS, except updates of the
    // bot's own member) and returns false when nothing changed or an id is unknown.

    /// Replaces `user_id`'s roles with `role_ids` (`@everyone` is implicit and may
    /// not be listed); GUILD_MEMBER_UPDATE.
    pub fn set_member_roles(&self, user_id: &str, role_ids: &[&str]) -> bool {
        let mut st = self.shared.state.lock();
        let change = st.guild.set_member_roles(user_id, role_ids);
        st.apply(change)
    }

    /// Times `user_id` out until Unix time `until_ms`, or lifts the timeout (`None`);
    /// GUILD_MEMBER_UPDATE with `communication_disabled_until`. A timeout that runs
    /// out sends nothing, as on Discord: the member keeps the past timestamp.
    pub fn timeout_member(&self, user_id: &str, until_ms: Option<u64>) -> bool {
        let mut st = self.shared.state.lock();
        let change = st.guild.set_timeout(user_id, until_ms);
        st.apply(change)
    }

    /// Replaces a channel's permission overwrites; CHANNEL_UPDATE with the full
    /// channel. False for a thread (threads use their parent's overwrites).
    pub fn set_channel_overwrites(&self, channel_id: &str, overwrites: Vec<Overwrite>) -> bool {
        let mut st = self.shared.state.lock();
        let change = st.guild.set_overwrites(channel_id, overwrites);
        st.apply(change)
    }

    /// Makes a channel of Discord type `kind` (0 text, 2 voice, 4 category, 11 public
    /// thread, started by the bot) and returns its id. `parent_id` is a category for
    /// channels (or `None`) and a text channel for a thread, which takes no
    /// overwrites. CHANNEL_CREATE, or THREAD_CREATE with `newly_created: true`.
    pub fn create_channel(
        &self,
        name: &str,
        kind: u8,
        parent_id: Option<&str>,
        overwrites: Vec<Overwrite>,
    ) -> Option<String> {
        let mut st = self.shared.state.lock();
        let id = st.next_id();
        let now = rfc3339(unix_ms());
        let change = st
            .guild
            .create_channel(id.clone(), name, kind, parent_id, overwrites, &now);
        st.apply(change).then_some(id)
    }

    /// Deletes a channel, category or thread. Its threads go first (THREAD_DELETE),
    /// members in a deleted voice channel are disconnected (VOICE_STATE_UPDATE), a
    /// category's channels lose their `parent_id` (CHANNEL_UPDATE); then
    /// CHANNEL_DELETE, or THREAD_DELETE for a thread.
    pub fn delete_channel(&self, channel_id: &str) -> bool {
        let mut st = self.shared.state.lock();
        let change = st.guild.delete_channel(channel_id);
        st.apply(change)
    }

    /// Makes a role with `permissions` (not hoisted, above every other role) and
    /// returns its id; GUILD_ROLE_CREATE `{guild_id, role}`.
    pub fn create_role(&self, name: &str, permissions: u64) -> String {
        let mut st = self.shared.state.lock();
        let id = st.next_id();
        let change = st.guild.create_role(id.clone(), name, permissions);
        st.apply(Some(change));
        id
    }

    /// Sets a role's permissions (`@everyone` is [`ids::ROLE_EVERYONE`]);
    /// GUILD_ROLE_UPDATE `{guild_id, role}`.
    pub fn update_role_permissions(&self, role_id: &str, permissions: u64) -> bool {
        let mut st = self.shared.state.lock();
        let change = st.guild.set_role_permissions(role_id, permissions);
        st.apply(change)
    }

    /// Deletes a role (not `@everyone`, not the bot's managed role); members and
    /// overwrites lose it silently, as on Discord: only GUILD_ROLE_DELETE
    /// `{guild_id, role_id}` is sent.
    pub fn delete_role(&self, role_id: &str) -> bool {
        let mut st = self.shared.state.lock();
        let change = st.guild.delete_role(role_id);
        st.apply(change)
    }

    /// A new member with no roles joins; GUILD_MEMBER_ADD (the member with `user`
    /// and `guild_id`).
    pub fn add_member(&self, user_id: &str, username: &str) -> bool {
        let mut st = self.shared.state.lock();
        let change = st.guild.add_member(user_id, username, &rfc3339(unix_ms()));
        st.apply(change)
    }

    /// A member leaves (not the owner, not the bot): VOICE_STATE_UPDATE if in
    /// voice, then GUILD_MEMBER_REMOVE `{guild_id, user}`.
    pub fn remove_member(&self, user_id: &str) -> bool {
        let mut st = self.shared.state.lock();
        let change = st.guild.remove_member(user_id);
        st.apply(change)
    }

    /// Hands the guild to another member; GUILD_UPDATE with the guild object.
    pub fn set_owner(&self, user_id: &str) -> bool {
        let mut st = self.shared.state.lock();
        let change = st.guild.set_owner(user_id);
        st.apply(change)
    }

    /// Every role id, `@everyone` ([`ids::ROLE_EVERYONE`]) first.
    pub fn role_ids(&self) -> Vec<String> {
        let st = self.shared.state.lock();
        st.guild.roles.iter().map(|r| r.id.clone()).collect()
    }

    /// Every channel, category and thread id.
    pub fn channel_ids(&self) -> Vec<String> {
        let st = self.shared.state.lock();
        st.guild.channels.iter().map(|c| c.id.clone()).collect()
    }

    /// The guild member object of `user_id` as `GET /guilds/{g}/members/{u}` gives it.
    pub fn member_json(&self, user_id: &str) -> Option<Value> {
        let st = self.shared.state.lock();
        st.guild
            .user(user_id)
            .map(|u| st.guild.member_json(u, true))
    }

    /// The channel object of `channel_id` as CHANNEL_UPDATE carries it.
    pub fn channel_json(&self, channel_id: &str) -> Option<Value> {
        let st = self.shared.state.lock();
        st.guild
            .channel(channel_id)
            .map(|c| st.guild.channel_json(c, true))
    }

    /// The simulator's own reading of Discord's permission pseudocode for
    /// `user_id` in `channel_id` now (the one behind its `403`s): 0 for a
    /// non-member or unknown channel. A cross-check, not relay's model.
    pub fn permissions_of(&self, user_id: &str, channel_id: &str) -> u64 {
        let st = self.shared.state.lock();
        st.guild.permissions(user_id, channel_id, unix_ms())
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

/// Discord's ISO 8601 timestamps back to Unix ms: `YYYY-MM-DDTHH:MM:SS`, an
/// optional fraction, then `Z` or `±HH:MM`. `None` for anything else.
pub fn parse_rfc3339(s: &str) -> Option<u64> {
    let num = |a: usize, b: usize| -> Option<i64> {
        let part = s.get(a..b)?;
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    let sep = |i: usize, c: u8| s.as_bytes().get(i) == Some(&c);
    if !(sep(4, b'-')
        && sep(7, b'-')
        && (sep(10, b'T') || sep(10, b't'))
        && sep(13, b':')
        && sep(16, b':'))
    {
        return None;
    }
    let (y, mo, d) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    let (h, mi, sec) = (num(11, 13)?, num(14, 16)?, num(17, 19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut rest = s.get(19..)?;
    let mut ms = 0;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let padded = format!("{:0<3}", &frac[..digits.min(3)]);
        ms = padded.parse::<i64>().ok()?;
        rest = &frac[digits..];
    }
    let offset_min = match rest {
        "Z" | "z" => 0,
        _ if rest.len() == 6
            && (rest.starts_with('+') || rest.starts_with('-'))
            && sep(s.len() - 3, b':') =>
        {
            let oh: i64 = rest.get(1..3)?.parse().ok()?;
            let om: i64 = rest.get(4..6)?.parse().ok()?;
            let sign = if rest.starts_with('-') { -1 } else { 1 };
            sign * (oh * 60 + om)
        }
        _ => return None,
    };
    let days = days_from_civil(y, mo as u32, d as u32);
    let secs = days * 86_400 + h * 3600 + mi * 60 + sec - offset_min * 60;
    u64::try_from(secs * 1000 + ms).ok()
}

/// (year, month, day) to days since 1970-01-01, proleptic Gregorian (H. Hinnant).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
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
