//! Simulated webhooks (`developers/resources/webhook.mdx`): Create and Get
//! Channel Webhooks, Execute Webhook, and the MESSAGE_CREATE it makes.
//!
//! - `POST /channels/{id}/webhooks {"name"}`: unknown channel `404 10003`; a
//!   thread or category `400 50024`; the bot without VIEW_CHANNEL `403 50001`,
//!   without MANAGE_WEBHOOKS `403 50013`; a name that is not 1–80 characters or
//!   contains `clyde` / `discord` (any case) `400 50035`; a 16th webhook in the
//!   channel `400 30007`. Answers the webhook object with its `token`,
//!   `application_id` (the bot's application) and `user` (the bot).
//! - `GET /channels/{id}/webhooks`: the same checks; the channel's webhooks.
//! - `POST /webhooks/{id}/{token}` (`?wait=true`, `?thread_id=`): an unknown
//!   webhook or a wrong token `404 10015`; `content` as Create Message
//!   (≤ 2000, not empty `50006`); `username` under the name rules `400 50035`;
//!   `avatar_url` and `allowed_mentions` recorded; `thread_id` must be a thread
//!   of the webhook's channel (else `404 10003`). The message's author is
//!   `{id: webhook id, username: the override or the webhook's name, avatar,
//!   bot: true}`, with `webhook_id` and `application_id`; no `member`.
//!   `wait=true` answers the message, otherwise `204`. Needs no bot token, and
//!   checks no channel permission (Discord does not either).
//! - Each execute has its own bucket per webhook ([`super::super::RateLimits::webhooks`]).
//!
//! The simulator stores the avatar as a hash made from the URL (Discord
//! downloads the image and stores its hash).

use std::collections::VecDeque;

use serde_json::{json, Value};

use super::super::guild::{ChannelKind, StoredMessage};
use super::super::{ids, perms, rfc3339, unix_ms, Shared};
use super::{
    invalid_form, message_content, missing_permissions, parse_body, unknown_channel,
    RecordedRequest, Reply,
};

/// Most webhooks Discord allows in one channel.
const MAX_PER_CHANNEL: usize = 15;
/// Messages kept for `GET /channels/{id}/messages`.
const MESSAGE_LOG: usize = 1000;

/// One webhook.
#[derive(Debug, Clone)]
pub(in crate::sim_discord) struct Hook {
    pub(in crate::sim_discord) id: String,
    pub(in crate::sim_discord) token: String,
    pub(in crate::sim_discord) channel_id: String,
    name: String,
    /// Who made it (the bot when made by REST).
    user_id: String,
}

/// The webhooks, and the log of recent messages (REST shape, oldest first)
/// that `GET /channels/{id}/messages` reads.
#[derive(Debug, Default)]
pub(in crate::sim_discord) struct WebhookState {
    pub(in crate::sim_discord) hooks: Vec<Hook>,
    pub(in crate::sim_discord) messages: VecDeque<Value>,
}

impl WebhookState {
    /// Keeps a message for the history route.
    pub(in crate::sim_discord) fn log(&mut self, message: &Value) {
        if self.messages.len() >= MESSAGE_LOG {
            self.messages.pop_front();
        }
        self.messages.push_back(message.clone());
    }

    /// A channel's messages, newest first.
    pub(in crate::sim_discord) fn in_channel(&self, channel_id: &str) -> Vec<Value> {
        self.messages
            .iter()
            .rev()
            .filter(|m| m["channel_id"] == channel_id)
            .cloned()
            .collect()
    }

    /// A webhook object as Discord answers it (incoming webhooks carry their token).
    pub(in crate::sim_discord) fn json(&self, hook: &Hook, bot: &Value) -> Value {
        json!({
            "id": hook.id,
            "type": 1,
            "guild_id": ids::GUILD,
            "channel_id": hook.channel_id,
            "name": hook.name,
            "avatar": null,
            "token": hook.token,
            "application_id": if hook.user_id == ids::BOT_USER { json!(ids::BOT_USER) } else { Value::Null },
            "user": if hook.user_id == ids::BOT_USER { bot.clone() } else { json!({"id": hook.user_id}) },
        })
    }
}

/// Discord's webhook name rule: 1–80 characters, no `clyde` or `discord` (any case).
pub(in crate::sim_discord) fn name_error(name: &str) -> Option<&'static str> {
    let lower = name.to_lowercase();
    if !(1..=80).contains(&name.chars().count()) {
        Some("Must be between 1 and 80 in length.")
    } else if lower.contains("discord") {
        Some("Username cannot contain \"discord\"")
    } else if lower.contains("clyde") {
        Some("Username cannot contain \"clyde\"")
    } else {
        None
    }
}

/// The bot's MANAGE_WEBHOOKS check of a webhook route in `channel_id`.
fn bot_manages(shared: &Shared, channel_id: &str) -> Result<(), Reply> {
    let st = shared.state.lock();
    let Some(channel) = st.guild.channel(channel_id) else {
        return Err(unknown_channel());
    };
    if matches!(channel.kind, ChannelKind::Thread | ChannelKind::Category) {
        return Err(Reply::error(
            400,
            50024,
            "Cannot execute action on this channel type",
        ));
    }
    let have = st.guild.permissions(ids::BOT_USER, channel_id, unix_ms());
    if have & perms::VIEW_CHANNEL == 0 {
        Err(Reply::error(403, 50001, "Missing Access"))
    } else if have & perms::MANAGE_WEBHOOKS == 0 {
        Err(missing_permissions())
    } else {
        Ok(())
    }
}

/// `POST /channels/{id}/webhooks`.
pub(super) fn create(shared: &Shared, channel_id: &str, req: &RecordedRequest) -> Reply {
    if let Err(reply) = bot_manages(shared, channel_id) {
        return reply;
    }
    let body = match parse_body(req) {
        Ok(b) => b,
        Err(reply) => return reply,
    };
    let name = match body.get("name") {
        Some(Value::String(n)) => n.clone(),
        None | Some(Value::Null) => {
            return invalid_form("name", "BASE_TYPE_REQUIRED", "This field is required")
        }
        Some(_) => return invalid_form("name", "BASE_TYPE_STRING", "Must be a string."),
    };
    if let Some(why) = name_error(&name) {
        return invalid_form("name", "USERNAME_INVALID", why);
    }
    let mut guard = shared.state.lock();
    let st = &mut *guard;
    let in_channel = st
        .webhooks
        .hooks
        .iter()
        .filter(|h| h.channel_id == channel_id)
        .count();
    if in_channel >= MAX_PER_CHANNEL {
        return Reply::error(400, 30007, "Maximum number of webhooks reached (15)");
    }
    let id = st.next_id();
    let token = format!("{}{}", st.random_hex32(), st.random_hex32());
    let hook = Hook {
        id,
        token,
        channel_id: channel_id.to_owned(),
        name,
        user_id: ids::BOT_USER.to_owned(),
    };
    let bot = bot_json(st);
    let answer = st.webhooks.json(&hook, &bot);
    st.webhooks.hooks.push(hook);
    // Discord tells sessions that a channel's webhooks changed.
    st.dispatch(
        "WEBHOOKS_UPDATE",
        json!({"guild_id": ids::GUILD, "channel_id": channel_id}),
    );
    Reply::json(200, answer)
}

fn bot_json(st: &super::super::State) -> Value {
    st.guild
        .user(ids::BOT_USER)
        .map(|u| st.guild.user_json(u))
        .unwrap_or(Value::Null)
}

/// `GET /channels/{id}/webhooks`.
pub(super) fn list(shared: &Shared, channel_id: &str) -> Reply {
    if let Err(reply) = bot_manages(shared, channel_id) {
        return reply;
    }
    let st = shared.state.lock();
    let bot = bot_json(&st);
    let hooks: Vec<Value> = st
        .webhooks
        .hooks
        .iter()
        .filter(|h| h.channel_id == channel_id)
        .map(|h| st.webhooks.json(h, &bot))
        .collect();
    Reply::json(200, Value::Array(hooks))
}

/// The value of query parameter `key` in a raw request target.
fn query_param<'a>(target: &'a str, key: &str) -> Option<&'a str> {
    let (_, query) = target.split_once('?')?;
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

/// `POST /webhooks/{id}/{token}`.
pub(super) fn execute(shared: &Shared, hook_id: &str, token: &str, req: &RecordedRequest) -> Reply {
    let unknown = || Reply::error(404, 10015, "Unknown Webhook");
    let Some(hook) = shared
        .state
        .lock()
        .webhooks
        .hooks
        .iter()
        .find(|h| h.id == hook_id)
        .cloned()
    else {
        return unknown();
    };
    if hook.token != token {
        return unknown();
    }
    let body = match parse_body(req) {
        Ok(b) => b,
        Err(reply) => return reply,
    };
    let content = match message_content(&body) {
        Ok(c) => c,
        Err(reply) => return reply,
    };
    let username = match body.get("username") {
        None | Some(Value::Null) => hook.name.clone(),
        Some(Value::String(u)) => {
            if let Some(why) = name_error(u) {
                return invalid_form("username", "USERNAME_INVALID", why);
            }
            u.clone()
        }
        Some(_) => return invalid_form("username", "BASE_TYPE_STRING", "Must be a string."),
    };
    let avatar = match body.get("avatar_url") {
        None | Some(Value::Null) => None,
        Some(Value::String(url)) => Some(format!("{:032x}", fnv(url.as_bytes()))),
        Some(_) => return invalid_form("avatar_url", "BASE_TYPE_STRING", "Must be a string."),
    };
    if !matches!(body.get("allowed_mentions"), None | Some(Value::Object(_))) {
        return invalid_form(
            "allowed_mentions",
            "MODEL_TYPE_CONVERT",
            "Only dictionaries may be used in a ModelType",
        );
    }
    if content.trim().is_empty() {
        return Reply::error(400, 50006, "Cannot send an empty message");
    }
    let wait = matches!(query_param(&req.path, "wait"), Some("true" | "True" | "1"));
    let mut guard = shared.state.lock();
    let st = &mut *guard;
    let target = match query_param(&req.path, "thread_id") {
        None => hook.channel_id.clone(),
        Some(thread) => match st.guild.channel(thread) {
            Some(c)
                if c.kind == ChannelKind::Thread
                    && c.parent_id.as_deref() == Some(hook.channel_id.as_str()) =>
            {
                c.id.clone()
            }
            _ => return unknown_channel(),
        },
    };
    let id = st.next_id();
    let mut message = json!({
        "id": id,
        "type": 0,
        "channel_id": target,
        "author": {
            "id": hook.id,
            "username": username,
            "avatar": avatar,
            "discriminator": "0000",
            "public_flags": 0,
            "flags": 0,
            "bot": true,
            "global_name": null,
        },
        "content": content,
        "timestamp": rfc3339(unix_ms()),
        "edited_timestamp": null,
        "tts": false,
        "mention_everyone": false,
        "mentions": [],
        "mention_roles": [],
        "attachments": [],
        "embeds": [],
        "components": [],
        "pinned": false,
        "flags": 0,
        "webhook_id": hook.id,
    });
    if hook.user_id == ids::BOT_USER {
        message["application_id"] = json!(ids::BOT_USER);
    }
    st.guild.remember(StoredMessage {
        id: id.clone(),
        channel_id: target.clone(),
        author_id: hook.id.clone(),
        json: message.clone(),
        reactions: Vec::new(),
    });
    st.webhooks.log(&message);
    let mut d = message.clone();
    d["guild_id"] = json!(ids::GUILD);
    st.dispatch("MESSAGE_CREATE", d);
    if wait {
        Reply::json(200, message)
    } else {
        Reply::empty()
    }
}

fn fnv(bytes: &[u8]) -> u128 {
    let mut h: u128 = 0x6c62272e07bb014262b821756295c58d;
    for b in bytes {
        h ^= u128::from(*b);
        h = h.wrapping_mul(0x0000000001000000000000000000013B);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_discords_rules() {
        assert_eq!(name_error("relay"), None);
        assert!(name_error("").is_some());
        assert!(name_error(&"x".repeat(81)).is_some());
        assert!(name_error("My DiScOrD").is_some());
        assert!(name_error("clydesdale").is_some());
        assert_eq!(name_error(&"é".repeat(80)), None);
    }

    #[test]
    fn query_parameters_are_read_from_the_target() {
        let t = "/api/v10/webhooks/1/x?wait=true&thread_id=9";
        assert_eq!(query_param(t, "wait"), Some("true"));
        assert_eq!(query_param(t, "thread_id"), Some("9"));
        assert_eq!(query_param("/a", "wait"), None);
    }
}
