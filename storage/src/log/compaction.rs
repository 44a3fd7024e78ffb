//! Object compaction: rewriting a partition's small runs, spread over many
//! multi-partition flush objects, into one object of its own, so that a
//! consumer catching up reads a few large ranges instead of one small range
//! per flush (docs/design/0009, §3).
//!
//! One call rewrites one run of a partition this log leads:
//! 1. From the log start on (past the leading entries an earlier call
//!    found settled: rewrites it never copies again), the first stretch
//!    of consecutive entries in objects older than `min_age_ms`, in one index segment, up to
//!    `max_object_bytes` in all, that are each either a flush's run (of any
//!    size: it is carried along, so that the partition ends up in objects
//!    of `max_object_bytes` whatever its flushes were like) or an entry of
//!    an earlier rewrite smaller than `small_entry_bytes` (larger ones are
//!    never copied again). Entries of earlier rewrites that would stay
//!    alone at either end are left out. Some entries must merge, so that
//!    every rewrite leaves fewer entries (and the ScyllaDB store's write
//!    times grow; docs/design/0008); among them, every run moved out of a
//!    flush object is one a reader no longer fetches on its own.
//! 2. Their bytes are read straight from the object store (not through the
//!    block cache, which serves consumers), a few at a time, and checked
//!    like any read.
//! 3. They are copied unchanged into a new single-partition object, as
//!    entries of up to `max_entry_bytes` whose merged entries' timestamps
//!    spread over at most `max_entry_span_ms` (never splitting an old
//!    entry, so no batch is split). The object streams to the store in
//!    parts (a multipart upload on S3) while it fills; a run that cannot be
//!    read abandons the write. Its key says compaction wrote it
//!    (`object_key::is_compacted_object_key`).
//! 4. `LogStore::swap_index_entries` replaces the old entries with the new
//!    ones, refused when the stored run changed since it was read: a
//!    retention cut, a DeleteRecords or a leadership change wins, and the
//!    new object is left to garbage collection. The old objects go to GC
//!    once nothing references them; readers that listed them before the
//!    swap read them within GC's grace period.
//!
//! Offsets, timestamps and batch bytes are unchanged, so a consumer reading
//! across a swap sees the same records, none twice and none missing.
//! Rewrites of several partitions may run together
//! (`Log::compact_partitions`): the runs they have in one flush object are
//! then read with one ranged read instead of one each (`compaction_reads`).
//!
//! Memory, per rewrite: the part being filled and at most `PARTS_HELD`
//! (one) sent and not yet written, in parts of `MIN_PART_SIZE` (S3's
//! smallest; 5 MiB) or the store's part size when smaller, each an
//! allocation of its own (`ObjectBuilder::append_in_parts`): two parts
//! (~10 MiB) in all. A store that does not stream gets
//! `max_object_bytes`, and its rewrites run one at a time. Each rewrite
//! holds up to `READS_IN_FLIGHT` runs read ahead (the rewrites running
//! together make that many ranged reads at once in all) and they share up
//! to `SPAN_BYTES_HELD` of spans. The broker paces calls.
//!
//! Crash points: `compaction.after_write` (an object nothing references:
//! GC collects it) and `compaction.after_swap` (the old objects: GC
//! collects them).

use bytes::Bytes;
use futures::StreamExt;
use metadata::{IndexEntry, IndexSwap, TopicPartition, index_segment};
use protocol::batch;

use super::compaction_reads::{RunReads, SPAN_BYTES_HELD};
use super::read::verify_run;
use super::{Log, flush::metadata_call, leadership::drop_partitions};
use crate::object_format::{FooterEntry, ObjectBuilder};
use crate::object_key::{is_compacted_object_key, new_compacted_object_key, object_key_time_ms};
use crate::{Error, Result};

/// Index entries read from the metadata store at once while looking for a run.
const PAGE_ENTRIES: usize = 500;

/// Ranged reads one rewrite keeps in flight.
const READS_IN_FLIGHT: usize = 16;

/// Parts of the new object one rewrite holds at most once it has sent
/// them (queued for the store or being uploaded): reads wait beyond it, so
/// a store slower than the reads bounds the rewrite's memory instead of
/// letting the object pile up. One: the part being uploaded while the next
/// fills. The store must then not hold the first part back for the second
/// (it would wait for the rewrite, and the rewrite for it): the rewrite
/// tells it that several follow (`rewrite_part_count`).
pub(crate) const PARTS_HELD: usize = 1;

/// How long a rewrite waits for produce to drain the flush buffer below
/// half, at most, between two runs: 10 ms at a time, then it goes on.
const PRODUCE_WAIT: std::time::Duration = std::time::Duration::from_millis(10);
const PRODUCE_WAITS_MAX: usize = 500;

/// The share of `max_bytes_per_second` object compaction keeps, at least,
/// however much produce flushes: an eighth.
const YIELD_FLOOR: u64 = 8;

/// Index entries one call looks at, at most, before it gives up looking.
const MAX_ENTRIES_EXAMINED: usize = 100_000;

/// What makes a run worth rewriting, and how big the rewrite may be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CompactionLimits {
    /// Entries of earlier rewrites at least this large are left as they
    /// are (a flush's runs are rewritten whatever their size).
    pub small_entry_bytes: u64,
    /// Only entries in objects at least this old (by their keys' time);
    /// 0 takes any age.
    pub min_age_ms: i64,
    /// The largest new object (and the most memory one rewrite holds when
    /// the store does not stream).
    pub max_object_bytes: u64,
    /// The largest new index entry (a fetch reads at least one entry).
    pub max_entry_bytes: u64,
    /// The widest spread of the merged entries' largest timestamps in one
    /// new entry. Retention cuts whole entries, as Kafka cuts whole
    /// segments (whose spread `segment.ms` bounds): this keeps old records
    /// from waiting for newer ones they were merged with.
    pub max_entry_span_ms: i64,
    /// Object store requests (ranged reads, parts written) all rewrites of
    /// this log make per second, at most, evenly spaced; 0 is no limit.
    pub max_requests_per_second: u32,
    /// Bytes all rewrites of this log read and write per second, at most
    /// (as Kafka's `log.cleaner.io.max.bytes.per.second` throttles its
    /// cleaner), less the bytes produce flushed over the last second
    /// (down to an eighth of it: `byte_allowance`); 0 is no limit.
    pub max_bytes_per_second: u64,
}

impl Default for CompactionLimits {
    fn default() -> Self {
        CompactionLimits {
            small_entry_bytes: 256 * 1024,
            min_age_ms: 10 * 60 * 1000,
            max_object_bytes: 64 * 1024 * 1024,
            max_entry_bytes: 4 * 1024 * 1024,
            max_entry_span_ms: 60 * 60 * 1000,
            max_requests_per_second: 1_000,
            max_bytes_per_second: 0,
        }
    }
}

/// One rewrite that landed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rewrite {
    /// The new object.
    pub object_key: String,
    /// Entries replaced, and the entries that replaced them.
    pub old_entries: usize,
    pub new_entries: usize,
    /// Batch bytes copied (the new object is this plus its header and footer).
    pub bytes: u64,
    /// Distinct objects the old entries were in.
    pub old_objects: usize,
}

/// Why a call rewrote nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NoRewrite {
    /// No run of small, old-enough entries.
    NothingToDo,
    /// The swap lost to a concurrent change; the new object is garbage.
    Lost(String),
}

/// A rewrite about to be made: the run it replaces, and under what.
struct Planned {
    tp: TopicPartition,
    epoch: i32,
    session: metadata::BrokerSession,
    old: Vec<IndexEntry>,
}

impl Log {
    /// Rewrites the first run of small, old entries of `tp` (see the module
    /// doc). `NotLeader` unless this log leads `tp`.
    pub async fn compact_partition(
        &self,
        tp: TopicPartition,
        limits: CompactionLimits,
    ) -> Result<std::result::Result<Rewrite, NoRewrite>> {
        let mut answers = self.compact_partitions(&[tp], limits).await;
        answers.pop().expect("one answer per partition").1
    }

    /// Rewrites the first run of small, old entries of each of `tps`, as
    /// `compact_partition` does, all at once when the store streams: the
    /// runs they have in one flush object are then read with one ranged
    /// read (`compaction_reads`). Memory grows with `tps.len()` (each
    /// rewrite holds a few parts, see the module doc); a store that does
    /// not stream gets them one after the other (each holds its object
    /// whole). An answer per partition, in the order of `tps` (a partition
    /// listed twice is rewritten and answered once).
    pub async fn compact_partitions(
        &self,
        tps: &[TopicPartition],
        limits: CompactionLimits,
    ) -> Vec<(
        TopicPartition,
        Result<std::result::Result<Rewrite, NoRewrite>>,
    )> {
        let mut answers = Vec::with_capacity(tps.len());
        let mut planned: Vec<Planned> = Vec::with_capacity(tps.len());
        for (i, &tp) in tps.iter().enumerate() {
            // Each partition once: two rewrites of one run would race.
            if tps[..i].contains(&tp) {
                continue;
            }
            match self.plan_rewrite(tp, &limits).await {
                Ok(Some(plan)) => planned.push(plan),
                Ok(None) => answers.push((tp, Ok(Err(NoRewrite::NothingToDo)))),
                Err(e) => answers.push((tp, Err(e))),
            }
        }
        let inner = &self.inner;
        if inner.compaction_store().part_size().is_some() {
            let runs = planned.iter().flat_map(|p| &p.old);
            let reads = RunReads::new(
                inner.clone(),
                limits,
                READS_IN_FLIGHT,
                runs,
                SPAN_BYTES_HELD,
            );
            let reads = std::sync::Arc::new(reads);
            let rewrites = planned.into_iter().map(|plan| {
                let reads = reads.clone();
                async move {
                    let (tp, old) = (plan.tp, plan.old.clone());
                    let answer = self.rewrite(plan, reads.clone(), &limits).await;
                    // Runs it never asked for (it stopped early) hold no span.
                    reads.release(&old).await;
                    (tp, answer)
                }
            });
            answers.extend(futures::future::join_all(rewrites).await);
        } else {
            for plan in planned {
                let reads = RunReads::new(inner.clone(), limits, READS_IN_FLIGHT, &plan.old, 0);
                let tp = plan.tp;
                answers.push((tp, self.rewrite(plan, reads.into(), &limits).await));
            }
        }
        answers.sort_by_key(|(tp, _)| tps.iter().position(|t| t == tp));
        answers
    }

    /// The run of `tp` to rewrite, if any: `None` when none is worth it.
    async fn plan_rewrite(
        &self,
        tp: TopicPartition,
        limits: &CompactionLimits,
    ) -> Result<Option<Planned>> {
        let inner = &self.inner;
        let partition = inner.partition(&tp).ok_or(Error::NotLeader(tp))?;
        // Where this pass starts: the log start, or past the rewrites an
        // earlier pass found settled.
        let (epoch, start) = {
            let s = partition.state.lock().expect("partition lock");
            if s.resigning {
                return Err(Error::NotLeader(tp));
            }
            let settled_to = s.compaction_start(limits.small_entry_bytes);
            (s.leader_epoch, s.log_start_offset.max(settled_to))
        };
        let session = (*inner.session.lock().expect("session lock")).ok_or(Error::NotLeader(tp))?;
        let (old, settled_to) = self.find_run(tp, start, limits).await?;
        {
            let mut s = partition.state.lock().expect("partition lock");
            let small = limits.small_entry_bytes;
            s.compaction_from = (small, s.compaction_start(small).max(settled_to));
        }
        Ok((old.len() >= 2).then_some(Planned {
            tp,
            epoch,
            session,
            old,
        }))
    }

    /// Writes `plan`'s new object from its runs (read through `reads`) and
    /// swaps the index entries for it.
    async fn rewrite(
        &self,
        plan: Planned,
        reads: std::sync::Arc<RunReads>,
        limits: &CompactionLimits,
    ) -> Result<std::result::Result<Rewrite, NoRewrite>> {
        let inner = &self.inner;
        let Planned {
            tp,
            epoch,
            session,
            old,
        } = plan;
        let partition = inner.partition(&tp).ok_or(Error::NotLeader(tp))?;
        let object_key = new_compacted_object_key();
        let groups = group_entries(&old, limits);
        let bytes: u64 = old.iter().map(|e| e.length).sum();
        let old_objects = {
            let mut keys: Vec<&str> = old.iter().map(|e| e.object_key.as_str()).collect();
            keys.sort_unstable();
            keys.dedup();
            keys.len()
        };

        inner.unsettled.sealed(&object_key);
        // The new object streams to the store part by part while its runs
        // are read; a run that cannot be read or checked abandons the write
        // (nothing is left under the key, or GC's grace covers it).
        let (parts, received) = tokio::sync::mpsc::unbounded_channel();
        let (written, built) = tokio::join!(
            inner.compaction_store().put_parts(
                &object_key,
                received,
                rewrite_part_count(inner, &old)
            ),
            stream_object(inner, reads, tp, &object_key, &old, &groups, limits, parts),
        );
        let outcome = match (built, written) {
            (Ok(built), Ok(())) => Ok(built),
            // The reader's error, else the writer's (it stopped first).
            (Err(Some(e)), _) | (Err(None) | Ok(_), Err(e)) => Err(e),
            (Err(None), Ok(())) => Err(Error::Io(format!("{object_key}: the write ended early"))),
        };
        let (new, object_size) = match outcome {
            Ok(built) => built,
            Err(e) => {
                // A write that failed may still have landed: GC's grace covers it.
                inner.unsettled.settled(&object_key, false);
                return Err(e);
            }
        };
        crate::failpoint::crash_point("compaction.after_write");
        let swap = IndexSwap {
            session,
            topic_partition: tp,
            leader_epoch: epoch,
            old: old.clone(),
            new: new.clone(),
            object_key: object_key.clone(),
            object_size,
        };
        let swapped = metadata_call(inner, inner.metadata.swap_index_entries(&swap)).await;
        match swapped {
            Ok(()) => inner.unsettled.settled(&object_key, true),
            Err(e) => {
                let certain = !matches!(e.kind(), metadata::ErrorKind::Uncertain);
                inner.unsettled.settled(&object_key, certain);
                return match e {
                    metadata::Error::SwapRefused { reason, .. } => Ok(Err(NoRewrite::Lost(reason))),
                    metadata::Error::Fenced { .. } => {
                        drop_partitions(inner, Some(&[tp]), &e.to_string());
                        Err(Error::NotLeader(tp))
                    }
                    metadata::Error::SessionFenced(_) => {
                        drop_partitions(inner, None, &e.to_string());
                        Err(Error::NotLeader(tp))
                    }
                    e => Err(e.into()),
                };
            }
        }
        crate::failpoint::crash_point("compaction.after_swap");
        // Entries the log keeps in memory for reads must name the new object
        // too: the old ones go once GC's grace has passed.
        {
            let mut s = partition.state.lock().expect("partition lock");
            let first = old[0].base_offset;
            let last = old[old.len() - 1].last_offset;
            // Only when the entries in memory reach into the run; they are
            // contiguous, and the new entries tile the run exactly.
            if s.recent.front().is_some_and(|f| f.base_offset <= last) {
                let at = s
                    .recent
                    .iter()
                    .position(|e| e.base_offset >= first)
                    .unwrap_or(0);
                let end = s
                    .recent
                    .iter()
                    .position(|e| e.base_offset > last)
                    .unwrap_or(s.recent.len());
                s.recent.drain(at..end);
                let log_start = s.log_start_offset;
                for (i, entry) in new
                    .iter()
                    .filter(|e| e.last_offset >= log_start)
                    .enumerate()
                {
                    s.recent.insert(at + i, entry.clone());
                }
            }
        }
        tracing::debug!(
            topic_partition = %tp,
            object_key,
            old_entries = old.len(),
            new_entries = new.len(),
            bytes,
            "compacted a partition's runs into one object"
        );
        Ok(Ok(Rewrite {
            object_key,
            old_entries: old.len(),
            new_entries: new.len(),
            bytes,
            old_objects,
        }))
    }

    /// The run to rewrite: the first stretch of eligible entries from
    /// `start` on (at or after the log start: entries the log start cuts
    /// into are not eligible, a swap must start at or after it); and where
    /// the next call may start, past the leading entries that no call will
    /// ever copy (rewrites at least `small_entry_bytes` long).
    async fn find_run(
        &self,
        tp: TopicPartition,
        start: i64,
        limits: &CompactionLimits,
    ) -> Result<(Vec<IndexEntry>, i64)> {
        let now_ms = self.inner.clock.now_ms();
        let settled = |e: &IndexEntry| {
            is_compacted_object_key(&e.object_key) && e.length >= limits.small_entry_bytes
        };
        let eligible = |e: &IndexEntry| {
            e.base_offset >= start
                && !settled(e)
                && (limits.min_age_ms <= 0
                    || object_key_time_ms(&e.object_key)
                        .is_some_and(|t| now_ms.saturating_sub(t) >= limits.min_age_ms))
        };
        let mut run: Vec<IndexEntry> = Vec::new();
        let mut run_bytes = 0u64;
        let mut from = start;
        // Past the leading settled entries, while they lead.
        let (mut settled_to, mut leading) = (from, true);
        let mut examined = 0usize;
        loop {
            let page = self
                .inner
                .metadata
                .index_entries(tp, from, PAGE_ENTRIES)
                .await?;
            let Some(last) = page.last() else {
                break;
            };
            from = last.last_offset + 1;
            for entry in page {
                examined += 1;
                leading = leading && settled(&entry);
                if leading {
                    settled_to = entry.last_offset + 1;
                }
                let fits = run.first().is_none_or(|first| {
                    index_segment(first.base_offset) == index_segment(entry.base_offset)
                        && run_bytes + entry.length <= limits.max_object_bytes
                });
                if eligible(&entry) && fits {
                    run_bytes += entry.length;
                    run.push(entry);
                    continue;
                }
                let part = worth_rewriting(&run, limits);
                if !part.is_empty() {
                    return Ok((part, settled_to));
                }
                // Nothing to gain in it: a new run may start here.
                run.clear();
                run_bytes = 0;
                if eligible(&entry) {
                    run_bytes = entry.length;
                    run.push(entry);
                }
            }
            if examined >= MAX_ENTRIES_EXAMINED {
                break;
            }
        }
        Ok((worth_rewriting(&run, limits), settled_to))
    }
}

impl super::PartitionMem {
    /// Where a compaction pass under `small_entry_bytes` may start looking:
    /// past the settled entries an earlier pass under the same limit found
    /// (under a larger one they may be eligible again).
    fn compaction_start(&self, small_entry_bytes: u64) -> i64 {
        let (small, from) = self.compaction_from;
        if small == small_entry_bytes { from } else { 0 }
    }
}

/// How a run's entries are merged: consecutive entries, each group at most
/// `max_entry_bytes` long and `max_entry_span_ms` wide (an entry larger
/// than the limit stays alone). Half-open ranges of indexes into `run`.
fn group_entries(run: &[IndexEntry], limits: &CompactionLimits) -> Vec<std::ops::Range<usize>> {
    let mut groups = Vec::new();
    let mut start = 0;
    let (mut bytes, mut min_ts, mut max_ts) = (0u64, i64::MAX, i64::MIN);
    for (i, e) in run.iter().enumerate() {
        let span = max_ts
            .max(e.max_timestamp)
            .saturating_sub(min_ts.min(e.max_timestamp));
        if i > start
            && (bytes + e.length > limits.max_entry_bytes || span > limits.max_entry_span_ms)
        {
            groups.push(start..i);
            start = i;
            (bytes, min_ts, max_ts) = (0, i64::MAX, i64::MIN);
        }
        bytes += e.length;
        min_ts = min_ts.min(e.max_timestamp);
        max_ts = max_ts.max(e.max_timestamp);
    }
    if start < run.len() {
        groups.push(start..run.len());
    }
    groups
}

/// The part of `run` worth rewriting: from the first group that gains
/// something through the last. A group gains when it merges entries, or
/// when it moves a flush's run out of its multi-partition object; an entry
/// of an earlier rewrite that would stay alone gains nothing, and is copied
/// only between groups that gain. Empty unless some group merges: every
/// rewrite then leaves fewer entries (a ScyllaDB swap must, docs/design/0008)
/// or fewer runs in flush objects, so rewrites of a partition come to an end.
fn worth_rewriting(run: &[IndexEntry], limits: &CompactionLimits) -> Vec<IndexEntry> {
    let groups = group_entries(run, limits);
    if groups.iter().all(|g| g.len() < 2) {
        return Vec::new();
    }
    let gains = |g: &std::ops::Range<usize>| {
        g.len() >= 2 || !is_compacted_object_key(&run[g.start].object_key)
    };
    let (Some(first), Some(last)) = (
        groups.iter().position(gains),
        groups.iter().rposition(gains),
    ) else {
        return Vec::new();
    };
    run[groups[first].start..groups[last].end].to_vec()
}

/// Waits, boundedly, while produce holds more than half of the flush
/// buffer: a rewrite's reads and upload then wait for the flushes instead
/// of competing with them for the object store.
async fn yield_to_produce(inner: &super::Inner) {
    let half = inner.config.flush_buffer_max_bytes / 2;
    for _ in 0..PRODUCE_WAITS_MAX {
        if inner.buffer_room.available_permits() >= half {
            return;
        }
        super::stats::bump(&inner.stats.compaction_produce_waits, 1);
        tokio::time::sleep(PRODUCE_WAIT).await;
    }
}

/// The bytes per second object compaction may read and write while
/// produce flushes `produced` a second: `max_bytes_per_second` less what
/// produce takes, and never below `1 / YIELD_FLOOR` of it, so that the
/// compactor does what produce leaves and still moves under a produce
/// that takes it all. 0 is no limit, and then nothing is yielded.
pub(super) fn byte_allowance(max_bytes_per_second: u64, produced: u64) -> u64 {
    if max_bytes_per_second == 0 {
        return 0;
    }
    max_bytes_per_second
        .saturating_sub(produced)
        .max(max_bytes_per_second.div_ceil(YIELD_FLOOR))
}

/// Waits for a request's slot under `max_requests_per_second`, then for
/// its `bytes` (read or written) under the byte allowance.
pub(super) async fn pace(inner: &super::Inner, limits: &CompactionLimits, bytes: u64) {
    let waited = inner
        .compaction_pacer
        .pace(limits.max_requests_per_second)
        .await;
    let allowance = byte_allowance(limits.max_bytes_per_second, inner.produce_rate.per_second());
    let bytes_waited = inner
        .compaction_byte_pacer
        .pace_amount(bytes, allowance)
        .await;
    let ms = (waited + bytes_waited).as_millis() as u64;
    super::stats::bump(&inner.stats.compaction_paced_ms, ms);
}

/// Reads and checks `old`'s runs, a few ranged reads at a time, and sends
/// the new object (one partition's runs, copied unchanged, an entry per
/// group) to `parts` as it fills: in parts of the store's part size when it
/// streams, else whole. Returns the new entries and the object's size;
/// `Err(None)` when the writer went away (its error says why).
#[allow(clippy::too_many_arguments)]
async fn stream_object(
    inner: &std::sync::Arc<super::Inner>,
    reads: std::sync::Arc<RunReads>,
    tp: TopicPartition,
    object_key: &str,
    old: &[IndexEntry],
    groups: &[std::ops::Range<usize>],
    limits: &CompactionLimits,
    parts: tokio::sync::mpsc::UnboundedSender<Option<Bytes>>,
) -> std::result::Result<(Vec<IndexEntry>, u64), Option<Error>> {
    let part_size = rewrite_part_size(inner);
    let total = runs_bytes(old);
    let mut builder =
        ObjectBuilder::with_capacity(part_size.map_or(total, |p| total.min(p)), groups.len());
    // Each read is a task of its own, so that it finishes (and lets go of
    // its object store request slot and its span) while this rewrite waits
    // for a part to be written: rewrites running together in one task
    // would otherwise hold each other's reads, and the store's requests,
    // still. Each rewrite asks for `READS_IN_FLIGHT` runs ahead, and they
    // make at most as many ranged reads at once in all (`RunReads`):
    // rewrites that go together ask for runs of the same spans, so fewer
    // asks each would leave the store idle while they wait on each other.
    let runs = futures::stream::iter(old.to_vec())
        .map(|entry| {
            let reads = reads.clone();
            let read = tokio::spawn(async move {
                let bytes = reads.run(&entry).await?;
                verify_run(&entry, &bytes)?;
                Ok::<Bytes, Error>(bytes)
            });
            async move {
                read.await
                    .map_err(|e| Error::Io(format!("a compaction read failed: {e}")))?
            }
        })
        .buffered(READS_IN_FLIGHT);
    futures::pin_mut!(runs);
    let mut sent = 0u64;
    // A part holds its permit until the store lets it go.
    let held = std::sync::Arc::new(tokio::sync::Semaphore::new(PARTS_HELD));
    let mut send = async |part: Bytes| {
        let permit = held.clone().acquire_owned().await.map_err(|_| None)?;
        sent += part.len() as u64;
        let part = Bytes::from_owner(HeldPart {
            part,
            _permit: permit,
        });
        parts.send(Some(part)).map_err(|_| None)
    };
    let mut new = Vec::with_capacity(groups.len());
    for group in groups {
        let position = builder.position();
        let mut batch_count = 0u32;
        for _ in group.clone() {
            yield_to_produce(inner).await;
            let bytes = runs
                .next()
                .await
                .ok_or_else(|| Some(Error::Io("a run was not read".to_string())))??;
            batch_count += batch::batches(&bytes).count() as u32;
            let Some(part_size) = part_size else {
                builder.append(&bytes);
                continue;
            };
            for part in builder.append_in_parts(&bytes, part_size) {
                pace(inner, limits, part.len() as u64).await;
                send(part).await?;
            }
        }
        let entries = &old[group.clone()];
        let footer = builder.finish_run(
            FooterEntry {
                topic_partition: tp,
                base_offset: entries[0].base_offset,
                last_offset: entries[entries.len() - 1].last_offset,
                batch_count,
                position,
                length: 0,
                max_timestamp: entries.iter().map(|e| e.max_timestamp).max().unwrap_or(-1),
            },
            position,
        );
        new.push(IndexEntry {
            topic_partition: tp,
            base_offset: footer.base_offset,
            last_offset: footer.last_offset,
            object_key: object_key.to_string(),
            position: footer.position,
            length: footer.length,
            max_timestamp: footer.max_timestamp,
        });
    }
    // The last part, and the request that completes the upload.
    let last = builder.finish();
    pace(inner, limits, last.len() as u64).await;
    send(last).await?;
    parts.send(None).map_err(|_| None)?;
    Ok((new, sent))
}

/// Parts of S3's smallest size (or the store's, when smaller): a rewrite
/// holds two of them, and several rewrites run at once. `None`: the store
/// takes whole objects.
fn rewrite_part_size(inner: &super::Inner) -> Option<usize> {
    inner
        .compaction_store()
        .part_size()
        .map(|p| p.min(crate::MIN_PART_SIZE))
}

fn runs_bytes(old: &[IndexEntry]) -> usize {
    old.iter().map(|e| e.length as usize).sum()
}

/// How many parts a rewrite of `old` sends. The store must know it before
/// the first part: with `PARTS_HELD` at one, a store that held the first
/// part for the second would wait for the rewrite, and the rewrite for it.
fn rewrite_part_count(inner: &super::Inner, old: &[IndexEntry]) -> crate::PartCount {
    part_count(rewrite_part_size(inner), runs_bytes(old))
}

/// The parts of an object of `runs_bytes` of runs streamed in parts of
/// `part_size`: `ObjectBuilder::append_in_parts` cuts a part as soon as the
/// header and the runs fill one (a run that ends exactly at a part's end
/// included), and the footer comes after it in a part of its own.
pub(crate) fn part_count(part_size: Option<usize>, runs_bytes: usize) -> crate::PartCount {
    match part_size {
        Some(part) if crate::object_format::HEADER_BYTES + runs_bytes >= part => {
            crate::PartCount::Several
        }
        _ => crate::PartCount::Unknown,
    }
}

/// A part of a new object, with the permit it holds while the store has it.
struct HeldPart {
    part: Bytes,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl AsRef<[u8]> for HeldPart {
    fn as_ref(&self) -> &[u8] {
        &self.part
    }
}
