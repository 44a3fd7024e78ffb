#!/usr/bin/env python3
"""Durability torture: idempotent producers write while the broker is killed
at random moments, then everything is read back and checked.

Producers (confluent-kafka, `enable.idempotence=true`, acks=all, one thread
each) send payloads `p<producer>-<sequence>-…` round-robin over the topic's
partitions and record every acknowledgement (partition, offset, payload).
Meanwhile the harness SIGKILLs the broker after a random time up, restarts
it after a random time down, and repeats. With `--failpoint-probability`
the broker also aborts itself at two exact steps of a flush (after the
object is durable but before its commit; after the commit but before the
answer — see `storage/src/failpoint.rs`); those crashes are restarted too.

At the end (broker restarted without failpoints, producers flushed) every
partition is read from offset 0 and checked:

- offsets are dense: 0, 1, 2 … up to the high watermark (no holes; Kafka
  allows holes only for transactions and compaction, neither used here);
- every acknowledged record is at its acknowledged offset, exactly once;
- no payload appears twice, acknowledged or not (idempotence);
- no record appears that was never sent;
- each producer's records are in its send order within each partition;
- no producer hit a fatal (sequence) error.

Bounded: at most `--kills` kills and `--max-seconds` of killing, then at most
60 s of flushing and the read-back's own timeout.

As a program it starts its own broker (`--bin`) in a temporary directory on
a free loopback port:

    python3 compat-tests/tools/torture.py --bin target/release/lightstream --kills 100

`test_idempotence.py` runs a short version against the pytest broker.

With `--brokers N` (N > 1, `run_cluster`) it starts N brokers of one
cluster (node ids 1…N, one shared metadata file and objects directory,
free loopback ports), bootstraps the producers on all of them, and each of
the `--kills` faults hits a random broker at a random (seeded) moment; the
kinds come in shuffled rounds of three, so every kind occurs:

- `kill`: SIGKILL, restart after 0–`max_down_s`;
- `term`: SIGTERM (it hands its partitions over; exit code 0 expected),
  restart after 0–`max_down_s`;
- `stop`: SIGSTOP until its lease lapsed and the others lead all its
  partitions (seen in Metadata), then SIGCONT: a zombie leader, whose
  pending commits the store must refuse. Its log is searched for the
  fencing (`zombies_fenced`).

At least one broker keeps serving at all times; faults may overlap when
others are up. A broker SIGSTOPped while it holds the shared SQLite file's
WAL write lock (found in /proc/locks) would stall every broker, a known
limit of sharing one SQLite file (ScyllaDB has no such lock): it is
SIGCONTed at once, counted as `stopped_in_write_lock`, and another stop is
tried. A broker that exits by itself (or fails to start, e.g. "database is
locked") is restarted and the event recorded.

    python3 compat-tests/tools/torture.py --bin target/release/lightstream --brokers 3 --kills 20
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import random
import re
import signal
import sys
import tempfile
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from confluent_kafka import Producer

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tools.clients import LIBRDKAFKA_LOG, admin, create_topic, read_partitions  # noqa: E402

PAYLOAD = re.compile(r"^p(\d+)-(\d{9})-")
FAILPOINTS_ENV = "LIGHTSTREAM_FAILPOINTS"
FAULT_KINDS = ("kill", "term", "stop")


@dataclass
class Config:
    kills: int = 10
    max_seconds: float = 60.0
    producers: int = 3
    partitions: int = 4
    rate_per_producer: int = 1500
    value_bytes: int = 100
    failpoint_probability: float = 0.0
    # The failpoint spec when not the flush's two points at
    # `failpoint_probability` (e.g. "compaction.after_write=0.05").
    failpoints: str = ""
    # How the broker is stopped: "kill" (SIGKILL) or "term" (graceful).
    stop_signal: str = "kill"
    min_up_s: float = 0.3
    max_up_s: float = 2.0
    max_down_s: float = 0.3
    seed: int | None = None
    # Reading everything back at the end: from S3, a long run's many small
    # objects cost one GET each, so this grows with the run.
    read_timeout_s: float = 120.0
    # Cluster mode (`run_cluster`): how many brokers, and the longest a
    # zombie stays stopped past its lease waiting for its partitions to move.
    brokers: int = 1
    zombie_max_s: float = 30.0


@dataclass
class Report:
    elapsed_s: float = 0.0
    kills: int = 0
    self_aborts: int = 0
    sent: list[int] = field(default_factory=list)
    acked: int = 0
    failed_deliveries: int = 0
    stored: int = 0
    fatal_errors: list[str] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    # Acknowledged records found at their acknowledged offset by `check`.
    acked_found: int = 0
    # Cluster mode only (`run_cluster`); `kills` counts faults of every kind.
    brokers: int = 1
    faults: dict[str, int] = field(default_factory=dict)
    events: list[tuple[float, int, str]] = field(default_factory=list)
    stopped_in_write_lock: int = 0
    zombies_fenced: int = 0
    zombies_refused_commit: int = 0
    self_exits: int = 0
    start_failures: int = 0

    def summary(self) -> str:
        if self.brokers > 1:
            kinds = " ".join(f"{k}={self.faults.get(k, 0)}" for k in FAULT_KINDS)
            return (
                f"elapsed={self.elapsed_s:.1f}s brokers={self.brokers} faults={self.kills} ({kinds}) "
                f"stopped_in_write_lock={self.stopped_in_write_lock} "
                f"zombies_fenced={self.zombies_fenced}/{self.faults.get('stop', 0)} "
                f"zombies_refused_commit={self.zombies_refused_commit} self_exits={self.self_exits} "
                f"self_aborts={self.self_aborts} start_failures={self.start_failures} "
                f"sent={sum(self.sent)} acked={self.acked} acked_found={self.acked_found} "
                f"failed_deliveries={self.failed_deliveries} stored={self.stored} "
                f"fatal_errors={len(self.fatal_errors)} violations={len(self.violations)}"
            )
        return (
            f"elapsed={self.elapsed_s:.1f}s kills={self.kills} self_aborts={self.self_aborts} "
            f"sent={sum(self.sent)} acked={self.acked} failed_deliveries={self.failed_deliveries} "
            f"stored={self.stored} fatal_errors={len(self.fatal_errors)} violations={len(self.violations)}"
        )


class ProducerThread(threading.Thread):
    """One idempotent producer sending until `stop` is set, then flushing."""

    def __init__(self, index: int, bootstrap: str, topic: str, cfg: Config, stop: threading.Event):
        super().__init__(name=f"torture-producer-{index}", daemon=True)
        self.index, self.topic, self.cfg, self.stop = index, topic, cfg, stop
        self.sent = 0
        self.acks: list[tuple[int, int, str]] = []
        self.failed = 0
        self.fatal: list[str] = []
        self.unflushed = 0
        self.producer = Producer(
            {
                "bootstrap.servers": bootstrap,
                "client.id": f"torture-{index}",
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 5,
                # Long enough to outlive every restart, so messages are
                # retried rather than failed while the broker is down.
                "message.timeout.ms": 120000,
                "retry.backoff.ms": 50,
                "reconnect.backoff.ms": 50,
                "reconnect.backoff.max.ms": 500,
                "queue.buffering.max.messages": 20000,
                "error_cb": self._on_error,
                "logger": LIBRDKAFKA_LOG,
            }
        )

    def _on_error(self, err) -> None:
        if err.fatal():
            self.fatal.append(f"producer {self.index}: {err}")

    def _on_delivery(self, err, msg) -> None:
        if err is not None:
            self.failed += 1
            return
        self.acks.append((msg.partition(), msg.offset(), msg.value().decode("ascii")))

    def run(self) -> None:
        pad = "x" * self.cfg.value_bytes
        interval = 1.0 / self.cfg.rate_per_producer
        next_send = time.monotonic()
        while not self.stop.is_set() and not self.fatal:
            now = time.monotonic()
            if now < next_send:
                self.producer.poll(min(next_send - now, 0.05))
                continue
            value = f"p{self.index}-{self.sent:09d}-{pad}".encode("ascii")
            try:
                self.producer.produce(
                    self.topic,
                    value=value,
                    partition=self.sent % self.cfg.partitions,
                    on_delivery=self._on_delivery,
                )
            except BufferError:
                self.producer.poll(0.05)
                continue
            self.sent += 1
            next_send += interval
            self.producer.poll(0)
        self.unflushed = self.producer.flush(60)


def _wait_up(broker, seconds: float) -> bool:
    """Sleeps up to `seconds`; False as soon as the broker exits by itself."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if broker.proc.poll() is not None:
            return False
        time.sleep(0.02)
    return True


def _restart(broker, report: Report) -> None:
    """Starts the broker again. With failpoints on, producers that reconnect
    the moment the port opens can trigger a failpoint abort before the
    start-up check has seen the port: that is a self-abort, not a failure."""
    from _pytest.outcomes import Failed

    for _ in range(20):
        try:
            broker.start()
            return
        except Failed:
            if FAILPOINTS_ENV not in broker.env or broker.proc.poll() != -signal.SIGABRT:
                raise
            report.self_aborts += 1
            broker.kill()
    broker.start()


def run(broker, topic: str, cfg: Config, log=print) -> Report:
    """Tortures a started `broker` (conftest.Broker: start/kill/stop, proc, env)."""
    rng = random.Random(cfg.seed)
    report = Report()
    create_topic(broker.bootstrap, topic, partitions=cfg.partitions)
    failpoints = cfg.failpoints or (
        f"flush.before_commit={cfg.failpoint_probability},flush.after_commit={cfg.failpoint_probability}"
        if cfg.failpoint_probability > 0
        else ""
    )
    if failpoints:
        broker.kill()
        broker.env[FAILPOINTS_ENV] = failpoints
        broker.start()
    stop = threading.Event()
    threads = [ProducerThread(i, broker.bootstrap, topic, cfg, stop) for i in range(cfg.producers)]
    started = time.monotonic()
    for t in threads:
        t.start()
    while report.kills < cfg.kills and time.monotonic() - started < cfg.max_seconds:
        if not _wait_up(broker, rng.uniform(cfg.min_up_s, cfg.max_up_s)):
            report.self_aborts += 1
            broker.kill()  # reap it
        elif cfg.stop_signal == "term":
            broker.stop()
            report.kills += 1
        else:
            broker.kill()
            report.kills += 1
        time.sleep(rng.uniform(0, cfg.max_down_s))
        _restart(broker, report)
        if any(t.fatal for t in threads):
            break
    # The last run goes without failpoints, so the final flush and read-back
    # are not interrupted.
    broker.kill()
    broker.env.pop(FAILPOINTS_ENV, None)
    broker.start()
    stop.set()
    for t in threads:
        t.join(timeout=90)
    report.elapsed_s = time.monotonic() - started
    report.sent = [t.sent for t in threads]
    report.acked = sum(len(t.acks) for t in threads)
    report.failed_deliveries = sum(t.failed for t in threads)
    report.fatal_errors = [f for t in threads for f in t.fatal]
    stuck = [t.index for t in threads if t.is_alive() or t.unflushed]
    if stuck:
        report.violations.append(f"producers {stuck} did not flush within 60 s")
    check(broker.bootstrap, topic, cfg, threads, report)
    log(f"torture: {report.summary()}")
    return report


# ---------------------------------------------------------------- cluster mode

# Bytes of the SQLite WAL index (the metadata file's `-shm`) whose POSIX
# write lock keeps every other connection from writing: the WAL write lock,
# the checkpoint lock and the recovery lock (sqlite's wal.c: WAL_WRITE_LOCK 0,
# WAL_CKPT_LOCK 1, WAL_RECOVER_LOCK 2, at offset 120 of the -shm file).
SHM_WRITE_BYTES = (120, 121, 122)
METADATA_FILE = "metadata.sqlite"
# How a broker's log says it found itself fenced (broker/src/cluster/mod.rs,
# storage/src/log/leadership.rs) and that a pending commit was refused
# because of it (storage/src/log/flush.rs with metadata's SessionFenced).
FENCED_IN_LOG = re.compile(r"this broker's session was fenced|fenced: stopped leading partitions")
REFUSED_IN_LOG = re.compile(r"index commit failed.*(?:was fenced or replaced|fenced topic_partition)")
STOP_TIMEOUT_S = 30.0
START_ATTEMPTS = 20
PROBE_INTERVAL_S = 0.2


def shm_write_locks(pid: int, shm: Path) -> list[int]:
    """Which of SHM_WRITE_BYTES of `shm` process `pid` holds a POSIX write lock on.

    /proc/locks lines look like `1: POSIX  ADVISORY  WRITE 12345 fe:00:10012585 120 120`
    (major:minor in hex, two digits at least, then the inode); a waiter's
    line has `->` after the number and holds nothing."""
    try:
        st = os.stat(shm)
    except FileNotFoundError:
        return []
    file_id = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    held = []
    for line in Path("/proc/locks").read_text().splitlines():
        f = line.split()
        if len(f) < 8 or f[1] != "POSIX" or f[3] != "WRITE" or f[4] != str(pid) or f[5] != file_id:
            continue
        start, end = int(f[6]), (1 << 63) if f[7] == "EOF" else int(f[7])
        held.extend(b for b in SHM_WRITE_BYTES if start <= b <= end)
    return held


def stop_outside_write_lock(pid: int, shm: Path, attempts: int = 100) -> int:
    """SIGSTOPs `pid` at a moment it holds none of the shared metadata
    file's write locks (a broker frozen inside one stalls every broker: the
    known limit of sharing one SQLite file); returns how many stops landed
    in a lock and were undone at once with SIGCONT."""
    for tries in range(attempts):
        os.kill(pid, signal.SIGSTOP)
        _wait_stopped(pid)
        if not shm_write_locks(pid, shm):
            return tries
        os.kill(pid, signal.SIGCONT)
        time.sleep(0.01 * (tries + 1))  # let the transaction finish, then try again
    raise AssertionError(f"broker {pid} held the metadata write lock at each of {attempts} stops")


def _wait_stopped(pid: int, timeout_s: float = 5.0) -> bool:
    """Waits until every thread of `pid` is stopped (so its locks cannot change)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        states = []
        try:
            for task in Path(f"/proc/{pid}/task").iterdir():
                try:
                    states.append((task / "stat").read_text().rsplit(")", 1)[1].split()[0])
                except (FileNotFoundError, ProcessLookupError):
                    continue  # a thread that just ended
        except FileNotFoundError:
            return False  # the process is gone
        if states and all(state in ("T", "t") for state in states):
            return True
        time.sleep(0.002)
    return False


def _log_size(broker) -> int:
    try:
        return broker.log_path.stat().st_size
    except FileNotFoundError:
        return 0


def _log_text(broker, start: int, end: int | None) -> str:
    try:
        with open(broker.log_path, "rb") as f:
            f.seek(start)
            data = f.read() if end is None else f.read(max(0, end - start))
    except FileNotFoundError:
        return ""
    return data.decode(errors="replace")


@dataclass
class _Node:
    """One broker of the cluster and where it stands in the fault schedule."""

    node_id: int
    broker: object
    # up | waking (SIGCONTed, its fencing not seen yet) | terminating | down | stopped
    state: str = "up"
    since: float = 0.0
    deadline: float = 0.0
    next_probe: float = 0.0
    # Its last zombie fault (index in `_ClusterTorture.zombies`) while its log
    # segment is still open.
    zombie: int | None = None
    # Start failures and exits by itself since its last fault.
    start_failures: int = 0


@dataclass
class _Zombie:
    node_id: int
    log_start: int
    log_end: int | None = None


class _ClusterTorture:
    """The fault schedule of `run_cluster`: one loop that injects faults and
    tends every broker (restarts, SIGCONTs, reaping) every 20 ms."""

    def __init__(self, nodes: dict[int, _Node], topic: str, cfg: Config, report: Report, rng: random.Random,
                 log):
        self.nodes, self.topic, self.cfg, self.report, self.rng, self.log = nodes, topic, cfg, report, rng, log
        self.started = time.monotonic()
        first = nodes[min(nodes)].broker
        self.shm = first.data_dir / f"{METADATA_FILE}-shm"
        env = first.env
        self.lease_s = int(env.get("LIGHTSTREAM_BROKER_SESSION_TIMEOUT_MS", "9000")) / 1000
        self.heartbeat_s = int(env.get("LIGHTSTREAM_BROKER_HEARTBEAT_INTERVAL_MS", "2000")) / 1000
        self.failpoints = any(FAILPOINTS_ENV in n.broker.env for n in nodes.values())
        self.zombies: list[_Zombie] = []
        self.kinds: list[str] = []

    def event(self, node: _Node, kind: str) -> None:
        t = round(time.monotonic() - self.started, 2)
        self.report.events.append((t, node.node_id, kind))
        self.log(f"torture: t={t:.2f}s broker {node.node_id}: {kind}")

    def serving(self) -> list[_Node]:
        return [n for n in self.nodes.values() if n.state in ("up", "waking")]

    def settled(self) -> bool:
        return all(n.state == "up" for n in self.nodes.values())

    # -- faults

    def next_kind(self) -> str:
        if not self.kinds:
            self.kinds = list(FAULT_KINDS)
            self.rng.shuffle(self.kinds)
        return self.kinds[0]

    def inject(self) -> bool:
        """One fault on a random broker; False when none could be made now
        (fewer than two serving, or a stop caught the write lock)."""
        candidates = [n for n in self.nodes.values() if n.state == "up" and n.broker.proc.poll() is None]
        if len(self.serving()) < 2 or not candidates:
            return False
        kind = self.next_kind()
        node = self.rng.choice(candidates)
        node.start_failures = 0
        self.close_zombie(node)
        now = time.monotonic()
        pid = node.broker.proc.pid
        if kind == "kill":
            node.broker.kill()
            node.state, node.deadline = "down", now + self.rng.uniform(0, self.cfg.max_down_s)
        elif kind == "term":
            node.broker.proc.send_signal(signal.SIGTERM)
            node.state, node.deadline = "terminating", now + STOP_TIMEOUT_S
        else:
            mark = _log_size(node.broker)
            os.kill(pid, signal.SIGSTOP)
            _wait_stopped(pid)
            held = shm_write_locks(pid, self.shm)
            if held:
                os.kill(pid, signal.SIGCONT)
                self.report.stopped_in_write_lock += 1
                self.event(node, f"stopped_in_write_lock(bytes {','.join(map(str, held))}); SIGCONT at once")
                return False
            node.state, node.since, node.next_probe = "stopped", now, now + self.lease_s + self.heartbeat_s
            node.zombie = len(self.zombies)
            self.zombies.append(_Zombie(node.node_id, mark))
        self.kinds.pop(0)
        self.report.kills += 1
        self.report.faults[kind] = self.report.faults.get(kind, 0) + 1
        self.event(node, {"kill": "SIGKILL", "term": "SIGTERM", "stop": "SIGSTOP"}[kind])
        return True

    def close_zombie(self, node: _Node) -> None:
        """Ends the log segment searched for the fencing of node's last zombie fault."""
        if node.zombie is not None:
            self.zombies[node.zombie].log_end = _log_size(node.broker)
            node.zombie = None

    # -- recovery

    def start(self, node: _Node) -> None:
        """Starts the broker and waits until it answers. In this thread: a
        child started from another thread would get SIGKILL when that
        thread ends (conftest's die_with_parent is PR_SET_PDEATHSIG). A
        restarted node id waits for its previous process's lease before
        it serves, so meanwhile the others go untended (a zombie stays
        stopped that much longer)."""
        from _pytest.outcomes import Failed

        try:
            node.broker.start()
        except Failed as e:
            why = str(e).splitlines()[0][:100] if str(e) else "failed"
            self.report.start_failures += 1
            self.event(node, f"start failed: {why}")
            self.start_failed(node, why)
            return
        node.state = "up"
        self.event(node, "restart")

    def start_failed(self, node: _Node, why: str) -> None:
        """A start that failed, or a broker that exited by itself: restarted
        unless that happened START_ATTEMPTS times with no fault between."""
        node.start_failures += 1
        if node.start_failures >= START_ATTEMPTS:
            raise AssertionError(f"broker {node.node_id} failed {START_ATTEMPTS} times in a row, "
                                 f"with no fault between: {why} (log: {node.broker.log_path})")
        node.broker.kill()  # reap it
        node.state, node.deadline = "down", time.monotonic() + 0.5

    def partitions_moved(self, node: _Node) -> bool:
        """Whether a serving broker's Metadata shows every partition led by
        another broker (so its lease lapsed and its partitions were claimed)."""
        from confluent_kafka import KafkaException

        # A broker that just died would hold the loop for the whole timeout.
        vias = [n for n in self.serving() if n is not node and n.broker.proc.poll() is None]
        if not vias:
            return False
        try:
            md = admin(vias[0].broker.bootstrap).list_topics(topic=self.topic, timeout=2)
        except KafkaException:
            return False
        t = md.topics.get(self.topic)
        if t is None or t.error is not None or len(t.partitions) != self.cfg.partitions:
            return False
        return all(p.leader >= 0 and p.leader != node.node_id for p in t.partitions.values())

    def tend(self, node: _Node, ending: bool = False) -> None:
        now = time.monotonic()
        proc = node.broker.proc
        if node.state in ("up", "waking") and proc.poll() is not None:
            code = proc.returncode
            node.broker.kill()  # forgets it in conftest's live set
            self.close_zombie(node)
            if self.failpoints and code == -signal.SIGABRT:
                self.report.self_aborts += 1
                self.event(node, "self_abort (failpoint)")
            else:
                self.report.self_exits += 1
                self.event(node, f"exited by itself (code {code})")
                self.start_failed(node, f"exited by itself (code {code})")
            node.state, node.deadline = "down", now
        elif node.state == "waking":
            if now >= node.deadline or (node.zombie is not None and FENCED_IN_LOG.search(
                    _log_text(node.broker, self.zombies[node.zombie].log_start, None))):
                node.state = "up"
        elif node.state == "terminating":
            code = proc.poll()
            if code is None and now >= node.deadline:
                node.broker.kill()
                self.report.violations.append(
                    f"broker {node.node_id} did not exit within {STOP_TIMEOUT_S:.0f} s of SIGTERM")
                node.state, node.deadline = "down", now
            elif code is not None:
                node.broker.kill()
                if code != 0:
                    if self.failpoints and code == -signal.SIGABRT:
                        self.report.self_aborts += 1
                        self.event(node, "self_abort (failpoint) while stopping")
                    else:
                        self.report.violations.append(f"broker {node.node_id} exited with code {code} after SIGTERM")
                self.event(node, f"exited after SIGTERM (code {code})")
                node.state, node.deadline = "down", now + self.rng.uniform(0, self.cfg.max_down_s)
        elif node.state == "down":
            if now >= node.deadline:
                self.start(node)
        elif node.state == "stopped":
            if ending:
                self.cont(node, "SIGCONT (run ending)")
            elif now >= node.next_probe:
                node.next_probe = now + PROBE_INTERVAL_S
                if self.partitions_moved(node):
                    self.cont(node, "SIGCONT (its partitions moved)")
                elif now - node.since >= self.lease_s + self.heartbeat_s + self.cfg.zombie_max_s:
                    self.cont(node, "SIGCONT (partitions not moved in time)")

    def cont(self, node: _Node, why: str) -> None:
        os.kill(node.broker.proc.pid, signal.SIGCONT)
        node.state = "waking"
        # Its overdue heartbeat runs at once; a few intervals are plenty.
        node.deadline = time.monotonic() + max(2.0, 5 * self.heartbeat_s)
        self.event(node, why)

    def run(self, threads: list[ProducerThread]) -> None:
        cfg = self.cfg
        next_fault = self.started + self.rng.uniform(cfg.min_up_s, cfg.max_up_s)
        hard_deadline = self.started + cfg.max_seconds + cfg.zombie_max_s + 60
        while True:
            now = time.monotonic()
            injecting = (self.report.kills < cfg.kills and now - self.started < cfg.max_seconds
                         and not any(t.fatal for t in threads))
            if not injecting and (self.settled() or now >= hard_deadline):
                break
            for node in self.nodes.values():
                self.tend(node, ending=now >= hard_deadline - 60)
            if injecting and time.monotonic() >= next_fault:
                if self.inject():
                    next_fault = time.monotonic() + self.rng.uniform(cfg.min_up_s, cfg.max_up_s)
                else:
                    next_fault = time.monotonic() + self.rng.uniform(0.05, 0.3)
            time.sleep(0.02)
        # Whatever is still out (only past the hard deadline): back in.
        deadline = time.monotonic() + 60
        while not self.settled() and time.monotonic() < deadline:
            for node in self.nodes.values():
                self.tend(node, ending=True)
                if node.state == "waking":
                    node.state = "up"
            time.sleep(0.02)

    def count_zombies(self) -> None:
        for z in self.zombies:
            node = self.nodes[z.node_id]
            text = _log_text(node.broker, z.log_start, z.log_end)
            if FENCED_IN_LOG.search(text):
                self.report.zombies_fenced += 1
            if REFUSED_IN_LOG.search(text):
                self.report.zombies_refused_commit += 1


def run_cluster(make_broker, topic: str, cfg: Config, log=print) -> Report:
    """Starts `cfg.brokers` brokers with `make_broker(node_id)` (a started
    conftest.Broker of one cluster: shared data dir, `--node-id node_id`),
    creates `topic`, and tortures them under idempotent producers
    bootstrapped on all of them (see the module documentation)."""
    rng = random.Random(cfg.seed)
    report = Report(brokers=cfg.brokers)
    nodes = {n: _Node(n, make_broker(n)) for n in range(1, cfg.brokers + 1)}
    bootstrap = ",".join(n.broker.bootstrap for n in nodes.values())
    first = nodes[1].broker
    _wait_cluster(first.bootstrap, set(nodes), None, cfg.partitions)
    create_topic(first.bootstrap, topic, partitions=cfg.partitions)
    if cfg.failpoint_probability > 0:
        failpoints = (f"flush.before_commit={cfg.failpoint_probability},"
                      f"flush.after_commit={cfg.failpoint_probability}")
        for n in nodes.values():  # graceful: hands its partitions over
            n.broker.stop()
            n.broker.env[FAILPOINTS_ENV] = failpoints
            n.broker.start()
    _wait_cluster(first.bootstrap, set(nodes), topic, cfg.partitions)
    stop = threading.Event()
    threads = [ProducerThread(i, bootstrap, topic, cfg, stop) for i in range(cfg.producers)]
    torture = _ClusterTorture(nodes, topic, cfg, report, rng, log)
    for t in threads:
        t.start()
    torture.run(threads)
    if torture.failpoints:
        # The last run goes without failpoints, so the final flush and
        # read-back are not interrupted.
        for n in nodes.values():
            n.broker.kill()
        for n in nodes.values():
            n.broker.env.pop(FAILPOINTS_ENV, None)
            torture.close_zombie(n)
            n.state, n.deadline = "down", 0.0
            torture.event(n, "SIGKILL (final restart without failpoints)")
        deadline = time.monotonic() + 60
        while not torture.settled() and time.monotonic() < deadline:
            for n in nodes.values():
                torture.tend(n, ending=True)
            time.sleep(0.02)
    if not _wait_cluster(first.bootstrap, set(nodes), topic, cfg.partitions, raise_on_timeout=False):
        log("torture: the cluster did not list every broker with every partition led within 60 s")
    stop.set()
    for t in threads:
        t.join(timeout=90)
    report.elapsed_s = time.monotonic() - torture.started
    report.sent = [t.sent for t in threads]
    report.acked = sum(len(t.acks) for t in threads)
    report.failed_deliveries = sum(t.failed for t in threads)
    report.fatal_errors = [f for t in threads for f in t.fatal]
    stuck = [t.index for t in threads if t.is_alive() or t.unflushed]
    if stuck:
        report.violations.append(f"producers {stuck} did not flush within 60 s")
    for n in nodes.values():
        torture.close_zombie(n)
    torture.count_zombies()
    check(bootstrap, topic, cfg, threads, report)
    log(f"torture: {report.summary()}")
    return report


def _wait_cluster(via: str, node_ids: set[int], topic: str | None, partitions: int, timeout_s: float = 60.0,
                  raise_on_timeout: bool = True) -> bool:
    """Waits until Metadata through `via` lists exactly `node_ids` and (with
    `topic`) every partition of it led."""
    from confluent_kafka import KafkaException

    deadline = time.monotonic() + timeout_s
    seen = None
    while time.monotonic() < deadline:
        try:
            md = admin(via).list_topics(topic=topic, timeout=10)
        except KafkaException as e:
            seen = str(e)
        else:
            seen = (sorted(md.brokers), md.topics.get(topic) if topic else None)
            t = md.topics.get(topic) if topic else None
            led = topic is None or (t is not None and t.error is None and len(t.partitions) == partitions
                                    and all(p.leader >= 0 for p in t.partitions.values()))
            if set(md.brokers) == node_ids and led:
                return True
        time.sleep(0.1)
    if raise_on_timeout:
        raise AssertionError(f"cluster not ready within {timeout_s:.0f} s: {seen}")
    return False


def check(bootstrap: str, topic: str, cfg: Config, threads: list[ProducerThread], report: Report) -> None:
    partitions = list(range(cfg.partitions))
    consumed = read_partitions(bootstrap, topic, partitions, timeout_s=cfg.read_timeout_s)
    v = report.violations
    stored: dict[int, dict[int, str]] = {}
    seen: dict[str, tuple[int, int]] = {}
    for p in partitions:
        offsets = [m.offset for m in consumed[p]]
        if offsets != list(range(len(offsets))):
            holes = sorted(set(range(offsets[-1] + 1)) - set(offsets))[:10] if offsets else []
            v.append(f"partition {p}: offsets not dense from 0 (first holes {holes})")
        stored[p] = {}
        for m in consumed[p]:
            payload = (m.value or b"").decode("ascii", errors="replace")
            stored[p][m.offset] = payload
            report.stored += 1
            match = PAYLOAD.match(payload)
            if not match or int(match[1]) >= cfg.producers or int(match[2]) >= report.sent[int(match[1])]:
                v.append(f"partition {p} offset {m.offset}: never sent {payload[:40]!r}")
                continue
            key = payload[: match.end()]
            if key in seen:
                v.append(f"{key} stored twice: {seen[key]} and {(p, m.offset)}")
            seen[key] = (p, m.offset)
    for t in threads:
        for p, o, payload in t.acks:
            if stored.get(p, {}).get(o) == payload:
                report.acked_found += 1
            else:
                v.append(f"acknowledged {payload[:24]!r} at {p}/{o} but stored {stored.get(p, {}).get(o, '(nothing)')[:24]!r}")
    # Send order per (producer, partition).
    last: dict[tuple[int, int], int] = defaultdict(lambda: -1)
    for p in partitions:
        for o in sorted(stored[p]):
            match = PAYLOAD.match(stored[p][o])
            if not match:
                continue
            producer, seq = int(match[1]), int(match[2])
            if seq <= last[(producer, p)]:
                v.append(f"partition {p} offset {o}: producer {producer} seq {seq} after seq {last[(producer, p)]}")
            last[(producer, p)] = seq
    v.extend(report.fatal_errors)
    del v[50:]  # enough to diagnose


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin", required=True, type=Path, help="the lightstream binary")
    ap.add_argument("--kills", type=int, default=100)
    ap.add_argument("--max-seconds", type=float, default=900.0)
    ap.add_argument("--producers", type=int, default=3)
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--rate", type=int, default=1500, help="messages per second per producer")
    ap.add_argument("--failpoint-probability", type=float, default=0.001)
    ap.add_argument("--signal", choices=["kill", "term"], default="kill")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--read-timeout", type=float, default=120.0,
                    help="seconds allowed for reading everything back at the end")
    ap.add_argument("--workdir", type=Path, default=None,
                    help="keep the brokers' data and logs (brokerN/lightstream.log) in this new directory "
                         "instead of a temporary one")
    ap.add_argument("--s3", action="store_true",
                    help="objects in S3: an s3s-fs started (and stopped) here, as in the S3 tests")
    ap.add_argument("--broker-setting", action="append", default=[], metavar="NAME=VALUE",
                    help="extra broker setting as LIGHTSTREAM_<NAME>=VALUE (repeatable), for every broker")
    ap.add_argument("--brokers", type=int, default=1,
                    help="brokers of one cluster (shared metadata file and objects); faults are SIGKILL, "
                         "SIGTERM and SIGSTOP/SIGCONT of random brokers (--signal is then ignored)")
    args = ap.parse_args()
    if args.brokers < 1:
        ap.error("--brokers must be at least 1")

    from conftest import Broker, S3Server  # the same process handling as the tests

    # librdkafka reports every refused reconnect while the broker is down.
    LIBRDKAFKA_LOG.addHandler(logging.NullHandler())
    LIBRDKAFKA_LOG.propagate = False

    cfg = Config(
        kills=args.kills,
        max_seconds=args.max_seconds,
        producers=args.producers,
        partitions=args.partitions,
        rate_per_producer=args.rate,
        failpoint_probability=args.failpoint_probability,
        stop_signal=args.signal,
        seed=args.seed,
        read_timeout_s=args.read_timeout,
        brokers=args.brokers,
    )
    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=False)
    with (contextlib.nullcontext(str(args.workdir.resolve())) if args.workdir is not None
          else tempfile.TemporaryDirectory(prefix="lightstream-torture-")) as workdir:
        s3 = S3Server(Path(workdir)) if args.s3 else None
        env = s3.broker_env("torture") if s3 else {}
        for setting in args.broker_setting:
            name, _, value = setting.partition("=")
            env[f"LIGHTSTREAM_{name.upper()}"] = value
        started: list[Broker] = []
        if args.brokers == 1:
            broker = Broker(args.bin.resolve(), Path(workdir), [], env=env)
            started.append(broker)
            broker.start()

        def make_broker(node_id: int) -> Broker:
            b = Broker(args.bin.resolve(), Path(workdir) / f"broker{node_id}", ["--node-id", str(node_id)],
                       env=dict(env), data_dir=Path(workdir) / "shared")
            started.append(b)
            return b.start()

        try:
            if args.brokers == 1:
                report = run(broker, "torture", cfg)
            else:
                report = run_cluster(make_broker, "torture", cfg)
        finally:
            for b in started:
                b.kill()  # SIGKILL ends a SIGSTOPped one too
            if s3:
                s3.stop()
    print(report.summary())
    if args.brokers > 1:
        print("faults: " + ", ".join(f"{k}={report.faults.get(k, 0)}" for k in FAULT_KINDS)
              + f"; stopped_in_write_lock={report.stopped_in_write_lock}"
              + f"; zombies_fenced={report.zombies_fenced} of {report.faults.get('stop', 0)}")
        for t, node_id, kind in report.events:
            print(f"event t={t:.2f}s broker={node_id} {kind}")
    for line in report.violations:
        print(f"VIOLATION {line}")
    return 1 if report.violations else 0


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.default_int_handler)
    sys.exit(main())
