//! `redis`: what sharing state through Redis costs (CONTRACT.md §10,
//! docs/redis.md).
//!
//! - Fan-out: 1,000 subscribers × 50 events/s on one edge without Redis,
//!   then the same 1,000 spread over three edges that share one real
//!   `redis-server` (`REDIS_URL`). The test gateway plays the active
//!   gateway's part: it stamps each event with its shared id
//!   (`meta.eventId`) and appends the frame to the shared log
//!   (`XADD relay:events:<epoch> MAXLEN 4096 <seq>-0 f <frame>`), after
//!   sending it, as the real gateway's appender does. Target: p99 within
//!   20 % of the single edge's.
//! - Redis operations per event and per command, counted by Redis itself
//!   (`INFO commandstats`, reset before each count).

use std::io;

use relay_protocol::replay::EventId;
use relay_protocol::shared_log;
use relay_runtime::clock;
use relay_runtime::discord_gateway::wrap;

use super::{ms, progress, publish, publish_with, target, Ctx, SseRow, Window, LINK_TOKEN};
use crate::harness;
use crate::loadgen::edge_proc::EdgeProc;
use crate::loadgen::subscribers::Pool;
use crate::redis_server::RedisServer;
use crate::test_gateway::{message, ReplyMode, TestGateway};

const SUBS: usize = 1000;
const RATE: f64 = 50.0;
const EDGES: usize = 3;
const COMMANDS: usize = 300;

/// Runs both fan-out rows and the operation counts.
pub fn run(ctx: &mut Ctx) -> io::Result<()> {
    let measure = ctx.measure(10, 4);

    // 1. One edge, no Redis.
    progress(&format!(
        "redis: {SUBS} subscribers × {RATE} events/s on one edge without Redis, {measure:?} measured"
    ));
    let (gw, edge) = ctx.start(ReplyMode::Ack)?;
    let pool = ctx.subscribers(&edge, SUBS)?;
    let mut seq = 0;
    publish(&gw, RATE, ctx.warmup(), 0, &mut seq);
    let w = Window::open(&edge);
    let sent = publish(&gw, RATE, measure, 1, &mut seq);
    let usage = w.close(&edge);
    pool.wait_received(SUBS as u64 * seq, super::DRAIN_TIMEOUT);
    let rep = pool.report();
    let mut single = SseRow::from_phase(
        format!("1 edge, no Redis: {SUBS}×{RATE:.0}/s"),
        SUBS,
        seq,
        sent,
        &rep,
        1,
        (usage.0, usage.1, usage.3),
    );
    single.target = target(single.missed == 0, "0 missed (baseline)");
    let base_p99 = single.lat.ms(0.99);
    progress(&format!(
        "  p50 {} p99 {} ms, {} missed",
        ms(&single.lat, 0.5),
        ms(&single.lat, 0.99),
        single.missed
    ));
    ctx.report.sse.push(single);
    drop(pool);
    drop(edge);
    drop(gw);

    // 2. Three edges sharing one Redis.
    progress(&format!(
        "redis: {SUBS} subscribers over {EDGES} edges sharing one redis-server"
    ));
    let redis = RedisServer::start();
    let url = redis.url();
    let gw = TestGateway::start(LINK_TOKEN);
    gw.set_mode(ReplyMode::Ack);
    let edges: Vec<EdgeProc> = (0..EDGES)
        .map(|_| EdgeProc::start_with(&ctx.relay, &gw.url(), &ctx.log_dir, &[("REDIS_URL", &url)]))
        .collect::<io::Result<_>>()?;
    let pools: Vec<Pool> = edges
        .iter()
        .enumerate()
        .map(|(e, edge)| {
            let tokens = (0..SUBS)
                .filter(|i| i % EDGES == e)
                .map(|i| ctx.tokens.issue(&format!("{}", 500_000 + i), &[]))
                .collect();
            ctx.subscribers_with(edge, tokens)
        })
        .collect::<io::Result<_>>()?;
    let mut redis_conn = redis.connection();
    let epoch = clock::unix_ms();
    let mut seq = 0;
    let mut send = |s: u64, content: String| {
        let id = EventId::new(epoch, s + 1);
        let frame = stamped_frame(id, s, &content);
        gw.send_raw(frame.clone());
        let _: redis::RedisResult<String> = redis::cmd("XADD")
            .arg(shared_log::stream_key(epoch))
            .arg("MAXLEN")
            .arg(4096)
            .arg(shared_log::stream_id(id.seq))
            .arg(shared_log::FRAME_FIELD)
            .arg(frame)
            .query(&mut redis_conn);
    };
    publish_with(RATE, ctx.warmup(), 0, &mut seq, &mut send);
    reset_stats(&redis);
    let windows: Vec<Window> = edges.iter().map(|e| Window::open(e)).collect();
    let sent = publish_with(RATE, measure, 1, &mut seq, &mut send);
    let usages: Vec<_> = windows
        .iter()
        .zip(&edges)
        .map(|(w, e)| w.close(e))
        .collect();
    let event_stats = command_stats(&redis);
    for pool in &pools {
        pool.wait_received((SUBS / EDGES + 1) as u64 * seq, super::DRAIN_TIMEOUT);
    }
    let mut reports: Vec<_> = pools.iter().map(Pool::report).collect();
    // One row over all three pools: latencies merged, misses summed.
    let mut merged = reports.remove(0);
    for r in &reports {
        merged
            .phases
            .iter_mut()
            .zip(&r.phases)
            .for_each(|(a, b)| a.lat.merge(&b.lat));
        merged.distinct += r.distinct;
        merged.dups += r.dups;
        merged.reorders += r.reorders;
        merged.closed += r.closed;
    }
    let cpu_pct: f64 = usages.iter().map(|u| u.0).sum();
    let cpu_secs: f64 = usages.iter().map(|u| u.1).sum();
    let rss: f64 = usages.iter().map(|u| u.3).sum();
    let mut shared = SseRow::from_phase(
        format!("{EDGES} edges + Redis: {SUBS}×{RATE:.0}/s"),
        SUBS,
        seq,
        sent,
        &merged,
        1,
        (cpu_pct, cpu_secs, rss),
    );
    let p99 = shared.lat.ms(0.99);
    let ok = shared.missed == 0 && p99 <= base_p99 * 1.2;
    shared.target = target(ok, "p99 within 20 % of one edge without Redis, 0 missed");
    progress(&format!(
        "  p50 {} p99 {} ms ({:+.0} % against one edge), {} missed",
        ms(&shared.lat, 0.5),
        ms(&shared.lat, 0.99),
        (p99 / base_p99 - 1.0) * 100.0,
        shared.missed
    ));
    ctx.report.sse.push(shared);

    let measured_events = sent.0;
    let per_event = format!(
        "Redis commands during {measured_events} events on {EDGES} edges ({:?}): {}",
        sent.1,
        describe(&event_stats)
    );
    progress(&format!("  {per_event}"));
    ctx.report.notes.push(per_event);

    // 3. Commands: each edge checks the shared buckets once per command.
    reset_stats(&redis);
    let token = ctx.tokens.issue("700000", &["chat:write"]);
    let mut ok_calls = 0;
    for i in 0..COMMANDS {
        let base = format!("http://{}", edges[i % EDGES].addr);
        let r = harness::post(
            &base,
            "/api/typing-start",
            Some(&token),
            "application/json",
            r#"{"channelId":"1"}"#,
        );
        if r.status == 200 {
            ok_calls += 1;
        }
    }
    let cmd_stats = command_stats(&redis);
    let per_command = format!(
        "Redis commands during {COMMANDS} commands over {EDGES} edges ({ok_calls} answered 200): {}",
        describe(&cmd_stats)
    );
    progress(&format!("  {per_command}"));
    ctx.report.notes.push(per_command);
    drop(pools);
    drop(edges);
    drop(gw);
    Ok(())
}

/// The probe frame with its shared id, as the active gateway sends it.
fn stamped_frame(id: EventId, s: u64, content: &str) -> String {
    let mut ev = wrap(message(&(s + 1).to_string(), "100", content));
    ev.meta.extra.get_mut().event_id = Some(id);
    ev.to_json()
}

fn reset_stats(redis: &RedisServer) {
    let _: redis::RedisResult<()> = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query(&mut redis.connection());
}

/// `(command, calls)` from `INFO commandstats`, most called first.
fn command_stats(redis: &RedisServer) -> Vec<(String, u64)> {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(&mut redis.connection())
        .unwrap_or_default();
    let mut stats: Vec<(String, u64)> = info
        .lines()
        .filter_map(|l| {
            let (name, rest) = l.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = rest
                .strip_prefix("calls=")?
                .split(',')
                .next()?
                .parse()
                .ok()?;
            Some((name.to_owned(), calls))
        })
        // The counting itself.
        .filter(|(name, _)| name != "info" && name != "config|resetstat")
        .collect();
    stats.sort_by_key(|s| std::cmp::Reverse(s.1));
    stats
}

fn describe(stats: &[(String, u64)]) -> String {
    stats
        .iter()
        .map(|(n, c)| format!("{n} {c}"))
        .collect::<Vec<_>>()
        .join(", ")
}
