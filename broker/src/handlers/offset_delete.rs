//! OffsetDelete: removes committed offsets of a group, except for topics a
//! member of a non-empty consumer group is subscribed to
//! (GROUP_SUBSCRIBED_TO_TOPIC).

use std::sync::Arc;

use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::{OffsetDeleteRequest, OffsetDeleteResponse};

use crate::broker::Broker;
use crate::errors;

pub async fn handle(broker: &Arc<Broker>, request: OffsetDeleteRequest) -> OffsetDeleteResponse {
    let partitions: Vec<(String, i32)> = request
        .topics
        .iter()
        .flat_map(|t| {
            let name = t.name.to_string();
            t.partitions
                .iter()
                .map(move |p| (name.clone(), p.partition_index))
        })
        .collect();
    let answers = match broker
        .groups
        .delete_offsets(request.group_id.as_str(), partitions)
        .await
    {
        Ok(answers) => answers,
        Err(e) => {
            return OffsetDeleteResponse::default().with_error_code(errors::group_error(&e).code());
        }
    };
    let topics = request
        .topics
        .into_iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let error = answers
                        .iter()
                        .find(|((name, index), _)| {
                            name == t.name.as_str() && *index == p.partition_index
                        })
                        .and_then(|(_, e)| *e);
                    OffsetDeleteResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(error.map_or(0, |e| errors::group_error(&e).code()))
                })
                .collect();
            OffsetDeleteResponseTopic::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    OffsetDeleteResponse::default().with_topics(topics)
}
