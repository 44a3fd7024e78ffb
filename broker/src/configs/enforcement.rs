//! Which of Kafka's configs Lightstream acts on, and what a user gets for
//! the others.
//!
//! Every topic and broker config in the tables is accepted, validated and
//! reported with Kafka's value, so that tools and clients that set them
//! (Kafka Streams sets `cleanup.policy=compact` and `segment.bytes`, Connect
//! sets `min.insync.replicas`) keep working. Refusing them would break those
//! clients; reporting them silently would mislead a user. So a config
//! Lightstream does not act on says so in its DescribeConfigs
//! `documentation` (sent when the client asks for it, as admin UIs do),
//! with the reason, and
//! `docs/configuration.md` lists the same notes (a test checks both agree).

/// How Lightstream treats one Kafka config.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Enforcement {
    /// Acted on as Kafka acts on it.
    Enforced,
    /// Part of it is acted on; the note says which part is not.
    Partly(&'static str),
    /// Not acted on yet; the note says what happens instead.
    NotBuilt(&'static str),
    /// Has nothing to act on here (no segment files, no replicas, no local
    /// disk); the note says why, and what gives the same guarantee.
    Moot(&'static str),
}

impl Enforcement {
    /// The sentence appended to the config's documentation, if any.
    pub fn note(self) -> Option<String> {
        match self {
            Enforcement::Enforced => None,
            Enforcement::Partly(why) => {
                Some(format!("Lightstream enforces this only in part: {why}"))
            }
            Enforcement::NotBuilt(why) => Some(format!("Not enforced by Lightstream yet: {why}")),
            Enforcement::Moot(why) => Some(format!("Has no effect on Lightstream: {why}")),
        }
    }
}

const COMPACTION: &str = "key compaction is not built; a compacted topic keeps every record.";
const COMPRESSION: &str =
    "batches are stored as the producer compressed them (as with compression.type=producer).";
const NO_SEGMENTS: &str = "the log has no segment files; each flush writes an object and the \
     index has one entry per partition run, which retention cuts between.";
const NO_FSYNC: &str =
    "a record is acknowledged only once the object holding it is in the object store.";
const NO_REPLICAS: &str = "partitions have no replicas; the object store keeps the copies, and \
     every acknowledged record is in it.";
const NO_TIERING: &str = "the whole log already lives in the object store (no tiered storage).";
const NO_FILES: &str =
    "objects nothing references are deleted by garbage collection after object_gc_grace_ms.";

/// Configs not acted on as Kafka would, by name (topic and broker tables
/// alike); every other config is [`Enforcement::Enforced`].
const NOT_ENFORCED: &[(&str, Enforcement)] = &[
    (
        "cleanup.policy",
        Enforcement::Partly(
            "\"delete\" drops records past retention.ms and retention.bytes; \"compact\" is not \
             built, so a compacted topic keeps every record (it refuses keyless records and \
             DeleteRecords, as Kafka's does).",
        ),
    ),
    ("compression.gzip.level", Enforcement::NotBuilt(COMPRESSION)),
    ("compression.lz4.level", Enforcement::NotBuilt(COMPRESSION)),
    ("compression.type", Enforcement::NotBuilt(COMPRESSION)),
    ("compression.zstd.level", Enforcement::NotBuilt(COMPRESSION)),
    ("default.replication.factor", Enforcement::Moot(NO_REPLICAS)),
    ("delete.retention.ms", Enforcement::NotBuilt(COMPACTION)),
    ("file.delete.delay.ms", Enforcement::Moot(NO_FILES)),
    ("flush.messages", Enforcement::Moot(NO_FSYNC)),
    ("flush.ms", Enforcement::Moot(NO_FSYNC)),
    (
        "follower.replication.throttled.replicas",
        Enforcement::Moot(NO_REPLICAS),
    ),
    ("index.interval.bytes", Enforcement::Moot(NO_SEGMENTS)),
    (
        "leader.replication.throttled.replicas",
        Enforcement::Moot(NO_REPLICAS),
    ),
    ("local.retention.bytes", Enforcement::Moot(NO_TIERING)),
    ("local.retention.ms", Enforcement::Moot(NO_TIERING)),
    (
        "log.cleaner.delete.retention.ms",
        Enforcement::NotBuilt(COMPACTION),
    ),
    (
        "log.cleaner.max.compaction.lag.ms",
        Enforcement::NotBuilt(COMPACTION),
    ),
    (
        "log.cleaner.min.cleanable.ratio",
        Enforcement::NotBuilt(COMPACTION),
    ),
    (
        "log.cleaner.min.compaction.lag.ms",
        Enforcement::NotBuilt(COMPACTION),
    ),
    ("log.flush.interval.messages", Enforcement::Moot(NO_FSYNC)),
    ("log.flush.interval.ms", Enforcement::Moot(NO_FSYNC)),
    (
        "log.flush.scheduler.interval.ms",
        Enforcement::Moot(NO_FSYNC),
    ),
    ("log.index.interval.bytes", Enforcement::Moot(NO_SEGMENTS)),
    ("log.index.size.max.bytes", Enforcement::Moot(NO_SEGMENTS)),
    ("log.local.retention.bytes", Enforcement::Moot(NO_TIERING)),
    ("log.local.retention.ms", Enforcement::Moot(NO_TIERING)),
    ("log.preallocate", Enforcement::Moot(NO_SEGMENTS)),
    ("log.roll.hours", Enforcement::Moot(NO_SEGMENTS)),
    ("log.roll.jitter.hours", Enforcement::Moot(NO_SEGMENTS)),
    ("log.roll.jitter.ms", Enforcement::Moot(NO_SEGMENTS)),
    ("log.roll.ms", Enforcement::Moot(NO_SEGMENTS)),
    ("log.segment.bytes", Enforcement::Moot(NO_SEGMENTS)),
    ("log.segment.delete.delay.ms", Enforcement::Moot(NO_FILES)),
    ("max.compaction.lag.ms", Enforcement::NotBuilt(COMPACTION)),
    (
        "min.cleanable.dirty.ratio",
        Enforcement::NotBuilt(COMPACTION),
    ),
    ("min.compaction.lag.ms", Enforcement::NotBuilt(COMPACTION)),
    ("min.insync.replicas", Enforcement::Moot(NO_REPLICAS)),
    ("preallocate", Enforcement::Moot(NO_SEGMENTS)),
    ("remote.log.copy.disable", Enforcement::Moot(NO_TIERING)),
    (
        "remote.log.delete.on.disable",
        Enforcement::Moot(NO_TIERING),
    ),
    ("remote.storage.enable", Enforcement::Moot(NO_TIERING)),
    ("segment.bytes", Enforcement::Moot(NO_SEGMENTS)),
    ("segment.index.bytes", Enforcement::Moot(NO_SEGMENTS)),
    ("segment.jitter.ms", Enforcement::Moot(NO_SEGMENTS)),
    ("segment.ms", Enforcement::Moot(NO_SEGMENTS)),
    (
        "unclean.leader.election.enable",
        Enforcement::Moot(NO_REPLICAS),
    ),
];

/// How Lightstream treats the config `name`.
pub fn enforcement(name: &str) -> Enforcement {
    NOT_ENFORCED
        .binary_search_by(|(n, _)| n.cmp(&name))
        .map_or(Enforcement::Enforced, |at| NOT_ENFORCED[at].1)
}

/// Every config with a note, sorted by name (for the docs check).
#[cfg(test)]
pub fn not_enforced() -> &'static [(&'static str, Enforcement)] {
    NOT_ENFORCED
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use kafka_protocol::protocol::StrBytes;

    use super::super::broker::{BrokerDefaults, broker_config};
    use super::super::topic::topic_config;
    use super::super::{describe_broker, describe_topic};
    use super::*;

    const ALL: Option<&[String]> = None;

    #[test]
    fn notes_are_sorted_and_name_configs_of_the_tables() {
        let names: Vec<&str> = not_enforced().iter().map(|(n, _)| *n).collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(names, sorted, "NOT_ENFORCED must be sorted (binary search)");
        for name in names {
            assert!(
                topic_config(name).is_some() || broker_config(name).is_some(),
                "{name} is in neither config table"
            );
            assert_ne!(enforcement(name), Enforcement::Enforced);
        }
        assert_eq!(enforcement("retention.ms"), Enforcement::Enforced);
        assert_eq!(enforcement("log.retention.hours"), Enforcement::Enforced);
    }

    #[test]
    fn describe_configs_documentation_carries_the_note() {
        let doc = |entries: &[kafka_protocol::messages::describe_configs_response::DescribeConfigsResourceResult],
                   name: &str| {
            entries
                .iter()
                .find(|e| e.name.as_str() == name)
                .and_then(|e| e.documentation.as_ref().map(StrBytes::as_str).map(str::to_owned))
                .unwrap_or_else(|| panic!("{name} has documentation"))
        };
        let topic = describe_topic(
            &BTreeMap::new(),
            &BrokerDefaults::default(),
            ALL,
            false,
            true,
        );
        let segment = doc(&topic, "segment.bytes");
        assert!(segment.starts_with(topic_config("segment.bytes").unwrap().doc));
        assert!(segment.contains("Has no effect on Lightstream: the log has no segment files"));
        assert!(doc(&topic, "min.compaction.lag.ms").contains("Not enforced by Lightstream yet"));
        assert!(doc(&topic, "cleanup.policy").contains("enforces this only in part"));
        assert!(!doc(&topic, "retention.bytes").contains("Lightstream"));
        let broker = describe_broker(&BrokerDefaults::default(), ALL, false, true);
        assert!(doc(&broker, "log.roll.ms").contains("Has no effect on Lightstream"));
        assert!(!doc(&broker, "log.retention.hours").contains("Lightstream"));
    }

    /// docs/configuration.md lists every config with a note, with the note.
    #[test]
    fn every_note_is_in_the_configuration_doc() {
        let doc = include_str!("../../../docs/configuration.md");
        for (name, how) in not_enforced() {
            let row = doc
                .lines()
                .find(|line| line.starts_with(&format!("| `{name}` |")))
                .unwrap_or_else(|| panic!("docs/configuration.md has no row for {name}"));
            let note = how.note().expect("a note");
            assert!(
                row.contains(&note),
                "the row for {name} lacks: {note}\n{row}"
            );
        }
    }
}
