//! The demo page in a real browser: starts `relay demo` in-process (simulated
//! Discord, gateway, edge with the legacy bridge on, and the test control API)
//! and runs `tests/browser/page.test.mjs` in Debian's chromium through
//! playwright-core. `bash tests/browser/setup.sh` installs both; without them
//! this test fails and says so (it never skips).

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use relay::demo::{Demo, DemoOptions};

/// The demo edge's replay ring, in events.
const REPLAY_CAPACITY: usize = 256;

#[test]
fn demo_page_works_in_chromium() {
    let browser_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("browser");
    assert!(
        browser_dir.join("node_modules/playwright-core").is_dir() && std::path::Path::new("/usr/bin/chromium").exists(),
        "browser tests need Debian's chromium and playwright-core: run `bash tests/browser/setup.sh`"
    );
    let control = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let demo = Demo::start(DemoOptions {
        bind: "127.0.0.1:0".parse().unwrap(),
        seed: 7,
        enable_ws_bridge: true,
        control: Some(control),
        // The page tests grant and take roles themselves; the demo's own
        // schedule (Ada's Moderator role every 45 s) would race them.
        role_period: Some(Duration::from_secs(3600)),
        // Small, so test 13's resume falls out of the ring for real
        // (REPLAY_CAPACITY, CONTRACT.md §1) and the page gets `stream.reset`.
        replay_capacity: Some(REPLAY_CAPACITY),
    })
    .expect("demo starts");
    let url = format!("http://{}", demo.addr());
    let out = Command::new("node")
        .arg("--test")
        .arg("--test-reporter=spec")
        .arg("page.test.mjs")
        .current_dir(&browser_dir)
        .env("RELAY_URL", &url)
        .env("BRIDGE_URL", &url)
        .env("SIM_CONTROL_URL", format!("http://{control}"))
        .env("SESSION_TOKEN", &demo.token)
        .env("REPLAY_CAPACITY", REPLAY_CAPACITY.to_string())
        .output()
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    demo.shutdown();
    println!("{stdout}");
    assert!(
        out.status.success(),
        "browser tests failed:\n{stdout}\n{stderr}"
    );
    // The spec reporter's summary: every test ran and passed, none skipped.
    for line in ["ℹ tests 13", "ℹ pass 13", "ℹ fail 0", "ℹ skipped 0"] {
        assert!(stdout.contains(line), "expected `{line}` in:\n{stdout}");
    }
}
