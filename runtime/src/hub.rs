//! The event hub: fans each encoded event out to every subscriber and keeps the
//! replay ring, so that a subscription and a publish never interleave.
//!
//! Each event is encoded once (`Arc<[u8]>`) and shared by every subscriber. A
//! subscriber owns a bounded channel; a publish never blocks on it: a full channel
//! means the subscriber fell behind, and it is dropped (its writer sees the channel
//! close, ends the stream, and the browser resumes with `Last-Event-ID`). So one slow
//! reader never slows the others (CONTRACT.md §4).
//!
//! Subscribing takes the same lock as publishing, so the replayed backlog, the state
//! items (link status, voice snapshot) and the live events a subscriber sees are one
//! gap-free, duplicate-free sequence.
//!
//! With `ACCESS=discord` a subscriber also has a [`Scope`]: the channels its
//! Discord member may view. Subscribers are grouped by the channel set of their
//! scope, so an event's channel is looked up once per group and a group that
//! cannot see it is passed over whole (`subscribers`); the scope applies to replay too, and is swapped with [`Hub::rescope`] under the same
//! lock as publishing, so "a channel taken away sends nothing more from that
//! moment". State items that depend on the scope (the voice snapshot) are made
//! per subscriber by the hub's [`Personalize`] hook.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crate::live_queue::{self, Consumer, PushError};
use parking_lot::{Mutex, MutexGuard};
use relay_protocol::replay::{EventId, ReplayRing, ResetReason};
use relay_protocol::shared_log::{self, Fetched};

mod subscribers;
use subscribers::{FloorStep, Slot, Subscribers};

/// One encoded SSE block, ready to write, plus what filters need.
#[derive(Debug)]
pub struct Delivery {
    /// The event id (`None` for state items, which carry no `id:` line).
    pub id: Option<EventId>,
    /// The SSE event type.
    pub event_type: Arc<str>,
    /// The channel the event belongs to, for `channels=`.
    pub channel_id: Option<Arc<str>>,
    /// The whole SSE block: `id:`, `event:`, `data:` lines and the blank line.
    pub bytes: Arc<[u8]>,
    /// The `data:` payload alone (the `SseEvent` JSON), for other transports
    /// such as the legacy WebSocket bridge.
    pub json: Arc<str>,
    /// When the event entered relay (link frame read), for delivery latency.
    pub received_at: Instant,
    /// For `error` events: the user whose command caused it, who sees it
    /// whatever the scope (CONTRACT.md §8).
    pub actor: Option<Arc<str>>,
}

/// What a subscriber receives.
pub type Item = Arc<Delivery>;

/// Event types every subscriber receives whatever its filters (CONTRACT.md §4).
pub const ALWAYS_SENT: [&str; 3] = ["gateway.status", "voice.snapshot", "stream.reset"];

/// The `types=` / `channels=` filters of one subscriber.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only these event types, when set.
    pub types: Option<HashSet<String>>,
    /// Only events of these channels, when set.
    pub channels: Option<HashSet<String>>,
}

impl Filter {
    /// Whether `d` passes: state types always do; otherwise both filters must match.
    pub fn matches(&self, d: &Delivery) -> bool {
        if ALWAYS_SENT.contains(&&*d.event_type) {
            return true;
        }
        let type_ok = self
            .types
            .as_ref()
            .is_none_or(|t| t.contains(&*d.event_type));
        let channel_ok = self
            .channels
            .as_ref()
            .is_none_or(|c| d.channel_id.as_deref().is_some_and(|id| c.contains(id)));
        type_ok && channel_ok
    }
}

/// What one subscriber's Discord member may see (`ACCESS=discord`). Shared by
/// every stream of the same member (`Arc`), recomputed when the guild changes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope {
    /// The member's user id (session `sub`).
    pub user: Arc<str>,
    /// Channels (and threads) the member may view; shared by every member
    /// with the same view, so personal state items are made once per set.
    pub channels: Arc<HashSet<Arc<str>>>,
    /// Sees every `error` event (ADMINISTRATOR or MANAGE_GUILD), not only
    /// those its own commands caused.
    pub all_errors: bool,
}

impl Scope {
    /// Whether `d` may reach this member. State items (no channel) and events
    /// of no channel pass; `error` events pass for their actor and for members
    /// who see all errors; every other event needs its channel in view.
    pub fn admits(&self, d: &Delivery) -> bool {
        if &*d.event_type == "error" {
            return self.all_errors || d.actor.as_deref() == Some(&*self.user);
        }
        match d.channel_id.as_deref() {
            Some(channel) => self.channels.contains(channel),
            None => true,
        }
    }
}

/// Makes the scoped copy of a state item (the voice snapshot limited to the
/// channels in view), or `None` when the item is the same for everybody.
/// Runs under the hub lock: keep it to filtering and encoding.
pub type Personalize = Box<dyn Fn(&Scope, &Item) -> Option<Item> + Send + Sync>;

/// Counters the hub keeps for metrics and tests.
#[derive(Debug, Default)]
pub struct HubStats {
    /// Subscribers dropped because their channel was full.
    pub dropped_slow: AtomicU64,
    /// Events published with an id.
    pub published: AtomicU64,
}

/// A new subscription: what to write first, then where live events arrive.
pub struct Subscription {
    /// Handle for [`Hub::unsubscribe`].
    pub key: u64,
    /// Replayed events, or why replay was impossible.
    pub replay: Result<Vec<Item>, ResetReason>,
    /// Current state items (link status, voice snapshot) at subscription time.
    pub state: Vec<Item>,
    /// Live events from now on; closes if the subscriber falls behind.
    pub live: Consumer<Item>,
}

struct Inner {
    ring: ReplayRing<Item>,
    /// Seq of the last event this edge numbered itself (in the hub's epoch),
    /// so numbering resumes after a spell of gateway-assigned ids.
    own_seq: u64,
    subs: Subscribers,
    /// Latest state items by name, sent to every new subscriber.
    state: Vec<(&'static str, Item)>,
    /// Subscribers removed because their writer had already gone, until that
    /// writer reports how it ended (`unsubscribe` or `drop_slow`).
    gone: HashSet<u64>,
}

/// Reads the events after an id from the shared log (Redis), for a client
/// whose `Last-Event-ID` the ring cannot answer; `None` when the log cannot
/// vouch for it, `Some(Err)` for a reset it can. Called without the hub lock
/// (it does IO, bounded).
pub type SharedLog =
    Box<dyn Fn(EventId) -> Option<Result<Fetched<Item>, ResetReason>> + Send + Sync>;

/// Called when a subscriber is dropped for falling behind (for metrics).
pub type DropHook = Box<dyn Fn() + Send + Sync>;

/// The fan-out hub. Cheap to share (`Arc<Hub>`).
pub struct Hub {
    inner: Mutex<Inner>,
    epoch: u64,
    channel_capacity: usize,
    stats: Arc<HubStats>,
    on_drop: Option<DropHook>,
    personalize: Option<Personalize>,
    shared_log: Option<SharedLog>,
}

impl Hub {
    /// A hub with the given epoch (fixed for the process), replay capacity and
    /// per-subscriber channel capacity.
    pub fn new(epoch: u64, replay_capacity: usize, channel_capacity: usize) -> Self {
        Hub {
            inner: Mutex::new(Inner {
                ring: ReplayRing::new(epoch, replay_capacity),
                own_seq: 0,
                subs: Subscribers::default(),
                state: Vec::new(),
                gone: HashSet::new(),
            }),
            epoch,
            channel_capacity: channel_capacity.max(1),
            stats: Arc::new(HubStats::default()),
            on_drop: None,
            personalize: None,
            shared_log: None,
        }
    }

    /// Answers a `Last-Event-ID` the ring cannot from `log` (docs/redis.md).
    pub fn with_shared_log(mut self, log: SharedLog) -> Self {
        self.shared_log = Some(log);
        self
    }

    /// Makes scoped subscribers' copies of state items with `hook`.
    pub fn with_personalize(mut self, hook: Personalize) -> Self {
        self.personalize = Some(hook);
        self
    }

    /// Calls `hook` each time a subscriber is dropped for falling behind, at the
    /// moment it is dropped (its writer may still be blocked on the socket).
    pub fn with_drop_hook(mut self, hook: DropHook) -> Self {
        self.on_drop = Some(hook);
        self
    }

    /// The process epoch in event ids.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Shared counters.
    pub fn stats(&self) -> &Arc<HubStats> {
        &self.stats
    }

    /// Publishes one sequenced event. `encode` gets the event's id and returns the
    /// delivery; it runs under the hub lock so ids are assigned in publish order,
    /// so keep it to framing (JSON encoding belongs before the call).
    /// `state` optionally replaces a named state item in the same step (the voice
    /// snapshot after a voice event), so new subscribers never see both or neither.
    pub fn publish(
        &self,
        encode: impl FnOnce(EventId) -> Delivery,
        state: Option<(&'static str, Item)>,
    ) -> EventId {
        self.publish_as(None, encode, state)
    }

    /// [`Hub::publish`] with the id the gateway assigned (`Some`: ids shared
    /// by every edge, docs/redis.md) or one the hub assigns (`None`).
    pub fn publish_as(
        &self,
        assigned: Option<EventId>,
        encode: impl FnOnce(EventId) -> Delivery,
        state: Option<(&'static str, Item)>,
    ) -> EventId {
        let mut inner = self.inner.lock();
        let next = match assigned {
            Some(id) => id,
            None => {
                if inner.ring.epoch() != self.epoch {
                    // Back to numbering events ourselves after gateway ids.
                    let own = inner.own_seq;
                    inner.ring.restart(self.epoch, own);
                }
                EventId::new(self.epoch, inner.own_seq + 1)
            }
        };
        let item: Item = Arc::new(encode(next));
        let id = inner.ring.push_with_id(next, item.clone());
        if assigned.is_none() {
            inner.own_seq = id.seq;
        }
        if let Some((name, state_item)) = state {
            set_state(&mut inner.state, name, state_item);
        }
        self.fan_out(inner, &item);
        self.stats.published.fetch_add(1, Ordering::Relaxed);
        id
    }

    /// An event of the edge's own (a `malformed_frame` error): sequenced like
    /// any other while the edge numbers events, but sent without an id while
    /// the ring follows the gateway's ids, which the edge must not invent.
    pub fn publish_own(&self, encode: impl FnOnce(Option<EventId>) -> Delivery) {
        let following = self.inner.lock().ring.epoch() != self.epoch;
        if following {
            let item: Item = Arc::new(encode(None));
            self.fan_out(self.inner.lock(), &item);
        } else {
            self.publish(|id| encode(Some(id)), None);
        }
    }

    /// Sends an unsequenced state item (no `id:` line) to every subscriber and
    /// keeps it as the current value of `name` for new subscribers.
    pub fn broadcast_state(&self, name: &'static str, item: Item) {
        let mut inner = self.inner.lock();
        set_state(&mut inner.state, name, item.clone());
        self.fan_out(inner, &item);
    }

    /// Registers a subscriber. `last_event_id` is the client's `Last-Event-ID`.
    pub fn subscribe(&self, filter: Filter, last_event_id: Option<&str>) -> Subscription {
        self.subscribe_scoped(filter, None, last_event_id)
    }

    /// Registers a subscriber that sees only what `scope` admits (replay and
    /// state items included); `None` sees everything, as [`Hub::subscribe`].
    pub fn subscribe_scoped(
        &self,
        filter: Filter,
        scope: Option<Arc<Scope>>,
        last_event_id: Option<&str>,
    ) -> Subscription {
        let (tx, live) = live_queue::bounded(self.channel_capacity);
        let mut slot = Slot {
            tx,
            filter,
            scope,
            floor: None,
        };
        let last = last_event_id.map(|text| text.parse::<EventId>().map_err(|_| ResetReason::Gap));
        // The shared log is read only when the ring cannot answer, and
        // without the lock: a slow Redis never holds up the fan-out.
        let fetched = match (&last, &self.shared_log) {
            (Some(Ok(id)), Some(log)) if !self.ring_answers(*id) => log(*id),
            _ => None,
        };
        let mut inner = self.inner.lock();
        let replay = match last {
            None => Ok(Vec::new()),
            Some(Err(reason)) => Err(reason),
            Some(Ok(last)) => {
                shared_log::join(&inner.ring, last, fetched).map(|(events, floor)| {
                    slot.floor = floor;
                    events.into_iter().filter(|d| slot.wants(d)).collect()
                })
            }
        };
        let state = inner
            .state
            .iter()
            .map(|(_, item)| self.personal(&slot, item).unwrap_or_else(|| item.clone()))
            .collect();
        let key = inner.subs.insert(slot);
        Subscription {
            key,
            replay,
            state,
            live,
        }
    }

    fn ring_answers(&self, last: EventId) -> bool {
        let inner = self.inner.lock();
        let ring = &inner.ring;
        ring.epoch() == last.epoch
            && ring.latest().map_or(0, |l| l.seq) >= last.seq
            && ring
                .first_held()
                .map_or(ring.latest().map_or(0, |l| l.seq), |f| f.seq - 1)
                <= last.seq
    }

    /// Gives subscriber `key` a new scope from this moment on: first `lead`
    /// (the `access` events saying what changed), then its copies of the state
    /// items that depend on the scope. False if the subscriber is gone.
    pub fn rescope(&self, key: u64, scope: Arc<Scope>, lead: Vec<Item>) -> bool {
        self.rescope_many(vec![(key, scope, lead)])[0]
    }

    /// [`Hub::rescope`] for many subscribers under one lock; personal state
    /// items are made once per distinct channel set (members with the same
    /// view share one). Returns, per entry, whether the subscriber is still there.
    pub fn rescope_many(&self, batch: Vec<(u64, Arc<Scope>, Vec<Item>)>) -> Vec<bool> {
        let mut inner = self.inner.lock();
        // Keyed by the set's address; the set itself is kept in the value, so
        // no address can be reused by another set while the map lives.
        type Memo = HashMap<*const HashSet<Arc<str>>, (Arc<HashSet<Arc<str>>>, Vec<Item>)>;
        let mut personal: Memo = HashMap::new();
        let mut slow = Vec::new();
        let mut wakes = Vec::new();
        let mut retired = Vec::with_capacity(batch.len());
        let mut alive = Vec::with_capacity(batch.len());
        for (key, scope, lead) in batch {
            if !inner.subs.contains(key) {
                alive.push(false);
                continue;
            }
            let (_, state) = personal
                .entry(Arc::as_ptr(&scope.channels))
                .or_insert_with(|| {
                    let hook = self.personalize.as_ref();
                    let items = inner
                        .state
                        .iter()
                        .filter_map(|(_, item)| hook.and_then(|f| f(&scope, item)))
                        .collect();
                    (scope.channels.clone(), items)
                });
            let Some(slot) = inner.subs.rescope(key, scope, &mut retired) else {
                alive.push(false);
                continue;
            };
            let mut ok = true;
            for item in lead.into_iter().chain(state.iter().cloned()) {
                match slot.tx.push_deferred(item) {
                    Ok(owed) => wakes.extend(owed),
                    Err(PushError::Full) => {
                        slow.push(key);
                        ok = false;
                        break;
                    }
                    Err(PushError::Closed) => {
                        ok = false;
                        break;
                    }
                }
            }
            alive.push(ok);
        }
        drop(inner);
        drop(retired);
        // Writers are woken once the whole batch is queued, outside the hub
        // lock: waking one per stream as it went preempted this thread
        // thousands of times (docs/access-performance.md).
        live_queue::wake_all(wakes);
        for key in slow {
            self.drop_slow(key);
        }
        alive
    }

    /// The scope subscriber `key` has now, if it is still subscribed.
    pub fn scope_of(&self, key: u64) -> Option<Arc<Scope>> {
        self.inner.lock().subs.get(key)?.scope.clone()
    }

    fn personal(&self, slot: &Slot, item: &Item) -> Option<Item> {
        let scope = slot.scope.as_deref()?;
        self.personalize.as_ref()?(scope, item)
    }

    /// Removes a subscriber (idempotent: a subscriber dropped as slow is already gone).
    pub fn unsubscribe(&self, key: u64) {
        let mut inner = self.inner.lock();
        inner.gone.remove(&key);
        inner.subs.remove(key);
    }

    /// Removes a subscriber its writer found too slow (its unwritten bytes grew
    /// past a limit): counted and reported like one the hub drops for a full
    /// queue. Idempotent, and a no-op for one the hub already dropped.
    pub fn drop_slow(&self, key: u64) {
        let mut inner = self.inner.lock();
        // The writer may have closed its queue a moment before, and a publish
        // in between removed the slot as gone; it still counts as dropped slow.
        let was_gone = inner.gone.remove(&key);
        if inner.subs.remove(key).is_some() || was_gone {
            self.stats.dropped_slow.fetch_add(1, Ordering::Relaxed);
            drop(inner);
            if let Some(hook) = &self.on_drop {
                hook();
            }
        }
    }

    /// Number of registered subscribers.
    pub fn subscriber_count(&self) -> usize {
        self.inner.lock().subs.len()
    }

    /// The latest event id, if any event was published.
    pub fn latest(&self) -> Option<EventId> {
        self.inner.lock().ring.latest()
    }

    /// Queues `item` for every subscriber that wants it, then releases the
    /// hub lock and wakes their writers, one call per writer thread: woken
    /// per push, a writer took its list while the rest were still being
    /// queued and was woken again and again, the more so the less it had
    /// to do (docs/access-performance.md).
    fn fan_out(&self, mut inner: MutexGuard<'_, Inner>, item: &Item) {
        let mut wakes = Vec::new();
        let mut slow = Vec::new();
        let mut gone = Vec::new();
        let mut holes = Vec::new();
        let (groups, mut slab) = inner.subs.groups_and_slab();
        for group in groups {
            // Whether the event's channel is in the group's view, asked once
            // for all its members; a group that cannot see it is passed over.
            let sees = group.sees(item);
            if !group.must_visit(sees) {
                continue;
            }
            // A state item (no id) the scope changes goes out as the group's
            // copy, made once for the whole group.
            let mut copy: Option<Option<Item>> = None;
            let mut reached = 0;
            for &index in group.members() {
                let Some((key, slot)) = slab.member(index) else {
                    continue;
                };
                match slot.floor_step(item) {
                    FloorStep::Deliver => {}
                    FloorStep::Skip => continue,
                    FloorStep::Reached => {
                        slot.floor = None;
                        reached += 1;
                    }
                    FloorStep::Hole => {
                        holes.push(key);
                        continue;
                    }
                }
                let in_view = match sees {
                    Some(yes) => yes,
                    None => slot.scope.as_ref().is_none_or(|s| s.admits(item)),
                };
                if !in_view || !slot.filter.matches(item) {
                    continue;
                }
                let personal = match item.id {
                    None if slot.scope.is_some() => copy
                        .get_or_insert_with(|| self.personal(slot, item))
                        .clone(),
                    _ => None,
                };
                match slot
                    .tx
                    .push_deferred(personal.unwrap_or_else(|| item.clone()))
                {
                    Ok(owed) => wakes.extend(owed),
                    Err(PushError::Full) => slow.push(key),
                    // The writer already ended (its client went away) and is about to
                    // unsubscribe: not a slow reader, so not counted as one.
                    Err(PushError::Closed) => gone.push(key),
                }
            }
            group.floors_reached(reached);
        }
        // Dropping the slot closes its queue: the writer sends what it has
        // and ends the stream. Not slow, so not counted as such.
        for key in holes {
            inner.subs.remove(key);
        }
        for key in gone {
            if inner.subs.remove(key).is_some() {
                // Its writer will still call unsubscribe or drop_slow.
                inner.gone.insert(key);
            }
        }
        for key in slow {
            // Dropping the sender closes the channel: the writer drains what it has,
            // then ends the stream so the browser reconnects with Last-Event-ID.
            if inner.subs.remove(key).is_some() {
                self.stats.dropped_slow.fetch_add(1, Ordering::Relaxed);
                if let Some(hook) = &self.on_drop {
                    hook();
                }
            }
        }
        drop(inner);
        live_queue::wake_all(wakes);
    }
}

fn set_state(state: &mut Vec<(&'static str, Item)>, name: &'static str, item: Item) {
    match state.iter_mut().find(|(n, _)| *n == name) {
        Some(slot) => slot.1 = item,
        None => state.push((name, item)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(id: EventId, kind: &str, channel: Option<&str>) -> Delivery {
        Delivery {
            id: Some(id),
            event_type: kind.into(),
            channel_id: channel.map(Into::into),
            bytes: format!("id: {id}\n\n").into_bytes().into(),
            json: "{}".into(),
            received_at: Instant::now(),
            actor: None,
        }
    }

    #[test]
    fn replay_and_live_are_gap_free() {
        let hub = Hub::new(7, 16, 8);
        for _ in 0..3 {
            hub.publish(|id| delivery(id, "messageCreate", Some("1")), None);
        }
        let sub = hub.subscribe(Filter::default(), Some("7-1"));
        hub.publish(|id| delivery(id, "messageCreate", Some("1")), None);
        let replayed = replayed_seqs(&sub);
        assert_eq!(replayed, vec![2, 3]);
        assert_eq!(sub.live.try_recv().unwrap().id.unwrap().seq, 4);
    }

    /// The seqs of what a subscription replayed (it must have replayed).
    fn replayed_seqs(sub: &Subscription) -> Vec<u64> {
        sub.replay
            .as_ref()
            .expect("a replay")
            .iter()
            .map(|d| d.id.unwrap().seq)
            .collect()
    }

    fn shared_log_reader(through: u64) -> SharedLog {
        Box::new(move |after: EventId| {
            Some(Ok(Fetched {
                after,
                items: (after.seq + 1..=through)
                    .map(|s| Arc::new(delivery(EventId::new(9, s), "x", None)))
                    .collect(),
            }))
        })
    }

    #[test]
    fn a_replay_from_the_log_joins_live_without_doubles() {
        // A fresh edge (nothing of epoch 9 in its ring); the log holds up to 5.
        let hub = Hub::new(1, 16, 16).with_shared_log(shared_log_reader(5));
        let sub = hub.subscribe(Filter::default(), Some("9-2"));
        let replayed = replayed_seqs(&sub);
        assert_eq!(replayed, [3, 4, 5]);
        for seq in 4..=7 {
            hub.publish_as(
                Some(EventId::new(9, seq)),
                |id| delivery(id, "x", None),
                None,
            );
        }
        let live: Vec<u64> = sub.live.try_iter().map(|d| d.id.unwrap().seq).collect();
        assert_eq!(live, [6, 7], "4 and 5 were in the replay");
    }

    #[test]
    fn a_hole_after_a_replay_from_the_log_ends_the_stream() {
        // The log had up to 5 when read; this edge's first live event is 7:
        // 6 is nowhere, so the stream ends and the browser resumes.
        let hub = Hub::new(1, 16, 16).with_shared_log(shared_log_reader(5));
        let sub = hub.subscribe(Filter::default(), Some("9-2"));
        hub.publish_as(Some(EventId::new(9, 7)), |id| delivery(id, "x", None), None);
        assert!(sub.live.try_recv().is_err());
        assert_eq!(hub.subscriber_count(), 0);
        assert_eq!(hub.stats().dropped_slow.load(Ordering::Relaxed), 0);
        // Resuming from 5 now: the ring holds 7 only, the log (still at 5)
        // cannot bridge 6: an honest gap.
        let again = hub.subscribe(Filter::default(), Some("9-5"));
        assert_eq!(again.replay.unwrap_err(), ResetReason::Gap);
    }

    #[test]
    fn slow_subscriber_is_dropped_without_blocking_others() {
        let hub = Hub::new(1, 16, 2);
        let slow = hub.subscribe(Filter::default(), None);
        let fast = hub.subscribe(Filter::default(), None);
        for i in 0..3 {
            hub.publish(|id| delivery(id, "typingStart", None), None);
            assert_eq!(fast.live.try_recv().unwrap().id.unwrap().seq, i + 1);
        }
        assert_eq!(hub.subscriber_count(), 1);
        assert_eq!(hub.stats().dropped_slow.load(Ordering::Relaxed), 1);
        // The slow one still gets what was buffered, then sees the channel close.
        assert_eq!(slow.live.iter().count(), 2);
    }

    #[test]
    fn a_subscriber_whose_writer_ended_is_not_counted_as_slow() {
        let hub = Hub::new(1, 16, 2);
        let ended = hub.subscribe(Filter::default(), None);
        // The stream thread drops its receiver, then unsubscribes; a publish may
        // come in between.
        drop(ended.live);
        hub.publish(|id| delivery(id, "typingStart", None), None);
        assert_eq!(hub.subscriber_count(), 0);
        assert_eq!(hub.stats().dropped_slow.load(Ordering::Relaxed), 0);
        hub.unsubscribe(ended.key);
        // Its count stays right after the writer's own unsubscribe (no double removal).
        assert_eq!(hub.subscriber_count(), 0);
    }

    #[test]
    fn filters_keep_state_items() {
        let hub = Hub::new(1, 16, 8);
        let filter = Filter {
            types: Some(["voice.joined".to_string()].into()),
            channels: Some(["9".to_string()].into()),
        };
        let sub = hub.subscribe(filter, None);
        hub.publish(|id| delivery(id, "voice.joined", Some("8")), None);
        hub.publish(|id| delivery(id, "messageCreate", Some("9")), None);
        hub.publish(|id| delivery(id, "voice.joined", Some("9")), None);
        let status = Arc::new(Delivery {
            id: None,
            event_type: "gateway.status".into(),
            channel_id: None,
            bytes: Arc::from(&b""[..]),
            json: "{}".into(),
            received_at: Instant::now(),
            actor: None,
        });
        hub.broadcast_state("gateway.status", status);
        let got: Vec<String> = sub
            .live
            .try_iter()
            .map(|d| d.event_type.to_string())
            .collect();
        assert_eq!(got, vec!["voice.joined", "gateway.status"]);
        assert_eq!(hub.subscribe(Filter::default(), None).state.len(), 1);
    }

    #[test]
    fn unknown_last_event_id_resets() {
        let hub = Hub::new(5, 2, 8);
        for _ in 0..4 {
            hub.publish(|id| delivery(id, "x", None), None);
        }
        assert_eq!(
            hub.subscribe(Filter::default(), Some("5-1"))
                .replay
                .unwrap_err(),
            ResetReason::Gap
        );
        assert_eq!(
            hub.subscribe(Filter::default(), Some("4-1"))
                .replay
                .unwrap_err(),
            ResetReason::Epoch
        );
    }

    fn scope(user: &str, channels: &[&str], all_errors: bool) -> Arc<Scope> {
        Arc::new(Scope {
            user: user.into(),
            channels: Arc::new(channels.iter().map(|c| Arc::from(*c)).collect()),
            all_errors,
        })
    }

    /// One step of the grouped fan-out property: publish an event, or move a
    /// subscriber to another scope, or drop one.
    #[derive(Debug, Clone)]
    enum Step {
        Publish {
            kind: u8,
            channel: Option<u8>,
            actor: Option<u8>,
        },
        Rescope {
            sub: u8,
            set: u8,
        },
        Unsubscribe {
            sub: u8,
        },
    }

    fn step() -> impl proptest::strategy::Strategy<Value = Step> {
        use proptest::prelude::*;
        prop_oneof![
            6 => (0u8..3, proptest::option::of(0u8..4), proptest::option::of(0u8..6))
                .prop_map(|(kind, channel, actor)| Step::Publish { kind, channel, actor }),
            2 => (0u8..12, 0u8..5).prop_map(|(sub, set)| Step::Rescope { sub, set }),
            1 => (0u8..12).prop_map(|sub| Step::Unsubscribe { sub }),
        ]
    }

    use proptest::{prop_assert, prop_assert_eq};

    proptest::proptest! {
        /// Groups by channel set must deliver exactly what each subscriber's
        /// own filter and scope admit, in order, through rescopes (which move
        /// a subscriber between groups) and unsubscribes (which empty them).
        #[test]
        fn grouped_fan_out_delivers_what_each_subscriber_wants(
            members in proptest::collection::vec((proptest::option::of(0u8..5), proptest::bool::ANY, proptest::bool::ANY), 1..12),
            steps in proptest::collection::vec(step(), 1..40),
        ) {
            let channels = ["a", "b", "c", "d"];
            // Five shared sets, as members of five access classes would hold.
            let sets: Vec<Arc<HashSet<Arc<str>>>> = [&[][..], &["a"], &["a", "b"], &["c"], &["a", "b", "c", "d"]]
                .iter()
                .map(|names| Arc::new(names.iter().map(|c| Arc::from(*c)).collect()))
                .collect();
            let scope_of = |user: usize, set: usize, all_errors: bool| Arc::new(Scope {
                user: format!("u{user}").into(),
                channels: sets[set].clone(),
                all_errors,
            });
            let hub = Hub::new(1, 64, 64);
            let mut subs = Vec::new();
            for (i, (set, only_b, all_errors)) in members.iter().enumerate() {
                let filter = Filter {
                    types: None,
                    channels: only_b.then(|| ["b".to_string()].into()),
                };
                let scope = set.map(|s| scope_of(i, s as usize, *all_errors));
                let sub = hub.subscribe_scoped(filter.clone(), scope.clone(), None);
                subs.push(Some((sub, filter, scope, Vec::new())));
            }
            for step in steps {
                match step {
                    Step::Publish { kind, channel, actor } => {
                        let kind = ["messageCreate", "error", "typingStart"][kind as usize];
                        let d = |id| Delivery {
                            channel_id: channel.map(|c| Arc::from(channels[c as usize])),
                            actor: actor.map(|a| Arc::from(format!("u{a}").as_str())),
                            ..delivery(id, kind, None)
                        };
                        let id = hub.publish(d, None);
                        let probe = d(id);
                        for (_, filter, scope, expected) in subs.iter_mut().flatten() {
                            if filter.matches(&probe) && scope.as_ref().is_none_or(|s| s.admits(&probe)) {
                                expected.push(id.seq);
                            }
                        }
                    }
                    Step::Rescope { sub, set } => {
                        let n = subs.len();
                        if let Some((s, _, scope, _)) = subs[sub as usize % n].as_mut() {
                            let new = scope_of(sub as usize % n, set as usize, false);
                            prop_assert!(hub.rescope(s.key, new.clone(), Vec::new()));
                            *scope = Some(new);
                        }
                    }
                    Step::Unsubscribe { sub } => {
                        let n = subs.len();
                        if let Some((s, ..)) = subs[sub as usize % n].take() {
                            hub.unsubscribe(s.key);
                        }
                    }
                }
            }
            let open = subs.iter().flatten().count();
            prop_assert_eq!(hub.subscriber_count(), open);
            prop_assert!(hub.inner.lock().subs.group_count() <= open);
            for (sub, _, _, expected) in subs.iter().flatten() {
                let got: Vec<u64> = sub.live.try_iter().filter_map(|d| d.id.map(|i| i.seq)).collect();
                prop_assert_eq!(&got, expected);
            }
        }
    }

    #[test]
    fn a_floor_moves_on_events_its_subscriber_does_not_see() {
        // Replayed from the log up to 5; the next event (6) is out of view, so
        // the group passes it over, yet the floor must be reached by it, or 7
        // would look like a hole and end the stream.
        let hub = Hub::new(1, 16, 16).with_shared_log(shared_log_reader(5));
        let sub = hub.subscribe_scoped(
            Filter::default(),
            Some(scope("u1", &["a"], false)),
            Some("9-2"),
        );
        assert_eq!(sub.replay.as_ref().map(Vec::len), Ok(3));
        for (seq, channel) in [(5, "a"), (6, "b"), (7, "a")] {
            hub.publish_as(
                Some(EventId::new(9, seq)),
                |id| Delivery {
                    channel_id: Some(channel.into()),
                    ..delivery(id, "messageCreate", None)
                },
                None,
            );
        }
        let live: Vec<u64> = sub.live.try_iter().map(|d| d.id.unwrap().seq).collect();
        assert_eq!(live, [7]);
        assert_eq!(hub.subscriber_count(), 1);
    }

    #[test]
    fn members_sharing_a_channel_set_share_a_group() {
        let hub = Hub::new(1, 16, 16);
        let set = scope("u1", &["10"], false);
        let other_member = Arc::new(Scope {
            user: "u2".into(),
            ..(*set).clone()
        });
        let a = hub.subscribe_scoped(Filter::default(), Some(set), None);
        let b = hub.subscribe_scoped(Filter::default(), Some(other_member), None);
        let _plain = hub.subscribe(Filter::default(), None);
        assert_eq!(hub.inner.lock().subs.group_count(), 2);
        // Moving one member to a set of its own makes a third group; removing
        // the last member of a group removes the group.
        hub.rescope(b.key, scope("u2", &["10"], false), Vec::new());
        assert_eq!(hub.inner.lock().subs.group_count(), 3);
        hub.unsubscribe(a.key);
        assert_eq!(hub.inner.lock().subs.group_count(), 2);
    }

    fn error_from(id: EventId, actor: Option<&str>) -> Delivery {
        Delivery {
            actor: actor.map(Into::into),
            ..delivery(id, "error", None)
        }
    }

    fn seqs(sub: &Subscription) -> Vec<(String, Option<u64>)> {
        sub.live
            .try_iter()
            .map(|d| (d.event_type.to_string(), d.id.map(|i| i.seq)))
            .collect()
    }

    #[test]
    fn a_scope_admits_its_channels_its_errors_and_channelless_events() {
        let hub = Hub::new(1, 16, 16);
        let member =
            hub.subscribe_scoped(Filter::default(), Some(scope("u1", &["10"], false)), None);
        let admin = hub.subscribe_scoped(
            Filter::default(),
            Some(scope("u2", &["10", "20"], true)),
            None,
        );
        let everyone = hub.subscribe(Filter::default(), None);
        hub.publish(|id| delivery(id, "messageCreate", Some("10")), None); // 1
        hub.publish(|id| delivery(id, "messageCreate", Some("20")), None); // 2
        hub.publish(|id| error_from(id, Some("u1")), None); // 3
        hub.publish(|id| error_from(id, Some("u3")), None); // 4
        hub.publish(|id| error_from(id, None), None); // 5
        hub.publish(|id| delivery(id, "typingStart", None), None); // 6
        let ids = |v: Vec<(String, Option<u64>)>| {
            v.into_iter().filter_map(|(_, s)| s).collect::<Vec<_>>()
        };
        assert_eq!(ids(seqs(&member)), vec![1, 3, 6]);
        assert_eq!(ids(seqs(&admin)), vec![1, 2, 3, 4, 5, 6]);
        assert_eq!(ids(seqs(&everyone)), vec![1, 2, 3, 4, 5, 6]);
    }

    #[test]
    fn replay_follows_the_scope() {
        let hub = Hub::new(1, 16, 16);
        for ch in ["10", "20", "10"] {
            hub.publish(|id| delivery(id, "messageCreate", Some(ch)), None);
        }
        let sub = hub.subscribe_scoped(
            Filter::default(),
            Some(scope("u1", &["10"], false)),
            Some("1-0"),
        );
        let replayed = replayed_seqs(&sub);
        assert_eq!(replayed, vec![1, 3]);
    }

    #[test]
    fn rescope_takes_effect_at_once_and_leads_with_its_event() {
        let hub = Hub::new(1, 16, 16);
        let sub = hub.subscribe_scoped(Filter::default(), Some(scope("u1", &["10"], false)), None);
        hub.publish(|id| delivery(id, "messageCreate", Some("20")), None); // 1: not in view
        let lead = Arc::new(Delivery {
            id: None,
            ..delivery(EventId::new(1, 0), "access", None)
        });
        assert!(hub.rescope(sub.key, scope("u1", &["20"], false), vec![lead]));
        hub.publish(|id| delivery(id, "messageCreate", Some("10")), None); // 2: taken away
        hub.publish(|id| delivery(id, "messageCreate", Some("20")), None); // 3: granted
        assert_eq!(
            seqs(&sub),
            vec![
                ("access".to_string(), None),
                ("messageCreate".to_string(), Some(3))
            ]
        );
        assert_eq!(&*hub.scope_of(sub.key).unwrap().user, "u1");
        assert!(!hub.rescope(
            999,
            scope("u1", &[], false),
            vec![Arc::new(delivery(EventId::new(1, 0), "access", None))]
        ));
    }

    #[test]
    fn scoped_subscribers_get_their_own_copy_of_personal_state() {
        let hub = Hub::new(1, 16, 16).with_personalize(Box::new(|scope: &Scope, item: &Item| {
            (&*item.event_type == "voice.snapshot").then(|| {
                let mut names: Vec<&str> = scope.channels.iter().map(|c| &**c).collect();
                names.sort();
                Arc::new(Delivery {
                    json: names.join(",").into(),
                    ..delivery(EventId::new(1, 0), "voice.snapshot", None)
                })
            })
        }));
        let snapshot = Arc::new(Delivery {
            id: None,
            ..delivery(EventId::new(1, 0), "voice.snapshot", None)
        });
        hub.broadcast_state("voice.snapshot", snapshot.clone());
        let scoped = hub.subscribe_scoped(
            Filter::default(),
            Some(scope("u1", &["20", "10"], false)),
            None,
        );
        let plain = hub.subscribe(Filter::default(), None);
        assert_eq!(&*scoped.state[0].json, "10,20");
        assert_eq!(&*plain.state[0].json, "{}");
        hub.broadcast_state("voice.snapshot", snapshot);
        assert_eq!(&*scoped.live.try_recv().unwrap().json, "10,20");
        assert_eq!(&*plain.live.try_recv().unwrap().json, "{}");
        // A rescope re-sends the personal state after its lead event.
        let lead = Arc::new(delivery(EventId::new(1, 0), "access", None));
        hub.rescope(scoped.key, scope("u1", &["30"], false), vec![lead]);
        let got: Vec<String> = scoped.live.try_iter().map(|d| d.json.to_string()).collect();
        assert_eq!(got, vec!["{}".to_string(), "30".to_string()]);
    }
}
