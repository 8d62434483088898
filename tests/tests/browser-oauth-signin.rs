//! Sign in with Discord in a real browser: starts `relay demo` in-process
//! (simulated Discord with its OAuth2 app, gateway, edge) and runs
//! `tests/browser/oauth.test.mjs` in Debian's chromium through playwright-core:
//! click "Sign in with Discord", pick a user on the simulated consent page, land
//! back signed in with the stream live; and Cancel. `bash tests/browser/setup.sh`
//! installs both; without them this test fails and says so (it never skips).

use std::path::PathBuf;
use std::process::Command;

use relay::demo::{Demo, DemoOptions};

#[test]
fn sign_in_with_discord_works_in_chromium() {
    let browser_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("browser");
    assert!(
        browser_dir.join("node_modules/playwright-core").is_dir()
            && std::path::Path::new("/usr/bin/chromium").exists(),
        "browser tests need Debian's chromium and playwright-core: run `bash tests/browser/setup.sh`"
    );
    let demo = Demo::start(DemoOptions {
        bind: "127.0.0.1:0".parse().unwrap(),
        seed: 11,
        enable_ws_bridge: false,
        control: None,
        role_period: None,
        replay_capacity: None,
    })
    .expect("demo starts");
    let url = format!("http://{}", demo.addr());
    let out = Command::new("node")
        .arg("--test")
        .arg("--test-reporter=spec")
        .arg("oauth.test.mjs")
        .current_dir(&browser_dir)
        .env("RELAY_URL", &url)
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
    for line in ["ℹ tests 2", "ℹ pass 2", "ℹ fail 0", "ℹ skipped 0"] {
        assert!(stdout.contains(line), "expected `{line}` in:\n{stdout}");
    }
}
