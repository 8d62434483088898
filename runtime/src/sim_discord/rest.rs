//! The simulated REST API under `/api/v10`: the routes relay calls, bot-token auth,
//! Discord's rate-limit headers with per-route buckets and a global limit, forced
//! 429s for tests, and a record of every request.
//!
//! Order of checks: 404/405 (route) → 401 (token) → forced 429 → global 429 →
//! bucket 429 → the route's own 400/403/404 (channel routes check the bot's
//! permissions there: `403 50001` without VIEW_CHANNEL, `403 50013` without the
//! route's permission) → success. Every routed answer after the auth
//! check carries the bucket's `X-RateLimit-*` headers, except global 429s.

use std::collections::{HashMap, VecDeque};
use std::io::Read;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use relay_protocol::history::{Anchor, HistoryQuery};

use super::guild::ChannelKind;
use super::{ids, parse_rfc3339, perms, unix_ms, RateLimit, Shared, State};

pub(super) mod webhooks;

/// Request bodies are cut at this size (Discord allows 25 MiB; relay sends < 10 KiB).
const MAX_BODY: u64 = 1024 * 1024;
/// Requests kept for [`super::SimDiscord::requests`].
const MAX_RECORDED: usize = 10_000;

/// One REST request as the simulator received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    /// `GET`, `POST`, …
    pub method: String,
    /// The request target as sent: path and query, still percent-encoded.
    pub path: String,
    /// Every header, names lowercased, in the order received (`authorization` included).
    pub headers: Vec<(String, String)>,
    /// The body (invalid UTF-8 replaced).
    pub body: String,
}

impl RecordedRequest {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body parsed as JSON.
    pub fn json(&self) -> Option<Value> {
        serde_json::from_str(&self.body).ok()
    }
}

/// One accepted `PATCH /guilds/{g}/members/{u}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    /// The member changed.
    pub user_id: String,
    /// `X-Audit-Log-Reason`, percent-decoded.
    pub reason: Option<String>,
    /// The JSON body that was applied.
    pub change: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Route {
    Gateway,
    GatewayBot,
    CreateMessage,
    CreateReaction,
    Typing,
    ModifyMember,
    GetMember,
    GetMessages,
    DeleteOwnReaction,
    /// `POST /channels/{c}/webhooks`.
    CreateWebhook,
    /// `GET /channels/{c}/webhooks`.
    ListWebhooks,
    /// `POST /webhooks/{id}/{token}`: its own bucket per webhook.
    ExecuteWebhook,
}

impl Route {
    fn method(self) -> &'static str {
        match self {
            Route::Gateway | Route::GatewayBot => "GET",
            Route::CreateMessage | Route::Typing => "POST",
            Route::CreateReaction => "PUT",
            Route::ModifyMember => "PATCH",
            Route::GetMember | Route::GetMessages | Route::ListWebhooks => "GET",
            Route::DeleteOwnReaction => "DELETE",
            Route::CreateWebhook | Route::ExecuteWebhook => "POST",
        }
    }

    /// Routes that share a path and differ by method.
    fn with_method(self, method: &str) -> Route {
        match (self, method) {
            (Route::ModifyMember, "GET") => Route::GetMember,
            (Route::CreateMessage, "GET") => Route::GetMessages,
            (Route::CreateReaction, "DELETE") => Route::DeleteOwnReaction,
            (Route::CreateWebhook, "GET") => Route::ListWebhooks,
            _ => self,
        }
    }

    /// The opaque `X-RateLimit-Bucket`: like Discord's, it names the route, not the
    /// channel or guild (those get separate counters under the same bucket id).
    fn bucket_id(self) -> &'static str {
        match self {
            Route::Gateway | Route::GatewayBot => "41f9cd5d28af77da04563bcb1d67fdfd",
            Route::CreateMessage => "80c17d2f203122d936070c88c8d10f33",
            Route::CreateReaction => "d7ebd0e5cc25b4e52b46ffb4a3ce0a4c",
            Route::Typing => "b1d3ad8de7d8f09c1b2a3f0c4e5d6a7b",
            Route::ModifyMember => "c4e0a1b2d3f4e5a6b7c8d9e0f1a2b3c4",
            Route::GetMember => "9a8b7c6d5e4f30211f2e3d4c5b6a7980",
            Route::GetMessages => "3f1e2d4c5b6a79808f7e6d5c4b3a2910",
            // Discord's reaction routes share one bucket.
            Route::DeleteOwnReaction => Route::CreateReaction.bucket_id(),
            Route::CreateWebhook => "5e1f0a2b3c4d5e6f708192a3b4c5d6e7",
            Route::ListWebhooks => "6f2a1b3c4d5e6f708192a3b4c5d6e7f8",
            Route::ExecuteWebhook => "7a3b2c4d5e6f708192a3b4c5d6e7f809",
        }
    }

    fn limit(self, shared: &Shared) -> RateLimit {
        let limits = &shared.config.rate_limits;
        match self {
            Route::Gateway | Route::GatewayBot => limits.gateway,
            Route::CreateMessage => limits.messages,
            Route::CreateReaction => limits.reactions,
            Route::Typing => limits.typing,
            Route::ModifyMember => limits.members,
            Route::GetMember => limits.member_reads,
            Route::GetMessages => limits.message_reads,
            Route::DeleteOwnReaction => limits.reactions,
            Route::ExecuteWebhook => limits.webhooks,
            Route::CreateWebhook | Route::ListWebhooks => limits.channel_reads,
        }
    }
}

struct Bucket {
    remaining: u32,
    reset_at: Instant,
}

#[derive(Default)]
pub(super) struct RestState {
    pub(super) requests: VecDeque<RecordedRequest>,
    pub(super) audit: Vec<AuditEntry>,
    pub(super) forced: u32,
    pub(super) forced_global: bool,
    buckets: HashMap<(Route, String), Bucket>,
    /// Start of the current one-second global window and requests in it.
    global: Option<(Instant, u32)>,
}

/// An answer before it is turned into a tiny_http response.
struct Reply {
    status: u16,
    body: Option<Value>,
    headers: Vec<(&'static str, String)>,
}

impl Reply {
    fn json(status: u16, body: Value) -> Self {
        Reply {
            status,
            body: Some(body),
            headers: Vec::new(),
        }
    }

    fn empty() -> Self {
        Reply {
            status: 204,
            body: None,
            headers: Vec::new(),
        }
    }

    fn error(status: u16, code: u32, message: &str) -> Self {
        Reply::json(status, json!({ "message": message, "code": code }))
    }
}

/// Serves REST requests until the server is unblocked at shutdown.
pub(super) fn serve(shared: Arc<Shared>, server: Arc<tiny_http::Server>) {
    loop {
        match server.recv() {
            Ok(request) => handle(&shared, request),
            Err(_) if shared.stopping.load(Ordering::SeqCst) => break,
            // An accept error from tiny_http's listener: keep serving.
            Err(_) => continue,
        }
        if shared.stopping.load(Ordering::SeqCst) {
            break;
        }
    }
}

fn handle(shared: &Shared, mut request: tiny_http::Request) {
    let method = request.method().as_str().to_owned();
    let path = request.url().to_owned();
    let headers: Vec<(String, String)> = request
        .headers()
        .iter()
        .map(|h| {
            (
                h.field.as_str().as_str().to_ascii_lowercase(),
                h.value.as_str().to_owned(),
            )
        })
        .collect();
    let mut body = Vec::new();
    let _ = request.as_reader().take(MAX_BODY).read_to_end(&mut body);
    let recorded = RecordedRequest {
        method,
        path,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    };
    // Recorded before answering: a test that sees the answer's dispatch also sees the request.
    {
        let mut rest = shared.rest.lock();
        if rest.requests.len() >= MAX_RECORDED {
            rest.requests.pop_front();
        }
        rest.requests.push_back(recorded.clone());
    }
    if let Some(response) = super::oauth::handle(shared, &recorded) {
        let _ = request.respond(response);
        return;
    }
    let reply = answer(shared, &recorded);
    let mut response = tiny_http::Response::from_data(match &reply.body {
        Some(v) => v.to_string().into_bytes(),
        None => Vec::new(),
    })
    .with_status_code(reply.status);
    let content_type = reply
        .body
        .as_ref()
        .map(|_| ("Content-Type", "application/json"));
    let extra = reply.headers.iter().map(|(n, v)| (*n, v.as_str()));
    for (name, value) in content_type.into_iter().chain(extra) {
        // Every value here is ours and ASCII, so this never skips one.
        if let Ok(h) = tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes()) {
            response.add_header(h);
        }
    }
    let _ = request.respond(response);
}

/// Finds the route and its major resource (channel or guild id) in a raw path.
fn route_of(path: &str) -> Option<(Route, Vec<&str>)> {
    let path = path.split_once('?').map_or(path, |(p, _)| p);
    let rest = path.strip_prefix("/api/v10/")?;
    let segs: Vec<&str> = rest.trim_end_matches('/').split('/').collect();
    let route = match segs.as_slice() {
        ["gateway"] => Route::Gateway,
        ["gateway", "bot"] => Route::GatewayBot,
        ["channels", _, "messages"] => Route::CreateMessage,
        ["channels", _, "messages", _, "reactions", _, me]
            if *me == "@me" || me.eq_ignore_ascii_case("%40me") =>
        {
            Route::CreateReaction
        }
        ["channels", _, "typing"] => Route::Typing,
        ["guilds", _, "members", _] => Route::ModifyMember,
        ["channels", _, "webhooks"] => Route::CreateWebhook,
        ["webhooks", _, _] => Route::ExecuteWebhook,
        _ => return None,
    };
    Some((route, segs))
}

fn answer(shared: &Shared, req: &RecordedRequest) -> Reply {
    let Some((route, segs)) = route_of(&req.path) else {
        return Reply::error(404, 0, "404: Not Found");
    };
    let route = route.with_method(&req.method);
    if req.method != route.method() {
        return Reply::error(405, 0, "405: Method Not Allowed");
    }
    let expected = format!("Bot {}", shared.config.token);
    // Execute Webhook is authorized by the token in its path, not the bot's.
    let needs_bot = !matches!(route, Route::Gateway | Route::ExecuteWebhook);
    if needs_bot && req.header("authorization") != Some(expected.as_str()) {
        return Reply::error(401, 0, "401: Unauthorized");
    }
    let major = match route {
        Route::Gateway | Route::GatewayBot => "",
        _ => segs[1],
    };
    let now = Instant::now();
    let limit = route.limit(shared);
    let mut rate_headers = {
        let mut rest = shared.rest.lock();
        if rest.forced > 0 {
            rest.forced -= 1;
            let global = rest.forced_global;
            return too_many(route, limit, shared.config.forced_retry_after, global);
        }
        let per_sec = shared.config.global_limit_per_sec;
        let window = match rest.global {
            Some((start, n)) if now.duration_since(start) < Duration::from_secs(1) => (start, n),
            _ => (now, 0),
        };
        if window.1 >= per_sec {
            let retry = Duration::from_secs(1).saturating_sub(now.duration_since(window.0));
            return too_many(route, limit, retry, true);
        }
        rest.global = Some((window.0, window.1 + 1));
        let bucket = rest
            .buckets
            .entry((route, major.to_owned()))
            .or_insert(Bucket {
                remaining: limit.limit,
                reset_at: now + limit.window,
            });
        if now >= bucket.reset_at {
            bucket.remaining = limit.limit;
            bucket.reset_at = now + limit.window;
        }
        let reset_after = bucket.reset_at.saturating_duration_since(now);
        if bucket.remaining == 0 {
            return too_many(route, limit, reset_after, false);
        }
        bucket.remaining -= 1;
        bucket_headers(route, limit.limit, bucket.remaining, reset_after)
    };
    let mut reply = match route {
        Route::Gateway => Reply::json(200, json!({ "url": shared.gateway_url })),
        Route::GatewayBot => gateway_bot(shared),
        Route::CreateMessage => create_message(shared, segs[1], req),
        Route::CreateReaction => create_reaction(shared, segs[1], segs[3], segs[5]),
        Route::Typing => typing(shared, segs[1]),
        Route::ModifyMember => modify_member(shared, segs[1], segs[3], req),
        Route::GetMember => get_member(shared, segs[1], segs[3]),
        Route::GetMessages => get_messages(shared, segs[1], &req.path),
        Route::DeleteOwnReaction => delete_own_reaction(shared, segs[1], segs[3], segs[5]),
        Route::CreateWebhook => webhooks::create(shared, segs[1], req),
        Route::ListWebhooks => webhooks::list(shared, segs[1]),
        Route::ExecuteWebhook => webhooks::execute(shared, segs[1], segs[2], req),
    };
    reply.headers.append(&mut rate_headers);
    reply
}

fn bucket_headers(
    route: Route,
    limit: u32,
    remaining: u32,
    reset_after: Duration,
) -> Vec<(&'static str, String)> {
    let reset_at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        + reset_after;
    vec![
        ("X-RateLimit-Limit", limit.to_string()),
        ("X-RateLimit-Remaining", remaining.to_string()),
        (
            "X-RateLimit-Reset",
            format!("{:.3}", reset_at.as_secs_f64()),
        ),
        (
            "X-RateLimit-Reset-After",
            format!("{:.3}", reset_after.as_secs_f64()),
        ),
        ("X-RateLimit-Bucket", route.bucket_id().to_owned()),
    ]
}

/// A 429. A bucket one names the bucket (scope `user`); a global one says
/// `X-RateLimit-Global: true` (scope `global`). Both carry `Retry-After` in whole seconds.
fn too_many(route: Route, limit: RateLimit, retry_after: Duration, global: bool) -> Reply {
    let secs = retry_after.as_secs_f64();
    let mut reply = Reply::json(
        429,
        json!({
            "message": "You are being rate limited.",
            "retry_after": (secs * 1000.0).round() / 1000.0,
            "global": global,
        }),
    );
    reply
        .headers
        .push(("Retry-After", (secs.ceil() as u64).to_string()));
    if global {
        reply.headers.push(("X-RateLimit-Global", "true".into()));
        reply.headers.push(("X-RateLimit-Scope", "global".into()));
    } else {
        reply
            .headers
            .extend(bucket_headers(route, limit.limit, 0, retry_after));
        reply.headers.push(("X-RateLimit-Scope", "user".into()));
    }
    reply
}

fn gateway_bot(shared: &Shared) -> Reply {
    let identifies = shared.state.lock().gw.identifies;
    let day_ms: u128 = 24 * 60 * 60 * 1000;
    let reset_after = day_ms.saturating_sub(shared.started.elapsed().as_millis());
    Reply::json(
        200,
        json!({
            "url": shared.gateway_url,
            "shards": 1,
            "session_start_limit": {
                "total": 1000,
                "remaining": 1000u64.saturating_sub(identifies),
                "reset_after": reset_after as u64,
                "max_concurrency": 1,
            },
        }),
    )
}

fn unknown_channel() -> Reply {
    Reply::error(404, 10003, "Unknown Channel")
}

fn parse_body(req: &RecordedRequest) -> Result<serde_json::Map<String, Value>, Reply> {
    match serde_json::from_str::<Value>(&req.body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(invalid_form(
            "_errors",
            "BASE_TYPE_DICT",
            "Must be an object.",
        )),
        Err(_) => Err(Reply::error(
            400,
            50109,
            "The request body contains invalid JSON.",
        )),
    }
}

fn invalid_form(field: &str, code: &str, message: &str) -> Reply {
    let errors = if field == "_errors" {
        json!({ "_errors": [{ "code": code, "message": message }] })
    } else {
        json!({ field: { "_errors": [{ "code": code, "message": message }] } })
    };
    Reply::json(
        400,
        json!({ "message": "Invalid Form Body", "code": 50035, "errors": errors }),
    )
}

/// A message body's `content` as Discord checks it (Create Message and
/// Execute Webhook alike): absent or null is empty, else a string of at most
/// 2000 characters; anything else is a 50035 Invalid Form Body.
fn message_content(body: &serde_json::Map<String, Value>) -> Result<&str, Reply> {
    let content = match body.get("content") {
        None | Some(Value::Null) => "",
        Some(Value::String(s)) => s.as_str(),
        Some(_) => {
            return Err(invalid_form(
                "content",
                "BASE_TYPE_STRING",
                "Must be a string.",
            ))
        }
    };
    if content.chars().count() > 2000 {
        return Err(invalid_form(
            "content",
            "BASE_TYPE_MAX_LENGTH",
            "Must be 2000 or fewer in length.",
        ));
    }
    Ok(content)
}

fn create_message(shared: &Shared, channel_id: &str, req: &RecordedRequest) -> Reply {
    let body = match parse_body(req) {
        Ok(b) => b,
        Err(reply) => return reply,
    };
    let content = match message_content(&body) {
        Ok(c) => c,
        Err(reply) => return reply,
    };
    let mut st = shared.state.lock();
    if let Err(reply) = bot_may(&st, channel_id, Need::Send) {
        return reply;
    }
    if content.trim().is_empty() {
        return Reply::error(400, 50006, "Cannot send an empty message");
    }
    // Discord takes an integer or a string of at most 25 characters.
    let nonce = match body.get("nonce") {
        None | Some(Value::Null) => None,
        Some(Value::String(n)) if n.chars().count() <= 25 => Some(n.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(_) => {
            return invalid_form(
                "nonce",
                "BASE_TYPE_MAX_LENGTH",
                "Must be 25 or fewer in length.",
            )
        }
    };
    let enforce = body.get("enforce_nonce") == Some(&Value::Bool(true));
    let made = match (&nonce, enforce) {
        (Some(n), true) => st.create_message_once(ids::BOT_USER, channel_id, content, n),
        _ => st
            .create_message(ids::BOT_USER, channel_id, content)
            .map(|mut m| {
                if let Some(n) = &nonce {
                    m["nonce"] = Value::String(n.clone());
                }
                m
            }),
    };
    match made {
        Some(message) => Reply::json(200, message),
        None => unknown_channel(),
    }
}

fn create_reaction(shared: &Shared, channel_id: &str, message_id: &str, emoji: &str) -> Reply {
    let mut st = shared.state.lock();
    if let Err(reply) = bot_may(&st, channel_id, Need::React) {
        return reply;
    }
    if !is_snowflake(message_id) {
        return Reply::error(404, 10008, "Unknown Message");
    }
    let Some(emoji) = parse_emoji(emoji) else {
        return Reply::error(400, 10014, "Unknown Emoji");
    };
    st.add_reaction(ids::BOT_USER, channel_id, message_id, emoji);
    Reply::empty()
}

/// `DELETE /channels/{c}/messages/{m}/reactions/{emoji}/@me`: 204, and
/// MESSAGE_REACTION_REMOVE if the bot had reacted so. Needs VIEW_CHANNEL
/// and READ_MESSAGE_HISTORY.
fn delete_own_reaction(shared: &Shared, channel_id: &str, message_id: &str, emoji: &str) -> Reply {
    let mut st = shared.state.lock();
    if let Err(reply) = bot_may(&st, channel_id, Need::Read) {
        return reply;
    }
    if !is_snowflake(message_id) || st.guild.message(message_id).is_none() {
        return Reply::error(404, 10008, "Unknown Message");
    }
    let Some(emoji) = parse_emoji(emoji) else {
        return Reply::error(400, 10014, "Unknown Emoji");
    };
    st.remove_reaction(ids::BOT_USER, channel_id, message_id, &emoji);
    Reply::empty()
}

/// `GET /channels/{c}/messages?limit&before|after|around` ("Get Channel
/// Messages", `developers/resources/message.mdx`): `limit` 1–100 (default
/// 50), the anchors mutually exclusive (more than one, or a value that is no
/// snowflake, or a limit out of range: `400 50035` naming the field),
/// newest first. Unknown channel `404 10003`; without VIEW_CHANNEL `403
/// 50001`; without READ_MESSAGE_HISTORY an empty list, as Discord answers.
/// `around` takes `limit / 2` newer and the rest at or older than the id.
fn get_messages(shared: &Shared, channel_id: &str, target: &str) -> Reply {
    let query = target.split_once('?').map_or("", |(_, q)| q);
    let mut limit: u32 = 50;
    let mut anchor: Option<(&'static str, u64)> = None;
    for (key, value) in form_pairs(query) {
        let field: &'static str = match key.as_str() {
            "limit" => "limit",
            "before" => "before",
            "after" => "after",
            "around" => "around",
            _ => continue,
        };
        if field == "limit" {
            match value.parse::<i64>() {
                Ok(n) if n < 1 => {
                    return invalid_form(
                        "limit",
                        "NUMBER_TYPE_MIN",
                        "int value should be greater than or equal to 1.",
                    )
                }
                Ok(n) if n > 100 => {
                    return invalid_form(
                        "limit",
                        "NUMBER_TYPE_MAX",
                        "int value should be less than or equal to 100.",
                    )
                }
                Ok(n) => limit = n as u32,
                Err(_) => return invalid_form("limit", "NUMBER_TYPE_COERCE", "Value is not int."),
            }
            continue;
        }
        let Some(id) = value.parse::<u64>().ok().filter(|_| is_snowflake(&value)) else {
            return invalid_form(field, "NUMBER_TYPE_COERCE", "Value is not snowflake.");
        };
        if anchor.is_some() {
            return invalid_form(
                field,
                "BASE_TYPE_BAD_LENGTH",
                "before, after and around are mutually exclusive.",
            );
        }
        anchor = Some((field, id));
    }
    let st = shared.state.lock();
    let Some(channel) = st.guild.channel(channel_id) else {
        return unknown_channel();
    };
    if channel.kind == ChannelKind::Category {
        return Reply::error(400, 50008, "Cannot send messages in a non-text channel");
    }
    let have = st.guild.permissions(ids::BOT_USER, channel_id, unix_ms());
    if have & perms::VIEW_CHANNEL == 0 {
        return Reply::error(403, 50001, "Missing Access");
    }
    if have & perms::READ_MESSAGE_HISTORY == 0 {
        return Reply::json(200, json!([]));
    }
    let query = HistoryQuery {
        channel: channel_id.parse().unwrap_or(0),
        limit,
        anchor: match anchor {
            None => Anchor::Latest,
            Some(("before", x)) => Anchor::Before(x),
            Some(("after", x)) => Anchor::After(x),
            Some((_, x)) => Anchor::Around(x),
        },
    };
    let held: Vec<&super::guild::StoredMessage> = st
        .guild
        .messages
        .iter()
        .filter(|m| m.channel_id == channel_id)
        .collect();
    let ids: Vec<u64> = held.iter().filter_map(|m| m.id.parse().ok()).collect();
    let list: Vec<Value> = query
        .select(&ids)
        .into_iter()
        .filter_map(|id| held.iter().find(|m| m.id.parse() == Ok(id)))
        .map(|m| m.rest_json(ids::BOT_USER))
        .collect();
    Reply::json(200, Value::Array(list))
}

/// `key=value` pairs of a query string, percent-decoded (`+` is a space).
fn form_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let dec = |s: &str| {
                percent_decode(&s.replace('+', " "))
                    .and_then(|b| String::from_utf8(b).ok())
                    .unwrap_or_default()
            };
            (dec(k), dec(v))
        })
        .collect()
}

fn typing(shared: &Shared, channel_id: &str) -> Reply {
    let mut st = shared.state.lock();
    if let Err(reply) = bot_may(&st, channel_id, Need::Send) {
        return reply;
    }
    st.typing(ids::BOT_USER, channel_id);
    Reply::empty()
}

/// What a channel route needs of the bot there.
#[derive(Clone, Copy)]
enum Need {
    /// Post or type: SEND_MESSAGES, or SEND_MESSAGES_IN_THREADS in a thread.
    Send,
    /// React: READ_MESSAGE_HISTORY and ADD_REACTIONS (Discord wants ADD_REACTIONS
    /// only for a new emoji; the simulator asks for it always).
    React,
    /// Take back the bot's reaction: READ_MESSAGE_HISTORY.
    Read,
}

/// The bot's permission check of a channel route: unknown channel `404 10003`, a
/// category `400 50008`, no VIEW_CHANNEL `403 50001 Missing Access`, else the
/// needed bits or `403 50013 Missing Permissions`.
fn bot_may(st: &State, channel_id: &str, need: Need) -> Result<(), Reply> {
    let Some(channel) = st.guild.channel(channel_id) else {
        return Err(unknown_channel());
    };
    if channel.kind == ChannelKind::Category {
        return Err(Reply::error(
            400,
            50008,
            "Cannot send messages in a non-text channel",
        ));
    }
    let have = st.guild.permissions(ids::BOT_USER, channel_id, unix_ms());
    let needed = match (need, channel.kind) {
        (Need::Send, ChannelKind::Thread) => perms::SEND_MESSAGES_IN_THREADS,
        (Need::Send, _) => perms::SEND_MESSAGES,
        (Need::React, _) => perms::READ_MESSAGE_HISTORY | perms::ADD_REACTIONS,
        (Need::Read, _) => perms::READ_MESSAGE_HISTORY,
    };
    if have & perms::VIEW_CHANNEL == 0 {
        Err(Reply::error(403, 50001, "Missing Access"))
    } else if have & needed != needed {
        Err(missing_permissions())
    } else {
        Ok(())
    }
}

fn missing_permissions() -> Reply {
    Reply::error(403, 50013, "Missing Permissions")
}

fn get_member(shared: &Shared, guild_id: &str, user_id: &str) -> Reply {
    if guild_id != ids::GUILD {
        return Reply::error(404, 10004, "Unknown Guild");
    }
    let st = shared.state.lock();
    match st.guild.user(user_id) {
        Some(user) => Reply::json(200, st.guild.member_json(user, true)),
        None => Reply::error(404, 10007, "Unknown Member"),
    }
}

/// `PATCH /guilds/{g}/members/{u}`. Checks, in order: unknown guild or member
/// (404), the body's types (400 50035), the bot's permissions (403 50013: MOVE_MEMBERS
/// in the member's voice channel and VIEW_CHANNEL, CONNECT, MOVE_MEMBERS in the
/// target for `channel_id`; MUTE_MEMBERS / DEAFEN_MEMBERS there for `mute` /
/// `deaf`; MANAGE_NICKNAMES, MANAGE_ROLES, MODERATE_MEMBERS in the guild for `nick`,
/// `roles`, `communication_disabled_until`, which also refuses an owner or
/// administrator), then a member not in voice (400 40032). Role hierarchy is not
/// checked.
fn modify_member(shared: &Shared, guild_id: &str, user_id: &str, req: &RecordedRequest) -> Reply {
    if guild_id != ids::GUILD {
        return Reply::error(404, 10004, "Unknown Guild");
    }
    let body = match parse_body(req) {
        Ok(b) => b,
        Err(reply) => return reply,
    };
    let now = unix_ms();
    let mut guard = shared.state.lock();
    let st = &mut *guard;
    if st.guild.user(user_id).is_none() {
        return Reply::error(404, 10007, "Unknown Member");
    }
    let current = st.guild.voice.get(user_id).map(|v| v.channel_id.clone());
    // Validate everything before changing anything.
    let target: Option<Option<String>> = match body.get("channel_id") {
        None => None,
        Some(Value::Null) => Some(None),
        Some(Value::String(id)) => match st.guild.channel(id) {
            Some(c) if c.kind == ChannelKind::Voice => Some(Some(c.id.clone())),
            _ => {
                return invalid_form(
                    "channel_id",
                    "CHANNEL_TYPE_INVALID",
                    "Channel is not a voice channel.",
                )
            }
        },
        Some(_) => {
            return invalid_form(
                "channel_id",
                "NUMBER_TYPE_COERCE",
                "Value is not snowflake.",
            )
        }
    };
    let mut flags = [None, None];
    for (slot, key) in flags.iter_mut().zip(["mute", "deaf"]) {
        match body.get(key) {
            None | Some(Value::Null) => {}
            Some(Value::Bool(b)) => *slot = Some(*b),
            Some(_) => {
                return invalid_form(key, "BASE_TYPE_BOOLEAN", "Must be either true or false.")
            }
        }
    }
    let nick: Option<Option<String>> = match body.get("nick") {
        None => None,
        Some(Value::Null) => Some(None),
        Some(Value::String(n)) if n.chars().count() <= 32 => {
            Some(Some(n.clone()).filter(|n| !n.is_empty()))
        }
        Some(Value::String(_)) => {
            return invalid_form(
                "nick",
                "BASE_TYPE_MAX_LENGTH",
                "Must be 32 or fewer in length.",
            )
        }
        Some(_) => return invalid_form("nick", "BASE_TYPE_STRING", "Must be a string."),
    };
    let roles: Option<Vec<String>> = match body.get("roles") {
        None => None,
        Some(Value::Null) => Some(Vec::new()),
        Some(Value::Array(list)) => {
            let mut roles = Vec::new();
            for r in list {
                match r.as_str().and_then(|id| st.guild.role(id)) {
                    Some(role) if role.id != ids::ROLE_EVERYONE => roles.push(role.id.clone()),
                    _ => return Reply::error(404, 10011, "Unknown Role"),
                }
            }
            Some(roles)
        }
        Some(_) => return invalid_form("roles", "BASE_TYPE_ARRAY", "Must be an array."),
    };
    let max_timeout = now + 28 * 24 * 3600 * 1000;
    let timeout: Option<Option<u64>> = match body.get("communication_disabled_until") {
        None => None,
        Some(Value::Null) => Some(None),
        Some(Value::String(t)) => match parse_rfc3339(t) {
            Some(ms) if ms <= max_timeout => Some(Some(ms)),
            Some(_) => {
                return invalid_form(
                    "communication_disabled_until",
                    "COMMUNICATION_DISABLED_TIMESTAMP_TOO_LONG",
                    "Timeout must be less than 28 days in the future.",
                )
            }
            None => {
                return invalid_form(
                    "communication_disabled_until",
                    "DATE_TIME_TYPE_PARSE",
                    "Could not parse the timestamp.",
                )
            }
        },
        Some(_) => {
            return invalid_form(
                "communication_disabled_until",
                "DATE_TIME_TYPE_PARSE",
                "Could not parse the timestamp.",
            )
        }
    };
    // The bot's permissions: in the member's voice channel when there is one
    // (MUTE_MEMBERS and friends can be overwritten per channel), else the guild's.
    let guild_perms = st.guild.base_permissions(ids::BOT_USER).unwrap_or(0);
    let bot_in = |channel: Option<&str>| match channel {
        Some(c) => st.guild.permissions(ids::BOT_USER, c, now),
        None => guild_perms,
    };
    let has = |have: u64, need: u64| have & need == need;
    let here = bot_in(current.as_deref());
    let target_ok = match &target {
        None => true,
        Some(None) => has(here, perms::MOVE_MEMBERS),
        Some(Some(t)) => {
            (current.is_none() || has(here, perms::MOVE_MEMBERS))
                && has(
                    bot_in(Some(t)),
                    perms::VIEW_CHANNEL | perms::CONNECT | perms::MOVE_MEMBERS,
                )
        }
    };
    let target_is_exempt = st
        .guild
        .base_permissions(user_id)
        .is_some_and(|p| p & perms::ADMINISTRATOR != 0);
    let allowed = target_ok
        && (flags[0].is_none() || has(here, perms::MUTE_MEMBERS))
        && (flags[1].is_none() || has(here, perms::DEAFEN_MEMBERS))
        && (nick.is_none() || has(guild_perms, perms::MANAGE_NICKNAMES))
        && (roles.is_none() || has(guild_perms, perms::MANAGE_ROLES))
        && (timeout.is_none() || has(guild_perms, perms::MODERATE_MEMBERS) && !target_is_exempt);
    if !allowed {
        return missing_permissions();
    }
    let before = st
        .guild
        .user(user_id)
        .map(|u| st.guild.member_json(u, true));
    // Real Discord cannot pull a member into voice (40032). The demo guild lets
    // the demo page's "Join" button do it, so a visitor can try voice events.
    if let (true, None, Some(Some(channel))) = (shared.config.demo, &current, &target) {
        st.set_voice(user_id, Some(channel));
    } else if (target.is_some() || flags.iter().any(Option::is_some)) && current.is_none() {
        return Reply::error(400, 40032, "Target user is not connected to voice.");
    }
    if target == Some(None) {
        st.set_voice(user_id, None);
    } else if let Some(state) = st.guild.voice.get_mut(user_id) {
        // One VOICE_STATE_UPDATE carries a move and a mute change together.
        let before = (state.channel_id.clone(), state.mute, state.deaf);
        if let Some(Some(channel)) = &target {
            state.channel_id = channel.clone();
        }
        state.mute = flags[0].unwrap_or(state.mute);
        state.deaf = flags[1].unwrap_or(state.deaf);
        if before != (state.channel_id.clone(), state.mute, state.deaf) {
            let d = st.guild.voice_update(user_id);
            st.dispatch("VOICE_STATE_UPDATE", d);
        }
    }
    if let Some(user) = st.guild.user_mut(user_id) {
        if let Some(nick) = nick {
            user.nick = nick;
        }
        if let Some(roles) = roles {
            user.roles = roles;
        }
        if let Some(until) = timeout {
            user.timeout_until = until;
        }
    }
    let member = match st.guild.user(user_id) {
        Some(u) => st.guild.member_json(u, true),
        None => Value::Null,
    };
    // Mute, deafen, nick, roles and timeout are the member's: one GUILD_MEMBER_UPDATE.
    if before.as_ref() != Some(&member) {
        if let Some(d) = st.guild.member_update(user_id) {
            st.dispatch("GUILD_MEMBER_UPDATE", d);
        }
    }
    drop(guard);
    let reason = req.header("x-audit-log-reason").map(|r| {
        String::from_utf8_lossy(&percent_decode(r).unwrap_or_else(|| r.as_bytes().to_vec()))
            .into_owned()
    });
    let mut rest = shared.rest.lock();
    if rest.audit.len() >= MAX_RECORDED {
        rest.audit.remove(0);
    }
    rest.audit.push(AuditEntry {
        user_id: user_id.to_owned(),
        reason,
        change: req.body.clone(),
    });
    Reply::json(200, member)
}

fn is_snowflake(s: &str) -> bool {
    (1..=20).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())
}

/// Decodes `%XX` escapes; `None` on a bad escape or a raw non-ASCII byte.
fn percent_decode(s: &str) -> Option<Vec<u8>> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b if b.is_ascii() => {
                out.push(b);
                i += 1;
            }
            _ => return None,
        }
    }
    Some(out)
}

/// The emoji object of a reaction path segment: `name:id` (custom) → `{id, name}`,
/// a unicode emoji → `{id: null, name}`. `None` (Discord's 10014) when the segment is
/// not percent-encoded UTF-8, or is plain ASCII text rather than an emoji.
fn parse_emoji(segment: &str) -> Option<Value> {
    parse_emoji_text(&String::from_utf8(percent_decode(segment)?).ok()?)
}

/// An emoji as text (`🔥` or `name:id`) as the `{id, name}` object, or `None`.
pub(super) fn parse_emoji_text(decoded: &str) -> Option<Value> {
    if let Some((name, id)) = decoded.split_once(':') {
        let name_ok = !name.is_empty()
            && name.len() <= 32
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        return (name_ok && is_snowflake(id)).then(|| json!({ "id": id, "name": name }));
    }
    let looks_like_emoji = !decoded.is_empty()
        && decoded.chars().count() <= 16
        && !decoded.is_ascii()
        && !decoded
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c.is_ascii_alphabetic());
    looks_like_emoji.then(|| json!({ "id": null, "name": decoded }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emoji_segments_decode_like_discord() {
        assert_eq!(
            parse_emoji("%F0%9F%94%A5"),
            Some(json!({ "id": null, "name": "🔥" }))
        );
        // Keeps every codepoint, FE0F and ZWJ included.
        let family = "👨\u{200d}👩\u{200d}👧";
        let encoded: String = family.bytes().map(|b| format!("%{b:02X}")).collect();
        assert_eq!(parse_emoji(&encoded).unwrap()["name"], family);
        assert_eq!(
            parse_emoji("LUL:41771983429993937"),
            Some(json!({ "id": "41771983429993937", "name": "LUL" }))
        );
        assert_eq!(
            parse_emoji("LUL%3A41771983429993937"),
            Some(json!({ "id": "41771983429993937", "name": "LUL" }))
        );
        // Truncated UTF-8, bad escapes, raw non-ASCII, wrappers and plain words are refused.
        for bad in [
            "%F0%9F%94",
            "%ZZ",
            "%F",
            "🔥",
            "<:LUL:41771983429993937>",
            "a:LUL:41771983429993937",
            "LUL:abc",
            "fire",
            "",
        ] {
            assert_eq!(parse_emoji(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn routes_match_raw_paths() {
        let r = |p| route_of(p).map(|(r, _)| r);
        assert_eq!(r("/api/v10/gateway/bot"), Some(Route::GatewayBot));
        assert_eq!(
            r("/api/v10/channels/1/messages"),
            Some(Route::CreateMessage)
        );
        assert_eq!(
            r("/api/v10/channels/1/messages/2/reactions/%F0%9F%94%A5/@me"),
            Some(Route::CreateReaction)
        );
        assert_eq!(
            r("/api/v10/channels/1/messages/2/reactions/x/%40me"),
            Some(Route::CreateReaction)
        );
        assert_eq!(r("/api/v10/channels/1/typing?x=1"), Some(Route::Typing));
        assert_eq!(r("/api/v10/guilds/1/members/2"), Some(Route::ModifyMember));
        assert_eq!(Route::ModifyMember.with_method("GET"), Route::GetMember);
        assert_eq!(
            Route::ModifyMember.with_method("PATCH"),
            Route::ModifyMember
        );
        assert_eq!(r("/api/v9/gateway/bot"), None);
        assert_eq!(
            r("/api/v10/channels/1/messages/2/reactions/x/someone"),
            None
        );
    }
}
