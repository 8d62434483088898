//! The simulated guild: its roles, members, channels (with permission overwrites),
//! threads, voice states and recent messages, and the JSON shapes Discord gives them
//! (users, members, roles, channels, voice states, messages, GUILD_CREATE). Ids are
//! fixed, realistic snowflakes so `relay demo` and tests can name them without asking
//! a running simulator.
//!
//! Changes to the model ([`Guild::set_member_roles`] and friends) return the
//! dispatches Discord would send for them; the caller sends them.
//!
//! [`Guild::permissions`] reads Discord's pseudocode (`topics/permissions.mdx`) as
//! written, for the simulator's own checks (the bot's `403`s, what demo users may
//! do). It is not relay's permission model and is not meant to be one.

use std::collections::{BTreeMap, VecDeque};

use serde_json::{json, Map, Value};

/// Fixed ids of the simulated guild (the same in every run and in demo mode).
///
/// Each is a real snowflake: `(ms - 1420070400000) << 22 | 1`, dated in 2016–2021.
pub mod ids {
    /// The guild "Relay Demo". Also the id of its `@everyone` role.
    pub const GUILD: &str = "820674996354416641";
    /// Text channel `#general` (in "Text Channels").
    pub const GENERAL: &str = "820675145105408001";
    /// Text channel `#game-room` (in "Text Channels").
    pub const GAME_ROOM: &str = "820675262545920001";
    /// Voice channel "Lobby" (in "Voice Channels").
    pub const LOBBY: &str = "820675388375040001";
    /// Voice channel "Raid" (in "Voice Channels").
    pub const RAID: &str = "820675472261120001";
    /// Category "Text Channels" (type 4).
    pub const TEXT_CATEGORY: &str = "820675010887680001";
    /// Category "Voice Channels" (type 4).
    pub const VOICE_CATEGORY: &str = "820675015081984001";
    /// Text channel `#announcements`: `@everyone` may view but not send; the
    /// Moderator role may send (the bot may not, so relay may not either).
    pub const ANNOUNCEMENTS: &str = "820959510528000001";
    /// Private text channel `#moderators`: `@everyone` may not view; the Moderator
    /// role and the bot's role may; Margaret may read but not send (a member overwrite).
    pub const MODERATORS: &str = "820960768819200001";
    /// Public thread "release-planning" (type 11) under `#general`, started by Grace.
    pub const RELEASE_THREAD: &str = "822892245811200001";
    /// The `@everyone` role: its id is the guild's.
    pub const ROLE_EVERYONE: &str = GUILD;
    /// Role "Member": every demo user has it; it adds SEND_MESSAGES_IN_THREADS and
    /// CREATE_PUBLIC_THREADS, which `@everyone` lacks.
    pub const ROLE_MEMBER: &str = "820675640033280001";
    /// Role "Moderator": MOVE_MEMBERS, MUTE_MEMBERS, MANAGE_MESSAGES. Grace has it.
    pub const ROLE_MODERATOR: &str = "820675891691520001";
    /// Role "Admin": ADMINISTRATOR. Hedy (the owner) has it.
    pub const ROLE_ADMIN: &str = "820676143349760001";
    /// The bot's managed role "Relay" (`tags.bot_id` = the bot); not ADMINISTRATOR.
    pub const ROLE_BOT: &str = "820680169881600001";
    /// The bot user (also the application id, as for every app made since 2020).
    pub const BOT_USER: &str = "820657520640000001";
    /// Hedy, the guild's owner: a member, but not one of the [`super::demo_users`]
    /// (the demo page does not sign in as the owner, who has every permission).
    pub const OWNER: &str = "245834868326400001";
    /// Demo user Ada (Member; the demo page signs in as her; in demo mode she gains
    /// and loses Moderator on a schedule).
    pub const ADA: &str = "257068892160000001";
    /// Demo user Linus (Member).
    pub const LINUS: &str = "218473863053312001";
    /// Demo user Grace (Member, Moderator).
    pub const GRACE: &str = "256721603788800001";
    /// Demo user Ken (Member, timed out: `communication_disabled_until` in the future).
    pub const KEN: &str = "277407911116800001";
    /// Demo user Margaret (Member; may read `#moderators` by a member overwrite).
    pub const MARGARET: &str = "347650759065600001";
}

/// Discord's permission bits the simulator uses (`topics/permissions.mdx`).
pub mod perms {
    /// CREATE_INSTANT_INVITE.
    pub const CREATE_INSTANT_INVITE: u64 = 1 << 0;
    /// ADMINISTRATOR: every permission, overwrites ignored.
    pub const ADMINISTRATOR: u64 = 1 << 3;
    /// MANAGE_GUILD.
    pub const MANAGE_GUILD: u64 = 1 << 5;
    /// ADD_REACTIONS.
    pub const ADD_REACTIONS: u64 = 1 << 6;
    /// VIEW_CHANNEL.
    pub const VIEW_CHANNEL: u64 = 1 << 10;
    /// SEND_MESSAGES.
    pub const SEND_MESSAGES: u64 = 1 << 11;
    /// MANAGE_MESSAGES.
    pub const MANAGE_MESSAGES: u64 = 1 << 13;
    /// EMBED_LINKS.
    pub const EMBED_LINKS: u64 = 1 << 14;
    /// ATTACH_FILES.
    pub const ATTACH_FILES: u64 = 1 << 15;
    /// READ_MESSAGE_HISTORY.
    pub const READ_MESSAGE_HISTORY: u64 = 1 << 16;
    /// USE_EXTERNAL_EMOJIS.
    pub const USE_EXTERNAL_EMOJIS: u64 = 1 << 18;
    /// CONNECT.
    pub const CONNECT: u64 = 1 << 20;
    /// SPEAK.
    pub const SPEAK: u64 = 1 << 21;
    /// MUTE_MEMBERS.
    pub const MUTE_MEMBERS: u64 = 1 << 22;
    /// DEAFEN_MEMBERS.
    pub const DEAFEN_MEMBERS: u64 = 1 << 23;
    /// MOVE_MEMBERS.
    pub const MOVE_MEMBERS: u64 = 1 << 24;
    /// USE_VAD.
    pub const USE_VAD: u64 = 1 << 25;
    /// CHANGE_NICKNAME.
    pub const CHANGE_NICKNAME: u64 = 1 << 26;
    /// MANAGE_NICKNAMES.
    pub const MANAGE_NICKNAMES: u64 = 1 << 27;
    /// MANAGE_ROLES.
    pub const MANAGE_ROLES: u64 = 1 << 28;
    /// MANAGE_WEBHOOKS.
    pub const MANAGE_WEBHOOKS: u64 = 1 << 29;
    /// CREATE_PUBLIC_THREADS.
    pub const CREATE_PUBLIC_THREADS: u64 = 1 << 35;
    /// SEND_MESSAGES_IN_THREADS.
    pub const SEND_MESSAGES_IN_THREADS: u64 = 1 << 38;
    /// MODERATE_MEMBERS (time out members).
    pub const MODERATE_MEMBERS: u64 = 1 << 40;
    /// Every bit Discord defines today (through `1 << 52`): what owners and
    /// administrators have.
    pub const ALL: u64 = (1 << 53) - 1;

    /// `@everyone` in the demo guild.
    pub const EVERYONE: u64 = CREATE_INSTANT_INVITE
        | ADD_REACTIONS
        | VIEW_CHANNEL
        | SEND_MESSAGES
        | EMBED_LINKS
        | ATTACH_FILES
        | READ_MESSAGE_HISTORY
        | USE_EXTERNAL_EMOJIS
        | CONNECT
        | SPEAK
        | USE_VAD
        | CHANGE_NICKNAME;
    /// The "Member" role.
    pub const MEMBER: u64 = CREATE_PUBLIC_THREADS | SEND_MESSAGES_IN_THREADS;
    /// The "Moderator" role.
    pub const MODERATOR: u64 = MOVE_MEMBERS | MUTE_MEMBERS | MANAGE_MESSAGES;
    /// The bot's role "Relay": what relay needs, and not ADMINISTRATOR.
    pub const BOT: u64 = VIEW_CHANNEL
        | SEND_MESSAGES
        | EMBED_LINKS
        | READ_MESSAGE_HISTORY
        | ADD_REACTIONS
        | CONNECT
        | MUTE_MEMBERS
        | DEAFEN_MEMBERS
        | MOVE_MEMBERS
        | MANAGE_WEBHOOKS
        | SEND_MESSAGES_IN_THREADS;
}

/// The guild's name.
pub const GUILD_NAME: &str = "Relay Demo";
/// The bot's username.
pub const BOT_NAME: &str = "Relay";

/// When the guild was made (its id's time): the owner's `joined_at`.
const CREATED_AT: &str = "2021-03-14T15:09:26.535000+00:00";
/// When every other member joined (members' `joined_at`).
const JOINED_AT: &str = "2021-03-14T15:30:00.000000+00:00";

/// A simulated (non-bot) member of the demo guild.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemoUser {
    /// Snowflake id.
    pub id: String,
    /// Username, as Discord shows it.
    pub username: String,
    /// Avatar hash; `None` (Discord's default avatar): the simulator serves no CDN.
    pub avatar: Option<String>,
}

const DEMO_USERS: [(&str, &str); 5] = [
    (ids::ADA, "Ada"),
    (ids::LINUS, "Linus"),
    (ids::GRACE, "Grace"),
    (ids::KEN, "Ken"),
    (ids::MARGARET, "Margaret"),
];

/// The guild's human members the demo page offers, in a fixed order (`relay demo`
/// signs in as the first). The owner, Hedy ([`ids::OWNER`]), is a member too but
/// not listed here.
pub fn demo_users() -> Vec<DemoUser> {
    DEMO_USERS
        .iter()
        .map(|(id, name)| DemoUser {
            id: (*id).to_owned(),
            username: (*name).to_owned(),
            avatar: None,
        })
        .collect()
}

/// One permission overwrite of a channel, as Discord has it
/// (`{id, type, allow, deny}`, bit sets as decimal strings in JSON).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overwrite {
    /// A role id (`kind` 0) or a user id (`kind` 1).
    pub id: String,
    /// 0: role, 1: member.
    pub kind: u8,
    /// Bits allowed.
    pub allow: u64,
    /// Bits denied.
    pub deny: u64,
}

impl Overwrite {
    /// An overwrite for a role (`@everyone` is the role whose id is the guild's).
    pub fn role(id: &str, allow: u64, deny: u64) -> Self {
        Overwrite {
            id: id.to_owned(),
            kind: 0,
            allow,
            deny,
        }
    }

    /// An overwrite for one member.
    pub fn member(id: &str, allow: u64, deny: u64) -> Self {
        Overwrite {
            id: id.to_owned(),
            kind: 1,
            allow,
            deny,
        }
    }

    /// Reads Discord's JSON shape; `None` unless `type` is 0 or 1 and `allow` and
    /// `deny` are decimal strings (or integers).
    pub fn from_json(v: &Value) -> Option<Self> {
        let bits = |k: &str| match &v[k] {
            Value::String(s) => s.parse::<u64>().ok(),
            Value::Number(n) => n.as_u64(),
            _ => None,
        };
        let kind = v["type"].as_u64().filter(|t| *t <= 1)? as u8;
        Some(Overwrite {
            id: v["id"].as_str()?.to_owned(),
            kind,
            allow: bits("allow")?,
            deny: bits("deny")?,
        })
    }

    /// Discord's JSON shape.
    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "type": self.kind,
            "allow": self.allow.to_string(),
            "deny": self.deny.to_string(),
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ChannelKind {
    /// GUILD_TEXT (0).
    Text,
    /// GUILD_VOICE (2).
    Voice,
    /// GUILD_CATEGORY (4).
    Category,
    /// PUBLIC_THREAD (11).
    Thread,
}

impl ChannelKind {
    pub(super) fn from_number(n: u8) -> Option<Self> {
        Some(match n {
            0 => ChannelKind::Text,
            2 => ChannelKind::Voice,
            4 => ChannelKind::Category,
            11 => ChannelKind::Thread,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone)]
pub(super) struct Channel {
    pub(super) id: String,
    pub(super) name: String,
    pub(super) kind: ChannelKind,
    position: u32,
    /// The category of a channel, the parent channel of a thread.
    pub(super) parent_id: Option<String>,
    /// Always empty for threads: they use their parent's.
    pub(super) overwrites: Vec<Overwrite>,
    /// Who started a thread.
    owner_id: Option<String>,
    /// When a thread was made (its `thread_metadata`).
    created_at: Option<String>,
}

#[derive(Debug, Clone)]
pub(super) struct Role {
    pub(super) id: String,
    name: String,
    pub(super) permissions: u64,
    position: u32,
    color: u32,
    hoist: bool,
    /// The bot's own role: managed, tagged with the bot's id.
    bot_id: Option<String>,
}

/// A member of the guild and its user.
#[derive(Debug, Clone)]
pub(super) struct User {
    pub(super) id: String,
    pub(super) username: String,
    bot: bool,
    /// Role ids, `@everyone` not included (as Discord lists them).
    pub(super) roles: Vec<String>,
    pub(super) nick: Option<String>,
    /// `communication_disabled_until`, Unix ms; kept once past, as Discord does.
    pub(super) timeout_until: Option<u64>,
    joined_at: String,
}

#[derive(Debug, Clone)]
pub(super) struct VoiceState {
    pub(super) channel_id: String,
    session_id: String,
    pub(super) mute: bool,
    pub(super) deaf: bool,
}

/// What the simulator remembers of a message: enough to answer "Get Channel
/// Messages" (content, edits, reactions) and MESSAGE_REACTION_ADD's
/// `message_author_id`.
#[derive(Debug, Clone)]
pub(super) struct StoredMessage {
    pub(super) id: String,
    pub(super) channel_id: String,
    pub(super) author_id: String,
    /// The REST message object as made (content and `edited_timestamp`
    /// updated by edits; `reactions` added when answering).
    pub(super) json: Value,
    /// Per emoji (`{id, name}`), who reacted, in first-use order.
    pub(super) reactions: Vec<(Value, Vec<String>)>,
}

impl StoredMessage {
    /// The message as "Get Channel Messages" returns it: with `reactions`
    /// (`count`, `count_details`, `me` for the bot, `emoji` …) when it has any.
    pub(super) fn rest_json(&self, bot_id: &str) -> Value {
        let mut m = self.json.clone();
        if !self.reactions.is_empty() {
            let list: Vec<Value> = self
                .reactions
                .iter()
                .map(|(emoji, users)| {
                    json!({
                        "count": users.len(),
                        "count_details": {"burst": 0, "normal": users.len()},
                        "me": users.iter().any(|u| u == bot_id),
                        "me_burst": false,
                        "emoji": emoji,
                        "burst_colors": [],
                    })
                })
                .collect();
            m["reactions"] = Value::Array(list);
        }
        m
    }
}

/// Dispatches a change makes, in order: `(event name, d)`.
pub(super) type Dispatches = Vec<(&'static str, Value)>;

/// How many messages are remembered (all channels together; the oldest go).
const MESSAGE_MEMORY: usize = 5000;

#[derive(Debug)]
pub(super) struct Guild {
    pub(super) owner_id: String,
    pub(super) roles: Vec<Role>,
    pub(super) users: Vec<User>,
    /// Channels, categories and threads.
    pub(super) channels: Vec<Channel>,
    /// user id → voice state; a user is in at most one voice channel.
    pub(super) voice: BTreeMap<String, VoiceState>,
    pub(super) messages: VecDeque<StoredMessage>,
}

fn role(id: &str, name: &str, permissions: u64, position: u32, color: u32) -> Role {
    Role {
        id: id.to_owned(),
        name: name.to_owned(),
        permissions,
        position,
        color,
        hoist: position > 0,
        bot_id: None,
    }
}

fn channel(
    id: &str,
    name: &str,
    kind: ChannelKind,
    position: u32,
    parent: Option<&str>,
) -> Channel {
    Channel {
        id: id.to_owned(),
        name: name.to_owned(),
        kind,
        position,
        parent_id: parent.map(str::to_owned),
        overwrites: Vec::new(),
        owner_id: None,
        created_at: None,
    }
}

/// THREAD_DELETE's `d`: only `id`, `guild_id`, `parent_id` and `type`.
fn thread_delete(t: &Channel) -> Value {
    json!({ "id": t.id, "guild_id": ids::GUILD, "parent_id": t.parent_id, "type": 11 })
}

fn member(id: &str, username: &str, roles: &[&str], joined_at: &str) -> User {
    User {
        id: id.to_owned(),
        username: username.to_owned(),
        bot: false,
        roles: roles.iter().map(|r| (*r).to_owned()).collect(),
        nick: None,
        timeout_until: None,
        joined_at: joined_at.to_owned(),
    }
}

impl Guild {
    /// The fixed guild, with Linus and Grace already in "Lobby" so a voice snapshot
    /// is never empty at start. Ada, Ken and Margaret start outside voice; Ken is
    /// timed out until `ken_timeout_until` (Unix ms).
    pub(super) fn new(ken_timeout_until: u64) -> Self {
        use perms::*;
        let mut bot_role = role(ids::ROLE_BOT, BOT_NAME, BOT, 3, 0);
        bot_role.bot_id = Some(ids::BOT_USER.to_owned());
        bot_role.hoist = false;
        let roles = vec![
            role(ids::ROLE_EVERYONE, "@everyone", EVERYONE, 0, 0),
            role(ids::ROLE_MEMBER, "Member", MEMBER, 1, 0x3498db),
            role(ids::ROLE_MODERATOR, "Moderator", MODERATOR, 2, 0x2ecc71),
            bot_role,
            role(ids::ROLE_ADMIN, "Admin", ADMINISTRATOR, 4, 0xe74c3c),
        ];
        let mut bot = member(ids::BOT_USER, BOT_NAME, &[ids::ROLE_BOT], JOINED_AT);
        bot.bot = true;
        let mut users = vec![
            bot,
            member(ids::OWNER, "Hedy", &[ids::ROLE_ADMIN], CREATED_AT),
        ];
        users.extend(DEMO_USERS.iter().map(|(id, name)| {
            let mut roles = vec![ids::ROLE_MEMBER];
            if *id == ids::GRACE {
                roles.push(ids::ROLE_MODERATOR);
            }
            let mut m = member(id, name, &roles, JOINED_AT);
            if *id == ids::KEN {
                m.timeout_until = Some(ken_timeout_until);
            }
            m
        }));
        let text = Some(ids::TEXT_CATEGORY);
        let voice = Some(ids::VOICE_CATEGORY);
        let mut announcements = channel(
            ids::ANNOUNCEMENTS,
            "announcements",
            ChannelKind::Text,
            4,
            text,
        );
        announcements.overwrites = vec![
            Overwrite::role(ids::ROLE_EVERYONE, 0, SEND_MESSAGES),
            Overwrite::role(ids::ROLE_MODERATOR, SEND_MESSAGES, 0),
        ];
        let mut moderators = channel(ids::MODERATORS, "moderators", ChannelKind::Text, 5, text);
        moderators.overwrites = vec![
            Overwrite::role(ids::ROLE_EVERYONE, 0, VIEW_CHANNEL),
            Overwrite::role(ids::ROLE_MODERATOR, VIEW_CHANNEL, 0),
            Overwrite::role(ids::ROLE_BOT, VIEW_CHANNEL, 0),
            Overwrite::member(
                ids::MARGARET,
                VIEW_CHANNEL | READ_MESSAGE_HISTORY,
                SEND_MESSAGES,
            ),
        ];
        let mut thread = channel(
            ids::RELEASE_THREAD,
            "release-planning",
            ChannelKind::Thread,
            0,
            Some(ids::GENERAL),
        );
        thread.owner_id = Some(ids::GRACE.to_owned());
        thread.created_at = Some("2021-03-20T18:00:00.000000+00:00".to_owned());
        let channels = vec![
            channel(ids::GENERAL, "general", ChannelKind::Text, 0, text),
            channel(ids::GAME_ROOM, "game-room", ChannelKind::Text, 1, text),
            channel(ids::LOBBY, "Lobby", ChannelKind::Voice, 2, voice),
            channel(ids::RAID, "Raid", ChannelKind::Voice, 3, voice),
            channel(
                ids::TEXT_CATEGORY,
                "Text Channels",
                ChannelKind::Category,
                0,
                None,
            ),
            channel(
                ids::VOICE_CATEGORY,
                "Voice Channels",
                ChannelKind::Category,
                1,
                None,
            ),
            announcements,
            moderators,
            thread,
        ];
        let mut guild = Guild {
            owner_id: ids::OWNER.to_owned(),
            roles,
            users,
            channels,
            voice: BTreeMap::new(),
            messages: VecDeque::new(),
        };
        for user in [ids::LINUS, ids::GRACE] {
            guild.voice.insert(
                user.to_owned(),
                VoiceState {
                    channel_id: ids::LOBBY.to_owned(),
                    session_id: format!("{:032x}", user.parse::<u128>().unwrap_or(0)),
                    mute: false,
                    deaf: false,
                },
            );
        }
        guild
    }

    pub(super) fn user(&self, id: &str) -> Option<&User> {
        self.users.iter().find(|u| u.id == id)
    }

    pub(super) fn channel(&self, id: &str) -> Option<&Channel> {
        self.channels.iter().find(|c| c.id == id)
    }

    pub(super) fn role(&self, id: &str) -> Option<&Role> {
        self.roles.iter().find(|r| r.id == id)
    }

    /// A channel messages can be posted in: not a category (voice channels have
    /// Discord's text-in-voice chat).
    pub(super) fn is_postable(&self, id: &str) -> bool {
        self.channel(id)
            .is_some_and(|c| c.kind != ChannelKind::Category)
    }

    pub(super) fn user_mut(&mut self, id: &str) -> Option<&mut User> {
        self.users.iter_mut().find(|u| u.id == id)
    }

    pub(super) fn remember(&mut self, msg: StoredMessage) {
        if self.messages.len() >= MESSAGE_MEMORY {
            self.messages.pop_front();
        }
        self.messages.push_back(msg);
    }

    pub(super) fn message(&self, id: &str) -> Option<&StoredMessage> {
        self.messages.iter().rev().find(|m| m.id == id)
    }

    pub(super) fn message_mut(&mut self, id: &str) -> Option<&mut StoredMessage> {
        self.messages.iter_mut().rev().find(|m| m.id == id)
    }

    /// Forgets a message; whether it was there.
    pub(super) fn forget(&mut self, channel_id: &str, id: &str) -> bool {
        let before = self.messages.len();
        self.messages
            .retain(|m| !(m.id == id && m.channel_id == channel_id));
        self.messages.len() != before
    }

    // ---- permissions (Discord's pseudocode, `topics/permissions.mdx`) ----

    /// `compute_base_permissions`: `None` for a user who is not a member.
    pub(super) fn base_permissions(&self, user_id: &str) -> Option<u64> {
        let user = self.user(user_id)?;
        if user.id == self.owner_id {
            return Some(perms::ALL);
        }
        let mut p = self.role(ids::ROLE_EVERYONE).map_or(0, |r| r.permissions);
        for id in &user.roles {
            p |= self.role(id).map_or(0, |r| r.permissions);
        }
        Some(if p & perms::ADMINISTRATOR != 0 {
            perms::ALL
        } else {
            p
        })
    }

    /// What `user_id` may do in `channel_id` at Unix time `now_ms`: base
    /// permissions, then the channel's overwrites (a thread uses its parent's);
    /// no VIEW_CHANNEL means nothing; a timed-out member keeps only VIEW_CHANNEL
    /// and READ_MESSAGE_HISTORY (owner and ADMINISTRATOR exempt). 0 for a
    /// non-member or an unknown channel.
    pub(super) fn permissions(&self, user_id: &str, channel_id: &str, now_ms: u64) -> u64 {
        let (Some(base), Some(user), Some(mut channel)) = (
            self.base_permissions(user_id),
            self.user(user_id),
            self.channel(channel_id),
        ) else {
            return 0;
        };
        if base == perms::ALL {
            return perms::ALL;
        }
        if channel.kind == ChannelKind::Thread {
            match channel.parent_id.as_deref().and_then(|p| self.channel(p)) {
                Some(parent) => channel = parent,
                None => return 0,
            }
        }
        let mut p = base;
        let overwrites = &channel.overwrites;
        if let Some(o) = overwrites.iter().find(|o| o.id == ids::ROLE_EVERYONE) {
            p &= !o.deny;
            p |= o.allow;
        }
        let (mut allow, mut deny) = (0, 0);
        for o in overwrites
            .iter()
            .filter(|o| o.kind == 0 && user.roles.contains(&o.id))
        {
            allow |= o.allow;
            deny |= o.deny;
        }
        p &= !deny;
        p |= allow;
        if let Some(o) = overwrites.iter().find(|o| o.kind == 1 && o.id == user.id) {
            p &= !o.deny;
            p |= o.allow;
        }
        if user.timeout_until.is_some_and(|until| until > now_ms) {
            p &= perms::VIEW_CHANNEL | perms::READ_MESSAGE_HISTORY;
        }
        if p & perms::VIEW_CHANNEL == 0 {
            return 0;
        }
        p
    }

    // ---- voice ----

    /// Puts `user_id` into `channel` (a voice channel id) or out of voice (`None`),
    /// keeping mute/deaf across a move. Returns the VOICE_STATE_UPDATE payload, or
    /// `None` when nothing changed (already there / already out).
    pub(super) fn set_voice(
        &mut self,
        user_id: &str,
        channel: Option<&str>,
        new_session_id: impl FnOnce() -> String,
    ) -> Option<Value> {
        match (
            self.voice.get(user_id).map(|v| v.channel_id.clone()),
            channel,
        ) {
            (Some(old), Some(new)) if old == new => None,
            (None, None) => None,
            (_, Some(new)) => {
                let state = self
                    .voice
                    .entry(user_id.to_owned())
                    .or_insert_with(|| VoiceState {
                        channel_id: new.to_owned(),
                        session_id: new_session_id(),
                        mute: false,
                        deaf: false,
                    });
                state.channel_id = new.to_owned();
                Some(self.voice_update(user_id))
            }
            (Some(_), None) => {
                let left = self.voice.remove(user_id)?;
                let mut d = self.voice_state_json(user_id, &left, true);
                d["channel_id"] = Value::Null;
                d["mute"] = json!(false);
                d["deaf"] = json!(false);
                Some(d)
            }
        }
    }

    /// The VOICE_STATE_UPDATE payload of a user's current voice state.
    pub(super) fn voice_update(&self, user_id: &str) -> Value {
        match self.voice.get(user_id) {
            Some(state) => self.voice_state_json(user_id, state, true),
            None => Value::Null,
        }
    }

    // ---- changes, each with the dispatches Discord sends for it ----

    /// Replaces a member's roles (`@everyone` is implicit and may not be listed).
    /// `None` for an unknown member or role, or no change.
    pub(super) fn set_member_roles(&mut self, user_id: &str, roles: &[&str]) -> Option<Dispatches> {
        let valid = roles
            .iter()
            .all(|r| *r != ids::ROLE_EVERYONE && self.role(r).is_some());
        let user = self.users.iter_mut().find(|u| u.id == user_id)?;
        let mut new: Vec<String> = Vec::new();
        for r in roles {
            if !new.iter().any(|n| n == r) {
                new.push((*r).to_owned());
            }
        }
        if !valid || user.roles == new {
            return None;
        }
        user.roles = new;
        Some(vec![("GUILD_MEMBER_UPDATE", self.member_update(user_id)?)])
    }

    /// Sets or clears a member's timeout (`communication_disabled_until`, Unix ms).
    pub(super) fn set_timeout(
        &mut self,
        user_id: &str,
        until_ms: Option<u64>,
    ) -> Option<Dispatches> {
        let user = self.users.iter_mut().find(|u| u.id == user_id)?;
        if user.timeout_until == until_ms {
            return None;
        }
        user.timeout_until = until_ms;
        Some(vec![("GUILD_MEMBER_UPDATE", self.member_update(user_id)?)])
    }

    /// A new member (not a bot) with no roles; GUILD_MEMBER_ADD.
    pub(super) fn add_member(
        &mut self,
        user_id: &str,
        username: &str,
        joined_at: &str,
    ) -> Option<Dispatches> {
        if self.user(user_id).is_some() {
            return None;
        }
        self.users.push(member(user_id, username, &[], joined_at));
        let user = self.user(user_id)?;
        let mut d = self.member_json(user, true);
        d["guild_id"] = json!(ids::GUILD);
        Some(vec![("GUILD_MEMBER_ADD", d)])
    }

    /// A member leaves (or is kicked): out of voice first, then GUILD_MEMBER_REMOVE.
    /// The owner and the bot cannot leave this way.
    pub(super) fn remove_member(&mut self, user_id: &str) -> Option<Dispatches> {
        if user_id == self.owner_id || user_id == ids::BOT_USER {
            return None;
        }
        let user = self.user(user_id)?.clone();
        let mut out = Vec::new();
        if let Some(d) = self.set_voice(user_id, None, String::new) {
            out.push(("VOICE_STATE_UPDATE", d));
        }
        self.users.retain(|u| u.id != user_id);
        out.push((
            "GUILD_MEMBER_REMOVE",
            json!({ "guild_id": ids::GUILD, "user": self.user_json(&user) }),
        ));
        Some(out)
    }

    /// Hands the guild to another member; GUILD_UPDATE.
    pub(super) fn set_owner(&mut self, user_id: &str) -> Option<Dispatches> {
        if self.user(user_id).is_none() || self.owner_id == user_id {
            return None;
        }
        self.owner_id = user_id.to_owned();
        Some(vec![("GUILD_UPDATE", self.guild_json())])
    }

    /// A new role below the bot's, with `permissions`; GUILD_ROLE_CREATE.
    pub(super) fn create_role(&mut self, id: String, name: &str, permissions: u64) -> Dispatches {
        let position = self.roles.iter().map(|r| r.position).max().unwrap_or(0) + 1;
        let mut r = role(&id, name, permissions, position, 0);
        r.hoist = false;
        let d = json!({ "guild_id": ids::GUILD, "role": self.role_json(&r) });
        self.roles.push(r);
        vec![("GUILD_ROLE_CREATE", d)]
    }

    /// A role's permissions change; GUILD_ROLE_UPDATE.
    pub(super) fn set_role_permissions(
        &mut self,
        role_id: &str,
        permissions: u64,
    ) -> Option<Dispatches> {
        let r = self.roles.iter_mut().find(|r| r.id == role_id)?;
        if r.permissions == permissions {
            return None;
        }
        r.permissions = permissions;
        let r = self.role(role_id)?;
        Some(vec![(
            "GUILD_ROLE_UPDATE",
            json!({ "guild_id": ids::GUILD, "role": self.role_json(r) }),
        )])
    }

    /// Deletes a role (not `@everyone`, not the bot's managed role); GUILD_ROLE_DELETE
    /// only: members and overwrites lose it without events of their own, so a
    /// consumer drops it itself.
    pub(super) fn delete_role(&mut self, role_id: &str) -> Option<Dispatches> {
        let r = self.role(role_id)?;
        if r.id == ids::ROLE_EVERYONE || r.bot_id.is_some() {
            return None;
        }
        self.roles.retain(|r| r.id != role_id);
        for u in &mut self.users {
            u.roles.retain(|r| r != role_id);
        }
        for c in &mut self.channels {
            c.overwrites.retain(|o| !(o.kind == 0 && o.id == role_id));
        }
        Some(vec![(
            "GUILD_ROLE_DELETE",
            json!({ "guild_id": ids::GUILD, "role_id": role_id }),
        )])
    }

    /// Replaces a channel's overwrites (not a thread's: threads use their
    /// parent's); CHANNEL_UPDATE.
    pub(super) fn set_overwrites(
        &mut self,
        channel_id: &str,
        overwrites: Vec<Overwrite>,
    ) -> Option<Dispatches> {
        let c = self.channels.iter_mut().find(|c| c.id == channel_id)?;
        if c.kind == ChannelKind::Thread {
            return None;
        }
        c.overwrites = overwrites;
        let c = self.channel(channel_id)?;
        Some(vec![("CHANNEL_UPDATE", self.channel_json(c, true))])
    }

    /// A new channel of Discord type `kind` (0 text, 2 voice, 4 category, 11 public
    /// thread). A channel's `parent` must be a category (or none); a thread's must be
    /// a text channel, and a thread has no overwrites. CHANNEL_CREATE, or
    /// THREAD_CREATE with `newly_created: true`.
    pub(super) fn create_channel(
        &mut self,
        id: String,
        name: &str,
        kind: u8,
        parent: Option<&str>,
        overwrites: Vec<Overwrite>,
        now: &str,
    ) -> Option<Dispatches> {
        let kind = ChannelKind::from_number(kind)?;
        let parent_kind = match parent {
            Some(p) => Some(self.channel(p)?.kind),
            None => None,
        };
        match (kind, parent_kind) {
            (ChannelKind::Thread, Some(ChannelKind::Text)) if overwrites.is_empty() => {}
            (ChannelKind::Thread, _) | (ChannelKind::Category, Some(_)) => return None,
            (_, None | Some(ChannelKind::Category)) => {}
            _ => return None,
        }
        let position = self
            .channels
            .iter()
            .filter(|c| c.kind != ChannelKind::Thread)
            .map(|c| c.position + 1)
            .max()
            .unwrap_or(0);
        let mut c = channel(&id, name, kind, position, parent);
        c.overwrites = overwrites;
        if kind == ChannelKind::Thread {
            c.position = 0;
            c.owner_id = Some(ids::BOT_USER.to_owned());
            c.created_at = Some(now.to_owned());
        }
        let mut d = self.channel_json(&c, true);
        self.channels.push(c);
        Some(if kind == ChannelKind::Thread {
            d["newly_created"] = json!(true);
            vec![("THREAD_CREATE", d)]
        } else {
            vec![("CHANNEL_CREATE", d)]
        })
    }

    /// Deletes a channel. A text channel's threads go first (THREAD_DELETE each),
    /// members in a deleted voice channel are disconnected (VOICE_STATE_UPDATE),
    /// a deleted category's channels lose their parent (CHANNEL_UPDATE each); then
    /// CHANNEL_DELETE (the full channel) or, for a thread, THREAD_DELETE
    /// (`{id, guild_id, parent_id, type}`).
    pub(super) fn delete_channel(&mut self, channel_id: &str) -> Option<Dispatches> {
        let c = self.channel(channel_id)?.clone();
        let mut out = Vec::new();
        for t in self
            .channels
            .iter()
            .filter(|t| t.kind == ChannelKind::Thread && t.parent_id.as_deref() == Some(channel_id))
        {
            out.push(("THREAD_DELETE", thread_delete(t)));
        }
        self.channels.retain(|t| {
            !(t.kind == ChannelKind::Thread && t.parent_id.as_deref() == Some(channel_id))
        });
        let inside: Vec<String> = self
            .voice
            .iter()
            .filter(|(_, v)| v.channel_id == channel_id)
            .map(|(u, _)| u.clone())
            .collect();
        for u in inside {
            if let Some(d) = self.set_voice(&u, None, String::new) {
                out.push(("VOICE_STATE_UPDATE", d));
            }
        }
        if c.kind == ChannelKind::Category {
            let children: Vec<String> = self
                .channels
                .iter()
                .filter(|x| {
                    x.kind != ChannelKind::Thread && x.parent_id.as_deref() == Some(channel_id)
                })
                .map(|x| x.id.clone())
                .collect();
            for child in children {
                if let Some(x) = self.channels.iter_mut().find(|x| x.id == child) {
                    x.parent_id = None;
                }
                if let Some(x) = self.channel(&child) {
                    out.push(("CHANNEL_UPDATE", self.channel_json(x, true)));
                }
            }
        }
        self.channels.retain(|x| x.id != channel_id);
        out.push(if c.kind == ChannelKind::Thread {
            ("THREAD_DELETE", thread_delete(&c))
        } else {
            ("CHANNEL_DELETE", self.channel_json(&c, true))
        });
        Some(out)
    }

    // ---- JSON shapes ----

    pub(super) fn user_json(&self, user: &User) -> Value {
        let mut u = json!({
            "id": user.id,
            "username": user.username,
            "global_name": user.username,
            "discriminator": "0",
            "avatar": null,
            "public_flags": 0,
        });
        if user.bot {
            u["bot"] = json!(true);
            u["global_name"] = Value::Null;
        }
        u
    }

    /// A guild member (`developers/resources/guild.mdx`); `with_user` false gives the
    /// partial member of MESSAGE_CREATE.
    pub(super) fn member_json(&self, user: &User, with_user: bool) -> Value {
        let (mute, deaf) = self
            .voice
            .get(&user.id)
            .map_or((false, false), |v| (v.mute, v.deaf));
        let mut m = json!({
            "nick": user.nick,
            "avatar": null,
            "banner": null,
            "roles": user.roles,
            "joined_at": user.joined_at,
            "premium_since": null,
            "deaf": deaf,
            "mute": mute,
            "flags": 0,
            "pending": false,
            "communication_disabled_until": user.timeout_until.map(super::rfc3339),
        });
        if with_user {
            m["user"] = self.user_json(user);
        }
        m
    }

    /// The GUILD_MEMBER_UPDATE payload: the member with `user` and `guild_id`.
    pub(super) fn member_update(&self, user_id: &str) -> Option<Value> {
        let mut d = self.member_json(self.user(user_id)?, true);
        d["guild_id"] = json!(ids::GUILD);
        Some(d)
    }

    fn role_json(&self, r: &Role) -> Value {
        let mut v = json!({
            "id": r.id,
            "name": r.name,
            "color": r.color,
            "colors": { "primary_color": r.color, "secondary_color": null, "tertiary_color": null },
            "hoist": r.hoist,
            "icon": null,
            "unicode_emoji": null,
            "position": r.position,
            "permissions": r.permissions.to_string(),
            "managed": r.bot_id.is_some(),
            "mentionable": false,
            "flags": 0,
        });
        if let Some(bot) = &r.bot_id {
            v["tags"] = json!({ "bot_id": bot });
        }
        v
    }

    /// A voice state. GUILD_CREATE's carry neither `guild_id` nor `member`
    /// (`full` false); VOICE_STATE_UPDATE's carry both.
    fn voice_state_json(&self, user_id: &str, state: &VoiceState, full: bool) -> Value {
        let mut v = json!({
            "channel_id": state.channel_id,
            "user_id": user_id,
            "session_id": state.session_id,
            "deaf": state.deaf,
            "mute": state.mute,
            "self_deaf": false,
            "self_mute": false,
            "self_video": false,
            "suppress": false,
            "request_to_speak_timestamp": null,
        });
        if full {
            v["guild_id"] = json!(ids::GUILD);
            if let Some(user) = self.user(user_id) {
                v["member"] = self.member_json(user, true);
            }
        }
        v
    }

    /// A channel object (`developers/resources/channel.mdx`); `with_guild` adds
    /// `guild_id`, as CHANNEL_* and THREAD_* dispatches have and GUILD_CREATE's
    /// lists do not.
    pub(super) fn channel_json(&self, c: &Channel, with_guild: bool) -> Value {
        let overwrites: Vec<Value> = c.overwrites.iter().map(Overwrite::to_json).collect();
        let mut v = match c.kind {
            ChannelKind::Text => json!({
                "id": c.id, "type": 0, "name": c.name, "position": c.position,
                "parent_id": c.parent_id, "topic": null, "nsfw": false,
                "last_message_id": null, "rate_limit_per_user": 0, "flags": 0,
                "permission_overwrites": overwrites,
            }),
            ChannelKind::Voice => json!({
                "id": c.id, "type": 2, "name": c.name, "position": c.position,
                "parent_id": c.parent_id, "bitrate": 64000, "user_limit": 0,
                "rtc_region": null, "nsfw": false, "rate_limit_per_user": 0,
                "last_message_id": null, "flags": 0,
                "permission_overwrites": overwrites,
            }),
            ChannelKind::Category => json!({
                "id": c.id, "type": 4, "name": c.name, "position": c.position,
                "parent_id": null, "nsfw": false, "flags": 0,
                "permission_overwrites": overwrites,
            }),
            ChannelKind::Thread => json!({
                "id": c.id, "type": 11, "name": c.name, "parent_id": c.parent_id,
                "owner_id": c.owner_id, "last_message_id": null,
                "message_count": 0, "member_count": 1, "total_message_sent": 0,
                "rate_limit_per_user": 0, "flags": 0,
                "thread_metadata": {
                    "archived": false, "auto_archive_duration": 10080,
                    "archive_timestamp": c.created_at, "locked": false,
                    "create_timestamp": c.created_at,
                },
            }),
        };
        if with_guild {
            v["guild_id"] = json!(ids::GUILD);
        }
        v
    }

    /// The guild object (GUILD_UPDATE's `d`; GUILD_CREATE adds its extra fields).
    pub(super) fn guild_json(&self) -> Value {
        json!({
            "id": ids::GUILD,
            "name": GUILD_NAME,
            "icon": null,
            "splash": null,
            "discovery_splash": null,
            "owner_id": self.owner_id,
            "afk_channel_id": null,
            "afk_timeout": 300,
            "widget_enabled": false,
            "widget_channel_id": null,
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "roles": self.roles.iter().map(|r| self.role_json(r)).collect::<Vec<_>>(),
            "emojis": [],
            "features": [],
            "mfa_level": 0,
            "application_id": null,
            "system_channel_id": ids::GENERAL,
            "system_channel_flags": 0,
            "rules_channel_id": null,
            "max_presences": null,
            "max_members": 500000,
            "vanity_url_code": null,
            "description": null,
            "banner": null,
            "premium_tier": 0,
            "premium_subscription_count": 0,
            "preferred_locale": "en-US",
            "public_updates_channel_id": null,
            "max_video_channel_users": 25,
            "max_stage_video_channel_users": 50,
            "nsfw_level": 0,
            "stickers": [],
            "premium_progress_bar_enabled": false,
            "safety_alerts_channel_id": null,
        })
    }

    /// The GUILD_CREATE payload: the whole guild as it is now. Nested channels,
    /// threads and voice states have no `guild_id`, as on real Discord. Without
    /// GUILD_PRESENCES (`all_members` false) `members` holds only the bot and the
    /// members in voice, as `gateway-events.mdx` ("Guild Create") says.
    pub(super) fn guild_create(&self, all_members: bool) -> Value {
        let mut g = self.guild_json();
        let members: Vec<Value> = self
            .users
            .iter()
            .filter(|u| all_members || u.id == ids::BOT_USER || self.voice.contains_key(&u.id))
            .map(|u| self.member_json(u, true))
            .collect();
        let (threads, channels): (Vec<&Channel>, Vec<&Channel>) = self
            .channels
            .iter()
            .partition(|c| c.kind == ChannelKind::Thread);
        let extra = json!({
            "joined_at": JOINED_AT,
            "large": false,
            "unavailable": false,
            "member_count": self.users.len(),
            "voice_states": self.voice.iter()
                .map(|(user_id, state)| self.voice_state_json(user_id, state, false))
                .collect::<Vec<_>>(),
            "members": members,
            "channels": channels.iter().map(|c| self.channel_json(c, false)).collect::<Vec<_>>(),
            "threads": threads.iter().map(|c| self.channel_json(c, false)).collect::<Vec<_>>(),
            "presences": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "soundboard_sounds": [],
        });
        if let (Some(g), Value::Object(extra)) = (g.as_object_mut(), extra) {
            g.extend(extra);
        }
        g
    }

    /// A message object as REST returns it (no `guild_id`, no `member`).
    pub(super) fn message_json(
        &self,
        id: &str,
        channel_id: &str,
        author: &User,
        content: &str,
        timestamp: &str,
    ) -> Value {
        json!({
            "id": id,
            "channel_id": channel_id,
            "author": self.user_json(author),
            "content": content,
            "timestamp": timestamp,
            "edited_timestamp": null,
            "tts": false,
            "mention_everyone": false,
            "mentions": [],
            "mention_roles": [],
            "attachments": [],
            "embeds": [],
            "components": [],
            "pinned": false,
            "type": 0,
            "flags": 0,
        })
    }

    /// The MESSAGE_CREATE payload for a REST-shaped message: adds `guild_id` and the
    /// partial `member` (without `user`).
    pub(super) fn message_create(&self, message: &Value, author: &User) -> Value {
        let mut d = message.clone();
        if let Some(obj) = d.as_object_mut() {
            obj.insert("guild_id".into(), json!(ids::GUILD));
            obj.insert("member".into(), self.member_json(author, false));
        }
        d
    }

    /// Extra fields of reaction and typing events: guild id and the member with user.
    pub(super) fn guild_member_fields(&self, user: &User) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("guild_id".into(), json!(ids::GUILD));
        m.insert("member".into(), self.member_json(user, true));
        m
    }
}
