use metadata::TopicStore;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use bytes::Bytes;
use metadata::{SqliteStore, TopicId, TopicPartition};
use protocol::kafka_protocol::records::Compression;
use protocol::testing::{offsets_and_values, record_batch};

use super::*;

mod compaction;
mod compaction_reads;
mod damage;
mod idempotence;
mod leadership;
mod retention;
mod streaming;
use crate::{Clock, MemoryStore, OffsetSpec};

struct FixedClock(AtomicI64);
impl Clock for FixedClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

fn batch(values: &[&str], first_timestamp: i64) -> Bytes {
    record_batch(values, first_timestamp, false, Compression::None)
}

fn values(records: &Bytes) -> Vec<(i64, String)> {
    offsets_and_values(records)
}

/// A log over `store` and an in-memory SQLite store holding one topic "t"
/// with two partitions; `tp` is its partition 0. The clock says 9,999.
/// Appends one single-record batch per value, in order.
async fn append_each<S>(f: &Fixture<S>, values: &[&str]) {
    for v in values {
        f.log
            .append(f.tp, batch(&[v], 1), AppendOptions::default())
            .await
            .unwrap();
    }
}

struct Fixture<S = MemoryStore> {
    log: Arc<Log>,
    store: Arc<S>,
    metadata: Arc<SqliteStore>,
    clock: Arc<FixedClock>,
    tp: TopicPartition,
}

impl<S: crate::ObjectStore> Fixture<S> {
    /// Another log over the same stores (after a restart; or to read through
    /// the object store, past this log's tail cache).
    async fn reopen(&self) -> Log {
        crate::testing::open_leading(
            LogConfig::default(),
            self.store.clone(),
            self.metadata.clone(),
            self.clock.clone(),
        )
        .await
        .unwrap()
    }
}

async fn fixture(config: LogConfig) -> Fixture {
    fixture_over(config, MemoryStore::new()).await
}

async fn fixture_over<S: crate::ObjectStore>(config: LogConfig, store: S) -> Fixture<S> {
    let metadata = Arc::new(SqliteStore::open_in_memory().unwrap());
    let topic_id = TopicId::new_random();
    metadata
        .create_topic("t", topic_id, 2, BTreeMap::new())
        .await
        .unwrap();
    let store = Arc::new(store);
    let clock = Arc::new(FixedClock(AtomicI64::new(9_999)));
    let log = crate::testing::open_leading(config, store.clone(), metadata.clone(), clock.clone())
        .await
        .unwrap();
    Fixture {
        log: Arc::new(log),
        store,
        metadata,
        clock,
        tp: TopicPartition::new(topic_id, 0),
    }
}

#[tokio::test]
async fn append_assigns_consecutive_offsets_and_reads_back() {
    let f = fixture(LogConfig::default()).await;
    let a = f
        .log
        .append(f.tp, batch(&["a", "b"], 100), AppendOptions::default())
        .await
        .unwrap();
    let b = f
        .log
        .append(f.tp, batch(&["c"], 200), AppendOptions::default())
        .await
        .unwrap();
    assert_eq!((a.base_offset, b.base_offset), (0, 2));
    let read = f.log.read(f.tp, 0, 1 << 20, true).await.unwrap();
    assert_eq!(read.high_watermark, 3);
    assert_eq!(
        values(&read.records),
        vec![(0, "a".into()), (1, "b".into()), (2, "c".into())]
    );
}

#[tokio::test]
async fn concurrent_appends_share_one_object() {
    let f = fixture(LogConfig {
        flush_interval_ms: 50,
        ..LogConfig::default()
    })
    .await;
    let tp1 = TopicPartition::new(f.tp.topic_id, 1);
    let (a, b) = tokio::join!(
        f.log
            .append(f.tp, batch(&["x"], 1), AppendOptions::default()),
        f.log
            .append(tp1, batch(&["y"], 1), AppendOptions::default()),
    );
    assert_eq!(a.unwrap().base_offset, 0);
    assert_eq!(b.unwrap().base_offset, 0);
    assert_eq!(f.store.list("").await.unwrap().len(), 1);
}

#[tokio::test]
async fn read_from_middle_of_batch_returns_whole_batch() {
    let f = fixture(LogConfig::default()).await;
    f.log
        .append(f.tp, batch(&["a", "b", "c"], 1), AppendOptions::default())
        .await
        .unwrap();
    let read = f.log.read(f.tp, 1, 1 << 20, true).await.unwrap();
    assert_eq!(values(&read.records).len(), 3);
}

#[tokio::test]
async fn read_returns_at_least_one_batch_above_max_bytes() {
    let f = fixture(LogConfig::default()).await;
    append_each(&f, &["one", "two"]).await;
    let read = f.log.read(f.tp, 0, 1, true).await.unwrap();
    assert_eq!(values(&read.records), vec![(0, "one".into())]);
}

#[tokio::test]
async fn read_outside_log_is_out_of_range_and_at_end_is_empty() {
    let f = fixture(LogConfig::default()).await;
    f.log
        .append(f.tp, batch(&["a"], 1), AppendOptions::default())
        .await
        .unwrap();
    assert!(
        f.log
            .read(f.tp, 1, 100, true)
            .await
            .unwrap()
            .records
            .is_empty()
    );
    assert!(matches!(
        f.log.read(f.tp, 2, 100, true).await,
        Err(Error::OffsetOutOfRange { .. })
    ));
    assert!(matches!(
        f.log.read(f.tp, -1, 100, true).await,
        Err(Error::OffsetOutOfRange { .. })
    ));
}

#[tokio::test]
async fn reopened_log_continues_offsets_and_reads_old_data_from_store() {
    let f = fixture(LogConfig::default()).await;
    f.log
        .append(f.tp, batch(&["a", "b"], 1), AppendOptions::default())
        .await
        .unwrap();
    f.log.shutdown().await;
    let log = crate::testing::open_leading(
        LogConfig::default(),
        f.store.clone(),
        f.metadata.clone(),
        Arc::new(crate::SystemClock),
    )
    .await
    .unwrap();
    let next = log
        .append(f.tp, batch(&["c"], 1), AppendOptions::default())
        .await
        .unwrap();
    assert_eq!(next.base_offset, 2);
    let read = log.read(f.tp, 0, 1 << 20, true).await.unwrap();
    assert_eq!(values(&read.records).len(), 3);
}

#[tokio::test]
async fn log_append_time_stamps_broker_time() {
    let f = fixture(LogConfig::default()).await;
    let r = f
        .log
        .append(
            f.tp,
            batch(&["a"], 5),
            AppendOptions {
                log_append_time: true,
            },
        )
        .await
        .unwrap();
    assert_eq!(r.log_append_time_ms, 9_999);
    let at = f
        .log
        .list_offset(f.tp, OffsetSpec::Timestamp(9_000))
        .await
        .unwrap();
    assert_eq!((at.offset, at.timestamp), (0, 9_999));
}

#[tokio::test]
async fn list_offsets_by_time_and_max_timestamp() {
    let f = fixture(LogConfig::default()).await;
    f.log
        .append(f.tp, batch(&["a", "b", "c"], 100), AppendOptions::default())
        .await
        .unwrap();
    f.log
        .append(f.tp, batch(&["d"], 50), AppendOptions::default())
        .await
        .unwrap();
    let lookup = |spec| f.log.list_offset(f.tp, spec);
    let t = lookup(OffsetSpec::Timestamp(101)).await.unwrap();
    assert_eq!((t.offset, t.timestamp), (1, 101));
    let none = lookup(OffsetSpec::Timestamp(1_000)).await.unwrap();
    assert_eq!((none.offset, none.timestamp), (-1, -1));
    let max = lookup(OffsetSpec::MaxTimestamp).await.unwrap();
    assert_eq!((max.offset, max.timestamp), (2, 102));
    assert_eq!(lookup(OffsetSpec::Latest).await.unwrap().offset, 4);
    assert_eq!(lookup(OffsetSpec::Earliest).await.unwrap().offset, 0);
}

#[tokio::test]
async fn high_watermark_watch_wakes_on_append() {
    let f = fixture(LogConfig::default()).await;
    let mut hw = f.log.watch_high_watermark(&f.tp).unwrap();
    let log = f.log.clone();
    let tp = f.tp;
    tokio::spawn(async move {
        log.append(tp, batch(&["a"], 1), AppendOptions::default())
            .await
            .unwrap();
    });
    hw.changed().await.unwrap();
    assert_eq!(*hw.borrow(), 1);
}

#[tokio::test]
async fn append_to_a_partition_not_led_fails_with_not_leader() {
    let f = fixture(LogConfig::default()).await;
    let tp = TopicPartition::new(f.tp.topic_id, 9);
    assert!(matches!(
        f.log
            .append(tp, batch(&["a"], 1), AppendOptions::default())
            .await,
        Err(Error::NotLeader(_))
    ));
}

#[tokio::test]
async fn shutdown_flushes_pending_appends() {
    let f = fixture(LogConfig {
        flush_interval_ms: 60_000,
        ..LogConfig::default()
    })
    .await;
    let log = f.log.clone();
    let tp = f.tp;
    let pending = tokio::spawn(async move {
        log.append(tp, batch(&["a"], 1), AppendOptions::default())
            .await
    });
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    f.log.shutdown().await;
    assert_eq!(pending.await.unwrap().unwrap().base_offset, 0);
    assert!(matches!(
        f.log
            .append(tp, batch(&["b"], 1), AppendOptions::default())
            .await,
        Err(Error::ShuttingDown)
    ));
}

#[tokio::test]
async fn objects_carry_a_checkable_footer() {
    let f = fixture(LogConfig::default()).await;
    f.log
        .append(f.tp, batch(&["a"], 1), AppendOptions::default())
        .await
        .unwrap();
    let key = f.store.list("").await.unwrap().pop().unwrap();
    let object = f.store.get(&key).await.unwrap();
    let footer = crate::object_format::read_footer(&object).unwrap();
    assert_eq!(footer.len(), 1);
    assert_eq!(footer[0].topic_partition, f.tp);
}

/// A memory store with two faults a test can turn on: puts that fail
/// (`failing`) and puts that wait for a permit (`gate`, when present).
struct FaultyStore {
    inner: MemoryStore,
    failing: std::sync::atomic::AtomicBool,
    gate: Option<tokio::sync::Semaphore>,
}

impl FaultyStore {
    fn new(gated: bool) -> Self {
        FaultyStore {
            inner: MemoryStore::new(),
            failing: std::sync::atomic::AtomicBool::new(false),
            gate: gated.then(|| tokio::sync::Semaphore::new(0)),
        }
    }
}

#[async_trait::async_trait]
impl crate::ObjectStore for FaultyStore {
    async fn put(&self, key: &str, bytes: Bytes) -> crate::Result<()> {
        if let Some(gate) = &self.gate {
            gate.acquire().await.expect("gate open").forget();
        }
        if self.failing.load(Ordering::SeqCst) {
            return Err(Error::Io("injected put failure".to_string()));
        }
        self.inner.put(key, bytes).await
    }
    async fn get_range(&self, key: &str, range: std::ops::Range<u64>) -> crate::Result<Bytes> {
        self.inner.get_range(key, range).await
    }
    async fn get(&self, key: &str) -> crate::Result<Bytes> {
        self.inner.get(key).await
    }
    async fn delete(&self, key: &str) -> crate::Result<()> {
        self.inner.delete(key).await
    }
    async fn list(&self, prefix: &str) -> crate::Result<Vec<String>> {
        self.inner.list(prefix).await
    }
}

/// Garbage collection must leave alone the objects of flushes in flight and
/// of flushes whose write timed out (it may still land); a committed flush
/// and a refused write settle their objects.
#[tokio::test]
async fn objects_stay_unsettled_while_their_write_may_still_land() {
    let f = fixture_over(
        LogConfig {
            flush_interval_ms: 0,
            object_write_timeout_ms: 200,
            ..LogConfig::default()
        },
        FaultyStore::new(true),
    )
    .await;
    let unsettled = f.log.unsettled_objects();
    let hung = f
        .log
        .enqueue(f.tp, batch(&["hung"], 1), AppendOptions::default())
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert_eq!(unsettled.len(), 1, "in flight");
    assert!(matches!(hung.wait().await, Err(Error::Unavailable(_))));
    assert_eq!(unsettled.len(), 1, "timed out: the write may still land");
    f.store.gate.as_ref().unwrap().add_permits(100);
    f.log
        .append(f.tp, batch(&["ok"], 1), AppendOptions::default())
        .await
        .unwrap();
    assert_eq!(unsettled.len(), 1, "the committed flush is settled");
    f.store.failing.store(true, Ordering::SeqCst);
    let refused = f
        .log
        .append(f.tp, batch(&["refused"], 1), AppendOptions::default())
        .await;
    assert!(matches!(refused, Err(Error::Unavailable(_))));
    assert_eq!(unsettled.len(), 1, "a refused write is settled (deleted)");
    // Only the committed object is in the store, and it is settled: the
    // one unsettled key is the timed-out write's (dropped here; against S3
    // it may have landed).
    let stored = f.store.inner.list("").await.unwrap();
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert!(!unsettled.contains(&stored[0]));
}

#[tokio::test]
async fn failed_object_write_is_retriable_and_leaves_no_gap() {
    let f = fixture_over(LogConfig::default(), FaultyStore::new(false)).await;
    let (log, store, tp) = (f.log, f.store, f.tp);
    let first = log
        .append(tp, batch(&["a"], 1), AppendOptions::default())
        .await
        .unwrap();
    assert_eq!(first.base_offset, 0);
    store.failing.store(true, Ordering::SeqCst);
    let failed = log
        .append(tp, batch(&["lost", "lost"], 1), AppendOptions::default())
        .await;
    assert!(matches!(failed, Err(Error::Unavailable(_))), "{failed:?}");
    store.failing.store(false, Ordering::SeqCst);
    let next = log
        .append(tp, batch(&["b"], 1), AppendOptions::default())
        .await
        .unwrap();
    assert_eq!(
        next.base_offset, 1,
        "the failed flush's offsets are reused, no hole"
    );
    let read = log.read(tp, 0, 1 << 20, true).await.unwrap();
    assert_eq!(
        values(&read.records),
        vec![(0, "a".into()), (1, "b".into())]
    );
}

#[tokio::test]
async fn many_concurrent_appends_get_dense_offsets_in_order() {
    let f = fixture(LogConfig {
        flush_interval_ms: 0,
        max_flushes_in_flight: 4,
        ..LogConfig::default()
    })
    .await;
    let mut pending = Vec::new();
    for i in 0..200 {
        let value = format!("v{i}");
        pending.push(
            f.log
                .enqueue(f.tp, batch(&[value.as_str()], 1), AppendOptions::default())
                .await
                .unwrap(),
        );
    }
    for (i, p) in pending.into_iter().enumerate() {
        assert_eq!(p.wait().await.unwrap().base_offset, i as i64);
    }
    let mut got = Vec::new();
    while got.len() < 200 {
        let read = f
            .log
            .read(f.tp, got.len() as i64, 1 << 24, true)
            .await
            .unwrap();
        got.extend(values(&read.records));
    }
    assert!(
        got.iter()
            .enumerate()
            .all(|(i, (o, v))| *o == i as i64 && *v == format!("v{i}"))
    );
}

#[tokio::test]
async fn full_flush_buffer_makes_enqueue_wait_until_a_flush_ends() {
    let one_batch = batch(&["a"], 1);
    let f = fixture_over(
        LogConfig {
            flush_interval_ms: 0,
            flush_buffer_max_bytes: one_batch.len(),
            ..LogConfig::default()
        },
        FaultyStore::new(true),
    )
    .await;
    let (log, store, tp) = (f.log, f.store, f.tp);
    let first = log
        .enqueue(tp, one_batch.clone(), AppendOptions::default())
        .await
        .unwrap();
    // The first batch's flush is stuck in its object write and still holds
    // all the room: the second enqueue must wait, not buffer more.
    let second = tokio::time::timeout(
        std::time::Duration::from_millis(200),
        log.enqueue(tp, one_batch.clone(), AppendOptions::default()),
    )
    .await;
    assert!(second.is_err(), "enqueue went past a full flush buffer");
    store.gate.as_ref().expect("gated store").add_permits(10);
    assert_eq!(first.wait().await.unwrap().base_offset, 0);
    let second = log
        .append(tp, one_batch, AppendOptions::default())
        .await
        .unwrap();
    assert_eq!(second.base_offset, 1);
}

#[tokio::test]
async fn one_failed_flush_fails_only_the_flushes_sealed_before_it_was_handled() {
    let f = fixture_over(
        LogConfig {
            flush_interval_ms: 0,
            max_flushes_in_flight: 4,
            ..LogConfig::default()
        },
        FaultyStore::new(true),
    )
    .await;
    let (log, store, tp) = (f.log, f.store, f.tp);
    let gate = store.gate.as_ref().expect("gated store");
    // Three flushes in flight, all stuck in their object writes.
    let mut stuck = Vec::new();
    for v in ["a", "b", "c"] {
        stuck.push(
            log.enqueue(tp, batch(&[v], 1), AppendOptions::default())
                .await
                .unwrap(),
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // The first write fails; the others then succeed but carry stale offsets.
    store.failing.store(true, Ordering::SeqCst);
    gate.add_permits(1);
    let mut stuck = stuck.into_iter();
    assert!(stuck.next().unwrap().wait().await.is_err());
    store.failing.store(false, Ordering::SeqCst);
    // A burst sealed after the failure was handled must all succeed, even
    // while the stale flushes are still being answered.
    let mut burst = Vec::new();
    for i in 0..40 {
        let value = format!("v{i}");
        burst.push(
            log.enqueue(tp, batch(&[value.as_str()], 1), AppendOptions::default())
                .await
                .unwrap(),
        );
    }
    gate.add_permits(1_000);
    for p in stuck {
        assert!(
            p.wait().await.is_err(),
            "sealed before the failure: retried"
        );
    }
    for (i, p) in burst.into_iter().enumerate() {
        let result = p.wait().await;
        assert_eq!(result.unwrap().base_offset, i as i64, "append {i}");
    }
}

#[tokio::test]
async fn read_without_min_one_leaves_out_a_batch_over_the_limit_and_says_more_is_there() {
    let f = fixture(LogConfig::default()).await;
    append_each(&f, &["one", "two"]).await;
    let none = f.log.read(f.tp, 0, 1, false).await.unwrap();
    assert!(none.records.is_empty());
    assert!(none.more_available);
    let one = f.log.read(f.tp, 0, 1, true).await.unwrap();
    assert_eq!(values(&one.records), vec![(0, "one".into())]);
    assert!(one.more_available, "offset 1 was left out");
    let all = f.log.read(f.tp, 0, 1 << 20, false).await.unwrap();
    assert_eq!(values(&all.records).len(), 2);
    assert!(!all.more_available);
}

#[tokio::test]
async fn read_walks_past_one_page_of_index_entries() {
    let f = fixture(LogConfig {
        read_max_index_entries: 4,
        recent_index_entries: 2,
        ..LogConfig::default()
    })
    .await;
    let ten: Vec<String> = (0..10).map(|i| format!("v{i}")).collect();
    append_each(&f, &ten.iter().map(String::as_str).collect::<Vec<_>>()).await;
    let read = f.log.read(f.tp, 0, 1 << 20, true).await.unwrap();
    assert_eq!(
        values(&read.records).len(),
        10,
        "ten flushes, pages of four"
    );
    assert!(!read.more_available);
}

#[tokio::test]
async fn reads_past_the_tail_cache_are_kept_in_the_block_cache() {
    let f = fixture(LogConfig {
        tail_cache_max_bytes: 0,
        ..LogConfig::default()
    })
    .await;
    append_each(&f, &["a", "b"]).await;
    assert_eq!(f.log.inner.block_cache.stats().blocks, 0);
    let first = f.log.read(f.tp, 0, 1 << 20, true).await.unwrap();
    let cached = f.log.inner.block_cache.stats();
    assert_eq!(cached.blocks, 2, "one block per index entry read");
    let again = f.log.read(f.tp, 0, 1 << 20, true).await.unwrap();
    assert_eq!(values(&first.records), values(&again.records));
    let now = f.log.inner.block_cache.stats();
    assert_eq!((now.blocks, now.bytes), (cached.blocks, cached.bytes));
    assert_eq!(
        (now.hits, now.misses),
        (cached.hits + 2, cached.misses),
        "the second read is all hits"
    );
    let stats = f.log.stats();
    assert_eq!(stats.block_reads, 4);
    assert_eq!(stats.flushes, 2);
}
