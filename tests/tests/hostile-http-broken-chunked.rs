//! Broken chunked bodies on a command — a size that is not hex, a chunk without
//! its CRLF, a negative or overflowing size, a body cut off mid-chunk — are a
//! 400 in the contract's error shape (or a closed connection), nothing reaches
//! the gateway, and the edge keeps serving.

use std::time::Duration;

use relay_tests::hostile::{assert_still_serving, start, Outcome, RawConn, SEND};

const T: Duration = Duration::from_secs(5);

fn head(token: &str) -> String {
    format!(
        "POST {SEND} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
}

#[test]
fn broken_chunked_bodies_are_400_and_the_edge_keeps_serving() {
    let h = start();
    let token = h.token("42", &["chat:write"]);
    let json = r#"{"channelId":"100","content":"hello"}"#;
    let cases: Vec<(&str, String)> = vec![
        ("size not hex", format!("zz\r\n{json}\r\n0\r\n\r\n")),
        (
            "chunk without its CRLF",
            format!("{:x}\r\n{json}XX0\r\n\r\n", json.len()),
        ),
        (
            "negative size",
            format!("-{:x}\r\n{json}\r\n0\r\n\r\n", json.len()),
        ),
        (
            "size past u64",
            format!("ffffffffffffffffffffffff\r\n{json}\r\n0\r\n\r\n"),
        ),
        ("empty size line", format!("\r\n{json}\r\n0\r\n\r\n")),
        (
            "size larger than the data, then the end",
            format!("ffff\r\n{json}\r\n0\r\n\r\n"),
        ),
    ];
    for (what, body) in cases {
        let mut c = RawConn::connect(h.addr);
        // The whole body is sent and the writing side closed, so a decoder that
        // waits for more reads EOF instead of hanging.
        c.send(format!("{}{body}", head(&token)).as_bytes())
            .unwrap();
        c.finish_writing();
        check(c.read_response(T), what);
    }
    // Cut off mid-chunk: the client stops sending and closes its side.
    let mut c = RawConn::connect(h.addr);
    c.send(format!("{}{:x}\r\n{}", head(&token), json.len(), &json[..10]).as_bytes())
        .unwrap();
    c.finish_writing();
    check(c.read_response(T), "truncated mid-chunk");
    // Cut off after a complete chunk, with no last chunk.
    let mut c = RawConn::connect(h.addr);
    c.send(format!("{}{:x}\r\n{json}\r\n", head(&token), json.len()).as_bytes())
        .unwrap();
    c.finish_writing();
    check(c.read_response(T), "no last chunk");

    assert!(
        h.gateway.commands().is_empty(),
        "a broken body reached the gateway"
    );
    assert_still_serving(&h, "broken chunked bodies");
}

fn check(outcome: Outcome, what: &str) {
    match outcome {
        Outcome::Response(r) => {
            eprintln!("{what}: {} {}", r.status, r.text());
            assert_eq!(r.status, 400, "{what}: {}", r.text());
            assert_eq!(r.json()["error"]["code"], "invalid_request", "{what}");
        }
        Outcome::Closed => eprintln!("{what}: closed"),
        other => panic!("{what}: {other:?}"),
    }
}
