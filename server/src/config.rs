//! The command line and every setting (CONTRACT.md §1), turned into validated
//! config structs before anything starts.
//!
//! Every setting is an environment variable and the flag of the same name in
//! kebab case (`LINK_TOKEN` ↔ `--link-token`); clap reads both and the flag
//! wins. Two stages keep the contract's "one clear line naming the variable":
//!
//! 1. clap parses. Each value parser's error names its variable, and
//!    [`error_line`] turns any clap error into one line (the parser's message
//!    when there is one, else clap's text with newlines folded).
//! 2. `validate()` on each subcommand's args checks what clap cannot say in
//!    one line — required settings are `Option`s in clap and are checked here —
//!    and builds [`EdgeConfig`], [`GatewayConfig`], [`AllConfig`],
//!    [`DemoConfig`] or [`TokenConfig`]. Its [`ConfigError`] displays as one line.
//!
//! `main` prints either as `relay: <line>` and exits with status 2.
//!
//! Secrets are read as raw OS strings, so no clap error can ever quote one
//! (a non-UTF-8 or empty secret is reported by name only), are hidden from
//! `--help`'s `[env: …]` display, and become [`Secret`]s, which never print.
//! Passing a secret as a flag puts it in `ps` output: prefer the variable.
//!
//! Numeric limits are bounded so a typo cannot turn into a huge allocation or
//! an `Instant` overflow: durations are 1 ms to 24 h, counts 1 to 1 000 000.

use std::borrow::Cow;
use std::ffi::OsString;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use clap::builder::{OsStringValueParser, TypedValueParser};
use clap::error::ErrorKind;
use clap::{Args, Parser, Subcommand};
use relay_protocol::bucket::LimitConfig;
use relay_protocol::sanitize::sanitize;

use crate::edge::cors::AllowedOrigins;

use crate::logging::{redact_query, LogFormat, LogSpec};
use crate::secret::{Secret, REDACTED};

/// Longest duration setting, in milliseconds (24 h).
pub const MAX_MS: u64 = 86_400_000;

/// Largest count setting (queue, replay, bucket sizes).
pub const MAX_COUNT: u64 = 1_000_000;

/// The link endpoint's path on the gateway.
pub const LINK_PATH: &str = "/link";

/// relay: carries Discord's realtime traffic to browsers over SSE and browser
/// commands back to Discord.
///
/// Every setting is an environment variable and the flag of the same name
/// (`LINK_TOKEN` / `--link-token`); the flag wins.
#[derive(Parser, Debug)]
#[command(name = "relay", version, propagate_version = true)]
pub struct Cli {
    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Everything in one process against a simulated Discord: no credentials needed.
    Demo(DemoArgs),
    /// The browser-facing edge: SSE stream, command API, metrics.
    Edge(EdgeArgs),
    /// The Discord-facing gateway: Discord session, REST client, link endpoint.
    Gateway(GatewayArgs),
    /// Gateway and edge in one process against real Discord.
    All(AllArgs),
    /// Print a session JWT signed with SESSION_SECRET.
    Token(TokenArgs),
}

/// A secret as read from the environment or a flag, before validation.
/// Prints as `[redacted]`.
#[derive(Clone)]
pub struct RawSecret(OsString);

impl fmt::Debug for RawSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(crate::secret::REDACTED)
    }
}

impl RawSecret {
    fn parser() -> impl TypedValueParser<Value = RawSecret> {
        // An OsString parser never fails, so clap never reports (and quotes) a secret.
        OsStringValueParser::new().map(RawSecret)
    }
}

/// `LOG_FORMAT` and `RUST_LOG`, shared by every subcommand that runs.
#[derive(Args, Debug, Clone)]
pub struct LogArgs {
    /// Log line format: text, or json (one object per line).
    #[arg(long, env = "LOG_FORMAT", default_value = "text", value_parser = parse_log_format)]
    pub log_format: LogFormat,
    /// Log filter: a level (error, warn, info, debug, trace, off) and/or target=level entries, comma-separated.
    #[arg(long, env = "RUST_LOG", default_value = "info", value_parser = parse_rust_log)]
    pub rust_log: String,
}

/// `LINK_TOKEN`, shared by edge, gateway and all.
#[derive(Args, Debug, Clone)]
pub struct LinkArgs {
    /// Shared bearer token of the edge ⇄ gateway link (required).
    #[arg(long, env = "LINK_TOKEN", hide_env_values = true, value_parser = RawSecret::parser())]
    pub link_token: Option<RawSecret>,
}

/// `REDIS_URL`, shared by edge, gateway and all (CONTRACT.md §10). A secret:
/// the URL may carry a password.
#[derive(Args, Debug, Clone)]
pub struct RedisArgs {
    /// redis:// or rediss:// URL of the Redis (or Valkey) server that edges and gateways share; unset: everything stays in this process.
    #[arg(long, env = "REDIS_URL", hide_env_values = true, value_parser = RawSecret::parser())]
    pub redis_url: Option<RawSecret>,
}

impl RedisArgs {
    fn validate(self) -> Result<Option<Secret>, ConfigError> {
        let Some(raw) = self.redis_url else {
            return Ok(None);
        };
        let url = secret(Some(raw), "REDIS_URL", "--redis-url")?;
        let text = url.expose();
        if !(text.starts_with("redis://") || text.starts_with("rediss://")) {
            return Err(ConfigError::Invalid {
                var: "REDIS_URL",
                reason: "must start with redis:// or rediss://".into(),
            });
        }
        // Parses only; connecting happens at startup. The reason never quotes the URL.
        relay_runtime::redis_conn::RedisConn::open(text, Duration::from_secs(1)).map_err(
            |reason| ConfigError::Invalid {
                var: "REDIS_URL",
                reason,
            },
        )?;
        Ok(Some(url))
    }
}

/// The edge's own settings (everything but `GATEWAY_WS_URL`, which `all` derives).
#[derive(Args, Debug, Clone)]
pub struct EdgeSettings {
    /// HTTP listen address.
    #[arg(long, env = "BIND", default_value = "127.0.0.1:3000", value_parser = |s: &str| parse_addr("BIND", s))]
    pub bind: SocketAddr,
    /// HS256 key for user session JWTs (required).
    #[arg(long, env = "SESSION_SECRET", hide_env_values = true, value_parser = RawSecret::parser())]
    pub session_secret: Option<RawSecret>,
    /// Serve the legacy /api/ws bridge (true/false/1/0/yes/no/on/off).
    #[arg(
        long,
        env = "ENABLE_WS_BRIDGE",
        default_value = "false",
        num_args = 0..=1,
        default_missing_value = "true",
        value_parser = |s: &str| parse_bool("ENABLE_WS_BRIDGE", s)
    )]
    pub enable_ws_bridge: bool,
    /// SSE idle heartbeat, milliseconds.
    #[arg(long, env = "HEARTBEAT_MS", default_value = "15000", value_parser = |s: &str| parse_ms("HEARTBEAT_MS", s))]
    pub heartbeat_ms: Duration,
    /// Token bucket capacity (burst size).
    #[arg(long, env = "RATE_LIMIT_BURST", default_value = "10", value_parser = |s: &str| parse_u32("RATE_LIMIT_BURST", s))]
    pub rate_limit_burst: u32,
    /// Tokens added per window, continuously.
    #[arg(long, env = "RATE_LIMIT_REFILL", default_value = "5", value_parser = |s: &str| parse_u32("RATE_LIMIT_REFILL", s))]
    pub rate_limit_refill: u32,
    /// Token bucket refill window, milliseconds.
    #[arg(long, env = "RATE_LIMIT_WINDOW_MS", default_value = "5000", value_parser = |s: &str| parse_ms("RATE_LIMIT_WINDOW_MS", s))]
    pub rate_limit_window_ms: Duration,
    /// Outbound command queue bound.
    #[arg(long, env = "QUEUE_CAPACITY", default_value = "1000", value_parser = |s: &str| parse_usize("QUEUE_CAPACITY", s))]
    pub queue_capacity: usize,
    /// Events kept for Last-Event-ID replay.
    #[arg(long, env = "REPLAY_CAPACITY", default_value = "4096", value_parser = |s: &str| parse_usize("REPLAY_CAPACITY", s))]
    pub replay_capacity: usize,
    /// How long a command call waits for the gateway's reply, milliseconds.
    #[arg(long, env = "REPLY_TIMEOUT_MS", default_value = "5000", value_parser = |s: &str| parse_ms("REPLY_TIMEOUT_MS", s))]
    pub reply_timeout_ms: Duration,
    /// Who sees and does what: roles (v1.0) or discord (each session is a Discord member, CONTRACT.md §8).
    #[arg(long, env = "ACCESS", default_value = "roles", value_parser = parse_access)]
    pub access: AccessMode,
    /// Comma-separated exact origins (https://app.example.com) allowed to call the command API, history and the stream cross-origin with credentials; empty: same origin only.
    #[arg(long, env = "ALLOWED_ORIGINS", default_value = "", value_parser = parse_allowed_origins)]
    pub allowed_origins: AllowedOrigins,
    /// Sign in with Discord.
    #[command(flatten)]
    pub signin: SignInArgs,
}

/// `ALLOWED_ORIGINS`: exact origins, each with scheme and host and no path.
fn parse_allowed_origins(s: &str) -> Result<AllowedOrigins, String> {
    AllowedOrigins::parse(s).map_err(|why| format!("ALLOWED_ORIGINS {why}"))
}

// ---- Sign in with Discord (CONTRACT.md §8): the edge's OAuth2 settings ----

/// `DISCORD_CLIENT_ID`, `DISCORD_CLIENT_SECRET`, `PUBLIC_URL`,
/// `DISCORD_AUTHORIZE_URL`, `SESSION_TTL` (`DISCORD_API_BASE` comes from
/// [`EdgeArgs`] or, in `relay all`, from the gateway's settings).
#[derive(Args, Debug, Clone)]
pub struct SignInArgs {
    /// OAuth2 application id; with DISCORD_CLIENT_SECRET the edge serves Sign in with Discord.
    #[arg(long, env = "DISCORD_CLIENT_ID", value_parser = |s: &str| parse_snowflake("DISCORD_CLIENT_ID", s))]
    pub discord_client_id: Option<String>,
    /// OAuth2 client secret.
    #[arg(long, env = "DISCORD_CLIENT_SECRET", hide_env_values = true, value_parser = RawSecret::parser())]
    pub discord_client_secret: Option<RawSecret>,
    /// The origin browsers use (default http:// + BIND); the redirect URI is this + /auth/discord/callback.
    #[arg(long, env = "PUBLIC_URL", value_parser = parse_public_url)]
    pub public_url: Option<HttpUrl>,
    /// Discord's OAuth2 authorize page.
    #[arg(long, env = "DISCORD_AUTHORIZE_URL", default_value = DEFAULT_AUTHORIZE_URL, value_parser = |s: &str| HttpUrl::parse("DISCORD_AUTHORIZE_URL", s))]
    pub discord_authorize_url: HttpUrl,
    /// Lifetime of the sessions the edge issues, e.g. 12h, 30m, 7d.
    #[arg(long, env = "SESSION_TTL", default_value = DEFAULT_SESSION_TTL, value_parser = |s: &str| parse_session_ttl("SESSION_TTL", s))]
    pub session_ttl: Duration,
}

/// `DISCORD_AUTHORIZE_URL`'s default.
pub const DEFAULT_AUTHORIZE_URL: &str = "https://discord.com/oauth2/authorize";
/// `DISCORD_API_BASE`'s default.
pub const DEFAULT_API_BASE: &str = "https://discord.com/api/v10";
/// `SESSION_TTL`'s default.
pub const DEFAULT_SESSION_TTL: &str = "12h";
/// Longest `SESSION_TTL`.
pub const MAX_SESSION_TTL: Duration = Duration::from_secs(366 * 86_400);

/// The OAuth2 application, when both halves are set.
#[derive(Clone, Debug)]
pub struct DiscordClient {
    /// `DISCORD_CLIENT_ID`.
    pub id: String,
    /// `DISCORD_CLIENT_SECRET`.
    pub secret: Secret,
}

/// Sign in with Discord, validated.
#[derive(Clone, Debug)]
pub struct SignInConfig {
    /// `DISCORD_CLIENT_ID` + `DISCORD_CLIENT_SECRET`; `None`: the routes answer 404.
    pub client: Option<DiscordClient>,
    /// `PUBLIC_URL`; `None`: `http://` + the bound address.
    pub public_url: Option<HttpUrl>,
    /// `DISCORD_AUTHORIZE_URL`.
    pub authorize_url: HttpUrl,
    /// `DISCORD_API_BASE`.
    pub api_base: HttpUrl,
    /// `SESSION_TTL`.
    pub session_ttl: Duration,
}

impl SignInArgs {
    fn validate(self, api_base: HttpUrl) -> Result<SignInConfig, ConfigError> {
        let client = match (self.discord_client_id, self.discord_client_secret) {
            (None, None) => None,
            (Some(id), secret @ Some(_)) => Some(DiscordClient {
                id,
                secret: self::secret(secret, "DISCORD_CLIENT_SECRET", "--discord-client-secret")?,
            }),
            (None, Some(_)) => {
                return Err(ConfigError::Invalid {
                    var: "DISCORD_CLIENT_ID",
                    reason: "is required when DISCORD_CLIENT_SECRET is set".into(),
                })
            }
            (Some(_), None) => {
                return Err(ConfigError::Invalid {
                    var: "DISCORD_CLIENT_SECRET",
                    reason: "is required when DISCORD_CLIENT_ID is set".into(),
                })
            }
        };
        Ok(SignInConfig {
            client,
            public_url: self.public_url,
            authorize_url: self.discord_authorize_url,
            api_base,
            session_ttl: self.session_ttl,
        })
    }
}

/// `PUBLIC_URL`: an `http(s)://` origin, without a path (cookies and the
/// callback live at fixed paths under it).
fn parse_public_url(s: &str) -> Result<HttpUrl, String> {
    let url = HttpUrl::parse("PUBLIC_URL", s)?;
    if url.path() != "/" {
        return Err(format!(
            "PUBLIC_URL must be an origin such as https://chat.example.com, without a path (got {})",
            quoted_url(s)
        ));
    }
    Ok(url)
}

/// A session lifetime: 1 s to 366 days, in humantime (`12h`, `30m`, `7d`).
fn parse_session_ttl(var: &str, s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s)
        .ok()
        .filter(|d| (Duration::from_secs(1)..=MAX_SESSION_TTL).contains(d))
        .ok_or_else(|| {
            format!(
                "{var} must be a duration from 1s to 366d such as 12h, 30m or 7d (got {})",
                quoted(s)
            )
        })
}

// ---- end of Sign in with Discord ----

/// The gateway's own settings.
#[derive(Args, Debug, Clone)]
pub struct GatewaySettings {
    /// Link WebSocket listen address (path /link).
    #[arg(long, env = "GATEWAY_BIND", default_value = "127.0.0.1:8787", value_parser = |s: &str| parse_addr("GATEWAY_BIND", s))]
    pub gateway_bind: SocketAddr,
    /// Discord bot token (required).
    #[arg(long, env = "DISCORD_BOT_TOKEN", hide_env_values = true, value_parser = RawSecret::parser())]
    pub discord_bot_token: Option<RawSecret>,
    /// If set, only this guild's events are forwarded.
    #[arg(long, env = "DISCORD_GUILD_ID", value_parser = |s: &str| parse_snowflake("DISCORD_GUILD_ID", s))]
    pub discord_guild_id: Option<String>,
    /// Also identify with GUILD_MEMBERS (privileged), so role and timeout changes arrive as events.
    #[arg(long, env = "DISCORD_MEMBERS_INTENT", default_value = "false", num_args = 0..=1, default_missing_value = "true", value_parser = |s: &str| parse_bool("DISCORD_MEMBERS_INTENT", s))]
    pub discord_members_intent: bool,
    /// Discord REST base URL.
    #[arg(long, env = "DISCORD_API_BASE", default_value = DEFAULT_API_BASE, value_parser = |s: &str| HttpUrl::parse("DISCORD_API_BASE", s))]
    pub discord_api_base: HttpUrl,
    /// Discord gateway URL override (default: from GET /gateway/bot).
    #[arg(long, env = "DISCORD_GATEWAY_URL", value_parser = |s: &str| WsUrl::parse("DISCORD_GATEWAY_URL", s))]
    pub discord_gateway_url: Option<WsUrl>,
    /// With REDIS_URL: how long the active gateway's lease lasts without renewal before a standby takes over, milliseconds.
    #[arg(long, env = "GATEWAY_LEASE_MS", default_value = "10000", value_parser = |s: &str| parse_ms("GATEWAY_LEASE_MS", s))]
    pub gateway_lease_ms: Duration,
}

/// `relay edge`.
#[derive(Args, Debug, Clone)]
pub struct EdgeArgs {
    /// ws:// or wss:// URL of the gateway's link endpoint, or several comma-separated, tried in turn (required).
    #[arg(long, env = "GATEWAY_WS_URL", value_parser = |s: &str| WsUrl::parse_list("GATEWAY_WS_URL", s))]
    pub gateway_ws_url: Option<WsUrl>,
    /// Discord REST base URL (Sign in with Discord's token exchange and /users/@me).
    #[arg(long, env = "DISCORD_API_BASE", default_value = DEFAULT_API_BASE, value_parser = |s: &str| HttpUrl::parse("DISCORD_API_BASE", s))]
    pub discord_api_base: HttpUrl,
    /// Edge settings.
    #[command(flatten)]
    pub edge: EdgeSettings,
    /// `REDIS_URL`.
    #[command(flatten)]
    pub redis: RedisArgs,
    /// The link token.
    #[command(flatten)]
    pub link: LinkArgs,
    /// Logging.
    #[command(flatten)]
    pub log: LogArgs,
}

/// `relay gateway`.
#[derive(Args, Debug, Clone)]
pub struct GatewayArgs {
    /// Gateway settings.
    #[command(flatten)]
    pub gateway: GatewaySettings,
    /// `REDIS_URL`.
    #[command(flatten)]
    pub redis: RedisArgs,
    /// The link token.
    #[command(flatten)]
    pub link: LinkArgs,
    /// Logging.
    #[command(flatten)]
    pub log: LogArgs,
}

/// `relay all`: the edge's and the gateway's settings; the edge reaches the
/// gateway at `ws://GATEWAY_BIND/link`.
#[derive(Args, Debug, Clone)]
pub struct AllArgs {
    /// Edge settings.
    #[command(flatten)]
    pub edge: EdgeSettings,
    /// Gateway settings.
    #[command(flatten)]
    pub gateway: GatewaySettings,
    /// `REDIS_URL`.
    #[command(flatten)]
    pub redis: RedisArgs,
    /// The link token.
    #[command(flatten)]
    pub link: LinkArgs,
    /// Logging.
    #[command(flatten)]
    pub log: LogArgs,
}

/// `relay demo`.
#[derive(Args, Debug, Clone)]
pub struct DemoArgs {
    /// HTTP listen address of the demo edge.
    #[arg(long, env = "BIND", default_value = "127.0.0.1:3000", value_parser = |s: &str| parse_addr("BIND", s))]
    pub bind: SocketAddr,
    /// Seed of the simulated guild's activity (random if unset).
    #[arg(long, env = "DEMO_SEED", value_parser = |s: &str| parse_u64("DEMO_SEED", s, 0, u64::MAX))]
    pub seed: Option<u64>,
    /// Serve the legacy `/api/ws` bridge in the demo too.
    #[arg(long, env = "ENABLE_WS_BRIDGE", default_value = "false", num_args = 0..=1, default_missing_value = "true", value_parser = |s: &str| parse_bool("ENABLE_WS_BRIDGE", s))]
    pub enable_ws_bridge: bool,
    /// Address of a control API for browser tests (voice leave, link drop); off by default.
    #[arg(long, env = "DEMO_CONTROL", value_parser = |s: &str| parse_addr("DEMO_CONTROL", s))]
    pub demo_control: Option<SocketAddr>,
    /// HS256 key of the demo's sessions (random per run if unset): set it so an
    /// app can mint sessions the demo accepts.
    #[arg(long, env = "SESSION_SECRET", hide_env_values = true, value_parser = RawSecret::parser())]
    pub session_secret: Option<RawSecret>,
    /// Logging.
    #[command(flatten)]
    pub log: LogArgs,
}

/// `relay token`.
#[derive(Args, Debug, Clone)]
pub struct TokenArgs {
    /// The user id (`sub` claim); required.
    #[arg(long)]
    pub sub: Option<String>,
    /// Display name (`name` claim).
    #[arg(long)]
    pub name: Option<String>,
    /// A role to grant (`chat:write`, `voice:moderate`); repeat for several.
    #[arg(long = "role")]
    pub roles: Vec<String>,
    /// Lifetime, e.g. 1h, 30m, 7d.
    #[arg(long, env = "SESSION_TTL", default_value = DEFAULT_SESSION_TTL, value_parser = |s: &str| parse_session_ttl("SESSION_TTL", s))]
    pub ttl: Duration,
    /// HS256 key for session JWTs (required).
    #[arg(long, env = "SESSION_SECRET", hide_env_values = true, value_parser = RawSecret::parser())]
    pub session_secret: Option<RawSecret>,
}

// ---------------------------------------------------------------------------
// Validated configs
// ---------------------------------------------------------------------------

/// Logging settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogConfig {
    /// `LOG_FORMAT`.
    pub format: LogFormat,
    /// `RUST_LOG`, already checked to parse with [`LogSpec::parse`].
    pub spec: String,
}

/// Everything `relay edge` needs.
#[derive(Clone, Debug)]
pub struct EdgeConfig {
    /// `BIND`.
    pub bind: SocketAddr,
    /// `GATEWAY_WS_URL`.
    pub gateway_ws_url: WsUrl,
    /// `LINK_TOKEN`.
    pub link_token: Secret,
    /// `SESSION_SECRET`.
    pub session_secret: Secret,
    /// `ENABLE_WS_BRIDGE`.
    pub enable_ws_bridge: bool,
    /// `HEARTBEAT_MS`.
    pub heartbeat: Duration,
    /// `RATE_LIMIT_BURST` / `RATE_LIMIT_REFILL` / `RATE_LIMIT_WINDOW_MS`.
    pub rate_limit: LimitConfig,
    /// `QUEUE_CAPACITY`.
    pub queue_capacity: usize,
    /// `REPLAY_CAPACITY`.
    pub replay_capacity: usize,
    /// `REPLY_TIMEOUT_MS`.
    pub reply_timeout: Duration,
    /// `ACCESS`.
    pub access: AccessMode,
    /// `ALLOWED_ORIGINS`.
    pub allowed_origins: AllowedOrigins,
    /// Sign in with Discord and `SESSION_TTL`.
    pub signin: SignInConfig,
    /// `REDIS_URL` (a secret: it may hold a password).
    pub redis_url: Option<Secret>,
    /// `LOG_FORMAT` / `RUST_LOG`.
    pub log: LogConfig,
}

/// Everything `relay gateway` needs.
#[derive(Clone, Debug)]
pub struct GatewayConfig {
    /// `GATEWAY_BIND`.
    pub gateway_bind: SocketAddr,
    /// `LINK_TOKEN`.
    pub link_token: Secret,
    /// `DISCORD_BOT_TOKEN`.
    pub discord_bot_token: Secret,
    /// `DISCORD_GUILD_ID`: a snowflake.
    pub discord_guild_id: Option<String>,
    /// `DISCORD_MEMBERS_INTENT`.
    pub discord_members_intent: bool,
    /// `DISCORD_API_BASE`, without a trailing `/`.
    pub discord_api_base: HttpUrl,
    /// `DISCORD_GATEWAY_URL`.
    pub discord_gateway_url: Option<WsUrl>,
    /// `REDIS_URL` (a secret: it may hold a password).
    pub redis_url: Option<Secret>,
    /// `GATEWAY_LEASE_MS`.
    pub gateway_lease: Duration,
    /// `LOG_FORMAT` / `RUST_LOG`.
    pub log: LogConfig,
}

/// Everything `relay all` needs: both halves, sharing `LINK_TOKEN` and logging.
#[derive(Clone, Debug)]
pub struct AllConfig {
    /// The edge, whose `gateway_ws_url` is derived from `GATEWAY_BIND`.
    pub edge: EdgeConfig,
    /// The gateway.
    pub gateway: GatewayConfig,
}

/// Everything `relay demo` needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DemoConfig {
    /// `BIND`.
    pub bind: SocketAddr,
    /// `DEMO_SEED`.
    pub seed: Option<u64>,
    /// `ENABLE_WS_BRIDGE`.
    pub enable_ws_bridge: bool,
    /// `DEMO_CONTROL`: the test control API's address, if any.
    pub demo_control: Option<SocketAddr>,
    /// `SESSION_SECRET`, if given; otherwise the demo makes a random one.
    pub session_secret: Option<Secret>,
    /// `LOG_FORMAT` / `RUST_LOG`.
    pub log: LogConfig,
}

/// Everything `relay token` needs.
#[derive(Clone, Debug)]
pub struct TokenConfig {
    /// `sub`.
    pub sub: String,
    /// `name`.
    pub name: Option<String>,
    /// `roles`.
    pub roles: Vec<String>,
    /// Lifetime.
    pub ttl: Duration,
    /// `SESSION_SECRET`.
    pub session_secret: Secret,
}

/// A setting that is missing or unusable. Displays as one line naming it;
/// never contains a secret's value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigError {
    /// A required setting is absent.
    Missing {
        /// The environment variable (or, for `relay token --sub`, the flag).
        var: &'static str,
        /// The flag.
        flag: &'static str,
    },
    /// A secret (or other required text) is the empty string.
    Empty {
        /// The variable.
        var: &'static str,
    },
    /// A secret is not valid UTF-8.
    NotUtf8 {
        /// The variable.
        var: &'static str,
    },
    /// Settings that cannot work together.
    Invalid {
        /// The variable.
        var: &'static str,
        /// Why, in a few words.
        reason: String,
    },
    /// clap rejected the command line; one line from [`error_line`].
    Cli(String),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Missing { var, flag } if var == flag => write!(f, "{flag} is required"),
            ConfigError::Missing { var, flag } => {
                write!(f, "{var} is required (set {var} or pass {flag})")
            }
            ConfigError::Empty { var } => write!(f, "{var} must not be empty"),
            ConfigError::NotUtf8 { var } => write!(f, "{var} must be valid UTF-8"),
            ConfigError::Invalid { var, reason } => write!(f, "{var} {reason}"),
            ConfigError::Cli(line) => f.write_str(line),
        }
    }
}

impl std::error::Error for ConfigError {}

/// One line for a clap error that is not a help or version request: the
/// value parser's own message (which names the variable) when there is one,
/// else clap's message with its lines folded and the usage dropped.
pub fn error_line(err: &clap::Error) -> String {
    if err.kind() == ErrorKind::ValueValidation {
        if let Some(source) = std::error::Error::source(err) {
            return source.to_string();
        }
    }
    let rendered = err.render().to_string();
    let mut parts = Vec::new();
    for line in rendered.lines() {
        let line = line.trim();
        if line.starts_with("Usage:") || line.starts_with("For more information") {
            break;
        }
        if !line.is_empty() {
            parts.push(line.strip_prefix("error: ").unwrap_or(line));
        }
    }
    sanitize(&parts.join(" "), 400).into_owned()
}

fn secret(
    raw: Option<RawSecret>,
    var: &'static str,
    flag: &'static str,
) -> Result<Secret, ConfigError> {
    let raw = raw.ok_or(ConfigError::Missing { var, flag })?;
    let text = raw
        .0
        .into_string()
        .map_err(|_| ConfigError::NotUtf8 { var })?;
    if text.is_empty() {
        return Err(ConfigError::Empty { var });
    }
    Ok(Secret::new(text))
}

impl LogArgs {
    fn validate(self) -> LogConfig {
        LogConfig {
            format: self.log_format,
            spec: self.rust_log,
        }
    }
}

impl EdgeSettings {
    fn validate(
        self,
        gateway_ws_url: WsUrl,
        link_token: Secret,
        api_base: HttpUrl,
        redis_url: Option<Secret>,
        log: LogConfig,
    ) -> Result<EdgeConfig, ConfigError> {
        let session_secret = secret(self.session_secret, "SESSION_SECRET", "--session-secret")?;
        let signin = self.signin.validate(api_base)?;
        let rate_limit = LimitConfig::new(
            self.rate_limit_burst,
            self.rate_limit_refill,
            self.rate_limit_window_ms,
        )
        // The parsers already require ≥ 1 of each; this is the protocol's own check.
        .map_err(|e| ConfigError::Invalid {
            var: "RATE_LIMIT_BURST",
            reason: format!("cannot make a token bucket ({e:?})"),
        })?;
        Ok(EdgeConfig {
            bind: self.bind,
            gateway_ws_url,
            link_token,
            session_secret,
            enable_ws_bridge: self.enable_ws_bridge,
            heartbeat: self.heartbeat_ms,
            rate_limit,
            queue_capacity: self.queue_capacity,
            replay_capacity: self.replay_capacity,
            reply_timeout: self.reply_timeout_ms,
            access: self.access,
            allowed_origins: self.allowed_origins,
            signin,
            redis_url,
            log,
        })
    }
}

impl GatewaySettings {
    fn validate(
        self,
        link_token: Secret,
        redis_url: Option<Secret>,
        log: LogConfig,
    ) -> Result<GatewayConfig, ConfigError> {
        let discord_bot_token = secret(
            self.discord_bot_token,
            "DISCORD_BOT_TOKEN",
            "--discord-bot-token",
        )?;
        Ok(GatewayConfig {
            gateway_bind: self.gateway_bind,
            link_token,
            discord_bot_token,
            discord_guild_id: self.discord_guild_id,
            discord_members_intent: self.discord_members_intent,
            discord_api_base: self.discord_api_base,
            discord_gateway_url: self.discord_gateway_url,
            redis_url,
            gateway_lease: self.gateway_lease_ms,
            log,
        })
    }
}

impl LinkArgs {
    fn validate(self) -> Result<Secret, ConfigError> {
        secret(self.link_token, "LINK_TOKEN", "--link-token")
    }
}

impl EdgeArgs {
    /// Checks required settings; see [`ConfigError`].
    pub fn validate(self) -> Result<EdgeConfig, ConfigError> {
        let url = self.gateway_ws_url.ok_or(ConfigError::Missing {
            var: "GATEWAY_WS_URL",
            flag: "--gateway-ws-url",
        })?;
        let link_token = self.link.validate()?;
        let redis_url = self.redis.validate()?;
        self.edge.validate(
            url,
            link_token,
            self.discord_api_base,
            redis_url,
            self.log.validate(),
        )
    }
}

impl GatewayArgs {
    /// Checks required settings; see [`ConfigError`].
    pub fn validate(self) -> Result<GatewayConfig, ConfigError> {
        let link_token = self.link.validate()?;
        let redis_url = self.redis.validate()?;
        self.gateway
            .validate(link_token, redis_url, self.log.validate())
    }
}

impl AllArgs {
    /// Checks required settings and derives the edge's link URL from `GATEWAY_BIND`.
    pub fn validate(self) -> Result<AllConfig, ConfigError> {
        let link_token = self.link.validate()?;
        let log = self.log.validate();
        let url = WsUrl::for_local_link(self.gateway.gateway_bind);
        if self.edge.bind == self.gateway.gateway_bind {
            return Err(ConfigError::Invalid {
                var: "GATEWAY_BIND",
                reason: "must differ from BIND".into(),
            });
        }
        let api_base = self.gateway.discord_api_base.clone();
        let redis_url = self.redis.validate()?;
        let gateway = self
            .gateway
            .validate(link_token.clone(), redis_url.clone(), log.clone())?;
        let edge = self
            .edge
            .validate(url, link_token, api_base, redis_url, log)?;
        Ok(AllConfig { edge, gateway })
    }
}

impl DemoArgs {
    /// Nothing here is required; a `SESSION_SECRET` given must not be empty.
    pub fn validate(self) -> Result<DemoConfig, ConfigError> {
        let session_secret = match self.session_secret {
            Some(raw) => Some(secret(Some(raw), "SESSION_SECRET", "--session-secret")?),
            None => None,
        };
        Ok(DemoConfig {
            bind: self.bind,
            seed: self.seed,
            enable_ws_bridge: self.enable_ws_bridge,
            demo_control: self.demo_control,
            session_secret,
            log: self.log.validate(),
        })
    }
}

impl TokenArgs {
    /// Checks `--sub` and `SESSION_SECRET`.
    pub fn validate(self) -> Result<TokenConfig, ConfigError> {
        let sub = self.sub.ok_or(ConfigError::Missing {
            var: "--sub",
            flag: "--sub",
        })?;
        if sub.is_empty() {
            return Err(ConfigError::Empty { var: "--sub" });
        }
        let session_secret = secret(self.session_secret, "SESSION_SECRET", "--session-secret")?;
        Ok(TokenConfig {
            sub,
            name: self.name,
            roles: self.roles,
            ttl: self.ttl,
            session_secret,
        })
    }
}

// ---------------------------------------------------------------------------
// URLs
// ---------------------------------------------------------------------------

/// A checked `ws://` or `wss://` URL. `Display` and `Debug` hide `token` /
/// `access_token` query values; [`Url::as_str`] gives the full text.
#[derive(Clone, PartialEq, Eq)]
pub struct WsUrl(Url);

/// A checked `http://` or `https://` base URL, stored without a trailing `/`
/// so callers append `/channels/…`.
#[derive(Clone, PartialEq, Eq)]
pub struct HttpUrl(Url);

/// The parts both URL kinds share; [`WsUrl`] and [`HttpUrl`] deref to it.
/// `Debug` hides query credentials like theirs.
#[derive(Clone, PartialEq, Eq)]
pub struct Url {
    text: String,
    tls: bool,
    host: String,
    port: u16,
    /// Path and query, at least `/`.
    path: String,
}

impl Url {
    /// The whole URL as given (an [`HttpUrl`] without its trailing `/`).
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// `wss://` or `https://`.
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// The host (IPv6 in brackets), for connecting and the `Host` header.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port, explicit or the scheme's default (80 / 443).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Path and query, at least `/` (an [`HttpUrl`] has no query and no
    /// trailing `/`: `/api/v10`).
    pub fn path(&self) -> &str {
        &self.path
    }
}

impl fmt::Debug for Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Url({:?})", redact_query(&self.text))
    }
}

impl std::ops::Deref for WsUrl {
    type Target = Url;
    fn deref(&self) -> &Url {
        &self.0
    }
}

impl std::ops::Deref for HttpUrl {
    type Target = Url;
    fn deref(&self) -> &Url {
        &self.0
    }
}

impl WsUrl {
    /// Parses `s` for the setting `var`; the error names `var`.
    pub fn parse(var: &str, s: &str) -> Result<WsUrl, String> {
        Url::parse(var, s, "ws", "wss").map(WsUrl)
    }

    /// `GATEWAY_WS_URL` (CONTRACT.md §10): one URL or several, comma-separated
    /// (blanks around them ignored), each checked like [`WsUrl::parse`]. The
    /// result's text is the checked list joined by `,` (the link client splits
    /// it again); its host, port and path are the first gateway's.
    pub fn parse_list(var: &str, s: &str) -> Result<WsUrl, String> {
        let parts: Vec<&str> = s.split(',').map(str::trim).collect();
        if parts.len() == 1 {
            return Self::parse(var, s);
        }
        if parts.iter().any(|p| p.is_empty()) {
            return Err(format!("{var}: an empty entry in the comma-separated list"));
        }
        let urls = parts
            .iter()
            .map(|p| Url::parse(var, p, "ws", "wss"))
            .collect::<Result<Vec<_>, _>>()?;
        let mut first = urls[0].clone();
        first.text = urls
            .iter()
            .map(|u| u.text.as_str())
            .collect::<Vec<_>>()
            .join(",");
        Ok(WsUrl(first))
    }

    /// `ws://<addr>/link`, the address a local edge uses to reach a gateway
    /// bound to `addr`; a wildcard bind address (0.0.0.0, ::) becomes loopback.
    pub fn for_local_link(addr: SocketAddr) -> WsUrl {
        let ip = match addr.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        let addr = SocketAddr::new(ip, addr.port());
        let host = match ip {
            IpAddr::V4(ip) => ip.to_string(),
            IpAddr::V6(ip) => format!("[{ip}]"),
        };
        WsUrl(Url {
            text: format!("ws://{addr}{LINK_PATH}"),
            tls: false,
            host,
            port: addr.port(),
            path: LINK_PATH.to_owned(),
        })
    }
}

impl HttpUrl {
    /// Parses `s` for the setting `var`; the error names `var`. A query is not allowed.
    pub fn parse(var: &str, s: &str) -> Result<HttpUrl, String> {
        let mut url = Url::parse(var, s, "http", "https")?;
        if url.path.contains('?') {
            return Err(format!(
                "{var} must not have a query (got {})",
                quoted_url(s)
            ));
        }
        let trimmed = url.text.trim_end_matches('/').len();
        url.text.truncate(trimmed);
        let trimmed = url.path.trim_end_matches('/').len().max(1);
        url.path.truncate(trimmed);
        Ok(HttpUrl(url))
    }
}

impl fmt::Display for WsUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact_query(&self.0.text))
    }
}

impl fmt::Debug for WsUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WsUrl({:?})", redact_query(&self.0.text))
    }
}

impl fmt::Display for HttpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.text)
    }
}

impl fmt::Debug for HttpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HttpUrl({:?})", self.0.text)
    }
}

impl Url {
    /// A deliberately small URL reader: scheme, host (name, IPv4 or
    /// `[IPv6]`), optional port, path and query. It refuses what a
    /// configuration URL should not carry: credentials (they would be logged
    /// with the URL), a fragment, whitespace and control characters.
    ///
    /// Why not the `url` crate: what matters here is the policy (which
    /// schemes, no credentials, no fragment, an ASCII host, a port 1–65535),
    /// which `url` would not check, while its WHATWG normalisation (IDNA,
    /// percent-decoding of hosts, `\` read as `/`) would accept and rewrite
    /// values an operator should be told about; and it would add the ICU
    /// crates to the build. This reader is small, fuzzed (`config_value`) and
    /// property-tested against its own output.
    fn parse(var: &str, s: &str, plain: &str, tls: &str) -> Result<Url, String> {
        let must = |what: &str| format!("{var} must be {what} (got {})", quoted_url(s));
        let kind = format!("a {plain}:// or {tls}:// URL");
        let (scheme, rest) = s.split_once("://").ok_or_else(|| must(&kind))?;
        let is_tls = if scheme.eq_ignore_ascii_case(plain) {
            false
        } else if scheme.eq_ignore_ascii_case(tls) {
            true
        } else {
            return Err(must(&kind));
        };
        if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(must(&format!(
                "{kind} without spaces or control characters"
            )));
        }
        if s.contains('#') {
            return Err(must(&format!("{kind} without a #fragment")));
        }
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(end);
        if authority.contains('@') {
            return Err(must(&format!("{kind} without user:password@")));
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (ip, after) = v6.split_once(']').ok_or_else(|| must(&kind))?;
            ip.parse::<Ipv6Addr>().map_err(|_| must(&kind))?;
            let port = match after {
                "" => None,
                p => Some(p.strip_prefix(':').ok_or_else(|| must(&kind))?),
            };
            (&authority[..ip.len() + 2], port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        let host_ok = !host.is_empty()
            && (host.starts_with('[')
                || host
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_')));
        if !host_ok {
            return Err(must(&format!("{kind} with a host")));
        }
        let port = match port {
            None => {
                if is_tls {
                    443
                } else {
                    80
                }
            }
            Some(p) => Some(p)
                // u16's parser would also take "+80".
                .filter(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|p| p.parse::<u16>().ok())
                .filter(|p| *p != 0)
                .ok_or_else(|| must(&format!("{kind} with a port from 1 to 65535")))?,
        };
        let path = if path.is_empty() {
            "/".to_owned()
        } else if path.starts_with('?') {
            format!("/{path}")
        } else {
            path.to_owned()
        };
        Ok(Url {
            text: s.to_owned(),
            tls: is_tls,
            host: host.to_ascii_lowercase(),
            port,
            path,
        })
    }
}

// ---------------------------------------------------------------------------
// Value parsers: each error names its variable
// ---------------------------------------------------------------------------

/// A user-given value for an error message: cut, escaped, quoted. Never used on secrets.
fn quoted(s: &str) -> String {
    format!("\"{}\"", sanitize(s, 80))
}

/// A URL for an error message: [`quoted`], with what may be a credential
/// hidden — `user:password@` and `token` / `access_token` query values — since
/// the error line is printed and secrets never are (CONTRACT.md §1).
fn quoted_url(s: &str) -> String {
    quoted(&redact_query(&redact_userinfo(s)))
}

/// `scheme://[redacted]@host…` for a URL with userinfo. The authority ends at
/// the first `/` or `?`, as [`Url::parse`] reads it, and everything before its
/// last `@` goes: a password may hold any other character, `#` and `@` too.
fn redact_userinfo(s: &str) -> Cow<'_, str> {
    let Some(start) = s.find("://").map(|i| i + 3) else {
        return Cow::Borrowed(s);
    };
    let end = s[start..].find(['/', '?']).map_or(s.len(), |i| start + i);
    match s[start..end].rfind('@') {
        Some(at) => Cow::Owned(format!("{}{REDACTED}{}", &s[..start], &s[start + at..])),
        None => Cow::Borrowed(s),
    }
}

/// `ACCESS`: what a session sees and may do.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AccessMode {
    /// v1.0: every valid session sees every forwarded event; roles gate commands.
    #[default]
    Roles,
    /// v1.1: a session is a Discord member and sees and does only what
    /// Discord's permissions let that member (CONTRACT.md §8).
    Discord,
}

fn parse_access(s: &str) -> Result<AccessMode, String> {
    if s.eq_ignore_ascii_case("roles") {
        Ok(AccessMode::Roles)
    } else if s.eq_ignore_ascii_case("discord") {
        Ok(AccessMode::Discord)
    } else {
        Err(format!(
            "ACCESS must be roles or discord (got {:?})",
            sanitize(s, 64)
        ))
    }
}

fn parse_log_format(s: &str) -> Result<LogFormat, String> {
    s.parse()
}

fn parse_rust_log(s: &str) -> Result<String, String> {
    LogSpec::parse(s).map_err(|e| e.to_string())?;
    Ok(s.to_owned())
}

/// `true/false/1/0/yes/no/on/off`, any case.
pub fn parse_bool(var: &str, s: &str) -> Result<bool, String> {
    const TRUE: [&str; 4] = ["true", "1", "yes", "on"];
    const FALSE: [&str; 4] = ["false", "0", "no", "off"];
    if TRUE.iter().any(|t| t.eq_ignore_ascii_case(s)) {
        Ok(true)
    } else if FALSE.iter().any(|f| f.eq_ignore_ascii_case(s)) {
        Ok(false)
    } else {
        Err(format!(
            "{var} must be true/false/1/0/yes/no/on/off (got {})",
            quoted(s)
        ))
    }
}

fn parse_addr(var: &str, s: &str) -> Result<SocketAddr, String> {
    s.parse().map_err(|_| {
        format!(
            "{var} must be an IP address and port such as 127.0.0.1:3000 or [::1]:3000 (got {})",
            quoted(s)
        )
    })
}

fn parse_u64(var: &str, s: &str, min: u64, max: u64) -> Result<u64, String> {
    s.parse::<u64>()
        .ok()
        .filter(|n| (min..=max).contains(n))
        .ok_or_else(|| {
            format!(
                "{var} must be a whole number from {min} to {max} (got {})",
                quoted(s)
            )
        })
}

fn parse_ms(var: &str, s: &str) -> Result<Duration, String> {
    parse_u64(var, s, 1, MAX_MS).map(Duration::from_millis)
}

fn parse_u32(var: &str, s: &str) -> Result<u32, String> {
    // MAX_COUNT fits in a u32.
    parse_u64(var, s, 1, MAX_COUNT).map(|n| n as u32)
}

fn parse_usize(var: &str, s: &str) -> Result<usize, String> {
    parse_u64(var, s, 1, MAX_COUNT).map(|n| n as usize)
}

fn parse_snowflake(var: &str, s: &str) -> Result<String, String> {
    if relay_protocol::validate::is_snowflake(s) {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "{var} must be a Discord snowflake: 1 to 20 digits (got {})",
            quoted(s)
        ))
    }
}

// ---------------------------------------------------------------------------
// Checks over any value: the fuzz entry and the property tests share them
// ---------------------------------------------------------------------------

/// Longest error line any value may produce: the quoted value is cut to 80
/// characters, but escaping can grow each of them to a few.
#[cfg(any(test, feature = "fuzzing"))]
const MAX_ERROR_CHARS: usize = 2048;

/// A secret the checks plant in URLs; no error or display may show it.
#[cfg(any(test, feature = "fuzzing"))]
const PLANTED: &str = "Pl4ntedS3cret";

/// Runs value parser `which` (wrapping) on `value` and panics unless the
/// outcome is sound: an error is one bounded line that starts with its
/// setting's name; a value is in range, and a URL parses back to itself.
#[cfg(any(test, feature = "fuzzing"))]
fn check_value(which: u8, value: &str) {
    let in_range = |n: u64, max: u64| assert!((1..=max).contains(&n), "{n}");
    let (name, result) = match which % 11 {
        0 => (
            "ENABLE_WS_BRIDGE",
            parse_bool("ENABLE_WS_BRIDGE", value).map(|b| {
                let table = if b {
                    ["true", "1", "yes", "on"]
                } else {
                    ["false", "0", "no", "off"]
                };
                assert!(table.iter().any(|t| t.eq_ignore_ascii_case(value)));
            }),
        ),
        1 => (
            "BIND",
            parse_addr("BIND", value).map(|a| assert_eq!(a.to_string().parse(), Ok(a))),
        ),
        2 => (
            "HEARTBEAT_MS",
            parse_ms("HEARTBEAT_MS", value).map(|d| in_range(d.as_millis() as u64, MAX_MS)),
        ),
        3 => (
            "RATE_LIMIT_BURST",
            parse_u32("RATE_LIMIT_BURST", value).map(|n| in_range(n.into(), MAX_COUNT)),
        ),
        4 => (
            "QUEUE_CAPACITY",
            parse_usize("QUEUE_CAPACITY", value).map(|n| in_range(n as u64, MAX_COUNT)),
        ),
        5 => (
            "DISCORD_GUILD_ID",
            parse_snowflake("DISCORD_GUILD_ID", value).map(|id| {
                assert!(id == value && (1..=20).contains(&id.len()));
                assert!(id.bytes().all(|b| b.is_ascii_digit()));
            }),
        ),
        6 => (
            "SESSION_TTL",
            parse_session_ttl("SESSION_TTL", value)
                .map(|d| assert!(d >= Duration::from_secs(1) && d <= MAX_SESSION_TTL)),
        ),
        7 => ("LOG_FORMAT", parse_log_format(value).map(drop)),
        8 => (
            "RUST_LOG",
            parse_rust_log(value).map(|spec| assert_eq!(spec, value)),
        ),
        9 => (
            "GATEWAY_WS_URL",
            WsUrl::parse("GATEWAY_WS_URL", value).map(|u| {
                assert_eq!(u.as_str(), value);
                assert_eq!(
                    u.is_tls(),
                    value
                        .get(..6)
                        .is_some_and(|p| p.eq_ignore_ascii_case("wss://"))
                );
                check_url(&u.0);
                assert_eq!(u.to_string(), redact_query(value));
                assert_eq!(WsUrl::parse("GATEWAY_WS_URL", u.as_str()).as_ref(), Ok(&u));
            }),
        ),
        _ => (
            "DISCORD_API_BASE",
            HttpUrl::parse("DISCORD_API_BASE", value).map(|u| {
                assert!(!u.as_str().ends_with('/') && !u.path().contains('?'));
                check_url(&u.0);
                assert_eq!(
                    HttpUrl::parse("DISCORD_API_BASE", u.as_str()).as_ref(),
                    Ok(&u)
                );
            }),
        ),
    };
    if let Err(line) = result {
        check_error_line(name, &line);
    }
}

#[cfg(any(test, feature = "fuzzing"))]
fn check_url(url: &Url) {
    assert!(!url.host.is_empty() && url.host == url.host.to_ascii_lowercase());
    assert!(url.port != 0 && url.path.starts_with('/'));
}

/// One line, naming its setting first, bounded however long the value.
#[cfg(any(test, feature = "fuzzing"))]
fn check_error_line(name: &str, line: &str) {
    assert!(line.starts_with(name), "{line}");
    assert!(
        !line
            .chars()
            .any(|c| c.is_control() || c == '\u{2028}' || c == '\u{2029}'),
        "{line:?}"
    );
    assert!(
        line.chars().count() <= MAX_ERROR_CHARS,
        "{} chars",
        line.chars().count()
    );
}

/// Plants [`PLANTED`] around `value` as a URL's password and as its
/// `access_token` query value, and panics if an error or a display shows it.
#[cfg(any(test, feature = "fuzzing"))]
fn check_planted(which: u8, value: &str) {
    let scheme = ["ws", "wss", "http", "https"][usize::from(which % 4)];
    let cut = (0..=value.len() / 2)
        .rev()
        .find(|&i| value.is_char_boundary(i))
        .unwrap_or(0);
    let (path, query) = value.split_at(cut);
    let path = path.replace(['?', '#'], "");
    let query = query.replace('#', "");
    if [value, &path, &query]
        .iter()
        .any(|part| part.contains(PLANTED))
    {
        // Then a quote of the value itself would show it, rightly.
        return;
    }
    for url in [
        format!("{scheme}://user:{PLANTED}@{value}"),
        format!(
            "{scheme}://{path}?{query}&{}={PLANTED}",
            crate::auth::ACCESS_TOKEN_PARAM
        ),
    ] {
        let shown = match WsUrl::parse("X", &url) {
            Ok(u) => format!("{u} {u:?}"),
            Err(e) => e,
        };
        assert!(!shown.contains(PLANTED), "{shown}");
        if let Err(e) = HttpUrl::parse("X", &url) {
            assert!(!e.contains(PLANTED), "{e}");
        }
    }
}

/// A secret setting (`LINK_TOKEN`) read from raw bytes: its error names the
/// setting and is the same whatever the bytes, and the secret never prints.
#[cfg(any(test, feature = "fuzzing"))]
fn check_secret(bytes: &[u8]) {
    #[cfg(unix)]
    let raw = <OsString as std::os::unix::ffi::OsStringExt>::from_vec(bytes.to_vec());
    #[cfg(not(unix))]
    let raw = OsString::from(String::from_utf8_lossy(bytes).into_owned());
    match secret(Some(RawSecret(raw)), "LINK_TOKEN", "--link-token") {
        Ok(secret) => {
            assert_eq!(secret.expose().as_bytes(), bytes);
            assert_eq!(
                format!("{secret} {secret:?}"),
                format!("{REDACTED} {REDACTED}")
            );
        }
        Err(e) => {
            let line = e.to_string();
            assert!(
                line == "LINK_TOKEN must not be empty" || line == "LINK_TOKEN must be valid UTF-8",
                "{line}"
            );
        }
    }
}

/// Fuzz entry over config values: the first byte picks a value parser
/// (`BIND`, the numbers, `ENABLE_WS_BRIDGE`, `DISCORD_GUILD_ID`, `--ttl`,
/// `LOG_FORMAT`, `RUST_LOG`, the ws:// and http:// URLs), the rest is the
/// value. Panics unless [`check_value`] holds, a secret planted in a URL
/// built around the value never shows, and the rest read as a secret setting
/// is reported by name only.
#[cfg(feature = "fuzzing")]
pub fn fuzz_config(bytes: &[u8]) {
    let Some((&which, rest)) = bytes.split_first() else {
        return;
    };
    let value = String::from_utf8_lossy(rest);
    check_value(which, &value);
    check_planted(which, &value);
    check_secret(rest);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateway_ws_url_takes_a_list() {
        let one = WsUrl::parse_list("GATEWAY_WS_URL", "ws://127.0.0.1:8787/link").unwrap();
        assert_eq!(one.as_str(), "ws://127.0.0.1:8787/link");
        let two = WsUrl::parse_list(
            "GATEWAY_WS_URL",
            "ws://10.0.0.1:8787/link, wss://gw2.example/link",
        )
        .unwrap();
        assert_eq!(
            two.as_str(),
            "ws://10.0.0.1:8787/link,wss://gw2.example/link"
        );
        assert_eq!((two.host(), two.port()), ("10.0.0.1", 8787));
        for bad in [
            "ws://a/link,",
            "ws://a/link,,ws://b/link",
            "ws://a/link,http://b/link",
        ] {
            let err = WsUrl::parse_list("GATEWAY_WS_URL", bad).unwrap_err();
            assert!(err.contains("GATEWAY_WS_URL"), "{bad}: {err}");
        }
    }
    use clap::{CommandFactory, FromArgMatches};
    use proptest::prelude::*;

    /// Parses `args` with every `env = …` removed, so tests do not depend on
    /// (or race with) the process environment.
    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        let cmd = Cli::command().mut_subcommands(|sc| sc.mut_args(|a| a.env(None::<&str>)));
        let matches =
            cmd.try_get_matches_from(std::iter::once("relay").chain(args.iter().copied()))?;
        Cli::from_arg_matches(&matches)
    }

    /// One line from parsing and validating, the way `main` reports it.
    fn outcome(args: &[&str]) -> Result<String, String> {
        let cli = parse(args).map_err(|e| error_line(&e))?;
        let shown = match cli.command {
            Command::Edge(a) => a.validate().map(|c| format!("{c:?}")),
            Command::Gateway(a) => a.validate().map(|c| format!("{c:?}")),
            Command::All(a) => a.validate().map(|c| format!("{c:?}")),
            Command::Demo(a) => a.validate().map(|c| format!("{c:?}")),
            Command::Token(a) => a.validate().map(|c| format!("{c:?}")),
        };
        shown.map_err(|e| e.to_string())
    }

    #[test]
    fn redis_url_is_optional_checked_and_never_quoted() {
        assert!(edge_ok(&[]).redis_url.is_none());
        let c = edge_ok(&["--redis-url", "redis://:hunter2@127.0.0.1:6379/0"]);
        assert_eq!(
            c.redis_url.as_ref().map(|s| s.expose()),
            Some("redis://:hunter2@127.0.0.1:6379/0")
        );
        assert!(!format!("{c:?}").contains("hunter2"), "Debug hides the URL");
        for bad in ["http://:hunter2@h:1", "redis://:hunter2@h:notaport"] {
            let args = [
                "edge",
                "--gateway-ws-url",
                "ws://h/link",
                "--link-token",
                "l",
                "--session-secret",
                "s",
                "--redis-url",
                bad,
            ];
            let line = outcome(&args).err().unwrap_or_default();
            assert!(line.starts_with("REDIS_URL "), "{bad}: {line}");
            assert!(!line.contains("hunter2"), "{line}");
        }
        let gw = |extra: &[&str]| {
            let mut args = vec!["gateway", "--link-token", "l", "--discord-bot-token", "b"];
            args.extend_from_slice(extra);
            match parse(&args).map(|c| c.command) {
                Ok(Command::Gateway(a)) => a.validate().map_err(|e| e.to_string()),
                other => panic!("{other:?}"),
            }
        };
        let g = gw(&[]).unwrap();
        assert_eq!(
            (g.redis_url.is_none(), g.gateway_lease),
            (true, Duration::from_secs(10))
        );
        let g = gw(&[
            "--redis-url",
            "rediss://r.example:6380",
            "--gateway-lease-ms",
            "3000",
        ])
        .unwrap();
        assert_eq!(g.gateway_lease, Duration::from_secs(3));
        assert!(g.redis_url.is_some());
    }

    fn edge_ok(extra: &[&str]) -> EdgeConfig {
        let mut args = vec![
            "edge",
            "--gateway-ws-url",
            "ws://127.0.0.1:8787/link",
            "--link-token",
            "link-secret-value",
            "--session-secret",
            "session-secret-value",
        ];
        args.extend_from_slice(extra);
        match parse(&args).map(|c| c.command) {
            Ok(Command::Edge(a)) => match a.validate() {
                Ok(cfg) => cfg,
                Err(e) => panic!("{e}"),
            },
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn edge_defaults_match_the_contract() {
        let c = edge_ok(&[]);
        assert_eq!(c.bind.to_string(), "127.0.0.1:3000");
        assert!(!c.enable_ws_bridge);
        assert_eq!(c.heartbeat, Duration::from_millis(15_000));
        assert_eq!(c.rate_limit, LimitConfig::default());
        assert_eq!(c.queue_capacity, 1000);
        assert_eq!(c.replay_capacity, 4096);
        assert_eq!(c.reply_timeout, Duration::from_millis(5000));
        assert_eq!(
            c.log,
            LogConfig {
                format: LogFormat::Text,
                spec: "info".into()
            }
        );
        assert_eq!(c.link_token.expose(), "link-secret-value");
        assert_eq!(c.session_secret.expose(), "session-secret-value");
        assert_eq!(c.gateway_ws_url.host(), "127.0.0.1");
        assert_eq!(c.gateway_ws_url.port(), 8787);
        assert_eq!(c.gateway_ws_url.path(), "/link");
    }

    #[test]
    fn every_edge_setting_has_its_flag() {
        #[rustfmt::skip]
        let flags = [
            "--bind", "0.0.0.0:8080",
            "--enable-ws-bridge", "YES",
            "--heartbeat-ms", "250",
            "--rate-limit-burst", "3",
            "--rate-limit-refill", "2",
            "--rate-limit-window-ms", "1000",
            "--queue-capacity", "7",
            "--replay-capacity", "9",
            "--reply-timeout-ms", "1500",
            "--log-format", "json",
            "--rust-log", "debug,tungstenite=warn",
        ];
        let c = edge_ok(&flags);
        assert_eq!(c.bind.to_string(), "0.0.0.0:8080");
        assert!(c.enable_ws_bridge);
        assert_eq!(c.heartbeat, Duration::from_millis(250));
        assert_eq!((c.rate_limit.burst, c.rate_limit.refill), (3, 2));
        assert_eq!(c.rate_limit.window, Duration::from_secs(1));
        assert_eq!((c.queue_capacity, c.replay_capacity), (7, 9));
        assert_eq!(c.reply_timeout, Duration::from_millis(1500));
        assert_eq!(c.log.format, LogFormat::Json);
        assert_eq!(c.log.spec, "debug,tungstenite=warn");
        // A bare --enable-ws-bridge means true.
        assert!(edge_ok(&["--enable-ws-bridge"]).enable_ws_bridge);
        assert!(!edge_ok(&["--enable-ws-bridge=off"]).enable_ws_bridge);
    }

    #[test]
    fn missing_required_settings_name_the_variable() {
        let edge = [
            "--gateway-ws-url",
            "ws://h/link",
            "--link-token",
            "l",
            "--session-secret",
            "s",
        ];
        let gateway = ["--link-token", "l", "--discord-bot-token", "b"];
        let token = ["--sub", "1", "--session-secret", "s"];
        let all = [
            "--link-token",
            "l",
            "--session-secret",
            "s",
            "--discord-bot-token",
            "b",
        ];
        // (subcommand, a complete set of args, the index of the flag to drop, the expected line)
        #[rustfmt::skip]
        let cases: [(&str, &[&str], usize, &str); 10] = [
            ("edge", &edge, 0, "GATEWAY_WS_URL is required (set GATEWAY_WS_URL or pass --gateway-ws-url)"),
            ("edge", &edge, 2, "LINK_TOKEN is required (set LINK_TOKEN or pass --link-token)"),
            ("edge", &edge, 4, "SESSION_SECRET is required (set SESSION_SECRET or pass --session-secret)"),
            ("gateway", &gateway, 0, "LINK_TOKEN is required (set LINK_TOKEN or pass --link-token)"),
            ("gateway", &gateway, 2, "DISCORD_BOT_TOKEN is required (set DISCORD_BOT_TOKEN or pass --discord-bot-token)"),
            ("all", &all, 0, "LINK_TOKEN is required (set LINK_TOKEN or pass --link-token)"),
            ("all", &all, 2, "SESSION_SECRET is required (set SESSION_SECRET or pass --session-secret)"),
            ("all", &all, 4, "DISCORD_BOT_TOKEN is required (set DISCORD_BOT_TOKEN or pass --discord-bot-token)"),
            ("token", &token, 0, "--sub is required"),
            ("token", &token, 2, "SESSION_SECRET is required (set SESSION_SECRET or pass --session-secret)"),
        ];
        for (sub, full, drop, want) in cases {
            let mut args = vec![sub];
            let kept = full
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != drop && *i != drop + 1);
            args.extend(kept.map(|(_, a)| *a));
            assert_eq!(outcome(&args), Err(want.to_string()), "{args:?}");
            // And the complete set passes.
            let mut complete = vec![sub];
            complete.extend_from_slice(full);
            assert!(
                outcome(&complete).is_ok(),
                "{complete:?}: {:?}",
                outcome(&complete)
            );
        }
    }

    #[test]
    fn empty_secrets_are_named_not_shown() {
        assert_eq!(
            outcome(&["gateway", "--link-token", "", "--discord-bot-token", "b"]),
            Err("LINK_TOKEN must not be empty".into())
        );
        assert_eq!(
            outcome(&["token", "--sub", "1", "--session-secret", ""]),
            Err("SESSION_SECRET must not be empty".into())
        );
    }

    #[cfg(unix)]
    #[test]
    fn non_utf8_secret_is_named_not_shown() {
        use std::ffi::OsStr;
        use std::os::unix::ffi::OsStrExt;
        let bad = OsStr::from_bytes(b"s3cr\xffet");
        let cmd = Cli::command().mut_subcommands(|sc| sc.mut_args(|a| a.env(None::<&str>)));
        let head = [
            "relay",
            "gateway",
            "--discord-bot-token",
            "b",
            "--link-token",
        ];
        let args: Vec<&OsStr> = head.iter().map(OsStr::new).chain([bad]).collect();
        let cli = cmd
            .try_get_matches_from(args)
            .and_then(|m| Cli::from_arg_matches(&m));
        let line = match cli.map(|c| c.command) {
            Ok(Command::Gateway(a)) => a.validate().err().map(|e| e.to_string()),
            _ => None,
        };
        assert_eq!(line.as_deref(), Some("LINK_TOKEN must be valid UTF-8"));
    }

    #[test]
    fn bool_table() {
        for s in ["true", "TRUE", "1", "yes", "Yes", "on", "ON"] {
            assert_eq!(parse_bool("ENABLE_WS_BRIDGE", s), Ok(true), "{s:?}");
        }
        for s in ["false", "False", "0", "no", "NO", "off", "Off"] {
            assert_eq!(parse_bool("ENABLE_WS_BRIDGE", s), Ok(false), "{s:?}");
        }
        for s in ["", "2", "y", "enable", " true", "truee", "-1"] {
            let e = parse_bool("ENABLE_WS_BRIDGE", s).err().unwrap_or_default();
            assert!(e.starts_with("ENABLE_WS_BRIDGE must be"), "{s:?}: {e}");
        }
    }

    #[test]
    fn allowed_origins() {
        assert!(edge_ok(&[]).allowed_origins.is_empty());
        assert!(edge_ok(&["--allowed-origins", ""])
            .allowed_origins
            .is_empty());
        let cfg = edge_ok(&[
            "--allowed-origins",
            "https://app.example.com, http://localhost:5173",
        ]);
        let got: Vec<&str> = cfg
            .allowed_origins
            .origins()
            .iter()
            .map(|o| o.as_str())
            .collect();
        assert_eq!(got, ["https://app.example.com", "http://localhost:5173"]);
    }

    #[test]
    fn malformed_values_name_the_variable_in_one_line() {
        let base = [
            "--gateway-ws-url",
            "ws://h/link",
            "--link-token",
            "l",
            "--session-secret",
            "s",
        ];
        #[rustfmt::skip]
        let cases: [(&[&str], &str); 17] = [
            (&["--gateway-ws-url", "http://h/link"], "GATEWAY_WS_URL must be a ws:// or wss:// URL"),
            (&["--gateway-ws-url", "ws://"], "GATEWAY_WS_URL must be a ws:// or wss:// URL with a host"),
            (&["--gateway-ws-url", "ws://h:99999/"], "GATEWAY_WS_URL must be a ws:// or wss:// URL with a port"),
            (&["--gateway-ws-url", "ws://u:p@h/"], "GATEWAY_WS_URL must be a ws:// or wss:// URL without user:password@"),
            (&["--gateway-ws-url", "gateway:8787"], "GATEWAY_WS_URL must be a ws:// or wss:// URL"),
            (&["--enable-ws-bridge", "maybe"], "ENABLE_WS_BRIDGE must be true/false/1/0/yes/no/on/off"),
            (&["--heartbeat-ms", "0"], "HEARTBEAT_MS must be a whole number from 1 to 86400000"),
            (&["--heartbeat-ms", "fast"], "HEARTBEAT_MS must be a whole number"),
            (&["--rate-limit-burst", "1.5"], "RATE_LIMIT_BURST must be a whole number"),
            (&["--queue-capacity", "99999999999"], "QUEUE_CAPACITY must be a whole number from 1 to 1000000"),
            (&["--replay-capacity", "0"], "REPLAY_CAPACITY must be"),
            (&["--bind", "localhost"], "BIND must be an IP address and port"),
            (&["--log-format", "xml"], "LOG_FORMAT must be text or json"),
            (&["--rust-log", "chatty"], "RUST_LOG entry \"chatty\" is not a level"),
            (&["--allowed-origins", "https://app.example.com/chat"], "ALLOWED_ORIGINS entry \"https://app.example.com/chat\" must be an origin without a path"),
            (&["--allowed-origins", "app.example.com"], "ALLOWED_ORIGINS entry \"app.example.com\" needs a scheme and a host"),
            (&["--allowed-origins", "*"], "ALLOWED_ORIGINS must list exact origins"),
        ];
        for (bad, want) in cases {
            let mut args = vec!["edge"];
            // Each flag may be given once: leave out the base value the case replaces.
            for pair in base.chunks(2).filter(|p| p[0] != bad[0]) {
                args.extend_from_slice(pair);
            }
            args.extend_from_slice(bad);
            let line = outcome(&args).err().unwrap_or_default();
            assert!(line.starts_with(want), "{args:?}: {line}");
            assert!(!line.contains('\n'), "{line:?}");
            // clap's own rendering names the variable too.
            let rendered = parse(&args)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            let var = want.split_whitespace().next().unwrap_or_default();
            assert!(rendered.contains(var), "{rendered}");
        }
        let gw = ["gateway", "--link-token", "l", "--discord-bot-token", "b"];
        #[rustfmt::skip]
        let cases = [
            (["--discord-guild-id", "abc"], "DISCORD_GUILD_ID must be a Discord snowflake"),
            (["--discord-guild-id", "123456789012345678901"], "DISCORD_GUILD_ID must be a Discord snowflake"),
            (["--discord-api-base", "ftp://x"], "DISCORD_API_BASE must be a http:// or https:// URL"),
            (["--discord-api-base", "https://x/api?v=1"], "DISCORD_API_BASE must not have a query"),
            (["--discord-gateway-url", "https://gateway.discord.gg"], "DISCORD_GATEWAY_URL must be a ws:// or wss:// URL"),
            (["--gateway-bind", "8787"], "GATEWAY_BIND must be an IP address and port"),
        ];
        for (bad, want) in cases {
            let args: Vec<&str> = gw.iter().chain(bad.iter()).copied().collect();
            let line = outcome(&args).err().unwrap_or_default();
            assert!(line.starts_with(want), "{args:?}: {line}");
        }
        let line = outcome(&[
            "token",
            "--sub",
            "1",
            "--session-secret",
            "s",
            "--ttl",
            "0s",
        ])
        .err();
        assert!(line
            .unwrap_or_default()
            .starts_with("SESSION_TTL must be a duration"));
    }

    #[test]
    fn other_clap_errors_fold_into_one_line() {
        let line = outcome(&["edge", "--no-such-flag"])
            .err()
            .unwrap_or_default();
        assert!(
            line.contains("--no-such-flag") && !line.contains('\n'),
            "{line}"
        );
        let line = outcome(&["launch"]).err().unwrap_or_default();
        assert!(line.contains("launch") && !line.contains('\n'), "{line}");
    }

    #[test]
    fn gateway_settings() {
        let out = parse(&[
            "gateway",
            "--link-token",
            "l",
            "--discord-bot-token",
            "bot-secret",
            "--discord-guild-id",
            "123456789012345678",
            "--discord-api-base",
            "http://127.0.0.1:9000/api/v10/",
            "--discord-gateway-url",
            "WSS://Gateway.Discord.gg/?v=10&encoding=json",
            "--gateway-bind",
            "[::1]:9999",
        ]);
        let Ok(Command::Gateway(a)) = out.map(|c| c.command) else {
            panic!("parse failed")
        };
        let c = a.validate().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.gateway_bind.to_string(), "[::1]:9999");
        assert_eq!(c.discord_guild_id.as_deref(), Some("123456789012345678"));
        assert_eq!(c.discord_api_base.as_str(), "http://127.0.0.1:9000/api/v10");
        assert_eq!(c.discord_api_base.path(), "/api/v10");
        assert_eq!(c.discord_api_base.port(), 9000);
        assert!(!c.discord_api_base.is_tls());
        let g = c
            .discord_gateway_url
            .unwrap_or_else(|| WsUrl::for_local_link(c.gateway_bind));
        assert!(g.is_tls());
        assert_eq!((g.host(), g.port()), ("gateway.discord.gg", 443));
        assert_eq!(g.path(), "/?v=10&encoding=json");
        assert_eq!(c.discord_bot_token.expose(), "bot-secret");

        let d = parse(&["gateway", "--link-token", "l", "--discord-bot-token", "b"]);
        let Ok(Command::Gateway(a)) = d.map(|c| c.command) else {
            panic!("parse failed")
        };
        let c = a.validate().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.gateway_bind.to_string(), "127.0.0.1:8787");
        assert_eq!(c.discord_api_base.as_str(), "https://discord.com/api/v10");
        assert_eq!(c.discord_guild_id, None);
        assert!(c.discord_gateway_url.is_none());
    }

    #[test]
    fn all_derives_the_link_url_from_gateway_bind() {
        let run = |bind: &str| {
            let out = parse(&[
                "all",
                "--link-token",
                "l",
                "--session-secret",
                "s",
                "--discord-bot-token",
                "b",
                "--gateway-bind",
                bind,
            ]);
            let Ok(Command::All(a)) = out.map(|c| c.command) else {
                panic!("parse failed")
            };
            a.validate()
        };
        let c = run("127.0.0.1:8787").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.edge.gateway_ws_url.as_str(), "ws://127.0.0.1:8787/link");
        assert_eq!(c.edge.link_token, c.gateway.link_token);
        let c = run("0.0.0.0:9000").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.edge.gateway_ws_url.as_str(), "ws://127.0.0.1:9000/link");
        let c = run("[::]:9000").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.edge.gateway_ws_url.as_str(), "ws://[::1]:9000/link");
        assert_eq!(c.edge.gateway_ws_url.host(), "[::1]");
        assert_eq!(
            run("127.0.0.1:3000")
                .err()
                .map(|e| e.to_string())
                .as_deref(),
            Some("GATEWAY_BIND must differ from BIND")
        );
    }

    #[test]
    fn token_and_demo() {
        let out = parse(&[
            "token",
            "--sub",
            "42",
            "--name",
            "Ada",
            "--role",
            "chat:write",
            "--role",
            "voice:moderate",
            "--ttl",
            "90m",
            "--session-secret",
            "k",
        ]);
        let Ok(Command::Token(a)) = out.map(|c| c.command) else {
            panic!("parse failed")
        };
        let c = a.validate().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((c.sub.as_str(), c.name.as_deref()), ("42", Some("Ada")));
        assert_eq!(c.roles, ["chat:write", "voice:moderate"]);
        assert_eq!(c.ttl, Duration::from_secs(5400));
        let out = parse(&["token", "--sub", "1", "--session-secret", "k"]);
        let Ok(Command::Token(a)) = out.map(|c| c.command) else {
            panic!("parse failed")
        };
        assert_eq!(a.ttl, Duration::from_secs(12 * 3600));

        let out = parse(&["demo", "--seed", "7"]);
        let Ok(Command::Demo(a)) = out.map(|c| c.command) else {
            panic!("parse failed")
        };
        let c = a.validate().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (c.bind.to_string().as_str(), c.seed),
            ("127.0.0.1:3000", Some(7))
        );
        assert!(c.session_secret.is_none());

        // An app minting sessions for the demo fixes its key; never printed.
        let out = parse(&["demo", "--session-secret", "app-demo-key"]);
        let Ok(Command::Demo(a)) = out.map(|c| c.command) else {
            panic!("parse failed")
        };
        let c = a.validate().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            c.session_secret.as_ref().map(|s| s.expose()),
            Some("app-demo-key")
        );
        assert!(!format!("{c:?}").contains("app-demo-key"));
        let out = parse(&["demo", "--session-secret", ""]);
        let Ok(Command::Demo(a)) = out.map(|c| c.command) else {
            panic!("parse failed")
        };
        let e = a.validate().expect_err("an empty secret is refused");
        assert!(e.to_string().contains("SESSION_SECRET"), "{e}");
    }

    #[test]
    fn signin_settings() {
        let c = edge_ok(&[]).signin;
        assert!(c.client.is_none() && c.public_url.is_none());
        assert_eq!(c.authorize_url.as_str(), DEFAULT_AUTHORIZE_URL);
        assert_eq!(c.api_base.as_str(), DEFAULT_API_BASE);
        assert_eq!(c.session_ttl, Duration::from_secs(12 * 3600));
        #[rustfmt::skip]
        let c = edge_ok(&[
            "--discord-client-id", "123456789012345678",
            "--discord-client-secret", "client-secret-value",
            "--public-url", "https://chat.example.com/",
            "--discord-authorize-url", "http://127.0.0.1:9/oauth2/authorize",
            "--discord-api-base", "http://127.0.0.1:9/api/v10",
            "--session-ttl", "30m",
        ])
        .signin;
        let client = c.client.as_ref().expect("both halves set");
        assert_eq!(client.id, "123456789012345678");
        assert_eq!(client.secret.expose(), "client-secret-value");
        assert!(!format!("{c:?}").contains("client-secret-value"));
        assert_eq!(
            c.public_url.map(|u| u.as_str().to_owned()).as_deref(),
            Some("https://chat.example.com")
        );
        assert_eq!(c.api_base.as_str(), "http://127.0.0.1:9/api/v10");
        assert_eq!(c.session_ttl, Duration::from_secs(1800));
        let base = [
            "edge",
            "--gateway-ws-url",
            "ws://h/link",
            "--link-token",
            "l",
            "--session-secret",
            "s",
        ];
        let with = |extra: &[&str]| {
            let args: Vec<&str> = base.iter().chain(extra).copied().collect();
            outcome(&args).err().unwrap_or_default()
        };
        #[rustfmt::skip]
        let cases: [(&[&str], &str); 7] = [
            (&["--discord-client-id", "1"], "DISCORD_CLIENT_SECRET is required when DISCORD_CLIENT_ID is set"),
            (&["--discord-client-secret", "x"], "DISCORD_CLIENT_ID is required when DISCORD_CLIENT_SECRET is set"),
            (&["--discord-client-id", "abc"], "DISCORD_CLIENT_ID must be a Discord snowflake"),
            (&["--discord-client-id", "1", "--discord-client-secret", ""], "DISCORD_CLIENT_SECRET must not be empty"),
            (&["--public-url", "https://a.example/app"], "PUBLIC_URL must be an origin"),
            (&["--discord-authorize-url", "discord.com"], "DISCORD_AUTHORIZE_URL must be a http:// or https:// URL"),
            (&["--session-ttl", "0s"], "SESSION_TTL must be a duration from 1s"),
        ];
        for (extra, want) in cases {
            let line = with(extra);
            assert!(line.starts_with(want), "{extra:?}: {line}");
        }
        // relay all reads DISCORD_API_BASE once, for both halves.
        let all = outcome(&[
            "all",
            "--link-token",
            "l",
            "--session-secret",
            "s",
            "--discord-bot-token",
            "b",
            "--discord-api-base",
            "http://127.0.0.1:9/api/v10",
        ]);
        assert!(all.is_ok_and(|c| c.matches("http://127.0.0.1:9/api/v10").count() == 2));
    }

    #[test]
    fn secrets_never_appear_in_debug_output() {
        let secrets = [
            "link-secret-value",
            "session-secret-value",
            "bot-secret-value",
        ];
        let args = [
            "all",
            "--link-token",
            secrets[0],
            "--session-secret",
            secrets[1],
            "--discord-bot-token",
            secrets[2],
        ];
        let cli = parse(&args).unwrap_or_else(|e| panic!("{e}"));
        let raw = format!("{cli:?}");
        let Command::All(a) = cli.command else {
            panic!("not all")
        };
        let cfg = format!("{:?}", a.validate().unwrap_or_else(|e| panic!("{e}")));
        let edge = format!("{:?}", edge_ok(&[]));
        for s in secrets {
            for text in [&raw, &cfg, &edge] {
                assert!(!text.contains(s), "{s} leaked in {text}");
            }
        }
        assert!(cfg.contains("[redacted]"));
        let help = Cli::command().render_long_help().to_string();
        assert!(!help.contains("secret-value"));
    }

    #[test]
    fn url_parsing() {
        let ok = |s: &str| WsUrl::parse("X", s).unwrap_or_else(|e| panic!("{e}"));
        let u = ok("ws://edge-gw.internal:8787/link?token=abc");
        assert_eq!(
            (u.host(), u.port(), u.is_tls()),
            ("edge-gw.internal", 8787, false)
        );
        assert_eq!(u.path(), "/link?token=abc");
        assert_eq!(
            u.to_string(),
            "ws://edge-gw.internal:8787/link?token=[redacted]"
        );
        assert!(!format!("{u:?}").contains("abc"));
        assert_eq!(u.as_str(), "ws://edge-gw.internal:8787/link?token=abc");
        let u = ok("wss://[2001:db8::1]");
        assert_eq!((u.host(), u.port(), u.path()), ("[2001:db8::1]", 443, "/"));
        let u = ok("ws://h?x=1");
        assert_eq!(u.path(), "/?x=1");
        for bad in [
            "",
            "ws:/h",
            "ws://",
            "ws://:80",
            "ws://h:",
            "ws://h:0",
            "ws://h:x",
            "ws://[::1",
            "ws://[nope]:1",
            "ws://h h/",
            "ws://h/\n",
            "ws://h/#f",
            "wss://user@h",
            "ws://h:1:2",
            "ws://ho%st/",
            "ws://h:+80/",
        ] {
            let err = WsUrl::parse("GATEWAY_WS_URL", bad)
                .err()
                .unwrap_or_default();
            assert!(
                err.starts_with("GATEWAY_WS_URL must be a ws:// or wss:// URL"),
                "{bad:?}: {err}"
            );
            assert!(!err.contains('\n'), "{err:?}");
        }
        let h = HttpUrl::parse("B", "https://discord.com/").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (h.as_str(), h.path(), h.port()),
            ("https://discord.com", "/", 443)
        );
    }

    #[test]
    fn url_errors_never_quote_credentials_or_tokens() {
        for bad in [
            "wss://relay:hunter2secret@gw.example/link",
            "ws://gw.example:1:2/link?token=hunter2secret",
            "ws://gw h/link?x=1&access_token=hunter2secret",
            "ws://a:hunter2secret@b@c/",
            "ws://u:hunter2secret#frag@h/",
        ] {
            let err = WsUrl::parse("GATEWAY_WS_URL", bad)
                .err()
                .unwrap_or_default();
            assert!(err.starts_with("GATEWAY_WS_URL must be"), "{err}");
            assert!(!err.contains("hunter2"), "{err}");
            assert!(err.contains("[redacted]"), "{err}");
        }
        let err = HttpUrl::parse("DISCORD_API_BASE", "https://x/api?token=hunter2secret")
            .err()
            .unwrap_or_default();
        assert_eq!(
            err,
            "DISCORD_API_BASE must not have a query (got \"https://x/api?token=[redacted]\")"
        );
        // What is not a credential is still shown, to help find the typo.
        let err = WsUrl::parse("GATEWAY_WS_URL", "ws://h:99999/link?types=a")
            .err()
            .unwrap_or_default();
        assert!(
            err.ends_with("(got \"ws://h:99999/link?types=a\")"),
            "{err}"
        );
    }

    #[cfg(feature = "fuzzing")]
    #[test]
    fn fuzz_entry_holds_on_samples() {
        for sample in [
            &b""[..],
            b"\x00yes",
            b"\x01[::1]:3000",
            b"\x02+86400000",
            b"\x03007",
            b"\x05123456789012345678",
            b"\x061h 30m",
            b"\x08warn,relay::edge=debug",
            b"\x09wss://GW.example:443/link?token=abc",
            b"\x0ahttps://discord.com/api/v10//",
            b"\x09ws://u:p@h/\xff",
        ] {
            fuzz_config(sample);
        }
    }

    /// Found by the `config_value` fuzz target: taking `?` out of the value
    /// to build a path joined the marker, so the check blamed the parser for
    /// quoting what was really part of the value.
    #[test]
    fn the_planted_secret_check_skips_a_marker_of_the_value_itself() {
        check_planted(1, "2251437Pl4nted?S3cret\u{1}w:1!\t:/%?87/link?B=a&bbc");
        check_planted(2, "Pl4nted#S3cret and the rest");
    }

    fn url_like() -> impl Strategy<Value = String> {
        "(ws|wss|WSS|http|https|ftp|)(://|:/|)([a-zA-Z0-9._-]{0,12}|\\[[0-9a-f:]{0,12}\\])(:[0-9+]{0,6})?(/[a-z0-9/?=&%#@ ]{0,12})?"
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn every_parser_names_its_setting_in_one_line(which in 0u8..11, value in any::<String>()) {
            check_value(which, &value);
        }

        #[test]
        fn near_valid_values_parse_soundly(
            which in 0u8..11,
            value in prop_oneof![
                "[0-9+-]{0,22}",
                "(true|FALSE|On|no|1|0|2|)",
                "[0-9.:\\[\\]a-f]{0,24}",
                "[0-9]{1,4} ?(ms|s|m|h|d|w)",
                "(warn|info|x)(,[a-z:]{0,6}=(debug|off|nope))?",
                url_like(),
            ],
        ) {
            check_value(which, &value);
        }

        #[test]
        fn urls_parse_soundly(value in url_like(), http in any::<bool>()) {
            check_value(if http { 10 } else { 9 }, &value);
        }

        #[test]
        fn a_secret_in_a_url_never_shows(which in any::<u8>(), value in prop_oneof![url_like(), any::<String>()]) {
            check_planted(which, &value);
        }

        #[test]
        fn secret_settings_are_reported_by_name_only(bytes in proptest::collection::vec(any::<u8>(), 0..24)) {
            check_secret(&bytes);
        }

        #[test]
        fn counts_are_taken_exactly_in_range(n in prop_oneof![any::<u64>(), 0u64..2 * MAX_MS]) {
            let text = n.to_string();
            prop_assert_eq!(parse_ms("HEARTBEAT_MS", &text).ok(), (1..=MAX_MS).contains(&n).then(|| Duration::from_millis(n)));
            prop_assert_eq!(parse_usize("QUEUE_CAPACITY", &text).ok(), (1..=MAX_COUNT).contains(&n).then_some(n as usize));
        }
    }

    /// Runs in a child process with a prepared environment (see
    /// `env_is_read_and_flags_win`), so no test mutates this process's environment.
    #[test]
    #[ignore = "run by env_is_read_and_flags_win in a child process"]
    fn env_child() {
        if std::env::var_os("RELAY_CONFIG_TEST_CHILD").is_none() {
            return;
        }
        let cli = Cli::try_parse_from(["relay", "edge", "--link-token", "from-flag"]);
        let Ok(Command::Edge(a)) = cli.map(|c| c.command) else {
            panic!("parse failed")
        };
        let c = a.validate().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.link_token.expose(), "from-flag");
        assert_eq!(c.session_secret.expose(), "from-env-session");
        assert_eq!(c.gateway_ws_url.as_str(), "ws://10.0.0.2:8787/link");
        assert_eq!(c.heartbeat, Duration::from_millis(2500));
        assert!(c.enable_ws_bridge);
        assert_eq!(c.log.format, LogFormat::Json);
        let cli = Cli::try_parse_from(["relay", "edge", "--heartbeat-ms", "700"]);
        let Ok(Command::Edge(a)) = cli.map(|c| c.command) else {
            panic!("parse failed")
        };
        assert_eq!(a.edge.heartbeat_ms, Duration::from_millis(700));
        // A malformed variable is reported by name.
        let err = Cli::try_parse_from(["relay", "gateway"])
            .err()
            .map(|e| error_line(&e));
        assert_eq!(
            err.as_deref(),
            Some("DISCORD_GUILD_ID must be a Discord snowflake: 1 to 20 digits (got \"guild-x\")")
        );
        // --help lists the variable but not a secret's value.
        let help = Cli::command()
            .find_subcommand_mut("edge")
            .map(|c| c.render_long_help().to_string())
            .unwrap_or_default();
        assert!(
            help.contains("LINK_TOKEN") && !help.contains("from-env-link"),
            "{help}"
        );
        assert!(help.contains("HEARTBEAT_MS=2500"), "{help}");
    }

    #[test]
    fn env_is_read_and_flags_win() {
        let exe = std::env::current_exe().unwrap_or_default();
        let mut cmd = std::process::Command::new(exe);
        cmd.args([
            "config::tests::env_child",
            "--exact",
            "--ignored",
            "--test-threads=1",
        ]);
        for var in [
            "BIND",
            "RATE_LIMIT_BURST",
            "RATE_LIMIT_REFILL",
            "RATE_LIMIT_WINDOW_MS",
            "QUEUE_CAPACITY",
            "REPLAY_CAPACITY",
            "REPLY_TIMEOUT_MS",
            "RUST_LOG",
            "DISCORD_BOT_TOKEN",
            "GATEWAY_BIND",
            "DISCORD_API_BASE",
            "DISCORD_GATEWAY_URL",
        ] {
            cmd.env_remove(var);
        }
        cmd.env("RELAY_CONFIG_TEST_CHILD", "1")
            .env("LINK_TOKEN", "from-env-link")
            .env("SESSION_SECRET", "from-env-session")
            .env("GATEWAY_WS_URL", "ws://10.0.0.2:8787/link")
            .env("HEARTBEAT_MS", "2500")
            .env("ENABLE_WS_BRIDGE", "On")
            .env("LOG_FORMAT", "json")
            .env("DISCORD_GUILD_ID", "guild-x");
        let out = cmd.output().unwrap_or_else(|e| panic!("spawn: {e}"));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.contains("1 passed"),
            "the child test did not run: {stdout}"
        );
    }
}
