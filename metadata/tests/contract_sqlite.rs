//! Runs the `MetadataStore` contract suite against the SQLite backend, both in
//! memory and on a file, and checks what only a file store promises: state
//! survives closing and reopening, and two stores on one file (two brokers on
//! one host) see and fence each other's commits.

use metadata::{ClusterStore, LogStore, TopicStore};
use std::collections::BTreeMap;
use std::path::Path;

use metadata::contract::StoreFixture;
use metadata::{
    BrokerRegistration, BrokerSession, Error, FlushCommit, IndexEntry, MetadataStore, SqliteStore,
    TopicId, TopicPartition,
};
use tempfile::TempDir;

mod in_memory {
    metadata::metadata_store_contract_tests!(|| async {
        metadata::SqliteStore::open_in_memory().expect("open in-memory store")
    });
}

mod on_file {
    metadata::metadata_store_contract_tests!(|| async { super::FileStore::new() });
}

/// A store on a file in a temporary directory that lives as long as the store.
struct FileStore {
    store: SqliteStore,
    // Dropped after `store`: fields drop in declaration order.
    _dir: TempDir,
}

impl FileStore {
    fn new() -> FileStore {
        let dir = tempfile::tempdir().expect("create temp dir");
        let store = SqliteStore::open(&dir.path().join("metadata.db")).expect("open file store");
        FileStore { store, _dir: dir }
    }
}

impl StoreFixture for FileStore {
    fn store(&self) -> &dyn MetadataStore {
        &self.store
    }
}

/// A lease no test outlives.
const LONG_LEASE_MS: i64 = 1 << 40;

/// Registers `node_id` and claims every partition of `topic_id` for it; its
/// session and the partitions' epoch (all new: 1).
async fn lead(store: &SqliteStore, node_id: i32, topic_id: TopicId) -> (BrokerSession, i32) {
    let registration = BrokerRegistration {
        node_id,
        host: "localhost".into(),
        port: 9092,
        rack: None,
    };
    let session = store
        .register_broker(&registration, 0, LONG_LEASE_MS)
        .await
        .expect("register_broker");
    let partitions: Vec<TopicPartition> = store
        .partition_states(&[topic_id])
        .await
        .expect("partition_states")
        .into_iter()
        .map(|s| s.topic_partition)
        .filter(|tp| tp.topic_id == topic_id)
        .collect();
    for answer in store
        .claim_partitions(session, &partitions, 0)
        .await
        .expect("claim_partitions")
    {
        assert_eq!(answer.expect("claim").state.leader_epoch, 1);
    }
    (session, 1)
}

fn one_entry_commit(
    (session, epoch): (BrokerSession, i32),
    object_key: &str,
    tp: TopicPartition,
    base_offset: i64,
    last_offset: i64,
) -> FlushCommit {
    FlushCommit {
        session,
        object_key: object_key.into(),
        object_size: 4096,
        entries: vec![IndexEntry {
            topic_partition: tp,
            base_offset,
            last_offset,
            object_key: object_key.into(),
            position: 0,
            length: 4096,
            max_timestamp: 1_700_000_000_000,
        }],
        leader_epochs: vec![epoch],
        producers: Vec::new(),
    }
}

fn open(path: &Path) -> SqliteStore {
    SqliteStore::open(path).expect("open file store")
}

#[tokio::test]
async fn committed_state_survives_reopening_the_file() {
    let dir = tempfile::tempdir().expect("create temp dir");
    let path = dir.path().join("metadata.db");
    let topic_id = TopicId::new_random();
    let tp = TopicPartition::new(topic_id, 1);
    let configs = BTreeMap::from([("retention.ms".to_string(), "60000".to_string())]);

    let (cluster_id, topics, leader, commit) = {
        let store = open(&path);
        store
            .create_topic("orders", topic_id, 2, configs)
            .await
            .expect("create_topic");
        let leader = lead(&store, 1, topic_id).await;
        let commit = one_entry_commit(leader, "o1", tp, 0, 41);
        store.commit_flush(&commit).await.expect("commit_flush");
        (
            store.cluster_id().await.expect("cluster_id"),
            store.topics().await.expect("topics"),
            leader,
            commit,
        )
    };

    let store = open(&path);
    assert_eq!(store.cluster_id().await.expect("cluster_id"), cluster_id);
    assert_eq!(store.topics().await.expect("topics"), topics);
    let state = store
        .partition_states(&[tp.topic_id])
        .await
        .expect("partition_states")
        .into_iter()
        .find(|s| s.topic_partition == tp)
        .expect("partition state after reopen");
    assert_eq!(state.next_offset, 42);
    assert_eq!(
        store.index_entries(tp, 0, 10).await.expect("index_entries"),
        commit.entries
    );
    // The log continues where it stopped.
    let next = one_entry_commit(leader, "o2", tp, 42, 42);
    store
        .commit_flush(&next)
        .await
        .expect("commit after reopen");
}

#[tokio::test]
async fn stores_sharing_a_file_see_and_fence_each_other() {
    let dir = tempfile::tempdir().expect("create temp dir");
    let path = dir.path().join("metadata.db");
    let broker_a = open(&path);
    let broker_b = open(&path);
    assert_eq!(
        broker_a.cluster_id().await.expect("cluster_id"),
        broker_b.cluster_id().await.expect("cluster_id"),
        "two stores on one file made two cluster ids"
    );

    let topic_id = TopicId::new_random();
    broker_a
        .create_topic("orders", topic_id, 1, BTreeMap::new())
        .await
        .expect("create_topic");
    let names: Vec<String> = broker_b
        .topics()
        .await
        .expect("topics")
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(names, ["orders"]);
    assert!(matches!(
        broker_b
            .create_topic("orders", TopicId::new_random(), 1, BTreeMap::new())
            .await,
        Err(Error::TopicAlreadyExists(_))
    ));

    let tp = TopicPartition::new(topic_id, 0);
    let a = lead(&broker_a, 1, topic_id).await;
    let b_session = broker_b
        .register_broker(
            &BrokerRegistration {
                node_id: 2,
                host: "localhost".into(),
                port: 9093,
                rack: None,
            },
            0,
            LONG_LEASE_MS,
        )
        .await
        .expect("register b");
    let refused = broker_b
        .claim_partitions(b_session, &[tp], 1)
        .await
        .expect("claim_partitions");
    assert!(
        matches!(refused[0], Err(Error::NotClaimable { .. })),
        "got {refused:?}"
    );
    broker_a
        .commit_flush(&one_entry_commit(a, "a1", tp, 0, 9))
        .await
        .expect("commit from a");
    // B does not lead the partition: whatever epoch it tries, it is fenced.
    for epoch in [0, 1, 2] {
        let stale = broker_b
            .commit_flush(&one_entry_commit((b_session, epoch), "b1", tp, 10, 19))
            .await;
        assert!(matches!(stale, Err(Error::Fenced { .. })), "got {stale:?}");
    }
    // A hands the partition over; from then on only B's commits land.
    broker_a
        .release_partitions(a.0, &[(tp, a.1)])
        .await
        .expect("release");
    let claimed = broker_b
        .claim_partitions(b_session, &[tp], 1)
        .await
        .expect("claim_partitions")
        .remove(0)
        .expect("claim after release");
    assert_eq!(
        (claimed.state.leader_epoch, claimed.state.next_offset),
        (2, 10)
    );
    let late = broker_a
        .commit_flush(&one_entry_commit(a, "a2", tp, 10, 19))
        .await;
    assert!(matches!(late, Err(Error::Fenced { .. })), "got {late:?}");
    broker_b
        .commit_flush(&one_entry_commit((b_session, 2), "b2", tp, 10, 19))
        .await
        .expect("commit from b at next_offset");
    let keys: Vec<String> = broker_a
        .index_entries(tp, 0, 10)
        .await
        .expect("index_entries")
        .into_iter()
        .map(|e| e.object_key)
        .collect();
    assert_eq!(keys, ["a1", "b2"]);
}

/// Two stores on one file (two broker processes) claim one partition at the
/// same moment, many times over: exactly one wins each time.
#[tokio::test]
async fn stores_sharing_a_file_racing_for_a_partition_one_wins() {
    let dir = tempfile::tempdir().expect("create temp dir");
    let path = dir.path().join("metadata.db");
    let (a, b) = (open(&path), open(&path));
    metadata::contract::two_stores_racing_for_a_partition_one_wins([&a, &b], 20).await;
}

#[tokio::test]
async fn concurrent_commits_from_many_tasks_apply_exactly_once_each() {
    let fixture = FileStore::new();
    let store = fixture.store.clone();
    let topic_id = TopicId::new_random();
    store
        .create_topic("orders", topic_id, 8, BTreeMap::new())
        .await
        .expect("create_topic");
    let leader = lead(&store, 1, topic_id).await;
    let mut tasks = Vec::new();
    for partition in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let tp = TopicPartition::new(topic_id, partition);
            for i in 0..10 {
                let key = format!("p{partition}-{i}");
                store
                    .commit_flush(&one_entry_commit(leader, &key, tp, i * 5, i * 5 + 4))
                    .await
                    .expect("commit_flush");
            }
        }));
    }
    for task in tasks {
        task.await.expect("commit task");
    }
    let topic_ids: Vec<_> = store
        .topics()
        .await
        .expect("topics")
        .iter()
        .map(|t| t.topic_id)
        .collect();
    let states = store
        .partition_states(&topic_ids)
        .await
        .expect("partition_states");
    assert_eq!(states.len(), 8);
    assert!(states.iter().all(|s| s.next_offset == 50), "{states:?}");
}

#[test]
fn open_refuses_a_path_in_a_missing_directory() {
    let dir = tempfile::tempdir().expect("create temp dir");
    let result = SqliteStore::open(&dir.path().join("missing").join("metadata.db"));
    assert!(matches!(result, Err(Error::Backend(_))), "got {result:?}");
}
