//! Loopback tests of the simulator: a real tungstenite client on the gateway and a
//! raw HTTP/1.1 client on REST, each test with its own simulator.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

use super::*;

type Ws = WebSocket<MaybeTlsStream<TcpStream>>;

/// Longest any single wait in these tests may take.
const WAIT: Duration = Duration::from_secs(2);

fn start() -> SimDiscord {
    start_with(SimConfig::default())
}

fn start_with(config: SimConfig) -> SimDiscord {
    SimDiscord::start(SimConfig {
        heartbeat_interval: Duration::from_millis(200),
        ..config
    })
    .expect("simulator starts")
}

fn connect(url: &str) -> Ws {
    let (mut ws, _) = tungstenite::connect(url).expect("gateway upgrade");
    if let MaybeTlsStream::Plain(s) = ws.get_mut() {
        s.set_read_timeout(Some(WAIT)).unwrap();
    }
    ws
}

fn gateway(sim: &SimDiscord) -> Ws {
    connect(&format!("{}/?v=10&encoding=json", sim.gateway_url()))
}

fn send(ws: &mut Ws, payload: Value) {
    ws.send(Message::text(payload.to_string())).unwrap();
}

/// The next JSON frame; panics on close or after [`WAIT`].
fn recv(ws: &mut Ws) -> Value {
    loop {
        match ws.read().expect("a frame in time") {
            Message::Text(t) => return serde_json::from_str(&t).unwrap(),
            Message::Close(f) => panic!("closed: {f:?}"),
            _ => {}
        }
    }
}

/// Skips frames until the close frame; returns its code.
fn recv_close(ws: &mut Ws) -> Option<u16> {
    loop {
        match ws.read() {
            Ok(Message::Close(f)) => return f.map(|f| u16::from(f.code)),
            Ok(_) => {}
            Err(e) => panic!("no close frame: {e}"),
        }
    }
}

fn next_dispatch(ws: &mut Ws, name: &str) -> Value {
    loop {
        let frame = recv(ws);
        if frame["t"] == name {
            return frame;
        }
    }
}

fn identify(ws: &mut Ws, token: &str, intents: u64) {
    send(
        ws,
        json!({ "op": 2, "d": { "token": token, "intents": intents,
            "properties": { "os": "linux", "browser": "relay", "device": "relay" } } }),
    );
}

/// Connects, reads Hello, identifies with relay's intents; returns READY and GUILD_CREATE.
fn session(sim: &SimDiscord, intents: u64) -> (Ws, Value, Value) {
    let mut ws = gateway(sim);
    assert_eq!(recv(&mut ws)["op"], 10);
    identify(&mut ws, sim.bot_token(), intents);
    let ready = recv(&mut ws);
    let guild = recv(&mut ws);
    (ws, ready, guild)
}

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + WAIT;
    while !cond() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

struct HttpReply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl HttpReply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

/// One request on a fresh connection (`Connection: close`). `path` is below the API base.
fn http(
    sim: &SimDiscord,
    method: &str,
    path: &str,
    token: Option<&str>,
    extra: &[(&str, &str)],
    body: Option<&str>,
) -> HttpReply {
    let base = sim.api_base();
    let host = base
        .strip_prefix("http://")
        .and_then(|b| b.split('/').next())
        .unwrap()
        .to_owned();
    let mut s = TcpStream::connect(&host).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    let mut head = format!(
        "{method} /api/v10{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nUser-Agent: DiscordBot (https://example.invalid, 1)\r\n"
    );
    if let Some(t) = token {
        head += &format!("Authorization: Bot {t}\r\n");
    }
    for (n, v) in extra {
        head += &format!("{n}: {v}\r\n");
    }
    let body = body.unwrap_or("");
    head += &format!(
        "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let raw = String::from_utf8(raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(": "))
        .map(|(n, v)| (n.to_owned(), v.to_owned()))
        .collect();
    HttpReply {
        status,
        headers,
        body: body.to_owned(),
    }
}

fn post_message(sim: &SimDiscord, channel: &str, content: &str) -> HttpReply {
    post_message_body(
        sim,
        channel,
        &json!({ "content": content, "allowed_mentions": { "parse": [] } }),
    )
}

fn post_message_body(sim: &SimDiscord, channel: &str, body: &Value) -> HttpReply {
    http(
        sim,
        "POST",
        &format!("/channels/{channel}/messages"),
        Some(sim.bot_token()),
        &[],
        Some(&body.to_string()),
    )
}

// ---------- gateway ----------

#[test]
fn simulator_handle_is_shareable_across_threads() {
    fn shareable<T: Send + Sync>() {}
    shareable::<SimDiscord>();
}

#[test]
fn identify_gets_hello_ready_and_guild_create() {
    let sim = start();
    let mut ws = gateway(&sim);
    let hello = recv(&mut ws);
    assert_eq!(
        hello,
        json!({ "op": 10, "d": { "heartbeat_interval": 200 }, "s": null, "t": null })
    );
    identify(&mut ws, sim.bot_token(), intents::RELAY);
    let ready = recv(&mut ws);
    assert_eq!(
        (ready["op"].clone(), ready["t"].clone(), ready["s"].clone()),
        (json!(0), json!("READY"), json!(1))
    );
    let d = &ready["d"];
    assert_eq!(d["v"], 10);
    assert_eq!(d["user"]["id"], ids::BOT_USER);
    assert_eq!(d["user"]["bot"], true);
    assert_eq!(
        d["guilds"],
        json!([{ "id": ids::GUILD, "unavailable": true }])
    );
    assert_eq!(d["session_id"].as_str().map(str::len), Some(32));
    assert_eq!(d["resume_gateway_url"], sim.resume_gateway_url());
    assert_eq!(d["application"], json!({ "id": ids::BOT_USER, "flags": 0 }));

    let guild = recv(&mut ws);
    assert_eq!(
        (guild["t"].clone(), guild["s"].clone()),
        (json!("GUILD_CREATE"), json!(2))
    );
    let g = &guild["d"];
    assert_eq!(
        (g["id"].as_str(), g["name"].as_str()),
        (Some(ids::GUILD), Some(GUILD_NAME))
    );
    let voice = g["voice_states"].as_array().unwrap();
    assert!(!voice.is_empty());
    for v in voice {
        assert!(
            v.get("guild_id").is_none(),
            "GUILD_CREATE voice states have no guild_id"
        );
        assert!(v["user_id"].is_string() && v["channel_id"].is_string());
    }
    // relay asks for no GUILD_PRESENCES: only the bot and the members in voice.
    let mut members: Vec<&str> = g["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["user"]["id"].as_str().unwrap())
        .collect();
    members.sort_unstable();
    let mut expected = vec![ids::BOT_USER, ids::LINUS, ids::GRACE];
    expected.sort_unstable();
    assert_eq!(members, expected);
    assert_eq!(
        g["member_count"],
        2 + demo_users().len(),
        "owner and bot too"
    );
    let kinds: Vec<_> = g["channels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["type"].as_u64())
        .collect();
    assert!(kinds.contains(&Some(0)) && kinds.contains(&Some(2)));
    assert_eq!(sim.identify_count(), 1);
    assert_eq!(sim.connections(), 1);
    assert_eq!(sim.received_ops()[0]["op"], 2);
    sim.shutdown();
}

#[test]
fn heartbeats_are_acked_until_silenced() {
    let sim = start();
    let (mut ws, _, _) = session(&sim, intents::RELAY);
    send(&mut ws, json!({ "op": 1, "d": 2 }));
    assert_eq!(
        recv(&mut ws),
        json!({ "op": 11, "d": null, "s": null, "t": null })
    );
    assert_eq!(sim.heartbeats_received(), 1);

    sim.set_ack_heartbeats(false);
    send(&mut ws, json!({ "op": 1, "d": 2 }));
    wait_until("the second heartbeat", || sim.heartbeats_received() == 2);
    // Had an ACK been sent, it would come before this dispatch.
    sim.dispatch("TEST_EVENT", json!({ "n": 1 }));
    let next = recv(&mut ws);
    assert_eq!(
        (next["t"].clone(), next["s"].clone()),
        (json!("TEST_EVENT"), json!(3))
    );
}

#[test]
fn resume_replays_missed_dispatches_in_order_then_resumed() {
    let sim = start();
    let (mut ws, ready, _) = session(&sim, intents::RELAY);
    let sid = ready["d"]["session_id"].as_str().unwrap().to_owned();
    sim.dispatch("TEST_EVENT", json!({ "n": 1 }));
    assert_eq!(recv(&mut ws)["s"], 3);
    drop(ws); // a bare TCP drop keeps the session resumable
    sim.dispatch("TEST_EVENT", json!({ "n": 2 }));
    sim.dispatch("TEST_EVENT", json!({ "n": 3 }));

    let mut ws = connect(&format!("{}?v=10&encoding=json", sim.resume_gateway_url()));
    assert_eq!(recv(&mut ws)["op"], 10);
    send(
        &mut ws,
        json!({ "op": 6, "d": { "token": sim.bot_token(), "session_id": sid, "seq": 3 } }),
    );
    for (s, n) in [(4, 2), (5, 3)] {
        let f = recv(&mut ws);
        assert_eq!(
            (f["t"].clone(), f["s"].clone(), f["d"]["n"].clone()),
            (json!("TEST_EVENT"), json!(s), json!(n))
        );
    }
    let resumed = recv(&mut ws);
    assert_eq!(
        (resumed["t"].clone(), resumed["s"].clone()),
        (json!("RESUMED"), json!(6))
    );
    sim.dispatch("TEST_EVENT", json!({ "n": 4 }));
    assert_eq!(recv(&mut ws)["s"], 7);
    assert_eq!(sim.resume_count(), 1);
    assert_eq!(sim.identify_count(), 1);
    assert_eq!(sim.last_resume(), Some((sid, 3)));
    assert!(sim.connection_urls()[1].starts_with("/resume?"));
}

#[test]
fn resume_refusals_op9_false_and_4007() {
    let sim = start();
    let mut ws = gateway(&sim);
    recv(&mut ws);
    send(
        &mut ws,
        json!({ "op": 6, "d": { "token": sim.bot_token(), "session_id": "nope", "seq": 1 } }),
    );
    assert_eq!(
        recv(&mut ws),
        json!({ "op": 9, "d": false, "s": null, "t": null })
    );

    let (_first, ready, _) = session(&sim, intents::RELAY);
    let sid = ready["d"]["session_id"].clone();
    let mut ws = gateway(&sim);
    recv(&mut ws);
    send(
        &mut ws,
        json!({ "op": 6, "d": { "token": sim.bot_token(), "session_id": sid, "seq": 99 } }),
    );
    assert_eq!(recv_close(&mut ws), Some(4007));
    assert!(sim.session_ids().is_empty(), "4007 ends the session");
}

#[test]
fn reconnect_and_invalid_session_on_demand() {
    let sim = start();
    let (mut ws, ready, _) = session(&sim, intents::RELAY);
    sim.send_reconnect();
    assert_eq!(
        recv(&mut ws),
        json!({ "op": 7, "d": null, "s": null, "t": null })
    );
    sim.invalidate_session(true);
    assert_eq!(recv(&mut ws)["d"], true);
    assert_eq!(
        sim.session_ids(),
        vec![ready["d"]["session_id"].as_str().unwrap().to_owned()]
    );
    sim.invalidate_session(false);
    assert_eq!(
        recv(&mut ws),
        json!({ "op": 9, "d": false, "s": null, "t": null })
    );
    assert!(sim.session_ids().is_empty());
    // The connection may identify again from scratch.
    identify(&mut ws, sim.bot_token(), intents::RELAY);
    assert_eq!(next_dispatch(&mut ws, "READY")["s"], 1);
    assert_eq!(sim.identify_count(), 2);
}

#[test]
fn bad_identify_and_bad_frames_get_discords_close_codes() {
    let sim = start_with(SimConfig {
        allowed_privileged_intents: 0,
        ..SimConfig::default()
    });
    let case = |url_query: &str, frames: &[Value]| {
        let mut ws = connect(&format!("{}/{url_query}", sim.gateway_url()));
        for f in frames {
            send(&mut ws, f.clone());
        }
        recv_close(&mut ws)
    };
    let q = "?v=10&encoding=json";
    let no_priv = intents::RELAY & !intents::MESSAGE_CONTENT;
    let ident = |token: &str, intents: Value| json!({ "op": 2, "d": { "token": token, "intents": intents } });
    assert_eq!(case(q, &[ident("wrong", json!(no_priv))]), Some(4004));
    assert_eq!(
        case(q, &[ident(sim.bot_token(), json!(1u64 << 18))]),
        Some(4013)
    );
    assert_eq!(case(q, &[ident(sim.bot_token(), json!("all"))]), Some(4013));
    assert_eq!(
        case(q, &[ident(sim.bot_token(), json!(intents::RELAY))]),
        Some(4014)
    );
    assert_eq!(case("?v=9&encoding=json", &[]), Some(4012));
    assert_eq!(case("?v=10&encoding=etf", &[]), Some(4002));
    assert_eq!(case(q, &[json!("not a payload")]), Some(4001));
    assert_eq!(case(q, &[json!({ "op": 8, "d": {} })]), Some(4003));
    assert_eq!(case(q, &[json!({ "op": 99, "d": null })]), Some(4001));
    let twice = ident(sim.bot_token(), json!(no_priv));
    assert_eq!(case(q, &[twice.clone(), twice]), Some(4005));
    let mut ws = gateway(&sim);
    ws.send(Message::text("{nope")).unwrap();
    assert_eq!(recv_close(&mut ws), Some(4002));
    assert_eq!(
        sim.identify_count(),
        1,
        "only the first identify of the twice case"
    );
}

#[test]
fn close_with_and_drop_connections() {
    let sim = start();
    let (mut ws, ready, _) = session(&sim, intents::RELAY);
    let sid = ready["d"]["session_id"].as_str().unwrap().to_owned();
    sim.close_with(4000);
    assert_eq!(recv_close(&mut ws), Some(4000));
    assert_eq!(
        sim.session_ids(),
        vec![sid.clone()],
        "4000 keeps the session"
    );

    let (mut ws, _, _) = session(&sim, intents::RELAY);
    wait_until("two open connections at most", || {
        sim.open_connections() == 1
    });
    sim.drop_connections();
    match ws.read() {
        Err(tungstenite::Error::Protocol(_))
        | Err(tungstenite::Error::Io(_))
        | Err(tungstenite::Error::ConnectionClosed) => {}
        other => panic!("expected a bare drop, got {other:?}"),
    }
    assert_eq!(
        sim.session_ids().len(),
        2,
        "a drop keeps sessions resumable"
    );

    let (mut ws, _, _) = session(&sim, intents::RELAY);
    sim.close_with(4009);
    assert_eq!(recv_close(&mut ws), Some(4009));
    assert_eq!(
        sim.session_ids().len(),
        2,
        "4009 ends the connection's session"
    );
    wait_until("all connections closed", || sim.open_connections() == 0);
}

#[test]
fn client_close_1000_ends_the_session() {
    let sim = start();
    let (mut ws, _, _) = session(&sim, intents::RELAY);
    ws.close(Some(tungstenite::protocol::CloseFrame {
        code: tungstenite::protocol::frame::coding::CloseCode::Normal,
        reason: "".into(),
    }))
    .unwrap();
    assert_eq!(recv_close(&mut ws), Some(1000));
    wait_until("the session to end", || sim.session_ids().is_empty());
}

#[test]
fn intents_filter_events_and_hide_content() {
    let sim = start();
    let (mut ws, _, _) = session(&sim, intents::GUILDS | intents::GUILD_MESSAGES);
    assert!(sim.voice_leave(ids::LINUS));
    sim.post_as(ids::ADA, ids::GENERAL, "secret plans").unwrap();
    let m = recv(&mut ws);
    assert_eq!(
        (m["t"].clone(), m["s"].clone()),
        (json!("MESSAGE_CREATE"), json!(3)),
        "no VOICE_STATE_UPDATE"
    );
    assert_eq!(m["d"]["content"], "", "no MESSAGE_CONTENT intent");
    assert_eq!(m["d"]["author"]["id"], ids::ADA);
    assert_eq!(post_message(&sim, ids::GENERAL, "bot says hi").status, 200);
    assert_eq!(
        recv(&mut ws)["d"]["content"],
        "bot says hi",
        "the bot's own message keeps content"
    );
}

// ---------- REST ----------

#[test]
fn posted_message_is_answered_and_echoed_as_message_create() {
    let sim = start();
    let (mut ws, _, _) = session(&sim, intents::RELAY);
    let reply = post_message(&sim, ids::GENERAL, "héllo 🌍");
    assert_eq!(reply.status, 200, "{}", reply.body);
    let msg = reply.json();
    assert_eq!(msg["content"], "héllo 🌍");
    assert_eq!(msg["author"]["id"], ids::BOT_USER);
    assert_eq!(msg["channel_id"], ids::GENERAL);
    let id: u64 = msg["id"].as_str().unwrap().parse().unwrap();
    let made = snowflake_time_ms(id);
    assert!(
        made.abs_diff(unix_ms()) < 60_000,
        "a timestamp-based snowflake"
    );
    assert_eq!(reply.header("x-ratelimit-limit"), Some("5"));
    assert_eq!(reply.header("x-ratelimit-remaining"), Some("4"));
    assert!(reply.header("x-ratelimit-bucket").is_some());
    let after: f64 = reply
        .header("x-ratelimit-reset-after")
        .unwrap()
        .parse()
        .unwrap();
    assert!(after > 0.0 && after <= 5.0);

    let echo = next_dispatch(&mut ws, "MESSAGE_CREATE")["d"].clone();
    assert_eq!(echo["id"], msg["id"]);
    assert_eq!(echo["guild_id"], ids::GUILD);
    assert!(echo["member"].is_object() && echo["member"].get("user").is_none());

    let req = sim.requests().pop().unwrap();
    assert_eq!(req.method, "POST");
    assert_eq!(
        req.path,
        format!("/api/v10/channels/{}/messages", ids::GENERAL)
    );
    assert_eq!(req.header("Authorization"), Some("Bot sim-bot-token"));
    assert_eq!(
        req.json().unwrap()["allowed_mentions"],
        json!({ "parse": [] })
    );

    let bad = |channel: &str, content: &str| {
        let r = post_message(&sim, channel, content);
        (r.status, r.json()["code"].clone())
    };
    assert_eq!(bad("1", "x"), (404, json!(10003)));
    assert_eq!(bad(ids::GAME_ROOM, ""), (400, json!(50006)));
    assert_eq!(bad(ids::GAME_ROOM, &"é".repeat(2001)), (400, json!(50035)));
    assert_eq!(bad(ids::GAME_ROOM, &"é".repeat(2000)), (200, Value::Null));
}

#[test]
fn reactions_decode_percent_encoded_emoji() {
    let sim = start();
    let (mut ws, _, _) = session(&sim, intents::RELAY);
    let put = |channel: &str, emoji: &str| {
        http(
            &sim,
            "PUT",
            &format!("/channels/{channel}/messages/123/reactions/{emoji}/@me"),
            Some(sim.bot_token()),
            &[],
            None,
        )
    };
    assert_eq!(put(ids::GENERAL, "%F0%9F%94%A5").status, 204);
    let r = next_dispatch(&mut ws, "MESSAGE_REACTION_ADD")["d"].clone();
    assert_eq!(r["emoji"], json!({ "id": null, "name": "🔥" }));
    assert_eq!(
        (r["user_id"].as_str(), r["message_id"].as_str()),
        (Some(ids::BOT_USER), Some("123"))
    );
    assert_eq!(r["member"]["user"]["id"], ids::BOT_USER);

    assert_eq!(put(ids::GAME_ROOM, "LUL:41771983429993937").status, 204);
    let r = next_dispatch(&mut ws, "MESSAGE_REACTION_ADD")["d"].clone();
    assert_eq!(
        r["emoji"],
        json!({ "id": "41771983429993937", "name": "LUL" })
    );

    let bad = put(ids::LOBBY, "%F0%9F%94");
    assert_eq!(
        (bad.status, bad.json()),
        (400, json!({ "message": "Unknown Emoji", "code": 10014 }))
    );
    assert!(
        sim.requests()[0].path.contains("/%F0%9F%94%A5/"),
        "paths are recorded raw"
    );
    // Discord's reaction bucket: 1 per 250 ms per channel.
    assert_eq!(put(ids::GENERAL, "%F0%9F%91%8D").status, 429);
}

#[test]
fn exhausted_bucket_answers_429_with_headers() {
    let sim = start();
    for left in (0..5).rev() {
        let r = post_message(&sim, ids::GAME_ROOM, "spam");
        assert_eq!(r.status, 200);
        assert_eq!(
            r.header("X-RateLimit-Remaining"),
            Some(left.to_string().as_str())
        );
    }
    let r = post_message(&sim, ids::GAME_ROOM, "spam");
    assert_eq!(r.status, 429);
    let body = r.json();
    assert_eq!(body["message"], "You are being rate limited.");
    assert_eq!(body["global"], false);
    let retry = body["retry_after"].as_f64().unwrap();
    assert!(retry > 0.0 && retry <= 5.0, "{retry}");
    assert_eq!(r.header("X-RateLimit-Scope"), Some("user"));
    assert_eq!(r.header("X-RateLimit-Remaining"), Some("0"));
    assert_eq!(r.header("Retry-After"), Some("5"));
    assert!(r.header("X-RateLimit-Global").is_none());
    // Buckets are per channel.
    assert_eq!(post_message(&sim, ids::GENERAL, "elsewhere").status, 200);
}

#[test]
fn forced_429s_global_and_per_route() {
    let sim = start();
    sim.force_429(2, true);
    for _ in 0..2 {
        let r = post_message(&sim, ids::GENERAL, "x");
        assert_eq!(r.status, 429);
        assert_eq!(r.header("X-RateLimit-Global"), Some("true"));
        assert_eq!(r.header("X-RateLimit-Scope"), Some("global"));
        assert_eq!(
            r.json(),
            json!({ "message": "You are being rate limited.", "retry_after": 0.25, "global": true })
        );
    }
    assert_eq!(post_message(&sim, ids::GENERAL, "x").status, 200);
    sim.force_429(1, false);
    let r = post_message(&sim, ids::GENERAL, "x");
    assert_eq!((r.status, r.json()["global"].clone()), (429, json!(false)));
    assert_eq!(r.header("X-RateLimit-Scope"), Some("user"));
}

#[test]
fn global_limit_per_second() {
    let sim = start_with(SimConfig {
        global_limit_per_sec: 3,
        ..SimConfig::default()
    });
    let statuses: Vec<u16> = (0..4)
        .map(|_| {
            http(
                &sim,
                "GET",
                "/gateway/bot",
                Some(sim.bot_token()),
                &[],
                None,
            )
            .status
        })
        .collect();
    assert_eq!(statuses, [200, 200, 200, 429]);
}

#[test]
fn wrong_or_missing_bot_token_is_401() {
    let sim = start();
    for token in [Some("wrong"), None] {
        let r = http(&sim, "GET", "/gateway/bot", token, &[], None);
        assert_eq!(
            (r.status, r.json()),
            (401, json!({ "message": "401: Unauthorized", "code": 0 }))
        );
    }
    let r = http(&sim, "GET", "/gateway", None, &[], None);
    assert_eq!(
        (r.status, r.json()),
        (200, json!({ "url": sim.gateway_url() }))
    );
    assert_eq!(
        http(&sim, "GET", "/nowhere", Some(sim.bot_token()), &[], None).status,
        404
    );
    assert_eq!(
        http(
            &sim,
            "DELETE",
            "/gateway/bot",
            Some(sim.bot_token()),
            &[],
            None
        )
        .status,
        405
    );
    assert_eq!(sim.requests()[1].header("authorization"), None);
}

#[test]
fn gateway_bot_and_typing() {
    let sim = start();
    let r = http(
        &sim,
        "GET",
        "/gateway/bot",
        Some(sim.bot_token()),
        &[],
        None,
    )
    .json();
    assert_eq!(r["url"], sim.gateway_url());
    assert_eq!(r["shards"], 1);
    let limit = &r["session_start_limit"];
    assert_eq!(
        (limit["total"].as_u64(), limit["max_concurrency"].as_u64()),
        (Some(1000), Some(1))
    );
    assert!(limit["reset_after"].as_u64().unwrap() > 0);

    let (mut ws, _, _) = session(&sim, intents::RELAY);
    let r = http(
        &sim,
        "POST",
        &format!("/channels/{}/typing", ids::GENERAL),
        Some(sim.bot_token()),
        &[],
        None,
    );
    assert_eq!(r.status, 204);
    let t = next_dispatch(&mut ws, "TYPING_START")["d"].clone();
    assert_eq!(t["user_id"], ids::BOT_USER);
    let secs = t["timestamp"].as_u64().expect("integer seconds");
    assert!(secs.abs_diff(unix_ms() / 1000) < 60);
}

#[test]
fn member_patch_moves_mutes_disconnects_and_records_reason() {
    let sim = start();
    let (mut ws, _, _) = session(&sim, intents::RELAY);
    let patch = |user: &str, body: Value| {
        let path = format!("/guilds/{}/members/{user}", ids::GUILD);
        let reason = [("X-Audit-Log-Reason", "moved%20by%20ada")];
        http(
            &sim,
            "PATCH",
            &path,
            Some(sim.bot_token()),
            &reason,
            Some(&body.to_string()),
        )
    };
    let r = patch(ids::ADA, json!({ "mute": true }));
    assert_eq!((r.status, r.json()["code"].clone()), (400, json!(40032)));
    let r = patch(ids::LINUS, json!({ "channel_id": ids::GENERAL }));
    assert_eq!((r.status, r.json()["code"].clone()), (400, json!(50035)));
    assert_eq!(patch("42", json!({ "mute": true })).status, 404);

    let r = patch(ids::LINUS, json!({ "channel_id": ids::RAID }));
    assert_eq!(
        (r.status, r.json()["user"]["id"].clone()),
        (200, json!(ids::LINUS))
    );
    let v = next_dispatch(&mut ws, "VOICE_STATE_UPDATE")["d"].clone();
    assert_eq!(
        (v["channel_id"].as_str(), v["guild_id"].as_str()),
        (Some(ids::RAID), Some(ids::GUILD))
    );
    assert_eq!(v["member"]["user"]["id"], ids::LINUS);

    assert_eq!(patch(ids::LINUS, json!({ "mute": true })).status, 200);
    let v = next_dispatch(&mut ws, "VOICE_STATE_UPDATE")["d"].clone();
    assert_eq!(
        (v["mute"].clone(), v["channel_id"].clone()),
        (json!(true), json!(ids::RAID))
    );

    assert_eq!(patch(ids::LINUS, json!({ "channel_id": null })).status, 200);
    let v = next_dispatch(&mut ws, "VOICE_STATE_UPDATE")["d"].clone();
    assert_eq!(
        (v["user_id"].as_str(), v["channel_id"].clone()),
        (Some(ids::LINUS), Value::Null)
    );
    assert_eq!(sim.voice_channel_of(ids::LINUS), None);

    let audit = sim.audit_log();
    assert_eq!(audit.len(), 3);
    assert!(audit
        .iter()
        .all(|a| a.user_id == ids::LINUS && a.reason.as_deref() == Some("moved by ada")));
}

// ---------- guild controls, demo, lifecycle ----------

#[test]
fn voice_controls_dispatch_join_and_leave() {
    let sim = start();
    let events = sim.subscribe();
    assert!(sim.voice_join(ids::ADA, ids::LOBBY));
    let e = events.recv_timeout(WAIT).unwrap();
    assert_eq!(
        (e.name.as_str(), e.data["channel_id"].as_str()),
        ("VOICE_STATE_UPDATE", Some(ids::LOBBY))
    );
    assert!(sim.voice_leave(ids::ADA));
    let e = events.recv_timeout(WAIT).unwrap();
    assert_eq!(
        (e.data["user_id"].as_str(), e.data["channel_id"].clone()),
        (Some(ids::ADA), Value::Null)
    );
    assert!(!sim.voice_leave(ids::ADA), "already out of voice");
    assert!(
        !sim.voice_join(ids::ADA, ids::GENERAL),
        "not a voice channel"
    );
    assert!(!sim.voice_join("42", ids::LOBBY), "not a member");
    assert!(events.try_recv().is_err());
}

#[test]
fn demo_mode_types_then_talks_within_moments() {
    let sim = start_with(SimConfig {
        demo: true,
        seed: 7,
        demo_interval: (Duration::from_millis(20), Duration::from_millis(60)),
        ..SimConfig::default()
    });
    let events = sim.subscribe();
    let end = Instant::now() + WAIT;
    let mut typing = Vec::new();
    let message = loop {
        let e = events
            .recv_timeout(end.saturating_duration_since(Instant::now()))
            .expect("demo events within 2 s");
        match e.name.as_str() {
            "TYPING_START" => {
                typing.push((e.data["user_id"].clone(), e.data["channel_id"].clone()))
            }
            "MESSAGE_CREATE" => break e.data,
            _ => {}
        }
    };
    assert!(!message["content"].as_str().unwrap().is_empty());
    let speaker = (
        message["author"]["id"].clone(),
        message["channel_id"].clone(),
    );
    assert!(typing.contains(&speaker), "typing comes before speaking");
    assert!(demo_users().iter().any(|u| u.id == speaker.0));
}

#[test]
fn shutdown_frees_ports_and_drops_clients() {
    let sim = start();
    let (mut ws, _, _) = session(&sim, intents::RELAY);
    let gw = sim.gateway_url().trim_start_matches("ws://").to_owned();
    let api = sim
        .api_base()
        .trim_start_matches("http://")
        .trim_end_matches("/api/v10")
        .to_owned();
    sim.shutdown();
    assert!(ws.read().is_err());
    assert!(TcpStream::connect(&gw).is_err(), "gateway port closed");
    // tiny_http's accept thread lets its listener go a moment after being woken.
    wait_until("the REST port to close", || {
        TcpStream::connect(&api).is_err()
    });
}

#[test]
fn ids_and_timestamps_are_discord_shaped() {
    assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000000+00:00");
    assert_eq!(
        rfc3339(1_709_251_199_999),
        "2024-02-29T23:59:59.999000+00:00"
    );
    assert_eq!(
        rfc3339(snowflake_time_ms(41_771_983_423_143_937)),
        "2015-04-26T06:26:56.934000+00:00"
    );
    let guild: u64 = ids::GUILD.parse().unwrap();
    assert_eq!(
        rfc3339(snowflake_time_ms(guild)),
        "2021-03-14T15:09:26.535000+00:00"
    );
    assert_eq!(snowflake_at(snowflake_time_ms(guild), 1), guild);
    for ms in [0, 1_709_251_199_999, unix_ms()] {
        assert_eq!(parse_rfc3339(&rfc3339(ms)), Some(ms));
    }
    assert_eq!(
        parse_rfc3339("2021-03-14T15:09:26Z"),
        Some(1_615_734_566_000)
    );
    assert_eq!(
        parse_rfc3339("2021-03-14T16:09:26.5+01:00"),
        Some(1_615_734_566_500)
    );
    for bad in [
        "",
        "2021-03-14",
        "2021-13-14T00:00:00Z",
        "2021-03-14T15:09:26",
        "x021-03-14T15:09:26Z",
    ] {
        assert_eq!(parse_rfc3339(bad), None, "{bad:?}");
    }
    let users = demo_users();
    assert_eq!(users.len(), 5);
    assert!(users.iter().any(|u| u.username == "Ada"));
    for u in &users {
        let id: u64 = u.id.parse().unwrap();
        assert!(snowflake_time_ms(id) > DISCORD_EPOCH_MS);
    }
    let sim = start();
    let a: u64 = sim
        .post_as(ids::ADA, ids::GENERAL, "one")
        .unwrap()
        .parse()
        .unwrap();
    let b: u64 = sim
        .post_as(ids::ADA, ids::GENERAL, "two")
        .unwrap()
        .parse()
        .unwrap();
    assert!(b > a, "ids increase even within one millisecond");
}

#[test]
fn an_enforced_nonce_makes_one_message() {
    // Five posts to one channel: room in the bucket so none meets a 429.
    let sim = start_with(SimConfig {
        rate_limits: RateLimits {
            messages: RateLimit::new(50, Duration::from_secs(5)),
            ..RateLimits::default()
        },
        ..SimConfig::default()
    });
    let post = |nonce: Value, enforce: bool| {
        let body = json!({ "content": "once", "nonce": nonce, "enforce_nonce": enforce });
        let reply = post_message_body(&sim, ids::GENERAL, &body);
        assert_eq!(reply.status, 200, "{}", reply.body);
        reply.json()
    };
    let first = post(json!("n1"), true);
    assert_eq!(first["nonce"], "n1");
    let again = post(json!("n1"), true);
    assert_eq!(again["id"], first["id"], "the first message comes back");
    assert_ne!(post(json!("n2"), true)["id"], first["id"]);
    assert_ne!(
        post(json!("n1"), false)["id"],
        first["id"],
        "without enforce_nonce the nonce is only echoed"
    );
    let too_long = json!({ "content": "x", "nonce": "a".repeat(26) });
    let reply = post_message_body(&sim, ids::GENERAL, &too_long);
    assert_eq!(reply.status, 400);
    assert!(reply.body.contains("50035"), "{}", reply.body);
}

// ---------- roles, overwrites, members ----------

/// Every dispatch a session gets until a marker sent now: what reached it of the
/// changes made before. Markers are numbered, so one sent for another session
/// earlier is skipped.
fn dispatches_until_marker(sim: &SimDiscord, ws: &mut Ws) -> Vec<Value> {
    static MARKS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let mark = MARKS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    sim.dispatch("TEST_MARKER", json!({ "mark": mark }));
    let mut seen = Vec::new();
    loop {
        let frame = recv(ws);
        if frame["t"] == "TEST_MARKER" {
            if frame["d"]["mark"] == mark {
                return seen;
            }
        } else if frame["op"] == 0 {
            seen.push(frame);
        }
    }
}

fn names(frames: &[Value]) -> Vec<&str> {
    frames.iter().filter_map(|f| f["t"].as_str()).collect()
}

fn bits(v: &Value) -> u64 {
    v.as_str()
        .expect("bit sets are decimal strings")
        .parse()
        .expect("a u64")
}

fn overwrite<'a>(channel: &'a Value, id: &str) -> Option<&'a Value> {
    channel["permission_overwrites"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["id"] == id)
}

#[test]
fn guild_create_has_roles_channels_overwrites_threads_and_owner() {
    let sim = start();
    let (_ws, _, frame) = session(&sim, intents::RELAY);
    let g = &frame["d"];
    assert_eq!(g["owner_id"], ids::OWNER);
    assert!(demo_users().iter().all(|u| u.id != ids::OWNER));

    let roles = g["roles"].as_array().unwrap();
    let role = |id: &str| roles.iter().find(|r| r["id"] == id).unwrap();
    assert_eq!(role(ids::GUILD)["name"], "@everyone");
    for r in roles {
        bits(&r["permissions"]);
        assert!(r["position"].is_u64() && r["color"].is_u64() && r["hoist"].is_boolean());
        assert!(r["managed"].is_boolean() && r["mentionable"].is_boolean());
        assert_eq!(r["colors"]["primary_color"], r["color"]);
    }
    assert_eq!(
        bits(&role(ids::ROLE_MODERATOR)["permissions"]),
        perms::MOVE_MEMBERS | perms::MUTE_MEMBERS | perms::MANAGE_MESSAGES
    );
    assert_eq!(
        bits(&role(ids::ROLE_ADMIN)["permissions"]),
        perms::ADMINISTRATOR
    );
    let bot_role = role(ids::ROLE_BOT);
    assert_eq!(bot_role["managed"], true);
    assert_eq!(bot_role["tags"], json!({ "bot_id": ids::BOT_USER }));
    let bot_perms = bits(&bot_role["permissions"]);
    assert_eq!(bot_perms & perms::ADMINISTRATOR, 0);
    for need in [
        perms::MANAGE_WEBHOOKS,
        perms::VIEW_CHANNEL,
        perms::SEND_MESSAGES,
        perms::READ_MESSAGE_HISTORY,
        perms::ADD_REACTIONS,
        perms::CONNECT,
        perms::MOVE_MEMBERS,
        perms::MUTE_MEMBERS,
        perms::SEND_MESSAGES_IN_THREADS,
    ] {
        assert_eq!(bot_perms & need, need);
    }

    let channels = g["channels"].as_array().unwrap();
    let channel = |id: &str| channels.iter().find(|c| c["id"] == id).unwrap();
    for c in channels {
        assert!(
            c.get("guild_id").is_none(),
            "nested channels have no guild_id"
        );
        for o in c["permission_overwrites"].as_array().unwrap() {
            assert!(o["id"].is_string() && matches!(o["type"].as_u64(), Some(0 | 1)));
            bits(&o["allow"]);
            bits(&o["deny"]);
        }
    }
    for (id, kind, parent) in [
        (ids::GENERAL, 0, Some(ids::TEXT_CATEGORY)),
        (ids::GAME_ROOM, 0, Some(ids::TEXT_CATEGORY)),
        (ids::ANNOUNCEMENTS, 0, Some(ids::TEXT_CATEGORY)),
        (ids::MODERATORS, 0, Some(ids::TEXT_CATEGORY)),
        (ids::LOBBY, 2, Some(ids::VOICE_CATEGORY)),
        (ids::RAID, 2, Some(ids::VOICE_CATEGORY)),
        (ids::TEXT_CATEGORY, 4, None),
        (ids::VOICE_CATEGORY, 4, None),
    ] {
        let c = channel(id);
        assert_eq!(
            (c["type"].as_u64(), c["parent_id"].as_str()),
            (Some(kind), parent),
            "{id}"
        );
    }
    let everyone = overwrite(channel(ids::MODERATORS), ids::GUILD).unwrap();
    assert_eq!(
        (everyone["type"].as_u64(), bits(&everyone["deny"])),
        (Some(0), perms::VIEW_CHANNEL)
    );
    let mods = overwrite(channel(ids::MODERATORS), ids::ROLE_MODERATOR).unwrap();
    assert_eq!(bits(&mods["allow"]), perms::VIEW_CHANNEL);
    let margaret = overwrite(channel(ids::MODERATORS), ids::MARGARET).unwrap();
    assert_eq!(margaret["type"], 1);
    let announce = overwrite(channel(ids::ANNOUNCEMENTS), ids::GUILD).unwrap();
    assert_eq!(bits(&announce["deny"]), perms::SEND_MESSAGES);

    let threads = g["threads"].as_array().unwrap();
    assert_eq!(threads.len(), 1);
    let t = &threads[0];
    assert_eq!(
        (
            t["id"].as_str(),
            t["type"].as_u64(),
            t["parent_id"].as_str()
        ),
        (Some(ids::RELEASE_THREAD), Some(11), Some(ids::GENERAL))
    );
    assert!(t.get("guild_id").is_none());
    assert_eq!(t["thread_metadata"]["archived"], false);
    assert!(t["thread_metadata"]["archive_timestamp"].is_string());
    assert!(
        channels.iter().all(|c| c["type"] != 11),
        "threads are not channels here"
    );

    // Members carry roles; the bot has its role.
    let members = g["members"].as_array().unwrap();
    let bot = members
        .iter()
        .find(|m| m["user"]["id"] == ids::BOT_USER)
        .unwrap();
    assert_eq!(bot["roles"], json!([ids::ROLE_BOT]));
    for m in members {
        assert!(m["roles"].is_array() && m["joined_at"].is_string());
        assert!(m["deaf"].is_boolean() && m["mute"].is_boolean() && m["flags"].is_u64());
        assert!(m.get("communication_disabled_until").is_some());
    }
}

#[test]
fn guild_create_lists_every_member_only_with_guild_presences() {
    let sim = start();
    let (_ws, _, frame) = session(&sim, intents::RELAY | intents::GUILD_PRESENCES);
    let members = frame["d"]["members"].as_array().unwrap();
    assert_eq!(members.len(), 2 + demo_users().len());
    let member = |id: &str| members.iter().find(|m| m["user"]["id"] == id).unwrap();
    assert_eq!(member(ids::OWNER)["roles"], json!([ids::ROLE_ADMIN]));
    assert_eq!(
        member(ids::GRACE)["roles"],
        json!([ids::ROLE_MEMBER, ids::ROLE_MODERATOR])
    );
    assert_eq!(member(ids::ADA)["roles"], json!([ids::ROLE_MEMBER]));
    let until = member(ids::KEN)["communication_disabled_until"]
        .as_str()
        .expect("Ken is timed out");
    assert!(parse_rfc3339(until).unwrap() > unix_ms());
    assert_eq!(
        member(ids::ADA)["communication_disabled_until"],
        Value::Null
    );
    assert_eq!(frame["d"]["member_count"], members.len());
}

#[test]
fn get_member_answers_the_member_or_unknown_member() {
    let sim = start();
    let get = |guild: &str, user: &str, token: Option<&str>| {
        http(
            &sim,
            "GET",
            &format!("/guilds/{guild}/members/{user}"),
            token,
            &[],
            None,
        )
    };
    let r = get(ids::GUILD, ids::KEN, Some(sim.bot_token()));
    assert_eq!(r.status, 200, "{}", r.body);
    let m = r.json();
    assert_eq!(
        m["user"],
        json!({ "id": ids::KEN, "username": "Ken", "global_name": "Ken", "discriminator": "0",
                "avatar": null, "public_flags": 0 })
    );
    assert_eq!(m["nick"], Value::Null);
    assert_eq!(m["roles"], json!([ids::ROLE_MEMBER]));
    assert!(parse_rfc3339(m["joined_at"].as_str().unwrap()).is_some());
    assert!(
        parse_rfc3339(m["communication_disabled_until"].as_str().unwrap()).unwrap() > unix_ms()
    );
    assert_eq!(
        (m["deaf"].clone(), m["mute"].clone(), m["flags"].clone()),
        (json!(false), json!(false), json!(0))
    );
    assert_eq!(m["pending"], false);
    assert_eq!(Some(m), sim.member_json(ids::KEN));
    assert_eq!(r.header("X-RateLimit-Limit"), Some("10"));
    assert_eq!(r.header("X-RateLimit-Remaining"), Some("9"));
    assert!(
        r.header("X-RateLimit-Reset").is_some() && r.header("X-RateLimit-Reset-After").is_some()
    );
    let bucket = r.header("X-RateLimit-Bucket").unwrap().to_owned();

    let r = get(ids::GUILD, "42", Some(sim.bot_token()));
    assert_eq!(
        (r.status, r.json()),
        (404, json!({ "message": "Unknown Member", "code": 10007 }))
    );
    assert_eq!(r.header("X-RateLimit-Remaining"), Some("8"));
    assert_eq!(r.header("X-RateLimit-Bucket"), Some(bucket.as_str()));
    let r = get("1", ids::KEN, Some(sim.bot_token()));
    assert_eq!((r.status, r.json()["code"].clone()), (404, json!(10004)));
    assert_eq!(get(ids::GUILD, ids::KEN, None).status, 401);

    // Its own bucket: not the one Modify Guild Member uses.
    let patch = http(
        &sim,
        "PATCH",
        &format!("/guilds/{}/members/{}", ids::GUILD, ids::LINUS),
        Some(sim.bot_token()),
        &[],
        Some(r#"{"mute":true}"#),
    );
    assert_eq!(patch.status, 200);
    assert_ne!(patch.header("X-RateLimit-Bucket"), Some(bucket.as_str()));
    assert_eq!(sim.member_json(ids::LINUS).unwrap()["mute"], true);
}

#[test]
fn member_changes_reach_only_sessions_with_guild_members() {
    let sim = start();
    let events = sim.subscribe();
    let (mut plain, _, _) = session(&sim, intents::RELAY);
    let (mut members, _, _) = session(&sim, intents::RELAY | intents::GUILD_MEMBERS);

    assert!(sim.set_member_roles(ids::ADA, &[ids::ROLE_MEMBER, ids::ROLE_MODERATOR]));
    assert!(
        !sim.set_member_roles(ids::ADA, &[ids::ROLE_MEMBER, ids::ROLE_MODERATOR]),
        "no change"
    );
    assert!(
        !sim.set_member_roles(ids::ADA, &[ids::GUILD]),
        "@everyone is implicit"
    );
    assert!(!sim.set_member_roles(ids::ADA, &["42"]), "unknown role");
    assert!(!sim.set_member_roles("42", &[]), "unknown member");
    let until = unix_ms() + 60_000;
    assert!(sim.timeout_member(ids::LINUS, Some(until)));
    assert!(sim.timeout_member(ids::KEN, None));
    assert!(sim.add_member("1234567890123456789", "Barbara"));
    assert!(
        !sim.add_member("1234567890123456789", "Barbara"),
        "already a member"
    );
    assert!(sim.remove_member(ids::GRACE), "Grace leaves from Lobby");
    assert!(!sim.remove_member(ids::OWNER) && !sim.remove_member(ids::BOT_USER));

    let got = dispatches_until_marker(&sim, &mut members);
    assert_eq!(
        names(&got),
        [
            "GUILD_MEMBER_UPDATE",
            "GUILD_MEMBER_UPDATE",
            "GUILD_MEMBER_UPDATE",
            "GUILD_MEMBER_ADD",
            "VOICE_STATE_UPDATE",
            "GUILD_MEMBER_REMOVE"
        ]
    );
    let roles = &got[0]["d"];
    assert_eq!(roles["guild_id"], ids::GUILD);
    assert_eq!(roles["user"]["id"], ids::ADA);
    assert_eq!(
        roles["roles"],
        json!([ids::ROLE_MEMBER, ids::ROLE_MODERATOR])
    );
    for key in [
        "nick",
        "avatar",
        "joined_at",
        "deaf",
        "mute",
        "pending",
        "communication_disabled_until",
    ] {
        assert!(roles.get(key).is_some(), "GUILD_MEMBER_UPDATE has {key}");
    }
    assert_eq!(
        parse_rfc3339(
            got[1]["d"]["communication_disabled_until"]
                .as_str()
                .unwrap()
        ),
        Some(until)
    );
    assert_eq!(got[2]["d"]["communication_disabled_until"], Value::Null);
    let added = &got[3]["d"];
    assert_eq!(
        (
            added["guild_id"].as_str(),
            added["user"]["username"].as_str()
        ),
        (Some(ids::GUILD), Some("Barbara"))
    );
    assert_eq!(added["roles"], json!([]));
    assert_eq!(got[4]["d"]["channel_id"], Value::Null);
    assert_eq!(
        got[5]["d"],
        json!({ "guild_id": ids::GUILD, "user": {
            "id": ids::GRACE, "username": "Grace", "global_name": "Grace", "discriminator": "0",
            "avatar": null, "public_flags": 0 } })
    );
    assert_eq!(
        names(&dispatches_until_marker(&sim, &mut plain)),
        ["VOICE_STATE_UPDATE"]
    );
    assert_eq!(sim.member_json(ids::GRACE), None);

    // The bot's own member updates pass without GUILD_MEMBERS.
    assert!(sim.set_member_roles(ids::BOT_USER, &[ids::ROLE_BOT, ids::ROLE_MODERATOR]));
    let got = dispatches_until_marker(&sim, &mut plain);
    assert_eq!(names(&got), ["GUILD_MEMBER_UPDATE"]);
    assert_eq!(got[0]["d"]["user"]["id"], ids::BOT_USER);

    let all: Vec<String> = events.try_iter().map(|e| e.name).collect();
    assert_eq!(
        all.iter().filter(|n| *n == "GUILD_MEMBER_UPDATE").count(),
        4
    );
}

#[test]
fn role_and_channel_changes_reach_only_sessions_with_guilds() {
    let sim = start();
    let events = sim.subscribe();
    let (mut guilds, _, _) = session(&sim, intents::RELAY);
    // Without GUILDS there is no GUILD_CREATE either: READY is all.
    let mut no_guilds = gateway(&sim);
    assert_eq!(recv(&mut no_guilds)["op"], 10);
    identify(&mut no_guilds, sim.bot_token(), intents::GUILD_MESSAGES);
    assert_eq!(recv(&mut no_guilds)["t"], "READY");

    let helpers = sim.create_role("Helper", perms::MANAGE_MESSAGES);
    assert!(sim.role_ids().contains(&helpers));
    assert!(sim.update_role_permissions(&helpers, perms::MANAGE_MESSAGES | perms::MOVE_MEMBERS));
    assert!(!sim.update_role_permissions("42", 0));
    assert!(sim.set_member_roles(ids::LINUS, &[ids::ROLE_MEMBER, &helpers]));
    assert!(sim.delete_role(&helpers));
    assert!(!sim.delete_role(ids::GUILD) && !sim.delete_role(ids::ROLE_BOT));
    assert_eq!(
        sim.member_json(ids::LINUS).unwrap()["roles"],
        json!([ids::ROLE_MEMBER])
    );

    let hidden = vec![Overwrite::role(ids::GUILD, 0, perms::VIEW_CHANNEL)];
    assert!(sim.set_channel_overwrites(ids::GAME_ROOM, hidden.clone()));
    assert!(
        !sim.set_channel_overwrites(ids::RELEASE_THREAD, hidden.clone()),
        "threads have none"
    );
    let room = sim
        .create_channel("ops", 0, Some(ids::TEXT_CATEGORY), hidden)
        .unwrap();
    let thread = sim
        .create_channel("ops-thread", 11, Some(&room), vec![])
        .unwrap();
    assert_eq!(
        sim.create_channel("bad", 11, Some(ids::LOBBY), vec![]),
        None,
        "threads live in text channels"
    );
    assert_eq!(
        sim.create_channel("bad", 0, Some(ids::GENERAL), vec![]),
        None,
        "parents are categories"
    );
    assert_eq!(
        sim.create_channel("bad", 5, None, vec![]),
        None,
        "unsupported type"
    );
    assert!(sim.delete_channel(&room), "takes its thread along");
    assert!(!sim.channel_ids().contains(&thread));
    assert!(sim.set_owner(ids::GRACE));

    let got = dispatches_until_marker(&sim, &mut guilds);
    assert_eq!(
        names(&got),
        [
            "GUILD_ROLE_CREATE",
            "GUILD_ROLE_UPDATE",
            "GUILD_ROLE_DELETE",
            "CHANNEL_UPDATE",
            "CHANNEL_CREATE",
            "THREAD_CREATE",
            "THREAD_DELETE",
            "CHANNEL_DELETE",
            "GUILD_UPDATE"
        ],
        "GUILD_MEMBER_UPDATE needs GUILD_MEMBERS"
    );
    let created = &got[0]["d"];
    assert_eq!(created["guild_id"], ids::GUILD);
    assert_eq!(created["role"]["id"], helpers.as_str());
    assert_eq!(created["role"]["name"], "Helper");
    assert_eq!(
        bits(&created["role"]["permissions"]),
        perms::MANAGE_MESSAGES
    );
    assert_eq!(
        bits(&got[1]["d"]["role"]["permissions"]),
        perms::MANAGE_MESSAGES | perms::MOVE_MEMBERS
    );
    assert_eq!(
        got[2]["d"],
        json!({ "guild_id": ids::GUILD, "role_id": helpers })
    );
    let update = &got[3]["d"];
    assert_eq!(
        (update["id"].as_str(), update["guild_id"].as_str()),
        (Some(ids::GAME_ROOM), Some(ids::GUILD))
    );
    assert_eq!(
        update["permission_overwrites"],
        json!([{ "id": ids::GUILD, "type": 0, "allow": "0", "deny": "1024" }])
    );
    assert_eq!(Some(update.clone()), sim.channel_json(ids::GAME_ROOM));
    let made = &got[4]["d"];
    assert_eq!(
        (
            made["id"].as_str(),
            made["type"].as_u64(),
            made["parent_id"].as_str(),
            made["guild_id"].as_str()
        ),
        (
            Some(room.as_str()),
            Some(0),
            Some(ids::TEXT_CATEGORY),
            Some(ids::GUILD)
        )
    );
    let t = &got[5]["d"];
    assert_eq!(
        (t["type"].as_u64(), t["parent_id"].as_str()),
        (Some(11), Some(room.as_str()))
    );
    assert_eq!(t["newly_created"], true);
    assert_eq!(
        got[6]["d"],
        json!({ "id": thread, "guild_id": ids::GUILD, "parent_id": room, "type": 11 })
    );
    assert_eq!(got[7]["d"]["id"], room.as_str());
    assert_eq!(got[7]["d"]["guild_id"], ids::GUILD);
    assert_eq!(got[8]["d"]["owner_id"], ids::GRACE);
    assert!(got[8]["d"]["roles"].is_array() && got[8]["d"].get("members").is_none());

    assert!(dispatches_until_marker(&sim, &mut no_guilds).is_empty());
    assert_eq!(
        events
            .try_iter()
            .filter(|e| e.name == "GUILD_MEMBER_UPDATE")
            .count(),
        1
    );
}

#[test]
fn deleting_channels_disconnects_voice_and_orphans_children() {
    let sim = start();
    let events = sim.subscribe();
    assert!(sim.delete_channel(ids::LOBBY));
    assert!(sim.delete_channel(ids::VOICE_CATEGORY));
    assert!(!sim.delete_channel(ids::LOBBY), "already gone");
    let got: Vec<SimEvent> = events.try_iter().collect();
    let names: Vec<&str> = got.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "VOICE_STATE_UPDATE",
            "VOICE_STATE_UPDATE",
            "CHANNEL_DELETE",
            "CHANNEL_UPDATE",
            "CHANNEL_DELETE"
        ]
    );
    assert!(got[..2].iter().all(|e| e.data["channel_id"].is_null()));
    assert_eq!(got[3].data["id"], ids::RAID);
    assert_eq!(got[3].data["parent_id"], Value::Null);
    assert_eq!(sim.voice_channel_of(ids::LINUS), None);
}

#[test]
fn permissions_follow_discords_pseudocode() {
    let sim = start();
    let p = |user: &str, channel: &str| sim.permissions_of(user, channel);
    let has = |user: &str, channel: &str, bits: u64| p(user, channel) & bits == bits;
    assert_eq!(
        p(ids::OWNER, ids::MODERATORS),
        perms::ALL,
        "the owner has all"
    );
    assert_eq!(p(ids::ADA, ids::MODERATORS), 0, "no VIEW_CHANNEL, nothing");
    assert!(has(
        ids::GRACE,
        ids::MODERATORS,
        perms::VIEW_CHANNEL | perms::SEND_MESSAGES
    ));
    assert!(has(
        ids::MARGARET,
        ids::MODERATORS,
        perms::VIEW_CHANNEL | perms::READ_MESSAGE_HISTORY
    ));
    assert!(
        !has(ids::MARGARET, ids::MODERATORS, perms::SEND_MESSAGES),
        "member overwrite denies"
    );
    assert!(has(
        ids::BOT_USER,
        ids::MODERATORS,
        perms::VIEW_CHANNEL | perms::SEND_MESSAGES
    ));
    assert!(!has(ids::ADA, ids::ANNOUNCEMENTS, perms::SEND_MESSAGES));
    assert!(has(ids::ADA, ids::ANNOUNCEMENTS, perms::VIEW_CHANNEL));
    assert!(
        has(ids::GRACE, ids::ANNOUNCEMENTS, perms::SEND_MESSAGES),
        "role allow beats @everyone deny"
    );
    assert!(!has(
        ids::BOT_USER,
        ids::ANNOUNCEMENTS,
        perms::SEND_MESSAGES
    ));
    assert_eq!(
        p(ids::KEN, ids::GENERAL),
        perms::VIEW_CHANNEL | perms::READ_MESSAGE_HISTORY,
        "timed out"
    );
    assert!(has(
        ids::ADA,
        ids::RELEASE_THREAD,
        perms::SEND_MESSAGES_IN_THREADS
    ));
    assert!(!has(ids::OWNER, "42", perms::VIEW_CHANNEL) || p(ids::OWNER, "42") == 0);
    assert_eq!(p("42", ids::GENERAL), 0, "not a member");
    // Without the Member role, no posting in threads (@everyone lacks it).
    assert!(sim.set_member_roles(ids::ADA, &[]));
    assert!(!has(
        ids::ADA,
        ids::RELEASE_THREAD,
        perms::SEND_MESSAGES_IN_THREADS
    ));
    // ADMINISTRATOR ignores overwrites.
    assert!(sim.set_member_roles(ids::ADA, &[ids::ROLE_ADMIN]));
    assert_eq!(p(ids::ADA, ids::MODERATORS), perms::ALL);
}

#[test]
fn channel_routes_check_the_bots_permissions() {
    let sim = start();
    let r = post_message(&sim, ids::ANNOUNCEMENTS, "news");
    assert_eq!(
        (r.status, r.json()),
        (
            403,
            json!({ "message": "Missing Permissions", "code": 50013 })
        )
    );
    assert!(r.header("X-RateLimit-Bucket").is_some());
    assert_eq!(post_message(&sim, ids::MODERATORS, "mods").status, 200);
    assert_eq!(
        post_message(&sim, ids::RELEASE_THREAD, "in a thread").status,
        200
    );
    let r = post_message(&sim, ids::TEXT_CATEGORY, "x");
    assert_eq!((r.status, r.json()["code"].clone()), (400, json!(50008)));
    // Without the bot role's overwrite, #moderators is out of sight.
    assert!(sim.set_channel_overwrites(
        ids::MODERATORS,
        vec![Overwrite::role(ids::GUILD, 0, perms::VIEW_CHANNEL)]
    ));
    let r = post_message(&sim, ids::MODERATORS, "mods");
    assert_eq!(
        (r.status, r.json()),
        (403, json!({ "message": "Missing Access", "code": 50001 }))
    );
    let typing = http(
        &sim,
        "POST",
        &format!("/channels/{}/typing", ids::ANNOUNCEMENTS),
        Some(sim.bot_token()),
        &[],
        None,
    );
    assert_eq!(typing.status, 403);
    // @everyone may react; an overwrite takes it from the bot's role.
    assert!(sim.set_channel_overwrites(
        ids::GENERAL,
        vec![Overwrite::role(ids::ROLE_BOT, 0, perms::ADD_REACTIONS)]
    ));
    let react = http(
        &sim,
        "PUT",
        &format!(
            "/channels/{}/messages/123/reactions/%F0%9F%94%A5/@me",
            ids::GENERAL
        ),
        Some(sim.bot_token()),
        &[],
        None,
    );
    assert_eq!(
        (react.status, react.json()["code"].clone()),
        (403, json!(50013))
    );
}

#[test]
fn member_patch_follows_discords_rules() {
    // Room in the members bucket for every call here.
    let sim = start_with(SimConfig {
        rate_limits: RateLimits {
            members: RateLimit::new(50, Duration::from_secs(10)),
            ..RateLimits::default()
        },
        ..SimConfig::default()
    });
    let events = sim.subscribe();
    let patch = |user: &str, body: Value| {
        let r = http(
            &sim,
            "PATCH",
            &format!("/guilds/{}/members/{user}", ids::GUILD),
            Some(sim.bot_token()),
            &[],
            Some(&body.to_string()),
        );
        (r.status, r.json())
    };
    let code = |r: (u16, Value)| (r.0, r.1["code"].clone());
    let missing = (
        403,
        json!({ "message": "Missing Permissions", "code": 50013 }),
    );
    // The target must be a voice channel that exists.
    assert_eq!(
        code(patch(ids::LINUS, json!({ "channel_id": "42" }))),
        (400, json!(50035))
    );
    assert_eq!(
        code(patch(
            ids::LINUS,
            json!({ "channel_id": ids::TEXT_CATEGORY })
        )),
        (400, json!(50035))
    );
    // Muting or moving someone not in voice.
    let not_in_voice = (
        400,
        json!({ "message": "Target user is not connected to voice.", "code": 40032 }),
    );
    assert_eq!(patch(ids::MARGARET, json!({ "mute": true })), not_in_voice);
    assert_eq!(
        patch(ids::MARGARET, json!({ "channel_id": ids::RAID })),
        not_in_voice
    );
    // The bot needs MOVE_MEMBERS and CONNECT in the target.
    assert!(sim.set_channel_overwrites(
        ids::RAID,
        vec![Overwrite::role(ids::ROLE_BOT, 0, perms::CONNECT)]
    ));
    assert_eq!(
        patch(ids::LINUS, json!({ "channel_id": ids::RAID })),
        missing
    );
    assert!(sim.set_channel_overwrites(ids::RAID, vec![]));
    // … and MUTE_MEMBERS in the member's channel.
    assert!(sim.set_channel_overwrites(
        ids::LOBBY,
        vec![Overwrite::role(ids::ROLE_BOT, 0, perms::MUTE_MEMBERS)]
    ));
    assert_eq!(patch(ids::LINUS, json!({ "mute": true })), missing);
    assert!(sim.set_channel_overwrites(ids::LOBBY, vec![]));
    // Nicknames, roles and timeouts need what the bot lacks.
    assert_eq!(patch(ids::ADA, json!({ "nick": "ada" })), missing);
    assert_eq!(
        patch(ids::ADA, json!({ "roles": [ids::ROLE_MODERATOR] })),
        missing
    );
    let soon = rfc3339(unix_ms() + 60_000);
    assert_eq!(
        patch(ids::ADA, json!({ "communication_disabled_until": soon })),
        missing
    );
    assert!(
        events.try_iter().all(|e| e.name.starts_with("CHANNEL_")),
        "nothing changed"
    );

    // A mute is a voice state and a member change.
    let (status, member) = patch(ids::LINUS, json!({ "mute": true }));
    assert_eq!((status, member["mute"].clone()), (200, json!(true)));
    let got: Vec<String> = events.try_iter().map(|e| e.name).collect();
    assert_eq!(got, ["VOICE_STATE_UPDATE", "GUILD_MEMBER_UPDATE"]);

    // Given MODERATE_MEMBERS, the bot may time out, but not the owner or an admin.
    assert!(sim.update_role_permissions(ids::ROLE_BOT, perms::BOT | perms::MODERATE_MEMBERS));
    let (status, member) = patch(ids::ADA, json!({ "communication_disabled_until": soon }));
    assert_eq!(status, 200, "{member}");
    assert_eq!(
        member["communication_disabled_until"],
        rfc3339(parse_rfc3339(&soon).unwrap())
    );
    let e = events
        .try_iter()
        .find(|e| e.name == "GUILD_MEMBER_UPDATE")
        .unwrap();
    assert_eq!(e.data["user"]["id"], ids::ADA);
    assert_eq!(
        patch(ids::OWNER, json!({ "communication_disabled_until": soon })),
        missing
    );
    let far = rfc3339(unix_ms() + 29 * 24 * 3600 * 1000);
    assert_eq!(
        code(patch(
            ids::ADA,
            json!({ "communication_disabled_until": far })
        )),
        (400, json!(50035))
    );
    assert_eq!(
        code(patch(
            ids::ADA,
            json!({ "communication_disabled_until": "soon" })
        )),
        (400, json!(50035))
    );
    let (status, member) = patch(ids::ADA, json!({ "communication_disabled_until": null }));
    assert_eq!(
        (status, member["communication_disabled_until"].clone()),
        (200, Value::Null)
    );
}

#[test]
fn demo_mode_moves_the_moderator_role_and_renews_the_timeout() {
    let sim = start_with(SimConfig {
        demo: true,
        seed: 3,
        demo_role_period: Duration::from_millis(150),
        // Slow chat, so the role changes are easy to pick out.
        demo_interval: (Duration::from_secs(5), Duration::from_secs(5)),
        ..SimConfig::default()
    });
    let events = sim.subscribe();
    let until_ken = |d: &Value| parse_rfc3339(d["communication_disabled_until"].as_str()?);
    let mut ada_roles = Vec::new();
    let mut ken = Vec::new();
    let end = Instant::now() + WAIT;
    while ada_roles.len() < 2 || ken.is_empty() {
        let e = events
            .recv_timeout(end.saturating_duration_since(Instant::now()))
            .expect("role changes within 2 s");
        if e.name != "GUILD_MEMBER_UPDATE" {
            continue;
        }
        match e.data["user"]["id"].as_str() {
            Some(ids::ADA) => ada_roles.push(e.data["roles"].clone()),
            Some(ids::KEN) => ken.push(until_ken(&e.data)),
            other => panic!("unexpected member update of {other:?}"),
        }
    }
    assert_eq!(
        ada_roles[..2],
        [
            json!([ids::ROLE_MEMBER, ids::ROLE_MODERATOR]),
            json!([ids::ROLE_MEMBER])
        ]
    );
    let renewed = ken[0].expect("a new timeout");
    assert!(renewed > unix_ms(), "in the future");
    assert!(renewed <= unix_ms() + 300, "1.5 periods at most");
}

#[test]
fn relays_guild_model_reads_the_sims_guild_create() {
    let g = super::guild::Guild::new(u64::MAX).guild_create(false);
    let m = relay_protocol::discord::guild::GuildModel::from_guild_create(
        &g,
        ids::BOT_USER.parse().unwrap(),
    );
    assert!(m.is_ok(), "{:?}", m.err());
}

// ---------- webhooks ----------

fn webhooks_call(sim: &SimDiscord, method: &str, channel: &str, body: Option<Value>) -> HttpReply {
    let body = body.map(|b| b.to_string());
    http(
        sim,
        method,
        &format!("/channels/{channel}/webhooks"),
        Some(sim.bot_token()),
        &[],
        body.as_deref(),
    )
}

fn execute(sim: &SimDiscord, target: &str, body: &Value) -> HttpReply {
    http(sim, "POST", target, None, &[], Some(&body.to_string()))
}

#[test]
fn webhooks_are_made_listed_and_checked_like_discord() {
    let sim = start();
    let made = webhooks_call(&sim, "POST", ids::GENERAL, Some(json!({"name": "relay"})));
    assert_eq!(made.status, 200, "{}", made.body);
    let hook = made.json();
    assert_eq!(
        (
            &hook["name"],
            &hook["type"],
            &hook["channel_id"],
            &hook["application_id"],
            &hook["user"]["id"]
        ),
        (
            &json!("relay"),
            &json!(1),
            &json!(ids::GENERAL),
            &json!(ids::BOT_USER),
            &json!(ids::BOT_USER)
        )
    );
    assert!(hook["token"].as_str().is_some_and(|t| t.len() >= 32));
    assert!(
        made.header("X-RateLimit-Bucket").is_some(),
        "rate-limit headers as on other routes"
    );
    let listed = webhooks_call(&sim, "GET", ids::GENERAL, None);
    assert_eq!(listed.status, 200);
    assert_eq!(listed.json(), json!([hook]));
    assert_eq!(
        webhooks_call(&sim, "GET", ids::GAME_ROOM, None).json(),
        json!([])
    );
    assert_eq!(sim.webhooks_in(ids::GENERAL), vec![hook]);

    for bad in ["Discord bot", "my CLYDE", "", &"x".repeat(81)] {
        let r = webhooks_call(&sim, "POST", ids::GENERAL, Some(json!({ "name": bad })));
        assert_eq!(
            (r.status, r.json()["code"].clone()),
            (400, json!(50035)),
            "{bad:?}: {}",
            r.body
        );
        assert!(r.json()["errors"]["name"].is_object());
    }
    let thread = webhooks_call(
        &sim,
        "POST",
        ids::RELEASE_THREAD,
        Some(json!({"name": "relay"})),
    );
    assert_eq!(
        (thread.status, thread.json()["code"].clone()),
        (400, json!(50024))
    );
    let unknown = webhooks_call(&sim, "POST", "1", Some(json!({"name": "relay"})));
    assert_eq!(
        (unknown.status, unknown.json()["code"].clone()),
        (404, json!(10003))
    );
    let no_token = http(
        &sim,
        "GET",
        &format!("/channels/{}/webhooks", ids::GENERAL),
        None,
        &[],
        None,
    );
    assert_eq!(no_token.status, 401);

    // Without MANAGE_WEBHOOKS for the bot's role there: 403 50013, both ways.
    assert!(sim.set_channel_overwrites(
        ids::GAME_ROOM,
        vec![Overwrite::role(ids::ROLE_BOT, 0, perms::MANAGE_WEBHOOKS)]
    ));
    for (method, body) in [("POST", Some(json!({"name": "relay"}))), ("GET", None)] {
        let r = webhooks_call(&sim, method, ids::GAME_ROOM, body);
        assert_eq!(
            (r.status, r.json()["code"].clone()),
            (403, json!(50013)),
            "{method}"
        );
    }
}

#[test]
fn executing_a_webhook_posts_under_the_override_and_dispatches() {
    let sim = start_with(SimConfig {
        rate_limits: RateLimits {
            webhooks: RateLimit::new(50, Duration::from_secs(5)),
            ..RateLimits::default()
        },
        ..SimConfig::default()
    });
    let mut ws = gateway(&sim);
    let _ = recv(&mut ws);
    identify(&mut ws, sim.bot_token(), intents::RELAY);
    let _ = next_dispatch(&mut ws, "READY");
    let hook = webhooks_call(&sim, "POST", ids::GENERAL, Some(json!({"name": "relay"}))).json();
    let (id, token) = (
        hook["id"].as_str().unwrap(),
        hook["token"].as_str().unwrap(),
    );
    let target = format!("/webhooks/{id}/{token}?wait=true");
    let body = json!({"content": "hi all", "username": "Ada", "avatar_url": "https://cdn.discordapp.com/avatars/1/a.png",
                      "allowed_mentions": {"parse": []}});
    let r = execute(&sim, &target, &body);
    assert_eq!(r.status, 200, "{}", r.body);
    let msg = r.json();
    assert_eq!(
        (
            &msg["author"]["id"],
            &msg["author"]["username"],
            &msg["author"]["bot"],
            &msg["webhook_id"],
            &msg["channel_id"],
            &msg["content"]
        ),
        (
            &json!(id),
            &json!("Ada"),
            &json!(true),
            &json!(id),
            &json!(ids::GENERAL),
            &json!("hi all")
        )
    );
    assert!(msg["author"]["avatar"].is_string(), "the override avatar");
    assert_eq!(msg["application_id"], ids::BOT_USER);
    assert!(r.header("X-RateLimit-Bucket").is_some());
    let d = next_dispatch(&mut ws, "MESSAGE_CREATE")["d"].clone();
    assert_eq!(
        (&d["id"], &d["webhook_id"], &d["guild_id"]),
        (&msg["id"], &json!(id), &json!(ids::GUILD))
    );
    assert!(d.get("member").is_none(), "a webhook has no member");
    assert_eq!(sim.messages_in(ids::GENERAL)[0]["id"], msg["id"]);

    // Without wait: 204. In a thread: the thread's channel.
    let r = execute(
        &sim,
        &format!("/webhooks/{id}/{token}"),
        &json!({"content": "no wait"}),
    );
    assert_eq!((r.status, r.body.as_str()), (204, ""));
    let r = execute(
        &sim,
        &format!("{target}&thread_id={}", ids::RELEASE_THREAD),
        &json!({"content": "in thread"}),
    );
    assert_eq!(r.json()["channel_id"], ids::RELEASE_THREAD);
    assert_eq!(
        r.json()["author"]["username"],
        "relay",
        "no override: the webhook's name"
    );
    let r = execute(
        &sim,
        &format!("{target}&thread_id={}", ids::GAME_ROOM),
        &json!({"content": "x"}),
    );
    assert_eq!((r.status, r.json()["code"].clone()), (404, json!(10003)));

    // Errors.
    let code = |r: HttpReply| (r.status, r.json()["code"].clone());
    assert_eq!(
        code(execute(
            &sim,
            &format!("/webhooks/{id}/wrong?wait=true"),
            &body
        )),
        (404, json!(10015))
    );
    assert_eq!(
        code(execute(
            &sim,
            &format!("/webhooks/1/{token}?wait=true"),
            &body
        )),
        (404, json!(10015))
    );
    assert_eq!(
        code(execute(
            &sim,
            &target,
            &json!({"content": "x", "username": "Discord"})
        )),
        (400, json!(50035))
    );
    assert_eq!(
        code(execute(&sim, &target, &json!({"content": "  "}))),
        (400, json!(50006))
    );
    let posts = sim
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST" && r.path.starts_with(&format!("/api/v10/webhooks/{id}/")))
        .count();
    assert_eq!(posts, 7, "execute calls are recorded");
}

#[test]
fn execute_has_its_own_bucket_per_webhook() {
    let sim = start_with(SimConfig {
        rate_limits: RateLimits {
            webhooks: RateLimit::new(2, Duration::from_secs(5)),
            ..RateLimits::default()
        },
        ..SimConfig::default()
    });
    let hook = |channel| {
        let h = webhooks_call(&sim, "POST", channel, Some(json!({"name": "relay"}))).json();
        format!(
            "/webhooks/{}/{}?wait=true",
            h["id"].as_str().unwrap(),
            h["token"].as_str().unwrap()
        )
    };
    let (a, b) = (hook(ids::GENERAL), hook(ids::GAME_ROOM));
    let body = json!({"content": "x"});
    assert_eq!(execute(&sim, &a, &body).status, 200);
    let second = execute(&sim, &a, &body);
    assert_eq!(
        (second.status, second.header("X-RateLimit-Remaining")),
        (200, Some("0"))
    );
    let limited = execute(&sim, &a, &body);
    assert_eq!(limited.status, 429);
    assert!(limited.json()["retry_after"].as_f64().is_some());
    assert_eq!(limited.header("X-RateLimit-Scope"), Some("user"));
    assert_eq!(
        execute(&sim, &b, &body).status,
        200,
        "another webhook, another bucket"
    );
}

#[test]
fn recent_messages_are_listed_newest_first() {
    let sim = start();
    let a = sim.post_as(ids::ADA, ids::GENERAL, "one").unwrap();
    let b = sim.post_as(ids::ADA, ids::GENERAL, "two").unwrap();
    sim.post_as(ids::ADA, ids::GAME_ROOM, "elsewhere").unwrap();
    let get = |q: &str| {
        http(
            &sim,
            "GET",
            &format!("/channels/{}/messages{q}", ids::GENERAL),
            Some(sim.bot_token()),
            &[],
            None,
        )
    };
    let ids_of = |r: HttpReply| -> Vec<String> {
        r.json()
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap().to_owned())
            .collect()
    };
    // Five reads: the message-read bucket holds five per 5 s.
    assert_eq!(get("").json()[0]["content"], "two");
    assert_eq!(ids_of(get("?limit=1")), vec![b.clone()]);
    assert_eq!(ids_of(get(&format!("?before={b}"))), vec![a.clone()]);
    assert_eq!(ids_of(get(&format!("?after={a}"))), vec![b]);
    assert_eq!(get("?limit=101").status, 400);
}

/// What a takeover by another process meets (CONTRACT.md §10): a session
/// closed with a code other than 1000/1001 stays resumable from a new
/// connection, which gets what was dispatched meanwhile; one closed with
/// 1000 is gone (op 9 `false`), as Discord documents.
#[test]
fn a_session_closed_with_4000_resumes_elsewhere_and_one_closed_with_1000_does_not() {
    use tungstenite::protocol::frame::coding::CloseCode;
    use tungstenite::protocol::CloseFrame;
    let sim = start();
    let resume = |sid: &Value, seq: u64| {
        let mut ws = connect(&format!("{}?v=10&encoding=json", sim.resume_gateway_url()));
        assert_eq!(recv(&mut ws)["op"], 10);
        send(
            &mut ws,
            json!({ "op": 6, "d": { "token": sim.bot_token(), "session_id": sid, "seq": seq } }),
        );
        ws
    };

    let (mut ws, ready, _) = session(&sim, intents::RELAY);
    let sid = ready["d"]["session_id"].clone();
    ws.close(Some(CloseFrame {
        code: CloseCode::from(4000),
        reason: "handing over".into(),
    }))
    .unwrap();
    assert_eq!(recv_close(&mut ws), Some(4000));
    sim.dispatch("TEST_EVENT", json!({ "n": 1 }));
    let mut other = resume(&sid, 2);
    let replayed = recv(&mut other);
    assert_eq!(
        (replayed["s"].clone(), replayed["d"]["n"].clone()),
        (json!(3), json!(1))
    );
    assert_eq!(recv(&mut other)["t"], "RESUMED");

    let (mut ws, ready, _) = session(&sim, intents::RELAY);
    let sid = ready["d"]["session_id"].clone();
    ws.close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "".into(),
    }))
    .unwrap();
    assert_eq!(recv_close(&mut ws), Some(1000));
    wait_until("the 1000-closed session to end", || {
        !sim.session_ids()
            .contains(&sid.as_str().unwrap().to_owned())
    });
    let mut other = resume(&sid, 2);
    assert_eq!(
        recv(&mut other),
        json!({ "op": 9, "d": false, "s": null, "t": null })
    );
}
