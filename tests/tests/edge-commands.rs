//! The command API: every status of CONTRACT.md §3, in the order 401 → 403 → 400
//! → 429 → 503, and a rejected call never reaches the gateway.

use std::time::Duration;

use relay_protocol::payload::CommandBody;
use relay_tests::harness::{post, Harness};
use relay_tests::test_gateway::ReplyMode;

const T: Duration = Duration::from_secs(5);
const SEND: &str = "/api/send-message";
const MSG: &str = r#"{"channelId":"100","content":"hello"}"#;

#[test]
fn ack_gives_200_with_ids_and_the_frame_carries_meta() {
    let h = Harness::start();
    let token = h.token("42", &["chat:write"]);
    let r = h.post(SEND, Some(&token), MSG);
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(v["ok"], true);
    let cmd = h
        .gateway
        .next_command(T)
        .expect("the gateway got the command");
    assert_eq!(v["requestId"], cmd.meta.request_id.as_deref().unwrap());
    assert_eq!(v["traceId"], cmd.meta.trace_id.as_str());
    assert_eq!(cmd.meta.actor.as_deref(), Some("42"));
    assert!(cmd.meta.sent_at.ends_with('Z'));
    match cmd.body {
        CommandBody::SendMessage(m) => {
            assert_eq!(m.channel_id, "100");
            assert_eq!(m.content, "hello");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn each_endpoint_maps_to_its_link_command() {
    let h = Harness::start();
    let token = h.token("42", &["chat:write", "voice:moderate"]);
    let calls = [
        (
            "/api/add-reaction",
            r#"{"channelId":"1","messageId":"2","emoji":"🔥"}"#,
            "addReaction",
        ),
        ("/api/typing-start", r#"{"channelId":"1"}"#, "typingStart"),
        (
            "/api/voice/move-member",
            r#"{"guildId":"1","userId":"2","channelId":null}"#,
            "voiceMove",
        ),
        (
            "/api/voice/mute-member",
            r#"{"guildId":"1","userId":"2","mute":true}"#,
            "voiceMute",
        ),
    ];
    for (path, body, kind) in calls {
        let r = h.post(path, Some(&token), body);
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        assert_eq!(h.gateway.next_command(T).unwrap().body.type_name(), kind);
    }
}

#[test]
fn rejections_follow_the_contract_order_and_never_reach_the_gateway() {
    let h = Harness::start_with(|s| {
        s.limits.burst = 1;
        s.limits.refill = 1;
        s.limits.window = Duration::from_secs(60);
    });
    let writer = h.token("42", &["chat:write"]);
    let reader = h.token("43", &[]);
    // 401: no token, garbage, and a token signed with another key — even with a bad body.
    assert_eq!(h.post(SEND, None, "{").status, 401);
    let r = h.post(SEND, Some("x.y.z"), MSG);
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"]["code"], "unauthenticated");
    // 403 before 400: a reader with an invalid body is forbidden.
    let r = h.post(SEND, Some(&reader), "{");
    assert_eq!(r.status, 403);
    assert_eq!(r.json()["error"]["code"], "forbidden");
    let r = h.post(
        "/api/voice/mute-member",
        Some(&writer),
        r#"{"guildId":"1","userId":"2","mute":true}"#,
    );
    assert_eq!(r.status, 403, "chat:write is not voice:moderate");
    // 400 with field issues, including the 2000-character limit.
    let long = "x".repeat(2001);
    let r = h.post(
        SEND,
        Some(&writer),
        &format!(r#"{{"channelId":"abc","content":"{long}"}}"#),
    );
    assert_eq!(r.status, 400);
    let v = r.json();
    assert_eq!(v["error"]["code"], "invalid_request");
    let paths: Vec<_> = v["issues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["path"][0].clone())
        .collect();
    assert_eq!(
        paths,
        [serde_json::json!("channelId"), serde_json::json!("content")]
    );
    assert_eq!(h.post(SEND, Some(&writer), "not json").status, 400);
    // 415 and 413.
    let r = post(&h.base(), SEND, Some(&writer), "text/plain", MSG);
    assert_eq!(r.status, 415);
    let huge = format!(
        r#"{{"channelId":"1","content":"{}"}}"#,
        "y".repeat(70 * 1024)
    );
    assert_eq!(h.post(SEND, Some(&writer), &huge).status, 413);
    // 404 and 405 in the same error shape.
    let r = h.post("/api/nope", Some(&writer), MSG);
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"]["code"], "not_found");
    let r = h.get(SEND);
    assert_eq!(r.status, 405);
    assert!(r.json()["error"]["code"].is_string());
    // Nothing so far reached the gateway.
    assert!(h.gateway.commands().is_empty());
    // 429 from the local bucket (burst 1): one passes, the next is limited.
    assert_eq!(h.post(SEND, Some(&writer), MSG).status, 200);
    let r = h.post(SEND, Some(&writer), MSG);
    assert_eq!(r.status, 429);
    let v = r.json();
    assert_eq!(v["error"]["code"], "rate_limited");
    let ms = v["retryAfterMs"].as_u64().unwrap();
    assert!(ms > 50_000 && ms <= 60_000, "{ms}");
    assert_eq!(r.header("retry-after"), Some("60"));
    assert_eq!(
        h.gateway.commands().len(),
        1,
        "only the allowed call was sent"
    );
}

#[test]
fn the_channel_bucket_is_shared_between_users() {
    let h = Harness::start_with(|s| {
        s.limits.burst = 2;
        s.limits.refill = 1;
        s.limits.window = Duration::from_secs(60);
    });
    let a = h.token("1", &["chat:write"]);
    let b = h.token("2", &["chat:write"]);
    assert_eq!(h.post(SEND, Some(&a), MSG).status, 200);
    assert_eq!(h.post(SEND, Some(&b), MSG).status, 200);
    // Both users have tokens left, the channel has none.
    assert_eq!(h.post(SEND, Some(&a), MSG).status, 429);
    // Another channel is free.
    assert_eq!(
        h.post(SEND, Some(&a), r#"{"channelId":"101","content":"hi"}"#)
            .status,
        200
    );
}

#[test]
fn gateway_replies_map_to_429_502_504() {
    let h = Harness::start_with(|s| s.reply_timeout = Duration::from_millis(300));
    let token = h.token("42", &["chat:write"]);
    h.gateway.set_mode(ReplyMode::RateLimited {
        retry_after_ms: 2500,
        global: false,
    });
    let r = h.post(SEND, Some(&token), MSG);
    assert_eq!(r.status, 429);
    assert_eq!(r.json()["retryAfterMs"], 2500);
    assert_eq!(r.header("retry-after"), Some("3"), "seconds, rounded up");

    h.gateway.set_mode(ReplyMode::Error {
        code: "discord_forbidden".into(),
        message: "Missing Permissions".into(),
    });
    let r = h.post(SEND, Some(&token), r#"{"channelId":"101","content":"x"}"#);
    assert_eq!(r.status, 502);
    assert_eq!(r.json()["error"]["code"], "gateway_error");
    assert_eq!(r.json()["error"]["message"], "Missing Permissions");

    h.gateway.set_mode(ReplyMode::Silent);
    let r = h.post(SEND, Some(&token), r#"{"channelId":"102","content":"x"}"#);
    assert_eq!(r.status, 504);
    assert_eq!(r.json()["error"]["code"], "gateway_timeout");
}

#[test]
fn a_full_queue_answers_503() {
    let h = Harness::start_with(|s| s.queue_capacity = 2);
    let token = h.token("42", &["chat:write"]);
    h.gateway.set_accepting(false);
    h.gateway.drop_connections();
    assert!(h.wait_link(false, T), "link never went down");
    assert_eq!(h.get("/readyz").status, 503);
    for ch in ["1", "2"] {
        let r = h.post(
            SEND,
            Some(&token),
            &format!(r#"{{"channelId":"{ch}","content":"x"}}"#),
        );
        assert_eq!(r.status, 202, "{}", r.body);
        assert_eq!(r.json()["queued"], true);
    }
    let r = h.post(SEND, Some(&token), r#"{"channelId":"3","content":"x"}"#);
    assert_eq!(r.status, 503);
    assert_eq!(r.json()["error"]["code"], "queue_full");
}
