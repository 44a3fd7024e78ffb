//! Produce: check every partition's batch, queue the good ones in the log in
//! request order, and answer once all of them are durable (acks 1 and -1
//! alike: a produce is acknowledged only after its object is written and its
//! index committed). acks=0 gets no answer.
//!
//! The checks are Kafka's (`ProduceRequest.validateRecords`, `LogValidator`):
//! one v2 batch, CRC-32C, counts and lengths that add up,
//! `max.message.bytes`, and for CreateTime topics the records' timestamps,
//! whose largest becomes the batch's max timestamp whatever the producer
//! wrote in the header (a compressed batch is decompressed for it, on a
//! blocking thread). Compacted topics also need a key on every record.

use std::sync::Arc;

use bytes::Bytes;
use futures::future::join_all;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::produce_response::{
    BatchIndexAndErrorMessage, PartitionProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse, ResponseKind, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::RecordBatchDecoder;
use metadata::{TopicId, TopicPartition, Uuid};
use protocol::batch::{BatchHeader, RecordsSummary};
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
    RecordErrors(Vec<(i32, String)>),
    Queued(PendingAppend),
}

struct TopicOutcomes {
    name: TopicName,
    topic_id: Uuid,
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
            .any(|(_, outcome)| !matches!(outcome, Outcome::Queued(_)));
        tokio::spawn(async move {
            let _ = respond(topics).await;
        });
        return if refused {
            Reply::Close
        } else {
            Reply::Now(None)
        };
    }
    Reply::Later(tokio::spawn(async move {
        Some(ResponseKind::Produce(respond(topics).await))
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
    let (header, walked) = match protocol::batch::validate_produce_records(&records) {
        Ok(validated) => validated,
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
    let max_bytes = view.settings.max_message_bytes;
    if header.size_bytes() > max_bytes as usize {
        return Outcome::Failed(
            ResponseError::MessageTooLarge,
            Some(format!(
                "The record batch size {} exceeds max.message.bytes {max_bytes}",
                header.size_bytes()
            )),
        );
    }
    let create_time = view.settings.message_timestamp_type == TimestampType::CreateTime;
    let mut records = records;
    if create_time {
        // Kafka reads the timestamps off the records, not the header: a
        // producer may write anything there (Sarama 1.22 writes -1), and
        // ListOffsets by time and by max timestamp go by the stored value.
        let summary = match walked {
            Some(summary) => Ok(summary),
            None => decompressed_summary(&header, &records).await,
        };
        let summary = match summary {
            Ok(summary) => summary,
            Err(e) => return Outcome::Failed(errors::batch_error(&e), Some(e.to_string())),
        };
        if let Some(message) = timestamp_out_of_range(broker, view, &header, &summary) {
            return Outcome::Failed(ResponseError::InvalidTimestamp, Some(message));
        }
        if summary.max_timestamp != header.max_timestamp {
            let mut fixed = bytes::BytesMut::from(&records[..]);
            protocol::batch::set_max_timestamp(&mut fixed, summary.max_timestamp);
            records = fixed.freeze();
        }
    }
    if view.settings.cleanup_policy_compact {
        match keyless_records(&records, &view.topic.name, partition) {
            Ok(errors) if errors.is_empty() => {}
            Ok(errors) => return Outcome::RecordErrors(errors),
            Err(message) => return Outcome::Failed(ResponseError::CorruptMessage, Some(message)),
        }
    }
    let options = AppendOptions {
        log_append_time: !create_time,
    };
    match broker.log.enqueue(tp, records, options).await {
        Ok(pending) => Outcome::Queued(pending),
        Err(e) => Outcome::Failed(errors::storage_error(&e), None),
    }
}

/// A compressed batch's record count and timestamps, decompressed on a
/// blocking thread so that a large one does not stall the other connections
/// served by this worker.
async fn decompressed_summary(
    header: &BatchHeader,
    records: &Bytes,
) -> Result<RecordsSummary, protocol::Error> {
    let (header, records) = (*header, records.clone());
    tokio::task::spawn_blocking(move || protocol::batch::records_summary(&header, &records))
        .await
        .unwrap_or_else(|e| {
            Err(protocol::Error::CorruptBatch(format!(
                "decompression failed: {e}"
            )))
        })
}

/// Kafka's `message.timestamp.before.max.ms` / `after.max.ms` window for
/// CreateTime topics, checked on the records' smallest and largest
/// timestamps, as Kafka checks every record's.
fn timestamp_out_of_range(
    broker: &Broker,
    view: &TopicView,
    header: &BatchHeader,
    summary: &RecordsSummary,
) -> Option<String> {
    let now_ms = broker.clock.now_ms();
    let before_ms = view.settings.message_timestamp_before_max_ms;
    let after_ms = view.settings.message_timestamp_after_max_ms;
    let too_old = |ts: i64| ts >= 0 && now_ms.saturating_sub(ts) > before_ms;
    let too_new = |ts: i64| ts.saturating_sub(now_ms) > after_ms;
    [summary.min_timestamp, summary.max_timestamp]
        .into_iter()
        .find(|&ts| too_old(ts) || too_new(ts))
        .map(|ts| {
            format!(
                "Timestamp {ts} of message with offset {} is out of range. The timestamp should be within [{}, {}]",
                header.base_offset,
                now_ms.saturating_sub(before_ms),
                now_ms.saturating_add(after_ms)
            )
        })
}

/// Kafka refuses keyless records in compacted topics, each with its index
/// in the batch (`LogValidator.validateKey`). A batch that does not decode
/// is corrupt (Kafka's `CorruptRecordException`).
fn keyless_records(
    records: &Bytes,
    topic: &str,
    partition: i32,
) -> Result<Vec<(i32, String)>, String> {
    let mut bytes = records.clone();
    let set = RecordBatchDecoder::decode(&mut bytes)
        .map_err(|e| format!("record batch does not decode: {e}"))?;
    Ok(set
        .records
        .iter()
        .enumerate()
        .filter(|(_, r)| r.key.is_none())
        .map(|(index, _)| {
            (
                index as i32,
                format!(
                    "Compacted topic cannot accept message without key in topic partition {topic}-{partition}."
                ),
            )
        })
        .collect())
}

/// Kafka's answer to records refused one by one (`LogValidator.processRecordErrors`).
fn refused_records(
    base: PartitionProduceResponse,
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
    base.with_error_code(ResponseError::InvalidRecord.code())
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

/// Waits for every queued append and builds the answer.
async fn respond(topics: Vec<TopicOutcomes>) -> ProduceResponse {
    let responses = join_all(topics.into_iter().map(|topic| async move {
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
                    Outcome::RecordErrors(errors) => refused_records(base, errors),
                    Outcome::Queued(pending) => match pending.wait().await {
                        Ok(result) => base
                            .with_base_offset(result.base_offset)
                            .with_log_append_time_ms(result.log_append_time_ms)
                            .with_log_start_offset(result.log_start_offset),
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
