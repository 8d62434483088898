//! Frames the edge cannot read are counted, logged and broadcast as an SSE
//! `error` with code `malformed_frame`; gateway `error` frames are broadcast too;
//! nothing crashes (spec edge case "malformed frames").

use std::time::Duration;

use relay_protocol::payload::{ErrorData, EventBody};
use relay_tests::harness::Harness;
use relay_tests::test_gateway::message;
use serde_json::Value;

const T: Duration = Duration::from_secs(5);

#[test]
fn malformed_and_error_frames_become_error_events() {
    let h = Harness::start();
    let token = h.token("42", &[]);
    let mut s = h.stream(
        &format!("access_token={token}&types=error,messageCreate"),
        &[],
    );
    s.wait_for("voice.snapshot", T).unwrap();

    let bad = [
        "{not json".to_string(),
        r#"{"version":"9.0","type":"messageCreate","data":{},"meta":{"traceId":"t","sentAt":"s"}}"#.to_string(),
        r#"{"version":"1.0","type":"teleport","data":{},"meta":{"traceId":"t","sentAt":"s"}}"#.to_string(),
        r#"{"version":"1.0","type":"voice.left","data":{"guildId":"1"},"meta":{"traceId":"trace-kept","sentAt":"s"}}"#.to_string(),
    ];
    for frame in &bad {
        h.gateway.send_raw(frame.clone());
    }
    for (i, _) in bad.iter().enumerate() {
        let ev = s.next_live(T).expect("an error event per malformed frame");
        assert_eq!(ev.event, "error");
        let v: Value = serde_json::from_str(&ev.data).unwrap();
        assert_eq!(v["data"]["code"], "malformed_frame", "frame {i}");
        if i == 3 {
            assert_eq!(
                v["meta"]["traceId"], "trace-kept",
                "salvaged trace metadata"
            );
            assert!(v["data"]["message"]
                .as_str()
                .unwrap()
                .contains("data.userId"));
        }
    }
    // The link is still up and still relays.
    h.gateway.send_event(message("1", "7", "still alive"));
    assert!(s
        .wait_for("messageCreate", T)
        .unwrap()
        .data
        .contains("still alive"));
    assert!(h
        .metrics
        .encode()
        .contains("relay_malformed_frames_total 4"));

    let meta = h.gateway.send_event(EventBody::Error(ErrorData {
        code: "discord_unavailable".into(),
        message: "Discord answered HTTP 503".into(),
        request_id: None,
    }));
    let ev = s.wait_for("error", T).unwrap();
    let v: Value = serde_json::from_str(&ev.data).unwrap();
    assert_eq!(v["data"]["code"], "discord_unavailable");
    assert_eq!(v["meta"]["traceId"], meta.trace_id.as_str());
    assert!(
        !ev.id.is_empty(),
        "relayed errors are sequenced like any event"
    );
}
