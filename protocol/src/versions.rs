//! The one table of Kafka APIs this broker answers, with the version range of
//! each. The ApiVersions answer is made from it, and every request is checked
//! against it before it is decoded.
//!
//! A range is the intersection of what the broker implements and what the
//! `kafka-protocol` crate can decode (Kafka 4's floor, KIP-896).

use kafka_protocol::messages::ApiKey;
use kafka_protocol::messages::api_versions_response::ApiVersion;

/// One supported API and its version range (inclusive).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SupportedApi {
    pub api_key: ApiKey,
    pub min_version: i16,
    pub max_version: i16,
}

const fn api(api_key: ApiKey, min_version: i16, max_version: i16) -> SupportedApi {
    SupportedApi {
        api_key,
        min_version,
        max_version,
    }
}

/// Every API the broker answers. Add a row only when its handler exists.
pub const SUPPORTED_APIS: &[SupportedApi] = &[
    api(ApiKey::Produce, 3, 13),
    api(ApiKey::Fetch, 4, 18),
    api(ApiKey::ListOffsets, 1, 10),
    api(ApiKey::Metadata, 0, 13),
    api(ApiKey::ApiVersions, 0, 4),
    api(ApiKey::CreateTopics, 2, 7),
    api(ApiKey::DeleteTopics, 1, 6),
    api(ApiKey::DescribeConfigs, 1, 4),
    api(ApiKey::AlterConfigs, 0, 2),
    api(ApiKey::CreatePartitions, 0, 3),
    api(ApiKey::IncrementalAlterConfigs, 0, 1),
    api(ApiKey::DescribeCluster, 0, 2),
    api(ApiKey::InitProducerId, 0, 5),
    api(ApiKey::FindCoordinator, 0, 6),
    api(ApiKey::JoinGroup, 0, 9),
    api(ApiKey::SyncGroup, 0, 5),
    api(ApiKey::Heartbeat, 0, 4),
    api(ApiKey::LeaveGroup, 0, 5),
    api(ApiKey::OffsetCommit, 2, 9),
    api(ApiKey::OffsetFetch, 1, 9),
    api(ApiKey::DescribeGroups, 0, 6),
    api(ApiKey::ListGroups, 0, 5),
    api(ApiKey::DeleteGroups, 0, 2),
    api(ApiKey::OffsetDelete, 0, 0),
    api(ApiKey::DeleteRecords, 0, 2),
    api(ApiKey::DescribeLogDirs, 1, 4),
];

/// The supported range of `api_key`, if the broker answers it at all.
pub fn supported(api_key: ApiKey) -> Option<SupportedApi> {
    SUPPORTED_APIS
        .iter()
        .copied()
        .find(|a| a.api_key == api_key)
}

/// Whether `version` of `api_key` can be decoded and answered.
pub fn is_supported(api_key: ApiKey, version: i16) -> bool {
    supported(api_key).is_some_and(|a| (a.min_version..=a.max_version).contains(&version))
}

/// The `api_keys` list of an ApiVersions response.
pub fn api_versions() -> Vec<ApiVersion> {
    SUPPORTED_APIS
        .iter()
        .map(|a| {
            ApiVersion::default()
                .with_api_key(a.api_key as i16)
                .with_min_version(a.min_version)
                .with_max_version(a.max_version)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_row_is_decodable_by_the_codec() {
        for a in SUPPORTED_APIS {
            let crate_range = a.api_key.valid_versions();
            assert!(
                a.min_version >= crate_range.min && a.max_version <= crate_range.max,
                "{:?} {}..={} outside the codec's {}..={}",
                a.api_key,
                a.min_version,
                a.max_version,
                crate_range.min,
                crate_range.max
            );
        }
    }

    #[test]
    fn api_versions_lists_every_row_once() {
        let list = api_versions();
        assert_eq!(list.len(), SUPPORTED_APIS.len());
        assert!(list.iter().any(|v| v.api_key == ApiKey::ApiVersions as i16));
    }
}
