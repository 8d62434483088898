//! Path tricks: the edge matches request targets exactly, so traversal,
//! doubled slashes, case games, percent-encoding, NUL bytes, absolute-form
//! targets and 100 KB URLs all get a clear 4xx (or the connection is closed)
//! — never a 200 for a path the contract does not define, never a crash — and
//! a query string on a real endpoint still reaches that endpoint (CONTRACT.md
//! §3, §4, §6).

use std::time::Duration;

use relay_tests::hostile::{assert_still_serving, exchange, post_bytes, start, Outcome, SEND};

const T: Duration = Duration::from_secs(5);

#[test]
fn tricky_paths_get_a_clear_4xx_and_never_a_200() {
    let h = start();
    let long = "a".repeat(100 * 1024);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "dot-dot segment",
            b"GET /api/stream/../metrics HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        ),
        (
            "dot-dot to healthz",
            b"GET /api/../healthz HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        ),
        (
            "double slash",
            b"GET //api/stream HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        ),
        (
            "upper case",
            b"GET /API/STREAM HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        ),
        (
            "percent-encoded dot-dot",
            b"GET /api/stream/%2e%2e/metrics HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        ),
        (
            "percent-encoded letter",
            b"GET /%68ealthz HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        ),
        (
            "encoded slash",
            b"GET /api%2fstream HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        ),
        (
            "NUL byte",
            b"GET /heal\0thz HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        ),
        (
            "trailing NUL",
            b"GET /metrics\0 HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        ),
        (
            "absolute-form target",
            b"GET http://evil/healthz HTTP/1.1\r\nHost: evil\r\n\r\n".to_vec(),
        ),
        (
            "100 KB path",
            format!("GET /{long} HTTP/1.1\r\nHost: x\r\n\r\n").into_bytes(),
        ),
        (
            "100 KB path under /api",
            format!("GET /api/stream/{long} HTTP/1.1\r\nHost: x\r\n\r\n").into_bytes(),
        ),
        (
            "non-ASCII byte",
            b"GET /h\xc3\xa9althz HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        ),
        (
            "tab instead of space",
            b"GET\t/healthz HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        ),
        (
            "POST to a GET route",
            b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n".to_vec(),
        ),
        (
            "unknown method",
            b"BREW /healthz HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        ),
        (
            "command path with a suffix",
            b"POST /api/send-message/ HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n".to_vec(),
        ),
    ];
    for (what, request) in cases {
        let outcome = exchange(h.addr, &request, T);
        eprintln!("{what}: {:?}", outcome.status());
        match &outcome {
            Outcome::Response(r) => {
                assert!(
                    (400..500).contains(&r.status),
                    "{what}: {} {}",
                    r.status,
                    r.text()
                );
                if r.status == 404 || r.status == 405 {
                    assert!(
                        r.json()["error"]["code"].is_string(),
                        "{what}: not the error shape: {}",
                        r.text()
                    );
                }
            }
            Outcome::Closed => {}
            other => panic!("{what}: neither a 4xx nor a close: {other:?}"),
        }
    }
    assert_still_serving(&h, "path tricks");
}

#[test]
fn a_query_string_on_a_command_path_reaches_the_command() {
    let h = start();
    let token = h.token("42", &["chat:write"]);
    let body = r#"{"channelId":"100","content":"hello"}"#;
    let r = exchange(
        h.addr,
        &post_bytes(h.addr, &format!("{SEND}?x=1&channelId=999"), &token, body),
        T,
    )
    .expect_response("POST with a query");
    assert_eq!(r.status, 200, "{}", r.text());
    let cmd = h.gateway.next_command(T).expect("the command went out");
    assert_eq!(
        cmd.meta.request_id.as_deref(),
        r.json()["requestId"].as_str()
    );
    match cmd.body {
        relay_protocol::payload::CommandBody::SendMessage(m) => {
            assert_eq!(m.channel_id, "100", "the body decides, not the query");
        }
        other => panic!("{other:?}"),
    }
    assert_still_serving(&h, "a query on a command path");
}
