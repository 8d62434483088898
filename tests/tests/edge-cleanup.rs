//! 200 rapid SSE reconnects leave nothing behind: the subscriber gauge and the
//! thread count return to where they were (spec US1 scenario 4, edge case
//! "rapid reconnects"). Streams are written by the edge's writer pool, so open
//! streams do not add threads either.

use std::time::{Duration, Instant};

use relay_tests::harness::Harness;
use relay_tests::hostile::threads;

fn gauge(h: &Harness) -> i64 {
    h.metrics.sse_clients()
}

#[test]
fn rapid_reconnects_leak_no_thread_or_subscription() {
    let h = Harness::start_with(|s| s.heartbeat = Duration::from_millis(50));
    let token = h.token("42", &[]);
    // Warm up once so lazily created pools exist before the baseline.
    drop(h.stream(&format!("access_token={token}"), &[]));
    let settle = |target_threads: u64| {
        let deadline = Instant::now() + Duration::from_secs(10);
        while gauge(&h) != 0 || threads() > target_threads {
            assert!(
                Instant::now() < deadline,
                "not cleaned up: {} subscribers, {} threads (baseline {target_threads})",
                gauge(&h),
                threads()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    settle(u64::MAX);
    let baseline = threads();
    for i in 0..200 {
        let mut s = h.stream(&format!("access_token={token}"), &[]);
        if i % 2 == 0 {
            // Half of them read their first items before hanging up.
            s.wait_for("voice.snapshot", Duration::from_secs(5))
                .unwrap();
        }
    }
    // The pool sees the closed sockets; the streams end and unsubscribe.
    settle(baseline);
    assert_eq!(h.metrics.sse_clients(), 0);

    // 100 streams open at once: no thread per stream (the connection threads
    // that served the requests end once the sockets are handed to the pool).
    let mut open = Vec::new();
    for _ in 0..100 {
        let mut s = h.stream(&format!("access_token={token}"), &[]);
        s.wait_for("voice.snapshot", Duration::from_secs(5))
            .unwrap();
        open.push(s);
    }
    assert_eq!(h.metrics.sse_clients(), 100);
    let deadline = Instant::now() + Duration::from_secs(10);
    while threads() > baseline + 4 {
        assert!(
            Instant::now() < deadline,
            "100 open streams hold {} threads (baseline {baseline})",
            threads()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Still served: each gets a heartbeat (50 ms).
    for s in &mut open {
        assert!(s.next_item(Duration::from_secs(5)).is_some());
    }
    drop(open);
    settle(baseline);
    assert_eq!(h.metrics.sse_clients(), 0);
}
