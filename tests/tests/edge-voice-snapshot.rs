//! `voice.snapshot` comes from the gateway's `ready` and follows `voice.joined` /
//! `voice.left`, so a browser arriving late sees who is in voice now.

use std::collections::BTreeMap;
use std::time::Duration;

use relay_protocol::payload::{EventBody, VoiceLeft, VoiceMember, VoiceSnapshot};
use relay_tests::harness::Harness;
use serde_json::Value;

const T: Duration = Duration::from_secs(5);

fn snapshot_of(h: &Harness) -> Value {
    let token = h.token("42", &[]);
    let mut s = h.stream(&format!("access_token={token}"), &[]);
    let ev = s.wait_for("voice.snapshot", T).unwrap();
    serde_json::from_str::<Value>(&ev.data).unwrap()["data"].clone()
}

#[test]
fn snapshot_tracks_ready_and_voice_events() {
    let gateway = relay_tests::test_gateway::TestGateway::start(relay_tests::harness::LINK_TOKEN);
    let mut channels = BTreeMap::new();
    channels.insert(
        "500".to_string(),
        vec![
            VoiceMember {
                guild_id: "1".into(),
                user_id: "7".into(),
                username: "ada".into(),
                avatar: None,
            },
            VoiceMember {
                guild_id: "1".into(),
                user_id: "8".into(),
                username: "ken".into(),
                avatar: None,
            },
        ],
    );
    gateway.set_ready_voice(VoiceSnapshot { channels });
    let h = Harness::start_on(gateway, |_| {});

    // The ready frame may land just after the first subscriber: wait for it.
    let deadline = std::time::Instant::now() + T;
    let mut snap = snapshot_of(&h);
    while snap["channels"]["500"].as_array().map_or(0, Vec::len) != 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "snapshot from ready: {snap}"
        );
        snap = snapshot_of(&h);
    }
    assert_eq!(snap["channels"]["500"][0]["username"], "ada");

    // A late subscriber sees the leave applied.
    let token = h.token("42", &[]);
    let mut live = h.stream(&format!("access_token={token}&types=voice.left"), &[]);
    live.wait_for("voice.snapshot", T).unwrap();
    h.gateway.send_event(EventBody::VoiceLeft(VoiceLeft {
        guild_id: "1".into(),
        channel_id: Some("500".into()),
        user_id: "7".into(),
    }));
    live.wait_for("voice.left", T).unwrap();
    let snap = snapshot_of(&h);
    let members = snap["channels"]["500"].as_array().unwrap();
    assert_eq!(members.len(), 1);
    assert_eq!(members[0]["userId"], "8");
}
