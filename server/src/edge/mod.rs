//! `relay edge`: the browser-facing half (CONTRACT.md §2–§4, §6, §7).
//!
//! One link client thread talks to the gateway. HTTP is the runtime's
//! `http_server`: each connection has its own thread, which runs the handler
//! for each of its requests: a command call waits for its reply there, and a
//! legacy bridge client keeps that thread, fed by the hub, for as long as it
//! lasts. An SSE stream is handed to the `sse_pool`: a few writer threads, one
//! per core, write every stream, woken by the hub.

mod access;
mod assets;
mod authn;
mod bridge;
mod commands;
pub mod cors;
mod demo;
mod history;
mod http;
mod link_sink;
mod oauth;
mod routes;
mod state;
mod stream;
mod stream_params;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use log::info;
use parking_lot::Mutex;
use relay_protocol::bucket::KeyedLimiter;
use relay_protocol::link_session::LinkConfig;
use relay_protocol::queue::QueueConfig;
use relay_runtime::clock;
use relay_runtime::http_server::{self, HttpServer};
use relay_runtime::hub::Hub;
use relay_runtime::link_client::LinkClient;
use relay_runtime::sse_pool::{PoolConfig, SsePool};

pub use history::READ_LIMITS;
pub use relay_runtime::http_server::HttpConfig;
use state::AppState;
pub use state::{DemoInfo, DemoUser, EdgeSettings, SignInSettings};
#[cfg(feature = "fuzzing")]
pub use stream_params::fuzz_stream_request;

use crate::auth::SessionKeys;
use crate::config::AccessMode;
use crate::metrics::Metrics;
use relay_protocol::payload::VoiceSnapshot;

/// Events a subscriber may have queued before it counts as too slow.
const SUBSCRIBER_BUFFER: usize = 1024;

/// A running edge.
pub struct Edge {
    addr: SocketAddr,
    server: Option<HttpServer>,
    link: Option<LinkClient>,
    link_up: Arc<link_sink::LinkUp>,
    state: Arc<AppState>,
    /// `ACCESS=discord`: re-reads access when a timeout runs out; stops on drop.
    _timeouts: Option<access::TimeoutWatch>,
    /// With `REDIS_URL`: keeps `relay_redis_up` current; stops on drop.
    _health: Option<crate::redis_health::RedisHealth>,
}

/// Deadline of each Redis call the edge makes: a command waits at most this
/// for its shared rate-limit check before the local buckets decide.
pub const REDIS_TIMEOUT: Duration = Duration::from_millis(250);

/// Answers a `Last-Event-ID` this edge's ring cannot from the shared log in
/// Redis: reads the run after the id, checks it is contiguous, and turns each
/// frame into the item live delivery would have made. `None` (the client is
/// reset) when Redis is down or the run cannot be trusted.
fn shared_log_reader(
    conn: Arc<relay_runtime::redis_conn::RedisConn>,
    capacity: usize,
    access: Arc<std::sync::OnceLock<Arc<access::DiscordAccess>>>,
) -> relay_runtime::hub::SharedLog {
    use relay_protocol::replay::ResetReason;
    use relay_protocol::shared_log::{frames_after, Fetched};
    Box::new(move |after| {
        let entries = relay_runtime::redis_shared::read_after(&conn, after, capacity)
            .map_err(|e| log::warn!("shared log unreadable, the client is reset: {e}"))
            .ok()?;
        let frames = match frames_after(after, &entries) {
            Ok(Some(frames)) => frames,
            Ok(None) => return None,
            Err(reason) => return Some(Err(reason)),
        };
        let mut items = Vec::with_capacity(frames.len());
        for frame in frames {
            // A frame must read, and carry the id its entry has, or the run is
            // not what it claims: the client is reset rather than misled.
            let Ok(ev) = relay_protocol::frame::parse_event(frame) else {
                return Some(Err(ResetReason::Gap));
            };
            let want = relay_protocol::replay::EventId::new(
                after.epoch,
                after.seq + 1 + items.len() as u64,
            );
            if ev.meta.extra.get().event_id != Some(want) {
                return Some(Err(ResetReason::Gap));
            }
            match link_sink::replay_item(ev, access.get().map(|a| &**a)) {
                Some(item) => items.push(item),
                // A link-only frame never gets an id; one here is not ours.
                None => return Some(Err(ResetReason::Gap)),
            }
        }
        Some(Ok(Fetched { after, items }))
    })
}

impl Edge {
    /// Binds the HTTP listener, starts the link client and the HTTP server.
    pub fn start(settings: EdgeSettings, metrics: Arc<Metrics>) -> io::Result<Edge> {
        let listener = http_server::listen(settings.bind, settings.http.backlog)?;
        let addr = listener.local_addr()?;
        let dropped = metrics.clone();
        let redis = match &settings.redis_url {
            Some(url) => {
                let conn = relay_runtime::redis_conn::RedisConn::open(url.expose(), REDIS_TIMEOUT)
                    .map_err(|e| {
                        io::Error::new(io::ErrorKind::InvalidInput, format!("REDIS_URL {e}"))
                    })?
                    .with_observer(metrics.redis_observer());
                info!(
                    "edge shares replay and rate limits through Redis at {}",
                    conn.shown_url()
                );
                Some(Arc::new(conn))
            }
            None => None,
        };
        // Filled once the access model exists (the shared log reads need it
        // for error events' actors); the hub is made first.
        let log_access: Arc<std::sync::OnceLock<Arc<access::DiscordAccess>>> = Arc::default();
        let mut hub = Hub::new(
            clock::new_epoch(),
            settings.replay_capacity,
            SUBSCRIBER_BUFFER,
        )
        .with_drop_hook(Box::new(move || dropped.sse_dropped_slow()));
        if let Some(conn) = &redis {
            hub = hub.with_shared_log(shared_log_reader(
                conn.clone(),
                settings.replay_capacity,
                log_access.clone(),
            ));
        }
        if settings.access == AccessMode::Discord {
            hub = hub.with_personalize(Box::new(access::personal_voice_snapshot));
        }
        let hub = Arc::new(hub);
        let discord_access = (settings.access == AccessMode::Discord)
            .then(|| Arc::new(access::DiscordAccess::new(hub.clone())));
        if let Some(access) = &discord_access {
            let _ = log_access.set(access.clone());
        }
        let voice = Arc::new(Mutex::new(VoiceSnapshot::default()));
        let waiters = Arc::new(Mutex::new(Default::default()));
        let mut link_config = LinkConfig::new(
            settings.gateway_ws_url.clone(),
            settings.link_token.expose(),
        );
        link_config.queue = QueueConfig {
            capacity: settings.queue_capacity,
            reply_timeout: settings.reply_timeout,
        };
        let link_up = Arc::new(link_sink::LinkUp::default());
        let sink = link_sink::LinkSink::new(
            hub.clone(),
            metrics.clone(),
            waiters.clone(),
            link_up.clone(),
            voice.clone(),
            discord_access.clone(),
        );
        let sink = match &redis {
            Some(conn) => sink.with_shared_log(conn.clone(), settings.replay_capacity),
            None => sink,
        };
        let link = LinkClient::spawn_with(link_config, |handle| {
            let mut sink = sink;
            sink.set_link(handle);
            sink
        });
        let timeouts = discord_access
            .clone()
            .map(access::TimeoutWatch::spawn)
            .transpose()?;
        let limiter = KeyedLimiter::new(settings.limits)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
        let http_config = settings.http.clone();
        let streams = SsePool::new(
            PoolConfig {
                heartbeat: settings.heartbeat,
                max_pending_bytes: stream::MAX_PENDING_BYTES,
                max_batch: stream::MAX_BATCH,
                ..PoolConfig::default()
            },
            Arc::new(stream::StreamMetrics(metrics.clone())),
        )?;
        let oauth = oauth::SignIn::new(&settings.signin, &settings.session_secret, addr);
        let shared_limiter = redis.as_ref().and_then(|conn| {
            relay_runtime::redis_shared::RedisLimiter::commands(conn.clone(), &settings.limits)
        });
        let shared_read_limiter = redis.as_ref().and_then(|conn| {
            relay_runtime::redis_shared::RedisLimiter::reads(conn.clone(), &history::READ_LIMITS)
        });
        let health = redis
            .clone()
            .map(|conn| crate::redis_health::RedisHealth::spawn(conn, metrics.clone()))
            .transpose()?;
        let state = Arc::new(AppState {
            redis,
            shared_limiter,
            shared_read_limiter,
            oauth,
            keys: SessionKeys::new(&settings.session_secret),
            settings,
            hub,
            link: link.handle(),
            limiter: Mutex::new(limiter),
            read_limiter: history::read_limiter(),
            waiters,
            metrics,
            streams,
            access: discord_access,
            voice,
        });
        let handler_state = state.clone();
        let server = HttpServer::from_listener(
            listener,
            http_config,
            Arc::new(move |req| routes::handle(&handler_state, req)),
        )?;
        info!("edge listening on http://{addr}");
        Ok(Edge {
            addr,
            server: Some(server),
            link: Some(link),
            link_up,
            state,
            _timeouts: timeouts,
            _health: health,
        })
    }

    /// The bound HTTP address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Waits until the link is up (`up`) or down as browsers see it: once this
    /// returns true, every new stream's `gateway.status` says so. False if
    /// `timeout` passed first.
    pub fn wait_link(&self, up: bool, timeout: Duration) -> bool {
        self.link_up.wait_for(up, timeout)
    }

    /// The OAuth2 redirect URI of Sign in with Discord: `PUBLIC_URL` (or
    /// `http://` + the bound address) + `/auth/discord/callback`.
    pub fn oauth_redirect_uri(&self) -> String {
        self.state.oauth.redirect_uri()
    }

    /// Replaces the history read buckets (CONTRACT.md §9's 20 / 10 per 5 s):
    /// for benchmarks that read faster than one user may.
    pub fn set_read_limits(&self, limits: relay_protocol::bucket::LimitConfig) -> io::Result<()> {
        let limiter = KeyedLimiter::new(limits)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
        *self.state.read_limiter.lock() = limiter;
        Ok(())
    }

    /// Issues a session token with the edge's key (demo mode and tests).
    pub fn issue_token(
        &self,
        sub: &str,
        name: Option<&str>,
        roles: &[String],
        ttl: Duration,
    ) -> String {
        self.state
            .keys
            .issue(sub, name, roles, ttl, clock::unix_secs())
    }

    /// Stops accepting requests (the port is free when this returns) and stops
    /// the link. Requests in flight finish; open SSE streams are closed (the
    /// writer pool stops); bridge clients end when their sockets close.
    pub fn shutdown(mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown();
        }
        self.state.streams.shutdown();
        if let Some(link) = self.link.take() {
            link.shutdown();
        }
    }
}
