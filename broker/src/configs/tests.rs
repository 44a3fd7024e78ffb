//! Tests of the config semantics: the tables, validators with Kafka's
//! messages, DescribeConfigs / CreateTopics entries, alter merges and the
//! typed settings.

use std::collections::BTreeMap;

use kafka_protocol::messages::describe_configs_response::DescribeConfigsResourceResult;
use kafka_protocol::protocol::{Encodable, StrBytes};

use super::broker::{broker_config, broker_configs, broker_synonyms};
use super::*;

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn invalid(message: &str) -> Result<(), ConfigError> {
    Err(ConfigError::Invalid(message.to_owned()))
}

fn broker() -> BrokerDefaults {
    BrokerDefaults {
        node_id: 1,
        ..BrokerDefaults::default()
    }
}

const ALL: Option<&[String]> = None;

fn find<'a>(
    entries: &'a [DescribeConfigsResourceResult],
    name: &str,
) -> &'a DescribeConfigsResourceResult {
    entries
        .iter()
        .find(|entry| entry.name.as_str() == name)
        .unwrap_or_else(|| panic!("{name} is described"))
}

fn value(entry: &DescribeConfigsResourceResult) -> Option<&str> {
    entry.value.as_ref().map(StrBytes::as_str)
}

/// `(name, value, source)` of each synonym.
fn synonyms(entry: &DescribeConfigsResourceResult) -> Vec<(&str, Option<&str>, i8)> {
    entry
        .synonyms
        .iter()
        .map(|syn| {
            (
                syn.name.as_str(),
                syn.value.as_ref().map(StrBytes::as_str),
                syn.source,
            )
        })
        .collect()
}

const TOPIC: i8 = ConfigSource::TopicConfig as i8;
const STATIC: i8 = ConfigSource::StaticBrokerConfig as i8;
const DEFAULT: i8 = ConfigSource::DefaultConfig as i8;

// ---- the tables ----

#[test]
fn tables_are_sorted_and_unique_so_lookups_work() {
    let topic: Vec<&str> = topic_configs().iter().map(|def| def.name).collect();
    assert!(topic.windows(2).all(|w| w[0] < w[1]), "{topic:?}");
    let broker: Vec<&str> = broker_configs().iter().map(|def| def.name).collect();
    assert!(broker.windows(2).all(|w| w[0] < w[1]), "{broker:?}");
    assert_eq!(topic.len(), 33);
}

#[test]
fn every_topic_default_passes_its_own_validator() {
    for def in topic_configs() {
        if def.name == "remote.storage.enable" {
            assert_eq!(def.default, "false");
        }
        def.parse(def.default)
            .unwrap_or_else(|e| panic!("{} default: {e}", def.name));
        assert!(!def.doc.is_empty());
    }
}

#[test]
fn every_synonym_is_in_the_broker_table_with_the_same_type_family() {
    for def in topic_configs() {
        let Some(name) = def.broker_synonym else {
            continue;
        };
        let broker_def = broker_config(name).unwrap_or_else(|| panic!("{name} missing"));
        for spelling in broker_synonyms(broker_def) {
            assert!(broker_config(spelling).is_some(), "{spelling} missing");
        }
        if broker_synonyms(broker_def).len() == 1 {
            assert_eq!(broker_def.config_type, def.config_type, "{name}");
            assert_eq!(broker_def.default, Some(def.default), "{name}");
        }
    }
}

#[test]
fn removed_kafka_3_configs_are_unknown() {
    for name in [
        "message.downconversion.enable",
        "message.format.version",
        "message.timestamp.difference.max.ms",
    ] {
        assert_eq!(
            validate_topic_config(name, "true"),
            Err(ConfigError::Unknown(name.to_owned()))
        );
    }
    assert_eq!(
        ConfigError::Unknown("foo".into()).to_string(),
        "Unknown topic config name: foo"
    );
}

#[test]
fn default_broker_passes_validation_and_bad_values_name_the_broker_config() {
    assert_eq!(broker().validate(), Ok(()));
    let bad = BrokerDefaults {
        compression_type: "brotli".into(),
        ..broker()
    };
    assert_eq!(
        bad.validate(),
        invalid(
            "Invalid value brotli for configuration compression.type: String must be one of: \
             uncompressed, zstd, lz4, snappy, gzip, producer"
        )
    );
    let bad = BrokerDefaults {
        log_segment_bytes: 1024,
        ..broker()
    };
    assert_eq!(
        bad.validate(),
        invalid(
            "Invalid value 1024 for configuration log.segment.bytes: Value must be at least 1048576"
        )
    );
}

// ---- validators ----

#[test]
fn numeric_ranges_accept_bounds_and_reject_with_kafkas_message() {
    let ok = [
        ("max.message.bytes", "0"),
        ("retention.ms", "-1"),
        ("retention.ms", " 86400000 "),
        ("retention.bytes", "-5"),
        ("segment.bytes", "1048576"),
        ("min.insync.replicas", "1"),
        ("min.cleanable.dirty.ratio", "0"),
        ("min.cleanable.dirty.ratio", "1"),
        ("local.retention.ms", "-2"),
        ("compression.zstd.level", "-131072"),
        ("compression.lz4.level", "17"),
    ];
    for (name, value) in ok {
        assert_eq!(validate_topic_config(name, value), Ok(()), "{name}={value}");
    }
    let rejected = [
        (
            "max.message.bytes",
            "-1",
            "Invalid value -1 for configuration max.message.bytes: Value must be at least 0",
        ),
        (
            "retention.ms",
            "-2",
            "Invalid value -2 for configuration retention.ms: Value must be at least -1",
        ),
        (
            "segment.bytes",
            "1048575",
            "Invalid value 1048575 for configuration segment.bytes: Value must be at least 1048576",
        ),
        (
            "min.insync.replicas",
            "0",
            "Invalid value 0 for configuration min.insync.replicas: Value must be at least 1",
        ),
        (
            "min.cleanable.dirty.ratio",
            "1.5",
            "Invalid value 1.5 for configuration min.cleanable.dirty.ratio: Value must be no more than 1",
        ),
        (
            "min.cleanable.dirty.ratio",
            "2",
            "Invalid value 2.0 for configuration min.cleanable.dirty.ratio: Value must be no more than 1",
        ),
        (
            "compression.lz4.level",
            "18",
            "Invalid value 18 for configuration compression.lz4.level: Value must be no more than 17",
        ),
    ];
    for (name, value, message) in rejected {
        assert_eq!(
            validate_topic_config(name, value),
            invalid(message),
            "{name}={value}"
        );
    }
}

#[test]
fn values_that_do_not_parse_name_their_type() {
    assert_eq!(
        validate_topic_config("retention.ms", "7d"),
        invalid("Invalid value 7d for configuration retention.ms: Not a number of type LONG")
    );
    assert_eq!(
        validate_topic_config("max.message.bytes", "3000000000"),
        invalid(
            "Invalid value 3000000000 for configuration max.message.bytes: Not a number of type INT"
        )
    );
    assert_eq!(
        validate_topic_config("min.cleanable.dirty.ratio", "half"),
        invalid(
            "Invalid value half for configuration min.cleanable.dirty.ratio: Not a number of type DOUBLE"
        )
    );
    assert_eq!(validate_topic_config("preallocate", "TRUE"), Ok(()));
    assert_eq!(
        validate_topic_config("preallocate", "yes"),
        invalid(
            "Invalid value yes for configuration preallocate: Expected value to be either true or false"
        )
    );
}

#[test]
fn enumerated_strings_are_case_sensitive() {
    assert_eq!(validate_topic_config("compression.type", "zstd"), Ok(()));
    assert_eq!(
        validate_topic_config("compression.type", "brotli"),
        invalid(
            "Invalid value brotli for configuration compression.type: String must be one of: \
             uncompressed, zstd, lz4, snappy, gzip, producer"
        )
    );
    assert_eq!(
        validate_topic_config("message.timestamp.type", "LogAppendTime"),
        Ok(())
    );
    assert_eq!(
        validate_topic_config("message.timestamp.type", "createtime"),
        invalid(
            "Invalid value createtime for configuration message.timestamp.type: String must be \
             one of: CreateTime, LogAppendTime"
        )
    );
}

#[test]
fn cleanup_policy_is_a_list_of_delete_and_compact() {
    for value in [
        "delete",
        "compact",
        "compact,delete",
        " delete , compact ",
        "",
    ] {
        assert_eq!(
            validate_topic_config("cleanup.policy", value),
            Ok(()),
            "{value:?}"
        );
    }
    assert_eq!(
        validate_topic_config("cleanup.policy", "delete,forever"),
        invalid(
            "Invalid value forever for configuration cleanup.policy: String must be one of: compact, delete"
        )
    );
    assert_eq!(
        validate_topic_config("cleanup.policy", "delete,"),
        invalid(
            "Invalid value  for configuration cleanup.policy: String must be one of: compact, delete"
        )
    );
}

#[test]
fn throttled_replicas_take_star_or_partition_broker_pairs() {
    let name = "leader.replication.throttled.replicas";
    for value in ["*", "", "0:1", "0:1, 1:2"] {
        assert_eq!(validate_topic_config(name, value), Ok(()), "{value:?}");
    }
    assert_eq!(
        validate_topic_config(name, "0:1,x"),
        invalid(
            "Invalid value [0:1, x] for configuration leader.replication.throttled.replicas: \
             leader.replication.throttled.replicas must be the literal '*' or a list of replicas \
             in the following format: [partitionId]:[brokerId],[partitionId]:[brokerId],..."
        )
    );
}

#[test]
fn gzip_level_is_one_to_nine_or_minus_one() {
    for value in ["-1", "1", "9"] {
        assert_eq!(
            validate_topic_config("compression.gzip.level", value),
            Ok(())
        );
    }
    for value in ["0", "10", "-2"] {
        assert_eq!(
            validate_topic_config("compression.gzip.level", value),
            invalid(&format!(
                "Invalid value {value} for configuration compression.gzip.level: Value must be \
                 between 1 and 9 or equal to -1"
            ))
        );
    }
}

#[test]
fn remote_storage_cannot_be_enabled() {
    assert_eq!(
        validate_topic_config("remote.storage.enable", "false"),
        Ok(())
    );
    assert_eq!(
        validate_topic_config("remote.storage.enable", "true"),
        invalid(
            "Tiered Storage functionality is disabled in the broker. Topic cannot be configured \
             with remote log storage."
        )
    );
}

#[test]
fn a_set_is_checked_for_unknown_names_first_then_values_then_compaction_lags() {
    let configs = map(&[("retention.ms", "-5"), ("zzz", "1")]);
    assert_eq!(
        validate_topic_configs(&configs),
        Err(ConfigError::Unknown("zzz".into()))
    );
    let configs = map(&[
        ("min.compaction.lag.ms", "10"),
        ("max.compaction.lag.ms", "5"),
    ]);
    assert_eq!(
        validate_topic_configs(&configs),
        invalid(
            "conflict topic config setting min.compaction.lag.ms (10) > max.compaction.lag.ms (5)"
        )
    );
    assert_eq!(
        validate_topic_configs(&map(&[("min.compaction.lag.ms", "10")])),
        Ok(())
    );
}

// ---- DescribeConfigs for a topic ----

#[test]
fn describe_topic_reports_every_config_by_name_with_defaults() {
    let entries = describe_topic(&BTreeMap::new(), &broker(), ALL, false, false);
    assert_eq!(entries.len(), topic_configs().len());
    let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
    assert!(names.windows(2).all(|w| w[0] < w[1]));
    for entry in &entries {
        assert_eq!(entry.config_source, DEFAULT, "{}", entry.name);
        assert!(!entry.read_only && !entry.is_sensitive);
        assert!(entry.synonyms.is_empty());
        assert_eq!(entry.documentation, None);
    }
    let retention = find(&entries, "retention.ms");
    assert_eq!(value(retention), Some("604800000"));
    assert_eq!(retention.config_type, ConfigType::Long.id());
    assert_eq!(value(find(&entries, "cleanup.policy")), Some("delete"));
    assert_eq!(find(&entries, "cleanup.policy").config_type, 7);
    assert_eq!(
        value(find(&entries, "leader.replication.throttled.replicas")),
        Some("")
    );
    assert_eq!(
        value(find(&entries, "message.timestamp.after.max.ms")),
        Some("3600000")
    );
}

#[test]
fn topic_override_is_source_topic_config_and_first_synonym() {
    let configs = map(&[("max.message.bytes", "2000000"), ("preallocate", "TRUE")]);
    let broker = BrokerDefaults {
        message_max_bytes: 3_000_000,
        ..broker()
    };
    let entries = describe_topic(&configs, &broker, ALL, true, false);
    let max = find(&entries, "max.message.bytes");
    assert_eq!(value(max), Some("2000000"));
    assert_eq!(max.config_source, TOPIC);
    assert_eq!(
        synonyms(max),
        vec![
            ("max.message.bytes", Some("2000000"), TOPIC),
            ("message.max.bytes", Some("3000000"), STATIC),
            ("message.max.bytes", Some("1048588"), DEFAULT),
        ]
    );
    // Kafka re-prints the parsed value.
    assert_eq!(value(find(&entries, "preallocate")), Some("true"));
}

#[test]
fn broker_value_that_differs_from_kafkas_default_is_static_broker_config() {
    let broker = BrokerDefaults {
        log_cleanup_policy: "compact".into(),
        ..broker()
    };
    let entries = describe_topic(&BTreeMap::new(), &broker, ALL, true, false);
    let policy = find(&entries, "cleanup.policy");
    assert_eq!(value(policy), Some("compact"));
    assert_eq!(policy.config_source, STATIC);
    assert_eq!(
        synonyms(policy),
        vec![
            ("log.cleanup.policy", Some("compact"), STATIC),
            ("log.cleanup.policy", Some("delete"), DEFAULT),
        ]
    );
    let compression = find(&entries, "compression.type");
    assert_eq!(compression.config_source, DEFAULT);
    assert_eq!(
        synonyms(compression),
        vec![("compression.type", Some("producer"), DEFAULT)]
    );
    // No broker synonym at all: nothing to list.
    assert!(find(&entries, "remote.storage.enable").synonyms.is_empty());
}

#[test]
fn retention_ms_lists_synonyms_in_kafkas_order_and_drops_them_while_log_retention_ms_is_unset() {
    // Kafka's quirk: log.retention.ms has a null default, so it ranks nowhere
    // and everything before it (log.retention.hours=168) is dropped.
    let entries = describe_topic(&BTreeMap::new(), &broker(), ALL, true, false);
    let retention = find(&entries, "retention.ms");
    assert!(retention.synonyms.is_empty());
    assert_eq!(retention.config_source, DEFAULT);
    assert!(find(&entries, "segment.ms").synonyms.is_empty());
    assert!(find(&entries, "flush.ms").synonyms.is_empty());

    let broker = BrokerDefaults {
        log_retention_ms: 3_600_000,
        ..broker()
    };
    let configs = map(&[("retention.ms", "60000")]);
    let entries = describe_topic(&configs, &broker, ALL, true, false);
    assert_eq!(
        synonyms(find(&entries, "retention.ms")),
        vec![
            ("retention.ms", Some("60000"), TOPIC),
            ("log.retention.ms", Some("3600000"), STATIC),
            ("log.retention.hours", Some("168"), DEFAULT),
        ]
    );
    let entries = describe_topic(&BTreeMap::new(), &broker, ALL, false, false);
    let retention = find(&entries, "retention.ms");
    assert_eq!(value(retention), Some("3600000"));
    assert_eq!(retention.config_source, STATIC);
}

#[test]
fn describe_with_keys_returns_only_known_requested_configs() {
    let keys = [
        "retention.ms".to_owned(),
        "no.such.config".to_owned(),
        "cleanup.policy".to_owned(),
    ];
    let entries = describe_topic(&BTreeMap::new(), &broker(), Some(&keys[..]), false, false);
    let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["cleanup.policy", "retention.ms"]);

    // The request's own StrBytes keys work without copying.
    let keys = [StrBytes::from_static_str("segment.ms")];
    assert_eq!(
        describe_topic(&BTreeMap::new(), &broker(), Some(&keys[..]), false, false).len(),
        1
    );

    // An empty list means all, as in Kafka.
    let none: [String; 0] = [];
    let entries = describe_topic(&BTreeMap::new(), &broker(), Some(&none[..]), false, false);
    assert_eq!(entries.len(), topic_configs().len());

    // Same filter for the broker; a topic config name is not a broker config.
    let keys = ["num.partitions", "retention.ms"];
    let entries = describe_broker(&broker(), Some(&keys[..]), false, false);
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].name.as_str(), "num.partitions");
}

#[test]
fn documentation_only_when_asked() {
    let entries = describe_topic(&BTreeMap::new(), &broker(), ALL, false, true);
    let doc = find(&entries, "retention.ms")
        .documentation
        .as_ref()
        .map(StrBytes::as_str);
    assert_eq!(doc, Some(topic_config("retention.ms").unwrap().doc));
}

#[test]
fn describe_entries_encode_at_every_version() {
    let configs = map(&[("retention.ms", "1000")]);
    let entries = describe_topic(&configs, &broker(), ALL, true, true);
    let entries = entries
        .into_iter()
        .chain(describe_broker(&broker(), ALL, true, true));
    for entry in entries {
        for version in 1..=4 {
            let mut buf = Vec::new();
            entry
                .encode(&mut buf, version)
                .unwrap_or_else(|e| panic!("{} v{version}: {e}", entry.name));
        }
    }
}

// ---- DescribeConfigs for the broker, CreateTopics ----

#[test]
fn describe_broker_is_read_only_and_static_only_where_set() {
    let broker = BrokerDefaults {
        message_max_bytes: 2_000_000,
        advertised_listeners: Some("PLAINTEXT://broker-1:9092".into()),
        ..broker()
    };
    let entries = describe_broker(&broker, ALL, true, false);
    assert!(entries.iter().all(|e| e.read_only && !e.is_sensitive));

    let node = find(&entries, "node.id");
    assert_eq!((value(node), node.config_source), (Some("1"), STATIC));
    assert_eq!(value(find(&entries, "broker.id")), Some("1"));

    let max = find(&entries, "message.max.bytes");
    assert_eq!(max.config_source, STATIC);
    assert_eq!(
        synonyms(max),
        vec![
            ("message.max.bytes", Some("2000000"), STATIC),
            ("message.max.bytes", Some("1048588"), DEFAULT),
        ]
    );

    let partitions = find(&entries, "num.partitions");
    assert_eq!(
        (value(partitions), partitions.config_source),
        (Some("1"), DEFAULT)
    );
    assert_eq!(
        value(find(&entries, "default.replication.factor")),
        Some("1")
    );
    assert_eq!(
        value(find(&entries, "advertised.listeners")),
        Some("PLAINTEXT://broker-1:9092")
    );
    assert_eq!(find(&entries, "advertised.listeners").config_source, STATIC);

    // Kafka reports log.retention.ms as null until it is set; the hours
    // spelling carries the default.
    let retention = find(&entries, "log.retention.ms");
    assert_eq!((value(retention), retention.config_source), (None, DEFAULT));
    assert!(retention.synonyms.is_empty());
    let hours = find(&entries, "log.retention.hours");
    assert_eq!(
        synonyms(hours),
        vec![("log.retention.hours", Some("168"), DEFAULT)]
    );
}

#[test]
fn create_topic_configs_report_every_config_sorted_with_sources() {
    let broker = BrokerDefaults {
        log_segment_bytes: 536_870_912,
        ..broker()
    };
    let configs = map(&[("cleanup.policy", "compact")]);
    let entries = create_topic_configs(&configs, &broker);
    assert_eq!(entries.len(), topic_configs().len());
    let get = |name: &str| {
        let entry = entries.iter().find(|e| e.name.as_str() == name).unwrap();
        (
            entry.value.as_ref().map(StrBytes::as_str),
            entry.config_source,
        )
    };
    assert_eq!(get("cleanup.policy"), (Some("compact"), TOPIC));
    assert_eq!(get("segment.bytes"), (Some("536870912"), STATIC));
    assert_eq!(get("retention.ms"), (Some("604800000"), DEFAULT));
}

// ---- AlterConfigs ----

#[test]
fn alter_configs_replaces_the_whole_set() {
    let new = vec![
        ("retention.ms".to_owned(), Some("1000".to_owned())),
        ("segment.ms".to_owned(), None),
    ];
    assert_eq!(
        apply_alter_configs(new),
        Ok(map(&[("retention.ms", "1000")]))
    );
    assert_eq!(apply_alter_configs(Vec::new()), Ok(BTreeMap::new()));
    assert_eq!(
        apply_alter_configs([("bogus".to_owned(), Some("1".to_owned()))]),
        Err(ConfigError::Unknown("bogus".into()))
    );
    assert_eq!(
        apply_alter_configs([("retention.ms".to_owned(), Some("-3".to_owned()))]),
        invalid("Invalid value -3 for configuration retention.ms: Value must be at least -1")
            .map(|()| BTreeMap::new())
    );
}

fn op(name: &str, op: i8, value: Option<&str>) -> (String, i8, Option<String>) {
    (name.to_owned(), op, value.map(str::to_owned))
}

#[test]
fn incremental_append_to_unset_cleanup_policy_starts_from_kafkas_default() {
    let next = apply_incremental_alter(
        &BTreeMap::new(),
        &[op("cleanup.policy", OP_APPEND, Some("compact"))],
    );
    assert_eq!(next, Ok(map(&[("cleanup.policy", "delete,compact")])));

    let current = map(&[("cleanup.policy", "compact")]);
    let next = apply_incremental_alter(
        &current,
        &[op("cleanup.policy", OP_APPEND, Some("compact,delete"))],
    );
    assert_eq!(next, Ok(map(&[("cleanup.policy", "compact,delete")])));
}

#[test]
fn incremental_subtract_removes_items() {
    let current = map(&[("cleanup.policy", "delete,compact")]);
    let next = apply_incremental_alter(
        &current,
        &[op("cleanup.policy", OP_SUBTRACT, Some("delete"))],
    );
    assert_eq!(next, Ok(map(&[("cleanup.policy", "compact")])));

    let current = map(&[("leader.replication.throttled.replicas", "0:1,1:1")]);
    let next = apply_incremental_alter(
        &current,
        &[op(
            "leader.replication.throttled.replicas",
            OP_SUBTRACT,
            Some("0:1,1:1"),
        )],
    );
    assert_eq!(
        next,
        Ok(map(&[("leader.replication.throttled.replicas", "")]))
    );
}

#[test]
fn incremental_append_or_subtract_on_a_non_list_is_invalid_config() {
    let next = apply_incremental_alter(
        &BTreeMap::new(),
        &[op("retention.ms", OP_APPEND, Some("1"))],
    );
    assert_eq!(
        next,
        Err(ConfigError::Invalid(
            "Can't APPEND to key retention.ms because its type is not LIST.".into()
        ))
    );
    let next = apply_incremental_alter(&BTreeMap::new(), &[op("no.such", OP_SUBTRACT, Some("1"))]);
    assert_eq!(
        next,
        Err(ConfigError::Invalid(
            "Can't SUBTRACT to key no.such because its type is not LIST.".into()
        ))
    );
}

#[test]
fn incremental_set_and_delete() {
    let current = map(&[("retention.ms", "1000"), ("segment.ms", "5000")]);
    let next = apply_incremental_alter(
        &current,
        &[
            op("retention.ms", OP_SET, Some("2000")),
            op("segment.ms", OP_DELETE, None),
            op("flush.ms", OP_DELETE, None),
            op("preallocate", OP_SET, None),
        ],
    );
    assert_eq!(next, Ok(map(&[("retention.ms", "2000")])));

    let next = apply_incremental_alter(&current, &[op("retention.ms", OP_SET, Some("soon"))]);
    assert_eq!(
        next,
        Err(ConfigError::Invalid(
            "Invalid value soon for configuration retention.ms: Not a number of type LONG".into()
        ))
    );
    let next = apply_incremental_alter(&current, &[op("bogus", OP_SET, Some("1"))]);
    assert_eq!(next, Err(ConfigError::Unknown("bogus".into())));
}

#[test]
fn incremental_duplicate_keys_and_unknown_ops_are_invalid_requests() {
    let next = apply_incremental_alter(
        &BTreeMap::new(),
        &[
            op("retention.ms", OP_SET, Some("1")),
            op("retention.ms", OP_DELETE, None),
        ],
    );
    assert_eq!(
        next,
        Err(ConfigError::InvalidRequest(
            "Error due to duplicate config keys".into()
        ))
    );
    let next = apply_incremental_alter(&BTreeMap::new(), &[op("retention.ms", 9, Some("1"))]);
    assert_eq!(
        next,
        Err(ConfigError::InvalidRequest(
            "Unknown operations type 9".into()
        ))
    );
}

// ---- TopicSettings ----

#[test]
fn settings_default_to_kafkas_values() {
    let settings =
        TopicSettings::from_configs(&BTreeMap::new(), &BrokerDefaults::default()).unwrap();
    assert!(settings.cleanup_policy_delete && !settings.cleanup_policy_compact);
    assert_eq!(settings.compression_type, CompressionType::Producer);
    assert_eq!(settings.message_timestamp_type, TimestampType::CreateTime);
    assert_eq!(settings.max_message_bytes, 1_048_588);
    assert_eq!(settings.retention_ms, 604_800_000);
    assert_eq!(settings.retention_bytes, -1);
    assert_eq!(settings.segment_bytes, 1_073_741_824);
    assert_eq!(settings.segment_ms, 604_800_000);
    assert_eq!(settings.message_timestamp_after_max_ms, 3_600_000);
    assert_eq!(settings.message_timestamp_before_max_ms, i64::MAX);
    assert_eq!(settings.min_cleanable_dirty_ratio, 0.5);
    assert_eq!(settings.compression_gzip_level, -1);
    assert_eq!(settings.min_insync_replicas, 1);
}

#[test]
fn settings_take_topic_override_then_broker_value() {
    let broker = BrokerDefaults {
        log_retention_ms: 1_000,
        message_max_bytes: 2_000_000,
        compression_type: "zstd".into(),
        ..broker()
    };
    let configs = map(&[
        ("retention.ms", "-1"),
        ("cleanup.policy", "compact,delete"),
        ("message.timestamp.type", "LogAppendTime"),
        ("unknown.legacy.key", "ignored"),
    ]);
    let settings = TopicSettings::from_configs(&configs, &broker).unwrap();
    assert_eq!(settings.retention_ms, -1);
    assert_eq!(settings.max_message_bytes, 2_000_000);
    assert_eq!(settings.compression_type, CompressionType::Zstd);
    assert!(settings.cleanup_policy_compact && settings.cleanup_policy_delete);
    assert_eq!(
        settings.message_timestamp_type,
        TimestampType::LogAppendTime
    );
}

#[test]
fn settings_refuse_a_stored_value_that_is_invalid() {
    let configs = map(&[("segment.bytes", "100")]);
    assert_eq!(
        TopicSettings::from_configs(&configs, &broker()),
        Err(ConfigError::Invalid(
            "Invalid value 100 for configuration segment.bytes: Value must be at least 1048576"
                .into()
        ))
    );
}
