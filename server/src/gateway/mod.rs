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
pub mod guild_store;
pub mod leader;
mod observe;
mod ops;
pub mod replies;
pub mod session_store;
mod webhook;

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use log::{info, warn};
use parking_lot::Mutex;
use relay_protocol::backoff::BackoffConfig;
use relay_protocol::discord::session::{intents, BotToken};
use relay_protocol::lease::{Change, LeaseConfig};
use relay_protocol::payload::VoiceSnapshot;
use relay_runtime::discord_gateway::{
    shared_translator, DiscordConfig, DiscordGateway, DiscordStatus, FatalError, SharedTranslator,
    DEFAULT_CONNECT_TIMEOUT,
};
use relay_runtime::discord_rest::{RestConfig, RestExecutor, DEFAULT_REST_TIMEOUT};
use relay_runtime::link_server::{
    Broadcaster, CommandExecutor, LinkServer, LinkServerConfig, LinkStats, LINK_PATH,
};
use relay_runtime::redis_conn::RedisConn;
use relay_runtime::session_store::{LocalSessionStore, SessionStore};

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
    /// `REDIS_URL` and `GATEWAY_LEASE_MS` (CONTRACT.md §10); `None`: v1.0, the
    /// session lives in this process.
    pub redis: Option<RedisSettings>,
    /// Events the shared log in Redis keeps (`REPLAY_CAPACITY`'s default).
    pub shared_log_capacity: usize,
}

/// How the gateway shares its Discord session (CONTRACT.md §10).
#[derive(Clone, Debug)]
pub struct RedisSettings {
    /// `REDIS_URL` (may hold a password: never logged; see [`RedisConn::shown_url`]).
    pub url: Secret,
    /// `GATEWAY_LEASE_MS`.
    pub lease: Duration,
    /// Deadline of each Redis connect, read and write.
    pub timeout: Duration,
}

/// How long a gateway that took over keeps the events of its first moments
/// for edges that join late (see `Broadcaster::open_backlog`).
pub const TAKEOVER_BACKLOG: Duration = Duration::from_secs(30);
/// At most this many events are kept for them.
pub const TAKEOVER_BACKLOG_MAX: usize = 20_000;

/// Deadline of one Redis call on the gateway: loopback or LAN answers take
/// well under a millisecond; this only bounds a Redis that hangs.
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
            redis: cfg.redis_url.clone().map(|url| RedisSettings {
                url,
                lease: cfg.gateway_lease,
                timeout: REDIS_TIMEOUT,
            }),
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
            redis: None,
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
    /// `REDIS_URL` could not be used.
    Redis(String),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Bind { addr, error } => {
                write!(f, "cannot listen on GATEWAY_BIND {addr}: {error}")
            }
            StartError::Discord(e) => e.fmt(f),
            StartError::Redis(why) => write!(f, "REDIS_URL {why}"),
        }
    }
}

impl std::error::Error for StartError {}

/// A running gateway.
pub struct Gateway {
    link: Option<LinkServer>,
    /// The Discord driver while this process runs the session: always without
    /// Redis; with Redis only while it holds the lease.
    discord: Arc<Mutex<Option<DiscordGateway>>>,
    translator: SharedTranslator,
    fatal_rx: Receiver<FatalError>,
    /// With Redis: the lease thread (it starts and stops `discord`).
    leader: Option<leader::Leader>,
    /// With Redis: whether `/link` is served (false: 503, standby).
    active: Option<Arc<AtomicBool>>,
    /// Re-reads members older than 5 minutes (`ACCESS=discord` edges).
    refresh: Option<access::MemberRefresh>,
    /// With `REDIS_URL`: keeps `relay_redis_up` current; stops on drop.
    _redis_health: Option<crate::redis_health::RedisHealth>,
}

/// What starting a Discord driver needs, kept so the lease thread can start
/// one each time it becomes leader.
struct DiscordStarter {
    config: DiscordConfig,
    translator: SharedTranslator,
    broadcaster: Broadcaster,
    observer: Arc<observe::MetricsObserver>,
    fatal_tx: Sender<FatalError>,
    /// With Redis: the shared event ids, which continue the log on takeover.
    event_ids: Option<Arc<event_ids::SharedEventIds>>,
}

impl DiscordStarter {
    fn start(&self, store: Arc<dyn SessionStore>) -> Result<DiscordGateway, FatalError> {
        let config = DiscordConfig {
            store,
            ..self.config.clone()
        };
        let discord = DiscordGateway::start(
            config,
            self.translator.clone(),
            Arc::new(self.broadcaster.clone()),
            self.observer.clone(),
        )?;
        // The process-wide fatal channel hears this driver's end for good.
        let fatal = discord.fatal().clone();
        let tx = self.fatal_tx.clone();
        let _ = std::thread::Builder::new()
            .name("relay-discord-fatal".into())
            .spawn(move || {
                if let Ok(e) = fatal.recv() {
                    let _ = tx.try_send(e);
                }
            });
        Ok(discord)
    }
}

impl Gateway {
    /// Starts the link server, then the Discord session (with Redis: the lease
    /// thread, which starts the session once this gateway holds the lease).
    pub fn start(settings: Settings, metrics: Arc<Metrics>) -> Result<Gateway, StartError> {
        let discord_up = Arc::new(AtomicBool::new(false));
        let observer = Arc::new(observe::MetricsObserver {
            metrics: metrics.clone(),
            discord_up: discord_up.clone(),
        });
        let token = BotToken::new(settings.bot_token.expose());
        let translator = shared_translator(settings.guild_id.clone());
        let redis_conn = |settings: &RedisSettings| {
            let metrics = metrics.clone();
            RedisConn::open(settings.url.expose(), settings.timeout)
                .map(|c| {
                    c.with_observer(Box::new(move |op, took, ok| metrics.redis_op(op, took, ok)))
                })
                .map_err(StartError::Redis)
        };

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
        let commands: Arc<dyn CommandExecutor> = match &settings.redis {
            Some(redis) => Arc::new(replies::SharedReplies::new(
                gate.clone(),
                Arc::new(redis_conn(redis)?),
            )),
            None => gate.clone(),
        };
        let active = settings
            .redis
            .as_ref()
            .map(|_| Arc::new(AtomicBool::new(false)));
        let ready_translator = translator.clone();
        let guilds_translator = translator.clone();
        let (event_ids, redis_health) = match settings.redis.as_ref().map(|r| &r.url) {
            Some(url) => {
                let conn = Arc::new(
                    RedisConn::open(url.expose(), REDIS_TIMEOUT)
                        .map_err(StartError::Redis)?
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
                (Some(ids), Some(health))
            }
            None => (None, None),
        };
        let link_config = LinkServerConfig {
            event_ids: event_ids
                .clone()
                .map(|ids| ids as Arc<dyn relay_runtime::link_server::EventStamper>),
            observer: observer.clone(),
            plain: Some(ops::handler(metrics.clone(), discord_up)),
            ready_guilds: Some(Arc::new(move || {
                guilds_translator.lock().guilds().snapshots()
            })),
            active: active.clone(),
            ..LinkServerConfig::new(settings.bind, settings.link_token.expose())
        };
        let link = LinkServer::start(
            link_config,
            commands,
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

        let (fatal_tx, fatal_rx) = crossbeam_channel::bounded(1);
        let starter = DiscordStarter {
            config: DiscordConfig {
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
            },
            translator: translator.clone(),
            broadcaster: link.broadcaster(),
            observer,
            fatal_tx,
            event_ids: event_ids.clone(),
        };
        let discord = Arc::new(Mutex::new(None));
        let leader = match (&settings.redis, &active) {
            (Some(redis), Some(active)) => {
                let lease_conn = redis_conn(redis)?;
                let session_conn = Arc::new(redis_conn(redis)?);
                info!(
                    "gateway: sharing the Discord session through Redis at {} (lease {} ms); standing by until the lease is ours",
                    lease_conn.shown_url(),
                    redis.lease.as_millis()
                );
                let owner = format!("gw-{}-{:016x}", std::process::id(), rand::random::<u64>());
                let on_change = role_changer(
                    starter,
                    discord.clone(),
                    active.clone(),
                    link.broadcaster(),
                    metrics.clone(),
                    session_conn,
                    owner.clone(),
                );
                Some(
                    leader::Leader::spawn(
                        lease_conn,
                        owner,
                        LeaseConfig::new(redis.lease),
                        on_change,
                    )
                    .map_err(|error| StartError::Bind {
                        addr: settings.bind,
                        error,
                    })?,
                )
            }
            _ => {
                match starter.start(Arc::new(LocalSessionStore)) {
                    Ok(d) => *discord.lock() = Some(d),
                    Err(e) => {
                        link.shutdown();
                        return Err(StartError::Discord(e));
                    }
                }
                metrics.set_gateway_leader(true);
                None
            }
        };
        if let Some(guild) = &settings.guild_id {
            info!("gateway: forwarding events of guild {guild} only");
        }
        Ok(Gateway {
            link: Some(link),
            discord,
            translator,
            fatal_rx,
            leader,
            active,
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
        &self.fatal_rx
    }

    /// The Discord session's state (all `None`/false on a standby).
    pub fn discord_status(&self) -> DiscordStatus {
        self.discord
            .lock()
            .as_ref()
            .map(DiscordGateway::status)
            .unwrap_or_default()
    }

    /// Whether this gateway runs the Discord session now (always without Redis).
    pub fn is_leader(&self) -> bool {
        self.active
            .as_ref()
            .is_none_or(|a| a.load(Ordering::SeqCst))
    }

    /// Waits until the Discord session is up (READY or RESUMED) in this
    /// process; false on timeout or if it stopped for good. A standby waits
    /// for its takeover.
    pub fn wait_discord_connected(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            // Short waits on the driver's own condition, so the lease thread
            // can take or hand over the driver between them.
            let left = deadline.saturating_duration_since(Instant::now());
            let step = left.min(Duration::from_millis(20));
            let connected = match self.discord.lock().as_ref() {
                Some(d) if d.fatal_error().is_some() => return false,
                Some(d) => d.wait_connected(step),
                None => false,
            };
            if connected {
                return true;
            }
            if left.is_zero() {
                return false;
            }
            if self.discord.lock().is_none() {
                std::thread::sleep(step);
            }
        }
    }

    /// The voice snapshot a new edge would get.
    pub fn voice_snapshot(&self) -> VoiceSnapshot {
        self.translator.lock().voice_snapshot()
    }

    /// How many messages the history window holds over every channel (tests
    /// wait on it to know the gateway has seen what Discord sent).
    pub fn history_messages(&self) -> usize {
        self.translator.lock().history().messages()
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

    /// Closes the Discord session (with 1000; with Redis it is left
    /// resumable and the lease released, so a standby takes over at once),
    /// then the link; joins every thread.
    pub fn shutdown(mut self) {
        self.stop();
    }

    /// Stops as if the process died: the lease is neither renewed nor
    /// released and the Discord connection is dropped without a close frame,
    /// so a standby takes over only once the lease expired (tests of takeover).
    pub fn crash(mut self) {
        if let Some(mut leader) = self.leader.take() {
            leader.abandon();
        }
        if let Some(d) = self.discord.lock().take() {
            d.hand_over();
        }
        self.stop();
    }

    fn stop(&mut self) {
        self.refresh.take();
        if let Some(mut leader) = self.leader.take() {
            // Steps down (hands the session over) and releases the lease.
            leader.stop();
        }
        if let Some(d) = self.discord.lock().take() {
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
}

/// The lease thread's change handler: becoming leader resumes the stored
/// session and opens `/link`; stepping down closes `/link` to edges first (503
/// from then on) and hands the Discord session over, resumable.
fn role_changer(
    starter: DiscordStarter,
    discord: Arc<Mutex<Option<DiscordGateway>>>,
    active: Arc<AtomicBool>,
    broadcaster: Broadcaster,
    metrics: Arc<Metrics>,
    session_conn: Arc<RedisConn>,
    owner: String,
) -> leader::OnChange {
    let mut saver: Option<guild_store::GuildSaver> = None;
    Box::new(move |change| match change {
        Change::BecameLeader => {
            // What the last leader knew of guilds and voice, before the
            // RESUME's replayed dispatches update it.
            guild_store::load_into(&session_conn, &starter.translator);
            // Event ids go on after the last leader's, before any event of ours.
            if let Some(ids) = &starter.event_ids {
                ids.continue_log(&session_conn);
            }
            let store = Arc::new(session_store::RedisSessionStore::new(
                session_conn.clone(),
                owner.clone(),
            ));
            // Open before resuming: Discord replays at once, edges arrive
            // over the next seconds (their 503 round is about 1 s). Only a
            // RESUME replays anything: after a fresh identify a backlog would
            // just repeat the first events to every edge that joins.
            if store.load().is_some() {
                broadcaster.open_backlog(TAKEOVER_BACKLOG, TAKEOVER_BACKLOG_MAX);
            }
            active.store(true, Ordering::SeqCst);
            match starter.start(store) {
                Ok(d) => {
                    *discord.lock() = Some(d);
                    drop(std::mem::replace(
                        &mut saver,
                        guild_store::GuildSaver::spawn(
                            session_conn.clone(),
                            owner.clone(),
                            starter.translator.clone(),
                        ),
                    ));
                    metrics.set_gateway_leader(true);
                }
                Err(e) => {
                    warn!("gateway: the Discord session did not start: {e}");
                    let _ = starter.fatal_tx.try_send(e);
                }
            }
        }
        Change::SteppedDown => {
            active.store(false, Ordering::SeqCst);
            metrics.set_gateway_leader(false);
            broadcaster.close_all();
            drop(saver.take());
            if let Some(d) = discord.lock().take() {
                d.hand_over();
            }
        }
    })
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.stop();
    }
}
