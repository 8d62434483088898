//! `GET /api/stream` (CONTRACT.md §4): one Server-Sent Events stream per browser.
//!
//! Each subscriber gets its own thread that writes and flushes every event itself
//! (tiny_http's streaming responses would buffer ~32 KiB first, DESIGN.md
//! "Threads"). The thread owns the subscription: when the client goes away (a
//! write fails) or the hub drops it for falling behind, the thread unsubscribes
//! and ends, leaving no timer or listener behind.

use std::io::Write;
use std::sync::Arc;
use std::thread;
use std::time::Instant;

use crossbeam_channel::RecvTimeoutError;
use log::{debug, info};
use relay_protocol::replay::ResetReason;
use relay_protocol::sse::encode_comment;
use relay_runtime::clock;
use relay_runtime::hub::{Filter, Item};
use serde_json::json;
use tiny_http::Request;

use super::authn::authenticate;
use super::http::{header, query_list, query_param};
use super::link_sink::unsequenced;
use super::sockets;
use super::state::AppState;

/// Most values accepted in one `types=` or `channels=` list.
const MAX_FILTER_ITEMS: usize = 256;
/// How many queued events one write may batch.
const MAX_BATCH: usize = 256;
/// Small stacks: a subscriber thread only copies bytes to a socket.
const SUBSCRIBER_STACK: usize = 64 * 1024;

/// Serves a stream request; answers 401 itself or hands the socket to a new thread.
pub fn serve(state: &Arc<AppState>, req: Request, query: &str) {
    let session = match authenticate(state, &req, query) {
        Ok(s) => s,
        Err(reply) => {
            let _ = req.respond(reply);
            return;
        }
    };
    let filter = Filter {
        types: query_list(query, "types", MAX_FILTER_ITEMS).map(|v| v.into_iter().collect()),
        channels: query_list(query, "channels", MAX_FILTER_ITEMS).map(|v| v.into_iter().collect()),
    };
    let last_event_id = header(&req, "Last-Event-ID")
        .map(str::to_owned)
        .or_else(|| query_param(query, "lastEventId").map(|v| v.into_owned()))
        .filter(|id| !id.is_empty());

    let sub = state.hub.subscribe(filter, last_event_id.as_deref());
    let gauge = state.metrics.sse_client_connected();
    let state = state.clone();
    let user = session.sub;
    let peer = req.remote_addr().copied();
    let spawned = thread::Builder::new()
        .name("relay-sse".into())
        .stack_size(SUBSCRIBER_STACK)
        .spawn(move || {
            let key = sub.key;
            let mut writer = req.into_writer();
            let result = write_stream(&state, &mut *writer, sub);
            state.hub.unsubscribe(key);
            drop(writer);
            // tiny_http would keep the connection open for a next request, so a
            // client dropped for being slow would wait forever for data that
            // never comes instead of resuming with Last-Event-ID.
            if let Some(peer) = peer {
                if !sockets::shutdown(state.local_addr, peer) {
                    debug!("stream of {peer}: socket not found to close");
                }
            }
            drop(gauge);
            debug!(
                "stream of {} ended: {result:?}",
                relay_protocol::sanitize::sanitize(&user, 64)
            );
        });
    if let Err(e) = spawned {
        info!("cannot start a stream thread: {e}");
    }
}

#[derive(Debug)]
enum End {
    ClientGone,
    TooSlow,
}

fn write_stream(
    state: &AppState,
    out: &mut dyn Write,
    sub: relay_runtime::hub::Subscription,
) -> Result<(), End> {
    let mut buf = Vec::with_capacity(4096);
    buf.extend_from_slice(
        b"HTTP/1.1 200 OK\r\n\
          Content-Type: text/event-stream\r\n\
          Cache-Control: no-cache, no-transform\r\n\
          X-Accel-Buffering: no\r\n\
          Connection: close\r\n\r\n\
          retry: 2000\n\n",
    );
    match &sub.replay {
        Ok(events) => events.iter().for_each(|d| buf.extend_from_slice(&d.bytes)),
        Err(reason) => {
            let reason = match reason {
                ResetReason::Gap => "gap",
                ResetReason::Epoch => "epoch",
            };
            let reset = unsequenced(
                "stream.reset",
                &json!({ "reason": reason }),
                &clock::new_trace_id(),
            );
            buf.extend_from_slice(&reset.bytes);
        }
    }
    for item in &sub.state {
        buf.extend_from_slice(&item.bytes);
    }
    flush(state, out, &buf, &[])?;

    let heartbeat = state.settings.heartbeat;
    let mut batch: Vec<Item> = Vec::with_capacity(MAX_BATCH);
    loop {
        match sub.live.recv_timeout(heartbeat) {
            Ok(first) => {
                batch.clear();
                batch.push(first);
                // Whatever else is already queued goes out in the same write.
                while batch.len() < MAX_BATCH {
                    match sub.live.try_recv() {
                        Ok(more) => batch.push(more),
                        Err(_) => break,
                    }
                }
                buf.clear();
                for d in &batch {
                    buf.extend_from_slice(&d.bytes);
                }
                flush(state, out, &buf, &batch)?;
            }
            Err(RecvTimeoutError::Timeout) => {
                buf.clear();
                encode_comment(&mut buf, "ping");
                flush(state, out, &buf, &[])?;
            }
            // The hub dropped us for falling behind: end so the browser resumes
            // from the replay ring with Last-Event-ID.
            Err(RecvTimeoutError::Disconnected) => return Err(End::TooSlow),
        }
    }
}

fn flush(
    state: &AppState,
    out: &mut dyn Write,
    bytes: &[u8],
    delivered: &[Item],
) -> Result<(), End> {
    let started = Instant::now();
    out.write_all(bytes)
        .and_then(|()| out.flush())
        .map_err(|_| End::ClientGone)?;
    let done = Instant::now();
    state.metrics.observe_sse_flush(done - started);
    for d in delivered {
        state.metrics.observe_delivery(done - d.received_at);
    }
    Ok(())
}
