//! CONTRACT.md §10 "Rate limits are shared": a user spraying three edges that
//! share one real redis-server is limited exactly as on one edge (same 429
//! count, a sane `retryAfterMs`); three edges without Redis would each allow
//! a full burst.

use std::time::Duration;

use relay_protocol::bucket::LimitConfig;
use relay_tests::discord::ids;
use relay_tests::redis_rig::{RedisRig, RigEdge};

/// Burst 10, then one token a minute: no refill lands inside a test.
fn slow_limits() -> LimitConfig {
    LimitConfig {
        burst: 10,
        refill: 1,
        window: Duration::from_secs(60),
    }
}

/// Sends `n` typing-start calls as `user`, round-robin over `edges`, each to
/// a channel of its own so only the user's bucket is in play; returns
/// (passed the edge's limits, limited by the edge, retryAfterMs values).
/// A call that passed may still fail at the simulated Discord (unknown
/// channel: 502): it reached the gateway, which is what counts here.
fn spray(edges: &[&RigEdge], user: &str, n: usize) -> (usize, usize, Vec<u64>) {
    let (mut allowed, mut limited, mut waits) = (0, 0, Vec::new());
    for i in 0..n {
        let body = format!(r#"{{"channelId":"{}{i:03}"}}"#, user);
        let r = edges[i % edges.len()].command(user, "/api/typing-start", &body);
        match r.status {
            200 | 202 | 502 => allowed += 1,
            429 => {
                let v = r.json();
                let message = v["error"]["message"].as_str().unwrap_or_default();
                assert!(
                    message.contains("user limit"),
                    "an edge bucket said so: {v}"
                );
                waits.push(v["retryAfterMs"].as_u64().expect("retryAfterMs"));
                limited += 1;
            }
            other => panic!("unexpected {other}: {}", r.body),
        }
    }
    (allowed, limited, waits)
}

#[test]
fn a_user_spraying_three_edges_is_limited_as_on_one() {
    let rig = RedisRig::start(4096);
    let a = rig.edge(|s| s.limits = slow_limits());
    let b = rig.edge(|s| s.limits = slow_limits());
    let c = rig.edge(|s| s.limits = slow_limits());

    let (one_ok, one_429, _) = spray(&[&a], "100", 30);
    let (three_ok, three_429, waits) = spray(&[&a, &b, &c], "200", 30);
    assert_eq!((one_ok, one_429), (10, 20), "one edge: the burst, then 429");
    assert_eq!(
        (three_ok, three_429),
        (one_ok, one_429),
        "three edges together: the same as one"
    );
    // One token a minute: the wait is under a minute and a second at most.
    for w in &waits {
        assert!((55_000..=60_000).contains(w), "retryAfterMs {w}");
    }
    // Each edge answered some of the 429s from the shared bucket.
    for e in [&a, &b, &c] {
        let m = e.metrics.encode();
        assert!(
            !m.contains("relay_rate_limited_total{scope=\"user\"} 0"),
            "every edge limited some calls"
        );
    }
}

#[test]
fn the_history_read_bucket_is_shared_too() {
    let rig = RedisRig::start(4096);
    let a = rig.edge(|_| {});
    let b = rig.edge(|_| {});
    let path = format!("/api/channels/{}/messages?limit=1", ids::GAME_ROOM);
    let mut edge_limited = 0;
    for i in 0..30 {
        let e = if i % 2 == 0 { &a } else { &b };
        let token = e.token("300");
        let r: relay_tests::harness::Response = relay_tests::harness::agent()
            .get(&format!("{}{path}", e.base))
            .header("Authorization", &format!("Bearer {token}"))
            .call()
            .expect("request")
            .into();
        // Discord's own read limits may also answer 429; only the edge's
        // bucket says "history reads".
        if r.status == 429 && r.body.contains("too many history reads") {
            edge_limited += 1;
        }
    }
    // Burst 20 across both edges (10 more per 5 s may add one or two).
    assert!(
        (8..=10).contains(&edge_limited),
        "{edge_limited} limited by the edges"
    );
}
