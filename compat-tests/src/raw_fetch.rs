//! A consumer with almost no per-record cost: Fetch requests built with the
//! `kafka-protocol` crate on a blocking socket, answers decoded without
//! copying the records, records counted from the batch headers. It measures
//! how fast the broker serves a consumer when the client is not the limit
//! (librdkafka hands out one record per `poll()`, which on a 2-core machine
//! shared with the broker caps what the benchmark can see).

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{ApiKey, FetchRequest, FetchResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use crate::wire::Conn;

/// Fetch v12: names topics by name, the last version before topic ids.
const FETCH_VERSION: i16 = 12;

/// Reads `expected` records from `partitions` of `topic` from offset 0;
/// returns (records, record-batch bytes).
pub fn consume(
    bootstrap: &str,
    topic: &str,
    partitions: &[i32],
    expected: u64,
    timeout_s: u64,
) -> anyhow::Result<(u64, u64)> {
    let mut conn = Conn::connect(bootstrap, "lightstream-load-raw")?;
    let deadline = Instant::now() + Duration::from_secs(timeout_s);
    let mut offsets: Vec<(i32, i64)> = partitions.iter().map(|p| (*p, 0)).collect();
    let (mut records, mut bytes) = (0u64, 0u64);
    while records < expected {
        if Instant::now() > deadline {
            bail!("raw fetch timed out after {records} of {expected} records");
        }
        let request = FetchRequest::default()
            .with_max_wait_ms(500)
            .with_min_bytes(1)
            .with_max_bytes(50 << 20)
            .with_session_epoch(-1)
            .with_topics(vec![
                FetchTopic::default()
                    .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
                    .with_partitions(
                        offsets
                            .iter()
                            .map(|(p, o)| {
                                FetchPartition::default()
                                    .with_partition(*p)
                                    .with_fetch_offset(*o)
                                    .with_partition_max_bytes(10 << 20)
                            })
                            .collect(),
                    ),
            ]);
        let response: FetchResponse = conn.call(ApiKey::Fetch, FETCH_VERSION, &request)?;
        for topic in response.responses {
            for partition in topic.partitions {
                if partition.error_code != 0 {
                    bail!(
                        "fetch partition={} error_code={}",
                        partition.partition_index,
                        partition.error_code
                    );
                }
                let data = partition.records.unwrap_or_default();
                let slot = offsets
                    .iter_mut()
                    .find(|(p, _)| *p == partition.partition_index)
                    .context("answer for a partition not asked for")?;
                for (_, header) in protocol::batch::batches(&data) {
                    if header.last_offset() < slot.1 {
                        continue;
                    }
                    records += (header.last_offset() + 1 - slot.1.max(header.base_offset)) as u64;
                    bytes += header.size_bytes() as u64;
                    slot.1 = header.last_offset() + 1;
                }
            }
        }
    }
    Ok((records, bytes))
}
