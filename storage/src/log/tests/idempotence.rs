//! Idempotent producers in the log: Kafka's sequence rules, duplicates of
//! committed and in-flight batches, restarts, and failures at every step of
//! a flush (object write, metadata commit, commit timeout).

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;
use metadata::{
    ClusterStore, FlushCommit, GroupStore, IndexEntry, LogStore, PartitionState, ProducerState,
    Topic, TopicId as Tid, TopicStore,
};
use protocol::testing::idempotent_batch;

use super::*;

const PID: i64 = 1_000;

fn idem(values: &[&str], epoch: i16, base_sequence: i32) -> Bytes {
    idempotent_batch(values, 1, PID, epoch, base_sequence)
}

async fn append(log: &Log, tp: TopicPartition, batch: Bytes) -> Result<AppendResult> {
    log.append(tp, batch, AppendOptions::default()).await
}

/// The base offset `batch` was written at (or first written at, for a duplicate).
async fn offset_of(log: &Log, tp: TopicPartition, batch: Bytes) -> i64 {
    append(log, tp, batch).await.unwrap().base_offset
}

/// The max timestamp written in `batch`'s header: what Kafka answers a
/// retry of it with, in `log_append_time_ms`.
fn max_timestamp_of(batch: &Bytes) -> i64 {
    protocol::batch::parse_header(batch).unwrap().max_timestamp
}

async fn all_values(log: &Log, tp: TopicPartition) -> Vec<(i64, String)> {
    values(&log.read(tp, 0, 1 << 24, true).await.unwrap().records)
}

#[tokio::test]
async fn a_retried_batch_gets_its_first_offsets_and_is_stored_once() {
    let f = fixture(LogConfig::default()).await;
    append_each(&f, &["plain"]).await;
    let first = append(&f.log, f.tp, idem(&["a", "b"], 0, 0)).await.unwrap();
    let second = append(&f.log, f.tp, idem(&["c"], 0, 2)).await.unwrap();
    let again = append(&f.log, f.tp, idem(&["a", "b"], 0, 0)).await.unwrap();
    assert_eq!((first.base_offset, second.base_offset), (1, 3));
    assert_eq!(again.base_offset, 1, "the duplicate's original offset");
    // A CreateTime topic: -1 for the write, the batch's max timestamp for
    // its retry, as Kafka answers.
    assert_eq!(first.log_append_time_ms, -1);
    let ab = idem(&["a", "b"], 0, 0);
    assert!(max_timestamp_of(&ab) > 0);
    assert_eq!(again.log_append_time_ms, max_timestamp_of(&ab));
    let next = append(&f.log, f.tp, idem(&["d"], 0, 3)).await.unwrap();
    assert_eq!(next.base_offset, 4);
    assert_eq!(
        all_values(&f.log, f.tp).await,
        vec![
            (0, "plain".into()),
            (1, "a".into()),
            (2, "b".into()),
            (3, "c".into()),
            (4, "d".into())
        ]
    );
}

#[tokio::test]
async fn a_duplicate_of_an_in_flight_batch_waits_for_the_original() {
    let f = fixture_over(
        LogConfig {
            flush_interval_ms: 0,
            ..LogConfig::default()
        },
        FaultyStore::new(true),
    )
    .await;
    let original = f
        .log
        .enqueue(f.tp, idem(&["a"], 0, 0), AppendOptions::default())
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    // The original's object write is stuck; its retry arrives.
    let retry = f
        .log
        .enqueue(f.tp, idem(&["a"], 0, 0), AppendOptions::default())
        .await
        .unwrap();
    let waited = tokio::time::timeout(std::time::Duration::from_millis(100), retry.wait()).await;
    assert!(waited.is_err(), "answered before the original committed");
    let retry = f
        .log
        .enqueue(f.tp, idem(&["a"], 0, 0), AppendOptions::default())
        .await
        .unwrap();
    f.store.gate.as_ref().unwrap().add_permits(100);
    assert_eq!(original.wait().await.unwrap().base_offset, 0);
    let answer = retry.wait().await.unwrap();
    assert_eq!(answer.base_offset, 0);
    assert_eq!(
        answer.log_append_time_ms,
        max_timestamp_of(&idem(&["a"], 0, 0))
    );
    assert_eq!(all_values(&f.log, f.tp).await, vec![(0, "a".into())]);
}

#[tokio::test]
async fn duplicates_in_one_flush_are_written_once() {
    let f = fixture(LogConfig {
        flush_interval_ms: 50,
        ..LogConfig::default()
    })
    .await;
    let (a, b) = tokio::join!(
        append(&f.log, f.tp, idem(&["a"], 0, 0)),
        append(&f.log, f.tp, idem(&["a"], 0, 0)),
    );
    assert_eq!((a.unwrap().base_offset, b.unwrap().base_offset), (0, 0));
    assert_eq!(all_values(&f.log, f.tp).await.len(), 1);
}

#[tokio::test]
async fn sequence_rules_refuse_gaps_old_epochs_and_new_epochs_not_at_zero() {
    let f = fixture(LogConfig::default()).await;
    append(&f.log, f.tp, idem(&["a"], 3, 0)).await.unwrap();
    let gap = append(&f.log, f.tp, idem(&["b"], 3, 2)).await;
    assert!(matches!(gap, Err(Error::OutOfOrderSequence(_))), "{gap:?}");
    let old = append(&f.log, f.tp, idem(&["b"], 2, 1)).await;
    assert!(
        matches!(old, Err(Error::InvalidProducerEpoch(_))),
        "{old:?}"
    );
    let new_at_five = append(&f.log, f.tp, idem(&["b"], 4, 5)).await;
    assert!(
        matches!(new_at_five, Err(Error::OutOfOrderSequence(_))),
        "{new_at_five:?}"
    );
    // Next in sequence, then a new epoch from zero: both written.
    assert_eq!(offset_of(&f.log, f.tp, idem(&["b"], 3, 1)).await, 1);
    assert_eq!(offset_of(&f.log, f.tp, idem(&["c"], 4, 0)).await, 2);
    // The old epoch's batch is no longer a duplicate once the epoch moved on.
    let stale = append(&f.log, f.tp, idem(&["b"], 3, 1)).await;
    assert!(
        matches!(stale, Err(Error::InvalidProducerEpoch(_))),
        "{stale:?}"
    );
    assert_eq!(all_values(&f.log, f.tp).await.len(), 3);
    // Other partitions keep their own sequences.
    let tp1 = TopicPartition::new(f.tp.topic_id, 1);
    assert!(append(&f.log, tp1, idem(&["x"], 4, 7)).await.is_ok());
}

#[tokio::test]
async fn sequences_wrap_around_after_i32_max() {
    let f = fixture(LogConfig::default()).await;
    append(&f.log, f.tp, idem(&["a", "b"], 0, i32::MAX - 1))
        .await
        .unwrap();
    let wrapped = append(&f.log, f.tp, idem(&["c"], 0, 0)).await.unwrap();
    assert_eq!(wrapped.base_offset, 2);
    // A batch that itself wraps: MAX, 0 — here 1..=2 follow it.
    let f = fixture(LogConfig::default()).await;
    append(&f.log, f.tp, idem(&["a", "b"], 0, i32::MAX))
        .await
        .unwrap();
    assert!(append(&f.log, f.tp, idem(&["c"], 0, 1)).await.is_ok());
    let not_next = append(&f.log, f.tp, idem(&["d"], 0, 0)).await;
    assert!(
        matches!(not_next, Err(Error::OutOfOrderSequence(_))),
        "{not_next:?}"
    );
}

#[tokio::test]
async fn only_the_last_five_batches_are_recognised() {
    let f = fixture(LogConfig::default()).await;
    for seq in 0..7 {
        append(&f.log, f.tp, idem(&["v"], 0, seq)).await.unwrap();
    }
    let fifth_last = append(&f.log, f.tp, idem(&["v"], 0, 2)).await.unwrap();
    assert_eq!(fifth_last.base_offset, 2);
    let sixth_last = append(&f.log, f.tp, idem(&["v"], 0, 1)).await;
    assert!(
        matches!(sixth_last, Err(Error::OutOfOrderSequence(_))),
        "{sixth_last:?}"
    );
}

#[tokio::test]
async fn an_expired_producer_is_unknown_and_may_start_anywhere() {
    let f = fixture(LogConfig {
        producer_id_expiration_ms: 1_000,
        producer_id_expiration_check_interval_ms: 10,
        ..LogConfig::default()
    })
    .await;
    append(&f.log, f.tp, idem(&["a"], 0, 0)).await.unwrap();
    let gap = append(&f.log, f.tp, idem(&["b"], 0, 9)).await;
    assert!(matches!(gap, Err(Error::OutOfOrderSequence(_))), "{gap:?}");
    f.clock.0.fetch_add(1_000, Ordering::Relaxed);
    // The periodic check also deletes the stored state.
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert!(f.metadata.producer_states().await.unwrap().is_empty());
    assert_eq!(offset_of(&f.log, f.tp, idem(&["b"], 0, 9)).await, 1);
    assert_eq!(f.metadata.producer_states().await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_retry_on_a_log_append_time_topic_gets_the_first_write_time() {
    let f = fixture(LogConfig::default()).await;
    let options = AppendOptions {
        log_append_time: true,
    };
    let first = f
        .log
        .append(f.tp, idem(&["a"], 0, 0), options)
        .await
        .unwrap();
    assert_eq!(first.log_append_time_ms, 9_999, "the fixture clock");
    f.clock.0.store(20_000, Ordering::SeqCst);
    let again = f
        .log
        .append(f.tp, idem(&["a"], 0, 0), options)
        .await
        .unwrap();
    assert_eq!((again.base_offset, again.log_append_time_ms), (0, 9_999));
}

#[tokio::test]
async fn producer_state_survives_a_restart() {
    let f = fixture(LogConfig::default()).await;
    let first = append(&f.log, f.tp, idem(&["a"], 0, 0)).await.unwrap();
    f.log.shutdown().await;
    let log = f.reopen().await;
    let again = append(&log, f.tp, idem(&["a"], 0, 0)).await.unwrap();
    assert_eq!(again.base_offset, first.base_offset);
    assert_eq!(
        again.log_append_time_ms,
        max_timestamp_of(&idem(&["a"], 0, 0))
    );
    let gap = append(&log, f.tp, idem(&["c"], 0, 2)).await;
    assert!(matches!(gap, Err(Error::OutOfOrderSequence(_))), "{gap:?}");
    assert_eq!(all_values(&log, f.tp).await, vec![(0, "a".into())]);
}

#[tokio::test]
async fn after_a_failed_write_later_batches_wait_for_the_retry() {
    let f = fixture_over(
        LogConfig {
            flush_interval_ms: 0,
            ..LogConfig::default()
        },
        FaultyStore::new(true),
    )
    .await;
    let gate = f.store.gate.as_ref().unwrap();
    // A new producer: its first batch's write fails while its second waits.
    let first = f
        .log
        .enqueue(f.tp, idem(&["a"], 0, 0), AppendOptions::default())
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let second = f
        .log
        .enqueue(f.tp, idem(&["b"], 0, 1), AppendOptions::default())
        .await
        .unwrap();
    f.store.failing.store(true, Ordering::SeqCst);
    gate.add_permits(1);
    assert!(matches!(first.wait().await, Err(Error::Unavailable(_))));
    f.store.failing.store(false, Ordering::SeqCst);
    gate.add_permits(100);
    // Sealed before the failure was handled (stale) or after it (a gap):
    // either way refused with a retriable error, never written ahead of "a".
    let second = second.wait().await;
    assert!(
        matches!(
            second,
            Err(Error::Unavailable(_) | Error::OutOfOrderSequence(_))
        ),
        "{second:?}"
    );
    let ahead = append(&f.log, f.tp, idem(&["b"], 0, 1)).await;
    assert!(
        matches!(ahead, Err(Error::OutOfOrderSequence(_))),
        "{ahead:?}"
    );
    assert_eq!(offset_of(&f.log, f.tp, idem(&["a"], 0, 0)).await, 0);
    assert_eq!(offset_of(&f.log, f.tp, idem(&["b"], 0, 1)).await, 1);
    assert_eq!(
        all_values(&f.log, f.tp).await,
        vec![(0, "a".into()), (1, "b".into())]
    );
}

/// How the next `commit_flush` misbehaves.
#[derive(Clone, Copy, Debug)]
enum CommitFault {
    /// Refused before anything is applied (a backend error).
    FailBefore,
    /// Applied, then reported as a timeout; the read-back works.
    TimeoutAfterApply,
    /// Not applied, reported as a timeout; the read-back works.
    TimeoutBeforeApply,
    /// Applied, then reported as a timeout, and the read-back fails too.
    TimeoutAfterApplyUnreadable,
    /// Never answers and never applies.
    Hang,
    /// Never answers; applies 500 ms later, after the log gave up on it.
    HangThenApplyLate,
    /// Not applied, reported as a timeout; meanwhile another broker claimed
    /// the partitions and committed entries with the very same offsets.
    TimeoutWhileAnotherWriterTakesOver,
}

/// The in-memory SQLite store with one injected fault in its next commit.
struct FaultyMetadata {
    inner: SqliteStore,
    /// When the late commit of `HangThenApplyLate` applied (or was refused).
    late: Arc<tokio::sync::Notify>,
    next_fault: Mutex<Option<CommitFault>>,
    unreadable: std::sync::atomic::AtomicBool,
}

impl FaultyMetadata {
    fn fail_next_commit(&self, fault: CommitFault) {
        *self.next_fault.lock().unwrap() = Some(fault);
    }
}

#[async_trait]
impl ClusterStore for FaultyMetadata {
    async fn cluster_id(&self) -> metadata::Result<String> {
        self.inner.cluster_id().await
    }
    async fn cluster_version(&self) -> metadata::Result<i64> {
        self.inner.cluster_version().await
    }
    async fn register_broker(
        &self,
        registration: &metadata::BrokerRegistration,
        now_ms: i64,
        lease_ms: i64,
    ) -> metadata::Result<metadata::BrokerSession> {
        self.inner
            .register_broker(registration, now_ms, lease_ms)
            .await
    }
    async fn renew_lease(
        &self,
        session: metadata::BrokerSession,
        now_ms: i64,
        lease_ms: i64,
    ) -> metadata::Result<()> {
        self.inner.renew_lease(session, now_ms, lease_ms).await
    }
    async fn close_session(&self, session: metadata::BrokerSession) -> metadata::Result<()> {
        self.inner.close_session(session).await
    }
    async fn brokers(&self) -> metadata::Result<Vec<metadata::RegisteredBroker>> {
        self.inner.brokers().await
    }
    async fn claim_partitions(
        &self,
        session: metadata::BrokerSession,
        partitions: &[TopicPartition],
        now_ms: i64,
    ) -> metadata::Result<Vec<metadata::Result<metadata::PartitionClaim>>> {
        self.inner
            .claim_partitions(session, partitions, now_ms)
            .await
    }
    async fn release_partitions(
        &self,
        session: metadata::BrokerSession,
        partitions: &[(TopicPartition, i32)],
    ) -> metadata::Result<()> {
        self.inner.release_partitions(session, partitions).await
    }
}

#[async_trait]
impl TopicStore for FaultyMetadata {
    async fn create_topic(
        &self,
        name: &str,
        topic_id: Tid,
        partition_count: i32,
        configs: BTreeMap<String, String>,
    ) -> metadata::Result<Topic> {
        self.inner
            .create_topic(name, topic_id, partition_count, configs)
            .await
    }
    async fn delete_topic(&self, topic_id: Tid) -> metadata::Result<Topic> {
        self.inner.delete_topic(topic_id).await
    }
    async fn topics(&self) -> metadata::Result<Vec<Topic>> {
        self.inner.topics().await
    }
    async fn set_topic_configs(
        &self,
        topic_id: Tid,
        configs: BTreeMap<String, String>,
    ) -> metadata::Result<()> {
        self.inner.set_topic_configs(topic_id, configs).await
    }
    async fn create_partitions(&self, topic_id: Tid, count: i32) -> metadata::Result<()> {
        self.inner.create_partitions(topic_id, count).await
    }
    async fn partition_states(&self, topic_ids: &[Tid]) -> metadata::Result<Vec<PartitionState>> {
        if self
            .unreadable
            .swap(false, std::sync::atomic::Ordering::SeqCst)
        {
            return Err(metadata::Error::Timeout);
        }
        self.inner.partition_states(topic_ids).await
    }
}

#[async_trait]
impl LogStore for FaultyMetadata {
    async fn advance_log_start(
        &self,
        session: metadata::BrokerSession,
        topic_partition: TopicPartition,
        leader_epoch: i32,
        offset: i64,
    ) -> metadata::Result<i64> {
        self.inner
            .advance_log_start(session, topic_partition, leader_epoch, offset)
            .await
    }

    async fn swap_index_entries(&self, swap: &metadata::IndexSwap) -> metadata::Result<()> {
        self.inner.swap_index_entries(swap).await
    }

    async fn commit_flush(&self, commit: &FlushCommit) -> metadata::Result<()> {
        let fault = self.next_fault.lock().unwrap().take();
        match fault {
            None => self.inner.commit_flush(commit).await,
            Some(CommitFault::FailBefore) => {
                Err(metadata::Error::Backend("injected commit failure".into()))
            }
            Some(CommitFault::TimeoutBeforeApply) => Err(metadata::Error::Timeout),
            Some(CommitFault::TimeoutWhileAnotherWriterTakesOver) => {
                let far = 1 << 50; // every lease has lapsed
                let heir = self
                    .inner
                    .register_broker(
                        &metadata::BrokerRegistration {
                            node_id: 99,
                            host: "heir".into(),
                            port: 1,
                            rack: None,
                        },
                        far,
                        1,
                    )
                    .await?;
                let partitions: Vec<_> = commit.entries.iter().map(|e| e.topic_partition).collect();
                let mut epochs = Vec::new();
                for answer in self.inner.claim_partitions(heir, &partitions, far).await? {
                    epochs.push(answer?.state.leader_epoch);
                }
                let mut theirs = commit.clone();
                theirs.session = heir;
                theirs.leader_epochs = epochs;
                theirs.object_key = "another-writers-object".into();
                for e in &mut theirs.entries {
                    e.object_key = theirs.object_key.clone();
                }
                theirs.producers.clear();
                self.inner.commit_flush(&theirs).await?;
                Err(metadata::Error::Timeout)
            }
            Some(CommitFault::TimeoutAfterApply) => {
                self.inner.commit_flush(commit).await?;
                Err(metadata::Error::Timeout)
            }
            Some(CommitFault::Hang) => std::future::pending().await,
            Some(CommitFault::HangThenApplyLate) => {
                let (store, commit) = (self.inner.clone(), commit.clone());
                let late = self.late.clone();
                // Outlives this call, which the log drops when it times out.
                tokio::spawn(async move {
                    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                    let _ = store.commit_flush(&commit).await;
                    late.notify_one();
                });
                std::future::pending().await
            }
            Some(CommitFault::TimeoutAfterApplyUnreadable) => {
                self.inner.commit_flush(commit).await?;
                self.unreadable
                    .store(true, std::sync::atomic::Ordering::SeqCst);
                Err(metadata::Error::Timeout)
            }
        }
    }
    async fn producer_states(&self) -> metadata::Result<Vec<ProducerState>> {
        self.inner.producer_states().await
    }
    async fn referenced_objects(&self, keys: &[String]) -> metadata::Result<Vec<String>> {
        self.inner.referenced_objects(keys).await
    }
    async fn forget_objects(&self, keys: &[String]) -> metadata::Result<()> {
        self.inner.forget_objects(keys).await
    }
    async fn expire_producer_states(&self, before_ms: i64) -> metadata::Result<u64> {
        self.inner.expire_producer_states(before_ms).await
    }
    async fn allocate_producer_ids(&self, count: i64) -> metadata::Result<i64> {
        self.inner.allocate_producer_ids(count).await
    }
    async fn index_entries(
        &self,
        tp: TopicPartition,
        from_offset: i64,
        max_entries: usize,
    ) -> metadata::Result<Vec<IndexEntry>> {
        // The read-back after a timed-out commit reads the index.
        if self
            .unreadable
            .swap(false, std::sync::atomic::Ordering::SeqCst)
        {
            return Err(metadata::Error::Timeout);
        }
        self.inner.index_entries(tp, from_offset, max_entries).await
    }
    async fn index_segments(
        &self,
        tp: TopicPartition,
    ) -> metadata::Result<Vec<metadata::IndexSegment>> {
        self.inner.index_segments(tp).await
    }
    async fn index_entry_by_timestamp(
        &self,
        tp: TopicPartition,
        timestamp: i64,
    ) -> metadata::Result<Option<IndexEntry>> {
        self.inner.index_entry_by_timestamp(tp, timestamp).await
    }
    async fn index_entry_max_timestamp(
        &self,
        tp: TopicPartition,
    ) -> metadata::Result<Option<IndexEntry>> {
        self.inner.index_entry_max_timestamp(tp).await
    }
}

#[async_trait]
impl GroupStore for FaultyMetadata {
    async fn claim_groups(
        &self,
        session: metadata::BrokerSession,
        group_ids: &[String],
        now_ms: i64,
    ) -> metadata::Result<Vec<metadata::Result<metadata::GroupClaim>>> {
        self.inner.claim_groups(session, group_ids, now_ms).await
    }
    async fn release_groups(
        &self,
        session: metadata::BrokerSession,
        groups: &[(String, i32)],
    ) -> metadata::Result<()> {
        self.inner.release_groups(session, groups).await
    }
    async fn save_group(&self, group: &metadata::StoredGroup, epoch: i32) -> metadata::Result<()> {
        self.inner.save_group(group, epoch).await
    }
    async fn groups(&self) -> metadata::Result<Vec<metadata::StoredGroup>> {
        self.inner.groups().await
    }
    async fn delete_group(&self, group_id: &str, epoch: i32) -> metadata::Result<()> {
        self.inner.delete_group(group_id, epoch).await
    }
    async fn commit_offsets(
        &self,
        group_id: &str,
        epoch: i32,
        offsets: &[metadata::CommittedOffset],
    ) -> metadata::Result<()> {
        self.inner.commit_offsets(group_id, epoch, offsets).await
    }
    async fn committed_offsets(
        &self,
        group_id: &str,
    ) -> metadata::Result<Vec<metadata::CommittedOffset>> {
        self.inner.committed_offsets(group_id).await
    }
    async fn delete_committed_offsets(
        &self,
        group_id: &str,
        epoch: i32,
        partitions: &[(String, i32)],
    ) -> metadata::Result<()> {
        self.inner
            .delete_committed_offsets(group_id, epoch, partitions)
            .await
    }
}

async fn faulty_metadata_log() -> (Log, Arc<FaultyMetadata>, TopicPartition) {
    let metadata = Arc::new(FaultyMetadata {
        inner: SqliteStore::open_in_memory().unwrap(),
        late: Arc::new(tokio::sync::Notify::new()),
        next_fault: Mutex::new(None),
        unreadable: std::sync::atomic::AtomicBool::new(false),
    });
    let topic_id = Tid::new_random();
    metadata
        .create_topic("t", topic_id, 1, BTreeMap::new())
        .await
        .unwrap();
    let log = crate::testing::open_leading(
        LogConfig {
            metadata_timeout_ms: 200,
            ..LogConfig::default()
        },
        Arc::new(MemoryStore::new()),
        metadata.clone(),
        Arc::new(FixedClock(AtomicI64::new(9_999))),
    )
    .await
    .unwrap();
    (log, metadata, TopicPartition::new(topic_id, 0))
}

/// For every commit fault: the produce in it is answered with a retriable
/// error unless the commit is known to have applied; its retry is written
/// exactly once; the log stays dense and in sequence.
#[tokio::test]
async fn commit_faults_never_lose_or_duplicate_a_retried_batch() {
    for fault in [
        CommitFault::FailBefore,
        CommitFault::TimeoutBeforeApply,
        CommitFault::TimeoutAfterApply,
        CommitFault::TimeoutAfterApplyUnreadable,
        CommitFault::Hang,
        CommitFault::HangThenApplyLate,
    ] {
        let (log, metadata, tp) = faulty_metadata_log().await;
        append(&log, tp, idem(&["a"], 0, 0)).await.unwrap();
        metadata.fail_next_commit(fault);
        let faulted = append(&log, tp, idem(&["b"], 0, 1)).await;
        match fault {
            // Read back: the commit applied, so it is acknowledged.
            CommitFault::TimeoutAfterApply => {
                assert_eq!(faulted.unwrap().base_offset, 1, "{fault:?}")
            }
            _ => assert!(
                matches!(faulted, Err(Error::Unavailable(_) | Error::Metadata(_))),
                "{fault:?}: {faulted:?}"
            ),
        }
        if let CommitFault::HangThenApplyLate = fault {
            // The retry comes after the commit the log gave up on applied.
            metadata.late.notified().await;
        }
        // The client retries the batch until it is acknowledged.
        let mut retry = append(&log, tp, idem(&["b"], 0, 1)).await;
        for _ in 0..3 {
            if retry.is_ok() {
                break;
            }
            retry = append(&log, tp, idem(&["b"], 0, 1)).await;
        }
        assert_eq!(retry.unwrap().base_offset, 1, "{fault:?}");
        assert_eq!(offset_of(&log, tp, idem(&["c"], 0, 2)).await, 2);
        assert_eq!(
            all_values(&log, tp).await,
            vec![(0, "a".into()), (1, "b".into()), (2, "c".into())],
            "{fault:?}"
        );
        let states = metadata.producer_states().await.unwrap();
        assert_eq!(states.len(), 1, "{fault:?}");
        assert_eq!(states[0].batches.last().unwrap().last_sequence, 2);
        log.shutdown().await;
    }
}

/// A commit times out without applying while another broker takes the
/// partition and commits an entry with the same offsets: the read-back must
/// not take that entry for ours (it names another object), so the produce
/// is refused with NotLeader, never acknowledged.
#[tokio::test]
async fn a_read_back_never_takes_another_writers_entry_for_ours() {
    let (log, metadata, tp) = faulty_metadata_log().await;
    append(&log, tp, idem(&["a"], 0, 0)).await.unwrap();
    metadata.fail_next_commit(CommitFault::TimeoutWhileAnotherWriterTakesOver);
    let faulted = append(&log, tp, idem(&["b"], 0, 1)).await;
    assert!(matches!(faulted, Err(Error::NotLeader(_))), "{faulted:?}");
    assert!(!log.leads(&tp));
    let entries = metadata.index_entries(tp, 0, 10).await.unwrap();
    assert_eq!(entries[1].object_key, "another-writers-object");
    log.shutdown().await;
}

#[tokio::test]
async fn a_hung_object_write_times_out_and_its_retry_is_written_once() {
    let f = fixture_over(
        LogConfig {
            flush_interval_ms: 0,
            object_write_timeout_ms: 100,
            ..LogConfig::default()
        },
        FaultyStore::new(true),
    )
    .await;
    let hung = append(&f.log, f.tp, idem(&["a"], 0, 0)).await;
    assert!(matches!(hung, Err(Error::Unavailable(_))), "{hung:?}");
    f.store.gate.as_ref().unwrap().add_permits(100);
    assert_eq!(offset_of(&f.log, f.tp, idem(&["a"], 0, 0)).await, 0);
    assert_eq!(offset_of(&f.log, f.tp, idem(&["a"], 0, 0)).await, 0);
    assert_eq!(offset_of(&f.log, f.tp, idem(&["b"], 0, 1)).await, 1);
    assert_eq!(
        all_values(&f.log, f.tp).await,
        vec![(0, "a".into()), (1, "b".into())]
    );
}
