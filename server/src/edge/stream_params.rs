//! What a `GET /api/stream` request asks for (CONTRACT.md §4), read from its
//! outside text: the `types=` / `channels=` filters and where to resume from
//! (the `Last-Event-ID` header, or the `lastEventId` query parameter that an
//! `EventSource` opened by hand can carry). Kept apart from the socket work in
//! [`super::stream`] so it can be property-tested and fuzzed.

use relay_runtime::hub::Filter;

use super::http::{query_list, query_param};

/// Most values accepted in one `types=` or `channels=` list.
pub(super) const MAX_FILTER_ITEMS: usize = 256;

/// A stream request's filters and resume point.
#[derive(Debug, Clone, Default)]
pub(super) struct StreamParams {
    /// Only the listed event types and channels, when given.
    pub(super) filter: Filter,
    /// The id of the last event the client saw, as sent (the replay ring
    /// judges it); `None` when absent or empty.
    pub(super) last_event_id: Option<String>,
}

impl StreamParams {
    /// Reads the query (after `?`) and the `Last-Event-ID` header. The header,
    /// which a browser's own reconnect sends, wins whenever it is present; an
    /// empty id is no id.
    pub(super) fn parse(query: &str, last_event_id_header: Option<&str>) -> StreamParams {
        let list = |key| query_list(query, key, MAX_FILTER_ITEMS).map(|v| v.into_iter().collect());
        let last_event_id = last_event_id_header
            .map(str::to_owned)
            .or_else(|| query_param(query, "lastEventId").map(|v| v.into_owned()))
            .filter(|id| !id.is_empty());
        StreamParams {
            filter: Filter {
                types: list("types"),
                channels: list("channels"),
            },
            last_event_id,
        }
    }
}

/// Panics unless `params` is what [`StreamParams::parse`] may make of `query`
/// and `header`: a list is present exactly when its key is, and holds at most
/// [`MAX_FILTER_ITEMS`] trimmed, non-empty values without commas, each found in
/// the decoded parameter; the resume id is the header's if there is one, else
/// the query's, and never empty.
#[cfg(any(test, feature = "fuzzing"))]
fn check_params(params: &StreamParams, query: &str, header: Option<&str>) {
    let lists = [
        ("types", &params.filter.types),
        ("channels", &params.filter.channels),
    ];
    for (key, list) in lists {
        let raw = query_param(query, key);
        assert_eq!(list.is_some(), raw.is_some(), "{key}");
        let (Some(list), Some(raw)) = (list, raw) else {
            continue;
        };
        assert!(list.len() <= MAX_FILTER_ITEMS);
        for item in list {
            assert!(!item.is_empty() && item.trim() == item && !item.contains(','));
            assert!(raw.contains(item.as_str()));
        }
    }
    let want = match header {
        Some(h) => Some(h.to_owned()),
        None => query_param(query, "lastEventId").map(|v| v.into_owned()),
    };
    assert_eq!(params.last_event_id, want.filter(|id| !id.is_empty()));
}

/// Fuzz entry: `bytes` up to the first newline is a stream request's query,
/// the rest (if any) its `Last-Event-ID` header. Panics unless the parsed
/// request passes [`check_params`], and resuming from its id on a ring of ten
/// events (the last four held) gives exactly the missed events or the right
/// reset.
#[cfg(feature = "fuzzing")]
pub fn fuzz_stream_request(bytes: &[u8]) {
    use relay_protocol::replay::{EventId, Replay, ReplayRing, ResetReason};

    const EPOCH: u64 = 7;
    let text = String::from_utf8_lossy(bytes);
    let (query, header) = match text.split_once('\n') {
        Some((query, header)) => (query, Some(header)),
        None => (&*text, None),
    };
    let params = StreamParams::parse(query, header);
    check_params(&params, query, header);

    let Some(last) = params.last_event_id else {
        return;
    };
    let mut ring = ReplayRing::new(EPOCH, 4);
    for seq in 1..=10u64 {
        ring.push(seq);
    }
    let want = match last.parse::<EventId>() {
        Err(_) => Replay::Reset(ResetReason::Gap),
        Ok(id) if id.epoch != EPOCH => Replay::Reset(ResetReason::Epoch),
        Ok(id) if !(6..=10).contains(&id.seq) => Replay::Reset(ResetReason::Gap),
        Ok(id) => Replay::Events((id.seq + 1..=10).collect()),
    };
    assert_eq!(ring.since(&last), want, "{last:?}");
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn encode(value: &str) -> String {
        form_urlencoded::byte_serialize(value.as_bytes()).collect()
    }

    #[test]
    fn filters_and_resume_point() {
        let p = StreamParams::parse(
            "types=messageCreate,%20voice.joined,,&channels=1&lastEventId=5-9",
            None,
        );
        let types: Option<Vec<&str>> = p
            .filter
            .types
            .as_ref()
            .map(|t| t.iter().map(String::as_str).collect());
        assert_eq!(types.map(|t| t.len()), Some(2));
        assert!(p
            .filter
            .types
            .as_ref()
            .is_some_and(|t| t.contains("voice.joined")));
        assert_eq!(p.last_event_id.as_deref(), Some("5-9"));
        // The header wins; an empty one means no id at all.
        let p = StreamParams::parse("lastEventId=5-9", Some("7-1"));
        assert_eq!(p.last_event_id.as_deref(), Some("7-1"));
        let p = StreamParams::parse("lastEventId=5-9", Some(""));
        assert_eq!(p.last_event_id, None);
        let p = StreamParams::parse("types=", None);
        assert_eq!(p.filter.types.map(|t| t.len()), Some(0));
        assert!(p.filter.channels.is_none());
    }

    #[cfg(feature = "fuzzing")]
    #[test]
    fn fuzz_entry_holds_on_samples() {
        for sample in [
            "",
            "types=a,b&channels=1,2\n7-8",
            "lastEventId=7-10",
            "lastEventId=7-5",
            "lastEventId=07-9",
            "lastEventId=8-9",
            "\n",
            "types=%FF%2C,&types=x\n18446744073709551615-18446744073709551615",
        ] {
            fuzz_stream_request(sample.as_bytes());
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn lists_come_back_trimmed_and_bounded(
            items in proptest::collection::vec("[ ]{0,2}[A-Za-z0-9._:]{0,12}[ ]{0,2}", 0..300),
            key in prop_oneof![Just("types"), Just("channels")],
            before in "[a-z]{0,5}=[a-z0-9]{0,5}",
        ) {
            let query = format!("{before}&{key}={}", encode(&items.join(",")));
            let params = StreamParams::parse(&query, None);
            check_params(&params, &query, None);
            let want: std::collections::HashSet<String> = items
                .iter()
                .map(|i| i.trim())
                .filter(|i| !i.is_empty())
                .take(MAX_FILTER_ITEMS)
                .map(str::to_owned)
                .collect();
            let list = if key == "types" { &params.filter.types } else { &params.filter.channels };
            prop_assert_eq!(list.as_ref(), Some(&want));
        }

        #[test]
        fn the_header_id_wins_over_the_query(
            header in proptest::option::of("[0-9-]{0,12}"),
            query_id in proptest::option::of("[0-9-]{0,12}"),
        ) {
            let query = query_id.as_deref().map_or(String::new(), |id| format!("lastEventId={}", encode(id)));
            let params = StreamParams::parse(&query, header.as_deref());
            let want = match &header {
                Some(h) => Some(h.clone()),
                None => query_id.clone(),
            };
            prop_assert_eq!(params.last_event_id, want.filter(|id| !id.is_empty()));
        }

        #[test]
        fn any_request_parses_soundly(query in any::<String>(), header in proptest::option::of(any::<String>())) {
            let params = StreamParams::parse(&query, header.as_deref());
            check_params(&params, &query, header.as_deref());
        }
    }
}
