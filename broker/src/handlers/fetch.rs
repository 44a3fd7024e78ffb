//! Fetch: read from each partition asked for, and long-poll when there is
//! less than `min_bytes` until `max_wait_ms` passes.
//!
//! The wait is woken by the partitions' high-watermark watches (an append
//! that commits moves them), never by a sleep-and-retry loop. Receivers are
//! taken before each read, so a commit between the read and the wait still
//! wakes it.
//!
//! Each pass over the partitions first takes its share of
//! `fetch_response_buffer_max_bytes` (less than `max_bytes` when the buffer
//! is short), and the answer holds what it used until it is written.
//!
//! Sizes follow Kafka: `partition_max_bytes` per partition and `max_bytes`
//! for the whole answer, except that the first partition with data always
//! returns at least one whole batch, so a batch larger than the limits can
//! still be consumed. Records are never null: an empty partition gets empty
//! records. Incremental fetch sessions (KIP-227) are not offered: the answer's
//! session id is 0, which tells clients to keep sending full fetches.

use std::time::Duration;

use futures::future::select_all;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_response::{
    FetchableTopicResponse, LeaderIdAndEpoch, NodeEndpoint, PartitionData,
};
use kafka_protocol::messages::{BrokerId, FetchRequest, FetchResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use metadata::{TopicId, TopicPartition, Uuid};
use tokio::sync::{OwnedSemaphorePermit, watch};

use crate::broker::Broker;
use crate::config::MIN_FETCH_SHARE_BYTES;
use crate::errors;

/// Fetch v13 names topics by id (KIP-516); earlier versions by name.
const FIRST_VERSION_WITH_TOPIC_IDS: i16 = 13;
/// `isolation_level` of read_committed consumers.
const READ_COMMITTED: i8 = 1;
/// Session epoch of a client that uses no fetch session.
const FINAL_EPOCH: i32 = -1;

/// One requested partition, resolved once per request.
struct Wanted {
    partition: i32,
    fetch_offset: i64,
    partition_max_bytes: i32,
    current_leader_epoch: i32,
    target: Result<TopicPartition, ResponseError>,
}

struct WantedTopic {
    name: TopicName,
    topic_id: Uuid,
    partitions: Vec<Wanted>,
}

/// The answer, and its share of `fetch_response_buffer_max_bytes`, held
/// until the answer is written.
pub async fn handle(
    broker: &Broker,
    version: i16,
    request: FetchRequest,
) -> (FetchResponse, Option<OwnedSemaphorePermit>) {
    if request.session_id != 0 || !matches!(request.session_epoch, 0 | FINAL_EPOCH) {
        let refused =
            FetchResponse::default().with_error_code(ResponseError::FetchSessionIdNotFound.code());
        return (refused, None);
    }
    let topics = resolve(broker, version, request.topics);
    let max_wait = Duration::from_millis(request.max_wait_ms.max(0) as u64);
    let deadline = tokio::time::Instant::now() + max_wait;
    let min_bytes = request.min_bytes.max(0) as usize;
    let max_bytes = request.max_bytes.clamp(0, broker.settings.fetch_max_bytes) as usize;
    let read_committed = request.isolation_level == READ_COMMITTED;
    loop {
        let mut watches = watches(broker, &topics);
        let mut room = share_of_response_room(broker, max_bytes).await;
        let share = room.num_permits();
        let read = read_all(broker, &topics, share, read_committed).await;
        // Kafka's DelayedFetch completes when enough bytes are available, not
        // only returned: data left out by the size limits counts.
        let done = read.bytes >= min_bytes
            || read.has_error
            || read.more_available
            || watches.is_empty()
            || tokio::time::Instant::now() >= deadline
            || broker.shutdown.is_cancelled();
        if done {
            // Keep room for what was read (one batch may go over the share,
            // KIP-74); give back the rest.
            if read.bytes < share {
                drop(room.split(share - read.bytes.max(1)));
            }
            count_fetched(broker, &read.responses);
            return (
                FetchResponse::default()
                    .with_responses(read.responses)
                    .with_node_endpoints(read.new_leaders),
                Some(room),
            );
        }
        // Nothing is held while waiting for data.
        drop(room);
        drop(read);
        let changed = select_all(watches.iter_mut().map(|w| Box::pin(w.changed())));
        // Cancel-safe: `changed` and `sleep_until` keep no state we need; the
        // next iteration reads everything again.
        tokio::select! {
            _ = changed => {}
            _ = tokio::time::sleep_until(deadline) => {}
            _ = broker.shutdown.cancelled() => {}
        }
    }
}

/// Adds the records of the answer about to go out to `/metrics`.
fn count_fetched(broker: &Broker, responses: &[FetchableTopicResponse]) {
    for topic in responses {
        let with_records = || {
            topic
                .partitions
                .iter()
                .filter_map(|p| p.records.as_ref().filter(|r| !r.is_empty()))
        };
        if with_records().next().is_none() {
            continue;
        }
        // v13+ answers name topics by id only.
        let by_id;
        let name = if topic.topic.is_empty() {
            by_id = broker.topics.by_id(TopicId(topic.topic_id));
            by_id.as_ref().map_or("", |v| v.topic.name.as_str())
        } else {
            topic.topic.as_str()
        };
        for records in with_records() {
            broker.metrics.fetched(name, records);
        }
    }
}

/// Room for up to `wanted` bytes of answer: all of it when the buffer has
/// it, else the largest power-of-two fraction it has down to
/// `MIN_FETCH_SHARE_BYTES`, else waits for that much (a client that asks for
/// gigabytes and never reads cannot hold more than the bound).
async fn share_of_response_room(broker: &Broker, wanted: usize) -> OwnedSemaphorePermit {
    let room = &broker.response_room;
    let mut share = wanted.clamp(1, broker.settings.fetch_response_buffer_max_bytes);
    while share > MIN_FETCH_SHARE_BYTES {
        if let Ok(permit) = room.clone().try_acquire_many_owned(share as u32) {
            return permit;
        }
        share /= 2;
    }
    room.clone()
        .acquire_many_owned(share as u32)
        .await
        .expect("the response semaphore is never closed")
}

fn resolve(
    broker: &Broker,
    version: i16,
    topics: Vec<kafka_protocol::messages::fetch_request::FetchTopic>,
) -> Vec<WantedTopic> {
    topics
        .into_iter()
        .map(|topic| {
            let (view, missing) = if version >= FIRST_VERSION_WITH_TOPIC_IDS {
                (
                    broker.topics.by_id(TopicId(topic.topic_id)),
                    ResponseError::UnknownTopicId,
                )
            } else {
                (
                    broker.topics.by_name(topic.topic.as_str()),
                    ResponseError::UnknownTopicOrPartition,
                )
            };
            let partitions = topic
                .partitions
                .into_iter()
                .map(|p| Wanted {
                    partition: p.partition,
                    fetch_offset: p.fetch_offset,
                    partition_max_bytes: p.partition_max_bytes,
                    current_leader_epoch: p.current_leader_epoch,
                    target: match &view {
                        None => Err(missing),
                        Some(v) if p.partition < 0 || p.partition >= v.topic.partition_count => {
                            Err(ResponseError::UnknownTopicOrPartition)
                        }
                        Some(v) => Ok(TopicPartition::new(v.topic.topic_id, p.partition)),
                    },
                })
                .collect();
            WantedTopic {
                name: topic.topic,
                topic_id: topic.topic_id,
                partitions,
            }
        })
        .collect()
}

fn watches(broker: &Broker, topics: &[WantedTopic]) -> Vec<watch::Receiver<i64>> {
    topics
        .iter()
        .flat_map(|t| t.partitions.iter())
        .filter_map(|p| p.target.as_ref().ok())
        .filter_map(|tp| broker.log.watch_high_watermark(tp))
        .collect()
}

/// One pass over every requested partition.
struct ReadAll {
    responses: Vec<FetchableTopicResponse>,
    /// Record bytes in `responses`.
    bytes: usize,
    /// A partition failed: errors are answered at once.
    has_error: bool,
    /// A partition has records below its high watermark that were left out.
    more_available: bool,
    /// KIP-951: the endpoints of the leaders named in NOT_LEADER_OR_FOLLOWER answers.
    new_leaders: Vec<NodeEndpoint>,
}

async fn read_all(
    broker: &Broker,
    topics: &[WantedTopic],
    max_bytes: usize,
    read_committed: bool,
) -> ReadAll {
    let mut total = 0usize;
    let mut has_error = false;
    let mut more_available = false;
    let mut new_leaders: Vec<NodeEndpoint> = Vec::new();
    let mut responses = Vec::with_capacity(topics.len());
    for topic in topics {
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for wanted in &topic.partitions {
            let data = match read_one(broker, wanted, max_bytes, total).await {
                Ok((data, more)) => {
                    more_available |= more;
                    data
                }
                Err(code) => {
                    has_error = true;
                    let mut data = PartitionData::default()
                        .with_partition_index(wanted.partition)
                        .with_error_code(code.code())
                        .with_high_watermark(-1)
                        .with_last_stable_offset(-1)
                        .with_log_start_offset(-1)
                        .with_records(Some(Default::default()));
                    // KIP-951: name the leader, so the client goes there at once.
                    let view = match (&wanted.target, code) {
                        (Ok(tp), ResponseError::NotLeaderOrFollower) => {
                            Some((broker.cluster.view(), *tp))
                        }
                        _ => None,
                    };
                    let leader = view.as_ref().and_then(|(view, tp)| view.leader(tp));
                    if let Some((leader, epoch)) = leader {
                        let node_id = BrokerId(leader.session.node_id);
                        data.current_leader = LeaderIdAndEpoch::default()
                            .with_leader_id(node_id)
                            .with_leader_epoch(epoch);
                        if !new_leaders.iter().any(|e| e.node_id == node_id) {
                            new_leaders.push(
                                NodeEndpoint::default()
                                    .with_node_id(node_id)
                                    .with_host(StrBytes::from_string(
                                        leader.registration.host.clone(),
                                    ))
                                    .with_port(leader.registration.port)
                                    .with_rack(
                                        leader.registration.rack.clone().map(StrBytes::from_string),
                                    ),
                            );
                        }
                    }
                    data
                }
            };
            total += data.records.as_ref().map_or(0, |r| r.len());
            partitions.push(if read_committed {
                data.with_aborted_transactions(Some(Vec::new()))
            } else {
                data
            });
        }
        responses.push(
            FetchableTopicResponse::default()
                .with_topic(topic.name.clone())
                .with_topic_id(topic.topic_id)
                .with_partitions(partitions),
        );
    }
    ReadAll {
        responses,
        bytes: total,
        has_error,
        more_available,
        new_leaders,
    }
}

async fn read_one(
    broker: &Broker,
    wanted: &Wanted,
    max_bytes: usize,
    bytes_so_far: usize,
) -> Result<(PartitionData, bool), ResponseError> {
    let tp = wanted.target?;
    // Only the leader answers fetches (docs/design/0007: it alone knows the
    // high watermark without a store read per fetch).
    let (_, _, leader_epoch) = broker
        .log
        .offsets(&tp)
        .ok_or(ResponseError::NotLeaderOrFollower)?;
    // KIP-320: a client ahead of our epoch has newer metadata than we do; one
    // behind it must refresh its metadata.
    if wanted.current_leader_epoch > leader_epoch {
        return Err(ResponseError::UnknownLeaderEpoch);
    }
    if wanted.current_leader_epoch >= 0 && wanted.current_leader_epoch < leader_epoch {
        return Err(ResponseError::FencedLeaderEpoch);
    }
    // KIP-74: only the first partition with data may go over the limits,
    // by one batch; the others stay within both.
    let budget =
        (wanted.partition_max_bytes.max(0) as usize).min(max_bytes.saturating_sub(bytes_so_far));
    let read = broker
        .log
        .read(tp, wanted.fetch_offset, budget, bytes_so_far == 0)
        .await
        .map_err(|e| errors::storage_error(&e))?;
    let more_available = read.more_available;
    let data = PartitionData::default()
        .with_partition_index(wanted.partition)
        .with_high_watermark(read.high_watermark)
        .with_last_stable_offset(read.high_watermark)
        .with_log_start_offset(read.log_start_offset)
        .with_records(Some(read.records));
    Ok((data, more_available))
}
