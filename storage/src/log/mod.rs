//! The log of every partition this broker owns.
//!
//! Produce path: `append` checks the batch, takes room in the bounded flush
//! buffer (waiting when it is full: back-pressure, not growth), queues the
//! batch and waits. The flusher (`flush.rs`) seals the buffer every
//! `flush_interval_ms` or at `flush_max_bytes` (`seal.rs`: in steps, parts
//! streamed while it fills, for a store that streams), assigns offsets,
//! writes one object holding every partition's batches, commits the index
//! entries in one metadata transaction, and only then answers the waiting
//! appends.
//!
//! Read path (`read.rs`): committed index entries (recent ones from memory,
//! older ones from the metadata store) → bytes from the tail cache or a ranged
//! read of the object store.
//!
//! Guarantee: when `append` returns `Ok`, the batch is in a durable object and
//! its index entry is committed; after any restart it is readable at the
//! returned offset.

mod compaction;
mod compaction_reads;
mod flush;
mod leadership;
mod producers;
mod read;
mod retention;
mod seal;
mod stats;
mod unsettled;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use metadata::{BrokerSession, IndexEntry, MetadataStore, PartitionState, TopicPartition};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, oneshot, watch};
use tokio_util::sync::CancellationToken;

pub use self::stats::LogStatsSnapshot;
use crate::tail_cache::TailCache;
use crate::{Clock, Error, ObjectStore, Result};

pub use compaction::{CompactionLimits, NoRewrite, Rewrite};
pub use read::{OffsetSpec, ReadResult, TimestampOffset};
pub use retention::RetentionLimits;
pub use unsettled::UnsettledObjects;

/// Settings of the log. Plain data; the components are wired in `Log::open`.
#[derive(Clone, Debug)]
pub struct LogConfig {
    /// Longest a produced batch waits in the flush buffer before the flush
    /// that carries it starts. Lower: less produce latency; higher: fewer,
    /// larger objects.
    pub flush_interval_ms: u64,
    /// A flush starts as soon as this many bytes are buffered.
    pub flush_max_bytes: usize,
    /// Bound on produced bytes held in memory (buffered plus being flushed).
    /// When reached, `append` waits: back-pressure instead of unbounded growth.
    pub flush_buffer_max_bytes: usize,
    /// Bytes of recently flushed objects kept in memory for tail reads.
    pub tail_cache_max_bytes: usize,
    /// Bytes of older runs read from the object store kept for re-reads.
    pub block_cache_max_bytes: usize,
    /// Bytes one read may fetch past what it answers, when the entries it
    /// reads lie end to end in one object (compacted runs): one ranged GET
    /// then serves the next reads from the block cache. At most a quarter
    /// of `block_cache_max_bytes` is used.
    pub read_ahead_max_bytes: usize,
    /// Index entries kept in memory per partition, so tail reads skip the
    /// metadata store.
    pub recent_index_entries: usize,
    /// Index entries one read looks at, at most.
    pub read_max_index_entries: usize,
    /// Flushes whose objects may be written at once (commits stay in order).
    /// More hides fsync and upload latency; each holds its object in memory,
    /// within `flush_buffer_max_bytes`.
    pub max_flushes_in_flight: usize,
    /// Longest an object write may take before its flush fails (retriable).
    pub object_write_timeout_ms: u64,
    /// Longest a metadata commit (or its read-back) may take before it is
    /// treated as timed out: read back, then failed if not applied.
    pub metadata_timeout_ms: u64,
    /// Kafka's `producer.id.expiration.ms`: an idempotent producer's state on
    /// a partition is forgotten this long after its last write there.
    pub producer_id_expiration_ms: i64,
    /// Kafka's `producer.id.expiration.check.interval.ms`: how often expired
    /// producer states are removed (they are ignored as soon as they expire).
    pub producer_id_expiration_check_interval_ms: u64,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            flush_interval_ms: 2,
            flush_max_bytes: 8 * 1024 * 1024,
            flush_buffer_max_bytes: 64 * 1024 * 1024,
            tail_cache_max_bytes: 64 * 1024 * 1024,
            block_cache_max_bytes: 256 * 1024 * 1024,
            read_ahead_max_bytes: 64 * 1024 * 1024,
            recent_index_entries: 64,
            read_max_index_entries: 32,
            max_flushes_in_flight: 4,
            object_write_timeout_ms: 30_000,
            metadata_timeout_ms: 10_000,
            producer_id_expiration_ms: 86_400_000,
            producer_id_expiration_check_interval_ms: 600_000,
        }
    }
}

/// How to append one batch.
#[derive(Clone, Copy, Debug, Default)]
pub struct AppendOptions {
    /// Stamp the batch with the broker's time (`message.timestamp.type=LogAppendTime`).
    pub log_append_time: bool,
}

/// Where an appended batch landed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AppendResult {
    pub base_offset: i64,
    /// The broker's timestamp for LogAppendTime topics, else -1.
    pub log_append_time_ms: i64,
    pub log_start_offset: i64,
}

/// A queued append; `wait` returns when its flush is committed (or failed).
pub struct PendingAppend {
    answer: oneshot::Receiver<Result<AppendResult>>,
}

impl PendingAppend {
    pub async fn wait(self) -> Result<AppendResult> {
        self.answer
            .await
            .map_err(|_| Error::Unavailable("flusher stopped before answering".to_string()))?
    }
}

/// One partition's in-memory state; the metadata store holds the truth.
pub(crate) struct Partition {
    pub(crate) state: Mutex<PartitionMem>,
    /// The high watermark; fetches waiting for data watch it.
    pub(crate) high_watermark: watch::Sender<i64>,
}

pub(crate) struct PartitionMem {
    /// The epoch this log claimed the partition at; every commit carries it.
    pub(crate) leader_epoch: i32,
    /// Being handed over: appends are refused while what was queued drains.
    pub(crate) resigning: bool,
    pub(crate) log_start_offset: i64,
    /// One past the last committed offset (= high watermark without transactions).
    pub(crate) next_offset: i64,
    /// One past the last offset handed to a sealed flush, committed or not;
    /// the next flush starts here. Equal to `next_offset` when no flush is in flight.
    pub(crate) reserved_next_offset: i64,
    /// The newest committed index entries, oldest first.
    pub(crate) recent: VecDeque<IndexEntry>,
    /// Idempotent producers' last batches, committed and in flight.
    pub(crate) producers: producers::Producers,
    /// Where object compaction starts looking (with the `small_entry_bytes`
    /// it was found under): the entries below it are rewrites it never
    /// copies again, so a pass does not walk them from the log start.
    pub(crate) compaction_from: (u64, i64),
}

pub(crate) struct PendingBatch {
    pub(crate) topic_partition: TopicPartition,
    pub(crate) bytes: Bytes,
    pub(crate) options: AppendOptions,
    pub(crate) reply: oneshot::Sender<Result<AppendResult>>,
    /// Room in the flush buffer, given back when the flush that carries it
    /// has been committed or failed (the flusher keeps it with the flush).
    pub(crate) permit: OwnedSemaphorePermit,
}

#[derive(Default)]
pub(crate) struct Pending {
    pub(crate) batches: Vec<PendingBatch>,
    pub(crate) bytes: usize,
    pub(crate) first_at: Option<Instant>,
}

pub(crate) struct Inner {
    pub(crate) config: LogConfig,
    pub(crate) store: Arc<dyn ObjectStore>,
    /// The store object compaction reads and writes through, when not
    /// `store` (`Log::set_compaction_store`).
    pub(crate) compaction_store: std::sync::OnceLock<Arc<dyn ObjectStore>>,
    pub(crate) metadata: Arc<dyn MetadataStore>,
    pub(crate) clock: Arc<dyn Clock>,
    /// The broker session this log commits as; `None` until it leads anything.
    pub(crate) session: Mutex<Option<BrokerSession>>,
    /// The partitions this log leads (claimed, not handed over or fenced).
    pub(crate) partitions: RwLock<HashMap<TopicPartition, Arc<Partition>>>,
    pub(crate) pending: Mutex<Pending>,
    pub(crate) pending_changed: Notify,
    pub(crate) buffer_room: Arc<Semaphore>,
    pub(crate) tail_cache: Mutex<TailCache>,
    pub(crate) block_cache: Arc<crate::block_cache::BlockCache>,
    /// Objects already reported unreadable, so that the log names each once
    /// and not once per fetch (cleared when it grows past a bound).
    pub(crate) reported_unreadable: Mutex<std::collections::HashSet<String>>,
    pub(crate) shutdown: CancellationToken,
    /// Moves on whenever a flush fails; flushes sealed under an older
    /// generation are failed instead of committed (their offsets follow a hole).
    pub(crate) generation: AtomicU64,
    /// Held while sealing (reading the generation and reserving offsets) and
    /// while a failure moves the generation and resets the reservations, so
    /// a flush of the new generation always starts from committed offsets.
    pub(crate) seal_lock: Mutex<()>,
    /// Objects garbage collection must leave alone.
    pub(crate) unsettled: Arc<UnsettledObjects>,
    pub(crate) stats: stats::LogStats,
    /// Spaces object compaction's object store requests.
    pub(crate) compaction_pacer: crate::pacer::Pacer,
    /// Spaces object compaction's bytes read and written.
    pub(crate) compaction_byte_pacer: crate::pacer::Pacer,
    /// Bytes flushed over the last second, which object compaction yields
    /// its byte allowance to.
    pub(crate) produce_rate: crate::pacer::RecentRate,
}

impl Inner {
    /// The store object compaction goes through.
    pub(crate) fn compaction_store(&self) -> &Arc<dyn ObjectStore> {
        self.compaction_store.get().unwrap_or(&self.store)
    }

    pub(crate) fn partition(&self, tp: &TopicPartition) -> Option<Arc<Partition>> {
        self.partitions
            .read()
            .expect("partitions lock")
            .get(tp)
            .cloned()
    }
}

/// The log. Cheap to share behind an `Arc`.
pub struct Log {
    inner: Arc<Inner>,
    flusher: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Log {
    /// Starts the flusher. The log leads no partition until `lead` hands it
    /// some the broker claimed.
    pub async fn open(
        config: LogConfig,
        store: Arc<dyn ObjectStore>,
        metadata: Arc<dyn MetadataStore>,
        clock: Arc<dyn Clock>,
    ) -> Result<Log> {
        let buffer_room = Arc::new(Semaphore::new(config.flush_buffer_max_bytes));
        let inner = Arc::new(Inner {
            tail_cache: Mutex::new(TailCache::new(config.tail_cache_max_bytes)),
            block_cache: Arc::new(crate::block_cache::BlockCache::new(
                config.block_cache_max_bytes,
            )),
            reported_unreadable: Mutex::new(Default::default()),
            config,
            store,
            compaction_store: std::sync::OnceLock::new(),
            metadata,
            clock,
            session: Mutex::new(None),
            partitions: RwLock::new(HashMap::new()),
            pending: Mutex::new(Pending::default()),
            pending_changed: Notify::new(),
            buffer_room,
            shutdown: CancellationToken::new(),
            generation: AtomicU64::new(0),
            seal_lock: Mutex::new(()),
            unsettled: Arc::new(UnsettledObjects::default()),
            stats: stats::LogStats::default(),
            compaction_pacer: crate::pacer::Pacer::default(),
            compaction_byte_pacer: crate::pacer::Pacer::default(),
            produce_rate: crate::pacer::RecentRate::default(),
        });
        let log = Log {
            flusher: Mutex::new(Some(tokio::spawn(flush::run(inner.clone())))),
            inner,
        };
        tokio::spawn(expire_producers(log.inner.clone()));
        Ok(log)
    }

    /// What the log has done and holds, for `/metrics`.
    pub fn stats(&self) -> LogStatsSnapshot {
        let inner = &self.inner;
        let block_cache = inner.block_cache.stats();
        let max = inner.config.flush_buffer_max_bytes as u64;
        LogStatsSnapshot {
            block_cache_hits: block_cache.hits,
            block_cache_misses: block_cache.misses,
            read_ahead_bytes: block_cache.read_ahead_bytes,
            read_ahead_wasted_bytes: block_cache.read_ahead_wasted_bytes,
            read_streams_resumed: block_cache.resumed_streams,
            read_streams_parked: block_cache.parked_streams as u64,
            block_cache_bytes: block_cache.bytes as u64,
            buffer_bytes: max.saturating_sub(inner.buffer_room.available_permits() as u64),
            buffer_max_bytes: max,
            tail_cache_bytes: inner
                .tail_cache
                .lock()
                .expect("tail cache lock")
                .used_bytes() as u64,
            partitions_led: inner.partitions.read().expect("partitions lock").len() as u64,
            ..inner.stats.snapshot()
        }
    }

    /// Has object compaction read and write through `store` (the same
    /// objects as the log's store) rather than the log's own: a client of
    /// its own keeps its connections, and its request slots, apart from
    /// produce's and fetch's. Set once, before compaction first runs;
    /// `false` when it was already set.
    pub fn set_compaction_store(&self, store: Arc<dyn ObjectStore>) -> bool {
        self.inner.compaction_store.set(store).is_ok()
    }

    /// The objects of flushes not yet settled, for garbage collection.
    pub fn unsettled_objects(&self) -> Arc<UnsettledObjects> {
        self.inner.unsettled.clone()
    }

    /// Appends one produced batch (already checked by
    /// `protocol::batch::validate_produce_batch`) and returns once it is
    /// durable and committed. Waits while the flush buffer is full.
    pub async fn append(
        &self,
        topic_partition: TopicPartition,
        batch: Bytes,
        options: AppendOptions,
    ) -> Result<AppendResult> {
        self.enqueue(topic_partition, batch, options)
            .await?
            .wait()
            .await
    }

    /// First half of `append`: takes room in the flush buffer (waiting while it
    /// is full) and queues the batch. Batches enqueued one after another are
    /// stored in that order, so a connection that enqueues its produces in
    /// request order keeps them in order while waiting for them concurrently.
    pub async fn enqueue(
        &self,
        topic_partition: TopicPartition,
        batch: Bytes,
        options: AppendOptions,
    ) -> Result<PendingAppend> {
        if self.inner.shutdown.is_cancelled() {
            return Err(Error::ShuttingDown);
        }
        protocol::batch::parse_header(&batch)
            .map_err(|e| Error::Unavailable(format!("append of an unchecked batch: {e}")))?;
        match self.inner.partition(&topic_partition) {
            Some(p) if !p.state.lock().expect("partition lock").resigning => {}
            _ => return Err(Error::NotLeader(topic_partition)),
        }
        let room = batch
            .len()
            .clamp(1, self.inner.config.flush_buffer_max_bytes) as u32;
        let permit = match self.inner.buffer_room.clone().try_acquire_many_owned(room) {
            Ok(permit) => permit,
            Err(_) => {
                // The flush buffer is full: back-pressure on the producer.
                stats::bump(&self.inner.stats.backpressure_waits, 1);
                self.inner
                    .buffer_room
                    .clone()
                    .acquire_many_owned(room)
                    .await
                    .map_err(|_| Error::ShuttingDown)?
            }
        };
        let (reply, answer) = oneshot::channel();
        {
            let mut pending = self.inner.pending.lock().expect("pending lock");
            // Checked under the lock the flusher checks "empty and cancelled"
            // under, so a batch is never queued after the flusher has left.
            if self.inner.shutdown.is_cancelled() {
                return Err(Error::ShuttingDown);
            }
            pending.bytes += batch.len();
            pending.first_at.get_or_insert_with(Instant::now);
            pending.batches.push(PendingBatch {
                topic_partition,
                bytes: batch,
                options,
                reply,
                permit,
            });
        }
        self.inner.pending_changed.notify_one();
        Ok(PendingAppend { answer })
    }

    /// (log start offset, high watermark, leader epoch) of a partition.
    pub fn offsets(&self, topic_partition: &TopicPartition) -> Option<(i64, i64, i32)> {
        let partition = self.inner.partition(topic_partition)?;
        let state = partition.state.lock().expect("partition lock");
        Some((
            state.log_start_offset,
            state.next_offset,
            state.leader_epoch,
        ))
    }

    /// A receiver that changes whenever the partition's high watermark moves.
    pub fn watch_high_watermark(
        &self,
        topic_partition: &TopicPartition,
    ) -> Option<watch::Receiver<i64>> {
        Some(
            self.inner
                .partition(topic_partition)?
                .high_watermark
                .subscribe(),
        )
    }

    /// Stops taking appends, flushes everything buffered, answers every waiting
    /// append, and stops the flusher.
    pub async fn shutdown(&self) {
        self.inner.shutdown.cancel();
        self.inner.pending_changed.notify_one();
        let handle = self.flusher.lock().expect("flusher lock").take();
        if let Some(handle) = handle
            && let Err(e) = handle.await
        {
            tracing::error!(error = %e, "flusher task failed");
        }
    }
}

fn new_partition(state: PartitionState) -> Partition {
    Partition {
        high_watermark: watch::Sender::new(state.next_offset),
        state: Mutex::new(PartitionMem {
            leader_epoch: state.leader_epoch,
            resigning: false,
            log_start_offset: state.log_start_offset,
            next_offset: state.next_offset,
            reserved_next_offset: state.next_offset,
            recent: VecDeque::new(),
            producers: producers::Producers::default(),
            compaction_from: (0, 0),
        }),
    }
}

/// Every `producer_id_expiration_check_interval_ms`, forgets producers that
/// have not written for `producer_id_expiration_ms`, in memory and in the
/// metadata store, so their state does not grow without bound.
async fn expire_producers(inner: Arc<Inner>) {
    let interval =
        Duration::from_millis(inner.config.producer_id_expiration_check_interval_ms.max(1));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = inner.shutdown.cancelled() => return,
        }
        let now_ms = inner.clock.now_ms();
        let expiration_ms = inner.config.producer_id_expiration_ms;
        let mut expired = 0;
        {
            let _seal = inner.seal_lock.lock().expect("seal lock");
            for partition in inner.partitions.read().expect("partitions lock").values() {
                let mut state = partition.state.lock().expect("partition lock");
                expired += state.producers.expire(now_ms, expiration_ms);
            }
        }
        match inner
            .metadata
            .expire_producer_states(now_ms.saturating_sub(expiration_ms).saturating_add(1))
            .await
        {
            Ok(rows) => tracing::debug!(expired, rows, "expired producer states"),
            Err(e) => tracing::warn!(error = %e, "could not expire producer states"),
        }
    }
}

#[cfg(test)]
mod tests;
