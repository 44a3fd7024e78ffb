//! Idempotent producers over a loopback socket, with hand-built batches:
//! InitProducerId as Kafka answers it for producers without a transactional
//! id, and Kafka's sequence rules as a produce request sees them.

use std::time::Duration;

use broker::config::Settings;
use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

mod common;

use common::*;

const PRODUCE_VERSION: i16 = 9;

/// (error code, base offset) of a one-partition produce.
/// (error code, base offset, log_append_time_ms) of a one-batch produce.
async fn produce_answer(
    client: &mut Client,
    topic: &str,
    partition: i32,
    records: Bytes,
) -> (i16, i64, i64) {
    let response: ProduceResponse = client
        .call(
            ApiKey::Produce,
            PRODUCE_VERSION,
            &produce_request(topic, partition, records),
        )
        .await;
    let p = &response.responses[0].partition_responses[0];
    (p.error_code, p.base_offset, p.log_append_time_ms)
}

async fn produce(client: &mut Client, topic: &str, partition: i32, records: Bytes) -> (i16, i64) {
    let (error_code, base_offset, _) = produce_answer(client, topic, partition, records).await;
    (error_code, base_offset)
}

async fn init_producer_id(
    client: &mut Client,
    version: i16,
    request: InitProducerIdRequest,
) -> InitProducerIdResponse {
    client.call(ApiKey::InitProducerId, version, &request).await
}

async fn new_producer(client: &mut Client) -> i64 {
    let response = init_producer_id(
        client,
        4,
        InitProducerIdRequest::default()
            .with_transactional_id(None)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1),
    )
    .await;
    assert_eq!(response.error_code, 0);
    assert_eq!(response.producer_epoch, 0);
    response.producer_id.0
}

fn idem(values: &[&str], producer_id: i64, epoch: i16, sequence: i32) -> Bytes {
    protocol::testing::idempotent_batch(values, 1_700_000_000_000, producer_id, epoch, sequence)
}

async fn fetch_all(client: &mut Client, topic: &str) -> Vec<(i64, String)> {
    let response: FetchResponse = client
        .call(ApiKey::Fetch, 12, &fetch_request(topic, 0, 0))
        .await;
    values_of(
        response.responses[0].partitions[0]
            .records
            .clone()
            .unwrap_or_default(),
    )
}

const NONE: i16 = 0;
const OUT_OF_ORDER: i16 = 45;
const INVALID_EPOCH: i16 = 47;

#[tokio::test]
async fn init_producer_id_hands_out_fresh_ids_at_epoch_zero() {
    let stores = DurableStores::new();
    let broker = stores.start().await;
    let mut client = broker.connect().await;
    let a = new_producer(&mut client).await;
    let b = new_producer(&mut client).await;
    assert_ne!(a, b);
    // v0 (no KIP-360 fields) works the same.
    let v0 = init_producer_id(
        &mut client,
        0,
        InitProducerIdRequest::default()
            .with_transactional_id(None)
            .with_transaction_timeout_ms(60_000),
    )
    .await;
    assert_eq!((v0.error_code, v0.producer_epoch), (NONE, 0));
    // With its current id and epoch (KIP-360), an idempotent producer still
    // gets a new id at epoch 0, as Kafka answers a null transactional id.
    let again = init_producer_id(
        &mut client,
        4,
        InitProducerIdRequest::default()
            .with_transactional_id(None)
            .with_producer_id(ProducerId(a))
            .with_producer_epoch(3),
    )
    .await;
    assert_eq!(again.error_code, NONE);
    assert_eq!(again.producer_epoch, 0);
    assert!(![a, b, v0.producer_id.0].contains(&again.producer_id.0));
    // An id without an epoch, or the reverse, is malformed.
    for (id, epoch) in [(a, -1), (-1, 0)] {
        let bad = init_producer_id(
            &mut client,
            3,
            InitProducerIdRequest::default()
                .with_transactional_id(None)
                .with_producer_id(ProducerId(id))
                .with_producer_epoch(epoch),
        )
        .await;
        assert_eq!(bad.error_code, ResponseError::InvalidRequest.code());
        assert_eq!(bad.producer_id.0, -1);
    }
    // No transaction coordinator here.
    let txn = init_producer_id(
        &mut client,
        4,
        InitProducerIdRequest::default()
            .with_transactional_id(None)
            .with_transactional_id(Some(TransactionalId(StrBytes::from_static_str("tx"))))
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1),
    )
    .await;
    assert_eq!(
        txn.error_code,
        ResponseError::TransactionalIdAuthorizationFailed.code()
    );
    let empty = init_producer_id(
        &mut client,
        4,
        InitProducerIdRequest::default()
            .with_transactional_id(Some(TransactionalId(StrBytes::from_static_str(""))))
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1),
    )
    .await;
    assert_eq!(empty.error_code, ResponseError::InvalidRequest.code());
    drop(client);
    broker.stop().await;

    // A restarted broker never hands out an id given before.
    let broker = stores.start().await;
    let mut client = broker.connect().await;
    let after = new_producer(&mut client).await;
    assert!(
        after > again.producer_id.0,
        "{after} after {}",
        again.producer_id.0
    );
    broker.stop().await;
}

#[tokio::test]
async fn produce_applies_kafka_sequence_rules() {
    let broker = TestBroker::start().await;
    let mut client = broker.connect().await;
    create_topic(&mut client, "idem", 1).await;
    let pid = new_producer(&mut client).await;

    let first = idem(&["a", "b"], pid, 0, 0);
    assert_eq!(
        produce(&mut client, "idem", 0, first.clone()).await,
        (NONE, 0)
    );
    // The same batch again: success with the offsets it was first given,
    // and (as Kafka answers a duplicate) its max timestamp as the append time.
    let max_timestamp = protocol::batch::parse_header(&first).unwrap().max_timestamp;
    assert_eq!(
        produce_answer(&mut client, "idem", 0, first).await,
        (NONE, 0, max_timestamp)
    );
    // A skipped sequence.
    assert_eq!(
        produce(&mut client, "idem", 0, idem(&["x"], pid, 0, 3))
            .await
            .0,
        OUT_OF_ORDER
    );
    assert_eq!(
        produce(&mut client, "idem", 0, idem(&["c"], pid, 0, 2)).await,
        (NONE, 2)
    );
    // A new epoch must start at 0.
    assert_eq!(
        produce(&mut client, "idem", 0, idem(&["x"], pid, 1, 5))
            .await
            .0,
        OUT_OF_ORDER
    );
    assert_eq!(
        produce(&mut client, "idem", 0, idem(&["d"], pid, 1, 0)).await,
        (NONE, 3)
    );
    // The old epoch is fenced.
    assert_eq!(
        produce(&mut client, "idem", 0, idem(&["x"], pid, 0, 3))
            .await
            .0,
        INVALID_EPOCH
    );

    // Wrap-around: an unknown producer may start anywhere, then wraps to 0.
    let other = new_producer(&mut client).await;
    assert_eq!(
        produce(
            &mut client,
            "idem",
            0,
            idem(&["e", "f"], other, 0, i32::MAX - 1)
        )
        .await,
        (NONE, 4)
    );
    assert_eq!(
        produce(&mut client, "idem", 0, idem(&["g"], other, 0, 0)).await,
        (NONE, 6)
    );

    let values: Vec<String> = fetch_all(&mut client, "idem")
        .await
        .into_iter()
        .map(|(_, v)| v)
        .collect();
    assert_eq!(values, ["a", "b", "c", "d", "e", "f", "g"]);
    broker.stop().await;
}

#[tokio::test]
async fn an_expired_producer_may_start_at_any_sequence() {
    let broker = TestBroker::start_with(Settings {
        producer_id_expiration_ms: 500,
        producer_id_expiration_check_interval_ms: 100,
        ..Settings::default()
    })
    .await;
    let mut client = broker.connect().await;
    create_topic(&mut client, "expiring", 1).await;
    let pid = new_producer(&mut client).await;
    assert_eq!(
        produce(&mut client, "expiring", 0, idem(&["a"], pid, 0, 0)).await,
        (NONE, 0)
    );
    assert_eq!(
        produce(&mut client, "expiring", 0, idem(&["b"], pid, 0, 7))
            .await
            .0,
        OUT_OF_ORDER
    );
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(
        produce(&mut client, "expiring", 0, idem(&["b"], pid, 0, 7)).await,
        (NONE, 1)
    );
    broker.stop().await;
}
