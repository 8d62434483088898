//! The scenarios (fanout, max-rate, commands, commands-max, sc005, idle-rss,
//! [`access`] (`ACCESS=roles` beside `ACCESS=discord`, and access recompute), and
//! `compare`: relay beside nginx + nchan) and the markdown tables they fill. Each scenario
//! starts its own test gateway and its own `relay edge` child (and `compare` its
//! own nginx), so every row's CPU and RSS belong to that row.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use relay_runtime::discord_gateway::wrap;

use super::commands::{self, CmdRun, CmdSpec, GwCollector, MakeCmd};
use super::edge_proc::{EdgeProc, Tokens, LINK_TOKEN};
use super::hist::Hist;
use super::nchan::{self, NchanProc, NchanSetup, Publisher};
use super::now_ns;
use super::plot::Series;
use super::subscribers::{probe_content, Connect, Pool, PoolReport, StreamRequest};
use super::sys::{self, ProcSample};
use crate::test_gateway::{message, ReplyMode, TestGateway};

pub mod access;
pub mod redis;

/// Threads that poll the SSE subscribers.
const SSE_THREADS: usize = 2;
/// How long subscribers may take to connect and get their snapshot.
const READY_TIMEOUT: Duration = Duration::from_secs(90);
/// How long in-flight events may take to arrive after the last send.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Run-wide settings.
pub struct Ctx {
    /// The `relay` binary.
    pub relay: PathBuf,
    /// Where edge logs go.
    pub log_dir: PathBuf,
    /// Shorter everything.
    pub quick: bool,
    /// `--duration-secs`.
    pub duration: Option<u64>,
    /// Session tokens.
    pub tokens: Tokens,
    /// Rows so far.
    pub report: Report,
}

impl Ctx {
    fn measure(&self, default: u64, quick: u64) -> Duration {
        Duration::from_secs(
            self.duration
                .unwrap_or(if self.quick { quick } else { default }),
        )
    }

    fn warmup(&self) -> Duration {
        if self.quick {
            Duration::from_secs(1)
        } else {
            Duration::from_secs(2)
        }
    }

    fn start(&self, mode: ReplyMode) -> io::Result<(TestGateway, EdgeProc)> {
        let gw = TestGateway::start(LINK_TOKEN);
        gw.set_mode(mode);
        let edge = EdgeProc::start(&self.relay, &gw.url(), &self.log_dir)?;
        Ok((gw, edge))
    }

    fn subscribers(&self, edge: &EdgeProc, n: usize) -> io::Result<Pool> {
        let tokens = (0..n)
            .map(|i| self.tokens.issue(&format!("{}", 500_000 + i), &[]))
            .collect();
        self.subscribers_with(edge, tokens)
    }

    fn subscribers_with(&self, edge: &EdgeProc, tokens: Vec<String>) -> io::Result<Pool> {
        let requests = tokens
            .iter()
            .map(|t| StreamRequest::relay(edge.addr, t))
            .collect();
        connect_pool(edge.addr, requests, "voice.snapshot")
    }
}

/// Connects `requests` one after the other, each waiting until it is ready.
fn connect_pool(
    addr: std::net::SocketAddr,
    requests: Vec<StreamRequest>,
    ready: &str,
) -> io::Result<Pool> {
    let n = requests.len();
    let start = Instant::now();
    let pool = Pool::start_requests(addr, requests, SSE_THREADS, Connect::Sequential);
    pool.wait_ready(READY_TIMEOUT).map_err(io::Error::other)?;
    let c = pool.connect_times();
    progress(&format!(
        "  {n} subscribers connected one after the other in {:.1?} (request → {ready} p50 {} p99 {} max {} ms)",
        start.elapsed(),
        ms(&c, 0.5),
        ms(&c, 0.99),
        fmt_ms(c.max_ms())
    ));
    Ok(pool)
}

/// A hub process whose CPU time and memory a scenario reads.
pub trait Hub {
    /// CPU time and RSS now (summed over its processes).
    fn sample(&self) -> ProcSample;
    /// PSS now, KiB (summed over its processes).
    fn pss_kib(&self) -> u64;
}

impl Hub for EdgeProc {
    fn sample(&self) -> ProcSample {
        EdgeProc::sample(self)
    }
    fn pss_kib(&self) -> u64 {
        sys::pss_kib(self.pid()).unwrap_or(0)
    }
}

impl Hub for NchanProc {
    fn sample(&self) -> ProcSample {
        NchanProc::sample(self)
    }
    fn pss_kib(&self) -> u64 {
        NchanProc::pss_kib(self)
    }
}

/// One row of the SSE table.
#[derive(Clone, Debug)]
pub struct SseRow {
    /// Scenario and configuration.
    pub name: String,
    /// Subscribers.
    pub subs: usize,
    /// Events sent per second (achieved).
    pub events_per_s: f64,
    /// Deliveries per second (achieved).
    pub deliveries_per_s: f64,
    /// Latency.
    pub lat: Hist,
    /// Probe events never received, over subscribers.
    pub missed: u64,
    /// Duplicated or reordered deliveries.
    pub disorder: u64,
    /// Edge CPU, % of one core.
    pub cpu_pct: f64,
    /// Edge CPU µs per delivery.
    pub us_per_delivery: f64,
    /// Edge RSS, MiB.
    pub rss_mib: f64,
    /// Target text.
    pub target: String,
}

impl SseRow {
    /// The row for `phase` of a fan-out run: `seq` probes published so far to
    /// `subs` subscribers, `sent` of them in `wall` during the phase, and the
    /// hub's CPU (% of a core, seconds) and RSS over that window. The target
    /// is left for the caller.
    fn from_phase(
        name: String,
        subs: usize,
        seq: u64,
        (sent, wall): (u64, Duration),
        rep: &PoolReport,
        phase: usize,
        (cpu_pct, cpu_secs, rss_mib): (f64, f64, f64),
    ) -> SseRow {
        let lat = rep.phase(phase).lat;
        let deliveries = lat.count();
        SseRow {
            name,
            subs,
            events_per_s: sent as f64 / wall.as_secs_f64(),
            deliveries_per_s: deliveries as f64 / wall.as_secs_f64(),
            lat,
            missed: (subs as u64 * seq).saturating_sub(rep.distinct),
            disorder: rep.dups + rep.reorders,
            cpu_pct,
            us_per_delivery: cpu_secs * 1e6 / deliveries.max(1) as f64,
            rss_mib,
            target: String::new(),
        }
    }
}

/// One row of the command table.
#[derive(Clone, Debug)]
pub struct CmdRow {
    /// Scenario.
    pub name: String,
    /// Commands per second sent (achieved).
    pub rate: f64,
    /// Commands sent.
    pub sent: u64,
    /// Non-2xx + transport errors.
    pub errors: u64,
    /// HTTP round trip.
    pub rtt: Hist,
    /// HTTP send → gateway receipt.
    pub to_gw: Hist,
    /// Edge CPU, % of one core.
    pub cpu_pct: f64,
    /// Target text.
    pub target: String,
}

/// Every row, printed as markdown at the end.
#[derive(Default)]
pub struct Report {
    /// SSE rows.
    pub sse: Vec<SseRow>,
    /// Command rows.
    pub cmd: Vec<CmdRow>,
    /// Idle RSS lines.
    pub idle: Vec<String>,
    /// Notes (max-rate steps, anomalies).
    pub notes: Vec<String>,
    /// `compare`: one row per subscribers × rate.
    pub compare: Vec<CompareRow>,
    /// `compare`: idle memory of relay and of nchan.
    pub compare_idle: Option<(IdleMem, IdleMem)>,
    /// `access`: the fan-out rows under `ACCESS=roles` and `ACCESS=discord`.
    pub access: Vec<SseRow>,
    /// `access`: role changes timed on connected streams.
    pub recompute: Vec<access::RecomputeRow>,
}

/// One `compare` row: the same load on relay and on nchan (or why a hub's half failed).
#[derive(Clone, Debug)]
pub struct CompareRow {
    /// `subs × rate/s`.
    pub label: String,
    /// relay's half, and the CPU other processes used meanwhile (% of one core).
    pub relay: Result<(SseRow, f64), String>,
    /// nchan's half, and the CPU other processes used meanwhile.
    pub nchan: Result<(SseRow, f64), String>,
}

/// RSS and PSS with 0 and with `subs` idle subscribers.
#[derive(Clone, Copy, Debug, Default)]
pub struct IdleMem {
    /// Idle subscribers.
    pub subs: usize,
    /// RSS with none, KiB.
    pub rss0: u64,
    /// RSS with `subs`, KiB.
    pub rss1: u64,
    /// PSS with none, KiB.
    pub pss0: u64,
    /// PSS with `subs`, KiB.
    pub pss1: u64,
}

impl IdleMem {
    /// RSS growth per idle subscriber, KiB.
    pub fn kib_per_sub(&self) -> f64 {
        (self.rss1 as f64 - self.rss0 as f64) / self.subs.max(1) as f64
    }

    /// PSS growth per idle subscriber, KiB.
    pub fn pss_per_sub(&self) -> f64 {
        (self.pss1 as f64 - self.pss0 as f64) / self.subs.max(1) as f64
    }
}

fn progress(msg: &str) {
    eprintln!("{msg}");
}

fn ms(h: &Hist, q: f64) -> String {
    fmt_ms(h.ms(q))
}

fn fmt_ms(v: f64) -> String {
    if v < 10.0 {
        format!("{v:.2}")
    } else if v < 100.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.0}")
    }
}

impl Report {
    /// The SSE table, markdown.
    pub fn sse_table(&self) -> String {
        let mut s = String::from(
            "| scenario | subs | events/s | deliveries/s | p50 ms | p95 ms | p99 ms | max ms | missed | edge CPU % | edge µs CPU/delivery | edge RSS MiB | target |\n\
             |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n",
        );
        for r in &self.sse {
            let missed = if r.disorder > 0 {
                format!("{} ({} dup/reordered)", r.missed, r.disorder)
            } else {
                r.missed.to_string()
            };
            s.push_str(&format!(
                "| {} | {} | {:.0} | {:.0} | {} | {} | {} | {} | {} | {:.0} | {:.1} | {:.1} | {} |\n",
                r.name,
                r.subs,
                r.events_per_s,
                r.deliveries_per_s,
                ms(&r.lat, 0.5),
                ms(&r.lat, 0.95),
                ms(&r.lat, 0.99),
                fmt_ms(r.lat.max_ms()),
                missed,
                r.cpu_pct,
                r.us_per_delivery,
                r.rss_mib,
                r.target
            ));
        }
        s
    }

    /// The relay-beside-nchan table, markdown: both hubs per row and the
    /// ratios relay/nchan the issue sets goals for.
    pub fn compare_table(&self) -> String {
        let mut s = String::from(
            "| subscribers × events/s | hub | events/s | deliveries/s | p50 ms | p95 ms | p99 ms | max ms | missed | hub CPU % | other procs' CPU % | µs CPU/delivery | hub RSS MiB | KiB RSS/idle subscriber |\n\
             |---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        );
        let missed = |r: &SseRow| {
            if r.disorder > 0 {
                format!("{} ({} dup/reordered)", r.missed, r.disorder)
            } else {
                r.missed.to_string()
            }
        };
        for row in &self.compare {
            for (hub, r, first) in [("relay", &row.relay, true), ("nchan", &row.nchan, false)] {
                let label = if first { row.label.as_str() } else { "" };
                let (r, other) = match r {
                    Ok((r, other)) => (r, other),
                    Err(e) => {
                        s.push_str(&format!(
                            "| {label} | {hub} | failed: {} | | | | | | | | | | | |\n",
                            e.replace('|', "/")
                        ));
                        continue;
                    }
                };
                s.push_str(&format!(
                    "| {label} | {hub} | {:.0} | {:.0} | {} | {} | {} | {} | {} | {:.0} | {other:.0} | {:.1} | {:.1} | |\n",
                    r.events_per_s,
                    r.deliveries_per_s,
                    ms(&r.lat, 0.5),
                    ms(&r.lat, 0.95),
                    ms(&r.lat, 0.99),
                    fmt_ms(r.lat.max_ms()),
                    missed(r),
                    r.cpu_pct,
                    r.us_per_delivery,
                    r.rss_mib,
                ));
            }
            let (p99, us) = match (&row.relay, &row.nchan) {
                (Ok((a, _)), Ok((b, _))) => (
                    judged(ratio(a.lat.ms(0.99), b.lat.ms(0.99)), 1.0),
                    judged(ratio(a.us_per_delivery, b.us_per_delivery), 1.0),
                ),
                (Err(_), Ok(_)) => ("relay failed ❌".to_owned(), "relay failed ❌".to_owned()),
                _ => ("no ratio".to_owned(), "no ratio".to_owned()),
            };
            s.push_str(&format!(
                "| | **relay/nchan** | | | | | **{p99}** | | | | | **{us}** | | |\n"
            ));
        }
        if let Some((a, b)) = &self.compare_idle {
            for (hub, m, first) in [("relay", a, true), ("nchan", b, false)] {
                s.push_str(&format!(
                    "| {} | {hub} | | | | | | | | | | | {:.1} → {:.1} | {:.1} |\n",
                    if first {
                        format!("idle: 0 → {} subscribers", m.subs)
                    } else {
                        String::new()
                    },
                    m.rss0 as f64 / 1024.0,
                    m.rss1 as f64 / 1024.0,
                    m.kib_per_sub()
                ));
            }
            s.push_str(&format!(
                "| | **relay/nchan** | | | | | | | | | | | | **{}** |\n",
                judged(ratio(a.kib_per_sub(), b.kib_per_sub()), 5.0)
            ));
        }
        s
    }

    /// The command table, markdown.
    pub fn cmd_table(&self) -> String {
        let mut s = String::from(
            "| scenario | commands/s | sent | errors | HTTP p50 / p95 / p99 ms | HTTP → gateway p50 / p95 / p99 ms | edge CPU % | target |\n\
             |---|---:|---:|---:|---:|---:|---:|---|\n",
        );
        for r in &self.cmd {
            s.push_str(&format!(
                "| {} | {:.0} | {} | {} ({:.2} %) | {} / {} / {} | {} / {} / {} | {:.0} | {} |\n",
                r.name,
                r.rate,
                r.sent,
                r.errors,
                100.0 * r.errors as f64 / r.sent.max(1) as f64,
                ms(&r.rtt, 0.5),
                ms(&r.rtt, 0.95),
                ms(&r.rtt, 0.99),
                ms(&r.to_gw, 0.5),
                ms(&r.to_gw, 0.95),
                ms(&r.to_gw, 0.99),
                r.cpu_pct,
                r.target
            ));
        }
        s
    }
}

impl Report {
    /// The latency-vs-subscribers lines: relay p50 and p99 from `fanout` (and
    /// from `compare`'s relay rows at sizes fanout did not run), nchan p99 when
    /// `compare` ran. Empty when neither ran.
    pub fn latency_series(&self) -> Vec<Series> {
        let mut p50 = Vec::new();
        let mut p99 = Vec::new();
        for r in self.sse.iter().filter(|r| r.name.starts_with("fanout")) {
            p50.push((r.subs as f64, r.lat.ms(0.5)));
            p99.push((r.subs as f64, r.lat.ms(0.99)));
        }
        let mut nchan_p99 = Vec::new();
        for c in &self.compare {
            if let Ok((r, _)) = &c.relay {
                if !p99.iter().any(|p| p.0 == r.subs as f64) {
                    p50.push((r.subs as f64, r.lat.ms(0.5)));
                    p99.push((r.subs as f64, r.lat.ms(0.99)));
                }
            }
            if let Ok((r, _)) = &c.nchan {
                nchan_p99.push((r.subs as f64, r.lat.ms(0.99)));
            }
        }
        let mut out = Vec::new();
        if !p99.is_empty() {
            out.push(Series {
                label: "relay p50".into(),
                color: "#1f77b4",
                dashed: false,
                points: p50,
            });
            out.push(Series {
                label: "relay p99".into(),
                color: "#d62728",
                dashed: false,
                points: p99,
            });
        }
        if !nchan_p99.is_empty() {
            out.push(Series {
                label: "nginx + nchan p99".into(),
                color: "#555555",
                dashed: true,
                points: nchan_p99,
            });
        }
        out
    }
}

fn target(ok: bool, text: &str) -> String {
    format!("{text} {}", if ok { "✅" } else { "❌" })
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        a / b
    } else {
        f64::INFINITY
    }
}

/// `1.23× ✅ (goal ≤ 1×)`.
fn judged(r: f64, goal: f64) -> String {
    format!(
        "{r:.2}× {} (goal ≤ {goal}×)",
        if r <= goal { "✅" } else { "❌" }
    )
}

/// Sends probe events at `rate`/s for `dur` as `phase`, numbering from `*seq`.
/// Returns how many were sent and over how long.
fn publish(
    gw: &TestGateway,
    rate: f64,
    dur: Duration,
    phase: usize,
    seq: &mut u64,
) -> (u64, Duration) {
    publish_with(rate, dur, phase, seq, &mut |s, content| {
        gw.send_raw(gateway_frame(s, &content))
    })
}

/// The link frame relay's probe `s` travels in: a `messageCreate`.
fn gateway_frame(s: u64, content: &str) -> String {
    wrap(message(&(s + 1).to_string(), "100", content)).to_json()
}

/// Calls `send(seq, probe content)` at `rate`/s for `dur` as `phase`,
/// numbering from `*seq`; the content's send time is taken just before.
/// Returns how many were sent and over how long.
fn publish_with(
    rate: f64,
    dur: Duration,
    phase: usize,
    seq: &mut u64,
    send: &mut dyn FnMut(u64, String),
) -> (u64, Duration) {
    let start = Instant::now();
    let total = (rate * dur.as_secs_f64()).round() as u64;
    for i in 0..total {
        let due = start + Duration::from_secs_f64(i as f64 / rate);
        let now = Instant::now();
        if due > now {
            thread::sleep(due - now);
        }
        let s = *seq;
        *seq += 1;
        send(s, probe_content(phase, s, now_ns()));
    }
    (total, start.elapsed())
}

struct Window {
    edge: ProcSample,
    gen: Option<ProcSample>,
}

impl Window {
    fn open(edge: &dyn Hub) -> Window {
        Window {
            edge: edge.sample(),
            gen: sys::sample("self"),
        }
    }

    /// (edge CPU %, edge CPU seconds, loadgen CPU %, edge RSS MiB)
    fn close(&self, edge: &dyn Hub) -> (f64, f64, f64, f64) {
        let e = edge.sample();
        let g = sys::sample("self");
        let gen = match (&self.gen, &g) {
            (Some(a), Some(b)) => sys::cpu_percent(a, b),
            _ => 0.0,
        };
        (
            sys::cpu_percent(&self.edge, &e),
            e.cpu_secs - self.edge.cpu_secs,
            gen,
            e.rss_kib as f64 / 1024.0,
        )
    }
}

/// `fanout`: subscribers × rate, for three sizes.
pub fn fanout(ctx: &mut Ctx) -> io::Result<()> {
    let configs: [(usize, f64, Option<f64>); 3] = [
        (100, 200.0, Some(3.0)),
        (1000, 50.0, Some(20.0)),
        (5000, 10.0, None),
    ];
    let measure = ctx.measure(15, 4);
    for (i, (subs, rate, p99_target)) in configs.into_iter().enumerate() {
        progress(&format!(
            "fanout: {subs} subscribers × {rate} events/s, {measure:?} measured"
        ));
        let (gw, edge) = ctx.start(ReplyMode::Ack)?;
        let pool = ctx.subscribers(&edge, subs)?;
        if i == 0 {
            let nodelay = match sys::nodelay_on_port(edge.pid(), edge.addr.port(), 64) {
                Some((on, seen)) => format!(
                    "TCP_NODELAY on the edge's sockets at its port (listener + accepted, read from the edge with pidfd_getfd + getsockopt): {on}/{seen}"
                ),
                None => "TCP_NODELAY on the edge's sockets: could not read (pidfd_getfd refused)".into(),
            };
            progress(&format!("  {nodelay}"));
            ctx.report.notes.push(nodelay);
        }
        let mut seq = 0;
        publish(&gw, rate, ctx.warmup(), 0, &mut seq);
        let w = Window::open(&edge);
        let (sent, wall) = publish(&gw, rate, measure, 1, &mut seq);
        let (cpu, cpu_secs, gen_cpu, rss) = w.close(&edge);
        let drained = pool.wait_received(subs as u64 * seq, DRAIN_TIMEOUT);
        let rep = pool.report();
        let mut row = SseRow::from_phase(
            format!("fanout {subs}×{rate:.0}/s"),
            subs,
            seq,
            (sent, wall),
            &rep,
            1,
            (cpu, cpu_secs, rss),
        );
        let ok = row.missed == 0 && p99_target.is_none_or(|t| row.lat.ms(0.99) <= t);
        row.target = match p99_target {
            Some(t) => target(ok, &format!("p99 ≤ {t} ms, 0 missed")),
            None => target(ok, "0 missed"),
        };
        progress(&format!(
            "  p50 {} p99 {} ms, {} missed, {} streams closed, drained: {drained}, loadgen CPU {gen_cpu:.0} %",
            ms(&row.lat, 0.5),
            ms(&row.lat, 0.99),
            row.missed,
            rep.closed
        ));
        ctx.report.sse.push(row);
        drop(pool);
        drop(edge);
        drop(gw);
    }
    Ok(())
}

/// `max-rate`: 1,000 subscribers, event rate ×1.5 per step until p99 ≥ 100 ms,
/// a miss, or the sender cannot keep the rate.
pub fn max_rate(ctx: &mut Ctx) -> io::Result<()> {
    let subs = 1000;
    let step = Duration::from_secs(if ctx.quick { 2 } else { 4 });
    progress(&format!(
        "max-rate: {subs} subscribers, ×1.5 per {step:?} step"
    ));
    let (gw, edge) = ctx.start(ReplyMode::Ack)?;
    let pool = ctx.subscribers(&edge, subs)?;
    let mut seq = 0;
    let mut rate = 40.0;
    publish(&gw, rate, ctx.warmup(), 0, &mut seq);
    let mut best: Option<SseRow> = None;
    let mut steps = Vec::new();
    for phase in 1..=12 {
        let w = Window::open(&edge);
        let (sent, wall) = publish(&gw, rate, step, phase, &mut seq);
        let (cpu, cpu_secs, gen_cpu, rss) = w.close(&edge);
        pool.wait_received(subs as u64 * seq, DRAIN_TIMEOUT);
        let rep = pool.report();
        let row = SseRow::from_phase(
            format!("max-rate (last step with p99 < 100 ms, 0 missed: {rate:.0} events/s)"),
            subs,
            seq,
            (sent, wall),
            &rep,
            phase,
            (cpu, cpu_secs, rss),
        );
        let (lat, missed) = (&row.lat, row.missed);
        let pass = lat.ms(0.99) < 100.0
            && missed == 0
            && rep.closed == 0
            && row.events_per_s >= 0.9 * rate;
        let line = format!(
            "{rate:.0} events/s → {:.0} deliveries/s: p50 {} p99 {} max {} ms, {missed} missed, {} streams closed, edge CPU {cpu:.0} %, loadgen CPU {gen_cpu:.0} % — {}",
            row.deliveries_per_s,
            ms(lat, 0.5),
            ms(lat, 0.99),
            fmt_ms(lat.max_ms()),
            rep.closed,
            if pass { "pass" } else { "stop" }
        );
        progress(&format!("  step {phase}: {line}"));
        steps.push(format!("step {phase}: {line}"));
        if !pass {
            break;
        }
        best = Some(SseRow {
            target: "highest deliveries/s with p99 < 100 ms".into(),
            ..row
        });
        rate *= 1.5;
    }
    match best {
        Some(row) => ctx.report.sse.push(row),
        None => ctx
            .report
            .notes
            .push("max-rate: even the first step failed".into()),
    }
    ctx.report.notes.push(format!(
        "max-rate steps (1,000 subscribers, the clients on the same machine):\n  - {}",
        steps.join("\n  - ")
    ));
    drop(pool);
    drop(edge);
    drop(gw);
    Ok(())
}

/// Session tokens for the command senders.
fn cmd_tokens(ctx: &Ctx) -> Arc<Vec<String>> {
    Arc::new(
        (0..1000)
            .map(|i| {
                ctx.tokens
                    .issue(&format!("{}", 600_000 + i), &["chat:write"])
            })
            .collect(),
    )
}

/// `sendMessage` to one of 1,000 channels, each with its own sender's token.
fn send_message() -> MakeCmd {
    Arc::new(|seq, sent_ns| CmdSpec {
        path: "/api/send-message",
        body: format!(
            r#"{{"channelId":"{}","content":"{}"}}"#,
            1000 + seq % 1000,
            probe_content(1, seq, sent_ns)
        ),
        token: (seq % 1000) as usize,
    })
}

/// Keep-alive worker connections for `rate` commands/s: one per 200/s, 8 to 64.
fn cmd_workers(rate: f64) -> usize {
    ((rate / 200.0).ceil() as usize).clamp(8, 64)
}

/// One measured command step.
struct CmdStep {
    run: CmdRun,
    to_gw: Hist,
    unmatched: u64,
    /// Achieved commands/s: sent over first scheduled send → last response.
    achieved: f64,
    cpu: f64,
    gen_cpu: f64,
}

impl CmdStep {
    fn errors(&self) -> u64 {
        self.run.errors() + self.unmatched
    }
}

/// A `warmup` (unmeasured) and then `dur` of `rate` commands/s from `workers`
/// keep-alive connections, each command stamped as the gateway receives it.
#[allow(clippy::too_many_arguments)]
fn cmd_step(
    gw: &TestGateway,
    edge: &EdgeProc,
    tokens: &Arc<Vec<String>>,
    make: &MakeCmd,
    rate: f64,
    warmup: Duration,
    dur: Duration,
    workers: usize,
) -> CmdStep {
    // Warm-up: connections open, first-use costs paid.
    commands::run(
        edge.addr,
        tokens.clone(),
        rate,
        warmup,
        workers,
        make.clone(),
    );
    let collector = GwCollector::start(gw.commands().clone());
    let w = Window::open(edge);
    let run = commands::run(edge.addr, tokens.clone(), rate, dur, workers, make.clone());
    let (cpu, _, gen_cpu, _) = w.close(edge);
    thread::sleep(Duration::from_millis(200));
    let seen = collector.finish();
    let (to_gw, unmatched) = seen.latency(&run);
    let achieved = run.sent as f64 / run.wall.as_secs_f64().max(1e-9);
    progress(&format!(
        "  {rate:.0}/s on {workers} connections: sent {} ({achieved:.0}/s achieved), errors {}, HTTP p99 {} ms, →gateway p50 {} p95 {} p99 {} ms, {unmatched} accepted but unseen, start lateness p99 {} ms, edge CPU {cpu:.0} %, loadgen CPU {gen_cpu:.0} %{}",
        run.sent,
        run.errors(),
        ms(&run.rtt, 0.99),
        ms(&to_gw, 0.5),
        ms(&to_gw, 0.95),
        ms(&to_gw, 0.99),
        ms(&run.late, 0.99),
        run.first_error.as_ref().map(|e| format!(", first error: {e}")).unwrap_or_default()
    ));
    CmdStep {
        run,
        to_gw,
        unmatched,
        achieved,
        cpu,
        gen_cpu,
    }
}

/// `commands`: 1,000 and 10,000 sendMessage/s over keep-alive connections;
/// HTTP round trip and HTTP → gateway.
pub fn commands(ctx: &mut Ctx) -> io::Result<()> {
    let dur = ctx.measure(10, 3);
    let (gw, edge) = ctx.start(ReplyMode::Ack)?;
    let tokens = cmd_tokens(ctx);
    let make = send_message();
    for rate in [1000.0, 10_000.0] {
        let workers = cmd_workers(rate);
        progress(&format!(
            "commands: {rate} sendMessage/s for {dur:?} on {workers} keep-alive connections"
        ));
        let step = cmd_step(&gw, &edge, &tokens, &make, rate, ctx.warmup(), dur, workers);
        let p95 = step.to_gw.ms(0.95);
        let held = step.achieved >= 0.95 * rate;
        let mut goal = target(p95 <= 100.0, "SC-002: p95 → gateway ≤ 100 ms");
        if !held {
            goal.push_str(&format!(
                " (offered {rate:.0}/s, achieved only {:.0}/s; send lateness p99 {} ms)",
                step.achieved,
                ms(&step.run.late, 0.99)
            ));
        }
        ctx.report.cmd.push(CmdRow {
            name: format!("commands (sendMessage, Ack, {workers} connections)"),
            rate: step.achieved,
            sent: step.run.sent,
            errors: step.errors(),
            cpu_pct: step.cpu,
            rtt: step.run.rtt,
            to_gw: step.to_gw,
            target: goal,
        });
    }
    Ok(())
}

/// `commands-max`: sendMessage rate from 1,000/s ×1.5 per step until HTTP →
/// gateway p99 ≥ 50 ms, an error, or the senders cannot hold the rate.
pub fn commands_max(ctx: &mut Ctx) -> io::Result<()> {
    let step_dur = Duration::from_secs(if ctx.quick { 2 } else { 4 });
    let limit_ms = 50.0;
    progress(&format!(
        "commands-max: sendMessage from 1,000/s, ×1.5 per {step_dur:?} step"
    ));
    let (gw, edge) = ctx.start(ReplyMode::Ack)?;
    let tokens = cmd_tokens(ctx);
    let make = send_message();
    let mut rate = 1000.0;
    let mut best: Option<CmdRow> = None;
    let mut steps = Vec::new();
    for n in 1..=10 {
        let workers = cmd_workers(rate);
        let s = cmd_step(
            &gw,
            &edge,
            &tokens,
            &make,
            rate,
            Duration::from_secs(1),
            step_dur,
            workers,
        );
        let p99 = s.to_gw.ms(0.99);
        let pass = p99 < limit_ms && s.errors() == 0 && s.achieved >= 0.95 * rate;
        steps.push(format!(
            "step {n}: {rate:.0}/s offered on {workers} connections → {:.0}/s achieved, →gateway p50 {} p99 {} max {} ms, HTTP p99 {} ms, {} errors, send lateness p99 {} ms, edge CPU {:.0} %, loadgen CPU {:.0} % — {}",
            s.achieved,
            ms(&s.to_gw, 0.5),
            ms(&s.to_gw, 0.99),
            fmt_ms(s.to_gw.max_ms()),
            ms(&s.run.rtt, 0.99),
            s.errors(),
            ms(&s.run.late, 0.99),
            s.cpu,
            s.gen_cpu,
            if pass { "pass" } else { "stop" }
        ));
        if !pass {
            break;
        }
        best = Some(CmdRow {
            name: format!(
                "commands-max (last step with →gateway p99 < {limit_ms} ms, 0 errors: {rate:.0}/s offered, {workers} connections)"
            ),
            rate: s.achieved,
            sent: s.run.sent,
            errors: s.errors(),
            cpu_pct: s.cpu,
            rtt: s.run.rtt,
            to_gw: s.to_gw,
            target: format!("highest rate with →gateway p99 < {limit_ms} ms, 0 errors"),
        });
        rate *= 1.5;
    }
    match best {
        Some(row) => ctx.report.cmd.push(row),
        None => ctx
            .report
            .notes
            .push("commands-max: even the first step (1,000/s) failed".into()),
    }
    ctx.report.notes.push(format!(
        "commands-max steps (sendMessage, gateway acks; senders, gateway and edge share the machine):\n  - {}",
        steps.join("\n  - ")
    ));
    Ok(())
}

/// `sc005`: 100 clients, each with an SSE stream, 10 mixed commands/s each;
/// the gateway acks and echoes each sendMessage to everyone.
pub fn sc005(ctx: &mut Ctx) -> io::Result<()> {
    let dur = ctx.measure(60, 10);
    let clients = 100usize;
    let rate = 10.0 * clients as f64;
    progress(&format!(
        "sc005: {clients} clients × 10 mixed commands/s for {dur:?}, echo on"
    ));
    let (gw, edge) = ctx.start(ReplyMode::AckAndEcho)?;
    gw.set_echo_content(Arc::new(|c: &str| format!("{c} g{}", now_ns())));
    let tokens: Vec<String> = (0..clients)
        .map(|i| {
            ctx.tokens.issue(
                &format!("{}", 700_000 + i),
                &["chat:write", "voice:moderate"],
            )
        })
        .collect();
    let pool = ctx.subscribers_with(&edge, tokens.clone())?;
    let tokens = Arc::new(tokens);
    let make: MakeCmd = Arc::new(move |seq, sent_ns| {
        let c = (seq % 100) as usize;
        let channel = 3000 + c;
        let user = 800_000 + c;
        let (path, body) = match seq % 10 {
            0..=3 => (
                "/api/send-message",
                format!(
                    r#"{{"channelId":"{channel}","content":"{}"}}"#,
                    probe_content(1, seq, sent_ns)
                ),
            ),
            4 | 5 => (
                "/api/add-reaction",
                format!(
                    r#"{{"channelId":"{channel}","messageId":"{}","emoji":"👍"}}"#,
                    seq + 1
                ),
            ),
            6 | 7 => (
                "/api/typing-start",
                format!(r#"{{"channelId":"{channel}"}}"#),
            ),
            8 => (
                "/api/voice/move-member",
                format!(
                    r#"{{"guildId":"42","userId":"{user}","channelId":"{}"}}"#,
                    4000 + seq % 2
                ),
            ),
            _ => (
                "/api/voice/mute-member",
                format!(
                    r#"{{"guildId":"42","userId":"{user}","mute":{}}}"#,
                    seq % 20 == 9
                ),
            ),
        };
        CmdSpec {
            path,
            body,
            token: c,
        }
    });
    let collector = GwCollector::start(gw.commands().clone());
    let w = Window::open(&edge);
    let run = commands::run(edge.addr, tokens, rate, dur, 16, make);
    let (cpu, cpu_secs, gen_cpu, rss) = w.close(&edge);
    thread::sleep(Duration::from_millis(200));
    let seen = collector.finish();
    let echoed = seen.by_type.get("sendMessage").copied().unwrap_or(0);
    pool.wait_received(clients as u64 * echoed, DRAIN_TIMEOUT);
    let rep = pool.report();
    let ph = rep.phase(1);
    let (to_gw, unmatched) = seen.latency(&run);
    let errors = run.errors();
    let err_pct = 100.0 * errors as f64 / run.sent.max(1) as f64;
    let missed = (clients as u64 * echoed).saturating_sub(rep.distinct);
    let wall = dur.as_secs_f64();
    let deliveries = ph.lat_echo.count();
    let sse_p95 = ph.lat_echo.ms(0.95);
    let e2e_p95 = ph.lat.ms(0.95);
    progress(&format!(
        "  sent {}, errors {errors} ({err_pct:.2} %), statuses {:?}, by type {:?}, {unmatched} accepted but unseen, echo→SSE p95 {} ms, command→SSE p95 {} ms, {missed} missed, start lateness p99 {} ms, loadgen CPU {gen_cpu:.0} %{}",
        run.sent,
        run.statuses,
        seen.by_type,
        fmt_ms(sse_p95),
        fmt_ms(e2e_p95),
        ms(&run.late, 0.99),
        run.first_error.as_ref().map(|e| format!(", first error: {e}")).unwrap_or_default()
    ));
    let common = |name: &str, lat: Hist, target_text: String| SseRow {
        name: name.into(),
        subs: clients,
        events_per_s: echoed as f64 / wall,
        deliveries_per_s: deliveries as f64 / wall,
        lat,
        missed,
        disorder: rep.dups,
        cpu_pct: cpu,
        us_per_delivery: cpu_secs * 1e6 / (deliveries + run.sent).max(1) as f64,
        rss_mib: rss,
        target: target_text,
    };
    ctx.report.sse.push(common(
        "sc005 echoes: gateway echo → SSE",
        ph.lat_echo.clone(),
        target(sse_p95 <= 800.0 && missed == 0, "SC-005: p95 ≤ 800 ms"),
    ));
    ctx.report.sse.push(common(
        "sc005 echoes: HTTP command → gateway → SSE",
        ph.lat.clone(),
        target(e2e_p95 <= 800.0, "(end to end) p95 ≤ 800 ms"),
    ));
    ctx.report.cmd.push(CmdRow {
        name: "sc005 (100 clients × 10 mixed/s, AckAndEcho, 100 SSE streams)".into(),
        rate: run.sent as f64 / wall,
        sent: run.sent,
        errors,
        rtt: run.rtt,
        to_gw,
        cpu_pct: cpu,
        target: target(err_pct <= 1.0, "SC-005: ≤ 1 % errors"),
    });
    ctx.report.notes.push(
        "sc005: µs CPU/delivery there counts the edge's whole CPU (commands included) per (SSE delivery + command).".into(),
    );
    Ok(())
}

/// `idle-rss`: the edge's RSS with 0 and with 1,000 idle subscribers. Then two
/// connection checks: whether an edge that has accepted nothing for a while
/// still accepts, and how a burst of simultaneous stream requests is served.
pub fn idle_rss(ctx: &mut Ctx) -> io::Result<()> {
    progress("idle-rss: 0 then 1000 idle subscribers");
    let (gw, edge) = ctx.start(ReplyMode::Ack)?;
    thread::sleep(Duration::from_secs(1));
    let r0 = edge.sample();
    let n = 1000;
    let pool = ctx.subscribers(&edge, n)?;
    let connected = Instant::now();
    thread::sleep(Duration::from_secs(1));
    let r1 = edge.sample();
    // tiny_http keeps a reader task (a thread) per connection until the socket's
    // 10 s read timeout, and its idle pool threads 5 s more: sample again after.
    let settle = Duration::from_secs(if ctx.quick { 2 } else { 16 });
    thread::sleep(settle.saturating_sub(connected.elapsed()));
    let r2 = edge.sample();
    let per = (r2.rss_kib as f64 - r0.rss_kib as f64) / n as f64;
    let mib = |k: u64| k as f64 / 1024.0;
    let mut table = format!(
        "| 0 | {:.1} | {} |\n| {n}, 1 s after the last connect | {:.1} | {} |\n",
        mib(r0.rss_kib),
        r0.threads,
        mib(r1.rss_kib),
        r1.threads
    );
    table.push_str(&format!(
        "| {n}, {settle:?} after the last connect | {:.1} | {} |\n",
        mib(r2.rss_kib),
        r2.threads
    ));
    table.push_str(&format!(
        "\nRSS per idle subscriber: **{per:.1} KiB** (the epoll writer pool holds each stream as a socket and its buffers, no thread)"
    ));
    progress(&format!(
        "  RSS {} → {} → {} KiB ({} → {} → {} threads): {per:.1} KiB per subscriber",
        r0.rss_kib, r1.rss_kib, r2.rss_kib, r0.threads, r1.threads, r2.threads
    ));
    ctx.report.idle.push(table);

    // Does the edge still accept after a quiet spell? (The listener's 10 s
    // SO_RCVTIMEO is also accept()'s timeout.)
    if !ctx.quick {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(3)))
            .build()
            .into();
        let health = match agent.get(&format!("http://{}/healthz", edge.addr)).call() {
            Ok(r) => format!("answered {}", r.status().as_u16()),
            Err(e) => format!("failed: {e}"),
        };
        let log = std::fs::read_to_string(&edge.log).unwrap_or_default();
        let accept_err = log
            .lines()
            .find(|l| l.contains("accepting"))
            .map(|l| format!("; the edge logged `{}`", l.trim()))
            .unwrap_or_default();
        let line = format!(
            "accept after a quiet spell: GET /healthz {:.0?} after the edge's last new connection {health}{accept_err}",
            connected.elapsed()
        );
        progress(&format!("  {line}"));
        ctx.report.notes.push(line);
    }
    drop(pool);
    drop(edge);
    drop(gw);

    // Browsers reconnecting together after an edge restart arrive as a burst.
    let (_gw, edge) = ctx.start(ReplyMode::Ack)?;
    let burst = 50;
    let wait = Duration::from_secs(if ctx.quick { 3 } else { 12 });
    let tokens = (0..burst)
        .map(|i| ctx.tokens.issue(&format!("{}", 900_000 + i), &[]))
        .collect();
    let pool = Pool::start(edge.addr, tokens, 1, Connect::Burst);
    let _ = pool.wait_ready(wait);
    let c = pool.connect_times();
    let line = format!(
        "connect burst: {burst} `/api/stream` requests sent at once to a freshly started edge: {} got their voice.snapshot within {wait:?} (request → snapshot p50 {} ms, p95 {} ms, max {} ms){}",
        pool.ready(),
        ms(&c, 0.5),
        ms(&c, 0.95),
        fmt_ms(c.max_ms()),
        if pool.ready() < burst { " — the rest were still waiting" } else { "" }
    );
    progress(&format!("  {line}"));
    ctx.report.notes.push(line);
    Ok(())
}

/// The rows `compare` runs: subscribers × events/s.
pub const COMPARE_ROWS: [(usize, f64); 4] =
    [(100, 200.0), (1000, 50.0), (5000, 10.0), (10_000, 5.0)];

/// `compare` (`--against nchan`): each fan-out row against relay, then the same
/// row against nginx + nchan with the same subscriber client and the same probe
/// bodies; then idle memory of both with 0 and 1,000 subscribers.
pub fn compare(ctx: &mut Ctx, setup: &NchanSetup, nofile: u64) -> io::Result<()> {
    let measure = ctx.measure(10, 3);
    let mut sample = None;
    for (subs, rate) in COMPARE_ROWS {
        let label = format!("{subs} × {rate:.0}/s");
        progress(&format!("compare {label}: relay, {measure:?} measured"));
        let relay = compare_relay(ctx, subs, rate, measure).map(|(row, s)| {
            sample = s.or(sample.take());
            row
        });
        if let Err(e) = &relay {
            progress(&format!("  relay failed: {e}"));
        }
        progress(&format!("compare {label}: nchan, {measure:?} measured"));
        let nchan = compare_nchan(ctx, setup, nofile, subs, rate, measure, sample.as_deref());
        if let Err(e) = &nchan {
            progress(&format!("  nchan failed: {e}"));
        }
        ctx.report.compare.push(CompareRow {
            label,
            relay,
            nchan,
        });
    }
    idle_compare(ctx, setup, nofile)
}

/// relay's half of a `compare` row, and the `data` of a probe as it wrote it.
fn compare_relay(
    ctx: &mut Ctx,
    subs: usize,
    rate: f64,
    measure: Duration,
) -> Result<((SseRow, f64), Option<String>), String> {
    let (gw, mut edge) = ctx.start(ReplyMode::Ack).map_err(|e| e.to_string())?;
    let pool = match ctx.subscribers(&edge, subs) {
        Ok(pool) => pool,
        Err(e) => return Err(edge_failure(&mut edge, &e.to_string())),
    };
    let mut send = |s: u64, content: String| gw.send_raw(gateway_frame(s, &content));
    let row = fanout_row(ctx, "relay", &edge, &pool, subs, rate, measure, &mut send);
    if !edge.alive() {
        return Err(edge_failure(&mut edge, "exited during the row"));
    }
    Ok((row, pool.sample_data()))
}

/// Why the edge failed: `what`, and if it is gone, the panic message from its log.
fn edge_failure(edge: &mut EdgeProc, what: &str) -> String {
    thread::sleep(Duration::from_millis(200));
    if edge.alive() {
        return what.to_owned();
    }
    let log = std::fs::read_to_string(&edge.log).unwrap_or_default();
    let panic = log
        .lines()
        .skip_while(|l| !l.contains("panicked at"))
        .nth(1)
        .map(str::trim)
        .unwrap_or("no panic message")
        .to_owned();
    let maps = std::fs::read_to_string("/proc/sys/vm/max_map_count")
        .map(|m| format!("; vm.max_map_count {}", m.trim()))
        .unwrap_or_default();
    format!("the edge aborted ({what}): `{panic}`{maps}")
}

/// nchan's half of a `compare` row.
#[allow(clippy::too_many_arguments)]
fn compare_nchan(
    ctx: &mut Ctx,
    setup: &NchanSetup,
    nofile: u64,
    subs: usize,
    rate: f64,
    measure: Duration,
    sample: Option<&str>,
) -> Result<(SseRow, f64), String> {
    let label = format!("{subs} × {rate:.0}/s");
    let hub = NchanProc::start(setup, &ctx.log_dir, nofile).map_err(|e| e.to_string())?;
    let requests = (0..subs)
        .map(|_| StreamRequest::plain(hub.addr, "/sub"))
        .collect();
    let pool = connect_pool(hub.addr, requests, "response head").map_err(|e| e.to_string())?;
    let mut publisher = Publisher::connect(hub.addr).map_err(|e| e.to_string())?;
    // relay's own event JSON for a probe, so both hubs carry the same bytes.
    let (head, tail) = nchan::body_template(sample);
    let mut send = |_s: u64, content: String| {
        publisher.publish(&format!("{head}{content}{tail}"));
    };
    let row = fanout_row(ctx, "nchan", &hub, &pool, subs, rate, measure, &mut send);
    if publisher.errors > 0 {
        ctx.report.notes.push(format!(
            "compare {label}: {} nchan publishes failed, first: {}",
            publisher.errors,
            publisher.first_error.clone().unwrap_or_default()
        ));
    }
    for line in hub.trouble() {
        ctx.report
            .notes
            .push(format!("compare {label}: nginx error.log: {line}"));
    }
    Ok(row)
}

/// One fan-out row on a hub whose subscribers are connected: warm-up, then
/// `measure` of probes through `send`, then the drain.
#[allow(clippy::too_many_arguments)]
fn fanout_row(
    ctx: &Ctx,
    hub_name: &str,
    hub: &dyn Hub,
    pool: &Pool,
    subs: usize,
    rate: f64,
    measure: Duration,
    send: &mut dyn FnMut(u64, String),
) -> (SseRow, f64) {
    let mut seq = 0;
    publish_with(rate, ctx.warmup(), 0, &mut seq, send);
    let busy0 = sys::machine_busy_secs();
    let w = Window::open(hub);
    let (sent, wall) = publish_with(rate, measure, 1, &mut seq, send);
    let (cpu, cpu_secs, gen_cpu, rss) = w.close(hub);
    // What the rest of the machine (other agents' builds and runs) took meanwhile.
    let other = match (busy0, sys::machine_busy_secs()) {
        (Some(a), Some(b)) => ((b - a) / wall.as_secs_f64() * 100.0 - cpu - gen_cpu).max(0.0),
        _ => 0.0,
    };
    let drained = pool.wait_received(subs as u64 * seq, DRAIN_TIMEOUT);
    let rep = pool.report();
    let row = SseRow::from_phase(
        format!("{hub_name} {subs}×{rate:.0}/s"),
        subs,
        seq,
        (sent, wall),
        &rep,
        1,
        (cpu, cpu_secs, rss),
    );
    progress(&format!(
        "  {hub_name}: p50 {} p99 {} max {} ms, {} missed, {} streams closed, drained: {drained}, hub CPU {cpu:.0} % ({:.1} µs/delivery), loadgen CPU {gen_cpu:.0} %, other processes {other:.0} %",
        ms(&row.lat, 0.5),
        ms(&row.lat, 0.99),
        fmt_ms(row.lat.max_ms()),
        row.missed,
        rep.closed,
        row.us_per_delivery
    ));
    (row, other)
}

/// RSS and PSS of `hub` with none and then `n` idle subscribers, read `settle`
/// after the last one connected.
fn idle_mem(
    hub: &dyn Hub,
    addr: std::net::SocketAddr,
    requests: Vec<StreamRequest>,
    ready: &str,
    settle: Duration,
) -> io::Result<IdleMem> {
    thread::sleep(Duration::from_secs(1));
    let (r0, p0) = (hub.sample(), hub.pss_kib());
    let n = requests.len();
    let pool = connect_pool(addr, requests, ready)?;
    thread::sleep(settle);
    let (r1, p1) = (hub.sample(), hub.pss_kib());
    drop(pool);
    Ok(IdleMem {
        subs: n,
        rss0: r0.rss_kib,
        rss1: r1.rss_kib,
        pss0: p0,
        pss1: p1,
    })
}

fn idle_compare(ctx: &mut Ctx, setup: &NchanSetup, nofile: u64) -> io::Result<()> {
    let n = 1000;
    // relay's tiny_http reader threads last 10 s after a request; read after them.
    let settle = Duration::from_secs(if ctx.quick { 2 } else { 11 });
    progress(&format!(
        "compare idle: 0 then {n} idle subscribers, read {settle:?} after the last connect"
    ));
    let relay = {
        let (_gw, edge) = ctx.start(ReplyMode::Ack)?;
        let requests = (0..n)
            .map(|i| {
                StreamRequest::relay(
                    edge.addr,
                    &ctx.tokens.issue(&format!("{}", 500_000 + i), &[]),
                )
            })
            .collect();
        idle_mem(&edge, edge.addr, requests, "voice.snapshot", settle)?
    };
    let nchan = {
        let hub = NchanProc::start(setup, &ctx.log_dir, nofile)?;
        let requests = (0..n)
            .map(|_| StreamRequest::plain(hub.addr, "/sub"))
            .collect();
        idle_mem(&hub, hub.addr, requests, "response head", settle)?
    };
    for (name, m) in [("relay", &relay), ("nchan", &nchan)] {
        progress(&format!(
            "  {name}: RSS {} → {} KiB ({:.1} KiB/subscriber), PSS {} → {} KiB ({:.1} KiB/subscriber)",
            m.rss0,
            m.rss1,
            m.kib_per_sub(),
            m.pss0,
            m.pss1,
            m.pss_per_sub()
        ));
    }
    ctx.report.notes.push(format!(
        "idle memory by PSS (shared pages split among processes, so nginx's shared-memory zone is not counted once per worker): relay {:.1} KiB/subscriber, nchan {:.1} KiB/subscriber; RSS read {settle:?} after the last of {n} connects",
        relay.pss_per_sub(),
        nchan.pss_per_sub()
    ));
    ctx.report.compare_idle = Some((relay, nchan));
    Ok(())
}
