//! DeleteTopics: by name (every version) or by topic id (v6+). Deleting drops
//! the topic's partitions and index at once; its objects become garbage.

use std::collections::HashMap;

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
    let mut names_seen: HashMap<String, usize> = HashMap::new();
    let mut ids_seen: HashMap<Uuid, usize> = HashMap::new();
    for (name, topic_id) in &wanted {
        match name {
            Some(name) => *names_seen.entry(name.to_string()).or_default() += 1,
            None => *ids_seen.entry(*topic_id).or_default() += 1,
        }
    }
    for (name, topic_id) in wanted {
        // ControllerApis.deleteTopics refuses these shapes of v6+ requests.
        let shape_error = match &name {
            Some(_) if !topic_id.is_nil() => {
                Some("You may not specify both topic name and topic id.")
            }
            None if topic_id.is_nil() => Some("Neither topic name nor id were specified."),
            Some(n) if names_seen[n.as_str()] > 1 => Some("Duplicate topic name."),
            None if ids_seen[&topic_id] > 1 => Some("Duplicate topic id."),
            _ => None,
        };
        if let Some(message) = shape_error {
            responses.push(
                DeletableTopicResult::default()
                    .with_name(name)
                    .with_topic_id(topic_id)
                    .with_error_code(ResponseError::InvalidRequest.code())
                    .with_error_message(Some(StrBytes::from_static_str(message))),
            );
            continue;
        }
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
