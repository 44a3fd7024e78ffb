//! A zero-copy view of a RecordBatch v2 header, the only on-wire record format
//! this broker accepts and stores.
//!
//! ```text
//!  0  base_offset             i64   rewritten by the broker (offset assignment)
//!  8  batch_length            i32   bytes after this field
//! 12  partition_leader_epoch  i32   rewritten by the broker
//! 16  magic                   i8    must be 2
//! 17  crc                     u32   CRC-32C of bytes 21..end
//! 21  attributes              i16   bits 0-2 codec, 3 timestamp type, 4 transactional, 5 control
//! 23  last_offset_delta       i32
//! 27  base_timestamp          i64
//! 35  max_timestamp           i64
//! 43  producer_id             i64
//! 51  producer_epoch          i16
//! 53  base_sequence           i32
//! 57  records_count           i32
//! 61  records …
//! ```
//!
//! Because the CRC starts at `attributes`, the broker can patch the base offset
//! and leader epoch in place without recomputing it. Setting LogAppendTime
//! changes attributes and max timestamp, so that path recomputes the CRC.

use crate::Error;
use crate::records::{RecordChecks, RecordsSummary, walk_records};

/// Bytes before the records of a v2 batch.
pub const BATCH_HEADER_BYTES: usize = 61;
/// Bytes of `base_offset` + `batch_length`, which `batch_length` does not count.
pub const LOG_OVERHEAD_BYTES: usize = 12;
const CRC_START: usize = 21;
const MAGIC_V2: i8 = 2;
const TIMESTAMP_TYPE_BIT: i16 = 1 << 3;
const TRANSACTIONAL_BIT: i16 = 1 << 4;
const CONTROL_BIT: i16 = 1 << 5;
const COMPRESSION_MASK: i16 = 0x07;
/// Kafka's codecs are 0 (none) to 4 (zstd); 5–7 mean nothing.
const MAX_COMPRESSION_CODEC: i16 = 4;

/// The fields of a v2 batch header, copied out of the bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    pub batch_length: i32,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub records_count: i32,
}

impl BatchHeader {
    /// Total size of the batch in bytes, prefix included.
    pub fn size_bytes(&self) -> usize {
        LOG_OVERHEAD_BYTES + self.batch_length as usize
    }
    pub fn last_offset(&self) -> i64 {
        self.base_offset + self.last_offset_delta as i64
    }
    /// Kafka's codec id: 0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd.
    pub fn compression(&self) -> i16 {
        self.attributes & COMPRESSION_MASK
    }
    pub fn is_log_append_time(&self) -> bool {
        self.attributes & TIMESTAMP_TYPE_BIT != 0
    }
    pub fn is_transactional(&self) -> bool {
        self.attributes & TRANSACTIONAL_BIT != 0
    }
    pub fn is_control(&self) -> bool {
        self.attributes & CONTROL_BIT != 0
    }
}

fn i16_at(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}
fn i32_at(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn i64_at(b: &[u8], at: usize) -> i64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(x)
}

/// Parses the header at the start of `bytes`. Checks that the declared length
/// fits in `bytes` and is at least a header, and that magic is 2. Does not
/// check the CRC (see `verify_crc`).
pub fn parse_header(bytes: &[u8]) -> Result<BatchHeader, Error> {
    if bytes.len() < LOG_OVERHEAD_BYTES {
        return Err(Error::CorruptBatch(format!(
            "batch shorter than its length prefix len={}",
            bytes.len()
        )));
    }
    let batch_length = i32_at(bytes, 8);
    if batch_length < (BATCH_HEADER_BYTES - LOG_OVERHEAD_BYTES) as i32 {
        return Err(Error::CorruptBatch(format!(
            "batch length below header size batch_length={batch_length}"
        )));
    }
    if LOG_OVERHEAD_BYTES + batch_length as usize > bytes.len() {
        return Err(Error::CorruptBatch(format!(
            "batch length past end of records batch_length={batch_length} available={}",
            bytes.len() - LOG_OVERHEAD_BYTES
        )));
    }
    // magic sits at 16 in every message format version, so it is read before
    // anything that only v2 defines.
    let magic = bytes[16] as i8;
    if magic != MAGIC_V2 {
        return Err(Error::UnsupportedMagic(magic));
    }
    Ok(BatchHeader {
        base_offset: i64_at(bytes, 0),
        batch_length,
        partition_leader_epoch: i32_at(bytes, 12),
        magic,
        crc: u32::from_be_bytes([bytes[17], bytes[18], bytes[19], bytes[20]]),
        attributes: i16_at(bytes, 21),
        last_offset_delta: i32_at(bytes, 23),
        base_timestamp: i64_at(bytes, 27),
        max_timestamp: i64_at(bytes, 35),
        producer_id: i64_at(bytes, 43),
        producer_epoch: i16_at(bytes, 51),
        base_sequence: i32_at(bytes, 53),
        records_count: i32_at(bytes, 57),
    })
}

/// Checks the CRC-32C of one whole batch (`bytes` is exactly the batch).
pub fn verify_crc(header: &BatchHeader, batch: &[u8]) -> Result<(), Error> {
    let computed = crc32c::crc32c(&batch[CRC_START..header.size_bytes()]);
    if computed != header.crc {
        return Err(Error::CorruptBatch(format!(
            "crc mismatch stored={:#010x} computed={computed:#010x}",
            header.crc
        )));
    }
    Ok(())
}

/// A produce batch that passed every check, and what its records hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidBatch {
    pub header: BatchHeader,
    pub summary: RecordsSummary,
}

/// Validates the records of one partition in a Produce request (v3+) as
/// Kafka's `LogValidator` does: `check_produce_header`, the CRC, then every
/// record read and checked (`records::walk_records`; a compressed batch is
/// decompressed as a stream, bounded by `checks.max_decompressed_bytes`).
/// Records refused one by one are in `summary.record_errors`; the caller
/// refuses the batch when there are any. Costs CPU in proportion to the
/// batch's (decompressed) size: callers on an async runtime run large ones
/// on a blocking thread.
pub fn validate_produce_batch(records: &[u8], checks: &RecordChecks) -> Result<ValidBatch, Error> {
    let header = check_produce_header(records)?;
    validate_checked_batch(header, records, checks)
}

/// The rest of `validate_produce_batch` for a batch whose header
/// `check_produce_header` already passed: the CRC, then every record.
pub fn validate_checked_batch(
    header: BatchHeader,
    records: &[u8],
    checks: &RecordChecks,
) -> Result<ValidBatch, Error> {
    verify_crc(&header, records)?;
    let summary = walk_records(&header, records, checks)?;
    Ok(ValidBatch { header, summary })
}

/// The cheap part of `validate_produce_batch`: exactly one v2 batch that
/// fills the records exactly, a known codec, not a control batch, a
/// sequence when idempotent, and a positive record count matching
/// `last_offset_delta`. Neither the CRC nor the records are read.
pub fn check_produce_header(records: &[u8]) -> Result<BatchHeader, Error> {
    let header = parse_header(records)?;
    if header.size_bytes() != records.len() {
        return Err(Error::InvalidRecord(
            "produce requests v3+ must hold exactly one record batch".to_string(),
        ));
    }
    if header.compression() > MAX_COMPRESSION_CODEC {
        return Err(Error::CorruptBatch(format!(
            "unknown compression codec={}",
            header.compression()
        )));
    }
    if header.is_control() {
        return Err(Error::InvalidRecord(
            "Clients are not allowed to write control records".to_string(),
        ));
    }
    if header.producer_id >= 0 && header.base_sequence < 0 {
        return Err(Error::InvalidRecord(format!(
            "Invalid sequence number {} in record batch with producerId {}",
            header.base_sequence, header.producer_id
        )));
    }
    if header.records_count <= 0 {
        return Err(Error::InvalidRecord(format!(
            "record count must be positive records_count={}",
            header.records_count
        )));
    }
    if header.last_offset_delta != header.records_count - 1 {
        return Err(Error::InvalidRecord(format!(
            "last_offset_delta does not match record count last_offset_delta={} records_count={}",
            header.last_offset_delta, header.records_count
        )));
    }
    Ok(header)
}

/// Writes a new base offset into a batch (outside the CRC).
pub fn set_base_offset(batch: &mut [u8], base_offset: i64) {
    batch[0..8].copy_from_slice(&base_offset.to_be_bytes());
}

/// Writes the partition leader epoch into a batch (outside the CRC).
pub fn set_partition_leader_epoch(batch: &mut [u8], epoch: i32) {
    batch[12..16].copy_from_slice(&epoch.to_be_bytes());
}

/// Marks a batch LogAppendTime with `timestamp_ms` as its max timestamp, as
/// Kafka does for `message.timestamp.type=LogAppendTime` topics, and
/// recomputes the CRC.
pub fn set_log_append_time(batch: &mut [u8], timestamp_ms: i64) {
    let attributes = i16_at(batch, 21) | TIMESTAMP_TYPE_BIT;
    batch[21..23].copy_from_slice(&attributes.to_be_bytes());
    set_max_timestamp(batch, timestamp_ms);
}

/// Writes the batch's max timestamp and recomputes the CRC: Kafka stores
/// the largest record timestamp there whatever the producer wrote
/// (`LogValidator`'s `setMaxTimestamp`).
pub fn set_max_timestamp(batch: &mut [u8], timestamp_ms: i64) {
    batch[35..43].copy_from_slice(&timestamp_ms.to_be_bytes());
    let end = LOG_OVERHEAD_BYTES + i32_at(batch, 8) as usize;
    let crc = crc32c::crc32c(&batch[CRC_START..end]);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
}

/// Iterates over the whole batches at the front of `bytes` (as stored or
/// fetched), yielding (start position, header). Stops at the first partial or
/// unparsable batch.
pub fn batches(bytes: &[u8]) -> impl Iterator<Item = (usize, BatchHeader)> + '_ {
    let mut at = 0usize;
    std::iter::from_fn(move || {
        let header = parse_header(&bytes[at..]).ok()?;
        let start = at;
        at += header.size_bytes();
        Some((start, header))
    })
}

#[cfg(test)]
mod tests;
