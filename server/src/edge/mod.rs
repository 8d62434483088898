//! `relay edge`: the browser-facing half (CONTRACT.md §2–§4, §6, §7).
//!
//! One link client thread talks to the gateway; a pool of HTTP worker threads
//! answers requests; each SSE stream and each legacy bridge client gets its own
//! thread fed by the hub.

mod assets;
mod authn;
mod bridge;
mod commands;
mod demo;
mod http;
mod link_sink;
mod routes;
mod sockets;
mod state;
mod stream;

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use log::info;
use parking_lot::Mutex;
use relay_protocol::bucket::KeyedLimiter;
use relay_protocol::link_session::LinkConfig;
use relay_protocol::queue::QueueConfig;
use relay_runtime::clock;
use relay_runtime::hub::Hub;
use relay_runtime::link_client::LinkClient;

use state::AppState;
pub use state::{DemoChannel, DemoInfo, DemoUser, EdgeSettings};

use crate::auth::SessionKeys;
use crate::metrics::Metrics;

/// HTTP worker threads. Command calls block for up to REPLY_TIMEOUT_MS, so there
/// are enough that a burst of slow replies does not starve other requests.
const HTTP_WORKERS: usize = 32;
/// A write that makes no progress for this long fails, so a client that stopped
/// reading cannot hold its stream thread for long after the hub dropped it (each
/// partial write restarts the clock, so the bound is a few multiples of this).
const SEND_TIMEOUT: Duration = Duration::from_secs(5);
/// Events a subscriber may have queued before it counts as too slow.
const SUBSCRIBER_BUFFER: usize = 1024;

/// A running edge.
pub struct Edge {
    addr: SocketAddr,
    server: Arc<tiny_http::Server>,
    workers: Vec<JoinHandle<()>>,
    link: Option<LinkClient>,
    state: Arc<AppState>,
}

impl Edge {
    /// Binds the HTTP listener, starts the link client and the workers.
    pub fn start(settings: EdgeSettings, metrics: Arc<Metrics>) -> io::Result<Edge> {
        let listener = listener(settings.bind)?;
        let addr = listener.local_addr()?;
        let server = Arc::new(
            tiny_http::Server::from_listener(listener, None)
                .map_err(|e| io::Error::other(e.to_string()))?,
        );
        let dropped = metrics.clone();
        let hub = Arc::new(
            Hub::new(
                clock::new_epoch(),
                settings.replay_capacity,
                SUBSCRIBER_BUFFER,
            )
            .with_drop_hook(Box::new(move || dropped.sse_dropped_slow())),
        );
        let waiters = Arc::new(Mutex::new(Default::default()));
        let mut link_config = LinkConfig::new(
            settings.gateway_ws_url.clone(),
            settings.link_token.expose(),
        );
        link_config.queue = QueueConfig {
            capacity: settings.queue_capacity,
            reply_timeout: settings.reply_timeout,
        };
        let sink = link_sink::LinkSink::new(hub.clone(), metrics.clone(), waiters.clone());
        let link = LinkClient::spawn(link_config, sink);
        let limiter = KeyedLimiter::new(settings.limits)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
        let state = Arc::new(AppState {
            local_addr: addr,
            keys: SessionKeys::new(&settings.session_secret),
            settings,
            hub,
            link: link.handle(),
            limiter: Mutex::new(limiter),
            waiters,
            metrics,
        });
        let workers = (0..HTTP_WORKERS)
            .map(|i| {
                let server = server.clone();
                let state = state.clone();
                thread::Builder::new()
                    .name(format!("relay-http-{i}"))
                    .spawn(move || {
                        while let Ok(req) = server.recv() {
                            routes::handle(&state, req);
                        }
                    })
            })
            .collect::<io::Result<Vec<_>>>()?;
        info!("edge listening on http://{addr}");
        Ok(Edge {
            addr,
            server,
            workers,
            link: Some(link),
            state,
        })
    }

    /// The bound HTTP address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
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

    /// Stops accepting requests, stops the link and joins the workers. Open SSE
    /// streams end when their sockets close.
    pub fn shutdown(mut self) {
        self.server.unblock();
        for _ in 1..self.workers.len() {
            self.server.unblock();
        }
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
        if let Some(link) = self.link.take() {
            link.shutdown();
        }
    }
}

/// The HTTP listener. Accepted sockets inherit its options on Linux: no Nagle
/// delay (every SSE event leaves at once) and a send timeout, so a client that
/// stops reading cannot hold a thread forever. No receive timeout: `accept()`
/// honours it too, and tiny_http ends its accept loop on the first error.
fn listener(bind: SocketAddr) -> io::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(bind), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.set_tcp_nodelay(true)?;
    socket.set_write_timeout(Some(SEND_TIMEOUT))?;
    socket.bind(&bind.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}
