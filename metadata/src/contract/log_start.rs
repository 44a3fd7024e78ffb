//! Contract checks of `LogStore::advance_log_start`: retention and
//! DeleteRecords move a partition's log start, fenced like a flush.

use super::{
    ENTRY_LENGTH_BYTES, FIRST_EPOCH, WRITER, all_entries, base_offsets, commit_ok, create, entry,
    flush, registration, state,
};
use crate::model::{INDEX_SEGMENT_OFFSETS, IndexSegment, TopicPartition};
use crate::store::{Error, MetadataStore};

async fn log_start(store: &dyn MetadataStore, tp: TopicPartition) -> i64 {
    state(store, tp)
        .await
        .unwrap_or_else(|| panic!("no partition state topic_partition={tp}"))
        .log_start_offset
}

async fn referenced(store: &dyn MetadataStore, keys: &[&str]) -> Vec<String> {
    let keys: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
    let mut found = store.referenced_objects(&keys).await.expect("referenced");
    found.sort();
    found
}

pub async fn advance_log_start_drops_entries_wholly_below_and_keeps_the_one_it_cuts(
    store: &dyn MetadataStore,
) {
    let topic = create(store, "t", 1).await;
    let tp = TopicPartition::new(topic.topic_id, 0);
    for (key, base, ts) in [("o1", 0, 10), ("o2", 10, 30), ("o3", 20, 20)] {
        commit_ok(store, &flush(key, vec![entry(tp, base, base + 9, ts)])).await;
    }
    let advance = |offset| store.advance_log_start(WRITER, tp, FIRST_EPOCH, offset);
    assert_eq!(advance(15).await.expect("advance to 15"), 15);
    assert_eq!(log_start(store, tp).await, 15);
    assert_eq!(base_offsets(&all_entries(store, tp).await), [10, 20]);
    assert_eq!(
        store.index_segments(tp).await.expect("segments"),
        vec![IndexSegment {
            topic_partition: tp,
            segment: 0,
            base_offset: 10,
            last_offset: 29,
            entries: 2,
            bytes: 2 * ENTRY_LENGTH_BYTES as i64,
            max_timestamp: 30,
        }],
        "the summary counts only the entries kept"
    );
    assert_eq!(referenced(store, &["o1", "o2", "o3"]).await, ["o2", "o3"]);
    let by_time = store.index_entry_by_timestamp(tp, 0).await.expect("by ts");
    assert_eq!(by_time.map(|e| e.base_offset), Some(10));

    // Backwards (or to where it is) changes nothing and answers where it is.
    assert_eq!(advance(12).await.expect("advance to 12"), 15);
    assert_eq!(advance(15).await.expect("advance to 15"), 15);
    assert_eq!(log_start(store, tp).await, 15);

    // Beyond the log end is refused; to the log end empties the index.
    assert!(matches!(
        advance(31).await,
        Err(Error::LogStartBeyondEnd {
            offset: 31,
            next_offset: 30,
            ..
        })
    ));
    assert_eq!(log_start(store, tp).await, 15);
    assert_eq!(advance(30).await.expect("advance to the end"), 30);
    assert!(all_entries(store, tp).await.is_empty());
    assert!(store.index_segments(tp).await.expect("segments").is_empty());
    assert!(referenced(store, &["o1", "o2", "o3"]).await.is_empty());
    assert_eq!(
        store.index_entry_max_timestamp(tp).await.expect("max ts"),
        None
    );

    // The log goes on from there.
    commit_ok(store, &flush("o4", vec![entry(tp, 30, 31, 40)])).await;
    assert_eq!(base_offsets(&all_entries(store, tp).await), [30]);
    assert_eq!(log_start(store, tp).await, 30);
}

pub async fn advance_log_start_drops_whole_segments_below_the_first_kept_entry(
    store: &dyn MetadataStore,
) {
    let topic = create(store, "t", 1).await;
    let tp = TopicPartition::new(topic.topic_id, 0);
    let s = INDEX_SEGMENT_OFFSETS;
    // Segment 0: [0, 9] and [10, s + 4] (runs into segment 1); segment 1:
    // [s + 5, s + 9]; segment 2: [2s, 2s].
    commit_ok(
        store,
        &flush(
            "a",
            vec![
                entry(tp, 0, 9, 1),
                entry(tp, 10, s + 4, 2),
                entry(tp, s + 5, s + 9, 3),
                entry(tp, s + 10, 2 * s - 1, 4),
                entry(tp, 2 * s, 2 * s, 5),
            ],
        ),
    )
    .await;
    // Inside the entry that starts in segment 0: segment 0 keeps that entry.
    store
        .advance_log_start(WRITER, tp, FIRST_EPOCH, s)
        .await
        .expect("advance");
    let segments = store.index_segments(tp).await.expect("segments");
    let summary: Vec<(i64, i64, i64)> = segments
        .iter()
        .map(|g| (g.segment, g.base_offset, g.entries))
        .collect();
    assert_eq!(summary, [(0, 10, 1), (1, s + 5, 2), (2, 2 * s, 1)]);
    // Past it: segment 0 goes whole.
    store
        .advance_log_start(WRITER, tp, FIRST_EPOCH, s + 7)
        .await
        .expect("advance");
    let segments = store.index_segments(tp).await.expect("segments");
    let summary: Vec<(i64, i64, i64, i64)> = segments
        .iter()
        .map(|g| (g.segment, g.base_offset, g.entries, g.max_timestamp))
        .collect();
    assert_eq!(summary, [(1, s + 5, 2, 4), (2, 2 * s, 1, 5)]);
    assert_eq!(
        base_offsets(&all_entries(store, tp).await),
        [s + 5, s + 10, 2 * s]
    );
}

pub async fn advance_log_start_is_fenced_like_a_commit(store: &dyn MetadataStore) {
    let topic = create(store, "t", 2).await;
    let tp = TopicPartition::new(topic.topic_id, 0);
    commit_ok(store, &flush("o", vec![entry(tp, 0, 9, 1)])).await;
    assert!(matches!(
        store
            .advance_log_start(WRITER, tp, FIRST_EPOCH + 1, 5)
            .await,
        Err(Error::Fenced { .. })
    ));
    let unknown = TopicPartition::new(topic.topic_id, 7);
    assert!(matches!(
        store
            .advance_log_start(WRITER, unknown, FIRST_EPOCH, 0)
            .await,
        Err(Error::UnknownTopic(_))
    ));
    // Another live session does not lead it.
    let other = store
        .register_broker(&registration(2), 0, super::LONG_LEASE_MS)
        .await
        .expect("register node 2");
    assert!(matches!(
        store.advance_log_start(other, tp, FIRST_EPOCH, 5).await,
        Err(Error::Fenced { .. })
    ));
    // A closed session moves nothing.
    store.close_session(WRITER).await.expect("close");
    assert!(matches!(
        store.advance_log_start(WRITER, tp, FIRST_EPOCH, 5).await,
        Err(Error::SessionFenced(_))
    ));
    assert_eq!(log_start(store, tp).await, 0);
    assert_eq!(base_offsets(&all_entries(store, tp).await), [0]);
}
