//! Sealing: where produced batches get their offsets and their place in a
//! flush's object.
//!
//! A flush is sealed in one step, or — for a store that streams objects in
//! parts (S3) — in several while it fills: whenever a part's worth of
//! batches is buffered, they are sealed into the open flush (offsets
//! assigned, sequence numbers checked, bytes appended) and every whole part
//! of the object so far goes to the store's streaming write at once. A
//! partition then has a run in each step, each its own index entry; the
//! metadata store takes several contiguous entries of one partition in one
//! commit. Closing the flush seals the rest, writes the footer and sends the
//! last part.
//!
//! Every step of one flush is sealed under the same generation: if an
//! earlier flush failed in between (moving the generation on and resetting
//! the reserved offsets), the open flush is stale — its offsets follow a
//! hole — and is failed at once, its write abandoned, and the step starts a
//! new flush.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use metadata::{IndexEntry, ProducerState};
use protocol::batch;
use tokio::sync::{OwnedSemaphorePermit, mpsc, oneshot};
use tokio::task::JoinHandle;

use super::producers::{Check, FlushOutcome, answer_duplicate};
use super::{AppendResult, Inner, Partition, PendingBatch};
use crate::object_format::{FooterEntry, ObjectBuilder};
use crate::object_key::new_object_key;
use crate::{Error, Result};

/// The batches of one partition placed in an object, with their answers.
pub(super) struct PlacedRun {
    pub(super) partition: Arc<Partition>,
    pub(super) entry: IndexEntry,
    pub(super) leader_epoch: i32,
    pub(super) replies: Vec<(oneshot::Sender<Result<AppendResult>>, AppendResult)>,
    /// The new state of each idempotent producer with a batch in the run.
    pub(super) producers: Vec<ProducerState>,
}

/// A sealed flush whose object is being written.
pub(super) struct SealedFlush {
    pub(super) generation: u64,
    pub(super) object_key: String,
    /// The whole object (for the tail cache).
    pub(super) object: Bytes,
    pub(super) runs: Vec<PlacedRun>,
    pub(super) write: JoinHandle<Result<()>>,
    /// Duplicates of this flush's batches wait on it.
    pub(super) outcome: Arc<FlushOutcome>,
    /// When the flush closed (for the write and commit times logged).
    pub(super) sealed_at: Instant,
    /// The flush buffer room of its batches: held until the flush ends, so
    /// `flush_buffer_max_bytes` bounds buffered and in-flight bytes together.
    pub(super) room: Vec<OwnedSemaphorePermit>,
}

/// Where a flush's parts go, and the write that takes them.
type StreamingWrite = (mpsc::UnboundedSender<Option<Bytes>>, JoinHandle<Result<()>>);

/// A flush being sealed in steps.
pub(super) struct OpenFlush {
    generation: u64,
    object_key: String,
    builder: ObjectBuilder,
    runs: Vec<PlacedRun>,
    outcome: Arc<FlushOutcome>,
    room: Vec<OwnedSemaphorePermit>,
    /// Parts already handed to the streaming write.
    shipped: Vec<Bytes>,
    /// The streaming write, once a part has been shipped.
    stream: Option<StreamingWrite>,
}

impl OpenFlush {
    fn new(inner: &Inner, generation: u64, batch_bytes: usize, partitions: usize) -> OpenFlush {
        let object_key = new_object_key();
        inner.unsettled.sealed(&object_key);
        OpenFlush {
            generation,
            object_key,
            builder: ObjectBuilder::with_capacity(batch_bytes, partitions),
            runs: Vec::new(),
            outcome: Arc::new(FlushOutcome::default()),
            room: Vec::new(),
            shipped: Vec::new(),
            stream: None,
        }
    }

    /// Bytes sealed into the object so far.
    pub(super) fn bytes(&self) -> u64 {
        self.builder.position()
    }

    /// Sends every whole part of the object so far to the store, starting
    /// the streaming write with the first.
    fn ship_parts(&mut self, inner: &Inner, part_size: usize) {
        for part in self.builder.take_parts(part_size) {
            let (parts, _) = self.stream.get_or_insert_with(|| {
                let (parts, receiver) = mpsc::unbounded_channel();
                let (store, key) = (inner.store.clone(), self.object_key.clone());
                // Parts are shipped whole and the footer comes after them,
                // so a streamed flush always has two or more.
                let write = tokio::spawn(async move {
                    store
                        .put_parts(&key, receiver, crate::PartCount::Several)
                        .await
                });
                (parts, write)
            });
            // A closed channel means the write already failed; the flush
            // learns it when it joins the write.
            let _ = parts.send(Some(part.clone()));
            self.shipped.push(part);
        }
    }

    /// Closes the flush: footer, last part, and the write to wait for.
    /// `None` when every batch was refused or a duplicate (no object).
    pub(super) fn finish(mut self, inner: &Inner) -> Option<SealedFlush> {
        if self.runs.is_empty() {
            inner.unsettled.settled(&self.object_key, true);
            return None;
        }
        for run in &mut self.runs {
            run.entry.object_key = self.object_key.clone();
        }
        let last = self.builder.finish();
        // The write: one `put` of the whole object, or the rest of a
        // streamed one. Either way bounded by the write timeout; past it the
        // task is aborted (dropping an upload in progress aborts it).
        let (object, writing) = match self.stream.take() {
            None => {
                let (store, key, object) =
                    (inner.store.clone(), self.object_key.clone(), last.clone());
                (
                    last,
                    tokio::spawn(async move { store.put(&key, object).await }),
                )
            }
            Some((parts, streaming)) => {
                let _ = parts.send(Some(last.clone()));
                let _ = parts.send(None);
                // One contiguous copy for the tail cache, which slices runs
                // out of whole objects (a run may span parts).
                let len = self.shipped.iter().map(Bytes::len).sum::<usize>() + last.len();
                let mut whole = BytesMut::with_capacity(len);
                for part in self.shipped.iter().chain([&last]) {
                    whole.extend_from_slice(part);
                }
                (whole.freeze(), streaming)
            }
        };
        let limit = Duration::from_millis(inner.config.object_write_timeout_ms);
        let key = self.object_key.clone();
        let write = tokio::spawn(async move {
            let mut writing = writing;
            match tokio::time::timeout(limit, &mut writing).await {
                Ok(joined) => joined.unwrap_or_else(|e| {
                    Err(Error::Unavailable(format!("object write task failed: {e}")))
                }),
                Err(_) => {
                    writing.abort();
                    Err(Error::TimedOut(format!(
                        "object write key={key} after {limit:?}"
                    )))
                }
            }
        });
        Some(SealedFlush {
            generation: self.generation,
            object_key: self.object_key,
            object,
            runs: self.runs,
            write,
            outcome: self.outcome,
            sealed_at: Instant::now(),
            room: self.room,
        })
    }

    /// What a stale or abandoned open flush leaves to fail (its appends are
    /// answered by the caller). The part channel closes here without
    /// completing: the store abandons the write, aborting an upload in
    /// progress, and its task ends by itself.
    pub(super) fn abandon(self) -> (String, Vec<PlacedRun>, Arc<FlushOutcome>) {
        let OpenFlush {
            object_key,
            runs,
            outcome,
            ..
        } = self;
        (object_key, runs, outcome)
    }
}

/// Seals `batches` into `open` (opening a flush if there is none): assigns
/// offsets, checks sequences, appends the bytes, and — with `part_size` —
/// ships every whole part. Returns the previous open flush when it had gone
/// stale (sealed under an older generation): the caller fails it.
pub(super) fn seal_step(
    inner: &Arc<Inner>,
    open: &mut Option<OpenFlush>,
    batches: Vec<PendingBatch>,
    part_size: Option<usize>,
) -> Option<OpenFlush> {
    if batches.is_empty() {
        return None;
    }
    let seal_guard = inner.seal_lock.lock().expect("seal lock");
    let generation = inner.generation.load(Ordering::Acquire);
    let stale = open.take_if(|o| o.generation != generation);
    let total_bytes: usize = batches.iter().map(|b| b.bytes.len()).sum();
    // Group by partition, keeping arrival order inside each partition; runs
    // in partition order, so that object compaction reads the runs of
    // partitions it rewrites together in one range (`compaction_reads`).
    let mut order = Vec::new();
    let mut groups: HashMap<_, Vec<PendingBatch>> = HashMap::new();
    for b in batches {
        let group = groups.entry(b.topic_partition).or_default();
        if group.is_empty() {
            order.push(b.topic_partition);
        }
        group.push(b);
    }
    order.sort_unstable();
    let flush = match open {
        Some(flush) => {
            flush.builder.reserve(total_bytes, order.len());
            flush
        }
        None => open.insert(OpenFlush::new(inner, generation, total_bytes, order.len())),
    };

    let now_ms = inner.clock.now_ms();
    let expiration_ms = inner.config.producer_id_expiration_ms;
    let outcome = flush.outcome.clone();
    let builder = &mut flush.builder;
    let runs = &mut flush.runs;
    let room = &mut flush.room;
    for tp in order {
        let group = groups
            .remove(&tp)
            .expect("every ordered partition has a group");
        let Some(partition) = inner.partition(&tp) else {
            for b in group {
                let _ = b.reply.send(Err(Error::NotLeader(tp)));
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
                    // Kafka answers a retry with the original batch's max
                    // timestamp in log_append_time_ms, whatever the topic's
                    // timestamp type (`UnifiedLog.append`, duplicate case).
                    let result = AppendResult {
                        base_offset: batch.base_offset,
                        log_append_time_ms: batch.max_timestamp,
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
            let (log_append_time_ms, batch_max_timestamp) = if b.options.log_append_time {
                batch::set_log_append_time(stored, now_ms);
                (now_ms, now_ms)
            } else {
                (-1, header.max_timestamp)
            };
            max_timestamp = max_timestamp.max(batch_max_timestamp);
            if header.producer_id >= 0 {
                let pid = header.producer_id;
                state.producers.record(
                    &header,
                    next_offset,
                    batch_max_timestamp,
                    now_ms,
                    expiration_ms,
                    &outcome,
                );
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
    if let Some(part_size) = part_size {
        flush.ship_parts(inner, part_size);
    }
    stale
}
