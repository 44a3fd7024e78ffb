//! A response buffer that does not copy large record sets.
//!
//! Fetch answers are mostly records the log already holds as `Bytes`.
//! Encoding them into one buffer copies every consumed byte once more.
//! `SegmentedBuf` is the buffer the codec encodes into instead: when the
//! encoder puts a slice that *is* one of the registered record sets (same
//! address, same length), the buffer keeps a reference to it as its own
//! segment instead of copying; everything else (headers, fields, small
//! records) is copied into the current segment as usual. The connection
//! writes the segments with vectored I/O.
//!
//! The gap methods of `ByteBufMut` (seek back and patch) work within the
//! current segment only; message encoding never uses them (only record batch
//! encoding does).

use std::ops::Range;

use bytes::buf::UninitSlice;
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::protocol::buf::ByteBufMut;

/// Slices shorter than this are copied: a segment costs an iovec entry.
const MIN_SHARED_BYTES: usize = 4 * 1024;

pub struct SegmentedBuf {
    /// Record sets that may be referenced instead of copied.
    shareable: Vec<Bytes>,
    done: Vec<Bytes>,
    done_bytes: usize,
    current: BytesMut,
}

impl SegmentedBuf {
    /// A buffer that will reference, not copy, any of `shareable` when the
    /// encoder writes it.
    pub fn new(shareable: Vec<Bytes>, capacity: usize) -> Self {
        SegmentedBuf {
            shareable: shareable
                .into_iter()
                .filter(|b| b.len() >= MIN_SHARED_BYTES)
                .collect(),
            done: Vec::new(),
            done_bytes: 0,
            current: BytesMut::with_capacity(capacity),
        }
    }

    /// Total bytes written so far.
    pub fn len(&self) -> usize {
        self.done_bytes + self.current.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The segments, in order.
    pub fn into_segments(mut self) -> Vec<Bytes> {
        if !self.current.is_empty() {
            self.done.push(self.current.freeze());
        }
        self.done
    }

    fn shared(&self, src: &[u8]) -> Option<Bytes> {
        if src.len() < MIN_SHARED_BYTES {
            return None;
        }
        self.shareable
            .iter()
            .find(|b| b.as_ptr() == src.as_ptr() && b.len() == src.len())
            .cloned()
    }
}

// SAFETY: every method delegates to `current`, a `BytesMut`, whose own
// `BufMut` implementation upholds the trait's contract.
unsafe impl BufMut for SegmentedBuf {
    fn remaining_mut(&self) -> usize {
        self.current.remaining_mut()
    }

    unsafe fn advance_mut(&mut self, cnt: usize) {
        // SAFETY: the caller's guarantee for `cnt` is about `chunk_mut`,
        // which is `current`'s.
        unsafe { self.current.advance_mut(cnt) }
    }

    fn chunk_mut(&mut self) -> &mut UninitSlice {
        self.current.chunk_mut()
    }

    fn put_slice(&mut self, src: &[u8]) {
        match self.shared(src) {
            Some(records) => {
                let head = self.current.split().freeze();
                if !head.is_empty() {
                    self.done_bytes += head.len();
                    self.done.push(head);
                }
                self.done_bytes += records.len();
                self.done.push(records);
            }
            None => self.current.extend_from_slice(src),
        }
    }
}

impl ByteBufMut for SegmentedBuf {
    fn offset(&self) -> usize {
        self.len()
    }

    fn seek(&mut self, offset: usize) {
        let local = offset
            .checked_sub(self.done_bytes)
            .expect("message encoding never seeks into an earlier segment");
        self.current.resize(local, 0);
    }

    fn range(&mut self, r: Range<usize>) -> &mut [u8] {
        let start = r
            .start
            .checked_sub(self.done_bytes)
            .expect("message encoding never patches an earlier segment");
        &mut self.current[start..r.end - self.done_bytes]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_records_are_referenced_and_the_rest_copied() {
        let records = Bytes::from(vec![7u8; 10_000]);
        let mut buf = SegmentedBuf::new(vec![records.clone()], 64);
        buf.put_i32(1);
        buf.put_slice(&records);
        buf.put_slice(&records[..100]); // a sub-slice: copied
        buf.put_i16(2);
        assert_eq!(buf.len(), 4 + 10_000 + 100 + 2);
        let segments = buf.into_segments();
        assert_eq!(segments.len(), 3);
        assert_eq!(segments[1].as_ptr(), records.as_ptr(), "not copied");
        let joined: Vec<u8> = segments.iter().flat_map(|s| s.iter().copied()).collect();
        assert_eq!(&joined[..4], &1i32.to_be_bytes());
        assert_eq!(&joined[4..10_004], &records[..]);
    }

    #[test]
    fn small_record_sets_are_copied() {
        let small = Bytes::from(vec![1u8; 100]);
        let mut buf = SegmentedBuf::new(vec![small.clone()], 16);
        buf.put_slice(&small);
        assert_eq!(buf.into_segments().len(), 1);
    }
}
