//! One handler per Kafka API, and the one route table that picks it.
//!
//! A handler takes the decoded request and answers with the response type of
//! its API. Failures become Kafka error codes only through `crate::errors`.
//! Every handler answers every topic and partition it was asked about, each
//! with its own error code, as Kafka does.

mod alter_configs;
mod api_versions;
mod create_partitions;
mod create_topics;
mod delete_groups;
mod delete_records;
mod delete_topics;
mod describe_cluster;
mod describe_configs;
mod describe_groups;
mod describe_log_dirs;
mod fetch;
mod find_coordinator;
mod heartbeat;
mod init_producer_id;
mod join_group;
mod leave_group;
mod list_groups;
mod list_offsets;
mod metadata;
mod offset_commit;
mod offset_delete;
mod offset_fetch;
mod produce;
mod sync_group;

use std::sync::Arc;

use kafka_protocol::messages::{RequestKind, ResponseKind};
use protocol::Request;
use tokio::task::JoinHandle;

use crate::broker::Broker;

/// How a request is answered. (Built once, moved once: not worth a box.)
#[allow(clippy::large_enum_variant)]
pub enum Reply {
    /// The response, ready now; `None` means no response at all (acks=0).
    Now(Option<ResponseKind>),
    /// A response ready now that holds room in a broker-wide bound until
    /// it is written (Fetch answers: `fetch_response_buffer_max_bytes`).
    Holding(ResponseKind, Option<tokio::sync::OwnedSemaphorePermit>),
    /// A task that finishes with the response (produces waiting for their flush).
    Later(JoinHandle<Option<ResponseKind>>),
    /// No response; close the connection after the replies before it. Kafka's
    /// way to tell an acks=0 producer that its request failed.
    Close,
}

fn now(body: impl Into<ResponseKind>) -> Reply {
    Reply::Now(Some(body.into()))
}

/// Routes one request to its handler. Requests reach here only for APIs and
/// versions in `protocol::versions::SUPPORTED_APIS`.
pub async fn dispatch(broker: &Arc<Broker>, request: Request, peer: std::net::SocketAddr) -> Reply {
    let version = request.api_version();
    let client_id = request
        .header
        .client_id
        .as_ref()
        .map(|c| c.to_string())
        .unwrap_or_default();
    match request.body {
        RequestKind::ApiVersions(r) => now(api_versions::handle(r)),
        RequestKind::Metadata(r) => now(metadata::handle(broker, version, r).await),
        RequestKind::Produce(r) => produce::handle(broker, version, r).await,
        RequestKind::Fetch(r) => {
            let (body, room) = fetch::handle(broker, version, r).await;
            Reply::Holding(body.into(), room)
        }
        RequestKind::ListOffsets(r) => now(list_offsets::handle(broker, version, r).await),
        RequestKind::DeleteRecords(r) => now(delete_records::handle(broker, r).await),
        RequestKind::DescribeLogDirs(r) => now(describe_log_dirs::handle(broker, r).await),
        RequestKind::CreateTopics(r) => now(create_topics::handle(broker, version, r).await),
        RequestKind::DeleteTopics(r) => now(delete_topics::handle(broker, version, r).await),
        RequestKind::CreatePartitions(r) => now(create_partitions::handle(broker, r).await),
        RequestKind::DescribeConfigs(r) => now(describe_configs::handle(broker, version, r)),
        RequestKind::AlterConfigs(r) => now(alter_configs::handle_alter(broker, r).await),
        RequestKind::IncrementalAlterConfigs(r) => {
            now(alter_configs::handle_incremental(broker, r).await)
        }
        RequestKind::DescribeCluster(r) => now(describe_cluster::handle(broker, r)),
        RequestKind::InitProducerId(r) => now(init_producer_id::handle(broker, r).await),
        RequestKind::FindCoordinator(r) => now(find_coordinator::handle(broker, version, r)),
        RequestKind::JoinGroup(r) => {
            // Kafka reports the client's host as Java's InetAddress prints it.
            let client = (client_id, format!("/{}", peer.ip()));
            join_group::handle(broker, version, r, client).await
        }
        RequestKind::SyncGroup(r) => sync_group::handle(broker, r),
        RequestKind::Heartbeat(r) => now(heartbeat::handle(broker, r)),
        RequestKind::LeaveGroup(r) => now(leave_group::handle(broker, version, r)),
        RequestKind::OffsetCommit(r) => now(offset_commit::handle(broker, version, r).await),
        RequestKind::OffsetFetch(r) => now(offset_fetch::handle(broker, version, r).await),
        RequestKind::DescribeGroups(r) => now(describe_groups::handle(broker, version, r)),
        RequestKind::ListGroups(r) => now(list_groups::handle(broker, r)),
        RequestKind::DeleteGroups(r) => now(delete_groups::handle(broker, r).await),
        RequestKind::OffsetDelete(r) => now(offset_delete::handle(broker, r).await),
        other => {
            // The version table and this match must agree; a request that gets
            // here is a programming error, answered by closing the connection.
            tracing::error!(request = ?std::mem::discriminant(&other), "no handler for a supported api");
            Reply::Now(None)
        }
    }
}
