//! The proof of CONTRACT.md §10's gateway takeover, with real processes: a
//! real redis-server, a simulated Discord, two `relay gateway` and three
//! `relay edge` processes, one SSE subscriber per edge. Messages are posted
//! in Discord and commands sent through every edge while the active gateway
//! is killed (SIGKILL: no close frame, no lease release). Then:
//!
//! - no event is lost to any subscriber (they stayed connected to their
//!   edges, whose links moved to the other gateway), and none comes twice;
//! - no command ran twice (each `c-<n>` reaches Discord's REST API at most
//!   once); every one acknowledged (200), and every queued one (202) that
//!   ran, reaches every subscriber once;
//! - Discord saw one identify and one resume;
//! - the takeover time, from the kill to the first message posted after it
//!   reaching a subscriber, is printed and is under GATEWAY_LEASE_MS + 5 s.
//!
//! The redis-server launcher is a copy of `relay-tests`' (this crate cannot
//! depend on `relay-tests`, which depends on it).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use relay_protocol::sse::{SseItem, SseParser};
use relay_runtime::sim_discord::{ids, SimConfig, SimDiscord};

const LINK_TOKEN: &str = "failover-link-token";
const SESSION_SECRET: &str = "failover-session-secret-of-enough-length";
/// `GATEWAY_LEASE_MS`: the default, so the printed takeover is what a
/// deployment with default settings gets.
const LEASE: Duration = Duration::from_secs(10);
const STARTUP: Duration = Duration::from_secs(20);

/// A child process killed (and reaped) on drop; its stderr goes to a file.
struct Proc {
    child: Child,
    name: String,
    log: PathBuf,
}

impl Proc {
    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            eprintln!("---- {} log ----\n{}", self.name, self.log_text());
        }
    }
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "relay-failover-{}-{}-{name}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `redis-server` on a free loopback port, persistence off (as `relay-tests`' launcher).
fn redis_server(dir: &std::path::Path) -> (Proc, String) {
    for _ in 0..5 {
        let port = free_port();
        let log = dir.join(format!("redis-{port}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(dir)
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .args(["--protected-mode", "no", "--loglevel", "warning"])
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .expect("Redis tests need Debian's redis-server (`apt-get install redis-server`, as .ci/run does)");
        let mut proc = Proc {
            child,
            name: "redis-server".into(),
            log,
        };
        let url = format!("redis://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(10);
        // Polling PING is the readiness probe: redis-server has no other signal.
        while Instant::now() < deadline {
            if !matches!(proc.child.try_wait(), Ok(None)) {
                break;
            }
            let pong = redis::Client::open(url.as_str())
                .and_then(|c| c.get_connection_with_timeout(Duration::from_millis(200)))
                .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c));
            if pong.is_ok() {
                return (proc, url);
            }
            thread::sleep(Duration::from_millis(20));
        }
        let _ = proc.child.kill();
    }
    panic!("redis-server did not start");
}

fn relay(dir: &std::path::Path, name: &str, args: &[&str], env: &[(&str, String)]) -> Proc {
    let log = dir.join(format!("{name}.log"));
    let file = std::fs::File::create(&log).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_relay"));
    cmd.args(args)
        .env_clear()
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(file);
    for (k, v) in env {
        cmd.env(k, v);
    }
    Proc {
        child: cmd.spawn().expect("relay runs"),
        name: name.into(),
        log,
    }
}

/// One HTTP/1.1 request with `Connection: close`; the status and body.
fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    stream.write_all(req.as_bytes()).ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    Some((status, body))
}

fn wait_until(what: &str, within: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(50));
    }
}

fn is_leader(port: u16) -> bool {
    http(
        SocketAddr::from(([127, 0, 0, 1], port)),
        "GET",
        "/metrics",
        &[],
        "",
    )
    .is_some_and(|(_, body)| body.lines().any(|l| l == "relay_gateway_leader 1"))
}

fn edge_ready(addr: SocketAddr) -> bool {
    http(addr, "GET", "/readyz", &[], "").is_some_and(|(s, _)| s == 200)
}

/// Subscribes to `addr`'s stream; every `messageCreate`'s content comes out
/// of the channel with the moment it arrived.
fn subscribe(addr: SocketAddr, token: &str, stop: Arc<AtomicBool>) -> Receiver<(String, Instant)> {
    let mut stream = TcpStream::connect(addr).unwrap();
    let req = format!(
        "GET /api/stream?types=messageCreate HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\nAuthorization: Bearer {token}\r\n\r\n"
    );
    stream.write_all(req.as_bytes()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert!(line.contains(" 200 "), "stream answered {line}");
    loop {
        line.clear();
        reader.read_line(&mut line).unwrap();
        if line.trim_end().is_empty() {
            break;
        }
    }
    let (tx, rx) = crossbeam_channel::unbounded();
    thread::spawn(move || {
        let mut parser = SseParser::new();
        while !stop.load(Ordering::SeqCst) {
            while let Some(item) = parser.poll_item() {
                if let SseItem::Event(ev) = item {
                    if ev.event == "messageCreate" {
                        let v: serde_json::Value = serde_json::from_str(&ev.data).unwrap();
                        let content = v["data"]["content"].as_str().unwrap_or_default().to_owned();
                        let _ = tx.send((content, Instant::now()));
                    }
                }
            }
            let buf = match reader.fill_buf() {
                Ok([]) => return,
                Ok(buf) => buf.to_vec(),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    continue
                }
                Err(_) => return,
            };
            reader.consume(buf.len());
            parser.feed(&buf);
        }
    });
    rx
}

#[test]
fn killing_the_active_gateway_loses_no_event_and_runs_no_command_twice() {
    let dir = temp_dir("run");
    let (_redis, redis_url) = redis_server(&dir);
    let sim = Arc::new(
        SimDiscord::start(SimConfig {
            heartbeat_interval: Duration::from_secs(1),
            ..SimConfig::default()
        })
        .unwrap(),
    );

    let gw_ports = [free_port(), free_port()];
    let gw_env = |port: u16| {
        vec![
            ("LINK_TOKEN", LINK_TOKEN.to_owned()),
            ("DISCORD_BOT_TOKEN", sim.bot_token().to_owned()),
            ("DISCORD_API_BASE", sim.api_base()),
            ("DISCORD_GATEWAY_URL", sim.gateway_url()),
            ("GATEWAY_BIND", format!("127.0.0.1:{port}")),
            ("REDIS_URL", redis_url.clone()),
            ("GATEWAY_LEASE_MS", LEASE.as_millis().to_string()),
        ]
    };
    let mut gateways: Vec<Option<Proc>> = vec![
        Some(relay(&dir, "gateway-0", &["gateway"], &gw_env(gw_ports[0]))),
        Some(relay(&dir, "gateway-1", &["gateway"], &gw_env(gw_ports[1]))),
    ];
    wait_until("a leader", STARTUP, || {
        gw_ports.iter().any(|p| is_leader(*p))
    });
    let leader = usize::from(!is_leader(gw_ports[0]));
    assert!(!is_leader(gw_ports[1 - leader]), "exactly one leader");

    let link = |p: u16| format!("ws://127.0.0.1:{p}/link");
    let lists = [
        format!("{},{}", link(gw_ports[0]), link(gw_ports[1])),
        format!("{},{}", link(gw_ports[1]), link(gw_ports[0])),
        format!("{}, {}", link(gw_ports[0]), link(gw_ports[1])),
    ];
    let edge_addrs: Vec<SocketAddr> = (0..3)
        .map(|_| SocketAddr::from(([127, 0, 0, 1], free_port())))
        .collect();
    let _edges: Vec<Proc> = (0..3)
        .map(|i| {
            relay(
                &dir,
                &format!("edge-{i}"),
                &["edge"],
                &[
                    ("BIND", edge_addrs[i].to_string()),
                    ("GATEWAY_WS_URL", lists[i].clone()),
                    ("LINK_TOKEN", LINK_TOKEN.to_owned()),
                    ("SESSION_SECRET", SESSION_SECRET.to_owned()),
                ],
            )
        })
        .collect();
    for addr in &edge_addrs {
        wait_until("every edge's link", STARTUP, || edge_ready(*addr));
    }

    let token = |sub: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_relay"))
            .args(["token", "--sub", sub, "--role", "chat:write", "--ttl", "1h"])
            .env_clear()
            .env("SESSION_SECRET", SESSION_SECRET)
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    let stop = Arc::new(AtomicBool::new(false));
    // The subscribers read until the end of the test.
    let watching = Arc::new(AtomicBool::new(false));
    let subscribers: Vec<_> = edge_addrs
        .iter()
        .map(|a| subscribe(*a, &token("watcher"), watching.clone()))
        .collect();

    // Messages posted in Discord, every 40 ms, numbered; when each was posted.
    let posted = Arc::new(AtomicU64::new(0));
    let post_times = Arc::new(parking_lot::Mutex::new(Vec::<Instant>::new()));
    let poster = {
        let (stop, posted, times) = (stop.clone(), posted.clone(), post_times.clone());
        let sim = sim.clone();
        thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                let n = posted.load(Ordering::SeqCst);
                assert!(sim
                    .post_as(ids::ADA, ids::GENERAL, &format!("m-{n}"))
                    .is_some());
                times.lock().push(Instant::now());
                posted.store(n + 1, Ordering::SeqCst);
                thread::sleep(Duration::from_millis(40));
            }
        })
    };
    // Commands through the edges in turn, two channels, one every 400 ms.
    let accepted = Arc::new(parking_lot::Mutex::new(Vec::<String>::new()));
    let queued = Arc::new(parking_lot::Mutex::new(Vec::<String>::new()));
    let commander = {
        let (stop, accepted, queued, addrs) = (
            stop.clone(),
            accepted.clone(),
            queued.clone(),
            edge_addrs.clone(),
        );
        let tokens: Vec<String> = (0..3).map(|i| token(&format!("sender-{i}"))).collect();
        thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::SeqCst) {
                let i = usize::try_from(n % 3).unwrap();
                let channel = if n % 2 == 0 {
                    ids::GENERAL
                } else {
                    ids::GAME_ROOM
                };
                let content = format!("c-{n}");
                let body =
                    serde_json::json!({"channelId": channel, "content": content}).to_string();
                let auth = format!("Bearer {}", tokens[i]);
                let answer = http(
                    addrs[i],
                    "POST",
                    "/api/send-message",
                    &[
                        ("Authorization", &auth),
                        ("Content-Type", "application/json"),
                    ],
                    &body,
                );
                // 200: Discord took it. 202: queued while the link was down;
                // it goes out later and may still be answered rateLimited
                // (the queue flushes at once), so it must run at most once.
                match answer {
                    Some((200, _)) => accepted.lock().push(content),
                    Some((202, _)) => queued.lock().push(content),
                    other => eprintln!("{content} via edge {i}: {other:?}"),
                }
                n += 1;
                thread::sleep(Duration::from_millis(400));
            }
        })
    };

    thread::sleep(Duration::from_secs(3));
    let killed_at_count = posted.load(Ordering::SeqCst);
    let killed = Instant::now();
    drop(gateways[leader].take()); // SIGKILL
    let survivor = 1 - leader;
    wait_until(
        "the standby's takeover",
        LEASE + Duration::from_secs(10),
        || is_leader(gw_ports[survivor]),
    );
    for addr in &edge_addrs {
        wait_until("every edge's link back", Duration::from_secs(10), || {
            edge_ready(*addr)
        });
    }
    thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::SeqCst);
    poster.join().unwrap();
    commander.join().unwrap();
    let total = posted.load(Ordering::SeqCst);

    let accepted = accepted.lock().clone();
    let queued = queued.lock().clone();
    assert!(accepted.len() >= 3, "commands flowed: {}", accepted.len());
    assert!(
        !queued.is_empty(),
        "commands were queued during the takeover"
    );
    // No command reached Discord's REST API twice (queued ones have had
    // their 5 s reply timeout by now).
    thread::sleep(Duration::from_secs(5));
    let mut posts: HashMap<String, u32> = HashMap::new();
    for r in sim.requests() {
        if r.method == "POST" && r.path.ends_with("/messages") {
            let body: serde_json::Value = serde_json::from_str(&r.body).unwrap_or_default();
            if let Some(c) = body["content"].as_str() {
                *posts.entry(c.to_owned()).or_default() += 1;
            }
        }
    }
    let twice: Vec<_> = posts.iter().filter(|(_, k)| **k > 1).collect();
    assert!(twice.is_empty(), "commands run twice: {twice:?}");
    let queued_ran = queued.iter().filter(|c| posts.contains_key(*c)).count();
    // Every subscriber gets every m-<n> and every accepted command's message
    // exactly once.
    let wanted: Vec<String> = (0..total)
        .map(|n| format!("m-{n}"))
        .chain(accepted.iter().cloned())
        .chain(queued.iter().filter(|c| posts.contains_key(*c)).cloned())
        .collect();
    let mut first_after_kill: Option<Instant> = None;
    for (i, rx) in subscribers.iter().enumerate() {
        let mut seen: HashMap<String, u32> = HashMap::new();
        let deadline = Instant::now() + Duration::from_secs(15);
        while wanted.iter().any(|w| !seen.contains_key(w)) {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok((content, at)) = rx.recv_timeout(left) else {
                let missing: Vec<&String> =
                    wanted.iter().filter(|w| !seen.contains_key(*w)).collect();
                let posted_c: Vec<String> = sim
                    .requests()
                    .into_iter()
                    .filter(|r| r.method == "POST")
                    .map(|r| format!("{} {}", r.path, r.body))
                    .collect();
                let seen_c: Vec<&String> = seen.keys().filter(|k| !k.starts_with("m-")).collect();
                panic!("subscriber {i} lost {} events: {missing:?}; seen {seen_c:?}; posted {posted_c:?}", missing.len());
            };
            if let Some(n) = content
                .strip_prefix("m-")
                .and_then(|n| n.parse::<u64>().ok())
            {
                if n >= killed_at_count {
                    first_after_kill = Some(first_after_kill.map_or(at, |f| f.min(at)));
                }
            }
            *seen.entry(content).or_default() += 1;
        }
        // Anything still on its way (a late duplicate) arrives within this.
        thread::sleep(Duration::from_millis(300));
        for (content, _) in rx.try_iter() {
            *seen.entry(content).or_default() += 1;
        }
        let doubled: Vec<_> = seen.iter().filter(|(_, k)| **k > 1).collect();
        assert!(
            doubled.is_empty(),
            "subscriber {i} got events twice: {doubled:?}"
        );
    }

    assert_eq!(sim.identify_count(), 1, "one identify: the standby resumed");
    assert_eq!(sim.resume_count(), 1);
    let takeover = first_after_kill.expect("events after the kill arrived") - killed;
    println!(
        "takeover (GATEWAY_LEASE_MS={}): kill to the first replayed event at a subscriber: {} ms; {} events to 3 subscribers, none lost or doubled; {} commands acked, {} queued during the takeover ({} of them ran, the rest still held back by the channel route limit, 5 per 5 s, when the test ended), none run twice",
        LEASE.as_millis(),
        takeover.as_millis(),
        total,
        accepted.len(),
        queued.len(),
        queued_ran
    );
    assert!(takeover < LEASE + Duration::from_secs(5), "{takeover:?}");
    drop(post_times);
    watching.store(true, Ordering::SeqCst);
    // RELAY_FAILOVER_KEEP_LOGS=1 keeps every process's log for a look.
    if std::env::var_os("RELAY_FAILOVER_KEEP_LOGS").is_some() {
        println!("logs kept in {}", dir.display());
    } else {
        let _ = std::fs::remove_dir_all(&dir);
    }
}
