//! Every class of gateway close code (reference/discord.md §1 "Close codes"):
//! resume, new session, and fatal, which stops the driver with one clear error
//! and never identifies again. One code stands for the new-session class (4003
//! and 4007 classify the same way, see the session's unit tests): each such test
//! waits out the session's 5 s identify spacing.

use relay_protocol::discord::session::BotToken;
use relay_runtime::discord_gateway::{
    shared_translator, DiscordConfig, DiscordGateway, FatalError, FnSink, NoObserver,
};
use relay_tests::discord::*;
use std::sync::Arc;

fn resumes_after(code: u16) {
    let d = Driven::start(sim_config());
    d.sim.close_with(code);
    d.wait_notice("a resume to be scheduled", |n| {
        *n == Notice::Reconnect { resume: true }
    });
    d.wait_connected();
    assert_eq!(d.sim.resume_count(), 1, "close {code}");
    assert_eq!(d.sim.identify_count(), 1, "close {code}");
}

fn reidentifies_after(code: u16) {
    let d = Driven::start(sim_config());
    d.sim.close_with(code);
    d.wait_notice("a new session to be scheduled", |n| {
        *n == Notice::Reconnect { resume: false }
    });
    wait_within(&d.notices, REIDENTIFY_WAIT, "the new session", |n| {
        *n == Notice::Connected(true)
    });
    assert_eq!(d.sim.identify_count(), 2, "close {code}");
    assert_eq!(d.sim.resume_count(), 0, "close {code}");
}

fn fatal_after(code: u16) {
    let d = Driven::start(sim_config());
    d.sim.close_with(code);
    let fatal = d
        .gateway
        .fatal()
        .recv_timeout(WAIT)
        .expect("the driver reports a fatal close");
    assert!(matches!(fatal, FatalError::Closed { code: c, .. } if c == code));
    assert_eq!(d.gateway.fatal_error(), Some(fatal));
    assert!(!d.gateway.status().connected);
    assert_eq!(d.sim.identify_count(), 1);
    assert!(d
        .notices
        .try_iter()
        .all(|n| !matches!(n, Notice::Reconnect { .. })));
}

#[test]
fn unknown_error_4000_resumes() {
    resumes_after(4000);
}

#[test]
fn rate_limited_4008_resumes() {
    resumes_after(4008);
}

#[test]
fn session_timed_out_4009_identifies_again() {
    reidentifies_after(4009);
}

#[test]
fn authentication_failed_4004_is_fatal() {
    fatal_after(4004);
}

#[test]
fn disallowed_intents_4014_is_fatal() {
    fatal_after(4014);
}

#[test]
fn a_wrong_token_stops_with_one_clear_line_and_no_identify_loop() {
    let sim = start_sim(sim_config());
    let config = DiscordConfig {
        token: BotToken::new("not-the-token"),
        ..discord_config(&sim)
    };
    let gateway = DiscordGateway::start(
        config,
        shared_translator(None),
        Arc::new(FnSink(|_| {})),
        Arc::new(NoObserver),
    )
    .unwrap();
    let fatal = gateway.fatal().recv_timeout(WAIT).expect("a fatal error");
    assert_eq!(
        fatal.to_string(),
        "Discord rejected the bot token (4004); check DISCORD_BOT_TOKEN (it may have been reset)"
    );
    assert!(!fatal.to_string().contains("not-the-token"));
    // Exactly one Identify reached Discord: no retry loop towards a token reset.
    assert_eq!(ops(&sim).iter().filter(|&&op| op == 2).count(), 1);
    assert_eq!(sim.connections(), 1);
}

#[test]
fn a_wrong_token_is_refused_by_gateway_bot_before_connecting() {
    let sim = start_sim(sim_config());
    let config = DiscordConfig {
        token: BotToken::new("not-the-token"),
        gateway_url: None,
        ..discord_config(&sim)
    };
    let started = DiscordGateway::start(
        config,
        shared_translator(None),
        Arc::new(FnSink(|_| {})),
        Arc::new(NoObserver),
    );
    assert_eq!(started.err(), Some(FatalError::Unauthorized));
    assert_eq!(sim.connections(), 0);
}
