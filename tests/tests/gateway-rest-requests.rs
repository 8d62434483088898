//! Each link command becomes exactly the Discord REST call of
//! reference/discord.md §4, as the simulator recorded it: method, path,
//! `Authorization: Bot <token>`, `User-Agent`, `X-Audit-Log-Reason` naming the
//! actor on voice moderation, and the JSON body. Each gets an `ack`.

use relay_runtime::sim_discord::RecordedRequest;
use relay_tests::discord::{command_json, ids};
use relay_tests::gateway_rig::{GatewayRig, TestEdge};
use serde_json::{json, Value};

/// Sends one command and returns its reply and the one request it caused.
fn run(
    rig: &GatewayRig,
    edge: &TestEdge,
    kind: &str,
    data: Value,
    id: &str,
) -> (Value, RecordedRequest) {
    let before = rig.sim.requests().len();
    edge.send(&command_json(kind, data, id, "user-42"));
    let reply = edge.reply_to(id);
    let requests = rig.sim.requests();
    assert_eq!(requests.len(), before + 1, "{kind}: exactly one REST call");
    (reply, requests[before].clone())
}

fn assert_common(rig: &GatewayRig, req: &RecordedRequest) {
    let auth = format!("Bot {}", rig.sim.bot_token());
    assert_eq!(req.header("authorization"), Some(auth.as_str()));
    let ua = req.header("user-agent").unwrap();
    assert!(ua.starts_with("DiscordBot (") && ua.ends_with(')'), "{ua}");
}

#[test]
fn send_message_posts_without_pinging_anyone() {
    let rig = GatewayRig::start();
    let edge = rig.edge();
    let (reply, req) = run(
        &rig,
        &edge,
        "sendMessage",
        json!({"channelId": ids::GENERAL, "content": "hello @everyone ✨"}),
        "req-send",
    );
    assert_eq!(reply["type"], "ack");
    assert_eq!(reply["meta"]["traceId"], "trace-req-send");
    assert_eq!(req.method, "POST");
    assert_eq!(
        req.path,
        format!("/api/v10/channels/{}/messages", ids::GENERAL)
    );
    assert_common(&rig, &req);
    assert!(req
        .header("content-type")
        .unwrap()
        .starts_with("application/json"));
    assert_eq!(req.header("x-audit-log-reason"), None);
    let body = req.json().unwrap();
    assert_eq!(body["content"], "hello @everyone ✨");
    assert_eq!(body["allowed_mentions"], json!({"parse": []}));
    // The bot's own message comes back through the gateway like any other.
    let echoed = edge.next_type("messageCreate");
    assert_eq!(echoed["data"]["author"]["id"], rig.sim.bot_user_id());
}

#[test]
fn add_reaction_percent_encodes_unicode_and_custom_emoji() {
    let rig = GatewayRig::start();
    let edge = rig.edge();
    let message = rig
        .sim
        .post_as(ids::ADA, ids::GENERAL, "react to me")
        .unwrap();
    let (reply, req) = run(
        &rig,
        &edge,
        "addReaction",
        json!({"channelId": ids::GENERAL, "messageId": message, "emoji": "🔥"}),
        "req-react",
    );
    assert_eq!(reply["type"], "ack");
    assert_eq!(req.method, "PUT");
    assert_eq!(
        req.path,
        format!(
            "/api/v10/channels/{}/messages/{message}/reactions/%F0%9F%94%A5/@me",
            ids::GENERAL
        )
    );
    assert_common(&rig, &req);
    assert!(req.body.is_empty());
    assert_eq!(req.header("content-length"), Some("0"));

    // Reactions are limited to 1 per 250 ms per channel: use another channel.
    let other = rig.sim.post_as(ids::ADA, ids::GAME_ROOM, "me too").unwrap();
    let (_, req) = run(
        &rig,
        &edge,
        "addReaction",
        json!({"channelId": ids::GAME_ROOM, "messageId": other, "emoji": "LUL:41771983429993937"}),
        "req-react-custom",
    );
    // `name:id` as Discord documents it; the colon is legal in a path segment.
    assert!(
        req.path.ends_with("/reactions/LUL:41771983429993937/@me"),
        "{}",
        req.path
    );
}

#[test]
fn typing_start_triggers_typing() {
    let rig = GatewayRig::start();
    let edge = rig.edge();
    let (reply, req) = run(
        &rig,
        &edge,
        "typingStart",
        json!({"channelId": ids::GAME_ROOM}),
        "req-typing",
    );
    assert_eq!(reply["type"], "ack");
    assert_eq!(req.method, "POST");
    assert_eq!(
        req.path,
        format!("/api/v10/channels/{}/typing", ids::GAME_ROOM)
    );
    assert_common(&rig, &req);
    assert_eq!(req.header("content-length"), Some("0"));
}

#[test]
fn voice_moderation_names_the_actor_in_the_audit_log() {
    let rig = GatewayRig::start();
    let edge = rig.edge();
    // Linus sits in Lobby from the start.
    let (reply, req) = run(
        &rig,
        &edge,
        "voiceMove",
        json!({"guildId": ids::GUILD, "userId": ids::LINUS, "channelId": ids::RAID}),
        "req-move",
    );
    assert_eq!(reply["type"], "ack", "{reply}");
    assert_eq!(req.method, "PATCH");
    assert_eq!(
        req.path,
        format!("/api/v10/guilds/{}/members/{}", ids::GUILD, ids::LINUS)
    );
    assert_common(&rig, &req);
    let reason = req.header("x-audit-log-reason").unwrap();
    assert!(reason.contains("user-42"), "{reason}");
    assert_eq!(req.json().unwrap(), json!({"channel_id": ids::RAID}));
    assert_eq!(
        rig.sim.voice_channel_of(ids::LINUS).as_deref(),
        Some(ids::RAID)
    );

    let (reply, req) = run(
        &rig,
        &edge,
        "voiceMute",
        json!({"guildId": ids::GUILD, "userId": ids::LINUS, "mute": true}),
        "req-mute",
    );
    assert_eq!(reply["type"], "ack", "{reply}");
    assert_eq!(req.json().unwrap(), json!({"mute": true}));
    assert!(req
        .header("x-audit-log-reason")
        .unwrap()
        .contains("user-42"));

    let (reply, req) = run(
        &rig,
        &edge,
        "voiceMove",
        json!({"guildId": ids::GUILD, "userId": ids::LINUS, "channelId": null}),
        "req-disconnect",
    );
    assert_eq!(reply["type"], "ack", "{reply}");
    assert_eq!(req.json().unwrap(), json!({"channel_id": null}));
    assert_eq!(rig.sim.voice_channel_of(ids::LINUS), None);
    let audit = rig.sim.audit_log();
    assert_eq!(audit.len(), 3);
    assert!(audit
        .iter()
        .all(|a| a.reason.as_deref().is_some_and(|r| r.contains("user-42"))));
}

#[test]
fn a_discord_error_becomes_a_safe_error_reply() {
    let rig = GatewayRig::start();
    let edge = rig.edge();
    // Ken is not in voice: Discord answers 400 with JSON code 40032.
    let (reply, _) = run(
        &rig,
        &edge,
        "voiceMute",
        json!({"guildId": ids::GUILD, "userId": ids::KEN, "mute": true}),
        "req-not-in-voice",
    );
    assert_eq!(reply["type"], "error");
    assert_eq!(reply["data"]["code"], "discord_bad_request");
    let message = reply["data"]["message"].as_str().unwrap();
    assert!(message.contains("40032"), "{message}");
    assert!(!message.contains(rig.sim.bot_token()));
}
