//! Lightstream's log: the flush buffer that gathers produced batches of many
//! partitions, the object format those flushes are written in, the object
//! stores they are written to, the tail cache, and reads.
//!
//! This crate knows Kafka's record batches (through `protocol::batch`) but not
//! Kafka requests, and it talks to metadata only through the `MetadataStore`
//! trait, never SQL or CQL.

pub mod block_cache;
pub mod clock;
pub mod contract;
pub mod failpoint;
pub mod gc;
pub mod latency;
pub mod log;
pub mod object_format;
pub mod object_key;
pub mod object_store;
pub mod pacer;
pub mod s3;
mod tail_cache;
pub mod testing;

pub use clock::{Clock, ManualClock, SystemClock};
pub use gc::{GcPass, GcStats, ObjectCollector};
pub use latency::{Latencies, LatencySnapshot};
pub use log::{
    AppendOptions, AppendResult, CompactionLimits, Log, LogConfig, LogStatsSnapshot, NoRewrite,
    OffsetSpec, PendingAppend, ReadResult, RetentionLimits, Rewrite, TimestampOffset,
    UnsettledObjects,
};
pub use object_store::{
    ByteChunks, LocalDirStore, MemoryStore, ObjectStore, PartCount, PartReceiver,
};
pub use s3::{MIN_PART_SIZE, RequestStats, S3Config, S3Stats, S3Store};

use std::ops::Range;

/// What went wrong in the log, in kinds the broker maps to Kafka error codes.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("object already exists key={0}")]
    AlreadyExists(String),
    #[error("object not found key={0}")]
    NotFound(String),
    #[error("invalid object key key={0}")]
    InvalidKey(String),
    #[error("invalid range key={key} range={range:?} size={size}")]
    InvalidRange {
        key: String,
        range: Range<u64>,
        size: u64,
    },
    #[error("io: {0}")]
    Io(String),
    #[error("corrupt object: {0}")]
    CorruptObject(String),
    /// The partition's topic was deleted while its batches were in flight.
    #[error("unknown topic partition {0}")]
    UnknownTopicOrPartition(metadata::TopicPartition),
    /// This log does not lead the partition (never claimed it, handed it
    /// over, or was fenced): the client must go to the leader.
    #[error("not the leader of {0}")]
    NotLeader(metadata::TopicPartition),
    #[error(
        "offset out of range offset={offset} log_start_offset={log_start_offset} high_watermark={high_watermark}"
    )]
    OffsetOutOfRange {
        offset: i64,
        log_start_offset: i64,
        high_watermark: i64,
    },
    /// An operation did not finish in time; it may still complete.
    #[error("timed out: {0}")]
    TimedOut(String),
    /// The write could not be made durable; a retry may succeed.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    #[error("log is shutting down")]
    ShuttingDown,
    /// An idempotent producer's batch does not follow its last sequence.
    #[error("{0}")]
    OutOfOrderSequence(String),
    /// An idempotent producer wrote with an epoch older than its current one.
    #[error("{0}")]
    InvalidProducerEpoch(String),
    #[error("metadata: {0}")]
    Metadata(#[from] metadata::Error),
}

impl Error {
    pub(crate) fn io(context: String, e: std::io::Error) -> Self {
        Error::Io(format!("{context}: {e}"))
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
