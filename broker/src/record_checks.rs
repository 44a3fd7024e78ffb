//! Where produce batches are validated: small ones on the connection's own
//! task, large and compressed ones on a bounded pool of blocking threads.
//!
//! Reading every record (and decompressing a compressed batch to do it)
//! costs CPU in proportion to the batch. On the async workers that would let
//! one client's zip bombs stall every other connection those workers serve,
//! so only work that is small by construction stays inline: an uncompressed
//! batch up to `INLINE_BATCH_BYTES`, and a compressed one until its output
//! passes `INLINE_DECOMPRESSED_BYTES`, after which it starts again on the
//! pool. The pool has one slot per core but one (which stays with the async
//! workers); a connection validates one batch at
//! a time (its reader waits for the answer), so a flood of bombs from a few
//! connections queues behind itself while small batches of everyone else
//! keep flowing inline. A refused request costs its sender.

use std::sync::Arc;

use protocol::batch::ValidBatch;
use protocol::records::RecordChecks;
use tokio::sync::Semaphore;

/// Uncompressed batches up to this size are read inline (tens of µs).
const INLINE_BATCH_BYTES: usize = 64 * 1024;
/// Decompressed output an inline check may produce before it moves to the pool.
const INLINE_DECOMPRESSED_BYTES: usize = 256 * 1024;

pub struct RecordCheckPool {
    slots: Arc<Semaphore>,
}

impl RecordCheckPool {
    /// A pool of `threads` blocking slots (at least one).
    pub fn new(threads: usize) -> Self {
        RecordCheckPool {
            slots: Arc::new(Semaphore::new(threads.max(1))),
        }
    }

    /// One slot per core of this machine but one, which stays with the
    /// async workers (at least one slot).
    pub fn per_core() -> Self {
        Self::new(std::thread::available_parallelism().map_or(1, |n| n.get().saturating_sub(1)))
    }

    /// Validates one produce batch (`protocol::batch::validate_produce_batch`),
    /// inline when it is cheap and on the pool otherwise.
    pub async fn validate(
        &self,
        records: &bytes::Bytes,
        checks: RecordChecks,
    ) -> Result<ValidBatch, protocol::Error> {
        let header = protocol::batch::check_produce_header(records)?;
        if records.len() <= INLINE_BATCH_BYTES {
            let inline = RecordChecks {
                max_decompressed_bytes: checks
                    .max_decompressed_bytes
                    .min(INLINE_DECOMPRESSED_BYTES),
                ..checks
            };
            match protocol::batch::validate_checked_batch(header, records, &inline) {
                Err(protocol::Error::DecompressedTooLarge { .. })
                    if header.compression() != 0
                        && checks.max_decompressed_bytes > INLINE_DECOMPRESSED_BYTES => {}
                done => return done,
            }
        }
        // Cancel-safe: an unfinished acquire holds nothing.
        let slot = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .expect("the pool's semaphore is never closed");
        let records = records.clone();
        tokio::task::spawn_blocking(move || {
            let _slot = slot;
            protocol::batch::validate_checked_batch(header, &records, &checks)
        })
        .await
        .unwrap_or_else(|e| {
            Err(protocol::Error::CorruptBatch(format!(
                "record check failed: {e}"
            )))
        })
    }
}
