//! A command re-sent after a link reconnect carries the same requestId: the
//! gateway runs it once and repeats the first reply (CONTRACT.md §5).

use relay_tests::discord::{command_json, ids};
use relay_tests::gateway_rig::GatewayRig;
use serde_json::json;
use std::time::Duration;

#[test]
fn the_same_request_id_after_a_reconnect_runs_once() {
    let rig = GatewayRig::start();
    let frame = command_json(
        "sendMessage",
        json!({"channelId": ids::GENERAL, "content": "exactly once"}),
        "req-once",
        "user-7",
    );
    let first_edge = rig.edge();
    first_edge.send(&frame);
    let first = first_edge.reply_to("req-once");
    assert_eq!(first["type"], "ack");

    rig.gateway.kick_edges();
    assert!(rig.gateway.wait_for_edges(0, Duration::from_secs(2)));
    let second_edge = rig.edge();
    second_edge.send(&frame);
    let second = second_edge.reply_to("req-once");
    assert_eq!(second["type"], first["type"]);
    assert_eq!(second["data"], first["data"]);
    assert_eq!(second["meta"]["requestId"], "req-once");

    let posts = rig
        .sim
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/messages"))
        .count();
    assert_eq!(posts, 1, "one REST call for two sends");
    assert_eq!(rig.gateway.link_stats().deduplicated, 1);
}
