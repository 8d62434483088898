//! The shared event log (CONTRACT.md §10, docs/redis.md): how the entries an
//! edge reads back from Redis become a replay, and how that replay joins the
//! edge's own ring so a client gets every event after its `Last-Event-ID`
//! exactly once, or an honest `stream.reset`.
//!
//! Layout: the active gateway appends each event it broadcasts to the stream
//! `relay:events:<epoch>` with the explicit stream id `<seq>-0` and one field,
//! `f`, holding the link frame exactly as it went to the edges (its
//! `meta.eventId` is `<epoch>-<seq>`). Seqs are contiguous, so a hole (events
//! the gateway could not append while Redis was away, or entries trimmed
//! away) is visible: a run read back must go up by one from the client's id.
//!
//! Everything here is plain data: Redis's reply arrives as [`RawEntry`]s (bytes
//! from outside, parsed without panicking; fuzzed), the ring is the caller's.

use crate::replay::{EventId, ReplayRing, ResetReason};

/// Redis key prefix of the per-epoch streams.
pub const STREAM_PREFIX: &str = "relay:events:";
/// Redis key holding the epoch the active gateway numbers events in.
pub const EPOCH_KEY: &str = "relay:events:epoch";
/// The entry field that holds the link frame.
pub const FRAME_FIELD: &str = "f";
/// Longest stream id text we accept back (`<u64>-<u64>`).
const MAX_STREAM_ID_LEN: usize = 41;

/// The Redis stream of `epoch`.
pub fn stream_key(epoch: u64) -> String {
    format!("{STREAM_PREFIX}{epoch}")
}

/// The stream id of seq `seq` (`<seq>-0`; seq ≥ 1, so it is above `0-0`).
pub fn stream_id(seq: u64) -> String {
    format!("{seq}-0")
}

/// One entry as Redis returned it: its stream id and its field/value pairs.
pub type RawEntry = (Vec<u8>, Vec<(Vec<u8>, Vec<u8>)>);

/// Why entries read back cannot be used as a replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryError {
    /// A stream id that is not `<seq>-0` in canonical decimal.
    BadId(usize),
    /// An entry without the `f` field.
    NoFrame(usize),
}

impl std::fmt::Display for EntryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EntryError::BadId(i) => write!(f, "entry {i} has a stream id that is not <seq>-0"),
            EntryError::NoFrame(i) => write!(f, "entry {i} has no '{FRAME_FIELD}' field"),
        }
    }
}

impl std::error::Error for EntryError {}

/// Reads a stream id `<seq>-0` (canonical decimal, seq ≥ 1).
pub fn parse_stream_id(id: &[u8]) -> Option<u64> {
    if id.len() > MAX_STREAM_ID_LEN {
        return None;
    }
    let text = std::str::from_utf8(id).ok()?;
    let (seq, zero) = text.split_once('-')?;
    if zero != "0" {
        return None;
    }
    // EventId's parser is the strict one (no sign, no leading zero).
    let parsed: EventId = format!("0-{seq}").parse().ok()?;
    (parsed.seq >= 1).then_some(parsed.seq)
}

/// A contiguous run read back from the shared log for a client at `after`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched<T> {
    /// The client's id; `items[i]` has seq `after.seq + 1 + i`.
    pub after: EventId,
    /// The events after it, oldest first.
    pub items: Vec<T>,
}

impl<T> Fetched<T> {
    /// The id of the last event of the run (`after` when it is empty).
    pub fn through(&self) -> EventId {
        EventId::new(self.after.epoch, self.after.seq + self.items.len() as u64)
    }
}

/// Turns entries read with `XRANGE <stream_key(epoch)> <after.seq>-0 +`
/// (inclusive, so the client's own event shows whether it is still held)
/// into the frames after `after`, or says why they cannot be replayed:
///
/// - `Ok(Some(frames))`: frames `after.seq+1 ..` in order, contiguous; either
///   the client's event was read back, or the first entry is the one right
///   after it (nothing the client missed is gone).
/// - `Ok(None)`: nothing after the client is held and its own event was not
///   read either, so the log cannot vouch for it (the caller may still know it).
/// - `Err(Gap)`: a hole, between the client and the first entry or inside the run.
///
/// A malformed entry (bad id, no frame) is `Err(Gap)` too: a replay is
/// exact or it is a reset. Frames are returned as read; the caller parses them.
pub fn frames_after(
    after: EventId,
    entries: &[RawEntry],
) -> Result<Option<Vec<&[u8]>>, ResetReason> {
    let mut frames = Vec::with_capacity(entries.len());
    let mut expect = after.seq;
    let mut anchored = after.seq == 0;
    for (i, (id, fields)) in entries.iter().enumerate() {
        let seq = parse_stream_id(id).ok_or(ResetReason::Gap)?;
        if i == 0 && seq == after.seq {
            anchored = true;
            continue;
        }
        if seq != expect.checked_add(1).ok_or(ResetReason::Gap)? {
            return Err(ResetReason::Gap);
        }
        anchored = true;
        let frame = fields
            .iter()
            .find(|(name, _)| name == FRAME_FIELD.as_bytes())
            .map(|(_, value)| value.as_slice())
            .ok_or(ResetReason::Gap)?;
        frames.push(frame);
        expect = seq;
    }
    Ok(anchored.then_some(frames))
}

/// What a client at `last` gets, given the edge's `ring` and, when the ring
/// could not answer alone, what the shared log said (`None`: nothing to go
/// by, `Err`: a reset the log can vouch for, `Ok`: a run):
/// `(events, floor)`. `floor`, when set, is the last id the replay covers
/// beyond what the ring holds: live events up to it must be skipped for
/// this client (they are in its replay already).
///
/// The ring answers first (it is the fast path and the freshest). Otherwise
/// the run is joined to the ring: the run covers `last+1 ..= t`, the ring
/// must then hold everything after `t` it has (`first_held ≤ t+1`), or hold
/// nothing of this epoch yet (a fresh edge), else the client is reset.
pub fn join<T: Clone>(
    ring: &ReplayRing<T>,
    last: EventId,
    fetched: Option<Result<Fetched<T>, ResetReason>>,
) -> Result<(Vec<T>, Option<EventId>), ResetReason> {
    let ring_answer = if ring.latest().is_some() || ring.epoch() == last.epoch {
        ring.since_id(last)
    } else {
        crate::replay::Replay::Reset(ResetReason::Epoch)
    };
    let ring_error = match ring_answer {
        crate::replay::Replay::Events(events) => return Ok((events, None)),
        crate::replay::Replay::Reset(reason) => reason,
    };
    let fetched = match fetched {
        None => return Err(ring_error),
        // The log knows the epoch and says why it cannot replay.
        Some(Err(reason)) => return Err(reason),
        Some(Ok(fetched)) => fetched,
    };
    if fetched.after != last {
        return Err(ring_error);
    }
    let through = fetched.through();
    let mut events = fetched.items;
    match ring.latest() {
        // A fresh edge: the run is all there is; live events it already
        // covers are skipped.
        None => Ok((events, Some(through))),
        // The deployment has moved to another epoch since: the run's events
        // cannot be joined to what comes live.
        Some(latest) if latest.epoch != last.epoch => Err(ResetReason::Epoch),
        Some(latest) if latest.seq <= through.seq => Ok((events, Some(through))),
        Some(_) => {
            // The ring is ahead of the run: it must continue it without a hole.
            ring.since_id_into(through, &mut events)?;
            Ok((events, None))
        }
    }
}

/// Parses entries read back from Redis as [`frames_after`] does, for the
/// fuzz target: any bytes, never a panic; a success is contiguous.
#[cfg(any(test, feature = "fuzzing"))]
pub fn fuzz_entries(data: &[u8]) {
    // Entries from the input: lines `id\tfield\tvalue`.
    let text = String::from_utf8_lossy(data);
    let mut lines = text.lines();
    let after = lines
        .next()
        .and_then(|l| l.parse::<EventId>().ok())
        .unwrap_or(EventId::new(1, 0));
    let entries: Vec<RawEntry> = lines
        .map(|l| {
            let mut parts = l.splitn(3, '\t');
            let id = parts.next().unwrap_or_default().as_bytes().to_vec();
            let field = parts.next().unwrap_or_default().as_bytes().to_vec();
            let value = parts.next().unwrap_or_default().as_bytes().to_vec();
            (id, vec![(field, value)])
        })
        .collect();
    if let Ok(Some(frames)) = frames_after(after, &entries) {
        assert!(frames.len() <= entries.len());
        for frame in frames {
            let _ = crate::frame::parse_event(frame);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const E: u64 = 1_765_000_000_000;

    fn entry(seq: u64, frame: &str) -> RawEntry {
        (
            stream_id(seq).into_bytes(),
            vec![(b"f".to_vec(), frame.as_bytes().to_vec())],
        )
    }

    fn run(seqs: &[u64]) -> Vec<RawEntry> {
        seqs.iter().map(|s| entry(*s, &s.to_string())).collect()
    }

    fn frames(
        r: Result<Option<Vec<&[u8]>>, ResetReason>,
    ) -> Result<Option<Vec<String>>, ResetReason> {
        r.map(|o| {
            o.map(|v| {
                v.into_iter()
                    .map(|b| String::from_utf8(b.to_vec()).unwrap())
                    .collect()
            })
        })
    }

    #[test]
    fn stream_ids_are_strict() {
        assert_eq!(parse_stream_id(b"1-0"), Some(1));
        assert_eq!(parse_stream_id(b"18446744073709551615-0"), Some(u64::MAX));
        for bad in [
            &b"0-0"[..],
            b"01-0",
            b"1-1",
            b"1-00",
            b"+1-0",
            b"1",
            b"-0",
            b"1-0 ",
            b"\xff-0",
            b"18446744073709551616-0",
        ] {
            assert_eq!(
                parse_stream_id(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn the_clients_own_event_anchors_the_run() {
        let after = EventId::new(E, 5);
        let got = frames(frames_after(after, &run(&[5, 6, 7])));
        assert_eq!(got, Ok(Some(vec!["6".into(), "7".into()])));
        // Its event trimmed, but the next one held: nothing missed is gone.
        assert_eq!(
            frames(frames_after(after, &run(&[6, 7]))),
            Ok(Some(vec!["6".into(), "7".into()]))
        );
        // Up to date.
        assert_eq!(frames(frames_after(after, &run(&[5]))), Ok(Some(vec![])));
        // Nothing read: the log cannot vouch for the client.
        assert_eq!(frames(frames_after(after, &[])), Ok(None));
        assert_eq!(
            frames(frames_after(EventId::new(E, 0), &[])),
            Ok(Some(vec![]))
        );
    }

    #[test]
    fn holes_are_gaps() {
        let after = EventId::new(E, 5);
        assert_eq!(frames_after(after, &run(&[7, 8])), Err(ResetReason::Gap));
        assert_eq!(frames_after(after, &run(&[5, 6, 8])), Err(ResetReason::Gap));
        assert_eq!(frames_after(after, &run(&[5, 5])), Err(ResetReason::Gap));
        let mut no_field = run(&[5, 6]);
        no_field[1].1.clear();
        assert_eq!(frames_after(after, &no_field), Err(ResetReason::Gap));
    }

    fn ring(epoch: u64, seqs: std::ops::RangeInclusive<u64>, capacity: usize) -> ReplayRing<u64> {
        let mut r = ReplayRing::new(99, capacity);
        for s in seqs {
            r.push_with_id(EventId::new(epoch, s), s);
        }
        r
    }

    fn fetched(after: u64, through: u64) -> Option<Result<Fetched<u64>, ResetReason>> {
        Some(Ok(Fetched {
            after: EventId::new(E, after),
            items: (after + 1..=through).collect(),
        }))
    }

    #[test]
    fn the_ring_answers_first() {
        let r = ring(E, 1..=10, 4);
        assert_eq!(join(&r, EventId::new(E, 8), None), Ok((vec![9, 10], None)));
        assert_eq!(join(&r, EventId::new(E, 2), None), Err(ResetReason::Gap));
        assert_eq!(
            join(&r, EventId::new(E + 1, 2), None),
            Err(ResetReason::Epoch)
        );
    }

    #[test]
    fn a_run_joins_the_ring_without_holes_or_doubles() {
        let r = ring(E, 1..=10, 4); // holds 7..=10
        assert_eq!(
            join(&r, EventId::new(E, 2), fetched(2, 8)),
            Ok(((3..=10).collect(), None))
        );
        assert_eq!(
            join(&r, EventId::new(E, 2), fetched(2, 6)),
            Ok(((3..=10).collect(), None))
        );
        // The run ends before the ring begins: a hole.
        assert_eq!(
            join(&r, EventId::new(E, 2), fetched(2, 5)),
            Err(ResetReason::Gap)
        );
        // The run is ahead of the ring: live events up to its end are skipped.
        assert_eq!(
            join(&r, EventId::new(E, 2), fetched(2, 12)),
            Ok(((3..=12).collect(), Some(EventId::new(E, 12))))
        );
    }

    #[test]
    fn a_fresh_edge_serves_the_run_and_skips_what_it_covers() {
        let r: ReplayRing<u64> = ReplayRing::new(7, 4);
        assert_eq!(
            join(&r, EventId::new(E, 2), fetched(2, 4)),
            Ok((vec![3, 4], Some(EventId::new(E, 4))))
        );
        // Another epoch in the ring: the run cannot be joined.
        let other = ring(E + 1, 1..=3, 4);
        assert_eq!(
            join(&other, EventId::new(E, 2), fetched(2, 4)),
            Err(ResetReason::Epoch)
        );
        // The log says gap: a gap, even when the ring knows nothing of the epoch.
        assert_eq!(
            join(&r, EventId::new(E, 2), Some(Err(ResetReason::Gap))),
            Err(ResetReason::Gap)
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Whatever the ring holds and whatever run Redis gave, a success is
        /// exactly the events after the client's id, in order, once each.
        #[test]
        fn a_joined_replay_is_exact(
            ring_from in 1u64..60, ring_len in 0u64..30, cap in 1usize..40,
            client in 0u64..100, run_len in 0u64..60, with_run in any::<bool>(),
        ) {
            let r = if ring_len == 0 { ReplayRing::new(3, cap) } else { ring(E, ring_from..=ring_from + ring_len - 1, cap) };
            let f = with_run.then(|| Ok(Fetched { after: EventId::new(E, client), items: (client + 1..=client + run_len).collect::<Vec<u64>>() }));
            if let Ok((events, floor)) = join(&r, EventId::new(E, client), f) {
                let want: Vec<u64> = (client + 1..=client + events.len() as u64).collect();
                prop_assert_eq!(&events, &want);
                let end = client + events.len() as u64;
                match floor {
                    Some(floor) => prop_assert_eq!(floor, EventId::new(E, end)),
                    // Without a floor, the replay reaches the ring's latest.
                    None => prop_assert_eq!(r.latest().map_or(client, |l| l.seq), end),
                }
            }
        }

        #[test]
        fn entries_never_panic_and_successes_are_contiguous(
            after in 0u64..20,
            ids in proptest::collection::vec(prop_oneof![
                (0u64..30).prop_map(stream_id),
                "\\PC{0,24}",
            ], 0..12),
        ) {
            let entries: Vec<RawEntry> = ids.iter().map(|id| (id.clone().into_bytes(), vec![(b"f".to_vec(), id.clone().into_bytes())])).collect();
            if let Ok(Some(frames)) = frames_after(EventId::new(E, after), &entries) {
                let seqs: Vec<u64> = frames.iter().map(|f| parse_stream_id(f).unwrap()).collect();
                let want: Vec<u64> = (after + 1..=after + seqs.len() as u64).collect();
                prop_assert_eq!(seqs, want);
            }
        }

        #[test]
        fn fuzz_entry_point_never_panics(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            fuzz_entries(&data);
        }
    }
}
