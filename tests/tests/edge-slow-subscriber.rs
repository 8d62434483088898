//! A subscriber that stops reading is dropped (it can resume with Last-Event-ID)
//! and never holds back the others (CONTRACT.md §4).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use relay_tests::harness::Harness;
use relay_tests::test_gateway::message;

#[test]
fn a_stalled_reader_is_dropped_while_others_keep_up() {
    let h = Harness::start();
    let token = h.token("42", &[]);
    // The stalled client: a tiny receive buffer, and it never reads after the headers.
    let stalled = TcpStream::connect(h.addr).unwrap();
    let sock = socket2::SockRef::from(&stalled);
    sock.set_recv_buffer_size(4096).unwrap();
    (&stalled)
        .write_all(
            format!("GET /api/stream?access_token={token} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
        )
        .unwrap();
    let mut first = [0u8; 64];
    (&stalled).read_exact(&mut first).unwrap();

    let mut healthy = h.stream(&format!("access_token={token}"), &[]);
    healthy
        .wait_for("voice.snapshot", Duration::from_secs(5))
        .unwrap();
    let big = "x".repeat(1800);
    let start = Instant::now();
    let n = 3000;
    for i in 0..n {
        h.gateway.send_event(message(&i.to_string(), "7", &big));
    }
    for i in 0..n {
        let ev = healthy
            .wait_for("messageCreate", Duration::from_secs(10))
            .unwrap_or_else(|| panic!("healthy client stalled at {i}"));
        assert!(
            ev.data.contains(&format!("\"id\":\"{i}\"")),
            "in order, none missed"
        );
    }
    let elapsed = start.elapsed();
    assert!(
        elapsed < Duration::from_secs(10),
        "healthy client slowed down: {elapsed:?}"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while !h
        .metrics
        .encode()
        .contains("relay_sse_dropped_slow_total 1")
    {
        assert!(Instant::now() < deadline, "stalled subscriber not dropped");
        std::thread::sleep(Duration::from_millis(20));
    }
    // The stalled stream ends once it is dropped (its socket closed by the
    // writer pool), and the healthy one stays.
    drop(stalled);
    let deadline = Instant::now() + Duration::from_secs(10);
    while h.metrics.sse_clients() != 1 {
        assert!(
            Instant::now() < deadline,
            "stalled stream thread still alive"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A dropped client must see its stream end, or it never resumes: tiny_http keeps
/// the connection open for a next request, so without the edge closing it the
/// client gets what was buffered and then waits forever, with no EOF.
#[test]
fn a_dropped_client_reads_what_was_sent_then_the_end_of_its_stream() {
    let h = Harness::start();
    let token = h.token("42", &[]);
    // 64 KiB: small enough to stall, large enough to drain fast afterwards.
    let mut stalled = TcpStream::connect(h.addr).unwrap();
    socket2::SockRef::from(&stalled)
        .set_recv_buffer_size(64 * 1024)
        .unwrap();
    stalled
        .write_all(
            format!("GET /api/stream?access_token={token} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
        )
        .unwrap();
    let mut first = [0u8; 64];
    stalled.read_exact(&mut first).unwrap();
    let big = "x".repeat(1800);
    for i in 0..3000 {
        h.gateway.send_event(message(&i.to_string(), "7", &big));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while h.metrics.sse_clients() != 0 {
        assert!(Instant::now() < deadline, "stalled subscriber not dropped");
        std::thread::sleep(Duration::from_millis(20));
    }
    stalled
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    let mut read = 0;
    loop {
        match stalled.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => read += n,
            Err(e) => panic!("after {read} bytes, no end of stream: {e}"),
        }
    }
    assert!(read > 0, "what was already sent still arrives");
}
