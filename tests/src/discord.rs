//! A [`SimDiscord`] with fast heartbeats and the gateway's Discord driver
//! ([`DiscordGateway`]) connected to it, with every translated event and every
//! session notice delivered on a channel, so tests wait on signals, not sleeps.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use relay_protocol::backoff::BackoffConfig;
use relay_protocol::discord::dispatch::Skipped;
use relay_protocol::discord::session::BotToken;
use relay_protocol::frame::{parse_command, GatewayCommand, GatewayEvent};
use relay_runtime::discord_gateway::{
    shared_translator, DiscordConfig, DiscordGateway, DiscordObserver, FnSink,
};
pub use relay_runtime::sim_discord::{ids, SimConfig, SimDiscord};
use serde_json::{json, Value};

/// The longest any one wait in a test may take before it fails.
pub const WAIT: Duration = Duration::from_secs(4);

/// Longest wait for a new session: the session spaces Identify frames 5 s apart.
pub const REIDENTIFY_WAIT: Duration = Duration::from_secs(8);

/// Hello's heartbeat interval in tests: the session clamps anything lower to 1 s.
pub const HEARTBEAT: Duration = Duration::from_millis(1000);

/// A quiet simulator with [`HEARTBEAT`].
pub fn sim_config() -> SimConfig {
    SimConfig {
        heartbeat_interval: HEARTBEAT,
        ..SimConfig::default()
    }
}

/// Starts a simulator.
pub fn start_sim(config: SimConfig) -> SimDiscord {
    SimDiscord::start(config).expect("the simulated Discord starts")
}

/// Reconnects after 50 ms doubling to 400 ms, so a test never waits out real backoff.
pub fn fast_backoff() -> BackoffConfig {
    BackoffConfig {
        base: Duration::from_millis(50),
        cap: Duration::from_millis(400),
        jitter: 0.2,
    }
}

/// The driver's config for `sim`: its token, REST base and gateway URL, fast backoff.
pub fn discord_config(sim: &SimDiscord) -> DiscordConfig {
    DiscordConfig {
        api_base: sim.api_base(),
        gateway_url: Some(sim.gateway_url()),
        backoff: fast_backoff(),
        connect_timeout: Duration::from_secs(2),
        ..DiscordConfig::new(BotToken::new(sim.bot_token()))
    }
}

/// `relay gateway`'s settings for `sim` on a loopback port of its own, with
/// `link_token`; the caller adjusts the rest (backoff, Redis, access).
pub fn gateway_settings(sim: &SimDiscord, link_token: &str) -> relay::gateway::Settings {
    relay::gateway::Settings::for_discord_at(
        std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        relay::secret::Secret::new(link_token),
        relay::secret::Secret::new(sim.bot_token()),
        sim.api_base(),
        sim.gateway_url(),
    )
}

/// What the driver told its observer.
#[derive(Debug, Clone, PartialEq)]
pub enum Notice {
    /// READY or RESUMED (`true`), or the connection went down (`false`).
    Connected(bool),
    /// A reconnect was scheduled.
    Reconnect {
        /// Whether it resumes.
        resume: bool,
    },
    /// A heartbeat was acknowledged.
    HeartbeatAck,
    /// A dispatch arrived.
    Dispatch(String),
    /// A handled dispatch was dropped unread: its name and why.
    Skipped(String, String),
}

/// A [`DiscordObserver`] that forwards every notice to a channel.
pub struct ChannelObserver(pub Sender<Notice>);

impl DiscordObserver for ChannelObserver {
    fn on_dispatch(&self, event: &str) {
        let _ = self.0.send(Notice::Dispatch(event.to_owned()));
    }
    fn on_dispatch_skipped(&self, skipped: &Skipped) {
        let _ = self.0.send(Notice::Skipped(
            skipped.event.to_owned(),
            skipped.reason.to_string(),
        ));
    }
    fn on_heartbeat_ack(&self, _latency: Duration) {
        let _ = self.0.send(Notice::HeartbeatAck);
    }
    fn on_connected(&self, up: bool) {
        let _ = self.0.send(Notice::Connected(up));
    }
    fn on_reconnect(&self, resume: bool) {
        let _ = self.0.send(Notice::Reconnect { resume });
    }
}

/// A simulator and the Discord driver on it.
pub struct Driven {
    /// The simulated Discord.
    pub sim: SimDiscord,
    /// The driver under test.
    pub gateway: DiscordGateway,
    /// Every translated event, in publish order.
    pub events: Receiver<GatewayEvent>,
    /// Every notice, in order.
    pub notices: Receiver<Notice>,
}

impl Driven {
    /// Starts a simulator with `sim` and the driver on it, and waits for READY.
    pub fn start(sim: SimConfig) -> Driven {
        let sim = start_sim(sim);
        let config = discord_config(&sim);
        let driven = Self::start_with(sim, config);
        driven.wait_connected();
        driven
    }

    /// Starts the driver on `sim` with `config`; does not wait.
    pub fn start_with(sim: SimDiscord, config: DiscordConfig) -> Driven {
        let (event_tx, events) = crossbeam_channel::unbounded();
        let (notice_tx, notices) = crossbeam_channel::unbounded();
        let sink = FnSink(move |e: GatewayEvent| {
            let _ = event_tx.send(e);
        });
        let gateway = DiscordGateway::start(
            config,
            shared_translator(None),
            Arc::new(sink),
            Arc::new(ChannelObserver(notice_tx)),
        )
        .expect("the Discord driver starts");
        Driven {
            sim,
            gateway,
            events,
            notices,
        }
    }

    /// Waits for the first notice `pred` accepts; panics after [`WAIT`].
    pub fn wait_notice(&self, what: &str, pred: impl Fn(&Notice) -> bool) -> Notice {
        wait_for(&self.notices, what, pred)
    }

    /// Waits until the session is up (READY or RESUMED).
    pub fn wait_connected(&self) {
        self.wait_notice("the session to be up", |n| *n == Notice::Connected(true));
    }

    /// Waits for the next event of type `type_name`, skipping others.
    pub fn next_event(&self, type_name: &str) -> GatewayEvent {
        wait_for(&self.events, type_name, |e| e.body.type_name() == type_name)
    }

    /// Every event published so far and not yet taken.
    pub fn drain_events(&self) -> Vec<GatewayEvent> {
        self.events.try_iter().collect()
    }
}

/// Waits for the first item on `rx` that `pred` accepts, dropping the others;
/// panics naming `what` after [`WAIT`].
pub fn wait_for<T: std::fmt::Debug>(rx: &Receiver<T>, what: &str, pred: impl Fn(&T) -> bool) -> T {
    wait_within(rx, WAIT, what, pred)
}

/// [`wait_for`] with its own limit, for the few waits the session makes long on
/// purpose (the 5 s identify spacing).
pub fn wait_within<T: std::fmt::Debug>(
    rx: &Receiver<T>,
    limit: Duration,
    what: &str,
    pred: impl Fn(&T) -> bool,
) -> T {
    let deadline = Instant::now() + limit;
    let mut skipped = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(item) if pred(&item) => return item,
            Ok(item) => skipped.push(item),
            Err(_) => panic!("timed out waiting for {what}; saw {skipped:?}"),
        }
    }
}

/// The ops the simulator received, in order (`op` numbers only).
pub fn ops(sim: &SimDiscord) -> Vec<u64> {
    sim.received_ops()
        .iter()
        .filter_map(|v| v["op"].as_u64())
        .collect()
}

/// A link command frame as an edge would send it.
pub fn command_json(kind: &str, data: Value, request_id: &str, actor: &str) -> Value {
    json!({
        "version": "1.0",
        "type": kind,
        "data": data,
        "meta": {
            "traceId": format!("trace-{request_id}"),
            "sentAt": "2026-01-01T00:00:00.000Z",
            "requestId": request_id,
            "actor": actor,
        },
    })
}

/// A parsed link command, as the link server hands it to the executor.
pub fn command(kind: &str, data: Value, request_id: &str, actor: &str) -> GatewayCommand {
    let text = command_json(kind, data, request_id, actor).to_string();
    parse_command(text.as_bytes()).expect("a valid command frame")
}
