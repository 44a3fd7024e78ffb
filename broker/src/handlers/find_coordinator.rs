//! FindCoordinator: the live broker a consumer group (or transactional id)
//! is placed on by the cluster's rendezvous hashing (one key per request up
//! to v3, a batch of keys from v4). COORDINATOR_NOT_AVAILABLE while this
//! broker sees no live broker (its own lease looks lapsed).
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
    let view = broker.cluster.view();
    // The coordinator of `key`: (node id, host, port), or None.
    let place = |key: &str| {
        let b = view.coordinator_of(key)?;
        Some((
            BrokerId(b.session.node_id),
            StrBytes::from_string(b.registration.host.clone()),
            b.registration.port,
        ))
    };
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
                let placed = place(c.key.as_str());
                match placed {
                    _ if refused => c
                        .with_error_code(ResponseError::InvalidRequest.code())
                        .with_node_id(BrokerId(-1))
                        .with_port(-1),
                    None => c
                        .with_error_code(ResponseError::CoordinatorNotAvailable.code())
                        .with_node_id(BrokerId(-1))
                        .with_port(-1),
                    Some((node_id, host, port)) => {
                        c.with_node_id(node_id).with_host(host).with_port(port)
                    }
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
    match place(request.key.as_str()) {
        Some((node_id, host, port)) => FindCoordinatorResponse::default()
            .with_node_id(node_id)
            .with_host(host)
            .with_port(port),
        None => FindCoordinatorResponse::default()
            .with_error_code(ResponseError::CoordinatorNotAvailable.code())
            .with_node_id(BrokerId(-1))
            .with_port(-1),
    }
}
