//! Object compaction's commit in the SQLite backend
//! (`LogStore::swap_index_entries`): one transaction that checks the
//! leader, that the log start has not passed the run, and that the stored
//! entries are still exactly the ones the compactor read; then replaces
//! them, recounts the segment's summary and records the new object.

use rusqlite::{Transaction, params};

use super::log_start::{check_leader, recompute_segment};
use super::{IndexRow, OrBackend, id_bytes, index_entry, insert_index_row};
use crate::commit_rules::to_i64;
use crate::model::{IndexEntry, IndexSwap, index_segment};
use crate::store::{Error, Result};

pub(super) fn swap(tx: &Transaction<'_>, swap: &IndexSwap, created_at_ms: i64) -> Result<()> {
    let tp = swap.topic_partition;
    let refused = |reason: String| {
        Err(Error::SwapRefused {
            topic_partition: tp,
            reason,
        })
    };
    let (log_start_offset, _) = check_leader(tx, swap.session, tp, swap.leader_epoch)?;
    let first = swap.old[0].base_offset;
    let last = swap.old[swap.old.len() - 1].last_offset;
    if log_start_offset > first {
        return refused(format!(
            "the log start {log_start_offset} is past the run's first offset {first}"
        ));
    }
    let id = id_bytes(tp.topic_id);
    let stored: Vec<IndexEntry> = tx
        .prepare_cached(
            "SELECT base_offset, last_offset, object_key, position, length, max_timestamp
             FROM partition_index
             WHERE topic_id = ?1 AND partition = ?2 AND base_offset >= ?3 AND base_offset <= ?4
             ORDER BY base_offset",
        )
        .and_then(|mut stmt| {
            stmt.query_map(params![id, tp.partition, first, last], |row| {
                index_entry(tp, row)
            })?
            .collect()
        })
        .or_backend(|| format!("read partition_index for a swap topic_partition={tp}"))?;
    if stored != swap.old {
        return refused(format!(
            "the stored entries of offsets {first}..={last} changed since they were read"
        ));
    }
    tx.prepare_cached(
        "DELETE FROM partition_index
         WHERE topic_id = ?1 AND partition = ?2 AND base_offset >= ?3 AND base_offset <= ?4",
    )
    .and_then(|mut stmt| stmt.execute(params![id, tp.partition, first, last]))
    .or_backend(|| format!("delete swapped partition_index topic_partition={tp}"))?;
    for entry in &swap.new {
        let row = IndexRow {
            topic_partition: tp,
            leader_epoch: swap.leader_epoch,
            base_offset: entry.base_offset,
            last_offset: entry.last_offset,
            position: to_i64(entry.position, "position", &swap.object_key)?,
            length: to_i64(entry.length, "length", &swap.object_key)?,
            max_timestamp: entry.max_timestamp,
        };
        insert_index_row(tx, &row, &swap.object_key)?;
    }
    recompute_segment(tx, tp, index_segment(first))?;
    tx.prepare_cached("INSERT INTO objects (object_key, size, created_at_ms) VALUES (?1, ?2, ?3)")
        .and_then(|mut stmt| {
            stmt.execute(params![
                swap.object_key,
                swap.object_size as i64,
                created_at_ms
            ])
        })
        .or_backend(|| format!("insert objects object_key={}", swap.object_key))?;
    Ok(())
}
