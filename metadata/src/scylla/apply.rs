//! The statements one flush commit costs on ScyllaDB, built as pure
//! functions so that the store runs them and the cost benchmark
//! (`examples/scylla_commit_cost.rs`) counts them from the same code:
//!
//! - `journal_batch`: the commit point, one conditional batch on the
//!   session's partition — advance the head, append the entry, trim the
//!   entries already applied;
//! - `plan_apply`: what applying the entry writes, per partition: its index
//!   entries, object references and segment summaries, its next offset and
//!   its producers' states, every one a max-register or an upsert of the
//!   same values.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::cql::{self, Statement};
use super::decide::JournalAppend;
use super::exec::{Values, binds};
use super::rewrite::{self, Mutation, append_time, segment_time};
use super::store::OPEN;
use crate::commit_rules::to_i64;
use crate::model::{FlushCommit, IndexSegment, ProducerBatch, TopicPartition, index_segment};
use crate::store::Result;

/// The writes of one apply, and what each partition comes to: (partition,
/// next offset, its last segment's summary).
pub struct ApplyPlan {
    pub writes: Vec<(&'static Statement, Values)>,
    /// The index rows and summaries among `writes`, as mutations.
    pub index_mutations: Vec<Mutation>,
    pub updates: Vec<(TopicPartition, i64, Option<IndexSegment>)>,
}

/// The commit's partitions, each once, in the order of their first entry.
pub fn partitions_in_order(commit: &FlushCommit) -> Vec<TopicPartition> {
    let mut seen = HashSet::new();
    commit
        .entries
        .iter()
        .map(|e| e.topic_partition)
        .filter(|tp| seen.insert(*tp))
        .collect()
}

/// The conditional batch appending `append` to its session's journal,
/// whose head is `head`, deleting the applied entries `untrimmed`.
pub fn journal_batch(
    append: &JournalAppend,
    head: i64,
    entry: Vec<u8>,
    untrimmed: &[i64],
) -> Vec<(&'static Statement, Values)> {
    let session = append.session;
    let mut batch = vec![
        (
            &cql::JOURNAL_ADVANCE,
            binds![append.seq, session.node_id, session.incarnation, OPEN, head],
        ),
        (
            &cql::JOURNAL_APPEND,
            binds![
                session.node_id,
                session.incarnation,
                append.seq,
                entry,
                append.token.as_str()
            ],
        ),
    ];
    for &seq in untrimmed {
        batch.push((
            &cql::JOURNAL_TRIM,
            binds![session.node_id, session.incarnation, seq],
        ));
    }
    batch
}

/// The writes applying `commit`. `summaries` holds, per partition, the
/// segment summaries known before it (all of them, or the last one; none
/// for a new partition) and is brought up to date. A summary already past
/// an entry means the entry was applied before: its summary is not
/// counted twice.
pub fn plan_apply(
    commit: &FlushCommit,
    summaries: &mut HashMap<TopicPartition, BTreeMap<i64, IndexSegment>>,
) -> Result<ApplyPlan> {
    let key = &commit.object_key;
    let mut writes: Vec<(&'static Statement, Values)> = Vec::new();
    let mut index_mutations = Vec::new();
    let mut updates = Vec::new();
    let mut entries_of: HashMap<TopicPartition, Vec<usize>> = HashMap::new();
    for (i, e) in commit.entries.iter().enumerate() {
        entries_of.entry(e.topic_partition).or_default().push(i);
    }
    for tp in partitions_in_order(commit) {
        let known = summaries.entry(tp).or_default();
        let mut last = -1;
        for &i in &entries_of[&tp] {
            let e = &commit.entries[i];
            let segment = index_segment(e.base_offset);
            let length = to_i64(e.length, "length", key)?;
            // Write times order these rows before any rewrite of them
            // (`rewrite`'s module documentation).
            let mut index = vec![Mutation::WriteEntry {
                entry: e.clone(),
                at: append_time(e.last_offset)?,
            }];
            let summary = match known.get(&segment) {
                Some(s) if s.last_offset >= e.last_offset => None,
                Some(s) => Some(IndexSegment {
                    last_offset: e.last_offset,
                    entries: s.entries + 1,
                    bytes: s.bytes + length,
                    max_timestamp: s.max_timestamp.max(e.max_timestamp),
                    ..*s
                }),
                None => Some(IndexSegment {
                    topic_partition: tp,
                    segment,
                    base_offset: e.base_offset,
                    last_offset: e.last_offset,
                    entries: 1,
                    bytes: length,
                    max_timestamp: e.max_timestamp,
                }),
            };
            if let Some(s) = summary {
                index.push(Mutation::WriteSummary {
                    summary: s,
                    at: segment_time(s.last_offset, s.entries)?,
                });
                known.insert(segment, s);
            }
            writes.extend(rewrite::statements(&index)?);
            index_mutations.extend(index);
            last = e.last_offset;
        }
        writes.push((
            &cql::NEXT_OFFSET_WRITE,
            binds![last + 1, last + 1, tp.topic_id, tp.partition],
        ));
        for p in commit.producers.iter().filter(|p| p.topic_partition == tp) {
            writes.push((
                &cql::PRODUCER_STATE_WRITE,
                binds![
                    last,
                    p.producer_epoch,
                    p.last_write_ms,
                    ProducerBatch::encode_batches(&p.batches),
                    tp.topic_id,
                    tp.partition,
                    p.producer_id
                ],
            ));
        }
        updates.push((tp, last + 1, known.values().next_back().copied()));
    }
    Ok(ApplyPlan {
        writes,
        index_mutations,
        updates,
    })
}

/// Statements one flush costs once its partitions are led and their
/// summaries cached (the steady state), by statement name: the journal
/// batch (one LWT), the reads before it, and the apply's plain writes.
pub fn statements_per_flush(commit: &FlushCommit) -> Result<BTreeMap<&'static str, usize>> {
    let mut counts = BTreeMap::new();
    // The check before the append reads the cluster version (the topic
    // list only when it moved since the last flush).
    *counts.entry(cql::CLUSTER_VERSION_READ.name).or_default() += 1;
    let append = JournalAppend {
        session: commit.session,
        seq: 2,
        token: commit.object_key.clone(),
    };
    for (statement, _) in journal_batch(&append, 1, Vec::new(), &[1]) {
        *counts.entry(statement.name).or_default() += 1;
    }
    let mut summaries = HashMap::new();
    for tp in partitions_in_order(commit) {
        let open = IndexSegment {
            topic_partition: tp,
            segment: 0,
            base_offset: 0,
            last_offset: -1,
            entries: 0,
            bytes: 0,
            max_timestamp: -1,
        };
        summaries.insert(tp, BTreeMap::from([(0, open)]));
    }
    for (statement, _) in plan_apply(commit, &mut summaries)?.writes {
        *counts.entry(statement.name).or_default() += 1;
    }
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{BrokerSession, IndexEntry, ProducerState, TopicId};

    fn commit(partitions: i32, producers: i32) -> FlushCommit {
        let topic_id = TopicId::new_random();
        let entries: Vec<IndexEntry> = (0..partitions)
            .map(|p| IndexEntry {
                topic_partition: TopicPartition::new(topic_id, p),
                base_offset: 100,
                last_offset: 109,
                object_key: "o-1".into(),
                position: 1_000 * p as u64,
                length: 1_000,
                max_timestamp: 7,
            })
            .collect();
        FlushCommit {
            session: BrokerSession {
                node_id: 1,
                incarnation: 1,
            },
            object_key: "o-1".into(),
            object_size: 1_000 * partitions as u64,
            leader_epochs: vec![1; entries.len()],
            producers: (0..producers)
                .map(|p| ProducerState {
                    topic_partition: TopicPartition::new(topic_id, p),
                    producer_id: 9,
                    producer_epoch: 0,
                    last_write_ms: 5,
                    batches: Vec::new(),
                })
                .collect(),
            entries,
        }
    }

    #[test]
    fn a_flush_costs_one_conditional_batch_and_four_writes_per_partition() {
        for partitions in [1, 10, 1_000] {
            let counts = statements_per_flush(&commit(partitions, 3)).expect("plan");
            let n = partitions as usize;
            assert_eq!(counts[cql::JOURNAL_ADVANCE.name], 1);
            assert_eq!(counts[cql::JOURNAL_APPEND.name], 1);
            assert_eq!(counts[cql::JOURNAL_TRIM.name], 1);
            assert_eq!(counts[cql::CLUSTER_VERSION_READ.name], 1);
            for write in [
                &cql::INDEX_ENTRY_WRITE,
                &cql::OBJECT_REFERENCE_WRITE,
                &cql::INDEX_SEGMENT_WRITE,
                &cql::NEXT_OFFSET_WRITE,
            ] {
                assert_eq!(counts[write.name], n, "{}", write.name);
            }
            assert_eq!(counts[cql::PRODUCER_STATE_WRITE.name], 3.min(n));
        }
    }

    #[test]
    fn applying_twice_writes_the_same_rows_and_counts_no_summary_twice() {
        let c = commit(2, 1);
        let mut summaries = HashMap::new();
        let first = plan_apply(&c, &mut summaries).expect("first");
        let segment = |plan: &ApplyPlan| {
            plan.writes
                .iter()
                .filter(|(s, _)| s.name == cql::INDEX_SEGMENT_WRITE.name)
                .count()
        };
        assert_eq!(segment(&first), 2);
        let again = plan_apply(&c, &mut summaries).expect("again");
        assert_eq!(segment(&again), 0, "a second apply re-counted a summary");
        assert_eq!(again.writes.len(), first.writes.len() - 2);
        for (tp, next, last) in again.updates {
            assert_eq!(next, 110, "{tp}");
            let last = last.expect("summary");
            assert_eq!(
                (last.entries, last.bytes, last.last_offset),
                (1, 1_000, 109)
            );
        }
    }
}
