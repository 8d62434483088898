//! The queue between the hub and one subscriber's writer.
//!
//! A bounded FIFO behind a mutex and a condition variable. It replaced a
//! crossbeam channel when each subscriber had a writer thread of its own:
//! crossbeam's blocking receive spins and calls `sched_yield` before it sleeps,
//! and with a thousand subscribers woken per event those yields were over a
//! third of the edge's CPU (measured with `perf`). Here a thread-based consumer
//! (the legacy bridge) sleeps on a futex at once, and the publisher wakes it only
//! when its queue goes from empty to non-empty: a busy consumer drains
//! everything queued in one batch.
//!
//! A consumer that is not a thread of its own (the [`crate::sse_pool`] writers,
//! which serve many queues from one `epoll` loop) sets a [waker](Consumer::set_waker)
//! instead: the producer calls it, in place of the condition variable, when the
//! queue goes from empty to non-empty and when it closes.

use std::collections::VecDeque;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

pub use crossbeam_channel::{RecvTimeoutError, TryRecvError};
use parking_lot::{Condvar, Mutex};

struct State<T> {
    items: VecDeque<T>,
    /// Set when either side gives up: the hub dropped a slow subscriber, or the
    /// writer went away.
    closed: bool,
}

/// What a consumer that serves many queues (one writer thread) is woken
/// through: `token` says which of its queues has items or closed. Called on
/// the producer's thread, under no lock of the queue: keep it short and never
/// block in it.
pub trait WakeTarget: Send + Sync {
    /// Queue `token` needs the consumer.
    fn wake(&self, token: usize);

    /// Several of the target's queues at once ([`wake_all`]): a target can
    /// take them under one lock and signal its thread once.
    fn wake_many(&self, tokens: &[usize]) {
        for &token in tokens {
            self.wake(token);
        }
    }
}

impl<F: Fn(usize) + Send + Sync> WakeTarget for F {
    fn wake(&self, token: usize) {
        self(token)
    }
}

/// Called by the producer when the queue goes from empty to non-empty and when
/// it closes (see [`Consumer::set_waker`]): a target and the queue's token.
#[derive(Clone)]
pub struct Waker {
    target: Arc<dyn WakeTarget>,
    token: usize,
}

impl Waker {
    /// Wakes `target` with `token`.
    pub fn new(target: Arc<dyn WakeTarget>, token: usize) -> Waker {
        Waker { target, token }
    }
}

struct Shared<T> {
    state: Mutex<State<T>>,
    ready: Condvar,
    /// Set once by a consumer that does not wait on `ready`.
    waker: OnceLock<Waker>,
    capacity: usize,
}

impl<T> Shared<T> {
    /// Wakes the consumer, by its waker if it set one, else by the condvar.
    fn wake(&self) {
        match self.waker.get() {
            Some(waker) => waker.target.wake(waker.token),
            None => {
                self.ready.notify_one();
            }
        }
    }
}

/// The hub's end.
pub struct Producer<T> {
    shared: Arc<Shared<T>>,
}

/// The writer's end.
pub struct Consumer<T> {
    shared: Arc<Shared<T>>,
}

/// Why a push was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum PushError {
    /// The queue holds `capacity` items: the consumer fell behind. The queue is
    /// closed as a result; the consumer drains what it has, then sees it closed.
    Full,
    /// The consumer is gone.
    Closed,
}

/// What [`Consumer::drain_status`] took and left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Drained {
    /// Items moved out.
    pub taken: usize,
    /// Items still queued.
    pub left: usize,
    /// The producer closed the queue (it fell behind, or the hub dropped it):
    /// once `left` is 0, nothing more will come.
    pub closed: bool,
}

/// A queue holding at most `capacity` items (at least 1).
pub fn bounded<T>(capacity: usize) -> (Producer<T>, Consumer<T>) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            items: VecDeque::new(),
            closed: false,
        }),
        ready: Condvar::new(),
        waker: OnceLock::new(),
        capacity: capacity.max(1),
    });
    (
        Producer {
            shared: shared.clone(),
        },
        Consumer { shared },
    )
}

/// A wake-up that [`Producer::push_deferred`] owes the consumer: make it with
/// [`Wake::wake`] once the batch of pushes is done.
#[must_use = "the consumer may sleep until woken"]
pub struct Wake<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Wake<T> {
    /// Wakes the consumer (its waker, or the condition variable).
    pub fn wake(self) {
        self.shared.wake();
    }
}

/// Makes every wake-up in `owed`, with one [`WakeTarget::wake_many`] per
/// target for the queues that share one: after a fan-out to a thousand
/// queues served by two writer threads, two calls instead of a thousand.
pub fn wake_all<T>(owed: Vec<Wake<T>>) {
    let mut by_target: Vec<(*const (), &Arc<dyn WakeTarget>, usize)> = Vec::new();
    for wake in &owed {
        match wake.shared.waker.get() {
            Some(w) => by_target.push((Arc::as_ptr(&w.target) as *const (), &w.target, w.token)),
            None => wake.shared.wake(),
        }
    }
    by_target.sort_unstable_by_key(|(at, _, _)| *at as usize);
    let mut tokens = Vec::new();
    for run in by_target.chunk_by(|a, b| a.0 == b.0) {
        tokens.clear();
        tokens.extend(run.iter().map(|(_, _, token)| *token));
        run[0].1.wake_many(&tokens);
    }
}

impl<T> Producer<T> {
    /// Queues `item`, waking the consumer if it may be asleep. Never blocks.
    pub fn push(&self, item: T) -> Result<(), PushError> {
        if let Some(wake) = self.push_deferred(item)? {
            wake.wake();
        }
        Ok(())
    }

    /// [`Producer::push`], except that the wake-up it owes (the queue went
    /// from empty to non-empty) is returned instead of made. A publisher that
    /// fills thousands of queues in one go (an access recompute) wakes their
    /// consumers after the batch, outside its lock, instead of waking a
    /// writer thread, and being preempted by it, once per queue. A queue that
    /// overflows closes and wakes its consumer at once, as `push` does.
    pub fn push_deferred(&self, item: T) -> Result<Option<Wake<T>>, PushError> {
        let mut state = self.shared.state.lock();
        if state.closed {
            return Err(PushError::Closed);
        }
        if state.items.len() >= self.shared.capacity {
            state.closed = true;
            drop(state);
            self.shared.wake();
            return Err(PushError::Full);
        }
        let was_empty = state.items.is_empty();
        state.items.push_back(item);
        drop(state);
        Ok(was_empty.then(|| Wake {
            shared: self.shared.clone(),
        }))
    }
}

impl<T> Drop for Producer<T> {
    fn drop(&mut self) {
        let was_open = !std::mem::replace(&mut self.shared.state.lock().closed, true);
        if was_open {
            self.shared.wake();
        }
    }
}

impl<T> Consumer<T> {
    /// The next item, waiting up to `timeout`; `Disconnected` once the queue is
    /// closed and empty.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<T, RecvTimeoutError> {
        let deadline = Instant::now() + timeout;
        let mut state = self.shared.state.lock();
        loop {
            if let Some(item) = state.items.pop_front() {
                return Ok(item);
            }
            if state.closed {
                return Err(RecvTimeoutError::Disconnected);
            }
            if self
                .shared
                .ready
                .wait_until(&mut state, deadline)
                .timed_out()
                && state.items.is_empty()
            {
                return Err(if state.closed {
                    RecvTimeoutError::Disconnected
                } else {
                    RecvTimeoutError::Timeout
                });
            }
        }
    }

    /// The next item if one is queued.
    pub fn try_recv(&self) -> Result<T, TryRecvError> {
        let mut state = self.shared.state.lock();
        match state.items.pop_front() {
            Some(item) => Ok(item),
            None if state.closed => Err(TryRecvError::Disconnected),
            None => Err(TryRecvError::Empty),
        }
    }

    /// Moves up to `max` queued items into `out` under one lock; returns how many.
    pub fn drain_into(&self, out: &mut Vec<T>, max: usize) -> usize {
        let mut state = self.shared.state.lock();
        let n = state.items.len().min(max);
        out.extend(state.items.drain(..n));
        n
    }

    /// Like [`Consumer::drain_into`], and also tells what is left: how many
    /// items are still queued, and whether the queue is closed (no more will come).
    pub fn drain_status(&self, out: &mut Vec<T>, max: usize) -> Drained {
        let mut state = self.shared.state.lock();
        let n = state.items.len().min(max);
        out.extend(state.items.drain(..n));
        Drained {
            taken: n,
            left: state.items.len(),
            closed: state.closed,
        }
    }

    /// Has the producer call `waker` (on its own thread) whenever the queue goes
    /// from empty to non-empty and when it closes, instead of signalling the
    /// condition variable: for a consumer that multiplexes many queues on one
    /// thread and never blocks in [`Consumer::recv_timeout`]. Calls `waker` once
    /// at once if items are already queued or the queue is already closed, so
    /// nothing pushed before this call is missed. Only the first waker set counts.
    pub fn set_waker(&self, waker: Waker) {
        if self.shared.waker.set(waker).is_err() {
            return;
        }
        // A push that saw no waker has already queued its item: look once.
        let pending = {
            let state = self.shared.state.lock();
            state.closed || !state.items.is_empty()
        };
        if pending {
            self.shared.wake();
        }
    }

    /// Every item queued now, without waiting.
    pub fn try_iter(&self) -> impl Iterator<Item = T> + '_ {
        std::iter::from_fn(move || self.try_recv().ok())
    }

    /// Items until the queue is closed and empty (blocking).
    pub fn iter(&self) -> impl Iterator<Item = T> + '_ {
        std::iter::from_fn(move || self.recv_timeout(Duration::from_secs(3600)).ok())
    }

    /// Items queued now.
    pub fn len(&self) -> usize {
        self.shared.state.lock().items.len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<T> Drop for Consumer<T> {
    fn drop(&mut self) {
        let mut state = self.shared.state.lock();
        state.closed = true;
        state.items.clear();
    }
}

#[cfg(test)]
mod tests {
    use std::thread;

    use super::*;

    #[test]
    fn fifo_until_full_then_closed_after_draining() {
        let (tx, rx) = bounded(2);
        tx.push(1).unwrap();
        tx.push(2).unwrap();
        assert_eq!(tx.push(3), Err(PushError::Full));
        assert_eq!(tx.push(4), Err(PushError::Closed));
        assert_eq!(rx.try_recv(), Ok(1));
        assert_eq!(rx.recv_timeout(Duration::from_millis(1)), Ok(2));
        assert_eq!(
            rx.recv_timeout(Duration::from_millis(1)),
            Err(RecvTimeoutError::Disconnected)
        );
    }

    #[test]
    fn times_out_when_idle_and_wakes_on_push() {
        let (tx, rx) = bounded::<u32>(8);
        assert_eq!(
            rx.recv_timeout(Duration::from_millis(5)),
            Err(RecvTimeoutError::Timeout)
        );
        let t = thread::spawn(move || rx.recv_timeout(Duration::from_secs(10)));
        tx.push(7).unwrap();
        assert_eq!(t.join().unwrap(), Ok(7));
    }

    #[test]
    fn a_waker_is_called_on_empty_to_non_empty_and_on_close() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let (tx, rx) = bounded::<u32>(2);
        tx.push(1).unwrap();
        let calls = Arc::new(AtomicUsize::new(0));
        let c = calls.clone();
        // Already non-empty: called once at once.
        rx.set_waker(Waker::new(
            Arc::new(move |_| {
                c.fetch_add(1, Ordering::SeqCst);
            }),
            0,
        ));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        tx.push(2).unwrap(); // was not empty: no call
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        let mut out = Vec::new();
        let d = rx.drain_status(&mut out, 1);
        assert_eq!((d.taken, d.left, d.closed), (1, 1, false));
        rx.drain_into(&mut out, 10);
        tx.push(3).unwrap(); // empty -> non-empty
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        tx.push(4).unwrap();
        assert_eq!(tx.push(5), Err(PushError::Full)); // closes: a call
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        drop(tx); // already closed: no call
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        let d = rx.drain_status(&mut out, 10);
        assert_eq!((d.taken, d.left, d.closed), (2, 0, true));
        assert_eq!(out, vec![1, 2, 3, 4]);
    }

    #[test]
    fn a_deferred_push_wakes_only_when_told() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let (tx, rx) = bounded::<u32>(8);
        let calls = Arc::new(AtomicUsize::new(0));
        let c = calls.clone();
        rx.set_waker(Waker::new(
            Arc::new(move |_| {
                c.fetch_add(1, Ordering::SeqCst);
            }),
            0,
        ));
        let owed = tx.push_deferred(1).unwrap().expect("empty -> non-empty");
        assert!(
            tx.push_deferred(2).unwrap().is_none(),
            "not empty: no wake owed"
        );
        assert_eq!(calls.load(Ordering::SeqCst), 0);
        owed.wake();
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        // A thread-based consumer is woken through the condvar too.
        let (tx, rx) = bounded::<u32>(8);
        let t = thread::spawn(move || rx.recv_timeout(Duration::from_secs(10)));
        tx.push_deferred(7).unwrap().expect("owed").wake();
        assert_eq!(t.join().unwrap(), Ok(7));
    }

    #[test]
    fn wake_all_calls_each_target_once_with_its_tokens() {
        use std::sync::Mutex as StdMutex;
        #[derive(Default)]
        struct Target(StdMutex<Vec<Vec<usize>>>);
        impl WakeTarget for Target {
            fn wake(&self, token: usize) {
                self.0.lock().unwrap().push(vec![token]);
            }
            fn wake_many(&self, tokens: &[usize]) {
                let mut sorted = tokens.to_vec();
                sorted.sort();
                self.0.lock().unwrap().push(sorted);
            }
        }
        let (a, b) = (Arc::new(Target::default()), Arc::new(Target::default()));
        let mut owed = Vec::new();
        let mut keep = Vec::new();
        for token in 0..6 {
            let (tx, rx) = bounded::<u32>(4);
            let target: Arc<dyn WakeTarget> = if token % 2 == 0 { a.clone() } else { b.clone() };
            rx.set_waker(Waker::new(target, token));
            owed.push(tx.push_deferred(1).unwrap().expect("owed"));
            keep.push((tx, rx));
        }
        // A thread-based consumer in the same batch is woken by its condvar.
        let (tx, rx) = bounded::<u32>(4);
        let t = thread::spawn(move || rx.recv_timeout(Duration::from_secs(10)));
        owed.push(tx.push_deferred(9).unwrap().expect("owed"));
        wake_all(owed);
        assert_eq!(*a.0.lock().unwrap(), vec![vec![0, 2, 4]]);
        assert_eq!(*b.0.lock().unwrap(), vec![vec![1, 3, 5]]);
        assert_eq!(t.join().unwrap(), Ok(9));
    }

    #[test]
    fn dropping_either_end_closes() {
        let (tx, rx) = bounded::<u32>(8);
        drop(rx);
        assert_eq!(tx.push(1), Err(PushError::Closed));
        let (tx, rx) = bounded::<u32>(8);
        tx.push(1).unwrap();
        drop(tx);
        let mut out = Vec::new();
        assert_eq!(rx.drain_into(&mut out, 10), 1);
        assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
    }
}
