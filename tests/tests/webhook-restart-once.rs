//! Exactly once through a webhook (docs/webhooks.md): Execute Webhook has no
//! nonce, so a `sendMessage` whose reply was lost in a gateway restart and
//! that the edge writes again (same `requestId`, `meta.attempt: 2`) must not
//! post twice. The restarted gateway has no record of the `requestId`; it reads
//! the channel's recent messages, finds its own post, and answers `ack`.
//! Like `gateway-restart-nonce.rs`, the edge is a test link client, so the
//! frames are exactly what relay's edge writes (the queue's marking of
//! re-writes is unit-tested in `protocol/src/queue.rs`).

use std::sync::Arc;

use relay::gateway::Gateway;
use relay::metrics::Metrics;
use relay_runtime::clock;
use relay_runtime::sim_discord::ids;
use relay_tests::discord::{fast_backoff, gateway_settings, REIDENTIFY_WAIT};
use relay_tests::gateway_rig::{GatewayRig, TestEdge, LINK_TOKEN};
use serde_json::{json, Value};

/// A second gateway process on the same (simulated) Discord: nothing of the
/// first one's memory, as after a restart.
fn restarted(rig: &GatewayRig) -> Gateway {
    let mut settings = gateway_settings(&rig.sim, LINK_TOKEN);
    settings.backoff = fast_backoff();
    let gateway = Gateway::start(settings, Arc::new(Metrics::new())).expect("restarts");
    assert!(gateway.wait_discord_connected(REIDENTIFY_WAIT));
    gateway
}

/// A link client past `ready`, once the gateway holds the guild's model.
fn edge_with_guild(gateway: &Gateway) -> TestEdge {
    let edge = TestEdge::connect(&gateway.link_url(), LINK_TOKEN).expect("link upgrade");
    let ready = edge.next_type("ready");
    if ready["data"]["guilds"].as_array().is_none_or(Vec::is_empty) {
        edge.next_type("guild.state");
    }
    edge
}

/// `sendMessage` as an `ACCESS=discord` edge writes it for Ada.
fn send_frame(request_id: &str, content: &str, channel: &str, attempt: Option<u32>) -> Value {
    let mut meta = json!({
        "traceId": format!("trace-{request_id}"),
        "sentAt": clock::now_rfc3339(),
        "requestId": request_id,
        "actor": ids::ADA,
        "access": "discord",
        "actorName": "Ada",
        "actorAvatar": "8342729096ea3675442027381ff50dfe",
    });
    if let Some(n) = attempt {
        meta["attempt"] = json!(n);
    }
    json!({"version": "1.0", "type": "sendMessage",
           "data": {"channelId": channel, "content": content}, "meta": meta})
}

fn count(rig: &GatewayRig, method: &str, prefix: &str) -> usize {
    rig.sim
        .requests()
        .iter()
        .filter(|r| r.method == method && r.path.starts_with(&format!("/api/v10{prefix}")))
        .count()
}

fn posts_in(rig: &GatewayRig, channel: &str, content: &str) -> usize {
    rig.sim
        .messages_in(channel)
        .iter()
        .filter(|m| m["content"] == content)
        .count()
}

#[test]
fn a_webhook_post_re_sent_to_a_restarted_gateway_is_posted_once() {
    let rig = GatewayRig::start();
    let edge = edge_with_guild(&rig.gateway);
    let first = send_frame(
        "req-hook-restart",
        "exactly once, by hook",
        ids::GENERAL,
        None,
    );
    edge.send(&first);
    assert_eq!(edge.reply_to("req-hook-restart")["type"], "ack");
    assert_eq!(count(&rig, "POST", "/webhooks/"), 1);

    // The reply was lost with the gateway: the edge writes the command again.
    let gateway = restarted(&rig);
    let edge = edge_with_guild(&gateway);
    let mut again = first.clone();
    again["meta"]["attempt"] = json!(2);
    edge.send(&again);
    assert_eq!(edge.reply_to("req-hook-restart")["type"], "ack");
    assert_eq!(
        count(&rig, "GET", &format!("/channels/{}/messages", ids::GENERAL)),
        1,
        "the restarted gateway looked for its earlier post"
    );
    assert_eq!(
        count(&rig, "POST", "/webhooks/"),
        1,
        "and did not post again"
    );
    assert_eq!(posts_in(&rig, ids::GENERAL, "exactly once, by hook"), 1);

    // The same text in a new command (another requestId) is another message.
    edge.send(&send_frame(
        "req-hook-other",
        "exactly once, by hook",
        ids::GENERAL,
        None,
    ));
    assert_eq!(edge.reply_to("req-hook-other")["type"], "ack");
    assert_eq!(posts_in(&rig, ids::GENERAL, "exactly once, by hook"), 2);
    gateway.shutdown();
}

#[test]
fn a_re_send_that_never_ran_is_posted_after_the_check() {
    let rig = GatewayRig::start();
    let edge = edge_with_guild(&rig.gateway);
    // Written once before (lost on the way, say), now again with attempt 2.
    edge.send(&send_frame(
        "req-never-ran",
        "first time here",
        ids::RELEASE_THREAD,
        Some(2),
    ));
    assert_eq!(edge.reply_to("req-never-ran")["type"], "ack");
    assert_eq!(
        count(
            &rig,
            "GET",
            &format!("/channels/{}/messages", ids::RELEASE_THREAD)
        ),
        1,
        "a thread's own messages are read"
    );
    assert_eq!(posts_in(&rig, ids::RELEASE_THREAD, "first time here"), 1);
}

#[test]
fn a_re_send_to_the_same_gateway_is_answered_from_its_reply_cache() {
    let rig = GatewayRig::start();
    let edge = edge_with_guild(&rig.gateway);
    edge.send(&send_frame("req-cached", "cached once", ids::GENERAL, None));
    assert_eq!(edge.reply_to("req-cached")["type"], "ack");
    // After a reconnect: the same requestId, marked as a re-send.
    let edge = edge_with_guild(&rig.gateway);
    edge.send(&send_frame(
        "req-cached",
        "cached once",
        ids::GENERAL,
        Some(2),
    ));
    assert_eq!(edge.reply_to("req-cached")["type"], "ack");
    assert_eq!(count(&rig, "POST", "/webhooks/"), 1);
    assert_eq!(
        count(&rig, "GET", &format!("/channels/{}/messages", ids::GENERAL)),
        0,
        "the cache answered; nothing was read"
    );
    assert_eq!(posts_in(&rig, ids::GENERAL, "cached once"), 1);
}
