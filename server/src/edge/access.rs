//! `ACCESS=discord` on the edge (CONTRACT.md §8): a copy of each guild's
//! permission model, fed by the gateway's `guild.state` / `guild.member`
//! frames, and what follows from it for every open stream.
//!
//! - A stream subscribes with the [`Scope`] of its member: the channels it may
//!   view. The hub checks it per delivery, on replay too.
//! - When the model changes (roles, overwrites, channels, a member, a timeout
//!   running out) every affected stream is rescoped under the hub lock and gets
//!   an `access` event, then its own voice snapshot: the change holds from that
//!   moment. Sessions of the same member share one computed view.
//! - A member the edge does not know yet is asked of the gateway
//!   (`fetchMember`, which reads Discord's "Get Guild Member" or its cache);
//!   the stream or command waits for the answer a short while.
//! - Commands are checked with [`check_command`], the same function the
//!   gateway runs again before it calls Discord.
//!
//! Lock order: this module's lock, then the hub's (subscribe and rescope run
//! under both, so no change is lost between computing a scope and using it).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::io;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use log::{debug, warn};
use parking_lot::{Condvar, Mutex};
use relay_protocol::discord::command_access::{check_command, command_guild, MissingPermission};
use relay_protocol::discord::guild::{Access, AccessKey, GuildModel};
use relay_protocol::discord::permissions::Permissions;
use relay_protocol::frame::{GatewayCommand, TraceMeta};
use relay_protocol::payload::{CommandBody, FetchMember, GuildMember, VoiceSnapshot};
use relay_runtime::clock;
use relay_runtime::hub::{Filter, Hub, Item, Scope, Subscription};
use relay_runtime::link_client::LinkHandle;
use serde_json::{json, Value};

use super::link_sink::unsequenced;

/// How long a stream or command waits for a member the edge asked about.
const MEMBER_WAIT: Duration = Duration::from_secs(2);
/// How soon the same member may be asked for again when no answer came.
const ASK_AGAIN_AFTER: Duration = Duration::from_secs(5);
/// Request ids remembered to route a command's `error` event to its actor.
const ACTORS_KEPT: usize = 8192;

/// What members with equal [`AccessKey`]s may see and do: computed once per
/// model change and shared by all of them (a guild's members share a handful of
/// role sets, so 10,000 streams cost a handful of `access` computations).
#[derive(Debug)]
struct Class {
    /// One per forwarded guild.
    access: Vec<Access>,
    /// The channels in view, shared by every scope of this class.
    channels: Arc<HashSet<Arc<str>>>,
    /// ADMINISTRATOR or MANAGE_GUILD somewhere: sees every `error`.
    all_errors: bool,
    /// The `access` events, encoded once.
    items: Vec<Item>,
}

/// What one member may see and do: its class and its scope. Shared by all of
/// the member's streams.
#[derive(Debug)]
struct View {
    scope: Arc<Scope>,
    class: Arc<Class>,
}

impl View {
    /// Whether a stream that had `self` needs to hear of `other`.
    fn differs_from(&self, other: &View) -> bool {
        !Arc::ptr_eq(&self.class, &other.class)
            && (self.class.access != other.class.access
                || self.class.all_errors != other.class.all_errors)
    }
}

/// Classes made during one recompute (or one subscribe), by their keys.
type Classes = HashMap<Vec<AccessKey>, Arc<Class>>;

#[derive(Default)]
struct Inner {
    guilds: BTreeMap<u64, GuildModel>,
    /// Per guild, the users some channel has a member overwrite for (part of
    /// their [`AccessKey`]); follows `guilds`.
    overwritten: BTreeMap<u64, HashSet<u64>>,
    /// Members asked of the gateway and not answered yet (or answered "not a
    /// member", which the model cannot hold), by (guild, user).
    asked: HashMap<(u64, u64), Instant>,
    /// `fetchMember` request ids in flight → what they ask about.
    asking: HashMap<String, (u64, u64)>,
    /// Asks the gateway could not answer (an unknown guild, Discord down), so
    /// they are not repeated for every stream until [`ASK_AGAIN_AFTER`].
    failed: HashMap<(u64, u64), Instant>,
    not_members: HashMap<(u64, u64), Instant>,
    /// Hub key → the member's user id and the view the stream has now.
    streams: HashMap<u64, (Arc<str>, Arc<View>)>,
    /// Views of members with open streams, dropped when the model changes.
    views: HashMap<Arc<str>, Arc<View>>,
    /// Classes by key, shared by every view made since the guild models last
    /// changed (a class depends only on its key and the models). Without it
    /// each subscribe made its own class, and the first role change after
    /// 10,000 subscribes compared and freed 10,000 of them.
    classes: Classes,
    /// Each member's open streams (hub keys): a member's change rescopes
    /// theirs, and the last one ending drops the view, without a scan of every
    /// stream (10,000 members learned one by one made that quadratic).
    streams_of: HashMap<Arc<str>, Vec<u64>>,
    /// requestId → actor, for `error` events (bounded, oldest first out).
    actors: HashMap<String, Arc<str>>,
    actor_order: VecDeque<String>,
    /// The timeout watch is to end.
    stopped: bool,
}

/// The edge's side of `ACCESS=discord`. One per edge; cheap to share.
pub struct DiscordAccess {
    inner: Mutex<Inner>,
    /// Members learned or asks ended: streams and commands waiting for a member look again.
    changed: Condvar,
    /// Something that may move the next timeout end: only the timeout watch
    /// waits here. Kept apart from `changed` because that fires once per
    /// member learned, and a watch woken 10,000 times while 10,000 streams
    /// open scanned every stream each time under the lock (quadratic; it was
    /// most of the edge's CPU in the access-recompute benchmark).
    timeouts: Condvar,
    hub: Arc<Hub>,
    /// The link, to ask the gateway for members (set once it exists).
    link: OnceLock<LinkHandle>,
}

impl DiscordAccess {
    /// Access over `hub`'s subscribers.
    pub fn new(hub: Arc<Hub>) -> Self {
        DiscordAccess {
            inner: Mutex::new(Inner::default()),
            changed: Condvar::new(),
            timeouts: Condvar::new(),
            hub,
            link: OnceLock::new(),
        }
    }

    /// The link members are asked over.
    pub fn set_link(&self, link: LinkHandle) {
        let _ = self.link.set(link);
    }

    /// The gateway's `ready`: the guilds as they are now. Members are dropped
    /// (they may have changed while the link was down) and asked again for
    /// every open stream.
    pub fn on_ready(&self, guilds: &[Value]) {
        let mut inner = self.inner.lock();
        inner.guilds.clear();
        inner.overwritten.clear();
        for g in guilds {
            match model_from_snapshot(g) {
                Ok(m) => {
                    inner
                        .overwritten
                        .insert(m.guild_id(), m.users_with_overwrites());
                    inner.guilds.insert(m.guild_id(), m);
                }
                Err(e) => warn!("guild model from the gateway's ready is unreadable: {e}"),
            }
        }
        inner.asked.clear();
        inner.asking.clear();
        inner.failed.clear();
        inner.not_members.clear();
        let users: Vec<Arc<str>> = inner.streams.values().map(|(u, _)| u.clone()).collect();
        for user in users {
            self.ask_missing(&mut inner, &user);
        }
        self.recompute(&mut inner, None);
        self.changed.notify_all();
        self.timeouts.notify_all();
    }

    /// `guild.state`: a guild's roles, channels or owner changed. The members
    /// the edge knows are kept.
    pub fn on_guild_state(&self, guild: &Value) {
        let mut fresh = match model_from_snapshot(guild) {
            Ok(m) => m,
            Err(e) => {
                warn!("guild.state from the gateway is unreadable: {e}");
                return;
            }
        };
        let mut inner = self.inner.lock();
        let known = match inner.guilds.remove(&fresh.guild_id()) {
            Some(old) => {
                fresh.keep_members_of(old);
                true
            }
            None => false,
        };
        inner
            .overwritten
            .insert(fresh.guild_id(), fresh.users_with_overwrites());
        inner.guilds.insert(fresh.guild_id(), fresh);
        if !known {
            // A guild new to this edge: its members with open streams are unknown.
            let users: Vec<Arc<str>> = inner.streams.values().map(|(u, _)| u.clone()).collect();
            for user in users {
                self.ask_missing(&mut inner, &user);
            }
        }
        self.recompute(&mut inner, None);
        self.changed.notify_all();
        self.timeouts.notify_all();
    }

    /// `guild.member`: one member learned, changed, or gone.
    pub fn on_member(&self, m: &GuildMember) {
        let (Ok(guild), Ok(user)) = (m.guild_id.parse::<u64>(), m.user_id.parse::<u64>()) else {
            warn!("guild.member with unreadable ids");
            return;
        };
        let mut inner = self.inner.lock();
        inner.asked.remove(&(guild, user));
        let Some(model) = inner.guilds.get_mut(&guild) else {
            return;
        };
        match &m.member {
            Some(member) => {
                if let Err(e) = model.upsert_member_json(member, clock::unix_ms()) {
                    warn!("guild.member from the gateway is unreadable: {e}");
                    self.changed.notify_all();
                    return;
                }
                inner.not_members.remove(&(guild, user));
            }
            None => {
                model.remove_member(user);
                inner.not_members.insert((guild, user), Instant::now());
            }
        }
        // Only a running timeout (the member's or, if this is the bot, the
        // bot's) can move the watch's next wake-up; an ended one is seen when
        // the watch wakes for it.
        let times_out = inner
            .guilds
            .get(&guild)
            .and_then(|g| g.next_change_at(user, clock::unix_ms()));
        // Every class is cut to the bot's own permissions: the bot's member
        // changing changes everybody's access, not only its own streams'.
        let is_bot = inner
            .guilds
            .get(&guild)
            .is_some_and(|g| g.bot_user_id() == user);
        self.recompute(&mut inner, (!is_bot).then_some(m.user_id.as_str()));
        self.changed.notify_all();
        if times_out.is_some() {
            self.timeouts.notify_all();
        }
    }

    /// Subscribes a stream of `user` with what the member may see now. Returns
    /// the subscription and the `access` events to send after its state items.
    pub fn subscribe(
        &self,
        user: &str,
        filter: Filter,
        last_event_id: Option<&str>,
    ) -> (Subscription, Vec<Item>) {
        self.wait_for_member(user);
        let mut inner = self.inner.lock();
        let view = self.view_of(&mut inner, user);
        let sub = self
            .hub
            .subscribe_scoped(filter, Some(view.scope.clone()), last_event_id);
        let items = view.class.items.clone();
        let user = view.scope.user.clone();
        inner
            .streams_of
            .entry(user.clone())
            .or_default()
            .push(sub.key);
        inner.streams.insert(sub.key, (user, view));
        (sub, items)
    }

    /// Forgets a stream that ended.
    pub fn unsubscribe(&self, key: u64) {
        forget_stream(&mut self.inner.lock(), key);
    }

    /// Whether `user` may run `command` now; the member is asked of the gateway
    /// first if the edge does not know it.
    pub fn check(
        &self,
        user: &str,
        command: &CommandBody,
        voice: &VoiceSnapshot,
    ) -> Result<(), MissingPermission> {
        self.wait_for_member(user);
        let actor = user.parse::<u64>().unwrap_or(0);
        let inner = self.inner.lock();
        let model = command_guild(inner.guilds.values(), command);
        check_command(
            model,
            actor,
            command,
            |u| voice_channel_of(voice, u),
            clock::unix_ms(),
        )
    }

    /// A command ended: if it was a `fetchMember`, a stream or command waiting
    /// for that member stops waiting (its `guild.member` came first if it
    /// succeeded); a failed ask is not repeated for a while.
    pub fn on_completed(&self, request_id: &str, answered: bool) {
        let mut inner = self.inner.lock();
        let Some(key) = inner.asking.remove(request_id) else {
            return;
        };
        if inner.asked.remove(&key).is_some() && !answered {
            inner.failed.insert(key, Instant::now());
        }
        drop(inner);
        self.changed.notify_all();
    }

    /// Remembers who sent `request_id`, so its `error` event reaches them.
    pub fn note_actor(&self, request_id: &str, user: &str) {
        let mut inner = self.inner.lock();
        if inner.actor_order.len() >= ACTORS_KEPT {
            if let Some(old) = inner.actor_order.pop_front() {
                inner.actors.remove(&old);
            }
        }
        inner.actors.insert(request_id.to_owned(), Arc::from(user));
        inner.actor_order.push_back(request_id.to_owned());
    }

    /// Who sent `request_id`, if this edge did.
    pub fn actor_of(&self, request_id: &str) -> Option<Arc<str>> {
        self.inner.lock().actors.get(request_id).cloned()
    }

    /// Until [`DiscordAccess::stop`]: recomputes every stream's access when a
    /// member's timeout runs out (no event says so), waking on every change.
    fn watch_timeouts(&self) {
        let mut inner = self.inner.lock();
        while !inner.stopped {
            let now = clock::unix_ms();
            let next = next_change_at(&inner, now);
            // Re-read at least once a minute: a member fetched meanwhile may time out sooner.
            let wait = next
                .map_or(60_000, |t| t.saturating_sub(now))
                .clamp(1, 60_000);
            let _ = self
                .timeouts
                .wait_for(&mut inner, Duration::from_millis(wait));
            if next.is_some_and(|t| clock::unix_ms() >= t) {
                self.recompute(&mut inner, None);
            }
        }
    }

    fn stop(&self) {
        self.inner.lock().stopped = true;
        self.timeouts.notify_all();
    }

    /// Recomputes the views of `only` (or of everybody) and rescopes each
    /// stream whose view changed.
    fn recompute(&self, inner: &mut Inner, only: Option<&str>) {
        let started = Instant::now();
        match only {
            Some(user) => {
                inner.views.remove(user);
            }
            None => inner.views.clear(),
        }
        let keys: Vec<(u64, Arc<str>)> = match only {
            Some(user) => inner
                .streams_of
                .get_key_value(user)
                .map_or_else(Vec::new, |(u, keys)| {
                    keys.iter().map(|k| (*k, u.clone())).collect()
                }),
            None => inner
                .streams
                .iter()
                .map(|(k, (u, _))| (*k, u.clone()))
                .collect(),
        };
        // A member's own change keeps the models, so classes stay valid;
        // anything else (roles, channels, a timeout running out) does not.
        if only.is_none() {
            inner.classes.clear();
        }
        let mut classes = std::mem::take(&mut inner.classes);
        let mut batch = Vec::new();
        // Whether a stream must hear of its new view depends on its old and
        // new class only: asked once per pair. The old views are kept until
        // the end so no class address is reused while it is a memo key.
        let mut differs: HashMap<(*const Class, *const Class), bool> = HashMap::new();
        let mut retired = Vec::with_capacity(keys.len());
        for (key, user) in keys {
            let view = self.view_with(inner, &user, &mut classes);
            let Some(entry) = inner.streams.get_mut(&key) else {
                continue;
            };
            let tell = *differs
                .entry((Arc::as_ptr(&entry.1.class), Arc::as_ptr(&view.class)))
                .or_insert_with(|| entry.1.differs_from(&view));
            if tell {
                batch.push((key, view.scope.clone(), view.class.items.clone()));
            }
            retired.push(std::mem::replace(&mut entry.1, view));
        }
        let made = classes.len();
        inner.classes = classes;
        if batch.is_empty() {
            return;
        }
        let keys: Vec<u64> = batch.iter().map(|(k, _, _)| *k).collect();
        let views_done = started.elapsed();
        let alive = self.hub.rescope_many(batch);
        for (key, alive) in keys.iter().zip(alive) {
            if !alive {
                forget_stream(inner, *key);
            }
        }
        // The loadgen's access scenario reads this line: keep its shape.
        debug!(
            "access recomputed: {} streams rescoped in {} µs ({} classes; views {} µs, then the hub)",
            keys.len(),
            started.elapsed().as_micros(),
            made,
            views_done.as_micros()
        );
    }

    fn view_of(&self, inner: &mut Inner, user: &str) -> Arc<View> {
        let mut classes = std::mem::take(&mut inner.classes);
        let view = self.view_with(inner, &Arc::from(user), &mut classes);
        inner.classes = classes;
        view
    }

    /// `user`'s view, from the cache or made with `classes` (shared between
    /// the users of one recompute).
    fn view_with(&self, inner: &mut Inner, user: &Arc<str>, classes: &mut Classes) -> Arc<View> {
        if let Some(v) = inner.views.get(user) {
            return v.clone();
        }
        let now = clock::unix_ms();
        let id = user.parse::<u64>().unwrap_or(0);
        let none = HashSet::new();
        let key: Vec<AccessKey> = inner
            .guilds
            .values()
            .map(|g| {
                let overwritten = inner.overwritten.get(&g.guild_id()).unwrap_or(&none);
                g.access_key(id, now, overwritten)
            })
            .collect();
        let class = classes
            .entry(key)
            .or_insert_with(|| Arc::new(compute_class(&inner.guilds, id, now)))
            .clone();
        let view = Arc::new(View {
            scope: Arc::new(Scope {
                user: user.clone(),
                channels: class.channels.clone(),
                all_errors: class.all_errors,
            }),
            class,
        });
        inner.views.insert(view.scope.user.clone(), view.clone());
        view
    }

    /// Asks the gateway for each guild's member `user` unless known or asked
    /// lately, then waits (bounded) for the answers.
    fn wait_for_member(&self, user: &str) {
        let deadline = Instant::now() + MEMBER_WAIT;
        let mut inner = self.inner.lock();
        // Just after the link came up the gateway may not have sent its guilds
        // yet (it learns them from Discord after its own READY): wait for them
        // too, bounded, rather than answer "nothing" for a moment.
        let link_up = || self.link.get().is_some_and(LinkHandle::is_connected);
        while inner.guilds.is_empty() && link_up() {
            if self.changed.wait_until(&mut inner, deadline).timed_out() {
                return;
            }
        }
        self.ask_missing(&mut inner, user);
        let Ok(id) = user.parse::<u64>() else {
            return;
        };
        while inner
            .guilds
            .keys()
            .any(|g| inner.asked.contains_key(&(*g, id)))
        {
            if self.changed.wait_until(&mut inner, deadline).timed_out() {
                debug!("no answer about member {user} yet; going on without it");
                return;
            }
        }
    }

    fn ask_missing(&self, inner: &mut Inner, user: &str) {
        let Some(link) = self.link.get() else {
            return;
        };
        // A `sub` that is no snowflake is nobody on Discord: nothing to ask.
        let Ok(id) = user.parse::<u64>() else {
            return;
        };
        let now = Instant::now();
        let guilds: Vec<u64> = inner.guilds.keys().copied().collect();
        for guild in guilds {
            let known = inner.guilds[&guild].member(id).is_some()
                || inner.not_members.contains_key(&(guild, id));
            let lately = |at: &Instant| now.duration_since(*at) < ASK_AGAIN_AFTER;
            let asked_lately = inner.asked.get(&(guild, id)).is_some_and(lately)
                || inner.failed.get(&(guild, id)).is_some_and(lately);
            if known || asked_lately || !link.is_connected() {
                continue;
            }
            inner.asked.insert((guild, id), now);
            let request_id = clock::new_request_id();
            inner.asking.insert(request_id.clone(), (guild, id));
            let command = GatewayCommand {
                body: CommandBody::FetchMember(FetchMember {
                    guild_id: guild.to_string(),
                    user_id: user.to_owned(),
                }),
                meta: TraceMeta {
                    trace_id: clock::new_trace_id(),
                    sent_at: clock::now_rfc3339(),
                    request_id: Some(request_id.clone()),
                    actor: Some(user.to_owned()),
                    access: None,
                    extra: Default::default(),
                },
            };
            if let Err(e) = link.submit(command, false) {
                inner.asked.remove(&(guild, id));
                inner.asking.remove(&request_id);
                warn!("cannot ask the gateway for member {user}: {e:?}");
            }
        }
    }
}

/// Runs [`DiscordAccess`]'s timeout watch on its own thread until dropped.
pub struct TimeoutWatch {
    access: Arc<DiscordAccess>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TimeoutWatch {
    /// Starts the watch.
    pub fn spawn(access: Arc<DiscordAccess>) -> io::Result<TimeoutWatch> {
        let watched = access.clone();
        let thread = std::thread::Builder::new()
            .name("relay-access".into())
            .spawn(move || watched.watch_timeouts())?;
        Ok(TimeoutWatch {
            access,
            thread: Some(thread),
        })
    }
}

impl Drop for TimeoutWatch {
    fn drop(&mut self) {
        self.access.stop();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Drops stream `key`, and its member's view with the member's last stream.
fn forget_stream(inner: &mut Inner, key: u64) {
    let Some((user, _)) = inner.streams.remove(&key) else {
        return;
    };
    if let Some(keys) = inner.streams_of.get_mut(&user) {
        keys.retain(|k| *k != key);
        if keys.is_empty() {
            inner.streams_of.remove(&user);
            inner.views.remove(&user);
        }
    }
}

/// When the earliest timeout of a member with an open stream runs out (Unix
/// ms): access changes then without any event.
fn next_change_at(inner: &Inner, now: u64) -> Option<u64> {
    inner
        .streams_of
        .keys()
        .filter_map(|u| u.parse::<u64>().ok())
        .flat_map(|u| {
            inner
                .guilds
                .values()
                .filter_map(move |g| g.next_change_at(u, now))
        })
        .min()
}

/// Rebuilds a model from the gateway's snapshot (GUILD_CREATE shape, with the
/// bot's user id in `relay_bot_user_id`).
fn model_from_snapshot(g: &Value) -> Result<GuildModel, String> {
    let bot = g
        .get("relay_bot_user_id")
        .and_then(Value::as_str)
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(0);
    GuildModel::from_guild_create(g, bot).map_err(|e| e.to_string())
}

/// What user `id` (0: nobody) may see and do in every guild, with its
/// `access` events (one per guild, no `id:` line) encoded once.
fn compute_class(guilds: &BTreeMap<u64, GuildModel>, id: u64, now_ms: u64) -> Class {
    let mut channels = HashSet::new();
    let mut all_errors = false;
    let mut access = Vec::with_capacity(guilds.len());
    for model in guilds.values() {
        let a = model.access(id, now_ms);
        channels.extend(a.channels().map(|(c, _)| Arc::from(c.to_string())));
        let base = model.base_permissions(id, now_ms);
        all_errors |=
            base.contains(Permissions::ADMINISTRATOR) || base.contains(Permissions::MANAGE_GUILD);
        access.push(a);
    }
    let trace_id = clock::new_trace_id();
    let items = access
        .iter()
        .map(|a| {
            let data = serde_json::to_value(a).unwrap_or_else(|_| json!({}));
            unsequenced("access", &data, &trace_id)
        })
        .collect();
    Class {
        access,
        channels: Arc::new(channels),
        all_errors,
        items,
    }
}

fn voice_channel_of(voice: &VoiceSnapshot, user: u64) -> Option<u64> {
    let user = user.to_string();
    voice
        .channels
        .iter()
        .find(|(_, members)| members.iter().any(|m| m.user_id == user))
        .and_then(|(c, _)| c.parse().ok())
}

/// The hub's [`Personalize`](relay_runtime::hub::Personalize) hook: a scoped
/// stream's voice snapshot lists only the channels it may view.
pub fn personal_voice_snapshot(scope: &Scope, item: &Item) -> Option<Item> {
    if &*item.event_type != "voice.snapshot" {
        return None;
    }
    let mut event: Value = serde_json::from_str(&item.json).ok()?;
    if let Some(Value::Object(channels)) = event.pointer_mut("/data/channels") {
        channels.retain(|id, _| scope.channels.contains(id.as_str()));
    }
    let data = event.get("data").cloned().unwrap_or_else(|| json!({}));
    let trace_id = event
        .pointer("/meta/traceId")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(clock::new_trace_id);
    Some(unsequenced("voice.snapshot", &data, &trace_id))
}
