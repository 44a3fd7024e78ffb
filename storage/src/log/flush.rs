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

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use metadata::{FlushCommit, IndexEntry, ProducerState};
use protocol::batch;
use tokio::sync::{OwnedSemaphorePermit, mpsc, oneshot};
use tokio::task::JoinHandle;

use super::producers::{Check, FlushOutcome, answer_duplicate};
use super::{AppendResult, Inner, Partition, PendingBatch};
use crate::object_format::{FooterEntry, ObjectBuilder};
use crate::object_key::new_object_key;
use crate::{Error, Result};

/// The batches of one partition placed in an object, with their answers.
struct PlacedRun {
    partition: Arc<Partition>,
    entry: IndexEntry,
    leader_epoch: i32,
    replies: Vec<(oneshot::Sender<Result<AppendResult>>, AppendResult)>,
    /// The new state of each idempotent producer with a batch in the run.
    producers: Vec<ProducerState>,
}

/// A sealed flush whose object is being written.
struct SealedFlush {
    generation: u64,
    object_key: String,
    object: Bytes,
    runs: Vec<PlacedRun>,
    write: JoinHandle<Result<()>>,
    /// Duplicates of this flush's batches wait on it.
    outcome: Arc<FlushOutcome>,
    sealed_at: Instant,
    /// The flush buffer room of its batches: held until the flush ends, so
    /// `flush_buffer_max_bytes` bounds buffered and in-flight bytes together.
    _room: Vec<OwnedSemaphorePermit>,
}

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
    loop {
        // Wait for a first pending batch (or shutdown with nothing left).
        loop {
            {
                // `enqueue` checks for shutdown under this same lock.
                let pending = inner.pending.lock().expect("pending lock");
                if !pending.batches.is_empty() {
                    break;
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
        }
        // Let the buffer fill until the interval passes or it is big enough.
        loop {
            let (bytes, first_at) = {
                let pending = inner.pending.lock().expect("pending lock");
                (pending.bytes, pending.first_at)
            };
            let deadline = first_at.expect("pending batches have a first time")
                + Duration::from_millis(inner.config.flush_interval_ms);
            if bytes >= inner.config.flush_max_bytes
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
        // Wait for room in the pipeline before sealing, so batches keep
        // gathering in the buffer meanwhile.
        let Ok(slot) = sealed.reserve().await else {
            return; // the committer is gone; appends are answered by their dropped senders
        };
        let batches = std::mem::take(&mut *inner.pending.lock().expect("pending lock")).batches;
        if let Some(flush) = seal(inner, batches) {
            slot.send(flush);
        }
    }
}

/// Assigns offsets, builds the object and starts writing it.
fn seal(inner: &Arc<Inner>, batches: Vec<PendingBatch>) -> Option<SealedFlush> {
    let seal_guard = inner.seal_lock.lock().expect("seal lock");
    let generation = inner.generation.load(Ordering::Acquire);
    let total_bytes: usize = batches.iter().map(|b| b.bytes.len()).sum();
    // Group by partition, keeping arrival order inside each partition.
    let mut order = Vec::new();
    let mut groups: HashMap<_, Vec<PendingBatch>> = HashMap::new();
    for b in batches {
        let group = groups.entry(b.topic_partition).or_default();
        if group.is_empty() {
            order.push(b.topic_partition);
        }
        group.push(b);
    }

    let now_ms = inner.clock.now_ms();
    let expiration_ms = inner.config.producer_id_expiration_ms;
    let outcome = Arc::new(FlushOutcome::default());
    let mut builder = ObjectBuilder::with_capacity(total_bytes, order.len());
    let mut runs = Vec::with_capacity(order.len());
    let mut room = Vec::new();
    for tp in order {
        let group = groups
            .remove(&tp)
            .expect("every ordered partition has a group");
        let Some(partition) = inner.partition(&tp) else {
            for b in group {
                let _ = b.reply.send(Err(Error::UnknownTopicOrPartition(tp)));
            }
            continue;
        };
        let mut state = partition.state.lock().expect("partition lock");
        let (leader_epoch, log_start_offset) = (state.leader_epoch, state.log_start_offset);
        let base_offset = state.reserved_next_offset;
        let mut next_offset = base_offset;
        let position = builder.position();
        let mut max_timestamp = -1i64;
        let mut replies = Vec::with_capacity(group.len());
        let mut producer_ids = Vec::new();
        for b in group {
            let header = batch::parse_header(&b.bytes).expect("append checked the batch header");
            // Sequence rules first: a refused batch or a duplicate is not written.
            match state.producers.check(tp, &header, now_ms, expiration_ms) {
                Ok(Check::Append) => {}
                Ok(Check::Duplicate { batch, flush }) => {
                    let result = AppendResult {
                        base_offset: batch.base_offset,
                        log_append_time_ms: -1,
                        log_start_offset,
                    };
                    answer_duplicate(flush, (b.reply, result));
                    continue;
                }
                Err(e) => {
                    let _ = b.reply.send(Err(e));
                    continue;
                }
            }
            let stored = builder.append(&b.bytes);
            batch::set_base_offset(stored, next_offset);
            batch::set_partition_leader_epoch(stored, leader_epoch);
            let log_append_time_ms = if b.options.log_append_time {
                batch::set_log_append_time(stored, now_ms);
                max_timestamp = max_timestamp.max(now_ms);
                now_ms
            } else {
                max_timestamp = max_timestamp.max(header.max_timestamp);
                -1
            };
            if header.producer_id >= 0 {
                let pid = header.producer_id;
                state
                    .producers
                    .record(&header, next_offset, now_ms, expiration_ms, &outcome);
                if !producer_ids.contains(&pid) {
                    producer_ids.push(pid);
                }
            }
            room.push(b.permit);
            replies.push((
                b.reply,
                AppendResult {
                    base_offset: next_offset,
                    log_append_time_ms,
                    log_start_offset,
                },
            ));
            next_offset += header.last_offset_delta as i64 + 1;
        }
        if replies.is_empty() {
            continue; // every batch was refused or a duplicate: no run
        }
        state.reserved_next_offset = next_offset;
        let producers = producer_ids
            .into_iter()
            .filter_map(|pid| state.producers.snapshot(tp, pid))
            .collect();
        drop(state);
        let footer = builder.finish_run(
            FooterEntry {
                topic_partition: tp,
                base_offset,
                last_offset: next_offset - 1,
                batch_count: replies.len() as u32,
                position: 0,
                length: 0,
                max_timestamp,
            },
            position,
        );
        runs.push(PlacedRun {
            partition,
            entry: IndexEntry {
                topic_partition: tp,
                base_offset,
                last_offset: next_offset - 1,
                object_key: String::new(),
                position: footer.position,
                length: footer.length,
                max_timestamp,
            },
            leader_epoch,
            replies,
            producers,
        });
    }
    drop(seal_guard);
    if runs.is_empty() {
        return None;
    }
    let object = builder.finish();
    let object_key = new_object_key();
    inner.unsettled.sealed(&object_key);
    for run in &mut runs {
        run.entry.object_key = object_key.clone();
    }
    let write = {
        let (store, key, bytes) = (inner.store.clone(), object_key.clone(), object.clone());
        let limit = Duration::from_millis(inner.config.object_write_timeout_ms);
        tokio::spawn(async move {
            tokio::time::timeout(limit, store.put(&key, bytes))
                .await
                .unwrap_or(Err(Error::TimedOut(format!(
                    "object write key={key} after {limit:?}"
                ))))
        })
    };
    Some(SealedFlush {
        generation,
        object_key,
        object,
        runs,
        write,
        outcome,
        sealed_at: Instant::now(),
        _room: room,
    })
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
        _room,
    } = flush;
    let written = match write.await {
        Ok(result) => result,
        Err(e) => Err(Error::Unavailable(format!("object write task failed: {e}"))),
    };
    let write_ms = sealed_at.elapsed().as_secs_f64() * 1e3;
    if let Err(e) = written {
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
        let why = "an earlier flush failed; retry".to_string();
        return answer_failed(inner, &object_key, runs, &outcome, why, true).await;
    }
    crate::failpoint::crash_point("flush.before_commit");
    let (runs, gone) = match commit_runs(inner, &object_key, object.len(), runs).await {
        Ok(split) => split,
        Err((e, runs)) => {
            tracing::warn!(object_key, error = %e, "index commit failed; failing the flush");
            let kind = match &e {
                Error::Metadata(
                    metadata::Error::Fenced { .. }
                    | metadata::Error::OffsetMismatch { .. }
                    | metadata::Error::UnknownTopic(_),
                ) => FailureKind::RefusedReload,
                _ => FailureKind::Uncertain,
            };
            let why = format!("index commit failed: {e}");
            return fail(inner, &object_key, runs, &outcome, why, kind).await;
        }
    };
    crate::failpoint::crash_point("flush.after_commit");
    tracing::debug!(
        object_key,
        object_bytes = object.len(),
        partitions = runs.len(),
        write_ms,
        commit_ms = sealed_at.elapsed().as_secs_f64() * 1e3 - write_ms,
        "flush"
    );
    for run in gone {
        let tp = run.entry.topic_partition;
        for (reply, _) in run.replies {
            let _ = reply.send(Err(Error::UnknownTopicOrPartition(tp)));
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
    /// The store refused the commit (fenced, offset mismatch, unknown topic):
    /// nothing was committed, but our view of the partitions is stale.
    RefusedReload,
    /// The commit may or may not have applied (an I/O error, a timeout whose
    /// read-back failed): keep the object, which the index may reference.
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
    if matches!(kind, FailureKind::RefusedReload | FailureKind::Uncertain) {
        reload_states(inner).await;
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
    let certain = matches!(kind, FailureKind::Refused | FailureKind::RefusedReload);
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
        for (reply, _) in run.replies {
            let _ = reply.send(Err(Error::Unavailable(why.clone())));
        }
    }
}

/// A flush's runs after its commit: (committed, of partitions that no longer exist).
type CommittedRuns = (Vec<PlacedRun>, Vec<PlacedRun>);

/// Commits the runs' index entries in one transaction. If a topic was
/// deleted while its batches were in flight, the store refuses the whole
/// commit; then the runs of partitions that are gone are set apart and the
/// rest committed once more, so one deleted topic does not fail every other
/// partition's produces.
async fn commit_runs(
    inner: &Inner,
    object_key: &str,
    object_size: usize,
    runs: Vec<PlacedRun>,
) -> Result<CommittedRuns, (Error, Vec<PlacedRun>)> {
    let first = commit_or_read_back(inner, &flush_commit(object_key, object_size, &runs)).await;
    match first {
        Ok(()) => return Ok((runs, Vec::new())),
        Err(Error::Metadata(metadata::Error::UnknownTopic(_))) => {}
        Err(e) => return Err((e, runs)),
    }
    let states = match inner.metadata.partition_states().await {
        Ok(states) => states,
        Err(e) => return Err((e.into(), runs)),
    };
    let (keep, gone): (Vec<_>, Vec<_>) = runs.into_iter().partition(|run| {
        states
            .iter()
            .any(|s| s.topic_partition == run.entry.topic_partition)
    });
    if gone.is_empty() || keep.is_empty() {
        let unknown = metadata::Error::UnknownTopic(format!("object_key={object_key}"));
        return if keep.is_empty() {
            Ok((keep, gone))
        } else {
            Err((unknown.into(), keep))
        };
    }
    match commit_or_read_back(inner, &flush_commit(object_key, object_size, &keep)).await {
        Ok(()) => Ok((keep, gone)),
        Err(e) => Err((e, keep.into_iter().chain(gone).collect())),
    }
}

fn flush_commit(object_key: &str, object_size: usize, runs: &[PlacedRun]) -> FlushCommit {
    FlushCommit {
        object_key: object_key.to_string(),
        object_size: object_size as u64,
        entries: runs.iter().map(|r| r.entry.clone()).collect(),
        leader_epochs: runs.iter().map(|r| r.leader_epoch).collect(),
        producers: runs
            .iter()
            .flat_map(|r| r.producers.iter().cloned())
            .collect(),
    }
}

/// Commits; if the store timed out, reads the partitions back to learn
/// whether the commit applied before deciding.
async fn commit_or_read_back(inner: &Inner, commit: &FlushCommit) -> Result<()> {
    let committed = metadata_call(inner, inner.metadata.commit_flush(commit)).await;
    match committed {
        Ok(()) => Ok(()),
        Err(metadata::Error::Timeout) => {
            let states = metadata_call(inner, inner.metadata.partition_states()).await?;
            let applied = commit.entries.iter().all(|e| {
                states.iter().any(|s| {
                    s.topic_partition == e.topic_partition && s.next_offset == e.last_offset + 1
                })
            });
            if applied {
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
async fn metadata_call<T>(
    inner: &Inner,
    call: impl std::future::Future<Output = metadata::Result<T>>,
) -> metadata::Result<T> {
    let limit = Duration::from_millis(inner.config.metadata_timeout_ms);
    tokio::time::timeout(limit, call)
        .await
        .unwrap_or(Err(metadata::Error::Timeout))
}

/// Replaces the in-memory partition and producer states with the committed
/// ones. Both or neither: with offsets reloaded but producer states stale, a
/// retry of a batch that did commit would pass as new and be written twice;
/// with neither reloaded, the store's conditional commit refuses the next
/// flush (its offsets are stale too) and the reload is tried again.
async fn reload_states(inner: &Inner) {
    let states = metadata_call(inner, inner.metadata.partition_states()).await;
    let producers = metadata_call(inner, inner.metadata.producer_states()).await;
    let (states, producers) = match (states, producers) {
        (Ok(states), Ok(producers)) => (states, producers),
        (Err(e), _) | (_, Err(e)) => {
            tracing::warn!(error = %e, "could not reload partition states after a failed commit");
            return;
        }
    };
    super::apply_producer_states(inner, producers);
    let partitions = inner.partitions.read().expect("partitions lock");
    for s in states {
        if let Some(partition) = partitions.get(&s.topic_partition) {
            let mut mem = partition.state.lock().expect("partition lock");
            mem.leader_epoch = s.leader_epoch;
            mem.next_offset = s.next_offset;
            mem.log_start_offset = s.log_start_offset;
            mem.recent.clear();
            drop(mem);
            partition.high_watermark.send_replace(s.next_offset);
        }
    }
}
