//! One Redis (or Valkey) connection with a deadline on every call.
//!
//! CONTRACT.md §10 asks that Redis down or slow be a degraded mode, never an
//! outage. So every call here is bounded: connecting and each read and write
//! wait at most `timeout`, and after a failure the connection is dropped and
//! not retried before a short backoff (100 ms doubling to 2 s), so a dead
//! Redis costs callers a fast `Err`, not a timeout each. The first call after
//! the backoff reconnects by itself; [`RedisConn::is_up`] says how the last
//! attempt went, for `/readyz` and `relay_redis_up`.
//!
//! Calls are serialised on one connection (a mutex): a caller that must not
//! wait behind another (the gateway's lease renewal behind a slow read, say)
//! opens its own [`RedisConn`].
//!
//! The URL may carry a password: it is never logged or put in an error;
//! [`RedisConn::shown_url`] is the URL with any password replaced by `***`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use redis::{Client, Connection, RedisError, RedisResult};

/// The first wait before reconnecting after a failure; doubles up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(100);
/// The longest wait between reconnect attempts while Redis stays down.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Why a call did not get an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisFailure {
    /// No connection: refused, timed out, dropped, or waiting out the backoff.
    /// The caller falls back (local buckets, local replay) and carries on.
    Down(String),
    /// Redis answered with an error (a script error, a wrong type): the
    /// connection is fine, the request was not.
    Reply(String),
}

impl std::fmt::Display for RedisFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RedisFailure::Down(why) => write!(f, "redis unavailable: {why}"),
            RedisFailure::Reply(why) => write!(f, "redis error reply: {why}"),
        }
    }
}

impl std::error::Error for RedisFailure {}

/// Called after every call with its name, how long it took and whether it got an answer.
pub type OpObserver = Box<dyn Fn(&'static str, Duration, bool) + Send + Sync>;

/// See the module docs.
pub struct RedisConn {
    client: Client,
    shown: String,
    timeout: Duration,
    state: Mutex<State>,
    up: AtomicBool,
    observer: Option<OpObserver>,
}

struct State {
    conn: Option<Connection>,
    /// While `Some` and in the future, calls fail fast instead of reconnecting.
    retry_at: Option<Instant>,
    backoff: Duration,
}

impl RedisConn {
    /// Checks the URL (`redis://`, `rediss://`, `unix://`); connects on first use.
    /// The error never quotes the URL, which may hold a password.
    pub fn open(url: &str, timeout: Duration) -> Result<Self, String> {
        let client =
            Client::open(url).map_err(|e| format!("is not a valid Redis URL ({:?})", e.kind()))?;
        Ok(RedisConn {
            client,
            shown: shown_url(url),
            timeout,
            state: Mutex::new(State {
                conn: None,
                retry_at: None,
                backoff: MIN_BACKOFF,
            }),
            // Unknown until the first call; optimistic so a process does not
            // report degraded before it has tried.
            up: AtomicBool::new(true),
            observer: None,
        })
    }

    /// Reports every call (for `relay_redis_op_seconds{op}`).
    pub fn with_observer(mut self, observer: OpObserver) -> Self {
        self.observer = Some(observer);
        self
    }

    /// The URL with any password replaced by `***`, for logs.
    pub fn shown_url(&self) -> &str {
        &self.shown
    }

    /// The deadline of each connect, read and write.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Whether the last attempt reached Redis.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// `PING`: a health check that also reconnects after the backoff.
    pub fn ping(&self) -> bool {
        self.call("ping", |c| redis::cmd("PING").query::<String>(c))
            .is_ok()
    }

    /// Runs `f` on the connection, connecting first if needed. `op` names the
    /// call in metrics. Connection-level failures drop the connection and
    /// start the backoff; an error reply leaves it in place.
    pub fn call<T>(
        &self,
        op: &'static str,
        f: impl FnOnce(&mut Connection) -> RedisResult<T>,
    ) -> Result<T, RedisFailure> {
        let started = Instant::now();
        let result = self.call_inner(f);
        if let Some(observe) = &self.observer {
            observe(op, started.elapsed(), result.is_ok());
        }
        result
    }

    fn call_inner<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> RedisResult<T>,
    ) -> Result<T, RedisFailure> {
        let mut state = self.state.lock();
        if state.conn.is_none() {
            if let Some(at) = state.retry_at {
                if Instant::now() < at {
                    return Err(RedisFailure::Down("waiting to reconnect".into()));
                }
            }
            match self.connect() {
                Ok(conn) => state.conn = Some(conn),
                Err(e) => {
                    self.failed(&mut state);
                    return Err(RedisFailure::Down(describe(&e)));
                }
            }
        }
        let conn = state.conn.as_mut().expect("connected above");
        match f(conn) {
            Ok(value) => {
                state.retry_at = None;
                state.backoff = MIN_BACKOFF;
                self.up.store(true, Ordering::Relaxed);
                Ok(value)
            }
            Err(e) if is_connection_failure(&e) => {
                // A timed-out reply may still arrive later on this socket and
                // would answer the next call: never reuse it.
                state.conn = None;
                self.failed(&mut state);
                Err(RedisFailure::Down(describe(&e)))
            }
            Err(e) => {
                self.up.store(true, Ordering::Relaxed);
                Err(RedisFailure::Reply(describe(&e)))
            }
        }
    }

    fn connect(&self) -> RedisResult<Connection> {
        let conn = self.client.get_connection_with_timeout(self.timeout)?;
        conn.set_read_timeout(Some(self.timeout))?;
        conn.set_write_timeout(Some(self.timeout))?;
        Ok(conn)
    }

    fn failed(&self, state: &mut State) {
        self.up.store(false, Ordering::Relaxed);
        state.retry_at = Some(Instant::now() + state.backoff);
        state.backoff = (state.backoff * 2).min(MAX_BACKOFF);
    }
}

fn is_connection_failure(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_timeout()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_unrecoverable_error()
}

/// The error's kind and text; redis-rs never puts the URL in an error.
fn describe(e: &RedisError) -> String {
    relay_protocol::sanitize::sanitize(&e.to_string(), 200).into_owned()
}

/// `redis://user:secret@host:6379/0` → `redis://user:***@host:6379/0`.
fn shown_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "(redis url)".into();
    };
    let (authority, tail) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or("", |(u, _)| u);
            format!("{scheme}://{user}:***@{host}{tail}")
        }
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn shown_url_hides_the_password_only() {
        assert_eq!(
            shown_url("redis://127.0.0.1:6379/0"),
            "redis://127.0.0.1:6379/0"
        );
        assert_eq!(shown_url("redis://:pw@h:1"), "redis://:***@h:1");
        assert_eq!(shown_url("rediss://u:p@ss@h:1/2"), "rediss://u:***@h:1/2");
        assert_eq!(shown_url("nonsense"), "(redis url)");
    }

    #[test]
    fn a_bad_url_is_refused_without_quoting_it() {
        let err = RedisConn::open("http://user:hunter2@x", Duration::from_millis(50))
            .err()
            .unwrap();
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn nobody_listening_fails_fast_then_backs_off() {
        // A port that was just free: connecting is refused at once.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let conn = RedisConn::open(
            &format!("redis://127.0.0.1:{port}"),
            Duration::from_millis(200),
        )
        .unwrap();
        assert!(conn.is_up(), "optimistic before the first call");
        assert!(matches!(
            conn.call("ping", |c| redis::cmd("PING").query::<String>(c)),
            Err(RedisFailure::Down(_))
        ));
        assert!(!conn.is_up());
        // Within the backoff the next call does not even try.
        let second = conn.call("ping", |c| redis::cmd("PING").query::<String>(c));
        assert_eq!(
            second,
            Err(RedisFailure::Down("waiting to reconnect".into()))
        );
    }
}
