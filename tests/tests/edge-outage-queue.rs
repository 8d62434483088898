//! Commands sent while the link is down are queued (202) and delivered after the
//! reconnect in their original order with their original request ids (spec US3
//! scenario 2, FR-006).

use std::time::{Duration, Instant};

use relay_tests::harness::Harness;

#[test]
fn queued_commands_survive_an_outage_in_order() {
    let h = Harness::start_with(|s| s.limits.burst = 100);
    let token = h.token("42", &["chat:write"]);
    h.gateway.set_accepting(false);
    h.gateway.drop_connections();
    assert!(
        h.wait_link(false, Duration::from_secs(5)),
        "link never went down"
    );
    assert_eq!(h.get("/readyz").status, 503);
    let mut ids = Vec::new();
    for i in 0..20 {
        let r = h.post(
            "/api/send-message",
            Some(&token),
            &format!(r#"{{"channelId":"{}","content":"queued {i}"}}"#, 100 + i),
        );
        assert_eq!(r.status, 202, "{}", r.body);
        ids.push(r.json()["requestId"].as_str().unwrap().to_owned());
    }
    let ready = h.get("/readyz").json();
    assert_eq!(ready["queueDepth"], 20);
    h.gateway.set_accepting(true);
    assert!(
        h.gateway.wait_connected(Duration::from_secs(10)),
        "the edge reconnects"
    );
    let got: Vec<String> = (0..20)
        .map(|_| {
            let cmd = h
                .gateway
                .next_command(Duration::from_secs(5))
                .expect("queued command delivered");
            cmd.meta.request_id.unwrap()
        })
        .collect();
    assert_eq!(got, ids, "same order, same request ids");
    let deadline = Instant::now() + Duration::from_secs(5);
    while h.get("/readyz").json()["queueDepth"] != 0 {
        assert!(Instant::now() < deadline, "acks drain the queue");
        std::thread::yield_now();
    }
}
