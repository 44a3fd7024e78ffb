//! Produce: check every partition's batch, queue the good ones in the log in
//! request order, and answer once all of them are durable (acks 1 and -1
//! alike: a produce is acknowledged only after its object is written and its
//! index committed). acks=0 gets no answer.
//!
//! The checks are Kafka's (`ProduceRequest.validateRecords`, `LogValidator`):
//! `max.message.bytes`, one v2 batch, CRC-32C, and every record read (a
//! compressed batch decompressed as a stream) with counts, lengths and
//! offset deltas that add up; for CreateTime topics the records'
//! timestamps, whose largest becomes the batch's max timestamp whatever the
//! producer wrote in the header; for compacted topics a key on every record.
//! Large batches are checked off the async workers (`record_checks`).

use std::sync::Arc;

use bytes::Bytes;
use futures::future::join_all;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::produce_response::{
    BatchIndexAndErrorMessage, LeaderIdAndEpoch, NodeEndpoint, PartitionProduceResponse,
    TopicProduceResponse,
};
use kafka_protocol::messages::{
    BrokerId, ProduceRequest, ProduceResponse, ResponseKind, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use metadata::{TopicId, TopicPartition, Uuid};
use protocol::batch::{BatchHeader, ValidBatch};
use protocol::records::{RecordChecks, RecordProblem, RecordsSummary, TimestampWindow};
use storage::{AppendOptions, PendingAppend};

use super::Reply;
use crate::broker::Broker;
use crate::configs::TimestampType;
use crate::errors;
use crate::topics::TopicView;

/// Produce v13 names topics by id (KIP-516); earlier versions by name.
const FIRST_VERSION_WITH_TOPIC_IDS: i16 = 13;

enum Outcome {
    Failed(ResponseError, Option<String>),
    /// Records refused one by one (KIP-467): the whole batch fails with
    /// INVALID_RECORD, and the answer names each bad record's index so that
    /// clients fail those records and may retry the others.
    RecordErrors(ResponseError, Vec<(i32, String)>),
    /// In the log, waiting for its flush; counted in `/metrics` once durable.
    Queued(PendingAppend, Accepted),
}

/// What a queued batch adds to the produced-records metrics.
struct Accepted {
    records: u64,
    bytes: u64,
}

struct TopicOutcomes {
    name: TopicName,
    topic_id: Uuid,
    /// The topic's name whichever way the request named it (v13+ by id).
    known_as: String,
    partitions: Vec<(i32, Outcome)>,
}

pub async fn handle(broker: &Arc<Broker>, version: i16, request: ProduceRequest) -> Reply {
    let acks = request.acks;
    let mut topics = Vec::with_capacity(request.topic_data.len());
    for topic in request.topic_data {
        let view = if version >= FIRST_VERSION_WITH_TOPIC_IDS {
            broker.topics.by_id(TopicId(topic.topic_id))
        } else {
            broker.topics.by_name(topic.name.as_str())
        };
        let mut partitions = Vec::with_capacity(topic.partition_data.len());
        for data in topic.partition_data {
            let outcome = if !matches!(acks, -1..=1) {
                Outcome::Failed(ResponseError::InvalidRequiredAcks, None)
            } else {
                match &view {
                    None if version >= FIRST_VERSION_WITH_TOPIC_IDS => {
                        Outcome::Failed(ResponseError::UnknownTopicId, None)
                    }
                    None => Outcome::Failed(ResponseError::UnknownTopicOrPartition, None),
                    Some(view) => append(broker, view, data.index, data.records).await,
                }
            };
            partitions.push((data.index, outcome));
        }
        topics.push(TopicOutcomes {
            name: topic.name,
            topic_id: topic.topic_id,
            known_as: view.map(|v| v.topic.name.clone()).unwrap_or_default(),
            partitions,
        });
    }
    if acks == 0 {
        // No answer: the client reads none. A partition refused outright
        // closes the connection instead, as Kafka does, so the producer
        // notices and refreshes its metadata. Queued batches still flush.
        let refused = topics
            .iter()
            .flat_map(|t| t.partitions.iter())
            .any(|(_, outcome)| !matches!(outcome, Outcome::Queued(..)));
        let broker = broker.clone();
        tokio::spawn(async move {
            let _ = respond(&broker, topics).await;
        });
        return if refused {
            Reply::Close
        } else {
            Reply::Now(None)
        };
    }
    let broker = broker.clone();
    Reply::Later(tokio::spawn(async move {
        let response = respond(&broker, topics).await;
        Some(ResponseKind::Produce(with_new_leaders(&broker, response)))
    }))
}

/// Checks one partition's records and queues them in the log.
async fn append(
    broker: &Broker,
    view: &TopicView,
    partition: i32,
    records: Option<Bytes>,
) -> Outcome {
    if partition < 0 || partition >= view.topic.partition_count {
        return Outcome::Failed(ResponseError::UnknownTopicOrPartition, None);
    }
    let tp = TopicPartition::new(view.topic.topic_id, partition);
    let Some(records) = records.filter(|r| !r.is_empty()) else {
        return Outcome::Failed(
            ResponseError::InvalidRecord,
            Some("produce request without records".to_string()),
        );
    };
    // The size first, as Kafka does: a batch over the limit is not read.
    let max_bytes = view.settings.max_message_bytes;
    if records.len() > max_bytes as usize {
        return Outcome::Failed(
            ResponseError::MessageTooLarge,
            Some(format!(
                "The record batch size {} exceeds max.message.bytes {max_bytes}",
                records.len()
            )),
        );
    }
    let create_time = view.settings.message_timestamp_type == TimestampType::CreateTime;
    let checks = RecordChecks {
        timestamps: create_time.then(|| TimestampWindow {
            now_ms: broker.clock.now_ms(),
            before_max_ms: view.settings.message_timestamp_before_max_ms,
            after_max_ms: view.settings.message_timestamp_after_max_ms,
        }),
        require_key: view.settings.cleanup_policy_compact,
        ..RecordChecks::default()
    };
    let ValidBatch { header, summary } = match broker.record_checks.validate(&records, checks).await
    {
        Ok(valid) => valid,
        Err(e) => {
            tracing::info!(topic = view.topic.name, partition, error = %e, "rejected produce batch");
            return Outcome::Failed(errors::batch_error(&e), Some(e.to_string()));
        }
    };
    if header.is_transactional() {
        return Outcome::Failed(
            ResponseError::InvalidTxnState,
            Some("transactional batches are not supported yet".to_string()),
        );
    }
    if !summary.record_errors.is_empty() {
        return record_errors(&header, &summary, &checks, &view.topic.name, partition);
    }
    let mut records = records;
    // Kafka stores the largest record timestamp whatever the producer wrote
    // in the header (Sarama 1.22 writes -1): ListOffsets by time and by max
    // timestamp go by the stored value.
    if create_time && summary.max_timestamp != header.max_timestamp {
        let mut fixed = bytes::BytesMut::from(&records[..]);
        protocol::batch::set_max_timestamp(&mut fixed, summary.max_timestamp);
        records = fixed.freeze();
    }
    let options = AppendOptions {
        log_append_time: !create_time,
    };
    let accepted = Accepted {
        records: header.records_count.max(0) as u64,
        bytes: records.len() as u64,
    };
    match broker.log.enqueue(tp, records, options).await {
        Ok(pending) => Outcome::Queued(pending, accepted),
        Err(e) => Outcome::Failed(errors::storage_error(&e), None),
    }
}

/// Records refused one by one (KIP-467), with Kafka's messages
/// (`LogValidator`): INVALID_TIMESTAMP when any timestamp is out of range,
/// INVALID_RECORD otherwise.
fn record_errors(
    header: &BatchHeader,
    summary: &RecordsSummary,
    checks: &RecordChecks,
    topic: &str,
    partition: i32,
) -> Outcome {
    let errors = summary
        .record_errors
        .iter()
        .map(|(index, problem)| {
            let message = match problem {
                RecordProblem::OffsetDelta { expected, found } => format!(
                    "Inner record at index {index} does not have incremental offsets: offset delta {found}, expected {expected} in topic partition {topic}-{partition}."
                ),
                RecordProblem::Timestamp(ts) => {
                    let window = checks.timestamps.expect("timestamps were checked");
                    format!(
                        "Timestamp {ts} of message with offset {} is out of range. The timestamp should be within [{}, {}]",
                        header.base_offset + *index as i64,
                        window.now_ms.saturating_sub(window.before_max_ms),
                        window.now_ms.saturating_add(window.after_max_ms)
                    )
                }
                RecordProblem::MissingKey => format!(
                    "Compacted topic cannot accept message without key in topic partition {topic}-{partition}."
                ),
            };
            (*index, message)
        })
        .collect();
    let timestamps = summary
        .record_errors
        .iter()
        .any(|(_, p)| matches!(p, RecordProblem::Timestamp(_)));
    let code = if timestamps {
        ResponseError::InvalidTimestamp
    } else {
        ResponseError::InvalidRecord
    };
    Outcome::RecordErrors(code, errors)
}

/// Kafka's answer to records refused one by one (`LogValidator.processRecordErrors`).
fn refused_records(
    base: PartitionProduceResponse,
    code: ResponseError,
    errors: Vec<(i32, String)>,
) -> PartitionProduceResponse {
    let shown: Vec<String> = errors
        .iter()
        .take(3)
        .map(|(index, message)| format!("RecordError(batchIndex={index}, message='{message}')"))
        .collect();
    let message = format!(
        "One or more records have been rejected due to {} record errors in total, and only showing the first three errors at most: [{}]",
        errors.len(),
        shown.join(", ")
    );
    base.with_error_code(code.code())
        .with_error_message(Some(StrBytes::from_string(message)))
        .with_record_errors(
            errors
                .into_iter()
                .map(|(index, message)| {
                    BatchIndexAndErrorMessage::default()
                        .with_batch_index(index)
                        .with_batch_index_error_message(Some(StrBytes::from_string(message)))
                })
                .collect(),
        )
}

/// KIP-951: a partition answered NOT_LEADER_OR_FOLLOWER names its current
/// leader and epoch, and the answer carries that leader's endpoint, so the
/// client goes there without a Metadata round trip (v10+ carry the fields;
/// older versions do not encode them).
fn with_new_leaders(broker: &Broker, mut response: ProduceResponse) -> ProduceResponse {
    let not_leader = ResponseError::NotLeaderOrFollower.code();
    let refused = |t: &TopicProduceResponse| {
        t.partition_responses
            .iter()
            .any(|p| p.error_code == not_leader)
    };
    // The common answer names no other leader: no lookups for it.
    if !response.responses.iter().any(refused) {
        return response;
    }
    let view = broker.cluster.view();
    let mut endpoints: Vec<NodeEndpoint> = Vec::new();
    for topic in response.responses.iter_mut().filter(|t| refused(t)) {
        let Some(topic_view) = (if topic.topic_id.is_nil() {
            broker.topics.by_name(topic.name.as_str())
        } else {
            broker.topics.by_id(TopicId(topic.topic_id))
        }) else {
            continue;
        };
        for p in &mut topic.partition_responses {
            if p.error_code != not_leader {
                continue;
            }
            let tp = TopicPartition::new(topic_view.topic.topic_id, p.index);
            let Some((leader, epoch)) = view.leader(&tp) else {
                continue;
            };
            let node_id = BrokerId(leader.session.node_id);
            p.current_leader = LeaderIdAndEpoch::default()
                .with_leader_id(node_id)
                .with_leader_epoch(epoch);
            if !endpoints.iter().any(|e| e.node_id == node_id) {
                endpoints.push(
                    NodeEndpoint::default()
                        .with_node_id(node_id)
                        .with_host(StrBytes::from_string(leader.registration.host.clone()))
                        .with_port(leader.registration.port)
                        .with_rack(leader.registration.rack.clone().map(StrBytes::from_string)),
                );
            }
        }
    }
    response.node_endpoints = endpoints;
    response
}

/// Waits for every queued append and builds the answer.
async fn respond(broker: &Broker, topics: Vec<TopicOutcomes>) -> ProduceResponse {
    let metrics = &broker.metrics;
    let responses = join_all(topics.into_iter().map(|topic| async move {
        let known_as = &topic.known_as;
        let partitions = join_all(topic.partitions.into_iter().map(
            |(index, outcome)| async move {
                let base = PartitionProduceResponse::default()
                    .with_index(index)
                    .with_base_offset(-1)
                    .with_log_append_time_ms(-1)
                    .with_log_start_offset(-1);
                match outcome {
                    Outcome::Failed(code, message) => base
                        .with_error_code(code.code())
                        .with_error_message(message.map(StrBytes::from_string)),
                    Outcome::RecordErrors(code, errors) => refused_records(base, code, errors),
                    Outcome::Queued(pending, accepted) => match pending.wait().await {
                        Ok(result) => {
                            metrics.produced(known_as, accepted.records, accepted.bytes);
                            base.with_base_offset(result.base_offset)
                                .with_log_append_time_ms(result.log_append_time_ms)
                                .with_log_start_offset(result.log_start_offset)
                        }
                        Err(e) => base
                            .with_error_code(errors::storage_error(&e).code())
                            .with_error_message(errors::message(&e)),
                    },
                }
            },
        ))
        .await;
        TopicProduceResponse::default()
            .with_name(topic.name)
            .with_topic_id(topic.topic_id)
            .with_partition_responses(partitions)
    }))
    .await;
    ProduceResponse::default().with_responses(responses)
}
