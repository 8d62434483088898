//! The data shapes carried by link frames and SSE events (CONTRACT.md §4 and §5).
//!
//! Field names are camelCase on the wire. Display fields (`username`, `avatar`, `bot`)
//! default when absent so a sparse but well-formed frame is still delivered; ids
//! are required because filters, caches and commands key on them.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A message author as relayed to browsers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Author {
    /// Discord user id (snowflake).
    pub id: String,
    /// Display name; empty when Discord sent none.
    #[serde(default)]
    pub username: String,
    /// Avatar hash, if the user has one.
    #[serde(default)]
    pub avatar: Option<String>,
    /// Whether the author is a bot (relay's own messages included).
    #[serde(default)]
    pub bot: bool,
}

/// A point in time as sent by the peer. relay's gateway sends RFC 3339 strings;
/// Discord itself sends TYPING_START as integer Unix seconds, so both are accepted
/// and passed through unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Timestamp {
    /// RFC 3339 text, e.g. `2026-11-25T12:00:00.000Z`.
    Text(String),
    /// Integer Unix time.
    Unix(i64),
}

/// `messageCreate`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageCreate {
    /// Message id.
    pub id: String,
    /// Channel the message was posted in.
    pub channel_id: String,
    /// Guild of the channel (`null` for direct messages).
    #[serde(default)]
    pub guild_id: Option<String>,
    /// Who wrote it.
    pub author: Author,
    /// The text (may be empty for attachment-only messages).
    #[serde(default)]
    pub content: String,
    /// When Discord says it was created.
    pub timestamp: Timestamp,
    /// `"relay"` when relay posted it through its webhook under a session's
    /// name (docs/webhooks.md); absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
}

/// `messageUpdate`: absent fields mean "unknown", never "cleared".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageUpdate {
    /// Message id.
    pub id: String,
    /// Channel of the message.
    pub channel_id: String,
    /// Guild of the channel.
    #[serde(default)]
    pub guild_id: Option<String>,
    /// New text, when Discord sent it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// When it was edited, when Discord sent it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edited_timestamp: Option<Timestamp>,
}

/// `messageDelete`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageDelete {
    /// Message id.
    pub id: String,
    /// Channel of the message.
    pub channel_id: String,
    /// Guild of the channel.
    #[serde(default)]
    pub guild_id: Option<String>,
}

/// A reaction emoji: unicode (`id` null, `name` the emoji) or custom (`id` and `name`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Emoji {
    /// Custom emoji id, `null` for unicode emoji.
    #[serde(default)]
    pub id: Option<String>,
    /// The emoji itself or the custom emoji's name; Discord may send `null`.
    #[serde(default)]
    pub name: Option<String>,
}

/// `reactionAdd`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReactionAdd {
    /// Channel of the message.
    pub channel_id: String,
    /// The message reacted to.
    pub message_id: String,
    /// Who reacted.
    pub user_id: String,
    /// Which emoji.
    pub emoji: Emoji,
    /// Guild of the channel, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guild_id: Option<String>,
}

/// `reactionRemove`: a user took back a reaction (Discord's MESSAGE_REACTION_REMOVE).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReactionRemove {
    /// Channel of the message.
    pub channel_id: String,
    /// The message the reaction was on.
    pub message_id: String,
    /// Whose reaction it was.
    pub user_id: String,
    /// Which emoji.
    pub emoji: Emoji,
    /// Guild of the channel, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guild_id: Option<String>,
}

/// One emoji's count on a message in history (`reactions: [{emoji, count}]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReactionCount {
    /// The emoji.
    pub emoji: Emoji,
    /// How many users reacted with it (at least 1 while listed).
    pub count: u32,
}

/// A message as history answers it (CONTRACT.md §9): `messageCreate`'s data,
/// plus `editedTimestamp` when it was edited and its reaction counts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryMessage {
    /// The fields of `messageCreate`.
    #[serde(flatten)]
    pub message: MessageCreate,
    /// When it was last edited, if ever.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edited_timestamp: Option<Timestamp>,
    /// Reaction counts, in the order the emoji were first used.
    #[serde(default)]
    pub reactions: Vec<ReactionCount>,
}

/// `messages`: the reply to `fetchMessages`, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Messages {
    /// The messages, newest first.
    #[serde(default)]
    pub messages: Vec<HistoryMessage>,
    /// The gateway window's revision the answer reflects: every message
    /// event whose `meta.rev` is at most this is in it (docs/history.md).
    /// Absent from an older gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rev: Option<u64>,
}

/// `typingStart`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TypingStart {
    /// Channel being typed in.
    pub channel_id: String,
    /// Who is typing.
    pub user_id: String,
    /// When typing started.
    pub timestamp: Timestamp,
    /// Guild of the channel, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guild_id: Option<String>,
}

/// `voice.joined`: a member entered a voice channel (a move is a leave then a join).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VoiceJoined {
    /// Guild of the voice channel.
    pub guild_id: String,
    /// The voice channel joined.
    pub channel_id: String,
    /// Who joined.
    pub user_id: String,
    /// Display name.
    #[serde(default)]
    pub username: String,
    /// Avatar hash.
    #[serde(default)]
    pub avatar: Option<String>,
}

/// `voice.left`: a member left a voice channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VoiceLeft {
    /// Guild of the voice channel.
    pub guild_id: String,
    /// The channel left, or `null` when the gateway did not know it.
    #[serde(default)]
    pub channel_id: Option<String>,
    /// Who left.
    pub user_id: String,
}

/// One member of a voice channel, as held in the snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VoiceMember {
    /// Guild of the voice channel.
    pub guild_id: String,
    /// The member.
    pub user_id: String,
    /// Display name.
    #[serde(default)]
    pub username: String,
    /// Avatar hash.
    #[serde(default)]
    pub avatar: Option<String>,
}

/// Who is in which voice channel: `{"channels":{"<channelId>":[member…]}}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VoiceSnapshot {
    /// Members per voice channel id; channels with nobody in them are left out.
    #[serde(default)]
    pub channels: BTreeMap<String, Vec<VoiceMember>>,
}

impl VoiceSnapshot {
    /// Applies a join: the member is added to `channel_id` (and removed from any other channel).
    pub fn apply_joined(&mut self, joined: &VoiceJoined) {
        self.remove_user(&joined.guild_id, &joined.user_id);
        self.channels
            .entry(joined.channel_id.clone())
            .or_default()
            .push(VoiceMember {
                guild_id: joined.guild_id.clone(),
                user_id: joined.user_id.clone(),
                username: joined.username.clone(),
                avatar: joined.avatar.clone(),
            });
    }

    /// Applies a leave: the member is removed wherever it is in that guild.
    pub fn apply_left(&mut self, left: &VoiceLeft) {
        self.remove_user(&left.guild_id, &left.user_id);
    }

    fn remove_user(&mut self, guild_id: &str, user_id: &str) {
        self.channels.retain(|_, members| {
            members.retain(|m| !(m.guild_id == guild_id && m.user_id == user_id));
            !members.is_empty()
        });
    }
}

/// `ready`: the first frame after the link upgrade.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ready {
    /// The voice snapshot at the time of connection.
    #[serde(default)]
    pub voice: VoiceSnapshot,
    /// Each forwarded guild's permission model in GUILD_CREATE shape (relay's
    /// extension of the link for `ACCESS=discord`; older edges ignore it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub guilds: Vec<Value>,
}

/// `guild.state` (link only, never sent to browsers): a guild's permission
/// model after a change, in GUILD_CREATE shape (roles, channels with their
/// overwrites, threads, owner, the bot's member). The edge replaces its copy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuildState {
    /// The guild, as [`crate::discord::guild::GuildModel::snapshot`] writes it.
    pub guild: Value,
}

/// `guild.member` (link only): a member the gateway learned or re-read, or
/// `member: null` when the user is not (or no longer) in the guild.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GuildMember {
    /// The guild.
    pub guild_id: String,
    /// The user.
    pub user_id: String,
    /// Discord's guild member object (`user`, `roles`,
    /// `communication_disabled_until` …), or null: not a member.
    #[serde(default)]
    pub member: Option<Value>,
}

/// `error`: a gateway error, or the edge's own `malformed_frame`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorData {
    /// Machine-readable code, e.g. `discord_error`, `malformed_frame`.
    pub code: String,
    /// Human-readable, safe text (never a token or a raw upstream body).
    pub message: String,
    /// The command this error answers, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

/// `rateLimited`: the gateway could not run a command now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RateLimited {
    /// How long to wait before trying again.
    pub retry_after_ms: u64,
    /// Whether Discord's global (per-bot) limit was hit.
    #[serde(default)]
    pub global: bool,
}

/// `ack`: the command ran. Its data is `{}`; unknown fields are ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {}

/// The body of a gateway → edge frame: its `type` and `data`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum EventBody {
    /// First frame after upgrade.
    #[serde(rename = "ready")]
    Ready(Ready),
    /// A message was posted.
    #[serde(rename = "messageCreate")]
    MessageCreate(MessageCreate),
    /// A message was edited.
    #[serde(rename = "messageUpdate")]
    MessageUpdate(MessageUpdate),
    /// A message was deleted.
    #[serde(rename = "messageDelete")]
    MessageDelete(MessageDelete),
    /// A reaction was added.
    #[serde(rename = "reactionAdd")]
    ReactionAdd(ReactionAdd),
    /// A reaction was removed.
    #[serde(rename = "reactionRemove")]
    ReactionRemove(ReactionRemove),
    /// Someone started typing.
    #[serde(rename = "typingStart")]
    TypingStart(TypingStart),
    /// Someone joined a voice channel.
    #[serde(rename = "voice.joined")]
    VoiceJoined(VoiceJoined),
    /// Someone left a voice channel.
    #[serde(rename = "voice.left")]
    VoiceLeft(VoiceLeft),
    /// An error frame.
    #[serde(rename = "error")]
    Error(ErrorData),
    /// Reply: the command ran.
    #[serde(rename = "ack")]
    Ack(Ack),
    /// Reply: the command was rate limited.
    #[serde(rename = "rateLimited")]
    RateLimited(RateLimited),
    /// Link only: a guild's permission model changed.
    #[serde(rename = "guild.state")]
    GuildState(GuildState),
    /// Link only: a member was learned, changed or left.
    #[serde(rename = "guild.member")]
    GuildMember(GuildMember),
    /// Reply to `fetchMessages`: the messages asked for.
    #[serde(rename = "messages")]
    Messages(Messages),
}

impl EventBody {
    /// Every `type` this enum accepts, for error messages and docs.
    pub const TYPES: [&'static str; 15] = [
        "ready",
        "messageCreate",
        "messageUpdate",
        "messageDelete",
        "reactionAdd",
        "typingStart",
        "voice.joined",
        "voice.left",
        "error",
        "ack",
        "rateLimited",
        "guild.state",
        "guild.member",
        "reactionRemove",
        "messages",
    ];

    /// The wire `type` of this body.
    pub fn type_name(&self) -> &'static str {
        match self {
            EventBody::Ready(_) => "ready",
            EventBody::MessageCreate(_) => "messageCreate",
            EventBody::MessageUpdate(_) => "messageUpdate",
            EventBody::MessageDelete(_) => "messageDelete",
            EventBody::ReactionAdd(_) => "reactionAdd",
            EventBody::TypingStart(_) => "typingStart",
            EventBody::VoiceJoined(_) => "voice.joined",
            EventBody::VoiceLeft(_) => "voice.left",
            EventBody::Error(_) => "error",
            EventBody::Ack(_) => "ack",
            EventBody::RateLimited(_) => "rateLimited",
            EventBody::GuildState(_) => "guild.state",
            EventBody::GuildMember(_) => "guild.member",
            EventBody::ReactionRemove(_) => "reactionRemove",
            EventBody::Messages(_) => "messages",
        }
    }

    /// Whether this type only informs the edge (the guild model) and never
    /// reaches a browser.
    pub fn is_link_only(&self) -> bool {
        matches!(self, EventBody::GuildState(_) | EventBody::GuildMember(_))
    }

    /// The channel an event belongs to, for the `channels=` filter.
    pub fn channel_id(&self) -> Option<&str> {
        match self {
            EventBody::MessageCreate(m) => Some(&m.channel_id),
            EventBody::MessageUpdate(m) => Some(&m.channel_id),
            EventBody::MessageDelete(m) => Some(&m.channel_id),
            EventBody::ReactionAdd(r) => Some(&r.channel_id),
            EventBody::ReactionRemove(r) => Some(&r.channel_id),
            EventBody::TypingStart(t) => Some(&t.channel_id),
            EventBody::VoiceJoined(v) => Some(&v.channel_id),
            EventBody::VoiceLeft(v) => v.channel_id.as_deref(),
            _ => None,
        }
    }

    /// Rewrites every piece of user-written text in place (message content,
    /// usernames, error messages) with `clean`, which returns a borrow when the
    /// text needs no change. Used to sanitize before re-broadcast.
    pub fn clean_text(&mut self, clean: impl Fn(&str) -> Cow<'_, str>) {
        fn apply(s: &mut String, clean: &impl Fn(&str) -> Cow<'_, str>) {
            if let Cow::Owned(new) = clean(s) {
                *s = new;
            }
        }
        match self {
            EventBody::MessageCreate(m) => {
                apply(&mut m.content, &clean);
                apply(&mut m.author.username, &clean);
            }
            EventBody::MessageUpdate(m) => {
                if let Some(c) = m.content.as_mut() {
                    apply(c, &clean);
                }
            }
            EventBody::VoiceJoined(v) => apply(&mut v.username, &clean),
            EventBody::Messages(list) => {
                for m in &mut list.messages {
                    apply(&mut m.message.content, &clean);
                    apply(&mut m.message.author.username, &clean);
                }
            }
            EventBody::Error(e) => apply(&mut e.message, &clean),
            EventBody::Ready(r) => {
                for m in r.voice.channels.values_mut().flatten() {
                    apply(&mut m.username, &clean);
                }
            }
            _ => {}
        }
    }
}

/// `sendMessage` data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SendMessage {
    /// Target text channel.
    pub channel_id: String,
    /// Text, 1–2000 Unicode scalar values.
    pub content: String,
}

/// `addReaction` data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AddReaction {
    /// Channel of the message.
    pub channel_id: String,
    /// The message to react to.
    pub message_id: String,
    /// A unicode emoji, or `name:id` for a custom emoji.
    pub emoji: String,
}

/// `typingStart` command data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TriggerTyping {
    /// Channel to show "is typing" in.
    pub channel_id: String,
}

/// `voiceMove` data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VoiceMove {
    /// Guild of the member.
    pub guild_id: String,
    /// The member to move.
    pub user_id: String,
    /// Target voice channel, or `null` to disconnect the member.
    #[serde(default)]
    pub channel_id: Option<String>,
}

/// `voiceMute` data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VoiceMute {
    /// Guild of the member.
    pub guild_id: String,
    /// The member to (un)mute.
    pub user_id: String,
    /// `true` to server-mute, `false` to lift it.
    pub mute: bool,
}

/// The body of an edge → gateway frame: its `type` and `data`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum CommandBody {
    /// Post a message.
    #[serde(rename = "sendMessage")]
    SendMessage(SendMessage),
    /// React to a message.
    #[serde(rename = "addReaction")]
    AddReaction(AddReaction),
    /// Show "is typing".
    #[serde(rename = "typingStart")]
    TypingStart(TriggerTyping),
    /// Move or disconnect a voice member.
    #[serde(rename = "voiceMove")]
    VoiceMove(VoiceMove),
    /// Server-mute or unmute a voice member.
    #[serde(rename = "voiceMute")]
    VoiceMute(VoiceMute),
    /// Edge-internal: read a guild member (roles, timeout) so the edge can
    /// compute what the member may see (`ACCESS=discord`). The gateway answers
    /// with a `guild.member` event to every edge, then `ack`.
    #[serde(rename = "fetchMember")]
    FetchMember(FetchMember),
    /// Read a channel's recent messages (CONTRACT.md §9); answered by a
    /// `messages` reply.
    #[serde(rename = "fetchMessages")]
    FetchMessages(FetchMessages),
}

/// `fetchMessages` data: Discord's "Get Channel Messages" parameters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FetchMessages {
    /// The channel.
    pub channel_id: String,
    /// 1–100, default 50.
    #[serde(default = "default_history_limit")]
    pub limit: u32,
    /// Messages older than this id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<String>,
    /// Messages newer than this id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    /// Messages around this id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub around: Option<String>,
}

fn default_history_limit() -> u32 {
    50
}

/// `fetchMember` data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FetchMember {
    /// The guild.
    pub guild_id: String,
    /// The user.
    pub user_id: String,
}

impl CommandBody {
    /// Every `type` this enum accepts.
    pub const TYPES: [&'static str; 7] = [
        "sendMessage",
        "addReaction",
        "typingStart",
        "voiceMove",
        "voiceMute",
        "fetchMember",
        "fetchMessages",
    ];

    /// The wire `type` of this command.
    pub fn type_name(&self) -> &'static str {
        match self {
            CommandBody::SendMessage(_) => "sendMessage",
            CommandBody::AddReaction(_) => "addReaction",
            CommandBody::TypingStart(_) => "typingStart",
            CommandBody::VoiceMove(_) => "voiceMove",
            CommandBody::VoiceMute(_) => "voiceMute",
            CommandBody::FetchMember(_) => "fetchMember",
            CommandBody::FetchMessages(_) => "fetchMessages",
        }
    }

    /// The key of the per-channel rate-limit bucket: the channel for chat
    /// commands, the guild for voice commands (CONTRACT.md §3).
    pub fn limit_key(&self) -> &str {
        match self {
            CommandBody::SendMessage(c) => &c.channel_id,
            CommandBody::AddReaction(c) => &c.channel_id,
            CommandBody::TypingStart(c) => &c.channel_id,
            CommandBody::VoiceMove(c) => &c.guild_id,
            CommandBody::VoiceMute(c) => &c.guild_id,
            CommandBody::FetchMember(c) => &c.guild_id,
            CommandBody::FetchMessages(c) => &c.channel_id,
        }
    }

    /// The session role this command needs.
    pub fn required_role(&self) -> &'static str {
        match self {
            CommandBody::VoiceMove(_) | CommandBody::VoiceMute(_) => "voice:moderate",
            _ => "chat:write",
        }
    }
}

impl EventBody {
    /// Whether this event changes a channel's message history (create,
    /// update, delete, reactions): those carry the window revision.
    pub fn is_message_event(&self) -> bool {
        matches!(
            self,
            EventBody::MessageCreate(_)
                | EventBody::MessageUpdate(_)
                | EventBody::MessageDelete(_)
                | EventBody::ReactionAdd(_)
                | EventBody::ReactionRemove(_)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn joined(user: &str, channel: &str) -> VoiceJoined {
        VoiceJoined {
            guild_id: "1".into(),
            channel_id: channel.into(),
            user_id: user.into(),
            username: user.into(),
            avatar: None,
        }
    }

    #[test]
    fn snapshot_moves_a_member_between_channels() {
        let mut snap = VoiceSnapshot::default();
        snap.apply_joined(&joined("7", "100"));
        snap.apply_joined(&joined("8", "100"));
        snap.apply_joined(&joined("7", "200"));
        assert_eq!(snap.channels["100"].len(), 1);
        assert_eq!(snap.channels["200"][0].user_id, "7");
        snap.apply_left(&VoiceLeft {
            guild_id: "1".into(),
            channel_id: None,
            user_id: "8".into(),
        });
        assert!(
            !snap.channels.contains_key("100"),
            "empty channels are dropped"
        );
    }

    #[test]
    fn type_names_match_serde_tags() {
        let body = EventBody::VoiceLeft(VoiceLeft {
            guild_id: "1".into(),
            channel_id: None,
            user_id: "2".into(),
        });
        let v = serde_json::to_value(&body).unwrap();
        assert_eq!(v["type"], body.type_name());
        assert_eq!(v["data"]["channelId"], serde_json::Value::Null);
        let cmd = CommandBody::VoiceMove(VoiceMove {
            guild_id: "1".into(),
            user_id: "2".into(),
            channel_id: None,
        });
        let v = serde_json::to_value(&cmd).unwrap();
        assert_eq!(v["type"], cmd.type_name());
        assert_eq!(
            v["data"]["channelId"],
            serde_json::Value::Null,
            "null means disconnect and must be sent"
        );
    }

    #[test]
    fn clean_text_rewrites_only_user_text() {
        let mut body = EventBody::MessageCreate(MessageCreate {
            id: "1".into(),
            channel_id: "2".into(),
            guild_id: None,
            author: Author {
                id: "3".into(),
                username: "bad\u{1b}name".into(),
                avatar: None,
                bot: false,
            },
            content: "hi\u{1b}[31m".into(),
            timestamp: Timestamp::Unix(0),
            via: None,
        });
        body.clean_text(|s| Cow::Owned(s.replace('\u{1b}', "ESC")));
        let EventBody::MessageCreate(m) = body else {
            unreachable!()
        };
        assert_eq!(m.content, "hiESC[31m");
        assert_eq!(m.author.username, "badESCname");
        assert_eq!(m.id, "1");
    }
}
