//! Rewrites running together (`Log::compact_partitions`) read the runs they
//! have in one flush object with one ranged read; a span that does not fit
//! in the room left is not read, its runs are read alone.

use std::sync::atomic::Ordering;

use metadata::{IndexEntry, LogStore};

use super::compaction::eager;
use super::streaming::StreamingStore;
use super::*;
use crate::log::compaction_reads::RunReads;

/// A log over a streaming store whose topic's two partitions each got a
/// run in each of `flushes` flush objects, and the two partitions.
async fn shared_flushes(flushes: usize) -> (Fixture<StreamingStore>, [TopicPartition; 2]) {
    let f = fixture_over(LogConfig::default(), StreamingStore::new(4_096, 0)).await;
    let tps = [f.tp, TopicPartition::new(f.tp.topic_id, 1)];
    for i in 0..flushes {
        // Appended together, flushed together.
        let (a, b) = tokio::join!(
            f.log.append(
                tps[0],
                batch(&[&format!("a{i}")], 1),
                AppendOptions::default()
            ),
            f.log.append(
                tps[1],
                batch(&[&format!("b{i}")], 1),
                AppendOptions::default()
            ),
        );
        a.unwrap();
        b.unwrap();
    }
    let mut keys = Vec::new();
    for tp in tps {
        let entries = f.metadata.index_entries(tp, 0, usize::MAX).await.unwrap();
        keys.push(
            entries
                .into_iter()
                .map(|e| e.object_key)
                .collect::<Vec<_>>(),
        );
    }
    let (a, b) = (&keys[0], &keys[1]);
    assert_eq!(a.len(), flushes);
    assert_eq!(a, b, "each flush holds a run of both partitions");
    (f, tps)
}

/// No limit on requests or bytes.
fn unpaced() -> crate::CompactionLimits {
    crate::CompactionLimits {
        max_requests_per_second: 0,
        ..eager()
    }
}

async fn all_values(f: &Fixture<StreamingStore>, tp: TopicPartition) -> Vec<(i64, String)> {
    values(&f.log.read(tp, 0, 1 << 20, true).await.unwrap().records)
}

#[tokio::test]
async fn rewrites_running_together_read_each_flush_object_once() {
    let (f, tps) = shared_flushes(6).await;
    let before = [all_values(&f, tps[0]).await, all_values(&f, tps[1]).await];
    assert_eq!(before[0].len(), 6);

    let gets = f.store.gets.load(Ordering::SeqCst);
    let answers = f.log.compact_partitions(&tps, eager()).await;
    assert_eq!(answers.len(), 2);
    for ((tp, answer), expected) in answers.into_iter().zip(tps) {
        assert_eq!(tp, expected);
        assert_eq!(answer.unwrap().unwrap().old_entries, 6);
    }
    // One ranged read per flush object, not one per (object, partition).
    assert_eq!(f.store.gets.load(Ordering::SeqCst) - gets, 6);
    assert_eq!(f.log.stats().compaction_span_reads, 6);
    for (tp, before) in tps.into_iter().zip(before) {
        assert_eq!(all_values(&f, tp).await, before);
        let entries = f.metadata.index_entries(tp, 0, usize::MAX).await.unwrap();
        assert_eq!(entries.len(), 1);
    }
}

/// The two partitions' entries of two shared flushes, and reads of all
/// four runs with room for one of the two objects' spans at a time.
async fn reads_with_room_for_one_span(
    f: &Fixture<StreamingStore>,
    tps: [TopicPartition; 2],
) -> (Vec<IndexEntry>, Vec<IndexEntry>, RunReads) {
    let a = f
        .metadata
        .index_entries(tps[0], 0, usize::MAX)
        .await
        .unwrap();
    let b = f
        .metadata
        .index_entries(tps[1], 0, usize::MAX)
        .await
        .unwrap();
    let span = |i: usize| {
        let start = a[i].position.min(b[i].position);
        (a[i].position + a[i].length).max(b[i].position + b[i].length) - start
    };
    let room = span(0).max(span(1)).next_multiple_of(1024);
    let runs = [&a[0], &b[0], &a[1], &b[1]];
    let reads = RunReads::new(f.log.inner.clone(), unpaced(), 16, runs, room);
    (a, b, reads)
}

#[tokio::test]
async fn a_span_that_does_not_fit_is_not_read_and_its_runs_are_read_alone() {
    let (f, tps) = shared_flushes(2).await;
    let (a, b, reads) = reads_with_room_for_one_span(&f, tps).await;
    let gets = f.store.gets.load(Ordering::SeqCst);
    let count = || f.store.gets.load(Ordering::SeqCst) - gets;
    let expect = |e: &IndexEntry| {
        let store = f.store.clone();
        let e = e.clone();
        async move {
            store
                .inner
                .get_range(&e.object_key, e.position..e.position + e.length)
                .await
                .unwrap()
        }
    };
    // The first object's span is read and held…
    assert_eq!(reads.run(&a[0]).await.unwrap(), expect(&a[0]).await);
    assert_eq!(count(), 1);
    // …so the second's does not fit: this run is read alone…
    assert_eq!(reads.run(&a[1]).await.unwrap(), expect(&a[1]).await);
    assert_eq!(count(), 2);
    // …the first span's last run comes out of it, and it goes…
    assert_eq!(reads.run(&b[0]).await.unwrap(), expect(&b[0]).await);
    assert_eq!(count(), 2);
    // …and the second object's last run is read alone (the other was).
    let bytes = f.store.got_bytes.load(Ordering::SeqCst);
    assert_eq!(reads.run(&b[1]).await.unwrap(), expect(&b[1]).await);
    assert_eq!(count(), 3);
    let span_bytes = f.store.got_bytes.load(Ordering::SeqCst) - bytes;
    assert_eq!(span_bytes as u64, b[1].length);
    assert_eq!(f.log.stats().compaction_span_reads, 1);
}

#[tokio::test]
async fn a_rewrite_that_stops_early_lets_go_of_the_spans_it_shared() {
    let (f, tps) = shared_flushes(2).await;
    let (a, b, reads) = reads_with_room_for_one_span(&f, tps).await;
    let gets = f.store.gets.load(Ordering::SeqCst);
    // The first object's span is read for `a`, and `b`'s rewrite gives up
    // before asking for its run in it: the span goes…
    reads.run(&a[0]).await.unwrap();
    reads.release(&b[..1]).await;
    // …so the second object's span fits, and serves both runs in it.
    reads.run(&a[1]).await.unwrap();
    reads.run(&b[1]).await.unwrap();
    assert_eq!(f.store.gets.load(Ordering::SeqCst) - gets, 2);
    assert_eq!(f.log.stats().compaction_span_reads, 2);
}

#[tokio::test]
async fn rewrites_running_together_never_hold_each_others_request_slots() {
    let store = StreamingStore::new(1_024, 0).with_request_slots(2);
    let f = fixture_over(LogConfig::default(), store).await;
    let tps = [f.tp, TopicPartition::new(f.tp.topic_id, 1)];
    for i in 0..60 {
        let value = format!("{i:0>300}");
        let (a, b) = tokio::join!(
            f.log
                .append(tps[0], batch(&[&value], 1), AppendOptions::default()),
            f.log
                .append(tps[1], batch(&[&value], 1), AppendOptions::default()),
        );
        a.unwrap();
        b.unwrap();
    }
    // Each rewrite waits for its parts (two held, 1 KiB each) to be
    // written while its reads are in flight; with only two request slots,
    // reads that stood still while their rewrite waited would keep the
    // slots the parts need.
    let rewrites = f.log.compact_partitions(&tps, eager());
    let answers = tokio::time::timeout(std::time::Duration::from_secs(30), rewrites)
        .await
        .expect("the rewrites finish");
    for (_, answer) in answers {
        assert_eq!(answer.unwrap().unwrap().old_entries, 60);
    }
}

#[tokio::test]
async fn compaction_reads_and_writes_through_its_own_store_when_given_one() {
    let (f, tps) = shared_flushes(3).await;
    // A second client of the same objects (here, a copy of them).
    let own = Arc::new(StreamingStore::new(4_096, 0));
    for key in f.store.inner.list("").await.unwrap() {
        let object = f.store.inner.get(&key).await.unwrap();
        own.inner.put(&key, object).await.unwrap();
    }
    assert!(f.log.set_compaction_store(own.clone()));
    assert!(!f.log.set_compaction_store(own.clone()), "set once");

    let gets = f.store.gets.load(Ordering::SeqCst);
    let answers = f.log.compact_partitions(&tps, eager()).await;
    for (_, answer) in answers {
        let rewrite = answer.unwrap().unwrap();
        assert_eq!(rewrite.old_entries, 3);
        assert!(own.inner.get(&rewrite.object_key).await.is_ok());
        assert!(f.store.inner.get(&rewrite.object_key).await.is_err());
    }
    assert_eq!(
        f.store.gets.load(Ordering::SeqCst),
        gets,
        "no read through the log's store"
    );
    assert_eq!(
        own.gets.load(Ordering::SeqCst),
        3,
        "one ranged read per flush object"
    );
}
