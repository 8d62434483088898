//! The Redis side of relay's shared state (CONTRACT.md §10, docs/redis.md):
//! the shared event log (the gateway appends, edges read back) and the shared
//! token buckets (one Lua script per check). The rules live in `protocol`
//! (`shared_log`, `bucket`); this module only talks to Redis, every call
//! bounded by [`RedisConn`]'s deadline, and never on a fan-out path.

use std::collections::VecDeque;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use log::{info, warn};
use redis::Value;
use relay_protocol::bucket::{Decision, LimitConfig, Scope};
use relay_protocol::replay::EventId;
use relay_protocol::shared_log::{self, RawEntry, EPOCH_KEY, FRAME_FIELD};

use crate::redis_conn::{RedisConn, RedisFailure};

// ---------------------------------------------------------------------------
// The shared event log: reading.

/// Reads the entries of `after`'s epoch from `after` itself (inclusive, so
/// [`shared_log::frames_after`] can tell whether the client's event is held)
/// on, at most `count + 1` of them.
pub fn read_after(
    conn: &RedisConn,
    after: EventId,
    count: usize,
) -> Result<Vec<RawEntry>, RedisFailure> {
    let start = if after.seq == 0 {
        "-".to_owned()
    } else {
        shared_log::stream_id(after.seq)
    };
    let reply: Value = conn.call("xrange", |c| {
        redis::cmd("XRANGE")
            .arg(shared_log::stream_key(after.epoch))
            .arg(start)
            .arg("+")
            .arg("COUNT")
            .arg(count.saturating_add(1))
            .query(c)
    })?;
    entries_of(reply)
        .ok_or_else(|| RedisFailure::Reply("XRANGE reply of an unexpected shape".into()))
}

/// `[[id, [field, value, …]], …]` → entries; `None` for any other shape.
fn entries_of(reply: Value) -> Option<Vec<RawEntry>> {
    let Value::Array(items) = reply else {
        return None;
    };
    items
        .into_iter()
        .map(|item| {
            let Value::Array(mut parts) = item else {
                return None;
            };
            if parts.len() != 2 {
                return None;
            }
            let fields = parts.pop()?;
            let id = bytes_of(parts.pop()?)?;
            let Value::Array(flat) = fields else {
                return None;
            };
            let mut pairs = Vec::with_capacity(flat.len() / 2);
            let mut flat = flat.into_iter();
            while let Some(name) = flat.next() {
                pairs.push((bytes_of(name)?, bytes_of(flat.next()?)?));
            }
            Some((id, pairs))
        })
        .collect()
}

fn bytes_of(v: Value) -> Option<Vec<u8>> {
    match v {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.into_bytes()),
        _ => None,
    }
}

// ---------------------------------------------------------------------------
// The shared event log: writing (the active gateway).

/// Where the shared numbering stands: the epoch and the last seq appended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogPosition {
    /// The epoch events are numbered in.
    pub epoch: u64,
    /// The seq of the last event in the log (0: none).
    pub last_seq: u64,
}

/// Reads where the log stands: the epoch in `relay:events:epoch` and the
/// last entry of its stream. `Ok(None)` when there is no log to continue
/// (no epoch yet, or its stream is gone).
pub fn read_position(conn: &RedisConn) -> Result<Option<LogPosition>, RedisFailure> {
    let epoch: Option<String> = conn.call("sync", |c| redis::cmd("GET").arg(EPOCH_KEY).query(c))?;
    let Some(epoch) = epoch.and_then(|e| e.parse::<u64>().ok()) else {
        return Ok(None);
    };
    let last = last_seq(conn, epoch)?;
    Ok(last.map(|last_seq| LogPosition { epoch, last_seq }))
}

fn last_seq(conn: &RedisConn, epoch: u64) -> Result<Option<u64>, RedisFailure> {
    let reply: Value = conn.call("sync", |c| {
        redis::cmd("XREVRANGE")
            .arg(shared_log::stream_key(epoch))
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .query(c)
    })?;
    let entries = entries_of(reply).unwrap_or_default();
    Ok(entries
        .first()
        .and_then(|(id, _)| shared_log::parse_stream_id(id)))
}

/// Most events waiting for Redis while it is away; older ones are dropped
/// (a hole in the log, which readers see as `gap`).
pub const APPEND_BACKLOG: usize = 16_384;
/// Most entries sent in one pipelined round trip.
const APPEND_BATCH: usize = 256;
/// How long a stopping gateway keeps trying to append what it numbered.
const FINAL_FLUSH: Duration = Duration::from_secs(3);
/// How long an old epoch's stream stays after the numbering moved on.
const OLD_EPOCH_TTL_MS: u64 = 3_600_000;

/// Appends each stamped event to the log on its own thread, so the gateway's
/// broadcast never waits for Redis. While Redis is away events wait (up to
/// [`APPEND_BACKLOG`]) and go out, in order, once it is back.
pub struct LogAppender {
    tx: Option<Sender<(EventId, Arc<str>)>>,
    thread: Option<JoinHandle<()>>,
}

impl LogAppender {
    /// Starts the appender thread; the log keeps the last `capacity` events.
    pub fn spawn(conn: Arc<RedisConn>, capacity: usize) -> std::io::Result<LogAppender> {
        let (tx, rx) = crossbeam_channel::unbounded();
        let thread = std::thread::Builder::new()
            .name("redis-log-append".into())
            .spawn(move || run_appender(&conn, capacity.max(1), &rx))?;
        Ok(LogAppender {
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    /// Queues one event for the log (never blocks).
    pub fn append(&self, id: EventId, frame: Arc<str>) {
        if let Some(tx) = &self.tx {
            let _ = tx.send((id, frame));
        }
    }
}

impl Drop for LogAppender {
    fn drop(&mut self) {
        // Closing the channel ends the thread after one last flush attempt.
        drop(self.tx.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run_appender(conn: &RedisConn, capacity: usize, rx: &Receiver<(EventId, Arc<str>)>) {
    let mut pending: VecDeque<(EventId, Arc<str>)> = VecDeque::new();
    // After a failure (or at start) the log is read before writing: entries
    // a half-done batch already wrote are not written twice, and the epoch
    // pointer is set again (a restarted Redis is empty).
    let mut synced_epoch: Option<u64> = None;
    let mut dropped = 0u64;
    loop {
        let wait = if pending.is_empty() {
            Duration::from_secs(3600)
        } else {
            Duration::from_millis(100)
        };
        match rx.recv_timeout(wait) {
            Ok(item) => pending.push_back(item),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                // A gateway shutting down hands over what it numbered: a
                // successor continues after the log's last entry, so try
                // (bounded) to leave none behind.
                let deadline = std::time::Instant::now() + FINAL_FLUSH;
                while !pending.is_empty() && std::time::Instant::now() < deadline {
                    if flush(conn, capacity, &mut pending, &mut synced_epoch).is_err() {
                        synced_epoch = None;
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
                if !pending.is_empty() {
                    warn!(
                        "shared event log: {} events never reached Redis before shutdown",
                        pending.len()
                    );
                }
                return;
            }
        }
        pending.extend(rx.try_iter());
        while pending.len() > APPEND_BACKLOG {
            pending.pop_front();
            dropped += 1;
        }
        if dropped > 0 && synced_epoch.is_some() {
            warn!("shared event log: {dropped} events never reached Redis (a gap for readers)");
            dropped = 0;
        }
        if flush(conn, capacity, &mut pending, &mut synced_epoch).is_err() {
            synced_epoch = None;
        }
    }
}

fn flush(
    conn: &RedisConn,
    capacity: usize,
    pending: &mut VecDeque<(EventId, Arc<str>)>,
    synced_epoch: &mut Option<u64>,
) -> Result<(), RedisFailure> {
    while let Some((first, _)) = pending.front() {
        let epoch = first.epoch;
        if *synced_epoch != Some(epoch) {
            sync(conn, epoch, pending)?;
            *synced_epoch = Some(epoch);
            continue;
        }
        let mut pipe = redis::pipe();
        let mut n = 0;
        for (id, frame) in pending.iter().take(APPEND_BATCH) {
            if id.epoch != epoch {
                break;
            }
            pipe.cmd("XADD")
                .arg(shared_log::stream_key(epoch))
                .arg("MAXLEN")
                .arg(capacity)
                .arg(shared_log::stream_id(id.seq))
                .arg(FRAME_FIELD)
                .arg(frame.as_bytes())
                .ignore();
            n += 1;
        }
        match conn.call("xadd", |c| pipe.query::<()>(c)) {
            Ok(()) => {
                pending.drain(..n);
            }
            Err(RedisFailure::Reply(why)) => {
                // An id at or below the stream's top: another writer went
                // ahead (a takeover). These events stay out of the log.
                warn!("shared event log: Redis refused {n} entries: {why}");
                pending.drain(..n);
                *synced_epoch = None;
            }
            Err(down) => return Err(down),
        }
    }
    Ok(())
}

/// Points `relay:events:epoch` at `epoch`, lets the previous epoch's stream
/// expire, and drops pending entries the log already holds.
fn sync(
    conn: &RedisConn,
    epoch: u64,
    pending: &mut VecDeque<(EventId, Arc<str>)>,
) -> Result<(), RedisFailure> {
    let previous: Option<String> = conn.call("sync", |c| {
        redis::cmd("SET")
            .arg(EPOCH_KEY)
            .arg(epoch)
            .arg("GET")
            .query(c)
    })?;
    if let Some(old) = previous.and_then(|p| p.parse::<u64>().ok()) {
        if old != epoch {
            info!("shared event log: numbering moved from epoch {old} to {epoch}");
            let _: Result<i64, _> = conn.call("sync", |c| {
                redis::cmd("PEXPIRE")
                    .arg(shared_log::stream_key(old))
                    .arg(OLD_EPOCH_TTL_MS)
                    .query(c)
            });
        }
    }
    if let Some(top) = last_seq(conn, epoch)? {
        while pending
            .front()
            .is_some_and(|(id, _)| id.epoch == epoch && id.seq <= top)
        {
            pending.pop_front();
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Shared token buckets.

/// Both buckets of a check in one atomic step, on Redis's clock (`TIME`), so
/// edges with skewed clocks still share one bucket. Levels are kept in
/// microseconds-worth units: one token is `window` in µs, each elapsed µs
/// adds `refill` units (the protocol's `bucket.rs` in µs instead of ns).
/// Returns `{0, 0}` (taken from every key) or `{i, wait_µs}`: key `i` (1 =
/// user when it is empty) and the wait until every key holds a token.
const LIMIT_SCRIPT: &str = r"
local token = tonumber(ARGV[1])
local refill = tonumber(ARGV[2])
local cap = tonumber(ARGV[3])
local ttl = tonumber(ARGV[4])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local levels, froms = {}, {}
local worst, which = 0, 0
for i, key in ipairs(KEYS) do
  local v = redis.call('HMGET', key, 'u', 't')
  local u, at = tonumber(v[1]), tonumber(v[2])
  if u == nil or at == nil then u = cap; at = now end
  local from = math.max(at, now)
  local level = math.min(cap, u + refill * (from - at))
  levels[i], froms[i] = level, from
  if level < token then
    local wait = (from - now) + math.ceil((token - level) / refill)
    if which == 0 then which = i end
    if wait > worst then worst = wait end
  end
end
if which > 0 then return {which, worst} end
for i, key in ipairs(KEYS) do
  redis.call('HSET', key, 'u', string.format('%.0f', levels[i] - token), 't', string.format('%.0f', froms[i]))
  redis.call('PEXPIRE', key, ttl)
end
return {0, 0}
";

/// Bucket arithmetic in µs for the script; `None` when the numbers would
/// leave the range Lua's doubles hold exactly (the edge then keeps its
/// buckets local).
#[derive(Debug, Clone, Copy)]
struct ScriptRate {
    token: u64,
    refill: u64,
    cap: u64,
    ttl_ms: u64,
}

impl ScriptRate {
    fn new(cfg: &LimitConfig) -> Option<ScriptRate> {
        let token = u64::try_from(cfg.window.as_micros()).ok()?.max(1);
        let refill = u64::from(cfg.refill).max(1);
        let cap = token.checked_mul(u64::from(cfg.burst))?;
        // 2^53: the largest integer a double holds exactly; leave room for
        // `u + refill × elapsed` and for µs timestamps (≈ 2^51 today).
        if cap > 1 << 50 {
            return None;
        }
        let ttl_ms = cap.div_ceil(refill).div_ceil(1000) + 1000;
        Some(ScriptRate {
            token,
            refill,
            cap,
            ttl_ms,
        })
    }
}

/// Token buckets in Redis, shared by every edge (keys `relay:rl:<kind>:<key>`).
pub struct RedisLimiter {
    conn: Arc<RedisConn>,
    script: redis::Script,
    rate: ScriptRate,
    op: &'static str,
    user_prefix: &'static str,
    channel_prefix: &'static str,
}

impl RedisLimiter {
    /// The command buckets (user × channel) with `cfg`; `None` when `cfg`
    /// cannot be computed exactly in Lua.
    pub fn commands(conn: Arc<RedisConn>, cfg: &LimitConfig) -> Option<RedisLimiter> {
        Some(RedisLimiter {
            conn,
            script: redis::Script::new(LIMIT_SCRIPT),
            rate: ScriptRate::new(cfg)?,
            op: "limit",
            user_prefix: "relay:rl:u:",
            channel_prefix: "relay:rl:c:",
        })
    }

    /// The history read buckets (per user only).
    pub fn reads(conn: Arc<RedisConn>, cfg: &LimitConfig) -> Option<RedisLimiter> {
        Some(RedisLimiter {
            conn,
            script: redis::Script::new(LIMIT_SCRIPT),
            rate: ScriptRate::new(cfg)?,
            op: "read_limit",
            user_prefix: "relay:rl:r:",
            channel_prefix: "relay:rl:rc:",
        })
    }

    /// The connection (for `is_up`).
    pub fn conn(&self) -> &Arc<RedisConn> {
        &self.conn
    }

    /// Takes a token from `user`'s and `channel`'s buckets when both have
    /// one (`channel: None`: the user's alone), as `bucket::RateLimiter::check`.
    pub fn check(&self, user: &str, channel: Option<&str>) -> Result<Decision, RedisFailure> {
        let mut keys = vec![format!("{}{user}", self.user_prefix)];
        if let Some(channel) = channel {
            keys.push(format!("{}{channel}", self.channel_prefix));
        }
        let rate = self.rate;
        let (which, wait_us): (i64, i64) = self.conn.call(self.op, |c| {
            let mut invocation = self.script.prepare_invoke();
            for key in &keys {
                invocation.key(key);
            }
            invocation
                .arg(rate.token)
                .arg(rate.refill)
                .arg(rate.cap)
                .arg(rate.ttl_ms)
                .invoke(c)
        })?;
        Ok(match which {
            0 => Decision::Allowed,
            i => Decision::Limited {
                scope: if i == 1 { Scope::User } else { Scope::Channel },
                retry_after: Duration::from_micros(wait_us.max(1) as u64),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_of_other_shapes_are_refused() {
        assert_eq!(entries_of(Value::Nil), None);
        assert_eq!(entries_of(Value::Array(vec![Value::Int(1)])), None);
        let good = Value::Array(vec![Value::Array(vec![
            Value::BulkString(b"3-0".to_vec()),
            Value::Array(vec![
                Value::BulkString(b"f".to_vec()),
                Value::BulkString(b"{}".to_vec()),
            ]),
        ])]);
        assert_eq!(
            entries_of(good),
            Some(vec![(
                b"3-0".to_vec(),
                vec![(b"f".to_vec(), b"{}".to_vec())]
            )])
        );
        let odd = Value::Array(vec![Value::Array(vec![
            Value::BulkString(b"3-0".to_vec()),
            Value::Array(vec![Value::BulkString(b"f".to_vec())]),
        ])]);
        assert_eq!(entries_of(odd), None);
    }

    #[test]
    fn script_rates_stay_exact_in_doubles() {
        let r = ScriptRate::new(&LimitConfig::default()).unwrap();
        assert_eq!((r.token, r.refill, r.cap), (5_000_000, 5, 50_000_000));
        assert_eq!(r.ttl_ms, 10_000 + 1000);
        let huge = LimitConfig {
            burst: u32::MAX,
            refill: 1,
            window: Duration::from_secs(3600),
        };
        assert!(ScriptRate::new(&huge).is_none());
    }
}
