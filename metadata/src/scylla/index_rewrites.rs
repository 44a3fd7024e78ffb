//! Retention cuts (`LogStore::advance_log_start`) and object-compaction
//! swaps (`LogStore::swap_index_entries`) on ScyllaDB (docs/design/0009).
//!
//! Each runs like a flush commit: in a task of its own, under its
//! session's journal lock, after the journal is settled, and lands with the
//! session's conditional batch — which also fences it, since a session that
//! lost a partition has lost its lease (docs/design/0007). The leader reads
//! the index, decides every write (`rewrite::plan_cut`, `plan_swap`), and
//! records them in the journal as one form-2 entry; whoever applies it
//! writes the same cells at the same write times.
//!
//! The leader serialises its own commits, cuts and swaps, so the checks it
//! makes under the lock (the log start, the rows a swap replaces) still hold
//! when its record lands.

use crate::model::{BrokerSession, IndexSwap, TopicPartition, Uuid, index_segment};
use crate::store::{Error, Result};

use super::entry::{self, Record};
use super::rewrite::{self, MAX_CUT_ROWS, MAX_SWAP_ROWS};
use super::store::{Journal, ScyllaStore, partition_exists};

impl ScyllaStore {
    /// The journal of `session`, settled, with `tp` found led by it at
    /// `epoch`; and `tp`'s `(log_start_offset, next_offset)`.
    async fn lead_for_rewrite<'a>(
        &self,
        journal: &'a std::sync::Arc<tokio::sync::Mutex<Journal>>,
        session: BrokerSession,
        tp: TopicPartition,
        epoch: i32,
    ) -> Result<(tokio::sync::MutexGuard<'a, Journal>, i64, i64)> {
        let mut guard = journal.lock().await;
        self.settle_or_forget(&mut guard, session).await?;
        let topics = self.topic_map_cached().await?;
        if !partition_exists(&topics, tp) {
            return Err(Error::UnknownTopic(format!("topic_partition={tp}")));
        }
        self.check_leads(&mut guard, session, tp, epoch).await?;
        let (log_start, next_offset) = self
            .offset_rows(tp.topic_id)
            .await?
            .get(&tp.partition)
            .copied()
            .unwrap_or((0, 0));
        Ok((guard, log_start, next_offset))
    }

    /// Moves `tp`'s log start to `offset`, in steps of at most
    /// `MAX_CUT_ROWS` deleted rows (each a journal entry); answers the log
    /// start after the call.
    pub(super) async fn cut_in_journal(
        self,
        session: BrokerSession,
        tp: TopicPartition,
        epoch: i32,
        offset: i64,
    ) -> Result<i64> {
        let journal = self.journal(session);
        loop {
            let (guard, log_start, next_offset) =
                self.lead_for_rewrite(&journal, session, tp, epoch).await?;
            if offset > next_offset {
                return Err(Error::LogStartBeyondEnd {
                    topic_partition: tp,
                    offset,
                    next_offset,
                });
            }
            if offset <= log_start {
                return Ok(log_start);
            }
            let segments = self.segments(tp).await?;
            // The rows of the segments the cut reaches, and of one past its
            // row budget, so that the plan finds where the budget ends.
            let mut rows = Vec::new();
            let mut below = 0;
            for s in &segments {
                if s.base_offset >= offset || below > MAX_CUT_ROWS {
                    break;
                }
                let r = self
                    .segment_entries(tp, s.segment, i64::MIN, i32::MAX)
                    .await?;
                below += r.iter().filter(|e| e.last_offset < offset).count();
                rows.push(r);
                if s.last_offset >= offset {
                    break;
                }
            }
            let plan = rewrite::plan_cut(
                tp,
                offset,
                &segments[..rows.len()],
                |i| std::mem::take(&mut rows[i]),
                MAX_CUT_ROWS,
            )?;
            let bytes = entry::encode_rewrite(&plan.mutations);
            let token = format!("cut {tp} to {} {}", plan.log_start, Uuid::new_v4());
            let record = Record::Rewrite(plan.mutations);
            let mut guard = guard;
            self.append_record(&mut guard, session, token, bytes, &record)
                .await?;
            if plan.log_start >= offset {
                return Ok(plan.log_start);
            }
        }
    }

    /// Replaces `swap.old` by `swap.new` if the leader, the log start and
    /// the stored rows are still what the compactor read. A swap of more
    /// than `MAX_SWAP_ROWS` old entries goes in several records, all under
    /// one hold of the journal lock: no other write of this partition can
    /// come between them, so the checks made before the first hold for all.
    pub(super) async fn swap_in_journal(self, swap: IndexSwap) -> Result<()> {
        let tp = swap.topic_partition;
        let refused = |reason: String| {
            Err(Error::SwapRefused {
                topic_partition: tp,
                reason,
            })
        };
        let journal = self.journal(swap.session);
        let (mut guard, log_start, _) = self
            .lead_for_rewrite(&journal, swap.session, tp, swap.leader_epoch)
            .await?;
        let first = swap.old[0].base_offset;
        let last = swap.old[swap.old.len() - 1].last_offset;
        if log_start > first {
            return refused(format!(
                "the log start {log_start} is past the run's first offset {first}"
            ));
        }
        let segment = index_segment(first);
        let limit = i32::try_from(swap.old.len() + 1).unwrap_or(i32::MAX);
        let mut stored = self.segment_entries(tp, segment, first, limit).await?;
        stored.retain(|e| e.base_offset <= last);
        if stored != swap.old {
            return refused(format!(
                "the stored entries of offsets {first}..={last} changed since they were read"
            ));
        }
        let Some(mut summary) = self
            .segments(tp)
            .await?
            .into_iter()
            .find(|s| s.segment == segment)
        else {
            return refused(format!("index segment {segment} has no summary"));
        };
        let parts = rewrite::split_swap(&swap, MAX_SWAP_ROWS);
        if parts.is_empty() {
            return refused(format!(
                "{} entries would become {}: nothing merges",
                swap.old.len(),
                swap.new.len()
            ));
        }
        for part in parts {
            let mutations = rewrite::plan_swap(&part, &summary)?;
            summary.entries -= (part.old.len() - part.new.len()) as i64;
            let bytes = entry::encode_rewrite(&mutations);
            let token = format!("swap {tp} {} {}", part.old[0].base_offset, swap.object_key);
            let record = Record::Rewrite(mutations);
            self.append_record(&mut guard, swap.session, token, bytes, &record)
                .await?;
        }
        Ok(())
    }
}
