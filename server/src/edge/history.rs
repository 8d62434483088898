//! `GET /api/channels/{channelId}/messages` (CONTRACT.md §9): a channel's
//! recent messages, newest first, read through the gateway (which answers
//! from its window or from Discord).
//!
//! Checks, in order: 401 (session) → 400 (parameters, with `issues`) → 403
//! `missing_permission` (`ACCESS=discord`: `VIEW_CHANNEL`, then
//! `READ_MESSAGE_HISTORY`) → 429 (the user's read bucket, separate from the
//! command buckets) → 503 (the link is down: reads are not queued, a reply
//! after a reconnect would be stale and nobody would wait for it). Then the
//! gateway's reply: 200 `{"messages":[…]}`, 429 / 502 / 504 as commands.

use std::time::Duration;

use log::info;
use parking_lot::Mutex;
use relay_protocol::bucket::{Decision, KeyedLimiter, LimitConfig};
use relay_protocol::frame::{GatewayCommand, Reply as LinkReply, TraceMeta};
use relay_protocol::history_request::parse_history_request;
use relay_protocol::link_session::SubmitError;
use relay_protocol::payload::{CommandBody, EventBody};
use relay_protocol::queue::Outcome;
use relay_protocol::sanitize::sanitize_for_broadcast;
use relay_runtime::clock;
use serde_json::json;

use super::authn::authenticate;
use super::commands::{failure_reply, rate_limited};
use super::http::{error_reply, json_reply, Reply, Request};
use super::state::AppState;

/// Each user's read bucket: burst 20, 10 more per 5 s (CONTRACT.md §9).
pub const READ_LIMITS: LimitConfig = LimitConfig {
    burst: 20,
    refill: 10,
    window: Duration::from_secs(5),
};

/// A fresh set of read buckets (one per `sub`).
pub fn read_limiter() -> Mutex<KeyedLimiter> {
    // The constants are valid: burst, refill and window are all positive.
    Mutex::new(KeyedLimiter::new(READ_LIMITS).unwrap_or_else(|_| unreachable!()))
}

/// Serves one history read.
pub fn handle(state: &AppState, channel: &str, req: &Request, query: &str) -> Reply {
    let session = match authenticate(state, req, query) {
        Ok(s) => s,
        Err(reply) => return reply,
    };
    let kind = "fetchMessages";
    let q = match parse_history_request(channel, query) {
        Ok(q) => q,
        Err(invalid) => {
            state.metrics.command_rejected(kind, "invalid_request");
            return json_reply(
                400,
                &json!({
                    "error": { "code": "invalid_request", "message": invalid.message },
                    "issues": invalid.issues,
                }),
            );
        }
    };
    let command = CommandBody::FetchMessages(q.to_command());
    if let Some(access) = &state.access {
        let voice = state.voice.lock().clone();
        if let Err(missing) = access.check(&session.sub, &command, &voice) {
            state.metrics.command_rejected(kind, "missing_permission");
            return json_reply(
                403,
                &json!({
                    "error": {
                        "code": "missing_permission",
                        "message": missing.to_string(),
                        "permission": missing.permission,
                    }
                }),
            );
        }
    }
    if let Decision::Limited { retry_after, .. } = state.check_read_limit(&session.sub) {
        state.metrics.rate_limited("user");
        state.metrics.command_rejected(kind, "rate_limited");
        return rate_limited(
            retry_after.as_millis().max(1) as u64,
            "too many history reads (user limit)",
        );
    }

    let trace_id = clock::new_trace_id();
    let request_id = clock::new_request_id();
    let frame = GatewayCommand {
        body: command,
        meta: TraceMeta {
            trace_id: trace_id.clone(),
            sent_at: clock::now_rfc3339(),
            request_id: Some(request_id.clone()),
            actor: Some(session.sub.clone()),
            access: state.access.as_ref().map(|_| "discord".to_owned()),
            extra: Default::default(),
        },
    };
    let (tx, rx) = crossbeam_channel::bounded(1);
    state.waiters.lock().insert(request_id.clone(), tx);
    let submitted = state.link.submit_now(frame);
    if let Err(e) = submitted {
        state.waiters.lock().remove(&request_id);
        return match e {
            SubmitError::QueueFull(full) => {
                state.metrics.command_rejected(kind, "queue_full");
                error_reply(
                    503,
                    "queue_full",
                    &format!("the command queue is full ({} commands)", full.capacity),
                )
            }
            SubmitError::LinkDown => {
                state.metrics.command_rejected(kind, "gateway_error");
                error_reply(
                    503,
                    "gateway_unavailable",
                    "the link to the gateway is down; history reads are not queued, try again shortly",
                )
            }
            SubmitError::Stopped => error_reply(503, "shutting_down", "relay is shutting down"),
        };
    }
    let completion = rx.recv_timeout(state.settings.reply_timeout + Duration::from_millis(500));
    state.waiters.lock().remove(&request_id);
    let ids = json!({"requestId": request_id, "traceId": trace_id});
    match completion.map(|c| c.outcome) {
        Ok(Outcome::Replied(LinkReply::Messages(messages))) => {
            // User text is cleaned as it is for live events.
            let mut body = EventBody::Messages(messages);
            body.clean_text(sanitize_for_broadcast);
            let EventBody::Messages(list) = body else {
                unreachable!("cleaning keeps the variant")
            };
            info!(traceId = trace_id.as_str(), requestId = request_id.as_str(); "history: {} messages of channel {}", list.messages.len(), q.channel);
            // `rev`: the window revision the page reflects; a client skips
            // live events whose `meta.rev` is not above it (docs/history.md).
            json_reply(
                200,
                &serde_json::to_value(&list).unwrap_or_else(|_| json!({ "messages": [] })),
            )
        }
        Ok(Outcome::Replied(LinkReply::Ack)) => json_reply(200, &json!({ "messages": [] })),
        // As for commands: the gateway's own refusal (its second permission
        // check included) is a 502 naming its code.
        other => failure_reply(state, other.ok(), &ids),
    }
}
