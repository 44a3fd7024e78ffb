//! The flusher: one task that seals the flush buffer, writes one object per
//! flush, commits its index entries, and answers the waiting appends.
//!
//! Flushes run one after another, so offsets are assigned from the committed
//! `next_offset` of each partition at seal time: a failed flush leaves no gap
//! and nothing to roll back.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use metadata::{FlushCommit, IndexEntry};
use protocol::batch;
use tokio::sync::oneshot;

use super::{AppendResult, Inner, Partition, PendingBatch};
use crate::object_format::{FooterEntry, ObjectBuilder};
use crate::{Error, Result};

pub(crate) async fn run_flusher(inner: Arc<Inner>) {
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
                return;
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
                || std::time::Instant::now() >= deadline
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
        let batches = {
            let mut pending = inner.pending.lock().expect("pending lock");
            let taken = std::mem::take(&mut *pending);
            taken.batches
        };
        flush(&inner, batches).await;
    }
}

/// The batches of one partition placed in the object, with their answers.
struct PlacedRun {
    partition: Arc<Partition>,
    entry: IndexEntry,
    leader_epoch: i32,
    replies: Vec<(oneshot::Sender<Result<AppendResult>>, AppendResult)>,
}

async fn flush(inner: &Inner, batches: Vec<PendingBatch>) {
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
    let mut builder = ObjectBuilder::with_capacity(total_bytes);
    let mut runs = Vec::with_capacity(order.len());
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
        let (mut next_offset, leader_epoch, log_start_offset) = {
            let s = partition.state.lock().expect("partition lock");
            (s.next_offset, s.leader_epoch, s.log_start_offset)
        };
        let position = builder.position();
        let base_offset = next_offset;
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
        return;
    }

    let object = builder.finish();
    let object_key = new_object_key();
    let started = std::time::Instant::now();
    for run in &mut runs {
        run.entry.object_key = object_key.clone();
    }
    if let Err(e) = inner.store.put(&object_key, object.clone()).await {
        tracing::warn!(object_key, error = %e, "object write failed; failing the flush");
        fail_all(runs, || {
            Error::Unavailable(format!("object write failed: {e}"))
        });
        return;
    }
    let commit = FlushCommit {
        object_key: object_key.clone(),
        object_size: object.len() as u64,
        entries: runs.iter().map(|r| r.entry.clone()).collect(),
        leader_epochs: runs.iter().map(|r| r.leader_epoch).collect(),
    };
    let written = started.elapsed();
    let committed = commit_or_read_back(inner, &commit).await;
    tracing::debug!(
        object_key,
        object_bytes = object.len(),
        partitions = runs.len(),
        write_ms = written.as_secs_f64() * 1e3,
        commit_ms = (started.elapsed() - written).as_secs_f64() * 1e3,
        ok = committed.is_ok(),
        "flush"
    );
    match committed {
        Ok(()) => {}
        Err(e) => {
            tracing::warn!(object_key, error = %e, "index commit failed; failing the flush");
            // The object is referenced by nothing; it is garbage.
            if let Err(e) = inner.store.delete(&object_key).await {
                tracing::warn!(object_key, error = %e, "could not delete an uncommitted object");
            }
            let fenced = matches!(
                e,
                Error::Metadata(
                    metadata::Error::Fenced { .. } | metadata::Error::OffsetMismatch { .. }
                )
            );
            if fenced {
                reload_states(inner, &runs).await;
            }
            let message = e.to_string();
            fail_all(runs, move || {
                Error::Unavailable(format!("index commit failed: {message}"))
            });
            return;
        }
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

async fn reload_states(inner: &Inner, runs: &[PlacedRun]) {
    match inner.metadata.partition_states().await {
        Ok(states) => {
            for run in runs {
                if let Some(s) = states
                    .iter()
                    .find(|s| s.topic_partition == run.partition.topic_partition)
                {
                    let mut mem = run.partition.state.lock().expect("partition lock");
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

fn fail_all(runs: Vec<PlacedRun>, error: impl Fn() -> Error) {
    for run in runs {
        for (reply, _) in run.replies {
            let _ = reply.send(Err(error()));
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
