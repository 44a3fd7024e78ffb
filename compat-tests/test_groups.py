"""Consumer groups with real clients against a real broker process.

- kcat -G balanced consumer;
- confluent-kafka group churn, with `range` and with `cooperative-sticky`:
  3 consumers on a 6-partition topic while a producer writes, a 4th joins,
  one leaves (LeaveGroup), one is SIGKILLed (session timeout path); every
  produced record is consumed, and no record is consumed again after a
  commit that covered it (the only redeliveries are those Kafka allows:
  records consumed but not yet committed when their partition moved);
- a static member (group.instance.id) restarted within its session timeout
  gets its partitions back with no rebalance;
- kafka-python group consumer with auto-commit;
- a broker restart under a consuming group: consumers resume from their
  committed offsets and nothing is lost;
- AdminClient list/describe consumer groups, list offsets, delete groups.

Consumers run as processes (`tools/group_consumer.py`) so one can be killed.
The broker keeps Kafka's 3 s `group.initial.rebalance.delay.ms`.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

import pytest
from confluent_kafka import ConsumerGroupState, ConsumerGroupTopicPartitions, Producer, TopicPartition
from kafka import KafkaConsumer

from tools.clients import (
    CLIENT_TIMEOUT_S,
    LIBRDKAFKA_LOG,
    admin,
    consumer,
    create_topic,
    produce_all,
    producer,
    unique_topic,
)
from tools.process import stop_gracefully

TOOLS = Path(__file__).parent / "tools"
PARTITIONS = 6


class GroupConsumer:
    """One `tools/group_consumer.py` process and its log."""

    def __init__(self, broker, topic: str, group: str, out: Path, **opts):
        self.out = out
        argv = [
            sys.executable, str(TOOLS / "group_consumer.py"),
            "--bootstrap", broker.bootstrap, "--topic", topic, "--group", group, "--out", str(out),
        ]
        for key, value in opts.items():
            argv += [f"--{key.replace('_', '-')}", str(value)]
        self.stderr = open(out.with_suffix(".stderr"), "wb")
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self.stderr, stderr=self.stderr)

    def lines(self) -> list[tuple[float, str, list[str]]]:
        try:
            text = self.out.read_text()
        except FileNotFoundError:
            return []
        rows = []
        for line in text.splitlines():
            parts = line.split(" ")
            if len(parts) >= 2:
                rows.append((float(parts[0]), parts[1], parts[2:]))
        return rows

    def assignment(self) -> set[int]:
        """Current partitions, replaying assign/revoke events."""
        current: set[int] = set()
        for _, kind, rest in self.lines():
            parts = {int(p) for p in rest[0].split(",") if p} if rest else set()
            if kind == "A":
                current |= parts
            elif kind == "V":
                current -= parts
        return current

    def records(self) -> list[tuple[float, int, int, str]]:
        return [(t, int(r[0]), int(r[1]), r[2]) for t, kind, r in self.lines() if kind == "R"]

    def stop(self) -> None:
        stop_gracefully(self.proc)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


@pytest.fixture
def consumers():
    started: list[GroupConsumer] = []
    yield started
    for c in started:
        c.kill()
        c.stderr.close()


def wait_until(what: str, predicate, timeout_s: float = 60.0) -> float:
    """Polls `predicate` until true; returns the seconds it took."""
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        if predicate():
            return time.monotonic() - start
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


def balanced(members: list[GroupConsumer], partitions: int = PARTITIONS) -> bool:
    """Every member has partitions, none twice, all covered."""
    sets = [m.assignment() for m in members]
    union = set().union(*sets)
    return all(sets) and sum(len(s) for s in sets) == len(union) == partitions


class BackgroundProducer(threading.Thread):
    """Produces `seq-N` round-robin until stopped; keeps every acknowledgement."""

    def __init__(self, bootstrap: str, topic: str, rate: int = 300):
        super().__init__(daemon=True)
        self.topic, self.rate = topic, rate
        self.stop_event = threading.Event()
        self.acked: list[tuple[int, int, str]] = []
        self.producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5,
                                  "logger": LIBRDKAFKA_LOG})

    def run(self) -> None:
        seq = 0
        while not self.stop_event.is_set():
            value = f"seq-{seq}"
            self.producer.produce(
                self.topic, value=value.encode(), partition=seq % PARTITIONS,
                on_delivery=lambda err, msg: err is None and self.acked.append(
                    (msg.partition(), msg.offset(), msg.value().decode())),
            )
            seq += 1
            self.producer.poll(0)
            time.sleep(1.0 / self.rate)
        self.producer.flush(30)


def check_consumption(members: list[GroupConsumer], acked: list[tuple[int, int, str]]) -> int:
    """Every acknowledged record consumed with its value; nothing redelivered
    after a commit covered it. Returns how many redeliveries Kafka allowed."""
    consumed: dict[tuple[int, int], str] = {}
    for m in members:
        for _, p, o, v in m.records():
            consumed[(p, o)] = v
    missing = [(p, o) for p, o, _ in acked if (p, o) not in consumed]
    assert not missing, f"{len(missing)} acknowledged records never consumed, first {missing[:5]}"
    wrong = [(p, o, v, consumed[(p, o)]) for p, o, v in acked if consumed[(p, o)] != v]
    assert not wrong, f"records with other values: {wrong[:5]}"

    # Commits: (time, partition, highest offset covered), from each member's log.
    commits: list[tuple[float, int, int]] = []
    for m in members:
        assigned: set[int] = set()
        highest: dict[int, int] = {}
        for t, kind, rest in m.lines():
            parts = {int(p) for p in rest[0].split(",") if p} if kind in "AV" and rest else set()
            if kind == "A":
                assigned |= parts
                for p in parts:
                    highest.pop(p, None)
            elif kind == "V":
                assigned -= parts
            elif kind == "R":
                p, o = int(rest[0]), int(rest[1])
                highest[p] = max(highest.get(p, -1), o)
            elif kind == "C":
                commits += [(t, p, highest[p]) for p in assigned if p in highest]
    reads = sorted((t, p, o) for m in members for t, p, o, _ in m.records())
    for t_commit, p, covered in commits:
        again = [(t, o) for t, q, o in reads if q == p and t > t_commit and o <= covered]
        assert not again, (
            f"partition {p}: offsets up to {covered} were committed at {t_commit:.3f} "
            f"but consumed again afterwards: {again[:5]}"
        )
    seen = defaultdict(int)
    for _, p, o in reads:
        seen[(p, o)] += 1
    return sum(n - 1 for n in seen.values() if n > 1)


@pytest.mark.parametrize("strategy", ["range", "cooperative-sticky"])
def test_group_churn_consumes_everything_and_respects_commits(broker, tmp_path, consumers, strategy):
    topic = unique_topic(f"churn-{strategy}")
    group = unique_topic("g")
    create_topic(broker.bootstrap, topic, partitions=PARTITIONS)
    prod = BackgroundProducer(broker.bootstrap, topic)
    prod.start()

    def start(name: str) -> GroupConsumer:
        c = GroupConsumer(broker, topic, group, tmp_path / f"{name}.log", strategy=strategy)
        consumers.append(c)
        return c

    c1, c2, c3 = start("c1"), start("c2"), start("c3")
    wait_until("3 consumers balanced", lambda: balanced([c1, c2, c3]))
    c4 = start("c4")
    wait_until("4 consumers balanced", lambda: balanced([c1, c2, c3, c4]))
    c2.stop()  # LeaveGroup
    wait_until("3 consumers balanced after a leave", lambda: balanced([c1, c3, c4]))
    c3.kill()  # no LeaveGroup: its session (6 s) must expire
    took = wait_until("2 consumers balanced after a kill", lambda: balanced([c1, c4]))
    assert took >= 3, f"partitions moved {took:.1f}s after the kill, before the session timeout"
    prod.stop_event.set()
    prod.join(timeout=60)
    assert len(prod.acked) > 1000
    acked = prod.acked
    members = [c1, c2, c3, c4]
    wait_until(
        "every acknowledged record consumed",
        lambda: {(p, o) for m in members for _, p, o, _ in m.records()} >= {(p, o) for p, o, _ in acked},
    )
    c1.stop()
    c4.stop()
    redelivered = check_consumption(members, acked)
    print(f"{strategy}: {len(acked)} records, {redelivered} redelivered around rebalances")


def test_static_member_restart_keeps_its_partitions_without_rebalance(broker, tmp_path, consumers):
    topic = unique_topic("static")
    group = unique_topic("g")
    create_topic(broker.bootstrap, topic, partitions=PARTITIONS)
    opts = dict(session_timeout_ms=30000)
    s1 = GroupConsumer(broker, topic, group, tmp_path / "s1.log", instance_id="s1", **opts)
    s2 = GroupConsumer(broker, topic, group, tmp_path / "s2.log", instance_id="s2", **opts)
    consumers += [s1, s2]
    wait_until("2 static consumers balanced", lambda: balanced([s1, s2]))
    before = s2.assignment()
    s1_events = len([row for row in s1.lines() if row[1] in "AV"])
    s2.kill()
    time.sleep(1.0)
    s2b = GroupConsumer(broker, topic, group, tmp_path / "s2b.log", instance_id="s2", **opts)
    consumers.append(s2b)
    wait_until("the restarted static member gets partitions", lambda: bool(s2b.assignment()), timeout_s=20)
    assert s2b.assignment() == before
    time.sleep(2.0)
    assert len([row for row in s1.lines() if row[1] in "AV"]) == s1_events, "s1 saw a rebalance"
    client = admin(broker.bootstrap)  # kept: a dropped AdminClient never completes its futures
    desc = client.describe_consumer_groups([group])[group].result(timeout=CLIENT_TIMEOUT_S)
    assert desc.state == ConsumerGroupState.STABLE
    assert sorted(m.group_instance_id for m in desc.members) == ["s1", "s2"]


def test_kcat_balanced_consumer(broker, tmp_path):
    topic = unique_topic("kcat-g")
    create_topic(broker.bootstrap, topic, partitions=3)
    produce_all(producer(broker.bootstrap), topic, [dict(value=f"k{i}".encode(), partition=i % 3) for i in range(3000)])
    group = unique_topic("kg")
    out = subprocess.run(
        ["kcat", "-b", broker.bootstrap, "-G", group, "-X", "auto.offset.reset=earliest",
         "-e", "-f", "%p %o %s\\n", topic],
        capture_output=True, timeout=90, check=True,
    )
    lines = out.stdout.decode().splitlines()
    assert sorted(int(line.split()[1]) for line in lines if line.startswith("0 "))[:3] == [0, 1, 2]
    assert {line.split()[2] for line in lines} == {f"k{i}" for i in range(3000)}
    # kcat commits on close: the group's offsets are at the end.
    c = consumer(broker.bootstrap, **{"group.id": group})
    committed = c.committed([TopicPartition(topic, p) for p in range(3)], timeout=CLIENT_TIMEOUT_S)
    c.close()
    assert [tp.offset for tp in committed] == [1000, 1000, 1000]


def test_kafka_python_group_consumer_with_auto_commit(broker):
    topic = unique_topic("kp-g")
    create_topic(broker.bootstrap, topic, partitions=2)
    produce_all(producer(broker.bootstrap), topic, [dict(value=f"v{i}".encode(), partition=i % 2) for i in range(400)])
    group = unique_topic("kpg")

    def kp_consumer():
        return KafkaConsumer(
            topic, bootstrap_servers=broker.bootstrap, group_id=group, auto_offset_reset="earliest",
            enable_auto_commit=True, auto_commit_interval_ms=200, consumer_timeout_ms=8000,
        )

    c = kp_consumer()
    values = [m.value.decode() for m in c]
    c.close()  # commits
    assert sorted(values) == sorted(f"v{i}" for i in range(400))
    # A new member of the group starts from the committed offsets: nothing left.
    produce_all(producer(broker.bootstrap), topic, [dict(value=b"late", partition=0)])
    c = kp_consumer()
    assert [m.value for m in c] == [b"late"]
    c.close()


def test_consumers_resume_from_committed_offsets_after_a_broker_restart(broker, tmp_path, consumers):
    topic = unique_topic("restart-g")
    group = unique_topic("g")
    create_topic(broker.bootstrap, topic, partitions=PARTITIONS)
    first = [dict(value=f"a{i}".encode(), partition=i % PARTITIONS) for i in range(1200)]
    produce_all(producer(broker.bootstrap), topic, first)
    c1 = GroupConsumer(broker, topic, group, tmp_path / "c1.log")
    c2 = GroupConsumer(broker, topic, group, tmp_path / "c2.log")
    consumers += [c1, c2]
    wait_until("the first records consumed",
               lambda: {r[3] for m in (c1, c2) for r in m.records()} == {f"a{i}" for i in range(1200)})
    # Their last auto-commits: wait until the committed offsets cover every
    # record (a fixed sleep raced the commit interval under load).
    client = admin(broker.bootstrap)

    def committed() -> int:
        offsets = client.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])[group].result(
            timeout=CLIENT_TIMEOUT_S)
        return sum(max(tp.offset, 0) for tp in offsets.topic_partitions)

    wait_until("the first records committed", lambda: committed() >= 1200)
    restarted_at = time.time()
    broker.stop()
    broker.start()
    second = [dict(value=f"b{i}".encode(), partition=i % PARTITIONS) for i in range(1200)]
    produce_all(producer(broker.bootstrap), topic, second)
    # Wait for every distinct record, not a count: records consumed before the
    # members rejoined are consumed again from the committed offsets (Kafka
    # allows that), and those repeats must not stand in for records not yet read.
    expected = {f"b{i}" for i in range(1200)}

    def second_seen() -> set[str]:
        return {r[3] for m in (c1, c2) for r in m.records() if r[3].startswith("b")}

    try:
        wait_until("the second records consumed after the restart", lambda: second_seen() == expected)
    except AssertionError:
        missing = sorted(expected - second_seen(), key=lambda v: int(v[1:]))
        exited = [m.proc.poll() for m in (c1, c2)]
        raise AssertionError(
            f"{len(missing)} records never consumed after the restart, first {missing[:10]}; "
            f"consumer exit codes {exited}")
    # Resumed from committed offsets: no first record was read again after the
    # restart (repeats before it, around the members' first join, are allowed).
    again = [r[3] for m in (c1, c2) for r in m.records() if r[3].startswith("a") and r[0] > restarted_at]
    assert not again, f"{len(again)} committed records read again after the restart, first {again[:10]}"


def test_admin_lists_describes_and_deletes_groups(broker, tmp_path, consumers):
    topic = unique_topic("admin-g")
    group = unique_topic("g")
    create_topic(broker.bootstrap, topic, partitions=2)
    produce_all(producer(broker.bootstrap), topic, [dict(value=b"x", partition=p) for p in (0, 1)])
    c = GroupConsumer(broker, topic, group, tmp_path / "c.log")
    consumers.append(c)
    wait_until("consumed", lambda: len(c.records()) == 2 and any(row[1] == "C" for row in c.lines()))
    client = admin(broker.bootstrap)
    listed = client.list_consumer_groups().result(timeout=CLIENT_TIMEOUT_S)
    mine = [g for g in listed.valid if g.group_id == group]
    assert len(mine) == 1 and mine[0].state == ConsumerGroupState.STABLE
    desc = client.describe_consumer_groups([group])[group].result(timeout=CLIENT_TIMEOUT_S)
    assert desc.state == ConsumerGroupState.STABLE
    assert desc.partition_assignor == "range"
    assert [sorted(tp.partition for tp in m.assignment.topic_partitions) for m in desc.members] == [[0, 1]]
    offsets = client.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])[group].result(
        timeout=CLIENT_TIMEOUT_S)
    assert sorted((tp.partition, tp.offset) for tp in offsets.topic_partitions) == [(0, 1), (1, 1)]
    # A group with a member cannot be deleted.
    with pytest.raises(Exception, match="NON_EMPTY_GROUP"):
        client.delete_consumer_groups([group])[group].result(timeout=CLIENT_TIMEOUT_S)
    c.stop()
    wait_until("the group empty", lambda: client.describe_consumer_groups([group])[group].result(
        timeout=CLIENT_TIMEOUT_S).state == ConsumerGroupState.EMPTY)
    client.delete_consumer_groups([group])[group].result(timeout=CLIENT_TIMEOUT_S)
    listed = client.list_consumer_groups().result(timeout=CLIENT_TIMEOUT_S)
    assert group not in [g.group_id for g in listed.valid]
    offsets = client.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])[group].result(
        timeout=CLIENT_TIMEOUT_S)
    assert all(tp.offset < 0 for tp in offsets.topic_partitions)
