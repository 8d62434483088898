//! With `REDIS_URL` (CONTRACT.md §10): one gateway holds the lease and runs the
//! Discord session; a standby answers `/link` with 503; when the active one
//! dies, the standby takes over within `GATEWAY_LEASE_MS` + 5 s and RESUMEs the
//! stored session, so Discord replays what it sent meanwhile; a command
//! re-sent to the new gateway runs once. A real redis-server, a simulated
//! Discord, real gateways on loopback.

use std::sync::Arc;
use std::time::{Duration, Instant};

use relay::gateway::{Gateway, RedisSettings, REDIS_TIMEOUT};
use relay::metrics::Metrics;
use relay::secret::Secret;
use relay_runtime::ws_io::ConnectError;
use relay_tests::discord::{
    command_json, fast_backoff, gateway_settings, ids, sim_config, start_sim, SimDiscord,
};
use relay_tests::gateway_rig::{TestEdge, LINK_TOKEN};
use relay_tests::redis_server::RedisServer;
use serde_json::json;

const LEASE: Duration = Duration::from_millis(1500);
/// The contract's bound on a takeover.
const TAKEOVER: Duration = Duration::from_millis(1500 + 5000);

fn gateway(sim: &SimDiscord, redis: &RedisServer) -> (Gateway, Arc<Metrics>) {
    let mut settings = gateway_settings(sim, LINK_TOKEN);
    settings.backoff = fast_backoff();
    settings.redis = Some(RedisSettings {
        url: Secret::new(redis.url()),
        lease: LEASE,
        timeout: REDIS_TIMEOUT,
    });
    let metrics = Arc::new(Metrics::new());
    let gw = Gateway::start(settings, metrics.clone()).expect("the gateway starts");
    (gw, metrics)
}

fn edge_of(gw: &Gateway) -> TestEdge {
    let edge = TestEdge::connect(&gw.link_url(), LINK_TOKEN).expect("link upgrade");
    edge.next_type("ready");
    edge
}

fn message_with(edge: &TestEdge, content: &str) {
    edge.next(content, |f| {
        f["type"] == "messageCreate" && f["data"]["content"] == content
    });
}

#[test]
fn a_restarted_gateway_resumes_and_discord_replays_what_it_missed() {
    let redis = RedisServer::start();
    let sim = start_sim(sim_config());
    let (first, metrics) = gateway(&sim, &redis);
    assert!(
        first.wait_discord_connected(TAKEOVER),
        "the first gateway leads"
    );
    assert!(metrics.gateway_leader());
    let edge = edge_of(&first);
    sim.post_as(ids::ADA, ids::GENERAL, "before the crash");
    message_with(&edge, "before the crash");

    first.crash();
    sim.post_as(ids::ADA, ids::GENERAL, "while nobody listened");
    let restarted_at = Instant::now();
    let (second, _) = gateway(&sim, &redis);
    assert!(
        second.wait_discord_connected(TAKEOVER),
        "the restarted gateway resumed"
    );
    let edge = edge_of(&second);
    // The missed message may come before or after `ready`'s snapshot; it comes once.
    message_with(&edge, "while nobody listened");
    eprintln!(
        "restart to resumed: {} ms",
        restarted_at.elapsed().as_millis()
    );
    assert_eq!(sim.identify_count(), 1, "one identify in all");
    assert_eq!(sim.resume_count(), 1, "the restart resumed");
    sim.post_as(ids::ADA, ids::GENERAL, "after the restart");
    message_with(&edge, "after the restart");
    assert!(
        !edge
            .pending()
            .iter()
            .any(|f| f["data"]["content"] == "before the crash"),
        "what the first gateway published is not replayed"
    );
    second.shutdown();
}

#[test]
fn a_standby_answers_503_and_takes_over_when_the_leader_dies() {
    let redis = RedisServer::start();
    let sim = start_sim(sim_config());
    let (a, a_metrics) = gateway(&sim, &redis);
    assert!(a.wait_discord_connected(TAKEOVER));
    let (b, b_metrics) = gateway(&sim, &redis);
    assert!(a.is_leader() && !b.is_leader());
    assert!(a_metrics.gateway_leader() && !b_metrics.gateway_leader());
    match TestEdge::connect(&b.link_url(), LINK_TOKEN) {
        Err(ConnectError::Status(503)) => {}
        Err(e) => panic!("a standby must answer 503, got {e}"),
        Ok(_) => panic!("a standby must answer 503, got an upgrade"),
    }
    // A wrong token is still 401 on a standby: nothing else leaks.
    assert!(matches!(
        TestEdge::connect(&b.link_url(), "wrong"),
        Err(ConnectError::Unauthorized)
    ));
    assert_eq!(
        sim.open_connections(),
        1,
        "a standby never talks to Discord"
    );

    // A command runs on the leader; its reply is shared.
    let frame = command_json(
        "sendMessage",
        json!({"channelId": ids::GENERAL, "content": "exactly once"}),
        "req-takeover",
        "user-7",
    );
    let edge = TestEdge::connect(&a.link_url(), LINK_TOKEN).expect("link upgrade");
    let ready_a = edge.next_type("ready");
    assert!(!ready_a["data"]["guilds"].as_array().unwrap().is_empty());
    assert!(
        !ready_a["data"]["voice"]["channels"]
            .as_object()
            .unwrap()
            .is_empty(),
        "the simulated guild has people in voice"
    );
    // The leader stores its guild models (within 2 s of a change).
    let mut conn = redis.connection();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let stored: Option<String> = redis::cmd("GET")
            .arg(relay::gateway::guild_store::GUILDS_KEY)
            .query(&mut conn)
            .unwrap();
        let stored: serde_json::Value = stored
            .map(|t| serde_json::from_str(&t).unwrap())
            .unwrap_or_default();
        if stored["guilds"].as_array().is_some_and(|g| !g.is_empty()) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the guild models were not stored"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    edge.send(&frame);
    let first_reply = edge.reply_to("req-takeover");
    assert_eq!(first_reply["type"], "ack");

    let killed = Instant::now();
    a.crash();
    sim.post_as(ids::ADA, ids::GENERAL, "during the takeover");
    assert!(b.wait_discord_connected(TAKEOVER + Duration::from_secs(1)));
    let edge = TestEdge::connect(&b.link_url(), LINK_TOKEN).expect("link upgrade");
    let ready_b = edge.next_type("ready");
    // The new leader never got GUILD_CREATE (it resumed), yet knows the guild
    // and who is in voice, from what the old one stored.
    assert_eq!(ready_b["data"]["voice"], ready_a["data"]["voice"]);
    assert_eq!(ready_b["data"]["guilds"], ready_a["data"]["guilds"]);
    message_with(&edge, "during the takeover");
    let took = killed.elapsed();
    eprintln!("takeover: kill to replayed event {} ms", took.as_millis());
    assert!(took < TAKEOVER, "took {took:?}");
    assert!(b.is_leader() && b_metrics.gateway_leader());
    assert_eq!((sim.identify_count(), sim.resume_count()), (1, 1));

    // The edge re-sends after its link moved: the command does not run again.
    edge.send(&frame);
    let again = edge.reply_to("req-takeover");
    assert_eq!(again["type"], first_reply["type"]);
    let posts = sim
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/messages"))
        .count();
    assert_eq!(posts, 1, "one REST call for two sends on two gateways");
    // A new command after the takeover runs, and its message comes back as an event.
    let after = command_json(
        "sendMessage",
        json!({"channelId": ids::GENERAL, "content": "after the takeover"}),
        "req-after",
        "user-7",
    );
    edge.send(&after);
    assert_eq!(edge.reply_to("req-after")["type"], "ack");
    message_with(&edge, "after the takeover");
    let metrics_text = b_metrics.encode();
    assert!(
        metrics_text.contains("relay_gateway_leader 1"),
        "{metrics_text}"
    );
    assert!(metrics_text.lines().any(|l| l == "relay_redis_up 1"));
    assert!(metrics_text.contains("relay_redis_op_seconds_count{op=\"lease\"}"));
    b.shutdown();
}

#[test]
fn a_graceful_stop_hands_over_without_waiting_for_the_lease() {
    let redis = RedisServer::start();
    let sim = start_sim(sim_config());
    let (a, _) = gateway(&sim, &redis);
    assert!(a.wait_discord_connected(TAKEOVER));
    let (b, _) = gateway(&sim, &redis);
    let mut conn = redis.connection();
    let lease_owner = |conn: &mut redis::Connection| -> Option<String> {
        redis::cmd("GET")
            .arg("relay:gateway:lease")
            .query(conn)
            .unwrap()
    };
    let a_owner = lease_owner(&mut conn).expect("a holds the lease");
    a.shutdown();
    // Released on the way out, not left to expire.
    assert_ne!(lease_owner(&mut conn), Some(a_owner));
    sim.post_as(ids::ADA, ids::GENERAL, "after the hand-over");
    assert!(b.wait_discord_connected(TAKEOVER));
    let edge = edge_of(&b);
    message_with(&edge, "after the hand-over");
    assert_eq!((sim.identify_count(), sim.resume_count()), (1, 1));
    b.shutdown();
}

#[test]
fn redis_down_keeps_the_leader_running_and_it_rejoins() {
    let mut redis = RedisServer::start();
    let sim = start_sim(sim_config());
    let (a, metrics) = gateway(&sim, &redis);
    assert!(a.wait_discord_connected(TAKEOVER));
    let edge = edge_of(&a);
    redis.kill();
    // Past the lease by the leader's own clock: it keeps the session (§10:
    // live events keep flowing while Redis is down).
    let deadline = Instant::now() + LEASE * 2;
    while Instant::now() < deadline {
        sim.post_as(ids::ADA, ids::GENERAL, "redis is down");
        message_with(&edge, "redis is down");
    }
    assert!(a.is_leader() && metrics.gateway_leader());
    assert!(metrics.encode().lines().any(|l| l == "relay_redis_up 0"));
    redis.restart();
    // Back: the leader re-takes its (lost) key at its next try ...
    let mut conn = redis.connection();
    let deadline = Instant::now() + LEASE * 2;
    loop {
        let owner: Option<String> = redis::cmd("GET")
            .arg("relay:gateway:lease")
            .query(&mut conn)
            .unwrap();
        if owner.is_some() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the leader did not re-take its lease"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // ... so a new gateway stands by.
    let (b, _) = gateway(&sim, &redis);
    let until = Instant::now() + LEASE * 2;
    while Instant::now() < until {
        assert!(a.is_leader() && !b.is_leader());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(sim.identify_count(), 1);
    b.shutdown();
    a.shutdown();
}

#[test]
fn a_leader_that_finds_the_lease_taken_steps_down_at_once_and_leaves_the_session_resumable() {
    let redis = RedisServer::start();
    let sim = start_sim(sim_config());
    let (a, metrics) = gateway(&sim, &redis);
    assert!(a.wait_discord_connected(TAKEOVER));
    let edge = edge_of(&a);
    // Another gateway's id in the key, as after a partition healed.
    let mut conn = redis.connection();
    let _: () = redis::cmd("SET")
        .arg("relay:gateway:lease")
        .arg("gw-intruder")
        .arg("PX")
        .arg(60_000)
        .query(&mut conn)
        .unwrap();
    let deadline = Instant::now() + LEASE;
    while a.is_leader() {
        assert!(Instant::now() < deadline, "did not step down");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(!metrics.gateway_leader());
    let closed_by = Instant::now() + Duration::from_secs(2);
    while !edge.is_closed() {
        assert!(Instant::now() < closed_by, "the edge's link was not closed");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(matches!(
        TestEdge::connect(&a.link_url(), LINK_TOKEN),
        Err(ConnectError::Status(503))
    ));
    let gone_by = Instant::now() + Duration::from_secs(2);
    while sim.open_connections() != 0 {
        assert!(Instant::now() < gone_by, "still talking to Discord");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(
        sim.session_ids().len(),
        1,
        "left resumable (closed with 4000)"
    );
    // The intruder goes away: the same gateway takes the lease back and resumes.
    let _: () = redis::cmd("DEL")
        .arg("relay:gateway:lease")
        .query(&mut conn)
        .unwrap();
    assert!(a.wait_discord_connected(TAKEOVER));
    assert_eq!((sim.identify_count(), sim.resume_count()), (1, 1));
    a.shutdown();
}

#[test]
fn the_stored_session_moves_only_under_its_writers_lease() {
    use relay::gateway::session_store::RedisSessionStore;
    use relay_runtime::redis_conn::RedisConn;
    use relay_runtime::session_store::{SessionStore, StoredSession};
    let redis = RedisServer::start();
    let mut conn = redis.connection();
    let set_lease = |conn: &mut redis::Connection, owner: &str| {
        let _: () = redis::cmd("SET")
            .arg("relay:gateway:lease")
            .arg(owner)
            .query(conn)
            .unwrap();
    };
    let store = |owner: &str| {
        RedisSessionStore::new(
            Arc::new(RedisConn::open(&redis.url(), REDIS_TIMEOUT).unwrap()),
            owner.to_owned(),
        )
    };
    let (mine, old) = (store("gw-mine"), store("gw-old"));
    assert_eq!(mine.load(), None, "nothing stored yet");
    set_lease(&mut conn, "gw-mine");
    mine.on_ready("sess-1", Some("wss://resume.example"), 1);
    mine.on_sequence(5);
    // A gateway that lost the lease writes nothing.
    old.on_sequence(99);
    old.on_invalidated();
    old.on_ready("sess-old", None, 1);
    let want = StoredSession {
        session_id: "sess-1".into(),
        resume_url: Some("wss://resume.example".into()),
        seq: Some(5),
    };
    assert_eq!(old.load(), Some(want.clone()), "anyone may read");
    assert_eq!(mine.load(), Some(want));
    mine.on_invalidated();
    assert_eq!(mine.load(), None);
    // A resume URL that is not a WebSocket URL is not used.
    mine.on_ready("sess-2", Some("http://elsewhere"), 3);
    assert_eq!(mine.load().unwrap().resume_url, None);
}
