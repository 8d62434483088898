//! The `relay gateway` process against a simulated Discord: a bad bot token
//! ends it with exit status 1 and one clear line (never the token, never an
//! identify loop); SIGTERM closes the Discord session with 1000 and exits 0.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use relay_runtime::sim_discord::{SimConfig, SimDiscord};

const WAIT: Duration = Duration::from_secs(5);

fn sim() -> SimDiscord {
    SimDiscord::start(SimConfig {
        heartbeat_interval: Duration::from_secs(1),
        ..SimConfig::default()
    })
    .unwrap()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn gateway(sim: &SimDiscord, token: &str, gateway_url: bool, port: u16) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_relay"));
    cmd.arg("gateway")
        .env_clear()
        .env("LINK_TOKEN", "process-link-token")
        .env("DISCORD_BOT_TOKEN", token)
        .env("DISCORD_API_BASE", sim.api_base())
        .env("GATEWAY_BIND", format!("127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if gateway_url {
        cmd.env("DISCORD_GATEWAY_URL", sim.gateway_url());
    }
    cmd.spawn().expect("relay runs")
}

/// The process's stderr, line by line, as it is written.
fn stderr_lines(child: &mut Child) -> crossbeam_channel::Receiver<String> {
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = crossbeam_channel::unbounded();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Waits for the process to end (killing it after [`WAIT`]); its status and the
/// rest of its stderr.
fn finish(mut child: Child, lines: &crossbeam_channel::Receiver<String>) -> (ExitStatus, String) {
    let mut text = String::new();
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        match lines.recv_deadline(deadline) {
            Ok(line) => {
                text.push_str(&line);
                text.push('\n');
            }
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                let _ = child.kill();
                panic!("relay gateway did not exit in time; stderr so far:\n{text}");
            }
        }
    }
    (child.wait().unwrap(), text)
}

fn assert_bad_token_exit(gateway_url: bool) {
    let sim = sim();
    let mut child = gateway(&sim, "wrong-token-xyz", gateway_url, free_port());
    let lines = stderr_lines(&mut child);
    let (status, stderr) = finish(child, &lines);
    assert_eq!(status.code(), Some(1), "{stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    assert_eq!(
        last,
        "relay: Discord rejected the bot token (4004); check DISCORD_BOT_TOKEN (it may have been reset)"
    );
    assert!(!stderr.contains("wrong-token-xyz"), "{stderr}");
    assert!(sim.identify_count() == 0 && sim.connections() <= 1);
}

#[test]
fn a_bad_token_at_identify_exits_1_with_one_line() {
    assert_bad_token_exit(true);
}

#[test]
fn a_bad_token_at_gateway_bot_exits_1_with_one_line() {
    assert_bad_token_exit(false);
}

#[test]
fn sigterm_closes_the_discord_session_and_exits_0() {
    let sim = sim();
    let port = free_port();
    let mut child = gateway(&sim, sim.bot_token(), true, port);
    let lines = stderr_lines(&mut child);
    let mut before = String::new();
    loop {
        let line = lines.recv_timeout(WAIT).expect("relay logs READY");
        before.push_str(&line);
        before.push('\n');
        if line.contains("READY") {
            break;
        }
    }
    assert_eq!(sim.session_ids().len(), 1);
    assert!(!before.contains(sim.bot_token()), "{before}");
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let (status, stderr) = finish(child, &lines);
    assert_eq!(status.code(), Some(0), "{stderr}");
    // A client close with 1000 ends the session on Discord's side. The child
    // may exit before the simulator's connection thread has read that close,
    // and the simulator offers only its state to look at, so look until a
    // deadline.
    let deadline = std::time::Instant::now() + WAIT;
    while !sim.session_ids().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "session kept: {stderr}"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert!(!stderr.contains(sim.bot_token()));
}
