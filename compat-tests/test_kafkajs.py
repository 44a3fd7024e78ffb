"""KafkaJS 2.2.4 (Node) against a real broker process.

`js/group_round_trip.js` runs the client and prints what it saw: an
idempotent producer's acknowledgements, two group members' records and
assignments, the committed offsets, DescribeGroups, ListGroups and
DeleteGroups. This file checks all of it. `.ci/test-all.sh` installs Node
and `npm ci`s `js/` (see docs/protocol-traps.md for KafkaJS's quirks).
"""

from __future__ import annotations

import json
import subprocess

from tools.clients import unique_topic
from tools.needs import JS, node_with_kafkajs

RECORDS = 600
PARTITIONS = 3


def test_kafkajs_idempotent_producer_group_and_group_admin(broker):
    check_round_trip(broker.bootstrap)


def check_round_trip(bootstrap: str) -> None:
    """Runs `js/group_round_trip.js` against `bootstrap` and checks all it saw."""
    node = node_with_kafkajs()
    topic, group = unique_topic("kjs"), unique_topic("kjs-g")
    run = subprocess.run(
        [node, str(JS / "group_round_trip.js"), bootstrap, topic, group, str(RECORDS)],
        capture_output=True, timeout=120,
    )
    assert run.returncode == 0, run.stderr.decode()[-4000:]
    seen = json.loads(run.stdout)

    # Idempotent produce: every send acknowledged, offsets dense per partition.
    assert all(code == 0 for _, _, code in seen["produced"]), seen["produced"]
    per_partition = RECORDS // PARTITIONS
    for p in range(PARTITIONS):
        bases = sorted(base for q, base, _ in seen["produced"] if q == p)
        assert bases[0] == 0 and bases == sorted(set(bases)) and bases[-1] < per_partition, bases

    # Both members were assigned before anything was produced: the
    # partitions are split between them, and each read only its own, in
    # offset order, every record once.
    assignments = [set(a) for a in seen["assignments"]]
    assert all(assignments) and not (assignments[0] & assignments[1]), assignments
    assert assignments[0] | assignments[1] == set(range(PARTITIONS))
    everything = []
    for member, records in zip(assignments, seen["consumed"]):
        assert {p for p, _, _ in records} <= member
        for p in member:
            offsets = [o for q, o, _ in records if q == p]
            assert offsets == list(range(per_partition)), f"partition {p}: {offsets[:10]}..."
        everything += [v for _, _, v in records]
    assert sorted(everything) == sorted(f"js-{i}" for i in range(RECORDS))
    assert {f"js-{i}" for i in range(RECORDS) if i % PARTITIONS == 0} == {
        v for records in seen["consumed"] for p, _, v in records if p == 0}

    # Committed offsets, DescribeGroups, ListGroups, DeleteGroups.
    assert seen["committed"] == [[p, per_partition] for p in range(PARTITIONS)]
    described = seen["described"]
    assert described["state"] == "Stable" and described["protocol"] == "RoundRobinAssigner"
    assert described["members"] == sorted(sorted(a) for a in assignments)
    assert seen["listed"] == [group]
    assert seen["deleted"] == [0]
    assert seen["afterDelete"] == [-1] * PARTITIONS
