"""confluent-kafka (a recent librdkafka) against lightstream.

Covers the client most users run: a producer with acks=all and delivery
reports; a consumer driven by `assign()` and `seek()` (consumer groups are not
implemented yet, so nothing subscribes or commits); ListOffsets through
`offsets_for_times` and watermarks; Metadata through `list_topics`; and the
AdminClient calls CreateTopics (and its errors), DeleteTopics,
DescribeConfigs, IncrementalAlterConfigs and CreatePartitions.

Each test makes its own topics with unique names, so tests share nothing.
Expected error codes are the ones Apache Kafka 4 returns.
"""

from __future__ import annotations

import time

import pytest
from confluent_kafka import OFFSET_END, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import (
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ConfigSource,
    NewPartitions,
    NewTopic,
    ResourceType,
)

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
    wait_for_topic,
)

# Apache Kafka's defaults for a topic with no overrides.
KAFKA_DEFAULT_RETENTION_MS = "604800000"  # 7 days
KAFKA_DEFAULT_CLEANUP_POLICY = "delete"


def error_code_of(future) -> int:
    """Wait for an admin future that must fail and return its Kafka error code."""
    with pytest.raises(KafkaException) as exc:
        future.result(timeout=CLIENT_TIMEOUT_S)
    err = exc.value.args[0]
    assert isinstance(err, KafkaError), exc.value
    return err.code()


def consume_n(c, n: int, timeout_s: float = CLIENT_TIMEOUT_S) -> list:
    """Up to `n` messages from an assigned consumer; fails on a fatal error or timeout."""
    got = []
    deadline = time.monotonic() + timeout_s
    while len(got) < n and time.monotonic() < deadline:
        for msg in c.consume(num_messages=n - len(got), timeout=0.5):
            err = msg.error()
            if err is None:
                got.append(msg)
            elif err.fatal():
                raise KafkaException(err)
    assert len(got) == n, f"consumed {len(got)} of {n} messages within {timeout_s}s"
    return got


def topic_config(bootstrap: str, topic: str) -> dict[str, ConfigEntry]:
    resource = ConfigResource(ResourceType.TOPIC, topic)
    client = admin(bootstrap)
    futures = client.describe_configs([resource], request_timeout=CLIENT_TIMEOUT_S)
    return futures[resource].result(timeout=CLIENT_TIMEOUT_S)


def source_of(entry: ConfigEntry) -> ConfigSource:
    return ConfigSource(entry.source)


# --- produce / consume ----------------------------------------------------------------------------


@pytest.mark.also_s3
def test_acks_all_delivery_reports_give_every_message_a_dense_offset(broker):
    topic = unique_topic("cf-produce")
    create_topic(broker.bootstrap, topic, partitions=3)
    messages = [
        dict(
            key=f"k{i}".encode(),
            value=f"value-{i}".encode() * (1 + i % 7),
            partition=i % 3,
            headers=[("index", str(i).encode()), ("nullable", None)],
        )
        for i in range(3000)
    ]
    reports = produce_all(producer(broker.bootstrap), topic, messages)

    for partition in range(3):
        sent_here = [r for r in reports if r.partition == partition]
        offsets = [r.offset for r in sent_here]
        assert offsets == list(range(1000)), f"partition {partition}: offsets in send order are {offsets[:10]}..."

    # Everything acknowledged reads back unchanged: key, value, headers, timestamp.
    read = read_partitions(broker.bootstrap, topic, [0, 1, 2])
    for partition in range(3):
        got = {m.offset: m for m in read[partition]}
        assert len(got) == 1000
        for r in (r for r in reports if r.partition == partition):
            m = got[r.offset]
            assert (m.key, m.value, m.headers) == (r.key, r.value, r.headers), f"{partition}/{r.offset}"
            assert m.timestamp_ms == r.timestamp_ms, f"{partition}/{r.offset}: CreateTime not preserved"


@pytest.mark.also_s3
def test_consumer_assign_at_offset_and_seek_read_from_the_requested_offset(broker):
    topic = unique_topic("cf-seek")
    create_topic(broker.bootstrap, topic, partitions=1)
    produce_all(producer(broker.bootstrap), topic, [dict(value=f"m-{i:03d}".encode(), partition=0) for i in range(100)])

    c = consumer(broker.bootstrap)
    try:
        c.assign([TopicPartition(topic, 0, 90)])
        tail = consume_n(c, 10)
        assert [m.offset() for m in tail] == list(range(90, 100))
        assert [m.value() for m in tail] == [f"m-{i:03d}".encode() for i in range(90, 100)]

        c.seek(TopicPartition(topic, 0, 25))
        after_seek = consume_n(c, 5)
        assert [m.offset() for m in after_seek] == list(range(25, 30))
        assert [m.value() for m in after_seek] == [f"m-{i:03d}".encode() for i in range(25, 30)]
        assert c.position([TopicPartition(topic, 0)])[0].offset == 30
    finally:
        c.close()


@pytest.mark.also_s3
def test_offsets_for_times_finds_first_offset_at_or_after_timestamp(broker):
    topic = unique_topic("cf-times")
    create_topic(broker.bootstrap, topic, partitions=1)
    base_ms = int(time.time() * 1000) - 120_000
    produce_all(
        producer(broker.bootstrap),
        topic,
        [dict(value=f"t{i}".encode(), partition=0, timestamp=base_ms + i * 1000) for i in range(20)],
    )

    c = consumer(broker.bootstrap)
    try:
        def offset_for(ts: int) -> int:
            [tp] = c.offsets_for_times([TopicPartition(topic, 0, ts)], timeout=CLIENT_TIMEOUT_S)
            assert tp.error is None, tp.error
            return tp.offset

        assert offset_for(base_ms - 1_000_000) == 0
        assert offset_for(base_ms) == 0
        assert offset_for(base_ms + 5_000) == 5
        assert offset_for(base_ms + 5_500) == 6
        assert offset_for(base_ms + 19_000) == 19
        # No message at or after the timestamp: Kafka answers offset -1.
        assert offset_for(base_ms + 10_000_000) == OFFSET_END
    finally:
        c.close()
    assert high_watermarks(broker.bootstrap, topic, [0]) == {0: (0, 20)}


def test_list_topics_reports_this_broker_as_leader_of_every_partition(broker):
    topic = unique_topic("cf-metadata")
    create_topic(broker.bootstrap, topic, partitions=4)

    md = admin(broker.bootstrap).list_topics(timeout=CLIENT_TIMEOUT_S)
    assert len(md.brokers) == 1, md.brokers
    [(broker_id, b)] = md.brokers.items()
    assert (b.host, b.port) == ("127.0.0.1", broker.port), "broker must advertise its --listen address"
    assert md.controller_id == broker_id
    t = md.topics[topic]
    assert t.error is None
    assert sorted(t.partitions) == [0, 1, 2, 3]
    for p in t.partitions.values():
        assert p.error is None
        assert p.leader == broker_id
        assert list(p.replicas) == [broker_id]
        assert list(p.isrs) == [broker_id]

    # A metadata request for one topic returns just that topic.
    only = admin(broker.bootstrap).list_topics(topic=topic, timeout=CLIENT_TIMEOUT_S)
    assert list(only.topics) == [topic]


# --- admin: CreateTopics / DeleteTopics -----------------------------------------------------------


def test_create_topics_rejects_an_existing_name_with_topic_already_exists(broker):
    topic = unique_topic("cf-dup")
    create_topic(broker.bootstrap, topic, partitions=2)
    client = admin(broker.bootstrap)
    futures = client.create_topics(
        [NewTopic(topic, num_partitions=5, replication_factor=1)], request_timeout=CLIENT_TIMEOUT_S
    )
    assert error_code_of(futures[topic]) == KafkaError.TOPIC_ALREADY_EXISTS
    # The failed create changed nothing.
    wait_for_topic(broker.bootstrap, topic, partitions=2)


def test_create_topics_rejects_zero_partitions_with_invalid_partitions(broker):
    topic = unique_topic("cf-zero")
    client = admin(broker.bootstrap)
    futures = client.create_topics(
        [NewTopic(topic, num_partitions=0, replication_factor=1)], request_timeout=CLIENT_TIMEOUT_S
    )
    assert error_code_of(futures[topic]) == KafkaError.INVALID_PARTITIONS
    md = admin(broker.bootstrap).list_topics(timeout=CLIENT_TIMEOUT_S)
    assert topic not in md.topics


def test_create_topics_validate_only_creates_nothing(broker):
    topic = unique_topic("cf-validate")
    client = admin(broker.bootstrap)
    futures = client.create_topics(
        [NewTopic(topic, num_partitions=3, replication_factor=1)],
        validate_only=True,
        request_timeout=CLIENT_TIMEOUT_S,
    )
    futures[topic].result(timeout=CLIENT_TIMEOUT_S)
    md = admin(broker.bootstrap).list_topics(timeout=CLIENT_TIMEOUT_S)
    assert topic not in md.topics


@pytest.mark.also_s3
def test_delete_topics_removes_topic_and_its_data(broker):
    topic = unique_topic("cf-delete")
    create_topic(broker.bootstrap, topic, partitions=2)
    produce_all(producer(broker.bootstrap), topic, [dict(value=b"old", partition=i % 2) for i in range(10)])

    client = admin(broker.bootstrap)
    client.delete_topics([topic], request_timeout=CLIENT_TIMEOUT_S)[topic].result(timeout=CLIENT_TIMEOUT_S)
    deadline = time.monotonic() + CLIENT_TIMEOUT_S
    while topic in client.list_topics(timeout=CLIENT_TIMEOUT_S).topics:
        assert time.monotonic() < deadline, "deleted topic still listed"
        time.sleep(0.2)

    # Deleting it again: the topic is unknown.
    assert error_code_of(client.delete_topics([topic], request_timeout=CLIENT_TIMEOUT_S)[topic]) == (
        KafkaError.UNKNOWN_TOPIC_OR_PART
    )

    # The same name can be created again and starts empty. Kafka deletes
    # asynchronously, so a create may briefly see TOPIC_ALREADY_EXISTS.
    deadline = time.monotonic() + CLIENT_TIMEOUT_S
    while True:
        future = client.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])[topic]
        try:
            future.result(timeout=CLIENT_TIMEOUT_S)
            break
        except KafkaException as e:
            assert e.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS and time.monotonic() < deadline, e
            time.sleep(0.5)
    wait_for_topic(broker.bootstrap, topic, partitions=1)
    assert high_watermarks(broker.bootstrap, topic, [0]) == {0: (0, 0)}


# --- admin: configs -------------------------------------------------------------------------------


def test_describe_configs_reports_kafka_defaults_and_topic_overrides(broker):
    plain = unique_topic("cf-config-plain")
    create_topic(broker.bootstrap, plain, partitions=1)
    entries = topic_config(broker.bootstrap, plain)
    assert entries["retention.ms"].value == KAFKA_DEFAULT_RETENTION_MS
    assert entries["cleanup.policy"].value == KAFKA_DEFAULT_CLEANUP_POLICY
    assert source_of(entries["retention.ms"]) != ConfigSource.DYNAMIC_TOPIC_CONFIG

    overridden = unique_topic("cf-config-set")
    create_topic(broker.bootstrap, overridden, partitions=1, config={"retention.ms": "3600000"})
    entries = topic_config(broker.bootstrap, overridden)
    assert entries["retention.ms"].value == "3600000"
    assert source_of(entries["retention.ms"]) == ConfigSource.DYNAMIC_TOPIC_CONFIG
    assert entries["cleanup.policy"].value == KAFKA_DEFAULT_CLEANUP_POLICY


def test_describe_configs_of_unknown_topic_fails_with_unknown_topic_or_partition(broker):
    resource = ConfigResource(ResourceType.TOPIC, unique_topic("cf-config-missing"))
    client = admin(broker.bootstrap)
    futures = client.describe_configs([resource], request_timeout=CLIENT_TIMEOUT_S)
    assert error_code_of(futures[resource]) == KafkaError.UNKNOWN_TOPIC_OR_PART


def test_incremental_alter_configs_set_then_delete_is_visible_in_describe(broker):
    topic = unique_topic("cf-alter")
    create_topic(broker.bootstrap, topic, partitions=1)
    client = admin(broker.bootstrap)

    def alter(op: AlterConfigOpType, value: str | None):
        resource = ConfigResource(
            ResourceType.TOPIC,
            topic,
            incremental_configs=[ConfigEntry("retention.ms", value, incremental_operation=op)],
        )
        return client.incremental_alter_configs([resource], request_timeout=CLIENT_TIMEOUT_S)[resource]

    alter(AlterConfigOpType.SET, "86400000").result(timeout=CLIENT_TIMEOUT_S)
    entry = topic_config(broker.bootstrap, topic)["retention.ms"]
    assert entry.value == "86400000"
    assert source_of(entry) == ConfigSource.DYNAMIC_TOPIC_CONFIG

    alter(AlterConfigOpType.DELETE, None).result(timeout=CLIENT_TIMEOUT_S)
    entry = topic_config(broker.bootstrap, topic)["retention.ms"]
    assert entry.value == KAFKA_DEFAULT_RETENTION_MS
    assert source_of(entry) != ConfigSource.DYNAMIC_TOPIC_CONFIG


def test_incremental_alter_configs_rejects_a_non_numeric_retention_with_invalid_config(broker):
    topic = unique_topic("cf-alter-bad")
    create_topic(broker.bootstrap, topic, partitions=1)
    resource = ConfigResource(
        ResourceType.TOPIC,
        topic,
        incremental_configs=[
            ConfigEntry("retention.ms", "not-a-number", incremental_operation=AlterConfigOpType.SET)
        ],
    )
    client = admin(broker.bootstrap)
    future = client.incremental_alter_configs([resource], request_timeout=CLIENT_TIMEOUT_S)[resource]
    assert error_code_of(future) == KafkaError.INVALID_CONFIG
    assert topic_config(broker.bootstrap, topic)["retention.ms"].value == KAFKA_DEFAULT_RETENTION_MS


# --- admin: CreatePartitions ----------------------------------------------------------------------


def test_create_partitions_grows_topic_and_refuses_to_shrink(broker):
    topic = unique_topic("cf-grow")
    create_topic(broker.bootstrap, topic, partitions=1)
    client = admin(broker.bootstrap)

    client.create_partitions([NewPartitions(topic, 3)], request_timeout=CLIENT_TIMEOUT_S)[topic].result(
        timeout=CLIENT_TIMEOUT_S
    )
    wait_for_topic(broker.bootstrap, topic, partitions=3)
    reports = produce_all(producer(broker.bootstrap), topic, [dict(value=b"new", partition=2)])
    assert (reports[0].partition, reports[0].offset) == (2, 0)

    for count in (2, 3):
        future = client.create_partitions([NewPartitions(topic, count)], request_timeout=CLIENT_TIMEOUT_S)[topic]
        assert error_code_of(future) == KafkaError.INVALID_PARTITIONS, f"create_partitions to {count}"
    wait_for_topic(broker.bootstrap, topic, partitions=3)
