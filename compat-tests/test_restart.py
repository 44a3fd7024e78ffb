"""Durability across broker restarts, graceful (SIGTERM) and crash (SIGKILL).

Covers: a broker stopped with SIGTERM exits 0 and, restarted on the same data
dir, serves every acknowledged record at the same offset with the same bytes
(key, value, headers, timestamp), keeps topics and their configs, and
appends after the old end. And the crash case: with a producer writing
(acks=all) in another process, SIGKILL the broker, restart it, let the
producer finish, then check that every (partition, offset) the producer was
told is durable holds exactly the acknowledged payload, in send order.

What is *not* checked: records the producer never got an acknowledgement
for may or may not be there, and may be duplicated after a retry; that is
what acks=all without idempotence promises.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest
from confluent_kafka.admin import ConfigResource, ResourceType

from tools.clients import (
    CLIENT_TIMEOUT_S,
    admin,
    create_topic,
    high_watermarks,
    produce_all,
    producer,
    read_partitions,
    unique_topic,
    wait_for_topic,
)

TOOLS = Path(__file__).parent / "tools"
PARTITIONS = 3


@pytest.mark.also_s3
def test_acked_messages_survive_graceful_restart(broker):
    topic = unique_topic("restart-graceful")
    create_topic(broker.bootstrap, topic, partitions=PARTITIONS)
    base_ms = int(time.time() * 1000) - 60_000
    messages = [
        dict(
            key=f"key-{i}".encode(),
            value=bytes((i + j) % 256 for j in range(i % 300)),  # binary, 0..299 bytes
            partition=i % PARTITIONS,
            headers=[("i", str(i).encode())],
            timestamp=base_ms + i,
        )
        for i in range(6000)
    ]
    reports = produce_all(producer(broker.bootstrap, **{"compression.type": "lz4"}), topic, messages)
    per_partition = {p: sum(1 for r in reports if r.partition == p) for p in range(PARTITIONS)}
    before = read_partitions(broker.bootstrap, topic, list(range(PARTITIONS)))

    broker.stop()  # SIGTERM; fails the test unless the exit code is 0
    broker.start()

    wait_for_topic(broker.bootstrap, topic, partitions=PARTITIONS)
    assert high_watermarks(broker.bootstrap, topic, list(range(PARTITIONS))) == {
        p: (0, n) for p, n in per_partition.items()
    }
    after = read_partitions(broker.bootstrap, topic, list(range(PARTITIONS)))
    for p in range(PARTITIONS):
        assert len(after[p]) == per_partition[p]
        for old, new in zip(before[p], after[p], strict=True):
            assert old == new, f"partition {p} offset {old.offset} changed across restart"

    # New writes continue at the old end of each partition.
    tail = [dict(value=b"after", partition=p) for p in range(PARTITIONS)]
    more = produce_all(producer(broker.bootstrap), topic, tail)
    assert [(r.partition, r.offset) for r in more] == [(p, per_partition[p]) for p in range(PARTITIONS)]


def test_topics_and_their_configs_survive_graceful_restart(broker):
    topic = unique_topic("restart-config")
    create_topic(broker.bootstrap, topic, partitions=2, config={"retention.ms": "3600000", "cleanup.policy": "delete"})

    broker.stop()
    broker.start()

    wait_for_topic(broker.bootstrap, topic, partitions=2)
    resource = ConfigResource(ResourceType.TOPIC, topic)
    client = admin(broker.bootstrap)
    future = client.describe_configs([resource], request_timeout=CLIENT_TIMEOUT_S)[resource]
    entries = future.result(timeout=CLIENT_TIMEOUT_S)
    assert entries["retention.ms"].value == "3600000"


def count_lines(path: Path) -> int:
    try:
        with open(path, "rb") as f:
            return f.read().count(b"\n")
    except FileNotFoundError:
        return 0


def wait_for_acks(path: Path, at_least: int, timeout_s: float, producer_proc: subprocess.Popen, log: Path) -> int:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        n = count_lines(path)
        if n >= at_least:
            return n
        assert producer_proc.poll() is None, f"producer exited early:\n{log.read_text()[-3000:]}"
        time.sleep(0.1)
    raise AssertionError(
        f"only {count_lines(path)} of {at_least} acknowledgements within {timeout_s}s\n"
        f"producer stderr:\n{log.read_text()[-3000:]}"
    )


@pytest.mark.also_s3
def test_acked_messages_survive_sigkill_mid_produce(broker, tmp_path):
    topic = unique_topic("restart-kill")
    create_topic(broker.bootstrap, topic, partitions=PARTITIONS)
    acks_path = tmp_path / "acked.txt"
    producer_log = tmp_path / "acked_producer.stderr"

    with open(producer_log, "wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                str(TOOLS / "acked_producer.py"),
                "--bootstrap", broker.bootstrap,
                "--topic", topic,
                "--partitions", str(PARTITIONS),
                "--out", str(acks_path),
                "--rate", "2000",
                "--max-seconds", "150",
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
        )
    try:
        wait_for_acks(acks_path, 3000, 60, proc, producer_log)
        broker.kill()  # SIGKILL while the producer has batches in flight
        time.sleep(1.0)  # the producer keeps queueing while the broker is down
        broker.start()
        acked_at_restart = count_lines(acks_path)
        wait_for_acks(acks_path, acked_at_restart + 2000, 90, proc, producer_log)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    assert proc.returncode == 0, f"producer exit code {proc.returncode}:\n{producer_log.read_text()[-3000:]}"

    acked: dict[int, dict[int, str]] = defaultdict(dict)
    for line in acks_path.read_text().splitlines():
        partition, offset, payload = line.split(" ")
        p, o = int(partition), int(offset)
        assert o not in acked[p], f"two acknowledgements for {p}/{o}"
        acked[p][o] = payload
    total = sum(len(v) for v in acked.values())
    assert total >= acked_at_restart + 2000

    consumed = read_partitions(broker.bootstrap, topic, list(range(PARTITIONS)))
    for p in range(PARTITIONS):
        stored = {m.offset: m.value.decode("ascii", errors="replace") for m in consumed[p]}
        missing = [o for o in acked[p] if o not in stored]
        assert not missing, f"partition {p}: {len(missing)} acknowledged offsets lost, first {sorted(missing)[:10]}"
        wrong = [(o, acked[p][o], stored[o]) for o in acked[p] if stored[o] != acked[p][o]]
        assert not wrong, f"partition {p}: {len(wrong)} acknowledged offsets hold other data, first {wrong[:5]}"
        seqs = [acked[p][o] for o in sorted(acked[p])]
        assert seqs == sorted(seqs), f"partition {p}: acknowledged payloads are not in offset order"
        assert len(set(seqs)) == len(seqs), f"partition {p}: one payload acknowledged at two offsets"
