//! An edge started in-process against a [`TestGateway`], with helpers to call it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use relay::config::AccessMode;
use relay::edge::{Edge, EdgeSettings, HttpConfig, SignInSettings};
use relay::metrics::Metrics;
use relay::secret::Secret;
use relay_protocol::bucket::LimitConfig;

use crate::sse_client::SseClient;
use crate::test_gateway::TestGateway;

/// The link token every harness uses.
pub const LINK_TOKEN: &str = "test-link-token";
/// The session secret every harness uses.
pub const SESSION_SECRET: &str = "test-session-secret";

/// Settings for a test edge pointed at `gateway_url`, with fast defaults.
pub fn settings(gateway_url: &str) -> EdgeSettings {
    EdgeSettings {
        bind: "127.0.0.1:0".parse().expect("loopback"),
        gateway_ws_url: gateway_url.to_owned(),
        link_token: Secret::new(LINK_TOKEN),
        session_secret: Secret::new(SESSION_SECRET),
        enable_ws_bridge: false,
        heartbeat: Duration::from_secs(15),
        limits: LimitConfig::default(),
        queue_capacity: 1000,
        replay_capacity: 4096,
        reply_timeout: Duration::from_secs(5),
        access: AccessMode::Roles,
        demo: None,
        http: HttpConfig::default(),
        signin: SignInSettings::default(),
        allowed_origins: Default::default(),
        redis_url: None,
    }
}

/// A test gateway and an edge linked to it.
pub struct Harness {
    /// The gateway side.
    pub gateway: TestGateway,
    /// The edge.
    pub edge: Option<Edge>,
    /// The edge's metrics.
    pub metrics: Arc<Metrics>,
    /// Where the edge listens.
    pub addr: SocketAddr,
}

impl Harness {
    /// Starts both with default settings and waits until the link is up.
    pub fn start() -> Harness {
        Self::start_with(|_| {})
    }

    /// Starts both, letting the test adjust the edge's settings first.
    pub fn start_with(adjust: impl FnOnce(&mut EdgeSettings)) -> Harness {
        Self::start_on(TestGateway::start(LINK_TOKEN), adjust)
    }

    /// Starts an edge against a test gateway the test prepared (e.g. its `ready`
    /// snapshot), and waits until the link is up.
    pub fn start_on(gateway: TestGateway, adjust: impl FnOnce(&mut EdgeSettings)) -> Harness {
        let mut s = settings(&gateway.url());
        adjust(&mut s);
        let metrics = Arc::new(Metrics::new());
        let edge = Edge::start(s, metrics.clone()).expect("edge starts");
        let addr = edge.local_addr();
        let h = Harness {
            gateway,
            edge: Some(edge),
            metrics,
            addr,
        };
        assert!(
            h.gateway.wait_connected(Duration::from_secs(5)),
            "the gateway sees the edge"
        );
        // The gateway accepts before the edge has read the handshake's answer and
        // told browsers: wait for the edge's own view too.
        assert!(
            h.wait_link(true, Duration::from_secs(5)),
            "the edge links up"
        );
        h
    }

    /// Waits until the edge sees the link `up` (or down), as its browsers do.
    pub fn wait_link(&self, up: bool, timeout: Duration) -> bool {
        self.edge
            .as_ref()
            .expect("edge running")
            .wait_link(up, timeout)
    }

    /// A session token for `sub` with `roles`.
    pub fn token(&self, sub: &str, roles: &[&str]) -> String {
        let roles: Vec<String> = roles.iter().map(|r| r.to_string()).collect();
        self.edge.as_ref().expect("edge running").issue_token(
            sub,
            None,
            &roles,
            Duration::from_secs(3600),
        )
    }

    /// `http://addr`.
    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Opens `/api/stream` with `query` (after `?`) and extra headers.
    pub fn stream(&self, query: &str, headers: &[(&str, &str)]) -> SseClient {
        SseClient::connect(self.addr, &format!("/api/stream?{query}"), headers)
            .expect("connect stream")
    }

    /// POSTs JSON with a bearer token; returns status, headers and body.
    pub fn post(&self, path: &str, token: Option<&str>, body: &str) -> Response {
        post(&self.base(), path, token, "application/json", body)
    }

    /// GETs a path.
    pub fn get(&self, path: &str) -> Response {
        get(&self.base(), path)
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        if let Some(edge) = self.edge.take() {
            edge.shutdown();
        }
    }
}

/// A response read to the end.
#[derive(Debug)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Headers (lower-case names).
    pub headers: Vec<(String, String)>,
    /// Body text.
    pub body: String,
}

impl Response {
    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// A header by lower-case name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

impl From<ureq::http::Response<ureq::Body>> for Response {
    fn from(mut resp: ureq::http::Response<ureq::Body>) -> Self {
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_ascii_lowercase(),
                    v.to_str().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        let body = resp.body_mut().read_to_string().unwrap_or_default();
        Response {
            status,
            headers,
            body,
        }
    }
}

/// An HTTP agent that returns 4xx/5xx as responses, not errors.
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(15)))
        .build()
        .into()
}

/// GETs `path` from `base` (`http://addr`).
pub fn get(base: &str, path: &str) -> Response {
    let resp = agent()
        .get(&format!("{base}{path}"))
        .call()
        .expect("request");
    Response::from(resp)
}

/// POSTs `body` with `content_type` and an optional bearer token.
pub fn post(
    base: &str,
    path: &str,
    token: Option<&str>,
    content_type: &str,
    body: &str,
) -> Response {
    let agent = agent();
    let mut req = agent
        .post(&format!("{base}{path}"))
        .header("Content-Type", content_type);
    if let Some(t) = token {
        req = req.header("Authorization", &format!("Bearer {t}"));
    }
    Response::from(req.send(body).expect("request"))
}
