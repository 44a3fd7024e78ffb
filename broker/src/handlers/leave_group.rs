//! LeaveGroup: one member (v0–2) or a batch, each with its own answer
//! (v3+, KIP-345: static members leave by instance id).

use std::sync::Arc;

use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{LeaveGroupRequest, LeaveGroupResponse};

use crate::broker::Broker;
use crate::errors;

const FIRST_BATCHED_VERSION: i16 = 3;

pub fn handle(
    broker: &Arc<Broker>,
    version: i16,
    request: LeaveGroupRequest,
) -> LeaveGroupResponse {
    let group_id = request.group_id.as_str();
    if version < FIRST_BATCHED_VERSION {
        let one = [(request.member_id.to_string(), None)];
        let code = match broker.groups.leave(group_id, &one) {
            Ok(results) => results[0].err(),
            Err(e) => Some(e),
        }
        .map_or(0, |e| errors::group_error(&e).code());
        return LeaveGroupResponse::default().with_error_code(code);
    }
    let members: Vec<(String, Option<String>)> = request
        .members
        .iter()
        .map(|m| {
            (
                m.member_id.to_string(),
                m.group_instance_id.as_ref().map(|s| s.to_string()),
            )
        })
        .collect();
    match broker.groups.leave(group_id, &members) {
        Ok(results) => LeaveGroupResponse::default().with_members(
            request
                .members
                .into_iter()
                .zip(results)
                .map(|(m, result)| {
                    MemberResponse::default()
                        .with_member_id(m.member_id)
                        .with_group_instance_id(m.group_instance_id)
                        .with_error_code(result.err().map_or(0, |e| errors::group_error(&e).code()))
                })
                .collect(),
        ),
        Err(e) => LeaveGroupResponse::default().with_error_code(errors::group_error(&e).code()),
    }
}
