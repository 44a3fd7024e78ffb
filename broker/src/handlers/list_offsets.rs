//! ListOffsets: the earliest (-2), latest (-1) and max-timestamp (-3, v7+)
//! offsets of a partition, and lookup by time: the first record whose
//! timestamp is at or after the one asked (offset and timestamp -1 when none).
//!
//! Without transactions the last stable offset is the high watermark, so
//! read_committed consumers get the same answer to -1.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};
use metadata::TopicPartition;
use storage::OffsetSpec;

use crate::broker::Broker;
use crate::errors;

/// Kafka's special timestamps (`ListOffsetsRequest`).
const LATEST_TIMESTAMP: i64 = -1;
const EARLIEST_TIMESTAMP: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
/// KIP-405: with no tiered storage, the local log start is the log start.
const EARLIEST_LOCAL_TIMESTAMP: i64 = -4;
/// KIP-1005: with no tiered storage, nothing is tiered.
const LATEST_TIERED_TIMESTAMP: i64 = -5;
/// ListOffsets v4 added `leader_epoch` to the answer.
const FIRST_VERSION_WITH_LEADER_EPOCH: i16 = 4;

pub async fn handle(
    broker: &Broker,
    version: i16,
    request: ListOffsetsRequest,
) -> ListOffsetsResponse {
    let mut topics = Vec::with_capacity(request.topics.len());
    for topic in request.topics {
        let view = broker.topics.by_name(topic.name.as_str());
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for p in topic.partitions {
            let base = ListOffsetsPartitionResponse::default()
                .with_partition_index(p.partition_index)
                .with_timestamp(-1)
                .with_offset(-1)
                .with_leader_epoch(-1);
            let tp = match &view {
                Some(v) if (0..v.topic.partition_count).contains(&p.partition_index) => {
                    TopicPartition::new(v.topic.topic_id, p.partition_index)
                }
                _ => {
                    partitions
                        .push(base.with_error_code(ResponseError::UnknownTopicOrPartition.code()));
                    continue;
                }
            };
            let spec = match p.timestamp {
                LATEST_TIMESTAMP => OffsetSpec::Latest,
                EARLIEST_TIMESTAMP | EARLIEST_LOCAL_TIMESTAMP => OffsetSpec::Earliest,
                MAX_TIMESTAMP => OffsetSpec::MaxTimestamp,
                LATEST_TIERED_TIMESTAMP => {
                    partitions.push(base);
                    continue;
                }
                t if t < 0 => {
                    partitions.push(base.with_error_code(ResponseError::InvalidRequest.code()));
                    continue;
                }
                t => OffsetSpec::Timestamp(t),
            };
            // The field exists from v4; the codec refuses a set value before.
            let leader_epoch = match broker.log.offsets(&tp) {
                Some((_, _, epoch)) if version >= FIRST_VERSION_WITH_LEADER_EPOCH => epoch,
                _ => -1,
            };
            partitions.push(match broker.log.list_offset(tp, spec).await {
                Ok(found) => base
                    .with_offset(found.offset)
                    .with_timestamp(found.timestamp)
                    .with_leader_epoch(if found.offset >= 0 { leader_epoch } else { -1 }),
                Err(e) => base.with_error_code(errors::storage_error(&e).code()),
            });
        }
        topics.push(
            ListOffsetsTopicResponse::default()
                .with_name(topic.name)
                .with_partitions(partitions),
        );
    }
    ListOffsetsResponse::default().with_topics(topics)
}
