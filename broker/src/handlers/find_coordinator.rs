//! FindCoordinator: this broker coordinates every consumer group (one key
//! per request up to v3, a batch of keys from v4). Transaction coordinators
//! do not exist yet: those keys get COORDINATOR_NOT_AVAILABLE.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;

use crate::broker::Broker;

/// FindCoordinator v4 batches the keys (KIP-699).
const FIRST_BATCHED_VERSION: i16 = 4;
/// `key_type` of a consumer group; 1 is a transactional id.
const GROUP_KEY: i8 = 0;

pub fn handle(
    broker: &Arc<Broker>,
    version: i16,
    request: FindCoordinatorRequest,
) -> FindCoordinatorResponse {
    let host = StrBytes::from_string(broker.advertised_host.clone());
    let node_id = BrokerId(broker.node_id());
    let port = broker.advertised_port;
    let refused = request.key_type != GROUP_KEY;
    if refused {
        tracing::info!(
            key_type = request.key_type,
            "FindCoordinator for transactions: not supported"
        );
    }
    if version >= FIRST_BATCHED_VERSION {
        let coordinators = request
            .coordinator_keys
            .into_iter()
            .map(|key| {
                let c = Coordinator::default().with_key(key);
                if refused {
                    c.with_error_code(ResponseError::CoordinatorNotAvailable.code())
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
            .with_error_code(ResponseError::CoordinatorNotAvailable.code())
            .with_node_id(BrokerId(-1))
            .with_port(-1);
    }
    FindCoordinatorResponse::default()
        .with_node_id(node_id)
        .with_host(host)
        .with_port(port)
}
