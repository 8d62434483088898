//! When Discord cannot be reached or does not answer in time, the command is
//! answered `error` `discord_unreachable` with a safe message, never the token,
//! and the next command is not blocked by it.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use relay_protocol::discord::session::BotToken;
use relay_protocol::frame::Reply;
use relay_runtime::discord_rest::{RestConfig, RestExecutor};
use relay_tests::discord::{command, ids};
use serde_json::json;

const TOKEN: &str = "secret-bot-token-123";

fn executor(api_base: String, timeout: Duration) -> RestExecutor {
    RestExecutor::new(RestConfig {
        api_base,
        token: BotToken::new(TOKEN),
        timeout,
    })
}

fn typing(id: &str) -> relay_protocol::frame::GatewayCommand {
    command(
        "typingStart",
        json!({"channelId": ids::GENERAL}),
        id,
        "user-1",
    )
}

#[test]
fn a_refused_connection_is_discord_unreachable() {
    // A port that was free a moment ago: nothing listens there.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let rest = executor(
        format!("http://127.0.0.1:{port}/api/v10"),
        Duration::from_secs(2),
    );
    let Reply::Error { code, message } = rest.execute(&typing("u1")) else {
        panic!("expected an error reply");
    };
    assert_eq!(code, "discord_unreachable");
    assert_eq!(message, "Discord could not be reached");
    assert!(!message.contains(TOKEN));
    // The lost request does not make the route look rate limited: the next one tries.
    let again = rest.execute(&typing("u2"));
    assert!(
        matches!(again, Reply::Error { ref code, .. } if code == "discord_unreachable"),
        "{again:?}"
    );
}

#[test]
fn a_silent_discord_times_out() {
    // Accepts the connection (the kernel does) but never answers.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}/api/v10", silent.local_addr().unwrap());
    let rest = executor(base, Duration::from_millis(300));
    let started = Instant::now();
    let Reply::Error { code, message } = rest.execute(&typing("t1")) else {
        panic!("expected an error reply");
    };
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(code, "discord_unreachable");
    assert!(message.contains("did not answer"), "{message}");
    assert!(!message.contains(TOKEN));
}
