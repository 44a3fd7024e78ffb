//! DeleteRecords (v0–2, KIP-107): moves each partition's log start offset
//! forward on its leader, as `kafka-delete-records.sh` and the admin
//! clients' `delete_records` ask.
//!
//! Kafka's answers, per partition (`Partition.deleteRecordsOnLeader`):
//! `-1` means the high watermark; another negative offset, or one beyond
//! the high watermark, is OFFSET_OUT_OF_RANGE; a topic whose
//! `cleanup.policy` lacks `delete` is POLICY_VIOLATION; an offset at or
//! below the log start changes nothing. A success answers the log start
//! after the call as `low_watermark`; a failure answers `-1`.
//!
//! Kafka waits up to `timeout_ms` for followers to move their log starts
//! too; there are no followers here, and the move is durable when the
//! metadata store has it, so the answer never waits.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};
use metadata::TopicPartition;

use crate::broker::Broker;
use crate::errors;

/// DeleteRecordsRequest.HIGH_WATERMARK: delete everything produced so far.
const HIGH_WATERMARK: i64 = -1;

pub async fn handle(broker: &Broker, request: DeleteRecordsRequest) -> DeleteRecordsResponse {
    let mut topics = Vec::with_capacity(request.topics.len());
    for topic in request.topics {
        let view = broker.topics.by_name(topic.name.as_str());
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for p in topic.partitions {
            let answer = DeleteRecordsPartitionResult::default()
                .with_partition_index(p.partition_index)
                .with_low_watermark(-1);
            let error = |code: ResponseError| answer.clone().with_error_code(code.code());
            let view = match &view {
                Some(v) if (0..v.topic.partition_count).contains(&p.partition_index) => v,
                _ => {
                    partitions.push(error(ResponseError::UnknownTopicOrPartition));
                    continue;
                }
            };
            let tp = TopicPartition::new(view.topic.topic_id, p.partition_index);
            let Some((_, high_watermark, _)) = broker.log.offsets(&tp) else {
                partitions.push(error(ResponseError::NotLeaderOrFollower));
                continue;
            };
            if !view.settings.cleanup_policy_delete {
                partitions.push(error(ResponseError::PolicyViolation));
                continue;
            }
            let offset = match p.offset {
                HIGH_WATERMARK => high_watermark,
                o if o < 0 => {
                    partitions.push(error(ResponseError::OffsetOutOfRange));
                    continue;
                }
                o => o,
            };
            partitions.push(match broker.log.advance_log_start(tp, offset).await {
                Ok(log_start) => answer.with_low_watermark(log_start),
                Err(e) => error(errors::storage_error(&e)),
            });
        }
        topics.push(
            DeleteRecordsTopicResult::default()
                .with_name(topic.name)
                .with_partitions(partitions),
        );
    }
    DeleteRecordsResponse::default().with_topics(topics)
}
