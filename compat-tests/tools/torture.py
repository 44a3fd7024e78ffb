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
"""

from __future__ import annotations

import argparse
import logging
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

from tools.clients import LIBRDKAFKA_LOG, create_topic, read_partitions  # noqa: E402

PAYLOAD = re.compile(r"^p(\d+)-(\d{9})-")
FAILPOINTS_ENV = "LIGHTSTREAM_FAILPOINTS"


@dataclass
class Config:
    kills: int = 10
    max_seconds: float = 60.0
    producers: int = 3
    partitions: int = 4
    rate_per_producer: int = 1500
    value_bytes: int = 100
    failpoint_probability: float = 0.0
    # How the broker is stopped: "kill" (SIGKILL) or "term" (graceful).
    stop_signal: str = "kill"
    min_up_s: float = 0.3
    max_up_s: float = 2.0
    max_down_s: float = 0.3
    seed: int | None = None
    # Reading everything back at the end: from S3, a long run's many small
    # objects cost one GET each, so this grows with the run.
    read_timeout_s: float = 120.0


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

    def summary(self) -> str:
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
    failpoints = (
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
            if stored.get(p, {}).get(o) != payload:
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
    ap.add_argument("--s3", action="store_true",
                    help="objects in S3: an s3s-fs started (and stopped) here, as in the S3 tests")
    ap.add_argument("--broker-setting", action="append", default=[], metavar="NAME=VALUE",
                    help="extra broker setting as LIGHTSTREAM_<NAME>=VALUE (repeatable)")
    args = ap.parse_args()

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
    )
    with tempfile.TemporaryDirectory(prefix="lightstream-torture-") as workdir:
        s3 = S3Server(Path(workdir)) if args.s3 else None
        env = s3.broker_env("torture") if s3 else {}
        for setting in args.broker_setting:
            name, _, value = setting.partition("=")
            env[f"LIGHTSTREAM_{name.upper()}"] = value
        broker = Broker(args.bin.resolve(), Path(workdir), [], env=env)
        broker.start()
        try:
            report = run(broker, "torture", cfg)
        finally:
            broker.kill()
            if s3:
                s3.stop()
    print(report.summary())
    for line in report.violations:
        print(f"VIOLATION {line}")
    return 1 if report.violations else 0


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.default_int_handler)
    sys.exit(main())
