//! Discord dispatch events (op 0: `t` + `d`) → link events (CONTRACT.md §4, §5).
//!
//! [`Translator::handle_dispatch`] reads one dispatch defensively, straight from the
//! `serde_json::Value`: any JSON gives either events, "not ours" or a [`Skipped`]
//! diagnostic that names the field at fault, never a panic (fuzzed). It also owns
//! the [`VoiceCache`] that turns voice states into joins and leaves.
//!
//! What is read how (facts from reference/discord.md §3 and §6):
//! - Ids arrive as JSON strings, or as integers when Discord echoes a non-string id;
//!   both are accepted and sent on as decimal strings. Anything else is a wrong type.
//! - `author.username` is the name sent, not `global_name` or the guild nickname, so
//!   the same account always shows under the same name.
//! - A webhook message's `author` is a pseudo-user (its id is the webhook's): it is
//!   forwarded with `bot: true`, as nobody typed it in a Discord client. The bot's
//!   own messages are forwarded like any other (CONTRACT.md §5).
//! - MESSAGE_CREATE's `timestamp` is passed on as given (RFC 3339); if it is missing
//!   it is derived from the message id ([`snowflake_time_ms`]).
//! - TYPING_START's `timestamp` is integer Unix *seconds*; it is sent on as RFC 3339
//!   UTC with milliseconds, like every other time on the link.
//! - MESSAGE_UPDATE may be partial: `content` and `editedTimestamp` are sent only when
//!   Discord sent them; absent never means cleared.
//! - MESSAGE_DELETE_BULK becomes one `messageDelete` per id.
//!
//! Voice (see [`crate::discord::voice_cache`] for the invariant browsers rely on):
//! - VOICE_STATE_UPDATE → `voice.left` / `voice.joined`; a move is left, then joined.
//! - GUILD_CREATE re-seeds the guild and emits the difference with what was held
//!   before, so browsers stay right after an outage or a new session.
//!   `voice_states` entries that cannot be read are left out of the seed.
//! - GUILD_DELETE (removed, or unavailable in an outage) emits a leave per member.
//! - READY (a new session) drops, with leaves, the guilds it does not list; the
//!   others keep their members until their GUILD_CREATE emits the difference. The
//!   cache is never wiped silently while browsers hold a view built from it.
//!
//! With a guild filter (`DISCORD_GUILD_ID`), events of other guilds and events
//! without a guild (direct messages) are [`Translated::Filtered`], and the voice
//! cache only ever holds that guild.

use std::fmt;

use serde_json::{Map, Value};

use super::voice_cache::{Profile, VoiceCache, VoiceState};
use crate::ids::rfc3339_millis;
use crate::payload::{
    Author, Emoji, EventBody, MessageCreate, MessageDelete, MessageUpdate, ReactionAdd, Timestamp,
    TypingStart, VoiceSnapshot,
};

/// Discord's epoch, 2015-01-01T00:00:00Z, in Unix milliseconds.
pub const DISCORD_EPOCH_MS: u64 = 1_420_070_400_000;

/// The dispatch events the translator reads; every other name is
/// [`Translated::Unhandled`].
pub const HANDLED_EVENTS: [&str; 11] = [
    "READY",
    "RESUMED",
    "GUILD_CREATE",
    "GUILD_DELETE",
    "MESSAGE_CREATE",
    "MESSAGE_UPDATE",
    "MESSAGE_DELETE",
    "MESSAGE_DELETE_BULK",
    "MESSAGE_REACTION_ADD",
    "TYPING_START",
    "VOICE_STATE_UPDATE",
];

/// When a snowflake was made, in Unix milliseconds (bits 63–22 are ms since
/// [`DISCORD_EPOCH_MS`]).
pub fn snowflake_time_ms(id: u64) -> u64 {
    (id >> 22) + DISCORD_EPOCH_MS
}

/// What one dispatch became.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub enum Translated {
    /// Link events to publish, in this order. May be empty (a mute-only voice
    /// change, a GUILD_CREATE with nothing new, RESUMED).
    Events(Vec<EventBody>),
    /// An event name relay does not forward.
    Unhandled,
    /// From a guild other than the configured one, or without a guild while a
    /// guild filter is set.
    Filtered,
    /// A handled event that could not be read; nothing was changed.
    Skipped(Skipped),
}

impl Translated {
    /// The events to publish; none unless [`Translated::Events`].
    pub fn into_events(self) -> Vec<EventBody> {
        match self {
            Translated::Events(events) => events,
            _ => Vec::new(),
        }
    }
}

/// A handled dispatch that was dropped because a required field was missing or
/// unreadable: for the driver to count and log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// The dispatch name, e.g. `MESSAGE_CREATE`.
    pub event: &'static str,
    /// What was wrong.
    pub reason: SkipReason,
}

/// Why a dispatch was skipped. Fields are named by their path in `d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    /// `d` is not a JSON object.
    NotAnObject,
    /// A required field is absent or `null`.
    Missing(&'static str),
    /// A field is present but not what Discord documents (e.g. an id that is
    /// neither a decimal string nor a non-negative integer).
    WrongType(&'static str),
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SkipReason::NotAnObject => f.write_str("data is not a JSON object"),
            SkipReason::Missing(field) => write!(f, "missing field `{field}`"),
            SkipReason::WrongType(field) => write!(f, "field `{field}` has the wrong type"),
        }
    }
}

impl fmt::Display for Skipped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} skipped: {}", self.event, self.reason)
    }
}

impl std::error::Error for Skipped {}

/// Turns Discord dispatches into link events and keeps the voice cache.
#[derive(Debug, Clone, Default)]
pub struct Translator {
    guild_filter: Option<String>,
    voice: VoiceCache,
}

type Fields = Map<String, Value>;

impl Translator {
    /// A translator forwarding every guild (`None`) or only `guild_filter`
    /// (`DISCORD_GUILD_ID`). A filter that is a number is compared as one, so
    /// `"0123"` matches id `123`.
    pub fn new(guild_filter: Option<String>) -> Self {
        let guild_filter = guild_filter.map(|g| match g.trim().parse::<u64>() {
            Ok(n) => n.to_string(),
            Err(_) => g,
        });
        Self {
            guild_filter,
            voice: VoiceCache::new(),
        }
    }

    /// The guild filter, normalized.
    pub fn guild_filter(&self) -> Option<&str> {
        self.guild_filter.as_deref()
    }

    /// The voice cache.
    pub fn voice(&self) -> &VoiceCache {
        &self.voice
    }

    /// Who is in which voice channel now: `ready`'s `data.voice`.
    pub fn voice_snapshot(&self) -> VoiceSnapshot {
        self.voice.snapshot(self.guild_filter.as_deref())
    }

    /// Translates one dispatch: `event_name` is the frame's `t`, `data` its `d`.
    pub fn handle_dispatch(&mut self, event_name: &str, data: &Value) -> Translated {
        let Some(event) = HANDLED_EVENTS.iter().copied().find(|e| *e == event_name) else {
            return Translated::Unhandled;
        };
        let result = match data.as_object() {
            None => Err(SkipReason::NotAnObject),
            Some(d) => self.translate(event, d),
        };
        result.unwrap_or_else(|reason| Translated::Skipped(Skipped { event, reason }))
    }

    fn translate(&mut self, event: &'static str, d: &Fields) -> Result<Translated, SkipReason> {
        match event {
            "READY" => Ok(self.ready(d)),
            "GUILD_CREATE" => self.guild_create(d),
            "GUILD_DELETE" => self.guild_delete(d),
            "MESSAGE_CREATE" => self.message_create(d),
            "MESSAGE_UPDATE" => self.message_update(d),
            "MESSAGE_DELETE" => self.message_delete(d),
            "MESSAGE_DELETE_BULK" => self.message_delete_bulk(d),
            "MESSAGE_REACTION_ADD" => self.reaction_add(d),
            "TYPING_START" => self.typing_start(d),
            "VOICE_STATE_UPDATE" => self.voice_state_update(d),
            // RESUMED: the session goes on; the replayed events bring the cache up to date.
            _ => Ok(Translated::Events(Vec::new())),
        }
    }

    fn admits(&self, guild_id: Option<&str>) -> bool {
        match &self.guild_filter {
            None => true,
            Some(want) => guild_id == Some(want.as_str()),
        }
    }

    fn ready(&mut self, d: &Fields) -> Translated {
        // Without a readable guild list, keep everything: each GUILD_CREATE or
        // GUILD_DELETE still corrects its guild.
        let Some(Value::Array(guilds)) = d.get("guilds") else {
            return Translated::Events(Vec::new());
        };
        let ids: Vec<String> = guilds
            .iter()
            .filter_map(|g| g.get("id").and_then(parse_id))
            .collect();
        voice_events(self.voice.retain_guilds(&ids))
    }

    fn guild_create(&mut self, d: &Fields) -> Result<Translated, SkipReason> {
        let guild_id = req_id(d, "id", "id")?;
        if !self.admits(Some(&guild_id)) {
            return Ok(Translated::Filtered);
        }
        if d.get("unavailable") == Some(&Value::Bool(true)) {
            return Ok(Translated::Events(Vec::new()));
        }
        let states = match d.get("voice_states") {
            None | Some(Value::Null) => return Err(SkipReason::Missing("voice_states")),
            Some(Value::Array(states)) => states,
            Some(_) => return Err(SkipReason::WrongType("voice_states")),
        };
        let states = states
            .iter()
            .filter_map(|s| voice_state(s.as_object()?).ok())
            .collect();
        let members = match d.get("members") {
            Some(Value::Array(members)) => members.iter().filter_map(member_profile).collect(),
            _ => Vec::new(),
        };
        Ok(voice_events(
            self.voice.seed_guild(&guild_id, states, members),
        ))
    }

    fn guild_delete(&mut self, d: &Fields) -> Result<Translated, SkipReason> {
        let guild_id = req_id(d, "id", "id")?;
        if !self.admits(Some(&guild_id)) {
            return Ok(Translated::Filtered);
        }
        Ok(voice_events(self.voice.remove_guild(&guild_id)))
    }

    fn message_create(&mut self, d: &Fields) -> Result<Translated, SkipReason> {
        let id = req_id(d, "id", "id")?;
        let channel_id = req_id(d, "channel_id", "channel_id")?;
        let guild_id = opt_id(d, "guild_id", "guild_id")?;
        if !self.admits(guild_id.as_deref()) {
            return Ok(Translated::Filtered);
        }
        let author = req_obj(d, "author", "author")?;
        let webhook = d.get("webhook_id").is_some_and(|w| !w.is_null());
        let author = Author {
            id: req_id(author, "id", "author.id")?,
            username: opt_str(author, "username").unwrap_or_default(),
            avatar: opt_str(author, "avatar"),
            bot: webhook || author.get("bot").and_then(Value::as_bool).unwrap_or(false),
        };
        let timestamp = match opt_str(d, "timestamp") {
            Some(t) => Timestamp::Text(t),
            None => {
                let ms = id.parse().map_or(DISCORD_EPOCH_MS, snowflake_time_ms);
                Timestamp::Text(rfc3339_millis(ms))
            }
        };
        Ok(one(EventBody::MessageCreate(MessageCreate {
            id,
            channel_id,
            guild_id,
            author,
            content: opt_str(d, "content").unwrap_or_default(),
            timestamp,
        })))
    }

    fn message_update(&mut self, d: &Fields) -> Result<Translated, SkipReason> {
        let id = req_id(d, "id", "id")?;
        let channel_id = req_id(d, "channel_id", "channel_id")?;
        let guild_id = opt_id(d, "guild_id", "guild_id")?;
        if !self.admits(guild_id.as_deref()) {
            return Ok(Translated::Filtered);
        }
        Ok(one(EventBody::MessageUpdate(MessageUpdate {
            id,
            channel_id,
            guild_id,
            content: opt_str(d, "content"),
            edited_timestamp: opt_str(d, "edited_timestamp").map(Timestamp::Text),
        })))
    }

    fn message_delete(&mut self, d: &Fields) -> Result<Translated, SkipReason> {
        let id = req_id(d, "id", "id")?;
        let channel_id = req_id(d, "channel_id", "channel_id")?;
        let guild_id = opt_id(d, "guild_id", "guild_id")?;
        if !self.admits(guild_id.as_deref()) {
            return Ok(Translated::Filtered);
        }
        Ok(one(EventBody::MessageDelete(MessageDelete {
            id,
            channel_id,
            guild_id,
        })))
    }

    fn message_delete_bulk(&mut self, d: &Fields) -> Result<Translated, SkipReason> {
        let channel_id = req_id(d, "channel_id", "channel_id")?;
        let guild_id = opt_id(d, "guild_id", "guild_id")?;
        if !self.admits(guild_id.as_deref()) {
            return Ok(Translated::Filtered);
        }
        let ids = match d.get("ids") {
            None | Some(Value::Null) => return Err(SkipReason::Missing("ids")),
            Some(Value::Array(ids)) => ids,
            Some(_) => return Err(SkipReason::WrongType("ids")),
        };
        let ids = ids
            .iter()
            .map(|id| parse_id(id).ok_or(SkipReason::WrongType("ids")))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Translated::Events(
            ids.into_iter()
                .map(|id| {
                    EventBody::MessageDelete(MessageDelete {
                        id,
                        channel_id: channel_id.clone(),
                        guild_id: guild_id.clone(),
                    })
                })
                .collect(),
        ))
    }

    fn reaction_add(&mut self, d: &Fields) -> Result<Translated, SkipReason> {
        let channel_id = req_id(d, "channel_id", "channel_id")?;
        let message_id = req_id(d, "message_id", "message_id")?;
        let user_id = req_id(d, "user_id", "user_id")?;
        let guild_id = opt_id(d, "guild_id", "guild_id")?;
        if !self.admits(guild_id.as_deref()) {
            return Ok(Translated::Filtered);
        }
        let emoji = req_obj(d, "emoji", "emoji")?;
        let emoji = Emoji {
            id: opt_id(emoji, "id", "emoji.id")?,
            name: opt_str(emoji, "name"),
        };
        Ok(one(EventBody::ReactionAdd(ReactionAdd {
            channel_id,
            message_id,
            user_id,
            emoji,
            guild_id,
        })))
    }

    fn typing_start(&mut self, d: &Fields) -> Result<Translated, SkipReason> {
        let channel_id = req_id(d, "channel_id", "channel_id")?;
        let user_id = req_id(d, "user_id", "user_id")?;
        let guild_id = opt_id(d, "guild_id", "guild_id")?;
        if !self.admits(guild_id.as_deref()) {
            return Ok(Translated::Filtered);
        }
        let timestamp = match d.get("timestamp") {
            None | Some(Value::Null) => return Err(SkipReason::Missing("timestamp")),
            Some(Value::Number(secs)) => secs
                .as_u64()
                .and_then(|s| s.checked_mul(1000))
                .map(|ms| Timestamp::Text(rfc3339_millis(ms)))
                .ok_or(SkipReason::WrongType("timestamp"))?,
            // Not what Discord sends; text is already the link's form, so pass it on.
            Some(Value::String(text)) => Timestamp::Text(text.clone()),
            Some(_) => return Err(SkipReason::WrongType("timestamp")),
        };
        Ok(one(EventBody::TypingStart(TypingStart {
            channel_id,
            user_id,
            timestamp,
            guild_id,
        })))
    }

    fn voice_state_update(&mut self, d: &Fields) -> Result<Translated, SkipReason> {
        // Only guild voice states matter: a bot sees no others.
        let guild_id = req_id(d, "guild_id", "guild_id")?;
        if !self.admits(Some(&guild_id)) {
            return Ok(Translated::Filtered);
        }
        let state = voice_state(d)?;
        Ok(voice_events(self.voice.apply(&guild_id, state)))
    }
}

fn one(body: EventBody) -> Translated {
    Translated::Events(vec![body])
}

fn voice_events(changes: Vec<super::voice_cache::VoiceChange>) -> Translated {
    Translated::Events(changes.into_iter().map(EventBody::from).collect())
}

/// A voice state object (VOICE_STATE_UPDATE's `d`, or an entry of GUILD_CREATE's
/// `voice_states`). `channel_id` must be present; `null` means not in voice.
fn voice_state(o: &Fields) -> Result<VoiceState, SkipReason> {
    let user_id = req_id(o, "user_id", "user_id")?;
    let channel_id = match o.get("channel_id") {
        None => return Err(SkipReason::Missing("channel_id")),
        Some(Value::Null) => None,
        Some(v) => Some(parse_id(v).ok_or(SkipReason::WrongType("channel_id"))?),
    };
    // The member's user, unless it visibly belongs to someone else.
    let profile = o
        .get("member")
        .and_then(|m| m.get("user"))
        .filter(|u| {
            u.get("id")
                .and_then(parse_id)
                .map_or(true, |id| id == user_id)
        })
        .and_then(profile);
    Ok(VoiceState {
        user_id,
        channel_id,
        profile,
    })
}

/// A user object's display data; `None` without a `username`.
fn profile(user: &Value) -> Option<Profile> {
    Some(Profile {
        username: user.get("username")?.as_str()?.to_string(),
        avatar: user.get("avatar").and_then(Value::as_str).map(String::from),
    })
}

/// A GUILD_CREATE `members` entry → `(user id, profile)`.
fn member_profile(member: &Value) -> Option<(String, Profile)> {
    let user = member.get("user")?;
    Some((parse_id(user.get("id")?)?, profile(user)?))
}

/// A snowflake as Discord sends it (decimal string, or an integer) → decimal string.
fn parse_id(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => s.parse::<u64>().ok().map(|n| n.to_string()),
        Value::Number(n) => n.as_u64().map(|n| n.to_string()),
        _ => None,
    }
}

fn req_id(o: &Fields, key: &str, path: &'static str) -> Result<String, SkipReason> {
    opt_id(o, key, path)?.ok_or(SkipReason::Missing(path))
}

fn opt_id(o: &Fields, key: &str, path: &'static str) -> Result<Option<String>, SkipReason> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => parse_id(v).map(Some).ok_or(SkipReason::WrongType(path)),
    }
}

fn req_obj<'a>(o: &'a Fields, key: &str, path: &'static str) -> Result<&'a Fields, SkipReason> {
    match o.get(key) {
        None | Some(Value::Null) => Err(SkipReason::Missing(path)),
        Some(Value::Object(inner)) => Ok(inner),
        Some(_) => Err(SkipReason::WrongType(path)),
    }
}

/// A string field; absent, `null` or another type reads as `None` (display data
/// is optional, and a missing value must not be mistaken for an empty one).
fn opt_str(o: &Fields, key: &str) -> Option<String> {
    o.get(key).and_then(Value::as_str).map(String::from)
}

/// Fuzz entry: any bytes never panic, and the voice events emitted, replayed onto
/// the snapshot taken before, give the snapshot after. The bytes are fed as `d`
/// under every handled name; a JSON array of `{"t","d"}` objects is also fed as a
/// sequence of dispatches.
#[cfg(feature = "fuzzing")]
pub fn fuzz_dispatch(bytes: &[u8]) {
    let Ok(value) = serde_json::from_slice::<Value>(bytes) else {
        return;
    };
    for filter in [None, Some("1".to_string())] {
        let mut t = Translator::new(filter);
        let mut view = t.voice_snapshot();
        let mut feed = |t: &mut Translator, name: &str, d: &Value| {
            for body in t.handle_dispatch(name, d).into_events() {
                match &body {
                    EventBody::VoiceJoined(j) => view.apply_joined(j),
                    EventBody::VoiceLeft(l) => view.apply_left(l),
                    _ => {}
                }
            }
        };
        for name in HANDLED_EVENTS {
            feed(&mut t, name, &value);
        }
        if let Value::Array(frames) = &value {
            for frame in frames {
                if let (Some(name), Some(d)) =
                    (frame.get("t").and_then(Value::as_str), frame.get("d"))
                {
                    feed(&mut t, name, d);
                }
            }
        }
        assert_eq!(
            view,
            t.voice_snapshot(),
            "replayed voice events match the cache"
        );
    }
}
