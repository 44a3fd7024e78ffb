//! The one place where internal errors become Kafka error codes.
//!
//! Handlers never pick a numeric code for a failure of the log, the metadata
//! store or the record checks themselves: they call these functions, so the
//! same failure always reaches every client as the same code. A code that
//! hides a server-side problem (`KAFKA_STORAGE_ERROR`, `UNKNOWN_SERVER_ERROR`)
//! is logged here with its cause.

use kafka_protocol::error::ResponseError;

/// The code for a failed log operation.
pub fn storage_error(e: &storage::Error) -> ResponseError {
    use storage::Error as E;
    match e {
        E::UnknownTopicOrPartition(_) => ResponseError::UnknownTopicOrPartition,
        // Another broker leads the partition (or none does right now).
        E::NotLeader(_) => ResponseError::NotLeaderOrFollower,
        E::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange,
        // A broker that is stopping tells clients to look for
        // the leader again, as Kafka does during a controlled shutdown.
        E::ShuttingDown => ResponseError::NotLeaderOrFollower,
        E::Metadata(m) => metadata_error(m),
        E::OutOfOrderSequence(_) => ResponseError::OutOfOrderSequenceNumber,
        E::InvalidProducerEpoch(_) => ResponseError::InvalidProducerEpoch,
        E::Unavailable(_)
        | E::TimedOut(_)
        | E::Io(_)
        | E::NotFound(_)
        | E::AlreadyExists(_)
        | E::InvalidKey(_)
        | E::InvalidRange { .. }
        | E::CorruptObject(_) => {
            tracing::warn!(error = %e, "storage failure answered as KAFKA_STORAGE_ERROR");
            ResponseError::KafkaStorageError
        }
    }
}

/// The code for a failed metadata operation.
pub fn metadata_error(e: &metadata::Error) -> ResponseError {
    use metadata::Error as E;
    match e {
        E::TopicAlreadyExists(_) => ResponseError::TopicAlreadyExists,
        E::UnknownTopic(_) => ResponseError::UnknownTopicOrPartition,
        E::InvalidPartitions(_) => ResponseError::InvalidPartitions,
        E::LogStartBeyondEnd { .. } => ResponseError::OffsetOutOfRange,
        E::Fenced { .. }
        | E::OffsetMismatch { .. }
        | E::SessionFenced(_)
        | E::NotClaimable { .. } => ResponseError::NotLeaderOrFollower,
        // Only the compactor swaps, and it drops a refused swap; no client
        // request reaches this.
        E::SwapRefused { .. } => ResponseError::UnknownServerError,
        E::GroupFenced { .. } => ResponseError::NotCoordinator,
        E::GroupNotClaimable { .. } => ResponseError::CoordinatorLoadInProgress,
        E::Timeout => ResponseError::RequestTimedOut,
        // Nothing was applied; KAFKA_STORAGE_ERROR is retriable for clients.
        E::Unavailable(_) => {
            tracing::warn!(error = %e, "metadata store unavailable, answered as KAFKA_STORAGE_ERROR");
            ResponseError::KafkaStorageError
        }
        E::Backend(_) | E::BrokerIdInUse { .. } => {
            tracing::error!(error = %e, "metadata store failure answered as KAFKA_STORAGE_ERROR");
            ResponseError::KafkaStorageError
        }
    }
}

/// The code for a group coordinator error.
pub fn group_error(e: &crate::groups::GroupError) -> ResponseError {
    use crate::groups::GroupError as E;
    match e {
        E::UnknownMemberId => ResponseError::UnknownMemberId,
        E::IllegalGeneration => ResponseError::IllegalGeneration,
        E::RebalanceInProgress => ResponseError::RebalanceInProgress,
        E::FencedInstanceId => ResponseError::FencedInstanceId,
        E::InconsistentGroupProtocol => ResponseError::InconsistentGroupProtocol,
        E::InvalidSessionTimeout => ResponseError::InvalidSessionTimeout,
        E::MemberIdRequired => ResponseError::MemberIdRequired,
        E::GroupIdNotFound => ResponseError::GroupIdNotFound,
        E::NonEmptyGroup => ResponseError::NonEmptyGroup,
        E::GroupSubscribedToTopic => ResponseError::GroupSubscribedToTopic,
        E::CoordinatorNotAvailable => ResponseError::CoordinatorNotAvailable,
        E::InvalidGroupId => ResponseError::InvalidGroupId,
        // A failed write of offsets: retriable, as Kafka answers when its
        // offsets topic cannot be written.
        E::Storage => ResponseError::CoordinatorNotAvailable,
        E::NotCoordinator => ResponseError::NotCoordinator,
        E::CoordinatorLoadInProgress => ResponseError::CoordinatorLoadInProgress,
    }
}

/// The code for a failure to reserve producer ids: retriable, as Kafka's
/// `RPCProducerIdManager` answers while no block is available.
pub fn producer_id_error(e: &metadata::Error) -> ResponseError {
    tracing::warn!(error = %e, "producer id block not reserved; answered COORDINATOR_LOAD_IN_PROGRESS");
    ResponseError::CoordinatorLoadInProgress
}

/// The code for a record batch that failed the produce checks, as Kafka's
/// `ProduceRequest.validateRecords` and `LogValidator` answer them.
pub fn batch_error(e: &protocol::Error) -> ResponseError {
    use protocol::Error as E;
    match e {
        E::CorruptBatch(_) => ResponseError::CorruptMessage,
        // Kafka 4: "Produce requests with version 3+ are only allowed to
        // contain record batches with magic version 2" (InvalidRecordException).
        E::UnsupportedMagic(_) | E::InvalidRecord(_) => ResponseError::InvalidRecord,
        // Kafka sets no bound on decompressed size; the closest refusal it
        // has, and one clients do not retry, is "too large".
        E::DecompressedTooLarge { .. } => ResponseError::MessageTooLarge,
        other => {
            tracing::warn!(error = %other, "unexpected batch error answered as CORRUPT_MESSAGE");
            ResponseError::CorruptMessage
        }
    }
}

/// The code for a rejected configuration.
pub fn config_error(e: &crate::configs::ConfigError) -> ResponseError {
    use crate::configs::ConfigError as E;
    match e {
        E::Unknown(_) | E::Invalid(_) => ResponseError::InvalidConfig,
        E::InvalidRequest(_) => ResponseError::InvalidRequest,
    }
}

/// `Some(message)` for an error whose text helps the client; Kafka sends the
/// exception message in `error_message` fields.
pub fn message(e: &impl std::fmt::Display) -> Option<kafka_protocol::protocol::StrBytes> {
    Some(kafka_protocol::protocol::StrBytes::from_string(
        e.to_string(),
    ))
}
