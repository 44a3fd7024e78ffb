//! Retention cuts and object-compaction swaps on ScyllaDB
//! (docs/design/0009, §1 and §3), as pure functions: what a cut or a swap
//! writes, decided by the leader under its journal lock and recorded in the
//! journal as explicit mutations (entry form 2), so that whoever applies the
//! record — the leader, a claimer after it fenced the leader, or a zombie
//! leader's late write — writes exactly the same cells.
//!
//! Rows an index rewrite deletes or replaces must stay deleted even when an
//! older write of them lands late (a re-applied flush, a frozen leader's
//! last apply). Every index row, object reference and segment summary is
//! therefore written at a logical write time, not the server's clock:
//!
//! - an append writes a row and its reference at `append_time(last)`;
//! - anything that changes a segment (an append, a cut, a swap) writes its
//!   summary, and the rows it deletes or replaces, at
//!   `segment_time(segment's last offset, entries it has after)`.
//!
//! A segment's last offset only grows, and at the same last offset only a
//! cut or a merging swap changes it, each leaving fewer entries (a segment
//! holds at most 2^16): so each change of a segment is later in write time
//! than every change before it, and a late write loses to it. A whole
//! segment below the log start goes with one partition tombstone at
//! `drop_time(its last offset)`, later than every write of its rows and
//! earlier than any append after them.

use std::collections::HashSet;

use super::cql::{self, Statement};
use super::exec::{Values, binds};
use crate::commit_rules::to_i64;
use crate::model::{
    INDEX_SEGMENT_OFFSETS, IndexEntry, IndexSegment, IndexSwap, TopicPartition, index_segment,
};
use crate::store::{Error, Result};

/// Write-time bits below an offset: room for a segment's entry count.
const ENTRY_BITS: u32 = 17;
const _: () = assert!(INDEX_SEGMENT_OFFSETS < 1 << ENTRY_BITS);

/// The largest offset a write time can carry (2^46 - 1, about 7 * 10^13).
pub const MAX_TIMED_OFFSET: i64 = (1 << (63 - ENTRY_BITS)) - 1;

/// Rows one cut record deletes at most; a longer cut goes in several
/// records, each moving the log start to an entry boundary. About 150 bytes
/// a row: a record stays well under ScyllaDB's batch size warning (128 KiB).
pub const MAX_CUT_ROWS: usize = 500;

/// The write time of a row (and its object reference) an append of an
/// entry ending at `last_offset` inserts.
pub fn append_time(last_offset: i64) -> Result<i64> {
    if !(0..=MAX_TIMED_OFFSET).contains(&last_offset) {
        return Err(Error::Backend(format!(
            "offset {last_offset} is beyond what ScyllaDB index write times carry ({MAX_TIMED_OFFSET})"
        )));
    }
    Ok(last_offset << ENTRY_BITS)
}

/// The write time of a change that leaves a segment ending at
/// `last_offset` with `entries` entries.
pub fn segment_time(last_offset: i64, entries: i64) -> Result<i64> {
    let room = (1 << ENTRY_BITS) - 1;
    Ok(append_time(last_offset)? + room - entries.clamp(0, room))
}

/// The write time of the tombstone of a whole segment ending at
/// `last_offset`: later than every write the segment has had, earlier than
/// any append after it (the log end may still lie in the segment, and an
/// entry of one offset there is written at `append_time(last_offset + 1)`).
pub fn drop_time(last_offset: i64) -> Result<i64> {
    Ok(append_time(last_offset + 1)? - 1)
}

/// One write of an index rewrite, at its write time `at`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mutation {
    /// The partition's log start (a max-register: its write time is the
    /// offset itself).
    LogStart { tp: TopicPartition, offset: i64 },
    /// A whole segment's rows and summary.
    DropSegment {
        tp: TopicPartition,
        segment: i64,
        at: i64,
    },
    /// One row and its object reference.
    DeleteEntry { entry: IndexEntry, at: i64 },
    /// One object reference (its row is rewritten by a `WriteEntry`).
    DeleteReference { entry: IndexEntry, at: i64 },
    /// One row and its object reference.
    WriteEntry { entry: IndexEntry, at: i64 },
    /// A segment's summary.
    WriteSummary { summary: IndexSegment, at: i64 },
}

/// What a cut step does: the log start it reaches (`offset`, or an entry
/// boundary before it when the rows to delete exceed `max_rows`) and its
/// mutations.
#[derive(Debug, PartialEq, Eq)]
pub struct CutPlan {
    pub log_start: i64,
    pub mutations: Vec<Mutation>,
}

/// The cut of `tp` to `offset`. `segments` are the partition's summaries
/// in segment order; `rows_of(i)` are the rows of `segments[i]` in offset
/// order (asked for only the segments the cut reaches).
pub fn plan_cut(
    tp: TopicPartition,
    offset: i64,
    segments: &[IndexSegment],
    mut rows_of: impl FnMut(usize) -> Vec<IndexEntry>,
    max_rows: usize,
) -> Result<CutPlan> {
    let mut mutations = Vec::new();
    let mut deleted = 0usize;
    let mut log_start = offset;
    for (i, segment) in segments.iter().enumerate() {
        if segment.base_offset >= offset {
            break;
        }
        let rows = rows_of(i);
        let below = rows.iter().take_while(|r| r.last_offset < offset).count();
        if below == 0 {
            break;
        }
        // Stop at an entry boundary once the budget is spent.
        let take = below.min(max_rows.saturating_sub(deleted));
        if take == 0 {
            log_start = rows[0].base_offset;
            break;
        }
        if take < below {
            log_start = rows[take].base_offset;
        }
        deleted += take;
        if take == rows.len() {
            let at = drop_time(segment.last_offset)?;
            mutations.push(Mutation::DropSegment {
                tp,
                segment: segment.segment,
                at,
            });
            mutations.extend(
                rows.into_iter()
                    .map(|entry| Mutation::DeleteReference { entry, at }),
            );
            continue;
        }
        let kept = &rows[take..];
        let entries = kept.len() as i64;
        let at = segment_time(segment.last_offset, entries)?;
        let mut bytes = 0i64;
        for r in kept {
            bytes += to_i64(r.length, "length", &r.object_key)?;
        }
        mutations.extend(
            rows[..take]
                .iter()
                .cloned()
                .map(|entry| Mutation::DeleteEntry { entry, at }),
        );
        mutations.push(Mutation::WriteSummary {
            summary: IndexSegment {
                base_offset: kept[0].base_offset,
                entries,
                bytes,
                max_timestamp: kept.iter().map(|r| r.max_timestamp).max().unwrap_or(-1),
                ..*segment
            },
            at,
        });
        break;
    }
    mutations.push(Mutation::LogStart {
        tp,
        offset: log_start,
    });
    Ok(CutPlan {
        log_start,
        mutations,
    })
}

/// Old entries one swap record replaces at most (about 150 bytes each in
/// the record): a rewrite of many small runs goes in several records.
pub const MAX_SWAP_ROWS: usize = 500;

/// `swap` as parts of at most `max_old` old entries each, in offset order,
/// every part a valid swap of its own. A new entry covering more old
/// entries than that is cut at old entries' boundaries: its bytes are the
/// old entries' bytes in order, so each piece's position follows from their
/// lengths (an entry whose length is not their sum is left whole). Every
/// part merges entries; none when nothing in `swap` does.
pub fn split_swap(swap: &IndexSwap, max_old: usize) -> Vec<IndexSwap> {
    // At least two, so that every new entry that merges has a piece that does.
    let max_old = max_old.max(2);
    // Each new entry with the old entries it covers, cut into pieces.
    let mut pieces: Vec<(IndexEntry, Vec<IndexEntry>)> = Vec::new();
    let mut old = swap.old.iter().peekable();
    for new in &swap.new {
        let mut covered = Vec::new();
        while let Some(o) = old.next_if(|o| o.last_offset <= new.last_offset) {
            covered.push(o.clone());
        }
        let sum: u64 = covered.iter().map(|o| o.length).sum();
        if covered.len() <= max_old || sum != new.length {
            pieces.push((new.clone(), covered));
            continue;
        }
        let mut position = new.position;
        for chunk in covered.chunks(max_old) {
            let length: u64 = chunk.iter().map(|o| o.length).sum();
            let piece = IndexEntry {
                base_offset: chunk[0].base_offset,
                last_offset: chunk[chunk.len() - 1].last_offset,
                position,
                length,
                max_timestamp: chunk.iter().map(|o| o.max_timestamp).max().unwrap_or(-1),
                ..new.clone()
            };
            position += length;
            pieces.push((piece, chunk.to_vec()));
        }
    }
    let mut parts: Vec<IndexSwap> = Vec::new();
    let mut current: Option<IndexSwap> = None;
    for (new, covered) in pieces {
        if let Some(part) = &mut current
            && part.old.len() + covered.len() <= max_old
        {
            part.old.extend(covered);
            part.new.push(new);
            continue;
        }
        parts.extend(current.take());
        current = Some(IndexSwap {
            session: swap.session,
            topic_partition: swap.topic_partition,
            leader_epoch: swap.leader_epoch,
            old: covered,
            new: vec![new],
            object_key: swap.object_key.clone(),
            object_size: swap.object_size,
        });
    }
    parts.extend(current);
    // A part in which nothing merges would be written at the segment's
    // current write time, maybe over rows an earlier swap wrote at that
    // time: it joins a neighbour that merges (the record grows instead).
    let mut merged: Vec<IndexSwap> = Vec::with_capacity(parts.len());
    let mut before_first: Vec<IndexSwap> = Vec::new();
    for mut part in parts {
        if part.new.len() < part.old.len() {
            for early in before_first.drain(..).rev() {
                part.old.splice(0..0, early.old);
                part.new.splice(0..0, early.new);
            }
            merged.push(part);
        } else if let Some(last) = merged.last_mut() {
            last.old.extend(part.old);
            last.new.extend(part.new);
        } else {
            before_first.push(part);
        }
    }
    merged
}

/// The swap's mutations, given the current summary of its segment; the
/// caller has checked that the stored rows are `swap.old`. A swap that
/// merges nothing is refused: it would leave the segment's write time
/// where it was.
pub fn plan_swap(swap: &IndexSwap, summary: &IndexSegment) -> Result<Vec<Mutation>> {
    if swap.new.len() >= swap.old.len() {
        return Err(Error::SwapRefused {
            topic_partition: swap.topic_partition,
            reason: format!(
                "{} entries would become {}: a swap on ScyllaDB must merge entries",
                swap.old.len(),
                swap.new.len()
            ),
        });
    }
    let entries = summary.entries - swap.old.len() as i64 + swap.new.len() as i64;
    let at = segment_time(summary.last_offset, entries)?;
    let new_bases: HashSet<i64> = swap.new.iter().map(|e| e.base_offset).collect();
    let mut mutations = Vec::with_capacity(swap.old.len() + swap.new.len() + 1);
    for old in &swap.old {
        if !new_bases.contains(&old.base_offset) {
            mutations.push(Mutation::DeleteEntry {
                entry: old.clone(),
                at,
            });
        } else if old.object_key != swap.object_key {
            mutations.push(Mutation::DeleteReference {
                entry: old.clone(),
                at,
            });
        }
    }
    mutations.extend(
        swap.new
            .iter()
            .cloned()
            .map(|entry| Mutation::WriteEntry { entry, at }),
    );
    mutations.push(Mutation::WriteSummary {
        summary: IndexSegment {
            entries,
            ..*summary
        },
        at,
    });
    Ok(mutations)
}

/// The partitions whose index `mutations` change.
pub fn partitions_of(mutations: &[Mutation]) -> HashSet<TopicPartition> {
    mutations
        .iter()
        .map(|m| match m {
            Mutation::LogStart { tp, .. } | Mutation::DropSegment { tp, .. } => *tp,
            Mutation::DeleteEntry { entry, .. }
            | Mutation::DeleteReference { entry, .. }
            | Mutation::WriteEntry { entry, .. } => entry.topic_partition,
            Mutation::WriteSummary { summary, .. } => summary.topic_partition,
        })
        .collect()
}

/// The statements that carry out `mutations`.
pub fn statements(mutations: &[Mutation]) -> Result<Vec<(&'static Statement, Values)>> {
    let mut out: Vec<(&'static Statement, Values)> = Vec::with_capacity(mutations.len() * 2);
    let reference = |statement: &'static Statement, e: &IndexEntry, at: i64| {
        let tp = e.topic_partition;
        match statement.name {
            "OBJECT_REFERENCE_WRITE" => (
                statement,
                binds![
                    e.object_key.as_str(),
                    tp.topic_id,
                    tp.partition,
                    e.base_offset,
                    at
                ],
            ),
            _ => (
                statement,
                binds![
                    at,
                    e.object_key.as_str(),
                    tp.topic_id,
                    tp.partition,
                    e.base_offset
                ],
            ),
        }
    };
    for m in mutations {
        match m {
            Mutation::LogStart { tp, offset } => out.push((
                &cql::LOG_START_WRITE,
                binds![*offset, *offset, tp.topic_id, tp.partition],
            )),
            Mutation::DropSegment { tp, segment, at } => {
                out.push((
                    &cql::INDEX_ENTRIES_CUT_SEGMENT,
                    binds![*at, tp.topic_id, tp.partition, *segment],
                ));
                out.push((
                    &cql::INDEX_SEGMENT_DELETE,
                    binds![*at, tp.topic_id, tp.partition, *segment],
                ));
            }
            Mutation::DeleteEntry { entry: e, at } => {
                let tp = e.topic_partition;
                out.push((
                    &cql::INDEX_ENTRY_DELETE,
                    binds![
                        *at,
                        tp.topic_id,
                        tp.partition,
                        index_segment(e.base_offset),
                        e.base_offset
                    ],
                ));
                out.push(reference(&cql::OBJECT_REFERENCE_DELETE, e, *at));
            }
            Mutation::DeleteReference { entry: e, at } => {
                out.push(reference(&cql::OBJECT_REFERENCE_DELETE, e, *at));
            }
            Mutation::WriteEntry { entry: e, at } => {
                out.push(entry_write(e, *at)?);
                out.push(reference(&cql::OBJECT_REFERENCE_WRITE, e, *at));
            }
            Mutation::WriteSummary { summary: s, at } => out.push(summary_write(s, *at)),
        }
    }
    Ok(out)
}

/// The insert of one index row at write time `at`.
fn entry_write(e: &IndexEntry, at: i64) -> Result<(&'static Statement, Values)> {
    let tp = e.topic_partition;
    let key = &e.object_key;
    Ok((
        &cql::INDEX_ENTRY_WRITE,
        binds![
            tp.topic_id,
            tp.partition,
            index_segment(e.base_offset),
            e.base_offset,
            e.last_offset,
            key.as_str(),
            to_i64(e.position, "position", key)?,
            to_i64(e.length, "length", key)?,
            e.max_timestamp,
            at
        ],
    ))
}

/// The write of one segment summary at write time `at`.
fn summary_write(s: &IndexSegment, at: i64) -> (&'static Statement, Values) {
    let tp = s.topic_partition;
    (
        &cql::INDEX_SEGMENT_WRITE,
        binds![
            at,
            s.base_offset,
            s.last_offset,
            s.entries,
            s.bytes,
            s.max_timestamp,
            tp.topic_id,
            tp.partition,
            s.segment
        ],
    )
}

#[cfg(test)]
mod tests;
