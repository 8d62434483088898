//! The five link commands as Discord REST v10 requests, and Discord's answers as
//! command replies (reference/discord.md §4, CONTRACT.md §3 and §5).
//!
//! Pure data: the driver sends a [`RestRequest`] with its HTTP client, adding only
//! `Authorization: Bot <token>` so the token never lives in protocol values (and so
//! never in a log line or a reply), then turns the answer into a [`Reply`] with
//! [`interpret_response`]. Ids are checked again here (digits only) because they are
//! pasted into the URL path: a `../` or `?` must not reach Discord.

use std::fmt;
use std::time::Duration;

use serde_json::{json, Value};

use super::ratelimit::{
    is_id, reply_for_wait, route_key, secs_to_duration, RateLimitHeaders, RouteKey,
    DEFAULT_RETRY_AFTER,
};
use crate::frame::{GatewayCommand, Reply};
use crate::payload::CommandBody;

/// Discord's REST base URL. The version must be in the path: without it Discord
/// routes to the deprecated v6.
pub const API_BASE: &str = "https://discord.com/api/v10";
/// `User-Agent` in the `DiscordBot ($url, $versionNumber)` form Discord requires
/// (without it Cloudflare may block the request).
pub const USER_AGENT: &str = "DiscordBot (https://github.com/relay-dev/relay, 0.1.0)";
/// Longest `X-Audit-Log-Reason` value, counted after percent-encoding so the limit
/// holds whichever way Discord counts its "1–512 URL-encoded UTF-8 characters".
pub const MAX_AUDIT_REASON_LEN: usize = 512;
/// Longest message content, in Unicode scalar values (CONTRACT.md §3).
pub const MAX_CONTENT_CHARS: usize = 2000;
/// Longest emoji accepted, in bytes before encoding. The longest standard emoji
/// sequences are about 35 bytes; a custom `name:id` is at most 53.
pub const MAX_EMOJI_BYTES: usize = 128;
/// Error bodies longer than this are not parsed (an error body is a few hundred bytes).
const MAX_ERROR_BODY: usize = 64 * 1024;

/// An HTTP method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Method {
    /// `GET`.
    Get,
    /// `POST`.
    Post,
    /// `PUT`.
    Put,
    /// `PATCH`.
    Patch,
    /// `DELETE`.
    Delete,
}

impl Method {
    /// The method as it goes on the request line.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One Discord REST request, complete except for `Authorization`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestRequest {
    /// The method.
    pub method: Method,
    /// Path relative to [`API_BASE`], e.g. `/channels/123/messages`; every dynamic
    /// segment is digits or percent-encoded.
    pub path: String,
    /// `User-Agent`, `Content-Type: application/json` when there is a body, and
    /// `X-Audit-Log-Reason` on voice moderation. Never `Authorization`.
    pub headers: Vec<(String, String)>,
    /// JSON body. `None` means an empty body: send it with `Content-Length: 0`.
    pub body: Option<String>,
    /// Rate-limit route for [`super::ratelimit::RestLimiter`].
    pub route: RouteKey,
}

impl RestRequest {
    /// The full URL against `base` ([`API_BASE`], or a test server's).
    pub fn url(&self, base: &str) -> String {
        format!("{}{}", base.trim_end_matches('/'), self.path)
    }

    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Why a command cannot become a request. Validation at the edge already refuses
/// all of these; the gateway checks again because it builds URLs from them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BuildError {
    /// An id that is not 1–20 ASCII digits; `field` is its wire name (`channelId` …).
    InvalidId {
        /// The offending field.
        field: &'static str,
    },
    /// `content` is empty.
    EmptyContent,
    /// `content` is longer than [`MAX_CONTENT_CHARS`].
    ContentTooLong {
        /// Its length in Unicode scalar values.
        chars: usize,
    },
    /// The emoji is empty, too long, or a malformed custom `name:id`.
    InvalidEmoji {
        /// What is wrong with it.
        reason: &'static str,
    },
    /// `fetchMessages` with a `limit` outside 1–100 or more than one anchor.
    InvalidHistoryQuery,
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BuildError::InvalidId { field } => {
                write!(f, "`{field}` is not a Discord id (1-20 digits)")
            }
            BuildError::EmptyContent => f.write_str("`content` is empty"),
            BuildError::ContentTooLong { chars } => {
                write!(
                    f,
                    "`content` has {chars} characters, more than {MAX_CONTENT_CHARS}"
                )
            }
            BuildError::InvalidEmoji { reason } => write!(f, "`emoji` is invalid: {reason}"),
            BuildError::InvalidHistoryQuery => f.write_str(
                "`limit` must be 1-100 and at most one of `before`, `after`, `around` given",
            ),
        }
    }
}

impl std::error::Error for BuildError {}

/// The Discord request for a link command. Its `actor` (the session's `sub`) goes
/// into `X-Audit-Log-Reason` on voice moderation so Discord's audit log shows who
/// acted; its `requestId` becomes the message's `nonce` (see [`message_nonce`]).
pub fn build_request(command: &GatewayCommand) -> Result<RestRequest, BuildError> {
    let actor = command.meta.actor.as_deref().unwrap_or_default();
    let (method, path, body, reason) = match &command.body {
        CommandBody::SendMessage(c) => {
            let channel = id(&c.channel_id, "channelId")?;
            let chars = c.content.chars().count();
            if chars == 0 {
                return Err(BuildError::EmptyContent);
            }
            if chars > MAX_CONTENT_CHARS {
                return Err(BuildError::ContentTooLong { chars });
            }
            // `parse: []`: relayed user text must not ping @everyone, roles or users.
            // `enforce_nonce`: Discord returns the message it already made for this
            // nonce instead of posting twice, so a command re-sent after the
            // gateway restarted (and forgot its de-dup cache) still posts once.
            let body = json!({
                "content": c.content,
                "allowed_mentions": {"parse": []},
                "nonce": message_nonce(command.request_id()),
                "enforce_nonce": true,
            });
            (
                Method::Post,
                format!("/channels/{channel}/messages"),
                Some(body),
                false,
            )
        }
        CommandBody::AddReaction(c) => {
            let channel = id(&c.channel_id, "channelId")?;
            let message = id(&c.message_id, "messageId")?;
            let emoji = encode_emoji(&c.emoji)?;
            let path = format!("/channels/{channel}/messages/{message}/reactions/{emoji}/@me");
            (Method::Put, path, None, false)
        }
        CommandBody::TypingStart(c) => {
            let channel = id(&c.channel_id, "channelId")?;
            (
                Method::Post,
                format!("/channels/{channel}/typing"),
                None,
                false,
            )
        }
        CommandBody::VoiceMove(c) => {
            let guild = id(&c.guild_id, "guildId")?;
            let user = id(&c.user_id, "userId")?;
            let target = match &c.channel_id {
                Some(ch) => Value::String(id(ch, "channelId")?.to_owned()),
                // `null` disconnects the member from voice.
                None => Value::Null,
            };
            let body = json!({ "channel_id": target });
            (
                Method::Patch,
                format!("/guilds/{guild}/members/{user}"),
                Some(body),
                true,
            )
        }
        CommandBody::VoiceMute(c) => {
            let guild = id(&c.guild_id, "guildId")?;
            let user = id(&c.user_id, "userId")?;
            let body = json!({ "mute": c.mute });
            (
                Method::Patch,
                format!("/guilds/{guild}/members/{user}"),
                Some(body),
                true,
            )
        }
        // "Get Channel Messages" (CONTRACT.md §9): the query was checked at the
        // edge; it is checked again because it goes into the URL.
        CommandBody::FetchMessages(c) => {
            let channel = id(&c.channel_id, "channelId")?;
            let query = crate::history::HistoryQuery::from_command(c)
                .map_err(|_| BuildError::InvalidHistoryQuery)?;
            let mut path = format!("/channels/{channel}/messages?limit={}", query.limit);
            match query.anchor {
                crate::history::Anchor::Latest => {}
                crate::history::Anchor::Before(x) => path.push_str(&format!("&before={x}")),
                crate::history::Anchor::After(x) => path.push_str(&format!("&after={x}")),
                crate::history::Anchor::Around(x) => path.push_str(&format!("&around={x}")),
            }
            (Method::Get, path, None, false)
        }
        // "Get Guild Member" needs no privileged intent (reference/discord-v11.md).
        CommandBody::FetchMember(c) => {
            let guild = id(&c.guild_id, "guildId")?;
            let user = id(&c.user_id, "userId")?;
            (
                Method::Get,
                format!("/guilds/{guild}/members/{user}"),
                None,
                false,
            )
        }
    };
    let mut headers = vec![("User-Agent".to_owned(), USER_AGENT.to_owned())];
    if body.is_some() {
        headers.push(("Content-Type".to_owned(), "application/json".to_owned()));
    }
    if let Some(reason) = reason.then(|| audit_log_reason(actor)).flatten() {
        headers.push(("X-Audit-Log-Reason".to_owned(), reason));
    }
    Ok(RestRequest {
        route: route_key(method, &path),
        method,
        path,
        headers,
        body: body.map(|b| b.to_string()),
    })
}

/// Longest `nonce` Discord accepts on a message.
pub const MAX_NONCE_LEN: usize = 25;

/// The message `nonce` for a command's `requestId`: the same id gives the same
/// nonce in every gateway process, and any id fits Discord's 25 characters.
/// A 128-bit FNV-1a hash written in base 36 (at most 25 digits): ids are UUIDs
/// with 122 random bits, so two commands share a nonce with negligible odds
/// inside Discord's few-minute window.
pub fn message_nonce(request_id: &str) -> String {
    const OFFSET: u128 = 0x6c62272e07bb014262b821756295c58d;
    const PRIME: u128 = 0x0000000001000000000000000000013B;
    let mut hash = OFFSET;
    for byte in request_id.bytes() {
        hash ^= u128::from(byte);
        hash = hash.wrapping_mul(PRIME);
    }
    let mut digits = Vec::with_capacity(MAX_NONCE_LEN);
    loop {
        let digit = (hash % 36) as u8;
        digits.push(if digit < 10 {
            b'0' + digit
        } else {
            b'a' + digit - 10
        });
        hash /= 36;
        if hash == 0 {
            break;
        }
    }
    digits.reverse();
    String::from_utf8(digits).unwrap_or_default()
}

fn id<'a>(value: &'a str, field: &'static str) -> Result<&'a str, BuildError> {
    if is_id(value) {
        Ok(value)
    } else {
        Err(BuildError::InvalidId { field })
    }
}

/// Percent-encodes every byte of `s`'s UTF-8 outside RFC 3986's unreserved set
/// (`A–Z a–z 0–9 - . _ ~`), with upper-case hex: 🔥 → `%F0%9F%94%A5`.
pub fn percent_encode(s: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xF)]));
        }
    }
    out
}

/// The `{emoji}` path segment of Create Reaction. A unicode emoji is percent-encoded
/// as UTF-8 with every codepoint kept (variation selector FE0F, ZWJ, skin tones);
/// without the encoding Discord answers 10014 Unknown Emoji. A custom emoji is
/// `name:id` as Discord's `message.mdx` documents it, with the colon left as is (a
/// colon is legal in a path segment, RFC 3986 `pchar`; twilight and discord.js send
/// it the same way). `<:name:id>`, `<a:name:id>` and `a:name:id` are accepted and
/// reduced to `name:id`, since Discord wants neither the wrapper nor the `a:`.
pub fn encode_emoji(emoji: &str) -> Result<String, BuildError> {
    if emoji.is_empty() {
        return Err(BuildError::InvalidEmoji { reason: "empty" });
    }
    if emoji.len() > MAX_EMOJI_BYTES {
        return Err(BuildError::InvalidEmoji { reason: "too long" });
    }
    if !emoji.contains(':') {
        return Ok(percent_encode(emoji));
    }
    let inner = emoji
        .strip_prefix('<')
        .and_then(|e| e.strip_suffix('>'))
        .unwrap_or(emoji);
    let parts: Vec<&str> = inner.split(':').collect();
    let (name, emoji_id) = match parts[..] {
        [name, emoji_id] => (name, emoji_id),
        ["" | "a", name, emoji_id] => (name, emoji_id),
        _ => {
            return Err(BuildError::InvalidEmoji {
                reason: "custom emoji must be name:id",
            })
        }
    };
    // Discord's emoji names are letters, digits and underscores, at most 32.
    let name_ok = (1..=32).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !name_ok {
        return Err(BuildError::InvalidEmoji {
            reason: "custom emoji name must be 1-32 letters, digits or _",
        });
    }
    if !is_id(emoji_id) {
        return Err(BuildError::InvalidEmoji {
            reason: "custom emoji id must be 1-20 digits",
        });
    }
    Ok(format!("{name}:{emoji_id}"))
}

/// The `X-Audit-Log-Reason` value naming `actor`: `relay: requested by <actor>`,
/// control characters dropped, percent-encoded, cut to [`MAX_AUDIT_REASON_LEN`]
/// between characters (never inside an escape). `None` for an empty actor.
pub fn audit_log_reason(actor: &str) -> Option<String> {
    let actor: String = actor.trim().chars().filter(|c| !c.is_control()).collect();
    if actor.is_empty() {
        return None;
    }
    let mut out = String::new();
    let mut buf = [0u8; 4];
    for c in format!("relay: requested by {actor}").chars() {
        let piece = percent_encode(c.encode_utf8(&mut buf));
        if out.len() + piece.len() > MAX_AUDIT_REASON_LEN {
            break;
        }
        out.push_str(&piece);
    }
    Some(out)
}

/// What relay reads from a Discord error body (`{code, message, retry_after, global}`).
/// The `message` and `errors` texts are deliberately not kept: they can echo request
/// data, so they never reach a reply.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ErrorBody {
    /// Discord's JSON error code (`50013` …).
    pub code: Option<u64>,
    /// A 429's `retry_after` (float seconds).
    pub retry_after: Option<Duration>,
    /// A 429's `global`.
    pub global: bool,
}

impl ErrorBody {
    /// Reads any bytes; what is missing or malformed is left empty. Never panics.
    pub fn parse(body: &[u8]) -> ErrorBody {
        if body.len() > MAX_ERROR_BODY {
            return ErrorBody::default();
        }
        let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(body) else {
            return ErrorBody::default();
        };
        ErrorBody {
            code: map.get("code").and_then(Value::as_u64),
            retry_after: map
                .get("retry_after")
                .and_then(Value::as_f64)
                .and_then(secs_to_duration),
            global: map.get("global").and_then(Value::as_bool).unwrap_or(false),
        }
    }
}

/// Discord's answer as a command reply.
///
/// - 2xx → `ack`.
/// - 429 → `rateLimited`: `retryAfterMs` from the body's `retry_after` (float seconds,
///   rounded up to the ms), else the `Retry-After` header, else `X-RateLimit-Reset-After`,
///   else 1 s; `global` from the body, `X-RateLimit-Global` or scope `global`.
/// - anything else → `error`, with the code chosen by the JSON error code first, then
///   the status:
///
///   | code | JSON codes | status |
///   |---|---|---|
///   | `discord_not_found` | 10003 channel, 10004 guild, 10007 member, 10008 message, 10013 user, 10014 emoji, 10015 webhook | 404 |
///   | `discord_forbidden` | 50001 missing access, 50013 missing permissions, 90001 reaction blocked | 403 |
///   | `discord_unauthorized` | — | 401 (the bot token is wrong: stop calling) |
///   | `discord_bad_request` | 30010 max reactions, 40032 not in voice, 50035 invalid form body | other 4xx |
///   | `discord_unavailable` | 130000 API overloaded | 5xx |
///   | `discord_error` | — | anything else (1xx, 3xx) |
///
///   The message is built only from the status, the numeric JSON code and a fixed
///   description: never from body text, which can echo what was sent.
pub fn interpret_response(status: u16, headers: &RateLimitHeaders, body: &[u8]) -> Reply {
    if (200..300).contains(&status) {
        return Reply::Ack;
    }
    let parsed = ErrorBody::parse(body);
    if status == 429 {
        let wait = parsed
            .retry_after
            .or(headers.retry_after)
            .or(headers.reset_after)
            .unwrap_or(DEFAULT_RETRY_AFTER);
        return reply_for_wait(wait, headers.is_global(parsed.global));
    }
    let known = parsed.code.and_then(describe_code);
    let code = match (known, status) {
        (Some((code, _)), _) => code,
        (None, 401) => "discord_unauthorized",
        (None, 403) => "discord_forbidden",
        (None, 404) => "discord_not_found",
        (None, 400..=499) => "discord_bad_request",
        (None, 500..=599) => "discord_unavailable",
        (None, _) => "discord_error",
    };
    let mut message = format!("Discord answered HTTP {status}");
    if let Some(phrase) = status_phrase(status) {
        message.push(' ');
        message.push_str(phrase);
    }
    match (parsed.code, known) {
        (Some(n), Some((_, what))) => message.push_str(&format!(", error {n}: {what}")),
        (Some(n), None) => message.push_str(&format!(", error {n}")),
        (None, _) => {}
    }
    Reply::Error {
        code: code.to_owned(),
        message,
    }
}

/// The JSON error codes relay's five commands can meet (`opcodes-and-status-codes.mdx`).
fn describe_code(code: u64) -> Option<(&'static str, &'static str)> {
    Some(match code {
        10003 => ("discord_not_found", "unknown channel"),
        10004 => ("discord_not_found", "unknown guild"),
        10007 => ("discord_not_found", "unknown member"),
        10008 => ("discord_not_found", "unknown message"),
        10013 => ("discord_not_found", "unknown user"),
        10014 => ("discord_not_found", "unknown emoji"),
        10015 => ("discord_not_found", "unknown webhook"),
        30010 => ("discord_bad_request", "maximum number of reactions reached"),
        40032 => (
            "discord_bad_request",
            "target user is not connected to voice",
        ),
        50001 => ("discord_forbidden", "missing access"),
        50013 => ("discord_forbidden", "missing permissions"),
        50035 => ("discord_bad_request", "invalid form body"),
        90001 => ("discord_forbidden", "reaction was blocked"),
        130000 => ("discord_unavailable", "API resource overloaded"),
        _ => return None,
    })
}

fn status_phrase(status: u16) -> Option<&'static str> {
    Some(match status {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Payload Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => return None,
    })
}

/// Fuzz entry: any bytes as a status, headers and body; interpreting must not panic
/// and must give a short ASCII message.
#[cfg(feature = "fuzzing")]
pub fn fuzz_response(bytes: &[u8]) {
    let status = match bytes {
        [a, b, ..] => u16::from_le_bytes([*a, *b]) % 1000,
        _ => 500,
    };
    let rest = bytes.get(2..).unwrap_or_default();
    let (head, body) = match rest.iter().position(|&b| b == 0) {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &[][..]),
    };
    let head = String::from_utf8_lossy(head);
    let headers = RateLimitHeaders::from_pairs(head.lines().filter_map(|l| l.split_once(':')));
    match interpret_response(status, &headers, body) {
        Reply::Error { code, message } => {
            assert!(code.starts_with("discord_"));
            assert!(message.is_ascii() && message.len() < 200, "{message}");
        }
        Reply::RateLimited { retry_after_ms, .. } => {
            assert!(retry_after_ms <= super::ratelimit::MAX_WAIT.as_millis() as u64);
        }
        Reply::Ack => assert!((200..300).contains(&status)),
        Reply::Messages(_) => panic!("interpreting a status never reads messages"),
    }
    // The same body as a history answer: read or refused, never a panic, and
    // every message read names its ids.
    if let Ok(list) = super::messages::parse_message_list(body, Some("1")) {
        for m in &list {
            assert!(!m.message.id.is_empty() && !m.message.channel_id.is_empty());
        }
        // Attributed as relay's webhook posts: the same messages, only authors
        // (and `via`) of webhook messages may differ.
        let mut posts = super::webhook::RelayPosts::default();
        posts.note_application(Some(&json!({"id": "1"})));
        let attributed = super::messages::parse_message_list_attributed(body, Some("1"), &posts)
            .expect("the same body reads the same way");
        assert_eq!(attributed.len(), list.len());
        for (a, m) in attributed.iter().zip(&list) {
            assert_eq!(a.message.id, m.message.id);
            assert_eq!(a.message.content, m.message.content);
            assert!(a.message.via.is_none() || m.message.author.bot);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload::{AddReaction, SendMessage, TriggerTyping, VoiceMove, VoiceMute};
    use proptest::prelude::*;

    fn command(body: CommandBody, actor: &str) -> GatewayCommand {
        GatewayCommand {
            body,
            meta: crate::frame::TraceMeta {
                trace_id: "t".into(),
                sent_at: "2026-01-01T00:00:00.000Z".into(),
                request_id: Some("req-1".into()),
                actor: Some(actor.into()),
                access: None,
                extra: Default::default(),
            },
        }
    }

    fn build(body: &CommandBody, actor: &str) -> Result<RestRequest, BuildError> {
        build_request(&command(body.clone(), actor))
    }

    fn req(cmd: CommandBody) -> RestRequest {
        build(&cmd, "user-42").unwrap()
    }

    fn body_json(r: &RestRequest) -> Value {
        serde_json::from_str(r.body.as_deref().expect("a body")).unwrap()
    }

    fn pairs(h: &[(&str, &str)]) -> Vec<(String, String)> {
        h.iter()
            .map(|&(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    fn react(emoji: &str) -> Result<RestRequest, BuildError> {
        build(
            &CommandBody::AddReaction(AddReaction {
                channel_id: "1".into(),
                message_id: "2".into(),
                emoji: emoji.into(),
            }),
            "a",
        )
    }

    /// Inverse of `percent_encode`, for checking what Discord will read.
    fn percent_decode(s: &str) -> String {
        let b = s.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'%' {
                out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
                i += 3;
            } else {
                out.push(b[i]);
                i += 1;
            }
        }
        String::from_utf8(out).unwrap()
    }

    const REASON_42: &str = "relay%3A%20requested%20by%20user-42";

    #[test]
    fn send_message_posts_content_that_pings_nobody() {
        let r = req(CommandBody::SendMessage(SendMessage {
            channel_id: "123".into(),
            content: "hi @everyone".into(),
        }));
        assert_eq!(
            (r.method, r.path.as_str()),
            (Method::Post, "/channels/123/messages")
        );
        assert_eq!(
            r.headers,
            pairs(&[
                ("User-Agent", USER_AGENT),
                ("Content-Type", "application/json")
            ])
        );
        assert_eq!(
            body_json(&r),
            json!({
                "content": "hi @everyone",
                "allowed_mentions": {"parse": []},
                "nonce": message_nonce("req-1"),
                "enforce_nonce": true,
            })
        );
        assert_eq!(r.route.as_str(), "POST /channels/123/messages");
        assert_eq!(
            r.url(API_BASE),
            "https://discord.com/api/v10/channels/123/messages"
        );
        assert_eq!(
            r.header("authorization"),
            None,
            "the token is the driver's business"
        );
    }

    #[test]
    fn add_reaction_puts_an_encoded_emoji_without_body() {
        let r = react("🔥").unwrap();
        assert_eq!(
            (r.method, r.path.as_str()),
            (
                Method::Put,
                "/channels/1/messages/2/reactions/%F0%9F%94%A5/@me"
            )
        );
        assert_eq!(r.headers, pairs(&[("User-Agent", USER_AGENT)]));
        assert_eq!(r.body, None);
        assert_eq!(
            r.route.as_str(),
            "PUT /channels/1/messages/:id/reactions/:emoji/@me"
        );
    }

    #[test]
    fn emoji_are_encoded_codepoint_for_codepoint() {
        let cases = [
            ("🔥", "%F0%9F%94%A5"),
            ("👍🏽", "%F0%9F%91%8D%F0%9F%8F%BD"),
            ("❤️", "%E2%9D%A4%EF%B8%8F"),
            (
                "👨‍👩‍👧",
                "%F0%9F%91%A8%E2%80%8D%F0%9F%91%A9%E2%80%8D%F0%9F%91%A7",
            ),
            ("#️⃣", "%23%EF%B8%8F%E2%83%A3"),
            ("LUL:41771983429993937", "LUL:41771983429993937"),
            ("<:LUL:41771983429993937>", "LUL:41771983429993937"),
            ("<a:party_1:5>", "party_1:5"),
            ("a:party:5", "party:5"),
            ("a:5", "a:5"),
            (":a:5", "a:5"),
        ];
        for (emoji, want) in cases {
            assert_eq!(encode_emoji(emoji).as_deref(), Ok(want), "{emoji}");
            assert_eq!(
                react(emoji).unwrap().path,
                format!("/channels/1/messages/2/reactions/{want}/@me")
            );
        }
        for bad in [
            "",
            "LUL:",
            ":5",
            "LUL:12a",
            "bad name:5",
            "a/b:5",
            "x:../5",
            "<:x:5",
        ] {
            assert!(
                matches!(encode_emoji(bad), Err(BuildError::InvalidEmoji { .. })),
                "{bad:?}"
            );
        }
        assert!(
            encode_emoji(&"🔥".repeat(33)).is_err(),
            "longer than any real emoji"
        );
        assert_eq!(percent_encode("a-._~/?#%"), "a-._~%2F%3F%23%25");
    }

    #[test]
    fn typing_posts_without_body() {
        let r = req(CommandBody::TypingStart(TriggerTyping {
            channel_id: "7".into(),
        }));
        assert_eq!(
            (r.method, r.path.as_str()),
            (Method::Post, "/channels/7/typing")
        );
        assert_eq!(r.headers, pairs(&[("User-Agent", USER_AGENT)]));
        assert_eq!(r.body, None);
    }

    #[test]
    fn voice_move_patches_the_member_and_names_the_actor() {
        let r = req(CommandBody::VoiceMove(VoiceMove {
            guild_id: "10".into(),
            user_id: "20".into(),
            channel_id: Some("30".into()),
        }));
        assert_eq!(
            (r.method, r.path.as_str()),
            (Method::Patch, "/guilds/10/members/20")
        );
        assert_eq!(
            r.headers,
            pairs(&[
                ("User-Agent", USER_AGENT),
                ("Content-Type", "application/json"),
                ("X-Audit-Log-Reason", REASON_42),
            ])
        );
        assert_eq!(body_json(&r), json!({"channel_id": "30"}));
        assert_eq!(r.route.as_str(), "PATCH /guilds/10/members/:id");
        let r = req(CommandBody::VoiceMove(VoiceMove {
            guild_id: "10".into(),
            user_id: "20".into(),
            channel_id: None,
        }));
        assert_eq!(
            body_json(&r),
            json!({"channel_id": null}),
            "null disconnects"
        );
    }

    #[test]
    fn voice_mute_patches_the_member() {
        for mute in [true, false] {
            let r = req(CommandBody::VoiceMute(VoiceMute {
                guild_id: "10".into(),
                user_id: "20".into(),
                mute,
            }));
            assert_eq!(
                (r.method, r.path.as_str()),
                (Method::Patch, "/guilds/10/members/20")
            );
            assert_eq!(body_json(&r), json!({ "mute": mute }));
            assert_eq!(r.header("x-audit-log-reason"), Some(REASON_42));
        }
    }

    #[test]
    fn ids_that_are_not_digits_are_refused() {
        for bad in [
            "",
            "12a",
            "../1",
            "1/2",
            "1?x",
            " 1",
            "-1",
            "123456789012345678901",
        ] {
            let cmds = [
                CommandBody::SendMessage(SendMessage {
                    channel_id: bad.into(),
                    content: "x".into(),
                }),
                CommandBody::TypingStart(TriggerTyping {
                    channel_id: bad.into(),
                }),
                CommandBody::AddReaction(AddReaction {
                    channel_id: "1".into(),
                    message_id: bad.into(),
                    emoji: "🔥".into(),
                }),
                CommandBody::VoiceMove(VoiceMove {
                    guild_id: "1".into(),
                    user_id: "2".into(),
                    channel_id: Some(bad.into()),
                }),
                CommandBody::VoiceMute(VoiceMute {
                    guild_id: bad.into(),
                    user_id: "2".into(),
                    mute: true,
                }),
            ];
            let fields = [
                "channelId",
                "channelId",
                "messageId",
                "channelId",
                "guildId",
            ];
            for (cmd, field) in cmds.iter().zip(fields) {
                assert_eq!(
                    build(cmd, "a"),
                    Err(BuildError::InvalidId { field }),
                    "{bad:?}"
                );
            }
        }
        assert!(build(
            &CommandBody::TypingStart(TriggerTyping {
                channel_id: "12345678901234567890".into()
            }),
            "a"
        )
        .is_ok());
    }

    #[test]
    fn content_length_is_checked_in_characters() {
        let send = |content: String| {
            build(
                &CommandBody::SendMessage(SendMessage {
                    channel_id: "1".into(),
                    content,
                }),
                "a",
            )
        };
        assert!(
            send("é".repeat(2000)).is_ok(),
            "4000 bytes but 2000 characters"
        );
        assert_eq!(
            send("é".repeat(2001)),
            Err(BuildError::ContentTooLong { chars: 2001 })
        );
        assert_eq!(send(String::new()), Err(BuildError::EmptyContent));
    }

    #[test]
    fn the_nonce_follows_the_request_id() {
        assert_eq!(message_nonce("req-1"), message_nonce("req-1"));
        assert_ne!(message_nonce("req-1"), message_nonce("req-2"));
        assert_ne!(message_nonce(""), message_nonce("\0"));
        let mut other = command(
            CommandBody::SendMessage(SendMessage {
                channel_id: "1".into(),
                content: "x".into(),
            }),
            "a",
        );
        other.meta.request_id = Some("req-2".into());
        let r = build_request(&other).unwrap();
        assert_eq!(body_json(&r)["nonce"], message_nonce("req-2"));
    }

    #[test]
    fn audit_log_reason_is_encoded_and_capped() {
        assert_eq!(
            audit_log_reason("Zoë\r\nX-Evil: 1").as_deref(),
            Some("relay%3A%20requested%20by%20Zo%C3%ABX-Evil%3A%201"),
            "control characters dropped, the rest encoded: no header injection"
        );
        assert_eq!(audit_log_reason(""), None);
        assert_eq!(audit_log_reason(" \n "), None);
        let long = audit_log_reason(&"é".repeat(400)).unwrap();
        assert!(long.len() <= MAX_AUDIT_REASON_LEN, "{}", long.len());
        assert!(
            long.len() > MAX_AUDIT_REASON_LEN - 6,
            "cut only as much as needed"
        );
        assert!(long.ends_with("%C3%A9"), "never cut inside a character");
        let decoded = percent_decode(&long);
        assert!(format!("relay: requested by {}", "é".repeat(400)).starts_with(&decoded));
        let no_reason = build(
            &CommandBody::VoiceMute(VoiceMute {
                guild_id: "1".into(),
                user_id: "2".into(),
                mute: true,
            }),
            "",
        )
        .unwrap();
        assert_eq!(no_reason.header("X-Audit-Log-Reason"), None);
    }

    fn error(status: u16, body: &str) -> (String, String) {
        match interpret_response(status, &RateLimitHeaders::default(), body.as_bytes()) {
            Reply::Error { code, message } => (code, message),
            other => panic!("{status}: {other:?}"),
        }
    }

    #[test]
    fn responses_become_replies() {
        let none = RateLimitHeaders::default();
        assert_eq!(interpret_response(200, &none, br#"{"id":"1"}"#), Reply::Ack);
        assert_eq!(interpret_response(204, &none, b""), Reply::Ack);
        assert_eq!(
            error(
                400,
                r#"{"code": 50035, "message": "Invalid Form Body", "errors": {"content": {}}}"#
            ),
            (
                "discord_bad_request".into(),
                "Discord answered HTTP 400 Bad Request, error 50035: invalid form body".into()
            )
        );
        assert_eq!(
            error(400, r#"{"code": 40032, "message": "Target user is not connected to voice."}"#).1,
            "Discord answered HTTP 400 Bad Request, error 40032: target user is not connected to voice"
        );
        assert_eq!(
            error(403, r#"{"code": 50013, "message": "Missing Permissions"}"#),
            (
                "discord_forbidden".into(),
                "Discord answered HTTP 403 Forbidden, error 50013: missing permissions".into()
            )
        );
        assert_eq!(
            error(404, r#"{"code": 10008, "message": "Unknown Message"}"#),
            (
                "discord_not_found".into(),
                "Discord answered HTTP 404 Not Found, error 10008: unknown message".into()
            )
        );
        assert_eq!(
            error(400, r#"{"code": 10014}"#).0,
            "discord_not_found",
            "the JSON code wins"
        );
        assert_eq!(
            error(404, "<html>nope</html>"),
            (
                "discord_not_found".into(),
                "Discord answered HTTP 404 Not Found".into()
            )
        );
        assert_eq!(
            error(400, r#"{"code": 77777}"#).1,
            "Discord answered HTTP 400 Bad Request, error 77777"
        );
        assert_eq!(error(401, "").0, "discord_unauthorized");
        assert_eq!(
            error(502, "<html>bad gateway</html>").0,
            "discord_unavailable"
        );
        assert_eq!(error(302, "").0, "discord_error");
    }

    #[test]
    fn a_429_becomes_rate_limited_in_milliseconds() {
        let none = RateLimitHeaders::default();
        let body =
            br#"{"message": "You are being rate limited.", "retry_after": 64.57, "global": false}"#;
        assert_eq!(
            interpret_response(429, &none, body),
            Reply::RateLimited {
                retry_after_ms: 64_570,
                global: false
            }
        );
        let body = br#"{"message": "x", "retry_after": 0.0011, "global": true, "code": 0}"#;
        assert_eq!(
            interpret_response(429, &none, body),
            Reply::RateLimited {
                retry_after_ms: 2,
                global: true
            },
            "rounded up, never early"
        );
        let headers =
            RateLimitHeaders::from_pairs([("Retry-After", "3"), ("X-RateLimit-Scope", "global")]);
        assert_eq!(
            interpret_response(429, &headers, b"<html>cloudflare</html>"),
            Reply::RateLimited {
                retry_after_ms: 3000,
                global: true
            },
            "no JSON body: the headers say how long"
        );
        assert_eq!(
            interpret_response(429, &none, b""),
            Reply::RateLimited {
                retry_after_ms: 1000,
                global: false
            }
        );
        let negative = br#"{"retry_after": -5, "global": "yes"}"#;
        assert_eq!(
            interpret_response(429, &none, negative),
            Reply::RateLimited {
                retry_after_ms: 1000,
                global: false
            }
        );
    }

    #[test]
    fn error_body_reads_only_numbers_and_flags() {
        assert_eq!(
            ErrorBody::parse(
                br#"{"code": 50013, "retry_after": 1.5, "global": true, "message": "m"}"#
            ),
            ErrorBody {
                code: Some(50013),
                retry_after: Some(Duration::from_millis(1500)),
                global: true
            }
        );
        assert_eq!(ErrorBody::parse(b"[1,2]"), ErrorBody::default());
        assert_eq!(ErrorBody::parse(&[0xff, 0xfe]), ErrorBody::default());
        let deep = "[".repeat(60_000);
        assert_eq!(ErrorBody::parse(deep.as_bytes()), ErrorBody::default());
    }

    /// Bodies that carry `marker` wherever Discord's text could go.
    fn body_with(marker: String) -> impl Strategy<Value = Vec<u8>> {
        let m = marker.clone();
        prop_oneof![
            (any::<u32>(), proptest::option::of(0.0f64..100.0)).prop_map(move |(code, retry)| {
                json!({"code": code, "message": m, "retry_after": retry, "errors": {m.clone(): {"_errors": [{"code": m, "message": m}]}}})
                    .to_string()
                    .into_bytes()
            }),
            (proptest::collection::vec(any::<u8>(), 0..64), proptest::collection::vec(any::<u8>(), 0..64))
                .prop_map(move |(a, b)| [a, marker.clone().into_bytes(), b].concat()),
            "[ -~]{0,40}".prop_map(|s| format!(r#"{{"code": "{s}", "message": "{s}"}}"#).into_bytes()),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn replies_never_echo_the_body(
            (marker, body) in "Zq[a-z]{6}".prop_flat_map(|m| (Just(m.clone()), body_with(m))),
            status in any::<u16>(),
            retry_after in proptest::option::of("[ -~]{0,12}"),
        ) {
            let headers = RateLimitHeaders::from_pairs(retry_after.as_deref().map(|v| ("Retry-After", v)));
            match interpret_response(status, &headers, &body) {
                Reply::Ack => prop_assert!((200..300).contains(&status)),
                Reply::RateLimited { retry_after_ms, .. } => {
                    prop_assert_eq!(status, 429);
                    prop_assert!(retry_after_ms <= MAX_WAIT_MS);
                }
                Reply::Error { code, message } => {
                    prop_assert!(!message.contains(&marker) && !code.contains(&marker), "{}", message);
                    prop_assert!(message.is_ascii() && message.len() < 120, "{}", message);
                    prop_assert!(code.starts_with("discord_"));
                }
                Reply::Messages(_) => prop_assert!(false, "interpreting never reads messages"),
            }
        }

        #[test]
        fn any_bytes_are_interpreted_without_panic(status in any::<u16>(), body in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = interpret_response(status, &RateLimitHeaders::default(), &body);
            #[cfg(feature = "fuzzing")]
            fuzz_response(&[&status.to_le_bytes()[..], &body].concat());
        }

        #[test]
        fn unicode_emoji_round_trip_through_the_encoding(emoji in "[^:]{1,8}") {
            if let Ok(seg) = encode_emoji(&emoji) {
                prop_assert!(seg.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~%".contains(&b)));
                prop_assert_eq!(percent_decode(&seg), emoji);
            }
        }

        #[test]
        fn audit_reasons_are_header_safe_and_bounded(actor in any::<String>()) {
            if let Some(r) = audit_log_reason(&actor) {
                prop_assert!(!r.is_empty() && r.len() <= MAX_AUDIT_REASON_LEN);
                prop_assert!(r.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~%".contains(&b)));
                let decoded = percent_decode(&r);
                prop_assert!(decoded.starts_with("relay: requested by "));
                prop_assert!(!decoded.chars().any(char::is_control));
            }
        }
    }

    const MAX_WAIT_MS: u64 = super::super::ratelimit::MAX_WAIT.as_millis() as u64;

    proptest! {
        #[test]
        fn nonces_fit_discord_for_any_request_id(id in any::<String>()) {
            let nonce = message_nonce(&id);
            prop_assert!(!nonce.is_empty() && nonce.len() <= MAX_NONCE_LEN, "{nonce}");
            prop_assert!(nonce.bytes().all(|b| b.is_ascii_digit() || b.is_ascii_lowercase()));
            prop_assert_eq!(nonce, message_nonce(&id.clone()));
        }
    }
}
