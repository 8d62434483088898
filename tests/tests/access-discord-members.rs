//! `ACCESS=discord` end to end on real sockets (CONTRACT.md §8): the simulated
//! Discord's guild (Ada a plain member, Grace a moderator; `#moderators` is
//! private to moderators), the real gateway and an edge. Two members on one
//! edge see exactly what Discord would show each, before and after an
//! overwrite change and a channel deletion; a command refused for a missing
//! permission never reaches Discord.

use std::time::Duration;

use relay::config::AccessMode;
use relay::edge::Edge;
use relay::gateway::Gateway;
use relay::metrics::Metrics;
use relay_protocol::sse::SseEvent;
use relay_runtime::sim_discord::{ids, perms, Overwrite, SimConfig, SimDiscord};
use relay_tests::discord::gateway_settings;
use relay_tests::gateway_rig::TestEdge;
use relay_tests::harness::{post, settings, LINK_TOKEN};
use relay_tests::sse_client::SseClient;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(10);

struct Rig {
    sim: SimDiscord,
    gateway: Gateway,
    edge: Edge,
}

impl Rig {
    fn start() -> Rig {
        Self::start_with(false, None)
    }

    /// `members_intent`: the gateway identifies with GUILD_MEMBERS, so member
    /// changes arrive as GUILD_MEMBER_UPDATE. `member_max_age`: how soon the
    /// gateway reads members again (5 minutes unless given).
    fn start_with(members_intent: bool, member_max_age: Option<Duration>) -> Rig {
        let _ = relay::logging::init(relay::logging::LogFormat::Text, "info");
        let sim = SimDiscord::start(SimConfig::default()).expect("sim starts");
        let metrics = std::sync::Arc::new(Metrics::new());
        let mut gateway_settings = gateway_settings(&sim, LINK_TOKEN);
        gateway_settings.members_intent = members_intent;
        if let Some(age) = member_max_age {
            gateway_settings.member_max_age = age;
        }
        let gateway = Gateway::start(gateway_settings, metrics.clone()).expect("gateway starts");
        assert!(gateway.wait_discord_connected(WAIT));
        let mut s = settings(&gateway.link_url());
        s.access = AccessMode::Discord;
        let edge = Edge::start(s, metrics).expect("edge starts");
        assert!(edge.wait_link(true, WAIT));
        Rig { sim, gateway, edge }
    }

    fn token(&self, user: &str) -> String {
        let roles = ["chat:write".to_string(), "voice:moderate".to_string()];
        self.edge
            .issue_token(user, Some("t"), &roles, Duration::from_secs(600))
    }

    /// A stream of a guild member, read up to the `access` event that lists
    /// `#general`: a stream opened before the edge knew the guild or the member
    /// gets an emptier one first, then this one as they arrive.
    fn member_stream(&self, user: &str) -> (SseClient, Value) {
        self.stream_until(user, |a| channels(a).contains(&ids::GENERAL.to_string()))
    }

    fn stream_until(&self, user: &str, done: impl Fn(&Value) -> bool) -> (SseClient, Value) {
        let path = format!("/api/stream?access_token={}", self.token(user));
        let mut s = SseClient::connect(self.edge.local_addr(), &path, &[]).unwrap();
        assert_eq!(s.status, 200);
        loop {
            let access = data(&s.wait_for("access", WAIT).expect("an access event"));
            if done(&access) {
                return (s, access);
            }
        }
    }

    fn send(&self, user: &str, channel: &str, content: &str) -> (u16, Value) {
        self.call(
            user,
            "/api/send-message",
            json!({"channelId": channel, "content": content}),
        )
    }

    /// POSTs a command as `user`: its status and JSON answer.
    fn call(&self, user: &str, path: &str, body: Value) -> (u16, Value) {
        let r = post(
            &format!("http://{}", self.edge.local_addr()),
            path,
            Some(&self.token(user)),
            "application/json",
            &body.to_string(),
        );
        (r.status, r.json())
    }
}

fn data(ev: &SseEvent) -> Value {
    serde_json::from_str::<Value>(&ev.data).unwrap()["data"].clone()
}

/// The contents of the `messageCreate` events up to and including `marker`.
fn messages_until(s: &mut SseClient, marker: &str) -> Vec<String> {
    let mut seen = Vec::new();
    loop {
        let ev = s
            .wait_for("messageCreate", WAIT)
            .expect("the marker arrives");
        let content = data(&ev)["content"].as_str().unwrap_or_default().to_owned();
        seen.push(content.clone());
        if content == marker {
            return seen;
        }
    }
}

fn channels(access: &Value) -> Vec<String> {
    let mut c: Vec<String> = access["channels"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    c.sort();
    c
}

#[test]
fn each_member_sees_what_discord_shows_them() {
    let rig = Rig::start();
    let (mut ada, ada_access) = rig.member_stream(ids::ADA);
    let (mut grace, grace_access) = rig.member_stream(ids::GRACE);
    assert_eq!(ada_access["guildId"], ids::GUILD);
    assert!(
        channels(&ada_access).contains(&ids::GENERAL.to_string()),
        "{ada_access}"
    );
    assert!(!channels(&ada_access).contains(&ids::MODERATORS.to_string()));
    assert!(channels(&grace_access).contains(&ids::MODERATORS.to_string()));
    let general = &ada_access["channels"][ids::GENERAL];
    assert_eq!(general["type"], 0);
    assert!(general["can"].as_array().unwrap().contains(&json!("send")));

    rig.sim
        .post_as(ids::MARGARET, ids::MODERATORS, "for moderators");
    rig.sim.post_as(ids::MARGARET, ids::GENERAL, "marker 1");
    assert_eq!(messages_until(&mut ada, "marker 1"), vec!["marker 1"]);
    assert_eq!(
        messages_until(&mut grace, "marker 1"),
        vec!["for moderators", "marker 1"]
    );

    // An overwrite that lets Ada view #moderators: a new access event, then its messages.
    let mut overwrites: Vec<Overwrite> =
        rig.sim.channel_json(ids::MODERATORS).expect("the channel")["permission_overwrites"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Overwrite::from_json)
            .collect();
    overwrites.push(Overwrite::member(ids::ADA, perms::VIEW_CHANNEL, 0));
    assert!(rig.sim.set_channel_overwrites(ids::MODERATORS, overwrites));
    let access = data(
        &ada.wait_for("access", WAIT)
            .expect("access after the overwrite"),
    );
    assert!(channels(&access).contains(&ids::MODERATORS.to_string()));
    rig.sim
        .post_as(ids::MARGARET, ids::MODERATORS, "now Ada too");
    assert_eq!(messages_until(&mut ada, "now Ada too"), vec!["now Ada too"]);

    // A channel deleted: gone from both members' access.
    assert!(rig.sim.delete_channel(ids::GAME_ROOM));
    for s in [&mut ada, &mut grace] {
        let access = data(&s.wait_for("access", WAIT).expect("access after the delete"));
        assert!(!channels(&access).contains(&ids::GAME_ROOM.to_string()));
    }
    rig.edge.shutdown();
    rig.gateway.shutdown();
    rig.sim.shutdown();
}

#[test]
fn a_command_without_the_permission_is_refused_and_sends_nothing() {
    let rig = Rig::start();
    let before = rig.sim.requests().len();
    let (status, body) = rig.send(ids::ADA, ids::MODERATORS, "let me in");
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "missing_permission");
    assert_eq!(body["error"]["permission"], "VIEW_CHANNEL");
    let (status, body) = rig.send(ids::ADA, ids::ANNOUNCEMENTS, "announcing");
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["permission"], "SEND_MESSAGES");
    let mute = json!({"guildId": ids::GUILD, "userId": ids::LINUS, "mute": true});
    let (status, answer) = rig.call(ids::ADA, "/api/voice/mute-member", mute.clone());
    assert_eq!(status, 403, "{answer}");
    assert_eq!(answer["error"]["permission"], "MUTE_MEMBERS");
    // None of them reached Discord (member reads may have: they are no commands).
    let sent: Vec<String> = rig.sim.requests()[before..]
        .iter()
        .filter(|r| r.method != "GET")
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert!(sent.is_empty(), "{sent:?}");
    // Allowed ones go through.
    let (status, body) = rig.send(ids::ADA, ids::GENERAL, "hello");
    assert_eq!(status, 200, "{body}");
    let (status, answer) = rig.call(ids::GRACE, "/api/voice/mute-member", mute.clone());
    assert_eq!(status, 200, "{answer}");
    rig.edge.shutdown();
    rig.gateway.shutdown();
    rig.sim.shutdown();
}

#[test]
fn the_gateway_checks_again_before_calling_discord() {
    // A command frame straight to the gateway, as an edge with an old view might send.
    let rig = Rig::start();
    let mut cmd = relay_tests::discord::command_json(
        "sendMessage",
        json!({"channelId": ids::MODERATORS, "content": "sneaky"}),
        "req-1",
        ids::ADA,
    );
    cmd["meta"]["access"] = json!("discord");
    let link = TestEdge::connect(&rig.gateway.link_url(), LINK_TOKEN).expect("link");
    link.send(&cmd);
    let reply = link.next("the reply", |f| f["meta"]["requestId"] == "req-1");
    assert_eq!(reply["type"], "error", "{reply}");
    assert_eq!(reply["data"]["code"], "missing_permission");
    assert!(rig
        .sim
        .requests()
        .iter()
        .all(|r| !r.path.ends_with("/messages")));
    rig.edge.shutdown();
    rig.gateway.shutdown();
    rig.sim.shutdown();
}

fn can(access: &Value, channel: &str) -> Vec<String> {
    access["channels"][channel]["can"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|c| c.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn role_changes_and_timeouts_reach_the_stream() {
    let rig = Rig::start_with(true, None);
    let (mut ada, before) = rig.member_stream(ids::ADA);
    assert!(!channels(&before).contains(&ids::MODERATORS.to_string()));
    let started = std::time::Instant::now();
    assert!(rig
        .sim
        .set_member_roles(ids::ADA, &[ids::ROLE_MEMBER, ids::ROLE_MODERATOR]));
    let access = data(
        &ada.wait_for("access", WAIT)
            .expect("access after the role change"),
    );
    println!("role change → access event: {:?}", started.elapsed());
    assert!(channels(&access).contains(&ids::MODERATORS.to_string()));
    // The new voice snapshot follows the access event.
    assert!(ada.wait_for("voice.snapshot", WAIT).is_some());
    rig.sim.post_as(ids::GRACE, ids::MODERATORS, "welcome Ada");
    assert_eq!(messages_until(&mut ada, "welcome Ada"), vec!["welcome Ada"]);

    // A timeout: view and history stay, sending goes; it ends by the clock alone.
    let until = relay_runtime::clock::unix_ms() + 2_000;
    assert!(rig.sim.timeout_member(ids::ADA, Some(until)));
    let timed_out = data(
        &ada.wait_for("access", WAIT)
            .expect("access after the timeout"),
    );
    assert_eq!(can(&timed_out, ids::GENERAL), vec!["view", "history"]);
    let (status, body) = rig.send(ids::ADA, ids::GENERAL, "muted?");
    assert_eq!(
        (status, body["error"]["permission"].clone()),
        (403, json!("SEND_MESSAGES"))
    );
    let restored = data(
        &ada.wait_for("access", WAIT)
            .expect("access when the timeout ends"),
    );
    assert!(relay_runtime::clock::unix_ms() >= until);
    assert!(can(&restored, ids::GENERAL).contains(&"send".to_string()));

    // Removed from the guild: nothing at all.
    assert!(rig.sim.remove_member(ids::ADA));
    let gone = data(&ada.wait_for("access", WAIT).expect("access after leaving"));
    assert!(channels(&gone).is_empty(), "{gone}");
    rig.edge.shutdown();
    rig.gateway.shutdown();
    rig.sim.shutdown();
}

#[test]
fn a_session_for_someone_outside_the_guild_sees_and_does_nothing() {
    let rig = Rig::start();
    let stranger = "999999999999999999";
    let (mut s, access) = rig.stream_until(stranger, |a| a["guildId"] == ids::GUILD);
    assert!(channels(&access).is_empty(), "{access}");
    let (mut ada, _) = rig.member_stream(ids::ADA);
    rig.sim.post_as(ids::MARGARET, ids::GENERAL, "public");
    assert_eq!(messages_until(&mut ada, "public"), vec!["public"]);
    let (status, body) = rig.send(stranger, ids::GENERAL, "hi");
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["permission"], "VIEW_CHANNEL");
    // The link going down reaches every stream after "public" did: the stranger
    // sees that, and nothing before it.
    rig.gateway.kick_edges();
    let mut before_down = Vec::new();
    loop {
        let ev = s.next_event(WAIT).expect("gateway.status arrives");
        if ev.event == "gateway.status" && data(&ev)["connected"] == false {
            break;
        }
        before_down.push(ev.event);
    }
    assert!(
        before_down.iter().all(|e| e != "messageCreate"),
        "{before_down:?}"
    );
    rig.edge.shutdown();
    rig.gateway.shutdown();
    rig.sim.shutdown();
}

#[test]
fn without_the_members_intent_a_role_change_arrives_by_rereading_the_member() {
    // The 5-minute re-read, shortened to 1 s: no GUILD_MEMBER_UPDATE reaches a
    // gateway without GUILD_MEMBERS, so only the re-read can tell.
    let rig = Rig::start_with(false, Some(Duration::from_secs(1)));
    let (mut ada, before) = rig.member_stream(ids::ADA);
    assert!(!channels(&before).contains(&ids::MODERATORS.to_string()));
    assert!(rig
        .sim
        .set_member_roles(ids::ADA, &[ids::ROLE_MEMBER, ids::ROLE_MODERATOR]));
    let access = data(
        &ada.wait_for("access", WAIT)
            .expect("access after the re-read"),
    );
    assert!(
        channels(&access).contains(&ids::MODERATORS.to_string()),
        "{access}"
    );
    let reads = rig
        .sim
        .requests()
        .iter()
        .filter(|r| r.method == "GET" && r.path.ends_with(&format!("/members/{}", ids::ADA)))
        .count();
    assert!(reads >= 2, "read once on first use, then again: {reads}");
    rig.edge.shutdown();
    rig.gateway.shutdown();
    rig.sim.shutdown();
}

#[test]
fn an_error_goes_to_the_member_whose_command_caused_it() {
    let rig = Rig::start();
    let (mut ada, _) = rig.member_stream(ids::ADA);
    let (mut grace, _) = rig.member_stream(ids::GRACE);
    // Grace may mute, but Ada is in no voice channel: Discord answers 400.
    let mute = json!({"guildId": ids::GUILD, "userId": ids::ADA, "mute": true});
    let (status, answer) = rig.call(ids::GRACE, "/api/voice/mute-member", mute.clone());
    assert_eq!(status, 502, "{answer}");
    let request_id = answer["requestId"].as_str().unwrap().to_owned();
    let error = data(&grace.wait_for("error", WAIT).expect("Grace sees her error"));
    assert_eq!(error["requestId"], request_id.as_str());
    // Ada's stream: the marker message arrives and no error came before it.
    rig.sim.post_as(ids::MARGARET, ids::GENERAL, "marker");
    let mut before_marker = Vec::new();
    loop {
        let ev = ada.next_event(WAIT).expect("the marker arrives");
        if ev.event == "messageCreate" && data(&ev)["content"] == "marker" {
            break;
        }
        before_marker.push(ev.event);
    }
    assert!(
        !before_marker.contains(&"error".to_string()),
        "{before_marker:?}"
    );
    rig.edge.shutdown();
    rig.gateway.shutdown();
    rig.sim.shutdown();
}

#[test]
fn a_change_to_the_bots_own_member_reaches_every_members_stream() {
    // Every member's access is cut to the bot's own permissions: a change to
    // the bot's member (here a timeout) must rescope every stream, not only
    // the bot's own (the edge once recomputed just the member that changed).
    let rig = Rig::start_with(true, None);
    let (mut ada, before) = rig.member_stream(ids::ADA);
    assert!(
        can(&before, ids::GENERAL).contains(&"send".to_string()),
        "{before}"
    );
    let until = relay_runtime::clock::unix_ms() + 60_000;
    assert!(rig.sim.timeout_member(ids::BOT_USER, Some(until)));
    let after = data(
        &ada.wait_for("access", WAIT)
            .expect("access after the bot's timeout"),
    );
    assert_eq!(
        can(&after, ids::GENERAL),
        vec!["view", "history"],
        "{after}"
    );
    rig.edge.shutdown();
    rig.gateway.shutdown();
    rig.sim.shutdown();
}
