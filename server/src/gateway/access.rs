//! The gateway's side of `ACCESS=discord` (CONTRACT.md §8): members read on
//! request, and Discord's permissions checked again before Discord is called.
//!
//! [`GuildGate`] wraps the REST executor as the link server's command runner:
//! - `fetchMember` answers from the guild model when it holds the member
//!   (kept by dispatches, or read by REST within [`MEMBER_FRESH`]); otherwise
//!   reads "Get Guild Member", keeps it, and sends `guild.member` to every
//!   edge before its `ack` (same edge queue, so the edge has the member when
//!   the reply arrives). Discord's 404 means "not a member": `member: null`.
//! - A command marked `meta.access: "discord"` is checked with the same
//!   [`check_command`] the edge ran; an edge's copy may be a moment old, so a
//!   refused command answers `error` / `missing_permission` and Discord never
//!   sees it.
//! - `fetchMessages` (history, CONTRACT.md §9) is answered from the
//!   translator's [`History`](relay_protocol::history::History) window when it
//!   provably holds the answer; otherwise by "Get Channel Messages" through
//!   the same REST executor (same route and global limits, a 429 becomes
//!   `rateLimited`), merged into the window when the channel is one the
//!   gateway forwards (only then do its live events keep the window true).
//! - [`MemberRefresh`] re-reads members read by REST once they are older than
//!   [`MEMBER_FRESH`], so a role change reaches edges within 5 minutes even
//!   without the GUILD_MEMBERS intent (edges send a stream an `access` event
//!   only when its view changed).
//! - A checked `sendMessage` goes through relay's webhook under the sender's
//!   name when the bot may manage webhooks there (`webhook.rs`).

use std::sync::{Arc, OnceLock};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use log::{debug, info, warn};
use parking_lot::{Condvar, Mutex};
use relay_protocol::discord::command_access::{check_command, command_guild};
use relay_protocol::discord::messages::parse_message_list_attributed;
use relay_protocol::frame::{GatewayCommand, Reply, TraceMeta, MAX_FRAME_BYTES};
use relay_protocol::history::{HistoryQuery, Lookup};
use relay_protocol::payload::{
    CommandBody, EventBody, FetchMember, FetchMessages, HistoryMessage, Messages,
};
use relay_runtime::clock;
use relay_runtime::discord_gateway::{wrap, SharedTranslator};
use relay_runtime::discord_rest::RestExecutor;
use relay_runtime::link_server::{Broadcaster, CommandExecutor};
use serde_json::Value;

use super::webhook::WebhookPoster;

/// How long a member read by REST counts as current (the contract's "refreshed
/// at most 5 min later"); [`Settings::member_max_age`](super::Settings) in tests.
pub const MEMBER_FRESH: Duration = Duration::from_secs(300);
/// Members read again per refresh pass, to stay far inside REST limits.
const REFRESH_BATCH: usize = 20;

/// Runs link commands: guild checks and member reads here, the rest by REST.
pub struct GuildGate {
    rest: Arc<RestExecutor>,
    translator: SharedTranslator,
    broadcaster: OnceLock<Broadcaster>,
    /// How long a member read by REST counts as current.
    max_age: Duration,
    /// `sendMessage` under the sender's name (docs/webhooks.md).
    webhooks: WebhookPoster,
}

impl GuildGate {
    /// A gate over `rest`, reading models from `translator`.
    pub fn new(rest: Arc<RestExecutor>, translator: SharedTranslator, max_age: Duration) -> Self {
        GuildGate {
            webhooks: WebhookPoster::new(rest.clone(), translator.clone()),
            rest,
            translator,
            broadcaster: OnceLock::new(),
            max_age,
        }
    }

    /// Members read before this (Unix ms) are to be read again.
    fn fresh_since(&self) -> u64 {
        clock::unix_ms().saturating_sub(self.max_age.as_millis() as u64)
    }

    /// How often the refresher looks: a tenth of the age limit, 100 ms to 30 s.
    fn refresh_every(&self) -> Duration {
        (self.max_age / 10).clamp(Duration::from_millis(100), Duration::from_secs(30))
    }

    /// Where `guild.member` events go (set once the link server runs).
    pub fn set_broadcaster(&self, b: Broadcaster) {
        let _ = self.broadcaster.set(b);
    }

    fn broadcast(&self, update: impl FnOnce() -> Option<EventBody>) {
        match self.broadcaster.get() {
            Some(b) => {
                b.broadcast_with(|| update().map(wrap));
            }
            None => {
                update();
            }
        }
    }

    /// Makes sure the model holds `user` in `guild`, current; reads it by REST
    /// if not. `trace` names the command that needed it, for logs.
    fn ensure_member(&self, guild: u64, user: u64, trace: &TraceMeta) -> Reply {
        let fresh_since = self.fresh_since();
        if self
            .translator
            .lock()
            .guilds()
            .has_fresh_member(guild, user, fresh_since)
        {
            return Reply::Ack;
        }
        self.read_member(guild, user, trace)
    }

    fn read_member(&self, guild: u64, user: u64, trace: &TraceMeta) -> Reply {
        let read = GatewayCommand {
            body: CommandBody::FetchMember(FetchMember {
                guild_id: guild.to_string(),
                user_id: user.to_string(),
            }),
            meta: trace.clone(),
        };
        match self.rest.read(&read) {
            (Reply::Ack, Some(body)) => {
                let Ok(member) = serde_json::from_slice::<Value>(&body) else {
                    return bad_member();
                };
                let mut kept = true;
                self.broadcast(|| {
                    let mut t = self.translator.lock();
                    match t
                        .guilds_mut()
                        .upsert_member(guild, &member, clock::unix_ms())
                    {
                        Ok(event) => Some(event),
                        Err(e) => {
                            warn!("discord: guild member {user} unreadable: {e}");
                            kept = false;
                            None
                        }
                    }
                });
                if kept {
                    Reply::Ack
                } else {
                    bad_member()
                }
            }
            (Reply::Ack, None) => bad_member(),
            (Reply::Error { code, .. }, _) if code == "discord_not_found" => {
                // Unknown Member (10007): not in the guild, so no permissions.
                self.broadcast(|| {
                    Some(
                        self.translator
                            .lock()
                            .guilds_mut()
                            .remove_member(guild, user),
                    )
                });
                Reply::Ack
            }
            (other, _) => other,
        }
    }

    fn fetch_member(&self, f: &FetchMember, meta: &TraceMeta) -> Reply {
        let (Ok(guild), Ok(user)) = (f.guild_id.parse::<u64>(), f.user_id.parse::<u64>()) else {
            return Reply::Error {
                code: "invalid_command".into(),
                message: "fetchMember needs snowflake ids".into(),
            };
        };
        if self.translator.lock().guilds().guild(guild).is_none() {
            return Reply::Error {
                code: "unknown_guild".into(),
                message: "the gateway does not forward this guild".into(),
            };
        }
        let fresh_since = self.fresh_since();
        let held = self
            .translator
            .lock()
            .guilds()
            .has_fresh_member(guild, user, fresh_since);
        if held {
            self.broadcast(|| Some(self.translator.lock().guilds().member_event(guild, user)));
            return Reply::Ack;
        }
        self.read_member(guild, user, meta)
    }

    /// A history read: from the window when it holds the answer, else from Discord.
    fn fetch_messages(&self, command: &GatewayCommand, f: &FetchMessages) -> Reply {
        let query = match HistoryQuery::from_command(f) {
            Ok(q) => q,
            Err(why) => {
                return Reply::Error {
                    code: "invalid_command".into(),
                    message: format!("fetchMessages: {why}"),
                }
            }
        };
        // The revision is read with the lookup, under the translator's lock,
        // which every message event is applied under: the answer holds
        // exactly the events up to it. A read from Discord is as of the
        // moment it was asked: an event applied while it is in flight may or
        // may not be in Discord's answer (docs/history.md, "Known limits").
        let (lookup, rev) = {
            let mut t = self.translator.lock();
            let lookup = t.history_mut().lookup(&query);
            (lookup, t.history().rev())
        };
        if let Lookup::Hit(found) = lookup {
            debug!(traceId = command.meta.trace_id.as_str(), requestId = command.request_id(); "history: {} messages of channel {} from the window", found.len(), query.channel);
            return Reply::Messages(Messages {
                messages: fit_frame(found),
                rev: Some(rev),
            });
        }
        match self.rest.read(command) {
            (Reply::Ack, Some(body)) => {
                let mut t = self.translator.lock();
                let guild = command_guild(t.guilds().guilds(), &command.body)
                    .map(|m| m.guild_id().to_string());
                // relay's webhook posts read back show their sender (docs/webhooks.md).
                match parse_message_list_attributed(&body, guild.as_deref(), t.relay_posts()) {
                    Ok(list) => {
                        // Only a forwarded guild's channel gets live events
                        // that keep a window true.
                        if guild.is_some() {
                            t.history_mut().merge(&query, &list);
                        }
                        Reply::Messages(Messages {
                            messages: fit_frame(list),
                            rev: Some(rev),
                        })
                    }
                    Err(e) => {
                        warn!(traceId = command.meta.trace_id.as_str(); "discord: {e}");
                        Reply::Error {
                            code: "discord_error".into(),
                            message: "Discord's message list could not be read".into(),
                        }
                    }
                }
            }
            (Reply::Ack, None) => Reply::Error {
                code: "discord_error".into(),
                message: "Discord's message list could not be read".into(),
            },
            (other, _) => other,
        }
    }

    /// The second check of a command from an `ACCESS=discord` edge.
    fn check(&self, command: &GatewayCommand) -> Reply {
        let actor = command
            .meta
            .actor
            .as_deref()
            .and_then(|a| a.parse::<u64>().ok())
            .unwrap_or(0);
        let guild = {
            let t = self.translator.lock();
            command_guild(t.guilds().guilds(), &command.body).map(|m| m.guild_id())
        };
        if let Some(guild) = guild {
            if let Reply::Error { code, message } = self.ensure_member(guild, actor, &command.meta)
            {
                warn!(traceId = command.meta.trace_id.as_str(); "discord: cannot read member {actor} for a permission check: {code}: {message}");
            }
        }
        let t = self.translator.lock();
        let model = command_guild(t.guilds().guilds(), &command.body);
        let voice_of = |user: u64| {
            let guild = model?.guild_id().to_string();
            t.voice()
                .get(&guild, &user.to_string())?
                .channel_id
                .parse()
                .ok()
        };
        match check_command(model, actor, &command.body, voice_of, clock::unix_ms()) {
            Ok(()) => Reply::Ack,
            Err(missing) => {
                info!(
                    traceId = command.meta.trace_id.as_str(),
                    requestId = command.request_id();
                    "discord: {} refused: {missing}", command.body.type_name()
                );
                Reply::Error {
                    code: "missing_permission".into(),
                    message: missing.to_string(),
                }
            }
        }
    }

    /// Reads again up to [`REFRESH_BATCH`] members older than [`MEMBER_FRESH`].
    fn refresh_stale(&self) {
        let older_than = self.fresh_since();
        let stale = self.translator.lock().guilds().stale_members(older_than);
        for (guild, user) in stale.into_iter().take(REFRESH_BATCH) {
            let meta = TraceMeta {
                trace_id: clock::new_trace_id(),
                sent_at: clock::now_rfc3339(),
                request_id: Some(clock::new_request_id()),
                actor: None,
                access: None,
                extra: Default::default(),
            };
            if let Reply::RateLimited { .. } = self.read_member(guild, user, &meta) {
                // Discord asked us to wait: the rest waits for the next pass.
                break;
            }
        }
    }
}

impl CommandExecutor for GuildGate {
    fn execute(&self, command: &GatewayCommand) -> Reply {
        if let CommandBody::FetchMember(f) = &command.body {
            return self.fetch_member(f, &command.meta);
        }
        if command.meta.access.as_deref() == Some("discord") {
            if let refused @ Reply::Error { .. } = self.check(command) {
                return refused;
            }
            // Through relay's webhook under the sender's name, where the bot
            // has MANAGE_WEBHOOKS; otherwise as the bot, below.
            if let CommandBody::SendMessage(send) = &command.body {
                if let Some(reply) = self.webhooks.send(command, send) {
                    return reply;
                }
            }
        }
        if let CommandBody::FetchMessages(f) = &command.body {
            return self.fetch_messages(command, f);
        }
        self.rest.execute(command)
    }
}

/// Drops the oldest messages until the reply fits a link frame (100 messages
/// of 2,000 control characters each, escaped, would not): the client pages
/// on with `before=` the oldest it got.
fn fit_frame(mut list: Vec<HistoryMessage>) -> Vec<HistoryMessage> {
    // Room for the envelope and meta.
    let budget = MAX_FRAME_BYTES - 4096;
    let mut size: usize = list
        .iter()
        .map(|m| serde_json::to_string(m).map_or(0, |s| s.len() + 1))
        .sum();
    while size > budget {
        let Some(oldest) = list.pop() else { break };
        size -= serde_json::to_string(&oldest).map_or(0, |s| s.len() + 1);
    }
    list
}

fn bad_member() -> Reply {
    Reply::Error {
        code: "discord_error".into(),
        message: "Discord's guild member could not be read".into(),
    }
}

/// Runs [`GuildGate`]'s member refresh (every tenth of the age limit) until dropped.
pub struct MemberRefresh {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl MemberRefresh {
    /// Starts the refresher.
    pub fn spawn(gate: Arc<GuildGate>) -> std::io::Result<MemberRefresh> {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let stopped = stop.clone();
        let every = gate.refresh_every();
        let thread = thread::Builder::new()
            .name("relay-members".into())
            .spawn(move || {
                let (flag, wake) = &*stopped;
                let mut done = flag.lock();
                while !*done {
                    if wake.wait_for(&mut done, every).timed_out() {
                        drop(done);
                        gate.refresh_stale();
                        done = flag.lock();
                    }
                }
            })?;
        Ok(MemberRefresh {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for MemberRefresh {
    fn drop(&mut self) {
        *self.stop.0.lock() = true;
        self.stop.1.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
