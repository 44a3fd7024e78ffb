//! The broker's configs: [`BrokerDefaults`], the values this broker runs with,
//! and the table of broker configs DescribeConfigs reports for a BROKER
//! resource and lists as synonyms of topic configs.
//!
//! The table holds every broker config a topic config falls back to (Kafka's
//! `ServerTopicConfigSynonyms`, including the alternative spellings such as
//! `log.retention.hours`) plus the few broker-only configs Lightstream has.
//! Rows whose value this broker does not hold report Kafka's default.
//!
//! Lightstream cannot tell "set in server.properties" from "left at the
//! default", so a held value counts as set (STATIC_BROKER_CONFIG) exactly when
//! it differs from Kafka's default.

use std::sync::LazyLock;

use super::topic::topic_configs;
use super::value::{self, invalid};
use super::{ConfigError, ConfigType};

/// The broker settings that configs report and topic configs fall back to.
///
/// Plain data: the broker builds it from its own settings. [`Default`] is
/// Kafka 4.0's defaults, which is also how a value is judged "set": a field
/// that differs from `BrokerDefaults::default()` is reported as
/// STATIC_BROKER_CONFIG, one that equals it as DEFAULT_CONFIG. String fields
/// take Kafka's spelling; [`BrokerDefaults::validate`] checks them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerDefaults {
    /// `node.id`, also reported as `broker.id` (KRaft makes them equal).
    /// Kafka's default is -1 (unset); a running broker always sets it.
    pub node_id: i32,
    /// `num.partitions`: partitions of an auto-created topic, or of a
    /// CreateTopics entry that asks for -1.
    pub num_partitions: i32,
    /// `default.replication.factor`; Lightstream keeps one copy in the log
    /// (durability comes from object storage), so always 1.
    pub default_replication_factor: i16,
    /// `auto.create.topics.enable`.
    pub auto_create_topics_enable: bool,
    /// `message.max.bytes`, the default of `max.message.bytes`.
    pub message_max_bytes: i32,
    /// `log.retention.ms`, the default of `retention.ms`.
    pub log_retention_ms: i64,
    /// `log.retention.bytes`, the default of `retention.bytes`.
    pub log_retention_bytes: i64,
    /// `log.segment.bytes`, the default of `segment.bytes`.
    pub log_segment_bytes: i32,
    /// `log.roll.ms`, the default of `segment.ms`.
    pub log_roll_ms: i64,
    /// `log.cleanup.policy`, the default of `cleanup.policy` (comma list).
    pub log_cleanup_policy: String,
    /// `compression.type`, the default of the topic config of the same name.
    pub compression_type: String,
    /// `min.insync.replicas`.
    pub min_insync_replicas: i32,
    /// `log.message.timestamp.type`: `CreateTime` or `LogAppendTime`.
    pub log_message_timestamp_type: String,
    /// `log.message.timestamp.before.max.ms`.
    pub log_message_timestamp_before_max_ms: i64,
    /// `log.message.timestamp.after.max.ms`.
    pub log_message_timestamp_after_max_ms: i64,
    /// `log.cleaner.delete.retention.ms`, the default of `delete.retention.ms`.
    pub log_cleaner_delete_retention_ms: i64,
    /// `log.cleaner.min.compaction.lag.ms`.
    pub log_cleaner_min_compaction_lag_ms: i64,
    /// `log.cleaner.max.compaction.lag.ms`.
    pub log_cleaner_max_compaction_lag_ms: i64,
    /// `socket.request.max.bytes`: the largest request frame accepted.
    pub socket_request_max_bytes: i32,
    /// `listeners`, e.g. `PLAINTEXT://:9092`.
    pub listeners: String,
    /// `advertised.listeners`; `None` means "same as listeners", as in Kafka.
    pub advertised_listeners: Option<String>,
}

impl Default for BrokerDefaults {
    /// Kafka 4.0's defaults.
    fn default() -> Self {
        BrokerDefaults {
            node_id: -1,
            num_partitions: 1,
            default_replication_factor: 1,
            auto_create_topics_enable: true,
            message_max_bytes: 1_048_588,
            log_retention_ms: 604_800_000,
            log_retention_bytes: -1,
            log_segment_bytes: 1_073_741_824,
            log_roll_ms: 604_800_000,
            log_cleanup_policy: "delete".to_owned(),
            compression_type: "producer".to_owned(),
            min_insync_replicas: 1,
            log_message_timestamp_type: "CreateTime".to_owned(),
            log_message_timestamp_before_max_ms: i64::MAX,
            log_message_timestamp_after_max_ms: 3_600_000,
            log_cleaner_delete_retention_ms: 86_400_000,
            log_cleaner_min_compaction_lag_ms: 0,
            log_cleaner_max_compaction_lag_ms: i64::MAX,
            socket_request_max_bytes: 104_857_600,
            listeners: "PLAINTEXT://:9092".to_owned(),
            advertised_listeners: None,
        }
    }
}

impl BrokerDefaults {
    /// Checks the values topic configs fall back to with the topic configs'
    /// own rules (so a bad `log.cleanup.policy` fails at startup, not when a
    /// topic is read), plus `num.partitions` and `default.replication.factor`
    /// >= 1. Messages name the broker config.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for def in topic_configs() {
            let Some(name) = def.broker_synonym else {
                continue;
            };
            let broker_def =
                broker_config(name).expect("every topic synonym is in the broker table");
            if let Some(held) = broker_def.value.and_then(|get| get(self)) {
                let parsed = value::parse(name, &held, def.config_type)?;
                def.validator.check(name, &parsed)?;
            }
        }
        if self.num_partitions < 1 {
            return Err(invalid(
                "num.partitions",
                self.num_partitions,
                "Value must be at least 1",
            ));
        }
        if self.default_replication_factor < 1 {
            return Err(invalid(
                "default.replication.factor",
                self.default_replication_factor,
                "Value must be at least 1",
            ));
        }
        Ok(())
    }
}

/// Reads one [`BrokerDefaults`] field as the config's string value.
type Getter = fn(&BrokerDefaults) -> Option<String>;

/// One broker config as Kafka defines it.
#[derive(Debug)]
pub(super) struct BrokerConfigDef {
    pub(super) name: &'static str,
    pub(super) config_type: ConfigType,
    /// Kafka's default, `None` where Kafka's is null (e.g. `log.retention.ms`,
    /// whose default comes from `log.retention.hours`).
    pub(super) default: Option<&'static str>,
    /// The [`BrokerDefaults`] field holding this config, if the broker has one.
    pub(super) value: Option<Getter>,
    pub(super) doc: &'static str,
}

/// Kafka's defaults, to tell a set value from a default one.
static KAFKA_DEFAULTS: LazyLock<BrokerDefaults> = LazyLock::new(BrokerDefaults::default);

impl BrokerConfigDef {
    /// The broker's value when it differs from Kafka's default: what Kafka
    /// reports with source STATIC_BROKER_CONFIG.
    pub(super) fn explicit_value(&self, broker: &BrokerDefaults) -> Option<String> {
        let get = self.value?;
        get(broker).filter(|held| Some(held) != get(&KAFKA_DEFAULTS).as_ref())
    }

    /// The value Kafka reports for this config on a BROKER resource: the set
    /// value, else Kafka's default (which may be null).
    pub(super) fn reported_value(&self, broker: &BrokerDefaults) -> Option<String> {
        self.explicit_value(broker)
            .or_else(|| self.default.map(str::to_owned))
    }

    /// The value the broker runs with, which a topic that does not set the
    /// matching topic config uses.
    pub(super) fn effective_value(&self, broker: &BrokerDefaults) -> Option<String> {
        match self.value {
            Some(get) => get(broker),
            None => self.default.map(str::to_owned),
        }
    }
}

/// Looks up a broker config by name.
pub(super) fn broker_config(name: &str) -> Option<&'static BrokerConfigDef> {
    BROKER_CONFIGS
        .binary_search_by(|def| def.name.cmp(name))
        .ok()
        .map(|at| &BROKER_CONFIGS[at])
}

/// Every broker config, sorted by name.
pub(super) fn broker_configs() -> &'static [BrokerConfigDef] {
    BROKER_CONFIGS
}

/// The names that spell the same broker config, highest priority first
/// (Kafka's `DynamicBrokerConfig.brokerConfigSynonyms`, without listener
/// overrides, which Lightstream does not have).
pub(super) fn broker_synonyms(def: &'static BrokerConfigDef) -> &'static [&'static str] {
    match def.name {
        "log.roll.ms" | "log.roll.hours" => &["log.roll.ms", "log.roll.hours"],
        "log.roll.jitter.ms" | "log.roll.jitter.hours" => {
            &["log.roll.jitter.ms", "log.roll.jitter.hours"]
        }
        // One way only: log.flush.scheduler.interval.ms is the fallback.
        "log.flush.interval.ms" => &["log.flush.interval.ms", "log.flush.scheduler.interval.ms"],
        "log.retention.ms" | "log.retention.minutes" | "log.retention.hours" => &[
            "log.retention.ms",
            "log.retention.minutes",
            "log.retention.hours",
        ],
        _ => std::slice::from_ref(&def.name),
    }
}

/// `Some(getter)` for a [`BrokerDefaults`] field printed with `to_string`.
macro_rules! held {
    ($field:ident) => {
        Some(|broker: &BrokerDefaults| Some(broker.$field.to_string()))
    };
}

const I64_MAX: Option<&str> = Some("9223372036854775807");

/// Sorted by name: [`broker_config`] binary-searches it (a test checks).
static BROKER_CONFIGS: &[BrokerConfigDef] = &[
    BrokerConfigDef {
        name: "advertised.listeners",
        config_type: ConfigType::String,
        default: None,
        value: Some(|broker: &BrokerDefaults| broker.advertised_listeners.clone()),
        doc: "Listeners published to clients in metadata, if different from listeners.",
    },
    BrokerConfigDef {
        name: "auto.create.topics.enable",
        config_type: ConfigType::Boolean,
        default: Some("true"),
        value: held!(auto_create_topics_enable),
        doc: "Whether a topic is created when a client asks for metadata of an unknown topic.",
    },
    BrokerConfigDef {
        name: "broker.id",
        config_type: ConfigType::Int,
        default: Some("-1"),
        value: held!(node_id),
        doc: "The broker's id; equal to node.id.",
    },
    BrokerConfigDef {
        name: "compression.gzip.level",
        config_type: ConfigType::Int,
        default: Some("-1"),
        value: None,
        doc: "Default gzip compression level of topics.",
    },
    BrokerConfigDef {
        name: "compression.lz4.level",
        config_type: ConfigType::Int,
        default: Some("9"),
        value: None,
        doc: "Default lz4 compression level of topics.",
    },
    BrokerConfigDef {
        name: "compression.type",
        config_type: ConfigType::String,
        default: Some("producer"),
        value: held!(compression_type),
        doc: "Default final compression of topics' data.",
    },
    BrokerConfigDef {
        name: "compression.zstd.level",
        config_type: ConfigType::Int,
        default: Some("3"),
        value: None,
        doc: "Default zstd compression level of topics.",
    },
    BrokerConfigDef {
        name: "default.replication.factor",
        config_type: ConfigType::Int,
        default: Some("1"),
        value: held!(default_replication_factor),
        doc: "Replication factor of auto-created topics and of CreateTopics entries that ask \
              for -1.",
    },
    BrokerConfigDef {
        name: "listeners",
        config_type: ConfigType::String,
        default: Some("PLAINTEXT://:9092"),
        value: held!(listeners),
        doc: "The addresses the broker listens on.",
    },
    BrokerConfigDef {
        name: "log.cleaner.delete.retention.ms",
        config_type: ConfigType::Long,
        default: Some("86400000"),
        value: held!(log_cleaner_delete_retention_ms),
        doc: "Default of delete.retention.ms.",
    },
    BrokerConfigDef {
        name: "log.cleaner.max.compaction.lag.ms",
        config_type: ConfigType::Long,
        default: I64_MAX,
        value: held!(log_cleaner_max_compaction_lag_ms),
        doc: "Default of max.compaction.lag.ms.",
    },
    BrokerConfigDef {
        name: "log.cleaner.min.cleanable.ratio",
        config_type: ConfigType::Double,
        default: Some("0.5"),
        value: None,
        doc: "Default of min.cleanable.dirty.ratio.",
    },
    BrokerConfigDef {
        name: "log.cleaner.min.compaction.lag.ms",
        config_type: ConfigType::Long,
        default: Some("0"),
        value: held!(log_cleaner_min_compaction_lag_ms),
        doc: "Default of min.compaction.lag.ms.",
    },
    BrokerConfigDef {
        name: "log.cleanup.policy",
        config_type: ConfigType::List,
        default: Some("delete"),
        value: held!(log_cleanup_policy),
        doc: "Default of cleanup.policy.",
    },
    BrokerConfigDef {
        name: "log.flush.interval.messages",
        config_type: ConfigType::Long,
        default: I64_MAX,
        value: None,
        doc: "Default of flush.messages.",
    },
    BrokerConfigDef {
        name: "log.flush.interval.ms",
        config_type: ConfigType::Long,
        default: None,
        value: None,
        doc: "Default of flush.ms; if unset, log.flush.scheduler.interval.ms is used.",
    },
    BrokerConfigDef {
        name: "log.flush.scheduler.interval.ms",
        config_type: ConfigType::Long,
        default: I64_MAX,
        value: None,
        doc: "How often the flusher checks whether a log needs flushing.",
    },
    BrokerConfigDef {
        name: "log.index.interval.bytes",
        config_type: ConfigType::Int,
        default: Some("4096"),
        value: None,
        doc: "Default of index.interval.bytes.",
    },
    BrokerConfigDef {
        name: "log.index.size.max.bytes",
        config_type: ConfigType::Int,
        default: Some("10485760"),
        value: None,
        doc: "Default of segment.index.bytes.",
    },
    BrokerConfigDef {
        name: "log.local.retention.bytes",
        config_type: ConfigType::Long,
        default: Some("-2"),
        value: None,
        doc: "Default of local.retention.bytes.",
    },
    BrokerConfigDef {
        name: "log.local.retention.ms",
        config_type: ConfigType::Long,
        default: Some("-2"),
        value: None,
        doc: "Default of local.retention.ms.",
    },
    BrokerConfigDef {
        name: "log.message.timestamp.after.max.ms",
        config_type: ConfigType::Long,
        default: Some("3600000"),
        value: held!(log_message_timestamp_after_max_ms),
        doc: "Default of message.timestamp.after.max.ms.",
    },
    BrokerConfigDef {
        name: "log.message.timestamp.before.max.ms",
        config_type: ConfigType::Long,
        default: I64_MAX,
        value: held!(log_message_timestamp_before_max_ms),
        doc: "Default of message.timestamp.before.max.ms.",
    },
    BrokerConfigDef {
        name: "log.message.timestamp.type",
        config_type: ConfigType::String,
        default: Some("CreateTime"),
        value: held!(log_message_timestamp_type),
        doc: "Default of message.timestamp.type.",
    },
    BrokerConfigDef {
        name: "log.preallocate",
        config_type: ConfigType::Boolean,
        default: Some("false"),
        value: None,
        doc: "Default of preallocate.",
    },
    BrokerConfigDef {
        name: "log.retention.bytes",
        config_type: ConfigType::Long,
        default: Some("-1"),
        value: held!(log_retention_bytes),
        doc: "Default of retention.bytes.",
    },
    BrokerConfigDef {
        name: "log.retention.hours",
        config_type: ConfigType::Int,
        default: Some("168"),
        value: None,
        doc: "Default of retention.ms, in hours; log.retention.ms takes precedence.",
    },
    BrokerConfigDef {
        name: "log.retention.minutes",
        config_type: ConfigType::Int,
        default: None,
        value: None,
        doc: "Default of retention.ms, in minutes; log.retention.ms takes precedence.",
    },
    BrokerConfigDef {
        name: "log.retention.ms",
        config_type: ConfigType::Long,
        default: None,
        value: held!(log_retention_ms),
        doc: "Default of retention.ms; if unset, log.retention.minutes or log.retention.hours \
              is used.",
    },
    BrokerConfigDef {
        name: "log.roll.hours",
        config_type: ConfigType::Int,
        default: Some("168"),
        value: None,
        doc: "Default of segment.ms, in hours; log.roll.ms takes precedence.",
    },
    BrokerConfigDef {
        name: "log.roll.jitter.hours",
        config_type: ConfigType::Int,
        default: Some("0"),
        value: None,
        doc: "Default of segment.jitter.ms, in hours; log.roll.jitter.ms takes precedence.",
    },
    BrokerConfigDef {
        name: "log.roll.jitter.ms",
        config_type: ConfigType::Long,
        default: None,
        value: None,
        doc: "Default of segment.jitter.ms; if unset, log.roll.jitter.hours is used.",
    },
    BrokerConfigDef {
        name: "log.roll.ms",
        config_type: ConfigType::Long,
        default: None,
        value: held!(log_roll_ms),
        doc: "Default of segment.ms; if unset, log.roll.hours is used.",
    },
    BrokerConfigDef {
        name: "log.segment.bytes",
        config_type: ConfigType::Int,
        default: Some("1073741824"),
        value: held!(log_segment_bytes),
        doc: "Default of segment.bytes.",
    },
    BrokerConfigDef {
        name: "log.segment.delete.delay.ms",
        config_type: ConfigType::Long,
        default: Some("60000"),
        value: None,
        doc: "Default of file.delete.delay.ms.",
    },
    BrokerConfigDef {
        name: "message.max.bytes",
        config_type: ConfigType::Int,
        default: Some("1048588"),
        value: held!(message_max_bytes),
        doc: "Default of max.message.bytes: the largest record batch a topic accepts.",
    },
    BrokerConfigDef {
        name: "min.insync.replicas",
        config_type: ConfigType::Int,
        default: Some("1"),
        value: held!(min_insync_replicas),
        doc: "Default of the topic config of the same name.",
    },
    BrokerConfigDef {
        name: "node.id",
        config_type: ConfigType::Int,
        default: Some("-1"),
        value: held!(node_id),
        doc: "The node's id in the cluster.",
    },
    BrokerConfigDef {
        name: "num.partitions",
        config_type: ConfigType::Int,
        default: Some("1"),
        value: held!(num_partitions),
        doc: "Partitions of auto-created topics and of CreateTopics entries that ask for -1.",
    },
    BrokerConfigDef {
        name: "socket.request.max.bytes",
        config_type: ConfigType::Int,
        default: Some("104857600"),
        value: held!(socket_request_max_bytes),
        doc: "Largest request the broker accepts.",
    },
    BrokerConfigDef {
        name: "unclean.leader.election.enable",
        config_type: ConfigType::Boolean,
        default: Some("false"),
        value: None,
        doc: "Default of the topic config of the same name.",
    },
];
