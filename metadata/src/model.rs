//! The metadata model: typed ids and the rows every backend stores.
//!
//! These are plain data with Kafka's names. They carry no behaviour beyond
//! small conveniences; the rules live in the broker and the log.

use std::collections::BTreeMap;
use std::fmt;

pub use uuid::Uuid;

/// A topic's id, as Kafka's `Uuid` (KIP-516). Never the nil UUID for a real topic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicId(pub Uuid);

impl TopicId {
    pub fn new_random() -> Self {
        TopicId(Uuid::new_v4())
    }
}

impl fmt::Display for TopicId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A partition of a topic, named by the topic's id (names can be reused after a delete).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    pub topic_id: TopicId,
    pub partition: i32,
}

impl TopicPartition {
    pub fn new(topic_id: TopicId, partition: i32) -> Self {
        TopicPartition {
            topic_id,
            partition,
        }
    }
}

impl fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.topic_id, self.partition)
    }
}

/// A topic as stored: name, id, partition count and the topic configs that were
/// set explicitly (Kafka's names, string values; defaults are not stored).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Topic {
    pub name: String,
    pub topic_id: TopicId,
    pub partition_count: i32,
    pub configs: BTreeMap<String, String>,
}

/// The committed state of one partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartitionState {
    pub topic_partition: TopicPartition,
    /// Kafka's leader epoch; also the ownership epoch every commit is checked against.
    pub leader_epoch: i32,
    /// First offset still readable.
    pub log_start_offset: i64,
    /// The next offset to be assigned: one past the last committed record.
    /// With no transactions this is also the high watermark.
    pub next_offset: i64,
}

/// One run of batches of one partition inside one object: the unit of the offset index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexEntry {
    pub topic_partition: TopicPartition,
    /// Offset of the first record of the first batch.
    pub base_offset: i64,
    /// Offset of the last record of the last batch.
    pub last_offset: i64,
    /// Object key the bytes live in.
    pub object_key: String,
    /// Byte position of the run inside the object.
    pub position: u64,
    /// Byte length of the run.
    pub length: u64,
    /// Largest batch max-timestamp in the run (milliseconds).
    pub max_timestamp: i64,
}

/// Everything one flush commits, applied in one transaction (or refused whole).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlushCommit {
    pub object_key: String,
    pub object_size: u64,
    /// One entry per partition in the object; each must start exactly at the
    /// partition's committed `next_offset`, under the partition's current leader epoch.
    pub entries: Vec<IndexEntry>,
    /// The leader epoch the writer believes it holds, per entry (same order as `entries`).
    pub leader_epochs: Vec<i32>,
}
