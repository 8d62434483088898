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
//!   forwarded with `bot: true`, as nobody typed it in a Discord client, except a
//!   post relay made through its own webhook: that one carries `via: "relay"` and,
//!   when relay knows who sent it, that session's user (`bot: false`; see
//!   [`RelayPosts`] and docs/webhooks.md). The bot's
//!   own messages are forwarded like any other (CONTRACT.md §5).
//! - MESSAGE_CREATE's `timestamp` is passed on as given (RFC 3339); if it is missing
//!   it is derived from the message id ([`snowflake_time_ms`]).
//! - TYPING_START's `timestamp` is integer Unix *seconds*; it is sent on as RFC 3339
//!   UTC with milliseconds, like every other time on the link.
//! - MESSAGE_UPDATE may be partial: `content` and `editedTimestamp` are sent only when
//!   Discord sent them; absent never means cleared.
//! - MESSAGE_DELETE_BULK becomes one `messageDelete` per id.
//! - MESSAGE_REACTION_REMOVE becomes `reactionRemove`; REMOVE_ALL and
//!   REMOVE_EMOJI send nothing on but correct the history's counts.
//! - Every event sent on also feeds the [`History`] window (CONTRACT.md §9);
//!   READY (a new session, which may have missed changes) empties it.
//! - Every field read is type-checked: a present field of the wrong JSON type (a
//!   number for `content`, text for TYPING_START's `timestamp`, a timestamp that
//!   is not RFC 3339, a non-boolean `author.bot`) skips the dispatch with
//!   [`SkipReason::WrongType`] naming it, rather than forwarding it to browsers as
//!   is or quietly as a default. `null` counts as absent.
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

use super::guild::{GuildError, GUILD_EVENTS};
use super::guild_tracker::GuildTracker;
use super::voice_cache::{Profile, VoiceCache, VoiceState};
use super::webhook::RelayPosts;
use crate::history::History;
use crate::ids::{parse_rfc3339_ms, rfc3339_millis};
use crate::payload::{
    Author, Emoji, EventBody, MessageCreate, MessageDelete, MessageUpdate, ReactionAdd,
    ReactionRemove, Timestamp, TypingStart, VoiceSnapshot,
};

fn skip_reason(e: GuildError) -> SkipReason {
    match e {
        GuildError::NotAnObject => SkipReason::NotAnObject,
        GuildError::Missing(field) => SkipReason::Missing(field),
        GuildError::WrongType(field) => SkipReason::WrongType(field),
        // Outages are not errors; the tracker never reports this one.
        GuildError::Unavailable => SkipReason::Missing("id"),
    }
}

/// Discord's epoch, 2015-01-01T00:00:00Z, in Unix milliseconds.
pub const DISCORD_EPOCH_MS: u64 = 1_420_070_400_000;

/// The dispatch events the translator reads; every other name is
/// [`Translated::Unhandled`].
pub const HANDLED_EVENTS: [&str; 14] = [
    "READY",
    "RESUMED",
    "GUILD_CREATE",
    "GUILD_DELETE",
    "MESSAGE_CREATE",
    "MESSAGE_UPDATE",
    "MESSAGE_DELETE",
    "MESSAGE_DELETE_BULK",
    "MESSAGE_REACTION_ADD",
    "MESSAGE_REACTION_REMOVE",
    "MESSAGE_REACTION_REMOVE_ALL",
    "MESSAGE_REACTION_REMOVE_EMOJI",
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
    /// The guilds' permission models (`guild.state` / `guild.member` events).
    guilds: GuildTracker,
    /// A GUILD_CREATE whose permission model could not be read while its voice
    /// states could: for the driver to log ([`Translator::take_guild_error`]).
    guild_error: Option<Skipped>,
    /// Recent messages per channel, fed by every event sent on.
    history: History,
    /// Who wrote the messages relay posts through its webhooks (docs/webhooks.md).
    relay_posts: RelayPosts,
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
            guilds: GuildTracker::new(guild_filter.as_deref()),
            guild_filter,
            voice: VoiceCache::new(),
            guild_error: None,
            history: History::default(),
            relay_posts: RelayPosts::default(),
        }
    }

    /// The recent-message windows.
    pub fn history(&self) -> &History {
        &self.history
    }

    /// The recent-message windows, to answer and merge reads.
    pub fn history_mut(&mut self) -> &mut History {
        &mut self.history
    }

    /// The guilds' permission models.
    pub fn guilds(&self) -> &GuildTracker {
        &self.guilds
    }

    /// The guilds' permission models, to add members read by REST.
    pub fn guilds_mut(&mut self) -> &mut GuildTracker {
        &mut self.guilds
    }

    /// relay's webhook posts: who wrote what (history reads attribute by it).
    pub fn relay_posts(&self) -> &RelayPosts {
        &self.relay_posts
    }

    /// relay's webhook posts, for the gateway to register and resolve.
    pub fn relay_posts_mut(&mut self) -> &mut RelayPosts {
        &mut self.relay_posts
    }

    /// The last GUILD_CREATE whose permission model was unreadable (its voice
    /// events still went out), once.
    pub fn take_guild_error(&mut self) -> Option<Skipped> {
        self.guild_error.take()
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
        let guild_events = self.guilds.handle_dispatch(event_name, data);
        let Some(event) = HANDLED_EVENTS.iter().copied().find(|e| *e == event_name) else {
            // Guild structure and member events feed the permission model only.
            let Some(event) = GUILD_EVENTS.iter().copied().find(|e| *e == event_name) else {
                return Translated::Unhandled;
            };
            return match guild_events {
                Ok(events) => Translated::Events(events),
                Err(e) => Translated::Skipped(Skipped {
                    event,
                    reason: skip_reason(e),
                }),
            };
        };
        let guild_events = match guild_events {
            Ok(events) => events,
            Err(e) => {
                if event == "GUILD_CREATE" {
                    self.guild_error = Some(Skipped {
                        event,
                        reason: skip_reason(e),
                    });
                }
                Vec::new()
            }
        };
        let result = match data.as_object() {
            None => Err(SkipReason::NotAnObject),
            Some(d) => self.translate(event, d),
        };
        if let Ok(Translated::Events(events)) = &result {
            for e in events {
                self.history.apply(e);
            }
        }
        match result {
            Ok(Translated::Events(mut events)) if !guild_events.is_empty() => {
                // The model first: an edge then filters the voice events by it.
                let mut all = guild_events;
                all.append(&mut events);
                Translated::Events(all)
            }
            Ok(translated) => translated,
            Err(reason) => Translated::Skipped(Skipped { event, reason }),
        }
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
            "MESSAGE_REACTION_REMOVE" => self.reaction_remove(d),
            "MESSAGE_REACTION_REMOVE_ALL" | "MESSAGE_REACTION_REMOVE_EMOJI" => {
                self.reactions_cleared(d)
            }
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
        // A new session: what happened since the last one was not seen.
        self.history.clear();
        self.relay_posts.note_application(d.get("application"));
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
        let webhook_id = opt_id(d, "webhook_id", "webhook_id")?;
        let mut author = Author {
            id: req_id(author, "id", "author.id")?,
            username: opt_string(author, "username", "author.username")?.unwrap_or_default(),
            avatar: opt_string(author, "avatar", "author.avatar")?,
            bot: webhook_id.is_some() || opt_bool(author, "bot", "author.bot")?.unwrap_or(false),
        };
        let content = opt_string(d, "content", "content")?.unwrap_or_default();
        // A post through relay's webhook shows the session that wrote it; one
        // whose sender relay does not know keeps the webhook's override name.
        let mut via = None;
        if let Some(hook) = &webhook_id {
            let app = opt_id(d, "application_id", "application_id")?;
            if let Some(sender) =
                self.relay_posts
                    .attribute(hook, &id, &content, &author.username, app.as_deref())
            {
                via = Some("relay".to_owned());
                if let Some(sender) = sender {
                    author = sender;
                }
            }
        }
        let timestamp = match opt_timestamp(d, "timestamp", "timestamp")? {
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
            content,
            timestamp,
            via,
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
            content: opt_string(d, "content", "content")?,
            edited_timestamp: opt_timestamp(d, "edited_timestamp", "edited_timestamp")?
                .map(Timestamp::Text),
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
        Ok(match self.reaction(d)? {
            Some(r) => one(EventBody::ReactionAdd(r)),
            None => Translated::Filtered,
        })
    }

    fn reaction_remove(&mut self, d: &Fields) -> Result<Translated, SkipReason> {
        Ok(match self.reaction(d)? {
            Some(r) => one(EventBody::ReactionRemove(ReactionRemove {
                channel_id: r.channel_id,
                message_id: r.message_id,
                user_id: r.user_id,
                emoji: r.emoji,
                guild_id: r.guild_id,
            })),
            None => Translated::Filtered,
        })
    }

    /// MESSAGE_REACTION_ADD and _REMOVE share their fields; `None`: another
    /// guild's (filtered).
    fn reaction(&self, d: &Fields) -> Result<Option<ReactionAdd>, SkipReason> {
        let channel_id = req_id(d, "channel_id", "channel_id")?;
        let message_id = req_id(d, "message_id", "message_id")?;
        let user_id = req_id(d, "user_id", "user_id")?;
        let guild_id = opt_id(d, "guild_id", "guild_id")?;
        if !self.admits(guild_id.as_deref()) {
            return Ok(None);
        }
        let emoji = req_obj(d, "emoji", "emoji")?;
        let emoji = Emoji {
            id: opt_id(emoji, "id", "emoji.id")?,
            name: opt_string(emoji, "name", "emoji.name")?,
        };
        Ok(Some(ReactionAdd {
            channel_id,
            message_id,
            user_id,
            emoji,
            guild_id,
        }))
    }

    /// MESSAGE_REACTION_REMOVE_ALL / _EMOJI: only the history's counts change.
    fn reactions_cleared(&mut self, d: &Fields) -> Result<Translated, SkipReason> {
        let channel_id = req_id(d, "channel_id", "channel_id")?;
        let message_id = req_id(d, "message_id", "message_id")?;
        let guild_id = opt_id(d, "guild_id", "guild_id")?;
        if !self.admits(guild_id.as_deref()) {
            return Ok(Translated::Filtered);
        }
        let emoji = match opt_obj(d, "emoji", "emoji")? {
            Some(e) => Some(Emoji {
                id: opt_id(e, "id", "emoji.id")?,
                name: opt_string(e, "name", "emoji.name")?,
            }),
            None => None,
        };
        self.history
            .remove_reactions(&channel_id, &message_id, emoji.as_ref());
        Ok(Translated::Events(Vec::new()))
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
            // Text included: Discord sends integer seconds, and whatever else came
            // would reach browsers unchecked.
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
    let profile = match opt_obj(o, "member", "member")? {
        None => None,
        Some(member) => match opt_obj(member, "user", "member.user")? {
            None => None,
            Some(user) => {
                let id = opt_id(user, "id", "member.user.id")?;
                let username = opt_string(user, "username", "member.user.username")?;
                let avatar = opt_string(user, "avatar", "member.user.avatar")?;
                match username {
                    Some(username) if id.is_none_or(|id| id == user_id) => {
                        Some(Profile { username, avatar })
                    }
                    _ => None,
                }
            }
        },
    };
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

fn opt_obj<'a>(
    o: &'a Fields,
    key: &str,
    path: &'static str,
) -> Result<Option<&'a Fields>, SkipReason> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(inner)) => Ok(Some(inner)),
        Some(_) => Err(SkipReason::WrongType(path)),
    }
}

/// A string field; absent or `null` is `None` (a missing value must not be
/// mistaken for an empty one), another type is [`SkipReason::WrongType`].
fn opt_string(o: &Fields, key: &str, path: &'static str) -> Result<Option<String>, SkipReason> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(SkipReason::WrongType(path)),
    }
}

fn opt_bool(o: &Fields, key: &str, path: &'static str) -> Result<Option<bool>, SkipReason> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(SkipReason::WrongType(path)),
    }
}

/// An RFC 3339 timestamp, passed on as Discord wrote it once it is known to be one.
fn opt_timestamp(o: &Fields, key: &str, path: &'static str) -> Result<Option<String>, SkipReason> {
    match opt_string(o, key, path)? {
        Some(t) if parse_rfc3339_ms(&t).is_none() => Err(SkipReason::WrongType(path)),
        t => Ok(t),
    }
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

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;
    use crate::payload::{VoiceJoined, VoiceLeft};

    const GUILD: &str = "290926798626357999";
    const OTHER_GUILD: &str = "41771983423143937";

    fn events(t: &mut Translator, name: &str, d: Value) -> Vec<EventBody> {
        match t.handle_dispatch(name, &d) {
            Translated::Events(events) => events,
            other => panic!("{name}: expected events, got {other:?}"),
        }
    }

    fn one_event(t: &mut Translator, name: &str, d: Value) -> EventBody {
        let mut e = events(t, name, d);
        assert_eq!(e.len(), 1, "{e:?}");
        e.remove(0)
    }

    /// Modelled on the MESSAGE_CREATE example of Discord's message.mdx.
    fn message_create() -> Value {
        json!({
            "type": 0, "tts": false, "timestamp": "2017-07-11T17:27:07.299000+00:00", "pinned": false,
            "mentions": [{
                "username": "Mason", "public_flags": 131141, "id": "53908099506183680", "global_name": "Mason",
                "discriminator": "0", "avatar": "a_bab14f271d565501444b2ca3be944b25",
                "member": {"roles": [], "mute": false, "joined_at": "2015-04-26T06:26:56.936000+00:00", "deaf": false}
            }],
            "mention_roles": [], "mention_everyone": false,
            "member": {
                "roles": [], "premium_since": null, "pending": false, "nick": null, "mute": false,
                "joined_at": "2015-04-26T06:26:56.936000+00:00", "flags": 0, "deaf": false,
                "communication_disabled_until": null, "avatar": null
            },
            "id": "334385199974967042", "flags": 0, "embeds": [], "edited_timestamp": null,
            "content": "Supa Hot", "components": [], "channel_type": 0, "channel_id": "290926798999357250",
            "author": {
                "username": "Mason", "public_flags": 131141, "id": "53908099506183680", "global_name": "Mason Jar",
                "discriminator": "0", "avatar_decoration_data": null, "avatar": "a_bab14f271d565501444b2ca3be944b25"
            },
            "attachments": [], "guild_id": GUILD
        })
    }

    /// Modelled on voice.mdx's voice state, as VOICE_STATE_UPDATE sends it (with `member.user`).
    fn voice_update(user: &str, channel: Option<&str>, name: &str) -> Value {
        json!({
            "member": {
                "user": {"username": name, "public_flags": 0, "id": user, "global_name": null,
                         "discriminator": "0", "avatar": format!("{name}-avatar")},
                "roles": [], "mute": false, "joined_at": "2021-05-01T10:00:00.000000+00:00", "deaf": false,
                "flags": 0, "avatar": null, "nick": null, "premium_since": null, "pending": false,
                "communication_disabled_until": null
            },
            "user_id": user, "suppress": false, "session_id": "90326bd25d71d39b9ef95b299e3872ff",
            "self_video": false, "self_mute": false, "self_deaf": false, "request_to_speak_timestamp": null,
            "mute": false, "guild_id": GUILD, "deaf": false, "channel_id": channel
        })
    }

    /// A full GUILD_CREATE: voice_states without `guild_id`, members with `user`.
    fn guild_create(voice: &[(&str, &str)], members: &[(&str, &str)]) -> Value {
        let states: Vec<Value> = voice
            .iter()
            .map(|(user, channel)| {
                json!({"user_id": user, "channel_id": channel, "session_id": "abc", "deaf": false, "mute": false,
                       "self_deaf": false, "self_mute": true, "self_video": false, "suppress": false,
                       "request_to_speak_timestamp": null})
            })
            .collect();
        let members: Vec<Value> = members
            .iter()
            .map(|(user, name)| {
                json!({"user": {"id": user, "username": name, "global_name": null, "avatar": null, "discriminator": "0"},
                       "roles": [], "joined_at": "2021-05-01T10:00:00.000000+00:00", "deaf": false, "mute": false})
            })
            .collect();
        json!({
            "id": GUILD, "name": "relay test", "icon": null, "owner_id": "80351110224678912",
            "joined_at": "2021-05-01T10:00:00.000000+00:00", "large": false, "unavailable": false,
            "member_count": 3, "voice_states": states, "members": members,
            "channels": [{"id": "157733188964188161", "type": 2, "name": "General"}],
            "threads": [], "presences": [], "stage_instances": [], "guild_scheduled_events": [],
            "soundboard_sounds": []
        })
    }

    fn joined(channel: &str, user: &str, name: &str, avatar: Option<&str>) -> EventBody {
        EventBody::VoiceJoined(VoiceJoined {
            guild_id: GUILD.into(),
            channel_id: channel.into(),
            user_id: user.into(),
            username: name.into(),
            avatar: avatar.map(Into::into),
        })
    }

    fn left(channel: Option<&str>, user: &str) -> EventBody {
        EventBody::VoiceLeft(VoiceLeft {
            guild_id: GUILD.into(),
            channel_id: channel.map(Into::into),
            user_id: user.into(),
        })
    }

    /// Applies the voice events in `events` to `view`, as a browser does.
    fn replay(view: &mut VoiceSnapshot, events: &[EventBody]) {
        for e in events {
            match e {
                EventBody::VoiceJoined(j) => view.apply_joined(j),
                EventBody::VoiceLeft(l) => view.apply_left(l),
                _ => {}
            }
        }
    }

    #[test]
    fn snowflake_time_matches_discords_example() {
        let ms = snowflake_time_ms(41_771_983_423_143_937);
        assert_eq!(rfc3339_millis(ms), "2015-04-26T06:26:56.934Z");
        assert_eq!(snowflake_time_ms(0), DISCORD_EPOCH_MS);
        let _ = snowflake_time_ms(u64::MAX);
    }

    #[test]
    fn message_create_forwards_the_contract_fields() {
        let mut t = Translator::new(None);
        let body = one_event(&mut t, "MESSAGE_CREATE", message_create());
        assert_eq!(
            serde_json::to_value(&body).unwrap(),
            json!({"type": "messageCreate", "data": {
                "id": "334385199974967042", "channelId": "290926798999357250", "guildId": GUILD,
                "author": {"id": "53908099506183680", "username": "Mason",
                           "avatar": "a_bab14f271d565501444b2ca3be944b25", "bot": false},
                "content": "Supa Hot", "timestamp": "2017-07-11T17:27:07.299000+00:00"
            }}),
            "username (not global_name), timestamp as given"
        );
    }

    #[test]
    fn message_create_without_timestamp_uses_the_snowflake_time() {
        let mut t = Translator::new(None);
        let mut d = message_create();
        d["id"] = json!(41_771_983_423_143_937u64);
        d.as_object_mut().unwrap().remove("timestamp");
        let EventBody::MessageCreate(m) = one_event(&mut t, "MESSAGE_CREATE", d) else {
            unreachable!()
        };
        assert_eq!(m.id, "41771983423143937", "integer ids come out as strings");
        assert_eq!(
            m.timestamp,
            Timestamp::Text("2015-04-26T06:26:56.934Z".into())
        );
    }

    #[test]
    fn relay_webhook_posts_carry_their_sender_and_via() {
        let mut t = Translator::new(None);
        let hook = "223704706495545344";
        let post = |t: &mut Translator, id: &str, name: &str, app: Option<&str>| {
            let mut d = message_create();
            d["id"] = json!(id);
            d["webhook_id"] = json!(hook);
            d["application_id"] = json!(app);
            d["author"] = json!({"id": hook, "username": name, "avatar": "f00", "bot": true});
            d.as_object_mut().unwrap().remove("member");
            let EventBody::MessageCreate(m) = one_event(t, "MESSAGE_CREATE", d) else {
                unreachable!()
            };
            m
        };
        let ada = Author {
            id: "257068892160000001".into(),
            username: "Ada".into(),
            avatar: Some("0a".into()),
            bot: false,
        };
        let content = message_create()["content"].as_str().unwrap().to_owned();
        t.relay_posts_mut().expect(
            hook,
            &content,
            "Ada",
            ada.clone(),
            snowflake_time_ms(162_701_077_035_089_920),
        );
        let m = post(&mut t, "162701077035089920", "Ada", None);
        assert_eq!((m.author, m.via.as_deref()), (ada, Some("relay")));
        let m = post(&mut t, "162701077035089921", "Who", None);
        assert_eq!(
            m.via.as_deref(),
            Some("relay"),
            "relay's webhook, sender unknown"
        );
        assert_eq!(
            (
                m.author.id.as_str(),
                m.author.username.as_str(),
                m.author.bot
            ),
            (hook, "Who", true)
        );
        let _ = t.handle_dispatch(
            "READY",
            &json!({"v": 10, "user": {"id": "1"}, "guilds": [], "session_id": "s",
                    "application": {"id": "555"}}),
        );
        let mut fresh = Translator::new(None);
        let _ = fresh.handle_dispatch(
            "READY",
            &json!({"application": {"id": "555"}, "guilds": []}),
        );
        assert_eq!(
            post(&mut fresh, "162701077035089922", "X", Some("555"))
                .via
                .as_deref(),
            Some("relay"),
            "after a restart: the bot's application owns it"
        );
        assert_eq!(
            post(&mut fresh, "162701077035089923", "X", Some("556")).via,
            None,
            "someone else's webhook"
        );
    }

    #[test]
    fn webhook_and_own_bot_messages_are_forwarded() {
        let mut t = Translator::new(None);
        let mut d = message_create();
        d["webhook_id"] = json!("223704706495545344");
        d["author"] = json!({"id": "223704706495545344", "username": "Captain Hook", "avatar": null, "discriminator": "0000"});
        d.as_object_mut().unwrap().remove("member");
        let EventBody::MessageCreate(m) = one_event(&mut t, "MESSAGE_CREATE", d) else {
            unreachable!()
        };
        assert_eq!(m.author.username, "Captain Hook");
        assert!(
            m.author.bot,
            "a webhook's pseudo-user is not a person typing"
        );
        assert_eq!(m.author.avatar, None);

        let mut d = message_create();
        d["author"] = json!({"id": "111", "username": "relay", "avatar": null, "bot": true, "discriminator": "0"});
        let EventBody::MessageCreate(m) = one_event(&mut t, "MESSAGE_CREATE", d) else {
            unreachable!()
        };
        assert!(m.author.bot);
        assert_eq!(m.author.id, "111");
    }

    #[test]
    fn message_create_without_author_is_skipped() {
        let mut t = Translator::new(None);
        let mut d = message_create();
        d.as_object_mut().unwrap().remove("author");
        assert_eq!(
            t.handle_dispatch("MESSAGE_CREATE", &d),
            Translated::Skipped(Skipped {
                event: "MESSAGE_CREATE",
                reason: SkipReason::Missing("author")
            })
        );
        d["author"] = json!({"id": "not-a-snowflake", "username": "x"});
        let Translated::Skipped(s) = t.handle_dispatch("MESSAGE_CREATE", &d) else {
            panic!()
        };
        assert_eq!(s.reason, SkipReason::WrongType("author.id"));
        assert_eq!(
            s.to_string(),
            "MESSAGE_CREATE skipped: field `author.id` has the wrong type"
        );
        assert!(matches!(
            t.handle_dispatch("MESSAGE_CREATE", &json!([1, 2])),
            Translated::Skipped(Skipped {
                reason: SkipReason::NotAnObject,
                ..
            })
        ));
    }

    #[test]
    fn message_update_never_treats_missing_as_cleared() {
        let mut t = Translator::new(None);
        let body = one_event(
            &mut t,
            "MESSAGE_UPDATE",
            json!({"id": "334385199974967042", "channel_id": "290926798999357250", "guild_id": GUILD,
                   "embeds": [{"type": "link", "url": "https://example.com"}]}),
        );
        assert_eq!(
            serde_json::to_value(&body).unwrap()["data"],
            json!({"id": "334385199974967042", "channelId": "290926798999357250", "guildId": GUILD})
        );

        let mut full = message_create();
        full["content"] = json!("Supa Hot (edited)");
        full["edited_timestamp"] = json!("2017-07-11T17:30:00.000000+00:00");
        let EventBody::MessageUpdate(m) = one_event(&mut t, "MESSAGE_UPDATE", full) else {
            unreachable!()
        };
        assert_eq!(m.content.as_deref(), Some("Supa Hot (edited)"));
        assert_eq!(
            m.edited_timestamp,
            Some(Timestamp::Text("2017-07-11T17:30:00.000000+00:00".into()))
        );
    }

    #[test]
    fn reaction_remove_and_the_history_it_feeds() {
        use crate::history::{Anchor, HistoryQuery, Lookup};
        let mut t = Translator::new(None);
        let _ = events(&mut t, "MESSAGE_CREATE", message_create());
        let base = |extra: Value| {
            let mut d = json!({"user_id": "5", "channel_id": "290926798999357250",
                "message_id": "334385199974967042", "guild_id": GUILD, "burst": false, "type": 0});
            if let (Some(d), Value::Object(e)) = (d.as_object_mut(), extra) {
                d.extend(e);
            }
            d
        };
        let fire = json!({"emoji": {"id": null, "name": "🔥"}});
        let _ = events(&mut t, "MESSAGE_REACTION_ADD", base(fire.clone()));
        let _ = events(
            &mut t,
            "MESSAGE_REACTION_ADD",
            base(json!({"emoji": {"id": "41771983429993937", "name": "LUL"}})),
        );
        let body = one_event(&mut t, "MESSAGE_REACTION_REMOVE", base(fire));
        assert_eq!(
            serde_json::to_value(&body).unwrap(),
            json!({"type": "reactionRemove", "data": {"channelId": "290926798999357250",
                "messageId": "334385199974967042", "userId": "5", "emoji": {"id": null, "name": "🔥"}, "guildId": GUILD}})
        );
        let q = HistoryQuery {
            channel: 290926798999357250,
            limit: 1,
            anchor: Anchor::Latest,
        };
        let held = |t: &mut Translator| match t.history_mut().lookup(&q) {
            Lookup::Hit(v) => serde_json::to_value(&v[0].reactions).unwrap(),
            Lookup::Miss => panic!("the live message is held"),
        };
        assert_eq!(
            held(&mut t),
            json!([{"emoji": {"id": "41771983429993937", "name": "LUL"}, "count": 1}])
        );
        assert!(events(&mut t, "MESSAGE_REACTION_REMOVE_ALL", base(json!({}))).is_empty());
        assert_eq!(held(&mut t), json!([]));
        // A new session forgets what it may have missed.
        let _ = t.handle_dispatch("READY", &json!({"guilds": []}));
        assert_eq!(t.history_mut().lookup(&q), Lookup::Miss);
        assert!(matches!(
            t.handle_dispatch(
                "MESSAGE_REACTION_REMOVE",
                &json!({"channel_id": "1", "message_id": "2"})
            ),
            Translated::Skipped(_)
        ));
    }

    #[test]
    fn deletes_single_and_bulk() {
        let mut t = Translator::new(None);
        let body = one_event(
            &mut t,
            "MESSAGE_DELETE",
            json!({"id": "1", "channel_id": "2", "guild_id": GUILD}),
        );
        assert_eq!(body.type_name(), "messageDelete");
        let e = events(
            &mut t,
            "MESSAGE_DELETE_BULK",
            json!({"ids": ["10", 11], "channel_id": "2", "guild_id": GUILD}),
        );
        let ids: Vec<_> = e
            .iter()
            .map(|e| match e {
                EventBody::MessageDelete(d) => d.id.as_str(),
                _ => panic!(),
            })
            .collect();
        assert_eq!(ids, ["10", "11"]);
        assert!(matches!(
            t.handle_dispatch(
                "MESSAGE_DELETE_BULK",
                &json!({"ids": ["10", "x"], "channel_id": "2"})
            ),
            Translated::Skipped(Skipped {
                reason: SkipReason::WrongType("ids"),
                ..
            })
        ));
    }

    #[test]
    fn reactions_with_unicode_custom_and_nameless_emoji() {
        let mut t = Translator::new(None);
        let base = json!({
            "user_id": "80351110224678912", "type": 0, "message_id": "334385199974967042",
            "message_author_id": "53908099506183680", "channel_id": "290926798999357250", "guild_id": GUILD,
            "burst": false, "burst_colors": [],
            "member": {"user": {"id": "80351110224678912", "username": "Nelly", "avatar": null}, "roles": []}
        });
        let emoji = |e: Value| {
            let mut d = base.clone();
            d["emoji"] = e;
            d
        };
        let cases = [
            (json!({"id": null, "name": "🔥"}), None, Some("🔥")),
            (
                json!({"id": "41771983429993937", "name": "LUL", "animated": false}),
                Some("41771983429993937"),
                Some("LUL"),
            ),
            (
                json!({"id": "41771983429993937", "name": null}),
                Some("41771983429993937"),
                None,
            ),
        ];
        for (e, id, name) in cases {
            let EventBody::ReactionAdd(r) = one_event(&mut t, "MESSAGE_REACTION_ADD", emoji(e))
            else {
                unreachable!()
            };
            assert_eq!(r.emoji.id.as_deref(), id);
            assert_eq!(r.emoji.name.as_deref(), name);
            assert_eq!(r.user_id, "80351110224678912");
            assert_eq!(r.message_id, "334385199974967042");
        }
        let mut no_emoji = base.clone();
        no_emoji.as_object_mut().unwrap().remove("emoji");
        assert!(matches!(
            t.handle_dispatch("MESSAGE_REACTION_ADD", &no_emoji),
            Translated::Skipped(Skipped {
                reason: SkipReason::Missing("emoji"),
                ..
            })
        ));
    }

    #[test]
    fn typing_start_seconds_become_rfc3339_millis() {
        let mut t = Translator::new(None);
        let d = json!({"user_id": "80351110224678912", "timestamp": 1_700_000_000, "channel_id": "290926798999357250",
                       "guild_id": GUILD, "member": {"user": {"id": "80351110224678912", "username": "Nelly"}}});
        let body = one_event(&mut t, "TYPING_START", d);
        assert_eq!(
            serde_json::to_value(&body).unwrap()["data"]["timestamp"],
            "2023-11-14T22:13:20.000Z"
        );
        for bad in [json!(-1), json!(1.5), json!(u64::MAX), json!(true)] {
            let d = json!({"user_id": "1", "channel_id": "2", "timestamp": bad});
            assert!(
                matches!(
                    t.handle_dispatch("TYPING_START", &d),
                    Translated::Skipped(Skipped {
                        reason: SkipReason::WrongType("timestamp"),
                        ..
                    })
                ),
                "{bad}"
            );
        }
    }

    /// Regression: a present field of the wrong JSON type used to be forwarded as
    /// is (TYPING_START's text `timestamp`) or replaced by a default (a numeric
    /// `content` became ""); every field read now skips the dispatch, naming it.
    #[test]
    fn wrong_types_are_skipped_not_forwarded() {
        let typing = json!({"user_id": "1", "channel_id": "2", "guild_id": GUILD, "timestamp": 1_700_000_000});
        let reaction = json!({"user_id": "1", "channel_id": "2", "message_id": "3", "guild_id": GUILD,
                              "emoji": {"id": null, "name": "🔥"}});
        let update = json!({"id": "1", "channel_id": "2", "guild_id": GUILD, "content": "x",
                            "edited_timestamp": "2017-07-11T17:30:00.000000+00:00"});
        let voice = voice_update("1", Some("100"), "ann");
        let cases: Vec<(&str, Value, &[&str], Value, &str)> = vec![
            (
                "TYPING_START",
                typing.clone(),
                &["timestamp"],
                json!("2023-11-14T22:13:20.000Z"),
                "timestamp",
            ),
            (
                "TYPING_START",
                typing.clone(),
                &["timestamp"],
                json!("soon"),
                "timestamp",
            ),
            (
                "TYPING_START",
                typing,
                &["timestamp"],
                json!({"s": 1}),
                "timestamp",
            ),
            (
                "MESSAGE_CREATE",
                message_create(),
                &["timestamp"],
                json!(1_499_794_027),
                "timestamp",
            ),
            (
                "MESSAGE_CREATE",
                message_create(),
                &["timestamp"],
                json!("yesterday"),
                "timestamp",
            ),
            (
                "MESSAGE_CREATE",
                message_create(),
                &["content"],
                json!(42),
                "content",
            ),
            (
                "MESSAGE_CREATE",
                message_create(),
                &["content"],
                json!(["a"]),
                "content",
            ),
            (
                "MESSAGE_CREATE",
                message_create(),
                &["author", "username"],
                json!(7),
                "author.username",
            ),
            (
                "MESSAGE_CREATE",
                message_create(),
                &["author", "avatar"],
                json!(false),
                "author.avatar",
            ),
            (
                "MESSAGE_CREATE",
                message_create(),
                &["author", "bot"],
                json!("true"),
                "author.bot",
            ),
            (
                "MESSAGE_CREATE",
                message_create(),
                &["author"],
                json!("Mason"),
                "author",
            ),
            (
                "MESSAGE_CREATE",
                message_create(),
                &["webhook_id"],
                json!(true),
                "webhook_id",
            ),
            (
                "MESSAGE_UPDATE",
                update.clone(),
                &["content"],
                json!(1),
                "content",
            ),
            (
                "MESSAGE_UPDATE",
                update.clone(),
                &["edited_timestamp"],
                json!(1),
                "edited_timestamp",
            ),
            (
                "MESSAGE_UPDATE",
                update,
                &["edited_timestamp"],
                json!("later"),
                "edited_timestamp",
            ),
            (
                "MESSAGE_REACTION_ADD",
                reaction.clone(),
                &["emoji", "name"],
                json!(1),
                "emoji.name",
            ),
            (
                "MESSAGE_REACTION_ADD",
                reaction.clone(),
                &["emoji", "id"],
                json!("fire"),
                "emoji.id",
            ),
            (
                "MESSAGE_REACTION_ADD",
                reaction,
                &["emoji"],
                json!("🔥"),
                "emoji",
            ),
            (
                "VOICE_STATE_UPDATE",
                voice.clone(),
                &["member", "user", "username"],
                json!(1),
                "member.user.username",
            ),
            (
                "VOICE_STATE_UPDATE",
                voice.clone(),
                &["member", "user", "avatar"],
                json!(1),
                "member.user.avatar",
            ),
            (
                "VOICE_STATE_UPDATE",
                voice.clone(),
                &["member", "user", "id"],
                json!("ann"),
                "member.user.id",
            ),
            (
                "VOICE_STATE_UPDATE",
                voice.clone(),
                &["member", "user"],
                json!("ann"),
                "member.user",
            ),
            (
                "VOICE_STATE_UPDATE",
                voice.clone(),
                &["member"],
                json!([]),
                "member",
            ),
            (
                "VOICE_STATE_UPDATE",
                voice,
                &["channel_id"],
                json!(1.5),
                "channel_id",
            ),
        ];
        for (event, mut d, path, junk, field) in cases {
            let (last, parents) = path.split_last().unwrap();
            let mut at = &mut d;
            for p in parents {
                at = &mut at[*p];
            }
            at[*last] = junk;
            let mut t = Translator::new(None);
            assert_eq!(
                t.handle_dispatch(event, &d),
                Translated::Skipped(Skipped {
                    event,
                    reason: SkipReason::WrongType(field)
                }),
                "{event} with {d}"
            );
            assert!(t.voice().is_empty(), "a skipped dispatch changes nothing");
        }
    }

    #[test]
    fn null_still_means_absent() {
        let mut t = Translator::new(None);
        let mut d = message_create();
        d["content"] = Value::Null;
        d["author"]["avatar"] = Value::Null;
        d["author"]["bot"] = Value::Null;
        d["webhook_id"] = Value::Null;
        let EventBody::MessageCreate(m) = one_event(&mut t, "MESSAGE_CREATE", d) else {
            unreachable!()
        };
        assert_eq!(
            (m.content.as_str(), m.author.avatar, m.author.bot),
            ("", None, false)
        );
        let d = json!({"id": "1", "channel_id": "2", "content": null, "edited_timestamp": null});
        let EventBody::MessageUpdate(m) = one_event(&mut t, "MESSAGE_UPDATE", d) else {
            unreachable!()
        };
        assert_eq!((m.content, m.edited_timestamp), (None, None));
        let mut v = voice_update("1", Some("100"), "ann");
        v["member"] = Value::Null;
        assert_eq!(
            events(&mut t, "VOICE_STATE_UPDATE", v),
            [joined("100", "1", "", None)]
        );
    }

    #[test]
    fn voice_join_move_mute_leave_through_dispatch() {
        let mut t = Translator::new(None);
        let (user, a, b) = (
            "80351110224678912",
            "157733188964188161",
            "157733188964188162",
        );
        let av = Some("nelly-avatar");
        assert_eq!(
            events(
                &mut t,
                "VOICE_STATE_UPDATE",
                voice_update(user, Some(a), "nelly")
            ),
            [joined(a, user, "nelly", av)],
            "unknown origin: a plain join"
        );
        assert_eq!(
            events(
                &mut t,
                "VOICE_STATE_UPDATE",
                voice_update(user, Some(b), "nelly")
            ),
            [left(Some(a), user), joined(b, user, "nelly", av)],
            "move: left, then joined"
        );
        let mut muted = voice_update(user, Some(b), "nelly");
        muted["self_mute"] = json!(true);
        muted["self_deaf"] = json!(true);
        assert_eq!(events(&mut t, "VOICE_STATE_UPDATE", muted), []);
        assert_eq!(
            events(
                &mut t,
                "VOICE_STATE_UPDATE",
                voice_update(user, None, "nelly")
            ),
            [left(Some(b), user)]
        );
        assert_eq!(
            events(
                &mut t,
                "VOICE_STATE_UPDATE",
                voice_update(user, None, "nelly")
            ),
            [],
            "a repeated leave is not news"
        );
        assert!(t.voice().is_empty());
    }

    #[test]
    fn guild_create_seeds_and_later_emits_the_difference() {
        let mut t = Translator::new(None);
        let mut view = VoiceSnapshot::default();
        let e = events(
            &mut t,
            "READY",
            json!({"v": 10, "user": {"id": "111", "username": "relay", "bot": true},
                   "guilds": [{"id": GUILD, "unavailable": true}], "session_id": "s1",
                   "resume_gateway_url": "wss://gateway-us-east1-b.discord.gg", "application": {"id": "111", "flags": 0}}),
        );
        assert!(e.is_empty());
        let e = events(
            &mut t,
            "GUILD_CREATE",
            guild_create(
                &[("1", "100"), ("2", "100")],
                &[("1", "ann"), ("111", "relay")],
            ),
        );
        assert_eq!(
            e,
            [
                joined("100", "1", "ann", None),
                joined("100", "2", "", None)
            ]
        );
        replay(&mut view, &e);
        assert_eq!(view, t.voice_snapshot());

        // A new session: READY keeps the guild, its GUILD_CREATE brings the difference.
        let e = events(
            &mut t,
            "READY",
            json!({"guilds": [{"id": GUILD, "unavailable": true}], "session_id": "s2"}),
        );
        assert!(e.is_empty(), "no wipe while browsers hold the view");
        let e = events(
            &mut t,
            "GUILD_CREATE",
            guild_create(&[("1", "100"), ("3", "200")], &[("3", "cy")]),
        );
        assert_eq!(e, [left(Some("100"), "2"), joined("200", "3", "cy", None)]);
        replay(&mut view, &e);
        assert_eq!(view, t.voice_snapshot());

        // The guild goes into an outage, then the bot loses every guild.
        let e = events(
            &mut t,
            "GUILD_DELETE",
            json!({"id": GUILD, "unavailable": true}),
        );
        assert_eq!(e, [left(Some("100"), "1"), left(Some("200"), "3")]);
        replay(&mut view, &e);
        let e = events(&mut t, "GUILD_CREATE", guild_create(&[("1", "100")], &[]));
        replay(&mut view, &e);
        let e = events(&mut t, "READY", json!({"guilds": []}));
        assert_eq!(e, [left(Some("100"), "1")]);
        replay(&mut view, &e);
        assert_eq!(view, t.voice_snapshot());
        assert_eq!(view, VoiceSnapshot::default());
    }

    #[test]
    fn unavailable_guild_create_changes_nothing() {
        let mut t = Translator::new(None);
        let _ = events(&mut t, "GUILD_CREATE", guild_create(&[("1", "100")], &[]));
        let e = events(
            &mut t,
            "GUILD_CREATE",
            json!({"id": GUILD, "unavailable": true}),
        );
        assert!(e.is_empty());
        assert_eq!(t.voice().len(), 1);
        let mut no_states = guild_create(&[], &[]);
        no_states.as_object_mut().unwrap().remove("voice_states");
        assert!(matches!(
            t.handle_dispatch("GUILD_CREATE", &no_states),
            Translated::Skipped(Skipped {
                reason: SkipReason::Missing("voice_states"),
                ..
            })
        ));
        assert_eq!(t.voice().len(), 1, "a skipped seed does not wipe the guild");
    }

    #[test]
    fn guild_filter_drops_other_guilds_and_direct_messages() {
        let mut t = Translator::new(Some(format!("0{GUILD}")));
        assert_eq!(t.guild_filter(), Some(GUILD));
        assert_eq!(events(&mut t, "MESSAGE_CREATE", message_create()).len(), 1);

        let mut other = message_create();
        other["guild_id"] = json!(OTHER_GUILD);
        assert_eq!(
            t.handle_dispatch("MESSAGE_CREATE", &other),
            Translated::Filtered
        );
        let mut dm = message_create();
        dm.as_object_mut().unwrap().remove("guild_id");
        assert_eq!(
            t.handle_dispatch("MESSAGE_CREATE", &dm),
            Translated::Filtered
        );

        let mut vs = voice_update("1", Some("100"), "ann");
        vs["guild_id"] = json!(OTHER_GUILD);
        assert_eq!(
            t.handle_dispatch("VOICE_STATE_UPDATE", &vs),
            Translated::Filtered
        );
        let mut gc = guild_create(&[("1", "100")], &[]);
        gc["id"] = json!(OTHER_GUILD);
        assert_eq!(t.handle_dispatch("GUILD_CREATE", &gc), Translated::Filtered);
        assert!(
            t.voice().is_empty(),
            "the cache holds only the filtered guild"
        );

        let _ = events(
            &mut t,
            "VOICE_STATE_UPDATE",
            voice_update("1", Some("100"), "ann"),
        );
        assert_eq!(t.voice().len(), 1);
    }

    #[test]
    fn unknown_and_bookkeeping_events() {
        let mut t = Translator::new(None);
        assert_eq!(
            t.handle_dispatch("PRESENCE_UPDATE", &json!({})),
            Translated::Unhandled
        );
        assert_eq!(
            t.handle_dispatch("RESUMED", &json!({})),
            Translated::Events(vec![])
        );
        assert!(Translated::Filtered.into_events().is_empty());
    }

    #[test]
    fn snapshot_after_a_sequence() {
        let mut t = Translator::new(None);
        let _ = t.handle_dispatch(
            "GUILD_CREATE",
            &guild_create(&[("1", "100"), ("2", "100")], &[("1", "ann"), ("2", "bob")]),
        );
        let _ = t.handle_dispatch("VOICE_STATE_UPDATE", &voice_update("3", Some("200"), "cy"));
        let _ = t.handle_dispatch("VOICE_STATE_UPDATE", &voice_update("1", Some("200"), "ann"));
        let _ = t.handle_dispatch("VOICE_STATE_UPDATE", &voice_update("2", None, "bob"));
        assert_eq!(
            serde_json::to_value(t.voice_snapshot()).unwrap(),
            json!({"channels": {"200": [
                {"guildId": GUILD, "userId": "3", "username": "cy", "avatar": "cy-avatar"},
                {"guildId": GUILD, "userId": "1", "username": "ann", "avatar": "ann-avatar"}
            ]}})
        );
    }

    /// One step of a voice scenario over 2 guilds × 4 users × 3 channels.
    #[derive(Debug, Clone)]
    enum Op {
        Update {
            guild: usize,
            user: u8,
            channel: Option<u8>,
            member: bool,
            muted: bool,
        },
        Create {
            guild: usize,
            states: Vec<(u8, u8)>,
        },
        Delete {
            guild: usize,
        },
        Ready {
            keep: Vec<usize>,
        },
    }

    const GUILDS: [&str; 2] = [GUILD, OTHER_GUILD];

    fn channel_of(guild: usize, c: u8) -> String {
        (1000 * (guild as u64 + 1) + u64::from(c)).to_string()
    }

    fn op() -> impl Strategy<Value = Op> {
        let guild = 0..GUILDS.len();
        prop_oneof![
            8 => (guild.clone(), 0u8..4, proptest::option::of(0u8..3), any::<bool>(), any::<bool>())
                .prop_map(|(guild, user, channel, member, muted)| Op::Update { guild, user, channel, member, muted }),
            1 => (guild.clone(), proptest::collection::vec((0u8..4, 0u8..3), 0..5))
                .prop_map(|(guild, states)| Op::Create { guild, states }),
            1 => guild.clone().prop_map(|guild| Op::Delete { guild }),
            1 => proptest::sample::subsequence(vec![0usize, 1], 0..=2).prop_map(|keep| Op::Ready { keep }),
        ]
    }

    type Model = std::collections::BTreeMap<(String, String), String>;

    fn model_of(snapshot: &VoiceSnapshot) -> Model {
        snapshot
            .channels
            .iter()
            .flat_map(|(c, ms)| {
                ms.iter()
                    .map(move |m| ((m.guild_id.clone(), m.user_id.clone()), c.clone()))
            })
            .collect()
    }

    fn run(
        t: &mut Translator,
        model: &mut Model,
        op: &Op,
    ) -> Result<Vec<EventBody>, TestCaseError> {
        let out = match op {
            Op::Update {
                guild,
                user,
                channel,
                member,
                muted,
            } => {
                let g = GUILDS[*guild];
                let key = (g.to_string(), user.to_string());
                let ch = channel.map(|c| channel_of(*guild, c));
                let mut d = voice_update(&user.to_string(), ch.as_deref(), &format!("user{user}"));
                d["guild_id"] = json!(g);
                d["self_mute"] = json!(muted);
                if !member {
                    d.as_object_mut().unwrap().remove("member");
                }
                let before = model.get(&key).cloned();
                let e = events(t, "VOICE_STATE_UPDATE", d);
                let kinds: Vec<_> = e.iter().map(EventBody::type_name).collect();
                match (&before, &ch) {
                    (None, None) => prop_assert!(kinds.is_empty()),
                    (Some(a), Some(b)) if a == b => prop_assert!(kinds.is_empty()),
                    (None, Some(_)) => prop_assert_eq!(kinds, ["voice.joined"]),
                    (Some(_), Some(_)) => prop_assert_eq!(kinds, ["voice.left", "voice.joined"]),
                    (Some(_), None) => prop_assert_eq!(kinds, ["voice.left"]),
                }
                match ch {
                    Some(c) => model.insert(key, c),
                    None => model.remove(&key),
                };
                e
            }
            Op::Create { guild, states } => {
                let g = GUILDS[*guild];
                let states: Vec<(String, String)> = states
                    .iter()
                    .map(|(u, c)| (u.to_string(), channel_of(*guild, *c)))
                    .collect();
                let refs: Vec<(&str, &str)> = states
                    .iter()
                    .map(|(u, c)| (u.as_str(), c.as_str()))
                    .collect();
                let mut d = guild_create(&refs, &[]);
                d["id"] = json!(g);
                model.retain(|(mg, _), _| mg != g);
                for (u, c) in states {
                    model.insert((g.to_string(), u), c);
                }
                events(t, "GUILD_CREATE", d)
            }
            Op::Delete { guild } => {
                let g = GUILDS[*guild];
                model.retain(|(mg, _), _| mg != g);
                events(t, "GUILD_DELETE", json!({"id": g}))
            }
            Op::Ready { keep } => {
                let keep: Vec<&str> = keep.iter().map(|g| GUILDS[*g]).collect();
                model.retain(|(mg, _), _| keep.contains(&mg.as_str()));
                let guilds: Vec<Value> = keep
                    .iter()
                    .map(|g| json!({"id": g, "unavailable": true}))
                    .collect();
                events(t, "READY", json!({"guilds": guilds}))
            }
        };
        Ok(out)
    }

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            any::<u64>().prop_map(|n| json!(n)),
            any::<f64>()
                .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
            "[0-9]{1,21}".prop_map(Value::String),
            ".{0,12}".prop_map(Value::String),
        ];
        let key = prop_oneof![
            proptest::sample::select(vec![
                "id",
                "channel_id",
                "guild_id",
                "user_id",
                "message_id",
                "author",
                "member",
                "user",
                "username",
                "avatar",
                "bot",
                "webhook_id",
                "content",
                "timestamp",
                "edited_timestamp",
                "emoji",
                "name",
                "ids",
                "voice_states",
                "members",
                "unavailable",
                "guilds",
            ])
            .prop_map(String::from),
            ".{0,6}",
        ];
        leaf.prop_recursive(4, 64, 8, move |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                proptest::collection::vec((key.clone(), inner), 0..10)
                    .prop_map(|kv| Value::Object(kv.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// The cache follows a model `(guild, user) → channel`, each update emits
        /// exactly the documented events, and replaying every emitted event onto an
        /// empty snapshot gives the cache's snapshot, member order included.
        #[test]
        fn voice_events_replay_to_the_cache(ops in proptest::collection::vec(op(), 1..40)) {
            let mut t = Translator::new(None);
            let mut model = Model::new();
            let mut view = VoiceSnapshot::default();
            for op in &ops {
                let e = run(&mut t, &mut model, op)?;
                replay(&mut view, &e);
                let snap = t.voice_snapshot();
                prop_assert_eq!(&view, &snap, "after {:?}", op);
                prop_assert_eq!(&model_of(&snap), &model, "after {:?}", op);
            }
        }

        /// No JSON under any handled name panics, and whatever the input, the voice
        /// events emitted still replay to the cache's snapshot.
        #[test]
        fn any_json_is_safe(
            steps in proptest::collection::vec((proptest::sample::select(HANDLED_EVENTS.to_vec()), arb_json()), 1..8),
            filtered in any::<bool>(),
        ) {
            let mut t = Translator::new(filtered.then(|| GUILD.to_string()));
            let mut view = VoiceSnapshot::default();
            for (name, d) in &steps {
                let e = t.handle_dispatch(name, d).into_events();
                replay(&mut view, &e);
                if filtered {
                    let only_ours = e.iter().all(|e| match e {
                        EventBody::VoiceJoined(j) => j.guild_id == GUILD,
                        EventBody::VoiceLeft(l) => l.guild_id == GUILD,
                        _ => true,
                    });
                    prop_assert!(only_ours);
                }
            }
            prop_assert_eq!(view, t.voice_snapshot());
        }

        /// Real-shaped payloads with one field replaced by arbitrary JSON never panic.
        #[test]
        fn mutated_real_payloads_are_safe(which in 0usize..4, field in 0usize..8, junk in arb_json()) {
            let mut d = match which {
                0 => message_create(),
                1 => voice_update("1", Some("100"), "ann"),
                2 => guild_create(&[("1", "100")], &[("1", "ann")]),
                _ => json!({"user_id": "1", "channel_id": "2", "message_id": "3", "emoji": {"id": null, "name": "x"}, "timestamp": 1}),
            };
            let keys: Vec<String> = d.as_object().unwrap().keys().cloned().collect();
            let key = keys[field % keys.len()].clone();
            d[key.as_str()] = junk;
            let mut t = Translator::new(None);
            for name in HANDLED_EVENTS {
                let _ = t.handle_dispatch(name, &d);
            }
        }
    }
}
