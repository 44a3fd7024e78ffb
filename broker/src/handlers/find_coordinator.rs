//! FindCoordinator: this broker coordinates every consumer group (one key
//! per request up to v3, a batch of keys from v4).
//!
//! Transactional ids get this broker too, although transactions are not
//! built yet: the client then sends InitProducerId, whose refusal
//! (TRANSACTIONAL_ID_AUTHORIZATION_FAILED, see `init_producer_id`) every
//! client we test turns into a prompt fatal error. A refusal here would not
//! do: COORDINATOR_NOT_AVAILABLE is retried for minutes, and KafkaJS
//! replaces any FindCoordinator error with "Failed to find group
//! coordinator" (docs/protocol-traps.md, "Transactional producers").

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;

use crate::broker::Broker;

/// FindCoordinator v4 batches the keys (KIP-699).
const FIRST_BATCHED_VERSION: i16 = 4;
/// `key_type` of a consumer group; 1 is a transactional id (KIP-98), 2 a
/// share group (KIP-932, not offered).
const GROUP_KEY: i8 = 0;
const TRANSACTION_KEY: i8 = 1;

pub fn handle(
    broker: &Arc<Broker>,
    version: i16,
    request: FindCoordinatorRequest,
) -> FindCoordinatorResponse {
    let host = StrBytes::from_string(broker.advertised_host.clone());
    let node_id = BrokerId(broker.node_id());
    let port = broker.advertised_port;
    // Kafka answers an unknown key type INVALID_REQUEST.
    let refused = !matches!(request.key_type, GROUP_KEY | TRANSACTION_KEY);
    if refused {
        tracing::info!(
            key_type = request.key_type,
            "FindCoordinator for an unknown key type"
        );
    }
    if version >= FIRST_BATCHED_VERSION {
        let coordinators = request
            .coordinator_keys
            .into_iter()
            .map(|key| {
                let c = Coordinator::default().with_key(key);
                if refused {
                    c.with_error_code(ResponseError::InvalidRequest.code())
                        .with_node_id(BrokerId(-1))
                        .with_port(-1)
                } else {
                    c.with_node_id(node_id)
                        .with_host(host.clone())
                        .with_port(port)
                }
            })
            .collect();
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    if refused {
        return FindCoordinatorResponse::default()
            .with_error_code(ResponseError::InvalidRequest.code())
            .with_node_id(BrokerId(-1))
            .with_port(-1);
    }
    FindCoordinatorResponse::default()
        .with_node_id(node_id)
        .with_host(host)
        .with_port(port)
}
