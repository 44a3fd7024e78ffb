//! The `MetadataStore` seam: everything the broker and the log keep durably
//! outside the objects themselves.
//!
//! Two backends implement it (embedded SQLite now, ScyllaDB later) and both
//! run the same contract suite (`crate::contract`). Every method is atomic on
//! its own: when it returns `Ok`, the change is durable; when it returns an
//! error, nothing of it was applied (a `Timeout` is the one exception: the
//! caller must read back before deciding).
//!
//! The seam is four traits, one per concern; `MetadataStore` is all four
//! (implemented for every type that implements them):
//!
//! - `ClusterStore`: the broker registry (sessions, leases), partition
//!   leadership (claims, releases) and the cluster version;
//! - `TopicStore`: topics, their configs and their partitions' state;
//! - `LogStore`: flush commits, the offset index, written objects,
//!   producer states and producer-id blocks;
//! - `GroupStore`: consumer groups, their coordinators and committed offsets.

use std::collections::BTreeMap;

use async_trait::async_trait;

use crate::model::{
    BrokerRegistration, BrokerSession, CommittedOffset, FlushCommit, GroupClaim, IndexEntry,
    IndexSegment, IndexSwap, PartitionClaim, PartitionState, ProducerState, RegisteredBroker,
    StoredGroup, Topic, TopicId, TopicPartition,
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
    /// A log start offset beyond the partition's committed next offset.
    #[error(
        "log start beyond the log end topic_partition={topic_partition} offset={offset} next_offset={next_offset}"
    )]
    LogStartBeyondEnd {
        topic_partition: TopicPartition,
        offset: i64,
        next_offset: i64,
    },
    /// An index swap (object compaction) found the stored entries changed
    /// since they were read: nothing was applied.
    #[error("index swap refused topic_partition={topic_partition}: {reason}")]
    SwapRefused {
        topic_partition: TopicPartition,
        reason: String,
    },
    /// The backend did not answer in time; the change may or may not have applied.
    #[error("metadata store timed out")]
    Timeout,
    /// Another live broker holds this node id (its lease has not lapsed).
    #[error(
        "node_id={node_id} is held by a live broker at {host}:{port} (its lease runs until {lease_expires_ms} ms); \
         give this broker another node_id, or stop the other one"
    )]
    BrokerIdInUse {
        node_id: i32,
        host: String,
        port: i32,
        lease_expires_ms: i64,
    },
    /// The session is no longer its node id's current one, or it was closed
    /// or fenced: it leads nothing and may commit nothing.
    #[error("broker session {0} was fenced or replaced")]
    SessionFenced(BrokerSession),
    /// A live session leads the partition; it must release it (or its lease
    /// lapse) before another can claim it.
    #[error("topic_partition={topic_partition} is led by live session {leader}")]
    NotClaimable {
        topic_partition: TopicPartition,
        leader: BrokerSession,
    },
    /// A group write's coordinator epoch is not the group's current one:
    /// another broker claimed the group.
    #[error("group fenced group_id={group_id} expected_epoch={expected} current_epoch={current}")]
    GroupFenced {
        group_id: String,
        expected: i32,
        current: i32,
    },
    /// A live session coordinates the group; it must release it (or its
    /// lease lapse) before another can claim it.
    #[error("group_id={group_id} is coordinated by live session {coordinator}")]
    GroupNotClaimable {
        group_id: String,
        coordinator: BrokerSession,
    },
    /// The store could not take the request (busy, or too few replicas
    /// answered) and applied nothing: retry later. SQLite reports this when
    /// another process holds the file's write lock past the busy timeout;
    /// ScyllaDB's Unavailable error is the same.
    #[error("metadata store unavailable: {0}")]
    Unavailable(String),
    #[error("metadata backend: {0}")]
    Backend(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What a caller of a conditional write does with its failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The write was refused and nothing was applied; retrying may succeed
    /// (after re-reading what the refusal names).
    NotApplied,
    /// The writer lost the leadership (or its session) the write was
    /// conditioned on: drop what it led, never retry under the old epoch.
    Fenced,
    /// The outcome is unknown: read back before deciding.
    Uncertain,
    /// Anything else (a bad request, a broken store).
    Other,
}

impl Error {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Fenced { .. } | Error::SessionFenced(_) | Error::GroupFenced { .. } => {
                ErrorKind::Fenced
            }
            Error::OffsetMismatch { .. }
            | Error::LogStartBeyondEnd { .. }
            | Error::SwapRefused { .. }
            | Error::NotClaimable { .. }
            | Error::GroupNotClaimable { .. }
            | Error::TopicAlreadyExists(_)
            | Error::UnknownTopic(_)
            | Error::Unavailable(_) => ErrorKind::NotApplied,
            Error::Timeout => ErrorKind::Uncertain,
            Error::InvalidPartitions(_) | Error::BrokerIdInUse { .. } | Error::Backend(_) => {
                ErrorKind::Other
            }
        }
    }
}

/// The whole seam: what a backend implements, and what the broker and the
/// log hold (`Arc<dyn MetadataStore>`).
pub trait MetadataStore: ClusterStore + TopicStore + LogStore + GroupStore {}

impl<T: ClusterStore + TopicStore + LogStore + GroupStore> MetadataStore for T {}

/// The broker registry, partition leadership and the cluster version.
#[async_trait]
pub trait ClusterStore: Send + Sync + 'static {
    /// The cluster id: made at the first start, the same ever after.
    async fn cluster_id(&self) -> Result<String>;

    /// A number that changes whenever something every broker must learn
    /// changes: topics, partitions, configs, registrations, session ends,
    /// claims and releases (not lease renewals). Brokers watch it and reload
    /// only when it moved.
    async fn cluster_version(&self) -> Result<i64>;

    /// Starts a session for `registration.node_id` with a lease until
    /// `now_ms + lease_ms`; its incarnation is one more than the node id's
    /// previous one (1 for a new node id). Refused with `BrokerIdInUse`
    /// while the node id's current session is open and its lease has not
    /// lapsed at `now_ms`. A lapsed session replaced here leads nothing
    /// from then on.
    async fn register_broker(
        &self,
        registration: &BrokerRegistration,
        now_ms: i64,
        lease_ms: i64,
    ) -> Result<BrokerSession>;

    /// Renews the session's lease to `now_ms + lease_ms`. `SessionFenced`
    /// when the session is no longer current or no longer open.
    async fn renew_lease(&self, session: BrokerSession, now_ms: i64, lease_ms: i64) -> Result<()>;

    /// Ends the session (graceful shutdown): everything it led can be
    /// claimed at once. Not an error for a session already ended.
    async fn close_session(&self, session: BrokerSession) -> Result<()>;

    /// The latest session of every node id that ever registered, by node id.
    async fn brokers(&self) -> Result<Vec<RegisteredBroker>>;

    /// Makes `session` the leader of each partition it can take, raising
    /// the partition's leader epoch by one, and returns its committed state
    /// and producer states as of every commit made under earlier epochs.
    /// A partition can be taken when no session leads it, when `session`
    /// itself leads it, or when its leader's session has ended or been
    /// replaced — or its lease has lapsed at `now_ms`, in which case that
    /// session is fenced first (all its later commits are refused).
    ///
    /// One answer per partition, in order: `NotClaimable` when a live
    /// session leads it, `UnknownTopic` when it does not exist. The whole
    /// call fails with `SessionFenced` when `session` itself has ended.
    async fn claim_partitions(
        &self,
        session: BrokerSession,
        partitions: &[TopicPartition],
        now_ms: i64,
    ) -> Result<Vec<Result<PartitionClaim>>>;

    /// Gives up the leadership of each (partition, epoch) that `session`
    /// still holds at that epoch, so another broker may claim it at once.
    /// The caller must have committed or failed everything it had in flight
    /// for them. Others are ignored.
    async fn release_partitions(
        &self,
        session: BrokerSession,
        partitions: &[(TopicPartition, i32)],
    ) -> Result<()>;
}

/// Topics, their configs, and the committed state of their partitions.
#[async_trait]
pub trait TopicStore: Send + Sync + 'static {
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

    /// The committed state of every partition of `topic_ids`, by topic
    /// (in the order given) and partition; none for a topic that does not
    /// exist. A backend reads one topic at a time (one ScyllaDB partition
    /// each), never the whole table.
    async fn partition_states(&self, topic_ids: &[TopicId]) -> Result<Vec<PartitionState>>;
}

/// What the log commits and reads: flushes, the offset index, the objects
/// written, producer states and producer-id blocks.
#[async_trait]
pub trait LogStore: Send + Sync + 'static {
    /// Commits one flush: every entry starts at its partition's `next_offset`
    /// under its leader epoch, led by `commit.session`, or nothing is applied
    /// (`SessionFenced` when the session has ended or been replaced, `Fenced`
    /// for a partition it does not lead at that epoch, `OffsetMismatch`,
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

    /// Moves a partition's log start offset forward to `offset` (retention,
    /// DeleteRecords), led by `session` at `leader_epoch` (`SessionFenced`,
    /// `Fenced` otherwise, as for `commit_flush`), and removes the index
    /// entries wholly below it with their segments' summaries (the summary
    /// of a segment it cuts into counts only the entries kept). Returns the
    /// log start after the call: `offset`, or the stored one when that is
    /// already at or past it (nothing changes then). `LogStartBeyondEnd`
    /// when `offset` is beyond the committed `next_offset`; `UnknownTopic`
    /// when the partition does not exist.
    ///
    /// Reads from the log start on see no entry that ended below it;
    /// `referenced_objects` stops naming objects only removed entries named.
    async fn advance_log_start(
        &self,
        session: BrokerSession,
        topic_partition: TopicPartition,
        leader_epoch: i32,
        offset: i64,
    ) -> Result<i64>;

    /// Object compaction's commit: replaces the partition's entries
    /// `swap.old` by `swap.new` and records `swap.object_key` among the
    /// written objects, in one step. `SessionFenced` / `Fenced` as for
    /// `commit_flush`; `SwapRefused` when the stored entries from the first
    /// old base offset to the last old last offset are not exactly `old`, or
    /// the log start is past the first old base offset (a retention cut or
    /// another swap won); `Backend` for a swap that breaks its own rules
    /// (`commit_rules::check_index_swap`). Segment summaries keep their bytes
    /// and timestamps and count the new entries.
    ///
    /// Readers that listed `old` before the swap may still read the old
    /// objects: garbage collection leaves them for its grace period.
    async fn swap_index_entries(&self, swap: &IndexSwap) -> Result<()>;

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

    /// The partition's index segments, in offset order: one per segment
    /// holding an entry (`crate::model::INDEX_SEGMENT_OFFSETS`). Empty for a
    /// partition with no entries or that does not exist.
    async fn index_segments(&self, topic_partition: TopicPartition) -> Result<Vec<IndexSegment>>;

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

    /// Reserves `count` (≥ 1) producer ids that were never reserved before, by
    /// any broker sharing the store, across restarts; returns the first.
    async fn allocate_producer_ids(&self, count: i64) -> Result<i64>;
}

/// Consumer groups: their coordinators (claimed like partitions, with a
/// coordinator epoch that every group write is conditioned on), their
/// protocol types and their committed offsets.
///
/// A group's coordinator row outlives the group (DeleteGroups, retention):
/// its epoch never goes back, so a write under an epoch from before the
/// group was deleted stays refused.
#[async_trait]
pub trait GroupStore: Send + Sync + 'static {
    /// Makes `session` the coordinator of each group it can take, raising
    /// the group's coordinator epoch by one (the first claim of a group id
    /// gives epoch 1), and returns what the group has stored as of every
    /// write made under earlier epochs. Takeable as partitions are
    /// (`ClusterStore::claim_partitions`): no coordinator, released, `session`
    /// itself, a coordinator whose session ended, or one whose lease lapsed
    /// at `now_ms` (which fences that session first).
    ///
    /// One answer per group, in order: `GroupNotClaimable` when a live
    /// session coordinates it. The whole call fails with `SessionFenced`
    /// when `session` itself has ended.
    async fn claim_groups(
        &self,
        session: BrokerSession,
        group_ids: &[String],
        now_ms: i64,
    ) -> Result<Vec<Result<GroupClaim>>>;

    /// Gives up each (group, coordinator epoch) that `session` still holds
    /// at that epoch, so another broker may claim it at once. Others are
    /// ignored.
    async fn release_groups(&self, session: BrokerSession, groups: &[(String, i32)]) -> Result<()>;

    /// Records a consumer group (creating or updating its protocol type),
    /// under `coordinator_epoch`: `GroupFenced` unless it is the group's
    /// current one.
    async fn save_group(&self, group: &StoredGroup, coordinator_epoch: i32) -> Result<()>;

    /// Every stored group, ordered by id.
    async fn groups(&self) -> Result<Vec<StoredGroup>>;

    /// Deletes a group with all its committed offsets (DeleteGroups), under
    /// `coordinator_epoch` (`GroupFenced` otherwise). Not an error if it is
    /// not stored.
    async fn delete_group(&self, group_id: &str, coordinator_epoch: i32) -> Result<()>;

    /// Stores committed offsets of a group, each replacing the one of its
    /// (topic, partition), all in one transaction, under `coordinator_epoch`
    /// (`GroupFenced` otherwise). Records the group (with an empty protocol
    /// type) if it was not stored.
    async fn commit_offsets(
        &self,
        group_id: &str,
        coordinator_epoch: i32,
        offsets: &[CommittedOffset],
    ) -> Result<()>;

    /// A group's committed offsets, ordered by topic and partition.
    async fn committed_offsets(&self, group_id: &str) -> Result<Vec<CommittedOffset>>;

    /// Deletes a group's committed offsets of the given (topic, partition)s
    /// (OffsetDelete, retention), under `coordinator_epoch` (`GroupFenced`
    /// otherwise). Absent ones are ignored.
    async fn delete_committed_offsets(
        &self,
        group_id: &str,
        coordinator_epoch: i32,
        partitions: &[(String, i32)],
    ) -> Result<()>;
}
