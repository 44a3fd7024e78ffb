use std::collections::BTreeMap;

use bytes::Bytes;
use metadata::TopicStore;
use metadata::{SqliteStore, TopicId, TopicPartition};
use protocol::kafka_protocol::records::Compression;
use protocol::testing::{offsets_and_values, record_batch};

use super::*;
use crate::object_key::new_object_key;
use crate::{AppendOptions, Log, LogConfig, ManualClock, MemoryStore, SystemClock};

const GRACE_MS: i64 = 60_000;

struct Fixture {
    store: Arc<MemoryStore>,
    metadata: Arc<SqliteStore>,
    clock: Arc<ManualClock>,
    log: Log,
    gone: TopicPartition,
    kept: TopicPartition,
    collector: ObjectCollector,
}

async fn fixture() -> Fixture {
    let store = Arc::new(MemoryStore::new());
    let metadata = Arc::new(SqliteStore::open_in_memory().unwrap());
    // Object keys carry the system time; the collector's clock starts there.
    let clock = Arc::new(ManualClock::new(SystemClock.now_ms()));
    let (gone, kept) = (TopicId::new_random(), TopicId::new_random());
    for (name, id) in [("gone", gone), ("kept", kept)] {
        metadata
            .create_topic(name, id, 1, BTreeMap::new())
            .await
            .unwrap();
    }
    let config = LogConfig {
        flush_interval_ms: 50,
        ..LogConfig::default()
    };
    let log = crate::testing::open_leading(config, store.clone(), metadata.clone(), clock.clone())
        .await
        .unwrap();
    let collector = ObjectCollector::new(store.clone(), metadata.clone(), clock.clone(), GRACE_MS);
    Fixture {
        store,
        metadata,
        clock,
        log,
        gone: TopicPartition::new(gone, 0),
        kept: TopicPartition::new(kept, 0),
        collector,
    }
}

async fn newest_key_time(f: &Fixture) -> i64 {
    let keys = f.store.list("").await.unwrap();
    keys.iter()
        .filter_map(|k| crate::object_key::object_key_time_ms(k))
        .max()
        .expect("objects of ours")
}

fn batch(value: &str) -> Bytes {
    record_batch(&[value], 1, false, Compression::None)
}

#[tokio::test]
async fn unreferenced_objects_go_after_the_grace_period_and_nothing_else_does() {
    let f = fixture().await;
    // One flush with both topics (a shared object), then one with only the
    // topic that will be deleted.
    let both = [
        f.log
            .enqueue(f.gone, batch("g0"), AppendOptions::default())
            .await
            .unwrap(),
        f.log
            .enqueue(f.kept, batch("k0"), AppendOptions::default())
            .await
            .unwrap(),
    ];
    for append in both {
        append.wait().await.unwrap();
    }
    f.log
        .append(f.gone, batch("g1"), AppendOptions::default())
        .await
        .unwrap();
    // A crash between write and commit leaves an object nothing names; a
    // key that is not ours is never touched.
    let orphan = new_object_key();
    f.store
        .put(&orphan, Bytes::from_static(b"junk"))
        .await
        .unwrap();
    f.store
        .put("README", Bytes::from_static(b"hi"))
        .await
        .unwrap();
    let objects = f.store.list("").await.unwrap();
    assert_eq!(objects.len(), 4, "{objects:?}");

    let pass = f.collector.collect().await.unwrap();
    assert_eq!(
        (pass.listed, pass.foreign, pass.young, pass.deleted),
        (4, 1, 3, 0)
    );

    // Past the grace period from the newest object's creation (the keys
    // carry the system clock's time).
    f.clock.set(newest_key_time(&f).await + GRACE_MS);
    let pass = f.collector.collect().await.unwrap();
    assert_eq!(
        (pass.referenced, pass.waiting, pass.deleted),
        (2, 1, 0),
        "the orphan waits a grace period from when it was first seen unreferenced"
    );

    f.metadata.delete_topic(f.gone.topic_id).await.unwrap();
    f.clock.advance(GRACE_MS / 2);
    let pass = f.collector.collect().await.unwrap();
    assert_eq!((pass.referenced, pass.waiting, pass.deleted), (1, 2, 0));

    f.clock.advance(GRACE_MS / 2);
    let pass = f.collector.collect().await.unwrap();
    assert_eq!(
        (pass.referenced, pass.waiting, pass.deleted),
        (1, 1, 1),
        "the orphan goes; the deleted topic's own object still waits"
    );
    assert!(matches!(
        f.store.get(&orphan).await,
        Err(crate::Error::NotFound(_))
    ));

    f.clock.advance(GRACE_MS / 2);
    let pass = f.collector.collect().await.unwrap();
    assert_eq!((pass.referenced, pass.waiting, pass.deleted), (1, 0, 1));
    let left = f.store.list("").await.unwrap();
    assert_eq!(left.len(), 2, "{left:?}");
    assert!(left.contains(&"README".to_string()));

    // The kept topic reads back from the object store alone.
    let reopened = crate::testing::open_leading(
        LogConfig::default(),
        f.store.clone(),
        f.metadata.clone(),
        f.clock.clone(),
    )
    .await
    .unwrap();
    let read = reopened.read(f.kept, 0, 1 << 20, true).await.unwrap();
    assert_eq!(
        offsets_and_values(&read.records),
        vec![(0, "k0".to_string())]
    );
}

#[tokio::test]
async fn an_object_referenced_again_is_no_longer_waiting() {
    // Models a commit that applied late (after its flush was failed): the
    // object was unreferenced when first seen, then became referenced.
    let f = fixture().await;
    f.log
        .append(f.kept, batch("k0"), AppendOptions::default())
        .await
        .unwrap();
    let key = f.store.list("").await.unwrap().remove(0);
    f.clock.set(newest_key_time(&f).await + GRACE_MS);
    f.collector
        .unreferenced_since
        .lock()
        .unwrap()
        .insert(key.clone(), f.clock.now_ms() - 10 * GRACE_MS);
    let pass = f.collector.collect().await.unwrap();
    assert_eq!((pass.referenced, pass.deleted), (1, 0));
    assert!(f.collector.unreferenced_since.lock().unwrap().is_empty());
}

#[tokio::test]
async fn objects_the_log_has_not_settled_are_kept() {
    // A flush whose commit timed out may still be committed: however old
    // and unreferenced its object looks, it stays while the log says so.
    let f = fixture().await;
    let unsettled = Arc::new(crate::UnsettledObjects::default());
    let collector = ObjectCollector::new(
        f.store.clone(),
        f.metadata.clone(),
        f.clock.clone(),
        GRACE_MS,
    )
    .keeping(unsettled.clone());
    let key = new_object_key();
    f.store.put(&key, Bytes::from_static(b"x")).await.unwrap();
    unsettled.sealed(&key);
    unsettled.settled(&key, false);
    f.clock.set(newest_key_time(&f).await + GRACE_MS);
    for _ in 0..3 {
        let pass = collector.collect().await.unwrap();
        assert_eq!((pass.unsettled, pass.deleted), (1, 0));
        f.clock.advance(GRACE_MS);
    }
    assert!(f.store.get(&key).await.is_ok());
}
