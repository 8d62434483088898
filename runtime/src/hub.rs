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

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crate::live_queue::{self, Consumer, Producer, PushError};
use parking_lot::Mutex;
use relay_protocol::replay::{EventId, ReplayRing, ResetReason};

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

struct Slot {
    tx: Producer<Item>,
    filter: Filter,
}

struct Inner {
    ring: ReplayRing<Item>,
    subs: HashMap<u64, Slot>,
    next_key: u64,
    /// Latest state items by name, sent to every new subscriber.
    state: Vec<(&'static str, Item)>,
    /// Subscribers removed because their writer had already gone, until that
    /// writer reports how it ended (`unsubscribe` or `drop_slow`).
    gone: HashSet<u64>,
}

/// Called when a subscriber is dropped for falling behind (for metrics).
pub type DropHook = Box<dyn Fn() + Send + Sync>;

/// The fan-out hub. Cheap to share (`Arc<Hub>`).
pub struct Hub {
    inner: Mutex<Inner>,
    epoch: u64,
    channel_capacity: usize,
    stats: Arc<HubStats>,
    on_drop: Option<DropHook>,
}

impl Hub {
    /// A hub with the given epoch (fixed for the process), replay capacity and
    /// per-subscriber channel capacity.
    pub fn new(epoch: u64, replay_capacity: usize, channel_capacity: usize) -> Self {
        Hub {
            inner: Mutex::new(Inner {
                ring: ReplayRing::new(epoch, replay_capacity),
                subs: HashMap::new(),
                next_key: 1,
                state: Vec::new(),
                gone: HashSet::new(),
            }),
            epoch,
            channel_capacity: channel_capacity.max(1),
            stats: Arc::new(HubStats::default()),
            on_drop: None,
        }
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
        let mut inner = self.inner.lock();
        let next = EventId::new(self.epoch, inner.ring.latest().map_or(1, |id| id.seq + 1));
        let item: Item = Arc::new(encode(next));
        let id = inner.ring.push(item.clone());
        debug_assert_eq!(id, next, "the ring assigns ids in the same order");
        if let Some((name, state_item)) = state {
            set_state(&mut inner.state, name, state_item);
        }
        self.fan_out(&mut inner, &item);
        self.stats.published.fetch_add(1, Ordering::Relaxed);
        id
    }

    /// Sends an unsequenced state item (no `id:` line) to every subscriber and
    /// keeps it as the current value of `name` for new subscribers.
    pub fn broadcast_state(&self, name: &'static str, item: Item) {
        let mut inner = self.inner.lock();
        set_state(&mut inner.state, name, item.clone());
        self.fan_out(&mut inner, &item);
    }

    /// Registers a subscriber. `last_event_id` is the client's `Last-Event-ID`.
    pub fn subscribe(&self, filter: Filter, last_event_id: Option<&str>) -> Subscription {
        let (tx, live) = live_queue::bounded(self.channel_capacity);
        let mut inner = self.inner.lock();
        let replay = match last_event_id {
            None => Ok(Vec::new()),
            Some(last) => {
                let mut out = Vec::new();
                inner
                    .ring
                    .since_into(last, &mut out)
                    .map(|()| out.into_iter().filter(|d| filter.matches(d)).collect())
            }
        };
        let state = inner.state.iter().map(|(_, item)| item.clone()).collect();
        let key = inner.next_key;
        inner.next_key += 1;
        inner.subs.insert(key, Slot { tx, filter });
        Subscription {
            key,
            replay,
            state,
            live,
        }
    }

    /// Removes a subscriber (idempotent: a subscriber dropped as slow is already gone).
    pub fn unsubscribe(&self, key: u64) {
        let mut inner = self.inner.lock();
        inner.gone.remove(&key);
        inner.subs.remove(&key);
    }

    /// Removes a subscriber its writer found too slow (its unwritten bytes grew
    /// past a limit): counted and reported like one the hub drops for a full
    /// queue. Idempotent, and a no-op for one the hub already dropped.
    pub fn drop_slow(&self, key: u64) {
        let mut inner = self.inner.lock();
        // The writer may have closed its queue a moment before, and a publish
        // in between removed the slot as gone; it still counts as dropped slow.
        let was_gone = inner.gone.remove(&key);
        if inner.subs.remove(&key).is_some() || was_gone {
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

    fn fan_out(&self, inner: &mut Inner, item: &Item) {
        let mut slow = Vec::new();
        let mut gone = Vec::new();
        for (key, slot) in &inner.subs {
            if !slot.filter.matches(item) {
                continue;
            }
            match slot.tx.push(item.clone()) {
                Ok(()) => {}
                Err(PushError::Full) => slow.push(*key),
                // The writer already ended (its client went away) and is about to
                // unsubscribe: not a slow reader, so not counted as one.
                Err(PushError::Closed) => gone.push(*key),
            }
        }
        for key in gone {
            if inner.subs.remove(&key).is_some() {
                // Its writer will still call unsubscribe or drop_slow.
                inner.gone.insert(key);
            }
        }
        for key in slow {
            // Dropping the sender closes the channel: the writer drains what it has,
            // then ends the stream so the browser reconnects with Last-Event-ID.
            if inner.subs.remove(&key).is_some() {
                self.stats.dropped_slow.fetch_add(1, Ordering::Relaxed);
                if let Some(hook) = &self.on_drop {
                    hook();
                }
            }
        }
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
        let replayed: Vec<u64> = sub
            .replay
            .unwrap()
            .iter()
            .map(|d| d.id.unwrap().seq)
            .collect();
        assert_eq!(replayed, vec![2, 3]);
        assert_eq!(sub.live.try_recv().unwrap().id.unwrap().seq, 4);
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
}
