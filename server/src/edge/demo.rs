//! Demo sign-in (only in `relay demo`): lists the simulated guild's users and
//! issues a session cookie for the one picked. A real deployment issues sessions
//! from its own login (`relay token` shows the shape); these routes do not exist
//! outside demo mode.

use std::time::Duration;

use relay_runtime::clock;
use serde_json::{json, Value};

use super::http::{
    body_error_reply, error_reply, json_reply, not_found, read_body, Reply, Request,
};
use super::state::AppState;
use crate::auth::{ROLE_CHAT_WRITE, ROLE_VOICE_MODERATE, SESSION_COOKIE};

/// Demo sessions last a working day.
const DEMO_SESSION_TTL: Duration = Duration::from_secs(12 * 3600);

/// `GET /api/demo/users`.
pub fn users(state: &AppState) -> Reply {
    match &state.settings.demo {
        Some(demo) => json_reply(200, &json!(demo.users)),
        None => not_found(),
    }
}

/// `POST /api/demo/session` with `{"userId": …}`: sets the `relay_session` cookie.
pub fn session(state: &AppState, req: &mut Request) -> Reply {
    let Some(demo) = &state.settings.demo else {
        return not_found();
    };
    let body = match read_body(req, 4096) {
        Ok(b) => b,
        Err(e) => return body_error_reply(e, "body too large"),
    };
    let user_id = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v["userId"].as_str().map(str::to_owned));
    let Some(user) = user_id.and_then(|id| demo.users.iter().find(|u| u.id == id)) else {
        return error_reply(400, "invalid_request", "userId must name a demo user");
    };
    let roles = [ROLE_CHAT_WRITE.to_string(), ROLE_VOICE_MODERATE.to_string()];
    let token = state.keys.issue(
        &user.id,
        Some(&user.username),
        &roles,
        DEMO_SESSION_TTL,
        clock::unix_secs(),
    );
    let cookie = format!(
        "{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}",
        DEMO_SESSION_TTL.as_secs()
    );
    json_reply(
        200,
        &json!({"ok": true, "user": {"id": user.id, "username": user.username},
                "guildId": demo.guild_id}),
    )
    .header("Set-Cookie", cookie)
}
