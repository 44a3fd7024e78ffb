//! ApiVersions: the list of APIs and versions this broker answers, straight
//! from `protocol::versions`. (An unknown ApiVersions version never gets here:
//! the codec answers it in the v0 form with UNSUPPORTED_VERSION.)

use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse};

pub fn handle(_request: ApiVersionsRequest) -> ApiVersionsResponse {
    // Defaults for the tagged fields (no features, epoch -1) are what Kafka
    // sends when it has none, and the codec then leaves them off the wire —
    // which librdkafka 2.0.2 (Debian's kcat) needs: it mis-skips tagged fields.
    ApiVersionsResponse::default().with_api_keys(protocol::versions::api_versions())
}
