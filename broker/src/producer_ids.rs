//! Producer ids for InitProducerId, handed out from blocks reserved in the
//! metadata store (Kafka's `ProducerIdManager`): a broker reserves 1,000 ids
//! at a time, so no id is ever given twice — not across restarts, not by two
//! brokers sharing the store — and the store is written once per block, not
//! once per producer. Ids left in a block when the broker stops are skipped.

use metadata::MetadataStore;

/// Ids reserved per metadata write (Kafka's `PRODUCER_ID_BLOCK_SIZE`).
pub const BLOCK_SIZE: i64 = 1_000;

/// The unused rest of this broker's current block.
#[derive(Default)]
pub struct ProducerIds {
    /// (next id, end of block, exclusive); empty until the first request.
    block: tokio::sync::Mutex<(i64, i64)>,
}

impl ProducerIds {
    /// The next unused producer id, reserving a new block when this one is used up.
    pub async fn next(&self, metadata: &dyn MetadataStore) -> metadata::Result<i64> {
        let mut block = self.block.lock().await;
        if block.0 >= block.1 {
            let first = metadata.allocate_producer_ids(BLOCK_SIZE).await?;
            *block = (first, first + BLOCK_SIZE);
            tracing::info!(first, count = BLOCK_SIZE, "reserved a producer id block");
        }
        let id = block.0;
        block.0 += 1;
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn ids_are_unique_across_blocks_and_restarts() {
        let store = metadata::SqliteStore::open_in_memory().unwrap();
        let first = ProducerIds::default();
        let mut seen = std::collections::HashSet::new();
        for _ in 0..(BLOCK_SIZE + 5) {
            assert!(seen.insert(first.next(&store).await.unwrap()));
        }
        // A restarted broker (a new allocator) starts past every reserved block.
        let restarted = ProducerIds::default();
        let id = restarted.next(&store).await.unwrap();
        assert!(id >= 2 * BLOCK_SIZE, "{id}");
        assert!(seen.insert(id));
    }
}
