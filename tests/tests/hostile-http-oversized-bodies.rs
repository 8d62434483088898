//! Oversized command bodies (CONTRACT.md §3: at most 64 KiB): a declared
//! `Content-Length` of 10 MB is refused with 413 before any of it is read (the
//! test never sends it), also under `Expect: 100-continue`; a 1 MB body sent
//! chunked, with no length at all, is cut off at the limit and refused with 413.
//! Nothing reaches the gateway and the edge keeps serving.

use std::io::Write;
use std::time::Duration;

use relay_tests::hostile::{assert_still_serving, rss_kib, start, RawConn, SEND};

const T: Duration = Duration::from_secs(5);

#[test]
fn a_declared_10_mb_body_is_413_before_it_is_sent() {
    let h = start();
    let token = h.token("42", &["chat:write"]);
    for expect in ["", "Expect: 100-continue\r\n"] {
        let mut c = RawConn::connect(h.addr);
        c.send(
            format!(
                "POST {SEND} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
                 Content-Type: application/json\r\n{expect}Content-Length: 10000000\r\n\r\n"
            )
            .as_bytes(),
        )
        .unwrap();
        // Not one body byte was sent: the answer can only come from the header.
        let r = c.read_response(T).expect_response("413");
        assert_eq!(r.status, 413, "{expect:?}: {}", r.text());
        assert_eq!(r.json()["error"]["code"], "payload_too_large");
    }
    assert!(h.gateway.commands().is_empty());
    assert_still_serving(&h, "a declared 10 MB body");
}

#[test]
fn a_1_mb_chunked_body_is_413() {
    let h = start();
    let token = h.token("42", &["chat:write"]);
    let rss_before = rss_kib();
    let mut c = RawConn::connect(h.addr);
    let mut writer = c.stream.try_clone().unwrap();
    let head = format!(
        "POST {SEND} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    // Written on another thread: the edge may answer before it has read it all.
    let sender = std::thread::spawn(move || {
        writer.write_all(head.as_bytes())?;
        let open = br#"{"channelId":"100","content":""#;
        writer.write_all(format!("{:x}\r\n", open.len()).as_bytes())?;
        writer.write_all(open)?;
        writer.write_all(b"\r\n")?;
        let chunk = vec![b'a'; 16 * 1024];
        for _ in 0..64 {
            writer.write_all(format!("{:x}\r\n", chunk.len()).as_bytes())?;
            writer.write_all(&chunk)?;
            writer.write_all(b"\r\n")?;
        }
        writer.write_all(b"0\r\n\r\n")
    });
    let r = c.read_response(T).expect_response("413");
    assert_eq!(r.status, 413, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], "payload_too_large");
    drop(c);
    let _ = sender.join();
    eprintln!(
        "RSS {} KiB -> {} KiB around a 1 MB chunked body",
        rss_before,
        rss_kib()
    );
    assert!(h.gateway.commands().is_empty());
    assert_still_serving(&h, "a 1 MB chunked body");
}
