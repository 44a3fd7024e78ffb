//! Pacing: requests spaced evenly so that they never go faster than a rate.
//! Object compaction paces its object store requests with one, so that its
//! load on the store (and its request bill) stays flat and bounded whatever
//! the backlog (`object_compaction_max_requests_per_second`).
//!
//! `RecentRate` measures what the compactor yields to: the bytes produce
//! flushed over the last second.
//!
//! Hand-written rather than `governor`: its waits run on `futures-timer`,
//! which tokio's paused test clock does not drive; this one sleeps on
//! tokio's clock, so tests of it advance time instead of waiting.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Hands out one slot per request, `1 / rate` apart; no bursts.
#[derive(Debug, Default)]
pub struct Pacer {
    /// The next free slot; `None` before the first request.
    next: Mutex<Option<Instant>>,
}

impl Pacer {
    /// Waits for this request's slot, at most `per_second` a second over
    /// all callers; 0 is no limit. A caller that gives up while waiting
    /// leaves its slot unused.
    pub async fn pace(&self, per_second: u32) -> Duration {
        self.pace_amount(1, u64::from(per_second)).await
    }

    /// Waits for the slot of a request that counts `amount` (bytes, say)
    /// against `per_second` of them over all callers; 0 is no limit. The
    /// request goes at its slot, and the next one `amount / per_second`
    /// seconds later: a large request makes the next wait, not itself.
    pub async fn pace_amount(&self, amount: u64, per_second: u64) -> Duration {
        if per_second == 0 {
            return Duration::ZERO;
        }
        let interval = Duration::from_secs_f64(amount as f64 / per_second as f64);
        let now = Instant::now();
        let slot = {
            let mut next = self.next.lock().expect("pacer lock");
            let slot = next.map_or(now, |n| n.max(now));
            *next = Some(slot + interval);
            slot
        };
        tokio::time::sleep_until(slot).await;
        slot - now
    }
}

/// Tenths of a second `RecentRate` counts in.
const TENTH_MS: u128 = 100;
const TENTHS: usize = 10;

/// Amounts (bytes, say) counted over the last second, a tenth of a second
/// at a time: what `per_second` reports follows a change within 100 ms.
#[derive(Debug)]
pub struct RecentRate {
    origin: Instant,
    /// (tenth of a second since `origin`, amount counted in it), each
    /// tenth at its index modulo `TENTHS`.
    tenths: Mutex<[(u64, u64); TENTHS]>,
}

impl Default for RecentRate {
    fn default() -> Self {
        RecentRate {
            origin: Instant::now(),
            tenths: Mutex::new([(0, 0); TENTHS]),
        }
    }
}

impl RecentRate {
    fn tenth(&self) -> u64 {
        (self.origin.elapsed().as_millis() / TENTH_MS) as u64
    }

    /// Counts `amount` now.
    pub fn count(&self, amount: u64) {
        let tenth = self.tenth();
        let mut tenths = self.tenths.lock().expect("rate lock");
        let slot = &mut tenths[tenth as usize % TENTHS];
        if slot.0 != tenth {
            *slot = (tenth, 0);
        }
        slot.1 += amount;
    }

    /// The amount counted over the last second: this tenth and the nine
    /// before it.
    pub fn per_second(&self) -> u64 {
        let tenth = self.tenth();
        let tenths = self.tenths.lock().expect("rate lock");
        tenths
            .iter()
            .filter(|(at, _)| tenth.saturating_sub(*at) < TENTHS as u64)
            .map(|(_, amount)| amount)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn requests_are_spaced_at_the_rate() {
        let pacer = std::sync::Arc::new(Pacer::default());
        let start = Instant::now();
        let waits = futures::future::join_all((0..10).map(|_| {
            let pacer = pacer.clone();
            async move { pacer.pace(100).await }
        }))
        .await;
        // The first goes at once; the tenth 90 ms later.
        assert_eq!(waits[0], Duration::ZERO);
        assert_eq!(Instant::now() - start, Duration::from_millis(90));
        assert_eq!(waits.iter().max().copied(), Some(Duration::from_millis(90)));
        // After a pause longer than the interval, the next goes at once:
        // idle time is not saved up for a burst, nor owed.
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(pacer.pace(100).await, Duration::ZERO);
        assert_eq!(pacer.pace(100).await, Duration::from_millis(10));
    }

    #[tokio::test(start_paused = true)]
    async fn amounts_space_the_requests_that_follow_them() {
        let pacer = Pacer::default();
        let start = Instant::now();
        // 1,000 bytes a second: 500 bytes go at once, the next request
        // half a second later, and 250 more a quarter of a second after.
        assert_eq!(pacer.pace_amount(500, 1_000).await, Duration::ZERO);
        assert_eq!(
            pacer.pace_amount(250, 1_000).await,
            Duration::from_millis(500)
        );
        assert_eq!(
            pacer.pace_amount(1, 1_000).await,
            Duration::from_millis(250)
        );
        assert_eq!(Instant::now() - start, Duration::from_millis(750));
        assert_eq!(pacer.pace_amount(1 << 40, 0).await, Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn zero_is_no_limit() {
        let pacer = Pacer::default();
        let start = Instant::now();
        for _ in 0..1_000 {
            assert_eq!(pacer.pace(0).await, Duration::ZERO);
        }
        assert_eq!(Instant::now(), start);
    }

    #[tokio::test(start_paused = true)]
    async fn a_recent_rate_counts_the_last_second() {
        let rate = RecentRate::default();
        assert_eq!(rate.per_second(), 0);
        rate.count(100);
        tokio::time::sleep(Duration::from_millis(450)).await;
        rate.count(50);
        assert_eq!(rate.per_second(), 150);
        // The first count leaves the window a second after its tenth
        // began; the second stays until its own second is over.
        tokio::time::sleep(Duration::from_millis(550)).await;
        assert_eq!(rate.per_second(), 50);
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(rate.per_second(), 0);
        // A tenth's slot is reused ten tenths later, not added to.
        rate.count(7);
        tokio::time::sleep(Duration::from_secs(1)).await;
        rate.count(9);
        assert_eq!(rate.per_second(), 9);
    }
}
