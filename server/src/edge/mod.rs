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
}

impl Edge {
    /// Binds the HTTP listener, starts the link client and the HTTP server.
    pub fn start(settings: EdgeSettings, metrics: Arc<Metrics>) -> io::Result<Edge> {
        let listener = http_server::listen(settings.bind, settings.http.backlog)?;
        let addr = listener.local_addr()?;
        let dropped = metrics.clone();
        let mut hub = Hub::new(
            clock::new_epoch(),
            settings.replay_capacity,
            SUBSCRIBER_BUFFER,
        )
        .with_drop_hook(Box::new(move || dropped.sse_dropped_slow()));
        if settings.access == AccessMode::Discord {
            hub = hub.with_personalize(Box::new(access::personal_voice_snapshot));
        }
        let hub = Arc::new(hub);
        let discord_access = (settings.access == AccessMode::Discord)
            .then(|| Arc::new(access::DiscordAccess::new(hub.clone())));
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
        let state = Arc::new(AppState {
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
