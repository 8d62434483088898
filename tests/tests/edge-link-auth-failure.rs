//! A wrong LINK_TOKEN: the gateway answers 401, the edge keeps retrying with
//! backoff, reports the link down, counts the failures, and keeps commands queued
//! (spec edge case "LINK_TOKEN authentication fails during WS upgrade").

use std::time::{Duration, Instant};

use relay::edge::Edge;
use relay::metrics::Metrics;
use relay::secret::Secret;
use relay_tests::harness::settings;
use relay_tests::test_gateway::TestGateway;

#[test]
fn a_rejected_link_keeps_retrying_and_queues_commands() {
    let gateway = TestGateway::start("the-right-token");
    let mut s = settings(&gateway.url());
    s.link_token = Secret::new("a-wrong-token");
    let metrics = std::sync::Arc::new(Metrics::new());
    let edge = Edge::start(s, metrics.clone()).unwrap();
    let base = format!("http://{}", edge.local_addr());

    // Two refused upgrades: the first attempt and the first retry (~1 s later).
    let deadline = Instant::now() + Duration::from_secs(10);
    while gateway.auth_failures() < 2 {
        assert!(Instant::now() < deadline, "the edge stopped retrying");
        std::thread::sleep(Duration::from_millis(20));
    }
    let agent = relay_tests::harness::agent();
    let ready =
        relay_tests::harness::Response::from(agent.get(&format!("{base}/readyz")).call().unwrap());
    assert_eq!(ready.status, 503);
    assert_eq!(ready.json()["link"], "disconnected");
    let text = metrics.encode();
    assert!(text.contains("relay_ws_connected 0"), "{text}");
    assert!(
        !text.contains("relay_link_auth_failures_total 0"),
        "failures are counted"
    );
    assert!(!text.contains("the-right-token") && !text.contains("a-wrong-token"));

    let token = edge.issue_token("42", None, &["chat:write".into()], Duration::from_secs(60));
    let r = relay_tests::harness::post(
        &base,
        "/api/typing-start",
        Some(&token),
        "application/json",
        r#"{"channelId":"1"}"#,
    );
    assert_eq!(r.status, 202, "{}", r.body);
    assert_eq!(gateway.connections(), 0);
    edge.shutdown();
}
