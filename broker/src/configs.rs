//! Topic and broker configuration semantics, as Kafka 4.0 reports them. This
//! is the one place they live.
//!
//! It owns the table of Kafka's topic configs (default, type, validator,
//! broker synonym, doc), the broker configs a DescribeConfigs on a BROKER
//! resource reports, validation with Kafka's own error wording, the merge rules
//! of AlterConfigs and IncrementalAlterConfigs, the config entries of
//! DescribeConfigs and CreateTopics responses, and the typed [`TopicSettings`]
//! the log reads.
//!
//! It is pure: no I/O, no async, no clock. It deliberately does not store
//! configs (the metadata store keeps a topic's overrides as a
//! `BTreeMap<String, String>`, exactly as the client sent them), does not
//! choose Kafka error codes (the dispatch maps [`ConfigError`]), and does not
//! support dynamic broker configs: every broker config is reported read-only,
//! and the broker's values come from its own settings through
//! [`BrokerDefaults`].
//!
//! Where Kafka behaves oddly we copy it and say so at the spot (for example,
//! `retention.ms` lists no synonyms until `log.retention.ms` is set, because
//! Kafka drops every synonym ranked before the first one it finds).

use std::collections::{BTreeMap, BTreeSet};

mod broker;
mod describe;
mod enforcement;
mod settings;
mod topic;
mod value;

#[cfg(test)]
mod tests;

pub use broker::BrokerDefaults;
pub use describe::{create_topic_configs, describe_broker, describe_topic};
pub use settings::{CompressionType, TimestampType, TopicSettings};
pub use topic::{TopicConfigDef, topic_config, topic_configs};

/// IncrementalAlterConfigs `config_operation`: set the key to the value.
pub const OP_SET: i8 = 0;
/// IncrementalAlterConfigs `config_operation`: remove the key (absent is fine).
pub const OP_DELETE: i8 = 1;
/// IncrementalAlterConfigs `config_operation`: add items to a LIST config.
pub const OP_APPEND: i8 = 2;
/// IncrementalAlterConfigs `config_operation`: remove items from a LIST config.
pub const OP_SUBTRACT: i8 = 3;

/// Why a config change or a stored config was refused.
///
/// The messages are Kafka's own wording, sent to the client as they are, which
/// is why they do not follow our lowercase `key=value` style.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// Not one of Kafka's topic configs. The dispatch answers INVALID_CONFIG (40).
    #[error("Unknown topic config name: {0}")]
    Unknown(String),
    /// A value, or a combination of values, Kafka would refuse. The dispatch
    /// answers INVALID_CONFIG (40).
    #[error("{0}")]
    Invalid(String),
    /// The request itself is malformed: a key given twice, an unknown
    /// operation. The dispatch answers INVALID_REQUEST (42).
    #[error("{0}")]
    InvalidRequest(String),
}

/// Kafka's `ConfigDef.Type`, numbered as DescribeConfigs v3+ sends it in
/// `config_type` (0 is UNKNOWN and never sent by us).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i8)]
pub enum ConfigType {
    Boolean = 1,
    String = 2,
    Int = 3,
    #[allow(dead_code, reason = "kept for Kafka's numbering")]
    Short = 4,
    Long = 5,
    Double = 6,
    List = 7,
    #[allow(dead_code, reason = "kept for Kafka's numbering")]
    Class = 8,
    #[allow(dead_code, reason = "kept for Kafka's numbering")]
    Password = 9,
}

impl ConfigType {
    /// The wire id, as `DescribeConfigsResourceResult::config_type`.
    pub fn id(self) -> i8 {
        self as i8
    }

    /// The Java enum name, as Kafka's messages print it ("Not a number of type INT").
    pub fn kafka_name(self) -> &'static str {
        match self {
            ConfigType::Boolean => "BOOLEAN",
            ConfigType::String => "STRING",
            ConfigType::Int => "INT",
            ConfigType::Short => "SHORT",
            ConfigType::Long => "LONG",
            ConfigType::Double => "DOUBLE",
            ConfigType::List => "LIST",
            ConfigType::Class => "CLASS",
            ConfigType::Password => "PASSWORD",
        }
    }
}

/// Where a reported value comes from, numbered as DescribeConfigs sends it in
/// `config_source` and CreateTopics in `CreatableTopicConfigs::config_source`.
///
/// Kafka also has DYNAMIC_BROKER_CONFIG (2), DYNAMIC_DEFAULT_BROKER_CONFIG (3)
/// and others; Lightstream has no dynamic broker configs, so only these occur.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i8)]
pub enum ConfigSource {
    /// Set on the topic itself.
    TopicConfig = 1,
    /// Set in the broker's own settings (here: differs from Kafka's default).
    StaticBrokerConfig = 4,
    /// Kafka's built-in default.
    DefaultConfig = 5,
}

impl ConfigSource {
    /// The wire id.
    pub fn id(self) -> i8 {
        self as i8
    }
}

/// Checks one topic config as Kafka's `LogConfig` does: the name must be a
/// topic config, and the value must parse as its type and pass its validator.
///
/// Errors: [`ConfigError::Unknown`] for an unknown name, else
/// [`ConfigError::Invalid`] with Kafka's message, e.g. `Invalid value -2 for
/// configuration retention.ms: Value must be at least -1`.
pub fn validate_topic_config(name: &str, value: &str) -> Result<(), ConfigError> {
    let def = topic_config(name).ok_or_else(|| ConfigError::Unknown(name.to_owned()))?;
    def.parse(value).map(drop)
}

/// Checks a topic's whole set of overrides, as CreateTopics and both alter
/// APIs must before anything is stored: first that every name is known, then
/// every value, then the rules that span two configs.
///
/// The cross-config rules use Kafka's topic defaults for keys the set does not
/// hold (Kafka would use the broker's values; ours equal Kafka's defaults for
/// every config these rules read).
pub fn validate_topic_configs(configs: &BTreeMap<String, String>) -> Result<(), ConfigError> {
    if let Some(name) = configs.keys().find(|name| topic_config(name).is_none()) {
        return Err(ConfigError::Unknown(name.clone()));
    }
    for (name, value) in configs {
        validate_topic_config(name, value)?;
    }
    let lag_ms = |name: &str| {
        let def = topic_config(name).expect("compaction lag configs are in the topic table");
        let raw = configs.get(name).map_or(def.default, String::as_str);
        match def.parse(raw) {
            Ok(value::Parsed::Long(ms)) => ms,
            other => unreachable!("{name} was validated as a LONG above, got {other:?}"),
        }
    };
    let (min_ms, max_ms) = (
        lag_ms("min.compaction.lag.ms"),
        lag_ms("max.compaction.lag.ms"),
    );
    if min_ms > max_ms {
        return Err(ConfigError::Invalid(format!(
            "conflict topic config setting min.compaction.lag.ms ({min_ms}) > \
             max.compaction.lag.ms ({max_ms})"
        )));
    }
    Ok(())
}

/// AlterConfigs (the legacy API): the request's configs replace the topic's
/// whole set; keys not named are reset to their defaults. Returns the new set
/// to store, already validated.
///
/// A `None` value leaves the key unset, as KRaft does. A key given twice keeps
/// its last value (Kafka collects them into a map the same way).
pub fn apply_alter_configs(
    new: impl IntoIterator<Item = (String, Option<String>)>,
) -> Result<BTreeMap<String, String>, ConfigError> {
    let mut configs = BTreeMap::new();
    for (name, value) in new {
        match value {
            Some(value) => configs.insert(name, value),
            None => configs.remove(&name),
        };
    }
    validate_topic_configs(&configs)?;
    Ok(configs)
}

/// IncrementalAlterConfigs: applies `(name, operation, value)` in order to the
/// topic's `current` overrides and returns the new set to store, validated
/// as a whole. Operations are [`OP_SET`], [`OP_DELETE`], [`OP_APPEND`] and
/// [`OP_SUBTRACT`], with Kafka's controller semantics:
///
/// - SET with a `None` value removes the key, like DELETE. DELETE of an absent
///   key is not an error.
/// - APPEND and SUBTRACT work only on LIST configs (an unknown key is "not a
///   LIST" too): `Can't APPEND to key retention.ms because its type is not
///   LIST.` They start from the topic's value, else Kafka's topic default (so
///   APPEND `compact` to an unset `cleanup.policy` gives `delete,compact`),
///   split both sides on `,` without trimming, append only items not already
///   there, and subtract the first occurrence of each item.
/// - A key named twice in one request is [`ConfigError::InvalidRequest`]
///   (`Error due to duplicate config keys`), as is an unknown operation.
pub fn apply_incremental_alter(
    current: &BTreeMap<String, String>,
    ops: &[(String, i8, Option<String>)],
) -> Result<BTreeMap<String, String>, ConfigError> {
    let mut seen = BTreeSet::new();
    if ops.iter().any(|(name, _, _)| !seen.insert(name.as_str())) {
        return Err(ConfigError::InvalidRequest(
            "Error due to duplicate config keys".to_owned(),
        ));
    }
    let mut next = current.clone();
    for (name, op, value) in ops {
        match *op {
            OP_SET => match value {
                Some(value) => next.insert(name.clone(), value.clone()),
                None => next.remove(name),
            },
            OP_DELETE => next.remove(name),
            OP_APPEND | OP_SUBTRACT => {
                let op_name = if *op == OP_APPEND {
                    "APPEND"
                } else {
                    "SUBTRACT"
                };
                let def = topic_config(name)
                    .filter(|def| def.config_type == ConfigType::List)
                    .ok_or_else(|| {
                        ConfigError::Invalid(format!(
                            "Can't {op_name} to key {name} because its type is not LIST."
                        ))
                    })?;
                let old = next.get(name).map_or(def.default, String::as_str);
                // Kafka's `getParts`: split on ",", drop empty items, no trim.
                let mut items: Vec<&str> = old.split(',').filter(|item| !item.is_empty()).collect();
                for item in java_split_comma(value.as_deref().unwrap_or("")) {
                    if *op == OP_APPEND {
                        if !items.contains(&item) {
                            items.push(item);
                        }
                    } else if let Some(at) = items.iter().position(|have| *have == item) {
                        items.remove(at);
                    }
                }
                next.insert(name.clone(), items.join(","))
            }
            other => {
                return Err(ConfigError::InvalidRequest(format!(
                    "Unknown operations type {other}"
                )));
            }
        };
    }
    validate_topic_configs(&next)?;
    Ok(next)
}

/// Java's `String.split(",")`: trailing empty items are dropped, but a string
/// with no comma at all (even "") comes back whole.
fn java_split_comma(s: &str) -> Vec<&str> {
    let mut items: Vec<&str> = s.split(',').collect();
    if items.len() > 1 {
        while items.last() == Some(&"") {
            items.pop();
        }
    }
    items
}
