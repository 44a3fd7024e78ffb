//! Idempotent producers: Kafka's sequence rules, applied by the partition
//! owner when a flush is sealed, before anything is written.
//!
//! The rules are those of Kafka's `ProducerAppendInfo` and
//! `UnifiedLog.analyzeAndValidateProducerState`, for producers without a
//! transactional id:
//!
//! - a batch whose (epoch, first sequence, last sequence) matches one of the
//!   producer's last 5 batches on the partition is a **duplicate**: it is not
//!   written again and is answered with the offsets it was first given;
//! - an epoch older than the producer's current one is refused
//!   (`InvalidProducerEpoch`);
//! - a newer epoch must start at sequence 0, unless the producer is unknown;
//! - within an epoch, the first sequence must follow the last one (with
//!   wrap-around from `i32::MAX` to 0), else `OutOfOrderSequence`;
//! - an unknown producer (never seen, or expired after
//!   `producer.id.expiration.ms` without a write) may start at any sequence,
//!   as Kafka has allowed since KIP-360.
//!
//! Each partition keeps two views: `committed` (what the metadata store holds)
//! and `current` (committed plus every sealed batch not yet committed). Checks
//! run against `current`, so a retry of a batch still in flight is caught.
//! When a flush fails, `current` goes back to `committed`, exactly as the
//! reserved offsets go back to the committed ones.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use metadata::{PRODUCER_BATCHES_RETAINED, ProducerBatch, ProducerState, TopicPartition};
use protocol::batch::BatchHeader;
use tokio::sync::oneshot;

use super::AppendResult;
use crate::{Error, Result};

/// Kafka's `RecordBatch.NO_PRODUCER_EPOCH`: the producer is unknown here.
const NO_PRODUCER_EPOCH: i16 = -1;

/// A waiting append's answer channel and the answer it gets if its flush commits.
pub(crate) type Waiter = (oneshot::Sender<Result<AppendResult>>, AppendResult);

/// How a sealed flush ended, for duplicates of its batches that arrive
/// while it is still in flight: they wait for the same outcome.
#[derive(Default)]
pub(crate) struct FlushOutcome(Mutex<OutcomeState>);

enum OutcomeState {
    Pending(Vec<Waiter>),
    Committed,
    Failed(String),
}

impl Default for OutcomeState {
    fn default() -> Self {
        OutcomeState::Pending(Vec::new())
    }
}

impl FlushOutcome {
    /// Answers `waiter` now if the flush has ended, else when it ends.
    fn answer_when_done(&self, waiter: Waiter) {
        let mut state = self.0.lock().expect("flush outcome lock");
        match &mut *state {
            OutcomeState::Pending(waiters) => waiters.push(waiter),
            OutcomeState::Committed => {
                let _ = waiter.0.send(Ok(waiter.1));
            }
            OutcomeState::Failed(why) => {
                let _ = waiter.0.send(Err(Error::Unavailable(why.clone())));
            }
        }
    }

    /// The flush committed: answers the duplicates that waited for it.
    pub(crate) fn committed(&self) {
        let mut state = self.0.lock().expect("flush outcome lock");
        if let OutcomeState::Pending(waiters) =
            std::mem::replace(&mut *state, OutcomeState::Committed)
        {
            for (reply, result) in waiters {
                let _ = reply.send(Ok(result));
            }
        }
    }

    /// The flush failed: the duplicates that waited for it fail too.
    pub(crate) fn failed(&self, why: &str) {
        let mut state = self.0.lock().expect("flush outcome lock");
        if let OutcomeState::Pending(waiters) =
            std::mem::replace(&mut *state, OutcomeState::Failed(why.to_string()))
        {
            for (reply, _) in waiters {
                let _ = reply.send(Err(Error::Unavailable(why.to_string())));
            }
        }
    }
}

/// A batch kept to recognise retries; `flush` is set while it is in flight.
#[derive(Clone)]
struct RetainedBatch {
    batch: ProducerBatch,
    flush: Option<Arc<FlushOutcome>>,
}

/// One producer on one partition (Kafka's `ProducerStateEntry`).
#[derive(Clone)]
struct ProducerEntry {
    epoch: i16,
    last_write_ms: i64,
    batches: VecDeque<RetainedBatch>,
    /// With no batches retained: the last sequence the next batch must
    /// follow. Set when a new producer's only batches failed, so a batch sent
    /// after them cannot be written ahead of their retry (a gap in its
    /// sequence); `None` otherwise.
    pinned_last_sequence: Option<i32>,
}

/// What to do with a produced batch.
pub(crate) enum Check {
    /// Not idempotent, or next in sequence: write it.
    Append,
    /// Already written (or being written): answer with these offsets once
    /// `flush` (if any) has committed.
    Duplicate {
        batch: ProducerBatch,
        flush: Option<Arc<FlushOutcome>>,
    },
}

/// The producers of one partition.
#[derive(Default)]
pub(crate) struct Producers {
    committed: HashMap<i64, ProducerEntry>,
    current: HashMap<i64, ProducerEntry>,
}

impl Producers {
    /// Checks a batch against the producer's current state (Kafka's order:
    /// duplicate, then epoch, then sequence). `Err` refuses the batch.
    pub(crate) fn check(
        &self,
        tp: TopicPartition,
        header: &BatchHeader,
        now_ms: i64,
        expiration_ms: i64,
    ) -> Result<Check> {
        if header.producer_id < 0 {
            return Ok(Check::Append);
        }
        let (pid, epoch, first_seq) = (
            header.producer_id,
            header.producer_epoch,
            header.base_sequence,
        );
        let last_seq = last_sequence(first_seq, header.last_offset_delta);
        let entry = self
            .current
            .get(&pid)
            .filter(|e| now_ms.saturating_sub(e.last_write_ms) < expiration_ms);
        let Some(entry) = entry else {
            // Unknown (or expired): any epoch, any sequence (KIP-360).
            return Ok(Check::Append);
        };
        if epoch == entry.epoch
            && let Some(dup) = entry
                .batches
                .iter()
                .find(|b| b.batch.first_sequence == first_seq && b.batch.last_sequence == last_seq)
        {
            return Ok(Check::Duplicate {
                batch: dup.batch,
                flush: dup.flush.clone(),
            });
        }
        if epoch < entry.epoch {
            return Err(Error::InvalidProducerEpoch(format!(
                "Epoch of producer {pid} in {tp} is {epoch}, which is smaller than the last seen epoch {}",
                entry.epoch
            )));
        }
        if epoch != entry.epoch {
            if first_seq != 0 && entry.epoch != NO_PRODUCER_EPOCH {
                return Err(Error::OutOfOrderSequence(format!(
                    "Invalid sequence number for new epoch of producer {pid} in partition {tp}: \
                     {epoch} (request epoch), {first_seq} (seq. number), {} (current producer epoch)",
                    entry.epoch
                )));
            }
            return Ok(Check::Append);
        }
        let current_last = entry
            .batches
            .back()
            .map(|b| b.batch.last_sequence)
            .or(entry.pinned_last_sequence);
        match current_last {
            Some(last) if !in_sequence(last, first_seq) => Err(Error::OutOfOrderSequence(format!(
                "Out of order sequence number for producer {pid} in partition {tp}: \
                 {first_seq} (incoming seq. number), {last} (current end sequence number)"
            ))),
            _ => Ok(Check::Append),
        }
    }

    /// Records a sealed batch of an idempotent producer in the current view;
    /// `max_timestamp` is the batch's as stored (broker time for
    /// LogAppendTime topics).
    pub(crate) fn record(
        &mut self,
        header: &BatchHeader,
        base_offset: i64,
        max_timestamp: i64,
        now_ms: i64,
        expiration_ms: i64,
        flush: &Arc<FlushOutcome>,
    ) {
        debug_assert!(header.producer_id >= 0);
        let entry = self
            .current
            .entry(header.producer_id)
            .or_insert_with(|| ProducerEntry {
                epoch: header.producer_epoch,
                last_write_ms: now_ms,
                batches: VecDeque::new(),
                pinned_last_sequence: None,
            });
        let expired = now_ms.saturating_sub(entry.last_write_ms) >= expiration_ms;
        if entry.epoch != header.producer_epoch || expired {
            entry.epoch = header.producer_epoch;
            entry.batches.clear();
        }
        entry.last_write_ms = now_ms;
        entry.pinned_last_sequence = None;
        if entry.batches.len() == PRODUCER_BATCHES_RETAINED {
            entry.batches.pop_front();
        }
        entry.batches.push_back(RetainedBatch {
            batch: ProducerBatch {
                first_sequence: header.base_sequence,
                last_sequence: last_sequence(header.base_sequence, header.last_offset_delta),
                base_offset,
                last_offset: base_offset + i64::from(header.last_offset_delta),
                max_timestamp,
            },
            flush: Some(flush.clone()),
        });
    }

    /// The current state of `producer_id`, as the metadata store keeps it.
    pub(crate) fn snapshot(&self, tp: TopicPartition, producer_id: i64) -> Option<ProducerState> {
        let entry = self.current.get(&producer_id)?;
        Some(ProducerState {
            topic_partition: tp,
            producer_id,
            producer_epoch: entry.epoch,
            last_write_ms: entry.last_write_ms,
            batches: entry.batches.iter().map(|b| b.batch).collect(),
        })
    }

    /// A flush carrying `state` committed.
    pub(crate) fn commit(&mut self, state: &ProducerState) {
        self.committed.insert(state.producer_id, entry_of(state));
    }

    /// A flush failed: forget every batch not committed. A producer with no
    /// committed batch stays known, pinned before its first failed batch, so
    /// its later batches wait for that one's retry (Kafka's log would have
    /// refused them with OUT_OF_ORDER_SEQUENCE_NUMBER just the same).
    pub(crate) fn reset_to_committed(&mut self) {
        let mut reset = self.committed.clone();
        for (pid, entry) in &self.current {
            if reset.contains_key(pid) {
                continue;
            }
            let pinned = match entry.batches.front() {
                Some(first) => Some(first.batch.first_sequence.wrapping_sub(1)),
                None => entry.pinned_last_sequence,
            };
            reset.insert(
                *pid,
                ProducerEntry {
                    epoch: entry.epoch,
                    last_write_ms: entry.last_write_ms,
                    batches: VecDeque::new(),
                    pinned_last_sequence: pinned,
                },
            );
        }
        self.current = reset;
    }

    /// Replaces both views with states loaded from the metadata store.
    pub(crate) fn load(&mut self, states: impl IntoIterator<Item = ProducerState>) {
        self.committed = states
            .into_iter()
            .map(|s| (s.producer_id, entry_of(&s)))
            .collect();
        self.current = self.committed.clone();
    }

    /// Drops producers whose last write is `expiration_ms` old or older.
    /// Returns how many left the current view.
    pub(crate) fn expire(&mut self, now_ms: i64, expiration_ms: i64) -> usize {
        let live = |e: &ProducerEntry| now_ms.saturating_sub(e.last_write_ms) < expiration_ms;
        self.committed.retain(|_, e| live(e));
        let before = self.current.len();
        self.current.retain(|_, e| live(e));
        before - self.current.len()
    }
}

/// Answers a duplicate: at once when its original committed, else when the
/// original's flush ends.
pub(crate) fn answer_duplicate(flush: Option<Arc<FlushOutcome>>, waiter: Waiter) {
    match flush {
        Some(flush) => flush.answer_when_done(waiter),
        None => {
            let _ = waiter.0.send(Ok(waiter.1));
        }
    }
}

fn entry_of(state: &ProducerState) -> ProducerEntry {
    ProducerEntry {
        epoch: state.producer_epoch,
        last_write_ms: state.last_write_ms,
        batches: state
            .batches
            .iter()
            .map(|&batch| RetainedBatch { batch, flush: None })
            .collect(),
        pinned_last_sequence: None,
    }
}

/// Kafka's `DefaultRecordBatch.incrementSequence`: sequences wrap from
/// `i32::MAX` to 0.
fn last_sequence(first: i32, last_offset_delta: i32) -> i32 {
    if first > i32::MAX - last_offset_delta {
        last_offset_delta - (i32::MAX - first) - 1
    } else {
        first + last_offset_delta
    }
}

/// Kafka's `ProducerAppendInfo.inSequence`.
fn in_sequence(last: i32, next: i32) -> bool {
    i64::from(next) == i64::from(last) + 1 || (next == 0 && last == i32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequences_wrap_at_i32_max() {
        assert_eq!(last_sequence(0, 4), 4);
        assert_eq!(last_sequence(i32::MAX - 4, 4), i32::MAX);
        assert_eq!(last_sequence(i32::MAX - 1, 4), 2);
        assert_eq!(last_sequence(i32::MAX, 0), i32::MAX);
        assert!(in_sequence(i32::MAX, 0));
        assert!(in_sequence(4, 5));
        assert!(!in_sequence(4, 6));
        assert!(!in_sequence(i32::MAX, i32::MIN));
    }
}
