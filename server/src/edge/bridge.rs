//! The legacy `/api/ws` bridge (CONTRACT.md §7), only with `ENABLE_WS_BRIDGE`.
//!
//! Old `useVoiceChannelEvents` clients keep working while they migrate to SSE: the
//! bridge is one more hub subscriber (no second link, no second copy of the event
//! logic) that re-wraps voice and error events in the old envelopes. What goes on
//! the wire is [`relay_protocol::legacy`]'s; this file owns the socket: the auth
//! deadline, the subscription, and closing with 1008 a client that falls more
//! than 1 MiB behind (or overflows its hub buffer).

use std::collections::VecDeque;
use std::io::ErrorKind;
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Instant;

use log::{debug, info};
use relay_protocol::legacy;
use relay_runtime::clock;
use relay_runtime::hub::{Filter, Item};
use relay_runtime::live_queue::RecvTimeoutError;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::{CloseFrame, Role};
use tungstenite::{Message, WebSocket};

use super::http::{error_reply, Request};
use super::state::AppState;

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
    let deadline = Instant::now() + legacy::AUTH_TIMEOUT;
    // Each read waits only until the deadline, so a silent client and one that
    // trickles frames are both closed on time.
    let token = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || ws.get_ref().set_read_timeout(Some(left)).is_err() {
            close(ws, CloseCode::Policy, "authentication timeout");
            return "auth timeout";
        }
        match ws.read() {
            Ok(Message::Text(text)) => match legacy::parse_auth(text.as_str()) {
                Ok(token) => break token,
                Err(e) => {
                    send_error(ws, "invalid_request", &e.to_string());
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
        types: Some(legacy::EVENT_TYPES.map(String::from).into()),
        channels: None,
    };
    // ACCESS=discord: voice events of channels the member may view only (§8).
    let sub = match &state.access {
        Some(access) => access.subscribe(&session.sub, filter, None).0,
        None => state.hub.subscribe(filter, None),
    };
    let ack = legacy::auth_ok(&session.sub, session.name.as_deref(), clock::unix_ms());
    let outcome = if ws.send(Message::text(ack)).is_err() {
        "client gone"
    } else {
        info!("legacy bridge client authenticated");
        pump(state, ws, &sub.live)
    };
    state.hub.unsubscribe(sub.key);
    if let Some(access) = &state.access {
        access.unsubscribe(sub.key);
    }
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
            if let Some(text) = legacy::envelope(&item.event_type, &item.json, clock::unix_ms()) {
                unsent_bytes += text.len();
                unsent.push_back(text);
            }
        }
        if unsent_bytes > legacy::MAX_UNSENT {
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

fn send_error(ws: &mut WebSocket<Stream>, code: &str, message: &str) {
    let _ = ws.send(Message::text(legacy::error_frame(
        code,
        message,
        clock::unix_ms(),
    )));
}

fn close(ws: &mut WebSocket<Stream>, code: CloseCode, reason: &str) {
    let _ = ws.close(Some(CloseFrame {
        code,
        reason: reason.to_owned().into(),
    }));
    let _ = ws.flush();
}
