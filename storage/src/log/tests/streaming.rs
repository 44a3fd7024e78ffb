//! Flushes sealed in steps for a store that streams objects in parts: parts
//! leave while the flush still fills, a partition gets a run per step, and a
//! flush gone stale in between (an earlier flush failed) is abandoned.

use metadata::LogStore;
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use super::*;
use crate::PartReceiver;

/// A memory store that streams: it records each part as it arrives, can
/// fail a share of writes, and counts writes abandoned mid-way.
pub(super) struct StreamingStore {
    pub(super) inner: MemoryStore,
    part_size: usize,
    /// (object key, part index) in arrival order.
    arrivals: Mutex<Vec<(String, usize)>>,
    /// Fail every n-th streamed write (0: never).
    fail_every: usize,
    writes: AtomicUsize,
    abandoned: AtomicUsize,
    /// When set, the first streamed write waits here once complete, then fails.
    first_write_gate: Option<tokio::sync::Semaphore>,
    /// How long each part takes to write (a store slower than the reads).
    part_delay: Duration,
    /// The most parts a compaction's write found waiting for it at once.
    most_queued_compacted: AtomicUsize,
    /// Ranged reads made, and the bytes they asked for.
    pub(super) gets: AtomicUsize,
    pub(super) got_bytes: AtomicUsize,
    /// When set, at most this many requests at once (a part's write
    /// included), each taking a millisecond at least, as the S3 store
    /// bounds its requests with `s3_max_concurrent_requests`.
    request_slots: Option<tokio::sync::Semaphore>,
}

impl StreamingStore {
    pub(super) fn new(part_size: usize, fail_every: usize) -> Self {
        StreamingStore {
            inner: MemoryStore::new(),
            part_size,
            arrivals: Mutex::new(Vec::new()),
            fail_every,
            writes: AtomicUsize::new(0),
            abandoned: AtomicUsize::new(0),
            first_write_gate: None,
            part_delay: Duration::ZERO,
            most_queued_compacted: AtomicUsize::new(0),
            gets: AtomicUsize::new(0),
            got_bytes: AtomicUsize::new(0),
            request_slots: None,
        }
    }
}

#[async_trait::async_trait]
impl crate::ObjectStore for StreamingStore {
    async fn put(&self, key: &str, bytes: Bytes) -> crate::Result<()> {
        self.inner.put(key, bytes).await
    }
    async fn get_range(&self, key: &str, range: std::ops::Range<u64>) -> crate::Result<Bytes> {
        self.gets.fetch_add(1, Ordering::SeqCst);
        let asked = range.end.saturating_sub(range.start) as usize;
        self.got_bytes.fetch_add(asked, Ordering::SeqCst);
        let _slot = self.request_slot().await;
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
    fn part_size(&self) -> Option<usize> {
        Some(self.part_size)
    }
    async fn put_parts(
        &self,
        key: &str,
        mut parts: PartReceiver,
        count: crate::PartCount,
    ) -> crate::Result<()> {
        let n = self.writes.fetch_add(1, Ordering::SeqCst) + 1;
        let mut object = Vec::new();
        let mut index = 0;
        // Messages taken off the channel, not yet written. As the S3 store
        // does, a first part whose writer did not say several follow waits
        // for the second (or the end), which tells one PutObject from a
        // multipart upload.
        let mut queued = std::collections::VecDeque::new();
        let compacted = crate::object_key::is_compacted_object_key(key);
        while count == crate::PartCount::Unknown
            && queued.len() < 2
            && !matches!(queued.back(), Some(None))
        {
            match parts.recv().await {
                Some(message) => queued.push_back(message),
                None => break,
            }
        }
        loop {
            let message = match queued.pop_front() {
                Some(message) => Some(message),
                None => parts.recv().await,
            };
            match message {
                Some(Some(part)) => {
                    if compacted {
                        // The parts sent and not yet written: this one and
                        // those queued (the end of the parts is no part).
                        while let Ok(message) = parts.try_recv() {
                            queued.push_back(message);
                        }
                        let held = 1 + queued.iter().filter(|m| m.is_some()).count();
                        self.most_queued_compacted.fetch_max(held, Ordering::SeqCst);
                    }
                    let slot = self.request_slot().await;
                    tokio::time::sleep(self.part_delay).await;
                    drop(slot);
                    self.arrivals.lock().unwrap().push((key.to_string(), index));
                    index += 1;
                    object.extend_from_slice(&part);
                }
                Some(None) => break,
                None => {
                    self.abandoned.fetch_add(1, Ordering::SeqCst);
                    return Err(Error::Unavailable("abandoned".to_string()));
                }
            }
        }
        if let Some(gate) = self.first_write_gate.as_ref().filter(|_| n == 1) {
            gate.acquire().await.expect("gate").forget();
            return Err(Error::Io("injected failure of the first write".to_string()));
        }
        if self.fail_every > 0 && n.is_multiple_of(self.fail_every) {
            // Slow to fail, so the next flush is open (and gets parts) when
            // this one fails: it goes stale.
            tokio::time::sleep(Duration::from_millis(20)).await;
            return Err(Error::Io("injected streamed write failure".to_string()));
        }
        let _slot = self.request_slot().await;
        self.inner.put(key, Bytes::from(object)).await
    }
}

impl StreamingStore {
    /// This store serving at most `slots` requests at once.
    pub(super) fn with_request_slots(self, slots: usize) -> Self {
        StreamingStore {
            request_slots: Some(tokio::sync::Semaphore::new(slots)),
            ..self
        }
    }

    /// A request slot (held for a millisecond at least), when slots are set.
    async fn request_slot(&self) -> Option<tokio::sync::SemaphorePermit<'_>> {
        let slot = self.request_slots.as_ref()?.acquire().await.expect("slots");
        tokio::time::sleep(Duration::from_millis(1)).await;
        Some(slot)
    }
}

#[tokio::test]
async fn parts_leave_while_the_flush_still_fills() {
    let f = fixture_over(
        LogConfig {
            flush_interval_ms: 300,
            ..LogConfig::default()
        },
        StreamingStore::new(4_096, 0),
    )
    .await;
    let big = |tag: &str| batch(&[&tag.repeat(5_000)], 1);
    let first = f
        .log
        .enqueue(f.tp, big("a"), AppendOptions::default())
        .await
        .unwrap();
    // Past one part: sealed and shipped long before the 300 ms interval.
    let deadline = Instant::now() + Duration::from_millis(150);
    while f.store.arrivals.lock().unwrap().is_empty() {
        assert!(
            Instant::now() < deadline,
            "no part left before the flush closed"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let other = TopicPartition::new(f.tp.topic_id, 1);
    let more = [
        f.log
            .enqueue(f.tp, big("b"), AppendOptions::default())
            .await
            .unwrap(),
        f.log
            .enqueue(other, batch(&["small"], 1), AppendOptions::default())
            .await
            .unwrap(),
    ];
    let a = first.wait().await.unwrap();
    let mut rest = Vec::new();
    for append in more {
        rest.push(append.wait().await.unwrap());
    }
    assert_eq!(
        (a.base_offset, rest[0].base_offset, rest[1].base_offset),
        (0, 1, 0)
    );
    let objects = f.store.inner.list("").await.unwrap();
    assert_eq!(objects.len(), 1, "one object for the flush: {objects:?}");
    let arrivals = f.store.arrivals.lock().unwrap().clone();
    assert!(arrivals.len() >= 3, "{arrivals:?}");
    // tp has two runs (one per step), each its own index entry.
    let entries = f.metadata.index_entries(f.tp, 0, 10).await.unwrap();
    assert_eq!(entries.len(), 2, "{entries:?}");
    assert_eq!((entries[0].last_offset, entries[1].base_offset), (0, 1));
    let footer =
        crate::object_format::read_footer(&f.store.inner.get(&objects[0]).await.unwrap()).unwrap();
    assert_eq!(footer.len(), 3);
    // Read back through the store, not the tail cache.
    let reopened = f.reopen().await;
    let read = reopened.read(f.tp, 0, 1 << 20, true).await.unwrap();
    let values: Vec<_> = values(&read.records)
        .into_iter()
        .map(|(o, v)| (o, v.len(), v.chars().next()))
        .collect();
    assert_eq!(values, vec![(0, 5_000, Some('a')), (1, 5_000, Some('b'))]);
}

/// Producers with several appends in flight each, retrying failed ones
/// until acknowledged, over a streaming store that fails every third write:
/// every acknowledged batch is stored once, at its offset, with dense
/// offsets. (The stale path itself is forced in the test after this one.)
#[tokio::test]
async fn failed_streamed_writes_lose_and_double_nothing() {
    let f = fixture_over(
        LogConfig {
            flush_interval_ms: 30,
            flush_max_bytes: 64 * 1024,
            ..LogConfig::default()
        },
        StreamingStore::new(8_192, 3),
    )
    .await;
    let mut tasks = Vec::new();
    for producer in 0..4 {
        let (log, tp) = (
            f.log.clone(),
            TopicPartition::new(f.tp.topic_id, producer % 2),
        );
        tasks.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for round in 0..15 {
                let mut waiting: Vec<String> = (0..8)
                    .map(|i| format!("p{producer}-r{round}-b{i}-{}", "x".repeat(2_000)))
                    .collect();
                let deadline = Instant::now() + Duration::from_secs(20);
                while !waiting.is_empty() {
                    assert!(Instant::now() < deadline, "never acknowledged");
                    let mut appends = Vec::new();
                    for value in waiting.drain(..) {
                        let append = log
                            .enqueue(tp, batch(&[&value], 1), AppendOptions::default())
                            .await
                            .unwrap();
                        appends.push((value, append));
                    }
                    for (value, append) in appends {
                        match append.wait().await {
                            Ok(r) => acked.push((tp, r.base_offset, value)),
                            Err(Error::Unavailable(_)) => waiting.push(value),
                            Err(e) => panic!("not retriable: {e}"),
                        }
                    }
                }
            }
            acked
        }));
    }
    let mut acked: HashMap<(TopicPartition, i64), String> = HashMap::new();
    for task in tasks {
        for (tp, offset, value) in task.await.unwrap() {
            assert!(
                acked.insert((tp, offset), value).is_none(),
                "one offset acknowledged twice"
            );
        }
    }
    assert!(
        f.store.writes.load(Ordering::SeqCst) >= 6,
        "few streamed writes"
    );
    for partition in 0..2 {
        let tp = TopicPartition::new(f.tp.topic_id, partition);
        let stored = all_values(&f.log, tp).await;
        let offsets: Vec<i64> = stored.iter().map(|(o, _)| *o).collect();
        assert_eq!(
            offsets,
            (0..stored.len() as i64).collect::<Vec<_>>(),
            "dense offsets"
        );
        assert_eq!(stored.len(), 240, "two producers' 120 batches, each once");
        for (offset, value) in stored {
            assert_eq!(
                acked.get(&(tp, offset)),
                Some(&value),
                "stored but not acknowledged there"
            );
        }
    }
}

/// An open flush that has shipped parts when an earlier flush fails is
/// stale (its offsets follow the failed ones): the next step abandons it —
/// its upload dropped, its appends failed — and starts a new flush from the
/// committed offsets.
#[tokio::test]
async fn an_open_flush_gone_stale_is_abandoned() {
    let store = StreamingStore {
        first_write_gate: Some(tokio::sync::Semaphore::new(0)),
        ..StreamingStore::new(4_096, 0)
    };
    let f = fixture_over(
        LogConfig {
            flush_interval_ms: 300,
            ..LogConfig::default()
        },
        store,
    )
    .await;
    let big = |tag: &str| batch(&[&tag.repeat(5_000)], 1);
    let enqueue = |tag: &'static str| {
        let log = f.log.clone();
        let (tp, bytes) = (f.tp, big(tag));
        async move {
            log.enqueue(tp, bytes, AppendOptions::default())
                .await
                .unwrap()
        }
    };
    // Flush 1 (A) closes after its interval and hangs in its write.
    let a = enqueue("a").await;
    tokio::time::sleep(Duration::from_millis(350)).await;
    // Flush 2 (B) opens and ships a part, offsets after A's.
    let b = enqueue("b").await;
    let deadline = Instant::now() + Duration::from_millis(200);
    while f
        .store
        .arrivals
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, i)| *i == 0)
        .count()
        < 2
    {
        assert!(Instant::now() < deadline, "flush 2 shipped no part");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Flush 1 fails; flush 2 is now stale. The next step (C) abandons it.
    f.store.first_write_gate.as_ref().unwrap().add_permits(1);
    assert!(matches!(a.wait().await, Err(Error::Unavailable(_))));
    let c = enqueue("c").await;
    assert!(
        matches!(b.wait().await, Err(Error::Unavailable(_))),
        "B sealed after a hole"
    );
    assert_eq!(f.store.abandoned.load(Ordering::SeqCst), 1);
    assert_eq!(
        c.wait().await.unwrap().base_offset,
        0,
        "from the committed offsets"
    );
    for (tag, offset) in [("a", 1), ("b", 2)] {
        let retried = f
            .log
            .append(f.tp, big(tag), AppendOptions::default())
            .await
            .unwrap();
        assert_eq!(retried.base_offset, offset);
    }
    let stored: Vec<_> = all_values(&f.log, f.tp)
        .await
        .into_iter()
        .map(|(o, v)| (o, v.chars().next().unwrap()))
        .collect();
    assert_eq!(stored, vec![(0, 'c'), (1, 'a'), (2, 'b')]);
}

async fn all_values(log: &Log, tp: TopicPartition) -> Vec<(i64, String)> {
    let mut out = Vec::new();
    loop {
        let next = out.len() as i64;
        let read = log.read(tp, next, 1 << 24, true).await.unwrap();
        if read.records.is_empty() {
            return out;
        }
        out.extend(values(&read.records));
    }
}

#[tokio::test]
async fn a_rewrite_streams_its_object_in_parts_and_reads_do_not_change() {
    let f = fixture_over(LogConfig::default(), StreamingStore::new(1_024, 0)).await;
    let mut expected = Vec::new();
    for i in 0..20 {
        let value = format!("{i}").repeat(100);
        f.log
            .append(f.tp, batch(&[&value], 1), AppendOptions::default())
            .await
            .unwrap();
        expected.push((i, value));
    }
    let rewrite = f
        .log
        .compact_partition(f.tp, super::compaction::eager())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((rewrite.old_entries, rewrite.new_entries), (20, 1));
    let parts = f
        .store
        .arrivals
        .lock()
        .unwrap()
        .iter()
        .filter(|(key, _)| *key == rewrite.object_key)
        .count();
    let object = f.store.inner.get(&rewrite.object_key).await.unwrap();
    assert_eq!(
        parts,
        object.len().div_ceil(1_024),
        "parts of the store's size"
    );
    assert!(parts >= 3, "{parts} parts");
    let read = f.log.read(f.tp, 0, 1 << 20, true).await.unwrap();
    assert_eq!(offsets_and_values(&read.records), expected);
    let entries = f.metadata.index_entries(f.tp, 0, 100).await.unwrap();
    assert_eq!(entries.len(), 1);
    assert!(
        entries[0].position + entries[0].length < object.len() as u64,
        "the footer follows the run"
    );
}

#[tokio::test]
async fn a_rewrite_whose_write_fails_changes_nothing() {
    let f = fixture_over(LogConfig::default(), StreamingStore::new(1 << 20, 0)).await;
    for i in 0..4 {
        f.log
            .append(
                f.tp,
                batch(&[&format!("v{i}")], 1),
                AppendOptions::default(),
            )
            .await
            .unwrap();
    }
    let before = f.metadata.index_entries(f.tp, 0, 100).await.unwrap();
    // A source object gone: the rewrite's read fails, its write is abandoned.
    f.store.inner.delete(&before[2].object_key).await.unwrap();
    let abandoned = f.store.abandoned.load(Ordering::SeqCst);
    let result = f
        .log
        .compact_partition(f.tp, super::compaction::eager())
        .await;
    assert!(result.is_err(), "{result:?}");
    assert_eq!(f.store.abandoned.load(Ordering::SeqCst), abandoned + 1);
    assert_eq!(
        f.metadata.index_entries(f.tp, 0, 100).await.unwrap(),
        before
    );
}

#[tokio::test]
async fn a_rewrite_waits_for_a_slow_store_instead_of_piling_up_parts() {
    let store = StreamingStore {
        part_delay: Duration::from_millis(2),
        ..StreamingStore::new(4_096, 0)
    };
    let f = fixture_over(LogConfig::default(), store).await;
    for i in 0..20 {
        let value = format!("{i}").repeat(5_000);
        f.log
            .append(f.tp, batch(&[&value], 1), AppendOptions::default())
            .await
            .unwrap();
    }
    let limits = crate::CompactionLimits {
        min_age_ms: 0,
        ..crate::CompactionLimits::default()
    };
    // A store that holds the first part until the second comes (as S3's
    // does) and a rewrite that sends the second only once the first is
    // written would wait for each other forever: a deadlock fails here.
    let rewrite = tokio::time::timeout(
        Duration::from_secs(60),
        f.log.compact_partition(f.tp, limits),
    )
    .await
    .expect("the rewrite and the store waited for each other")
    .unwrap()
    .unwrap();
    assert_eq!(rewrite.old_entries, 20);
    // ~100 KB in 4 KiB parts, read from memory at once: without a bound
    // nearly all of them would wait for the store together.
    let most = f.store.most_queued_compacted.load(Ordering::SeqCst);
    assert!(
        (1..=crate::log::compaction::PARTS_HELD).contains(&most),
        "{most} parts waited at once"
    );
}
