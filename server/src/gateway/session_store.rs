//! The Discord session in Redis (CONTRACT.md §10): session id, resume URL and
//! the last published sequence number, so whichever gateway holds the lease
//! next RESUMEs where the last one stopped, and Discord replays the rest.
//!
//! Every write is one script that first checks the lease key still names this
//! gateway (fencing): a gateway that lost its lease can never move the stored
//! session under the one that took over. The sequence is written after each
//! dispatch was published to the edges, so a gateway killed between the two
//! makes Discord replay that one dispatch rather than lose it.
//!
//! A write that fails (Redis down) is logged once per outage and skipped: the
//! session goes on, and the next write after Redis is back stores the newest
//! state, which is all a takeover needs.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use log::{info, warn};
use relay_runtime::redis_conn::{RedisConn, RedisFailure};
use relay_runtime::session_store::{SessionStore, StoredSession};

use super::leader::LEASE_KEY;

/// The hash holding `sid`, `url` and `seq`.
pub const SESSION_KEY: &str = "relay:gateway:session";

/// KEYS[1] lease, KEYS[2] session; ARGV[1] owner, ARGV[2] `reset` (delete
/// the hash first) or `set`, then field/value pairs.
const FENCED_WRITE: &str = r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] == 'reset' then redis.call('DEL', KEYS[2]) end
if #ARGV > 2 then redis.call('HSET', KEYS[2], unpack(ARGV, 3)) end
return 1
";

/// See the module docs.
pub struct RedisSessionStore {
    conn: Arc<RedisConn>,
    owner: String,
    script: redis::Script,
    /// A write failed and that was logged; cleared by the next that works.
    failing: AtomicBool,
}

impl RedisSessionStore {
    /// Writes as `owner` (the lease holder's id) through `conn`.
    pub fn new(conn: Arc<RedisConn>, owner: String) -> Self {
        RedisSessionStore {
            conn,
            owner,
            script: redis::Script::new(FENCED_WRITE),
            failing: AtomicBool::new(false),
        }
    }

    fn write(&self, op: &'static str, mode: &str, fields: &[(&str, String)]) {
        let result = self.conn.call(op, |c| {
            let mut inv = self.script.prepare_invoke();
            inv.key(LEASE_KEY)
                .key(SESSION_KEY)
                .arg(&self.owner)
                .arg(mode);
            for (k, v) in fields {
                inv.arg(*k).arg(v);
            }
            inv.invoke::<i64>(c)
        });
        match result {
            Ok(1) => {
                if self.failing.swap(false, Ordering::Relaxed) {
                    info!("gateway: storing the Discord session in Redis again");
                }
            }
            Ok(_) => {
                if !self.failing.swap(true, Ordering::Relaxed) {
                    warn!("gateway: the lease is not ours; the Discord session was not stored");
                }
            }
            Err(e) => {
                if !self.failing.swap(true, Ordering::Relaxed) {
                    warn!("gateway: cannot store the Discord session ({e}); a takeover now would resume an older state");
                }
            }
        }
    }
}

impl SessionStore for RedisSessionStore {
    fn load(&self) -> Option<StoredSession> {
        let fields: Result<Vec<(String, String)>, RedisFailure> =
            self.conn.call("session_load", |c| {
                redis::cmd("HGETALL").arg(SESSION_KEY).query(c)
            });
        let fields = match fields {
            Ok(f) => f,
            Err(e) => {
                warn!("gateway: cannot read the stored Discord session ({e}); identifying anew");
                return None;
            }
        };
        let get = |name: &str| {
            fields
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        Some(StoredSession {
            session_id: get("sid").filter(|s| !s.is_empty())?,
            resume_url: get("url").filter(|u| u.starts_with("wss://") || u.starts_with("ws://")),
            seq: get("seq").and_then(|s| s.parse().ok()),
        })
    }

    fn on_ready(&self, session_id: &str, resume_url: Option<&str>, seq: u64) {
        let mut fields = vec![("sid", session_id.to_owned()), ("seq", seq.to_string())];
        if let Some(url) = resume_url {
            fields.push(("url", url.to_owned()));
        }
        self.write("session_ready", "reset", &fields);
    }

    fn on_sequence(&self, seq: u64) {
        self.write("session_seq", "set", &[("seq", seq.to_string())]);
    }

    fn on_invalidated(&self) {
        self.write("session_reset", "reset", &[]);
    }
}
