//! The log's metadata on ScyllaDB: flush commits through the session
//! journal (one conditional batch per flush, docs/design/0008), their
//! application with plain max-register writes, the offset index and its
//! segment summaries, object references for garbage collection, producer
//! states and producer-id blocks.
//!
//! A commit runs in a task of its own, under its session's journal lock, so
//! a caller that stops waiting (the log's metadata timeout) never leaves an
//! append half-decided: the task settles it, and the next commit, claim or
//! release of the session waits for it.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use futures_util::stream::FuturesUnordered;
use futures_util::{StreamExt, TryStreamExt, stream};

use super::apply::{self, ApplyPlan};
use super::cql::{self, Statement};
use super::decide::{self, AppendOutcome, AppendStep, JournalAppend, LwtAnswer};
use super::entry::{self, Record};
use super::exec::{Lwt, Values, binds};
use super::rewrite;
use super::store::{Journal, Led, META_PRODUCER_IDS, ScyllaStore, partition_exists};
use super::topics::leader_of;
use crate::commit_rules::{check_flush_commit, check_index_swap};
use crate::model::{
    FlushCommit, IndexEntry, IndexSegment, ProducerBatch, ProducerState, TopicPartition, Uuid,
};
use crate::store::{Error, LogStore, Result};

/// Plain statements of one apply (or one read fan-out) in flight at once.
const CONCURRENCY: usize = 32;

/// Retries of a committed entry's apply before the commit is reported
/// uncertain.
const APPLY_RETRIES: u32 = 3;

type EntryColumns = (i64, i64, String, i64, i64, i64);
type SegmentColumns = (
    i64,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
);
type ProducerColumns = (i64, Option<i16>, Option<i64>, Option<Vec<u8>>, Option<i64>);

fn entry_of(
    tp: TopicPartition,
    (base, last, key, position, size, max_ts): EntryColumns,
) -> Result<IndexEntry> {
    let unsigned = |v: i64, what: &str| {
        u64::try_from(v)
            .map_err(|_| Error::Backend(format!("index entry of {tp} at {base}: negative {what}")))
    };
    Ok(IndexEntry {
        topic_partition: tp,
        base_offset: base,
        last_offset: last,
        object_key: key,
        position: unsigned(position, "position")?,
        length: unsigned(size, "size")?,
        max_timestamp: max_ts,
    })
}

/// Runs `writes` with bounded concurrency; the first failure fails all.
async fn run_writes(store: &ScyllaStore, writes: Vec<(&'static Statement, Values)>) -> Result<()> {
    let mut pending = FuturesUnordered::new();
    let mut writes = writes.into_iter();
    loop {
        while pending.len() < CONCURRENCY {
            let Some((statement, values)) = writes.next() else {
                break;
            };
            pending.push(store.cql().write(statement, values));
        }
        match pending.next().await {
            Some(done) => done?,
            None => return Ok(()),
        }
    }
}

impl ScyllaStore {
    /// A partition's segment summaries, in segment order.
    pub(super) async fn segments(&self, tp: TopicPartition) -> Result<Vec<IndexSegment>> {
        let rows: Vec<SegmentColumns> = self
            .cql()
            .read(&cql::INDEX_SEGMENTS_READ, binds![tp.topic_id, tp.partition])
            .await?;
        let mut segments: Vec<IndexSegment> = rows
            .into_iter()
            .filter_map(|(segment, base, last, entries, bytes, max_ts)| {
                Some(IndexSegment {
                    topic_partition: tp,
                    segment,
                    base_offset: base?,
                    last_offset: last?,
                    entries: entries.unwrap_or(0),
                    bytes: bytes.unwrap_or(0),
                    max_timestamp: max_ts.unwrap_or(-1),
                })
            })
            .collect();
        segments.sort_by_key(|s| s.segment);
        Ok(segments)
    }

    pub(super) async fn segment_entries(
        &self,
        tp: TopicPartition,
        segment: i64,
        from_base_offset: i64,
        limit: i32,
    ) -> Result<Vec<IndexEntry>> {
        let rows: Vec<EntryColumns> = self
            .cql()
            .read(
                &cql::INDEX_ENTRIES_READ,
                binds![tp.topic_id, tp.partition, segment, from_base_offset, limit],
            )
            .await?;
        rows.into_iter().map(|row| entry_of(tp, row)).collect()
    }

    /// Applies one committed journal entry with plain writes
    /// (`apply::plan_apply`). Each is a max-register or an upsert of the
    /// same values, so applying an entry twice, or late, changes nothing.
    /// `led` (the writer's own cache) gives the segment summaries when it
    /// has them, and is updated once every write succeeded.
    pub(super) async fn apply_commit(
        &self,
        commit: &FlushCommit,
        led: Option<&mut HashMap<TopicPartition, Led>>,
    ) -> Result<()> {
        let mut summaries: HashMap<TopicPartition, BTreeMap<i64, IndexSegment>> = HashMap::new();
        for tp in apply::partitions_in_order(commit) {
            let cached = led
                .as_deref()
                .and_then(|l| l.get(&tp))
                .and_then(|l| l.last_segment);
            let known = match cached {
                Some(s) => [(s.segment, s)].into(),
                None => self
                    .segments(tp)
                    .await?
                    .into_iter()
                    .map(|s| (s.segment, s))
                    .collect(),
            };
            summaries.insert(tp, known);
        }
        let ApplyPlan {
            writes, updates, ..
        } = apply::plan_apply(commit, &mut summaries)?;
        run_writes(self, writes).await?;
        if let Some(led) = led {
            for (tp, next_offset, last_segment) in updates {
                if let Some(l) = led.get_mut(&tp) {
                    l.next_offset = next_offset;
                    l.last_segment = last_segment;
                }
            }
        }
        Ok(())
    }

    /// Applies one committed journal record: a flush commit, or an index
    /// rewrite's mutations (each at its own write time, so a second or late
    /// apply changes nothing). A rewrite leaves the writer's cached segment
    /// summaries of its partitions to be read again.
    pub(super) async fn apply_record(
        &self,
        record: &Record,
        led: Option<&mut HashMap<TopicPartition, Led>>,
    ) -> Result<()> {
        match record {
            Record::Commit(commit) => self.apply_commit(commit, led).await,
            Record::Rewrite(mutations) => {
                run_writes(self, rewrite::statements(mutations)?).await?;
                if let Some(led) = led {
                    for tp in rewrite::partitions_of(mutations) {
                        if let Some(l) = led.get_mut(&tp) {
                            l.last_segment = None;
                        }
                    }
                }
                Ok(())
            }
        }
    }

    /// `settle`, forgetting the journal when the session has ended.
    pub(super) async fn settle_or_forget(
        &self,
        journal: &mut Journal,
        session: crate::model::BrokerSession,
    ) -> Result<()> {
        let settled = self.settle(journal, session).await;
        if matches!(settled, Err(Error::SessionFenced(_))) {
            self.forget_journal(session);
        }
        settled
    }

    /// Brings `journal` up to date with the store: learns the head if it is
    /// unknown, and applies every committed entry not applied yet (an
    /// append whose apply failed, or one settled only now). `SessionFenced`
    /// when the session has ended.
    pub(super) async fn settle(
        &self,
        journal: &mut Journal,
        session: crate::model::BrokerSession,
    ) -> Result<()> {
        if journal.head.is_some_and(|head| journal.applied >= head) {
            return Ok(());
        }
        let info = match self.session_row(session.node_id, true).await? {
            Some(info)
                if info.row.incarnation == session.incarnation
                    && info.row.status == crate::model::SessionStatus::Open =>
            {
                info
            }
            _ => return Err(Error::SessionFenced(session)),
        };
        let head = info.row.head;
        if journal.applied < head {
            let rows: Vec<(i64, Option<Vec<u8>>, Option<String>)> = self
                .cql()
                .read(
                    &cql::JOURNAL_READ,
                    binds![session.node_id, session.incarnation, journal.applied],
                )
                .await?;
            for (seq, bytes, _) in rows {
                let Some(bytes) = bytes else { continue };
                let record = entry::decode(&bytes, session).map_err(|e| {
                    Error::Backend(format!("journal entry {seq} of {session}: {e}"))
                })?;
                self.apply_record(&record, Some(&mut journal.led)).await?;
                journal.untrimmed.push(seq);
            }
            journal.applied = head;
        }
        journal.head = Some(head);
        Ok(())
    }

    /// `tp` as `session` leads it at `epoch` (read from the store when this
    /// process did not claim it); `Fenced` otherwise. The caller has checked
    /// that the partition exists.
    pub(super) async fn check_leads<'j>(
        &self,
        journal: &'j mut Journal,
        session: crate::model::BrokerSession,
        tp: TopicPartition,
        epoch: i32,
    ) -> Result<&'j Led> {
        if let Entry::Vacant(slot) = journal.led.entry(tp) {
            // Not claimed through this process: read what the store says.
            let leaders = self.leader_rows(tp.topic_id).await?;
            let (current, leader) = leaders
                .get(&tp.partition)
                .map(|&(_, epoch, node, inc)| (epoch.unwrap_or(0), leader_of(node, inc)))
                .unwrap_or((0, None));
            if current != epoch || leader != Some(session) {
                return Err(Error::Fenced {
                    topic_partition: tp,
                    expected: epoch,
                    current,
                });
            }
            let offsets = self.offset_rows(tp.topic_id).await?;
            let next_offset = offsets.get(&tp.partition).map_or(0, |&(_, next)| next);
            slot.insert(Led {
                leader_epoch: current,
                next_offset,
                last_segment: None,
            });
        }
        let led = &journal.led[&tp];
        if led.leader_epoch != epoch {
            return Err(Error::Fenced {
                topic_partition: tp,
                expected: epoch,
                current: led.leader_epoch,
            });
        }
        Ok(led)
    }

    /// The checks a commit passes before its append: every partition led
    /// by the session at the entry's epoch, starting at its next offset,
    /// its topic still there.
    async fn check_against_store(&self, commit: &FlushCommit, journal: &mut Journal) -> Result<()> {
        let session = commit.session;
        let topics = self.topic_map_cached().await?;
        let mut expected_next: HashMap<TopicPartition, i64> = HashMap::new();
        for (e, &epoch) in commit.entries.iter().zip(&commit.leader_epochs) {
            let tp = e.topic_partition;
            if !partition_exists(&topics, tp) {
                return Err(Error::UnknownTopic(format!("topic_partition={tp}")));
            }
            let led = self.check_leads(journal, session, tp, epoch).await?;
            let next = *expected_next.entry(tp).or_insert(led.next_offset);
            if e.base_offset != next {
                return Err(Error::OffsetMismatch {
                    topic_partition: tp,
                    base_offset: e.base_offset,
                    next_offset: next,
                });
            }
            expected_next.insert(tp, e.last_offset + 1);
        }
        Ok(())
    }

    /// The commit, in its own task (see the module documentation).
    async fn commit_in_journal(self, commit: FlushCommit, bytes: Vec<u8>) -> Result<()> {
        let session = commit.session;
        let journal = self.journal(session);
        let mut journal = journal.lock().await;
        self.settle_or_forget(&mut journal, session).await?;
        self.check_against_store(&commit, &mut journal).await?;
        let token = commit.object_key.clone();
        self.append_record(&mut journal, session, token, bytes, &Record::Commit(commit))
            .await
    }

    /// Appends `record` (encoded as `bytes`) to the settled `journal` of
    /// `session` with one conditional batch, settles an uncertain answer by
    /// reading back `token`, and applies the record once committed.
    pub(super) async fn append_record(
        &self,
        journal: &mut Journal,
        session: crate::model::BrokerSession,
        token: String,
        bytes: Vec<u8>,
        record: &Record,
    ) -> Result<()> {
        let head = journal.head.expect("settled");
        let append = JournalAppend {
            session,
            seq: head + 1,
            token,
        };
        let batch = apply::journal_batch(&append, head, bytes, &journal.untrimmed);
        let answer = match self.cql().lwt_batch(&batch).await? {
            Lwt::Applied => LwtAnswer::Applied,
            Lwt::NotApplied => LwtAnswer::NotApplied(None),
            Lwt::Uncertain => LwtAnswer::Uncertain,
        };
        let outcome = match decide::after_append(&answer) {
            AppendStep::Committed => AppendOutcome::Committed,
            AppendStep::ReadEntry | AppendStep::ReadBack => match self
                .read_back(&append, answer == LwtAnswer::Uncertain)
                .await
            {
                Ok(outcome) => outcome,
                Err(e) => {
                    journal.head = None;
                    tracing::warn!(session = %session, seq = append.seq, error = %e, "a journal append could not be read back");
                    return Err(Error::Timeout);
                }
            },
        };
        match outcome {
            AppendOutcome::Committed => {
                journal.head = Some(append.seq);
                journal.untrimmed.clear();
                let mut tries = 0;
                loop {
                    match self.apply_record(record, Some(&mut journal.led)).await {
                        Ok(()) => {
                            journal.applied = append.seq;
                            journal.untrimmed.push(append.seq);
                            return Ok(());
                        }
                        Err(e) if tries < APPLY_RETRIES => {
                            tries += 1;
                            tracing::warn!(session = %session, seq = append.seq, error = %e, "applying a committed journal entry failed; retrying");
                            tokio::time::sleep(std::time::Duration::from_millis(100 << tries))
                                .await;
                        }
                        // Committed, but not visible yet: uncertain for the
                        // caller, which claims its partitions again; the
                        // claim (or whoever fences the session) applies it
                        // from the journal before reading any offset.
                        Err(e) => {
                            tracing::warn!(session = %session, seq = append.seq, error = %e, "a committed journal entry is not applied yet");
                            return Err(Error::Timeout);
                        }
                    }
                }
            }
            AppendOutcome::NotApplied => Err(Error::Unavailable(format!(
                "journal append seq={} of {session} did not apply; retry",
                append.seq
            ))),
            AppendOutcome::Fenced => {
                self.forget_journal(session);
                Err(Error::SessionFenced(session))
            }
            AppendOutcome::Unknown => {
                self.forget_journal(session);
                Err(Error::Timeout)
            }
            AppendOutcome::Inconsistent(why) => {
                journal.head = None;
                Err(Error::Backend(why))
            }
        }
    }

    /// SERIAL reads of the session row and of the journal entry at the
    /// append's seq, then `decide::after_read_back`.
    async fn read_back(&self, append: &JournalAppend, answer_lost: bool) -> Result<AppendOutcome> {
        let session = append.session;
        let row = self.session_row(session.node_id, true).await?;
        let token: Option<(Option<String>,)> = self
            .cql()
            .read_one(
                &cql::JOURNAL_ENTRY_READ_SERIAL,
                binds![session.node_id, session.incarnation, append.seq],
            )
            .await?;
        let token = token.and_then(|(t,)| t);
        Ok(decide::after_read_back(
            append,
            row.map(|info| info.row).as_ref(),
            token.as_deref(),
            answer_lost,
        ))
    }

    /// Every (topic, partition) of every topic.
    async fn all_partitions(&self) -> Result<Vec<TopicPartition>> {
        Ok(self
            .topic_map()
            .await?
            .into_iter()
            .flat_map(|(id, (_, count))| (0..count).map(move |p| TopicPartition::new(id, p)))
            .collect())
    }

    /// Producer states of one partition, each with its row's write time.
    async fn partition_producers(&self, tp: TopicPartition) -> Result<Vec<(ProducerState, i64)>> {
        let rows: Vec<ProducerColumns> = self
            .cql()
            .read(
                &cql::PRODUCER_STATES_READ,
                binds![tp.topic_id, tp.partition],
            )
            .await?;
        rows.into_iter()
            .map(|(producer_id, epoch, last_write_ms, batches, written)| {
                let batches = ProducerBatch::decode_batches(&batches.unwrap_or_default())
                    .ok_or_else(|| {
                        Error::Backend(format!("producer state {producer_id} of {tp}: bad batches"))
                    })?;
                Ok((
                    ProducerState {
                        topic_partition: tp,
                        producer_id,
                        producer_epoch: epoch.unwrap_or(0),
                        last_write_ms: last_write_ms.unwrap_or(0),
                        batches,
                    },
                    written.unwrap_or(0),
                ))
            })
            .collect()
    }

    /// Producer states of every partition (a read per partition).
    async fn every_producer(&self) -> Result<Vec<(ProducerState, i64)>> {
        let partitions = self.all_partitions().await?;
        let per_partition: Vec<Vec<(ProducerState, i64)>> = stream::iter(partitions)
            .map(|tp| self.partition_producers(tp))
            .buffer_unordered(CONCURRENCY)
            .try_collect()
            .await?;
        Ok(per_partition.into_iter().flatten().collect())
    }

    pub(super) async fn partition_producer_states(
        &self,
        tp: TopicPartition,
    ) -> Result<Vec<ProducerState>> {
        let mut states: Vec<ProducerState> = self
            .partition_producers(tp)
            .await?
            .into_iter()
            .map(|(s, _)| s)
            .collect();
        states.sort_by_key(|s| s.producer_id);
        Ok(states)
    }
}

#[async_trait]
impl LogStore for ScyllaStore {
    async fn commit_flush(&self, commit: &FlushCommit) -> Result<()> {
        check_flush_commit(commit)?;
        let bytes = entry::encode(commit).map_err(Error::Backend)?;
        let task = tokio::spawn(self.clone().commit_in_journal(commit.clone(), bytes));
        task.await
            .map_err(|e| Error::Backend(format!("commit task failed: {e}")))?
    }

    /// A cut recorded in the session's journal (`index_rewrites`), in a
    /// task of its own like a commit.
    async fn advance_log_start(
        &self,
        session: crate::model::BrokerSession,
        tp: TopicPartition,
        leader_epoch: i32,
        offset: i64,
    ) -> Result<i64> {
        let task = tokio::spawn(
            self.clone()
                .cut_in_journal(session, tp, leader_epoch, offset),
        );
        task.await
            .map_err(|e| Error::Backend(format!("log start task failed: {e}")))?
    }

    /// A swap recorded in the session's journal (`index_rewrites`), in a
    /// task of its own like a commit.
    async fn swap_index_entries(&self, swap: &crate::model::IndexSwap) -> Result<()> {
        check_index_swap(swap)?;
        let task = tokio::spawn(self.clone().swap_in_journal(swap.clone()));
        task.await
            .map_err(|e| Error::Backend(format!("index swap task failed: {e}")))?
    }

    async fn index_entries(
        &self,
        tp: TopicPartition,
        from_offset: i64,
        max_entries: usize,
    ) -> Result<Vec<IndexEntry>> {
        let mut out: Vec<IndexEntry> = Vec::new();
        for segment in self.segments(tp).await? {
            if out.len() >= max_entries {
                break;
            }
            if segment.last_offset < from_offset {
                continue;
            }
            let mut from_base = i64::MIN;
            if out.is_empty() && segment.base_offset < from_offset {
                // The entry holding `from_offset` starts before it.
                let at: Option<EntryColumns> = self
                    .cql()
                    .read_one(
                        &cql::INDEX_ENTRY_AT_OR_BEFORE,
                        binds![tp.topic_id, tp.partition, segment.segment, from_offset],
                    )
                    .await?;
                if let Some(at) = at {
                    let at = entry_of(tp, at)?;
                    if at.last_offset >= from_offset && at.base_offset < from_offset {
                        out.push(at);
                    }
                }
                from_base = from_offset;
            }
            let limit = i32::try_from(max_entries - out.len()).unwrap_or(i32::MAX);
            if limit > 0 {
                out.extend(
                    self.segment_entries(tp, segment.segment, from_base, limit)
                        .await?
                        .into_iter()
                        .filter(|e| e.last_offset >= from_offset),
                );
            }
        }
        out.truncate(max_entries);
        Ok(out)
    }

    async fn index_segments(&self, tp: TopicPartition) -> Result<Vec<IndexSegment>> {
        self.segments(tp).await
    }

    async fn index_entry_by_timestamp(
        &self,
        tp: TopicPartition,
        timestamp: i64,
    ) -> Result<Option<IndexEntry>> {
        for segment in self.segments(tp).await? {
            if segment.max_timestamp < timestamp {
                continue;
            }
            let entries = self
                .segment_entries(tp, segment.segment, i64::MIN, i32::MAX)
                .await?;
            if let Some(e) = entries.into_iter().find(|e| e.max_timestamp >= timestamp) {
                return Ok(Some(e));
            }
        }
        Ok(None)
    }

    async fn index_entry_max_timestamp(&self, tp: TopicPartition) -> Result<Option<IndexEntry>> {
        let segments = self.segments(tp).await?;
        let Some(max) = segments.iter().map(|s| s.max_timestamp).max() else {
            return Ok(None);
        };
        for segment in segments.iter().filter(|s| s.max_timestamp == max) {
            let entries = self
                .segment_entries(tp, segment.segment, i64::MIN, i32::MAX)
                .await?;
            if let Some(e) = entries.into_iter().find(|e| e.max_timestamp == max) {
                return Ok(Some(e));
            }
        }
        Ok(None)
    }

    async fn referenced_objects(&self, object_keys: &[String]) -> Result<Vec<String>> {
        let topics = self.topic_map().await?;
        let found: Vec<Option<String>> = stream::iter(object_keys.iter().cloned())
            .map(|key| {
                let topics = &topics;
                async move {
                    let references: Vec<(Uuid, i32, i64)> = self
                        .cql()
                        .read(&cql::OBJECT_REFERENCES_READ, binds![key.as_str()])
                        .await?;
                    // A reference of a deleted topic keeps nothing.
                    let live = references
                        .iter()
                        .any(|(id, _, _)| topics.contains_key(&crate::model::TopicId(*id)));
                    Ok::<_, Error>(live.then_some(key))
                }
            })
            .buffer_unordered(CONCURRENCY)
            .try_collect()
            .await?;
        Ok(found.into_iter().flatten().collect())
    }

    async fn forget_objects(&self, object_keys: &[String]) -> Result<()> {
        let writes = object_keys
            .iter()
            .map(|key| (&cql::OBJECT_REFERENCES_FORGET, binds![key.as_str()]))
            .collect();
        run_writes(self, writes).await
    }

    async fn producer_states(&self) -> Result<Vec<ProducerState>> {
        Ok(self
            .every_producer()
            .await?
            .into_iter()
            .map(|(s, _)| s)
            .collect())
    }

    async fn expire_producer_states(&self, before_ms: i64) -> Result<u64> {
        let expired: Vec<(&'static Statement, Values)> = self
            .every_producer()
            .await?
            .into_iter()
            .filter(|(s, _)| s.last_write_ms < before_ms)
            .map(|(s, written)| {
                // At the row's own write time: a state written after this
                // read (a higher offset, so a higher time) survives.
                (
                    &cql::PRODUCER_STATE_DELETE,
                    binds![
                        written,
                        s.topic_partition.topic_id,
                        s.topic_partition.partition,
                        s.producer_id
                    ],
                )
            })
            .collect();
        let count = expired.len() as u64;
        run_writes(self, expired).await?;
        Ok(count)
    }

    async fn allocate_producer_ids(&self, count: i64) -> Result<i64> {
        if count < 1 {
            return Err(Error::Backend(format!(
                "allocate_producer_ids count={count} must be at least 1"
            )));
        }
        for _ in 0..20 {
            let row: Option<(Option<i32>, Option<String>, Option<i64>)> = self
                .cql()
                .read_one(&cql::META_READ, binds![META_PRODUCER_IDS])
                .await?;
            let first = row.and_then(|(_, _, next)| next).unwrap_or(0);
            let next = first.checked_add(count).ok_or_else(|| {
                Error::Backend(format!(
                    "producer ids exhausted first={first} count={count}"
                ))
            })?;
            let answer = self
                .cql()
                .lwt(
                    &cql::PRODUCER_IDS_RESERVE,
                    binds![next, META_PRODUCER_IDS, first],
                )
                .await?;
            // Not applied: another broker reserved first. Unknown: the block
            // may be ours or not; skip it rather than risk handing it out
            // twice (ids are plenty).
            if answer == Lwt::Applied {
                return Ok(first);
            }
        }
        Err(Error::Unavailable(
            "producer ids: the block kept being taken; retry".into(),
        ))
    }
}
