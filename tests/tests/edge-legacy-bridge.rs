//! The legacy `/api/ws` bridge (CONTRACT.md §7): 404 unless enabled; the old auth
//! handshake; voice events in the old envelope from the same bus; 1008 on bad auth.

use std::time::Duration;

use relay_protocol::payload::{EventBody, VoiceJoined, VoiceLeft};
use relay_tests::harness::Harness;
use serde_json::{json, Value};
use tungstenite::Message;

fn read_json(
    ws: &mut tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<std::net::TcpStream>>,
) -> Value {
    loop {
        match ws.read().expect("a frame") {
            Message::Text(t) => return serde_json::from_str(t.as_str()).unwrap(),
            Message::Close(c) => return json!({"closed": c.map(|c| u16::from(c.code))}),
            _ => continue,
        }
    }
}

#[test]
fn bridge_is_404_when_disabled() {
    let h = Harness::start();
    assert_eq!(h.get("/api/ws").status, 404);
}

#[test]
fn old_clients_authenticate_and_get_old_envelopes() {
    let h = Harness::start_with(|s| s.enable_ws_bridge = true);
    let token = h.token("42", &[]);
    let (mut ws, _) = tungstenite::connect(format!("ws://{}/api/ws", h.addr)).expect("upgrade");
    if let tungstenite::stream::MaybeTlsStream::Plain(s) = ws.get_ref() {
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    }
    ws.send(Message::text(
        json!({"v": 1, "type": "auth", "token": token}).to_string(),
    ))
    .unwrap();
    let ack = read_json(&mut ws);
    assert_eq!(ack["type"], "ack");
    assert_eq!(ack["event"], "auth.ok");
    assert!(ack["ts"].is_u64());

    // The subscription is registered right after the ack; give the hub a voice event.
    h.gateway.send_event(EventBody::VoiceJoined(VoiceJoined {
        guild_id: "1".into(),
        channel_id: "500".into(),
        user_id: "7".into(),
        username: "ada".into(),
        avatar: None,
    }));
    h.gateway.send_event(EventBody::VoiceLeft(VoiceLeft {
        guild_id: "1".into(),
        channel_id: Some("500".into()),
        user_id: "7".into(),
    }));
    let joined = read_json(&mut ws);
    assert_eq!(joined["v"], 1);
    assert_eq!(joined["type"], "event");
    assert_eq!(joined["event"], "voice.joined");
    assert_eq!(joined["payload"]["userId"], "7");
    let left = read_json(&mut ws);
    assert_eq!(left["event"], "voice.left");
    assert_eq!(
        left["payload"],
        json!({"guildId": "1", "channelId": null, "userId": "7"}),
        "the old payload"
    );
}

#[test]
fn a_bad_token_is_closed_with_1008() {
    let h = Harness::start_with(|s| s.enable_ws_bridge = true);
    let (mut ws, _) = tungstenite::connect(format!("ws://{}/api/ws", h.addr)).expect("upgrade");
    ws.send(Message::text(
        json!({"v": 1, "type": "auth", "token": "nope"}).to_string(),
    ))
    .unwrap();
    let err = read_json(&mut ws);
    assert_eq!(err["type"], "error");
    assert_eq!(err["error"]["code"], "unauthenticated");
    assert_eq!(read_json(&mut ws)["closed"], 1008);
}

#[test]
fn a_silent_client_is_closed_with_1008_after_the_auth_timeout() {
    let h = Harness::start_with(|s| s.enable_ws_bridge = true);
    let (mut ws, _) = tungstenite::connect(format!("ws://{}/api/ws", h.addr)).expect("upgrade");
    if let tungstenite::stream::MaybeTlsStream::Plain(s) = ws.get_ref() {
        s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    }
    let started = std::time::Instant::now();
    // Send nothing: the edge must give up after 10 s (CONTRACT.md §7).
    assert_eq!(read_json(&mut ws)["closed"], 1008);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(9) && waited < Duration::from_secs(14),
        "{waited:?}"
    );
}
