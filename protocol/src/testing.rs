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
