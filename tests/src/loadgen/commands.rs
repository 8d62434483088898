//! Command load: a few worker threads, each with its own keep-alive `ureq`
//! agent, send commands on an open-loop schedule (the i-th command is due at
//! `start + i / rate`, whoever sends it), and a collector timestamps each
//! command as it comes out of the test gateway's `commands()` channel.
//! A command's HTTP → gateway latency joins the two on `requestId`.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use relay_protocol::frame::GatewayCommand;

use super::hist::Hist;
use super::now_ns;

/// One command to send.
pub struct CmdSpec {
    /// `/api/...` path.
    pub path: &'static str,
    /// JSON body.
    pub body: String,
    /// Index of the session token to send it with.
    pub token: usize,
}

/// Builds command `seq`, to be sent at `sent_ns`.
pub type MakeCmd = Arc<dyn Fn(u64, u64) -> CmdSpec + Send + Sync>;

/// What the senders saw.
#[derive(Default)]
pub struct CmdRun {
    /// Commands sent.
    pub sent: u64,
    /// HTTP round trips (send start → response read), all statuses.
    pub rtt: Hist,
    /// How late each send started against its schedule.
    pub late: Hist,
    /// Responses by status.
    pub statuses: BTreeMap<u16, u64>,
    /// Calls that got no HTTP response at all.
    pub transport_errors: u64,
    /// `requestId` and send time of each 2xx command.
    pub accepted: Vec<(String, u64)>,
    /// The first non-2xx answer, for the report.
    pub first_error: Option<String>,
    /// The span from the first send to the last response.
    pub wall: Duration,
}

impl CmdRun {
    /// Non-2xx responses plus transport errors.
    pub fn errors(&self) -> u64 {
        self.transport_errors
            + self
                .statuses
                .iter()
                .filter(|(s, _)| !(200..300).contains(*s))
                .map(|(_, n)| n)
                .sum::<u64>()
    }

    fn merge(&mut self, o: CmdRun) {
        self.sent += o.sent;
        self.rtt.merge(&o.rtt);
        self.late.merge(&o.late);
        for (s, n) in o.statuses {
            *self.statuses.entry(s).or_default() += n;
        }
        self.transport_errors += o.transport_errors;
        self.accepted.extend(o.accepted);
        if self.first_error.is_none() {
            self.first_error = o.first_error;
        }
    }
}

/// Sends commands at `rate`/s for `duration` from `workers` threads.
pub fn run(
    addr: SocketAddr,
    tokens: Arc<Vec<String>>,
    rate: f64,
    duration: Duration,
    workers: usize,
    make: MakeCmd,
) -> CmdRun {
    let next = Arc::new(AtomicU64::new(0));
    let total = (rate * duration.as_secs_f64()).round() as u64;
    let start = Instant::now() + Duration::from_millis(20);
    let base = format!("http://{addr}");
    let handles: Vec<JoinHandle<CmdRun>> = (0..workers)
        .map(|w| {
            let next = next.clone();
            let tokens = tokens.clone();
            let make = make.clone();
            let base = base.clone();
            thread::Builder::new()
                .name(format!("loadgen-cmd-{w}"))
                .spawn(move || worker(&base, &tokens, rate, total, start, &next, &*make))
                .expect("spawn command worker")
        })
        .collect();
    let mut out = CmdRun::default();
    for h in handles {
        if let Ok(r) = h.join() {
            out.merge(r);
        }
    }
    out.wall = start.elapsed();
    out
}

fn worker(
    base: &str,
    tokens: &[String],
    rate: f64,
    total: u64,
    start: Instant,
    next: &AtomicU64,
    make: &(dyn Fn(u64, u64) -> CmdSpec + Send + Sync),
) -> CmdRun {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(15)))
        .max_idle_connections_per_host(1)
        .build()
        .into();
    let mut out = CmdRun::default();
    loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        if i >= total {
            return out;
        }
        let due = start + Duration::from_secs_f64(i as f64 / rate);
        let now = Instant::now();
        if due > now {
            thread::sleep(due - now);
        }
        out.late
            .record(Instant::now().saturating_duration_since(due).as_nanos() as u64);
        let sent_ns = now_ns();
        let spec = make(i, sent_ns);
        let resp = agent
            .post(&format!("{base}{}", spec.path))
            .header("Content-Type", "application/json")
            .header("Authorization", &format!("Bearer {}", tokens[spec.token]))
            .send(spec.body.as_str());
        out.sent += 1;
        match resp {
            Ok(mut resp) => {
                let status = resp.status().as_u16();
                let body = resp.body_mut().read_to_string().unwrap_or_default();
                out.rtt.record(now_ns() - sent_ns);
                *out.statuses.entry(status).or_default() += 1;
                if (200..300).contains(&status) {
                    let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
                    if let Some(rid) = v.get("requestId").and_then(|r| r.as_str()) {
                        out.accepted.push((rid.to_owned(), sent_ns));
                    }
                } else if out.first_error.is_none() {
                    out.first_error = Some(format!("{status} {body}"));
                }
            }
            Err(e) => {
                out.rtt.record(now_ns() - sent_ns);
                out.transport_errors += 1;
                if out.first_error.is_none() {
                    out.first_error = Some(format!("transport: {e}"));
                }
            }
        }
    }
}

/// What reached the gateway.
#[derive(Default)]
pub struct GwSeen {
    /// Receive time per `requestId`.
    pub by_request: HashMap<String, u64>,
    /// Commands per type.
    pub by_type: BTreeMap<&'static str, u64>,
}

impl GwSeen {
    /// HTTP send start → gateway receipt for every accepted command; also how
    /// many accepted commands the gateway never saw.
    pub fn latency(&self, run: &CmdRun) -> (Hist, u64) {
        let mut h = Hist::new();
        let mut unmatched = 0;
        for (rid, sent) in &run.accepted {
            match self.by_request.get(rid) {
                Some(&t) => h.record(t.saturating_sub(*sent)),
                None => unmatched += 1,
            }
        }
        (h, unmatched)
    }
}

/// Drains the gateway's command channel on its own thread, stamping arrivals.
pub struct GwCollector {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<GwSeen>,
}

impl GwCollector {
    /// Starts draining `rx`.
    pub fn start(rx: Receiver<GatewayCommand>) -> GwCollector {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = thread::Builder::new()
            .name("loadgen-gw-collector".into())
            .spawn(move || {
                let mut seen = GwSeen::default();
                while !flag.load(Ordering::Relaxed) {
                    let Ok(cmd) = rx.recv_timeout(Duration::from_millis(50)) else {
                        continue;
                    };
                    let t = now_ns();
                    *seen.by_type.entry(cmd.body.type_name()).or_default() += 1;
                    if let Some(rid) = cmd.meta.request_id {
                        seen.by_request.insert(rid, t);
                    }
                }
                for cmd in rx.try_iter() {
                    *seen.by_type.entry(cmd.body.type_name()).or_default() += 1;
                }
                seen
            })
            .expect("spawn collector");
        GwCollector { stop, handle }
    }

    /// Stops and returns what arrived.
    pub fn finish(self) -> GwSeen {
        self.stop.store(true, Ordering::SeqCst);
        self.handle.join().unwrap_or_default()
    }
}
