//! `access`: the rows of issue "As fast as before" for `ACCESS=discord`
//! (CONTRACT.md §8).
//!
//! - Fan-out: the same 1,000 subscribers × 50 events/s against an edge with
//!   `ACCESS=roles` and then one with `ACCESS=discord`. The test gateway sends
//!   a guild in `ready` (20 text channels: 9 only role A may view, 9 only role
//!   B, 2 both) and answers `fetchMember`; subscriber `u` is a member with role
//!   A when `u` is even, B when odd. Probes go round the 20 channels, so each
//!   reaches about half of the subscribers under `discord` (55 % on average)
//!   and all of them under `roles`. Missed events are counted against what each
//!   subscriber should receive; CPU per *delivered* event.
//! - Recompute: up to 10,000 idle `discord` streams of distinct members, then a
//!   `guild.state` that changes the permissions of roles A and B (every
//!   member's view changes, so every stream is rescoped), timed from the send
//!   until every stream has parsed its new `access` event; and the edge's own
//!   recompute time from its debug log line.

use std::io;
use std::time::Duration;

use relay_protocol::frame::{GatewayEvent, TraceMeta};
use relay_protocol::payload::{EventBody, GuildState};
use relay_runtime::clock;
use serde_json::{json, Value};

use super::*;
use crate::test_gateway::MemberLookup;

/// The guild's id (and its `@everyone` role's).
pub const GUILD: u64 = 700_000_000_000_000_001;
const ROLE_A: u64 = GUILD + 1;
const ROLE_B: u64 = GUILD + 2;
const BOT_ROLE: u64 = GUILD + 3;
const BOT: u64 = GUILD + 8;
const OWNER: u64 = GUILD + 9;
/// Text channels in the guild.
pub const CHANNELS: u64 = 20;

const VIEW_CHANNEL: u64 = 1 << 10;
const SEND_MESSAGES: u64 = 1 << 11;
const READ_MESSAGE_HISTORY: u64 = 1 << 16;
const ADD_REACTIONS: u64 = 1 << 6;
const ADMINISTRATOR: u64 = 1 << 3;

/// Subscriber user ids of the fan-out rows and of the recompute row.
const FANOUT_USERS: u64 = 500_000;
const RECOMPUTE_USERS: u64 = 2_000_000;

/// Who may view channel `i` (0-based): 0–8 role A only, 9–17 role B only, 18–19 both.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Seen {
    A,
    B,
    Both,
}

fn seen(i: u64) -> Seen {
    match i {
        0..=8 => Seen::A,
        9..=17 => Seen::B,
        _ => Seen::Both,
    }
}

/// Channel `i`'s snowflake.
pub fn channel_id(i: u64) -> u64 {
    GUILD + 1_000 + i
}

fn role_of(user: u64) -> u64 {
    if user % 2 == 0 {
        ROLE_A
    } else {
        ROLE_B
    }
}

/// Whether `user` may view channel `i` under the guild's rules.
pub fn sees(user: u64, i: u64) -> bool {
    match seen(i) {
        Seen::A => role_of(user) == ROLE_A,
        Seen::B => role_of(user) == ROLE_B,
        Seen::Both => true,
    }
}

/// The guild as the gateway's link snapshot writes it (GUILD_CREATE shape with
/// `relay_bot_user_id`). `send`: whether roles A and B may send messages (the
/// recompute row flips it: a role change that alters every member's view).
pub fn guild_json(send: bool) -> Value {
    let member_perms =
        VIEW_CHANNEL | READ_MESSAGE_HISTORY | ADD_REACTIONS | if send { SEND_MESSAGES } else { 0 };
    let role = |id: u64, name: &str, position: i64, perms: u64| json!({"id": id.to_string(), "name": name, "position": position, "permissions": perms.to_string()});
    let hide_from_everyone =
        json!({"id": GUILD.to_string(), "type": 0, "allow": "0", "deny": VIEW_CHANNEL.to_string()});
    let allow = |role: u64| json!({"id": role.to_string(), "type": 0, "allow": VIEW_CHANNEL.to_string(), "deny": "0"});
    let channels: Vec<Value> = (0..CHANNELS)
        .map(|i| {
            let overwrites = match seen(i) {
                Seen::A => vec![hide_from_everyone.clone(), allow(ROLE_A)],
                Seen::B => vec![hide_from_everyone.clone(), allow(ROLE_B)],
                Seen::Both => Vec::new(),
            };
            json!({"id": channel_id(i).to_string(), "type": 0, "name": format!("channel-{i}"),
                   "parent_id": null, "position": i, "permission_overwrites": overwrites})
        })
        .collect();
    json!({
        "id": GUILD.to_string(),
        "owner_id": OWNER.to_string(),
        "roles": [
            role(GUILD, "@everyone", 0, 0),
            role(ROLE_A, "A", 1, member_perms),
            role(ROLE_B, "B", 2, member_perms),
            role(BOT_ROLE, "relay", 3, ADMINISTRATOR),
        ],
        "channels": channels,
        "threads": [],
        "members": [member_json(BOT, BOT_ROLE)],
        "relay_bot_user_id": BOT.to_string(),
    })
}

fn member_json(user: u64, role: u64) -> Value {
    json!({"user": {"id": user.to_string()}, "roles": [role.to_string()],
           "communication_disabled_until": null})
}

/// The test gateway's `fetchMember` answer: every snowflake is a member of
/// [`GUILD`], with role A if even, B if odd.
pub fn member_lookup() -> MemberLookup {
    Arc::new(|guild: &str, user: &str| {
        if guild.parse::<u64>().ok()? != GUILD {
            return None;
        }
        let user = user.parse::<u64>().ok()?;
        Some(member_json(user, role_of(user)))
    })
}

/// A test gateway playing the guild's side, and an edge with `env` on it.
fn start(ctx: &Ctx, env: &[(&str, &str)]) -> io::Result<(TestGateway, EdgeProc)> {
    let gw = TestGateway::start(LINK_TOKEN);
    gw.set_mode(ReplyMode::Ack);
    gw.set_ready_guilds(vec![guild_json(true)]);
    gw.set_member_lookup(member_lookup());
    let edge = EdgeProc::start_with(&ctx.relay, &gw.url(), &ctx.log_dir, env)?;
    Ok((gw, edge))
}

fn pool_of(ctx: &Ctx, edge: &EdgeProc, users: &[u64]) -> io::Result<Pool> {
    let tokens = users
        .iter()
        .map(|u| ctx.tokens.issue(&u.to_string(), &[]))
        .collect();
    ctx.subscribers_with(edge, tokens)
}

/// Probe `s`'s link frame: a `messageCreate` in channel `s % 20` of the guild.
fn probe_frame(s: u64, content: &str) -> String {
    let mut body = message(&(s + 1).to_string(), "0", content);
    if let EventBody::MessageCreate(m) = &mut body {
        m.channel_id = channel_id(s % CHANNELS).to_string();
        m.guild_id = Some(GUILD.to_string());
    }
    wrap(body).to_json()
}

/// The fan-out rows: 1,000 subscribers × 50 events/s under `ACCESS=roles`,
/// then under `ACCESS=discord`.
pub fn fanout(ctx: &mut Ctx) -> io::Result<()> {
    let (subs, rate) = (1000usize, 50.0);
    let measure = ctx.measure(10, 4);
    let users: Vec<u64> = (0..subs as u64).map(|i| FANOUT_USERS + i).collect();
    for mode in ["roles", "discord"] {
        progress(&format!(
            "access fan-out: ACCESS={mode}, {subs} subscribers (half role A, half role B) × {rate} events/s over {CHANNELS} channels, {measure:?} measured"
        ));
        let (gw, mut edge) = start(ctx, &[("ACCESS", mode)])?;
        let pool = pool_of(ctx, &edge, &users)?;
        // Deliveries each channel's probe should make.
        let per_channel: Vec<u64> = (0..CHANNELS)
            .map(|i| match mode {
                "roles" => subs as u64,
                _ => users.iter().filter(|u| sees(**u, i)).count() as u64,
            })
            .collect();
        let mut send = |s: u64, content: String| gw.send_raw(probe_frame(s, &content));
        let mut seq = 0;
        publish_with(rate, ctx.warmup(), 0, &mut seq, &mut send);
        let w = Window::open(&edge);
        let (sent, wall) = publish_with(rate, measure, 1, &mut seq, &mut send);
        let (cpu, cpu_secs, gen_cpu, rss) = w.close(&edge);
        let expected: u64 = (0..seq).map(|s| per_channel[(s % CHANNELS) as usize]).sum();
        let drained = pool.wait_received(expected, DRAIN_TIMEOUT);
        // Anything past the expected count would be a delivery out of scope.
        thread::sleep(Duration::from_millis(200));
        let rep = pool.report();
        let mut row = SseRow::from_phase(
            format!("ACCESS={mode} {subs}×{rate:.0}/s"),
            subs,
            seq,
            (sent, wall),
            &rep,
            1,
            (cpu, cpu_secs, rss),
        );
        row.missed = expected.saturating_sub(rep.distinct);
        let extra = rep.distinct.saturating_sub(expected);
        row.target = format!(
            "{:.0} % of subscribers per event{}",
            100.0 * expected as f64 / (subs as u64 * seq).max(1) as f64,
            if extra > 0 {
                format!(", {extra} out of scope ❌")
            } else {
                String::new()
            }
        );
        progress(&format!(
            "  p50 {} p99 {} max {} ms, {} missed of {expected} expected, {extra} extra, {} streams closed, drained: {drained}, edge CPU {cpu:.0} % ({:.1} µs/delivery), loadgen CPU {gen_cpu:.0} %",
            ms(&row.lat, 0.5),
            ms(&row.lat, 0.99),
            fmt_ms(row.lat.max_ms()),
            row.missed,
            rep.closed,
            row.us_per_delivery
        ));
        if !edge.alive() {
            return Err(io::Error::other(edge_failure(
                &mut edge,
                "exited during the row",
            )));
        }
        ctx.report.access.push(row);
        drop(pool);
        drop(edge);
        drop(gw);
    }
    Ok(())
}

/// One role change timed on connected streams.
#[derive(Clone, Debug)]
pub struct RecomputeRow {
    /// Streams open (each a distinct member).
    pub streams: usize,
    /// What changed.
    pub change: String,
    /// `access` events that arrived (of `streams`).
    pub arrived: usize,
    /// Send → each stream's parse of its new `access` event.
    pub lat: Hist,
    /// The edge's own log lines: streams rescoped, µs.
    pub edge: Vec<(u64, u64)>,
}

/// The edge's `access recomputed: N streams rescoped in X µs` lines in `log`
/// from line `from` on.
fn recompute_lines(log: &str, from: usize) -> Vec<(u64, u64)> {
    log.lines()
        .skip(from)
        .filter_map(|l| {
            let rest = &l[l.find("access recomputed: ")? + "access recomputed: ".len()..];
            let (n, rest) = rest.split_once(" streams rescoped in ")?;
            let (us, _) = rest.split_once(" µs")?;
            Some((n.parse().ok()?, us.parse().ok()?))
        })
        .collect()
}

/// The recompute row: up to 10,000 idle `ACCESS=discord` streams (fewer if
/// the open-files limit is lower), then two role changes.
pub fn recompute(ctx: &mut Ctx) -> io::Result<()> {
    let nofile = sys::raise_nofile();
    let wanted: u64 = if ctx.quick { 2_000 } else { 10_000 };
    // The loadgen and the edge each hold one fd per stream, plus their own.
    let n = wanted.min(nofile.saturating_sub(1_000)) as usize;
    if (n as u64) < wanted {
        ctx.report.notes.push(format!(
            "access recompute: {n} streams, not {wanted}: the open-files limit is {nofile}"
        ));
    }
    progress(&format!(
        "access recompute: {n} idle ACCESS=discord streams of distinct members, then role changes"
    ));
    let (gw, mut edge) = start(
        ctx,
        &[
            ("ACCESS", "discord"),
            ("RUST_LOG", "warn,relay::edge::access=debug"),
        ],
    )?;
    let users: Vec<u64> = (0..n as u64).map(|i| RECOMPUTE_USERS + i).collect();
    let pool = pool_of(ctx, &edge, &users)?;
    if !pool.wait_access(n as u64, Duration::from_secs(10)) {
        return Err(io::Error::other(format!(
            "only {} of {n} streams got their first access event",
            pool.access_events()
        )));
    }
    let settle = Duration::from_secs(if ctx.quick { 1 } else { 3 });
    for (send, change) in [
        (false, "roles A and B lose SEND_MESSAGES"),
        (true, "roles A and B get SEND_MESSAGES back"),
    ] {
        thread::sleep(settle);
        let base = pool.access_events();
        let log_from = std::fs::read_to_string(&edge.log)
            .unwrap_or_default()
            .lines()
            .count();
        let frame = GatewayEvent {
            body: EventBody::GuildState(GuildState {
                guild: guild_json(send),
            }),
            meta: TraceMeta {
                trace_id: clock::new_trace_id(),
                sent_at: clock::now_rfc3339(),
                request_id: None,
                actor: None,
                access: None,
                extra: Default::default(),
            },
        }
        .to_json();
        let t0 = now_ns();
        gw.send_raw(frame);
        let all = pool.wait_access(base + n as u64, Duration::from_secs(30));
        let times = pool.access_times(base as usize);
        let mut lat = Hist::new();
        for t in &times {
            lat.record(t.saturating_sub(t0));
        }
        thread::sleep(Duration::from_millis(300));
        let log = std::fs::read_to_string(&edge.log).unwrap_or_default();
        let edge_lines = recompute_lines(&log, log_from);
        progress(&format!(
            "  {change}: {} of {n} access events (all: {all}), send → access p50 {} p99 {} last {} ms; edge log: {edge_lines:?} (streams, µs)",
            times.len(),
            ms(&lat, 0.5),
            ms(&lat, 0.99),
            fmt_ms(lat.max_ms())
        ));
        ctx.report.recompute.push(RecomputeRow {
            streams: n,
            change: change.to_owned(),
            arrived: times.len(),
            lat,
            edge: edge_lines,
        });
    }
    if !edge.alive() {
        return Err(io::Error::other(edge_failure(
            &mut edge,
            "exited during the row",
        )));
    }
    Ok(())
}

/// `access` (both rows).
pub fn run(ctx: &mut Ctx) -> io::Result<()> {
    let fan = fanout(ctx);
    let re = recompute(ctx);
    fan.and(re)
}

impl Report {
    /// The `ACCESS=roles` vs `ACCESS=discord` fan-out table, markdown, with the
    /// ratios discord/roles the issue sets goals for.
    pub fn access_table(&self) -> String {
        let mut s = String::from(
            "| mode | subs | events/s | deliveries/s | p50 ms | p95 ms | p99 ms | max ms | missed | edge CPU % | edge µs CPU/delivery | edge RSS MiB | note |\n\
             |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n",
        );
        for r in &self.access {
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
        let find = |m: &str| self.access.iter().find(|r| r.name.starts_with(m));
        if let (Some(roles), Some(discord)) = (find("ACCESS=roles"), find("ACCESS=discord")) {
            s.push_str(&format!(
                "| **discord/roles** | | | | | | **{}** | | | | **{}** | | |\n",
                judged(ratio(discord.lat.ms(0.99), roles.lat.ms(0.99)), 1.1),
                judged(ratio(discord.us_per_delivery, roles.us_per_delivery), 1.1),
            ));
        }
        s
    }

    /// The recompute table, markdown.
    pub fn recompute_table(&self) -> String {
        let mut s = String::from(
            "| streams | change | new access events | edge recompute (its log: streams rescoped in ms) | send → access p50 ms | p99 ms | all streams ms | target < 50 ms |\n\
             |---:|---|---:|---|---:|---:|---:|---|\n",
        );
        for r in &self.recompute {
            let edge = if r.edge.is_empty() {
                "no log line".to_owned()
            } else {
                r.edge
                    .iter()
                    .map(|(n, us)| format!("{n} in {:.1}", *us as f64 / 1000.0))
                    .collect::<Vec<_>>()
                    .join(" + ")
            };
            let edge_ms: f64 = r.edge.iter().map(|(_, us)| *us as f64 / 1000.0).sum();
            let all = r.arrived >= r.streams;
            s.push_str(&format!(
                "| {} | {} | {} | {edge} | {} | {} | {} | edge {} ; end to end {} |\n",
                r.streams,
                r.change,
                r.arrived,
                ms(&r.lat, 0.5),
                ms(&r.lat, 0.99),
                if all {
                    fmt_ms(r.lat.max_ms())
                } else {
                    "not all arrived".to_owned()
                },
                if r.edge.is_empty() {
                    "?".to_owned()
                } else if edge_ms < 50.0 {
                    "✅".to_owned()
                } else {
                    "❌".to_owned()
                },
                if all && r.lat.max_ms() < 50.0 {
                    "✅"
                } else {
                    "❌"
                },
            ));
        }
        s
    }
}
