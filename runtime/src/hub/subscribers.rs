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
    /// Slab indices of the members, in no order.
    members: Vec<u32>,
    /// How many members have a floor. Those are visited for every event: a
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
    /// `sees` must visit the group's members at all.
    pub fn must_visit(&self, sees: Option<bool>) -> bool {
        sees != Some(false) || self.floored > 0
    }

    /// Slab indices of the members.
    pub fn members(&self) -> &[u32] {
        &self.members
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

/// One place of the slab: a subscriber, or a free place, and the generation
/// that tells a key for an earlier occupant from the current one.
struct Entry {
    generation: u32,
    slot: Option<Slot>,
    group: GroupKey,
    /// Where this subscriber is in its group's `members`.
    position: u32,
}

/// Every subscriber of the hub, in a slab (so a fan-out reaches each by
/// index, and a rescope moves an index between groups, not the subscriber),
/// grouped by channel set. A key is the slab index and its generation, so a
/// key kept after its subscriber left never reaches a later one.
#[derive(Default)]
pub(super) struct Subscribers {
    entries: Vec<Entry>,
    free: Vec<u32>,
    groups: HashMap<GroupKey, Group>,
    len: usize,
}

/// The slab, for reaching a group's members by index during a fan-out.
pub(super) struct Slab<'a> {
    entries: &'a mut [Entry],
}

impl Slab<'_> {
    /// The key and slot at `index`, if a subscriber is there.
    pub fn member(&mut self, index: u32) -> Option<(u64, &mut Slot)> {
        let entry = self.entries.get_mut(index as usize)?;
        let key = key_of(entry.generation, index);
        Some((key, entry.slot.as_mut()?))
    }
}

impl Subscribers {
    /// Adds a subscriber; returns its key.
    pub fn insert(&mut self, slot: Slot) -> u64 {
        let index = match self.free.pop() {
            Some(i) => i,
            None => {
                self.entries.push(Entry {
                    generation: 0,
                    slot: None,
                    group: 0,
                    position: 0,
                });
                u32::try_from(self.entries.len() - 1).expect("fewer than 2^32 subscribers")
            }
        };
        let gk = group_key(slot.scope.as_ref());
        let floored = slot.floor.is_some();
        let entry = &mut self.entries[index as usize];
        entry.slot = Some(slot);
        self.join(index, gk, floored);
        self.len += 1;
        key_of(self.entries[index as usize].generation, index)
    }

    /// Puts `index` into group `gk`, made if new.
    fn join(&mut self, index: u32, gk: GroupKey, floored: bool) {
        let entry = &mut self.entries[index as usize];
        let group = self.groups.entry(gk).or_insert_with(|| Group {
            channels: entry
                .slot
                .as_ref()
                .and_then(|s| s.scope.as_ref())
                .map(|s| s.channels.clone()),
            members: Vec::new(),
            floored: 0,
        });
        entry.group = gk;
        entry.position = u32::try_from(group.members.len()).expect("fewer than 2^32 members");
        group.members.push(index);
        group.floored += usize::from(floored);
    }

    /// Takes `index` out of its group, removing the group when it empties.
    fn leave(&mut self, index: u32, floored: bool) {
        let (gk, position) = {
            let e = &self.entries[index as usize];
            (e.group, e.position as usize)
        };
        let Some(group) = self.groups.get_mut(&gk) else {
            return;
        };
        group.members.swap_remove(position);
        if let Some(&moved) = group.members.get(position) {
            self.entries[moved as usize].position = position as u32;
        }
        group.floored -= usize::from(floored);
        if group.members.is_empty() {
            self.groups.remove(&gk);
        }
    }

    /// The slab index of `key`, if that subscriber is still here.
    fn index(&self, key: u64) -> Option<u32> {
        let (generation, index) = ((key >> 32) as u32, key as u32);
        let entry = self.entries.get(index as usize)?;
        (entry.generation == generation && entry.slot.is_some()).then_some(index)
    }

    pub fn remove(&mut self, key: u64) -> Option<Slot> {
        let index = self.index(key)?;
        let floored = self.entries[index as usize]
            .slot
            .as_ref()
            .is_some_and(|s| s.floor.is_some());
        self.leave(index, floored);
        let entry = &mut self.entries[index as usize];
        entry.generation = entry.generation.wrapping_add(1);
        self.free.push(index);
        self.len -= 1;
        entry.slot.take()
    }

    pub fn get(&self, key: u64) -> Option<&Slot> {
        self.entries[self.index(key)? as usize].slot.as_ref()
    }

    pub fn contains(&self, key: u64) -> bool {
        self.index(key).is_some()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    /// Gives `key` a new scope, moving it to the group of its channel set;
    /// the slot, or `None` if it is gone. The old scope goes to `retired`, to
    /// be dropped once the hub lock is released.
    pub fn rescope(
        &mut self,
        key: u64,
        scope: Arc<Scope>,
        retired: &mut Vec<Arc<Scope>>,
    ) -> Option<&mut Slot> {
        let index = self.index(key)?;
        let gk = group_key(Some(&scope));
        let entry = &mut self.entries[index as usize];
        let slot = entry.slot.as_mut()?;
        let floored = slot.floor.is_some();
        retired.extend(slot.scope.replace(scope));
        if entry.group != gk {
            self.leave(index, floored);
            self.join(index, gk, floored);
        }
        self.entries[index as usize].slot.as_mut()
    }

    /// The groups, and the slab their members' indices point into, borrowed
    /// apart for one fan-out.
    pub fn groups_and_slab(&mut self) -> (impl Iterator<Item = &mut Group>, Slab<'_>) {
        (
            self.groups.values_mut(),
            Slab {
                entries: &mut self.entries,
            },
        )
    }

    #[cfg(test)]
    pub fn group_count(&self) -> usize {
        self.groups.len()
    }
}

fn key_of(generation: u32, index: u32) -> u64 {
    (u64::from(generation) << 32) | u64::from(index)
}
