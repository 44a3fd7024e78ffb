//! DescribeGroups: state, protocol and members of each group; member
//! metadata and assignments only for a Stable group, as Kafka. An unknown
//! group is "Dead" (v0–5) or GROUP_ID_NOT_FOUND (v6+).

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::{DescribeGroupsRequest, DescribeGroupsResponse};
use kafka_protocol::protocol::StrBytes;

use crate::authorized_operations;
use crate::broker::Broker;

const FIRST_VERSION_WITH_NOT_FOUND: i16 = 6;

pub fn handle(
    broker: &Arc<Broker>,
    version: i16,
    request: DescribeGroupsRequest,
) -> DescribeGroupsResponse {
    let operations = authorized_operations::group(request.include_authorized_operations);
    let groups = request
        .groups
        .into_iter()
        .map(|group_id| {
            let base = DescribedGroup::default().with_group_id(group_id.clone());
            if !broker.groups.placed_here(group_id.as_str()) {
                return base.with_error_code(ResponseError::NotCoordinator.code());
            }
            let Some(d) = broker.groups.describe(group_id.as_str()) else {
                let dead = base.with_group_state(StrBytes::from_static_str("Dead"));
                return if version >= FIRST_VERSION_WITH_NOT_FOUND {
                    dead.with_error_code(ResponseError::GroupIdNotFound.code())
                        .with_error_message(Some(StrBytes::from_string(format!(
                            "Group {} not found.",
                            group_id.as_str()
                        ))))
                } else {
                    dead
                };
            };
            base.with_group_state(StrBytes::from_static_str(d.state.name()))
                .with_authorized_operations(operations)
                .with_protocol_type(StrBytes::from_string(d.protocol_type))
                .with_protocol_data(StrBytes::from_string(d.protocol_name))
                .with_members(
                    d.members
                        .into_iter()
                        .map(|m| {
                            DescribedGroupMember::default()
                                .with_member_id(StrBytes::from_string(m.member_id))
                                .with_group_instance_id(
                                    m.group_instance_id.map(StrBytes::from_string),
                                )
                                .with_client_id(StrBytes::from_string(m.client_id))
                                .with_client_host(StrBytes::from_string(m.client_host))
                                .with_member_metadata(m.metadata)
                                .with_member_assignment(m.assignment)
                        })
                        .collect(),
                )
        })
        .collect();
    DescribeGroupsResponse::default().with_groups(groups)
}
