//! Oversized request heads — one 64 KiB header, 10,000 small headers, a 100 KB
//! cookie on the stream — do not crash or wedge the edge: it answers (today
//! tiny_http reads any head in full and the request is served; the contract's
//! 431 is recorded in hostile-http-gaps.rs.txt) or closes, and afterwards a
//! normal client still gets `/healthz`, a live SSE event and a command reply.

use std::time::{Duration, Instant};

use relay_tests::hostile::{assert_still_serving, exchange, rss_kib, start, Outcome, RawConn};

const T: Duration = Duration::from_secs(10);

fn record(what: &str, outcome: &Outcome, took: Duration) {
    match outcome {
        Outcome::Response(r) => eprintln!("{what}: {} in {took:?}", r.status),
        other => eprintln!("{what}: {other:?} in {took:?}"),
    }
    // An answer (served, or refused as too large) or a close; never a hang or a 5xx.
    match outcome {
        Outcome::Response(r) => assert!(
            matches!(r.status, 200 | 400 | 401 | 413 | 431),
            "{what}: {} {}",
            r.status,
            r.text()
        ),
        Outcome::Closed => {}
        other => panic!("{what}: neither an answer nor a close: {other:?}"),
    }
}

#[test]
fn oversized_heads_neither_crash_nor_wedge_the_edge() {
    let h = start();
    let rss_before = rss_kib();
    let big = "a".repeat(64 * 1024);
    let many: String = (0..10_000).map(|i| format!("X-H{i}: v\r\n")).collect();
    let token = h.token("42", &[]);
    let cases = [
        (
            "one 64 KiB header",
            format!("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n\r\n"),
        ),
        (
            "10,000 headers",
            format!("GET /healthz HTTP/1.1\r\nHost: x\r\n{many}\r\n"),
        ),
        (
            "10,000 headers on the stream",
            format!("GET /api/stream?access_token={token} HTTP/1.1\r\nHost: x\r\n{many}\r\n"),
        ),
        (
            "a 100 KB cookie on the stream",
            format!(
                "GET /api/stream HTTP/1.1\r\nHost: x\r\nCookie: a={}; relay_session={token}\r\n\r\n",
                "b".repeat(100 * 1024)
            ),
        ),
    ];
    for (what, request) in cases {
        let started = Instant::now();
        // A stream that is served never ends: its head is the answer.
        let mut c = RawConn::connect(h.addr);
        let _ = c.send(request.as_bytes());
        let outcome = if what.contains("stream") {
            c.read_head(T)
        } else {
            c.read_response(T)
        };
        record(what, &outcome, started.elapsed());
    }
    // Twenty more of the biggest: nothing accumulates per request.
    for _ in 0..20 {
        let request = format!("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n\r\n");
        let started = Instant::now();
        let outcome = exchange(h.addr, request.as_bytes(), T);
        record("one 64 KiB header, again", &outcome, started.elapsed());
    }
    eprintln!("RSS {rss_before} KiB -> {} KiB", rss_kib());
    assert_still_serving(&h, "oversized request heads");
}
