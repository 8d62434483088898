//! HTTP/1.0 requests are answered (as HTTP/1.1, RFC 9112 §2.3) and the connection closes;
//! requests pipelined on one keep-alive connection in a single write are all
//! answered, in order; and a body the edge does not read closes the connection,
//! never parsed as a request of its own.

use std::time::Duration;

use relay_tests::hostile::{assert_still_serving, post_bytes, start, Outcome, RawConn, SEND};

const T: Duration = Duration::from_secs(5);

#[test]
fn http_1_0_requests_are_answered_and_closed() {
    let h = start();
    let mut c = RawConn::connect(h.addr);
    c.send(b"GET /healthz HTTP/1.0\r\n\r\n").unwrap();
    let r = c.read_response(T).expect_response("HTTP/1.0 GET");
    // RFC 9112 §2.3: a server answers with the highest 1.x it speaks.
    assert_eq!((r.version.as_str(), r.status), ("HTTP/1.1", 200));
    assert!(
        c.closed_within(T),
        "an HTTP/1.0 connection without keep-alive closes"
    );

    let token = h.token("42", &["chat:write"]);
    let body = r#"{"channelId":"100","content":"hello"}"#;
    let mut c = RawConn::connect(h.addr);
    c.send(
        format!(
            "POST {SEND} HTTP/1.0\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )
    .unwrap();
    let r = c.read_response(T).expect_response("HTTP/1.0 POST");
    assert_eq!(
        (r.version.as_str(), r.status),
        ("HTTP/1.1", 200),
        "{}",
        r.text()
    );
    assert!(h.gateway.next_command(T).is_some());
    assert!(c.closed_within(T));

    // HTTP/1.0 with keep-alive: two requests in one write, two answers.
    let mut c = RawConn::connect(h.addr);
    c.send(
        b"GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n\
          GET /readyz HTTP/1.0\r\n\r\n",
    )
    .unwrap();
    let first = c.read_response(T).expect_response("first");
    let second = c.read_response(T).expect_response("second");
    assert_eq!(first.json()["status"], "ok");
    assert_eq!(second.json()["ready"], true);
    assert_still_serving(&h, "HTTP/1.0");
}

#[test]
fn two_pipelined_commands_are_both_answered_in_order() {
    let h = start();
    let token = h.token("42", &["chat:write"]);
    let mut both = post_bytes(
        h.addr,
        SEND,
        &token,
        r#"{"channelId":"100","content":"first"}"#,
    );
    both.extend(post_bytes(
        h.addr,
        "/api/typing-start",
        &token,
        r#"{"channelId":"200"}"#,
    ));
    let mut c = RawConn::connect(h.addr);
    c.send(&both).unwrap();
    let first = c.read_response(T).expect_response("first answer");
    let second = c.read_response(T).expect_response("second answer");
    assert_eq!(first.status, 200, "{}", first.text());
    assert_eq!(second.status, 200, "{}", second.text());
    // Each answer carries the request id of its own command.
    let mut sent = [
        h.gateway.next_command(T).expect("a command"),
        h.gateway.next_command(T).expect("another command"),
    ];
    sent.sort_by_key(|c| c.body.type_name() != "sendMessage");
    assert_eq!(
        first.json()["requestId"].as_str(),
        sent[0].meta.request_id.as_deref(),
        "the first answer is the sendMessage's"
    );
    assert_eq!(
        second.json()["requestId"].as_str(),
        sent[1].meta.request_id.as_deref(),
        "the second answer is the typingStart's"
    );

    // A rejected command first, an accepted one second: the order shows in the codes.
    let mut mixed = post_bytes(h.addr, SEND, &token, r#"{"channelId":"x","content":""}"#);
    mixed.extend(post_bytes(
        h.addr,
        SEND,
        &token,
        r#"{"channelId":"101","content":"ok"}"#,
    ));
    mixed.extend(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    c.send(&mixed).unwrap();
    let statuses: Vec<u16> = (0..3)
        .map(|i| {
            c.read_response(T)
                .expect_response(&format!("answer {i}"))
                .status
        })
        .collect();
    assert_eq!(statuses, [400, 200, 200]);
    assert_still_serving(&h, "pipelined commands");
}

#[test]
fn an_unread_body_is_skipped_not_parsed_as_a_request() {
    let h = start();
    let smuggled = "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n";
    for len in [200, 2000] {
        // No session: the edge answers 401 without reading the body, which holds
        // a request of its own.
        let body = format!("{smuggled}{}", " ".repeat(len - smuggled.len()));
        let mut c = RawConn::connect(h.addr);
        c.send(
            format!(
                "POST {SEND} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
                 Content-Length: {len}\r\n\r\n{body}GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n"
            )
            .as_bytes(),
        )
        .unwrap();
        let first = c.read_response(T).expect_response("401");
        assert_eq!(first.status, 401);
        // The edge answered before reading the body, so it cannot know where the
        // next request starts: it closes the connection. Neither the request
        // hidden in the body nor the one pipelined after it is answered.
        let next = c.read_response(T);
        assert!(
            matches!(next, Outcome::Closed),
            "{len}: after the 401, expected a close, got {next:?}"
        );
    }
    assert_still_serving(&h, "an unread body");
}
