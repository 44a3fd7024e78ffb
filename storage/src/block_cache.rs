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
use std::sync::atomic::{AtomicU64, Ordering};
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
    /// One result per needed block, in order.
    pub async fn get_span(
        &self,
        store: &dyn ObjectStore,
        key: &str,
        blocks: &[Range<u64>],
        needed: usize,
        verify: impl Fn(usize, &Bytes) -> Result<()>,
    ) -> Vec<Result<Bytes>> {
        debug_assert!(blocks.windows(2).all(|w| w[0].end == w[1].start));
        let needed = needed.min(blocks.len());
        let mut results = Vec::with_capacity(needed);
        // Claimed slots are new, so locking them cannot wait; readers of
        // any of those blocks wait for this one request.
        let mut claim = SpanClaim {
            cache: self,
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
            let stream_end = blocks[blocks.len() - 1].end;
            let offset = results.len();
            let mut reading = Reading {
                cursor: self
                    .parked
                    .lock()
                    .expect("parked lock")
                    .take(key, first.0.1),
                resumed: false,
                error: None,
            };
            if reading.cursor.is_some() {
                reading.resumed = true;
                self.resumed.fetch_add(1, Ordering::Relaxed);
            }
            let mut i = 0;
            // A claimed block stays in the claim while it is read, so that
            // a read dropped midway gives it back.
            while let Some((k, ..)) = claim.blocks.front() {
                let (start, end) = (k.1, k.2);
                let block = self
                    .read_block(store, key, &mut reading, start..end, stream_end)
                    .await
                    .and_then(|block| verify(offset + i, &block).map(|()| block));
                let (k, slot, mut guard, ahead) =
                    claim.blocks.pop_front().expect("the front block");
                let mut s = self.state.lock().expect("block cache lock");
                s.release(&k, &slot);
                let kept = match &block {
                    // Waiters take the bytes from the slot; a failed block
                    // leaves it empty, and each waiter tries on its own.
                    Ok(bytes) => {
                        *guard = Some(bytes.clone());
                        s.insert(k.clone(), bytes.clone(), self.max_bytes, ahead)
                    }
                    Err(_) => false,
                };
                if ahead && !kept {
                    s.unread_ahead -= (k.2 - k.1) as usize;
                }
                drop(s);
                if offset + i < needed {
                    results.push(block);
                }
                i += 1;
            }
            if let (Some(cursor), None) = (reading.cursor, &reading.error) {
                self.parked.lock().expect("parked lock").park(key, cursor);
            }
        }
        for (i, range) in blocks.iter().enumerate().take(needed).skip(results.len()) {
            let result = self
                .get_range(store, key, range.clone(), |bytes| verify(i, bytes))
                .await;
            results.push(result);
        }
        results
    }
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
struct SpanClaim<'a> {
    cache: &'a BlockCache,
    /// (block, its slot, the slot's lock, read ahead)
    blocks: VecDeque<(Key, Slot, tokio::sync::OwnedMutexGuard<Option<Bytes>>, bool)>,
}

type Slot = Arc<tokio::sync::Mutex<Option<Bytes>>>;

impl Drop for SpanClaim<'_> {
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
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use async_trait::async_trait;

    use super::*;
    use crate::MemoryStore;

    /// A memory store that counts ranged reads and can hold them at a gate.
    struct Counting {
        inner: MemoryStore,
        reads: AtomicUsize,
        gate: tokio::sync::Semaphore,
    }

    #[async_trait]
    impl ObjectStore for Counting {
        async fn put(&self, key: &str, bytes: Bytes) -> Result<()> {
            self.inner.put(key, bytes).await
        }
        async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes> {
            self.reads.fetch_add(1, Ordering::SeqCst);
            self.gate.acquire().await.expect("gate").forget();
            self.inner.get_range(key, range).await
        }
        async fn get(&self, key: &str) -> Result<Bytes> {
            self.inner.get(key).await
        }
        async fn delete(&self, key: &str) -> Result<()> {
            self.inner.delete(key).await
        }
        async fn list(&self, prefix: &str) -> Result<Vec<String>> {
            self.inner.list(prefix).await
        }
    }

    async fn store() -> Counting {
        let inner = MemoryStore::new();
        inner
            .put("o", Bytes::from_static(b"0123456789"))
            .await
            .unwrap();
        Counting {
            inner,
            reads: AtomicUsize::new(0),
            gate: tokio::sync::Semaphore::new(0),
        }
    }

    #[tokio::test]
    async fn concurrent_misses_of_one_block_make_one_request() {
        let store = store().await;
        let cache = BlockCache::new(100);
        let readers = futures::future::join_all(
            (0..8).map(|_| cache.get_range(&store, "o", 2..6, |_| Ok(()))),
        );
        let opener = async {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            store.gate.add_permits(100);
        };
        let (results, ()) = tokio::join!(readers, opener);
        for r in results {
            assert_eq!(r.unwrap(), &b"2345"[..]);
        }
        assert_eq!(store.reads.load(Ordering::SeqCst), 1);
        // And a later read is a hit.
        cache
            .get_range(&store, "o", 2..6, |_| Ok(()))
            .await
            .unwrap();
        assert_eq!(store.reads.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn the_cache_stays_within_its_bytes_evicting_the_least_recently_used() {
        let store = store().await;
        store.gate.add_permits(100);
        let cache = BlockCache::new(8);
        cache
            .get_range(&store, "o", 0..4, |_| Ok(()))
            .await
            .unwrap(); // A
        cache
            .get_range(&store, "o", 4..8, |_| Ok(()))
            .await
            .unwrap(); // B
        cache
            .get_range(&store, "o", 0..4, |_| Ok(()))
            .await
            .unwrap(); // A again: B is now oldest
        cache
            .get_range(&store, "o", 8..10, |_| Ok(()))
            .await
            .unwrap(); // C evicts B
        let stats = cache.stats();
        assert_eq!((stats.blocks, stats.bytes), (2, 6));
        assert_eq!((stats.hits, stats.misses), (1, 3), "A twice, then B and C");
        let before = store.reads.load(Ordering::SeqCst);
        cache
            .get_range(&store, "o", 0..4, |_| Ok(()))
            .await
            .unwrap();
        assert_eq!(store.reads.load(Ordering::SeqCst), before, "A stayed");
        cache
            .get_range(&store, "o", 4..8, |_| Ok(()))
            .await
            .unwrap();
        assert_eq!(
            store.reads.load(Ordering::SeqCst),
            before + 1,
            "B was evicted"
        );
        // A block larger than the whole cache is served but not kept.
        let big = BlockCache::new(3);
        big.get_range(&store, "o", 0..4, |_| Ok(())).await.unwrap();
        let stats = big.stats();
        assert_eq!((stats.blocks, stats.bytes, stats.misses), (0, 0, 1));
    }

    #[tokio::test]
    async fn errors_are_not_cached() {
        let store = store().await;
        store.gate.add_permits(100);
        let cache = BlockCache::new(100);
        assert!(
            cache
                .get_range(&store, "missing", 0..1, |_| Ok(()))
                .await
                .is_err()
        );
        store
            .inner
            .put("missing", Bytes::from_static(b"x"))
            .await
            .unwrap();
        assert_eq!(
            cache
                .get_range(&store, "missing", 0..1, |_| Ok(()))
                .await
                .unwrap(),
            &b"x"[..]
        );
    }

    #[tokio::test]
    async fn bytes_that_fail_their_check_are_neither_served_nor_kept() {
        let store = store().await;
        store.gate.add_permits(100);
        let cache = BlockCache::new(100);
        let refuse = |_: &Bytes| Err(crate::Error::CorruptObject("test".to_string()));
        assert!(matches!(
            cache.get_range(&store, "o", 0..4, refuse).await,
            Err(crate::Error::CorruptObject(_))
        ));
        let stats = cache.stats();
        assert_eq!((stats.blocks, stats.bytes), (0, 0));
    }

    #[tokio::test]
    async fn a_span_is_one_request_and_what_it_reads_ahead_is_kept() {
        let store = store().await;
        store.gate.add_permits(100);
        let cache = BlockCache::new(100);
        // A kept leading block is a hit; the rest, read ahead included, is
        // one request.
        cache
            .get_range(&store, "o", 0..2, |_| Ok(()))
            .await
            .unwrap();
        let blocks = [0..2, 2..4, 4..7, 7..10];
        let got = cache.get_span(&store, "o", &blocks, 2, |_, _| Ok(())).await;
        let got: Vec<Bytes> = got.into_iter().map(|r| r.unwrap()).collect();
        assert_eq!(got, [&b"01"[..], &b"23"[..]]);
        assert_eq!(store.reads.load(Ordering::SeqCst), 2);
        let stats = cache.stats();
        assert_eq!((stats.blocks, stats.bytes, stats.hits), (4, 10, 1));
        for range in &blocks {
            cache
                .get_range(&store, "o", range.clone(), |_| Ok(()))
                .await
                .unwrap();
        }
        assert_eq!(store.reads.load(Ordering::SeqCst), 2, "all kept");
    }

    #[tokio::test]
    async fn a_block_of_a_span_that_fails_its_check_alone_is_refused() {
        let store = store().await;
        store.gate.add_permits(100);
        let cache = BlockCache::new(100);
        let blocks = [0..3, 3..6, 6..10];
        let got = cache
            .get_span(&store, "o", &blocks, 3, |i, _| {
                if i == 1 {
                    Err(crate::Error::CorruptObject("test".to_string()))
                } else {
                    Ok(())
                }
            })
            .await;
        assert_eq!(got[0].as_ref().unwrap(), &b"012"[..]);
        assert!(matches!(got[1], Err(crate::Error::CorruptObject(_))));
        assert_eq!(got[2].as_ref().unwrap(), &b"6789"[..]);
        let stats = cache.stats();
        assert_eq!((stats.blocks, stats.bytes, stats.misses), (2, 7, 1));
    }

    #[tokio::test]
    async fn read_ahead_stays_within_half_the_cache_and_counts_what_it_wastes() {
        let store = store().await;
        store.gate.add_permits(100);
        let cache = BlockCache::new(10);
        // Half of 10 bytes: one 3-byte block ahead, not two.
        let blocks = [0..2, 2..5, 5..8, 8..10];
        cache.get_span(&store, "o", &blocks, 1, |_, _| Ok(())).await;
        let stats = cache.stats();
        assert_eq!(
            (stats.blocks, stats.bytes, stats.read_ahead_bytes),
            (2, 5, 3)
        );
        // Reading the block read ahead frees the budget for the next two.
        cache
            .get_span(&store, "o", &blocks[1..], 1, |_, _| Ok(()))
            .await;
        let stats = cache.stats();
        assert_eq!((stats.hits, stats.read_ahead_bytes), (1, 8));
        // Blocks read ahead and evicted unread are counted as wasted.
        cache
            .get_range(&store, "o", 0..9, |_| Ok(()))
            .await
            .unwrap();
        let stats = cache.stats();
        assert_eq!((stats.blocks, stats.read_ahead_wasted_bytes), (1, 5));
    }

    #[tokio::test]
    async fn a_block_a_reader_stopped_inside_outlives_blocks_read_through() {
        let store = store().await;
        store.gate.add_permits(100);
        store
            .inner
            .put("p", Bytes::from(vec![7u8; 32]))
            .await
            .unwrap();
        // 16 bytes: a quarter is one 4-byte block kept.
        let cache = BlockCache::new(16);
        let read = |range: Range<u64>| cache.get_range(&store, "p", range, |_| Ok(()));
        let kept = || cache.state.lock().unwrap().kept;
        read(0..4).await.unwrap(); // A: the reader stopped inside it
        cache.keep_for_next_read("p", 0..4);
        for start in [4, 8, 12] {
            read(start..start + 4).await.unwrap(); // B, C, D: read through
        }
        read(16..20).await.unwrap(); // E evicts B, not A
        assert_eq!(store.reads.load(Ordering::SeqCst), 5);
        read(0..4).await.unwrap();
        assert_eq!(store.reads.load(Ordering::SeqCst), 5, "A was kept");
        assert_eq!(kept(), 0, "read again, A is an ordinary block");
        // Keeping twice counts once; a block not held, or over a quarter
        // of the cache, is not kept.
        cache.keep_for_next_read("p", 0..4);
        cache.keep_for_next_read("p", 0..4);
        cache.keep_for_next_read("p", 1..3);
        read(20..28).await.unwrap();
        cache.keep_for_next_read("p", 20..28);
        assert_eq!(kept(), 4);
        // A new block kept past the quarter sends the oldest back to the
        // blocks read: A goes before the blocks read after it.
        read(4..8).await.unwrap();
        cache.keep_for_next_read("p", 4..8);
        assert_eq!(kept(), 4);
        read(28..32).await.unwrap();
        let reads = store.reads.load(Ordering::SeqCst);
        read(0..4).await.unwrap();
        assert_eq!(
            store.reads.load(Ordering::SeqCst),
            reads + 1,
            "A was evicted"
        );
        // Evicted unread (by a block as large as the cache), a kept block
        // is not read-ahead wasted.
        assert_eq!(kept(), 4);
        read(0..16).await.unwrap();
        let stats = cache.stats();
        assert_eq!((stats.blocks, stats.read_ahead_wasted_bytes), (1, 0));
        assert_eq!(kept(), 0);
    }

    #[tokio::test]
    async fn a_span_read_dropped_midway_gives_back_its_slots_and_read_ahead() {
        let store = store().await;
        let cache = BlockCache::new(10);
        let blocks = [0..2, 2..5, 5..7];
        {
            // The store holds the read at its gate; the read is dropped.
            let read = cache.get_span(&store, "o", &blocks, 1, |_, _| Ok(()));
            let dropped = tokio::time::timeout(std::time::Duration::from_millis(20), read).await;
            assert!(dropped.is_err(), "the gate held the read");
        }
        store.gate.add_permits(100);
        // Nothing is left in flight, and the whole read-ahead budget is back.
        let got = cache.get_span(&store, "o", &blocks, 1, |_, _| Ok(())).await;
        assert_eq!(got[0].as_ref().unwrap(), &b"01"[..]);
        let stats = cache.stats();
        assert_eq!(
            (stats.blocks, stats.bytes),
            (3, 7),
            "one request, read ahead in full"
        );
        assert_eq!(store.reads.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn blocks_already_read_are_evicted_before_blocks_read_ahead() {
        let store = store().await;
        store.gate.add_permits(100);
        let cache = BlockCache::new(8);
        // 0..2 needed, 2..4 read ahead (within half of 8), both kept.
        cache
            .get_span(&store, "o", &[0..2, 2..4], 1, |_, _| Ok(()))
            .await;
        // 0..2 read again: newer than 2..4, which plain LRU would evict first.
        cache
            .get_range(&store, "o", 0..2, |_| Ok(()))
            .await
            .unwrap();
        // 4..9 (read) needs room for 5 bytes: 0..2 goes, not the unread 2..4.
        cache
            .get_range(&store, "o", 4..9, |_| Ok(()))
            .await
            .unwrap();
        let stats = cache.stats();
        assert_eq!(
            (stats.blocks, stats.bytes, stats.read_ahead_wasted_bytes),
            (2, 7, 0)
        );
        let reads = store.reads.load(Ordering::SeqCst);
        cache
            .get_range(&store, "o", 2..4, |_| Ok(()))
            .await
            .unwrap();
        assert_eq!(
            store.reads.load(Ordering::SeqCst),
            reads,
            "the read-ahead stayed"
        );
    }

    #[tokio::test]
    async fn a_block_read_ahead_that_a_waiting_reader_got_counts_as_read() {
        let store = store().await;
        let cache = BlockCache::new(10);
        // The span read claims 0..2 and, ahead, 2..5; a reader of 2..5
        // waits for it; then the store answers.
        let span = cache.get_span(&store, "o", &[0..2, 2..5], 1, |_, _| Ok(()));
        let waiter = cache.get_range(&store, "o", 2..5, |_| Ok(()));
        let opener = async {
            tokio::task::yield_now().await;
            store.gate.add_permits(100);
        };
        let (_, got, ()) = tokio::join!(span, waiter, opener);
        assert_eq!(got.unwrap(), &b"234"[..]);
        assert_eq!(store.reads.load(Ordering::SeqCst), 1);
        // Evicting everything: nothing read ahead was left unread.
        cache
            .get_range(&store, "o", 0..10, |_| Ok(()))
            .await
            .unwrap();
        assert_eq!(cache.stats().read_ahead_wasted_bytes, 0);
    }

    /// A memory store whose streamed reads come in 3-byte chunks, counted;
    /// streams opened before `broken_before` fail on their next pull (a
    /// server that closed a connection while it was parked).
    struct Chunked {
        inner: MemoryStore,
        opened: std::sync::Arc<AtomicUsize>,
        broken_before: std::sync::Arc<AtomicUsize>,
    }

    #[async_trait]
    impl ObjectStore for Chunked {
        async fn put(&self, key: &str, bytes: Bytes) -> Result<()> {
            self.inner.put(key, bytes).await
        }
        async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes> {
            self.inner.get_range(key, range).await
        }
        async fn get_range_stream(
            &self,
            key: &str,
            range: Range<u64>,
        ) -> Result<crate::ByteChunks> {
            let bytes = self.inner.get_range(key, range).await?;
            let generation = self.opened.fetch_add(1, Ordering::SeqCst);
            let broken = self.broken_before.clone();
            let chunks: Vec<Bytes> = bytes.chunks(3).map(Bytes::copy_from_slice).collect();
            Ok(Box::pin(futures::StreamExt::map(
                futures::stream::iter(chunks),
                move |c| {
                    if generation < broken.load(Ordering::SeqCst) {
                        Err(crate::Error::Unavailable("connection closed".into()))
                    } else {
                        Ok(c)
                    }
                },
            )))
        }
        async fn get(&self, key: &str) -> Result<Bytes> {
            self.inner.get(key).await
        }
        async fn delete(&self, key: &str) -> Result<()> {
            self.inner.delete(key).await
        }
        async fn list(&self, prefix: &str) -> Result<Vec<String>> {
            self.inner.list(prefix).await
        }
    }

    #[tokio::test]
    async fn the_next_read_of_a_span_goes_on_with_the_parked_stream() {
        let store = Chunked {
            inner: MemoryStore::new(),
            opened: Default::default(),
            broken_before: Default::default(),
        };
        let object: Vec<u8> = (0..40u8).collect();
        store.put("s", Bytes::from(object.clone())).await.unwrap();
        let blocks: Vec<Range<u64>> = (0..10).map(|i| i * 4..i * 4 + 4).collect();
        let expect = |from: usize, n: usize| -> Vec<Vec<u8>> {
            (from..from + n)
                .map(|i| object[i * 4..i * 4 + 4].to_vec())
                .collect()
        };
        let read = |results: Vec<Result<Bytes>>| -> Vec<Vec<u8>> {
            results.into_iter().map(|r| r.unwrap().to_vec()).collect()
        };
        // 16 bytes of cache: two blocks read ahead at most.
        let cache = BlockCache::new(16);
        let first = cache.get_span(&store, "s", &blocks, 2, |_, _| Ok(())).await;
        assert_eq!(read(first), expect(0, 2));
        assert_eq!(store.opened.load(Ordering::SeqCst), 1);
        assert_eq!(cache.stats().parked_streams, 1);
        // Blocks 2 and 3 were read ahead; 4 and 5 come from the stream.
        let second = cache
            .get_span(&store, "s", &blocks[2..], 4, |_, _| Ok(()))
            .await;
        assert_eq!(read(second), expect(2, 4));
        let stats = cache.stats();
        assert_eq!(store.opened.load(Ordering::SeqCst), 1, "one request so far");
        assert_eq!((stats.resumed_streams, stats.misses), (1, 1));
        // The server closes the parked stream: read afresh, once.
        store.broken_before.store(1, Ordering::SeqCst);
        let third = cache
            .get_span(&store, "s", &blocks[6..], 4, |_, _| Ok(()))
            .await;
        assert_eq!(read(third), expect(6, 4));
        assert_eq!(store.opened.load(Ordering::SeqCst), 2);
        // Spent streams are not parked.
        assert_eq!(cache.stats().parked_streams, 0);
    }

    #[tokio::test]
    async fn a_block_that_is_its_whole_chunk_is_not_copied() {
        let store = MemoryStore::new();
        store.put("m", Bytes::from(vec![7u8; 64])).await.unwrap();
        let object = store.get("m").await.unwrap();
        let cache = BlockCache::new(1024);
        let one_block = vec![Range { start: 8, end: 24 }];
        let got = cache
            .get_span(&store, "m", &one_block, 1, |_, _| Ok(()))
            .await;
        let block = got.into_iter().next().unwrap().unwrap();
        assert_eq!(
            block.as_ptr(),
            object[8..].as_ptr(),
            "the store's bytes, not a copy"
        );
        // A block inside a larger chunk is copied out of it.
        let cache = BlockCache::new(1024);
        let got = cache
            .get_span(&store, "m", &[8..24, 24..40], 1, |_, _| Ok(()))
            .await;
        let block = got.into_iter().next().unwrap().unwrap();
        assert_ne!(block.as_ptr(), object[8..].as_ptr());
        assert_eq!(block, object.slice(8..24));
    }
}
