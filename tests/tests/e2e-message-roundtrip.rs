//! End to end through every real part: a message sent through the edge's HTTP API
//! goes over the link to the gateway, out to the simulated Discord's REST API,
//! comes back as a Gateway MESSAGE_CREATE, and reaches an SSE client as
//! `messageCreate` — posted through relay's webhook under the sender's name,
//! since the demo runs `ACCESS=discord`.

use std::time::Duration;

use relay::demo::{Demo, DemoOptions};
use relay_runtime::sim_discord::ids;
use relay_tests::harness::post;
use relay_tests::sse_client::SseClient;
use serde_json::Value;

#[test]
fn a_sent_message_comes_back_over_sse() {
    let demo = Demo::start(DemoOptions {
        bind: "127.0.0.1:0".parse().unwrap(),
        seed: 1,
        enable_ws_bridge: false,
        control: None,
        role_period: None,
        replay_capacity: None,
    })
    .expect("demo starts");
    let addr = demo.addr();
    let mut stream = SseClient::connect(
        addr,
        &format!(
            "/api/stream?access_token={}&types=messageCreate",
            demo.token
        ),
        &[],
    )
    .unwrap();
    assert_eq!(stream.status, 200);
    stream
        .wait_for("voice.snapshot", Duration::from_secs(5))
        .unwrap();

    let text = format!("round trip {}", relay_runtime::clock::new_trace_id());
    let body = serde_json::json!({"channelId": ids::GENERAL, "content": text}).to_string();
    // The link may still be coming up: a 202 is queued and delivered after it.
    let r = post(
        &format!("http://{addr}"),
        "/api/send-message",
        Some(&demo.token),
        "application/json",
        &body,
    );
    assert!(
        r.status == 200 || r.status == 202,
        "{} {}",
        r.status,
        r.body
    );
    let trace_id = r.json()["traceId"].as_str().unwrap().to_owned();

    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let event = loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let ev = stream
            .wait_for("messageCreate", left)
            .expect("the message comes back");
        let v: Value = serde_json::from_str(&ev.data).unwrap();
        if v["data"]["content"] == text.as_str() {
            break v;
        }
    };
    assert_eq!(event["data"]["channelId"], ids::GENERAL);
    // The demo runs ACCESS=discord: the bot may manage webhooks in #general, so
    // the message goes out under the demo user's name and comes back as hers
    // (CONTRACT.md §9, docs/webhooks.md).
    assert_eq!(event["data"]["author"]["id"], ids::ADA);
    assert_eq!(event["data"]["author"]["bot"], false);
    assert_eq!(event["data"]["via"], "relay");
    assert!(event["meta"]["traceId"].is_string());
    assert!(!trace_id.is_empty());
    demo.shutdown();
}
