//! Token buckets and the user × channel keyed limiter (CONTRACT.md §3 "Rate limits").
//!
//! A command needs a token from its user's bucket and from its channel's bucket,
//! and takes one from each only when both have one. Buckets refill continuously.
//!
//! Levels are kept in exact integers, never floats: one token is `window` worth
//! of nanoseconds ("units"), and every elapsed nanosecond adds `refill` units.
//! With that scale the refill is exact, so "at most `burst + refill × t / window`
//! takes in any span `t`" holds without slack, and a `retry_after` is the exact
//! nanosecond a token appears.
//!
//! A full bucket behaves exactly like an absent one, so the limiter forgets full
//! buckets (eviction) and holds only keys that took a token recently; this is
//! what keeps memory bounded under millions of distinct users.

use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, Instant};

use crate::backoff::nanos_to_duration;

/// Bucket parameters: `burst` tokens at most, `refill` tokens added per `window`.
///
/// The fields are public so a config loader can build it; use [`LimitConfig::new`]
/// or [`LimitConfig::validate`] to reject values that cannot make a bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitConfig {
    /// Capacity: the most tokens a bucket holds, and the size of a burst.
    pub burst: u32,
    /// Tokens added per `window`, spread evenly over it.
    pub refill: u32,
    /// The span over which `refill` tokens are added.
    pub window: Duration,
}

impl Default for LimitConfig {
    /// The contract's defaults: burst 10, refill 5 per 5 s (one token a second).
    fn default() -> Self {
        Self {
            burst: 10,
            refill: 5,
            window: Duration::from_secs(5),
        }
    }
}

impl LimitConfig {
    /// A validated config.
    pub fn new(burst: u32, refill: u32, window: Duration) -> Result<Self, LimitConfigError> {
        let cfg = Self {
            burst,
            refill,
            window,
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks that a bucket can be built: `burst ≥ 1`, `refill ≥ 1`, `window > 0`.
    pub fn validate(&self) -> Result<(), LimitConfigError> {
        if self.burst == 0 {
            return Err(LimitConfigError::ZeroBurst);
        }
        if self.refill == 0 {
            return Err(LimitConfigError::ZeroRefill);
        }
        if self.window.is_zero() {
            return Err(LimitConfigError::ZeroWindow);
        }
        Ok(())
    }
}

/// Why a [`LimitConfig`] was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitConfigError {
    /// `burst` is 0: no call could ever pass.
    ZeroBurst,
    /// `refill` is 0: a drained bucket would never recover.
    ZeroRefill,
    /// `window` is 0: the refill rate would be infinite.
    ZeroWindow,
}

impl fmt::Display for LimitConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::ZeroBurst => "rate limit burst must be at least 1",
            Self::ZeroRefill => "rate limit refill must be at least 1",
            Self::ZeroWindow => "rate limit window must be longer than zero",
        })
    }
}

impl std::error::Error for LimitConfigError {}

/// A validated [`LimitConfig`] in units (see the module docs).
#[derive(Debug, Clone, Copy)]
struct Rate {
    /// Units in one token: the window in nanoseconds.
    token: u128,
    /// Units added per elapsed nanosecond.
    refill: u128,
    /// Units in a full bucket.
    cap: u128,
    /// How long an empty bucket takes to become full; a bucket untouched this
    /// long is full, whatever it held.
    fill_time: Duration,
}

impl Rate {
    fn new(cfg: &LimitConfig) -> Result<Self, LimitConfigError> {
        cfg.validate()?;
        // window ≤ Duration::MAX ≈ 1.8e28 ns and burst, refill < 2^32, so every
        // product below stays far under u128::MAX (≈ 3.4e38).
        let token = cfg.window.as_nanos();
        let refill = u128::from(cfg.refill);
        let cap = token * u128::from(cfg.burst);
        Ok(Self {
            token,
            refill,
            cap,
            fill_time: nanos_to_duration(cap.div_ceil(refill)),
        })
    }

    /// Time until `units` grow to one token; `None` when one is there already.
    fn wait(&self, units: u128) -> Option<Duration> {
        let missing = self.token.checked_sub(units).filter(|m| *m > 0)?;
        // Rounded up, so at `now + wait` the token is there and one nanosecond
        // earlier it is not.
        Some(nanos_to_duration(missing.div_ceil(self.refill)))
    }
}

/// The stored state of one bucket: its level at instant `at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Level {
    units: u128,
    at: Instant,
}

impl Level {
    fn full(rate: &Rate, at: Instant) -> Self {
        Self {
            units: rate.cap,
            at,
        }
    }

    /// Units at `now`. An instant before `at` sees the level at `at`: time
    /// running backwards neither panics nor mints tokens.
    fn units_at(&self, rate: &Rate, now: Instant) -> u128 {
        let elapsed = now.saturating_duration_since(self.at).as_nanos();
        self.units
            .saturating_add(rate.refill.saturating_mul(elapsed))
            .min(rate.cap)
    }

    /// Removes one token at `now`; the caller has checked there is one.
    fn take(&mut self, rate: &Rate, now: Instant) {
        let units = self.units_at(rate, now);
        debug_assert!(units >= rate.token);
        self.units = units.saturating_sub(rate.token);
        // Never move `at` backwards: refilling from an earlier instant again
        // would count the same time twice.
        self.at = self.at.max(now);
    }

    /// Time from `now` until a token is there (zero when one is).
    fn wait_from(&self, rate: &Rate, now: Instant) -> Duration {
        let from = self.at.max(now);
        let lag = from.saturating_duration_since(now);
        rate.wait(self.units_at(rate, from))
            .map_or(Duration::ZERO, |w| lag.saturating_add(w))
    }
}

/// One continuously refilled token bucket. Starts full.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: Rate,
    level: Level,
}

impl TokenBucket {
    /// A full bucket as of `now`.
    pub fn new(cfg: LimitConfig, now: Instant) -> Result<Self, LimitConfigError> {
        let rate = Rate::new(&cfg)?;
        Ok(Self {
            rate,
            level: Level::full(&rate, now),
        })
    }

    /// Takes one token, or returns the exact wait until one whole token is there.
    pub fn try_take(&mut self, now: Instant) -> Result<(), Duration> {
        let wait = self.level.wait_from(&self.rate, now);
        if wait.is_zero() {
            self.level.take(&self.rate, now);
            Ok(())
        } else {
            Err(wait)
        }
    }

    /// Tokens held at `now`, fractions included. For display and metrics; the
    /// decisions use exact integers.
    pub fn available(&self, now: Instant) -> f64 {
        self.level.units_at(&self.rate, now) as f64 / self.rate.token as f64
    }

    /// Whether the bucket is full at `now` (then it is as good as a new one).
    pub fn is_full(&self, now: Instant) -> bool {
        self.level.units_at(&self.rate, now) >= self.rate.cap
    }
}

/// Which bucket refused a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// The caller's own bucket (keyed by the session `sub`).
    User,
    /// The target's bucket (keyed by `channelId`, or `guildId` for voice commands).
    Channel,
}

/// The outcome of a rate-limit check.
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// A token was taken from both buckets; go ahead.
    Allowed,
    /// Nothing was taken.
    Limited {
        /// The empty bucket; [`Scope::User`] when both are.
        scope: Scope,
        /// The exact wait until both buckets hold a token.
        retry_after: Duration,
    },
}

impl Decision {
    /// Whether the call may proceed.
    pub fn is_allowed(&self) -> bool {
        matches!(self, Self::Allowed)
    }
}

/// A user × channel rate limiter. [`KeyedLimiter`] keeps its buckets in memory;
/// a shared store (Redis) can implement this when several edges share limits.
pub trait RateLimiter {
    /// Takes a token from `user`'s and `channel`'s buckets when both have one,
    /// else takes nothing and says which one is empty and for how long.
    fn check(&mut self, user: &str, channel: &str, now: Instant) -> Decision;
}

/// Below this many buckets the limiter never sweeps for size.
const SWEEP_FLOOR: usize = 1024;

/// In-memory buckets per user key and per channel key, sharing one config.
///
/// Only buckets that are not full are held: a missing key is a full bucket.
/// `check` sweeps out full buckets once a full refill time has passed since the
/// last sweep, and whenever the number held has doubled since then, so each
/// sweep is paid for by the checks before it, and what is held at any time is
/// at most the keys that took a token in the last two refill times.
#[derive(Debug, Clone)]
pub struct KeyedLimiter {
    rate: Rate,
    users: HashMap<String, Level>,
    channels: HashMap<String, Level>,
    /// The latest instant seen. Earlier instants are treated as this one, so a
    /// bucket evicted as full can never look non-full to a later, earlier-stamped call.
    latest: Option<Instant>,
    last_sweep: Option<Instant>,
    /// Sweep once more than this many buckets are held.
    sweep_above: usize,
    /// Whether `check` sweeps by itself; tests turn it off to show that
    /// eviction never changes a decision.
    auto_sweep: bool,
}

impl KeyedLimiter {
    /// An empty limiter.
    pub fn new(cfg: LimitConfig) -> Result<Self, LimitConfigError> {
        Ok(Self {
            rate: Rate::new(&cfg)?,
            users: HashMap::new(),
            channels: HashMap::new(),
            latest: None,
            last_sweep: None,
            sweep_above: SWEEP_FLOOR,
            auto_sweep: true,
        })
    }

    /// Buckets held, users and channels together.
    pub fn len(&self) -> usize {
        self.users.len() + self.channels.len()
    }

    /// Whether no bucket is held (every key has a full bucket).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Tokens `key`'s bucket in `scope` holds at `now` (`burst` when not held).
    pub fn tokens(&self, scope: Scope, key: &str, now: Instant) -> f64 {
        let now = self.latest.map_or(now, |l| l.max(now));
        let map = match scope {
            Scope::User => &self.users,
            Scope::Channel => &self.channels,
        };
        let units = map
            .get(key)
            .map_or(self.rate.cap, |l| l.units_at(&self.rate, now));
        units as f64 / self.rate.token as f64
    }

    /// Drops every bucket that is full at `now`; returns how many were dropped.
    /// Never changes a decision: a full bucket and a missing one behave alike.
    pub fn evict_idle(&mut self, now: Instant) -> usize {
        let now = self.observe(now);
        self.sweep(now)
    }

    /// Like [`RateLimiter::check`] with the user's bucket only: reads have a
    /// per-user limit and no channel limit (CONTRACT.md §9).
    pub fn check_user(&mut self, user: &str, at: Instant) -> Decision {
        let now = self.observe(at);
        let due = self.auto_sweep
            && self
                .last_sweep
                .is_none_or(|s| now.saturating_duration_since(s) >= self.rate.fill_time);
        if due {
            self.sweep(now);
        }
        let wait = Self::wait(&self.users, &self.rate, user, now);
        if !wait.is_zero() {
            return Decision::Limited {
                scope: Scope::User,
                retry_after: now.saturating_duration_since(at).saturating_add(wait),
            };
        }
        Self::take(&mut self.users, &self.rate, user, now);
        if self.auto_sweep && self.len() > self.sweep_above {
            self.sweep(now);
        }
        Decision::Allowed
    }

    /// Moves the high-water mark and returns the instant to compute with.
    fn observe(&mut self, now: Instant) -> Instant {
        let now = self.latest.map_or(now, |l| l.max(now));
        self.latest = Some(now);
        now
    }

    fn sweep(&mut self, now: Instant) -> usize {
        let before = self.len();
        let rate = self.rate;
        for map in [&mut self.users, &mut self.channels] {
            map.retain(|_, level| level.units_at(&rate, now) < rate.cap);
            // `retain` keeps the table's capacity; give it back after a burst
            // of one-off keys so memory follows what is held, not the peak.
            if map.capacity() > SWEEP_FLOOR && map.capacity() > 4 * map.len() {
                map.shrink_to(2 * map.len());
            }
        }
        self.last_sweep = Some(now);
        self.sweep_above = SWEEP_FLOOR.max(2 * self.len());
        before - self.len()
    }

    fn take(map: &mut HashMap<String, Level>, rate: &Rate, key: &str, now: Instant) {
        match map.get_mut(key) {
            Some(level) => level.take(rate, now),
            None => {
                let mut level = Level::full(rate, now);
                level.take(rate, now);
                map.insert(key.to_owned(), level);
            }
        }
    }

    fn wait(map: &HashMap<String, Level>, rate: &Rate, key: &str, now: Instant) -> Duration {
        map.get(key)
            .map_or(Duration::ZERO, |level| level.wait_from(rate, now))
    }
}

impl RateLimiter for KeyedLimiter {
    fn check(&mut self, user: &str, channel: &str, at: Instant) -> Decision {
        // Waits are measured from the caller's instant, the levels from the
        // high-water mark; `wait_from` adds the gap between the two.
        let now = self.observe(at);
        let due = self.auto_sweep
            && self
                .last_sweep
                .is_none_or(|s| now.saturating_duration_since(s) >= self.rate.fill_time);
        if due {
            self.sweep(now);
        }

        let lag = now.saturating_duration_since(at);
        let user_wait = Self::wait(&self.users, &self.rate, user, now);
        let channel_wait = Self::wait(&self.channels, &self.rate, channel, now);
        if !user_wait.is_zero() || !channel_wait.is_zero() {
            let scope = if user_wait.is_zero() {
                Scope::Channel
            } else {
                Scope::User
            };
            return Decision::Limited {
                scope,
                retry_after: lag.saturating_add(user_wait.max(channel_wait)),
            };
        }

        Self::take(&mut self.users, &self.rate, user, now);
        Self::take(&mut self.channels, &self.rate, channel, now);
        if self.auto_sweep && self.len() > self.sweep_above {
            self.sweep(now);
        }
        Decision::Allowed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashSet;

    #[allow(clippy::disallowed_methods)] // the one clock read: an origin for hand-driven time
    fn t0() -> Instant {
        Instant::now()
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn limiter(cfg: LimitConfig) -> KeyedLimiter {
        KeyedLimiter::new(cfg).expect("valid config")
    }

    /// Exact units held by `key` at `now` (a missing key is a full bucket).
    fn units(lim: &KeyedLimiter, scope: Scope, key: &str, now: Instant) -> u128 {
        let map = match scope {
            Scope::User => &lim.users,
            Scope::Channel => &lim.channels,
        };
        map.get(key)
            .map_or(lim.rate.cap, |l| l.units_at(&lim.rate, now))
    }

    #[test]
    fn defaults_allow_ten_then_wait_one_second() {
        assert_eq!(
            LimitConfig::default(),
            LimitConfig::new(10, 5, Duration::from_secs(5)).unwrap()
        );
        let mut lim = limiter(LimitConfig::default());
        let t = t0();
        for i in 0..10 {
            assert_eq!(lim.check("u", "c", t), Decision::Allowed, "call {i}");
        }
        // Both buckets are empty, so the user is named; one token a second.
        assert_eq!(
            lim.check("u", "c", t),
            Decision::Limited {
                scope: Scope::User,
                retry_after: Duration::from_secs(1)
            }
        );
        assert_eq!(
            lim.check("u", "c", t + ms(999)),
            Decision::Limited {
                scope: Scope::User,
                retry_after: ms(1)
            }
        );
        assert_eq!(lim.check("u", "c", t + ms(1000)), Decision::Allowed);
        // Calls spread over 9 ms have earned 9 ms of refill.
        let mut lim = limiter(LimitConfig::default());
        for i in 0..10 {
            assert!(lim.check("u", "c", t + ms(i)).is_allowed());
        }
        assert_eq!(
            lim.check("u", "c", t + ms(9)),
            Decision::Limited {
                scope: Scope::User,
                retry_after: ms(991)
            }
        );
    }

    #[test]
    fn an_empty_channel_limits_every_user() {
        let mut lim = limiter(LimitConfig::default());
        let t = t0();
        for i in 0..10 {
            assert!(lim.check(&format!("u{i}"), "c", t).is_allowed());
        }
        let held = lim.len();
        assert_eq!(
            lim.check("fresh", "c", t),
            Decision::Limited {
                scope: Scope::Channel,
                retry_after: Duration::from_secs(1)
            }
        );
        // The fresh user's bucket was not created: nothing was taken from it.
        assert_eq!(lim.len(), held);
        assert!(lim.check("u0", "other", t).is_allowed());
        assert_eq!(lim.tokens(Scope::User, "u0", t), 8.0);
        assert_eq!(lim.tokens(Scope::User, "fresh", t), 10.0);
    }

    #[test]
    fn config_errors_name_the_field() {
        let w = Duration::from_secs(1);
        assert_eq!(LimitConfig::new(0, 1, w), Err(LimitConfigError::ZeroBurst));
        assert_eq!(LimitConfig::new(1, 0, w), Err(LimitConfigError::ZeroRefill));
        assert_eq!(
            LimitConfig::new(1, 1, Duration::ZERO),
            Err(LimitConfigError::ZeroWindow)
        );
        let bad = LimitConfig {
            burst: 0,
            ..LimitConfig::default()
        };
        assert_eq!(
            KeyedLimiter::new(bad).err(),
            Some(LimitConfigError::ZeroBurst)
        );
        assert!(TokenBucket::new(bad, t0()).is_err());
        assert!(LimitConfigError::ZeroWindow.to_string().contains("window"));
    }

    #[test]
    fn bucket_refills_continuously_and_exactly() {
        let t = t0();
        // 3 tokens per 7 ms: a token every 7/3 ms, which no float represents.
        let cfg = LimitConfig::new(2, 3, ms(7)).unwrap();
        let mut b = TokenBucket::new(cfg, t).unwrap();
        assert!(b.is_full(t));
        assert_eq!(b.try_take(t), Ok(()));
        assert_eq!(b.try_take(t), Ok(()));
        let wait = b.try_take(t).unwrap_err();
        assert_eq!(wait, Duration::from_nanos(2_333_334)); // ceil(7e6 / 3)
        assert_eq!(
            b.try_take(t + wait - Duration::from_nanos(1)),
            Err(Duration::from_nanos(1))
        );
        assert!((b.available(t + ms(1)) - 3.0 / 7.0).abs() < 1e-9);
        assert_eq!(b.try_take(t + wait), Ok(()));
        assert!(!b.is_full(t + wait + ms(4)));
        assert!(b.is_full(t + wait + ms(5)));
    }

    #[test]
    fn time_running_backwards_mints_nothing() {
        let t = t0() + Duration::from_secs(10);
        let mut b = TokenBucket::new(LimitConfig::new(1, 1, ms(1000)).unwrap(), t).unwrap();
        assert_eq!(b.try_take(t), Ok(()));
        // 300 ms "earlier": still empty, and the wait counts from the caller's instant.
        assert_eq!(b.try_take(t - ms(300)), Err(ms(1300)));
        assert_eq!(b.try_take(t + ms(999)), Err(ms(1)));
        assert_eq!(b.try_take(t + ms(1000)), Ok(()));

        // A take stamped earlier than the last one must not rewind the refill clock.
        let mut b = TokenBucket::new(LimitConfig::new(2, 1, ms(1000)).unwrap(), t).unwrap();
        assert_eq!(b.try_take(t), Ok(()));
        assert_eq!(b.try_take(t - ms(300)), Ok(()));
        assert_eq!(b.try_take(t + ms(999)), Err(ms(1)));

        let mut lim = limiter(LimitConfig::new(1, 1, ms(1000)).unwrap());
        assert!(lim.check("u", "c", t).is_allowed());
        assert_eq!(
            lim.check("u", "c", t - ms(300)),
            Decision::Limited {
                scope: Scope::User,
                retry_after: ms(1300)
            }
        );
        assert_eq!(lim.evict_idle(t - Duration::from_secs(5)), 0);
        assert!(lim.check("u", "c", t + ms(1000)).is_allowed());
    }

    #[test]
    fn extreme_configs_do_not_overflow() {
        let t = t0();
        let cfg = LimitConfig::new(u32::MAX, u32::MAX, Duration::MAX).unwrap();
        let mut lim = limiter(cfg);
        assert!(lim.check("u", "c", t).is_allowed());
        assert!(lim
            .check("u", "c", t + Duration::from_secs(u64::MAX / 4))
            .is_allowed());
        let one = LimitConfig::new(1, 1, Duration::MAX).unwrap();
        let mut b = TokenBucket::new(one, t).unwrap();
        assert_eq!(b.try_take(t), Ok(()));
        assert_eq!(b.try_take(t), Err(Duration::MAX));
        let tiny = LimitConfig::new(1, u32::MAX, Duration::from_nanos(1)).unwrap();
        let mut b = TokenBucket::new(tiny, t).unwrap();
        assert_eq!(b.try_take(t), Ok(()));
        assert_eq!(b.try_take(t), Err(Duration::from_nanos(1)));
    }

    #[test]
    fn evict_idle_drops_exactly_the_full_buckets() {
        let mut lim = limiter(LimitConfig::default());
        let t = t0();
        assert!(lim.check("a", "c1", t).is_allowed());
        assert!(lim.check("a", "c1", t).is_allowed());
        assert!(lim.check("b", "c2", t).is_allowed());
        assert_eq!(lim.len(), 4);
        // "b" and "c2" owe one token (full after 1 s), "a" and "c1" two (2 s).
        assert_eq!(lim.evict_idle(t + ms(999)), 0);
        assert_eq!(lim.evict_idle(t + ms(1000)), 2);
        assert_eq!(lim.evict_idle(t + ms(2000)), 2);
        assert!(lim.is_empty());
    }

    #[test]
    fn endless_new_users_cost_only_the_last_two_fill_times() {
        // Fill time 1 s; one new user per millisecond for 20 s.
        let cfg = LimitConfig::new(2, 2, ms(1000)).unwrap();
        let mut lim = limiter(cfg);
        let t = t0();
        let mut peak = 0;
        for i in 0..20_000u64 {
            let call = lim.check(&format!("user{i}"), &format!("chan{i}"), t + ms(i));
            assert!(call.is_allowed());
            peak = peak.max(lim.len());
        }
        // At most the users and channels of the last two fill times (2 s).
        assert!(peak <= 2 * 2000, "peak {peak}");
        assert!(peak > SWEEP_FLOOR, "the bound, not the floor, was tested");
        let later = t + Duration::from_secs(60);
        assert!(lim.check("late", "d", later).is_allowed());
        assert_eq!(lim.len(), 2);
        assert!(lim.users.capacity() < 4 * SWEEP_FLOOR);
    }

    /// One step of a generated run: time moves by `dt_ms` (maybe backwards),
    /// then `user` calls on `channel`.
    #[derive(Debug, Clone)]
    struct Step {
        dt_ms: i64,
        user: u8,
        channel: u8,
    }

    fn steps(back: bool) -> impl Strategy<Value = Vec<Step>> {
        let lo = if back { -300i64 } else { 0 };
        prop::collection::vec(
            (lo..1500i64, 0u8..3, 0u8..3).prop_map(|(dt_ms, user, channel)| Step {
                dt_ms,
                user,
                channel,
            }),
            1..150,
        )
    }

    fn configs() -> impl Strategy<Value = LimitConfig> {
        // Windows in odd nanosecond counts so refill rates are not round numbers.
        (1u32..6, 1u32..6, 1u64..3_000_000_000).prop_map(|(burst, refill, window_ns)| {
            LimitConfig::new(burst, refill, Duration::from_nanos(window_ns)).unwrap()
        })
    }

    /// Instants for a run, starting well after `origin` so backward steps stay valid.
    fn times(origin: Instant, steps: &[Step]) -> Vec<Instant> {
        let mut t = origin + Duration::from_secs(3600);
        steps
            .iter()
            .map(|s| {
                t = if s.dt_ms >= 0 {
                    t + ms(s.dt_ms.unsigned_abs())
                } else {
                    t - ms(s.dt_ms.unsigned_abs())
                };
                t
            })
            .collect()
    }

    /// Every window `[a, b]` between two takes holds at most
    /// `burst + refill × (b − a) / window` of them, checked in exact integers.
    fn assert_window_bound(cfg: &LimitConfig, takes: &[Instant]) -> Result<(), TestCaseError> {
        let token = cfg.window.as_nanos();
        for (i, a) in takes.iter().enumerate() {
            for (j, b) in takes.iter().enumerate().skip(i) {
                let count = (j - i + 1) as u128;
                let span = b.duration_since(*a).as_nanos();
                prop_assert!(
                    count * token <= u128::from(cfg.burst) * token + u128::from(cfg.refill) * span,
                    "{count} takes in {span} ns"
                );
            }
        }
        Ok(())
    }

    #[test]
    fn the_read_bucket_is_per_user_only() {
        let t = t0();
        let mut l = limiter(LimitConfig::new(2, 1, Duration::from_secs(1)).unwrap());
        assert!(l.check_user("a", t).is_allowed());
        assert!(l.check_user("a", t).is_allowed());
        assert!(
            matches!(l.check_user("a", t), Decision::Limited { scope: Scope::User, retry_after } if retry_after == Duration::from_secs(1))
        );
        assert!(
            l.check_user("b", t).is_allowed(),
            "another user has their own bucket"
        );
        assert!(l.check_user("a", t + Duration::from_secs(1)).is_allowed());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn takes_in_any_window_stay_under_the_rate(cfg in configs(), run in steps(false)) {
            let origin = t0();
            let ts = times(origin, &run);
            let mut lim = limiter(cfg);
            let mut bucket = TokenBucket::new(cfg, ts[0]).unwrap();
            let mut by_user: HashMap<u8, Vec<Instant>> = HashMap::new();
            let mut by_channel: HashMap<u8, Vec<Instant>> = HashMap::new();
            let mut single = Vec::new();
            for (s, &now) in run.iter().zip(&ts) {
                if lim.check(&s.user.to_string(), &s.channel.to_string(), now).is_allowed() {
                    by_user.entry(s.user).or_default().push(now);
                    by_channel.entry(s.channel).or_default().push(now);
                }
                if bucket.try_take(now).is_ok() {
                    single.push(now);
                }
            }
            for takes in by_user.values().chain(by_channel.values()) {
                assert_window_bound(&cfg, takes)?;
            }
            assert_window_bound(&cfg, &single)?;
        }

        #[test]
        fn retry_after_is_exact(cfg in configs(), run in steps(true)) {
            let ts = times(t0(), &run);
            let mut lim = limiter(cfg);
            for (s, &now) in run.iter().zip(&ts) {
                let (user, channel) = (s.user.to_string(), s.channel.to_string());
                if let Decision::Limited { retry_after, .. } = lim.check(&user, &channel, now) {
                    prop_assert!(!retry_after.is_zero());
                    let mut on_time = lim.clone();
                    prop_assert_eq!(on_time.check(&user, &channel, now + retry_after), Decision::Allowed);
                    let mut early = lim.clone();
                    let just_before = now + retry_after - Duration::from_nanos(1);
                    prop_assert!(!early.check(&user, &channel, just_before).is_allowed());
                    if retry_after >= ms(1) {
                        let mut early = lim.clone();
                        prop_assert!(!early.check(&user, &channel, now + retry_after - ms(1)).is_allowed());
                    }
                }
            }
        }

        #[test]
        fn a_limited_call_takes_nothing(cfg in configs(), run in steps(true)) {
            let ts = times(t0(), &run);
            let mut lim = limiter(cfg);
            let levels = |lim: &KeyedLimiter, at: Instant| -> Vec<u128> {
                (0u8..3)
                    .flat_map(|k| {
                        let k = k.to_string();
                        [units(lim, Scope::User, &k, at), units(lim, Scope::Channel, &k, at)]
                    })
                    .collect()
            };
            for (s, &now) in run.iter().zip(&ts) {
                // Decisions see time at the high-water mark; compare levels there.
                let at = lim.latest.map_or(now, |l| l.max(now));
                let before = levels(&lim, at);
                let decision = lim.check(&s.user.to_string(), &s.channel.to_string(), now);
                let after = levels(&lim, at);
                let changed = before.iter().zip(&after).filter(|(b, a)| b != a).count();
                // Allowed: exactly the user's and the channel's bucket lost a token.
                prop_assert_eq!(changed, if decision.is_allowed() { 2 } else { 0 });
            }
        }

        #[test]
        fn eviction_never_changes_a_decision(cfg in configs(), run in steps(true)) {
            let ts = times(t0(), &run);
            let mut eager = limiter(cfg);
            let mut never = limiter(cfg);
            never.auto_sweep = false;
            for (s, &now) in run.iter().zip(&ts) {
                eager.evict_idle(now);
                let (user, channel) = (s.user.to_string(), s.channel.to_string());
                prop_assert_eq!(eager.check(&user, &channel, now), never.check(&user, &channel, now));
            }
        }

        #[test]
        fn memory_holds_only_recent_keys(
            cfg in (1u32..4, 1u32..4, 1u64..400).prop_map(|(b, r, w)| LimitConfig::new(b, r, ms(w)).unwrap()),
            gaps in prop::collection::vec((0u64..60, 0u8..4), 1..1500),
        ) {
            let mut lim = limiter(cfg);
            let fill = lim.rate.fill_time;
            let mut now = t0();
            let mut taken: Vec<(Instant, String, String)> = Vec::new();
            for (i, (gap, channel)) in gaps.iter().enumerate() {
                now += ms(*gap);
                // Every user is new; channels come from a small set, one of them
                // fresh each time too.
                let user = format!("u{i}");
                let channel = if *channel == 0 { format!("fresh{i}") } else { channel.to_string() };
                if lim.check(&user, &channel, now).is_allowed() {
                    taken.push((now, user, channel));
                }
                let recent: Vec<_> = taken.iter().rev()
                    .take_while(|(t, _, _)| now.duration_since(*t) < 2 * fill)
                    .collect();
                let users: HashSet<_> = recent.iter().map(|(_, u, _)| u).collect();
                let channels: HashSet<_> = recent.iter().map(|(_, _, c)| c).collect();
                prop_assert!(lim.len() <= users.len() + channels.len(),
                    "{} held, {} recent keys", lim.len(), users.len() + channels.len());
            }
            // Once a fill time passes with no takes, the next call sweeps all.
            now += fill;
            let _ = lim.check("last", "last", now);
            prop_assert_eq!(lim.len(), 2);
        }
    }
}
