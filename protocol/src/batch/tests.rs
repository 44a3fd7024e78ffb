use super::*;
use crate::records::RecordChecks;
use bytes::BytesMut;

fn validate(batch: &[u8]) -> Result<BatchHeader, Error> {
    validate_produce_batch(batch, &RecordChecks::default()).map(|v| v.header)
}
use kafka_protocol::records::{Compression, RecordBatchDecoder};

/// A batch of `n` keyed records with timestamps 1000, 1001, …
fn encode(n: i64, compression: Compression) -> BytesMut {
    let values: Vec<String> = (0..n).map(|i| format!("value-{i}")).collect();
    let values: Vec<&str> = values.iter().map(String::as_str).collect();
    BytesMut::from(&crate::testing::record_batch(&values, 1_000, true, compression)[..])
}

#[test]
fn parses_header_fields() {
    let batch = encode(3, Compression::None);
    let h = validate(&batch).unwrap();
    assert_eq!(h.records_count, 3);
    assert_eq!(h.last_offset_delta, 2);
    assert_eq!(h.max_timestamp, 1_002);
    assert_eq!(h.size_bytes(), batch.len());
    assert_eq!(h.compression(), 0);
}

#[test]
fn compressed_batch_validates() {
    let batch = encode(10, Compression::Zstd);
    let h = validate(&batch).unwrap();
    assert_eq!(h.compression(), 4);
    assert_eq!(h.records_count, 10);
}

#[test]
fn wrong_crc_is_corrupt() {
    let mut batch = encode(2, Compression::None);
    let last = batch.len() - 1;
    batch[last] ^= 0xff;
    assert!(matches!(validate(&batch), Err(Error::CorruptBatch(_))));
}

#[test]
fn old_magic_is_rejected() {
    let mut batch = encode(1, Compression::None);
    batch[16] = 1;
    assert!(matches!(validate(&batch), Err(Error::UnsupportedMagic(1))));
}

#[test]
fn lying_record_count_is_invalid() {
    let mut batch = encode(1, Compression::None);
    batch[57..61].copy_from_slice(&5i32.to_be_bytes());
    batch[23..27].copy_from_slice(&4i32.to_be_bytes());
    let crc = crc32c::crc32c(&batch[21..]);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
    assert!(matches!(validate(&batch), Err(Error::InvalidRecord(_))));
}

#[test]
fn lying_batch_length_is_corrupt() {
    let mut batch = encode(1, Compression::None);
    let len = (batch.len() as i32 - 12) + 100;
    batch[8..12].copy_from_slice(&len.to_be_bytes());
    assert!(matches!(validate(&batch), Err(Error::CorruptBatch(_))));
}

#[test]
fn two_batches_in_one_produce_are_invalid() {
    let mut both = encode(1, Compression::None);
    both.extend_from_slice(&encode(1, Compression::None));
    assert!(matches!(validate(&both), Err(Error::InvalidRecord(_))));
}

#[test]
fn patching_offset_and_epoch_keeps_crc_valid() {
    let mut batch = encode(4, Compression::None);
    set_base_offset(&mut batch, 1_000);
    set_partition_leader_epoch(&mut batch, 7);
    let h = validate(&batch).unwrap();
    assert_eq!(h.base_offset, 1_000);
    assert_eq!(h.partition_leader_epoch, 7);
    let mut bytes = batch.freeze();
    let set = RecordBatchDecoder::decode(&mut bytes).unwrap();
    assert_eq!(set.records[3].offset, 1_003);
}

#[test]
fn log_append_time_rewrites_crc() {
    let mut batch = encode(2, Compression::Gzip);
    set_log_append_time(&mut batch, 55_555);
    let h = validate(&batch).unwrap();
    assert!(h.is_log_append_time());
    assert_eq!(h.max_timestamp, 55_555);
    let mut bytes = batch.freeze();
    // The decoder checks the CRC; clients read LogAppendTime from the header.
    let set = RecordBatchDecoder::decode(&mut bytes).unwrap();
    assert_eq!(set.records.len(), 2);
}

#[test]
fn iterates_concatenated_batches_and_stops_at_partial() {
    let mut all = encode(2, Compression::None);
    let second = encode(3, Compression::None);
    all.extend_from_slice(&second);
    all.extend_from_slice(&second[..20]);
    let found: Vec<_> = batches(&all).collect();
    assert_eq!(found.len(), 2);
    assert_eq!(found[1].1.records_count, 3);
}

fn with_attributes(mut batch: BytesMut, attributes: i16) -> BytesMut {
    batch[21..23].copy_from_slice(&attributes.to_be_bytes());
    let crc = crc32c::crc32c(&batch[21..]);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
    batch
}

#[test]
fn control_batches_from_clients_are_invalid() {
    let batch = with_attributes(encode(1, Compression::None), 1 << 5);
    assert!(matches!(validate(&batch), Err(Error::InvalidRecord(_))));
}

#[test]
fn unknown_codec_is_corrupt() {
    let batch = with_attributes(encode(1, Compression::None), 6);
    assert!(matches!(validate(&batch), Err(Error::CorruptBatch(_))));
}

#[test]
fn idempotent_batch_without_sequence_is_invalid() {
    let mut batch = encode(1, Compression::None);
    batch[43..51].copy_from_slice(&7i64.to_be_bytes());
    batch[53..57].copy_from_slice(&(-1i32).to_be_bytes());
    let crc = crc32c::crc32c(&batch[21..]);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
    assert!(matches!(validate(&batch), Err(Error::InvalidRecord(_))));
}

#[test]
fn records_give_their_timestamps_whatever_the_header_says() {
    for compression in [Compression::None, Compression::Gzip, Compression::Zstd] {
        let mut batch = encode(4, compression);
        // A producer that writes -1 as the max timestamp (Sarama 1.22).
        set_max_timestamp(&mut batch, -1);
        let valid = validate_produce_batch(&batch, &RecordChecks::default())
            .expect("the CRC was recomputed");
        assert_eq!(valid.header.max_timestamp, -1);
        let summary = valid.summary;
        assert_eq!(
            (summary.count, summary.min_timestamp, summary.max_timestamp),
            (4, 1_000, 1_003),
            "{compression:?}"
        );
    }
}

#[test]
fn a_record_longer_than_its_batch_is_invalid() {
    let mut batch = encode(1, Compression::None);
    // The first record's length varint (zig-zag 0x7f = -64) is past the header.
    batch[BATCH_HEADER_BYTES] = 0x7e; // 63 bytes, more than the record has
    let crc = crc32c::crc32c(&batch[CRC_START..]);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
    assert!(matches!(validate(&batch), Err(Error::InvalidRecord(_))));
}
