//! `types=` and `channels=` filters; state items always pass.

use std::time::Duration;

use relay_protocol::payload::{EventBody, VoiceJoined};
use relay_tests::harness::Harness;
use relay_tests::test_gateway::message;

const T: Duration = Duration::from_secs(5);

fn joined(channel: &str) -> EventBody {
    EventBody::VoiceJoined(VoiceJoined {
        guild_id: "1".into(),
        channel_id: channel.into(),
        user_id: "5".into(),
        username: "ada".into(),
        avatar: None,
    })
}

#[test]
fn filters_combine_and_state_items_always_pass() {
    let h = Harness::start();
    let token = h.token("42", &[]);
    let mut both = h.stream(
        &format!("access_token={token}&types=voice.joined&channels=20,21"),
        &[],
    );
    let mut types_only = h.stream(&format!("access_token={token}&types=messageCreate"), &[]);
    assert_eq!(both.next_event(T).unwrap().event, "gateway.status");
    assert_eq!(both.next_event(T).unwrap().event, "voice.snapshot");
    types_only.wait_for("voice.snapshot", T).unwrap();

    h.gateway.send_event(message("1", "20", "wrong type"));
    h.gateway.send_event(joined("99"));
    h.gateway.send_event(joined("21"));
    h.gateway.send_event(message("2", "30", "any channel"));

    let ev = both.next_live(T).unwrap();
    assert_eq!(ev.event, "voice.joined");
    assert!(ev.data.contains("\"channelId\":\"21\""), "{}", ev.data);
    let ev = types_only.next_live(T).unwrap();
    assert!(ev.data.contains("wrong type"));
    let ev = types_only.next_live(T).unwrap();
    assert!(ev.data.contains("any channel"));

    // The link going down is announced whatever the filters.
    h.gateway.set_accepting(false);
    h.gateway.drop_connections();
    let down = std::iter::from_fn(|| both.wait_for("gateway.status", T))
        .find(|ev| ev.data.contains("\"connected\":false"));
    assert!(down.is_some(), "link-down status reaches a filtered stream");
}
