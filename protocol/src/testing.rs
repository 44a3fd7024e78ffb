//! Record batches for tests, benchmarks and fuzz seeds: a v2 batch of simple
//! records built with the `kafka-protocol` encoder, and the reverse.
//!
//! Not used on any serving path.

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

/// One v2 batch (base offset 0, no producer id) holding `values`, with
/// timestamps `first_timestamp_ms`, +1, +2…, keyed `key-0`, `key-1`… when
/// `keyed`. Panics only if the encoder fails, which it does not for such input.
pub fn record_batch(
    values: &[&str],
    first_timestamp_ms: i64,
    keyed: bool,
    compression: Compression,
) -> Bytes {
    let records: Vec<Record> = values
        .iter()
        .enumerate()
        .map(|(i, v)| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // The encoder starts a new batch when offset - sequence changes.
            sequence: i as i32,
            timestamp: first_timestamp_ms + i as i64,
            key: keyed.then(|| Bytes::from(format!("key-{i}"))),
            value: Some(Bytes::from(v.to_string())),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression,
        },
    )
    .expect("simple records encode");
    buf.freeze()
}

/// `record_batch(values, first_timestamp_ms, false, None)` written by an
/// idempotent producer: `producer_id`, `producer_epoch`, and sequences from
/// `base_sequence` (wrapping after `i32::MAX` as Kafka's do). The CRC is
/// recomputed, so the batch passes `validate_produce_batch`.
pub fn idempotent_batch(
    values: &[&str],
    first_timestamp_ms: i64,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
) -> Bytes {
    let mut batch =
        BytesMut::from(&record_batch(values, first_timestamp_ms, false, Compression::None)[..]);
    // v2 layout: producer id at 43, epoch at 51, base sequence at 53; CRC at
    // 17 covers everything from the attributes at 21.
    batch[43..51].copy_from_slice(&producer_id.to_be_bytes());
    batch[51..53].copy_from_slice(&producer_epoch.to_be_bytes());
    batch[53..57].copy_from_slice(&base_sequence.to_be_bytes());
    let crc = crc32c::crc32c(&batch[21..]);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
    batch.freeze()
}

/// (offset, value as UTF-8) of every record in concatenated batches.
/// Panics on bytes that do not decode: for tests only.
pub fn offsets_and_values(records: &Bytes) -> Vec<(i64, String)> {
    let mut buf = records.clone();
    let mut out = Vec::new();
    while buf.has_remaining() {
        let set = RecordBatchDecoder::decode(&mut buf).expect("batches decode");
        for r in set.records {
            let value = r.value.map(|v| String::from_utf8_lossy(&v).into_owned());
            out.push((r.offset, value.unwrap_or_default()));
        }
    }
    out
}

/// Appends a zig-zag varint (Kafka's record encoding).
pub fn put_varint(out: &mut Vec<u8>, value: i64) {
    let mut raw = ((value << 1) ^ (value >> 63)) as u64;
    while raw >= 0x80 {
        out.push((raw as u8) | 0x80);
        raw >>= 7;
    }
    out.push(raw as u8);
}

/// One record, length prefix included, exactly as a producer writes it.
pub fn record_bytes(
    offset_delta: i32,
    timestamp_delta: i64,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    headers: &[(&[u8], Option<&[u8]>)],
) -> Vec<u8> {
    let mut body = vec![0u8]; // attributes
    put_varint(&mut body, timestamp_delta);
    put_varint(&mut body, offset_delta as i64);
    let put_bytes = |body: &mut Vec<u8>, bytes: Option<&[u8]>| match bytes {
        None => put_varint(body, -1),
        Some(b) => {
            put_varint(body, b.len() as i64);
            body.extend_from_slice(b);
        }
    };
    put_bytes(&mut body, key);
    put_bytes(&mut body, value);
    put_varint(&mut body, headers.len() as i64);
    for (k, v) in headers {
        put_bytes(&mut body, Some(k));
        put_bytes(&mut body, *v);
    }
    let mut out = Vec::with_capacity(body.len() + 5);
    put_varint(&mut out, body.len() as i64);
    out.extend_from_slice(&body);
    out
}

/// `data` compressed as Kafka producers do for `codec` (1 gzip, 2 snappy in
/// xerial's framing with 32 KiB blocks, 3 lz4 frame, 4 zstd); 0 copies it.
pub fn compress(codec: i16, data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    match codec {
        0 => data.to_vec(),
        1 => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(data).expect("in memory");
            e.finish().expect("in memory")
        }
        2 => {
            let mut out = b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01".to_vec();
            for block in data.chunks(32 * 1024) {
                let compressed = snap::raw::Encoder::new()
                    .compress_vec(block)
                    .expect("in memory");
                out.extend_from_slice(&(compressed.len() as u32).to_be_bytes());
                out.extend_from_slice(&compressed);
            }
            out
        }
        3 => {
            let mut e = lz4::EncoderBuilder::new()
                .build(Vec::new())
                .expect("in memory");
            e.write_all(data).expect("in memory");
            let (out, result) = e.finish();
            result.expect("in memory");
            out
        }
        4 => zstd::encode_all(data, 3).expect("in memory"),
        other => panic!("no codec {other}"),
    }
}

/// A v2 batch around `payload` (records, already compressed for `codec`)
/// whose header declares `records_count` records, timestamps from 1,000,
/// and a correct CRC: what a buggy or hostile producer can send.
pub fn batch_with_payload(payload: &[u8], records_count: i32, codec: i16) -> BytesMut {
    let mut batch = BytesMut::with_capacity(crate::batch::BATCH_HEADER_BYTES + payload.len());
    batch.extend_from_slice(&0i64.to_be_bytes()); // base offset
    let batch_length = (crate::batch::BATCH_HEADER_BYTES - 12 + payload.len()) as i32;
    batch.extend_from_slice(&batch_length.to_be_bytes());
    batch.extend_from_slice(&0i32.to_be_bytes()); // partition leader epoch
    batch.extend_from_slice(&[2]); // magic
    batch.extend_from_slice(&0u32.to_be_bytes()); // crc, set below
    batch.extend_from_slice(&codec.to_be_bytes()); // attributes
    batch.extend_from_slice(&(records_count - 1).to_be_bytes()); // last offset delta
    batch.extend_from_slice(&1_000i64.to_be_bytes()); // base timestamp
    batch.extend_from_slice(&1_000i64.to_be_bytes()); // max timestamp
    batch.extend_from_slice(&(-1i64).to_be_bytes()); // producer id
    batch.extend_from_slice(&(-1i16).to_be_bytes()); // producer epoch
    batch.extend_from_slice(&(-1i32).to_be_bytes()); // base sequence
    batch.extend_from_slice(&records_count.to_be_bytes());
    batch.extend_from_slice(payload);
    let crc = crc32c::crc32c(&batch[21..]);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
    batch
}
