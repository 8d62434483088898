//! What Sign in with Discord must never show (CONTRACT.md §1, §8): Discord's
//! access token appears in no response header or body the browser gets and in
//! no log line, even at `RUST_LOG=trace`; the authorization code and the
//! client secret appear in no log line either.
//!
//! The edge runs in-process with a logger that filters with relay's own
//! `LogSpec` (as `RUST_LOG=trace`) and renders with relay's formatter into
//! memory, so the test reads exactly what stderr would get. One test per
//! process: the logger is global.

use std::sync::Arc;

use log::{LevelFilter, Log, Metadata, Record};
use parking_lot::Mutex;
use relay::logging::{format_record, LogFormat, LogSpec};
use relay_runtime::sim_discord::ids;
use relay_tests::harness::Response;
use relay_tests::oauth::{query_value, OAuthRig};

struct Capture {
    lines: Arc<Mutex<Vec<String>>>,
    spec: LogSpec,
}

impl Log for Capture {
    fn enabled(&self, m: &Metadata<'_>) -> bool {
        m.level() <= self.spec.level_for(m.target())
    }
    fn log(&self, record: &Record<'_>) {
        if self.enabled(record.metadata()) {
            self.lines.lock().push(format_record(
                LogFormat::Json,
                record,
                relay_runtime::clock::unix_ms(),
            ));
        }
    }
    fn flush(&self) {}
}

fn everything_the_browser_saw(responses: &[&Response]) -> String {
    responses
        .iter()
        .map(|r| {
            let headers: Vec<String> = r.headers.iter().map(|(k, v)| format!("{k}: {v}")).collect();
            format!("{}\n{}\n{}", r.status, headers.join("\n"), r.body)
        })
        .collect::<Vec<_>>()
        .join("\n---\n")
}

#[test]
fn the_access_token_code_and_client_secret_never_show() {
    let lines = Arc::new(Mutex::new(Vec::new()));
    log::set_boxed_logger(Box::new(Capture {
        lines: lines.clone(),
        spec: LogSpec::parse("trace").expect("spec"),
    }))
    .expect("logger");
    log::set_max_level(LevelFilter::Trace);

    let rig = OAuthRig::start();
    let login = rig.login("%2F");
    let back = rig.authorize(&login, Some(ids::GRACE));
    let code = query_value(&back, "code").expect("a code");
    let signed_in = rig.callback(&back, Some(&login.cookie));
    assert_eq!(signed_in.status, 302);
    // A failed exchange and a refused state log too.
    let failed = rig.sign_in_failing();
    let refused = rig.callback(&back, Some(&login.cookie));
    assert_eq!(refused.status, 400);

    let tokens = rig.sim.issued_access_tokens();
    assert_eq!(tokens.len(), 1, "one exchange succeeded");
    let seen = everything_the_browser_saw(&[&signed_in, &failed, &refused]);
    let logs = lines.lock().join("\n");
    // The logger did see the edge at work, ureq included (at debug: headers redacted).
    assert!(logs.contains("signed in with Discord"), "{logs}");
    assert!(
        logs.contains("/auth/discord/callback?code=[redacted]"),
        "{logs}"
    );
    for token in &tokens {
        assert!(
            !seen.contains(token.as_str()),
            "the access token reached the browser:\n{seen}"
        );
        assert!(
            !logs.contains(token.as_str()),
            "the access token was logged"
        );
        // ureq-proto's trace dumps are hex: look for the hex of the token too.
        let hex: String = token.bytes().take(8).map(|b| format!("{b:02x}")).collect();
        assert!(
            !logs.replace(' ', "").contains(&hex),
            "a hex dump of the access token was logged"
        );
    }
    assert!(!logs.contains(&code), "the authorization code was logged");
    assert!(
        !logs.contains(rig.sim.oauth_client_secret()),
        "the client secret was logged"
    );
}
