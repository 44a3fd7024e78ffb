//! The write times of appends, cuts and swaps, checked against a model of
//! how ScyllaDB merges cells (last write wins; a tombstone wins a tie): a
//! random history of one partition — flushes, retention cuts in small
//! steps, merging swaps — and, mixed in, late re-applies of earlier flushes
//! (a claimer settling a journal, a frozen leader's last apply) must leave
//! exactly the rows, summaries, references and log start that applying the
//! history in order leaves.

use std::collections::{BTreeMap, HashMap, HashSet};

use proptest::prelude::*;

use super::*;
use crate::model::{BrokerSession, FlushCommit, TopicId};
use crate::scylla::apply::plan_apply;

fn tp() -> TopicPartition {
    TopicPartition::new(TopicId(crate::model::Uuid::from_u128(7)), 0)
}

/// One cell (or a row written whole): its write time and value, `None`
/// for a tombstone.
type Cell<T> = (i64, Option<T>);

/// Merges a write into a cell as ScyllaDB does. Two different values at
/// one write time would be merged column by column into a row nobody
/// wrote: that is a failure of the write times, not a tie to break.
fn merge<T: PartialEq + std::fmt::Debug>(cell: &mut Option<Cell<T>>, at: i64, value: Option<T>) {
    match cell {
        Some((t, _)) if *t > at => {}
        Some((t, old)) if *t == at => match (&old, &value) {
            (None, _) => {}
            (Some(_), None) => *old = None,
            (Some(a), Some(b)) => assert_eq!(a, b, "two different writes at write time {at}"),
        },
        _ => *cell = Some((at, value)),
    }
}

/// The cells of one partition's index.
#[derive(Default)]
struct Cells {
    rows: HashMap<i64, Option<Cell<IndexEntry>>>,
    segment_tombstones: HashMap<i64, i64>,
    summaries: HashMap<i64, Option<Cell<IndexSegment>>>,
    references: HashMap<(String, i64), Option<Cell<()>>>,
    log_start: Option<Cell<i64>>,
}

impl Cells {
    fn apply(&mut self, m: &Mutation) {
        match m {
            Mutation::LogStart { offset, .. } => merge(&mut self.log_start, *offset, Some(*offset)),
            Mutation::DropSegment { segment, at, .. } => {
                let t = self.segment_tombstones.entry(*segment).or_insert(i64::MIN);
                *t = (*t).max(*at);
                merge(self.summaries.entry(*segment).or_default(), *at, None);
            }
            Mutation::DeleteEntry { entry, at } => {
                merge(self.rows.entry(entry.base_offset).or_default(), *at, None);
                self.reference(entry, *at, None);
            }
            Mutation::DeleteReference { entry, at } => self.reference(entry, *at, None),
            Mutation::WriteEntry { entry, at } => {
                merge(
                    self.rows.entry(entry.base_offset).or_default(),
                    *at,
                    Some(entry.clone()),
                );
                self.reference(entry, *at, Some(()));
            }
            Mutation::WriteSummary { summary, at } => merge(
                self.summaries.entry(summary.segment).or_default(),
                *at,
                Some(*summary),
            ),
        }
    }

    fn reference(&mut self, e: &IndexEntry, at: i64, value: Option<()>) {
        let key = (e.object_key.clone(), e.base_offset);
        merge(self.references.entry(key).or_default(), at, value);
    }

    /// What a read sees: a row is hidden by its segment's tombstone when
    /// it is not later.
    fn rows(&self) -> BTreeMap<i64, IndexEntry> {
        self.rows
            .iter()
            .filter_map(|(&base, cell)| {
                let (at, value) = cell.as_ref()?;
                let hidden = self
                    .segment_tombstones
                    .get(&index_segment(base))
                    .is_some_and(|&t| *at <= t);
                if hidden {
                    return None;
                }
                Some((base, value.clone()?))
            })
            .collect()
    }

    fn summaries(&self) -> BTreeMap<i64, IndexSegment> {
        self.summaries
            .iter()
            .filter_map(|(&s, cell)| Some((s, cell.as_ref()?.1?)))
            .collect()
    }

    fn references(&self) -> HashSet<(String, i64)> {
        self.references
            .iter()
            .filter(|(_, cell)| cell.as_ref().is_some_and(|(_, v)| v.is_some()))
            .map(|(k, _)| k.clone())
            .collect()
    }
}

/// The partition as applying its history in order leaves it.
#[derive(Default)]
struct Model {
    rows: BTreeMap<i64, IndexEntry>,
    log_start: i64,
    next_offset: i64,
}

impl Model {
    fn summaries(&self) -> BTreeMap<i64, IndexSegment> {
        let mut out: BTreeMap<i64, IndexSegment> = BTreeMap::new();
        for e in self.rows.values() {
            let segment = index_segment(e.base_offset);
            let s = out.entry(segment).or_insert(IndexSegment {
                topic_partition: tp(),
                segment,
                base_offset: e.base_offset,
                last_offset: e.last_offset,
                entries: 0,
                bytes: 0,
                max_timestamp: i64::MIN,
            });
            s.last_offset = e.last_offset;
            s.entries += 1;
            s.bytes += e.length as i64;
            s.max_timestamp = s.max_timestamp.max(e.max_timestamp);
        }
        out
    }

    fn rows_of(&self, segment: i64) -> Vec<IndexEntry> {
        self.rows
            .values()
            .filter(|e| index_segment(e.base_offset) == segment)
            .cloned()
            .collect()
    }
}

#[derive(Clone, Debug)]
enum Op {
    /// A flush of entries spanning these many offsets each.
    Flush(Vec<(i64, u64, i64)>),
    /// A cut to this fraction (per mille) of the way to the log end.
    Cut(u16),
    /// A swap of the run at this index, this long, into groups this long.
    Swap(prop::sample::Index, usize, usize),
    /// A late re-apply of the flush at this index.
    Replay(prop::sample::Index),
}

fn op() -> impl Strategy<Value = Op> {
    let entry = (1i64..40_000, 1u64..1_000, -5i64..100);
    prop_oneof![
        4 => prop::collection::vec(entry, 1..4).prop_map(Op::Flush),
        1 => (1u16..=1000).prop_map(Op::Cut),
        3 => (any::<prop::sample::Index>(), 2usize..6, 2usize..4)
            .prop_map(|(at, len, group)| Op::Swap(at, len, group)),
        2 => any::<prop::sample::Index>().prop_map(Op::Replay),
    ]
}

fn flush(model: &mut Model, spans: &[(i64, u64, i64)], n: usize) -> FlushCommit {
    let key = format!("flush-{n}");
    let mut position = 0;
    let entries: Vec<IndexEntry> = spans
        .iter()
        .map(|&(span, length, ts)| {
            let e = IndexEntry {
                topic_partition: tp(),
                base_offset: model.next_offset,
                last_offset: model.next_offset + span - 1,
                object_key: key.clone(),
                position,
                length,
                max_timestamp: ts,
            };
            position += length;
            model.next_offset += span;
            model.rows.insert(e.base_offset, e.clone());
            e
        })
        .collect();
    FlushCommit {
        session: BrokerSession {
            node_id: 1,
            incarnation: 1,
        },
        object_key: key,
        object_size: position,
        leader_epochs: vec![1; entries.len()],
        entries,
        producers: Vec::new(),
    }
}

/// The index mutations of applying `commit` over what `model` holds (the
/// leader reads its summaries from the store).
fn apply_flush(model: &Model, commit: &FlushCommit) -> Vec<Mutation> {
    let mut summaries = HashMap::from([(tp(), model.summaries())]);
    plan_apply(commit, &mut summaries)
        .expect("plan")
        .index_mutations
}

/// The swap an `Op::Swap` asks for, if the partition has such a run in
/// one segment at or after the log start.
fn swap_of(
    model: &Model,
    at: prop::sample::Index,
    len: usize,
    group: usize,
    n: usize,
) -> Option<IndexSwap> {
    let rows: Vec<&IndexEntry> = model.rows.values().collect();
    if rows.len() < 2 {
        return None;
    }
    let first = at.index(rows.len());
    let segment = index_segment(rows[first].base_offset);
    let old: Vec<IndexEntry> = rows[first..]
        .iter()
        .take(len)
        .take_while(|e| index_segment(e.base_offset) == segment)
        .map(|e| (*e).clone())
        .collect();
    if old.len() < 2 || old[0].base_offset < model.log_start {
        return None;
    }
    let key = format!("compacted-{n}");
    let mut position = 0;
    let new: Vec<IndexEntry> = old
        .chunks(group)
        .map(|run| {
            let e = IndexEntry {
                topic_partition: tp(),
                base_offset: run[0].base_offset,
                last_offset: run[run.len() - 1].last_offset,
                object_key: key.clone(),
                position,
                length: run.iter().map(|e| e.length).sum(),
                max_timestamp: run.iter().map(|e| e.max_timestamp).max().expect("run"),
            };
            position += e.length;
            e
        })
        .collect();
    Some(IndexSwap {
        session: BrokerSession {
            node_id: 1,
            incarnation: 1,
        },
        topic_partition: tp(),
        leader_epoch: 1,
        old,
        new,
        object_key: key,
        object_size: position,
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn late_and_repeated_writes_leave_the_state_of_the_history_in_order(
        ops in prop::collection::vec(op(), 1..40),
        max_rows in 1usize..6,
    ) {
        let mut model = Model::default();
        let mut writes: Vec<Mutation> = Vec::new();
        let mut flushes: Vec<FlushCommit> = Vec::new();
        for (n, op) in ops.into_iter().enumerate() {
            match op {
                Op::Flush(spans) => {
                    let before = Model {
                        rows: model.rows.clone(),
                        ..Model::default()
                    };
                    let commit = flush(&mut model, &spans, n);
                    writes.extend(apply_flush(&before, &commit));
                    flushes.push(commit);
                }
                Op::Cut(per_mille) => {
                    let span = model.next_offset - model.log_start;
                    let offset = model.log_start + span * i64::from(per_mille) / 1000;
                    // In steps, as the store goes.
                    while offset > model.log_start {
                        let segments: Vec<IndexSegment> = model.summaries().into_values().collect();
                        let plan = plan_cut(
                            tp(),
                            offset,
                            &segments,
                            |i| model.rows_of(segments[i].segment),
                            max_rows,
                        )
                        .expect("cut");
                        prop_assert!(plan.log_start > model.log_start, "a cut step made no progress");
                        model.log_start = plan.log_start;
                        model.rows.retain(|_, e| e.last_offset >= plan.log_start);
                        writes.extend(plan.mutations);
                    }
                }
                Op::Swap(at, len, group) => {
                    let Some(swap) = swap_of(&model, at, len, group, n) else { continue };
                    crate::commit_rules::check_index_swap(&swap).expect("a valid swap");
                    let segment = index_segment(swap.old[0].base_offset);
                    // In parts of a few old entries, as the store goes.
                    for part in split_swap(&swap, max_rows) {
                        let summary = model.summaries()[&segment];
                        let mutations = plan_swap(&part, &summary).expect("a part merges");
                        for old in &part.old {
                            model.rows.remove(&old.base_offset);
                        }
                        for new in &part.new {
                            model.rows.insert(new.base_offset, new.clone());
                        }
                        writes.extend(mutations);
                    }
                }
                Op::Replay(which) => {
                    if flushes.is_empty() {
                        continue;
                    }
                    let commit = &flushes[which.index(flushes.len())];
                    writes.extend(apply_flush(&model, commit));
                }
            }
        }
        // Every write once more, newest first: order does not matter.
        let mut cells = Cells::default();
        for m in writes.iter().rev().chain(writes.iter()) {
            cells.apply(m);
        }
        prop_assert_eq!(cells.rows(), model.rows.clone());
        prop_assert_eq!(cells.summaries(), model.summaries());
        let live: HashSet<(String, i64)> = model
            .rows
            .values()
            .map(|e| (e.object_key.clone(), e.base_offset))
            .collect();
        prop_assert_eq!(cells.references(), live);
        let log_start = cells.log_start.and_then(|(_, v)| v).unwrap_or(0);
        prop_assert_eq!(log_start, model.log_start);
    }
}

/// Where each old entry's bytes are in the swap's object, by base offset.
fn placement(old: &[IndexEntry], new: &[IndexEntry]) -> BTreeMap<i64, (i64, u64, u64)> {
    let mut out = BTreeMap::new();
    let mut old = old.iter().peekable();
    for n in new {
        let mut position = n.position;
        while let Some(o) = old.next_if(|o| o.last_offset <= n.last_offset) {
            out.insert(o.base_offset, (o.last_offset, position, o.length));
            position += o.length;
        }
    }
    out
}

proptest! {
    #[test]
    fn a_swap_split_in_parts_places_every_byte_where_the_whole_swap_does(
        runs in prop::collection::vec((1i64..50, 1u64..100, 0i64..100), 2..60),
        group in prop::collection::vec(1usize..9, 1..60),
        max_old in 1usize..12,
    ) {
        let mut base = 0;
        let old: Vec<IndexEntry> = runs
            .iter()
            .map(|&(span, length, ts)| {
                let e = IndexEntry {
                    topic_partition: tp(),
                    base_offset: base,
                    last_offset: base + span - 1,
                    object_key: format!("o{base}"),
                    position: 3,
                    length,
                    max_timestamp: ts,
                };
                base += span;
                e
            })
            .collect();
        let mut new = Vec::new();
        let (mut at, mut position, mut sizes) = (0, 0, group.iter().cycle());
        while at < old.len() {
            let run = &old[at..(at + sizes.next().expect("cycle")).min(old.len())];
            let length: u64 = run.iter().map(|e| e.length).sum();
            new.push(IndexEntry {
                topic_partition: tp(),
                base_offset: run[0].base_offset,
                last_offset: run[run.len() - 1].last_offset,
                object_key: "c".into(),
                position,
                length,
                max_timestamp: run.iter().map(|e| e.max_timestamp).max().expect("run"),
            });
            position += length;
            at += run.len();
        }
        let swap = IndexSwap {
            session: BrokerSession { node_id: 1, incarnation: 1 },
            topic_partition: tp(),
            leader_epoch: 1,
            old: old.clone(),
            new: new.clone(),
            object_key: "c".into(),
            object_size: position,
        };
        let parts = split_swap(&swap, max_old);
        if new.len() == old.len() {
            prop_assert!(parts.is_empty(), "nothing merges, yet parts");
            return Ok(());
        }
        let whole = placement(&old, &new);
        let mut split = BTreeMap::new();
        let mut olds = Vec::new();
        for part in &parts {
            crate::commit_rules::check_index_swap(part).expect("each part is a valid swap");
            prop_assert!(part.new.len() < part.old.len(), "a part merges nothing");
            split.extend(placement(&part.old, &part.new));
            olds.extend(part.old.iter().cloned());
        }
        prop_assert_eq!(olds, old);
        prop_assert_eq!(split, whole);
    }
}

fn entry(base: i64, last: i64) -> IndexEntry {
    IndexEntry {
        topic_partition: tp(),
        base_offset: base,
        last_offset: last,
        object_key: format!("o{base}"),
        position: 0,
        length: 10,
        max_timestamp: last,
    }
}

fn summary_of(rows: &[IndexEntry]) -> IndexSegment {
    IndexSegment {
        topic_partition: tp(),
        segment: index_segment(rows[0].base_offset),
        base_offset: rows[0].base_offset,
        last_offset: rows[rows.len() - 1].last_offset,
        entries: rows.len() as i64,
        bytes: 10 * rows.len() as i64,
        max_timestamp: rows[rows.len() - 1].max_timestamp,
    }
}

#[test]
fn a_long_cut_stops_at_an_entry_boundary_within_its_row_budget() {
    let rows: Vec<IndexEntry> = (0..10).map(|i| entry(i * 10, i * 10 + 9)).collect();
    let segments = [summary_of(&rows)];
    let plan = plan_cut(tp(), 95, &segments, |_| rows.clone(), 4).expect("cut");
    assert_eq!(
        plan.log_start, 40,
        "four rows deleted, the log start at the fifth"
    );
    let deleted = plan
        .mutations
        .iter()
        .filter(|m| matches!(m, Mutation::DeleteEntry { .. }))
        .count();
    assert_eq!(deleted, 4);
    assert_eq!(
        plan.mutations.last(),
        Some(&Mutation::LogStart {
            tp: tp(),
            offset: 40
        })
    );
    // Within budget: to the offset asked, inside the entry it cuts.
    let plan = plan_cut(tp(), 95, &segments, |_| rows.clone(), 100).expect("cut");
    assert_eq!(plan.log_start, 95);
}

#[test]
fn a_swap_that_merges_nothing_is_refused() {
    let old = vec![entry(0, 9), entry(10, 19)];
    let new = vec![
        IndexEntry {
            object_key: "c".into(),
            ..entry(0, 9)
        },
        IndexEntry {
            object_key: "c".into(),
            ..entry(10, 19)
        },
    ];
    let swap = IndexSwap {
        session: BrokerSession {
            node_id: 1,
            incarnation: 1,
        },
        topic_partition: tp(),
        leader_epoch: 1,
        old: old.clone(),
        new,
        object_key: "c".into(),
        object_size: 20,
    };
    assert!(matches!(
        plan_swap(&swap, &summary_of(&old)),
        Err(Error::SwapRefused { .. })
    ));
}

#[test]
fn write_times_refuse_offsets_they_cannot_order() {
    assert!(append_time(MAX_TIMED_OFFSET).is_ok());
    assert!(append_time(MAX_TIMED_OFFSET + 1).is_err());
    assert!(append_time(-1).is_err());
    // An append after a segment's last change is later; a cut or merge at
    // the same last offset is later than the append that made it.
    let last = 1_000;
    assert!(segment_time(last, 5).expect("t") < append_time(last + 1).expect("t"));
    assert!(segment_time(last, 4).expect("t") > segment_time(last, 5).expect("t"));
    assert!(drop_time(last).expect("t") > segment_time(last, 1).expect("t"));
    assert!(drop_time(last).expect("t") < append_time(last + 1).expect("t"));
}
