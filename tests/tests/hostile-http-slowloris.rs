//! Slowloris: clients that trickle a request head one byte a second. Each
//! holds one connection thread, not one of the HTTP workers, so while 50 of
//! them trickle for 12 s every other client keeps being served: `/healthz`
//! within 1 s throughout, then a live SSE event and a command reply. Whether
//! and when the edge times the tricklers out is printed; the bound it should
//! enforce is in hostile-http-gaps.rs.txt.

use std::time::{Duration, Instant};

use crossbeam_channel::RecvTimeoutError;
use relay_tests::hostile::{assert_healthz, assert_still_serving, start, RawConn};

const TRICKLERS: usize = 50;
const TRICKLE_FOR: Duration = Duration::from_secs(12);

#[test]
fn tricklers_do_not_slow_other_clients() {
    let h = start();
    let head =
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: 0123456789abcdef0123456789abcdef\r\n\r\n";
    let (done_tx, done) = crossbeam_channel::unbounded();
    let addr = h.addr;
    let tricklers: Vec<_> = (0..TRICKLERS)
        .map(|_| {
            let done_tx = done_tx.clone();
            std::thread::spawn(move || {
                let mut c = RawConn::connect(addr);
                let started = Instant::now();
                // One byte, then wait a second for the edge to close us; never
                // the last bytes of the head within the bound.
                for b in head.iter().take(head.len() - 2) {
                    if c.send(&[*b]).is_err() || c.closed_within(Duration::from_secs(1)) {
                        let _ = done_tx.send(Some(started.elapsed()));
                        return;
                    }
                    if started.elapsed() >= TRICKLE_FOR {
                        break;
                    }
                }
                let _ = done_tx.send(None);
            })
        })
        .collect();
    drop(done_tx);

    // Meanwhile, every second: /healthz within 1 s. The pace comes from the
    // tricklers' reports (recv_timeout), not a sleep.
    let mut finished = Vec::new();
    let mut checks = 0;
    while finished.len() < TRICKLERS {
        match done.recv_timeout(Duration::from_secs(1)) {
            Ok(outcome) => finished.push(outcome),
            Err(RecvTimeoutError::Timeout) => {
                assert_healthz(&h, Duration::from_secs(1), "tricklers at work");
                checks += 1;
            }
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    tricklers.into_iter().for_each(|t| t.join().unwrap());
    let closed: Vec<_> = finished.iter().flatten().collect();
    eprintln!(
        "{} of {TRICKLERS} tricklers were closed by the edge (after {:?}); the rest were \
         still held after {TRICKLE_FOR:?}; {checks} /healthz checks passed meanwhile",
        closed.len(),
        closed.iter().max()
    );
    assert!(checks >= 8, "only {checks} checks ran");
    assert_still_serving(&h, "50 tricklers");
}
