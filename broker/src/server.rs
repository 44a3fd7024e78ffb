//! The accept loop and graceful shutdown.
//!
//! Connections are capped by a semaphore (`max_connections`): the loop
//! accepts only while it holds a permit, so extra clients wait in the
//! kernel's backlog instead of costing memory. Connections from one address
//! beyond `max_connections_per_ip` are closed as soon as they are accepted,
//! as Kafka does, so one host cannot take every slot. On shutdown the loop stops
//! accepting, every connection stops reading new requests and answers the
//! ones it has, the log flushes what it buffered, and `run` returns.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::broker::Broker;
use crate::connection;

/// One connection's place in the count of connections from its address
/// (Kafka's `max.connections.per.ip`), given back when dropped.
struct PerIp {
    counts: Arc<Mutex<HashMap<IpAddr, usize>>>,
    ip: IpAddr,
}

impl PerIp {
    fn admit(
        counts: &Arc<Mutex<HashMap<IpAddr, usize>>>,
        ip: IpAddr,
        limit: usize,
    ) -> Option<PerIp> {
        let mut map = counts
            .lock()
            .expect("never poisoned: no panics under the lock");
        let count = map.entry(ip).or_insert(0);
        if *count >= limit {
            return None;
        }
        *count += 1;
        Some(PerIp {
            counts: counts.clone(),
            ip,
        })
    }
}

impl Drop for PerIp {
    fn drop(&mut self) {
        let mut map = self
            .counts
            .lock()
            .expect("never poisoned: no panics under the lock");
        if let Some(count) = map.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

/// Serves `listener` until `shutdown` is cancelled, then drains and returns.
pub async fn run(broker: Arc<Broker>, listener: TcpListener, shutdown: CancellationToken) {
    let connection_slots = Arc::new(Semaphore::new(broker.settings.max_connections));
    let per_ip = Arc::new(Mutex::new(HashMap::new()));
    let tracker = TaskTracker::new();
    loop {
        // Cancel-safe: dropping an unfinished acquire or accept loses nothing.
        let permit = tokio::select! {
            permit = connection_slots.clone().acquire_owned() => permit.expect("semaphore never closed"),
            _ = shutdown.cancelled() => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Usually EMFILE or a connection reset before accept; back
                    // off briefly instead of spinning on the error.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        let Some(per_ip) = PerIp::admit(&per_ip, peer.ip(), broker.settings.max_connections_per_ip)
        else {
            tracing::info!(%peer, limit = broker.settings.max_connections_per_ip, "max_connections_per_ip reached; closing the new connection");
            broker.metrics.connections_refused.inc();
            drop(stream);
            continue;
        };
        let broker = broker.clone();
        let shutdown = shutdown.clone();
        broker.metrics.connections_accepted.inc();
        broker.metrics.connections_open.inc();
        tracker.spawn(async move {
            connection::serve(broker.clone(), stream, peer, shutdown).await;
            broker.metrics.connections_open.dec();
            drop(per_ip);
            drop(permit);
        });
    }
    drop(listener);
    // Hand the partitions over first, so their next leaders take them at
    // once; produces still arriving here get NOT_LEADER_OR_FOLLOWER and
    // move, as in Kafka's controlled shutdown.
    broker.cluster.leave(&broker.log).await;
    broker.shutdown.cancel();
    tracker.close();
    let grace = Duration::from_millis(broker.settings.shutdown_timeout_ms);
    if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
        tracing::warn!(
            timeout_ms = broker.settings.shutdown_timeout_ms,
            "connections still open at shutdown; closing them"
        );
    }
    broker.log.shutdown().await;
    tracing::info!("shutdown complete");
}
