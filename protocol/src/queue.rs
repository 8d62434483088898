//! The bounded outbound command queue and reply correlation (FR-006, CONTRACT.md §3, §5).
//!
//! Commands wait here from the moment the edge accepts them until the gateway
//! replies, they time out or the link shuts down. The queue has two parts:
//! *pending* (FIFO, not yet written to the link) and *in flight* (written, awaiting
//! a reply). Both count against one capacity, so a gateway outage fills the queue
//! and further commands are refused with [`QueueFull`] (the edge answers 503).
//!
//! Invariants the tests hold it to:
//! - in-flight entries followed by pending entries are always in enqueue order, so
//!   after a reconnect the re-sent commands go out first, oldest first, with their
//!   original `requestId` (the gateway deduplicates by it, CONTRACT.md §5);
//! - every pushed command leaves the queue exactly once, as one [`Completion`]:
//!   a reply, a timeout or a failure. Duplicate and unknown replies change nothing.

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

use crate::frame::{GatewayCommand, Reply};

/// How many times a queued command answered `rateLimited` is written again
/// before its `rateLimited` reply is final.
pub const MAX_DEFERRALS: u32 = 10;
/// Longest single wait honoured for a deferred command (a longer `retryAfterMs`
/// is capped: the gateway answers again if the limit still holds).
pub const MAX_DEFERRAL_WAIT: Duration = Duration::from_secs(60);

/// Queue limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueConfig {
    /// Most commands held, pending and in flight together (`QUEUE_CAPACITY`).
    pub capacity: usize,
    /// How long a command may wait for its reply (`REPLY_TIMEOUT_MS`).
    pub reply_timeout: Duration,
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            capacity: 1000,
            reply_timeout: Duration::from_secs(5),
        }
    }
}

/// The queue holds `capacity` commands already; the command was not added.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueFull {
    /// The bound that was hit.
    pub capacity: usize,
}

impl fmt::Display for QueueFull {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "command queue is full ({} commands)", self.capacity)
    }
}

impl std::error::Error for QueueFull {}

/// How a command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The gateway answered (`ack`, `rateLimited` or `error`).
    Replied(Reply),
    /// No reply before the deadline.
    TimedOut,
    /// The edge gave up on it: a malformed reply, or shutdown.
    Failed {
        /// Machine-readable code, e.g. `malformed_frame`, `shutting_down`.
        code: String,
        /// Safe, human-readable text.
        message: String,
    },
}

/// One command's end, reported exactly once per pushed command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    /// The command's `requestId`, unchanged since it was pushed.
    pub request_id: String,
    /// The command's `traceId`, for the log line.
    pub trace_id: String,
    /// What happened.
    pub outcome: Outcome,
    /// From push to completion.
    pub latency: Duration,
    /// How many times it was written to the link (0: never sent).
    pub attempts: u32,
    /// The command's wire `type`, for `relay_commands_total{type}`.
    pub command_type: &'static str,
    /// Whether a caller was blocked waiting for it (false: it was answered 202).
    pub waiting: bool,
}

#[derive(Debug, Clone)]
struct Entry {
    command: GatewayCommand,
    request_id: String,
    trace_id: String,
    enqueued_at: Instant,
    attempts: u32,
    waiting: bool,
    /// A waiting caller's deadline is fixed at push; a non-waiting entry has one
    /// only while in flight, so a queued-during-outage command is not dropped just
    /// because the outage is long.
    deadline: Option<Instant>,
    /// Not to be written before this: the gateway answered `rateLimited`.
    not_before: Option<Instant>,
}

impl Entry {
    fn complete(self, outcome: Outcome, now: Instant) -> Completion {
        Completion {
            request_id: self.request_id,
            trace_id: self.trace_id,
            outcome,
            latency: now.saturating_duration_since(self.enqueued_at),
            attempts: self.attempts,
            command_type: self.command.body.type_name(),
            waiting: self.waiting,
        }
    }
}

/// The bounded outbound command queue.
///
/// Call [`push`](Self::push) for each accepted command, [`pop_to_send`](Self::pop_to_send)
/// while the link can take frames, [`complete`](Self::complete) for each reply,
/// [`requeue_in_flight`](Self::requeue_in_flight) when the link drops, and
/// [`handle_timeout`](Self::handle_timeout) at [`poll_timeout`](Self::poll_timeout);
/// drain timeouts with [`poll_completion`](Self::poll_completion) after `handle_timeout`.
#[derive(Debug, Clone)]
pub struct CommandQueue {
    config: QueueConfig,
    /// Written, awaiting a reply, in the order written (= enqueue order).
    in_flight: VecDeque<Entry>,
    /// Not yet written; every entry is younger than every in-flight one.
    pending: VecDeque<Entry>,
    completions: VecDeque<Completion>,
}

impl CommandQueue {
    /// An empty queue.
    pub fn new(config: QueueConfig) -> Self {
        Self {
            config,
            in_flight: VecDeque::new(),
            pending: VecDeque::new(),
            completions: VecDeque::new(),
        }
    }

    /// Adds a command at the back. `waiting`: a caller blocks on the reply, so it
    /// times out `reply_timeout` from now whether or not it was sent; otherwise
    /// the reply timeout starts when the command is written.
    ///
    /// The command's `requestId` must be unique among queued commands (the edge
    /// draws it at random); replies are matched by it.
    pub fn push(
        &mut self,
        now: Instant,
        command: GatewayCommand,
        waiting: bool,
    ) -> Result<(), QueueFull> {
        if self.len() >= self.config.capacity {
            return Err(QueueFull {
                capacity: self.config.capacity,
            });
        }
        self.pending.push_back(Entry {
            request_id: command.request_id().to_string(),
            trace_id: command.meta.trace_id.clone(),
            command,
            enqueued_at: now,
            attempts: 0,
            waiting,
            // An unrepresentable deadline (absurd timeout) means "never".
            deadline: if waiting {
                now.checked_add(self.config.reply_timeout)
            } else {
                None
            },
            not_before: None,
        });
        Ok(())
    }

    /// Moves the oldest pending command to in flight and returns it for writing.
    pub fn pop_to_send(&mut self, now: Instant) -> Option<&GatewayCommand> {
        // A command waiting out a rate limit holds back the ones behind it, so
        // commands still reach Discord in the order they were accepted.
        if self.pending.front()?.not_before.is_some_and(|t| t > now) {
            return None;
        }
        let mut entry = self.pending.pop_front()?;
        entry.not_before = None;
        entry.attempts = entry.attempts.saturating_add(1);
        // A gateway that has no record of this requestId (it restarted) learns
        // that an earlier write may have run (docs/webhooks.md).
        if entry.attempts > 1 {
            entry.command.meta.extra.get_mut().attempt = Some(entry.attempts);
        }
        if entry.deadline.is_none() {
            entry.deadline = now.checked_add(self.config.reply_timeout);
        }
        self.in_flight.push_back(entry);
        self.in_flight.back().map(|e| &e.command)
    }

    /// The link dropped: every in-flight command goes back to the front of pending,
    /// in order, to be re-sent with the same `requestId` after reconnect.
    pub fn requeue_in_flight(&mut self) {
        while let Some(mut entry) = self.in_flight.pop_back() {
            if !entry.waiting {
                // Re-armed when it is written again.
                entry.deadline = None;
            }
            self.pending.push_front(entry);
        }
    }

    /// Matches a reply to its command and removes it. `None` for an unknown or
    /// already completed `requestId` (a duplicate reply).
    ///
    /// A `rateLimited` reply to a command nobody waits for (it was answered 202
    /// while the link was down) does not end it: the command goes back to the
    /// front of pending and is written again, with its `requestId`, once the wait
    /// is over (at most [`MAX_DEFERRALS`] times). A waiting caller gets the reply
    /// instead (HTTP 429 with the wait).
    pub fn complete(&mut self, request_id: &str, reply: Reply, now: Instant) -> Option<Completion> {
        if let Reply::RateLimited { retry_after_ms, .. } = reply {
            if self.defer(request_id, retry_after_ms, now) {
                return None;
            }
        }
        self.finish(request_id, Outcome::Replied(reply), now)
    }

    /// Puts an in-flight, non-waiting command back to wait `retry_after_ms`.
    fn defer(&mut self, request_id: &str, retry_after_ms: u64, now: Instant) -> bool {
        let Some(i) = self
            .in_flight
            .iter()
            .position(|e| e.request_id == request_id)
        else {
            return false;
        };
        let entry = &self.in_flight[i];
        if entry.waiting || entry.attempts > MAX_DEFERRALS {
            return false;
        }
        let Some(mut entry) = self.in_flight.remove(i) else {
            return false;
        };
        let wait = Duration::from_millis(retry_after_ms).min(MAX_DEFERRAL_WAIT);
        entry.not_before = now.checked_add(wait);
        entry.deadline = None;
        // Ahead of everything accepted after it, so FIFO order holds.
        let at = self
            .pending
            .iter()
            .position(|e| e.enqueued_at > entry.enqueued_at)
            .unwrap_or(self.pending.len());
        self.pending.insert(at, entry);
        true
    }

    /// Ends a command without a proper reply (e.g. its reply was malformed).
    /// `None` if no such command is queued.
    pub fn fail(
        &mut self,
        request_id: &str,
        code: &str,
        message: &str,
        now: Instant,
    ) -> Option<Completion> {
        let outcome = Outcome::Failed {
            code: code.to_string(),
            message: message.to_string(),
        };
        self.finish(request_id, outcome, now)
    }

    /// Ends every queued command with `Failed { code, message }` (shutdown); drain
    /// them with [`poll_completion`](Self::poll_completion).
    pub fn fail_all(&mut self, now: Instant, code: &str, message: &str) {
        for entry in self.in_flight.drain(..).chain(self.pending.drain(..)) {
            self.completions.push_back(entry.complete(
                Outcome::Failed {
                    code: code.to_string(),
                    message: message.to_string(),
                },
                now,
            ));
        }
    }

    /// Times out every command whose deadline is at or before `now`; drain them
    /// with [`poll_completion`](Self::poll_completion). Spurious calls do nothing.
    pub fn handle_timeout(&mut self, now: Instant) {
        for part in [&mut self.in_flight, &mut self.pending] {
            let mut kept = VecDeque::with_capacity(part.len());
            for entry in part.drain(..) {
                if entry.deadline.is_some_and(|d| d <= now) {
                    self.completions
                        .push_back(entry.complete(Outcome::TimedOut, now));
                } else {
                    kept.push_back(entry);
                }
            }
            *part = kept;
        }
    }

    /// The next completion produced by `handle_timeout` or `fail_all`.
    #[must_use]
    pub fn poll_completion(&mut self) -> Option<Completion> {
        self.completions.pop_front()
    }

    /// The earliest command deadline.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let retry = self.pending.front().and_then(|e| e.not_before);
        self.in_flight
            .iter()
            .chain(&self.pending)
            .filter_map(|e| e.deadline)
            .chain(retry)
            .min()
    }

    /// Commands held, pending and in flight.
    pub fn len(&self) -> usize {
        self.pending.len() + self.in_flight.len()
    }

    /// Whether no command is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Commands not yet written.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// Commands written and awaiting a reply.
    pub fn in_flight_len(&self) -> usize {
        self.in_flight.len()
    }

    /// The bound on [`len`](Self::len).
    pub fn capacity(&self) -> usize {
        self.config.capacity
    }

    fn finish(&mut self, request_id: &str, outcome: Outcome, now: Instant) -> Option<Completion> {
        // A late reply may find its command back in pending after a reconnect requeued it.
        for part in [&mut self.in_flight, &mut self.pending] {
            if let Some(i) = part.iter().position(|e| e.request_id == request_id) {
                return part.remove(i).map(|e| e.complete(outcome, now));
            }
        }
        None
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;
    use crate::frame::TraceMeta;
    use crate::payload::{CommandBody, TriggerTyping};

    #[allow(clippy::disallowed_methods)] // the one clock read: an origin for hand-driven time
    fn origin() -> Instant {
        Instant::now()
    }

    /// Command `n`: trace id `t<n>`, request id `r<n>` (link_session's tests too).
    pub(crate) fn cmd(n: usize) -> GatewayCommand {
        GatewayCommand {
            body: CommandBody::TypingStart(TriggerTyping {
                channel_id: "1".into(),
            }),
            meta: TraceMeta {
                trace_id: format!("t{n}"),
                sent_at: "2026-11-25T12:00:00.000Z".into(),
                request_id: Some(format!("r{n}")),
                actor: Some("u".into()),
                access: None,
                extra: Default::default(),
            },
        }
    }

    fn queue(capacity: usize) -> CommandQueue {
        CommandQueue::new(QueueConfig {
            capacity,
            reply_timeout: Duration::from_secs(5),
        })
    }

    fn limited(ms: u64) -> Reply {
        Reply::RateLimited {
            retry_after_ms: ms,
            global: true,
        }
    }

    #[test]
    fn a_rate_limited_queued_command_is_written_again_after_the_wait() {
        let mut q = queue(10);
        let t0 = origin();
        q.push(t0, cmd(0), false).unwrap();
        q.push(t0, cmd(1), false).unwrap();
        assert!(q.pop_to_send(t0).is_some());
        assert!(q.pop_to_send(t0).is_some());
        // r0 is refused for 800 ms: nobody waits for it, so it is not finished.
        assert_eq!(q.complete("r0", limited(800), t0), None);
        assert_eq!(q.len(), 2);
        assert_eq!(q.poll_timeout(), Some(t0 + Duration::from_millis(800)));
        // Nothing goes out before the wait is over, and r0 keeps its place.
        assert!(q.pop_to_send(t0 + Duration::from_millis(799)).is_none());
        let again = q.pop_to_send(t0 + Duration::from_millis(800)).unwrap();
        assert_eq!(again.request_id(), "r0", "same requestId");
        let done = q
            .complete("r0", Reply::Ack, t0 + Duration::from_secs(1))
            .unwrap();
        assert_eq!(done.attempts, 2);
        assert_eq!(done.outcome, Outcome::Replied(Reply::Ack));
    }

    #[test]
    fn a_waiting_caller_gets_the_rate_limit_and_deferrals_are_bounded() {
        let mut q = queue(10);
        let t0 = origin();
        q.push(t0, cmd(0), true).unwrap();
        q.pop_to_send(t0);
        let c = q.complete("r0", limited(500), t0).unwrap();
        assert_eq!(
            c.outcome,
            Outcome::Replied(limited(500)),
            "the caller answers 429"
        );

        q.push(t0, cmd(1), false).unwrap();
        let mut now = t0;
        let mut deferrals = 0;
        loop {
            assert!(q.pop_to_send(now).is_some());
            match q.complete("r1", limited(10), now) {
                None => deferrals += 1,
                Some(c) => {
                    assert_eq!(c.outcome, Outcome::Replied(limited(10)));
                    break;
                }
            }
            now += Duration::from_millis(10);
        }
        assert_eq!(deferrals, MAX_DEFERRALS);
        assert!(q.is_empty());
    }

    fn send(q: &mut CommandQueue, now: Instant) -> Option<String> {
        q.pop_to_send(now).map(|c| c.request_id().to_string())
    }

    #[test]
    fn full_queue_refuses_and_keeps_nothing() {
        let t0 = origin();
        let mut q = queue(2);
        q.push(t0, cmd(0), true).unwrap();
        q.push(t0, cmd(1), false).unwrap();
        assert_eq!(send(&mut q, t0).as_deref(), Some("r0"));
        // In-flight entries count too.
        assert_eq!(q.push(t0, cmd(2), true), Err(QueueFull { capacity: 2 }));
        assert_eq!((q.len(), q.pending_len(), q.in_flight_len()), (2, 1, 1));
        q.complete("r0", Reply::Ack, t0).unwrap();
        q.push(t0, cmd(2), true).unwrap();
    }

    #[test]
    fn requeued_commands_go_first_in_order() {
        let t0 = origin();
        let mut q = queue(10);
        for n in 0..4 {
            q.push(t0, cmd(n), false).unwrap();
        }
        assert_eq!(send(&mut q, t0).as_deref(), Some("r0"));
        assert_eq!(send(&mut q, t0).as_deref(), Some("r1"));
        q.push(t0, cmd(4), false).unwrap();
        q.requeue_in_flight();
        let order: Vec<_> = std::iter::from_fn(|| send(&mut q, t0)).collect();
        assert_eq!(order, ["r0", "r1", "r2", "r3", "r4"]);
        let c = q.complete("r0", Reply::Ack, t0).unwrap();
        assert_eq!(c.attempts, 2);
        assert_eq!(c.command_type, "typingStart");
    }

    #[test]
    fn a_command_written_again_says_which_write_it_is() {
        let t0 = origin();
        let mut q = queue(10);
        q.push(t0, cmd(0), false).unwrap();
        let first = q.pop_to_send(t0).unwrap().clone();
        assert_eq!(
            first.meta.extra.get().attempt,
            None,
            "a first write is unmarked"
        );
        assert!(!first.to_json().contains("attempt"));
        q.requeue_in_flight();
        let again = q.pop_to_send(t0).unwrap().clone();
        assert_eq!(again.meta.extra.get().attempt, Some(2));
        assert_eq!(again.request_id(), first.request_id(), "same requestId");
        assert_eq!(again.meta.sent_at, first.meta.sent_at, "same sentAt");
    }

    #[test]
    fn duplicate_and_late_replies() {
        let t0 = origin();
        let mut q = queue(10);
        q.push(t0, cmd(0), true).unwrap();
        q.push(t0, cmd(1), true).unwrap();
        send(&mut q, t0);
        q.requeue_in_flight();
        // A late reply to a requeued command still completes it, from pending.
        let t1 = t0 + Duration::from_millis(30);
        let c = q.complete("r0", Reply::Ack, t1).unwrap();
        assert_eq!(
            (c.latency, c.attempts, c.trace_id.as_str()),
            (Duration::from_millis(30), 1, "t0")
        );
        assert_eq!(q.complete("r0", Reply::Ack, t1), None);
        assert_eq!(q.complete("nope", Reply::Ack, t1), None);
        assert_eq!(q.len(), 1);
    }

    #[test]
    fn deadlines_waiting_vs_not() {
        let t0 = origin();
        let s = Duration::from_secs(1);
        let mut q = queue(10);
        q.push(t0, cmd(0), true).unwrap();
        q.push(t0, cmd(1), false).unwrap();
        assert_eq!(q.poll_timeout(), Some(t0 + 5 * s));
        // The waiting one times out though never sent; the other waits for the link.
        q.handle_timeout(t0 + 5 * s);
        let c = q.poll_completion().unwrap();
        assert_eq!(
            (c.request_id.as_str(), c.outcome, c.attempts),
            ("r0", Outcome::TimedOut, 0)
        );
        assert_eq!(q.poll_completion(), None);
        q.handle_timeout(t0 + 100 * s);
        assert_eq!(q.poll_completion(), None);
        assert_eq!(q.poll_timeout(), None);
        // Once written, it has a reply deadline; a requeue clears it again.
        send(&mut q, t0 + 100 * s);
        assert_eq!(q.poll_timeout(), Some(t0 + 105 * s));
        q.requeue_in_flight();
        assert_eq!(q.poll_timeout(), None);
        send(&mut q, t0 + 200 * s);
        q.handle_timeout(t0 + 205 * s);
        let c = q.poll_completion().unwrap();
        assert_eq!(
            (c.request_id.as_str(), c.attempts, c.waiting),
            ("r1", 2, false)
        );
        assert!(q.is_empty());
    }

    #[test]
    fn fail_and_fail_all() {
        let t0 = origin();
        let mut q = queue(10);
        for n in 0..3 {
            q.push(t0, cmd(n), n == 0).unwrap();
        }
        send(&mut q, t0);
        let c = q.fail("r0", "malformed_frame", "bad", t0).unwrap();
        assert!(matches!(c.outcome, Outcome::Failed { ref code, .. } if code == "malformed_frame"));
        send(&mut q, t0);
        q.fail_all(t0, "shutting_down", "bye");
        let ids: Vec<_> = std::iter::from_fn(|| q.poll_completion())
            .map(|c| c.request_id)
            .collect();
        assert_eq!(ids, ["r1", "r2"]);
        assert!(q.is_empty());
    }

    #[derive(Debug, Clone)]
    enum Op {
        Push(bool),
        SendOne,
        Disconnect,
        Reply(usize),
        DuplicateReply(usize),
        Advance(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => any::<bool>().prop_map(Op::Push),
            3 => Just(Op::SendOne),
            1 => Just(Op::Disconnect),
            2 => any::<usize>().prop_map(Op::Reply),
            1 => any::<usize>().prop_map(Op::DuplicateReply),
            2 => (0u64..1500).prop_map(Op::Advance),
        ]
    }

    /// The model of one command still held.
    struct Held {
        n: usize,
        waiting: bool,
        pushed: Instant,
        /// Written on the current connection, and when.
        sent: Option<Instant>,
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn queue_matches_model(capacity in 1usize..8, ops in proptest::collection::vec(op(), 0..80)) {
            let timeout = Duration::from_millis(1000);
            let t0 = origin();
            let mut now = t0;
            let mut q = CommandQueue::new(QueueConfig { capacity, reply_timeout: timeout });
            let mut pushed = 0usize;
            let mut held: Vec<Held> = Vec::new(); // in enqueue order
            let mut done: BTreeMap<String, u32> = BTreeMap::new();

            fn record(c: Completion, held: &mut Vec<Held>, done: &mut BTreeMap<String, u32>) -> Result<Held, TestCaseError> {
                *done.entry(c.request_id.clone()).or_default() += 1;
                let i = held.iter().position(|h| format!("r{}", h.n) == c.request_id);
                prop_assert!(i.is_some(), "completed {} twice or never pushed", c.request_id);
                let h = held.remove(i.unwrap_or_default());
                prop_assert_eq!(&c.trace_id, &format!("t{}", h.n));
                Ok(h)
            }

            for op in ops {
                match op {
                    Op::Push(waiting) => {
                        let r = q.push(now, cmd(pushed), waiting);
                        prop_assert_eq!(r.is_err(), held.len() == capacity);
                        if r.is_ok() {
                            held.push(Held { n: pushed, waiting, pushed: now, sent: None });
                            pushed += 1;
                        }
                    }
                    Op::SendOne => {
                        let got = send(&mut q, now);
                        // FIFO: the oldest command not yet written on this connection.
                        let want = held.iter_mut().find(|h| h.sent.is_none());
                        prop_assert_eq!(got.clone(), want.as_ref().map(|h| format!("r{}", h.n)));
                        if let Some(h) = want { h.sent = Some(now); }
                    }
                    Op::Disconnect => {
                        q.requeue_in_flight();
                        held.iter_mut().for_each(|h| h.sent = None);
                    }
                    Op::Reply(i) | Op::DuplicateReply(i) => {
                        let target = match op {
                            Op::Reply(_) if !held.is_empty() => format!("r{}", held[i % held.len()].n),
                            // Completed or unknown ids.
                            _ => format!("r{}", pushed + i % 3),
                        };
                        let before = (q.pending_len(), q.in_flight_len());
                        let known = held.iter().any(|h| format!("r{}", h.n) == target);
                        match q.complete(&target, Reply::Ack, now) {
                            Some(c) => { record(c, &mut held, &mut done)?; }
                            None => {
                                prop_assert!(!known);
                                prop_assert_eq!(before, (q.pending_len(), q.in_flight_len()));
                            }
                        }
                    }
                    Op::Advance(ms) => {
                        now += Duration::from_millis(ms);
                        let deadline = |h: &Held| if h.waiting { Some(h.pushed + timeout) } else { h.sent.map(|s| s + timeout) };
                        let mut want: Vec<usize> = held.iter().filter(|h| deadline(h).is_some_and(|d| d <= now)).map(|h| h.n).collect();
                        q.handle_timeout(now);
                        let mut got = Vec::new();
                        while let Some(c) = q.poll_completion() {
                            prop_assert_eq!(&c.outcome, &Outcome::TimedOut);
                            got.push(record(c, &mut held, &mut done)?.n);
                        }
                        got.sort_unstable();
                        want.sort_unstable();
                        prop_assert_eq!(got, want);
                        let next = held.iter().filter_map(deadline).min();
                        prop_assert_eq!(q.poll_timeout(), next);
                    }
                }
                prop_assert!(q.len() <= capacity);
                prop_assert_eq!(q.len(), held.len());
            }
            // Finally every command leaves exactly once: time out the waiting ones, answer the rest.
            now += Duration::from_secs(3600);
            q.handle_timeout(now);
            while let Some(c) = q.poll_completion() { record(c, &mut held, &mut done)?; }
            for h in std::mem::take(&mut held) {
                let c = q.complete(&format!("r{}", h.n), Reply::Ack, now);
                prop_assert!(c.is_some());
                *done.entry(format!("r{}", h.n)).or_default() += 1;
            }
            prop_assert!(q.is_empty());
            prop_assert_eq!(done.len(), pushed);
            prop_assert!(done.values().all(|&n| n == 1));
        }
    }
}
