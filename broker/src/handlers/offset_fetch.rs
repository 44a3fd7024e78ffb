//! OffsetFetch (v1–9): one group up to v7, a batch of groups from v8. A
//! partition without a committed offset answers -1 (no error); null topics
//! ask for every committed offset of the group.

use std::sync::Arc;

use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{OffsetFetchRequest, OffsetFetchResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use metadata::CommittedOffset;

use crate::broker::Broker;
use crate::errors::group_error;

const FIRST_BATCHED_VERSION: i16 = 8;

pub async fn handle(
    broker: &Arc<Broker>,
    version: i16,
    request: OffsetFetchRequest,
) -> OffsetFetchResponse {
    if version < FIRST_BATCHED_VERSION {
        let wanted = request
            .topics
            .map(|topics| partitions(topics.into_iter().map(|t| (t.name, t.partition_indexes))));
        let offsets = match broker
            .groups
            .fetch_offsets(request.group_id.as_str(), wanted)
            .await
        {
            Ok(offsets) => offsets,
            Err(e) => {
                return OffsetFetchResponse::default().with_error_code(group_error(&e).code());
            }
        };
        let topics = by_topic(offsets)
            .into_iter()
            .map(|(name, offsets)| {
                OffsetFetchResponseTopic::default()
                    .with_name(name)
                    .with_partitions(
                        offsets
                            .into_iter()
                            .map(|o| {
                                OffsetFetchResponsePartition::default()
                                    .with_partition_index(o.partition)
                                    .with_committed_offset(o.offset)
                                    .with_committed_leader_epoch(o.leader_epoch)
                                    .with_metadata(Some(StrBytes::from_string(o.metadata)))
                            })
                            .collect(),
                    )
            })
            .collect();
        return OffsetFetchResponse::default().with_topics(topics);
    }
    let mut groups = Vec::with_capacity(request.groups.len());
    for g in request.groups {
        let wanted = g
            .topics
            .map(|topics| partitions(topics.into_iter().map(|t| (t.name, t.partition_indexes))));
        let offsets = match broker
            .groups
            .fetch_offsets(g.group_id.as_str(), wanted)
            .await
        {
            Ok(offsets) => offsets,
            Err(e) => {
                groups.push(
                    OffsetFetchResponseGroup::default()
                        .with_group_id(g.group_id)
                        .with_error_code(group_error(&e).code()),
                );
                continue;
            }
        };
        let topics = by_topic(offsets)
            .into_iter()
            .map(|(name, offsets)| {
                OffsetFetchResponseTopics::default()
                    .with_name(name)
                    .with_partitions(
                        offsets
                            .into_iter()
                            .map(|o| {
                                OffsetFetchResponsePartitions::default()
                                    .with_partition_index(o.partition)
                                    .with_committed_offset(o.offset)
                                    .with_committed_leader_epoch(o.leader_epoch)
                                    .with_metadata(Some(StrBytes::from_string(o.metadata)))
                            })
                            .collect(),
                    )
            })
            .collect();
        groups.push(
            OffsetFetchResponseGroup::default()
                .with_group_id(g.group_id)
                .with_topics(topics),
        );
    }
    OffsetFetchResponse::default().with_groups(groups)
}

/// The (topic, partition) pairs a request names.
fn partitions(topics: impl Iterator<Item = (TopicName, Vec<i32>)>) -> Vec<(String, i32)> {
    topics
        .flat_map(|(name, indexes)| {
            let name = name.to_string();
            indexes.into_iter().map(move |p| (name.clone(), p))
        })
        .collect()
}

/// Offsets grouped by topic, topics in first-seen order.
fn by_topic(offsets: Vec<CommittedOffset>) -> Vec<(TopicName, Vec<CommittedOffset>)> {
    let mut out: Vec<(TopicName, Vec<CommittedOffset>)> = Vec::new();
    for o in offsets {
        match out.iter_mut().find(|(name, _)| name.as_str() == o.topic) {
            Some((_, list)) => list.push(o),
            None => out.push((TopicName(StrBytes::from_string(o.topic.clone())), vec![o])),
        }
    }
    out
}
