//! The window against Discord's rules: one test per parameter rule and per
//! kind of change, and property tests against a plain sorted list.

use proptest::prelude::*;
use serde_json::json;

use super::*;

const CH: u64 = 7;

/// Built from JSON so that fields added to `messageCreate` later keep this compiling.
fn create(channel: u64, id: u64, content: &str) -> EventBody {
    serde_json::from_value(json!({
        "type": "messageCreate",
        "data": {
            "id": id.to_string(), "channelId": channel.to_string(), "guildId": "1",
            "author": {"id": "42", "username": "ada", "avatar": null, "bot": false},
            "content": content, "timestamp": "2026-01-01T00:00:00.000Z"
        }
    }))
    .unwrap()
}

fn message(channel: u64, id: u64) -> HistoryMessage {
    let EventBody::MessageCreate(m) = create(channel, id, &format!("m{id}")) else {
        unreachable!()
    };
    HistoryMessage {
        message: m,
        edited_timestamp: None,
        reactions: Vec::new(),
    }
}

fn event(v: serde_json::Value) -> EventBody {
    serde_json::from_value(v).unwrap()
}

fn q(limit: u32, anchor: Anchor) -> HistoryQuery {
    HistoryQuery {
        channel: CH,
        limit,
        anchor,
    }
}

fn ids(l: &Lookup) -> Option<Vec<u64>> {
    match l {
        Lookup::Hit(v) => Some(v.iter().map(|m| m.message.id.parse().unwrap()).collect()),
        Lookup::Miss => None,
    }
}

fn answer(all: &[u64], query: &HistoryQuery) -> Vec<HistoryMessage> {
    query
        .select(all)
        .into_iter()
        .map(|id| message(CH, id))
        .collect()
}

fn live(h: &mut History, from: u64, to: u64) {
    for id in from..=to {
        h.apply(&create(CH, id, &format!("m{id}")));
    }
}

#[test]
fn select_follows_discords_rules() {
    let all: Vec<u64> = (1..=10).collect();
    assert_eq!(q(3, Anchor::Latest).select(&all), [10, 9, 8]);
    assert_eq!(q(3, Anchor::Before(5)).select(&all), [4, 3, 2]);
    assert_eq!(
        q(3, Anchor::After(5)).select(&all),
        [8, 7, 6],
        "the page right after, newest first"
    );
    assert_eq!(q(4, Anchor::Around(5)).select(&all), [7, 6, 5, 4]);
    assert_eq!(q(5, Anchor::Around(5)).select(&all), [7, 6, 5, 4, 3]);
    assert_eq!(q(1, Anchor::Around(5)).select(&all), [5]);
    assert_eq!(q(3, Anchor::Before(1)).select(&all), Vec::<u64>::new());
    assert_eq!(q(50, Anchor::After(10)).select(&all), Vec::<u64>::new());
}

#[test]
fn parameters_are_checked() {
    let c =
        |limit, before: Option<&str>, after: Option<&str>, around: Option<&str>| FetchMessages {
            channel_id: "7".into(),
            limit,
            before: before.map(Into::into),
            after: after.map(Into::into),
            around: around.map(Into::into),
        };
    assert_eq!(
        HistoryQuery::from_command(&c(50, None, None, None)),
        Ok(q(50, Anchor::Latest))
    );
    assert_eq!(
        HistoryQuery::from_command(&c(1, Some("9"), None, None)),
        Ok(q(1, Anchor::Before(9)))
    );
    assert_eq!(
        HistoryQuery::from_command(&c(100, None, Some("9"), None)),
        Ok(q(100, Anchor::After(9)))
    );
    assert_eq!(
        HistoryQuery::from_command(&c(2, None, None, Some("9"))),
        Ok(q(2, Anchor::Around(9)))
    );
    assert!(HistoryQuery::from_command(&c(0, None, None, None)).is_err());
    assert!(HistoryQuery::from_command(&c(101, None, None, None)).is_err());
    assert!(HistoryQuery::from_command(&c(5, Some("1"), Some("2"), None)).is_err());
    assert!(HistoryQuery::from_command(&c(5, Some("x1"), None, None)).is_err());
    assert!(HistoryQuery::from_command(&c(5, Some("99999999999999999999"), None, None)).is_err());
    let round = q(9, Anchor::Around(3));
    assert_eq!(HistoryQuery::from_command(&round.to_command()), Ok(round));
}

#[test]
fn live_only_window_answers_latest_only_once_it_has_enough() {
    let mut h = History::default();
    live(&mut h, 100, 104);
    assert_eq!(
        ids(&h.lookup(&q(5, Anchor::Latest))),
        Some(vec![104, 103, 102, 101, 100])
    );
    assert_eq!(
        h.lookup(&q(6, Anchor::Latest)),
        Lookup::Miss,
        "something older may exist"
    );
    assert_eq!(
        ids(&h.lookup(&q(2, Anchor::After(101)))),
        Some(vec![103, 102])
    );
    assert_eq!(
        ids(&h.lookup(&q(50, Anchor::After(101)))),
        Some(vec![104, 103, 102]),
        "open above"
    );
    assert_eq!(
        ids(&h.lookup(&q(2, Anchor::Before(103)))),
        Some(vec![102, 101])
    );
    assert_eq!(h.lookup(&q(3, Anchor::Before(102))), Lookup::Miss);
    assert_eq!(
        h.lookup(&q(1, Anchor::After(50))),
        Lookup::Miss,
        "the gap before 100 is unknown"
    );
    assert_eq!(
        ids(&h.lookup(&q(3, Anchor::Around(102)))),
        Some(vec![103, 102, 101])
    );
    assert_eq!(h.lookup(&q(9, Anchor::Around(102))), Lookup::Miss);
}

#[test]
fn other_channels_miss() {
    let mut h = History::default();
    live(&mut h, 1, 3);
    let other = HistoryQuery {
        channel: 8,
        limit: 1,
        anchor: Anchor::Latest,
    };
    assert_eq!(h.lookup(&other), Lookup::Miss);
}

#[test]
fn a_short_rest_answer_proves_the_channel_start() {
    let mut h = History::default();
    let all = [10, 20, 30];
    let latest = q(50, Anchor::Latest);
    assert_eq!(h.lookup(&latest), Lookup::Miss);
    h.merge(&latest, &answer(&all, &latest));
    assert_eq!(ids(&h.lookup(&latest)), Some(vec![30, 20, 10]));
    assert_eq!(
        ids(&h.lookup(&q(2, Anchor::Before(30)))),
        Some(vec![20, 10])
    );
    assert_eq!(ids(&h.lookup(&q(9, Anchor::Before(10)))), Some(vec![]));
    assert_eq!(
        ids(&h.lookup(&q(9, Anchor::After(0)))),
        Some(vec![30, 20, 10])
    );
    // Then a live message: still complete.
    h.apply(&create(CH, 40, "new"));
    assert_eq!(ids(&h.lookup(&q(2, Anchor::Latest))), Some(vec![40, 30]));
    assert_eq!(ids(&h.lookup(&latest)), Some(vec![40, 30, 20, 10]));
}

#[test]
fn a_full_page_covers_only_down_to_its_oldest() {
    let mut h = History::default();
    let all: Vec<u64> = (1..=300).collect();
    let latest = q(50, Anchor::Latest);
    h.merge(&latest, &answer(&all, &latest));
    assert_eq!(ids(&h.lookup(&latest)).unwrap().len(), 50);
    assert_eq!(h.lookup(&q(51, Anchor::Latest)), Lookup::Miss);
    assert_eq!(h.lookup(&q(1, Anchor::Before(251))), Lookup::Miss);
    // The page before it joins up.
    let before = q(50, Anchor::Before(251));
    h.merge(&before, &answer(&all, &before));
    assert_eq!(ids(&h.lookup(&q(100, Anchor::Latest))).unwrap().len(), 100);
    assert_eq!(
        ids(&h.lookup(&q(3, Anchor::Around(251)))),
        Some(vec![252, 251, 250])
    );
}

#[test]
fn after_pages_and_around_answers_cover_what_they_returned() {
    let mut h = History::default();
    let all: Vec<u64> = (1..=300).collect();
    let after = q(10, Anchor::After(100));
    h.merge(&after, &answer(&all, &after));
    assert_eq!(
        ids(&h.lookup(&after)).unwrap(),
        (101..=110).rev().collect::<Vec<_>>()
    );
    assert_eq!(
        ids(&h.lookup(&q(5, Anchor::After(102)))).unwrap(),
        vec![107, 106, 105, 104, 103]
    );
    assert_eq!(h.lookup(&q(10, Anchor::After(102))), Lookup::Miss);
    let around = q(10, Anchor::Around(200));
    h.merge(&around, &answer(&all, &around));
    assert_eq!(
        ids(&h.lookup(&around)).unwrap(),
        (196..=205).rev().collect::<Vec<_>>()
    );
    assert_eq!(
        ids(&h.lookup(&q(4, Anchor::Around(198)))).unwrap(),
        vec![200, 199, 198, 197]
    );
    // A short after= reaches the newest message: open above.
    let tail = q(100, Anchor::After(250));
    h.merge(&tail, &answer(&all, &tail));
    assert_eq!(ids(&h.lookup(&q(2, Anchor::Latest))), Some(vec![300, 299]));
}

#[test]
fn edits_are_partial_and_reflected() {
    let mut h = History::default();
    live(&mut h, 1, 2);
    h.apply(&event(json!({"type":"messageUpdate","data":{"id":"1","channelId":"7","content":"edited","editedTimestamp":"2026-01-02T00:00:00.000Z"}})));
    // An update without content (an embed unfurled) clears nothing.
    h.apply(&event(
        json!({"type":"messageUpdate","data":{"id":"2","channelId":"7"}}),
    ));
    let Lookup::Hit(v) = h.lookup(&q(2, Anchor::Latest)) else {
        panic!()
    };
    assert_eq!(v[1].message.content, "edited");
    assert_eq!(
        v[1].edited_timestamp,
        Some(crate::payload::Timestamp::Text(
            "2026-01-02T00:00:00.000Z".into()
        ))
    );
    assert_eq!(v[0].message.content, "m2");
    assert_eq!(v[0].edited_timestamp, None);
    let json = serde_json::to_value(&v[1]).unwrap();
    assert_eq!(json["editedTimestamp"], "2026-01-02T00:00:00.000Z");
    assert_eq!(json["author"]["username"], "ada");
    assert_eq!(json["reactions"], json!([]));
    assert!(serde_json::to_value(&v[0])
        .unwrap()
        .get("editedTimestamp")
        .is_none());
}

#[test]
fn deletes_single_and_bulk_are_reflected_and_never_come_back() {
    let mut h = History::default();
    let all = [1, 2, 3, 4];
    let latest = q(50, Anchor::Latest);
    let stale = answer(&all, &latest);
    h.merge(&latest, &stale);
    for id in ["2", "3"] {
        h.apply(&event(
            json!({"type":"messageDelete","data":{"id":id,"channelId":"7"}}),
        ));
    }
    assert_eq!(ids(&h.lookup(&latest)), Some(vec![4, 1]));
    // A REST answer read before the deletes arrives late: 2 and 3 stay gone.
    h.merge(&latest, &stale);
    assert_eq!(ids(&h.lookup(&latest)), Some(vec![4, 1]));
}

#[test]
fn reactions_count_per_emoji() {
    let mut h = History::default();
    live(&mut h, 1, 1);
    let react = |kind: &str, user: &str, emoji: serde_json::Value| {
        event(
            json!({"type":kind,"data":{"channelId":"7","messageId":"1","userId":user,"emoji":emoji}}),
        )
    };
    let fire = json!({"id":null,"name":"🔥"});
    let custom = json!({"id":"55","name":"party"});
    h.apply(&react("reactionAdd", "1", fire.clone()));
    h.apply(&react("reactionAdd", "2", fire.clone()));
    h.apply(&react("reactionAdd", "1", custom.clone()));
    // Custom emoji match by id even if the name differs.
    h.apply(&react("reactionAdd", "3", json!({"id":"55","name":null})));
    let counts = |h: &mut History| {
        let Lookup::Hit(v) = h.lookup(&q(1, Anchor::Latest)) else {
            panic!()
        };
        serde_json::to_value(&v[0].reactions).unwrap()
    };
    assert_eq!(
        counts(&mut h),
        json!([{"emoji":{"id":null,"name":"🔥"},"count":2},{"emoji":{"id":"55","name":"party"},"count":2}])
    );
    h.apply(&react("reactionRemove", "1", fire.clone()));
    h.apply(&react("reactionRemove", "2", fire.clone()));
    h.apply(&react("reactionRemove", "2", fire));
    assert_eq!(
        counts(&mut h),
        json!([{"emoji":{"id":"55","name":"party"},"count":2}])
    );
    h.remove_reactions("7", "1", None);
    assert_eq!(counts(&mut h), json!([]));
}

#[test]
fn windows_are_bounded() {
    let mut h = History::new(HistoryLimits {
        per_channel: 10,
        channels: 2,
    });
    live(&mut h, 1, 25);
    assert_eq!(h.messages(), 10);
    assert_eq!(ids(&h.lookup(&q(10, Anchor::Latest))).unwrap().len(), 10);
    assert_eq!(
        h.lookup(&q(11, Anchor::Latest)),
        Lookup::Miss,
        "the trimmed ones are not claimed"
    );
    assert_eq!(h.lookup(&q(1, Anchor::Before(16))), Lookup::Miss);
    h.apply(&create(8, 1, "x"));
    h.apply(&create(9, 1, "x"));
    assert_eq!(h.channels(), 2);
    assert_eq!(
        h.lookup(&q(1, Anchor::Latest)),
        Lookup::Miss,
        "the least recently used went"
    );
    h.clear();
    assert_eq!(h.messages(), 0);
}

#[test]
fn answers_that_break_the_query_claim_nothing() {
    let mut h = History::default();
    let before = q(2, Anchor::Before(5));
    h.merge(&before, &[message(CH, 9), message(CH, 3)]);
    assert_eq!(h.lookup(&before), Lookup::Miss);
    h.merge(&q(2, Anchor::Latest), &[message(8, 9)]);
    assert_eq!(h.lookup(&q(1, Anchor::Latest)), Lookup::Miss);
}

#[derive(Debug, Clone)]
enum Op {
    /// A new message (newer than all), seen live.
    Create,
    /// Delete the n-th existing message, seen live.
    Delete(usize),
    /// A new Discord session: messages made meanwhile are not seen.
    Gap(u8),
    /// Read Discord and merge.
    Read(u32, u8, usize),
    /// Ask the window.
    Ask(u32, u8, usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => Just(Op::Create),
        1 => any::<usize>().prop_map(Op::Delete),
        1 => (0u8..4).prop_map(Op::Gap),
        2 => (1u32..12, 0u8..4, any::<usize>()).prop_map(|(l, a, i)| Op::Read(l, a, i)),
        4 => (1u32..12, 0u8..4, any::<usize>()).prop_map(|(l, a, i)| Op::Ask(l, a, i)),
    ]
}

fn query_of(all: &[u64], limit: u32, anchor: u8, pick: usize) -> HistoryQuery {
    // Anchors at existing ids, and between or beyond them.
    let x = if all.is_empty() {
        pick as u64 % 50
    } else {
        let base = all[pick % all.len()];
        if pick % 3 == 0 {
            base + 1
        } else {
            base
        }
    };
    let anchor = match anchor {
        0 => Anchor::Latest,
        1 => Anchor::Before(x),
        2 => Anchor::After(x),
        _ => Anchor::Around(x),
    };
    q(limit, anchor)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Whatever happened, a hit is exactly Discord's answer (the reference: the
    /// sorted list filtered by the rules), and a read is then served from memory.
    #[test]
    fn hits_are_always_discords_answer(pre in 0u64..15, ops in proptest::collection::vec(op(), 1..60), per_channel in 5usize..40) {
        let mut h = History::new(HistoryLimits { per_channel, channels: 4 });
        // Messages older than the gateway: never seen live.
        let mut all: Vec<u64> = (1..=pre).map(|i| i * 10).collect();
        let mut next = pre * 10 + 10;
        for op in ops {
            match op {
                Op::Create => {
                    all.push(next);
                    h.apply(&create(CH, next, "x"));
                    next += 10;
                }
                Op::Delete(i) if !all.is_empty() => {
                    let id = all.remove(i % all.len());
                    h.apply(&event(json!({"type":"messageDelete","data":{"id":id.to_string(),"channelId":"7"}})));
                }
                Op::Delete(_) => {}
                Op::Gap(n) => {
                    h.clear();
                    for _ in 0..n {
                        all.push(next);
                        next += 10;
                    }
                }
                Op::Read(l, a, i) => {
                    let query = query_of(&all, l, a, i);
                    h.merge(&query, &answer(&all, &query));
                    // The latest page is served from memory now (older pages
                    // may be cut away by the bound at once).
                    if query.anchor == Anchor::Latest && (l as usize) <= per_channel {
                        prop_assert!(matches!(h.lookup(&query), Lookup::Hit(_)), "{:?}", query);
                    }
                }
                Op::Ask(l, a, i) => {
                    let query = query_of(&all, l, a, i);
                    if let Some(got) = ids(&h.lookup(&query)) {
                        prop_assert_eq!(got, query.select(&all), "{:?}", query);
                    }
                }
            }
        }
    }

    /// Edits and reactions on held messages show in every hit.
    #[test]
    fn edits_and_reactions_show(n in 1u64..30, edits in proptest::collection::vec((any::<u64>(), any::<bool>()), 0..30)) {
        let mut h = History::default();
        live(&mut h, 1, n);
        let mut content: Vec<String> = (1..=n).map(|i| format!("m{i}")).collect();
        let mut reactions = vec![0u32; n as usize];
        for (pick, edit) in edits {
            let i = (pick % n) as usize;
            let id = (i + 1).to_string();
            if edit {
                content[i] = format!("e{pick}");
                h.apply(&event(json!({"type":"messageUpdate","data":{"id":id,"channelId":"7","content":content[i]}})));
            } else {
                reactions[i] += 1;
                h.apply(&event(json!({"type":"reactionAdd","data":{"channelId":"7","messageId":id,"userId":"1","emoji":{"id":null,"name":"👍"}}})));
            }
        }
        let Lookup::Hit(v) = h.lookup(&q(n as u32, Anchor::Latest)) else { panic!() };
        for m in v {
            let i = m.message.id.parse::<usize>().unwrap() - 1;
            prop_assert_eq!(&m.message.content, &content[i]);
            prop_assert_eq!(m.reactions.first().map_or(0, |r| r.count), reactions[i]);
        }
    }
}

#[test]
fn a_relay_dispatch_names_the_sender_of_a_webhook_post_read_first() {
    let mut h = History::new(HistoryLimits::default());
    // Read from Discord while the post's dispatch was on its way: the webhook as author.
    let mut read = message(CH, 5);
    read.message.author.id = "9".into();
    read.message.author.bot = true;
    read.message.via = Some("relay".into());
    read.reactions = vec![ReactionCount {
        emoji: Emoji {
            id: None,
            name: Some("👍".into()),
        },
        count: 1,
    }];
    let latest = q(50, Anchor::Latest);
    h.merge(&latest, &[read]);
    // The dispatch, attributed: the session's user (from `create`, id 42).
    let EventBody::MessageCreate(mut m) = create(CH, 5, "m5") else {
        unreachable!()
    };
    m.via = Some("relay".into());
    h.apply(&EventBody::MessageCreate(m));
    let Lookup::Hit(found) = h.lookup(&latest) else {
        panic!("the read covers the channel")
    };
    assert_eq!(found[0].message.author.id, "42");
    assert!(!found[0].message.author.bot);
    assert_eq!(found[0].reactions.len(), 1, "what the read knew stays");
    // A plain dispatch (no `via`) never replaces what a read held.
    h.apply(&create(CH, 5, "other"));
    let Lookup::Hit(found) = h.lookup(&latest) else {
        panic!()
    };
    assert_eq!(found[0].message.content, "m5");
}

#[test]
fn the_revision_counts_every_message_event_and_nothing_else() {
    let mut h = History::default();
    h.raise_rev(1_000);
    h.raise_rev(10); // never lowered
    assert_eq!(h.rev(), 1_000);
    live(&mut h, 1, 3);
    assert_eq!(h.rev(), 1_003, "three creates");
    // A reaction on a message no window holds still counts: a page read
    // later must say it came after it.
    h.apply(&event(
        json!({"type":"reactionAdd","data":{"channelId":"99","messageId":"5","userId":"1","emoji":{"id":null,"name":"x"}}}),
    ));
    h.apply(&event(
        json!({"type":"typingStart","data":{"channelId":"7","userId":"1","timestamp":1}}),
    ));
    assert_eq!(h.rev(), 1_004, "typing is no message event");
    h.remove_reactions("7", "1", None);
    assert_eq!(h.rev(), 1_005);
    // A lookup reads, it does not change the revision.
    let _ = h.lookup(&q(2, Anchor::Latest));
    assert_eq!(h.rev(), 1_005);
    // A new Discord session clears the windows, never the numbering.
    h.clear();
    assert_eq!(h.rev(), 1_005);
}
