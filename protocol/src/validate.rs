//! Browser command bodies (CONTRACT.md §3) → typed [`CommandBody`] values, or a
//! list of field issues for the 400 answer: relay's equivalent of the original
//! service's Zod schemas.
//!
//! What it owns, and the decisions the contract left open:
//!
//! - **Shape.** The body must be UTF-8 JSON holding an object. Unknown fields are
//!   ignored. Every field is checked and every problem reported at once, one issue
//!   per field, in the order the fields are declared (as Zod does).
//! - **Snowflakes** are JSON strings of 1–20 ASCII digits whose value fits a `u64`
//!   (20 digits can exceed `u64::MAX`; such ids cannot exist, so they are refused).
//!   Leading zeros are accepted, as the contract only asks for digits, and the text
//!   is passed on unchanged. Ids sent as JSON numbers are refused: above 2^53 they
//!   have already lost precision in the browser.
//! - **`content`** is 1–2000 Unicode scalar values (`char`s, not bytes, not UTF-16
//!   units). Whitespace-only text is refused ("must not be blank") because Discord
//!   refuses it too ("Cannot send an empty message"); failing here costs no
//!   gateway round trip and no rate-limit token. NUL is refused, since no client
//!   types it and it truncates text in C-based tooling. Every other character,
//!   control characters included, is allowed: text is sanitized where it is logged
//!   or re-broadcast, not here. The text is not trimmed or otherwise changed.
//! - **`emoji`** is either a unicode emoji or a custom emoji. A unicode emoji is
//!   checked for shape only (this is not an emoji database; Discord answers
//!   `Unknown Emoji` for the rest): at most 32 chars, no whitespace, no control or
//!   bidi-override chars, no ASCII except a keycap base (`0-9#*`) directly followed
//!   by U+20E3 (optionally after U+FE0F), and at least one char that is not a
//!   joiner, variation selector, keycap mark or tag. A custom emoji is `name:id`,
//!   the name 2–32 of `[A-Za-z0-9_]` and the id a snowflake. Discord's own markup
//!   forms `a:name:id`, `<:name:id>` and `<a:name:id>` are what users copy out of
//!   Discord, so they are accepted and normalised to `name:id`, which is the only
//!   form Discord's REST route takes.
//! - **`voiceMove.channelId`** is a snowflake, or `null` to disconnect the member.
//!   It must be present: a forgotten field must not silently disconnect someone.
//! - **`voiceMute.mute`** is a JSON boolean; `"true"` and `1` are refused.
//! - **No reflection.** Issue messages are fixed text chosen by this module (every
//!   field check returns `&'static str`), and JSON syntax errors are reported by
//!   kind and position only, so a 400 body or a log line never echoes what the
//!   caller sent.

use std::borrow::Cow;
use std::fmt;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::payload::{AddReaction, CommandBody, SendMessage, TriggerTyping, VoiceMove, VoiceMute};

/// Longest message text, in Unicode scalar values.
pub const MAX_CONTENT_CHARS: usize = 2000;
/// Longest snowflake, in ASCII digits.
pub const MAX_SNOWFLAKE_DIGITS: usize = 20;
/// Longest unicode emoji, in Unicode scalar values (a family with skin tones is 11).
pub const MAX_UNICODE_EMOJI_CHARS: usize = 32;
/// Shortest custom emoji name.
pub const MIN_CUSTOM_EMOJI_NAME: usize = 2;
/// Longest custom emoji name.
pub const MAX_CUSTOM_EMOJI_NAME: usize = 32;

const REQUIRED: &str = "required";
const EXPECTED_SNOWFLAKE: &str = "expected a snowflake id string";
const SNOWFLAKE_DIGITS: &str = "expected a snowflake id string of 1–20 digits";
const SNOWFLAKE_RANGE: &str = "snowflake id is larger than 64 bits";
const EXPECTED_STRING: &str = "expected a string";
const EXPECTED_EMOJI: &str = "expected a unicode emoji, or a custom emoji as name:id";
const CUSTOM_EMOJI_NAME: &str = "custom emoji name must be 2–32 letters, digits or underscores";
const CUSTOM_EMOJI_ID: &str = "custom emoji id must be a snowflake of 1–20 digits";

/// One of the five browser command endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// `POST /api/send-message`
    SendMessage,
    /// `POST /api/add-reaction`
    AddReaction,
    /// `POST /api/typing-start`
    TypingStart,
    /// `POST /api/voice/move-member`
    VoiceMove,
    /// `POST /api/voice/mute-member`
    VoiceMute,
}

impl Endpoint {
    /// Every endpoint, in contract order.
    pub const ALL: [Endpoint; 5] = [
        Endpoint::SendMessage,
        Endpoint::AddReaction,
        Endpoint::TypingStart,
        Endpoint::VoiceMove,
        Endpoint::VoiceMute,
    ];

    /// The endpoint served at `path`. The match is exact: the caller strips the
    /// query string first; a trailing slash or different case is another path.
    pub fn from_path(path: &str) -> Option<Endpoint> {
        Endpoint::ALL.into_iter().find(|e| e.path() == path)
    }

    /// The HTTP path of this endpoint.
    pub fn path(&self) -> &'static str {
        match self {
            Endpoint::SendMessage => "/api/send-message",
            Endpoint::AddReaction => "/api/add-reaction",
            Endpoint::TypingStart => "/api/typing-start",
            Endpoint::VoiceMove => "/api/voice/move-member",
            Endpoint::VoiceMute => "/api/voice/mute-member",
        }
    }

    /// The link command `type` this endpoint produces (see [`CommandBody::type_name`]).
    pub fn command_type(&self) -> &'static str {
        match self {
            Endpoint::SendMessage => "sendMessage",
            Endpoint::AddReaction => "addReaction",
            Endpoint::TypingStart => "typingStart",
            Endpoint::VoiceMove => "voiceMove",
            Endpoint::VoiceMute => "voiceMute",
        }
    }

    /// The session role needed. Known from the path alone, because the contract
    /// checks 403 before 400: the role is checked before the body is read.
    pub fn required_role(&self) -> &'static str {
        match self {
            Endpoint::VoiceMove | Endpoint::VoiceMute => "voice:moderate",
            _ => "chat:write",
        }
    }

    /// The body fields, in declaration order (the order issues are reported in).
    pub fn fields(&self) -> &'static [&'static str] {
        match self {
            Endpoint::SendMessage => &["channelId", "content"],
            Endpoint::AddReaction => &["channelId", "messageId", "emoji"],
            Endpoint::TypingStart => &["channelId"],
            Endpoint::VoiceMove => &["guildId", "userId", "channelId"],
            Endpoint::VoiceMute => &["guildId", "userId", "mute"],
        }
    }
}

/// One step of an issue's path: an object key or an array index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum PathSegment {
    /// An object key, serialized as a JSON string.
    Key(Cow<'static, str>),
    /// An array index, serialized as a JSON number.
    Index(usize),
}

/// One problem with the body. `path` is empty for the body as a whole.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Issue {
    /// Where the problem is, e.g. `["content"]`.
    pub path: Vec<PathSegment>,
    /// What is wrong, in words; never contains the caller's value.
    pub message: String,
}

impl Issue {
    fn at(field: &'static str, message: &'static str) -> Issue {
        Issue {
            path: vec![PathSegment::Key(Cow::Borrowed(field))],
            message: message.to_string(),
        }
    }

    fn whole(message: impl Into<String>) -> Issue {
        Issue {
            path: Vec::new(),
            message: message.into(),
        }
    }
}

/// A rejected body: the 400 answer's `error.message` and `issues`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// Summary for `error.message`.
    pub message: String,
    /// Every problem found, one per field, in field order.
    pub issues: Vec<Issue>,
}

impl Invalid {
    fn whole(message: String) -> Invalid {
        Invalid {
            issues: vec![Issue::whole(message.clone())],
            message,
        }
    }
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        for issue in self.issues.iter().filter(|i| !i.path.is_empty()) {
            f.write_str("; ")?;
            for (n, seg) in issue.path.iter().enumerate() {
                if n > 0 {
                    f.write_str(".")?;
                }
                match seg {
                    PathSegment::Key(k) => f.write_str(k)?,
                    PathSegment::Index(i) => write!(f, "{i}")?,
                }
            }
            write!(f, ": {}", issue.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for Invalid {}

/// Validates a request body for `endpoint`: bytes → typed command, or every issue found.
pub fn validate(endpoint: Endpoint, body: &[u8]) -> Result<CommandBody, Invalid> {
    let text = std::str::from_utf8(body)
        .map_err(|_| Invalid::whole("invalid JSON: body is not UTF-8".to_string()))?;
    let value: Value = serde_json::from_str(text).map_err(|e| Invalid::whole(json_error(&e)))?;
    validate_value(endpoint, &value)
}

/// Validates an already parsed body, for callers that get JSON another way
/// (the legacy WebSocket bridge).
pub fn validate_value(endpoint: Endpoint, value: &Value) -> Result<CommandBody, Invalid> {
    let Value::Object(obj) = value else {
        return Err(Invalid {
            message: "expected a JSON object".to_string(),
            issues: vec![Issue::whole("expected an object")],
        });
    };
    let mut f = Fields {
        obj,
        issues: Vec::new(),
    };
    let body = match endpoint {
        Endpoint::SendMessage => {
            let channel_id = f.check("channelId", snowflake);
            let content = f.check("content", content);
            channel_id.zip(content).map(|(channel_id, content)| {
                CommandBody::SendMessage(SendMessage {
                    channel_id,
                    content,
                })
            })
        }
        Endpoint::AddReaction => {
            let channel_id = f.check("channelId", snowflake);
            let message_id = f.check("messageId", snowflake);
            let emoji = f.check("emoji", emoji);
            match (channel_id, message_id, emoji) {
                (Some(channel_id), Some(message_id), Some(emoji)) => {
                    Some(CommandBody::AddReaction(AddReaction {
                        channel_id,
                        message_id,
                        emoji,
                    }))
                }
                _ => None,
            }
        }
        Endpoint::TypingStart => f
            .check("channelId", snowflake)
            .map(|channel_id| CommandBody::TypingStart(TriggerTyping { channel_id })),
        Endpoint::VoiceMove => {
            let guild_id = f.check("guildId", snowflake);
            let user_id = f.check("userId", snowflake);
            let channel_id = f.check("channelId", snowflake_or_null);
            match (guild_id, user_id, channel_id) {
                (Some(guild_id), Some(user_id), Some(channel_id)) => {
                    Some(CommandBody::VoiceMove(VoiceMove {
                        guild_id,
                        user_id,
                        channel_id,
                    }))
                }
                _ => None,
            }
        }
        Endpoint::VoiceMute => {
            let guild_id = f.check("guildId", snowflake);
            let user_id = f.check("userId", snowflake);
            let mute = f.check("mute", boolean);
            match (guild_id, user_id, mute) {
                (Some(guild_id), Some(user_id), Some(mute)) => {
                    Some(CommandBody::VoiceMute(VoiceMute {
                        guild_id,
                        user_id,
                        mute,
                    }))
                }
                _ => None,
            }
        }
    };
    match body {
        Some(body) if f.issues.is_empty() => Ok(body),
        _ => Err(f.invalid()),
    }
}

/// Whether `s` is a snowflake as this module accepts it: 1–20 ASCII digits, fits a `u64`.
/// Also meant for ids outside bodies, such as the stream's `channels=` filter.
pub fn is_snowflake(s: &str) -> bool {
    check_snowflake(s).is_ok()
}

/// Collects one issue per failed field.
struct Fields<'a> {
    obj: &'a Map<String, Value>,
    issues: Vec<Issue>,
}

impl Fields<'_> {
    fn check<T>(
        &mut self,
        field: &'static str,
        rule: fn(Option<&Value>) -> Result<T, &'static str>,
    ) -> Option<T> {
        match rule(self.obj.get(field)) {
            Ok(v) => Some(v),
            Err(message) => {
                self.issues.push(Issue::at(field, message));
                None
            }
        }
    }

    fn invalid(self) -> Invalid {
        let mut message = String::from("invalid fields:");
        for (n, issue) in self.issues.iter().enumerate() {
            message.push_str(if n == 0 { " " } else { ", " });
            if let Some(PathSegment::Key(k)) = issue.path.first() {
                message.push_str(k);
            }
        }
        Invalid {
            message,
            issues: self.issues,
        }
    }
}

/// Describes a JSON syntax error by kind and position. serde_json's syntax and
/// EOF messages are fixed text plus line and column; anything else is summarised
/// so no part of the input can be echoed.
fn json_error(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    match e.classify() {
        Category::Syntax | Category::Eof => format!("invalid JSON: {e}"),
        Category::Data | Category::Io => format!(
            "invalid JSON: unreadable value at line {} column {}",
            e.line(),
            e.column()
        ),
    }
}

fn check_snowflake(s: &str) -> Result<(), &'static str> {
    if s.is_empty() || s.len() > MAX_SNOWFLAKE_DIGITS || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(SNOWFLAKE_DIGITS);
    }
    s.parse::<u64>().map(|_| ()).map_err(|_| SNOWFLAKE_RANGE)
}

fn snowflake(v: Option<&Value>) -> Result<String, &'static str> {
    match v {
        None => Err(REQUIRED),
        Some(Value::String(s)) => check_snowflake(s).map(|()| s.clone()),
        Some(_) => Err(EXPECTED_SNOWFLAKE),
    }
}

fn snowflake_or_null(v: Option<&Value>) -> Result<Option<String>, &'static str> {
    match v {
        None => Err("required (use null to disconnect)"),
        Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => check_snowflake(s).map(|()| Some(s.clone())),
        Some(_) => Err("expected a snowflake id string or null"),
    }
}

fn boolean(v: Option<&Value>) -> Result<bool, &'static str> {
    match v {
        None => Err(REQUIRED),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err("expected a boolean"),
    }
}

fn string(v: Option<&Value>) -> Result<&String, &'static str> {
    match v {
        None => Err(REQUIRED),
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(EXPECTED_STRING),
    }
}

fn content(v: Option<&Value>) -> Result<String, &'static str> {
    let s = string(v)?;
    if s.is_empty() {
        return Err("must not be empty");
    }
    // Counting stops early: a 64 KiB body never needs a full walk to be refused.
    if s.chars().nth(MAX_CONTENT_CHARS).is_some() {
        return Err("must be at most 2000 characters");
    }
    if s.contains('\0') {
        return Err("must not contain NUL characters");
    }
    if s.chars().all(char::is_whitespace) {
        return Err("must not be blank");
    }
    Ok(s.clone())
}

fn emoji(v: Option<&Value>) -> Result<String, &'static str> {
    let s = string(v)?;
    if s.is_empty() {
        return Err("must not be empty");
    }
    if s.contains(':') || s.starts_with('<') {
        custom_emoji(s)
    } else {
        unicode_emoji(s).map(|()| s.clone())
    }
}

/// `name:id`, `a:name:id`, `<:name:id>` or `<a:name:id>` → `name:id`.
fn custom_emoji(s: &str) -> Result<String, &'static str> {
    let (wrapped, inner) = match s.strip_prefix('<') {
        Some(rest) => (true, rest.strip_suffix('>').ok_or(EXPECTED_EMOJI)?),
        None => (false, s),
    };
    let mut parts = inner.split(':');
    let (name, id) = match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(name), Some(id), None, None) if !wrapped => (name, id),
        (Some("a"), Some(name), Some(id), None) => (name, id),
        (Some(""), Some(name), Some(id), None) if wrapped => (name, id),
        _ => return Err(EXPECTED_EMOJI),
    };
    let name_ok = (MIN_CUSTOM_EMOJI_NAME..=MAX_CUSTOM_EMOJI_NAME).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !name_ok {
        return Err(CUSTOM_EMOJI_NAME);
    }
    check_snowflake(id).map_err(|_| CUSTOM_EMOJI_ID)?;
    Ok(format!("{name}:{id}"))
}

/// Characters that only modify or join the emoji around them.
fn is_emoji_modifier(c: char) -> bool {
    matches!(
        c,
        '\u{200D}' | '\u{FE0E}' | '\u{FE0F}' | '\u{20E3}' | '\u{E0020}'..='\u{E007F}'
    )
}

/// Bidi embedding, override and isolate controls: never part of an emoji, and
/// they can reorder the text around them where it is displayed.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}')
}

fn unicode_emoji(s: &str) -> Result<(), &'static str> {
    let chars: Vec<char> = s.chars().take(MAX_UNICODE_EMOJI_CHARS + 1).collect();
    if chars.len() > MAX_UNICODE_EMOJI_CHARS {
        return Err(EXPECTED_EMOJI);
    }
    for (i, &c) in chars.iter().enumerate() {
        if c.is_whitespace() || c.is_control() || is_bidi_control(c) {
            return Err(EXPECTED_EMOJI);
        }
        if c.is_ascii() {
            // Only a keycap base: 1️⃣ is '1', U+FE0F, U+20E3 (the FE0F is optional).
            let keycap = matches!(c, '0'..='9' | '#' | '*')
                && match chars.get(i + 1) {
                    Some('\u{20E3}') => true,
                    Some('\u{FE0F}') => chars.get(i + 2) == Some(&'\u{20E3}'),
                    _ => false,
                };
            if !keycap {
                return Err(EXPECTED_EMOJI);
            }
        }
    }
    if chars.iter().all(|&c| is_emoji_modifier(c)) {
        return Err(EXPECTED_EMOJI);
    }
    Ok(())
}

/// Fuzz entry: every endpoint over any bytes never panics; an accepted body
/// serializes, and validating its own `data` again yields the same command
/// (normalisation is idempotent); a rejected object names only its endpoint's fields.
#[cfg(feature = "fuzzing")]
pub fn fuzz_validate(bytes: &[u8]) {
    for endpoint in Endpoint::ALL {
        match validate(endpoint, bytes) {
            Ok(body) => {
                assert_eq!(body.type_name(), endpoint.command_type());
                let json = serde_json::to_value(&body).expect("command serializes");
                let data = serde_json::to_vec(&json["data"]).expect("data serializes");
                let again = validate(endpoint, &data).expect("accepted data validates again");
                assert_eq!(again, body);
            }
            Err(invalid) => {
                assert!(!invalid.issues.is_empty());
                for issue in &invalid.issues {
                    match issue.path.as_slice() {
                        [] => {}
                        [PathSegment::Key(k)] => assert!(endpoint.fields().contains(&k.as_ref())),
                        other => panic!("unexpected issue path {other:?}"),
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    fn run(endpoint: Endpoint, body: Value) -> Result<CommandBody, Invalid> {
        validate(endpoint, body.to_string().as_bytes())
    }

    /// The issues as `(field, message)`, for compact assertions.
    fn issues(endpoint: Endpoint, body: Value) -> Vec<(String, String)> {
        let invalid = run(endpoint, body).expect_err("body should be rejected");
        invalid
            .issues
            .into_iter()
            .map(|i| {
                let field = match i.path.as_slice() {
                    [] => String::new(),
                    [PathSegment::Key(k)] => k.to_string(),
                    other => panic!("unexpected path {other:?}"),
                };
                (field, i.message)
            })
            .collect()
    }

    fn one_issue(endpoint: Endpoint, body: Value, field: &str, message: &str) {
        assert_eq!(
            issues(endpoint, body),
            vec![(field.to_string(), message.to_string())]
        );
    }

    fn send(content: &str) -> Value {
        json!({"channelId": "1", "content": content})
    }

    fn react(emoji: &str) -> Result<CommandBody, Invalid> {
        run(
            Endpoint::AddReaction,
            json!({"channelId": "1", "messageId": "2", "emoji": emoji}),
        )
    }

    fn reacted(emoji: &str) -> String {
        match react(emoji) {
            Ok(CommandBody::AddReaction(r)) => r.emoji,
            other => panic!("{emoji:?} should be accepted, got {other:?}"),
        }
    }

    #[test]
    fn paths_round_trip_and_match_command_types() {
        for e in Endpoint::ALL {
            assert_eq!(Endpoint::from_path(e.path()), Some(e));
            assert!(CommandBody::TYPES.contains(&e.command_type()));
        }
        assert_eq!(Endpoint::from_path("/api/send-message/"), None);
        assert_eq!(Endpoint::from_path("/api/send-message?x=1"), None);
        assert_eq!(Endpoint::from_path("/api/voice"), None);
        assert_eq!(Endpoint::from_path(""), None);
    }

    #[test]
    fn send_message_happy_path_ignores_unknown_fields() {
        let body = run(
            Endpoint::SendMessage,
            json!({"channelId": "123", "content": " hi ", "extra": [1, 2], "nonce": null}),
        )
        .unwrap();
        assert_eq!(
            body,
            CommandBody::SendMessage(SendMessage {
                channel_id: "123".into(),
                content: " hi ".into(),
            }),
            "content is passed on untrimmed"
        );
        assert_eq!(body.required_role(), Endpoint::SendMessage.required_role());
    }

    #[test]
    fn send_message_errors() {
        let e = Endpoint::SendMessage;
        one_issue(e, json!({"channelId": "1"}), "content", "required");
        one_issue(e, send(""), "content", "must not be empty");
        one_issue(e, send(" \n\t\u{3000}"), "content", "must not be blank");
        one_issue(
            e,
            send("a\u{0}b"),
            "content",
            "must not contain NUL characters",
        );
        one_issue(
            e,
            json!({"channelId": "1", "content": 5}),
            "content",
            "expected a string",
        );
        one_issue(
            e,
            json!({"channelId": "1", "content": null}),
            "content",
            "expected a string",
        );
        one_issue(
            e,
            send(&"x".repeat(2001)),
            "content",
            "must be at most 2000 characters",
        );
        assert!(
            run(e, send("a\u{1b}[31m\r\n")).is_ok(),
            "control chars other than NUL pass"
        );
    }

    #[test]
    fn content_counts_chars_not_bytes() {
        // U+1F525 is 4 bytes in UTF-8 and 2 units in UTF-16.
        assert!(run(Endpoint::SendMessage, send(&"🔥".repeat(2000))).is_ok());
        one_issue(
            Endpoint::SendMessage,
            send(&"🔥".repeat(2001)),
            "content",
            "must be at most 2000 characters",
        );
        assert!(run(Endpoint::SendMessage, send("é")).is_ok());
    }

    #[test]
    fn snowflake_rules() {
        let e = Endpoint::TypingStart;
        assert_eq!(
            run(e, json!({"channelId": "18446744073709551615"})).unwrap(),
            CommandBody::TypingStart(TriggerTyping {
                channel_id: "18446744073709551615".into()
            })
        );
        assert!(run(e, json!({"channelId": "0"})).is_ok());
        assert!(
            run(e, json!({"channelId": "007"})).is_ok(),
            "leading zeros are digits"
        );
        one_issue(
            e,
            json!({"channelId": "18446744073709551616"}),
            "channelId",
            SNOWFLAKE_RANGE,
        );
        one_issue(
            e,
            json!({"channelId": "99999999999999999999"}),
            "channelId",
            SNOWFLAKE_RANGE,
        );
        for bad in [
            "",
            "123456789012345678901",
            "12a",
            " 1",
            "1 ",
            "-1",
            "+1",
            "1.0",
            "١٢٣",
        ] {
            one_issue(e, json!({"channelId": bad}), "channelId", SNOWFLAKE_DIGITS);
        }
        for bad in [
            json!(123),
            json!(null),
            json!(true),
            json!(["1"]),
            json!({"id": "1"}),
        ] {
            one_issue(
                e,
                json!({"channelId": bad}),
                "channelId",
                EXPECTED_SNOWFLAKE,
            );
        }
        one_issue(e, json!({}), "channelId", "required");
        assert!(is_snowflake("41771983423143937"));
        assert!(!is_snowflake("4177198342314393x"));
    }

    #[test]
    fn add_reaction_unicode_emoji() {
        for ok in ["🔥", "👍🏽", "👨‍👩‍👧‍👦", "🇫🇷", "❤️", "1️⃣", "#⃣", "🏴󠁧󠁢󠁥󠁮󠁧󠁿", "✅"]
        {
            assert_eq!(reacted(ok), ok, "unicode emoji pass unchanged");
        }
        for bad in [
            "",
            "a",
            "1",
            "🔥 ",
            "🔥\n",
            "🔥a",
            "\u{FE0F}",
            "\u{200D}",
            "🔥\u{202E}",
            "12⃣",
            "<🔥>",
        ] {
            assert!(react(bad).is_err(), "{bad:?} should be rejected");
        }
        assert!(react(&"🔥".repeat(33)).is_err());
        assert!(react(&"🔥".repeat(32)).is_ok());
    }

    #[test]
    fn add_reaction_custom_emoji_forms_normalise() {
        for form in [
            "LUL:41771983429993937",
            "a:LUL:41771983429993937",
            "<:LUL:41771983429993937>",
            "<a:LUL:41771983429993937>",
        ] {
            assert_eq!(reacted(form), "LUL:41771983429993937", "{form}");
        }
        let e = Endpoint::AddReaction;
        let body = |emoji: &str| json!({"channelId": "1", "messageId": "2", "emoji": emoji});
        one_issue(e, body("L:1"), "emoji", CUSTOM_EMOJI_NAME);
        one_issue(
            e,
            body(&format!("{}:1", "x".repeat(33))),
            "emoji",
            CUSTOM_EMOJI_NAME,
        );
        one_issue(e, body("bad-name:1"), "emoji", CUSTOM_EMOJI_NAME);
        one_issue(e, body("LUL:"), "emoji", CUSTOM_EMOJI_ID);
        one_issue(e, body("LUL:abc"), "emoji", CUSTOM_EMOJI_ID);
        one_issue(
            e,
            body("LUL:99999999999999999999"),
            "emoji",
            CUSTOM_EMOJI_ID,
        );
        for form in [":LUL:1", "<LUL:1>", "<:LUL:1", "b:LUL:1", "a:b:LUL:1"] {
            one_issue(e, body(form), "emoji", EXPECTED_EMOJI);
        }
        one_issue(e, body("<a:LUL:1>>"), "emoji", CUSTOM_EMOJI_ID);
        one_issue(e, body(":"), "emoji", CUSTOM_EMOJI_NAME);
        one_issue(e, body(""), "emoji", "must not be empty");
        one_issue(
            e,
            json!({"channelId": "1", "messageId": "2"}),
            "emoji",
            "required",
        );
    }

    #[test]
    fn add_reaction_reports_every_field_in_order() {
        assert_eq!(
            issues(Endpoint::AddReaction, json!({"emoji": 1, "messageId": "x"})),
            vec![
                ("channelId".into(), "required".into()),
                ("messageId".into(), SNOWFLAKE_DIGITS.into()),
                ("emoji".into(), "expected a string".into()),
            ]
        );
    }

    #[test]
    fn voice_move_channel_is_required_but_nullable() {
        let e = Endpoint::VoiceMove;
        assert_eq!(
            run(e, json!({"guildId": "1", "userId": "2", "channelId": null})).unwrap(),
            CommandBody::VoiceMove(VoiceMove {
                guild_id: "1".into(),
                user_id: "2".into(),
                channel_id: None,
            })
        );
        assert_eq!(
            run(e, json!({"guildId": "1", "userId": "2", "channelId": "3"})).unwrap(),
            CommandBody::VoiceMove(VoiceMove {
                guild_id: "1".into(),
                user_id: "2".into(),
                channel_id: Some("3".into()),
            })
        );
        one_issue(
            e,
            json!({"guildId": "1", "userId": "2"}),
            "channelId",
            "required (use null to disconnect)",
        );
        one_issue(
            e,
            json!({"guildId": "1", "userId": "2", "channelId": 3}),
            "channelId",
            "expected a snowflake id string or null",
        );
        one_issue(
            e,
            json!({"guildId": "1", "userId": "2", "channelId": ""}),
            "channelId",
            SNOWFLAKE_DIGITS,
        );
    }

    #[test]
    fn voice_mute_needs_a_real_boolean() {
        let e = Endpoint::VoiceMute;
        for mute in [true, false] {
            assert_eq!(
                run(e, json!({"guildId": "1", "userId": "2", "mute": mute})).unwrap(),
                CommandBody::VoiceMute(VoiceMute {
                    guild_id: "1".into(),
                    user_id: "2".into(),
                    mute,
                })
            );
        }
        for bad in [json!("true"), json!(1), json!(null)] {
            one_issue(
                e,
                json!({"guildId": "1", "userId": "2", "mute": bad}),
                "mute",
                "expected a boolean",
            );
        }
        one_issue(
            e,
            json!({"guildId": "1", "userId": "2"}),
            "mute",
            "required",
        );
    }

    #[test]
    fn malformed_bodies_get_one_whole_body_issue() {
        for (body, prefix) in [
            (&b"{"[..], "invalid JSON: "),
            (b"", "invalid JSON: "),
            (b"{\"channelId\":\"1\"} x", "invalid JSON: "),
            (b"\xff\xfe", "invalid JSON: body is not UTF-8"),
            (
                b"{\"channelId\":\"\xff\"}",
                "invalid JSON: body is not UTF-8",
            ),
        ] {
            let invalid = validate(Endpoint::TypingStart, body).unwrap_err();
            assert!(invalid.message.starts_with(prefix), "{}", invalid.message);
            assert_eq!(invalid.issues, vec![Issue::whole(invalid.message.clone())]);
        }
        for body in [json!([]), json!("x"), json!(1), json!(null)] {
            let invalid = run(Endpoint::SendMessage, body).unwrap_err();
            assert_eq!(invalid.issues, vec![Issue::whole("expected an object")]);
        }
        let deep = "[".repeat(10_000);
        assert!(
            validate(Endpoint::SendMessage, deep.as_bytes()).is_err(),
            "no stack overflow"
        );
    }

    #[test]
    fn messages_never_echo_the_value() {
        let secret = "zzSECRETzz";
        let bodies = [
            format!("{{\"channelId\":\"{secret}\",\"content\":{secret}}}"),
            format!("{{\"channelId\":1,\"content\":\"{secret}\0\"}}"),
            format!("[\"{secret}\""),
            format!("{{\"{secret}\":tru}}"),
            format!("{{\"emoji\":\"<:{secret}:{secret}>\"}}"),
        ];
        for body in &bodies {
            for e in Endpoint::ALL {
                if let Err(invalid) = validate(e, body.as_bytes()) {
                    let shown = format!(
                        "{invalid} {}",
                        serde_json::to_string(&invalid.issues).unwrap()
                    );
                    assert!(!shown.contains("SECRET"), "{shown}");
                }
            }
        }
    }

    #[test]
    fn issues_serialize_as_in_the_contract() {
        let invalid = run(Endpoint::SendMessage, json!({"channelId": "1"})).unwrap_err();
        assert_eq!(
            serde_json::to_value(&invalid.issues).unwrap(),
            json!([{"path": ["content"], "message": "required"}])
        );
        assert_eq!(invalid.message, "invalid fields: content");
        assert_eq!(
            invalid.to_string(),
            "invalid fields: content; content: required"
        );
        let mixed = Issue {
            path: vec![PathSegment::Key("a".into()), PathSegment::Index(3)],
            message: "m".into(),
        };
        assert_eq!(
            serde_json::to_value(mixed).unwrap(),
            json!({"path": ["a", 3], "message": "m"})
        );
    }

    #[test]
    fn endpoint_roles_agree_with_commands() {
        let bodies = [
            json!({"channelId": "1", "content": "x"}),
            json!({"channelId": "1", "messageId": "2", "emoji": "🔥"}),
            json!({"channelId": "1"}),
            json!({"guildId": "1", "userId": "2", "channelId": null}),
            json!({"guildId": "1", "userId": "2", "mute": true}),
        ];
        for (e, body) in Endpoint::ALL.into_iter().zip(bodies) {
            let cmd = run(e, body).unwrap();
            assert_eq!(cmd.type_name(), e.command_type());
            assert_eq!(cmd.required_role(), e.required_role());
        }
    }

    #[cfg(feature = "fuzzing")]
    #[test]
    fn fuzz_entry_holds_on_seeds() {
        for seed in [
            &br#"{"channelId":"1","content":"hi","messageId":"2","emoji":"<a:LUL:3>","guildId":"4","userId":"5","mute":true}"#[..],
            br#"{"channelId":null,"guildId":"4","userId":"5"}"#,
            b"[]",
            b"\xff",
            b"",
        ] {
            fuzz_validate(seed);
        }
    }

    // ---- property tests ----

    fn snowflake_s() -> impl Strategy<Value = String> {
        prop_oneof![any::<u64>().prop_map(|n| n.to_string()), "[0-9]{1,19}",]
    }

    fn bad_snowflake() -> impl Strategy<Value = String> {
        prop_oneof![
            Just(String::new()),
            "[0-9]{21,30}",
            "[0-9]{0,9}[^0-9][0-9]{0,9}",
            "\\PC{1,10}".prop_filter("needs a non-digit", |s| !s
                .bytes()
                .all(|b| b.is_ascii_digit())),
        ]
    }

    /// 1..=2000 chars of any kind (multi-byte included), no NUL, not blank.
    fn content_s(max: usize) -> impl Strategy<Value = String> {
        proptest::collection::vec(any::<char>(), 1..=max).prop_map(|mut cs| {
            for c in cs.iter_mut() {
                if *c == '\0' {
                    *c = 'é';
                }
            }
            if cs.iter().all(|c| c.is_whitespace()) {
                cs[0] = '字';
            }
            cs.into_iter().collect()
        })
    }

    /// (what the browser sends, what validation must yield).
    fn emoji_s() -> impl Strategy<Value = (String, String)> {
        let unicode = prop::sample::select(vec![
            "🔥",
            "👍🏽",
            "👨‍👩‍👧‍👦",
            "🇯🇵",
            "❤️",
            "1️⃣",
            "*⃣",
            "🏴󠁧󠁢󠁥󠁮󠁧󠁿",
            "🫠",
            "☕",
        ])
        .prop_map(|e| (e.to_string(), e.to_string()));
        let custom =
            ("[A-Za-z0-9_]{2,32}", snowflake_s(), 0..4usize).prop_map(|(name, id, form)| {
                let sent = match form {
                    0 => format!("{name}:{id}"),
                    1 => format!("a:{name}:{id}"),
                    2 => format!("<:{name}:{id}>"),
                    _ => format!("<a:{name}:{id}>"),
                };
                (sent, format!("{name}:{id}"))
            });
        prop_oneof![unicode, custom]
    }

    fn endpoint_s() -> impl Strategy<Value = Endpoint> {
        prop::sample::select(Endpoint::ALL.to_vec())
    }

    /// A valid body for `e` and the command it must yield.
    fn valid_s(e: Endpoint) -> BoxedStrategy<(Value, CommandBody)> {
        match e {
            Endpoint::SendMessage => (snowflake_s(), content_s(MAX_CONTENT_CHARS))
                .prop_map(|(c, t)| {
                    (
                        json!({"channelId": c, "content": t}),
                        CommandBody::SendMessage(SendMessage {
                            channel_id: c,
                            content: t,
                        }),
                    )
                })
                .boxed(),
            Endpoint::AddReaction => (snowflake_s(), snowflake_s(), emoji_s())
                .prop_map(|(c, m, (sent, want))| {
                    (
                        json!({"channelId": c, "messageId": m, "emoji": sent}),
                        CommandBody::AddReaction(AddReaction {
                            channel_id: c,
                            message_id: m,
                            emoji: want,
                        }),
                    )
                })
                .boxed(),
            Endpoint::TypingStart => snowflake_s()
                .prop_map(|c| {
                    (
                        json!({"channelId": c}),
                        CommandBody::TypingStart(TriggerTyping { channel_id: c }),
                    )
                })
                .boxed(),
            Endpoint::VoiceMove => (
                snowflake_s(),
                snowflake_s(),
                proptest::option::of(snowflake_s()),
            )
                .prop_map(|(g, u, c)| {
                    (
                        json!({"guildId": g, "userId": u, "channelId": c}),
                        CommandBody::VoiceMove(VoiceMove {
                            guild_id: g,
                            user_id: u,
                            channel_id: c,
                        }),
                    )
                })
                .boxed(),
            Endpoint::VoiceMute => (snowflake_s(), snowflake_s(), any::<bool>())
                .prop_map(|(g, u, m)| {
                    (
                        json!({"guildId": g, "userId": u, "mute": m}),
                        CommandBody::VoiceMute(VoiceMute {
                            guild_id: g,
                            user_id: u,
                            mute: m,
                        }),
                    )
                })
                .boxed(),
        }
    }

    fn any_valid() -> impl Strategy<Value = (Endpoint, Value, CommandBody)> {
        endpoint_s().prop_flat_map(|e| valid_s(e).prop_map(move |(v, c)| (e, v, c)))
    }

    fn json_leaf() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            "\\PC{0,30}".prop_map(Value::String),
            snowflake_s().prop_map(Value::String),
            emoji_s().prop_map(|(s, _)| Value::String(s)),
        ]
    }

    fn json_any() -> impl Strategy<Value = Value> {
        json_leaf().prop_recursive(3, 32, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                proptest::collection::btree_map("\\PC{0,10}", inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// An object whose keys are drawn mostly from the endpoint's fields, so field
    /// checks see every kind of value.
    fn fieldish_object(e: Endpoint) -> impl Strategy<Value = Value> {
        let keys: Vec<String> = e
            .fields()
            .iter()
            .map(|s| s.to_string())
            .chain(["other".to_string()])
            .collect();
        proptest::collection::btree_map(prop::sample::select(keys), json_any(), 0..5)
            .prop_map(|m| Value::Object(m.into_iter().collect()))
    }

    /// Checks the invariants every answer must hold.
    fn check_answer(e: Endpoint, answer: &Result<CommandBody, Invalid>) {
        match answer {
            Ok(body) => {
                assert_eq!(body.type_name(), e.command_type());
                let v = serde_json::to_value(body).unwrap();
                let again = validate(e, v["data"].to_string().as_bytes());
                assert_eq!(again.as_ref(), Ok(body), "validation is idempotent");
            }
            Err(invalid) => {
                assert!(!invalid.issues.is_empty());
                let mut fields = Vec::new();
                for issue in &invalid.issues {
                    match issue.path.as_slice() {
                        [] => assert_eq!(invalid.issues.len(), 1, "whole-body issues stand alone"),
                        [PathSegment::Key(k)] => {
                            assert!(
                                e.fields().contains(&k.as_ref()),
                                "{k} is not a field of {e:?}"
                            );
                            fields.push(k.clone());
                        }
                        other => panic!("unexpected path {other:?}"),
                    }
                }
                let order: Vec<_> = e
                    .fields()
                    .iter()
                    .filter(|f| fields.iter().any(|k| k == *f))
                    .collect();
                assert_eq!(order.len(), fields.len(), "one issue per field");
                assert!(
                    order.iter().zip(&fields).all(|(a, b)| **a == b.as_ref()),
                    "field order"
                );
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn never_panics_on_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            for e in Endpoint::ALL {
                check_answer(e, &validate(e, &bytes));
            }
        }

        #[test]
        fn never_panics_on_json(v in json_any()) {
            for e in Endpoint::ALL {
                check_answer(e, &run(e, v.clone()));
            }
        }

        #[test]
        fn never_panics_on_field_shaped_objects(
            (e, v) in endpoint_s().prop_flat_map(|e| fieldish_object(e).prop_map(move |v| (e, v)))
        ) {
            check_answer(e, &run(e, v));
        }

        #[test]
        fn valid_bodies_yield_exactly_their_values((e, body, want) in any_valid()) {
            let got = run(e, body);
            prop_assert_eq!(got.as_ref(), Ok(&want));
            check_answer(e, &got);
        }

        #[test]
        fn long_content_is_one_issue_at_content(c in snowflake_s(), text in "\\PC{2001,2100}") {
            prop_assume!(text.chars().count() > MAX_CONTENT_CHARS);
            let invalid = run(Endpoint::SendMessage, json!({"channelId": c, "content": text})).unwrap_err();
            prop_assert_eq!(invalid.issues, vec![Issue::at("content", "must be at most 2000 characters")]);
        }

        #[test]
        fn bad_ids_are_one_issue_at_their_path(
            (e, body, _) in any_valid(),
            bad in bad_snowflake(),
            pick in any::<prop::sample::Index>(),
        ) {
            let id_fields: Vec<&str> = e.fields().iter().copied().filter(|f| f.ends_with("Id")).collect();
            let field = *pick.get(&id_fields);
            let mut body = body;
            body[field] = Value::String(bad);
            let invalid = run(e, body).unwrap_err();
            prop_assert_eq!(invalid.issues.len(), 1);
            prop_assert_eq!(&invalid.issues[0].path, &vec![PathSegment::Key(Cow::Borrowed(field))]);
        }

        #[test]
        fn each_bad_field_gives_one_issue(
            (e, body, _) in any_valid(),
            breaks in proptest::collection::vec(any::<bool>(), 3),
            remove in any::<bool>(),
        ) {
            let mut body = body;
            let mut broken = Vec::new();
            for (field, &brk) in e.fields().iter().zip(&breaks) {
                if brk {
                    // An array is wrong for every field; a missing field is too.
                    if remove {
                        body.as_object_mut().unwrap().remove(*field);
                    } else {
                        body[*field] = json!([]);
                    }
                    broken.push(PathSegment::Key(Cow::Borrowed(*field)));
                }
            }
            let got = run(e, body);
            if broken.is_empty() {
                prop_assert!(got.is_ok());
            } else {
                let paths: Vec<PathSegment> = got.unwrap_err().issues.into_iter().flat_map(|i| i.path).collect();
                prop_assert_eq!(paths, broken);
            }
        }
    }
}
