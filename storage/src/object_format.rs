//! The object format: one object per flush, holding the batches of many
//! partitions, readable and checkable without the metadata store.
//!
//! ```text
//! header   "LSOB" magic (4) | format version u16 (=1) | reserved u16
//! body     per partition, a contiguous run of its record batches (v2, offsets assigned)
//! footer   entry count u32, then per entry:
//!            topic id (16) | partition i32 | base_offset i64 | last_offset i64
//!            batch_count u32 | position u64 | length u64 | max_timestamp i64
//! trailer  CRC-32C of the footer u32 | footer length u32 | "LSOB"
//! ```
//!
//! All integers big-endian, like Kafka's. The trailer sits at a fixed place
//! from the end so a reader finds the footer with one ranged read.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use metadata::{TopicId, TopicPartition, Uuid};

use crate::{Error, Result};

pub const MAGIC: &[u8; 4] = b"LSOB";
pub const FORMAT_VERSION: u16 = 1;
pub const HEADER_BYTES: usize = 8;
pub const TRAILER_BYTES: usize = 12;
const ENTRY_BYTES: usize = 16 + 4 + 8 + 8 + 4 + 8 + 8 + 8;

/// One partition's run inside an object, as listed in the footer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FooterEntry {
    pub topic_partition: TopicPartition,
    pub base_offset: i64,
    pub last_offset: i64,
    pub batch_count: u32,
    pub position: u64,
    pub length: u64,
    pub max_timestamp: i64,
}

/// Builds an object: header, then each partition's run, then footer and trailer.
pub struct ObjectBuilder {
    buf: BytesMut,
    /// Bytes already split off as parts (`take_parts`); `buf` follows them.
    shipped: u64,
    entries: Vec<FooterEntry>,
}

impl ObjectBuilder {
    /// A builder sized exactly for `batch_bytes` of batches in `partitions`
    /// runs, so the object is one allocation (a buffer that outgrows its
    /// capacity doubles, and the tail cache would hold twice what it counts).
    pub fn with_capacity(batch_bytes: usize, partitions: usize) -> Self {
        let size = HEADER_BYTES + batch_bytes + 4 + partitions * ENTRY_BYTES + TRAILER_BYTES;
        let mut buf = BytesMut::with_capacity(size);
        buf.put_slice(MAGIC);
        buf.put_u16(FORMAT_VERSION);
        buf.put_u16(0);
        ObjectBuilder {
            buf,
            shipped: 0,
            entries: Vec::new(),
        }
    }

    /// Makes room for `batch_bytes` more of batches in `partitions` more runs.
    pub fn reserve(&mut self, batch_bytes: usize, partitions: usize) {
        self.buf
            .reserve(batch_bytes + 4 + partitions * ENTRY_BYTES + TRAILER_BYTES);
    }

    /// Position the next run will start at.
    pub fn position(&self) -> u64 {
        self.shipped + self.buf.len() as u64
    }

    /// Splits off the bytes written so far in whole parts of `part_size`
    /// (a streaming write sends them while the object still grows).
    /// Positions stay those of the whole object.
    pub fn take_parts(&mut self, part_size: usize) -> Vec<Bytes> {
        let mut parts = Vec::new();
        while part_size > 0 && self.buf.len() >= part_size {
            parts.push(self.buf.split_to(part_size).freeze());
            self.shipped += part_size as u64;
        }
        parts
    }

    /// Appends raw batch bytes to the current run, cutting off each part of
    /// `part_size` as it fills (a rewrite streams its object this way).
    /// Unlike `take_parts`, each part is an allocation of its own, cut
    /// where it ends, and the builder goes on in a fresh one: a part sent
    /// lets go of exactly its bytes once written, and the builder holds one
    /// part being filled, never the buffer a sent part came from.
    pub fn append_in_parts(&mut self, mut batch: &[u8], part_size: usize) -> Vec<Bytes> {
        assert!(part_size > 0, "parts of no bytes");
        let mut parts = Vec::new();
        loop {
            if self.buf.len() >= part_size {
                let full = std::mem::replace(&mut self.buf, BytesMut::with_capacity(part_size));
                self.shipped += full.len() as u64;
                parts.push(full.freeze());
            }
            if batch.is_empty() {
                return parts;
            }
            let n = (part_size - self.buf.len()).min(batch.len());
            self.buf.put_slice(&batch[..n]);
            batch = &batch[n..];
        }
    }

    /// Appends raw batch bytes to the current run; returns a mutable view of them
    /// so the caller can patch offsets in place.
    pub fn append(&mut self, batch: &[u8]) -> &mut [u8] {
        let start = self.buf.len();
        self.buf.put_slice(batch);
        &mut self.buf[start..]
    }

    /// Closes the run that started at `position` and lists it in the footer.
    pub fn finish_run(&mut self, mut entry: FooterEntry, position: u64) -> FooterEntry {
        entry.position = position;
        entry.length = self.position() - position;
        self.entries.push(entry.clone());
        entry
    }

    /// Writes footer and trailer; returns the object, or what follows the
    /// parts already taken.
    pub fn finish(mut self) -> Bytes {
        let footer_start = self.buf.len();
        self.buf.put_u32(self.entries.len() as u32);
        for e in &self.entries {
            self.buf.put_slice(e.topic_partition.topic_id.0.as_bytes());
            self.buf.put_i32(e.topic_partition.partition);
            self.buf.put_i64(e.base_offset);
            self.buf.put_i64(e.last_offset);
            self.buf.put_u32(e.batch_count);
            self.buf.put_u64(e.position);
            self.buf.put_u64(e.length);
            self.buf.put_i64(e.max_timestamp);
        }
        let footer_len = self.buf.len() - footer_start;
        let crc = crc32c::crc32c(&self.buf[footer_start..]);
        self.buf.put_u32(crc);
        self.buf.put_u32(footer_len as u32);
        self.buf.put_slice(MAGIC);
        self.buf.freeze()
    }
}

/// Reads and checks the footer of a whole object.
pub fn read_footer(object: &[u8]) -> Result<Vec<FooterEntry>> {
    let corrupt = |why: &str| Error::CorruptObject(why.to_string());
    if object.len() < HEADER_BYTES + TRAILER_BYTES || &object[..4] != MAGIC {
        return Err(corrupt("missing header magic"));
    }
    let version = u16::from_be_bytes([object[4], object[5]]);
    if version != FORMAT_VERSION {
        return Err(Error::CorruptObject(format!(
            "unknown format version={version}"
        )));
    }
    let trailer = &object[object.len() - TRAILER_BYTES..];
    if &trailer[8..] != MAGIC {
        return Err(corrupt("missing trailer magic"));
    }
    let mut t = &trailer[..8];
    let crc = t.get_u32();
    let footer_len = t.get_u32() as usize;
    let footer_end = object.len() - TRAILER_BYTES;
    if footer_len > footer_end - HEADER_BYTES {
        return Err(corrupt("footer length past header"));
    }
    let footer = &object[footer_end - footer_len..footer_end];
    if crc32c::crc32c(footer) != crc {
        return Err(corrupt("footer crc mismatch"));
    }
    let mut f = footer;
    if f.len() < 4 {
        return Err(corrupt("footer too short"));
    }
    let count = f.get_u32() as usize;
    if f.len() != count * ENTRY_BYTES {
        return Err(corrupt("footer entry count does not match its length"));
    }
    let body_end = (footer_end - footer_len) as u64;
    let mut entries = Vec::with_capacity(count);
    for _ in 0..count {
        let mut id = [0u8; 16];
        f.copy_to_slice(&mut id);
        let entry = FooterEntry {
            topic_partition: TopicPartition::new(TopicId(Uuid::from_bytes(id)), f.get_i32()),
            base_offset: f.get_i64(),
            last_offset: f.get_i64(),
            batch_count: f.get_u32(),
            position: f.get_u64(),
            length: f.get_u64(),
            max_timestamp: f.get_i64(),
        };
        if entry.position < HEADER_BYTES as u64 || entry.position + entry.length > body_end {
            return Err(corrupt("footer entry outside the body"));
        }
        entries.push(entry);
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(partition: i32) -> FooterEntry {
        FooterEntry {
            topic_partition: TopicPartition::new(TopicId(Uuid::from_u128(7)), partition),
            base_offset: 10,
            last_offset: 19,
            batch_count: 2,
            position: 0,
            length: 0,
            max_timestamp: 1234,
        }
    }

    #[test]
    fn footer_round_trips() {
        let mut b = ObjectBuilder::with_capacity(64, 2);
        let p0 = b.position();
        b.append(b"partition zero bytes");
        let e0 = b.finish_run(entry(0), p0);
        let p1 = b.position();
        b.append(b"one");
        let e1 = b.finish_run(entry(1), p1);
        let object = b.finish();
        assert_eq!(
            object.len(),
            8 + 23 + 4 + 2 * ENTRY_BYTES + TRAILER_BYTES,
            "sized exactly"
        );
        let entries = read_footer(&object).unwrap();
        assert_eq!(entries, vec![e0.clone(), e1]);
        let run = &object[e0.position as usize..(e0.position + e0.length) as usize];
        assert_eq!(run, b"partition zero bytes");
    }

    #[test]
    fn parts_appended_in_place_make_the_same_object_each_in_memory_of_its_own() {
        let runs: Vec<Vec<u8>> = (0..7u8).map(|i| vec![i; 3 + 5 * i as usize]).collect();
        let build = |part_size: Option<usize>| {
            let mut b = ObjectBuilder::with_capacity(part_size.unwrap_or(200), runs.len());
            let mut parts = Vec::new();
            for (i, run) in runs.iter().enumerate() {
                let p = b.position();
                match part_size {
                    Some(size) => parts.extend(b.append_in_parts(run, size)),
                    None => {
                        b.append(run);
                    }
                }
                b.finish_run(entry(i as i32), p);
            }
            parts.push(b.finish());
            parts
        };
        let whole = build(None).concat();
        let parts = build(Some(16));
        assert!(parts.len() > 5, "{} parts", parts.len());
        assert_eq!(
            parts.concat(),
            whole,
            "the same bytes, footer positions included"
        );
        for part in &parts[..parts.len() - 1] {
            assert_eq!(part.len(), 16);
            // `take_parts`' parts share the buffer they were cut from.
            assert!(part.is_unique(), "a part shares its memory");
        }
    }

    #[test]
    fn flipped_footer_byte_is_detected() {
        let mut b = ObjectBuilder::with_capacity(8, 1);
        let p = b.position();
        b.append(b"x");
        b.finish_run(entry(0), p);
        let mut object = b.finish().to_vec();
        let at = object.len() - TRAILER_BYTES - 3;
        object[at] ^= 1;
        assert!(matches!(read_footer(&object), Err(Error::CorruptObject(_))));
    }

    #[test]
    fn truncated_object_is_rejected() {
        assert!(read_footer(b"LSOB").is_err());
    }
}
