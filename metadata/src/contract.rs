//! The contract every `MetadataStore` backend keeps, written once and run
//! against each backend (SQLite now, ScyllaDB later) so they cannot drift.
//!
//! Each check is a `pub async fn` taking a fresh, empty store and panicking
//! with a message on the first broken promise. A backend's test file runs them
//! all with one line, which makes one `#[tokio::test]` per check, named after it:
//!
//! ```no_run
//! mod in_memory {
//!     metadata::metadata_store_contract_tests!(|| async {
//!         metadata::SqliteStore::open_in_memory().expect("open in-memory store")
//!     });
//! }
//! ```
//!
//! The factory may return the store itself or any `StoreFixture` that also
//! owns what must outlive it (a temporary directory, a keyspace to drop).
//!
//! This suite checks behaviour seen through the trait only. Durability across
//! a restart, connection sharing and timeouts depend on the backend and are
//! tested in its own test file.

use std::collections::BTreeMap;

use crate::model::{
    BrokerRegistration, BrokerSession, CommittedOffset, FlushCommit, GroupClaim, IndexEntry,
    PartitionState, ProducerBatch, ProducerState, SessionStatus, StoredGroup, Topic, TopicId,
    TopicPartition,
};
use crate::store::{Error, MetadataStore};

/// What a backend's factory hands the suite: a fresh, empty store, plus
/// whatever must live as long as it.
pub trait StoreFixture: Send + Sync + 'static {
    fn store(&self) -> &dyn MetadataStore;
}

impl<S: MetadataStore> StoreFixture for S {
    fn store(&self) -> &dyn MetadataStore {
        self
    }
}

/// Expands to one `#[tokio::test]` per contract check. The argument is a
/// closure returning a future of a fresh `StoreFixture`; it is called once per test.
#[macro_export]
macro_rules! metadata_store_contract_tests {
    ($make_fixture:expr) => {
        $crate::metadata_store_contract_tests!(unless None::<String>; $make_fixture);
    };
    // `$skip`: `Some(why)` skips every check, printing `why` once.
    (unless $skip:expr; $make_fixture:expr) => {
        $crate::metadata_store_contract_tests!(@checks $skip; $make_fixture;
            cluster_id_is_stable_and_in_kafka_form,
            created_topic_is_listed_with_partitions_at_epoch_zero,
            topics_are_listed_by_name,
            create_topic_with_taken_name_returns_topic_already_exists,
            create_topic_without_partitions_returns_invalid_partitions,
            set_topic_configs_replaces_all_configs,
            create_partitions_adds_empty_partitions_and_keeps_existing_ones,
            create_partitions_refuses_shrink_and_equal_count,
            operations_on_unknown_topic_return_unknown_topic,
            commit_flush_advances_next_offset_and_appends_index,
            commit_flush_across_partitions_is_all_or_nothing,
            commit_flush_with_wrong_leader_epoch_is_fenced,
            commit_flush_with_gap_returns_offset_mismatch,
            commit_flush_overlapping_committed_offsets_returns_offset_mismatch,
            commit_flush_to_deleted_topic_returns_unknown_topic,
            commit_flush_with_one_epoch_per_entry_missing_is_refused_whole,
            commit_flush_takes_several_contiguous_entries_of_one_partition,
            index_entries_from_inside_an_entry_start_at_that_entry,
            index_entries_are_in_offset_order_and_honour_max_entries,
            index_entries_past_the_end_or_of_unknown_partition_are_empty,
            index_entry_by_timestamp_returns_lowest_offset_reaching_timestamp,
            index_entry_max_timestamp_returns_lowest_offset_among_ties,
            delete_topic_removes_partitions_and_index,
            referenced_objects_are_those_index_entries_name,
            topic_name_is_reusable_after_delete_with_a_new_id,
            producer_states_are_committed_with_the_flush_and_replaced,
            producer_states_of_a_refused_commit_are_not_stored,
            malformed_producer_states_are_refused_whole,
            producer_states_expire_and_go_with_their_topic,
            producer_ids_are_never_allocated_twice,
            committed_offsets_are_replaced_per_partition_and_kept_per_group,
            groups_are_saved_listed_and_deleted_with_their_offsets,
            committed_offsets_are_deleted_per_partition,
            a_live_node_id_cannot_register_twice_until_its_lease_lapses,
            an_ended_or_replaced_session_cannot_renew_or_commit,
            a_live_leader_keeps_its_partitions_until_it_releases_them,
            a_claim_after_a_lapsed_lease_fences_every_commit_of_the_old_leader,
            two_writers_racing_for_a_partition_one_wins_every_loser_commit_is_refused,
            a_claim_hands_over_next_offset_and_producer_states,
            the_cluster_version_moves_with_what_brokers_must_learn,
            a_group_claim_raises_the_coordinator_epoch_and_hands_over_what_is_stored,
            a_live_coordinator_keeps_its_group_until_its_lease_lapses,
            a_deleted_group_keeps_its_coordinator_epoch,
            index_segments_summarise_entries_by_the_segment_of_their_base_offset,
            advance_log_start_drops_entries_wholly_below_and_keeps_the_one_it_cuts,
            advance_log_start_drops_whole_segments_below_the_first_kept_entry,
            advance_log_start_is_fenced_like_a_commit,
            an_index_swap_replaces_the_run_and_only_once,
            an_index_swap_loses_to_a_retention_cut_and_to_a_new_leader,
        );
    };
    (@checks $skip:expr; $make_fixture:expr; $($check:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $check() {
                if let Some(why) = $skip {
                    $crate::contract::print_skip_once(&why);
                    return;
                }
                let fixture = ($make_fixture)().await;
                $crate::contract::$check($crate::contract::StoreFixture::store(&fixture)).await;
            }
        )*
    };
}

/// Prints why a suite is skipped, once per test process, straight to
/// stderr (the test harness captures `eprintln!` of passing tests).
pub fn print_skip_once(why: &str) {
    use std::io::Write;
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = writeln!(std::io::stderr(), "skipped: {why}");
    });
}

/// Fails the check unless `$result` is an `Err` matching `$pattern`.
macro_rules! assert_err {
    ($result:expr, $pattern:pat $(if $guard:expr)?) => {
        match $result {
            Err($pattern) $(if $guard)? => {}
            other => panic!("expected Err({}), got {other:?}", stringify!($pattern)),
        }
    };
}

/// Byte length every test entry gets inside its object.
const ENTRY_LENGTH_BYTES: u64 = 100;

fn configs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect()
}

/// The session the checks write with (`flush` commits as it): node 1's
/// first session, whose lease never lapses in a check.
const WRITER: BrokerSession = BrokerSession {
    node_id: 1,
    incarnation: 1,
};

/// The leader epoch a partition has after its first claim.
const FIRST_EPOCH: i32 = 1;

/// A lease no check outlives.
const LONG_LEASE_MS: i64 = 1 << 40;

fn registration(node_id: i32) -> BrokerRegistration {
    BrokerRegistration {
        node_id,
        host: format!("broker-{node_id}.test"),
        port: 9092,
        rack: None,
    }
}

/// Registers `WRITER` (once) and makes it claim every partition it does
/// not lead yet.
async fn lead_all(store: &dyn MetadataStore) {
    match store
        .register_broker(&registration(WRITER.node_id), 0, LONG_LEASE_MS)
        .await
    {
        Ok(session) => assert_eq!(session, WRITER, "first session of a node id"),
        Err(Error::BrokerIdInUse { .. }) => {}
        Err(e) => panic!("register_broker: {e}"),
    }
    let unled: Vec<TopicPartition> = states(store)
        .await
        .into_iter()
        .filter(|s| s.leader != Some(WRITER))
        .map(|s| s.topic_partition)
        .collect();
    for answer in store
        .claim_partitions(WRITER, &unled, 0)
        .await
        .expect("claim_partitions")
    {
        answer.expect("claim of a partition no one leads");
    }
}

/// Creates a topic with a random id and no configs, its partitions led by
/// `WRITER`.
async fn create(store: &dyn MetadataStore, name: &str, partition_count: i32) -> Topic {
    let topic = store
        .create_topic(
            name,
            TopicId::new_random(),
            partition_count,
            BTreeMap::new(),
        )
        .await
        .unwrap_or_else(|e| panic!("create_topic name={name}: {e}"));
    lead_all(store).await;
    topic
}

/// An index entry; `flush` fills in its object key and byte range.
fn entry(
    topic_partition: TopicPartition,
    base_offset: i64,
    last_offset: i64,
    max_timestamp: i64,
) -> IndexEntry {
    IndexEntry {
        topic_partition,
        base_offset,
        last_offset,
        object_key: String::new(),
        position: 0,
        length: ENTRY_LENGTH_BYTES,
        max_timestamp,
    }
}

/// A flush of `entries` into object `object_key`, laid out back to back, by
/// `WRITER`, every partition at its first claim's epoch.
fn flush(object_key: &str, entries: Vec<IndexEntry>) -> FlushCommit {
    let entries: Vec<IndexEntry> = entries
        .into_iter()
        .enumerate()
        .map(|(i, e)| IndexEntry {
            object_key: object_key.to_string(),
            position: i as u64 * ENTRY_LENGTH_BYTES,
            ..e
        })
        .collect();
    FlushCommit {
        object_key: object_key.to_string(),
        session: WRITER,
        object_size: entries.len() as u64 * ENTRY_LENGTH_BYTES,
        leader_epochs: vec![FIRST_EPOCH; entries.len()],
        entries,
        producers: Vec::new(),
    }
}

async fn commit_ok(store: &dyn MetadataStore, commit: &FlushCommit) {
    store
        .commit_flush(commit)
        .await
        .unwrap_or_else(|e| panic!("commit_flush object_key={}: {e}", commit.object_key));
}

async fn states(store: &dyn MetadataStore) -> Vec<PartitionState> {
    let topic_ids: Vec<TopicId> = store
        .topics()
        .await
        .expect("topics")
        .iter()
        .map(|t| t.topic_id)
        .collect();
    store
        .partition_states(&topic_ids)
        .await
        .expect("partition_states")
}

async fn state(store: &dyn MetadataStore, tp: TopicPartition) -> Option<PartitionState> {
    states(store)
        .await
        .into_iter()
        .find(|s| s.topic_partition == tp)
}

async fn next_offset(store: &dyn MetadataStore, tp: TopicPartition) -> i64 {
    state(store, tp)
        .await
        .unwrap_or_else(|| panic!("no partition state topic_partition={tp}"))
        .next_offset
}

async fn all_entries(store: &dyn MetadataStore, tp: TopicPartition) -> Vec<IndexEntry> {
    store
        .index_entries(tp, 0, usize::MAX)
        .await
        .expect("index_entries")
}

fn base_offsets(entries: &[IndexEntry]) -> Vec<i64> {
    entries.iter().map(|e| e.base_offset).collect()
}

pub async fn cluster_id_is_stable_and_in_kafka_form(store: &dyn MetadataStore) {
    let first = store.cluster_id().await.expect("cluster_id");
    let second = store.cluster_id().await.expect("cluster_id");
    assert_eq!(first, second, "cluster id changed between calls");
    assert_eq!(first.len(), 22, "cluster id {first:?} is not 22 characters");
    assert!(
        first
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
        "cluster id {first:?} is not URL-safe base64"
    );
}

pub async fn created_topic_is_listed_with_partitions_at_epoch_zero(store: &dyn MetadataStore) {
    let topic_id = TopicId::new_random();
    let cfg = configs(&[("cleanup.policy", "delete"), ("retention.ms", "60000")]);
    let created = store
        .create_topic("orders", topic_id, 3, cfg.clone())
        .await
        .expect("create_topic");
    let expected = Topic {
        name: "orders".into(),
        topic_id,
        partition_count: 3,
        configs: cfg,
    };
    assert_eq!(created, expected);
    assert_eq!(store.topics().await.expect("topics"), vec![expected]);

    let mut states = states(store).await;
    states.sort_by_key(|s| s.topic_partition);
    let expected: Vec<PartitionState> = (0..3)
        .map(|partition| PartitionState {
            topic_partition: TopicPartition::new(topic_id, partition),
            leader_epoch: 0,
            leader: None,
            log_start_offset: 0,
            next_offset: 0,
        })
        .collect();
    assert_eq!(states, expected);
}

pub async fn topics_are_listed_by_name(store: &dyn MetadataStore) {
    for name in ["payments", "audit", "orders"] {
        create(store, name, 1).await;
    }
    let names: Vec<String> = store
        .topics()
        .await
        .expect("topics")
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(names, ["audit", "orders", "payments"]);
}

pub async fn create_topic_with_taken_name_returns_topic_already_exists(store: &dyn MetadataStore) {
    let original = create(store, "orders", 2).await;
    let result = store
        .create_topic("orders", TopicId::new_random(), 5, configs(&[("a", "b")]))
        .await;
    assert_err!(result, Error::TopicAlreadyExists(_));
    assert_eq!(store.topics().await.expect("topics"), vec![original]);
    assert_eq!(
        states(store).await.len(),
        2,
        "the refused create added partitions"
    );
}

pub async fn create_topic_without_partitions_returns_invalid_partitions(store: &dyn MetadataStore) {
    for partition_count in [0, -1] {
        let result = store
            .create_topic(
                "orders",
                TopicId::new_random(),
                partition_count,
                BTreeMap::new(),
            )
            .await;
        assert_err!(result, Error::InvalidPartitions(_));
    }
    assert!(store.topics().await.expect("topics").is_empty());
}

pub async fn set_topic_configs_replaces_all_configs(store: &dyn MetadataStore) {
    let topic_id = TopicId::new_random();
    store
        .create_topic("orders", topic_id, 1, configs(&[("retention.ms", "1000")]))
        .await
        .expect("create_topic");
    let stored_configs = || async {
        let topics = store.topics().await.expect("topics");
        assert_eq!(topics.len(), 1);
        topics[0].configs.clone()
    };

    let replaced = configs(&[("cleanup.policy", "delete"), ("max.message.bytes", "2048")]);
    store
        .set_topic_configs(topic_id, replaced.clone())
        .await
        .expect("set_topic_configs");
    assert_eq!(
        stored_configs().await,
        replaced,
        "old config kept or new one lost"
    );

    let changed = configs(&[("cleanup.policy", "compact")]);
    store
        .set_topic_configs(topic_id, changed.clone())
        .await
        .expect("set_topic_configs");
    assert_eq!(stored_configs().await, changed);

    store
        .set_topic_configs(topic_id, BTreeMap::new())
        .await
        .expect("set_topic_configs");
    assert!(stored_configs().await.is_empty());
}

pub async fn create_partitions_adds_empty_partitions_and_keeps_existing_ones(
    store: &dyn MetadataStore,
) {
    let topic = create(store, "orders", 2).await;
    let tp0 = TopicPartition::new(topic.topic_id, 0);
    commit_ok(store, &flush("o1", vec![entry(tp0, 0, 9, 100)])).await;

    store
        .create_partitions(topic.topic_id, 5)
        .await
        .expect("create_partitions");

    let topics = store.topics().await.expect("topics");
    assert_eq!(topics[0].partition_count, 5);
    let mut states = states(store).await;
    states.sort_by_key(|s| s.topic_partition);
    let partitions: Vec<i32> = states.iter().map(|s| s.topic_partition.partition).collect();
    assert_eq!(partitions, [0, 1, 2, 3, 4]);
    assert_eq!(
        states[0].next_offset, 10,
        "growing reset an existing partition"
    );
    assert_eq!(
        states[1].leader_epoch, FIRST_EPOCH,
        "claimed before growing"
    );
    for s in &states[2..] {
        assert_eq!(
            (s.leader_epoch, s.leader, s.log_start_offset, s.next_offset),
            (0, None, 0, 0)
        );
    }
    assert_eq!(base_offsets(&all_entries(store, tp0).await), [0]);
}

pub async fn create_partitions_refuses_shrink_and_equal_count(store: &dyn MetadataStore) {
    let topic = create(store, "orders", 3).await;
    for partition_count in [3, 2, 0] {
        let result = store
            .create_partitions(topic.topic_id, partition_count)
            .await;
        assert_err!(result, Error::InvalidPartitions(_));
    }
    assert_eq!(store.topics().await.expect("topics")[0].partition_count, 3);
    assert_eq!(states(store).await.len(), 3);
}

pub async fn operations_on_unknown_topic_return_unknown_topic(store: &dyn MetadataStore) {
    create(store, "orders", 1).await;
    let unknown = TopicId::new_random();
    assert_err!(store.delete_topic(unknown).await, Error::UnknownTopic(_));
    assert_err!(
        store
            .set_topic_configs(unknown, configs(&[("a", "b")]))
            .await,
        Error::UnknownTopic(_)
    );
    assert_err!(
        store.create_partitions(unknown, 4).await,
        Error::UnknownTopic(_)
    );
    let commit = flush("o1", vec![entry(TopicPartition::new(unknown, 0), 0, 0, 0)]);
    assert_err!(store.commit_flush(&commit).await, Error::UnknownTopic(_));
    assert_eq!(store.topics().await.expect("topics").len(), 1);
}

pub async fn commit_flush_advances_next_offset_and_appends_index(store: &dyn MetadataStore) {
    let topic = create(store, "orders", 2).await;
    let tp0 = TopicPartition::new(topic.topic_id, 0);
    let tp1 = TopicPartition::new(topic.topic_id, 1);

    let first = flush("o1", vec![entry(tp0, 0, 9, 1_000), entry(tp1, 0, 4, 1_001)]);
    commit_ok(store, &first).await;
    assert_eq!(next_offset(store, tp0).await, 10);
    assert_eq!(next_offset(store, tp1).await, 5);

    let second = flush("o2", vec![entry(tp0, 10, 10, 2_000)]);
    commit_ok(store, &second).await;
    assert_eq!(next_offset(store, tp0).await, 11);
    assert_eq!(
        next_offset(store, tp1).await,
        5,
        "an absent partition moved"
    );

    let tp0_entries = all_entries(store, tp0).await;
    assert_eq!(
        tp0_entries,
        vec![first.entries[0].clone(), second.entries[0].clone()]
    );
    assert_eq!(
        all_entries(store, tp1).await,
        vec![first.entries[1].clone()]
    );
    let s = state(store, tp0).await.expect("state");
    assert_eq!(
        (s.leader_epoch, s.leader, s.log_start_offset),
        (FIRST_EPOCH, Some(WRITER), 0),
        "a commit changes neither epoch nor leader"
    );
}

pub async fn commit_flush_across_partitions_is_all_or_nothing(store: &dyn MetadataStore) {
    let orders = create(store, "orders", 1).await;
    let audit = create(store, "audit", 1).await;
    let good = TopicPartition::new(orders.topic_id, 0);
    let other = TopicPartition::new(audit.topic_id, 0);
    commit_ok(store, &flush("o0", vec![entry(other, 0, 4, 10)])).await;

    // Second entry wrong in each way the store checks; the first is always valid.
    let bad_offset = flush("o1", vec![entry(good, 0, 9, 10), entry(other, 7, 9, 10)]);
    assert_err!(
        store.commit_flush(&bad_offset).await,
        Error::OffsetMismatch { .. }
    );
    let mut bad_epoch = flush("o1", vec![entry(good, 0, 9, 10), entry(other, 5, 9, 10)]);
    bad_epoch.leader_epochs[1] = 3;
    assert_err!(store.commit_flush(&bad_epoch).await, Error::Fenced { .. });
    let unknown = TopicPartition::new(orders.topic_id, 1);
    let bad_partition = flush("o1", vec![entry(good, 0, 9, 10), entry(unknown, 0, 9, 10)]);
    assert_err!(
        store.commit_flush(&bad_partition).await,
        Error::UnknownTopic(_)
    );

    assert_eq!(
        next_offset(store, good).await,
        0,
        "refused commit moved next_offset"
    );
    assert!(
        all_entries(store, good).await.is_empty(),
        "refused commit left index rows"
    );
    assert_eq!(next_offset(store, other).await, 5);
    assert_eq!(base_offsets(&all_entries(store, other).await), [0]);

    // Nothing of the refused commits remains, not even the object: the same
    // object key commits cleanly once the entries are right.
    let fixed = flush("o1", vec![entry(good, 0, 9, 10), entry(other, 5, 9, 10)]);
    commit_ok(store, &fixed).await;
    assert_eq!(next_offset(store, good).await, 10);
    assert_eq!(next_offset(store, other).await, 10);
}

pub async fn commit_flush_with_wrong_leader_epoch_is_fenced(store: &dyn MetadataStore) {
    let topic = create(store, "orders", 1).await;
    let tp = TopicPartition::new(topic.topic_id, 0);
    for claimed_epoch in [FIRST_EPOCH + 1, 0, -1] {
        let mut commit = flush("o1", vec![entry(tp, 0, 9, 10)]);
        commit.leader_epochs[0] = claimed_epoch;
        let result = store.commit_flush(&commit).await;
        assert_err!(
            result,
            Error::Fenced { topic_partition, expected, current }
                if topic_partition == tp && expected == claimed_epoch && current == FIRST_EPOCH
        );
    }
    assert_eq!(next_offset(store, tp).await, 0);
    assert!(all_entries(store, tp).await.is_empty());
}

pub async fn commit_flush_with_gap_returns_offset_mismatch(store: &dyn MetadataStore) {
    let topic = create(store, "orders", 1).await;
    let tp = TopicPartition::new(topic.topic_id, 0);
    let result = store
        .commit_flush(&flush("o1", vec![entry(tp, 1, 9, 10)]))
        .await;
    assert_err!(
        result,
        Error::OffsetMismatch { topic_partition, base_offset: 1, next_offset: 0 }
            if topic_partition == tp
    );
    commit_ok(store, &flush("o2", vec![entry(tp, 0, 9, 10)])).await;
    let result = store
        .commit_flush(&flush("o3", vec![entry(tp, 11, 19, 10)]))
        .await;
    assert_err!(
        result,
        Error::OffsetMismatch {
            base_offset: 11,
            next_offset: 10,
            ..
        }
    );
    assert_eq!(next_offset(store, tp).await, 10);
    assert_eq!(base_offsets(&all_entries(store, tp).await), [0]);
}

pub async fn commit_flush_overlapping_committed_offsets_returns_offset_mismatch(
    store: &dyn MetadataStore,
) {
    let topic = create(store, "orders", 1).await;
    let tp = TopicPartition::new(topic.topic_id, 0);
    commit_ok(store, &flush("o1", vec![entry(tp, 0, 9, 10)])).await;
    // A replay of the same range, and a range straddling the committed end.
    for (base_offset, last_offset) in [(0, 9), (5, 14), (9, 9)] {
        let result = store
            .commit_flush(&flush("o2", vec![entry(tp, base_offset, last_offset, 10)]))
            .await;
        assert_err!(
            result,
            Error::OffsetMismatch { base_offset: b, next_offset: 10, .. } if b == base_offset
        );
    }
    assert_eq!(next_offset(store, tp).await, 10);
    assert_eq!(all_entries(store, tp).await.len(), 1);
}

pub async fn commit_flush_to_deleted_topic_returns_unknown_topic(store: &dyn MetadataStore) {
    let topic = create(store, "orders", 1).await;
    let tp = TopicPartition::new(topic.topic_id, 0);
    commit_ok(store, &flush("o1", vec![entry(tp, 0, 9, 10)])).await;
    store
        .delete_topic(topic.topic_id)
        .await
        .expect("delete_topic");
    let result = store
        .commit_flush(&flush("o2", vec![entry(tp, 10, 19, 10)]))
        .await;
    assert_err!(result, Error::UnknownTopic(_));
    assert!(state(store, tp).await.is_none());
    assert!(all_entries(store, tp).await.is_empty());
}

pub async fn commit_flush_with_one_epoch_per_entry_missing_is_refused_whole(
    store: &dyn MetadataStore,
) {
    let topic = create(store, "orders", 2).await;
    let tp0 = TopicPartition::new(topic.topic_id, 0);
    let tp1 = TopicPartition::new(topic.topic_id, 1);
    let mut commit = flush("o1", vec![entry(tp0, 0, 9, 10), entry(tp1, 0, 9, 10)]);
    commit.leader_epochs.pop();
    assert!(store.commit_flush(&commit).await.is_err());
    assert_eq!(next_offset(store, tp0).await, 0);
    assert!(all_entries(store, tp0).await.is_empty());
}

pub async fn commit_flush_takes_several_contiguous_entries_of_one_partition(
    store: &dyn MetadataStore,
) {
    let topic = create(store, "steps", 2).await;
    let tp0 = TopicPartition::new(topic.topic_id, 0);
    let tp1 = TopicPartition::new(topic.topic_id, 1);
    // A flush sealed in two steps: tp0 has a run in each.
    let steps = flush(
        "s1",
        vec![
            entry(tp0, 0, 4, 1),
            entry(tp1, 0, 2, 1),
            entry(tp0, 5, 9, 2),
        ],
    );
    commit_ok(store, &steps).await;
    assert_eq!(next_offset(store, tp0).await, 10);
    assert_eq!(base_offsets(&all_entries(store, tp0).await), [0, 5]);
    // Out of order, or with a gap between them: refused whole.
    for entries in [
        vec![
            entry(tp1, 3, 3, 3),
            entry(tp0, 12, 12, 3),
            entry(tp0, 10, 11, 3),
        ],
        vec![
            entry(tp1, 3, 3, 3),
            entry(tp0, 10, 11, 3),
            entry(tp0, 13, 13, 3),
        ],
    ] {
        assert_err!(
            store.commit_flush(&flush("bad", entries)).await,
            Error::Backend(_)
        );
        assert_eq!(
            next_offset(store, tp1).await,
            3,
            "nothing of a refused commit"
        );
    }
}

/// Commits entries [0..=9], [10..=19], [20..=29] with timestamps 100, 200, 300.
async fn three_entries(store: &dyn MetadataStore) -> TopicPartition {
    let topic = create(store, "orders", 2).await;
    let tp = TopicPartition::new(topic.topic_id, 0);
    for (i, base_offset) in [0, 10, 20].into_iter().enumerate() {
        let key = format!("o{i}");
        let max_timestamp = (i as i64 + 1) * 100;
        let entries = vec![entry(tp, base_offset, base_offset + 9, max_timestamp)];
        commit_ok(store, &flush(&key, entries)).await;
    }
    tp
}

pub async fn index_entries_from_inside_an_entry_start_at_that_entry(store: &dyn MetadataStore) {
    let tp = three_entries(store).await;
    for (from_offset, expected) in [
        (0, vec![0, 10, 20]),
        (5, vec![0, 10, 20]),
        (9, vec![0, 10, 20]),
        (10, vec![10, 20]),
        (15, vec![10, 20]),
        (29, vec![20]),
    ] {
        let entries = store
            .index_entries(tp, from_offset, 10)
            .await
            .expect("index_entries");
        assert_eq!(
            base_offsets(&entries),
            expected,
            "from_offset={from_offset}"
        );
    }
}

pub async fn index_entries_are_in_offset_order_and_honour_max_entries(store: &dyn MetadataStore) {
    let tp = three_entries(store).await;
    // Another partition's entries never appear.
    let tp1 = TopicPartition::new(tp.topic_id, 1);
    commit_ok(store, &flush("other", vec![entry(tp1, 0, 99, 999)])).await;

    let all = store
        .index_entries(tp, 0, 100)
        .await
        .expect("index_entries");
    assert_eq!(base_offsets(&all), [0, 10, 20]);
    assert!(all.iter().all(|e| e.topic_partition == tp));
    assert_eq!((all[1].object_key.as_str(), all[1].last_offset), ("o1", 19));
    let entries = store.index_entries(tp, 0, 2).await.expect("index_entries");
    assert_eq!(base_offsets(&entries), [0, 10]);
    let entries = store.index_entries(tp, 12, 1).await.expect("index_entries");
    assert_eq!(base_offsets(&entries), [10]);
    let entries = store.index_entries(tp, 0, 0).await.expect("index_entries");
    assert!(entries.is_empty(), "max_entries=0 returned {entries:?}");
}

pub async fn index_entries_past_the_end_or_of_unknown_partition_are_empty(
    store: &dyn MetadataStore,
) {
    let tp = three_entries(store).await;
    for from_offset in [30, 1_000] {
        let entries = store
            .index_entries(tp, from_offset, 10)
            .await
            .expect("index_entries");
        assert!(
            entries.is_empty(),
            "from_offset={from_offset} returned {entries:?}"
        );
    }
    let empty = TopicPartition::new(tp.topic_id, 1);
    let unknown = TopicPartition::new(TopicId::new_random(), 0);
    for tp in [empty, unknown] {
        assert!(
            store
                .index_entries(tp, 0, 10)
                .await
                .expect("index_entries")
                .is_empty()
        );
        assert!(
            store
                .index_entry_by_timestamp(tp, 0)
                .await
                .expect("by timestamp")
                .is_none()
        );
        assert!(
            store
                .index_entry_max_timestamp(tp)
                .await
                .expect("max timestamp")
                .is_none()
        );
    }
}

pub async fn index_entry_by_timestamp_returns_lowest_offset_reaching_timestamp(
    store: &dyn MetadataStore,
) {
    let topic = create(store, "orders", 1).await;
    let tp = TopicPartition::new(topic.topic_id, 0);
    // Timestamps are not monotonic: producers set them.
    let timestamps = [500, 300, 500, 900, 700];
    for (i, max_timestamp) in timestamps.into_iter().enumerate() {
        let base_offset = i as i64 * 10;
        let entries = vec![entry(tp, base_offset, base_offset + 9, max_timestamp)];
        commit_ok(store, &flush(&format!("o{i}"), entries)).await;
    }
    for (timestamp, expected_base_offset) in [
        (i64::MIN, Some(0)),
        (0, Some(0)),
        (300, Some(0)),
        (500, Some(0)),
        (501, Some(30)),
        (700, Some(30)),
        (900, Some(30)),
        (901, None),
    ] {
        let found = store
            .index_entry_by_timestamp(tp, timestamp)
            .await
            .expect("index_entry_by_timestamp");
        assert_eq!(
            found.as_ref().map(|e| e.base_offset),
            expected_base_offset,
            "timestamp={timestamp}"
        );
        if let Some(e) = found {
            assert_eq!(e.max_timestamp, timestamps[(e.base_offset / 10) as usize]);
        }
    }
}

pub async fn index_entry_max_timestamp_returns_lowest_offset_among_ties(store: &dyn MetadataStore) {
    let topic = create(store, "orders", 1).await;
    let tp = TopicPartition::new(topic.topic_id, 0);
    assert!(
        store
            .index_entry_max_timestamp(tp)
            .await
            .expect("max")
            .is_none()
    );

    for (i, max_timestamp) in [100, 900, 400, 900, 200].into_iter().enumerate() {
        let base_offset = i as i64 * 10;
        let entries = vec![entry(tp, base_offset, base_offset + 9, max_timestamp)];
        commit_ok(store, &flush(&format!("o{i}"), entries)).await;
    }
    let found = store
        .index_entry_max_timestamp(tp)
        .await
        .expect("index_entry_max_timestamp")
        .expect("an entry");
    assert_eq!((found.base_offset, found.max_timestamp), (10, 900));
    assert_eq!(found.last_offset, 19);
    assert_eq!(found.object_key, "o1");
}

pub async fn delete_topic_removes_partitions_and_index(store: &dyn MetadataStore) {
    let topic_id = TopicId::new_random();
    let cfg = configs(&[("retention.ms", "1000")]);
    store
        .create_topic("orders", topic_id, 2, cfg.clone())
        .await
        .expect("create_topic");
    let kept = create(store, "audit", 1).await; // also leads "orders"
    let tp = TopicPartition::new(topic_id, 0);
    let kept_tp = TopicPartition::new(kept.topic_id, 0);
    commit_ok(
        store,
        &flush("o1", vec![entry(tp, 0, 9, 10), entry(kept_tp, 0, 4, 10)]),
    )
    .await;

    let deleted = store.delete_topic(topic_id).await.expect("delete_topic");
    assert_eq!(
        deleted,
        Topic {
            name: "orders".into(),
            topic_id,
            partition_count: 2,
            configs: cfg,
        }
    );
    assert_eq!(store.topics().await.expect("topics"), vec![kept.clone()]);
    let remaining: Vec<TopicPartition> = states(store)
        .await
        .into_iter()
        .map(|s| s.topic_partition)
        .collect();
    assert_eq!(remaining, [kept_tp]);
    assert!(all_entries(store, tp).await.is_empty());
    assert!(
        store
            .index_entry_max_timestamp(tp)
            .await
            .expect("max")
            .is_none()
    );
    assert_eq!(base_offsets(&all_entries(store, kept_tp).await), [0]);
    assert_err!(store.delete_topic(topic_id).await, Error::UnknownTopic(_));
}

pub async fn referenced_objects_are_those_index_entries_name(store: &dyn MetadataStore) {
    let gone = create(store, "gone", 1).await;
    let kept = create(store, "kept", 1).await;
    let (gone_tp, kept_tp) = (
        TopicPartition::new(gone.topic_id, 0),
        TopicPartition::new(kept.topic_id, 0),
    );
    // "shared" holds both topics' batches; "alone" only the deleted topic's.
    commit_ok(
        store,
        &flush(
            "shared",
            vec![entry(gone_tp, 0, 4, 1), entry(kept_tp, 0, 4, 1)],
        ),
    )
    .await;
    commit_ok(store, &flush("alone", vec![entry(gone_tp, 5, 9, 2)])).await;
    let keys = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
    let referenced = |names: &[&str]| {
        let asked = keys(names);
        async move {
            let mut found = store.referenced_objects(&asked).await.expect("referenced");
            found.sort();
            found
        }
    };
    assert_eq!(
        referenced(&["alone", "never-written", "shared"]).await,
        keys(&["alone", "shared"])
    );
    assert!(referenced(&[]).await.is_empty());
    store
        .delete_topic(gone.topic_id)
        .await
        .expect("delete_topic");
    assert_eq!(
        referenced(&["alone", "shared"]).await,
        keys(&["shared"]),
        "an object is referenced while any topic's entry names it"
    );
    store
        .forget_objects(&keys(&["alone", "never-written"]))
        .await
        .expect("forget_objects");
    assert_eq!(referenced(&["shared"]).await, keys(&["shared"]));
}

pub async fn topic_name_is_reusable_after_delete_with_a_new_id(store: &dyn MetadataStore) {
    let old = store
        .create_topic("orders", TopicId::new_random(), 1, configs(&[("a", "1")]))
        .await
        .expect("create_topic");
    lead_all(store).await;
    let old_tp = TopicPartition::new(old.topic_id, 0);
    commit_ok(store, &flush("o1", vec![entry(old_tp, 0, 9, 10)])).await;
    store
        .delete_topic(old.topic_id)
        .await
        .expect("delete_topic");

    let new_id = TopicId::new_random();
    let new = store
        .create_topic("orders", new_id, 2, BTreeMap::new())
        .await
        .expect("create_topic with a reused name");
    lead_all(store).await;
    assert_ne!(new.topic_id, old.topic_id);
    assert_eq!(store.topics().await.expect("topics"), vec![new]);
    let new_tp = TopicPartition::new(new_id, 0);
    assert_eq!(next_offset(store, new_tp).await, 0);
    assert!(all_entries(store, new_tp).await.is_empty());
    assert!(all_entries(store, old_tp).await.is_empty());
    // The new topic's log starts afresh at offset 0.
    commit_ok(store, &flush("o2", vec![entry(new_tp, 0, 4, 10)])).await;
    assert_eq!(next_offset(store, new_tp).await, 5);
}

fn producer(tp: TopicPartition, producer_id: i64, epoch: i16, last_seq: i32) -> ProducerState {
    ProducerState {
        topic_partition: tp,
        producer_id,
        producer_epoch: epoch,
        last_write_ms: 1_000 + i64::from(last_seq),
        batches: vec![ProducerBatch {
            first_sequence: last_seq - 4,
            last_sequence: last_seq,
            base_offset: 100,
            last_offset: 104,
            max_timestamp: 1_000 + i64::from(last_seq),
        }],
    }
}

async fn producer_states(store: &dyn MetadataStore) -> Vec<ProducerState> {
    let mut all = store.producer_states().await.expect("producer_states");
    all.sort_by_key(|s| (s.topic_partition, s.producer_id));
    all
}

pub async fn producer_states_are_committed_with_the_flush_and_replaced(store: &dyn MetadataStore) {
    let t = create(store, "t", 2).await;
    let (tp0, tp1) = (
        TopicPartition::new(t.topic_id, 0),
        TopicPartition::new(t.topic_id, 1),
    );
    assert!(producer_states(store).await.is_empty());
    let mut first = flush("o1", vec![entry(tp0, 0, 4, 10), entry(tp1, 0, 4, 10)]);
    first.producers = vec![producer(tp0, 7, 0, 4), producer(tp1, 7, 0, 4)];
    commit_ok(store, &first).await;
    assert_eq!(producer_states(store).await, first.producers);

    // Five batches retained, replaced whole; another producer added beside.
    let mut full = producer(tp0, 7, 1, 9);
    full.batches = (0..5)
        .map(|i| ProducerBatch {
            first_sequence: i * 2,
            last_sequence: i * 2 + 1,
            base_offset: 5 + i64::from(i) * 2,
            last_offset: 6 + i64::from(i) * 2,
            max_timestamp: -1,
        })
        .collect();
    let mut second = flush("o2", vec![entry(tp0, 5, 14, 10)]);
    second.producers = vec![full.clone(), producer(tp0, 8, 0, 0)];
    commit_ok(store, &second).await;
    let expected = vec![full, producer(tp0, 8, 0, 0), producer(tp1, 7, 0, 4)];
    let mut expected_sorted = expected.clone();
    expected_sorted.sort_by_key(|s| (s.topic_partition, s.producer_id));
    assert_eq!(producer_states(store).await, expected_sorted);
}

pub async fn producer_states_of_a_refused_commit_are_not_stored(store: &dyn MetadataStore) {
    let t = create(store, "t", 1).await;
    let tp = TopicPartition::new(t.topic_id, 0);
    let mut gap = flush("o1", vec![entry(tp, 3, 4, 10)]);
    gap.producers = vec![producer(tp, 7, 0, 4)];
    assert_err!(store.commit_flush(&gap).await, Error::OffsetMismatch { .. });
    assert!(producer_states(store).await.is_empty());
}

pub async fn malformed_producer_states_are_refused_whole(store: &dyn MetadataStore) {
    let t = create(store, "t", 2).await;
    let (tp0, tp1) = (
        TopicPartition::new(t.topic_id, 0),
        TopicPartition::new(t.topic_id, 1),
    );
    let mut without_entry = flush("o1", vec![entry(tp0, 0, 4, 10)]);
    without_entry.producers = vec![producer(tp1, 7, 0, 4)];
    let mut twice = flush("o2", vec![entry(tp0, 0, 4, 10)]);
    twice.producers = vec![producer(tp0, 7, 0, 4), producer(tp0, 7, 0, 9)];
    let mut too_many = flush("o3", vec![entry(tp0, 0, 4, 10)]);
    let mut state = producer(tp0, 7, 0, 4);
    state.batches = vec![state.batches[0]; 6];
    too_many.producers = vec![state];
    for commit in [without_entry, twice, too_many] {
        assert_err!(store.commit_flush(&commit).await, Error::Backend(_));
    }
    assert_eq!(next_offset(store, tp0).await, 0);
    assert!(producer_states(store).await.is_empty());
}

pub async fn producer_states_expire_and_go_with_their_topic(store: &dyn MetadataStore) {
    let t = create(store, "t", 1).await;
    let kept = create(store, "kept", 1).await;
    let tp = TopicPartition::new(t.topic_id, 0);
    let kept_tp = TopicPartition::new(kept.topic_id, 0);
    let mut commit = flush("o1", vec![entry(tp, 0, 4, 10), entry(kept_tp, 0, 4, 10)]);
    // last_write_ms 1_004, 1_009 and 1_004.
    commit.producers = vec![
        producer(tp, 1, 0, 4),
        producer(tp, 2, 0, 9),
        producer(kept_tp, 3, 0, 4),
    ];
    commit_ok(store, &commit).await;
    assert_eq!(
        store.expire_producer_states(1_005).await.expect("expire"),
        2
    );
    assert_eq!(producer_states(store).await, vec![producer(tp, 2, 0, 9)]);
    store.delete_topic(t.topic_id).await.expect("delete_topic");
    assert!(producer_states(store).await.is_empty());
}

pub async fn producer_ids_are_never_allocated_twice(store: &dyn MetadataStore) {
    let a = store.allocate_producer_ids(1000).await.expect("allocate");
    let b = store.allocate_producer_ids(1000).await.expect("allocate");
    let c = store.allocate_producer_ids(1).await.expect("allocate");
    assert!(a >= 0, "producer ids are not negative: {a}");
    assert!(b >= a + 1000, "blocks overlap: {a} then {b}");
    assert!(c >= b + 1000, "blocks overlap: {b} then {c}");
    assert_err!(store.allocate_producer_ids(0).await, Error::Backend(_));
}

fn offset(topic: &str, partition: i32, offset: i64, metadata: &str) -> CommittedOffset {
    CommittedOffset {
        topic: topic.to_string(),
        partition,
        offset,
        leader_epoch: 3,
        metadata: metadata.to_string(),
        commit_timestamp_ms: 1_000 + offset,
    }
}

async fn offsets_of(store: &dyn MetadataStore, group_id: &str) -> Vec<CommittedOffset> {
    store
        .committed_offsets(group_id)
        .await
        .expect("committed_offsets")
}

/// Registers `WRITER` (once) and makes it the coordinator of `group_id`;
/// the coordinator epoch it writes under.
async fn coordinate(store: &dyn MetadataStore, group_id: &str) -> i32 {
    match store
        .register_broker(&registration(WRITER.node_id), 0, LONG_LEASE_MS)
        .await
    {
        Ok(_) | Err(Error::BrokerIdInUse { .. }) => {}
        Err(e) => panic!("register_broker: {e}"),
    }
    claim_group(store, WRITER, group_id, 0)
        .await
        .expect("claim of a group no one coordinates")
        .coordinator_epoch
}

/// Claims one group; the group's answer.
async fn claim_group(
    store: &dyn MetadataStore,
    session: BrokerSession,
    group_id: &str,
    now_ms: i64,
) -> crate::Result<GroupClaim> {
    let mut answers = store
        .claim_groups(session, &[group_id.to_string()], now_ms)
        .await
        .unwrap_or_else(|e| panic!("claim_groups session={session}: {e}"));
    assert_eq!(answers.len(), 1, "one answer per group");
    answers.remove(0)
}

pub async fn committed_offsets_are_replaced_per_partition_and_kept_per_group(
    store: &dyn MetadataStore,
) {
    assert!(offsets_of(store, "g").await.is_empty());
    let g = coordinate(store, "g").await;
    let other = coordinate(store, "other").await;
    store
        .commit_offsets("g", g, &[offset("t", 1, 5, "m1"), offset("t", 0, 7, "")])
        .await
        .expect("commit");
    store
        .commit_offsets("g", g, &[offset("t", 1, 9, "m2"), offset("a", 0, 1, "é")])
        .await
        .expect("commit");
    store
        .commit_offsets("other", other, &[offset("t", 0, 42, "")])
        .await
        .expect("commit");
    assert_eq!(
        offsets_of(store, "g").await,
        vec![
            offset("a", 0, 1, "é"),
            offset("t", 0, 7, ""),
            offset("t", 1, 9, "m2")
        ]
    );
    assert_eq!(
        offsets_of(store, "other").await,
        vec![offset("t", 0, 42, "")]
    );
    // Committing records the group, with no protocol type.
    let groups = store.groups().await.expect("groups");
    assert_eq!(
        groups,
        vec![
            StoredGroup {
                group_id: "g".into(),
                protocol_type: String::new()
            },
            StoredGroup {
                group_id: "other".into(),
                protocol_type: String::new()
            }
        ]
    );
}

pub async fn groups_are_saved_listed_and_deleted_with_their_offsets(store: &dyn MetadataStore) {
    let consumer = StoredGroup {
        group_id: "g".into(),
        protocol_type: "consumer".into(),
    };
    let g = coordinate(store, "g").await;
    store.save_group(&consumer, g).await.expect("save");
    store
        .commit_offsets("g", g, &[offset("t", 0, 7, "")])
        .await
        .expect("commit");
    // A commit keeps the saved protocol type.
    assert_eq!(
        store.groups().await.expect("groups"),
        vec![consumer.clone()]
    );
    store.delete_group("g", g).await.expect("delete");
    assert!(store.groups().await.expect("groups").is_empty());
    assert!(offsets_of(store, "g").await.is_empty());
    let never = coordinate(store, "never").await;
    store
        .delete_group("never", never)
        .await
        .expect("delete of an unknown group");
}

pub async fn committed_offsets_are_deleted_per_partition(store: &dyn MetadataStore) {
    let g = coordinate(store, "g").await;
    store
        .commit_offsets(
            "g",
            g,
            &[
                offset("t", 0, 1, ""),
                offset("t", 1, 2, ""),
                offset("u", 0, 3, ""),
            ],
        )
        .await
        .expect("commit");
    store
        .delete_committed_offsets("g", g, &[("t".into(), 1), ("u".into(), 0), ("x".into(), 0)])
        .await
        .expect("delete");
    assert_eq!(offsets_of(store, "g").await, vec![offset("t", 0, 1, "")]);
}

/// The time every registry check starts at (ms); leases run from it.
const T0: i64 = 1_000_000;
const LEASE_MS: i64 = 10_000;

async fn register(store: &dyn MetadataStore, node_id: i32, now_ms: i64) -> BrokerSession {
    store
        .register_broker(&registration(node_id), now_ms, LEASE_MS)
        .await
        .unwrap_or_else(|e| panic!("register_broker node_id={node_id}: {e}"))
}

/// Claims one partition; the partition's answer.
async fn claim(
    store: &dyn MetadataStore,
    session: BrokerSession,
    tp: TopicPartition,
    now_ms: i64,
) -> crate::Result<crate::model::PartitionClaim> {
    let mut answers = store
        .claim_partitions(session, &[tp], now_ms)
        .await
        .unwrap_or_else(|e| panic!("claim_partitions session={session}: {e}"));
    assert_eq!(answers.len(), 1, "one answer per partition");
    answers.remove(0)
}

/// A one-entry commit of `tp` by `session` at `epoch`.
fn commit_by(
    session: BrokerSession,
    epoch: i32,
    object_key: &str,
    tp: TopicPartition,
    base_offset: i64,
    last_offset: i64,
) -> FlushCommit {
    FlushCommit {
        session,
        leader_epochs: vec![epoch],
        ..flush(object_key, vec![entry(tp, base_offset, last_offset, 10)])
    }
}

/// Two stores on one backend (two broker processes) claim one partition
/// at the same moment, `rounds` times: exactly one wins each time, the
/// loser's commit under the winner's epoch is fenced, the winner's lands.
/// Not in the single-store suite: each backend's own test file runs it with
/// two stores sharing one file or keyspace.
pub async fn two_stores_racing_for_a_partition_one_wins(
    stores: [&dyn MetadataStore; 2],
    rounds: i32,
) {
    let topic_id = unled_topic(stores[0], 1).await;
    let tp = TopicPartition::new(topic_id, 0);
    let mut sessions = Vec::new();
    for (i, store) in stores.iter().enumerate() {
        sessions.push(register(*store, i as i32 + 1, T0).await);
    }
    let wanted = [tp];
    for round in 0..rounds {
        let (a, b) = tokio::join!(
            stores[0].claim_partitions(sessions[0], &wanted, T0),
            stores[1].claim_partitions(sessions[1], &wanted, T0),
        );
        let (mut a, mut b) = (a.expect("claim a"), b.expect("claim b"));
        let (winner, epoch) = match (a.remove(0), b.remove(0)) {
            (Ok(c), Err(Error::NotClaimable { .. })) => (0, c.state.leader_epoch),
            (Err(Error::NotClaimable { .. }), Ok(c)) => (1, c.state.leader_epoch),
            other => panic!("round {round}: expected one winner, got {other:?}"),
        };
        let base = i64::from(round) * 10;
        let loser = 1 - winner;
        let lost = stores[loser]
            .commit_flush(&commit_by(
                sessions[loser],
                epoch,
                &format!("l{round}"),
                tp,
                base,
                base + 9,
            ))
            .await;
        assert!(matches!(lost, Err(Error::Fenced { .. })), "got {lost:?}");
        stores[winner]
            .commit_flush(&commit_by(
                sessions[winner],
                epoch,
                &format!("w{round}"),
                tp,
                base,
                base + 9,
            ))
            .await
            .expect("winner commits");
        stores[winner]
            .release_partitions(sessions[winner], &[(tp, epoch)])
            .await
            .expect("release");
    }
}

/// A topic with no leader yet (created without `create`'s claim).
async fn unled_topic(store: &dyn MetadataStore, partition_count: i32) -> TopicId {
    let topic_id = TopicId::new_random();
    store
        .create_topic("orders", topic_id, partition_count, BTreeMap::new())
        .await
        .expect("create_topic");
    topic_id
}

pub async fn a_live_node_id_cannot_register_twice_until_its_lease_lapses(
    store: &dyn MetadataStore,
) {
    let first = register(store, 7, T0).await;
    assert_eq!(first.incarnation, 1);
    assert_err!(
        store.register_broker(&registration(7), T0 + LEASE_MS - 1, LEASE_MS).await,
        Error::BrokerIdInUse { node_id: 7, ref host, port: 9092, lease_expires_ms }
            if host == "broker-7.test" && lease_expires_ms == T0 + LEASE_MS
    );
    // A renewal moves the lease on; the node id stays taken.
    store
        .renew_lease(first, T0 + 5_000, LEASE_MS)
        .await
        .expect("renew_lease");
    assert_err!(
        store
            .register_broker(&registration(7), T0 + LEASE_MS + 1, LEASE_MS)
            .await,
        Error::BrokerIdInUse { .. }
    );
    // Another node id registers freely.
    assert_eq!(register(store, 8, T0).await.incarnation, 1);

    let second = register(store, 7, T0 + 5_000 + LEASE_MS).await;
    assert_eq!(
        second.incarnation, 2,
        "a new incarnation after the lease lapsed"
    );
    let brokers = store.brokers().await.expect("brokers");
    let ids: Vec<(i32, i64)> = brokers
        .iter()
        .map(|b| (b.session.node_id, b.session.incarnation))
        .collect();
    assert_eq!(ids, [(7, 2), (8, 1)]);
    assert_eq!(brokers[0].registration, registration(7));
    assert_eq!(brokers[0].status, SessionStatus::Open);
    assert!(brokers[0].is_live(T0 + 5_000 + LEASE_MS));
    assert!(!brokers[1].is_live(T0 + LEASE_MS), "lease lapsed");

    // A closed session frees its node id at once.
    store.close_session(second).await.expect("close_session");
    store
        .close_session(second)
        .await
        .expect("closing twice is fine");
    assert_eq!(
        register(store, 7, T0 + 5_001 + LEASE_MS).await.incarnation,
        3
    );
}

pub async fn an_ended_or_replaced_session_cannot_renew_or_commit(store: &dyn MetadataStore) {
    let topic_id = unled_topic(store, 1).await;
    let tp = TopicPartition::new(topic_id, 0);
    let old = register(store, 1, T0).await;
    let epoch = claim(store, old, tp, T0)
        .await
        .expect("claim")
        .state
        .leader_epoch;
    commit_ok(store, &commit_by(old, epoch, "o1", tp, 0, 4)).await;

    // The process restarts after its lease lapsed: a new incarnation.
    let new = register(store, 1, T0 + LEASE_MS).await;
    assert_err!(
        store.renew_lease(old, T0 + LEASE_MS, LEASE_MS).await,
        Error::SessionFenced(s) if s == old
    );
    assert_err!(
        store.commit_flush(&commit_by(old, epoch, "o2", tp, 5, 9)).await,
        Error::SessionFenced(s) if s == old
    );
    assert_err!(
        store.claim_partitions(old, &[tp], T0 + LEASE_MS).await,
        Error::SessionFenced(_)
    );
    // The new incarnation leads nothing until it claims.
    assert_err!(
        store
            .commit_flush(&commit_by(new, epoch, "o2", tp, 5, 9))
            .await,
        Error::Fenced { .. }
    );
    let claimed = claim(store, new, tp, T0 + LEASE_MS).await.expect("claim");
    assert_eq!(claimed.state.leader_epoch, epoch + 1);
    assert_eq!(claimed.state.next_offset, 5);
    commit_ok(store, &commit_by(new, epoch + 1, "o2", tp, 5, 9)).await;

    store.close_session(new).await.expect("close_session");
    assert_err!(
        store
            .commit_flush(&commit_by(new, epoch + 1, "o3", tp, 10, 14))
            .await,
        Error::SessionFenced(_)
    );
    assert_err!(
        store.renew_lease(new, T0 + LEASE_MS, LEASE_MS).await,
        Error::SessionFenced(_)
    );
    assert_eq!(next_offset(store, tp).await, 10);
}

pub async fn a_live_leader_keeps_its_partitions_until_it_releases_them(store: &dyn MetadataStore) {
    let topic_id = unled_topic(store, 2).await;
    let tp = TopicPartition::new(topic_id, 0);
    let other_tp = TopicPartition::new(topic_id, 1);
    let a = register(store, 1, T0).await;
    let b = register(store, 2, T0).await;
    let a_epoch = claim(store, a, tp, T0)
        .await
        .expect("claim")
        .state
        .leader_epoch;
    assert_eq!(a_epoch, 1);
    assert_err!(
        claim(store, b, tp, T0 + 1).await,
        Error::NotClaimable { topic_partition, leader } if topic_partition == tp && leader == a
    );
    let stored = state(store, tp).await.expect("state");
    assert_eq!((stored.leader, stored.leader_epoch), (Some(a), a_epoch));

    // A claim of one partition does not touch another.
    let answers = store
        .claim_partitions(b, &[tp, other_tp, TopicPartition::new(topic_id, 9)], T0 + 1)
        .await
        .expect("claim_partitions");
    assert!(matches!(answers[0], Err(Error::NotClaimable { .. })));
    assert_eq!(
        answers[1].as_ref().expect("free partition").state.leader,
        Some(b)
    );
    assert!(matches!(answers[2], Err(Error::UnknownTopic(_))));

    commit_ok(store, &commit_by(a, a_epoch, "o1", tp, 0, 4)).await;
    // A release at a stale epoch, or by another session, changes nothing.
    store
        .release_partitions(a, &[(tp, a_epoch + 1)])
        .await
        .expect("release");
    store
        .release_partitions(b, &[(tp, a_epoch)])
        .await
        .expect("release");
    assert_err!(
        claim(store, b, tp, T0 + 2).await,
        Error::NotClaimable { .. }
    );

    store
        .release_partitions(a, &[(tp, a_epoch)])
        .await
        .expect("release");
    assert_eq!(state(store, tp).await.expect("state").leader, None);
    let b_claim = claim(store, b, tp, T0 + 3)
        .await
        .expect("claim after release");
    assert_eq!(b_claim.state.leader_epoch, a_epoch + 1);
    assert_eq!(b_claim.state.next_offset, 5);
    // The old leader's session is still open, but it leads the partition no more.
    assert_err!(
        store.commit_flush(&commit_by(a, a_epoch, "o2", tp, 5, 9)).await,
        Error::Fenced { current, .. } if current == a_epoch + 1
    );
    commit_ok(store, &commit_by(b, a_epoch + 1, "o2", tp, 5, 9)).await;
}

pub async fn a_claim_after_a_lapsed_lease_fences_every_commit_of_the_old_leader(
    store: &dyn MetadataStore,
) {
    let topic_id = unled_topic(store, 2).await;
    let tp0 = TopicPartition::new(topic_id, 0);
    let tp1 = TopicPartition::new(topic_id, 1);
    let zombie = register(store, 1, T0).await;
    let heir = register(store, 2, T0).await;
    let answers = store
        .claim_partitions(zombie, &[tp0, tp1], T0)
        .await
        .expect("claim_partitions");
    assert!(answers.iter().all(|a| a.is_ok()));
    commit_ok(store, &commit_by(zombie, 1, "o1", tp0, 0, 4)).await;

    // The heir renews its lease; the zombie stops renewing (SIGSTOP).
    let later = T0 + LEASE_MS + 1;
    store
        .renew_lease(heir, later, LEASE_MS)
        .await
        .expect("renew");
    let claimed = claim(store, heir, tp0, later)
        .await
        .expect("claim after lapse");
    assert_eq!(claimed.state.leader_epoch, 2);
    assert_eq!(claimed.state.next_offset, 5);

    // The zombie wakes: every commit is refused, of either partition, even
    // one whose leadership nobody claimed yet, and its lease cannot be renewed.
    assert_err!(
        store
            .commit_flush(&commit_by(zombie, 1, "o2", tp0, 5, 9))
            .await,
        Error::SessionFenced(_)
    );
    assert_err!(
        store
            .commit_flush(&commit_by(zombie, 1, "o3", tp1, 0, 9))
            .await,
        Error::SessionFenced(_)
    );
    assert_err!(
        store.renew_lease(zombie, later, LEASE_MS).await,
        Error::SessionFenced(_)
    );
    let zombie_row = store.brokers().await.expect("brokers")[0].clone();
    assert_eq!(zombie_row.status, SessionStatus::Fenced);
    assert!(all_entries(store, tp1).await.is_empty());
    assert_eq!(base_offsets(&all_entries(store, tp0).await), [0]);
    // Its other partition is free now, without waiting for anything more.
    assert_eq!(
        claim(store, heir, tp1, later)
            .await
            .expect("claim")
            .state
            .leader_epoch,
        2
    );
    commit_ok(store, &commit_by(heir, 2, "o4", tp0, 5, 9)).await;
}

pub async fn two_writers_racing_for_a_partition_one_wins_every_loser_commit_is_refused(
    store: &dyn MetadataStore,
) {
    let topic_id = unled_topic(store, 1).await;
    let tp = TopicPartition::new(topic_id, 0);
    let a = register(store, 1, T0).await;
    let b = register(store, 2, T0).await;
    for round in 0..10i64 {
        let (ra, rb) = tokio::join!(claim(store, a, tp, T0), claim(store, b, tp, T0));
        let (winner, loser, epoch) = match (ra, rb) {
            (Ok(c), Err(Error::NotClaimable { .. })) => (a, b, c.state.leader_epoch),
            (Err(Error::NotClaimable { .. }), Ok(c)) => (b, a, c.state.leader_epoch),
            other => panic!("round {round}: expected exactly one winner, got {other:?}"),
        };
        let base = next_offset(store, tp).await;
        // The loser writes under every epoch it might believe it has.
        for guess in [epoch - 1, epoch, epoch + 1] {
            let key = format!("loser-{round}-{guess}");
            assert_err!(
                store
                    .commit_flush(&commit_by(loser, guess, &key, tp, base, base + 1))
                    .await,
                Error::Fenced { .. }
            );
        }
        let by_winner = commit_by(winner, epoch, &format!("w-{round}"), tp, base, base + 1);
        let by_loser = commit_by(loser, epoch, &format!("l-{round}"), tp, base, base + 1);
        let (w, l) = tokio::join!(
            store.commit_flush(&by_winner),
            store.commit_flush(&by_loser)
        );
        w.expect("the winner's commit");
        assert_err!(l, Error::Fenced { .. });
        store
            .release_partitions(winner, &[(tp, epoch)])
            .await
            .expect("release");
    }
    let entries = all_entries(store, tp).await;
    assert_eq!(entries.len(), 10);
    assert!(entries.iter().all(|e| e.object_key.starts_with("w-")));
}

pub async fn a_claim_hands_over_next_offset_and_producer_states(store: &dyn MetadataStore) {
    let topic_id = unled_topic(store, 2).await;
    let tp = TopicPartition::new(topic_id, 0);
    let other = TopicPartition::new(topic_id, 1);
    let a = register(store, 1, T0).await;
    let b = register(store, 2, T0).await;
    store
        .claim_partitions(a, &[tp, other], T0)
        .await
        .expect("claim");
    let mut commit = commit_by(a, 1, "o1", tp, 0, 104);
    commit.producers = vec![producer(tp, 42, 3, 9)];
    commit_ok(store, &commit).await;
    let mut commit = commit_by(a, 1, "o2", other, 0, 4);
    commit.producers = vec![producer(other, 43, 0, 4)];
    commit_ok(store, &commit).await;
    store.close_session(a).await.expect("close");

    let claimed = claim(store, b, tp, T0 + 1)
        .await
        .expect("claim after close");
    assert_eq!(
        claimed.state,
        PartitionState {
            topic_partition: tp,
            leader_epoch: 2,
            leader: Some(b),
            log_start_offset: 0,
            next_offset: 105,
        }
    );
    assert_eq!(claimed.producers, vec![producer(tp, 42, 3, 9)]);
}

pub async fn the_cluster_version_moves_with_what_brokers_must_learn(store: &dyn MetadataStore) {
    let version = || async { store.cluster_version().await.expect("cluster_version") };
    let mut last = version().await;
    let mut moved = |what: &str, now: i64, expected: bool| {
        assert_eq!(now != last, expected, "cluster version after {what}");
        last = now;
    };
    let topic_id = unled_topic(store, 1).await;
    moved("create_topic", version().await, true);
    let tp = TopicPartition::new(topic_id, 0);
    let a = register(store, 1, T0).await;
    moved("register_broker", version().await, true);
    claim(store, a, tp, T0).await.expect("claim");
    moved("claim", version().await, true);
    store.renew_lease(a, T0 + 1, LEASE_MS).await.expect("renew");
    moved("renew_lease", version().await, false);
    commit_ok(store, &commit_by(a, 1, "o1", tp, 0, 4)).await;
    moved("commit_flush", version().await, false);
    store
        .set_topic_configs(topic_id, configs(&[("retention.ms", "1")]))
        .await
        .expect("configs");
    moved("set_topic_configs", version().await, true);
    store.create_partitions(topic_id, 2).await.expect("grow");
    moved("create_partitions", version().await, true);
    store
        .release_partitions(a, &[(tp, 1)])
        .await
        .expect("release");
    moved("release_partitions", version().await, true);
    store.close_session(a).await.expect("close");
    moved("close_session", version().await, true);
    store.delete_topic(topic_id).await.expect("delete");
    moved("delete_topic", version().await, true);
}

pub async fn a_group_claim_raises_the_coordinator_epoch_and_hands_over_what_is_stored(
    store: &dyn MetadataStore,
) {
    let first = register(store, 1, T0).await;
    let second = register(store, 2, T0).await;
    let claimed = claim_group(store, first, "g", T0).await.expect("claim");
    assert_eq!(claimed.coordinator_epoch, 1, "first claim of a group id");
    assert_eq!(claimed.stored, None);
    assert!(claimed.offsets.is_empty());
    let consumer = StoredGroup {
        group_id: "g".into(),
        protocol_type: "consumer".into(),
    };
    store.save_group(&consumer, 1).await.expect("save");
    store
        .commit_offsets("g", 1, &[offset("t", 0, 7, "")])
        .await
        .expect("commit");

    // Released: another broker takes it at once, with what was stored.
    store
        .release_groups(first, &[("g".into(), 1)])
        .await
        .expect("release");
    assert_err!(
        store.commit_offsets("g", 1, &[offset("t", 0, 8, "")]).await,
        Error::GroupFenced { ref group_id, expected: 1, current: 1 } if group_id == "g"
    );
    let moved = claim_group(store, second, "g", T0).await.expect("claim");
    assert_eq!(moved.coordinator_epoch, 2);
    assert_eq!(moved.stored, Some(consumer.clone()));
    assert_eq!(moved.offsets, vec![offset("t", 0, 7, "")]);

    // Every write under the old epoch is refused; the new one's land.
    assert_err!(
        store.commit_offsets("g", 1, &[offset("t", 0, 8, "")]).await,
        Error::GroupFenced {
            expected: 1,
            current: 2,
            ..
        }
    );
    assert_err!(
        store.save_group(&consumer, 1).await,
        Error::GroupFenced { .. }
    );
    assert_err!(
        store
            .delete_committed_offsets("g", 1, &[("t".into(), 0)])
            .await,
        Error::GroupFenced { .. }
    );
    assert_err!(store.delete_group("g", 1).await, Error::GroupFenced { .. });
    store
        .commit_offsets("g", 2, &[offset("t", 0, 9, "")])
        .await
        .expect("commit under the new epoch");
    assert_eq!(offsets_of(store, "g").await, vec![offset("t", 0, 9, "")]);
    // A release under an epoch the session does not hold changes nothing.
    store
        .release_groups(first, &[("g".into(), 2)])
        .await
        .expect("release of a group not held");
    assert_err!(
        claim_group(store, first, "g", T0).await,
        Error::GroupNotClaimable { coordinator, .. } if coordinator == second
    );
}

pub async fn a_live_coordinator_keeps_its_group_until_its_lease_lapses(store: &dyn MetadataStore) {
    let zombie = register(store, 1, T0).await;
    let heir = register(store, 2, T0).await;
    let epoch = claim_group(store, zombie, "g", T0)
        .await
        .expect("claim")
        .coordinator_epoch;
    assert_err!(
        claim_group(store, heir, "g", T0 + LEASE_MS - 1).await,
        Error::GroupNotClaimable { ref group_id, coordinator } if group_id == "g" && coordinator == zombie
    );
    // A group never claimed cannot be written.
    assert_err!(
        store
            .commit_offsets("new", 1, &[offset("t", 0, 1, "")])
            .await,
        Error::GroupFenced {
            expected: 1,
            current: 0,
            ..
        }
    );

    let later = T0 + LEASE_MS + 1;
    store
        .renew_lease(heir, later, LEASE_MS)
        .await
        .expect("renew");
    let claimed = claim_group(store, heir, "g", later)
        .await
        .expect("claim after lapse");
    assert_eq!(claimed.coordinator_epoch, epoch + 1);
    // The zombie's session was fenced by the claim.
    assert_err!(
        store.renew_lease(zombie, later, LEASE_MS).await,
        Error::SessionFenced(_)
    );
    assert_err!(
        store
            .commit_offsets("g", epoch, &[offset("t", 0, 1, "")])
            .await,
        Error::GroupFenced { .. }
    );
    // A claim by an ended session is refused whole.
    assert_err!(
        store.claim_groups(zombie, &["h".to_string()], later).await,
        Error::SessionFenced(_)
    );
}

pub async fn a_deleted_group_keeps_its_coordinator_epoch(store: &dyn MetadataStore) {
    let epoch = coordinate(store, "g").await;
    store
        .commit_offsets("g", epoch, &[offset("t", 0, 1, "")])
        .await
        .expect("commit");
    store.delete_group("g", epoch).await.expect("delete");
    // Claiming the group id again (its own coordinator) gives a newer epoch,
    // so a late write from before the delete cannot bring it back.
    let again = coordinate(store, "g").await;
    assert_eq!(again, epoch + 1);
    assert_err!(
        store
            .commit_offsets("g", epoch, &[offset("t", 0, 1, "")])
            .await,
        Error::GroupFenced { .. }
    );
    assert!(store.groups().await.expect("groups").is_empty());
}

pub async fn index_segments_summarise_entries_by_the_segment_of_their_base_offset(
    store: &dyn MetadataStore,
) {
    use crate::model::{INDEX_SEGMENT_OFFSETS, IndexSegment};

    let topic = create(store, "t", 1).await;
    let tp = TopicPartition::new(topic.topic_id, 0);
    assert!(store.index_segments(tp).await.expect("segments").is_empty());
    let end_of_first = INDEX_SEGMENT_OFFSETS - 1;
    // [0, 9]; [10, end + 10]: starts in segment 0 and runs into segment 1;
    // [end + 11, end + 11] in segment 1; then one far later (segment 3),
    // leaving segment 2 empty (a batch of many records can span it).
    commit_ok(
        store,
        &flush(
            "o1",
            vec![entry(tp, 0, 9, 50), entry(tp, 10, end_of_first + 10, 70)],
        ),
    )
    .await;
    commit_ok(
        store,
        &flush(
            "o2",
            vec![
                entry(tp, end_of_first + 11, 3 * INDEX_SEGMENT_OFFSETS, 30),
                entry(
                    tp,
                    3 * INDEX_SEGMENT_OFFSETS + 1,
                    3 * INDEX_SEGMENT_OFFSETS + 1,
                    90,
                ),
            ],
        ),
    )
    .await;
    let segment = |segment, base_offset, last_offset, entries, max_timestamp| IndexSegment {
        topic_partition: tp,
        segment,
        base_offset,
        last_offset,
        entries,
        bytes: entries * ENTRY_LENGTH_BYTES as i64,
        max_timestamp,
    };
    assert_eq!(
        store.index_segments(tp).await.expect("segments"),
        vec![
            segment(0, 0, end_of_first + 10, 2, 70),
            segment(1, end_of_first + 11, 3 * INDEX_SEGMENT_OFFSETS, 1, 30),
            segment(
                3,
                3 * INDEX_SEGMENT_OFFSETS + 1,
                3 * INDEX_SEGMENT_OFFSETS + 1,
                1,
                90
            ),
        ]
    );
    // An offset in a segment's span whose entry starts in an earlier
    // segment is found there.
    for from in [INDEX_SEGMENT_OFFSETS, end_of_first + 10] {
        let found = store.index_entries(tp, from, 1).await.expect("entries");
        assert_eq!(base_offsets(&found), [10], "from offset {from}");
    }
    for from in [2 * INDEX_SEGMENT_OFFSETS, 3 * INDEX_SEGMENT_OFFSETS] {
        let found = store.index_entries(tp, from, 1).await.expect("entries");
        assert_eq!(
            base_offsets(&found),
            [end_of_first + 11],
            "from offset {from}"
        );
    }
    // The segments go with their topic.
    store
        .delete_topic(topic.topic_id)
        .await
        .expect("delete_topic");
    assert!(store.index_segments(tp).await.expect("segments").is_empty());
}

mod log_start;
pub use log_start::*;
mod swap;
pub use swap::*;
