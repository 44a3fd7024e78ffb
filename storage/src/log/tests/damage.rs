//! Missing, truncated and corrupted objects: everything before the damage
//! stays readable, the damage is reported, nothing corrupt is served.

use super::*;
use crate::ObjectStore;
use metadata::LogStore;

/// 30 records, one object each, then a log reopened over the same stores so
/// that reads go to the object store. Returns the object key of each offset.
async fn thirty_objects() -> (Fixture, Log, Vec<String>) {
    let f = fixture(LogConfig::default()).await;
    let values: Vec<String> = (0..30).map(|i| format!("v{i}")).collect();
    let values: Vec<&str> = values.iter().map(String::as_str).collect();
    append_each(&f, &values).await;
    f.log.shutdown().await;
    let entries = f.metadata.index_entries(f.tp, 0, 100).await.unwrap();
    assert_eq!(entries.len(), 30, "one object per append");
    let keys = entries.into_iter().map(|e| e.object_key).collect();
    let log = f.reopen().await;
    (f, log, keys)
}

/// Replaces object `key` by `damage(bytes)`, or removes it when `None`.
async fn damage(store: &MemoryStore, key: &str, damage: impl Fn(Bytes) -> Option<Vec<u8>>) {
    let bytes = store.get(key).await.unwrap();
    store.delete(key).await.unwrap();
    if let Some(changed) = damage(bytes) {
        store.put(key, Bytes::from(changed)).await.unwrap();
    }
}

async fn offsets_read(log: &Log, tp: TopicPartition, from: i64) -> Result<Vec<i64>> {
    let read = log.read(tp, from, 1 << 20, true).await?;
    Ok(values(&read.records).into_iter().map(|(o, _)| o).collect())
}

#[tokio::test]
async fn a_missing_object_hides_nothing_before_it() {
    let (f, log, keys) = thirty_objects().await;
    damage(&f.store, &keys[29], |_| None).await;
    assert_eq!(
        offsets_read(&log, f.tp, 0).await.unwrap(),
        (0..29).collect::<Vec<_>>()
    );
    assert!(matches!(
        offsets_read(&log, f.tp, 29).await,
        Err(Error::NotFound(_))
    ));
}

#[tokio::test]
async fn a_damaged_object_in_the_middle_is_reported_and_the_rest_stays_readable() {
    type Damage = fn(Bytes) -> Option<Vec<u8>>;
    let shapes: [(&str, Damage); 3] = [
        // Cut inside the object's one batch.
        ("truncated", |b| {
            Some(b[..crate::object_format::HEADER_BYTES + 30].to_vec())
        }),
        ("flipped byte", |b| {
            let mut v = b.to_vec();
            // Inside the record bytes of the object's one batch.
            let at = crate::object_format::HEADER_BYTES + 70;
            v[at] ^= 0x40;
            Some(v)
        }),
        ("replaced by another object", |_| {
            Some(b"LSOB not the object that was written".to_vec())
        }),
    ];
    for (what, shape) in shapes {
        let (f, log, keys) = thirty_objects().await;
        damage(&f.store, &keys[20], shape).await;
        assert_eq!(
            offsets_read(&log, f.tp, 0).await.unwrap(),
            (0..20).collect::<Vec<_>>(),
            "{what}: everything before the damage"
        );
        let at_damage = offsets_read(&log, f.tp, 20).await;
        assert!(
            matches!(
                at_damage,
                Err(Error::CorruptObject(_) | Error::InvalidRange { .. })
            ),
            "{what}: {at_damage:?}"
        );
        assert_eq!(
            offsets_read(&log, f.tp, 21).await.unwrap(),
            (21..30).collect::<Vec<_>>(),
            "{what}: everything after the damage"
        );
    }
}
