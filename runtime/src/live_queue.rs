//! The queue between the hub and one subscriber's writer thread.
//!
//! A bounded FIFO behind a mutex and a condition variable. It replaces a
//! crossbeam channel here because the writer threads are many (one per
//! subscriber) and mostly asleep: crossbeam's blocking receive spins and calls
//! `sched_yield` before it sleeps, and with a thousand subscribers woken per event
//! those yields were over a third of the edge's CPU (measured with `perf`). Here a
//! writer sleeps on a futex at once, and the publisher wakes it only when its
//! queue goes from empty to non-empty: a busy writer drains everything queued in
//! one batch.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use crossbeam_channel::{RecvTimeoutError, TryRecvError};
use parking_lot::{Condvar, Mutex};

struct State<T> {
    items: VecDeque<T>,
    /// Set when either side gives up: the hub dropped a slow subscriber, or the
    /// writer went away.
    closed: bool,
}

struct Shared<T> {
    state: Mutex<State<T>>,
    ready: Condvar,
    capacity: usize,
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

/// A queue holding at most `capacity` items (at least 1).
pub fn bounded<T>(capacity: usize) -> (Producer<T>, Consumer<T>) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            items: VecDeque::new(),
            closed: false,
        }),
        ready: Condvar::new(),
        capacity: capacity.max(1),
    });
    (
        Producer {
            shared: shared.clone(),
        },
        Consumer { shared },
    )
}

impl<T> Producer<T> {
    /// Queues `item`, waking the consumer if it may be asleep. Never blocks.
    pub fn push(&self, item: T) -> Result<(), PushError> {
        let mut state = self.shared.state.lock();
        if state.closed {
            return Err(PushError::Closed);
        }
        if state.items.len() >= self.shared.capacity {
            state.closed = true;
            drop(state);
            self.shared.ready.notify_one();
            return Err(PushError::Full);
        }
        let was_empty = state.items.is_empty();
        state.items.push_back(item);
        drop(state);
        if was_empty {
            self.shared.ready.notify_one();
        }
        Ok(())
    }
}

impl<T> Drop for Producer<T> {
    fn drop(&mut self) {
        self.shared.state.lock().closed = true;
        self.shared.ready.notify_one();
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
