"""Retention by time and size against a real broker, seen through clients.

The broker cuts the partitions it leads every
`log_retention_check_interval_ms` (short here); records carry CreateTime
timestamps the producer chose, so "old" data is produced now with a
timestamp hours ago, as Kafka's retention judges a batch by its largest
timestamp. Each test waits on a condition (ListOffsets earliest, or the
`lightstream_retention_passes_total` counter), never on a fixed sleep.
The injected-clock cases (future timestamps, GC of the freed objects) are
storage/src/log/tests/retention.rs.
"""

from __future__ import annotations

import time

import pytest

from test_admin import scrape, value, wait_until
from tools.clients import create_topic, high_watermarks, produce_all, producer, read_partitions, unique_topic

pytestmark = pytest.mark.also_s3

HOUR_MS = 3_600_000
# Long enough for several passes on a loaded 2-core machine.
RETENTION_WAIT_S = 60.0


@pytest.fixture
def broker(request, broker_factory):
    """A broker that checks retention five times a second (local objects,
    then S3)."""
    env = {"LIGHTSTREAM_LOG_RETENTION_CHECK_INTERVAL_MS": "200"}
    if getattr(request, "param", "local") == "s3":
        import uuid

        s3 = request.getfixturevalue("s3_server")
        env.update(s3.broker_env(f"r{uuid.uuid4().hex[:12]}"))
    return broker_factory(env=env)


def produce_rounds(bootstrap: str, topic: str, rounds: int, per_round: int, timestamp_ms: int,
                   value_bytes: int = 100) -> None:
    """`rounds` acknowledged rounds of `per_round` records stamped `timestamp_ms`."""
    p = producer(bootstrap, **{"linger.ms": 0})
    for r in range(rounds):
        produce_all(p, topic, [{"value": bytes([r % 256]) * value_bytes, "timestamp": timestamp_ms}
                               for _ in range(per_round)])


def log_start(bootstrap: str, topic: str) -> int:
    return high_watermarks(bootstrap, topic, [0])[0][0]


def passes(broker) -> float:
    return value(scrape(broker), "lightstream_retention_passes_total")


def test_records_older_than_retention_ms_go_and_readers_start_after_them(broker):
    topic = unique_topic("ret-time")
    create_topic(broker.bootstrap, topic, config={"retention.ms": str(HOUR_MS)})
    now = int(time.time() * 1000)
    produce_rounds(broker.bootstrap, topic, rounds=3, per_round=10, timestamp_ms=now - 2 * HOUR_MS)
    produce_rounds(broker.bootstrap, topic, rounds=2, per_round=10, timestamp_ms=now)

    wait_until("retention to drop the records stamped two hours ago",
               lambda: log_start(broker.bootstrap, topic) == 30, timeout_s=RETENTION_WAIT_S)
    assert high_watermarks(broker.bootstrap, topic, [0]) == {0: (30, 50)}
    read = read_partitions(broker.bootstrap, topic, [0])[0]
    assert [r.offset for r in read] == list(range(30, 50))
    assert {r.timestamp_ms for r in read} == {now}
    counters = scrape(broker)
    assert value(counters, "lightstream_retention_log_start_moves_total") >= 1
    assert value(counters, "lightstream_retention_removed_offsets_total") == 30


def test_a_record_in_the_future_keeps_everything_after_it(broker):
    """Kafka stops at the first segment it must keep: old records behind a
    future-stamped one stay until that one expires too."""
    topic = unique_topic("ret-future")
    create_topic(broker.bootstrap, topic, config={"retention.ms": str(HOUR_MS)})
    now = int(time.time() * 1000)
    produce_rounds(broker.bootstrap, topic, rounds=1, per_round=10, timestamp_ms=now - 2 * HOUR_MS)
    # Half an hour ahead: Kafka 4 refuses CreateTime more than an hour ahead
    # (message.timestamp.after.max.ms).
    produce_rounds(broker.bootstrap, topic, rounds=1, per_round=10, timestamp_ms=now + HOUR_MS // 2)
    produce_rounds(broker.bootstrap, topic, rounds=1, per_round=10, timestamp_ms=now - 2 * HOUR_MS)

    wait_until("retention to drop the first round", lambda: log_start(broker.bootstrap, topic) == 10,
               timeout_s=RETENTION_WAIT_S)
    seen = passes(broker)
    wait_until("two more retention passes", lambda: passes(broker) >= seen + 2, timeout_s=RETENTION_WAIT_S)
    assert high_watermarks(broker.bootstrap, topic, [0]) == {0: (10, 30)}


def test_retention_bytes_keeps_at_least_that_many_bytes(broker):
    """Kafka deletes the oldest segments while the log would still hold
    `retention.bytes` without them; our unit is the index entry."""
    topic = unique_topic("ret-size")
    # Ten rounds of ten 1,000-byte records: about 10.2 kB per round.
    create_topic(broker.bootstrap, topic, config={"retention.bytes": "35000"})
    produce_rounds(broker.bootstrap, topic, rounds=10, per_round=10, timestamp_ms=int(time.time() * 1000),
                   value_bytes=1000)

    # From offset 60 on the log holds about 40.8 kB, at least 35,000 bytes;
    # from 70 on, about 30.6 kB: the cut falls in [60, 70).
    wait_until("retention to cut by size", lambda: log_start(broker.bootstrap, topic) >= 60,
               timeout_s=RETENTION_WAIT_S)
    seen = passes(broker)
    wait_until("two more retention passes", lambda: passes(broker) >= seen + 2, timeout_s=RETENTION_WAIT_S)
    start = log_start(broker.bootstrap, topic)
    assert 60 <= start < 70, start
    read = read_partitions(broker.bootstrap, topic, [0])[0]
    assert [r.offset for r in read] == list(range(start, 100))


def test_minus_one_and_the_broker_default_keep_everything(broker):
    """`retention.ms=-1` keeps records of any age; a topic without an
    override takes `log.retention.hours` (168), which two-hour-old records
    are within."""
    infinite, default = unique_topic("ret-inf"), unique_topic("ret-default")
    create_topic(broker.bootstrap, infinite, config={"retention.ms": "-1", "retention.bytes": "-1"})
    create_topic(broker.bootstrap, default)
    ancient = int(time.time() * 1000) - 365 * 24 * HOUR_MS
    produce_rounds(broker.bootstrap, infinite, rounds=2, per_round=5, timestamp_ms=ancient)
    produce_rounds(broker.bootstrap, default, rounds=2, per_round=5, timestamp_ms=int(time.time() * 1000) - 2 * HOUR_MS)
    seen = passes(broker)
    wait_until("two more retention passes", lambda: passes(broker) >= seen + 2, timeout_s=RETENTION_WAIT_S)
    assert high_watermarks(broker.bootstrap, infinite, [0]) == {0: (0, 10)}
    assert high_watermarks(broker.bootstrap, default, [0]) == {0: (0, 10)}
