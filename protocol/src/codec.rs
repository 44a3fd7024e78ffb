//! Request decode and response encode over the `kafka-protocol` crate.
//!
//! Decoding peeks the fixed header prefix (api key, api version, correlation
//! id: 8 bytes, the same in every header version) before handing the frame to
//! the crate, because the crate's own peek panics on buffers under 4 bytes and
//! because the version must be checked against `versions::SUPPORTED_APIS`
//! before the body is parsed. Responses get the header version the crate
//! computes for the api and version (ApiVersions always answers with header v0).

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsResponse, RequestHeader, RequestKind, ResponseHeader, ResponseKind,
};
use kafka_protocol::protocol::{Decodable, Encodable};

use crate::segmented::SegmentedBuf;
use crate::{Error, versions};

/// Bytes of the header prefix every request version shares.
const HEADER_PREFIX_BYTES: usize = 8;

/// Kafka's UNSUPPORTED_VERSION error code.
const UNSUPPORTED_VERSION: i16 = 35;

/// A decoded request.
#[derive(Debug)]
pub struct Request {
    pub header: RequestHeader,
    pub api_key: ApiKey,
    pub body: RequestKind,
}

impl Request {
    pub fn api_version(&self) -> i16 {
        self.header.request_api_version
    }
}

/// What a frame turned out to be.
#[derive(Debug)]
pub enum Decoded {
    Request(Box<Request>),
    /// An ApiVersions request of a version this broker does not know. Kafka
    /// answers it (in the v0 form, error UNSUPPORTED_VERSION) so that the client
    /// can retry with a version from the list.
    UnsupportedApiVersions {
        correlation_id: i32,
    },
}

/// The fixed prefix of a request header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeaderPrefix {
    pub api_key: i16,
    pub api_version: i16,
    pub correlation_id: i32,
}

/// Reads api key, version and correlation id without trusting the frame length.
pub fn peek_header(frame: &[u8]) -> Result<HeaderPrefix, Error> {
    if frame.len() < HEADER_PREFIX_BYTES {
        return Err(Error::Truncated {
            needed: HEADER_PREFIX_BYTES,
            got: frame.len(),
        });
    }
    Ok(HeaderPrefix {
        api_key: i16::from_be_bytes([frame[0], frame[1]]),
        api_version: i16::from_be_bytes([frame[2], frame[3]]),
        correlation_id: i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]),
    })
}

/// Decodes one frame (without its length prefix) into a request.
///
/// Errors mean the connection should be closed: an unknown api key, an api the
/// broker does not answer, an unsupported version of anything but ApiVersions,
/// or bytes that do not parse.
pub fn decode_request(mut frame: Bytes) -> Result<Decoded, Error> {
    let prefix = peek_header(&frame)?;
    let api_key =
        ApiKey::try_from(prefix.api_key).map_err(|()| Error::UnknownApiKey(prefix.api_key))?;
    if !versions::is_supported(api_key, prefix.api_version) {
        if api_key == ApiKey::ApiVersions {
            return Ok(Decoded::UnsupportedApiVersions {
                correlation_id: prefix.correlation_id,
            });
        }
        return Err(Error::UnsupportedVersion {
            api_key,
            api_version: prefix.api_version,
        });
    }
    let header_version = api_key.request_header_version(prefix.api_version);
    let header = RequestHeader::decode(&mut frame, header_version)
        .map_err(|e| Error::malformed(api_key, prefix.api_version, "header", e))?;
    let body = RequestKind::decode(api_key, &mut frame, prefix.api_version)
        .map_err(|e| Error::malformed(api_key, prefix.api_version, "body", e))?;
    Ok(Decoded::Request(Box::new(Request {
        header,
        api_key,
        body,
    })))
}

/// Encodes a response with its length prefix and the right header version,
/// as one buffer.
pub fn encode_response(
    api_key: ApiKey,
    api_version: i16,
    correlation_id: i32,
    body: &ResponseKind,
) -> Result<Bytes, Error> {
    let mut segments = encode_response_segments(api_key, api_version, correlation_id, body)?;
    if segments.len() == 1 {
        return Ok(segments.pop().expect("one segment"));
    }
    let mut joined = BytesMut::with_capacity(segments.iter().map(Bytes::len).sum());
    for segment in &segments {
        joined.extend_from_slice(segment);
    }
    Ok(joined.freeze())
}

/// Encodes a response with its length prefix as a list of segments to be
/// written in order. A Fetch answer's record sets are referenced, not copied
/// (see `segmented`); every other answer is one segment.
pub fn encode_response_segments(
    api_key: ApiKey,
    api_version: i16,
    correlation_id: i32,
    body: &ResponseKind,
) -> Result<Vec<Bytes>, Error> {
    let header_version = api_key.response_header_version(api_version);
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    if let ResponseKind::Fetch(fetch) = body {
        let records: Vec<Bytes> = fetch
            .responses
            .iter()
            .flat_map(|t| t.partitions.iter())
            .filter_map(|p| p.records.clone())
            .collect();
        let size = header
            .compute_size(header_version)
            .and_then(|h| Ok(h + fetch.compute_size(api_version)?))
            .map_err(encode_failed(api_key, api_version))?;
        let mut buf = SegmentedBuf::new(records, 4 + size.min(SMALL_PART_CAPACITY));
        buf.put_i32(
            i32::try_from(size)
                .map_err(|_| Error::Encode(format!("response too large size={size}")))?,
        );
        header
            .encode(&mut buf, header_version)
            .map_err(encode_failed(api_key, api_version))?;
        fetch
            .encode(&mut buf, api_version)
            .map_err(encode_failed(api_key, api_version))?;
        if buf.len() != size + 4 {
            return Err(Error::Encode(format!(
                "fetch answer size mismatch computed={size} encoded={}",
                buf.len() - 4
            )));
        }
        return Ok(buf.into_segments());
    }
    let mut buf = BytesMut::with_capacity(64);
    buf.put_i32(0); // length, patched below
    header
        .encode(&mut buf, header_version)
        .map_err(encode_failed(api_key, api_version))?;
    body.encode(&mut buf, api_version)
        .map_err(encode_failed(api_key, api_version))?;
    let size = i32::try_from(buf.len() - 4)
        .map_err(|_| Error::Encode(format!("response too large size={}", buf.len())))?;
    buf[..4].copy_from_slice(&size.to_be_bytes());
    Ok(vec![buf.freeze()])
}

fn encode_failed<E: std::fmt::Display>(api_key: ApiKey, api_version: i16) -> impl Fn(E) -> Error {
    move |e| {
        Error::Encode(format!(
            "api_key={api_key:?} api_version={api_version}: {e}"
        ))
    }
}

/// Capacity reserved for the copied parts of a Fetch answer (headers,
/// fields, small record sets); it grows if needed.
const SMALL_PART_CAPACITY: usize = 64 * 1024;

/// The answer to an ApiVersions request of an unknown version: v0 form,
/// UNSUPPORTED_VERSION, with the supported list so the client can pick.
pub fn encode_unsupported_api_versions(correlation_id: i32) -> Result<Bytes, Error> {
    let body = ApiVersionsResponse::default()
        .with_error_code(UNSUPPORTED_VERSION)
        .with_api_keys(versions::api_versions());
    encode_response(
        ApiKey::ApiVersions,
        0,
        correlation_id,
        &ResponseKind::ApiVersions(body),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::ApiVersionsRequest;

    fn request_frame(api_key: ApiKey, version: i16, body: &RequestKind) -> Bytes {
        let mut buf = BytesMut::new();
        let header = RequestHeader::default()
            .with_request_api_key(api_key as i16)
            .with_request_api_version(version)
            .with_correlation_id(7);
        header
            .encode(&mut buf, api_key.request_header_version(version))
            .unwrap();
        body.encode(&mut buf, version).unwrap();
        buf.freeze()
    }

    #[test]
    fn decodes_api_versions_v3() {
        let frame = request_frame(
            ApiKey::ApiVersions,
            3,
            &RequestKind::ApiVersions(ApiVersionsRequest::default()),
        );
        match decode_request(frame).unwrap() {
            Decoded::Request(r) => {
                assert_eq!(r.api_key, ApiKey::ApiVersions);
                assert_eq!(r.header.correlation_id, 7);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn unknown_api_versions_version_is_answered() {
        let mut frame = BytesMut::new();
        frame.put_i16(ApiKey::ApiVersions as i16);
        frame.put_i16(99);
        frame.put_i32(42);
        frame.put_i16(-1);
        let decoded = decode_request(frame.freeze()).unwrap();
        assert!(matches!(
            decoded,
            Decoded::UnsupportedApiVersions { correlation_id: 42 }
        ));
        let bytes = encode_unsupported_api_versions(42).unwrap();
        // length, correlation id, error code
        assert_eq!(&bytes[4..8], &42i32.to_be_bytes());
        assert_eq!(&bytes[8..10], &UNSUPPORTED_VERSION.to_be_bytes());
    }

    #[test]
    fn short_frames_are_errors_not_panics() {
        for len in 0..HEADER_PREFIX_BYTES {
            let frame = Bytes::from(vec![0u8; len]);
            assert!(matches!(
                decode_request(frame),
                Err(Error::Truncated { .. })
            ));
        }
    }

    #[test]
    fn unknown_api_key_is_rejected() {
        let mut frame = BytesMut::new();
        frame.put_i16(9999);
        frame.put_i16(0);
        frame.put_i32(1);
        assert!(matches!(
            decode_request(frame.freeze()),
            Err(Error::UnknownApiKey(9999))
        ));
    }

    #[test]
    fn unsupported_version_of_other_api_is_rejected() {
        let mut frame = BytesMut::new();
        frame.put_i16(ApiKey::Metadata as i16);
        frame.put_i16(99);
        frame.put_i32(1);
        assert!(matches!(
            decode_request(frame.freeze()),
            Err(Error::UnsupportedVersion { .. })
        ));
    }

    #[test]
    fn a_version_below_the_floor_is_named_with_the_lowest_one_answered() {
        let mut frame = BytesMut::new();
        frame.put_i16(ApiKey::Produce as i16);
        frame.put_i16(2);
        frame.put_i32(1);
        let message = decode_request(frame.freeze()).unwrap_err().to_string();
        let floor = versions::supported(ApiKey::Produce).unwrap().min_version;
        assert!(
            message.contains("Produce v2")
                && message.contains(&format!("lowest version this broker answers, v{floor}")),
            "{message}"
        );
    }

    #[test]
    fn an_api_the_broker_does_not_answer_is_named() {
        let mut frame = BytesMut::new();
        frame.put_i16(ApiKey::EndTxn as i16);
        frame.put_i16(3);
        frame.put_i32(1);
        let message = decode_request(frame.freeze()).unwrap_err().to_string();
        assert!(message.contains("does not answer EndTxn"), "{message}");
    }

    #[test]
    fn truncated_body_is_malformed() {
        let frame = request_frame(
            ApiKey::ApiVersions,
            3,
            &RequestKind::ApiVersions(
                ApiVersionsRequest::default()
                    .with_client_software_name("kcat".into())
                    .with_client_software_version("1.7".into()),
            ),
        );
        let cut = frame.slice(..frame.len() - 3);
        assert!(matches!(decode_request(cut), Err(Error::Malformed { .. })));
    }
}
