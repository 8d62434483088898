//! Reconnect delays (CONTRACT.md §1, `GATEWAY_WS_URL`): the n-th retry after a
//! failure waits 2ⁿ⁻¹ s (±20 % jitter), never more than 30 s.
//!
//! The jitter's random number comes from the caller, so a schedule is
//! reproducible in a test. Jitter is applied before the cap, so delays near the
//! cap spread out below it instead of piling up exactly on it.

use std::time::Duration;

/// The shape of the schedule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BackoffConfig {
    /// The first retry's nominal delay.
    pub base: Duration,
    /// No delay is longer than this.
    pub cap: Duration,
    /// Relative spread: a delay is its nominal value × (1 ± `jitter`).
    /// Taken as 0 when NaN and clamped to `0.0..=1.0`. Up to 1/3 the delays
    /// never shrink from one retry to the next, since doubling outruns
    /// (1 + j) / (1 − j).
    pub jitter: f64,
}

impl Default for BackoffConfig {
    /// The contract's schedule: 1 s doubling to 30 s, ±20 %.
    fn default() -> Self {
        Self {
            base: Duration::from_secs(1),
            cap: Duration::from_secs(30),
            jitter: 0.2,
        }
    }
}

/// Counts consecutive failures and says how long to wait before the next try.
#[derive(Debug, Clone)]
pub struct Backoff {
    cfg: BackoffConfig,
    attempts: u32,
}

impl Backoff {
    /// A schedule with no failures yet.
    pub fn new(cfg: BackoffConfig) -> Self {
        let jitter = if cfg.jitter.is_nan() {
            0.0
        } else {
            cfg.jitter.clamp(0.0, 1.0)
        };
        Self {
            cfg: BackoffConfig { jitter, ..cfg },
            attempts: 0,
        }
    }

    /// Records a failure and returns the delay before the next attempt:
    /// `min(cap, base · 2ⁿ⁻¹ · (1 + jitter · (2 · random − 1)))` for the n-th.
    ///
    /// `random` should be uniform in `[0, 1)`; it is clamped to `[0, 1]`, and
    /// NaN counts as 0.5 (no jitter).
    pub fn next_delay(&mut self, random: f64) -> Duration {
        self.attempts = self.attempts.saturating_add(1);
        let random = if random.is_nan() {
            0.5
        } else {
            random.clamp(0.0, 1.0)
        };
        let factor = 1.0 + self.cfg.jitter * (2.0 * random - 1.0);
        let nanos = self.uncapped_nanos(self.attempts) as f64 * factor;
        if nanos >= self.cfg.cap.as_nanos() as f64 {
            return self.cfg.cap;
        }
        // `nanos` is finite and non-negative here (factor ≥ 0, below the cap),
        // and the float cap may round above the real one, hence the `min`.
        nanos_to_duration(nanos.round() as u128).min(self.cfg.cap)
    }

    /// Forgets the failures after a successful connection: the next delay is
    /// the first one again.
    pub fn reset(&mut self) {
        self.attempts = 0;
    }

    /// Failures recorded since the last [`reset`](Self::reset).
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// The delay before retry `attempt` without jitter: `min(cap, base · 2^(attempt−1))`.
    /// Attempt 0, no failure yet, waits nothing.
    pub fn nominal_delay(&self, attempt: u32) -> Duration {
        if attempt == 0 {
            return Duration::ZERO;
        }
        nanos_to_duration(self.uncapped_nanos(attempt)).min(self.cfg.cap)
    }

    /// `base · 2^(attempt−1)` in nanoseconds, saturating: after thousands of
    /// failures the exponent just stops mattering.
    fn uncapped_nanos(&self, attempt: u32) -> u128 {
        let base = self.cfg.base.as_nanos();
        let doublings = attempt.saturating_sub(1);
        if base == 0 {
            return 0;
        }
        if doublings >= u128::BITS {
            return u128::MAX;
        }
        base.saturating_mul(1u128 << doublings)
    }
}

/// `u128` nanoseconds as a `Duration`, saturating at `Duration::MAX` (also
/// the token buckets' refill arithmetic).
pub(crate) fn nanos_to_duration(nanos: u128) -> Duration {
    const NANOS_PER_SEC: u128 = 1_000_000_000;
    match u64::try_from(nanos / NANOS_PER_SEC) {
        // The remainder is below 1e9, so it fits a u32.
        Ok(secs) => Duration::new(secs, (nanos % NANOS_PER_SEC) as u32),
        Err(_) => Duration::MAX,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn nominal_schedule_is_the_contracts() {
        let b = Backoff::new(BackoffConfig::default());
        let schedule: Vec<_> = (1..=7).map(|n| b.nominal_delay(n)).collect();
        assert_eq!(
            schedule,
            [
                secs(1),
                secs(2),
                secs(4),
                secs(8),
                secs(16),
                secs(30),
                secs(30)
            ]
        );
        assert_eq!(b.nominal_delay(0), Duration::ZERO);
        assert_eq!(b.nominal_delay(u32::MAX), secs(30));
    }

    #[test]
    fn jitter_spans_plus_minus_twenty_percent() {
        let mut b = Backoff::new(BackoffConfig::default());
        assert_eq!(b.next_delay(0.0), ms(800));
        b.reset();
        assert_eq!(b.next_delay(0.5), secs(1));
        b.reset();
        assert_eq!(b.next_delay(1.0), ms(1200));
        // Jitter comes before the cap: the 6th retry (32 s nominal) may land below 30 s.
        for _ in 0..4 {
            let _ = b.next_delay(0.5);
        }
        assert_eq!(b.attempts(), 5);
        assert_eq!(b.next_delay(0.0), ms(25_600));
        assert_eq!(b.next_delay(0.0), secs(30));
    }

    #[test]
    fn odd_random_values_are_tamed() {
        let first = |r: f64| Backoff::new(BackoffConfig::default()).next_delay(r);
        assert_eq!(first(f64::NAN), secs(1));
        assert_eq!(first(-3.0), ms(800));
        assert_eq!(first(f64::NEG_INFINITY), ms(800));
        assert_eq!(first(7.0), ms(1200));
        assert_eq!(first(f64::INFINITY), ms(1200));
    }

    #[test]
    fn odd_configs_do_not_panic() {
        let wild = BackoffConfig {
            base: Duration::MAX,
            cap: Duration::MAX,
            jitter: f64::NAN,
        };
        let mut b = Backoff::new(wild);
        assert_eq!(b.next_delay(0.3), Duration::MAX);
        let mut b = Backoff::new(BackoffConfig {
            base: Duration::ZERO,
            jitter: 5.0,
            ..BackoffConfig::default()
        });
        assert_eq!(b.next_delay(0.0), Duration::ZERO);
        let mut b = Backoff::new(BackoffConfig {
            jitter: -1.0,
            ..BackoffConfig::default()
        });
        assert_eq!(b.next_delay(0.0), secs(1));
    }

    #[test]
    fn thousands_of_failures_stay_at_the_cap() {
        let mut b = Backoff::new(BackoffConfig::default());
        for i in 0..5000u32 {
            let d = b.next_delay(f64::from(i % 10) / 10.0);
            if i >= 6 {
                assert_eq!(d, secs(30));
            }
        }
        assert_eq!(b.attempts(), 5000);
    }

    fn randoms() -> impl Strategy<Value = f64> {
        prop_oneof![
            8 => 0.0f64..1.0,
            1 => Just(0.0),
            1 => Just(f64::NAN),
            1 => -2.0f64..3.0,
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn default_delays_grow_stay_capped_and_respect_jitter(
            rs in prop::collection::vec(randoms(), 1..40),
        ) {
            let cfg = BackoffConfig::default();
            let mut b = Backoff::new(cfg);
            let delays: Vec<_> = rs.iter().map(|r| b.next_delay(*r)).collect();
            // The first try: 1 s ± 20 %.
            prop_assert!(delays[0] >= ms(800) && delays[0] <= ms(1200), "{:?}", delays[0]);
            for (n, d) in delays.iter().enumerate() {
                let nominal = 1u64 << n.min(20);
                let low = secs(30).min(ms(800 * nominal));
                let high = secs(30).min(ms(1200 * nominal));
                prop_assert!(*d >= low && *d <= high, "retry {}: {:?}", n + 1, d);
            }
            // Monotone all the way: before the cap because doubling beats
            // 1.2 / 0.8, and once a delay reaches the cap every later one does.
            let first_capped = delays.iter().position(|d| *d == cfg.cap);
            for (i, pair) in delays.windows(2).enumerate() {
                prop_assert!(pair[0] <= pair[1], "{:?}", delays);
                if first_capped.is_some_and(|c| i >= c) {
                    prop_assert_eq!(pair[1], cfg.cap);
                }
            }
        }

        #[test]
        fn any_config_with_small_jitter_is_monotone_and_capped(
            base_ms in 1u64..5000,
            cap_ms in 1u64..120_000,
            jitter in 0.0f64..0.33,
            rs in prop::collection::vec(randoms(), 1..80),
        ) {
            let cfg = BackoffConfig { base: ms(base_ms), cap: ms(cap_ms), jitter };
            let mut b = Backoff::new(cfg);
            let mut last = Duration::ZERO;
            for r in &rs {
                let d = b.next_delay(*r);
                prop_assert!(d >= last, "{:?} after {:?}", d, last);
                prop_assert!(d <= cfg.cap);
                last = d;
            }
        }

        #[test]
        fn reset_starts_over(fails in 0usize..50, rs in prop::collection::vec(0.0f64..1.0, 50), r in 0.0f64..1.0) {
            let mut b = Backoff::new(BackoffConfig::default());
            for r in rs.iter().take(fails) {
                let _ = b.next_delay(*r);
            }
            b.reset();
            prop_assert_eq!(b.attempts(), 0);
            let d = b.next_delay(r);
            prop_assert!(d >= ms(800) && d <= ms(1200), "{:?}", d);
            prop_assert_eq!(b.attempts(), 1);
        }
    }
}
