//! CreatePartitions: grow topics. Every topic asked about gets its own
//! answer: UNKNOWN_TOPIC_OR_PARTITION, INVALID_PARTITIONS when the count does
//! not grow, INVALID_REPLICA_ASSIGNMENT for assignments that do not match,
//! INVALID_REQUEST for a topic named twice. `validate_only` changes nothing.

use std::collections::HashMap;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};
use kafka_protocol::protocol::StrBytes;

use super::create_topics::MAX_PARTITIONS_PER_REQUEST;
use crate::broker::Broker;
use crate::errors;

pub async fn handle(broker: &Broker, request: CreatePartitionsRequest) -> CreatePartitionsResponse {
    let mut times_named: HashMap<String, usize> = HashMap::new();
    for topic in &request.topics {
        *times_named.entry(topic.name.to_string()).or_default() += 1;
    }
    let _guard = broker.admin_lock.lock().await;
    let mut results = Vec::with_capacity(request.topics.len());
    let mut grew_any = false;
    let added: i64 = request
        .topics
        .iter()
        .map(|t| {
            let current = broker
                .topics
                .by_name(t.name.as_str())
                .map_or(0, |v| v.topic.partition_count);
            (t.count as i64 - current as i64).max(0)
        })
        .sum();
    for topic in request.topics {
        let result = CreatePartitionsTopicResult::default().with_name(topic.name.clone());
        let refuse = |code: ResponseError, message: String| {
            result
                .clone()
                .with_error_code(code.code())
                .with_error_message(Some(StrBytes::from_string(message)))
        };
        if added > MAX_PARTITIONS_PER_REQUEST {
            results.push(refuse(
                ResponseError::PolicyViolation,
                "Excessively large number of partitions per request.".to_string(),
            ));
            continue;
        }
        if let Err(why) = broker.check_room_for(0, added) {
            results.push(refuse(ResponseError::PolicyViolation, why));
            continue;
        }
        let name = topic.name.as_str();
        if times_named[name] > 1 {
            results.push(refuse(
                ResponseError::InvalidRequest,
                format!("Duplicate topic in request: {name}"),
            ));
            continue;
        }
        let Some(view) = broker.topics.by_name(name) else {
            results.push(refuse(
                ResponseError::UnknownTopicOrPartition,
                format!("The topic '{name}' does not exist."),
            ));
            continue;
        };
        let current = view.topic.partition_count;
        if topic.count < current {
            results.push(refuse(
                ResponseError::InvalidPartitions,
                format!("The topic {name} currently has {current} partition(s); {} would not be an increase.", topic.count),
            ));
            continue;
        }
        if topic.count == current {
            results.push(refuse(
                ResponseError::InvalidPartitions,
                format!("Topic already has {current} partition(s)."),
            ));
            continue;
        }
        if let Some(assignments) = &topic.assignments {
            let added = (topic.count - current) as usize;
            if assignments.len() != added {
                results.push(refuse(
                    ResponseError::InvalidReplicaAssignment,
                    format!("Attempted to add {added} additional partition(s), but only {} assignment(s) were specified.", assignments.len()),
                ));
                continue;
            }
            if assignments
                .iter()
                .any(|a| a.broker_ids.len() != 1 || a.broker_ids[0].0 != broker.node_id())
            {
                results.push(refuse(
                    ResponseError::InvalidReplicaAssignment,
                    format!("The manual partition assignment includes a broker other than the only registered broker {}.", broker.node_id()),
                ));
                continue;
            }
        }
        if request.validate_only {
            results.push(result);
            continue;
        }
        results.push(
            match broker
                .metadata
                .create_partitions(view.topic.topic_id, topic.count)
                .await
            {
                Ok(()) => {
                    grew_any = true;
                    tracing::info!(
                        topic = name,
                        from = current,
                        to = topic.count,
                        "added partitions"
                    );
                    result
                }
                Err(e) => refuse(errors::metadata_error(&e), e.to_string()),
            },
        );
    }
    if grew_any && let Err(e) = broker.refresh_topics().await {
        tracing::error!(error = %e, "could not reload topics after adding partitions");
    }
    CreatePartitionsResponse::default().with_results(results)
}
