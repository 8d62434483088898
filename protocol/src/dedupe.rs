//! requestId de-duplication on the gateway side of the link (CONTRACT.md §5):
//! "a command re-sent after a reconnect carries the same `requestId`; the gateway
//! executes it once and repeats the first reply".
//!
//! [`ReplyCache`] remembers, per request id, whether the command is running or how
//! it ended. The first [`ReplyCache::begin`] of an id says [`Begin::Run`]; a begin
//! while it runs says [`Begin::InProgress`]; a begin after it finished says
//! [`Begin::Done`] with the first reply.
//!
//! # Waiters instead of tickets
//!
//! Every `begin` hands the cache a waiter `W` (for the driver: "the connection and
//! trace id to answer"), and [`ReplyCache::finish`] returns every waiter of the run,
//! the runner's own first. Registering inside `begin` makes "check, then wait" one
//! step, so a finish can never slip between them and leave a duplicate unanswered;
//! and because the runner's waiter is held too, the reply completes the entry and
//! reaches every live asker even when the connection that sent the command first
//! is gone.
//!
//! # Bounds
//!
//! Finished entries are kept for at most `ttl` after they finished and at most
//! `capacity` of them, oldest evicted first. Running entries are never evicted:
//! forgetting one would let a duplicate run the command a second time. They are
//! bounded by the driver, which runs a bounded number of commands at once and must
//! end every run with `finish` or [`ReplyCache::abandon`]. Ids longer than
//! [`MAX_REQUEST_ID_BYTES`] are refused so a peer cannot grow the cache by
//! sending huge ids.

use std::collections::hash_map::Entry as MapEntry;
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use crate::frame::Reply;

/// Finished replies kept by default.
pub const DEFAULT_CAPACITY: usize = 10_000;
/// How long a finished reply is kept by default: longer than an edge's reconnect
/// backoff (30 s at most) plus its queue's patience, so a re-send finds it.
pub const DEFAULT_TTL: Duration = Duration::from_secs(600);
/// Longest request id accepted. relay's edge sends 36-byte UUIDs.
pub const MAX_REQUEST_ID_BYTES: usize = 128;

/// What the caller of [`ReplyCache::begin`] must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Begin {
    /// First time this id is seen (or its reply was evicted): execute the command,
    /// then call [`ReplyCache::finish`]. The waiter was registered.
    Run,
    /// The same id is executing now: do nothing; the waiter was registered and
    /// comes back from the [`ReplyCache::finish`] of the running command.
    InProgress,
    /// The command already ran: answer with this, its first reply. The waiter was
    /// dropped.
    Done(Reply),
    /// The id is empty or longer than [`MAX_REQUEST_ID_BYTES`]: nothing was
    /// recorded and the waiter was dropped; answer with an error.
    Invalid,
}

enum Entry<W> {
    Running(Vec<W>),
    Done(Reply),
}

/// The request id → reply cache. `W` is whatever the driver needs to deliver a
/// reply to one asker.
pub struct ReplyCache<W> {
    capacity: usize,
    ttl: Duration,
    entries: HashMap<String, Entry<W>>,
    /// Finished ids in finish order with their finish time. Done entries leave the
    /// map only through this queue, so its length is the number of done entries.
    done: VecDeque<(String, Instant)>,
}

impl<W> ReplyCache<W> {
    /// A cache keeping at most `capacity` finished replies, each for at most `ttl`.
    pub fn new(capacity: usize, ttl: Duration) -> Self {
        ReplyCache {
            capacity,
            ttl,
            entries: HashMap::new(),
            done: VecDeque::new(),
        }
    }

    /// Registers an ask for `request_id` at `now`; see [`Begin`] for what to do.
    pub fn begin(&mut self, request_id: &str, waiter: W, now: Instant) -> Begin {
        self.handle_timeout(now);
        if request_id.is_empty() || request_id.len() > MAX_REQUEST_ID_BYTES {
            return Begin::Invalid;
        }
        match self.entries.entry(request_id.to_owned()) {
            MapEntry::Vacant(slot) => {
                slot.insert(Entry::Running(vec![waiter]));
                Begin::Run
            }
            MapEntry::Occupied(mut slot) => match slot.get_mut() {
                Entry::Running(waiters) => {
                    waiters.push(waiter);
                    Begin::InProgress
                }
                Entry::Done(reply) => Begin::Done(reply.clone()),
            },
        }
    }

    /// Records the reply of a running command and returns every waiter to answer
    /// with it, in the order they asked (the runner first). A finish for an id that
    /// is not running changes nothing and returns no waiters: the first reply wins.
    #[must_use = "every returned waiter is owed this reply"]
    pub fn finish(&mut self, request_id: &str, reply: Reply, now: Instant) -> Vec<W> {
        self.handle_timeout(now);
        let Some(entry) = self.entries.get_mut(request_id) else {
            return Vec::new();
        };
        let Entry::Running(waiters) = entry else {
            return Vec::new();
        };
        let waiters = std::mem::take(waiters);
        *entry = Entry::Done(reply);
        self.done.push_back((request_id.to_owned(), now));
        self.evict_over_capacity();
        waiters
    }

    /// Forgets a running command without a reply (it could not be started), so a
    /// later begin runs it. Returns its waiters, who are owed some answer.
    #[must_use = "every returned waiter is owed an answer"]
    pub fn abandon(&mut self, request_id: &str) -> Vec<W> {
        match self.entries.remove(request_id) {
            Some(Entry::Running(waiters)) => waiters,
            Some(done @ Entry::Done(_)) => {
                // Not running: put it back untouched.
                self.entries.insert(request_id.to_owned(), done);
                Vec::new()
            }
            None => Vec::new(),
        }
    }

    /// Drops finished replies older than the ttl.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some((id, at)) = self.done.front() {
            if now.saturating_duration_since(*at) < self.ttl {
                break;
            }
            self.entries.remove(id);
            self.done.pop_front();
        }
    }

    /// When the oldest finished reply expires, if any is held.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.done.front().map(|(_, at)| *at + self.ttl)
    }

    /// Commands running now.
    pub fn in_progress(&self) -> usize {
        self.entries.len() - self.done.len()
    }

    /// Finished replies held now (never more than the capacity).
    pub fn done(&self) -> usize {
        self.done.len()
    }

    fn evict_over_capacity(&mut self) {
        while self.done.len() > self.capacity {
            if let Some((id, _)) = self.done.pop_front() {
                self.entries.remove(&id);
            }
        }
    }
}

impl<W> std::fmt::Debug for ReplyCache<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplyCache")
            .field("capacity", &self.capacity)
            .field("ttl", &self.ttl)
            .field("in_progress", &self.in_progress())
            .field("done", &self.done())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    #[allow(clippy::disallowed_methods)] // the one clock read: an origin for hand-driven time
    fn origin() -> Instant {
        Instant::now()
    }

    fn err(n: u32) -> Reply {
        Reply::Error {
            code: format!("r{n}"),
            message: String::new(),
        }
    }

    #[test]
    fn runs_once_and_repeats_the_first_reply() {
        let t0 = origin();
        let mut c = ReplyCache::new(10, Duration::from_secs(60));
        assert_eq!(c.begin("a", 1, t0), Begin::Run);
        assert_eq!(c.begin("a", 2, t0), Begin::InProgress);
        assert_eq!(c.in_progress(), 1);
        assert_eq!(c.finish("a", Reply::Ack, t0), vec![1, 2]);
        assert_eq!(c.begin("a", 3, t0), Begin::Done(Reply::Ack));
        // A late second finish does not replace the first reply.
        assert!(c.finish("a", err(9), t0).is_empty());
        assert_eq!(c.begin("a", 4, t0), Begin::Done(Reply::Ack));
        assert_eq!((c.in_progress(), c.done()), (0, 1));
    }

    #[test]
    fn expires_after_ttl_then_runs_again() {
        let t0 = origin();
        let ttl = Duration::from_secs(600);
        let mut c = ReplyCache::new(10, ttl);
        assert_eq!(c.begin("a", (), t0), Begin::Run);
        let _ = c.finish("a", Reply::Ack, t0);
        assert_eq!(c.poll_timeout(), Some(t0 + ttl));
        assert_eq!(
            c.begin("a", (), t0 + ttl - Duration::from_millis(1)),
            Begin::Done(Reply::Ack)
        );
        c.handle_timeout(t0 + ttl);
        assert_eq!(c.done(), 0);
        assert_eq!(c.begin("a", (), t0 + ttl), Begin::Run);
    }

    #[test]
    fn running_entries_survive_capacity_and_ttl() {
        let t0 = origin();
        let mut c = ReplyCache::new(1, Duration::from_secs(1));
        assert_eq!(c.begin("slow", 0, t0), Begin::Run);
        for (i, id) in ["x", "y", "z"].into_iter().enumerate() {
            assert_eq!(c.begin(id, 1, t0), Begin::Run);
            assert_eq!(c.finish(id, err(i as u32), t0), vec![1]);
        }
        let later = t0 + Duration::from_secs(3600);
        assert_eq!(c.begin("slow", 5, later), Begin::InProgress);
        assert_eq!(c.done(), 0);
        assert_eq!(c.finish("slow", Reply::Ack, later), vec![0, 5]);
    }

    #[test]
    fn abandon_lets_the_next_begin_run() {
        let t0 = origin();
        let mut c = ReplyCache::new(10, Duration::from_secs(1));
        assert_eq!(c.begin("a", 1, t0), Begin::Run);
        assert_eq!(c.begin("a", 2, t0), Begin::InProgress);
        assert_eq!(c.abandon("a"), vec![1, 2]);
        assert_eq!(c.begin("a", 3, t0), Begin::Run);
        let _ = c.finish("a", Reply::Ack, t0);
        assert!(c.abandon("a").is_empty());
        assert_eq!(c.begin("a", 4, t0), Begin::Done(Reply::Ack));
    }

    #[test]
    fn refuses_empty_and_huge_ids() {
        let t0 = origin();
        let mut c = ReplyCache::new(10, Duration::from_secs(1));
        assert_eq!(c.begin("", (), t0), Begin::Invalid);
        let huge = "x".repeat(MAX_REQUEST_ID_BYTES + 1);
        assert_eq!(c.begin(&huge, (), t0), Begin::Invalid);
        assert_eq!(c.begin(&huge[1..], (), t0), Begin::Run);
        assert_eq!((c.in_progress(), c.done()), (1, 0));
    }

    #[derive(Debug, Clone)]
    enum Op {
        Begin(u8),
        Finish(u8),
        Abandon(u8),
        Advance(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0u8..4).prop_map(Op::Begin),
            3 => (0u8..4).prop_map(Op::Finish),
            1 => (0u8..4).prop_map(Op::Abandon),
            2 => (0u64..400).prop_map(Op::Advance),
        ]
    }

    /// What the model knows about one id's last finished run.
    struct Finished {
        reply: Reply,
        at: Instant,
        /// Global finish number, to count the finishes after it.
        index: u64,
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Any interleaving of begin/finish/abandon/time over a few ids: each id runs
        /// at most once while held, every asker gets exactly one reply (the first),
        /// a finished reply is held exactly while it is among the `capacity` newest
        /// and younger than the ttl, and the memory bound holds after every step.
        #[test]
        fn every_ask_gets_the_first_reply_exactly_once(
            capacity in 0usize..4,
            ops in proptest::collection::vec(op(), 1..80),
        ) {
            let ttl = Duration::from_millis(1000);
            let t0 = origin();
            let mut now = t0;
            let mut c: ReplyCache<u32> = ReplyCache::new(capacity, ttl);
            // Model: running ids with their waiters; last finished run per id.
            let mut running: BTreeMap<u8, Vec<u32>> = BTreeMap::new();
            let mut finished: BTreeMap<u8, Finished> = BTreeMap::new();
            let mut finishes = 0u64;
            // Every waiter's answer; None while owed.
            let mut answers: BTreeMap<u32, Option<Reply>> = BTreeMap::new();
            let mut abandoned = 0usize;
            let mut next_waiter = 0u32;
            let mut next_reply = 0u32;
            let key = |id: u8| format!("req-{id}");

            for op in ops {
                match op {
                    Op::Advance(ms) => {
                        now += Duration::from_millis(ms);
                        c.handle_timeout(now);
                    }
                    Op::Begin(id) => {
                        let w = next_waiter;
                        next_waiter += 1;
                        answers.insert(w, None);
                        let got = c.begin(&key(id), w, now);
                        if let Some(waiters) = running.get_mut(&id) {
                            prop_assert_eq!(got, Begin::InProgress, "a running id never runs twice");
                            waiters.push(w);
                            continue;
                        }
                        let held = finished.get(&id).filter(|f| {
                            now < f.at + ttl && finishes - f.index - 1 < capacity as u64
                        });
                        match held {
                            Some(f) => {
                                prop_assert_eq!(got, Begin::Done(f.reply.clone()));
                                answers.insert(w, Some(f.reply.clone()));
                            }
                            None => {
                                prop_assert_eq!(got, Begin::Run);
                                running.insert(id, vec![w]);
                            }
                        }
                    }
                    Op::Finish(id) => {
                        let reply = err(next_reply);
                        next_reply += 1;
                        let got = c.finish(&key(id), reply.clone(), now);
                        match running.remove(&id) {
                            Some(expected) => {
                                prop_assert_eq!(&got, &expected);
                                for w in got {
                                    let slot = answers.get_mut(&w).expect("known waiter");
                                    prop_assert!(slot.is_none(), "waiter {} answered twice", w);
                                    *slot = Some(reply.clone());
                                }
                                finished.insert(id, Finished { reply, at: now, index: finishes });
                                finishes += 1;
                            }
                            None => prop_assert!(got.is_empty(), "finish of a non-running id"),
                        }
                    }
                    Op::Abandon(id) => {
                        let got = c.abandon(&key(id));
                        let expected = running.remove(&id).unwrap_or_default();
                        prop_assert_eq!(&got, &expected);
                        for w in got {
                            answers.remove(&w);
                            abandoned += 1;
                        }
                    }
                }
                prop_assert!(c.done() <= capacity, "memory bound");
                prop_assert_eq!(c.in_progress(), running.len());
            }
            // Finish whatever still runs: then every ask is answered exactly once.
            for (id, waiters) in std::mem::take(&mut running) {
                let got = c.finish(&key(id), Reply::Ack, now);
                prop_assert_eq!(&got, &waiters);
                for w in got {
                    answers.insert(w, Some(Reply::Ack));
                }
            }
            prop_assert!(answers.values().all(Option::is_some));
            prop_assert_eq!(answers.len() + abandoned, next_waiter as usize);
            prop_assert_eq!(c.in_progress(), 0);
        }
    }
}
