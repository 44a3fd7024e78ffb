//! A consumer with almost no per-record cost: Fetch requests built with the
//! `kafka-protocol` crate on a blocking socket, answers decoded without
//! copying the records, records counted from the batch headers. It measures
//! how fast the broker serves a consumer when the client is not the limit
//! (librdkafka hands out one record per `poll()`, which on a 2-core machine
//! shared with the broker caps what the benchmark can see).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{
    ApiKey, FetchRequest, FetchResponse, RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

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
    let mut stream =
        TcpStream::connect(bootstrap).with_context(|| format!("connect {bootstrap}"))?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let deadline = Instant::now() + Duration::from_secs(timeout_s);
    let mut offsets: Vec<(i32, i64)> = partitions.iter().map(|p| (*p, 0)).collect();
    let (mut records, mut bytes) = (0u64, 0u64);
    let mut correlation_id = 0;
    while records < expected {
        if Instant::now() > deadline {
            bail!("raw fetch timed out after {records} of {expected} records");
        }
        correlation_id += 1;
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
        send(&mut stream, correlation_id, &request)?;
        let response = receive(&mut stream)?;
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

fn send(stream: &mut TcpStream, correlation_id: i32, request: &FetchRequest) -> anyhow::Result<()> {
    let mut body = BytesMut::new();
    RequestHeader::default()
        .with_request_api_key(ApiKey::Fetch as i16)
        .with_request_api_version(FETCH_VERSION)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str("lightstream-load-raw")))
        .encode(
            &mut body,
            ApiKey::Fetch.request_header_version(FETCH_VERSION),
        )?;
    request.encode(&mut body, FETCH_VERSION)?;
    let mut frame = BytesMut::with_capacity(body.len() + 4);
    frame.put_i32(body.len() as i32);
    frame.extend_from_slice(&body);
    stream.write_all(&frame)?;
    Ok(())
}

fn receive(stream: &mut TcpStream) -> anyhow::Result<FetchResponse> {
    let mut size = [0u8; 4];
    stream.read_exact(&mut size)?;
    let size = i32::from_be_bytes(size);
    if !(0..=(200 << 20)).contains(&size) {
        bail!("implausible response size {size}");
    }
    let mut buf = vec![0u8; size as usize];
    stream.read_exact(&mut buf)?;
    let mut buf = Bytes::from(buf);
    ResponseHeader::decode(
        &mut buf,
        ApiKey::Fetch.response_header_version(FETCH_VERSION),
    )?;
    let response = FetchResponse::decode(&mut buf, FETCH_VERSION)?;
    if buf.has_remaining() {
        bail!("{} bytes left after the fetch answer", buf.remaining());
    }
    Ok(response)
}
