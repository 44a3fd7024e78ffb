//! The metadata model: typed ids and the rows every backend stores.
//!
//! These are plain data with Kafka's names. They carry no behaviour beyond
//! small conveniences; the rules live in the broker and the log.

use std::collections::BTreeMap;
use std::fmt;

pub use uuid::Uuid;

/// A topic's id, as Kafka's `Uuid` (KIP-516). Never the nil UUID for a real topic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicId(pub Uuid);

impl TopicId {
    pub fn new_random() -> Self {
        TopicId(Uuid::new_v4())
    }
}

impl fmt::Display for TopicId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A partition of a topic, named by the topic's id (names can be reused after a delete).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    pub topic_id: TopicId,
    pub partition: i32,
}

impl TopicPartition {
    pub fn new(topic_id: TopicId, partition: i32) -> Self {
        TopicPartition {
            topic_id,
            partition,
        }
    }
}

impl fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.topic_id, self.partition)
    }
}

/// A topic as stored: name, id, partition count and the topic configs that were
/// set explicitly (Kafka's names, string values; defaults are not stored).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Topic {
    pub name: String,
    pub topic_id: TopicId,
    pub partition_count: i32,
    pub configs: BTreeMap<String, String>,
}

/// The committed state of one partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartitionState {
    pub topic_partition: TopicPartition,
    /// Kafka's leader epoch; also the ownership epoch every commit is checked
    /// against. Every claim raises it by one.
    pub leader_epoch: i32,
    /// The broker session that leads the partition, if any claimed it and
    /// has not released it. A leader whose session has ended (closed,
    /// fenced, or its lease lapsed) leads nothing: the partition is free to
    /// claim.
    pub leader: Option<BrokerSession>,
    /// First offset still readable.
    pub log_start_offset: i64,
    /// The next offset to be assigned: one past the last committed record.
    /// With no transactions this is also the high watermark.
    pub next_offset: i64,
}

/// One run of batches of one partition inside one object: the unit of the offset index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexEntry {
    pub topic_partition: TopicPartition,
    /// Offset of the first record of the first batch.
    pub base_offset: i64,
    /// Offset of the last record of the last batch.
    pub last_offset: i64,
    /// Object key the bytes live in.
    pub object_key: String,
    /// Byte position of the run inside the object.
    pub position: u64,
    /// Byte length of the run.
    pub length: u64,
    /// Largest batch max-timestamp in the run (milliseconds).
    pub max_timestamp: i64,
}

/// Offsets per index segment. A partition's index is cut into segments by
/// offset: an entry belongs to the segment of its base offset
/// (`index_segment`). A segment holds at most this many entries (one per
/// offset at worst), so that no ScyllaDB partition of the index (keyed by
/// topic, partition and segment) grows without bound; retention drops
/// whole segments, as Kafka deletes whole log segments.
pub const INDEX_SEGMENT_OFFSETS: i64 = 1 << 16;

/// The index segment of `offset` (offsets are never negative).
pub fn index_segment(offset: i64) -> i64 {
    offset.div_euclid(INDEX_SEGMENT_OFFSETS)
}

/// What the index holds of one segment of a partition: enough to find the
/// segment of a timestamp, to size a partition, and to cut it by time or
/// size, without reading its entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndexSegment {
    pub topic_partition: TopicPartition,
    /// `index_segment` of every entry's base offset in it.
    pub segment: i64,
    /// The first entry's base offset.
    pub base_offset: i64,
    /// The last entry's last offset (may lie in a later segment's span).
    pub last_offset: i64,
    /// How many entries, and their bytes.
    pub entries: i64,
    pub bytes: i64,
    /// The largest max timestamp of its entries.
    pub max_timestamp: i64,
}

/// Everything one flush commits, applied in one transaction (or refused whole).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlushCommit {
    /// The broker session that writes: the commit is refused (`SessionFenced`)
    /// once the session is no longer its node id's current one, and (`Fenced`)
    /// for a partition this session does not lead at the epoch given.
    pub session: BrokerSession,
    pub object_key: String,
    pub object_size: u64,
    /// One entry per partition in the object; each must start exactly at the
    /// partition's committed `next_offset`, under the partition's current leader epoch.
    pub entries: Vec<IndexEntry>,
    /// The leader epoch the writer believes it holds, per entry (same order as `entries`).
    pub leader_epochs: Vec<i32>,
    /// The new state of every idempotent producer that wrote to the flush's
    /// partitions, each replacing the stored one for its (partition, producer id).
    pub producers: Vec<ProducerState>,
}

/// An object compaction's commit: a partition's index entries `old` (a
/// contiguous run, in offset order) replaced by `new`, which hold the same
/// batches, byte for byte, in one newly written object. Refused whole
/// (`SwapRefused`) when the stored entries are no longer `old` (another
/// swap, a retention cut, a leadership change won the race).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexSwap {
    /// The session that leads the partition (`SessionFenced` otherwise).
    pub session: BrokerSession,
    pub topic_partition: TopicPartition,
    /// The leader epoch the compactor read `old` under (`Fenced` otherwise).
    pub leader_epoch: i32,
    /// The entries read, as stored: contiguous, all in one index segment.
    pub old: Vec<IndexEntry>,
    /// Their replacement: contiguous, covering exactly `old`'s offsets and
    /// bytes with the same largest timestamp, all in `object_key`.
    pub new: Vec<IndexEntry>,
    pub object_key: String,
    pub object_size: u64,
}

/// What a broker announces about itself in the registry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokerRegistration {
    /// Kafka's `node.id`: unique among live brokers.
    pub node_id: i32,
    /// Host and port clients are told to connect to.
    pub host: String,
    pub port: i32,
    /// Kafka's `broker.rack`, if set.
    pub rack: Option<String>,
}

/// One start of one broker: its node id and the incarnation the registry
/// gave it (one more than the node id's previous one). Leadership belongs to
/// a session, not to a node id: a restarted broker leads nothing its
/// previous incarnation led until it claims it again.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BrokerSession {
    pub node_id: i32,
    pub incarnation: i64,
}

impl fmt::Display for BrokerSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.node_id, self.incarnation)
    }
}

/// How a broker session stands in the registry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionStatus {
    /// Registered and not ended; live while its lease has not lapsed.
    Open,
    /// Ended by the broker itself (a graceful shutdown): what it led is free.
    Closed,
    /// Ended by another broker after its lease lapsed: every later commit
    /// and lease renewal of the session is refused.
    Fenced,
}

/// A row of the broker registry: the latest session of one node id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegisteredBroker {
    pub registration: BrokerRegistration,
    pub session: BrokerSession,
    pub status: SessionStatus,
    /// The session's lease: it leads its partitions until this time (ms,
    /// the brokers' clock) unless it renews it.
    pub lease_expires_ms: i64,
}

impl RegisteredBroker {
    /// Open with a lease that has not lapsed at `now_ms`.
    pub fn is_live(&self, now_ms: i64) -> bool {
        self.status == SessionStatus::Open && self.lease_expires_ms > now_ms
    }
}

/// What a successful claim hands the new leader: the partition's committed
/// state under the new epoch, and its idempotent producers' states, so a
/// producer retrying against the new leader gets no duplicate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionClaim {
    pub state: PartitionState,
    pub producers: Vec<ProducerState>,
}

/// Kafka keeps this many of a producer's most recent batches per partition to
/// recognise retries (`ProducerStateEntry.NUM_BATCHES_TO_RETAIN`); it is also
/// the most in-flight requests an idempotent producer may have.
pub const PRODUCER_BATCHES_RETAINED: usize = 5;

/// One batch an idempotent producer wrote to a partition: enough to answer a
/// retry of it as Kafka does, with the offsets it was first given and its
/// timestamp.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProducerBatch {
    pub first_sequence: i32,
    pub last_sequence: i32,
    pub base_offset: i64,
    pub last_offset: i64,
    /// The batch's max timestamp as stored (broker time for LogAppendTime
    /// topics), or -1 for batches recorded before it was kept. Kafka answers
    /// a retry of the batch with it as `log_append_time_ms`
    /// (`BatchMetadata.timestamp`).
    pub max_timestamp: i64,
}

/// What a partition remembers of one idempotent producer (Kafka's
/// `ProducerStateEntry`), committed with the index entries of the flush that
/// wrote its batches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProducerState {
    pub topic_partition: TopicPartition,
    pub producer_id: i64,
    pub producer_epoch: i16,
    /// Broker time of its last write (ms); the state expires
    /// `producer.id.expiration.ms` after it.
    pub last_write_ms: i64,
    /// The last batches written under `producer_epoch`, oldest first, at most
    /// `PRODUCER_BATCHES_RETAINED`.
    pub batches: Vec<ProducerBatch>,
}

impl ProducerBatch {
    /// Bytes of one batch in the first form, with no timestamp.
    const ENCODED_LEN_V0: usize = 24;
    /// Bytes of one batch in the current form.
    const ENCODED_LEN: usize = 32;
    /// First byte of the current form. A first-form value is a multiple of 24
    /// bytes long, so even; the current one is 1 + 32 × n bytes, so odd.
    const FORM_1: u8 = 1;

    /// The batches in a compact byte form for one column: a form byte, then
    /// per batch first and last sequence (i32), base and last offset and max
    /// timestamp (i64), big-endian.
    pub fn encode_batches(batches: &[ProducerBatch]) -> Vec<u8> {
        let mut out = Vec::with_capacity(1 + batches.len() * Self::ENCODED_LEN);
        out.push(Self::FORM_1);
        for b in batches {
            out.extend_from_slice(&b.first_sequence.to_be_bytes());
            out.extend_from_slice(&b.last_sequence.to_be_bytes());
            out.extend_from_slice(&b.base_offset.to_be_bytes());
            out.extend_from_slice(&b.last_offset.to_be_bytes());
            out.extend_from_slice(&b.max_timestamp.to_be_bytes());
        }
        out
    }

    /// The inverse of `encode_batches`, also reading the first form (no
    /// timestamps: -1); `None` for bytes neither wrote.
    pub fn decode_batches(bytes: &[u8]) -> Option<Vec<ProducerBatch>> {
        let (body, len) = match bytes.split_first() {
            Some((&Self::FORM_1, body)) if body.len().is_multiple_of(Self::ENCODED_LEN) => {
                (body, Self::ENCODED_LEN)
            }
            _ if bytes.len().is_multiple_of(Self::ENCODED_LEN_V0) => (bytes, Self::ENCODED_LEN_V0),
            _ => return None,
        };
        let i32_at = |c: &[u8], at: usize| i32::from_be_bytes(c[at..at + 4].try_into().unwrap());
        let i64_at = |c: &[u8], at: usize| i64::from_be_bytes(c[at..at + 8].try_into().unwrap());
        Some(
            body.chunks_exact(len)
                .map(|c| ProducerBatch {
                    first_sequence: i32_at(c, 0),
                    last_sequence: i32_at(c, 4),
                    base_offset: i64_at(c, 8),
                    last_offset: i64_at(c, 16),
                    max_timestamp: if len == Self::ENCODED_LEN {
                        i64_at(c, 24)
                    } else {
                        -1
                    },
                })
                .collect(),
        )
    }
}

/// A consumer group's committed offset for one partition (OffsetCommit),
/// keyed by topic name as Kafka keys them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommittedOffset {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// The leader epoch the consumer saw at `offset`, or -1.
    pub leader_epoch: i32,
    /// The client's metadata string, returned unchanged by OffsetFetch.
    pub metadata: String,
    /// Broker time of the commit (ms); offsets retention counts from it.
    pub commit_timestamp_ms: i64,
}

/// A consumer group as stored: its id and the protocol type of its members
/// ("consumer" for Kafka consumers, "" for offsets-only groups). Membership
/// is not stored: after a restart members rejoin, as after a coordinator move.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredGroup {
    pub group_id: String,
    pub protocol_type: String,
}

/// What a coordinator gets when it claims a group: the coordinator epoch it
/// now writes under, and everything stored of the group as of every write
/// made under earlier epochs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupClaim {
    pub group_id: String,
    pub coordinator_epoch: i32,
    /// The stored group, `None` when it is not stored (a new group id).
    pub stored: Option<StoredGroup>,
    /// Its committed offsets, ordered by topic and partition.
    pub offsets: Vec<CommittedOffset>,
}

#[cfg(test)]
mod tests {
    use super::ProducerBatch;

    fn batch(i: i32) -> ProducerBatch {
        ProducerBatch {
            first_sequence: i,
            last_sequence: i + 3,
            base_offset: 100 + i64::from(i),
            last_offset: 103 + i64::from(i),
            max_timestamp: 1_700_000_000_000 + i64::from(i),
        }
    }

    #[test]
    fn producer_batches_round_trip_and_the_first_form_still_reads() {
        for n in 0..=5 {
            let batches: Vec<ProducerBatch> = (0..n).map(batch).collect();
            let bytes = ProducerBatch::encode_batches(&batches);
            assert_eq!(ProducerBatch::decode_batches(&bytes), Some(batches.clone()));
            // As the first form wrote them: no form byte, no timestamps.
            let mut v0 = Vec::new();
            for b in &batches {
                v0.extend_from_slice(&b.first_sequence.to_be_bytes());
                v0.extend_from_slice(&b.last_sequence.to_be_bytes());
                v0.extend_from_slice(&b.base_offset.to_be_bytes());
                v0.extend_from_slice(&b.last_offset.to_be_bytes());
            }
            let without_time: Vec<ProducerBatch> = batches
                .iter()
                .map(|b| ProducerBatch {
                    max_timestamp: -1,
                    ..*b
                })
                .collect();
            assert_eq!(ProducerBatch::decode_batches(&v0), Some(without_time));
        }
        assert_eq!(ProducerBatch::decode_batches(&[1, 2, 3]), None);
        assert_eq!(ProducerBatch::decode_batches(&[7; 33]), None);
    }
}
