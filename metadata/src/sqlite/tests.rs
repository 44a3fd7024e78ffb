use super::*;
use crate::store::{ErrorKind, GroupStore};

#[test]
fn base64url_matches_rfc_4648_vectors() {
    let cases: [(&[u8], &str); 7] = [
        (b"", ""),
        (b"f", "Zg"),
        (b"fo", "Zm8"),
        (b"foo", "Zm9v"),
        (b"foob", "Zm9vYg"),
        (b"fooba", "Zm9vYmE"),
        (b"foobar", "Zm9vYmFy"),
    ];
    for (input, expected) in cases {
        assert_eq!(base64url_no_pad(input), expected);
    }
}

#[test]
fn base64url_uses_url_safe_alphabet() {
    // Standard base64 of these bytes is "+/8=".
    assert_eq!(base64url_no_pad(&[0xfb, 0xff]), "-_8");
}

#[test]
fn cluster_id_is_kafka_form_of_a_uuid() {
    let id = new_cluster_id();
    assert_eq!(id.len(), 22);
    assert!(!id.starts_with('-'));
    // Kafka's encoding of the nil UUID, as `Uuid.ZERO_UUID.toString()` prints it.
    assert_eq!(
        base64url_no_pad(Uuid::nil().as_bytes()),
        "AAAAAAAAAAAAAAAAAAAAAA"
    );
}

#[tokio::test]
async fn commit_with_position_beyond_i64_is_refused_before_any_sql() {
    let store = SqliteStore::open_in_memory().expect("open in memory");
    let topic_id = TopicId::new_random();
    store
        .create_topic("t", topic_id, 1, BTreeMap::new())
        .await
        .expect("create topic");
    let tp = TopicPartition::new(topic_id, 0);
    let commit = FlushCommit {
        session: crate::BrokerSession {
            node_id: 1,
            incarnation: 1,
        },
        object_key: "o".into(),
        object_size: 10,
        entries: vec![IndexEntry {
            topic_partition: tp,
            base_offset: 0,
            last_offset: 0,
            object_key: "o".into(),
            position: u64::MAX,
            length: 10,
            max_timestamp: 0,
        }],
        leader_epochs: vec![0],
        producers: Vec::new(),
    };
    let err = store
        .commit_flush(&commit)
        .await
        .expect_err("position beyond i64");
    assert!(matches!(err, Error::Backend(_)), "got {err:?}");
    let states = store
        .partition_states(&[commit.entries[0].topic_partition.topic_id])
        .await
        .expect("partition states");
    assert_eq!(states[0].next_offset, 0);
}

#[test]
fn file_store_syncs_every_commit_to_a_wal() {
    let dir = tempfile::tempdir().expect("create temp dir");
    let store = SqliteStore::open(&dir.path().join("metadata.db")).expect("open");
    let conn = store.conn.lock().expect("lock");
    let journal_mode: String = conn
        .pragma_query_value(None, "journal_mode", |row| row.get(0))
        .expect("journal_mode");
    assert_eq!(journal_mode, "wal");
    // 2 is FULL.
    let synchronous: i64 = conn
        .pragma_query_value(None, "synchronous", |row| row.get(0))
        .expect("synchronous");
    assert_eq!(synchronous, 2);
    let busy_timeout_ms: u64 = conn
        .pragma_query_value(None, "busy_timeout", |row| row.get(0))
        .expect("busy_timeout");
    assert_eq!(busy_timeout_ms, BUSY_TIMEOUT_MS);
}

#[test]
fn open_refuses_a_newer_schema() {
    let dir = tempfile::tempdir().expect("create temp dir");
    let path = dir.path().join("metadata.db");
    drop(SqliteStore::open(&path).expect("open"));
    let conn = Connection::open(&path).expect("open raw");
    conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
        .expect("set user_version");
    drop(conn);
    let err = SqliteStore::open(&path).expect_err("newer schema");
    assert!(err.to_string().contains("unsupported schema"), "{err}");
}

#[tokio::test]
async fn open_migrates_every_older_version_keeping_its_data() {
    for old in 1..SCHEMA_VERSION {
        let dir = tempfile::tempdir().expect("create temp dir");
        let path = dir.path().join("metadata.db");
        {
            // A file as version `old` wrote it: the steps up to it only.
            let conn = Connection::open(&path).expect("open raw");
            for sql in &SCHEMA_STEPS[..old as usize] {
                conn.execute_batch(sql).expect("older schema");
            }
            conn.execute(
                "INSERT INTO cluster (singleton, cluster_id) VALUES (0, 'abc')",
                [],
            )
            .expect("cluster id");
            conn.pragma_update(None, "user_version", old)
                .expect("set user_version");
        }
        let store = SqliteStore::open(&path).expect("open and migrate");
        assert_eq!(store.cluster_id().await.expect("cluster_id"), "abc");
        assert!(store.producer_states().await.expect("states").is_empty());
        assert_eq!(store.allocate_producer_ids(10).await.expect("ids"), 0);
        assert!(store.groups().await.expect("groups").is_empty());
        let keys = ["k".to_string()];
        assert!(
            store
                .referenced_objects(&keys)
                .await
                .expect("objects")
                .is_empty()
        );
        let version: i64 = store
            .conn
            .lock()
            .expect("lock")
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .expect("user_version");
        assert_eq!(version, SCHEMA_VERSION, "from version {old}");
        drop(store);
        // Producer ids survive a reopen.
        let store = SqliteStore::open(&path).expect("reopen");
        assert_eq!(store.allocate_producer_ids(10).await.expect("ids"), 10);
    }
}

#[test]
fn index_lookups_seek_with_the_indexes() {
    let store = SqliteStore::open_in_memory().expect("open in memory");
    let conn = store.conn.lock().expect("lock");
    let plan = |sql: &str| -> String {
        let mut stmt = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .expect("prepare");
        let nulls = std::iter::repeat_n(rusqlite::types::Null, stmt.parameter_count());
        let rows = stmt
            .query_map(rusqlite::params_from_iter(nulls), |row| {
                row.get::<_, String>(3)
            })
            .expect("query plan");
        rows.map(|r| r.expect("plan row"))
            .collect::<Vec<_>>()
            .join("; ")
    };
    for sql in [
        INDEX_ENTRIES_SQL,
        INDEX_ENTRY_BY_TIMESTAMP_SQL,
        INDEX_ENTRY_MAX_TIMESTAMP_SQL,
    ] {
        let plan = plan(sql);
        assert!(!plan.contains("SCAN"), "full scan in {plan}");
        assert!(!plan.contains("TEMP B-TREE"), "sort in {plan}");
    }
    let entries = plan(INDEX_ENTRIES_SQL);
    assert!(entries.contains("base_offset>"), "{entries}");
    assert!(entries.contains("base_offset<"), "{entries}");
    let by_timestamp = plan(INDEX_ENTRY_BY_TIMESTAMP_SQL);
    assert!(by_timestamp.contains("max_timestamp>"), "{by_timestamp}");
    let max_timestamp = plan(INDEX_ENTRY_MAX_TIMESTAMP_SQL);
    assert!(
        max_timestamp.contains("partition_index_by_max_timestamp"),
        "{max_timestamp}"
    );
}

/// A metadata file with enough topics to span many pages, checkpointed so
/// that every page is in the main file; returns its path.
async fn file_with_topics(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("metadata.sqlite");
    let store = SqliteStore::open(&path).unwrap();
    for i in 0..200 {
        let configs = BTreeMap::from([("cleanup.policy".to_string(), "x".repeat(200))]);
        store
            .create_topic(&format!("topic-{i}"), TopicId::new_random(), 4, configs)
            .await
            .unwrap();
    }
    drop(store);
    checkpoint(&path);
    path
}

fn checkpoint(path: &Path) {
    let conn = Connection::open(path).unwrap();
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .unwrap();
}

/// Overwrites every page but the first (the header) with a pattern.
fn scribble_over_pages(path: &Path) {
    let mut bytes = std::fs::read(path).unwrap();
    assert!(bytes.len() > 8 * 4096, "{} bytes", bytes.len());
    for (i, b) in bytes[4096..].iter_mut().enumerate() {
        *b = (i * 7 + 13) as u8;
    }
    std::fs::write(path, bytes).unwrap();
}

#[tokio::test]
async fn a_damaged_file_is_refused_at_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let path = file_with_topics(dir.path()).await;
    scribble_over_pages(&path);
    let refused = SqliteStore::open(&path).expect_err("a damaged file must not open");
    let message = refused.to_string();
    assert!(
        message.contains("quick_check") || message.contains("malformed"),
        "{message}"
    );
}

#[tokio::test]
async fn corruption_seen_at_run_time_stops_every_write() {
    let dir = tempfile::tempdir().unwrap();
    let path = file_with_topics(dir.path()).await;
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.topics().await.unwrap().len(), 200);
    // Damage under the running store; a checkpoint by another connection
    // makes it drop its cached pages and read the damaged ones.
    checkpoint(&path);
    scribble_over_pages(&path);
    // This checkpoint may itself read a damaged page (which page depends
    // on the schema's layout); either way the store's cache is stale now.
    let _ = Connection::open(&path)
        .and_then(|conn| conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())));
    let read = store.topics().await;
    assert!(read.is_err(), "damaged pages must not read as topics");
    let write = store
        .create_topic("after-damage", TopicId::new_random(), 1, BTreeMap::new())
        .await
        .expect_err("no write after corruption was seen");
    assert!(write.to_string().contains("refuses writes"), "{write}");
}

#[tokio::test]
async fn a_version_7_file_gets_index_segments_built_from_its_entries() {
    assert_eq!(
        crate::model::INDEX_SEGMENT_OFFSETS,
        65_536,
        "SCHEMA_8 divides by this literal"
    );
    let dir = tempfile::tempdir().expect("create temp dir");
    let path = dir.path().join("metadata.db");
    let topic_id = TopicId::new_random();
    {
        let conn = Connection::open(&path).expect("open raw");
        for sql in &SCHEMA_STEPS[..7] {
            conn.execute_batch(sql).expect("older schema");
        }
        conn.execute(
            "INSERT INTO cluster (singleton, cluster_id) VALUES (0, 'abc')",
            [],
        )
        .expect("cluster id");
        // Entries [0, 9], [10, 65_545] (base in segment 0, runs into 1),
        // [65_546, 65_546] (segment 1).
        for (base, last, ts) in [(0, 9, 5), (10, 65_545, 7), (65_546, 65_546, 3)] {
            conn.execute(
                "INSERT INTO partition_index VALUES (?1, 0, ?2, ?3, 'o', 0, 100, ?4)",
                params![id_bytes(topic_id), base, last, ts],
            )
            .expect("entry");
        }
        conn.pragma_update(None, "user_version", 7)
            .expect("set user_version");
    }
    let store = SqliteStore::open(&path).expect("open and migrate");
    let segments = store
        .index_segments(TopicPartition::new(topic_id, 0))
        .await
        .expect("segments");
    let summary: Vec<(i64, i64, i64, i64, i64, i64)> = segments
        .iter()
        .map(|s| {
            (
                s.segment,
                s.base_offset,
                s.last_offset,
                s.entries,
                s.bytes,
                s.max_timestamp,
            )
        })
        .collect();
    assert_eq!(
        summary,
        [(0, 0, 65_545, 2, 200, 7), (1, 65_546, 65_546, 1, 100, 3)]
    );
}

/// Another process holding the file's write lock past the busy timeout:
/// a write is refused as `Unavailable` (nothing applied, retriable), and a
/// broker opening the file meanwhile waits for the lock instead of failing.
#[tokio::test]
async fn a_write_lock_held_elsewhere_is_unavailable_and_open_waits_for_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("metadata.sqlite");
    let store = SqliteStore::open(&path).expect("open");
    let holder = Connection::open(&path).expect("second connection");
    holder
        .execute_batch("BEGIN IMMEDIATE")
        .expect("take the write lock");
    let held_since = std::time::Instant::now();

    let registration = crate::model::BrokerRegistration {
        node_id: 1,
        host: "127.0.0.1".into(),
        port: 9092,
        rack: None,
    };
    let err = store
        .register_broker(&registration, 1_000, 9_000)
        .await
        .expect_err("the write lock is held elsewhere");
    assert!(matches!(err, Error::Unavailable(_)), "{err}");
    assert_eq!(err.kind(), ErrorKind::NotApplied);

    let opening = std::thread::spawn({
        let path = path.clone();
        move || SqliteStore::open(&path)
    });
    // Hold the lock past one more busy timeout, so that an open that did
    // not wait would have failed by now.
    while held_since.elapsed() < Duration::from_millis(2 * BUSY_TIMEOUT_MS + 500) {
        assert!(
            !opening.is_finished(),
            "open returned while the lock was held"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    holder
        .execute_batch("ROLLBACK")
        .expect("release the write lock");
    let reopened = opening
        .join()
        .expect("open thread")
        .expect("open after the lock");
    reopened
        .register_broker(&registration, 1_000, 9_000)
        .await
        .expect("a write once the lock is free");
}
