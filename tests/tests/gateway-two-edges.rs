//! Several edges at once: each gets every event, the same frame.

use relay_tests::discord::ids;
use relay_tests::gateway_rig::GatewayRig;
use std::time::Duration;

#[test]
fn two_edges_both_get_every_event() {
    let rig = GatewayRig::start();
    let a = rig.edge();
    let b = rig.edge();
    assert!(rig.gateway.wait_for_edges(2, Duration::from_secs(2)));

    rig.sim
        .post_as(ids::KEN, ids::GAME_ROOM, "to everyone")
        .unwrap();
    let fa = a.next_type("messageCreate");
    let fb = b.next_type("messageCreate");
    assert_eq!(fa, fb, "one encoding, shared by every edge");
    assert_eq!(fa["data"]["content"], "to everyone");

    // Linus and Grace sit in Lobby from the start: if GUILD_CREATE lands after
    // the edges linked up, they arrive as joins too, so look for Ken's.
    let kens_join =
        |f: &serde_json::Value| f["type"] == "voice.joined" && f["data"]["userId"] == ids::KEN;
    rig.sim.voice_join(ids::KEN, ids::LOBBY);
    let ja = a.next("Ken's join", kens_join);
    let jb = b.next("Ken's join", kens_join);
    assert_eq!(ja, jb, "one encoding, shared by every edge");
    assert_eq!(ja["data"]["channelId"], ids::LOBBY);
}
