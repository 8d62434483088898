//! `/api/stream`: auth, headers, the order of the first items, live events with
//! `<epoch>-<seq>` ids and the gateway's trace ids (CONTRACT.md §4).

use std::time::Duration;

use relay_protocol::sse::SseItem;
use relay_tests::harness::Harness;
use relay_tests::test_gateway::message;
use serde_json::Value;

const T: Duration = Duration::from_secs(5);

#[test]
fn stream_needs_a_valid_session() {
    let h = Harness::start();
    let s = h.stream("", &[]);
    assert_eq!(s.status, 401);
    assert!(s.error_body.contains("unauthenticated"), "{}", s.error_body);
    let s = h.stream("access_token=not.a.jwt", &[]);
    assert_eq!(s.status, 401);
    let other_key = relay::auth::SessionKeys::new(&relay::secret::Secret::new("other"));
    let forged = other_key.issue(
        "1",
        None,
        &[],
        Duration::from_secs(60),
        relay_runtime::clock::unix_secs(),
    );
    assert_eq!(h.stream(&format!("access_token={forged}"), &[]).status, 401);
}

#[test]
fn first_items_then_live_events_in_order() {
    let h = Harness::start();
    let token = h.token("42", &[]);
    // The cookie and the header work as well as the query parameter.
    let cookie = format!("relay_session={token}");
    let mut s = h.stream("", &[("Cookie", &cookie)]);
    assert_eq!(s.status, 200);
    assert_eq!(s.header("content-type"), Some("text/event-stream"));
    assert_eq!(s.header("cache-control"), Some("no-cache, no-transform"));
    assert_eq!(s.header("x-accel-buffering"), Some("no"));
    assert_eq!(s.next_item(T), Some(SseItem::Retry(2000)));
    let status = s.next_event(T).expect("status");
    assert_eq!(status.event, "gateway.status");
    assert_eq!(status.id, "", "state items carry no id");
    let v: Value = serde_json::from_str(&status.data).unwrap();
    assert_eq!(v["data"]["connected"], true);
    assert_eq!(v["version"], "1.0");
    assert_eq!(s.next_event(T).expect("snapshot").event, "voice.snapshot");

    let mut metas = Vec::new();
    for i in 0..5 {
        metas.push(
            h.gateway
                .send_event(message(&format!("{i}"), "7", &format!("hello {i}"))),
        );
    }
    let mut last_seq = None;
    for (i, meta) in metas.iter().enumerate() {
        let ev = s.next_live(T).expect("live event");
        assert_eq!(ev.event, "messageCreate");
        let (epoch, seq) = ev.id.split_once('-').expect("epoch-seq id");
        assert!(epoch.parse::<u64>().is_ok());
        let seq: u64 = seq.parse().unwrap();
        if let Some(prev) = last_seq {
            assert_eq!(seq, prev + 1, "seq grows by one per event");
        }
        last_seq = Some(seq);
        let v: Value = serde_json::from_str(&ev.data).unwrap();
        assert_eq!(v["event"], "messageCreate");
        assert_eq!(v["data"]["content"], format!("hello {i}"));
        assert_eq!(
            v["meta"]["traceId"],
            meta.trace_id.as_str(),
            "the gateway's trace id is kept"
        );
        assert!(v["meta"]["sentAt"].as_str().unwrap().ends_with('Z'));
    }

    // A bearer header works too.
    let mut s2 = h.stream("", &[("Authorization", &format!("Bearer {token}"))]);
    assert_eq!(s2.status, 200);
    assert_eq!(s2.next_event(T).unwrap().event, "gateway.status");
}

#[test]
fn relayed_user_text_is_sanitized() {
    let h = Harness::start();
    let token = h.token("42", &[]);
    let mut s = h.stream(&format!("access_token={token}&types=messageCreate"), &[]);
    s.wait_for("voice.snapshot", T).unwrap();
    h.gateway.send_event(message(
        "1",
        "7",
        "line one\r\nline two\u{1b}[31m\u{202e}evil\u{0}",
    ));
    let ev = s.wait_for("messageCreate", T).unwrap();
    let v: Value = serde_json::from_str(&ev.data).unwrap();
    let content = v["data"]["content"].as_str().unwrap();
    assert!(content.starts_with("line one\nline two"), "{content:?}");
    assert!(
        !content.contains('\u{1b}') && !content.contains('\u{202e}') && !content.contains('\0'),
        "{content:?}"
    );
}
