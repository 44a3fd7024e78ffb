//! [`TopicSettings`]: a topic's effective configs, typed, as the log reads
//! them (Kafka's `LogConfig` object).
//!
//! Each field is the topic's override, else the broker's value for the
//! matching broker config, else Kafka's default. Configs Lightstream never
//! acts on (replication throttles, tiered storage) have no field.

use std::collections::BTreeMap;

use super::ConfigError;
use super::broker::BrokerDefaults;
use super::topic::topic_config;
use super::value::Parsed;

/// `compression.type`: the codec batches are stored with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompressionType {
    /// Keep whatever codec the producer used (Kafka's default).
    Producer,
    Uncompressed,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

/// `message.timestamp.type`: whose clock record timestamps come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampType {
    /// The producer's timestamp, checked against the
    /// `message.timestamp.{before,after}.max.ms` window.
    CreateTime,
    /// The broker overwrites timestamps with its append time.
    LogAppendTime,
}

/// A topic's effective configs, typed. Built once when a topic is loaded or
/// its configs change; plain data afterwards.
#[derive(Debug, Clone, PartialEq)]
pub struct TopicSettings {
    /// `cleanup.policy` contains `delete`: segments past retention are dropped.
    pub cleanup_policy_delete: bool,
    /// `cleanup.policy` contains `compact`.
    pub cleanup_policy_compact: bool,
    pub compression_type: CompressionType,
    pub compression_gzip_level: i32,
    pub compression_lz4_level: i32,
    pub compression_zstd_level: i32,
    pub delete_retention_ms: i64,
    pub file_delete_delay_ms: i64,
    pub flush_messages: i64,
    pub flush_ms: i64,
    pub index_interval_bytes: i32,
    pub max_compaction_lag_ms: i64,
    /// `max.message.bytes`: the largest record batch accepted, after compression.
    pub max_message_bytes: i32,
    pub message_timestamp_after_max_ms: i64,
    pub message_timestamp_before_max_ms: i64,
    pub message_timestamp_type: TimestampType,
    pub min_cleanable_dirty_ratio: f64,
    pub min_compaction_lag_ms: i64,
    pub min_insync_replicas: i32,
    pub preallocate: bool,
    /// `retention.bytes`; negative means no size limit.
    pub retention_bytes: i64,
    /// `retention.ms`; -1 means no time limit.
    pub retention_ms: i64,
    pub segment_bytes: i32,
    pub segment_index_bytes: i32,
    pub segment_jitter_ms: i64,
    pub segment_ms: i64,
    pub unclean_leader_election_enable: bool,
}

impl TopicSettings {
    /// The effective settings of a topic whose overrides are `configs`.
    ///
    /// Keys that are not topic configs are ignored (Kafka ignores them too).
    /// A value that fails its check — only possible if something stored it
    /// without [`validate_topic_configs`](super::validate_topic_configs), or
    /// if `broker` did not pass [`BrokerDefaults::validate`] — is an error
    /// rather than silently replaced by a default.
    pub fn from_configs(
        configs: &BTreeMap<String, String>,
        broker: &BrokerDefaults,
    ) -> Result<TopicSettings, ConfigError> {
        let get = Lookup { configs, broker };
        let cleanup_policy = get.list("cleanup.policy")?;
        let has_policy = |policy: &str| {
            cleanup_policy
                .iter()
                .any(|item| item.eq_ignore_ascii_case(policy))
        };
        Ok(TopicSettings {
            cleanup_policy_delete: has_policy("delete"),
            cleanup_policy_compact: has_policy("compact"),
            compression_type: match get.string("compression.type")?.as_str() {
                "uncompressed" => CompressionType::Uncompressed,
                "zstd" => CompressionType::Zstd,
                "lz4" => CompressionType::Lz4,
                "snappy" => CompressionType::Snappy,
                "gzip" => CompressionType::Gzip,
                "producer" => CompressionType::Producer,
                other => unreachable!("compression.type {other} passed its validator"),
            },
            compression_gzip_level: get.int("compression.gzip.level")?,
            compression_lz4_level: get.int("compression.lz4.level")?,
            compression_zstd_level: get.int("compression.zstd.level")?,
            delete_retention_ms: get.long("delete.retention.ms")?,
            file_delete_delay_ms: get.long("file.delete.delay.ms")?,
            flush_messages: get.long("flush.messages")?,
            flush_ms: get.long("flush.ms")?,
            index_interval_bytes: get.int("index.interval.bytes")?,
            max_compaction_lag_ms: get.long("max.compaction.lag.ms")?,
            max_message_bytes: get.int("max.message.bytes")?,
            message_timestamp_after_max_ms: get.long("message.timestamp.after.max.ms")?,
            message_timestamp_before_max_ms: get.long("message.timestamp.before.max.ms")?,
            message_timestamp_type: match get.string("message.timestamp.type")?.as_str() {
                "CreateTime" => TimestampType::CreateTime,
                "LogAppendTime" => TimestampType::LogAppendTime,
                other => unreachable!("message.timestamp.type {other} passed its validator"),
            },
            min_cleanable_dirty_ratio: get.double("min.cleanable.dirty.ratio")?,
            min_compaction_lag_ms: get.long("min.compaction.lag.ms")?,
            min_insync_replicas: get.int("min.insync.replicas")?,
            preallocate: get.bool("preallocate")?,
            retention_bytes: get.long("retention.bytes")?,
            retention_ms: get.long("retention.ms")?,
            segment_bytes: get.int("segment.bytes")?,
            segment_index_bytes: get.int("segment.index.bytes")?,
            segment_jitter_ms: get.long("segment.jitter.ms")?,
            segment_ms: get.long("segment.ms")?,
            unclean_leader_election_enable: get.bool("unclean.leader.election.enable")?,
        })
    }
}

/// Reads one effective config, parsed and checked.
struct Lookup<'a> {
    configs: &'a BTreeMap<String, String>,
    broker: &'a BrokerDefaults,
}

/// One typed getter per `Parsed` variant; a mismatch with the table's type is
/// a bug in this file, caught by the tests.
macro_rules! getter {
    ($fn_name:ident, $variant:ident, $ty:ty) => {
        fn $fn_name(&self, name: &'static str) -> Result<$ty, ConfigError> {
            match self.parsed(name)? {
                Parsed::$variant(value) => Ok(value),
                other => unreachable!("{name} parsed as {other:?}, not {}", stringify!($variant)),
            }
        }
    };
}

impl Lookup<'_> {
    fn parsed(&self, name: &'static str) -> Result<Parsed, ConfigError> {
        let def = topic_config(name).expect("TopicSettings reads names from the topic table");
        def.parse(&def.raw_value(self.configs, self.broker))
    }

    getter!(bool, Bool, bool);
    getter!(int, Int, i32);
    getter!(long, Long, i64);
    getter!(double, Double, f64);
    getter!(string, Str, String);
    getter!(list, List, Vec<String>);
}
