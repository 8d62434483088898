//! Request routing for the edge: which handler serves which path and method.

use std::sync::Arc;

use log::debug;
use relay_protocol::history_request::history_path;
use relay_protocol::validate::Endpoint;
use serde_json::json;

use super::cors::{self, Decision};
use super::http::{
    error_reply, header, json_reply, method_not_allowed, not_found, split_url, Method, Reply,
    Request,
};
use super::state::AppState;
use super::{assets, bridge, commands, demo, history, oauth, stream};
use crate::logging::redact_query;

/// Serves one request (streams move to the SSE writer pool; bridge clients keep
/// their connection's thread).
pub fn handle(state: &Arc<AppState>, mut req: Request) {
    let url = req.url().to_owned();
    let (path, query) = split_url(&url);
    debug!("{} {}", req.method(), redact_query(&url));
    let method = req.method().clone();
    if method == Method::Get {
        if let Some(asset) = assets::get(path) {
            let _ = req.respond(asset);
            return;
        }
    }
    // ALLOWED_ORIGINS: the command API, history and the stream answer listed
    // origins with CORS headers; nothing changes while the list is empty.
    let cors = match cors::methods_for(path) {
        Some(methods) => {
            let decision = state
                .settings
                .allowed_origins
                .decide(header(&req, "Origin"));
            if method == Method::Options {
                if let Some((status, headers)) = decision.preflight(methods) {
                    let reply = if status == 204 {
                        Reply::new(204)
                    } else {
                        error_reply(403, "origin_not_allowed", "this origin may not call relay")
                    };
                    let _ = req.respond(with_headers(reply, headers));
                    return;
                }
            }
            decision
        }
        None => Decision::Off,
    };
    let reply = match path {
        "/api/stream" => {
            if method != Method::Get {
                method_not_allowed("GET")
            } else {
                return stream::serve(state, req, query, &cors.headers());
            }
        }
        "/api/ws" => {
            if !state.settings.enable_ws_bridge {
                not_found()
            } else if method != Method::Get {
                method_not_allowed("GET")
            } else {
                return bridge::serve(state, req);
            }
        }
        "/metrics" if method == Method::Get => {
            state
                .metrics
                .set_command_queue_depth(state.link.queue_len());
            Reply::new(200)
                .header("Content-Type", crate::metrics::CONTENT_TYPE)
                .body(state.metrics.encode())
        }
        "/api/demo/users" if method == Method::Get => demo::users(state),
        "/api/demo/session" if method == Method::Post => demo::session(state, &mut req),
        "/auth/discord/login" if method == Method::Get => oauth::login(state, query),
        "/auth/discord/callback" if method == Method::Get => oauth::callback(state, &req, query),
        "/auth/session" if method == Method::Get => oauth::session(state, &req, query),
        "/auth/logout" if method == Method::Post => oauth::logout(state),
        "/auth/discord/login" | "/auth/discord/callback" | "/auth/session" => {
            method_not_allowed("GET")
        }
        "/auth/logout" => method_not_allowed("POST"),
        "/healthz" if method == Method::Get => json_reply(200, &json!({"status": "ok"})),
        "/readyz" if method == Method::Get => readyz(state),
        "/metrics" | "/healthz" | "/readyz" => method_not_allowed("GET"),
        _ if history_path(path).is_some() => match history_path(path) {
            Some(channel) if method == Method::Get => history::handle(state, channel, &req, query),
            _ => method_not_allowed("GET"),
        },
        _ => match Endpoint::from_path(path) {
            Some(endpoint) if method == Method::Post => {
                commands::handle(state, endpoint, &mut req, query)
            }
            Some(_) => method_not_allowed("POST"),
            None => not_found(),
        },
    };
    let _ = req.respond(with_headers(reply, cors.headers()));
}

/// Adds `headers` to a reply.
fn with_headers(reply: Reply, headers: Vec<(&'static str, String)>) -> Reply {
    headers
        .into_iter()
        .fold(reply, |reply, (name, value)| reply.header(name, value))
}

/// 200 when the link is up, else 503, with what an operator needs to know.
fn readyz(state: &AppState) -> Reply {
    let connected = state.link.is_connected();
    let mut body = json!({
        "ready": connected,
        "link": if connected { "connected" } else { "disconnected" },
        "queueDepth": state.link.queue_len(),
        "sseClients": state.hub.subscriber_count(),
    });
    // With REDIS_URL: a down Redis is a degraded mode, not unreadiness (§10).
    if let Some(redis) = &state.redis {
        body["redis"] = json!(if redis.is_up() { "up" } else { "down" });
    }
    json_reply(if connected { 200 } else { 503 }, &body)
}
