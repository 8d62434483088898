//! The lease driver (CONTRACT.md §10): one thread, its own Redis connection
//! (so a renewal never waits behind a slow session write), carrying out
//! [`relay_protocol::lease::Lease`]'s decisions.
//!
//! Acquiring and renewing are the same compare-and-set script (absent → ours,
//! ours → extended, another's → untouched), so a leader whose key vanished
//! (Redis restarted empty) takes it back unless someone else already has it.
//! On a graceful stop the key is deleted only if it is still ours, so a
//! standby takes over at its next try instead of after the lease.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Instant;

use log::{info, warn};
use relay_protocol::lease::{Attempt, Change, Lease, LeaseConfig};
use relay_runtime::redis_conn::{RedisConn, RedisFailure};

/// The key naming the gateway that runs the Discord session.
pub const LEASE_KEY: &str = "relay:gateway:lease";

/// KEYS[1] lease; ARGV[1] owner, ARGV[2] lease ms. 1: ours now; 0: another's.
const ACQUIRE_OR_RENEW: &str = r"
local v = redis.call('GET', KEYS[1])
if v == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
elseif v == false then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
";

/// KEYS[1] lease; ARGV[1] owner.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
";

/// Carries out a change of role. Runs on the lease thread, so it may block
/// (starting or stopping the Discord driver); renewals wait meanwhile, which
/// the lease's two thirds of slack after each renewal allow for.
pub type OnChange = Box<dyn FnMut(Change) + Send>;

/// The running lease thread. Dropping it stops it (releasing the lease).
pub struct Leader {
    stop: Arc<AtomicBool>,
    abandon: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Leader {
    /// Starts trying for the lease at once as `owner`.
    pub fn spawn(
        conn: RedisConn,
        owner: String,
        config: LeaseConfig,
        on_change: OnChange,
    ) -> std::io::Result<Leader> {
        let stop = Arc::new(AtomicBool::new(false));
        let abandon = Arc::new(AtomicBool::new(false));
        let (flag, abandoned) = (stop.clone(), abandon.clone());
        let thread = thread::Builder::new()
            .name("relay-lease".into())
            .spawn(move || run(&conn, &owner, config, on_change, &flag, &abandoned))?;
        Ok(Leader {
            stop,
            abandon,
            thread: Some(thread),
        })
    }

    /// Stops renewing without releasing or stepping down, as if the process
    /// died (tests of takeover); joins the thread.
    pub fn abandon(&mut self) {
        self.abandon.store(true, Ordering::SeqCst);
        self.stop();
    }

    /// Releases the lease if held (after the change handler stepped down) and
    /// joins the thread.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

impl Drop for Leader {
    fn drop(&mut self) {
        self.stop();
    }
}

fn run(
    conn: &RedisConn,
    owner: &str,
    config: LeaseConfig,
    mut on_change: OnChange,
    stop: &AtomicBool,
    abandon: &AtomicBool,
) {
    let acquire = redis::Script::new(ACQUIRE_OR_RENEW);
    let release = redis::Script::new(RELEASE);
    let lease_ms = u64::try_from(config.lease.as_millis()).unwrap_or(u64::MAX);
    let mut lease = Lease::new(config, Instant::now());
    let mut unreachable_logged = false;
    while !stop.load(Ordering::SeqCst) {
        let now = Instant::now();
        if lease.due(now) {
            let answer = conn.call("lease", |c| {
                acquire
                    .key(LEASE_KEY)
                    .arg(owner)
                    .arg(lease_ms)
                    .invoke::<i64>(c)
            });
            let outcome = match answer {
                Ok(1) => Attempt::Held,
                Ok(_) => Attempt::HeldByOther,
                Err(RedisFailure::Down(why)) => {
                    if !unreachable_logged {
                        warn!(
                            "gateway: Redis unreachable for the lease ({why}); {}",
                            if lease.is_leader() {
                                "keeping the Discord session until Redis says another gateway holds it"
                            } else {
                                "standing by"
                            }
                        );
                        unreachable_logged = true;
                    }
                    Attempt::Unreachable
                }
                Err(RedisFailure::Reply(why)) => {
                    warn!("gateway: the lease script failed: {why}");
                    Attempt::Unreachable
                }
            };
            if outcome != Attempt::Unreachable && unreachable_logged {
                info!("gateway: Redis reachable again for the lease");
                unreachable_logged = false;
            }
            if let Some(change) = lease.handle_attempt(now, Instant::now(), outcome) {
                match change {
                    Change::BecameLeader => {
                        info!("gateway: lease acquired; this gateway runs the Discord session")
                    }
                    Change::SteppedDown => {
                        warn!("gateway: another gateway holds the lease; stepping down to standby")
                    }
                }
                on_change(change);
            }
        }
        let wait = lease
            .next_attempt()
            .saturating_duration_since(Instant::now());
        if !wait.is_zero() {
            thread::park_timeout(wait);
        }
    }
    if abandon.load(Ordering::SeqCst) {
        return;
    }
    if let Some(change) = lease.release() {
        on_change(change);
        let released = conn.call("lease_release", |c| {
            release.key(LEASE_KEY).arg(owner).invoke::<i64>(c)
        });
        match released {
            Ok(1) => info!("gateway: lease released"),
            Ok(_) => {}
            Err(e) => warn!(
                "gateway: could not release the lease ({e}); a standby takes over when it expires"
            ),
        }
    }
}
