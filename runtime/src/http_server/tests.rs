//! The server on real loopback sockets, one behaviour per test. Timeouts are
//! configured short; nothing sleeps to synchronise.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::bounded;

use super::*;

const LIMIT: usize = 1024;

/// Echoes method, target and body; a body error becomes its status.
fn echo(mut req: Request) {
    let url = req.url().to_owned();
    let method = req.method().clone();
    let resp = match req.read_body(LIMIT) {
        Ok(body) => Response::new(200)
            .header("X-Method", method.as_str())
            .header("X-Url", &url)
            .body(body),
        Err(BodyError::TooLarge) => Response::new(413),
        Err(BodyError::Invalid) => Response::new(400),
        Err(BodyError::TimedOut) => Response::new(408),
        Err(BodyError::Io) => Response::new(499),
    };
    let _ = req.respond(resp);
}

fn start(config: HttpConfig, handler: impl Fn(Request) + Send + Sync + 'static) -> HttpServer {
    HttpServer::bind("127.0.0.1:0".parse().unwrap(), config, Arc::new(handler)).unwrap()
}

fn echo_server() -> HttpServer {
    start(HttpConfig::default(), echo)
}

fn fast() -> HttpConfig {
    HttpConfig {
        head_timeout: Duration::from_millis(300),
        idle_timeout: Duration::from_millis(300),
        body_timeout: Duration::from_millis(300),
        ..HttpConfig::default()
    }
}

#[derive(Debug)]
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A raw client that keeps what it read past one response for the next.
struct Client {
    tcp: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    fn connect(addr: SocketAddr) -> Client {
        let tcp = TcpStream::connect(addr).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        tcp.set_nodelay(true).unwrap();
        Client {
            tcp,
            buf: Vec::new(),
        }
    }

    fn send(&mut self, bytes: impl AsRef<[u8]>) -> &mut Client {
        self.tcp.write_all(bytes.as_ref()).unwrap();
        self
    }

    /// Reads more; false at end of stream (or reset).
    fn more(&mut self) -> bool {
        let mut chunk = [0u8; 16 * 1024];
        match self.tcp.read(&mut chunk) {
            Ok(0) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
            Err(e) if e.kind() == ErrorKind::ConnectionReset => false,
            Err(e) => panic!("read failed: {e}"),
        }
    }

    fn response(&mut self) -> Resp {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut resp = httparse::Response::new(&mut headers);
            if let httparse::Status::Complete(len) = resp.parse(&self.buf).unwrap() {
                let status = resp.code.unwrap();
                let headers: Vec<(String, String)> = resp
                    .headers
                    .iter()
                    .map(|h| {
                        (
                            h.name.to_owned(),
                            String::from_utf8_lossy(h.value).into_owned(),
                        )
                    })
                    .collect();
                self.buf.drain(..len);
                let length = headers
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                    .map(|(_, v)| v.parse::<usize>().unwrap());
                let body = match length {
                    Some(n) => {
                        while self.buf.len() < n {
                            assert!(self.more(), "connection closed mid-body");
                        }
                        self.buf.drain(..n).collect()
                    }
                    None if status < 200 || status == 204 => Vec::new(),
                    None => {
                        while self.more() {}
                        std::mem::take(&mut self.buf)
                    }
                };
                return Resp {
                    status,
                    headers,
                    body,
                };
            }
            assert!(self.more(), "connection closed before a response");
        }
    }

    /// The server closed the connection, and sent nothing more.
    fn closed(&mut self) -> bool {
        !self.more() && self.buf.is_empty()
    }
}

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n")
}

fn post(path: &str, body: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

fn chunked(body: &str) -> String {
    format!("POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n{body}")
}

// ---- keep-alive, pipelining, HTTP/1.0 --------------------------------------

#[test]
fn keep_alive_serves_several_requests_on_one_connection() {
    let server = echo_server();
    let mut c = Client::connect(server.local_addr());
    for i in 0..3 {
        let r = c.send(post(&format!("/n/{i}"), "hi")).response();
        assert_eq!(r.status, 200);
        assert_eq!(r.header("X-Url"), Some(format!("/n/{i}").as_str()));
        assert_eq!(r.header("Connection"), Some("keep-alive"));
        assert_eq!(r.header("Content-Length"), Some("2"));
        assert_eq!(r.text(), "hi");
    }
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let server = echo_server();
    let mut c = Client::connect(server.local_addr());
    let mut batch = String::new();
    batch.push_str(&get("/one"));
    batch.push_str(&post("/two", "body"));
    batch.push_str(&chunked("3\r\nabc\r\n0\r\n\r\n"));
    batch.push_str("GET /four HTTP/1.1\r\nConnection: close\r\n\r\n");
    c.send(batch);
    assert_eq!(c.response().header("X-Url"), Some("/one"));
    let two = c.response();
    assert_eq!(
        (two.header("X-Url"), two.text().as_str()),
        (Some("/two"), "body")
    );
    assert_eq!(c.response().text(), "abc");
    let four = c.response();
    assert_eq!(four.header("X-Url"), Some("/four"));
    assert_eq!(four.header("Connection"), Some("close"));
    assert!(c.closed());
}

#[test]
fn http_1_0_closes_unless_keep_alive_is_asked_for() {
    let server = echo_server();
    let mut c = Client::connect(server.local_addr());
    let r = c.send("GET /old HTTP/1.0\r\n\r\n").response();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Connection"), Some("close"));
    assert!(c.closed());

    let mut c = Client::connect(server.local_addr());
    for _ in 0..2 {
        let r = c
            .send("GET /old HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            .response();
        assert_eq!(r.header("Connection"), Some("keep-alive"));
    }
}

#[test]
fn head_requests_get_no_body() {
    let server = start(HttpConfig::default(), |req: Request| {
        let _ = req.respond(Response::new(200).body("hello"));
    });
    let mut c = Client::connect(server.local_addr());
    c.send("HEAD / HTTP/1.1\r\n\r\n");
    // Content-Length says 5, but no body follows: the next response comes next.
    while !c.buf.ends_with(b"\r\n\r\n") {
        assert!(c.more());
    }
    assert!(String::from_utf8_lossy(&c.buf)
        .ends_with("Content-Length: 5\r\nConnection: keep-alive\r\n\r\n"));
    c.buf.clear();
    assert_eq!(c.send(get("/")).response().text(), "hello");
}

// ---- timeouts --------------------------------------------------------------

#[test]
fn a_slow_head_gets_408_and_is_closed() {
    let server = start(fast(), echo);
    let mut c = Client::connect(server.local_addr());
    let started = Instant::now();
    c.send("GET /slow HTTP/1.1\r\nHost: x\r\n");
    let r = c.response();
    assert_eq!(r.status, 408);
    assert_eq!(r.header("Connection"), Some("close"));
    assert!(r.text().contains("request_timeout"));
    assert!(c.closed());
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(3),
        "{took:?}"
    );
}

#[test]
fn a_head_trickled_byte_by_byte_counts_from_its_first_byte() {
    let server = start(fast(), echo);
    let mut c = Client::connect(server.local_addr());
    // Each byte arrives well within the timeout, but the head as a whole does
    // not: a valid header line after another, never the blank line.
    let started = Instant::now();
    c.send("GET /trickle HTTP/1.1\r\n");
    'trickle: while started.elapsed() < Duration::from_secs(2) {
        for b in b"X-A: b\r\n" {
            if c.tcp.write_all(&[*b]).is_err() {
                break 'trickle;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    assert_eq!(c.response().status, 408);
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[test]
fn a_head_split_over_many_writes_is_parsed() {
    let server = echo_server();
    let mut c = Client::connect(server.local_addr());
    for b in post("/split", "xyz").bytes() {
        c.send([b]);
    }
    let r = c.response();
    assert_eq!((r.status, r.text().as_str()), (200, "xyz"));
}

#[test]
fn an_idle_connection_is_closed_silently() {
    let server = start(fast(), echo);
    let mut c = Client::connect(server.local_addr());
    assert_eq!(c.send(get("/")).response().status, 200);
    let started = Instant::now();
    assert!(c.closed(), "no 408 for a connection between requests");
    assert!(started.elapsed() >= Duration::from_millis(250));
}

#[test]
fn a_slow_body_times_out() {
    let server = start(fast(), echo);
    let mut c = Client::connect(server.local_addr());
    c.send("POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc");
    assert_eq!(c.response().status, 408);
    assert!(c.closed());
}

// ---- limits ----------------------------------------------------------------

#[test]
fn a_head_over_16_kib_gets_431() {
    let server = echo_server();
    let mut c = Client::connect(server.local_addr());
    let big = "a".repeat(17 * 1024);
    let r = c
        .send(format!("GET / HTTP/1.1\r\nX-Big: {big}\r\n\r\n"))
        .response();
    assert_eq!(r.status, 431);
    assert!(c.closed());
}

#[test]
fn more_than_100_headers_get_431() {
    let server = echo_server();
    let mut c = Client::connect(server.local_addr());
    let mut req = String::from("GET / HTTP/1.1\r\n");
    for i in 0..101 {
        req.push_str(&format!("X-H{i}: v\r\n"));
    }
    req.push_str("\r\n");
    assert_eq!(c.send(req).response().status, 431);

    let mut c = Client::connect(server.local_addr());
    let mut req = String::from("GET / HTTP/1.1\r\n");
    for i in 0..100 {
        req.push_str(&format!("X-H{i}: v\r\n"));
    }
    req.push_str("\r\n");
    assert_eq!(c.send(req).response().status, 200, "100 headers are fine");
}

#[test]
fn a_long_target_gets_414() {
    let server = echo_server();
    let mut c = Client::connect(server.local_addr());
    let long = "a".repeat(9 * 1024);
    assert_eq!(c.send(get(&format!("/{long}"))).response().status, 414);
    // A request line past the head limit, still incomplete, is 414 as well.
    let mut c = Client::connect(server.local_addr());
    let longer = "a".repeat(20 * 1024);
    assert_eq!(c.send(format!("GET /{longer}")).response().status, 414);
}

#[test]
fn control_characters_in_the_target_get_400() {
    let server = echo_server();
    for target in [
        "/a\x01b",
        "/a%00b",
        "/x?q=%00",
        "/a%0d%0aSet-Cookie:%20x",
        "/a\x7f",
    ] {
        let mut c = Client::connect(server.local_addr());
        let r = c.send(get(target)).response();
        assert_eq!(r.status, 400, "{target:?}");
        assert!(c.closed());
    }
    // Encoded line breaks in a query value are data for the handler to judge.
    let mut c = Client::connect(server.local_addr());
    assert_eq!(c.send(get("/x?q=a%0ab")).response().status, 200);
}

#[test]
fn targets_are_passed_on_without_normalising() {
    let server = echo_server();
    let mut c = Client::connect(server.local_addr());
    for target in [
        "http://example.com/healthz",
        "/api/../metrics",
        "/%2e%2e/metrics",
        "/a//b?x=1",
    ] {
        let r = c.send(get(target)).response();
        assert_eq!(r.header("X-Url"), Some(target));
    }
}

#[test]
fn garbage_gets_400() {
    let server = echo_server();
    for req in [
        "NOT HTTP AT ALL\r\n\r\n",
        "GET / HTTP/1.1\r\nBad Header\r\n\r\n",
        "GET / HTTP/2.0\r\n\r\n",
        "GET / HTTP/1.1\r\n folded: no\r\n\r\n",
    ] {
        let mut c = Client::connect(server.local_addr());
        assert_eq!(c.send(req).response().status, 400, "{req:?}");
        assert!(c.closed());
    }
}

#[test]
fn too_many_connections_get_503() {
    let server = start(
        HttpConfig {
            max_connections: 1,
            ..HttpConfig::default()
        },
        echo,
    );
    let mut first = Client::connect(server.local_addr());
    assert_eq!(first.send(get("/")).response().status, 200);
    let mut second = Client::connect(server.local_addr());
    let r = second.response();
    assert_eq!(r.status, 503);
    assert!(second.closed());
    drop(first);
    // The first connection's thread ends; then a new one is served.
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.open_connections() > 0 {
        assert!(Instant::now() < deadline);
        std::thread::yield_now();
    }
    assert_eq!(
        Client::connect(server.local_addr())
            .send(get("/"))
            .response()
            .status,
        200
    );
}

// ---- bodies ----------------------------------------------------------------

#[test]
fn a_declared_length_over_the_limit_is_413_before_reading() {
    let server = echo_server();
    let mut c = Client::connect(server.local_addr());
    // Only the head is sent: the answer must not wait for the body.
    c.send(format!(
        "POST / HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
        LIMIT + 1
    ));
    let r = c.response();
    assert_eq!(r.status, 413);
    assert_eq!(r.header("Connection"), Some("close"));
}

#[test]
fn an_oversized_body_sent_in_full_still_gets_its_413() {
    let server = echo_server();
    let mut c = Client::connect(server.local_addr());
    let body = "x".repeat(512 * 1024);
    c.send(post("/", &body));
    assert_eq!(c.response().status, 413);
}

#[test]
fn chunked_bodies_are_decoded() {
    let server = echo_server();
    let mut c = Client::connect(server.local_addr());
    let r = c
        .send(chunked(
            "5\r\nhello\r\n1;name=value\r\n,\r\nA \r\n world!!!!\r\n0\r\nX-Trailer: t\r\n\r\n",
        ))
        .response();
    assert_eq!((r.status, r.text().as_str()), (200, "hello, world!!!!"));
    // The connection is still usable.
    let r = c.send(chunked("0\r\n\r\n")).response();
    assert_eq!((r.status, r.text().as_str()), (200, ""));
}

#[test]
fn malformed_chunked_bodies_get_400_and_close() {
    let server = echo_server();
    for body in [
        "zz\r\nhello\r\n0\r\n\r\n",    // not hex
        "\r\nhello\r\n0\r\n\r\n",      // no size
        "5\r\nhelloXX0\r\n\r\n",       // no CRLF after the data
        "5\nhello\r\n0\r\n\r\n",       // bare LF
        "fffffffffffffffff\r\n",       // overflows
        "-5\r\nhello\r\n0\r\n\r\n",    // signed
        "0x5\r\nhello\r\n0\r\n\r\n",   // prefixed
        "5 ;x\r\nhello\r\n0\r\n\r\nx", // fine: BWS before ; (checked below)
        "0\r\nno colon\r\n\r\n",       // bad trailer
    ] {
        let mut c = Client::connect(server.local_addr());
        let r = c.send(chunked(body)).response();
        if body.starts_with("5 ;") {
            assert_eq!(r.status, 200, "{body:?}");
            continue;
        }
        assert_eq!(r.status, 400, "{body:?}");
        assert_eq!(r.header("Connection"), Some("close"));
        assert!(c.closed(), "{body:?}");
    }
    // A size line longer than the limit.
    let mut c = Client::connect(server.local_addr());
    let ext = "a".repeat(8 * 1024);
    assert_eq!(
        c.send(chunked(&format!("5;{ext}\r\nhello\r\n0\r\n\r\n")))
            .response()
            .status,
        400
    );
}

#[test]
fn chunked_bodies_over_the_limit_get_413() {
    let server = echo_server();
    let mut c = Client::connect(server.local_addr());
    let chunk = "y".repeat(600);
    let r = c
        .send(chunked(&format!(
            "258\r\n{chunk}\r\n258\r\n{chunk}\r\n0\r\n\r\n"
        )))
        .response();
    assert_eq!(r.status, 413);
    assert!(c.closed());
}

#[test]
fn a_body_cut_short_is_an_io_error() {
    let server = echo_server();
    let mut c = Client::connect(server.local_addr());
    c.send("POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc");
    c.tcp.shutdown(std::net::Shutdown::Write).unwrap();
    assert_eq!(c.response().status, 499);
}

#[test]
fn ambiguous_framing_is_refused() {
    let server = echo_server();
    for (req, status) in [
        (
            "POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
            400,
        ),
        (
            "POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
            400,
        ),
        ("POST / HTTP/1.1\r\nContent-Length: +3\r\n\r\n", 400),
        (
            "POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n",
            400,
        ),
        (
            "POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            501,
        ),
        ("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
        ("POST / HTTP/1.1\r\nExpect: tea\r\n\r\n", 417),
    ] {
        let mut c = Client::connect(server.local_addr());
        assert_eq!(c.send(req).response().status, status, "{req:?}");
        assert!(c.closed());
    }
    // Repeated equal lengths are one length.
    let mut c = Client::connect(server.local_addr());
    let r = c
        .send("POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc")
        .response();
    assert_eq!((r.status, r.text().as_str()), (200, "abc"));
}

#[test]
fn expect_100_continue_is_answered_when_the_body_is_read() {
    let server = echo_server();
    let mut c = Client::connect(server.local_addr());
    c.send("POST / HTTP/1.1\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n");
    let interim = c.response();
    assert_eq!(interim.status, 100);
    let r = c.send("ping").response();
    assert_eq!((r.status, r.text().as_str()), (200, "ping"));

    // Refused on its length: no 100, straight to the answer.
    let mut c = Client::connect(server.local_addr());
    c.send(format!(
        "POST / HTTP/1.1\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n",
        LIMIT * 2
    ));
    assert_eq!(c.response().status, 413);
}

#[test]
fn an_unread_body_closes_the_connection() {
    let server = start(HttpConfig::default(), |req: Request| {
        let _ = req.respond(Response::new(401));
    });
    let mut c = Client::connect(server.local_addr());
    let r = c.send(post("/", "unread")).response();
    assert_eq!((r.status, r.header("Connection")), (401, Some("close")));
    assert!(c.closed());
}

// ---- answers ---------------------------------------------------------------

#[test]
fn a_dropped_request_gets_500() {
    let server = start(HttpConfig::default(), drop);
    let mut c = Client::connect(server.local_addr());
    assert_eq!(c.send(get("/")).response().status, 500);
}

#[test]
fn a_request_answered_on_another_thread_keeps_its_connection() {
    let server = start(HttpConfig::default(), |req: Request| {
        std::thread::spawn(move || {
            let _ = req.respond(Response::new(200).body("later"));
        });
    });
    let mut c = Client::connect(server.local_addr());
    for _ in 0..2 {
        assert_eq!(c.send(get("/")).response().text(), "later");
    }
}

#[test]
fn header_injection_is_refused() {
    let mut r = Response::new(200);
    assert!(r.try_header("X-Ok", "fine\tvalue").is_ok());
    assert!(r.try_header("X-Bad", "a\r\nSet-Cookie: x").is_err());
    assert!(r.try_header("X-Bad", "a\nb").is_err());
    assert!(r.try_header("X-Bad", "a\0b").is_err());
    assert!(r.try_header("Bad Name", "v").is_err());
    assert!(r.try_header("Bad\r\nName", "v").is_err());
    assert!(r.try_header("", "v").is_err());
    let r = r.header("X-Dropped", "a\r\nb");
    assert_eq!(
        r.headers(),
        &[("X-Ok".to_owned(), "fine\tvalue".to_owned())]
    );
    // Framing headers are the server's.
    let r = Response::new(200)
        .header("Content-Length", "999")
        .header("Transfer-Encoding", "chunked")
        .body("ab");
    let bytes = String::from_utf8(r.to_bytes(false, true)).unwrap();
    assert_eq!(
        bytes,
        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nab"
    );
}

#[test]
fn a_response_asking_to_close_closes() {
    let server = start(HttpConfig::default(), |req: Request| {
        let _ = req.respond(Response::new(200).header("Connection", "close"));
    });
    let mut c = Client::connect(server.local_addr());
    assert_eq!(
        c.send(get("/")).response().header("Connection"),
        Some("close")
    );
    assert!(c.closed());
}

// ---- handing the socket over -----------------------------------------------

#[test]
fn into_stream_hands_over_the_socket() {
    let (tx, rx) = bounded::<&'static str>(4);
    let server = start(HttpConfig::default(), move |req: Request| {
        let head = Response::new(200)
            .header("Content-Type", "text/event-stream")
            .body("retry: 2000\n\n");
        let mut stream = req.into_stream(head).unwrap();
        assert_eq!(stream.read_timeout().unwrap(), None);
        stream.write_all(b"data: 1\n\n").unwrap();
        assert!(!peer_closed(&stream));
        tx.send("written").unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while !peer_closed(&stream) {
            assert!(Instant::now() < deadline, "the client's close is seen");
            std::thread::sleep(Duration::from_millis(2));
        }
        tx.send("peer closed").unwrap();
    });
    let mut c = Client::connect(server.local_addr());
    c.send(get("/api/stream"));
    assert_eq!(rx.recv_timeout(Duration::from_secs(5)), Ok("written"));
    while !String::from_utf8_lossy(&c.buf).ends_with("data: 1\n\n") {
        assert!(c.more());
    }
    let text = String::from_utf8_lossy(&c.buf).into_owned();
    assert_eq!(
        text,
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\nretry: 2000\n\ndata: 1\n\n"
    );
    drop(c);
    assert_eq!(rx.recv_timeout(Duration::from_secs(5)), Ok("peer closed"));
}

#[test]
fn long_lived_streams_do_not_hold_up_new_requests() {
    let (tx, rx) = bounded::<()>(100);
    let (release_tx, release_rx) = bounded::<()>(0);
    let server = start(HttpConfig::default(), move |req: Request| {
        if req.url() == "/stream" {
            let mut s = req.into_stream(Response::new(200)).unwrap();
            s.write_all(b"open\n").unwrap();
            tx.send(()).unwrap();
            let _ = release_rx.recv();
        } else {
            let _ = req.respond(Response::new(200).body("quick"));
        }
    });
    let mut streams: Vec<Client> = (0..50)
        .map(|_| {
            let mut c = Client::connect(server.local_addr());
            c.send(get("/stream"));
            c
        })
        .collect();
    for _ in 0..50 {
        rx.recv_timeout(Duration::from_secs(5))
            .expect("every stream is served");
    }
    let started = Instant::now();
    let r = Client::connect(server.local_addr())
        .send(get("/"))
        .response();
    assert_eq!(r.text(), "quick");
    assert!(started.elapsed() < Duration::from_secs(1));
    streams.clear();
    drop(release_tx);
}

#[test]
fn websocket_upgrade_writes_the_handshake_and_hands_over_the_socket() {
    let server = start(HttpConfig::default(), |req: Request| {
        if let Ok(mut s) = req.upgrade_websocket() {
            s.write_all(b"raw after 101").unwrap();
        }
    });
    let mut c = Client::connect(server.local_addr());
    c.send(
        "GET /api/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    );
    while !String::from_utf8_lossy(&c.buf).ends_with("raw after 101") {
        assert!(c.more());
    }
    // RFC 6455 §1.3's example key and accept value.
    assert_eq!(
        String::from_utf8_lossy(&c.buf),
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\nraw after 101"
    );
}

#[test]
fn a_websocket_upgrade_through_tungstenite_works() {
    let server = start(HttpConfig::default(), |req: Request| {
        let stream = req.upgrade_websocket().unwrap();
        let mut ws = tungstenite::WebSocket::from_raw_socket(
            stream,
            tungstenite::protocol::Role::Server,
            None,
        );
        let msg = ws.read().unwrap();
        ws.send(msg).unwrap();
    });
    let (mut ws, _) = tungstenite::connect(format!("ws://{}/ws", server.local_addr())).unwrap();
    ws.send(tungstenite::Message::text("echo")).unwrap();
    assert_eq!(ws.read().unwrap(), tungstenite::Message::text("echo"));
}

#[test]
fn invalid_websocket_upgrades_get_400() {
    let server = start(HttpConfig::default(), |req: Request| {
        assert!(req.upgrade_websocket().is_err());
    });
    for headers in [
        "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n",
        "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: short\r\nSec-WebSocket-Version: 13\r\n",
        "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n",
        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n",
        "Upgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n",
    ] {
        let mut c = Client::connect(server.local_addr());
        let r = c.send(format!("GET /ws HTTP/1.1\r\n{headers}\r\n")).response();
        assert_eq!(r.status, 400, "{headers:?}");
        assert_eq!(r.header("Sec-WebSocket-Version"), Some("13"));
    }
}

// ---- accept loop and shutdown ----------------------------------------------

#[test]
fn accept_errors_never_end_the_loop() {
    use std::io::Error;
    assert_eq!(
        accept_action(&Error::from(ErrorKind::WouldBlock)),
        AcceptAction::Wait
    );
    for kind in [
        ErrorKind::Interrupted,
        ErrorKind::ConnectionAborted,
        ErrorKind::ConnectionReset,
    ] {
        assert_eq!(accept_action(&Error::from(kind)), AcceptAction::Retry);
    }
    #[cfg(target_os = "linux")]
    {
        for errno in [libc::EPROTO, libc::ENETUNREACH, libc::EHOSTUNREACH] {
            assert_eq!(
                accept_action(&Error::from_raw_os_error(errno)),
                AcceptAction::Retry
            );
        }
        for errno in [libc::EMFILE, libc::ENFILE, libc::ENOBUFS, libc::ENOMEM] {
            assert_eq!(
                accept_action(&Error::from_raw_os_error(errno)),
                AcceptAction::BackOff
            );
        }
    }
}

#[test]
fn a_handler_panic_ends_only_its_connection() {
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = calls.clone();
    let server = start(HttpConfig::default(), move |req: Request| {
        if seen.fetch_add(1, Ordering::SeqCst) == 0 {
            panic!("handler bug (expected by the test)");
        }
        let _ = req.respond(Response::new(200));
    });
    let mut c = Client::connect(server.local_addr());
    assert_eq!(c.send(get("/")).response().status, 500);
    let mut c = Client::connect(server.local_addr());
    assert_eq!(c.send(get("/")).response().status, 200);
}

#[test]
fn shutdown_joins_the_acceptor_closes_idle_connections_and_frees_the_port() {
    let (tx, rx) = bounded::<()>(1);
    let (go_tx, go_rx) = bounded::<()>(1);
    let server = start(HttpConfig::default(), move |req: Request| {
        if req.url() == "/slow" {
            tx.send(()).unwrap();
            go_rx.recv().unwrap();
        }
        let _ = req.respond(Response::new(200));
    });
    let addr = server.local_addr();
    let mut idle = Client::connect(addr);
    assert_eq!(idle.send(get("/")).response().status, 200);
    let mut busy = Client::connect(addr);
    busy.send(get("/slow"));
    rx.recv_timeout(Duration::from_secs(5)).unwrap();

    server.shutdown();
    let rebound = TcpListener::bind(addr).expect("the port is free");
    assert!(idle.closed(), "the idle connection is closed");
    go_tx.send(()).unwrap();
    let r = busy.response();
    assert_eq!(r.status, 200, "the request in flight is answered");
    assert_eq!(r.header("Connection"), Some("close"));
    assert!(busy.closed());
    drop(rebound);
}

#[test]
fn requests_can_move_to_other_threads() {
    fn is_send<T: Send>() {}
    is_send::<Request>();
}
