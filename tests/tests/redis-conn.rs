//! `RedisConn` against a real redis-server: answers while it runs, fails fast
//! with `Down` (never hangs past its deadline) when it is killed, and comes
//! back by itself when it restarts.

use std::time::{Duration, Instant};

use relay_runtime::redis_conn::{RedisConn, RedisFailure};
use relay_tests::redis_server::RedisServer;

fn incr(conn: &RedisConn) -> Result<i64, RedisFailure> {
    conn.call("incr", |c| {
        redis::cmd("INCR").arg("relay:test:n").query::<i64>(c)
    })
}

#[test]
fn survives_redis_dying_and_rejoins_when_it_returns() {
    let mut server = RedisServer::start();
    let timeout = Duration::from_millis(300);
    let conn = RedisConn::open(&server.url(), timeout).expect("valid url");
    assert_eq!(incr(&conn), Ok(1));
    assert!(conn.is_up());

    // A wrong-type reply is the request's fault, not Redis being down.
    let reply = conn.call("lpush", |c| {
        redis::cmd("LPUSH")
            .arg("relay:test:n")
            .arg("x")
            .query::<i64>(c)
    });
    assert!(matches!(reply, Err(RedisFailure::Reply(_))), "{reply:?}");
    assert!(conn.is_up());

    server.kill();
    let started = Instant::now();
    assert!(matches!(incr(&conn), Err(RedisFailure::Down(_))));
    assert!(!conn.is_up());
    assert!(
        started.elapsed() < timeout * 3,
        "a dead Redis costs at most the deadline: {:?}",
        started.elapsed()
    );

    server.restart();
    // The connection retries after its backoff (≤ 2 s); the first success is the signal.
    let deadline = Instant::now() + Duration::from_secs(5);
    let value = loop {
        match incr(&conn) {
            Ok(v) => break v,
            Err(RedisFailure::Down(_)) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50))
            }
            Err(e) => panic!("redis did not come back: {e}"),
        }
    };
    assert_eq!(value, 1, "the restarted server is empty (persistence off)");
    assert!(conn.is_up());
}
