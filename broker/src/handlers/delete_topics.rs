//! DeleteTopics: by name (every version) or by topic id (v6+). Deleting drops
//! the topic's partitions and index at once; its objects become garbage.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use metadata::{TopicId, Uuid};

use crate::broker::Broker;
use crate::errors;

/// DeleteTopics v6 moved from `topic_names` to `topics` (name or id).
const FIRST_VERSION_WITH_TOPIC_IDS: i16 = 6;

pub async fn handle(
    broker: &Broker,
    version: i16,
    request: DeleteTopicsRequest,
) -> DeleteTopicsResponse {
    let wanted: Vec<(Option<TopicName>, Uuid)> = if version >= FIRST_VERSION_WITH_TOPIC_IDS {
        request
            .topics
            .into_iter()
            .map(|t| (t.name, t.topic_id))
            .collect()
    } else {
        request
            .topic_names
            .into_iter()
            .map(|name| (Some(name), Uuid::nil()))
            .collect()
    };
    let _guard = broker.admin_lock.lock().await;
    let mut responses = Vec::with_capacity(wanted.len());
    let mut deleted_any = false;
    for (name, topic_id) in wanted {
        let view = match &name {
            Some(name) => broker.topics.by_name(name.as_str()),
            None => broker.topics.by_id(TopicId(topic_id)),
        };
        let result = DeletableTopicResult::default()
            .with_name(name.clone())
            .with_topic_id(topic_id);
        let Some(view) = view else {
            let code = if name.is_some() {
                ResponseError::UnknownTopicOrPartition
            } else {
                ResponseError::UnknownTopicId
            };
            responses.push(result.with_error_code(code.code()));
            continue;
        };
        let result = result
            .with_name(Some(TopicName(StrBytes::from_string(
                view.topic.name.clone(),
            ))))
            .with_topic_id(view.topic.topic_id.0);
        responses.push(match broker.metadata.delete_topic(view.topic.topic_id).await {
            Ok(_) => {
                deleted_any = true;
                tracing::info!(topic = view.topic.name, topic_id = %view.topic.topic_id, "deleted topic");
                result
            }
            Err(e) => result
                .with_error_code(errors::metadata_error(&e).code())
                .with_error_message(errors::message(&e)),
        });
    }
    if deleted_any && let Err(e) = broker.refresh_topics().await {
        tracing::error!(error = %e, "could not reload topics after deleting some");
    }
    DeleteTopicsResponse::default().with_responses(responses)
}
