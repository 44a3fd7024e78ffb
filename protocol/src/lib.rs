//! Lightstream's Kafka wire layer: framing, request decode and response
//! encode over the `kafka-protocol` crate, the one table of supported API
//! versions, and a zero-copy view of RecordBatch v2 headers.
//!
//! Pure code: no I/O, no async, no business rules. The broker decides what a
//! request means; this crate only says what the bytes are.

pub mod batch;
pub mod codec;
pub mod frame;
pub mod records;
pub mod segmented;
pub mod testing;
pub mod versions;

pub use codec::{Decoded, Request, decode_request, encode_response, encode_response_segments};
pub use kafka_protocol;

/// What can be wrong with bytes from the wire.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("frame too large size={size} max={max}")]
    FrameTooLarge { size: usize, max: usize },
    #[error("invalid frame size size={size}")]
    InvalidFrameSize { size: i64 },
    #[error("truncated request needed={needed} got={got}")]
    Truncated { needed: usize, got: usize },
    #[error("unknown api key api_key={0}")]
    UnknownApiKey(i16),
    /// A version this broker does not answer. The message names the API, the
    /// version asked and the range answered, so an operator knows which
    /// client to upgrade (Kafka 4 dropped the old versions, KIP-896).
    #[error("{}", unsupported_version_message(*.api_key, *.api_version))]
    UnsupportedVersion {
        api_key: kafka_protocol::messages::ApiKey,
        api_version: i16,
    },
    #[error(
        "malformed request api_key={api_key:?} api_version={api_version} part={part}: {reason}"
    )]
    Malformed {
        api_key: kafka_protocol::messages::ApiKey,
        api_version: i16,
        part: &'static str,
        reason: String,
    },
    #[error("encode failed: {0}")]
    Encode(String),
    /// CRC mismatch or lengths that do not add up: Kafka's CORRUPT_MESSAGE.
    #[error("corrupt record batch: {0}")]
    CorruptBatch(String),
    /// A message format older than v2: Kafka 4 no longer accepts it.
    #[error("unsupported record batch magic={0}")]
    UnsupportedMagic(i8),
    /// A compressed batch whose records decompress to more than the bound
    /// (`records::MAX_DECOMPRESSED_BYTES`, or a smaller one asked for).
    #[error("record batch decompresses to more than {limit} bytes")]
    DecompressedTooLarge { limit: usize },
    /// Well-formed bytes that break a record rule: Kafka's INVALID_RECORD.
    #[error("invalid record: {0}")]
    InvalidRecord(String),
}

/// "Produce v2 is below the lowest version this broker answers, v3 (...)".
fn unsupported_version_message(
    api_key: kafka_protocol::messages::ApiKey,
    api_version: i16,
) -> String {
    match versions::supported(api_key) {
        Some(range) if api_version < range.min_version => format!(
            "unsupported version: {api_key:?} v{api_version} is below the lowest version this broker answers, v{} \
             (Kafka 4 removed the older ones, KIP-896): upgrade the client",
            range.min_version
        ),
        Some(range) => format!(
            "unsupported version: {api_key:?} v{api_version} is above the highest version this broker answers, v{} \
             (clients must pick a version from the ApiVersions answer)",
            range.max_version
        ),
        None => format!(
            "unsupported api: this broker does not answer {api_key:?} (v{api_version} asked) at any version"
        ),
    }
}

impl Error {
    pub(crate) fn malformed(
        api_key: kafka_protocol::messages::ApiKey,
        api_version: i16,
        part: &'static str,
        reason: impl std::fmt::Display,
    ) -> Self {
        Error::Malformed {
            api_key,
            api_version,
            part,
            reason: reason.to_string(),
        }
    }
}
