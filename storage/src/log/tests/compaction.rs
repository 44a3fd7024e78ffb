//! Object compaction: small runs rewritten into one object per partition,
//! with every consumer view unchanged; interleaved with appends and
//! DeleteRecords against a model log; garbage collection then deletes the
//! objects the rewrite freed and only those.

use std::collections::BTreeMap;

use metadata::LogStore;

use super::retention::{Retained, retained, retained_with};
use super::*;
use crate::{CompactionLimits, NoRewrite, ObjectCollector, SystemClock};

/// Everything eligible at once, whatever its age.
pub(super) fn eager() -> CompactionLimits {
    CompactionLimits {
        min_age_ms: 0,
        ..CompactionLimits::default()
    }
}

/// Every record from the log start on, as (offset, value).
async fn everything(r: &Retained) -> Vec<(i64, String)> {
    let mut out = Vec::new();
    let mut at = r.log_start();
    loop {
        let read = r.log.read(r.tp, at, 1 << 20, true).await.unwrap();
        let got: Vec<(i64, String)> = values(&read.records)
            .into_iter()
            .filter(|(o, _)| *o >= at)
            .collect();
        let Some(&(last, _)) = got.last() else {
            return out;
        };
        out.extend(got);
        at = last + 1;
    }
}

async fn entries(r: &Retained) -> Vec<metadata::IndexEntry> {
    r.metadata.index_entries(r.tp, 0, usize::MAX).await.unwrap()
}

#[tokio::test]
async fn small_runs_become_one_object_and_reads_do_not_change() {
    let r = retained().await;
    let now = r.clock.now_ms();
    r.append_at(&[now - 5, now - 4, now - 3, now - 2, now - 1])
        .await;
    let before = everything(&r).await;
    let by_time = r
        .log
        .list_offset(r.tp, OffsetSpec::Timestamp(now - 3))
        .await
        .unwrap();
    assert_eq!(entries(&r).await.len(), 5);

    let rewrite = r
        .log
        .compact_partition(r.tp, eager())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (
            rewrite.old_entries,
            rewrite.new_entries,
            rewrite.old_objects
        ),
        (5, 1, 5)
    );
    let after = entries(&r).await;
    assert_eq!(after.len(), 1);
    assert_eq!((after[0].base_offset, after[0].last_offset), (0, 9));
    assert_eq!(after[0].object_key, rewrite.object_key);
    assert_eq!(
        after[0].max_timestamp,
        now - 1 + 1,
        "the batch's last record is a ms later"
    );
    assert_eq!(everything(&r).await, before);
    assert_eq!(
        r.log
            .list_offset(r.tp, OffsetSpec::Timestamp(now - 3))
            .await
            .unwrap(),
        by_time
    );
    // From inside the new entry: the batch holding the offset comes first.
    let read = r.log.read(r.tp, 5, 1 << 20, true).await.unwrap();
    assert_eq!(values(&read.records)[0].0, 4);

    // Nothing left to do: one entry is not a run.
    assert_eq!(
        r.log.compact_partition(r.tp, eager()).await.unwrap(),
        Err(NoRewrite::NothingToDo)
    );
    // The log goes on after it; new entries may join a later rewrite.
    r.append_at(&[now, now]).await;
    assert_eq!(everything(&r).await.len(), 14);
}

#[tokio::test]
async fn entries_are_cut_at_max_entry_bytes_never_inside_a_batch() {
    let r = retained().await;
    let now = r.clock.now_ms();
    let length = r.append_at(&[now; 6]).await as u64;
    let before = everything(&r).await;
    let limits = CompactionLimits {
        max_entry_bytes: 2 * length + length / 2,
        ..eager()
    };
    let rewrite = r
        .log
        .compact_partition(r.tp, limits)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((rewrite.old_entries, rewrite.new_entries), (6, 3));
    let after = entries(&r).await;
    let ranges: Vec<(i64, i64)> = after
        .iter()
        .map(|e| (e.base_offset, e.last_offset))
        .collect();
    assert_eq!(ranges, [(0, 3), (4, 7), (8, 11)]);
    assert!(after.iter().all(|e| e.length == 2 * length));
    assert_eq!(everything(&r).await, before);
}

#[tokio::test]
async fn young_and_cut_entries_are_left_alone() {
    let r = retained().await;
    let now = r.clock.now_ms();
    r.append_at(&[now; 4]).await;
    // Too young: objects carry the system's time in their keys.
    let patient = CompactionLimits {
        min_age_ms: 60_000,
        ..CompactionLimits::default()
    };
    assert_eq!(
        r.log.compact_partition(r.tp, patient).await.unwrap(),
        Err(NoRewrite::NothingToDo)
    );
    // The entry DeleteRecords cut into stays; the run starts after it.
    assert_eq!(r.log.advance_log_start(r.tp, 1).await.unwrap(), 1);
    let rewrite = r
        .log
        .compact_partition(r.tp, eager())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rewrite.old_entries, 3);
    let ranges: Vec<(i64, i64)> = entries(&r)
        .await
        .iter()
        .map(|e| (e.base_offset, e.last_offset))
        .collect();
    assert_eq!(ranges, [(0, 1), (2, 7)]);
    assert_eq!(
        everything(&r)
            .await
            .iter()
            .map(|(o, _)| *o)
            .collect::<Vec<_>>(),
        (1..8).collect::<Vec<_>>()
    );
}

/// Four runs of one flush each, and limits under which every run counts as
/// large (with the runs' length and the time they were written at).
async fn four_runs_counted_large() -> (Retained, CompactionLimits, u64, i64) {
    let r = retained().await;
    let now = r.clock.now_ms();
    let length = r.append_at(&[now; 4]).await as u64;
    let large = CompactionLimits {
        small_entry_bytes: length,
        ..eager()
    };
    (r, large, length, now)
}

#[tokio::test]
async fn a_flushs_large_runs_are_carried_but_a_rewrites_are_never_copied_again() {
    // Every run counts as large: a flush's runs are rewritten all the same,
    // out of their multi-partition objects into one of their own.
    let (r, large, _, now) = four_runs_counted_large().await;
    let first = r.log.compact_partition(r.tp, large).await.unwrap().unwrap();
    assert_eq!((first.old_entries, first.new_entries), (4, 1));
    assert!(crate::object_key::is_compacted_object_key(
        &first.object_key
    ));
    // The rewrite's entry is large too: the next rewrite starts after it.
    r.append_at(&[now; 2]).await;
    let second = r.log.compact_partition(r.tp, large).await.unwrap().unwrap();
    assert_eq!((second.old_entries, second.new_entries), (2, 1));
    let ranges: Vec<(i64, i64)> = entries(&r)
        .await
        .iter()
        .map(|e| (e.base_offset, e.last_offset))
        .collect();
    assert_eq!(ranges, [(0, 7), (8, 11)]);
    // Two large entries of rewrites: nothing left to gain.
    assert_eq!(
        r.log.compact_partition(r.tp, large).await.unwrap(),
        Err(NoRewrite::NothingToDo)
    );
}

#[tokio::test]
async fn a_pass_starts_after_the_rewrites_it_never_copies_again() {
    let (r, large, length, now) = four_runs_counted_large().await;
    let compaction_from = || {
        let partition = r.log.inner.partition(&r.tp).unwrap();
        let s = partition.state.lock().unwrap();
        s.compaction_from
    };
    r.log.compact_partition(r.tp, large).await.unwrap().unwrap();
    // The pass that made the first rewrite began at flush runs.
    assert_eq!(compaction_from(), (length, 0));
    r.append_at(&[now; 2]).await;
    r.log.compact_partition(r.tp, large).await.unwrap().unwrap();
    // The next pass walked past the first rewrite's entry (offsets 0..7)…
    assert_eq!(compaction_from(), (length, 8));
    assert_eq!(
        r.log.compact_partition(r.tp, large).await.unwrap(),
        Err(NoRewrite::NothingToDo)
    );
    // …and then past the second's.
    assert_eq!(compaction_from(), (length, 12));
    // Under a larger `small_entry_bytes` both are small again: the pass
    // starts from the log start and merges them.
    let rewrite = r
        .log
        .compact_partition(r.tp, eager())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((rewrite.old_entries, rewrite.new_entries), (2, 1));
    assert_eq!(compaction_from(), (eager().small_entry_bytes, 0));
    // A pass does not look below where it starts: placed past runs that
    // would merge, it finds nothing.
    r.append_at(&[now; 2]).await;
    let set_from = |from: i64| {
        let partition = r.log.inner.partition(&r.tp).unwrap();
        partition.state.lock().unwrap().compaction_from = (eager().small_entry_bytes, from);
    };
    set_from(16);
    assert_eq!(
        r.log.compact_partition(r.tp, eager()).await.unwrap(),
        Err(NoRewrite::NothingToDo)
    );
    set_from(0);
    let rewrite = r
        .log
        .compact_partition(r.tp, eager())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rewrite.old_entries, 3);
}

#[tokio::test]
async fn a_flushs_run_that_stays_alone_is_moved_with_runs_that_merge() {
    let r = retained().await;
    let now = r.clock.now_ms();
    let hour = 3_600_000;
    // The first run is hours older than the rest: it merges with none of
    // them, but it is moved out of its flush object with them.
    let length = r.append_at(&[now - 3 * hour, now, now, now]).await as u64;
    let rewrite = r
        .log
        .compact_partition(r.tp, eager())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((rewrite.old_entries, rewrite.new_entries), (4, 2));
    let after = entries(&r).await;
    assert!(after.iter().all(|e| e.object_key == rewrite.object_key));
    assert_eq!(
        after.iter().map(|e| e.length).collect::<Vec<_>>(),
        [length, 3 * length]
    );
    // Runs of flushes that all stay alone are not moved: nothing merges.
    r.append_at(&[now - 3 * hour, now - hour]).await;
    assert_eq!(
        r.log.compact_partition(r.tp, eager()).await.unwrap(),
        Err(NoRewrite::NothingToDo)
    );
}

#[tokio::test]
async fn entries_far_apart_in_time_are_not_merged_so_retention_stays_fine() {
    let r = retained().await;
    let now = r.clock.now_ms();
    let hour = 3_600_000;
    r.append_at(&[now - 3 * hour, now - 3 * hour, now, now])
        .await;
    let rewrite = r
        .log
        .compact_partition(r.tp, eager())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((rewrite.old_entries, rewrite.new_entries), (4, 2));
    // Retention of two hours drops the old pair, as before the rewrite.
    let cut = r
        .log
        .enforce_retention(r.tp, crate::RetentionLimits::from_kafka(2 * hour, -1))
        .await
        .unwrap();
    assert_eq!(cut, Some(4));
    // Nothing merges any more: the two entries are a run with no gain.
    assert_eq!(
        r.log.compact_partition(r.tp, eager()).await.unwrap(),
        Err(NoRewrite::NothingToDo)
    );
}

#[tokio::test]
async fn a_run_in_which_nothing_merges_is_not_rewritten() {
    let r = retained().await;
    let now = r.clock.now_ms();
    let length = r.append_at(&[now; 3]).await as u64;
    let tight = CompactionLimits {
        max_entry_bytes: length + length / 2,
        ..eager()
    };
    assert_eq!(
        r.log.compact_partition(r.tp, tight).await.unwrap(),
        Err(NoRewrite::NothingToDo)
    );
    assert_eq!(r.store.list("").await.unwrap().len(), 3);
}

#[tokio::test]
async fn entries_that_would_stay_alone_are_not_copied_again() {
    let r = retained().await;
    let now = r.clock.now_ms();
    let length = r.append_at(&[now; 4]).await as u64;
    let pairs = CompactionLimits {
        max_entry_bytes: 2 * length,
        ..eager()
    };
    // Two full entries of two runs each.
    let first = r.log.compact_partition(r.tp, pairs).await.unwrap().unwrap();
    assert_eq!((first.old_entries, first.new_entries), (4, 2));
    // Two more runs: only they are rewritten, not the full entries before.
    r.append_at(&[now; 2]).await;
    let second = r.log.compact_partition(r.tp, pairs).await.unwrap().unwrap();
    assert_eq!((second.old_entries, second.new_entries), (2, 1));
    let ranges: Vec<(i64, i64)> = entries(&r)
        .await
        .iter()
        .map(|e| (e.base_offset, e.last_offset))
        .collect();
    assert_eq!(ranges, [(0, 3), (4, 7), (8, 11)]);
    assert_eq!(
        r.log.compact_partition(r.tp, pairs).await.unwrap(),
        Err(NoRewrite::NothingToDo)
    );
}

#[tokio::test]
async fn garbage_collection_deletes_the_rewritten_objects_and_only_those() {
    let r = retained().await;
    let now = r.clock.now_ms();
    r.append_at(&[now; 3]).await;
    r.log
        .compact_partition(r.tp, eager())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.store.list("").await.unwrap().len(), 4);
    let collector = ObjectCollector::new(r.store.clone(), r.metadata.clone(), r.clock.clone(), 0);
    r.clock.set(SystemClock.now_ms() + 1);
    let pass = collector.collect().await.unwrap();
    assert_eq!(pass.deleted, 3, "{pass:?}");
    let kept = r.store.list("").await.unwrap();
    assert_eq!(kept, [entries(&r).await[0].object_key.clone()]);
    assert_eq!(everything(&r).await.len(), 6);
}

#[tokio::test]
async fn a_partition_led_elsewhere_is_not_compacted() {
    let r = retained().await;
    let now = r.clock.now_ms();
    r.append_at(&[now; 3]).await;
    let other = TopicPartition::new(r.tp.topic_id, 5);
    assert!(matches!(
        r.log.compact_partition(other, eager()).await,
        Err(Error::NotLeader(_))
    ));
}

/// A small deterministic generator (xorshift64*), so that a failing seed
/// can be replayed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

/// Appends, DeleteRecords and rewrites with random limits, interleaved;
/// after every step each consumer view (from the log start, and from a
/// random offset) equals a model log.
#[tokio::test]
async fn random_appends_cuts_and_rewrites_keep_every_view_equal_to_a_model() {
    for seed in [1u64, 7, 42, 1234, 99_991] {
        let r = retained().await;
        let mut rng = Rng(seed);
        let mut model: BTreeMap<i64, String> = BTreeMap::new();
        let mut next = 0i64;
        let mut rewrites = 0;
        for step in 0..120 {
            match rng.below(10) {
                0..=5 => {
                    let n = 1 + rng.below(3) as usize;
                    let vals: Vec<String> = (0..n).map(|i| format!("s{seed}-{step}-{i}")).collect();
                    let refs: Vec<&str> = vals.iter().map(String::as_str).collect();
                    r.log
                        .append(
                            r.tp,
                            batch(&refs, r.clock.now_ms()),
                            AppendOptions::default(),
                        )
                        .await
                        .unwrap();
                    for v in vals {
                        model.insert(next, v);
                        next += 1;
                    }
                }
                6 => {
                    let start = r.log_start();
                    let to = start + rng.below((next - start + 1) as u64) as i64;
                    r.log.advance_log_start(r.tp, to).await.unwrap();
                    model.retain(|o, _| *o >= to.max(start));
                }
                _ => {
                    let limits = CompactionLimits {
                        max_entry_bytes: 100 + rng.below(600),
                        max_object_bytes: 200 + rng.below(3000),
                        ..eager()
                    };
                    if r.log.compact_partition(r.tp, limits).await.unwrap().is_ok() {
                        rewrites += 1;
                    }
                }
            }
            let want: Vec<(i64, String)> = model.iter().map(|(o, v)| (*o, v.clone())).collect();
            assert_eq!(everything(&r).await, want, "seed {seed} step {step}");
            if let Some((&first, _)) = model.iter().next() {
                let from = first + rng.below((next - first) as u64) as i64;
                let read = r.log.read(r.tp, from, 1 << 20, true).await.unwrap();
                let got = values(&read.records);
                let at = got.iter().position(|(o, _)| *o == from);
                assert!(
                    at.is_some(),
                    "seed {seed} step {step}: offset {from} not read"
                );
                assert_eq!(
                    &got[at.unwrap()],
                    &want[(from - first) as usize],
                    "seed {seed}"
                );
            }
        }
        assert!(rewrites >= 5, "seed {seed}: only {rewrites} rewrites");
        // The index is contiguous from the log start, and its summary agrees.
        let all = entries(&r).await;
        assert!(
            all.windows(2)
                .all(|w| w[1].base_offset == w[0].last_offset + 1)
        );
        let segment_bytes: i64 = r
            .metadata
            .index_segments(r.tp)
            .await
            .unwrap()
            .iter()
            .map(|s| s.bytes)
            .sum();
        assert_eq!(
            segment_bytes,
            all.iter().map(|e| e.length as i64).sum::<i64>()
        );
    }
}

/// Reads `r` from the log start one batch at a time; the records and how
/// many ranged reads the object store served.
async fn batch_by_batch(r: &Retained) -> (Vec<(i64, String)>, u64) {
    let misses = r.log.stats().block_cache_misses;
    let mut out = Vec::new();
    let mut at = r.log_start();
    loop {
        let read = r.log.read(r.tp, at, 1, true).await.unwrap();
        let Some(&(last, _)) = values(&read.records).last() else {
            break;
        };
        out.extend(values(&read.records).into_iter().filter(|(o, _)| *o >= at));
        at = last + 1;
    }
    (out, r.log.stats().block_cache_misses - misses)
}

#[tokio::test]
async fn a_compacted_object_is_read_with_one_ranged_read_ahead() {
    for (read_ahead, expected_reads) in [(16 << 20, 1), (0, 12)] {
        let r = retained_with(LogConfig {
            read_ahead_max_bytes: read_ahead,
            ..LogConfig::default()
        })
        .await;
        let now = r.clock.now_ms();
        let length = r.append_at(&[now; 24]).await as u64;
        let before = everything(&r).await;
        r.log
            .compact_partition(
                r.tp,
                CompactionLimits {
                    max_entry_bytes: 2 * length,
                    ..eager()
                },
            )
            .await
            .unwrap()
            .unwrap();
        assert_eq!(entries(&r).await.len(), 12);
        // The rewritten object is in no cache yet: every byte comes from
        // the store, either in one read that runs ahead or one per entry.
        let (records, reads) = batch_by_batch(&r).await;
        assert_eq!(records, before);
        assert_eq!(reads, expected_reads, "read_ahead_max_bytes={read_ahead}");
    }
}

#[tokio::test]
async fn an_entry_a_fetch_stopped_inside_is_not_read_from_the_store_again() {
    // Twelve batches (a10 and a11 two bytes longer) rewritten into six
    // entries of two; a block cache with room for four entries (a quarter
    // of it: one entry kept), and no read-ahead.
    let batch = retained().await.append_at(&[0]).await as usize;
    let r = retained_with(LogConfig {
        read_ahead_max_bytes: 0,
        block_cache_max_bytes: 8 * batch,
        ..LogConfig::default()
    })
    .await;
    let now = r.clock.now_ms();
    assert_eq!(r.append_at(&[now; 12]).await as usize, batch + 2);
    let batch = batch as u64;
    r.log
        .compact_partition(
            r.tp,
            CompactionLimits {
                max_entry_bytes: 2 * batch + 4,
                ..eager()
            },
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(entries(&r).await.len(), 6);
    // A fetch of one batch stops inside the first entry…
    let first = r.log.read(r.tp, 0, 1, true).await.unwrap();
    assert_eq!(values(&first.records).len(), 2);
    // …another reader reads the other five entries through, more than the
    // cache holds…
    let rest = r.log.read(r.tp, 4, 1 << 20, true).await.unwrap();
    assert_eq!(values(&rest.records).len(), 20);
    // …and the next fetch of the first reader finds its entry still there.
    let misses = r.log.stats().block_cache_misses;
    let next = r.log.read(r.tp, 2, 1, true).await.unwrap();
    assert_eq!(values(&next.records).first().map(|v| v.0), Some(2));
    assert_eq!(r.log.stats().block_cache_misses, misses);
}

#[tokio::test]
async fn a_rewrite_waits_while_produce_holds_most_of_the_flush_buffer() {
    let r = retained().await;
    let now = r.clock.now_ms();
    r.append_at(&[now; 4]).await;
    let half = r.log.inner.config.flush_buffer_max_bytes / 2;
    let held = r
        .log
        .inner
        .buffer_room
        .clone()
        .acquire_many_owned(half as u32 + 1)
        .await
        .unwrap();
    let compaction = r.log.compact_partition(r.tp, eager());
    tokio::pin!(compaction);
    while r.log.stats().compaction_produce_waits == 0 {
        tokio::select! {
            _ = &mut compaction => panic!("rewrote while produce held the buffer"),
            _ = tokio::time::sleep(std::time::Duration::from_millis(1)) => {}
        }
    }
    drop(held);
    let rewrite = compaction.await.unwrap().unwrap();
    assert_eq!(rewrite.old_entries, 4);
}

#[tokio::test]
async fn a_rewrites_requests_are_spaced_at_the_limit() {
    let r = retained().await;
    let now = r.clock.now_ms();
    r.append_at(&[now; 5]).await;
    // Five ranged reads and the object's one part, 50 ms apart at least.
    let slow = CompactionLimits {
        max_requests_per_second: 20,
        ..eager()
    };
    let started = std::time::Instant::now();
    let rewrite = r.log.compact_partition(r.tp, slow).await.unwrap().unwrap();
    assert_eq!(rewrite.old_entries, 5);
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(5 * 50),
        "{:?}",
        started.elapsed()
    );
    assert!(r.log.stats().compaction_paced_ms >= 200);
    // No limit: nothing waits.
    r.append_at(&[now; 2]).await;
    let paced = r.log.stats().compaction_paced_ms;
    let free = CompactionLimits {
        max_requests_per_second: 0,
        ..eager()
    };
    r.log.compact_partition(r.tp, free).await.unwrap().unwrap();
    assert_eq!(r.log.stats().compaction_paced_ms, paced);
}

#[tokio::test]
async fn a_rewrites_bytes_are_spaced_at_the_limit() {
    let r = retained().await;
    let now = r.clock.now_ms();
    let length = r.append_at(&[now; 5]).await as u64;
    // Five runs read, then the object written: the write waits until the
    // five runs' bytes have had their time, a quarter of a second.
    let slow = CompactionLimits {
        max_requests_per_second: 0,
        max_bytes_per_second: 4 * 5 * length,
        ..eager()
    };
    let started = std::time::Instant::now();
    let rewrite = r.log.compact_partition(r.tp, slow).await.unwrap().unwrap();
    assert_eq!(rewrite.old_entries, 5);
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(250),
        "{:?}",
        started.elapsed()
    );
    assert!(r.log.stats().compaction_paced_ms >= 200);
}

#[test]
fn a_rewrite_says_several_parts_exactly_when_the_builder_cuts_more_than_one() {
    use crate::log::compaction::part_count;
    use crate::object_format::{HEADER_BYTES, ObjectBuilder};
    let part = 64;
    // Around the boundary: runs that fill the first part to one byte short,
    // exactly (the builder cuts it, then the footer is a second part), and
    // one byte over; each object's runs appended in two pieces.
    for runs in [
        part - HEADER_BYTES - 1,
        part - HEADER_BYTES,
        part - HEADER_BYTES + 1,
        3 * part,
    ] {
        let mut builder = ObjectBuilder::with_capacity(part, 1);
        let bytes = vec![7u8; runs];
        let (a, b) = bytes.split_at(runs / 2);
        let mut parts = builder.append_in_parts(a, part).len();
        parts += builder.append_in_parts(b, part).len();
        let _last = builder.finish();
        parts += 1;
        let expected = if parts > 1 {
            crate::PartCount::Several
        } else {
            crate::PartCount::Unknown
        };
        assert_eq!(
            part_count(Some(part), runs),
            expected,
            "{runs} bytes of runs: {parts} parts"
        );
    }
    // A store that takes whole objects streams nothing.
    assert_eq!(part_count(None, 1 << 30), crate::PartCount::Unknown);
}

#[test]
fn the_byte_allowance_is_what_produce_leaves_down_to_an_eighth() {
    use crate::log::compaction::byte_allowance;
    assert_eq!(byte_allowance(800, 0), 800);
    assert_eq!(byte_allowance(800, 300), 500);
    assert_eq!(byte_allowance(800, 700), 100);
    assert_eq!(byte_allowance(800, 10_000), 100);
    assert_eq!(byte_allowance(7, 10_000), 1);
    // No limit yields nothing.
    assert_eq!(byte_allowance(0, 10_000), 0);
}

/// How long a rewrite of five one-batch flushes takes under a byte limit
/// of twice their flushed bytes, with `idle` between the flushes and the
/// rewrite; and the five runs' bytes and the flushes' bytes.
async fn paced_rewrite_after(idle: std::time::Duration) -> (std::time::Duration, u64, u64) {
    let r = retained().await;
    let now = r.clock.now_ms();
    let length = r.append_at(&[now; 5]).await as u64;
    let flushed = r.log.stats().flushed_bytes;
    tokio::time::sleep(idle).await;
    let limits = CompactionLimits {
        max_requests_per_second: 0,
        max_bytes_per_second: 2 * flushed,
        ..eager()
    };
    let started = tokio::time::Instant::now();
    let rewrite = r
        .log
        .compact_partition(r.tp, limits)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rewrite.old_entries, 5);
    (started.elapsed(), 5 * length, flushed)
}

#[tokio::test(start_paused = true)]
async fn a_rewrite_yields_its_bytes_to_produce() {
    use std::time::Duration;
    // The object waits until the five runs read have had their time.
    // Produce flushed `flushed` in the last second: the rewrite gets the
    // other half of its limit, `flushed` a second.
    let (took, read, flushed) = paced_rewrite_after(Duration::ZERO).await;
    let yielded = Duration::from_secs_f64(read as f64 / flushed as f64);
    assert!(took >= yielded, "{took:?} < {yielded:?}");
    // A second and more after the flushes, the whole limit.
    let (took, read, flushed) = paced_rewrite_after(Duration::from_millis(1_100)).await;
    let whole = Duration::from_secs_f64(read as f64 / (2 * flushed) as f64);
    assert!(took >= whole && took < yielded, "{took:?}, {whole:?}");
}
