//! Metadata: the live brokers, the cluster id and controller, and each topic
//! with its id and partitions (leader, leader epoch, replicas, ISR), from
//! the cluster view. A partition no live broker leads at the moment (its
//! leader just died or handed it over) answers LEADER_NOT_AVAILABLE with
//! leader -1, as Kafka does during an election; clients retry.
//!
//! Unknown topics are created when `auto_create_topics` is on and the request
//! allows it (always before v4, `allow_auto_topic_creation` from v4), as
//! Kafka's `auto.create.topics.enable` does, all of one request's in one
//! step, within `max_topics` and `max_partitions` (POLICY_VIOLATION beyond).
//! Topics asked for by id (v10+) are never created.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use std::collections::HashMap;

use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use metadata::{Topic, TopicId, TopicPartition, Uuid};

use crate::authorized_operations;
use crate::broker::{AutoCreateError, Broker};
use crate::topics::invalid_topic_name;

pub async fn handle(broker: &Broker, version: i16, request: MetadataRequest) -> MetadataResponse {
    let allow_auto_create =
        broker.settings.auto_create_topics && (version < 4 || request.allow_auto_topic_creation);
    let topics = match request.topics {
        // v0 used an empty list to mean "all topics"; v1+ uses null.
        None => all_topics(broker),
        Some(list) if list.is_empty() && version == 0 => all_topics(broker),
        Some(list) => {
            // Unknown topics to create, all in one step (one reload).
            let to_create: Vec<&str> = if allow_auto_create {
                list.iter()
                    .filter(|w| !by_topic_id(w))
                    .filter_map(|w| w.name.as_ref().map(|n| n.as_str()))
                    .filter(|n| {
                        broker.topics.by_name(n).is_none() && invalid_topic_name(n).is_none()
                    })
                    .collect()
            } else {
                Vec::new()
            };
            let mut created: HashMap<String, Result<Topic, AutoCreateError>> = HashMap::new();
            if !to_create.is_empty() {
                let results = broker.auto_create_topics(&to_create).await;
                created.extend(to_create.iter().map(|n| n.to_string()).zip(results));
            }
            list.into_iter()
                .map(|wanted| match wanted.name {
                    Some(ref name) if !by_topic_id(&wanted) => {
                        by_name(broker, name.clone(), created.remove(name.as_str()))
                    }
                    _ => by_id(broker, wanted.topic_id),
                })
                .collect()
        }
    };
    // Asked for only from v8 (both fields); the cluster's only up to v10.
    let topic_operations =
        authorized_operations::topic(request.include_topic_authorized_operations);
    let topics = topics
        .into_iter()
        .map(|t| t.with_topic_authorized_operations(topic_operations))
        .collect();
    let view = broker.cluster.view();
    let brokers = view
        .live
        .iter()
        .map(|b| {
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(b.session.node_id))
                .with_host(StrBytes::from_string(b.registration.host.clone()))
                .with_port(b.registration.port)
                .with_rack(b.registration.rack.clone().map(StrBytes::from_string))
        })
        .collect();
    let controller = view
        .controller()
        .map_or(broker.node_id(), |b| b.session.node_id);
    MetadataResponse::default()
        .with_brokers(brokers)
        .with_cluster_id(Some(StrBytes::from_string(broker.cluster_id.clone())))
        .with_controller_id(BrokerId(controller))
        .with_cluster_authorized_operations(authorized_operations::cluster(
            request.include_cluster_authorized_operations,
        ))
        .with_topics(topics)
}

fn all_topics(broker: &Broker) -> Vec<MetadataResponseTopic> {
    broker
        .topics
        .all()
        .iter()
        .map(|view| describe(broker, &view.topic))
        .collect()
}

/// v10+ may name a topic by id, with a null (or empty) name.
fn by_topic_id(wanted: &MetadataRequestTopic) -> bool {
    !wanted.topic_id.is_nil() && wanted.name.as_ref().is_none_or(|n| n.is_empty())
}

/// A topic asked for by name; `created` is the outcome of its
/// auto-creation when it was unknown and auto-creation was allowed.
fn by_name(
    broker: &Broker,
    name: TopicName,
    created: Option<Result<Topic, AutoCreateError>>,
) -> MetadataResponseTopic {
    let error = |code: ResponseError| {
        MetadataResponseTopic::default()
            .with_name(Some(name.clone()))
            .with_error_code(code.code())
    };
    match created {
        Some(Ok(topic)) => describe(broker, &topic),
        Some(Err(AutoCreateError::Limit(why))) => {
            tracing::warn!(topic = name.as_str(), "auto-creation refused: {why}");
            error(ResponseError::PolicyViolation)
        }
        Some(Err(e)) => {
            tracing::warn!(topic = name.as_str(), error = %e, "auto-creation failed");
            error(ResponseError::LeaderNotAvailable)
        }
        None => match broker.topics.by_name(name.as_str()) {
            Some(view) => describe(broker, &view.topic),
            None if invalid_topic_name(name.as_str()).is_some() => {
                error(ResponseError::InvalidTopicException)
            }
            None => error(ResponseError::UnknownTopicOrPartition),
        },
    }
}

fn by_id(broker: &Broker, topic_id: Uuid) -> MetadataResponseTopic {
    match broker.topics.by_id(TopicId(topic_id)) {
        Some(view) => describe(broker, &view.topic),
        None => MetadataResponseTopic::default()
            .with_topic_id(topic_id)
            .with_error_code(ResponseError::UnknownTopicId.code()),
    }
}

fn describe(broker: &Broker, topic: &Topic) -> MetadataResponseTopic {
    let view = broker.cluster.view();
    let live: Vec<i32> = broker.replica_nodes();
    let partitions = (0..topic.partition_count)
        .map(|partition| {
            let tp = TopicPartition::new(topic.topic_id, partition);
            let answer = MetadataResponsePartition::default().with_partition_index(partition);
            // What this broker leads it knows best (the view may lag a claim).
            let leader = match broker.log.offsets(&tp) {
                Some((_, _, epoch)) if broker.log.leads(&tp) => Some((broker.node_id(), epoch)),
                _ => view
                    .leader(&tp)
                    .map(|(b, epoch)| (b.session.node_id, epoch)),
            };
            let Some((leader, epoch)) = leader else {
                let replicas: Vec<BrokerId> = live.iter().copied().map(BrokerId).collect();
                return answer
                    .with_error_code(ResponseError::LeaderNotAvailable.code())
                    .with_leader_id(BrokerId(-1))
                    .with_leader_epoch(view.leader_epoch(&tp))
                    .with_replica_nodes(replicas)
                    .with_isr_nodes(Vec::new());
            };
            // Leader first, then the other live brokers.
            let replicas: Vec<BrokerId> = std::iter::once(leader)
                .chain(live.iter().copied().filter(|&n| n != leader))
                .map(BrokerId)
                .collect();
            answer
                .with_leader_id(BrokerId(leader))
                .with_leader_epoch(epoch)
                .with_replica_nodes(replicas.clone())
                .with_isr_nodes(replicas)
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(StrBytes::from_string(topic.name.clone()))))
        .with_topic_id(topic.topic_id.0)
        .with_partitions(partitions)
}
