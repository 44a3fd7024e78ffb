//! Helpers for tests of the log and of what is built on it (never used by
//! the broker binary): a log that leads every partition, as a broker alone
//! does once it has claimed them.

use std::sync::Arc;

use metadata::{BrokerRegistration, BrokerSession, MetadataStore};

use crate::{Clock, Log, LogConfig, ObjectStore, Result};

/// The lease test sessions get (ms of the test's clock).
pub const TEST_LEASE_MS: i64 = 10_000;

/// Registers `node_id` and makes `log` lead every partition in the store
/// that no other live session leads. A live earlier session of the same
/// node id is taken to be a process the test killed: instead of sleeping
/// out its lease, this registers at the instant the lease lapses.
pub async fn lead_every_partition(
    log: &Log,
    metadata: &dyn MetadataStore,
    clock: &dyn Clock,
    node_id: i32,
) -> Result<BrokerSession> {
    let registration = BrokerRegistration {
        node_id,
        host: "localhost".into(),
        port: 9092,
        rack: None,
    };
    let mut now_ms = clock.now_ms();
    let session = match metadata
        .register_broker(&registration, now_ms, TEST_LEASE_MS)
        .await
    {
        Err(metadata::Error::BrokerIdInUse {
            lease_expires_ms, ..
        }) => {
            now_ms = lease_expires_ms;
            metadata
                .register_broker(&registration, now_ms, TEST_LEASE_MS)
                .await?
        }
        other => other?,
    };
    let topic_ids: Vec<_> = metadata
        .topics()
        .await?
        .iter()
        .map(|t| t.topic_id)
        .collect();
    let partitions: Vec<_> = metadata
        .partition_states(&topic_ids)
        .await?
        .into_iter()
        .map(|s| s.topic_partition)
        .collect();
    let claims = metadata
        .claim_partitions(session, &partitions, now_ms)
        .await?
        .into_iter()
        .filter_map(|answer| answer.ok())
        .collect();
    log.lead(session, claims);
    Ok(session)
}

/// `Log::open`, then `lead_every_partition` as node 1.
pub async fn open_leading(
    config: LogConfig,
    store: Arc<dyn ObjectStore>,
    metadata: Arc<dyn MetadataStore>,
    clock: Arc<dyn Clock>,
) -> Result<Log> {
    let log = Log::open(config, store, metadata.clone(), clock.clone()).await?;
    lead_every_partition(&log, metadata.as_ref(), clock.as_ref(), 1).await?;
    Ok(log)
}
