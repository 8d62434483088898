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

    rig.sim.voice_join(ids::KEN, ids::LOBBY);
    assert_eq!(a.next_type("voice.joined")["data"]["userId"], ids::KEN);
    assert_eq!(b.next_type("voice.joined")["data"]["userId"], ids::KEN);
}
