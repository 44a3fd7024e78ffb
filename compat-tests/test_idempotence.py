"""Idempotent producers against a real broker process.

- librdkafka (`enable.idempotence=true`, acks=all) through graceful restarts
  and through the durability torture: SIGKILLs at random moments plus crashes
  forced between the object write and the metadata commit, and between the
  commit and the answer (`LIGHTSTREAM_FAILPOINTS`). After all of it every
  acknowledged record is at its offset exactly once, nothing is duplicated,
  offsets are dense and each producer's order is kept (`tools/torture.py`).
- kafka-python 3 with its default `enable_idempotence=True`: InitProducerId
  and sequenced batches from a second client implementation.

The CI runs the torture's short version (10 kills); the issue notes report
long runs of `python3 compat-tests/tools/torture.py --kills 100`.
"""

from __future__ import annotations

import pytest

from kafka import KafkaProducer

from tools import torture
from tools.clients import read_partitions, unique_topic


def assert_clean(report: torture.Report, kills: int) -> None:
    assert not report.violations, "\n".join([report.summary(), *report.violations])
    assert report.kills == kills, report.summary()
    assert report.acked > 1000, report.summary()


@pytest.mark.also_s3
def test_idempotent_producers_through_graceful_restarts(broker):
    cfg = torture.Config(kills=3, stop_signal="term", max_seconds=60, seed=7)
    report = torture.run(broker, unique_topic("idem-graceful"), cfg)
    assert_clean(report, cfg.kills)
    assert report.failed_deliveries == 0, report.summary()


def test_torture_sigkill_and_crashes_inside_a_flush(broker_factory):
    # The failpoints abort the broker in about one flush in 300 at each of the
    # two points: under this load, a crash every second or so besides the kills.
    # Each restart after SIGKILL waits out the killed process's lease
    # (cluster mode): a short lease keeps ten kills within the bound, which
    # also leaves room for a loaded CI machine.
    broker = broker_factory(env={"LIGHTSTREAM_BROKER_SESSION_TIMEOUT_MS": "1500",
                                 "LIGHTSTREAM_BROKER_HEARTBEAT_INTERVAL_MS": "300"})
    cfg = torture.Config(kills=10, failpoint_probability=0.003, max_seconds=150, seed=11)
    report = torture.run(broker, unique_topic("idem-torture"), cfg)
    assert_clean(report, cfg.kills)
    assert report.self_aborts > 0, f"no failpoint fired: {report.summary()}"


def test_kafka_python_idempotent_producer(broker):
    topic = unique_topic("idem-kp")
    producer = KafkaProducer(
        bootstrap_servers=broker.bootstrap,
        client_id="compat-kafka-python-idempotent",
        enable_idempotence=True,
        acks="all",
        linger_ms=5,
        request_timeout_ms=30_000,
    )
    try:
        futures = [producer.send(topic, value=f"v-{i}".encode(), partition=0) for i in range(3000)]
        producer.flush(timeout=60)
        offsets = [f.get(timeout=60).offset for f in futures]
    finally:
        producer.close(timeout=10)
    assert offsets == list(range(3000))
    stored = read_partitions(broker.bootstrap, topic, [0])[0]
    assert [m.value for m in stored] == [f"v-{i}".encode() for i in range(3000)]
