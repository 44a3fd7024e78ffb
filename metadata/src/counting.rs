//! A `MetadataStore` that counts what passes through the seam: calls per
//! kind, their outcomes (applied, not applied, fenced, uncertain), commit
//! latency, and the **conditional writes** each call costs in the ScyllaDB
//! shape of the seam (docs/design/0007-cluster-leadership.md):
//!
//! | call | conditional writes (LWT) |
//! |---|---|
//! | `commit_flush` | 1 (the session's journal row), whatever the partitions |
//! | `claim_partitions` | 1 per partition, + 1 per lapsed session it fences |
//! | `release_partitions` | 1 per partition |
//! | `register_broker`, `renew_lease`, `close_session` | 1 |
//! | `allocate_producer_ids` | 1 |
//! | `claim_groups`, `release_groups` | 1 per group (+ 1 per lapsed session fenced) |
//! | `save_group`, `commit_offsets`, `delete_group`, `delete_committed_offsets` | 1 (a conditional batch on the group's partition) |
//!
//! Everything else is a plain read or write. The SQLite backend runs each
//! call as one transaction; these counts are what the same calls cost a
//! ScyllaDB cluster, so a benchmark over SQLite shows the commit shape's
//! cost before the ScyllaDB backend exists.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use crate::model::{
    BrokerRegistration, BrokerSession, CommittedOffset, FlushCommit, GroupClaim, IndexEntry,
    IndexSegment, IndexSwap, PartitionClaim, PartitionState, ProducerState, RegisteredBroker,
    StoredGroup, Topic, TopicId, TopicPartition,
};
use crate::store::{
    ClusterStore, ErrorKind, GroupStore, LogStore, MetadataStore, Result, TopicStore,
};

/// What the seam saw, since the store was made.
#[derive(Clone, Debug, Default)]
pub struct SeamStats {
    /// Calls per method name.
    pub calls: BTreeMap<&'static str, u64>,
    /// Conditional writes the ScyllaDB shape issues for those calls.
    pub conditional_writes: u64,
    /// Of them, those of `commit_flush`.
    pub commit_conditional_writes: u64,
    /// Index entries committed (one per partition run of a flush).
    pub committed_entries: u64,
    /// Failed calls by kind.
    pub not_applied: u64,
    pub fenced: u64,
    pub uncertain: u64,
    /// Latency of every `commit_flush`, in call order.
    pub commit_latencies: Vec<Duration>,
}

/// Wraps a store and counts (see the module doc).
pub struct CountingStore<S> {
    inner: S,
    stats: Mutex<SeamStats>,
}

impl<S: MetadataStore> CountingStore<S> {
    pub fn new(inner: S) -> Self {
        CountingStore {
            inner,
            stats: Mutex::new(SeamStats::default()),
        }
    }

    pub fn stats(&self) -> SeamStats {
        self.stats.lock().expect("stats lock").clone()
    }

    /// Forgets what was counted so far.
    pub fn reset(&self) {
        *self.stats.lock().expect("stats lock") = SeamStats::default();
    }

    fn count<T>(&self, name: &'static str, lwt: u64, result: &Result<T>) {
        let mut s = self.stats.lock().expect("stats lock");
        *s.calls.entry(name).or_default() += 1;
        s.conditional_writes += lwt;
        if let Err(e) = result {
            match e.kind() {
                ErrorKind::NotApplied => s.not_applied += 1,
                ErrorKind::Fenced => s.fenced += 1,
                ErrorKind::Uncertain => s.uncertain += 1,
                ErrorKind::Other => {}
            }
        }
    }
}

#[async_trait]
impl<S: MetadataStore> ClusterStore for CountingStore<S> {
    async fn cluster_id(&self) -> Result<String> {
        let r = self.inner.cluster_id().await;
        self.count("cluster_id", 0, &r);
        r
    }
    async fn cluster_version(&self) -> Result<i64> {
        let r = self.inner.cluster_version().await;
        self.count("cluster_version", 0, &r);
        r
    }
    async fn register_broker(
        &self,
        registration: &BrokerRegistration,
        now_ms: i64,
        lease_ms: i64,
    ) -> Result<BrokerSession> {
        let r = self
            .inner
            .register_broker(registration, now_ms, lease_ms)
            .await;
        self.count("register_broker", 1, &r);
        r
    }
    async fn renew_lease(&self, session: BrokerSession, now_ms: i64, lease_ms: i64) -> Result<()> {
        let r = self.inner.renew_lease(session, now_ms, lease_ms).await;
        self.count("renew_lease", 1, &r);
        r
    }
    async fn close_session(&self, session: BrokerSession) -> Result<()> {
        let r = self.inner.close_session(session).await;
        self.count("close_session", 1, &r);
        r
    }
    async fn brokers(&self) -> Result<Vec<RegisteredBroker>> {
        let r = self.inner.brokers().await;
        self.count("brokers", 0, &r);
        r
    }
    async fn claim_partitions(
        &self,
        session: BrokerSession,
        partitions: &[TopicPartition],
        now_ms: i64,
    ) -> Result<Vec<Result<PartitionClaim>>> {
        let r = self
            .inner
            .claim_partitions(session, partitions, now_ms)
            .await;
        self.count("claim_partitions", partitions.len() as u64, &r);
        r
    }
    async fn release_partitions(
        &self,
        session: BrokerSession,
        partitions: &[(TopicPartition, i32)],
    ) -> Result<()> {
        let r = self.inner.release_partitions(session, partitions).await;
        self.count("release_partitions", partitions.len() as u64, &r);
        r
    }
}

#[async_trait]
impl<S: MetadataStore> TopicStore for CountingStore<S> {
    async fn create_topic(
        &self,
        name: &str,
        topic_id: TopicId,
        partition_count: i32,
        configs: BTreeMap<String, String>,
    ) -> Result<Topic> {
        let r = self
            .inner
            .create_topic(name, topic_id, partition_count, configs)
            .await;
        self.count("create_topic", 0, &r);
        r
    }
    async fn delete_topic(&self, topic_id: TopicId) -> Result<Topic> {
        let r = self.inner.delete_topic(topic_id).await;
        self.count("delete_topic", 0, &r);
        r
    }
    async fn topics(&self) -> Result<Vec<Topic>> {
        let r = self.inner.topics().await;
        self.count("topics", 0, &r);
        r
    }
    async fn set_topic_configs(
        &self,
        topic_id: TopicId,
        configs: BTreeMap<String, String>,
    ) -> Result<()> {
        let r = self.inner.set_topic_configs(topic_id, configs).await;
        self.count("set_topic_configs", 0, &r);
        r
    }
    async fn create_partitions(&self, topic_id: TopicId, partition_count: i32) -> Result<()> {
        let r = self
            .inner
            .create_partitions(topic_id, partition_count)
            .await;
        self.count("create_partitions", 0, &r);
        r
    }
    async fn partition_states(&self, topic_ids: &[TopicId]) -> Result<Vec<PartitionState>> {
        let r = self.inner.partition_states(topic_ids).await;
        self.count("partition_states", 0, &r);
        r
    }
}

#[async_trait]
impl<S: MetadataStore> LogStore for CountingStore<S> {
    async fn commit_flush(&self, commit: &FlushCommit) -> Result<()> {
        let started = Instant::now();
        let r = self.inner.commit_flush(commit).await;
        let took = started.elapsed();
        self.count("commit_flush", 1, &r);
        let mut s = self.stats.lock().expect("stats lock");
        s.commit_conditional_writes += 1;
        s.commit_latencies.push(took);
        if r.is_ok() {
            s.committed_entries += commit.entries.len() as u64;
        }
        r
    }
    async fn advance_log_start(
        &self,
        session: BrokerSession,
        topic_partition: TopicPartition,
        leader_epoch: i32,
        offset: i64,
    ) -> Result<i64> {
        let r = self
            .inner
            .advance_log_start(session, topic_partition, leader_epoch, offset)
            .await;
        self.count("advance_log_start", 0, &r);
        r
    }

    async fn swap_index_entries(&self, swap: &IndexSwap) -> Result<()> {
        let r = self.inner.swap_index_entries(swap).await;
        // One conditional write, like a flush's commit.
        self.count("swap_index_entries", 1, &r);
        r
    }

    async fn referenced_objects(&self, object_keys: &[String]) -> Result<Vec<String>> {
        let r = self.inner.referenced_objects(object_keys).await;
        self.count("referenced_objects", 0, &r);
        r
    }
    async fn forget_objects(&self, object_keys: &[String]) -> Result<()> {
        let r = self.inner.forget_objects(object_keys).await;
        self.count("forget_objects", 0, &r);
        r
    }
    async fn producer_states(&self) -> Result<Vec<ProducerState>> {
        let r = self.inner.producer_states().await;
        self.count("producer_states", 0, &r);
        r
    }
    async fn expire_producer_states(&self, before_ms: i64) -> Result<u64> {
        let r = self.inner.expire_producer_states(before_ms).await;
        self.count("expire_producer_states", 0, &r);
        r
    }
    async fn allocate_producer_ids(&self, count: i64) -> Result<i64> {
        let r = self.inner.allocate_producer_ids(count).await;
        self.count("allocate_producer_ids", 1, &r);
        r
    }
    async fn index_entries(
        &self,
        topic_partition: TopicPartition,
        from_offset: i64,
        max_entries: usize,
    ) -> Result<Vec<IndexEntry>> {
        let r = self
            .inner
            .index_entries(topic_partition, from_offset, max_entries)
            .await;
        self.count("index_entries", 0, &r);
        r
    }
    async fn index_segments(&self, topic_partition: TopicPartition) -> Result<Vec<IndexSegment>> {
        let r = self.inner.index_segments(topic_partition).await;
        self.count("index_segments", 0, &r);
        r
    }
    async fn index_entry_by_timestamp(
        &self,
        topic_partition: TopicPartition,
        timestamp: i64,
    ) -> Result<Option<IndexEntry>> {
        let r = self
            .inner
            .index_entry_by_timestamp(topic_partition, timestamp)
            .await;
        self.count("index_entry_by_timestamp", 0, &r);
        r
    }
    async fn index_entry_max_timestamp(
        &self,
        topic_partition: TopicPartition,
    ) -> Result<Option<IndexEntry>> {
        let r = self.inner.index_entry_max_timestamp(topic_partition).await;
        self.count("index_entry_max_timestamp", 0, &r);
        r
    }
}

#[async_trait]
impl<S: MetadataStore> GroupStore for CountingStore<S> {
    async fn claim_groups(
        &self,
        session: BrokerSession,
        group_ids: &[String],
        now_ms: i64,
    ) -> Result<Vec<Result<GroupClaim>>> {
        let r = self.inner.claim_groups(session, group_ids, now_ms).await;
        self.count("claim_groups", group_ids.len() as u64, &r);
        r
    }
    async fn release_groups(&self, session: BrokerSession, groups: &[(String, i32)]) -> Result<()> {
        let r = self.inner.release_groups(session, groups).await;
        self.count("release_groups", groups.len() as u64, &r);
        r
    }
    async fn save_group(&self, group: &StoredGroup, coordinator_epoch: i32) -> Result<()> {
        let r = self.inner.save_group(group, coordinator_epoch).await;
        self.count("save_group", 1, &r);
        r
    }
    async fn groups(&self) -> Result<Vec<StoredGroup>> {
        let r = self.inner.groups().await;
        self.count("groups", 0, &r);
        r
    }
    async fn delete_group(&self, group_id: &str, coordinator_epoch: i32) -> Result<()> {
        let r = self.inner.delete_group(group_id, coordinator_epoch).await;
        self.count("delete_group", 1, &r);
        r
    }
    async fn commit_offsets(
        &self,
        group_id: &str,
        coordinator_epoch: i32,
        offsets: &[CommittedOffset],
    ) -> Result<()> {
        let r = self
            .inner
            .commit_offsets(group_id, coordinator_epoch, offsets)
            .await;
        self.count("commit_offsets", 1, &r);
        r
    }
    async fn committed_offsets(&self, group_id: &str) -> Result<Vec<CommittedOffset>> {
        let r = self.inner.committed_offsets(group_id).await;
        self.count("committed_offsets", 0, &r);
        r
    }
    async fn delete_committed_offsets(
        &self,
        group_id: &str,
        coordinator_epoch: i32,
        partitions: &[(String, i32)],
    ) -> Result<()> {
        let r = self
            .inner
            .delete_committed_offsets(group_id, coordinator_epoch, partitions)
            .await;
        self.count("delete_committed_offsets", 1, &r);
        r
    }
}
