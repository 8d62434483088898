//! Link frames (CONTRACT.md §5): the envelopes the gateway and the edge exchange,
//! their defensive parser and their encoders.
//!
//! Every frame is `{"version":"1.0","type":…,"data":{…},"meta":{…}}`. The parser
//! turns any bytes into either a typed frame or a [`MalformedFrame`] that says what
//! was wrong and carries whatever trace metadata could still be read, so the edge
//! can log it with its `traceId` and fail the waiting command by its `requestId`
//! instead of letting it time out. It never panics (fuzzed in `fuzz/`).

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::payload::{CommandBody, EventBody};

/// The link protocol version relay speaks.
pub const LINK_VERSION: &str = "1.0";
/// Frames above this size are refused before they are parsed.
pub const MAX_FRAME_BYTES: usize = 1024 * 1024;
/// Longest error detail kept, so a hostile frame cannot grow log lines.
const MAX_DETAIL_CHARS: usize = 200;

/// Trace metadata on every frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TraceMeta {
    /// Correlates every log line and event about one thing end to end.
    pub trace_id: String,
    /// RFC 3339 with milliseconds, UTC.
    pub sent_at: String,
    /// On commands always; on replies, the command answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// On commands: the session `sub` that issued it (Discord audit log).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// On commands from an edge with `ACCESS=discord`: `"discord"`, so the
    /// gateway checks the actor's Discord permissions again before it calls
    /// Discord (CONTRACT.md §8). Absent: v1.0 roles only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access: Option<String>,
    /// relay's later, optional additions (`actorName`, `actorAvatar`,
    /// `attempt`): absent on the wire when empty, ignored by older peers.
    #[serde(flatten)]
    pub extra: Extra,
}

/// [`MetaExtra`] behind one pointer, so every frame stays small when (as on
/// nearly all of them) none of its fields is set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Extra(Option<Box<MetaExtra>>);

impl Extra {
    /// The fields (all `None` when unset).
    pub fn get(&self) -> &MetaExtra {
        static NONE: MetaExtra = MetaExtra {
            actor_name: None,
            actor_avatar: None,
            attempt: None,
            event_id: None,
            rev: None,
        };
        self.0.as_deref().unwrap_or(&NONE)
    }

    /// The fields, to change.
    pub fn get_mut(&mut self) -> &mut MetaExtra {
        self.0.get_or_insert_with(Box::default)
    }
}

impl From<MetaExtra> for Extra {
    fn from(e: MetaExtra) -> Self {
        Extra((e != MetaExtra::default()).then(|| Box::new(e)))
    }
}

impl Serialize for Extra {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match &self.0 {
            Some(e) => e.serialize(s),
            // Flattened: nothing is written.
            None => s.serialize_none(),
        }
    }
}

impl<'de> Deserialize<'de> for Extra {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        MetaExtra::deserialize(d).map(Extra::from)
    }
}

/// Optional command metadata added after v1.0 (docs/access.md, docs/webhooks.md).
/// Every field is absent on the wire when `None`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MetaExtra {
    /// On `sendMessage` from an `ACCESS=discord` edge: the session's display
    /// name (control characters removed, at most [`MAX_ACTOR_NAME_CHARS`]), so
    /// the gateway can post under it through a webhook.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor_name: Option<String>,
    /// With `actorName`: the session's Discord avatar hash (`[A-Za-z0-9_]`,
    /// at most 64), for the webhook's `avatar_url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor_avatar: Option<String>,
    /// On a command the edge writes again (after a reconnect or a deferral):
    /// which write this is (2, 3 …). Absent on the first. A gateway with no
    /// record of the `requestId` uses it to look for an earlier post.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
    /// On events from a gateway with `REDIS_URL` (CONTRACT.md §10): the id
    /// the event has on every edge, `<epoch>-<seq>` (docs/redis.md). Absent:
    /// the edge numbers the event itself, as in v1.0.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "event_id_text"
    )]
    pub event_id: Option<crate::replay::EventId>,
    /// On message events (create, update, delete, reactions): the gateway
    /// window's revision once the event is in it. A history answer with
    /// `rev` ≥ this already counts the event (docs/history.md); the edge
    /// passes it to browsers as `meta.rev`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rev: Option<u64>,
}

/// `meta.eventId` on the wire: the id's canonical text; anything else is a
/// malformed frame (the parser names the field).
mod event_id_text {
    use crate::replay::EventId;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(id: &Option<EventId>, s: S) -> Result<S::Ok, S::Error> {
        match id {
            Some(id) => s.collect_str(id),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<EventId>, D::Error> {
        let text: Option<std::borrow::Cow<'de, str>> = Option::deserialize(d)?;
        text.map(|t| t.parse().map_err(serde::de::Error::custom))
            .transpose()
    }
}

/// Longest `meta.actorName` an edge sends, in Unicode scalar values.
pub const MAX_ACTOR_NAME_CHARS: usize = 80;
/// Longest `meta.actorAvatar` an edge sends.
pub const MAX_ACTOR_AVATAR_LEN: usize = 64;

impl MetaExtra {
    /// The actor fields of a session, sanitized: the name without control
    /// characters, trimmed and cut to [`MAX_ACTOR_NAME_CHARS`] (`None` when
    /// nothing is left); the avatar only when it looks like a Discord hash.
    pub fn actor(name: Option<&str>, avatar: Option<&str>) -> MetaExtra {
        let name = name
            .map(|n| {
                let clean: String = n.chars().filter(|c| !c.is_control()).collect();
                clean
                    .trim()
                    .chars()
                    .take(MAX_ACTOR_NAME_CHARS)
                    .collect::<String>()
            })
            .filter(|n| !n.trim().is_empty());
        let avatar = avatar
            .filter(|a| {
                (1..=MAX_ACTOR_AVATAR_LEN).contains(&a.len())
                    && a.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            })
            .map(str::to_owned);
        MetaExtra {
            actor_name: name,
            actor_avatar: avatar,
            ..MetaExtra::default()
        }
    }
}

/// gateway → edge: an event or a command reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayEvent {
    /// `type` + `data`.
    pub body: EventBody,
    /// `meta`.
    pub meta: TraceMeta,
}

/// edge → gateway: a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayCommand {
    /// `type` + `data`.
    pub body: CommandBody,
    /// `meta`; `requestId` and `actor` are always present.
    pub meta: TraceMeta,
}

/// How a command ended, as the gateway reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `ack`: it ran.
    Ack,
    /// `rateLimited`: try again after this long.
    RateLimited {
        /// Milliseconds to wait.
        retry_after_ms: u64,
        /// Discord's global limit rather than a route bucket.
        global: bool,
    },
    /// `error` with the command's request id.
    Error {
        /// Machine-readable code.
        code: String,
        /// Safe, human-readable text.
        message: String,
    },
    /// `messages`: a read (`fetchMessages`) ran and found these, newest
    /// first, as of a window revision.
    Messages(crate::payload::Messages),
}

impl GatewayEvent {
    /// If this frame answers a command, its request id and outcome.
    pub fn as_reply(&self) -> Option<(&str, Reply)> {
        let request_id = self.meta.request_id.as_deref()?;
        let reply = match &self.body {
            EventBody::Ack(_) => Reply::Ack,
            EventBody::RateLimited(r) => Reply::RateLimited {
                retry_after_ms: r.retry_after_ms,
                global: r.global,
            },
            EventBody::Error(e) => Reply::Error {
                code: e.code.clone(),
                message: e.message.clone(),
            },
            EventBody::Messages(m) => Reply::Messages(m.clone()),
            _ => return None,
        };
        Some((request_id, reply))
    }

    /// Encodes the frame as one JSON text frame.
    pub fn to_json(&self) -> String {
        encode(&self.body, &self.meta)
    }
}

impl GatewayCommand {
    /// The command's request id (always present on a parsed or validated command).
    pub fn request_id(&self) -> &str {
        self.meta.request_id.as_deref().unwrap_or_default()
    }

    /// Encodes the frame as one JSON text frame.
    pub fn to_json(&self) -> String {
        encode(&self.body, &self.meta)
    }
}

fn encode<B: Serialize>(body: &B, meta: &TraceMeta) -> String {
    #[derive(Serialize)]
    struct Envelope<'a, B> {
        version: &'static str,
        #[serde(flatten)]
        body: &'a B,
        meta: &'a TraceMeta,
    }
    // Serializing plain data with string keys into a String cannot fail.
    serde_json::to_string(&Envelope {
        version: LINK_VERSION,
        body,
        meta,
    })
    .unwrap_or_default()
}

/// Encodes the `data:` payload of an SSE event (CONTRACT.md §4): the `SseEvent`
/// envelope `{"version","event","data","meta":{"traceId","sentAt"}}`, one line;
/// a message event's window revision goes in as `meta.rev`.
pub fn sse_json(body: &EventBody, trace_id: &str, sent_at: &str, rev: Option<u64>) -> String {
    // Re-tag the adjacently tagged body as {"event":…,"data":…} by serializing it once
    // to a Value; this runs once per event, not once per subscriber.
    let tagged = serde_json::to_value(body).unwrap_or(Value::Null);
    let data = match tagged {
        Value::Object(mut m) => m.remove("data").unwrap_or(Value::Null),
        _ => Value::Null,
    };
    sse_envelope(body.type_name(), &data, trace_id, sent_at, rev)
}

/// As [`sse_json`] for the edge's own events (`gateway.status`, `voice.snapshot`,
/// `stream.reset`), whose data is not a link event body.
pub fn sse_json_raw(event: &str, data: &Value, trace_id: &str, sent_at: &str) -> String {
    sse_envelope(event, data, trace_id, sent_at, None)
}

fn sse_envelope(
    event: &str,
    data: &Value,
    trace_id: &str,
    sent_at: &str,
    rev: Option<u64>,
) -> String {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Meta<'a> {
        trace_id: &'a str,
        sent_at: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        rev: Option<u64>,
    }
    #[derive(Serialize)]
    struct SseEvent<'a> {
        version: &'static str,
        event: &'a str,
        data: &'a Value,
        meta: Meta<'a>,
    }
    serde_json::to_string(&SseEvent {
        version: LINK_VERSION,
        event,
        data,
        meta: Meta {
            trace_id,
            sent_at,
            rev,
        },
    })
    .unwrap_or_default()
}

/// Why a frame could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FrameError {
    /// Larger than [`MAX_FRAME_BYTES`].
    TooLarge {
        /// Size received.
        len: usize,
    },
    /// Not UTF-8 or not JSON.
    InvalidJson {
        /// Parser message (bounded).
        detail: String,
    },
    /// Valid JSON but not an object.
    NotAnObject,
    /// A required field is absent (`data.channelId`, `meta.traceId` …).
    MissingField {
        /// Dotted path of the field.
        field: String,
    },
    /// A field has the wrong JSON type or an invalid value.
    WrongType {
        /// Dotted path of the field.
        field: String,
        /// What was wrong (bounded).
        detail: String,
    },
    /// `version` is not a 1.x version.
    UnsupportedVersion {
        /// The version received (bounded).
        version: String,
    },
    /// `type` is not one this side accepts.
    UnknownType {
        /// The type received (bounded).
        type_name: String,
    },
}

impl FrameError {
    /// Short stable code for metrics and logs.
    pub fn code(&self) -> &'static str {
        match self {
            FrameError::TooLarge { .. } => "too_large",
            FrameError::InvalidJson { .. } => "invalid_json",
            FrameError::NotAnObject => "not_an_object",
            FrameError::MissingField { .. } => "missing_field",
            FrameError::WrongType { .. } => "wrong_type",
            FrameError::UnsupportedVersion { .. } => "unsupported_version",
            FrameError::UnknownType { .. } => "unknown_type",
        }
    }
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::TooLarge { len } => {
                write!(f, "frame of {len} bytes exceeds {MAX_FRAME_BYTES} bytes")
            }
            FrameError::InvalidJson { detail } => write!(f, "invalid JSON: {detail}"),
            FrameError::NotAnObject => f.write_str("frame is not a JSON object"),
            FrameError::MissingField { field } => write!(f, "missing field `{field}`"),
            FrameError::WrongType { field, detail } => write!(f, "field `{field}`: {detail}"),
            FrameError::UnsupportedVersion { version } => {
                write!(f, "unsupported version `{version}` (this side speaks 1.x)")
            }
            FrameError::UnknownType { type_name } => write!(f, "unknown frame type `{type_name}`"),
        }
    }
}

impl std::error::Error for FrameError {}

/// A frame that could not be read, with whatever trace metadata survived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MalformedFrame {
    /// What was wrong.
    pub error: FrameError,
    /// `meta.traceId`, if it could be read.
    pub trace_id: Option<String>,
    /// `meta.requestId`, if it could be read: lets the edge fail that command now.
    pub request_id: Option<String>,
    /// `type`, if it could be read.
    pub type_name: Option<String>,
}

impl fmt::Display for MalformedFrame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.error.fmt(f)
    }
}

impl std::error::Error for MalformedFrame {}

/// Reads a gateway → edge frame.
pub fn parse_event(bytes: &[u8]) -> Result<GatewayEvent, MalformedFrame> {
    if (FAST_MESSAGES_BYTES..=MAX_FRAME_BYTES).contains(&bytes.len()) {
        if let Some(event) = parse_messages_fast(bytes) {
            return Ok(event);
        }
    }
    let (body, meta) = parse_envelope::<EventBody>(bytes, &EventBody::TYPES)?;
    Ok(GatewayEvent { body, meta })
}

/// Frames at least this large are tried as a `messages` reply first.
const FAST_MESSAGES_BYTES: usize = 2048;

/// A `messages` reply read in one typed pass.
#[derive(Deserialize)]
struct MessagesFrame {
    version: String,
    #[serde(rename = "type")]
    kind: String,
    meta: TraceMeta,
    data: crate::payload::Messages,
}

/// History replies are the link's large frames (up to 100 messages, ~40 KB),
/// and the edge reads every frame on its one link thread: the general path
/// (a `Value` tree, then a second, path-tracking pass for error messages)
/// made that thread the busiest of the process under 1,000 reads/s. A
/// well-formed `messages` reply is read straight into its types instead; any
/// other frame, or one this pass refuses, takes the general path, which
/// accepts the same frames and gives the detailed errors.
fn parse_messages_fast(bytes: &[u8]) -> Option<GatewayEvent> {
    // from_str, not from_slice: serde_json skips the strings of unknown
    // fields without checking their UTF-8, and the general path (a `Value`)
    // refuses such a frame (a fuzz find). Validating first keeps them agreed.
    let text = std::str::from_utf8(bytes).ok()?;
    let f: MessagesFrame = serde_json::from_str(text).ok()?;
    (f.kind == "messages" && is_supported_version(&f.version)).then_some(GatewayEvent {
        body: EventBody::Messages(f.data),
        meta: f.meta,
    })
}

/// Reads an edge → gateway frame; `meta.requestId` and `meta.actor` are required.
pub fn parse_command(bytes: &[u8]) -> Result<GatewayCommand, MalformedFrame> {
    let (body, meta) = parse_envelope::<CommandBody>(bytes, &CommandBody::TYPES)?;
    for (field, value) in [
        ("meta.requestId", &meta.request_id),
        ("meta.actor", &meta.actor),
    ] {
        if value.is_none() {
            return Err(MalformedFrame {
                error: FrameError::MissingField {
                    field: field.into(),
                },
                trace_id: Some(meta.trace_id.clone()),
                request_id: meta.request_id.clone(),
                type_name: Some(body_type(&body)),
            });
        }
    }
    Ok(GatewayCommand { body, meta })
}

fn body_type(body: &CommandBody) -> String {
    body.type_name().to_string()
}

fn parse_envelope<B: FrameBody>(
    bytes: &[u8],
    known_types: &[&str],
) -> Result<(B, TraceMeta), MalformedFrame> {
    let bare = |error| MalformedFrame {
        error,
        trace_id: None,
        request_id: None,
        type_name: None,
    };
    if bytes.len() > MAX_FRAME_BYTES {
        return Err(bare(FrameError::TooLarge { len: bytes.len() }));
    }
    let value: Value = serde_json::from_slice(bytes).map_err(|e| {
        bare(FrameError::InvalidJson {
            detail: bounded(&e.to_string()),
        })
    })?;
    let Value::Object(mut obj) = value else {
        return Err(bare(FrameError::NotAnObject));
    };

    // Salvage trace metadata first so every later error can carry it.
    let meta_obj = obj.get("meta").and_then(Value::as_object);
    let salvage = |key: &str| {
        meta_obj
            .and_then(|m| m.get(key))
            .and_then(Value::as_str)
            .map(bounded)
    };
    let (trace_id, request_id) = (salvage("traceId"), salvage("requestId"));
    let type_name = obj.get("type").and_then(Value::as_str).map(bounded);
    let fail = |error| MalformedFrame {
        error,
        trace_id: trace_id.clone(),
        request_id: request_id.clone(),
        type_name: type_name.clone(),
    };

    match obj.get("version") {
        None => return Err(fail(missing("version"))),
        Some(Value::String(v)) if is_supported_version(v) => {}
        Some(Value::String(v)) => {
            return Err(fail(FrameError::UnsupportedVersion {
                version: bounded(v),
            }))
        }
        Some(_) => return Err(fail(wrong("version", "expected a string"))),
    }
    match obj.get("type") {
        None => return Err(fail(missing("type"))),
        Some(Value::String(t)) if known_types.contains(&t.as_str()) => {}
        Some(Value::String(t)) => {
            return Err(fail(FrameError::UnknownType {
                type_name: bounded(t),
            }))
        }
        Some(_) => return Err(fail(wrong("type", "expected a string"))),
    }
    let meta = take_object(&mut obj, "meta").map_err(&fail)?;
    let meta: TraceMeta = from_object(meta, "meta").map_err(&fail)?;
    let data = take_object(&mut obj, "data").map_err(&fail)?;
    let type_value = obj.remove("type").unwrap_or(Value::Null);
    let body = B::from_parts(type_value.as_str().unwrap_or_default(), data).map_err(&fail)?;
    Ok((body, meta))
}

/// A frame body read from its checked `type` and its `data` object, so that field
/// errors are reported with their path under `data`.
trait FrameBody: Sized {
    fn from_parts(type_name: &str, data: Map<String, Value>) -> Result<Self, FrameError>;
}

impl FrameBody for EventBody {
    fn from_parts(type_name: &str, data: Map<String, Value>) -> Result<Self, FrameError> {
        Ok(match type_name {
            "ready" => EventBody::Ready(from_object(data, "data")?),
            "messageCreate" => EventBody::MessageCreate(from_object(data, "data")?),
            "messageUpdate" => EventBody::MessageUpdate(from_object(data, "data")?),
            "messageDelete" => EventBody::MessageDelete(from_object(data, "data")?),
            "reactionAdd" => EventBody::ReactionAdd(from_object(data, "data")?),
            "typingStart" => EventBody::TypingStart(from_object(data, "data")?),
            "voice.joined" => EventBody::VoiceJoined(from_object(data, "data")?),
            "voice.left" => EventBody::VoiceLeft(from_object(data, "data")?),
            "error" => EventBody::Error(from_object(data, "data")?),
            "ack" => EventBody::Ack(from_object(data, "data")?),
            "rateLimited" => EventBody::RateLimited(from_object(data, "data")?),
            "guild.state" => EventBody::GuildState(from_object(data, "data")?),
            "guild.member" => EventBody::GuildMember(from_object(data, "data")?),
            "reactionRemove" => EventBody::ReactionRemove(from_object(data, "data")?),
            "messages" => EventBody::Messages(from_object(data, "data")?),
            other => {
                return Err(FrameError::UnknownType {
                    type_name: bounded(other),
                })
            }
        })
    }
}

impl FrameBody for CommandBody {
    fn from_parts(type_name: &str, data: Map<String, Value>) -> Result<Self, FrameError> {
        Ok(match type_name {
            "sendMessage" => CommandBody::SendMessage(from_object(data, "data")?),
            "addReaction" => CommandBody::AddReaction(from_object(data, "data")?),
            "typingStart" => CommandBody::TypingStart(from_object(data, "data")?),
            "voiceMove" => CommandBody::VoiceMove(from_object(data, "data")?),
            "voiceMute" => CommandBody::VoiceMute(from_object(data, "data")?),
            "fetchMember" => CommandBody::FetchMember(from_object(data, "data")?),
            "fetchMessages" => CommandBody::FetchMessages(from_object(data, "data")?),
            other => {
                return Err(FrameError::UnknownType {
                    type_name: bounded(other),
                })
            }
        })
    }
}

fn is_supported_version(v: &str) -> bool {
    // Minor versions are additive (unknown fields are ignored), so any 1.x is read.
    match v.split_once('.') {
        Some(("1", minor)) => !minor.is_empty() && minor.bytes().all(|b| b.is_ascii_digit()),
        _ => v == "1",
    }
}

fn take_object(obj: &mut Map<String, Value>, key: &str) -> Result<Map<String, Value>, FrameError> {
    match obj.remove(key) {
        None => Err(missing(key)),
        Some(Value::Object(m)) => Ok(m),
        Some(_) => Err(wrong(key, "expected an object")),
    }
}

fn from_object<T: for<'de> Deserialize<'de>>(
    obj: Map<String, Value>,
    prefix: &str,
) -> Result<T, FrameError> {
    serde_path_to_error::deserialize(Value::Object(obj)).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        let join = |field: &str| {
            let parts: Vec<&str> = [prefix, field]
                .into_iter()
                .filter(|p| !p.is_empty() && *p != ".")
                .collect();
            parts.join(".")
        };
        // serde reports a missing field at the parent's path with the name in the message.
        if let Some(rest) = inner.strip_prefix("missing field `") {
            let name = rest.split('`').next().unwrap_or_default();
            let parent = if path == "." { String::new() } else { path };
            let field = if parent.is_empty() {
                name.to_string()
            } else {
                format!("{parent}.{name}")
            };
            return missing(&join(&field));
        }
        wrong(&join(&path), &inner)
    })
}

fn missing(field: &str) -> FrameError {
    FrameError::MissingField {
        field: bounded(field),
    }
}

fn wrong(field: &str, detail: &str) -> FrameError {
    FrameError::WrongType {
        field: bounded(field),
        detail: bounded(detail),
    }
}

fn bounded(s: &str) -> String {
    match s.char_indices().nth(MAX_DETAIL_CHARS) {
        Some((cut, _)) => format!("{}…", &s[..cut]),
        None => s.to_string(),
    }
}

/// Fuzz entry: parsing any bytes never panics, and a frame that parses
/// re-encodes to a frame that parses to the same value.
#[cfg(feature = "fuzzing")]
pub fn fuzz_parse(bytes: &[u8]) {
    // The typed pass for `messages` replies accepts only what the general one
    // does, and reads it the same way.
    if let Some(fast) = parse_messages_fast(bytes) {
        let general = parse_envelope::<EventBody>(bytes, &EventBody::TYPES)
            .map(|(body, meta)| GatewayEvent { body, meta });
        assert_eq!(general.ok(), Some(fast));
    }
    if let Ok(ev) = parse_event(bytes) {
        let again = parse_event(ev.to_json().as_bytes()).expect("re-encoded event parses");
        assert_eq!(again, ev);
    }
    if let Ok(cmd) = parse_command(bytes) {
        let again = parse_command(cmd.to_json().as_bytes()).expect("re-encoded command parses");
        assert_eq!(again, cmd);
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::payload::*;

    #[test]
    fn invalid_utf8_in_an_unknown_field_fails_both_paths() {
        // A fuzz find: serde_json skips an unknown field's string without
        // checking its UTF-8, so the typed pass once accepted what the general
        // one refuses.
        let bytes: &[u8] = include_bytes!(
            "../../fuzz/corpus/seed-link_frame/messages-invalid-utf8-in-unknown-field.json"
        );
        assert_eq!(parse_messages_fast(bytes), None);
        assert!(parse_event(bytes).is_err());
        #[cfg(feature = "fuzzing")]
        fuzz_parse(bytes);
    }

    #[test]
    fn the_large_reply_seed_takes_the_fast_path_and_reads_as_the_general_one() {
        let bytes = include_bytes!("../../fuzz/corpus/seed-link_frame/messages-reply-large.json");
        let fast = parse_messages_fast(bytes).expect("a well-formed messages reply");
        let (body, meta) = parse_envelope::<EventBody>(bytes, &EventBody::TYPES).unwrap();
        assert_eq!(fast, GatewayEvent { body, meta });
        let EventBody::Messages(m) = &fast.body else {
            panic!()
        };
        assert_eq!(m.messages.len(), 30);
        assert_eq!(m.messages[0].message.via.as_deref(), Some("relay"));
    }

    #[test]
    fn large_frames_of_other_types_and_bad_messages_frames_take_the_general_path() {
        let long = "x".repeat(FAST_MESSAGES_BYTES);
        let error = format!(
            r#"{{"version":"1.0","type":"error","data":{{"code":"c","message":"{long}"}},"meta":{{"traceId":"t","sentAt":"s"}}}}"#
        );
        assert!(matches!(
            parse_event(error.as_bytes()).unwrap().body,
            EventBody::Error(_)
        ));
        let old = format!(
            r#"{{"version":"2.0","type":"messages","data":{{"messages":[]}},"meta":{{"traceId":"t","sentAt":"s","pad":"{long}"}}}}"#
        );
        assert!(matches!(
            parse_event(old.as_bytes()).unwrap_err().error,
            FrameError::UnsupportedVersion { .. }
        ));
        let bad = format!(
            r#"{{"version":"1.0","type":"messages","data":{{"messages":[{{"id":5}}]}},"meta":{{"traceId":"t","sentAt":"s","pad":"{long}"}}}}"#
        );
        let e = parse_event(bad.as_bytes()).unwrap_err();
        assert_eq!(
            e.trace_id.as_deref(),
            Some("t"),
            "the general path's salvaged meta"
        );
    }

    #[test]
    fn every_listed_type_has_a_reader() {
        // A type in TYPES without a `from_parts` arm would pass the type check and
        // then fail as unknown: each must read, or fail on its fields only.
        for t in EventBody::TYPES {
            let r = EventBody::from_parts(t, Map::new());
            assert!(!matches!(r, Err(FrameError::UnknownType { .. })), "{t}");
        }
        for t in CommandBody::TYPES {
            let r = CommandBody::from_parts(t, Map::new());
            assert!(!matches!(r, Err(FrameError::UnknownType { .. })), "{t}");
        }
    }

    fn meta(request_id: Option<&str>) -> TraceMeta {
        TraceMeta {
            trace_id: "t1".into(),
            sent_at: "2026-11-25T12:00:00.000Z".into(),
            request_id: request_id.map(Into::into),
            actor: None,
            access: None,
            extra: Default::default(),
        }
    }

    fn err(bytes: &str) -> FrameError {
        parse_event(bytes.as_bytes()).unwrap_err().error
    }

    #[test]
    fn reads_a_contract_message_create() {
        let json = r#"{"version":"1.0","type":"messageCreate","data":{"id":"1","channelId":"2","guildId":"3",
            "author":{"id":"4","username":"ann","avatar":null,"bot":false},"content":"hi","timestamp":"2026-01-01T00:00:00.000Z",
            "extra":"ignored"},"meta":{"traceId":"abc","sentAt":"2026-01-01T00:00:00.000Z"}}"#;
        let ev = parse_event(json.as_bytes()).unwrap();
        assert_eq!(ev.meta.trace_id, "abc");
        let EventBody::MessageCreate(m) = &ev.body else {
            panic!("{ev:?}")
        };
        assert_eq!(m.content, "hi");
        assert_eq!(m.guild_id.as_deref(), Some("3"));
    }

    #[test]
    fn each_error_class_is_named() {
        assert_eq!(err("{").code(), "invalid_json");
        assert_eq!(err("[1]"), FrameError::NotAnObject);
        assert_eq!(
            err(r#"{"type":"ack","data":{},"meta":{"traceId":"t","sentAt":"s"}}"#),
            FrameError::MissingField {
                field: "version".into()
            }
        );
        assert_eq!(
            err(r#"{"version":"2.0","type":"ack","data":{},"meta":{"traceId":"t","sentAt":"s"}}"#)
                .code(),
            "unsupported_version"
        );
        assert_eq!(
            err(r#"{"version":"1.0","type":"nope","data":{},"meta":{"traceId":"t","sentAt":"s"}}"#),
            FrameError::UnknownType {
                type_name: "nope".into()
            }
        );
        assert_eq!(
            err(
                r#"{"version":"1.0","type":"voice.left","data":{"guildId":"1"},"meta":{"traceId":"t","sentAt":"s"}}"#
            ),
            FrameError::MissingField {
                field: "data.userId".into()
            }
        );
        assert_eq!(
            err(r#"{"version":"1.0","type":"voice.left","data":{"guildId":1,"userId":"2"},"meta":{"traceId":"t","sentAt":"s"}}"#)
                .code(),
            "wrong_type"
        );
        assert_eq!(
            err(r#"{"version":"1.0","type":"ack","data":{},"meta":{"sentAt":"s"}}"#),
            FrameError::MissingField {
                field: "meta.traceId".into()
            }
        );
        assert_eq!(
            err(r#"{"version":"1.0","type":"ack","data":[],"meta":{"traceId":"t","sentAt":"s"}}"#)
                .code(),
            "wrong_type"
        );
        let big = format!(r#"{{"pad":"{}"}}"#, "x".repeat(MAX_FRAME_BYTES));
        assert_eq!(err(&big).code(), "too_large");
    }

    #[test]
    fn wrong_type_names_the_nested_path() {
        let e = err(
            r#"{"version":"1.0","type":"messageCreate","data":{"id":"1","channelId":"2","author":{"id":7},"timestamp":"x"},"meta":{"traceId":"t","sentAt":"s"}}"#,
        );
        match e {
            FrameError::WrongType { field, .. } => assert_eq!(field, "data.author.id"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn malformed_reply_keeps_its_request_id() {
        let m = parse_event(
            br#"{"version":"1.0","type":"rateLimited","data":{"retryAfterMs":"soon"},"meta":{"traceId":"t9","sentAt":"s","requestId":"r1"}}"#,
        )
        .unwrap_err();
        assert_eq!(m.request_id.as_deref(), Some("r1"));
        assert_eq!(m.trace_id.as_deref(), Some("t9"));
        assert_eq!(m.type_name.as_deref(), Some("rateLimited"));
    }

    #[test]
    fn replies_are_recognised_by_request_id() {
        let ev = GatewayEvent {
            body: EventBody::RateLimited(RateLimited {
                retry_after_ms: 1500,
                global: true,
            }),
            meta: meta(Some("r1")),
        };
        let parsed = parse_event(ev.to_json().as_bytes()).unwrap();
        assert_eq!(
            parsed.as_reply(),
            Some((
                "r1",
                Reply::RateLimited {
                    retry_after_ms: 1500,
                    global: true
                }
            ))
        );
        // An error without a request id is a broadcast, not a reply.
        let broadcast = GatewayEvent {
            body: EventBody::Error(ErrorData {
                code: "x".into(),
                message: "y".into(),
                request_id: None,
            }),
            meta: meta(None),
        };
        assert_eq!(broadcast.as_reply(), None);
    }

    #[test]
    fn commands_need_request_id_and_actor() {
        let json = r#"{"version":"1.0","type":"typingStart","data":{"channelId":"1"},"meta":{"traceId":"t","sentAt":"s","requestId":"r"}}"#;
        let e = parse_command(json.as_bytes()).unwrap_err();
        assert_eq!(
            e.error,
            FrameError::MissingField {
                field: "meta.actor".into()
            }
        );
        assert_eq!(e.request_id.as_deref(), Some("r"));
    }

    #[test]
    fn sse_json_is_the_contract_envelope() {
        let body = EventBody::VoiceLeft(VoiceLeft {
            guild_id: "1".into(),
            channel_id: Some("2".into()),
            user_id: "3".into(),
        });
        let v: Value = serde_json::from_str(&sse_json(&body, "t", "s", None)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"version":"1.0","event":"voice.left","data":{"guildId":"1","channelId":"2","userId":"3"},"meta":{"traceId":"t","sentAt":"s"}})
        );
    }

    fn id() -> impl Strategy<Value = String> {
        "[0-9]{1,20}"
    }

    fn text() -> impl Strategy<Value = String> {
        any::<String>()
    }

    fn event_body() -> impl Strategy<Value = EventBody> {
        prop_oneof![
            (
                id(),
                id(),
                proptest::option::of(id()),
                id(),
                text(),
                text(),
                any::<bool>()
            )
                .prop_map(|(i, c, g, a, name, content, bot)| EventBody::MessageCreate(
                    MessageCreate {
                        id: i,
                        channel_id: c,
                        guild_id: g,
                        author: Author {
                            id: a,
                            username: name,
                            avatar: None,
                            bot
                        },
                        content,
                        timestamp: Timestamp::Text("2026-01-01T00:00:00.000Z".into()),
                        via: None,
                    }
                )),
            (id(), id(), proptest::option::of(text())).prop_map(|(i, c, content)| {
                EventBody::MessageUpdate(MessageUpdate {
                    id: i,
                    channel_id: c,
                    guild_id: None,
                    content,
                    edited_timestamp: None,
                })
            }),
            (id(), id(), id(), proptest::option::of(text()), any::<i64>()).prop_map(
                |(c, m, u, name, ts)| {
                    EventBody::ReactionAdd(ReactionAdd {
                        channel_id: c,
                        message_id: m,
                        user_id: u.clone(),
                        emoji: Emoji { id: None, name },
                        guild_id: Some(ts.to_string()),
                    })
                }
            ),
            (id(), id(), any::<i64>()).prop_map(|(c, u, ts)| EventBody::TypingStart(TypingStart {
                channel_id: c,
                user_id: u,
                timestamp: Timestamp::Unix(ts),
                guild_id: None,
            })),
            (id(), proptest::option::of(id()), id()).prop_map(|(g, c, u)| EventBody::VoiceLeft(
                VoiceLeft {
                    guild_id: g,
                    channel_id: c,
                    user_id: u
                }
            )),
            (text(), text()).prop_map(|(code, message)| EventBody::Error(ErrorData {
                code,
                message,
                request_id: None
            })),
            any::<u64>().prop_map(|ms| EventBody::RateLimited(RateLimited {
                retry_after_ms: ms,
                global: false
            })),
            Just(EventBody::Ack(Ack {})),
            (id(), id(), id(), proptest::option::of(text())).prop_map(|(c, m, u, name)| {
                EventBody::ReactionRemove(ReactionRemove {
                    channel_id: c,
                    message_id: m,
                    user_id: u,
                    emoji: Emoji { id: None, name },
                    guild_id: None,
                })
            }),
            (
                proptest::collection::vec(
                    (id(), text(), proptest::option::of(text()), 1u32..9),
                    0..4
                ),
                proptest::option::of(any::<u64>()),
            )
                .prop_map(|(list, rev)| EventBody::Messages(Messages {
                    messages: list
                        .into_iter()
                        .map(|(i, content, edited, count)| history_message(
                            &i, &content, edited, count
                        ))
                        .collect(),
                    rev,
                })),
        ]
    }

    /// Built from JSON, so fields added to `messageCreate` later keep this compiling.
    fn history_message(
        id: &str,
        content: &str,
        edited: Option<String>,
        count: u32,
    ) -> HistoryMessage {
        serde_json::from_value(serde_json::json!({
            "id": id, "channelId": "2", "guildId": null,
            "author": {"id": "4", "username": "ann", "avatar": null, "bot": false},
            "content": content, "timestamp": "2026-01-01T00:00:00.000Z",
            "editedTimestamp": edited,
            "reactions": [{"emoji": {"id": null, "name": "🔥"}, "count": count}],
        }))
        .unwrap()
    }

    #[test]
    fn a_messages_reply_carries_its_data() {
        let json = r#"{"version":"1.0","type":"messages","data":{"messages":[{"id":"9","channelId":"2","guildId":"3",
            "author":{"id":"4","username":"ann","avatar":null,"bot":false},"content":"hi","timestamp":"2026-01-01T00:00:00.000Z",
            "editedTimestamp":"2026-01-01T00:00:01.000Z","reactions":[{"emoji":{"id":null,"name":"🔥"},"count":2}]}]},
            "meta":{"traceId":"t","sentAt":"s","requestId":"r7"}}"#;
        let ev = parse_event(json.as_bytes()).unwrap();
        let Some(("r7", Reply::Messages(list))) = ev.as_reply() else {
            panic!("{ev:?}")
        };
        assert_eq!(list.messages[0].message.content, "hi");
        assert_eq!(list.messages[0].reactions[0].count, 2);
        assert_eq!(list.rev, None, "an older gateway sends no revision");
        let again: Value = serde_json::from_str(&ev.to_json()).unwrap();
        let sent: Value = serde_json::from_str(json).unwrap();
        assert_eq!(again["data"], sent["data"]);
        // A read is a command like the others.
        let cmd = r#"{"version":"1.0","type":"fetchMessages","data":{"channelId":"2","before":"9"},"meta":{"traceId":"t","sentAt":"s","requestId":"r","actor":"a"}}"#;
        let CommandBody::FetchMessages(f) = parse_command(cmd.as_bytes()).unwrap().body else {
            panic!()
        };
        assert_eq!((f.limit, f.before.as_deref()), (50, Some("9")));
    }

    fn command_body() -> impl Strategy<Value = CommandBody> {
        prop_oneof![
            (id(), text()).prop_map(|(c, content)| CommandBody::SendMessage(SendMessage {
                channel_id: c,
                content
            })),
            (id(), id(), text()).prop_map(|(c, m, emoji)| CommandBody::AddReaction(AddReaction {
                channel_id: c,
                message_id: m,
                emoji
            })),
            id().prop_map(|c| CommandBody::TypingStart(TriggerTyping { channel_id: c })),
            (id(), id(), proptest::option::of(id())).prop_map(|(g, u, c)| CommandBody::VoiceMove(
                VoiceMove {
                    guild_id: g,
                    user_id: u,
                    channel_id: c
                }
            )),
            (id(), id(), any::<bool>()).prop_map(|(g, u, mute)| CommandBody::VoiceMute(
                VoiceMute {
                    guild_id: g,
                    user_id: u,
                    mute
                }
            )),
            (id(), any::<u32>(), 0u8..4, id()).prop_map(|(c, limit, which, x)| {
                let pick = |n| (which == n).then(|| x.clone());
                CommandBody::FetchMessages(FetchMessages {
                    channel_id: c,
                    limit,
                    before: pick(1),
                    after: pick(2),
                    around: pick(3),
                })
            }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn event_encode_parse_round_trips(body in event_body(), trace in text(), rid in proptest::option::of(text())) {
            let ev = GatewayEvent { body, meta: TraceMeta { trace_id: trace, sent_at: "s".into(), request_id: rid, actor: None, access: None, extra: Extra::default() } };
            prop_assert_eq!(parse_event(ev.to_json().as_bytes()).unwrap(), ev);
        }

        #[test]
        fn command_encode_parse_round_trips(body in command_body(), rid in text(), actor in text()) {
            let cmd = GatewayCommand { body, meta: TraceMeta { trace_id: "t".into(), sent_at: "s".into(), request_id: Some(rid), actor: Some(actor), access: None, extra: Extra::default() } };
            prop_assert_eq!(parse_command(cmd.to_json().as_bytes()).unwrap(), cmd);
        }

        /// The typed pass for `messages` replies reads exactly what the general
        /// path reads: the same event, or (when it gives up) the general path's answer.
        #[test]
        fn the_messages_fast_path_agrees_with_the_general_path(
            list in proptest::collection::vec((id(), text(), proptest::option::of(text()), 1u32..9), 30..60),
            rev in proptest::option::of(any::<u64>()),
            cut in 0usize..4096,
            byte in any::<u8>(),
        ) {
            let messages = list.into_iter().map(|(i, c, e, n)| history_message(&i, &c, e, n)).collect();
            let ev = GatewayEvent { body: EventBody::Messages(Messages { messages, rev }), meta: meta(Some("r")) };
            let bytes = ev.to_json().into_bytes();
            prop_assert!(bytes.len() >= FAST_MESSAGES_BYTES);
            let general = |b: &[u8]| parse_envelope::<EventBody>(b, &EventBody::TYPES)
                .map(|(body, meta)| GatewayEvent { body, meta });
            prop_assert_eq!(parse_messages_fast(&bytes), Some(ev.clone()));
            prop_assert_eq!(parse_event(&bytes).unwrap(), ev);
            // A damaged frame: the fast pass accepts it only where the general one does, alike.
            let mut bad = bytes.clone();
            let at = cut.min(bad.len());
            bad.insert(at, byte);
            if let Some(fast) = parse_messages_fast(&bad) {
                prop_assert_eq!(general(&bad).ok(), Some(fast));
            }
            prop_assert_eq!(parse_event(&bad), general(&bad));
        }

        #[test]
        fn parser_never_panics_on_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse_event(&bytes);
            let _ = parse_command(&bytes);
        }

        #[test]
        fn parser_never_panics_on_mutated_frames(body in event_body(), cut in 0usize..400, byte in any::<u8>()) {
            let ev = GatewayEvent { body, meta: meta(Some("r")) };
            let mut bytes = ev.to_json().into_bytes();
            let at = cut.min(bytes.len());
            bytes.insert(at, byte);
            let _ = parse_event(&bytes);
            bytes.truncate(at);
            let _ = parse_event(&bytes);
        }

        #[test]
        fn event_id_round_trips_on_any_event(body in event_body(), epoch in any::<u64>(), seq in any::<u64>()) {
            let mut ev = GatewayEvent { body, meta: meta(None) };
            ev.meta.extra.get_mut().event_id = Some(crate::replay::EventId::new(epoch, seq));
            let json = ev.to_json();
            let want = format!("\"eventId\":\"{epoch}-{seq}\"");
            prop_assert!(json.contains(&want), "{}", json);
            prop_assert_eq!(parse_event(json.as_bytes()).unwrap(), ev);
        }

        #[test]
        fn only_a_canonical_event_id_is_accepted(text in "\\PC{0,45}|[0-9+ -]{0,45}") {
            let json = serde_json::json!({"version":"1.0","type":"typingStart",
                "data":{"channelId":"1","userId":"2","timestamp":"t"},
                "meta":{"traceId":"t","sentAt":"s","eventId": text}});
            match (text.parse::<crate::replay::EventId>(), parse_event(json.to_string().as_bytes())) {
                (Ok(id), Ok(ev)) => prop_assert_eq!(ev.meta.extra.get().event_id, Some(id)),
                (Err(_), Err(m)) => prop_assert!(m.error.to_string().contains("meta") && m.error.to_string().contains("event id"), "{}", m.error),
                (want, got) => prop_assert!(false, "{:?} vs {:?}", want, got),
            }
        }

        #[test]
        fn malformed_details_are_bounded(junk in "\\PC{0,2000}") {
            let json = serde_json::json!({"version":"1.0","type": junk, "data":{}, "meta":{"traceId": junk, "sentAt":"s"}});
            if let Err(m) = parse_event(json.to_string().as_bytes()) {
                prop_assert!(m.error.to_string().chars().count() < MAX_DETAIL_CHARS + 100);
                prop_assert!(m.trace_id.map_or(0, |t| t.chars().count()) <= MAX_DETAIL_CHARS + 1);
            }
        }
    }

    #[test]
    fn the_optional_meta_fields_round_trip_and_stay_off_the_wire_when_unset() {
        let text = r#"{"version":"1.0","type":"sendMessage","data":{"channelId":"1","content":"x"},
            "meta":{"traceId":"t","sentAt":"s","requestId":"r","actor":"1","access":"discord",
                    "actorName":"Ada","actorAvatar":"abc","attempt":2}}"#;
        let cmd = parse_command(text.as_bytes()).unwrap();
        let extra = cmd.meta.extra.get();
        assert_eq!(extra.actor_name.as_deref(), Some("Ada"));
        assert_eq!(extra.actor_avatar.as_deref(), Some("abc"));
        assert_eq!(extra.attempt, Some(2));
        assert_eq!(parse_command(cmd.to_json().as_bytes()).unwrap(), cmd);
        let mut plain = cmd.clone();
        plain.meta.extra = Extra::default();
        let json = plain.to_json();
        assert!(
            !json.contains("actorName") && !json.contains("attempt"),
            "{json}"
        );
        assert_eq!(parse_command(json.as_bytes()).unwrap(), plain);
        let bad = text.replace(r#""attempt":2"#, r#""attempt":"two""#);
        assert!(parse_command(bad.as_bytes()).is_err());
    }

    #[test]
    fn actor_fields_are_sanitized() {
        let e = MetaExtra::actor(Some(" Ada\r\nLovelace "), Some("a_0f"));
        assert_eq!(e.actor_name.as_deref(), Some("AdaLovelace"));
        assert_eq!(e.actor_avatar.as_deref(), Some("a_0f"));
        let e = MetaExtra::actor(Some("\u{7}"), Some("../x"));
        assert_eq!((e.actor_name, e.actor_avatar), (None, None));
        let long = MetaExtra::actor(Some(&"é".repeat(200)), None);
        assert_eq!(
            long.actor_name.unwrap().chars().count(),
            MAX_ACTOR_NAME_CHARS
        );
    }
}
