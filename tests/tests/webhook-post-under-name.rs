//! Words under the sender's name (CONTRACT.md §9, docs/webhooks.md) on real
//! sockets: the simulated Discord, the real gateway and an edge. With
//! `ACCESS=discord` a member's message goes through the channel's `relay`
//! webhook under her name and avatar and comes back over SSE as hers with
//! `via: "relay"`; the webhook is made once and reused; a thread uses its
//! parent's webhook; a name with "discord" is rewritten; without
//! MANAGE_WEBHOOKS, and with `ACCESS=roles`, the bot posts as in v1.0.

use std::sync::Arc;
use std::time::Duration;

use relay::auth::SessionKeys;
use relay::config::AccessMode;
use relay::edge::Edge;
use relay::gateway::Gateway;
use relay::metrics::Metrics;
use relay::secret::Secret;
use relay_protocol::sse::SseEvent;
use relay_runtime::clock;
use relay_runtime::sim_discord::{ids, perms, Overwrite, SimConfig, SimDiscord};
use relay_tests::discord::gateway_settings;
use relay_tests::harness::{post, settings, LINK_TOKEN, SESSION_SECRET};
use relay_tests::sse_client::SseClient;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(10);
const ADA_AVATAR: &str = "8342729096ea3675442027381ff50dfe";

struct Rig {
    sim: SimDiscord,
    gateway: Gateway,
    edge: Edge,
    /// `ACCESS=discord` (else roles).
    discord: bool,
}

impl Rig {
    fn start(access: AccessMode) -> Rig {
        Self::start_with(access, |_| {})
    }

    /// `setup` changes the simulated guild before the gateway connects.
    fn start_with(access: AccessMode, setup: impl FnOnce(&SimDiscord)) -> Rig {
        let _ = relay::logging::init(relay::logging::LogFormat::Text, "info");
        let sim = SimDiscord::start(SimConfig::default()).expect("sim starts");
        setup(&sim);
        let metrics = Arc::new(Metrics::new());
        let gateway = Gateway::start(gateway_settings(&sim, LINK_TOKEN), metrics.clone())
            .expect("gateway starts");
        assert!(gateway.wait_discord_connected(WAIT));
        let mut s = settings(&gateway.link_url());
        let discord = matches!(access, AccessMode::Discord);
        s.access = access;
        let edge = Edge::start(s, metrics).expect("edge starts");
        assert!(edge.wait_link(true, WAIT));
        Rig {
            sim,
            gateway,
            edge,
            discord,
        }
    }

    /// A session of `user` named `name`, with Ada's avatar hash.
    fn token(&self, user: &str, name: &str) -> String {
        let roles = ["chat:write".to_string(), "voice:moderate".to_string()];
        SessionKeys::new(&Secret::new(SESSION_SECRET)).issue_with_avatar(
            user,
            Some(name),
            Some(ADA_AVATAR),
            &roles,
            Duration::from_secs(600),
            clock::unix_secs(),
        )
    }

    /// A stream of `user`, read up to the `access` event listing `#general`
    /// (with `ACCESS=roles`: up to `voice.snapshot`).
    fn stream(&self, user: &str, name: &str) -> SseClient {
        let path = format!("/api/stream?access_token={}", self.token(user, name));
        let mut s = SseClient::connect(self.edge.local_addr(), &path, &[]).unwrap();
        assert_eq!(s.status, 200);
        if self.discord {
            loop {
                let access = data(&s.wait_for("access", WAIT).expect("an access event"));
                if access["channels"].get(ids::GENERAL).is_some() {
                    break;
                }
            }
        } else {
            s.wait_for("voice.snapshot", WAIT).expect("the preamble");
        }
        s
    }

    fn send(&self, user: &str, name: &str, channel: &str, content: &str) -> (u16, Value) {
        let body = json!({"channelId": channel, "content": content}).to_string();
        let r = post(
            &format!("http://{}", self.edge.local_addr()),
            "/api/send-message",
            Some(&self.token(user, name)),
            "application/json",
            &body,
        );
        (r.status, r.json())
    }

    /// The simulator's requests whose path starts with `prefix` (under `/api/v10`).
    fn calls(
        &self,
        method: &str,
        prefix: &str,
    ) -> Vec<relay_runtime::sim_discord::RecordedRequest> {
        self.sim
            .requests()
            .into_iter()
            .filter(|r| r.method == method && r.path.starts_with(&format!("/api/v10{prefix}")))
            .collect()
    }

    fn stop(self) {
        self.edge.shutdown();
        self.gateway.shutdown();
        self.sim.shutdown();
    }
}

fn data(ev: &SseEvent) -> Value {
    serde_json::from_str::<Value>(&ev.data).unwrap()["data"].clone()
}

/// The `messageCreate` data whose content is `content`.
fn message(s: &mut SseClient, content: &str) -> Value {
    loop {
        let m = data(
            &s.wait_for("messageCreate", WAIT)
                .expect("the message arrives"),
        );
        if m["content"] == content {
            return m;
        }
    }
}

#[test]
fn a_message_goes_out_under_the_senders_name_and_comes_back_as_hers() {
    let rig = Rig::start(AccessMode::Discord);
    let mut ada = rig.stream(ids::ADA, "Ada Lovelace");

    let (status, body) = rig.send(ids::ADA, "Ada Lovelace", ids::GENERAL, "hello from Ada");
    assert_eq!(status, 200, "{body}");
    let hooks = rig.sim.webhooks_in(ids::GENERAL);
    assert_eq!(hooks.len(), 1, "one webhook made: {hooks:?}");
    assert_eq!(hooks[0]["name"], "relay");
    let hook_id = hooks[0]["id"].as_str().unwrap().to_owned();

    // In Discord: posted by the webhook, under Ada's name and avatar.
    let executes = rig.calls("POST", "/webhooks/");
    assert_eq!(executes.len(), 1);
    assert!(
        executes[0].path.ends_with("?wait=true"),
        "{}",
        executes[0].path
    );
    let sent = executes[0].json().unwrap();
    assert_eq!(sent["username"], "Ada Lovelace");
    assert_eq!(
        sent["avatar_url"],
        format!(
            "https://cdn.discordapp.com/avatars/{}/{ADA_AVATAR}.png",
            ids::ADA
        )
    );
    assert_eq!(sent["allowed_mentions"], json!({"parse": []}));
    assert!(
        rig.calls("POST", &format!("/channels/{}/messages", ids::GENERAL))
            .is_empty(),
        "the bot did not post"
    );
    let in_discord = &rig.sim.messages_in(ids::GENERAL)[0];
    assert_eq!(in_discord["webhook_id"], hook_id.as_str());
    assert_eq!(in_discord["author"]["username"], "Ada Lovelace");

    // Over SSE: Ada's own message.
    let m = message(&mut ada, "hello from Ada");
    assert_eq!(m["author"]["id"], ids::ADA);
    assert_eq!(m["author"]["username"], "Ada Lovelace");
    assert_eq!(m["author"]["avatar"], ADA_AVATAR);
    assert_eq!(m["author"]["bot"], false);
    assert_eq!(m["via"], "relay");
    assert_eq!(m["id"], in_discord["id"]);

    // The webhook is reused: no second list or create.
    let (status, _) = rig.send(ids::ADA, "Ada Lovelace", ids::GENERAL, "again");
    assert_eq!(status, 200);
    assert_eq!(message(&mut ada, "again")["via"], "relay");
    assert_eq!(rig.sim.webhooks_in(ids::GENERAL).len(), 1);
    assert_eq!(
        rig.calls("POST", &format!("/channels/{}/webhooks", ids::GENERAL))
            .len(),
        1
    );
    assert_eq!(
        rig.calls("GET", &format!("/channels/{}/webhooks", ids::GENERAL))
            .len(),
        1
    );
    assert_eq!(rig.calls("POST", &format!("/webhooks/{hook_id}/")).len(), 2);

    // A message someone types in Discord has no `via`.
    rig.sim
        .post_as(ids::GRACE, ids::GENERAL, "typed in Discord");
    let m = message(&mut ada, "typed in Discord");
    assert_eq!(
        (m["author"]["id"].as_str(), m.get("via")),
        (Some(ids::GRACE), None)
    );
    rig.stop();
}

#[test]
fn a_thread_posts_through_its_parents_webhook() {
    let rig = Rig::start(AccessMode::Discord);
    let mut ada = rig.stream(ids::ADA, "Ada");
    let (status, body) = rig.send(ids::ADA, "Ada", ids::RELEASE_THREAD, "in the thread");
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        rig.sim.webhooks_in(ids::GENERAL).len(),
        1,
        "the parent's webhook"
    );
    let executes = rig.calls("POST", "/webhooks/");
    assert!(
        executes[0]
            .path
            .ends_with(&format!("?wait=true&thread_id={}", ids::RELEASE_THREAD)),
        "{}",
        executes[0].path
    );
    let m = message(&mut ada, "in the thread");
    assert_eq!(
        (
            m["channelId"].as_str(),
            m["author"]["id"].as_str(),
            m["via"].as_str()
        ),
        (Some(ids::RELEASE_THREAD), Some(ids::ADA), Some("relay"))
    );
    rig.stop();
}

#[test]
fn a_name_with_discord_in_it_is_rewritten_for_discord_only() {
    let rig = Rig::start(AccessMode::Discord);
    let mut ada = rig.stream(ids::ADA, "Discord Ada");
    let (status, body) = rig.send(ids::ADA, "Discord Ada", ids::GENERAL, "renamed");
    assert_eq!(status, 200, "{body}");
    let sent = rig.calls("POST", "/webhooks/")[0].json().unwrap();
    assert_eq!(sent["username"], "dscord Ada");
    assert_eq!(
        rig.sim.messages_in(ids::GENERAL)[0]["author"]["username"],
        "dscord Ada"
    );
    let m = message(&mut ada, "renamed");
    assert_eq!(
        m["author"]["username"], "Discord Ada",
        "browsers see the session's name"
    );
    assert_eq!(m["via"], "relay");
    rig.stop();
}

#[test]
fn without_manage_webhooks_the_bot_posts_as_before() {
    let rig = Rig::start_with(AccessMode::Discord, |sim| {
        assert!(sim.set_channel_overwrites(
            ids::GAME_ROOM,
            vec![Overwrite::role(ids::ROLE_BOT, 0, perms::MANAGE_WEBHOOKS)]
        ));
    });
    let mut ada = rig.stream(ids::ADA, "Ada");
    let (status, body) = rig.send(ids::ADA, "Ada", ids::GAME_ROOM, "as the bot");
    assert_eq!(status, 200, "{body}");
    assert!(rig.calls("POST", "/webhooks/").is_empty());
    assert!(rig
        .calls("GET", &format!("/channels/{}/webhooks", ids::GAME_ROOM))
        .is_empty());
    let posts = rig.calls("POST", &format!("/channels/{}/messages", ids::GAME_ROOM));
    assert_eq!(posts.len(), 1);
    let sent = posts[0].json().unwrap();
    assert_eq!(sent["enforce_nonce"], true);
    assert!(sent["nonce"].is_string());
    let made = &rig.sim.messages_in(ids::GAME_ROOM)[0];
    assert_eq!(made["author"]["id"], ids::BOT_USER);
    let m = message(&mut ada, "as the bot");
    assert_eq!(
        (m["author"]["id"].as_str(), m.get("via")),
        (Some(ids::BOT_USER), None)
    );
    rig.stop();
}

#[test]
fn with_access_roles_the_bot_posts_with_the_nonce_as_in_v1() {
    let rig = Rig::start(AccessMode::Roles);
    let mut s = rig.stream(ids::ADA, "Ada");
    let (status, body) = rig.send(ids::ADA, "Ada", ids::GENERAL, "v1 post");
    assert_eq!(status, 200, "{body}");
    assert!(rig.calls("POST", "/webhooks/").is_empty());
    assert!(rig.sim.webhooks_in(ids::GENERAL).is_empty());
    let posts = rig.calls("POST", &format!("/channels/{}/messages", ids::GENERAL));
    assert_eq!(posts.len(), 1);
    assert_eq!(posts[0].json().unwrap()["enforce_nonce"], true);
    let m = message(&mut s, "v1 post");
    assert_eq!(m["author"]["id"], ids::BOT_USER);
    assert_eq!(m["author"]["bot"], true);
    assert!(m.get("via").is_none());
    rig.stop();
}
