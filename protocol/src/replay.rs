//! The replay ring behind `Last-Event-ID` (CONTRACT.md §4 items 2 and 4): event
//! ids, the bounded log of recent events, and the rule that decides whether a
//! reconnecting client gets the events it missed or a `stream.reset`.
//!
//! # Event ids
//!
//! An id is `<epoch>-<seq>`, both parts unsigned decimal (`1718000000123-42`).
//! The driver picks `epoch` once at process start, for example the start time in
//! milliseconds xor a random `u64`, so that two processes, or one process before
//! and after a restart, practically never share one. `seq` is 1 for the first
//! event and grows by one per event for the life of the process; 0 means "before
//! the first event". Decimal rather than base36 because it is what a person
//! reading a log or a browser's devtools expects, and it costs at most 41 bytes.
//!
//! # The replay rule
//!
//! A client that reconnects with the id of the last event it saw either gets
//! exactly the events pushed after that one, or, when that is impossible, a
//! [`Replay::Reset`] saying why: [`ResetReason::Epoch`] when the id comes from
//! another process (the client must reload its state), [`ResetReason::Gap`]
//! when it is garbage, claims an event this process never produced, or some
//! event after it has already been evicted. Never a silent hole.
//!
//! The store is behind the small [`EventLog`] trait so a shared store can stand
//! in when several edges run behind a load balancer (DESIGN.md "Where this goes").

use std::collections::VecDeque;
use std::error::Error;
use std::fmt;
use std::str::FromStr;

/// Default number of events held for replay (`REPLAY_CAPACITY`).
pub const REPLAY_CAPACITY: usize = 4096;

/// Longest id text: two `u64` in decimal (20 digits each) and the `-`.
pub const EVENT_ID_MAX_LEN: usize = 41;

/// Above this, the ring's buffer grows on demand instead of being allocated up
/// front, so a huge configured capacity costs memory only once it is used.
const PREALLOC_MAX: usize = 1 << 16;

/// The `id:` of one SSE event: `<epoch>-<seq>`, both in decimal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EventId {
    /// Fixed for the life of the process that produced the event.
    pub epoch: u64,
    /// 1 for the process's first event, +1 per event; 0 is "before the first".
    pub seq: u64,
}

impl EventId {
    /// Builds an id from its two parts.
    pub const fn new(epoch: u64, seq: u64) -> Self {
        Self { epoch, seq }
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.epoch, self.seq)
    }
}

/// Why a string is not an [`EventId`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseEventIdError {
    /// The string is empty.
    Empty,
    /// The string is longer than [`EVENT_ID_MAX_LEN`] bytes.
    TooLong,
    /// There is no `-` between epoch and seq.
    MissingSeparator,
    /// The epoch is not a canonical decimal `u64` (non-digit, sign, leading
    /// zero, empty or out of range).
    InvalidEpoch,
    /// The seq is not a canonical decimal `u64`.
    InvalidSeq,
}

impl fmt::Display for ParseEventIdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Empty => "event id is empty",
            Self::TooLong => "event id is too long",
            Self::MissingSeparator => "event id has no '-' between epoch and seq",
            Self::InvalidEpoch => "event id epoch is not a decimal u64",
            Self::InvalidSeq => "event id seq is not a decimal u64",
        })
    }
}

impl Error for ParseEventIdError {}

impl FromStr for EventId {
    type Err = ParseEventIdError;

    /// Strict: only what [`Display`](fmt::Display) prints parses. Leading zeros
    /// are refused too, so each id has exactly one spelling and a client cannot
    /// name an event we never printed.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err(ParseEventIdError::Empty);
        }
        if s.len() > EVENT_ID_MAX_LEN {
            return Err(ParseEventIdError::TooLong);
        }
        let (epoch, seq) = s
            .split_once('-')
            .ok_or(ParseEventIdError::MissingSeparator)?;
        let epoch = parse_canonical_u64(epoch).ok_or(ParseEventIdError::InvalidEpoch)?;
        // A second '-' lands in `seq` and fails its digit check.
        let seq = parse_canonical_u64(seq).ok_or(ParseEventIdError::InvalidSeq)?;
        Ok(Self { epoch, seq })
    }
}

/// `u64::from_str` alone would accept a leading `+` and leading zeros.
fn parse_canonical_u64(s: &str) -> Option<u64> {
    let bytes = s.as_bytes();
    let digits_only = !bytes.is_empty() && bytes.iter().all(u8::is_ascii_digit);
    let canonical = bytes.len() == 1 || bytes.first() != Some(&b'0');
    if digits_only && canonical {
        s.parse().ok()
    } else {
        None
    }
}

/// Why a client cannot be resumed; sent as `stream.reset` `{"reason": …}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResetReason {
    /// Some events after the client's id are gone, or the id is unknown
    /// (unparseable, or ahead of anything this process produced).
    Gap,
    /// The id comes from another process: everything the client holds may be stale.
    Epoch,
}

impl ResetReason {
    /// The `reason` value of the `stream.reset` event.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Gap => "gap",
            Self::Epoch => "epoch",
        }
    }
}

impl fmt::Display for ResetReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a reconnecting client gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replay<T> {
    /// Exactly the events after the client's id, oldest first (maybe none).
    Events(Vec<T>),
    /// The client's id cannot be resumed; send `stream.reset` and go live.
    Reset(ResetReason),
}

/// A log of recent events that can answer a `Last-Event-ID`.
///
/// Small on purpose: a shared store (several edges behind one load balancer)
/// only has to assign ids and answer "what came after this one".
pub trait EventLog<T> {
    /// Stores `item` as the next event and returns the id it was given.
    fn push(&mut self, item: T) -> EventId;

    /// The id of the most recent event, `None` before the first.
    fn latest(&self) -> Option<EventId>;

    /// Appends the events after `last` to `out`, oldest first, or says why the
    /// client must be reset (then `out` is left as it was).
    fn since_into(&self, last: &str, out: &mut Vec<T>) -> Result<(), ResetReason>;

    /// [`since_into`](Self::since_into) into a fresh `Vec`.
    fn since(&self, last: &str) -> Replay<T> {
        let mut out = Vec::new();
        match self.since_into(last, &mut out) {
            Ok(()) => Replay::Events(out),
            Err(reason) => Replay::Reset(reason),
        }
    }
}

/// The last `capacity` events of this process, in memory.
///
/// Items are whatever the driver wants to replay; the edge stores the encoded
/// SSE bytes as `Arc<[u8]>`, so a replay clones pointers, not payloads.
#[derive(Debug, Clone)]
pub struct ReplayRing<T> {
    epoch: u64,
    capacity: usize,
    /// Seq of the most recent push; 0 before the first.
    last_seq: u64,
    /// Held events; the back one has seq `last_seq`, seqs are contiguous.
    items: VecDeque<T>,
}

impl<T: Clone> ReplayRing<T> {
    /// An empty ring for the process identified by `epoch`, holding at most
    /// `capacity` events. A capacity of 0 still assigns ids but replays
    /// nothing: every client that missed an event is reset with `gap`.
    pub fn new(epoch: u64, capacity: usize) -> Self {
        Self {
            epoch,
            capacity,
            last_seq: 0,
            items: VecDeque::with_capacity(capacity.min(PREALLOC_MAX)),
        }
    }

    /// The epoch every id of this ring carries.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The most events held at once.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// How many events are held now.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether no event is held (none pushed yet, or capacity 0).
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Stores `item` as the next event, evicting the oldest when full, and
    /// returns its id.
    pub fn push(&mut self, item: T) -> EventId {
        // u64 seqs do not run out: a million events a second lasts 500,000 years.
        self.last_seq += 1;
        if self.capacity > 0 {
            if self.items.len() == self.capacity {
                self.items.pop_front();
            }
            self.items.push_back(item);
        }
        EventId::new(self.epoch, self.last_seq)
    }

    /// Stores `item` under an id someone else assigned (the gateway, when ids
    /// are shared across edges: docs/redis.md). The next id in order is pushed
    /// as usual; any other id (a new epoch, a jump after events this process
    /// never got, a step back after a takeover) starts the ring afresh at that
    /// id, so everything held stays contiguous and a client whose id falls
    /// before the restart is answered honestly (`gap` or `epoch`).
    pub fn push_with_id(&mut self, id: EventId, item: T) -> EventId {
        if id.epoch != self.epoch || id.seq != self.last_seq.wrapping_add(1) || id.seq == 0 {
            self.items.clear();
            self.epoch = id.epoch;
            self.last_seq = id.seq.saturating_sub(1);
        }
        let pushed = self.push(item);
        debug_assert_eq!(pushed.seq, id.seq.max(1));
        EventId::new(self.epoch, self.last_seq)
    }

    /// Starts the ring afresh under `epoch` with `last_seq` as the latest id
    /// (nothing held): the edge going back to numbering events itself.
    pub fn restart(&mut self, epoch: u64, last_seq: u64) {
        self.items.clear();
        self.epoch = epoch;
        self.last_seq = last_seq;
    }

    /// The id of the oldest held event, `None` when nothing is held.
    pub fn first_held(&self) -> Option<EventId> {
        (!self.items.is_empty()).then(|| EventId::new(self.epoch, self.first_held_seq()))
    }

    /// The id of the most recent event (held or not), `None` before the first.
    pub fn latest(&self) -> Option<EventId> {
        (self.last_seq > 0).then(|| EventId::new(self.epoch, self.last_seq))
    }

    /// The held events with their ids, oldest first.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (EventId, &T)> + '_ {
        let first = self.first_held_seq();
        self.items
            .iter()
            .enumerate()
            .map(move |(i, item)| (EventId::new(self.epoch, first + i as u64), item))
    }

    /// What a client whose last event was `last` (a `Last-Event-ID` value) gets.
    ///
    /// Call it only when the client sent an id; a client without one simply
    /// starts live. The empty string is not an id and resets with `gap`.
    pub fn since(&self, last: &str) -> Replay<T> {
        EventLog::since(self, last)
    }

    /// [`since`](Self::since) for an id that is already parsed.
    pub fn since_id(&self, last: EventId) -> Replay<T> {
        let mut out = Vec::new();
        match self.since_id_into(last, &mut out) {
            Ok(()) => Replay::Events(out),
            Err(reason) => Replay::Reset(reason),
        }
    }

    /// Appends the events after `last` to `out`, or says why the client must be
    /// reset (then `out` is untouched). Lets a driver reuse one buffer.
    pub fn since_into(&self, last: &str, out: &mut Vec<T>) -> Result<(), ResetReason> {
        let last: EventId = last.parse().map_err(|_| ResetReason::Gap)?;
        self.since_id_into(last, out)
    }

    /// [`since_into`](Self::since_into) for an id that is already parsed.
    pub fn since_id_into(&self, last: EventId, out: &mut Vec<T>) -> Result<(), ResetReason> {
        if last.epoch != self.epoch {
            return Err(ResetReason::Epoch);
        }
        if last.seq > self.last_seq {
            // The client claims an event this process never produced.
            return Err(ResetReason::Gap);
        }
        // The first event the client missed is last.seq + 1; if it is no
        // longer held (and it exists), the client has a hole. Being exactly one
        // before the oldest held is fine: nothing in between was lost.
        let missed = self.last_seq - last.seq;
        let held = self.items.len() as u64;
        if missed > held {
            return Err(ResetReason::Gap);
        }
        // missed <= held <= usize::MAX, so the cast is lossless.
        let skip = self.items.len() - missed as usize;
        out.reserve(missed as usize);
        out.extend(self.items.range(skip..).cloned());
        Ok(())
    }

    /// Seq of the oldest held event (or of the next one, when none is held).
    fn first_held_seq(&self) -> u64 {
        self.last_seq + 1 - self.items.len() as u64
    }
}

impl<T: Clone> EventLog<T> for ReplayRing<T> {
    fn push(&mut self, item: T) -> EventId {
        ReplayRing::push(self, item)
    }

    fn latest(&self) -> Option<EventId> {
        ReplayRing::latest(self)
    }

    fn since_into(&self, last: &str, out: &mut Vec<T>) -> Result<(), ResetReason> {
        ReplayRing::since_into(self, last, out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::sync::Arc;

    const E: u64 = 1_718_000_000_123;

    fn ring_with(capacity: usize, pushes: u64) -> ReplayRing<u64> {
        let mut ring = ReplayRing::new(E, capacity);
        for i in 1..=pushes {
            // The item is its own expected seq, so a replay is easy to check.
            assert_eq!(ring.push(i), EventId::new(E, i));
        }
        ring
    }

    fn id(seq: u64) -> String {
        EventId::new(E, seq).to_string()
    }

    #[test]
    fn ids_print_as_decimal_epoch_dash_seq() {
        assert_eq!(EventId::new(7, 1).to_string(), "7-1");
        let max = EventId::new(u64::MAX, u64::MAX).to_string();
        assert_eq!(max.len(), EVENT_ID_MAX_LEN);
        assert_eq!(max.parse(), Ok(EventId::new(u64::MAX, u64::MAX)));
    }

    #[test]
    fn parse_refuses_every_non_canonical_spelling() {
        use ParseEventIdError::*;
        let cases = [
            ("", Empty),
            ("12", MissingSeparator),
            ("-1", InvalidEpoch),
            ("1-", InvalidSeq),
            ("+1-2", InvalidEpoch),
            ("1-+2", InvalidSeq),
            ("01-2", InvalidEpoch),
            ("1-02", InvalidSeq),
            (" 1-2", InvalidEpoch),
            ("1-2 ", InvalidSeq),
            ("1--2", InvalidSeq),
            ("1-2-3", InvalidSeq),
            ("1-١", InvalidSeq),
            ("18446744073709551616-1", InvalidEpoch),
            ("1-18446744073709551616", InvalidSeq),
            ("000000000000000000000000000000000000000001-1", TooLong),
        ];
        for (text, want) in cases {
            assert_eq!(text.parse::<EventId>(), Err(want), "{text:?}");
        }
        assert_eq!("0-0".parse(), Ok(EventId::new(0, 0)));
    }

    #[test]
    fn seq_starts_at_one_and_latest_follows() {
        let mut ring = ReplayRing::new(E, 2);
        assert_eq!(ring.latest(), None);
        assert_eq!(ring.push("a"), EventId::new(E, 1));
        assert_eq!(ring.push("b"), EventId::new(E, 2));
        assert_eq!(ring.push("c"), EventId::new(E, 3));
        assert_eq!(ring.latest(), Some(EventId::new(E, 3)));
        let held: Vec<_> = ring.iter().map(|(id, s)| (id.seq, *s)).collect();
        assert_eq!(held, [(2, "b"), (3, "c")]);
    }

    #[test]
    fn empty_ring_and_seq_zero_replays_nothing() {
        let ring = ring_with(4, 0);
        assert_eq!(ring.since(&id(0)), Replay::Events(vec![]));
        assert_eq!(ring.since(&id(1)), Replay::Reset(ResetReason::Gap));
    }

    #[test]
    fn up_to_date_client_gets_nothing() {
        assert_eq!(ring_with(4, 10).since(&id(10)), Replay::Events(vec![]));
    }

    #[test]
    fn one_before_oldest_held_is_not_a_gap() {
        // Holds 7..=10.
        let ring = ring_with(4, 10);
        assert_eq!(ring.since(&id(6)), Replay::Events(vec![7, 8, 9, 10]));
        assert_eq!(ring.since(&id(5)), Replay::Reset(ResetReason::Gap));
        assert_eq!(ring.since(&id(8)), Replay::Events(vec![9, 10]));
    }

    #[test]
    fn future_garbage_and_foreign_ids_reset() {
        let ring = ring_with(4, 10);
        assert_eq!(ring.since(&id(11)), Replay::Reset(ResetReason::Gap));
        assert_eq!(ring.since("nonsense"), Replay::Reset(ResetReason::Gap));
        assert_eq!(ring.since(""), Replay::Reset(ResetReason::Gap));
        assert_eq!(ring.since("1-10"), Replay::Reset(ResetReason::Epoch));
        assert_eq!(ResetReason::Gap.as_str(), "gap");
        assert_eq!(ResetReason::Epoch.to_string(), "epoch");
    }

    #[test]
    fn capacity_zero_assigns_ids_but_holds_nothing() {
        let ring = ring_with(0, 3);
        assert!(ring.is_empty());
        assert_eq!(ring.latest(), Some(EventId::new(E, 3)));
        assert_eq!(ring.since(&id(3)), Replay::Events(vec![]));
        assert_eq!(ring.since(&id(2)), Replay::Reset(ResetReason::Gap));
    }

    #[test]
    fn since_into_appends_and_leaves_out_alone_on_reset() {
        let ring = ring_with(4, 5);
        let mut out = vec![99];
        assert_eq!(ring.since_into(&id(3), &mut out), Ok(()));
        assert_eq!(out, [99, 4, 5]);
        assert_eq!(ring.since_into(&id(0), &mut out), Err(ResetReason::Gap));
        assert_eq!(out, [99, 4, 5]);
    }

    #[test]
    fn replay_shares_stored_bytes() {
        let mut ring: ReplayRing<Arc<[u8]>> = ReplayRing::new(E, 8);
        let frame: Arc<[u8]> = Arc::from(&b"id: x\ndata: {}\n\n"[..]);
        ring.push(Arc::clone(&frame));
        let Replay::Events(got) = ring.since(&id(0)) else {
            panic!("expected events");
        };
        assert!(Arc::ptr_eq(&got[0], &frame));
    }

    #[test]
    fn works_through_the_trait() {
        fn drive(log: &mut dyn EventLog<u8>) -> Replay<u8> {
            let first = log.push(1);
            log.push(2);
            assert_eq!(log.latest().map(|id| id.seq), Some(2));
            log.since(&first.to_string())
        }
        assert_eq!(drive(&mut ReplayRing::new(E, 4)), Replay::Events(vec![2]));
    }

    /// A client position: a seq of this epoch, of another epoch, or garbage.
    #[derive(Debug, Clone)]
    enum Position {
        Seq(u64),
        /// Offset from one-before-the-oldest-held, where an off-by-one would hide.
        NearOldest(i8),
        OtherEpoch(u64, u64),
        Garbage(String),
    }

    fn position() -> impl Strategy<Value = Position> {
        prop_oneof![
            4 => any::<u64>().prop_map(Position::Seq),
            2 => (-2i8..=2).prop_map(Position::NearOldest),
            1 => (any::<u64>().prop_filter("other epoch", |e| *e != E), any::<u64>())
                .prop_map(|(e, s)| Position::OtherEpoch(e, s)),
            1 => ".{0,50}".prop_map(Position::Garbage),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn replay_is_exactly_the_missed_events_or_an_honest_reset(
            capacity in 1usize..64,
            pushes in 0u64..200,
            pos in position(),
        ) {
            let ring = ring_with(capacity, pushes);
            let oldest_held = pushes.saturating_sub(capacity as u64) + 1;
            let seq = match pos {
                // Any seq in 0..=latest+3.
                Position::Seq(raw) => Some(raw % (pushes + 4)),
                Position::NearOldest(d) => (oldest_held - 1).checked_add_signed(d.into()),
                _ => None,
            };
            match pos {
                Position::Seq(_) | Position::NearOldest(_) => {
                    let Some(seq) = seq else { return Ok(()) };
                    let got = ring.since(&id(seq));
                    if seq > pushes || seq + 1 < oldest_held {
                        prop_assert_eq!(got, Replay::Reset(ResetReason::Gap));
                    } else {
                        let missed: Vec<u64> = (seq + 1..=pushes).collect();
                        prop_assert_eq!(got, Replay::Events(missed));
                    }
                }
                Position::OtherEpoch(epoch, seq) => {
                    let got = ring.since(&EventId::new(epoch, seq).to_string());
                    prop_assert_eq!(got, Replay::Reset(ResetReason::Epoch));
                }
                Position::Garbage(text) => {
                    let got = ring.since(&text);
                    match text.parse::<EventId>() {
                        Err(_) => prop_assert_eq!(got, Replay::Reset(ResetReason::Gap)),
                        // The regex can hit a real id; it must then be judged as one.
                        Ok(parsed) => prop_assert_eq!(got, ring.since_id(parsed)),
                    }
                }
            }
        }

        #[test]
        fn ring_never_holds_more_than_capacity(capacity in 0usize..64, pushes in 0u64..200) {
            let ring = ring_with(capacity, pushes);
            prop_assert_eq!(ring.len() as u64, pushes.min(capacity as u64));
            let seqs: Vec<u64> = ring.iter().map(|(id, _)| id.seq).collect();
            let items: Vec<u64> = ring.iter().map(|(_, item)| *item).collect();
            prop_assert_eq!(&seqs, &items);
        }

        #[test]
        fn id_display_parse_round_trips(epoch in any::<u64>(), seq in any::<u64>()) {
            let id = EventId::new(epoch, seq);
            let text = id.to_string();
            prop_assert!(text.len() <= EVENT_ID_MAX_LEN);
            prop_assert_eq!(text.parse::<EventId>(), Ok(id));
        }

        #[test]
        fn parse_never_panics_and_accepts_only_canonical_text(text in "\\PC{0,60}|[0-9+ -]{0,45}") {
            if let Ok(id) = text.parse::<EventId>() {
                prop_assert_eq!(id.to_string(), text);
            }
        }
    }
}
