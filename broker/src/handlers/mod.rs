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
mod delete_topics;
mod describe_cluster;
mod describe_configs;
mod fetch;
mod init_producer_id;
mod list_offsets;
mod metadata;
mod produce;

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
pub async fn dispatch(broker: &Arc<Broker>, request: Request) -> Reply {
    let version = request.api_version();
    match request.body {
        RequestKind::ApiVersions(r) => now(api_versions::handle(r)),
        RequestKind::Metadata(r) => now(metadata::handle(broker, version, r).await),
        RequestKind::Produce(r) => produce::handle(broker, version, r).await,
        RequestKind::Fetch(r) => now(fetch::handle(broker, version, r).await),
        RequestKind::ListOffsets(r) => now(list_offsets::handle(broker, version, r).await),
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
        other => {
            // The version table and this match must agree; a request that gets
            // here is a programming error, answered by closing the connection.
            tracing::error!(request = ?std::mem::discriminant(&other), "no handler for a supported api");
            Reply::Now(None)
        }
    }
}
