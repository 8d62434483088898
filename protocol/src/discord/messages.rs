//! Discord's "Get Channel Messages" answer (an array of message objects) as
//! history messages (CONTRACT.md §9), read the way the translator reads
//! MESSAGE_CREATE: ids as strings (or integers), `author.username` as sent, a
//! webhook's pseudo-author as `bot: true`, the timestamp as given (or from the
//! snowflake), `edited_timestamp` when set, `reactions` as `{emoji, count}`.
//!
//! The whole answer is refused if any message cannot be read: the window
//! draws conclusions from how many messages came back (a short page proves
//! the channel's start), so a message silently left out would make it claim
//! something false.

use std::fmt;

use serde_json::{Map, Value};

use super::dispatch::{snowflake_time_ms, DISCORD_EPOCH_MS};
use super::webhook::RelayPosts;
use crate::ids::rfc3339_millis;
use crate::payload::{Author, Emoji, HistoryMessage, MessageCreate, ReactionCount, Timestamp};

/// Longest answer read: 100 messages of 2,000 characters with their objects.
pub const MAX_MESSAGES_BODY: usize = 4 * 1024 * 1024;

/// Why an answer could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessagesError {
    /// Larger than [`MAX_MESSAGES_BODY`].
    TooLarge,
    /// Not JSON, or not an array.
    NotAList,
    /// Message `index` lacks `field` or has it of the wrong type.
    Field {
        /// Position in the array.
        index: usize,
        /// The field's name (`author.id` …).
        field: &'static str,
    },
}

impl fmt::Display for MessagesError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MessagesError::TooLarge => f.write_str("Discord's message list is too large"),
            MessagesError::NotAList => f.write_str("Discord's answer is not a message list"),
            MessagesError::Field { index, field } => {
                write!(
                    f,
                    "message {index} of Discord's answer: field `{field}` is missing or unreadable"
                )
            }
        }
    }
}

impl std::error::Error for MessagesError {}

/// Reads the answer; `guild_id` is the channel's guild (REST messages carry none).
/// Webhook messages keep the webhook as author; [`parse_message_list_attributed`]
/// names relay's senders.
pub fn parse_message_list(
    body: &[u8],
    guild_id: Option<&str>,
) -> Result<Vec<HistoryMessage>, MessagesError> {
    parse_list(body, guild_id, None)
}

/// Like [`parse_message_list`], but a message posted through one of relay's
/// webhooks is shown as its live `messageCreate` is (CONTRACT.md §9,
/// docs/webhooks.md): `author` = the session that wrote it and `via: "relay"`
/// when `posts` knows the sender ([`RelayPosts::attribute_read`]); the
/// webhook's own author (its id, the override name, `bot: true`) and
/// `via: "relay"` when the webhook is relay's but the sender is unknowable
/// (posted before a restart).
pub fn parse_message_list_attributed(
    body: &[u8],
    guild_id: Option<&str>,
    posts: &RelayPosts,
) -> Result<Vec<HistoryMessage>, MessagesError> {
    parse_list(body, guild_id, Some(posts))
}

fn parse_list(
    body: &[u8],
    guild_id: Option<&str>,
    posts: Option<&RelayPosts>,
) -> Result<Vec<HistoryMessage>, MessagesError> {
    if body.len() > MAX_MESSAGES_BODY {
        return Err(MessagesError::TooLarge);
    }
    let Ok(Value::Array(list)) = serde_json::from_slice::<Value>(body) else {
        return Err(MessagesError::NotAList);
    };
    list.iter()
        .enumerate()
        .map(|(index, m)| {
            message(m, guild_id, posts).map_err(|field| MessagesError::Field { index, field })
        })
        .collect()
}

fn message(
    v: &Value,
    guild_id: Option<&str>,
    posts: Option<&RelayPosts>,
) -> Result<HistoryMessage, &'static str> {
    let o = v.as_object().ok_or("")?;
    let id = req_id(o, "id", "id")?;
    let channel_id = req_id(o, "channel_id", "channel_id")?;
    let author = o.get("author").and_then(Value::as_object).ok_or("author")?;
    let webhook_id = opt_id(o, "webhook_id", "webhook_id")?;
    let webhook = webhook_id.is_some();
    let mut author = Author {
        id: req_id(author, "id", "author.id")?,
        username: opt_str(author, "username", "author.username")?.unwrap_or_default(),
        avatar: opt_str(author, "avatar", "author.avatar")?,
        bot: webhook
            || match author.get("bot") {
                None | Some(Value::Null) => false,
                Some(Value::Bool(b)) => *b,
                Some(_) => return Err("author.bot"),
            },
    };
    let mut via = None;
    if let (Some(hook), Some(posts)) = (&webhook_id, posts) {
        // Only a hint: an unreadable one is no reason to refuse the page.
        let app = o.get("application_id").and_then(parse_id);
        if let Some(sender) = posts.attribute_read(hook, &id, app.as_deref()) {
            via = Some("relay");
            if let Some(sender) = sender {
                author = sender;
            }
        }
    }
    let content = opt_str(o, "content", "content")?.unwrap_or_default();
    let timestamp = match opt_str(o, "timestamp", "timestamp")? {
        Some(t) => t,
        None => rfc3339_millis(id.parse().map_or(DISCORD_EPOCH_MS, snowflake_time_ms)),
    };
    let edited = opt_str(o, "edited_timestamp", "edited_timestamp")?;
    let reactions = match o.get("reactions") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(list)) => list.iter().map(reaction).collect::<Result<Vec<_>, _>>()?,
        Some(_) => return Err("reactions"),
    };
    // The contract's shape: serialized through serde so fields added to
    // `messageCreate` later (with defaults) need nothing here.
    let message: MessageCreate = serde_json::from_value(serde_json::json!({
        "id": id,
        "channelId": channel_id,
        "guildId": guild_id,
        "author": author,
        "content": content,
        "timestamp": timestamp,
        "via": via,
    }))
    .map_err(|_| "id")?;
    Ok(HistoryMessage {
        message,
        edited_timestamp: edited.map(Timestamp::Text),
        reactions: reactions.into_iter().filter(|r| r.count > 0).collect(),
    })
}

fn reaction(v: &Value) -> Result<ReactionCount, &'static str> {
    let o = v.as_object().ok_or("reactions")?;
    let count = o
        .get("count")
        .and_then(Value::as_u64)
        .ok_or("reactions.count")?;
    let emoji = o
        .get("emoji")
        .and_then(Value::as_object)
        .ok_or("reactions.emoji")?;
    Ok(ReactionCount {
        emoji: Emoji {
            id: opt_id(emoji, "id", "reactions.emoji.id")?,
            name: opt_str(emoji, "name", "reactions.emoji.name")?,
        },
        count: u32::try_from(count).unwrap_or(u32::MAX),
    })
}

fn parse_id(v: &Value) -> Option<String> {
    match v {
        Value::String(s)
            if !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit()) =>
        {
            Some(s.clone())
        }
        Value::Number(n) => n.as_u64().map(|n| n.to_string()),
        _ => None,
    }
}

fn req_id(o: &Map<String, Value>, key: &str, path: &'static str) -> Result<String, &'static str> {
    o.get(key).and_then(parse_id).ok_or(path)
}

fn opt_id(
    o: &Map<String, Value>,
    key: &str,
    path: &'static str,
) -> Result<Option<String>, &'static str> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => parse_id(v).map(Some).ok_or(path),
    }
}

fn opt_str(
    o: &Map<String, Value>,
    key: &str,
    path: &'static str,
) -> Result<Option<String>, &'static str> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(path),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn relay_webhook_posts_read_back_name_the_sender() {
        let t = 1_800_000_000_000u64;
        let flake = |n: u64| (((t - DISCORD_EPOCH_MS) << 22) | n).to_string();
        let (known, unknown, foreign) = (flake(1), flake(2), flake(3));
        let sender = Author {
            id: "42".into(),
            username: "Ada".into(),
            avatar: Some("abc".into()),
            bot: false,
        };
        let mut posts = RelayPosts::default();
        posts.note_application(Some(&json!({"id": "55"})));
        let ticket = posts.expect("9", "hi", "Ada", sender.clone(), t);
        posts.resolve(ticket, &known);
        let hook = |id: &str, hook: &str, app: &str| {
            json!({"id": id, "channel_id": "7", "webhook_id": hook, "application_id": app,
                   "author": {"id": hook, "username": "Ada", "avatar": "zzz", "bot": true}, "content": "hi"})
        };
        // The second comes through another webhook of the bot's application (made
        // before a restart); the third through someone else's.
        let body = json!([
            hook(&known, "9", "55"),
            hook(&unknown, "8", "55"),
            hook(&foreign, "7", "56")
        ])
        .to_string();
        let list = parse_message_list_attributed(body.as_bytes(), Some("5"), &posts).unwrap();
        assert_eq!(list[0].message.author, sender);
        assert_eq!(list[0].message.via.as_deref(), Some("relay"));
        // relay's webhook, sender unknowable: the webhook's author, still via relay.
        assert_eq!(list[1].message.author.id, "8");
        assert!(list[1].message.author.bot);
        assert_eq!(list[1].message.via.as_deref(), Some("relay"));
        // Someone else's webhook: as Discord says.
        assert_eq!(list[2].message.author.id, "7");
        assert_eq!(list[2].message.via, None);
        // Without attribution nothing is claimed.
        let plain = parse_message_list(body.as_bytes(), Some("5")).unwrap();
        assert!(plain
            .iter()
            .all(|m| m.message.via.is_none() && m.message.author.bot));
    }

    #[test]
    fn reads_discords_message_objects() {
        let body = json!([
            {"id":"20","channel_id":"7","author":{"id":"1","username":"ada","avatar":"abc","global_name":"Ada L"},
             "content":"hi","timestamp":"2026-01-01T00:00:00.000000+00:00","edited_timestamp":"2026-01-01T00:01:00.000000+00:00",
             "reactions":[{"count":2,"count_details":{"burst":0,"normal":2},"me":false,"me_burst":false,"emoji":{"id":null,"name":"🔥"},"burst_colors":[]}],
             "type":0,"tts":false},
            {"id":10,"channel_id":"7","author":{"id":"9","username":"hook"},"webhook_id":"9","content":"x","timestamp":"2026-01-01T00:00:00Z"}
        ])
        .to_string();
        let list = parse_message_list(body.as_bytes(), Some("5")).unwrap();
        assert_eq!(list.len(), 2);
        let v = serde_json::to_value(&list[0]).unwrap();
        assert_eq!(v["id"], "20");
        assert_eq!(v["guildId"], "5");
        assert_eq!(
            v["author"],
            json!({"id":"1","username":"ada","avatar":"abc","bot":false})
        );
        assert_eq!(v["editedTimestamp"], "2026-01-01T00:01:00.000000+00:00");
        assert_eq!(
            v["reactions"],
            json!([{"emoji":{"id":null,"name":"🔥"},"count":2}])
        );
        assert_eq!(list[1].message.id, "10");
        assert!(
            list[1].message.author.bot,
            "webhook messages are not typed by a person"
        );
        assert!(list[1].edited_timestamp.is_none());
    }

    #[test]
    fn one_unreadable_message_refuses_the_answer() {
        let body = br#"[{"id":"1","channel_id":"7","author":{"id":"1"},"content":5}]"#;
        assert_eq!(
            parse_message_list(body, None),
            Err(MessagesError::Field {
                index: 0,
                field: "content"
            })
        );
        assert_eq!(
            parse_message_list(b"{}", None),
            Err(MessagesError::NotAList)
        );
        assert_eq!(parse_message_list(b"[", None), Err(MessagesError::NotAList));
        assert_eq!(parse_message_list(b"[]", None), Ok(Vec::new()));
    }
}
