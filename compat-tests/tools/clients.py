"""Small confluent-kafka helpers shared by the compatibility tests.

Owns the few client-side chores every test repeats: unique topic names,
creating a topic and waiting for it, producing with acks=all and collecting
delivery reports, and reading partitions back from the beginning with
`assign()` (consumer groups are not implemented by Lightstream yet, so no
helper here ever subscribes or commits). Every wait is bounded.

It deliberately holds no assertions about broker behaviour beyond "the call
succeeded": the tests state what they expect.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

# How long any single client operation may take before the test fails. Big
# enough for a loaded 2-core CI machine, small enough that a hung broker
# fails the test well inside pytest-timeout.
CLIENT_TIMEOUT_S = 60.0

# librdkafka's own log lines go through Python logging (pytest shows them
# with a failing test) instead of straight to stderr. A client left alive by
# a failing test (its traceback holds it) then queues its reconnect errors
# quietly instead of writing to the terminal for the rest of the run.
LIBRDKAFKA_LOG = logging.getLogger("librdkafka")


def unique_topic(prefix: str) -> str:
    """A topic name no other test (or earlier run on the same data dir) uses."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def admin(bootstrap: str) -> AdminClient:
    """An AdminClient. Keep it referenced until its futures resolve: when the
    handle is garbage-collected, pending calls fail with _DESTROY."""
    return AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 30000, "logger": LIBRDKAFKA_LOG})


def create_topic(bootstrap: str, topic: str, partitions: int = 1, config: dict[str, str] | None = None) -> None:
    """Create `topic` with CreateTopics and wait until Metadata shows all its partitions."""
    client = admin(bootstrap)  # must outlive the future: destroying it fails the call
    futures = client.create_topics(
        [NewTopic(topic, num_partitions=partitions, replication_factor=1, config=config or {})],
        request_timeout=CLIENT_TIMEOUT_S,
    )
    futures[topic].result(timeout=CLIENT_TIMEOUT_S)
    wait_for_topic(bootstrap, topic, partitions)


def wait_for_topic(bootstrap: str, topic: str, partitions: int, timeout_s: float = CLIENT_TIMEOUT_S) -> None:
    """Poll Metadata until `topic` exists with `partitions` partitions that each have a leader."""
    client = admin(bootstrap)
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        md = client.list_topics(topic=topic, timeout=10)
        t = md.topics.get(topic)
        last = t
        if t is not None and t.error is None and len(t.partitions) == partitions:
            if all(p.error is None and p.leader >= 0 for p in t.partitions.values()):
                return
        time.sleep(0.2)
    raise AssertionError(f"topic {topic!r} not ready with {partitions} partitions within {timeout_s}s: {last}")


@dataclass(frozen=True)
class Delivered:
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...]
    timestamp_ms: int | None


def producer(bootstrap: str, **extra) -> Producer:
    conf = {
        "bootstrap.servers": bootstrap,
        "acks": "all",
        "enable.idempotence": False,
        "linger.ms": 5,
        "message.timeout.ms": int(CLIENT_TIMEOUT_S * 1000),
        "logger": LIBRDKAFKA_LOG,
    }
    conf.update(extra)
    return Producer(conf)


def produce_all(p: Producer, topic: str, messages: list[dict], timeout_s: float = CLIENT_TIMEOUT_S) -> list[Delivered]:
    """Produce `messages` (kwargs for Producer.produce) and return one Delivered per message, in send order.

    Headers must be given as a list of (name, value) pairs. Delivery reports
    do not carry headers, so `Delivered.headers` is what was sent (str values
    encoded to bytes, as a consumer will see them). Fails the test if any
    delivery report carries an error or if not every report arrived within
    the bound.
    """
    reports: list[Delivered | None] = [None] * len(messages)
    errors: list[str] = []

    def on_delivery(index: int):
        def cb(err, msg):
            if err is not None:
                errors.append(f"message {index}: {err}")
                return
            sent_headers = messages[index].get("headers") or []
            headers = tuple((k, v.encode() if isinstance(v, str) else v) for k, v in sent_headers)
            _, ts = msg.timestamp()
            reports[index] = Delivered(msg.partition(), msg.offset(), msg.key(), msg.value(), headers, ts)

        return cb

    for i, m in enumerate(messages):
        while True:
            try:
                p.produce(topic, on_delivery=on_delivery(i), **m)
                break
            except BufferError:
                p.poll(0.1)
        p.poll(0)
    remaining = p.flush(timeout_s)
    assert not errors, f"{len(errors)} delivery errors, first: {errors[:5]}"
    assert remaining == 0, f"{remaining} messages still undelivered after {timeout_s}s"
    missing = [i for i, r in enumerate(reports) if r is None]
    assert not missing, f"{len(missing)} messages without a delivery report, first: {missing[:5]}"
    return reports  # type: ignore[return-value]


@dataclass(frozen=True)
class Consumed:
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...]
    timestamp_ms: int


def consumer(bootstrap: str, **extra) -> Consumer:
    """A consumer for `assign()` only.

    confluent-kafka refuses to build a Consumer without `group.id`, so one is
    set, but nothing here subscribes, commits or stores offsets.
    """
    conf = {
        "bootstrap.servers": bootstrap,
        "group.id": f"compat-unused-{uuid.uuid4().hex[:8]}",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "enable.partition.eof": False,
        "logger": LIBRDKAFKA_LOG,
    }
    conf.update(extra)
    return Consumer(conf)


# Errors a client sees while a partition has no leader for a moment (a
# broker just died, restarted or handed it over): retried, as clients do.
LEADERLESS = {
    KafkaError._UNKNOWN_PARTITION, KafkaError._TRANSPORT, KafkaError._TIMED_OUT,
    KafkaError._ALL_BROKERS_DOWN, KafkaError.LEADER_NOT_AVAILABLE,
    KafkaError.NOT_LEADER_FOR_PARTITION,
}


def high_watermarks(bootstrap: str, topic: str, partitions: list[int]) -> dict[int, tuple[int, int]]:
    """partition -> (log_start_offset, high_watermark) via ListOffsets.

    A partition between leaders answers "Local: Unknown partition" in
    librdkafka (its metadata lists it with LEADER_NOT_AVAILABLE): asked again
    until it has a leader, within CLIENT_TIMEOUT_S.
    """
    deadline = time.monotonic() + CLIENT_TIMEOUT_S
    out: dict[int, tuple[int, int]] = {}
    for p in partitions:
        while True:
            # A new client each time: librdkafka takes a cached leaderless
            # partition as final and does not refresh it, so one client kept
            # "Unknown partition" for 60 s while every partition had a
            # leader (docs/protocol-traps.md, "librdkafka").
            c = consumer(bootstrap)
            try:
                out[p] = c.get_watermark_offsets(
                    TopicPartition(topic, p), timeout=CLIENT_TIMEOUT_S, cached=False)
                break
            except KafkaException as e:
                if e.args[0].code() not in LEADERLESS or time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
            finally:
                c.close()
    return out


def read_partitions(
    bootstrap: str,
    topic: str,
    partitions: list[int],
    *,
    until: dict[int, int] | None = None,
    timeout_s: float = CLIENT_TIMEOUT_S,
) -> dict[int, list[Consumed]]:
    """Read each partition from its beginning until offset `until[p]` (exclusive).

    `until` defaults to each partition's high watermark at call time. Fails the
    test if the reads do not get there within `timeout_s`.
    """
    # A partition whose log start is already at `until` has nothing to read.
    watermarks = high_watermarks(bootstrap, topic, partitions)
    if until is None:
        until = {p: hw for p, (_, hw) in watermarks.items()}
    out: dict[int, list[Consumed]] = {p: [] for p in partitions}
    todo = {p for p in partitions if until[p] > watermarks[p][0]}
    if not todo:
        return out
    c = consumer(bootstrap)
    errors: list[str] = []
    try:
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in sorted(todo)])
        deadline = time.monotonic() + timeout_s
        while todo and time.monotonic() < deadline:
            for msg in c.consume(num_messages=1000, timeout=0.5):
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        continue
                    if err.fatal():
                        raise KafkaException(err)
                    errors.append(str(err))
                    continue
                p = msg.partition()
                if p not in todo:
                    continue
                _, ts = msg.timestamp()
                headers = tuple((k, v) for k, v in (msg.headers() or []))
                out[p].append(Consumed(p, msg.offset(), msg.key(), msg.value(), headers, ts))
                if msg.offset() + 1 >= until[p]:
                    todo.discard(p)
        counts = {p: len(v) for p, v in out.items()}
        assert not todo, (
            f"partitions {sorted(todo)} of {topic!r} not read up to {until} within {timeout_s}s; "
            f"messages read per partition: {counts}; client errors: {errors[:5]}"
        )
    finally:
        c.close()
    for p in partitions:
        out[p] = [m for m in out[p] if m.offset < until[p]]
    return out
