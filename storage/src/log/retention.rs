//! Moving a partition's log start forward: on demand (DeleteRecords) and by
//! retention (`retention.ms`, `retention.bytes`).
//!
//! Kafka deletes whole segments, oldest first, and stops at the first one
//! it must keep. Our unit is the index entry (one partition's run of whole
//! batches in one flush), so retention cuts between entries, never inside a
//! batch: the new log start is the base offset of the first entry kept.
//! DeleteRecords moves it to exactly the offset asked for, as Kafka does;
//! the entry it falls in stays, and reads start inside it.
//!
//! Only the leader moves a log start, under its leader epoch
//! (`LogStore::advance_log_start`); the objects no index entry names any
//! more are left to garbage collection.

use metadata::{IndexEntry, TopicPartition};

use super::{Log, flush::metadata_call, leadership::drop_partitions};
use crate::{Error, Result};

/// Index entries one retention pass looks at, at most, past the whole
/// segments it skips; the next pass goes on from where it stopped.
const MAX_ENTRIES_PER_PASS: usize = 10_000;

/// Index entries read from the metadata store at once.
const PAGE_ENTRIES: usize = 500;

/// A partition's retention limits; `None` keeps everything (Kafka's `-1`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RetentionLimits {
    /// `retention.ms`: an entry goes once every record in it is older than
    /// this (its largest timestamp, so a future timestamp keeps it).
    pub retention_ms: Option<i64>,
    /// `retention.bytes`: the oldest entries go while the partition would
    /// still hold at least this many bytes without them.
    pub retention_bytes: Option<i64>,
}

impl RetentionLimits {
    /// From Kafka's values, where a negative one means no limit.
    pub fn from_kafka(retention_ms: i64, retention_bytes: i64) -> RetentionLimits {
        RetentionLimits {
            retention_ms: (retention_ms >= 0).then_some(retention_ms),
            retention_bytes: (retention_bytes >= 0).then_some(retention_bytes),
        }
    }
}

/// Whether an entry (or a whole segment) may go: the walk's state.
struct Cut {
    now_ms: i64,
    limits: RetentionLimits,
    /// Bytes the partition holds from the current cut on.
    remaining_bytes: i64,
}

impl Cut {
    fn expired(&self, max_timestamp: i64) -> bool {
        self.limits
            .retention_ms
            .is_some_and(|ms| self.now_ms.saturating_sub(max_timestamp) > ms)
    }

    fn over_size(&self, bytes: i64) -> bool {
        self.limits
            .retention_bytes
            .is_some_and(|limit| self.remaining_bytes - bytes >= limit)
    }

    /// Takes `bytes` ending at `max_timestamp` off the log when either limit
    /// lets it go.
    fn take(&mut self, max_timestamp: i64, bytes: i64) -> bool {
        let goes = self.expired(max_timestamp) || self.over_size(bytes);
        if goes {
            self.remaining_bytes -= bytes;
        }
        goes
    }
}

impl Log {
    /// Moves the partition's log start to `offset` (DeleteRecords); returns
    /// the log start after the call, which is the current one when that is
    /// already at or past `offset`. `OffsetOutOfRange` beyond the high
    /// watermark; `NotLeader` unless this log leads it (and is not handing
    /// it over).
    pub async fn advance_log_start(&self, tp: TopicPartition, offset: i64) -> Result<i64> {
        let inner = &self.inner;
        let partition = inner.partition(&tp).ok_or(Error::NotLeader(tp))?;
        let (epoch, log_start_offset, high_watermark) = {
            let s = partition.state.lock().expect("partition lock");
            if s.resigning {
                return Err(Error::NotLeader(tp));
            }
            (s.leader_epoch, s.log_start_offset, s.next_offset)
        };
        if offset < 0 || offset > high_watermark {
            return Err(Error::OffsetOutOfRange {
                offset,
                log_start_offset,
                high_watermark,
            });
        }
        if offset <= log_start_offset {
            return Ok(log_start_offset);
        }
        let session = (*inner.session.lock().expect("session lock")).ok_or(Error::NotLeader(tp))?;
        let moved = metadata_call(
            inner,
            inner.metadata.advance_log_start(session, tp, epoch, offset),
        )
        .await;
        let log_start = match moved {
            Ok(log_start) => log_start,
            Err(e @ metadata::Error::Fenced { .. }) => {
                drop_partitions(inner, Some(&[tp]), &e.to_string());
                return Err(Error::NotLeader(tp));
            }
            Err(e @ metadata::Error::SessionFenced(_)) => {
                drop_partitions(inner, None, &e.to_string());
                return Err(Error::NotLeader(tp));
            }
            Err(e) => return Err(e.into()),
        };
        let mut s = partition.state.lock().expect("partition lock");
        if s.leader_epoch == epoch && log_start > s.log_start_offset {
            s.log_start_offset = log_start;
            while s.recent.front().is_some_and(|e| e.last_offset < log_start) {
                s.recent.pop_front();
            }
        }
        Ok(s.log_start_offset)
    }

    /// One retention pass over a partition this log leads, at the clock's
    /// time: moves its log start past the oldest entries that either limit
    /// lets go, stopping at the first entry both keep, and returns the new
    /// log start, or `None` when nothing went. (Kafka's time and size
    /// deletions each stop at their first survivor; run again and again,
    /// as Kafka runs them every check, they end where this walk does.)
    pub async fn enforce_retention(
        &self,
        tp: TopicPartition,
        limits: RetentionLimits,
    ) -> Result<Option<i64>> {
        if limits == RetentionLimits::default() {
            return Ok(None);
        }
        let (log_start_offset, _, _) = self.offsets(&tp).ok_or(Error::NotLeader(tp))?;
        let metadata = &self.inner.metadata;
        let segments = metadata.index_segments(tp).await?;
        let mut cut = Cut {
            now_ms: self.inner.clock.now_ms(),
            limits,
            remaining_bytes: segments.iter().map(|s| s.bytes).sum(),
        };
        let mut new_start = log_start_offset;
        let mut examined = 0usize;
        'segments: for segment in &segments {
            if segment.last_offset < new_start {
                continue;
            }
            if cut.take(segment.max_timestamp, segment.bytes) {
                new_start = segment.last_offset + 1;
                continue;
            }
            // Part of this segment may go: walk its entries.
            let mut from = new_start;
            loop {
                let page: Vec<IndexEntry> = metadata.index_entries(tp, from, PAGE_ENTRIES).await?;
                if page.is_empty() {
                    break 'segments;
                }
                for entry in &page {
                    examined += 1;
                    if entry.base_offset > segment.last_offset {
                        // The segment's entries all went (its summary was
                        // stale): go on with the next segment.
                        continue 'segments;
                    }
                    if !cut.take(entry.max_timestamp, entry.length as i64) {
                        break 'segments;
                    }
                    new_start = entry.last_offset + 1;
                    if examined >= MAX_ENTRIES_PER_PASS {
                        break 'segments;
                    }
                }
                from = new_start;
            }
        }
        if new_start <= log_start_offset {
            return Ok(None);
        }
        let log_start = self.advance_log_start(tp, new_start).await?;
        tracing::info!(
            topic_partition = %tp,
            from = log_start_offset,
            to = log_start,
            "retention moved the log start"
        );
        Ok(Some(log_start))
    }

    /// Bytes of the partition's batches from its log start on, as its index
    /// counts them (an entry the log start cuts into counts whole).
    pub async fn size_bytes(&self, tp: TopicPartition) -> Result<i64> {
        Ok(self
            .inner
            .metadata
            .index_segments(tp)
            .await?
            .iter()
            .map(|s| s.bytes)
            .sum())
    }
}
