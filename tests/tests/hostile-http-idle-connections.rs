//! 10,000 connections opened and left idle: the edge keeps answering a normal
//! client within 1 s, and once they close its thread count returns to where it
//! was. The client sockets live in a child process (`hold-connections`), so
//! only the edge's server-side sockets count against this process's
//! descriptor limit; where that limit is too low for 10,000 (tiny_http uses two
//! descriptors per connection), the test opens as many as fit and says so.
//! Threads and RSS while they are held are printed for the record.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use relay_tests::hostile::{
    assert_healthz, assert_still_serving, raise_nofile_limit, rss_kib, start, threads,
};

const IDLE: usize = 10_000;

#[test]
fn ten_thousand_idle_connections_do_not_starve_clients_and_leave_no_threads() {
    let limit = raise_nofile_limit();
    let h = start();
    // Warm up: the lazily created pools exist before the baseline.
    assert_still_serving(&h, "warm-up");
    let baseline = threads();
    let rss_before = rss_kib();
    // tiny_http holds two descriptors per connection (a read and a write clone
    // of the socket), and the hard limit cannot be raised without privileges:
    // open as many as fit, with headroom. At or past the limit the edge stops
    // accepting for good (hostile-http-gaps.rs.txt).
    let wanted = IDLE.min((limit as usize).saturating_sub(1000) / 2);
    if wanted < IDLE {
        eprintln!(
            "RLIMIT_NOFILE is {limit} (2 descriptors per connection): \
             opening {wanted} idle connections, not {IDLE}"
        );
    }

    let mut child = Command::new(env!("CARGO_BIN_EXE_hold-connections"))
        .arg(h.addr.to_string())
        .arg(wanted.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start hold-connections");
    let started = Instant::now();
    let mut ready = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut ready)
        .expect("hold-connections reports");
    let opened: u64 = ready
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("hold-connections said {ready:?}"));
    eprintln!(
        "opened {opened} idle connections in {:?} (child: {})",
        started.elapsed(),
        ready.trim()
    );
    assert!(opened >= wanted as u64 * 9 / 10, "only {opened} connected");

    // Wait until the edge has taken them in (one thread each today): until the
    // thread count stops growing, bounded.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last = threads();
    loop {
        std::thread::sleep(Duration::from_millis(500));
        let now = threads();
        if (now == last && now >= baseline + opened * 9 / 10) || Instant::now() > deadline {
            break;
        }
        last = now;
    }
    let held_threads = threads();
    let rss_held = rss_kib();
    eprintln!(
        "with {opened} idle: threads {baseline} -> {held_threads}, RSS {} MiB -> {} MiB",
        rss_before / 1024,
        rss_held / 1024
    );

    // A normal client is still answered within 1 s, and nothing else broke.
    assert_healthz(&h, Duration::from_secs(1), "10k idle connections");
    assert_still_serving(&h, "10k idle connections");

    // Close them all; the thread count returns to baseline within a bounded wait.
    let closed_at = Instant::now();
    drop(child.stdin.take());
    child.wait().expect("hold-connections exits");
    let deadline = closed_at + Duration::from_secs(20);
    while threads() > baseline {
        assert!(
            Instant::now() < deadline,
            "threads still {} (baseline {baseline}) 20 s after closing",
            threads()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!(
        "threads back to {} (baseline {baseline}) {:?} after closing; RSS now {} MiB",
        threads(),
        closed_at.elapsed(),
        rss_kib() / 1024
    );
    assert_still_serving(&h, "closing 10k idle connections");
}
