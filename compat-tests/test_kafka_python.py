"""kafka-python (a pure-Python protocol implementation) against lightstream.

Covers: KafkaAdminClient creating a topic; KafkaProducer (acks=all) and
KafkaConsumer with `assign()` and no group round-tripping keys, values and
headers in every compression codec kafka-python writes (its snappy uses the
xerial framing Java clients use, unlike librdkafka's raw snappy); and
kafka-python reading batches that librdkafka wrote.

`api_version` is left unset on purpose: kafka-python then sends ApiVersions
and picks, per API, the highest version both sides support, which is what
its users get by default. No consumer group is used (not implemented yet).
"""

from __future__ import annotations

import time

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition

from tools.clients import create_topic, produce_all, producer, unique_topic

TIMEOUT_S = 60
MESSAGES = 600
PARTITIONS = 2


def kp_admin(bootstrap: str) -> KafkaAdminClient:
    return KafkaAdminClient(bootstrap_servers=bootstrap, client_id="compat-kafka-python", request_timeout_ms=30_000)


def kp_consumer(bootstrap: str) -> KafkaConsumer:
    # group_id=None: no coordinator, no commits; positions come from assign/seek.
    return KafkaConsumer(
        bootstrap_servers=bootstrap,
        client_id="compat-kafka-python",
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        request_timeout_ms=30_000,
    )


def read_all(consumer: KafkaConsumer, partitions: list[TopicPartition], expected: int) -> list:
    consumer.assign(partitions)
    consumer.seek_to_beginning(*partitions)
    records = []
    deadline = time.monotonic() + TIMEOUT_S
    while len(records) < expected and time.monotonic() < deadline:
        for batch in consumer.poll(timeout_ms=500).values():
            records.extend(batch)
    assert len(records) == expected, f"read {len(records)} of {expected} records within {TIMEOUT_S}s"
    return records


@pytest.mark.parametrize("compression", [None, "gzip", "snappy", "lz4", "zstd"])
def test_kafka_python_round_trips_keys_values_headers(broker, compression):
    topic = unique_topic(f"kp-{compression or 'none'}")
    admin = kp_admin(broker.bootstrap)
    try:
        admin.create_topics({topic: {"num_partitions": PARTITIONS, "replication_factor": 1}}, wait_for_metadata=True)
        assert topic in admin.list_topics()
    finally:
        admin.close()

    # enable_idempotence defaults to True in kafka-python 3; this test is
    # about the plain produce path, so it is off (no InitProducerId).
    producer_ = KafkaProducer(
        bootstrap_servers=broker.bootstrap,
        client_id="compat-kafka-python",
        acks="all",
        enable_idempotence=False,
        compression_type=compression,
        linger_ms=5,
        request_timeout_ms=30_000,
    )
    try:
        futures = []
        for i in range(MESSAGES):
            futures.append(
                producer_.send(
                    topic,
                    key=f"key-{i}".encode(),
                    value=(f"value-{i}-" * (1 + i % 13)).encode(),
                    headers=[("index", str(i).encode()), ("codec", (compression or "none").encode())],
                    partition=i % PARTITIONS,
                )
            )
        producer_.flush(timeout=TIMEOUT_S)
        metadata = [f.get(timeout=TIMEOUT_S) for f in futures]
    finally:
        producer_.close(timeout=10)

    for p in range(PARTITIONS):
        offsets = [m.offset for m in metadata if m.partition == p]
        assert offsets == list(range(MESSAGES // PARTITIONS)), f"partition {p}: offsets {offsets[:10]}..."

    consumer = kp_consumer(broker.bootstrap)
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        records = read_all(consumer, tps, MESSAGES)
        assert consumer.end_offsets(tps) == {tp: MESSAGES // PARTITIONS for tp in tps}
    finally:
        consumer.close()

    by_position = {(r.partition, r.offset): r for r in records}
    assert len(by_position) == MESSAGES, "duplicate records"
    for i, m in enumerate(metadata):
        r = by_position[(m.partition, m.offset)]
        assert r.key == f"key-{i}".encode()
        assert r.value == (f"value-{i}-" * (1 + i % 13)).encode()
        assert list(r.headers) == [("index", str(i).encode()), ("codec", (compression or "none").encode())]


@pytest.mark.parametrize("compression", ["none", "lz4", "zstd"])
def test_kafka_python_reads_batches_written_by_librdkafka(broker, compression):
    topic = unique_topic(f"kp-interop-{compression}")
    create_topic(broker.bootstrap, topic, partitions=1)
    sent = [dict(key=f"k{i}".encode(), value=f"v{i}".encode() * 20, partition=0) for i in range(300)]
    produce_all(producer(broker.bootstrap, **{"compression.type": compression}), topic, sent)

    consumer = kp_consumer(broker.bootstrap)
    try:
        records = read_all(consumer, [TopicPartition(topic, 0)], len(sent))
    finally:
        consumer.close()
    assert [r.offset for r in records] == list(range(len(sent)))
    assert [(r.key, r.value) for r in records] == [(m["key"], m["value"]) for m in sent]
