//! Keeps `relay_redis_up` current (CONTRACT.md §10) in every process that
//! uses Redis, edge or gateway, and reconnects after an outage even when
//! nothing else calls Redis.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use log::info;

use crate::metrics::Metrics;

/// How often a process checks on Redis when nothing else calls it.
pub const REDIS_HEALTH_EVERY: Duration = Duration::from_millis(500);

/// Pings Redis every [`REDIS_HEALTH_EVERY`] (which also reconnects after the
/// backoff) and sets `relay_redis_up` from the connection's state.
pub struct RedisHealth {
    stop: Option<crossbeam_channel::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RedisHealth {
    /// Starts the pinging thread; it stops when the value is dropped.
    pub fn spawn(
        conn: Arc<relay_runtime::redis_conn::RedisConn>,
        metrics: Arc<Metrics>,
    ) -> io::Result<RedisHealth> {
        let (stop, stopped) = crossbeam_channel::bounded::<()>(0);
        let thread = std::thread::Builder::new()
            .name("redis-health".into())
            .spawn(move || {
                let mut was_up = true;
                loop {
                    conn.ping();
                    let up = conn.is_up();
                    metrics.set_redis_up(up);
                    if up != was_up {
                        if up {
                            info!("Redis is back: shared state resumes");
                        } else {
                            log::warn!("Redis is down: shared state is this process's own until it is back");
                        }
                        was_up = up;
                    }
                    if !matches!(
                        stopped.recv_timeout(REDIS_HEALTH_EVERY),
                        Err(crossbeam_channel::RecvTimeoutError::Timeout)
                    ) {
                        return;
                    }
                }
            })?;
        Ok(RedisHealth {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for RedisHealth {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
