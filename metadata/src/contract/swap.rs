//! Contract checks of `LogStore::swap_index_entries`: object compaction's
//! commit replaces a run of index entries only while they are exactly what
//! the compactor read; a retention cut, another swap or a leadership change
//! wins.

use super::{
    ENTRY_LENGTH_BYTES, FIRST_EPOCH, WRITER, all_entries, base_offsets, commit_ok, create, entry,
    flush, registration,
};
use crate::model::{IndexEntry, IndexSwap, TopicPartition};
use crate::store::{Error, MetadataStore};

/// Three flushes of ten offsets each, in objects o1..o3, then o4 after them.
async fn four_flushes(store: &dyn MetadataStore) -> TopicPartition {
    let topic = create(store, "t", 1).await;
    let tp = TopicPartition::new(topic.topic_id, 0);
    for (key, base, ts) in [
        ("o1", 0, 10),
        ("o2", 10, 30),
        ("o3", 20, 20),
        ("o4", 30, 40),
    ] {
        commit_ok(store, &flush(key, vec![entry(tp, base, base + 9, ts)])).await;
    }
    tp
}

/// The swap of the first `n` entries into one entry of object "c".
fn compact_first(old: &[IndexEntry], n: usize) -> IndexSwap {
    let old = old[..n].to_vec();
    let new = IndexEntry {
        topic_partition: old[0].topic_partition,
        base_offset: old[0].base_offset,
        last_offset: old[n - 1].last_offset,
        object_key: "c".into(),
        position: 8,
        length: n as u64 * ENTRY_LENGTH_BYTES,
        max_timestamp: old.iter().map(|e| e.max_timestamp).max().expect("entries"),
    };
    IndexSwap {
        session: WRITER,
        topic_partition: old[0].topic_partition,
        leader_epoch: FIRST_EPOCH,
        old,
        new: vec![new],
        object_key: "c".into(),
        object_size: 1000,
    }
}

async fn referenced(store: &dyn MetadataStore) -> Vec<String> {
    let keys: Vec<String> = ["o1", "o2", "o3", "o4", "c"].map(String::from).into();
    let mut found = store.referenced_objects(&keys).await.expect("referenced");
    found.sort();
    found
}

pub async fn an_index_swap_replaces_the_run_and_only_once(store: &dyn MetadataStore) {
    let tp = four_flushes(store).await;
    let before = all_entries(store, tp).await;
    let swap = compact_first(&before, 3);
    store.swap_index_entries(&swap).await.expect("swap");

    let after = all_entries(store, tp).await;
    assert_eq!(base_offsets(&after), [0, 30]);
    assert_eq!(after[0], swap.new[0]);
    assert_eq!(after[1], before[3]);
    assert_eq!(referenced(store).await, ["c", "o4"]);
    // Reads from inside the new entry find it; the summary keeps bytes and
    // timestamps and counts the entries there are now.
    let from_15 = store.index_entries(tp, 15, 1).await.expect("entries");
    assert_eq!(base_offsets(&from_15), [0]);
    let segments = store.index_segments(tp).await.expect("segments");
    assert_eq!(segments.len(), 1);
    assert_eq!(
        (
            segments[0].entries,
            segments[0].bytes,
            segments[0].max_timestamp
        ),
        (2, 4 * ENTRY_LENGTH_BYTES as i64, 40)
    );
    let by_time = store.index_entry_by_timestamp(tp, 25).await.expect("by ts");
    assert_eq!(by_time.map(|e| e.object_key), Some("c".to_string()));

    // The same swap again finds other entries stored: refused, unchanged.
    assert!(matches!(
        store.swap_index_entries(&swap).await,
        Err(Error::SwapRefused { .. })
    ));
    assert_eq!(all_entries(store, tp).await, after);

    // A swap that does not hold the same bytes breaks the rules: refused
    // before the store is read.
    let mut bad = compact_first(&after, 2);
    bad.new[0].length += 1;
    assert!(matches!(
        store.swap_index_entries(&bad).await,
        Err(Error::Backend(_))
    ));
    // The log goes on after a swap.
    commit_ok(store, &flush("o5", vec![entry(tp, 40, 41, 50)])).await;
    assert_eq!(base_offsets(&all_entries(store, tp).await), [0, 30, 40]);
}

pub async fn an_index_swap_loses_to_a_retention_cut_and_to_a_new_leader(store: &dyn MetadataStore) {
    let tp = four_flushes(store).await;
    let before = all_entries(store, tp).await;

    // A cut into the run (DeleteRecords at 5) wins over a swap read before.
    store
        .advance_log_start(WRITER, tp, FIRST_EPOCH, 5)
        .await
        .expect("advance");
    assert!(matches!(
        store.swap_index_entries(&compact_first(&before, 2)).await,
        Err(Error::SwapRefused { .. })
    ));
    // A run after the log start may still be swapped.
    let later = IndexSwap {
        old: before[1..3].to_vec(),
        new: vec![IndexEntry {
            base_offset: 10,
            last_offset: 29,
            length: 2 * ENTRY_LENGTH_BYTES,
            max_timestamp: 30,
            ..compact_first(&before, 1).new[0].clone()
        }],
        ..compact_first(&before, 1)
    };

    // Another epoch, or another session, is fenced; a closed one too.
    let stale = IndexSwap {
        leader_epoch: FIRST_EPOCH + 1,
        ..later.clone()
    };
    assert!(matches!(
        store.swap_index_entries(&stale).await,
        Err(Error::Fenced { .. })
    ));
    let other = store
        .register_broker(&registration(2), 0, super::LONG_LEASE_MS)
        .await
        .expect("register node 2");
    let foreign = IndexSwap {
        session: other,
        ..later.clone()
    };
    assert!(matches!(
        store.swap_index_entries(&foreign).await,
        Err(Error::Fenced { .. })
    ));
    assert_eq!(all_entries(store, tp).await, before);
    store
        .swap_index_entries(&later)
        .await
        .expect("swap after the cut");
    assert_eq!(base_offsets(&all_entries(store, tp).await), [0, 10, 30]);

    store.close_session(WRITER).await.expect("close");
    let last = IndexSwap {
        old: all_entries(store, tp).await[1..].to_vec(),
        new: vec![IndexEntry {
            base_offset: 10,
            last_offset: 39,
            length: 3 * ENTRY_LENGTH_BYTES,
            max_timestamp: 40,
            object_key: "d".into(),
            ..later.new[0].clone()
        }],
        object_key: "d".into(),
        ..later.clone()
    };
    assert!(matches!(
        store.swap_index_entries(&last).await,
        Err(Error::SessionFenced(_))
    ));
}
