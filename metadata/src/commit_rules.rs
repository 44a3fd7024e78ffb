//! The shape every backend requires of a flush commit before it reads its
//! store (`LogStore::commit_flush`): checked once, here, so that SQLite and
//! ScyllaDB refuse exactly the same malformed commits.

use std::collections::{HashMap, HashSet};

use crate::model::{FlushCommit, IndexEntry, IndexSwap, PRODUCER_BATCHES_RETAINED, index_segment};
use crate::store::{Error, Result};

/// `Backend` naming the first rule `commit` breaks: epochs not one per
/// entry; an entry of a partition that does not start right after that
/// partition's previous entry in the commit; an empty or inverted offset
/// range (or one ending at `i64::MAX`, whose next offset would overflow); an
/// entry in another object; a byte count beyond `i64`; a producer state of a
/// partition with no entry; a (partition, producer id) twice; more than
/// `PRODUCER_BATCHES_RETAINED` batches in one state.
pub fn check_flush_commit(commit: &FlushCommit) -> Result<()> {
    let key = &commit.object_key;
    let invalid = |what: String| {
        Err(Error::Backend(format!(
            "invalid flush commit object_key={key} {what}"
        )))
    };
    if commit.entries.len() != commit.leader_epochs.len() {
        return invalid(format!(
            "entries={} leader_epochs={}",
            commit.entries.len(),
            commit.leader_epochs.len()
        ));
    }
    to_i64(commit.object_size, "object_size", key)?;
    let mut last_of = HashMap::new();
    for entry in &commit.entries {
        let tp = entry.topic_partition;
        if let Some(previous_last) = last_of.insert(tp, entry.last_offset)
            && entry.base_offset != previous_last + 1
        {
            return invalid(format!(
                "topic_partition={tp} base_offset={} does not follow last_offset={previous_last}",
                entry.base_offset
            ));
        }
        if entry.last_offset < entry.base_offset || entry.last_offset == i64::MAX {
            return invalid(format!(
                "topic_partition={tp} base_offset={} last_offset={}",
                entry.base_offset, entry.last_offset
            ));
        }
        if entry.object_key != commit.object_key {
            return invalid(format!(
                "topic_partition={tp} entry_object_key={}",
                entry.object_key
            ));
        }
        to_i64(entry.position, "position", key)?;
        to_i64(entry.length, "length", key)?;
    }
    let mut seen = HashSet::new();
    for state in &commit.producers {
        let tp = state.topic_partition;
        let pid = state.producer_id;
        if !last_of.contains_key(&tp) {
            return invalid(format!(
                "producer_id={pid} of topic_partition={tp} without an entry"
            ));
        }
        if !seen.insert((tp, pid)) {
            return invalid(format!("duplicate producer_id={pid} topic_partition={tp}"));
        }
        if state.batches.len() > PRODUCER_BATCHES_RETAINED {
            return invalid(format!(
                "producer_id={pid} topic_partition={tp} batches={}",
                state.batches.len()
            ));
        }
    }
    Ok(())
}

/// `InvalidPartitions` for a topic created with fewer than one partition,
/// the same from every backend.
pub fn check_partition_count(name: &str, partition_count: i32) -> Result<()> {
    if partition_count < 1 {
        return Err(Error::InvalidPartitions(format!(
            "partition_count={partition_count} must be at least 1 name={name}"
        )));
    }
    Ok(())
}

/// `value` as the signed 64-bit integer both stores keep, or `Backend`.
pub fn to_i64(value: u64, name: &str, object_key: &str) -> Result<i64> {
    i64::try_from(value).map_err(|_| {
        Error::Backend(format!(
            "invalid flush commit object_key={object_key} {name}={value} exceeds i64"
        ))
    })
}

/// `Backend` naming the first rule an index swap breaks: `old` or `new`
/// empty or not contiguous (each entry starts right after the previous one)
/// or not of the swap's partition; `old` spanning two index segments; `new`
/// not covering exactly `old`'s offsets, or with other total bytes or
/// another largest timestamp; a `new` entry in another object than
/// `object_key`, or one that does not start where an `old` entry starts
/// (batches are never split). `old` is compared with the store by the backend.
pub fn check_index_swap(swap: &IndexSwap) -> Result<()> {
    let tp = swap.topic_partition;
    let invalid = |what: &str| {
        Err(Error::Backend(format!(
            "invalid index swap topic_partition={tp} object_key={} {what}",
            swap.object_key
        )))
    };
    let contiguous = |entries: &[IndexEntry]| {
        !entries.is_empty()
            && entries
                .iter()
                .all(|e| e.topic_partition == tp && e.last_offset >= e.base_offset)
            && entries
                .windows(2)
                .all(|w| w[1].base_offset == w[0].last_offset + 1)
    };
    if !contiguous(&swap.old) || !contiguous(&swap.new) {
        return invalid("entries empty, of another partition, or not contiguous");
    }
    let (old_first, old_last) = (&swap.old[0], &swap.old[swap.old.len() - 1]);
    let (new_first, new_last) = (&swap.new[0], &swap.new[swap.new.len() - 1]);
    if index_segment(old_first.base_offset) != index_segment(old_last.base_offset) {
        return invalid("old entries span two index segments");
    }
    if new_first.base_offset != old_first.base_offset
        || new_last.last_offset != old_last.last_offset
    {
        return invalid("new entries cover other offsets than old");
    }
    let bytes = |entries: &[IndexEntry]| entries.iter().map(|e| e.length as u128).sum::<u128>();
    let max_ts = |entries: &[IndexEntry]| entries.iter().map(|e| e.max_timestamp).max();
    if bytes(&swap.old) != bytes(&swap.new) || max_ts(&swap.old) != max_ts(&swap.new) {
        return invalid("new entries hold other bytes or another largest timestamp than old");
    }
    let old_bases: HashSet<i64> = swap.old.iter().map(|e| e.base_offset).collect();
    if swap
        .new
        .iter()
        .any(|e| e.object_key != swap.object_key || !old_bases.contains(&e.base_offset))
    {
        return invalid("a new entry is in another object or starts inside an old entry");
    }
    to_i64(swap.object_size, "object_size", &swap.object_key)?;
    Ok(())
}
