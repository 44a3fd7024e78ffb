use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;

use super::*;
use crate::MemoryStore;

/// A test's `ObjectStore` over its `inner` memory store: `put`, `get`,
/// `delete` and `list` go straight to it; the invocation gives the reads
/// (`get_range`, `get_range_stream`) the test watches or holds.
macro_rules! memory_backed_store {
    ($store:ty { $($read:item)* }) => {
        #[async_trait]
        impl ObjectStore for $store {
            async fn put(&self, key: &str, bytes: Bytes) -> Result<()> {
                self.inner.put(key, bytes).await
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
            $($read)*
        }
    };
}

/// A memory store that counts ranged reads and can hold them at a gate.
struct Counting {
    inner: MemoryStore,
    reads: AtomicUsize,
    gate: tokio::sync::Semaphore,
}

memory_backed_store! {
    Counting {
        async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes> {
            self.reads.fetch_add(1, Ordering::SeqCst);
            self.gate.acquire().await.expect("gate").forget();
            self.inner.get_range(key, range).await
        }
    }
}

async fn store() -> Arc<Counting> {
    let inner = MemoryStore::new();
    inner
        .put("o", Bytes::from_static(b"0123456789"))
        .await
        .unwrap();
    Arc::new(Counting {
        inner,
        reads: AtomicUsize::new(0),
        gate: tokio::sync::Semaphore::new(0),
    })
}

#[tokio::test]
async fn concurrent_misses_of_one_block_make_one_request() {
    let store = store().await;
    let cache = Arc::new(BlockCache::new(100));
    let readers =
        futures::future::join_all((0..8).map(|_| cache.get_range(&*store, "o", 2..6, |_| Ok(()))));
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
        .get_range(&*store, "o", 2..6, |_| Ok(()))
        .await
        .unwrap();
    assert_eq!(store.reads.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn the_cache_stays_within_its_bytes_evicting_the_least_recently_used() {
    let store = store().await;
    store.gate.add_permits(100);
    let cache = Arc::new(BlockCache::new(8));
    cache
        .get_range(&*store, "o", 0..4, |_| Ok(()))
        .await
        .unwrap(); // A
    cache
        .get_range(&*store, "o", 4..8, |_| Ok(()))
        .await
        .unwrap(); // B
    cache
        .get_range(&*store, "o", 0..4, |_| Ok(()))
        .await
        .unwrap(); // A again: B is now oldest
    cache
        .get_range(&*store, "o", 8..10, |_| Ok(()))
        .await
        .unwrap(); // C evicts B
    let stats = cache.stats();
    assert_eq!((stats.blocks, stats.bytes), (2, 6));
    assert_eq!((stats.hits, stats.misses), (1, 3), "A twice, then B and C");
    let before = store.reads.load(Ordering::SeqCst);
    cache
        .get_range(&*store, "o", 0..4, |_| Ok(()))
        .await
        .unwrap();
    assert_eq!(store.reads.load(Ordering::SeqCst), before, "A stayed");
    cache
        .get_range(&*store, "o", 4..8, |_| Ok(()))
        .await
        .unwrap();
    assert_eq!(
        store.reads.load(Ordering::SeqCst),
        before + 1,
        "B was evicted"
    );
    // A block larger than the whole cache is served but not kept.
    let big = Arc::new(BlockCache::new(3));
    big.get_range(&*store, "o", 0..4, |_| Ok(())).await.unwrap();
    let stats = big.stats();
    assert_eq!((stats.blocks, stats.bytes, stats.misses), (0, 0, 1));
}

#[tokio::test]
async fn errors_are_not_cached() {
    let store = store().await;
    store.gate.add_permits(100);
    let cache = Arc::new(BlockCache::new(100));
    assert!(
        cache
            .get_range(&*store, "missing", 0..1, |_| Ok(()))
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
            .get_range(&*store, "missing", 0..1, |_| Ok(()))
            .await
            .unwrap(),
        &b"x"[..]
    );
}

#[tokio::test]
async fn bytes_that_fail_their_check_are_neither_served_nor_kept() {
    let store = store().await;
    store.gate.add_permits(100);
    let cache = Arc::new(BlockCache::new(100));
    let refuse = |_: &Bytes| Err(crate::Error::CorruptObject("test".to_string()));
    assert!(matches!(
        cache.get_range(&*store, "o", 0..4, refuse).await,
        Err(crate::Error::CorruptObject(_))
    ));
    let stats = cache.stats();
    assert_eq!((stats.blocks, stats.bytes), (0, 0));
}

#[tokio::test]
async fn a_span_is_one_request_and_what_it_reads_ahead_is_kept() {
    let store = store().await;
    store.gate.add_permits(100);
    let cache = Arc::new(BlockCache::new(100));
    // A kept leading block is a hit; the rest, read ahead included, is
    // one request.
    cache
        .get_range(&*store, "o", 0..2, |_| Ok(()))
        .await
        .unwrap();
    let blocks = [0..2, 2..4, 4..7, 7..10];
    let got = cache
        .get_span(store.clone(), "o", &blocks, 2, |_, _| Ok(()))
        .await;
    let got: Vec<Bytes> = got.into_iter().map(|r| r.unwrap()).collect();
    assert_eq!(got, [&b"01"[..], &b"23"[..]]);
    // The blocks ahead come after the answer.
    cache.read_ahead_settled().await;
    assert_eq!(store.reads.load(Ordering::SeqCst), 2);
    let stats = cache.stats();
    assert_eq!((stats.blocks, stats.bytes, stats.hits), (4, 10, 1));
    for range in &blocks {
        cache
            .get_range(&*store, "o", range.clone(), |_| Ok(()))
            .await
            .unwrap();
    }
    assert_eq!(store.reads.load(Ordering::SeqCst), 2, "all kept");
}

#[tokio::test]
async fn a_block_of_a_span_that_fails_its_check_alone_is_refused() {
    let store = store().await;
    store.gate.add_permits(100);
    let cache = Arc::new(BlockCache::new(100));
    let blocks = [0..3, 3..6, 6..10];
    let got = cache
        .get_span(store.clone(), "o", &blocks, 3, |i, _| {
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
    let cache = Arc::new(BlockCache::new(10));
    // Half of 10 bytes: one 3-byte block ahead, not two.
    let blocks = [0..2, 2..5, 5..8, 8..10];
    cache
        .get_span(store.clone(), "o", &blocks, 1, |_, _| Ok(()))
        .await;
    cache.read_ahead_settled().await;
    let stats = cache.stats();
    assert_eq!(
        (stats.blocks, stats.bytes, stats.read_ahead_bytes),
        (2, 5, 3)
    );
    // Reading the block read ahead frees the budget for the next two.
    cache
        .get_span(store.clone(), "o", &blocks[1..], 1, |_, _| Ok(()))
        .await;
    cache.read_ahead_settled().await;
    let stats = cache.stats();
    assert_eq!((stats.hits, stats.read_ahead_bytes), (1, 8));
    // Blocks read ahead and evicted unread are counted as wasted.
    cache
        .get_range(&*store, "o", 0..9, |_| Ok(()))
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
    let cache = Arc::new(BlockCache::new(16));
    let read = |range: Range<u64>| cache.get_range(&*store, "p", range, |_| Ok(()));
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
    let cache = Arc::new(BlockCache::new(10));
    let blocks = [0..2, 2..5, 5..7];
    {
        // The store holds the read at its gate; the read is dropped.
        let read = cache.get_span(store.clone(), "o", &blocks, 1, |_, _| Ok(()));
        let dropped = tokio::time::timeout(std::time::Duration::from_millis(20), read).await;
        assert!(dropped.is_err(), "the gate held the read");
    }
    store.gate.add_permits(100);
    // Nothing is left in flight, and the whole read-ahead budget is back.
    let got = cache
        .get_span(store.clone(), "o", &blocks, 1, |_, _| Ok(()))
        .await;
    assert_eq!(got[0].as_ref().unwrap(), &b"01"[..]);
    cache.read_ahead_settled().await;
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
    let cache = Arc::new(BlockCache::new(8));
    // 0..2 needed, 2..4 read ahead (within half of 8), both kept.
    cache
        .get_span(store.clone(), "o", &[0..2, 2..4], 1, |_, _| Ok(()))
        .await;
    // 0..2 read again: newer than 2..4, which plain LRU would evict first.
    cache
        .get_range(&*store, "o", 0..2, |_| Ok(()))
        .await
        .unwrap();
    // 4..9 (read) needs room for 5 bytes: 0..2 goes, not the unread 2..4.
    cache
        .get_range(&*store, "o", 4..9, |_| Ok(()))
        .await
        .unwrap();
    let stats = cache.stats();
    assert_eq!(
        (stats.blocks, stats.bytes, stats.read_ahead_wasted_bytes),
        (2, 7, 0)
    );
    let reads = store.reads.load(Ordering::SeqCst);
    cache
        .get_range(&*store, "o", 2..4, |_| Ok(()))
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
    let cache = Arc::new(BlockCache::new(10));
    // The span read claims 0..2 and, ahead, 2..5; a reader of 2..5
    // waits for it; then the store answers.
    let span = cache.get_span(store.clone(), "o", &[0..2, 2..5], 1, |_, _| Ok(()));
    let waiter = cache.get_range(&*store, "o", 2..5, |_| Ok(()));
    let opener = async {
        tokio::task::yield_now().await;
        store.gate.add_permits(100);
    };
    let (_, got, ()) = tokio::join!(span, waiter, opener);
    assert_eq!(got.unwrap(), &b"234"[..]);
    assert_eq!(store.reads.load(Ordering::SeqCst), 1);
    // Evicting everything: nothing read ahead was left unread.
    cache
        .get_range(&*store, "o", 0..10, |_| Ok(()))
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

memory_backed_store! {
    Chunked {
        async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes> {
            self.inner.get_range(key, range).await
        }
        async fn get_range_stream(&self, key: &str, range: Range<u64>) -> Result<crate::ByteChunks> {
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
    }
}

#[tokio::test]
async fn the_next_read_of_a_span_goes_on_with_the_parked_stream() {
    let store = Arc::new(Chunked {
        inner: MemoryStore::new(),
        opened: Default::default(),
        broken_before: Default::default(),
    });
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
    let cache = Arc::new(BlockCache::new(16));
    let first = cache
        .get_span(store.clone(), "s", &blocks, 2, |_, _| Ok(()))
        .await;
    assert_eq!(read(first), expect(0, 2));
    cache.read_ahead_settled().await;
    assert_eq!(store.opened.load(Ordering::SeqCst), 1);
    assert_eq!(cache.stats().parked_streams, 1);
    // Blocks 2 and 3 were read ahead; 4 and 5 come from the stream.
    let second = cache
        .get_span(store.clone(), "s", &blocks[2..], 4, |_, _| Ok(()))
        .await;
    assert_eq!(read(second), expect(2, 4));
    cache.read_ahead_settled().await;
    let stats = cache.stats();
    assert_eq!(store.opened.load(Ordering::SeqCst), 1, "one request so far");
    assert_eq!((stats.resumed_streams, stats.misses), (1, 1));
    // The server closes the parked stream: read afresh, once.
    store.broken_before.store(1, Ordering::SeqCst);
    let third = cache
        .get_span(store.clone(), "s", &blocks[6..], 4, |_, _| Ok(()))
        .await;
    assert_eq!(read(third), expect(6, 4));
    assert_eq!(store.opened.load(Ordering::SeqCst), 2);
    // Spent streams are not parked.
    assert_eq!(cache.stats().parked_streams, 0);
}

/// A memory store whose streamed reads come in 4-byte chunks, the first
/// at once and each later one when `gate` lets it through (a server
/// still sending what was read ahead).
struct Trickling {
    inner: MemoryStore,
    opened: AtomicUsize,
    gate: Arc<tokio::sync::Semaphore>,
}

memory_backed_store! {
    Trickling {
        async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes> {
            self.inner.get_range(key, range).await
        }
        async fn get_range_stream(&self, key: &str, range: Range<u64>) -> Result<crate::ByteChunks> {
            self.opened.fetch_add(1, Ordering::SeqCst);
            let bytes = self.inner.get_range(key, range).await?;
            let chunks: Vec<Bytes> = bytes.chunks(4).map(Bytes::copy_from_slice).collect();
            let gate = self.gate.clone();
            Ok(Box::pin(futures::stream::unfold(
                (chunks.into_iter(), gate, true),
                |(mut chunks, gate, first)| async move {
                    let chunk = chunks.next()?;
                    if !first {
                        gate.acquire().await.expect("gate").forget();
                    }
                    Some((Ok(chunk), (chunks, gate, false)))
                },
            )))
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_span_answers_before_what_it_reads_ahead_arrives() {
    let store = Arc::new(Trickling {
        inner: MemoryStore::new(),
        opened: AtomicUsize::new(0),
        gate: Arc::new(tokio::sync::Semaphore::new(0)),
    });
    let object: Vec<u8> = (0..16u8).collect();
    store.put("t", Bytes::from(object.clone())).await.unwrap();
    let blocks: Vec<Range<u64>> = (0..4).map(|i| i * 4..i * 4 + 4).collect();
    let cache = Arc::new(BlockCache::new(64));
    // Block 0 is needed, 1..3 are read ahead; only block 0 has arrived.
    // (The paused clock runs the hour out at once if the read waits.)
    let got = tokio::time::timeout(
        std::time::Duration::from_secs(3600),
        cache.get_span(store.clone(), "t", &blocks, 1, |_, _| Ok(())),
    )
    .await
    .expect("answered without the blocks read ahead");
    assert_eq!(got[0].as_ref().unwrap(), &object[0..4]);
    // A reader of a block read ahead waits for that block, and it comes
    // from the same stream.
    let reader = cache.get_range(&*store, "t", 4..8, |_| Ok(()));
    let opener = async {
        tokio::task::yield_now().await;
        store.gate.add_permits(1);
    };
    let (block, ()) = tokio::join!(reader, opener);
    assert_eq!(block.unwrap(), &object[4..8]);
    store.gate.add_permits(2);
    cache.read_ahead_settled().await;
    let stats = cache.stats();
    assert_eq!((stats.blocks, stats.bytes, stats.misses), (4, 16, 1));
    assert_eq!(store.opened.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_block_that_is_its_whole_chunk_is_not_copied() {
    let store = Arc::new(MemoryStore::new());
    store.put("m", Bytes::from(vec![7u8; 64])).await.unwrap();
    let object = store.get("m").await.unwrap();
    let cache = Arc::new(BlockCache::new(1024));
    let one_block = vec![Range { start: 8, end: 24 }];
    let got = cache
        .get_span(store.clone(), "m", &one_block, 1, |_, _| Ok(()))
        .await;
    let block = got.into_iter().next().unwrap().unwrap();
    assert_eq!(
        block.as_ptr(),
        object[8..].as_ptr(),
        "the store's bytes, not a copy"
    );
    // A block inside a larger chunk is copied out of it.
    let cache = Arc::new(BlockCache::new(1024));
    let got = cache
        .get_span(store.clone(), "m", &[8..24, 24..40], 1, |_, _| Ok(()))
        .await;
    let block = got.into_iter().next().unwrap().unwrap();
    assert_ne!(block.as_ptr(), object[8..].as_ptr());
    assert_eq!(block, object.slice(8..24));
}
