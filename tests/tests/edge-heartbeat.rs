//! `: ping` after `HEARTBEAT_MS` with nothing written (spec US1 scenario 3).

use std::time::{Duration, Instant};

use relay_protocol::sse::SseItem;
use relay_tests::harness::Harness;

#[test]
fn idle_streams_get_a_ping_comment_on_time() {
    let h = Harness::start_with(|s| s.heartbeat = Duration::from_millis(300));
    let token = h.token("42", &[]);
    let mut s = h.stream(&format!("access_token={token}"), &[]);
    s.wait_for("voice.snapshot", Duration::from_secs(5))
        .unwrap();
    let start = Instant::now();
    let mut pings = 0;
    while pings < 3 {
        match s
            .next_item(Duration::from_secs(2))
            .expect("a heartbeat within 2 s")
        {
            SseItem::Comment(c) => {
                assert_eq!(c, "ping");
                pings += 1;
            }
            // The link's `ready` may land after the stream opened: its state
            // items (no id) are not traffic, and writing them only moves the
            // next ping later, which the bound below allows.
            SseItem::Event(e)
                if e.id.is_empty() && ["voice.snapshot", "gateway.status"].contains(&&*e.event) => {
            }
            other => panic!("only heartbeats expected, got {other:?}"),
        }
    }
    let elapsed = start.elapsed();
    assert!(
        elapsed >= Duration::from_millis(850),
        "not earlier than the interval: {elapsed:?}"
    );
}
