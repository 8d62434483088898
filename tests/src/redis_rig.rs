//! Several real edges sharing one real `redis-server` and one real gateway
//! (against the simulated Discord), for the shared replay log and the shared
//! rate limits (CONTRACT.md §10).

use std::sync::atomic::{AtomicUsize, Ordering};
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
    /// Edges started and not stopped.
    edges: Arc<AtomicUsize>,
}

/// One edge of the rig.
pub struct RigEdge {
    /// The edge.
    pub edge: Option<Edge>,
    /// Its metrics.
    pub metrics: Arc<Metrics>,
    /// `http://addr`.
    pub base: String,
    edges: Arc<AtomicUsize>,
}

impl RedisRig {
    /// Starts Redis and a gateway whose shared log keeps `log_capacity` events.
    pub fn start(log_capacity: usize) -> RedisRig {
        let redis = RedisServer::start();
        let url = redis.url();
        let rig = GatewayRig::start_with(sim_config(), |s| {
            s.redis = Some(relay::gateway::RedisSettings {
                url: Secret::new(url),
                lease: std::time::Duration::from_secs(10),
                timeout: relay::gateway::REDIS_TIMEOUT,
            });
            s.shared_log_capacity = log_capacity;
        });
        let rig = RedisRig {
            redis,
            rig,
            edges: Arc::default(),
        };
        rig.wait_delivering();
        rig
    }

    /// Waits until a message posted in the simulator reaches the link: the
    /// Discord session may be up a moment before the guild's dispatches flow.
    /// Each attempt posts one message (it takes an id in the log).
    fn wait_delivering(&self) {
        let link = self.rig.edge();
        for attempt in 0..30 {
            self.post(&format!("warm-up {attempt}"));
            std::thread::sleep(Duration::from_millis(100));
            if link.pending().iter().any(|f| f["type"] == "messageCreate") {
                drop(link);
                assert!(self.rig.gateway.wait_for_edges(0, Duration::from_secs(10)));
                return;
            }
        }
        panic!("no message reached the link within 3 s of posting");
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
        // The edge reports the link up at the upgrade; the gateway adds it to
        // its fan-out a moment later, with its `ready`. Events before that
        // would not reach it (as in v1.0), so wait for the gateway's side.
        let n = self.edges.fetch_add(1, Ordering::SeqCst) + 1;
        assert!(
            self.rig.gateway.wait_for_edges(n, Duration::from_secs(10)),
            "the gateway fans out to {n} edges"
        );
        RigEdge {
            base: format!("http://{}", edge.local_addr()),
            edge: Some(edge),
            metrics,
            edges: self.edges.clone(),
        }
    }

    /// Waits until the shared log in Redis holds the event `id` (the gateway
    /// appends after it broadcasts, so a fresh edge may otherwise read the
    /// log a moment before it has the newest event).
    pub fn wait_logged(&self, id: &str) {
        let (epoch, seq) = id.split_once('-').expect("an event id");
        let seq: u64 = seq.parse().expect("a seq");
        let mut conn = self.redis.connection();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let top: Vec<(String, Vec<(String, String)>)> = redis::cmd("XREVRANGE")
                .arg(format!("relay:events:{epoch}"))
                .arg("+")
                .arg("-")
                .arg("COUNT")
                .arg(1)
                .query(&mut conn)
                .unwrap_or_default();
            let held = top
                .first()
                .and_then(|(id, _)| id.strip_suffix("-0")?.parse::<u64>().ok());
            if held.is_some_and(|h| h >= seq) {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the log never reached {id}"
            );
            std::thread::sleep(Duration::from_millis(10));
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
            self.edges.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

impl Drop for RigEdge {
    fn drop(&mut self) {
        self.stop();
    }
}
