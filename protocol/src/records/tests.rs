use super::*;
use crate::batch::{check_produce_header, parse_header};
use crate::testing::{batch_with_payload, compress, put_varint, record_bytes};

const CODECS: [i16; 5] = [0, 1, 2, 3, 4];

fn walk(batch: &[u8], checks: &RecordChecks) -> Result<RecordsSummary, Error> {
    let header = check_produce_header(batch)?;
    walk_records(&header, batch, checks)
}

/// `n` well-formed records (keyed, one header each) as one payload.
fn good_records(n: i32) -> Vec<u8> {
    (0..n)
        .flat_map(|i| {
            record_bytes(
                i,
                i as i64,
                Some(format!("k{i}").as_bytes()),
                Some(b"value"),
                &[(b"h", Some(b"v"))],
            )
        })
        .collect()
}

fn batch(records: &[u8], count: i32, codec: i16) -> Vec<u8> {
    batch_with_payload(&compress(codec, records), count, codec).to_vec()
}

fn assert_invalid(result: Result<RecordsSummary, Error>, what: &str) {
    assert!(
        matches!(result, Err(Error::InvalidRecord(_))),
        "{what}: {result:?}"
    );
}

#[test]
fn good_records_pass_in_every_codec() {
    for codec in CODECS {
        let summary = walk(&batch(&good_records(5), 5, codec), &RecordChecks::default())
            .unwrap_or_else(|e| panic!("codec {codec}: {e}"));
        assert_eq!(summary.count, 5);
        assert_eq!(
            (summary.min_timestamp, summary.max_timestamp),
            (1_000, 1_004)
        );
        assert!(summary.record_errors.is_empty());
        assert_eq!(summary.records_bytes, good_records(5).len() as u64);
    }
}

#[test]
fn raw_snappy_as_librdkafka_writes_it_passes() {
    let payload = snap::raw::Encoder::new()
        .compress_vec(&good_records(3))
        .unwrap();
    let summary = walk(
        &batch_with_payload(&payload, 3, 2),
        &RecordChecks::default(),
    )
    .unwrap();
    assert_eq!(summary.count, 3);
}

#[test]
fn records_spanning_snappy_blocks_pass() {
    // 2,000 records of ~20 bytes: several 32 KiB xerial blocks, records cut
    // across block boundaries.
    let summary = walk(
        &batch(&good_records(2_000), 2_000, 2),
        &RecordChecks::default(),
    )
    .unwrap();
    assert_eq!(summary.count, 2_000);
}

#[test]
fn a_key_longer_than_its_record_is_refused_in_every_codec() {
    // Length says 1000 inside a record of ~10 bytes.
    let mut record = vec![0u8];
    put_varint(&mut record, 0); // timestamp delta
    put_varint(&mut record, 0); // offset delta
    put_varint(&mut record, 1_000); // key length
    record.extend_from_slice(b"abc");
    let mut payload = Vec::new();
    put_varint(&mut payload, record.len() as i64);
    payload.extend_from_slice(&record);
    for codec in CODECS {
        assert_invalid(
            walk(&batch(&payload, 1, codec), &RecordChecks::default()),
            &format!("codec {codec}"),
        );
    }
}

#[test]
fn more_records_than_declared_are_refused_in_every_codec() {
    // The gzip batch that declared 1 record and held 5.
    for codec in CODECS {
        assert_invalid(
            walk(&batch(&good_records(5), 1, codec), &RecordChecks::default()),
            &format!("codec {codec}"),
        );
    }
}

#[test]
fn fewer_records_than_declared_are_refused_in_every_codec() {
    for codec in CODECS {
        assert_invalid(
            walk(&batch(&good_records(2), 3, codec), &RecordChecks::default()),
            &format!("codec {codec}"),
        );
    }
}

#[test]
fn garbage_for_each_codec_is_refused() {
    let garbage = b"this is not compressed by anything at all, honestly".repeat(3);
    for codec in [1, 2, 3, 4] {
        let result = walk(
            &batch_with_payload(&garbage, 1, codec),
            &RecordChecks::default(),
        );
        assert_invalid(result, &format!("codec {codec}"));
    }
}

#[test]
fn truncated_compressed_payloads_are_refused() {
    for codec in [1, 2, 3, 4] {
        let full = compress(codec, &good_records(50));
        let cut = &full[..full.len() * 2 / 3];
        let result = walk(
            &batch_with_payload(cut, 50, codec),
            &RecordChecks::default(),
        );
        assert_invalid(result, &format!("codec {codec}"));
    }
}

#[test]
fn trailing_bytes_after_the_records_are_refused() {
    for codec in CODECS {
        let mut records = good_records(2);
        records.extend_from_slice(&[0x04, 0x00]); // a record of 2 bytes: too short
        assert_invalid(
            walk(&batch(&records, 2, codec), &RecordChecks::default()),
            &format!("codec {codec}"),
        );
    }
}

#[test]
fn negative_lengths_are_refused() {
    let bad_shapes: Vec<(&str, Vec<u8>)> = vec![
        ("record length", {
            let mut p = Vec::new();
            put_varint(&mut p, -5);
            p
        }),
        (
            "key length",
            raw_record(|r| {
                put_varint(r, -2);
            }),
        ),
        (
            "value length",
            raw_record(|r| {
                put_varint(r, -1); // null key
                put_varint(r, -7);
            }),
        ),
        (
            "header count",
            raw_record(|r| {
                put_varint(r, -1);
                put_varint(r, -1);
                put_varint(r, -1);
            }),
        ),
        (
            "header key length",
            raw_record(|r| {
                put_varint(r, -1);
                put_varint(r, -1);
                put_varint(r, 1);
                put_varint(r, -1);
            }),
        ),
    ];
    for (what, payload) in bad_shapes {
        for codec in CODECS {
            assert_invalid(
                walk(&batch(&payload, 1, codec), &RecordChecks::default()),
                &format!("{what}, codec {codec}"),
            );
        }
    }
}

/// A record whose fields after the offset delta are written by `rest`, with
/// a correct length prefix.
fn raw_record(rest: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut record = vec![0u8];
    put_varint(&mut record, 0);
    put_varint(&mut record, 0);
    rest(&mut record);
    let mut payload = Vec::new();
    put_varint(&mut payload, record.len() as i64);
    payload.extend_from_slice(&record);
    payload
}

#[test]
fn header_count_lies_are_refused() {
    // Two headers announced, one present.
    let payload = raw_record(|r| {
        put_varint(r, -1);
        put_varint(r, -1);
        put_varint(r, 2);
        put_varint(r, 1);
        r.push(b'h');
        put_varint(r, -1);
    });
    assert_invalid(
        walk(&batch(&payload, 1, 0), &RecordChecks::default()),
        "header count",
    );
}

#[test]
fn varint_overflow_is_refused() {
    // An offset delta of six continuation bytes, and one that overflows 32 bits.
    for varint in [
        vec![0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
        vec![0xff, 0xff, 0xff, 0xff, 0x7f],
    ] {
        let mut record = vec![0u8, 0u8];
        record.extend_from_slice(&varint);
        record.extend_from_slice(&[1, 1, 0]);
        let mut payload = Vec::new();
        put_varint(&mut payload, record.len() as i64);
        payload.extend_from_slice(&record);
        assert_invalid(
            walk(&batch(&payload, 1, 0), &RecordChecks::default()),
            "varint",
        );
    }
}

#[test]
fn offset_deltas_past_the_declared_last_offset_are_record_errors() {
    let payload: Vec<u8> = [0, 1, 7]
        .iter()
        .flat_map(|&d| record_bytes(d, 0, Some(b"k"), Some(b"v"), &[]))
        .collect();
    for codec in CODECS {
        let summary = walk(&batch(&payload, 3, codec), &RecordChecks::default()).unwrap();
        assert_eq!(
            summary.record_errors,
            vec![(
                2,
                RecordProblem::OffsetDelta {
                    expected: 2,
                    found: 7
                }
            )],
            "codec {codec}"
        );
    }
}

#[test]
fn keyless_records_in_compacted_topics_are_record_errors() {
    let payload: Vec<u8> = [Some(&b"k"[..]), None, Some(b"k"), None]
        .iter()
        .enumerate()
        .flat_map(|(i, key)| record_bytes(i as i32, 0, *key, Some(b"v"), &[]))
        .collect();
    let checks = RecordChecks {
        require_key: true,
        ..RecordChecks::default()
    };
    for codec in CODECS {
        let summary = walk(&batch(&payload, 4, codec), &checks).unwrap();
        assert_eq!(
            summary.record_errors,
            vec![
                (1, RecordProblem::MissingKey),
                (3, RecordProblem::MissingKey)
            ]
        );
    }
    let summary = walk(&batch(&payload, 4, 0), &RecordChecks::default()).unwrap();
    assert!(summary.record_errors.is_empty());
}

#[test]
fn timestamps_outside_the_window_are_record_errors() {
    // Base timestamp 1,000; deltas 0, 5,000, 100.
    let payload: Vec<u8> = [0i64, 5_000, 100]
        .iter()
        .enumerate()
        .flat_map(|(i, &delta)| record_bytes(i as i32, delta, Some(b"k"), None, &[]))
        .collect();
    let checks = RecordChecks {
        timestamps: Some(TimestampWindow {
            now_ms: 1_050,
            before_max_ms: 1_000,
            after_max_ms: 1_000,
        }),
        ..RecordChecks::default()
    };
    let summary = walk(&batch(&payload, 3, 4), &checks).unwrap();
    assert_eq!(
        summary.record_errors,
        vec![(1, RecordProblem::Timestamp(6_000))]
    );
    assert_eq!(summary.max_timestamp, 6_000);
}

#[test]
fn a_zip_bomb_stops_at_the_bound_without_holding_its_output() {
    // 64 MiB of zeros compress to a few KiB in every codec.
    let zeros = vec![0u8; 64 * 1024 * 1024];
    let checks = RecordChecks {
        max_decompressed_bytes: 1024 * 1024,
        ..RecordChecks::default()
    };
    for codec in [1, 2, 3, 4] {
        let bomb = compress(codec, &zeros);
        assert!(
            bomb.len() < 4 * 1024 * 1024,
            "codec {codec}: {}",
            bomb.len()
        );
        let result = walk(&batch_with_payload(&bomb, 1, codec), &checks);
        // Zeros parse as records of length 0, which are refused first, or
        // the bound is hit: either way the batch is refused, early.
        assert!(result.is_err(), "codec {codec}");
    }
    // A bomb made of well-formed records hits the bound itself.
    let records = good_records(200_000);
    for codec in [1, 2, 3, 4] {
        let result = walk(&batch(&records, 200_000, codec), &checks);
        assert!(
            matches!(result, Err(Error::DecompressedTooLarge { limit }) if limit == 1024 * 1024),
            "codec {codec}: {result:?}"
        );
    }
}

#[test]
fn a_raw_snappy_length_claim_is_checked_before_allocating() {
    // A raw snappy block claiming 100 MiB from 10 bytes.
    let mut payload = Vec::new();
    let mut claim = 100u64 * 1024 * 1024;
    while claim >= 0x80 {
        payload.push((claim as u8) | 0x80);
        claim >>= 7;
    }
    payload.push(claim as u8);
    payload.extend_from_slice(&[0u8; 8]);
    let result = walk(
        &batch_with_payload(&payload, 1, 2),
        &RecordChecks::default(),
    );
    assert_invalid(result, "raw snappy claim");
}

#[test]
fn the_header_parse_sees_the_batch_the_helper_builds() {
    let b = batch(&good_records(3), 3, 0);
    let header = parse_header(&b).unwrap();
    assert_eq!(header.records_count, 3);
    assert_eq!(header.size_bytes(), b.len());
}
