//! The log start moved by DeleteRecords and by retention, on an injected
//! clock; reads, ListOffsets and garbage collection follow it.

use std::collections::BTreeMap;

use metadata::{LogStore, TopicStore};

use super::*;
use crate::{ManualClock, ObjectCollector, RetentionLimits, SystemClock};

/// A log over an in-memory object store, one topic "t" (one partition),
/// on a manual clock that starts at the system's time (object keys carry
/// it; the collector compares with it).
pub(super) struct Retained {
    pub(super) log: Log,
    pub(super) store: Arc<MemoryStore>,
    pub(super) metadata: Arc<SqliteStore>,
    pub(super) clock: Arc<ManualClock>,
    pub(super) tp: TopicPartition,
}

pub(super) async fn retained() -> Retained {
    retained_with(LogConfig::default()).await
}

pub(super) async fn retained_with(config: LogConfig) -> Retained {
    let store = Arc::new(MemoryStore::new());
    let metadata = Arc::new(SqliteStore::open_in_memory().unwrap());
    let clock = Arc::new(ManualClock::new(SystemClock.now_ms()));
    let topic_id = TopicId::new_random();
    metadata
        .create_topic("t", topic_id, 1, BTreeMap::new())
        .await
        .unwrap();
    let log = crate::testing::open_leading(config, store.clone(), metadata.clone(), clock.clone())
        .await
        .unwrap();
    Retained {
        log,
        store,
        metadata,
        clock,
        tp: TopicPartition::new(topic_id, 0),
    }
}

impl Retained {
    /// Appends one two-record batch per timestamp (each its own flush,
    /// entry and object); returns the batches' byte length (all equal).
    pub(super) async fn append_at(&self, timestamps: &[i64]) -> i64 {
        let mut length = 0;
        for (i, ts) in timestamps.iter().enumerate() {
            let a = format!("a{i}");
            let b = format!("b{i}");
            let bytes = batch(&[&a, &b], *ts);
            length = bytes.len() as i64;
            self.log
                .append(self.tp, bytes, AppendOptions::default())
                .await
                .unwrap();
        }
        length
    }

    pub(super) fn log_start(&self) -> i64 {
        self.log.offsets(&self.tp).unwrap().0
    }

    async fn first_offsets_read(&self) -> Vec<i64> {
        let start = self.log_start();
        let read = self.log.read(self.tp, start, 1 << 20, true).await.unwrap();
        values(&read.records).into_iter().map(|(o, _)| o).collect()
    }

    async fn retain(&self, retention_ms: i64, retention_bytes: i64) -> Option<i64> {
        self.log
            .enforce_retention(
                self.tp,
                RetentionLimits::from_kafka(retention_ms, retention_bytes),
            )
            .await
            .unwrap()
    }
}

#[tokio::test]
async fn delete_records_moves_the_log_start_and_reads_follow() {
    let r = retained().await;
    let now = r.clock.now_ms();
    r.append_at(&[now, now, now]).await; // offsets [0,1] [2,3] [4,5]
    assert_eq!(r.log.advance_log_start(r.tp, 3).await.unwrap(), 3);
    assert_eq!(r.log_start(), 3);
    // Below the log start is out of range; at it, the batch holding it comes
    // whole (the client skips the records before the offset it asked for).
    assert!(matches!(
        r.log.read(r.tp, 2, 1 << 20, true).await,
        Err(Error::OffsetOutOfRange {
            log_start_offset: 3,
            ..
        })
    ));
    assert_eq!(r.first_offsets_read().await, [2, 3, 4, 5]);
    let earliest = r.log.list_offset(r.tp, OffsetSpec::Earliest).await.unwrap();
    assert_eq!(earliest.offset, 3);
    // By timestamp: the first record at or after the log start.
    let by_time = r
        .log
        .list_offset(r.tp, OffsetSpec::Timestamp(0))
        .await
        .unwrap();
    assert_eq!(by_time.offset, 3);
    // Backwards changes nothing; beyond the high watermark is refused.
    assert_eq!(r.log.advance_log_start(r.tp, 1).await.unwrap(), 3);
    assert!(matches!(
        r.log.advance_log_start(r.tp, 7).await,
        Err(Error::OffsetOutOfRange {
            high_watermark: 6,
            ..
        })
    ));
    // The store kept it: a log that claims the partition next starts there.
    let next = crate::testing::open_leading(
        LogConfig::default(),
        r.store.clone(),
        r.metadata.clone(),
        r.clock.clone(),
    )
    .await
    .unwrap();
    assert_eq!(next.offsets(&r.tp).unwrap().0, 3);
    // The old log was fenced by that claim: it moves nothing any more.
    assert!(matches!(
        r.log.advance_log_start(r.tp, 5).await,
        Err(Error::NotLeader(_))
    ));
    assert!(r.log.offsets(&r.tp).is_none(), "a fenced log stops leading");
    // To the high watermark: the log is empty and goes on from there.
    assert_eq!(next.advance_log_start(r.tp, 6).await.unwrap(), 6);
    let read = next.read(r.tp, 6, 1 << 20, true).await.unwrap();
    assert!(read.records.is_empty());
    assert_eq!(
        next.list_offset(r.tp, OffsetSpec::MaxTimestamp)
            .await
            .unwrap()
            .offset,
        -1
    );
}

#[tokio::test]
async fn retention_by_time_drops_entries_whose_newest_record_is_too_old() {
    let r = retained().await;
    let now = r.clock.now_ms();
    r.append_at(&[now - 9_000, now - 8_000, now - 3_000]).await;
    assert_eq!(r.retain(-1, -1).await, None, "-1 keeps everything");
    assert_eq!(r.retain(10_000, -1).await, None);
    assert_eq!(r.retain(7_500, -1).await, Some(4));
    assert_eq!(r.first_offsets_read().await, [4, 5]);
    // Time passes: the last one goes too, and the log is empty.
    r.clock.advance(5_000);
    assert_eq!(r.retain(7_500, -1).await, Some(6));
    assert_eq!(r.log_start(), 6);
    assert_eq!(r.retain(7_500, -1).await, None, "nothing left to drop");
}

#[tokio::test]
async fn a_record_in_the_future_keeps_its_entry_and_every_later_one() {
    let r = retained().await;
    let now = r.clock.now_ms();
    r.append_at(&[now - 9_000, now + 60_000, now - 9_000]).await;
    assert_eq!(r.retain(5_000, -1).await, Some(2));
    assert_eq!(r.retain(5_000, -1).await, None);
    r.clock.advance(70_000);
    assert_eq!(r.retain(5_000, -1).await, Some(6));
}

#[tokio::test]
async fn retention_by_size_keeps_at_least_the_limit() {
    let r = retained().await;
    let now = r.clock.now_ms();
    let length = r.append_at(&[now, now, now]).await;
    assert_eq!(r.log.size_bytes(r.tp).await.unwrap(), 3 * length);
    assert_eq!(r.retain(-1, 3 * length).await, None);
    // Dropping the oldest would leave less than the limit: kept.
    assert_eq!(r.retain(-1, 2 * length + 1).await, None);
    assert_eq!(r.retain(-1, 2 * length - 1).await, Some(2));
    assert_eq!(r.log.size_bytes(r.tp).await.unwrap(), 2 * length);
    assert_eq!(r.retain(-1, 0).await, Some(6));
    assert_eq!(r.log.size_bytes(r.tp).await.unwrap(), 0);
}

#[tokio::test]
async fn time_and_size_together_drop_what_either_lets_go() {
    let r = retained().await;
    let now = r.clock.now_ms();
    let length = r
        .append_at(&[now - 9_000, now - 1_000, now - 9_000, now])
        .await;
    // The first is too old; the second goes by size (three entries' bytes
    // are left, more than one over the limit); the third is too old; the
    // last is new and is all the size limit keeps.
    assert_eq!(r.retain(5_000, length).await, Some(6));
    assert_eq!(r.first_offsets_read().await, [6, 7]);
}

#[tokio::test]
async fn garbage_collection_deletes_the_objects_retention_freed_and_only_those() {
    let r = retained().await;
    let now = r.clock.now_ms();
    r.append_at(&[now - 9_000, now - 9_000, now]).await;
    let before: Vec<String> = r.store.list("").await.unwrap();
    assert_eq!(before.len(), 3);
    let kept_key = r
        .metadata
        .index_entries(r.tp, 4, 1)
        .await
        .unwrap()
        .remove(0)
        .object_key;
    assert_eq!(r.retain(5_000, -1).await, Some(4));
    let collector = ObjectCollector::new(r.store.clone(), r.metadata.clone(), r.clock.clone(), 0);
    // Past the newest object's creation (its key carries the system time).
    r.clock.set(SystemClock.now_ms() + 1);
    let pass = collector.collect().await.unwrap();
    assert_eq!(pass.deleted, 2, "{pass:?}");
    assert_eq!(r.store.list("").await.unwrap(), [kept_key]);
    assert_eq!(r.first_offsets_read().await, [4, 5]);
}
