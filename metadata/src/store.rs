//! The `MetadataStore` seam: everything the broker and the log keep durably
//! outside the objects themselves.
//!
//! Two backends implement it (embedded SQLite now, ScyllaDB later) and both
//! run the same contract suite (`crate::contract`). Every method is atomic on
//! its own: when it returns `Ok`, the change is durable; when it returns an
//! error, nothing of it was applied (a `Timeout` is the one exception: the
//! caller must read back before deciding).

use std::collections::BTreeMap;

use async_trait::async_trait;

use crate::model::{
    CommittedOffset, FlushCommit, IndexEntry, PartitionState, ProducerState, StoredGroup, Topic,
    TopicId, TopicPartition,
};

/// What went wrong, in kinds the caller branches on.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("topic already exists name={0}")]
    TopicAlreadyExists(String),
    #[error("unknown topic {0}")]
    UnknownTopic(String),
    #[error("invalid partition count: {0}")]
    InvalidPartitions(String),
    /// A commit's leader epoch is not the partition's current one: another writer owns it.
    /// `expected` is the epoch the commit carried, `current` the partition's.
    #[error(
        "fenced topic_partition={topic_partition} expected_epoch={expected} current_epoch={current}"
    )]
    Fenced {
        topic_partition: TopicPartition,
        expected: i32,
        current: i32,
    },
    /// A commit does not start at the partition's committed next offset.
    /// `base_offset` is the commit's, `next_offset` the partition's.
    #[error(
        "offset mismatch topic_partition={topic_partition} base_offset={base_offset} next_offset={next_offset}"
    )]
    OffsetMismatch {
        topic_partition: TopicPartition,
        base_offset: i64,
        next_offset: i64,
    },
    /// The backend did not answer in time; the change may or may not have applied.
    #[error("metadata store timed out")]
    Timeout,
    #[error("metadata backend: {0}")]
    Backend(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[async_trait]
pub trait MetadataStore: Send + Sync + 'static {
    /// The cluster id: made at the first start, the same ever after.
    async fn cluster_id(&self) -> Result<String>;

    /// Creates a topic and its partitions (leader epoch 0, offsets 0).
    /// `TopicAlreadyExists` when the name is taken.
    async fn create_topic(
        &self,
        name: &str,
        topic_id: TopicId,
        partition_count: i32,
        configs: BTreeMap<String, String>,
    ) -> Result<Topic>;

    /// Deletes a topic with its partitions and index entries. `UnknownTopic` if absent.
    async fn delete_topic(&self, topic_id: TopicId) -> Result<Topic>;

    /// Every topic, ordered by name.
    async fn topics(&self) -> Result<Vec<Topic>>;

    /// Replaces the explicitly set configs of a topic. `UnknownTopic` if absent.
    async fn set_topic_configs(
        &self,
        topic_id: TopicId,
        configs: BTreeMap<String, String>,
    ) -> Result<()>;

    /// Grows a topic to `partition_count` partitions. `InvalidPartitions` unless
    /// it is larger than the current count; `UnknownTopic` if absent.
    async fn create_partitions(&self, topic_id: TopicId, partition_count: i32) -> Result<()>;

    /// The committed state of every partition, in no promised order.
    async fn partition_states(&self) -> Result<Vec<PartitionState>>;

    /// Commits one flush: every entry starts at its partition's `next_offset`
    /// under its leader epoch, or nothing is applied (`Fenced`, `OffsetMismatch`,
    /// `UnknownTopic` when the topic was deleted meanwhile). On success each
    /// partition's `next_offset` becomes its entry's `last_offset + 1`.
    ///
    /// In the same transaction, each of `producers` replaces the stored state
    /// of its (partition, producer id).
    ///
    /// A malformed commit is refused whole, before the store is read, as
    /// `Backend`: `leader_epochs` not one per entry, an entry of a partition
    /// that does not start right after that partition's previous entry in
    /// the commit (several entries of one partition are fine), an entry
    /// in another object than `object_key`, `last_offset < base_offset`, a
    /// byte count beyond `i64::MAX`, a producer state of a partition with no
    /// entry, a (partition, producer id) twice, or more than
    /// `PRODUCER_BATCHES_RETAINED` batches in one state.
    async fn commit_flush(&self, commit: &FlushCommit) -> Result<()>;

    /// Of `object_keys`, those some index entry names, in no promised order:
    /// objects garbage collection must keep.
    async fn referenced_objects(&self, object_keys: &[String]) -> Result<Vec<String>>;

    /// Forgets objects garbage collection deleted (their rows in the list of
    /// written objects). Unknown keys are ignored.
    async fn forget_objects(&self, object_keys: &[String]) -> Result<()>;

    /// The committed producer states of every partition, in no promised order.
    async fn producer_states(&self) -> Result<Vec<ProducerState>>;

    /// Deletes the producer states last written before `before_ms`
    /// (`producer.id.expiration.ms`); returns how many went.
    async fn expire_producer_states(&self, before_ms: i64) -> Result<u64>;

    /// Records a consumer group (creating or updating its protocol type).
    async fn save_group(&self, group: &StoredGroup) -> Result<()>;

    /// Every stored group, ordered by id.
    async fn groups(&self) -> Result<Vec<StoredGroup>>;

    /// Deletes a group with all its committed offsets (DeleteGroups). Not an
    /// error if it does not exist.
    async fn delete_group(&self, group_id: &str) -> Result<()>;

    /// Stores committed offsets of a group, each replacing the one of its
    /// (topic, partition), all in one transaction. Records the group (with an
    /// empty protocol type) if it was not stored.
    async fn commit_offsets(&self, group_id: &str, offsets: &[CommittedOffset]) -> Result<()>;

    /// A group's committed offsets, ordered by topic and partition.
    async fn committed_offsets(&self, group_id: &str) -> Result<Vec<CommittedOffset>>;

    /// Deletes a group's committed offsets of the given (topic, partition)s
    /// (OffsetDelete, retention). Absent ones are ignored.
    async fn delete_committed_offsets(
        &self,
        group_id: &str,
        partitions: &[(String, i32)],
    ) -> Result<()>;

    /// Reserves `count` (≥ 1) producer ids that were never reserved before, by
    /// any broker sharing the store, across restarts; returns the first.
    async fn allocate_producer_ids(&self, count: i64) -> Result<i64>;

    /// Index entries of a partition whose `last_offset >= from_offset`, in offset
    /// order, at most `max_entries`: the first is the entry holding `from_offset`
    /// when there is one. Empty for a partition with no entries or that does not
    /// exist (index reads do not check the topic).
    async fn index_entries(
        &self,
        topic_partition: TopicPartition,
        from_offset: i64,
        max_entries: usize,
    ) -> Result<Vec<IndexEntry>>;

    /// The first entry (lowest offset) whose `max_timestamp >= timestamp`.
    async fn index_entry_by_timestamp(
        &self,
        topic_partition: TopicPartition,
        timestamp: i64,
    ) -> Result<Option<IndexEntry>>;

    /// The entry holding the partition's largest timestamp (the lowest offset among ties).
    async fn index_entry_max_timestamp(
        &self,
        topic_partition: TopicPartition,
    ) -> Result<Option<IndexEntry>>;
}
