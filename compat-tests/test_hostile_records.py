"""Record batches that lie inside a good CRC, sent between a real producer's
acknowledged records.

Every batch here has a correct CRC-32C, so only reading its records shows
the lie: a key length past its record, a "gzip" payload that is not gzip, a
compressed batch declaring 1 record and holding 5 (whose inner offsets would
overlap the next producer's), negative lengths, varint overflow, header
counts that lie, offset deltas past the declared last offset, truncated and
over-long payloads, for every codec. Kafka's LogValidator refuses each with
INVALID_RECORD or CORRUPT_MESSAGE; so must we. Then a librdkafka consumer
reads the partition from the start and must see every acknowledged record of
the honest producer at its offset, and nothing else.
"""

from __future__ import annotations

import pytest

from tools import kafka_wire as kw
from tools.clients import create_topic, produce_all, producer, read_partitions, unique_topic

CODECS = [kw.CODEC_NONE, kw.CODEC_GZIP, kw.CODEC_SNAPPY, kw.CODEC_LZ4, kw.CODEC_ZSTD]
CODEC_NAMES = {0: "none", 1: "gzip", 2: "snappy", 3: "lz4", 4: "zstd"}
REFUSED = {kw.ERROR_INVALID_RECORD, kw.ERROR_CORRUPT_MESSAGE}


def record_body(*fields: bytes) -> bytes:
    """A record: attributes, timestamp delta 0, offset delta 0, then `fields`,
    with a length prefix that matches."""
    body = kw.int8(0) + kw.varlong(0) + kw.varint(0) + b"".join(fields)
    return kw.varint(len(body)) + body


def good_records(n: int) -> bytes:
    return b"".join(kw.encode_record(kw.Record(f"k{i}".encode(), b"v"), i) for i in range(n))


# (name, records payload before compression, declared record count)
LIES = [
    ("key-length-past-record", record_body(kw.varint(1000), b"abc"), 1),
    ("declares-1-holds-5", good_records(5), 1),
    ("declares-3-holds-2", good_records(2), 3),
    ("negative-record-length", kw.varint(-5), 1),
    ("key-length-minus-2", record_body(kw.varint(-2)), 1),
    ("value-length-minus-7", record_body(kw.varint(-1), kw.varint(-7)), 1),
    ("negative-header-count", record_body(kw.varint(-1), kw.varint(-1), kw.varint(-1)), 1),
    ("header-count-lies", record_body(kw.varint(-1), kw.varint(-1), kw.varint(2), kw.varint(1), b"h", kw.varint(-1)), 1),
    ("varint-overflow", kw.int8(0) + b"\xff\xff\xff\xff\xff\x01", 1),
    ("offset-delta-past-last",
     kw.encode_record(kw.Record(b"k", b"v"), 0) + kw.encode_record(kw.Record(b"k", b"v"), 7), 2),
    ("trailing-bytes", good_records(2) + b"\x04\x00", 2),
]


def hostile_batches() -> list[tuple[str, bytes]]:
    out = []
    for codec in CODECS:
        for name, payload, count in LIES:
            out.append((f"{name}/{CODEC_NAMES[codec]}", kw.encode_raw_batch(kw.compress(codec, payload), count, codec)))
    for codec in CODECS[1:]:
        garbage = b"this payload was never compressed by anything " * 4
        out.append((f"garbage/{CODEC_NAMES[codec]}", kw.encode_raw_batch(garbage, 1, codec)))
        whole = kw.compress(codec, good_records(50))
        out.append((f"truncated/{CODEC_NAMES[codec]}", kw.encode_raw_batch(whole[: len(whole) * 2 // 3], 50, codec)))
    return out


def raw_produce(broker, topic: str, records: bytes) -> tuple[int, int]:
    with kw.Connection(broker.bootstrap) as conn:
        payload = conn.request(kw.produce_request_v3(77, topic, 0, records))
    _, [result] = kw.parse_produce_response_v3(payload)
    return result.error_code, result.base_offset


def test_lying_batches_are_refused_and_hide_no_acknowledged_record(broker):
    topic = unique_topic("hostile")
    create_topic(broker.bootstrap, topic, 1)
    honest = producer(broker.bootstrap, **{"linger.ms": 0})
    acked = []
    refused_with = {}
    for i, (name, batch) in enumerate(hostile_batches()):
        acked += produce_all(honest, topic, [{"key": f"honest-{i}", "value": f"before {name}"}])
        refused_with[name] = raw_produce(broker, topic, batch)
    acked += produce_all(honest, topic, [{"key": "honest-last", "value": "after all"}])

    wrong = {name: got for name, got in refused_with.items() if got[0] not in REFUSED}
    assert not wrong, f"accepted or answered with the wrong code (error, base offset): {wrong}"
    # Nothing of the lies was stored: the honest records are dense from 0.
    assert [d.offset for d in acked] == list(range(len(acked)))
    [read] = read_partitions(broker.bootstrap, topic, [0]).values()
    assert [(m.offset, m.key, m.value) for m in read] == [(d.offset, d.key, d.value) for d in acked]


@pytest.mark.parametrize("codec", CODECS[1:], ids=lambda c: CODEC_NAMES[c])
def test_a_zip_bomb_is_refused_as_too_large(broker, codec):
    # 200 MiB of one well-formed record (a huge value of zeros) compresses
    # to a few hundred KiB (snappy: about 10 MiB); the broker stops
    # decompressing at its 128 MiB bound and answers MESSAGE_TOO_LARGE.
    value = b"\0" * (200 * 1024 * 1024)
    body = kw.int8(0) + kw.varlong(0) + kw.varint(0) + kw.varint(-1) + kw.varint(len(value)) + value + kw.varint(0)
    payload = kw.varint(len(body)) + body
    bomb = kw.compress(codec, payload)
    del value, body, payload
    # The topic takes batches this large, so only decompressing can refuse it.
    max_message_bytes = 16 * 1024 * 1024
    assert len(bomb) < max_message_bytes, len(bomb)
    topic = unique_topic("bomb")
    create_topic(broker.bootstrap, topic, 1, {"max.message.bytes": str(max_message_bytes)})
    error, _ = raw_produce(broker, topic, kw.encode_raw_batch(bomb, 1, codec))
    assert error == kw.ERROR_MESSAGE_TOO_LARGE
    assert broker.running
