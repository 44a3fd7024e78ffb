//! Runs the `MetadataStore` contract suite against the SQLite backend, both in
//! memory and on a file, and checks what only a file store promises: state
//! survives closing and reopening, and two stores on one file (two brokers on
//! one host) see and fence each other's commits.

use std::collections::BTreeMap;
use std::path::Path;

use metadata::contract::StoreFixture;
use metadata::{
    Error, FlushCommit, IndexEntry, MetadataStore, SqliteStore, TopicId, TopicPartition,
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

fn one_entry_commit(
    object_key: &str,
    tp: TopicPartition,
    base_offset: i64,
    last_offset: i64,
) -> FlushCommit {
    FlushCommit {
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
        leader_epochs: vec![0],
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
    let commit = one_entry_commit("o1", tp, 0, 41);

    let (cluster_id, topics) = {
        let store = open(&path);
        store
            .create_topic("orders", topic_id, 2, configs)
            .await
            .expect("create_topic");
        store.commit_flush(&commit).await.expect("commit_flush");
        (
            store.cluster_id().await.expect("cluster_id"),
            store.topics().await.expect("topics"),
        )
    };

    let store = open(&path);
    assert_eq!(store.cluster_id().await.expect("cluster_id"), cluster_id);
    assert_eq!(store.topics().await.expect("topics"), topics);
    let state = store
        .partition_states()
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
    let next = one_entry_commit("o2", tp, 42, 42);
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
    broker_a
        .commit_flush(&one_entry_commit("a1", tp, 0, 9))
        .await
        .expect("commit from a");
    // B's view of the log is stale: its commit at offset 0 must not land.
    let stale = broker_b
        .commit_flush(&one_entry_commit("b1", tp, 0, 9))
        .await;
    assert!(
        matches!(
            stale,
            Err(Error::OffsetMismatch {
                next_offset: 10,
                ..
            })
        ),
        "got {stale:?}"
    );
    broker_b
        .commit_flush(&one_entry_commit("b2", tp, 10, 19))
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

#[tokio::test]
async fn concurrent_commits_from_many_tasks_apply_exactly_once_each() {
    let fixture = FileStore::new();
    let store = fixture.store.clone();
    let topic_id = TopicId::new_random();
    store
        .create_topic("orders", topic_id, 8, BTreeMap::new())
        .await
        .expect("create_topic");
    let mut tasks = Vec::new();
    for partition in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let tp = TopicPartition::new(topic_id, partition);
            for i in 0..10 {
                let key = format!("p{partition}-{i}");
                store
                    .commit_flush(&one_entry_commit(&key, tp, i * 5, i * 5 + 4))
                    .await
                    .expect("commit_flush");
            }
        }));
    }
    for task in tasks {
        task.await.expect("commit task");
    }
    let states = store.partition_states().await.expect("partition_states");
    assert_eq!(states.len(), 8);
    assert!(states.iter().all(|s| s.next_offset == 50), "{states:?}");
}

#[test]
fn open_refuses_a_path_in_a_missing_directory() {
    let dir = tempfile::tempdir().expect("create temp dir");
    let result = SqliteStore::open(&dir.path().join("missing").join("metadata.db"));
    assert!(matches!(result, Err(Error::Backend(_))), "got {result:?}");
}
