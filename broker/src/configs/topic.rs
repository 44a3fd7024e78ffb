//! The table of Kafka 4.0's topic configs: every key `LogConfig` defines,
//! with its default, type, validator, broker synonym and a one-line doc.
//!
//! Removed in Kafka 4.0 and so absent here (and refused as unknown):
//! `message.downconversion.enable`, `message.format.version`,
//! `message.timestamp.difference.max.ms`. Kafka 4.0's KIP-1030 raised the
//! minimum of `segment.bytes` to 1 MiB and lowered the default of
//! `message.timestamp.after.max.ms` to one hour; both are reflected.

use std::collections::BTreeMap;

use super::broker::{BrokerDefaults, broker_config};
use super::value::{self, Parsed, Validator};
use super::{ConfigError, ConfigType};

/// One topic config as Kafka defines it.
#[derive(Debug)]
pub struct TopicConfigDef {
    pub name: &'static str,
    pub config_type: ConfigType,
    /// Kafka's default, printed as DescribeConfigs prints it.
    pub default: &'static str,
    pub(super) validator: Validator,
    /// The broker config that supplies this config's value when the topic does
    /// not set it (Kafka's `ServerTopicConfigSynonyms`, highest priority
    /// first; the rest of the chain, e.g. `log.retention.hours`, follows from
    /// the broker table). `None` when the broker has no such config.
    pub broker_synonym: Option<&'static str>,
    /// One line, sent as `documentation` when a client asks for it.
    pub doc: &'static str,
}

impl TopicConfigDef {
    /// Parses and checks `raw` as this config, with Kafka's messages.
    pub(super) fn parse(&self, raw: &str) -> Result<Parsed, ConfigError> {
        let parsed = value::parse(self.name, raw, self.config_type)?;
        self.validator.check(self.name, &parsed)?;
        Ok(parsed)
    }

    /// The raw value in force for a topic: its own override, else the value
    /// the broker runs with for the synonym, else Kafka's default.
    pub(super) fn raw_value(
        &self,
        configs: &BTreeMap<String, String>,
        broker: &BrokerDefaults,
    ) -> String {
        if let Some(raw) = configs.get(self.name) {
            return raw.clone();
        }
        self.broker_synonym
            .and_then(|name| broker_config(name)?.effective_value(broker))
            .unwrap_or_else(|| self.default.to_owned())
    }

    /// `raw` as DescribeConfigs reports it (Kafka re-prints the parsed value:
    /// `TRUE` becomes `true`, `compact, delete` becomes `compact,delete`).
    pub(super) fn canonical(&self, raw: &str) -> String {
        self.parse(raw)
            .map(|parsed| parsed.canonical())
            .unwrap_or_else(|_| raw.to_owned())
    }
}

/// Looks up a topic config by name.
pub fn topic_config(name: &str) -> Option<&'static TopicConfigDef> {
    TOPIC_CONFIGS
        .binary_search_by(|def| def.name.cmp(name))
        .ok()
        .map(|at| &TOPIC_CONFIGS[at])
}

/// Every topic config, sorted by name (the order DescribeConfigs and
/// CreateTopics report them in).
pub fn topic_configs() -> &'static [TopicConfigDef] {
    TOPIC_CONFIGS
}

/// Kafka's `BrokerCompressionType` names, in Kafka's order (its messages list them so).
const COMPRESSION_TYPES: &[&str] = &["uncompressed", "zstd", "lz4", "snappy", "gzip", "producer"];

const I64_MAX: &str = "9223372036854775807";

/// Sorted by name: [`topic_config`] binary-searches it (a test checks).
static TOPIC_CONFIGS: &[TopicConfigDef] = &[
    TopicConfigDef {
        name: "cleanup.policy",
        config_type: ConfigType::List,
        default: "delete",
        validator: Validator::ListOf(&["compact", "delete"]),
        broker_synonym: Some("log.cleanup.policy"),
        doc: "How old segments are cleaned up: \"delete\" drops them past the retention limits, \
              \"compact\" keeps the latest record per key; both may be listed.",
    },
    TopicConfigDef {
        name: "compression.gzip.level",
        config_type: ConfigType::Int,
        default: "-1",
        validator: Validator::GzipLevel,
        broker_synonym: Some("compression.gzip.level"),
        doc: "Compression level used when compression.type is gzip.",
    },
    TopicConfigDef {
        name: "compression.lz4.level",
        config_type: ConfigType::Int,
        default: "9",
        validator: Validator::Range {
            min: 1,
            max: Some(17),
        },
        broker_synonym: Some("compression.lz4.level"),
        doc: "Compression level used when compression.type is lz4.",
    },
    TopicConfigDef {
        name: "compression.type",
        config_type: ConfigType::String,
        default: "producer",
        validator: Validator::OneOf(COMPRESSION_TYPES),
        broker_synonym: Some("compression.type"),
        doc: "Final compression of the topic's data: a codec, \"uncompressed\", or \"producer\" \
              to keep the codec the producer used.",
    },
    TopicConfigDef {
        name: "compression.zstd.level",
        config_type: ConfigType::Int,
        default: "3",
        validator: Validator::Range {
            min: -131072,
            max: Some(22),
        },
        broker_synonym: Some("compression.zstd.level"),
        doc: "Compression level used when compression.type is zstd.",
    },
    TopicConfigDef {
        name: "delete.retention.ms",
        config_type: ConfigType::Long,
        default: "86400000",
        validator: Validator::Range { min: 0, max: None },
        broker_synonym: Some("log.cleaner.delete.retention.ms"),
        doc: "How long delete tombstones are kept on a compacted topic.",
    },
    TopicConfigDef {
        name: "file.delete.delay.ms",
        config_type: ConfigType::Long,
        default: "60000",
        validator: Validator::Range { min: 0, max: None },
        broker_synonym: Some("log.segment.delete.delay.ms"),
        doc: "How long to wait before deleting a segment file that was removed from the log.",
    },
    TopicConfigDef {
        name: "flush.messages",
        config_type: ConfigType::Long,
        default: I64_MAX,
        validator: Validator::Range { min: 1, max: None },
        broker_synonym: Some("log.flush.interval.messages"),
        doc: "Number of messages written to a partition before its data is forced to disk.",
    },
    TopicConfigDef {
        name: "flush.ms",
        config_type: ConfigType::Long,
        default: I64_MAX,
        validator: Validator::Range { min: 0, max: None },
        broker_synonym: Some("log.flush.interval.ms"),
        doc: "Time after which a partition's data is forced to disk.",
    },
    TopicConfigDef {
        name: "follower.replication.throttled.replicas",
        config_type: ConfigType::List,
        default: "",
        validator: Validator::ThrottledReplicas,
        broker_synonym: None,
        doc: "Replicas (partitionId:brokerId pairs, or \"*\") whose follower replication is \
              throttled.",
    },
    TopicConfigDef {
        name: "index.interval.bytes",
        config_type: ConfigType::Int,
        default: "4096",
        validator: Validator::Range { min: 0, max: None },
        broker_synonym: Some("log.index.interval.bytes"),
        doc: "Bytes appended between two entries of the offset index.",
    },
    TopicConfigDef {
        name: "leader.replication.throttled.replicas",
        config_type: ConfigType::List,
        default: "",
        validator: Validator::ThrottledReplicas,
        broker_synonym: None,
        doc: "Replicas (partitionId:brokerId pairs, or \"*\") whose leader replication is \
              throttled.",
    },
    TopicConfigDef {
        name: "local.retention.bytes",
        config_type: ConfigType::Long,
        default: "-2",
        validator: Validator::Range { min: -2, max: None },
        broker_synonym: Some("log.local.retention.bytes"),
        doc: "Local size limit of a partition when remote storage is on; -2 means \
              retention.bytes.",
    },
    TopicConfigDef {
        name: "local.retention.ms",
        config_type: ConfigType::Long,
        default: "-2",
        validator: Validator::Range { min: -2, max: None },
        broker_synonym: Some("log.local.retention.ms"),
        doc: "Local time limit of a partition when remote storage is on; -2 means retention.ms.",
    },
    TopicConfigDef {
        name: "max.compaction.lag.ms",
        config_type: ConfigType::Long,
        default: I64_MAX,
        validator: Validator::Range { min: 1, max: None },
        broker_synonym: Some("log.cleaner.max.compaction.lag.ms"),
        doc: "Longest time a record may stay ineligible for compaction.",
    },
    TopicConfigDef {
        name: "max.message.bytes",
        config_type: ConfigType::Int,
        default: "1048588",
        validator: Validator::Range { min: 0, max: None },
        broker_synonym: Some("message.max.bytes"),
        doc: "Largest record batch size the topic accepts, after compression.",
    },
    TopicConfigDef {
        name: "message.timestamp.after.max.ms",
        config_type: ConfigType::Long,
        default: "3600000",
        validator: Validator::Range { min: 0, max: None },
        broker_synonym: Some("log.message.timestamp.after.max.ms"),
        doc: "How far a CreateTime timestamp may be ahead of the broker's clock.",
    },
    TopicConfigDef {
        name: "message.timestamp.before.max.ms",
        config_type: ConfigType::Long,
        default: I64_MAX,
        validator: Validator::Range { min: 0, max: None },
        broker_synonym: Some("log.message.timestamp.before.max.ms"),
        doc: "How far a CreateTime timestamp may be behind the broker's clock.",
    },
    TopicConfigDef {
        name: "message.timestamp.type",
        config_type: ConfigType::String,
        default: "CreateTime",
        validator: Validator::OneOf(&["CreateTime", "LogAppendTime"]),
        broker_synonym: Some("log.message.timestamp.type"),
        doc: "Whether record timestamps are the producer's CreateTime or the broker's \
              LogAppendTime.",
    },
    TopicConfigDef {
        name: "min.cleanable.dirty.ratio",
        config_type: ConfigType::Double,
        default: "0.5",
        validator: Validator::Range {
            min: 0,
            max: Some(1),
        },
        broker_synonym: Some("log.cleaner.min.cleanable.ratio"),
        doc: "Share of the log that must be uncompacted before the cleaner compacts it.",
    },
    TopicConfigDef {
        name: "min.compaction.lag.ms",
        config_type: ConfigType::Long,
        default: "0",
        validator: Validator::Range { min: 0, max: None },
        broker_synonym: Some("log.cleaner.min.compaction.lag.ms"),
        doc: "Shortest time a record stays uncompacted in the log.",
    },
    TopicConfigDef {
        name: "min.insync.replicas",
        config_type: ConfigType::Int,
        default: "1",
        validator: Validator::Range { min: 1, max: None },
        broker_synonym: Some("min.insync.replicas"),
        doc: "Replicas that must acknowledge a write sent with acks=all.",
    },
    TopicConfigDef {
        name: "preallocate",
        config_type: ConfigType::Boolean,
        default: "false",
        validator: Validator::Any,
        broker_synonym: Some("log.preallocate"),
        doc: "Whether segment files are preallocated on disk.",
    },
    TopicConfigDef {
        name: "remote.log.copy.disable",
        config_type: ConfigType::Boolean,
        default: "false",
        validator: Validator::Any,
        broker_synonym: None,
        doc: "Stop copying segments to remote storage while keeping the remote data readable.",
    },
    TopicConfigDef {
        name: "remote.log.delete.on.disable",
        config_type: ConfigType::Boolean,
        default: "false",
        validator: Validator::Any,
        broker_synonym: None,
        doc: "Delete the remote data when remote storage is turned off for the topic.",
    },
    TopicConfigDef {
        name: "remote.storage.enable",
        config_type: ConfigType::Boolean,
        default: "false",
        validator: Validator::NoTieredStorage,
        broker_synonym: None,
        doc: "Tiered storage for the topic; not available on this broker.",
    },
    TopicConfigDef {
        name: "retention.bytes",
        config_type: ConfigType::Long,
        default: "-1",
        validator: Validator::Any,
        broker_synonym: Some("log.retention.bytes"),
        doc: "Largest size a partition may grow to before old segments are deleted; -1 means \
              no limit.",
    },
    TopicConfigDef {
        name: "retention.ms",
        config_type: ConfigType::Long,
        default: "604800000",
        validator: Validator::Range { min: -1, max: None },
        broker_synonym: Some("log.retention.ms"),
        doc: "How long a segment is kept before it is deleted; -1 means no time limit.",
    },
    TopicConfigDef {
        name: "segment.bytes",
        config_type: ConfigType::Int,
        default: "1073741824",
        validator: Validator::Range {
            min: 1048576,
            max: None,
        },
        broker_synonym: Some("log.segment.bytes"),
        doc: "Size at which a partition rolls to a new segment.",
    },
    TopicConfigDef {
        name: "segment.index.bytes",
        config_type: ConfigType::Int,
        default: "10485760",
        validator: Validator::Range { min: 4, max: None },
        broker_synonym: Some("log.index.size.max.bytes"),
        doc: "Size of the index that maps offsets to file positions.",
    },
    TopicConfigDef {
        name: "segment.jitter.ms",
        config_type: ConfigType::Long,
        default: "0",
        validator: Validator::Range { min: 0, max: None },
        broker_synonym: Some("log.roll.jitter.ms"),
        doc: "Largest random jitter subtracted from segment.ms, to avoid rolling all at once.",
    },
    TopicConfigDef {
        name: "segment.ms",
        config_type: ConfigType::Long,
        default: "604800000",
        validator: Validator::Range { min: 1, max: None },
        broker_synonym: Some("log.roll.ms"),
        doc: "Time after which a partition rolls to a new segment even if it is not full.",
    },
    TopicConfigDef {
        name: "unclean.leader.election.enable",
        config_type: ConfigType::Boolean,
        default: "false",
        validator: Validator::Any,
        broker_synonym: Some("unclean.leader.election.enable"),
        doc: "Whether a replica outside the ISR may become leader, at the risk of data loss.",
    },
];
