"""Cluster mode: several broker processes over one metadata file and one
object store (a shared data directory, or s3s-fs), driven by real clients.

- Three brokers serve one 12-partition topic: Metadata lists all three with
  leaders spread over them; confluent-kafka, kcat and KafkaJS produce and
  consume; a consumer group's coordinator is one broker while its
  partitions are led by others; an admin change made through one broker is
  seen by the others.
- A second broker with a live node id refuses to start, with a clear error.
- Under idempotent load (tools/torture.py's producers): kill -9 of a broker
  (its partitions get a new leader within the lease plus 2 s), a zombie
  leader (SIGSTOP until its partitions move, then SIGCONT), a fourth broker
  added, and a rolling restart. Every acknowledged record is read back
  exactly once, at its offset, and no produce fails.
- tools/torture.py's cluster mode: random SIGKILLs, SIGTERMs and zombie
  stops of random brokers, then the same read-back; and again with object
  compaction rewriting runs every 20 ms on every broker, so that rewrites
  race the leadership moves.

The fixture's lease is 3 s (conftest.py), so each broker death costs the
tests seconds, not Kafka's default 9 s.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
import uuid

import pytest
from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, KafkaError

from test_kafkajs import check_round_trip
from test_admin import scrape, value, wait_until
from tools import torture
from tools.process import free_port
from tools.clients import (
    LIBRDKAFKA_LOG,
    admin,
    create_topic,
    produce_all,
    producer,
    read_partitions,
    unique_topic,
    wait_for_topic,
)

PARTITIONS = 12
SESSION_TIMEOUT_S = 3.0  # LIGHTSTREAM_BROKER_SESSION_TIMEOUT_MS in conftest.py
CLUSTER_TIMEOUT_S = 30.0


class Cluster:
    """Brokers with node ids 1, 2, … sharing one data directory (or, with
    `s3_env`, one S3 bucket prefix and the shared metadata file)."""

    def __init__(self, broker_factory, tmp_path, s3_env: dict[str, str] | None = None):
        self.factory = broker_factory
        self.shared = tmp_path / "shared"
        self.shared.mkdir(exist_ok=True)
        self.env = dict(s3_env or {})
        # With a ScyllaDB node named, the cluster's metadata lives there (a
        # keyspace of its own) instead of the shared file.
        scylla = os.environ.get("LIGHTSTREAM_TEST_SCYLLA")
        if scylla:
            self.env["LIGHTSTREAM_METADATA_URL"] = f"scylla://{scylla}/compat_{uuid.uuid4().hex[:12]}"
        self.brokers: dict[int, object] = {}

    def add(self, node_id: int):
        b = self.factory("--node-id", str(node_id), data_dir=self.shared, env=dict(self.env))
        self.brokers[node_id] = b
        return b

    @property
    def bootstrap(self) -> str:
        return ",".join(b.bootstrap for b in self.brokers.values())

    def running(self) -> list:
        return [b for b in self.brokers.values() if b.running]

    def metadata(self, via, topic: str | None = None):
        return admin(via.bootstrap).list_topics(topic=topic, timeout=10)

    def wait_for_brokers(self, node_ids: set[int], via=None, timeout_s: float = CLUSTER_TIMEOUT_S) -> float:
        """Waits until Metadata (through `via`, else every running broker)
        lists exactly `node_ids`; returns the seconds it took."""
        start = time.monotonic()
        vias = [via] if via else self.running()
        while True:
            seen = [set(self.metadata(v).brokers) for v in vias]
            if all(s == node_ids for s in seen):
                return time.monotonic() - start
            assert time.monotonic() - start < timeout_s, f"brokers seen {seen}, wanted {node_ids}"
            time.sleep(0.1)

    def leaders(self, topic: str, via) -> dict[int, int]:
        t = self.metadata(via, topic).topics[topic]
        return {p: md.leader for p, md in t.partitions.items()}

    def wait_for_leaders(self, topic: str, live: set[int], via, timeout_s: float = CLUSTER_TIMEOUT_S) -> float:
        """Waits until every partition is led by one of `live` (through
        `via`); returns the seconds it took."""
        start = time.monotonic()
        while True:
            leaders = self.leaders(topic, via)
            if len(leaders) == PARTITIONS and set(leaders.values()) <= live:
                return time.monotonic() - start
            assert time.monotonic() - start < timeout_s, f"leaders {leaders}, wanted within {live}"
            time.sleep(0.1)


@pytest.fixture
def cluster(broker_factory, tmp_path):
    return Cluster(broker_factory, tmp_path)


def start_three(cluster: Cluster) -> None:
    for node_id in (1, 2, 3):
        cluster.add(node_id)
    cluster.wait_for_brokers({1, 2, 3})


@pytest.mark.parametrize("objects", ["directory", "s3s-fs"])
def test_three_brokers_serve_one_topic_with_leaders_spread(objects, broker_factory, tmp_path, request):
    s3_env = None
    if objects == "s3s-fs":
        s3_env = request.getfixturevalue("s3_server").broker_env(f"cluster-{uuid.uuid4().hex[:8]}")
    cluster = Cluster(broker_factory, tmp_path, s3_env)
    start_three(cluster)
    b1, b2, b3 = (cluster.brokers[n] for n in (1, 2, 3))
    topic = unique_topic("cluster")
    # Created through broker 1; broker 3 learns of it through the cluster
    # version it watches, not a restart.
    create_topic(b1.bootstrap, topic, partitions=PARTITIONS)
    # (10 s: a watch interval is far less, but CI's two cores also build.)
    wait_for_topic(b3.bootstrap, topic, PARTITIONS, timeout_s=10)
    for b in (b1, b2, b3):  # each learns of the others' claims within a watch interval
        cluster.wait_for_leaders(topic, {1, 2, 3}, via=b)
    leaders = cluster.leaders(topic, b2)
    assert len(set(leaders.values())) >= 2, f"leaders not spread: {leaders}"
    assert cluster.leaders(topic, b1) == leaders == cluster.leaders(topic, b3)

    # confluent-kafka, idempotent, bootstrapped on broker 2 only: it finds
    # every leader through Metadata.
    p = producer(b2.bootstrap, **{"enable.idempotence": True})
    sent = [{"value": f"ck-{i}".encode(), "partition": i % PARTITIONS} for i in range(1200)]
    delivered = produce_all(p, topic, sent)
    assert len(delivered) == 1200

    # kcat through broker 3: lists three brokers, produces, reads everything.
    listing = subprocess.run(["kcat", "-b", b3.bootstrap, "-L", "-t", topic, "-J"],
                             capture_output=True, timeout=30, check=True)
    md = json.loads(listing.stdout)
    assert sorted(b["id"] for b in md["brokers"]) == [1, 2, 3]
    kcat_values = "\n".join(f"kcat-{i}" for i in range(120)) + "\n"
    subprocess.run(["kcat", "-b", b3.bootstrap, "-P", "-t", topic, "-p", "5"],
                   input=kcat_values.encode(), timeout=30, check=True)
    hw = {q: 100 + (120 if q == 5 else 0) for q in range(PARTITIONS)}
    consumed = read_partitions(b1.bootstrap, topic, list(range(PARTITIONS)), until=hw)
    for q in range(PARTITIONS):
        offsets = [m.offset for m in consumed[q]]
        assert offsets == list(range(hw[q])), f"partition {q}: {offsets[:5]}…"
    for d in delivered:
        assert consumed[d.partition][d.offset].value == d.value
    assert [m.value.decode() for m in consumed[5][100:]] == [f"kcat-{i}" for i in range(120)]

    # A consumer group: its coordinator is one broker, its partitions are
    # led by all of them.
    group = unique_topic("cluster-g")
    c = Consumer({
        "bootstrap.servers": b1.bootstrap, "group.id": group, "auto.offset.reset": "earliest",
        "enable.auto.commit": False, "logger": LIBRDKAFKA_LOG,
    })
    try:
        c.subscribe([topic])
        got = 0
        deadline = time.monotonic() + CLUSTER_TIMEOUT_S
        while got < 1320 and time.monotonic() < deadline:
            for m in c.consume(500, timeout=0.5):
                if m.error() is None:
                    got += 1
        assert got == 1320
        c.commit(asynchronous=False)
    finally:
        c.close()
    client = admin(b2.bootstrap)  # referenced until its futures resolve
    described = client.describe_consumer_groups([group])[group].result(timeout=30)
    coordinator = described.coordinator.id
    assert coordinator in {1, 2, 3}
    assert any(leader != coordinator for leader in leaders.values())
    committed = client.list_consumer_group_offsets(
        [ConsumerGroupTopicPartitions(group)])[group].result(timeout=30)
    assert sum(tp.offset for tp in committed.topic_partitions) == 1320

    # KafkaJS through broker 3: idempotent producer, a two-member group,
    # group admin, over three brokers.
    check_round_trip(b3.bootstrap)


def test_a_second_broker_with_a_live_node_id_refuses_to_start(cluster, lightstream_bin):
    first = cluster.add(1)
    port = free_port()
    twin = subprocess.run(
        [str(lightstream_bin), "--node-id", "1", "--listen", f"127.0.0.1:{port}",
         "--admin-listen", "127.0.0.1:0", "--data-dir", str(cluster.shared)],
        capture_output=True, timeout=60, env={**first.env},
    )
    assert twin.returncode != 0
    err = twin.stderr.decode()
    assert "node_id=1 is held by a live broker" in err, err[-2000:]
    assert first.running
    # The first one is unharmed.
    assert set(cluster.metadata(first).brokers) == {1}


def three_with_topic(cluster: Cluster, prefix: str):
    """Three brokers and a 12-partition topic led by all of them: (broker 1, topic)."""
    start_three(cluster)
    b1 = cluster.brokers[1]
    topic = unique_topic(prefix)
    create_topic(b1.bootstrap, topic, partitions=PARTITIONS)
    cluster.wait_for_leaders(topic, {1, 2, 3}, via=b1)
    return b1, topic


class Load:
    """Idempotent producers (torture.py's) writing over every broker, and
    the read-back check at the end."""

    def __init__(self, cluster: Cluster, topic: str, producers: int = 2, rate: int = 400):
        self.cluster, self.topic = cluster, topic
        self.cfg = torture.Config(producers=producers, partitions=PARTITIONS, rate_per_producer=rate,
                                  read_timeout_s=120)
        self.stop = threading.Event()
        self.threads = [torture.ProducerThread(i, cluster.bootstrap, topic, self.cfg, self.stop)
                        for i in range(producers)]
        self.started = time.monotonic()
        for t in self.threads:
            t.start()

    def acked(self) -> int:
        return sum(len(t.acks) for t in self.threads)

    def wait_for_acks(self, more: int, timeout_s: float = CLUSTER_TIMEOUT_S) -> None:
        target = self.acked() + more
        deadline = time.monotonic() + timeout_s
        while self.acked() < target:
            assert time.monotonic() < deadline, f"acks stalled at {self.acked()} (wanted {target})"
            time.sleep(0.05)

    def finish(self, via) -> torture.Report:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=90)
        report = torture.Report()
        report.elapsed_s = time.monotonic() - self.started
        report.sent = [t.sent for t in self.threads]
        report.acked = self.acked()
        report.failed_deliveries = sum(t.failed for t in self.threads)
        report.fatal_errors = [f for t in self.threads for f in t.fatal]
        stuck = [t.index for t in self.threads if t.is_alive() or t.unflushed]
        if stuck:
            report.violations.append(f"producers {stuck} did not flush within 60 s")
        torture.check(via.bootstrap, self.topic, self.cfg, self.threads, report)
        print(f"cluster load: {report.summary()}")
        assert not report.violations, "\n".join(report.violations)
        assert report.failed_deliveries == 0, report.summary()
        assert report.acked == sum(report.sent), report.summary()
        return report


def test_kill_9_of_a_broker_under_idempotent_load_loses_nothing(cluster):
    b1, topic = three_with_topic(cluster, "cluster-kill")
    load = Load(cluster, topic)
    load.wait_for_acks(500)
    failovers = []
    for victim in (2, 3, 1):
        survivors = {1, 2, 3} - {victim}
        via = cluster.brokers[min(survivors)]
        led_by_victim = [p for p, n in cluster.leaders(topic, via).items() if n == victim]
        cluster.brokers[victim].kill()
        took = cluster.wait_for_leaders(topic, survivors, via=via)
        failovers.append((victim, len(led_by_victim), round(took, 2)))
        assert took <= SESSION_TIMEOUT_S + 2.0, f"broker {victim}'s partitions moved after {took:.1f}s"
        load.wait_for_acks(300)
        cluster.brokers[victim].start()
        cluster.wait_for_brokers({1, 2, 3})
        cluster.wait_for_leaders(topic, {1, 2, 3}, via=via)
    print(f"failovers (victim, partitions it led, seconds to new leaders): {failovers}")
    load.finish(b1)


def test_a_zombie_leader_is_fenced_and_nothing_is_lost_or_duplicated(cluster):
    b1, topic = three_with_topic(cluster, "cluster-zombie")
    load = Load(cluster, topic)
    load.wait_for_acks(500)
    zombie = cluster.brokers[2]
    # Not inside a metadata write: that would stall every broker, the known
    # limit of the shared SQLite file (docs/configuration.md), not fencing.
    torture.stop_outside_write_lock(zombie.proc.pid, cluster.shared / (torture.METADATA_FILE + "-shm"))
    try:
        # Its lease lapses; the others fence its session and take its partitions.
        cluster.wait_for_leaders(topic, {1, 3}, via=b1)
        load.wait_for_acks(300)
    finally:
        os.kill(zombie.proc.pid, signal.SIGCONT)
    # Awake, it finds itself fenced: its pending commits are refused, its
    # clients move, it registers again and gets its share back.
    cluster.wait_for_brokers({1, 2, 3})
    cluster.wait_for_leaders(topic, {1, 2, 3}, via=b1)
    load.wait_for_acks(300)
    log = zombie.log_path.read_text(errors="replace")
    # Logged by its heartbeat when the registry refuses its fenced session.
    assert "session was fenced" in log, "the zombie never noticed it was fenced"
    load.finish(b1)


def test_a_fourth_broker_takes_partitions_under_load(cluster):
    b1, topic = three_with_topic(cluster, "cluster-grow")
    load = Load(cluster, topic)
    load.wait_for_acks(500)
    before = cluster.leaders(topic, b1)
    cluster.add(4)
    cluster.wait_for_brokers({1, 2, 3, 4})
    deadline = time.monotonic() + CLUSTER_TIMEOUT_S
    while True:
        after = cluster.leaders(topic, b1)
        # Settled: every partition led, some by the newcomer.
        if 4 in after.values() and all(n > 0 for n in after.values()):
            break
        assert time.monotonic() < deadline, f"the fourth broker leads nothing: {after}"
        time.sleep(0.1)
    moved = [p for p in before if before[p] != after[p]]
    # Balanced (3 of 12 each) and stable: the newcomer's share moves, and
    # only a few more to keep every broker within its bound.
    assert sorted(after.values()).count(4) == 3, after
    assert len(moved) <= 6, (before, after)
    load.wait_for_acks(500)
    load.finish(b1)


def test_rolling_restart_under_producers_and_a_group_reaches_no_application_error(cluster):
    b1, topic = three_with_topic(cluster, "cluster-roll")
    load = Load(cluster, topic)
    group_errors: list[str] = []
    consumed: set[bytes] = set()
    stop = threading.Event()

    def consume() -> None:
        c = Consumer({
            "bootstrap.servers": cluster.bootstrap, "group.id": f"roll-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest", "logger": LIBRDKAFKA_LOG,
            "error_cb": lambda e: group_errors.append(str(e)) if e.fatal() else None,
        })
        c.subscribe([topic])
        while not stop.is_set():
            for m in c.consume(500, timeout=0.2):
                err = m.error()
                if err is None:
                    consumed.add(m.value())
                elif err.fatal() or not (err.retriable() or err.code() in (
                        KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN, KafkaError._PARTITION_EOF)):
                    group_errors.append(str(err))
        c.close()

    consumer_thread = threading.Thread(target=consume, daemon=True)
    consumer_thread.start()
    load.wait_for_acks(500)
    for node_id in (1, 2, 3):
        b = cluster.brokers[node_id]
        b.stop()  # SIGTERM: hands its partitions over, closes its session
        others = {1, 2, 3} - {node_id}
        via = cluster.brokers[min(others)]
        # A handover, then the next claim: seconds, even on a loaded machine.
        cluster.wait_for_leaders(topic, others, via=via, timeout_s=10)
        b.start()
        cluster.wait_for_brokers({1, 2, 3})
        cluster.wait_for_leaders(topic, {1, 2, 3}, via=via)
        load.wait_for_acks(200)
    report = load.finish(b1)
    acked = {payload.encode() for t in load.threads for _, _, payload in t.acks}
    deadline = time.monotonic() + CLUSTER_TIMEOUT_S
    while not acked <= consumed and time.monotonic() < deadline:
        time.sleep(0.1)
    stop.set()
    consumer_thread.join(timeout=30)
    assert acked <= consumed, f"the group missed {len(acked - consumed)} of {report.acked} records"
    assert not group_errors, group_errors[:5]


TORTURE_LEASE = {"LIGHTSTREAM_BROKER_SESSION_TIMEOUT_MS": "2000", "LIGHTSTREAM_BROKER_HEARTBEAT_INTERVAL_MS": "400"}


def torture_cluster(cluster: Cluster, prefix: str, cfg: torture.Config) -> torture.Report:
    """tools/torture.py over `cluster`; every acknowledged record read back
    once, every fault made."""
    report = torture.run_cluster(cluster.add, unique_topic(prefix), cfg)
    print(f"{prefix} events: {report.events}")
    assert not report.violations, "\n".join(report.violations)
    assert report.failed_deliveries == 0, report.summary()
    assert report.acked == report.acked_found == sum(report.sent), report.summary()
    assert report.kills == cfg.kills, report.summary()
    return report


def test_torture_with_kills_graceful_stops_and_zombie_leaders_loses_nothing(broker_factory, tmp_path):
    """tools/torture.py over three brokers: 8 faults on random brokers at
    random (seeded) moments — SIGKILL and restart, SIGTERM and restart,
    SIGSTOP past the lease then SIGCONT (a zombie leader) — under idempotent
    producers; then every partition is read back and checked."""
    cluster = Cluster(broker_factory, tmp_path, TORTURE_LEASE)
    # Bounds, not expectations: the 8 faults take about 12 s here; a zombie
    # waits at most 15 s past its lease for its partitions to move.
    cfg = torture.Config(brokers=3, kills=8, max_seconds=60, producers=2, partitions=PARTITIONS,
                         rate_per_producer=400, min_up_s=0.5, max_up_s=2.0, max_down_s=0.5,
                         zombie_max_s=15, seed=5, read_timeout_s=120)
    report = torture_cluster(cluster, "cluster-torture", cfg)
    # Kinds come in shuffled rounds of three, so 8 faults hold each at least twice.
    assert all(report.faults.get(kind, 0) >= 2 for kind in torture.FAULT_KINDS), report.faults


def test_rewrites_racing_leadership_moves_lose_nothing(broker_factory, tmp_path):
    """Object compaction on every broker (every 20 ms, runs of any age, 4 KiB
    entries) while tools/torture.py kills, stops and freezes random brokers
    under idempotent producers: a rewrite that loses its partition midway
    (a new leader, a fenced session) must be dropped, never applied over the
    new leader's writes. Every acknowledged record is read back once, at its
    offset, and the brokers have rewritten runs."""
    env = {
        **TORTURE_LEASE,
        "LIGHTSTREAM_OBJECT_COMPACTION_INTERVAL_MS": "20",
        "LIGHTSTREAM_OBJECT_COMPACTION_MIN_AGE_MS": "0",
        "LIGHTSTREAM_OBJECT_COMPACTION_MAX_ENTRY_BYTES": "4096",
    }
    cluster = Cluster(broker_factory, tmp_path, env)
    cfg = torture.Config(brokers=3, kills=6, max_seconds=60, producers=2, partitions=PARTITIONS,
                         rate_per_producer=400, min_up_s=1.0, max_up_s=3.0, max_down_s=0.5,
                         zombie_max_s=15, seed=14, read_timeout_s=120)
    torture_cluster(cluster, "cluster-compaction", cfg)
    # Counters restart with each broker: those up now have rewritten runs
    # (the producers' last runs at least). A failed rewrite is retried and
    # harmless (the read-back above is the check); its count is printed.
    wait_until("the brokers to rewrite runs", lambda: sum(
        value(scrape(b), "lightstream_object_compaction_replaced_entries_total") for b in cluster.running()) > 0)
    for b in cluster.running():
        counters = scrape(b)
        print(f"broker {b.bootstrap}: " + " ".join(
            f"{k}={value(counters, f'lightstream_object_compaction_{k}_total'):.0f}"
            for k in ("rewrites", "replaced_entries", "lost", "failures")))
