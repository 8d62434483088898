//! The guild models and voice members in Redis, next to the Discord session
//! (CONTRACT.md §10). A gateway that takes over by RESUME never gets
//! GUILD_CREATE (Discord sends it after IDENTIFY only), so without this its
//! voice snapshot and, for `ACCESS=discord` edges, its guild permission models
//! would start empty. The active gateway stores what it knows every
//! [`SAVE_EVERY`] when it changed (fenced like the session: only while the
//! lease names it); a gateway that becomes active loads it into its translator
//! before it resumes, and the replayed dispatches bring it up to date.
//!
//! What is stored is what a `ready` frame carries (guild models in
//! GUILD_CREATE's shape with only the bot's member, and the voice members), so
//! it is read back through the same GUILD_CREATE parsing as Discord's own.
//! Members read by REST are read again on first use, as after a restart.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use log::{info, warn};
use relay_runtime::discord_gateway::SharedTranslator;
use relay_runtime::redis_conn::RedisConn;
use serde_json::{json, Value};

use super::leader::LEASE_KEY;

/// The stored guilds.
pub const GUILDS_KEY: &str = "relay:gateway:guilds";
/// How often the active gateway stores a changed state.
pub const SAVE_EVERY: Duration = Duration::from_secs(2);

/// KEYS[1] lease, KEYS[2] guilds; ARGV[1] owner, ARGV[2] value.
const FENCED_SET: &str = r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[2], ARGV[2])
return 1
";

/// What the translator knows, in the stored shape.
pub fn snapshot(translator: &SharedTranslator) -> Value {
    let t = translator.lock();
    let voice = t.voice_snapshot();
    let guilds: Vec<Value> = t
        .guilds()
        .snapshots()
        .into_iter()
        .map(|mut g| {
            let id = g.get("id").and_then(Value::as_str).unwrap_or_default().to_owned();
            let states: Vec<Value> = voice
                .channels
                .iter()
                .flat_map(|(channel, members)| {
                    members.iter().filter(|m| m.guild_id == id).map(move |m| {
                        json!({
                            "user_id": m.user_id,
                            "channel_id": channel,
                            "member": {"user": {"id": m.user_id, "username": m.username, "avatar": m.avatar}},
                        })
                    })
                })
                .collect();
            if let Value::Object(fields) = &mut g {
                fields.insert("voice_states".into(), Value::Array(states));
            }
            g
        })
        .collect();
    json!({ "guilds": guilds })
}

/// Feeds a stored state to a translator that has no guild yet, as Discord's
/// READY and GUILD_CREATE would; returns how many guilds it read.
pub fn restore(translator: &SharedTranslator, stored: &Value) -> usize {
    let Some(Value::Array(guilds)) = stored.get("guilds") else {
        return 0;
    };
    let mut t = translator.lock();
    if t.guilds().guilds().next().is_some() {
        return 0;
    }
    let bot = guilds
        .iter()
        .find_map(|g| g.get("relay_bot_user_id").and_then(Value::as_str))
        .unwrap_or_default();
    let listed: Vec<Value> = guilds
        .iter()
        .filter_map(|g| g.get("id"))
        .map(|id| json!({"id": id, "unavailable": true}))
        .collect();
    let _ = t.handle_dispatch("READY", &json!({"user": {"id": bot}, "guilds": listed}));
    let mut read = 0;
    for guild in guilds {
        let _ = t.handle_dispatch("GUILD_CREATE", guild);
        if t.take_guild_error().is_none() {
            read += 1;
        }
    }
    read
}

/// Loads the stored state into `translator` (before resuming).
pub fn load_into(conn: &RedisConn, translator: &SharedTranslator) {
    let stored: Result<Option<String>, _> = conn.call("guilds_load", |c| {
        redis::cmd("GET").arg(GUILDS_KEY).query(c)
    });
    match stored {
        Ok(Some(text)) => match serde_json::from_str::<Value>(&text) {
            Ok(v) => {
                let n = restore(translator, &v);
                info!("gateway: {n} guild model(s) and their voice members read from Redis");
            }
            Err(_) => {
                warn!("gateway: the stored guild models could not be read; starting without them")
            }
        },
        Ok(None) => {}
        Err(e) => {
            warn!("gateway: cannot read the stored guild models ({e}); starting without them")
        }
    }
}

/// Stores the translator's state every [`SAVE_EVERY`] while it changes, for
/// one leadership term. Dropping it stops it.
pub struct GuildSaver {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl GuildSaver {
    /// Starts saving as `owner`.
    pub fn spawn(
        conn: Arc<RedisConn>,
        owner: String,
        translator: SharedTranslator,
    ) -> Option<GuildSaver> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let script = redis::Script::new(FENCED_SET);
        let thread = thread::Builder::new()
            .name("relay-guild-save".into())
            .spawn(move || {
                let mut last = String::new();
                while !flag.load(Ordering::SeqCst) {
                    let text = snapshot(&translator).to_string();
                    if text != last {
                        let saved = conn.call("guilds_save", |c| {
                            script
                                .key(LEASE_KEY)
                                .key(GUILDS_KEY)
                                .arg(&owner)
                                .arg(&text)
                                .invoke::<i64>(c)
                        });
                        if matches!(saved, Ok(1)) {
                            last = text;
                        }
                    }
                    thread::park_timeout(SAVE_EVERY);
                }
            })
            .ok()?;
        Some(GuildSaver {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for GuildSaver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}
