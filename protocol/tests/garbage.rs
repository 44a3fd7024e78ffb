//! Bad input must give an error, never a panic: random frames and valid
//! frames with random bytes flipped, fed to the request decoder and the
//! record batch checks. A deterministic generator keeps failures
//! reproducible (the case number and the bytes are in the panic message).

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, FetchRequest, MetadataRequest, ProduceRequest, RequestHeader,
    RequestKind, TopicName,
};
use kafka_protocol::protocol::{Encodable, StrBytes};
use kafka_protocol::records::Compression;

/// xorshift64*: small, deterministic, good enough to spray bytes.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn frame(api_key: ApiKey, version: i16, body: &RequestKind) -> Bytes {
    let mut buf = BytesMut::new();
    RequestHeader::default()
        .with_request_api_key(api_key as i16)
        .with_request_api_version(version)
        .with_correlation_id(1)
        .with_client_id(Some(StrBytes::from_static_str("garbage")))
        .encode(&mut buf, api_key.request_header_version(version))
        .unwrap();
    body.encode(&mut buf, version).unwrap();
    buf.freeze()
}

fn valid_frames() -> Vec<Bytes> {
    let batch =
        protocol::testing::record_batch(&["a", "bb", "ccc"], 1_000, true, Compression::Gzip);
    let produce = ProduceRequest::default()
        .with_acks(-1)
        .with_topic_data(vec![
            TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_static_str("t")))
                .with_partition_data(vec![
                    PartitionProduceData::default().with_records(Some(batch)),
                ]),
        ]);
    vec![
        frame(
            ApiKey::ApiVersions,
            3,
            &RequestKind::ApiVersions(ApiVersionsRequest::default()),
        ),
        frame(
            ApiKey::Metadata,
            12,
            &RequestKind::Metadata(MetadataRequest::default()),
        ),
        frame(
            ApiKey::Fetch,
            12,
            &RequestKind::Fetch(FetchRequest::default()),
        ),
        frame(ApiKey::Produce, 9, &RequestKind::Produce(produce.clone())),
        frame(ApiKey::Produce, 3, &RequestKind::Produce(produce)),
    ]
}

#[test]
fn random_frames_are_errors_not_panics() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for case in 0..20_000 {
        let len = rng.below(200);
        let mut buf = BytesMut::with_capacity(len + 4);
        // Half the time a plausible prefix: a known api key and version.
        if case % 2 == 0 {
            buf.put_i16(rng.below(70) as i16);
            buf.put_i16(rng.below(20) as i16);
        }
        for _ in 0..len {
            buf.put_u8(rng.next() as u8);
        }
        let frozen = buf.freeze();
        let outcome = std::panic::catch_unwind(|| protocol::decode_request(frozen.clone()));
        assert!(
            outcome.is_ok(),
            "decode_request panicked on case {case}: {:?}",
            &frozen[..]
        );
    }
}

#[test]
fn flipped_bytes_in_valid_frames_are_errors_not_panics() {
    let mut rng = Rng(0x1234_5678_9abc_def1);
    let frames = valid_frames();
    for case in 0..20_000 {
        let mut bytes = BytesMut::from(&frames[case % frames.len()][..]);
        for _ in 0..1 + rng.below(4) {
            let at = rng.below(bytes.len());
            bytes[at] = rng.next() as u8;
        }
        if rng.below(4) == 0 {
            let keep = rng.below(bytes.len());
            bytes.truncate(keep);
        }
        let frozen = bytes.freeze();
        let decoded = std::panic::catch_unwind(|| protocol::decode_request(frozen.clone()));
        let Ok(decoded) = decoded else {
            panic!("decode_request panicked on case {case}: {:?}", &frozen[..]);
        };
        // Whatever decodes as a produce goes through the batch checks too.
        if let Ok(protocol::Decoded::Request(request)) = decoded
            && let RequestKind::Produce(produce) = request.body
        {
            for topic in produce.topic_data {
                for partition in topic.partition_data {
                    if let Some(records) = partition.records {
                        let checked = std::panic::catch_unwind(|| {
                            protocol::batch::validate_produce_batch(&records, &Default::default())
                                .is_ok()
                        });
                        assert!(checked.is_ok(), "batch check panicked on case {case}");
                    }
                }
            }
        }
    }
}

#[test]
fn random_batches_are_errors_not_panics() {
    let mut rng = Rng(0x0bad_c0de_dead_beef);
    let valid: Vec<_> = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ]
    .into_iter()
    .map(|c| protocol::testing::record_batch(&["x", "yy", "zzz"], 5, true, c))
    .collect();
    for case in 0..20_000 {
        let mut bytes = BytesMut::from(&valid[case % valid.len()][..]);
        for _ in 0..1 + rng.below(6) {
            let at = rng.below(bytes.len());
            bytes[at] = rng.next() as u8;
        }
        // Half the cases get a good CRC, so the record walk and the
        // decompressors see the damage rather than the CRC check.
        if case % 2 == 0 && bytes.len() > 21 {
            let crc = crc32c::crc32c(&bytes[21..]);
            bytes[17..21].copy_from_slice(&crc.to_be_bytes());
        }
        let outcome = std::panic::catch_unwind(|| {
            let _ = protocol::batch::validate_produce_batch(&bytes, &Default::default());
            protocol::batch::batches(&bytes).count()
        });
        assert!(
            outcome.is_ok(),
            "batch view panicked on case {case}: {:?}",
            &bytes[..]
        );
    }
}

#[test]
fn a_compression_bomb_is_an_error_not_an_allocation() {
    use kafka_protocol::records::RecordBatchDecoder;
    // 129 MiB of zeros: gzip makes it ~130 KiB, past the 128 MiB bound.
    let zeros = "\0".repeat(129 << 20);
    let batch = protocol::testing::record_batch(&[&zeros], 0, false, Compression::Gzip);
    drop(zeros);
    assert!(batch.len() < 1 << 20, "compressed to {} bytes", batch.len());
    let mut bytes = batch;
    let decoded = RecordBatchDecoder::decode(&mut bytes);
    let error = decoded
        .expect_err("decoding must refuse the bomb")
        .to_string();
    assert!(error.contains("decompress"), "{error}");
}
