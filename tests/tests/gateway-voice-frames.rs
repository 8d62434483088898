//! Real-shaped VOICE_STATE_UPDATEs become `voice.joined` / `voice.left` frames: a
//! move is a leave then a join, and the `ready` snapshot of an edge connecting
//! later agrees with the events.

use relay_tests::discord::ids;
use relay_tests::gateway_rig::GatewayRig;

#[test]
fn join_move_leave_become_voice_frames() {
    let rig = GatewayRig::start();
    let edge = rig.edge();

    // Linus and Grace sit in Lobby from the start (GUILD_CREATE's voice_states);
    // whether they reach this edge as `ready` or as joins depends on timing, so
    // only Ada's frames are looked at.
    let ada = |f: &serde_json::Value| f["data"]["userId"] == ids::ADA;
    assert!(rig.sim.voice_join(ids::ADA, ids::LOBBY));
    let joined = edge.next("Ada's join", |f| f["type"] == "voice.joined" && ada(f));
    assert_eq!(joined["data"]["guildId"], ids::GUILD);
    assert_eq!(joined["data"]["channelId"], ids::LOBBY);
    assert_eq!(joined["data"]["userId"], ids::ADA);
    assert!(joined["data"]["username"]
        .as_str()
        .is_some_and(|n| !n.is_empty()));
    assert!(joined["data"].get("avatar").is_some());

    // Move: left the old channel, then joined the new one, in that order.
    assert!(rig.sim.voice_join(ids::ADA, ids::RAID));
    let left = edge.next("Ada's next voice frame", |f| {
        f["type"].as_str().is_some_and(|t| t.starts_with("voice.")) && ada(f)
    });
    assert_eq!(left["type"], "voice.left");
    assert_eq!(left["data"]["channelId"], ids::LOBBY);
    assert_eq!(left["data"]["userId"], ids::ADA);
    let joined = edge.next("Ada's join", |f| f["type"] == "voice.joined" && ada(f));
    assert_eq!(joined["data"]["channelId"], ids::RAID);

    // A new edge's snapshot shows the state the events built.
    let late = relay_tests::gateway_rig::TestEdge::connect(
        &rig.gateway.link_url(),
        relay_tests::gateway_rig::LINK_TOKEN,
    )
    .unwrap();
    let ready = late.next_type("ready");
    let channels = &ready["data"]["voice"]["channels"];
    assert_eq!(channels[ids::RAID][0]["userId"], ids::ADA);
    assert_eq!(channels[ids::RAID][0]["guildId"], ids::GUILD);
    let lobby: Vec<&str> = channels[ids::LOBBY]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["userId"].as_str())
        .collect();
    assert_eq!(lobby, [ids::LINUS, ids::GRACE]);

    assert!(rig.sim.voice_leave(ids::ADA));
    let left = edge.next("Ada's leave", |f| f["type"] == "voice.left" && ada(f));
    assert_eq!(left["data"]["channelId"], ids::RAID);
    assert_eq!(left["data"]["guildId"], ids::GUILD);
    assert_eq!(late.next_type("voice.left")["data"]["userId"], ids::ADA);
    let snapshot = rig.gateway.voice_snapshot();
    assert!(!snapshot.channels.contains_key(ids::RAID));
    assert_eq!(snapshot.channels[ids::LOBBY].len(), 2);
}
