//! Retention: every `log_retention_check_interval_ms`, each broker moves
//! the log start of the partitions it leads past what their topic's
//! `retention.ms` and `retention.bytes` let go (topics whose
//! `cleanup.policy` includes `delete`; Kafka cuts no other). The cut itself
//! is the log's (`storage::Log::enforce_retention`); the objects it frees
//! are deleted by garbage collection after its grace period.

use std::sync::Weak;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use storage::RetentionLimits;
use tokio_util::sync::CancellationToken;

use crate::broker::Broker;

/// What retention has done on this broker (`/metrics`).
#[derive(Debug, Default)]
pub struct RetentionStats {
    /// Passes over the partitions this broker leads.
    pub passes: AtomicU64,
    /// Log starts moved by retention.
    pub log_start_moves: AtomicU64,
    /// Offsets the log starts moved past.
    pub offsets_removed: AtomicU64,
    /// Partitions whose cut failed (tried again next pass).
    pub failures: AtomicU64,
}

/// Runs passes until `shutdown`; holds the broker weakly.
pub fn spawn(broker: Weak<Broker>, interval: Duration, shutdown: CancellationToken) {
    crate::broker::spawn_periodic(broker, interval, shutdown, |broker, _| async move {
        pass(&broker).await
    });
}

/// One pass: each led partition of a `delete` topic, one after another
/// (a pass is a few index reads per partition; cuts are rare).
pub async fn pass(broker: &Broker) {
    let stats = &broker.retention_stats;
    stats.passes.fetch_add(1, Ordering::Relaxed);
    for (tp, _) in broker.log.led() {
        let Some(view) = broker.topics.by_id(tp.topic_id) else {
            continue;
        };
        let settings = &view.settings;
        if !settings.cleanup_policy_delete {
            continue;
        }
        let limits = RetentionLimits::from_kafka(settings.retention_ms, settings.retention_bytes);
        let before = broker.log.offsets(&tp).map_or(0, |(start, _, _)| start);
        match broker.log.enforce_retention(tp, limits).await {
            Ok(None) => {}
            Ok(Some(log_start)) => {
                stats.log_start_moves.fetch_add(1, Ordering::Relaxed);
                let removed = u64::try_from(log_start - before).unwrap_or(0);
                stats.offsets_removed.fetch_add(removed, Ordering::Relaxed);
            }
            // Handed over or fenced meanwhile: its new leader cuts it.
            Err(storage::Error::NotLeader(_)) => {}
            Err(e) => {
                stats.failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    topic = view.topic.name,
                    partition = tp.partition,
                    error = %e,
                    "retention could not cut a partition (tried again next pass)"
                );
            }
        }
    }
}
