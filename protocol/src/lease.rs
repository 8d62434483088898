//! Who runs the Discord session (CONTRACT.md §10): one gateway holds a lease in
//! Redis, the others stand by. This is the decision part, with time passed in;
//! the driver (`server/src/gateway/leader.rs`) does the Redis calls and carries
//! out the changes this returns.
//!
//! # The protocol
//!
//! One Redis key holds the owner's id with a time to live of `lease`. Every
//! attempt, acquiring and renewing alike, is the same compare-and-set script:
//! absent → set it to us; ours → extend it; another's → leave it. So:
//!
//! - a standby tries every `retry` and becomes the leader the first time the
//!   key is absent (the old leader stopped renewing and it expired, or was
//!   released);
//! - the leader renews every `renew` (a third of the lease), and steps down at
//!   once when Redis answers that another holds the key;
//! - a leader that cannot reach Redis **keeps the session**: §10 asks that live
//!   events keep flowing while Redis is down, and nobody else can take over
//!   without Redis either (taking over needs the key to be absent *in Redis*).
//!   When Redis answers again, the same script either extends (or re-creates)
//!   our key, or says another holds it and we step down.
//!
//! Fencing: besides the lease, every write of the Discord session's state is a
//! script that first checks the key names us, so a leader that lost its lease
//! can never move the stored session under the new one.

use std::time::{Duration, Instant};

/// Timings of the lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseConfig {
    /// How long the key lives without renewal (`GATEWAY_LEASE_MS`).
    pub lease: Duration,
    /// How often the leader renews.
    pub renew: Duration,
    /// How often a standby (or a leader that could not reach Redis) tries.
    pub retry: Duration,
}

impl LeaseConfig {
    /// Renew every third of the lease; standbys try every tenth of it, at most
    /// every second, so a takeover comes at most ~1 s after the key expired.
    pub fn new(lease: Duration) -> Self {
        let lease = lease.max(Duration::from_millis(30));
        LeaseConfig {
            lease,
            renew: lease / 3,
            retry: (lease / 10).min(Duration::from_secs(1)),
        }
    }
}

/// What one attempt (acquire or renew) found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    /// The key names us now (set, re-created or extended).
    Held,
    /// Another gateway holds the key.
    HeldByOther,
    /// Redis did not answer.
    Unreachable,
}

/// A change of role the driver must carry out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Start (resume) the Discord session and serve `/link`.
    BecameLeader,
    /// Stop talking to Discord at once (leaving the session resumable) and
    /// answer `/link` with 503.
    SteppedDown,
}

/// See the module docs.
#[derive(Debug, Clone)]
pub struct Lease {
    config: LeaseConfig,
    leader: bool,
    next_attempt: Instant,
    /// The last time Redis confirmed the key was ours.
    confirmed: Option<Instant>,
}

impl Lease {
    /// A standby that tries at once.
    pub fn new(config: LeaseConfig, now: Instant) -> Self {
        Lease {
            config,
            leader: false,
            next_attempt: now,
            confirmed: None,
        }
    }

    /// The timings.
    pub fn config(&self) -> &LeaseConfig {
        &self.config
    }

    /// Whether this process runs the Discord session.
    pub fn is_leader(&self) -> bool {
        self.leader
    }

    /// When the next attempt is due.
    pub fn next_attempt(&self) -> Instant {
        self.next_attempt
    }

    /// Whether an attempt is due at `now`.
    pub fn due(&self, now: Instant) -> bool {
        now >= self.next_attempt
    }

    /// When Redis last confirmed the lease (the leader's own clock).
    pub fn confirmed_at(&self) -> Option<Instant> {
        self.confirmed
    }

    /// The outcome of the attempt sent at `sent` and answered at `now`.
    pub fn handle_attempt(
        &mut self,
        sent: Instant,
        now: Instant,
        outcome: Attempt,
    ) -> Option<Change> {
        match outcome {
            Attempt::Held => {
                // Counted from when the request left: the key may have been
                // set at any moment after that.
                self.confirmed = Some(sent);
                self.next_attempt = later(sent, self.config.renew);
                if self.leader {
                    None
                } else {
                    self.leader = true;
                    Some(Change::BecameLeader)
                }
            }
            Attempt::HeldByOther => {
                self.confirmed = None;
                self.next_attempt = later(now, self.config.retry);
                if self.leader {
                    self.leader = false;
                    Some(Change::SteppedDown)
                } else {
                    None
                }
            }
            Attempt::Unreachable => {
                // Keep whatever role we have (see the module docs); try again soon.
                self.next_attempt = later(now, self.config.retry);
                None
            }
        }
    }

    /// The process is stopping on purpose: the driver releases the key (only if
    /// it is still ours) so a standby takes over without waiting for it to expire.
    pub fn release(&mut self) -> Option<Change> {
        self.confirmed = None;
        if self.leader {
            self.leader = false;
            Some(Change::SteppedDown)
        } else {
            None
        }
    }
}

fn later(now: Instant, d: Duration) -> Instant {
    now.checked_add(d).unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[allow(clippy::disallowed_methods)] // the one clock read: an origin for hand-driven time
    fn origin() -> Instant {
        Instant::now()
    }

    #[test]
    fn timings_follow_the_lease() {
        let c = LeaseConfig::new(ms(3000));
        assert_eq!((c.renew, c.retry), (ms(1000), ms(300)));
        let c = LeaseConfig::new(ms(60_000));
        assert_eq!((c.renew, c.retry), (ms(20_000), ms(1000)));
    }

    #[test]
    fn a_standby_becomes_leader_once_and_renews_on_schedule() {
        let t0 = origin();
        let mut l = Lease::new(LeaseConfig::new(ms(3000)), t0);
        assert!(l.due(t0) && !l.is_leader());
        assert_eq!(l.handle_attempt(t0, t0 + ms(5), Attempt::HeldByOther), None);
        assert_eq!(l.next_attempt(), t0 + ms(305));
        let t1 = t0 + ms(305);
        assert_eq!(
            l.handle_attempt(t1, t1 + ms(2), Attempt::Held),
            Some(Change::BecameLeader)
        );
        assert!(l.is_leader());
        assert_eq!(l.confirmed_at(), Some(t1));
        assert_eq!(l.next_attempt(), t1 + ms(1000));
        assert!(!l.due(t1 + ms(999)));
        assert_eq!(
            l.handle_attempt(t1 + ms(1000), t1 + ms(1001), Attempt::Held),
            None
        );
    }

    #[test]
    fn a_leader_steps_down_when_another_holds_the_key() {
        let t0 = origin();
        let mut l = Lease::new(LeaseConfig::new(ms(3000)), t0);
        l.handle_attempt(t0, t0, Attempt::Held);
        assert_eq!(
            l.handle_attempt(t0 + ms(1000), t0 + ms(1001), Attempt::HeldByOther),
            Some(Change::SteppedDown)
        );
        assert!(!l.is_leader());
        assert_eq!(l.confirmed_at(), None);
    }

    #[test]
    fn a_leader_keeps_the_session_while_redis_is_unreachable() {
        let t0 = origin();
        let mut l = Lease::new(LeaseConfig::new(ms(3000)), t0);
        l.handle_attempt(t0, t0, Attempt::Held);
        // Far past the lease: still leader, retrying every `retry`.
        let late = t0 + ms(60_000);
        assert_eq!(l.handle_attempt(late, late, Attempt::Unreachable), None);
        assert!(l.is_leader());
        assert_eq!(l.next_attempt(), late + ms(300));
        // A standby stays a standby.
        let mut s = Lease::new(LeaseConfig::new(ms(3000)), t0);
        assert_eq!(s.handle_attempt(t0, t0, Attempt::Unreachable), None);
        assert!(!s.is_leader());
    }

    #[test]
    fn release_steps_a_leader_down_once() {
        let t0 = origin();
        let mut l = Lease::new(LeaseConfig::new(ms(3000)), t0);
        assert_eq!(l.release(), None);
        l.handle_attempt(t0, t0, Attempt::Held);
        assert_eq!(l.release(), Some(Change::SteppedDown));
        assert_eq!(l.release(), None);
    }

    fn attempt() -> impl Strategy<Value = Attempt> {
        prop_oneof![
            Just(Attempt::Held),
            Just(Attempt::HeldByOther),
            Just(Attempt::Unreachable)
        ]
    }

    proptest! {
        /// Changes alternate (never two BecameLeader in a row), the role
        /// matches the last change, and the next attempt is never later than
        /// one renew period after the confirmation.
        #[test]
        fn changes_alternate_and_match_the_role(
            steps in proptest::collection::vec((attempt(), 0u64..5000), 1..60),
            lease in 30u64..20_000,
        ) {
            let t0 = origin();
            let config = LeaseConfig::new(ms(lease));
            let mut l = Lease::new(config, t0);
            let mut now = t0;
            let mut leader = false;
            for (outcome, wait) in steps {
                let sent = now;
                now += ms(wait);
                match l.handle_attempt(sent, now, outcome) {
                    Some(Change::BecameLeader) => { prop_assert!(!leader); leader = true; }
                    Some(Change::SteppedDown) => { prop_assert!(leader); leader = false; }
                    None => {}
                }
                prop_assert_eq!(l.is_leader(), leader);
                if outcome == Attempt::Held {
                    prop_assert!(leader);
                    prop_assert_eq!(l.next_attempt(), sent + config.renew);
                }
                if outcome == Attempt::HeldByOther {
                    prop_assert!(!leader);
                }
            }
        }
    }
}
