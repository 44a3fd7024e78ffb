//! The `authorized_operations` bit fields of Metadata, DescribeCluster and
//! DescribeGroups answers.
//!
//! Lightstream has no authorizer (ACLs are not built yet). Kafka without one
//! (`AuthHelper.authorizedOperations`) answers every operation the resource
//! type supports (`AclEntry.supportedOperations`), one bit per operation
//! code; a client that did not ask gets `i32::MIN`. Admin clients show these
//! sets (`describe_topics(include_authorized_operations=True)`).

/// Kafka's value for "not requested".
pub const OMITTED: i32 = i32::MIN;

/// Kafka's `AclOperation` codes.
const READ: u8 = 3;
const WRITE: u8 = 4;
const CREATE: u8 = 5;
const DELETE: u8 = 6;
const ALTER: u8 = 7;
const DESCRIBE: u8 = 8;
const CLUSTER_ACTION: u8 = 9;
const DESCRIBE_CONFIGS: u8 = 10;
const ALTER_CONFIGS: u8 = 11;
const IDEMPOTENT_WRITE: u8 = 12;

const TOPIC_OPERATIONS: &[u8] = &[
    READ,
    WRITE,
    CREATE,
    DESCRIBE,
    DELETE,
    ALTER,
    DESCRIBE_CONFIGS,
    ALTER_CONFIGS,
];
const GROUP_OPERATIONS: &[u8] = &[READ, DESCRIBE, DELETE, DESCRIBE_CONFIGS, ALTER_CONFIGS];
const CLUSTER_OPERATIONS: &[u8] = &[
    CREATE,
    CLUSTER_ACTION,
    DESCRIBE_CONFIGS,
    ALTER_CONFIGS,
    IDEMPOTENT_WRITE,
    ALTER,
    DESCRIBE,
];

fn bits(operations: &[u8], requested: bool) -> i32 {
    if !requested {
        return OMITTED;
    }
    operations.iter().fold(0, |field, op| field | (1 << op))
}

/// A topic's operations, or `OMITTED` when the client did not ask.
pub fn topic(requested: bool) -> i32 {
    bits(TOPIC_OPERATIONS, requested)
}

/// A group's operations, or `OMITTED`.
pub fn group(requested: bool) -> i32 {
    bits(GROUP_OPERATIONS, requested)
}

/// The cluster's operations, or `OMITTED`.
pub fn cluster(requested: bool) -> i32 {
    bits(CLUSTER_OPERATIONS, requested)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_supported_operation_is_one_bit() {
        assert_eq!(topic(false), i32::MIN);
        assert_eq!(topic(true).count_ones(), 8);
        assert_eq!(cluster(true).count_ones(), 7);
        assert_eq!(group(true), 0b1101_0100_1000);
        assert_eq!(group(true).count_ones(), 5);
    }
}
