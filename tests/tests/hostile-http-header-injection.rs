//! Header injection: attacker-chosen bytes — encoded CR/LF in the path and
//! query, a bare LF inside header values (tiny_http only ends a header line at
//! CRLF), odd `Host`, `Origin`, `Cookie`, `Last-Event-ID` values — never come
//! back in a response head, and no response header carries a CR or LF of the
//! attacker's. The SSE body gets no field of the attacker's either.

use std::time::Duration;

use relay_tests::hostile::{assert_still_serving, exchange, start, Outcome, RawConn, RawResponse};

const T: Duration = Duration::from_secs(5);
const MARK: &str = "x-injected";

/// Every header line is `name: value` with neither CR nor LF inside, and none
/// is the attacker's.
fn assert_clean_head(r: &RawResponse, what: &str) {
    let head = String::from_utf8_lossy(&r.head).into_owned();
    assert!(head.ends_with("\r\n\r\n"), "{what}: {head:?}");
    for line in head.trim_end_matches("\r\n").split("\r\n") {
        assert!(
            !line.contains('\r') && !line.contains('\n'),
            "{what}: a bare CR/LF in {line:?}"
        );
        assert!(
            !line.to_ascii_lowercase().contains(MARK) && !line.contains("evil"),
            "{what}: attacker bytes reflected in {line:?}"
        );
    }
}

#[test]
fn attacker_bytes_never_reach_a_response_head() {
    let h = start_with_bridge();
    let token = h.token("42", &["chat:write"]);
    let lf = "1\nX-Injected: yes\nSet-Cookie: evil=1";
    let cases: Vec<(&str, String)> = vec![
        (
            "encoded CRLF in the path",
            "GET /api/nope%0d%0aX-Injected:%20yes HTTP/1.1\r\nHost: x\r\n\r\n".into(),
        ),
        (
            "encoded CRLF in a stream query",
            "GET /api/stream?access_token=bad%0d%0aX-Injected:%20yes&types=a%0d%0aSet-Cookie:%20evil HTTP/1.1\r\nHost: x\r\n\r\n".into(),
        ),
        (
            "bare LF in Host",
            format!("GET /healthz HTTP/1.1\r\nHost: {lf}\r\n\r\n"),
        ),
        (
            "bare LF in Origin",
            "GET /readyz HTTP/1.1\r\nHost: x\r\nOrigin: http://evil\nX-Injected: yes\r\n\r\n".into(),
        ),
        (
            "bare LF in Authorization",
            format!("POST /api/send-message HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {lf}\r\nContent-Length: 0\r\n\r\n"),
        ),
        (
            "bare LF in Cookie",
            format!("GET /api/stream HTTP/1.1\r\nHost: x\r\nCookie: relay_session={lf}\r\n\r\n"),
        ),
        (
            "bare LF in Content-Type",
            format!(
                "POST /api/send-message HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
                 Content-Type: text/plain\nX-Injected: yes\r\nContent-Length: 2\r\n\r\n{{}}"
            ),
        ),
        (
            "bare LF in a command field",
            {
                let body = r#"{"channelId":"1\r\nX-Injected: yes","content":"evil\r\nX-Injected: yes"}"#;
                format!(
                    "POST /api/send-message HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
                     Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                )
            },
        ),
        (
            "bare LF in X-Request-Id and X-Forwarded-For",
            format!("GET /metrics HTTP/1.1\r\nHost: x\r\nX-Request-Id: {lf}\r\nX-Forwarded-For: {lf}\r\n\r\n"),
        ),
        (
            "bare LF in a WebSocket key",
            format!(
                "GET /api/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {lf}\r\n\r\n"
            ),
        ),
    ];
    for (what, request) in cases {
        match exchange(h.addr, request.as_bytes(), T) {
            Outcome::Response(r) => {
                eprintln!("{what}: {}", r.status);
                assert_clean_head(&r, what);
            }
            Outcome::Closed => eprintln!("{what}: closed"),
            other => panic!("{what}: {other:?}"),
        }
    }
    assert_still_serving(&h, "header injection attempts");
}

#[test]
fn a_last_event_id_with_a_bare_lf_adds_no_field_to_the_stream() {
    let h = start();
    let token = h.token("42", &[]);
    let mut c = RawConn::connect(h.addr);
    c.send(
        format!(
            "GET /api/stream?access_token={token} HTTP/1.1\r\nHost: x\r\n\
             Last-Event-ID: 1-1\nevent: injected\ndata: evil\r\n\r\n"
        )
        .as_bytes(),
    )
    .unwrap();
    // The head and the first items (retry, reset, status, snapshot) come in one write.
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + T;
    while !String::from_utf8_lossy(&seen).contains("voice.snapshot") {
        assert!(std::time::Instant::now() < deadline, "no snapshot");
        let mut buf = [0u8; 4096];
        c.stream.set_read_timeout(Some(T)).unwrap();
        let n = std::io::Read::read(&mut c.stream, &mut buf).unwrap();
        assert!(n > 0, "the stream closed");
        seen.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&seen);
    let (head, body) = text.split_once("\r\n\r\n").expect("a head");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(!head.to_ascii_lowercase().contains("injected"), "{head}");
    assert!(body.contains("event: stream.reset"), "{body}");
    assert!(
        !body.contains("injected") && !body.contains("evil"),
        "attacker bytes in the stream: {body}"
    );
}

fn start_with_bridge() -> relay_tests::harness::Harness {
    relay_tests::harness::Harness::start_with(|s| {
        s.enable_ws_bridge = true;
        s.limits.burst = 100_000;
        s.limits.refill = 100_000;
    })
}
