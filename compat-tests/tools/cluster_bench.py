#!/usr/bin/env python3
"""Cluster benchmark: failover time and throughput, one broker against three.

    compat-tests/.venv/bin/python compat-tests/tools/cluster_bench.py \
        --bin target/release/lightstream [--kills 20] [--records 200000]

1. Throughput: a fresh cluster of 1, then of 3 brokers (one shared data
   directory, as docs/configuration.md shows); confluent-kafka produces
   `--records` records of 100 bytes (acks=all) to a 12-partition topic, then
   a consumer reads them all; records/s and MB/s of each.
2. Failover: on 3 brokers under a steady idempotent load, `--kills` times:
   kill -9 a broker that leads partitions, and time from the kill to the
   first acknowledged produce on a partition it led; then restart it and
   wait until it leads its share again. p50, p99 and max.

Prints figures; asserts nothing. Lease: `--session-timeout-ms` (default
3000; Kafka's default is 9000, and failover time grows with it). Any other
broker setting: `--setting flush_interval_ms=10` (repeatable).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from confluent_kafka import Consumer, Producer, TopicPartition  # noqa: E402

from conftest import Broker  # noqa: E402
from tools.clients import LIBRDKAFKA_LOG, admin, create_topic  # noqa: E402

PARTITIONS = 12


def start_cluster(binary: Path, workdir: Path, n: int, env: dict[str, str]) -> list[Broker]:
    shared = workdir / "shared"
    brokers = []
    for node in range(1, n + 1):
        b = Broker(binary, workdir / f"b{node}", ["--node-id", str(node)], env=dict(env), data_dir=shared)
        b.start()
        brokers.append(b)
    return brokers


def cpu_seconds(brokers: list[Broker]) -> float:
    """User + system CPU seconds the brokers have used so far (/proc)."""
    import os
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for b in brokers:
        fields = Path(f"/proc/{b.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


def bootstrap(brokers: list[Broker]) -> str:
    return ",".join(b.bootstrap for b in brokers)


def leaders(via: str, topic: str) -> dict[int, int]:
    md = admin(via).list_topics(topic=topic, timeout=10)
    return {p: m.leader for p, m in md.topics[topic].partitions.items()}


def wait_led(via: str, topic: str, live: set[int], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        led = leaders(via, topic)
        if len(led) == PARTITIONS and set(led.values()) <= live:
            return
        time.sleep(0.05)
    raise RuntimeError(f"partitions not led by {live} within {timeout_s}s")


def throughput(binary: Path, n: int, records: int, env: dict[str, str]) -> tuple[float, float]:
    with tempfile.TemporaryDirectory(prefix="lightstream-cluster-bench-") as work:
        brokers = start_cluster(binary, Path(work), n, env)
        try:
            boot = bootstrap(brokers)
            create_topic(brokers[0].bootstrap, "bench", partitions=PARTITIONS)
            wait_led(brokers[-1].bootstrap, "bench", set(range(1, n + 1)))
            value = b"x" * 100
            p = Producer({"bootstrap.servers": boot, "acks": "all", "linger.ms": 5,
                          "batch.size": 262144, "logger": LIBRDKAFKA_LOG})
            failed = 0

            def on_delivery(err, msg):
                nonlocal failed
                failed += err is not None

            cpu_before = cpu_seconds(brokers)
            started = time.monotonic()
            for i in range(records):
                while True:
                    try:
                        p.produce("bench", value, partition=i % PARTITIONS, on_delivery=on_delivery)
                        break
                    except BufferError:
                        p.poll(0.01)
                p.poll(0)
            p.flush(120)
            produce_s = time.monotonic() - started
            produce_cpu = cpu_seconds(brokers) - cpu_before
            c = Consumer({"bootstrap.servers": boot, "group.id": "bench", "auto.offset.reset": "earliest",
                          "enable.auto.commit": False, "fetch.max.bytes": 52428800, "logger": LIBRDKAFKA_LOG})
            c.assign([TopicPartition("bench", q, 0) for q in range(PARTITIONS)])
            got = 0
            started = time.monotonic()
            while got < records and time.monotonic() - started < 120:
                got += sum(1 for m in c.consume(10000, timeout=0.5) if m.error() is None)
            consume_s = time.monotonic() - started
            c.close()
            mb = records * len(value) / 1e6
            print(f"  {n} broker(s): produce {records / produce_s:,.0f} records/s {mb / produce_s:.1f} MB/s "
                  f"(failed {failed}), brokers' CPU {produce_cpu / (mb / 1000):.1f} s/GB; "
                  f"consume {got / consume_s:,.0f} records/s {mb / consume_s:.1f} MB/s")
            return records / produce_s, got / consume_s
        finally:
            for b in brokers:
                b.kill()


def failover(binary: Path, kills: int, env: dict[str, str], seed: int) -> list[float]:
    rng = random.Random(seed)
    times: list[float] = []
    with tempfile.TemporaryDirectory(prefix="lightstream-cluster-bench-") as work:
        brokers = start_cluster(binary, Path(work), 3, env)
        try:
            boot = bootstrap(brokers)
            create_topic(brokers[0].bootstrap, "failover", partitions=PARTITIONS)
            wait_led(brokers[0].bootstrap, "failover", {1, 2, 3})
            acks: list[tuple[float, int]] = []  # (monotonic time, partition)
            lock = threading.Lock()
            stop = threading.Event()

            def produce() -> None:
                p = Producer({"bootstrap.servers": boot, "enable.idempotence": True, "linger.ms": 1,
                              "message.timeout.ms": 120000, "retry.backoff.ms": 20,
                              "reconnect.backoff.ms": 20, "reconnect.backoff.max.ms": 200,
                              "topic.metadata.refresh.interval.ms": 1000, "logger": LIBRDKAFKA_LOG})

                def on_delivery(err, msg):
                    if err is None:
                        with lock:
                            acks.append((time.monotonic(), msg.partition()))

                i = 0
                while not stop.is_set():
                    try:
                        p.produce("failover", b"y" * 100, partition=i % PARTITIONS, on_delivery=on_delivery)
                        i += 1
                    except BufferError:
                        pass
                    p.poll(0.002)
                p.flush(60)

            t = threading.Thread(target=produce, daemon=True)
            t.start()
            time.sleep(2)
            for k in range(kills):
                led = leaders(brokers[0].bootstrap if brokers[0].running else brokers[1].bootstrap, "failover")
                candidates = sorted({n for n in led.values() if n > 0})
                victim = rng.choice(candidates)
                moved = {p for p, n in led.items() if n == victim}
                b = brokers[victim - 1]
                t0 = time.monotonic()
                b.kill()
                deadline = t0 + 60
                took = None
                while time.monotonic() < deadline and took is None:
                    with lock:
                        later = [ts for ts, p in acks if ts > t0 and p in moved]
                    if later:
                        took = min(later) - t0
                    time.sleep(0.02)
                times.append(took if took is not None else float("inf"))
                print(f"  kill {k + 1}: broker {victim} led {len(moved)} partitions; "
                      f"first ack on one of them {took:.2f}s after the kill" if took is not None
                      else f"  kill {k + 1}: no ack within 60 s")
                with lock:
                    del acks[: max(0, len(acks) - 100000)]
                b.start()
                survivor = next(x for x in brokers if x.running)
                wait_led(survivor.bootstrap, "failover", {1, 2, 3})
                time.sleep(0.5)
            stop.set()
            t.join(timeout=90)
        finally:
            for b in brokers:
                b.kill()
    return times


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin", required=True, type=Path)
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--records", type=int, default=200000)
    ap.add_argument("--session-timeout-ms", type=int, default=3000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--only", choices=["throughput", "failover"], default=None)
    ap.add_argument("--setting", action="append", default=[], metavar="NAME=VALUE",
                    help="a broker setting for every broker, e.g. flush_interval_ms=10 (repeatable)")
    args = ap.parse_args()
    env = {
        "LIGHTSTREAM_BROKER_SESSION_TIMEOUT_MS": str(args.session_timeout_ms),
        "LIGHTSTREAM_BROKER_HEARTBEAT_INTERVAL_MS": str(max(100, args.session_timeout_ms // 6)),
        "LIGHTSTREAM_LOG": "warn",
    }
    for setting in args.setting:
        name, _, value = setting.partition("=")
        env[f"LIGHTSTREAM_{name.upper()}"] = value
    binary = args.bin.resolve()
    if args.only != "failover":
        print(f"== throughput, {args.records} records of 100 B to {PARTITIONS} partitions, acks=all")
        throughput(binary, 1, args.records, env)
        throughput(binary, 3, args.records, env)
    if args.only == "throughput":
        return 0
    print(f"== failover, {args.kills} kills, broker_session_timeout_ms={args.session_timeout_ms}")
    times = sorted(failover(binary, args.kills, env, args.seed))
    finite = [x for x in times if x != float("inf")]
    if finite:
        p99 = times[min(len(times) - 1, round(0.99 * (len(times) - 1)))]
        print(f"  kill -9 to first ack on a moved partition: p50 {statistics.median(times):.2f}s "
              f"p99 {p99:.2f}s max {times[-1]:.2f}s over {len(times)} kills")
    return 0


if __name__ == "__main__":
    sys.exit(main())
