//! Which Discord permissions each link command needs, and where (CONTRACT.md §8,
//! "Commands"). The edge checks before a command takes a rate-limit token; the
//! gateway checks again before it calls Discord, since an edge's copy of the
//! guild may be a moment old. Both call [`check_command`] on a [`GuildModel`].
//!
//! | command | needs, in that channel |
//! |---|---|
//! | `sendMessage`, `typingStart` | `VIEW_CHANNEL`, `SEND_MESSAGES` (`SEND_MESSAGES_IN_THREADS` in a thread) |
//! | `addReaction` | `VIEW_CHANNEL`, `READ_MESSAGE_HISTORY`, `ADD_REACTIONS` |
//! | `voiceMove` | `MOVE_MEMBERS` in the member's current voice channel; a target channel also needs `VIEW_CHANNEL`, `CONNECT`, `MOVE_MEMBERS` there |
//! | `voiceMute` | `MUTE_MEMBERS` in the member's current voice channel |
//! | `fetchMessages` (history) | `VIEW_CHANNEL`, `READ_MESSAGE_HISTORY` |
//!
//! A voice command whose target is in no voice channel is checked against the
//! actor's guild-wide permissions (Discord then answers 400 for a mute, or
//! nothing to do for a disconnect).

use std::fmt;

use super::guild::GuildModel;
use super::permissions::Permissions;
use crate::payload::CommandBody;

/// The first permission a command lacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MissingPermission {
    /// Discord's name of the bit (`SEND_MESSAGES`).
    pub permission: &'static str,
    /// The channel it is missing in; `None` for guild-wide.
    pub channel: Option<u64>,
}

impl fmt::Display for MissingPermission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.channel {
            Some(c) => write!(f, "you need {} in channel {c}", self.permission),
            None => write!(f, "you need {} in this server", self.permission),
        }
    }
}

/// The guild a command acts in: the guild of its channel for chat commands,
/// its `guildId` for voice commands. `None` for a channel no model holds.
pub fn command_guild<'a>(
    models: impl IntoIterator<Item = &'a GuildModel>,
    command: &CommandBody,
) -> Option<&'a GuildModel> {
    let mut models = models.into_iter();
    match command {
        CommandBody::SendMessage(c) => in_channel(&mut models, &c.channel_id),
        CommandBody::AddReaction(c) => in_channel(&mut models, &c.channel_id),
        CommandBody::TypingStart(c) => in_channel(&mut models, &c.channel_id),
        CommandBody::VoiceMove(c) => of_guild(&mut models, &c.guild_id),
        CommandBody::VoiceMute(c) => of_guild(&mut models, &c.guild_id),
        CommandBody::FetchMember(c) => of_guild(&mut models, &c.guild_id),
        CommandBody::FetchMessages(c) => in_channel(&mut models, &c.channel_id),
    }
}

fn in_channel<'a>(
    models: &mut impl Iterator<Item = &'a GuildModel>,
    channel: &str,
) -> Option<&'a GuildModel> {
    let channel = channel.parse::<u64>().ok()?;
    models.find(|m| m.channel(channel).is_some())
}

fn of_guild<'a>(
    models: &mut impl Iterator<Item = &'a GuildModel>,
    guild: &str,
) -> Option<&'a GuildModel> {
    let guild = guild.parse::<u64>().ok()?;
    models.find(|m| m.guild_id() == guild)
}

/// Checks `actor`'s permissions for `command` in `model` (`None`: the channel
/// or guild is unknown, which reads as no `VIEW_CHANNEL`). `voice_channel_of`
/// tells where a member is in voice now. `fetchMember` needs nothing.
pub fn check_command(
    model: Option<&GuildModel>,
    actor: u64,
    command: &CommandBody,
    voice_channel_of: impl Fn(u64) -> Option<u64>,
    now_ms: u64,
) -> Result<(), MissingPermission> {
    if matches!(command, CommandBody::FetchMember(_)) {
        return Ok(());
    }
    let Some(model) = model else {
        return Err(MissingPermission {
            permission: "VIEW_CHANNEL",
            channel: command_channel(command),
        });
    };
    let in_channel = |channel: u64, needs: &[Permissions]| {
        let has = model.permissions(actor, channel, now_ms);
        match needs.iter().find(|p| !has.contains(**p)) {
            None => Ok(()),
            Some(p) => Err(MissingPermission {
                permission: p.name().unwrap_or("VIEW_CHANNEL"),
                channel: Some(channel),
            }),
        }
    };
    let in_voice_of = |target: &str, need: Permissions| match target
        .parse::<u64>()
        .ok()
        .and_then(&voice_channel_of)
    {
        Some(channel) => in_channel(channel, &[need]),
        None if model.base_permissions(actor, now_ms).contains(need) => Ok(()),
        None => Err(MissingPermission {
            permission: need.name().unwrap_or("VIEW_CHANNEL"),
            channel: None,
        }),
    };
    match command {
        CommandBody::SendMessage(c) => chat(model, &c.channel_id, in_channel),
        CommandBody::TypingStart(c) => chat(model, &c.channel_id, in_channel),
        CommandBody::AddReaction(c) => in_channel(
            id(&c.channel_id),
            &[
                Permissions::VIEW_CHANNEL,
                Permissions::READ_MESSAGE_HISTORY,
                Permissions::ADD_REACTIONS,
            ],
        ),
        CommandBody::VoiceMove(c) => {
            in_voice_of(&c.user_id, Permissions::MOVE_MEMBERS)?;
            match &c.channel_id {
                Some(target) => in_channel(
                    id(target),
                    &[
                        Permissions::VIEW_CHANNEL,
                        Permissions::CONNECT,
                        Permissions::MOVE_MEMBERS,
                    ],
                ),
                None => Ok(()),
            }
        }
        CommandBody::VoiceMute(c) => in_voice_of(&c.user_id, Permissions::MUTE_MEMBERS),
        CommandBody::FetchMember(_) => Ok(()),
        // Discord itself answers an empty list without READ_MESSAGE_HISTORY;
        // the contract makes it a 403 (CONTRACT.md §9).
        CommandBody::FetchMessages(c) => in_channel(
            id(&c.channel_id),
            &[Permissions::VIEW_CHANNEL, Permissions::READ_MESSAGE_HISTORY],
        ),
    }
}

fn chat(
    model: &GuildModel,
    channel: &str,
    in_channel: impl Fn(u64, &[Permissions]) -> Result<(), MissingPermission>,
) -> Result<(), MissingPermission> {
    let channel = id(channel);
    in_channel(
        channel,
        &[Permissions::VIEW_CHANNEL, model.send_permission(channel)],
    )
}

/// A validated id; an unparsable one (never after validation) reads as 0,
/// a channel nobody may view.
fn id(s: &str) -> u64 {
    s.parse().unwrap_or(0)
}

fn command_channel(command: &CommandBody) -> Option<u64> {
    match command {
        CommandBody::SendMessage(c) => c.channel_id.parse().ok(),
        CommandBody::AddReaction(c) => c.channel_id.parse().ok(),
        CommandBody::TypingStart(c) => c.channel_id.parse().ok(),
        CommandBody::FetchMessages(c) => c.channel_id.parse().ok(),
        CommandBody::VoiceMove(c) => c.channel_id.as_deref().and_then(|c| c.parse().ok()),
        CommandBody::VoiceMute(_) | CommandBody::FetchMember(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::payload::{AddReaction, SendMessage, TriggerTyping, VoiceMove, VoiceMute};

    const GUILD: u64 = 100;
    const BOT: u64 = 900;
    const TEXT: u64 = 1;
    const NEWS: u64 = 2;
    const THREAD: u64 = 3;
    const VOICE: u64 = 4;
    const MOD_ROLE: u64 = 50;
    const MEMBER: u64 = 10;
    const MODERATOR: u64 = 11;
    const VIEW: u64 = 1 << 10;
    const SEND: u64 = 1 << 11;

    /// @everyone may view, send, react and read; #news denies SEND_MESSAGES to
    /// @everyone; the moderator role adds MOVE/MUTE; a thread under #text.
    fn guild() -> GuildModel {
        let everyone = (1u64 << 10) | (1 << 11) | (1 << 16) | (1 << 6) | (1 << 20) | (1 << 38);
        let d = json!({
            "id": GUILD.to_string(), "owner_id": "999",
            "roles": [
                {"id": GUILD.to_string(), "permissions": everyone.to_string(), "position": 0, "name": "@everyone"},
                {"id": MOD_ROLE.to_string(), "permissions": ((1u64 << 22) | (1 << 24)).to_string(), "position": 1, "name": "Mod"},
                {"id": "60", "permissions": "8", "position": 2, "name": "Bot"},
            ],
            "channels": [
                {"id": TEXT.to_string(), "type": 0, "name": "text", "permission_overwrites": []},
                {"id": NEWS.to_string(), "type": 5, "name": "news", "permission_overwrites": [
                    {"id": GUILD.to_string(), "type": 0, "allow": "0", "deny": SEND.to_string()}]},
                {"id": VOICE.to_string(), "type": 2, "name": "voice", "permission_overwrites": []},
            ],
            "threads": [
                {"id": THREAD.to_string(), "type": 11, "name": "thread", "parent_id": TEXT.to_string()},
            ],
            "members": [
                {"user": {"id": BOT.to_string()}, "roles": ["60"]},
                {"user": {"id": MEMBER.to_string()}, "roles": []},
                {"user": {"id": MODERATOR.to_string()}, "roles": [MOD_ROLE.to_string()]},
            ],
        });
        GuildModel::from_guild_create(&d, BOT).expect("a valid guild")
    }

    fn send(channel: u64) -> CommandBody {
        CommandBody::SendMessage(SendMessage {
            channel_id: channel.to_string(),
            content: "hi".into(),
        })
    }

    fn check(user: u64, command: &CommandBody) -> Result<(), MissingPermission> {
        let model = guild();
        let in_voice = |u: u64| (u == MEMBER).then_some(VOICE);
        check_command(Some(&model), user, command, in_voice, 0)
    }

    #[test]
    fn chat_needs_send_messages_where_it_is_denied() {
        assert_eq!(check(MEMBER, &send(TEXT)), Ok(()));
        let missing = check(MEMBER, &send(NEWS)).unwrap_err();
        assert_eq!(missing.permission, "SEND_MESSAGES");
        assert_eq!(missing.channel, Some(NEWS));
        let typing = CommandBody::TypingStart(TriggerTyping {
            channel_id: NEWS.to_string(),
        });
        assert_eq!(
            check(MEMBER, &typing).unwrap_err().permission,
            "SEND_MESSAGES"
        );
    }

    #[test]
    fn a_thread_needs_send_messages_in_threads() {
        assert_eq!(check(MEMBER, &send(THREAD)), Ok(()));
        let mut model = guild();
        let role = json!({"guild_id": GUILD.to_string(), "role": {
            "id": GUILD.to_string(), "permissions": (VIEW | SEND).to_string(), "position": 0, "name": "@everyone"}});
        let _ = model.apply("GUILD_ROLE_UPDATE", &role).unwrap();
        let missing = check_command(Some(&model), MEMBER, &send(THREAD), |_| None, 0).unwrap_err();
        assert_eq!(missing.permission, "SEND_MESSAGES_IN_THREADS");
    }

    #[test]
    fn an_unknown_channel_or_a_stranger_lacks_view_channel() {
        let model = guild();
        let stranger = check_command(Some(&model), 4242, &send(TEXT), |_| None, 0).unwrap_err();
        assert_eq!(stranger.permission, "VIEW_CHANNEL");
        let unknown = check_command(None, MEMBER, &send(77), |_| None, 0).unwrap_err();
        assert_eq!(
            unknown,
            MissingPermission {
                permission: "VIEW_CHANNEL",
                channel: Some(77)
            }
        );
        assert!(command_guild([&model], &send(77)).is_none());
        assert_eq!(
            command_guild([&model], &send(THREAD)).map(|m| m.guild_id()),
            Some(GUILD)
        );
    }

    #[test]
    fn reactions_need_history_and_add_reactions() {
        let react = CommandBody::AddReaction(AddReaction {
            channel_id: TEXT.to_string(),
            message_id: "5".into(),
            emoji: "👍".into(),
        });
        assert_eq!(check(MEMBER, &react), Ok(()));
        let mut model = guild();
        let role = json!({"guild_id": GUILD.to_string(), "role": {
            "id": GUILD.to_string(), "permissions": (VIEW | SEND).to_string(), "position": 0, "name": "@everyone"}});
        let _ = model.apply("GUILD_ROLE_UPDATE", &role).unwrap();
        let missing = check_command(Some(&model), MEMBER, &react, |_| None, 0).unwrap_err();
        assert_eq!(missing.permission, "READ_MESSAGE_HISTORY");
    }

    #[test]
    fn voice_moderation_is_checked_where_the_target_is() {
        let mute = |user: u64| {
            CommandBody::VoiceMute(VoiceMute {
                guild_id: GUILD.to_string(),
                user_id: user.to_string(),
                mute: true,
            })
        };
        // MEMBER is in VOICE; only the moderator may mute there.
        assert_eq!(check(MODERATOR, &mute(MEMBER)), Ok(()));
        let missing = check(MEMBER, &mute(MEMBER)).unwrap_err();
        assert_eq!(
            missing,
            MissingPermission {
                permission: "MUTE_MEMBERS",
                channel: Some(VOICE)
            }
        );
        // A target in no voice channel: guild-wide permissions decide.
        assert_eq!(check(MODERATOR, &mute(MODERATOR)), Ok(()));
        assert_eq!(check(MEMBER, &mute(MODERATOR)).unwrap_err().channel, None);
        let moving = |to: Option<u64>| {
            CommandBody::VoiceMove(VoiceMove {
                guild_id: GUILD.to_string(),
                user_id: MEMBER.to_string(),
                channel_id: to.map(|c| c.to_string()),
            })
        };
        assert_eq!(check(MODERATOR, &moving(Some(VOICE))), Ok(()));
        assert_eq!(check(MODERATOR, &moving(None)), Ok(()));
        assert_eq!(
            check(MEMBER, &moving(None)).unwrap_err().permission,
            "MOVE_MEMBERS"
        );
    }
}
