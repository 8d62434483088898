//! Words under the sender's name (CONTRACT.md §9, docs/webhooks.md): with
//! `meta.access: "discord"`, `sendMessage` posts through the channel's `relay`
//! webhook with the session's name and avatar, so people in Discord see who
//! wrote.
//!
//! - **Where**: a channel's own webhook; in a thread, the parent channel's
//!   webhook with `thread_id`. Only when the bot has MANAGE_WEBHOOKS there (by
//!   the guild model); otherwise the caller posts as the bot, as in v1.0 (with
//!   the nonce).
//! - **Which webhook**: the one named `relay` made by the bot, found with
//!   `GET /channels/{id}/webhooks` or made with `POST` once, then kept per
//!   channel. One discovery runs at a time, so two first posts never make two
//!   webhooks. A webhook deleted behind relay's back (`404`) is forgotten and
//!   found or made again, once per command.
//! - **Who**: `username` is the session's name under Discord's rules
//!   ([`sanitize_username`]), `avatar_url` its CDN avatar, mentions off. The post
//!   is registered with the translator before Discord is called and resolved
//!   with the message id of the `wait=true` answer, so the relayed
//!   `messageCreate` names the session whichever comes first ([`RelayPosts`]).
//! - **Exactly once across a restart**: Execute Webhook has no nonce. A command
//!   the edge writes again carries `meta.attempt` ≥ 2; it reaches this code only
//!   when the reply cache has no record of its `requestId` (a restarted
//!   gateway). Then the channel's last 50 messages are read first, and a post
//!   of this webhook with the same content and username, made after the
//!   command's `sentAt` minus [`RESEND_MARGIN_MS`], means it already ran: the
//!   answer is `ack` and nothing is posted. If that read fails, its error is the
//!   answer (posting blind could post twice). Limits in docs/webhooks.md.
//!
//! [`RelayPosts`]: relay_protocol::discord::webhook::RelayPosts

use std::collections::HashMap;
use std::sync::Arc;

use log::{info, warn};
use parking_lot::Mutex;
use relay_protocol::dedupe::DEFAULT_TTL;
use relay_protocol::discord::permissions::Permissions;
use relay_protocol::discord::webhook::{
    avatar_url, create_webhook, execute_webhook, find_earlier_post, find_relay_webhook,
    is_message_list, list_webhooks, parse_message_id, parse_webhook, recent_messages,
    sanitize_username, Webhook, WebhookPost, RESEND_MARGIN_MS,
};
use relay_protocol::frame::{GatewayCommand, Reply, TraceMeta};
use relay_protocol::ids::parse_rfc3339_ms;
use relay_protocol::payload::{Author, SendMessage};
use relay_runtime::clock;
use relay_runtime::discord_gateway::SharedTranslator;
use relay_runtime::discord_rest::RestExecutor;

/// Where a message goes through a webhook.
struct Target {
    /// The channel that owns the webhook (a thread's parent).
    hook_channel: u64,
    /// The thread posted in, if any.
    thread: Option<u64>,
    /// The bot's user id, to pick the webhook the bot made.
    bot_user_id: u64,
}

/// Posts `sendMessage` commands through relay's webhooks.
pub struct WebhookPoster {
    rest: Arc<RestExecutor>,
    translator: SharedTranslator,
    /// relay's webhook per channel id.
    hooks: Mutex<HashMap<u64, Webhook>>,
    /// Held while a webhook is looked up or made.
    discover: Mutex<()>,
}

impl WebhookPoster {
    /// A poster calling Discord through `rest`, reading the guild models and
    /// registering posts in `translator`.
    pub fn new(rest: Arc<RestExecutor>, translator: SharedTranslator) -> Self {
        WebhookPoster {
            rest,
            translator,
            hooks: Mutex::new(HashMap::new()),
            discover: Mutex::new(()),
        }
    }

    /// Posts `send` through the webhook and gives the reply, or `None` when the
    /// bot may not use webhooks there (the caller then posts as the bot).
    pub fn send(&self, command: &GatewayCommand, send: &SendMessage) -> Option<Reply> {
        let channel = send.channel_id.parse::<u64>().ok()?;
        let target = self.target(channel)?;
        let meta = &command.meta;
        let extra = meta.extra.get();
        let username = sanitize_username(extra.actor_name.as_deref());
        let sub = meta.actor.clone().unwrap_or_default();
        let avatar = avatar_url(&sub, extra.actor_avatar.as_deref());
        let author = Author {
            id: sub,
            username: extra.actor_name.clone().unwrap_or_else(|| username.clone()),
            avatar: extra.actor_avatar.clone(),
            bot: false,
        };
        let mut hook = match self.webhook(&target, meta) {
            Ok(h) => h,
            Err(reply) => return Some(reply),
        };
        if extra.attempt.unwrap_or(1) > 1 {
            match self.already_posted(&hook, channel, send, &username, meta) {
                Ok(false) => {}
                Ok(true) => {
                    info!(traceId = meta.trace_id.as_str(), requestId = command.request_id();
                        "discord: sendMessage re-sent after a restart was already posted: not posting again");
                    return Some(Reply::Ack);
                }
                Err(reply) => return Some(reply),
            }
        }
        let thread = target.thread.map(|t| t.to_string());
        for last_try in [false, true] {
            let post = WebhookPost {
                thread_id: thread.as_deref(),
                content: &send.content,
                username: &username,
                avatar_url: avatar.as_deref(),
            };
            let Some(request) = execute_webhook(&hook, &post) else {
                return Some(invalid("the webhook or channel id is not usable"));
            };
            let ticket = self.translator.lock().relay_posts_mut().expect(
                &hook.id,
                &send.content,
                &username,
                author.clone(),
                clock::unix_ms(),
            );
            let (reply, body) = self.rest.request(&request, "webhookExecute", meta);
            match reply {
                Reply::Ack => {
                    let mut t = self.translator.lock();
                    match body.as_deref().and_then(parse_message_id) {
                        Some(id) => t.relay_posts_mut().resolve(ticket, &id),
                        None => {
                            warn!(traceId = meta.trace_id.as_str(); "discord: webhook answer without a message id")
                        }
                    }
                    return Some(Reply::Ack);
                }
                Reply::Error { ref code, .. } if code == "discord_not_found" && !last_try => {
                    // The webhook was deleted (10015): forget it, find or make it again.
                    self.translator.lock().relay_posts_mut().cancel(ticket);
                    self.hooks.lock().remove(&target.hook_channel);
                    warn!(traceId = meta.trace_id.as_str(); "discord: relay's webhook in channel {} is gone; looking again", target.hook_channel);
                    hook = match self.webhook(&target, meta) {
                        Ok(h) => h,
                        Err(reply) => return Some(reply),
                    };
                }
                other => {
                    self.translator.lock().relay_posts_mut().cancel(ticket);
                    return Some(other);
                }
            }
        }
        Some(invalid("unreachable"))
    }

    /// Where `channel`'s messages go through a webhook, if the bot has
    /// MANAGE_WEBHOOKS there (a thread: in its parent).
    fn target(&self, channel: u64) -> Option<Target> {
        let t = self.translator.lock();
        let model = t.guilds().guilds().find(|m| m.channel(channel).is_some())?;
        let ch = model.channel(channel)?;
        let (hook_channel, thread) = if ch.is_thread() {
            (ch.parent_id?, Some(channel))
        } else {
            (channel, None)
        };
        let bot = model.bot_user_id();
        model
            .permissions(bot, hook_channel, clock::unix_ms())
            .contains(Permissions::MANAGE_WEBHOOKS)
            .then_some(Target {
                hook_channel,
                thread,
                bot_user_id: bot,
            })
    }

    /// relay's webhook in the target's channel: kept, listed, or made.
    fn webhook(&self, target: &Target, meta: &TraceMeta) -> Result<Webhook, Reply> {
        let channel = target.hook_channel;
        if let Some(h) = self.hooks.lock().get(&channel) {
            return Ok(h.clone());
        }
        let _one_at_a_time = self.discover.lock();
        if let Some(h) = self.hooks.lock().get(&channel) {
            return Ok(h.clone());
        }
        let list = list_webhooks(&channel.to_string()).ok_or_else(|| invalid("bad channel id"))?;
        let (reply, body) = self.rest.request(&list, "webhookList", meta);
        if reply != Reply::Ack {
            return Err(reply);
        }
        let bot = target.bot_user_id.to_string();
        let found = body
            .as_deref()
            .and_then(|b| find_relay_webhook(b, Some(&bot)));
        let hook = match found {
            Some(h) => h,
            None => {
                let create = create_webhook(&channel.to_string())
                    .ok_or_else(|| invalid("bad channel id"))?;
                let (reply, body) = self.rest.request(&create, "webhookCreate", meta);
                if reply != Reply::Ack {
                    return Err(reply);
                }
                let hook = body
                    .as_deref()
                    .and_then(parse_webhook)
                    .ok_or_else(|| Reply::Error {
                        code: "discord_error".into(),
                        message: "Discord's new webhook could not be read".into(),
                    })?;
                info!(traceId = meta.trace_id.as_str(); "discord: made relay's webhook {} in channel {channel}", hook.id);
                hook
            }
        };
        self.translator.lock().relay_posts_mut().add_hook(&hook.id);
        self.hooks.lock().insert(channel, hook.clone());
        Ok(hook)
    }

    /// Whether a re-sent command's message is already in `channel` (see the
    /// module documentation).
    fn already_posted(
        &self,
        hook: &Webhook,
        channel: u64,
        send: &SendMessage,
        username: &str,
        meta: &TraceMeta,
    ) -> Result<bool, Reply> {
        let now = clock::unix_ms();
        // An unreadable sentAt: as old as a reply the cache would still hold.
        let sent = parse_rfc3339_ms(&meta.sent_at)
            .unwrap_or_else(|| now.saturating_sub(DEFAULT_TTL.as_millis() as u64));
        let since = sent.saturating_sub(RESEND_MARGIN_MS);
        let read =
            recent_messages(&channel.to_string()).ok_or_else(|| invalid("bad channel id"))?;
        let (reply, body) = self.rest.request(&read, "messagesRead", meta);
        if reply != Reply::Ack {
            return Err(reply);
        }
        let body = body.unwrap_or_default();
        if !is_message_list(&body) {
            return Err(Reply::Error {
                code: "discord_error".into(),
                message: "Discord's recent messages could not be read".into(),
            });
        }
        Ok(find_earlier_post(&body, &hook.id, &send.content, username, since).is_some())
    }
}

fn invalid(message: &str) -> Reply {
    Reply::Error {
        code: "invalid_command".into(),
        message: message.into(),
    }
}
