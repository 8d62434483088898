//! The pool on loopback sockets.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::AtomicU64;

use crossbeam_channel::{unbounded, Receiver};

use super::*;
use crate::hub::Delivery;
use crate::live_queue::{self, Producer};

#[derive(Default)]
struct Counts {
    delivered: AtomicU64,
    flushed: AtomicU64,
}

impl PoolObserver for Counts {
    fn delivered(&self, _: Duration) {
        self.delivered.fetch_add(1, Ordering::SeqCst);
    }
    fn flushed(&self, _: Duration) {
        self.flushed.fetch_add(1, Ordering::SeqCst);
    }
}

fn item(text: &str) -> Item {
    Arc::new(Delivery {
        id: None,
        event_type: "t".into(),
        channel_id: None,
        bytes: format!("data: {text}\n\n").into_bytes().into(),
        json: "{}".into(),
        received_at: Instant::now(),
        actor: None,
    })
}

fn config(heartbeat: Duration) -> PoolConfig {
    PoolConfig {
        threads: 2,
        heartbeat,
        ..PoolConfig::default()
    }
}

/// A connected pair: (the client's end, the server's end).
fn pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (server, _) = listener.accept().unwrap();
    server.set_nodelay(true).unwrap();
    (client, server)
}

struct Stream {
    client: TcpStream,
    tx: Producer<Item>,
    ended: Receiver<End>,
}

fn attach(pool: &SsePool, preamble: &str, queued: &[&str]) -> Stream {
    let (client, server) = pair();
    let (tx, rx) = live_queue::bounded(1024);
    for text in queued {
        tx.push(item(text)).unwrap();
    }
    let (end_tx, ended) = unbounded();
    pool.attach(
        server,
        preamble.as_bytes().to_vec(),
        rx,
        Box::new(move |why| {
            let _ = end_tx.send(why);
        }),
    );
    Stream { client, tx, ended }
}

/// Reads until `want` bytes arrived (or the deadline).
fn read_n(client: &mut TcpStream, want: usize, within: Duration) -> Vec<u8> {
    client.set_read_timeout(Some(within)).unwrap();
    let mut out = vec![0u8; want];
    client.read_exact(&mut out).unwrap();
    out
}

fn expect_text(client: &mut TcpStream, text: &str) {
    let got = read_n(client, text.len(), Duration::from_secs(5));
    assert_eq!(String::from_utf8_lossy(&got), text);
}

#[test]
fn preamble_then_items_in_order() {
    let pool = SsePool::new(config(Duration::from_secs(30)), Arc::new(NoObserver)).unwrap();
    let mut s = attach(&pool, "retry: 2000\n\n", &["a", "b"]);
    let mut want = String::from("retry: 2000\n\ndata: a\n\ndata: b\n\n");
    for i in 0..2000 {
        s.tx.push(item(&i.to_string())).unwrap();
        want.push_str(&format!("data: {i}\n\n"));
        if i % 100 == 0 {
            thread::sleep(Duration::from_millis(1));
        }
    }
    expect_text(&mut s.client, &want);
    assert!(s.ended.try_recv().is_err());
    pool.shutdown();
}

#[test]
fn a_backlog_leaves_in_few_writes() {
    let counts = Arc::new(Counts::default());
    let pool = SsePool::new(
        PoolConfig {
            max_batch: 256,
            ..config(Duration::from_secs(30))
        },
        counts.clone(),
    )
    .unwrap();
    let texts: Vec<String> = (0..600).map(|i| i.to_string()).collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let mut s = attach(&pool, "pre\n\n", &refs);
    let want: String = std::iter::once("pre\n\n".to_string())
        .chain(texts.iter().map(|t| format!("data: {t}\n\n")))
        .collect();
    expect_text(&mut s.client, &want);
    let deadline = Instant::now() + Duration::from_secs(5);
    while counts.delivered.load(Ordering::SeqCst) < 600 {
        assert!(Instant::now() < deadline, "every item is reported");
        thread::sleep(Duration::from_millis(5));
    }
    // The preamble and 600 queued items: one write per batch of 256, not per item.
    let writes = counts.flushed.load(Ordering::SeqCst);
    assert!(writes <= 6, "{writes} writes");
    pool.shutdown();
}

#[test]
fn idle_streams_get_pings_on_time() {
    let pool = SsePool::new(config(Duration::from_millis(200)), Arc::new(NoObserver)).unwrap();
    let mut s = attach(&pool, "hi\n\n", &[]);
    expect_text(&mut s.client, "hi\n\n");
    let start = Instant::now();
    for n in 1..=3u32 {
        expect_text(&mut s.client, ": ping\n\n");
        let elapsed = start.elapsed();
        assert!(
            elapsed >= Duration::from_millis(200) * n - Duration::from_millis(20),
            "ping {n} early: {elapsed:?}"
        );
        assert!(
            elapsed <= Duration::from_millis(200) * n + Duration::from_millis(250),
            "ping {n} late: {elapsed:?}"
        );
    }
    // An event resets the interval.
    thread::sleep(Duration::from_millis(100));
    s.tx.push(item("x")).unwrap();
    expect_text(&mut s.client, "data: x\n\n");
    let at = Instant::now();
    expect_text(&mut s.client, ": ping\n\n");
    assert!(
        at.elapsed() >= Duration::from_millis(170),
        "{:?}",
        at.elapsed()
    );
    pool.shutdown();
}

#[test]
fn a_stalled_reader_is_dropped_while_another_keeps_receiving() {
    let pool = SsePool::new(config(Duration::from_secs(30)), Arc::new(NoObserver)).unwrap();
    let stalled = attach(&pool, "", &[]);
    socket2::SockRef::from(&stalled.client)
        .set_recv_buffer_size(4096)
        .unwrap();
    let mut healthy = attach(&pool, "", &[]);
    let big = "x".repeat(4000);
    let reader = {
        let mut client = healthy.client.try_clone().unwrap();
        let big = big.clone();
        thread::spawn(move || {
            for i in 0..2000 {
                expect_text(&mut client, &format!("data: {i}{big}\n\n"));
            }
        })
    };
    let mut stalled_dropped = false;
    for i in 0..2000 {
        let it = item(&format!("{i}{big}"));
        healthy.tx.push(it.clone()).unwrap();
        stalled_dropped |= stalled.tx.push(it).is_err();
        if i % 20 == 0 {
            thread::sleep(Duration::from_millis(2));
        }
    }
    reader.join().unwrap();
    assert_eq!(
        stalled.ended.recv_timeout(Duration::from_secs(5)),
        Ok(End::TooSlow)
    );
    assert!(stalled_dropped, "its queue was closed");
    assert!(healthy.ended.try_recv().is_err());
    healthy.tx.push(item("after")).unwrap();
    expect_text(&mut healthy.client, "data: after\n\n");
    pool.shutdown();
}

#[test]
fn a_closed_client_is_noticed_at_once() {
    let pool = SsePool::new(config(Duration::from_secs(30)), Arc::new(NoObserver)).unwrap();
    let mut s = attach(&pool, "hi\n\n", &[]);
    expect_text(&mut s.client, "hi\n\n");
    let closed = Instant::now();
    drop(s.client);
    assert_eq!(
        s.ended.recv_timeout(Duration::from_secs(5)),
        Ok(End::ClientGone)
    );
    assert!(
        closed.elapsed() < Duration::from_millis(100),
        "{:?}",
        closed.elapsed()
    );
    // The queue was dropped with it.
    assert!(s.tx.push(item("x")).is_err());
    assert_eq!(pool.subscribers(), 0);
    pool.shutdown();
}

#[test]
fn a_queue_closed_by_the_hub_is_flushed_then_ended_too_slow() {
    let pool = SsePool::new(config(Duration::from_secs(30)), Arc::new(NoObserver)).unwrap();
    let mut s = attach(&pool, "", &["1", "2"]);
    drop(s.tx);
    assert_eq!(
        s.ended.recv_timeout(Duration::from_secs(5)),
        Ok(End::TooSlow)
    );
    let mut all = String::new();
    s.client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    s.client.read_to_string(&mut all).unwrap();
    assert_eq!(all, "data: 1\n\ndata: 2\n\n");
    pool.shutdown();
}

#[test]
fn shutdown_ends_every_stream_and_later_attaches() {
    let pool = SsePool::new(config(Duration::from_secs(30)), Arc::new(NoObserver)).unwrap();
    let mut streams: Vec<Stream> = (0..5).map(|_| attach(&pool, "hi\n\n", &[])).collect();
    for s in &mut streams {
        expect_text(&mut s.client, "hi\n\n");
    }
    assert_eq!(pool.subscribers(), 5);
    pool.shutdown();
    for s in &mut streams {
        assert_eq!(s.ended.try_recv(), Ok(End::Shutdown));
        let mut rest = Vec::new();
        s.client.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty());
    }
    let late = attach(&pool, "hi\n\n", &[]);
    assert_eq!(late.ended.try_recv(), Ok(End::Shutdown));
    pool.shutdown();
}

#[test]
fn what_the_client_sends_is_ignored() {
    let pool = SsePool::new(config(Duration::from_secs(30)), Arc::new(NoObserver)).unwrap();
    let mut s = attach(&pool, "hi\n\n", &[]);
    s.client.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    expect_text(&mut s.client, "hi\n\n");
    s.tx.push(item("x")).unwrap();
    expect_text(&mut s.client, "data: x\n\n");
    assert!(s.ended.try_recv().is_err());
    pool.shutdown();
}
