//! The block cache: byte ranges of objects read from the object store,
//! kept for readers that fall behind the tail cache (a lagging consumer, a
//! second consumer group re-reading the same data).
//!
//! A block is one index entry's run of batches — the unit every read asks
//! the store for — keyed by (object key, position, length). Bounded by
//! bytes with least-recently-used eviction. Concurrent misses of the same
//! block make one store request (single-flight): the first reader fetches,
//! the others wait for it and share the bytes; if the fetch fails, each
//! waiter tries on its own. Errors are never cached.
//!
//! Blocks that lie end to end in one object (a partition's entries in an
//! object compaction wrote) are fetched together, with one ranged GET
//! (`get_span`): a consumer catching up reads ahead in large requests
//! instead of one request per entry.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::ops::Range;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use crate::{ObjectStore, Result};

mod cursors;
use cursors::{Cursor, Parked};

/// Streams parked between fetches, at most (one per partition a lagging
/// consumer reads, about).
const MAX_PARKED: usize = 256;

type Key = (String, u64, u64);

#[derive(Default)]
struct State {
    /// Block → (bytes, last use tick, whether a reader is yet to read it).
    blocks: HashMap<Key, (Bytes, u64, Unread)>,
    /// Bytes read ahead that no reader asked for yet, kept or in flight:
    /// at most half the cache, so that reading ahead for many partitions
    /// at once cannot evict what was read ahead before it is read.
    unread_ahead: usize,
    wasted_ahead: u64,
    /// Bytes of blocks a reader stopped inside: at most a quarter of the
    /// cache, the oldest going back to the blocks read when a new one
    /// would go over (a reader that never came back holds nothing for
    /// long).
    kept: usize,
    /// use tick → key, oldest first: blocks read, which go first…
    by_use: BTreeMap<u64, Key>,
    /// …then blocks read ahead and not read yet. Plain LRU would evict
    /// those first (a block just read is newer than one read ahead before
    /// it), and a sequential reader's read-ahead would go before use…
    unread_by_use: BTreeMap<u64, Key>,
    /// …then blocks a reader stopped inside.
    kept_by_use: BTreeMap<u64, Key>,
    next_tick: u64,
    bytes: usize,
    /// Fetches in flight; a waiter locks the slot until the fetch is done.
    in_flight: HashMap<Key, Slot>,
}

/// Whether a kept block is yet to be read, and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Unread {
    /// Read (or asked for) since it was kept: evicted first.
    No,
    /// Read ahead, and no reader asked for it yet.
    Ahead,
    /// A reader stopped inside it and will ask for it again.
    Kept,
}

pub struct BlockCache {
    max_bytes: usize,
    state: Mutex<State>,
    parked: Mutex<Parked>,
    hits: AtomicU64,
    misses: AtomicU64,
    read_ahead: AtomicU64,
    resumed: AtomicU64,
    /// Span reads pulling their read-ahead blocks after their answer, and
    /// a wake-up when one ends (`read_ahead_settled`).
    reading_ahead: AtomicUsize,
    read_ahead_ended: tokio::sync::Notify,
}

/// Counters of a block cache, for tests and stats lines.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlockCacheStats {
    pub blocks: usize,
    /// Bytes read ahead (fetched before a reader asked for them), and the
    /// part of them evicted before any reader did.
    pub read_ahead_bytes: u64,
    pub read_ahead_wasted_bytes: u64,
    pub bytes: usize,
    /// Reads answered from memory (a concurrent reader's fetch included).
    pub hits: u64,
    /// Reads that went to the object store.
    pub misses: u64,
    /// Span reads that went on with a stream a read before them parked
    /// (no new request), and the streams parked now.
    pub resumed_streams: u64,
    pub parked_streams: usize,
}

impl BlockCache {
    pub fn new(max_bytes: usize) -> BlockCache {
        BlockCache {
            max_bytes,
            state: Mutex::new(State::default()),
            // What parked streams received and nobody read yet: an eighth
            // of the cache (a chunk or so each, from S3).
            parked: Mutex::new(Parked::new(MAX_PARKED, max_bytes / 8)),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            read_ahead: AtomicU64::new(0),
            resumed: AtomicU64::new(0),
            reading_ahead: AtomicUsize::new(0),
            read_ahead_ended: tokio::sync::Notify::new(),
        }
    }

    /// Returns once no span read is pulling read-ahead blocks any more.
    pub async fn read_ahead_settled(&self) {
        loop {
            let ended = self.read_ahead_ended.notified();
            tokio::pin!(ended);
            ended.as_mut().enable();
            if self.reading_ahead.load(Ordering::SeqCst) == 0 {
                return;
            }
            ended.await;
        }
    }

    pub fn stats(&self) -> BlockCacheStats {
        let s = self.state.lock().expect("block cache lock");
        BlockCacheStats {
            blocks: s.blocks.len(),
            read_ahead_bytes: self.read_ahead.load(Ordering::Relaxed),
            read_ahead_wasted_bytes: s.wasted_ahead,
            bytes: s.bytes,
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            resumed_streams: self.resumed.load(Ordering::Relaxed),
            parked_streams: self.parked.lock().expect("parked lock").len(),
        }
    }

    /// `range` of object `key`: from the cache, else from `store` (once for
    /// concurrent callers), checked by `verify`, then kept. Bytes that fail
    /// `verify` are neither kept nor returned.
    pub async fn get_range(
        &self,
        store: &dyn ObjectStore,
        key: &str,
        range: Range<u64>,
        verify: impl Fn(&Bytes) -> Result<()>,
    ) -> Result<Bytes> {
        let k: Key = (key.to_string(), range.start, range.end);
        let slot = {
            let mut s = self.state.lock().expect("block cache lock");
            if let Some(bytes) = s.touch(&k) {
                self.hits.fetch_add(1, Ordering::Relaxed);
                return Ok(bytes);
            }
            s.in_flight.entry(k.clone()).or_default().clone()
        };
        let mut fetched = slot.lock().await;
        if let Some(bytes) = fetched.as_ref() {
            // Another reader fetched it meanwhile (perhaps reading ahead:
            // touching it marks it read).
            self.hits.fetch_add(1, Ordering::Relaxed);
            self.state.lock().expect("block cache lock").touch(&k);
            return Ok(bytes.clone());
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        let result = store
            .get_range(key, range)
            .await
            .and_then(|bytes| verify(&bytes).map(|()| bytes));
        let mut s = self.state.lock().expect("block cache lock");
        // The slot goes whatever happened; the next miss starts afresh.
        s.release(&k, &slot);
        let bytes = result?;
        *fetched = Some(bytes.clone());
        s.insert(k, bytes.clone(), self.max_bytes, false);
        Ok(bytes)
    }
}

impl BlockCache {
    /// A reader stopped inside block `range` of `key` (its answer was full)
    /// and will ask for it again: keep it past the blocks already read,
    /// which are evicted first. A lagging consumer takes a large block (a
    /// compacted entry is up to 4 MiB) in several fetches of
    /// `max.partition.fetch.bytes`; evicted in between by other partitions'
    /// read-ahead, it would be read from the store again. Within a quarter
    /// of the cache: the blocks kept longest become ordinary blocks read
    /// to make room. Nothing when the block is not held or is read ahead.
    pub fn keep_for_next_read(&self, key: &str, range: Range<u64>) {
        let k: Key = (key.to_string(), range.start, range.end);
        let mut s = self.state.lock().expect("block cache lock");
        let len = match s.blocks.get(&k) {
            Some((bytes, _, Unread::No)) if bytes.len() <= self.max_bytes / 4 => bytes.len(),
            _ => return,
        };
        while s.kept + len > self.max_bytes / 4 {
            let Some((tick, oldest)) = s.kept_by_use.pop_first() else {
                break;
            };
            if let Some((gone, _, unread)) = s.blocks.get_mut(&oldest) {
                *unread = Unread::No;
                let gone = gone.len();
                s.kept -= gone;
                s.by_use.insert(tick, oldest);
            }
        }
        let tick = s.next_tick;
        s.next_tick += 1;
        let (_, used, unread) = s.blocks.get_mut(&k).expect("held above");
        *unread = Unread::Kept;
        let old = std::mem::replace(used, tick);
        s.by_use.remove(&old);
        s.kept_by_use.insert(tick, k);
        s.kept += len;
    }

    /// The first `needed` of `blocks`, ranges of object `key` that lie end
    /// to end and in order; the blocks after them are read ahead. Leading
    /// blocks already kept are hits; the run of blocks after them that no
    /// one has or fetches comes from one ranged read of the store, each
    /// block checked by `verify(i, bytes)` and kept; needed blocks after
    /// that run as `get_range` serves them (read-ahead blocks not at all).
    /// One result per needed block, in order: the answer waits for the
    /// needed blocks only, and the blocks claimed ahead are pulled from the
    /// same stream by a task of their own after it (a reader of one of
    /// them meanwhile waits for that block alone).
    pub async fn get_span(
        self: &Arc<Self>,
        store: Arc<dyn ObjectStore>,
        key: &str,
        blocks: &[Range<u64>],
        needed: usize,
        verify: impl Fn(usize, &Bytes) -> Result<()> + Send + Sync + 'static,
    ) -> Vec<Result<Bytes>> {
        debug_assert!(blocks.windows(2).all(|w| w[0].end == w[1].start));
        let verify = Arc::new(verify);
        let needed = needed.min(blocks.len());
        let mut results = Vec::with_capacity(needed);
        // Claimed slots are new, so locking them cannot wait; readers of
        // any of those blocks wait for this one request.
        let mut claim = SpanClaim {
            cache: self.clone(),
            blocks: VecDeque::new(),
        };
        {
            let mut s = self.state.lock().expect("block cache lock");
            for range in &blocks[..needed] {
                let Some(bytes) = s.touch(&(key.to_string(), range.start, range.end)) else {
                    break;
                };
                self.hits.fetch_add(1, Ordering::Relaxed);
                results.push(Ok(bytes));
            }
            for (i, range) in blocks.iter().enumerate().skip(results.len()) {
                let k: Key = (key.to_string(), range.start, range.end);
                if s.blocks.contains_key(&k) || s.in_flight.contains_key(&k) {
                    break;
                }
                let len = (range.end - range.start) as usize;
                if i >= needed {
                    if s.unread_ahead + len > self.max_bytes / 2 {
                        break;
                    }
                    s.unread_ahead += len;
                    self.read_ahead.fetch_add(len as u64, Ordering::Relaxed);
                }
                let slot = Arc::new(tokio::sync::Mutex::new(None));
                let guard = slot
                    .clone()
                    .try_lock_owned()
                    .expect("a new slot is unlocked");
                s.in_flight.insert(k.clone(), slot.clone());
                claim.blocks.push_back((k, slot, guard, i >= needed));
            }
        }
        if let Some(first) = claim.blocks.front() {
            // One streamed read from the first claimed block to the end of
            // the span: claimed blocks are pulled from it, and what is left
            // is parked for the reader's next fetch.
            let cursor = self
                .parked
                .lock()
                .expect("parked lock")
                .take(key, first.0.1);
            let resumed = cursor.is_some();
            if resumed {
                self.resumed.fetch_add(1, Ordering::Relaxed);
            }
            let mut pull = SpanPull {
                key: key.to_string(),
                claim,
                reading: Reading {
                    cursor,
                    resumed,
                    error: None,
                },
                stream_end: blocks[blocks.len() - 1].end,
                next: results.len(),
            };
            while pull.next < needed && !pull.claim.blocks.is_empty() {
                results.push(
                    self.pull_next(store.as_ref(), &mut pull, verify.as_ref())
                        .await,
                );
            }
            if pull.claim.blocks.is_empty() || pull.reading.error.is_some() {
                // Nothing left ahead, or the stream failed: what is left of
                // the claim goes back as the pull drops (`SpanClaim`).
                self.park_rest(pull);
            } else {
                self.read_ahead_after_answer(store.clone(), pull, verify.clone());
            }
        }
        for (i, range) in blocks.iter().enumerate().take(needed).skip(results.len()) {
            let result = self
                .get_range(store.as_ref(), key, range.clone(), |bytes| verify(i, bytes))
                .await;
            results.push(result);
        }
        results
    }

    /// Pulls the rest of `pull`'s claimed blocks (all read ahead) in a task
    /// of its own, so that the answer does not wait for them; a dropped
    /// task (the runtime shutting down) gives them back like a dropped read.
    fn read_ahead_after_answer(
        self: &Arc<Self>,
        store: Arc<dyn ObjectStore>,
        mut pull: SpanPull,
        verify: Arc<impl Fn(usize, &Bytes) -> Result<()> + Send + Sync + 'static>,
    ) {
        struct Running(Arc<BlockCache>);
        impl Drop for Running {
            fn drop(&mut self) {
                self.0.reading_ahead.fetch_sub(1, Ordering::SeqCst);
                self.0.read_ahead_ended.notify_waiters();
            }
        }
        self.reading_ahead.fetch_add(1, Ordering::SeqCst);
        let running = Running(self.clone());
        tokio::spawn(async move {
            let cache = &running.0;
            while !pull.claim.blocks.is_empty() {
                // A block that fails stays out of the cache; its readers
                // try on their own.
                let _ = cache
                    .pull_next(store.as_ref(), &mut pull, verify.as_ref())
                    .await;
            }
            cache.park_rest(pull);
        });
    }

    /// Reads the front block of `pull`'s claim from its stream, checks it,
    /// keeps it and hands it to the readers waiting for it.
    async fn pull_next(
        &self,
        store: &dyn ObjectStore,
        pull: &mut SpanPull,
        verify: &impl Fn(usize, &Bytes) -> Result<()>,
    ) -> Result<Bytes> {
        // A claimed block stays in the claim while it is read, so that a
        // read dropped midway gives it back.
        let (start, end) = {
            let (k, ..) = pull.claim.blocks.front().expect("a claimed block");
            (k.1, k.2)
        };
        let block = self
            .read_block(
                store,
                &pull.key,
                &mut pull.reading,
                start..end,
                pull.stream_end,
            )
            .await
            .and_then(|block| verify(pull.next, &block).map(|()| block));
        pull.next += 1;
        let (k, slot, mut guard, ahead) = pull.claim.blocks.pop_front().expect("the front block");
        let mut s = self.state.lock().expect("block cache lock");
        s.release(&k, &slot);
        let kept = match &block {
            // Waiters take the bytes from the slot; a failed block leaves
            // it empty, and each waiter tries on its own.
            Ok(bytes) => {
                *guard = Some(bytes.clone());
                s.insert(k.clone(), bytes.clone(), self.max_bytes, ahead)
            }
            Err(_) => false,
        };
        if ahead && !kept {
            s.unread_ahead -= (k.2 - k.1) as usize;
        }
        block
    }

    /// Parks what is left of `pull`'s stream for the reader's next fetch.
    fn park_rest(&self, pull: SpanPull) {
        if let (Some(cursor), None) = (pull.reading.cursor, &pull.reading.error) {
            self.parked
                .lock()
                .expect("parked lock")
                .park(&pull.key, cursor);
        }
    }
}

/// A span read's claimed blocks and the stream they come from.
struct SpanPull {
    key: String,
    claim: SpanClaim,
    reading: Reading,
    stream_end: u64,
    /// Index in the span of the claim's front block.
    next: usize,
}

/// The stream a span read pulls its blocks from.
struct Reading {
    cursor: Option<Cursor>,
    /// The cursor was parked by an earlier read (it may have gone stale).
    resumed: bool,
    /// Set once a block could not be read: the blocks after it are not.
    error: Option<String>,
}

impl BlockCache {
    /// The bytes of `block` from `reading`'s stream, opening one from the
    /// block to `stream_end` when there is none or it ends before the
    /// block. A parked stream that fails (the server closed it while it
    /// waited) is replaced by a new one, once.
    async fn read_block(
        &self,
        store: &dyn ObjectStore,
        key: &str,
        reading: &mut Reading,
        block: Range<u64>,
        stream_end: u64,
    ) -> Result<Bytes> {
        if let Some(why) = &reading.error {
            return Err(crate::Error::Io(format!(
                "key={key} range={block:?}: not read ({why})"
            )));
        }
        let len = (block.end - block.start) as usize;
        loop {
            let cursor = match &mut reading.cursor {
                Some(c) if c.position == block.start && c.end >= block.end => c,
                _ => {
                    self.misses.fetch_add(1, Ordering::Relaxed);
                    reading.resumed = false;
                    match Cursor::open(store, key, block.start..stream_end.max(block.end)).await {
                        Ok(c) => reading.cursor.insert(c),
                        Err(e) => {
                            reading.cursor = None;
                            reading.error = Some(e.to_string());
                            return Err(e);
                        }
                    }
                }
            };
            match cursor.read(key, len).await {
                Ok(bytes) => return Ok(bytes),
                Err(e) => {
                    reading.cursor = None;
                    if std::mem::take(&mut reading.resumed) {
                        tracing::debug!(key, error = %e, "a parked read failed; reading afresh");
                        continue;
                    }
                    reading.error = Some(e.to_string());
                    return Err(e);
                }
            }
        }
    }
}

/// Blocks a span read claimed: a read dropped before its answer (a Fetch
/// that was answered or cancelled meanwhile) gives back their slots and
/// their read-ahead reservation, so neither leaks.
struct SpanClaim {
    cache: Arc<BlockCache>,
    /// (block, its slot, the slot's lock, read ahead)
    blocks: VecDeque<(Key, Slot, tokio::sync::OwnedMutexGuard<Option<Bytes>>, bool)>,
}

type Slot = Arc<tokio::sync::Mutex<Option<Bytes>>>;

impl Drop for SpanClaim {
    fn drop(&mut self) {
        if self.blocks.is_empty() {
            return;
        }
        let mut s = self.cache.state.lock().expect("block cache lock");
        for (k, slot, _, ahead) in self.blocks.drain(..) {
            s.release(&k, &slot);
            if ahead {
                s.unread_ahead -= (k.2 - k.1) as usize;
            }
        }
    }
}

impl State {
    /// Ends the fetch of `k` through `slot` (a later fetch may hold another).
    fn release(&mut self, k: &Key, slot: &Slot) {
        if self
            .in_flight
            .get(k)
            .is_some_and(|held| Arc::ptr_eq(held, slot))
        {
            self.in_flight.remove(k);
        }
    }

    fn touch(&mut self, k: &Key) -> Option<Bytes> {
        let tick = self.next_tick;
        let (bytes, used, unread) = self.blocks.get_mut(k)?;
        let old = std::mem::replace(used, tick);
        let bytes = bytes.clone();
        match std::mem::replace(unread, Unread::No) {
            Unread::No => self.by_use.remove(&old),
            Unread::Ahead => {
                self.unread_ahead -= bytes.len();
                self.unread_by_use.remove(&old)
            }
            Unread::Kept => {
                self.kept -= bytes.len();
                self.kept_by_use.remove(&old)
            }
        };
        self.by_use.insert(tick, k.clone());
        self.next_tick += 1;
        Some(bytes)
    }

    /// Keeps `bytes` (read ahead: `ahead`, already counted in
    /// `unread_ahead`); false when it is not kept.
    fn insert(&mut self, k: Key, bytes: Bytes, max_bytes: usize, ahead: bool) -> bool {
        if bytes.len() > max_bytes || self.blocks.contains_key(&k) {
            return false;
        }
        while self.bytes + bytes.len() > max_bytes {
            let Some((_, oldest)) = self
                .by_use
                .pop_first()
                .or_else(|| self.unread_by_use.pop_first())
                .or_else(|| self.kept_by_use.pop_first())
            else {
                break;
            };
            if let Some((gone, _, unread)) = self.blocks.remove(&oldest) {
                self.bytes -= gone.len();
                match unread {
                    Unread::No => {}
                    Unread::Ahead => {
                        self.unread_ahead -= gone.len();
                        self.wasted_ahead += gone.len() as u64;
                    }
                    Unread::Kept => self.kept -= gone.len(),
                }
            }
        }
        let tick = self.next_tick;
        self.next_tick += 1;
        self.bytes += bytes.len();
        if ahead {
            self.unread_by_use.insert(tick, k.clone());
        } else {
            self.by_use.insert(tick, k.clone());
        }
        let unread = if ahead { Unread::Ahead } else { Unread::No };
        self.blocks.insert(k, (bytes, tick, unread));
        true
    }
}

#[cfg(test)]
mod tests;
