//! Garbage collection of objects: deletes what no index entry references.
//!
//! Garbage comes from flushes whose write or commit failed (a timed-out or
//! uncertain write leaves its object, in case the commit applied), from a
//! crash between a write and its commit, and from deleted topics (an object
//! goes once no topic's entry names it: objects hold many partitions).
//!
//! A pass lists the store, skips keys that are not ours (`object_key`),
//! objects younger than the grace period (a write may still be committing)
//! and objects the log has not settled (`UnsettledObjects`: in flight, or
//! with a commit that timed out and may still apply),
//! asks the metadata store which of the rest are referenced, and deletes an
//! unreferenced object only once it has been seen unreferenced for the grace
//! period, so a read that found its index entry just before the topic was
//! deleted can finish. The grace period must exceed the longest write plus
//! commit and the longest read. The "seen unreferenced since" times live in
//! memory: a restart only delays deletion.
//!
//! The store's prefix must belong to one cluster: objects another cluster's
//! metadata references look unreferenced here.
//!
//! With several brokers, one collects (the broker passes `only_when`: the
//! controller, the live broker with the lowest node id). Objects other
//! brokers are writing are younger than the grace period; a commit of
//! another broker whose outcome was uncertain is decided within seconds
//! (its broker claims the partitions again, or its session is fenced once
//! its lease lapses, and no commit of a fenced session applies), far within
//! the grace period, which must exceed the broker session timeout.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use metadata::MetadataStore;
use tokio_util::sync::CancellationToken;

use crate::log::UnsettledObjects;
use crate::object_key::object_key_time_ms;
use crate::{Clock, ObjectStore, Result};

/// Keys asked about in one metadata call.
const REFERENCE_BATCH: usize = 500;

/// What one pass saw and did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GcPass {
    /// Keys listed under the store's prefix.
    pub listed: usize,
    /// Keys that are not object keys of ours: never deleted.
    pub foreign: usize,
    /// Objects younger than the grace period.
    pub young: usize,
    /// Objects whose flush the log has not settled.
    pub unsettled: usize,
    pub referenced: usize,
    /// Unreferenced objects not yet unreferenced for the grace period.
    pub waiting: usize,
    pub deleted: usize,
    /// Deletes that failed (tried again next pass).
    pub failed: usize,
}

/// What the collector has done since it started, for `/metrics`.
#[derive(Debug, Default)]
pub struct GcStats {
    /// Passes run (by this broker; one broker of a cluster collects).
    pub passes: AtomicU64,
    /// Unreferenced objects deleted.
    pub deleted_objects: AtomicU64,
    /// Deletes that failed (retried next pass).
    pub failed_deletes: AtomicU64,
}

pub struct ObjectCollector {
    stats: Arc<GcStats>,
    store: Arc<dyn ObjectStore>,
    metadata: Arc<dyn MetadataStore>,
    clock: Arc<dyn Clock>,
    grace_ms: i64,
    unsettled: Option<Arc<UnsettledObjects>>,
    /// Passes run only while this says so (one broker of a cluster collects).
    only_when: Option<Arc<dyn Fn() -> bool + Send + Sync>>,
    /// Unreferenced objects and when a pass first saw them so.
    unreferenced_since: Mutex<HashMap<String, i64>>,
}

impl ObjectCollector {
    pub fn new(
        store: Arc<dyn ObjectStore>,
        metadata: Arc<dyn MetadataStore>,
        clock: Arc<dyn Clock>,
        grace_ms: i64,
    ) -> ObjectCollector {
        ObjectCollector {
            stats: Arc::default(),
            store,
            metadata,
            clock,
            grace_ms,
            unsettled: None,
            only_when: None,
            unreferenced_since: Mutex::new(HashMap::new()),
        }
    }

    /// Counts its work in `stats` (the broker's, read by `/metrics`).
    pub fn counting(mut self, stats: Arc<GcStats>) -> ObjectCollector {
        self.stats = stats;
        self
    }

    /// Also leaves alone the objects `unsettled` names (the log's).
    pub fn keeping(mut self, unsettled: Arc<UnsettledObjects>) -> ObjectCollector {
        self.unsettled = Some(unsettled);
        self
    }

    /// Runs the passes of `spawn` only while `collecting` says so: in a
    /// cluster, one broker lists the store instead of every broker.
    pub fn only_when(mut self, collecting: Arc<dyn Fn() -> bool + Send + Sync>) -> ObjectCollector {
        self.only_when = Some(collecting);
        self
    }

    /// One pass over the store.
    pub async fn collect(&self) -> Result<GcPass> {
        let now = self.clock.now_ms();
        let mut pass = GcPass::default();
        let mut old = Vec::new();
        for key in self.store.list("").await? {
            pass.listed += 1;
            match object_key_time_ms(&key) {
                None => pass.foreign += 1,
                Some(created) if now - created < self.grace_ms => pass.young += 1,
                Some(_) if self.unsettled.as_ref().is_some_and(|u| u.contains(&key)) => {
                    pass.unsettled += 1
                }
                Some(_) => old.push(key),
            }
        }
        let mut referenced = HashSet::new();
        for chunk in old.chunks(REFERENCE_BATCH) {
            referenced.extend(self.metadata.referenced_objects(chunk).await?);
        }
        let doomed: Vec<String> = {
            let mut since = self.unreferenced_since.lock().expect("gc lock");
            let unreferenced: HashSet<&String> =
                old.iter().filter(|k| !referenced.contains(*k)).collect();
            since.retain(|key, _| unreferenced.contains(key));
            pass.referenced = old.len() - unreferenced.len();
            unreferenced
                .into_iter()
                .filter(|key| {
                    let first_seen = *since.entry((*key).clone()).or_insert(now);
                    let due = now - first_seen >= self.grace_ms;
                    if !due {
                        pass.waiting += 1;
                    }
                    due
                })
                .cloned()
                .collect()
        };
        let mut deleted = Vec::new();
        for key in doomed {
            match self.store.delete(&key).await {
                Ok(()) => deleted.push(key),
                Err(e) => {
                    pass.failed += 1;
                    tracing::warn!(object_key = key, error = %e, "could not delete an unreferenced object");
                }
            }
        }
        pass.deleted = deleted.len();
        let count = |c: &AtomicU64, n: usize| c.fetch_add(n as u64, Ordering::Relaxed);
        count(&self.stats.passes, 1);
        count(&self.stats.deleted_objects, pass.deleted);
        count(&self.stats.failed_deletes, pass.failed);
        if !deleted.is_empty() {
            self.metadata.forget_objects(&deleted).await?;
            let mut since = self.unreferenced_since.lock().expect("gc lock");
            for key in &deleted {
                since.remove(key);
            }
        }
        Ok(pass)
    }

    /// Runs a pass every `interval` until `shutdown`.
    pub fn spawn(
        self: Arc<Self>,
        interval: Duration,
        shutdown: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut every = tokio::time::interval(interval);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            every.tick().await; // the first tick is immediate: let start-up settle
            loop {
                tokio::select! {
                    _ = every.tick() => {}
                    _ = shutdown.cancelled() => return,
                }
                if self
                    .only_when
                    .as_ref()
                    .is_some_and(|collecting| !collecting())
                {
                    // Another broker collects; what this one saw goes stale.
                    self.unreferenced_since.lock().expect("gc lock").clear();
                    continue;
                }
                match self.collect().await {
                    Ok(pass) if pass.deleted > 0 || pass.failed > 0 => {
                        tracing::info!(?pass, "object garbage collection")
                    }
                    Ok(pass) => tracing::debug!(?pass, "object garbage collection"),
                    Err(e) => tracing::warn!(error = %e, "object garbage collection failed"),
                }
            }
        })
    }
}

#[cfg(test)]
mod tests;
