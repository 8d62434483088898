//! Several real edges sharing one real `redis-server` and one real gateway
//! (against the simulated Discord), for the shared replay log and the shared
//! rate limits (CONTRACT.md §10).

use std::sync::Arc;
use std::time::Duration;

use relay::edge::{Edge, EdgeSettings};
use relay::metrics::Metrics;
use relay::secret::Secret;

use crate::discord::{ids, sim_config};
use crate::gateway_rig::{GatewayRig, LINK_TOKEN};
use crate::harness::{self, Response};
use crate::redis_server::RedisServer;
use crate::sse_client::SseClient;

/// A redis-server, a gateway using it, and edges started on demand.
pub struct RedisRig {
    /// The shared Redis.
    pub redis: RedisServer,
    /// The gateway (and the simulated Discord).
    pub rig: GatewayRig,
}

/// One edge of the rig.
pub struct RigEdge {
    /// The edge.
    pub edge: Option<Edge>,
    /// Its metrics.
    pub metrics: Arc<Metrics>,
    /// `http://addr`.
    pub base: String,
}

impl RedisRig {
    /// Starts Redis and a gateway whose shared log keeps `log_capacity` events.
    pub fn start(log_capacity: usize) -> RedisRig {
        let redis = RedisServer::start();
        let url = redis.url();
        let rig = GatewayRig::start_with(sim_config(), |s| {
            s.redis_url = Some(Secret::new(url));
            s.shared_log_capacity = log_capacity;
        });
        RedisRig { redis, rig }
    }

    /// An edge on the gateway and Redis, its link up; `adjust` changes its settings.
    pub fn edge(&self, adjust: impl FnOnce(&mut EdgeSettings)) -> RigEdge {
        let mut s = harness::settings(&self.rig.gateway.link_url());
        s.link_token = Secret::new(LINK_TOKEN);
        s.redis_url = Some(Secret::new(self.redis.url()));
        adjust(&mut s);
        let metrics = Arc::new(Metrics::new());
        let edge = Edge::start(s, metrics.clone()).expect("edge starts");
        assert!(
            edge.wait_link(true, Duration::from_secs(10)),
            "edge links up"
        );
        RigEdge {
            base: format!("http://{}", edge.local_addr()),
            edge: Some(edge),
            metrics,
        }
    }

    /// Posts a message in the simulated guild as Ken; returns its id.
    pub fn post(&self, content: &str) -> String {
        self.rig
            .sim
            .post_as(ids::KEN, ids::GAME_ROOM, content)
            .expect("the simulator posts")
    }
}

impl RigEdge {
    /// A session token for `sub` with `chat:write`.
    pub fn token(&self, sub: &str) -> String {
        self.edge.as_ref().expect("edge running").issue_token(
            sub,
            None,
            &["chat:write".to_string()],
            Duration::from_secs(3600),
        )
    }

    /// Opens `/api/stream` as `sub`, with `Last-Event-ID` when given.
    pub fn stream(&self, sub: &str, last_event_id: Option<&str>) -> SseClient {
        let token = self.token(sub);
        let headers: Vec<(&str, &str)> = last_event_id
            .map(|id| vec![("Last-Event-ID", id)])
            .unwrap_or_default();
        let addr = self.edge.as_ref().expect("edge running").local_addr();
        SseClient::connect(addr, &format!("/api/stream?access_token={token}"), &headers)
            .expect("connect stream")
    }

    /// POSTs a command body as `sub`.
    pub fn command(&self, sub: &str, path: &str, body: &str) -> Response {
        harness::post(
            &self.base,
            path,
            Some(&self.token(sub)),
            "application/json",
            body,
        )
    }

    /// GETs a path.
    pub fn get(&self, path: &str) -> Response {
        harness::get(&self.base, path)
    }

    /// Stops the edge (its port closes, its streams end).
    pub fn stop(&mut self) {
        if let Some(edge) = self.edge.take() {
            edge.shutdown();
        }
    }
}

impl Drop for RigEdge {
    fn drop(&mut self) {
        self.stop();
    }
}
