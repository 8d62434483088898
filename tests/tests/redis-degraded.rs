//! CONTRACT.md §10 "Redis down": the real redis-server is killed mid-run and
//! restarted. Nothing crashes, no browser is disconnected, live events keep
//! flowing with the same ids on every edge, rate limits fall back to each
//! edge's own buckets, `/readyz` says `"redis":"down"` (still 200) and
//! `relay_redis_up` is 0; when Redis is back everything rejoins by itself.

use std::time::{Duration, Instant};

use relay_protocol::bucket::LimitConfig;
use relay_tests::redis_rig::{RedisRig, RigEdge};
use relay_tests::sse_client::SseClient;
use serde_json::Value;

const T: Duration = Duration::from_secs(10);

fn slow_limits() -> LimitConfig {
    LimitConfig {
        burst: 10,
        refill: 1,
        window: Duration::from_secs(60),
    }
}

fn next_message(s: &mut SseClient) -> (String, String) {
    loop {
        let ev = s.next_event(T).expect("the stream stays open and delivers");
        if ev.event == "messageCreate" {
            let v: Value = serde_json::from_str(&ev.data).unwrap();
            return (ev.id, v["data"]["content"].as_str().unwrap().to_owned());
        }
    }
}

/// Calls that passed the edges' limits out of `n`, round-robin over `edges`.
fn passed(edges: &[&RigEdge], user: &str, n: usize) -> usize {
    (0..n)
        .filter(|i| {
            let body = format!(r#"{{"channelId":"{user}{i:03}"}}"#);
            edges[i % edges.len()]
                .command(user, "/api/typing-start", &body)
                .status
                != 429
        })
        .count()
}

/// Waits until the edge's `/readyz` reports `redis` as `want`; returns the body.
fn wait_redis(edge: &RigEdge, want: &str) -> Value {
    let deadline = Instant::now() + T;
    loop {
        let r = edge.get("/readyz");
        let v = r.json();
        if v["redis"] == want {
            assert_eq!(r.status, 200, "ready while the link is up: {v}");
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "/readyz never said redis {want}: {v}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until the gateway's `relay_redis_up` is `want`.
fn wait_gateway_redis_up(rig: &RedisRig, want: u8) {
    let deadline = Instant::now() + T;
    let line = format!("relay_redis_up {want}");
    while !rig.rig.metrics.encode().lines().any(|l| l == line) {
        assert!(Instant::now() < deadline, "the gateway never said {line}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn metric(edge: &RigEdge, line_start: &str) -> String {
    edge.metrics
        .encode()
        .lines()
        .find(|l| l.starts_with(line_start))
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn redis_dying_and_returning_costs_no_browser_and_no_event() {
    let mut rig = RedisRig::start(4096);
    let a = rig.edge(|s| s.limits = slow_limits());
    let b = rig.edge(|s| s.limits = slow_limits());
    let mut sa = a.stream("1", None);
    let mut sb = b.stream("2", None);
    sa.wait_for("gateway.status", T).unwrap();
    sb.wait_for("gateway.status", T).unwrap();
    wait_redis(&a, "up");
    assert_eq!(metric(&a, "relay_redis_up "), "relay_redis_up 1");

    rig.post("before");
    let (before_id, _) = next_message(&mut sa);
    assert_eq!(next_message(&mut sb).0, before_id);

    rig.redis.kill();
    wait_redis(&a, "down");
    wait_redis(&b, "down");
    assert_eq!(metric(&a, "relay_redis_up "), "relay_redis_up 0");
    wait_gateway_redis_up(&rig, 0);

    // Live events keep flowing, same ids on both edges, the streams stay open.
    let mut during = Vec::new();
    for i in 0..3 {
        rig.post(&format!("down{i}"));
    }
    for _ in 0..3 {
        let on_a = next_message(&mut sa);
        assert_eq!(next_message(&mut sb), on_a, "the same id on both edges");
        during.push(on_a);
    }
    assert_eq!(during[0].1, "down0");

    // Limits fall back to each edge's own buckets: a full burst on each.
    assert_eq!(
        passed(&[&a, &b], "500", 30),
        20,
        "10 per edge while Redis is down"
    );

    rig.redis.restart();
    wait_redis(&a, "up");
    wait_redis(&b, "up");
    assert_eq!(metric(&a, "relay_redis_up "), "relay_redis_up 1");
    wait_gateway_redis_up(&rig, 1);
    // Shared again (the restarted Redis is empty: fresh buckets).
    assert_eq!(
        passed(&[&a, &b], "600", 30),
        10,
        "10 across both edges again"
    );

    rig.post("after");
    let after = next_message(&mut sa);
    assert_eq!(next_message(&mut sb), after);
    assert_eq!(after.1, "after");

    // The events posted while Redis was away reached the log once it was
    // back: an edge started now replays them after the last one before the kill.
    let deadline = Instant::now() + T;
    let fresh = rig.edge(|_| {});
    loop {
        let mut s = fresh.stream("1", Some(&before_id));
        let first = loop {
            let ev = s.next_event(T).expect("an event");
            if ev.event == "messageCreate" || ev.event == "stream.reset" {
                break ev;
            }
        };
        if first.event == "messageCreate" {
            let v: Value = serde_json::from_str(&first.data).unwrap();
            assert_eq!(v["data"]["content"], "down0");
            let rest: Vec<String> = (0..3).map(|_| next_message(&mut s).1).collect();
            assert_eq!(rest, ["down1", "down2", "after"]);
            break;
        }
        // The appender retries on its own schedule; give it a moment.
        assert!(
            Instant::now() < deadline,
            "the log never caught up: {}",
            first.data
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let failures = metric(&a, "relay_redis_op_seconds_count{op=\"limit\"}");
    assert!(!failures.ends_with(" 0"), "{failures}");
}
