//! Posting under the sender's name (CONTRACT.md §9, docs/webhooks.md): Discord's
//! webhook requests and answers, the username rules, and [`RelayPosts`], which
//! tells the dispatch translator who wrote a message relay posted through its
//! webhook.
//!
//! Pure data, like `rest.rs`: the gateway sends the [`RestRequest`]s with its
//! HTTP client and hands the answers back to the parsers here. Every parser reads
//! any bytes and never panics (fuzzed: `fuzz/fuzz_targets/webhook_answer.rs`).
//!
//! Facts (`developers/resources/webhook.mdx`, reference/discord-v11.md "Webhooks"):
//! - Create `POST /channels/{id}/webhooks {"name"}` and list
//!   `GET /channels/{id}/webhooks` need MANAGE_WEBHOOKS. Names and `username`
//!   overrides are 1–80 characters and may not contain `clyde` or `discord`
//!   (any case).
//! - Execute `POST /webhooks/{id}/{token}?wait=true[&thread_id=…]` has no
//!   `nonce`; with `wait=true` Discord answers the created message.
//! - The MESSAGE_CREATE that follows has `webhook_id`, `author.id` = the
//!   webhook's id, `author.username` = the override, `author.bot` = true, and
//!   `application_id` when an application (relay's bot) owns the webhook.

use std::collections::{HashMap, VecDeque};
use std::fmt;

use serde_json::{json, Value};

use super::dispatch::snowflake_time_ms;
use super::ratelimit::{is_id, route_key};
use super::rest::{Method, RestRequest, USER_AGENT};
use crate::payload::Author;

/// The name of the webhook relay makes and reuses in each channel.
pub const WEBHOOK_NAME: &str = "relay";
/// The `username` used when a session has no usable name.
pub const FALLBACK_USERNAME: &str = "relay user";
/// Longest webhook name or `username` override, in characters.
pub const MAX_USERNAME_CHARS: usize = 80;
/// How many recent messages a re-sent command looks through.
pub const RECENT_LIMIT: u32 = 50;
/// How far before a command's `meta.sentAt` a message still counts as its post
/// (clock skew between the edge and Discord).
pub const RESEND_MARGIN_MS: u64 = 5_000;
/// Longest answer body parsed (a page of 50 messages is well below it).
const MAX_ANSWER_BYTES: usize = 1024 * 1024;
/// Longest webhook token accepted (Discord's are 68 characters).
const MAX_TOKEN_LEN: usize = 128;

/// The words Discord refuses in webhook names, and what relay writes instead.
const FORBIDDEN: [(&str, &str); 2] = [("discord", "dscord"), ("clyde", "clyd")];

/// A session's name made acceptable as a webhook `username`: control
/// characters dropped, whitespace trimmed, every `discord` / `clyde` (any
/// case) rewritten until none is left, cut to 80 characters; empty becomes
/// [`FALLBACK_USERNAME`].
pub fn sanitize_username(name: Option<&str>) -> String {
    let mut s: String = name
        .unwrap_or_default()
        .chars()
        .filter(|c| !c.is_control())
        .collect();
    // Rewriting can make a new match ("disdiscordcord"), so repeat until stable;
    // each pass shortens the text, so this ends.
    loop {
        let mut changed = false;
        for (word, with) in FORBIDDEN {
            if let Some(at) = find_ascii_ci(&s, word) {
                s.replace_range(at..at + word.len(), with);
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    let s: String = s.trim().chars().take(MAX_USERNAME_CHARS).collect();
    let s = s.trim();
    if s.is_empty() {
        FALLBACK_USERNAME.to_owned()
    } else {
        s.to_owned()
    }
}

/// Whether Discord accepts `name` as a webhook name or `username` (1–80
/// characters, no `clyde` or `discord` in any case).
pub fn username_allowed(name: &str) -> bool {
    (1..=MAX_USERNAME_CHARS).contains(&name.chars().count())
        && FORBIDDEN
            .iter()
            .all(|(word, _)| find_ascii_ci(name, word).is_none())
}

/// Byte offset of `word` (ASCII, lower case) in `s`, ignoring ASCII case.
fn find_ascii_ci(s: &str, word: &str) -> Option<usize> {
    let (hay, needle) = (s.as_bytes(), word.as_bytes());
    (0..=hay.len().checked_sub(needle.len())?)
        .find(|&i| hay[i..i + needle.len()].eq_ignore_ascii_case(needle))
}

/// Discord's CDN URL of a user's avatar, when the session has one and both
/// parts are path-safe.
pub fn avatar_url(user_id: &str, avatar: Option<&str>) -> Option<String> {
    let avatar = avatar?;
    let safe = !avatar.is_empty()
        && avatar.len() <= 64
        && avatar
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_');
    (safe && is_id(user_id))
        .then(|| format!("https://cdn.discordapp.com/avatars/{user_id}/{avatar}.png"))
}

/// A webhook relay can execute: its id and token (a secret: never logged).
#[derive(Clone, PartialEq, Eq)]
pub struct Webhook {
    /// The webhook's id (also the `author.id` of its messages).
    pub id: String,
    /// The token in the execute URL.
    pub token: String,
}

impl fmt::Debug for Webhook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Webhook")
            .field("id", &self.id)
            .field("token", &"<redacted>")
            .finish()
    }
}

fn request(method: Method, path: String, body: Option<Value>) -> RestRequest {
    let mut headers = vec![("User-Agent".to_owned(), USER_AGENT.to_owned())];
    if body.is_some() {
        headers.push(("Content-Type".to_owned(), "application/json".to_owned()));
    }
    RestRequest {
        route: route_key(method, &path),
        method,
        path,
        headers,
        body: body.map(|b| b.to_string()),
    }
}

/// `GET /channels/{channel}/webhooks`. `None` unless `channel` is an id.
pub fn list_webhooks(channel: &str) -> Option<RestRequest> {
    is_id(channel).then(|| request(Method::Get, format!("/channels/{channel}/webhooks"), None))
}

/// `POST /channels/{channel}/webhooks {"name": "relay"}`.
pub fn create_webhook(channel: &str) -> Option<RestRequest> {
    is_id(channel).then(|| {
        request(
            Method::Post,
            format!("/channels/{channel}/webhooks"),
            Some(json!({ "name": WEBHOOK_NAME })),
        )
    })
}

/// What one webhook post says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookPost<'a> {
    /// The thread to post in (its parent owns the webhook), if any.
    pub thread_id: Option<&'a str>,
    /// The text (already validated: 1–2000 characters).
    pub content: &'a str,
    /// The sanitized `username` ([`sanitize_username`]).
    pub username: &'a str,
    /// The `avatar_url` ([`avatar_url`]).
    pub avatar_url: Option<&'a str>,
}

/// `POST /webhooks/{id}/{token}?wait=true[&thread_id=…]`, mentions off.
/// `None` when an id or the token is not path-safe.
pub fn execute_webhook(hook: &Webhook, post: &WebhookPost<'_>) -> Option<RestRequest> {
    if !is_id(&hook.id) || !token_ok(&hook.token) || !post.thread_id.is_none_or(is_id) {
        return None;
    }
    let mut path = format!("/webhooks/{}/{}?wait=true", hook.id, hook.token);
    if let Some(thread) = post.thread_id {
        path.push_str("&thread_id=");
        path.push_str(thread);
    }
    let mut body = json!({
        "content": post.content,
        "username": post.username,
        // Relayed user text must not ping @everyone, roles or users.
        "allowed_mentions": {"parse": []},
    });
    if let Some(url) = post.avatar_url {
        body["avatar_url"] = Value::String(url.to_owned());
    }
    Some(request(Method::Post, path, Some(body)))
}

/// `GET /channels/{channel}/messages?limit=50`: what a re-sent command reads.
pub fn recent_messages(channel: &str) -> Option<RestRequest> {
    is_id(channel).then(|| {
        request(
            Method::Get,
            format!("/channels/{channel}/messages?limit={RECENT_LIMIT}"),
            None,
        )
    })
}

fn token_ok(token: &str) -> bool {
    (1..=MAX_TOKEN_LEN).contains(&token.len())
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn parse_json(body: &[u8]) -> Option<Value> {
    if body.len() > MAX_ANSWER_BYTES {
        return None;
    }
    serde_json::from_slice(body).ok()
}

fn id_of(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if is_id(s) => Some(s.clone()),
        Value::Number(n) => n.as_u64().map(|n| n.to_string()),
        _ => None,
    }
}

fn webhook_of(v: &Value) -> Option<Webhook> {
    let id = id_of(v.get("id")?)?;
    let token = v.get("token")?.as_str().filter(|t| token_ok(t))?.to_owned();
    Some(Webhook { id, token })
}

/// The webhook in a Create Webhook answer; `None` without a usable id and token.
pub fn parse_webhook(body: &[u8]) -> Option<Webhook> {
    webhook_of(&parse_json(body)?)
}

/// relay's webhook in a Get Channel Webhooks answer: named [`WEBHOOK_NAME`],
/// with a token (incoming webhooks only), made by `bot_user_id` when it says
/// who made it. The oldest such webhook wins, so every gateway picks the same.
pub fn find_relay_webhook(body: &[u8], bot_user_id: Option<&str>) -> Option<Webhook> {
    let list = parse_json(body)?;
    let mut found: Vec<(u64, Webhook)> = list
        .as_array()?
        .iter()
        .filter(|w| w.get("name").and_then(Value::as_str) == Some(WEBHOOK_NAME))
        .filter(|w| {
            let maker = w.get("user").and_then(|u| u.get("id")).and_then(id_of);
            match (bot_user_id, maker) {
                (Some(bot), Some(maker)) => bot == maker,
                _ => true,
            }
        })
        .filter_map(|w| {
            let hook = webhook_of(w)?;
            Some((hook.id.parse().ok()?, hook))
        })
        .collect();
    found.sort_by_key(|(id, _)| *id);
    found.into_iter().next().map(|(_, h)| h)
}

/// The message id in an execute answer (`wait=true`).
pub fn parse_message_id(body: &[u8]) -> Option<String> {
    id_of(parse_json(body)?.get("id")?)
}

/// In a Get Channel Messages answer, the newest message that looks like a
/// post this command already made: from `webhook_id`, with this `content` and
/// `username`, and made (by its snowflake's time) at or after `since_ms`.
pub fn find_earlier_post(
    body: &[u8],
    webhook_id: &str,
    content: &str,
    username: &str,
    since_ms: u64,
) -> Option<String> {
    let list = parse_json(body)?;
    list.as_array()?.iter().find_map(|m| {
        let id = id_of(m.get("id")?)?;
        let from_hook = m.get("webhook_id").and_then(id_of).as_deref() == Some(webhook_id);
        let same_text = m.get("content").and_then(Value::as_str) == Some(content);
        let same_name = m
            .get("author")
            .and_then(|a| a.get("username"))
            .and_then(Value::as_str)
            == Some(username);
        let made = snowflake_time_ms(id.parse().ok()?);
        (from_hook && same_text && same_name && made >= since_ms).then_some(id)
    })
}

/// Whether a Get Channel Messages answer is a list at all (an answer that is
/// not cannot prove anything either way).
pub fn is_message_list(body: &[u8]) -> bool {
    parse_json(body).is_some_and(|v| v.is_array())
}

/// relay's webhook posts on their way: who wrote a MESSAGE_CREATE that came
/// through relay's webhook.
///
/// Why a map and not holding the dispatch back: Discord may deliver the
/// MESSAGE_CREATE before or after it answers the execute call (the simulator
/// always dispatches first). The gateway registers each post *before* it calls
/// Discord ([`RelayPosts::expect`]) with the webhook id, the content and the
/// `username` it sends, and the author to show; it adds the message id from the
/// `wait=true` answer ([`RelayPosts::resolve`]). The translator asks
/// [`RelayPosts::attribute`] on every webhook MESSAGE_CREATE:
/// - a pending post with that message id (the answer came first) → its author;
/// - else the oldest pending post of that webhook with the same content and
///   username and no id yet (the dispatch came first) → its author;
/// - else, a message of a relay webhook (one the gateway found or made, or any
///   webhook owned by the bot's application, so this holds after a restart) →
///   `Some(None)`: "via relay, sender unknown", shown under the override name.
///
/// Nothing is delayed, and nothing waits on a timer. The one wrong case: two
/// people with the same display name posting the same text through the same
/// webhook at the same moment may swap authors while both dispatches come
/// before both answers. Bounded: pending posts expire after [`PENDING_TTL_MS`]
/// (by the dispatches' own snowflake times) and at most [`MAX_PENDING`] are kept.
#[derive(Debug, Clone, Default)]
pub struct RelayPosts {
    /// The bot's application id, from READY.
    app_id: Option<String>,
    /// Webhook ids relay found or made, newest last.
    hooks: VecDeque<String>,
    pending: VecDeque<Pending>,
    /// Messages already attributed, by id: a resumed session may replay a
    /// dispatch, and a history read from Discord shows the webhook as author
    /// (CONTRACT.md §9 wants the sender). The newest [`MAX_ATTRIBUTED`].
    attributed: HashMap<String, Author>,
    /// The ids of `attributed`, oldest first.
    attributed_order: VecDeque<String>,
    next_ticket: u64,
}

#[derive(Debug, Clone)]
struct Pending {
    ticket: u64,
    webhook_id: String,
    content: String,
    username: String,
    author: Author,
    message_id: Option<String>,
    at_ms: u64,
}

/// How long a registered post waits for its dispatch.
pub const PENDING_TTL_MS: u64 = 120_000;
/// Most posts waiting for their dispatch.
pub const MAX_PENDING: usize = 1024;
/// Most relay webhook ids remembered.
const MAX_REMEMBERED: usize = 1024;
/// Most senders of relay posts remembered, by message id (about 100 B each:
/// 1.6 MB), for history reads that reach Discord.
pub const MAX_ATTRIBUTED: usize = 16_384;

/// A registered post, to [`RelayPosts::resolve`] or [`RelayPosts::cancel`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PostTicket(u64);

impl RelayPosts {
    /// Reads the bot's application id from READY's `application` object.
    pub fn note_application(&mut self, application: Option<&Value>) {
        if let Some(id) = application.and_then(|a| a.get("id")).and_then(id_of) {
            self.app_id = Some(id);
        }
    }

    /// `id` is one of relay's webhooks.
    pub fn add_hook(&mut self, id: &str) {
        if !self.hooks.iter().any(|h| h == id) {
            if self.hooks.len() >= MAX_REMEMBERED {
                self.hooks.pop_front();
            }
            self.hooks.push_back(id.to_owned());
        }
    }

    /// Whether `id` is one of relay's webhooks.
    pub fn is_hook(&self, id: &str) -> bool {
        self.hooks.iter().any(|h| h == id)
    }

    /// Registers a post about to be made, before Discord is called.
    pub fn expect(
        &mut self,
        webhook_id: &str,
        content: &str,
        username: &str,
        author: Author,
        now_ms: u64,
    ) -> PostTicket {
        self.prune(now_ms);
        if self.pending.len() >= MAX_PENDING {
            self.pending.pop_front();
        }
        self.add_hook(webhook_id);
        self.next_ticket += 1;
        self.pending.push_back(Pending {
            ticket: self.next_ticket,
            webhook_id: webhook_id.to_owned(),
            content: content.to_owned(),
            username: username.to_owned(),
            author,
            message_id: None,
            at_ms: now_ms,
        });
        PostTicket(self.next_ticket)
    }

    /// Discord answered the post with `message_id`. If its dispatch was
    /// already attributed, nothing is left to do.
    /// From here on the message id alone names the sender (its dispatch, and
    /// history reads of it: [`RelayPosts::attribute_read`]).
    pub fn resolve(&mut self, ticket: PostTicket, message_id: &str) {
        if let Some(i) = self.pending.iter().position(|p| p.ticket == ticket.0) {
            if let Some(p) = self.pending.remove(i) {
                self.remember(message_id, &p.author);
            }
        }
    }

    /// The post failed: no dispatch will come.
    pub fn cancel(&mut self, ticket: PostTicket) {
        self.pending.retain(|p| p.ticket != ticket.0);
    }

    /// Posts waiting for their dispatch.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// Who wrote a MESSAGE_CREATE with `webhook_id`: `None` if the webhook is
    /// not relay's; `Some(Some(author))` for a known post; `Some(None)` for a
    /// relay webhook message whose sender relay does not know.
    pub fn attribute(
        &mut self,
        webhook_id: &str,
        message_id: &str,
        content: &str,
        username: &str,
        application_id: Option<&str>,
    ) -> Option<Option<Author>> {
        if let Some(author) = self.attributed.get(message_id) {
            return Some(Some(author.clone()));
        }
        let now_ms = message_id.parse().map_or(0, snowflake_time_ms);
        self.prune(now_ms);
        let by_id = self
            .pending
            .iter()
            .position(|p| p.message_id.as_deref() == Some(message_id));
        let by_text = || {
            self.pending.iter().position(|p| {
                p.message_id.is_none()
                    && p.webhook_id == webhook_id
                    && p.content == content
                    && p.username == username
            })
        };
        if let Some(i) = by_id.or_else(by_text) {
            let p = self.pending.remove(i)?;
            self.remember(message_id, &p.author);
            return Some(Some(p.author));
        }
        self.is_ours(webhook_id, application_id).then_some(None)
    }

    /// Who wrote a webhook message read back from Discord's REST API (a
    /// history read the window could not answer): the sender when relay
    /// attributed it or has its id from the post's answer; `Some(None)` for a
    /// relay webhook whose sender is unknown (posted before a restart, or
    /// more than [`MAX_ATTRIBUTED`] posts ago); `None` for anyone else's
    /// webhook. Unlike [`RelayPosts::attribute`] it consumes nothing: the
    /// live dispatch may still be on its way.
    pub fn attribute_read(
        &self,
        webhook_id: &str,
        message_id: &str,
        application_id: Option<&str>,
    ) -> Option<Option<Author>> {
        if let Some(author) = self.attributed.get(message_id) {
            return Some(Some(author.clone()));
        }
        if let Some(p) = self
            .pending
            .iter()
            .find(|p| p.message_id.as_deref() == Some(message_id))
        {
            return Some(Some(p.author.clone()));
        }
        self.is_ours(webhook_id, application_id).then_some(None)
    }

    fn is_ours(&self, webhook_id: &str, application_id: Option<&str>) -> bool {
        self.is_hook(webhook_id)
            || (self.app_id.is_some() && application_id == self.app_id.as_deref())
    }

    fn remember(&mut self, message_id: &str, author: &Author) {
        if self
            .attributed
            .insert(message_id.to_owned(), author.clone())
            .is_none()
        {
            self.attributed_order.push_back(message_id.to_owned());
            if self.attributed_order.len() > MAX_ATTRIBUTED {
                if let Some(old) = self.attributed_order.pop_front() {
                    self.attributed.remove(&old);
                }
            }
        }
    }

    fn prune(&mut self, now_ms: u64) {
        self.pending
            .retain(|p| now_ms.saturating_sub(p.at_ms) < PENDING_TTL_MS);
    }
}

/// Fuzz entry: any bytes through every parser of Discord's webhook answers.
#[cfg(feature = "fuzzing")]
pub fn fuzz_answer(bytes: &[u8]) {
    if let Some(hook) = parse_webhook(bytes) {
        assert!(token_ok(&hook.token) && is_id(&hook.id));
        let post = WebhookPost {
            thread_id: None,
            content: "x",
            username: "y",
            avatar_url: None,
        };
        let req = execute_webhook(&hook, &post).expect("a parsed webhook is path-safe");
        // Exact, not `!contains(token)`: a one-character token is often a
        // substring of the id (fuzz find, `{"id":"148048642","token":"1"}`).
        assert_eq!(
            req.route.as_str(),
            format!("POST /webhooks/{}/:token", hook.id)
        );
    }
    if let Some(hook) = find_relay_webhook(bytes, Some("1")) {
        assert!(token_ok(&hook.token));
    }
    if let Some(id) = parse_message_id(bytes) {
        assert!(is_id(&id));
    }
    let _ = find_earlier_post(bytes, "1", "x", "y", 0);
    let _ = is_message_list(bytes);
    let text = String::from_utf8_lossy(bytes);
    let name = sanitize_username(Some(&text));
    assert!(username_allowed(&name), "{name:?}");
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn author(id: &str, name: &str) -> Author {
        Author {
            id: id.into(),
            username: name.into(),
            avatar: None,
            bot: false,
        }
    }

    /// A snowflake made at `ms` (Unix).
    fn flake(ms: u64, n: u64) -> String {
        (((ms - super::super::dispatch::DISCORD_EPOCH_MS) << 22) | n).to_string()
    }

    #[test]
    fn a_token_that_is_part_of_the_id_stays_out_of_the_route_key() {
        let bytes = br#"{"id":"148048642","type":12,"name":"relay","token":"1"}"#;
        let hook = parse_webhook(bytes).expect("a well-formed webhook");
        let post = WebhookPost {
            thread_id: None,
            content: "x",
            username: "y",
            avatar_url: None,
        };
        let req = execute_webhook(&hook, &post).expect("path-safe");
        assert_eq!(req.route.as_str(), "POST /webhooks/148048642/:token");
        #[cfg(feature = "fuzzing")]
        fuzz_answer(bytes);
    }

    #[test]
    fn usernames_follow_discords_rules() {
        assert_eq!(sanitize_username(Some("Ada")), "Ada");
        assert_eq!(sanitize_username(Some("  Ada\r\n ")), "Ada");
        assert_eq!(sanitize_username(Some("Discord Fan")), "dscord Fan");
        assert_eq!(sanitize_username(Some("my CLYDE bot")), "my clyd bot");
        assert_eq!(sanitize_username(Some("disdiscordcord")), "disdscordcord");
        assert_eq!(sanitize_username(None), FALLBACK_USERNAME);
        assert_eq!(sanitize_username(Some(" \u{7} ")), FALLBACK_USERNAME);
        assert_eq!(
            sanitize_username(Some(&"é".repeat(100))).chars().count(),
            80
        );
        assert!(username_allowed("Ada"));
        assert!(!username_allowed("xDiScOrDx"));
        assert!(!username_allowed(""));
        assert!(!username_allowed(&"a".repeat(81)));
    }

    #[test]
    fn avatar_urls_are_discords_cdn_and_path_safe() {
        assert_eq!(
            avatar_url("80351110224678912", Some("8342729096ea3675442027381ff50dfe")).as_deref(),
            Some("https://cdn.discordapp.com/avatars/80351110224678912/8342729096ea3675442027381ff50dfe.png")
        );
        assert_eq!(avatar_url("1", None), None);
        assert_eq!(avatar_url("1", Some("../x")), None);
        assert_eq!(avatar_url("x", Some("abc")), None);
    }

    #[test]
    fn requests_have_discords_paths_and_bodies() {
        assert_eq!(list_webhooks("5").unwrap().path, "/channels/5/webhooks");
        let create = create_webhook("5").unwrap();
        assert_eq!(
            (create.method, create.path.as_str()),
            (Method::Post, "/channels/5/webhooks")
        );
        assert_eq!(create.body.as_deref(), Some(r#"{"name":"relay"}"#));
        assert!(list_webhooks("../5").is_none());
        let hook = Webhook {
            id: "9".into(),
            token: "tok-EN_1".into(),
        };
        let post = WebhookPost {
            thread_id: Some("7"),
            content: "hi",
            username: "Ada",
            avatar_url: Some("https://cdn.discordapp.com/avatars/1/a.png"),
        };
        let r = execute_webhook(&hook, &post).unwrap();
        assert_eq!(r.path, "/webhooks/9/tok-EN_1?wait=true&thread_id=7");
        assert_eq!(r.route.as_str(), "POST /webhooks/9/:token");
        assert!(
            !format!("{hook:?}").contains("tok-EN"),
            "the token is never printed"
        );
        let body: Value = serde_json::from_str(r.body.as_deref().unwrap()).unwrap();
        assert_eq!(
            body,
            json!({"content": "hi", "username": "Ada", "allowed_mentions": {"parse": []},
                   "avatar_url": "https://cdn.discordapp.com/avatars/1/a.png"})
        );
        let bad = Webhook {
            id: "9".into(),
            token: "a/b?c".into(),
        };
        assert!(execute_webhook(&bad, &post).is_none());
        assert_eq!(
            recent_messages("5").unwrap().path,
            "/channels/5/messages?limit=50"
        );
    }

    #[test]
    fn answers_are_read_defensively() {
        let list = json!([
            {"id": "30", "name": "relay", "token": "t3", "user": {"id": "999"}},
            {"id": "20", "name": "relay", "token": "t2", "user": {"id": "1"}},
            {"id": "10", "name": "other", "token": "t1", "user": {"id": "1"}},
            {"id": "5", "name": "relay", "user": {"id": "1"}},
        ])
        .to_string();
        assert_eq!(
            find_relay_webhook(list.as_bytes(), Some("1")).map(|h| h.id),
            Some("20".into()),
            "relay's name, made by the bot, with a token"
        );
        assert_eq!(
            find_relay_webhook(list.as_bytes(), None).map(|h| h.id),
            Some("20".into()),
            "the oldest"
        );
        assert_eq!(find_relay_webhook(b"{}", None), None);
        assert_eq!(
            parse_webhook(br#"{"id": "4", "token": "abc"}"#),
            Some(Webhook {
                id: "4".into(),
                token: "abc".into()
            })
        );
        assert_eq!(parse_webhook(br#"{"id": "4", "token": "a b"}"#), None);
        assert_eq!(parse_message_id(br#"{"id": "77"}"#), Some("77".into()));
        assert_eq!(parse_message_id(b"[]"), None);
        assert_eq!(parse_message_id(&[0xff]), None);
    }

    #[test]
    fn an_earlier_post_is_found_by_hook_text_name_and_time() {
        let t = 1_800_000_000_000;
        let page = json!([
            {"id": flake(t + 10, 1), "webhook_id": "9", "content": "hi", "author": {"username": "Bob"}},
            {"id": flake(t + 5, 1), "webhook_id": "8", "content": "hi", "author": {"username": "Ada"}},
            {"id": flake(t - 10_000, 1), "webhook_id": "9", "content": "hi", "author": {"username": "Ada"}},
            {"id": flake(t + 1, 1), "webhook_id": "9", "content": "hi", "author": {"username": "Ada"}},
        ])
        .to_string();
        let found = |since| find_earlier_post(page.as_bytes(), "9", "hi", "Ada", since);
        assert_eq!(found(t - RESEND_MARGIN_MS), Some(flake(t + 1, 1)));
        assert_eq!(found(t + 2), None, "older than the command");
        assert!(is_message_list(page.as_bytes()));
        assert!(!is_message_list(b"{\"code\": 50001}"));
    }

    #[test]
    fn the_dispatch_first_is_matched_by_text() {
        let mut r = RelayPosts::default();
        let t = 1_800_000_000_000;
        let ticket = r.expect("9", "hi", "Ada", author("1", "Ada"), t);
        let msg = flake(t + 3, 1);
        assert_eq!(
            r.attribute("9", &msg, "hi", "Ada", None),
            Some(Some(author("1", "Ada")))
        );
        r.resolve(ticket, &msg);
        assert_eq!(r.pending_len(), 0);
        assert_eq!(
            r.attribute("9", &msg, "hi", "Ada", None),
            Some(Some(author("1", "Ada"))),
            "a replayed dispatch keeps its author"
        );
    }

    #[test]
    fn the_answer_first_is_matched_by_id() {
        let mut r = RelayPosts::default();
        let t = 1_800_000_000_000;
        let a = r.expect("9", "same", "Sam", author("1", "Sam"), t);
        let b = r.expect("9", "same", "Sam", author("2", "Sam"), t);
        let (ma, mb) = (flake(t + 1, 1), flake(t + 2, 1));
        r.resolve(b, &mb);
        r.resolve(a, &ma);
        assert_eq!(
            r.attribute("9", &mb, "same", "Sam", None),
            Some(Some(author("2", "Sam")))
        );
        assert_eq!(
            r.attribute("9", &ma, "same", "Sam", None),
            Some(Some(author("1", "Sam")))
        );
    }

    #[test]
    fn unknown_senders_and_foreign_webhooks() {
        let mut r = RelayPosts::default();
        let msg = flake(1_800_000_000_000, 1);
        assert_eq!(r.attribute("9", &msg, "x", "y", None), None, "not relay's");
        r.add_hook("9");
        assert_eq!(r.attribute("9", &msg, "x", "y", None), Some(None));
        r.note_application(Some(&json!({"id": "55"})));
        assert_eq!(r.attribute("7", &msg, "x", "y", Some("55")), Some(None));
        assert_eq!(r.attribute("7", &msg, "x", "y", Some("56")), None);
        let t = r.expect("9", "x", "y", author("1", "y"), 1_800_000_000_000);
        r.cancel(t);
        assert_eq!(r.pending_len(), 0);
    }

    #[test]
    fn history_reads_name_the_sender_without_consuming_anything() {
        let mut r = RelayPosts::default();
        let t = 1_800_000_000_000;
        let msg = flake(t + 1, 1);
        assert_eq!(
            r.attribute_read("9", &msg, None),
            None,
            "a stranger's webhook"
        );
        // Posted, not yet answered: the read knows only that the webhook is relay's,
        // and leaves the post for its dispatch.
        let ticket = r.expect("9", "hi", "Ada", author("1", "Ada"), t);
        assert_eq!(r.attribute_read("9", &msg, None), Some(None));
        assert_eq!(r.pending_len(), 1);
        // Answered: the id names the sender, for reads and for the dispatch.
        r.resolve(ticket, &msg);
        assert_eq!(
            r.attribute_read("9", &msg, None),
            Some(Some(author("1", "Ada")))
        );
        assert_eq!(
            r.attribute("9", &msg, "hi", "Ada", None),
            Some(Some(author("1", "Ada")))
        );
        // After a restart: only the bot's application marks the webhook as relay's.
        let mut fresh = RelayPosts::default();
        fresh.note_application(Some(&json!({"id": "55"})));
        assert_eq!(fresh.attribute_read("9", &msg, Some("55")), Some(None));
        assert_eq!(fresh.attribute_read("9", &msg, Some("56")), None);
    }

    #[test]
    fn attributed_senders_are_bounded() {
        let mut r = RelayPosts::default();
        let t = 1_800_000_000_000;
        for i in 0..(MAX_ATTRIBUTED as u64 + 5) {
            let ticket = r.expect("9", "x", "A", author("1", "A"), t);
            r.resolve(ticket, &flake(t + 1, i));
        }
        assert_eq!(r.attributed.len(), MAX_ATTRIBUTED);
        assert_eq!(r.attributed_order.len(), MAX_ATTRIBUTED);
        assert_eq!(
            r.attribute_read("9", &flake(t + 1, 0), None),
            Some(None),
            "the oldest went"
        );
        assert_eq!(
            r.attribute_read("9", &flake(t + 1, MAX_ATTRIBUTED as u64 + 4), None),
            Some(Some(author("1", "A")))
        );
    }

    #[test]
    fn pending_posts_expire_and_are_bounded() {
        let mut r = RelayPosts::default();
        let t = 1_800_000_000_000;
        r.expect("9", "old", "A", author("1", "A"), t);
        let later = flake(t + PENDING_TTL_MS + 1, 1);
        assert_eq!(r.attribute("9", &later, "old", "A", None), Some(None));
        for i in 0..(MAX_PENDING + 10) {
            r.expect("9", &i.to_string(), "A", author("1", "A"), t);
        }
        assert_eq!(r.pending_len(), MAX_PENDING);
    }

    proptest! {
        #[test]
        fn sanitized_names_are_always_allowed(name in any::<String>()) {
            let s = sanitize_username(Some(&name));
            prop_assert!(username_allowed(&s), "{:?}", s);
            prop_assert!(!s.chars().any(char::is_control));
        }

        #[test]
        fn parsers_take_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = parse_webhook(&bytes);
            let _ = find_relay_webhook(&bytes, None);
            let _ = parse_message_id(&bytes);
            let _ = find_earlier_post(&bytes, "1", "x", "y", 0);
            #[cfg(feature = "fuzzing")]
            fuzz_answer(&bytes);
        }
    }
}
