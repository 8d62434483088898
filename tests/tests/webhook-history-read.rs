//! relay's webhook posts read back from Discord (CONTRACT.md §9,
//! docs/webhooks.md) on real sockets: the simulated Discord, the real gateway
//! and an edge with `ACCESS=discord`. Discord's "Get Channel Messages" names
//! the webhook as author; a history read that the gateway's window cannot
//! answer must still show the web user who wrote it, with `via: "relay"`, as
//! the live `messageCreate` did. After a gateway restart the sender is
//! unknowable: the answer keeps the webhook's own author and still says
//! `via: "relay"` (relay's webhook is recognised by the bot's
//! `application_id`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use relay::config::AccessMode;
use relay::gateway::Gateway;
use relay::metrics::Metrics;
use relay_runtime::sim_discord::ids;
use relay_tests::discord::gateway_settings;
use relay_tests::harness::{post, LINK_TOKEN};
use relay_tests::history_rig::{ids_of, HistoryRig, WAIT};
use serde_json::{json, Value};

/// The window keeps this many messages per channel (`HistoryLimits::default`).
const WINDOW: usize = 200;

fn first(r: &relay_tests::harness::Response) -> Value {
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()["messages"][0].clone()
}

#[test]
fn a_relay_post_read_back_from_discord_names_its_sender_and_after_a_restart_the_webhook() {
    let mut rig = HistoryRig::start(AccessMode::Discord);
    let ada = rig.edge.issue_token(
        ids::ADA,
        Some("Ada Lovelace"),
        &["chat:write".to_string()],
        Duration::from_secs(600),
    );
    let r = post(
        &rig.base(),
        "/api/send-message",
        Some(&ada),
        "application/json",
        &json!({"channelId": ids::GENERAL, "content": "read me back"}).to_string(),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let in_discord = rig
        .sim
        .messages_in(ids::GENERAL)
        .into_iter()
        .find(|m| m["content"] == "read me back")
        .expect("posted");
    let (id, hook) = (
        in_discord["id"].as_str().unwrap().to_owned(),
        in_discord["webhook_id"]
            .as_str()
            .expect("through the webhook")
            .to_owned(),
    );

    // More than the window holds arrives after it, so the post is read from Discord.
    let mut stream = rig.stream(ids::ADA);
    let mut flood = Vec::new();
    for i in 0..=WINDOW {
        flood.push(
            rig.sim
                .post_as(ids::LINUS, ids::GENERAL, &format!("flood {i}"))
                .unwrap(),
        );
    }
    let newest = flood.last().unwrap().clone();
    // The gateway puts an event in its window before it forwards it.
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let e = stream
            .wait_for("messageCreate", left)
            .expect("the flood arrives");
        let v: Value = serde_json::from_str(&e.data).expect("JSON");
        if v["data"]["id"] == newest.as_str() {
            break;
        }
    }
    assert_eq!(
        ids_of(&rig.read(Some(&ada), ids::GENERAL, "limit=1")),
        vec![newest]
    );

    let query = format!("limit=1&before={}", flood[0]);
    let reads = rig.discord_reads();
    let m = first(&rig.read(Some(&ada), ids::GENERAL, &query));
    assert_eq!(
        rig.discord_reads(),
        reads + 1,
        "a window miss, read from Discord"
    );
    assert_eq!(m["id"], id.as_str());
    assert_eq!(m["author"]["id"], ids::ADA, "{m}");
    assert_eq!(m["author"]["username"], "Ada Lovelace");
    assert_eq!(m["author"]["bot"], false);
    assert_eq!(m["via"], "relay");
    assert_eq!(m["content"], "read me back");

    // A new gateway process: no memory of who posted. Discord's word, marked as relay's.
    let old = rig.gateway.take().expect("running");
    let bind = old.link_addr();
    old.shutdown();
    assert!(rig.edge.wait_link(false, WAIT));
    let mut settings = gateway_settings(&rig.sim, LINK_TOKEN);
    settings.bind = bind;
    let gateway = Gateway::start(settings, Arc::new(Metrics::new())).expect("restarts");
    assert!(gateway.wait_discord_connected(WAIT));
    rig.gateway = Some(gateway);
    assert!(rig.edge.wait_link(true, Duration::from_secs(40)));

    let reads = rig.discord_reads();
    let deadline = Instant::now() + WAIT;
    let m = loop {
        // The edge's view of Ada's permissions comes back with the link.
        let r = rig.read(Some(&ada), ids::GENERAL, &query);
        if r.status == 200 {
            break first(&r);
        }
        assert!(
            Instant::now() < deadline,
            "no answer after the restart: {}",
            r.body
        );
        std::thread::sleep(Duration::from_millis(300));
    };
    assert!(
        rig.discord_reads() > reads,
        "the new window holds nothing: read from Discord"
    );
    assert_eq!(m["id"], id.as_str());
    assert_eq!(
        m["author"]["id"],
        hook.as_str(),
        "the sender is unknowable: the webhook, {m}"
    );
    assert_eq!(
        m["author"]["username"], "Ada Lovelace",
        "under the name Discord shows"
    );
    assert_eq!(m["author"]["bot"], true);
    assert_eq!(m["via"], "relay");

    // A message typed in Discord has no `via`, before or after.
    let linus = first(&rig.read(
        Some(&ada),
        ids::GENERAL,
        &format!("limit=1&before={}", flood[1]),
    ));
    assert_eq!(linus["author"]["id"], ids::LINUS);
    assert!(linus.get("via").is_none(), "{linus}");
}
