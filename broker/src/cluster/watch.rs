//! The cluster loop: renews the lease, watches the cluster version, and
//! rebalances when the view changed.

use std::sync::Weak;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::broker::Broker;

/// Runs until `shutdown` or until the broker is dropped.
pub async fn run(broker: Weak<Broker>, shutdown: CancellationToken) {
    let (watch, heartbeat) = match broker.upgrade() {
        Some(b) => {
            let s = b.cluster.settings();
            (
                Duration::from_millis(s.watch_interval_ms),
                Duration::from_millis(s.heartbeat_interval_ms),
            )
        }
        None => return,
    };
    let mut last_heartbeat = Instant::now();
    let mut last_live: Vec<i32> = Vec::new();
    loop {
        // Cancel-safe: both only wait.
        tokio::select! {
            _ = tokio::time::sleep(watch) => {}
            _ = shutdown.cancelled() => return,
        }
        let Some(b) = broker.upgrade() else { return };
        b.health.loop_turned();
        let beat = last_heartbeat.elapsed() >= heartbeat;
        if beat {
            last_heartbeat = Instant::now();
            if let Err(e) = b.cluster.heartbeat(&b.log).await {
                tracing::warn!(error = %e, "could not renew this broker's lease");
            }
        }
        let moved = match b.cluster.reload_view(false).await {
            Ok(moved) => moved,
            Err(e) => {
                tracing::warn!(error = %e, "could not read the cluster view");
                continue;
            }
        };
        if moved && let Err(e) = b.topics.refresh(b.metadata.as_ref(), &b.defaults).await {
            tracing::warn!(error = %e, "could not reload topics");
        }
        let view = b.cluster.view();
        let live: Vec<i32> = view.live.iter().map(|x| x.session.node_id).collect();
        let live_changed = live != last_live;
        if live_changed {
            tracing::info!(?live, "live brokers changed");
            b.groups.keep_placed(b.cluster.group_placement()).await;
        }
        last_live = live;
        if moved || live_changed || beat {
            b.cluster.rebalance(&b.log).await;
            b.health.partitions_loaded();
        }
    }
}
