//! The TanStack Start example app (`examples/tanstack-start`) in a real browser:
//! builds it for production (`npm run build`, which builds `@relay/client`
//! first), starts `relay demo` in-process with a known `SESSION_SECRET` and the
//! simulated Discord's control API, runs the app's own server (`node
//! server.mjs`, which proxies `/api/*` to the demo's edge and whose server
//! functions mint relay sessions with that secret), and drives it with
//! `tests/browser/example-app.test.mjs` in Debian's chromium through
//! playwright-core: sign-in, history, live messages, sending, voice members,
//! the dropout modal (Dismiss, Rejoin), one `/api/stream` and no `/api/ws`.
//!
//! Prerequisites: `bash tests/browser/setup.sh` (chromium, playwright-core) and
//! `npm ci` in `examples/tanstack-start` (`.ci/run` does both). Without them
//! this test fails and says what to run; it never skips.

use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use relay::demo::{Demo, DemoOptions};
use relay::secret::Secret;

/// The app's server process, stopped when dropped (also when an assert fails).
struct AppServer {
    child: Child,
    log: Option<thread::JoinHandle<String>>,
}

impl AppServer {
    /// Stops the server and returns what it printed.
    fn stop(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.log
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default()
    }
}

impl Drop for AppServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    l.local_addr().expect("local addr")
}

fn output_text(out: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn check_prerequisites(example: &Path, browser: &Path) {
    assert!(
        Path::new("/usr/bin/chromium").exists() && browser.join("node_modules/playwright-core").is_dir(),
        "browser tests need Debian's chromium and playwright-core: run `bash tests/browser/setup.sh`"
    );
    assert!(
        example.join("node_modules/@tanstack/react-start").is_dir()
            && example.join("node_modules/vite").is_dir(),
        "the example app's packages are not installed: run `npm ci` in examples/tanstack-start"
    );
    let node = Command::new("node").arg("--version").output();
    assert!(
        node.as_ref().is_ok_and(|o| o.status.success()),
        "node is needed to build and run the example app: {node:?}"
    );
}

/// Starts `node server.mjs` and waits for its "listening" line.
fn start_app(example: &Path, addr: SocketAddr, relay_url: &str, secret: &str) -> AppServer {
    let mut child = Command::new("node")
        .arg("server.mjs")
        .current_dir(example)
        .env("HOST", addr.ip().to_string())
        .env("PORT", addr.port().to_string())
        .env("RELAY_URL", relay_url)
        .env("SESSION_SECRET", secret)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node starts the example app's server");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let (ready_tx, ready_rx) = mpsc::channel();
    let log = thread::spawn(move || {
        let mut text = String::new();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.starts_with("example app on ") {
                let _ = ready_tx.send(());
            }
            text.push_str(&line);
            text.push('\n');
        }
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let server = AppServer {
        child,
        log: Some(log),
    };
    if ready_rx.recv_timeout(Duration::from_secs(30)).is_err() {
        let log = server.stop();
        panic!("the example app's server did not start within 30 s:\n{log}");
    }
    server
}

#[test]
fn example_app_works_in_chromium() {
    let tests_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let example = tests_dir.join("../examples/tanstack-start");
    let browser_dir = tests_dir.join("browser");
    check_prerequisites(&example, &browser_dir);

    // The production build, as a deployment would make it.
    let build = Command::new("npm")
        .args(["run", "build"])
        .current_dir(&example)
        .output()
        .expect("npm runs");
    assert!(
        build.status.success(),
        "`npm run build` in examples/tanstack-start failed:\n{}",
        output_text(&build)
    );
    assert!(example.join("dist/server/server.js").is_file());

    // relay demo with the secret the app mints sessions with.
    let secret = format!("{:032x}", rand::random::<u128>());
    let control = free_addr();
    let demo = Demo::start_with_secret(
        DemoOptions {
            bind: "127.0.0.1:0".parse().expect("addr"),
            seed: 11,
            enable_ws_bridge: false,
            control: Some(control),
            // Nothing here depends on Ada's roles; keep the schedule quiet anyway.
            role_period: Some(Duration::from_secs(3600)),
            replay_capacity: None,
        },
        Some(Secret::new(secret.clone())),
    )
    .expect("demo starts");
    let relay_url = format!("http://{}", demo.addr());

    let app_addr = free_addr();
    let app = start_app(&example, app_addr, &relay_url, &secret);
    let out = Command::new("node")
        .arg("--test")
        .arg("--test-reporter=spec")
        .arg("example-app.test.mjs")
        .current_dir(&browser_dir)
        .env("APP_URL", format!("http://{app_addr}"))
        .env("SIM_CONTROL_URL", format!("http://{control}"))
        .output()
        .expect("node runs");
    let app_log = app.stop();
    demo.shutdown();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "browser tests of the example app failed:\n{stdout}\n{stderr}\napp server log:\n{app_log}"
    );
    // Every test ran and passed, none skipped.
    for line in ["ℹ tests 7", "ℹ pass 7", "ℹ fail 0", "ℹ skipped 0"] {
        assert!(stdout.contains(line), "expected `{line}` in:\n{stdout}");
    }
    // The secret stays on the servers: not in what the app's server printed.
    assert!(
        !app_log.contains(&secret),
        "the app server printed SESSION_SECRET"
    );
}
