"""The broker with its objects in S3 (s3s-fs on a loopback port, a real S3
server that checks signatures, checksums and conditional writes).

Besides the tests marked `also_s3` elsewhere (confluent-kafka round trips,
graceful and SIGKILL restarts, idempotent producers through restarts, which
run once per mode), this file checks what only S3 mode has: objects land in
the bucket under the broker's prefix, and a consumer that keeps up is served
from the tail cache with no GET at all (the broker's "s3 stats" log line).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
import time

import pytest

from conftest import S3Server
from tools import torture
from tools.clients import create_topic, unique_topic


def s3_stats_once(broker, until, timeout_s: float = 10.0) -> dict[str, int]:
    """The newest "s3 stats" numbers once `until(stats)` holds (the line is
    logged every 500 ms), or the last ones seen after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        stats = s3_stats(broker)
        if until(stats) or time.monotonic() > deadline:
            return stats
        time.sleep(0.1)


def s3_stats(broker) -> dict[str, int]:
    """The newest "s3 stats" line of the broker's log, as numbers."""
    lines = [line for line in broker.log_path.read_text().splitlines() if "s3 stats" in line]
    assert lines, "no s3 stats line in the broker log"
    return {k: int(float(v)) for k, v in re.findall(r"(\w+)=([0-9.]+)", lines[-1]) if not k.endswith("_ms")}


@pytest.mark.parametrize("broker", ["s3"], indirect=True)
def test_objects_go_to_s3_and_a_caught_up_consumer_makes_no_get(broker):
    kcat = shutil.which("kcat")
    assert kcat, "kcat is not installed (bash .ci/test-all.sh installs it)"
    topic = unique_topic("s3-kcat")
    create_topic(broker.bootstrap, topic, partitions=3)
    payload = "\n".join(f"m{i}" for i in range(20000)) + "\n"
    subprocess.run([kcat, "-b", broker.bootstrap, "-P", "-t", topic, "-z", "zstd"],
                   input=payload.encode(), check=True, timeout=60)
    out = subprocess.run([kcat, "-b", broker.bootstrap, "-C", "-t", topic, "-e", "-o", "beginning", "-q"],
                         capture_output=True, check=True, timeout=60)
    assert sorted(out.stdout.decode().split()) == sorted(f"m{i}" for i in range(20000))
    objects = broker.s3.objects(broker.s3_prefix)
    assert objects, f"no objects under {broker.s3_prefix} in the bucket"
    stats = s3_stats_once(broker, lambda s: s["put_requests"] >= len(objects))
    assert stats["put_requests"] >= len(objects) > 0
    assert stats["put_errors"] == 0
    assert stats["get_requests"] == 0, f"a caught-up consumer made GETs: {stats}"


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def test_s3_outage_mid_produce_loses_and_duplicates_nothing(broker_factory, tmp_path):
    """s3s-fs stopped for 4 s under idempotent producers, then started again:
    produces get retriable errors and are retried; afterwards every
    acknowledged record is stored exactly once at its offset."""
    s3 = S3Server(tmp_path)
    try:
        env = s3.broker_env("outage") | {
            "LIGHTSTREAM_S3_REQUEST_TIMEOUT_MS": "1000",
            "LIGHTSTREAM_S3_MAX_ATTEMPTS": "2",
        }
        broker = broker_factory(env=env)
        cfg = torture.Config(producers=2, partitions=3)
        topic = unique_topic("s3-outage")
        create_topic(broker.bootstrap, topic, partitions=cfg.partitions)
        stop = threading.Event()
        threads = [torture.ProducerThread(i, broker.bootstrap, topic, cfg, stop) for i in range(cfg.producers)]
        for t in threads:
            t.start()
        time.sleep(2.0)
        s3.stop()
        peak = 0.0
        for _ in range(40):  # 4 s without S3
            peak = max(peak, rss_mib(broker.proc.pid))
            time.sleep(0.1)
        s3.start()
        time.sleep(5.0)
        stop.set()
        for t in threads:
            t.join(timeout=90)
        report = torture.Report(
            sent=[t.sent for t in threads],
            acked=sum(len(t.acks) for t in threads),
            fatal_errors=[f for t in threads for f in t.fatal],
        )
        stuck = [t.index for t in threads if t.is_alive() or t.unflushed]
        assert not stuck, f"producers {stuck} did not flush within 90 s"
        torture.check(broker.bootstrap, topic, cfg, threads, report)
        assert not report.violations, "\n".join([report.summary(), *report.violations])
        assert report.acked == sum(report.sent), report.summary()
        stats = s3_stats_once(broker, lambda s: s["put_errors"] > 0)
        assert stats["put_errors"] > 0, f"the outage did not reach the broker: {stats}"
        assert peak < 400, f"broker RSS {peak:.0f} MiB while S3 was down"
        print(f"outage: {report.summary()} put_errors={stats['put_errors']} peak_rss_mib={peak:.0f}")
    finally:
        s3.stop()
