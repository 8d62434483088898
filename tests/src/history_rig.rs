//! History reads end to end (CONTRACT.md §9): a simulated Discord, the real
//! gateway and an edge on loopback, and the helpers the `history-*` tests and
//! the loadgen's `history` scenario share.

use std::sync::Arc;
use std::time::Duration;

use relay::config::AccessMode;
use relay::edge::Edge;
use relay::gateway::Gateway;
use relay::metrics::Metrics;
use relay_runtime::sim_discord::{SimConfig, SimDiscord};

use crate::discord::gateway_settings;
use crate::harness::{agent, settings, Response, LINK_TOKEN};
use crate::sse_client::SseClient;

/// How long the rig waits for anything.
pub const WAIT: Duration = Duration::from_secs(10);

/// A simulated Discord, the gateway on it, and an edge on the gateway.
pub struct HistoryRig {
    /// The simulated Discord (its `requests()` show what reached Discord).
    pub sim: SimDiscord,
    /// The gateway; `None` once stopped.
    pub gateway: Option<Gateway>,
    /// The edge.
    pub edge: Edge,
}

impl HistoryRig {
    /// All three, in `access` mode, with a quiet guild.
    pub fn start(access: AccessMode) -> HistoryRig {
        Self::start_with(access, SimConfig::default())
    }

    /// All three with the simulator configured by `sim`.
    pub fn start_with(access: AccessMode, sim: SimConfig) -> HistoryRig {
        let sim = SimDiscord::start(sim).expect("sim starts");
        let metrics = Arc::new(Metrics::new());
        let gateway_settings = gateway_settings(&sim, LINK_TOKEN);
        let gateway = Gateway::start(gateway_settings, metrics.clone()).expect("gateway starts");
        assert!(gateway.wait_discord_connected(WAIT));
        let mut s = settings(&gateway.link_url());
        s.access = access;
        let edge = Edge::start(s, metrics).expect("edge starts");
        assert!(edge.wait_link(true, WAIT));
        HistoryRig {
            sim,
            gateway: Some(gateway),
            edge,
        }
    }

    /// `http://` + the edge's address.
    pub fn base(&self) -> String {
        format!("http://{}", self.edge.local_addr())
    }

    /// A session of `user` (no roles: reads need none).
    pub fn token(&self, user: &str) -> String {
        self.edge
            .issue_token(user, Some("t"), &[], Duration::from_secs(600))
    }

    /// `GET /api/channels/{channel}/messages?{query}` as `token` (none: no session).
    pub fn read(&self, token: Option<&str>, channel: &str, query: &str) -> Response {
        let mut url = format!("{}/api/channels/{channel}/messages", self.base());
        if !query.is_empty() {
            url.push('?');
            url.push_str(query);
        }
        let agent = agent();
        let mut req = agent.get(&url);
        if let Some(t) = token {
            req = req.header("Authorization", &format!("Bearer {t}"));
        }
        Response::from(req.call().expect("request"))
    }

    /// How many "Get Channel Messages" calls reached the simulated Discord.
    pub fn discord_reads(&self) -> usize {
        self.sim
            .requests()
            .iter()
            .filter(|r| r.method == "GET" && r.path.contains("/messages"))
            .count()
    }

    /// A stream of `user`, past its preamble.
    pub fn stream(&self, user: &str) -> SseClient {
        let path = format!("/api/stream?access_token={}", self.token(user));
        let mut s = SseClient::connect(self.edge.local_addr(), &path, &[]).expect("stream");
        assert_eq!(s.status, 200);
        // The preamble comes after the subscription: nothing later is missed.
        s.wait_for("voice.snapshot", WAIT).expect("the preamble");
        s
    }
}

/// The ids of a 200 answer's messages, in order.
pub fn ids_of(r: &Response) -> Vec<String> {
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["id"].as_str().expect("id").to_owned())
        .collect()
}
