//! The command API (CONTRACT.md §3): five POST endpoints, checked in the order
//! 401 → 403 → 400 (413/415) → 429 → 503, then sent over the link and answered
//! from the gateway's reply (200 / 429 / 502 / 504) or queued while the link is
//! down (202). A rejected call never reaches the gateway.

use std::time::Duration;

use log::{info, warn};
use relay_protocol::bucket::{Decision, Scope};
use relay_protocol::frame::{Extra, GatewayCommand, MetaExtra, Reply as LinkReply, TraceMeta};
use relay_protocol::link_session::{SubmitError, Submitted};
use relay_protocol::payload::CommandBody;
use relay_protocol::queue::Outcome;
use relay_protocol::sanitize::{sanitize, LOG_TEXT_MAX};
use relay_protocol::validate::{validate, Endpoint};
use relay_runtime::clock;
use serde_json::json;

use super::authn::authenticate;
use super::http::{
    body_error_reply, error_reply, header, is_json, json_reply, read_body, Reply, Request,
    MAX_BODY_BYTES,
};
use super::state::AppState;

/// Handles one command call and returns the response to send.
pub fn handle(state: &AppState, endpoint: Endpoint, req: &mut Request, query: &str) -> Reply {
    let session = match authenticate(state, req, query) {
        Ok(s) => s,
        Err(reply) => return reply,
    };
    if !session.has_role(endpoint.required_role()) {
        return error_reply(
            403,
            "forbidden",
            &format!("this call needs the `{}` role", endpoint.required_role()),
        );
    }
    if !is_json(header(req, "Content-Type")) {
        return error_reply(
            415,
            "unsupported_media_type",
            "send Content-Type: application/json",
        );
    }
    let body = match read_body(req, MAX_BODY_BYTES) {
        Ok(b) => b,
        Err(e) => return body_error_reply(e, "bodies are limited to 64 KiB"),
    };
    let command = match validate(endpoint, &body) {
        Ok(c) => c,
        Err(invalid) => {
            return json_reply(
                400,
                &json!({
                    "error": { "code": "invalid_request", "message": invalid.message },
                    "issues": invalid.issues,
                }),
            )
        }
    };
    let kind = command.type_name();
    // ACCESS=discord: Discord's own permission, before any rate-limit token is taken.
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
    let decision = state.check_limits(&session.sub, command.limit_key());
    if let Decision::Limited { scope, retry_after } = decision {
        let scope = match scope {
            Scope::User => "user",
            Scope::Channel => "channel",
        };
        state.metrics.rate_limited(scope);
        state.metrics.command_rejected(kind, "rate_limited");
        return rate_limited(
            retry_after.as_millis().max(1) as u64,
            &format!("too many calls ({scope} limit)"),
        );
    }

    let trace_id = clock::new_trace_id();
    let request_id = clock::new_request_id();
    // ACCESS=discord: the gateway posts a message under the session's name and
    // avatar through a webhook (docs/webhooks.md), so they travel with it.
    let extra = match (&state.access, &command) {
        (Some(_), CommandBody::SendMessage(_)) => {
            MetaExtra::actor(session.name.as_deref(), session.avatar.as_deref()).into()
        }
        _ => Extra::default(),
    };
    let frame = GatewayCommand {
        body: command,
        meta: TraceMeta {
            trace_id: trace_id.clone(),
            sent_at: clock::now_rfc3339(),
            request_id: Some(request_id.clone()),
            actor: Some(session.sub.clone()),
            access: state.access.as_ref().map(|_| "discord".to_owned()),
            extra,
        },
    };
    if let Some(access) = &state.access {
        access.note_actor(&request_id, &session.sub);
    }
    // Register before submitting: the reply can arrive before submit returns.
    let (tx, rx) = crossbeam_channel::bounded(1);
    state.waiters.lock().insert(request_id.clone(), tx);
    let submitted = state.link.submit(frame, true);
    state
        .metrics
        .set_command_queue_depth(state.link.queue_len());
    match submitted {
        Ok(Submitted::Sending) => {}
        Ok(Submitted::Queued) => {
            state.waiters.lock().remove(&request_id);
            info!(
                traceId = trace_id.as_str(), requestId = request_id.as_str(), actor = sanitize(&session.sub, 64).as_ref();
                "command {kind} queued: the link is down"
            );
            state.metrics.command_rejected(kind, "queued");
            return json_reply(
                202,
                &json!({"ok": true, "queued": true, "requestId": request_id, "traceId": trace_id}),
            );
        }
        Err(SubmitError::QueueFull(full)) => {
            state.waiters.lock().remove(&request_id);
            warn!(traceId = trace_id.as_str(), requestId = request_id.as_str(); "command {kind} refused: queue full");
            state.metrics.command_rejected(kind, "queue_full");
            return error_reply(
                503,
                "queue_full",
                &format!(
                    "the command queue is full ({} commands); try again later",
                    full.capacity
                ),
            );
        }
        Err(SubmitError::Stopped | SubmitError::LinkDown) => {
            state.waiters.lock().remove(&request_id);
            return error_reply(503, "shutting_down", "relay is shutting down");
        }
    }
    info!(
        traceId = trace_id.as_str(), requestId = request_id.as_str(), actor = sanitize(&session.sub, 64).as_ref();
        "command {kind} sent"
    );
    // The session times the command out at REPLY_TIMEOUT_MS; the margin only
    // covers the link thread's scheduling.
    let completion = rx.recv_timeout(state.settings.reply_timeout + Duration::from_millis(500));
    state.waiters.lock().remove(&request_id);
    let ids = json!({"requestId": request_id, "traceId": trace_id});
    match completion.map(|c| c.outcome) {
        // A command is answered `ack`; data replies belong to reads.
        Ok(Outcome::Replied(LinkReply::Ack | LinkReply::Messages(_))) => json_reply(
            200,
            &json!({"ok": true, "requestId": request_id, "traceId": trace_id}),
        ),
        other => failure_reply(state, other.ok(), &ids),
    }
}

/// The answer to a call (a command or a history read) whose gateway outcome
/// was no success: `rateLimited` → 429, `error` or a failure → 502 naming the
/// gateway's code, no reply (`None`) → 504. `ids` holds `requestId`, `traceId`.
pub(super) fn failure_reply(
    state: &AppState,
    outcome: Option<Outcome>,
    ids: &serde_json::Value,
) -> Reply {
    let bad_gateway = |code: &str, message: &str| {
        json_reply(
            502,
            &json!({
                "error": {
                    "code": "gateway_error",
                    "message": sanitize(message, LOG_TEXT_MAX),
                    "gatewayCode": sanitize(code, 64),
                },
                "requestId": ids["requestId"], "traceId": ids["traceId"],
            }),
        )
    };
    match outcome {
        Some(Outcome::Replied(LinkReply::RateLimited {
            retry_after_ms,
            global,
        })) => {
            state.metrics.rate_limited("gateway");
            let what = if global {
                "Discord's global rate limit"
            } else {
                "Discord rate limit"
            };
            rate_limited(retry_after_ms, what)
        }
        Some(Outcome::Replied(LinkReply::Error { code, message }))
        | Some(Outcome::Failed { code, message }) => bad_gateway(&code, &message),
        Some(Outcome::Replied(other)) => bad_gateway(
            "unexpected_reply",
            &format!("the gateway answered {other:?} to this call"),
        ),
        Some(Outcome::TimedOut) | None => json_reply(
            504,
            &json!({
                "error": {"code": "gateway_timeout", "message": "the gateway did not answer in time"},
                "requestId": ids["requestId"], "traceId": ids["traceId"],
            }),
        ),
    }
}

/// 429 with `retryAfterMs` and `Retry-After` in whole seconds, rounded up.
pub(super) fn rate_limited(retry_after_ms: u64, message: &str) -> Reply {
    let secs = retry_after_ms.div_ceil(1000).max(1);
    json_reply(
        429,
        &json!({"error": {"code": "rate_limited", "message": message}, "retryAfterMs": retry_after_ms}),
    )
    .header("Retry-After", secs.to_string())
}
