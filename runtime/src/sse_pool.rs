//! The SSE writer pool: a few `epoll` threads write every subscriber's stream,
//! so that an event wakes one thread per core, not one thread per subscriber.
//!
//! A stream request hands its socket, the bytes due first (the preamble: HTTP
//! head, `retry:`, replay, state items) and its hub queue to [`SsePool::attach`],
//! which gives it to the writer thread with the fewest subscribers. Each writer
//! thread owns a [`Poller`], its subscribers in a slab, and a ready list:
//!
//! - the hub's push makes a queue's [waker](crate::live_queue::Consumer::set_waker)
//!   due when the queue goes from empty to non-empty (or closes); once a
//!   publish has queued the event for everyone, the hub hands each writer
//!   thread all of its due slots in one call ([`crate::live_queue::wake_all`]),
//!   which puts them on the thread's ready list and, if that list was empty,
//!   notifies the poller. One publish to a thousand subscribers thus costs each
//!   writer thread one wake-up, and a thread that is already busy is not woken
//!   again until it has taken the list.
//! - for each ready subscriber the thread drains its queue (up to
//!   [`PoolConfig::max_batch`] items at a time), appends the encoded bytes to the
//!   subscriber's pending buffer, and writes without blocking until the socket
//!   would block. It then waits for the socket to become writable (edge-triggered
//!   interest, so no `epoll_ctl` per write); meanwhile new events still go to the
//!   pending buffer, and one whose unwritten bytes pass
//!   [`PoolConfig::max_pending_bytes`] is ended as [`End::TooSlow`]. A queue the
//!   hub closed (it was full) ends the stream as `TooSlow` too, once what is
//!   queued has been handed to the socket (or the socket would block).
//! - each socket is also watched for reading: end-of-stream or an error means
//!   the client went away, and its stream ends at once ([`End::ClientGone`]).
//! - a subscriber with nothing written for [`PoolConfig::heartbeat`] gets
//!   `: ping`; one whose socket has taken nothing for
//!   [`PoolConfig::stall_timeout`] while bytes wait is ended as `TooSlow`. The
//!   thread sleeps until the earliest such deadline, found by a scan of its
//!   subscribers (at most about 16 scans per heartbeat interval).
//!
//! When a stream ends, its socket is closed, its queue dropped, and its
//! `on_end` called on the writer thread with the reason: keep it short
//! (unsubscribe, update a gauge). [`SsePool::shutdown`] ends every stream with
//! [`End::Shutdown`] and joins the threads.

use std::collections::VecDeque;
use std::io::{self, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use log::{debug, warn};
use parking_lot::Mutex;
use polling::{Event, Events, PollMode, Poller};

use crate::hub::Item;
use crate::live_queue::{Consumer, WakeTarget, Waker};

/// Writer threads, limits and timings of an [`SsePool`].
#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// Writer threads (at least 1). Default: the available cores, at most 4.
    pub threads: usize,
    /// A stream with nothing written for this long gets `: ping`.
    pub heartbeat: Duration,
    /// A subscriber whose unwritten bytes (not counting its preamble) exceed
    /// this is ended as [`End::TooSlow`]. Default 1 MiB.
    pub max_pending_bytes: usize,
    /// Most queued items taken from one subscriber's queue at a time. Default 256.
    pub max_batch: usize,
    /// A subscriber whose socket has taken no byte for this long while bytes
    /// wait is ended as [`End::TooSlow`]. Default 5 s.
    pub stall_timeout: Duration,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            threads: thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
                .min(4),
            heartbeat: Duration::from_secs(15),
            max_pending_bytes: 1 << 20,
            max_batch: 256,
            stall_timeout: Duration::from_secs(5),
        }
    }
}

/// What the pool reports as it writes (metrics). Called on the writer threads,
/// once per item and once per write: keep it cheap.
pub trait PoolObserver: Send + Sync {
    /// An item's last byte was handed to the socket, `latency` after the item's
    /// `received_at`.
    fn delivered(&self, latency: Duration);
    /// One non-blocking write to a socket took `took`.
    fn flushed(&self, took: Duration);
}

/// An observer that records nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoObserver;

impl PoolObserver for NoObserver {
    fn delivered(&self, _: Duration) {}
    fn flushed(&self, _: Duration) {}
}

/// Why a stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The client closed the connection, or reading or writing it failed.
    ClientGone,
    /// The client fell behind: the hub closed its queue, its unwritten bytes
    /// passed the limit, or its socket took nothing for the stall timeout.
    TooSlow,
    /// The pool shut down.
    Shutdown,
}

/// Called once, on a writer thread, when a stream ends.
pub type OnEnd = Box<dyn FnOnce(End) + Send>;

/// Writer threads serving many SSE streams each (see the module docs).
pub struct SsePool {
    workers: Vec<Arc<Worker>>,
    handles: Mutex<Vec<JoinHandle<()>>>,
}

/// What a writer thread shares with the pool and the wakers.
struct Worker {
    poller: Poller,
    /// Slots whose queue became non-empty or closed since the thread last looked.
    ready: Mutex<Vec<usize>>,
    incoming: Mutex<Incoming>,
    /// Subscribers attached to this thread (for choosing the least loaded).
    load: AtomicUsize,
    stop: AtomicBool,
}

#[derive(Default)]
struct Incoming {
    subs: Vec<NewSub>,
    /// The thread has ended: attach answers `Shutdown` itself.
    closed: bool,
}

struct NewSub {
    stream: TcpStream,
    preamble: Vec<u8>,
    live: Consumer<Item>,
    on_end: OnEnd,
}

impl WakeTarget for Worker {
    fn wake(&self, slot: usize) {
        self.wake_many(&[slot]);
    }

    /// The hub's fan-out hands over all of this thread's ready subscribers
    /// at once: one lock of the ready list, at most one notify.
    fn wake_many(&self, slots: &[usize]) {
        let mut ready = self.ready.lock();
        let was_empty = ready.is_empty();
        ready.extend_from_slice(slots);
        drop(ready);
        if was_empty {
            let _ = self.poller.notify();
        }
    }
}

impl SsePool {
    /// Starts `config.threads` writer threads.
    pub fn new(config: PoolConfig, observer: Arc<dyn PoolObserver>) -> io::Result<SsePool> {
        let config = PoolConfig {
            threads: config.threads.max(1),
            max_batch: config.max_batch.max(1),
            ..config
        };
        let mut workers = Vec::with_capacity(config.threads);
        let mut handles = Vec::with_capacity(config.threads);
        for i in 0..config.threads {
            let worker = Arc::new(Worker {
                poller: Poller::new()?,
                ready: Mutex::new(Vec::new()),
                incoming: Mutex::new(Incoming::default()),
                load: AtomicUsize::new(0),
                stop: AtomicBool::new(false),
            });
            let mut writer = Writer::new(worker.clone(), config.clone(), observer.clone());
            let spawned = thread::Builder::new()
                .name(format!("sse-writer-{i}"))
                .stack_size(256 * 1024)
                .spawn(move || writer.run());
            match spawned {
                Ok(handle) => handles.push(handle),
                Err(e) => {
                    let pool = SsePool {
                        workers,
                        handles: Mutex::new(handles),
                    };
                    pool.shutdown();
                    return Err(e);
                }
            }
            workers.push(worker);
        }
        Ok(SsePool {
            workers,
            handles: Mutex::new(handles),
        })
    }

    /// Serves one stream: writes `preamble` to `stream`, then every item of
    /// `live` as it arrives, with heartbeats, until the client goes, falls
    /// behind, or the pool shuts down; then closes the socket and calls `on_end`
    /// (on a writer thread, or here if the pool is already shut down).
    pub fn attach(
        &self,
        stream: TcpStream,
        preamble: Vec<u8>,
        live: Consumer<Item>,
        on_end: OnEnd,
    ) {
        let worker = self
            .workers
            .iter()
            .min_by_key(|w| w.load.load(Ordering::Relaxed))
            .expect("at least one writer thread");
        let mut incoming = worker.incoming.lock();
        if incoming.closed {
            drop(incoming);
            drop(stream);
            on_end(End::Shutdown);
            return;
        }
        worker.load.fetch_add(1, Ordering::Relaxed);
        incoming.subs.push(NewSub {
            stream,
            preamble,
            live,
            on_end,
        });
        drop(incoming);
        let _ = worker.poller.notify();
    }

    /// Streams currently served, over all threads.
    pub fn subscribers(&self) -> usize {
        self.workers
            .iter()
            .map(|w| w.load.load(Ordering::Relaxed))
            .sum()
    }

    /// Ends every stream with [`End::Shutdown`] and joins the writer threads.
    /// Later `attach`es end their stream at once. Idempotent.
    pub fn shutdown(&self) {
        for worker in &self.workers {
            worker.stop.store(true, Ordering::SeqCst);
            let _ = worker.poller.notify();
        }
        let handles = std::mem::take(&mut *self.handles.lock());
        for handle in handles {
            if handle.join().is_err() {
                warn!("an SSE writer thread panicked");
            }
        }
    }
}

impl Drop for SsePool {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// One subscriber on a writer thread.
struct Sub {
    stream: TcpStream,
    live: Consumer<Item>,
    on_end: Option<OnEnd>,
    /// Bytes not yet handed to the socket: `pending[head..]`.
    pending: Vec<u8>,
    head: usize,
    /// Bytes ever appended to `pending` / ever written.
    queued: u64,
    written: u64,
    /// Where the preamble ends (its bytes do not count against the limit).
    preamble_end: u64,
    /// For each item not yet fully written: the `queued` offset of its last
    /// byte, and when it entered relay.
    marks: VecDeque<(u64, Instant)>,
    /// The last write hit `WouldBlock`: wait for the socket to be writable.
    blocked: bool,
    /// When bytes last went to the socket.
    last_write: Instant,
}

impl Sub {
    fn unwritten(&self) -> usize {
        self.pending.len() - self.head
    }

    fn over_limit(&self, max_pending: usize) -> bool {
        let preamble_left = self.preamble_end.saturating_sub(self.written) as usize;
        self.unwritten() > max_pending.saturating_add(preamble_left)
    }

    fn append(&mut self, bytes: &[u8]) {
        self.pending.extend_from_slice(bytes);
        self.queued += bytes.len() as u64;
    }

    /// When the thread must next look at this subscriber: its heartbeat, or,
    /// while it is blocked, when it counts as stalled.
    fn deadline(&self, config: &PoolConfig) -> Instant {
        if self.blocked {
            self.last_write + config.stall_timeout
        } else {
            self.last_write + config.heartbeat
        }
    }

    /// Writes what is pending until done or the socket would block.
    fn flush(&mut self, observer: &dyn PoolObserver) -> io::Result<()> {
        let mut done = None;
        while self.head < self.pending.len() {
            let started = Instant::now();
            match self.stream.write(&self.pending[self.head..]) {
                Ok(0) => return Err(ErrorKind::WriteZero.into()),
                Ok(n) => {
                    let now = Instant::now();
                    observer.flushed(now - started);
                    self.head += n;
                    self.written += n as u64;
                    self.last_write = now;
                    done = Some(now);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    self.blocked = true;
                    break;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if self.head == self.pending.len() {
            self.pending.clear();
            self.head = 0;
        } else if self.head >= 64 * 1024 && self.head * 2 >= self.pending.len() {
            self.pending.drain(..self.head);
            self.head = 0;
        }
        if let Some(now) = done {
            while let Some(&(end, received_at)) = self.marks.front() {
                if end > self.written {
                    break;
                }
                observer.delivered(now.saturating_duration_since(received_at));
                self.marks.pop_front();
            }
        }
        Ok(())
    }

    /// Reads and discards what the client sent; `false` once it has gone
    /// (end-of-stream or an error).
    fn client_alive(&mut self) -> bool {
        let mut scratch = [0u8; 256];
        loop {
            match self.stream.read(&mut scratch) {
                Ok(0) => return false,
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
    }
}

/// A writer thread's state.
struct Writer {
    worker: Arc<Worker>,
    config: PoolConfig,
    observer: Arc<dyn PoolObserver>,
    mode: PollMode,
    subs: Vec<Option<Sub>>,
    free: Vec<usize>,
    /// When to scan for heartbeats and stalls next.
    next_check: Option<Instant>,
    batch: Vec<Item>,
}

impl Writer {
    fn new(worker: Arc<Worker>, config: PoolConfig, observer: Arc<dyn PoolObserver>) -> Writer {
        let mode = if worker.poller.supports_edge() {
            PollMode::Edge
        } else {
            PollMode::Level
        };
        Writer {
            worker,
            batch: Vec::with_capacity(config.max_batch),
            config,
            observer,
            mode,
            subs: Vec::new(),
            free: Vec::new(),
            next_check: None,
        }
    }

    fn run(&mut self) {
        let mut events = Events::new();
        let mut ready = Vec::new();
        let mut again = Vec::new();
        loop {
            let timeout = self
                .next_check
                .map(|at| at.saturating_duration_since(Instant::now()));
            events.clear();
            if let Err(e) = self.worker.poller.wait(&mut events, timeout) {
                warn!("SSE writer: poll failed: {e}");
                thread::sleep(Duration::from_millis(10));
            }
            if self.worker.stop.load(Ordering::SeqCst) {
                break;
            }
            let incoming = std::mem::take(&mut self.worker.incoming.lock().subs);
            for new in incoming {
                if let Some(slot) = self.insert(new) {
                    ready.push(slot);
                }
            }
            for ev in events.iter() {
                let slot = ev.key;
                let Some(sub) = self.subs.get_mut(slot).and_then(Option::as_mut) else {
                    continue;
                };
                if ev.readable && !sub.client_alive() {
                    self.end(slot, End::ClientGone);
                    continue;
                }
                if ev.writable && sub.blocked {
                    sub.blocked = false;
                    ready.push(slot);
                }
            }
            // Taking the wakers' list empties it: the next push notifies again.
            ready.append(&mut self.worker.ready.lock());
            while !ready.is_empty() {
                for slot in ready.drain(..) {
                    self.service(slot, &mut again);
                }
                std::mem::swap(&mut ready, &mut again);
            }
            if self.next_check.is_some_and(|at| Instant::now() >= at) {
                self.scan();
            }
        }
        self.close_all();
    }

    /// Takes a new subscriber: registers its socket and writes its preamble.
    fn insert(&mut self, new: NewSub) -> Option<usize> {
        let NewSub {
            stream,
            preamble,
            live,
            on_end,
        } = new;
        let slot = self.free.pop().unwrap_or_else(|| {
            self.subs.push(None);
            self.subs.len() - 1
        });
        let registered = stream.set_nonblocking(true).and_then(|()| {
            // SAFETY: the socket is deleted from the poller before it is closed
            // (`end`, `close_all`).
            unsafe {
                self.worker
                    .poller
                    .add_with_mode(&stream, Event::all(slot), self.mode)
            }
        });
        if let Err(e) = registered {
            debug!("SSE writer: cannot watch a stream: {e}");
            self.free.push(slot);
            self.worker.load.fetch_sub(1, Ordering::Relaxed);
            drop(stream);
            drop(live);
            on_end(End::ClientGone);
            return None;
        }
        let now = Instant::now();
        let preamble_end = preamble.len() as u64;
        self.subs[slot] = Some(Sub {
            stream,
            live,
            on_end: Some(on_end),
            pending: preamble,
            head: 0,
            queued: preamble_end,
            written: 0,
            preamble_end,
            marks: VecDeque::new(),
            blocked: false,
            last_write: now,
        });
        let worker = self.worker.clone();
        if let Some(sub) = &self.subs[slot] {
            // Items queued between the subscription and now make it call at once.
            sub.live.set_waker(Waker::new(worker, slot));
        }
        Some(slot)
    }

    /// Drains a ready subscriber's queue into its pending bytes and writes them.
    fn service(&mut self, slot: usize, again: &mut Vec<usize>) {
        let config = &self.config;
        let Some(sub) = self.subs.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        let was_blocked = sub.blocked;
        let mut rounds = 0;
        let end = loop {
            self.batch.clear();
            let drained = sub.live.drain_status(&mut self.batch, config.max_batch);
            for item in self.batch.drain(..) {
                sub.append(&item.bytes);
                sub.marks.push_back((sub.queued, item.received_at));
            }
            if sub.over_limit(config.max_pending_bytes) {
                break Some(End::TooSlow);
            }
            if !sub.blocked && sub.unwritten() > 0 && sub.flush(&*self.observer).is_err() {
                break Some(End::ClientGone);
            }
            if drained.left == 0 {
                // The hub closed the queue (it was full), and everything in it
                // has been handed on or is waiting on a blocked socket.
                break drained.closed.then_some(End::TooSlow);
            }
            rounds += 1;
            if rounds == 4 {
                // Let the others have a turn; come back in this same wake-up.
                again.push(slot);
                break None;
            }
        };
        match end {
            Some(why) => self.end(slot, why),
            None => {
                if sub.blocked != was_blocked {
                    self.blocked_changed(slot);
                }
                if let Some(sub) = self.subs[slot].as_ref() {
                    let at = sub.deadline(&self.config);
                    self.next_check = Some(self.next_check.map_or(at, |next| next.min(at)));
                }
            }
        }
    }

    /// Level-triggered pollers watch for writability only while blocked.
    fn blocked_changed(&mut self, slot: usize) {
        if self.mode == PollMode::Edge {
            return;
        }
        if let Some(sub) = self.subs[slot].as_ref() {
            let interest = if sub.blocked {
                Event::all(slot)
            } else {
                Event::readable(slot)
            };
            if self
                .worker
                .poller
                .modify_with_mode(&sub.stream, interest, self.mode)
                .is_err()
            {
                self.end(slot, End::ClientGone);
            }
        }
    }

    /// Heartbeats and stalls: pings every stream idle for the heartbeat, ends
    /// every stream blocked past the stall timeout, and sets the next check.
    fn scan(&mut self) {
        let now = Instant::now();
        let mut next: Option<Instant> = None;
        let mut ping = Vec::with_capacity(8);
        relay_protocol::sse::encode_comment(&mut ping, "ping");
        for slot in 0..self.subs.len() {
            let Some(sub) = self.subs[slot].as_mut() else {
                continue;
            };
            let mut end = None;
            if sub.blocked {
                if now >= sub.last_write + self.config.stall_timeout {
                    end = Some(End::TooSlow);
                }
            } else if now >= sub.last_write + self.config.heartbeat {
                sub.append(&ping);
                if sub.flush(&*self.observer).is_err() {
                    end = Some(End::ClientGone);
                } else if sub.blocked {
                    self.blocked_changed(slot);
                }
            }
            match end {
                Some(why) => self.end(slot, why),
                None => {
                    if let Some(sub) = self.subs[slot].as_ref() {
                        let at = sub.deadline(&self.config);
                        next = Some(next.map_or(at, |n| n.min(at)));
                    }
                }
            }
        }
        // Streams' deadlines are spread out: scan at most ~16 times per
        // heartbeat interval, a ping being late by at most that much.
        let slack = (self.config.heartbeat / 16).min(Duration::from_millis(500));
        self.next_check = next.map(|at| at.max(now + slack));
    }

    /// Ends a stream: forgets its socket, closes it, drops its queue, reports.
    fn end(&mut self, slot: usize, why: End) {
        let Some(mut sub) = self.subs.get_mut(slot).and_then(Option::take) else {
            return;
        };
        let _ = self.worker.poller.delete(&sub.stream);
        self.free.push(slot);
        self.worker.load.fetch_sub(1, Ordering::Relaxed);
        let on_end = sub.on_end.take();
        drop(sub);
        if let Some(on_end) = on_end {
            on_end(why);
        }
    }

    fn close_all(&mut self) {
        let late = {
            let mut incoming = self.worker.incoming.lock();
            incoming.closed = true;
            std::mem::take(&mut incoming.subs)
        };
        for new in late {
            self.worker.load.fetch_sub(1, Ordering::Relaxed);
            drop(new.stream);
            (new.on_end)(End::Shutdown);
        }
        for slot in 0..self.subs.len() {
            self.end(slot, End::Shutdown);
        }
    }
}

#[cfg(test)]
mod tests;
