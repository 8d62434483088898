//! `relay gateway`: the Discord-facing half (CONTRACT.md §1, §5).
//!
//! Three parts, started in this order and stopped in reverse:
//! - a translator (voice cache included) shared by the two threads below;
//! - the link server on `GATEWAY_BIND` (`/link`, and the operations endpoints
//!   below), which greets each edge with the translator's voice snapshot, fans
//!   events out, and runs commands through the [`RestExecutor`] at most once per
//!   `requestId`;
//! - the Discord driver, which keeps the Gateway v10 session and publishes every
//!   translated dispatch through the link server's fan-out.
//!
//! [`Gateway::start`] is what `relay gateway`, `relay all` and `relay demo` call;
//! [`Settings`] is built from the validated [`GatewayConfig`] or, for the demo and
//! tests, straight from a simulated Discord's URLs.
//!
//! Metrics and operations: the gateway counts Discord dispatches, REST calls,
//! heartbeat latency, connected edges, re-sent commands and refused link tokens
//! into the [`Metrics`] it is given (`observe.rs`), and answers `GET /metrics`,
//! `/healthz` and `/readyz` on the link port (`ops.rs`) in every mode. In
//! `relay all` and `relay demo` the registry is shared with the edge, so the
//! edge's `/metrics` shows the same series.

mod access;
mod event_ids;
mod observe;
mod ops;
mod webhook;

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::Receiver;
use log::info;
use relay_protocol::backoff::BackoffConfig;
use relay_protocol::discord::session::{intents, BotToken};
use relay_protocol::payload::VoiceSnapshot;
use relay_runtime::discord_gateway::{
    shared_translator, DiscordConfig, DiscordGateway, DiscordStatus, FatalError,
    DEFAULT_CONNECT_TIMEOUT,
};
use relay_runtime::discord_rest::{RestConfig, RestExecutor, DEFAULT_REST_TIMEOUT};
use relay_runtime::link_server::{LinkServer, LinkServerConfig, LinkStats, LINK_PATH};
use relay_runtime::redis_conn::RedisConn;

use crate::config::GatewayConfig;
use crate::metrics::Metrics;
use crate::secret::Secret;

/// Everything the gateway needs to run.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Link listen address (`GATEWAY_BIND`); port 0 picks a free one.
    pub bind: SocketAddr,
    /// Bearer token edges must present (`LINK_TOKEN`).
    pub link_token: Secret,
    /// `DISCORD_BOT_TOKEN`.
    pub bot_token: Secret,
    /// `DISCORD_GUILD_ID`: forward only this guild's events.
    pub guild_id: Option<String>,
    /// `DISCORD_API_BASE`.
    pub api_base: String,
    /// `DISCORD_GATEWAY_URL`; `None` asks `GET /gateway/bot`.
    pub gateway_url: Option<String>,
    /// Discord reconnect schedule (the contract's 1 s doubling to 30 s by default).
    pub backoff: BackoffConfig,
    /// Timeout of one REST call.
    pub rest_timeout: Duration,
    /// `DISCORD_MEMBERS_INTENT`: identify with GUILD_MEMBERS too.
    pub members_intent: bool,
    /// How long a member read by REST counts as current before it is read
    /// again (5 minutes; tests shorten it).
    pub member_max_age: Duration,
    /// `REDIS_URL`: share event ids and the replay log with every edge (§10).
    pub redis_url: Option<Secret>,
    /// Events the shared log in Redis keeps (`REPLAY_CAPACITY`'s default).
    pub shared_log_capacity: usize,
}

/// Deadline of each Redis call the gateway makes.
pub const REDIS_TIMEOUT: Duration = Duration::from_millis(500);

impl Settings {
    /// The settings of `relay gateway` / `relay all`.
    pub fn from_config(cfg: &GatewayConfig) -> Settings {
        Settings {
            bind: cfg.gateway_bind,
            link_token: cfg.link_token.clone(),
            bot_token: cfg.discord_bot_token.clone(),
            guild_id: cfg.discord_guild_id.clone(),
            api_base: cfg.discord_api_base.as_str().to_owned(),
            gateway_url: cfg
                .discord_gateway_url
                .as_ref()
                .map(|u| u.as_str().to_owned()),
            backoff: BackoffConfig::default(),
            rest_timeout: DEFAULT_REST_TIMEOUT,
            members_intent: cfg.discord_members_intent,
            member_max_age: access::MEMBER_FRESH,
            redis_url: cfg.redis_url.clone(),
            shared_log_capacity: relay_protocol::replay::REPLAY_CAPACITY,
        }
    }

    /// Settings against a simulated (or any) Discord given by its URLs: `api_base`
    /// like `http://127.0.0.1:4000/api/v10`, `gateway_url` like `ws://127.0.0.1:4001`.
    pub fn for_discord_at(
        bind: SocketAddr,
        link_token: Secret,
        bot_token: Secret,
        api_base: String,
        gateway_url: String,
    ) -> Settings {
        Settings {
            bind,
            link_token,
            bot_token,
            guild_id: None,
            api_base,
            gateway_url: Some(gateway_url),
            backoff: BackoffConfig::default(),
            rest_timeout: DEFAULT_REST_TIMEOUT,
            members_intent: false,
            member_max_age: access::MEMBER_FRESH,
            redis_url: None,
            shared_log_capacity: relay_protocol::replay::REPLAY_CAPACITY,
        }
    }
}

/// Why the gateway did not start.
#[derive(Debug)]
pub enum StartError {
    /// The link listener could not bind.
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        error: io::Error,
    },
    /// Discord refused the bot before a session started.
    Discord(FatalError),
    /// The Redis client could not be set up (`REDIS_URL`).
    Redis(String),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Bind { addr, error } => {
                write!(f, "cannot listen on GATEWAY_BIND {addr}: {error}")
            }
            StartError::Discord(e) => e.fmt(f),
            StartError::Redis(e) => f.write_str(e),
        }
    }
}

impl std::error::Error for StartError {}

/// A running gateway.
pub struct Gateway {
    link: Option<LinkServer>,
    discord: Option<DiscordGateway>,
    /// Re-reads members older than 5 minutes (`ACCESS=discord` edges).
    refresh: Option<access::MemberRefresh>,
    /// With `REDIS_URL`: keeps `relay_redis_up` current; stops on drop.
    _redis_health: Option<crate::redis_health::RedisHealth>,
}

impl Gateway {
    /// Starts the link server, then the Discord session.
    pub fn start(settings: Settings, metrics: Arc<Metrics>) -> Result<Gateway, StartError> {
        let discord_up = Arc::new(AtomicBool::new(false));
        let observer = Arc::new(observe::MetricsObserver {
            metrics: metrics.clone(),
            discord_up: discord_up.clone(),
        });
        let token = BotToken::new(settings.bot_token.expose());
        let translator = shared_translator(settings.guild_id.clone());

        let executor = RestExecutor::new(RestConfig {
            api_base: settings.api_base.clone(),
            token: token.clone(),
            timeout: settings.rest_timeout,
        })
        .with_observer(observer.clone());
        let gate = Arc::new(access::GuildGate::new(
            Arc::new(executor),
            translator.clone(),
            settings.member_max_age,
        ));
        let ready_translator = translator.clone();
        let guilds_translator = translator.clone();
        let (event_ids, redis_health) = match &settings.redis_url {
            Some(url) => {
                let conn = Arc::new(
                    RedisConn::open(url.expose(), REDIS_TIMEOUT)
                        .map_err(|e| StartError::Redis(format!("REDIS_URL {e}")))?
                        .with_observer(metrics.redis_observer()),
                );
                info!(
                    "gateway shares event ids through Redis at {}",
                    conn.shown_url()
                );
                let ids =
                    event_ids::SharedEventIds::start(conn.clone(), settings.shared_log_capacity)
                        .map_err(|e| StartError::Redis(e.to_string()))?;
                let health = crate::redis_health::RedisHealth::spawn(conn, metrics.clone())
                    .map_err(|e| StartError::Redis(e.to_string()))?;
                (
                    Some(ids as Arc<dyn relay_runtime::link_server::EventStamper>),
                    Some(health),
                )
            }
            None => (None, None),
        };
        let link_config = LinkServerConfig {
            event_ids,
            observer: observer.clone(),
            plain: Some(ops::handler(metrics, discord_up)),
            ready_guilds: Some(Arc::new(move || {
                guilds_translator.lock().guilds().snapshots()
            })),
            ..LinkServerConfig::new(settings.bind, settings.link_token.expose())
        };
        let link = LinkServer::start(
            link_config,
            gate.clone(),
            Arc::new(move || ready_translator.lock().voice_snapshot()),
        )
        .map_err(|error| StartError::Bind {
            addr: settings.bind,
            error,
        })?;
        gate.set_broadcaster(link.broadcaster());
        let refresh = access::MemberRefresh::spawn(gate).map_err(|error| StartError::Bind {
            addr: settings.bind,
            error,
        })?;

        let discord_config = DiscordConfig {
            api_base: settings.api_base.clone(),
            gateway_url: settings.gateway_url.clone(),
            backoff: settings.backoff,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            intents: if settings.members_intent {
                intents::DEFAULT | intents::GUILD_MEMBERS
            } else {
                intents::DEFAULT
            },
            ..DiscordConfig::new(token)
        };
        let discord = match DiscordGateway::start(
            discord_config,
            translator,
            Arc::new(link.broadcaster()),
            observer,
        ) {
            Ok(d) => d,
            Err(e) => {
                link.shutdown();
                return Err(StartError::Discord(e));
            }
        };
        if let Some(guild) = &settings.guild_id {
            info!("gateway: forwarding events of guild {guild} only");
        }
        Ok(Gateway {
            link: Some(link),
            discord: Some(discord),
            refresh: Some(refresh),
            _redis_health: redis_health,
        })
    }

    /// The link listener's address.
    pub fn link_addr(&self) -> SocketAddr {
        self.link().local_addr()
    }

    /// The URL edges connect to (`GATEWAY_WS_URL`), e.g. `ws://127.0.0.1:8787/link`.
    pub fn link_url(&self) -> String {
        format!("ws://{}{LINK_PATH}", self.link_addr())
    }

    /// Receives the error once if the Discord session stops for good (bad token,
    /// disallowed intents …); the process should then exit non-zero.
    pub fn fatal(&self) -> &Receiver<FatalError> {
        self.discord().fatal()
    }

    /// The Discord session's state.
    pub fn discord_status(&self) -> DiscordStatus {
        self.discord().status()
    }

    /// Waits until the Discord session is up (READY or RESUMED); false on
    /// timeout or if it stopped for good.
    pub fn wait_discord_connected(&self, timeout: Duration) -> bool {
        self.discord().wait_connected(timeout)
    }

    /// The voice snapshot a new edge would get.
    pub fn voice_snapshot(&self) -> VoiceSnapshot {
        self.discord().voice_snapshot()
    }

    /// How many messages the history window holds over every channel (tests
    /// wait on it to know the gateway has seen what Discord sent).
    pub fn history_messages(&self) -> usize {
        self.discord().translator().lock().history().messages()
    }

    /// The link server's counters.
    pub fn link_stats(&self) -> LinkStats {
        self.link().stats()
    }

    /// Waits until exactly `n` edges are connected; false on timeout.
    pub fn wait_for_edges(&self, n: usize, timeout: Duration) -> bool {
        self.link().wait_for_edges(n, timeout)
    }

    /// Closes every edge's link (they reconnect): for tests of link outages.
    pub fn kick_edges(&self) {
        self.link().kick_all();
    }

    /// Closes the Discord session (with 1000), then the link; joins every thread.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.refresh.take();
        if let Some(d) = self.discord.take() {
            d.shutdown();
        }
        if let Some(l) = self.link.take() {
            l.shutdown();
        }
    }

    fn link(&self) -> &LinkServer {
        self.link
            .as_ref()
            .expect("the link server runs until shutdown")
    }

    fn discord(&self) -> &DiscordGateway {
        self.discord
            .as_ref()
            .expect("the Discord driver runs until shutdown")
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.stop();
    }
}
