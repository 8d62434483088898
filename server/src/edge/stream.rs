//! `GET /api/stream` (CONTRACT.md §4): one Server-Sent Events stream per browser.
//!
//! The request's connection thread becomes the subscriber's writer: it takes the
//! socket ([`Request::into_stream`]) and writes each batch of events with one
//! `write_all`, no buffer in between (DESIGN.md "Threads"). The thread owns the
//! subscription: when the client goes away (a write fails, or the socket reads
//! end-of-stream while the stream is idle) or the hub drops it for falling
//! behind, the thread unsubscribes and ends, leaving no timer or listener behind.

use std::io::Write;
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::debug;
use relay_protocol::replay::ResetReason;
use relay_protocol::sse::encode_comment;
use relay_runtime::clock;
use relay_runtime::http_server::peer_closed;
use relay_runtime::hub::{Filter, Item};
use relay_runtime::live_queue::RecvTimeoutError;
use serde_json::json;

use super::authn::authenticate;
use super::http::{header, query_list, query_param, Reply, Request};
use super::link_sink::unsequenced;
use super::state::AppState;

/// Most values accepted in one `types=` or `channels=` list.
const MAX_FILTER_ITEMS: usize = 256;
/// How many queued events one write may batch.
const MAX_BATCH: usize = 256;
/// How often an idle stream looks whether its client has gone (a non-blocking
/// peek, one syscall), so the subscription ends without waiting for a heartbeat.
const CLOSE_CHECK: Duration = Duration::from_secs(1);

/// Serves a stream request on its connection thread, until the stream ends;
/// answers 401 itself.
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
    let key = sub.key;
    let result = write_stream(state, req, sub);
    state.hub.unsubscribe(key);
    drop(gauge);
    debug!(
        "stream of {} ended: {result:?}",
        relay_protocol::sanitize::sanitize(&session.sub, 64)
    );
}

#[derive(Debug)]
enum End {
    ClientGone,
    TooSlow,
}

fn write_stream(
    state: &AppState,
    req: Request,
    sub: relay_runtime::hub::Subscription,
) -> Result<(), End> {
    let mut buf = Vec::with_capacity(4096);
    buf.extend_from_slice(b"retry: 2000\n\n");
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
    // The head and everything due before the live events leave in one write.
    let head = Reply::new(200)
        .header("Content-Type", "text/event-stream")
        .header("Cache-Control", "no-cache, no-transform")
        .header("X-Accel-Buffering", "no")
        .body(buf);
    let started = Instant::now();
    let mut out = req.into_stream(head).map_err(|_| End::ClientGone)?;
    state.metrics.observe_sse_flush(started.elapsed());
    let mut buf = Vec::with_capacity(4096);

    let heartbeat = state.settings.heartbeat;
    let mut last_write = Instant::now();
    let mut batch: Vec<Item> = Vec::with_capacity(MAX_BATCH);
    loop {
        let until_ping = heartbeat.saturating_sub(last_write.elapsed());
        match sub.live.recv_timeout(until_ping.min(CLOSE_CHECK)) {
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
                flush(state, &mut out, &buf, &batch)?;
                last_write = Instant::now();
            }
            Err(RecvTimeoutError::Timeout) if last_write.elapsed() >= heartbeat => {
                buf.clear();
                encode_comment(&mut buf, "ping");
                flush(state, &mut out, &buf, &[])?;
                last_write = Instant::now();
            }
            Err(RecvTimeoutError::Timeout) => {
                if peer_closed(&out) {
                    return Err(End::ClientGone);
                }
            }
            // The hub dropped us for falling behind: end so the browser resumes
            // from the replay ring with Last-Event-ID.
            Err(RecvTimeoutError::Disconnected) => return Err(End::TooSlow),
        }
    }
}

fn flush(
    state: &AppState,
    out: &mut TcpStream,
    bytes: &[u8],
    delivered: &[Item],
) -> Result<(), End> {
    let started = Instant::now();
    out.write_all(bytes).map_err(|_| End::ClientGone)?;
    let done = Instant::now();
    state.metrics.observe_sse_flush(done - started);
    for d in delivered {
        state.metrics.observe_delivery(done - d.received_at);
    }
    Ok(())
}
