//! CONTRACT.md §10 "Event ids are shared": three real edges on one real
//! gateway and one real redis-server give every event the same id, and a
//! browser that moves between edges (or comes back to an edge that restarted)
//! with `Last-Event-ID` gets exactly what it missed, once; an id whose
//! successors were trimmed from the shared log gets `stream.reset`.

use std::time::Duration;

use relay_tests::redis_rig::RedisRig;
use relay_tests::sse_client::SseClient;
use serde_json::Value;

const T: Duration = Duration::from_secs(10);

/// The next `messageCreate`: (its SSE id, its content).
fn next_message(s: &mut SseClient) -> (String, String) {
    let mut seen = Vec::new();
    loop {
        let Some(ev) = s.next_event(T) else {
            panic!("no messageCreate within 10 s; saw {seen:?}");
        };
        seen.push(format!("{} {} {}", ev.id, ev.event, ev.data));
        assert_ne!(ev.event, "stream.reset", "unexpected reset: {}", ev.data);
        if ev.event == "messageCreate" {
            let v: Value = serde_json::from_str(&ev.data).unwrap();
            return (ev.id, v["data"]["content"].as_str().unwrap().to_owned());
        }
    }
}

/// Events up to and including the first `messageCreate` or `stream.reset`.
fn first_of_replay(s: &mut SseClient) -> (String, String) {
    loop {
        let ev = s.next_event(T).expect("an event within 10 s");
        if ev.event == "stream.reset" {
            let v: Value = serde_json::from_str(&ev.data).unwrap();
            return (
                "reset".into(),
                v["data"]["reason"].as_str().unwrap().to_owned(),
            );
        }
        if ev.event == "messageCreate" {
            let v: Value = serde_json::from_str(&ev.data).unwrap();
            return (ev.id, v["data"]["content"].as_str().unwrap().to_owned());
        }
    }
}

fn seq_of(id: &str) -> u64 {
    id.split_once('-').unwrap().1.parse().unwrap()
}

#[test]
fn every_edge_gives_an_event_the_same_id_and_any_edge_resumes_it() {
    let rig = RedisRig::start(4096);
    let a = rig.edge(|_| {});
    let b = rig.edge(|_| {});
    let c = rig.edge(|_| {});
    let mut sa = a.stream("1", None);
    let mut sb = b.stream("2", None);
    let mut sc = c.stream("3", None);
    for s in [&mut sa, &mut sb, &mut sc] {
        s.wait_for("gateway.status", T).unwrap();
    }

    for i in 0..5 {
        rig.post(&format!("m{i}"));
    }
    let on_a: Vec<_> = (0..5).map(|_| next_message(&mut sa)).collect();
    let on_b: Vec<_> = (0..5).map(|_| next_message(&mut sb)).collect();
    let on_c: Vec<_> = (0..5).map(|_| next_message(&mut sc)).collect();
    assert_eq!(on_a, on_b, "edge b numbers events as edge a does");
    assert_eq!(on_a, on_c, "edge c numbers events as edge a does");
    let seqs: Vec<u64> = on_a.iter().map(|(id, _)| seq_of(id)).collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");

    // The browser on a saw m0..m2, then moves to b while m5..m7 are posted.
    let last_seen = on_a[2].0.clone();
    drop(sa);
    for i in 5..8 {
        rig.post(&format!("m{i}"));
    }
    // b has them live already; wait so the move happens after the posts.
    for _ in 5..8 {
        next_message(&mut sb);
    }
    let mut moved = b.stream("1", Some(&last_seen));
    let got: Vec<String> = (0..5).map(|_| next_message(&mut moved).1).collect();
    assert_eq!(
        got,
        ["m3", "m4", "m5", "m6", "m7"],
        "exactly what was missed"
    );
    rig.post("m8");
    let (m8_id, m8) = next_message(&mut moved);
    assert_eq!(m8, "m8", "then live, nothing doubled");

    // An edge started now has nothing in its ring: the shared log answers.
    rig.wait_logged(&m8_id);
    let d = rig.edge(|_| {});
    let mut fresh = d.stream("1", Some(&last_seen));
    let got: Vec<String> = (0..6).map(|_| next_message(&mut fresh).1).collect();
    assert_eq!(got, ["m3", "m4", "m5", "m6", "m7", "m8"]);
    rig.post("m9");
    let (id9, text9) = next_message(&mut fresh);
    assert_eq!(text9, "m9", "live after the replay, nothing doubled");
    let (id9_on_c, _) = next_message(&mut sc);
    // c has m5..m8 queued before m9.
    let mut last_on_c = id9_on_c;
    for _ in 0..4 {
        last_on_c = next_message(&mut sc).0;
    }
    assert_eq!(id9, last_on_c, "the new edge shares the numbering too");

    let replayed_from_redis = d.metrics.encode();
    assert!(
        replayed_from_redis.contains("relay_redis_op_seconds_count{op=\"xrange\"} 1"),
        "the fresh edge read the shared log once"
    );
}

#[test]
fn an_id_whose_successors_were_trimmed_is_reset_with_gap() {
    // The shared log and each ring keep 4 events.
    let rig = RedisRig::start(4);
    let a = rig.edge(|s| s.replay_capacity = 4);
    let mut sa = a.stream("1", None);
    sa.wait_for("gateway.status", T).unwrap();
    rig.post("first");
    let (first, _) = next_message(&mut sa);
    for i in 0..6 {
        rig.post(&format!("n{i}"));
    }
    let mut held = Vec::new();
    for _ in 0..6 {
        held.push(next_message(&mut sa));
    }
    rig.wait_logged(&held[5].0);
    let fresh = rig.edge(|s| s.replay_capacity = 4);
    // Six events came after `first`, the log holds four: a hole.
    let mut gone = fresh.stream("1", Some(&first));
    assert_eq!(first_of_replay(&mut gone), ("reset".into(), "gap".into()));
    // One just before the oldest held is whole.
    let mut whole = fresh.stream("1", Some(&held[1].0));
    let got: Vec<String> = (0..4).map(|_| next_message(&mut whole).1).collect();
    assert_eq!(got, ["n2", "n3", "n4", "n5"]);
    // An id of no epoch the deployment knows.
    let mut foreign = fresh.stream("1", Some("12345-1"));
    assert_eq!(
        first_of_replay(&mut foreign),
        ("reset".into(), "epoch".into())
    );
}

/// With `ACCESS=discord` a replay read back from Redis passes the same
/// per-stream scope as live events: Ada (no view of `#moderators`) gets only
/// `#general`'s events, Grace (a moderator) gets both, on an edge whose ring
/// is empty.
#[test]
fn a_replay_from_redis_keeps_to_what_the_member_may_view() {
    use relay::config::AccessMode;
    use relay_runtime::sim_discord::ids as sim;

    let rig = RedisRig::start(4096);
    let a = rig.edge(|s| s.access = AccessMode::Discord);
    let mut ada = a.stream(sim::ADA, None);
    let mut grace = a.stream(sim::GRACE, None);
    ada.wait_for("access", T).expect("Ada's access event");
    grace.wait_for("access", T).expect("Grace's access event");
    let post = |channel: &str, text: &str| {
        rig.rig
            .sim
            .post_as(sim::GRACE, channel, text)
            .expect("the simulator posts");
    };
    post(sim::GENERAL, "g1");
    post(sim::MODERATORS, "m1");
    post(sim::GENERAL, "g2");
    let seen: Vec<_> = (0..2).map(|_| next_message(&mut ada)).collect();
    assert_eq!(
        seen.iter().map(|(_, t)| t.as_str()).collect::<Vec<_>>(),
        ["g1", "g2"]
    );
    let grace_seen: Vec<String> = (0..3).map(|_| next_message(&mut grace).1).collect();
    assert_eq!(grace_seen, ["g1", "m1", "g2"]);
    let last = seen[1].0.clone();

    post(sim::MODERATORS, "m2");
    post(sim::GENERAL, "g3");
    next_message(&mut grace);
    let (grace_last, _) = next_message(&mut grace);
    rig.wait_logged(&grace_last);
    let d = rig.edge(|s| s.access = AccessMode::Discord);
    let mut ada_d = d.stream(sim::ADA, Some(&last));
    assert_eq!(next_message(&mut ada_d).1, "g3", "m2 is not Ada's to see");
    let mut grace_d = d.stream(sim::GRACE, Some(&last));
    let got: Vec<String> = (0..2).map(|_| next_message(&mut grace_d).1).collect();
    assert_eq!(got, ["m2", "g3"]);
    post(sim::MODERATORS, "m3");
    post(sim::GENERAL, "g4");
    assert_eq!(
        next_message(&mut ada_d).1,
        "g4",
        "live, scoped, nothing doubled"
    );
    assert!(
        !d.metrics
            .encode()
            .contains("relay_redis_op_seconds_count{op=\"xrange\"} 0"),
        "the new edge read the shared log"
    );
}

/// Events the gateway numbered while an edge's link was down are read from
/// the shared log when it relinks, so its browsers miss nothing (without
/// Redis they are lost to that edge, as in v1.0).
#[test]
fn an_edge_relinking_fills_in_what_it_missed_from_the_log() {
    let rig = RedisRig::start(4096);
    let a = rig.edge(|_| {});
    let mut s = a.stream("1", None);
    s.wait_for("gateway.status", T).unwrap();
    rig.post("before");
    let (before, _) = next_message(&mut s);
    rig.rig.gateway.kick_edges();
    assert!(rig.rig.gateway.wait_for_edges(0, T), "the edge is gone");
    for i in 0..3 {
        rig.post(&format!("away{i}"));
    }
    assert!(rig.rig.gateway.wait_for_edges(1, T), "the edge relinks");
    rig.post("after");
    let got: Vec<(String, String)> = (0..4).map(|_| next_message(&mut s)).collect();
    let texts: Vec<&str> = got.iter().map(|(_, t)| t.as_str()).collect();
    assert_eq!(texts, ["away0", "away1", "away2", "after"]);
    let seqs: Vec<u64> = got.iter().map(|(id, _)| seq_of(id)).collect();
    assert_eq!(seqs[0], seq_of(&before) + 1, "contiguous with what it had");
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
}
