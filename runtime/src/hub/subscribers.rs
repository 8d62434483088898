//! The hub's subscribers, kept in groups by the channel set their scope admits
//! (one group for the unscoped), so a fan-out asks "is this channel in view"
//! once per group and passes over every member of a group that cannot see the
//! event without visiting them. Under `ACCESS=discord` members of one access
//! class share one channel set, so a guild with a handful of roles has a
//! handful of groups however many streams are open, and an event seen by half
//! of the members costs about half the visits (docs/access-performance.md).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::{Delivery, Filter, Item, Scope};
use crate::live_queue::Producer;
use relay_protocol::replay::EventId;

/// One subscriber: its queue, its filters and what it may see.
pub(super) struct Slot {
    pub tx: Producer<Item>,
    pub filter: Filter,
    pub scope: Option<Arc<Scope>>,
    /// Live events up to this id are in the subscriber's replay already (it
    /// came from the shared log, ahead of this edge's ring): skip them.
    pub floor: Option<EventId>,
}

/// What a subscriber with a floor does with a live event.
pub(super) enum FloorStep {
    /// No floor, or an item without an id: as usual.
    Deliver,
    /// Already in its replay.
    Skip,
    /// The event right after the replay: deliver, and the floor is done.
    Reached,
    /// A later event, or another epoch: events between the replay (read
    /// from the shared log) and this edge's first live event are missing.
    /// The stream is ended so the browser resumes with its last id, which
    /// the ring or the log can then answer, or resets honestly.
    Hole,
}

impl Slot {
    pub fn floor_step(&self, item: &Delivery) -> FloorStep {
        match (self.floor, item.id) {
            (Some(floor), Some(id)) if id.epoch != floor.epoch => FloorStep::Hole,
            (Some(floor), Some(id)) if id.seq <= floor.seq => FloorStep::Skip,
            (Some(floor), Some(id)) if id.seq == floor.seq + 1 => FloorStep::Reached,
            (Some(_), Some(_)) => FloorStep::Hole,
            _ => FloorStep::Deliver,
        }
    }

    /// Whether this subscriber receives `item` (filters and scope).
    pub fn wants(&self, item: &Delivery) -> bool {
        self.filter.matches(item) && self.scope.as_ref().is_none_or(|s| s.admits(item))
    }
}

/// The subscribers whose scopes share one channel set.
pub(super) struct Group {
    /// The shared set; `None` for subscribers without a scope. Held here so
    /// its address, the group's key, cannot be reused while the group lives.
    channels: Option<Arc<HashSet<Arc<str>>>>,
    pub slots: HashMap<u64, Slot>,
    /// How many slots have a floor. Those are visited for every event: a
    /// floor moves on events the subscriber does not see, too.
    floored: usize,
}

impl Group {
    /// What [`Scope::admits`] answers for `d` for every member alike, or
    /// `None` when it depends on the member (an `error` event: its actor).
    pub fn sees(&self, d: &Delivery) -> Option<bool> {
        let Some(channels) = &self.channels else {
            return Some(true);
        };
        if &*d.event_type == "error" {
            return None;
        }
        Some(d.channel_id.as_deref().is_none_or(|c| channels.contains(c)))
    }

    /// Whether a fan-out of an event this group [`sees`](Group::sees) as
    /// `sees` must visit the group's slots at all.
    pub fn must_visit(&self, sees: Option<bool>) -> bool {
        sees != Some(false) || self.floored > 0
    }

    /// Records that `n` of this group's floors were reached in a fan-out.
    pub fn floors_reached(&mut self, n: usize) {
        self.floored -= n;
    }
}

/// A group's key: the address of its channel set, 0 for the unscoped.
type GroupKey = usize;

fn group_key(scope: Option<&Arc<Scope>>) -> GroupKey {
    scope.map_or(0, |s| Arc::as_ptr(&s.channels) as usize)
}

/// Every subscriber of the hub, grouped by channel set.
#[derive(Default)]
pub(super) struct Subscribers {
    groups: HashMap<GroupKey, Group>,
    group_of: HashMap<u64, GroupKey>,
}

impl Subscribers {
    pub fn insert(&mut self, key: u64, slot: Slot) {
        let gk = group_key(slot.scope.as_ref());
        let group = self.groups.entry(gk).or_insert_with(|| Group {
            channels: slot.scope.as_ref().map(|s| s.channels.clone()),
            slots: HashMap::new(),
            floored: 0,
        });
        group.floored += usize::from(slot.floor.is_some());
        group.slots.insert(key, slot);
        self.group_of.insert(key, gk);
    }

    pub fn remove(&mut self, key: u64) -> Option<Slot> {
        let gk = self.group_of.remove(&key)?;
        let group = self.groups.get_mut(&gk)?;
        let slot = group.slots.remove(&key)?;
        group.floored -= usize::from(slot.floor.is_some());
        if group.slots.is_empty() {
            self.groups.remove(&gk);
        }
        Some(slot)
    }

    pub fn get(&self, key: u64) -> Option<&Slot> {
        self.groups.get(self.group_of.get(&key)?)?.slots.get(&key)
    }

    pub fn contains(&self, key: u64) -> bool {
        self.group_of.contains_key(&key)
    }

    pub fn len(&self) -> usize {
        self.group_of.len()
    }

    /// Gives `key` a new scope, moving it to the group of its channel set;
    /// the slot, or `None` if it is gone.
    pub fn rescope(&mut self, key: u64, scope: Arc<Scope>) -> Option<&mut Slot> {
        let mut slot = self.remove(key)?;
        slot.scope = Some(scope);
        let gk = group_key(slot.scope.as_ref());
        self.insert(key, slot);
        self.groups.get_mut(&gk)?.slots.get_mut(&key)
    }

    pub fn groups_mut(&mut self) -> impl Iterator<Item = &mut Group> {
        self.groups.values_mut()
    }

    #[cfg(test)]
    pub fn group_count(&self) -> usize {
        self.groups.len()
    }
}
