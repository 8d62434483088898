//! Replay with `Last-Event-ID` (header or `lastEventId` query) and `stream.reset`.

use std::time::Duration;

use relay_tests::harness::Harness;
use relay_tests::test_gateway::message;
use serde_json::Value;

const T: Duration = Duration::from_secs(5);

#[test]
fn reconnecting_with_last_event_id_replays_exactly_the_missed_events() {
    let h = Harness::start();
    let token = h.token("42", &[]);
    let q = format!("access_token={token}");
    let mut s = h.stream(&q, &[]);
    s.wait_for("voice.snapshot", T).unwrap();
    for i in 0..3 {
        h.gateway
            .send_event(message(&format!("{i}"), "7", &format!("m{i}")));
    }
    let seen: Vec<_> = (0..3).map(|_| s.next_live(T).unwrap()).collect();
    drop(s);
    // Missed while away:
    for i in 3..6 {
        h.gateway
            .send_event(message(&format!("{i}"), "7", &format!("m{i}")));
    }
    // Whether they reach the edge before or after the resume, the client sees
    // them exactly once and in order: replay and live form one sequence.
    let last_id = &seen[2].id;
    let mut resumed = h.stream(&q, &[("Last-Event-ID", last_id)]);
    let mut got = Vec::new();
    while got.len() < 3 {
        let ev = resumed.next_live(T).expect("replayed event");
        if ev.event == "messageCreate" {
            let v: Value = serde_json::from_str(&ev.data).unwrap();
            got.push(v["data"]["content"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(got, ["m3", "m4", "m5"]);
    // The query form works the same way.
    let mut by_query = h.stream(&format!("{q}&lastEventId={}", seen[1].id), &[]);
    let first = by_query.next_live(T).unwrap();
    assert_eq!(first.event, "messageCreate");
    let v: Value = serde_json::from_str(&first.data).unwrap();
    assert_eq!(v["data"]["content"], "m2");
}

#[test]
fn unknown_or_foreign_ids_reset_the_stream() {
    let h = Harness::start_with(|s| s.replay_capacity = 2);
    let token = h.token("42", &[]);
    let q = format!("access_token={token}");
    let mut live = h.stream(&q, &[]);
    live.wait_for("voice.snapshot", T).unwrap();
    for i in 0..5 {
        h.gateway.send_event(message(&format!("{i}"), "7", "x"));
    }
    let ids: Vec<String> = (0..5).map(|_| live.next_live(T).unwrap().id).collect();
    let epoch = ids[0].split_once('-').unwrap().0;

    let reset = |last: &str| {
        let mut s = h.stream(&q, &[("Last-Event-ID", last)]);
        let ev = s.next_event(T).unwrap();
        assert_eq!(ev.event, "stream.reset", "for {last}");
        let v: Value = serde_json::from_str(&ev.data).unwrap();
        // State items follow the reset.
        assert_eq!(s.next_event(T).unwrap().event, "gateway.status");
        v["data"]["reason"].as_str().unwrap().to_owned()
    };
    assert_eq!(reset(&ids[0]), "gap", "evicted from a ring of 2");
    assert_eq!(reset("garbage"), "gap");
    assert_eq!(reset(&format!("{epoch}-999")), "gap", "from the future");
    let other_epoch = epoch.parse::<u64>().unwrap() + 1;
    assert_eq!(reset(&format!("{other_epoch}-3")), "epoch");
}
