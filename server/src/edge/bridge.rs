//! The legacy `/api/ws` bridge (CONTRACT.md §7), only with `ENABLE_WS_BRIDGE`.
//!
//! Old `useVoiceChannelEvents` clients keep working while they migrate to SSE: the
//! bridge is one more hub subscriber (no second link, no second copy of the event
//! logic) that re-wraps voice and error events in the old envelopes.
//!
//! Protocol: the client sends `{"v":1,"type":"auth","token":…}` within 10 s (else
//! close 1008), gets `{"v":1,"type":"ack","event":"auth.ok",…}`, then receives
//! `{"v":1,"type":"event","event":"voice.joined"|"voice.left",…}` and
//! `{"v":1,"type":"error",…}`. A client that falls more than 1 MiB behind (or
//! overflows its hub buffer) is closed with 1008.

use std::collections::VecDeque;
use std::io::ErrorKind;
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{debug, info};
use relay_runtime::clock;
use relay_runtime::hub::{Filter, Item};
use relay_runtime::live_queue::RecvTimeoutError;
use serde_json::{json, Value};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::{CloseFrame, Role};
use tungstenite::{Message, WebSocket};

use super::http::{error_reply, Request};
use super::state::AppState;

/// How long a client has to authenticate.
const AUTH_TIMEOUT: Duration = Duration::from_secs(10);
/// Unsent bytes past which a client is closed.
const MAX_UNSENT: usize = 1024 * 1024;

type Stream = TcpStream;

/// Upgrades the request and serves the bridge on its connection thread.
pub fn serve(state: &Arc<AppState>, req: Request) {
    if let Some(problem) = req.websocket_upgrade_error() {
        debug!("bridge: not an upgrade: {problem}");
        let _ = req.respond(error_reply(
            400,
            "invalid_request",
            "expected a WebSocket upgrade",
        ));
        return;
    }
    let stream = match req.upgrade_websocket() {
        Ok(stream) => stream,
        Err(e) => {
            debug!("bridge: upgrade failed: {e}");
            return;
        }
    };
    let config = relay_runtime::ws_io::ws_config().max_message_size(Some(64 * 1024));
    let mut ws = WebSocket::from_raw_socket(stream, Role::Server, Some(config));
    let outcome = run(state, &mut ws);
    debug!("bridge client ended: {outcome}");
}

fn run(state: &AppState, ws: &mut WebSocket<Stream>) -> &'static str {
    let deadline = Instant::now() + AUTH_TIMEOUT;
    // Each read waits only until the deadline, so a silent client and one that
    // trickles frames are both closed on time.
    let token = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || ws.get_ref().set_read_timeout(Some(left)).is_err() {
            close(ws, CloseCode::Policy, "authentication timeout");
            return "auth timeout";
        }
        match ws.read() {
            Ok(Message::Text(text)) => match serde_json::from_str::<Value>(text.as_str()) {
                Ok(v) if v["v"] == 1 && v["type"] == "auth" && v["token"].is_string() => {
                    break v["token"].as_str().unwrap_or_default().to_owned();
                }
                _ => {
                    send_error(
                        ws,
                        "invalid_request",
                        "expected {\"v\":1,\"type\":\"auth\",\"token\":…}",
                    );
                    close(ws, CloseCode::Policy, "authentication required");
                    return "bad handshake";
                }
            },
            Ok(Message::Close(_)) => return "closed before auth",
            Ok(_) => continue,
            Err(tungstenite::Error::Io(e))
                if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) =>
            {
                close(ws, CloseCode::Policy, "authentication timeout");
                return "auth timeout";
            }
            Err(_) => return "socket error before auth",
        }
    };
    let session = match state.keys.verify(&token, clock::unix_secs()) {
        Ok(s) => s,
        Err(e) => {
            send_error(ws, "unauthenticated", &e.to_string());
            close(ws, CloseCode::Policy, "unauthenticated");
            return "unauthenticated";
        }
    };
    // Subscribe before acknowledging: a client that reacts to `auth.ok` must not
    // miss an event published in between.
    let filter = Filter {
        types: Some(
            ["voice.joined", "voice.left", "error"]
                .map(String::from)
                .into(),
        ),
        channels: None,
    };
    let sub = state.hub.subscribe(filter, None);
    let ack = json!({"v": 1, "type": "ack", "event": "auth.ok",
        "payload": {"userId": session.sub, "name": session.name}, "ts": clock::unix_ms()});
    let outcome = if ws.send(Message::text(ack.to_string())).is_err() {
        "client gone"
    } else {
        info!("legacy bridge client authenticated");
        pump(state, ws, &sub.live)
    };
    state.hub.unsubscribe(sub.key);
    outcome
}

fn pump(
    state: &AppState,
    ws: &mut WebSocket<Stream>,
    live: &relay_runtime::live_queue::Consumer<Item>,
) -> &'static str {
    let mut unsent: VecDeque<String> = VecDeque::new();
    let mut unsent_bytes = 0usize;
    loop {
        let first = match live.recv_timeout(state.settings.heartbeat) {
            Ok(item) => Some(item),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => {
                close(ws, CloseCode::Policy, "client too slow");
                return "dropped as slow";
            }
        };
        if first.is_none() && ws.send(Message::Ping(Vec::new().into())).is_err() {
            return "client gone";
        }
        for item in first.into_iter().chain(live.try_iter()) {
            if let Some(text) = legacy_envelope(&item) {
                unsent_bytes += text.len();
                unsent.push_back(text);
            }
        }
        if unsent_bytes > MAX_UNSENT {
            close(ws, CloseCode::Policy, "more than 1 MiB unsent");
            return "too much unsent";
        }
        while let Some(text) = unsent.pop_front() {
            unsent_bytes -= text.len();
            if ws.send(Message::text(text)).is_err() {
                return "client gone";
            }
        }
    }
}

/// Re-wraps an SSE event in the old bridge envelope.
fn legacy_envelope(item: &Item) -> Option<String> {
    let envelope: Value = serde_json::from_str(&item.json).ok()?;
    let data = &envelope["data"];
    let ts = clock::unix_ms();
    let msg = match &*item.event_type {
        "voice.joined" => {
            json!({"v": 1, "type": "event", "event": "voice.joined", "payload": data, "ts": ts})
        }
        // The old payload never named the channel left.
        "voice.left" => json!({"v": 1, "type": "event", "event": "voice.left",
            "payload": {"guildId": data["guildId"], "channelId": null, "userId": data["userId"]}, "ts": ts}),
        "error" => json!({"v": 1, "type": "error", "error": data, "ts": ts}),
        _ => return None,
    };
    Some(msg.to_string())
}

fn send_error(ws: &mut WebSocket<Stream>, code: &str, message: &str) {
    let msg = json!({"v": 1, "type": "error", "error": {"code": code, "message": message}, "ts": clock::unix_ms()});
    let _ = ws.send(Message::text(msg.to_string()));
}

fn close(ws: &mut WebSocket<Stream>, code: CloseCode, reason: &str) {
    let _ = ws.close(Some(CloseFrame {
        code,
        reason: reason.to_owned().into(),
    }));
    let _ = ws.flush();
}
