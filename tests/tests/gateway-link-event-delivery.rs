//! End to end: the gateway identifies, gets READY, and a Discord MESSAGE_CREATE
//! reaches an edge on the link as a `messageCreate` frame (CONTRACT.md §5); a
//! wrong link token is refused with 401 before any upgrade.

use relay_runtime::ws_io::ConnectError;
use relay_tests::discord::ids;
use relay_tests::gateway_rig::{GatewayRig, TestEdge};

#[test]
fn a_discord_message_arrives_at_an_edge_as_a_link_event() {
    let rig = GatewayRig::start();
    assert_eq!(rig.sim.identify_count(), 1);
    let edge = rig.edge();

    let id = rig
        .sim
        .post_as(ids::GRACE, ids::GENERAL, "hi <edge>")
        .unwrap();
    let frame = edge.next_type("messageCreate");
    assert_eq!(frame["version"], "1.0");
    let data = &frame["data"];
    assert_eq!(data["id"], id.as_str());
    assert_eq!(data["channelId"], ids::GENERAL);
    assert_eq!(data["guildId"], ids::GUILD);
    assert_eq!(data["author"]["id"], ids::GRACE);
    assert_eq!(data["author"]["bot"], false);
    assert_eq!(data["content"], "hi <edge>");
    let meta = &frame["meta"];
    assert!(meta["traceId"].as_str().is_some_and(|t| !t.is_empty()));
    let sent_at = meta["sentAt"].as_str().unwrap();
    assert!(sent_at.ends_with('Z') && sent_at.len() == 24, "{sent_at}");
    assert!(meta.get("requestId").is_none());
}

#[test]
fn a_wrong_link_token_gets_401() {
    let rig = GatewayRig::start();
    let refused = TestEdge::connect(&rig.gateway.link_url(), "not-the-link-token");
    assert!(matches!(refused, Err(ConnectError::Unauthorized)));
    assert_eq!(rig.gateway.link_stats().edges, 0);
}
