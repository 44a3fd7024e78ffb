//! A latency histogram kept with atomics: fixed buckets from 0.5 ms to
//! about 16 s, doubling (the buckets of the broker's request histograms),
//! cheap enough for every flush and every object-store request. The
//! broker's `/metrics` exposes it as a Prometheus histogram.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the buckets, in seconds: 0.0005 × 2^k for k in 0..16.
pub const LATENCY_BUCKETS: usize = 16;

pub fn bucket_bounds() -> [f64; LATENCY_BUCKETS] {
    std::array::from_fn(|k| 0.0005 * f64::from(1u32 << k))
}

#[derive(Debug, Default)]
pub struct Latencies {
    /// Observations per bucket (not cumulative); the last slot is +Inf.
    buckets: [AtomicU64; LATENCY_BUCKETS + 1],
    micros: AtomicU64,
    count: AtomicU64,
}

/// A copy of a histogram: cumulative counts per upper bound (+Inf last).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LatencySnapshot {
    pub buckets: Vec<(f64, u64)>,
    pub sum_seconds: f64,
    pub count: u64,
}

impl Latencies {
    pub fn observe(&self, took: Duration) {
        let seconds = took.as_secs_f64();
        let slot = bucket_bounds()
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(LATENCY_BUCKETS);
        self.buckets[slot].fetch_add(1, Ordering::Relaxed);
        self.micros
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Total microseconds observed (for mean latencies in log lines).
    pub fn micros(&self) -> u64 {
        self.micros.load(Ordering::Relaxed)
    }

    pub fn snapshot(&self) -> LatencySnapshot {
        let mut cumulative = 0;
        let bounds = bucket_bounds();
        let buckets = (0..=LATENCY_BUCKETS)
            .map(|i| {
                cumulative += self.buckets[i].load(Ordering::Relaxed);
                (bounds.get(i).copied().unwrap_or(f64::INFINITY), cumulative)
            })
            .collect();
        LatencySnapshot {
            buckets,
            sum_seconds: self.micros() as f64 / 1e6,
            count: self.count.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_cumulative_buckets() {
        let l = Latencies::default();
        l.observe(Duration::from_micros(400)); // ≤ 0.5 ms
        l.observe(Duration::from_millis(3)); // ≤ 4 ms
        l.observe(Duration::from_secs(60)); // +Inf
        let s = l.snapshot();
        assert_eq!(s.count, 3);
        assert_eq!(s.buckets.len(), LATENCY_BUCKETS + 1);
        assert_eq!(s.buckets[0], (0.0005, 1));
        assert_eq!(s.buckets[3], (0.004, 2));
        assert_eq!(s.buckets[LATENCY_BUCKETS - 1].1, 2);
        assert_eq!(s.buckets[LATENCY_BUCKETS], (f64::INFINITY, 3));
        assert!((s.sum_seconds - 60.0034).abs() < 1e-9);
    }
}
