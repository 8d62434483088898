//! A gateway that restarts forgets which `requestId`s it ran, so the edge's
//! re-send of a command whose reply was lost reaches Discord again. For
//! `sendMessage` the request carries the requestId as the message `nonce` with
//! `enforce_nonce`, so Discord (here the simulated one) makes the message once.

use std::sync::Arc;

use relay::gateway::Gateway;
use relay::metrics::Metrics;
use relay_tests::discord::{command_json, fast_backoff, gateway_settings, ids, REIDENTIFY_WAIT};
use relay_tests::gateway_rig::{GatewayRig, TestEdge, LINK_TOKEN};
use serde_json::json;

/// A second gateway process on the same (simulated) Discord: nothing of the
/// first one's memory, as after a restart.
fn restarted(rig: &GatewayRig) -> Gateway {
    let mut settings = gateway_settings(&rig.sim, LINK_TOKEN);
    settings.backoff = fast_backoff();
    let gateway = Gateway::start(settings, Arc::new(Metrics::new())).expect("restarts");
    assert!(
        gateway.wait_discord_connected(REIDENTIFY_WAIT),
        "new Discord session"
    );
    gateway
}

#[test]
fn a_message_re_sent_to_a_restarted_gateway_is_posted_once() {
    let rig = GatewayRig::start();
    let made = rig.sim.subscribe();
    let frame = command_json(
        "sendMessage",
        json!({"channelId": ids::GENERAL, "content": "exactly once"}),
        "req-restart",
        "user-7",
    );
    let edge = rig.edge();
    edge.send(&frame);
    assert_eq!(edge.reply_to("req-restart")["type"], "ack");

    let gateway = restarted(&rig);
    let edge = TestEdge::connect(&gateway.link_url(), LINK_TOKEN).expect("link upgrade");
    edge.next_type("ready");
    edge.send(&frame);
    assert_eq!(edge.reply_to("req-restart")["type"], "ack");

    let posts: Vec<_> = rig
        .sim
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/messages"))
        .collect();
    assert_eq!(posts.len(), 2, "the new gateway did not know the requestId");
    let nonce = |i: usize| {
        let body: serde_json::Value = serde_json::from_str(&posts[i].body).unwrap();
        assert_eq!(body["enforce_nonce"], true);
        body["nonce"].clone()
    };
    assert_eq!(nonce(0), nonce(1), "same requestId, same nonce");
    // The simulator dispatches MESSAGE_CREATE before it answers the POST, so
    // both are in the channel by now.
    let creates = made
        .try_iter()
        .filter(|e| e.name == "MESSAGE_CREATE")
        .count();
    assert_eq!(creates, 1, "Discord made one message");

    let other = command_json(
        "sendMessage",
        json!({"channelId": ids::GENERAL, "content": "exactly once"}),
        "req-other",
        "user-7",
    );
    edge.send(&other);
    assert_eq!(edge.reply_to("req-other")["type"], "ack");
    let creates = made
        .try_iter()
        .filter(|e| e.name == "MESSAGE_CREATE")
        .count();
    assert_eq!(creates, 1, "another requestId is another message");
    gateway.shutdown();
}
