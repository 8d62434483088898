//! A log-linear latency histogram in nanoseconds: 128 linear sub-buckets per
//! power of two, so any percentile is within 0.8 % of the true value, at a fixed
//! ~4 K counters whatever the run length. Merging is adding counters.

const SUB_BITS: u32 = 7;
const SUB: usize = 1 << SUB_BITS;
/// Enough buckets for values up to 2^44 ns (~4.9 hours).
const BUCKETS: usize = (44 - SUB_BITS as usize + 1) * SUB;

/// Latency samples.
#[derive(Clone, Debug)]
pub struct Hist {
    counts: Vec<u64>,
    count: u64,
    max: u64,
    sum: u128,
}

impl Default for Hist {
    fn default() -> Self {
        Self::new()
    }
}

fn index(v: u64) -> usize {
    if v < SUB as u64 {
        return v as usize;
    }
    let e = 63 - v.leading_zeros();
    let shift = e - SUB_BITS;
    let mant = (v >> shift) as usize; // in [SUB, 2·SUB)
    (((shift as usize) + 1) << SUB_BITS) + (mant - SUB)
}

/// The midpoint of bucket `i`.
fn value(i: usize) -> u64 {
    if i < SUB {
        return i as u64;
    }
    let shift = (i >> SUB_BITS) - 1;
    let mant = ((i & (SUB - 1)) + SUB) as u64;
    (mant << shift) + ((1u64 << shift) >> 1)
}

impl Hist {
    /// An empty histogram.
    pub fn new() -> Self {
        Hist {
            counts: vec![0; BUCKETS],
            count: 0,
            max: 0,
            sum: 0,
        }
    }

    /// Adds one sample (nanoseconds).
    pub fn record(&mut self, ns: u64) {
        let i = index(ns).min(BUCKETS - 1);
        self.counts[i] += 1;
        self.count += 1;
        self.max = self.max.max(ns);
        self.sum += u128::from(ns);
    }

    /// Adds every sample of `other`.
    pub fn merge(&mut self, other: &Hist) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.count += other.count;
        self.max = self.max.max(other.max);
        self.sum += other.sum;
    }

    /// Samples recorded.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The largest sample (exact), ns.
    pub fn max(&self) -> u64 {
        self.max
    }

    /// The mean, ns.
    pub fn mean(&self) -> u64 {
        if self.count == 0 {
            0
        } else {
            (self.sum / u128::from(self.count)) as u64
        }
    }

    /// The `q` quantile (0–1), ns; 0 when empty.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let rank = ((q * self.count as f64).ceil() as u64).clamp(1, self.count);
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return value(i).min(self.max);
            }
        }
        self.max
    }

    /// The `q` quantile in milliseconds.
    pub fn ms(&self, q: f64) -> f64 {
        self.quantile(q) as f64 / 1e6
    }

    /// The maximum in milliseconds.
    pub fn max_ms(&self) -> f64 {
        self.max as f64 / 1e6
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_within_one_percent() {
        let mut h = Hist::new();
        for v in 1..=100_000u64 {
            h.record(v * 1000);
        }
        for q in [0.5, 0.95, 0.99] {
            let want = q * 100_000_000.0;
            let got = h.quantile(q) as f64;
            assert!((got - want).abs() / want < 0.01, "q{q}: {got} vs {want}");
        }
        assert_eq!(h.max(), 100_000_000);
        for v in [0u64, 1, 127, 128, 129, 1 << 20, (1 << 40) + 12345] {
            let i = index(v);
            assert!(value(i).abs_diff(v) <= v / 100 + 1, "{v} -> {}", value(i));
        }
    }
}
