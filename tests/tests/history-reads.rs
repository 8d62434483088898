//! History reads on real sockets (CONTRACT.md §9): every parameter rule, the
//! gateway's window (hits never reach Discord, a miss reaches it once and is
//! then served from memory), Discord's ordering for before/after/around,
//! edits, deletes and reactions reflected, the read bucket, a Discord 429,
//! and 503 with the link down.

use std::time::Duration;

use relay::config::AccessMode;
use relay_runtime::sim_discord::ids;
use relay_tests::history_rig::{ids_of, HistoryRig, WAIT};
use serde_json::{json, Value};

/// `n` messages in #general from before relay started, oldest first.
fn seed(rig: &HistoryRig, n: u64) -> Vec<String> {
    (0..n)
        .map(|i| {
            rig.sim
                .seed_message(
                    ids::ADA,
                    ids::GENERAL,
                    &format!("old {i}"),
                    (n - i) * 60_000,
                )
                .expect("seeded")
        })
        .collect()
}

fn newest_first(ids: &[String]) -> Vec<String> {
    ids.iter().rev().cloned().collect()
}

#[test]
fn every_parameter_rule_answers_400_with_issues_and_never_reaches_discord() {
    let rig = HistoryRig::start(AccessMode::Roles);
    let t = rig.token(ids::ADA);
    let cases: [(&str, &str, &str); 10] = [
        (ids::GENERAL, "limit=0", "limit"),
        (ids::GENERAL, "limit=101", "limit"),
        (ids::GENERAL, "limit=ten", "limit"),
        (ids::GENERAL, "limit=", "limit"),
        (ids::GENERAL, "before=1&after=2", "after"),
        (ids::GENERAL, "after=1&around=2", "around"),
        (ids::GENERAL, "before=abc", "before"),
        (ids::GENERAL, "around=99999999999999999999", "around"),
        (ids::GENERAL, "limit=5&limit=6", "limit"),
        ("general", "", "channelId"),
    ];
    for (channel, query, field) in cases {
        let r = rig.read(Some(&t), channel, query);
        assert_eq!(r.status, 400, "{query}: {}", r.body);
        let body = r.json();
        assert_eq!(body["error"]["code"], "invalid_request", "{query}");
        assert_eq!(body["issues"][0]["path"], json!([field]), "{query}: {body}");
        assert!(body["issues"][0]["message"].is_string());
    }
    // No session: 401 before anything else.
    assert_eq!(rig.read(None, ids::GENERAL, "limit=0").status, 401);
    assert_eq!(rig.read(Some("junk"), ids::GENERAL, "").status, 401);
    // Other methods: 405.
    let r = relay_tests::harness::post(
        &rig.base(),
        &format!("/api/channels/{}/messages", ids::GENERAL),
        Some(&t),
        "application/json",
        "{}",
    );
    assert_eq!(r.status, 405);
    assert_eq!(rig.discord_reads(), 0);
    // The defaults and bounds are accepted.
    for query in [
        "",
        "limit=1",
        "limit=100",
        "before=1",
        "after=1",
        "around=1",
    ] {
        assert_eq!(
            rig.read(Some(&t), ids::GENERAL, query).status,
            200,
            "{query}"
        );
    }
}

#[test]
fn a_miss_reaches_discord_once_and_is_then_served_from_the_window() {
    let rig = HistoryRig::start(AccessMode::Roles);
    let t = rig.token(ids::ADA);
    let seeded = seed(&rig, 8);
    let r = rig.read(Some(&t), ids::GENERAL, "limit=50");
    assert_eq!(ids_of(&r), newest_first(&seeded));
    let first = &r.json()["messages"][0];
    assert_eq!(first["content"], "old 7");
    assert_eq!(first["channelId"], ids::GENERAL);
    assert_eq!(first["guildId"], ids::GUILD);
    assert_eq!(first["author"]["id"], ids::ADA);
    assert_eq!(first["reactions"], json!([]));
    assert!(first.get("editedTimestamp").is_none());
    assert_eq!(rig.discord_reads(), 1, "a miss reaches Discord once");
    let get = rig
        .sim
        .requests()
        .into_iter()
        .find(|r| r.method == "GET" && r.path.contains("/messages"))
        .unwrap();
    assert_eq!(
        get.path,
        format!("/api/v10/channels/{}/messages?limit=50", ids::GENERAL)
    );
    // Fewer than 50 came back: that is the whole channel, so every page of it
    // is now served from the window.
    for query in [
        "limit=50",
        "limit=3",
        "before=",
        "after=0&limit=2",
        "around=",
    ] {
        let query = match query {
            "before=" => format!("before={}", seeded[5]),
            "around=" => format!("around={}&limit=3", seeded[2]),
            q => q.to_owned(),
        };
        assert_eq!(rig.read(Some(&t), ids::GENERAL, &query).status, 200);
    }
    assert_eq!(rig.discord_reads(), 1, "served from the window");
}

#[test]
fn live_messages_are_served_without_discord_until_something_older_is_asked() {
    let rig = HistoryRig::start(AccessMode::Roles);
    let t = rig.token(ids::ADA);
    let mut live = Vec::new();
    for i in 0..5 {
        live.push(
            rig.sim
                .post_as(ids::GRACE, ids::GENERAL, &format!("live {i}"))
                .unwrap(),
        );
    }
    // The gateway's window holds them once its translator has seen them (this
    // test is about the window, not about SSE delivery).
    let deadline = std::time::Instant::now() + WAIT;
    let gateway = rig.gateway.as_ref().expect("the gateway runs");
    while gateway.history_messages() < 5 {
        assert!(
            std::time::Instant::now() < deadline,
            "the gateway saw the messages"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let r = rig.read(Some(&t), ids::GENERAL, "limit=5");
    assert_eq!(ids_of(&r), newest_first(&live));
    assert_eq!(
        ids_of(&rig.read(
            Some(&t),
            ids::GENERAL,
            &format!("after={}&limit=2", live[1])
        )),
        vec![live[3].clone(), live[2].clone()]
    );
    assert_eq!(
        rig.discord_reads(),
        0,
        "the window saw every one of them live"
    );
    // Six: something older might exist, so Discord is asked, once.
    assert_eq!(
        ids_of(&rig.read(Some(&t), ids::GENERAL, "limit=6")).len(),
        5
    );
    assert_eq!(rig.discord_reads(), 1);
    assert_eq!(
        ids_of(&rig.read(Some(&t), ids::GENERAL, "limit=100")).len(),
        5
    );
    assert_eq!(rig.discord_reads(), 1);
}

#[test]
fn before_after_and_around_are_newest_first_as_discord_orders_them() {
    let rig = HistoryRig::start(AccessMode::Roles);
    let t = rig.token(ids::ADA);
    let s = seed(&rig, 12);
    let page = |q: String| ids_of(&rig.read(Some(&t), ids::GENERAL, &q));
    let expect = |idx: &[usize]| idx.iter().map(|i| s[*i].clone()).collect::<Vec<_>>();
    // Each asked twice: the first from Discord (or the window), the second from the window.
    for _ in 0..2 {
        assert_eq!(page("limit=3".into()), expect(&[11, 10, 9]));
        assert_eq!(page(format!("limit=3&before={}", s[6])), expect(&[5, 4, 3]));
        assert_eq!(page(format!("limit=3&after={}", s[6])), expect(&[9, 8, 7]));
        assert_eq!(
            page(format!("limit=4&around={}", s[6])),
            expect(&[8, 7, 6, 5])
        );
        assert_eq!(
            page(format!("limit=5&around={}", s[6])),
            expect(&[8, 7, 6, 5, 4])
        );
        assert_eq!(page(format!("limit=50&before={}", s[2])), expect(&[1, 0]));
        assert_eq!(page(format!("limit=50&after={}", s[9])), expect(&[11, 10]));
    }
}

fn messages(r: &relay_tests::harness::Response) -> Vec<Value> {
    r.json()["messages"].as_array().unwrap().clone()
}

#[test]
fn edits_deletes_and_reactions_are_reflected_without_reading_discord_again() {
    let rig = HistoryRig::start(AccessMode::Roles);
    let t = rig.token(ids::ADA);
    let s = seed(&rig, 4);
    assert_eq!(ids_of(&rig.read(Some(&t), ids::GENERAL, "")).len(), 4);
    assert_eq!(rig.discord_reads(), 1);
    let mut stream = rig.stream(ids::ADA);

    assert!(rig.sim.edit_message(ids::GENERAL, &s[3], "old 3, edited"));
    assert!(rig.sim.react_as(ids::GRACE, ids::GENERAL, &s[3], "🔥"));
    assert!(rig.sim.react_as(ids::LINUS, ids::GENERAL, &s[3], "🔥"));
    assert!(rig.sim.react_as(ids::LINUS, ids::GENERAL, &s[2], "🎉"));
    assert!(rig.sim.unreact_as(ids::LINUS, ids::GENERAL, &s[3], "🔥"));
    assert!(rig.sim.unreact_as(ids::LINUS, ids::GENERAL, &s[2], "🎉"));
    assert!(rig.sim.delete_messages(ids::GENERAL, &[&s[1]]));
    assert!(rig.sim.delete_messages(ids::GENERAL, &[&s[0], "1"]));
    // The new event on the stream, in Discord's shape translated.
    let removed = stream
        .wait_for("reactionRemove", WAIT)
        .expect("reactionRemove");
    let removed: Value = serde_json::from_str(&removed.data).unwrap();
    assert_eq!(
        removed["data"],
        json!({"channelId": ids::GENERAL, "messageId": s[3], "userId": ids::LINUS,
               "emoji": {"id": null, "name": "🔥"}, "guildId": ids::GUILD})
    );
    stream
        .wait_for("reactionRemove", WAIT)
        .expect("the second one");
    stream.wait_for("messageDelete", WAIT).expect("delete");
    stream.wait_for("messageDelete", WAIT).expect("bulk delete");

    let r = rig.read(Some(&t), ids::GENERAL, "");
    assert_eq!(ids_of(&r), vec![s[3].clone(), s[2].clone()]);
    let m = messages(&r);
    assert_eq!(m[0]["content"], "old 3, edited");
    assert!(m[0]["editedTimestamp"].is_string());
    assert_eq!(
        m[0]["reactions"],
        json!([{"emoji": {"id": null, "name": "🔥"}, "count": 1}])
    );
    assert_eq!(m[1]["reactions"], json!([]));
    assert_eq!(rig.discord_reads(), 1, "all of it from the window");

    // Discord's own answer agrees (a fresh gateway would read this).
    let direct: Value = serde_json::from_str(
        &relay_tests::harness::agent()
            .get(&format!(
                "{}/channels/{}/messages?limit=2",
                rig.sim.api_base(),
                ids::GENERAL
            ))
            .header("Authorization", &format!("Bot {}", rig.sim.bot_token()))
            .call()
            .unwrap()
            .body_mut()
            .read_to_string()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(direct[0]["content"], "old 3, edited");
    assert_eq!(direct[0]["reactions"][0]["count"], 1);
    assert_eq!(direct[0]["reactions"][0]["me"], false);
    assert_eq!(direct[0]["reactions"][0]["emoji"]["name"], "🔥");
    assert_eq!(direct.as_array().unwrap().len(), 2);
}

#[test]
fn the_read_bucket_is_per_user_and_apart_from_commands() {
    let rig = HistoryRig::start(AccessMode::Roles);
    let ada = rig.token(ids::ADA);
    let grace = rig.token(ids::GRACE);
    for i in 0..20 {
        assert_eq!(
            rig.read(Some(&ada), ids::GENERAL, "").status,
            200,
            "read {i}"
        );
    }
    let r = rig.read(Some(&ada), ids::GENERAL, "");
    assert_eq!(r.status, 429, "{}", r.body);
    assert_eq!(r.json()["error"]["code"], "rate_limited");
    let wait = r.json()["retryAfterMs"].as_u64().unwrap();
    assert!(wait > 0 && wait <= 500, "one token per 500 ms: {wait}");
    assert_eq!(r.header("retry-after"), Some("1"));
    // Another user's reads, and Ada's commands, are not affected.
    assert_eq!(rig.read(Some(&grace), ids::GENERAL, "").status, 200);
    let cmd = relay_tests::harness::post(
        &rig.base(),
        "/api/typing-start",
        Some(&rig.edge.issue_token(
            ids::ADA,
            None,
            &["chat:write".into()],
            Duration::from_secs(60),
        )),
        "application/json",
        &json!({"channelId": ids::GENERAL}).to_string(),
    );
    assert_eq!(cmd.status, 200, "{}", cmd.body);
    std::thread::sleep(Duration::from_millis(wait + 50));
    assert_eq!(rig.read(Some(&ada), ids::GENERAL, "").status, 200);
}

#[test]
fn discords_429_becomes_429_and_errors_502() {
    let rig = HistoryRig::start(AccessMode::Roles);
    let t = rig.token(ids::ADA);
    rig.sim.force_429(1, false);
    let r = rig.read(Some(&t), ids::GENERAL, "");
    assert_eq!(r.status, 429, "{}", r.body);
    assert!(r.json()["retryAfterMs"].as_u64().unwrap() > 0);
    assert!(r.header("retry-after").is_some());
    // A channel Discord does not know: its 404 is a gateway error.
    let r = rig.read(Some(&t), "1234", "");
    assert_eq!(r.status, 502, "{}", r.body);
    assert_eq!(r.json()["error"]["gatewayCode"], "discord_not_found");
}

#[test]
fn with_the_link_down_reads_answer_503_and_are_not_queued() {
    let mut rig = HistoryRig::start(AccessMode::Roles);
    let t = rig.token(ids::ADA);
    rig.gateway.take().unwrap().shutdown();
    assert!(rig.edge.wait_link(false, WAIT));
    let r = rig.read(Some(&t), ids::GENERAL, "");
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(r.json()["error"]["code"], "gateway_unavailable");
    let ready = relay_tests::harness::get(&rig.base(), "/readyz");
    assert_eq!(ready.json()["queueDepth"], 0, "nothing was queued");
}

/// The window revision (docs/history.md): a page says which message events
/// it already counts, so a client skips a reaction made while the page was
/// on its way instead of counting it twice.
#[test]
fn pages_and_message_events_carry_window_revisions_that_order_them() {
    let rig = HistoryRig::start(AccessMode::Roles);
    let t = rig.token(ids::ADA);
    let s = seed(&rig, 2);
    let rev_of = |r: &relay_tests::harness::Response| {
        r.json()["rev"].as_u64().expect("a page says its revision")
    };
    let first = rig.read(Some(&t), ids::GENERAL, "");
    let p0 = rev_of(&first);
    // Numbered from the gateway's start time in µs: above any earlier gateway's.
    assert!(p0 > 1_700_000_000_000_000, "{p0}");
    let mut stream = rig.stream(ids::ADA);
    let mut reacted = |user: &str| {
        assert!(rig.sim.react_as(user, ids::GENERAL, &s[1], "🔥"));
        let ev = stream.wait_for("reactionAdd", WAIT).expect("reactionAdd");
        let ev: Value = serde_json::from_str(&ev.data).unwrap();
        ev["meta"]["rev"]
            .as_u64()
            .expect("a message event says its revision")
    };
    let r1 = reacted(ids::GRACE);
    assert!(r1 > p0, "{r1} after {p0}");
    let page = rig.read(Some(&t), ids::GENERAL, "");
    let p1 = rev_of(&page);
    assert!(p1 >= r1, "the page counts the reaction: {p1} >= {r1}");
    assert_eq!(messages(&page)[0]["reactions"][0]["count"], 1);
    assert_eq!(
        rev_of(&rig.read(Some(&t), ids::GENERAL, "")),
        p1,
        "reads alone do not move it"
    );
    let r2 = reacted(ids::LINUS);
    assert!(r2 > p1, "a later event is above the page: {r2} > {p1}");
    assert_eq!(rig.discord_reads(), 1, "all but the first from the window");
}
