//! OffsetCommit (v2–9): per partition, UNKNOWN_TOPIC_OR_PARTITION for
//! partitions that do not exist and OFFSET_METADATA_TOO_LARGE for metadata
//! over `offset.metadata.max.bytes`; the rest are checked against the group
//! (generation, member, state) and stored together, durable before the answer.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse};
use metadata::CommittedOffset;

use crate::broker::Broker;
use crate::errors;

/// From v9 a member commit to a group that does not exist is GROUP_ID_NOT_FOUND.
const FIRST_VERSION_WITH_GROUP_ID_NOT_FOUND: i16 = 9;

pub async fn handle(
    broker: &Arc<Broker>,
    version: i16,
    request: OffsetCommitRequest,
) -> OffsetCommitResponse {
    let max_metadata = broker.groups.config().offset_metadata_max_bytes;
    // (topic, partition, Some(code) if refused before the group is asked)
    let mut checked: Vec<(usize, i32, Option<ResponseError>)> = Vec::new();
    let mut offsets = Vec::new();
    for (t, topic) in request.topics.iter().enumerate() {
        let view = broker.topics.by_name(topic.name.as_str());
        for p in &topic.partitions {
            let exists = view
                .as_ref()
                .is_some_and(|v| (0..v.topic.partition_count).contains(&p.partition_index));
            let metadata = p
                .committed_metadata
                .as_ref()
                .map(|m| m.to_string())
                .unwrap_or_default();
            let refused = if !exists {
                Some(ResponseError::UnknownTopicOrPartition)
            } else if metadata.len() > max_metadata {
                Some(ResponseError::OffsetMetadataTooLarge)
            } else {
                offsets.push(CommittedOffset {
                    topic: topic.name.to_string(),
                    partition: p.partition_index,
                    offset: p.committed_offset,
                    leader_epoch: p.committed_leader_epoch,
                    metadata,
                    commit_timestamp_ms: 0,
                });
                None
            };
            checked.push((t, p.partition_index, refused));
        }
    }
    let group_result = if offsets.is_empty() {
        Ok(())
    } else {
        broker
            .groups
            .commit_offsets(
                request.group_id.as_str(),
                request.generation_id_or_member_epoch,
                request.member_id.as_str(),
                request.group_instance_id.as_ref().map(|s| s.as_str()),
                version >= FIRST_VERSION_WITH_GROUP_ID_NOT_FOUND,
                offsets,
            )
            .await
    };
    let group_code = group_result.err().map(|e| errors::group_error(&e));
    let mut topics: Vec<OffsetCommitResponseTopic> = request
        .topics
        .iter()
        .map(|t| OffsetCommitResponseTopic::default().with_name(t.name.clone()))
        .collect();
    for (t, partition, refused) in checked {
        let code = refused.or(group_code).map_or(0, |c| c.code());
        topics[t].partitions.push(
            OffsetCommitResponsePartition::default()
                .with_partition_index(partition)
                .with_error_code(code),
        );
    }
    OffsetCommitResponse::default().with_topics(topics)
}
