//! CreateTopics: each topic checked and created on its own, each with its own
//! error code, as Kafka's controller does.
//!
//! Checks, in Kafka's order: a legal and non-colliding name; not named twice
//! in the request (INVALID_REQUEST); partitions (-1 means `num.partitions`,
//! else ≥ 1) and replication factor (-1 or ≥ 1), or a manual assignment that
//! places every replica on this broker; configs
//! (INVALID_CONFIG with Kafka's message); and the name not yet taken.
//! `validate_only` runs every check and creates nothing.

use std::collections::{BTreeMap, HashMap};

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};
use kafka_protocol::protocol::StrBytes;
use metadata::TopicId;

use crate::broker::Broker;
use crate::topics::invalid_topic_name;
use crate::{configs, errors};

/// CreateTopics v5 added the created topic's partitions, replication factor and configs.
const FIRST_VERSION_WITH_TOPIC_DETAILS: i16 = 5;

type Refusal = (ResponseError, String);

/// Kafka's `MAX_PARTITIONS_PER_BATCH`: one request may create at most this
/// many partitions (POLICY_VIOLATION beyond), which also keeps one request
/// from holding the metadata store for long.
pub const MAX_PARTITIONS_PER_REQUEST: i64 = 10_000;

fn total_partitions(broker: &Broker, topics: &[CreatableTopic]) -> i64 {
    topics
        .iter()
        .map(|t| match (t.assignments.len(), t.num_partitions) {
            (0, -1) => broker.settings.num_partitions as i64,
            (0, n) => (n as i64).max(0),
            (assigned, _) => assigned as i64,
        })
        .sum()
}

pub async fn handle(
    broker: &Broker,
    version: i16,
    request: CreateTopicsRequest,
) -> CreateTopicsResponse {
    let mut times_named: HashMap<String, usize> = HashMap::new();
    for topic in &request.topics {
        *times_named.entry(topic.name.to_string()).or_default() += 1;
    }
    let _guard = broker.admin_lock.lock().await;
    let mut results = Vec::with_capacity(request.topics.len());
    let mut created_any = false;
    // Created by this request, not yet in the topic cache (reloaded at the end).
    let (mut added_topics, mut added_partitions) = (0usize, 0i64);
    let too_many = total_partitions(broker, &request.topics) > MAX_PARTITIONS_PER_REQUEST;
    for topic in request.topics {
        let name = topic.name.clone();
        let result = CreatableTopicResult::default()
            .with_name(name.clone())
            .with_num_partitions(-1)
            .with_replication_factor(-1);
        if too_many {
            results.push(refused(
                result,
                (
                    ResponseError::PolicyViolation,
                    "Excessively large number of partitions per request.".to_string(),
                ),
            ));
            continue;
        }
        if times_named[name.as_str()] > 1 {
            results.push(refused(
                result,
                (
                    ResponseError::InvalidRequest,
                    format!("Create topics request from client contains multiple entries for the topic {}", name.as_str()),
                ),
            ));
            continue;
        }
        let outcome = match check(broker, &topic) {
            Err(refusal) => Err(refusal),
            Ok(plan) => match broker
                .check_room_for(added_topics + 1, added_partitions + plan.partitions as i64)
            {
                Err(why) => Err((ResponseError::PolicyViolation, why)),
                Ok(()) if request.validate_only => Ok(None),
                Ok(()) => {
                    let created = create(broker, name.as_str(), plan).await;
                    if let Ok((_, plan)) = &created {
                        added_topics += 1;
                        added_partitions += plan.partitions as i64;
                    }
                    created.map(Some)
                }
            },
        };
        results.push(match outcome {
            Err(refusal) => refused(result, refusal),
            Ok(created) => {
                created_any |= created.is_some();
                let (topic_id, plan) = match created {
                    Some((id, plan)) => (id.0, plan),
                    None => (
                        Default::default(),
                        check(broker, &topic).expect("checked above"),
                    ),
                };
                if version >= FIRST_VERSION_WITH_TOPIC_DETAILS {
                    result
                        .with_topic_id(topic_id)
                        .with_num_partitions(plan.partitions)
                        .with_replication_factor(broker.replica_nodes().len() as i16)
                        .with_configs(Some(configs::create_topic_configs(
                            &plan.configs,
                            &broker.defaults,
                        )))
                } else {
                    result
                }
            }
        });
    }
    if created_any && let Err(e) = broker.refresh_topics().await {
        tracing::error!(error = %e, "could not reload topics after creating some");
    }
    CreateTopicsResponse::default().with_topics(results)
}

struct Plan {
    partitions: i32,
    configs: BTreeMap<String, String>,
}

fn refused(result: CreatableTopicResult, (code, message): Refusal) -> CreatableTopicResult {
    result
        .with_error_code(code.code())
        .with_error_message(Some(StrBytes::from_string(message)))
}

fn check(broker: &Broker, topic: &CreatableTopic) -> Result<Plan, Refusal> {
    let name = topic.name.as_str();
    if let Some(why) = invalid_topic_name(name) {
        return Err((ResponseError::InvalidTopicException, why));
    }
    // Kafka answers TOPIC_ALREADY_EXISTS before looking at partitions,
    // replication or configs, so "create, ignore TopicExists" works whatever
    // the request says.
    check_free(broker, name)?;
    if let Some(other) = broker.topics.colliding(name) {
        return Err((
            ResponseError::InvalidTopicException,
            format!("Topic '{name}' collides with existing topic: {other}"),
        ));
    }
    let partitions = if topic.assignments.is_empty() {
        match topic.num_partitions {
            -1 => broker.settings.num_partitions,
            n if n >= 1 => n,
            n => {
                return Err((
                    ResponseError::InvalidPartitions,
                    format!("Number of partitions was set to an invalid non-positive value: {n}."),
                ));
            }
        }
    } else {
        if topic.num_partitions != -1 || topic.replication_factor != -1 {
            return Err((
                ResponseError::InvalidRequest,
                "Both numPartitions or replicationFactor and replicasAssignments were set. Both cannot be used at the same time.".to_string(),
            ));
        }
        check_assignment(broker, topic)?;
        topic.assignments.len() as i32
    };
    // Any replication factor is accepted: the object store keeps the data
    // durable, not copies on brokers, so a factor asked for is always met.
    // Kafka Connect, Schema Registry and Streams create their topics with 3.
    // A partition's replicas are the live brokers (docs/compatibility.md,
    // "Replication factor"), which is the factor the answer reports.
    if topic.replication_factor < 1 && topic.replication_factor != -1 {
        return Err((
            ResponseError::InvalidReplicationFactor,
            "Replication factor must be larger than 0, or -1 to use the default value.".to_string(),
        ));
    }
    let mut configs = BTreeMap::new();
    for c in &topic.configs {
        match &c.value {
            Some(value) => configs.insert(c.name.to_string(), value.to_string()),
            None => {
                return Err((
                    ResponseError::InvalidConfig,
                    format!(
                        "Null value not supported for topic configs: {}",
                        c.name.as_str()
                    ),
                ));
            }
        };
    }
    configs::validate_topic_configs(&configs)
        .map_err(|e| (errors::config_error(&e), e.to_string()))?;
    Ok(Plan {
        partitions,
        configs,
    })
}

/// Manual assignments: partitions 0..n, each with exactly this broker.
fn check_assignment(broker: &Broker, topic: &CreatableTopic) -> Result<(), Refusal> {
    let mut indexes: Vec<i32> = topic
        .assignments
        .iter()
        .map(|a| a.partition_index)
        .collect();
    indexes.sort_unstable();
    if indexes.iter().enumerate().any(|(i, p)| *p != i as i32) {
        return Err((
            ResponseError::InvalidReplicaAssignment,
            "Partitions should be a consecutive 0-based integer sequence".to_string(),
        ));
    }
    for a in &topic.assignments {
        if a.broker_ids.len() != 1 || a.broker_ids[0].0 != broker.node_id() {
            return Err((
                ResponseError::InvalidReplicaAssignment,
                format!(
                    "The manual partition assignment includes a broker other than the only registered broker {} for partition {}",
                    broker.node_id(),
                    a.partition_index
                ),
            ));
        }
    }
    Ok(())
}

fn check_free(broker: &Broker, name: &str) -> Result<(), Refusal> {
    match broker.topics.by_name(name) {
        Some(_) => Err(already_exists(name)),
        None => Ok(()),
    }
}

fn already_exists(name: &str) -> Refusal {
    (
        ResponseError::TopicAlreadyExists,
        format!("Topic '{name}' already exists."),
    )
}

async fn create(broker: &Broker, name: &str, plan: Plan) -> Result<(TopicId, Plan), Refusal> {
    check_free(broker, name)?;
    match broker
        .metadata
        .create_topic(
            name,
            TopicId::new_random(),
            plan.partitions,
            plan.configs.clone(),
        )
        .await
    {
        Ok(topic) => {
            tracing::info!(topic = name, topic_id = %topic.topic_id, partitions = plan.partitions, "created topic");
            Ok((topic.topic_id, plan))
        }
        Err(metadata::Error::TopicAlreadyExists(_)) => Err(already_exists(name)),
        Err(e) => Err((errors::metadata_error(&e), e.to_string())),
    }
}
