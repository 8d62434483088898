//! What every edge handler shares: settings, the hub, the link, the limiter,
//! the table of callers waiting for a command's reply, and metrics.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::Sender;
use parking_lot::Mutex;
use relay_protocol::bucket::{KeyedLimiter, LimitConfig};
use relay_protocol::queue::Completion;
use relay_runtime::http_server::HttpConfig;
use relay_runtime::hub::Hub;
use relay_runtime::link_client::LinkHandle;
use relay_runtime::sse_pool::SsePool;

use super::access::DiscordAccess;
use relay_protocol::payload::VoiceSnapshot;

use crate::auth::SessionKeys;
use crate::config::AccessMode;
use crate::metrics::Metrics;
use crate::secret::Secret;

/// The edge's settings, resolved from config (or built by `relay demo` and tests).
#[derive(Clone)]
pub struct EdgeSettings {
    /// HTTP listen address.
    pub bind: SocketAddr,
    /// `ws://…/link` of the gateway.
    pub gateway_ws_url: String,
    /// Bearer token of the link.
    pub link_token: Secret,
    /// HS256 key of session JWTs.
    pub session_secret: Secret,
    /// Serve the legacy `/api/ws` bridge.
    pub enable_ws_bridge: bool,
    /// SSE idle heartbeat.
    pub heartbeat: Duration,
    /// Per-user and per-channel token buckets.
    pub limits: LimitConfig,
    /// Outbound command queue bound.
    pub queue_capacity: usize,
    /// Events kept for `Last-Event-ID` replay.
    pub replay_capacity: usize,
    /// How long a command call waits for the gateway's reply.
    pub reply_timeout: Duration,
    /// `ACCESS`: roles (v1.0) or Discord's own permissions (§8).
    pub access: AccessMode,
    /// Demo mode: the guild the demo page signs in to. Only then do
    /// `/api/demo/users` and `/api/demo/session` exist (they issue sessions to
    /// anyone, which only a local demo may do).
    pub demo: Option<Arc<DemoInfo>>,
    /// HTTP limits and timeouts (request head, idle, body, sizes, connections).
    pub http: HttpConfig,
    /// Sign in with Discord and the lifetime of the sessions the edge issues.
    pub signin: SignInSettings,
    /// `ALLOWED_ORIGINS`: origins that may call the API cross-origin (empty: none, no CORS headers).
    pub allowed_origins: super::cors::AllowedOrigins,
    /// `REDIS_URL`: shared replay and rate limits (CONTRACT.md §10).
    pub redis_url: Option<Secret>,
}

/// Sign in with Discord (CONTRACT.md §8). `Default`: off (no client), the
/// real Discord's URLs, 12 h sessions.
#[derive(Clone, Debug)]
pub struct SignInSettings {
    /// `DISCORD_CLIENT_ID` and `DISCORD_CLIENT_SECRET`; `None`: `/auth/discord/*` answer 404.
    pub client: Option<crate::config::DiscordClient>,
    /// `PUBLIC_URL` without a trailing `/`; `None`: `http://` + the bound address.
    pub public_url: Option<String>,
    /// `DISCORD_AUTHORIZE_URL`.
    pub authorize_url: String,
    /// `DISCORD_API_BASE`, without a trailing `/`.
    pub api_base: String,
    /// `SESSION_TTL`.
    pub session_ttl: Duration,
    /// How long a started sign-in may take (at most 10 min; tests shorten it).
    pub pending_ttl: Duration,
    /// Timeout of each call to Discord (token exchange, `/users/@me`).
    pub discord_timeout: Duration,
}

impl Default for SignInSettings {
    fn default() -> Self {
        SignInSettings {
            client: None,
            public_url: None,
            authorize_url: crate::config::DEFAULT_AUTHORIZE_URL.to_owned(),
            api_base: crate::config::DEFAULT_API_BASE.to_owned(),
            session_ttl: Duration::from_secs(12 * 3600),
            pending_ttl: Duration::from_secs(relay_protocol::oauth::PENDING_TTL_SECS),
            discord_timeout: Duration::from_secs(10),
        }
    }
}

impl SignInSettings {
    /// From validated configuration.
    pub fn from_config(cfg: &crate::config::SignInConfig) -> Self {
        SignInSettings {
            client: cfg.client.clone(),
            public_url: cfg.public_url.as_ref().map(|u| u.as_str().to_owned()),
            authorize_url: cfg.authorize_url.as_str().to_owned(),
            api_base: cfg.api_base.as_str().to_owned(),
            session_ttl: cfg.session_ttl,
            ..SignInSettings::default()
        }
    }
}

/// What the demo page needs to sign in as a simulated user.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DemoInfo {
    /// The simulated guild. Which of its channels a user sees comes from the
    /// stream's `access` events (ACCESS=discord), not from here.
    pub guild_id: String,
    /// Users one can sign in as.
    pub users: Vec<DemoUser>,
}

/// A user of the demo guild.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DemoUser {
    /// User id.
    pub id: String,
    /// Display name.
    pub username: String,
    /// Avatar hash, if any.
    pub avatar: Option<String>,
}

impl std::fmt::Debug for EdgeSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Secrets stay out of Debug output (and so out of every log line).
        f.debug_struct("EdgeSettings")
            .field("bind", &self.bind)
            .field("gateway_ws_url", &self.gateway_ws_url)
            .field("enable_ws_bridge", &self.enable_ws_bridge)
            .field("heartbeat", &self.heartbeat)
            .field("queue_capacity", &self.queue_capacity)
            .field("replay_capacity", &self.replay_capacity)
            .field("reply_timeout", &self.reply_timeout)
            .field("access", &self.access)
            .field("demo", &self.demo.is_some())
            .field("http", &self.http)
            .field("signin", &self.signin)
            .field("allowed_origins", &self.allowed_origins)
            .finish_non_exhaustive()
    }
}

/// Callers blocked on a command's reply, by request id.
pub type Waiters = Mutex<HashMap<String, Sender<Completion>>>;

/// Shared by every handler thread.
pub struct AppState {
    /// The settings in force.
    pub settings: EdgeSettings,
    /// Fan-out and replay.
    pub hub: Arc<Hub>,
    /// The link to the gateway.
    pub link: LinkHandle,
    /// Token buckets (user × channel).
    pub limiter: Mutex<KeyedLimiter>,
    /// History reads' own per-user buckets (CONTRACT.md §9).
    pub read_limiter: Mutex<KeyedLimiter>,
    /// Callers waiting for replies.
    pub waiters: Arc<Waiters>,
    /// Session JWT keys.
    pub keys: SessionKeys,
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
    /// The SSE writer threads every `/api/stream` is handed to.
    pub streams: SsePool,
    /// `ACCESS=discord`: the guild models and every stream's scope.
    pub access: Option<Arc<DiscordAccess>>,
    /// Who is in voice now (the link sink keeps it), for voice commands'
    /// permission checks.
    pub voice: Arc<Mutex<VoiceSnapshot>>,
    /// Sign in with Discord.
    pub oauth: super::oauth::SignIn,
    /// `REDIS_URL`: the connection shared state goes through.
    pub redis: Option<Arc<relay_runtime::redis_conn::RedisConn>>,
    /// Command buckets in Redis, shared by every edge; `limiter` stands in
    /// while Redis is away.
    pub shared_limiter: Option<relay_runtime::redis_shared::RedisLimiter>,
    /// History read buckets in Redis; `read_limiter` stands in while it is away.
    pub shared_read_limiter: Option<relay_runtime::redis_shared::RedisLimiter>,
}

impl AppState {
    /// A command's rate-limit decision: the shared buckets when Redis answers,
    /// else this edge's own (degraded mode, CONTRACT.md §10).
    pub fn check_limits(&self, user: &str, channel: &str) -> relay_protocol::bucket::Decision {
        use relay_protocol::bucket::RateLimiter;
        if let Some(shared) = &self.shared_limiter {
            if let Ok(decision) = shared.check(user, Some(channel)) {
                return decision;
            }
        }
        self.limiter
            .lock()
            .check(user, channel, std::time::Instant::now())
    }

    /// A history read's decision (per-user bucket), shared when Redis answers.
    pub fn check_read_limit(&self, user: &str) -> relay_protocol::bucket::Decision {
        if let Some(shared) = &self.shared_read_limiter {
            if let Ok(decision) = shared.check(user, None) {
                return decision;
            }
        }
        self.read_limiter
            .lock()
            .check_user(user, std::time::Instant::now())
    }
}

impl EdgeSettings {
    /// The edge's settings from validated configuration.
    pub fn from_config(cfg: &crate::config::EdgeConfig) -> Self {
        EdgeSettings {
            bind: cfg.bind,
            gateway_ws_url: cfg.gateway_ws_url.as_str().to_owned(),
            link_token: cfg.link_token.clone(),
            session_secret: cfg.session_secret.clone(),
            enable_ws_bridge: cfg.enable_ws_bridge,
            heartbeat: cfg.heartbeat,
            limits: cfg.rate_limit,
            queue_capacity: cfg.queue_capacity,
            replay_capacity: cfg.replay_capacity,
            reply_timeout: cfg.reply_timeout,
            access: cfg.access,
            demo: None,
            http: HttpConfig::default(),
            signin: SignInSettings::from_config(&cfg.signin),
            allowed_origins: cfg.allowed_origins.clone(),
            redis_url: cfg.redis_url.clone(),
        }
    }
}
