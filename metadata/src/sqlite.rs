//! The embedded SQLite backend of `MetadataStore`: one database file holds the
//! cluster id, the topics with their configs, each partition's committed state,
//! the offset index and the list of objects.
//!
//! It exists so a single node (or a few brokers on one host sharing the file)
//! runs with no external service. Durability comes from SQLite itself: WAL
//! journal with `synchronous=FULL`, so a commit that returned `Ok` survives
//! power loss. Every call runs its SQL on tokio's blocking pool, never on the
//! runtime's worker threads; calls are serialised on one connection per store.
//!
//! It deliberately does not cache anything (every read goes to the database,
//! so several brokers sharing the file see each other's commits), does not
//! delete objects (the `objects` rows are for garbage collection elsewhere), and
//! does not decide Kafka error codes.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, Row, Transaction, TransactionBehavior, params};

use crate::commit_rules::{check_flush_commit, check_index_swap, to_i64};
use crate::model::{
    BrokerRegistration, BrokerSession, FlushCommit, IndexEntry, IndexSegment, IndexSwap,
    PartitionClaim, PartitionState, ProducerBatch, ProducerState, RegisteredBroker, Topic, TopicId,
    TopicPartition, Uuid, index_segment,
};
use crate::store::{ClusterStore, Error, LogStore, Result, TopicStore};

/// How long a write waits for another connection (another broker sharing the
/// file) to release its lock before giving up. Commits are short (a few rows),
/// so waiting longer than this means the other side is stuck, not busy.
const BUSY_TIMEOUT_MS: u64 = 5_000;
/// How long opening the file waits for another process's write lock.
const OPEN_BUSY_LIMIT: Duration = Duration::from_secs(60);

/// The schema this code reads and writes, kept in `PRAGMA user_version`.
/// A file with another non-zero version is refused rather than guessed at.
const SCHEMA_VERSION: i64 = 8;

/// The schema in steps: step `i` takes a file from version `i` to `i + 1`.
const SCHEMA_STEPS: [&str; SCHEMA_VERSION as usize] = [
    SCHEMA,
    SCHEMA_2,
    SCHEMA_3,
    SCHEMA_4,
    SCHEMA_5,
    SCHEMA_6,
    groups::SCHEMA_7,
    SCHEMA_8,
];

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS cluster (
    singleton   INTEGER PRIMARY KEY CHECK (singleton = 0),
    cluster_id  TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS topics (
    topic_id         BLOB PRIMARY KEY,
    name             TEXT NOT NULL UNIQUE,
    partition_count  INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS topic_configs (
    topic_id  BLOB NOT NULL,
    name      TEXT NOT NULL,
    value     TEXT NOT NULL,
    PRIMARY KEY (topic_id, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS partition_state (
    topic_id          BLOB NOT NULL,
    partition         INTEGER NOT NULL,
    leader_epoch      INTEGER NOT NULL,
    log_start_offset  INTEGER NOT NULL,
    next_offset       INTEGER NOT NULL,
    PRIMARY KEY (topic_id, partition)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS partition_index (
    topic_id       BLOB NOT NULL,
    partition      INTEGER NOT NULL,
    base_offset    INTEGER NOT NULL,
    last_offset    INTEGER NOT NULL,
    object_key     TEXT NOT NULL,
    position       INTEGER NOT NULL,
    length         INTEGER NOT NULL,
    max_timestamp  INTEGER NOT NULL,
    PRIMARY KEY (topic_id, partition, base_offset)
) WITHOUT ROWID;
-- Serves ListOffsets by timestamp: the max-timestamp lookup reads the first row
-- of this order, the by-timestamp lookup a range of it.
CREATE INDEX IF NOT EXISTS partition_index_by_max_timestamp
    ON partition_index (topic_id, partition, max_timestamp DESC, base_offset);
CREATE TABLE IF NOT EXISTS objects (
    object_key     TEXT PRIMARY KEY,
    size           INTEGER NOT NULL,
    created_at_ms  INTEGER NOT NULL
);
";

/// Version 7 → 8: index segments (`crate::model::INDEX_SEGMENT_OFFSETS`):
/// one summary row per segment of a partition's index, kept by every
/// commit; an older file's summaries are built from its entries.
const SCHEMA_8: &str = "
CREATE TABLE IF NOT EXISTS partition_segments (
    topic_id       BLOB NOT NULL,
    partition      INTEGER NOT NULL,
    segment        INTEGER NOT NULL,
    base_offset    INTEGER NOT NULL,
    last_offset    INTEGER NOT NULL,
    entries        INTEGER NOT NULL,
    bytes          INTEGER NOT NULL,
    max_timestamp  INTEGER NOT NULL,
    PRIMARY KEY (topic_id, partition, segment)
) WITHOUT ROWID;
INSERT OR IGNORE INTO partition_segments
SELECT topic_id, partition, base_offset / 65536, MIN(base_offset), MAX(last_offset), COUNT(*),
       SUM(length), MAX(max_timestamp)
FROM partition_index
GROUP BY topic_id, partition, base_offset / 65536;
";

/// Version 5 → 6: cluster mode. The broker registry (one row per node id:
/// its latest session), each partition's leading session, and the cluster
/// version brokers watch. Partitions of an older file have no leader: the
/// first broker to start claims them.
const SCHEMA_6: &str = "
CREATE TABLE IF NOT EXISTS brokers (
    node_id           INTEGER PRIMARY KEY,
    incarnation       INTEGER NOT NULL,
    host              TEXT NOT NULL,
    port              INTEGER NOT NULL,
    rack              TEXT,
    status            INTEGER NOT NULL,
    lease_expires_ms  INTEGER NOT NULL
);
ALTER TABLE partition_state ADD COLUMN leader_node INTEGER;
ALTER TABLE partition_state ADD COLUMN leader_incarnation INTEGER;
CREATE TABLE IF NOT EXISTS cluster_version (
    singleton  INTEGER PRIMARY KEY CHECK (singleton = 0),
    version    INTEGER NOT NULL
);
INSERT OR IGNORE INTO cluster_version (singleton, version) VALUES (0, 0);
";

/// Version 4 → 5: `producer_state.batches` may hold the second byte form
/// (with each batch's max timestamp, `ProducerBatch::encode_batches`). No
/// table changes: the version moves so that an older broker refuses the file
/// with "unsupported schema" instead of calling those rows corrupt. Version 4
/// rows still read.
const SCHEMA_5: &str = "
-- producer_state.batches: form 1 (see ProducerBatch::encode_batches)
";

/// Version 3 → 4: garbage collection asks which objects index entries name.
/// Also part of a new file's schema.
const SCHEMA_4: &str = "
CREATE INDEX IF NOT EXISTS partition_index_by_object ON partition_index (object_key);
";

/// Version 2 → 3: consumer groups and their committed offsets.
/// Also part of a new file's schema.
const SCHEMA_3: &str = "
CREATE TABLE IF NOT EXISTS consumer_groups (
    group_id       TEXT PRIMARY KEY,
    protocol_type  TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS committed_offsets (
    group_id             TEXT NOT NULL,
    topic                TEXT NOT NULL,
    partition            INTEGER NOT NULL,
    committed_offset     INTEGER NOT NULL,
    leader_epoch         INTEGER NOT NULL,
    metadata             TEXT NOT NULL,
    commit_timestamp_ms  INTEGER NOT NULL,
    PRIMARY KEY (group_id, topic, partition)
) WITHOUT ROWID;
";

/// Version 1 → 2: idempotent producers (producer ids and per-partition state).
/// Also part of a new file's schema.
const SCHEMA_2: &str = "
CREATE TABLE IF NOT EXISTS producer_ids (
    singleton         INTEGER PRIMARY KEY CHECK (singleton = 0),
    next_producer_id  INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS producer_state (
    topic_id        BLOB NOT NULL,
    partition       INTEGER NOT NULL,
    producer_id     INTEGER NOT NULL,
    producer_epoch  INTEGER NOT NULL,
    last_write_ms   INTEGER NOT NULL,
    batches         BLOB NOT NULL,
    PRIMARY KEY (topic_id, partition, producer_id)
) WITHOUT ROWID;
";

/// Index entries of `(?1, ?2)` with `last_offset >= ?3`, at most `?4`.
///
/// Entries of a partition never overlap (commit_flush only appends at
/// next_offset), so the entry holding `?3` is the one with the greatest
/// `base_offset <= ?3`. Seeking to it on the primary key keeps a fetch near the
/// end of a long partition from scanning the partition from its start.
const INDEX_ENTRIES_SQL: &str = "
SELECT base_offset, last_offset, object_key, position, length, max_timestamp
FROM partition_index
WHERE topic_id = ?1 AND partition = ?2 AND last_offset >= ?3
  AND base_offset >= COALESCE(
    (SELECT base_offset FROM partition_index
     WHERE topic_id = ?1 AND partition = ?2 AND base_offset <= ?3
     ORDER BY base_offset DESC LIMIT 1),
    ?3)
ORDER BY base_offset
LIMIT ?4";

/// The lowest-offset entry of `(?1, ?2)` with `max_timestamp >= ?3`.
///
/// Left to itself SQLite walks the primary key from offset 0 until an entry
/// qualifies, which reads nearly the whole partition for the usual lookup
/// (a recent timestamp) and all of it when none qualifies. The timestamp index
/// reads only the entries at or after the timestamp, so it is forced.
const INDEX_ENTRY_BY_TIMESTAMP_SQL: &str = "
SELECT base_offset, last_offset, object_key, position, length, max_timestamp
FROM partition_index
WHERE topic_id = ?1 AND partition = ?2 AND base_offset = (
    SELECT MIN(base_offset)
    FROM partition_index INDEXED BY partition_index_by_max_timestamp
    WHERE topic_id = ?1 AND partition = ?2 AND max_timestamp >= ?3)";

/// The entry of `(?1, ?2)` with the greatest `max_timestamp`, the lowest offset
/// among ties: the first row of the timestamp index.
const INDEX_ENTRY_MAX_TIMESTAMP_SQL: &str = "
SELECT base_offset, last_offset, object_key, position, length, max_timestamp
FROM partition_index
WHERE topic_id = ?1 AND partition = ?2
ORDER BY max_timestamp DESC, base_offset ASC
LIMIT 1";

/// `MetadataStore` on an embedded SQLite database.
///
/// Cloning is cheap and shares the connection.
#[derive(Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
    /// Set once SQLite reports the file corrupt; writes are refused from
    /// then on, so nothing more is committed to a damaged store.
    damaged: Arc<std::sync::atomic::AtomicBool>,
}

thread_local! {
    /// Set by `backend` when SQLite's error says the file is damaged; read
    /// and cleared by `with_conn` on the same blocking thread.
    static CORRUPTION_SEEN: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// Set by `with_conn` while it runs an operation on a damaged store;
    /// `begin_write` refuses then.
    static REFUSE_WRITES: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens the database at `path`, creating the file, the schema and the
    /// cluster id when missing. Several stores (in one or several processes)
    /// may open the same file; writes wait up to `BUSY_TIMEOUT_MS` for each other.
    ///
    /// This call blocks on file I/O; call it before serving, or from
    /// `spawn_blocking`.
    pub fn open(path: &Path) -> Result<SqliteStore> {
        let conn = Connection::open(path)
            .map_err(|e| backend(format!("open path={}", path.display()), e))?;
        conn.busy_timeout(Duration::from_millis(BUSY_TIMEOUT_MS))
            .or_backend(|| "set busy_timeout".into())?;
        let journal_mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
            .or_backend(|| "set journal_mode=wal".into())?;
        if !journal_mode.eq_ignore_ascii_case("wal") {
            return Err(Error::Backend(format!(
                "journal_mode=wal refused path={} journal_mode={journal_mode}",
                path.display()
            )));
        }
        quick_check(&conn, path)?;
        Self::init(conn)
    }

    /// Opens a private database in memory, gone when the store is dropped. For tests.
    pub fn open_in_memory() -> Result<SqliteStore> {
        let conn = Connection::open_in_memory().or_backend(|| "open in memory".into())?;
        Self::init(conn)
    }

    /// Sets the durability pragma, creates the schema if absent and makes the
    /// cluster id on first open. Safe when several processes open a new file
    /// at once: the immediate transaction lets exactly one create it.
    fn init(mut conn: Connection) -> Result<SqliteStore> {
        // An acknowledged produce must survive power loss: fsync the WAL on every commit.
        conn.pragma_update(None, "synchronous", "FULL")
            .or_backend(|| "set synchronous=full".into())?;
        let tx = begin_schema_transaction(&mut conn)?;
        let version: i64 = tx
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .or_backend(|| "read user_version".into())?;
        match version {
            // A new file runs every step; an older one the steps it lacks.
            0..SCHEMA_VERSION => {
                for (step, sql) in SCHEMA_STEPS.iter().enumerate().skip(version as usize) {
                    tx.execute_batch(sql)
                        .or_backend(|| format!("schema step to version {}", step + 1))?;
                }
                if version == 0 {
                    tx.execute(
                        "INSERT OR IGNORE INTO cluster (singleton, cluster_id) VALUES (0, ?1)",
                        params![new_cluster_id()],
                    )
                    .or_backend(|| "insert cluster_id".into())?;
                }
                tx.pragma_update(None, "user_version", SCHEMA_VERSION)
                    .or_backend(|| "set user_version".into())?;
            }
            SCHEMA_VERSION => {}
            _ => {
                return Err(Error::Backend(format!(
                    "unsupported schema user_version={version} supported={SCHEMA_VERSION}"
                )));
            }
        }
        tx.commit().or_backend(|| "commit schema".into())?;
        Ok(SqliteStore {
            conn: Arc::new(Mutex::new(conn)),
            damaged: Default::default(),
        })
    }

    /// Runs `op` with the connection on the blocking pool.
    ///
    /// If the caller's future is dropped, `op` still runs to its end: each
    /// method is one transaction, so it is applied whole or not at all.
    async fn with_conn<T, F>(&self, op: F) -> Result<T>
    where
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        let damaged = Arc::clone(&self.damaged);
        let task = tokio::task::spawn_blocking(move || {
            // A panic while the lock was held happened either outside a
            // transaction or inside one that rusqlite rolled back on unwind,
            // so the connection is still consistent.
            let mut conn = conn.lock().unwrap_or_else(PoisonError::into_inner);
            REFUSE_WRITES.set(damaged.load(std::sync::atomic::Ordering::Relaxed));
            CORRUPTION_SEEN.set(false);
            let result = op(&mut conn);
            if CORRUPTION_SEEN.take() && !damaged.swap(true, std::sync::atomic::Ordering::Relaxed) {
                tracing::error!(
                    "the metadata file reports corruption; refusing every write to it from now on \
                     (restore it from a backup, or check it with `sqlite3 FILE 'PRAGMA integrity_check'`)"
                );
            }
            result
        });
        match task.await {
            Ok(result) => result,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => Err(Error::Backend(format!("sqlite task cancelled: {e}"))),
        }
    }
}

#[async_trait]
impl ClusterStore for SqliteStore {
    async fn cluster_id(&self) -> Result<String> {
        self.with_conn(|conn| {
            conn.query_row(
                "SELECT cluster_id FROM cluster WHERE singleton = 0",
                [],
                |row| row.get(0),
            )
            .or_backend(|| "read cluster_id".into())
        })
        .await
    }

    async fn cluster_version(&self) -> Result<i64> {
        self.with_conn(|conn| leadership::cluster_version(conn))
            .await
    }

    async fn register_broker(
        &self,
        registration: &BrokerRegistration,
        now_ms: i64,
        lease_ms: i64,
    ) -> Result<BrokerSession> {
        let registration = registration.clone();
        self.with_conn(move |conn| leadership::register(conn, &registration, now_ms, lease_ms))
            .await
    }

    async fn renew_lease(&self, session: BrokerSession, now_ms: i64, lease_ms: i64) -> Result<()> {
        self.with_conn(move |conn| leadership::renew_lease(conn, session, now_ms, lease_ms))
            .await
    }

    async fn close_session(&self, session: BrokerSession) -> Result<()> {
        self.with_conn(move |conn| leadership::close(conn, session))
            .await
    }

    async fn brokers(&self) -> Result<Vec<RegisteredBroker>> {
        self.with_conn(|conn| leadership::brokers(conn)).await
    }

    async fn claim_partitions(
        &self,
        session: BrokerSession,
        partitions: &[TopicPartition],
        now_ms: i64,
    ) -> Result<Vec<Result<PartitionClaim>>> {
        let partitions = partitions.to_vec();
        self.with_conn(move |conn| leadership::claim(conn, session, &partitions, now_ms))
            .await
    }

    async fn release_partitions(
        &self,
        session: BrokerSession,
        partitions: &[(TopicPartition, i32)],
    ) -> Result<()> {
        let partitions = partitions.to_vec();
        self.with_conn(move |conn| leadership::release(conn, session, &partitions))
            .await
    }
}

#[async_trait]
impl TopicStore for SqliteStore {
    async fn create_topic(
        &self,
        name: &str,
        topic_id: TopicId,
        partition_count: i32,
        configs: BTreeMap<String, String>,
    ) -> Result<Topic> {
        crate::commit_rules::check_partition_count(name, partition_count)?;
        let topic = Topic {
            name: name.to_owned(),
            topic_id,
            partition_count,
            configs,
        };
        self.with_conn(move |conn| {
            let tx = begin_write(conn)?;
            let taken: Option<[u8; 16]> = tx
                .query_row(
                    "SELECT topic_id FROM topics WHERE name = ?1",
                    params![topic.name],
                    |row| row.get(0),
                )
                .optional()
                .or_backend(|| format!("read topic name={}", topic.name))?;
            if taken.is_some() {
                return Err(Error::TopicAlreadyExists(topic.name));
            }
            tx.execute(
                "INSERT INTO topics (topic_id, name, partition_count) VALUES (?1, ?2, ?3)",
                params![id_bytes(topic_id), topic.name, partition_count],
            )
            .or_backend(|| format!("insert topic name={} topic_id={topic_id}", topic.name))?;
            insert_configs(&tx, topic_id, &topic.configs)?;
            insert_partitions(&tx, topic_id, 0..partition_count)?;
            leadership::bump_cluster_version(&tx)?;
            commit(tx)?;
            Ok(topic)
        })
        .await
    }

    async fn delete_topic(&self, topic_id: TopicId) -> Result<Topic> {
        self.with_conn(move |conn| {
            let tx = begin_write(conn)?;
            let topic = read_topic(&tx, topic_id)?;
            let id = id_bytes(topic_id);
            for table in [
                "topics",
                "topic_configs",
                "partition_state",
                "partition_index",
                "partition_segments",
                "producer_state",
            ] {
                tx.execute(
                    &format!("DELETE FROM {table} WHERE topic_id = ?1"),
                    params![id],
                )
                .or_backend(|| format!("delete from {table} topic_id={topic_id}"))?;
            }
            leadership::bump_cluster_version(&tx)?;
            commit(tx)?;
            Ok(topic)
        })
        .await
    }

    async fn topics(&self) -> Result<Vec<Topic>> {
        self.with_conn(|conn| {
            // One read transaction, so topics and configs come from the same snapshot.
            let tx = conn.transaction().or_backend(|| "begin read".into())?;
            let mut configs: HashMap<TopicId, BTreeMap<String, String>> = HashMap::new();
            {
                let mut stmt = tx
                    .prepare("SELECT topic_id, name, value FROM topic_configs")
                    .or_backend(|| "prepare read topic_configs".into())?;
                let rows = stmt
                    .query_map([], |row| {
                        Ok((
                            TopicId(Uuid::from_bytes(row.get(0)?)),
                            row.get(1)?,
                            row.get(2)?,
                        ))
                    })
                    .or_backend(|| "read topic_configs".into())?;
                for row in rows {
                    let (topic_id, name, value) =
                        row.or_backend(|| "read topic_configs row".into())?;
                    configs.entry(topic_id).or_default().insert(name, value);
                }
            }
            let mut stmt = tx
                .prepare("SELECT topic_id, name, partition_count FROM topics ORDER BY name")
                .or_backend(|| "prepare read topics".into())?;
            let rows = stmt
                .query_map([], |row| {
                    let topic_id = TopicId(Uuid::from_bytes(row.get(0)?));
                    Ok(Topic {
                        name: row.get(1)?,
                        topic_id,
                        partition_count: row.get(2)?,
                        configs: BTreeMap::new(),
                    })
                })
                .or_backend(|| "read topics".into())?;
            let mut topics = Vec::new();
            for row in rows {
                let mut topic = row.or_backend(|| "read topics row".into())?;
                topic.configs = configs.remove(&topic.topic_id).unwrap_or_default();
                topics.push(topic);
            }
            Ok(topics)
        })
        .await
    }

    async fn set_topic_configs(
        &self,
        topic_id: TopicId,
        configs: BTreeMap<String, String>,
    ) -> Result<()> {
        self.with_conn(move |conn| {
            let tx = begin_write(conn)?;
            read_partition_count(&tx, topic_id)?;
            tx.execute(
                "DELETE FROM topic_configs WHERE topic_id = ?1",
                params![id_bytes(topic_id)],
            )
            .or_backend(|| format!("delete topic_configs topic_id={topic_id}"))?;
            insert_configs(&tx, topic_id, &configs)?;
            leadership::bump_cluster_version(&tx)?;
            commit(tx)
        })
        .await
    }

    async fn create_partitions(&self, topic_id: TopicId, partition_count: i32) -> Result<()> {
        self.with_conn(move |conn| {
            let tx = begin_write(conn)?;
            let current = read_partition_count(&tx, topic_id)?;
            if partition_count <= current {
                return Err(Error::InvalidPartitions(format!(
                    "partition_count={partition_count} must exceed current={current} topic_id={topic_id}"
                )));
            }
            tx.execute(
                "UPDATE topics SET partition_count = ?2 WHERE topic_id = ?1",
                params![id_bytes(topic_id), partition_count],
            )
            .or_backend(|| format!("update partition_count topic_id={topic_id}"))?;
            insert_partitions(&tx, topic_id, current..partition_count)?;
            leadership::bump_cluster_version(&tx)?;
            commit(tx)
        })
        .await
    }

    async fn partition_states(&self, topic_ids: &[TopicId]) -> Result<Vec<PartitionState>> {
        let topic_ids = topic_ids.to_vec();
        self.with_conn(move |conn| {
            // One read transaction: every topic from the same snapshot.
            let tx = conn.transaction().or_backend(|| "begin read".into())?;
            let mut states = Vec::new();
            {
                let mut stmt = tx
                    .prepare_cached(
                        "SELECT partition, leader_epoch, log_start_offset, next_offset, \
                         leader_node, leader_incarnation \
                         FROM partition_state WHERE topic_id = ?1 ORDER BY partition",
                    )
                    .or_backend(|| "prepare read partition_state".into())?;
                for topic_id in topic_ids {
                    let rows = stmt
                        .query_map(params![id_bytes(topic_id)], |row| {
                            Ok(PartitionState {
                                topic_partition: TopicPartition::new(topic_id, row.get(0)?),
                                leader_epoch: row.get(1)?,
                                log_start_offset: row.get(2)?,
                                next_offset: row.get(3)?,
                                leader: leadership::session_of(row.get(4)?, row.get(5)?),
                            })
                        })
                        .or_backend(|| format!("read partition_state topic_id={topic_id}"))?;
                    for row in rows {
                        states.push(row.or_backend(|| {
                            format!("read partition_state row topic_id={topic_id}")
                        })?);
                    }
                }
            }
            tx.commit().or_backend(|| "end read".into())?;
            Ok(states)
        })
        .await
    }
}

#[async_trait]
impl LogStore for SqliteStore {
    async fn commit_flush(&self, flush: &FlushCommit) -> Result<()> {
        let rows = IndexRow::from_commit(flush)?;
        let producers = ProducerRow::from_commit(flush);
        let object_key = flush.object_key.clone();
        let object_size = to_i64(flush.object_size, "object_size", &object_key)?;
        let created_at_ms = now_ms();
        let session = flush.session;
        self.with_conn(move |conn| {
            let tx = begin_write(conn)?;
            leadership::check_session_open(&tx, session)?;
            for row in &rows {
                append_entry(&tx, row, &object_key, session)?;
            }
            for producer in &producers {
                upsert_producer(&tx, producer)?;
            }
            tx.execute(
                "INSERT INTO objects (object_key, size, created_at_ms) VALUES (?1, ?2, ?3)",
                params![object_key, object_size, created_at_ms],
            )
            .or_backend(|| format!("insert objects object_key={object_key}"))?;
            commit(tx)
        })
        .await
    }

    async fn advance_log_start(
        &self,
        session: BrokerSession,
        topic_partition: TopicPartition,
        leader_epoch: i32,
        offset: i64,
    ) -> Result<i64> {
        self.with_conn(move |conn| {
            let tx = begin_write(conn)?;
            let log_start =
                log_start::advance(&tx, session, topic_partition, leader_epoch, offset)?;
            commit(tx)?;
            Ok(log_start)
        })
        .await
    }

    async fn swap_index_entries(&self, swap: &IndexSwap) -> Result<()> {
        check_index_swap(swap)?;
        let swap = swap.clone();
        let created_at_ms = now_ms();
        self.with_conn(move |conn| {
            let tx = begin_write(conn)?;
            swap::swap(&tx, &swap, created_at_ms)?;
            commit(tx)
        })
        .await
    }

    async fn producer_states(&self) -> Result<Vec<ProducerState>> {
        self.with_conn(|conn| read_producer_states(conn, None))
            .await
    }

    async fn referenced_objects(&self, object_keys: &[String]) -> Result<Vec<String>> {
        let keys = object_keys.to_vec();
        self.with_conn(move |conn| {
            let mut statement = conn
                .prepare_cached("SELECT 1 FROM partition_index WHERE object_key = ?1 LIMIT 1")
                .or_backend(|| "prepare referenced_objects".into())?;
            let mut referenced = Vec::new();
            for key in keys {
                let found = statement
                    .exists(params![key])
                    .or_backend(|| format!("referenced_objects object_key={key}"))?;
                if found {
                    referenced.push(key);
                }
            }
            Ok(referenced)
        })
        .await
    }

    async fn forget_objects(&self, object_keys: &[String]) -> Result<()> {
        let keys = object_keys.to_vec();
        self.with_conn(move |conn| {
            let tx = begin_write(conn)?;
            for key in &keys {
                tx.execute("DELETE FROM objects WHERE object_key = ?1", params![key])
                    .or_backend(|| format!("forget object object_key={key}"))?;
            }
            commit(tx)
        })
        .await
    }

    async fn expire_producer_states(&self, before_ms: i64) -> Result<u64> {
        self.with_conn(move |conn| {
            let tx = begin_write(conn)?;
            let deleted = tx
                .execute(
                    "DELETE FROM producer_state WHERE last_write_ms < ?1",
                    params![before_ms],
                )
                .or_backend(|| format!("expire producer_state before_ms={before_ms}"))?;
            commit(tx)?;
            Ok(deleted as u64)
        })
        .await
    }

    async fn allocate_producer_ids(&self, count: i64) -> Result<i64> {
        if count < 1 {
            return Err(Error::Backend(format!(
                "allocate_producer_ids count={count} must be at least 1"
            )));
        }
        self.with_conn(move |conn| {
            let tx = begin_write(conn)?;
            let first: i64 = tx
                .query_row(
                    "SELECT next_producer_id FROM producer_ids WHERE singleton = 0",
                    [],
                    |row| row.get(0),
                )
                .optional()
                .or_backend(|| "read next_producer_id".into())?
                .unwrap_or(0);
            let next = first.checked_add(count).ok_or_else(|| {
                Error::Backend(format!("producer ids exhausted first={first} count={count}"))
            })?;
            tx.execute(
                "INSERT INTO producer_ids (singleton, next_producer_id) VALUES (0, ?1)
                 ON CONFLICT (singleton) DO UPDATE SET next_producer_id = excluded.next_producer_id",
                params![next],
            )
            .or_backend(|| format!("update next_producer_id next={next}"))?;
            commit(tx)?;
            Ok(first)
        })
        .await
    }

    async fn index_entries(
        &self,
        topic_partition: TopicPartition,
        from_offset: i64,
        max_entries: usize,
    ) -> Result<Vec<IndexEntry>> {
        let limit = i64::try_from(max_entries).unwrap_or(i64::MAX);
        self.with_conn(move |conn| {
            let mut stmt = conn
                .prepare_cached(INDEX_ENTRIES_SQL)
                .or_backend(|| "prepare read partition_index".into())?;
            let rows = stmt
                .query_map(
                    params![
                        id_bytes(topic_partition.topic_id),
                        topic_partition.partition,
                        from_offset,
                        limit
                    ],
                    |row| index_entry(topic_partition, row),
                )
                .or_backend(|| format!("read partition_index topic_partition={topic_partition}"))?;
            rows.collect::<rusqlite::Result<Vec<_>>>().or_backend(|| {
                format!("read partition_index row topic_partition={topic_partition}")
            })
        })
        .await
    }

    async fn index_entry_by_timestamp(
        &self,
        topic_partition: TopicPartition,
        timestamp: i64,
    ) -> Result<Option<IndexEntry>> {
        self.with_conn(move |conn| {
            let params = params![
                id_bytes(topic_partition.topic_id),
                topic_partition.partition,
                timestamp
            ];
            conn.prepare_cached(INDEX_ENTRY_BY_TIMESTAMP_SQL)
                .and_then(|mut stmt| {
                    stmt.query_row(params, |row| index_entry(topic_partition, row))
                        .optional()
                })
                .or_backend(|| {
                    format!(
                        "read by timestamp topic_partition={topic_partition} timestamp={timestamp}"
                    )
                })
        })
        .await
    }

    async fn index_segments(&self, topic_partition: TopicPartition) -> Result<Vec<IndexSegment>> {
        self.with_conn(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT segment, base_offset, last_offset, entries, bytes, max_timestamp
                     FROM partition_segments WHERE topic_id = ?1 AND partition = ?2
                     ORDER BY segment",
                )
                .or_backend(|| "prepare read partition_segments".into())?;
            let rows = stmt
                .query_map(
                    params![
                        id_bytes(topic_partition.topic_id),
                        topic_partition.partition
                    ],
                    |r| {
                        Ok(IndexSegment {
                            topic_partition,
                            segment: r.get(0)?,
                            base_offset: r.get(1)?,
                            last_offset: r.get(2)?,
                            entries: r.get(3)?,
                            bytes: r.get(4)?,
                            max_timestamp: r.get(5)?,
                        })
                    },
                )
                .or_backend(|| {
                    format!("read partition_segments topic_partition={topic_partition}")
                })?;
            rows.collect::<rusqlite::Result<Vec<_>>>().or_backend(|| {
                format!("read partition_segments row topic_partition={topic_partition}")
            })
        })
        .await
    }

    async fn index_entry_max_timestamp(
        &self,
        topic_partition: TopicPartition,
    ) -> Result<Option<IndexEntry>> {
        self.with_conn(move |conn| {
            conn.prepare_cached(INDEX_ENTRY_MAX_TIMESTAMP_SQL)
                .and_then(|mut stmt| {
                    stmt.query_row(
                        params![
                            id_bytes(topic_partition.topic_id),
                            topic_partition.partition
                        ],
                        |row| index_entry(topic_partition, row),
                    )
                    .optional()
                })
                .or_backend(|| format!("read max timestamp topic_partition={topic_partition}"))
        })
        .await
    }
}

/// One index entry of a commit, checked and converted to SQLite's integers
/// before any SQL runs.
struct IndexRow {
    topic_partition: TopicPartition,
    leader_epoch: i32,
    base_offset: i64,
    last_offset: i64,
    position: i64,
    length: i64,
    max_timestamp: i64,
}

impl IndexRow {
    /// The commit's entries as SQLite rows; the commit was checked
    /// (`check_flush_commit`), so the conversions cannot fail.
    fn from_commit(commit: &FlushCommit) -> Result<Vec<IndexRow>> {
        check_flush_commit(commit)?;
        let key = &commit.object_key;
        commit
            .entries
            .iter()
            .zip(&commit.leader_epochs)
            .map(|(entry, &leader_epoch)| {
                Ok(IndexRow {
                    topic_partition: entry.topic_partition,
                    leader_epoch,
                    base_offset: entry.base_offset,
                    last_offset: entry.last_offset,
                    position: to_i64(entry.position, "position", key)?,
                    length: to_i64(entry.length, "length", key)?,
                    max_timestamp: entry.max_timestamp,
                })
            })
            .collect()
    }
}

/// One producer state of a commit, checked before any SQL runs.
struct ProducerRow {
    state: ProducerState,
    batches: Vec<u8>,
}

impl ProducerRow {
    /// The commit's producer states as SQLite rows (checked by `IndexRow::from_commit`).
    fn from_commit(commit: &FlushCommit) -> Vec<ProducerRow> {
        commit
            .producers
            .iter()
            .map(|state| ProducerRow {
                batches: ProducerBatch::encode_batches(&state.batches),
                state: state.clone(),
            })
            .collect()
    }
}

/// Replaces the stored state of one (partition, producer id).
fn upsert_producer(tx: &Transaction<'_>, row: &ProducerRow) -> Result<()> {
    let s = &row.state;
    tx.prepare_cached(
        "INSERT OR REPLACE INTO producer_state
             (topic_id, partition, producer_id, producer_epoch, last_write_ms, batches)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )
    .and_then(|mut stmt| {
        stmt.execute(params![
            id_bytes(s.topic_partition.topic_id),
            s.topic_partition.partition,
            s.producer_id,
            s.producer_epoch,
            s.last_write_ms,
            row.batches,
        ])
    })
    .or_backend(|| {
        format!(
            "upsert producer_state topic_partition={} producer_id={}",
            s.topic_partition, s.producer_id
        )
    })?;
    Ok(())
}

/// Adds context to a rusqlite error and makes it a `Backend` error.
pub(crate) trait OrBackend<T> {
    fn or_backend(self, context: impl FnOnce() -> String) -> Result<T>;
}

impl<T> OrBackend<T> for rusqlite::Result<T> {
    fn or_backend(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| backend(context(), e))
    }
}

fn backend(context: String, e: rusqlite::Error) -> Error {
    if matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase)
    ) {
        CORRUPTION_SEEN.set(true);
    }
    if is_busy(&e) {
        return Error::Unavailable(format!("sqlite {context}: {e}"));
    }
    Error::Backend(format!("sqlite {context}: {e}"))
}

/// Whether SQLite gave up waiting for another connection's lock.
fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

/// The stored producer states, of one partition or (`None`) of all.
fn read_producer_states(
    conn: &Connection,
    only: Option<TopicPartition>,
) -> Result<Vec<ProducerState>> {
    // Two statements rather than `?1 IS NULL OR ...`, which would keep
    // SQLite from seeking the primary key for one partition.
    const COLUMNS: &str = "SELECT topic_id, partition, producer_id, producer_epoch, \
                           last_write_ms, batches FROM producer_state";
    let (sql, args) = match only {
        Some(tp) => (
            format!("{COLUMNS} WHERE topic_id = ?1 AND partition = ?2"),
            vec![
                rusqlite::types::Value::Blob(id_bytes(tp.topic_id).to_vec()),
                rusqlite::types::Value::Integer(tp.partition.into()),
            ],
        ),
        None => (COLUMNS.to_string(), Vec::new()),
    };
    let mut stmt = conn
        .prepare_cached(&sql)
        .or_backend(|| "prepare read producer_state".into())?;
    let rows = stmt
        .query_map(rusqlite::params_from_iter(args), |row| {
            let topic_id = TopicId(Uuid::from_bytes(row.get(0)?));
            let tp = TopicPartition::new(topic_id, row.get(1)?);
            let producer_id: i64 = row.get(2)?;
            let batches: Vec<u8> = row.get(5)?;
            Ok((
                ProducerState {
                    topic_partition: tp,
                    producer_id,
                    producer_epoch: row.get(3)?,
                    last_write_ms: row.get(4)?,
                    batches: Vec::new(),
                },
                batches,
            ))
        })
        .or_backend(|| "read producer_state".into())?;
    let mut states = Vec::new();
    for row in rows {
        let (mut state, batches) = row.or_backend(|| "read producer_state row".into())?;
        state.batches = ProducerBatch::decode_batches(&batches).ok_or_else(|| {
            Error::Backend(format!(
                "corrupt producer_state batches topic_partition={} producer_id={} bytes={}",
                state.topic_partition,
                state.producer_id,
                batches.len()
            ))
        })?;
        states.push(state);
    }
    Ok(states)
}

/// The schema transaction of `init`, waiting for the write lock up to
/// `OPEN_BUSY_LIMIT`: another broker sharing the file may hold it for long
/// (one stopped with SIGSTOP inside a transaction holds it until SIGCONT),
/// and a broker that is restarted then should wait, not exit.
fn begin_schema_transaction(conn: &mut Connection) -> Result<Transaction<'_>> {
    let started = std::time::Instant::now();
    loop {
        // Begin and drop at once to learn whether the lock can be had,
        // without holding a borrow of `conn` across iterations.
        match conn.execute_batch("BEGIN IMMEDIATE; ROLLBACK;") {
            Err(e) if is_busy(&e) && started.elapsed() < OPEN_BUSY_LIMIT => {
                tracing::warn!(
                    waited_ms = started.elapsed().as_millis() as u64,
                    "the metadata file's write lock is held by another process; waiting"
                );
            }
            _ => break,
        }
    }
    conn.transaction_with_behavior(TransactionBehavior::Immediate)
        .or_backend(|| "begin schema transaction".into())
}

/// Starts a write transaction holding the write lock from the start, so two
/// connections never both read and then deadlock upgrading to write.
/// Refused once the file has reported corruption.
fn begin_write(conn: &mut Connection) -> Result<Transaction<'_>> {
    if REFUSE_WRITES.get() {
        return Err(Error::Backend(
            "sqlite refuses writes: the metadata file reported corruption".to_string(),
        ));
    }
    conn.transaction_with_behavior(TransactionBehavior::Immediate)
        .or_backend(|| "begin write".into())
}

/// SQLite's `quick_check` (structure of every page and index order; not
/// index contents, which `integrity_check` adds at several times the cost),
/// run at start-up so that a damaged file stops the broker before it
/// commits anything to it.
fn quick_check(conn: &Connection, path: &Path) -> Result<()> {
    let mut statement = conn
        .prepare("PRAGMA quick_check(10)")
        .or_backend(|| format!("quick_check path={}", path.display()))?;
    let problems: Vec<String> = statement
        .query_map([], |row| row.get::<_, String>(0))
        .and_then(|rows| rows.collect())
        .or_backend(|| format!("quick_check path={}", path.display()))?;
    if problems != ["ok"] {
        return Err(Error::Backend(format!(
            "the metadata file path={} fails SQLite's quick_check: {}",
            path.display(),
            problems.join("; ")
        )));
    }
    Ok(())
}

/// Commits; when this returns `Ok` the change is on disk (`synchronous=FULL`).
fn commit(tx: Transaction<'_>) -> Result<()> {
    tx.commit().or_backend(|| "commit".into())
}

fn id_bytes(topic_id: TopicId) -> [u8; 16] {
    *topic_id.0.as_bytes()
}

fn read_topic(tx: &Transaction<'_>, topic_id: TopicId) -> Result<Topic> {
    let (name, partition_count) = tx
        .query_row(
            "SELECT name, partition_count FROM topics WHERE topic_id = ?1",
            params![id_bytes(topic_id)],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional()
        .or_backend(|| format!("read topic topic_id={topic_id}"))?
        .ok_or_else(|| Error::UnknownTopic(format!("topic_id={topic_id}")))?;
    let mut stmt = tx
        .prepare("SELECT name, value FROM topic_configs WHERE topic_id = ?1")
        .or_backend(|| "prepare read topic_configs".into())?;
    let configs = stmt
        .query_map(params![id_bytes(topic_id)], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })
        .and_then(|rows| rows.collect::<rusqlite::Result<BTreeMap<String, String>>>())
        .or_backend(|| format!("read topic_configs topic_id={topic_id}"))?;
    Ok(Topic {
        name,
        topic_id,
        partition_count,
        configs,
    })
}

fn read_partition_count(tx: &Transaction<'_>, topic_id: TopicId) -> Result<i32> {
    tx.query_row(
        "SELECT partition_count FROM topics WHERE topic_id = ?1",
        params![id_bytes(topic_id)],
        |row| row.get(0),
    )
    .optional()
    .or_backend(|| format!("read topic topic_id={topic_id}"))?
    .ok_or_else(|| Error::UnknownTopic(format!("topic_id={topic_id}")))
}

fn insert_configs(
    tx: &Transaction<'_>,
    topic_id: TopicId,
    configs: &BTreeMap<String, String>,
) -> Result<()> {
    let mut stmt = tx
        .prepare("INSERT INTO topic_configs (topic_id, name, value) VALUES (?1, ?2, ?3)")
        .or_backend(|| "prepare insert topic_configs".into())?;
    for (name, value) in configs {
        stmt.execute(params![id_bytes(topic_id), name, value])
            .or_backend(|| format!("insert topic_configs topic_id={topic_id} name={name}"))?;
    }
    Ok(())
}

/// New partitions start at leader epoch 0 with an empty log.
fn insert_partitions(
    tx: &Transaction<'_>,
    topic_id: TopicId,
    partitions: std::ops::Range<i32>,
) -> Result<()> {
    let mut stmt = tx
        .prepare(
            "INSERT INTO partition_state
                 (topic_id, partition, leader_epoch, log_start_offset, next_offset)
             VALUES (?1, ?2, 0, 0, 0)",
        )
        .or_backend(|| "prepare insert partition_state".into())?;
    for partition in partitions {
        stmt.execute(params![id_bytes(topic_id), partition])
            .or_backend(|| {
                format!("insert partition_state topic_id={topic_id} partition={partition}")
            })?;
    }
    Ok(())
}

/// Checks one entry against its partition's committed state and appends it:
/// the partition must exist, be at the entry's leader epoch and have
/// `next_offset == base_offset`. Runs inside the commit's transaction, so a
/// refusal of any entry undoes the entries appended before it.
fn append_entry(
    tx: &Transaction<'_>,
    row: &IndexRow,
    object_key: &str,
    session: BrokerSession,
) -> Result<()> {
    let tp = row.topic_partition;
    let id = id_bytes(tp.topic_id);
    // Statements are cached: this runs once per partition of every flush.
    type Stored = (i32, i64, Option<i32>, Option<i64>);
    let state: Option<Stored> = tx
        .prepare_cached(
            "SELECT leader_epoch, next_offset, leader_node, leader_incarnation
             FROM partition_state WHERE topic_id = ?1 AND partition = ?2",
        )
        .and_then(|mut stmt| {
            stmt.query_row(params![id, tp.partition], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .optional()
        })
        .or_backend(|| format!("read partition_state topic_partition={tp}"))?;
    let Some((current_epoch, next_offset, node, incarnation)) = state else {
        return Err(Error::UnknownTopic(format!("topic_partition={tp}")));
    };
    if row.leader_epoch != current_epoch
        || leadership::session_of(node, incarnation) != Some(session)
    {
        return Err(Error::Fenced {
            topic_partition: tp,
            expected: row.leader_epoch,
            current: current_epoch,
        });
    }
    if row.base_offset != next_offset {
        return Err(Error::OffsetMismatch {
            topic_partition: tp,
            base_offset: row.base_offset,
            next_offset,
        });
    }
    insert_index_row(tx, row, object_key)?;
    tx.prepare_cached(
        "INSERT INTO partition_segments (topic_id, partition, segment, base_offset, last_offset,
             entries, bytes, max_timestamp)
         VALUES (?1, ?2, ?3, ?4, ?5, 1, ?6, ?7)
         ON CONFLICT (topic_id, partition, segment) DO UPDATE SET
             last_offset = excluded.last_offset,
             entries = entries + 1,
             bytes = bytes + excluded.bytes,
             max_timestamp = MAX(max_timestamp, excluded.max_timestamp)",
    )
    .and_then(|mut stmt| {
        stmt.execute(params![
            id,
            tp.partition,
            index_segment(row.base_offset),
            row.base_offset,
            row.last_offset,
            row.length,
            row.max_timestamp,
        ])
    })
    .or_backend(|| format!("update partition_segments topic_partition={tp}"))?;
    // Cannot overflow: `IndexRow::from_commit` refused last_offset == i64::MAX.
    tx.prepare_cached(
        "UPDATE partition_state SET next_offset = ?3 WHERE topic_id = ?1 AND partition = ?2",
    )
    .and_then(|mut stmt| stmt.execute(params![id, tp.partition, row.last_offset + 1]))
    .or_backend(|| format!("update next_offset topic_partition={tp}"))?;
    Ok(())
}

/// Inserts one `partition_index` row (a flush's entry, or a rewrite's).
fn insert_index_row(tx: &Transaction<'_>, row: &IndexRow, object_key: &str) -> Result<()> {
    let tp = row.topic_partition;
    tx.prepare_cached(
        "INSERT INTO partition_index (topic_id, partition, base_offset, last_offset,
             object_key, position, length, max_timestamp)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )
    .and_then(|mut stmt| {
        stmt.execute(params![
            id_bytes(tp.topic_id),
            tp.partition,
            row.base_offset,
            row.last_offset,
            object_key,
            row.position,
            row.length,
            row.max_timestamp,
        ])
    })
    .or_backend(|| format!("insert partition_index topic_partition={tp}"))?;
    Ok(())
}

/// Reads the columns `base_offset, last_offset, object_key, position, length,
/// max_timestamp`, in that order. A negative position or length (a corrupt
/// file) is an error, not a wrap-around.
fn index_entry(topic_partition: TopicPartition, row: &Row<'_>) -> rusqlite::Result<IndexEntry> {
    Ok(IndexEntry {
        topic_partition,
        base_offset: row.get(0)?,
        last_offset: row.get(1)?,
        object_key: row.get(2)?,
        position: row.get(3)?,
        length: row.get(4)?,
        max_timestamp: row.get(5)?,
    })
}

/// Wall-clock time for `objects.created_at_ms`, which only ages objects for
/// garbage collection; no log decision reads it.
fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A new cluster id in Kafka's form: the 16 bytes of a random UUID in URL-safe
/// base64 without padding (22 characters). Like Kafka's `Uuid.randomUuid`, an
/// id starting with `-` is drawn again, since tools would read it as a flag.
pub(crate) fn new_cluster_id() -> String {
    loop {
        let id = base64url_no_pad(Uuid::new_v4().as_bytes());
        if !id.starts_with('-') {
            return id;
        }
    }
}

/// URL-safe base64 (RFC 4648 §5) without padding.
fn base64url_no_pad(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b0 = chunk[0];
        let b1 = chunk.get(1).copied().unwrap_or(0);
        let b2 = chunk.get(2).copied().unwrap_or(0);
        let group = u32::from(b0) << 16 | u32::from(b1) << 8 | u32::from(b2);
        // n input bytes carry 8n bits: n + 1 characters of 6 bits each.
        for i in 0..=chunk.len() {
            let sextet = (group >> (18 - 6 * i)) & 0x3f;
            out.push(char::from(ALPHABET[sextet as usize]));
        }
    }
    out
}

mod groups;
mod leadership;
mod log_start;
mod swap;

#[cfg(test)]
mod tests;
