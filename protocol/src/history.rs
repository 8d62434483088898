//! The gateway's window of recent messages per channel (CONTRACT.md §9), and
//! the queries it answers with Discord's "Get Channel Messages" rules.
//!
//! [`History`] is fed every link event the gateway publishes (`messageCreate`,
//! `messageUpdate`, `messageDelete`, `reactionAdd`, `reactionRemove`) and every
//! answer it reads from Discord's REST API ([`History::merge`]). A query
//! ([`HistoryQuery`]) is answered from memory ([`Lookup::Hit`]) only when the
//! window *provably* holds the exact answer Discord would give; otherwise it is
//! a [`Lookup::Miss`] and the caller reads Discord, then merges what it got.
//!
//! # What "provably" means: coverage
//!
//! Besides the messages, each channel's window keeps *coverage*: id ranges
//! `[lo, hi]` (inclusive, `hi = u64::MAX` meaning "open above") in which it
//! holds every message that exists. A query is answered from memory only if a
//! single covered range contains everything the answer is drawn from:
//!
//! - **Live events** cover from the first message the window saw created: once
//!   the gateway watches a channel, every later message reaches it as a
//!   dispatch, so `[first seen id, ∞)` is covered — but nothing *older* is
//!   known: a window built only from dispatches answers "the latest 50" only
//!   once it has seen 50 messages since it started watching.
//! - **A REST answer** covers the range it was drawn from: the latest `n`
//!   (`[oldest returned, ∞)`, or `[0, ∞)` when fewer than `limit` came back:
//!   the channel holds no more), `before=x` (`[oldest returned, x)`, or
//!   `[0, x)` when short), `after=x` (`(x, newest returned]`, or `(x, ∞)`
//!   when short). An `around=x` answer covers only `[oldest, newest]`
//!   returned: how Discord splits it between older and newer is not
//!   documented, so nothing more is claimed.
//! - **Open ranges hold while the Discord session does.** A resumed session
//!   gets every missed dispatch replayed, so nothing is lost; a new session
//!   (READY) may have missed edits, deletes and reactions, so
//!   [`History::clear`] drops every window.
//! - **Deletes** remove the message and keep its id in a short list of
//!   tombstones, so a REST answer read just before the delete cannot bring it
//!   back. Edits apply to the held message; a REST answer never overwrites a
//!   message the window already holds (live events keep it current).
//! - **Bounds.** At most [`HistoryLimits::per_channel`] messages per channel
//!   (the newest are kept; coverage is cut at the oldest kept) and
//!   [`HistoryLimits::channels`] channels (the least recently used window is
//!   dropped whole).
//!
//! # Discord's parameter rules ([`HistoryQuery`])
//!
//! `limit` 1–100 (default 50); at most one of `before`, `after`, `around`;
//! answers are newest first. `before=x`: the `limit` newest messages older than
//! `x`. `after=x`: the `limit` oldest messages newer than `x` (the page right
//! after `x`), still listed newest first. `around=x`: `limit / 2` (rounded down)
//! messages newer than `x`, and `limit - limit / 2` at or older than `x` (so `x`
//! itself when it exists) — the rule the simulated Discord follows as well.

use std::collections::{BTreeMap, HashMap, VecDeque};

use crate::payload::{
    Emoji, EventBody, FetchMessages, HistoryMessage, MessageCreate, ReactionCount,
};

/// The most messages a query may ask for (Discord's maximum).
pub const MAX_LIMIT: u32 = 100;
/// `limit` when none is given (Discord's default).
pub const DEFAULT_LIMIT: u32 = 50;
/// Deleted ids remembered per channel, so a REST answer in flight cannot
/// bring a message back.
const TOMBSTONES: usize = 256;

/// How much the window holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryLimits {
    /// Newest messages kept per channel (default 200: two full pages).
    pub per_channel: usize,
    /// Channels with a window (default 256); the least recently used goes first.
    pub channels: usize,
}

impl Default for HistoryLimits {
    fn default() -> Self {
        HistoryLimits {
            per_channel: 200,
            channels: 256,
        }
    }
}

/// Where a query starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Anchor {
    /// No anchor: the newest messages.
    Latest,
    /// Older than this id.
    Before(u64),
    /// Newer than this id.
    After(u64),
    /// Around this id.
    Around(u64),
}

/// A validated history query.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HistoryQuery {
    /// The channel.
    pub channel: u64,
    /// 1–[`MAX_LIMIT`].
    pub limit: u32,
    /// Where it starts.
    pub anchor: Anchor,
}

impl HistoryQuery {
    /// Reads a `fetchMessages` command: ids must be snowflakes that fit a
    /// `u64`, `limit` 1–100, at most one anchor. The error is fixed text.
    pub fn from_command(c: &FetchMessages) -> Result<HistoryQuery, &'static str> {
        let id = |s: &str| -> Result<u64, &'static str> {
            if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
                return Err("ids must be 1-20 digits");
            }
            s.parse::<u64>().map_err(|_| "ids must fit 64 bits")
        };
        let channel = id(&c.channel_id)?;
        if !(1..=MAX_LIMIT).contains(&c.limit) {
            return Err("limit must be 1-100");
        }
        let anchor = match (&c.before, &c.after, &c.around) {
            (None, None, None) => Anchor::Latest,
            (Some(b), None, None) => Anchor::Before(id(b)?),
            (None, Some(a), None) => Anchor::After(id(a)?),
            (None, None, Some(a)) => Anchor::Around(id(a)?),
            _ => return Err("before, after and around are mutually exclusive"),
        };
        Ok(HistoryQuery {
            channel,
            limit: c.limit,
            anchor,
        })
    }

    /// The `fetchMessages` command data for this query.
    pub fn to_command(&self) -> FetchMessages {
        let (mut before, mut after, mut around) = (None, None, None);
        match self.anchor {
            Anchor::Latest => {}
            Anchor::Before(x) => before = Some(x.to_string()),
            Anchor::After(x) => after = Some(x.to_string()),
            Anchor::Around(x) => around = Some(x.to_string()),
        }
        FetchMessages {
            channel_id: self.channel.to_string(),
            limit: self.limit,
            before,
            after,
            around,
        }
    }

    /// The answer Discord gives over `ids` (every message id of the channel,
    /// any order): the ids of the answer, newest first. The reference the
    /// window is tested against, and the rule of the simulated Discord.
    pub fn select(&self, ids: &[u64]) -> Vec<u64> {
        let mut sorted: Vec<u64> = ids.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        let limit = self.limit as usize;
        let newest_first = |v: Vec<u64>| {
            let mut v = v;
            v.sort_unstable_by(|a, b| b.cmp(a));
            v
        };
        match self.anchor {
            Anchor::Latest => sorted.iter().rev().take(limit).copied().collect(),
            Anchor::Before(x) => sorted
                .iter()
                .rev()
                .filter(|i| **i < x)
                .take(limit)
                .copied()
                .collect(),
            Anchor::After(x) => newest_first(
                sorted
                    .iter()
                    .filter(|i| **i > x)
                    .take(limit)
                    .copied()
                    .collect(),
            ),
            Anchor::Around(x) => {
                let newer = limit / 2;
                let older = limit - newer;
                let mut out: Vec<u64> = sorted
                    .iter()
                    .filter(|i| **i > x)
                    .take(newer)
                    .copied()
                    .collect();
                out.extend(sorted.iter().rev().filter(|i| **i <= x).take(older));
                newest_first(out)
            }
        }
    }
}

/// What the window can say about a query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// The exact answer, newest first.
    Hit(Vec<HistoryMessage>),
    /// Not provably held: read Discord, then [`History::merge`].
    Miss,
}

/// One channel's window.
#[derive(Debug, Clone, Default)]
struct Window {
    messages: BTreeMap<u64, HistoryMessage>,
    /// Sorted, disjoint, non-adjacent inclusive ranges; `u64::MAX` is "open".
    covered: Vec<(u64, u64)>,
    tombstones: VecDeque<u64>,
    last_used: u64,
}

impl Window {
    fn cover(&mut self, lo: u64, hi: u64) {
        if lo > hi {
            return;
        }
        let (mut lo, mut hi) = (lo, hi);
        let mut kept = Vec::with_capacity(self.covered.len() + 1);
        for &(a, b) in &self.covered {
            // Disjoint and not adjacent: keep apart.
            if b.saturating_add(1) < lo || hi.saturating_add(1) < a {
                kept.push((a, b));
            } else {
                lo = lo.min(a);
                hi = hi.max(b);
            }
        }
        kept.push((lo, hi));
        kept.sort_unstable();
        self.covered = kept;
    }

    /// The covered range holding `id`.
    fn range_of(&self, id: u64) -> Option<(u64, u64)> {
        self.covered
            .iter()
            .copied()
            .find(|&(a, b)| a <= id && id <= b)
    }

    fn is_tombstone(&self, id: u64) -> bool {
        self.tombstones.contains(&id)
    }

    fn bury(&mut self, id: u64) {
        if self.tombstones.len() >= TOMBSTONES {
            self.tombstones.pop_front();
        }
        self.tombstones.push_back(id);
    }

    /// Keeps the newest `max` messages; coverage below the oldest kept goes.
    fn trim(&mut self, max: usize) {
        while self.messages.len() > max {
            let Some((oldest, _)) = self.messages.pop_first() else {
                break;
            };
            let floor = oldest.saturating_add(1);
            self.covered.retain(|&(_, b)| b >= floor);
            for range in &mut self.covered {
                range.0 = range.0.max(floor);
            }
        }
    }

    fn newest_first(&self, lo: u64, hi: u64) -> impl Iterator<Item = &HistoryMessage> {
        self.messages.range(lo..=hi).rev().map(|(_, m)| m)
    }

    fn lookup(&self, q: &HistoryQuery) -> Lookup {
        let limit = q.limit as usize;
        let hit = |v: Vec<&HistoryMessage>| Lookup::Hit(v.into_iter().cloned().collect());
        match q.anchor {
            Anchor::Latest => {
                let Some(&(lo, hi)) = self.covered.last() else {
                    return Lookup::Miss;
                };
                if hi != u64::MAX {
                    return Lookup::Miss;
                }
                let found: Vec<_> = self.newest_first(lo, hi).take(limit).collect();
                if found.len() == limit || lo == 0 {
                    hit(found)
                } else {
                    Lookup::Miss
                }
            }
            Anchor::Before(0) => Lookup::Hit(Vec::new()),
            Anchor::Before(x) => {
                let Some((lo, _)) = self.range_of(x - 1) else {
                    return Lookup::Miss;
                };
                let found: Vec<_> = self.newest_first(lo, x - 1).take(limit).collect();
                if found.len() == limit || lo == 0 {
                    hit(found)
                } else {
                    Lookup::Miss
                }
            }
            Anchor::After(u64::MAX) => Lookup::Hit(Vec::new()),
            Anchor::After(x) => {
                let Some((_, hi)) = self.range_of(x + 1) else {
                    return Lookup::Miss;
                };
                let mut found: Vec<_> = self
                    .messages
                    .range(x + 1..=hi)
                    .map(|(_, m)| m)
                    .take(limit)
                    .collect();
                if found.len() == limit || hi == u64::MAX {
                    found.reverse();
                    hit(found)
                } else {
                    Lookup::Miss
                }
            }
            Anchor::Around(x) => {
                let Some((lo, hi)) = self.range_of(x) else {
                    return Lookup::Miss;
                };
                let newer = limit / 2;
                let older = limit - newer;
                let mut above: Vec<_> = if x < hi {
                    self.messages
                        .range(x + 1..=hi)
                        .map(|(_, m)| m)
                        .take(newer)
                        .collect()
                } else {
                    Vec::new()
                };
                let below: Vec<_> = self.newest_first(lo, x).take(older).collect();
                let above_ok = above.len() == newer || hi == u64::MAX;
                let below_ok = below.len() == older || lo == 0;
                if above_ok && below_ok {
                    above.reverse();
                    above.extend(below);
                    hit(above)
                } else {
                    Lookup::Miss
                }
            }
        }
    }
}

/// Every channel's window. See the module docs.
#[derive(Debug, Clone, Default)]
pub struct History {
    limits: HistoryLimits,
    windows: HashMap<u64, Window>,
    tick: u64,
    /// The window's revision: raised by every message event applied (held
    /// or not), so an answer made at revision `r` reflects exactly the events
    /// numbered up to `r`. Events and answers carry it (`meta.rev`, `rev`):
    /// a client skips an event its page already counts (docs/history.md).
    rev: u64,
}

impl History {
    /// An empty history with these bounds.
    pub fn new(limits: HistoryLimits) -> Self {
        History {
            limits,
            windows: HashMap::new(),
            tick: 0,
            rev: 0,
        }
    }

    /// The revision of what the windows hold now: every message event
    /// applied so far is in it, none after.
    pub fn rev(&self) -> u64 {
        self.rev
    }

    /// Starts numbering above `floor`. The gateway passes its start time in
    /// microseconds, so a restarted gateway numbers above anything its
    /// predecessor gave out (a million events a second would be needed to
    /// catch up with the clock).
    pub fn raise_rev(&mut self, floor: u64) {
        self.rev = self.rev.max(floor);
    }

    /// The bounds in force.
    pub fn limits(&self) -> HistoryLimits {
        self.limits
    }

    /// Channels with a window.
    pub fn channels(&self) -> usize {
        self.windows.len()
    }

    /// Messages held, all channels together.
    pub fn messages(&self) -> usize {
        self.windows.values().map(|w| w.messages.len()).sum()
    }

    /// Forgets everything: a new Discord session may have missed changes.
    pub fn clear(&mut self) {
        self.windows.clear();
    }

    /// Applies a link event the gateway publishes; other events are ignored.
    pub fn apply(&mut self, event: &EventBody) {
        if event.is_message_event() {
            self.rev += 1;
        }
        match event {
            EventBody::MessageCreate(m) => self.created(m),
            EventBody::MessageUpdate(u) => {
                if let Some(held) = self.held_mut(&u.channel_id, &u.id) {
                    if let Some(content) = &u.content {
                        held.message.content = content.clone();
                    }
                    if let Some(at) = &u.edited_timestamp {
                        held.edited_timestamp = Some(at.clone());
                    }
                }
            }
            EventBody::MessageDelete(d) => {
                let (Some(channel), Some(id)) = (parse(&d.channel_id), parse(&d.id)) else {
                    return;
                };
                if let Some(w) = self.windows.get_mut(&channel) {
                    w.messages.remove(&id);
                    w.bury(id);
                }
            }
            EventBody::ReactionAdd(r) => {
                if let Some(held) = self.held_mut(&r.channel_id, &r.message_id) {
                    match held
                        .reactions
                        .iter_mut()
                        .find(|c| same_emoji(&c.emoji, &r.emoji))
                    {
                        Some(c) => c.count = c.count.saturating_add(1),
                        None => held.reactions.push(ReactionCount {
                            emoji: r.emoji.clone(),
                            count: 1,
                        }),
                    }
                }
            }
            EventBody::ReactionRemove(r) => {
                if let Some(held) = self.held_mut(&r.channel_id, &r.message_id) {
                    if let Some(c) = held
                        .reactions
                        .iter_mut()
                        .find(|c| same_emoji(&c.emoji, &r.emoji))
                    {
                        c.count = c.count.saturating_sub(1);
                    }
                    held.reactions.retain(|c| c.count > 0);
                }
            }
            _ => {}
        }
    }

    /// MESSAGE_REACTION_REMOVE_ALL (`emoji: None`) or MESSAGE_REACTION_REMOVE_EMOJI:
    /// no link event, but the counts change.
    pub fn remove_reactions(&mut self, channel: &str, message: &str, emoji: Option<&Emoji>) {
        self.rev += 1;
        if let Some(held) = self.held_mut(channel, message) {
            match emoji {
                None => held.reactions.clear(),
                Some(e) => held.reactions.retain(|c| !same_emoji(&c.emoji, e)),
            }
        }
    }

    /// The answer to `q` if the window provably holds it.
    pub fn lookup(&mut self, q: &HistoryQuery) -> Lookup {
        let tick = self.next_tick();
        match self.windows.get_mut(&q.channel) {
            Some(w) => {
                w.last_used = tick;
                w.lookup(q)
            }
            None => Lookup::Miss,
        }
    }

    /// Merges Discord's answer to `q` (newest first, as REST gives it) and
    /// records the range it covers. Messages already held are kept as held
    /// (live events keep them current); deleted ones are not brought back.
    /// An answer that breaks the query (another channel's message, an id
    /// outside the range asked for, more than `limit`) is not merged at all.
    pub fn merge(&mut self, q: &HistoryQuery, answer: &[HistoryMessage]) {
        let ids: Vec<u64> = answer
            .iter()
            .filter(|m| parse(&m.message.channel_id) == Some(q.channel))
            .filter_map(|m| parse(&m.message.id))
            .collect();
        if ids.len() != answer.len() {
            // Not an answer to this query: claim nothing.
            return;
        }
        let (min, max) = (ids.iter().min().copied(), ids.iter().max().copied());
        let short = answer.len() < q.limit as usize;
        let range = match (q.anchor, min, max) {
            (Anchor::Latest, _, _) if short => Some((0, u64::MAX)),
            (Anchor::Latest, Some(lo), _) => Some((lo, u64::MAX)),
            (Anchor::Before(0), _, _) => None,
            (Anchor::Before(x), _, _) if short => Some((0, x - 1)),
            (Anchor::Before(x), Some(lo), _) => Some((lo, x - 1)),
            (Anchor::After(u64::MAX), _, _) => None,
            (Anchor::After(x), _, _) if short => Some((x + 1, u64::MAX)),
            (Anchor::After(x), _, Some(hi)) => Some((x + 1, hi)),
            (Anchor::Around(_), Some(lo), Some(hi)) => Some((lo, hi)),
            _ => None,
        };
        // An answer that breaks the query's own rule (an id outside the range
        // asked for) claims nothing either.
        let inside = |id: &u64| match q.anchor {
            Anchor::Latest | Anchor::Around(_) => true,
            Anchor::Before(x) => *id < x,
            Anchor::After(x) => *id > x,
        };
        if !ids.iter().all(inside) || ids.len() > q.limit as usize {
            return;
        }
        let tick = self.next_tick();
        let w = self.window(q.channel);
        w.last_used = tick;
        for (id, m) in ids.iter().zip(answer) {
            if !w.is_tombstone(*id) {
                w.messages.entry(*id).or_insert_with(|| m.clone());
            }
        }
        if let Some((lo, hi)) = range {
            w.cover(lo, hi);
        }
        let max = self.limits.per_channel;
        if let Some(w) = self.windows.get_mut(&q.channel) {
            w.trim(max);
        }
    }

    fn created(&mut self, m: &MessageCreate) {
        let (Some(channel), Some(id)) = (parse(&m.channel_id), parse(&m.id)) else {
            return;
        };
        let tick = self.next_tick();
        let max = self.limits.per_channel;
        let w = self.window(channel);
        w.last_used = tick;
        if w.is_tombstone(id) {
            return;
        }
        w.messages
            .entry(id)
            .and_modify(|held| {
                // A REST read may have held a relay webhook post before its
                // dispatch named the sender: the dispatch's author wins.
                if m.via.is_some() {
                    held.message.author = m.author.clone();
                    held.message.via = m.via.clone();
                }
            })
            .or_insert_with(|| HistoryMessage {
                message: m.clone(),
                edited_timestamp: None,
                reactions: Vec::new(),
            });
        // From here on every message of the channel arrives live.
        w.cover(id, u64::MAX);
        w.trim(max);
    }

    fn held_mut(&mut self, channel: &str, id: &str) -> Option<&mut HistoryMessage> {
        let (channel, id) = (parse(channel)?, parse(id)?);
        self.windows.get_mut(&channel)?.messages.get_mut(&id)
    }

    /// The window of `channel`, made (and the least recently used one dropped
    /// if there are too many) when missing.
    fn window(&mut self, channel: u64) -> &mut Window {
        if !self.windows.contains_key(&channel) && self.windows.len() >= self.limits.channels {
            let oldest = self
                .windows
                .iter()
                .min_by_key(|(_, w)| w.last_used)
                .map(|(c, _)| *c);
            if let Some(c) = oldest {
                self.windows.remove(&c);
            }
        }
        self.windows.entry(channel).or_default()
    }

    fn next_tick(&mut self) -> u64 {
        self.tick = self.tick.wrapping_add(1);
        self.tick
    }
}

/// Custom emoji are the same by id, unicode emoji by the emoji itself.
fn same_emoji(a: &Emoji, b: &Emoji) -> bool {
    match (&a.id, &b.id) {
        (None, None) => a.name == b.name,
        (x, y) => x == y,
    }
}

fn parse(id: &str) -> Option<u64> {
    if id.is_empty() || id.len() > 20 || !id.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    id.parse().ok()
}

#[cfg(test)]
mod tests;
