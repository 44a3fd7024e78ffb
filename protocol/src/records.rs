//! Every record of a v2 batch, read and checked as Kafka's `LogValidator`
//! and `DefaultRecord.readFrom` do, without keeping any of them: a
//! compressed batch is decompressed as a stream through a fixed buffer
//! (bounded output, no allocation in proportion to what the sender claims),
//! and an uncompressed one is walked in place. The stored bytes are never
//! rewritten: decompressing to validate never becomes recompressing.
//!
//! ```text
//! record := length varint | attributes i8 | timestamp_delta varlong
//!         | offset_delta varint | key_length varint | key
//!         | value_length varint | value | header_count varint | header*
//! header := key_length varint | key | value_length varint | value
//! ```
//!
//! What makes a batch unusable as a whole (a length or a varint that does
//! not add up, a payload that does not decompress, a record count that is
//! not the header's) is an `Error`; what Kafka refuses record by record
//! (KIP-467: offset deltas, timestamps, keys of compacted topics) is listed
//! in `RecordsSummary::record_errors` with the record's index.

use std::io::Read;

use crate::Error;
use crate::batch::{BATCH_HEADER_BYTES, BatchHeader};

/// Decompressed bytes one batch may hold. Kafka sets no such bound; a
/// legitimate producer's 1 MiB batch would have to compress 128:1 to reach
/// it, while a zip bomb is refused after this much work.
pub const MAX_DECOMPRESSED_BYTES: usize = 128 * 1024 * 1024;

/// Bytes of decompressed output read at a time.
const STREAM_BUFFER_BYTES: usize = 64 * 1024;

/// Snappy's densest encoding (a 64-byte copy in 2 bytes) expands 32:1; a
/// raw-snappy length prefix claiming more than that is a lie, refused
/// before anything is allocated for it.
const SNAPPY_MAX_RATIO: usize = 32;

/// xerial snappy-java's stream header (Java clients), then blocks of
/// `u32 length | raw snappy`.
const XERIAL_SNAPPY_MAGIC: &[u8] = b"\x82SNAPPY\x00";
const XERIAL_SNAPPY_HEADER_BYTES: usize = 16;

/// The timestamps a topic accepts (`message.timestamp.before.max.ms` and
/// `after.max.ms` around the broker's clock).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimestampWindow {
    pub now_ms: i64,
    pub before_max_ms: i64,
    pub after_max_ms: i64,
}

impl TimestampWindow {
    fn accepts(&self, timestamp: i64) -> bool {
        let too_old = timestamp >= 0 && self.now_ms.saturating_sub(timestamp) > self.before_max_ms;
        let too_new = timestamp.saturating_sub(self.now_ms) > self.after_max_ms;
        !too_old && !too_new
    }
}

/// What the records of a batch must satisfy beyond being well formed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordChecks {
    /// CreateTime topics: every record's timestamp within the window.
    pub timestamps: Option<TimestampWindow>,
    /// Compacted topics: every record has a key.
    pub require_key: bool,
    /// Bound on a compressed batch's decompressed bytes. Past it the batch
    /// is refused with `Error::DecompressedTooLarge`.
    pub max_decompressed_bytes: usize,
}

impl Default for RecordChecks {
    fn default() -> Self {
        RecordChecks {
            timestamps: None,
            require_key: false,
            max_decompressed_bytes: MAX_DECOMPRESSED_BYTES,
        }
    }
}

/// Why one record was refused (KIP-467's per-record errors).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecordProblem {
    /// Kafka's INVALID_RECORD: offset deltas are 0, 1, 2, … in order.
    OffsetDelta { expected: i32, found: i32 },
    /// Kafka's INVALID_TIMESTAMP.
    Timestamp(i64),
    /// Kafka's INVALID_RECORD: a compacted topic needs a key.
    MissingKey,
}

/// What a walk over a batch's records finds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordsSummary {
    pub count: i32,
    /// The smallest and largest record timestamp (base timestamp plus each
    /// record's delta); -1 for both when the batch holds no record.
    pub min_timestamp: i64,
    pub max_timestamp: i64,
    /// Records refused one by one, by index in the batch.
    pub record_errors: Vec<(i32, RecordProblem)>,
    /// Bytes of records read (the decompressed size of a compressed batch).
    pub records_bytes: u64,
}

/// Reads and checks every record of `batch` (one whole batch whose header
/// has been parsed and whose CRC holds). The count must be the header's.
pub fn walk_records(
    header: &BatchHeader,
    batch: &[u8],
    checks: &RecordChecks,
) -> Result<RecordsSummary, Error> {
    let payload = &batch[BATCH_HEADER_BYTES..header.size_bytes()];
    let mut walk = Walk::new(header, checks);
    match header.compression() {
        0 => walk.run(&mut SliceInput {
            bytes: payload,
            at: 0,
        })?,
        1 => walk.run(&mut StreamInput::new(
            flate2::read::GzDecoder::new(payload),
            checks.max_decompressed_bytes,
        ))?,
        2 => walk_snappy(&mut walk, payload, checks.max_decompressed_bytes)?,
        3 => {
            let decoder = lz4::Decoder::new(payload).map_err(codec_error("lz4"))?;
            walk.run(&mut StreamInput::new(
                decoder,
                checks.max_decompressed_bytes,
            ))?
        }
        4 => {
            let decoder =
                zstd::stream::read::Decoder::with_buffer(payload).map_err(codec_error("zstd"))?;
            walk.run(&mut StreamInput::new(
                decoder,
                checks.max_decompressed_bytes,
            ))?
        }
        codec => {
            return Err(Error::CorruptBatch(format!(
                "unknown compression codec={codec}"
            )));
        }
    }
    walk.finish()
}

fn codec_error(codec: &'static str) -> impl Fn(std::io::Error) -> Error {
    move |e| Error::InvalidRecord(format!("{codec} payload does not decompress: {e}"))
}

/// Snappy comes in two forms: xerial's framed stream (Java clients) and a
/// raw block (librdkafka); Kafka reads both, and so do we.
fn walk_snappy(walk: &mut Walk<'_>, payload: &[u8], limit: usize) -> Result<(), Error> {
    if !payload.starts_with(XERIAL_SNAPPY_MAGIC) {
        let out = snappy_block(payload, limit, limit)?;
        return walk.run(&mut SliceInput { bytes: &out, at: 0 });
    }
    let Some(blocks) = payload.get(XERIAL_SNAPPY_HEADER_BYTES..) else {
        return Err(Error::InvalidRecord(
            "truncated snappy stream header".to_string(),
        ));
    };
    let reader = XerialReader {
        blocks,
        block: Vec::new(),
        at: 0,
        produced: 0,
        limit,
    };
    walk.run(&mut StreamInput::new(reader, limit))
}

/// One raw snappy block, refused before allocation when its length prefix
/// claims more than `budget` (of the batch's `limit`) or more than snappy
/// can encode in its size.
fn snappy_block(block: &[u8], budget: usize, limit: usize) -> Result<Vec<u8>, Error> {
    let bad =
        |e: snap::Error| Error::InvalidRecord(format!("snappy payload does not decompress: {e}"));
    let claimed = snap::raw::decompress_len(block).map_err(bad)?;
    if claimed > budget {
        return Err(Error::DecompressedTooLarge { limit });
    }
    if claimed > block.len().saturating_mul(SNAPPY_MAX_RATIO) + 64 {
        return Err(Error::InvalidRecord(format!(
            "snappy block claims {claimed} bytes from {} compressed",
            block.len()
        )));
    }
    snap::raw::Decoder::new().decompress_vec(block).map_err(bad)
}

/// xerial's `u32 length | raw block` sequence as one stream, one block in
/// memory at a time.
struct XerialReader<'a> {
    blocks: &'a [u8],
    block: Vec<u8>,
    at: usize,
    produced: usize,
    limit: usize,
}

impl Read for XerialReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.at == self.block.len() {
            if self.blocks.is_empty() {
                return Ok(0);
            }
            let invalid = |m: String| std::io::Error::new(std::io::ErrorKind::InvalidData, m);
            let Some(length) = self.blocks.get(..4) else {
                return Err(invalid("truncated snappy block length".to_string()));
            };
            let length = u32::from_be_bytes([length[0], length[1], length[2], length[3]]) as usize;
            let Some(block) = self.blocks.get(4..4 + length) else {
                return Err(invalid(format!(
                    "snappy block of {length} bytes past the end of the batch"
                )));
            };
            // The stream's own limit check counts what this returns; this
            // one keeps a single block's claim from allocating past it.
            // Carried inside the io::Error so that `StreamInput` can tell
            // "over the bound" from "not snappy".
            self.block = snappy_block(block, self.limit.saturating_sub(self.produced), self.limit)
                .map_err(std::io::Error::other)?;
            self.produced += self.block.len();
            self.at = 0;
            self.blocks = &self.blocks[4 + length..];
        }
        let n = out.len().min(self.block.len() - self.at);
        out[..n].copy_from_slice(&self.block[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// Where record bytes come from: a slice, or a decompressing stream.
trait Input {
    /// One byte; `Ok(None)` at the end of the records.
    fn next_byte(&mut self) -> Result<Option<u8>, Error>;
    /// Skips `n` bytes, which must be there.
    fn skip(&mut self, n: usize) -> Result<(), Error>;
    /// Bytes consumed so far.
    fn position(&self) -> u64;
}

struct SliceInput<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Input for SliceInput<'_> {
    fn next_byte(&mut self) -> Result<Option<u8>, Error> {
        let b = self.bytes.get(self.at).copied();
        self.at += b.is_some() as usize;
        Ok(b)
    }
    fn skip(&mut self, n: usize) -> Result<(), Error> {
        if n > self.bytes.len() - self.at {
            return Err(truncated());
        }
        self.at += n;
        Ok(())
    }
    fn position(&self) -> u64 {
        self.at as u64
    }
}

/// A decompressing reader behind a fixed buffer, refusing output past `limit`.
struct StreamInput<R> {
    reader: R,
    buffer: Box<[u8]>,
    start: usize,
    end: usize,
    consumed: u64,
    produced: u64,
    limit: u64,
}

impl<R: Read> StreamInput<R> {
    fn new(reader: R, limit: usize) -> Self {
        StreamInput {
            reader,
            buffer: vec![0u8; STREAM_BUFFER_BYTES].into_boxed_slice(),
            start: 0,
            end: 0,
            consumed: 0,
            produced: 0,
            limit: limit as u64,
        }
    }

    /// Refills the buffer; false at the end of the stream.
    fn fill(&mut self) -> Result<bool, Error> {
        if self.start < self.end {
            return Ok(true);
        }
        let read = loop {
            match self.reader.read(&mut self.buffer) {
                Ok(n) => break n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    if let Some(Error::DecompressedTooLarge { limit }) =
                        e.get_ref().and_then(|inner| inner.downcast_ref::<Error>())
                    {
                        return Err(Error::DecompressedTooLarge { limit: *limit });
                    }
                    return Err(Error::InvalidRecord(format!(
                        "compressed payload does not decompress: {e}"
                    )));
                }
            }
        };
        self.produced += read as u64;
        if self.produced > self.limit {
            return Err(Error::DecompressedTooLarge {
                limit: self.limit as usize,
            });
        }
        self.start = 0;
        self.end = read;
        Ok(read > 0)
    }
}

impl<R: Read> Input for StreamInput<R> {
    fn next_byte(&mut self) -> Result<Option<u8>, Error> {
        if !self.fill()? {
            return Ok(None);
        }
        let b = self.buffer[self.start];
        self.start += 1;
        self.consumed += 1;
        Ok(Some(b))
    }
    fn skip(&mut self, mut n: usize) -> Result<(), Error> {
        while n > 0 {
            if !self.fill()? {
                return Err(truncated());
            }
            let step = n.min(self.end - self.start);
            self.start += step;
            self.consumed += step as u64;
            n -= step;
        }
        Ok(())
    }
    fn position(&self) -> u64 {
        self.consumed
    }
}

fn truncated() -> Error {
    Error::InvalidRecord("record extends past the end of the batch".to_string())
}

/// The state of one walk over a batch's records.
struct Walk<'a> {
    header: &'a BatchHeader,
    checks: &'a RecordChecks,
    summary: RecordsSummary,
}

impl<'a> Walk<'a> {
    fn new(header: &'a BatchHeader, checks: &'a RecordChecks) -> Self {
        Walk {
            header,
            checks,
            summary: RecordsSummary {
                count: 0,
                min_timestamp: i64::MAX,
                max_timestamp: i64::MIN,
                record_errors: Vec::new(),
                records_bytes: 0,
            },
        }
    }

    fn run(&mut self, input: &mut impl Input) -> Result<(), Error> {
        while let Some(length) = read_varint_or_end(input)? {
            if self.summary.count >= self.header.records_count {
                return Err(Error::InvalidRecord(format!(
                    "more records than the declared {}",
                    self.header.records_count
                )));
            }
            if length < 0 {
                return Err(Error::InvalidRecord(format!(
                    "record {} has negative length {length}",
                    self.summary.count
                )));
            }
            let start = input.position();
            self.record(input)?;
            let read = input.position() - start;
            if read != length as u64 {
                return Err(Error::InvalidRecord(format!(
                    "Invalid record size: expected to read {length} bytes in record payload, but instead read {read}"
                )));
            }
            self.summary.count += 1;
        }
        self.summary.records_bytes = input.position();
        Ok(())
    }

    /// One record after its length.
    fn record(&mut self, input: &mut impl Input) -> Result<(), Error> {
        let index = self.summary.count;
        next(input)?; // attributes: unused in v2 records
        let timestamp_delta = read_varlong(input)?;
        let offset_delta = read_varint(input)?;
        let key_length = read_varint(input)?;
        skip_bytes(input, key_length, "key")?;
        let value_length = read_varint(input)?;
        skip_bytes(input, value_length, "value")?;
        let header_count = read_varint(input)?;
        if header_count < 0 {
            return Err(Error::InvalidRecord(format!(
                "Found invalid number of record headers {header_count}"
            )));
        }
        for _ in 0..header_count {
            let key_length = read_varint(input)?;
            if key_length < 0 {
                return Err(Error::InvalidRecord(format!(
                    "Invalid negative header key size {key_length}"
                )));
            }
            skip_bytes(input, key_length, "header key")?;
            let value_length = read_varint(input)?;
            skip_bytes(input, value_length, "header value")?;
        }

        let timestamp = self.header.base_timestamp.saturating_add(timestamp_delta);
        self.summary.min_timestamp = self.summary.min_timestamp.min(timestamp);
        self.summary.max_timestamp = self.summary.max_timestamp.max(timestamp);
        if offset_delta != index {
            self.summary.record_errors.push((
                index,
                RecordProblem::OffsetDelta {
                    expected: index,
                    found: offset_delta,
                },
            ));
        }
        if let Some(window) = self.checks.timestamps
            && !window.accepts(timestamp)
        {
            self.summary
                .record_errors
                .push((index, RecordProblem::Timestamp(timestamp)));
        }
        if self.checks.require_key && key_length < 0 {
            self.summary
                .record_errors
                .push((index, RecordProblem::MissingKey));
        }
        Ok(())
    }

    fn finish(mut self) -> Result<RecordsSummary, Error> {
        if self.summary.count != self.header.records_count {
            return Err(Error::InvalidRecord(format!(
                "declared record count does not match records declared={} found={}",
                self.header.records_count, self.summary.count
            )));
        }
        if self.summary.count == 0 {
            self.summary.min_timestamp = -1;
            self.summary.max_timestamp = -1;
        }
        Ok(self.summary)
    }
}

fn next(input: &mut impl Input) -> Result<u8, Error> {
    input.next_byte()?.ok_or_else(truncated)
}

/// A key, value or header field: -1 is null; other negatives are refused.
fn skip_bytes(input: &mut impl Input, length: i32, what: &str) -> Result<(), Error> {
    match length {
        -1 => Ok(()),
        n if n < -1 => Err(Error::InvalidRecord(format!("invalid {what} length {n}"))),
        n => input.skip(n as usize),
    }
}

/// A record's length varint, or `None` at a clean end of the records.
fn read_varint_or_end(input: &mut impl Input) -> Result<Option<i32>, Error> {
    let Some(first) = input.next_byte()? else {
        return Ok(None);
    };
    read_zigzag(input, first, 5).map(|v| Some(v as i32))
}

/// A zig-zag varint of at most 5 bytes whose value fits an i32, as Kafka's
/// `ByteUtils.readVarint` requires.
fn read_varint(input: &mut impl Input) -> Result<i32, Error> {
    let first = next(input)?;
    read_zigzag(input, first, 5).map(|v| v as i32)
}

/// A zig-zag varlong of at most 10 bytes.
fn read_varlong(input: &mut impl Input) -> Result<i64, Error> {
    let first = next(input)?;
    read_zigzag(input, first, 10)
}

fn read_zigzag(input: &mut impl Input, first: u8, max_bytes: u32) -> Result<i64, Error> {
    let mut raw = (first & 0x7f) as u64;
    let mut b = first;
    let mut i = 1;
    while b & 0x80 != 0 {
        if i == max_bytes {
            return Err(Error::InvalidRecord(format!(
                "varint longer than {max_bytes} bytes"
            )));
        }
        b = next(input)?;
        raw |= ((b & 0x7f) as u64) << (7 * i);
        i += 1;
    }
    if max_bytes == 5 && raw > u32::MAX as u64 {
        return Err(Error::InvalidRecord("varint overflows 32 bits".to_string()));
    }
    Ok(((raw >> 1) as i64) ^ -((raw & 1) as i64))
}

#[cfg(test)]
#[path = "records/tests.rs"]
mod tests;
