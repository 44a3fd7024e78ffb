//! The flusher and the committer: seal the flush buffer, write one object per
//! flush, commit its index entries, answer the waiting appends.
//!
//! Two tasks, joined by a bounded queue (`max_flushes_in_flight`):
//!
//! - The **flusher** seals the buffer, assigns offsets from each partition's
//!   `reserved_next_offset` (committed offsets plus those of flushes still in
//!   flight), builds the object and starts writing it. Writes of several
//!   flushes overlap, so one slow fsync does not stall everything behind it.
//! - The **committer** takes flushes in seal order, waits for each object to
//!   be durable, commits its index entries in one metadata transaction, and
//!   only then answers the appends. Commits are strictly in order.
//!
//! When a flush fails (object write or commit), the flushes sealed before the
//! failure was handled carry offsets that now follow a hole: the failure
//! moves the `generation` on and resets the reserved offsets to the committed
//! ones (under the seal lock), and the committer answers those stale flushes
//! with a retriable error without committing them. Flushes sealed afterwards
//! start from committed offsets and commit normally. A topic deleted while
//! its batches were in flight fails only its own partitions' appends. Nothing
//! is acknowledged that is not committed, and the metadata store's
//! conditional commit refuses any flush that would leave a gap, whatever the
//! timing.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use metadata::{FlushCommit, ProducerState};
use tokio::sync::mpsc;

use super::producers::FlushOutcome;
use super::seal::{OpenFlush, PlacedRun, SealedFlush, seal_step};
use super::{Inner, stats};
use crate::{Error, Result};

/// Runs the flusher and the committer until shutdown has drained everything.
pub(crate) async fn run(inner: Arc<Inner>) {
    let (sealed_tx, sealed_rx) = mpsc::channel(inner.config.max_flushes_in_flight.max(1));
    let committer = tokio::spawn(run_committer(inner.clone(), sealed_rx));
    run_flusher(&inner, sealed_tx).await;
    if let Err(e) = committer.await {
        tracing::error!(error = %e, "committer task failed");
    }
}

async fn run_flusher(inner: &Arc<Inner>, sealed: mpsc::Sender<SealedFlush>) {
    let part_size = inner.store.part_size();
    loop {
        // Wait for a first pending batch (or shutdown with nothing left).
        let first_at = loop {
            {
                // `enqueue` checks for shutdown under this same lock.
                let pending = inner.pending.lock().expect("pending lock");
                if let Some(first_at) = pending.first_at.filter(|_| !pending.batches.is_empty()) {
                    break first_at;
                }
                if inner.shutdown.is_cancelled() {
                    return; // dropping `sealed` lets the committer drain and stop
                }
            }
            // Cancel-safe: `notified` and `cancelled` hold no state we lose.
            tokio::select! {
                _ = inner.pending_changed.notified() => {}
                _ = inner.shutdown.cancelled() => {}
            }
        };
        let mut open: Option<OpenFlush> = None;
        // Let the flush fill until the interval passes or it is big enough;
        // a streaming store gets its parts meanwhile.
        let deadline = first_at + Duration::from_millis(inner.config.flush_interval_ms);
        loop {
            seal_a_part(inner, &mut open, part_size).await;
            let buffered = inner.pending.lock().expect("pending lock").bytes;
            let sealed_bytes = open.as_ref().map_or(0, |o| o.bytes() as usize);
            if buffered + sealed_bytes >= inner.config.flush_max_bytes
                || Instant::now() >= deadline
                || inner.shutdown.is_cancelled()
            {
                break;
            }
            // Cancel-safe: a lost notification only means re-checking the sizes.
            tokio::select! {
                _ = tokio::time::sleep_until(deadline.into()) => {}
                _ = inner.pending_changed.notified() => {}
                _ = inner.shutdown.cancelled() => {}
            }
        }
        // Wait for room in the pipeline before closing the flush; batches
        // keep gathering meanwhile (and a streaming store keeps getting parts).
        let slot = loop {
            tokio::select! {
                slot = sealed.reserve() => break slot,
                _ = inner.pending_changed.notified(), if part_size.is_some() => {
                    seal_a_part(inner, &mut open, part_size).await;
                }
            }
        };
        let Ok(slot) = slot else {
            if let Some(open) = open {
                fail_open(inner, open).await;
            }
            return; // the committer is gone; appends are answered by their dropped senders
        };
        let batches = std::mem::take(&mut *inner.pending.lock().expect("pending lock")).batches;
        if let Some(stale) = seal_step(inner, &mut open, batches, None) {
            fail_open(inner, stale).await;
        }
        if let Some(flush) = open.and_then(|o| o.finish(inner)) {
            slot.send(flush);
        }
    }
}

/// With a streaming store, seals what is buffered into the open flush once
/// it is at least a part's worth, so the part goes out while the flush
/// still fills.
async fn seal_a_part(inner: &Arc<Inner>, open: &mut Option<OpenFlush>, part_size: Option<usize>) {
    let Some(part_size) = part_size else {
        return;
    };
    let batches = {
        let mut pending = inner.pending.lock().expect("pending lock");
        if pending.bytes < part_size {
            return;
        }
        // Keep `first_at`: the flush's interval runs from its first batch.
        pending.bytes = 0;
        std::mem::take(&mut pending.batches)
    };
    if let Some(stale) = seal_step(inner, open, batches, Some(part_size)) {
        fail_open(inner, stale).await;
    }
}

/// Fails an open flush that cannot be committed: sealed before an earlier
/// flush failed (its offsets follow a hole), or left when the log stops.
async fn fail_open(inner: &Inner, open: OpenFlush) {
    let (object_key, runs, outcome) = open.abandon();
    let why = "an earlier flush failed; retry".to_string();
    answer_failed(inner, &object_key, runs, &outcome, why, true).await;
}

async fn run_committer(inner: Arc<Inner>, mut sealed: mpsc::Receiver<SealedFlush>) {
    while let Some(flush) = sealed.recv().await {
        commit(&inner, flush).await;
    }
}

/// Waits for the object, commits its index entries, answers its appends.
async fn commit(inner: &Inner, flush: SealedFlush) {
    let SealedFlush {
        generation,
        object_key,
        object,
        runs,
        write,
        outcome,
        sealed_at,
        room: _room,
    } = flush;
    let written = match write.await {
        Ok(result) => result,
        Err(e) => Err(Error::Unavailable(format!("object write task failed: {e}"))),
    };
    let write_took = sealed_at.elapsed();
    let write_ms = write_took.as_secs_f64() * 1e3;
    if let Err(e) = written {
        stats::bump(&inner.stats.write_failures, 1);
        tracing::warn!(object_key, error = %e, "object write failed; failing the flush");
        let why = format!("object write failed: {e}");
        let kind = match e {
            Error::TimedOut(_) => FailureKind::WriteTimedOut,
            _ => FailureKind::Refused,
        };
        return fail(inner, &object_key, runs, &outcome, why, kind).await;
    }
    if generation != inner.generation.load(Ordering::Acquire) {
        // Sealed before an earlier flush failed: its offsets follow a hole.
        // The failure already reset the reservations; only answer.
        stats::bump(&inner.stats.stale_flushes, 1);
        let why = "an earlier flush failed; retry".to_string();
        return answer_failed(inner, &object_key, runs, &outcome, why, true).await;
    }
    crate::failpoint::crash_point("flush.before_commit");
    let committing = Instant::now();
    let committed = commit_runs(inner, &object_key, object.len(), runs).await;
    inner.stats.commit_latency.observe(committing.elapsed());
    let (runs, gone) = match committed {
        Ok(split) => split,
        Err((e, runs)) => {
            tracing::warn!(object_key, error = %e, "index commit failed; failing the flush");
            let kind = match &e {
                Error::Metadata(metadata::Error::SessionFenced(_)) => FailureKind::SessionFenced,
                Error::Metadata(
                    metadata::Error::OffsetMismatch { .. } | metadata::Error::UnknownTopic(_),
                ) => FailureKind::RefusedReclaim,
                _ => FailureKind::Uncertain,
            };
            stats::bump(
                match kind {
                    FailureKind::SessionFenced => &inner.stats.commit_fenced,
                    FailureKind::RefusedReclaim => &inner.stats.commit_not_applied,
                    _ => &inner.stats.commit_uncertain,
                },
                1,
            );
            let why = format!("index commit failed: {e}");
            return fail(inner, &object_key, runs, &outcome, why, kind).await;
        }
    };
    crate::failpoint::crash_point("flush.after_commit");
    stats::bump(&inner.stats.flushes, 1);
    stats::bump(&inner.stats.flushed_bytes, object.len() as u64);
    inner.produce_rate.count(object.len() as u64);
    inner.stats.flush_latency.observe(sealed_at.elapsed());
    inner.stats.object_write_latency.observe(write_took);
    tracing::debug!(
        object_key,
        object_bytes = object.len(),
        partitions = runs.len(),
        write_ms,
        commit_ms = sealed_at.elapsed().as_secs_f64() * 1e3 - write_ms,
        "flush"
    );
    for (run, why) in gone {
        let tp = run.entry.topic_partition;
        for (reply, _) in run.replies {
            let _ = reply.send(Err(match why {
                Gone::Deleted => Error::UnknownTopicOrPartition(tp),
                Gone::Fenced => Error::NotLeader(tp),
            }));
        }
    }
    inner.unsettled.settled(&object_key, true);
    inner
        .tail_cache
        .lock()
        .expect("tail cache lock")
        .insert(object_key, object);
    for run in runs {
        {
            let mut s = run.partition.state.lock().expect("partition lock");
            for producer in &run.producers {
                s.producers.commit(producer);
            }
            s.next_offset = run.entry.last_offset + 1;
            s.recent.push_back(run.entry.clone());
            while s.recent.len() > inner.config.recent_index_entries {
                s.recent.pop_front();
            }
        }
        run.partition
            .high_watermark
            .send_replace(run.entry.last_offset + 1);
        for (reply, result) in run.replies {
            let _ = reply.send(Ok(result));
        }
    }
    outcome.committed();
}

/// How sure we are that a failed flush changed nothing in the metadata store.
enum FailureKind {
    /// The object write failed: nothing was committed.
    Refused,
    /// The object write timed out: nothing was committed, but the write
    /// may still complete, so its object is not deleted here.
    WriteTimedOut,
    /// The store refused the commit (offset mismatch, unknown topic):
    /// nothing was committed, but our view of the partitions is stale; they
    /// are claimed again, which reads the committed state.
    RefusedReclaim,
    /// This broker's session was fenced: it leads nothing any more.
    SessionFenced,
    /// The commit may or may not have applied (an I/O error, a timeout whose
    /// read-back failed): keep the object, which the index may reference,
    /// and claim the partitions again to learn their committed state.
    Uncertain,
}

/// Fails a flush: moves the generation on (flushes sealed after it carry
/// offsets that follow a hole and will be answered as stale), resets every
/// partition's reserved offsets to the committed ones, and answers its
/// appends with a retriable error.
async fn fail(
    inner: &Inner,
    object_key: &str,
    runs: Vec<PlacedRun>,
    flush: &FlushOutcome,
    why: String,
    kind: FailureKind,
) {
    match kind {
        FailureKind::RefusedReclaim | FailureKind::Uncertain => {
            let mut partitions: Vec<_> = runs.iter().map(|r| r.entry.topic_partition).collect();
            partitions.sort();
            partitions.dedup();
            if let Err(e) = super::leadership::reclaim(inner, &partitions).await {
                // Still uncertain: drop them; the broker claims them again.
                tracing::warn!(error = %e, "could not claim partitions again after a failed commit");
                super::leadership::drop_partitions(inner, Some(&partitions), "state unknown");
            }
        }
        FailureKind::SessionFenced => super::leadership::drop_partitions(inner, None, &why),
        FailureKind::Refused | FailureKind::WriteTimedOut => {}
    }
    {
        let _seal = inner.seal_lock.lock().expect("seal lock");
        inner.generation.fetch_add(1, Ordering::AcqRel);
        for partition in inner.partitions.read().expect("partitions lock").values() {
            let mut s = partition.state.lock().expect("partition lock");
            s.reserved_next_offset = s.next_offset;
            s.producers.reset_to_committed();
        }
    }
    // A timed-out write may still land, an uncertain commit still apply:
    // leave their objects to garbage collection, which keeps them while
    // `unsettled` says so.
    let certain = matches!(
        kind,
        FailureKind::Refused | FailureKind::RefusedReclaim | FailureKind::SessionFenced
    );
    answer_failed(inner, object_key, runs, flush, why, certain).await;
}

/// Answers a flush's appends with a retriable error; deletes its object when
/// it is certainly referenced by nothing.
async fn answer_failed(
    inner: &Inner,
    object_key: &str,
    runs: Vec<PlacedRun>,
    flush: &FlushOutcome,
    why: String,
    delete_object: bool,
) {
    flush.failed(&why);
    if delete_object && let Err(e) = inner.store.delete(object_key).await {
        tracing::warn!(object_key, error = %e, "could not delete an uncommitted object");
    }
    inner.unsettled.settled(object_key, delete_object);
    for run in runs {
        // A partition this log no longer leads sends the client to the leader.
        let tp = run.entry.topic_partition;
        let led = inner
            .partition(&tp)
            .is_some_and(|p| !p.state.lock().expect("partition lock").resigning);
        for (reply, _) in run.replies {
            let _ = reply.send(Err(if led {
                Error::Unavailable(why.clone())
            } else {
                Error::NotLeader(tp)
            }));
        }
    }
}

/// Why a run of a flush was set apart instead of committed.
#[derive(Clone, Copy)]
enum Gone {
    /// Its topic was deleted while it was in flight.
    Deleted,
    /// Another broker leads its partition now.
    Fenced,
}

/// A flush's runs after its commit: (committed, set apart and why).
type CommittedRuns = (Vec<PlacedRun>, Vec<(PlacedRun, Gone)>);

/// Commits the runs' index entries in one transaction. The store refuses
/// the whole commit when one partition's topic was deleted while its
/// batches were in flight, or when another broker claimed one partition;
/// then those runs are set apart and the rest committed once more, so one
/// deleted topic or one lost partition does not fail every other
/// partition's produces. Fenced partitions stop being led here at once.
async fn commit_runs(
    inner: &Inner,
    object_key: &str,
    object_size: usize,
    mut runs: Vec<PlacedRun>,
) -> Result<CommittedRuns, (Error, Vec<PlacedRun>)> {
    let mut gone: Vec<(PlacedRun, Gone)> = Vec::new();
    let answer_all = |runs: Vec<PlacedRun>, gone: Vec<(PlacedRun, Gone)>| {
        runs.into_iter()
            .chain(gone.into_iter().map(|(r, _)| r))
            .collect()
    };
    // Each retry sets at least one partition apart, so this ends.
    loop {
        if runs.is_empty() {
            return Ok((runs, gone));
        }
        let Some(commit) = flush_commit(inner, object_key, object_size, &runs) else {
            let e = Error::NotLeader(runs[0].entry.topic_partition);
            return Err((e, answer_all(runs, gone)));
        };
        let apart: Vec<(metadata::TopicPartition, Gone)> =
            match commit_or_read_back(inner, &commit).await {
                Ok(()) => return Ok((runs, gone)),
                Err(Error::Metadata(metadata::Error::Fenced {
                    topic_partition, ..
                })) => {
                    super::leadership::drop_partitions(
                        inner,
                        Some(&[topic_partition]),
                        "its commit was refused for a newer leader epoch",
                    );
                    vec![(topic_partition, Gone::Fenced)]
                }
                Err(Error::Metadata(metadata::Error::UnknownTopic(_))) => {
                    let mut topic_ids: Vec<_> = runs
                        .iter()
                        .map(|r| r.entry.topic_partition.topic_id)
                        .collect();
                    topic_ids.sort();
                    topic_ids.dedup();
                    let states = match inner.metadata.partition_states(&topic_ids).await {
                        Ok(states) => states,
                        Err(e) => return Err((e.into(), answer_all(runs, gone))),
                    };
                    let deleted: Vec<_> = runs
                        .iter()
                        .map(|r| r.entry.topic_partition)
                        .filter(|tp| !states.iter().any(|s| s.topic_partition == *tp))
                        .map(|tp| (tp, Gone::Deleted))
                        .collect();
                    if deleted.is_empty() {
                        let e = metadata::Error::UnknownTopic(format!("object_key={object_key}"));
                        return Err((e.into(), answer_all(runs, gone)));
                    }
                    deleted
                }
                Err(e) => return Err((e, answer_all(runs, gone))),
            };
        let (set_apart, keep): (Vec<_>, Vec<_>) = runs
            .into_iter()
            .partition(|r| apart.iter().any(|(tp, _)| *tp == r.entry.topic_partition));
        for run in set_apart {
            let why = apart
                .iter()
                .find(|(tp, _)| *tp == run.entry.topic_partition)
                .map(|(_, why)| *why)
                .expect("set apart for a reason");
            gone.push((run, why));
        }
        runs = keep;
    }
}

/// The commit of `runs`, as this log's session; `None` if the log has no
/// session (it leads nothing).
fn flush_commit(
    inner: &Inner,
    object_key: &str,
    object_size: usize,
    runs: &[PlacedRun],
) -> Option<FlushCommit> {
    let session = (*inner.session.lock().expect("session lock"))?;
    Some(FlushCommit {
        session,
        object_key: object_key.to_string(),
        object_size: object_size as u64,
        entries: runs.iter().map(|r| r.entry.clone()).collect(),
        leader_epochs: runs.iter().map(|r| r.leader_epoch).collect(),
        // A partition sealed in steps has a run per step; each run carries
        // its producers' state after it: the last one is the flush's.
        producers: {
            let mut latest: Vec<ProducerState> = Vec::new();
            for producer in runs.iter().rev().flat_map(|r| r.producers.iter()) {
                let seen = latest.iter().any(|p| {
                    p.topic_partition == producer.topic_partition
                        && p.producer_id == producer.producer_id
                });
                if !seen {
                    latest.push(producer.clone());
                }
            }
            latest.reverse();
            latest
        },
    })
}

/// Commits; if the store timed out, reads back whether the commit applied
/// before deciding. Applied means the index holds, at the first entry's
/// base offset, an entry in this flush's object: object keys are never
/// reused and a commit applies whole, so that entry can only be this
/// commit's. (Comparing next offsets alone would take another writer's
/// commit that happened to end at the same offset for ours.)
async fn commit_or_read_back(inner: &Inner, commit: &FlushCommit) -> Result<()> {
    let committed = metadata_call(inner, inner.metadata.commit_flush(commit)).await;
    match committed {
        Ok(()) => Ok(()),
        Err(metadata::Error::Timeout) => {
            let first = commit
                .entries
                .first()
                .ok_or_else(|| Error::Unavailable("an empty commit timed out".into()))?;
            let found = metadata_call(
                inner,
                inner
                    .metadata
                    .index_entries(first.topic_partition, first.base_offset, 1),
            )
            .await?;
            let applied = found.first().is_some_and(|e| {
                e.base_offset == first.base_offset && e.object_key == commit.object_key
            });
            if applied {
                tracing::info!(
                    object_key = commit.object_key,
                    "a timed-out commit had applied"
                );
                Ok(())
            } else {
                Err(Error::Metadata(metadata::Error::Timeout))
            }
        }
        Err(e) => Err(e.into()),
    }
}

/// A metadata call bounded by `metadata_timeout_ms`; past it, `Timeout`
/// (the call may still apply: the caller reads back before deciding).
pub(crate) async fn metadata_call<T>(
    inner: &Inner,
    call: impl std::future::Future<Output = metadata::Result<T>>,
) -> metadata::Result<T> {
    let limit = Duration::from_millis(inner.config.metadata_timeout_ms);
    tokio::time::timeout(limit, call)
        .await
        .unwrap_or(Err(metadata::Error::Timeout))
}
