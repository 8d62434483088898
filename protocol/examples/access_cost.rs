//! Measures `GuildModel::access` and `Access::may_view` on a guild shaped like a
//! busy community: 100 channels and threads, 50 roles, 5 overwrites per channel,
//! a member with 5 roles and a bot without ADMINISTRATOR (the worse case: its
//! overwrites count too). The edge recomputes access for every session of a
//! guild after a role change, so `access` × 10,000 sessions is the figure that
//! matters. Run with `cargo run --release -p relay-protocol --example access_cost`.
//!
//! Timing is printed, never asserted: a shared 2-core machine is no benchmark rig.
#![allow(clippy::disallowed_methods)] // a driver-side measurement: it reads the clock

use std::hint::black_box;
use std::time::Instant;

use relay_protocol::discord::guild::GuildModel;
use serde_json::{json, Value};

const GUILD: u64 = 1_000;
const BOT: u64 = 9_000;
const MEMBER: u64 = 9_001;

fn guild() -> Value {
    let view_send = (1u64 << 10) | (1 << 11) | (1 << 16) | (1 << 6) | (1 << 20) | (1 << 38);
    let roles: Vec<Value> = (0..50u64)
        .map(|i| {
            let id = if i == 0 { GUILD } else { 2_000 + i };
            let perms = if i == 0 { view_send } else { 1u64 << (i % 40) };
            json!({"id": id.to_string(), "name": format!("r{i}"), "position": i, "permissions": perms.to_string()})
        })
        .collect();
    let overwrites = |c: u64| -> Vec<Value> {
        let mut o = vec![
            json!({"id": GUILD.to_string(), "type": 0, "allow": "0", "deny": if c % 3 == 0 { "1024" } else { "0" }}),
        ];
        for k in 0..3u64 {
            let role = 2_001 + (c * 7 + k * 13) % 49;
            o.push(json!({"id": role.to_string(), "type": 0, "allow": "1024", "deny": "2048"}));
        }
        o.push(json!({"id": (9_100 + c).to_string(), "type": 1, "allow": "0", "deny": "64"}));
        o
    };
    let channels: Vec<Value> = (0..80u64)
        .map(|c| {
            json!({"id": (3_000 + c).to_string(), "type": if c % 5 == 4 { 2 } else { 0 },
                   "name": format!("channel-{c}"), "parent_id": null, "permission_overwrites": overwrites(c)})
        })
        .collect();
    let threads: Vec<Value> = (0..20u64)
        .map(|t| {
            json!({"id": (5_000 + t).to_string(), "type": 11, "name": format!("thread-{t}"),
                   "parent_id": (3_000 + t * 4).to_string()})
        })
        .collect();
    let member = |id: u64, roles: &[u64]| {
        json!({"user": {"id": id.to_string()}, "roles": roles.iter().map(u64::to_string).collect::<Vec<_>>(),
               "communication_disabled_until": null})
    };
    json!({"id": GUILD.to_string(), "owner_id": "1", "roles": roles, "channels": channels, "threads": threads,
           "members": [member(BOT, &[2_001, 2_002, 2_010]), member(MEMBER, &[2_003, 2_005, 2_008, 2_013, 2_021])]})
}

fn main() {
    let model = GuildModel::from_guild_create(&guild(), BOT).expect("a valid guild");
    let now = 1_700_000_000_000;
    let access = model.access(MEMBER, now);
    println!("member may view {} of 100 channels", access.len());

    let rounds = 10_000u32;
    let start = Instant::now();
    for _ in 0..rounds {
        black_box(model.access(black_box(MEMBER), now));
    }
    let per_access = start.elapsed() / rounds;
    println!(
        "access():   {per_access:?} per call, {:?} for 10,000 sessions",
        per_access * 10_000
    );

    let ids: Vec<u64> = (0..100u64)
        .map(|i| if i < 80 { 3_000 + i } else { 4_920 + i })
        .collect();
    let lookups = 1_000_000u32;
    let start = Instant::now();
    let mut seen = 0usize;
    for i in 0..lookups {
        seen += usize::from(access.may_view(black_box(ids[i as usize % ids.len()])));
    }
    println!(
        "may_view(): {:?} per call ({seen} hits)",
        start.elapsed() / lookups
    );

    let start = Instant::now();
    for _ in 0..rounds {
        black_box(model.permissions(black_box(MEMBER), black_box(3_010), now));
    }
    println!("permissions(): {:?} per call", start.elapsed() / rounds);

    let start = Instant::now();
    for _ in 0..100 {
        black_box(model.snapshot());
    }
    println!("snapshot(): {:?} per call", start.elapsed() / 100);
}
