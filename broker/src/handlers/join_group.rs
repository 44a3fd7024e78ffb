//! JoinGroup: hands the request to the group's state machine and answers
//! when the join phase ends (at once for errors, MEMBER_ID_REQUIRED and
//! rejoins that change nothing).

use std::sync::Arc;

use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::{JoinGroupRequest, JoinGroupResponse, ResponseKind};
use kafka_protocol::protocol::StrBytes;

use super::Reply;
use crate::broker::Broker;
use crate::errors;
use crate::groups::{JoinAnswer, JoinRequest, Pending};

/// JoinGroup v4 introduced MEMBER_ID_REQUIRED (KIP-394).
const FIRST_VERSION_REQUIRING_MEMBER_ID: i16 = 4;

pub async fn handle(
    broker: &Arc<Broker>,
    version: i16,
    request: JoinGroupRequest,
    client: (String, String),
) -> Reply {
    let (client_id, client_host) = client;
    let join = JoinRequest {
        member_id: request.member_id.to_string(),
        group_instance_id: request.group_instance_id.map(|s| s.to_string()),
        client_id,
        client_host,
        session_timeout_ms: request.session_timeout_ms,
        // v0 has no rebalance timeout: Kafka uses the session timeout.
        rebalance_timeout_ms: if version == 0 {
            request.session_timeout_ms
        } else {
            request.rebalance_timeout_ms
        },
        protocol_type: request.protocol_type.to_string(),
        protocols: request
            .protocols
            .into_iter()
            .map(|p| (p.name.to_string(), p.metadata))
            .collect(),
        require_known_member_id: version >= FIRST_VERSION_REQUIRING_MEMBER_ID,
    };
    match broker.groups.join(request.group_id.as_str(), join).await {
        Pending::Now(answer) => Reply::Now(Some(ResponseKind::JoinGroup(response(answer)))),
        Pending::Later(rx) => Reply::Later(tokio::spawn(async move {
            // A dropped sender means the broker is going away: no answer.
            let answer = rx.await.ok()?;
            Some(ResponseKind::JoinGroup(response(answer)))
        })),
    }
}

fn response(answer: JoinAnswer) -> JoinGroupResponse {
    let r = JoinGroupResponse::default()
        .with_generation_id(answer.generation_id)
        .with_member_id(StrBytes::from_string(answer.member_id))
        .with_leader(StrBytes::from_string(answer.leader))
        .with_protocol_type(answer.protocol_type.map(StrBytes::from_string))
        .with_protocol_name(answer.protocol_name.map(StrBytes::from_string))
        .with_members(
            answer
                .members
                .into_iter()
                .map(|m| {
                    JoinGroupResponseMember::default()
                        .with_member_id(StrBytes::from_string(m.member_id))
                        .with_group_instance_id(m.group_instance_id.map(StrBytes::from_string))
                        .with_metadata(m.metadata)
                })
                .collect(),
        );
    match answer.error {
        Some(e) => r.with_error_code(errors::group_error(&e).code()),
        None => r,
    }
}
