//! The gateway's operations endpoints on its link port (README "Operations"):
//! `/healthz`; `/readyz` following the Discord session; `/metrics` with the
//! link's edges, re-sent commands and refused tokens; every other request keeps
//! its answer; no token in any body.

use std::io;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::thread::{self, JoinHandle};

use relay::gateway::{Gateway, Settings};
use relay::metrics::{Metrics, CONTENT_TYPE};
use relay::secret::Secret;
use relay_runtime::ws_io::ConnectError;
use relay_tests::discord::{command_json, fast_backoff, ids, sim_config, start_sim, WAIT};
use relay_tests::gateway_rig::{GatewayRig, TestEdge, LINK_TOKEN};
use relay_tests::harness::{get, Response};
use relay_tests::hostile::{exchange, Outcome};
use serde_json::json;

const WRONG_TOKEN: &str = "a-wrong-link-token";

fn base(gateway: &Gateway) -> String {
    format!("http://{}", gateway.link_addr())
}

/// GETs `path` and checks that no token is in the answer.
fn get_clean(base: &str, path: &str, bot_token: &str) -> Response {
    let r = get(base, path);
    for secret in [LINK_TOKEN, bot_token, WRONG_TOKEN] {
        assert!(!r.body.contains(secret), "{path} shows a token: {}", r.body);
    }
    r
}

/// The value of an unlabelled sample.
fn sample(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
}

/// Accepts one connection on `listener`, or panics after [`WAIT`].
fn accept_within(listener: TcpListener) -> TcpStream {
    let (tx, rx) = crossbeam_channel::bounded(1);
    thread::spawn(move || {
        let _ = tx.send(listener.accept().map(|(tcp, _)| tcp));
    });
    rx.recv_timeout(WAIT)
        .expect("the gateway dials Discord")
        .expect("accept")
}

/// Copies bytes both ways between `a` and `b` until either side closes.
fn splice(a: TcpStream, b: TcpStream) -> [JoinHandle<()>; 2] {
    let pipe = |mut from: TcpStream, mut to: TcpStream| {
        thread::spawn(move || {
            let _ = io::copy(&mut from, &mut to);
            let _ = to.shutdown(Shutdown::Both);
            let _ = from.shutdown(Shutdown::Both);
        })
    };
    let (a2, b2) = (a.try_clone().expect("clone"), b.try_clone().expect("clone"));
    [pipe(a, b), pipe(b2, a2)]
}

#[test]
fn readyz_is_503_until_the_discord_session_is_ready() {
    let sim = start_sim(sim_config());
    let bot_token = sim.bot_token().to_owned();
    // Discord's gateway URL leads to a socket the test holds: the gateway's
    // connection is accepted and hears nothing (no Hello, so no READY) until the
    // test splices it through to the simulator.
    let hold = TcpListener::bind("127.0.0.1:0").expect("bind");
    let mut settings = Settings::for_discord_at(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        Secret::new(LINK_TOKEN),
        Secret::new(&bot_token),
        sim.api_base(),
        format!("ws://{}", hold.local_addr().expect("addr")),
    );
    settings.backoff = fast_backoff();
    let gateway = Gateway::start(settings, Arc::new(Metrics::new())).expect("gateway starts");
    let held = accept_within(hold);
    let base = base(&gateway);

    let health = get_clean(&base, "/healthz", &bot_token);
    assert_eq!(
        (health.status, health.json()),
        (200, json!({"status": "ok"}))
    );
    let ready = get_clean(&base, "/readyz", &bot_token);
    assert_eq!(ready.status, 503, "{}", ready.body);
    assert_eq!(ready.header("content-type"), Some("application/json"));
    assert_eq!(
        ready.json(),
        json!({"ready": false, "discord": "disconnected", "edges": 0})
    );

    let sim_addr = sim.gateway_url().replace("ws://", "");
    let upstream = TcpStream::connect(sim_addr.as_str()).expect("the simulator listens");
    let pipes = splice(held, upstream);
    assert!(gateway.wait_discord_connected(WAIT), "READY came through");
    let ready = get_clean(&base, "/readyz", &bot_token);
    assert_eq!(ready.status, 200, "{}", ready.body);
    assert_eq!(
        ready.json(),
        json!({"ready": true, "discord": "connected", "edges": 0})
    );

    gateway.shutdown();
    for pipe in pipes {
        pipe.join().expect("the splice ends with the connection");
    }
    sim.shutdown();
}

#[test]
fn metrics_count_the_edges_and_the_re_sent_commands() {
    let rig = GatewayRig::start();
    let bot_token = rig.sim.bot_token().to_owned();
    let base = base(&rig.gateway);
    let scrape = || {
        let r = get_clean(&base, "/metrics", &bot_token);
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-type"), Some(CONTENT_TYPE));
        r.body
    };
    let first = scrape();
    assert_eq!(sample(&first, "relay_link_edges"), 0.0);
    // The gateway's series are there (REST ones appear with the first call).
    for name in [
        "relay_discord_events_total{type=\"READY\"} 1",
        "relay_discord_heartbeat_latency_seconds",
        "relay_link_auth_failures_total",
        "relay_link_commands_deduplicated_total",
    ] {
        assert!(first.contains(name), "no {name} in\n{first}");
    }

    let a = rig.edge();
    let b = rig.edge();
    assert!(rig.gateway.wait_for_edges(2, WAIT));
    assert_eq!(sample(&scrape(), "relay_link_edges"), 2.0);
    assert_eq!(get_clean(&base, "/readyz", &bot_token).json()["edges"], 2);

    let deduplicated = || sample(&scrape(), "relay_link_commands_deduplicated_total");
    let before = deduplicated();
    let frame = command_json(
        "sendMessage",
        json!({"channelId": ids::GENERAL, "content": "once"}),
        "req-ops",
        "user-7",
    );
    a.send(&frame);
    assert_eq!(a.reply_to("req-ops")["type"], "ack");
    assert_eq!(deduplicated(), before, "a first send is no re-send");
    // Re-sent (as after a link drop, here on the other edge): answered from the cache.
    b.send(&frame);
    assert_eq!(b.reply_to("req-ops")["type"], "ack");
    assert_eq!(deduplicated(), before + 1.0);
    let text = scrape();
    let posts = text
        .lines()
        .find(|l| l.starts_with("relay_discord_rest_total{route=\"sendMessage\""))
        .unwrap_or_else(|| panic!("no sendMessage REST sample in\n{text}"));
    assert!(
        posts.ends_with(" 1"),
        "one REST call for two sends: {posts}"
    );

    drop((a, b));
    assert!(rig.gateway.wait_for_edges(0, WAIT));
    assert_eq!(sample(&scrape(), "relay_link_edges"), 0.0);
    assert_eq!(get_clean(&base, "/readyz", &bot_token).json()["edges"], 0);
}

#[test]
fn other_requests_keep_their_answers_and_refused_tokens_are_counted() {
    let rig = GatewayRig::start();
    let bot_token = rig.sim.bot_token().to_owned();
    let base = base(&rig.gateway);
    let addr = rig.gateway.link_addr();

    assert!(matches!(
        TestEdge::connect(&rig.gateway.link_url(), WRONG_TOKEN),
        Err(ConnectError::Unauthorized)
    ));
    let text = get_clean(&base, "/metrics", &bot_token).body;
    assert_eq!(sample(&text, "relay_link_auth_failures_total"), 1.0);

    let status = |request: &str| exchange(addr, request.as_bytes(), WAIT).status();
    assert_eq!(status("GET /nope HTTP/1.1\r\nHost: x\r\n\r\n"), Some(404));
    assert_eq!(status("GET /link HTTP/1.1\r\nHost: x\r\n\r\n"), Some(426));
    assert_eq!(
        status("POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n"),
        Some(404)
    );
    assert_eq!(status("GET /healthz HTTP/1.0\r\n\r\n"), Some(200));
    // Over the 16 KiB head limit: not read to its end, so not answered.
    let huge = format!(
        "GET /metrics HTTP/1.1\r\nX-Big: {}\r\n\r\n",
        "a".repeat(17 * 1024)
    );
    let outcome = exchange(addr, huge.as_bytes(), WAIT);
    assert!(matches!(outcome, Outcome::Closed), "{outcome:?}");
    // Still serving.
    assert_eq!(get_clean(&base, "/healthz", &bot_token).status, 200);
    assert_eq!(rig.gateway.link_stats().plain_answered, 3);
}

#[test]
fn readyz_goes_back_to_503_when_the_discord_session_ends() {
    let rig = GatewayRig::start();
    let bot_token = rig.sim.bot_token().to_owned();
    let base = base(&rig.gateway);
    assert_eq!(get_clean(&base, "/readyz", &bot_token).status, 200);
    // 4004 (authentication failed) ends the session for good: no reconnect can
    // bring it back between the close and the probe.
    rig.sim.close_with(4004);
    rig.gateway
        .fatal()
        .recv_timeout(WAIT)
        .expect("the session stops on 4004");
    let ready = get_clean(&base, "/readyz", &bot_token);
    assert_eq!(ready.status, 503, "{}", ready.body);
    assert_eq!(ready.json()["discord"], "disconnected");
}
