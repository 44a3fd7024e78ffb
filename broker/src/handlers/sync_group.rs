//! SyncGroup: followers wait for the leader's assignment; the leader's
//! SyncGroup makes the group Stable and answers everyone.

use std::sync::Arc;

use kafka_protocol::messages::{ResponseKind, SyncGroupRequest, SyncGroupResponse};
use kafka_protocol::protocol::StrBytes;

use super::Reply;
use crate::broker::Broker;
use crate::errors;
use crate::groups::{Pending, SyncAnswer};

pub fn handle(broker: &Arc<Broker>, request: SyncGroupRequest) -> Reply {
    let assignments = request
        .assignments
        .into_iter()
        .map(|a| (a.member_id.to_string(), a.assignment))
        .collect();
    let pending = broker.groups.sync(
        request.group_id.as_str(),
        request.generation_id,
        request.member_id.as_str(),
        request.group_instance_id.as_ref().map(|s| s.as_str()),
        (
            request.protocol_type.as_ref().map(|s| s.as_str()),
            request.protocol_name.as_ref().map(|s| s.as_str()),
        ),
        assignments,
    );
    match pending {
        Pending::Now(answer) => Reply::Now(Some(ResponseKind::SyncGroup(response(answer)))),
        Pending::Later(rx) => Reply::Later(tokio::spawn(async move {
            let answer = rx.await.ok()?;
            Some(ResponseKind::SyncGroup(response(answer)))
        })),
    }
}

fn response(answer: SyncAnswer) -> SyncGroupResponse {
    match answer {
        Ok(a) => SyncGroupResponse::default()
            .with_protocol_type(a.protocol_type.map(StrBytes::from_string))
            .with_protocol_name(a.protocol_name.map(StrBytes::from_string))
            .with_assignment(a.assignment),
        Err(e) => SyncGroupResponse::default().with_error_code(errors::group_error(&e).code()),
    }
}
