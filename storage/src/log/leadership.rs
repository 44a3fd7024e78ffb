//! Which partitions this log leads, and how it stops leading them.
//!
//! The broker claims partitions in the metadata store and hands the claims
//! to `Log::lead`; from then on the log assigns their offsets and commits
//! their flushes under the claimed epoch. It stops leading a partition in
//! three ways:
//!
//! - **Hand-over** (`Log::resign`): appends are refused at once, what was
//!   queued drains (bounded by a deadline), then the partition leaves the
//!   log and the caller releases it in the store.
//! - **Fenced**: a commit was refused because another broker claimed the
//!   partition (or fenced this broker's whole session). The partition leaves
//!   the log at once and its waiting appends get `NotLeader`. The log never
//!   takes the store's newer epoch as its own: only a new claim can.
//! - **Uncertain state**: a commit whose outcome is unknown, or refused for
//!   a stale offset, leaves the log's view of the partition unknown; the log
//!   claims it again under its own session, which raises the epoch and
//!   returns the committed state (`reclaim`). If another broker took it
//!   meanwhile, the claim is refused and the partition is dropped.

use std::sync::Arc;
use std::time::Duration;

use metadata::{BrokerSession, PartitionClaim, TopicPartition};

use super::{Inner, Log, new_partition};
use crate::Result;

impl Log {
    /// Leads the claimed partitions (replacing this log's state of any it
    /// already led) as `session`. A new session (after this broker was
    /// fenced and registered again) drops every partition of the old one.
    pub fn lead(&self, session: BrokerSession, claims: Vec<PartitionClaim>) {
        lead(&self.inner, session, claims);
    }

    /// The session this log commits as, once it leads something.
    pub fn session(&self) -> Option<BrokerSession> {
        *self.inner.session.lock().expect("session lock")
    }

    /// Every partition this log leads, with the epoch it leads it at.
    pub fn led(&self) -> Vec<(TopicPartition, i32)> {
        let partitions = self.inner.partitions.read().expect("partitions lock");
        partitions
            .iter()
            .map(|(tp, p)| (*tp, p.state.lock().expect("partition lock").leader_epoch))
            .collect()
    }

    /// Whether this log leads `topic_partition` and takes appends for it.
    pub fn leads(&self, topic_partition: &TopicPartition) -> bool {
        self.inner
            .partition(topic_partition)
            .is_some_and(|p| !p.state.lock().expect("partition lock").resigning)
    }

    /// Hands partitions over: refuses new appends for them at once, waits
    /// (at most `drain`) until what was queued for them is committed or
    /// failed, then stops leading them. Returns each with the epoch it was
    /// led at, for `MetadataStore::release_partitions`. A flush that was
    /// still in flight past the deadline cannot land after the release: its
    /// commit carries the old epoch and is refused.
    pub async fn resign(
        &self,
        partitions: &[TopicPartition],
        drain: Duration,
    ) -> Vec<(TopicPartition, i32)> {
        let inner = &self.inner;
        let mut resigning = Vec::new();
        for tp in partitions {
            if let Some(p) = inner.partition(tp) {
                p.state.lock().expect("partition lock").resigning = true;
                resigning.push((*tp, p));
            }
        }
        let deadline = tokio::time::Instant::now() + drain;
        for (tp, partition) in &resigning {
            let mut committed = partition.high_watermark.subscribe();
            while !drained(inner, tp) {
                // Cancel-safe: both only wait; the loop re-checks.
                tokio::select! {
                    _ = committed.changed() => {}
                    _ = tokio::time::sleep(Duration::from_millis(5)) => {}
                }
                if tokio::time::Instant::now() >= deadline {
                    tracing::warn!(topic_partition = %tp, "handing over a partition whose appends did not drain in time");
                    break;
                }
            }
        }
        let mut map = inner.partitions.write().expect("partitions lock");
        resigning
            .into_iter()
            .filter_map(|(tp, p)| {
                // Dropped meanwhile (fenced): nothing to release.
                let still = map.get(&tp).is_some_and(|q| Arc::ptr_eq(q, &p));
                still.then(|| {
                    map.remove(&tp);
                    (tp, p.state.lock().expect("partition lock").leader_epoch)
                })
            })
            .collect()
    }
}

/// No batch of the partition is queued or in a flush that is not settled.
fn drained(inner: &Inner, tp: &TopicPartition) -> bool {
    let queued = inner
        .pending
        .lock()
        .expect("pending lock")
        .batches
        .iter()
        .any(|b| b.topic_partition == *tp);
    let in_flight = inner.partition(tp).is_some_and(|p| {
        let s = p.state.lock().expect("partition lock");
        s.reserved_next_offset != s.next_offset
    });
    !queued && !in_flight
}

pub(crate) fn lead(inner: &Inner, session: BrokerSession, claims: Vec<PartitionClaim>) {
    let mut current = inner.session.lock().expect("session lock");
    let mut map = inner.partitions.write().expect("partitions lock");
    if current.is_some_and(|s| s != session) {
        map.clear();
    }
    *current = Some(session);
    for claim in claims {
        let tp = claim.state.topic_partition;
        let partition = new_partition(claim.state);
        partition
            .state
            .lock()
            .expect("partition lock")
            .producers
            .load(claim.producers);
        if let Some(old) = map.insert(tp, Arc::new(partition)) {
            // Fetches waiting on the old one wake and re-read.
            old.high_watermark.send_modify(|_| {});
        }
    }
}

/// Stops leading `partitions` at once (fenced): their next appends get
/// `NotLeader`. Every partition when `partitions` is `None` (the whole
/// session was fenced).
pub(crate) fn drop_partitions(inner: &Inner, partitions: Option<&[TopicPartition]>, why: &str) {
    let mut map = inner.partitions.write().expect("partitions lock");
    let dropped: Vec<TopicPartition> = match partitions {
        None => map.drain().map(|(tp, _)| tp).collect(),
        Some(tps) => tps
            .iter()
            .filter(|tp| map.remove(tp).is_some())
            .copied()
            .collect(),
    };
    if !dropped.is_empty() {
        tracing::warn!(
            partitions = dropped.len(),
            first = %dropped[0],
            "fenced: stopped leading partitions another broker now leads ({why})"
        );
    }
}

/// Claims `partitions` again under this log's own session and replaces
/// their state with the committed one. Those another broker leads now (or
/// all, if this session was fenced) are dropped.
pub(crate) async fn reclaim(inner: &Inner, partitions: &[TopicPartition]) -> Result<()> {
    let Some(session) = *inner.session.lock().expect("session lock") else {
        return Ok(());
    };
    let now_ms = inner.clock.now_ms();
    let answers = match inner
        .metadata
        .claim_partitions(session, partitions, now_ms)
        .await
    {
        Ok(answers) => answers,
        Err(e @ metadata::Error::SessionFenced(_)) => {
            drop_partitions(inner, None, &e.to_string());
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    };
    let mut claims = Vec::new();
    let mut lost = Vec::new();
    for (tp, answer) in partitions.iter().zip(answers) {
        match answer {
            Ok(claim) => claims.push(claim),
            Err(e) => {
                tracing::info!(topic_partition = %tp, error = %e, "could not claim a partition again");
                lost.push(*tp);
            }
        }
    }
    drop_partitions(inner, Some(&lost), "claimed by another broker");
    // Only those still led: one dropped meanwhile stays dropped.
    let claims = {
        let map = inner.partitions.read().expect("partitions lock");
        claims
            .into_iter()
            .filter(|c| map.contains_key(&c.state.topic_partition))
            .collect()
    };
    lead(inner, session, claims);
    Ok(())
}
