//! The simulated guild: its users, channels, voice states and recent messages,
//! and the JSON shapes Discord gives them (users, members, voice states, messages,
//! GUILD_CREATE). Ids are fixed, realistic snowflakes so `relay demo` and tests can
//! name them without asking a running simulator.

use std::collections::{BTreeMap, VecDeque};

use serde_json::{json, Map, Value};

/// Fixed ids of the simulated guild (the same in every run and in demo mode).
///
/// Each is a real snowflake: `(ms - 1420070400000) << 22 | 1`, dated in 2016–2021.
pub mod ids {
    /// The guild "Relay Demo".
    pub const GUILD: &str = "820674996354416641";
    /// Text channel `#general`.
    pub const GENERAL: &str = "820675145105408001";
    /// Text channel `#game-room`.
    pub const GAME_ROOM: &str = "820675262545920001";
    /// Voice channel "Lobby".
    pub const LOBBY: &str = "820675388375040001";
    /// Voice channel "Raid".
    pub const RAID: &str = "820675472261120001";
    /// The bot user (also the application id, as for every app made since 2020).
    pub const BOT_USER: &str = "820657520640000001";
    /// Demo user Ada.
    pub const ADA: &str = "257068892160000001";
    /// Demo user Linus.
    pub const LINUS: &str = "218473863053312001";
    /// Demo user Grace.
    pub const GRACE: &str = "256721603788800001";
    /// Demo user Ken.
    pub const KEN: &str = "277407911116800001";
    /// Demo user Margaret.
    pub const MARGARET: &str = "347650759065600001";
}

/// The guild's name.
pub const GUILD_NAME: &str = "Relay Demo";
/// The bot's username.
pub const BOT_NAME: &str = "Relay";

/// When every member joined (members' `joined_at`).
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

/// The guild's human members, in a fixed order (`relay demo` signs in as one of them).
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ChannelKind {
    Text,
    Voice,
}

#[derive(Debug, Clone)]
pub(super) struct Channel {
    pub(super) id: &'static str,
    pub(super) name: &'static str,
    pub(super) kind: ChannelKind,
    position: u32,
}

#[derive(Debug, Clone)]
pub(super) struct User {
    pub(super) id: &'static str,
    pub(super) username: &'static str,
    bot: bool,
}

#[derive(Debug, Clone)]
pub(super) struct VoiceState {
    pub(super) channel_id: String,
    session_id: String,
    pub(super) mute: bool,
    pub(super) deaf: bool,
}

/// What the simulator remembers of a message (for reactions and `message_author_id`).
#[derive(Debug, Clone)]
pub(super) struct StoredMessage {
    pub(super) id: String,
    pub(super) channel_id: String,
    pub(super) author_id: String,
}

/// How many messages are remembered.
const MESSAGE_MEMORY: usize = 200;

#[derive(Debug)]
pub(super) struct Guild {
    pub(super) users: Vec<User>,
    pub(super) channels: Vec<Channel>,
    /// user id → voice state; a user is in at most one voice channel.
    pub(super) voice: BTreeMap<String, VoiceState>,
    pub(super) messages: VecDeque<StoredMessage>,
}

impl Guild {
    /// The fixed guild, with Linus and Grace already in "Lobby" so a voice snapshot
    /// is never empty at start. Ada, Ken and Margaret start outside voice.
    pub(super) fn new() -> Self {
        let mut users = vec![User {
            id: ids::BOT_USER,
            username: BOT_NAME,
            bot: true,
        }];
        users.extend(DEMO_USERS.iter().map(|(id, name)| User {
            id,
            username: name,
            bot: false,
        }));
        let channels = vec![
            Channel {
                id: ids::GENERAL,
                name: "general",
                kind: ChannelKind::Text,
                position: 0,
            },
            Channel {
                id: ids::GAME_ROOM,
                name: "game-room",
                kind: ChannelKind::Text,
                position: 1,
            },
            Channel {
                id: ids::LOBBY,
                name: "Lobby",
                kind: ChannelKind::Voice,
                position: 2,
            },
            Channel {
                id: ids::RAID,
                name: "Raid",
                kind: ChannelKind::Voice,
                position: 3,
            },
        ];
        let mut guild = Guild {
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

    pub(super) fn remember(&mut self, msg: StoredMessage) {
        if self.messages.len() >= MESSAGE_MEMORY {
            self.messages.pop_front();
        }
        self.messages.push_back(msg);
    }

    pub(super) fn message(&self, id: &str) -> Option<&StoredMessage> {
        self.messages.iter().rev().find(|m| m.id == id)
    }

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

    /// A guild member; `with_user` false gives the partial member of MESSAGE_CREATE.
    pub(super) fn member_json(&self, user: &User, with_user: bool) -> Value {
        let (mute, deaf) = self
            .voice
            .get(user.id)
            .map_or((false, false), |v| (v.mute, v.deaf));
        let mut m = json!({
            "nick": null,
            "avatar": null,
            "roles": [],
            "joined_at": JOINED_AT,
            "premium_since": null,
            "deaf": deaf,
            "mute": mute,
            "flags": 0,
            "pending": false,
        });
        if with_user {
            m["user"] = self.user_json(user);
        }
        m
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

    fn channel_json(&self, c: &Channel) -> Value {
        match c.kind {
            ChannelKind::Text => json!({
                "id": c.id, "type": 0, "name": c.name, "position": c.position,
                "parent_id": null, "topic": null, "nsfw": false,
                "last_message_id": null, "rate_limit_per_user": 0,
                "permission_overwrites": [],
            }),
            ChannelKind::Voice => json!({
                "id": c.id, "type": 2, "name": c.name, "position": c.position,
                "parent_id": null, "bitrate": 64000, "user_limit": 0,
                "rtc_region": null, "permission_overwrites": [],
            }),
        }
    }

    /// The GUILD_CREATE payload: the whole guild as it is now. Nested channels and
    /// voice states have no `guild_id`, as on real Discord.
    pub(super) fn guild_create(&self) -> Value {
        json!({
            "id": ids::GUILD,
            "name": GUILD_NAME,
            "icon": null,
            "owner_id": ids::ADA,
            "joined_at": JOINED_AT,
            "large": false,
            "unavailable": false,
            "member_count": self.users.len(),
            "features": [],
            "emojis": [],
            "stickers": [],
            "roles": [{
                "id": ids::GUILD, "name": "@everyone", "permissions": "1071698660929",
                "position": 0, "color": 0, "hoist": false, "managed": false, "mentionable": false,
            }],
            "voice_states": self.voice.iter()
                .map(|(user_id, state)| self.voice_state_json(user_id, state, false))
                .collect::<Vec<_>>(),
            "members": self.users.iter().map(|u| self.member_json(u, true)).collect::<Vec<_>>(),
            "channels": self.channels.iter().map(|c| self.channel_json(c)).collect::<Vec<_>>(),
            "threads": [],
            "presences": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "soundboard_sounds": [],
        })
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
