//! Discord 429s, per route and global, become `rateLimited` replies with
//! `retryAfterMs`; after one, the gateway refuses further calls on that route
//! (or, if global, on every route) itself instead of drawing another 429, and
//! a route bucket Discord reported empty is never called until it resets.

use std::time::Duration;

use relay_runtime::sim_discord::{RateLimit, RateLimits};
use relay_tests::discord::{command_json, ids, sim_config, SimConfig};
use relay_tests::gateway_rig::{GatewayRig, TestEdge};
use serde_json::{json, Value};

fn send(edge: &TestEdge, id: &str, channel: &str) -> Value {
    edge.send(&command_json(
        "sendMessage",
        json!({"channelId": channel, "content": "x"}),
        id,
        "user-1",
    ));
    edge.reply_to(id)
}

fn posts(rig: &GatewayRig) -> usize {
    rig.sim
        .requests()
        .iter()
        .filter(|r| r.method == "POST")
        .count()
}

/// A rig whose forced 429s ask for 1.5 s.
fn rig_with_forced_429s() -> GatewayRig {
    GatewayRig::start_with(
        SimConfig {
            forced_retry_after: Duration::from_millis(1500),
            ..sim_config()
        },
        |_| {},
    )
}

#[test]
fn a_route_429_is_answered_rate_limited_and_holds_that_route_only() {
    let rig = rig_with_forced_429s();
    let edge = rig.edge();
    rig.sim.force_429(1, false);
    let reply = send(&edge, "r1", ids::GENERAL);
    assert_eq!(reply["type"], "rateLimited", "{reply}");
    assert_eq!(reply["data"]["global"], false);
    let wait = reply["data"]["retryAfterMs"].as_u64().unwrap();
    assert!((1000..=1500).contains(&wait), "{wait}");
    assert_eq!(posts(&rig), 1);

    // Same route at once: refused here, Discord never sees it.
    let reply = send(&edge, "r2", ids::GENERAL);
    assert_eq!(reply["type"], "rateLimited");
    assert_eq!(reply["data"]["global"], false);
    assert!(reply["data"]["retryAfterMs"].as_u64().unwrap() <= wait);
    assert_eq!(posts(&rig), 1);

    // Another channel is another bucket.
    assert_eq!(send(&edge, "r3", ids::GAME_ROOM)["type"], "ack");
}

#[test]
fn a_global_429_holds_every_route() {
    let rig = rig_with_forced_429s();
    let edge = rig.edge();
    rig.sim.force_429(1, true);
    let reply = send(&edge, "g1", ids::GENERAL);
    assert_eq!(reply["type"], "rateLimited", "{reply}");
    assert_eq!(reply["data"]["global"], true);
    assert!(reply["data"]["retryAfterMs"].as_u64().unwrap() > 0);

    let reply = send(&edge, "g2", ids::GAME_ROOM);
    assert_eq!(reply["type"], "rateLimited");
    assert_eq!(reply["data"]["global"], true);
    assert_eq!(posts(&rig), 1);
}

#[test]
fn an_exhausted_bucket_is_not_called_until_it_resets() {
    let rig = GatewayRig::start_with(
        SimConfig {
            rate_limits: RateLimits {
                messages: RateLimit::new(2, Duration::from_secs(3)),
                ..RateLimits::default()
            },
            ..sim_config()
        },
        |_| {},
    );
    let edge = rig.edge();
    assert_eq!(send(&edge, "b1", ids::GENERAL)["type"], "ack");
    assert_eq!(send(&edge, "b2", ids::GENERAL)["type"], "ack");
    let reply = send(&edge, "b3", ids::GENERAL);
    assert_eq!(reply["type"], "rateLimited", "{reply}");
    assert_eq!(reply["data"]["global"], false);
    assert!(reply["data"]["retryAfterMs"].as_u64().unwrap() <= 3000);
    assert_eq!(posts(&rig), 2, "the third call never reached Discord");
    assert!(rig
        .sim
        .requests()
        .iter()
        .all(|r| r.path.ends_with("/messages") || r.method == "GET"));
}
