//! DescribeCluster: the live brokers of the cluster view; the controller
//! named is the live broker with the lowest node id (any broker serves
//! admin requests).

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};
use kafka_protocol::protocol::StrBytes;

use crate::authorized_operations;
use crate::broker::Broker;

/// DescribeCluster's `endpoint_type` for brokers (2 asks for controllers).
const ENDPOINT_TYPE_BROKERS: i8 = 1;

pub fn handle(broker: &Broker, request: DescribeClusterRequest) -> DescribeClusterResponse {
    let view = broker.cluster.view();
    let controller = view
        .controller()
        .map_or(broker.node_id(), |b| b.session.node_id);
    let response = DescribeClusterResponse::default()
        .with_endpoint_type(request.endpoint_type)
        .with_cluster_id(StrBytes::from_string(broker.cluster_id.clone()))
        .with_controller_id(BrokerId(controller))
        .with_cluster_authorized_operations(authorized_operations::cluster(
            request.include_cluster_authorized_operations,
        ));
    if request.endpoint_type != ENDPOINT_TYPE_BROKERS {
        // Kafka brokers refuse to describe controllers; only controllers do.
        return response
            .with_error_code(ResponseError::UnsupportedEndpointType.code())
            .with_error_message(Some(StrBytes::from_static_str(
                "The request was sent to an endpoint of type BROKER, but we wanted an endpoint of type CONTROLLER",
            )));
    }
    response.with_brokers(
        view.live
            .iter()
            .map(|b| {
                DescribeClusterBroker::default()
                    .with_broker_id(BrokerId(b.session.node_id))
                    .with_host(StrBytes::from_string(b.registration.host.clone()))
                    .with_port(b.registration.port)
                    .with_rack(b.registration.rack.clone().map(StrBytes::from_string))
            })
            .collect(),
    )
}
