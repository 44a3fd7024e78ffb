//! S3 faults against a real server (s3s-fs), injected between the SDK and
//! the server by `storage::s3::faults`: 5xx answers, dropped connections,
//! requests applied but answered with a 5xx, a slow part, a failed
//! CompleteMultipartUpload. First the store alone, then the whole log with
//! idempotent producers retrying as clients do: every acknowledged batch is
//! stored once, at the offset it was acknowledged with.

mod common;

use metadata::{LogStore, TopicStore};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::{S3Server, object_of};
use metadata::{SqliteStore, TopicId, TopicPartition};
use protocol::testing::idempotent_batch;
use storage::s3::faults::{Fault, RequestKind};
use storage::{
    AppendOptions, Clock, Log, LogConfig, MIN_PART_SIZE, ManualClock, ObjectCollector, ObjectStore,
    S3Config, SystemClock,
};

#[tokio::test]
async fn transient_errors_on_every_kind_of_write_are_retried() {
    let Some(server) = S3Server::start() else {
        return;
    };
    let (store, faults) = server
        .faulty_store("transient", server.config("transient", ""))
        .await;
    faults.add(Some(RequestKind::PutObject), Fault::Refuse(503), 1);
    faults.add(Some(RequestKind::PutObject), Fault::ConnectionError, 1);
    // Applied, but answered 500: the retry gets 412, and the store finds its
    // own bytes there.
    faults.add(Some(RequestKind::PutObject), Fault::FailAfterApply(500), 1);
    faults.add(
        Some(RequestKind::CreateMultipartUpload),
        Fault::Refuse(500),
        1,
    );
    faults.add(Some(RequestKind::UploadPart), Fault::Refuse(503), 1);
    faults.add(Some(RequestKind::UploadPart), Fault::FailAfterApply(500), 1);
    faults.add(Some(RequestKind::UploadPart), Fault::ConnectionError, 1);
    faults.add(
        Some(RequestKind::CompleteMultipartUpload),
        Fault::Refuse(503),
        1,
    );
    faults.add(
        Some(RequestKind::CompleteMultipartUpload),
        Fault::FailAfterApply(500),
        1,
    );
    faults.add(Some(RequestKind::GetObject), Fault::Refuse(500), 1);

    let small = object_of(100_000, 1);
    store.put("t/small.obj", small.clone()).await.unwrap();
    let big = object_of(3 * MIN_PART_SIZE - 1, 2);
    store.put("t/big.obj", big.clone()).await.unwrap();
    assert!(store.get("t/small.obj").await.unwrap() == small);
    assert!(store.get("t/big.obj").await.unwrap() == big);
    assert_eq!(faults.injected(), 10, "every armed fault was hit");
    let stats = store.stats();
    assert_eq!(
        stats.abort_multipart.requests.load(Ordering::Relaxed),
        0,
        "a completed upload is not aborted"
    );
}

#[tokio::test]
async fn a_slow_part_times_out_and_is_sent_again() {
    let Some(server) = S3Server::start() else {
        return;
    };
    let config = S3Config {
        request_timeout_ms: 1_000,
        ..server.config("slow", "")
    };
    let (store, faults) = server.faulty_store("slow", config).await;
    faults.add(
        Some(RequestKind::UploadPart),
        Fault::Delay(Duration::from_secs(10)),
        1,
    );
    let big = object_of(2 * MIN_PART_SIZE + 7, 3);
    let started = Instant::now();
    store.put("s/big.obj", big.clone()).await.unwrap();
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(8),
        "waited for the slow part ({took:?}) instead of retrying it"
    );
    assert!(store.get("s/big.obj").await.unwrap() == big);
    assert_eq!(faults.injected(), 1);
}

#[tokio::test]
async fn a_failed_complete_aborts_the_upload_and_leaves_no_object() {
    let Some(server) = S3Server::start() else {
        return;
    };
    let config = S3Config {
        max_attempts: 3,
        ..server.config("complete", "")
    };
    let (store, faults) = server.faulty_store("complete", config).await;
    faults.add(
        Some(RequestKind::CompleteMultipartUpload),
        Fault::Refuse(500),
        3,
    );
    let result = store
        .put("c/big.obj", object_of(MIN_PART_SIZE + 1, 4))
        .await;
    assert!(
        matches!(result, Err(storage::Error::Unavailable(_))),
        "{result:?}"
    );
    let stats = store.stats();
    assert_eq!(stats.abort_multipart.requests.load(Ordering::Relaxed), 1);
    assert_eq!(stats.abort_multipart.errors.load(Ordering::Relaxed), 0);
    assert!(matches!(
        store.get("c/big.obj").await,
        Err(storage::Error::NotFound(_))
    ));
    // The same key can then be written: nothing of the aborted upload stayed.
    let fine = object_of(MIN_PART_SIZE + 1, 5);
    store.put("c/big.obj", fine.clone()).await.unwrap();
    assert!(store.get("c/big.obj").await.unwrap() == fine);
}

/// One idempotent producer's acknowledged batches: (sequence, offset).
type Acks = Vec<(i32, i64)>;

/// Sends `batches` batches of `records` records of `value_bytes` bytes in
/// order, each retried (the same bytes, as a Kafka client does) until
/// acknowledged. Returns the acknowledgements and how many attempts failed.
async fn produce(
    log: Arc<Log>,
    tp: TopicPartition,
    producer_id: i64,
    batches: i32,
    records: i32,
    value_bytes: usize,
) -> (Acks, u32) {
    let mut acks = Vec::new();
    let mut failures = 0;
    for b in 0..batches {
        let values: Vec<String> = (0..records)
            .map(|r| {
                let mut v = format!("p{producer_id}-b{b}-r{r}-");
                v.extend(std::iter::repeat_n(
                    'x',
                    value_bytes.saturating_sub(v.len()),
                ));
                v
            })
            .collect();
        let values: Vec<&str> = values.iter().map(String::as_str).collect();
        let batch = idempotent_batch(&values, 1, producer_id, 0, b * records);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match log
                .append(tp, batch.clone(), AppendOptions::default())
                .await
            {
                Ok(result) => {
                    acks.push((b * records, result.base_offset));
                    break;
                }
                Err(e) => {
                    assert!(
                        matches!(
                            e,
                            storage::Error::Unavailable(_)
                                | storage::Error::TimedOut(_)
                                | storage::Error::Io(_)
                        ),
                        "not a retriable error: {e}"
                    );
                    assert!(
                        Instant::now() < deadline,
                        "batch {b} never acknowledged: {e}"
                    );
                    failures += 1;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    }
    (acks, failures)
}

#[tokio::test]
async fn the_log_over_faulty_s3_stores_every_acknowledged_batch_once() {
    let Some(server) = S3Server::start() else {
        return;
    };
    let config = S3Config {
        request_timeout_ms: 400,
        max_attempts: 2,
        ..server.config("log", "cluster")
    };
    let (store, faults) = server.faulty_store("log", config).await;
    let store = Arc::new(store);
    let metadata = Arc::new(SqliteStore::open_in_memory().unwrap());
    let topic_id = TopicId::new_random();
    metadata
        .create_topic("t", topic_id, 2, BTreeMap::new())
        .await
        .unwrap();
    let log_config = LogConfig {
        flush_interval_ms: 20,
        flush_max_bytes: 2 * MIN_PART_SIZE,
        flush_buffer_max_bytes: 64 * MIN_PART_SIZE,
        object_write_timeout_ms: 3_000,
        ..LogConfig::default()
    };
    let log = Arc::new(
        storage::testing::open_leading(
            log_config,
            store.clone(),
            metadata.clone(),
            Arc::new(SystemClock),
        )
        .await
        .unwrap(),
    );
    // Every request may fail, with a 5xx before or after the server applied
    // it, a dropped connection, or a delay past the attempt timeout. With two
    // attempts per request some writes fail outright: their flush fails and
    // the producers retry.
    faults.random(
        0.2,
        vec![
            Fault::Refuse(503),
            Fault::Refuse(500),
            Fault::FailAfterApply(500),
            Fault::ConnectionError,
            Fault::Delay(Duration::from_millis(600)),
        ],
        42,
    );
    let tps = [
        TopicPartition::new(topic_id, 0),
        TopicPartition::new(topic_id, 1),
    ];
    // Two producers of big batches (flushes over the part size go up as
    // multipart uploads), four of small ones.
    let mut tasks = Vec::new();
    for (pid, batches, records, bytes) in [
        (1, 6, 3, 1 << 20),
        (2, 6, 3, 1 << 20),
        (3, 60, 5, 200),
        (4, 60, 5, 200),
        (5, 60, 5, 200),
        (6, 60, 5, 200),
    ] {
        let tp = tps[pid as usize % 2];
        let log = log.clone();
        tasks.push((
            pid,
            tp,
            tokio::spawn(produce(log, tp, pid, batches, records, bytes)),
        ));
    }
    let mut acked: HashMap<(i64, i32), (TopicPartition, i64)> = HashMap::new();
    let mut failed_attempts = 0;
    for (pid, tp, task) in tasks {
        let (acks, failures) = task.await.unwrap();
        failed_attempts += failures;
        for (sequence, offset) in acks {
            acked.insert((pid, sequence), (tp, offset));
        }
    }
    faults.clear();
    let stats = store.stats();
    println!(
        "faults injected={} failed produce attempts={failed_attempts}\n{stats}",
        faults.injected()
    );
    assert!(faults.injected() > 10, "too few faults to mean anything");
    assert!(
        stats.upload_part.requests.load(Ordering::Relaxed) > 0,
        "no multipart upload was exercised"
    );

    check_stored(&log, &tps, &acked).await;
    log.shutdown().await;

    // Failed flushes may have left objects nothing references (a timed-out
    // write), and so does a crash between an object write and its commit,
    // which this stands for. Collect twice a grace period apart, on a clock
    // of the collector's own.
    store
        .put(&storage::object_key::new_object_key(), object_of(1_000, 9))
        .await
        .unwrap();
    const GRACE_MS: i64 = 60_000;
    let clock = Arc::new(ManualClock::new(SystemClock.now_ms() + 2 * GRACE_MS));
    let collector = ObjectCollector::new(store.clone(), metadata.clone(), clock.clone(), GRACE_MS);
    let first = collector.collect().await.unwrap();
    clock.advance(GRACE_MS);
    let second = collector.collect().await.unwrap();
    println!("gc: first pass {first:?}\ngc: second pass {second:?}");
    assert_eq!(
        first.deleted, 0,
        "deleted before a grace period unreferenced"
    );
    let mut left = store.list("").await.unwrap();
    let mut referenced = metadata.referenced_objects(&left).await.unwrap();
    left.sort();
    referenced.sort();
    assert_eq!(left, referenced, "an unreferenced object survived");
    assert_eq!(second.deleted, first.waiting);
    // Every acknowledged batch reads back through a fresh log: no tail
    // cache, every byte from S3.
    let fresh = storage::testing::open_leading(
        LogConfig::default(),
        store.clone(),
        metadata.clone(),
        Arc::new(SystemClock),
    )
    .await
    .unwrap();
    check_stored(&fresh, &tps, &acked).await;
}

/// Every acknowledged batch stored once, at its acknowledged offset;
/// offsets dense from 0; nothing stored that was not acknowledged.
async fn check_stored(
    log: &Log,
    tps: &[TopicPartition],
    acked: &HashMap<(i64, i32), (TopicPartition, i64)>,
) {
    let mut stored = 0;
    for &tp in tps {
        let mut next_offset = 0;
        let mut seen = HashMap::new();
        let high_watermark = loop {
            let read = log.read(tp, next_offset, 1 << 30, true).await.unwrap();
            if read.records.is_empty() {
                break read.high_watermark;
            }
            let mut buf = read.records.clone();
            while !buf.is_empty() {
                let header = protocol::batch::parse_header(&buf).unwrap();
                let len = header.batch_length as usize + 12;
                assert_eq!(
                    header.base_offset, next_offset,
                    "a hole or an overlap in {tp:?}"
                );
                next_offset = header.base_offset + header.last_offset_delta as i64 + 1;
                let key = (header.producer_id, header.base_sequence);
                assert!(
                    seen.insert(key, header.base_offset).is_none(),
                    "batch {key:?} stored twice in {tp:?}"
                );
                let Some(&(acked_tp, acked_offset)) = acked.get(&key) else {
                    panic!("batch {key:?} stored but never acknowledged");
                };
                assert_eq!(
                    (acked_tp, acked_offset),
                    (tp, header.base_offset),
                    "{key:?}"
                );
                stored += 1;
                let _ = buf.split_to(len);
            }
        };
        assert_eq!(next_offset, high_watermark);
    }
    assert_eq!(stored, acked.len(), "an acknowledged batch is missing");
}
