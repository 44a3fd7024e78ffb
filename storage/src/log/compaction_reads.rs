//! The ranged reads of rewrites that run together (`Log::compact_partitions`).
//!
//! A flush object holds a run of every partition that had data in the
//! flush, side by side. Rewriting partition by partition reads each run on
//! its own: one GET per (flush, partition), some 90,000 per GB rewritten
//! when flushes are small (docs/benchmarks.md). Rewrites of several
//! partitions running at once read each flush object's runs of all of them
//! with one ranged read (a *span*) instead, and each rewrite takes its run
//! out of it.
//!
//! Spans are read when the first rewrite asks for a run in them, and let go
//! once every rewrite has taken its run. Rewrites go at their own pace (one
//! partition may have more bytes per flush than another), so spans read for
//! a rewrite that is ahead wait for the others: they are held within
//! `max_held_bytes`, and a run asked for when its span would not fit is read
//! on its own (as it would be without the others) and left out of the span
//! when it is read later. Memory: the held spans, plus the runs handed out
//! (copied out of their span, so that a span goes when the last rewrite has
//! taken its run).

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use metadata::IndexEntry;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::{CompactionLimits, Inner};
use crate::{Error, Result};

/// Bytes of spans held at once, by default.
pub(crate) const SPAN_BYTES_HELD: u64 = 32 * 1024 * 1024;

/// Runs close together in one object share a span while the runs asked
/// for make up at least half of its bytes (the rest are runs of partitions
/// not rewritten with them).
const SPAN_MAX_WASTE: u64 = 2;

/// Reads the runs of one or more rewrites (see the module doc).
pub(crate) struct RunReads {
    inner: Arc<Inner>,
    limits: CompactionLimits,
    /// Ranged reads in flight at once, over all the rewrites.
    gets: Arc<Semaphore>,
    /// The spans of each object (runs asked for alone have none).
    spans: HashMap<String, Vec<Arc<Span>>>,
    /// Room for held spans, in KiB.
    room: Arc<Semaphore>,
}

/// Runs asked for that lie close together in one object, and their read
/// while some are still to be taken.
struct Span {
    /// Where the runs lie in the object.
    range: Range<u64>,
    /// Held by the ask that reads the span, so that the others wait for it.
    state: tokio::sync::Mutex<SpanState>,
}

struct SpanState {
    /// (position, length, taken) of each run.
    runs: Vec<(u64, u64, bool)>,
    /// `None` until read, and again once every run is taken.
    read: Option<SpanRead>,
}

impl SpanState {
    fn wanted(&self, position: u64) -> bool {
        self.runs.iter().any(|r| r.0 == position && !r.2)
    }

    /// Marks the run at `position` taken; lets the read go after the last.
    fn take(&mut self, position: u64) {
        if let Some(run) = self.runs.iter_mut().find(|r| r.0 == position) {
            run.2 = true;
        }
        if self.runs.iter().all(|r| r.2) {
            self.read = None;
        }
    }
}

struct SpanRead {
    start: u64,
    bytes: Bytes,
    _room: OwnedSemaphorePermit,
}

impl RunReads {
    /// Reads for rewrites of the runs in `runs` (each an index entry,
    /// listed once), at most `gets` ranged reads at once, each paced to
    /// `limits`, holding at most `max_held_bytes` of spans.
    pub(crate) fn new<'a>(
        inner: Arc<Inner>,
        limits: CompactionLimits,
        gets: usize,
        runs: impl IntoIterator<Item = &'a IndexEntry>,
        max_held_bytes: u64,
    ) -> RunReads {
        let mut by_object: HashMap<String, Vec<(u64, u64, bool)>> = HashMap::new();
        for e in runs {
            by_object
                .entry(e.object_key.clone())
                .or_default()
                .push((e.position, e.length, false));
        }
        // No room: every run is read alone.
        let spans = by_object
            .into_iter()
            .filter(|_| max_held_bytes > 0)
            .map(|(key, runs)| (key, spans_of(runs)))
            .filter(|(_, spans)| !spans.is_empty())
            .collect();
        RunReads {
            inner,
            limits,
            gets: Arc::new(Semaphore::new(gets.max(1))),
            spans,
            room: Arc::new(Semaphore::new(kib(max_held_bytes) as usize)),
        }
    }

    /// The bytes of `entry`'s run: out of its span when it has one (read now
    /// if no rewrite asked for it yet, when it fits), else read alone.
    pub(crate) async fn run(&self, entry: &IndexEntry) -> Result<Bytes> {
        let range = entry.position..entry.position + entry.length;
        let Some(span) = self.span_of(entry) else {
            return self.read(&entry.object_key, range).await;
        };
        let from_span = {
            let mut state = span.state.lock().await;
            // Not wanted any more: its rewrite gave up on it (`release`).
            let wanted = state.wanted(range.start);
            // Read as a span only while others want runs in it too.
            let shared = state.runs.iter().filter(|r| !r.2).count() >= 2;
            if wanted && shared && state.read.is_none() {
                match self.read_span(&entry.object_key, &state).await {
                    Ok(got) => state.read = Some(got),
                    // This run is read alone; the next ask tries again.
                    Err(SpanError::NoRoom) => {}
                    Err(SpanError::Failed(e)) => {
                        state.take(range.start);
                        return Err(e);
                    }
                }
            }
            let bytes = state.read.as_ref().filter(|_| wanted).and_then(|read| {
                let at = range.start.checked_sub(read.start)? as usize;
                let bytes = read.bytes.get(at..at + entry.length as usize)?;
                // A copy, so that the span goes once every run is taken.
                Some(Bytes::copy_from_slice(bytes))
            });
            state.take(range.start);
            bytes
        };
        match from_span {
            Some(bytes) => Ok(bytes),
            None => self.read(&entry.object_key, range).await,
        }
    }

    /// Marks every run of `entries` taken, asked for or not: a rewrite
    /// that stopped early lets go of the spans it would have shared.
    pub(crate) async fn release(&self, entries: &[IndexEntry]) {
        for entry in entries {
            if let Some(span) = self.span_of(entry) {
                span.state.lock().await.take(entry.position);
            }
        }
    }

    fn span_of(&self, entry: &IndexEntry) -> Option<&Arc<Span>> {
        let spans = self.spans.get(&entry.object_key)?;
        spans.iter().find(|s| s.range.contains(&entry.position))
    }

    /// Reads the span of the runs not taken yet; `NoRoom` when that would
    /// not fit in the room left.
    async fn read_span(
        &self,
        key: &str,
        state: &SpanState,
    ) -> std::result::Result<SpanRead, SpanError> {
        let wanted = state.runs.iter().filter(|r| !r.2);
        let start = wanted.clone().map(|r| r.0).min().unwrap_or(0);
        let end = wanted.map(|r| r.0 + r.1).max().unwrap_or(0);
        let room = self
            .room
            .clone()
            .try_acquire_many_owned(kib(end - start))
            .map_err(|_| SpanError::NoRoom)?;
        let bytes = self
            .read(key, start..end)
            .await
            .map_err(SpanError::Failed)?;
        super::stats::bump(&self.inner.stats.compaction_span_reads, 1);
        Ok(SpanRead {
            start,
            bytes,
            _room: room,
        })
    }

    async fn read(&self, key: &str, range: Range<u64>) -> Result<Bytes> {
        let _get = self.gets.acquire().await.expect("never closed");
        let bytes = range.end - range.start;
        super::compaction::pace(&self.inner, &self.limits, bytes).await;
        self.inner.compaction_store().get_range(key, range).await
    }
}

/// Why a span was not read.
enum SpanError {
    NoRoom,
    Failed(Error),
}

/// The spans of one object's runs: runs in position order, each span as
/// long as its runs make up at least 1/`SPAN_MAX_WASTE` of it; runs that
/// would be alone in theirs get none.
fn spans_of(mut runs: Vec<(u64, u64, bool)>) -> Vec<Arc<Span>> {
    runs.sort_unstable_by_key(|r| r.0);
    let mut spans = Vec::new();
    let mut current: Vec<(u64, u64, bool)> = Vec::new();
    let mut wanted = 0u64;
    let close = |current: &mut Vec<(u64, u64, bool)>, spans: &mut Vec<Arc<Span>>| {
        if current.len() >= 2 {
            let start = current[0].0;
            let end = current.iter().map(|r| r.0 + r.1).max().unwrap_or(start);
            let state = SpanState {
                runs: std::mem::take(current),
                read: None,
            };
            spans.push(Arc::new(Span {
                range: start..end,
                state: tokio::sync::Mutex::new(state),
            }));
        }
        current.clear();
    };
    for run in runs {
        if let Some(first) = current.first() {
            let end = (run.0 + run.1).max(current.iter().map(|r| r.0 + r.1).max().unwrap_or(0));
            if end - first.0 > SPAN_MAX_WASTE * (wanted + run.1) {
                close(&mut current, &mut spans);
                wanted = 0;
            }
        }
        wanted += run.1;
        current.push(run);
    }
    close(&mut current, &mut spans);
    spans
}

/// Bytes in KiB (rounded up) for the room semaphore's permits.
fn kib(bytes: u64) -> u32 {
    u32::try_from(bytes.div_ceil(1024)).unwrap_or(u32::MAX)
}
