//! Counters of the log's work (flushes, commits, caches, back-pressure),
//! kept with relaxed atomics on the hot path and read by the broker's
//! `/metrics` at scrape time.

use std::sync::atomic::{AtomicU64, Ordering};

/// Cumulative counters; see `LogStatsSnapshot` for their meaning.
#[derive(Default)]
pub(crate) struct LogStats {
    pub(crate) flushes: AtomicU64,
    pub(crate) flushed_bytes: AtomicU64,
    pub(crate) flush_latency: crate::Latencies,
    pub(crate) object_write_latency: crate::Latencies,
    pub(crate) commit_latency: crate::Latencies,
    pub(crate) write_failures: AtomicU64,
    pub(crate) commit_not_applied: AtomicU64,
    pub(crate) commit_fenced: AtomicU64,
    pub(crate) commit_uncertain: AtomicU64,
    pub(crate) stale_flushes: AtomicU64,
    pub(crate) backpressure_waits: AtomicU64,
    pub(crate) tail_cache_hits: AtomicU64,
    pub(crate) block_reads: AtomicU64,
    pub(crate) compaction_produce_waits: AtomicU64,
    pub(crate) compaction_paced_ms: AtomicU64,
    pub(crate) compaction_span_reads: AtomicU64,
}

pub(crate) fn bump(counter: &AtomicU64, by: u64) {
    counter.fetch_add(by, Ordering::Relaxed);
}

/// What the log has done since it opened, and what it holds now.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LogStatsSnapshot {
    /// Flushes committed (one object each).
    pub flushes: u64,
    /// Bytes of the objects those flushes wrote.
    pub flushed_bytes: u64,
    /// From sealing to committed, of committed flushes.
    pub flush_latency: crate::LatencySnapshot,
    /// Writing their objects (part of `flush_latency`).
    pub object_write_latency: crate::LatencySnapshot,
    /// Committing their index entries to the metadata store.
    pub commit_latency: crate::LatencySnapshot,
    /// Flushes failed because their object could not be written.
    pub write_failures: u64,
    /// Commits the metadata store refused (offsets moved, topic deleted).
    pub commit_not_applied: u64,
    /// Commits refused because this broker's session was fenced.
    pub commit_fenced: u64,
    /// Commits whose outcome was unknown (timeouts whose read-back failed).
    pub commit_uncertain: u64,
    /// Flushes failed because an earlier one failed (their offsets followed a hole).
    pub stale_flushes: u64,
    /// Appends that waited for room in the flush buffer.
    pub backpressure_waits: u64,
    /// Times object compaction paused because produce held more than half
    /// of the flush buffer.
    pub compaction_produce_waits: u64,
    /// Milliseconds object compaction's requests waited for their slot
    /// under `max_requests_per_second`, summed over requests.
    pub compaction_paced_ms: u64,
    /// Ranged reads object compaction made of several partitions' runs at
    /// once (rewrites running together sharing a flush object).
    pub compaction_span_reads: u64,
    /// Index entries read from the tail cache (recent objects in memory).
    pub tail_cache_hits: u64,
    /// Index entries read through the block cache (older data).
    pub block_reads: u64,
    /// Block cache reads answered from memory / fetched from the object store.
    pub block_cache_hits: u64,
    pub block_cache_misses: u64,
    /// Bytes read ahead into the block cache, and the part evicted unread.
    pub read_ahead_bytes: u64,
    pub read_ahead_wasted_bytes: u64,
    /// Span reads that went on with a stream parked by the read before
    /// them (no new GET), and the streams parked now.
    pub read_streams_resumed: u64,
    pub read_streams_parked: u64,
    /// Bytes held now.
    pub buffer_bytes: u64,
    pub buffer_max_bytes: u64,
    pub tail_cache_bytes: u64,
    pub block_cache_bytes: u64,
    /// Partitions this log leads now.
    pub partitions_led: u64,
}

impl LogStats {
    pub(crate) fn snapshot(&self) -> LogStatsSnapshot {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        LogStatsSnapshot {
            flushes: load(&self.flushes),
            flushed_bytes: load(&self.flushed_bytes),
            flush_latency: self.flush_latency.snapshot(),
            object_write_latency: self.object_write_latency.snapshot(),
            commit_latency: self.commit_latency.snapshot(),
            write_failures: load(&self.write_failures),
            commit_not_applied: load(&self.commit_not_applied),
            commit_fenced: load(&self.commit_fenced),
            commit_uncertain: load(&self.commit_uncertain),
            stale_flushes: load(&self.stale_flushes),
            backpressure_waits: load(&self.backpressure_waits),
            tail_cache_hits: load(&self.tail_cache_hits),
            block_reads: load(&self.block_reads),
            compaction_produce_waits: load(&self.compaction_produce_waits),
            compaction_paced_ms: load(&self.compaction_paced_ms),
            compaction_span_reads: load(&self.compaction_span_reads),
            ..LogStatsSnapshot::default()
        }
    }
}
