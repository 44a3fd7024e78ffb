//! InitProducerId for idempotent producers (no transactional id).
//!
//! As Kafka's `TransactionCoordinator.handleInitProducerId` does for a null
//! transactional id, every request gets a fresh producer id at epoch 0: the
//! KIP-360 fields (current producer id and epoch) are checked for form only
//! (`KafkaApis`: one of them -1 without the other is INVALID_REQUEST) and
//! otherwise ignored. Idempotent clients bump their epoch themselves
//! (librdkafka's `rd_kafka_idemp_drain_epoch_bump`, the Java client's
//! `bumpIdempotentEpochAndResetIdIfNeeded`) and ask for a new id only when
//! the epoch would overflow.
//!
//! Transactions are not implemented: a request with a transactional id is
//! answered TRANSACTIONAL_ID_AUTHORIZATION_FAILED. It is the one code that
//! librdkafka (kcat, confluent-kafka), kafka-python and KafkaJS all treat as
//! fatal at once, so a transactional producer fails in its
//! `init_transactions` instead of retrying for minutes as it does on a
//! retriable code (docs/protocol-traps.md, "Transactional producers").

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};

use crate::broker::Broker;
use crate::errors;

pub async fn handle(
    broker: &Arc<Broker>,
    request: InitProducerIdRequest,
) -> InitProducerIdResponse {
    let refuse = |code: ResponseError| {
        InitProducerIdResponse::default()
            .with_error_code(code.code())
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1)
    };
    match (request.producer_id.0, request.producer_epoch) {
        (-1, -1) => {}
        (-1, _) | (_, -1) => return refuse(ResponseError::InvalidRequest),
        _ => {}
    }
    if let Some(transactional_id) = &request.transactional_id {
        if transactional_id.is_empty() {
            // Kafka's TransactionCoordinator: an empty id is not a null one.
            return refuse(ResponseError::InvalidRequest);
        }
        // InitProducerId carries no error message: the reason is said here.
        tracing::warn!(
            transactional_id = transactional_id.as_str(),
            "transactional producer refused: transactions are not supported yet; \
             answered TRANSACTIONAL_ID_AUTHORIZATION_FAILED, which clients treat as fatal"
        );
        return refuse(ResponseError::TransactionalIdAuthorizationFailed);
    }
    match broker.producer_ids.next(broker.metadata.as_ref()).await {
        Ok(id) => InitProducerIdResponse::default()
            .with_producer_id(ProducerId(id))
            .with_producer_epoch(0),
        Err(e) => refuse(errors::producer_id_error(&e)),
    }
}
