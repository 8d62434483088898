//! The whole gateway ([`Gateway`]: link server + Discord driver + REST client)
//! against a [`SimDiscord`], and [`TestEdge`]: a raw link client that sends any
//! frame and hands every frame it receives to a channel.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use parking_lot::Mutex;
use relay::gateway::{Gateway, Settings};
use relay::metrics::Metrics;
use relay_runtime::ws_io::{self, ConnectError, Incoming, Waker};
use serde_json::Value;

use crate::discord::{
    fast_backoff, gateway_settings, sim_config, start_sim, SimConfig, SimDiscord, WAIT,
};

/// The link token of every rig.
pub const LINK_TOKEN: &str = "rig-link-token";

/// A simulated Discord and a gateway connected to it.
pub struct GatewayRig {
    /// The simulated Discord.
    pub sim: SimDiscord,
    /// The gateway under test.
    pub gateway: Gateway,
    /// Its metrics.
    pub metrics: Arc<Metrics>,
}

impl GatewayRig {
    /// A quiet simulator and a gateway whose Discord session is up.
    pub fn start() -> GatewayRig {
        Self::start_with(sim_config(), |_| {})
    }

    /// Like [`GatewayRig::start`], with the simulator's config and a chance to
    /// adjust the gateway's settings.
    pub fn start_with(sim: SimConfig, adjust: impl FnOnce(&mut Settings)) -> GatewayRig {
        let sim = start_sim(sim);
        let mut settings = gateway_settings(&sim, LINK_TOKEN);
        settings.backoff = fast_backoff();
        adjust(&mut settings);
        let metrics = Arc::new(Metrics::new());
        let gateway = Gateway::start(settings, metrics.clone()).expect("the gateway starts");
        assert!(
            gateway.wait_discord_connected(WAIT),
            "the Discord session came up"
        );
        GatewayRig {
            sim,
            gateway,
            metrics,
        }
    }

    /// A new edge on the gateway's link, past its `ready` frame.
    pub fn edge(&self) -> TestEdge {
        let edge = TestEdge::connect(&self.gateway.link_url(), LINK_TOKEN).expect("link upgrade");
        edge.next_type("ready");
        edge
    }
}

/// A link client for tests: a thread owns the socket, sends what [`TestEdge::send`]
/// queues at once, and forwards every frame it reads (parsed JSON) to a channel.
pub struct TestEdge {
    frames: Receiver<Value>,
    /// Frames a [`TestEdge::next`] skipped, oldest first: a later call may want them.
    backlog: Mutex<VecDeque<Value>>,
    out: Sender<String>,
    waker: Waker,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl TestEdge {
    /// Upgrades to `url` with `Authorization: Bearer <token>` and `X-Gateway-Version: 1.0`.
    pub fn connect(url: &str, token: &str) -> Result<TestEdge, ConnectError> {
        let headers = [
            ("Authorization".to_owned(), format!("Bearer {token}")),
            ("X-Gateway-Version".to_owned(), "1.0".to_owned()),
        ];
        let mut conn = ws_io::connect(url, &headers, Duration::from_secs(2))?;
        let waker = conn.waker();
        let (frames_tx, frames) = crossbeam_channel::unbounded();
        let (out, out_rx) = crossbeam_channel::unbounded::<String>();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = thread::spawn(move || loop {
            if stopping.load(Ordering::SeqCst) {
                conn.close(1000, "test over");
                return;
            }
            for text in out_rx.try_iter() {
                if conn.send_text(text).is_err() {
                    return;
                }
            }
            loop {
                match conn.read() {
                    Ok(Some(Incoming::Text(t))) => {
                        let v = serde_json::from_str(&t).unwrap_or(Value::String(t));
                        let _ = frames_tx.send(v);
                    }
                    Ok(Some(Incoming::Pong(_))) => {}
                    Ok(None) => break,
                    Ok(Some(Incoming::Closed(_))) | Err(_) => return,
                }
            }
            if conn.wait(Some(Duration::from_secs(1))).is_err() {
                return;
            }
        });
        Ok(TestEdge {
            frames,
            backlog: Mutex::new(VecDeque::new()),
            out,
            waker,
            stop,
            thread: Some(thread),
        })
    }

    /// Sends one text frame.
    pub fn send(&self, frame: &Value) {
        let _ = self.out.send(frame.to_string());
        self.waker.wake();
    }

    /// The next frame `pred` accepts, keeping the others for later calls; panics
    /// after [`WAIT`].
    pub fn next(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let mut backlog = self.backlog.lock();
        if let Some(i) = backlog.iter().position(&pred) {
            return backlog.remove(i).expect("the position was just found");
        }
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.frames.recv_timeout(left) {
                Ok(frame) if pred(&frame) => return frame,
                Ok(frame) => backlog.push_back(frame),
                Err(_) => panic!("timed out waiting for {what}; saw {backlog:?}"),
            }
        }
    }

    /// The next frame of `type`.
    pub fn next_type(&self, type_name: &str) -> Value {
        self.next(type_name, |f| f["type"] == type_name)
    }

    /// The reply to `request_id`.
    pub fn reply_to(&self, request_id: &str) -> Value {
        self.next(&format!("the reply to {request_id}"), |f| {
            f["meta"]["requestId"] == request_id
        })
    }

    /// Frames received and not yet taken.
    pub fn pending(&self) -> Vec<Value> {
        let mut backlog = self.backlog.lock();
        backlog.extend(self.frames.try_iter());
        backlog.drain(..).collect()
    }

    /// Whether the socket thread has ended (the gateway closed the link).
    pub fn is_closed(&self) -> bool {
        self.thread.as_ref().is_none_or(|t| t.is_finished())
    }
}

impl Drop for TestEdge {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.waker.wake();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
