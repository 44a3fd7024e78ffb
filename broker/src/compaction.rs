//! Object compaction: every `object_compaction_interval_ms`, each broker
//! rewrites the small runs of the partitions it leads into objects of their
//! own (`storage::Log::compact_partition`; docs/design/0009, §3), so that
//! consumers catching up read a few large ranges instead of one small range
//! per flush.
//!
//! A pass makes at most `object_compaction_max_rewrites_per_pass` rewrites,
//! of `object_compaction_max_partitions_at_once` partitions at a time (their
//! runs in one flush object read with one ranged read), each at most
//! `object_compaction_max_object_bytes`
//! (streamed in parts to S3), its requests spaced to at most
//! `object_compaction_max_requests_per_second`: the object store requests
//! and memory compaction takes are bounded. Passes run on a thread of their
//! own, below the broker's CPU priority (`object_compaction_thread_niceness`),
//! with an S3 client of their own, so that produce and fetch get the cores
//! first.

use std::sync::Weak;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use storage::{CompactionLimits, NoRewrite};
use tokio_util::sync::CancellationToken;

use crate::broker::Broker;
use crate::config::Settings;

/// What object compaction has done on this broker (`/metrics`).
#[derive(Debug, Default)]
pub struct CompactionStats {
    /// Rewrites whose swap landed.
    pub rewrites: AtomicU64,
    /// Batch bytes those rewrites copied.
    pub rewritten_bytes: AtomicU64,
    /// Index entries those rewrites replaced.
    pub replaced_entries: AtomicU64,
    /// Rewrites dropped because a retention cut, DeleteRecords or a new
    /// leader changed the run first (their objects go to GC).
    pub lost: AtomicU64,
    /// Rewrites that failed (an object store or metadata error).
    pub failures: AtomicU64,
}

/// The limits `settings` give.
pub fn limits(settings: &Settings) -> CompactionLimits {
    CompactionLimits {
        small_entry_bytes: settings.object_compaction_small_run_bytes,
        min_age_ms: i64::try_from(settings.object_compaction_min_age_ms).unwrap_or(i64::MAX),
        max_object_bytes: settings.object_compaction_max_object_bytes,
        max_entry_bytes: settings.object_compaction_max_entry_bytes,
        max_entry_span_ms: i64::try_from(settings.object_compaction_max_entry_span_ms)
            .unwrap_or(i64::MAX),
        max_requests_per_second: settings.object_compaction_max_requests_per_second,
        max_bytes_per_second: settings.object_compaction_max_bytes_per_second,
    }
}

/// Runs passes until `shutdown` (not at all when the interval is 0); holds
/// the broker weakly. They run on a thread of their own, with a runtime of
/// its own, at `niceness` (Linux): when produce, fetch and compaction all
/// want the cores, the kernel gives them to produce and fetch first, and
/// compaction takes what is left (its async work on this one thread; the
/// blocking threads it starts, for SQLite, inherit its nice value). The
/// byte and request limits still apply when the cores are idle.
pub fn spawn(broker: Weak<Broker>, interval_ms: u64, niceness: i32, shutdown: CancellationToken) {
    if interval_ms == 0 {
        return;
    }
    let interval = Duration::from_millis(interval_ms);
    let run = move || {
        lower_priority(niceness);
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime,
            Err(e) => {
                tracing::error!(error = %e, "object compaction could not start its runtime; it is off");
                return;
            }
        };
        runtime.block_on(crate::broker::run_periodic(
            broker,
            interval,
            shutdown,
            |broker, shutdown| async move { pass(&broker, &shutdown).await },
        ));
    };
    if let Err(e) = std::thread::Builder::new()
        .name("ls-compaction".into())
        .spawn(run)
    {
        tracing::error!(error = %e, "object compaction could not start its thread; it is off");
    }
}

/// Lowers the calling thread's CPU priority to `niceness` (on Linux a
/// nice value is per thread); logs and goes on at the broker's priority
/// when it cannot.
fn lower_priority(niceness: i32) {
    if niceness == 0 {
        return;
    }
    #[cfg(target_os = "linux")]
    {
        // SAFETY: gettid and setpriority only read their arguments; a
        // thread id is a valid `who` for PRIO_PROCESS on Linux.
        let result = unsafe {
            let tid = libc::gettid();
            libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, niceness)
        };
        if result != 0 {
            let e = std::io::Error::last_os_error();
            tracing::warn!(niceness, error = %e, "object compaction runs at the broker's priority");
        }
    }
    #[cfg(not(target_os = "linux"))]
    tracing::warn!(
        niceness,
        "thread priorities are Linux only; object compaction runs at the broker's priority"
    );
}

/// One pass: the led partitions, `object_compaction_max_partitions_at_once`
/// at a time, each rewritten until it has nothing left to rewrite or the
/// pass's budget is spent.
pub async fn pass(broker: &Broker, shutdown: &CancellationToken) {
    let limits = limits(&broker.settings);
    let at_once = broker
        .settings
        .object_compaction_max_partitions_at_once
        .max(1) as usize;
    let mut budget = broker.settings.object_compaction_max_rewrites_per_pass as usize;
    // In partition order, as flushes lay their runs out: partitions
    // rewritten together then have their runs side by side.
    let mut led: Vec<_> = broker.log.led().into_iter().map(|(tp, _)| tp).collect();
    led.sort_unstable();
    for chunk in led.chunks(at_once) {
        // The partitions of this chunk that may have more to rewrite.
        let mut pending = chunk.to_vec();
        while !pending.is_empty() && budget > 0 && !shutdown.is_cancelled() {
            let now = &pending[..pending.len().min(budget)];
            tokio::task::yield_now().await;
            let answers = broker.log.compact_partitions(now, limits).await;
            let mut again = Vec::new();
            for (tp, answer) in answers {
                // A call that found nothing cost a look at the index, not a rewrite.
                if !matches!(answer, Ok(Err(NoRewrite::NothingToDo))) {
                    budget -= 1;
                }
                if record(broker, tp, answer) {
                    again.push(tp);
                }
            }
            again.extend_from_slice(&pending[now.len()..]);
            pending = again;
        }
        if budget == 0 || shutdown.is_cancelled() {
            return;
        }
    }
}

/// Counts and logs one partition's answer; whether it may have more to
/// rewrite.
fn record(
    broker: &Broker,
    tp: metadata::TopicPartition,
    answer: storage::Result<Result<storage::Rewrite, NoRewrite>>,
) -> bool {
    let stats = &broker.compaction_stats;
    match answer {
        Ok(Ok(rewrite)) => {
            stats.rewrites.fetch_add(1, Ordering::Relaxed);
            stats
                .rewritten_bytes
                .fetch_add(rewrite.bytes, Ordering::Relaxed);
            stats
                .replaced_entries
                .fetch_add(rewrite.old_entries as u64, Ordering::Relaxed);
            true
        }
        Ok(Err(NoRewrite::NothingToDo)) => false,
        Ok(Err(NoRewrite::Lost(reason))) => {
            stats.lost.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(topic_partition = %tp, reason, "a rewrite lost its race");
            false
        }
        // Handed over or fenced meanwhile: its new leader goes on.
        Err(storage::Error::NotLeader(_)) => false,
        Err(e) => {
            stats.failures.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                topic_partition = %tp,
                error = %e,
                "object compaction failed (tried again next pass)"
            );
            false
        }
    }
}
