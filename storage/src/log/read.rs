//! Reads: records from an offset, and offsets by time (ListOffsets).
//!
//! Only committed index entries are read, so a reader never sees a batch
//! whose produce has not been answered. Bytes come from the tail cache when
//! the object is recent, else from a ranged read of the object store.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use metadata::{IndexEntry, TopicPartition};
use protocol::batch::{self, BatchHeader};
use protocol::kafka_protocol::records::RecordBatchDecoder;

use super::{Log, stats};
use crate::{Error, Result};

/// Records read from one partition.
#[derive(Clone, Debug)]
pub struct ReadResult {
    /// Whole batches, starting with the one holding the requested offset. Empty
    /// when the offset is the high watermark.
    pub records: Bytes,
    pub high_watermark: i64,
    pub log_start_offset: i64,
    /// Records below the high watermark were left out (by `max_bytes` or the
    /// per-read bound): a Fetch need not wait for more to arrive.
    pub more_available: bool,
}

/// Which offset ListOffsets asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OffsetSpec {
    /// -2: the log start offset.
    Earliest,
    /// -1: the high watermark.
    Latest,
    /// -3: the record with the largest timestamp.
    MaxTimestamp,
    /// The first record whose timestamp is at or after this one (ms).
    Timestamp(i64),
}

/// An answer to ListOffsets; (-1, -1) when no record matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimestampOffset {
    pub offset: i64,
    pub timestamp: i64,
}

/// Pages of index entries one read walks at most: bounds the work of a read
/// whose batches are tiny (with 32 entries a page, up to 1,024 flushes).
const MAX_INDEX_PAGES_PER_READ: usize = 32;

/// Index entries one read fetches at once from the object store.
const READ_AHEAD_ENTRIES: usize = 8;

/// A slice of `bytes`, copied out when it is much smaller than `bytes`, so a
/// small answer does not keep a whole multi-megabyte index run in memory.
fn keep_small_slice(bytes: &Bytes, start: usize, end: usize) -> Bytes {
    if (end - start) * 4 < bytes.len() {
        Bytes::copy_from_slice(&bytes[start..end])
    } else {
        bytes.slice(start..end)
    }
}

const NOT_FOUND: TimestampOffset = TimestampOffset {
    offset: -1,
    timestamp: -1,
};

impl Log {
    /// Reads whole batches from `offset` (starting with the batch that holds
    /// it), up to `max_bytes`. With `min_one`, the first batch is returned even
    /// when it is larger than `max_bytes`, as Kafka does for the first
    /// partition of a Fetch answer, so an oversized batch can still be consumed.
    pub async fn read(
        &self,
        topic_partition: TopicPartition,
        offset: i64,
        max_bytes: usize,
        min_one: bool,
    ) -> Result<ReadResult> {
        let partition = self
            .inner
            .partition(&topic_partition)
            .ok_or(Error::NotLeader(topic_partition))?;
        let (high_watermark, log_start_offset) = {
            let s = partition.state.lock().expect("partition lock");
            (s.next_offset, s.log_start_offset)
        };
        if offset < log_start_offset || offset > high_watermark {
            return Err(Error::OffsetOutOfRange {
                offset,
                log_start_offset,
                high_watermark,
            });
        }
        let mut result = ReadResult {
            records: Bytes::new(),
            high_watermark,
            log_start_offset,
            more_available: offset < high_watermark,
        };
        if offset == high_watermark || (max_bytes == 0 && !min_one) {
            return Ok(result);
        }
        let mut chunks: Vec<Bytes> = Vec::new();
        let mut total = 0usize;
        let mut next = offset;
        'pages: for _ in 0..MAX_INDEX_PAGES_PER_READ {
            // Full (a first batch over max_bytes included): the next entry
            // would only be read from the store to find it does not fit.
            if total > 0 && total >= max_bytes {
                break;
            }
            let entries = self.index_page(&partition, topic_partition, next).await?;
            if entries.is_empty() {
                break;
            }
            // Fetch the entries this read can use, several at once and in
            // order: a lagging reader's entries come from the object store,
            // one ranged GET each, and one at a time was latency-bound.
            let budget = max_bytes.saturating_sub(total);
            let mut wanted = 0;
            let mut wanted_bytes = 0u64;
            for entry in &entries {
                wanted += 1;
                wanted_bytes += entry.length;
                if wanted_bytes >= budget as u64 {
                    break;
                }
            }
            // Entries that lie end to end in one object (a partition's run
            // that object compaction wrote) are read with one ranged GET,
            // and the last such span reads ahead into the block cache.
            // Owned entries: futures borrowing them trip the compiler's Send
            // check in the broker's spawned connection tasks.
            let read_ahead = self.read_ahead_bytes();
            let fetches = futures::stream::iter(spans(entries, wanted, read_ahead))
                .map(|(span, needed)| async move { self.span_bytes(span, needed).await })
                .buffered(READ_AHEAD_ENTRIES)
                .flat_map(futures::stream::iter);
            futures::pin_mut!(fetches);
            while let Some((entry, bytes)) = fetches.next().await {
                let entry = &entry;
                let bytes = match bytes {
                    Ok(bytes) => bytes,
                    // What was read before the damage is answered; the
                    // error only when nothing could be read.
                    Err(e) if total > 0 => {
                        self.report_unreadable(entry, &e);
                        break 'pages;
                    }
                    Err(e) => {
                        self.report_unreadable(entry, &e);
                        return Err(e);
                    }
                };
                let mut run = None::<(usize, usize)>;
                let mut full = false;
                for (start, header) in batch::batches(&bytes) {
                    if header.last_offset() < next {
                        continue;
                    }
                    let fits = total + header.size_bytes() <= max_bytes;
                    let first_of_min_one = min_one && total == 0;
                    if !(fits || first_of_min_one) {
                        full = true;
                        break;
                    }
                    let (s, _) = run.get_or_insert((start, start));
                    run = Some((*s, start + header.size_bytes()));
                    total += header.size_bytes();
                    next = header.last_offset() + 1;
                }
                if let Some((s, e)) = run {
                    chunks.push(keep_small_slice(&bytes, s, e));
                }
                if full {
                    // The reader's next fetch starts in this entry.
                    self.inner.block_cache.keep_for_next_read(
                        &entry.object_key,
                        entry.position..entry.position + entry.length,
                    );
                    break 'pages;
                }
                next = next.max(entry.last_offset + 1);
            }
        }
        result.more_available = next < high_watermark;
        result.records = match chunks.len() {
            0 => Bytes::new(),
            1 => chunks.pop().expect("one chunk"),
            _ => {
                let mut joined = BytesMut::with_capacity(total);
                for c in &chunks {
                    joined.extend_from_slice(c);
                }
                joined.freeze()
            }
        };
        Ok(result)
    }

    /// Logs an unreadable object once (per bounded memory of them).
    fn report_unreadable(&self, entry: &IndexEntry, error: &Error) {
        const MAX_REMEMBERED: usize = 10_000;
        let mut reported = self
            .inner
            .reported_unreadable
            .lock()
            .expect("reported lock");
        if reported.len() >= MAX_REMEMBERED {
            reported.clear();
        }
        if reported.insert(entry.object_key.clone()) {
            tracing::error!(
                object = entry.object_key,
                topic_partition = %entry.topic_partition,
                base_offset = entry.base_offset,
                last_offset = entry.last_offset,
                %error,
                "committed records are unreadable; fetches answer the records before them"
            );
        }
    }

    /// Up to `read_max_index_entries` committed index entries of a partition
    /// from `offset`: from the partition's recent entries when they reach back
    /// that far, else from the metadata store.
    async fn index_page(
        &self,
        partition: &super::Partition,
        topic_partition: TopicPartition,
        offset: i64,
    ) -> Result<Vec<IndexEntry>> {
        let limit = self.inner.config.read_max_index_entries;
        {
            let s = partition.state.lock().expect("partition lock");
            if s.recent
                .front()
                .is_some_and(|first| first.base_offset <= offset)
            {
                return Ok(s
                    .recent
                    .iter()
                    .filter(|e| e.last_offset >= offset)
                    .take(limit)
                    .cloned()
                    .collect());
            }
        }
        Ok(self
            .inner
            .metadata
            .index_entries(topic_partition, offset, limit)
            .await?)
    }

    /// The answer to ListOffsets for one partition.
    pub async fn list_offset(
        &self,
        topic_partition: TopicPartition,
        spec: OffsetSpec,
    ) -> Result<TimestampOffset> {
        let (log_start_offset, high_watermark, _) = self
            .offsets(&topic_partition)
            .ok_or(Error::NotLeader(topic_partition))?;
        let metadata = &self.inner.metadata;
        match spec {
            OffsetSpec::Earliest => Ok(TimestampOffset {
                offset: log_start_offset,
                timestamp: -1,
            }),
            OffsetSpec::Latest => Ok(TimestampOffset {
                offset: high_watermark,
                timestamp: -1,
            }),
            OffsetSpec::MaxTimestamp => {
                let Some(entry) = metadata.index_entry_max_timestamp(topic_partition).await? else {
                    return Ok(NOT_FOUND);
                };
                let bytes = self.entry_bytes(&entry).await?;
                let max_timestamp = entry.max_timestamp;
                // Decoding a compressed batch costs CPU: off the async workers.
                off_the_runtime(move || {
                    batch::batches(&bytes)
                        .find(|(_, h)| h.max_timestamp == max_timestamp)
                        .and_then(|(start, h)| {
                            first_record_at_or_after(
                                &bytes,
                                start,
                                &h,
                                h.max_timestamp,
                                log_start_offset,
                            )
                        })
                })
                .await
            }
            OffsetSpec::Timestamp(timestamp) => {
                let Some(entry) = metadata
                    .index_entry_by_timestamp(topic_partition, timestamp)
                    .await?
                else {
                    return Ok(NOT_FOUND);
                };
                let bytes = self.entry_bytes(&entry).await?;
                off_the_runtime(move || {
                    batch::batches(&bytes)
                        .filter(|(_, h)| {
                            h.max_timestamp >= timestamp && h.last_offset() >= log_start_offset
                        })
                        .find_map(|(start, h)| {
                            first_record_at_or_after(&bytes, start, &h, timestamp, log_start_offset)
                        })
                })
                .await
            }
        }
    }

    /// Read-ahead allowed per span: the setting, within a quarter of the
    /// block cache (what is read ahead must stay there until it is read).
    fn read_ahead_bytes(&self) -> u64 {
        let config = &self.inner.config;
        config
            .read_ahead_max_bytes
            .min(config.block_cache_max_bytes / 4) as u64
    }

    /// The first `needed` entries of `span` (entries end to end in one
    /// object) with their bytes; the entries after them are read ahead into
    /// the block cache. Entries the tail cache holds are served from it.
    async fn span_bytes(
        &self,
        span: Vec<IndexEntry>,
        needed: usize,
    ) -> Vec<(IndexEntry, Result<Bytes>)> {
        // A single entry (every flush object's run, the tail's common case)
        // goes straight to `entry_bytes`, which looks in the tail cache once.
        let in_tail_cache = || {
            let first = &span[0];
            self.inner
                .tail_cache
                .lock()
                .expect("tail cache lock")
                .get_range(
                    &first.object_key,
                    first.position,
                    first.position + first.length,
                )
                .is_some()
        };
        if span.len() == 1 || in_tail_cache() {
            let mut out = Vec::with_capacity(needed);
            for entry in span.into_iter().take(needed) {
                let bytes = self.entry_bytes(&entry).await;
                out.push((entry, bytes));
            }
            return out;
        }
        stats::bump(&self.inner.stats.block_reads, needed as u64);
        let ranges: Vec<_> = span
            .iter()
            .map(|e| e.position..e.position + e.length)
            .collect();
        // The blocks read ahead are checked after the answer, by the task
        // that pulls them: it owns the entries it checks them against.
        let span = Arc::new(span);
        let checked = span.clone();
        let results = self
            .inner
            .block_cache
            .get_span(
                self.inner.store.clone(),
                &span[0].object_key,
                &ranges,
                needed,
                move |i, bytes| verify_run(&checked[i], bytes),
            )
            .await;
        span.iter().cloned().zip(results).collect()
    }

    /// The bytes of one index entry: from the tail cache, else the block
    /// cache, else the object store (through the block cache).
    async fn entry_bytes(&self, entry: &IndexEntry) -> Result<Bytes> {
        let end = entry.position + entry.length;
        let cached = self
            .inner
            .tail_cache
            .lock()
            .expect("tail cache lock")
            .get_range(&entry.object_key, entry.position, end);
        match cached {
            Some(bytes) => {
                stats::bump(&self.inner.stats.tail_cache_hits, 1);
                Ok(bytes)
            }
            None => {
                stats::bump(&self.inner.stats.block_reads, 1);
                self.inner
                    .block_cache
                    .get_range(
                        self.inner.store.as_ref(),
                        &entry.object_key,
                        entry.position..end,
                        |bytes| verify_run(entry, bytes),
                    )
                    .await
            }
        }
    }
}

/// The first `wanted` of `entries`, grouped into spans of entries that lie
/// end to end in one object, each with how many of its entries are wanted;
/// the last span goes on past them, through entries that continue it, up
/// to `read_ahead` bytes in all.
fn spans(
    entries: Vec<IndexEntry>,
    wanted: usize,
    read_ahead: u64,
) -> Vec<(Vec<IndexEntry>, usize)> {
    let continues = |span: &[IndexEntry], e: &IndexEntry| {
        span.last().is_some_and(|last| {
            last.object_key == e.object_key && last.position + last.length == e.position
        })
    };
    let mut spans: Vec<(Vec<IndexEntry>, usize)> = Vec::new();
    let mut span_bytes = 0u64;
    for (i, entry) in entries.into_iter().enumerate() {
        let is_wanted = i < wanted;
        match spans.last_mut() {
            Some((span, needed)) if continues(span, &entry) => {
                if !is_wanted && span_bytes + entry.length > read_ahead {
                    break;
                }
                span_bytes += entry.length;
                span.push(entry);
                *needed += usize::from(is_wanted);
            }
            _ if !is_wanted => break,
            _ => {
                span_bytes = entry.length;
                spans.push((vec![entry], 1));
            }
        }
    }
    spans
}

/// Runs a search over decoded records on a blocking thread; `NOT_FOUND`
/// when it finds nothing.
async fn off_the_runtime(
    search: impl FnOnce() -> Option<TimestampOffset> + Send + 'static,
) -> Result<TimestampOffset> {
    tokio::task::spawn_blocking(search)
        .await
        .map(|found| found.unwrap_or(NOT_FOUND))
        .map_err(|e| Error::Io(format!("record search failed: {e}")))
}

/// Checks an index entry's run as read from the object store: whole v2
/// batches filling exactly the entry's length, each with a good CRC, from
/// the entry's base offset to its last. A flipped byte, a truncated or
/// replaced object is reported, never served.
pub(crate) fn verify_run(entry: &IndexEntry, bytes: &Bytes) -> Result<()> {
    let corrupt = |why: String| {
        Error::CorruptObject(format!(
            "key={} position={} length={} base_offset={}: {why}",
            entry.object_key, entry.position, entry.length, entry.base_offset
        ))
    };
    if bytes.len() as u64 != entry.length {
        return Err(corrupt(format!("read {} bytes", bytes.len())));
    }
    let mut at = 0usize;
    let mut last_offset = None;
    while at < bytes.len() {
        let header = batch::parse_header(&bytes[at..]).map_err(|e| corrupt(e.to_string()))?;
        batch::verify_crc(&header, &bytes[at..]).map_err(|e| corrupt(e.to_string()))?;
        if at == 0 && header.base_offset != entry.base_offset {
            return Err(corrupt(format!(
                "first batch starts at offset {}",
                header.base_offset
            )));
        }
        last_offset = Some(header.last_offset());
        at += header.size_bytes();
    }
    if last_offset != Some(entry.last_offset) {
        return Err(corrupt(format!("batches end at offset {last_offset:?}")));
    }
    Ok(())
}

/// The first record of the batch at `start` whose timestamp is ≥ `timestamp`.
/// LogAppendTime batches carry one time for all records: the batch's.
/// The first record of the batch at `start` at or after `timestamp` and at
/// or after `log_start_offset` (DeleteRecords may cut into a batch; the
/// records before the cut are gone for ListOffsets as for Fetch).
fn first_record_at_or_after(
    bytes: &Bytes,
    start: usize,
    header: &BatchHeader,
    timestamp: i64,
    log_start_offset: i64,
) -> Option<TimestampOffset> {
    if header.is_log_append_time() {
        return Some(TimestampOffset {
            offset: header.base_offset.max(log_start_offset),
            timestamp: header.max_timestamp,
        });
    }
    let mut one = bytes.slice(start..start + header.size_bytes());
    match RecordBatchDecoder::decode(&mut one) {
        Ok(set) => set
            .records
            .iter()
            .find(|r| r.timestamp >= timestamp && r.offset >= log_start_offset)
            .map(|r| TimestampOffset {
                offset: r.offset,
                timestamp: r.timestamp,
            }),
        Err(e) => {
            tracing::warn!(error = %e, base_offset = header.base_offset, "stored batch does not decode");
            None
        }
    }
}
