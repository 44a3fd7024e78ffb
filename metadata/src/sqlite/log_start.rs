//! Moving a partition's log start offset forward in the SQLite backend
//! (`LogStore::advance_log_start`): retention and DeleteRecords. One
//! transaction: the leader check, the new log start, and the index rows and
//! segment summaries wholly below it removed (the objects they named become
//! garbage for GC once nothing else names them).

use rusqlite::{OptionalExtension, Transaction, params};

use super::{OrBackend, id_bytes, leadership};
use crate::model::{BrokerSession, TopicPartition, index_segment};
use crate::store::{Error, Result};

/// Moves `tp`'s log start to `offset` under `leader_epoch`, led by
/// `session`; returns the log start after the call (unchanged when it was
/// already at or past `offset`).
pub(super) fn advance(
    tx: &Transaction<'_>,
    session: BrokerSession,
    tp: TopicPartition,
    leader_epoch: i32,
    offset: i64,
) -> Result<i64> {
    let (log_start_offset, next_offset) = check_leader(tx, session, tp, leader_epoch)?;
    let id = id_bytes(tp.topic_id);
    if offset > next_offset {
        return Err(Error::LogStartBeyondEnd {
            topic_partition: tp,
            offset,
            next_offset,
        });
    }
    if offset <= log_start_offset {
        return Ok(log_start_offset);
    }
    tx.prepare_cached(
        "UPDATE partition_state SET log_start_offset = ?3 WHERE topic_id = ?1 AND partition = ?2",
    )
    .and_then(|mut stmt| stmt.execute(params![id, tp.partition, offset]))
    .or_backend(|| format!("update log_start_offset topic_partition={tp}"))?;
    // Entries are contiguous, so those wholly below the log start are a
    // prefix of the primary key's order.
    tx.prepare_cached(
        "DELETE FROM partition_index
         WHERE topic_id = ?1 AND partition = ?2 AND base_offset < ?3 AND last_offset < ?3",
    )
    .and_then(|mut stmt| stmt.execute(params![id, tp.partition, offset]))
    .or_backend(|| format!("delete partition_index topic_partition={tp}"))?;
    let first_kept: Option<i64> = tx
        .prepare_cached(
            "SELECT base_offset FROM partition_index WHERE topic_id = ?1 AND partition = ?2
             ORDER BY base_offset LIMIT 1",
        )
        .and_then(|mut stmt| {
            stmt.query_row(params![id, tp.partition], |r| r.get(0))
                .optional()
        })
        .or_backend(|| format!("read first partition_index topic_partition={tp}"))?;
    // Summaries are keyed by the segment of an entry's base offset: those
    // before the first kept entry's segment go whole, and that segment's is
    // recomputed from the entries it still has.
    let first_segment = first_kept.map_or(i64::MAX, index_segment);
    tx.prepare_cached(
        "DELETE FROM partition_segments WHERE topic_id = ?1 AND partition = ?2 AND segment < ?3",
    )
    .and_then(|mut stmt| stmt.execute(params![id, tp.partition, first_segment]))
    .or_backend(|| format!("delete partition_segments topic_partition={tp}"))?;
    if first_kept.is_some() {
        recompute_segment(tx, tp, first_segment)?;
    }
    Ok(offset)
}

/// The partition's `(log_start_offset, next_offset)` once `session` is
/// found open and leading `tp` at `leader_epoch`; `SessionFenced`, `Fenced`
/// or `UnknownTopic` otherwise.
pub(super) fn check_leader(
    tx: &Transaction<'_>,
    session: BrokerSession,
    tp: TopicPartition,
    leader_epoch: i32,
) -> Result<(i64, i64)> {
    leadership::check_session_open(tx, session)?;
    type Stored = (i32, i64, i64, Option<i32>, Option<i64>);
    let stored: Option<Stored> = tx
        .prepare_cached(
            "SELECT leader_epoch, log_start_offset, next_offset, leader_node, leader_incarnation
             FROM partition_state WHERE topic_id = ?1 AND partition = ?2",
        )
        .and_then(|mut stmt| {
            stmt.query_row(params![id_bytes(tp.topic_id), tp.partition], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })
            .optional()
        })
        .or_backend(|| format!("read partition_state topic_partition={tp}"))?;
    let Some((current_epoch, log_start_offset, next_offset, node, incarnation)) = stored else {
        return Err(Error::UnknownTopic(format!("topic_partition={tp}")));
    };
    if leader_epoch != current_epoch || leadership::session_of(node, incarnation) != Some(session) {
        return Err(Error::Fenced {
            topic_partition: tp,
            expected: leader_epoch,
            current: current_epoch,
        });
    }
    Ok((log_start_offset, next_offset))
}

/// Recomputes the summary of one index segment from the entries it holds.
pub(super) fn recompute_segment(
    tx: &Transaction<'_>,
    tp: TopicPartition,
    segment: i64,
) -> Result<()> {
    let start = segment * crate::model::INDEX_SEGMENT_OFFSETS;
    tx.prepare_cached(
        "UPDATE partition_segments SET (base_offset, entries, bytes, max_timestamp) =
             (SELECT MIN(base_offset), COUNT(*), SUM(length), MAX(max_timestamp)
              FROM partition_index
              WHERE topic_id = ?1 AND partition = ?2 AND base_offset >= ?4 AND base_offset < ?5)
         WHERE topic_id = ?1 AND partition = ?2 AND segment = ?3",
    )
    .and_then(|mut stmt| {
        stmt.execute(params![
            id_bytes(tp.topic_id),
            tp.partition,
            segment,
            start,
            start + crate::model::INDEX_SEGMENT_OFFSETS
        ])
    })
    .or_backend(|| format!("recompute partition_segments topic_partition={tp}"))?;
    Ok(())
}
