//! Liveness and readiness, as Kubernetes' probes ask for them.
//!
//! - Live (`/healthz`): the cluster loop (lease renewal, view watch) has
//!   turned recently. It turns while the metadata store is down too, so an
//!   outage of a store never makes Kubernetes restart healthy brokers.
//! - Ready (`/readyz`): not shutting down, the first rebalance done (the
//!   partitions this broker leads are loaded), not on probation, and both
//!   stores answered a small request within `PROBE_TIMEOUT`. Probe answers
//!   are reused for `PROBE_REUSE`, so a scraper or a probe storm costs at
//!   most one store request of each kind per second.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::broker::Broker;

const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
const PROBE_REUSE: Duration = Duration::from_secs(1);
/// A key prefix nothing is written under: listing it costs one LIST
/// request and returns nothing.
const PROBE_PREFIX: &str = "readyz-probe/";

pub struct Health {
    started: Instant,
    stopping: AtomicBool,
    /// Milliseconds after `started` of the cluster loop's latest turn.
    loop_turned_ms: AtomicU64,
    partitions_loaded: AtomicBool,
    last_ready: AtomicBool,
    probe: tokio::sync::Mutex<Option<(Instant, Result<(), String>)>>,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            started: Instant::now(),
            stopping: AtomicBool::new(false),
            loop_turned_ms: AtomicU64::new(0),
            partitions_loaded: AtomicBool::new(false),
            last_ready: AtomicBool::new(false),
            probe: tokio::sync::Mutex::new(None),
        }
    }
}

impl Health {
    /// Readiness goes false for good: the first step of a shutdown.
    pub fn stopping(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        self.last_ready.store(false, Ordering::SeqCst);
    }

    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// The cluster loop turned (called at the top of each turn).
    pub fn loop_turned(&self) {
        let ms = self.started.elapsed().as_millis() as u64;
        self.loop_turned_ms.store(ms, Ordering::Relaxed);
    }

    /// The first rebalance is done: the partitions placed here are led.
    pub fn partitions_loaded(&self) {
        self.partitions_loaded.store(true, Ordering::SeqCst);
    }

    /// What the latest `/readyz` answered (for the `ready` gauge).
    pub fn last_ready(&self) -> bool {
        self.last_ready.load(Ordering::SeqCst)
    }

    /// `Ok` while the cluster loop turns; `stall` is how long it may not.
    pub fn liveness(&self, stall: Duration) -> Result<(), String> {
        if self.is_stopping() {
            return Ok(()); // the loop ends on shutdown; the process is exiting
        }
        let now = self.started.elapsed();
        let turned = Duration::from_millis(self.loop_turned_ms.load(Ordering::Relaxed));
        let since = now.saturating_sub(turned);
        if since > stall {
            return Err(format!(
                "the cluster loop has not turned for {} ms (limit {} ms)",
                since.as_millis(),
                stall.as_millis()
            ));
        }
        Ok(())
    }

    /// `Ok` when the broker should get traffic; the reason otherwise.
    pub async fn readiness(&self, broker: &Broker) -> Result<(), String> {
        let ready = self.check(broker).await;
        self.last_ready.store(ready.is_ok(), Ordering::SeqCst);
        ready
    }

    async fn check(&self, broker: &Broker) -> Result<(), String> {
        if self.is_stopping() {
            return Err("shutting down".to_string());
        }
        if !self.partitions_loaded.load(Ordering::SeqCst) {
            return Err("joining the cluster: led partitions not loaded yet".to_string());
        }
        if broker.cluster.on_probation() {
            return Err(
                "on probation: the metadata store has not confirmed this broker's lease"
                    .to_string(),
            );
        }
        let mut probe = self.probe.lock().await;
        if let Some((at, answer)) = probe.as_ref()
            && at.elapsed() < PROBE_REUSE
        {
            return answer.clone();
        }
        let answer = probe_stores(broker).await;
        *probe = Some((Instant::now(), answer.clone()));
        answer
    }
}

/// One small request to each store, each bounded by `PROBE_TIMEOUT`.
async fn probe_stores(broker: &Broker) -> Result<(), String> {
    let metadata = tokio::time::timeout(PROBE_TIMEOUT, broker.metadata.cluster_version());
    let objects = tokio::time::timeout(PROBE_TIMEOUT, broker.log_objects.list(PROBE_PREFIX));
    let (metadata, objects) = tokio::join!(metadata, objects);
    let problems: Vec<String> = [
        ("metadata store", problem(metadata)),
        ("object store", problem(objects)),
    ]
    .into_iter()
    .filter_map(|(store, why)| Some(format!("{store} unreachable: {}", why?)))
    .collect();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

/// Why a probe failed, if it did.
fn problem<T, E: std::fmt::Display>(
    answer: Result<Result<T, E>, tokio::time::error::Elapsed>,
) -> Option<String> {
    match answer {
        Ok(Ok(_)) => None,
        Ok(Err(e)) => Some(e.to_string()),
        Err(_) => Some(format!("no answer within {} ms", PROBE_TIMEOUT.as_millis())),
    }
}
