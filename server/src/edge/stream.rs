//! `GET /api/stream` (CONTRACT.md §4): one Server-Sent Events stream per browser.
//!
//! The request's connection thread authenticates, subscribes and builds the
//! preamble (HTTP head, `retry:`, replay or `stream.reset`, state items), then
//! hands the socket, the preamble and the subscription's queue to the edge's
//! [`SsePool`](relay_runtime::sse_pool::SsePool) and returns: a few writer
//! threads serve every stream (DESIGN.md "Threads"). When the client goes away,
//! falls behind, or the edge shuts down, the pool closes the socket and the
//! stream's `on_end` unsubscribes it, leaving no thread, timer or listener behind.

use std::sync::Arc;
use std::time::Duration;

use log::debug;
use relay_protocol::replay::ResetReason;
use relay_runtime::clock;
use relay_runtime::hub::Item;
use relay_runtime::sse_pool::{End, OnEnd, PoolObserver};
use serde_json::json;

use super::authn::authenticate;
use super::http::{header, Reply, Request};
use super::link_sink::unsequenced;
use super::state::AppState;
use super::stream_params::StreamParams;
use crate::metrics::Metrics;

/// How many queued events one write may batch.
pub(super) const MAX_BATCH: usize = 256;
/// A subscriber whose unwritten bytes pass this is dropped as too slow.
pub(super) const MAX_PENDING_BYTES: usize = 1 << 20;

/// The pool's reports, as metrics.
pub(super) struct StreamMetrics(pub Arc<Metrics>);

impl PoolObserver for StreamMetrics {
    fn delivered(&self, latency: Duration) {
        self.0.observe_delivery(latency);
    }
    fn flushed(&self, took: Duration) {
        self.0.observe_sse_flush(took);
    }
}

/// Serves a stream request: subscribes, then hands the socket to the writer
/// pool and returns; answers 401 itself.
/// `cors`: the headers `ALLOWED_ORIGINS` adds for this request's origin.
pub fn serve(state: &Arc<AppState>, req: Request, query: &str, cors: &[(&'static str, String)]) {
    let with_cors = |reply: Reply| {
        cors.iter()
            .fold(reply, |reply, (name, value)| reply.header(name, value))
    };
    let session = match authenticate(state, &req, query) {
        Ok(s) => s,
        Err(reply) => {
            let _ = req.respond(with_cors(reply));
            return;
        }
    };
    let params = StreamParams::parse(query, header(&req, "Last-Event-ID"));
    let last_event_id = params.last_event_id.as_deref();
    // With ACCESS=discord the stream sees what its member may view, and learns
    // what that is from `access` events after the state items.
    let (sub, access_items) = match &state.access {
        Some(access) => access.subscribe(&session.sub, params.filter, last_event_id),
        None => (
            state.hub.subscribe(params.filter, last_event_id),
            Vec::new(),
        ),
    };
    let gauge = state.metrics.sse_client_connected();
    let key = sub.key;
    let hub = state.hub.clone();
    let access = state.access.clone();
    let who = relay_protocol::sanitize::sanitize(&session.sub, 64).into_owned();
    let on_end: OnEnd = Box::new(move |end: End| {
        match end {
            // Counted as dropped, unless the hub already dropped it (full queue).
            End::TooSlow => hub.drop_slow(key),
            End::ClientGone | End::Shutdown => hub.unsubscribe(key),
        }
        if let Some(access) = &access {
            access.unsubscribe(key);
        }
        drop(gauge);
        debug!("stream of {who} ended: {end:?}");
    });
    let preamble = preamble(&sub, &access_items);
    // The head and everything due before the live events leave in one write.
    let head = with_cors(Reply::new(200))
        .header("Content-Type", "text/event-stream")
        .header("Cache-Control", "no-cache, no-transform")
        .header("X-Accel-Buffering", "no")
        .body(preamble);
    match req.into_stream_unsent(head) {
        Ok((socket, bytes)) => state.streams.attach(socket, bytes, sub.live, on_end),
        Err(_) => on_end(End::ClientGone),
    }
}

/// `retry:`, then the replayed events or `stream.reset`, then the state items,
/// then (`ACCESS=discord`) the `access` events.
fn preamble(sub: &relay_runtime::hub::Subscription, access: &[Item]) -> Vec<u8> {
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
    for item in sub.state.iter().chain(access) {
        buf.extend_from_slice(&item.bytes);
    }
    buf
}
