//! Every CQL statement of the ScyllaDB backend, in one place, with what the
//! driver must know of each: its bind markers by name, whether it is a
//! conditional write (LWT), whether it may be retried or sent twice
//! (idempotent), and whether it only runs inside a conditional batch.
//!
//! `{ks}` stands for the keyspace, filled in once when the statements are
//! prepared. The text of every statement is pinned by `statements.cql`
//! beside this file (`tests::statements_match_the_pinned_file`); a change
//! to a statement changes that file in the same commit, in review.
//!
//! The rules the tests hold every statement to (docs/design/0008):
//!
//! - a table is written either only by conditional writes (and the
//!   statements that run inside its conditional batches), or only by plain
//!   writes — never both, as ScyllaDB requires;
//! - a conditional write is never idempotent: the driver must not retry it,
//!   and an unanswered one is read back (`super::decide`);
//! - no read scans a table: every SELECT names a partition key.

/// One statement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Statement {
    pub name: &'static str,
    pub cql: &'static str,
    /// What each `?` is bound to, in order.
    pub binds: &'static [&'static str],
    pub kind: Kind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A read by partition key; idempotent (speculative execution allowed).
    Read,
    /// A read at SERIAL consistency: settles the Paxos rounds in flight on
    /// the partition before answering (the read-back of an uncertain LWT).
    SerialRead,
    /// A plain write that may be retried (an upsert of the same values, or a
    /// write whose `USING TIMESTAMP` makes the highest value win).
    IdempotentWrite,
    /// A plain write that must not be sent twice (a counter increment).
    NonIdempotentWrite,
    /// A conditional write (`IF …`): never retried by the driver.
    Conditional,
    /// A plain statement that only ever runs inside a conditional batch on
    /// the same partition (the batch is the LWT).
    InConditionalBatch,
    /// Schema: run at start by the broker that wins the schema lock.
    Schema,
}

impl Kind {
    pub fn idempotent(self) -> bool {
        matches!(
            self,
            Kind::Read | Kind::SerialRead | Kind::IdempotentWrite | Kind::Schema
        )
    }
}

macro_rules! statements {
    ($( $const:ident = $kind:ident [$($bind:literal),*] $cql:literal; )*) => {
        $(
            pub const $const: Statement = Statement {
                name: stringify!($const),
                cql: $cql,
                binds: &[$($bind),*],
                kind: Kind::$kind,
            };
        )*
        /// Every statement, in the order of this file.
        pub const ALL: &[Statement] = &[$($const),*];
    };
}

statements! {
    // ---- schema (replication is set by `create_keyspace`) ----
    CREATE_META = Schema []
        "CREATE TABLE IF NOT EXISTS {ks}.meta (key text PRIMARY KEY, schema_version int, cluster_id text, next_producer_id bigint)";
    CREATE_CLUSTER_VERSION = Schema []
        "CREATE TABLE IF NOT EXISTS {ks}.cluster_version (key text PRIMARY KEY, version counter)";
    CREATE_BROKER_IDS = Schema []
        "CREATE TABLE IF NOT EXISTS {ks}.broker_ids (bucket int, node_id int, PRIMARY KEY (bucket, node_id))";
    CREATE_BROKER_SESSIONS = Schema []
        "CREATE TABLE IF NOT EXISTS {ks}.broker_sessions (node_id int, entry_incarnation bigint, entry_seq bigint, session_incarnation bigint STATIC, status int STATIC, lease_expires_ms bigint STATIC, head bigint STATIC, host text STATIC, port int STATIC, rack text STATIC, entry blob, token text, PRIMARY KEY (node_id, entry_incarnation, entry_seq))";
    CREATE_TOPICS = Schema []
        "CREATE TABLE IF NOT EXISTS {ks}.topics (bucket int, name text, topic_id uuid, partition_count int, configs map<text, text>, PRIMARY KEY (bucket, name))";
    CREATE_PARTITION_LEADERS = Schema []
        "CREATE TABLE IF NOT EXISTS {ks}.partition_leaders (topic_id uuid, partition int, leader_epoch int, leader_node int, leader_incarnation bigint, PRIMARY KEY (topic_id, partition))";
    CREATE_PARTITION_OFFSETS = Schema []
        "CREATE TABLE IF NOT EXISTS {ks}.partition_offsets (topic_id uuid, partition int, log_start_offset bigint, next_offset bigint, PRIMARY KEY (topic_id, partition))";
    CREATE_INDEX_ENTRIES = Schema []
        "CREATE TABLE IF NOT EXISTS {ks}.index_entries (topic_id uuid, partition int, segment bigint, base_offset bigint, last_offset bigint, object_key text, position bigint, size bigint, max_timestamp bigint, PRIMARY KEY ((topic_id, partition, segment), base_offset))";
    CREATE_INDEX_SEGMENTS = Schema []
        "CREATE TABLE IF NOT EXISTS {ks}.index_segments (topic_id uuid, partition int, segment bigint, first_base_offset bigint, last_offset bigint, entries bigint, bytes bigint, max_timestamp bigint, PRIMARY KEY ((topic_id, partition), segment))";
    CREATE_OBJECT_REFERENCES = Schema []
        "CREATE TABLE IF NOT EXISTS {ks}.object_references (object_key text, topic_id uuid, partition int, base_offset bigint, PRIMARY KEY (object_key, topic_id, partition, base_offset))";
    CREATE_PRODUCER_STATES = Schema []
        "CREATE TABLE IF NOT EXISTS {ks}.producer_states (topic_id uuid, partition int, producer_id bigint, producer_epoch smallint, last_write_ms bigint, batches blob, PRIMARY KEY ((topic_id, partition), producer_id))";
    CREATE_GROUPS = Schema []
        "CREATE TABLE IF NOT EXISTS {ks}.groups (group_id text, topic text, partition int, coordinator_epoch int STATIC, coordinator_node int STATIC, coordinator_incarnation bigint STATIC, protocol_type text STATIC, committed_offset bigint, leader_epoch int, metadata text, commit_timestamp bigint, PRIMARY KEY (group_id, topic, partition))";
    CREATE_GROUP_IDS = Schema []
        "CREATE TABLE IF NOT EXISTS {ks}.group_ids (bucket int, group_id text, PRIMARY KEY (bucket, group_id))";

    // ---- meta: schema version, cluster id, producer-id blocks ----
    META_READ = SerialRead ["key"]
        "SELECT schema_version, cluster_id, next_producer_id FROM {ks}.meta WHERE key = ?";
    META_INIT = Conditional ["key", "schema_version", "cluster_id", "next_producer_id"]
        "INSERT INTO {ks}.meta (key, schema_version, cluster_id, next_producer_id) VALUES (?, ?, ?, ?) IF NOT EXISTS";
    META_MIGRATE = Conditional ["schema_version", "key", "expected_schema_version"]
        "UPDATE {ks}.meta SET schema_version = ? WHERE key = ? IF schema_version = ?";
    PRODUCER_IDS_RESERVE = Conditional ["next_producer_id", "key", "expected_next_producer_id"]
        "UPDATE {ks}.meta SET next_producer_id = ? WHERE key = ? IF next_producer_id = ?";

    // ---- the cluster version brokers watch (a counter: it only has to move) ----
    CLUSTER_VERSION_READ = Read ["key"]
        "SELECT version FROM {ks}.cluster_version WHERE key = ?";
    CLUSTER_VERSION_BUMP = NonIdempotentWrite ["key"]
        "UPDATE {ks}.cluster_version SET version = version + 1 WHERE key = ?";

    // ---- the broker registry: node ids, sessions with leases ----
    BROKER_IDS_READ = Read ["bucket"]
        "SELECT node_id FROM {ks}.broker_ids WHERE bucket = ?";
    BROKER_IDS_ADD = Conditional ["bucket", "node_id"]
        "INSERT INTO {ks}.broker_ids (bucket, node_id) VALUES (?, ?) IF NOT EXISTS";
    SESSION_READ = Read ["node_id"]
        "SELECT session_incarnation, status, lease_expires_ms, head, host, port, rack FROM {ks}.broker_sessions WHERE node_id = ? LIMIT 1";
    SESSION_READ_SERIAL = SerialRead ["node_id"]
        "SELECT session_incarnation, status, lease_expires_ms, head, host, port, rack FROM {ks}.broker_sessions WHERE node_id = ? LIMIT 1";
    SESSION_INSERT = Conditional ["node_id", "session_incarnation", "status", "lease_expires_ms", "head", "host", "port", "rack"]
        "INSERT INTO {ks}.broker_sessions (node_id, session_incarnation, status, lease_expires_ms, head, host, port, rack) VALUES (?, ?, ?, ?, ?, ?, ?, ?) IF NOT EXISTS";
    SESSION_REPLACE = Conditional ["session_incarnation", "status", "lease_expires_ms", "head", "host", "port", "rack", "node_id", "expected_incarnation", "expected_status", "expected_lease_expires_ms"]
        "UPDATE {ks}.broker_sessions SET session_incarnation = ?, status = ?, lease_expires_ms = ?, head = ?, host = ?, port = ?, rack = ? WHERE node_id = ? IF session_incarnation = ? AND status = ? AND lease_expires_ms = ?";
    SESSION_RENEW = Conditional ["lease_expires_ms", "node_id", "session_incarnation", "open_status"]
        "UPDATE {ks}.broker_sessions SET lease_expires_ms = ? WHERE node_id = ? IF session_incarnation = ? AND status = ?";
    SESSION_CLOSE = Conditional ["closed_status", "node_id", "session_incarnation", "open_status"]
        "UPDATE {ks}.broker_sessions SET status = ?, lease_expires_ms = 0 WHERE node_id = ? IF session_incarnation = ? AND status = ?";
    SESSION_FENCE = Conditional ["fenced_status", "node_id", "session_incarnation", "open_status", "lapsed_lease_expires_ms"]
        "UPDATE {ks}.broker_sessions SET status = ? WHERE node_id = ? IF session_incarnation = ? AND status = ? AND lease_expires_ms = ?";

    // ---- the session journal: one conditional batch per flush ----
    JOURNAL_ADVANCE = Conditional ["head", "node_id", "session_incarnation", "open_status", "expected_head"]
        "UPDATE {ks}.broker_sessions SET head = ? WHERE node_id = ? IF session_incarnation = ? AND status = ? AND head = ?";
    JOURNAL_APPEND = InConditionalBatch ["node_id", "entry_incarnation", "entry_seq", "entry", "token"]
        "INSERT INTO {ks}.broker_sessions (node_id, entry_incarnation, entry_seq, entry, token) VALUES (?, ?, ?, ?, ?)";
    JOURNAL_TRIM = InConditionalBatch ["node_id", "entry_incarnation", "entry_seq"]
        "DELETE FROM {ks}.broker_sessions WHERE node_id = ? AND entry_incarnation = ? AND entry_seq = ?";
    SESSION_HOLD = Conditional ["status", "node_id", "session_incarnation", "expected_status"]
        "UPDATE {ks}.broker_sessions SET status = ? WHERE node_id = ? IF session_incarnation = ? AND status = ?";
    JOURNAL_READ = Read ["node_id", "entry_incarnation", "after_seq"]
        "SELECT entry_seq, entry, token FROM {ks}.broker_sessions WHERE node_id = ? AND entry_incarnation = ? AND entry_seq > ?";
    JOURNAL_TAIL_READ = Read ["node_id", "entry_incarnation", "limit"]
        "SELECT entry_seq, entry, token FROM {ks}.broker_sessions WHERE node_id = ? AND entry_incarnation = ? ORDER BY entry_incarnation DESC, entry_seq DESC LIMIT ?";
    JOURNAL_ENTRY_READ_SERIAL = SerialRead ["node_id", "entry_incarnation", "entry_seq"]
        "SELECT token FROM {ks}.broker_sessions WHERE node_id = ? AND entry_incarnation = ? AND entry_seq = ?";

    // ---- topics: one small partition (bucket 0), names unique by LWT ----
    TOPICS_READ = Read ["bucket"]
        "SELECT name, topic_id, partition_count, configs FROM {ks}.topics WHERE bucket = ?";
    TOPIC_READ_SERIAL = SerialRead ["bucket", "name"]
        "SELECT name, topic_id, partition_count, configs FROM {ks}.topics WHERE bucket = ? AND name = ?";
    TOPIC_CREATE = Conditional ["bucket", "name", "topic_id", "partition_count", "configs"]
        "INSERT INTO {ks}.topics (bucket, name, topic_id, partition_count, configs) VALUES (?, ?, ?, ?, ?) IF NOT EXISTS";
    TOPIC_SET_CONFIGS = Conditional ["configs", "bucket", "name", "topic_id"]
        "UPDATE {ks}.topics SET configs = ? WHERE bucket = ? AND name = ? IF topic_id = ?";
    TOPIC_GROW = Conditional ["partition_count", "bucket", "name", "topic_id", "expected_partition_count"]
        "UPDATE {ks}.topics SET partition_count = ? WHERE bucket = ? AND name = ? IF topic_id = ? AND partition_count = ?";
    TOPIC_DELETE = Conditional ["bucket", "name", "topic_id"]
        "DELETE FROM {ks}.topics WHERE bucket = ? AND name = ? IF topic_id = ?";

    // ---- partition leadership: one LWT per claim or release ----
    LEADERS_READ = Read ["topic_id"]
        "SELECT partition, leader_epoch, leader_node, leader_incarnation FROM {ks}.partition_leaders WHERE topic_id = ?";
    LEADER_READ_SERIAL = SerialRead ["topic_id", "partition"]
        "SELECT partition, leader_epoch, leader_node, leader_incarnation FROM {ks}.partition_leaders WHERE topic_id = ? AND partition = ?";
    LEADER_CREATE = Conditional ["topic_id", "partition", "leader_epoch"]
        "INSERT INTO {ks}.partition_leaders (topic_id, partition, leader_epoch) VALUES (?, ?, ?) IF NOT EXISTS";
    LEADER_CLAIM = Conditional ["leader_epoch", "leader_node", "leader_incarnation", "topic_id", "partition", "expected_leader_epoch"]
        "UPDATE {ks}.partition_leaders SET leader_epoch = ?, leader_node = ?, leader_incarnation = ? WHERE topic_id = ? AND partition = ? IF leader_epoch = ?";
    LEADER_RELEASE = Conditional ["topic_id", "partition", "leader_epoch", "leader_node", "leader_incarnation"]
        "UPDATE {ks}.partition_leaders SET leader_node = null, leader_incarnation = null WHERE topic_id = ? AND partition = ? IF leader_epoch = ? AND leader_node = ? AND leader_incarnation = ?";
    LEADER_DELETE = Conditional ["topic_id", "partition"]
        "DELETE FROM {ks}.partition_leaders WHERE topic_id = ? AND partition = ? IF EXISTS";

    // ---- what the journal applies, with plain writes whose timestamp is
    //      the value's own position, so the highest one wins ----
    OFFSETS_READ = Read ["topic_id"]
        "SELECT partition, log_start_offset, next_offset FROM {ks}.partition_offsets WHERE topic_id = ?";
    NEXT_OFFSET_WRITE = IdempotentWrite ["timestamp", "next_offset", "topic_id", "partition"]
        "UPDATE {ks}.partition_offsets USING TIMESTAMP ? SET next_offset = ? WHERE topic_id = ? AND partition = ?";
    LOG_START_WRITE = IdempotentWrite ["timestamp", "log_start_offset", "topic_id", "partition"]
        "UPDATE {ks}.partition_offsets USING TIMESTAMP ? SET log_start_offset = ? WHERE topic_id = ? AND partition = ?";
    OFFSETS_DROP = IdempotentWrite ["topic_id"]
        "DELETE FROM {ks}.partition_offsets WHERE topic_id = ?";
    INDEX_ENTRY_WRITE = IdempotentWrite ["topic_id", "partition", "segment", "base_offset", "last_offset", "object_key", "position", "size", "max_timestamp", "timestamp"]
        "INSERT INTO {ks}.index_entries (topic_id, partition, segment, base_offset, last_offset, object_key, position, size, max_timestamp) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) USING TIMESTAMP ?";
    INDEX_ENTRY_DELETE = IdempotentWrite ["timestamp", "topic_id", "partition", "segment", "base_offset"]
        "DELETE FROM {ks}.index_entries USING TIMESTAMP ? WHERE topic_id = ? AND partition = ? AND segment = ? AND base_offset = ?";
    INDEX_ENTRIES_CUT_SEGMENT = IdempotentWrite ["timestamp", "topic_id", "partition", "segment"]
        "DELETE FROM {ks}.index_entries USING TIMESTAMP ? WHERE topic_id = ? AND partition = ? AND segment = ?";
    INDEX_ENTRIES_READ = Read ["topic_id", "partition", "segment", "from_base_offset", "limit"]
        "SELECT base_offset, last_offset, object_key, position, size, max_timestamp FROM {ks}.index_entries WHERE topic_id = ? AND partition = ? AND segment = ? AND base_offset >= ? LIMIT ?";
    INDEX_ENTRIES_DROP_SEGMENT = IdempotentWrite ["topic_id", "partition", "segment"]
        "DELETE FROM {ks}.index_entries WHERE topic_id = ? AND partition = ? AND segment = ?";
    INDEX_ENTRY_AT_OR_BEFORE = Read ["topic_id", "partition", "segment", "offset"]
        "SELECT base_offset, last_offset, object_key, position, size, max_timestamp FROM {ks}.index_entries WHERE topic_id = ? AND partition = ? AND segment = ? AND base_offset <= ? ORDER BY base_offset DESC LIMIT 1";
    INDEX_SEGMENT_WRITE = IdempotentWrite ["timestamp", "first_base_offset", "last_offset", "entries", "bytes", "max_timestamp", "topic_id", "partition", "segment"]
        "UPDATE {ks}.index_segments USING TIMESTAMP ? SET first_base_offset = ?, last_offset = ?, entries = ?, bytes = ?, max_timestamp = ? WHERE topic_id = ? AND partition = ? AND segment = ?";
    INDEX_SEGMENT_DELETE = IdempotentWrite ["timestamp", "topic_id", "partition", "segment"]
        "DELETE FROM {ks}.index_segments USING TIMESTAMP ? WHERE topic_id = ? AND partition = ? AND segment = ?";
    INDEX_SEGMENTS_READ = Read ["topic_id", "partition"]
        "SELECT segment, first_base_offset, last_offset, entries, bytes, max_timestamp FROM {ks}.index_segments WHERE topic_id = ? AND partition = ?";
    INDEX_SEGMENTS_DROP = IdempotentWrite ["topic_id", "partition"]
        "DELETE FROM {ks}.index_segments WHERE topic_id = ? AND partition = ?";
    OBJECT_REFERENCE_WRITE = IdempotentWrite ["object_key", "topic_id", "partition", "base_offset", "timestamp"]
        "INSERT INTO {ks}.object_references (object_key, topic_id, partition, base_offset) VALUES (?, ?, ?, ?) USING TIMESTAMP ?";
    OBJECT_REFERENCE_DELETE = IdempotentWrite ["timestamp", "object_key", "topic_id", "partition", "base_offset"]
        "DELETE FROM {ks}.object_references USING TIMESTAMP ? WHERE object_key = ? AND topic_id = ? AND partition = ? AND base_offset = ?";
    OBJECT_REFERENCES_READ = Read ["object_key"]
        "SELECT topic_id, partition, base_offset FROM {ks}.object_references WHERE object_key = ?";
    OBJECT_REFERENCES_FORGET = IdempotentWrite ["object_key"]
        "DELETE FROM {ks}.object_references WHERE object_key = ?";
    PRODUCER_STATE_WRITE = IdempotentWrite ["timestamp", "producer_epoch", "last_write_ms", "batches", "topic_id", "partition", "producer_id"]
        "UPDATE {ks}.producer_states USING TIMESTAMP ? SET producer_epoch = ?, last_write_ms = ?, batches = ? WHERE topic_id = ? AND partition = ? AND producer_id = ?";
    PRODUCER_STATES_READ = Read ["topic_id", "partition"]
        "SELECT producer_id, producer_epoch, last_write_ms, batches, WRITETIME(last_write_ms) FROM {ks}.producer_states WHERE topic_id = ? AND partition = ?";
    PRODUCER_STATE_DELETE = IdempotentWrite ["timestamp", "topic_id", "partition", "producer_id"]
        "DELETE FROM {ks}.producer_states USING TIMESTAMP ? WHERE topic_id = ? AND partition = ? AND producer_id = ?";
    PRODUCER_STATES_DROP = IdempotentWrite ["topic_id", "partition"]
        "DELETE FROM {ks}.producer_states WHERE topic_id = ? AND partition = ?";

    // ---- consumer groups: coordinator and offsets in one partition, so an
    //      offset commit is one LWT conditioned on the coordinator epoch ----
    GROUP_READ = Read ["group_id"]
        "SELECT coordinator_epoch, coordinator_node, coordinator_incarnation, protocol_type, topic, partition, committed_offset, leader_epoch, metadata, commit_timestamp FROM {ks}.groups WHERE group_id = ?";
    GROUP_COORDINATOR_READ_SERIAL = SerialRead ["group_id"]
        "SELECT coordinator_epoch, coordinator_node, coordinator_incarnation FROM {ks}.groups WHERE group_id = ? LIMIT 1";
    GROUP_CLAIM_NEW = Conditional ["group_id", "coordinator_epoch", "coordinator_node", "coordinator_incarnation"]
        "INSERT INTO {ks}.groups (group_id, coordinator_epoch, coordinator_node, coordinator_incarnation) VALUES (?, ?, ?, ?) IF NOT EXISTS";
    GROUP_CLAIM = Conditional ["coordinator_epoch", "coordinator_node", "coordinator_incarnation", "group_id", "expected_coordinator_epoch"]
        "UPDATE {ks}.groups SET coordinator_epoch = ?, coordinator_node = ?, coordinator_incarnation = ? WHERE group_id = ? IF coordinator_epoch = ?";
    GROUP_RELEASE = Conditional ["group_id", "coordinator_epoch", "coordinator_node", "coordinator_incarnation"]
        "UPDATE {ks}.groups SET coordinator_node = null, coordinator_incarnation = null WHERE group_id = ? IF coordinator_epoch = ? AND coordinator_node = ? AND coordinator_incarnation = ?";
    GROUP_SAVE = Conditional ["protocol_type", "group_id", "coordinator_epoch"]
        "UPDATE {ks}.groups SET protocol_type = ? WHERE group_id = ? IF coordinator_epoch = ? AND coordinator_node != null";
    GROUP_FORGET = Conditional ["group_id", "coordinator_epoch"]
        "UPDATE {ks}.groups SET protocol_type = null WHERE group_id = ? IF coordinator_epoch = ? AND coordinator_node != null";
    GROUP_HOLD = Conditional ["coordinator_epoch", "group_id", "expected_coordinator_epoch"]
        "UPDATE {ks}.groups SET coordinator_epoch = ? WHERE group_id = ? IF coordinator_epoch = ? AND coordinator_node != null";
    GROUP_OFFSET_WRITE = InConditionalBatch ["committed_offset", "leader_epoch", "metadata", "commit_timestamp", "group_id", "topic", "partition"]
        "UPDATE {ks}.groups SET committed_offset = ?, leader_epoch = ?, metadata = ?, commit_timestamp = ? WHERE group_id = ? AND topic = ? AND partition = ?";
    GROUP_OFFSET_DELETE = InConditionalBatch ["group_id", "topic", "partition"]
        "DELETE FROM {ks}.groups WHERE group_id = ? AND topic = ? AND partition = ?";
    GROUP_IDS_READ = Read ["bucket"]
        "SELECT group_id FROM {ks}.group_ids WHERE bucket = ?";
    GROUP_IDS_ADD = IdempotentWrite ["bucket", "group_id"]
        "INSERT INTO {ks}.group_ids (bucket, group_id) VALUES (?, ?)";
}

/// The keyspace, with its replication (e.g. `{'class':
/// 'NetworkTopologyStrategy', 'dc1': 3}`) and tablets off: lightweight
/// transactions on tablets need a ScyllaDB release that supports them.
pub fn create_keyspace(keyspace: &str, replication: &str) -> String {
    format!(
        "CREATE KEYSPACE IF NOT EXISTS {keyspace} WITH replication = {replication} AND tablets = {{'enabled': false}}"
    )
}

/// A statement's text for `keyspace`.
pub fn text(statement: &Statement, keyspace: &str) -> String {
    statement.cql.replace("{ks}", keyspace)
}

#[cfg(test)]
mod tests;
