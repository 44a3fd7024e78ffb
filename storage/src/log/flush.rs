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
//! When a flush fails (object write or commit), every flush sealed after it
//! carries offsets that now follow a hole, so the committer fails those too
//! (the `generation` moves on) and resets the reserved offsets to the
//! committed ones. Nothing is acknowledged that is not committed, and the
//! metadata store's conditional commit refuses any flush that would leave a
//! gap, whatever the timing.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use metadata::{FlushCommit, IndexEntry};
use protocol::batch;
use tokio::sync::{OwnedSemaphorePermit, mpsc, oneshot};
use tokio::task::JoinHandle;

use super::{AppendResult, Inner, Partition, PendingBatch};
use crate::object_format::{FooterEntry, ObjectBuilder};
use crate::{Error, Result};

/// The batches of one partition placed in an object, with their answers.
struct PlacedRun {
    partition: Arc<Partition>,
    entry: IndexEntry,
    leader_epoch: i32,
    replies: Vec<(oneshot::Sender<Result<AppendResult>>, AppendResult)>,
}

/// A sealed flush whose object is being written.
struct SealedFlush {
    generation: u64,
    object_key: String,
    object: Bytes,
    runs: Vec<PlacedRun>,
    write: JoinHandle<Result<()>>,
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
            let has_pending = !inner
                .pending
                .lock()
                .expect("pending lock")
                .batches
                .is_empty();
            if has_pending {
                break;
            }
            if inner.shutdown.is_cancelled() {
                return; // dropping `sealed` lets the committer drain and stop
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
        let batch_count = group.len() as u32;
        for b in group {
            let stored = builder.append(&b.bytes);
            let header = batch::parse_header(stored).expect("append checked the batch header");
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
        state.reserved_next_offset = next_offset;
        drop(state);
        let footer = builder.finish_run(
            FooterEntry {
                topic_partition: tp,
                base_offset,
                last_offset: next_offset - 1,
                batch_count,
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
        });
    }
    if runs.is_empty() {
        return None;
    }
    let object = builder.finish();
    let object_key = new_object_key();
    for run in &mut runs {
        run.entry.object_key = object_key.clone();
    }
    let write = {
        let (store, key, bytes) = (inner.store.clone(), object_key.clone(), object.clone());
        tokio::spawn(async move { store.put(&key, bytes).await })
    };
    Some(SealedFlush {
        generation,
        object_key,
        object,
        runs,
        write,
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
        return fail(
            inner,
            &object_key,
            runs,
            format!("object write failed: {e}"),
            false,
        )
        .await;
    }
    if generation != inner.generation.load(Ordering::Acquire) {
        let why = "an earlier flush failed; its successors are retried".to_string();
        return fail(inner, &object_key, runs, why, false).await;
    }
    let commit = FlushCommit {
        object_key: object_key.clone(),
        object_size: object.len() as u64,
        entries: runs.iter().map(|r| r.entry.clone()).collect(),
        leader_epochs: runs.iter().map(|r| r.leader_epoch).collect(),
    };
    let committed = commit_or_read_back(inner, &commit).await;
    tracing::debug!(
        object_key,
        object_bytes = object.len(),
        partitions = runs.len(),
        write_ms,
        commit_ms = sealed_at.elapsed().as_secs_f64() * 1e3 - write_ms,
        ok = committed.is_ok(),
        "flush"
    );
    if let Err(e) = committed {
        tracing::warn!(object_key, error = %e, "index commit failed; failing the flush");
        let fenced = matches!(
            e,
            Error::Metadata(
                metadata::Error::Fenced { .. } | metadata::Error::OffsetMismatch { .. }
            )
        );
        return fail(
            inner,
            &object_key,
            runs,
            format!("index commit failed: {e}"),
            fenced,
        )
        .await;
    }
    inner
        .tail_cache
        .lock()
        .expect("tail cache lock")
        .insert(object_key, object);
    for run in runs {
        {
            let mut s = run.partition.state.lock().expect("partition lock");
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
}

/// Fails a flush: answers its appends with a retriable error, moves the
/// generation on (so flushes sealed after it fail too) and resets every
/// partition's reserved offsets to the committed ones. `reload` also re-reads
/// the committed state from the store (after a refused commit).
async fn fail(inner: &Inner, object_key: &str, runs: Vec<PlacedRun>, why: String, reload: bool) {
    inner.generation.fetch_add(1, Ordering::AcqRel);
    if reload {
        reload_states(inner).await;
    }
    for partition in inner.partitions.read().expect("partitions lock").values() {
        let mut s = partition.state.lock().expect("partition lock");
        s.reserved_next_offset = s.next_offset;
    }
    // The object is referenced by nothing: garbage.
    if let Err(e) = inner.store.delete(object_key).await {
        tracing::warn!(object_key, error = %e, "could not delete an uncommitted object");
    }
    for run in runs {
        for (reply, _) in run.replies {
            let _ = reply.send(Err(Error::Unavailable(why.clone())));
        }
    }
}

/// Commits; if the store timed out, reads the partitions back to learn
/// whether the commit applied before deciding.
async fn commit_or_read_back(inner: &Inner, commit: &FlushCommit) -> Result<()> {
    match inner.metadata.commit_flush(commit).await {
        Ok(()) => Ok(()),
        Err(metadata::Error::Timeout) => {
            let states = inner.metadata.partition_states().await?;
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

async fn reload_states(inner: &Inner) {
    match inner.metadata.partition_states().await {
        Ok(states) => {
            let partitions = inner.partitions.read().expect("partitions lock");
            for s in states {
                if let Some(partition) = partitions.get(&s.topic_partition) {
                    let mut mem = partition.state.lock().expect("partition lock");
                    mem.leader_epoch = s.leader_epoch;
                    mem.next_offset = s.next_offset;
                    mem.log_start_offset = s.log_start_offset;
                    mem.recent.clear();
                }
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "could not reload partition states after a refused commit")
        }
    }
}

/// A new, never-reused object key: a time-ordered UUID under a two-hex-digit
/// prefix taken from its random bits, which spreads keys over S3 prefixes.
fn new_object_key() -> String {
    let id = uuid::Uuid::now_v7();
    let prefix = id.as_bytes()[15];
    format!("{prefix:02x}/{}.obj", id.simple())
}
