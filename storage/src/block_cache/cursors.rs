//! Ranged reads kept open between a reader's fetches. A consumer catching up
//! reads a partition's run in an object a few blocks per Fetch; instead of a
//! GET per Fetch (or a large read-ahead held in memory), the block cache
//! reads the rest of the run with one streamed GET, pulls the blocks each
//! Fetch needs, and parks the stream at the next block for the next Fetch.
//! A parked stream holds a connection and what arrived of its last chunk;
//! the rest waits in the network (TCP flow control), not in memory.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;

use crate::object_store::ByteChunks;
use crate::{Error, ObjectStore, Result};

/// A streamed ranged read and how far it has been read.
pub(super) struct Cursor {
    chunks: ByteChunks,
    /// Received and not read yet.
    pending: Bytes,
    /// Object offset of the next byte to read.
    pub position: u64,
    /// Where the stream ends.
    pub end: u64,
}

impl Cursor {
    pub async fn open(store: &dyn ObjectStore, key: &str, range: Range<u64>) -> Result<Cursor> {
        let chunks = store.get_range_stream(key, range.clone()).await?;
        Ok(Cursor {
            chunks,
            pending: Bytes::new(),
            position: range.start,
            end: range.end,
        })
    }

    /// The next `len` bytes, in one buffer of their own (a slice of a chunk
    /// would keep the whole chunk alive while the cache counts the block).
    /// After an error the cursor is no longer where it says: drop it.
    pub async fn read(&mut self, key: &str, len: usize) -> Result<Bytes> {
        if len == 0 {
            return Ok(Bytes::new());
        }
        let mut out = BytesMut::new();
        while out.len() < len {
            if self.pending.is_empty() {
                // (A stream that ended is never polled again.)
                self.pending = match self.chunks.next().await {
                    Some(chunk) => chunk?,
                    None => {
                        return Err(Error::Io(format!(
                            "key={key}: the read ended at {} of {}",
                            self.position + out.len() as u64,
                            self.end
                        )));
                    }
                };
            }
            // A chunk that is exactly the block (a one-block span from a
            // file or from memory) is handed over as it is, not copied.
            if out.is_empty() && self.pending.len() == len {
                self.position += len as u64;
                return Ok(std::mem::take(&mut self.pending));
            }
            if out.capacity() == 0 {
                out.reserve(len);
            }
            let take = (len - out.len()).min(self.pending.len());
            out.extend_from_slice(&self.pending.split_to(take));
        }
        self.position += len as u64;
        Ok(out.freeze())
    }

    fn held(&self) -> usize {
        self.pending.len()
    }
}

/// Parked cursors by (object key, position of the next block): at most
/// `max_cursors`, holding at most `max_bytes` received and not read; the
/// least recently parked goes first.
pub(super) struct Parked {
    cursors: HashMap<(String, u64), (Cursor, u64)>,
    by_age: BTreeMap<u64, (String, u64)>,
    next_tick: u64,
    held: usize,
    max_cursors: usize,
    max_bytes: usize,
}

impl Parked {
    pub fn new(max_cursors: usize, max_bytes: usize) -> Parked {
        Parked {
            cursors: HashMap::new(),
            by_age: BTreeMap::new(),
            next_tick: 0,
            held: 0,
            max_cursors,
            max_bytes,
        }
    }

    /// The cursor parked at `position` of `key`, if any.
    pub fn take(&mut self, key: &str, position: u64) -> Option<Cursor> {
        let (cursor, tick) = self.cursors.remove(&(key.to_string(), position))?;
        self.by_age.remove(&tick);
        self.held -= cursor.held();
        Some(cursor)
    }

    /// Parks `cursor` unless it is spent or too large to keep.
    pub fn park(&mut self, key: &str, cursor: Cursor) {
        if cursor.position >= cursor.end || self.max_cursors == 0 || cursor.held() > self.max_bytes
        {
            return;
        }
        while self.cursors.len() >= self.max_cursors || self.held + cursor.held() > self.max_bytes {
            let Some((_, oldest)) = self.by_age.pop_first() else {
                break;
            };
            if let Some((gone, _)) = self.cursors.remove(&oldest) {
                self.held -= gone.held();
            }
        }
        let tick = self.next_tick;
        self.next_tick += 1;
        self.held += cursor.held();
        let k = (key.to_string(), cursor.position);
        self.by_age.insert(tick, k.clone());
        if let Some((old, old_tick)) = self.cursors.insert(k, (cursor, tick)) {
            self.by_age.remove(&old_tick);
            self.held -= old.held();
        }
    }

    pub fn len(&self) -> usize {
        self.cursors.len()
    }
}
