//! DescribeLogDirs (v1–4): the sizes of the partitions this broker holds,
//! so that `kafka-log-dirs.sh` and the admin clients' `describe_log_dirs`
//! can size topics.
//!
//! A Lightstream broker has no log directories: every partition's batches
//! live in the one object store. Each broker answers one "log dir", named
//! after that store, holding the partitions it leads (so that asking every
//! broker counts each partition once). A partition's size is the bytes its
//! index references from the log start on; objects shared with other
//! partitions count only this partition's runs. `offset_lag` is 0 (no
//! future replica), and the volume's total and usable bytes are unknown
//! (-1, Kafka's UNKNOWN_VOLUME_BYTES).

use std::collections::BTreeMap;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::{DescribeLogDirsRequest, DescribeLogDirsResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use crate::broker::Broker;

/// Kafka's DescribeLogDirsResponse.UNKNOWN_VOLUME_BYTES.
const UNKNOWN_VOLUME_BYTES: i64 = -1;

pub async fn handle(broker: &Broker, request: DescribeLogDirsRequest) -> DescribeLogDirsResponse {
    // The partitions asked about that this broker leads, by topic name.
    let mut wanted: BTreeMap<String, Vec<metadata::TopicPartition>> = BTreeMap::new();
    let led = broker.log.led();
    match request.topics {
        None => {
            for (tp, _) in &led {
                if let Some(view) = broker.topics.by_id(tp.topic_id) {
                    wanted.entry(view.topic.name.clone()).or_default().push(*tp);
                }
            }
        }
        Some(topics) => {
            for topic in topics {
                let Some(view) = broker.topics.by_name(topic.topic.as_str()) else {
                    continue;
                };
                for partition in topic.partitions {
                    let tp = metadata::TopicPartition::new(view.topic.topic_id, partition);
                    if led.iter().any(|(l, _)| *l == tp) {
                        wanted.entry(view.topic.name.clone()).or_default().push(tp);
                    }
                }
            }
        }
    }
    let mut result = DescribeLogDirsResult::default()
        .with_log_dir(StrBytes::from_string(log_dir_name(broker)))
        .with_total_bytes(UNKNOWN_VOLUME_BYTES)
        .with_usable_bytes(UNKNOWN_VOLUME_BYTES);
    let mut topics = Vec::with_capacity(wanted.len());
    for (name, mut tps) in wanted {
        tps.sort_by_key(|tp| tp.partition);
        tps.dedup();
        let mut partitions = Vec::with_capacity(tps.len());
        for tp in tps {
            match broker.log.size_bytes(tp).await {
                Ok(size) => partitions.push(
                    DescribeLogDirsPartition::default()
                        .with_partition_index(tp.partition)
                        .with_partition_size(size)
                        .with_offset_lag(0)
                        .with_is_future_key(false),
                ),
                // Leadership moved meanwhile: its new leader answers for it.
                Err(storage::Error::NotLeader(_)) => {}
                Err(e) => {
                    tracing::warn!(error = %e, topic_partition = %tp, "DescribeLogDirs could not size a partition");
                    result = result.with_error_code(ResponseError::KafkaStorageError.code());
                }
            }
        }
        if !partitions.is_empty() {
            topics.push(
                DescribeLogDirsTopic::default()
                    .with_name(TopicName(StrBytes::from_string(name)))
                    .with_partitions(partitions),
            );
        }
    }
    DescribeLogDirsResponse::default().with_results(vec![result.with_topics(topics)])
}

/// The object store's name: `storage_url`, or the objects directory.
fn log_dir_name(broker: &Broker) -> String {
    let settings = &broker.settings;
    if settings.storage_url.is_empty() {
        settings.data_dir.join("objects").display().to_string()
    } else {
        settings.storage_url.clone()
    }
}
