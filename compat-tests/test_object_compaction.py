"""Object compaction on a real broker with its objects in S3 (s3s-fs).

The broker rewrites small flush runs into per-partition objects every few
milliseconds here, while a producer writes many small flushes and a
consumer reads from the beginning at the same time: the consumer must see
every record once, in order, with the bytes produced, whether it read a
run before, during or after its rewrite. The rewrites are counted on
/metrics, and the consumer of a second pass reads everything back from the
rewritten objects.
"""

from __future__ import annotations

import threading
import time
import uuid

import pytest
from confluent_kafka import OFFSET_BEGINNING, TopicPartition

from test_admin import scrape, value, wait_until
from tools import torture
from tools.clients import CLIENT_TIMEOUT_S, consumer, create_topic, produce_all, producer, read_partitions, unique_topic

ROUNDS = 40
PER_ROUND = 25


def compacting_env(s3_server) -> dict[str, str]:
    return {
        **s3_server.broker_env(f"c{uuid.uuid4().hex[:12]}"),
        "LIGHTSTREAM_OBJECT_COMPACTION_INTERVAL_MS": "20",
        "LIGHTSTREAM_OBJECT_COMPACTION_MIN_AGE_MS": "0",
        # Several new entries per rewrite, so that reads cross entry edges.
        "LIGHTSTREAM_OBJECT_COMPACTION_MAX_ENTRY_BYTES": "4096",
    }


@pytest.fixture
def compacting_broker(broker_factory, s3_server):
    return broker_factory(env=compacting_env(s3_server))


def test_consumers_reading_during_rewrites_see_every_record_once(compacting_broker):
    broker = compacting_broker
    topic = unique_topic("ocomp")
    create_topic(broker.bootstrap, topic, partitions=2)
    sent = {0: [], 1: []}
    p = producer(broker.bootstrap, **{"linger.ms": 0})

    def produce() -> None:
        for r in range(ROUNDS):
            part = r % 2
            values = [f"r{r}-{i}".encode() for i in range(PER_ROUND)]
            produce_all(p, topic, [{"partition": part, "value": v} for v in values])
            sent[part].extend(values)

    producing = threading.Thread(target=produce)
    producing.start()
    seen = {0: [], 1: []}
    c = consumer(broker.bootstrap)
    try:
        c.assign([TopicPartition(topic, part, OFFSET_BEGINNING) for part in (0, 1)])
        deadline = time.monotonic() + 2 * CLIENT_TIMEOUT_S
        total = ROUNDS * PER_ROUND
        while sum(len(v) for v in seen.values()) < total and time.monotonic() < deadline:
            for m in c.consume(num_messages=500, timeout=0.2):
                assert m.error() is None, m.error()
                seen[m.partition()].append((m.offset(), m.value()))
    finally:
        c.close()
        producing.join(timeout=CLIENT_TIMEOUT_S)
    for part in (0, 1):
        offsets = [o for o, _ in seen[part]]
        assert offsets == list(range(len(sent[part]))), f"partition {part}: gap or duplicate"
        assert [v for _, v in seen[part]] == sent[part]

    # The rewrites happened (and keep happening until nothing is left).
    wait_until("object compaction to rewrite runs",
               lambda: value(scrape(broker), "lightstream_object_compaction_replaced_entries_total") >= 20)
    counters = scrape(broker)
    assert value(counters, "lightstream_object_compaction_failures_total") == 0
    # A second reader gets everything back, now largely from rewritten objects.
    again = read_partitions(broker.bootstrap, topic, [0, 1])
    for part in (0, 1):
        assert [r.value for r in again[part]] == sent[part]


def test_crashes_at_every_step_of_a_rewrite_lose_no_acknowledged_record(broker_factory, s3_server):
    """SIGKILLs, and aborts right after a rewrite's object is written
    (nothing references it yet) and right after its swap (the old objects
    are garbage), under idempotent producers: every acknowledged record is
    read back at its offset (tools/torture.py's check)."""
    broker = broker_factory(env={
        **compacting_env(s3_server),
        "LIGHTSTREAM_BROKER_SESSION_TIMEOUT_MS": "1500",
        "LIGHTSTREAM_BROKER_HEARTBEAT_INTERVAL_MS": "300",
    })
    # Up long enough after each restart (the lease, then a few passes) for
    # rewrites to run into the failpoints. The torture's 4 partitions are
    # rewritten together (object_compaction_max_partitions_at_once), each
    # rewrite passing both points: at 1 % each, some restarts abort in a
    # rewrite and some live to be SIGKILLed.
    cfg = torture.Config(kills=5, max_seconds=150, seed=23, rate_per_producer=800, min_up_s=2.0, max_up_s=5.0,
                         failpoints="compaction.after_write=0.01,compaction.after_swap=0.01")
    report = torture.run(broker, unique_topic("ocomp-torture"), cfg)
    assert not report.violations, "\n".join([report.summary(), *report.violations])
    assert report.kills == cfg.kills and report.acked > 1000, report.summary()
    assert report.self_aborts > 0, f"no compaction failpoint fired: {report.summary()}"
