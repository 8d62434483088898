//! `history_bench`: history reads served from the gateway's window, end to
//! end on loopback (a simulated Discord, the gateway and an edge in this
//! process), and the window's memory. A benchmark, not a test.
//!
//! ```text
//! cargo run --release -p relay-tests --bin history_bench -- [--rate 1000] [--sessions 100] [--secs 10] [--access roles|discord] [--workers 32] [--runs 1]
//! ```
//!
//! The edge's per-user read bucket (burst 20, 10 per 5 s: 2 reads/s per user
//! sustained) is lifted for the run: 1,000 reads/s over 100 sessions is 10/s
//! per session. Every read asks one of a few pages of `#general`, which the
//! gateway read from Discord once at the start.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use relay::config::AccessMode;
use relay_protocol::bucket::LimitConfig;
use relay_protocol::history::{Anchor, History, HistoryLimits, HistoryQuery};
use relay_protocol::payload::EventBody;
use relay_runtime::sim_discord::{demo_users, ids, SimConfig};
use relay_tests::history_rig::HistoryRig;
use relay_tests::loadgen::hist::Hist;
use serde_json::json;

fn main() {
    let mut rate = 1000u64;
    let mut sessions = 100usize;
    let mut secs = 10u64;
    let mut access = AccessMode::Roles;
    let mut workers = 32usize;
    let mut runs = 1usize;
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut args = argv.iter();
    while let Some(a) = args.next() {
        let mut value = || args.next().cloned().unwrap_or_default();
        match a.as_str() {
            "--rate" => rate = value().parse().expect("--rate N"),
            "--sessions" => sessions = value().parse().expect("--sessions N"),
            "--secs" => secs = value().parse().expect("--secs N"),
            "--workers" => workers = value().parse().expect("--workers N"),
            "--runs" => runs = value().parse().expect("--runs N"),
            "--access" => {
                access = match value().as_str() {
                    "discord" => AccessMode::Discord,
                    _ => AccessMode::Roles,
                }
            }
            other => {
                eprintln!("unknown argument {other}");
                std::process::exit(2);
            }
        }
    }
    reads(rate, sessions, secs, access, workers.max(1), runs.max(1));
    memory();
}

fn reads(rate: u64, sessions: usize, secs: u64, access: AccessMode, workers: usize, runs: usize) {
    let rig = HistoryRig::start_with(access, SimConfig::default());
    rig.edge
        .set_read_limits(LimitConfig {
            burst: 1_000_000,
            refill: 1_000_000,
            window: Duration::from_secs(1),
        })
        .expect("limits");
    let mut seeded = Vec::new();
    for i in 0..150u64 {
        seeded.push(
            rig.sim
                .seed_message(
                    ids::ADA,
                    ids::GENERAL,
                    &format!(
                        "message {i}: a line of chat of a usual length, about sixty characters"
                    ),
                    (150 - i) * 1000,
                )
                .expect("seeded"),
        );
    }
    // Members of the guild, so ACCESS=discord reads pass.
    let users: Vec<String> = demo_users().into_iter().map(|u| u.id).collect();
    let tokens: Vec<String> = (0..sessions)
        .map(|i| rig.token(&users[i % users.len()]))
        .collect();
    // Warm: the latest 100 and the page before them come from Discord once.
    let t = &tokens[0];
    assert_eq!(rig.read(Some(t), ids::GENERAL, "limit=100").status, 200);
    assert_eq!(
        rig.read(
            Some(t),
            ids::GENERAL,
            &format!("limit=50&before={}", seeded[50])
        )
        .status,
        200
    );
    let warm_reads = rig.discord_reads();
    let pages: Vec<String> = vec![
        "limit=50".into(),
        "limit=20".into(),
        format!("limit=50&before={}", seeded[100]),
        format!("limit=30&after={}", seeded[60]),
        format!("limit=25&around={}", seeded[90]),
    ];

    println!("## history reads ({access:?}, {sessions} sessions, {workers} client threads, target {rate}/s, {secs} s per run)\n");
    println!("| run | reads | reads/s | errors | p50 ms | p99 ms | max ms | reached Discord |");
    println!("|---|---|---|---|---|---|---|---|");
    let mut p99s = Vec::new();
    for run in 1..=runs {
        let before = rig.discord_reads();
        let (all, errors, elapsed) = read_for(&rig.base(), &tokens, &pages, rate, workers, secs);
        let reached = rig.discord_reads() - before;
        p99s.push(all.ms(0.99));
        println!(
            "| {run} | {} | {:.0} | {} | {:.2} | {:.2} | {:.2} | {} (+{} warm-up) |",
            all.count(),
            all.count() as f64 / elapsed,
            errors,
            all.ms(0.50),
            all.ms(0.99),
            all.max_ms(),
            reached,
            warm_reads
        );
    }
    p99s.sort_by(f64::total_cmp);
    if runs > 1 {
        println!(
            "\nmedian p99 of {runs} runs: {:.2} ms (a shared machine's noise moves single runs; the median is the figure to compare)",
            p99s[runs / 2]
        );
    }
}

/// Reads at `rate` from `workers` threads for `secs`: the latency histogram,
/// the failed reads and the seconds it took.
fn read_for(
    base: &str,
    tokens: &[String],
    pages: &[String],
    rate: u64,
    workers: usize,
    secs: u64,
) -> (Hist, u64, f64) {
    let per_worker = rate as f64 / workers as f64;
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let handles: Vec<_> = (0..workers)
        .map(|w| {
            let (stop, errors, tokens, pages, base) = (
                stop.clone(),
                errors.clone(),
                tokens.to_vec(),
                pages.to_vec(),
                base.to_string(),
            );
            std::thread::spawn(move || {
                let agent = relay_tests::harness::agent();
                let mut hist = Hist::new();
                let interval = Duration::from_secs_f64(1.0 / per_worker);
                let mut next = Instant::now() + interval.mul_f64(w as f64 / workers as f64);
                let mut n = w;
                while !stop.load(Ordering::Relaxed) {
                    let now = Instant::now();
                    if next > now {
                        std::thread::sleep(next - now);
                    }
                    next += interval;
                    let token = &tokens[n % tokens.len()];
                    let page = &pages[n % pages.len()];
                    n += workers;
                    let url = format!("{base}/api/channels/{}/messages?{page}", ids::GENERAL);
                    let t0 = Instant::now();
                    let ok = agent
                        .get(&url)
                        .header("Authorization", &format!("Bearer {token}"))
                        .call()
                        .map(|mut r| {
                            let status = r.status().as_u16();
                            let _ = r.body_mut().read_to_vec();
                            status == 200
                        })
                        .unwrap_or(false);
                    hist.record(t0.elapsed().as_nanos() as u64);
                    if !ok {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
                hist
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(secs));
    stop.store(true, Ordering::Relaxed);
    let mut all = Hist::new();
    for h in handles {
        all.merge(&h.join().expect("worker"));
    }
    (
        all,
        errors.load(Ordering::Relaxed),
        started.elapsed().as_secs_f64(),
    )
}

/// The window's memory for 1,000 messages: measured as the heap growth of
/// filling windows (RSS delta over 100 × 200 messages) and estimated from
/// the data structure.
fn memory() {
    let channels = 100u64;
    let per_channel = 200u64;
    let mut h = History::new(HistoryLimits {
        per_channel: per_channel as usize,
        channels: channels as usize,
    });
    let events: Vec<EventBody> = (0..channels * per_channel)
        .map(|i| {
            let channel = 1_000 + i % channels;
            serde_json::from_value(json!({"type": "messageCreate", "data": {
                "id": (820_000_000_000_000_000u64 + i).to_string(),
                "channelId": channel.to_string(), "guildId": ids::GUILD,
                "author": {"id": ids::ADA, "username": "Ada", "avatar": "a1b2c3d4e5f60718293a4b5c6d7e8f90", "bot": false},
                "content": format!("message {i}: a line of chat of a usual length, about sixty characters"),
                "timestamp": "2026-11-25T12:00:00.000Z"
            }}))
            .expect("event")
        })
        .collect();
    let before = rss_kib();
    for e in &events {
        h.apply(e);
    }
    let after = rss_kib();
    assert_eq!(h.messages() as u64, channels * per_channel);
    let per_1000 = (after.saturating_sub(before)) as f64 * 1000.0 / (channels * per_channel) as f64;
    // Keep the window alive until measured.
    let probe = HistoryQuery {
        channel: 1_000,
        limit: 1,
        anchor: Anchor::Latest,
    };
    let _ = h.lookup(&probe);
    println!("\n## window memory\n");
    println!(
        "{} messages in {} channels: RSS grew {} KiB, about {:.0} KiB per 1,000 messages (~{:.0} bytes each, ~60-character content)",
        channels * per_channel,
        channels,
        after.saturating_sub(before),
        per_1000,
        per_1000 * 1024.0 / 1000.0
    );
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}
