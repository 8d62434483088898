//! `requestId` replies shared through Redis (CONTRACT.md §10): a command that
//! an edge re-sends to another gateway after a takeover runs once.
//!
//! The link server's in-process [`ReplyCache`](relay_protocol::dedupe::ReplyCache)
//! still answers re-sends to the same gateway; this executor sits behind it,
//! so it sees each `requestId` once per gateway:
//!
//! 1. `SET relay:gateway:reply:<id> pending NX PX 60000`: the first gateway to
//!    claim the id runs the command and then stores its reply (kept 10 minutes,
//!    as long as the in-process cache keeps one);
//! 2. a gateway that finds the claim taken reads the key until the reply is
//!    there (at most [`PENDING_WAIT`]) and answers with it; if the runner
//!    never finishes (it died mid-call) it answers `error` `gateway_busy`,
//!    and the command is only run again once the claim expired;
//! 3. Redis down: the command runs (as without Redis); commands are not held
//!    up by Redis, and only a re-send to *another* gateway during the outage
//!    could run twice (for `sendMessage` Discord's nonce still stops a second post).
//!
//! Reads (`fetchMessages`) are not commands with effects and skip all this.

use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use log::warn;
use relay_protocol::frame::{GatewayCommand, Reply};
use relay_protocol::payload::CommandBody;
use relay_runtime::link_server::CommandExecutor;
use relay_runtime::redis_conn::{RedisConn, RedisFailure};
use serde_json::{json, Value};

/// Key prefix of stored replies.
pub const REPLY_PREFIX: &str = "relay:gateway:reply:";
/// How long a claim lives if its runner never stores a reply.
const CLAIM_TTL: Duration = Duration::from_secs(60);
/// How long a stored reply is kept.
const REPLY_TTL: Duration = relay_protocol::dedupe::DEFAULT_TTL;
/// How long a re-send waits for another gateway's run to finish: under the
/// edge's default reply timeout (5 s).
pub const PENDING_WAIT: Duration = Duration::from_secs(4);
const PENDING_POLL: Duration = Duration::from_millis(25);
const PENDING: &str = "pending";

/// See the module docs.
pub struct SharedReplies {
    inner: Arc<dyn CommandExecutor>,
    conn: Arc<RedisConn>,
}

impl SharedReplies {
    /// Shares `inner`'s replies through `conn`.
    pub fn new(inner: Arc<dyn CommandExecutor>, conn: Arc<RedisConn>) -> Self {
        SharedReplies { inner, conn }
    }

    fn wait_for_reply(&self, key: &str) -> Reply {
        let deadline = Instant::now() + PENDING_WAIT;
        loop {
            let stored: Result<Option<String>, RedisFailure> = self
                .conn
                .call("reply_get", |c| redis::cmd("GET").arg(key).query(c));
            match stored {
                Ok(Some(text)) if text != PENDING => {
                    return decode(&text).unwrap_or_else(|| Reply::Error {
                        code: "gateway_error".into(),
                        message: "the stored reply of this request could not be read".into(),
                    })
                }
                // Claimed and running, or the claim just expired: keep looking
                // until the deadline.
                Ok(_) | Err(RedisFailure::Down(_)) | Err(RedisFailure::Reply(_)) => {}
            }
            if Instant::now() >= deadline {
                return Reply::Error {
                    code: "gateway_busy".into(),
                    message: "this request is still running on another gateway; try again".into(),
                };
            }
            thread::sleep(PENDING_POLL);
        }
    }
}

impl CommandExecutor for SharedReplies {
    fn execute(&self, command: &GatewayCommand) -> Reply {
        if matches!(command.body, CommandBody::FetchMessages(_)) {
            return self.inner.execute(command);
        }
        let key = format!("{REPLY_PREFIX}{}", command.request_id());
        let claim: Result<Option<String>, RedisFailure> = self.conn.call("reply_claim", |c| {
            redis::cmd("SET")
                .arg(&key)
                .arg(PENDING)
                .arg("NX")
                .arg("PX")
                .arg(millis(CLAIM_TTL))
                .query(c)
        });
        match claim {
            Ok(Some(_)) => {}
            Ok(None) => return self.wait_for_reply(&key),
            Err(e) => {
                warn!(
                    "gateway: cannot claim request {} in Redis ({e}); running it here",
                    command.request_id()
                );
                return self.inner.execute(command);
            }
        }
        let reply = self.inner.execute(command);
        let stored = self.conn.call("reply_store", |c| {
            redis::cmd("SET")
                .arg(&key)
                .arg(encode(&reply))
                .arg("PX")
                .arg(millis(REPLY_TTL))
                .query::<()>(c)
        });
        if let Err(e) = stored {
            warn!(
                "gateway: cannot store the reply of request {} in Redis ({e})",
                command.request_id()
            );
        }
        reply
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A reply as stored: a small JSON object. `Messages` (reads) never is.
pub fn encode(reply: &Reply) -> String {
    match reply {
        Reply::Ack => json!({"t": "ack"}),
        Reply::RateLimited {
            retry_after_ms,
            global,
        } => json!({"t": "rateLimited", "ms": retry_after_ms, "global": global}),
        Reply::Error { code, message } => json!({"t": "error", "code": code, "message": message}),
        Reply::Messages(_) => {
            json!({"t": "error", "code": "gateway_error", "message": "a read has no shared reply"})
        }
    }
    .to_string()
}

/// A stored reply; `None` for anything [`encode`] does not write.
pub fn decode(text: &str) -> Option<Reply> {
    let v: Value = serde_json::from_str(text).ok()?;
    let text_field = |name: &str| v.get(name)?.as_str().map(str::to_owned);
    match v.get("t")?.as_str()? {
        "ack" => Some(Reply::Ack),
        "rateLimited" => Some(Reply::RateLimited {
            retry_after_ms: v.get("ms")?.as_u64()?,
            global: v.get("global")?.as_bool()?,
        }),
        "error" => Some(Reply::Error {
            code: text_field("code")?,
            message: text_field("message")?,
        }),
        _ => None,
    }
}

/// Fuzz entry: any bytes decode to a reply or `None`, never a panic, and what
/// decodes encodes back to the same reply.
#[cfg(any(test, feature = "fuzzing"))]
pub fn fuzz_stored_reply(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(reply) = decode(text) {
        assert_eq!(decode(&encode(&reply)), Some(reply));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn replies_round_trip() {
        for reply in [
            Reply::Ack,
            Reply::RateLimited {
                retry_after_ms: 1200,
                global: true,
            },
            Reply::Error {
                code: "discord_error".into(),
                message: "Missing Access \"x\"".into(),
            },
        ] {
            assert_eq!(decode(&encode(&reply)), Some(reply));
        }
    }

    #[test]
    fn junk_and_claims_are_not_replies() {
        for text in [
            PENDING,
            "",
            "{}",
            r#"{"t":"rateLimited","ms":-1,"global":true}"#,
            r#"{"t":"messages"}"#,
            "[1]",
        ] {
            assert_eq!(decode(text), None, "{text}");
        }
    }

    proptest! {
        #[test]
        fn any_bytes_are_read_safely(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            fuzz_stored_reply(&data);
        }

        #[test]
        fn any_error_round_trips(code in ".{0,40}", message in ".{0,200}", ms in any::<u64>(), global in any::<bool>()) {
            fuzz_stored_reply(encode(&Reply::Error { code, message }).as_bytes());
            fuzz_stored_reply(encode(&Reply::RateLimited { retry_after_ms: ms, global }).as_bytes());
        }
    }
}
