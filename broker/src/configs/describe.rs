//! The config entries of DescribeConfigs (TOPIC and BROKER resources) and of
//! CreateTopics v5+ responses, built as Kafka's `ConfigHelper` and
//! `KafkaConfigSchema` build them.
//!
//! Only the per-config entries are built here; the handler wraps them in a
//! `DescribeConfigsResult` (error code, resource type and name) and decides
//! what an unknown topic or a foreign broker id answers.

use std::collections::BTreeMap;
use std::ops::Deref;

use kafka_protocol::messages::create_topics_response::CreatableTopicConfigs;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsSynonym,
};
use kafka_protocol::protocol::StrBytes;

use super::broker::{
    BrokerConfigDef, BrokerDefaults, broker_config, broker_configs, broker_synonyms,
};
use super::enforcement::enforcement;
use super::topic::{TopicConfigDef, topic_configs};
use super::{ConfigSource, ConfigType};

/// DescribeConfigs for a TOPIC resource: one entry per topic config, sorted by
/// name, given the topic's overrides `configs` and the broker's values.
///
/// `keys` is the request's `configuration_keys`: `None` or an empty list
/// means every config; otherwise only the named ones, and names that are not
/// topic configs are left out silently, as Kafka does.
///
/// Each entry: `value` is the override, else the broker's value, else Kafka's
/// default, re-printed as Kafka prints it; `config_source` is TOPIC_CONFIG
/// when the topic sets it, else STATIC_BROKER_CONFIG when the broker's value
/// for the first-ranked synonym differs from Kafka's default, else
/// DEFAULT_CONFIG; `read_only` and `is_sensitive` are false; `synonyms` (only
/// when `include_synonyms`) are the override first, then the broker
/// synonyms, set ones before defaults; `documentation` only when
/// `include_documentation`, Kafka's line followed by what Lightstream does
/// not enforce of the config (`enforcement.rs`).
pub fn describe_topic<K: Deref<Target = str>>(
    configs: &BTreeMap<String, String>,
    broker: &BrokerDefaults,
    keys: Option<&[K]>,
    include_synonyms: bool,
    include_documentation: bool,
) -> Vec<DescribeConfigsResourceResult> {
    topic_configs()
        .iter()
        .filter(|def| is_requested(keys, def.name))
        .map(|def| {
            let resolved = resolve_topic(def, configs, broker);
            entry(
                def.name,
                def.config_type,
                def.doc,
                resolved,
                false,
                include_synonyms,
                include_documentation,
            )
        })
        .collect()
}

/// DescribeConfigs for the BROKER resource naming this broker: one entry per
/// broker config Lightstream reports, sorted by name, filtered by `keys` as
/// in [`describe_topic`].
///
/// Every entry is `read_only` (Lightstream has no dynamic broker configs).
/// `value` is the broker's value when it differs from Kafka's default
/// (source STATIC_BROKER_CONFIG), else Kafka's default, which is null for
/// configs such as `log.retention.ms` whose default comes from another
/// spelling (source DEFAULT_CONFIG). Resolving the resource name (empty for
/// cluster defaults, another broker's id) is the handler's job.
pub fn describe_broker<K: Deref<Target = str>>(
    broker: &BrokerDefaults,
    keys: Option<&[K]>,
    include_synonyms: bool,
    include_documentation: bool,
) -> Vec<DescribeConfigsResourceResult> {
    broker_configs()
        .iter()
        .filter(|def| is_requested(keys, def.name))
        .map(|def| {
            let resolved = Resolved::new(def.reported_value(broker), synonym_chain(def, broker));
            entry(
                def.name,
                def.config_type,
                def.doc,
                resolved,
                true,
                include_synonyms,
                include_documentation,
            )
        })
        .collect()
}

/// CreateTopics v5+ `configs` of a created topic: every topic config, sorted
/// by name, with the same value and source as [`describe_topic`] reports.
pub fn create_topic_configs(
    configs: &BTreeMap<String, String>,
    broker: &BrokerDefaults,
) -> Vec<CreatableTopicConfigs> {
    topic_configs()
        .iter()
        .map(|def| {
            let resolved = resolve_topic(def, configs, broker);
            CreatableTopicConfigs::default()
                .with_name(StrBytes::from_static_str(def.name))
                .with_value(resolved.value.map(StrBytes::from_string))
                .with_read_only(false)
                .with_config_source(resolved.source.id())
                .with_is_sensitive(false)
        })
        .collect()
}

/// One reported synonym (the wire type is built only at the end).
#[derive(Debug)]
struct Synonym {
    name: &'static str,
    value: Option<String>,
    source: ConfigSource,
}

/// A config's reported value, source and synonyms.
struct Resolved {
    value: Option<String>,
    source: ConfigSource,
    synonyms: Vec<Synonym>,
}

impl Resolved {
    /// Kafka reports the source of the highest-ranked synonym, or
    /// DEFAULT_CONFIG when there is none.
    fn new(value: Option<String>, synonyms: Vec<Synonym>) -> Resolved {
        let source = synonyms
            .first()
            .map_or(ConfigSource::DefaultConfig, |syn| syn.source);
        Resolved {
            value,
            source,
            synonyms,
        }
    }
}

fn resolve_topic(
    def: &'static TopicConfigDef,
    configs: &BTreeMap<String, String>,
    broker: &BrokerDefaults,
) -> Resolved {
    let mut synonyms = Vec::new();
    if let Some(raw) = configs.get(def.name) {
        synonyms.push(Synonym {
            name: def.name,
            value: Some(def.canonical(raw)),
            source: ConfigSource::TopicConfig,
        });
    }
    if let Some(name) = def.broker_synonym {
        let broker_def = broker_config(name).expect("every topic synonym is in the broker table");
        synonyms.extend(synonym_chain(broker_def, broker));
    }
    Resolved::new(
        Some(def.canonical(&def.raw_value(configs, broker))),
        synonyms,
    )
}

/// Kafka's `ConfigHelper.configSynonyms` for a broker config: over all its
/// spellings, first those the broker sets (STATIC_BROKER_CONFIG), then those
/// with a non-null Kafka default (DEFAULT_CONFIG); then everything ranked
/// before the first entry named `def` itself is dropped.
///
/// That last step is Kafka's, odd as it is: `log.retention.ms` has a null
/// default, so unless the broker sets it, `retention.ms` lists no synonyms at
/// all, and `log.retention.hours=168` is not shown.
fn synonym_chain(def: &'static BrokerConfigDef, broker: &BrokerDefaults) -> Vec<Synonym> {
    let spellings = || {
        broker_synonyms(def)
            .iter()
            .map(|name| broker_config(name).expect("every synonym is in the broker table"))
    };
    let set = spellings().filter_map(|syn| {
        let value = syn.explicit_value(broker)?;
        Some(Synonym {
            name: syn.name,
            value: Some(value),
            source: ConfigSource::StaticBrokerConfig,
        })
    });
    let defaults = spellings().filter_map(|syn| {
        let value = syn.default?;
        Some(Synonym {
            name: syn.name,
            value: Some(value.to_owned()),
            source: ConfigSource::DefaultConfig,
        })
    });
    set.chain(defaults)
        .skip_while(|syn| syn.name != def.name)
        .collect()
}

fn is_requested<K: Deref<Target = str>>(keys: Option<&[K]>, name: &str) -> bool {
    match keys {
        None | Some([]) => true,
        Some(keys) => keys.iter().any(|key| &**key == name),
    }
}

fn entry(
    name: &'static str,
    config_type: ConfigType,
    doc: &'static str,
    resolved: Resolved,
    read_only: bool,
    include_synonyms: bool,
    include_documentation: bool,
) -> DescribeConfigsResourceResult {
    let synonyms = if include_synonyms {
        resolved
            .synonyms
            .into_iter()
            .map(|syn| {
                DescribeConfigsSynonym::default()
                    .with_name(StrBytes::from_static_str(syn.name))
                    .with_value(syn.value.map(StrBytes::from_string))
                    .with_source(syn.source.id())
            })
            .collect()
    } else {
        Vec::new()
    };
    DescribeConfigsResourceResult::default()
        .with_name(StrBytes::from_static_str(name))
        .with_value(resolved.value.map(StrBytes::from_string))
        .with_read_only(read_only)
        .with_config_source(resolved.source.id())
        .with_is_sensitive(false)
        .with_synonyms(synonyms)
        .with_config_type(config_type.id())
        .with_documentation(include_documentation.then(|| documentation(name, doc)))
}

/// Kafka's one-line doc, and what Lightstream does not enforce of it.
fn documentation(name: &str, doc: &'static str) -> StrBytes {
    match enforcement(name).note() {
        Some(note) => StrBytes::from_string(format!("{doc} {note}")),
        None => StrBytes::from_static_str(doc),
    }
}
