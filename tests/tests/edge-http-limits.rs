//! The edge's HTTP layer under hostile and heavy input: a slowloris head gets
//! 408, oversized heads 431/414, chunked bodies are decoded with the 64 KiB
//! limit (413) and rejected when malformed (400), odd targets never reach a
//! route, and 50 streams opened at once are all served at once.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use relay_tests::harness::Harness;
use relay_tests::sse_client::SseClient;
use serde_json::Value;

const SEND: &str = "/api/send-message";

/// A raw response: status, lower-cased headers, body.
struct Raw {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Raw {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

fn connect(addr: SocketAddr) -> TcpStream {
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    tcp
}

/// Reads one response with a `Content-Length` body.
fn read_response(tcp: &mut TcpStream) -> Raw {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = tcp.read(&mut chunk).expect("a response");
        assert!(n > 0, "closed before a response: {buf:?}");
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + len {
        let n = tcp.read(&mut chunk).expect("the body");
        assert!(n > 0, "closed mid-body");
        buf.extend_from_slice(&chunk[..n]);
    }
    Raw {
        status,
        headers,
        body: String::from_utf8_lossy(&buf[head_end..head_end + len]).into_owned(),
    }
}

/// The server closed the connection (end of stream or reset), nothing more sent.
fn closed(tcp: &mut TcpStream) -> bool {
    let mut byte = [0u8; 1];
    match tcp.read(&mut byte) {
        Ok(n) => n == 0,
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
    }
}

fn exchange(addr: SocketAddr, request: &[u8]) -> (Raw, TcpStream) {
    let mut tcp = connect(addr);
    tcp.write_all(request).unwrap();
    (read_response(&mut tcp), tcp)
}

fn chunked_command(token: &str, chunks: &str) -> String {
    format!(
        "POST {SEND} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n{chunks}"
    )
}

#[test]
fn a_slowloris_head_gets_408_after_the_configured_timeout() {
    let h = Harness::start_with(|s| s.http.head_timeout = Duration::from_millis(300));
    let mut tcp = connect(h.addr);
    let started = Instant::now();
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .unwrap();
    let r = read_response(&mut tcp);
    let waited = started.elapsed();
    assert_eq!(r.status, 408);
    assert_eq!(r.json()["error"]["code"], "request_timeout");
    assert_eq!(r.header("connection"), Some("close"));
    assert!(closed(&mut tcp));
    assert!(
        waited >= Duration::from_millis(300) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
    // A prompt client on the same edge is unaffected.
    assert_eq!(h.get("/healthz").status, 200);
}

#[test]
fn oversized_heads_get_431_and_long_targets_414() {
    let h = Harness::start();
    let big = "a".repeat(20 * 1024);
    let (r, mut tcp) = exchange(
        h.addr,
        format!("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n\r\n").as_bytes(),
    );
    assert_eq!(r.status, 431);
    assert!(closed(&mut tcp));

    let mut many = String::from("GET /healthz HTTP/1.1\r\nHost: x\r\n");
    for i in 0..150 {
        many.push_str(&format!("X-{i}: v\r\n"));
    }
    many.push_str("\r\n");
    assert_eq!(exchange(h.addr, many.as_bytes()).0.status, 431);

    let long = "a".repeat(9 * 1024);
    let (r, _) = exchange(
        h.addr,
        format!("GET /healthz?{long} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
    );
    assert_eq!(r.status, 414);
}

#[test]
fn chunked_commands_are_decoded_and_limited_to_64_kib() {
    let h = Harness::start();
    let token = h.token("42", &["chat:write"]);

    // Split anywhere, even inside a JSON string: the body is what counts.
    let body = r#"{"channelId":"100","content":"hello"}"#;
    let (a, b) = body.split_at(20);
    let ok = chunked_command(
        &token,
        &format!("{:x}\r\n{a}\r\n{:x}\r\n{b}\r\n0\r\n\r\n", a.len(), b.len()),
    );
    let (r, _) = exchange(h.addr, ok.as_bytes());
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["ok"], true);

    // 80 KiB in two chunks: refused once the second chunk would pass 64 KiB.
    let chunk = "x".repeat(40 * 1024);
    let big = chunked_command(
        &token,
        &format!("a000\r\n{chunk}\r\na000\r\n{chunk}\r\n0\r\n\r\n"),
    );
    let (r, mut tcp) = exchange(h.addr, big.as_bytes());
    assert_eq!(r.status, 413);
    assert_eq!(r.json()["error"]["code"], "payload_too_large");
    assert!(closed(&mut tcp));
    assert!(h.gateway.next_command(Duration::from_millis(100)).is_some());
    assert!(
        h.gateway.next_command(Duration::from_millis(100)).is_none(),
        "the refused call never reached the gateway"
    );
}

#[test]
fn malformed_chunked_bodies_get_400() {
    let h = Harness::start();
    let token = h.token("42", &["chat:write"]);
    for chunks in [
        "zz\r\n{}\r\n0\r\n\r\n",
        "2\r\n{}XX0\r\n\r\n",
        "2\n{}\r\n0\r\n\r\n",
        "fffffffffffffffffff\r\n",
    ] {
        let (r, mut tcp) = exchange(h.addr, chunked_command(&token, chunks).as_bytes());
        assert_eq!(r.status, 400, "{chunks:?}: {}", r.body);
        assert_eq!(r.json()["error"]["code"], "invalid_request");
        assert_eq!(r.header("connection"), Some("close"));
        assert!(closed(&mut tcp), "{chunks:?}");
    }
    // Both framings at once is refused before any handler runs.
    let smuggle = format!(
        "POST {SEND} HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    );
    assert_eq!(exchange(h.addr, smuggle.as_bytes()).0.status, 400);
    assert!(h.gateway.next_command(Duration::from_millis(100)).is_none());
}

#[test]
fn deeply_nested_json_is_a_400_not_a_crash() {
    let h = Harness::start();
    let token = h.token("42", &["chat:write"]);
    let nested = "[".repeat(60 * 1024);
    let r = h.post(SEND, Some(&token), &nested);
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(h.get("/healthz").status, 200);
}

#[test]
fn odd_targets_never_reach_a_route() {
    let h = Harness::start();
    for target in [
        "http://127.0.0.1/metrics",
        "/api/../metrics",
        "/%2e%2e/metrics",
        "/metrics/",
        "//metrics",
    ] {
        let (r, _) = exchange(
            h.addr,
            format!("GET {target} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
        );
        assert_eq!(r.status, 404, "{target}");
        assert_eq!(r.json()["error"]["code"], "not_found");
    }
    for target in ["/metrics%00", "/api/stream%0d%0aX:%20y"] {
        let (r, _) = exchange(
            h.addr,
            format!("GET {target} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
        );
        assert_eq!(r.status, 400, "{target}");
    }
}

#[test]
fn fifty_simultaneous_streams_are_all_served_within_a_second() {
    let h = Harness::start();
    let token = h.token("42", &[]);
    let n = 50;
    let start = Arc::new(Barrier::new(n));
    let hold = Arc::new(Barrier::new(n + 1));
    let addr = h.addr;
    let threads: Vec<_> = (0..n)
        .map(|_| {
            let (start, hold, token) = (start.clone(), hold.clone(), token.clone());
            std::thread::spawn(move || {
                start.wait();
                let began = Instant::now();
                let mut s =
                    SseClient::connect(addr, &format!("/api/stream?access_token={token}"), &[])
                        .expect("connect");
                assert_eq!(s.status, 200);
                s.wait_for("voice.snapshot", Duration::from_secs(15))
                    .expect("the stream starts");
                let took = began.elapsed();
                // Every stream stays open until all have started.
                hold.wait();
                took
            })
        })
        .collect();
    hold.wait();
    let slowest = threads
        .into_iter()
        .map(|t| t.join().unwrap())
        .max()
        .unwrap();
    assert!(
        slowest < Duration::from_secs(1),
        "slowest stream: {slowest:?}"
    );
}

#[test]
fn a_closed_stream_is_noticed_before_the_next_heartbeat() {
    let h = Harness::start_with(|s| s.heartbeat = Duration::from_secs(60));
    let token = h.token("42", &[]);
    let mut s = h.stream(&format!("access_token={token}"), &[]);
    s.wait_for("voice.snapshot", Duration::from_secs(5))
        .unwrap();
    assert_eq!(h.metrics.sse_clients(), 1);
    drop(s);
    let deadline = Instant::now() + Duration::from_secs(5);
    while h.metrics.sse_clients() != 0 {
        assert!(
            Instant::now() < deadline,
            "the closed stream is still counted"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
