//! Shared event ids (CONTRACT.md §10, docs/redis.md): with `REDIS_URL` the
//! gateway gives each event it broadcasts its id, `<epoch>-<seq>`, so every
//! edge shows the same id and any edge can answer a `Last-Event-ID`, and
//! appends the event to the shared log in Redis on its own thread.
//!
//! The numbering continues the log: at start (and on takeover) the gateway
//! reads the epoch and the last seq from Redis and goes on from there. When
//! Redis cannot be read at that moment it starts a new epoch of its own
//! (the start time in ms, above any epoch it knows): ids stay unique and
//! increasing, and clients of the old epoch get `stream.reset` `epoch`.
//! While the gateway runs, ids never wait for Redis: they are assigned under
//! the link's fan-out lock and the append follows (see `LogAppender`).

use std::sync::Arc;

use log::{info, warn};
use parking_lot::Mutex;
use relay_protocol::replay::EventId;
use relay_runtime::link_server::EventStamper;
use relay_runtime::redis_conn::RedisConn;
use relay_runtime::redis_shared::{self, LogAppender, LogPosition};

/// Assigns shared ids and feeds the log appender.
pub struct SharedEventIds {
    next: Mutex<EventId>,
    appender: LogAppender,
}

impl SharedEventIds {
    /// Continues the log in Redis (or starts a new epoch when it cannot be
    /// read) and starts the appender; the log keeps `capacity` events.
    pub fn start(conn: Arc<RedisConn>, capacity: usize) -> std::io::Result<Arc<SharedEventIds>> {
        let start = match redis_shared::read_position(&conn) {
            Ok(Some(LogPosition { epoch, last_seq })) => {
                info!("shared event ids continue epoch {epoch} after seq {last_seq}");
                EventId::new(epoch, last_seq + 1)
            }
            Ok(None) => {
                let epoch = relay_runtime::clock::unix_ms();
                info!("shared event ids start epoch {epoch}");
                EventId::new(epoch, 1)
            }
            Err(e) => {
                let epoch = relay_runtime::clock::unix_ms();
                warn!("shared event ids: cannot read the log ({e}); starting epoch {epoch}");
                EventId::new(epoch, 1)
            }
        };
        let appender = LogAppender::spawn(conn, capacity)?;
        Ok(Arc::new(SharedEventIds {
            next: Mutex::new(start),
            appender,
        }))
    }
}

impl SharedEventIds {
    /// On becoming the active gateway: a standby started numbering from the log
    /// as it was then, and the last leader went on after that, so continue
    /// after the log's last entry again (never backwards). Without an answer
    /// from Redis, a new epoch keeps ids unique and increasing.
    pub fn continue_log(&self, conn: &RedisConn) {
        let mut next = self.next.lock();
        match redis_shared::read_position(conn) {
            Ok(Some(LogPosition { epoch, last_seq })) => {
                let after = EventId::new(epoch, last_seq + 1);
                if (after.epoch, after.seq) > (next.epoch, next.seq) {
                    info!("shared event ids: taking over, continuing epoch {epoch} after seq {last_seq}");
                    *next = after;
                }
            }
            Ok(None) => {}
            Err(e) => {
                let epoch = relay_runtime::clock::unix_ms().max(next.epoch + 1);
                warn!("shared event ids: cannot read the log on takeover ({e}); starting epoch {epoch}");
                *next = EventId::new(epoch, 1);
            }
        }
    }
}

impl EventStamper for SharedEventIds {
    fn next_id(&self) -> EventId {
        let mut next = self.next.lock();
        let id = *next;
        next.seq += 1;
        id
    }

    fn sent(&self, id: EventId, frame: &Arc<str>) {
        self.appender.append(id, frame.clone());
    }
}
