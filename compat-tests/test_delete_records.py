"""DeleteRecords and DescribeLogDirs through the admin clients, and the
consumers that follow a log start offset that moved.

confluent-kafka's `AdminClient.delete_records`, kafka-python's
`KafkaAdminClient.delete_records` and KafkaJS's `deleteTopicRecords` each
move a partition's log start; ListOffsets earliest, Fetch and a consumer's
`auto.offset.reset` then follow it, as they do against Kafka
(`Partition.deleteRecordsOnLeader`, KIP-107).
"""

from __future__ import annotations

import json
import subprocess

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from tools.clients import (
    CLIENT_TIMEOUT_S,
    admin,
    consumer,
    create_topic,
    high_watermarks,
    produce_all,
    producer,
    read_partitions,
    unique_topic,
)
from tools.needs import JS, node_with_kafkajs

pytestmark = pytest.mark.also_s3


def produce_in_flushes(bootstrap: str, topic: str, partition: int, flushes: int, per_flush: int) -> None:
    """`flushes * per_flush` records, flushed `flushes` times, so that the
    partition's index has many entries and a cut can fall between them."""
    p = producer(bootstrap, **{"linger.ms": 0})
    for f in range(flushes):
        produce_all(p, topic, [{"partition": partition, "value": f"r{f}-{i}".encode()} for i in range(per_flush)])


def delete_records(bootstrap: str, offsets: list[TopicPartition]) -> dict[tuple[str, int], int | KafkaError]:
    """(topic, partition) -> the low watermark answered, or the KafkaError."""
    client = admin(bootstrap)
    futures = client.delete_records(offsets, request_timeout=CLIENT_TIMEOUT_S)
    out: dict[tuple[str, int], int | KafkaError] = {}
    for tp, fut in futures.items():
        try:
            out[(tp.topic, tp.partition)] = fut.result(timeout=CLIENT_TIMEOUT_S).low_watermark
        except KafkaException as e:
            out[(tp.topic, tp.partition)] = e.args[0]
    return out


def test_confluent_delete_records_moves_the_log_start_and_consumers_follow(broker):
    topic = unique_topic("delrec")
    create_topic(broker.bootstrap, topic, partitions=2)
    produce_in_flushes(broker.bootstrap, topic, 0, flushes=10, per_flush=10)
    produce_in_flushes(broker.bootstrap, topic, 1, flushes=5, per_flush=10)

    answers = delete_records(broker.bootstrap, [TopicPartition(topic, 0, 35), TopicPartition(topic, 1, -1)])
    # Kafka answers the new log start: the offset asked for, and -1 is the
    # high watermark.
    assert answers == {(topic, 0): 35, (topic, 1): 50}
    assert high_watermarks(broker.bootstrap, topic, [0, 1]) == {0: (35, 100), 1: (50, 50)}

    # A reader from the beginning starts at the log start, inside what
    # was a batch, and sees every record from there on once.
    read = read_partitions(broker.bootstrap, topic, [0, 1])
    assert [r.offset for r in read[0]] == list(range(35, 100))
    assert read[0][0].value == b"r3-5"
    assert read[1] == []

    # An offset at or below the log start moves nothing; one beyond the
    # high watermark is OFFSET_OUT_OF_RANGE.
    answers = delete_records(broker.bootstrap, [TopicPartition(topic, 0, 10), TopicPartition(topic, 1, 51)])
    assert answers[(topic, 0)] == 35
    assert isinstance(answers[(topic, 1)], KafkaError)
    assert answers[(topic, 1)].code() == KafkaError.OFFSET_OUT_OF_RANGE
    assert high_watermarks(broker.bootstrap, topic, [0, 1]) == {0: (35, 100), 1: (50, 50)}


def test_a_consumer_below_the_log_start_resets_as_auto_offset_reset_says(broker):
    topic = unique_topic("delrec-reset")
    create_topic(broker.bootstrap, topic)
    produce_in_flushes(broker.bootstrap, topic, 0, flushes=4, per_flush=10)
    assert delete_records(broker.bootstrap, [TopicPartition(topic, 0, 20)]) == {(topic, 0): 20}

    # Fetch at 5 is OFFSET_OUT_OF_RANGE; `earliest` resets to the log start.
    c = consumer(broker.bootstrap, **{"auto.offset.reset": "earliest"})
    try:
        c.assign([TopicPartition(topic, 0, 5)])
        first = None
        for _ in range(int(CLIENT_TIMEOUT_S * 10)):
            m = c.poll(0.1)
            if m is not None and m.error() is None:
                first = m
                break
        assert first is not None, "no record within the client timeout"
        assert first.offset() == 20
    finally:
        c.close()

    # `error` (librdkafka's "none") reports the out-of-range offset instead.
    c = consumer(broker.bootstrap, **{"auto.offset.reset": "error"})
    try:
        c.assign([TopicPartition(topic, 0, 5)])
        seen = None
        for _ in range(int(CLIENT_TIMEOUT_S * 10)):
            m = c.poll(0.1)
            if m is not None:
                seen = m
                break
        assert seen is not None and seen.error() is not None, seen
        assert seen.error().code() == KafkaError._AUTO_OFFSET_RESET, seen.error()
    finally:
        c.close()


def test_delete_records_on_a_compacted_topic_is_a_policy_violation(broker):
    topic = unique_topic("delrec-compact")
    create_topic(broker.bootstrap, topic, config={"cleanup.policy": "compact"})
    p = producer(broker.bootstrap)
    produce_all(p, topic, [{"key": b"k", "value": b"v"} for _ in range(3)])
    answers = delete_records(broker.bootstrap, [TopicPartition(topic, 0, 1)])
    assert isinstance(answers[(topic, 0)], KafkaError)
    assert answers[(topic, 0)].code() == KafkaError.POLICY_VIOLATION
    assert high_watermarks(broker.bootstrap, topic, [0]) == {0: (0, 3)}


def test_kafka_python_delete_records_and_describe_log_dirs(broker):
    from kafka import KafkaAdminClient
    from kafka import errors as kafka_errors
    from kafka.structs import TopicPartition as KpTopicPartition

    topic = unique_topic("delrec-kp")
    create_topic(broker.bootstrap, topic, partitions=2)
    produce_in_flushes(broker.bootstrap, topic, 0, flushes=3, per_flush=10)
    produce_in_flushes(broker.bootstrap, topic, 1, flushes=1, per_flush=7)

    client = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=int(CLIENT_TIMEOUT_S * 1000))
    try:
        answers = client.delete_records({KpTopicPartition(topic, 0): 12, KpTopicPartition(topic, 1): -1})
        assert {tp.partition: (a["error_code"], a["low_watermark"]) for tp, a in answers.items()} == {
            0: (0, 12), 1: (0, 7)}
        assert high_watermarks(broker.bootstrap, topic, [0, 1]) == {0: (12, 30), 1: (7, 7)}

        # Beyond the high watermark: Kafka's OFFSET_OUT_OF_RANGE, raised.
        with pytest.raises(kafka_errors.OffsetOutOfRangeError):
            client.delete_records({KpTopicPartition(topic, 0): 31})

        # DescribeLogDirs: one log dir, naming where the objects live, with
        # each partition's size the bytes its index still references.
        (answer,) = client.describe_log_dirs()
        (log_dir,) = answer["log_dirs"]
        assert log_dir["error_code"] == 0, log_dir
        assert log_dir["log_dir"], log_dir
        sizes = {p["partition_index"]: p["partition_size"]
                 for t in log_dir["topics"] if t["name"] == topic for p in t["partitions"]}
        # Partition 0 still holds the batches with offsets 12 and up (two
        # flushes of ten, at least); partition 1 holds nothing.
        assert set(sizes) == {0, 1}, log_dir
        assert sizes[0] > 0 and sizes[1] == 0, sizes
    finally:
        client.close()


def test_kafkajs_delete_topic_records(broker):
    node = node_with_kafkajs()
    topic = unique_topic("delrec-kjs")
    create_topic(broker.bootstrap, topic, partitions=2)
    produce_in_flushes(broker.bootstrap, topic, 0, flushes=4, per_flush=5)
    produce_in_flushes(broker.bootstrap, topic, 1, flushes=2, per_flush=5)
    run = subprocess.run(
        [node, str(JS / "delete_records.js"), broker.bootstrap, topic],
        capture_output=True, timeout=120,
    )
    assert run.returncode == 0, run.stderr.decode()[-4000:]
    seen = json.loads(run.stdout)
    # KafkaJS deletes up to 7 on partition 0 and everything on partition 1
    # ("-1"), then reads the offsets back.
    assert seen["offsets"] == [
        {"partition": 0, "low": "7", "high": "20"},
        {"partition": 1, "low": "10", "high": "10"},
    ], seen
    # Beyond the high watermark: KafkaJS reports Kafka's error.
    assert seen["beyond"] == "OFFSET_OUT_OF_RANGE", seen
