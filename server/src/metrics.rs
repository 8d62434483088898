//! Prometheus metrics for the edge and the gateway (CONTRACT.md §6, spec
//! FR-007), exposed at `GET /metrics`.
//!
//! One [`Metrics`] value holds every series of both roles, so `relay all`
//! serves them together and `relay edge` / `relay gateway` simply leave the
//! other role's series at zero. It is `Send + Sync`; share it in an `Arc`.
//!
//! Handlers call plain methods ([`Metrics::event_received`],
//! [`Metrics::command_done`], …), never the registry. Every label value is
//! mapped onto a fixed list, and anything else becomes `"other"`, so a hostile
//! or buggy peer cannot grow the series count.
//!
//! Derived series, so handlers never count twice:
//! - `relay_messages_total{type}` is bumped by [`Metrics::event_received`] for
//!   `messageCreate` / `messageUpdate` / `messageDelete`, and by
//!   [`Metrics::command_done`] for an acknowledged (`ok`) `sendMessage`.
//! - `relay_voice_events_total{kind}` (`joined` / `left`) is bumped by
//!   [`Metrics::event_received`] for `voice.joined` / `voice.left`.
//!
//! [`Metrics::encode`] writes the OpenMetrics text format (prometheus-client's
//! text encoder, ending in `# EOF`); serve it with [`CONTENT_TYPE`], which
//! Prometheus scrapes natively. Counters are registered without `_total` and
//! the encoder appends it, so the samples read exactly `relay_…_total`.

use std::time::Duration;

use prometheus_client::encoding::text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use relay_protocol::payload::{CommandBody, EventBody};

/// The `Content-Type` of [`Metrics::encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The label value for anything not on a label's list.
pub const OTHER: &str = "other";

/// `result` values of `relay_commands_total`: `ok` (200), `queued` (202), and
/// the contract's error codes.
pub const COMMAND_RESULTS: [&str; 9] = [
    "ok",
    "queued",
    "invalid_request",
    "unauthenticated",
    "forbidden",
    "rate_limited",
    "queue_full",
    "gateway_error",
    "gateway_timeout",
];

/// `scope` values of `relay_rate_limited_total`: the edge's two buckets, the
/// gateway's `rateLimited` reply, and a 429 from Discord itself.
pub const RATE_LIMIT_SCOPES: [&str; 4] = ["user", "channel", "gateway", "discord"];

/// Discord dispatch types counted by name in `relay_discord_events_total`.
pub const DISCORD_EVENT_TYPES: [&str; 20] = [
    "READY",
    "RESUMED",
    "GUILD_CREATE",
    "GUILD_UPDATE",
    "GUILD_DELETE",
    "GUILD_MEMBER_ADD",
    "GUILD_MEMBER_UPDATE",
    "GUILD_MEMBER_REMOVE",
    "CHANNEL_CREATE",
    "CHANNEL_UPDATE",
    "CHANNEL_DELETE",
    "MESSAGE_CREATE",
    "MESSAGE_UPDATE",
    "MESSAGE_DELETE",
    "MESSAGE_DELETE_BULK",
    "MESSAGE_REACTION_ADD",
    "MESSAGE_REACTION_REMOVE",
    "TYPING_START",
    "VOICE_STATE_UPDATE",
    "PRESENCE_UPDATE",
];

/// Gateway REST routes besides the five commands.
pub const ROUTE_GATEWAY_BOT: &str = "gatewayBot";

const MESSAGE_TYPES: [&str; 4] = [
    "messageCreate",
    "messageUpdate",
    "messageDelete",
    "sendMessage",
];

type Label1 = [(&'static str, &'static str); 1];
type Label2 = [(&'static str, &'static str); 2];

/// Every relay metric. See the module docs for the naming rules.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    // Edge: link.
    ws_connected: Gauge,
    ws_reconnects: Counter,
    ws_rtt: Histogram,
    events_received: Family<Label1, Counter>,
    messages: Family<Label1, Counter>,
    voice_events: Family<Label1, Counter>,
    malformed_frames: Counter,
    link_auth_failures: Counter,
    // Edge: browsers.
    sse_clients: Gauge,
    sse_flush: Histogram,
    sse_dropped_slow: Counter,
    event_delivery: Histogram,
    // Edge: commands.
    commands: Family<Label2, Counter>,
    command_latency: Histogram,
    command_queue_depth: Gauge,
    rate_limited: Family<Label1, Counter>,
    // Gateway.
    discord_events: Family<Label1, Counter>,
    discord_events_skipped: Family<Label1, Counter>,
    discord_rest: Family<Label2, Counter>,
    discord_heartbeat_latency: Histogram,
    link_edges: Gauge,
    commands_deduplicated: Counter,
    // Redis (CONTRACT.md §10).
    gateway_leader: Gauge,
    redis_up: Gauge,
    redis_ops: Family<Label1, Histogram, fn() -> Histogram>,
}

/// `op` values of `relay_redis_op_seconds` (docs/redis.md): the edge's, then the
/// gateway's (lease, stored session, shared replies, guild models); anything
/// else counts as `other`.
pub const REDIS_OPS: [&str; 17] = [
    "ping",
    "xadd",
    "sync",
    "xrange",
    "limit",
    "read_limit",
    "lease",
    "lease_release",
    "session_load",
    "session_ready",
    "session_seq",
    "session_reset",
    "reply_claim",
    "reply_get",
    "reply_store",
    "guilds_load",
    "guilds_save",
];

/// Buckets of `relay_redis_op_seconds`: loopback calls take well under a
/// millisecond; the top buckets catch the connection deadline.
fn redis_op_histogram() -> Histogram {
    Histogram::new([
        0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    ])
}

/// Keeps a connection gauge raised while alive; lowers it on drop, so an early
/// return or a panic in a connection thread cannot leave the gauge high.
#[derive(Debug)]
#[must_use = "the gauge drops back as soon as the guard is dropped"]
pub struct ConnectionGuard(Gauge);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every series, with the known label values pre-created at zero
    /// so dashboards and `rate()` see them before the first event.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let m = Metrics {
            ws_connected: Gauge::default(),
            ws_reconnects: Counter::default(),
            ws_rtt: Histogram::new([
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0,
            ]),
            events_received: Family::default(),
            messages: Family::default(),
            voice_events: Family::default(),
            malformed_frames: Counter::default(),
            link_auth_failures: Counter::default(),
            sse_clients: Gauge::default(),
            sse_flush: Histogram::new([
                0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
                0.025, 0.05, 0.1, 0.25, 1.0,
            ]),
            sse_dropped_slow: Counter::default(),
            // 100 µs to 1 s in 1-2.5-5 steps: the SC targets live in the low milliseconds.
            event_delivery: Histogram::new([
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                1.0,
            ]),
            commands: Family::default(),
            command_latency: Histogram::new([
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            command_queue_depth: Gauge::default(),
            rate_limited: Family::default(),
            discord_events: Family::default(),
            discord_events_skipped: Family::default(),
            discord_rest: Family::default(),
            discord_heartbeat_latency: Histogram::new([
                0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            link_edges: Gauge::default(),
            commands_deduplicated: Counter::default(),
            gateway_leader: Gauge::default(),
            redis_up: Gauge::default(),
            redis_ops: Family::new_with_constructor(redis_op_histogram as fn() -> Histogram),
            registry: Registry::default(),
        };

        for t in EventBody::TYPES {
            let _ = m.events_received.get_or_create(&[("type", t)]);
        }
        for t in MESSAGE_TYPES {
            let _ = m.messages.get_or_create(&[("type", t)]);
        }
        for k in ["joined", "left"] {
            let _ = m.voice_events.get_or_create(&[("kind", k)]);
        }
        for s in RATE_LIMIT_SCOPES {
            let _ = m.rate_limited.get_or_create(&[("scope", s)]);
        }
        for op in REDIS_OPS {
            let _ = m.redis_ops.get_or_create(&[("op", op)]);
        }

        let r = &mut registry;
        r.register(
            "relay_ws_connected",
            "1 while the link to the gateway is up, else 0",
            m.ws_connected.clone(),
        );
        r.register(
            "relay_ws_reconnects",
            "Link reconnect attempts after a failure",
            m.ws_reconnects.clone(),
        );
        r.register(
            "relay_ws_rtt_seconds",
            "Link round-trip time measured with WebSocket ping/pong",
            m.ws_rtt.clone(),
        );
        r.register(
            "relay_events_received",
            "Events received from the gateway, by type",
            m.events_received.clone(),
        );
        r.register(
            "relay_messages",
            "Chat messages seen (messageCreate/Update/Delete) and sent (sendMessage acked)",
            m.messages.clone(),
        );
        r.register(
            "relay_voice_events",
            "Voice membership changes, by kind (joined, left)",
            m.voice_events.clone(),
        );
        r.register(
            "relay_sse_clients",
            "Open /api/stream connections",
            m.sse_clients.clone(),
        );
        r.register(
            "relay_sse_flush_seconds",
            "Time to write and flush one SSE event to one client",
            m.sse_flush.clone(),
        );
        r.register(
            "relay_event_delivery_seconds",
            "From an event's arrival at the edge to its flush to a client",
            m.event_delivery.clone(),
        );
        r.register(
            "relay_commands",
            "Browser commands, by type and result",
            m.commands.clone(),
        );
        r.register(
            "relay_command_latency_seconds",
            "From accepting a command to the gateway's reply",
            m.command_latency.clone(),
        );
        r.register(
            "relay_command_queue_depth",
            "Commands waiting in the outbound queue",
            m.command_queue_depth.clone(),
        );
        r.register(
            "relay_rate_limited",
            "Commands refused for rate limits, by scope",
            m.rate_limited.clone(),
        );
        r.register(
            "relay_malformed_frames",
            "Link frames the edge could not read",
            m.malformed_frames.clone(),
        );
        r.register(
            "relay_sse_dropped_slow",
            "SSE clients disconnected for falling behind",
            m.sse_dropped_slow.clone(),
        );
        r.register(
            "relay_link_auth_failures",
            "Link upgrades refused for a wrong or missing LINK_TOKEN, by this gateway or to this edge",
            m.link_auth_failures.clone(),
        );
        r.register(
            "relay_discord_events",
            "Discord gateway dispatches, by type",
            m.discord_events.clone(),
        );
        r.register(
            "relay_discord_events_skipped",
            "Discord dispatches dropped because a field was missing or of the wrong type, by type",
            m.discord_events_skipped.clone(),
        );
        r.register(
            "relay_discord_rest",
            "Discord REST calls, by route (command type) and HTTP status",
            m.discord_rest.clone(),
        );
        r.register(
            "relay_discord_heartbeat_latency_seconds",
            "Discord gateway heartbeat to heartbeat-ACK latency",
            m.discord_heartbeat_latency.clone(),
        );
        r.register(
            "relay_link_edges",
            "Edges connected to this gateway's link endpoint",
            m.link_edges.clone(),
        );
        r.register(
            "relay_link_commands_deduplicated",
            "Re-sent commands answered from the de-duplication cache",
            m.commands_deduplicated.clone(),
        );
        r.register(
            "relay_gateway_leader",
            "1 on the gateway that holds the lease and runs the Discord session, else 0",
            m.gateway_leader.clone(),
        );
        r.register(
            "relay_redis_up",
            "1 while this process reaches Redis; 0 while it is down (and without REDIS_URL)",
            m.redis_up.clone(),
        );
        r.register(
            "relay_redis_op_seconds",
            "Duration of Redis calls by operation, failures included",
            m.redis_ops.clone(),
        );
        Metrics { registry, ..m }
    }

    /// The exposition text (OpenMetrics, see [`CONTENT_TYPE`]).
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        // Writing into a String cannot fail.
        let _ = text::encode(&mut out, &self.registry);
        out
    }

    // ---- edge: link ----

    /// Records the link going up or down (`relay_ws_connected`).
    pub fn set_ws_connected(&self, up: bool) {
        self.ws_connected.set(i64::from(up));
    }

    /// Whether the link is up, as last recorded.
    pub fn ws_connected(&self) -> bool {
        self.ws_connected.get() > 0
    }

    /// Counts a reconnect attempt (`relay_ws_reconnects_total`).
    pub fn ws_reconnect(&self) {
        self.ws_reconnects.inc();
    }

    /// Records one ping/pong round trip (`relay_ws_rtt_seconds`).
    pub fn observe_ws_rtt(&self, rtt: Duration) {
        self.ws_rtt.observe(rtt.as_secs_f64());
    }

    /// Counts a link event by its wire `type` (`relay_events_received_total`),
    /// and the derived message and voice series (see the module docs).
    pub fn event_received(&self, kind: &str) {
        let t = bounded(kind, &EventBody::TYPES);
        self.events_received.get_or_create(&[("type", t)]).inc();
        if MESSAGE_TYPES.contains(&t) {
            self.messages.get_or_create(&[("type", t)]).inc();
        }
        let voice = match t {
            "voice.joined" => Some("joined"),
            "voice.left" => Some("left"),
            _ => None,
        };
        if let Some(k) = voice {
            self.voice_events.get_or_create(&[("kind", k)]).inc();
        }
    }

    /// Counts a link frame the edge could not read (`relay_malformed_frames_total`).
    pub fn malformed_frame(&self) {
        self.malformed_frames.inc();
    }

    /// Counts a link upgrade refused for its token (`relay_link_auth_failures_total`):
    /// the edge counts the refusals it gets, the gateway the ones it gives. In
    /// `relay all` both share one LINK_TOKEN, so no refusal is counted twice.
    pub fn link_auth_failure(&self) {
        self.link_auth_failures.inc();
    }

    // ---- edge: browsers ----

    /// Raises `relay_sse_clients` until the guard drops.
    pub fn sse_client_connected(&self) -> ConnectionGuard {
        self.sse_clients.inc();
        ConnectionGuard(self.sse_clients.clone())
    }

    /// Open SSE connections, for `/readyz`.
    pub fn sse_clients(&self) -> i64 {
        self.sse_clients.get()
    }

    /// Records one event write+flush to one client (`relay_sse_flush_seconds`).
    pub fn observe_sse_flush(&self, d: Duration) {
        self.sse_flush.observe(d.as_secs_f64());
    }

    /// Records arrival-to-flush time of one event (`relay_event_delivery_seconds`).
    pub fn observe_delivery(&self, d: Duration) {
        self.event_delivery.observe(d.as_secs_f64());
    }

    /// Counts a client dropped for being slow (`relay_sse_dropped_slow_total`).
    pub fn sse_dropped_slow(&self) {
        self.sse_dropped_slow.inc();
    }

    // ---- edge: commands ----

    /// Records a command that got a reply or a final answer: counts it by
    /// `type` and `result` (one of [`COMMAND_RESULTS`]) and observes `latency`
    /// (`relay_command_latency_seconds`). An `ok` `sendMessage` also counts in
    /// `relay_messages_total{type="sendMessage"}`.
    pub fn command_done(&self, kind: &str, result: &str, latency: Duration) {
        let (t, r) = self.count_command(kind, result);
        self.command_latency.observe(latency.as_secs_f64());
        if t == "sendMessage" && r == "ok" {
            self.messages.get_or_create(&[("type", t)]).inc();
        }
    }

    /// Counts a command refused before it was sent (401/403/400/429/503), without
    /// a latency sample: those answers would only drag the latency histogram down.
    pub fn command_rejected(&self, kind: &str, result: &str) {
        self.count_command(kind, result);
    }

    fn count_command(&self, kind: &str, result: &str) -> (&'static str, &'static str) {
        let t = bounded(kind, &CommandBody::TYPES);
        let r = bounded(result, &COMMAND_RESULTS);
        self.commands
            .get_or_create(&[("type", t), ("result", r)])
            .inc();
        (t, r)
    }

    /// Sets `relay_command_queue_depth`.
    pub fn set_command_queue_depth(&self, depth: usize) {
        self.command_queue_depth
            .set(i64::try_from(depth).unwrap_or(i64::MAX));
    }

    /// The queue depth, as last set, for `/readyz`.
    pub fn command_queue_depth(&self) -> i64 {
        self.command_queue_depth.get()
    }

    /// Counts a rate-limit refusal by scope (one of [`RATE_LIMIT_SCOPES`]).
    pub fn rate_limited(&self, scope: &str) {
        let s = bounded(scope, &RATE_LIMIT_SCOPES);
        self.rate_limited.get_or_create(&[("scope", s)]).inc();
    }

    // ---- gateway ----

    /// Counts a Discord dispatch by its `t` (`relay_discord_events_total`).
    pub fn discord_event(&self, kind: &str) {
        let t = bounded(kind, &DISCORD_EVENT_TYPES);
        self.discord_events.get_or_create(&[("type", t)]).inc();
    }

    /// Counts a dispatch the translator could not read and dropped
    /// (`relay_discord_events_skipped_total`); it was counted as received too.
    pub fn discord_event_skipped(&self, kind: &str) {
        let t = bounded(kind, &DISCORD_EVENT_TYPES);
        self.discord_events_skipped
            .get_or_create(&[("type", t)])
            .inc();
    }

    /// Counts a Discord REST call. `route` is the command type (or
    /// [`ROUTE_GATEWAY_BOT`]); `status` is the HTTP status, `None` when no
    /// response arrived (label `error`).
    pub fn discord_rest(&self, route: &str, status: Option<u16>) {
        let route = if route == ROUTE_GATEWAY_BOT {
            ROUTE_GATEWAY_BOT
        } else {
            bounded(route, &CommandBody::TYPES)
        };
        self.discord_rest
            .get_or_create(&[("route", route), ("status", status_label(status))])
            .inc();
    }

    /// Records a heartbeat→ACK latency (`relay_discord_heartbeat_latency_seconds`).
    pub fn observe_discord_heartbeat(&self, d: Duration) {
        self.discord_heartbeat_latency.observe(d.as_secs_f64());
    }

    /// Sets `relay_link_edges` to the link server's edge count. A count rather
    /// than a guard per edge: the server drops edges in bulk (kick, shutdown)
    /// and reports its count under the fan-out lock, so the gauge never
    /// disagrees with it.
    pub fn set_link_edges(&self, edges: usize) {
        self.link_edges
            .set(i64::try_from(edges).unwrap_or(i64::MAX));
    }

    /// Edges connected to this process's gateway, as last set, for `/readyz`.
    pub fn link_edges(&self) -> i64 {
        self.link_edges.get()
    }

    /// Counts a command answered from the de-duplication cache.
    pub fn command_deduplicated(&self) {
        self.commands_deduplicated.inc();
    }

    // ---- redis ----

    /// Whether this gateway holds the lease (`relay_gateway_leader`).
    pub fn set_gateway_leader(&self, leader: bool) {
        self.gateway_leader.set(i64::from(leader));
    }

    /// `relay_gateway_leader` as last set.
    pub fn gateway_leader(&self) -> bool {
        self.gateway_leader.get() == 1
    }

    /// One Redis call that also says whether Redis answered
    /// (`relay_redis_op_seconds`, `relay_redis_up`).
    pub fn redis_op(&self, op: &'static str, took: Duration, answered: bool) {
        self.observe_redis_op(op, took);
        self.set_redis_up(answered);
    }

    /// Records whether Redis answered the last call (`relay_redis_up`).
    pub fn set_redis_up(&self, up: bool) {
        self.redis_up.set(i64::from(up));
    }

    /// Records one Redis call (`relay_redis_op_seconds{op}`).
    pub fn observe_redis_op(&self, op: &str, took: Duration) {
        self.redis_ops
            .get_or_create(&[("op", bounded(op, &REDIS_OPS))])
            .observe(took.as_secs_f64());
    }

    /// A [`RedisConn`](relay_runtime::redis_conn::RedisConn) observer for
    /// `relay_redis_op_seconds` (`relay_redis_up` follows the connection's
    /// own state: an error reply is not Redis being down).
    pub fn redis_observer(self: &std::sync::Arc<Self>) -> relay_runtime::redis_conn::OpObserver {
        let m = self.clone();
        Box::new(move |op, took, _ok| m.observe_redis_op(op, took))
    }
}

/// `value` as the matching `'static` entry of `known`, or [`OTHER`].
fn bounded(value: &str, known: &[&'static str]) -> &'static str {
    known
        .iter()
        .find(|k| **k == value)
        .copied()
        .unwrap_or(OTHER)
}

/// A bounded label for an HTTP status: the common codes by number, the rest
/// by class (`4xx`), `error` when there was no response.
fn status_label(status: Option<u16>) -> &'static str {
    match status {
        None => "error",
        Some(200) => "200",
        Some(201) => "201",
        Some(204) => "204",
        Some(400) => "400",
        Some(401) => "401",
        Some(403) => "403",
        Some(404) => "404",
        Some(429) => "429",
        Some(500) => "500",
        Some(502) => "502",
        Some(503) => "503",
        Some(504) => "504",
        Some(100..=199) => "1xx",
        Some(200..=299) => "2xx",
        Some(300..=399) => "3xx",
        Some(400..=499) => "4xx",
        Some(500..=599) => "5xx",
        Some(_) => OTHER,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    const CONTRACT_NAMES: [&str; 21] = [
        "relay_ws_connected",
        "relay_ws_reconnects_total",
        "relay_ws_rtt_seconds",
        "relay_events_received_total",
        "relay_messages_total",
        "relay_voice_events_total",
        "relay_sse_clients",
        "relay_sse_flush_seconds",
        "relay_event_delivery_seconds",
        "relay_commands_total",
        "relay_command_latency_seconds",
        "relay_command_queue_depth",
        "relay_rate_limited_total",
        "relay_malformed_frames_total",
        "relay_sse_dropped_slow_total",
        "relay_link_auth_failures_total",
        "relay_discord_events_total",
        "relay_discord_rest_total",
        "relay_discord_heartbeat_latency_seconds",
        "relay_link_edges",
        "relay_link_commands_deduplicated_total",
    ];

    fn use_everything(m: &Metrics) {
        m.set_ws_connected(true);
        m.ws_reconnect();
        m.observe_ws_rtt(Duration::from_millis(3));
        m.event_received("messageCreate");
        m.event_received("voice.joined");
        m.malformed_frame();
        m.link_auth_failure();
        let _guard = m.sse_client_connected();
        m.observe_sse_flush(Duration::from_micros(40));
        m.observe_delivery(Duration::from_micros(700));
        m.sse_dropped_slow();
        m.command_done("sendMessage", "ok", Duration::from_millis(20));
        m.set_command_queue_depth(3);
        m.rate_limited("user");
        m.discord_event("MESSAGE_CREATE");
        m.discord_rest("sendMessage", Some(200));
        m.observe_discord_heartbeat(Duration::from_millis(40));
        m.set_link_edges(1);
        m.command_deduplicated();
    }

    /// Sample lines as (name, labels, value).
    fn samples(text: &str) -> Vec<(String, String, String)> {
        text.lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .map(|l| {
                let (series, value) = l.rsplit_once(' ').unwrap_or((l, ""));
                let (name, labels) = match series.split_once('{') {
                    Some((n, rest)) => (n, rest.trim_end_matches('}')),
                    None => (series, ""),
                };
                (name.to_owned(), labels.to_owned(), value.to_owned())
            })
            .collect()
    }

    fn value(text: &str, name: &str, labels: &str) -> Option<String> {
        samples(text)
            .into_iter()
            .find(|(n, l, _)| n == name && l == labels)
            .map(|(_, _, v)| v)
    }

    #[test]
    fn every_contract_name_is_exposed_exactly() {
        let m = Metrics::new();
        use_everything(&m);
        let text = m.encode();
        let names: HashSet<String> = samples(&text)
            .into_iter()
            .map(|(n, _, _)| {
                for suffix in ["_bucket", "_sum", "_count", "_created"] {
                    if let Some(base) = n.strip_suffix(suffix) {
                        if base.ends_with("_seconds") {
                            return base.to_owned();
                        }
                    }
                }
                n
            })
            .collect();
        for name in CONTRACT_NAMES {
            assert!(names.contains(name), "{name} missing from\n{text}");
        }
        assert!(!text.contains("_total_total"), "{text}");
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn labels_and_values() {
        let m = Metrics::new();
        use_everything(&m);
        m.event_received("voice.left");
        m.event_received("someNewType");
        m.command_rejected("voiceMute", "forbidden");
        m.command_rejected("sendMessage", "I am a teapot");
        m.rate_limited("a-million-users");
        m.discord_rest("voiceMove", Some(418));
        m.discord_rest(ROUTE_GATEWAY_BOT, None);
        m.discord_event("SOMETHING_NEW");
        m.discord_event_skipped("TYPING_START");
        let t = m.encode();
        let v = |name, labels| value(&t, name, labels);
        assert_eq!(v("relay_ws_connected", ""), Some("1".into()));
        assert_eq!(
            v("relay_events_received_total", "type=\"messageCreate\""),
            Some("1".into())
        );
        assert_eq!(
            v("relay_events_received_total", "type=\"other\""),
            Some("1".into())
        );
        assert_eq!(
            v("relay_events_received_total", "type=\"ack\""),
            Some("0".into())
        );
        // Derived series.
        assert_eq!(
            v("relay_messages_total", "type=\"messageCreate\""),
            Some("1".into())
        );
        assert_eq!(
            v("relay_messages_total", "type=\"sendMessage\""),
            Some("1".into())
        );
        assert_eq!(
            v("relay_voice_events_total", "kind=\"joined\""),
            Some("1".into())
        );
        assert_eq!(
            v("relay_voice_events_total", "kind=\"left\""),
            Some("1".into())
        );
        assert_eq!(
            v("relay_commands_total", "type=\"sendMessage\",result=\"ok\""),
            Some("1".into())
        );
        assert_eq!(
            v(
                "relay_commands_total",
                "type=\"voiceMute\",result=\"forbidden\""
            ),
            Some("1".into())
        );
        assert_eq!(
            v(
                "relay_commands_total",
                "type=\"sendMessage\",result=\"other\""
            ),
            Some("1".into())
        );
        // Only command_done observes latency.
        assert_eq!(
            v("relay_command_latency_seconds_count", ""),
            Some("1".into())
        );
        assert_eq!(v("relay_command_queue_depth", ""), Some("3".into()));
        assert_eq!(
            v("relay_rate_limited_total", "scope=\"user\""),
            Some("1".into())
        );
        assert_eq!(
            v("relay_rate_limited_total", "scope=\"other\""),
            Some("1".into())
        );
        assert_eq!(
            v("relay_rate_limited_total", "scope=\"channel\""),
            Some("0".into())
        );
        assert_eq!(
            v(
                "relay_discord_rest_total",
                "route=\"sendMessage\",status=\"200\""
            ),
            Some("1".into())
        );
        assert_eq!(
            v(
                "relay_discord_rest_total",
                "route=\"voiceMove\",status=\"4xx\""
            ),
            Some("1".into())
        );
        assert_eq!(
            v(
                "relay_discord_rest_total",
                "route=\"gatewayBot\",status=\"error\""
            ),
            Some("1".into())
        );
        assert_eq!(
            v("relay_discord_events_total", "type=\"other\""),
            Some("1".into())
        );
        assert_eq!(
            v(
                "relay_discord_events_skipped_total",
                "type=\"TYPING_START\""
            ),
            Some("1".into())
        );
        assert_eq!(
            v("relay_event_delivery_seconds_bucket", "le=\"0.0001\""),
            Some("0".into())
        );
        assert_eq!(
            v("relay_event_delivery_seconds_bucket", "le=\"0.001\""),
            Some("1".into())
        );
        assert!(t.contains("# TYPE relay_ws_rtt_seconds histogram"));
        assert!(t.contains("# TYPE relay_commands counter"));
    }

    #[test]
    fn guards_lower_the_gauges_and_getters_read_them() {
        let m = Metrics::new();
        let a = m.sse_client_connected();
        let b = m.sse_client_connected();
        assert_eq!(m.sse_clients(), 2);
        drop(a);
        assert_eq!(m.sse_clients(), 1);
        drop(b);
        assert_eq!(m.sse_clients(), 0);
        m.set_link_edges(2);
        assert_eq!(m.link_edges(), 2);
        assert_eq!(value(&m.encode(), "relay_link_edges", ""), Some("2".into()));
        m.set_link_edges(0);
        assert_eq!(value(&m.encode(), "relay_link_edges", ""), Some("0".into()));
        assert!(!m.ws_connected());
        m.set_ws_connected(true);
        assert!(m.ws_connected());
        m.set_command_queue_depth(usize::MAX);
        assert_eq!(m.command_queue_depth(), i64::MAX);
    }

    #[test]
    fn label_cardinality_is_bounded() {
        let m = Metrics::new();
        let feed = |range: std::ops::Range<u32>| {
            for i in range {
                let junk = format!("type-{i}");
                m.event_received(&junk);
                m.command_done(&junk, &junk, Duration::ZERO);
                m.rate_limited(&junk);
                m.discord_event(&junk);
                m.discord_rest(&junk, Some(u16::try_from(i % 500).unwrap_or(0) + 100));
                m.observe_redis_op(&junk, Duration::ZERO);
            }
        };
        feed(0..500);
        let n = samples(&m.encode()).len();
        // Fixed lists only: more junk adds no series, and there are a few
        // hundred at most (every label list and histogram bucket counted).
        feed(500..2000);
        assert_eq!(samples(&m.encode()).len(), n, "new input, new series");
        assert!(n < 600, "{n} samples");
    }

    #[test]
    fn metrics_are_shareable_across_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Metrics>();
    }
}
