//! Logs: one JSON object per line with `LOG_FORMAT=json`, `traceId` on every
//! command and event line, user text unable to forge lines, and no secret in any
//! line (CONTRACT.md §6, spec FR-004, FR-008, FR-010, SC-006).
//!
//! The edge runs in-process with a logger that renders every record through
//! relay's real formatter into memory, so the test reads exactly what stderr
//! would get. One test per process: the logger is global.

use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{LevelFilter, Log, Metadata, Record};
use parking_lot::Mutex;
use relay::logging::{format_record, LogFormat};
use relay_tests::harness::{Harness, LINK_TOKEN, SESSION_SECRET};
use relay_tests::test_gateway::message;
use serde_json::Value;

struct Capture(Arc<Mutex<Vec<String>>>);

impl Log for Capture {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &Record<'_>) {
        self.0.lock().push(format_record(
            LogFormat::Json,
            record,
            relay_runtime::clock::unix_ms(),
        ));
    }
    fn flush(&self) {}
}

#[test]
fn json_lines_carry_trace_ids_and_never_secrets_or_forged_lines() {
    let lines = Arc::new(Mutex::new(Vec::new()));
    log::set_boxed_logger(Box::new(Capture(lines.clone()))).unwrap();
    log::set_max_level(LevelFilter::Debug);

    let h = Harness::start();
    let forged_sub = "eve\n{\"level\":\"ERROR\",\"msg\":\"forged\"}\u{1b}[31m";
    let token = h.token(forged_sub, &["chat:write"]);
    let r = h.post(
        "/api/send-message",
        Some(&token),
        r#"{"channelId":"5","content":"hi\n2026-01-01 ERROR forged line\r\n\u001b[2J"}"#,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let mut s = h.stream(&format!("access_token={token}"), &[]);
    s.wait_for("voice.snapshot", Duration::from_secs(5))
        .unwrap();
    h.gateway
        .send_event(message("1", "5", "evil\nINFO fake\u{1b}]0;title\u{7}"));
    s.wait_for("messageCreate", Duration::from_secs(5)).unwrap();
    h.gateway.send_raw(r#"{"version":"1.0","type":"voice.left","data":{},"meta":{"traceId":"bad-frame-trace","sentAt":"s"}}"#.into());
    s.wait_for("error", Duration::from_secs(5)).unwrap();

    // Wait for the command's completion line (written on the link thread).
    let deadline = Instant::now() + Duration::from_secs(5);
    while !lines.lock().iter().any(|l| l.contains("completed")) {
        assert!(Instant::now() < deadline, "no completion line");
        std::thread::sleep(Duration::from_millis(10));
    }
    let lines = lines.lock().clone();
    assert!(!lines.is_empty());
    for line in &lines {
        assert!(
            line.ends_with('\n') && line.matches('\n').count() == 1,
            "one line: {line:?}"
        );
        let v: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        for key in ["ts", "level", "msg"] {
            assert!(v[key].is_string(), "{key} in {line}");
        }
        assert_ne!(
            v["msg"], "forged",
            "a user value became a log record: {line}"
        );
        for secret in [LINK_TOKEN, SESSION_SECRET, token.as_str()] {
            assert!(!line.contains(secret), "secret in log line: {line}");
        }
        assert!(!line.contains('\u{1b}'), "raw escape in {line:?}");
    }
    let command_lines: Vec<Value> = lines
        .iter()
        .filter(|l| l.contains("command sendMessage"))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        command_lines.len() >= 2,
        "sent and completed lines: {lines:#?}"
    );
    for v in &command_lines {
        assert!(v["traceId"].as_str().is_some_and(|t| t.len() == 32), "{v}");
        assert!(v["requestId"].is_string(), "{v}");
    }
    let completed = command_lines
        .iter()
        .find(|v| v["msg"].as_str().unwrap().contains("completed"))
        .unwrap();
    assert!(completed["latencyMs"].is_number(), "{completed}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("malformed frame") && l.contains("bad-frame-trace")),
        "malformed frames are logged with their trace id"
    );
}
